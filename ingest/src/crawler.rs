//! The resync crawl: reads every crawl unit of the plan (a kind with one selector, for the
//! mapping resources that share it) from Azure DevOps, in order, each through its kind's
//! module of `crate::kinds`, and reports what each published. The top of the crawl: it runs
//! the kinds, which work with [`crate::crawl_context`].
//!
//! Projects are listed once per resync and shared by the kinds that hang off them; independent
//! projects are read concurrently, within the client's request budget.
//!
//! A kind this version cannot crawl, or that failed part-way, is reported as failed: a later
//! reconciliation must not delete entities on the strength of an incomplete crawl.

use crate::crawl_context::{
    CrawlError, CrawlFence, CrawlReport, CrawlStamp, Crawler, KindReport, ResyncCache,
};
use crate::kinds;
use crate::plan::KindPlan;
use adoport_shared::messages::ResyncId;

impl Crawler {
    /// A unit that published items in the previous crawl and none now is suspicious: the
    /// empty answer is only believed (and its entities deleted) when the next crawl confirms it.
    fn check_suspiciously_empty(&self, unit: &KindPlan, report: &mut KindReport) {
        let key = unit.key();
        let kind = key.as_str();
        let mut previous = self
            .previous_items
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let before = previous.get(kind).copied().unwrap_or(0);
        if report.failure.is_none() && report.items == 0 && before > 0 {
            tracing::warn!(
                kind,
                before,
                "kind returned no items although the previous resync found some; marked failed until a second resync confirms it"
            );
            report.failure = Some(format!(
                "{} returned no items although the previous resync of this process published {before}; not treating this as \"everything was deleted\" until the next resync confirms it",
                unit.describe()
            ));
        }
        if report.failure.is_none() || report.items == 0 {
            previous.insert(kind.to_string(), report.items);
        }
    }

    /// Crawls every planned kind, in order, as a new attempt at `resync_id`.
    pub async fn crawl(
        &self,
        resync_id: ResyncId,
        plan: &[KindPlan],
    ) -> Result<CrawlReport, CrawlError> {
        self.crawl_as(&CrawlStamp::new(resync_id), &CrawlFence::none(), plan)
            .await
    }

    /// Crawls every planned kind, in order, stamping every raw event with `stamp` and
    /// publishing only while `fence` holds. Stops early only on a refused token, a broker that
    /// stays away or a lost request (then nothing more can be done); other failures mark
    /// their kind.
    pub async fn crawl_as(
        &self,
        stamp: &CrawlStamp,
        fence: &CrawlFence,
        plan: &[KindPlan],
    ) -> Result<CrawlReport, CrawlError> {
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((stamp.clone(), fence.clone()));
        let resync_id = stamp.resync_id;
        let mut report = CrawlReport::default();
        let mut cache = ResyncCache {
            keep_repositories: plan
                .iter()
                .filter_map(KindPlan::known)
                .any(|kind| kinds::spec(kind).repository_derived),
            ..ResyncCache::default()
        };
        for kind in plan {
            let mut kind_report = KindReport {
                resources: kind.event_resources(),
                ..KindReport::default()
            };
            let outcome = match kind.known() {
                Some(known) => {
                    kinds::crawl(known, self, resync_id, kind, &mut cache, &mut kind_report).await
                }
                None => {
                    let other = &kind.kind;
                    tracing::warn!(
                        kind = %other,
                        "this version does not crawl kind {other}; its entities are left as they are"
                    );
                    kind_report.failure =
                        Some(format!("kind {other} is not crawled by this version"));
                    Ok(())
                }
            };
            match outcome {
                Ok(()) => {}
                Err(ref e) if e.stops_crawl() => {
                    return outcome.map(|_| report);
                }
                Err(e) => {
                    let unit = kind.describe();
                    tracing::warn!(kind = %kind.kind, resources = ?kind.resources, error = %e, "{unit} failed; its stale entities will not be deleted");
                    kind_report.failure = Some(e.to_string());
                }
            }
            // An incremental read finds nothing whenever nothing changed: not suspicious.
            if kind.since.is_none() {
                self.check_suspiciously_empty(kind, &mut kind_report);
            }
            tracing::info!(
                kind = %kind.kind,
                resources = ?kind.resources,
                items = kind_report.items,
                events = kind_report.events,
                failed = kind_report.failure.is_some(),
                "kind crawled"
            );
            report.kinds.insert(kind.key(), kind_report);
        }
        Ok(report)
    }
}
