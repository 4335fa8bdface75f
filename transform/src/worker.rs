//! The transform worker: raw events in, entity changes out, acked only once the changes are
//! confirmed by the bus.
//!
//! Each delivery's items are mapped on the evaluator's threads (see [`crate::evaluator`]; jaq
//! values never leave them), its changes are routed to the partition of their entity and
//! published with confirms, and only then is the raw event acked. A raw event that cannot be
//! read (bad JSON, unknown schema version) is dead-lettered with the reason. Items a mapping
//! cannot handle are counted and reported per kind in a periodic summary, not one log line per
//! item — except an item whose expression ran away (stopped at a jq limit): it is logged, and
//! dead-lettered on its own (the event is settled by parking a copy that holds only such
//! items, with the reason), while the event's other items are published as usual. As any failed
//! item, it keeps reconciliation from deleting after a resync.
//!
//! At most `prefetch` events and [`IN_FLIGHT_BYTES`] of their bodies are mapped at once: an
//! event is decoded, mapped and its changes encoded while in flight (several times its bytes),
//! and a crawl's page is up to hundreds of KB, so the byte bound, not the count, is what keeps
//! transform's memory the same for any organization.
//!
//! A live event's (webhook's) changes take the bus's live lane ([`Bus::live_lane`]): their
//! confirms do not wait behind the resync's changes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, futures::Notified};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::evaluator::{Evaluator, EvaluatorError};
use crate::jq::JqLimits;
use crate::mapping::versions::CompiledVersions;
use crate::mapping::{CompiledMapping, ItemProblem, KindOutcome, Resources};
use adoport_shared::bus::{Bus, BusError, Delivery, Destination, Outgoing};
use adoport_shared::messages::{
    EntityChange, GITOPS_KIND, GitopsSpecError, Origin, RawEvent, ResourceProgress, SCHEMA_VERSION,
    WriteOptions, decode, encode,
};
use adoport_shared::metrics::KindCounters;
use adoport_shared::telemetry::live_timing::{self, Stage};
use adoport_shared::topology::{Topology, WorkQueue};

/// Bytes of raw events (message bodies) mapped at once, whatever the prefetch: each event is
/// decoded, mapped and its changes encoded while it is in flight, several times its body in
/// all, and a crawl's page is up to hundreds of KB. An event larger than this is mapped alone.
pub const IN_FLIGHT_BYTES: usize = 1024 * 1024;

/// How often the per-kind problem summary is logged.
const PROBLEM_SUMMARY_EVERY: Duration = Duration::from_secs(30);

/// Counters of one transform worker; cheap to clone, read by `all`, the demo and the benchmark.
#[derive(Debug, Clone, Default)]
pub struct TransformStats {
    inner: Arc<StatsInner>,
}

#[derive(Debug, Default)]
struct StatsInner {
    events_settled: AtomicU64,
    events_dead_lettered: AtomicU64,
    items: AtomicU64,
    changes_published: AtomicU64,
    item_problems: AtomicU64,
    item_failures: AtomicU64,
    items_dead_lettered: AtomicU64,
    problems: Mutex<BTreeMap<String, ProblemCount>>,
    /// Per kind: raw `events` settled, `items` mapped, `changes` published, `item_failures`.
    per_kind: KindCounters,
    /// Woken whenever an event is settled.
    changed: Notify,
}

#[derive(Debug, Default, Clone)]
struct ProblemCount {
    count: u64,
    example: String,
}

