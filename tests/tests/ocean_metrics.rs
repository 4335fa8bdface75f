//! Ocean's resync pseudo-kinds in Port's sync metrics end to end (real RabbitMQ, simulated
//! Azure DevOps and Port): the `__runtime__` and `__reconciliation__` events, in Ocean's order
//! and shape, with what the resync and its reconciliation really did (entities deleted, deletes
//! Port refused, success, durations).

use std::time::Duration;

use adoport_sim::ScriptedAnswer;
use adoport_sim::port::PortSim;
use adoport_tests::{Running, port_access_token, start_webhooks_only};
use serde_json::{Value, json};

const REPOSITORY: &str = "azureDevopsRepository";
/// Our ownership: the Python integration's datasource for integration `azure-devops`.
const OURS: &str = "port-ocean/azure-devops/0.12.2/azure-devops/exporter";
const BULK_DELETE: &str = "POST /v1/blueprints/{bp}/bulk/entities/delete";

/// Writes entities we own into Port: stale for the next resync, which does not produce them.
async fn seed_stale(port: &PortSim, identifiers: &[String]) {
    let http = reqwest::Client::builder()
        .user_agent(OURS)
        .build()
        .expect("client");
    let token = port_access_token(&http, &port.base_url(), "sim-client", "sim-secret").await;
    let entities: Vec<Value> = identifiers
        .iter()
        .map(|id| json!({"identifier": id, "title": id, "properties": {}, "relations": {}}))
        .collect();
    let response = http
        .post(format!(
            "{}/v1/blueprints/{REPOSITORY}/entities/bulk?upsert=true&merge=true",
            port.base_url()
        ))
        .bearer_auth(&token)
        .json(&json!({ "entities": entities }))
        .send()
        .await
        .expect("seed");
    assert!(response.status().is_success(), "{}", response.status());
}

/// The pseudo-kind events Port received for the resync whose resource events name
/// `event_id`, once its final `__runtime__` came: (method, kindIdentifier, syncState, event).
async fn pseudo_kinds_of_resync(running: &Running) -> Vec<(&'static str, String, String, Value)> {
    let port = &running.world.port;
    let ended = |p: &PortSim| {
        p.pseudo_kind_metrics().iter().any(|(method, _, e)| {
            *method == "POST" && e["kindIdentifier"] == "__runtime__" && e["syncState"] != "syncing"
        })
    };
    assert!(
        port.wait_for(ended, Duration::from_secs(60)).await,
        "the resync's final __runtime__ event: {:?}",
        port.pseudo_kind_metrics()
    );
    let event_id = (port.sync_metrics().first())
        .and_then(|batch| batch.first())
        .and_then(|e| e["eventId"].as_str())
        .expect("the resources' events name the resync")
        .to_string();
    let text = |e: &Value, field: &str| e[field].as_str().unwrap_or("?").to_string();
    (port.pseudo_kind_metrics().into_iter())
        .filter(|(_, _, e)| e["eventId"] == event_id.as_str())
        .map(|(method, _, e)| (method, text(&e, "kindIdentifier"), text(&e, "syncState"), e))
        .collect()
}

/// `(method, kindIdentifier, syncState)` of each event, in order.
fn sequence<'a>(
    events: &'a [(&'static str, String, String, Value)],
) -> Vec<(&'static str, &'a str, &'a str)> {
    (events.iter())
        .map(|(m, k, s, _)| (*m, k.as_str(), s.as_str()))
        .collect()
}

fn delete_count(event: &Value, result: &str) -> Value {
    event["metrics"]["phase"]["delete"]["object_count_type"][result]["object_count"].clone()
}

