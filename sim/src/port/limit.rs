//! Port's rate limit, as a fixed window of `requests` per `per`: every answer carries
//! `x-ratelimit-{limit,remaining,reset,period}`; past the budget the answer is 429 with
//! `Retry-After` (whole seconds until the window resets).

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue};

use super::RateLimit;

/// The budget shown when no limit is configured (Port's historic published figure).
const UNLIMITED_SHOWN: u32 = 35_000;
const UNLIMITED_PERIOD_SECS: u64 = 300;

#[derive(Debug)]
pub(crate) struct Window {
    limit: Option<RateLimit>,
    started: Instant,
    used: u32,
}

/// The verdict on one request and the headers to send with its answer.
#[derive(Debug)]
pub(crate) struct Verdict {
    pub allowed: bool,
    pub retry_after_secs: u64,
    limit: u32,
    remaining: u32,
    reset_secs: u64,
    period_secs: u64,
}

fn ceil_secs(duration: Duration) -> u64 {
    let secs = duration.as_secs();
    if duration.subsec_nanos() > 0 {
        secs + 1
    } else {
        secs
    }
}

impl Window {
    pub(crate) fn new(limit: Option<RateLimit>) -> Self {
        Self {
            limit,
            started: Instant::now(),
            used: 0,
        }
    }

    /// Takes one request from the budget, if there is budget left.
    pub(crate) fn take(&mut self) -> Verdict {
        let Some(limit) = &self.limit else {
            return Verdict {
                allowed: true,
                retry_after_secs: 0,
                limit: UNLIMITED_SHOWN,
                remaining: UNLIMITED_SHOWN,
                reset_secs: UNLIMITED_PERIOD_SECS,
                period_secs: UNLIMITED_PERIOD_SECS,
            };
        };
        let now = Instant::now();
        if now.duration_since(self.started) >= limit.per {
            self.started = now;
            self.used = 0;
        }
        let left = limit.per.saturating_sub(now.duration_since(self.started));
        let allowed = self.used < limit.requests;
        if allowed {
            self.used += 1;
        }
        Verdict {
            allowed,
            retry_after_secs: ceil_secs(left).max(1),
            limit: limit.requests,
            remaining: limit.requests.saturating_sub(self.used),
            reset_secs: ceil_secs(left),
            period_secs: ceil_secs(limit.per),
        }
    }
}

impl Verdict {
    pub(crate) fn write_headers(&self, headers: &mut HeaderMap) {
        let pairs = [
            ("x-ratelimit-limit", self.limit.to_string()),
            ("x-ratelimit-remaining", self.remaining.to_string()),
            ("x-ratelimit-reset", self.reset_secs.to_string()),
            ("x-ratelimit-period", self.period_secs.to_string()),
        ];
        for (name, value) in pairs {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        if !self.allowed
            && let Ok(value) = HeaderValue::from_str(&self.retry_after_secs.to_string())
        {
            headers.insert("retry-after", value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_then_refusal() {
        let mut window = Window::new(Some(RateLimit {
            requests: 2,
            per: Duration::from_secs(60),
        }));
        assert!(window.take().allowed);
        let second = window.take();
        assert!(second.allowed);
        assert_eq!(second.remaining, 0);
        let third = window.take();
        assert!(!third.allowed);
        assert!(third.retry_after_secs >= 1 && third.retry_after_secs <= 60);
    }
}
