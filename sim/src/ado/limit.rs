//! An organization's request budget, as Azure DevOps meters it ("Rate and usage limits",
//! learn.microsoft.com/azure/devops/integrate/concepts/rate-limits): each simulated
//! organization counts the requests of a *sliding* window of `per`
//! ([`AdoSimConfig::rate_limit`](super::AdoSimConfig::rate_limit)), one request standing for
//! one TSTU.
//!
//! - Every answer carries `X-RateLimit-Resource`, `-Limit` (the budget), `-Remaining` (what is
//!   left before delays; 0 once delayed) and `-Reset` (epoch seconds at which the window
//!   would be empty if every request stopped now).
//! - Past the budget Azure DevOps first *delays*: the next
//!   [`AdoSimConfig::rate_limit_delayed`](super::AdoSimConfig::rate_limit_delayed) requests
//!   are still answered, with `Retry-After` (seconds until the window is back under the
//!   budget) and `X-RateLimit-Delay` on the 200.
//! - Past those it *blocks*: 429 `TF400733` with `Retry-After` (seconds until one request
//!   leaves the window). A blocked request does not count.
//!
//! The simulator never waits (a real delayed answer is also slow): the caller does.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::AdoState;
use super::error::AdoError;
use crate::port::RateLimit;
use crate::traffic::lock;

/// The sliding window of one organization.
#[derive(Debug)]
pub(crate) struct Budget {
    limit: RateLimit,
    /// Requests past the budget that are delayed rather than blocked.
    delayed: u32,
    /// When each request still in the window was let through, oldest first (at most
    /// `limit.requests + delayed`).
    admitted: VecDeque<Instant>,
}

impl Budget {
    pub(crate) fn new(limit: RateLimit, delayed: u32) -> Self {
        Self {
            limit,
            delayed,
            admitted: VecDeque::new(),
        }
    }

    /// Counts a request arriving at `now`: how much of the budget is used, and whether it is
    /// let through.
    fn take(&mut self, now: Instant) -> Usage {
        while self
            .admitted
            .front()
            .is_some_and(|first| now.duration_since(*first) >= self.limit.per)
        {
            self.admitted.pop_front();
        }
        let budget = self.limit.requests as usize;
        let ceiling = budget + self.delayed as usize;
        // The time until the request at `index` (oldest first) leaves the window.
        let leaves = |admitted: &VecDeque<Instant>, index: usize| {
            admitted.get(index).map_or(Duration::ZERO, |at| {
                self.limit.per.saturating_sub(now.duration_since(*at))
            })
        };
        if self.admitted.len() >= ceiling {
            return Usage {
                limit: self.limit.requests,
                remaining: 0,
                reset_in: leaves(&self.admitted, self.admitted.len() - 1),
                state: State::Blocked {
                    retry_after: leaves(&self.admitted, self.admitted.len() - ceiling),
                },
            };
        }
        self.admitted.push_back(now);
        let used = self.admitted.len();
        let state = if used > budget {
            // Back under the budget once the `used - budget` oldest have left.
            State::Delayed {
                retry_after: leaves(&self.admitted, used - budget - 1),
            }
        } else {
            State::Served
        };
        Usage {
            limit: self.limit.requests,
            remaining: (budget.saturating_sub(used)) as u32,
            reset_in: self.limit.per,
            state,
        }
    }
}

/// What the budget said about one request.
#[derive(Debug)]
pub(crate) struct Usage {
    limit: u32,
    remaining: u32,
    reset_in: Duration,
    state: State,
}

#[derive(Debug)]
enum State {
    Served,
    Delayed { retry_after: Duration },
    Blocked { retry_after: Duration },
}

/// Whole seconds, rounded up, at least 1 (what `Retry-After` carries).
fn ceil_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// A request past the budget's delayed ones: answered 429 `TF400733` with `Retry-After` and
/// the budget's headers.
#[derive(Debug)]
pub(crate) struct Blocked(Usage);

