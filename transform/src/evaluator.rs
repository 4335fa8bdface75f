//! Where the transform worker maps items: threads of our own, sized for the jq limits, with a
//! watchdog.
//!
//! Why not the async runtime's threads:
//! - **stack**: a tokio thread has 2 MiB; an evaluator thread has what the limits need
//!   ([`JqLimits::thread_stack`]): the guarded recursion stops with room to spare, and dropping
//!   or comparing the deepest value an evaluation can build never overflows (an overflow aborts
//!   the whole process, `adoport all` and its webhooks included);
//! - **a watchdog**: the guards stop an evaluation only when it reaches one. Every item is
//!   awaited with a timeout (twice the item time, plus a second); an item that does not come
//!   back (a long operation inside a single jq builtin) is failed as stalled, its thread is
//!   abandoned (it ends whenever that operation does) and replaced, and the event's remaining
//!   items go to another thread. The worker never waits on a mapping for longer than that;
//! - **the runtime stays responsive** (webhooks, health, heartbeats) while items are mapped;
//! - a panic inside jaq fails its item, not the worker.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use adoport_shared::messages::{Origin, RawAction, RawEvent};
use tokio::sync::mpsc;

use crate::jq::{JqLimits, Runaway};
use crate::mapping::{CompiledMapping, ItemProblem, KindOutcome, Resources, item_id};

/// A pool of evaluator threads. Cheap to clone; the threads end when the last clone is
/// dropped (an abandoned one when its evaluation does).
#[derive(Clone)]
pub struct Evaluator {
    jobs: mpsc::Sender<Job>,
    shared: Arc<Shared>,
}

struct Shared {
    limits: JqLimits,
    watchdog: Duration,
    jobs: Mutex<mpsc::Receiver<Job>>,
    /// Threads that take jobs (abandoned ones excluded), and how many there should be.
    alive: AtomicUsize,
    wanted: usize,
    abandoned: AtomicU64,
}

/// Some items of an event, for one thread.
struct Job {
    mapping: Arc<CompiledMapping>,
    event: Arc<RawEvent>,
    /// The first item to map.
    start: usize,
    replies: mpsc::Sender<Reply>,
    state: Arc<JobState>,
}

#[derive(Default)]
struct JobState {
    /// The id of the expression running (see [`CompiledMapping::expression`]).
    expression: AtomicUsize,
    /// Set by the watchdog: the thread stops taking jobs once its evaluation returns.
    abandoned: AtomicBool,
}

enum Reply {
    Started,
    Mapped(KindOutcome),
}

/// Why the evaluator could not start.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot start the jq evaluator threads ({stack_mib} MiB of stack each, for the jq limits): \
     {source}; lower ADOPORT__TRANSFORM__JQ_MAX_STEPS or ADOPORT__TRANSFORM__JQ_MAX_STACK_MIB"
)]
pub struct EvaluatorError {
    stack_mib: usize,
    #[source]
    source: std::io::Error,
}

impl Evaluator {
    /// Starts `threads` evaluator threads (at least one) evaluating within `limits`.
    pub fn start(limits: JqLimits, threads: usize) -> Result<Self, EvaluatorError> {
        Self::with_watchdog(
            limits,
            threads,
            limits.item_time * 2 + Duration::from_secs(1),
        )
    }

    /// [`Evaluator::start`] with another watchdog time (tests: to see it fire without a long
    /// wait).
    pub fn with_watchdog(
        limits: JqLimits,
        threads: usize,
        watchdog: Duration,
    ) -> Result<Self, EvaluatorError> {
        let wanted = threads.max(1);
        // Jobs waiting: one per event in flight is the most the worker makes.
        let (jobs, receiver) = mpsc::channel(wanted * 64);
        let evaluator = Self {
            jobs,
            shared: Arc::new(Shared {
                limits,
                watchdog,
                jobs: Mutex::new(receiver),
                alive: AtomicUsize::new(0),
                wanted,
                abandoned: AtomicU64::new(0),
            }),
        };
        for _ in 0..wanted {
            evaluator.spawn_thread()?;
        }
        Ok(evaluator)
    }

