//! Handing a change partition over between two publish workers on the real RabbitMQ (own
//! prefix), with a fake Port that holds a write for as long as the test wants.
//!
//! The partition's queue has a single active consumer. The worker that loses the partition
//! must let its next consumer become active only after its write in flight ended, and the
//! changes it held and had not sent must reach the next consumer in the order they were
//! published — otherwise one entity's writes reach Port out of order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use adoport_publish::batcher::BatchLimits;
use adoport_publish::retry::RetryPolicy;
use adoport_publish::{PublishConfig, PublishStats, Publisher};
use adoport_shared::bus::{Bus, Destination, Outgoing};
use adoport_shared::config::{BrokerTimeouts, Secret};
use adoport_shared::messages::{ChangeOp, EntityChange, Origin, encode};
use adoport_shared::topology::Topology;
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

mod support;

use support::{port_client, serve};

const BLUEPRINT: &str = "handoverTest";

/// Port that records each bulk write when it applies it, and holds the first one until told.
#[derive(Default)]
struct Fake {
    /// Bulk requests arrived, as (identifier, version) lists.
    arrived: Mutex<Vec<Vec<(String, u64)>>>,
    /// Writes applied, in order.
    applied: Mutex<Vec<(String, u64)>>,
    held: AtomicBool,
    release: Notify,
    changed: Notify,
}

impl Fake {
    fn arrived(&self) -> Vec<Vec<(String, u64)>> {
        self.arrived.lock().expect("lock").clone()
    }

    fn applied(&self) -> Vec<(String, u64)> {
        self.applied.lock().expect("lock").clone()
    }

    async fn wait(&self, what: &str, condition: impl Fn(&Fake) -> bool) {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let changed = self.changed.notified();
                if condition(self) {
                    return;
                }
                changed.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
    }
}

async fn token() -> axum::Json<Value> {
    axum::Json(json!({"ok": true, "accessToken": "t", "expiresIn": 10800, "tokenType": "Bearer"}))
}

