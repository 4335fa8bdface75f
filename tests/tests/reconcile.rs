//! Reconciliation end to end (real RabbitMQ, simulated Azure DevOps and Port): after a resync,
//! the entities this integration owns that the resync no longer produced are deleted — and
//! nothing is deleted when a kind failed, when the deletion would be massive, or when the
//! entity belongs to another datasource.

use std::time::Duration;

use adoport::pipeline::Roles;
use adoport_sim::ScriptedAnswer;
use adoport_sim::port::PortSim;
use adoport_tests::{
    BusKind, OURS, Running, WEBHOOKS_ONLY, publish_process, resyncs_reported, roles, seed_entities,
    start, start_webhooks_only, stop_process, within,
};
use serde_json::{Value, json};

const REPOSITORY: &str = "azureDevopsRepository";
/// Waits until Port has been told `count` resyncs ended with `status`.
async fn reported(running: &Running, status: &str, count: usize) {
    let port = &running.world.port;
    assert!(
        port.wait_for(
            |p| resyncs_reported(p, status) >= count,
            Duration::from_secs(60)
        )
        .await,
        "resync state {status} reported {count} time(s); states: {:?}",
        port.resync_states()
    );
}

/// Runs one more resync and waits for it to settle.
async fn resync_again(running: &mut Running) {
    running.request_resync().await;
    running.resync_settled().await;
}

fn repository_ids(running: &Running) -> Vec<String> {
    running
        .world
        .ado
        .repositories()
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect()
}

#[tokio::test]
async fn a_removed_repository_is_deleted_and_foreign_entities_stay() {
    let mut running = start("reconcile-remove", BusKind::Rabbit, Roles::ALL, 2, 3, &[]).await;
    // Entities of the same blueprint another installation and a human own.
    for (owner, id) in [
        (
            "port-ocean/azure-devops/0.12.2/other-install/exporter",
            "foreign-1",
        ),
        ("Mozilla/5.0", "manual-1"),
    ] {
        seed_entities(&running.world.port, owner, REPOSITORY, &[id.to_string()]).await;
    }
    running.resync_settled().await;
    reported(&running, "completed", 1).await;
    assert!(resyncs_reported(&running.world.port, "running") >= 1);
    let state = running
        .world
        .port
        .resync_states()
        .last()
        .cloned()
        .expect("state");
    for key in [
        "lastResyncStart",
        "lastResyncEnd",
        "nextResync",
        "intervalInMinuets",
    ] {
        assert!(state.get(key).is_some(), "{key} in {state}");
    }

    let removed = repository_ids(&running)[0].clone();
    assert!(running.world.ado.remove_repository(&removed));
    assert!(running.world.port.entity(REPOSITORY, &removed).is_some());
    resync_again(&mut running).await;
    reported(&running, "completed", 2).await;

    let port = &running.world.port;
    assert!(
        port.entity(REPOSITORY, &removed).is_none(),
        "removed repository deleted"
    );
    for id in repository_ids(&running) {
        assert!(port.entity(REPOSITORY, &id).is_some(), "{id} kept");
    }
    assert_eq!(port.entities("azureDevopsProject").len(), 2);
    assert!(
        port.entity(REPOSITORY, "foreign-1").is_some(),
        "other install's entity kept"
    );
    assert!(
        port.entity(REPOSITORY, "manual-1").is_some(),
        "manual entity kept"
    );
    running.stop().await;
}

