//! Restarted and taken-over crawls are safe (real RabbitMQ, ingest as `adoport ingest` child
//! processes, transform and publish in this process, simulated Azure DevOps and Port):
//!
//! - ingest SIGKILLed mid-crawl while transform is stopped (the first attempt's raw events stay
//!   queued), started again (the request is redelivered: a second attempt), then transform
//!   started: the resync completes only once the second attempt's events are all accounted
//!   for, and deletes nothing Azure DevOps still has;
//! - the crawling ingest's connection closed by the broker (as its consumer timeout or a network
//!   loss would): its crawl stops at once, the other ingest replica takes the request over, and
//!   the two crawls of the resync never overlap.

use std::time::Duration;

use adoport::pipeline::{Pipeline, Roles};
use adoport::sim::SimulatedWorld;
use adoport_publish::ResyncSummary;
use adoport_shared::bus::{ArchiveStart, Bus};
use adoport_shared::messages::{RawEvent, ResyncId, decode};
use adoport_shared::port_app_config::PortAppConfig;
use adoport_shared::topology::WorkQueue;
use adoport_sim::ado::AdoSimConfig;
use tokio::process::Child;
use tokio::task::JoinHandle;

mod support;

use support::{
    TestBroker, adoport, close_connection_of, in_process, organization, projects_and_repositories,
    queue_consumers, request_resync, roles, spawn_logged, start_world, stop_in_process, until,
    within,
};

/// How often a broker-side figure without notification (queue depths) is polled.
const POLL: Duration = Duration::from_millis(25);
const PROJECTS: usize = 8;
const REPOSITORIES: usize = 3;
const ENTITIES: usize = PROJECTS + PROJECTS * REPOSITORIES;

/// A simulated organization slow enough (every answer takes 100 ms) to stop mid-crawl.
struct Setup {
    world: SimulatedWorld,
    /// The children's environment, and the test's own connection for its requests, queue
    /// counts and clean-up.
    broker: TestBroker,
    mapping: PortAppConfig,
}

async fn setup(test: &str) -> Setup {
    let mapping = projects_and_repositories();
    let world = start_world(
        AdoSimConfig {
            latency: Duration::from_millis(100),
            ..organization(PROJECTS, REPOSITORIES)
        },
        mapping.clone(),
    )
    .await;
    let extra = [
        ("ADOPORT__HEALTH__LISTEN", "off"),
        // One item per raw event: many events, so a crawl can stop between them.
        ("ADOPORT__INGEST__ITEMS_PER_EVENT", "1"),
        // The test asks for every resync itself.
        ("OCEAN__EVENT_LISTENER__RESYNC_ON_START", "false"),
    ];
    let broker = TestBroker::start(&world, test, &extra).await;
    Setup {
        world,
        broker,
        mapping: PortAppConfig::from_json_value(mapping).expect("mapping parses"),
    }
}

impl Setup {
    /// Publish (with the coordinator) or transform, in this process on a bus of its own.
    async fn role(&self, roles: Roles) -> (Pipeline, Bus) {
        in_process(&self.broker.settings, roles, &self.mapping).await
    }

    /// `adoport ingest` as a child process; its log (warnings) is read as it comes, for the
    /// test to look at once the child ended.
    fn ingest(&self) -> (Child, JoinHandle<String>) {
        self.ingest_with(&[])
    }

    /// [`Setup::ingest`] with more settings.
    fn ingest_with(&self, extra: &[(&str, &str)]) -> (Child, JoinHandle<String>) {
        spawn_logged(
            adoport(&["ingest"], &self.broker.environment, "warn,lapin=error")
                .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string()))),
        )
    }

    async fn raw_ready(&self) -> u64 {
        self.broker
            .bus
            .ready_count(WorkQueue::Raw)
            .await
            .expect("count")
    }

    async fn clean_up(self, children: Vec<Child>, pipelines: Vec<(Pipeline, Bus)>) {
        for mut child in children {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        for process in pipelines {
            stop_in_process(process).await;
        }
        self.broker.clean_up().await;
        self.world.shutdown().await;
    }
}

