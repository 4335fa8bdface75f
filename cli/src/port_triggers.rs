//! POLLING mode: Port asks for a resync by moving the integration's resync request
//! (`GET /v1/integration/{identifier}/resync-request` → `{request: {updatedAt}}`, e.g. when a
//! user saves the mapping or clicks "Resync"); ingest turns each newer request into a
//! `ResyncRequest` on the bus, as the Python integration's polling listener does.
//!
//! Only the ingest leader polls (one [`poll_resync_requests`] per term,
//! `adoport_ingest::leader`): replicas that each polled would each turn one click into a resync.
//! The last request acted on is kept in the leaders' record, so a new leader neither repeats
//! it nor misses one that came while no replica led.

use std::time::Duration;

use crate::port_reader::PortReader;
use adoport_ingest::leader::Term;
use adoport_shared::bus::{Bus, BusError};
use adoport_shared::messages::ResyncTrigger;
use serde_json::Value;

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

/// Checks Port every `every` until the term ends; a request newer than the last one acted on
/// (the leaders' record), or — when no leader ever saw one — than the one seen when the term
/// starts, becomes a resync. The request is published before the record says it was acted on:
/// a leader that dies in between has its successor ask again (a repeated resync is harmless; a
/// lost click is not). Failures are logged and retried at the next check: Port being away for
/// a while must not stop the integration.
pub async fn poll_resync_requests(port: PortReader, bus: Bus, every: Duration, term: Term) {
    let mut seen = match term.record().await.port_request_seen {
        Some(seen) => Some(seen),
        None => match term.during(requested_at(&port)).await {
            None => return,
            Some(Ok(at)) => {
                // Kept for the next leader: a click while none leads is then not missed.
                let baseline = at.clone();
                match term.update(|r| r.port_request_seen = baseline).await {
                    None => return,
                    Some(Ok(())) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "could not record Port's resync request seen at start")
                    }
                }
                at
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "cannot read Port's resync request yet; will try again");
                None
            }
        },
    };
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        if term.during(ticker.tick()).await.is_none() {
            return;
        }
        let Some(read) = term.during(requested_at(&port)).await else {
            return;
        };
        match read {
            Ok(Some(at)) if seen.as_ref().is_none_or(|previous| at > *previous) => {
                let requested = term
                    .during(adoport_ingest::resync::request(
                        &bus,
                        ResyncTrigger::PortRequest,
                    ))
                    .await;
                match requested {
                    None | Some(Err(BusError::ShuttingDown)) => return,
                    Some(Ok(id)) => {
                        tracing::info!(resync_id = %id, requested_at = %at, "Port asked for a resync");
                        let acted_on = at.clone();
                        match term.update(|r| r.port_request_seen = Some(acted_on)).await {
                            None => return,
                            Some(Ok(())) => {}
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "could not record Port's resync request as done; the next leader may ask again")
                            }
                        }
                        seen = Some(at);
                    }
                    Some(Err(e)) => {
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
