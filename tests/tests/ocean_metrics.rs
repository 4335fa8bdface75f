//! Ocean's resync pseudo-kinds in Port's sync metrics end to end (real RabbitMQ, simulated
//! Azure DevOps and Port): the `__runtime__` and `__reconciliation__` events, in Ocean's order
//! and shape, with what the resync and its reconciliation really did (entities deleted, deletes
//! Port refused, success, durations).

use std::time::Duration;

use adoport::sim::SimulatedWorld;
use adoport_publish::ResyncSummary;
use adoport_sim::ScriptedAnswer;
use adoport_sim::port::PortSim;
use adoport_tests::{OURS, Running, seed_entities, start_webhooks_only};
use serde_json::{Value, json};

const REPOSITORY: &str = "azureDevopsRepository";
const BULK_DELETE: &str = "POST /v1/blueprints/{bp}/bulk/entities/delete";

/// A pseudo-kind event Port received: how it came, its `kindIdentifier` and `syncState`, and
/// the event itself.
struct PseudoKindEvent {
    method: &'static str,
    kind: String,
    state: String,
    event: Value,
}

/// The pseudo-kind events Port received for resync `event_id`, in order.
fn pseudo_kinds_of(port: &PortSim, event_id: &str) -> Vec<PseudoKindEvent> {
    let text = |e: &Value, field: &str| e[field].as_str().unwrap_or("?").to_string();
    (port.pseudo_kind_metrics().into_iter())
        .filter(|(_, _, e)| e["eventId"] == event_id)
        .map(|(method, _, event)| PseudoKindEvent {
            method,
            kind: text(&event, "kindIdentifier"),
            state: text(&event, "syncState"),
            event,
        })
        .collect()
}

/// `"{method} {kindIdentifier} {syncState}"` of each event, in order.
fn sequence(events: &[PseudoKindEvent]) -> Vec<String> {
    (events.iter())
        .map(|e| format!("{} {} {}", e.method, e.kind, e.state))
        .collect()
}

/// A pipeline on its own queues (`test`), one project of three repositories, no start-up
/// resync, with Port's record naming a sync metrics ingest.
async fn start_with_metrics(test: &str) -> Running {
    let running = start_webhooks_only(test, 1, 3).await;
    running.world.port.enable_sync_metrics();
    running
}

/// What a case's resync did, as the pipeline and Port's sync metrics tell it.
struct Collected {
    running: Running,
    /// Entities we owned before the resync that it does not produce.
    stale: Vec<String>,
    summary: ResyncSummary,
    /// The resync's pseudo-kind events, once its final `__runtime__` came.
    events: Vec<PseudoKindEvent>,
}

/// Seeds three stale entities of ours, lets `fault` script the simulators, runs one resync
/// and collects its summary and pseudo-kind events.
async fn run_and_collect(test: &str, fault: impl FnOnce(&SimulatedWorld)) -> Collected {
    let running = start_with_metrics(test).await;
    let stale: Vec<String> = (0..3).map(|i| format!("stale-{i}")).collect();
    seed_entities(&running.world.port, OURS, REPOSITORY, &stale).await;
    fault(&running.world);
    let resync_id = running.request_resync().await;
    let summary = running.resync_summary(60, resync_id).await;
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
    let events = pseudo_kinds_of(port, &event_id);
    Collected {
        running,
        stale,
        summary,
        events,
    }
}

impl Collected {
    /// The events came in Ocean's order, the reconciliation and the resync ending `end`, each
    /// in a pseudo-kind's shape, the two that start with no figures and no success yet.
    fn assert_ended(&self, end: &str) {
        assert_eq!(
            sequence(&self.events),
            [
                "POST __runtime__ syncing".to_string(),
                "POST __reconciliation__ syncing".to_string(),
                format!("PUT __reconciliation__ {end}"),
                format!("POST __runtime__ {end}"),
            ]
        );
        for PseudoKindEvent { kind, event, .. } in &self.events {
            assert_eq!(event["kind"], kind.as_str());
            assert_eq!(event["kindIndex"], 0);
            assert_eq!(event["blueprint"], "");
            assert_eq!(event["integrationIdentifier"], "azure-devops");
            assert_eq!(event["oceanVersion"], "0.48.12");
        }
        for PseudoKindEvent { event, .. } in &self.events[..2] {
            assert_eq!(
                event["metrics"],
                json!({"phase": {"resync": {"success": 0.0}}})
            );
        }
    }

    /// The `PUT` that ends the reconciliation (after [`Collected::assert_ended`]).
    fn reconciliation(&self) -> &Value {
        &self.events[2].event
    }

    /// The final `__runtime__` event (after [`Collected::assert_ended`]).
    fn runtime(&self) -> &Value {
        &self.events[3].event
    }

