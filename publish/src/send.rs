//! The send tasks: each takes what the coordinator ([`crate::worker`]) closed — a batch of live
//! upserts, a check group of a resync's upserts, or deletes — makes its requests to Port, and
//! settles every delivery it holds:
//!
//! - **ack** once Port accepted the entity (or the delete, or 404 on delete), once Port's
//!   current state shows it already holds exactly what a resync upsert would write, or when an
//!   older change was superseded by the newer one written;
//! - **dead-letter** with Port's status, error and body excerpt when Port rejects it, when it is
//!   too large even alone, or after `max_attempts` transient failures;
//! - **leave unsettled** (back to the broker) on shutdown or on a fatal auth error.
//!
//! A resync's upserts are checked against Port, never against memory: the task reads the
//! current state of the group's entities in one request ([`PortClient::current_entities`]),
//! acks those Port already holds ([`crate::compare`]) and writes only the others, in bulk
//! requests within the write limits, sent concurrently under the shared request limit. A read
//! that keeps failing is treated like a write that does (retried, then dead-lettered), never as
//! "unchanged"; a read Port refuses outright (a 4xx) makes the group be written without
//! comparing. Live upserts are changes by nature and are written at once.
//!
//! Every request waits for a slot of the adaptive limit ([`crate::concurrency`]) and after any
//! pause a 429 asked for; the schedule of retries is [`crate::retry`]'s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use adoport_shared::bus::Delivery;
use adoport_shared::messages::{ResyncId, WriteOptions};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::batcher::{BatchKey, BatchLimits, split_in_halves, split_into_batches};
use crate::client::BulkOutcome;
use crate::client::{DeleteOutcome, EntityResult, PortClient};
use crate::compare;
use crate::concurrency::{AdaptiveLimit, Permit, Signal};
use crate::error::PublishError;
use crate::ordering::EntityKey;
use crate::retry::{Next, Retry, RetryPolicy, Schedule, classify_error, classify_status};
use crate::stats::{Counter, PublishStats};
use adoport_shared::metrics::PublishOutcome;

/// What every send task shares with the coordinator.
pub(crate) struct Shared {
    pub(crate) client: PortClient,
    pub(crate) retry: RetryPolicy,
    /// The limits of one write request: a check group's upserts are written in these.
    pub(crate) write_limits: BatchLimits,
    pub(crate) stats: PublishStats,
    /// Requests in flight, limited adaptively (AIMD on 429s).
    pub(crate) requests: AdaptiveLimit,
    /// No request starts before this instant (set by a 429 with a wait hint).
    pub(crate) paused_until: Mutex<Option<Instant>>,
    /// Cancelled on shutdown or a fatal error: stop reading, stop retrying.
    pub(crate) stop: CancellationToken,
}

impl Shared {
    /// The client a batch is written with: GitOps entities carry the GitOps User-Agent (and are
    /// read with its ownership).
    fn client_for(&self, gitops: bool) -> PortClient {
        if gitops {
            self.client.gitops()
        } else {
            self.client.clone()
        }
    }
}

/// A delivery (and the older ones it superseded) for one entity.
pub(crate) struct Held {
    /// Index of the partition the delivery came from.
    pub(crate) source: usize,
    pub(crate) key: EntityKey,
    pub(crate) kind: String,
    /// The mapping resource that made the change (its index in `resources`).
    pub(crate) resource: u32,
    /// The resync the change came from, if any (for the resync's summary).
    pub(crate) resync_id: Option<ResyncId>,
    pub(crate) observed_at: DateTime<Utc>,
    pub(crate) delivery: Delivery,
    /// Deliveries of older changes of the same entity (with their source), acked together
    /// with this one.
    pub(crate) superseded: Vec<(usize, Delivery)>,
}

impl Held {
    /// What a dead-letter reason names: `entity … of blueprint …, kind …`.
    fn describe(&self) -> String {
        format!(
            "entity {} of blueprint {}, kind {}",
            self.key.identifier, self.key.blueprint, self.kind
        )
    }

    /// The source of every delivery this holds.
    pub(crate) fn sources(&self) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(self.source).chain(self.superseded.iter().map(|(source, _)| *source))
    }
}

