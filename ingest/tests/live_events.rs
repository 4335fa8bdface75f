//! Live events of builds, pipelines, releases and Advanced Security alerts, end to end at
//! ingest level: an envelope built from the simulator's objects is posted to the webhook
//! receiver, and the raw events on the bus are checked for kind, action and enrichment;
//! deletes on 404, the alert `criteria` filter, kinds the mapping does not ask for, the
//! same items as a crawl of the same objects, and the organization each event came from.

mod support;

use std::collections::BTreeMap;

use adoport_shared::messages::RawAction;
use adoport_sim::ado::{AdoSim, AdoSimConfig};
use serde_json::{Value, json};
use support::{harness, harness_in, harness_of, only, only_as, single, text};

const RUN_STATE_CHANGED: &str = "ms.vss-pipelines.run-state-changed-event";

#[tokio::test]
async fn build_complete_publishes_the_build_and_its_test_runs_with_results() {
    let (mut h, project) = harness_in(&[("build", json!({})), ("test-run", json!({}))], 0).await;
    let events = h.deliver(&h.sim.build_complete_event(&project, 2)).await;
    assert_eq!(events.len(), 2, "{events:?}");
    let build = only_as(&events, "build", RawAction::Upsert);
    let item = &build.items[0];
    assert_eq!(item["id"], 2);
    assert_eq!(item["__projectId"], project.as_str());
    assert_eq!(item["__project"]["id"], project.as_str());
    assert!(item["__project"]["name"].is_string(), "{item}");
    assert_eq!(item["__organizationUrl"], h.sim.organization_url().as_str());
    let runs = only(&events, "test-run");
    assert_eq!(runs.items.len(), 1);
    assert_eq!(runs.items[0]["id"], 2);
    assert_eq!(runs.items[0]["build"]["id"], "2");
    assert_eq!(
        runs.items[0]["__testResults"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(
        h.requests("GET /{org}/{project}/_apis/test/runs/{runId}/results"),
        1
    );
    h.stop().await;
}

#[tokio::test]
async fn test_runs_go_without_results_when_the_selector_says_so() {
    let (mut h, project) = harness_in(&[("test-run", json!({"includeResults": false}))], 1).await;
    let events = h.deliver(&h.sim.build_complete_event(&project, 1)).await;
    let runs = only(&events, "test-run");
    assert_eq!(runs.items[0]["id"], 1);
    // Not read, and written empty as the Python integration does.
    assert_eq!(runs.items[0]["__testResults"], json!([]));
    assert_eq!(runs.items[0]["__codeCoverage"], json!({}));
    assert_eq!(events.len(), 1, "no build kind in the mapping: {events:?}");
    h.stop().await;
}

#[tokio::test]
async fn a_build_that_is_gone_is_deleted_with_its_project() {
    let (mut h, project) = harness_in(&[("build", json!({})), ("test-run", json!({}))], 0).await;
    let events = h.deliver(&h.sim.build_complete_event(&project, 999)).await;
    // No test runs for a gone build.
    let build = single(&events, "build", RawAction::Delete);
    assert_eq!(build.items[0]["id"], 999);
    assert_eq!(build.items[0]["__project"]["id"], project.as_str());
    h.stop().await;
}

#[tokio::test]
async fn a_run_state_change_publishes_the_run_with_project_and_pipeline() {
    let (mut h, project) = harness_in(&[("pipeline-run", json!({}))], 0).await;
    let envelope = h
        .sim
        .pipeline_event(RUN_STATE_CHANGED, &project, 2, 4, None);
    let run = h
        .deliver_item(&envelope, "pipeline-run", RawAction::Upsert)
        .await;
    assert_eq!(run["id"], 4);
    assert_eq!(run["state"], "completed");
    assert_eq!(run["__project"]["id"], project.as_str());
    assert_eq!(run["__pipeline"]["id"], 2);
    assert!(run["__pipeline"]["name"].is_string());

    // A run Azure DevOps no longer has: deleted with the identifier's fields.
    let gone = h
        .sim
        .pipeline_event(RUN_STATE_CHANGED, &project, 2, 1, None);
    let run = h
        .deliver_item(&gone, "pipeline-run", RawAction::Delete)
        .await;
    assert_eq!(run["id"], 1);
    assert_eq!(run["__project"], json!({"id": project}));
    assert_eq!(run["__pipeline"], json!({"id": 2}));
    h.stop().await;
}

#[tokio::test]
async fn stage_job_and_approval_events_publish_the_stage_record() {
    let (mut h, project) = harness_in(&[("pipeline-stage", json!({}))], 2).await;
    for event_type in [
        "ms.vss-pipelines.stage-state-changed-event",
        "ms.vss-pipelines.job-state-changed-event",
        "ms.vss-pipelinechecks-events.approval-pending",
        "ms.vss-pipelinechecks-events.approval-completed",
    ] {
        let envelope = h
            .sim
            .pipeline_event(event_type, &project, 2, 5, Some("Deploy"));
        let events = h.deliver(&envelope).await;
        let stage = only(&events, "pipeline-stage");
        assert_eq!(stage.action, RawAction::Upsert, "{event_type}");
        let record = &stage.items[0];
        assert_eq!(record["type"], "Stage", "{event_type}");
        assert_eq!(record["name"], "Deploy", "{event_type}");
        assert_eq!(record["id"], envelope["resource"]["stage"]["id"]);
        assert_eq!(record["__build"]["id"], 5);
        assert_eq!(record["__project"]["id"], project.as_str());
    }
    h.stop().await;
}

#[tokio::test]
async fn a_check_event_updates_a_pipeline_only_when_it_names_one() {
    let (mut h, project) = harness_in(&[("pipeline", json!({}))], 0).await;
    // As documented: a check configuration on an agent queue, no pipeline.
    h.assert_ignored(&h.sim.check_updated_event(&project, "queue", "1", 1))
        .await;
    let events = h
        .deliver(&h.sim.check_updated_event(&project, "pipeline", "2", 9))
        .await;
    let pipeline = only(&events, "pipeline");
    assert_eq!(pipeline.items[0]["id"], 2);
    assert_eq!(pipeline.items[0]["__projectId"], project.as_str());
    assert_eq!(
        h.requests("GET /{org}/{project}/_apis/pipelines/{pipelineId}"),
        1,
        "the check configuration id (9) is never read as a pipeline id"
    );
    h.stop().await;
}

#[tokio::test]
async fn release_events_publish_the_release_and_its_definition() {
    let (mut h, project) = harness_in(
        &[("release", json!({})), ("release-definition", json!({}))],
        0,
    )
    .await;
    let events = h
        .deliver(
            &h.sim
                .release_event("ms.vss-release.release-created-event", &project, 2),
        )
        .await;
    assert_eq!(events.len(), 2);
    let release = only(&events, "release");
    assert_eq!(release.items[0]["id"], 2);
    assert_eq!(release.items[0]["projectReference"]["id"], project.as_str());
    let definition = only(&events, "release-definition");
    assert_eq!(definition.items[0]["id"], 1);
    assert_eq!(definition.items[0]["__project"]["id"], project.as_str());

    let release = h
        .deliver_item(
            &h.sim
                .release_event("ms.vss-release.release-abandoned-event", &project, 99),
            "release",
            RawAction::Delete,
        )
        .await;
    assert_eq!(release["id"], 99);
    assert_eq!(release["projectReference"]["id"], project.as_str());
    h.stop().await;
}

#[tokio::test]
async fn deployment_events_publish_the_deployment_of_that_release_environment() {
    let (mut h, project) = harness_in(&[("release-deployment", json!({}))], 1).await;
    for event_type in [
        "ms.vss-release.deployment-started-event",
        "ms.vss-release.deployment-completed-event",
    ] {
        let deployment = h
            .deliver_item(
                &h.sim.deployment_event(event_type, &project, 3),
                "release-deployment",
                RawAction::Upsert,
            )
            .await;
        assert_eq!(deployment["id"], 3);
        assert_eq!(deployment["release"]["id"], 3);
    }
    let gone = h
        .deliver_item(
            &h.sim
                .deployment_event("ms.vss-release.deployment-completed-event", &project, 42),
            "release-deployment",
            RawAction::Delete,
        )
        .await;
    assert_eq!(gone["id"], 42);
    // A deployment its (existing) release does not list proves nothing: deployments go only
    // with their release. Nothing is deleted.
    let mut stray =
        h.sim
            .deployment_event("ms.vss-release.deployment-completed-event", &project, 3);
    stray["resource"]["deployment"]["id"] = json!(99);
    h.assert_ignored(&stray).await;
    h.stop().await;
}

#[tokio::test]
async fn alerts_honour_the_selector_criteria_and_go_when_they_stop_matching() {
    let mut h = harness(&[(
        "advanced-security-alert",
        json!({"criteria": {"states": ["active"]}}),
    )])
    .await;
    let repository = h.sim.repositories()[0].clone();
    let repository_id = text(&repository, "/id");
    let project = text(&repository, "/project/id");

    // Alert 1 is active: upserted with the crawler's enrichment.
    let alert = h
        .deliver_item(
            &h.sim
                .alert_event("ms.vss-alerts.alert-created-event", &repository_id, 1),
            "advanced-security-alert",
            RawAction::Upsert,
        )
        .await;
    assert_eq!(alert["alertId"], 1);
    assert_eq!(alert["state"], "active");
    assert_eq!(alert["__repositoryId"], repository_id.as_str());
    assert_eq!(alert["__projectId"], project.as_str());

    // Dismissed since: it no longer matches the selector, so it is deleted.
    h.sim.set_alert_state(&repository_id, 1, "dismissed");
    let changed = h
        .sim
        .alert_event("ms.vss-alerts.alert-state-changed-event", &repository_id, 1);
    let alert = h
        .deliver_item(&changed, "advanced-security-alert", RawAction::Delete)
        .await;
    assert_eq!(alert["alertId"], 1);
    assert_eq!(alert["__repositoryId"], repository_id.as_str());

    // An alert Azure DevOps no longer has is deleted too.
    let gone = h
        .sim
        .alert_event("ms.vss-alerts.alert-updated-event", &repository_id, 99);
    h.deliver_item(&gone, "advanced-security-alert", RawAction::Delete)
        .await;
    h.stop().await;
}

#[tokio::test]
async fn an_event_for_a_kind_whose_selector_does_not_read_is_acknowledged_and_changes_nothing() {
    let mut h = harness(&[
        ("build", json!({})),
        (
            "test-run",
            json!({"codeCoverage": {"flags": 1, "depth": 2}}),
        ),
    ])
    .await;
    let project = h.project_id(0);
    let before = h.sim.total_requests();
    let (status, body) = h.post(&h.sim.build_complete_event(&project, 2)).await;
    assert_eq!(
        (status, body["status"].as_str(), body["reason"].as_str()),
        (
            200,
            Some("skipped"),
            Some(
                "kind test-run: the selector of its resource #1 (in mapping order) is not valid: field `codeCoverage.depth`: unknown field `depth`, expected `flags`"
            )
        ),
        "{body}"
    );
    assert_eq!(h.sim.total_requests(), before, "nothing was read");
    assert!(
        h.deliver(&h.sim.build_complete_event(&project, 2))
            .await
            .is_empty(),
        "nothing was published, not even the build"
    );
    h.stop().await;
}

#[tokio::test]
async fn kinds_the_mapping_does_not_ask_for_are_neither_read_nor_published() {
    let (mut h, project) = harness_in(&[("work-item", json!({}))], 0).await;
    let before = h.sim.total_requests();
    for envelope in [
        h.sim.build_complete_event(&project, 2),
        h.sim
            .pipeline_event(RUN_STATE_CHANGED, &project, 1, 1, None),
        h.sim
            .release_event("ms.vss-release.release-created-event", &project, 1),
    ] {
        h.assert_ignored(&envelope).await;
    }
    assert_eq!(h.sim.total_requests(), before, "nothing was read");
    assert!(
        h.deliver(&h.sim.build_complete_event(&project, 2))
            .await
            .is_empty()
    );
    h.stop().await;
}

#[tokio::test]
async fn an_event_without_the_ids_it_needs_is_refused() {
    let h = harness(&[("pipeline-run", json!({}))]).await;
    let mut envelope = h
        .sim
        .pipeline_event(RUN_STATE_CHANGED, &h.project_id(0), 1, 1, None);
    envelope["resource"] = json!({"pipeline": {"id": 1}});
    let (status, body) = h.post(&envelope).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("resource.run.id")),
        "{body}"
    );
    h.stop().await;
}

