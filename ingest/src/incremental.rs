//! Incremental sync, as Ocean's `sync_incremental` runs it: only the kinds the Python
//! integration reads incrementally ([`INCREMENTAL_KINDS`]), in mapping order, each read since
//! its cursor and upserted; nothing is reconciled (no deletes).
//!
//! - The cursor of a resource is kept in Port per `(kind, index)` ([`crate::cursors`]). A kind
//!   with several resources is read once, since the earliest of their cursors.
//! - A resource without a cursor starts `interval` before the run started
//!   (`OCEAN__INTEGRATION__INCREMENTAL_SYNC_INTERVAL`).
//! - After a kind's crawl published everything it read (confirmed by the broker, so it will be
//!   written), the cursors of its resources move to the run's start — not to its end, so what
//!   changed while the run read is read again next time. A kind that failed keeps its cursors,
//!   and the run stops there, as Ocean's does: the next run retries from the same point.
//! - Kinds the Python integration has no incremental handler for are not read at all.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::crawl_context::{CrawlError, CrawlFence, CrawlReport, CrawlStamp, KindReport};
use crate::crawlers::Crawlers;
use crate::cursors::{CursorStore, iso};
use crate::kind::Kind;
use crate::plan::KindPlan;
use adoport_shared::port_app_config::PortAppConfig;

/// The kinds the Python integration registers `on_incremental_resync` for, and how each reads
/// "since": work items (`[System.ChangedDate] >=` with `timePrecision=true`), builds
/// (`minTime`), releases (`minCreatedTime`), release deployments (`minModifiedTime`), test runs
/// (`minLastUpdatedDate`/`maxLastUpdatedDate` windows of 7 days), Advanced Security alerts
/// (`criteria.modifiedSince`) and pipeline runs (Analytics OData `CompletedDate ge`, each run
/// then read on its own: see [`crate::ado::analytics`]).
pub const INCREMENTAL_KINDS: [Kind; 7] = [
    Kind::WorkItem,
    Kind::Build,
    Kind::Release,
    Kind::ReleaseDeployment,
    Kind::PipelineRun,
    Kind::TestRun,
    Kind::AdvancedSecurityAlert,
];

/// What an incremental run needs besides the crawlers.
#[derive(Clone, Debug)]
pub struct Incremental {
    pub cursors: CursorStore,
    /// How far back a resource without a cursor starts.
    pub interval: Duration,
}

/// One kind of an incremental run: its plan (with `since` set) and its resources' indexes.
struct Step {
    plan: KindPlan,
    indexes: Vec<usize>,
}

impl Incremental {
    /// Runs the incremental kinds of `mapping`, in order, with cursors read and advanced in
    /// Port. Stops at the first kind that fails (its report says why; later kinds are not
    /// read and keep their cursors).
    pub async fn run(
        &self,
        crawlers: &Crawlers,
        stamp: &CrawlStamp,
        fence: &CrawlFence,
        mapping: &PortAppConfig,
    ) -> Result<CrawlReport, CrawlError> {
        let run_started_at = stamp.observed_at;
        let mut report = CrawlReport::default();
        let steps = steps(mapping);
        if steps.is_empty() {
            tracing::info!("no kind of the mapping is synced incrementally; nothing to do");
        }
        for step in steps {
            // A kind whose resources differ in selector has one step per crawl unit, reported
            // under the unit's key; cursors stay per kind and resource index.
            let kind = step.plan.kind.clone();
            let key = step.plan.key();
            let mut plan = step.plan;
            match self.since(&kind, &step.indexes, run_started_at).await {
                Ok(since) => plan.since = Some(since),
                Err(e) => {
                    tracing::error!(kind, error = %e, "incremental sync stopped: the cursor could not be read; the next run retries");
                    report.kinds.insert(key, failed(e.to_string()));
                    return Ok(report);
                }
            }
            tracing::info!(
                kind,
                cursor = %iso(plan.since.unwrap_or(run_started_at)),
                next_cursor = %iso(run_started_at),
                "incremental sync of kind started"
            );
            let crawled = crawlers
                .crawl_as(stamp, fence, std::slice::from_ref(&plan))
                .await?;
            let kind_report = crawled.kinds.get(&key).cloned().unwrap_or_default();
            if let Some(failure) = &kind_report.failure {
                tracing::error!(
                    kind,
                    failure,
                    "incremental sync failed — cursor not updated, the next run retries"
                );
                report.kinds.insert(key, kind_report);
                return Ok(report);
            }
            for &index in &step.indexes {
                if let Err(e) = self.cursors.save(&kind, index, run_started_at).await {
                    tracing::error!(kind, index, error = %e, "incremental sync stopped: the cursor could not be saved; the next run reads this kind again");
                    report.kinds.insert(key, failed(e.to_string()));
                    return Ok(report);
                }
            }
            tracing::info!(
                kind,
                items = kind_report.items,
                "incremental sync of kind completed"
            );
            report.kinds.insert(key, kind_report);
        }
        Ok(report)
    }

    /// The earliest cursor of the kind's resources (a missing one: `interval` before the run).
    async fn since(
        &self,
        kind: &str,
        indexes: &[usize],
        run_started_at: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, crate::cursors::CursorError> {
        let seed = run_started_at
            - chrono::Duration::from_std(self.interval).unwrap_or(chrono::Duration::minutes(15));
        let mut since = None::<DateTime<Utc>>;
        for &index in indexes {
            let cursor = self.cursors.get(kind, index).await?.unwrap_or(seed);
            since = Some(since.map_or(cursor, |s| s.min(cursor)));
        }
        Ok(since.unwrap_or(seed))
    }
}

/// The crawl units of the incremental kinds of `mapping`, in mapping order, each with the
/// indexes of the resources it is read for (whose cursors it reads and advances).
fn steps(mapping: &PortAppConfig) -> Vec<Step> {
    KindPlan::for_mapping(mapping)
        .into_iter()
        .filter(|plan| {
            plan.known()
                .is_some_and(|kind| INCREMENTAL_KINDS.contains(&kind))
        })
        .map(|plan| Step {
            indexes: plan.resources.iter().map(|&index| index as usize).collect(),
            plan,
        })
        .collect()
}

fn failed(failure: String) -> KindReport {
    KindReport {
        failure: Some(failure),
        ..KindReport::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_incremental_kinds_run_with_their_resources_indexes() {
        let mut mapping = adoport_shared::port_app_config::minimal_json(&[
            "project",
            "work-item",
            "repository",
            "build",
            "work-item",
        ]);
        mapping["specPath"] = serde_json::json!([]);
        let config = PortAppConfig::from_json_value(mapping).expect("mapping");
        let steps = steps(&config);
        let got: Vec<(&str, Vec<usize>)> = steps
            .iter()
            .map(|s| (s.plan.kind.as_str(), s.indexes.clone()))
            .collect();
        assert_eq!(got, [("work-item", vec![1, 4]), ("build", vec![3])]);
    }
}
