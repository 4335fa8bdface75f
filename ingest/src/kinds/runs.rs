//! Pipeline execution kinds and the enrichment of pipelines and builds:
//!
//! - `pipeline` with selector `includeRepo` → `__repository` (the build definition's
//!   repository plus its `project`), matched to each pipeline by id: a definition gone in
//!   between leaves only that pipeline without it.
//! - `build` with selector `enrichWithFirstCommit` → `__firstCommit`: the earliest change of the
//!   build by `timestamp` plus `__sha`, `__timestamp` and `__commitCount`, or the build's source
//!   commit when it lists no changes (`__commitCount` 1); a failure leaves the build without it.
//! - `pipeline-run` (`__project`, `__pipeline`): every pipeline's runs; in an incremental run,
//!   the runs Analytics says completed since the cursor, each read on its own (see
//!   [`Crawler::crawl_completed_pipeline_runs`]).
//! - `pipeline-stage` (`__project`, `__build`): the `Stage` records of every build's timeline
//!   (the builds listed with `build`, [`Crawler::shared_builds`]).
//! - `pipeline-deployment` (`__project`, the environment's project reference): every
//!   environment's deployment records.
//!
//! Every list is read page by page and published as it arrives; the calls a page needs are
//! made [`ENRICHMENT_CONCURRENCY`] at a time, through the client's request budget.

use std::collections::HashMap;
use std::pin::pin;

use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::{Value, json};

use super::KindCrawl;
use super::items::{self, ENRICHMENT_CONCURRENCY, ItemBuilder};
use super::{Pages, enrich, is_fatal, text};
use crate::ado::{AdoError, BuildId, CommitId, EnvironmentId, PipelineId, ProjectId, RepositoryId};
use crate::crawl_context::{CrawlError, Crawler};
use crate::kind::Kind;