async fn bulk(State(fake): State<Arc<Fake>>, body: axum::Json<Value>) -> axum::Json<Value> {
    let entities: Vec<(String, u64)> = body["entities"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["identifier"].as_str().unwrap_or_default().to_string(),
                e["properties"]["version"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    fake.arrived.lock().expect("lock").push(entities.clone());
    fake.changed.notify_waiters();
    if !fake.held.swap(true, Ordering::SeqCst) {
        fake.release.notified().await;
    }
    let results: Vec<Value> = entities
        .iter()
        .enumerate()
        .map(|(index, (identifier, _))| json!({"identifier": identifier, "index": index, "created": false}))
        .collect();
    fake.applied.lock().expect("lock").extend(entities);
    fake.changed.notify_waiters();
    axum::Json(json!({"ok": true, "entities": results, "errors": []}))
}

async fn fake_port() -> (Arc<Fake>, String) {
    let fake = Arc::new(Fake::default());
    let app = Router::new()
        .route("/v1/auth/access_token", post(token))
        .route("/v1/blueprints/{bp}/entities/bulk", post(bulk))
        .with_state(fake.clone());
    (fake, serve(app).await)
}

fn amqp_url() -> String {
    std::env::var("ADOPORT_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

async fn rabbit(topology: &Topology) -> Bus {
    Bus::rabbit(
        &Secret::new(amqp_url()),
        topology.clone(),
        BrokerTimeouts::default(),
        CancellationToken::new(),
    )
    .await
    .expect("RabbitMQ reachable (scripts/ensure-rabbitmq.sh starts it)")
}

/// A worker on its own connection, consuming what its assignment says.
struct Worker {
    assignment: watch::Sender<Vec<u16>>,
    stats: PublishStats,
    stop: CancellationToken,
    bus: Bus,
}

async fn worker(topology: &Topology, base_url: &str, linger: Duration) -> Worker {
    let client = port_client(base_url, ("cid", "csecret"), "handover", 30);
    let config = PublishConfig {
        partitions: vec![0],
        membership: None,
        prefetch: 50,
        batch: BatchLimits {
            linger,
            ..BatchLimits::default()
        },
        send_when_idle: true,
        check: BatchLimits::check(linger),
        max_concurrent_requests: 4,
        retry: RetryPolicy::default(),
        shutdown_deadline: Duration::from_secs(5),
        guard_capacity: 1000,
    };
    let publisher = Publisher::new(client, config);
    let stats = publisher.stats();
    let bus = rabbit(topology).await;
    let (assignment, watching) = watch::channel(vec![0]);
    let stop = CancellationToken::new();
    tokio::spawn(publisher.run_with_assignment(bus.clone(), stop.clone(), watching));
    Worker {
        assignment,
        stats,
        stop,
        bus,
    }
}

fn change(identifier: &str, version: u64, base: DateTime<Utc>) -> Outgoing {
    let entity = json!({"identifier": identifier, "properties": {"version": version}});
    let change = EntityChange {
        kind: "handover".into(),
        origin: Origin::Webhook {
            event_type: "test".into(),
            delivery_id: format!("{identifier}-{version}"),
        },
        observed_at: base + TimeDelta::seconds(version as i64),
        raw_event_id: uuid_of(version),
        ..support::change(BLUEPRINT, identifier, ChangeOp::Upsert { entity })
    };
    Outgoing::new(Destination::Change { partition: 0 }, encode(&change))
}

fn uuid_of(n: u64) -> uuid::Uuid {
    uuid::Uuid::from_u128(u128::from(n))
}

/// Consumers of the one partition queue, as the broker counts them.
async fn consumers(queue: &str) -> u32 {
    let output = tokio::process::Command::new("rabbitmqctl")
        .args([
            "-q",
            "--no-table-headers",
            "list_queues",
            "name",
            "consumers",
        ])
        .output()
        .await
        .expect("rabbitmqctl runs (scripts/ensure-rabbitmq.sh installs RabbitMQ)");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .find(|(name, _)| *name == queue)
        .and_then(|(_, n)| n.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_partition_goes_on_only_after_its_write_in_flight_and_in_publish_order() {
    let prefix = format!("t-handover-{}.", uuid::Uuid::new_v4().simple());
    let topology = Topology::new(prefix.as_str(), 1);
    let queue = topology.work_queue(adoport_shared::topology::WorkQueue::Changes { partition: 0 });
    let feeder = rabbit(&topology).await;
    let (fake, base_url) = fake_port().await;
    let base = Utc::now();

    // A consumes the partition; its first write (x v1) is held by Port.
    let a = worker(&topology, &base_url, Duration::from_secs(1)).await;
    feeder.publish(change("x", 1, base)).await.expect("publish");
    fake.wait("A's first write to arrive", |f| f.arrived().len() == 1)
        .await;
    // B subscribes too: under single active consumer it waits behind A.
    let b = worker(&topology, &base_url, Duration::from_millis(20)).await;
    tokio::time::timeout(Duration::from_secs(20), async {
        while consumers(&queue).await < 2 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("B subscribed as a standby");

    // More changes reach A: x's next version (parked behind the held write) and other
    // entities (lingering in a batch).
    let later = ["x", "a", "b", "c", "d", "e"];
    feeder
        .publish_all(later.iter().map(|id| change(id, 2, base)).collect())
        .await
        .expect("publish");
    a.stats
        .wait_until(|s| s.received == 1 + later.len() as u64)
        .await;

    // A loses the partition. While its write is held, B must not become active: it would
    // write x v2 before x v1 lands.
    a.assignment.send(Vec::new()).expect("A runs");
    let early = tokio::time::timeout(Duration::from_millis(1500), async {
        fake.wait("a second write", |f| f.arrived().len() > 1).await
    })
    .await;
    assert!(
        early.is_err(),
        "B wrote while A's write was in flight: {:?}",
        fake.arrived()
    );
    assert_eq!(b.stats.snapshot().received, 0, "B received nothing yet");

    // The held write lands; A lets go, B takes what A had not sent, in publish order.
    fake.release.notify_one();
    fake.wait("every change written", |f| {
        f.applied().len() == 1 + later.len()
    })
    .await;
    let applied = fake.applied();
    assert_eq!(applied[0], ("x".to_string(), 1));
    let rest: Vec<(String, u64)> = applied[1..].to_vec();
    let expected: Vec<(String, u64)> = later.iter().map(|id| (id.to_string(), 2)).collect();
    assert_eq!(
        rest, expected,
        "B wrote what A let go, in the order it was published"
    );
    let b_seen = b.stats.snapshot();
    assert_eq!(b_seen.received, later.len() as u64, "{b_seen:?}");

    for worker in [a, b] {
        worker.stop.cancel();
        worker.bus.close().await;
    }
    feeder.delete_topology().await.expect("cleanup");
    feeder.close().await;
}
