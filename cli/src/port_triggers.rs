//! POLLING mode: Port asks for a resync by moving the integration's resync request
//! (`GET /v1/integration/{identifier}/resync-request` → `{request: {updatedAt}}`, e.g. when a
//! user saves the mapping or clicks "Resync"); ingest turns each newer request into a
//! `ResyncRequest` on the bus, as the Python integration's polling listener does.

use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::port_reader::PortReader;
use adoport_shared::bus::Bus;
use adoport_shared::messages::ResyncTrigger;

/// The request's `updatedAt`, as Port sends it (compared as text: ISO 8601 sorts by time).
async fn requested_at(port: &PortReader) -> anyhow::Result<Option<String>> {
    let identifier = port.integration().to_string();
    let body = port
        .get(&["integration", &identifier, "resync-request"])
        .await?;
    Ok(body
        .as_ref()
        .and_then(|b| b.pointer("/request/updatedAt"))
        .and_then(Value::as_str)
        .map(String::from))
}

/// Checks Port every `every` until shutdown; a request newer than the one seen at start-up (or
/// than the last one acted on) becomes a resync. Failures are logged and retried at the next
/// check: Port being away for a while must not stop the integration.
pub async fn poll_resync_requests(
    port: PortReader,
    bus: Bus,
    every: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut seen = match requested_at(&port).await {
        Ok(at) => at,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read Port's resync request yet; will try again");
            None
        }
    };
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = ticker.tick() => {}
        }
        match requested_at(&port).await {
            Ok(Some(at)) if seen.as_ref().is_none_or(|previous| at > *previous) => {
                match adoport_ingest::resync::request(&bus, ResyncTrigger::PortRequest).await {
                    Ok(id) => {
                        tracing::info!(resync_id = %id, requested_at = %at, "Port asked for a resync");
                        seen = Some(at);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot queue Port's resync request; will try again")
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot read Port's resync request; will try again")
            }
        }
    }
}
