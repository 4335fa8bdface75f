//! An organization's request budget, split into two lanes so that a resync never starves the
//! live re-reads of webhooks.
//!
//! Azure DevOps limits each organization's caller in two ways, and both are shared here:
//! - **requests in flight**: the crawl may hold at most `max_in_flight - reserved_in_flight`
//!   of them; live reads take any free one, so the reserved ones are always theirs;
//! - **the rate budget** (TSTUs per sliding five minutes, told by `X-RateLimit-Limit`,
//!   `-Remaining` and `-Reset`): every answer, of either lane, informs both. The crawl paces as
//!   if `reserved_percent` of the limit were already spent, so it slows down and stops while
//!   a reserve is left, and a `Retry-After` on an answer that is not a 429 (Azure DevOps'
//!   advice while it *delays* a caller) pauses it. Live reads spend the reserve without
//!   pacing: past it Azure DevOps delays them (milliseconds to 30 s) rather than refuse them,
//!   which is still sooner than the minutes until the budget resets. A 429 means the caller
//!   is *blocked*: it pauses both lanes.
//!
//! Each dimension can be turned off on its own: with `reserved_in_flight` 0 the crawl may take
//! every request in flight; with `reserved_percent` 0 there is no reserve to spend, so live
//! reads pace and take advice with the crawl. With both 0 the two lanes are one, as before
//! this module existed.
//!
//! This module decides who may send and when; it sends nothing. The lane of a request is
//! chosen once, by the view of the client a caller holds ([`Lane`]).

use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::HeaderMap;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Upper bound on any single wait a server asks for.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// How long a 429 without `Retry-After` pauses both lanes.
const BLOCKED_WITHOUT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Whose request it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// A read a webhook or an action waits for: may use the reserve.
    Live,
    /// The resync crawl and other background work: leaves the reserve alone.
    Crawl,
}

/// How an organization's budget is shared between the lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneLimits {
    /// Requests in flight at once, both lanes together (at least 1).
    pub max_in_flight: usize,
    /// Of those, how many the crawl leaves for live reads (the crawl keeps at least one).
    pub reserved_in_flight: usize,
    /// Share of the rate budget (`X-RateLimit-Limit`, in percent, at most 90) the crawl
    /// leaves for live reads.
    pub reserved_percent: u8,
}

impl LaneLimits {
    /// One lane: `max_in_flight` for anyone, nothing reserved.
    pub fn shared(max_in_flight: usize) -> Self {
        Self {
            max_in_flight,
            reserved_in_flight: 0,
            reserved_percent: 0,
        }
    }

    fn crawl_in_flight(&self) -> usize {
        let max = self.max_in_flight.max(1);
        max.saturating_sub(self.reserved_in_flight).max(1)
    }

    fn reserved_share(&self) -> f64 {
        f64::from(self.reserved_percent.min(90)) / 100.0
    }
}

/// The shutdown token fired while a request waited for its turn.
#[derive(Debug)]
pub(crate) struct ShuttingDown;

/// The right to send one request; dropping it frees its place.
#[derive(Debug)]
pub(crate) struct Admission<'a> {
    _in_flight: SemaphorePermit<'a>,
    _crawl: Option<SemaphorePermit<'a>>,
}

/// What one answer said about the budget.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct RateSignals {
    /// The answer was a 429: the caller is blocked.
    pub blocked: bool,
    /// `Retry-After`, capped at [`MAX_RETRY_AFTER`].
    pub retry_after: Option<Duration>,
    /// `X-RateLimit-Limit`, `-Remaining`, and the time until `-Reset`.
    pub limit: Option<f64>,
    pub remaining: Option<f64>,
    pub reset_in: Option<Duration>,
}

