//! `PublishStats`: the worker's counters, shared with whoever watches it (the binary's summary,
//! tests, the benchmark). Atomics only; cheap to clone; no entity ids.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use adoport_shared::messages::ResyncId;

use adoport_shared::metrics::{HttpStats, KindCounters, PartitionShare, PublishOutcome};
use tokio::sync::Notify;

#[derive(Default)]
struct Counters {
    /// One total per [`Counter`], at its index.
    totals: [AtomicU64; Counter::COUNT],
    /// Per kind: `received`, `upserted`, `deleted`, `skipped_stale`, `skipped_unchanged`,
    /// `skipped_not_owned`, `dead_lettered`.
    per_kind: KindCounters,
    /// Every HTTP request of the worker's Port client, by status, with latency.
    port_http: HttpStats,
    /// The partitions this replica consumes and the replicas it sees.
    share: PartitionShare,
    /// The same counters per mapping resource for the changes of each of the last few
    /// resyncs, so that a resync's summary (and Port's per-resource sync metrics) can say what
    /// publish did with what each resource produced.
    per_resync: Mutex<VecDeque<(ResyncId, ResyncCounts)>>,
    /// Changes of a resync dead-lettered per consumed partition (the worker's source index),
    /// until that partition passes the resync's barrier (at most [`BARRIER_COUNTS_KEPT`]).
    barrier_dead_letters: Mutex<VecDeque<((usize, ResyncId), u64)>>,
    changed: Notify,
}

/// Per mapping resource (its kind and its index in the mapping's `resources`), per counter
/// (`upserted`, `skipped_stale`, `deleted`, …): what publish did with the changes of one
/// resync. At most one entry per resource of the mapping (and per kind of the changes'
/// origin), so it is bounded by the mapping, not by the entities.
pub type ResyncCounts = BTreeMap<ResourceKey, BTreeMap<&'static str, u64>>;

/// A mapping resource as a change names it: its kind and its index in `resources`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceKey {
    pub kind: String,
    pub index: u32,
}

/// Resyncs whose counts are kept (the running one and a few before it).
const RESYNCS_KEPT: usize = 8;

/// (partition, resync) dead-letter counts kept for barriers not passed yet; the oldest is
/// forgotten past it (a resync superseded before its barriers came, say). Only the count in a
/// resync's summary could be low for it: what was dead-lettered was produced, so it is never
/// deleted anyway.
const BARRIER_COUNTS_KEPT: usize = 1024;

/// A cloneable handle on the worker's counters.
#[derive(Clone, Default)]
pub struct PublishStats {
    inner: Arc<Counters>,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Deliveries taken off the change queues.
    pub received: u64,
    /// Deliveries acked (written, deleted, already held by Port, or skipped as
    /// stale/superseded).
    pub acked: u64,
    /// Entities Port accepted in a bulk upsert.
    pub upserted: u64,
    /// Entities deleted (or already gone).
    pub deleted: u64,
    /// Changes not sent because a newer change of the same entity was taken.
    pub skipped_stale: u64,
    /// Deliveries parked in the dead-letter queue (undecodable, rejected, or out of attempts).
    pub dead_lettered: u64,
    /// Retries of a request after a transient failure.
    pub retried: u64,
    /// HTTP requests that wrote to Port (bulk upserts and deletes, retries included).
    pub port_requests: u64,
    /// HTTP requests that read entities from Port (a resync's reads of the current state of
    /// its entities, a live delete's ownership search; retries included).
    pub port_reads: u64,
    /// Resync upserts compared with Port's current state of their entity.
    pub compared: u64,
    /// Resync upserts acked without a write: Port already holds exactly what they would write.
    pub skipped_unchanged: u64,
    /// Live deletes acked without deleting: the entity is missing or not ours in Port.
    pub skipped_not_owned: u64,
    /// Live write batches sent, by why they closed ([`crate::worker`]).
    pub batches: BatchesSent,
}

/// Live write batches (one bulk request each) sent, by why they closed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchesSent {
    /// At once: no request of the batch's key (blueprint and query) was in flight.
    pub idle: u64,
    /// Full: 20 entities, or the next entity would not fit the body.
    pub full: u64,
    /// The request of its key in flight ended: the batch holds what came meanwhile.
    pub after_request: u64,
    /// Its linger ran out while a request of its key was still in flight (or, with
    /// `ADOPORT__PUBLISH__SEND_WHEN_IDLE=false`, at all).
    pub linger: u64,
    /// Every partition held its prefetch with nothing in flight, or shutdown.
    pub held: u64,
}

/// Why a live write batch closed (a [`BatchesSent`] counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchClose {
    Idle,
    Full,
    AfterRequest,
    Linger,
    Held,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Counter {
    Received,
    Acked,
    Upserted,
    Deleted,
    SkippedStale,
    DeadLettered,
    Retried,
    PortRequests,
    PortReads,
    Compared,
    SkippedUnchanged,
    SkippedNotOwned,
    BatchesIdle,
    BatchesFull,
    BatchesAfterRequest,
    BatchesLinger,
    BatchesHeld,
}

impl Counter {
    /// How many there are: one past the last variant (keep it last).
    const COUNT: usize = Counter::BatchesHeld as usize + 1;
}

impl From<BatchClose> for Counter {
    fn from(close: BatchClose) -> Self {
        match close {
            BatchClose::Idle => Counter::BatchesIdle,
            BatchClose::Full => Counter::BatchesFull,
            BatchClose::AfterRequest => Counter::BatchesAfterRequest,
            BatchClose::Linger => Counter::BatchesLinger,
            BatchClose::Held => Counter::BatchesHeld,
        }
    }
}