/// Waits for the coordinator's summary of `resync_id`.
async fn summary_of(publish: &Pipeline, resync_id: ResyncId) -> ResyncSummary {
    within(
        120,
        "the resync's summary",
        publish.resync_summary(resync_id),
    )
    .await
    .expect("publish runs the coordinator")
}

impl Setup {
    /// Waits for the summary of `resync_id` and checks that the resync completed, deleted
    /// nothing and left Port with every entity; returns the summary.
    async fn completed_in_full(&self, publish: &Pipeline, resync_id: ResyncId) -> ResyncSummary {
        let done = summary_of(publish, resync_id).await;
        assert_eq!((done.status, done.deleted), ("completed", 0), "{done:?}");
        assert_eq!(self.world.port.entity_count(), ENTITIES);
        done
    }
}

/// Stops a child and returns what it logged.
async fn log_of((mut child, log): (Child, JoinHandle<String>)) -> String {
    let _ = child.start_kill();
    let _ = child.wait().await;
    log.await.unwrap_or_default()
}

#[tokio::test]
async fn a_crawl_restarted_mid_way_completes_only_on_its_new_attempt_and_deletes_nothing() {
    let setup = setup("restarted").await;
    let publish = setup.role(roles::PUBLISH).await;
    let transform = setup.role(roles::TRANSFORM).await;
    let (first, _) = setup.ingest();

    // A full resync: Port holds every entity, all written before the next resync starts.
    let id = request_resync(&setup.broker.bus).await;
    setup.completed_in_full(&publish.0, id).await;

    // Transform stops; a resync starts and ingest is killed part-way through its crawl.
    let (transform, transform_bus) = transform;
    transform.stop().await.expect("transform stops");
    transform_bus.close().await;
    let id = request_resync(&setup.broker.bus).await;
    until(
        60,
        POLL,
        "the first attempt to publish projects and a repository",
        || async { setup.raw_ready().await > PROJECTS as u64 },
    )
    .await;
    let mut first = first;
    first.start_kill().expect("SIGKILL");
    first.wait().await.expect("ingest killed");
    let left_behind = setup.raw_ready().await;
    assert!(
        left_behind < ENTITIES as u64,
        "killed mid-crawl ({left_behind} raw events queued)"
    );

    // Ingest comes back: the request is delivered again and crawled from the start.
    let (second, _) = setup.ingest();
    until(60, POLL, "the second attempt's whole crawl", || async {
        setup.raw_ready().await >= left_behind + ENTITIES as u64
    })
    .await;
    assert_eq!(
        setup
            .world
            .port
            .resync_states()
            .last()
            .map(|s| s["status"].clone()),
        Some("running".into()),
        "nothing completed while transform was stopped"
    );

    // Transform comes back: the first attempt's leftovers are mapped first.
    let transform = setup.role(roles::TRANSFORM).await;
    let done = summary_of(&publish.0, id).await;
    assert_eq!((done.status, done.deleted), ("completed", 0), "{done:?}");
    assert_eq!(
        done.kind("repository").entities_produced,
        (PROJECTS * REPOSITORIES) as u64,
        "completion waited for every repository event of the second attempt: {done:?}"
    );
    assert_eq!(
        setup.world.port.entity_count(),
        ENTITIES,
        "nothing Azure DevOps still has was deleted"
    );
    setup.clean_up(vec![second], vec![transform, publish]).await;
}