#[tokio::test]
async fn a_resync_that_deletes_stale_entities_reports_its_reconciliation_and_runtime() {
    let running = start_webhooks_only("ocean-metrics-deletes", 1, 3).await;
    running.world.port.enable_sync_metrics();
    let stale: Vec<String> = (0..3).map(|i| format!("stale-{i}")).collect();
    seed_stale(&running.world.port, &stale).await;
    let resync_id = running.request_resync().await;
    let summary = running.resync_summary(60, resync_id).await;
    assert_eq!((summary.status, summary.deleted), ("completed", 3));
    for id in &stale {
        assert!(running.world.port.entity(REPOSITORY, id).is_none(), "{id}");
    }
    let events = pseudo_kinds_of_resync(&running).await;
    assert_eq!(
        sequence(&events),
        [
            ("POST", "__runtime__", "syncing"),
            ("POST", "__reconciliation__", "syncing"),
            ("PUT", "__reconciliation__", "completed"),
            ("POST", "__runtime__", "completed"),
        ]
    );
    for (_, kind, _, event) in &events {
        assert_eq!(event["kind"], kind.as_str());
        assert_eq!(event["kindIndex"], 0);
        assert_eq!(event["blueprint"], "");
        assert_eq!(event["integrationIdentifier"], "azure-devops");
        assert_eq!(event["oceanVersion"], "0.48.12");
    }
    // Started: not a success yet, and no figures.
    for (_, _, _, event) in &events[..2] {
        assert_eq!(
            event["metrics"],
            json!({"phase": {"resync": {"success": 0.0}}})
        );
    }
    let reconciliation = &events[2].3;
    assert_eq!(reconciliation["metrics"]["phase"]["resync"]["success"], 1.0);
    assert!(reconciliation["metrics"]["phase"]["resync"]["duration_seconds"].as_f64() >= Some(0.0));
    assert_eq!(
        delete_count(reconciliation, "deleted"),
        3.0,
        "{reconciliation}"
    );
    assert_eq!(
        delete_count(reconciliation, "failed"),
        0.0,
        "{reconciliation}"
    );
    assert!(
        reconciliation["metrics"]["phase"]["delete"]["duration_seconds"].as_f64() >= Some(0.0),
        "{reconciliation}"
    );
    let runtime = &events[3].3;
    assert_eq!(runtime["metrics"]["phase"]["resync"]["success"], 1.0);
    let runtime_seconds = runtime["metrics"]["phase"]["resync"]["duration_seconds"]
        .as_f64()
        .expect("the resync's duration");
    assert!(
        (runtime_seconds - summary.seconds).abs() < 1.0,
        "{runtime_seconds} s vs the summary's {} s",
        summary.seconds
    );
    running.stop().await;
}

#[tokio::test]
async fn deletes_port_refuses_fail_the_reconciliation_and_the_resync_in_the_metrics() {
    let running = start_webhooks_only("ocean-metrics-refused", 1, 3).await;
    running.world.port.enable_sync_metrics();
    let stale: Vec<String> = (0..3).map(|i| format!("stale-{i}")).collect();
    seed_stale(&running.world.port, &stale).await;
    // Port refuses the delete (422 is not retried): the reconciliation stops.
    running
        .world
        .port
        .fail_next(BULK_DELETE, vec![ScriptedAnswer::status(422)]);
    let resync_id = running.request_resync().await;
    let summary = running.resync_summary(60, resync_id).await;
    assert_eq!((summary.status, summary.deleted), ("failed", 0));
    let events = pseudo_kinds_of_resync(&running).await;
    assert_eq!(
        sequence(&events),
        [
            ("POST", "__runtime__", "syncing"),
            ("POST", "__reconciliation__", "syncing"),
            ("PUT", "__reconciliation__", "failed"),
            ("POST", "__runtime__", "failed"),
        ]
    );
    let reconciliation = &events[2].3;
    assert_eq!(reconciliation["metrics"]["phase"]["resync"]["success"], 0.0);
    assert_eq!(
        delete_count(reconciliation, "deleted"),
        0.0,
        "{reconciliation}"
    );
    assert_eq!(
        delete_count(reconciliation, "failed"),
        3.0,
        "{reconciliation}"
    );
    assert_eq!(events[3].3["metrics"]["phase"]["resync"]["success"], 0.0);
    let port = &running.world.port;
    for id in &stale {
        assert!(port.entity(REPOSITORY, id).is_some(), "{id} not deleted");
    }
    running.stop().await;
}

