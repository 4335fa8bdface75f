//! A resync is `completed` only once Port holds what it produced (real RabbitMQ, simulated
//! Azure DevOps and a slow Port, publish replicas sharing the partitions): the coordinator
//! puts a barrier behind the resync's changes in every partition, and completes when every
//! partition reported that publish settled everything before it (see docs/design.md
//! "Reconciliation").
//!
//! Each test runs ingest and transform in one pipeline and the publish role (with the
//! reconciliation coordinator) in separate "processes" on their own broker connections, so a
//! replica can be killed while the others go on.

use std::time::Duration;

use adoport::pipeline::Pipeline;
use adoport::sim::SimulatedWorld;
use adoport_shared::bus::Bus;
use adoport_shared::config::Settings;
use adoport_sim::ado::{AdoSim, AdoSimConfig};
use adoport_sim::port::{PortSim, PortSimConfig};
use adoport_tests::{
    OURS, amqp_url, logs, publish_process, roles, roles_process, test_mapping, unique_prefix,
    within,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const REPOSITORY: &str = "azureDevopsRepository";

/// Simulators with a Port whose upserts take `write_latency`, and the settings of every
/// process of the test (its own queue prefix; small prefetch and few requests at once, so the
/// writes trail transform by seconds; quick membership so replicas share within a second).
async fn world(
    test: &str,
    projects: usize,
    repositories: usize,
    write_latency: Duration,
) -> (SimulatedWorld, Settings) {
    logs();
    let ado = AdoSim::start(AdoSimConfig {
        projects,
        repositories_per_project: repositories,
        ..AdoSimConfig::default()
    })
    .await
    .expect("Azure DevOps simulator");
    let port = PortSim::start(PortSimConfig {
        integration_config: Some(test_mapping()),
        write_latency,
        ..PortSimConfig::default()
    })
    .await
    .expect("Port simulator");
    let world = SimulatedWorld { ado, port };
    let prefix = unique_prefix(test);
    let url = amqp_url();
    let mut vars = world.environment(Some((&url, &prefix)));
    for (name, value) in [
        ("ADOPORT__PUBLISH__PREFETCH", "2"),
        ("ADOPORT__PUBLISH__MAX_CONCURRENT_REQUESTS", "1"),
        ("ADOPORT__PUBLISH__MEMBER_HEARTBEAT_MS", "200"),
        ("ADOPORT__PUBLISH__MEMBER_TIMEOUT_MS", "1500"),
    ] {
        vars.push((name.into(), value.into()));
    }
    (world, Settings::from_vars(vars).expect("settings valid"))
}

/// Ingest and transform on their own connection; ingest crawls once at start-up.
async fn upstream(settings: &Settings) -> (Pipeline, Bus) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let shutdown = CancellationToken::new();
    roles_process(settings, roles::INGEST_TRANSFORM, Some(listener), &shutdown).await
}

/// Two publish replicas, the first one running the active coordinator; returns once they
/// share the partitions (each consumes some, neither all).
async fn two_replicas(settings: &Settings) -> [(Pipeline, Bus); 2] {
    let first = publish_process(settings).await;
    // The first subscribes to the progress queue first: its coordinator is the active one.
    consumes(&first.0, |n| n > 0).await;
    let second = publish_process(settings).await;
    let total = u64::from(settings.topology().partitions);
    for (replica, _) in [&first, &second] {
        consumes(replica, |n| n > 0 && n < total).await;
    }
    [first, second]
}