impl RateSignals {
    /// Reads an answer's status and headers; `now_epoch` is the current time in epoch seconds.
    pub(crate) fn read(status: u16, headers: &HeaderMap, now_epoch: i64) -> Self {
        let text = |name: &str| headers.get(name)?.to_str().ok().map(str::trim);
        let number = |name: &str| text(name)?.parse::<f64>().ok();
        let retry_after = number("retry-after")
            .filter(|seconds| *seconds >= 0.0)
            .map(|seconds| Duration::from_secs_f64(seconds).min(MAX_RETRY_AFTER));
        // Seen both as epoch seconds and as seconds-until.
        let reset_in = number("x-ratelimit-reset")
            .map(|reset| {
                if reset > 10_000.0 {
                    reset - now_epoch as f64
                } else {
                    reset
                }
            })
            .filter(|seconds| *seconds > 0.0)
            .map(|seconds| Duration::from_secs_f64(seconds).min(MAX_RETRY_AFTER));
        Self {
            blocked: status == 429,
            retry_after,
            limit: number("x-ratelimit-limit"),
            remaining: number("x-ratelimit-remaining"),
            reset_in,
        }
    }
}

/// How long to hold requests back so that `reserve` of the budget stays unspent: until the
/// reset when nothing is left above the reserve, else the time left spread over the requests
/// left once fewer than a tenth of what is usable remain. Without headers, no pause.
fn pace(signals: &RateSignals, reserve_share: f64) -> Option<Duration> {
    let remaining = signals.remaining?;
    let until = signals.reset_in?;
    // Azure DevOps' default when it names no limit: 200 TSTUs per five minutes.
    let limit = signals.limit.unwrap_or(200.0);
    let reserve = limit * reserve_share;
    let usable = remaining - reserve;
    let usable_limit = limit - reserve;
    if usable <= 0.0 {
        Some(until)
    } else if usable * 10.0 < usable_limit {
        Some(until.div_f64(usable))
    } else {
        None
    }
}

/// What [`LaneBudget::observe`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Observed {
    /// The rate headers made a lane slow down before the limit.
    pub paced: bool,
}

/// One organization's budget: who may send now.
#[derive(Debug)]
pub(crate) struct LaneBudget {
    limits: LaneLimits,
    /// Requests in flight, both lanes.
    in_flight: Semaphore,
    /// The crawl's share of `in_flight`, taken before it.
    crawl_in_flight: Semaphore,
    /// No live request before this instant.
    live_paused_until: Mutex<Option<Instant>>,
    /// No crawl request before this instant (nor before `live_paused_until`).
    crawl_paused_until: Mutex<Option<Instant>>,
}

fn later(slot: &Mutex<Option<Instant>>, until: Instant) {
    let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
    if slot.is_none_or(|current| current < until) {
        *slot = Some(until);
    }
}

fn read(slot: &Mutex<Option<Instant>>) -> Option<Instant> {
    *slot.lock().unwrap_or_else(|p| p.into_inner())
}

impl LaneBudget {
    /// Requests in flight the crawl may hold at most.
    pub(crate) fn crawl_in_flight(&self) -> usize {
        self.limits.crawl_in_flight()
    }

    pub(crate) fn new(limits: LaneLimits) -> Self {
        Self {
            in_flight: Semaphore::new(limits.max_in_flight.max(1)),
            crawl_in_flight: Semaphore::new(limits.crawl_in_flight()),
            limits,
            live_paused_until: Mutex::new(None),
            crawl_paused_until: Mutex::new(None),
        }
    }

    /// The lane a pause for pacing or advice holds: the crawl, or both when no rate budget is
    /// reserved (live reads then have nothing of their own to spend).
    fn paced_lane(&self) -> Lane {
        if self.limits.reserved_percent == 0 {
            Lane::Live
        } else {
            Lane::Crawl
        }
    }

    /// The instant `lane` may send again, if it is paused.
    fn paused_until(&self, lane: Lane) -> Option<Instant> {
        let live = read(&self.live_paused_until);
        match lane {
            Lane::Live => live,
            Lane::Crawl => read(&self.crawl_paused_until).max(live),
        }
    }

