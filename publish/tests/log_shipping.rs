//! The log shipper against the Port simulator: a failed shipment is lost (as Ocean loses it)
//! and later ones go, a moved `logAttributes.ingestUrl` is followed, and while Port is down
//! the lines wait within the outbox's bound, the oldest giving way and counted.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use adoport_publish::log_shipping::LogShipper;
use adoport_shared::telemetry::outbox::OUTBOX_LINES;
use adoport_shared::telemetry::{LogOutbox, SHIP_BATCH};
use adoport_sim::ScriptedAnswer;
use adoport_sim::port::{PortOutage, PortSim, PortSimConfig};
use axum::Json;
use axum::routing::post;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;

mod support;

const LOGS: &str = "POST /v1/logs-ingest/{id}";

async fn port() -> PortSim {
    let port = PortSim::start(PortSimConfig {
        integration_config: Some(json!({"resources": []})),
        ..PortSimConfig::default()
    })
    .await
    .expect("port sim");
    port.enable_log_ingest();
    port
}

/// An outbox filled by this test's thread, and its shipper (fast intervals) until the token.
fn ship(
    port: &PortSim,
) -> (
    LogOutbox,
    CancellationToken,
    tracing::subscriber::DefaultGuard,
) {
    let outbox = LogOutbox::new(SHIP_BATCH);
    let guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(outbox.layer()));
    let config = PortSimConfig::default();
    let client = support::port_client(
        &port.base_url(),
        (&config.client_id, &config.client_secret),
        &config.integration_identifier,
        5,
    );
    let stop = CancellationToken::new();
    let shipper = LogShipper::new(client, &config.integration_identifier, outbox.clone())
        .with_intervals(Duration::from_millis(50), Duration::ZERO);
    tokio::spawn(shipper.run(stop.clone()));
    (outbox, stop, guard)
}

fn messages(port: &PortSim) -> Vec<String> {
    port.log_lines()
        .iter()
        .filter_map(|l| l["message"].as_str().map(String::from))
        .collect()
}

async fn until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_failed_shipment_is_lost_later_ones_go_and_a_moved_url_is_followed() {
    let port = port().await;
    let (outbox, stop, _guard) = ship(&port);
    port.fail_next(LOGS, vec![ScriptedAnswer::status(503)]);
    tracing::info!("first");
    until("the failed shipment", || {
        port.requests().get(LOGS).copied() == Some(1)
    })
    .await;
    tracing::info!("second");
    until("the second line", || {
        messages(&port).contains(&"second".into())
    })
    .await;
    let shipped = messages(&port);
    assert!(!shipped.contains(&"first".into()), "{shipped:?}");
    assert!(
        shipped.iter().all(|m| !m.contains("log lines")),
        "the shipper's complaints are local: {shipped:?}"
    );
    assert!(outbox.lost() >= 1);

    // Port moves the log ingest: the old URL fails once, the record names the new one.
    let moved: Arc<Mutex<Vec<Value>>> = Arc::default();
    let url = support::serve(axum::Router::new().route(
        "/logs/moved",
        post({
            let moved = moved.clone();
            move |Json(body): Json<Value>| async move {
                moved
                    .lock()
                    .expect("lock")
                    .extend(body["logs"].as_array().cloned().unwrap_or_default());
                Json(json!({"ok": true}))
            }
        }),
    ))
    .await;
    port.install_integration(json!({"logAttributes": {"ingestUrl": format!("{url}/logs/moved")}}));
    port.fail_next(LOGS, vec![ScriptedAnswer::status(404)]);
    tracing::info!("third");
    until("the old URL's failure", || {
        port.requests().get(LOGS).copied() == Some(3)
    })
    .await;
    tracing::info!("fourth");
    until("the line at the new URL", || {
        moved
            .lock()
            .expect("lock")
            .iter()
            .any(|l| l["message"] == "fourth")
    })
    .await;
    stop.cancel();
}

#[tokio::test]
async fn while_port_is_down_lines_wait_within_the_bound_and_drops_are_counted() {
    let port = port().await;
    let (outbox, stop, _guard) = ship(&port);
    port.set_outage(Some(PortOutage::Unavailable));
    let total = OUTBOX_LINES + 2_000;
    let started = Instant::now();
    for i in 0..total {
        tracing::info!(i, "busy");
    }
    // Logging never waits for Port.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(outbox.len() <= OUTBOX_LINES);
    assert!(outbox.dropped() > 0);
    assert!(outbox.dropped() + outbox.lost() + outbox.len() as u64 >= total as u64);

    port.set_outage(None);
    tracing::info!("after the outage");
    until("the line after the outage", || {
        messages(&port).contains(&"after the outage".into())
    })
    .await;
    stop.cancel();
}
