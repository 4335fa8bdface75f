//! Publish replicas share the change partitions by themselves (real RabbitMQ, `adoport publish`
//! child processes, simulated Port that records the order of every entity's writes):
//!
//! - three replicas with the same settings are each active on 4 of 12 partitions, as the
//!   broker sees it (the single active consumer of each partition queue), and as each replica
//!   reports on `/metrics`;
//! - one is SIGKILLed mid-stream: the two others take its partitions within seconds (6/6);
//! - a new one starts: the spread is back to 4/4/4;
//! - meanwhile changes of many entities with increasing versions flow without a pause; at the
//!   end Port holds every entity's last version, no entity's writes reached Port out of version
//!   order (the hand-overs and the kill included), the change queues are empty (nothing ready,
//!   nothing unacked) and nothing was dead-lettered.
//!
//! Child processes, not publish roles in this process: a kill must end everything the replica
//! does (its Port requests too), as it does in production.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use adoport::sim::{SimulatedWorld, default_mapping};
use adoport_shared::bus::{Bus, Destination, Outgoing};
use adoport_shared::messages::{EntityChange, encode};
use adoport_shared::topology::{DeadLetterQueue, Topology};
use adoport_sim::ado::{AdoSim, AdoSimConfig};
use adoport_sim::port::{PortSim, PortSimConfig};
use serde_json::json;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

mod support;

use support::{TestBroker, adoport, free_port, rabbitmqctl, spawn_logged, until, within};

/// How often a figure without notification (consumers, Port's entities) is polled.
const POLL: Duration = Duration::from_millis(100);
const PARTITIONS: u16 = 12;
/// Entities fed, spread over the partitions by their hash.
const ENTITIES: usize = 240;
const BLUEPRINT: &str = "sharingTest";

/// One `adoport publish` child.
struct Replica {
    child: Child,
    pid: u32,
    metrics_url: String,
    log: tokio::task::JoinHandle<String>,
}

impl Replica {
    fn start(environment: &[(String, String)]) -> Self {
        let health = free_port();
        let (child, log) = spawn_logged(
            adoport(&["publish"], environment, "info,lapin=error")
                .env("ADOPORT__HEALTH__LISTEN", format!("127.0.0.1:{health}")),
        );
        let pid = child.id().expect("running");
        Self {
            child,
            pid,
            metrics_url: format!("http://127.0.0.1:{health}/metrics"),
            log,
        }
    }

    /// A gauge of its `/metrics`, `None` while it does not answer yet.
    async fn gauge(&self, http: &reqwest::Client, name: &str) -> Option<u64> {
        let text = http
            .get(&self.metrics_url)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|value| value.trim().parse().ok())
    }

    /// SIGTERM, and waits for the process to end: it drains and says goodbye.
    async fn terminate(&mut self) {
        let signalled = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await
            .expect("kill runs");
        assert!(signalled.success());
        within(60, "the replica to stop", self.child.wait())
            .await
            .expect("stopped");
    }

    /// SIGKILL: no goodbye to the broker or to the other replicas.
    async fn kill(mut self) -> String {
        self.child.start_kill().expect("SIGKILL");
        let _ = self.child.wait().await;
        self.log.await.unwrap_or_default()
    }
}

/// What the broker says about the change partitions of `prefix`.
#[derive(Debug, Default, PartialEq)]
struct Consumers {
    /// Process id → partition queues it is the single active consumer of.
    active: BTreeMap<u32, usize>,
    /// Consumers waiting for their turn (standby under single active consumer).
    waiting: usize,
    /// Partition queues with an active consumer.
    covered: usize,
}

async fn consumers(prefix: &str, pids: &[u32]) -> Consumers {
    let change_queue = format!("{prefix}port.changes.p");
    let listed = rabbitmqctl(&[
        "list_consumers",
        "queue_name",
        "channel_pid",
        "activity_status",
    ])
    .await;
    let channels = rabbitmqctl(&["list_channels", "pid", "connection"]).await;
    let connections = rabbitmqctl(&["list_connections", "pid", "client_properties"]).await;
    let process_of_connection = |connection: &str| -> Option<u32> {
        let props = connections
            .iter()
            .find(|c| c.first().map(String::as_str) == Some(connection))?
            .get(1)?;
        pids.iter()
            .copied()
            .find(|pid| props.contains(&format!("\"adoport-{prefix}{pid}\"")))
    };
    let mut found = Consumers::default();
    for consumer in listed {
        let [queue, channel, status] = consumer.as_slice() else {
            continue;
        };
        if !queue.starts_with(&change_queue) {
            continue;
        }
        match status.as_str() {
            "single_active" => {
                found.covered += 1;
                let connection = channels
                    .iter()
                    .find(|c| c.first() == Some(channel))
                    .and_then(|c| c.get(1).cloned())
                    .unwrap_or_default();
                if let Some(pid) = process_of_connection(&connection) {
                    *found.active.entry(pid).or_default() += 1;
                }
            }
            _ => found.waiting += 1,
        }
    }
    found
}

