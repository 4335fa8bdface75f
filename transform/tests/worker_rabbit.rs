//! The transform worker on the real RabbitMQ, with a mapping whose expression runs away on
//! some items: `def f: 1 + f; f` (which used to overflow the stack and abort the process) and
//! `last(range(1e10))` (which used to hang the worker). Those items are failed and
//! dead-lettered, each with a reason naming the expression's path, the kind and the item id;
//! every other item of the same events, and the other events of the queue, are transformed and
//! acked; resync progress counts the failed items (so reconciliation deletes nothing); and the
//! process — this test — stays alive. Each test has its own queue prefix.

use std::time::Duration;

use adoport_shared::bus::{Bus, Destination, Outgoing};
use adoport_shared::config::{BrokerTimeouts, Secret};
use adoport_shared::mapping_versions::MappingVersions;
use adoport_shared::messages::{
    ChangeOp, EntityChange, Origin, RawEvent, ResyncControl, ResyncId, decode, encode,
};
use adoport_shared::topology::{DeadLetterQueue, Topology, WorkQueue};
use adoport_transform::JqLimits;
use adoport_transform::mapping::versions::CompiledVersions;
use adoport_transform::worker::{TransformStats, run};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const PARTITIONS: u16 = 2;

mod support;

use support::{SHAPED, thing_event as raw, thing_mapping};

/// `shaped` recurses without end, loops without end, or maps, as the item's `shape` says.
const PROPERTIES: &str = r#"
            name: .name
            shaped: >-
              if .shape == "recursion" then (def f: 1 + f; f)
              elif .shape == "loop" then last(range(1e10))
              else .name | ascii_upcase end
"#;

