//! The resync crawl: reads every crawl unit of the plan (a kind with one selector, for the
//! mapping resources that share it) from Azure DevOps, each through its kind's module of
//! `crate::kinds`, and reports what each published. The top of the crawl: it runs the kinds,
//! which work with [`crate::crawl_context`].
//!
//! Units run at the same time, up to `ADOPORT__INGEST__CONCURRENT_KINDS` of them (started in
//! mapping order; the units of a kind whose units read together, such as `pull-request`'s,
//! start together and count as one), and within a unit independent projects or repositories are read at the same
//! time: every request waits for the organization's request budget (`crate::ado::budget`), so
//! more units keep more of it busy, never more than it allows; and the pages they hold share
//! the crawler's byte budget (`crate::page_budget`, `ADOPORT__INGEST__CRAWL_BUFFER_MIB`), so
//! more units never hold more memory. A mapping with
//! `createMissingRelatedEntities: false` is crawled one unit after another, in mapping order
//! ([`CrawlOrder`]). Projects, repositories and boards are read once per resync, by the first
//! unit that needs them, while the others that need them wait (`ResyncCache`, which keeps them
//! as JSON text; the repositories and boards only up to a byte limit each,
//! `REPOSITORY_LIST_BYTES` and `BOARD_LIST_BYTES`, past which each unit reads them itself); so
//! are the groups, each team's members and each page of builds, within a byte limit
//! (`crate::shared_reads`).
//!
//! A kind this version cannot crawl, or that failed part-way, is reported as failed: a later
//! reconciliation must not delete entities on the strength of an incomplete crawl.

use crate::crawl_context::{
    CrawlError, CrawlFence, CrawlReport, CrawlStamp, Crawler, KindReport, ResyncCache,
};
use crate::kinds;
use crate::plan::KindPlan;
use crate::shared_reads::{BoundedList, SharedReads};
use adoport_shared::messages::ResyncId;
use adoport_shared::port_app_config::PortAppConfig;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

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

    /// Crawls every planned kind as a new attempt at `resync_id`.
    pub async fn crawl(
        &self,
        resync_id: ResyncId,
        plan: &[KindPlan],
    ) -> Result<CrawlReport, CrawlError> {
        self.crawl_as(&CrawlStamp::new(resync_id), &CrawlFence::none(), plan)
            .await
    }

    /// Crawls every planned kind, up to `concurrent_kinds` at a time, stamping every raw
    /// event with `stamp` and publishing only while `fence` holds. Stops early only on a
    /// refused token, a broker that stays away or a lost request (then nothing more can be
    /// done: the units still running are dropped at once); other failures mark their kind.
    pub async fn crawl_as(
        &self,
        stamp: &CrawlStamp,
        fence: &CrawlFence,
        plan: &[KindPlan],
    ) -> Result<CrawlReport, CrawlError> {
        self.crawl_ordered(stamp, fence, plan, CrawlOrder::Concurrent)
            .await
    }

    /// [`Crawler::crawl_as`], with the units run as `order` says.
    pub async fn crawl_ordered(
        &self,
        stamp: &CrawlStamp,
        fence: &CrawlFence,
        plan: &[KindPlan],
        order: CrawlOrder,
    ) -> Result<CrawlReport, CrawlError> {
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((stamp.clone(), fence.clone()));
        let resync_id = stamp.resync_id;
        let cache = ResyncCache {
            keep_repositories: plan
                .iter()
                .filter_map(KindPlan::known)
                .any(|kind| kinds::spec(kind).repository_derived),
            repository_list_bytes: self.repository_list_bytes,
            board_list_bytes: self.board_list_bytes,
            groups: BoundedList::new(kinds::group_list_readers(plan) > 1, self.shared_read_bytes),
            team_members: SharedReads::new(
                kinds::team_member_readers(plan),
                self.shared_read_bytes,
            ),
            build_pages: SharedReads::new(kinds::build_list_readers(plan), self.shared_read_bytes),
            ..ResyncCache::default()
        };
        let at_once = match order {
            CrawlOrder::Concurrent => self.concurrent_kinds.max(1),
            CrawlOrder::MappingOrder => 1,
        };
        // Started in plan order; their reports are keyed by unit, whichever ends first.
        let mut waiting = plan;
        let mut running = FuturesUnordered::new();
        let mut report = CrawlReport::default();
        loop {
            while running.len() < at_once && !waiting.is_empty() {
                let units = kinds::crawled_at_once(waiting);
                waiting = &waiting[units.len()..];
                running.push(self.crawl_units(resync_id, units, &cache));
            }
            let Some(crawled) = running.next().await else {
                break;
            };
            // Returning drops the units still running: none of them reads or publishes again.
            report.kinds.extend(crawled?);
        }
        Ok(report)
    }

    /// Crawls units of the plan crawled at once (one, or every unit of a kind crawled
    /// together): their reports, or the error that stops the whole crawl.
    async fn crawl_units(
        &self,
        resync_id: ResyncId,
        units: &[KindPlan],
        cache: &ResyncCache,
    ) -> Result<Vec<(String, KindReport)>, CrawlError> {
        let mut reports: Vec<KindReport> = (units.iter())
            .map(|unit| KindReport {
                resources: unit.event_resources(),
                ..KindReport::default()
            })
            .collect();
        match units.first().and_then(KindPlan::known) {
            Some(known) => kinds::crawl(known, self, resync_id, units, cache, &mut reports).await?,
            None => {
                for (unit, report) in units.iter().zip(&mut reports) {
                    let other = &unit.kind;
                    tracing::warn!(
                        kind = %other,
                        "this version does not crawl kind {other}; its entities are left as they are"
                    );
                    report.failure = Some(format!("kind {other} is not crawled by this version"));
                }
            }
        }
        Ok(units
            .iter()
            .zip(reports)
            .map(|(unit, mut kind_report)| {
                // An incremental read finds nothing whenever nothing changed: not suspicious.
                if unit.since.is_none() {
                    self.check_suspiciously_empty(unit, &mut kind_report);
                }
                tracing::info!(
                    kind = %unit.kind,
                    resources = ?unit.resources,
                    items = kind_report.items,
                    events = kind_report.events,
                    failed = kind_report.failure.is_some(),
                    "kind crawled"
                );
                (unit.key(), kind_report)
            })
            .collect())
    }
}

/// Whether the units of a crawl may run at the same time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrawlOrder {
    /// Up to the crawler's `concurrent_kinds` at a time.
    Concurrent,
    /// One after another, in mapping order: when the mapping's `createMissingRelatedEntities`
    /// is off, Port refuses an entity whose relation target does not exist yet, and the
    /// Python integration relies on the kinds an entity relates to being synced before it.
    MappingOrder,
}

impl CrawlOrder {
    /// The order the mapping `config` needs.
    pub fn of(config: &PortAppConfig) -> Self {
        match config.create_missing_related_entities {
            true => CrawlOrder::Concurrent,
            false => CrawlOrder::MappingOrder,
        }
    }
}
