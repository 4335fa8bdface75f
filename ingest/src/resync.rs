//! Resync requests: who asks for a resync, and the one crawler that runs them.
//!
//! Every trigger (start-up, the schedule, `POST /resync`) publishes a `ResyncRequest`. The
//! request queue has a single active consumer, so however many ingest replicas run, one
//! crawls at a time; the others take over if it dies (the unacked request is redelivered).
//! A request older than the start of the last resync is superseded and skipped.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::crawler::{CrawlError, CrawlReport, KindPlan};
use crate::crawlers::Crawlers;
use adoport_shared::bus::{Bus, BusError, Destination, Outgoing};
use adoport_shared::messages::{
    KindCrawl, ResyncControl, ResyncId, ResyncRequest, ResyncTrigger, SCHEMA_VERSION, decode,
    encode,
};
use adoport_shared::topology::WorkQueue;

/// A finished crawl, for whoever waits on it (`adoport all` in ONCE mode, the demo, tests).
#[derive(Debug, Clone)]
pub struct ResyncDone {
    pub resync_id: ResyncId,
    pub started_at: DateTime<Utc>,
    pub report: Result<CrawlReport, String>,
}

/// Asks for a resync.
pub async fn request(bus: &Bus, trigger: ResyncTrigger) -> Result<ResyncId, BusError> {
    let request = ResyncRequest::new(trigger);
    bus.publish(Outgoing::new(Destination::ResyncRequest, encode(&request)))
        .await?;
    Ok(request.resync_id)
}

/// Publishes a scheduled request every `interval` until shutdown.
pub async fn schedule(bus: Bus, interval: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await; // the first tick is immediate; start-up has its own request
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if let Err(e) = request(&bus, ResyncTrigger::Schedule).await {
            tracing::warn!(error = %e, "could not request the scheduled resync; trying at the next tick");
        }
    }
}

/// Consumes resync requests and crawls, one at a time, until shutdown.
pub async fn run_requests(
    bus: Bus,
    crawler: Crawlers,
    plan: Vec<KindPlan>,
    done: Option<mpsc::Sender<ResyncDone>>,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    let mut requests = bus.subscribe(WorkQueue::ResyncRequests, 1).await?;
    let mut last_started: Option<DateTime<Utc>> = None;
    while let Some(delivery) = requests.next().await {
        let request: ResyncRequest = match decode(&delivery.body) {
            Ok(request) => request,
            Err(e) => {
                tracing::error!(error = %e, "unreadable resync request dead-lettered");
                settled(delivery.dead_letter(&e.to_string()).await)?;
                continue;
            }
        };
        if last_started.is_some_and(|started| request.requested_at < started) {
            tracing::info!(resync_id = %request.resync_id, trigger = ?request.trigger, "resync request superseded by a newer resync; skipped");
            settled(delivery.ack().await)?;
            continue;
        }
        let started_at = Utc::now();
        last_started = Some(started_at);
        let clock = std::time::Instant::now();
        crawler.resync_stats().started();
        tracing::info!(resync_id = %request.resync_id, trigger = ?request.trigger, "resync started");
        // Tell the reconciliation coordinator before any raw event of this resync exists.
        publish_control(
            &bus,
            &ResyncControl::Started {
                v: SCHEMA_VERSION,
                resync_id: request.resync_id,
                started_at,
            },
        )
        .await?;
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => {
                // Unacked: the broker hands the request to the next crawler.
                tracing::info!(resync_id = %request.resync_id, "resync interrupted by shutdown; it will run again");
                return Ok(());
            }
            outcome = crawler.crawl(request.resync_id, &plan) => outcome,
        };
        crawler.resync_stats().finished(
            outcome
                .as_ref()
                .is_ok_and(|report| report.failed_kinds().is_empty()),
            clock.elapsed(),
        );
        let report = match outcome {
            Ok(report) => {
                tracing::info!(
                    resync_id = %request.resync_id,
                    items = report.items(),
                    failed_kinds = ?report.failed_kinds(),
                    seconds = (Utc::now() - started_at).num_milliseconds() as f64 / 1000.0,
                    "resync crawl finished"
                );
                Ok(report)
            }
            Err(CrawlError::Bus(e)) => return Err(e),
            Err(e) => {
                tracing::error!(resync_id = %request.resync_id, error = %e, "resync failed");
                Err(e.to_string())
            }
        };
        // Every raw event of the resync is published: the coordinator may reconcile once
        // transform has reported them all.
        publish_control(
            &bus,
            &crawl_finished(request.resync_id, started_at, &report),
        )
        .await?;
        settled(delivery.ack().await)?;
        if let Some(done) = &done {
            let _ = done
                .send(ResyncDone {
                    resync_id: request.resync_id,
                    started_at,
                    report,
                })
                .await;
        }
    }
    Ok(())
}

/// A request whose channel closed before its ack (a broker restart mid-crawl) is delivered
/// again and then skipped as superseded: not an error of the loop.
fn settled(outcome: Result<(), BusError>) -> Result<(), BusError> {
    match outcome {
        Err(e @ BusError::DeliveryLost { .. }) => {
            tracing::info!(reason = %e, "resync request not acked; it comes again and is skipped");
            Ok(())
        }
        other => other,
    }
}

/// Publishes a resync control message to the reconciliation coordinator (confirmed).
async fn publish_control(bus: &Bus, message: &ResyncControl) -> Result<(), BusError> {
    bus.publish(Outgoing::new(Destination::ResyncProgress, encode(message)))
        .await
}

/// The end-of-crawl report for the coordinator: per kind, the raw events it must wait for.
fn crawl_finished(
    resync_id: ResyncId,
    started_at: DateTime<Utc>,
    report: &Result<CrawlReport, String>,
) -> ResyncControl {
    let (kinds, failure) = match report {
        Ok(report) => (
            report
                .kinds
                .iter()
                .map(|(kind, k)| {
                    (
                        kind.clone(),
                        KindCrawl {
                            events: k.events,
                            items: k.items,
                            failure: k.failure.clone(),
                        },
                    )
                })
                .collect(),
            None,
        ),
        Err(e) => (Default::default(), Some(e.clone())),
    };
    ResyncControl::CrawlFinished {
        v: SCHEMA_VERSION,
        resync_id,
        started_at,
        kinds,
        failure,
    }
}