fn amqp_url() -> Secret {
    Secret::new(
        std::env::var("ADOPORT_TEST_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
    )
}

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn limits() -> JqLimits {
    support::limits(Duration::from_millis(500))
}

fn thing(id: u64, shape: &str) -> Value {
    json!({"id": id, "name": format!("thing {id}"), "shape": shape})
}

/// Takes `count` messages off a work queue (acking them).
async fn take(bus: &Bus, queue: WorkQueue, count: usize) -> Vec<Vec<u8>> {
    let mut subscription = bus.subscribe(queue, 16).await.expect("subscribe");
    let mut bodies = Vec::new();
    while bodies.len() < count {
        let delivery = within("a message", subscription.next())
            .await
            .expect("a delivery");
        bodies.push(delivery.body.to_vec());
        delivery.ack().await.expect("ack");
    }
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_items_are_dead_lettered_and_everything_else_is_transformed() {
    let prefix = format!("t-jq-runaway-{}.", uuid::Uuid::new_v4().simple());
    let shutdown = CancellationToken::new();
    let bus = Bus::rabbit(
        &amqp_url(),
        Topology::new(prefix, PARTITIONS),
        BrokerTimeouts::default(),
        shutdown.clone(),
    )
    .await
    .expect("RabbitMQ reachable (scripts/ensure-rabbitmq.sh starts it)");

    let resync = ResyncId::new();
    let resync_origin = || Origin::Resync { resync_id: resync };
    let webhook = Origin::Webhook {
        event_type: "thing.updated".into(),
        delivery_id: "d1".into(),
    };
    // One event with a recursion between two good items, a good webhook event, and one with
    // an endless generator after a good item.
    let first = raw(
        resync_origin(),
        vec![thing(1, "none"), thing(2, "recursion"), thing(3, "none")],
    );
    let second = raw(webhook, vec![thing(4, "none")]);
    let third = raw(resync_origin(), vec![thing(5, "none"), thing(6, "loop")]);
    let events = [first.clone(), second, third.clone()];
    bus.publish_all(
        events
            .iter()
            .map(|e| Outgoing::new(Destination::Raw, encode(e)))
            .collect(),
    )
    .await
    .expect("raw events published");

    let config = thing_mapping(PROPERTIES);
    let versions = std::sync::Arc::new(
        CompiledVersions::new(MappingVersions::new(config)).expect("mapping compiles"),
    );
    let stats = TransformStats::default();
    let worker = tokio::spawn(run(
        bus.clone(),
        versions,
        4,
        limits(),
        stats.clone(),
        shutdown.clone(),
    ));
    within(
        "the three events settled",
        stats.clone().wait_for_settled(3),
    )
    .await;

    // Every good item is transformed.
    let changes = within(
        "the changes",
        changes_on_partitions(&bus, stats.changes_published() as usize),
    )
    .await;
    let mut upserted: Vec<(String, Value)> = changes
        .iter()
        .map(|body| decode::<EntityChange>(body).expect("an entity change"))
        .map(|change| match change.op {
            ChangeOp::Upsert { entity } => (change.identifier, entity["properties"].clone()),
            ChangeOp::Delete => panic!("a delete of {}", change.identifier),
        })
        .collect();
    upserted.sort_by(|a, b| a.0.cmp(&b.0));
    let ids: Vec<&str> = upserted.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["1", "3", "4", "5"]);
    assert_eq!(
        upserted[0].1,
        json!({"name": "thing 1", "shaped": "THING 1"})
    );

    // The stopped items are parked, one dead letter per event that had some, each a copy of
    // its event holding only them, with the reason.
    // (Confirmed before their events were settled: they are there.)
    let mut parked: Vec<(RawEvent, String)> = bus
        .drain_dead_letters(DeadLetterQueue::Raw, 10)
        .await
        .expect("drain")
        .into_iter()
        .map(|l| (decode::<RawEvent>(&l.body).expect("a raw event"), l.reason))
        .collect();
    parked.sort_by_key(|(event, _)| event.items[0]["id"].as_u64());
    assert_eq!(parked.len(), 2, "{parked:?}");
    let (recursion, reason) = &parked[0];
    assert_eq!(recursion.id, first.id);
    assert_eq!(recursion.items, [thing(2, "recursion")]);
    for expected in [SHAPED, "(thing 2)", "JQ_MAX_STACK_MIB", "def f: 1 + f; f"] {
        assert!(reason.contains(expected), "{expected} not in: {reason}");
    }
    let (endless, reason) = &parked[1];
    assert_eq!(endless.id, third.id);
    assert_eq!(endless.items, [thing(6, "loop")]);
    for expected in [SHAPED, "(thing 6)", "ADOPORT__TRANSFORM__JQ_"] {
        assert!(reason.contains(expected), "{expected} not in: {reason}");
    }

    // Reconciliation hears of each failed item, and deletes nothing on the strength of it.
    let progress = take(&bus, WorkQueue::ResyncProgress, 2).await;
    let mut failed: Vec<(u64, usize)> = progress
        .iter()
        .map(
            |body| match decode::<ResyncControl>(body).expect("progress") {
                ResyncControl::Progress {
                    failed_items,
                    produced,
                    ..
                } => (failed_items, produced.len()),
                other => panic!("unexpected {other:?}"),
            },
        )
        .collect();
    failed.sort();
    assert_eq!(failed, [(1, 1), (1, 2)]);

    // Nothing is left on the raw queue; the counters say what happened.
    assert_eq!(bus.ready_count(WorkQueue::Raw).await.expect("count"), 0);
    assert_eq!(stats.items_dead_lettered(), 2);
    assert_eq!(stats.item_failures(), 2);
    assert_eq!(stats.events_dead_lettered(), 0);

    shutdown.cancel();
    within("the worker to stop", worker)
        .await
        .expect("worker task")
        .expect("worker ran");
    bus.delete_topology().await.expect("cleanup");
}

/// Takes `count` entity changes off the change partitions.
async fn changes_on_partitions(bus: &Bus, count: usize) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    for partition in 0..PARTITIONS {
        let queue = WorkQueue::Changes { partition };
        let ready = bus.ready_count(queue).await.expect("count") as usize;
        bodies.extend(take(bus, queue, ready).await);
    }
    assert_eq!(bodies.len(), count, "changes on the partitions");
    bodies
}
