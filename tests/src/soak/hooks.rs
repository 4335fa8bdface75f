//! Service-hook deliveries the way Azure DevOps makes them, to whichever ingest replica the
//! "load balancer" picks for each attempt (a replica that is down refuses the connection, as a
//! pod that is gone does until the Service notices):
//!
//! - an attempt that gets no 2xx (an error status, a refused connection, no answer within
//!   [`ATTEMPT_TIMEOUT`]) is tried again after a growing pause, up to [`RETRIES`] more times
//!   (Azure DevOps: 8 retries over a few minutes; the pauses are scaled to the soak's length),
//!   then the delivery is given up: the next resync must repair what it carried;
//! - some deliveries start late (held back for seconds, so that later events overtake them);
//! - some are delivered again after they succeeded, with the same notification id;
//! - a 4xx other than 408/429 is a refusal Azure DevOps does not retry (it puts the
//!   subscription on probation): the soak counts it, and fails, since every envelope it sends
//!   is well-formed and authenticated.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::rng::Rng;

/// Retries after the first attempt.
pub const RETRIES: u32 = 8;
/// How long an attempt may take before it counts as failed (Azure DevOps: about 20 s).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);
/// Deliveries in flight at once.
const IN_FLIGHT: usize = 32;

/// Delivery figures.
#[derive(Debug, Default)]
pub struct HookFigures {
    /// Events handed over for delivery.
    pub events: AtomicU64,
    /// HTTP attempts made (first attempts, retries, duplicates).
    pub attempts: AtomicU64,
    /// Attempts after a failed one.
    pub retries: AtomicU64,
    /// Deliveries repeated after they succeeded.
    pub duplicates: AtomicU64,
    /// Deliveries held back before their first attempt.
    pub late: AtomicU64,
    /// Deliveries that succeeded.
    pub delivered: AtomicU64,
    /// Deliveries given up after every retry failed.
    pub given_up: AtomicU64,
    /// Answers Azure DevOps would not retry (4xx other than 408/429), with the first one.
    pub refused: AtomicU64,
    pub first_refusal: std::sync::Mutex<Option<String>>,
}

impl HookFigures {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The delivery service: events go in with [`Hooks::deliver`], and are delivered in the
/// background until [`Hooks::finish`].
pub struct Hooks {
    queue: mpsc::UnboundedSender<Value>,
    tracker: TaskTracker,
    pub figures: Arc<HookFigures>,
    stop: CancellationToken,
}

/// How the deliveries behave.
#[derive(Debug, Clone)]
pub struct HookPlan {
    pub ports: Vec<u16>,
    pub secret: String,
    /// The first retry's pause; each next one doubles, up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Share of deliveries held back, and for how long at most.
    pub late_share: f64,
    pub max_lateness: Duration,
    /// Share of deliveries repeated after success.
    pub duplicate_share: f64,
}

impl Hooks {
    pub fn start(plan: HookPlan, seed: u64) -> Hooks {
        let (queue, mut events) = mpsc::unbounded_channel::<Value>();
        let tracker = TaskTracker::new();
        let figures = Arc::new(HookFigures::default());
        let stop = CancellationToken::new();
        let http = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .build()
            .expect("an HTTP client");
        let plan = Arc::new(plan);
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        let spawner = tracker.clone();
        let counters = Arc::clone(&figures);
        let stopped = stop.clone();
        tracker.spawn(async move {
            let mut rng = Rng::stream(seed, "hooks");
            while let Some(body) = events.recv().await {
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                    break;
                };
                let delivery = Delivery {
                    body,
                    rng: Rng::new(rng.next_u64()),
                    plan: Arc::clone(&plan),
                    http: http.clone(),
                    figures: Arc::clone(&counters),
                    stop: stopped.clone(),
                };
                spawner.spawn(async move {
                    delivery.run().await;
                    drop(slot);
                });
            }
        });
        Hooks {
            queue,
            tracker,
            figures,
            stop,
        }
    }

