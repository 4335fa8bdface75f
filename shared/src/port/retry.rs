//! What an answer from Port means for a retry, and how long to wait before the next attempt,
//! kept apart (as Vector's `sinks/util/retries.rs`).
//!
//! [`classify`] turns Port's answer (status + headers) into a [`Retry`] decision; it knows
//! nothing about timing beyond what Port said. [`RetryPolicy`] owns the schedule: exponential
//! backoff with jitter (backon), capped, never shorter than what Port asked for, and bounded:
//! a call gives up once it has had `max_attempts` attempts *and* has been retried for
//! `retry_window`. Only transient failures are retried (5xx, 408, 429, no answer), which is
//! what Port as a whole being down looks like. [`Schedule::wait_next`] is the one driver every
//! retry loop waits in: it stops waiting the moment shutdown is signalled.

use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use tokio_util::sync::CancellationToken;

use super::error::PortError;

/// `x-ratelimit-reset` values above this are epoch seconds; below, seconds until the reset.
const EPOCH_THRESHOLD_SECS: u64 = 10_000;

/// What to do after one answer from Port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retry {
    /// Port accepted the request.
    Success,
    /// A transient failure: try again after the backoff.
    Retry,
    /// A transient failure and Port said how long to wait.
    RetryAfter(Duration),
    /// 413: the body is too large; split the batch and send the halves.
    TooLarge,
    /// Retrying cannot help: dead-letter with this reason.
    DontRetry(String),
}

impl Retry {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Retry::Retry | Retry::RetryAfter(_))
    }
}

/// Classifies an HTTP answer. `now` resolves absolute times (HTTP-date, epoch resets).
pub fn classify(status: StatusCode, headers: &HeaderMap, now: SystemTime) -> Retry {
    if status.is_success() {
        return Retry::Success;
    }
    match classify_status(status.as_u16()) {
        Retry::Retry => match wait_hint(status, headers, now) {
            Some(wait) => Retry::RetryAfter(wait),
            None => Retry::Retry,
        },
        other => other,
    }
}

/// Classifies a bare status code (also used for the per-entity `statusCode` of a 207).
pub fn classify_status(status: u16) -> Retry {
    match status {
        200..=299 => Retry::Success,
        408 | 429 => Retry::Retry,
        413 => Retry::TooLarge,
        500..=599 => Retry::Retry,
        401 | 403 => Retry::DontRetry(format!(
            "HTTP {status}: Port refused access to this write (check the credentials' permissions)"
        )),
        _ => Retry::DontRetry(format!("HTTP {status}: Port rejected the write")),
    }
}

/// How long Port asked us to wait: `Retry-After` (seconds or HTTP-date) on any status, or, on
/// a 429 without it, `x-ratelimit-reset` (epoch seconds above ~10,000, else seconds until).
pub fn wait_hint(status: StatusCode, headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(value) = header_str(headers, RETRY_AFTER.as_str())
        && let Some(wait) = parse_retry_after(value, now)
    {
        return Some(wait);
    }
    if status == StatusCode::TOO_MANY_REQUESTS
        && let Some(value) = header_str(headers, "x-ratelimit-reset")
    {
        return parse_ratelimit_reset(value, now);
    }
    None
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::from(at.with_timezone(&chrono::Utc));
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `x-ratelimit-reset`: seconds until the window resets, or the reset's epoch second.
pub fn parse_ratelimit_reset(value: &str, now: SystemTime) -> Option<Duration> {
    let secs = value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)?;
    if secs > EPOCH_THRESHOLD_SECS as f64 {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs);
        Some(at.duration_since(now).unwrap_or(Duration::ZERO))
    } else {
        Some(Duration::from_secs_f64(secs))
    }
}

/// The decision for an error returned by the client.
pub fn classify_error(error: &PortError) -> Retry {
    match error {
        PortError::Status {
            status,
            retry_after,
            ..
        } => match (classify_status(*status), retry_after) {
            (Retry::Retry, Some(wait)) => Retry::RetryAfter(*wait),
            (decision, _) => decision,
        },
        // Timeouts, resets, refused connections: Port (or the path to it) may come back.
        PortError::Transport { .. } => Retry::Retry,
        // A 2xx we cannot read may be a proxy hiccup; the write is idempotent, so send again.
        PortError::InvalidResponse { .. } => Retry::Retry,
        PortError::Auth { .. } | PortError::Setup(_) => Retry::DontRetry(error.to_string()),
    }
}

