//! The mappings of the soak: the version it starts with and the one it changes to mid-run.
//!
//! Kinds whose objects the soak creates, changes and deletes in Azure DevOps (projects,
//! repositories, pull requests, work items) and pipelines, which come and go with their
//! projects. GitOps (`specPath`) is off and no file is read: the soak is about the pipeline's
//! guarantees, and every Azure DevOps request it saves leaves more of the two cores to them.
//!
//! The change (version 2) touches every way a mapping can change what lands in Port:
//! a property expression of pull requests changes (every pull request entity must be
//! rewritten), repositories gain a property, and the `pipeline` kind is removed (its entities
//! must be deleted by the next resync's reconciliation). No property is *removed* from a kind
//! that stays: with merge writes (`enableMergeEntity`, the default) Port keeps properties a
//! write does not send, as it does for the Python integration, so a removed property stays on
//! the entities written before — by design, and a difference the comparison would report.

use serde_json::{Value, json};

/// The kinds both versions map, and the one version 1 has in addition.
pub const STAYING_KINDS: [&str; 4] = ["project", "repository", "pull-request", "work-item"];
pub const REMOVED_KIND: &str = "pipeline";

fn resources(version: u32) -> Vec<Value> {
    let pull_request_status = if version == 1 {
        ".status"
    } else {
        "\"pr-\" + .status"
    };
    let mut repository_properties = json!({
        "url": ".remoteUrl",
        "defaultBranch": ".defaultBranch",
        "isDisabled": ".isDisabled",
    });
    if version > 1 {
        repository_properties["size"] = json!(".size");
    }
    let mut resources = vec![
        json!({
            "kind": "project",
            "selector": {"query": "true", "defaultTeam": "true"},
            "port": {"entity": {"mappings": {
                "identifier": ".id | gsub(\" \"; \"\")",
                "title": ".name",
                "blueprint": "\"azureDevopsProject\"",
                "properties": {
                    "state": ".state",
                    "revision": ".revision",
                    "defaultTeam": ".defaultTeam.name",
                    "description": ".description",
                },
            }}},
        }),
        json!({
            "kind": "repository",
            "selector": {"query": "true"},
            "port": {"entity": {"mappings": {
                "identifier": ".id",
                "title": ".name",
                "blueprint": "\"azureDevopsRepository\"",
                "properties": repository_properties,
                "relations": {"project": ".project.id | gsub(\" \"; \"\")"},
            }}},
        }),
        json!({
            "kind": "pull-request",
            "selector": {"query": "true", "minTimeInDays": 3650},
            "port": {"entity": {"mappings": {
                "identifier": ".pullRequestId | tostring",
                "title": ".title",
                "blueprint": "\"azureDevopsPullRequest\"",
                "properties": {
                    "status": pull_request_status,
                    "isDraft": ".isDraft",
                    "creator": ".createdBy.uniqueName",
                    "reviewers": "[.reviewers[].uniqueName]",
                },
                "relations": {"repository": ".repository.id"},
            }}},
        }),
        json!({
            "kind": "work-item",
            "selector": {"query": "true", "expand": "All"},
            "port": {"entity": {"mappings": {
                "identifier": ".__project.id + \"/\" + (.id | tostring) | gsub(\" \"; \"\")",
                "title": ".fields.\"System.Title\"",
                "blueprint": "\"azureDevopsWorkItem\"",
                "properties": {
                    "type": ".fields.\"System.WorkItemType\"",
                    "state": ".fields.\"System.State\"",
                    "revision": ".rev",
                },
                "relations": {"project": ".__projectId | gsub(\" \"; \"\")"},
            }}},
        }),
    ];
    if version == 1 {
        resources.push(json!({
            "kind": REMOVED_KIND,
            "selector": {"query": "true"},
            "port": {"entity": {"mappings": {
                "identifier": ".__projectId + \"/\" + (.id | tostring)",
                "title": ".name",
                "blueprint": "\"azureDevopsPipeline\"",
                "properties": {"folder": ".folder"},
                "relations": {"project": ".__projectId"},
            }}},
        }));
    }
    resources
}

/// The port-app-config of `version` (1: at the start; 2: after the change).
pub fn mapping(version: u32) -> Value {
    json!({
        "deleteDependentEntities": true,
        "createMissingRelatedEntities": true,
        "enableMergeEntity": true,
        "specPath": [],
        "resources": resources(version),
    })
}

#[cfg(test)]
mod tests {
    use adoport_shared::port_app_config::PortAppConfig;

    #[test]
    fn both_versions_parse_and_differ_as_documented() {
        let first = PortAppConfig::from_json_value(super::mapping(1)).expect("version 1");
        let second = PortAppConfig::from_json_value(super::mapping(2)).expect("version 2");
        assert!(first.kinds().contains(&super::REMOVED_KIND));
        assert!(!second.kinds().contains(&super::REMOVED_KIND));
        for kind in super::STAYING_KINDS {
            assert!(second.kinds().contains(&kind), "{kind}");
        }
    }
}
