//! Resync requests: who asks for a resync, and the one crawler that runs them.
//!
//! Every trigger (start-up, the schedule, `POST /resync`, Port's request) publishes a
//! `ResyncRequest` (the start-up, scheduled and Port ones from the ingest leader only,
//! `crate::leader`). The request queue has a single active consumer, so however many ingest
//! replicas run, one crawls at a time; the others take over if it dies (the unacked request
//! is redelivered and crawled again under a new attempt). A request older than the start of
//! the last crawl is covered by it and skipped.
//!
//! Each crawl:
//! - reads the mapping afresh (the mapping follower is asked to read its source now, as the
//!   Python integration does at every resync) and crawls the kinds and selectors of the
//!   version in force, stamping its raw events and control messages with that version and a
//!   new attempt id;
//! - holds its request as a lease ([`crate::lease`]) for as long as it runs: renewed before
//!   the broker's consumer timeout, and the crawl cancelled when the request is lost;
//! - tells whoever waits (ONCE mode, tests) on a broadcast channel that never blocks: nothing
//!   on this path waits for a reader, so resyncs run for as long as the process does.
//!
//! A request marked `incremental` runs [`crate::incremental`] instead: the incremental kinds
//! since their cursors, with no `Started`/`CrawlFinished` for the reconciliation coordinator,
//! so nothing is deleted.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::crawl_context::{CrawlError, CrawlReport, CrawlStamp};
use crate::crawler::CrawlOrder;
use crate::crawlers::Crawlers;
use crate::incremental::Incremental;
use crate::lease::{Lease, LeaseEnd, settled};
use crate::plan::KindPlan;
use adoport_shared::bus::{Bus, BusError, Delivery, Destination, Outgoing, Subscription};
use adoport_shared::mapping_versions::MappingVersions;
use adoport_shared::messages::{
    AttemptId, KindCrawl, ResyncControl, ResyncId, ResyncRequest, ResyncTrigger, SCHEMA_VERSION,
    decode, encode,
};
use adoport_shared::topology::WorkQueue;

/// Finished crawls kept for a listener that fell behind; older ones are dropped, never waited
/// for.
pub const DONE_KEPT: usize = 16;

/// How long a resync waits for the mapping follower's fresh read of the source before it
/// crawls with the version in force.
const MAPPING_PATIENCE: Duration = Duration::from_secs(20);

/// A finished crawl, for whoever waits on it (`adoport all` in ONCE mode, the demo, tests).
#[derive(Debug, Clone)]
pub struct ResyncDone {
    pub resync_id: ResyncId,
    pub attempt: AttemptId,
    pub started_at: DateTime<Utc>,
    pub report: Result<CrawlReport, String>,
    /// An incremental run: nothing of it is reconciled.
    pub incremental: bool,
}

/// Where finished crawls are announced: a bounded broadcast, so that the crawler never waits
/// for a listener (a listener that falls behind loses the oldest announcements).
pub fn done_channel() -> (
    broadcast::Sender<ResyncDone>,
    broadcast::Receiver<ResyncDone>,
) {
    broadcast::channel(DONE_KEPT)
}

/// Asks for a resync.
pub async fn request(bus: &Bus, trigger: ResyncTrigger) -> Result<ResyncId, BusError> {
    request_as_of(bus, trigger, Utc::now()).await
}

/// Asks for a resync that brings Port up to date as of `at`: a crawl that started after `at`
/// covers it, and it is skipped then.
pub async fn request_as_of(
    bus: &Bus,
    trigger: ResyncTrigger,
    at: DateTime<Utc>,
) -> Result<ResyncId, BusError> {
    send(
        bus,
        ResyncRequest {
            requested_at: at,
            ..ResyncRequest::new(trigger)
        },
    )
    .await
}

/// Asks for an incremental sync (see [`crate::incremental`]).
pub async fn request_incremental(bus: &Bus, trigger: ResyncTrigger) -> Result<ResyncId, BusError> {
    send(
        bus,
        ResyncRequest {
            incremental: true,
            ..ResyncRequest::new(trigger)
        },
    )
    .await
}

async fn send(bus: &Bus, request: ResyncRequest) -> Result<ResyncId, BusError> {
    bus.publish(Outgoing::new(Destination::ResyncRequest, encode(&request)))
        .await?;
    Ok(request.resync_id)
}

