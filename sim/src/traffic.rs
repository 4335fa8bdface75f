//! Request accounting shared by both simulators: a count per route template, the queue of
//! scripted answers per route template, and a change signal that every answered request bumps
//! (so tests await conditions instead of sleeping).
//!
//! It also keeps the number of requests being answered at once and its peak since the last
//! reset, so tests can check how many requests a client keeps in flight, and the requests being
//! answered now per route template, so tests can await several kinds of reads under way at
//! once (a request's start and end both signal the change).
//!
//! The query parameters of the latest requests are kept too ([`Traffic::record_query`], at most
//! [`QUERIES_KEPT`]), so tests can assert what a client asked for.
//!
//! A route template key is the method and axum's matched path, e.g.
//! `"GET /{org}/_apis/projects"`; requests that match no route count as `"GET <unmatched>"`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::MatchedPath;
use axum::http::Method;
use tokio::sync::watch;

use crate::scripted::ScriptedAnswer;

/// Locks a std mutex, recovering the data if a panicking holder poisoned it (a test that
/// panicked must not make every later assertion panic too).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The key of a request in the counts and scripts: `"{METHOD} {template}"`.
pub(crate) fn route_key(method: &Method, matched: Option<&MatchedPath>) -> String {
    let template = matched.map_or("<unmatched>", MatchedPath::as_str);
    format!(
        "{method} {}",
        template.replace("pullRequests", "pullrequests")
    )
}

/// Requests whose query parameters are kept (the oldest are dropped first).
pub(crate) const QUERIES_KEPT: usize = 20_000;

/// A request's query parameters by name.
pub type QueryParams = BTreeMap<String, String>;

#[derive(Debug)]
pub(crate) struct Traffic {
    counts: Mutex<BTreeMap<String, u64>>,
    queries: Mutex<VecDeque<(String, QueryParams)>>,
    total: AtomicU64,
    scripts: Mutex<HashMap<String, VecDeque<ScriptedAnswer>>>,
    changed: watch::Sender<u64>,
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
    /// Requests being answered now per route template key (keys with none are removed).
    in_flight_routes: Mutex<BTreeMap<String, u64>>,
    /// The round of the latest-round request answered so far (see [`Traffic::rounds`]).
    answered_round: AtomicU64,
}

/// A request's round (see [`Traffic::rounds`]), counted as answered when dropped.
#[derive(Debug)]
pub(crate) struct Round<'a> {
    traffic: &'a Traffic,
    round: u64,
}

impl Drop for Round<'_> {
    fn drop(&mut self) {
        (self.traffic.answered_round).fetch_max(self.round, Ordering::Relaxed);
    }
}

/// One request being answered; dropping it ends it.
#[derive(Debug)]
pub(crate) struct InFlight<'a> {
    traffic: &'a Traffic,
    key: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.traffic.in_flight.fetch_sub(1, Ordering::Relaxed);
        {
            let mut routes = lock(&self.traffic.in_flight_routes);
            if let Some(count) = routes.get_mut(&self.key) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    routes.remove(&self.key);
                }
            }
        }
        self.traffic.touch();
    }
}

impl Default for Traffic {
    fn default() -> Self {
        Self {
            counts: Mutex::default(),
            queries: Mutex::default(),
            total: AtomicU64::new(0),
            scripts: Mutex::default(),
            changed: watch::Sender::new(0),
            in_flight: AtomicU64::new(0),
            peak_in_flight: AtomicU64::new(0),
            in_flight_routes: Mutex::default(),
            answered_round: AtomicU64::new(0),
        }
    }
}

