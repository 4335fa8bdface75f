//! The crawler's harness, shared by the kind tests: the Azure DevOps simulator, a client, an
//! in-process bus and a crawler over them; [`CrawlHarness::crawl`] runs a plan and returns
//! the report and the items published per kind, [`CrawlHarness::crawl_ok`] the items of a
//! crawl no kind of which failed.

use std::collections::BTreeMap;
use std::time::Duration;

use adoport_ingest::ado::AdoClient;
use adoport_ingest::{CrawlLimits, CrawlReport, Crawler, KindPlan};
use adoport_shared::bus::{Bus, Subscription};
use adoport_shared::messages::{RawEvent, ResyncId, decode};
use adoport_shared::topology::{Topology, WorkQueue};
use adoport_sim::ado::{AdoSim, AdoSimConfig};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub struct CrawlHarness {
    pub sim: AdoSim,
    pub client: AdoClient,
    pub bus: Bus,
    pub crawler: Crawler,
    deliveries: tokio::sync::Mutex<Subscription>,
}

/// A crawler over a simulator seeded as `config` says, signing in with `pat`, publishing on an
/// in-process bus whose queue names start with `prefix`; `configure` sets its limits and
/// options.
pub async fn crawl_harness(
    config: AdoSimConfig,
    pat: &str,
    prefix: &str,
    configure: impl FnOnce(Crawler) -> Crawler,
) -> CrawlHarness {
    crawl_harness_in_flight(config, pat, prefix, 8, configure).await
}

/// [`crawl_harness`] with a client that may have `max_in_flight` requests in flight.
pub async fn crawl_harness_in_flight(
    config: AdoSimConfig,
    pat: &str,
    prefix: &str,
    max_in_flight: usize,
    configure: impl FnOnce(Crawler) -> Crawler,
) -> CrawlHarness {
    let sim = AdoSim::start(config).await.expect("simulator starts");
    let shutdown = CancellationToken::new();
    let client = super::client_in_flight(&sim, pat, max_in_flight, &shutdown);
    let bus = Bus::memory(Topology::new(prefix, 2), shutdown);
    let crawler = configure(Crawler::new(client.clone(), bus.clone(), 50));
    let deliveries = bus.subscribe(WorkQueue::Raw, 64).await.expect("subscribe");
    CrawlHarness {
        sim,
        client,
        bus,
        crawler,
        deliveries: tokio::sync::Mutex::new(deliveries),
    }
}

/// The default limits with pages of `page` items.
pub fn pages(page: usize) -> CrawlLimits {
    CrawlLimits {
        page,
        ..CrawlLimits::default()
    }
}

/// The items of `kind` among a crawl's `items`, which must be `count` of them.
pub fn counted<'a>(items: &'a BTreeMap<String, Vec<Value>>, kind: &str, count: u64) -> &'a [Value] {
    let of_kind = &items[kind];
    assert_eq!(of_kind.len() as u64, count, "{kind}");
    of_kind
}

/// Why `kind` failed in `report` (it must have).
pub fn failure<'a>(report: &'a CrawlReport, kind: &str) -> &'a str {
    report.kinds[kind]
        .failure
        .as_deref()
        .unwrap_or_else(|| panic!("{kind} marked failed: {report:?}"))
}

/// The plan of `kind` with one selector.
pub fn plan(kind: &str, selector: Value) -> KindPlan {
    plan_with(kind, &[selector])
}

/// The plan of `kind` with `selectors`, one resource block each.
pub fn plan_with(kind: &str, selectors: &[Value]) -> KindPlan {
    KindPlan {
        kind: kind.to_string(),
        selectors: selectors
            .iter()
            .map(|s| s.as_object().cloned().unwrap_or_default())
            .collect(),
        since: None,
        resources: (0..selectors.len() as u32).collect(),
        whole_kind: true,
        positions: (0..selectors.len()).collect(),
    }
}

/// Runs `plan` on `crawler` and returns the report and the items it published per kind, read
/// from `deliveries` (the raw queue of the crawler's bus).
pub async fn crawl_with(
    crawler: &Crawler,
    deliveries: &mut Subscription,
    plan: &[KindPlan],
) -> (CrawlReport, BTreeMap<String, Vec<Value>>) {
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        crawler.crawl(ResyncId::new(), plan),
    )
    .await
    .expect("crawl within 60 s")
    .expect("crawl succeeds");
    let events: u64 = report.kinds.values().map(|k| k.events).sum();
    let mut items: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for event in next_events(deliveries, events as usize).await {
        items.entry(event.kind).or_default().extend(event.items);
    }
    (report, items)
}