#[tokio::test]
async fn nothing_is_deleted_when_a_kind_failed() {
    let mut running = start(
        "reconcile-kind-failed",
        BusKind::Rabbit,
        Roles::ALL,
        2,
        3,
        &[],
    )
    .await;
    running.resync_settled().await;
    reported(&running, "completed", 1).await;

    let removed = repository_ids(&running)[0].clone();
    assert!(running.world.ado.remove_repository(&removed));
    // Listing repositories fails for good (403 is not retried) in the next crawl.
    running.world.ado.fail_next(
        "GET /{org}/{project}/_apis/git/repositories",
        vec![ScriptedAnswer::status(403); 20],
    );
    running.request_resync().await;
    let done = within(60, "the failing crawl", running.pipeline.next_resync())
        .await
        .expect("pipeline running");
    let report = done.report.expect("crawl ran");
    // GitOps reads the repositories too, so it fails with them.
    assert_eq!(
        report.failed_kinds(),
        vec!["gitops", "repository"],
        "{report:?}"
    );
    reported(&running, "failed", 1).await;
    assert!(
        running.world.port.entity(REPOSITORY, &removed).is_some(),
        "a failed kind deletes nothing"
    );
    assert_eq!(resyncs_reported(&running.world.port, "completed"), 1);
    running.stop().await;
}

#[tokio::test]
async fn a_mass_deletion_above_the_threshold_is_refused() {
    // No start-up resync: the stale entities must all exist before the resync starts (an
    // entity written after the start is not stale, and a half-seeded Port is not a mass deletion).
    let mut running = start_webhooks_only("reconcile-mass", 1, 2).await;
    // 40 stale entities we own, against 3 the resync produces: 93 % > entityDeletionThreshold 0.9.
    let ghosts: Vec<String> = (0..40).map(|i| format!("ghost-{i}")).collect();
    seed_entities(&running.world.port, OURS, REPOSITORY, &ghosts).await;
    resync_again(&mut running).await;
    reported(&running, "completed", 1).await;
    let port = &running.world.port;
    for id in &ghosts {
        assert!(port.entity(REPOSITORY, id).is_some(), "{id} kept");
    }
    // A few stale ones under the threshold are deleted in the next resync.
    let few: Vec<String> = ghosts.iter().skip(3).cloned().collect();
    for id in &few {
        // Make them someone else's: only ghost-0..2 stay ours and stale.
        seed_entities(port, "Mozilla/5.0", REPOSITORY, std::slice::from_ref(id)).await;
    }
    resync_again(&mut running).await;
    reported(&running, "completed", 2).await;
    let port = &running.world.port;
    for id in ghosts.iter().take(3) {
        assert!(port.entity(REPOSITORY, id).is_none(), "{id} deleted");
    }
    for id in &few {
        assert!(port.entity(REPOSITORY, id).is_some(), "{id} kept");
    }
    running.stop().await;
}

#[tokio::test]
async fn a_resync_summary_says_per_resource_what_was_crawled_produced_and_written() {
    let mut running = start("reconcile-summary", BusKind::Rabbit, Roles::ALL, 2, 3, &[]).await;
    let mut summaries = running
        .pipeline
        .resync_summaries
        .clone()
        .expect("publish runs the coordinator");
    running.resync_settled().await;
    let summary = within(60, "the resync summary", async {
        loop {
            if let Some(summary) = summaries.borrow_and_update().clone() {
                return summary;
            }
            summaries.changed().await.expect("coordinator running");
        }
    })
    .await;
    assert_eq!(summary.status, "completed");
    let project = &summary.kind("project");
    let repository = &summary.kind("repository");
    assert_eq!(
        (
            project.items_crawled,
            project.entities_produced,
            project.upserted
        ),
        (2, 2, 2),
        "{summary:?}"
    );
    assert_eq!(
        (
            repository.items_crawled,
            repository.entities_produced,
            repository.upserted
        ),
        (6, 6, 6),
        "{summary:?}"
    );
    assert_eq!(
        repository.failed_items + repository.dead_lettered + repository.skipped,
        0
    );
    running.stop().await;
}