impl IntoResponse for Blocked {
    fn into_response(self) -> Response {
        let retry_after = match self.0.state {
            State::Blocked { retry_after } | State::Delayed { retry_after } => retry_after,
            State::Served => Duration::ZERO,
        };
        let mut response = AdoError::RateLimited {
            retry_after_secs: ceil_secs(retry_after),
        }
        .into_response();
        insert_headers(response.headers_mut(), &self.0);
        response
    }
}

/// Counts one request against the organization's budget: `Ok(None)` when it has none,
/// `Ok(Some(usage))` when the request may go on (its answer gets [`with_headers`]).
pub(crate) fn take(state: &AdoState) -> Result<Option<Usage>, Blocked> {
    let mut slot = lock(&state.budget);
    let Some(budget) = slot.as_mut() else {
        return Ok(None);
    };
    let usage = budget.take(Instant::now());
    if let State::Blocked { .. } = usage.state {
        return Err(Blocked(usage));
    }
    Ok(Some(usage))
}

/// Adds the budget headers to an answer let through (whatever its status).
pub(crate) fn with_headers(usage: Option<Usage>, mut response: Response) -> Response {
    if let Some(usage) = usage {
        insert_headers(response.headers_mut(), &usage);
    }
    response
}

fn insert_headers(headers: &mut HeaderMap, usage: &Usage) {
    let reset = chrono::Utc::now() + usage.reset_in;
    let mut pairs = vec![
        ("x-ratelimit-resource", "ATCPU".to_string()),
        ("x-ratelimit-limit", usage.limit.to_string()),
        ("x-ratelimit-remaining", usage.remaining.to_string()),
        (
            "x-ratelimit-reset",
            (reset.timestamp() + i64::from(reset.timestamp_subsec_nanos() > 0)).to_string(),
        ),
    ];
    match usage.state {
        State::Served => {}
        State::Delayed { retry_after } | State::Blocked { retry_after } => {
            pairs.push(("retry-after", ceil_secs(retry_after).to_string()));
            pairs.push((
                "x-ratelimit-delay",
                format!("{:.3}", retry_after.as_secs_f64()),
            ));
        }
    }
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(requests: u32, delayed: u32) -> Budget {
        Budget::new(
            RateLimit {
                requests,
                per: Duration::from_secs(10),
            },
            delayed,
        )
    }

    #[test]
    fn the_window_slides_delays_then_blocks() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut window = budget(2, 1);
        let first = window.take(at(0));
        assert!(matches!(first.state, State::Served));
        assert_eq!(first.remaining, 1);
        let second = window.take(at(4));
        assert!(matches!(second.state, State::Served));
        assert_eq!(second.remaining, 0);
        // Past the budget: served, delayed until the first request leaves (at 10 s).
        let third = window.take(at(5));
        assert!(
            matches!(third.state, State::Delayed { retry_after } if retry_after == Duration::from_secs(5)),
            "{third:?}"
        );
        // Past the delayed ones: blocked until the first request leaves, not counted.
        let fourth = window.take(at(6));
        assert!(
            matches!(fourth.state, State::Blocked { retry_after } if retry_after == Duration::from_secs(4)),
            "{fourth:?}"
        );
        assert_eq!(window.admitted.len(), 3);
        // At 10 s the first has left the sliding window: one delayed slot is free again.
        assert!(matches!(window.take(at(10)).state, State::Delayed { .. }));
        // At 15 s the requests of 4 s and 5 s have left too: under the budget again.
        let later = window.take(at(15));
        assert!(matches!(later.state, State::Served), "{later:?}");
        assert_eq!(later.remaining, 0);
    }

    #[test]
    fn without_a_delay_zone_the_budget_blocks_at_once() {
        let start = Instant::now();
        let mut window = budget(1, 0);
        assert!(matches!(window.take(start).state, State::Served));
        assert!(matches!(
            window.take(start + Duration::from_secs(3)).state,
            State::Blocked { retry_after } if retry_after == Duration::from_secs(7)
        ));
    }
}