/// Messages (ready and unacked) in the change queues of `prefix`.
async fn change_messages(prefix: &str) -> u64 {
    let change_queue = format!("{prefix}port.changes.p");
    rabbitmqctl(&["list_queues", "name", "messages"])
        .await
        .into_iter()
        .filter(|q| q.first().is_some_and(|n| n.starts_with(&change_queue)))
        .filter_map(|q| q.get(1).and_then(|n| n.parse::<u64>().ok()))
        .sum()
}

/// Waits until the replicas report the given partitions each on `/metrics` (and as many
/// members as there are replicas), then until the broker shows the same spread, every
/// partition with one active consumer and none waiting. Answers when the metrics agreed.
async fn spread_settles(
    http: &reqwest::Client,
    prefix: &str,
    replicas: &[&Replica],
    each: u64,
    secs: u64,
) -> Instant {
    let mut seen = Vec::new();
    let reported = tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            seen.clear();
            for replica in replicas {
                seen.push((
                    replica.gauge(http, "adoport_publish_partitions").await,
                    replica.gauge(http, "adoport_publish_members").await,
                ));
            }
            let members = Some(replicas.len() as u64);
            if seen.iter().all(|s| *s == (Some(each), members)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        reported.is_ok(),
        "timed out waiting for {} replicas to report {each} partitions each; (partitions, members) seen: {seen:?}",
        replicas.len()
    );
    let reported = Instant::now();
    let pids: Vec<u32> = replicas.iter().map(|r| r.pid).collect();
    let expected: BTreeMap<u32, usize> = pids.iter().map(|pid| (*pid, each as usize)).collect();
    let what = format!("the broker to show {each} active partitions per replica");
    let mut last = Consumers::default();
    let settled = tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            last = consumers(prefix, &pids).await;
            if last.active == expected
                && last.waiting == 0
                && last.covered == usize::from(PARTITIONS)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(settled.is_ok(), "timed out waiting for {what}: {last:?}");
    reported
}

/// One change: `identifier` at `version`, observed `version` seconds after `base`.
fn change(identifier: &str, version: u64, base: chrono::DateTime<chrono::Utc>) -> EntityChange {
    serde_json::from_value(json!({
        "v": 1,
        "blueprint": BLUEPRINT,
        "identifier": identifier,
        "kind": "sharing-test",
        "resource_index": 0,
        "origin": {"type": "webhook", "event_type": "test.sharing", "delivery_id": format!("{identifier}-{version}")},
        "observed_at": base + chrono::Duration::seconds(version as i64),
        "raw_event_id": "00000000-0000-4000-8000-000000000000",
        "write": {"merge": true, "create_missing_related_entities": true, "delete_dependents": true},
        "op": "upsert",
        "entity": {"identifier": identifier, "properties": {"version": version}},
    }))
    .expect("an EntityChange")
}