impl Traffic {
    /// Counts one request on `key`.
    pub(crate) fn count(&self, key: &str) {
        *lock(&self.counts).entry(key.to_string()).or_insert(0) += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one request on `key` and returns the scripted answer queued for it, if any.
    pub(crate) fn arrive(&self, key: &str) -> Option<ScriptedAnswer> {
        self.count(key);
        let mut scripts = lock(&self.scripts);
        let queue = scripts.get_mut(key)?;
        let answer = queue.pop_front();
        if queue.is_empty() {
            scripts.remove(key);
        }
        answer
    }

    /// Counts a request on `key` as being answered until the returned guard is dropped.
    pub(crate) fn enter(&self, key: &str) -> InFlight<'_> {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_in_flight.fetch_max(now, Ordering::Relaxed);
        *lock(&self.in_flight_routes)
            .entry(key.to_string())
            .or_insert(0) += 1;
        self.touch();
        InFlight {
            traffic: self,
            key: key.to_string(),
        }
    }

    /// A request arriving now: one round after the latest round of the requests answered
    /// before it arrived, answered when the returned guard is dropped.
    pub(crate) fn begin_round(&self) -> Round<'_> {
        Round {
            traffic: self,
            round: self.answered_round.load(Ordering::Relaxed) + 1,
        }
    }

    /// Round trips one after another so far: the longest chain of requests each of which
    /// arrived after the one before it was answered. Requests a client sends together (before
    /// any of them is answered) are one round, however many; it is what a client's wall time
    /// at a given latency is made of, counted without the clock, so a busy machine does not
    /// change it.
    pub(crate) fn rounds(&self) -> u64 {
        self.answered_round.load(Ordering::Relaxed)
    }

    /// Requests being answered now, per route template key (only keys with at least one).
    pub(crate) fn in_flight_routes(&self) -> BTreeMap<String, u64> {
        lock(&self.in_flight_routes).clone()
    }

    /// The most requests answered at once since the last [`Traffic::reset_peak_in_flight`].
    pub(crate) fn peak_in_flight(&self) -> u64 {
        self.peak_in_flight.load(Ordering::Relaxed)
    }

    /// Starts the peak again from the requests being answered now.
    pub(crate) fn reset_peak_in_flight(&self) {
        self.peak_in_flight
            .store(self.in_flight.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Signals waiters that something happened (called after every answered request and every
    /// mutation made through a handle).
    pub(crate) fn touch(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    pub(crate) fn script(&self, key: &str, answers: Vec<ScriptedAnswer>) {
        lock(&self.scripts)
            .entry(key.to_string())
            .or_default()
            .extend(answers);
    }

    /// Keeps the query parameters of a request on `key`.
    pub(crate) fn record_query(&self, key: &str, params: QueryParams) {
        let mut queries = lock(&self.queries);
        if queries.len() >= QUERIES_KEPT {
            queries.pop_front();
        }
        queries.push_back((key.to_string(), params));
    }

    /// The query parameters of the kept requests on `key`, oldest first.
    pub(crate) fn queries(&self, key: &str) -> Vec<QueryParams> {
        lock(&self.queries)
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, params)| params.clone())
            .collect()
    }

    pub(crate) fn counts(&self) -> BTreeMap<String, u64> {
        lock(&self.counts).clone()
    }

    pub(crate) fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Waits until `condition` holds, re-checking after every change; false on timeout.
    pub(crate) async fn wait_for(&self, condition: impl Fn() -> bool, timeout: Duration) -> bool {
        let mut changes = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            changes.borrow_and_update();
            if condition() {
                return true;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                // The sender lives as long as `self`; a closed channel cannot happen, but a
                // final check is the right answer either way.
                Ok(Err(_)) | Err(_) => return condition(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_sent_together_are_one_round_and_each_after_an_answer_another() {
        let traffic = Traffic::default();
        assert_eq!(traffic.rounds(), 0);
        // Two sent together: both arrive before either is answered.
        let (first, second) = (traffic.begin_round(), traffic.begin_round());
        drop(first);
        drop(second);
        assert_eq!(traffic.rounds(), 1);
        // One sent after those answers, and one that arrived while it was being answered.
        let third = traffic.begin_round();
        let beside = traffic.begin_round();
        drop(third);
        assert_eq!(traffic.rounds(), 2);
        let fourth = traffic.begin_round();
        drop(beside);
        assert_eq!(traffic.rounds(), 2, "beside the third, not after it");
        drop(fourth);
        assert_eq!(traffic.rounds(), 3);
    }
}