impl PortError {
    /// Port did not answer, or answered that it cannot now (5xx, 408, 429): the request may
    /// succeed later, unlike a refusal.
    pub fn is_unavailable(&self) -> bool {
        match self {
            PortError::Transport { .. } => true,
            PortError::Status { status, .. } => classify_status(*status).is_retryable(),
            _ => false,
        }
    }
}

/// The backoff schedule and attempt bound for one call (in publish: one write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts at one write, the first included, before it is dead-lettered (at least 1).
    pub max_attempts: u32,
    /// Backoff before the first retry (jitter adds up to as much again).
    pub min_delay: Duration,
    /// Upper bound of the exponential part of the backoff.
    pub max_delay: Duration,
    /// Upper bound on a wait Port asks for; a longer `Retry-After` is clipped to this.
    pub max_retry_after: Duration,
    /// How long a write is retried at least, from its first failure, however many attempts
    /// that takes (`ADOPORT__PUBLISH__RETRY_WINDOW_SECS`; zero: the attempts alone decide).
    pub retry_window: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            min_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
            retry_window: Duration::from_secs(600),
        }
    }
}

impl RetryPolicy {
    /// A fresh schedule for one write.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            backoff: ExponentialBuilder::default()
                .with_min_delay(self.min_delay)
                .with_max_delay(self.max_delay)
                .with_factor(2.0)
                .with_jitter()
                .without_max_times()
                .build(),
            policy: *self,
            attempts: 0,
            first_failure: None,
        }
    }
}

/// The state of one write's retries.
#[derive(Debug)]
pub struct Schedule {
    backoff: ExponentialBackoff,
    policy: RetryPolicy,
    attempts: u32,
    /// When the first attempt failed (tokio's clock, so tests can pause it).
    first_failure: Option<tokio::time::Instant>,
}

impl Schedule {
    /// Records a failed attempt and returns how long to wait before the next, or `None` when
    /// the attempts are used up. The wait is the backoff, but never less than what Port asked
    /// for (clipped to `max_retry_after`).
    pub fn next_delay(&mut self, decision: &Retry) -> Option<Duration> {
        self.attempts += 1;
        let first_failure = *self
            .first_failure
            .get_or_insert_with(tokio::time::Instant::now);
        if self.attempts >= self.policy.max_attempts.max(1)
            && first_failure.elapsed() >= self.policy.retry_window
        {
            return None;
        }
        let backoff = self.backoff.next().unwrap_or(self.policy.max_delay);
        Some(match decision {
            Retry::RetryAfter(wait) => backoff.max((*wait).min(self.policy.max_retry_after)),
            _ => backoff,
        })
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The retry driver, after a failed attempt whose answer meant `decision`: records the
    /// attempt, calls `before_wait` with the delay and the attempts so far (to count and log
    /// the retry), then waits — unless `stop` is cancelled first, or already is.
    pub async fn wait_next(
        &mut self,
        decision: &Retry,
        stop: &CancellationToken,
        before_wait: impl FnOnce(Duration, u32),
    ) -> Next {
        let Some(delay) = self.next_delay(decision) else {
            return Next::GaveUp {
                attempts: self.attempts,
            };
        };
        before_wait(delay, self.attempts);
        tokio::select! {
            biased;
            _ = stop.cancelled() => Next::Stopped,
            _ = tokio::time::sleep(delay) => Next::Again,
        }
    }
}

/// What the driver decided after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The wait is over: make the next attempt.
    Again,
    /// The attempts (and the retry window) are used up.
    GaveUp { attempts: u32 },
    /// Shutdown was signalled during (or before) the wait: stop without another attempt.
    Stopped,
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(list: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in list {
            map.insert(*name, HeaderValue::from_str(value).expect("header"));
        }
        map
    }