/// The crawl attempts of a resync in the raw archive, each with the first and last time one of
/// its events was observed, in the order they started.
/// Each crawl attempt of `resync_id` with the stream offsets of its first and last raw event in
/// the archive, in the order the attempts began publishing. Offsets are publish order (a crawl's
/// events all carry the attempt's start as `observed_at`, so times cannot tell it).
async fn attempts_of(bus: &Bus, resync_id: ResyncId) -> Vec<(String, u64, u64)> {
    let mut reader = bus
        .read_archive(&ArchiveStart::First, Duration::from_secs(2))
        .await
        .expect("archive");
    let mut attempts: Vec<(String, u64, u64)> = Vec::new();
    while let Some(message) = reader.next().await.expect("archive read") {
        let Ok(event) = decode::<RawEvent>(&message.body) else {
            continue;
        };
        if event.origin.resync_id() != Some(resync_id) {
            continue;
        }
        let attempt = event.attempt.expect("stamped").to_string();
        match attempts.iter_mut().find(|(a, _, _)| *a == attempt) {
            Some((_, first, last)) => {
                *first = (*first).min(message.offset);
                *last = (*last).max(message.offset);
            }
            None => attempts.push((attempt, message.offset, message.offset)),
        }
    }
    reader.close().await;
    attempts.sort_by_key(|(_, first, _)| *first);
    attempts
}

#[tokio::test]
async fn a_lost_request_stops_its_crawl_and_the_other_replica_takes_it_over() {
    let setup = setup("lost-lease").await;
    let publish = setup.role(roles::PUBLISH).await;
    let transform = setup.role(roles::TRANSFORM).await;
    let prefix = setup.broker.prefix.clone();
    let queue = setup
        .broker
        .bus
        .topology()
        .work_queue(WorkQueue::ResyncRequests);

    // Replica A subscribes first, so it is the active consumer; B waits behind it.
    let a = setup.ingest();
    until(60, POLL, "replica A to consume requests", || async {
        queue_consumers(&queue).await == 1
    })
    .await;
    let (b, _) = setup.ingest();
    until(60, POLL, "replica B to wait for requests", || async {
        queue_consumers(&queue).await == 2
    })
    .await;

    let id = request_resync(&setup.broker.bus).await;
    within(
        60,
        "A's crawl to be under way",
        transform.0.transform_stats.clone().wait_for_settled(3),
    )
    .await;
    close_connection_of(
        &prefix,
        a.0.id().expect("A runs"),
        "test: the crawling ingest loses its connection",
    );

    setup.completed_in_full(&publish.0, id).await;

    // The archive holds every raw event: two attempts, one after the other.
    let attempts = attempts_of(&setup.broker.bus, id).await;
    assert_eq!(attempts.len(), 2, "A's attempt and B's: {attempts:?}");
    assert!(
        attempts[0].2 < attempts[1].1,
        "A published nothing once B had started: {attempts:?}"
    );
    let log = log_of(a).await;
    assert!(
        log.contains("was lost") && log.contains("crawl cancelled"),
        "A says why its crawl stopped: {log}"
    );
    setup.clean_up(vec![b], vec![transform, publish]).await;
}

#[tokio::test]
async fn a_crawl_longer_than_its_lease_renews_it_and_runs_once() {
    let setup = setup("lease-renewal").await;
    let publish = setup.role(roles::PUBLISH).await;
    let transform = setup.role(roles::TRANSFORM).await;
    // A lease of one second over a longer crawl: renewed on the way, never lost.
    let ingest = setup.ingest_with(&[
        ("ADOPORT__INGEST__RESYNC_LEASE_SECS", "1"),
        ("RUST_LOG", "warn,lapin=error,adoport_ingest::lease=debug"),
    ]);
    let id = request_resync(&setup.broker.bus).await;
    setup.completed_in_full(&publish.0, id).await;
    let attempts = attempts_of(&setup.broker.bus, id).await;
    assert_eq!(attempts.len(), 1, "crawled once: {attempts:?}");
    assert_eq!(
        setup
            .broker
            .bus
            .ready_count(WorkQueue::ResyncRequests)
            .await
            .expect("count"),
        0,
        "no renewal copy left behind"
    );
    let log = log_of(ingest).await;
    assert!(
        // A renewal happens only once the crawl has outlived its one-second lease.
        log.contains("lease on the resync request renewed") && !log.contains("was lost"),
        "{log}"
    );
    setup.clean_up(vec![], vec![transform, publish]).await;
}
