//! Counters the stages keep for the `/metrics` endpoint: per-kind counters, HTTP requests by
//! status with a latency histogram, and resync progress.
//!
//! They are cheap to update (a short mutex on a small map, or atomics), cheap to clone (an
//! `Arc`), and their label values stay bounded: kinds (capped at [`MAX_KINDS`]), HTTP status
//! codes, fixed buckets. Never an entity id or an item id. Rendering to Prometheus text is the
//! binary's job (`cli/src/health.rs`); this module only counts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Most distinct kinds counted; any further kind is counted as [`OTHER_KIND`] (mappings have a
/// dozen kinds at most, so this only guards against a bug feeding ids in as kinds).
pub const MAX_KINDS: usize = 64;
/// The label counted for kinds past [`MAX_KINDS`].
pub const OTHER_KIND: &str = "other";

/// Upper bounds (seconds) of the request latency histogram's buckets (`+Inf` is implied).
pub const LATENCY_BUCKETS: [f64; 8] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// What became of a change publish settled, per kind: produced by publish, rendered on
/// `/metrics` and summed into a resync's summary. [`PublishOutcome::as_str`] is the label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishOutcome {
    /// A change taken off the queue (`adoport_messages_in_by_kind_total`).
    Received,
    Upserted,
    Deleted,
    /// An older change of an entity a newer one superseded.
    SkippedStale,
    /// A resync upsert Port already held exactly.
    SkippedUnchanged,
    /// A live delete of an entity this integration does not own.
    SkippedNotOwned,
    DeadLettered,
}

impl PublishOutcome {
    pub const ALL: [PublishOutcome; 7] = [
        PublishOutcome::Received,
        PublishOutcome::Upserted,
        PublishOutcome::Deleted,
        PublishOutcome::SkippedStale,
        PublishOutcome::SkippedUnchanged,
        PublishOutcome::SkippedNotOwned,
        PublishOutcome::DeadLettered,
    ];

    /// The metric label (and counter name in [`KindCounters`]).
    pub const fn as_str(self) -> &'static str {
        match self {
            PublishOutcome::Received => "received",
            PublishOutcome::Upserted => "upserted",
            PublishOutcome::Deleted => "deleted",
            PublishOutcome::SkippedStale => "skipped_stale",
            PublishOutcome::SkippedUnchanged => "skipped_unchanged",
            PublishOutcome::SkippedNotOwned => "skipped_not_owned",
            PublishOutcome::DeadLettered => "dead_lettered",
        }
    }

    /// The outcome a counter name stands for.
    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == label)
    }

    /// Whether the change was written to Port (it counts as a message out).
    pub fn is_written(self) -> bool {
        matches!(self, PublishOutcome::Upserted | PublishOutcome::Deleted)
    }

    /// Whether the change was settled without a write (summed as `skipped`).
    pub fn is_skipped(self) -> bool {
        matches!(
            self,
            PublishOutcome::SkippedStale
                | PublishOutcome::SkippedUnchanged
                | PublishOutcome::SkippedNotOwned
        )
    }
}

/// Named counters per kind, e.g. `("repository", "upserted") → 12`.
#[derive(Debug, Clone, Default)]
pub struct KindCounters {
    inner: Arc<Mutex<BTreeMap<String, BTreeMap<&'static str, u64>>>>,
}

impl KindCounters {
    /// Adds `n` to counter `what` of `kind`.
    pub fn add(&self, kind: &str, what: &'static str, n: u64) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let key = if map.contains_key(kind) || map.len() < MAX_KINDS {
            kind
        } else {
            OTHER_KIND
        };
        if let Some(counters) = map.get_mut(key) {
            *counters.entry(what).or_default() += n;
        } else {
            map.insert(key.to_string(), BTreeMap::from([(what, n)]));
        }
    }

    /// Counter `what` of `kind` (0 when never counted).
    pub fn get(&self, kind: &str, what: &str) -> u64 {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.get(kind)
            .and_then(|c| c.get(what))
            .copied()
            .unwrap_or(0)
    }

    /// Every `(kind, counter, value)`, sorted by kind then counter.
    pub fn snapshot(&self) -> Vec<(String, &'static str, u64)> {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .flat_map(|(kind, counters)| {
                counters
                    .iter()
                    .map(move |(what, n)| (kind.clone(), *what, *n))
            })
            .collect()
    }
}

