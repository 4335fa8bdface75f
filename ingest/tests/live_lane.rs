//! Live re-reads against a resync crawl that saturates an organization's request budget, over
//! real HTTP with the Azure DevOps simulator's budget (sliding window, `X-RateLimit-*` on
//! every answer, delays then 429s): a live read is served within a bound while the crawl
//! runs, and the crawl still finishes; the crawl never holds the places reserved for live
//! reads; a 429 pauses both lanes, a delay advice only the crawl.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use adoport_ingest::ado::{
    AdoAuth, AdoClient, AdoError, ClientOptions, JsonResponse, LaneLimits, RepositoryId,
    RequestStats,
};
use adoport_ingest::{CrawlReport, Crawler, KindPlan};
use adoport_shared::bus::Bus;
use adoport_shared::config::Secret;
use adoport_shared::messages::ResyncId;
use adoport_shared::topology::{Topology, WorkQueue};
use adoport_sim::ado::{AdoSim, AdoSimConfig};
use adoport_sim::{RateLimit, ScriptedAnswer};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Four requests in flight, `reserved_in_flight` of them and `reserved_percent` of the rate
/// budget kept for live reads.
fn four_places(reserved_in_flight: usize, reserved_percent: u8) -> LaneLimits {
    LaneLimits {
        max_in_flight: 4,
        reserved_in_flight,
        reserved_percent,
    }
}

/// A client of `sim`'s organization with these lanes (crawl view; `.live()` for the other).
fn client(sim: &AdoSim, lanes: LaneLimits, stats: Arc<RequestStats>) -> AdoClient {
    let auth = AdoAuth::personal_access_token(&Secret::new("sim-pat")).expect("auth");
    AdoClient::for_organization(
        &sim.organization_url(),
        auth,
        ClientOptions {
            timeout_secs: 30,
            network: &Default::default(),
            lanes,
        },
        CancellationToken::new(),
        stats,
    )
    .expect("client")
}

/// Crawls every pull request of `sim` with `crawl` (three list requests per project),
/// discarding the raw events as they come.
fn start_crawl(crawl: AdoClient) -> tokio::task::JoinHandle<CrawlReport> {
    tokio::spawn(async move {
        let bus = Bus::memory(Topology::new("live-lane.", 1), CancellationToken::new());
        let mut raw = bus.subscribe(WorkQueue::Raw, 64).await.expect("subscribe");
        tokio::spawn(async move {
            while let Some(delivery) = raw.next().await {
                if delivery.ack().await.is_err() {
                    break;
                }
            }
        });
        let plan = [KindPlan {
            kind: "pull-request".into(),
            selectors: vec![Default::default()],
            since: None,
            resources: vec![0],
            whole_kind: true,
            positions: vec![0],
        }];
        Crawler::new(crawl, bus, 50)
            .crawl(ResyncId::new(), &plan)
            .await
            .expect("the crawl finishes")
    })
}

fn first_repository(sim: &AdoSim) -> RepositoryId {
    RepositoryId::new(sim.repositories()[0]["id"].as_str().expect("repository id"))
}

/// How long `lane` takes to read `repository` (the read must succeed).
async fn read_time(lane: &AdoClient, repository: &RepositoryId) -> Duration {
    let started = Instant::now();
    lane.repository(repository)
        .await
        .expect("the read succeeds");
    started.elapsed()
}

/// Scripts `answer` for the next WIQL query of `project` and sends one with `lane`, once.
async fn query_once(
    sim: &AdoSim,
    lane: &AdoClient,
    project: &str,
    answer: ScriptedAnswer,
) -> Result<JsonResponse, AdoError> {
    sim.fail_next("POST /{org}/{project}/_apis/wit/wiql", vec![answer]);
    let query = json!({"query": "SELECT [System.Id] FROM WorkItems"});
    lane.post_json_once(&lane.url(&format!("{project}/_apis/wit/wiql")), &[], &query)
        .await
}