pub(crate) enum Payload {
    Upsert {
        batch_key: BatchKey,
        entity: Value,
        /// The entity's JSON size, for the request body bound.
        json_bytes: usize,
    },
    Delete {
        delete_dependents: bool,
        /// From a live event: delete only if this integration owns the entity (search first),
        /// as the Python integration does. A resync's deletes come from the reconciliation.
        check_ownership: bool,
    },
}

pub(crate) struct Item {
    pub(crate) held: Held,
    pub(crate) payload: Payload,
}

impl Item {
    /// Takes over an older change of the same entity: only this one is sent, both are settled.
    pub(crate) fn absorb(&mut self, older: Item) {
        self.held
            .superseded
            .push((older.held.source, older.held.delivery));
        self.held.superseded.extend(older.held.superseded);
    }
}

/// What a send task tells its coordinator when it ends.
pub(crate) struct TaskEnd {
    pub(crate) fatal: Option<PublishError>,
}

impl TaskEnd {
    const DONE: TaskEnd = TaskEnd { fatal: None };
}

/// One upsert on its way to Port.
struct Upsert {
    entity: Value,
    json_bytes: usize,
    held: Held,
}

fn upserts_of(items: Vec<Item>) -> Vec<Upsert> {
    items
        .into_iter()
        .filter_map(|item| match item.payload {
            Payload::Upsert {
                entity, json_bytes, ..
            } => Some(Upsert {
                entity,
                json_bytes,
                held: item.held,
            }),
            Payload::Delete { .. } => None,
        })
        .collect()
}

/// Writes a batch of live upserts (within the write limits already).
pub(crate) async fn upserts(shared: Arc<Shared>, key: BatchKey, items: Vec<Item>) -> TaskEnd {
    write(&shared, &key, upserts_of(items)).await
}

/// A check group of a resync's upserts: reads Port's current state of its entities once, acks
/// those Port already holds, writes the others.
pub(crate) async fn checked_upserts(
    shared: Arc<Shared>,
    key: BatchKey,
    items: Vec<Item>,
) -> TaskEnd {
    let stats = &shared.stats;
    let (comparable, mut differing): (Vec<Upsert>, Vec<Upsert>) = upserts_of(items)
        .into_iter()
        .partition(|u| compare::comparable(&u.entity));
    if !comparable.is_empty() {
        let client = shared.client_for(key.gitops);
        let identifiers: Vec<&str> = comparable
            .iter()
            .map(|u| u.held.key.identifier.as_str())
            .collect();
        let operation = format!(
            "read of the current state of {} entities of blueprint {}",
            identifiers.len(),
            key.blueprint
        );
        let mut schedule = shared.retry.schedule();
        let read = with_retries(
            &shared,
            &mut schedule,
            Counter::PortReads,
            &operation,
            || client.current_entities(&key.blueprint, &identifiers),
        )
        .await;
        match read {
            Ok(current) => {
                let in_port: HashMap<&str, &Value> = current
                    .iter()
                    .filter_map(|e| Some((e.get("identifier")?.as_str()?, e)))
                    .collect();
                for upsert in comparable {
                    stats.incr(Counter::Compared);
                    let holds = in_port
                        .get(upsert.held.key.identifier.as_str())
                        .is_some_and(|theirs| {
                            compare::port_holds(&upsert.entity, theirs, key.merge)
                        });
                    if holds {
                        stats.incr(Counter::SkippedUnchanged);
                        let held = upsert.held;
                        stats.per_kind_incr(
                            &held.kind,
                            held.resource,
                            PublishOutcome::SkippedUnchanged,
                            held.resync_id,
                        );
                        accept(stats, held, "Port already holds it").await;
                    } else {
                        differing.push(upsert);
                    }
                }
            }
            Err(Failure::Refused(error)) if !error.is_auth() => {
                tracing::warn!(
                    blueprint = %key.blueprint, entities = comparable.len(), error = %error,
                    "Port refused the read of its current state; writing these entities without comparing"
                );
                differing.extend(comparable);
            }
            Err(Failure::GaveUp { attempts, error }) => {
                let reason = format!(
                    "gave up after {attempts} attempts; last error: {error} ({operation}, before writing it)"
                );
                reject_all(stats, comparable.into_iter().map(|u| u.held), &reason).await;
            }
            Err(stop) => return stop.task_end(),
        }
    }
    write(&shared, &key, differing).await
}