    /// Hands a service-hook envelope over for delivery.
    pub fn deliver(&self, body: Value) {
        self.figures.events.fetch_add(1, Ordering::Relaxed);
        let _ = self.queue.send(body);
    }

    /// Waits (at most `limit`) until every delivery handed over so far has succeeded or been
    /// given up; then stops. False when deliveries were still under way at the limit (they are
    /// abandoned).
    pub async fn finish(self, limit: Duration) -> bool {
        drop(self.queue);
        self.tracker.close();
        let done = tokio::time::timeout(limit, self.tracker.wait())
            .await
            .is_ok();
        self.stop.cancel();
        self.tracker.wait().await;
        done
    }
}

/// One delivery, with its own randomness.
struct Delivery {
    body: Value,
    rng: Rng,
    plan: Arc<HookPlan>,
    http: reqwest::Client,
    figures: Arc<HookFigures>,
    stop: CancellationToken,
}

/// What one attempt got.
enum Outcome {
    Delivered,
    Retry,
    Refused(String),
}

impl Delivery {
    async fn run(mut self) {
        if self.rng.chance(self.plan.late_share) {
            self.figures.late.fetch_add(1, Ordering::Relaxed);
            let wait = self.rng.between(Duration::ZERO, self.plan.max_lateness);
            if !self.pause(wait).await {
                return;
            }
        }
        if !self.until_delivered().await {
            return;
        }
        if self.rng.chance(self.plan.duplicate_share) {
            self.figures.duplicates.fetch_add(1, Ordering::Relaxed);
            let wait = self
                .rng
                .between(Duration::from_millis(100), self.plan.max_lateness);
            if self.pause(wait).await {
                self.until_delivered().await;
            }
        }
    }

    /// Sleeps unless the soak stops first; false when it stopped.
    async fn pause(&self, wait: Duration) -> bool {
        tokio::select! {
            _ = self.stop.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }

    /// Attempts and retries; true once delivered.
    async fn until_delivered(&mut self) -> bool {
        let mut backoff = self.plan.first_backoff;
        for attempt in 0..=RETRIES {
            if attempt > 0 {
                self.figures.retries.fetch_add(1, Ordering::Relaxed);
                if !self.pause(backoff).await {
                    return false;
                }
                backoff = (backoff * 2).min(self.plan.max_backoff);
            }
            match self.attempt().await {
                Outcome::Delivered => {
                    self.figures.delivered.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                Outcome::Retry => {}
                Outcome::Refused(what) => {
                    self.figures.refused.fetch_add(1, Ordering::Relaxed);
                    let mut first = self
                        .figures
                        .first_refusal
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    first.get_or_insert(what);
                    return false;
                }
            }
        }
        self.figures.given_up.fetch_add(1, Ordering::Relaxed);
        false
    }

    async fn attempt(&mut self) -> Outcome {
        self.figures.attempts.fetch_add(1, Ordering::Relaxed);
        let Some(port) = self.rng.pick(&self.plan.ports).copied() else {
            return Outcome::Retry;
        };
        let url = format!(
            "http://127.0.0.1:{port}{}",
            adoport_ingest::webhook::WEBHOOK_PATH
        );
        let sent = self
            .http
            .post(&url)
            .header("Authorization", crate::basic_auth(&self.plan.secret))
            .json(&self.body)
            .send()
            .await;
        let Ok(answer) = sent else {
            return Outcome::Retry;
        };
        let status = answer.status().as_u16();
        match status {
            200..=299 => Outcome::Delivered,
            408 | 429 => Outcome::Retry,
            400..=499 => {
                let text = answer.text().await.unwrap_or_default();
                Outcome::Refused(format!(
                    "{} {} → {status}: {}",
                    self.body["eventType"].as_str().unwrap_or("?"),
                    self.body["id"].as_str().unwrap_or("?"),
                    text.chars().take(300).collect::<String>()
                ))
            }
            _ => Outcome::Retry,
        }
    }
}
