//! An organization's request budget: Azure DevOps limits the callers of each organization
//! separately, so each simulated organization has its own fixed window of `requests` per `per`
//! ([`AdoSimConfig::rate_limit`](super::AdoSimConfig::rate_limit)). Answers within the budget
//! carry `X-RateLimit-Resource`, `-Limit`, `-Remaining` and `-Reset` (epoch seconds); past it
//! the answer is Azure DevOps' 429 `TF400733` with `Retry-After`. The simulator never waits:
//! the caller does.

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;

use super::AdoState;
use super::error::AdoError;
use crate::port::RateLimit;
use crate::traffic::lock;

/// The window of one organization.
#[derive(Debug)]
pub(crate) struct Budget {
    limit: RateLimit,
    started: Instant,
    used: u32,
}

impl Budget {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            started: Instant::now(),
            used: 0,
        }
    }
}

/// What is left of the budget after a request was let through.
#[derive(Debug)]
pub(crate) struct Left {
    limit: u32,
    remaining: u32,
    reset_in: Duration,
}

/// Takes one request from the organization's budget (`Ok(None)` when it has none).
pub(crate) fn take(state: &AdoState) -> Result<Option<Left>, AdoError> {
    let mut slot = lock(&state.budget);
    let Some(budget) = slot.as_mut() else {
        return Ok(None);
    };
    let now = Instant::now();
    if now.duration_since(budget.started) >= budget.limit.per {
        budget.started = now;
        budget.used = 0;
    }
    let reset_in = budget
        .limit
        .per
        .saturating_sub(now.duration_since(budget.started));
    if budget.used >= budget.limit.requests {
        let secs = reset_in.as_secs() + u64::from(reset_in.subsec_nanos() > 0);
        return Err(AdoError::RateLimited {
            retry_after_secs: secs.max(1),
        });
    }
    budget.used += 1;
    Ok(Some(Left {
        limit: budget.limit.requests,
        remaining: budget.limit.requests - budget.used,
        reset_in,
    }))
}

/// Adds the budget headers to an answer let through.
pub(crate) fn with_headers(left: Option<Left>, mut response: Response) -> Response {
    if let Some(left) = left {
        insert_headers(response.headers_mut(), &left);
    }
    response
}

fn insert_headers(headers: &mut HeaderMap, left: &Left) {
    let reset = chrono::Utc::now() + left.reset_in;
    let pairs = [
        ("x-ratelimit-resource", "ATCPU".to_string()),
        ("x-ratelimit-limit", left.limit.to_string()),
        ("x-ratelimit-remaining", left.remaining.to_string()),
        ("x-ratelimit-reset", reset.timestamp().to_string()),
    ];
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}
