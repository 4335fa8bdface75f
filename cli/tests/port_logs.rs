//! An `adoport` process ships its log lines to Port's log view as the Python integration does
//! (`POST {logAttributes.ingestUrl}` with `{"logs": [{message, level, timestamp, extra}]}`),
//! never with a secret in them, not when `APPLICATION__ENABLE_HTTP_LOGGING=false`, and without
//! shipping its own shipping failures.

use std::process::Stdio;
use std::time::Duration;

use adoport::sim::{SimulatedWorld, WEBHOOK_SECRET};
use adoport_sim::ScriptedAnswer;
use serde_json::{Value, json};

mod support;

use support::{adoport, log_of_success, organization, projects_and_repositories, start_world};

const LOGS: &str = "POST /v1/logs-ingest/{id}";
const RESYNC_STATE: &str = "PATCH /v1/integration/{id}/resync-state";
const INFO: &str = "info,lapin=warn";
/// What the simulators take as credentials (their defaults).
const SECRETS: [&str; 3] = ["sim-pat", "sim-secret", WEBHOOK_SECRET];
/// A Port access token's shape, echoed back by a scripted error below.
const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzaW0ifQ.c2lnbmF0dXJl";

async fn world() -> SimulatedWorld {
    let world = start_world(organization(1, 2), projects_and_repositories()).await;
    world.port.enable_log_ingest();
    world
}

/// `adoport all` in ONCE mode against `world` with `extra` variables; its output.
async fn run_once(
    world: &SimulatedWorld,
    extra: &[(&str, &str)],
    rust_log: &str,
) -> std::process::Output {
    let mut environment = world.environment(None);
    environment.push(("OCEAN__EVENT_LISTENER__TYPE".into(), "ONCE".into()));
    environment.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut command = adoport(&["all"], &environment, rust_log);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("ONCE run finishes within 2 minutes")
        .expect("adoport runs")
}

fn messages(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l["message"].as_str().map(String::from))
        .collect()
}

#[tokio::test]
async fn a_run_ships_its_log_lines_in_oceans_shape_without_secrets() {
    let world = world().await;
    // Port's answer to a failed call echoes credentials, and adoport logs the answer: the
    // line that reaches Port's log view must not hold them.
    let echo = format!(
        "rejected: Authorization: Bearer {TOKEN}; pat {}; secret {}; webhook {}",
        SECRETS[0], SECRETS[1], SECRETS[2]
    );
    world.port.fail_next(
        RESYNC_STATE,
        vec![ScriptedAnswer::json(
            400,
            json!({"ok": false, "message": echo}),
        )],
    );
    let output = run_once(&world, &[], INFO).await;
    let log = log_of_success(&output);
    assert!(
        log.contains("could not report the resync state"),
        "the scripted failure was logged: {log}"
    );

    let lines = world.port.log_lines();
    let shipped = messages(&lines);
    assert!(
        shipped.iter().any(|m| m == "adoport started"),
        "{shipped:?}"
    );
    let line = lines
        .iter()
        .find(|l| l["message"] == "adoport started")
        .expect("start line");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["extra"]["role"], "all");
    assert!(line["extra"]["hostname"].is_string() && line["extra"]["instance"].is_string());
    // The line of the scripted failure was shipped, redacted.
    let failure = lines
        .iter()
        .find(|l| l["message"] == "could not report the resync state to Port")
        .expect("the failure's line was shipped");
    let failure_text = failure.to_string();
    assert!(failure_text.contains("[REDACTED]"), "{failure_text}");
    // The process stopping ships its last lines too (the final flush).
    assert!(
        shipped.iter().any(|m| m == "adoport stopped"),
        "{shipped:?}"
    );
    let everything = serde_json::to_string(&world.port.log_shipments()).expect("json");
    for secret in SECRETS.iter().chain([&TOKEN]) {
        assert!(
            !everything.contains(secret),
            "{secret} reached Port's log view"
        );
    }
    // Ocean's shipments: at most its capacity of lines each.
    assert!(
        world
            .port
            .log_shipments()
            .iter()
            .all(|s| !s.is_empty() && s.len() <= 100)
    );
    world.shutdown().await;
}

#[tokio::test]
async fn application_enable_http_logging_false_ships_nothing() {
    let world = world().await;
    let output = run_once(
        &world,
        &[("APPLICATION__ENABLE_HTTP_LOGGING", "false")],
        INFO,
    )
    .await;
    log_of_success(&output);
    assert_eq!(world.port.requests().get(LOGS), None);
    assert!(world.port.log_lines().is_empty());
    world.shutdown().await;
}

#[tokio::test]
async fn a_failed_shipment_blocks_nothing_and_is_not_retried_or_shipped() {
    let world = world().await;
    // A short run ships once, at its end; Port's log ingest fails that shipment.
    world
        .port
        .fail_next(LOGS, vec![ScriptedAnswer::status(503)]);
    let output = run_once(&world, &[], INFO).await;
    let log = log_of_success(&output);
    assert!(
        log.contains("could not ship log lines to Port's log view"),
        "the failure is logged locally: {log}"
    );
    // Lost, as Ocean loses it: not sent again, and the failure's own line not shipped.
    assert_eq!(
        world.port.requests().get(LOGS).copied(),
        Some(1),
        "{:?}",
        world.port.requests()
    );
    assert!(world.port.log_lines().is_empty());
    world.shutdown().await;
}
