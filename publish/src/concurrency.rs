//! Adaptive concurrency: how many requests to Port may be in flight at once.
//!
//! AIMD, fed by the same retry classifier as the backoff ([`crate::retry::classify_error`]):
//! the limit starts at the configured maximum, halves when Port answers 429 (it is over its
//! rate limit), and grows by one after a run of successes as long as the current limit. A 429
//! from a request that started before the last decrease does not halve again: one overload
//! episode, seen by every request in flight at that moment, counts once.
//!
//! It owns the limit and the count of requests in flight; it never sleeps or retries (the worker
//! does, after [`Permit::record`]).

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::error::PublishError;
use crate::retry::{Retry, classify_error};

/// What one request's answer says about Port's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Port accepted the request (a 207 counts: Port is healthy, some entities were not).
    Success,
    /// Port is over its rate limit (429).
    Overloaded,
    /// Neither (a 5xx, a transport error, a rejected request): leave the limit alone.
    Neutral,
}

impl Signal {
    /// The signal of a request that ended in `error`, by the retry classifier's decision.
    pub fn of_error(error: &PublishError) -> Self {
        match (error, classify_error(error)) {
            (_, Retry::Success) => Signal::Success,
            (PublishError::Port(error), Retry::Retry | Retry::RetryAfter(_))
                if error.is_rate_limited() =>
            {
                Signal::Overloaded
            }
            _ => Signal::Neutral,
        }
    }
}

#[derive(Debug)]
struct State {
    limit: usize,
    in_flight: usize,
    /// Successes since the limit last changed.
    successes: usize,
    /// Bumped on every decrease; a permit remembers the one it started in.
    epoch: u64,
}

/// The shared limit. Cloning shares it.
#[derive(Debug, Clone)]
pub struct AdaptiveLimit {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    max: usize,
    state: Mutex<State>,
    released: Notify,
}

/// One request slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Permit {
    inner: Arc<Inner>,
    epoch: u64,
}

fn lock(mutex: &Mutex<State>) -> MutexGuard<'_, State> {
    // State is a few integers updated together under the lock: a poisoned lock holds no
    // half-written value worth refusing.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl AdaptiveLimit {
    /// A limit that starts at, and never exceeds, `max` (at least 1).
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            inner: Arc::new(Inner {
                max,
                state: Mutex::new(State {
                    limit: max,
                    in_flight: 0,
                    successes: 0,
                    epoch: 0,
                }),
                released: Notify::new(),
            }),
        }
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        lock(&self.inner.state).limit
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        lock(&self.inner.state).in_flight
    }

    /// Waits for a slot under the current limit.
    pub async fn acquire(&self) -> Permit {
        loop {
            let released = self.inner.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            {
                let mut state = lock(&self.inner.state);
                if state.in_flight < state.limit {
                    state.in_flight += 1;
                    return Permit {
                        inner: self.inner.clone(),
                        epoch: state.epoch,
                    };
                }
            }
            released.await;
        }
    }
}

impl Permit {
    /// Feeds the request's answer back into the limit (the slot stays taken until dropped).
    pub fn record(&self, signal: Signal) {
        let mut state = lock(&self.inner.state);
        match signal {
            Signal::Success => {
                state.successes += 1;
                if state.successes >= state.limit && state.limit < self.inner.max {
                    state.limit += 1;
                    state.successes = 0;
                    drop(state);
                    self.inner.released.notify_waiters();
                }
            }
            Signal::Overloaded => {
                if self.epoch == state.epoch {
                    let halved = (state.limit / 2).max(1);
                    tracing::warn!(
                        from = state.limit,
                        to = halved,
                        "Port answered 429: fewer requests in flight"
                    );
                    state.limit = halved;
                    state.epoch += 1;
                }
                state.successes = 0;
            }
            Signal::Neutral => {}
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = lock(&self.inner.state);
        state.in_flight = state.in_flight.saturating_sub(1);
        drop(state);
        self.inner.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn status(code: u16) -> PublishError {
        PublishError::Port(adoport_shared::port::PortError::Status {
            operation: "bulk upsert".into(),
            request: "POST http://port/v1/blueprints/svc/entities/bulk".into(),
            status: code,
            excerpt: String::new(),
            trace_id: None,
            retry_after: None,
        })
    }

    #[test]
    fn signals_follow_the_retry_classifier() {
        let cases = [
            (status(429), Signal::Overloaded),
            (status(503), Signal::Neutral),
            (status(500), Signal::Neutral),
            (status(400), Signal::Neutral),
            (status(404), Signal::Neutral),
        ];
        for (error, expected) in cases {
            assert_eq!(Signal::of_error(&error), expected, "{error}");
        }
    }

    #[tokio::test]
    async fn a_429_halves_once_per_episode_and_successes_grow_it_back() {
        let limit = AdaptiveLimit::new(8);
        let permits: Vec<Permit> =
            futures_util::future::join_all((0..8).map(|_| limit.acquire())).await;
        assert_eq!(limit.in_flight(), 8);
        // Every request in flight hits the same overload: one halving, not eight.
        for p in &permits {
            p.record(Signal::Overloaded);
        }
        assert_eq!(limit.limit(), 4);
        drop(permits);
        // A 429 from a request started after the decrease halves again.
        let p = limit.acquire().await;
        p.record(Signal::Overloaded);
        drop(p);
        assert_eq!(limit.limit(), 2);
        // Additive increase: +1 after `limit` successes, never above the maximum.
        for _ in 0..100 {
            let p = limit.acquire().await;
            p.record(Signal::Success);
        }
        assert_eq!(limit.limit(), 8);
        let p = limit.acquire().await;
        p.record(Signal::Overloaded);
        p.record(Signal::Overloaded);
        assert_eq!(limit.limit(), 4);
        drop(p);
        let p = limit.acquire().await;
        for _ in 0..3 {
            p.record(Signal::Neutral);
        }
        assert_eq!(limit.limit(), 4);
    }

    #[tokio::test]
    async fn no_more_requests_than_the_limit_are_in_flight() {
        let limit = AdaptiveLimit::new(2);
        let a = limit.acquire().await;
        a.record(Signal::Overloaded);
        assert_eq!(limit.limit(), 1);
        // One slot, taken: the next acquire waits until it is freed.
        let waiting = tokio::time::timeout(Duration::from_millis(50), limit.acquire()).await;
        assert!(waiting.is_err(), "acquired above the limit");
        let limit2 = limit.clone();
        let waiter = tokio::spawn(async move { limit2.acquire().await });
        drop(a);
        let b = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("a freed slot wakes the waiter")
            .expect("task");
        assert_eq!(limit.in_flight(), 1);
        drop(b);
        assert_eq!(limit.in_flight(), 0);
    }
}
