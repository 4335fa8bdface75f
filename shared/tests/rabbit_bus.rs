//! The bus against the real RabbitMQ: confirms, dead letters with reasons, the delivery limit,
//! single active consumers, and surviving a dropped connection. Each test has its own prefix,
//! so its queues are its own and tests run in parallel.

use std::time::Duration;

use adoport_shared::bus::{Bus, Destination, Outgoing};
use adoport_shared::config::Secret;
use adoport_shared::topology::{DeadLetterQueue, Topology, WorkQueue};
use tokio_util::sync::CancellationToken;

fn amqp_url() -> Secret {
    Secret::new(
        std::env::var("ADOPORT_TEST_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
    )
}

async fn bus(test: &str, partitions: u16) -> Bus {
    let prefix = format!("t-{test}-{}.", uuid::Uuid::new_v4().simple());
    let mut topology = Topology::new(prefix, partitions);
    topology.delivery_limit = 2;
    Bus::rabbit(&amqp_url(), topology, CancellationToken::new())
        .await
        .expect("RabbitMQ reachable (scripts/ensure-rabbitmq.sh starts it)")
}

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    // Generous: broker-side dead lettering runs in its own process and lags on a loaded machine.
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[tokio::test]
async fn confirmed_publish_is_consumed_and_acked() {
    let bus = bus("confirm", 2).await;
    let messages = (0..10)
        .map(|i| Outgoing::new(Destination::Raw, format!("{{\"n\":{i}}}")))
        .collect();
    bus.publish_all(messages).await.expect("confirmed");
    assert_eq!(bus.ready_count(WorkQueue::Raw).await.expect("count"), 10);
    let mut sub = bus.subscribe(WorkQueue::Raw, 4).await.expect("subscribe");
    for i in 0..10 {
        let delivery = within("delivery", sub.next()).await.expect("delivery");
        assert_eq!(delivery.body.as_ref(), format!("{{\"n\":{i}}}").as_bytes());
        assert_eq!(delivery.previous_deliveries, 0);
        delivery.ack().await.expect("ack");
    }
    bus.delete_topology().await.expect("cleanup");
}

#[tokio::test]
async fn dead_letters_carry_their_reason_and_the_delivery_limit_holds() {
    let bus = bus("dlq", 1).await;
    bus.publish(Outgoing::new(
        Destination::Change { partition: 0 },
        "poison",
    ))
    .await
    .expect("publish");
    bus.publish(Outgoing::new(
        Destination::Change { partition: 0 },
        "crash-loop",
    ))
    .await
    .expect("publish");
    let mut sub = bus
        .subscribe(WorkQueue::Changes { partition: 0 }, 1)
        .await
        .expect("subscribe");
    let poison = within("poison", sub.next()).await.expect("delivery");
    poison
        .dead_letter("Port rejected it: 422 invalid_request")
        .await
        .expect("dead-letter");
    // A message that keeps coming back is dead-lettered by the broker after the limit (2).
    let mut seen = 0;
    while let Some(delivery) = within("redelivery", sub.next()).await {
        assert_eq!(delivery.body.as_ref(), b"crash-loop");
        seen += 1;
        delivery.requeue().await.expect("requeue");
        if seen == 3 {
            break;
        }
    }
    let letters = within("dead letters", async {
        loop {
            let letters = bus
                .drain_dead_letters(DeadLetterQueue::Changes, 10)
                .await
                .expect("drain");
            if letters.len() >= 2 {
                return letters;
            }
            // Broker-side dead lettering is asynchronous; ask again shortly.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(letters[0].body.as_ref(), b"poison");
    assert_eq!(letters[0].reason, "Port rejected it: 422 invalid_request");
    assert!(
        letters[0].origin_queue.ends_with("port.changes.p0"),
        "{}",
        letters[0].origin_queue
    );
    assert_eq!(letters[1].body.as_ref(), b"crash-loop");
    assert!(
        letters[1].reason.contains("delivery_limit"),
        "{}",
        letters[1].reason
    );
    bus.delete_topology().await.expect("cleanup");
}

#[tokio::test]
async fn a_partition_has_one_active_consumer() {
    let bus = bus("sac", 1).await;
    let queue = WorkQueue::Changes { partition: 0 };
    let mut first = bus.subscribe(queue, 10).await.expect("first");
    let mut second = bus.subscribe(queue, 10).await.expect("second");
    let messages = (0..6)
        .map(|i| Outgoing::new(Destination::Change { partition: 0 }, format!("{i}")))
        .collect();
    bus.publish_all(messages).await.expect("publish");
    for i in 0..6 {
        let delivery = within("delivery", first.next()).await.expect("delivery");
        assert_eq!(
            delivery.body.as_ref(),
            format!("{i}").as_bytes(),
            "in order"
        );
        delivery.ack().await.expect("ack");
    }
    // The standby got nothing while the first consumer was active.
    let idle = tokio::time::timeout(Duration::from_millis(300), second.next()).await;
    assert!(idle.is_err(), "standby consumer received a message");
    bus.delete_topology().await.expect("cleanup");
}

#[tokio::test]
async fn unroutable_publishes_are_errors_not_silence() {
    let bus = bus("unroutable", 2).await;
    // Partition 5 does not exist in a 2-partition topology: nothing is bound to its key.
    let err = bus
        .publish(Outgoing::new(Destination::Change { partition: 5 }, "lost?"))
        .await
        .expect_err("unroutable");
    assert!(
        matches!(err, adoport_shared::bus::BusError::Unroutable { .. }),
        "{err}"
    );
    bus.delete_topology().await.expect("cleanup");
}

#[tokio::test]
async fn memory_bus_has_the_same_contract() {
    let bus = Bus::memory(Topology::new("", 2), CancellationToken::new());
    bus.publish_all(vec![
        Outgoing::new(Destination::Raw, "a"),
        Outgoing::new(Destination::Raw, "b"),
    ])
    .await
    .expect("publish");
    let mut sub = bus.subscribe(WorkQueue::Raw, 8).await.expect("subscribe");
    assert!(
        bus.subscribe(WorkQueue::Raw, 8).await.is_err(),
        "one consumer per queue"
    );
    let a = sub.next().await.expect("a");
    a.dead_letter("bad").await.expect("dead-letter");
    let b = sub.next().await.expect("b");
    assert_eq!(b.body.as_ref(), b"b");
    b.ack().await.expect("ack");
    let letters = bus
        .drain_dead_letters(DeadLetterQueue::Raw, 10)
        .await
        .expect("drain");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, "bad");
}

/// Closes the broker side of every connection whose name starts with `name_prefix`, the way a
/// broker restart or a network cut would look to the client.
fn close_connections(name_prefix: &str) -> usize {
    let listed = std::process::Command::new("rabbitmqctl")
        .args([
            "-q",
            "list_connections",
            "--no-table-headers",
            "pid",
            "client_properties",
        ])
        .output()
        .expect("rabbitmqctl runs");
    let text = String::from_utf8_lossy(&listed.stdout);
    let mut closed = 0;
    for line in text.lines() {
        let Some((pid, properties)) = line.split_once('\t') else {
            continue;
        };
        if properties.contains(&format!("{{\"connection_name\",\"{name_prefix}")) {
            let status = std::process::Command::new("rabbitmqctl")
                .args([
                    "-q",
                    "close_connection",
                    pid,
                    "test: simulated connection loss",
                ])
                .status()
                .expect("rabbitmqctl runs");
            assert!(status.success());
            closed += 1;
        }
    }
    closed
}

#[tokio::test]
async fn survives_a_dropped_connection() {
    let bus = bus("reconnect", 1).await;
    let name = format!("adoport-{}", bus.topology().prefix());
    let mut sub = bus.subscribe(WorkQueue::Raw, 4).await.expect("subscribe");
    bus.publish(Outgoing::new(Destination::Raw, "before"))
        .await
        .expect("publish");
    within("first", sub.next())
        .await
        .expect("delivery")
        .ack()
        .await
        .expect("ack");

    let closed = tokio::task::spawn_blocking(move || close_connections(&name))
        .await
        .expect("join");
    assert_eq!(closed, 1, "the bus's connection was found and closed");

    // Publishing reconnects (and re-declares); the subscription resumes on its own.
    bus.publish(Outgoing::new(Destination::Raw, "after"))
        .await
        .expect("publish after reconnect");
    let delivery = within("delivery after reconnect", sub.next())
        .await
        .expect("delivery");
    assert_eq!(delivery.body.as_ref(), b"after");
    delivery.ack().await.expect("ack");
    assert!(bus.is_connected());
    bus.delete_topology().await.expect("cleanup");
}