/// The project id the example payloads carry.
const PAYLOAD_PROJECT: &str = "22222222-2222-2222-2222-222222222222";

/// An example payload of the Python integration's compatibility material (copied into
/// `tests/fixtures/webhooks`), its project id replaced by `project`.
fn reference_payload(name: &str, project: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/webhooks/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text.replace(PAYLOAD_PROJECT, project)).expect("payload is JSON")
}

#[tokio::test]
async fn reference_payloads_are_read_field_by_field() {
    // Their objects do not exist in the simulator (in an existing project): each becomes a
    // delete built from the payload's own ids, which shows the fields are read where the real
    // payloads carry them.
    let (mut h, project) = harness_in(
        &[
            ("build", json!({})),
            ("test-run", json!({})),
            ("pipeline-run", json!({})),
            ("release-deployment", json!({})),
            ("advanced-security-alert", json!({})),
        ],
        0,
    )
    .await;
    let project = project.as_str();
    let cases = [
        (
            "build.complete",
            "build",
            json!({"id": 987, "__projectId": project, "__project": {"id": project}}),
        ),
        (
            "ms.vss-pipelines.run-state-changed-event",
            "pipeline-run",
            json!({"id": 987, "__project": {"id": project}, "__pipeline": {"id": 12}}),
        ),
        (
            "ms.vss-release.deployment-completed-event",
            "release-deployment",
            json!({"id": 31, "release": {"id": 18}, "projectReference": {"id": project}}),
        ),
        (
            "ms.vss-alerts.alert-state-changed-event",
            "advanced-security-alert",
            json!({"alertId": 77, "__repositoryId": "11111111-1111-1111-1111-111111111111", "__projectId": project}),
        ),
    ];
    for (name, kind, identity) in cases {
        let events = h.deliver(&reference_payload(name, project)).await;
        assert_eq!(events.len(), 1, "{name}: {events:?}");
        let event = only_as(&events, kind, RawAction::Delete);
        let mut item = event.items[0].clone();
        if let Value::Object(map) = &mut item {
            map.retain(|k, _| !k.starts_with("__organization"));
        }
        assert_eq!(item, identity, "{name}");
    }
    h.stop().await;
}