/// An id field as URL text, whether Azure DevOps gave it as a number or a string.
pub(crate) fn id_text(value: &Value, key: &str) -> Option<String> {
    match value.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `typeKey`s of 404s that say a build, a build definition, a pipeline or an environment does
/// not exist (any more).
const OBJECT_GONE: &[&str] = &[
    "BuildNotFoundException",
    "DefinitionNotFoundException",
    "PipelineNotFoundException",
    "EnvironmentNotFoundException",
    "PipelineRunNotFoundException",
];

/// `Ok(None)` for a 404 in which Azure DevOps says the object read (the build, definition,
/// pipeline or environment the listing belongs to) went away between the list and the read
/// ([`OBJECT_GONE`]); any other 404 is the error it is.
fn unless_gone<T>(outcome: Result<T, AdoError>) -> Result<Option<T>, AdoError> {
    match outcome {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.says_missing(OBJECT_GONE) || e.unit_gone() => Ok(None),
        Err(e) => Err(e),
    }
}

/// The `(pipeline id, run id)` an Analytics `PipelineRuns` row names (`Pipeline.PipelineId`,
/// `PipelineRunId`); `None` for a row without them.
fn discovered_run(row: &Value) -> Option<(String, String)> {
    let pipeline = row.get("Pipeline").and_then(|p| id_text(p, "PipelineId"))?;
    Some((pipeline, id_text(row, "PipelineRunId")?))
}

/// `__firstCommit` from the earliest of a build's changes.
fn first_commit_from_changes(earliest: &Value, count: u64) -> Value {
    let mut first = earliest.clone();
    let sha = earliest.get("id").cloned().unwrap_or(Value::Null);
    let timestamp = earliest.get("timestamp").cloned().unwrap_or(Value::Null);
    if let Value::Object(map) = &mut first {
        map.insert("__sha".into(), sha);
        map.insert("__timestamp".into(), timestamp);
        map.insert("__commitCount".into(), json!(count));
    }
    first
}

/// Whether change `a` is earlier than change `b` (RFC 3339 timestamps, compared as instants).
fn earlier(a: &Value, b: &Value) -> bool {
    let instant =
        |v: &Value| text(v, "timestamp").and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    match (instant(a), instant(b)) {
        (Some(a), Some(b)) => a < b,
        (Some(_), None) => true,
        _ => false,
    }
}

impl ItemBuilder<'_> {
    /// The pipeline with `__repository` from its build definition (unchanged when the
    /// definition is gone).
    pub(crate) async fn with_repository(&self, pipeline: Value) -> Result<Value, AdoError> {
        let project_id = &ProjectId::new(text(&pipeline, "__projectId").unwrap_or_default());
        let Some(id) = id_text(&pipeline, "id").map(PipelineId::new) else {
            return Ok(pipeline);
        };
        let Some(definition) = unless_gone(self.client.build_definition(project_id, &id).await)?
        else {
            return Ok(pipeline);
        };
        let mut repository = definition
            .get("repository")
            .cloned()
            .unwrap_or_else(|| json!({}));
        if let Value::Object(map) = &mut repository {
            map.insert(
                "project".into(),
                definition.get("project").cloned().unwrap_or(Value::Null),
            );
        }
        Ok(enrich(pipeline, "__repository", &repository))
    }

    /// The build with `__firstCommit`; without it when the build has no commits or they
    /// cannot be read (logged).
    pub(crate) async fn with_first_commit(&self, build: Value) -> Result<Value, AdoError> {
        match self.first_commit(&build).await {
            Ok(Some(first)) => Ok(enrich(build, "__firstCommit", &first)),
            Ok(None) => Ok(build),
            Err(e) if is_fatal(&e) => Err(e),
            Err(e) => {
                tracing::warn!(
                    build = ?build.get("id"),
                    error = %e,
                    "could not read the first commit of a build; it is published without __firstCommit"
                );
                Ok(build)
            }
        }
    }

    async fn first_commit(&self, build: &Value) -> Result<Option<Value>, AdoError> {
        let project_id = &ProjectId::new(text(build, "__projectId").unwrap_or_default());
        let Some(build_id) = id_text(build, "id") else {
            return Ok(None);
        };
        let path = format!("_apis/build/builds/{build_id}/changes");
        let mut earliest: Option<Value> = None;
        let mut count: u64 = 0;
        let mut changes = pin!(
            self.client
                .project_list(None, project_id, &path, &[], self.page)
        );
        while let Some(page) = changes.try_next().await? {
            count += page.len() as u64;
            for change in page {
                if text(&change, "timestamp").is_some()
                    && earliest.as_ref().is_none_or(|e| earlier(&change, e))
                {
                    earliest = Some(change);
                }
            }
        }
        if let Some(earliest) = earliest {
            return Ok(Some(first_commit_from_changes(&earliest, count)));
        }
        // No timestamped change: the commit the build ran on.
        let source_version = text(build, "sourceVersion");
        let repository_id = build.get("repository").and_then(|r| text(r, "id"));
        let (Some(source_version), Some(repository_id)) = (source_version, repository_id) else {
            return Ok(None);
        };
        let commit = self
            .client
            .commit(
                project_id,
                &RepositoryId::new(repository_id),
                &CommitId::new(source_version),
            )
            .await?;
        let Some(date) = commit.get("committer").and_then(|c| c.get("date")).cloned() else {
            return Ok(None);
        };
        let sha = commit
            .get("commitId")
            .cloned()
            .unwrap_or_else(|| json!(source_version));
        let mut first = commit;
        if let Value::Object(map) = &mut first {
            map.insert("__sha".into(), sha);
            map.insert("__timestamp".into(), date);
            map.insert("__commitCount".into(), json!(1));
        }
        Ok(Some(first))
    }
}