    type Case = (u16, &'static [(&'static str, &'static str)], Retry);

    #[test]
    fn classifier_table() {
        // 2015-10-21T07:28:00Z
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        let cases: &[Case] = &[
            (200, &[], Retry::Success),
            (207, &[], Retry::Success),
            (201, &[("retry-after", "5")], Retry::Success),
            (429, &[], Retry::Retry),
            (
                429,
                &[("retry-after", "1")],
                Retry::RetryAfter(Duration::from_secs(1)),
            ),
            (
                429,
                &[("retry-after", "0.5")],
                Retry::RetryAfter(Duration::from_millis(500)),
            ),
            (
                429,
                &[("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT")],
                Retry::RetryAfter(Duration::from_secs(30)),
            ),
            // A date in the past: retry now.
            (
                429,
                &[("retry-after", "Wed, 21 Oct 2015 07:00:00 GMT")],
                Retry::RetryAfter(Duration::ZERO),
            ),
            (
                429,
                &[("x-ratelimit-reset", "7")],
                Retry::RetryAfter(Duration::from_secs(7)),
            ),
            (
                429,
                &[("x-ratelimit-reset", "1445412540")],
                Retry::RetryAfter(Duration::from_secs(60)),
            ),
            // Retry-After wins over x-ratelimit-reset.
            (
                429,
                &[("retry-after", "2"), ("x-ratelimit-reset", "50")],
                Retry::RetryAfter(Duration::from_secs(2)),
            ),
            // Garbage Retry-After: plain backoff.
            (429, &[("retry-after", "soon")], Retry::Retry),
            (500, &[], Retry::Retry),
            (502, &[], Retry::Retry),
            (
                503,
                &[("retry-after", "3")],
                Retry::RetryAfter(Duration::from_secs(3)),
            ),
            // x-ratelimit-reset only paces 429s.
            (503, &[("x-ratelimit-reset", "50")], Retry::Retry),
            (504, &[], Retry::Retry),
            (408, &[], Retry::Retry),
            (413, &[], Retry::TooLarge),
            (413, &[("retry-after", "3")], Retry::TooLarge),
        ];
        for (status, hs, expected) in cases {
            let got = classify(
                StatusCode::from_u16(*status).expect("status"),
                &headers(hs),
                now,
            );
            assert_eq!(&got, expected, "status {status} headers {hs:?}");
        }
        for status in [400u16, 401, 403, 404, 409, 422] {
            let got = classify(
                StatusCode::from_u16(status).expect("status"),
                &HeaderMap::new(),
                now,
            );
            match got {
                Retry::DontRetry(reason) => {
                    assert!(reason.contains(&status.to_string()), "{reason}")
                }
                other => panic!("status {status} should not be retried, got {other:?}"),
            }
        }
    }

    #[test]
    fn errors_are_classified() {
        let status = |status: u16, retry_after: Option<Duration>| PortError::Status {
            operation: "op".into(),
            request: "POST http://port/v1/op".into(),
            status,
            excerpt: String::new(),
            trace_id: None,
            retry_after,
        };
        assert_eq!(classify_error(&status(503, None)), Retry::Retry);
        assert_eq!(
            classify_error(&status(429, Some(Duration::from_secs(4)))),
            Retry::RetryAfter(Duration::from_secs(4))
        );
        assert_eq!(classify_error(&status(413, None)), Retry::TooLarge);
        assert!(matches!(
            classify_error(&status(422, None)),
            Retry::DontRetry(_)
        ));
        let auth = PortError::Auth {
            status: 401,
            message: "no".into(),
        };
        assert!(matches!(classify_error(&auth), Retry::DontRetry(_)));
    }

    #[test]
    fn schedule_is_bounded_and_honours_retry_after() {
        let policy = RetryPolicy {
            max_attempts: 4,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(400),
            max_retry_after: Duration::from_secs(10),
            retry_window: Duration::ZERO,
        };
        let mut schedule = policy.schedule();
        let first = schedule.next_delay(&Retry::Retry).expect("retry 1");
        assert!(
            first >= Duration::from_millis(100) && first < Duration::from_millis(200),
            "{first:?}"
        );
        let second = schedule
            .next_delay(&Retry::RetryAfter(Duration::from_secs(3)))
            .expect("retry 2");
        assert_eq!(second, Duration::from_secs(3));
        let third = schedule
            .next_delay(&Retry::RetryAfter(Duration::from_secs(3600)))
            .expect("retry 3");
        assert_eq!(third, Duration::from_secs(10), "clipped to max_retry_after");
        assert_eq!(schedule.next_delay(&Retry::Retry), None, "4 attempts made");
        assert_eq!(schedule.attempts(), 4);

        let mut capped = RetryPolicy {
            max_attempts: 50,
            ..policy
        }
        .schedule();
        for _ in 0..40 {
            let d = capped.next_delay(&Retry::Retry).expect("within attempts");
            assert!(d < Duration::from_millis(800), "jittered cap: {d:?}");
        }
    }

    #[test]
    fn one_attempt_means_no_retry() {
        let mut schedule = RetryPolicy {
            max_attempts: 1,
            retry_window: Duration::ZERO,
            ..RetryPolicy::default()
        }
        .schedule();
        assert_eq!(schedule.next_delay(&Retry::Retry), None);
    }

    /// A Port outage of a minute and a half (500s, then 429s with `Retry-After`) is waited
    /// out: the write is retried past its attempts until the window has passed, and only then
    /// given up. (8 attempts alone last 32–64 s.)
    #[tokio::test(start_paused = true)]
    async fn a_port_outage_shorter_than_the_window_is_waited_out() {
        let policy = RetryPolicy::default();
        let mut schedule = policy.schedule();
        let mut waited = Duration::ZERO;
        while waited < Duration::from_secs(90) {
            let decision = if waited < Duration::from_secs(45) {
                Retry::Retry
            } else {
                Retry::RetryAfter(Duration::from_secs(4))
            };
            let delay = schedule
                .next_delay(&decision)
                .unwrap_or_else(|| panic!("gave up after {waited:?} of an outage"));
            tokio::time::advance(delay).await;
            waited += delay;
        }
        assert!(
            schedule.attempts() >= policy.max_attempts,
            "{}",
            schedule.attempts()
        );
        // Past the window (and the attempts), it gives up: the retries are bounded.
        tokio::time::advance(policy.retry_window).await;
        assert_eq!(schedule.next_delay(&Retry::Retry), None);
    }

    /// A retry waiting out a long `Retry-After` ends as soon as shutdown is signalled, not when
    /// the wait would have.
    #[tokio::test(start_paused = true)]
    async fn a_retry_wait_ends_promptly_on_shutdown() {
        let stop = CancellationToken::new();
        let mut schedule = RetryPolicy::default().schedule();
        let waiting = tokio::spawn({
            let stop = stop.clone();
            async move {
                let started = tokio::time::Instant::now();
                let next = schedule
                    .wait_next(
                        &Retry::RetryAfter(Duration::from_secs(300)),
                        &stop,
                        |_, _| {},
                    )
                    .await;
                (next, started.elapsed())
            }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "still waiting out the 300 s");
        stop.cancel();
        let (next, waited) = waiting.await.expect("driver task");
        assert_eq!(next, Next::Stopped);
        assert!(waited < Duration::from_secs(2), "waited {waited:?}");

        // Already stopped: no wait at all.
        let mut schedule = RetryPolicy::default().schedule();
        let started = tokio::time::Instant::now();
        let next = schedule.wait_next(&Retry::Retry, &stop, |_, _| {}).await;
        assert_eq!((next, started.elapsed()), (Next::Stopped, Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn the_driver_waits_the_delay_and_gives_up_when_the_attempts_are_used() {
        let stop = CancellationToken::new();
        let mut schedule = RetryPolicy {
            max_attempts: 2,
            retry_window: Duration::ZERO,
            ..RetryPolicy::default()
        }
        .schedule();
        let started = tokio::time::Instant::now();
        let mut seen = None;
        let next = schedule
            .wait_next(&Retry::RetryAfter(Duration::from_secs(5)), &stop, |d, a| {
                seen = Some((d, a))
            })
            .await;
        assert_eq!(next, Next::Again);
        assert_eq!(seen, Some((Duration::from_secs(5), 1)));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        let next = schedule.wait_next(&Retry::Retry, &stop, |_, _| {}).await;
        assert_eq!(next, Next::GaveUp { attempts: 2 });
    }
}
