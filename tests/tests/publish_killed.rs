//! The publish role killed mid-batch (real RabbitMQ, simulated Azure DevOps and Port): nothing
//! is lost and the writes it repeats do no harm (DESIGN.md §3, invariants 1 and 2).
//!
//! The "kill" drops the publisher's broker connection while it holds open batches and requests:
//! the broker takes back every unacked change, as it does when a process dies. Whatever that
//! publisher still sends to Port afterwards is a duplicate of what its successor sends again.

use std::time::Duration;

use adoport_shared::config::Settings;
use adoport_shared::topology::DeadLetterQueue;
use adoport_tests::{BusKind, Running, publish_process, roles, start, within};

const REPOSITORY: &str = "azureDevopsRepository";

/// The settings of a publish "process" on the test's queues.
fn publish_settings(running: &Running) -> Settings {
    running.process_settings(&[
        // Small batches that linger: the kill finds some written, some batched, some in flight.
        ("ADOPORT__PUBLISH__PREFETCH", "3"),
        ("ADOPORT__PUBLISH__BATCH_LINGER_MS", "200"),
        ("ADOPORT__PUBLISH__MAX_CONCURRENT_REQUESTS", "2"),
    ])
}

#[tokio::test]
async fn publish_killed_mid_batch_loses_nothing_and_repeats_harmlessly() {
    let running = start(
        "kill-publish",
        BusKind::Rabbit,
        roles::INGEST_TRANSFORM,
        12,
        10,
        &[],
    )
    .await;
    let expected = 12 + 12 * 10;
    let settings = publish_settings(&running);

    let (first, first_bus) = publish_process(&settings).await;
    within(
        30,
        "the first publisher to write some entities",
        first.publish_stats.wait_until(|s| s.upserted >= 3),
    )
    .await;
    // Kill: its connection drops with batches open and requests in flight.
    first_bus.close().await;
    let written_by_first = running.world.port.entity_count();
    assert!(
        written_by_first < expected,
        "killed before the end ({written_by_first} of {expected} written)"
    );
    first.stop().await.expect("the killed publisher winds down");

    let (second, second_bus) = publish_process(&settings).await;
    running.wait_for_entity_count(expected).await;
    // The successor picked up what the first left unacked.
    assert!(second.publish_stats.snapshot().received > 0);
    // Every repository holds its current state, exactly once.
    for repository in running.world.ado.repositories() {
        let id = repository["id"].as_str().expect("id");
        let entity = running
            .world
            .port
            .entity(REPOSITORY, id)
            .unwrap_or_else(|| panic!("repository {id} missing"));
        assert_eq!(entity["title"], repository["name"], "repository {id}");
    }
    assert_eq!(running.world.port.entity_count(), expected);
    assert!(
        running
            .bus
            .drain_dead_letters(DeadLetterQueue::Changes, 10)
            .await
            .expect("drain")
            .is_empty(),
        "nothing dead-lettered"
    );
    // Every change is settled: nothing left on the change queues.
    within(30, "the change queues to empty", async {
        loop {
            let mut ready = 0;
            for queue in running.settings.topology().change_queues() {
                ready += running.bus.ready_count(queue).await.expect("count");
            }
            if ready == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    second.stop().await.expect("stops");
    second_bus.close().await;
    running.stop().await;
}