    /// Whether Port still holds stale entity `id`.
    fn holds(&self, id: &str) -> bool {
        self.running.world.port.entity(REPOSITORY, id).is_some()
    }
}

fn resync_success(event: &Value) -> Value {
    event["metrics"]["phase"]["resync"]["success"].clone()
}

fn delete_count(event: &Value, result: &str) -> Value {
    event["metrics"]["phase"]["delete"]["object_count_type"][result]["object_count"].clone()
}

#[tokio::test]
async fn a_resync_that_deletes_stale_entities_reports_its_reconciliation_and_runtime() {
    let run = run_and_collect("ocean-metrics-deletes", |_| {}).await;
    assert_eq!((run.summary.status, run.summary.deleted), ("completed", 3));
    for id in &run.stale {
        assert!(!run.holds(id), "{id}");
    }
    run.assert_ended("completed");
    let reconciliation = run.reconciliation();
    assert_eq!(resync_success(reconciliation), 1.0);
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
    let runtime = run.runtime();
    assert_eq!(resync_success(runtime), 1.0);
    let runtime_seconds = runtime["metrics"]["phase"]["resync"]["duration_seconds"]
        .as_f64()
        .expect("the resync's duration");
    assert!(
        (runtime_seconds - run.summary.seconds).abs() < 1.0,
        "{runtime_seconds} s vs the summary's {} s",
        run.summary.seconds
    );
    run.running.stop().await;
}

#[tokio::test]
async fn deletes_port_refuses_fail_the_reconciliation_and_the_resync_in_the_metrics() {
    // Port refuses the delete (422 is not retried): the reconciliation stops.
    let run = run_and_collect("ocean-metrics-refused", |world| {
        world
            .port
            .fail_next(BULK_DELETE, vec![ScriptedAnswer::status(422)]);
    })
    .await;
    assert_eq!((run.summary.status, run.summary.deleted), ("failed", 0));
    run.assert_ended("failed");
    let reconciliation = run.reconciliation();
    assert_eq!(resync_success(reconciliation), 0.0);
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
    assert_eq!(resync_success(run.runtime()), 0.0);
    for id in &run.stale {
        assert!(run.holds(id), "{id} not deleted");
    }
    run.running.stop().await;
}

#[tokio::test]
async fn a_failed_crawl_fails_the_reconciliation_and_the_resync_without_deleting() {
    // Listing repositories fails for good (403 is not retried).
    let run = run_and_collect("ocean-metrics-crawl-failed", |world| {
        world.ado.fail_next(
            "GET /{org}/{project}/_apis/git/repositories",
            vec![ScriptedAnswer::status(403); 20],
        );
    })
    .await;
    assert_eq!(run.summary.status, "failed");
    run.assert_ended("failed");
    // It never came to deleting: no delete phase (as Ocean skips its delete phase).
    let reconciliation = run.reconciliation();
    assert_eq!(resync_success(reconciliation), 0.0);
    assert_eq!(reconciliation["metrics"]["phase"].get("delete"), None);
    assert_eq!(resync_success(run.runtime()), 0.0);
    assert!(run.holds(&run.stale[0]));
    run.running.stop().await;
}

#[tokio::test]
async fn a_superseded_resync_reports_its_reconciliation_and_runtime_aborted() {
    let mut running = start_with_metrics("ocean-metrics-superseded").await;
    // Port holds the writes back for a while: the first resync's crawl ends, its changes are
    // not all written when the second resync starts, which supersedes it.
    running.world.port.fail_next(
        "POST /v1/blueprints/{bp}/entities/bulk",
        vec![ScriptedAnswer::rate_limited(3); 4],
    );
    let first = running.request_resync().await.to_string();
    adoport_tests::within(60, "the first crawl", running.pipeline.next_resync())
        .await
        .expect("pipeline running");
    let second = running.request_resync().await;
    let summary = running.resync_summary(90, second).await;
    assert_eq!(summary.status, "completed", "{summary:?}");
    let second = second.to_string();
    let port = &running.world.port;
    let aborted = |p: &PortSim| pseudo_kinds_of(p, &first).len() >= 3;
    assert!(
        port.wait_for(aborted, Duration::from_secs(30)).await,
        "{:?}",
        port.pseudo_kind_metrics()
    );
    assert_eq!(
        sequence(&pseudo_kinds_of(port, &first)),
        [
            "POST __runtime__ syncing",
            "POST __reconciliation__ aborted",
            "POST __runtime__ aborted",
        ]
    );
    let done = |p: &PortSim| pseudo_kinds_of(p, &second).len() >= 4;
    assert!(port.wait_for(done, Duration::from_secs(30)).await);
    assert_eq!(
        sequence(&pseudo_kinds_of(port, &second))
            .last()
            .map(String::as_str),
        Some("POST __runtime__ completed")
    );
    running.stop().await;
}
