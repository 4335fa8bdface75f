//! The kinds the crawler reads, one module per family ([`git`]: repositories, their policies and
//! pull requests; [`work`]: boards, columns, work items; [`teams`]: teams, members, iterations,
//! area paths; [`identity`]: users, groups, group members; [`releases`]; [`pipelines`]:
//! pipelines, builds, environments, release definitions and deployments, branches; [`runs`]:
//! pipeline runs, stages, deployments and pipeline/build enrichment; [`test_runs`];
//! [`security`]: Advanced Security alerts; [`files`], [`folders`] and [`wikis`]: Git content,
//! with [`glob`] for their patterns), and the fan-out
//! they share: per project (or per repository) concurrently within the client's request
//! budget, every page handed to the publisher as it arrives through a bounded channel.
//!
//! Failure semantics, the same for every kind: a 403 for one project or repository skips it
//! with a warning and marks the kind failed; a 404 means the object went away between the list
//! and the read, and is skipped; a refused token stops the whole crawl; any other error marks
//! the kind failed (no stale entity of a failed kind is deleted).

pub(crate) mod files;
pub(crate) mod folders;
mod git;
pub(crate) mod gitops;
mod glob;
mod identity;
pub(crate) mod items;
mod pipelines;
mod projects;
mod releases;
mod runs;
mod security;
mod teams;
mod test_runs;
pub(crate) mod wikis;
mod work;

pub(crate) use git::repository_units;

use std::future::Future;
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use futures_util::{StreamExt, stream};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::ado::AdoError;
use crate::crawl_context::{CONCURRENT_UNITS, CrawlError, Crawler, KindReport, ResyncCache};
use crate::plan::KindPlan;
use adoport_shared::messages::ResyncId;

/// Where a unit's pages go: a bounded channel to the publisher (back-pressure keeps memory flat).
pub(crate) struct Pages {
    tx: mpsc::Sender<Vec<Value>>,
}

impl Pages {
    pub(crate) async fn send(&self, items: Vec<Value>) -> Result<(), AdoError> {
        if items.is_empty() {
            return Ok(());
        }
        self.tx
            .send(items)
            .await
            .map_err(|_| AdoError::ShuttingDown)
    }
}

/// What went wrong across the units of one kind.
#[derive(Default)]
struct Failures {
    fatal: Option<AdoError>,
    messages: Vec<String>,
}

/// `__project` and friends: adds `key: value` to an item object.
pub(crate) fn enrich(mut item: Value, key: &str, value: &Value) -> Value {
    if let Value::Object(map) = &mut item {
        map.insert(key.to_string(), value.clone());
    }
    item
}

pub(crate) fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