    /// Evaluations abandoned by the watchdog so far.
    pub fn abandoned(&self) -> u64 {
        self.shared.abandoned.load(Ordering::Relaxed)
    }

    /// How long the watchdog waits for one item: twice the item time, plus a second.
    pub fn watchdog(&self) -> Duration {
        self.shared.watchdog
    }

    fn spawn_thread(&self) -> Result<(), EvaluatorError> {
        let stack = self.shared.limits.thread_stack();
        let shared = self.shared.clone();
        shared.alive.fetch_add(1, Ordering::Relaxed);
        std::thread::Builder::new()
            .name("adoport-jq".into())
            .stack_size(stack)
            .spawn(move || evaluate_jobs(&shared))
            .map(|_| ())
            .map_err(|source| {
                self.shared.alive.fetch_sub(1, Ordering::Relaxed);
                EvaluatorError {
                    stack_mib: stack / (1024 * 1024),
                    source,
                }
            })
    }

    /// Tops the pool up after threads were abandoned (a failed spawn is retried at the next
    /// event).
    fn replenish(&self) {
        while self.shared.alive.load(Ordering::Relaxed) < self.shared.wanted {
            if let Err(e) = self.spawn_thread() {
                tracing::error!(error = %e, "an abandoned jq evaluator thread cannot be replaced");
                return;
            }
        }
    }

    /// Maps every item of `event` (not a GitOps event: those bypass the mapping), in order:
    /// one outcome per item.
    pub async fn map_event(
        &self,
        mapping: Arc<CompiledMapping>,
        event: Arc<RawEvent>,
    ) -> Vec<KindOutcome> {
        let total = event.items.len();
        let mut outcomes = Vec::with_capacity(total);
        while outcomes.len() < total {
            self.replenish();
            let start = outcomes.len();
            let (replies, mut received) = mpsc::channel(total - start + 1);
            let state = Arc::new(JobState::default());
            let job = Job {
                mapping: mapping.clone(),
                event: event.clone(),
                start,
                replies,
                state: state.clone(),
            };
            if self.jobs.send(job).await.is_err() {
                // Cannot happen: this evaluator holds the receiver.
                break;
            }
            // Waiting for a thread is not timed: each one finishes its item, or is replaced,
            // within the watchdog's time.
            if !matches!(received.recv().await, Some(Reply::Started)) {
                self.lost(
                    &mapping,
                    &event,
                    outcomes.len(),
                    &state,
                    &mut outcomes,
                    None,
                );
                continue;
            }
            while outcomes.len() < total {
                match tokio::time::timeout(self.watchdog(), received.recv()).await {
                    Ok(Some(Reply::Mapped(outcome))) => outcomes.push(outcome),
                    Ok(Some(Reply::Started)) => {}
                    // The thread ended without answering.
                    Ok(None) => {
                        let index = outcomes.len();
                        self.lost(&mapping, &event, index, &state, &mut outcomes, None);
                        break;
                    }
                    Err(_) => {
                        let index = outcomes.len();
                        let after = Some(self.watchdog());
                        self.lost(&mapping, &event, index, &state, &mut outcomes, after);
                        break;
                    }
                }
            }
        }
        outcomes
    }