impl TransformStats {
    /// Raw events acked or dead-lettered.
    pub fn events_settled(&self) -> u64 {
        self.inner.events_settled.load(Ordering::Relaxed)
    }
    pub fn events_dead_lettered(&self) -> u64 {
        self.inner.events_dead_lettered.load(Ordering::Relaxed)
    }
    /// Raw items mapped.
    pub fn items(&self) -> u64 {
        self.inner.items.load(Ordering::Relaxed)
    }
    /// Entity changes confirmed on the bus.
    pub fn changes_published(&self) -> u64 {
        self.inner.changes_published.load(Ordering::Relaxed)
    }
    /// Items (or fields) the mapping could not handle.
    pub fn item_problems(&self) -> u64 {
        self.inner.item_problems.load(Ordering::Relaxed)
    }
    /// Items that could not be mapped as the mapping says (no entity, or a wrong one); they
    /// block the deletion of stale entities. Null or failed fields are not counted here.
    pub fn item_failures(&self) -> u64 {
        self.inner.item_failures.load(Ordering::Relaxed)
    }
    /// Items whose mapping expression ran away (stopped at a jq limit), dead-lettered on their
    /// own (also counted as item failures).
    pub fn items_dead_lettered(&self) -> u64 {
        self.inner.items_dead_lettered.load(Ordering::Relaxed)
    }

    /// Per-kind counters: `events` (raw events acked), `items` (raw items mapped), `changes`
    /// (entity changes confirmed downstream), `item_failures`.
    pub fn per_kind(&self) -> &KindCounters {
        &self.inner.per_kind
    }

    /// Resolves at the next settled event. Create it (and `enable` it) before reading the
    /// counters, so that no change is missed between the read and the wait.
    pub fn changed(&self) -> Notified<'_> {
        self.inner.changed.notified()
    }

    /// Waits until at least `events` raw events were settled (wrap it in a timeout).
    pub async fn wait_for_settled(self, events: u64) {
        loop {
            let changed = self.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.events_settled() >= events {
                return;
            }
            changed.await;
        }
    }

    fn settled(&self) {
        self.inner.events_settled.fetch_add(1, Ordering::Relaxed);
        self.inner.changed.notify_waiters();
    }

    fn record_problem(&self, kind: &str, problem: &ItemProblem) {
        self.inner.item_problems.fetch_add(1, Ordering::Relaxed);
        if problem.is_item_failure() {
            self.inner.item_failures.fetch_add(1, Ordering::Relaxed);
            self.inner.per_kind.add(kind, "item_failures", 1);
        }
        // Warnings are grouped per kind, problem and field: one summary line each.
        let key = match problem.field_path() {
            Some(field) => format!("{kind}: {} {field}", problem.category()),
            None => format!("{kind}: {}", problem.category()),
        };
        let mut problems = self
            .inner
            .problems
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let entry = problems.entry(key).or_default();
        entry.count += 1;
        if entry.example.is_empty() {
            entry.example = problem.to_string();
        }
    }

    /// Logs and resets the problems seen since the last summary.
    fn log_problem_summary(&self) {
        let problems = std::mem::take(
            &mut *self
                .inner
                .problems
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for (key, ProblemCount { count, example }) in problems {
            tracing::warn!(problem = %key, count, example = %example, "mapping problems since the last summary");
        }
    }
}

/// Why the worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Evaluator(#[from] EvaluatorError),
}

/// Turns one raw event into the changes to publish, mapping its items on this thread with the
/// default limits (tests and tools; the worker maps on its evaluator). Returns the changes and
/// how many items failed.
pub fn changes_for(
    mapping: &CompiledMapping,
    event: &RawEvent,
    write: WriteOptions,
    topology: &Topology,
    stats: &TransformStats,
) -> (Vec<Outgoing>, u64) {
    let outcomes = if event.kind == GITOPS_KIND {
        crate::gitops::outcomes(event)
    } else {
        event
            .items
            .iter()
            .map(|item| match event.origin {
                // A live event re-evaluates the selector: an item that no longer passes becomes
                // a delete (and a deletion event deletes), as Ocean does for webhooks.
                Origin::Webhook { .. } => {
                    mapping.apply_to(Resources::of_event(event), event.action, item, true)
                }
                Origin::Resync { .. } => {
                    mapping.apply_to(Resources::of_event(event), event.action, item, false)
                }
            })
            .collect()
    };
    let mapped = collect_changes(event, outcomes, write, topology, stats);
    (mapped.changes, mapped.failed_items)
}