/// One bulk request's entities being written (a 413 splits a group in halves).
struct Group {
    entities: Vec<Value>,
    held: Vec<Held>,
    schedule: Schedule,
}

impl Group {
    fn new(upserts: Vec<Upsert>, policy: &RetryPolicy) -> Self {
        let (entities, held) = upserts.into_iter().map(|u| (u.entity, u.held)).unzip();
        Self {
            entities,
            held,
            schedule: policy.schedule(),
        }
    }
}

/// How the writing of one group ended.
enum GroupEnd {
    /// Every delivery settled.
    Settled,
    /// Port refused the body as too large: send these halves instead.
    Split(Box<(Group, Group)>),
    /// Shutdown or a fatal error: the deliveries go back to the broker.
    Stop(Option<PublishError>),
}

/// Writes `upserts` in bulk requests within the write limits, concurrently (each request takes
/// its own slot of the shared limit), until every delivery is settled or the task must stop.
async fn write(shared: &Shared, key: &BatchKey, upserts: Vec<Upsert>) -> TaskEnd {
    let sized = upserts.into_iter().map(|u| {
        let bytes = u.json_bytes;
        (u, bytes)
    });
    let mut writing = FuturesUnordered::new();
    for batch in split_into_batches(shared.write_limits, sized) {
        writing.push(write_group(shared, key, Group::new(batch, &shared.retry)));
    }
    while let Some(end) = writing.next().await {
        match end {
            GroupEnd::Settled => {}
            GroupEnd::Split(halves) => {
                let (first, second) = *halves;
                writing.push(write_group(shared, key, first));
                writing.push(write_group(shared, key, second));
            }
            GroupEnd::Stop(fatal) => return TaskEnd { fatal },
        }
    }
    TaskEnd::DONE
}

/// Sends one bulk upsert until its entities are settled: retries the transient failures
/// (the whole request, or the entities a 207 lists as retryable), dead-letters the rest.
async fn write_group(shared: &Shared, key: &BatchKey, mut group: Group) -> GroupEnd {
    let client = shared.client_for(key.gitops);
    let write = WriteOptions {
        merge: key.merge,
        create_missing_related_entities: key.create_missing_related_entities,
        delete_dependents: false,
    };
    loop {
        let permit = request_slot(shared).await;
        shared.stats.incr(Counter::PortRequests);
        let result = client
            .bulk_upsert(
                &key.blueprint,
                &group.entities,
                &write,
                key.event_type,
                key.resync_id,
            )
            .await;
        release(permit, &result);
        let (decision, last_error) = match result {
            Ok(outcome) => match settle_results(&shared.stats, &mut group, outcome).await {
                Some(retry_reason) => (Retry::Retry, retry_reason),
                None => return GroupEnd::Settled,
            },
            Err(error) => match on_failed_upsert(shared, key, group, error).await {
                Ok((again, decision, error)) => {
                    group = again;
                    (decision, error)
                }
                Err(end) => return end,
            },
        };
        let next = group
            .schedule
            .wait_next(&decision, &shared.stop, |delay, attempt| {
                shared.stats.incr(Counter::Retried);
                tracing::warn!(
                    blueprint = %key.blueprint,
                    entities = group.held.len(),
                    attempt,
                    delay_ms = delay.as_millis() as u64,
                    error = %last_error,
                    "bulk upsert failed; retrying"
                );
            })
            .await;
        match next {
            Next::Again => {}
            // Shutting down: the deliveries go back to the broker.
            Next::Stopped => return GroupEnd::Stop(None),
            Next::GaveUp { attempts } => {
                let reason = format!("gave up after {attempts} attempts; last error: {last_error}");
                reject_all(&shared.stats, group.held, &reason).await;
                return GroupEnd::Settled;
            }
        }
    }
}

