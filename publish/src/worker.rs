//! The publish worker: change queues in, Port writes out, each delivery settled after its effect.
//!
//! One coordinator per partition owns that partition's state (batcher, version guard, which
//! entities are batched or in flight) without locks; the Port client, the request semaphore and
//! the counters are shared. Batches are sent by spawned tasks that settle their own deliveries:
//!
//! - **ack** once Port accepted the entity (or the delete, or 404 on delete), or when the change
//!   was stale or superseded by a newer one of the same entity;
//! - **dead-letter** with Port's status, error and body excerpt when Port rejects it, when it is
//!   too large even alone, after `max_attempts` transient failures, or when it cannot be decoded;
//! - **leave unsettled** (back to the broker) on shutdown or on a fatal auth error.
//!
//! Two writes of one entity are never in flight together: a newer change of an entity that is
//! in flight waits ("parked") until that request ends, so Port sees writes in admission order.
//!
//! Bounded: at most `prefetch` deliveries are held per partition (the in-process bus has no
//! prefetch, so the coordinator stops reading at that bound), at most `max_concurrent_requests`
//! requests are in flight, and each write has at most `max_attempts` attempts.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use adoport_shared::bus::{Bus, Delivery, Subscription};
use adoport_shared::config::Settings;
use adoport_shared::messages::{ChangeOp, EntityChange, decode};
use adoport_shared::topology::WorkQueue;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::batcher::{Batch, BatchKey, BatchLimits, Batcher, body_size, split_in_halves};
use crate::client::{
    COMPATIBLE_INTEGRATION_VERSION, DeleteOutcome, EntityResult, PortClient, exporter_user_agent,
};
use crate::error::PublishError;
use crate::ordering::{Admission, DEFAULT_GUARD_CAPACITY, EntityKey, VersionGuard};
use crate::retry::{Retry, RetryPolicy, Schedule, classify_error, classify_status};
use crate::stats::{Counter, PublishStats};

/// How the worker runs; [`PublishConfig::from_settings`] reads it from the settings.
#[derive(Debug, Clone)]
pub struct PublishConfig {
    /// The change partitions to consume.
    pub partitions: Vec<u16>,
    /// Deliveries held per partition (broker prefetch, and the coordinator's own bound).
    pub prefetch: u16,
    pub batch: BatchLimits,
    /// Requests to Port in flight at once, across partitions.
    pub max_concurrent_requests: usize,
    pub retry: RetryPolicy,
    /// On shutdown, how long in-flight requests may take before their deliveries are returned.
    pub shutdown_deadline: Duration,
    /// Entities the version guard remembers per partition.
    pub guard_capacity: usize,
}

impl PublishConfig {
    pub fn from_settings(settings: &Settings) -> Result<Self, PublishError> {
        let publish = &settings.pipeline.publish;
        Ok(Self {
            partitions: settings.publish_partitions()?,
            prefetch: publish.prefetch.clamp(1, u64::from(u16::MAX)) as u16,
            batch: BatchLimits {
                linger: Duration::from_millis(publish.batch_linger_ms),
                ..BatchLimits::default()
            },
            max_concurrent_requests: publish.max_concurrent_requests.clamp(1, 1024) as usize,
            retry: RetryPolicy {
                max_attempts: publish.max_attempts.clamp(1, 100) as u32,
                ..RetryPolicy::default()
            },
            shutdown_deadline: Duration::from_secs(20),
            guard_capacity: DEFAULT_GUARD_CAPACITY,
        })
    }
}

/// Runs the publish role until `shutdown` (or a fatal error such as refused credentials).
pub async fn run(
    settings: &Settings,
    bus: Bus,
    shutdown: CancellationToken,
) -> Result<(), PublishError> {
    Publisher::from_settings(settings)?.run(bus, shutdown).await
}

/// The publish worker with its client and configuration (tests build it directly).
pub struct Publisher {
    client: PortClient,
    config: PublishConfig,
    stats: PublishStats,
}

impl Publisher {
    /// The publisher a deployment runs: Port credentials, ownership and limits from settings.
    pub fn from_settings(settings: &Settings) -> Result<Self, PublishError> {
        let access = settings.port_access()?;
        let user_agent = exporter_user_agent(
            COMPATIBLE_INTEGRATION_VERSION,
            &access.integration_identifier,
        );
        let client = PortClient::new(&access, user_agent)?;
        Ok(Publisher::new(
            client,
            PublishConfig::from_settings(settings)?,
        ))
    }
}