    fn pause(&self, lane: Lane, until: Instant) {
        match lane {
            Lane::Live => later(&self.live_paused_until, until),
            Lane::Crawl => later(&self.crawl_paused_until, until),
        }
    }

    /// Waits until `lane` may send one request and holds its place in flight. `on_pause` is
    /// called each time the request has to wait for a pause.
    pub(crate) async fn admit(
        &self,
        lane: Lane,
        shutdown: &CancellationToken,
        on_pause: impl Fn(),
    ) -> Result<Admission<'_>, ShuttingDown> {
        loop {
            if let Some(until) = self.paused_until(lane)
                && until > Instant::now()
            {
                on_pause();
                tokio::select! {
                    _ = shutdown.cancelled() => return Err(ShuttingDown),
                    _ = tokio::time::sleep_until(until) => {}
                }
            }
            let admission = tokio::select! {
                _ = shutdown.cancelled() => return Err(ShuttingDown),
                admission = self.take_place(lane) => admission?,
            };
            // A pause may have begun while this request queued for its place: give the place
            // back (to a live request, say) and wait for the pause.
            if self
                .paused_until(lane)
                .is_none_or(|until| until <= Instant::now())
            {
                return Ok(admission);
            }
        }
    }

    async fn take_place(&self, lane: Lane) -> Result<Admission<'_>, ShuttingDown> {
        let crawl = match lane {
            Lane::Live => None,
            Lane::Crawl => Some(
                self.crawl_in_flight
                    .acquire()
                    .await
                    .map_err(|_| ShuttingDown)?,
            ),
        };
        let in_flight = self.in_flight.acquire().await.map_err(|_| ShuttingDown)?;
        Ok(Admission {
            _in_flight: in_flight,
            _crawl: crawl,
        })
    }

    /// Takes what an answer (of either lane) said about the budget into account.
    pub(crate) fn observe(&self, signals: &RateSignals) -> Observed {
        let now = Instant::now();
        let mut observed = Observed::default();
        if signals.blocked {
            // Blocked: whoever sends now gets another 429.
            let wait = signals.retry_after.unwrap_or(BLOCKED_WITHOUT_RETRY_AFTER);
            self.pause(Lane::Live, now + wait);
        } else if let Some(advice) = signals.retry_after {
            // A delay advice: the crawl can wait; live reads spend the reserve.
            self.pause(self.paced_lane(), now + advice);
        }
        if let Some(wait) = pace(signals, self.limits.reserved_share()) {
            observed.paced = true;
            self.pause(self.paced_lane(), now + wait);
        }
        observed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn limits(max: usize, reserved: usize, percent: u8) -> LaneLimits {
        LaneLimits {
            max_in_flight: max,
            reserved_in_flight: reserved,
            reserved_percent: percent,
        }
    }

    /// Answers of a budget of 200 with `remaining` left, resetting in 60 s.
    fn budget_left(remaining: f64) -> RateSignals {
        RateSignals {
            limit: Some(200.0),
            remaining: Some(remaining),
            reset_in: Some(Duration::from_secs(60)),
            ..RateSignals::default()
        }
    }

    /// A `Retry-After: secs` on a successful answer.
    fn advice(secs: u64) -> RateSignals {
        RateSignals {
            retry_after: Some(Duration::from_secs(secs)),
            ..RateSignals::default()
        }
    }

    /// A 429, with `Retry-After: secs` if given.
    fn blocked(secs: Option<u64>) -> RateSignals {
        RateSignals {
            blocked: true,
            retry_after: secs.map(Duration::from_secs),
            ..RateSignals::default()
        }
    }

    /// A place in `lane`, taken at once or the test fails.
    async fn place(budget: &LaneBudget, lane: Lane) -> Admission<'_> {
        let shutdown = CancellationToken::new();
        tokio::time::timeout(
            Duration::from_millis(1),
            budget.admit(lane, &shutdown, || {}),
        )
        .await
        .expect("a place at once")
        .expect("not shut down")
    }

    /// True when `lane` gets a place within `patience` (paused time: no real waiting).
    async fn admitted_within(budget: &LaneBudget, lane: Lane, patience: Duration) -> bool {
        let shutdown = CancellationToken::new();
        tokio::time::timeout(patience, budget.admit(lane, &shutdown, || {}))
            .await
            .is_ok()
    }

    #[test]
    fn headers_are_read_in_both_reset_forms() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("retry-after", "7"),
            ("x-ratelimit-limit", "200"),
            ("x-ratelimit-remaining", "12.5"),
            ("x-ratelimit-reset", "1800000030"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        let signals = RateSignals::read(200, &headers, 1_800_000_000);
        assert_eq!(
            signals,
            RateSignals {
                blocked: false,
                retry_after: Some(Duration::from_secs(7)),
                limit: Some(200.0),
                remaining: Some(12.5),
                reset_in: Some(Duration::from_secs(30)),
            }
        );
        headers.insert("x-ratelimit-reset", HeaderValue::from_static("45"));
        headers.insert("retry-after", HeaderValue::from_static("100000"));
        let signals = RateSignals::read(429, &headers, 1_800_000_000);
        assert!(signals.blocked);
        assert_eq!(signals.reset_in, Some(Duration::from_secs(45)));
        assert_eq!(signals.retry_after, Some(MAX_RETRY_AFTER));
        assert_eq!(
            RateSignals::read(200, &HeaderMap::new(), 0),
            RateSignals::default()
        );
    }

    #[test]
    fn pacing_keeps_the_reserve() {
        // No reserve: as before, slow down under a tenth of the limit, stop at zero.
        assert_eq!(pace(&budget_left(150.0), 0.0), None);
        assert_eq!(pace(&budget_left(10.0), 0.0), Some(Duration::from_secs(6)));
        assert_eq!(pace(&budget_left(0.0), 0.0), Some(Duration::from_secs(60)));
        // A 20 % reserve (40 of 200): 160 usable, slow down under 16 usable, stop at 40 left.
        assert_eq!(pace(&budget_left(80.0), 0.2), None);
        assert_eq!(pace(&budget_left(50.0), 0.2), Some(Duration::from_secs(6)));
        assert_eq!(pace(&budget_left(40.0), 0.2), Some(Duration::from_secs(60)));
        assert_eq!(pace(&RateSignals::default(), 0.2), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_crawl_never_holds_the_reserved_places() {
        let budget = LaneBudget::new(limits(5, 2, 20));
        let mut crawl = Vec::new();
        for _ in 0..3 {
            crawl.push(place(&budget, Lane::Crawl).await);
        }
        // Three crawl requests in flight: the fourth waits, though two places are free.
        assert!(!admitted_within(&budget, Lane::Crawl, Duration::from_secs(60)).await);
        // Those two are the live lane's.
        let live_a = place(&budget, Lane::Live).await;
        let live_b = place(&budget, Lane::Live).await;
        assert!(!admitted_within(&budget, Lane::Live, Duration::from_secs(60)).await);
        // Live reads may also take places the crawl leaves idle.
        drop(crawl.pop());
        let live_c = place(&budget, Lane::Live).await;
        assert!(!admitted_within(&budget, Lane::Crawl, Duration::from_secs(60)).await);
        drop((live_a, live_b, live_c));
        assert!(admitted_within(&budget, Lane::Crawl, Duration::from_millis(1)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_delay_advice_pauses_the_crawl_and_a_429_pauses_both() {
        let budget = LaneBudget::new(limits(5, 1, 20));
        budget.observe(&advice(10));
        assert!(admitted_within(&budget, Lane::Live, Duration::from_millis(1)).await);
        assert!(!admitted_within(&budget, Lane::Crawl, Duration::from_secs(9)).await);
        // The advice ends 10 s after it came (9 s already waited).
        assert!(admitted_within(&budget, Lane::Crawl, Duration::from_secs(2)).await);

        budget.observe(&blocked(Some(5)));
        assert!(!admitted_within(&budget, Lane::Live, Duration::from_secs(4)).await);
        assert!(admitted_within(&budget, Lane::Live, Duration::from_secs(2)).await);
        assert!(admitted_within(&budget, Lane::Crawl, Duration::from_millis(1)).await);

        // A 429 without Retry-After still holds both a moment.
        budget.observe(&blocked(None));
        assert!(!admitted_within(&budget, Lane::Live, Duration::from_millis(900)).await);
        assert!(!admitted_within(&budget, Lane::Crawl, Duration::from_millis(50)).await);
        assert!(admitted_within(&budget, Lane::Crawl, Duration::from_millis(100)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn the_crawl_stops_at_the_reserve_and_live_reads_spend_it() {
        let budget = LaneBudget::new(limits(5, 1, 20));
        // 30 of 200 left: under the crawl's reserve of 40.
        let observed = budget.observe(&budget_left(30.0));
        assert!(observed.paced);
        assert!(admitted_within(&budget, Lane::Live, Duration::from_millis(1)).await);
        assert!(!admitted_within(&budget, Lane::Crawl, Duration::from_secs(59)).await);
        assert!(admitted_within(&budget, Lane::Crawl, Duration::from_secs(2)).await);
        // Plenty left: nobody paces.
        assert!(!budget.observe(&budget_left(190.0)).paced);
        // Nothing left (Azure DevOps delays now, it does not refuse): live reads still go.
        budget.observe(&budget_left(0.0));
        assert!(admitted_within(&budget, Lane::Live, Duration::from_millis(1)).await);
        assert!(!admitted_within(&budget, Lane::Crawl, Duration::from_secs(59)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn with_nothing_reserved_the_lanes_are_one() {
        let budget = LaneBudget::new(LaneLimits::shared(2));
        let _a = place(&budget, Lane::Crawl).await;
        let _b = place(&budget, Lane::Crawl).await;
        // The crawl took every place: a live read waits.
        assert!(!admitted_within(&budget, Lane::Live, Duration::from_secs(60)).await);
        drop((_a, _b));
        // A delay advice holds live reads too.
        budget.observe(&advice(10));
        assert!(!admitted_within(&budget, Lane::Live, Duration::from_secs(9)).await);
        assert!(admitted_within(&budget, Lane::Live, Duration::from_secs(2)).await);
        // So does pacing: 10 of 200 left, 60 s to go, 6 s between requests.
        budget.observe(&budget_left(10.0));
        assert!(!admitted_within(&budget, Lane::Live, Duration::from_secs(5)).await);
        assert!(admitted_within(&budget, Lane::Live, Duration::from_secs(2)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_queued_into_a_pause_gives_its_place_back() {
        let budget = std::sync::Arc::new(LaneBudget::new(limits(2, 1, 20)));
        let shutdown = CancellationToken::new();
        let held = place(&budget, Lane::Crawl).await;
        let waiting = {
            let budget = std::sync::Arc::clone(&budget);
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let _place = budget.admit(Lane::Crawl, &shutdown, || {}).await;
                Instant::now()
            })
        };
        tokio::task::yield_now().await;
        // While the second crawl request queues, an advice pauses the crawl for 10 s.
        let advised = Instant::now();
        budget.observe(&advice(10));
        drop(held);
        let sent = waiting.await.expect("task");
        assert!(sent >= advised + Duration::from_secs(10), "sent too early");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_a_wait() {
        let budget = LaneBudget::new(limits(1, 0, 0));
        let shutdown = CancellationToken::new();
        let _held = place(&budget, Lane::Crawl).await;
        let stopped = shutdown.clone();
        tokio::spawn(async move { stopped.cancel() });
        assert!(budget.admit(Lane::Live, &shutdown, || {}).await.is_err());
    }
}