/// What the items of one raw event came to.
struct Mapped {
    changes: Vec<Outgoing>,
    /// Items that could not be mapped as the mapping says (they block deletions).
    failed_items: u64,
    /// Items whose expression ran away: their index, and why.
    stopped: Vec<(usize, ItemProblem)>,
    /// Per mapping resource: items it could not map.
    failed_per_resource: BTreeMap<usize, u64>,
}

/// Counts the outcomes' problems and turns their changes into messages.
fn collect_changes(
    event: &RawEvent,
    outcomes: Vec<KindOutcome>,
    write: WriteOptions,
    topology: &Topology,
    stats: &TransformStats,
) -> Mapped {
    let mut out = Vec::new();
    let mut failed_items = 0;
    let mut stopped = Vec::new();
    let mut failed_per_resource = BTreeMap::new();
    for (index, outcome) in outcomes.into_iter().enumerate() {
        for problem in &outcome.problems {
            stats.record_problem(&event.kind, problem);
            if problem.is_runaway() {
                stopped.push((index, problem.clone()));
            }
        }
        if outcome.problems.iter().any(ItemProblem::is_item_failure) {
            failed_items += 1;
        }
        let failed_resources: BTreeSet<usize> = (outcome.problems.iter())
            .filter(|problem| problem.is_item_failure())
            .map(ItemProblem::resource_index)
            .collect();
        for resource in failed_resources {
            *failed_per_resource.entry(resource).or_default() += 1;
        }
        for change in outcome.changes {
            let partition = topology.partition_of(&change.blueprint, &change.identifier);
            let message = EntityChange {
                v: SCHEMA_VERSION,
                blueprint: change.blueprint,
                identifier: change.identifier,
                kind: event.kind.clone(),
                resource_index: u32::try_from(change.resource_index).unwrap_or(u32::MAX),
                origin: event.origin.clone(),
                observed_at: event.observed_at,
                raw_event_id: event.id,
                write,
                op: change.op,
            };
            out.push(Outgoing::new(
                Destination::Change { partition },
                encode(&message),
            ));
        }
    }
    stats
        .inner
        .items
        .fetch_add(event.items.len() as u64, Ordering::Relaxed);
    stats
        .inner
        .per_kind
        .add(&event.kind, "items", event.items.len() as u64);
    Mapped {
        changes: out,
        failed_items,
        stopped,
        failed_per_resource,
    }
}

/// The dead letter for the items of `event` whose expression ran away: a copy of the event
/// with only those items (same id: a requeue after fixing the mapping maps them again), and
/// the reason naming each (expression path, kind, item id, the limit).
fn stopped_items_letter(event: &RawEvent, stopped: &[(usize, ItemProblem)]) -> (Vec<u8>, String) {
    const LISTED: usize = 5;
    let mut parked = event.clone();
    parked.items = stopped
        .iter()
        .filter_map(|(index, _)| event.items.get(*index).cloned())
        .collect();
    let mut reasons: Vec<String> = stopped
        .iter()
        .take(LISTED)
        .map(|(_, problem)| problem.to_string())
        .collect();
    if stopped.len() > LISTED {
        reasons.push(format!("and {} more", stopped.len() - LISTED));
    }
    let reason = format!(
        "{} of the {} items of raw event {} could not be mapped, their expression ran away \
         (fix the mapping, then requeue this message): {}",
        stopped.len(),
        event.items.len(),
        event.id,
        reasons.join("; ")
    );
    (encode(&parked), reason)
}

