//! The resync crawler: reads every kind the mapping asks for from Azure DevOps and publishes the
//! items as raw events, page by page, as they arrive.
//!
//! Memory stays flat whatever the organization's size: a page is published (and confirmed by
//! the broker) before the next one is held. Projects are listed once per resync and shared by
//! the kinds that hang off them; independent projects are read concurrently, within the
//! client's request budget.
//!
//! A kind this version cannot crawl, or that failed part-way, is reported as failed: a later
//! reconciliation must not delete entities on the strength of an incomplete crawl.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::{Map, Value};

use crate::ado::organization::OrganizationStamp;
use crate::ado::{AdoClient, AdoError};
use crate::examples::ExampleSampler;
use adoport_shared::bus::{Bus, BusError, Destination, Outgoing};
use adoport_shared::mapping_versions::MappingVersions;
use adoport_shared::messages::{
    AttemptId, MappingVersionId, Origin, RawAction, RawEvent, ResyncId, encode,
};
use adoport_shared::metrics::ResyncStats;
use adoport_shared::port_app_config::PortAppConfig;

/// Projects whose sub-resources are read at the same time.
const CONCURRENT_PROJECTS: usize = crate::kinds::CONCURRENT_UNITS;

/// One kind to crawl and the selector options its resources give (kind-specific fields such
/// as `defaultTeam`, `includedFiles`; `query` is transform's business).
#[derive(Debug, Clone, PartialEq)]
pub struct KindPlan {
    pub kind: String,
    pub selectors: Vec<Map<String, Value>>,
}

impl KindPlan {
    /// The kinds a mapping asks for, in mapping order, with their resources' selector options.
    pub fn for_mapping(mapping: &PortAppConfig) -> Vec<KindPlan> {
        mapping
            .kinds()
            .into_iter()
            .map(|kind| KindPlan {
                kind: kind.to_string(),
                selectors: mapping
                    .resources_of_kind(kind)
                    .map(|(_, resource)| resource.selector.options.clone())
                    .collect(),
            })
            .chain(crate::gitops::GitopsPlan::kind_plan(mapping))
            .collect()
    }

    /// Whether any resource of this kind sets a boolean selector option (`true` or `'true'`).
    pub fn flag(&self, name: &str) -> bool {
        self.selectors.iter().any(|s| match s.get(name) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(text)) => text.trim().eq_ignore_ascii_case("true"),
            _ => false,
        })
    }
}

/// The kinds of the mapping version in force, as the webhook receiver reads them for each
/// event: following the process's mapping versions (re-planned once per new version), or fixed
/// (tests and tools). Cheap to clone.
#[derive(Clone)]
pub struct KindPlans {
    versions: Option<MappingVersions>,
    /// The plan of the version it was last asked for.
    planned: Arc<std::sync::Mutex<Planned>>,
}

/// A version's plan (`None`: a fixed plan).
type Planned = (Option<MappingVersionId>, Arc<Vec<KindPlan>>);

impl KindPlans {
    /// Always these kinds.
    pub fn fixed(plans: Vec<KindPlan>) -> Self {
        Self {
            versions: None,
            planned: Arc::new(std::sync::Mutex::new((None, Arc::new(plans)))),
        }
    }

    /// The kinds of whichever version is in force.
    pub fn following(versions: MappingVersions) -> Self {
        Self {
            versions: Some(versions),
            planned: Arc::new(std::sync::Mutex::new((None, Arc::new(Vec::new())))),
        }
    }

    /// The kinds to handle now, in mapping order.
    pub fn current(&self) -> Arc<Vec<KindPlan>> {
        let mut planned = self.planned.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(versions) = &self.versions {
            let version = versions.current();
            if planned.0.as_ref() != Some(&version.id) {
                *planned = (
                    Some(version.id.clone()),
                    Arc::new(KindPlan::for_mapping(&version.config)),
                );
            }
        }
        planned.1.clone()
    }
}

/// Which crawl this is: the resync, this attempt at crawling it, and the mapping version it
/// crawls with. Stamped on every raw event the crawl publishes, so that the coordinator counts
/// only the attempt that finished and transform maps with the crawl's mapping version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrawlStamp {
    pub resync_id: ResyncId,
    pub attempt: AttemptId,
    pub mapping_version: Option<MappingVersionId>,
    /// When the attempt started: the `observed_at` of every raw event it publishes.
    ///
    /// An item is published after everything it is built from has been read (a repository's
    /// files, a build's first commit …), seconds or minutes after the read that listed it. A
    /// webhook re-read of the same object in that gap holds newer data, and publish keeps the
    /// newer observation of an entity: so the crawl must not claim a later time than its first
    /// read, or its older copy would overwrite the webhook's. The attempt's start is earlier
    /// than any of its reads; a change the crawl saw after a webhook's read has a webhook of its
    /// own, and the next resync repairs what a lost webhook left behind.
    pub observed_at: DateTime<Utc>,
}