/// Settles the entities of a 200 or 207 by their results: acks the accepted ones,
/// dead-letters the rejected ones that retrying cannot help, and keeps the others in `group`
/// for the next attempt. Returns the last retryable rejection when any is left.
async fn settle_results(
    stats: &PublishStats,
    group: &mut Group,
    outcome: BulkOutcome,
) -> Option<String> {
    let mut retry_entities = Vec::new();
    let mut retry_held = Vec::new();
    let mut retry_reason = String::new();
    let trace = outcome
        .trace_id
        .as_deref()
        .map(|t| format!(" (x-trace-id {t})"))
        .unwrap_or_default();
    let entities = std::mem::take(&mut group.entities);
    let held = std::mem::take(&mut group.held);
    for ((result, entity), held) in outcome.results.into_iter().zip(entities).zip(held) {
        let EntityResult::Rejected {
            status,
            error,
            message,
        } = result
        else {
            stats.incr(Counter::Upserted);
            stats.per_kind_incr(
                &held.kind,
                held.resource,
                PublishOutcome::Upserted,
                held.resync_id,
            );
            accept(stats, held, "written to Port").await;
            continue;
        };
        let reason = format!(
            "Port rejected entity {} of blueprint {} (kind {}): HTTP {status} {error}: {message}{trace}",
            held.key.identifier, held.key.blueprint, held.kind
        );
        if classify_status(status).is_retryable() {
            retry_reason = reason;
            retry_entities.push(entity);
            retry_held.push(held);
        } else {
            reject(stats, held, &reason).await;
        }
    }
    group.entities = retry_entities;
    group.held = retry_held;
    (!group.held.is_empty()).then_some(retry_reason)
}

/// What a failed bulk upsert means for its group: retry it (with the decision and the error
/// to log), or end it (split in halves on 413, dead-lettered, or stopped on refused
/// credentials).
async fn on_failed_upsert(
    shared: &Shared,
    key: &BatchKey,
    group: Group,
    error: PublishError,
) -> Result<(Group, Retry, String), GroupEnd> {
    let decision = classify_error(&error);
    match decision {
        Retry::Success => Err(GroupEnd::Settled),
        Retry::Retry | Retry::RetryAfter(_) => {
            pause_all(shared, &error, &decision);
            Ok((group, decision, error.to_string()))
        }
        Retry::TooLarge if group.held.len() > 1 => {
            let (first_e, second_e) = split_in_halves(group.entities);
            let (first_h, second_h) = split_in_halves(group.held);
            tracing::warn!(
                blueprint = %key.blueprint,
                entities = first_h.len() + second_h.len(),
                "Port refused the batch as too large (413); sending it in halves"
            );
            let half = |entities, held| Group {
                entities,
                held,
                schedule: shared.retry.schedule(),
            };
            Err(GroupEnd::Split(Box::new((
                half(first_e, first_h),
                half(second_e, second_h),
            ))))
        }
        Retry::TooLarge | Retry::DontRetry(_) => {
            if error.is_auth() {
                return Err(GroupEnd::Stop(Some(error)));
            }
            reject_all(&shared.stats, group.held, &error.to_string()).await;
            Err(GroupEnd::Settled)
        }
    }
}