async fn process(
    bus: Bus,
    versions: Arc<CompiledVersions>,
    evaluator: Evaluator,
    stats: TransformStats,
    mut delivery: Delivery,
) -> Result<(), BusError> {
    let event: RawEvent = match decode(&delivery.body) {
        Ok(event) => event,
        Err(e) => {
            tracing::error!(error = %e, "unreadable raw event dead-lettered");
            delivery.dead_letter(&e.to_string()).await?;
            stats
                .inner
                .events_dead_lettered
                .fetch_add(1, Ordering::Relaxed);
            // Through `settled`, so that waiters on the counters wake up.
            stats.settled();
            return Ok(());
        }
    };
    let live = matches!(event.origin, Origin::Webhook { .. });
    if live {
        live_timing::record(event.id, Stage::TransformReceived);
    }
    if let Some(spec_error) = GitopsSpecError::of(&event) {
        let reason = spec_error.to_string();
        tracing::warn!(event_id = %event.id, reason = %reason, "broken GitOps spec dead-lettered");
        delivery.dead_letter(&reason).await?;
        stats
            .inner
            .events_dead_lettered
            .fetch_add(1, Ordering::Relaxed);
        stats.inner.per_kind.add(&event.kind, "dead_lettered", 1);
        stats.settled();
        return Ok(());
    }
    // A resync's event is mapped with the version its crawl ran with; others with the one in
    // force.
    let in_force = versions.for_event(event.mapping_version.as_ref()).await;
    let event = Arc::new(event);
    let outcomes = if event.kind == GITOPS_KIND {
        crate::gitops::outcomes(&event)
    } else {
        evaluator
            .map_event(in_force.compiled.clone(), event.clone())
            .await
    };
    let Mapped {
        mut changes,
        failed_items,
        stopped,
        failed_per_resource,
    } = collect_changes(&event, outcomes, in_force.write, bus.topology(), &stats);
    let count = changes.len() as u64;
    if live {
        live_timing::record(event.id, Stage::Mapped);
    }
    // A resync's event also reports what it produced (and how many of its items failed) to
    // the reconciliation coordinator, in the same confirmed publish as the changes.
    if let Some(resync_id) = event.origin.resync_id() {
        let mut produced = Vec::with_capacity(changes.len());
        let mut related = Vec::new();
        // Every resource that mapped the event, with what it made of it (Ocean's per-resource
        // counts); GitOps specs belong to no mapping resource.
        let mut per_resource: Vec<ResourceProgress> = if event.kind == GITOPS_KIND {
            Vec::new()
        } else {
            (in_force
                .compiled
                .indices(Resources::of_event(&event))
                .into_iter())
            .map(|resource| ResourceProgress {
                resource,
                items: event.items.len() as u64,
                produced: 0,
                failed_items: failed_per_resource
                    .get(&(resource as usize))
                    .copied()
                    .unwrap_or(0),
            })
            .collect()
        };
        for outgoing in &changes {
            if let Ok(change) = decode::<EntityChange>(&outgoing.body)
                && let adoport_shared::messages::ChangeOp::Upsert { entity } = &change.op
            {
                if let Some(relations) = entity.get("relations").and_then(|r| r.as_object()) {
                    for target in relations.values() {
                        match target {
                            serde_json::Value::String(id) => related.push(id.clone()),
                            serde_json::Value::Array(ids) => related
                                .extend(ids.iter().filter_map(|id| id.as_str().map(String::from))),
                            _ => {}
                        }
                    }
                }
                if let Some(resource) =
                    (per_resource.iter_mut()).find(|r| r.resource == change.resource_index)
                {
                    resource.produced += 1;
                }
                produced.push((change.blueprint, change.identifier));
            }
        }
        let progress = adoport_shared::messages::ResyncControl::Progress {
            v: SCHEMA_VERSION,
            resync_id,
            kind: event.kind.clone(),
            raw_event_id: event.id,
            produced,
            related,
            failed_items,
            attempt: event.attempt,
            mapping_version: Some(in_force.version.id.clone()),
            resources: event.resources.clone(),
            per_resource,
        };
        changes.push(Outgoing::new(
            Destination::ResyncProgress,
            encode(&progress),
        ));
    }
    // Changes first, ack after: a crash in between redelivers the event (duplicates are
    // harmless), never loses it.
    // A live event's changes take the live lane: their confirms do not wait behind the
    // resync's changes (ordering per entity is the version check's, as across raw events).
    let lane = if live { bus.live_lane() } else { bus.clone() };
    lane.publish_all(changes).await?;
    if live {
        live_timing::record(event.id, Stage::ChangesConfirmed);
    }
    stats
        .inner
        .changes_published
        .fetch_add(count, Ordering::Relaxed);
    if stopped.is_empty() {
        delivery.ack().await?;
    } else {
        for (_, problem) in &stopped {
            tracing::error!(event_id = %event.id, problem = %problem, "item dead-lettered: its mapping expression ran away");
        }
        // Settled by parking the stopped items (confirmed), which also removes the event.
        let (body, reason) = stopped_items_letter(&event, &stopped);
        delivery.body = body.into();
        delivery.dead_letter(&reason).await?;
        let parked = stopped.len() as u64;
        stats
            .inner
            .items_dead_lettered
            .fetch_add(parked, Ordering::Relaxed);
        stats
            .inner
            .per_kind
            .add(&event.kind, "items_dead_lettered", parked);
    }
    stats.inner.per_kind.add(&event.kind, "changes", count);
    stats.inner.per_kind.add(&event.kind, "events", 1);
    stats.settled();
    tracing::debug!(event_id = %event.id, kind = %event.kind, changes = count, "raw event transformed");
    Ok(())
}