impl CrawlStamp {
    /// A new attempt at `resync_id` starting now, with no mapping version named (tools and
    /// tests).
    pub fn new(resync_id: ResyncId) -> Self {
        Self {
            resync_id,
            attempt: AttemptId::new(),
            mapping_version: None,
            observed_at: Utc::now(),
        }
    }
}

/// Whether a crawl may still publish: false once the resync request it runs for was taken
/// away from this process (see [`crate::lease`]). Checked before every page.
#[derive(Clone)]
pub struct CrawlFence(Option<Arc<dyn Fn() -> bool + Send + Sync>>);

impl CrawlFence {
    /// A crawl that holds no request (tools and tests): never fenced off.
    pub fn none() -> Self {
        Self(None)
    }

    pub fn new(holds: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(holds)))
    }

    fn holds(&self) -> bool {
        self.0.as_ref().is_none_or(|holds| holds())
    }
}

/// What the crawler found for one kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindReport {
    /// Raw items published.
    pub items: u64,
    /// Raw events published (pages).
    pub events: u64,
    /// Why the kind is incomplete, when it is.
    pub failure: Option<String>,
}

/// The outcome of one resync's crawl.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrawlReport {
    pub kinds: BTreeMap<String, KindReport>,
}

impl CrawlReport {
    pub fn items(&self) -> u64 {
        self.kinds.values().map(|k| k.items).sum()
    }

    pub fn failed_kinds(&self) -> Vec<&str> {
        self.kinds
            .iter()
            .filter(|(_, k)| k.failure.is_some())
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

/// Why a crawl stopped as a whole (a kind's own failure is recorded in its report instead).
#[derive(Debug, thiserror::Error)]
pub enum CrawlError {
    #[error(transparent)]
    Ado(#[from] AdoError),
    #[error("could not publish raw events: {0}")]
    Bus(#[from] BusError),
    #[error(
        "the resync request was taken away from this crawler (its delivery was lost); the crawl stopped and the broker hands the request out again"
    )]
    LeaseLost,
}

impl CrawlError {
    /// Whether the crawl as a whole stops (nothing more can be done by it).
    fn stops_crawl(&self) -> bool {
        match self {
            CrawlError::Ado(e) => e.stops_crawl(),
            CrawlError::Bus(_) | CrawlError::LeaseLost => true,
        }
    }
}

/// Page sizes the crawler asks for. The defaults are the largest the APIs allow; tests lower
/// them to cross page boundaries with little data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrawlLimits {
    /// `$top` of a WIQL query; the next id range starts after the last id when a query
    /// returns this many (Azure DevOps refuses results over 20,000).
    pub wiql_page: usize,
    /// `$top` of continuation-token lists (releases).
    pub page: usize,
}

impl Default for CrawlLimits {
    fn default() -> Self {
        Self {
            wiql_page: 19_999,
            page: 100,
        }
    }
}

/// Kinds read repository by repository, from the repository list.
const REPOSITORY_DERIVED_KINDS: &[&str] = &[
    "repository-policy",
    "pull-request",
    "branch",
    "advanced-security-alert",
    "file",
    "folder",
];

/// What one resync reads once and shares between kinds.
#[derive(Debug, Default)]
pub(crate) struct ResyncCache {
    pub(crate) projects: Option<Vec<Value>>,
    /// Kept only when a later kind of the plan reads it (`keep_repositories`): it grows with
    /// the organization, and the `repository` kind alone must not hold it.
    pub(crate) repositories: Option<Vec<Value>>,
    pub(crate) keep_repositories: bool,
    /// Boards with `__project`, for `board` and `column`.
    pub(crate) boards: Option<Vec<Value>>,
}

/// Reads Azure DevOps and publishes raw events.
pub struct Crawler {
    pub(crate) client: AdoClient,
    bus: Bus,
    pub(crate) items_per_event: usize,
    pub(crate) limits: CrawlLimits,
    /// Items per kind in the previous crawl of this process, to tell an empty answer that
    /// follows a full one (suspicious) from a confirmed empty kind.
    previous_items: std::sync::Mutex<BTreeMap<String, u64>>,
    /// Resync progress for `/metrics` (items crawled per kind as they are published).
    pub(crate) resync_stats: ResyncStats,
    /// Raw data examples for Port, when `sendRawDataExamples` is on.
    examples: Option<ExampleSampler>,
    /// Projects with any of these tags are left out (see [`crate::project_tags`]).
    pub(crate) excluded_tags: Vec<String>,
    /// The crawl running now (a crawler runs one at a time): its raw events carry the stamp,
    /// and it publishes only while the fence holds.
    running: std::sync::Mutex<Option<(CrawlStamp, CrawlFence)>>,
}

impl Crawler {
    pub fn new(client: AdoClient, bus: Bus, items_per_event: usize) -> Self {
        Self {
            client,
            bus,
            items_per_event: items_per_event.max(1),
            limits: CrawlLimits::default(),
            previous_items: std::sync::Mutex::new(BTreeMap::new()),
            resync_stats: ResyncStats::default(),
            examples: None,
            excluded_tags: Vec::new(),
            running: std::sync::Mutex::new(None),
        }
    }

