//! How each kind's item is built from what Azure DevOps returns: the enrichment (`__projectId`,
//! `__project`, `__pipeline`, `__build`, `__testResults`, `__codeCoverage`, `__repository`,
//! `__firstCommit`, `__repositoryId`) the crawler and live events both apply, so an object
//! published by a resync and by a service-hook event is the same item.
//!
//! The pure builders take the objects they add; [`ItemBuilder`] makes the extra calls some
//! kinds need (a run's results, a pipeline's build definition, a build's changes, a
//! repository's `includedFiles` → `__includedFiles`) with the
//! client it is given (the organization's), [`ENRICHMENT_CONCURRENCY`] at a time for a page.

use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::{enrich, text};
use crate::ado::{
    AdoClient, AdoError, GitVersion, LIST_FIRST_FROM, Presence, ProjectId, RepositoryId,
    repository_ids,
};
use crate::crawl_context::{CrawlLimits, parse};
use crate::kind::Kind;
use crate::plan::KindPlan;
use crate::selector::{self, BuildSelector, PipelineSelector, RepositorySelector, SelectorError};

pub(crate) use super::test_runs::TestRunEnrichment;

/// Per-item calls (definitions, runs, timelines, changes, …) one unit makes at the same time.
pub(crate) const ENRICHMENT_CONCURRENCY: usize = 8;
/// Files of one repository downloaded at the same time (`includedFiles`).
const INCLUDED_FILES_CONCURRENCY: usize = 8;

/// A `pipeline-run` item: the run with `__project` (the project list item) and `__pipeline`
/// (the pipeline list item).
pub(crate) fn pipeline_run(run: Value, project: &Value, pipeline: &Value) -> Value {
    enrich(enrich(run, "__project", project), "__pipeline", pipeline)
}

/// A `pipeline-stage` item: a `Stage` timeline record with `__project` and `__build` (the
/// build as the `build` kind has it: with `__projectId` and `__project`).
pub(crate) fn pipeline_stage(record: Value, project: &Value, build: &Value) -> Value {
    enrich(enrich(record, "__project", project), "__build", build)
}

/// Whether a timeline record is a stage (what `pipeline-stage` publishes).
pub(crate) fn is_stage(record: &Value) -> bool {
    record.get("type").and_then(Value::as_str) == Some("Stage")
}

/// An `advanced-security-alert` item: the alert with `__repositoryId` and `__projectId`.
pub(crate) fn security_alert(
    alert: Value,
    repository_id: &RepositoryId,
    project_id: &ProjectId,
) -> Value {
    enrich(
        enrich(alert, "__repositoryId", &json!(repository_id)),
        "__projectId",
        &json!(project_id),
    )
}

/// A project-scoped list item (`pipeline`, `build`, `release-definition`, …) before its
/// selector-driven enrichment: `__projectId` and/or `__project` as the kind has them.
pub(crate) fn project_list_item(kind: Kind, item: Value, project: &Value) -> Value {
    let (project_id, with_project) = match kind {
        Kind::Pipeline => (true, false),
        Kind::Build => (true, true),
        Kind::ReleaseDefinition => (false, true),
        _ => (false, false),
    };
    let item = if project_id {
        let id = project.get("id").cloned().unwrap_or(Value::Null);
        enrich(item, "__projectId", &id)
    } else {
        item
    };
    if with_project {
        enrich(item, "__project", project)
    } else {
        item
    }
}

/// What the selectors of a listed kind add to each of its items: `pipeline` `includeRepo`
/// (`__repository`), `build` `enrichWithFirstCommit` (`__firstCommit`), `repository`
/// `includedFiles` (`__includedFiles`); nothing for other kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListEnrichment {
    Nothing,
    Repository,
    FirstCommit,
    IncludedFiles(Vec<String>),
}

impl ListEnrichment {
    /// The enrichment `plan`'s resources ask for (any resource asking is enough).
    pub(crate) fn of(plan: &KindPlan) -> Result<Self, SelectorError> {
        Ok(match plan.known() {
            Some(Kind::Pipeline)
                if (plan.selectors::<PipelineSelector>()?.iter()).any(|s| s.include_repo.0) =>
            {
                ListEnrichment::Repository
            }
            Some(Kind::Build)
                if (plan.selectors::<BuildSelector>()?.iter())
                    .any(|s| s.enrich_with_first_commit.0) =>
            {
                ListEnrichment::FirstCommit
            }
            Some(Kind::Repository) => {
                let selectors = plan.selectors::<RepositorySelector>()?;
                let paths = selector::union(selectors.iter().map(|s| &s.included_files));
                if paths.is_empty() {
                    ListEnrichment::Nothing
                } else {
                    ListEnrichment::IncludedFiles(paths)
                }
            }
            _ => ListEnrichment::Nothing,
        })
    }
}

/// A listed item as a kind's crawl holds it until it builds the item: parsed, or its JSON text
/// (a listing kept as text takes about a fifth of the memory).
pub(crate) trait ListItem {
    fn into_value(self) -> Value;
}

impl ListItem for Value {
    fn into_value(self) -> Value {
        self
    }
}

impl ListItem for Box<str> {
    fn into_value(self) -> Value {
        parse(&self)
    }
}

impl ListItem for Box<RawValue> {
    fn into_value(self) -> Value {
        parse(self.get())
    }
}

/// Builds items that need more calls, with one organization's client.
#[derive(Clone, Copy)]
pub(crate) struct ItemBuilder<'a> {
    pub(crate) client: &'a AdoClient,
    /// `$top` of the lists read for an item (changes, test results).
    pub(crate) page: usize,
}

