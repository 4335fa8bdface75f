//! The crawl units of a resync run at the same time (`ADOPORT__INGEST__CONCURRENT_KINDS`):
//! their requests overlap, the lists they share are read once (past a list's byte limit, once
//! by each unit), they publish what the units read one after another publish, a refused token
//! stops every running unit, and a mapping that needs its kinds in order
//! (`createMissingRelatedEntities: false`) gets them in order.

use std::collections::BTreeMap;
use std::time::Duration;

use adoport_ingest::{CrawlFence, CrawlLimits, CrawlOrder, CrawlStamp, Crawler, KindPlan};
use adoport_shared::messages::ResyncId;
use adoport_shared::port_app_config::PortAppConfig;
use adoport_sim::ScriptedAnswer;
use adoport_sim::ado::AdoSimConfig;
use serde_json::{Value, json};

mod support;

use support::crawl::{CrawlHarness, crawl_harness, crawl_harness_in_flight, plan};

async fn harness(config: AdoSimConfig, prefix: &str, concurrent_kinds: usize) -> CrawlHarness {
    harness_with(config, prefix, concurrent_kinds, |crawler| crawler).await
}

/// [`harness`] with `configure` applied to its crawler as well (a list limit, say).
async fn harness_with(
    config: AdoSimConfig,
    prefix: &str,
    concurrent_kinds: usize,
    configure: impl FnOnce(Crawler) -> Crawler,
) -> CrawlHarness {
    crawl_harness(config, "sim-pat", prefix, |crawler: Crawler| {
        configure(crawler)
            .with_concurrent_kinds(concurrent_kinds)
            .with_limits(CrawlLimits {
                page: 2,
                ..CrawlLimits::default()
            })
    })
    .await
}

/// One project whose every answer takes `latency`.
fn one_slow_project(latency: Duration) -> AdoSimConfig {
    AdoSimConfig {
        projects: 1,
        latency,
        ..AdoSimConfig::default()
    }
}

/// Four kinds that each read one project's lists one page after another: alone, each keeps
/// one request in flight.
fn one_request_at_a_time_kinds() -> Vec<KindPlan> {
    ["pipeline", "build", "environment", "release-definition"]
        .into_iter()
        .map(|kind| plan(kind, json!({})))
        .collect()
}

/// Items per kind, for comparing two crawls.
fn item_counts(items: &BTreeMap<String, Vec<Value>>) -> BTreeMap<String, usize> {
    items.iter().map(|(k, v)| (k.clone(), v.len())).collect()
}

#[tokio::test]
async fn the_units_of_a_plan_have_requests_in_flight_at_the_same_time() {
    let plan = one_request_at_a_time_kinds();
    let latency = Duration::from_millis(30);
    let at_once = harness(one_slow_project(latency), "kinds-at-once.", 4).await;
    let one_by_one = harness(one_slow_project(latency), "kinds-one-by-one.", 1).await;

    let concurrent = at_once.crawl_ok(&plan).await;
    let sequential = one_by_one.crawl_ok(&plan).await;

    // In sequence no two requests overlap; at the same time the units' requests do.
    assert_eq!(one_by_one.sim.peak_in_flight(), 1);
    assert!(
        at_once.sim.peak_in_flight() >= 2,
        "peak {} requests in flight",
        at_once.sim.peak_in_flight()
    );
    // The same items, for the same requests: the project list read once, by one unit.
    assert_eq!(item_counts(&concurrent), item_counts(&sequential));
    assert_eq!(at_once.sim.requests(), one_by_one.sim.requests());
    at_once.assert_requests("GET /{org}/_apis/projects", 1);
    at_once.sim.shutdown().await;
    one_by_one.sim.shutdown().await;
}

/// A kind whose units are one request each (a project's policy listing) keeps as many of them
/// in flight as the crawl's share of the request budget allows, not a fixed few: at real
/// latency that share, not the fan-out, is what bounds a resync.
#[tokio::test]
async fn a_kind_of_one_request_units_fills_the_crawl_budget() {
    let config = AdoSimConfig {
        projects: 24,
        latency: Duration::from_millis(40),
        ..AdoSimConfig::default()
    };
    let h = crawl_harness_in_flight(config, "sim-pat", "budget-wide.", 24, |crawler| {
        crawler.with_concurrent_kinds(1)
    })
    .await;
    let items = h.crawl_ok(&[plan("repository-policy", json!({}))]).await;
    assert!(items["repository-policy"].len() >= 24, "{items:?}");
    h.assert_requests("GET /{org}/{project}/_apis/policy/configurations", 24);
    // The repository lists before them run 8 at a time; the policy listings, one request per
    // project, take the whole budget.
    assert!(
        h.sim.peak_in_flight() > 8,
        "peak {} requests in flight with 24 allowed",
        h.sim.peak_in_flight()
    );
    h.sim.shutdown().await;
}