    /// Sends the first items of each kind in each resync to Port as raw data examples.
    pub fn with_examples(mut self, sampler: ExampleSampler) -> Self {
        self.examples = Some(sampler);
        self
    }

    /// Reports resync progress into `stats` (the process's `/metrics`).
    pub fn with_resync_stats(mut self, stats: ResyncStats) -> Self {
        self.resync_stats = stats;
        self
    }

    /// Resync progress: started, finished, items crawled per kind.
    pub fn resync_stats(&self) -> &ResyncStats {
        &self.resync_stats
    }

    /// Uses other page sizes (tests).
    pub fn with_limits(mut self, limits: CrawlLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The client this crawler reads with (its request counts, for the benchmark).
    pub fn client(&self) -> &AdoClient {
        &self.client
    }

    /// A kind that published items in the previous crawl and none now is suspicious: the
    /// empty answer is only believed (and its entities deleted) when the next crawl confirms it.
    fn check_suspiciously_empty(&self, kind: &str, report: &mut KindReport) {
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
                "kind {kind} returned no items although the previous resync of this process published {before}; not treating this as \"everything was deleted\" until the next resync confirms it"
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
                .any(|k| REPOSITORY_DERIVED_KINDS.contains(&k.kind.as_str())),
            ..ResyncCache::default()
        };
        for kind in plan {
            let mut kind_report = KindReport::default();
            let outcome = match kind.kind.as_str() {
                "project" => {
                    self.crawl_projects(resync_id, kind, &mut cache.projects, &mut kind_report)
                        .await
                }
                other => match self
                    .crawl_kind(resync_id, kind, &mut cache, &mut kind_report)
                    .await
                {
                    Some(outcome) => outcome,
                    None => {
                        tracing::warn!(
                            kind = other,
                            "this version does not crawl kind {other}; its entities are left as they are"
                        );
                        kind_report.failure =
                            Some(format!("kind {other} is not crawled by this version"));
                        Ok(())
                    }
                },
            };
            match outcome {
                Ok(()) => {}
                Err(ref e) if e.stops_crawl() => {
                    return outcome.map(|_| report);
                }
                Err(e) => {
                    tracing::warn!(kind = %kind.kind, error = %e, "kind failed; its stale entities will not be deleted");
                    kind_report.failure = Some(e.to_string());
                }
            }
            self.check_suspiciously_empty(&kind.kind, &mut kind_report);
            tracing::info!(
                kind = %kind.kind,
                items = kind_report.items,
                events = kind_report.events,
                failed = kind_report.failure.is_some(),
                "kind crawled"
            );
            report.kinds.insert(kind.kind.clone(), kind_report);
        }
        Ok(report)
    }