/// Publishes a round of changes, version after version, one round every `every`, until
/// `stop`; answers the last version published (every entity has it).
async fn feed(bus: Bus, topology: Topology, every: Duration, stop: CancellationToken) -> u64 {
    let base = chrono::Utc::now();
    let ids: Vec<String> = (0..ENTITIES).map(|i| format!("entity-{i:04}")).collect();
    let mut rounds = tokio::time::interval(every);
    let mut version = 0;
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return version,
            _ = rounds.tick() => {}
        }
        version += 1;
        let messages = ids
            .iter()
            .map(|id| {
                Outgoing::new(
                    Destination::Change {
                        partition: topology.partition_of(BLUEPRINT, id),
                    },
                    encode(&change(id, version, base)),
                )
            })
            .collect();
        bus.publish_all(messages).await.expect("changes published");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_replicas_share_the_partitions_and_move_them_on_a_kill_and_a_join_in_order() {
    let mapping = default_mapping(Some(&["project", "repository"])).expect("mapping");
    let ado = AdoSim::start(AdoSimConfig::default())
        .await
        .expect("Azure DevOps simulator");
    let port = PortSim::start(PortSimConfig {
        integration_config: Some(mapping),
        record_writes: true,
        // Requests take a while, so a kill or a hand-over finds some in flight, and a later
        // request can overtake an earlier one: writes of one entity reach Port in order only
        // if no two are ever in flight together, across replicas too.
        write_latency: Duration::from_millis(10),
        write_jitter: Duration::from_millis(80),
        ..PortSimConfig::default()
    })
    .await
    .expect("Port simulator");
    let world = SimulatedWorld { ado, port };
    let partitions = PARTITIONS.to_string();
    let extra = [
        ("ADOPORT__BROKER__PARTITIONS", partitions.as_str()),
        // The test's blueprint needs no definition, and the replicas start together.
        ("OCEAN__INITIALIZE_PORT_RESOURCES", "false"),
        // Few request slots: under load a replica's batches wait for one, as on a busy Port.
        ("ADOPORT__PUBLISH__MAX_CONCURRENT_REQUESTS", "3"),
        ("OCEAN__EVENT_LISTENER__RESYNC_ON_START", "false"),
    ];
    let TestBroker {
        prefix,
        environment,
        settings,
        bus,
    } = TestBroker::start(&world, "share", &extra).await;
    let topology = settings.topology();
    // A replica whose broker is slow to answer can take seconds to render its metrics.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("HTTP client");

    // Three replicas, the same settings: 4 partitions each.
    let first = Replica::start(&environment);
    let second = Replica::start(&environment);
    let third = Replica::start(&environment);
    spread_settles(&http, &prefix, &[&first, &second, &third], 4, 60).await;

    // Changes flow; one replica is killed mid-stream.
    let stop_feeding = CancellationToken::new();
    let feeder = tokio::spawn(feed(
        bus.clone(),
        topology.clone(),
        Duration::from_millis(150),
        stop_feeding.clone(),
    ));
    until(60, POLL, "Port to take a few rounds of writes", || async {
        world.port.entity_count() == ENTITIES
            && world
                .port
                .entities(BLUEPRINT)
                .iter()
                .all(|e| e["properties"]["version"].as_u64() >= Some(3))
    })
    .await;
    let killed_at = Instant::now();
    let killed_log = second.kill().await;
    let taken = spread_settles(&http, &prefix, &[&first, &third], 6, 60).await;
    let failover = taken - killed_at;
    eprintln!("failover: the two replicas consumed the killed one's partitions after {failover:?}");
    assert!(
        failover < Duration::from_secs(12),
        "the killed replica's partitions are taken within the member timeout (5 s) and a bit: {failover:?}"
    );

    // A new replica joins: 4/4/4 again, while changes keep flowing.
    let joined_at = Instant::now();
    let mut fourth = Replica::start(&environment);
    let rebalanced = spread_settles(&http, &prefix, &[&first, &third, &fourth], 4, 60).await;
    eprintln!(
        "join: the new replica consumed its share after {:?}",
        rebalanced - joined_at
    );

    // The stream ends: every entity's last version lands, in order, nothing left behind.
    stop_feeding.cancel();
    let last = feeder.await.expect("feeder");
    let drained_from = Instant::now();
    until(
        120,
        POLL,
        "Port to hold every entity's last version",
        || async {
            let entities = world.port.entities(BLUEPRINT);
            entities.len() == ENTITIES
                && entities
                    .iter()
                    .all(|e| e["properties"]["version"].as_u64() == Some(last))
        },
    )
    .await;
    until(
        60,
        POLL,
        "the change queues to empty (nothing ready, nothing unacked)",
        || async { change_messages(&prefix).await == 0 },
    )
    .await;
    eprintln!(
        "{last} versions of {ENTITIES} entities; drained {:?} after the last round",
        drained_from.elapsed()
    );
    let writes = world.port.writes();
    let mut total = 0;
    for ((_, identifier), entity_writes) in writes
        .iter()
        .filter(|((blueprint, _), _)| blueprint == BLUEPRINT)
    {
        let versions: Vec<u64> = entity_writes
            .iter()
            .map(|e| e["properties"]["version"].as_u64().expect("a version"))
            .collect();
        total += versions.len();
        assert!(
            versions.windows(2).all(|w| w[0] <= w[1]),
            "{identifier}'s writes reached Port out of version order: {versions:?}"
        );
        assert_eq!(versions.last(), Some(&last), "{identifier}");
    }
    eprintln!("{total} writes checked for order");
    assert!(
        bus.drain_dead_letters(DeadLetterQueue::Changes, 10)
            .await
            .expect("drain")
            .is_empty(),
        "nothing dead-lettered"
    );

    // A replica stopped gracefully (SIGTERM) says so: the others take its partitions at once,
    // not after the member timeout.
    let stopped_at = Instant::now();
    fourth.terminate().await;
    let taken = spread_settles(&http, &prefix, &[&first, &third], 6, 60).await;
    let handover = taken - stopped_at;
    eprintln!("graceful stop: the two replicas consumed its partitions after {handover:?}");
    assert!(
        handover < Duration::from_secs(4),
        "a stopping replica's partitions move before the member timeout (5 s): {handover:?}"
    );

    // Every change of share was logged, with what moved.
    let mut logs = vec![killed_log];
    for replica in [first, third, fourth] {
        logs.push(replica.kill().await);
    }
    for log in &logs {
        assert!(
            log.contains("publish partitions assigned"),
            "each replica logs its share: {log}"
        );
    }
    assert!(
        logs[1].contains("gained"),
        "the survivors log what they gained"
    );
    bus.delete_topology().await.expect("cleanup");
    bus.close().await;
    world.shutdown().await;
}