/// Sends deletes (one request each) to completion; 404 counts as deleted. A live delete first
/// searches whether this integration owns the entity, and is acked without deleting when the
/// entity is missing or belongs to another datasource.
pub(crate) async fn deletes(shared: Arc<Shared>, items: Vec<Item>) -> TaskEnd {
    let stats = &shared.stats;
    for item in items {
        let Payload::Delete {
            delete_dependents,
            check_ownership,
        } = item.payload
        else {
            continue;
        };
        let held = item.held;
        // GitOps deletes write (and check ownership) as GitOps: they never touch an entity
        // the exporter owns.
        let client = shared.client_for(held.kind == adoport_shared::messages::GITOPS_KIND);
        let (blueprint, identifier) = (held.key.blueprint.clone(), held.key.identifier.clone());
        // One schedule for the ownership search and the delete: one budget of attempts.
        let mut schedule = shared.retry.schedule();
        if check_ownership {
            let what = "ownership search before the delete";
            let owned = with_retries(&shared, &mut schedule, Counter::PortReads, what, || {
                client.owns(&blueprint, &identifier)
            })
            .await;
            match owned {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!(
                        blueprint = %blueprint, identifier = %identifier,
                        "not deleting: the entity is missing or another datasource owns it"
                    );
                    stats.incr(Counter::SkippedNotOwned);
                    stats.per_kind_incr(
                        &held.kind,
                        held.resource,
                        PublishOutcome::SkippedNotOwned,
                        held.resync_id,
                    );
                    accept(stats, held, "not ours to delete").await;
                    continue;
                }
                Err(failure) => match settle_failed(stats, held, what, failure).await {
                    Some(end) => return end,
                    None => continue,
                },
            }
        }
        let deleted = with_retries(
            &shared,
            &mut schedule,
            Counter::PortRequests,
            "delete",
            || client.delete_entity(&blueprint, &identifier, delete_dependents),
        )
        .await;
        match deleted {
            Ok(outcome) => {
                if outcome == DeleteOutcome::AlreadyGone {
                    tracing::debug!(blueprint = %blueprint, identifier = %identifier, "entity to delete was already gone");
                }
                stats.incr(Counter::Deleted);
                stats.per_kind_incr(
                    &held.kind,
                    held.resource,
                    PublishOutcome::Deleted,
                    held.resync_id,
                );
                accept(stats, held, "deleted").await;
            }
            Err(failure) => {
                if let Some(end) = settle_failed(stats, held, "delete", failure).await {
                    return end;
                }
            }
        }
    }
    TaskEnd::DONE
}

/// Settles a delivery whose request did not succeed: dead-letters it with the reason, or
/// returns how the task ends (a fatal error, or a shutdown that leaves it to the broker).
async fn settle_failed(
    stats: &PublishStats,
    held: Held,
    what: &str,
    failure: Failure,
) -> Option<TaskEnd> {
    let entity = format!("{what} of {}", held.describe());
    let reason = match failure {
        Failure::Refused(error) if !error.is_auth() => {
            format!("{error} ({entity})")
        }
        Failure::GaveUp { attempts, error } => {
            format!("gave up after {attempts} attempts; last error: {error} ({entity})")
        }
        stop => return Some(stop.task_end()),
    };
    reject(stats, held, &reason).await;
    None
}

/// How a request failed, after its retries.
enum Failure {
    /// Port's answer (or the error) says retrying cannot help.
    Refused(PublishError),
    /// Every attempt failed transiently.
    GaveUp { attempts: u32, error: PublishError },
    /// The worker is stopping: whatever the request was for goes back to the broker.
    Stopped,
}

impl Failure {
    /// How the task ends when this failure stops it: refused credentials are fatal to the
    /// worker; otherwise (a shutdown) its deliveries go back to the broker.
    fn task_end(self) -> TaskEnd {
        match self {
            Failure::Refused(error) if error.is_auth() => TaskEnd { fatal: Some(error) },
            _ => TaskEnd::DONE,
        }
    }
}

