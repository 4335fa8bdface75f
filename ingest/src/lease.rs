//! The lease on a resync request: how the crawler of a resync holds, on the broker, the proof
//! that it crawls it — for as long as the crawl takes, and not a moment after it lost it.
//!
//! The request's delivery stays unacked while its crawl runs. If the process dies, the broker
//! hands the request to the next crawler (the request queue has a single active consumer),
//! which crawls it again under a new attempt. Two things can take a held delivery away while
//! the crawl still runs:
//!
//! - RabbitMQ's delivery acknowledgement timeout (`consumer_timeout`, 30 min by default;
//!   global in 3.10 — the per-queue `x-consumer-timeout` argument only exists from 3.12) closes
//!   the channel of a delivery unacked for that long and redelivers it. So the lease is renewed
//!   well before (`ADOPORT__INGEST__RESYNC_LEASE_SECS`): a copy of the request is published
//!   (confirmed), then the held delivery acked, and the copy taken back as the new held
//!   delivery. At every moment the request is either held here or queued.
//! - A lost channel or connection: the delivery is back in the queue and may already be with
//!   another crawler. The crawl is cancelled as soon as this process sees it: a watchdog looks
//!   every [`WATCHDOG_EVERY`], and a fence is checked before every page the crawl publishes.
//!
//! A request that arrives during the crawl (seen at a renewal) and is newer than the crawl's
//! start is held as the lease instead: its crawl must follow anyway, and if this process dies
//! it is the one redelivered. Requests older than the crawl's start are covered by it and acked.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::crawl_context::CrawlFence;
use adoport_shared::bus::{Bus, BusError, Delivery, Destination, Outgoing, Subscription};
use adoport_shared::messages::{ResyncId, ResyncRequest, decode, encode};

/// How often the watchdog checks that the request is still held.
pub const WATCHDOG_EVERY: Duration = Duration::from_millis(250);

/// How long a renewal waits for the copy of the request to come back before it concludes that
/// another consumer took over the queue (this consumer's channel was lost meanwhile).
const COPY_PATIENCE: Duration = Duration::from_secs(30);

/// A delivery held as the lease, and the request it carries.
struct Held {
    delivery: Delivery,
    request: ResyncRequest,
    since: Instant,
}

/// How a leased crawl ended.
pub enum LeaseEnd<T> {
    /// The crawl ended. `held` is the delivery held now: the crawled request's (ack it once the
    /// crawl's end is published) or a newer request's (crawl it next); `None` while a renewal's
    /// copy is still on its way (it is skipped as superseded when it arrives).
    Finished {
        outcome: T,
        held: Option<(Delivery, ResyncRequest)>,
    },
    /// The request was taken away while the crawl ran; the crawl was cancelled.
    Lost,
    /// Shutdown: the crawl was stopped and the held delivery left unacked (redelivered).
    Shutdown,
}