/// Consumes raw events until shutdown, `prefetch` of them and at most [`IN_FLIGHT_BYTES`] of
/// their bodies in flight at once, mapping their items within `limits`.
///
/// `mapping` follows the mapping versions (see [`crate::mapping::versions`]): a resync's raw
/// event is mapped with the version its crawl ran with, any other with the version in force,
/// each with that version's write options.
pub async fn run(
    bus: Bus,
    mapping: Arc<CompiledVersions>,
    prefetch: u16,
    limits: JqLimits,
    stats: TransformStats,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    // As many threads as cores (mapping is CPU work), and no more than events in flight.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let evaluator = Evaluator::start(limits, cores.min(usize::from(prefetch.max(1))))?;
    let mut subscription = bus.subscribe(WorkQueue::Raw, prefetch).await?;
    let slots = Arc::new(Semaphore::new(usize::from(prefetch.max(1))));
    let bytes = Arc::new(Semaphore::new(IN_FLIGHT_BYTES));
    let mut in_flight = JoinSet::new();
    let mut summary = tokio::time::interval(PROBLEM_SUMMARY_EVERY);
    summary.tick().await;
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = summary.tick() => { stats.log_problem_summary(); continue; }
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let delivery = tokio::select! {
            _ = shutdown.cancelled() => break,
            delivery = subscription.next() => match delivery {
                Some(delivery) => delivery,
                None => break,
            },
        };
        // Room for its bytes; meanwhile the event stays unmapped (on RabbitMQ, unacked: a
        // shutdown here leaves it to the broker).
        let weight = delivery.body.len().clamp(1, IN_FLIGHT_BYTES);
        let room = tokio::select! {
            _ = shutdown.cancelled() => break,
            room = bytes.clone().acquire_many_owned(u32::try_from(weight).unwrap_or(u32::MAX)) => match room {
                Ok(room) => room,
                Err(_) => break,
            },
        };
        let (bus, mapping, stats) = (bus.clone(), mapping.clone(), stats.clone());
        let evaluator = evaluator.clone();
        in_flight.spawn(async move {
            let _permits = (permit, room);
            process(bus, mapping, evaluator, stats, delivery).await
        });
        // Reap finished tasks so that their errors surface promptly.
        while let Some(done) = in_flight.try_join_next() {
            report(done);
        }
    }
    // Let in-flight events finish: their changes are published and the events acked, or they
    // stay unacked and the broker redelivers them.
    while let Some(done) = in_flight.join_next().await {
        report(done);
    }
    stats.log_problem_summary();
    Ok(())
}

fn report(done: Result<Result<(), BusError>, tokio::task::JoinError>) {
    match done {
        Ok(Ok(())) => {}
        Ok(Err(BusError::ShuttingDown)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "raw event not settled; the broker will deliver it again")
        }
        Err(e) => tracing::error!(error = %e, "transform task failed"),
    }
}