/// Finds the crawled item of `kind` whose `key` fields equal the live item's.
fn crawled_twin<'a>(
    crawled: &'a BTreeMap<String, Vec<Value>>,
    kind: &str,
    live: &Value,
    keys: &[&str],
) -> &'a Value {
    crawled[kind]
        .iter()
        .find(|c| keys.iter().all(|k| c.pointer(k) == live.pointer(k)))
        .unwrap_or_else(|| panic!("no crawled {kind} like {live}"))
}

#[tokio::test]
async fn a_live_item_is_the_crawled_item_of_the_same_object() {
    let kinds = [
        ("build", json!({"enrichWithFirstCommit": true})),
        ("test-run", json!({"codeCoverage": {"flags": 2}})),
        ("pipeline-run", json!({})),
        ("pipeline-stage", json!({})),
        ("advanced-security-alert", json!({})),
    ];
    let mut h = harness(&kinds).await;
    let crawled = h.crawl(&kinds).await;
    let project = h.project_id(1);

    let events = h.deliver(&h.sim.build_complete_event(&project, 2)).await;
    let build = &only(&events, "build").items[0];
    assert!(build["__firstCommit"].is_object(), "{build}");
    assert_eq!(
        build,
        crawled_twin(&crawled, "build", build, &["/id", "/__projectId"])
    );
    let run = &only(&events, "test-run").items[0];
    assert!(
        run["__testResults"].is_array() && run["__codeCoverage"].is_object(),
        "{run}"
    );
    assert_eq!(
        run,
        crawled_twin(&crawled, "test-run", run, &["/id", "/project/id"])
    );

    let envelope = h
        .sim
        .pipeline_event(RUN_STATE_CHANGED, &project, 2, 4, None);
    let events = h.deliver(&envelope).await;
    let pipeline_run = &only(&events, "pipeline-run").items[0];
    assert_eq!(
        pipeline_run,
        crawled_twin(
            &crawled,
            "pipeline-run",
            pipeline_run,
            &["/id", "/__project/id"]
        )
    );

    let envelope = h.sim.pipeline_event(
        "ms.vss-pipelines.stage-state-changed-event",
        &project,
        2,
        5,
        Some("Deploy"),
    );
    let events = h.deliver(&envelope).await;
    let stage = &only(&events, "pipeline-stage").items[0];
    assert_eq!(
        stage,
        crawled_twin(&crawled, "pipeline-stage", stage, &["/id", "/__project/id"])
    );

    let repository_id = text(&h.sim.repositories()[0], "/id");
    let events = h
        .deliver(
            &h.sim
                .alert_event("ms.vss-alerts.alert-created-event", &repository_id, 2),
        )
        .await;
    let alert = &only(&events, "advanced-security-alert").items[0];
    assert_eq!(
        alert,
        crawled_twin(
            &crawled,
            "advanced-security-alert",
            alert,
            &["/alertId", "/__repositoryId"]
        )
    );
    h.stop().await;
}