#[tokio::test]
async fn a_failed_crawl_fails_the_reconciliation_and_the_resync_without_deleting() {
    let running = start_webhooks_only("ocean-metrics-crawl-failed", 1, 3).await;
    running.world.port.enable_sync_metrics();
    let stale: Vec<String> = (0..3).map(|i| format!("stale-{i}")).collect();
    seed_stale(&running.world.port, &stale).await;
    // Listing repositories fails for good (403 is not retried).
    running.world.ado.fail_next(
        "GET /{org}/{project}/_apis/git/repositories",
        vec![ScriptedAnswer::status(403); 20],
    );
    let resync_id = running.request_resync().await;
    let summary = running.resync_summary(60, resync_id).await;
    assert_eq!(summary.status, "failed");
    let events = pseudo_kinds_of_resync(&running).await;
    assert_eq!(
        sequence(&events),
        [
            ("POST", "__runtime__", "syncing"),
            ("POST", "__reconciliation__", "syncing"),
            ("PUT", "__reconciliation__", "failed"),
            ("POST", "__runtime__", "failed"),
        ]
    );
    // It never came to deleting: no delete phase (as Ocean skips its delete phase).
    let reconciliation = &events[2].3;
    assert_eq!(reconciliation["metrics"]["phase"]["resync"]["success"], 0.0);
    assert_eq!(reconciliation["metrics"]["phase"].get("delete"), None);
    assert_eq!(events[3].3["metrics"]["phase"]["resync"]["success"], 0.0);
    assert!(running.world.port.entity(REPOSITORY, &stale[0]).is_some());
    running.stop().await;
}

#[tokio::test]
async fn a_superseded_resync_reports_its_reconciliation_and_runtime_aborted() {
    let mut running = start_webhooks_only("ocean-metrics-superseded", 1, 3).await;
    running.world.port.enable_sync_metrics();
    // Port holds the writes back for a while: the first resync's crawl ends, its changes are
    // not all written when the second resync starts, which supersedes it.
    running.world.port.fail_next(
        "POST /v1/blueprints/{bp}/entities/bulk",
        vec![ScriptedAnswer::rate_limited(3); 4],
    );
    let first = running.request_resync().await;
    adoport_tests::within(60, "the first crawl", running.pipeline.next_resync())
        .await
        .expect("pipeline running");
    let second = running.request_resync().await;
    let summary = running.resync_summary(90, second).await;
    assert_eq!(summary.status, "completed", "{summary:?}");
    let port = &running.world.port;
    let of = |resync: String| {
        move |p: &PortSim| -> Vec<(&'static str, String, String)> {
            (p.pseudo_kind_metrics().into_iter())
                .filter(|(_, _, e)| e["eventId"] == resync.as_str())
                .map(|(m, _, e)| {
                    let text = |f: &str| e[f].as_str().unwrap_or("?").to_string();
                    (m, text("kindIdentifier"), text("syncState"))
                })
                .collect()
        }
    };
    let first_events = of(first.to_string());
    let aborted = |p: &PortSim| first_events(p).len() >= 3;
    assert!(
        port.wait_for(aborted, Duration::from_secs(30)).await,
        "{:?}",
        port.pseudo_kind_metrics()
    );
    let owned = |v: Vec<(&'static str, String, String)>| {
        v.into_iter()
            .map(|(m, k, s)| format!("{m} {k} {s}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        owned(first_events(port)),
        [
            "POST __runtime__ syncing",
            "POST __reconciliation__ aborted",
            "POST __runtime__ aborted",
        ]
    );
    let second_events = of(second.to_string());
    let done = |p: &PortSim| second_events(p).len() >= 4;
    assert!(port.wait_for(done, Duration::from_secs(30)).await);
    assert_eq!(
        owned(second_events(port)).last().map(String::as_str),
        Some("POST __runtime__ completed")
    );
    running.stop().await;
}