impl Crawler {
    /// Crawls a kind this module knows; `None` for a kind it does not.
    pub(crate) async fn crawl_kind(
        &self,
        resync_id: ResyncId,
        plan: &KindPlan,
        cache: &mut ResyncCache,
        report: &mut KindReport,
    ) -> Option<Result<(), CrawlError>> {
        let crawl: BoxFuture<'_, Result<(), CrawlError>> = match plan.kind.as_str() {
            "repository" => Box::pin(self.crawl_repositories(resync_id, plan, cache, report)),
            "repository-policy" => Box::pin(self.crawl_policies(resync_id, cache, report)),
            "pull-request" => Box::pin(self.crawl_pull_requests(resync_id, plan, cache, report)),
            "team" => Box::pin(self.crawl_teams(resync_id, plan, report)),
            "member" => Box::pin(self.crawl_members(resync_id, report)),
            "iteration" => Box::pin(self.crawl_iterations(resync_id, cache, report)),
            "area-path" => Box::pin(self.crawl_area_paths(resync_id, plan, cache, report)),
            "user" => Box::pin(self.crawl_users(resync_id, plan, report)),
            "group" => Box::pin(self.crawl_groups(resync_id, report)),
            "group-member" => Box::pin(self.crawl_group_members(resync_id, report)),
            "board" => Box::pin(self.crawl_boards(resync_id, cache, report)),
            "column" => Box::pin(self.crawl_columns(resync_id, cache, report)),
            "work-item" => Box::pin(self.crawl_work_items(resync_id, plan, cache, report)),
            "release" => Box::pin(self.crawl_releases(resync_id, cache, report)),
            "branch" => Box::pin(self.crawl_branches(resync_id, cache, report)),
            "pipeline-run" => Box::pin(self.crawl_pipeline_runs(resync_id, cache, report)),
            "pipeline-stage" => Box::pin(self.crawl_pipeline_stages(resync_id, cache, report)),
            "pipeline-deployment" => {
                Box::pin(self.crawl_pipeline_deployments(resync_id, cache, report))
            }
            "test-run" => Box::pin(self.crawl_test_runs(resync_id, plan, cache, report)),
            "advanced-security-alert" => {
                Box::pin(self.crawl_security_alerts(resync_id, plan, cache, report))
            }
            "file" => Box::pin(self.crawl_files(resync_id, plan, cache, report)),
            "folder" => Box::pin(self.crawl_folders(resync_id, plan, cache, report)),
            "wiki" => Box::pin(self.crawl_wikis(resync_id, plan, cache, report)),
            adoport_shared::messages::GITOPS_KIND => {
                Box::pin(self.crawl_gitops(resync_id, plan, cache, report))
            }
            kind if pipelines::is_list_kind(kind) => {
                Box::pin(self.crawl_project_list(resync_id, plan, cache, report))
            }
            _ => return None,
        };
        Some(crawl.await)
    }

    /// Runs `fetch` for every unit, `CONCURRENT_UNITS` at a time, publishing each page it
    /// sends as it arrives. Per-unit failures mark the kind failed (see the module docs).
    pub(crate) async fn fan_out<T, F, Fut>(
        &self,
        resync_id: ResyncId,
        kind: &str,
        units: Vec<(String, T)>,
        report: &mut KindReport,
        fetch: F,
    ) -> Result<(), CrawlError>
    where
        F: Fn(T, Pages) -> Fut,
        Fut: Future<Output = Result<(), AdoError>>,
    {
        let (tx, mut rx) = mpsc::channel::<Vec<Value>>(CONCURRENT_UNITS);
        let failures = Mutex::new(Failures::default());
        let fetch = &fetch;
        let failures_ref = &failures;
        let producer = async move {
            stream::iter(units)
                .for_each_concurrent(CONCURRENT_UNITS, |(label, unit)| {
                    let pages = Pages { tx: tx.clone() };
                    async move {
                        let outcome = fetch(unit, pages).await;
                        let mut failures = failures_ref.lock().unwrap_or_else(|p| p.into_inner());
                        match outcome {
                            Ok(()) => {}
                            Err(AdoError::NotFound { url, .. }) => {
                                tracing::debug!(kind, unit = %label, %url, "gone between list and read; skipped");
                            }
                            Err(e @ AdoError::Forbidden { .. }) => {
                                tracing::warn!(kind, unit = %label, error = %e, "access denied; skipped, and the kind is marked failed so that none of its entities are deleted");
                                failures.messages.push(format!("{label}: {e}"));
                            }
                            Err(
                                e @ (AdoError::Unauthorized { .. }
                                | AdoError::UntrustedCertificate { .. }
                                | AdoError::ShuttingDown),
                            ) => {
                                if failures.fatal.is_none() {
                                    failures.fatal = Some(e);
                                }
                            }
                            Err(e) => {
                                tracing::warn!(kind, unit = %label, error = %e, "could not read; the kind is marked failed");
                                failures.messages.push(format!("{label}: {e}"));
                            }
                        }
                    }
                })
                .await;
            drop(tx);
        };
        let consumer = async {
            while let Some(page) = rx.recv().await {
                self.publish(resync_id, kind, page, report).await?;
            }
            Ok::<(), CrawlError>(())
        };
        let ((), published) = tokio::join!(producer, consumer);
        published?;
        let failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Some(fatal) = failures.fatal {
            return Err(CrawlError::Ado(fatal));
        }
        if !failures.messages.is_empty() {
            let count = failures.messages.len();
            let first = failures.messages.into_iter().next().unwrap_or_default();
            report.failure = Some(format!(
                "{count} unit(s) of kind {kind} could not be read, e.g. {first}"
            ));
        }
        Ok(())
    }

    /// The projects of this resync as fan-out units (label = project name).
    pub(crate) async fn project_units(
        &self,
        cache: &mut ResyncCache,
    ) -> Result<Vec<(String, Value)>, CrawlError> {
        let projects = self.project_list(&mut cache.projects).await?;
        Ok(projects
            .into_iter()
            .map(|p| {
                let label = format!("project {}", text(&p, "name").unwrap_or("?"));
                (label, p)
            })
            .collect())
    }
}
