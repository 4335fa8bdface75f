//! ONCE mode as the CI job runs it: `adoport all` as a child process without a broker, against
//! the simulators. It exits 0 when the resync landed, and non-zero with a summary when it did not.

use std::process::Stdio;
use std::time::Duration;

use adoport::sim::SimulatedWorld;
use adoport_sim::ScriptedAnswer;
use tokio::process::Command;

mod support;

use support::{adoport, log_of_success, organization, projects_and_repositories, start_world};

const BULK: &str = "POST /v1/blueprints/{bp}/entities/bulk";

/// `adoport all` in ONCE mode against `world`, without a broker; its output kept for the test.
fn once(world: &SimulatedWorld, rust_log: &str) -> Command {
    let mut command = adoport(&["all"], &world.environment(None), rust_log);
    command
        .env("OCEAN__EVENT_LISTENER__TYPE", "ONCE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

async fn run_once(world: &SimulatedWorld) -> std::process::Output {
    tokio::time::timeout(
        Duration::from_secs(120),
        once(world, "info,lapin=warn").output(),
    )
    .await
    .expect("ONCE run finishes within 2 minutes")
    .expect("adoport runs")
}

async fn world(projects: usize, repositories: usize) -> SimulatedWorld {
    start_world(
        organization(projects, repositories),
        projects_and_repositories(),
    )
    .await
}

#[tokio::test]
async fn once_exits_zero_when_everything_landed() {
    let world = world(2, 3).await;
    let output = run_once(&world).await;
    log_of_success(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(world.port.entity_count(), 2 + 6, "{stderr}");
    world.shutdown().await;
}

#[tokio::test]
async fn once_exits_non_zero_with_a_summary_when_port_refuses_changes() {
    let world = world(1, 2).await;
    // Port refuses every bulk upsert for good: the changes are dead-lettered.
    world
        .port
        .fail_next(BULK, (0..50).map(|_| ScriptedAnswer::status(422)).collect());
    let output = run_once(&world).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("resync incomplete"), "{stderr}");
    assert!(stderr.contains("dead-lettered"), "{stderr}");
    world.shutdown().await;
}

/// A ONCE run ends with its reconciliation, as the Python integration's does: an entity this
/// integration owns that Azure DevOps no longer has is deleted before the process exits, and
/// entities of other writers are left alone.
#[tokio::test]
async fn once_deletes_what_azure_devops_no_longer_has_before_it_exits() {
    let world = world(1, 2).await;
    let identifier = adoport_sim::port::PortSimConfig::default().integration_identifier;
    let ours = adoport_publish::exporter_user_agent(
        adoport_publish::COMPATIBLE_INTEGRATION_VERSION,
        &identifier,
    );
    let stale =
        serde_json::json!({"identifier": "gone-repository", "title": "gone", "properties": {}});
    let foreign =
        serde_json::json!({"identifier": "made-by-hand", "title": "mine", "properties": {}});
    let repository = "azureDevopsRepository";
    world
        .port
        .put_entity(repository, stale, Some(&ours))
        .expect("a stale entity of ours");
    world
        .port
        .put_entity(repository, foreign, None)
        .expect("an entity made in the UI");
    let output = run_once(&world).await;
    let log = log_of_success(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        world.port.entity(repository, "gone-repository").is_none(),
        "the stale entity was deleted before exit\n{stderr}"
    );
    assert!(world.port.entity(repository, "made-by-hand").is_some());
    assert_eq!(world.port.entity_count(), 1 + 2 + 1, "{stderr}");
    assert!(
        log.contains("ONCE resync finished") && log.contains("entities_deleted=1"),
        "the summary says what was deleted: {log}"
    );
    world.shutdown().await;
}

#[tokio::test]
async fn a_port_outage_at_start_up_is_waited_out_not_exited_on() {
    // Port is down when the process starts (a pod rescheduled during an outage): it waits for
    // Port, alive, instead of exiting into a restart loop, and syncs once Port answers.
    let world = world(1, 2).await;
    world
        .port
        .set_outage(Some(adoport_sim::PortOutage::Unavailable));
    let mut child = once(&world, "warn").spawn().expect("adoport runs");
    // Three refused attempts (1 s, then 2 s apart), and the process is still there.
    let tried = world
        .port
        .wait_for(|p| p.outage_answers() >= 3, Duration::from_secs(30))
        .await;
    assert!(tried, "adoport did not try Port three times");
    assert!(
        child.try_wait().expect("status").is_none(),
        "adoport exited while Port was down"
    );
    world.port.set_outage(None);
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("ONCE run finishes within 2 minutes")
        .expect("adoport runs");
    // Logs go to stdout, errors to stderr.
    let logs = log_of_success(&output);
    assert!(logs.contains("Port is unavailable at start-up"), "{logs}");
    assert_eq!(world.port.entity_count(), 1 + 2, "{logs}");
    world.shutdown().await;
}

/// On start the integration record an older Python integration left is brought up to date with
/// exactly the fields Ocean's start-up PATCH sends, and the resync's per-kind sync metrics and
/// heartbeats go where the record says.
#[tokio::test]
async fn once_updates_the_integration_record_and_sends_the_sync_metrics() {
    let world = world(1, 2).await;
    world.port.install_integration(serde_json::json!({
        "installationAppType": "azure-devops",
        "version": "0.1.90",
        "changelogDestination": {},
        "actionsProcessingEnabled": false,
        "incrementalSyncEnabled": false,
    }));
    world.port.enable_sync_metrics();
    let output = run_once(&world).await;
    log_of_success(&output);
    assert_eq!(
        world.port.integration_patches(),
        vec![serde_json::json!({
            "installationAppType": "azure-devops",
            "changelogDestination": {},
            "actionsProcessingEnabled": false,
            "incrementalSyncEnabled": false,
            "processingMode": "ocean-core",
            "version": adoport_publish::COMPATIBLE_INTEGRATION_VERSION,
            "arePortResourcesInitialized": true,
        })]
    );
    let batches = world.port.sync_metrics();
    let last = batches.last().expect("sync metrics sent");
    assert!(
        !last.is_empty() && last.iter().all(|e| e["syncState"] == "completed"),
        "{batches:?}"
    );
    assert!(
        world.port.metrics_heartbeats().len() >= 2,
        "{:?}",
        world.port.metrics_heartbeats()
    );
    world.shutdown().await;
}

/// A refused record update stops the start, naming the endpoint, Port's status and answer.
#[tokio::test]
async fn once_fails_with_the_endpoint_when_port_refuses_the_record_update() {
    let world = world(1, 1).await;
    world
        .port
        .install_integration(serde_json::json!({"version": "0.1.90"}));
    world.port.fail_next(
        "PATCH /v1/integration/{id}",
        vec![ScriptedAnswer::json(
            422,
            serde_json::json!({"ok": false, "error": "invalid_body", "message": "version is malformed"}),
        )],
    );
    let output = run_once(&world).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(0), "{stderr}");
    for part in [
        "PATCH /v1/integration/azure-devops",
        "HTTP 422",
        "version is malformed",
    ] {
        assert!(stderr.contains(part), "{part} in {stderr}");
    }
    world.shutdown().await;
}

/// `adoport all` in ONCE mode with `OCEAN__INTEGRATION__INCREMENTAL_SYNC_ENABLED` is Ocean's
/// incremental CronJob: it reads only the incremental kinds since their cursors (a first run
/// looks back one interval), writes what changed, deletes nothing, saves the cursors in Port
/// and says so in the integration record.
#[tokio::test]
async fn once_with_incremental_sync_reads_only_what_changed_and_deletes_nothing() {
    let mapping = adoport::sim::default_mapping(Some(&["project", "repository", "work-item"]))
        .expect("default mapping");
    let world = start_world(organization(1, 2), mapping).await;
    let identifier = adoport_sim::port::PortSimConfig::default().integration_identifier;
    let ours = adoport_publish::exporter_user_agent(
        adoport_publish::COMPATIBLE_INTEGRATION_VERSION,
        &identifier,
    );
    let stale =
        serde_json::json!({"identifier": "gone-repository", "title": "gone", "properties": {}});
    world
        .port
        .put_entity("azureDevopsRepository", stale, Some(&ours))
        .expect("a stale entity of ours");
    let changed = world.ado.work_items()[0]["id"].as_u64().expect("id");
    assert!(world.ado.set_work_item_title(changed, "Changed since"));

    let mut command = once(&world, "info,lapin=warn");
    command
        .env("OCEAN__INTEGRATION__INCREMENTAL_SYNC_ENABLED", "true")
        .env("OCEAN__INTEGRATION__INCREMENTAL_SYNC_INTERVAL", "1h");
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("ONCE run finishes within 2 minutes")
        .expect("adoport runs");
    let log = log_of_success(&output);
    assert!(log.contains("ONCE incremental sync finished"), "{log}");
    // Only the changed work item was written; projects and repositories were not read, and
    // the stale entity of a full resync's reconciliation is still there.
    let work_items = world.port.entities("azureDevopsWorkItem");
    assert_eq!(work_items.len(), 1, "{log}");
    assert_eq!(work_items[0]["title"], "Changed since");
    // (Port made stubs of the project and column the work item relates to.)
    assert_eq!(
        world.port.entities("azureDevopsRepository").len(),
        1,
        "{log}"
    );
    assert!(
        world
            .port
            .entity("azureDevopsRepository", "gone-repository")
            .is_some()
    );
    assert_eq!(
        world
            .ado
            .requests()
            .get("GET /{org}/{project}/_apis/git/repositories")
            .copied()
            .unwrap_or(0),
        0
    );
    assert!(
        world.port.resync_states().is_empty(),
        "no resync is reported"
    );
    // The work-item resource (index 2) has its cursor; the record says incremental is on.
    let cursor = world
        .port
        .cursor(&identifier, "work-item", 2)
        .expect("cursor saved");
    assert!(cursor.ends_with("+00:00"), "{cursor}");
    assert!(
        world
            .port
            .integration_patches()
            .iter()
            .any(|patch| patch["incrementalSyncEnabled"] == true),
        "{:?}",
        world.port.integration_patches()
    );
    world.shutdown().await;
}

/// A kind that fails in an incremental ONCE run keeps its cursor, and the run exits 1 saying
/// so: the next run reads the same window again.
#[tokio::test]
async fn once_with_incremental_sync_exits_non_zero_and_keeps_the_cursor_when_a_kind_fails() {
    let mapping =
        adoport::sim::default_mapping(Some(&["project", "work-item"])).expect("default mapping");
    let world = start_world(organization(1, 1), mapping).await;
    let identifier = adoport_sim::port::PortSimConfig::default().integration_identifier;
    let earlier = "2026-01-01T00:00:00+00:00";
    world.port.set_cursor(&identifier, "work-item", 1, earlier);
    world.ado.fail_next(
        "POST /{org}/{project}/_apis/wit/wiql",
        vec![ScriptedAnswer::json(
            400,
            serde_json::json!({"message": "VS402337: scripted refusal"}),
        )],
    );
    let mut command = once(&world, "info,lapin=warn");
    command.env("OCEAN__INTEGRATION__INCREMENTAL_SYNC_ENABLED", "true");
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("ONCE run finishes within 2 minutes")
        .expect("adoport runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("incremental sync incomplete"), "{stderr}");
    assert_eq!(
        world.port.cursor(&identifier, "work-item", 1).as_deref(),
        Some(earlier)
    );
    world.shutdown().await;
}