/// The coordinator is not held by a resync's summary, which waits (up to a minute) for this
/// process's publish worker to settle what the resync produced: with the change partitions
/// consumed by another publish replica, that worker never sees it all. It used to hold the
/// coordinator for that minute after every resync, so the next resync was reconciled a minute
/// late — or superseded before its progress was read (found by the chaos soak).
#[tokio::test]
async fn a_resync_right_after_another_is_reconciled_at_once_when_another_replica_writes() {
    let running = start(
        "reconcile-split",
        BusKind::Rabbit,
        roles::INGEST_TRANSFORM,
        2,
        3,
        &[],
    )
    .await;
    let settings_with = |partitions: &str| {
        running.process_settings(&[("ADOPORT__PUBLISH__PARTITIONS", partitions)])
    };
    // The first publish process takes the progress queue (the coordinator) and one partition;
    // the second writes the other seven.
    let coordinator = publish_process(&settings_with("0")).await;
    let writer = publish_process(&settings_with("1,2,3,4,5,6,7")).await;
    // The resync at start-up.
    reported(&running, "completed", 1).await;
    running.wait_for_entity_count(2 + 6).await;

    running.request_resync().await;
    let port = &running.world.port;
    assert!(
        port.wait_for(
            |p| resyncs_reported(p, "completed") >= 2,
            Duration::from_secs(25)
        )
        .await,
        "the second resync was not reconciled within 25 s; states: {:?}",
        port.resync_states()
    );
    assert_eq!(
        resyncs_reported(port, "aborted"),
        0,
        "{:?}",
        port.resync_states()
    );
    stop_process(coordinator).await;
    stop_process(writer).await;
    running.stop().await;
}

/// The count of one phase's `object_count_type` in an Ocean sync metrics event.
fn object_count(event: &Value, phase: &str, result: &str) -> f64 {
    event["metrics"]["phase"][phase]["object_count_type"][result]["object_count"]
        .as_f64()
        .unwrap_or(-1.0)
}

