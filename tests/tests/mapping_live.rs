//! The mapping is live: a new version saved in Port takes full effect at the next resync, with
//! no restart — the kinds crawled, the write options (`enableMergeEntity`,
//! `deleteDependentEntities`), the reconciliation policy (`entityDeletionThreshold`) — a broken
//! version is refused with all its errors while the running one keeps working, and several
//! transform processes map a resync with the one version it was crawled with.
//!
//! A removed kind's entities are deleted by the next resync's reconciliation, as the Python
//! integration does (Ocean's `sync_raw_all` deletes every entity of the integration the resync
//! did not produce, whatever its kind, within `entityDeletionThreshold`).

use adoport::pipeline::{Pipeline, Roles};
use adoport::sim::default_mapping;
use adoport_publish::ResyncSummary;
use adoport_shared::bus::Bus;
use adoport_tests::{
    BusKind, Running, Start, roles, roles_process_with_mapping, stop_process, within,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const PROJECT: &str = "azureDevopsProject";
const REPOSITORY: &str = "azureDevopsRepository";

/// The default mapping's resources of these kinds, with root flags set.
fn mapping(kinds: &[&str], flags: Value) -> Value {
    let mut mapping = default_mapping(Some(kinds)).expect("default mapping");
    if let (Some(root), Some(flags)) = (mapping.as_object_mut(), flags.as_object()) {
        root.extend(flags.clone());
    }
    mapping
}

/// Starts the pipeline with `initial` in Port, the mapping followed (polled rarely: a resync
/// reads it afresh when it starts).
async fn start(test: &str, kind: BusKind, roles: Roles, initial: Value) -> Running {
    let mut running = Start::new(test, kind, roles)
        .extra(&[
            ("ADOPORT__TRANSFORM__MAPPING_POLL_SECS", "3600"),
            // One item per raw event: several events per kind, spread over transform replicas.
            ("ADOPORT__INGEST__ITEMS_PER_EVENT", "1"),
        ])
        .mapping(initial)
        .run()
        .await;
    running.pipeline.poll_mapping(&running.settings);
    running
}

/// [`start`]: every role in this process, on the in-process bus.
async fn start_in_process(test: &str, initial: Value) -> Running {
    start(test, BusKind::Memory, Roles::ALL, initial).await
}

/// Asks for a resync and waits for its summary.
async fn resync_summary(running: &Running) -> ResyncSummary {
    let id = running.request_resync().await;
    running.resync_summary(60, id).await
}

/// A changed mapping in Port, then a resync; returns its summary.
async fn resync_with(running: &Running, mapping: Value) -> ResyncSummary {
    running.world.port.set_integration_config(mapping);
    resync_summary(running).await
}

fn count(running: &Running, blueprint: &str) -> usize {
    running.world.port.entities(blueprint).len()
}

#[tokio::test]
async fn kinds_added_and_removed_in_port_take_effect_at_the_next_resync() {
    let running = start_in_process("live-kinds", mapping(&["project"], json!({}))).await;
    let first = resync_summary(&running).await;
    assert_eq!(first.status, "completed", "{first:?}");
    assert_eq!(
        (count(&running, PROJECT), count(&running, REPOSITORY)),
        (2, 0)
    );

    // A kind added in Port is crawled, and its entities land, without a restart.
    let added = resync_with(&running, mapping(&["project", "repository"], json!({}))).await;
    assert_eq!(added.status, "completed", "{added:?}");
    assert_eq!(added.kind("repository").items_crawled, 6, "{added:?}");
    assert_eq!(
        (count(&running, PROJECT), count(&running, REPOSITORY)),
        (2, 6)
    );

    // Removed, with a threshold the deletion exceeds (6 of 8): refused, nothing deleted.
    let strict = resync_with(
        &running,
        mapping(&["project"], json!({"entityDeletionThreshold": 0.5})),
    )
    .await;
    assert_eq!(strict.status, "deletion_refused", "{strict:?}");
    assert!(
        !strict.resources.iter().any(|r| r.kind == "repository"),
        "not crawled any more"
    );
    assert_eq!(count(&running, REPOSITORY), 6);

    // Removed with the default threshold: its entities are deleted by reconciliation.
    let removed = resync_with(&running, mapping(&["project"], json!({}))).await;
    assert_eq!(
        (removed.status, removed.deleted),
        ("completed", 6),
        "{removed:?}"
    );
    assert_eq!(
        (count(&running, PROJECT), count(&running, REPOSITORY)),
        (2, 0)
    );
    running.stop().await;
}

#[tokio::test]
async fn write_options_take_effect_at_the_next_resync() {
    let running =
        start_in_process("live-write", mapping(&["project", "repository"], json!({}))).await;
    // Repositories depend on their project (a relation), as in Port's default blueprints.
    running
        .world
        .port
        .define_blueprint(json!({"identifier": PROJECT}));
    running.world.port.define_blueprint(json!({
        "identifier": REPOSITORY,
        "relations": {"project": {"target": PROJECT}},
    }));
    assert_eq!(resync_summary(&running).await.status, "completed");
    let project = running.world.port.entities(PROJECT)[0]["identifier"]
        .as_str()
        .expect("identifier")
        .to_string();
    let revision = |running: &Running| {
        running
            .world
            .port
            .entity(PROJECT, &project)
            .expect("project")["properties"]
            .get("revision")
            .cloned()
    };
    assert!(revision(&running).is_some());

    // The mapping stops writing `revision`: merged writes leave it in Port…
    let mut without_revision = mapping(&["project", "repository"], json!({}));
    let resources = without_revision["resources"]
        .as_array_mut()
        .expect("resources");
    resources[0]["port"]["entity"]["mappings"]["properties"]
        .as_object_mut()
        .expect("properties")
        .remove("revision");
    let merged = resync_with(&running, without_revision.clone()).await;
    assert_eq!(merged.status, "completed", "{merged:?}");
    assert!(revision(&running).is_some(), "merge keeps what is not sent");

    // …and with `enableMergeEntity: false` the next resync replaces the entity.
    without_revision["enableMergeEntity"] = json!(false);
    let replaced = resync_with(&running, without_revision.clone()).await;
    assert_eq!(replaced.status, "completed", "{replaced:?}");
    assert_eq!(revision(&running), None, "a replace drops what is not sent");

    // The project kind leaves the mapping (and projects are no longer kept as relation
    // targets); with `deleteDependentEntities: false` Port refuses to delete projects that
    // repositories depend on, so the resync fails and they stay…
    let mut repositories_only = mapping(
        &["repository"],
        json!({"deleteDependentEntities": false, "createMissingRelatedEntities": false}),
    );
    let refused = resync_with(&running, repositories_only.clone()).await;
    assert_eq!(refused.status, "failed", "{refused:?}");
    assert_eq!(count(&running, PROJECT), 2);

    // …and with `deleteDependentEntities: true` the next one deletes them.
    repositories_only["deleteDependentEntities"] = json!(true);
    let deleted = resync_with(&running, repositories_only).await;
    assert_eq!(deleted.status, "completed", "{deleted:?}");
    assert!(deleted.deleted >= 2, "{deleted:?}");
    assert_eq!(count(&running, PROJECT), 0);
    running.stop().await;
}

#[tokio::test]
async fn a_broken_version_is_refused_with_all_its_errors_and_the_running_one_keeps_working() {
    let running = start_in_process("live-broken", mapping(&["project"], json!({}))).await;
    assert_eq!(resync_summary(&running).await.status, "completed");
    let versions = running.pipeline.mapping.clone().expect("mapping");
    let mut status = versions.status();

    let mut broken = mapping(&["project", "repository"], json!({}));
    broken["resources"][0]["port"]["entity"]["mappings"]["title"] = json!(".name | nosuch");
    broken["resources"][1]["port"]["entity"]["mappings"]["title"] = json!(".name | nosuch2");
    let summary = resync_with(&running, broken).await;
    assert_eq!(summary.status, "completed", "{summary:?}");
    assert!(
        !summary.resources.iter().any(|r| r.kind == "repository"),
        "the refused version's kind is not crawled: {summary:?}"
    );
    let refusal = within(10, "the refusal", status.wait_for(|s| s.refused == 1))
        .await
        .expect("status")
        .last_refusal
        .clone()
        .expect("a reason");
    assert!(
        refusal.contains("nosuch") && refusal.contains("nosuch2"),
        "every error is named: {refusal}"
    );
    assert_eq!(versions.current().number, 1, "the running version stays");
    assert_eq!(count(&running, PROJECT), 2);
    running.stop().await;
}

/// A transform-only pipeline on the same broker and prefix, following the same mapping source.
async fn transform_replica(running: &Running, mapping: &Value) -> (Pipeline, Bus) {
    let shutdown = CancellationToken::new();
    let (mut pipeline, bus) = roles_process_with_mapping(
        &running.settings,
        roles::TRANSFORM,
        mapping.clone(),
        None,
        &shutdown,
    )
    .await;
    pipeline.poll_mapping(&running.settings);
    (pipeline, bus)
}

#[tokio::test]
async fn two_transform_processes_map_a_resync_with_the_version_it_was_crawled_with() {
    let initial = mapping(&["project", "repository"], json!({}));
    let running = start(
        "live-replicas",
        BusKind::Rabbit,
        roles::INGEST_PUBLISH,
        initial.clone(),
    )
    .await;
    let replicas = [
        transform_replica(&running, &initial).await,
        transform_replica(&running, &initial).await,
    ];
    assert_eq!(resync_summary(&running).await.status, "completed");

    let mut upper = initial.clone();
    upper["resources"][0]["port"]["entity"]["mappings"]["title"] = json!(".name | ascii_upcase");
    let summary = resync_with(&running, upper).await;
    assert_eq!(summary.status, "completed", "{summary:?}");
    let titles: Vec<Value> = running
        .world
        .port
        .entities(PROJECT)
        .iter()
        .map(|p| p["title"].clone())
        .collect();
    assert!(
        titles
            .iter()
            .all(|t| t.as_str().is_some_and(|t| t == t.to_uppercase())),
        "every project was mapped with the new version: {titles:?}"
    );
    let crawled_with = running
        .pipeline
        .mapping
        .clone()
        .expect("mapping")
        .current()
        .id
        .clone();
    for (replica, _) in &replicas {
        assert!(
            replica.transform_stats.events_settled() > 0,
            "both replicas mapped events"
        );
        let version = replica.mapping.clone().expect("mapping").current();
        assert_eq!(version.id, crawled_with, "the replica converged");
    }
    for replica in replicas {
        stop_process(replica).await;
    }
    running.stop().await;
}