#[tokio::test]
async fn an_event_is_read_from_the_organization_it_came_from() {
    let configs = ["org-a", "org-b"]
        .map(|organization| AdoSimConfig {
            organization: organization.to_string(),
            ..AdoSimConfig::default()
        })
        .to_vec();
    let sims = AdoSim::start_organizations(configs)
        .await
        .expect("simulators start");
    let mut harnesses = harness_of(sims, &[("pipeline-run", json!({}))]).await;
    let b = harnesses.pop().expect("org-b");
    let mut a = harnesses.pop().expect("org-a");
    let project = b.project_id(0);
    let mut envelope = b
        .sim
        .pipeline_event(RUN_STATE_CHANGED, &project, 1, 2, None);
    envelope["resourceContainers"]["account"]["baseUrl"] =
        json!(format!("{}/", b.sim.organization_url()));
    let (a_before, b_before) = (a.sim.total_requests(), b.sim.total_requests());
    let events = a.deliver(&envelope).await;
    let run = &only(&events, "pipeline-run").items[0];
    assert_eq!(run["__project"]["id"], project.as_str());
    assert_eq!(run["__organizationUrl"], b.sim.organization_url().as_str());
    assert_eq!(a.sim.total_requests(), a_before, "org-a was not read");
    assert!(b.sim.total_requests() > b_before);
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn an_alert_goes_to_each_resource_by_its_own_criteria() {
    let mut h = harness(&[
        (
            "advanced-security-alert",
            json!({"criteria": {"states": ["active"]}}),
        ),
        (
            "advanced-security-alert",
            json!({"criteria": {"states": ["dismissed"]}}),
        ),
    ])
    .await;
    let repository = h.sim.repositories()[0].clone();
    let repository_id = text(&repository, "/id");
    let created = h
        .sim
        .alert_event("ms.vss-alerts.alert-created-event", &repository_id, 1);
    let events = h.deliver(&created).await;
    let actions: Vec<(Option<Vec<u32>>, RawAction)> = events
        .iter()
        .map(|e| (e.resources.clone(), e.action))
        .collect();
    // Active: upserted for the resource that asks for active alerts, deleted for the other.
    assert_eq!(
        actions,
        [
            (Some(vec![0]), RawAction::Upsert),
            (Some(vec![1]), RawAction::Delete)
        ]
    );
    h.sim.set_alert_state(&repository_id, 1, "dismissed");
    let changed = h
        .sim
        .alert_event("ms.vss-alerts.alert-state-changed-event", &repository_id, 1);
    let events = h.deliver(&changed).await;
    let actions: Vec<(Option<Vec<u32>>, RawAction)> = events
        .iter()
        .map(|e| (e.resources.clone(), e.action))
        .collect();
    assert_eq!(
        actions,
        [
            (Some(vec![0]), RawAction::Delete),
            (Some(vec![1]), RawAction::Upsert)
        ]
    );
    h.stop().await;
}
