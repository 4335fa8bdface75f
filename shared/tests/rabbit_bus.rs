//! The bus against the real RabbitMQ: confirms, dead letters with reasons, the delivery limit,
//! single active consumers, the live lane's confirms not waiting for the pipeline's, surviving
//! a dropped connection, and what the bus does while the broker is away or stops answering
//! (through a fault proxy: the shared broker itself is never stopped). Each test has its own
//! prefix, so its queues are its own and tests run in parallel.

// The harness's proxy (tests/src): this crate cannot depend on the harness, which depends on it.
#[allow(dead_code)]
#[path = "../../tests/src/fault_proxy.rs"]
mod fault_proxy;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use adoport_shared::bus::{
    Bus, BusError, Delivery, Destination, LockAttempt, Outgoing, Subscription,
};
use adoport_shared::config::{BrokerTimeouts, Secret, Settings};
use adoport_shared::topology::{DeadLetterQueue, LockQueues, Topology, WorkQueue};
use bytes::Bytes;
use fault_proxy::{Fault, FaultProxy};
use tokio_util::sync::CancellationToken;

fn amqp_url() -> Secret {
    Secret::new(
        std::env::var("ADOPORT_TEST_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
    )
}

fn topology(test: &str, partitions: u16) -> Topology {
    let prefix = format!("t-{test}-{}.", uuid::Uuid::new_v4().simple());
    let mut topology = Topology::new(prefix, partitions);
    topology.delivery_limit = 2;
    topology
}

async fn bus(test: &str, partitions: u16) -> Bus {
    Bus::rabbit(
        &amqp_url(),
        topology(test, partitions),
        BrokerTimeouts::default(),
        CancellationToken::new(),
    )
    .await
    .expect("RabbitMQ reachable (scripts/ensure-rabbitmq.sh starts it)")
}

/// Short enough for a test to see each of them act, long enough for a loaded machine.
const SHORT: BrokerTimeouts = BrokerTimeouts {
    connect: Duration::from_secs(1),
    heartbeat: Duration::from_secs(2),
    operation: Duration::from_secs(2),
    confirm: Duration::from_secs(2),
    fail_fast: Duration::from_millis(500),
};

/// A proxy in front of the shared broker, in `mode`.
async fn proxy(mode: Fault) -> FaultProxy {
    let broker: SocketAddr = "127.0.0.1:5672".parse().expect("address");
    FaultProxy::start(broker, mode).await.expect("proxy starts")
}

/// The shared broker's URL, through `proxy`.
fn through(proxy: &FaultProxy) -> Secret {
    Secret::new(proxy.amqp_url(amqp_url().expose()))
}

/// A bus connected to the shared broker through a proxy that passes, for the test to break.
async fn connected_through_proxy(test: &str, timeouts: BrokerTimeouts) -> (FaultProxy, Bus) {
    let proxy = proxy(Fault::Pass).await;
    let bus = Bus::rabbit(
        &through(&proxy),
        topology(test, 1),
        timeouts,
        CancellationToken::new(),
    )
    .await
    .expect("connected");
    (proxy, bus)
}

/// Lets the proxy pass again, waits for the bus to reconnect and removes the test's queues.
async fn reconnects(proxy: &FaultProxy, bus: &Bus) {
    proxy.set(Fault::Pass);
    until("the reconnect", Duration::from_secs(15), || {
        bus.is_connected()
    })
    .await;
    bus.delete_topology().await.expect("cleanup");
}

/// [`SHORT`] with heartbeats far off: what notices a wedged broker is then something else.
const QUIET: BrokerTimeouts = BrokerTimeouts {
    heartbeat: Duration::from_secs(60),
    ..SHORT
};

/// Waits until `condition` holds, failing the test with `what` after `limit`. The bus's state
/// has no change notification; looking every 50 ms is enough to time the seconds asserted.
async fn until(what: &str, limit: Duration, condition: impl Fn() -> bool) {
    let looking = async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(limit, looking)
        .await
        .unwrap_or_else(|_| panic!("not within {limit:?}: {what}"));
}

/// Publishes `body` on the raw queue and expects it as the next delivery of `subscription`
/// (`what` names it if it does not come); the delivery, not acked.
async fn round_trip(
    bus: &Bus,
    subscription: &mut Subscription,
    body: &str,
    what: &str,
) -> Delivery {
    bus.publish(Outgoing::new(Destination::Raw, body.to_string()))
        .await
        .expect("publish");
    let delivery = within(what, subscription.next()).await.expect("delivery");
    assert_eq!(delivery.body.as_ref(), body.as_bytes());
    delivery
}

/// Publishes as a webhook does (failing fast while the broker is away); the outcome and how
/// long it took.
async fn publish_webhook(bus: &Bus) -> (Result<(), BusError>, Duration) {
    let started = Instant::now();
    let outcome = bus
        .failing_fast()
        .publish(Outgoing::new(Destination::Raw, "webhook"))
        .await;
    (outcome, started.elapsed())
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
        // Draining removes what it returns: gather until both are in.
        let mut letters = Vec::new();
        loop {
            letters.extend(
                bus.drain_dead_letters(DeadLetterQueue::Changes, 10)
                    .await
                    .expect("drain"),
            );
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
    round_trip(&bus, &mut sub, "before", "first")
        .await
        .ack()
        .await
        .expect("ack");

    let closed = tokio::task::spawn_blocking(move || close_connections(&name))
        .await
        .expect("join");
    assert_eq!(closed, 1, "the bus's connection was found and closed");

    // Publishing reconnects (and re-declares); the subscription resumes on its own.
    let delivery = round_trip(&bus, &mut sub, "after", "delivery after reconnect").await;
    delivery.ack().await.expect("ack");
    assert!(bus.is_connected());
    bus.delete_topology().await.expect("cleanup");
}

#[tokio::test]
async fn a_broker_that_takes_the_connection_but_never_answers_is_named_within_the_connect_timeout()
{
    let proxy = proxy(Fault::BlackHole).await;
    for attempt in 0..3 {
        let started = Instant::now();
        let err = Bus::rabbit(
            &through(&proxy),
            topology("blackhole", 1),
            SHORT,
            CancellationToken::new(),
        )
        .await
        .err()
        .expect("no bus from a broker that never answers");
        let took = started.elapsed();
        let text = err.to_string();
        assert!(
            took < Duration::from_secs(3),
            "attempt {attempt} took {took:?}"
        );
        assert!(
            text.contains(&format!("amqp://{}/%2f", proxy.address())),
            "names the broker: {text}"
        );
        assert!(
            text.contains("did not finish the AMQP handshake within 1 s")
                && text.contains("ADOPORT__BROKER__CONNECT_TIMEOUT_SECS"),
            "says what timed out: {text}"
        );
        assert!(!text.contains("guest:guest"), "no credentials: {text}");
    }
    // Each attempt closed its socket when it gave up (and lapin's I/O thread for it ended):
    // a broker that stays wedged for hours does not pile up connections.
    assert_eq!(proxy.accepted(), 3);
    until(
        "the abandoned connections to be closed",
        Duration::from_secs(10),
        || proxy.open() == 0,
    )
    .await;
}

#[tokio::test]
async fn a_bus_starts_without_the_broker_and_works_once_it_answers() {
    let proxy = proxy(Fault::BlackHole).await;
    let prefix = format!("t-start-{}.", uuid::Uuid::new_v4().simple());
    let settings = Settings::from_vars(
        [
            ("ADOPORT__BROKER__URL", through(&proxy).expose().to_string()),
            ("ADOPORT__BROKER__PREFIX", prefix),
            ("ADOPORT__BROKER__PARTITIONS", "1".into()),
            ("ADOPORT__BROKER__CONNECT_TIMEOUT_SECS", "1".into()),
            ("ADOPORT__BROKER__HEARTBEAT_SECS", "2".into()),
            ("ADOPORT__BROKER__WEBHOOK_PUBLISH_TIMEOUT_MS", "500".into()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    )
    .expect("settings");
    let started = Instant::now();
    let bus = Bus::start(&settings, CancellationToken::new()).expect("bus");
    // Half the connect timeout: had it waited for the connection attempt, it would have
    // taken all of it (a bound with room for a loaded machine, not a speed test).
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "never waits for the broker: {:?}",
        started.elapsed()
    );
    assert!(!bus.is_connected());

    // While the broker does not answer: the problem names it, and a webhook's publish fails
    // at once instead of hanging.
    until("the first attempt to fail", Duration::from_secs(5), || {
        bus.problem().is_some_and(|p| p.contains("AMQP handshake"))
    })
    .await;
    let problem = bus.problem().expect("not ready");
    assert!(
        problem.contains(&proxy.address().to_string()) && !problem.contains("guest:guest"),
        "{problem}"
    );
    let (refused, took) = publish_webhook(&bus).await;
    let refused = refused.expect_err("no broker");
    assert!(matches!(refused, BusError::Unreachable { .. }), "{refused}");
    // Well before its 500 ms deadline: it did not wait for the broker to answer.
    assert!(
        took < Duration::from_millis(250),
        "at once, not at the deadline: {took:?}"
    );

    // The pipeline's side waits instead: its subscription and publish complete once it answers.
    let waiting = {
        let bus = bus.clone();
        tokio::spawn(async move {
            let mut subscription = bus.subscribe(WorkQueue::Raw, 4).await.expect("subscribe");
            bus.publish(Outgoing::new(Destination::Raw, "queued while away"))
                .await
                .expect("published once the broker answers");
            let delivery = subscription.next().await.expect("delivered");
            // Acked while the subscription (its channel) is still open.
            (subscription, delivery)
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !waiting.is_finished(),
        "nothing can happen while it is away"
    );
    proxy.set(Fault::Pass);
    let (_subscription, delivery) = within(
        "the publish and delivery after the broker answered",
        waiting,
    )
    .await
    .expect("task");
    assert_eq!(delivery.body.as_ref(), b"queued while away");
    delivery.ack().await.expect("ack");
    assert!(bus.is_connected() && bus.problem().is_none());
    publish_webhook(&bus)
        .await
        .0
        .expect("a webhook publishes once the broker answers");
    bus.delete_topology().await.expect("cleanup");
    bus.close().await;
}

#[tokio::test]
async fn a_broker_that_stops_answering_is_dropped_and_publishing_waits_until_it_is_back() {
    // Heartbeats far off: the confirm timeout is what notices here.
    let (proxy, bus) = connected_through_proxy("wedged", QUIET).await;
    let mut subscription = bus.subscribe(WorkQueue::Raw, 4).await.expect("subscribe");
    let before = round_trip(&bus, &mut subscription, "before", "first").await;

    // The broker keeps the connection but answers nothing.
    proxy.set(Fault::BlackHole);
    let (refused, took) = publish_webhook(&bus).await;
    let refused = refused.expect_err("not confirmed");
    assert!(
        took < Duration::from_millis(1500),
        "a webhook's publish gives up within its deadline: {took:?}"
    );
    assert!(
        matches!(refused, BusError::NotConfirmed { .. }),
        "{refused}"
    );
    let waiting = {
        let bus = bus.clone();
        tokio::spawn(async move { bus.publish(Outgoing::new(Destination::Raw, "during")).await })
    };
    // The confirms do not come within 2 s: the connection is taken as broken long before the
    // 60 s heartbeats would, and the publish waits for the next one.
    until(
        "the wedged connection to be dropped",
        Duration::from_secs(6),
        || !bus.is_connected(),
    )
    .await;
    assert!(!waiting.is_finished(), "the publish waits for the broker");
    // Settling a delivery of the dead connection is not a failure: it comes again.
    let lost = before.ack().await.expect_err("its channel is gone");
    assert!(matches!(lost, BusError::DeliveryLost { .. }), "{lost}");

    proxy.set(Fault::Pass);
    within("the waiting publish", waiting)
        .await
        .expect("task")
        .expect("published once the broker answered");
    // The consumer resumed on the new connection: the unacked message comes again (marked
    // redelivered), then the one published while the broker was away.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let delivery = within("deliveries after the reconnect", subscription.next())
            .await
            .expect("delivery");
        let body = String::from_utf8_lossy(&delivery.body).to_string();
        if body == "before" {
            assert!(delivery.previous_deliveries >= 1, "redelivered");
        }
        delivery.ack().await.expect("ack");
        if !seen.contains(&body) {
            seen.push(body);
        }
    }
    seen.sort();
    assert_eq!(seen, ["before", "during"]);
    bus.delete_topology().await.expect("cleanup");
}

#[tokio::test]
async fn an_operation_the_broker_does_not_answer_times_out_and_breaks_the_connection() {
    let (proxy, bus) = connected_through_proxy("operation", QUIET).await;
    proxy.set(Fault::BlackHole);
    // An operator tool's or a metrics scrape's operation times out, naming the setting.
    let started = Instant::now();
    let timed_out = bus
        .ready_count(WorkQueue::Raw)
        .await
        .expect_err("no answer");
    assert!(
        matches!(timed_out, BusError::TimedOut { .. })
            && timed_out
                .to_string()
                .contains("ADOPORT__BROKER__OPERATION_TIMEOUT_SECS"),
        "{timed_out}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // And the connection is taken as broken, long before the 60 s heartbeats would.
    until(
        "the wedged connection to be dropped",
        Duration::from_secs(3),
        || !bus.is_connected(),
    )
    .await;
    reconnects(&proxy, &bus).await;
}

#[tokio::test]
async fn heartbeats_drop_a_quiet_connection_to_a_broker_that_stopped_answering() {
    let (proxy, bus) = connected_through_proxy("heartbeat", SHORT).await;
    assert!(bus.is_connected());
    proxy.set(Fault::BlackHole);
    // Nothing is published or consumed: only the heartbeats (2 s) can tell.
    let started = Instant::now();
    until(
        "the silent connection to be dropped",
        Duration::from_secs(10),
        || !bus.is_connected(),
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "not before two heartbeats are missed: {:?}",
        started.elapsed()
    );
    assert!(bus.problem().is_some());
    reconnects(&proxy, &bus).await;
}

#[tokio::test]
async fn publishing_waits_across_a_cut_of_any_length() {
    let (proxy, bus) = connected_through_proxy("cut", SHORT).await;
    proxy.set(Fault::Cut);
    until("the cut to be noticed", Duration::from_secs(10), || {
        !bus.is_connected()
    })
    .await;
    let publishers: Vec<_> = (0..4)
        .map(|i| {
            let bus = bus.clone();
            tokio::spawn(async move {
                bus.publish(Outgoing::new(Destination::Raw, format!("{i}")))
                    .await
            })
        })
        .collect();
    // Reconnect attempt after attempt is refused; nobody gives up.
    until(
        "several reconnect attempts",
        Duration::from_secs(30),
        || proxy.accepted() >= 6,
    )
    .await;
    assert!(publishers.iter().all(|p| !p.is_finished()), "still waiting");
    proxy.set(Fault::Pass);
    for publisher in publishers {
        within("a waiting publish", publisher)
            .await
            .expect("task")
            .expect("published once the broker is back");
    }
    assert_eq!(bus.ready_count(WorkQueue::Raw).await.expect("count"), 4);
    bus.delete_topology().await.expect("cleanup");
}

#[tokio::test]
async fn waiting_publishes_end_on_shutdown() {
    let proxy = proxy(Fault::Cut).await;
    let shutdown = CancellationToken::new();
    let settings = Settings::from_vars(
        [
            ("ADOPORT__BROKER__URL", through(&proxy).expose().to_string()),
            ("ADOPORT__BROKER__CONNECT_TIMEOUT_SECS", "1".into()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    )
    .expect("settings");
    let bus = Bus::start(&settings, shutdown.clone()).expect("bus");
    let publishing = {
        let bus = bus.clone();
        tokio::spawn(async move { bus.publish(Outgoing::new(Destination::Raw, "x")).await })
    };
    let consuming = {
        let bus = bus.clone();
        tokio::spawn(async move {
            let mut subscription = bus.subscribe(WorkQueue::Raw, 1).await.expect("subscribe");
            subscription.next().await.is_none()
        })
    };
    until("a few refused attempts", Duration::from_secs(10), || {
        proxy.accepted() >= 2
    })
    .await;
    shutdown.cancel();
    let outcome = within("the publish to end", publishing)
        .await
        .expect("task");
    assert!(
        matches!(outcome, Err(BusError::ShuttingDown)),
        "{outcome:?}"
    );
    assert!(
        within("the subscription to end", consuming)
            .await
            .expect("task"),
        "a subscription yields nothing after shutdown"
    );
}

/// A second bus on `first`'s queues (another replica), connected to the shared broker.
async fn replica_of(first: &Bus, timeouts: BrokerTimeouts) -> Bus {
    Bus::rabbit(
        &amqp_url(),
        first.topology().clone(),
        timeouts,
        CancellationToken::new(),
    )
    .await
    .expect("connected")
}

/// Tries the lock every 100 ms until it is held.
async fn take_lock(bus: &Bus, name: &LockQueues) -> adoport_shared::bus::BusLock {
    loop {
        match bus.try_lock(name).await.expect("lock attempt") {
            LockAttempt::Held(lock) => return lock,
            LockAttempt::Taken => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test]
async fn one_connection_holds_the_lock_and_another_takes_it_once_the_holder_is_gone() {
    let a = bus("lock", 1).await;
    let b = replica_of(&a, BrokerTimeouts::default()).await;
    let name = a.topology().leader_lock();
    let LockAttempt::Held(held) = a.try_lock(&name).await.expect("attempt") else {
        panic!("the lock is free at first");
    };
    held.confirm().await.expect("the holder is confirmed");
    assert!(
        matches!(
            b.try_lock(&name).await.expect("attempt"),
            LockAttempt::Taken
        ),
        "the holder's presence is read as: another process holds it"
    );
    // Without looking at the presence queue, the broker's RESOURCE_LOCKED says the same.
    let bare = LockQueues {
        lock: name.lock.clone(),
        presence: format!("{}.absent", name.presence),
    };
    assert!(
        matches!(
            b.try_lock(&bare).await.expect("attempt"),
            LockAttempt::Taken
        ),
        "RESOURCE_LOCKED is read as: another process holds it"
    );
    // The holder's connection closes: the broker drops the lock and the other takes it.
    a.close().await;
    let taken = within("the other replica to take the lock", take_lock(&b, &name)).await;
    taken.confirm().await.expect("the new holder is confirmed");
    // Released: free again at once.
    taken.release().await;
    let again = within("the lock to be free after release", take_lock(&b, &name)).await;
    again.release().await;
    b.delete_topology().await.expect("cleanup");
    b.close().await;
}

#[tokio::test]
async fn a_holder_cut_off_from_the_broker_knows_before_the_broker_hands_the_lock_over() {
    // The holder's heartbeat is 4 s: the broker drops its connection after about that long
    // without a frame, so it must give the lock up sooner.
    let timeouts = BrokerTimeouts {
        heartbeat: Duration::from_secs(4),
        ..SHORT
    };
    let (proxy, a) = connected_through_proxy("lock-cut", timeouts).await;
    let b = replica_of(&a, SHORT).await;
    let name = a.topology().leader_lock();
    let LockAttempt::Held(held) = a.try_lock(&name).await.expect("attempt") else {
        panic!("the lock is free at first");
    };
    assert_eq!(held.heartbeat(), Some(Duration::from_secs(4)));
    assert_eq!(held.confirm_limit(), Duration::from_secs(2));
    assert_eq!(held.confirm_every(), Duration::from_secs(1));
    // A partition: neither side hears the other; the broker finds out by the heartbeats.
    proxy.set(Fault::Partition);
    let cut = Instant::now();
    // The holder confirms as a leader does; the other tries every 100 ms.
    let holder = async {
        loop {
            tokio::time::sleep(held.confirm_every()).await;
            if let Err(why) = held.confirm().await {
                return (cut.elapsed(), why);
            }
        }
    };
    let other = async {
        let lock = take_lock(&b, &name).await;
        (cut.elapsed(), lock)
    };
    let ((gave_up, why), (taken, lock)) =
        within("both sides to act", async { tokio::join!(holder, other) }).await;
    println!(
        "cut off: the holder gave up after {gave_up:?}, the other took the lock after {taken:?}"
    );
    assert!(
        gave_up < taken,
        "the cut-off holder gave the lock up after {gave_up:?} ({why}), before the other took it after {taken:?}"
    );
    lock.release().await;
    b.close().await;
    reconnects(&proxy, &a).await;
}

#[tokio::test]
async fn a_register_keeps_its_newest_value_for_any_reader() {
    let a = bus("register", 1).await;
    let name = a.topology().leader_record();
    assert!(a.read_register(&name).await.expect("read").is_empty());
    for value in ["one", "two", "three"] {
        a.write_register(&name, Bytes::from(value))
            .await
            .expect("write");
    }
    assert_eq!(a.read_register(&name).await.expect("read"), ["three"]);
    // Reading leaves it in place, for another replica too.
    let b = replica_of(&a, BrokerTimeouts::default()).await;
    assert_eq!(b.read_register(&name).await.expect("read"), ["three"]);
    b.write_register(&name, Bytes::from("four"))
        .await
        .expect("write");
    assert_eq!(a.read_register(&name).await.expect("read"), ["four"]);
    b.close().await;
    a.delete_topology().await.expect("cleanup");
}

/// A webhook's publish on the live lane is confirmed while the pipeline lane's confirms are
/// held back (by the proxy: the test does not depend on how fast the broker is), and neither
/// lane loses a message. Without the lane (`bus.with_live_lane(false)`) the webhook's publish
/// goes on the held channel and is not confirmed within its deadline: this test fails.
#[tokio::test]
async fn a_live_publish_is_confirmed_while_the_pipeline_lanes_confirms_are_held_back() {
    // The pipeline's confirms are held well within its confirm timeout.
    let timeouts = BrokerTimeouts {
        confirm: Duration::from_secs(60),
        ..BrokerTimeouts::default()
    };
    const PAGES: usize = 20;
    let (proxy, bus) = connected_through_proxy("live-lane", timeouts).await;
    proxy.set(Fault::HoldNextPublisher);
    let pages = (0..PAGES)
        .map(|i| Outgoing::new(Destination::Raw, format!("page {i}")))
        .collect();
    let crawl = {
        let bus = bus.clone();
        tokio::spawn(async move { bus.publish_all(pages).await })
    };
    // The broker confirmed some of the pages; the proxy keeps that from the bus.
    within("the pipeline's first confirm to be held", proxy.holds(1)).await;

    bus.failing_fast()
        .live_lane()
        .publish(Outgoing::new(Destination::Raw, "webhook"))
        .await
        .expect("the live publish is confirmed within its deadline");
    assert!(
        !crawl.is_finished(),
        "the pipeline's publish waits for its held confirms"
    );

    proxy.set(Fault::Pass);
    within("the pipeline's confirms once released", crawl)
        .await
        .expect("the crawl's task")
        .expect("the pages are confirmed");
    assert_eq!(proxy.held(), 0);
    assert_eq!(
        bus.ready_count(WorkQueue::Raw).await.expect("count"),
        PAGES as u64 + 1,
        "nothing lost on either lane"
    );
    bus.delete_topology().await.expect("cleanup");
}