    pub(crate) async fn publish(
        &self,
        resync_id: ResyncId,
        kind: &str,
        mut items: Vec<Value>,
        report: &mut KindReport,
    ) -> Result<(), CrawlError> {
        let stamp = OrganizationStamp::new(self.client.organization_url());
        items.iter_mut().for_each(|item| stamp.apply(item));
        let mut messages = Vec::new();
        if let Some(examples) = self
            .examples
            .as_ref()
            .and_then(|sampler| sampler.sample(resync_id, kind, &items))
        {
            messages.push(Outgoing::new(
                Destination::ResyncProgress,
                encode(&examples),
            ));
        }
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .filter(|(s, _)| s.resync_id == resync_id);
        if running.as_ref().is_some_and(|(_, fence)| !fence.holds()) {
            return Err(CrawlError::LeaseLost);
        }
        let stamp = running.map(|(stamp, _)| stamp);
        for chunk in items.chunks(self.items_per_event) {
            let mut event = RawEvent::new(
                kind,
                Origin::Resync { resync_id },
                self.client.organization_url(),
                RawAction::Upsert,
                chunk.to_vec(),
            );
            if let Some(stamp) = &stamp {
                event.attempt = Some(stamp.attempt);
                event.mapping_version = stamp.mapping_version.clone();
                event.observed_at = stamp.observed_at;
            }
            report.items += chunk.len() as u64;
            report.events += 1;
            messages.push(Outgoing::new(Destination::Raw, encode(&event)));
        }
        self.bus.publish_all(messages).await?;
        self.resync_stats.crawled(kind, items.len() as u64);
        Ok(())
    }

    /// The project references of the organization, listed once per resync.
    pub(crate) async fn project_list(
        &self,
        cache: &mut Option<Vec<Value>>,
    ) -> Result<Vec<Value>, CrawlError> {
        if let Some(projects) = cache {
            return Ok(projects.clone());
        }
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.client.projects_page(token.as_deref()).await?;
            all.extend(page.items);
            match page.continuation_token {
                Some(next) if Some(&next) != token.as_ref() => token = Some(next),
                _ => break,
            }
        }
        let all = self.without_excluded_projects(all).await;
        *cache = Some(all.clone());
        Ok(all)
    }

    async fn crawl_projects(
        &self,
        resync_id: ResyncId,
        plan: &KindPlan,
        cache: &mut Option<Vec<Value>>,
        report: &mut KindReport,
    ) -> Result<(), CrawlError> {
        let projects = self.project_list(cache).await?;
        if !plan.flag("defaultTeam") {
            for page in projects.chunks(self.items_per_event) {
                self.publish(resync_id, "project", page.to_vec(), report)
                    .await?;
            }
            return Ok(());
        }
        // The list omits `defaultTeam`: read each project in full, page by page.
        for page in projects.chunks(self.items_per_event) {
            let full: Vec<Value> = stream::iter(page.iter().filter_map(project_id))
                .map(|id| async move {
                    match self.client.project(&id).await {
                        Ok(project) => Ok(Some(project)),
                        // Deleted between list and read: nothing to sync.
                        Err(AdoError::NotFound { .. }) => Ok(None),
                        Err(e) => Err(e),
                    }
                })
                .buffered(CONCURRENT_PROJECTS)
                .try_filter_map(|p| async move { Ok(p) })
                .try_collect()
                .await?;
            self.publish(resync_id, "project", full, report).await?;
        }
        Ok(())
    }
}

fn project_id(project: &Value) -> Option<String> {
    project.get("id").and_then(Value::as_str).map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_receivers_plan_follows_the_mapping_version_in_force() {
        let mapping = |kinds: &[&str]| {
            let resources: Vec<Value> = kinds
                .iter()
                .map(|kind| {
                    json!({"kind": kind, "selector": {"query": "true"},
                    "port": {"entity": {"mappings": {"identifier": ".id", "blueprint": "\"b\""}}}})
                })
                .collect();
            json!({ "resources": resources, "specPath": [] })
        };
        let config = PortAppConfig::from_json_value(mapping(&["project"])).expect("mapping");
        let versions = MappingVersions::new(config);
        let plans = KindPlans::following(versions.clone());
        let kinds = |plans: &KindPlans| -> Vec<String> {
            plans.current().iter().map(|k| k.kind.clone()).collect()
        };
        assert_eq!(kinds(&plans), ["project"]);
        versions.offer(mapping(&["project", "branch"]), |_| Ok(()));
        assert_eq!(kinds(&plans), ["project", "branch"]);
        assert_eq!(kinds(&KindPlans::fixed(Vec::new())), Vec::<String>::new());
    }

    #[test]
    fn flags_accept_booleans_and_quoted_booleans() {
        let plan = |v: Value| KindPlan {
            kind: "project".into(),
            selectors: vec![v.as_object().cloned().unwrap_or_default()],
        };
        assert!(plan(json!({"defaultTeam": "true"})).flag("defaultTeam"));
        assert!(plan(json!({"defaultTeam": true})).flag("defaultTeam"));
        assert!(!plan(json!({"defaultTeam": "false"})).flag("defaultTeam"));
        assert!(!plan(json!({})).flag("defaultTeam"));
    }
}