impl Crawler {
    /// What builds this crawler's items: its client and page size.
    pub(crate) fn items(&self) -> ItemBuilder<'_> {
        ItemBuilder {
            client: &self.client,
            page: self.limits.page,
        }
    }

    pub(crate) async fn crawl_pipeline_runs(
        &self,
        mut crawl: KindCrawl<'_>,
    ) -> Result<(), CrawlError> {
        if let Some(since) = crawl.plan.since {
            return self.crawl_completed_pipeline_runs(crawl, since).await;
        }
        let cache = crawl.cache;
        self.per_project(&mut crawl, |project_id, project, pages: Pages| async move {
            let project_id = &project_id;
            let (project, pages) = (&project, &pages);
            // The list `pipeline` reads too: once per project.
            let list = self
                .shared_project_list(cache, project_id, super::pipelines::PIPELINES)
                .await?;
            {
                stream::iter(list.iter())
                    .map(|pipeline| async move {
                        let Some(id) = id_text(&pipeline, "id").map(PipelineId::new) else {
                            return Ok(Vec::new());
                        };
                        let runs = unless_gone(self.client.pipeline_runs(project_id, &id).await)?
                            .unwrap_or_default();
                        Ok::<_, AdoError>(
                            runs.into_iter()
                                .map(|run| items::pipeline_run(run, project, &pipeline))
                                .collect::<Vec<_>>(),
                        )
                    })
                    .buffered(ENRICHMENT_CONCURRENCY)
                    .try_for_each(|runs| pages.send(runs))
                    .await?;
            }
            Ok(())
        })
        .await
    }

    /// Incremental `pipeline-run`, as the Python integration reads it: per project, the runs
    /// Analytics says completed since `since` (`CompletedDate ge`), each read with `GET
    /// …/pipelines/{id}/runs/{runId}` and its pipeline with `GET …/pipelines/{id}` (once per
    /// pipeline and project), built as the full read builds them. A project whose Analytics
    /// answers 403 or 404 (Analytics off, not onboarded, no permission) is skipped with a
    /// warning, as the Python integration skips it; a run or pipeline gone in between is left
    /// out; any other error fails the kind, so its cursor stays.
    async fn crawl_completed_pipeline_runs(
        &self,
        mut crawl: KindCrawl<'_>,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), CrawlError> {
        let since = &crate::cursors::iso(since);
        self.per_project(&mut crawl, |project_id, project, pages: Pages| async move {
            let (project_id, project, pages) = (&project_id, &project, &pages);
            let mut pipelines: HashMap<String, Option<Value>> = HashMap::new();
            let mut discovered = pin!(self.client.completed_pipeline_runs(project_id, since));
            loop {
                let rows = match discovered.try_next().await {
                    Ok(Some(rows)) => rows,
                    Ok(None) => break,
                    Err(e @ (AdoError::Forbidden { .. } | AdoError::NotFound { .. })) => {
                        tracing::warn!(
                            project = text(project, "name").unwrap_or("?"),
                            error = %e,
                            "skipping the Analytics pipeline runs of a project: Analytics is not enabled, the project is not onboarded, or access is denied"
                        );
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                };
                let refs: Vec<(String, String)> = rows.iter().filter_map(discovered_run).collect();
                // The pipelines of this page not read yet, a few at a time.
                let mut new_ids: Vec<String> = refs
                    .iter()
                    .map(|(pipeline, _)| pipeline)
                    .filter(|id| !pipelines.contains_key(*id))
                    .cloned()
                    .collect();
                new_ids.sort();
                new_ids.dedup();
                let read: Vec<(String, Option<Value>)> = stream::iter(new_ids)
                    .map(|id| async move {
                        let pipeline = unless_gone(
                            self.client
                                .pipeline(project_id, &PipelineId::new(id.clone()))
                                .await,
                        )?;
                        Ok::<_, AdoError>((id, pipeline))
                    })
                    .buffered(ENRICHMENT_CONCURRENCY)
                    .try_collect()
                    .await?;
                pipelines.extend(read);
                let pipelines = &pipelines;
                let runs: Vec<Option<Value>> = stream::iter(refs)
                    .map(|(pipeline_id, run_id)| async move {
                        let Some(Some(pipeline)) = pipelines.get(&pipeline_id) else {
                            return Ok(None);
                        };
                        let run = unless_gone(
                            self.client
                                .pipeline_run(
                                    project_id,
                                    &PipelineId::new(pipeline_id),
                                    &BuildId::new(run_id),
                                )
                                .await,
                        )?;
                        Ok::<_, AdoError>(run.map(|run| items::pipeline_run(run, project, pipeline)))
                    })
                    .buffered(ENRICHMENT_CONCURRENCY)
                    .try_collect()
                    .await?;
                pages.send(runs.into_iter().flatten().collect()).await?;
            }
            Ok(())
        })
        .await
    }

    pub(crate) async fn crawl_pipeline_stages(
        &self,
        mut crawl: KindCrawl<'_>,
    ) -> Result<(), CrawlError> {
        let cache = crawl.cache;
        self.per_project(&mut crawl, |project_id, project, pages: Pages| async move {
            let project_id = &project_id;
            let project = &project;
            // The listing `build` reads (shared with it page by page).
            let mut listing = pin!(self.shared_builds(cache, project_id));
            while let Some(builds) = listing.try_next().await? {
                let stages: Vec<Vec<Value>> = stream::iter(builds)
                    .map(|build| async move {
                        let Some(id) = id_text(&build, "id").map(BuildId::new) else {
                            return Ok(Vec::new());
                        };
                        // `__build` is the build as the `build` kind has it (with
                        // `__projectId` and `__project`), as the Python integration nests it.
                        let enriched = items::project_list_item(Kind::Build, build, project);
                        let records =
                            unless_gone(self.client.build_timeline_records(project_id, &id).await)?
                                .unwrap_or_default();
                        Ok::<_, AdoError>(
                            records
                                .into_iter()
                                .filter(items::is_stage)
                                .map(|r| items::pipeline_stage(r, project, &enriched))
                                .collect(),
                        )
                    })
                    .buffered(ENRICHMENT_CONCURRENCY)
                    .try_collect()
                    .await?;
                pages.send(stages.into_iter().flatten().collect()).await?;
            }
            Ok(())
        })
        .await
    }

    pub(crate) async fn crawl_pipeline_deployments(
        &self,
        mut crawl: KindCrawl<'_>,
    ) -> Result<(), CrawlError> {
        let top = self.limits.page;
        let cache = crawl.cache;
        self.per_project(&mut crawl, |project_id, project, pages: Pages| async move {
            let project_id = &project_id;
            let (project, pages) = (&project, &pages);
            // The list `environment` reads too: once per project.
            let list = self
                .shared_project_list(cache, project_id, super::pipelines::ENVIRONMENTS)
                .await?;
            {
                stream::iter(list.iter())
                    .map(|environment| async move {
                        let Some(id) = id_text(&environment, "id").map(EnvironmentId::new) else {
                            return Ok(());
                        };
                        // The environment's project reference, as the Python integration
                        // sets it; the project of the list when the environment has none.
                        let owner = environment
                            .get("project")
                            .filter(|p| p.is_object())
                            .unwrap_or(project);
                        let mut records_token: Option<String> = None;
                        loop {
                            let Some(records) = unless_gone(
                                self.client
                                    .deployment_records_page(
                                        project_id,
                                        &id,
                                        top,
                                        records_token.as_deref(),
                                    )
                                    .await,
                            )?
                            else {
                                return Ok(());
                            };
                            pages
                                .send(
                                    records
                                        .items
                                        .into_iter()
                                        .map(|r| enrich(r, "__project", owner))
                                        .collect(),
                                )
                                .await?;
                            match records.continuation_token {
                                Some(next) if Some(&next) != records_token.as_ref() => {
                                    records_token = Some(next)
                                }
                                _ => return Ok::<(), AdoError>(()),
                            }
                        }
                    })
                    .buffer_unordered(ENRICHMENT_CONCURRENCY)
                    .try_collect::<Vec<()>>()
                    .await?;
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_change_is_chosen_by_instant_not_by_position() {
        let changes = [
            json!({"id": "c", "timestamp": "2026-03-01T10:00:00Z"}),
            json!({"id": "a", "timestamp": "2026-03-01T08:00:00.5+00:00"}),
            json!({"id": "b", "timestamp": "2026-03-01T09:00:00Z"}),
        ];
        let earliest = changes
            .iter()
            .fold(None::<&Value>, |e, c| match e {
                Some(e) if !earlier(c, e) => Some(e),
                _ => Some(c),
            })
            .expect("one");
        let first = first_commit_from_changes(earliest, 3);
        assert_eq!(first["__sha"], "a");
        assert_eq!(first["__timestamp"], "2026-03-01T08:00:00.5+00:00");
        assert_eq!(first["__commitCount"], 3);
        assert_eq!(id_text(&json!({"id": 7}), "id").as_deref(), Some("7"));
    }
}