impl<'a> ItemBuilder<'a> {
    /// A builder with the crawler's default page size (what live events use).
    pub(crate) fn new(client: &'a AdoClient) -> Self {
        Self {
            client,
            page: CrawlLimits::default().page,
        }
    }

    /// A page of list items, each with what `enrichment` adds. Items kept as text are parsed
    /// one by one as they are built: the page's items not built yet stay text.
    pub(crate) async fn list_items<I: ListItem>(
        &self,
        enrichment: &ListEnrichment,
        items: Vec<I>,
    ) -> Result<Vec<Value>, AdoError> {
        if *enrichment == ListEnrichment::Nothing {
            return Ok(items.into_iter().map(ListItem::into_value).collect());
        }
        stream::iter(items)
            .map(|item| self.enriched(enrichment, item.into_value()))
            .buffered(ENRICHMENT_CONCURRENCY)
            .try_collect()
            .await
    }

    /// One list item with what `enrichment` adds.
    async fn enriched(&self, enrichment: &ListEnrichment, item: Value) -> Result<Value, AdoError> {
        match enrichment {
            ListEnrichment::Nothing => Ok(item),
            ListEnrichment::Repository => self.with_repository(item).await,
            ListEnrichment::FirstCommit => self.with_first_commit(item).await,
            ListEnrichment::IncludedFiles(paths) => {
                let files = self.included_files(&item, paths).await?;
                Ok(enrich(item, "__includedFiles", &files))
            }
        }
    }

    /// `__includedFiles` of one repository: each path's text on the default branch, `""` when
    /// the file (or the default branch) does not exist, as the Python integration writes it (a
    /// failed read other than that 404 fails the kind instead of reading as `""`). From
    /// [`LIST_FIRST_FROM`] files of one folder on, a listing of the folder first spares the
    /// reads of those it does not hold.
    async fn included_files(
        &self,
        repository: &Value,
        paths: &[String],
    ) -> Result<Value, AdoError> {
        let (project_id, repository_id) = &repository_ids(repository);
        let branch = text(repository, "defaultBranch");
        // Several files: one listing of their folder says which exist, and only those are read.
        let presence = match branch {
            Some(branch) if paths.len() >= LIST_FIRST_FROM => {
                let version = GitVersion::Branch(branch.to_string());
                (self.client)
                    .files_present(project_id, repository_id, paths, &version)
                    .await?
            }
            _ => None,
        };
        let presence = presence.unwrap_or_else(|| vec![Presence::Unsure; paths.len()]);
        let contents: Vec<(String, Value)> = stream::iter(paths.iter().cloned().zip(presence))
            .map(|(path, presence)| async move {
                let content = match branch {
                    Some(_) if presence == Presence::Missing => String::new(),
                    Some(branch) => self
                        .client
                        .file_text(project_id, repository_id, &path, branch)
                        .await?
                        .unwrap_or_default(),
                    None => String::new(),
                };
                Ok::<_, AdoError>((path, Value::String(content)))
            })
            .buffered(INCLUDED_FILES_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(Value::Object(contents.into_iter().collect::<Map<_, _>>()))
    }
}

/// The fields of a project as `GET _apis/projects?includeCapabilities=true` lists it (a
/// `TeamProjectReference` with `capabilities`): what the crawler puts in `__project`.
/// `GET _apis/projects/{id}` answers more (`_links`, `defaultTeam`); live events read that and
/// keep only these.
const LISTED_PROJECT_FIELDS: &[&str] = &[
    "id",
    "capabilities",
    "name",
    "abbreviation",
    "description",
    "url",
    "state",
    "revision",
    "visibility",
    "lastUpdateTime",
    "defaultTeamImageUrl",
];

/// A project read by id, as the project list has it (see [`LISTED_PROJECT_FIELDS`]).
pub(crate) fn listed_project(project: Value) -> Value {
    match project {
        Value::Object(mut map) => {
            map.retain(|key, _| LISTED_PROJECT_FIELDS.contains(&key.as_str()));
            Value::Object(map)
        }
        other => other,
    }
}

/// A pipeline read by id, as `GET _apis/pipelines` lists it: without the `configuration` only
/// the single read returns.
pub(crate) fn listed_pipeline(pipeline: Value) -> Value {
    match pipeline {
        Value::Object(mut map) => {
            map.remove("configuration");
            Value::Object(map)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_read_by_id_keeps_only_what_the_list_has() {
        let full = json!({"id": "p", "name": "P", "url": "u", "state": "wellFormed",
            "revision": 3, "visibility": "private", "lastUpdateTime": "t",
            "_links": {"self": {"href": "u"}}, "defaultTeam": {"id": "t"},
            "capabilities": {"versioncontrol": {}}});
        assert_eq!(
            listed_project(full),
            json!({"id": "p", "name": "P", "url": "u", "state": "wellFormed",
                "revision": 3, "visibility": "private", "lastUpdateTime": "t",
                "capabilities": {"versioncontrol": {}}})
        );
        assert_eq!(
            listed_pipeline(json!({"id": 1, "configuration": {"type": "yaml"}})),
            json!({"id": 1})
        );
    }

    #[test]
    fn list_kinds_get_the_project_fields_their_crawl_adds() {
        let project = json!({"id": "p", "name": "P"});
        let build = project_list_item(Kind::Build, json!({"id": 1}), &project);
        assert_eq!(
            build,
            json!({"id": 1, "__projectId": "p", "__project": project})
        );
        let pipeline = project_list_item(Kind::Pipeline, json!({"id": 1}), &project);
        assert_eq!(pipeline, json!({"id": 1, "__projectId": "p"}));
        let environment = project_list_item(Kind::Environment, json!({"id": 1}), &project);
        assert_eq!(environment, json!({"id": 1}));
    }
}