/// What every partition and send task shares.
struct Shared {
    client: PortClient,
    config: PublishConfig,
    stats: PublishStats,
    requests: Semaphore,
    /// No request starts before this instant (set by a 429 with a wait hint).
    paused_until: Mutex<Option<Instant>>,
    /// Cancelled on shutdown or a fatal error: stop reading, stop retrying.
    stop: CancellationToken,
}

impl Publisher {
    pub fn new(client: PortClient, config: PublishConfig) -> Self {
        Self {
            client,
            config,
            stats: PublishStats::new(),
        }
    }

    /// The counters; clone it before [`Publisher::run`] to watch them.
    pub fn stats(&self) -> PublishStats {
        self.stats.clone()
    }

    /// Consumes the configured partitions until `shutdown` is cancelled or the bus closes, then
    /// drains (flushes open batches, finishes in-flight requests within the deadline).
    pub async fn run(self, bus: Bus, shutdown: CancellationToken) -> Result<(), PublishError> {
        let stop = shutdown.child_token();
        let shared = Arc::new(Shared {
            requests: Semaphore::new(self.config.max_concurrent_requests.max(1)),
            client: self.client,
            stats: self.stats,
            paused_until: Mutex::new(None),
            stop,
            config: self.config,
        });
        let mut partitions = JoinSet::new();
        for &partition in &shared.config.partitions {
            let queue = WorkQueue::Changes { partition };
            let subscription = match bus.subscribe(queue, shared.config.prefetch).await {
                Ok(s) => s,
                Err(e) => {
                    shared.stop.cancel();
                    while partitions.join_next().await.is_some() {}
                    return Err(e.into());
                }
            };
            let coordinator = Coordinator::new(shared.clone(), queue, subscription);
            partitions.spawn(coordinator.run());
        }
        tracing::info!(
            partitions = ?shared.config.partitions,
            prefetch = shared.config.prefetch,
            max_concurrent_requests = shared.config.max_concurrent_requests,
            "publish worker started"
        );
        let mut result = Ok(());
        while let Some(joined) = partitions.join_next().await {
            let outcome = joined.unwrap_or_else(|e| {
                Err(PublishError::Setup(format!(
                    "a partition coordinator failed: {e}"
                )))
            });
            if let Err(e) = outcome {
                shared.stop.cancel();
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        let s = shared.stats.snapshot();
        tracing::info!(
            received = s.received,
            upserted = s.upserted,
            deleted = s.deleted,
            skipped_stale = s.skipped_stale,
            dead_lettered = s.dead_lettered,
            retried = s.retried,
            port_requests = s.port_requests,
            "publish worker stopped"
        );
        result
    }
}

/// A delivery (and the older ones it superseded) for one entity.
struct Held {
    key: EntityKey,
    kind: String,
    observed_at: DateTime<Utc>,
    delivery: Delivery,
    /// Deliveries of older changes of the same entity, acked together with this one.
    superseded: Vec<Delivery>,
}

impl Held {
    fn deliveries(&self) -> usize {
        1 + self.superseded.len()
    }
}

enum Payload {
    Upsert {
        batch_key: BatchKey,
        entity: Value,
        json_bytes: usize,
    },
    Delete {
        delete_dependents: bool,
    },
}

struct Item {
    held: Held,
    payload: Payload,
}

impl Item {
    fn absorb(&mut self, older: Item) {
        self.held.superseded.push(older.held.delivery);
        self.held.superseded.extend(older.held.superseded);
    }
}

/// What a send task tells its coordinator when it ends.
struct TaskEnd {
    fatal: Option<PublishError>,
}

struct InFlightTask {
    keys: Vec<EntityKey>,
    deliveries: usize,
}

/// One partition's state.
struct Coordinator {
    shared: Arc<Shared>,
    queue: WorkQueue,
    subscription: Subscription,
    batcher: Batcher<BatchKey, Item>,
    guard: VersionGuard,
    /// Entities in an open batch, and which.
    pending: HashMap<EntityKey, BatchKey>,
    /// Entities in a request that has not ended.
    in_flight: HashSet<EntityKey>,
    /// Newer changes of in-flight entities, waiting for that request to end.
    parked: HashMap<EntityKey, Item>,
    tasks: JoinSet<TaskEnd>,
    task_info: HashMap<Id, InFlightTask>,
    /// Deliveries held and not settled yet.
    held: usize,
    fatal: Option<PublishError>,
}

impl Coordinator {
    fn new(shared: Arc<Shared>, queue: WorkQueue, subscription: Subscription) -> Self {
        Self {
            batcher: Batcher::new(shared.config.batch),
            guard: VersionGuard::new(shared.config.guard_capacity),
            shared,
            queue,
            subscription,
            pending: HashMap::new(),
            in_flight: HashSet::new(),
            parked: HashMap::new(),
            tasks: JoinSet::new(),
            task_info: HashMap::new(),
            held: 0,
            fatal: None,
        }
    }

    async fn run(mut self) -> Result<(), PublishError> {
        let prefetch = usize::from(self.shared.config.prefetch.max(1));
        let stop = self.shared.stop.clone();
        loop {
            let deadline = self.batcher.next_deadline();
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.task_ended(joined);
                }
                _ = sleep_until(deadline), if deadline.is_some() => {
                    for batch in self.batcher.take_expired(Instant::now()) {
                        self.dispatch_batch(batch);
                    }
                }
                delivery = self.subscription.next(), if self.held < prefetch => match delivery {
                    Some(delivery) => self.intake(delivery).await,
                    None => break,
                },
            }
        }
        self.drain().await;
        match self.fatal.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Shutdown: send what is open, let requests finish within the deadline, return the rest.
    async fn drain(&mut self) {
        let deadline = Instant::now() + self.shared.config.shutdown_deadline;
        for batch in self.batcher.drain() {
            self.dispatch_batch(batch);
        }
        while !self.tasks.is_empty() {
            tokio::select! {
                Some(joined) = self.tasks.join_next_with_id() => {
                    self.task_ended(joined);
                    // Parked changes released by that request go out now.
                    for batch in self.batcher.drain() {
                        self.dispatch_batch(batch);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(
                        queue = ?self.queue,
                        requests = self.tasks.len(),
                        "shutdown deadline passed; returning unfinished changes to the broker"
                    );
                    self.tasks.abort_all();
                    while self.tasks.join_next().await.is_some() {}
                    break;
                }
            }
        }
        // Anything still held (parked behind an aborted request) goes back to the broker.
        self.parked.clear();
    }

    async fn intake(&mut self, delivery: Delivery) {
        let stats = &self.shared.stats;
        stats.incr(Counter::Received);
        let change: EntityChange = match decode(&delivery.body) {
            Ok(change) => change,
            Err(e) => {
                let reason = format!("publish cannot read this change: {e}");
                tracing::error!(queue = ?self.queue, reason = %reason, "dead-lettering an undecodable change");
                settle_dead_letter(stats, delivery, &reason).await;
                return;
            }
        };
        let key = EntityKey::new(change.blueprint.clone(), change.identifier.clone());
        // Serialised once here to measure it; the client serialises the batch body.
        let json_bytes = match &change.op {
            ChangeOp::Upsert { entity } => serde_json::to_vec(entity).map(|v| v.len()).unwrap_or(0),
            ChangeOp::Delete => 0,
        };
        if matches!(change.op, ChangeOp::Upsert { .. }) {
            let limit = self.batcher.limits().max_bytes;
            if body_size(1, json_bytes) > limit {
                let reason = format!(
                    "Port would refuse this entity as too large (413): alone it makes a {} byte request body, over the {limit} byte limit (blueprint {}, identifier {}, kind {})",
                    body_size(1, json_bytes),
                    key.blueprint,
                    key.identifier,
                    change.kind
                );
                tracing::error!(blueprint = %key.blueprint, identifier = %key.identifier, reason = %reason, "dead-lettering a change");
                settle_dead_letter(stats, delivery, &reason).await;
                return;
            }
        }
        if let Admission::Stale { newest } = self.guard.admit(&key, change.observed_at) {
            tracing::debug!(
                blueprint = %key.blueprint, identifier = %key.identifier,
                observed_at = %change.observed_at, newest = %newest,
                "skipping a change older than one already taken"
            );
            stats.incr(Counter::SkippedStale);
            settle_ack(stats, delivery).await;
            return;
        }
        let payload = match change.op {
            ChangeOp::Upsert { entity } => Payload::Upsert {
                batch_key: BatchKey {
                    blueprint: change.blueprint.clone(),
                    merge: change.write.merge,
                    create_missing_related_entities: change.write.create_missing_related_entities,
                    event_type: change.origin.event_type(),
                    resync_id: change.origin.resync_id(),
                },
                entity,
                json_bytes,
            },
            ChangeOp::Delete => Payload::Delete {
                delete_dependents: change.write.delete_dependents,
            },
        };
        let mut item = Item {
            held: Held {
                key: key.clone(),
                kind: change.kind,
                observed_at: change.observed_at,
                delivery,
                superseded: Vec::new(),
            },
            payload,
        };
        self.held += 1;
        // A batched older change of this entity is superseded: only the newest is sent.
        if let Some(batch_key) = self.pending.remove(&key)
            && let Some(older) = self.batcher.remove(&batch_key, |i| i.held.key == key)
        {
            item.absorb(older);
        }
        if let Some(older) = self.parked.remove(&key) {
            item.absorb(older);
        }
        if self.in_flight.contains(&key) {
            self.parked.insert(key, item);
        } else {
            self.enqueue(item);
        }
    }

    /// Puts an admitted item into its batch (or sends a delete right away).
    fn enqueue(&mut self, item: Item) {
        let (batch_key, json_bytes) = match &item.payload {
            Payload::Upsert {
                batch_key,
                json_bytes,
                ..
            } => (batch_key.clone(), *json_bytes),
            Payload::Delete { .. } => {
                self.dispatch(vec![item], None);
                return;
            }
        };
        let key = item.held.key.clone();
        match self.batcher.push(batch_key.clone(), item, json_bytes) {
            Ok(closed) => {
                self.pending.insert(key, batch_key.clone());
                for batch in closed {
                    self.dispatch_batch(batch);
                }
            }
            // Checked on intake, so this does not happen; sent alone, Port has the last word.
            Err(too_large) => self.dispatch(vec![too_large.item], Some(batch_key)),
        }
    }

    fn dispatch_batch(&mut self, batch: Batch<BatchKey, Item>) {
        self.dispatch(batch.items, Some(batch.key));
    }

    /// Spawns the task that sends `items` (one bulk upsert, or one delete).
    fn dispatch(&mut self, items: Vec<Item>, batch_key: Option<BatchKey>) {
        let mut keys = Vec::with_capacity(items.len());
        let mut deliveries = 0;
        for item in &items {
            self.pending.remove(&item.held.key);
            self.in_flight.insert(item.held.key.clone());
            keys.push(item.held.key.clone());
            deliveries += item.held.deliveries();
        }
        let shared = self.shared.clone();
        let handle = match batch_key {
            Some(batch_key) => self.tasks.spawn(send_upserts(shared, batch_key, items)),
            None => self.tasks.spawn(send_deletes(shared, items)),
        };
        self.task_info
            .insert(handle.id(), InFlightTask { keys, deliveries });
    }

    fn task_ended(&mut self, joined: Result<(Id, TaskEnd), tokio::task::JoinError>) {
        let id = match joined {
            Ok((id, end)) => {
                if let Some(fatal) = end.fatal {
                    tracing::error!(error = %fatal, "stopping publish: Port refuses our writes");
                    self.shared.stop.cancel();
                    if self.fatal.is_none() {
                        self.fatal = Some(fatal);
                    }
                }
                id
            }
            Err(e) => {
                if e.is_panic() {
                    tracing::error!(error = %e, "a send task panicked; its changes go back to the broker");
                }
                e.id()
            }
        };
        let Some(task) = self.task_info.remove(&id) else {
            return;
        };
        self.held = self.held.saturating_sub(task.deliveries);
        for key in task.keys {
            self.in_flight.remove(&key);
            if let Some(item) = self.parked.remove(&key) {
                self.enqueue(item);
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Waits for a request slot, after any pause a 429 asked for.
async fn request_slot(shared: &Shared) -> Option<tokio::sync::SemaphorePermit<'_>> {
    let paused = *lock(&shared.paused_until);
    if let Some(until) = paused
        && until > Instant::now()
    {
        tokio::time::sleep_until(until).await;
    }
    shared.requests.acquire().await.ok()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded value is a plain Option<Instant>: a poisoned lock holds nothing half-written.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Remembers a 429's wait so that every request of this process holds back, not only this one.
fn pause_all(shared: &Shared, error: &PublishError, decision: &Retry) {
    if let (PublishError::Status { status: 429, .. }, Retry::RetryAfter(wait)) = (error, decision) {
        let until = Instant::now() + (*wait).min(shared.config.retry.max_retry_after);
        let mut paused = lock(&shared.paused_until);
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
        }
    }
}

/// Waits `delay` unless the worker stops; false when it stopped (the caller gives up).
async fn backoff(shared: &Shared, delay: Duration) -> bool {
    tokio::select! {
        _ = shared.stop.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

/// One group of a batch being sent (a 413 splits a batch into groups).
struct Group {
    entities: Vec<Value>,
    held: Vec<Held>,
    schedule: Schedule,
}

/// Sends one bulk upsert batch to completion: every delivery in it ends acked, dead-lettered,
/// or (on shutdown or a fatal error) unsettled.
async fn send_upserts(shared: Arc<Shared>, key: BatchKey, items: Vec<Item>) -> TaskEnd {
    let mut entities = Vec::with_capacity(items.len());
    let mut held = Vec::with_capacity(items.len());
    for item in items {
        if let Payload::Upsert { entity, .. } = item.payload {
            entities.push(entity);
            held.push(item.held);
        }
    }
    let stats = &shared.stats;
    let mut groups = vec![Group {
        entities,
        held,
        schedule: shared.config.retry.schedule(),
    }];
    while let Some(mut group) = groups.pop() {
        loop {
            let Some(permit) = request_slot(&shared).await else {
                return TaskEnd { fatal: None };
            };
            stats.incr(Counter::PortRequests);
            let result = shared
                .client
                .bulk_upsert(
                    &key.blueprint,
                    &group.entities,
                    &adoport_shared::messages::WriteOptions {
                        merge: key.merge,
                        create_missing_related_entities: key.create_missing_related_entities,
                        delete_dependents: false,
                    },
                    key.event_type,
                    key.resync_id,
                )
                .await;
            drop(permit);
            let (decision, last_error) = match result {
                Ok(outcome) => {
                    let mut retry_entities = Vec::new();
                    let mut retry_held = Vec::new();
                    let mut retry_reason = String::new();
                    let trace = outcome
                        .trace_id
                        .as_deref()
                        .map(|t| format!(" (x-trace-id {t})"))
                        .unwrap_or_default();
                    let results = outcome.results.into_iter();
                    for ((result, entity), held) in results.zip(group.entities).zip(group.held) {
                        match result {
                            EntityResult::Accepted => {
                                stats.incr(Counter::Upserted);
                                accept(stats, held).await;
                            }
                            EntityResult::Rejected {
                                status,
                                error,
                                message,
                            } => {
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
                        }
                    }
                    if retry_held.is_empty() {
                        break;
                    }
                    group.entities = retry_entities;
                    group.held = retry_held;
                    (Retry::Retry, retry_reason)
                }
                Err(error) => {
                    let decision = classify_error(&error);
                    match decision {
                        Retry::Success => break,
                        Retry::Retry | Retry::RetryAfter(_) => {
                            pause_all(&shared, &error, &decision);
                            (decision, error.to_string())
                        }
                        Retry::TooLarge if group.held.len() > 1 => {
                            let (first_e, second_e) = split_in_halves(group.entities);
                            let (first_h, second_h) = split_in_halves(group.held);
                            tracing::warn!(
                                blueprint = %key.blueprint,
                                entities = first_h.len() + second_h.len(),
                                "Port refused the batch as too large (413); sending it in halves"
                            );
                            // Second pushed first: the first half goes out first.
                            groups.push(Group {
                                entities: second_e,
                                held: second_h,
                                schedule: shared.config.retry.schedule(),
                            });
                            groups.push(Group {
                                entities: first_e,
                                held: first_h,
                                schedule: shared.config.retry.schedule(),
                            });
                            break;
                        }
                        Retry::TooLarge | Retry::DontRetry(_) => {
                            if let PublishError::Auth { .. } = error {
                                return TaskEnd { fatal: Some(error) };
                            }
                            let reason = error.to_string();
                            for held in group.held {
                                let reason = format!(
                                    "{reason} (entity {} of blueprint {}, kind {})",
                                    held.key.identifier, held.key.blueprint, held.kind
                                );
                                reject(stats, held, &reason).await;
                            }
                            break;
                        }
                    }
                }
            };
            match group.schedule.next_delay(&decision) {
                Some(delay) => {
                    stats.incr(Counter::Retried);
                    tracing::warn!(
                        blueprint = %key.blueprint,
                        entities = group.held.len(),
                        attempt = group.schedule.attempts(),
                        delay_ms = delay.as_millis() as u64,
                        error = %last_error,
                        "bulk upsert failed; retrying"
                    );
                    if !backoff(&shared, delay).await {
                        // Shutting down: the deliveries go back to the broker.
                        return TaskEnd { fatal: None };
                    }
                }
                None => {
                    let attempts = group.schedule.attempts();
                    for held in group.held {
                        let reason = format!(
                            "gave up after {attempts} attempts; last error: {last_error} (entity {} of blueprint {}, kind {})",
                            held.key.identifier, held.key.blueprint, held.kind
                        );
                        reject(stats, held, &reason).await;
                    }
                    break;
                }
            }
        }
    }
    TaskEnd { fatal: None }
}

/// Sends deletes (one request each) to completion; 404 counts as deleted.
async fn send_deletes(shared: Arc<Shared>, items: Vec<Item>) -> TaskEnd {
    let stats = &shared.stats;
    for item in items {
        let Payload::Delete { delete_dependents } = item.payload else {
            continue;
        };
        let held = item.held;
        let mut schedule = shared.config.retry.schedule();
        loop {
            let Some(permit) = request_slot(&shared).await else {
                return TaskEnd { fatal: None };
            };
            stats.incr(Counter::PortRequests);
            let result = shared
                .client
                .delete_entity(&held.key.blueprint, &held.key.identifier, delete_dependents)
                .await;
            drop(permit);
            let error = match result {
                Ok(outcome) => {
                    if outcome == DeleteOutcome::AlreadyGone {
                        tracing::debug!(blueprint = %held.key.blueprint, identifier = %held.key.identifier, "entity to delete was already gone");
                    }
                    stats.incr(Counter::Deleted);
                    accept(stats, held).await;
                    break;
                }
                Err(error) => error,
            };
            let decision = classify_error(&error);
            if !decision.is_retryable() {
                if let PublishError::Auth { .. } = error {
                    return TaskEnd { fatal: Some(error) };
                }
                let reason = format!(
                    "{error} (delete of entity {} of blueprint {}, kind {})",
                    held.key.identifier, held.key.blueprint, held.kind
                );
                reject(stats, held, &reason).await;
                break;
            }
            pause_all(&shared, &error, &decision);
            match schedule.next_delay(&decision) {
                Some(delay) => {
                    stats.incr(Counter::Retried);
                    tracing::warn!(
                        blueprint = %held.key.blueprint,
                        attempt = schedule.attempts(),
                        delay_ms = delay.as_millis() as u64,
                        error = %error,
                        "delete failed; retrying"
                    );
                    if !backoff(&shared, delay).await {
                        return TaskEnd { fatal: None };
                    }
                }
                None => {
                    let reason = format!(
                        "gave up after {} attempts; last error: {error} (delete of entity {} of blueprint {}, kind {})",
                        schedule.attempts(),
                        held.key.identifier,
                        held.key.blueprint,
                        held.kind
                    );
                    reject(stats, held, &reason).await;
                    break;
                }
            }
        }
    }
    TaskEnd { fatal: None }
}

/// Port took the write: ack the delivery and every older one it superseded.
async fn accept(stats: &PublishStats, held: Held) {
    tracing::debug!(
        blueprint = %held.key.blueprint, identifier = %held.key.identifier,
        observed_at = %held.observed_at, "written to Port"
    );
    settle_superseded(stats, held.superseded).await;
    settle_ack(stats, held.delivery).await;
}

/// The write failed for good: dead-letter the newest delivery with the reason; the older ones
/// it superseded are acked (the newest, in the DLQ, is what a replay should apply).
async fn reject(stats: &PublishStats, held: Held, reason: &str) {
    tracing::error!(
        blueprint = %held.key.blueprint, identifier = %held.key.identifier, kind = %held.kind,
        reason = %reason, "dead-lettering a change"
    );
    settle_superseded(stats, held.superseded).await;
    settle_dead_letter(stats, held.delivery, reason).await;
}

async fn settle_superseded(stats: &PublishStats, superseded: Vec<Delivery>) {
    for delivery in superseded {
        stats.incr(Counter::SkippedStale);
        settle_ack(stats, delivery).await;
    }
}

async fn settle_ack(stats: &PublishStats, delivery: Delivery) {
    match delivery.ack().await {
        Ok(()) => stats.incr(Counter::Acked),
        // The broker redelivers it; the write is idempotent.
        Err(e) => tracing::warn!(error = %e, "could not ack a change; it will be delivered again"),
    }
}

async fn settle_dead_letter(stats: &PublishStats, delivery: Delivery, reason: &str) {
    match delivery.dead_letter(reason).await {
        Ok(()) => stats.incr(Counter::DeadLettered),
        Err(e) => tracing::error!(
            error = %e,
            "could not dead-letter a change; it stays with the broker and will be delivered again"
        ),
    }
}