/// Waits (polling the gauge, at most 30 s) until the replica consumes a number of partitions
/// for which `wanted` holds.
async fn consumes(replica: &Pipeline, wanted: impl Fn(u64) -> bool) {
    within(30, "the replicas to share the partitions", async {
        while !wanted(replica.publish_stats.share().snapshot().partitions) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// The first `completed` resync state Port was sent, with how many entities Port held then.
async fn completed(port: &PortSim) -> usize {
    let reported = port
        .wait_for(
            |p| p.resync_states().iter().any(|s| s["status"] == "completed"),
            Duration::from_secs(120),
        )
        .await;
    assert!(
        reported,
        "no completed state; states: {:?}",
        port.resync_states()
    );
    port.resync_states_with_entity_counts()
        .into_iter()
        .find(|(state, _)| state["status"] == "completed")
        .map(|(_, entities)| entities)
        .expect("completed")
}

async fn stop(pipeline: Pipeline, bus: Bus) {
    pipeline.stop().await.expect("stops cleanly");
    bus.close().await;
}

#[tokio::test]
async fn completed_is_reported_only_once_port_holds_every_entity_of_the_resync() {
    let (projects, repositories) = (3, 15);
    let expected = projects + projects * repositories;
    let (world, settings) = world(
        "written",
        projects,
        repositories,
        Duration::from_millis(100),
    )
    .await;
    let [first, second] = two_replicas(&settings).await;
    let (ingest, ingest_bus) = upstream(&settings).await;

    let held_when_completed = completed(&world.port).await;
    assert_eq!(
        held_when_completed, expected,
        "Port held {held_when_completed} of {expected} entities when it was told the resync completed"
    );
    // Both replicas wrote: the barriers passed on partitions of each.
    for (replica, _) in [&first, &second] {
        assert!(replica.publish_stats.snapshot().upserted > 0);
    }

    ingest.stop().await.expect("stops cleanly");
    for (replica, bus) in [first, second] {
        stop(replica, bus).await;
    }
    ingest_bus.delete_topology().await.expect("cleanup");
    ingest_bus.close().await;
    world.shutdown().await;
}

#[tokio::test]
async fn a_change_port_refuses_is_in_the_summary_and_forbids_deletion_like_failed_items() {
    let (projects, repositories) = (2, 3);
    let expected = projects + projects * repositories;
    let (world, settings) = world("refused", projects, repositories, Duration::ZERO).await;
    // Ours, and no longer in Azure DevOps: a resync that completes cleanly deletes it.
    world
        .port
        .put_entity(
            REPOSITORY,
            json!({"identifier": "gone", "title": "gone", "properties": {}, "relations": {}}),
            Some(OURS),
        )
        .expect("seeded");
    let refused = world.ado.repositories()[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    world.port.refuse_upserts_of(&refused);
    let (publish, publish_bus) = publish_process(&settings).await;
    let (mut ingest, ingest_bus) = upstream(&settings).await;
    let done = within(60, "the crawl", ingest.next_resync())
        .await
        .expect("ingest runs");

    let summary = within(60, "the summary", publish.resync_summary(done.resync_id))
        .await
        .expect("the coordinator runs here");
    assert_eq!(summary.changes_dead_lettered, 1, "{summary:?}");
    assert_eq!(summary.status, "failed", "{summary:?}");
    assert_eq!(summary.deleted, 0);
    assert_eq!(summary.kind("repository").dead_lettered, 1, "{summary:?}");
    let states: Vec<(Value, usize)> = world.port.resync_states_with_entity_counts();
    let (_, held) = states
        .iter()
        .find(|(s, _)| s["status"] == "failed")
        .unwrap_or_else(|| panic!("failed reported; states: {states:?}"));
    // Everything but the refused one, plus the stale one nothing deleted.
    assert_eq!(*held, expected - 1 + 1, "{states:?}");
    assert!(world.port.entity(REPOSITORY, "gone").is_some());
    assert!(world.port.entity(REPOSITORY, &refused).is_none());

    ingest.stop().await.expect("stops cleanly");
    stop(publish, publish_bus).await;
    ingest_bus.delete_topology().await.expect("cleanup");
    ingest_bus.close().await;
    world.shutdown().await;
}

/// How a publish replica goes away.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Gone {
    /// Its connection drops with everything it held (as a SIGKILL does): the broker returns
    /// its deliveries, and the others take its partitions after the member timeout.
    Killed,
    /// Stopped (SIGTERM): it says it leaves, finishes its requests within the deadline, and
    /// hands its partitions over.
    Stopped,
}

#[tokio::test]
async fn a_replica_killed_while_a_barrier_waits_hands_it_over_and_the_resync_completes() {
    replica_gone_while_a_barrier_waits(Gone::Killed).await;
}

#[tokio::test]
async fn a_replica_stopped_while_a_barrier_waits_hands_it_over_and_the_resync_completes() {
    replica_gone_while_a_barrier_waits(Gone::Stopped).await;
}

async fn replica_gone_while_a_barrier_waits(gone: Gone) {
    let (projects, repositories) = (3, 15);
    let expected = projects + projects * repositories;
    let test = if gone == Gone::Killed {
        "killed"
    } else {
        "stopped"
    };
    let (world, settings) = world(test, projects, repositories, Duration::from_millis(700)).await;
    let [(coordinating, coordinating_bus), (doomed, doomed_bus)] = two_replicas(&settings).await;
    let (mut ingest, ingest_bus) = upstream(&settings).await;
    let done = within(60, "the crawl", ingest.next_resync())
        .await
        .expect("ingest runs");

    // Transform produced everything and the coordinator put its barriers out, while the
    // second replica still holds changes it has not settled: its barriers wait behind them.
    let resync = done.resync_id.to_string();
    within(
        60,
        "the coordinator to send the barriers",
        logs().wait_for(Duration::from_secs(60), |line| {
            line.contains(&resync) && line.contains("waiting for publish to settle")
        }),
    )
    .await
    .expect("barriers sent");
    let at_kill = doomed.publish_stats.snapshot();
    assert!(
        at_kill.received > at_kill.acked + at_kill.dead_lettered,
        "the doomed replica holds unsettled changes at the kill: {at_kill:?}"
    );
    assert!(
        world
            .port
            .resync_states()
            .iter()
            .all(|s| s["status"] != "completed"),
        "not completed while changes are unwritten"
    );
    match gone {
        Gone::Killed => {
            // Its connection drops, the broker takes back what it held (barriers included),
            // and the other replica takes its partitions once the member timeout passes.
            doomed_bus.close().await;
            doomed.stop().await.expect("the killed replica winds down");
        }
        Gone::Stopped => {
            doomed.stop().await.expect("the replica stops");
            doomed_bus.close().await;
        }
    }

    let held_when_completed = completed(&world.port).await;
    assert_eq!(held_when_completed, expected);
    assert!(coordinating.publish_stats.snapshot().received > 0);

    ingest.stop().await.expect("stops cleanly");
    stop(coordinating, coordinating_bus).await;
    ingest_bus.delete_topology().await.expect("cleanup");
    ingest_bus.close().await;
    world.shutdown().await;
}