#[tokio::test]
async fn live_reads_are_served_within_a_bound_while_the_crawl_saturates_the_budget() {
    // 40 requests per sliding 2 s, of which the crawl leaves 16; it needs 41 (the projects,
    // the repositories of each project, three pull request lists per project), so it must
    // wait for the window to slide at least once, and would hold every request while it
    // waits if the lanes were one.
    let window = Duration::from_secs(2);
    let sim = AdoSim::start(AdoSimConfig {
        projects: 10,
        repositories_per_project: 2,
        pull_requests_per_repository: 1,
        latency: Duration::from_millis(20),
        rate_limit: Some(RateLimit {
            requests: 40,
            per: window,
        }),
        rate_limit_delayed: 10,
        ..AdoSimConfig::default()
    })
    .await
    .expect("simulator");
    let stats = Arc::new(RequestStats::default());
    let organization = client(&sim, four_places(1, 40), Arc::clone(&stats));
    let live = organization.live();
    let repository = first_repository(&sim);
    let expected_pull_requests = sim.pull_requests().len() as u64;

    let started = Instant::now();
    let crawl = start_crawl(organization.crawl());
    let bound = Duration::from_secs(1);
    let mut during_crawl = Vec::new();
    let mut every = tokio::time::interval(Duration::from_millis(300));
    while !crawl.is_finished() {
        every.tick().await;
        let took = read_time(&live, &repository).await;
        assert!(
            took < bound,
            "a live read took {took:?} while the crawl ran (bound {bound:?}); reads so far: {during_crawl:?}"
        );
        during_crawl.push(took);
    }
    let report = crawl.await.expect("crawl task");
    let crawl_time = started.elapsed();

    assert!(report.failed_kinds().is_empty(), "{report:?}");
    assert_eq!(report.items(), expected_pull_requests);
    // The budget did hold the crawl back (it paced and outlasted one window), and live
    // reads were served all along.
    assert!(
        stats.paced.load(Ordering::Relaxed) > 0,
        "the crawl never paced"
    );
    assert!(crawl_time > window, "the crawl took only {crawl_time:?}");
    assert!(
        during_crawl.len() >= 4,
        "only {} live reads during the crawl",
        during_crawl.len()
    );
    // The crawl left the reserve alone: no request was refused.
    let statuses = stats.http.by_status();
    assert!(
        statuses.iter().all(|(status, _)| status != "429"),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn the_crawl_never_holds_the_places_reserved_for_live_reads() {
    let sim = AdoSim::start(AdoSimConfig {
        projects: 8,
        repositories_per_project: 2,
        latency: Duration::from_millis(50),
        ..AdoSimConfig::default()
    })
    .await
    .expect("simulator");
    let organization = client(&sim, four_places(1, 0), Arc::default());
    let crawl = start_crawl(organization.crawl());
    // Once the crawl is listing pull requests it has more work than places.
    assert!(
        sim.wait_for(
            |sim| sim
                .requests()
                .iter()
                .any(|(route, count)| route.ends_with("/pullrequests") && *count >= 4),
            Duration::from_secs(30),
        )
        .await,
        "the crawl reached the pull requests"
    );
    // A live read is not queued behind the crawl's requests: one answer's time, not many.
    let took = read_time(&organization.live(), &first_repository(&sim)).await;
    assert!(
        took < Duration::from_millis(500),
        "the live read took {took:?}"
    );
    sim.reset_peak_in_flight();
    let report = crawl.await.expect("crawl task");
    assert!(report.failed_kinds().is_empty(), "{report:?}");
    // 24 pull request lists of 50 ms each with 3 places: the crawl filled them, never the
    // fourth.
    assert_eq!(sim.peak_in_flight(), 3);
}

#[tokio::test]
async fn a_429_pauses_both_lanes_and_a_delay_advice_only_the_crawl() {
    let sim = AdoSim::start(AdoSimConfig::default())
        .await
        .expect("simulator");
    let organization = client(&sim, four_places(1, 20), Arc::default());
    let (crawl, live) = (organization.crawl(), organization.live());
    let repository = first_repository(&sim);
    let project = sim.projects()[0]["id"]
        .as_str()
        .expect("project id")
        .to_string();
    let quick = Duration::from_millis(800);
    let paused = Duration::from_millis(1500);

    // A delay advice (200 with Retry-After: 2) on a crawl request: live reads go on.
    query_once(
        &sim,
        &crawl,
        &project,
        ScriptedAnswer::ok_with_retry_after(2),
    )
    .await
    .expect("the advised answer is a success");
    let took = read_time(&live, &repository).await;
    assert!(took < quick, "the advice held a live read {took:?}");
    let took = read_time(&crawl, &repository).await;
    assert!(took >= paused, "the advice held the crawl only {took:?}");

    // A 429 (Retry-After: 2) on a crawl request: live reads wait too.
    query_once(&sim, &crawl, &project, ScriptedAnswer::rate_limited(2))
        .await
        .expect_err("429 is not retried by post_json_once");
    let took = read_time(&live, &repository).await;
    assert!(took >= paused, "the 429 held a live read only {took:?}");

    // And a 429 on a live request holds the crawl.
    query_once(&sim, &live, &project, ScriptedAnswer::rate_limited(2))
        .await
        .expect_err("429 is not retried by post_json_once");
    let took = read_time(&crawl, &repository).await;
    assert!(took >= paused, "the 429 held the crawl only {took:?}");
}
