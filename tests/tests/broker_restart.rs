//! A broker restart is survived: the roles wait while it is away, reconnect, declare again and
//! resume; what was confirmed before the restart is still there after it, and a resync caught
//! in the middle completes.
//!
//! Each test runs its own RabbitMQ node (`RabbitNode`): the shared broker is never stopped.

use std::time::Duration;

use adoport::pipeline::Roles;
use adoport_ingest::resync;
use adoport_shared::messages::ResyncTrigger;
use adoport_tests::{
    BusKind, RabbitNode, Start, port_reaches, repo_renamed_event, repository_titled, test_mapping,
    within,
};

#[tokio::test]
async fn the_pipeline_survives_a_broker_restart() {
    let mut node = RabbitNode::start().await;
    let mut running = Start::new("restart", BusKind::Rabbit, Roles::ALL)
        .broker(&node.url())
        .run()
        .await;
    running.resync_settled().await;
    assert_eq!(running.world.port.entity_count(), 2 + 6);

    // Every connection drops; queues and messages stay.
    node.restart(Duration::ZERO).await;

    // A live event after the restart goes all the way through: ingest publishes on a new
    // connection, transform and publish consume again.
    let repository = running.world.ado.repositories().remove(0);
    let id = repository["id"].as_str().expect("id").to_string();
    running.world.ado.rename_repository(&id, "after-restart");
    let status = within(60, "the webhook to be accepted after the restart", async {
        loop {
            let answer = running.post_event(&repo_renamed_event(&repository)).await;
            // 503 until the bus has reconnected: Azure DevOps would retry, and so do we.
            if answer.status().as_u16() != 503 {
                return answer.status().as_u16();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert_eq!(status, 200);
    port_reaches(
        &running.world.port,
        60,
        "the change made after the restart",
        |port| repository_titled(port, &id, "after-restart"),
    )
    .await;
    running.stop().await;
}

/// Projects and repositories per project of the organization: 80 + 1,200 entities.
const PROJECTS: usize = 80;
const REPOSITORIES: usize = 15;
/// How long the broker stays away, on top of stopping (a few seconds) and booting (~5 s):
/// longer than the ~12 s after which ingest used to give up publishing for good.
const OUTAGE: Duration = Duration::from_secs(12);

/// The test mapping without what costs one request per repository (included files, GitOps
/// specs): the crawl's length is then set by the number of projects and the latency alone.
fn light_mapping() -> serde_json::Value {
    let mut mapping = test_mapping();
    mapping["specPath"] = serde_json::json!([]);
    for resource in mapping["resources"].as_array_mut().expect("resources") {
        if resource["kind"] == "repository" {
            resource["selector"]
                .as_object_mut()
                .expect("selector")
                .remove("includedFiles");
            let properties = resource["port"]["entity"]["mappings"]["properties"]
                .as_object_mut()
                .expect("properties");
            properties.retain(|_, jq| !jq.to_string().contains("__includedFiles"));
        }
    }
    mapping
}

#[tokio::test]
async fn a_broker_restart_mid_resync_pauses_it_and_the_resync_and_the_next_complete() {
    let mut node = RabbitNode::start().await;
    // Azure DevOps answers in 300 ms: the crawl takes ~10 s, so the broker goes away in its
    // middle (checked below), with transform and publish busy behind it.
    let mut running = Start::new("restart-mid-resync", BusKind::Rabbit, Roles::ALL)
        .organization(PROJECTS, REPOSITORIES)
        .ado_latency(Duration::from_millis(300))
        .mapping(light_mapping())
        .broker(&node.url())
        .run()
        .await;
    let crawled = |running: &adoport_tests::Running| {
        let items = running
            .pipeline
            .ingest_stats
            .resyncs
            .snapshot()
            .items_per_kind;
        items.values().sum::<u64>()
    };
    within(60, "the crawl to publish its first items", async {
        while crawled(&running) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    // A graceful stop, as in a rolling upgrade.
    node.stop().await;
    let at_stop = crawled(&running);
    let total = (PROJECTS + PROJECTS * REPOSITORIES) as u64;
    assert!(
        at_stop < total,
        "the broker went away in the middle of the crawl ({at_stop} of {total} items crawled)"
    );
    tokio::time::sleep(OUTAGE).await;
    // Paused, not failed: the crawl is neither finished nor given up, and it crawled nothing
    // it could not publish.
    assert!(
        tokio::time::timeout(Duration::ZERO, running.pipeline.next_resync())
            .await
            .is_err(),
        "the resync ended while the broker was away"
    );
    assert_eq!(crawled(&running), at_stop);
    node.start_again().await;

    // The resync resumes where it was and completes: every entity in Port, reconciled.
    let done = within(180, "the resync crawl", running.pipeline.next_resync())
        .await
        .expect("pipeline running");
    let report = done.report.expect("the crawl completed");
    assert!(report.failed_kinds().is_empty(), "{report:?}");
    assert_eq!(report.items(), total);
    let events = report.kinds.values().map(|k| k.events).sum();
    within(
        120,
        "the pipeline to drain",
        running.pipeline.drained(events),
    )
    .await;
    let summary = running.resync_summary(120, done.resync_id).await;
    assert_eq!(summary.status, "completed", "{summary:?}");
    // Duplicates (sent again after the outage) make the drain counts approximate: wait for
    // Port itself.
    running.wait_for_entity_count(total as usize).await;

    // And a later resync still runs.
    let next = resync::request(&running.bus, ResyncTrigger::Manual)
        .await
        .expect("requested");
    let done = within(120, "the next resync crawl", running.pipeline.next_resync())
        .await
        .expect("pipeline running");
    assert_eq!(done.resync_id, next);
    done.report.expect("the next crawl completed");
    let summary = running.resync_summary(120, next).await;
    assert_eq!(summary.status, "completed", "{summary:?}");
    running.stop().await;
}
