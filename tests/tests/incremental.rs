//! Incremental sync on RabbitMQ against the simulators: an incremental run reads only what
//! changed since each kind's cursor (the request parameters Azure DevOps got are checked),
//! upserts it and deletes nothing; the cursors are kept in Port, advanced to the run's start
//! on success and left as they were on failure; kinds the Python integration does not sync
//! incrementally are not read.

use adoport::pipeline::Roles;
use adoport::sim::default_mapping;
use adoport_ingest::cursors::iso;
use adoport_ingest::resync::{ResyncDone, request_incremental};
use adoport_shared::messages::ResyncTrigger;
use adoport_sim::ScriptedAnswer;
use adoport_tests::{BusKind, Running, Start, WEBHOOKS_ONLY, within};

const WIQL: &str = "POST /{org}/{project}/_apis/wit/wiql";
const RELEASES: &str = "GET /{org}/{project}/_apis/release/releases";
const REPOSITORIES: &str = "GET /{org}/{project}/_apis/git/repositories";
const BUILDS: &str = "GET /{org}/{project}/_apis/build/builds";
const DEPLOYMENTS: &str = "GET /{org}/{project}/_apis/release/deployments";
const TEST_RUNS: &str = "GET /{org}/{project}/_apis/test/runs";
const ALERTS: &str = "GET /{org}/{project}/_apis/alert/repositories/{repository}/alerts";
const PIPELINE_RUNS_ODATA: &str = "GET /{org}/{project}/_odata/v4.0-preview/PipelineRuns";

/// Every kind the Python integration syncs incrementally, in its mapping order.
const INCREMENTAL: [&str; 7] = [
    "work-item",
    "release",
    "build",
    "release-deployment",
    "pipeline-run",
    "test-run",
    "advanced-security-alert",
];

/// Every role on RabbitMQ, no start-up resync, incremental sync on, a mapping of
/// project, repository, work-item and release (in that order).
async fn start(test: &str) -> Running {
    let mapping = default_mapping(Some(&["project", "repository", "work-item", "release"]))
        .expect("default mapping");
    start_with(test, mapping).await
}

/// [`start`] with `mapping`.
async fn start_with(test: &str, mapping: serde_json::Value) -> Running {
    Start::new(test, BusKind::Rabbit, Roles::ALL)
        .organization(1, 2)
        .mapping(mapping)
        .extra(&[
            WEBHOOKS_ONLY,
            ("OCEAN__INTEGRATION__INCREMENTAL_SYNC_ENABLED", "true"),
            ("OCEAN__INTEGRATION__INCREMENTAL_SYNC_INTERVAL", "30m"),
        ])
        .run()
        .await
}