/// Projects, repositories and boards are read once per resync even when several units need
/// them at once: the first reads, the others wait for its list.
#[tokio::test]
async fn lists_shared_by_units_running_at_once_are_read_once() {
    let plan: Vec<KindPlan> = [
        "repository",
        "repository-policy",
        "pull-request",
        "branch",
        "board",
        "column",
        "team",
    ]
    .into_iter()
    .map(|kind| plan(kind, json!({})))
    .collect();
    let config = || AdoSimConfig {
        latency: Duration::from_millis(5),
        ..AdoSimConfig::default()
    };
    let at_once = harness(config(), "shared-at-once.", 7).await;
    let one_by_one = harness(config(), "shared-one-by-one.", 1).await;

    let concurrent = at_once.crawl_ok(&plan).await;
    let sequential = one_by_one.crawl_ok(&plan).await;

    assert_eq!(item_counts(&concurrent), item_counts(&sequential));
    assert!(item_counts(&concurrent).values().all(|count| *count > 0));
    // 3 projects: one project list, one repository list per project, the boards of each
    // team once (for `board` and `column` both) — exactly what a crawl in sequence reads.
    at_once.assert_requests("GET /{org}/_apis/projects", 1);
    at_once.assert_requests("GET /{org}/{project}/_apis/git/repositories", 3);
    assert_eq!(at_once.sim.requests(), one_by_one.sim.requests());
    at_once.sim.shutdown().await;
    one_by_one.sim.shutdown().await;
}

/// What a crawl of `kinds` by `harness` published, [`sorted`] (the harness's simulator address
/// left out).
async fn crawled_sorted(
    harness: &CrawlHarness,
    kinds: &[KindPlan],
) -> BTreeMap<String, Vec<String>> {
    let url = harness.sim.organization_url();
    let origin = url
        .split('/')
        .nth(2)
        .expect("a URL with a host")
        .to_string();
    sorted(harness.crawl_ok(kinds).await, &origin)
}

/// Every item of `items`, per kind, in a stable order (units finish in any order), with the
/// simulator's address `origin` left out (each harness runs its own).
fn sorted(items: BTreeMap<String, Vec<Value>>, origin: &str) -> BTreeMap<String, Vec<String>> {
    items
        .into_iter()
        .map(|(kind, items)| {
            let mut texts: Vec<String> = items
                .iter()
                .map(|item| item.to_string().replace(origin, "SIM"))
                .collect();
            texts.sort();
            (kind, texts)
        })
        .collect()
}

/// Past the resync's repository list limit (0 bytes here; `REPOSITORY_LIST_BYTES` by
/// default) the list is not kept: each kind read repository by repository lists each
/// project's repositories itself, and publishes what it publishes from a kept list, whether
/// `repository` runs first or not at all.
#[tokio::test]
async fn past_the_repository_list_limit_each_kind_lists_the_repositories_itself() {
    let derived = ["repository-policy", "pull-request", "branch"];
    let with_repository: Vec<KindPlan> = std::iter::once("repository")
        .chain(derived)
        .map(|kind| plan(kind, json!({})))
        .collect();
    let without: Vec<KindPlan> = derived.iter().map(|kind| plan(kind, json!({}))).collect();
    let lists = "GET /{org}/{project}/_apis/git/repositories";
    for (name, kinds) in [
        ("with-repository", &with_repository),
        ("derived-only", &without),
    ] {
        let kept = harness(AdoSimConfig::default(), &format!("kept-{name}."), 4).await;
        let unkept = harness_with(
            AdoSimConfig::default(),
            &format!("unkept-{name}."),
            4,
            |crawler| crawler.with_repository_list_bytes(0),
        )
        .await;
        let kept_items = crawled_sorted(&kept, kinds).await;
        let unkept_items = crawled_sorted(&unkept, kinds).await;
        assert!(kept_items.values().all(|items| !items.is_empty()), "{name}");
        assert_eq!(kept_items.len(), unkept_items.len(), "{name}");
        for (kind, items) in &kept_items {
            assert!(
                unkept_items.get(kind) == Some(items),
                "{name}: {kind} differs"
            );
        }
        // 3 projects: kept, one list per project; not kept, one per project and kind (with
        // `repository`, its own; without, the read that stopped at the limit, whose lists
        // still in flight then may or may not have reached the simulator).
        kept.assert_requests(lists, 3);
        let per_kind = 3 * derived.len() as u64;
        let made = unkept.requests(lists);
        assert!(
            (per_kind + 1..=per_kind + 3).contains(&made),
            "{name}: {made} repository lists"
        );
        if kinds.len() > derived.len() {
            assert_eq!(made, per_kind + 3, "{name}");
        }
        kept.sim.shutdown().await;
        unkept.sim.shutdown().await;
    }
}