    /// Gives up the thread of `state` (it keeps its current evaluation, takes no other job)
    /// and fails the item at `index` with the expression it was running.
    fn lost(
        &self,
        mapping: &CompiledMapping,
        event: &RawEvent,
        index: usize,
        state: &JobState,
        outcomes: &mut Vec<KindOutcome>,
        stalled_after: Option<Duration>,
    ) {
        if !state.abandoned.swap(true, Ordering::Relaxed) {
            self.shared.alive.fetch_sub(1, Ordering::Relaxed);
            self.shared.abandoned.fetch_add(1, Ordering::Relaxed);
        }
        let why = match stalled_after {
            Some(after) => Runaway::Stalled { after },
            None => Runaway::Panicked {
                message: "the evaluator thread ended".into(),
            },
        };
        let expression = state.expression.load(Ordering::Relaxed);
        let problem = stopped_item(mapping, event, index, expression, why);
        tracing::error!(
            problem = %problem,
            abandoned = self.abandoned(),
            "a jq evaluation was abandoned; its thread is replaced"
        );
        outcomes.push(KindOutcome::failed(problem));
    }
}

/// Maps `items` of `kind` on a thread of their own, sized for `limits` as the evaluator's are,
/// and waits for the outcomes (one per item): for tools that map without a runtime, such as
/// `adoport mapping test`. No watchdog: a stalled item stalls the caller.
pub fn map_blocking(
    mapping: &CompiledMapping,
    kind: &str,
    action: RawAction,
    items: &[serde_json::Value],
    limits: JqLimits,
) -> Result<Vec<KindOutcome>, EvaluatorError> {
    let stack = limits.thread_stack();
    std::thread::scope(|scope| {
        let mapped = std::thread::Builder::new()
            .name("adoport-jq".into())
            .stack_size(stack)
            .spawn_scoped(scope, || {
                items
                    .iter()
                    .map(|item| {
                        mapping.map_item(
                            Resources::of_kind(kind),
                            action,
                            item,
                            false,
                            &limits.for_item(),
                            None,
                        )
                    })
                    .collect()
            })
            .map_err(|source| EvaluatorError {
                stack_mib: stack / (1024 * 1024),
                source,
            })?;
        Ok(mapped
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    })
}

/// The failure of item `index` of `event`, stopped in the expression with id `expression`.
fn stopped_item(
    mapping: &CompiledMapping,
    event: &RawEvent,
    index: usize,
    expression: usize,
    why: Runaway,
) -> ItemProblem {
    let (resource_index, field_path, expression) =
        mapping
            .expression(expression)
            .unwrap_or((0, "(before its first expression)", ""));
    ItemProblem::Runaway {
        resource_index,
        kind: event.kind.clone(),
        item_id: event.items.get(index).map_or_else(String::new, item_id),
        field_path: field_path.to_owned(),
        expression: expression.to_owned(),
        reason: why.to_string(),
    }
}

/// An evaluator thread: takes jobs until the evaluator is gone, or until it is abandoned.
fn evaluate_jobs(shared: &Shared) {
    loop {
        let job = shared
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .blocking_recv();
        let Some(job) = job else { return };
        evaluate(&job, &shared.limits);
        if job.state.abandoned.load(Ordering::Relaxed) {
            return;
        }
    }
}

fn evaluate(job: &Job, limits: &JqLimits) {
    if job.replies.blocking_send(Reply::Started).is_err() {
        return;
    }
    let event = &job.event;
    let live = matches!(event.origin, Origin::Webhook { .. });
    for (index, item) in event.items.iter().enumerate().skip(job.start) {
        job.state.expression.store(usize::MAX, Ordering::Relaxed);
        let budget = limits.for_item();
        let mapped = catch_unwind(AssertUnwindSafe(|| {
            job.mapping.map_item(
                Resources::of_event(event),
                event.action,
                item,
                live,
                &budget,
                Some(&job.state.expression),
            )
        }));
        let outcome = mapped.unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            let expression = job.state.expression.load(Ordering::Relaxed);
            let why = Runaway::Panicked { message };
            KindOutcome::failed(stopped_item(&job.mapping, event, index, expression, why))
        });
        if job.state.abandoned.load(Ordering::Relaxed)
            || job.replies.blocking_send(Reply::Mapped(outcome)).is_err()
        {
            return;
        }
    }
}