/// The lease on the request a crawl runs for.
pub struct Lease {
    crawled: ResyncId,
    started_at: DateTime<Utc>,
    /// The crawl is an incremental run: it covers no full resync request.
    incremental: bool,
    held: Arc<Mutex<Option<Held>>>,
    renew_every: Duration,
    /// The request whose copy a renewal published and waits for, and since when.
    awaiting: Option<(ResyncId, Instant)>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section is a take, a put or a read.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Lease {
    /// Holds `delivery` (of `request`) for a crawl started at `started_at`, renewing it every
    /// `renew_every`.
    pub fn new(
        delivery: Delivery,
        request: ResyncRequest,
        started_at: DateTime<Utc>,
        renew_every: Duration,
    ) -> Self {
        Self {
            crawled: request.resync_id,
            started_at,
            incremental: request.incremental,
            held: Arc::new(Mutex::new(Some(Held {
                delivery,
                request,
                since: Instant::now(),
            }))),
            renew_every,
            awaiting: None,
        }
    }

    /// The fence the crawl checks before publishing a page: false once the held delivery is
    /// lost. (While a renewal's copy is on its way nothing is held, and the watchdog decides.)
    pub fn fence(&self) -> CrawlFence {
        let held = self.held.clone();
        CrawlFence::new(move || lock(&held).as_ref().is_none_or(|h| h.delivery.is_held()))
    }

    /// Runs `crawl` while holding the lease: renews it, takes requests that arrive meanwhile,
    /// and cancels the crawl when the lease is lost or on shutdown.
    pub async fn run<F: Future>(
        mut self,
        bus: &Bus,
        requests: &mut Subscription,
        crawl: F,
        shutdown: &CancellationToken,
    ) -> Result<LeaseEnd<F::Output>, BusError> {
        tokio::pin!(crawl);
        let mut watchdog = tokio::time::interval(WATCHDOG_EVERY);
        watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let renew_at = lock(&self.held)
                .as_ref()
                .map(|h| h.since + self.renew_every);
            let holding = renew_at.is_some();
            let renewal = tokio::time::sleep_until(
                renew_at.unwrap_or_else(|| Instant::now() + self.renew_every),
            );
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(LeaseEnd::Shutdown),
                outcome = &mut crawl => {
                    let held = lock(&self.held).take().map(|h| (h.delivery, h.request));
                    return Ok(LeaseEnd::Finished { outcome, held });
                }
                _ = watchdog.tick() => {
                    if self.lost() {
                        return Ok(LeaseEnd::Lost);
                    }
                }
                _ = renewal, if holding => self.renew(bus).await,
                delivery = requests.next(), if !holding => match delivery {
                    Some(delivery) => self.take(delivery).await?,
                    None => return Ok(LeaseEnd::Shutdown),
                },
            }
        }
    }

    /// Whether the lease is gone: the held delivery's channel closed, or a renewal's copy never
    /// came back (another consumer took over the queue).
    fn lost(&self) -> bool {
        if let Some(held) = lock(&self.held).as_ref() {
            if !held.delivery.is_held() {
                tracing::warn!(
                    resync_id = %self.crawled,
                    "the resync request's delivery was lost (the broker closed its channel: a connection loss, or its consumer timeout); the crawl stops, and the broker hands the request out again"
                );
                return true;
            }
            return false;
        }
        if let Some((resync_id, since)) = self.awaiting
            && since.elapsed() > COPY_PATIENCE
        {
            tracing::warn!(
                resync_id = %self.crawled,
                renewed = %resync_id,
                "the renewed resync request did not come back within {} s (another crawler took over the queue?); the crawl stops",
                COPY_PATIENCE.as_secs()
            );
            return true;
        }
        false
    }

    /// Renews the lease before the broker's consumer timeout: publishes a copy of the held
    /// request (confirmed), then acks the held delivery. The copy comes back through
    /// [`Lease::take`]. A failed publish keeps holding the delivery (the next renewal tries
    /// again; the watchdog sees a lost channel).
    async fn renew(&mut self, bus: &Bus) {
        let Some(held) = lock(&self.held).take() else {
            return;
        };
        let copy = Outgoing::new(Destination::ResyncRequest, encode(&held.request));
        if let Err(e) = bus.publish(copy).await {
            tracing::warn!(resync_id = %held.request.resync_id, error = %e, "could not renew the lease on the resync request; holding it and trying again");
            *lock(&self.held) = Some(Held {
                since: Instant::now(),
                ..held
            });
            return;
        }
        let resync_id = held.request.resync_id;
        if let Err(e) = held.delivery.ack().await {
            // The broker delivers the old one again: it is the same request, held or skipped.
            tracing::warn!(resync_id = %resync_id, error = %e, "could not ack the renewed resync request");
        }
        tracing::debug!(resync_id = %resync_id, "lease on the resync request renewed");
        self.awaiting = Some((resync_id, Instant::now()));
    }

    /// A request delivered while nothing is held (after a renewal).
    async fn take(&mut self, delivery: Delivery) -> Result<(), BusError> {
        let request: ResyncRequest = match decode(&delivery.body) {
            Ok(request) => request,
            Err(e) => {
                tracing::error!(error = %e, "unreadable resync request dead-lettered");
                return settled(delivery.dead_letter(&e.to_string()).await);
            }
        };
        let renewed = self.awaiting.is_some_and(|(id, _)| id == request.resync_id);
        let covered =
            request.requested_at < self.started_at && (request.incremental || !self.incremental);
        if !renewed && covered {
            tracing::info!(resync_id = %request.resync_id, crawling = %self.crawled, "resync request covered by the running crawl; skipped");
            return settled(delivery.ack().await);
        }
        if !renewed {
            tracing::info!(resync_id = %request.resync_id, crawling = %self.crawled, "a newer resync request arrived; it runs after this crawl");
        }
        self.awaiting = None;
        *lock(&self.held) = Some(Held {
            delivery,
            request,
            since: Instant::now(),
        });
        Ok(())
    }
}