/// The index of `kind`'s resource in the running mapping.
fn index_of(kind: &str) -> u64 {
    let mapping = default_mapping(Some(&["project", "repository", "work-item", "release"]))
        .expect("default mapping");
    mapping["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .position(|r| r["kind"] == kind)
        .expect("kind mapped") as u64
}

/// Requests an incremental run and waits until what it published is settled.
async fn incremental_run(running: &mut Running) -> ResyncDone {
    // The pipeline counts settled raw events from its start: this run's come on top.
    let settled_before = running.pipeline.raw_events_settled();
    request_incremental(&running.bus, ResyncTrigger::Manual)
        .await
        .expect("request published");
    let done = within(60, "the incremental run", running.pipeline.next_resync())
        .await
        .expect("pipeline running");
    assert!(done.incremental, "the request ran as an incremental sync");
    let report = done.report.as_ref().expect("incremental run crawled");
    let events: u64 = report.kinds.values().map(|k| k.events).sum();
    within(
        60,
        "the pipeline to drain",
        running.pipeline.drained(settled_before + events),
    )
    .await;
    done
}

/// The stored cursor of `kind`, as Port holds it.
fn cursor(running: &Running, kind: &str) -> Option<String> {
    let identifier = running.settings.integration_identifier();
    running.world.port.cursor(&identifier, kind, index_of(kind))
}

/// The `[System.ChangedDate] >= '…'` of the last WIQL query.
fn last_wiql_since(running: &Running) -> String {
    let queries = running.world.ado.queries("WIQL");
    let query = queries.last().expect("a WIQL query")["query"].clone();
    let (_, rest) = query
        .split_once("[System.ChangedDate] >= '")
        .unwrap_or_else(|| panic!("no ChangedDate clause in {query}"));
    rest.split('\'').next().expect("quoted").to_string()
}

#[tokio::test]
async fn an_incremental_run_reads_only_what_changed_and_advances_the_cursors() {
    let mut running = start("incremental-reads-changes").await;
    running.request_resync().await;
    running.resync_settled_without_failures().await;
    let entities = running.world.port.entity_count();
    let reconciled = running.world.port.resync_states().len();
    let repositories_read = running.world.ado.requests()[REPOSITORIES];

    // One work item changes; everything else is older than the first run's look-back.
    let changed = running.world.ado.work_items()[0]["id"]
        .as_u64()
        .expect("id");
    assert!(
        running
            .world
            .ado
            .set_work_item_title(changed, "Changed since")
    );

    let first = incremental_run(&mut running).await;
    let report = first.report.as_ref().expect("report");
    let kinds: Vec<&str> = report.kinds.keys().map(String::as_str).collect();
    assert_eq!(
        kinds,
        ["release", "work-item"],
        "only incremental kinds are read"
    );
    assert_eq!(report.kinds["work-item"].items, 1, "{report:?}");
    assert_eq!(report.kinds["release"].items, 0, "{report:?}");
    assert!(report.failed_kinds().is_empty(), "{report:?}");
    assert_eq!(
        running.world.ado.requests()[REPOSITORIES],
        repositories_read,
        "repositories are not synced incrementally"
    );
    // What Azure DevOps was asked: since the run's start minus 30 minutes.
    let seed = iso(first.started_at - chrono::Duration::minutes(30));
    assert_eq!(last_wiql_since(&running), seed);
    let wiql = running.world.ado.queries(WIQL);
    assert_eq!(
        wiql.last().expect("wiql")["timePrecision"],
        "true",
        "a time of day needs timePrecision"
    );
    let releases = running.world.ado.queries(RELEASES);
    assert_eq!(releases.last().expect("releases")["minCreatedTime"], seed);
    // The change is in Port; nothing was deleted or reconciled.
    // Drained means publish settled it: Port has it now.
    let suffix = format!("/{changed}");
    let entity = running
        .world
        .port
        .entities("azureDevopsWorkItem")
        .into_iter()
        .find(|e| {
            e["identifier"]
                .as_str()
                .is_some_and(|i| i.ends_with(&suffix))
        })
        .expect("work item in Port");
    assert_eq!(entity["title"], "Changed since", "{entity}");
    assert_eq!(running.world.port.entity_count(), entities);
    assert_eq!(running.world.port.resync_states().len(), reconciled);
    // The cursors moved to the run's start.
    assert_eq!(cursor(&running, "work-item"), Some(iso(first.started_at)));
    assert_eq!(cursor(&running, "release"), Some(iso(first.started_at)));

    // The next run starts from the stored cursor and finds nothing new.
    let second = incremental_run(&mut running).await;
    assert_eq!(last_wiql_since(&running), iso(first.started_at));
    let report = second.report.as_ref().expect("report");
    assert_eq!(report.kinds["work-item"].items, 0, "{report:?}");
    assert_eq!(cursor(&running, "work-item"), Some(iso(second.started_at)));
    assert_eq!(running.world.port.entity_count(), entities);
    running.stop().await;
}

#[tokio::test]
async fn a_failed_kind_keeps_its_cursor_and_stops_the_run() {
    let mut running = start("incremental-failure").await;
    let identifier = running.settings.integration_identifier();
    let earlier = "2026-01-01T00:00:00+00:00";
    running
        .world
        .port
        .set_cursor(&identifier, "work-item", index_of("work-item"), earlier);
    running.world.ado.fail_next(
        WIQL,
        vec![ScriptedAnswer::json(
            400,
            serde_json::json!({"message": "VS402337: scripted refusal", "typeKey": "WiqlException"}),
        )],
    );
    let releases_before = running
        .world
        .ado
        .requests()
        .get(RELEASES)
        .copied()
        .unwrap_or(0);

    let done = incremental_run(&mut running).await;
    let report = done.report.as_ref().expect("report");
    assert_eq!(report.failed_kinds(), ["work-item"], "{report:?}");
    assert!(
        !report.kinds.contains_key("release"),
        "the run stops at the failed kind, as Ocean's does: {report:?}"
    );
    assert_eq!(
        running
            .world
            .ado
            .requests()
            .get(RELEASES)
            .copied()
            .unwrap_or(0),
        releases_before
    );
    assert_eq!(
        running
            .world
            .port
            .cursor(&identifier, "work-item", index_of("work-item"))
            .as_deref(),
        Some(earlier),
        "a failed kind's cursor is not advanced"
    );
    assert_eq!(cursor(&running, "release"), None);
    running.stop().await;
}

/// The default mapping's project, work-item and release resources, then one resource of each
/// other incremental kind (blueprint = kind, identifier = id).
fn every_incremental_kind() -> serde_json::Value {
    let mut mapping =
        default_mapping(Some(&["project", "work-item", "release"])).expect("default mapping");
    let resources = mapping["resources"].as_array_mut().expect("resources");
    for kind in &INCREMENTAL[2..] {
        resources.push(serde_json::json!({
            "kind": kind,
            "selector": {"query": "true"},
            "port": {"entity": {"mappings": {
                "identifier": "(.id | tostring)",
                "title": "(.name // (.id | tostring))",
                "blueprint": format!("\"{kind}\""),
            }}},
        }));
    }
    mapping
}

/// The one value every request of `route` asked for `parameter`.
fn asked(running: &Running, route: &str, parameter: &str) -> String {
    let queries = running.world.ado.queries(route);
    let values: std::collections::BTreeSet<String> = queries
        .iter()
        .map(|q| {
            q.get(parameter)
                .unwrap_or_else(|| panic!("{route} without {parameter}: {q:?}"))
                .clone()
        })
        .collect();
    assert_eq!(values.len(), 1, "{route} {parameter}: {values:?}");
    values.into_iter().next().expect("one value")
}

#[tokio::test]
async fn every_incremental_kind_asks_what_the_python_integration_asks() {
    let mut running = start_with("incremental-every-kind", every_incremental_kind()).await;
    // A pipeline run completes: the one run the incremental run finds.
    let project = running.world.ado.projects()[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let run = running
        .world
        .ado
        .start_pipeline_run(&project, 1)
        .expect("run started");
    running
        .world
        .ado
        .complete_pipeline_run(run, "succeeded")
        .expect("run completed");

    let done = incremental_run(&mut running).await;
    let report = done.report.as_ref().expect("report");
    assert!(report.failed_kinds().is_empty(), "{report:?}");
    let mut kinds: Vec<&str> = report.kinds.keys().map(String::as_str).collect();
    kinds.sort_unstable();
    let mut expected = INCREMENTAL.to_vec();
    expected.sort_unstable();
    assert_eq!(kinds, expected, "only and every incremental kind is read");
    assert_eq!(report.kinds["pipeline-run"].items, 1, "{report:?}");

    // What Azure DevOps was asked: each kind since the run's start minus 30 minutes, with the
    // Python integration's parameters.
    let seed = iso(done.started_at - chrono::Duration::minutes(30));
    assert_eq!(last_wiql_since(&running), seed);
    assert_eq!(asked(&running, WIQL, "timePrecision"), "true");
    assert_eq!(asked(&running, RELEASES, "minCreatedTime"), seed);
    assert_eq!(asked(&running, BUILDS, "minTime"), seed);
    assert_eq!(asked(&running, BUILDS, "queryOrder"), "queueTimeDescending");
    assert_eq!(asked(&running, DEPLOYMENTS, "minModifiedTime"), seed);
    assert_eq!(asked(&running, TEST_RUNS, "minLastUpdatedDate"), seed);
    assert_eq!(asked(&running, TEST_RUNS, "includeRunDetails"), "true");
    let window_end = asked(&running, TEST_RUNS, "maxLastUpdatedDate");
    let window_end = chrono::DateTime::parse_from_rfc3339(&window_end).expect("a time");
    assert!(
        window_end >= done.started_at && window_end <= chrono::Utc::now(),
        "the window ends when it was asked: {window_end}"
    );
    assert_eq!(asked(&running, ALERTS, "criteria.modifiedSince"), seed);
    assert_eq!(
        asked(&running, PIPELINE_RUNS_ODATA, "$filter"),
        format!("CompletedDate ge {seed}")
    );
    assert_eq!(
        asked(&running, PIPELINE_RUNS_ODATA, "$select"),
        "PipelineRunId,CompletedDate"
    );
    assert_eq!(
        asked(&running, PIPELINE_RUNS_ODATA, "$expand"),
        "Pipeline($select=PipelineId,PipelineName)"
    );
    assert_eq!(
        asked(&running, PIPELINE_RUNS_ODATA, "$orderby"),
        "CompletedDate desc"
    );

    // The completed run is in Port; every kind's cursor moved to the run's start.
    let runs = running.world.port.entities("pipeline-run");
    assert!(
        runs.iter()
            .any(|e| e["identifier"].as_str() == Some(run.to_string().as_str())),
        "{runs:?}"
    );
    let identifier = running.settings.integration_identifier();
    let resources = every_incremental_kind()["resources"]
        .as_array()
        .expect("resources")
        .clone();
    for (index, resource) in resources.iter().enumerate() {
        let kind = resource["kind"].as_str().expect("kind");
        let stored = running.world.port.cursor(&identifier, kind, index as u64);
        if INCREMENTAL.contains(&kind) {
            assert_eq!(stored, Some(iso(done.started_at)), "{kind}");
        } else {
            assert_eq!(stored, None, "{kind}");
        }
    }
    running.stop().await;
}