/// The next `count` raw events from `deliveries`, acknowledged.
pub async fn next_events(deliveries: &mut Subscription, count: usize) -> Vec<RawEvent> {
    let mut out = Vec::new();
    for _ in 0..count {
        let delivery = tokio::time::timeout(Duration::from_secs(5), deliveries.next())
            .await
            .expect("event within 5 s")
            .expect("bus open");
        out.push(decode(&delivery.body).expect("raw event"));
        delivery.ack().await.expect("ack");
    }
    out
}

impl CrawlHarness {
    /// Crawls `plan` and returns the report and the items published per kind.
    pub async fn crawl(&self, plan: &[KindPlan]) -> (CrawlReport, BTreeMap<String, Vec<Value>>) {
        crawl_with(&self.crawler, &mut *self.deliveries.lock().await, plan).await
    }

    /// Crawls `plan`, expects no kind to fail, and returns the items published per kind.
    pub async fn crawl_ok(&self, plan: &[KindPlan]) -> BTreeMap<String, Vec<Value>> {
        let (report, items) = self.crawl(plan).await;
        assert_eq!(report.failed_kinds(), Vec::<&str>::new(), "{report:?}");
        items
    }

    /// Crawls `plan` (one kind's units, each of its own resources), expects no unit to fail,
    /// and returns the items published for each unit, by the first resource its events name.
    pub async fn crawl_by_resource(&self, plan: &[KindPlan]) -> BTreeMap<u32, Vec<Value>> {
        let report = tokio::time::timeout(
            Duration::from_secs(60),
            self.crawler.crawl(ResyncId::new(), plan),
        )
        .await
        .expect("crawl within 60 s")
        .expect("crawl succeeds");
        assert_eq!(report.failed_kinds(), Vec::<&str>::new(), "{report:?}");
        let events: u64 = report.kinds.values().map(|k| k.events).sum();
        let mut items: BTreeMap<u32, Vec<Value>> = BTreeMap::new();
        for event in self.next_events(events as usize).await {
            let resources = event
                .resources
                .expect("each unit's events name its resources");
            items.entry(resources[0]).or_default().extend(event.items);
        }
        items
    }

    /// Crawls `kind` once for every selector in one resync (a crawl unit each), expects no
    /// unit to fail, and returns each selector's items by its index, keyed by `key`.
    pub async fn crawl_selectors_together(
        &self,
        kind: &str,
        selectors: &[Value],
        key: impl Fn(&Value) -> String,
    ) -> BTreeMap<u32, BTreeMap<String, Value>> {
        let kinds: Vec<(&str, Value)> = (selectors.iter()).map(|s| (kind, s.clone())).collect();
        let plan = super::plans(&kinds);
        assert_eq!(plan.len(), selectors.len(), "one crawl unit per selector");
        (self.crawl_by_resource(&plan).await)
            .into_iter()
            .map(|(resource, items)| {
                let keyed = (items.iter())
                    .map(|item| (key(item), item.clone()))
                    .collect();
                (resource, keyed)
            })
            .collect()
    }

    /// Forbids the `index`th project of the simulator and returns its id.
    pub fn forbid_project(&self, index: usize) -> String {
        let forbidden = self.sim.projects()[index]["id"]
            .as_str()
            .expect("id")
            .to_string();
        self.sim.forbid_project(&forbidden);
        forbidden
    }

    /// The next `count` raw events on the queue, acknowledged.
    pub async fn next_events(&self, count: usize) -> Vec<RawEvent> {
        next_events(&mut *self.deliveries.lock().await, count).await
    }

    /// How many requests the simulator counted under route template `route`.
    pub fn requests(&self, route: &str) -> u64 {
        self.sim.requests().get(route).copied().unwrap_or(0)
    }

    /// Asserts that the simulator counted `expected` requests under route template `route`.
    pub fn assert_requests(&self, route: &str, expected: u64) {
        assert_eq!(self.requests(route), expected, "{route}");
    }
}