/// A request whose channel closed before its ack or dead-letter (a broker restart) is
/// delivered again by the broker: not an error of the loop.
pub(crate) fn settled(outcome: Result<(), BusError>) -> Result<(), BusError> {
    match outcome {
        Err(e @ BusError::DeliveryLost { .. }) => {
            tracing::info!(reason = %e, "resync request not settled; the broker delivers it again");
            Ok(())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adoport_shared::messages::ResyncTrigger;
    use adoport_shared::topology::{Topology, WorkQueue};

    struct Queue {
        bus: Bus,
        requests: Subscription,
    }

    async fn queue() -> Queue {
        let bus = Bus::memory(Topology::new("t.", 1), CancellationToken::new());
        let requests = bus
            .subscribe(WorkQueue::ResyncRequests, 1)
            .await
            .expect("subscribe");
        Queue { bus, requests }
    }

    async fn send(bus: &Bus, request: &ResyncRequest) {
        bus.publish(Outgoing::new(Destination::ResyncRequest, encode(request)))
            .await
            .expect("publish");
    }

    /// Takes the next request off the queue, as the request loop does.
    async fn take(q: &mut Queue) -> (Delivery, ResyncRequest) {
        let delivery = q.requests.next().await.expect("a request");
        let request = decode(&delivery.body).expect("request");
        (delivery, request)
    }

    async fn ready(bus: &Bus) -> u64 {
        bus.ready_count(WorkQueue::ResyncRequests)
            .await
            .expect("count")
    }

    /// Sends a manual request and takes it under a lease of 60 s started at `started_at`.
    async fn leased(q: &mut Queue, started_at: DateTime<Utc>) -> (ResyncRequest, Lease) {
        let request = ResyncRequest::new(ResyncTrigger::Manual);
        send(&q.bus, &request).await;
        let (delivery, taken) = take(q).await;
        let lease = Lease::new(delivery, taken, started_at, Duration::from_secs(60));
        (request, lease)
    }

    /// Runs `lease` over `crawl` (no shutdown): the request it ended holding.
    async fn held_after(q: &mut Queue, lease: Lease, crawl: impl Future) -> ResyncRequest {
        let end = lease
            .run(&q.bus, &mut q.requests, crawl, &CancellationToken::new())
            .await
            .expect("bus");
        match end {
            LeaseEnd::Finished {
                held: Some((_, held)),
                ..
            } => held,
            _ => panic!("the crawl finished holding a request"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_crawl_renews_its_lease_and_ends_holding_its_own_request() {
        let mut q = queue().await;
        let (request, lease) = leased(&mut q, Utc::now()).await;
        // Ten renewals' worth of crawl.
        let crawl = tokio::time::sleep(Duration::from_secs(10 * 60 + 30));
        let held = held_after(&mut q, lease, crawl).await;
        assert_eq!(held.resync_id, request.resync_id);
        assert_eq!(ready(&q.bus).await, 0, "no copy left behind");
    }

    #[tokio::test(start_paused = true)]
    async fn a_newer_request_seen_at_a_renewal_is_held_and_an_older_one_skipped() {
        let mut q = queue().await;
        let started_at = Utc::now();
        let (request, lease) = leased(&mut q, started_at).await;
        let mut older = ResyncRequest::new(ResyncTrigger::Schedule);
        older.requested_at = started_at - chrono::Duration::seconds(1);
        // Requested before the crawl started: covered by it. Requested after: runs next.
        send(&q.bus, &older).await;
        let mut newer = ResyncRequest::new(ResyncTrigger::PortRequest);
        newer.requested_at = started_at + chrono::Duration::seconds(1);
        send(&q.bus, &newer).await;
        let crawl = tokio::time::sleep(Duration::from_secs(90));
        let held = held_after(&mut q, lease, crawl).await;
        assert_eq!(held.resync_id, newer.resync_id, "the newer one is held");
        // The renewal's copy of the crawled request is still queued; the loop skips it as
        // covered by the crawl when it comes.
        assert_eq!(ready(&q.bus).await, 1);
        let (_, copy) = take(&mut q).await;
        assert_eq!(copy.resync_id, request.resync_id);
    }

    #[tokio::test(start_paused = true)]
    async fn an_incremental_run_does_not_cover_an_older_full_resync_request() {
        let mut q = queue().await;
        let started_at = Utc::now();
        let mut incremental = ResyncRequest::new(ResyncTrigger::Manual);
        incremental.incremental = true;
        send(&q.bus, &incremental).await;
        let (delivery, taken) = take(&mut q).await;
        let lease = Lease::new(delivery, taken, started_at, Duration::from_secs(60));
        let mut full = ResyncRequest::new(ResyncTrigger::Schedule);
        full.requested_at = started_at - chrono::Duration::seconds(1);
        send(&q.bus, &full).await;
        let crawl = tokio::time::sleep(Duration::from_secs(90));
        let held = held_after(&mut q, lease, crawl).await;
        assert_eq!(
            held.resync_id, full.resync_id,
            "the full resync runs after the incremental run"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_the_crawl_and_leaves_the_request_unacked() {
        let mut q = queue().await;
        let (_, lease) = leased(&mut q, Utc::now()).await;
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let crawl = async move {
            stop.cancel();
            std::future::pending::<()>().await
        };
        let end = lease
            .run(&q.bus, &mut q.requests, crawl, &shutdown)
            .await
            .expect("bus");
        assert!(matches!(end, LeaseEnd::Shutdown));
    }
}