/// Publishes a scheduled request every `interval` until shutdown: a plain ticker for tools and
/// tests. A deployment's schedule runs on the ingest leader (`crate::leader`), which keeps its
/// times across failovers.
pub async fn schedule(bus: Bus, interval: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    // A process that was stalled does not make up for missed ticks with a burst of requests.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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

/// What the request loop runs with.
pub struct RequestLoop {
    pub bus: Bus,
    pub crawler: Crawlers,
    /// The mapping versions this process follows: each crawl uses the one in force when it
    /// starts.
    pub mapping: MappingVersions,
    /// Told about every finished crawl.
    pub done: Option<broadcast::Sender<ResyncDone>>,
    /// How often the lease on a request being crawled is renewed (below the broker's
    /// consumer timeout).
    pub renew_every: Duration,
    /// What incremental requests run with (`OCEAN__INTEGRATION__INCREMENTAL_SYNC_ENABLED`);
    /// without it such a request runs as a full resync.
    pub incremental: Option<Incremental>,
}

/// What the loop does after one request.
enum Next {
    /// Take the next request from the queue, or this one (taken during the crawl).
    Request(Option<(Delivery, ResyncRequest)>),
    /// The crawl was cancelled because its request was lost (its channel closed): the broker
    /// delivers that request again, and it must run then, not count as superseded.
    Again,
    Stop,
}

impl RequestLoop {
    /// Consumes resync requests and crawls, one at a time, until shutdown.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), BusError> {
        let mut requests = self.bus.subscribe(WorkQueue::ResyncRequests, 1).await?;
        // When the last full resync and the last incremental run started: a full resync
        // covers older requests of both sorts, an incremental run only older incremental ones.
        let mut last_started: Option<DateTime<Utc>> = None;
        let mut last_incremental: Option<DateTime<Utc>> = None;
        let mut taken: Option<(Delivery, ResyncRequest)> = None;
        loop {
            let (delivery, request) = match taken.take() {
                Some(taken) => taken,
                None => {
                    let delivery = tokio::select! {
                        _ = shutdown.cancelled() => None,
                        delivery = requests.next() => delivery,
                    };
                    let Some(delivery) = delivery else {
                        return Ok(());
                    };
                    match decode::<ResyncRequest>(&delivery.body) {
                        Ok(request) => (delivery, request),
                        Err(e) => {
                            tracing::error!(error = %e, "unreadable resync request dead-lettered");
                            settled(delivery.dead_letter(&e.to_string()).await)?;
                            continue;
                        }
                    }
                }
            };
            let covered_by = |started: Option<DateTime<Utc>>| {
                started.is_some_and(|started| request.requested_at < started)
            };
            if covered_by(last_started) || (request.incremental && covered_by(last_incremental)) {
                tracing::info!(resync_id = %request.resync_id, trigger = ?request.trigger, "resync request superseded by a newer resync; skipped");
                settled(delivery.ack().await)?;
                continue;
            }
            let started_at = Utc::now();
            let last = if request.incremental {
                &mut last_incremental
            } else {
                &mut last_started
            };
            let before = last.replace(started_at);
            let incremental = request.incremental;
            match self
                .crawl(&mut requests, delivery, request, started_at, &shutdown)
                .await?
            {
                Next::Request(next) => taken = next,
                Next::Again if incremental => last_incremental = before,
                Next::Again => last_started = before,
                Next::Stop => return Ok(()),
            }
        }
    }

    /// One crawl of `request`, holding it as a lease.
    async fn crawl(
        &self,
        requests: &mut Subscription,
        delivery: Delivery,
        request: ResyncRequest,
        started_at: DateTime<Utc>,
        shutdown: &CancellationToken,
    ) -> Result<Next, BusError> {
        // The mapping a resync is crawled with is the one in the source when it starts.
        self.mapping.refresh(MAPPING_PATIENCE).await;
        let version = self.mapping.current();
        let plan = KindPlan::for_mapping(&version.config);
        let incremental = match (&self.incremental, request.incremental) {
            (Some(incremental), true) => Some(incremental),
            (None, true) => {
                tracing::warn!(resync_id = %request.resync_id, "an incremental sync was requested but OCEAN__INTEGRATION__INCREMENTAL_SYNC_ENABLED is off here; running a full resync");
                None
            }
            _ => None,
        };
        let stamp = CrawlStamp {
            resync_id: request.resync_id,
            attempt: AttemptId::new(),
            mapping_version: Some(version.id.clone()),
            observed_at: started_at,
        };
        let clock = std::time::Instant::now();
        self.crawler.resync_stats().started();
        tracing::info!(
            resync_id = %stamp.resync_id,
            attempt = %stamp.attempt,
            trigger = ?request.trigger,
            mapping_version = version.number,
            mapping_id = %version.id,
            kinds = ?plan.iter().map(|k| k.kind.as_str()).collect::<Vec<_>>(),
            incremental = incremental.is_some(),
            "resync started"
        );
        // Tell the reconciliation coordinator before any raw event of this crawl exists (an
        // incremental run is never reconciled: the coordinator does not follow it).
        if incremental.is_none() {
            self.publish_control(&ResyncControl::Started {
                v: SCHEMA_VERSION,
                resync_id: stamp.resync_id,
                started_at,
                attempt: Some(stamp.attempt),
                mapping_version: stamp.mapping_version.clone(),
            })
            .await?;
        }
        let resync_id = request.resync_id;
        let lease = Lease::new(delivery, request, started_at, self.renew_every);
        let fence = lease.fence();
        let crawl = async {
            match incremental {
                Some(incremental) => {
                    incremental
                        .run(&self.crawler, &stamp, &fence, &version.config)
                        .await
                }
                None => {
                    let order = CrawlOrder::of(&version.config);
                    self.crawler
                        .crawl_ordered(&stamp, &fence, &plan, order)
                        .await
                }
            }
        };
        let (outcome, held) = match lease.run(&self.bus, requests, crawl, shutdown).await? {
            LeaseEnd::Shutdown => {
                // Unacked: the broker hands the request to the next crawler.
                tracing::info!(resync_id = %resync_id, "resync interrupted by shutdown; it will run again");
                return Ok(Next::Stop);
            }
            LeaseEnd::Lost => return Ok(self.lost(&stamp, clock)),
            LeaseEnd::Finished { outcome, held } => (outcome, held),
        };
        let report = match outcome {
            Ok(report) => {
                tracing::info!(
                    resync_id = %resync_id,
                    attempt = %stamp.attempt,
                    items = report.items(),
                    failed_kinds = ?report.failed_kinds(),
                    seconds = clock.elapsed().as_secs_f64(),
                    "resync crawl finished"
                );
                Ok(report)
            }
            Err(CrawlError::Bus(e)) => return Err(e),
            // Lost between two watchdog checks: the fence stopped the crawl.
            Err(CrawlError::LeaseLost) => return Ok(self.lost(&stamp, clock)),
            Err(e) => {
                tracing::error!(resync_id = %resync_id, error = %e, "resync failed");
                Err(e.to_string())
            }
        };
        self.crawler.resync_stats().finished(
            report
                .as_ref()
                .is_ok_and(|report| report.failed_kinds().is_empty()),
            clock.elapsed(),
        );
        // Every raw event of the crawl is published: the coordinator may reconcile once
        // transform has reported them all.
        if incremental.is_none() {
            self.publish_control(&crawl_finished(&stamp, started_at, &report))
                .await?;
        }
        let next = match held {
            Some((delivery, held)) if held.resync_id == resync_id => {
                settled(delivery.ack().await)?;
                None
            }
            newer => newer,
        };
        if let Some(done) = &self.done {
            // Never waits: without listeners (or with slow ones) the announcement is dropped.
            let _ = done.send(ResyncDone {
                resync_id,
                attempt: stamp.attempt,
                started_at,
                report,
                incremental: incremental.is_some(),
            });
        }
        Ok(Next::Request(next))
    }

    /// The request was taken away mid-crawl: the crawl stopped, the broker hands the request out
    /// again (to this process or another), and that delivery starts a new attempt.
    fn lost(&self, stamp: &CrawlStamp, clock: std::time::Instant) -> Next {
        self.crawler.resync_stats().finished(false, clock.elapsed());
        tracing::warn!(resync_id = %stamp.resync_id, attempt = %stamp.attempt, "resync crawl cancelled: its request was lost; it runs again as a new attempt wherever the broker delivers it");
        Next::Again
    }

    /// Publishes a resync control message to the reconciliation coordinator (confirmed).
    async fn publish_control(&self, message: &ResyncControl) -> Result<(), BusError> {
        self.bus
            .publish(Outgoing::new(Destination::ResyncProgress, encode(message)))
            .await
    }
}

/// The end-of-crawl report for the coordinator: per kind, the raw events it must wait for.
fn crawl_finished(
    stamp: &CrawlStamp,
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
        resync_id: stamp.resync_id,
        started_at,
        attempt: Some(stamp.attempt),
        kinds,
        failure,
    }
}