#[tokio::test]
async fn a_resync_sends_the_python_integrations_sync_metrics_and_heartbeats() {
    let heartbeat_every_second = ("OCEAN__STATUS_HEARTBEAT_INTERVAL_SECONDS", "1");
    let mut running = start(
        "reconcile-metrics",
        BusKind::Rabbit,
        Roles::ALL,
        2,
        3,
        &[WEBHOOKS_ONLY, heartbeat_every_second],
    )
    .await;
    // Port's record says where its metrics go: from now on they are sent there.
    running.world.port.enable_sync_metrics();
    // Port holds the writes back for a few seconds, so the resync runs long enough for the
    // heartbeats of a running resync.
    running.world.port.fail_next(
        "POST /v1/blueprints/{bp}/entities/bulk",
        vec![ScriptedAnswer::rate_limited(2); 2],
    );
    resync_again(&mut running).await;
    reported(&running, "completed", 1).await;
    let port = &running.world.port;
    let done = |p: &PortSim| {
        p.sync_metrics()
            .last()
            .is_some_and(|events| events.iter().all(|e| e["syncState"] == "completed"))
    };
    assert!(
        port.wait_for(done, Duration::from_secs(60)).await,
        "final sync metrics: {:?}",
        port.sync_metrics()
    );
    let batches = port.sync_metrics();
    // At the start every kind of the mapping is reported syncing, with zero counts.
    let first = &batches[0];
    assert!(
        first.iter().all(|e| e["syncState"] == "syncing"),
        "{first:?}"
    );
    let last = batches.last().expect("final batch");
    let kind = |name: &str| {
        last.iter()
            .find(|e| e["kind"] == name)
            .unwrap_or_else(|| panic!("{name} in {last:?}"))
            .clone()
    };
    let (project, repository) = (kind("project"), kind("repository"));
    for (event, count) in [(&project, 2.0), (&repository, 6.0)] {
        assert_eq!(
            object_count(event, "extract", "raw_extracted"),
            count,
            "{event}"
        );
        assert_eq!(
            object_count(event, "transform", "transformed"),
            count,
            "{event}"
        );
        assert_eq!(object_count(event, "load", "loaded"), count, "{event}");
        assert_eq!(object_count(event, "load", "failed"), 0.0, "{event}");
        assert_eq!(event["metrics"]["phase"]["resync"]["success"], 1.0);
        assert_eq!(event["integrationIdentifier"], "azure-devops");
        assert_eq!(event["integrationVersion"], "0.12.2");
        assert!(
            event["kindIdentifier"]
                .as_str()
                .is_some_and(|k| k.starts_with(event["kind"].as_str().unwrap_or("?"))),
            "{event}"
        );
    }
    // One resync, one event id: the heartbeats name it, at its start, every second while it
    // runs, and at its end.
    let event_id = project["eventId"].as_str().expect("eventId").to_string();
    assert_eq!(first[0]["eventId"], event_id.as_str());
    let heartbeats = port.metrics_heartbeats();
    assert!(
        heartbeats.len() >= 4 && heartbeats.iter().all(|h| *h == event_id),
        "{heartbeats:?} for {event_id}"
    );
    // Each kind's event is also put on its own (Ocean's per-kind PUT), syncing at the start
    // and completed at the end, under its event id and kind identifier.
    let kinds = last.len();
    let put_done = |p: &PortSim| {
        p.kind_sync_metrics()
            .iter()
            .filter(|(_, _, e)| e["syncState"] == "completed")
            .count()
            >= kinds
    };
    assert!(
        port.wait_for(put_done, Duration::from_secs(30)).await,
        "{:?}",
        port.kind_sync_metrics()
    );
    let puts = port.kind_sync_metrics();
    for event in [&project, &repository] {
        let kind_identifier = event["kindIdentifier"].as_str().expect("kindIdentifier");
        let states: Vec<&Value> = puts
            .iter()
            .filter(|(e, k, _)| *e == event_id && k == kind_identifier)
            .map(|(_, _, m)| &m["syncState"])
            .collect();
        assert_eq!(states.first().copied(), Some(&json!("syncing")), "{puts:?}");
        assert_eq!(
            states.last().copied(),
            Some(&json!("completed")),
            "{puts:?}"
        );
        let (_, _, final_put) = puts
            .iter()
            .rev()
            .find(|(_, k, _)| k == kind_identifier)
            .expect("final put");
        assert_eq!(final_put, event, "the kind's PUT is its event");
    }
    running.stop().await;
}

#[tokio::test]
async fn the_sync_metrics_follow_the_record_when_port_moves_the_ingest_between_resyncs() {
    let mut running = start(
        "reconcile-metrics-moved",
        BusKind::Rabbit,
        Roles::ALL,
        1,
        2,
        &[WEBHOOKS_ONLY],
    )
    .await;
    running.world.port.enable_sync_metrics();
    resync_again(&mut running).await;
    reported(&running, "completed", 1).await;
    let completed_at = |ingest: &'static str| {
        move |p: &PortSim| {
            p.sync_metrics()
                .iter()
                .zip(p.sync_metrics_ingests())
                .any(|(events, at)| {
                    at == ingest && events.iter().all(|e| e["syncState"] == "completed")
                })
        }
    };
    assert!(
        running
            .world
            .port
            .wait_for(completed_at("azure-devops"), Duration::from_secs(30))
            .await
    );
    let before = running.world.port.sync_metrics_ingests().len();

    // Between the resyncs Port moves the integration's metrics ingest.
    running.world.port.move_sync_metrics("moved-ingest");
    resync_again(&mut running).await;
    reported(&running, "completed", 2).await;
    let port = &running.world.port;
    assert!(
        port.wait_for(completed_at("moved-ingest"), Duration::from_secs(30))
            .await,
        "{:?}",
        port.sync_metrics_ingests()
    );
    let after: Vec<String> = port.sync_metrics_ingests().split_off(before);
    assert!(
        !after.is_empty() && after.iter().all(|at| at == "moved-ingest"),
        "every report of the second resync goes to the new URL: {after:?}"
    );
    running.stop().await;
}
