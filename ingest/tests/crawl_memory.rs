//! What a resync's crawl holds does not grow with the organization: the live heap of a crawl
//! of the `project` and `repository` kinds and the GitOps specs every mapping reads (as
//! `adoport bench --mode rss` crawls them), on
//! RabbitMQ with the production concurrency and byte budget, stays under [`HEAP_LIMIT`] for an
//! organization and for one eight times its size, and the larger adds at most
//! [`GROWTH_LIMIT`]: the pages a crawl holds are bounded by the crawl buffer
//! (`ADOPORT__INGEST__CRAWL_BUFFER_MIB`), which a small organization's crawl may not fill
//! (the broker confirms its few pages as they come) and a large one's does.
//!
//! The same holds for a kind read repository by repository (`branch`), whose
//! resync keeps the repository list only up to its byte limit, for `board` and `column`,
//! the second of which publishes the boards the first kept a page at a time, and for
//! `repository-policy`, whose units keep their projects' listings as text, as many at once as
//! the crawl's listing budget holds.
//!
//! A counting global allocator measures the crawl's live heap; the Azure DevOps simulator runs
//! on a runtime of its own whose threads are not counted (its seeded organization grows with
//! the size, as a real organization's servers do, not ingest's memory).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};

use std::sync::Mutex;

use adoport_ingest::plan::GitopsPlan;
use adoport_ingest::{CrawlReport, Crawler, KindPlan};
use adoport_shared::bus::Bus;
use adoport_shared::config::{BrokerTimeouts, Secret};
use adoport_shared::messages::ResyncId;
use adoport_shared::port_app_config::PortAppConfig;
use adoport_shared::topology::Topology;
use adoport_sim::ado::{AdoSim, AdoSimConfig};
use serde_json::json;
use tokio_util::sync::CancellationToken;

mod support;

use support::crawl::plan;

/// Repositories per project, as `adoport bench --mode rss` seeds them.
const REPOSITORIES: usize = 99;
/// Projects of the smaller organization (5,000 entities); the larger has eight times as many.
const PROJECTS: usize = 50;
/// Most live heap a crawl may add to what the process held before it (bytes): the crawl
/// buffer (2 MiB), the pages being parsed and published, the organization's project list and
/// the connections' read buffers. Before the buffer, a crawl held 17 MiB at 5,000 entities and
/// 20 MiB at 40,000; while the GitOps crawl kept each project's parsed repository listing
/// through its spec reads, 12 MiB.
const HEAP_LIMIT: isize = 12 * 1024 * 1024;
/// Most the larger organization's crawl may hold beyond the smaller's (bytes): about the
/// crawl buffer, which only the larger fills, and the run-to-run spread of about a MiB (how
/// many pages the broker has yet to confirm, how many pooled connections grew their read
/// buffers). Anything kept per project or repository would add far more at 35,000 entities.
const GROWTH_LIMIT: isize = 3 * 1024 * 1024;

/// Projects of the smaller organization of [`a_repository_list_past_its_limit_is_not_kept`]
/// (its branches are one request a repository).
const DERIVED_PROJECTS: usize = 20;
/// Most the larger organization's crawl of [`a_repository_list_past_its_limit_is_not_kept`] may
/// hold beyond the smaller's (bytes): [`GROWTH_LIMIT`] and a MiB. It held 3.1 MiB more once
/// (3.0 → 6.0 MiB), and 3.4 (3.1 → 6.5) with 30 and 240 projects, where both sizes run as
/// many units at once. Under heaptrack (one run of each size) it held 3.05 and 4.94 MiB, and
/// at the process's heaviest moment what was allocated outside the simulator was 6.2 and 6.8
/// MiB, no allocation site more than 0.25 MiB apart (tokio's tasks and channel blocks, hyper's
/// read buffers, the JSON of pages in flight): the MiB beyond the crawl buffer, where it shows,
/// is how much is in flight at the peak, nothing kept per project or repository. Keeping the
/// repository list, which this test is about, adds 14 MB.
const DERIVED_GROWTH_LIMIT: isize = GROWTH_LIMIT + 1024 * 1024;
/// The repository list limit of [`a_repository_list_past_its_limit_is_not_kept`] (bytes): less
/// than the smaller organization's list (about 1.8 MB).
const REPOSITORY_LIST_LIMIT: usize = 1024 * 1024;
/// Most live heap the crawl of `project`, `board` and `column` may add (bytes): [`HEAP_LIMIT`]
/// and the boards the resync keeps for the second of the two.
const BOARDS_HEAP_LIMIT: isize = HEAP_LIMIT;
/// Projects of the smaller organization of [`policy_units_keep_their_listings_as_text`]: as
/// many as the fan-out may run units at once (30 requests in flight), so that both sizes
/// could run as many and only what the units keep of the organization tells them apart.
const POLICY_PROJECTS: usize = 30;
/// Most live heap the crawl of `project`, `repository` and `repository-policy` may add
/// (bytes): [`HEAP_LIMIT`] and 2 MiB. The policy units keep their projects' repositories and
/// policies as text (about 0.45 MB a project in the simulator, each policy's scope parsed),
/// as many at once as the crawl's listing budget holds (4 MiB: about nine units), beside the
/// pages they build. Measured: 8.4 to 9.9 MiB at 30 and at 240 projects (six runs of each).
/// With 30 units at once (no listing budget), each keeping its listings as text: 13.2 to 25.2
/// MiB at 30 projects and 25.1 to 27.6 at 240 (19.9 and 21.9 with the budget raised to 1 GiB);
/// with both listings parsed, 28.2 MiB at 20 projects, 45.3 at 160.
const POLICY_HEAP_LIMIT: isize = 14 * 1024 * 1024;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    /// Set on the simulator's threads: what they allocate is not the crawl's.
    static UNCOUNTED: Cell<bool> = const { Cell::new(false) };
}

