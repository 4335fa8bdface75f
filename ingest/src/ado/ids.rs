//! The ids of Azure DevOps objects that cross function boundaries, one newtype each (declared
//! with `adoport_shared::typed_ids!`), so that a call naming a project and a repository (or a
//! pipeline and its run) cannot take them in the wrong order.
//!
//! Each id is the text Azure DevOps uses in its URLs (a GUID, a name where the API accepts one,
//! or a number's digits), kept as it came, so URLs and messages read the same as with a plain
//! string. Numeric ids that an item carries as JSON numbers stay `u64` in the item; their id
//! type is made only for the request. This module owns the types, and reading the ids a listed
//! repository carries ([`repository_ids`]); which endpoint takes which id is `super`'s.

use serde_json::Value;

adoport_shared::typed_ids! {
    /// An organization's name, e.g. `acme` for `https://dev.azure.com/acme` (see
    /// [`super::organization::organization_name`]).
    OrganizationName;
    /// A project: its id (a GUID) or, wherever Azure DevOps accepts one in the URL, its name.
    ProjectId;
    /// A Git repository's id. A wiki's backing repository has the wiki's id.
    RepositoryId;
    /// A team's id (or its name, which the team-scoped URLs accept too).
    TeamId;
    /// A team board's id.
    BoardId;
    /// A pipeline's id, which is also its build definition's id (`definitionId`).
    PipelineId;
    /// A build's id, which is also the id of the pipeline run it is.
    BuildId;
    /// A classic release's id.
    ReleaseId;
    /// A classic release definition's id.
    ReleaseDefinitionId;
    /// A deployment environment's id (`distributedtask/environments/{id}`).
    EnvironmentId;
    /// A test run's id.
    TestRunId;
    /// A wiki's id (its backing repository's id).
    WikiId;
    /// A commit's full SHA-1.
    CommitId;
    /// A service-hook subscription's id.
    SubscriptionId;
}

/// The project and repository ids of a repository as Azure DevOps lists it (`project.id`, `id`;
/// empty when absent).
pub fn repository_ids(repository: &Value) -> (ProjectId, RepositoryId) {
    let text = |value: Option<&Value>| {
        value
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (
        ProjectId(text(repository.pointer("/project/id"))),
        RepositoryId(text(repository.get("id"))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_and_serialize_as_their_bare_text() {
        let project = ProjectId::new("p-1");
        assert_eq!(project.to_string(), "p-1");
        assert_eq!(format!("{project}/_apis"), "p-1/_apis");
        assert_eq!(serde_json::to_value(&project).expect("json"), "p-1");
        let read: RepositoryId = serde_json::from_value(serde_json::json!("r-1")).expect("id");
        assert_eq!(read.as_str(), "r-1");
        assert_eq!(PipelineId::from(12_u64).as_str(), "12");
        let repository = serde_json::json!({"id": "r", "project": {"id": "p"}});
        assert_eq!(
            repository_ids(&repository),
            (ProjectId::new("p"), RepositoryId::new("r"))
        );
        assert_eq!(
            format!("{:?}", ProjectId::new("Shop")),
            format!("{:?}", "Shop")
        );
    }
}