/// Past the resync's board limit (0 bytes here; `BOARD_LIST_BYTES` by default) the boards are
/// not kept: the second of `board` and `column` to run reads them again itself, project by
/// project, and publishes what it publishes from kept boards, whether the two run at the same
/// time (the second waits for the first's read) or one after another.
#[tokio::test]
async fn past_the_board_list_limit_each_kind_reads_the_boards_itself() {
    let kinds: Vec<KindPlan> = ["board", "column"]
        .into_iter()
        .map(|kind| plan(kind, json!({})))
        .collect();
    let board_reads = [
        "GET /{org}/{project}/{team}/_apis/work/boards",
        "GET /{org}/{project}/{team}/_apis/work/boards/{board}",
    ];
    for concurrent_kinds in [2, 1] {
        let name = format!("{concurrent_kinds}-at-once");
        let kept = harness(
            AdoSimConfig::default(),
            &format!("boards-kept-{name}."),
            concurrent_kinds,
        )
        .await;
        let unkept = harness_with(
            AdoSimConfig::default(),
            &format!("boards-unkept-{name}."),
            concurrent_kinds,
            |crawler| crawler.with_board_list_bytes(0),
        )
        .await;
        let kept_items = crawled_sorted(&kept, &kinds).await;
        let unkept_items = crawled_sorted(&unkept, &kinds).await;
        assert_eq!(kept_items.len(), 2, "{name}: {kept_items:?}");
        assert!(kept_items.values().all(|items| !items.is_empty()), "{name}");
        assert_eq!(kept_items, unkept_items, "{name}");
        // Kept, the boards of each team are read once for both kinds; not kept, once by each.
        for route in board_reads {
            let once = kept.requests(route);
            assert!(once > 0, "{name}: {route}");
            assert_eq!(unkept.requests(route), 2 * once, "{name}: {route}");
        }
        kept.sim.shutdown().await;
        unkept.sim.shutdown().await;
    }
}

/// A refused token in one unit ends the crawl at once, however much the other units have
/// left to read; in sequence the slow unit would have read everything first.
#[tokio::test]
async fn a_refused_token_in_one_unit_stops_the_units_running_beside_it() {
    const RELEASES: &str = "GET /{org}/{project}/_apis/release/releases";
    let config = AdoSimConfig {
        projects: 1,
        releases_per_project: 40,
        latency: Duration::from_millis(20),
        ..AdoSimConfig::default()
    };
    let h = crawl_harness(config, "sim-pat", "kinds-stop.", |crawler: Crawler| {
        crawler.with_concurrent_kinds(2).with_limits(CrawlLimits {
            page: 1,
            ..CrawlLimits::default()
        })
    })
    .await;
    h.sim.fail_next(
        "GET /{org}/{project}/_apis/pipelines",
        vec![ScriptedAnswer::status(401)],
    );
    // 40 releases one page (one request) at a time: 40 requests, 800 ms at least.
    let plan = [plan("release", json!({})), plan("pipeline", json!({}))];
    let error = tokio::time::timeout(
        Duration::from_secs(60),
        h.crawler.crawl(ResyncId::new(), &plan),
    )
    .await
    .expect("crawl within 60 s")
    .expect_err("a refused token stops the crawl");
    assert!(
        error.to_string().contains("PERSONAL_ACCESS_TOKEN"),
        "{error}"
    );
    let releases_read = h.requests(RELEASES);
    assert!(
        releases_read < 20,
        "the release unit went on after the crawl stopped: {releases_read} of its 40 pages read"
    );
    h.sim.shutdown().await;
}

/// With `createMissingRelatedEntities: false` Port refuses an entity whose relation target
/// does not exist yet: such a mapping's units are read one after another, in mapping order.
#[tokio::test]
async fn a_mapping_that_does_not_create_missing_related_entities_is_crawled_in_order() {
    let mapping = |create: bool| {
        PortAppConfig::from_json_value(json!({
            "createMissingRelatedEntities": create,
            "resources": [],
        }))
        .expect("mapping parses")
    };
    assert_eq!(CrawlOrder::of(&mapping(true)), CrawlOrder::Concurrent);
    assert_eq!(CrawlOrder::of(&mapping(false)), CrawlOrder::MappingOrder);

    let h = harness(
        one_slow_project(Duration::from_millis(30)),
        "kinds-in-order.",
        4,
    )
    .await;
    let report = h
        .crawler
        .crawl_ordered(
            &CrawlStamp::new(ResyncId::new()),
            &CrawlFence::none(),
            &one_request_at_a_time_kinds(),
            CrawlOrder::of(&mapping(false)),
        )
        .await
        .expect("crawl succeeds");
    assert_eq!(report.failed_kinds(), Vec::<&str>::new(), "{report:?}");
    assert_eq!(h.sim.peak_in_flight(), 1);
    h.sim.shutdown().await;
}