fn counted() -> bool {
    !UNCOUNTED.try_with(Cell::get).unwrap_or(true)
}

fn grew(by: isize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call goes to the system allocator unchanged; only counters are updated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout, passed on.
        let block = unsafe { System.alloc(layout) };
        if !block.is_null() && counted() {
            grew(layout.size() as isize);
        }
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // SAFETY: a block of the system allocator, with its layout.
        unsafe { System.dealloc(block, layout) };
        if counted() {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        // SAFETY: a block of the system allocator, with its layout.
        let moved = unsafe { System.realloc(block, layout, size) };
        if !moved.is_null() && counted() {
            grew(size as isize - layout.size() as isize);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn amqp_url() -> Secret {
    Secret::new(
        std::env::var("ADOPORT_TEST_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
    )
}

/// What one measured crawl reads: its plan and how the crawler is set.
struct Measured {
    kinds: Vec<KindPlan>,
    configure: fn(Crawler) -> Crawler,
}

/// One test of this file at a time: the counters are the process's, and a crawl of another
/// test would count in this one's.
static SERIAL: Mutex<()> = Mutex::new(());

/// The most live heap (bytes) a crawl of `projects` × [`REPOSITORIES`] as `measured` says
/// added to what the process held before it, and its report.
fn crawl_peak(projects: usize, measured: &Measured) -> (isize, CrawlReport) {
    let simulator = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .on_thread_start(|| UNCOUNTED.with(|c| c.set(true)))
        .enable_all()
        .build()
        .expect("simulator runtime");
    UNCOUNTED.with(|c| c.set(true));
    let sim = simulator
        .block_on(AdoSim::start(AdoSimConfig {
            projects,
            repositories_per_project: REPOSITORIES,
            ..AdoSimConfig::default()
        }))
        .expect("simulator starts");
    UNCOUNTED.with(|c| c.set(false));

    let crawling = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("crawl runtime");
    let (peak, report) = crawling.block_on(async {
        let shutdown = CancellationToken::new();
        // The production settings: 30 requests in flight, 4 kinds at once, 100 items an event.
        let client = support::client_in_flight(&sim, "sim-pat", 30, &shutdown);
        let prefix = format!("t-crawl-memory-{}.", uuid::Uuid::new_v4().simple());
        let bus = Bus::rabbit(
            &amqp_url(),
            Topology::new(prefix, 2),
            BrokerTimeouts::default(),
            shutdown.clone(),
        )
        .await
        .expect("RabbitMQ reachable (scripts/ensure-rabbitmq.sh starts it)");
        let crawler =
            (measured.configure)(Crawler::new(client, bus.clone(), 100).with_concurrent_kinds(4));

        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let report: CrawlReport = crawler
            .crawl(ResyncId::new(), &measured.kinds)
            .await
            .expect("crawl");
        let peak = PEAK.load(Ordering::Relaxed) - before;

        assert_eq!(report.failed_kinds(), Vec::<&str>::new(), "{report:?}");
        bus.delete_topology().await.expect("topology deleted");
        bus.close().await;
        shutdown.cancel();
        (peak, report)
    });
    drop(crawling);
    UNCOUNTED.with(|c| c.set(true));
    simulator.block_on(sim.shutdown());
    drop(simulator);
    UNCOUNTED.with(|c| c.set(false));
    (peak, report)
}

fn mib(bytes: isize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn items(report: &CrawlReport, kind: &str) -> u64 {
    report.kinds.get(kind).map_or(0, |k| k.items)
}

/// Crawls `measured` at `projects` and eight times as many, and checks both peaks against
/// `heap_limit` and the larger's growth against `growth_limit`; `check` sees each report.
fn flat(
    what: &str,
    projects: usize,
    measured: &Measured,
    (heap_limit, growth_limit): (isize, isize),
    check: impl Fn(usize, &CrawlReport),
) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (small, report) = crawl_peak(projects, measured);
    check(projects, &report);
    let (large, report) = crawl_peak(8 * projects, measured);
    check(8 * projects, &report);
    eprintln!(
        "{what}: live heap peak of the crawl {:.1} MiB at {} projects, {:.1} MiB at {}",
        mib(small),
        projects,
        mib(large),
        8 * projects
    );
    assert!(
        small <= heap_limit && large <= heap_limit,
        "{what}: a crawl held {:.1} / {:.1} MiB, over {:.1} MiB",
        mib(small),
        mib(large),
        mib(heap_limit)
    );
    assert!(
        large - small <= growth_limit,
        "{what}: the crawl of 8× the organization held {:.1} MiB more ({:.1} → {:.1} MiB)",
        mib(large - small),
        mib(small),
        mib(large)
    );
}

#[test]
fn a_crawl_holds_no_more_of_a_larger_organization() {
    // The specs every mapping reads (`specPath` defaults to `port.yml`), as a resync does.
    let mapping = PortAppConfig::from_yaml_str("resources: []\n").expect("mapping");
    let gitops = GitopsPlan::kind_plan(&mapping).expect("specs read by default");
    let measured = Measured {
        kinds: vec![
            plan("project", json!({})),
            plan("repository", json!({})),
            gitops,
        ],
        configure: |crawler| crawler,
    };
    flat(
        "project, repository, gitops",
        PROJECTS,
        &measured,
        (HEAP_LIMIT, GROWTH_LIMIT),
        |projects, report| {
            assert_eq!(
                items(report, "project") + items(report, "repository"),
                (projects * (REPOSITORIES + 1)) as u64
            );
            assert!(report.kinds.contains_key("gitops"), "{report:?}");
        },
    );
}

/// A kind read repository by repository (`branch`) with `repository`: the resync keeps the
/// organization's repository list only up to its byte limit (lowered here so that both sizes
/// pass it, as 30,000 repositories pass the default); past it the list is dropped and the
/// branches list each project's repositories again. Keeping the whole list (about 1 KB a
/// repository as text) holds 14 MB more at 160 projects than at 20.
#[test]
fn a_repository_list_past_its_limit_is_not_kept() {
    let measured = Measured {
        kinds: vec![
            plan("project", json!({})),
            plan("repository", json!({})),
            plan("branch", json!({})),
        ],
        configure: |crawler| crawler.with_repository_list_bytes(REPOSITORY_LIST_LIMIT),
    };
    flat(
        "project, repository, branch",
        DERIVED_PROJECTS,
        &measured,
        (HEAP_LIMIT, DERIVED_GROWTH_LIMIT),
        |projects, report| {
            assert_eq!(
                items(report, "repository"),
                (projects * REPOSITORIES) as u64
            );
            assert!(items(report, "branch") > 0, "{report:?}");
        },
    );
}

/// `board` and `column`: the second of the two to run reads the boards the first kept and
/// publishes them (or their columns) a page at a time. Building every column of every board at
/// once (each column carries its board and project) held about 170 KB a board: 60 MiB more at
/// 400 projects than at 50.
#[test]
fn columns_are_published_a_page_at_a_time() {
    let measured = Measured {
        kinds: vec![
            plan("project", json!({})),
            plan("board", json!({})),
            plan("column", json!({})),
        ],
        configure: |crawler| crawler,
    };
    flat(
        "project, board, column",
        PROJECTS,
        &measured,
        (BOARDS_HEAP_LIMIT, GROWTH_LIMIT),
        |projects, report| {
            assert_eq!(items(report, "project"), projects as u64);
            assert!(
                items(report, "column") > items(report, "board"),
                "{report:?}"
            );
        },
    );
}

/// `repository-policy`: each project's unit holds its repositories and its policies as text
/// (each policy's scope parsed) and parses a policy and a repository only to build an item,
/// and the units keep at most the crawl's listing budget of listings at once. Both parsed, a
/// unit held about 1.5 MB while it read (99 repositories, 198 policies); as text, 0.45 MB, with
/// as many units at once as requests may be in flight (30) before the listing budget. The repository list limit is lowered
/// so that both sizes list each project's repositories in its unit, as 8,000 repositories and
/// more do with the default.
#[test]
fn policy_units_keep_their_listings_as_text() {
    let measured = Measured {
        kinds: vec![
            plan("project", json!({})),
            plan("repository", json!({})),
            plan("repository-policy", json!({})),
        ],
        configure: |crawler| crawler.with_repository_list_bytes(REPOSITORY_LIST_LIMIT),
    };
    flat(
        "project, repository, repository-policy",
        POLICY_PROJECTS,
        &measured,
        (POLICY_HEAP_LIMIT, GROWTH_LIMIT),
        |projects, report| {
            assert_eq!(
                items(report, "repository"),
                (projects * REPOSITORIES) as u64
            );
            // Each simulated repository has two policies scoped to it (a few repositories
            // are disabled: their policies are not read).
            let policies = items(report, "repository-policy");
            let repositories = (projects * REPOSITORIES) as u64;
            assert!(
                policies > repositories && policies <= 2 * repositories,
                "{policies} policies of {repositories} repositories: {report:?}"
            );
        },
    );
}
