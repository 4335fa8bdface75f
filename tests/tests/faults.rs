//! Fault tests of the invariants (DESIGN.md §3): a stage killed mid-stream, Port answering 429
//! and 500, messages nobody can read. Each runs on the real RabbitMQ with its own queues.

use adoport::pipeline::Roles;
use adoport_shared::bus::{Destination, Outgoing};
use adoport_shared::topology::DeadLetterQueue;
use adoport_sim::ScriptedAnswer;
use adoport_tests::{BusKind, roles, start, test_mapping, within};

const BULK: &str = "POST /v1/blueprints/{bp}/entities/bulk";

#[tokio::test]
async fn transform_killed_mid_stream_loses_nothing() {
    // Ingest and publish run; transform runs in its own "process" that is killed and restarted.
    let running = start(
        "kill-transform",
        BusKind::Rabbit,
        roles::INGEST_PUBLISH,
        12,
        10,
        &[
            ("ADOPORT__INGEST__ITEMS_PER_EVENT", "3"),
            ("ADOPORT__TRANSFORM__PREFETCH", "2"),
        ],
    )
    .await;
    let expected = 12 + 12 * 10;
    // Transform alone, on the test's connection.
    let mapping = test_mapping();
    let first = running.start_transform(&mapping).await;
    within(
        30,
        "transform to settle some raw events",
        first.transform_stats.clone().wait_for_settled(5),
    )
    .await;
    // Kill it: in-flight events are neither acked nor lost.
    first.stop().await.expect("stops");
    assert!(
        running.world.port.entity_count() < expected,
        "killed before the end"
    );

    let second = running.start_transform(&mapping).await;
    running.wait_for_entity_count(expected).await;
    for repository in running.world.ado.repositories() {
        let id = repository["id"].as_str().expect("id");
        assert!(
            running
                .world
                .port
                .entity("azureDevopsRepository", id)
                .is_some(),
            "repository {id}"
        );
    }
    assert!(
        running
            .bus
            .drain_dead_letters(DeadLetterQueue::Raw, 10)
            .await
            .expect("drain")
            .is_empty()
    );
    second.stop().await.expect("stops");
    running.stop().await;
}

#[tokio::test]
async fn port_answering_429_and_500_delays_but_loses_nothing() {
    let mut running = start("port-faults", BusKind::Rabbit, Roles::ALL, 3, 5, &[]).await;
    running.world.port.fail_next(
        BULK,
        vec![
            ScriptedAnswer::rate_limited(1),
            ScriptedAnswer::status(500),
            ScriptedAnswer::status(503),
            ScriptedAnswer::status(502),
        ],
    );
    running.resync_settled().await;
    assert_eq!(running.world.port.entity_count(), 3 + 15);
    let stats = running.pipeline.publish_stats.snapshot();
    assert_eq!(stats.dead_lettered, 0);
    assert!(stats.retried >= 4, "{stats:?}");
    running.stop().await;
}

#[tokio::test]
async fn unreadable_raw_events_are_dead_lettered_with_the_reason() {
    let running = start("unreadable", BusKind::Rabbit, roles::TRANSFORM, 1, 1, &[]).await;
    running
        .bus
        .publish_all(vec![
            Outgoing::new(Destination::Raw, r#"{"v": 99, "kind": "repository"}"#),
            Outgoing::new(Destination::Raw, "not json at all"),
        ])
        .await
        .expect("published");
    let letters = within(20, "two dead letters", async {
        let mut letters = Vec::new();
        while letters.len() < 2 {
            letters.extend(
                running
                    .bus
                    .drain_dead_letters(DeadLetterQueue::Raw, 10)
                    .await
                    .expect("drain"),
            );
            tokio::task::yield_now().await;
        }
        letters
    })
    .await;
    let reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    assert!(
        reasons.iter().any(|r| r.contains("schema version 99")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("not JSON")),
        "{reasons:?}"
    );
    assert!(
        letters
            .iter()
            .all(|l| l.origin_queue.ends_with("ado.raw.work"))
    );
    running.stop().await;
}