/// Runs `call` until it succeeds, Port refuses it for good, its schedule's attempts are used
/// up, or the worker stops. Every attempt waits for a request slot (and any 429 pause), counts
/// under `counter`, and feeds the adaptive limit; a 429's wait holds back every request.
async fn with_retries<T, F, Fut>(
    shared: &Shared,
    schedule: &mut Schedule,
    counter: Counter,
    operation: &str,
    mut call: F,
) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, PublishError>>,
{
    loop {
        let permit = request_slot(shared).await;
        shared.stats.incr(counter);
        let result = call().await;
        release(permit, &result);
        let error = match result {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let decision = classify_error(&error);
        if !decision.is_retryable() {
            return Err(Failure::Refused(error));
        }
        pause_all(shared, &error, &decision);
        let next = schedule
            .wait_next(&decision, &shared.stop, |delay, attempt| {
                shared.stats.incr(Counter::Retried);
                tracing::warn!(
                    attempt,
                    delay_ms = delay.as_millis() as u64,
                    error = %error,
                    "{operation} failed; retrying"
                );
            })
            .await;
        match next {
            Next::Again => {}
            Next::Stopped => return Err(Failure::Stopped),
            Next::GaveUp { attempts } => return Err(Failure::GaveUp { attempts, error }),
        }
    }
}

/// Waits for a request slot, after any pause a 429 asked for. Not cut short by a stop: the
/// shutdown flush still sends (the drain deadline bounds it).
async fn request_slot(shared: &Shared) -> Permit {
    let paused = *lock(&shared.paused_until);
    if let Some(until) = paused
        && until > Instant::now()
    {
        tokio::time::sleep_until(until).await;
    }
    shared.requests.acquire().await
}

/// Feeds a request's answer into the adaptive limit and frees its slot.
fn release<T>(permit: Permit, result: &Result<T, PublishError>) {
    permit.record(match result {
        Ok(_) => Signal::Success,
        Err(error) => Signal::of_error(error),
    });
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded value is a plain Option<Instant>: a poisoned lock holds nothing half-written.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Remembers a 429's wait so that every request of this process holds back, not only this one.
fn pause_all(shared: &Shared, error: &PublishError, decision: &Retry) {
    if let (PublishError::Port(error), Retry::RetryAfter(wait)) = (error, decision)
        && error.is_rate_limited()
    {
        let until = Instant::now() + (*wait).min(shared.retry.max_retry_after);
        let mut paused = lock(&shared.paused_until);
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
        }
    }
}

/// The change took effect (or Port already held it): ack the delivery and every older one it
/// superseded.
async fn accept(stats: &PublishStats, mut held: Held, outcome: &'static str) {
    tracing::debug!(
        blueprint = %held.key.blueprint, identifier = %held.key.identifier,
        observed_at = %held.observed_at, outcome
    );
    let superseded = std::mem::take(&mut held.superseded);
    settle_superseded(stats, &held, superseded).await;
    settle_ack(stats, held.delivery).await;
}

/// The write failed for good: dead-letter the newest delivery with the reason; the older ones
/// it superseded are acked (the newest, in the DLQ, is what a replay should apply).
async fn reject(stats: &PublishStats, mut held: Held, reason: &str) {
    tracing::error!(
        blueprint = %held.key.blueprint, identifier = %held.key.identifier, kind = %held.kind,
        reason = %reason, "dead-lettering a change"
    );
    let superseded = std::mem::take(&mut held.superseded);
    settle_superseded(stats, &held, superseded).await;
    stats.per_kind_incr(
        &held.kind,
        held.resource,
        PublishOutcome::DeadLettered,
        held.resync_id,
    );
    stats.barrier_dead_letter(held.source, held.resync_id);
    settle_dead_letter(stats, held.delivery, reason).await;
}

/// Dead-letters every one of `held` with `reason`, naming each one's entity after it.
async fn reject_all(stats: &PublishStats, held: impl IntoIterator<Item = Held>, reason: &str) {
    for held in held {
        let reason = format!("{reason} ({})", held.describe());
        reject(stats, held, &reason).await;
    }
}

/// Acks the older deliveries a newer change of the same entity superseded (counted against the
/// newer change's resync: the older ones' resync is not kept).
async fn settle_superseded(stats: &PublishStats, newer: &Held, superseded: Vec<(usize, Delivery)>) {
    for (_, delivery) in superseded {
        stats.incr(Counter::SkippedStale);
        stats.per_kind_incr(
            &newer.kind,
            newer.resource,
            PublishOutcome::SkippedStale,
            newer.resync_id,
        );
        settle_ack(stats, delivery).await;
    }
}

pub(crate) async fn settle_ack(stats: &PublishStats, delivery: Delivery) {
    match delivery.ack().await {
        Ok(()) => stats.incr(Counter::Acked),
        // The broker redelivers it; the write is idempotent.
        Err(e) => tracing::warn!(error = %e, "could not ack a change; it will be delivered again"),
    }
}

pub(crate) async fn settle_dead_letter(stats: &PublishStats, delivery: Delivery, reason: &str) {
    match delivery.dead_letter(reason).await {
        Ok(()) => stats.incr(Counter::DeadLettered),
        Err(e) => tracing::error!(
            error = %e,
            "could not dead-letter a change; it stays with the broker and will be delivered again"
        ),
    }
}