impl PublishStats {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counters whose Port request figures are `port_http` (the worker client's).
    pub(crate) fn with_port_http(port_http: HttpStats) -> Self {
        Self {
            inner: Arc::new(Counters {
                port_http,
                ..Counters::default()
            }),
        }
    }

    pub(crate) fn add(&self, counter: Counter, n: u64) {
        let c = &self.inner;
        c.totals[counter as usize].fetch_add(n, Ordering::Relaxed);
        c.changed.notify_waiters();
    }

    pub(crate) fn incr(&self, counter: Counter) {
        self.add(counter, 1);
    }

    /// Counts `outcome` for a change of `kind` made by mapping resource `resource` (the
    /// per-kind counters, and the resync's per-resource counts when it came from one).
    pub(crate) fn per_kind_incr(
        &self,
        kind: &str,
        resource: u32,
        outcome: PublishOutcome,
        resync: Option<ResyncId>,
    ) {
        let what = outcome.as_str();
        self.inner.per_kind.add(kind, what, 1);
        if let Some(resync_id) = resync {
            let mut all = self
                .inner
                .per_resync
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let index = match all.iter().position(|(id, _)| *id == resync_id) {
                Some(index) => index,
                None => {
                    if all.len() == RESYNCS_KEPT {
                        all.pop_front();
                    }
                    all.push_back((resync_id, ResyncCounts::new()));
                    all.len() - 1
                }
            };
            let key = ResourceKey {
                kind: kind.to_string(),
                index: resource,
            };
            *all[index]
                .1
                .entry(key)
                .or_default()
                .entry(what)
                .or_default() += 1;
            drop(all);
            self.inner.changed.notify_waiters();
        }
    }

    /// What this process's publish did, per mapping resource, with the changes of one resync
    /// (empty when it handled none, or the resync is too old to be kept).
    pub fn resync_counts(&self, resync_id: ResyncId) -> ResyncCounts {
        let all = self
            .inner
            .per_resync
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        all.iter()
            .find(|(id, _)| *id == resync_id)
            .map(|(_, counts)| counts.clone())
            .unwrap_or_default()
    }

    /// A change of `resync` from the worker's `source` was dead-lettered (for the barrier
    /// that source passes next).
    pub(crate) fn barrier_dead_letter(&self, source: usize, resync: Option<ResyncId>) {
        let Some(resync_id) = resync else {
            return;
        };
        let mut all = self
            .inner
            .barrier_dead_letters
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match all.iter_mut().find(|(key, _)| *key == (source, resync_id)) {
            Some((_, n)) => *n += 1,
            None => {
                if all.len() == BARRIER_COUNTS_KEPT {
                    all.pop_front();
                }
                all.push_back(((source, resync_id), 1));
            }
        }
    }

    /// The dead letters of `resync` counted for `source`, forgotten as they are taken (its
    /// barrier passed).
    pub(crate) fn take_barrier_dead_letters(&self, source: usize, resync_id: ResyncId) -> u64 {
        let mut all = self
            .inner
            .barrier_dead_letters
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let index = all.iter().position(|(key, _)| *key == (source, resync_id));
        index.and_then(|i| all.remove(i)).map_or(0, |(_, n)| n)
    }

    /// Forgets the dead-letter counts of a source no longer consumed.
    pub(crate) fn forget_barrier_source(&self, source: usize) {
        self.inner
            .barrier_dead_letters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|((s, _), _)| *s != source);
    }

    /// The partitions this replica consumes and the publish replicas it sees (`/metrics`).
    pub fn share(&self) -> &PartitionShare {
        &self.inner.share
    }

    /// Per-kind counters: `received` (decoded changes taken), `upserted`, `deleted`,
    /// `skipped_stale`, `skipped_unchanged`, `skipped_not_owned`, `dead_lettered`.
    pub fn per_kind(&self) -> &KindCounters {
        &self.inner.per_kind
    }

    /// Port requests by status and their latency; the worker's [`crate::PortClient`] records
    /// into it.
    pub fn port_http(&self) -> &HttpStats {
        &self.inner.port_http
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |counter: Counter| self.inner.totals[counter as usize].load(Ordering::Relaxed);
        StatsSnapshot {
            received: get(Counter::Received),
            acked: get(Counter::Acked),
            upserted: get(Counter::Upserted),
            deleted: get(Counter::Deleted),
            skipped_stale: get(Counter::SkippedStale),
            dead_lettered: get(Counter::DeadLettered),
            retried: get(Counter::Retried),
            port_requests: get(Counter::PortRequests),
            port_reads: get(Counter::PortReads),
            compared: get(Counter::Compared),
            skipped_unchanged: get(Counter::SkippedUnchanged),
            skipped_not_owned: get(Counter::SkippedNotOwned),
            batches: BatchesSent {
                idle: get(Counter::BatchesIdle),
                full: get(Counter::BatchesFull),
                after_request: get(Counter::BatchesAfterRequest),
                linger: get(Counter::BatchesLinger),
                held: get(Counter::BatchesHeld),
            },
        }
    }

    /// Waits until `condition` holds for the counters (wrap it in a timeout).
    pub async fn wait_until(&self, condition: impl Fn(&StatsSnapshot) -> bool) {
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if condition(&self.snapshot()) {
                return;
            }
            changed.await;
        }
    }
}

impl std::fmt::Debug for PublishStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.snapshot().fmt(f)
    }
}