/// A latency histogram with the fixed [`LATENCY_BUCKETS`].
#[derive(Debug, Default)]
struct Histogram {
    /// Non-cumulative counts per bucket; the last one is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// A histogram at one moment, in Prometheus's cumulative form.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, observations at or under it)`, cumulative, without `+Inf`
    /// (whose count is [`HistogramSnapshot::count`]).
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

/// HTTP requests to one upstream, by status code (or transport error), with their latency.
#[derive(Debug, Clone, Default)]
pub struct HttpStats {
    inner: Arc<HttpInner>,
}

#[derive(Debug, Default)]
struct HttpInner {
    /// Status code (`"200"`, `"429"`, …) or [`TRANSPORT_ERROR`] → requests.
    by_status: Mutex<BTreeMap<String, u64>>,
    latency: Histogram,
}

/// The status label of a request that got no HTTP answer (connect error, timeout, reset).
pub const TRANSPORT_ERROR: &str = "transport_error";

impl HttpStats {
    /// Records one request: its HTTP status (`None` for a transport error) and how long it took
    /// until the answer's head (or the error).
    pub fn record(&self, status: Option<u16>, elapsed: Duration) {
        let label = status.map_or_else(|| TRANSPORT_ERROR.to_string(), |s| s.to_string());
        {
            let mut map = self
                .inner
                .by_status
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            *map.entry(label).or_default() += 1;
        }
        let seconds = elapsed.as_secs_f64();
        let h = &self.inner.latency;
        let index = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        h.buckets[index].fetch_add(1, Ordering::Relaxed);
        h.count.fetch_add(1, Ordering::Relaxed);
        h.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Requests per status label, sorted.
    pub fn by_status(&self) -> Vec<(String, u64)> {
        let map = self
            .inner
            .by_status
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Requests recorded in total.
    pub fn requests(&self) -> u64 {
        self.inner.latency.count.load(Ordering::Relaxed)
    }

    /// The latency histogram, cumulative.
    pub fn latency(&self) -> HistogramSnapshot {
        let h = &self.inner.latency;
        let mut running = 0;
        let buckets = LATENCY_BUCKETS
            .iter()
            .zip(&h.buckets)
            .map(|(bound, n)| {
                running += n.load(Ordering::Relaxed);
                (*bound, running)
            })
            .collect();
        HistogramSnapshot {
            buckets,
            count: h.count.load(Ordering::Relaxed),
            sum_seconds: h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// Resync progress as the crawling process sees it.
#[derive(Debug, Clone, Default)]
pub struct ResyncStats {
    inner: Arc<ResyncInner>,
}

#[derive(Debug, Default)]
struct ResyncInner {
    started: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    running: AtomicU64,
    last_duration_millis: AtomicU64,
    /// Items crawled per kind: the running resync's so far, else the last one's.
    items: Mutex<BTreeMap<String, u64>>,
}

/// Resync figures at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResyncSnapshot {
    pub started: u64,
    pub completed: u64,
    pub failed: u64,
    /// 1 while a resync crawls.
    pub running: u64,
    /// Duration of the last finished crawl (0 before the first).
    pub last_duration_seconds: f64,
    /// Items crawled per kind by the running resync so far, or else by the last one.
    pub items_per_kind: BTreeMap<String, u64>,
}

impl ResyncStats {
    /// A resync starts: per-kind items start again from zero.
    pub fn started(&self) {
        let r = &self.inner;
        r.started.fetch_add(1, Ordering::Relaxed);
        r.running.store(1, Ordering::Relaxed);
        r.items.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// `n` more items of `kind` crawled by the running resync.
    pub fn crawled(&self, kind: &str, n: u64) {
        let mut items = self.inner.items.lock().unwrap_or_else(|p| p.into_inner());
        if items.contains_key(kind) || items.len() < MAX_KINDS {
            *items.entry(kind.to_string()).or_default() += n;
        }
    }

    /// The running resync's crawl ended (`ok`: without a failed kind) after `elapsed`.
    pub fn finished(&self, ok: bool, elapsed: Duration) {
        let r = &self.inner;
        if ok {
            r.completed.fetch_add(1, Ordering::Relaxed);
        } else {
            r.failed.fetch_add(1, Ordering::Relaxed);
        }
        r.running.store(0, Ordering::Relaxed);
        r.last_duration_millis
            .store(elapsed.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ResyncSnapshot {
        let r = &self.inner;
        ResyncSnapshot {
            started: r.started.load(Ordering::Relaxed),
            completed: r.completed.load(Ordering::Relaxed),
            failed: r.failed.load(Ordering::Relaxed),
            running: r.running.load(Ordering::Relaxed),
            last_duration_seconds: r.last_duration_millis.load(Ordering::Relaxed) as f64 / 1000.0,
            items_per_kind: r.items.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

/// Gauge: change partitions this publish replica consumes now (its share under its view of
/// the replicas, or the pinned list).
pub const PUBLISH_PARTITIONS: &str = "adoport_publish_partitions";
/// Gauge: publish replicas in this replica's view, itself included (1 when pinned or alone).
pub const PUBLISH_MEMBERS: &str = "adoport_publish_members";
/// Counter: changes of this replica's share of the partitions.
pub const PUBLISH_ASSIGNMENT_CHANGES: &str = "adoport_publish_assignment_changes_total";

/// How a publish replica shares the change partitions with the others, for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct PartitionShare {
    inner: Arc<ShareInner>,
}

#[derive(Debug, Default)]
struct ShareInner {
    partitions: AtomicU64,
    members: AtomicU64,
    changes: AtomicU64,
}

/// A [`PartitionShare`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShareSnapshot {
    pub partitions: u64,
    pub members: u64,
    pub changes: u64,
}

impl PartitionShare {
    /// The replica consumes `partitions` partitions now.
    pub fn set_partitions(&self, partitions: usize) {
        self.inner
            .partitions
            .store(partitions as u64, Ordering::Relaxed);
    }

    /// The replica's view holds `members` replicas.
    pub fn set_members(&self, members: usize) {
        self.inner.members.store(members as u64, Ordering::Relaxed);
    }

    /// The replica's share changed.
    pub fn changed(&self) {
        self.inner.changes.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ShareSnapshot {
        let s = &self.inner;
        ShareSnapshot {
            partitions: s.partitions.load(Ordering::Relaxed),
            members: s.members.load(Ordering::Relaxed),
            changes: s.changes.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_outcomes_keep_their_labels_and_read_back() {
        let labels: Vec<&str> = PublishOutcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(
            labels,
            [
                "received",
                "upserted",
                "deleted",
                "skipped_stale",
                "skipped_unchanged",
                "skipped_not_owned",
                "dead_lettered"
            ]
        );
        for outcome in PublishOutcome::ALL {
            assert_eq!(PublishOutcome::from_label(outcome.as_str()), Some(outcome));
        }
        assert_eq!(PublishOutcome::from_label("events"), None);
    }

    #[test]
    fn kind_counters_add_up_and_cap_the_number_of_kinds() {
        let counters = KindCounters::default();
        counters.add("repository", "upserted", 2);
        counters.add("repository", "upserted", 3);
        counters.add("project", "deleted", 1);
        assert_eq!(counters.get("repository", "upserted"), 5);
        assert_eq!(counters.get("project", "deleted"), 1);
        assert_eq!(counters.get("project", "upserted"), 0);
        for i in 0..(MAX_KINDS * 2) {
            counters.add(&format!("kind{i}"), "in", 1);
        }
        let kinds: std::collections::BTreeSet<String> =
            counters.snapshot().into_iter().map(|(k, _, _)| k).collect();
        assert_eq!(kinds.len(), MAX_KINDS + 1, "capped, plus `other`");
        assert!(counters.get(OTHER_KIND, "in") > 0);
    }

    #[test]
    fn http_stats_count_statuses_and_bucket_latencies() {
        let stats = HttpStats::default();
        stats.record(Some(200), Duration::from_millis(10));
        stats.record(Some(200), Duration::from_millis(300));
        stats.record(Some(429), Duration::from_secs(3));
        stats.record(None, Duration::from_secs(20));
        assert_eq!(
            stats.by_status(),
            vec![
                ("200".to_string(), 2),
                ("429".to_string(), 1),
                (TRANSPORT_ERROR.to_string(), 1)
            ]
        );
        let latency = stats.latency();
        assert_eq!(latency.count, 4);
        assert_eq!(latency.buckets[0], (0.05, 1));
        assert_eq!(latency.buckets[3], (0.5, 2));
        assert_eq!(latency.buckets[6], (5.0, 3));
        assert_eq!(latency.buckets[7], (10.0, 3), "20 s is only in +Inf");
        assert!((latency.sum_seconds - 23.31).abs() < 1e-6);
    }

    #[test]
    fn resync_stats_track_the_running_and_the_last_resync() {
        let stats = ResyncStats::default();
        stats.started();
        stats.crawled("project", 2);
        stats.crawled("project", 1);
        let running = stats.snapshot();
        assert_eq!((running.started, running.running), (1, 1));
        assert_eq!(running.items_per_kind["project"], 3);
        stats.finished(true, Duration::from_millis(1500));
        stats.started();
        stats.finished(false, Duration::from_millis(250));
        let done = stats.snapshot();
        assert_eq!((done.started, done.completed, done.failed), (2, 1, 1));
        assert_eq!(done.running, 0);
        assert!((done.last_duration_seconds - 0.25).abs() < 1e-9);
        assert!(
            done.items_per_kind.is_empty(),
            "a new resync starts from zero"
        );
    }
}
