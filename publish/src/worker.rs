//! The publish worker: change queues in, Port writes out, each delivery settled after its effect.
//!
//! One coordinator per process reads every partition this process consumes and owns the state
//! (batcher, version guard, which entities are batched or in flight) without locks; the Port
//! client, the request limit and the counters are shared with the send tasks. Because the
//! batcher spans partitions, a bulk request takes entities of one blueprint and write options
//! from all of them (a 15-entity resync over 8 partitions costs 1 request, not 8). Per-entity
//! order does not depend on the partition a change came from: every entity maps to one
//! partition (one active consumer each), at most one write of an entity is in flight, and the
//! version guard drops older changes. Batches are sent by spawned tasks that settle their own
//! deliveries:
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
//! prefetch, so the coordinator stops reading a partition at that bound), at most
//! `max_concurrent_requests` requests are in flight (fewer while Port answers 429: see
//! [`crate::concurrency`]), and each write has at most `max_attempts` attempts.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use adoport_shared::bus::{Bus, Delivery, Subscription};
use adoport_shared::config::Settings;
use adoport_shared::messages::{ChangeOp, EntityChange, GITOPS_KIND, Origin, ResyncId, decode};
use adoport_shared::topology::WorkQueue;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use serde_json::Value;
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::batcher::{Batch, BatchKey, BatchLimits, Batcher, body_size, split_in_halves};
use crate::client::{
    COMPATIBLE_INTEGRATION_VERSION, DeleteOutcome, EntityResult, PortClient, exporter_user_agent,
};
use crate::concurrency::{AdaptiveLimit, Permit, Signal};
use crate::error::PublishError;
use crate::ordering::{Admission, DEFAULT_GUARD_CAPACITY, EntityKey, VersionGuard};
use crate::retry::{Retry, RetryPolicy, Schedule, classify_error, classify_status};
use crate::stats::{Counter, PublishStats};
use crate::unchanged::{AcceptedCache, DEFAULT_ACCEPTED_CAPACITY, fingerprint};

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
    /// Entities the version guard remembers per partition consumed (the guard spans them).
    pub guard_capacity: usize,
    /// Entities whose last accepted version is remembered (0 turns the skip off).
    pub accepted_capacity: usize,
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
            accepted_capacity: DEFAULT_ACCEPTED_CAPACITY,
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
    /// Requests in flight, limited adaptively (AIMD on 429s).
    requests: AdaptiveLimit,
    /// No request starts before this instant (set by a 429 with a wait hint).
    paused_until: Mutex<Option<Instant>>,
    /// Cancelled on shutdown or a fatal error: stop reading, stop retrying.
    stop: CancellationToken,
    /// The last version Port accepted per entity (`None` when the skip is off).
    accepted: Option<AcceptedCache>,
}

impl Publisher {
    pub fn new(client: PortClient, config: PublishConfig) -> Self {
        let stats = PublishStats::with_port_http(client.http_stats().clone());
        Self {
            client,
            config,
            stats,
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
            requests: AdaptiveLimit::new(self.config.max_concurrent_requests),
            client: self.client,
            stats: self.stats,
            paused_until: Mutex::new(None),
            stop,
            accepted: (self.config.accepted_capacity > 0)
                .then(|| AcceptedCache::new(self.config.accepted_capacity)),
            config: self.config,
        });
        let mut subscriptions = Vec::with_capacity(shared.config.partitions.len());
        for &partition in &shared.config.partitions {
            let queue = WorkQueue::Changes { partition };
            match bus.subscribe(queue, shared.config.prefetch).await {
                Ok(s) => subscriptions.push((queue, s)),
                Err(e) => {
                    shared.stop.cancel();
                    return Err(e.into());
                }
            }
        }
        tracing::info!(
            partitions = ?shared.config.partitions,
            prefetch = shared.config.prefetch,
            max_concurrent_requests = shared.config.max_concurrent_requests,
            "publish worker started"
        );
        let result = Coordinator::new(shared.clone(), subscriptions).run().await;
        if result.is_err() {
            shared.stop.cancel();
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
    /// Index of the partition (in [`PublishConfig::partitions`]) the delivery came from.
    source: usize,
    key: EntityKey,
    kind: String,
    /// The resync the change came from, if any (for the resync's summary).
    resync_id: Option<ResyncId>,
    observed_at: DateTime<Utc>,
    delivery: Delivery,
    /// Deliveries of older changes of the same entity (with their source), acked together
    /// with this one.
    superseded: Vec<(usize, Delivery)>,
    /// The upsert's fingerprint (0 for a delete), remembered once Port accepts it.
    version: u64,
}

impl Held {
    /// The source of every delivery this holds.
    fn sources(&self) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(self.source).chain(self.superseded.iter().map(|(source, _)| *source))
    }
}

enum Payload {
    Upsert {
        batch_key: BatchKey,
        entity: Value,
        json_bytes: usize,
        /// [`fingerprint`] of the entity and its write flags.
        version: u64,
    },
    Delete {
        delete_dependents: bool,
        /// From a live event: delete only if this integration owns the entity (search first),
        /// as the Python integration does. A resync's deletes come from the reconciliation.
        check_ownership: bool,
    },
}

struct Item {
    held: Held,
    payload: Payload,
}

impl Item {
    fn absorb(&mut self, older: Item) {
        self.held
            .superseded
            .push((older.held.source, older.held.delivery));
        self.held.superseded.extend(older.held.superseded);
    }
}

/// What a send task tells its coordinator when it ends.
struct TaskEnd {
    fatal: Option<PublishError>,
}

struct InFlightTask {
    keys: Vec<EntityKey>,
    /// The source of each delivery the task settles.
    sources: Vec<usize>,
}

/// A pending read of one partition: its index, the subscription back, and what it read.
type Reading = BoxFuture<'static, (usize, Subscription, Option<Delivery>)>;

fn read(source: usize, mut subscription: Subscription) -> Reading {
    Box::pin(async move {
        let delivery = subscription.next().await;
        (source, subscription, delivery)
    })
}

/// The state of every partition this process consumes.
struct Coordinator {
    shared: Arc<Shared>,
    queues: Vec<WorkQueue>,
    /// Reads in progress, one per partition that is below its prefetch bound.
    reading: FuturesUnordered<Reading>,
    /// Subscriptions not read for now because their partition holds `prefetch` deliveries.
    paused: Vec<Option<Subscription>>,
    /// Subscriptions that have not ended.
    open: usize,
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
    /// Deliveries held and not settled yet, per partition.
    held: Vec<usize>,
    fatal: Option<PublishError>,
}

impl Coordinator {
    fn new(shared: Arc<Shared>, subscriptions: Vec<(WorkQueue, Subscription)>) -> Self {
        let n = subscriptions.len();
        let reading = FuturesUnordered::new();
        let mut queues = Vec::with_capacity(n);
        for (source, (queue, subscription)) in subscriptions.into_iter().enumerate() {
            queues.push(queue);
            reading.push(read(source, subscription));
        }
        Self {
            batcher: Batcher::new(shared.config.batch),
            guard: VersionGuard::new(shared.config.guard_capacity.saturating_mul(n.max(1))),
            shared,
            queues,
            reading,
            paused: (0..n).map(|_| None).collect(),
            open: n,
            pending: HashMap::new(),
            in_flight: HashSet::new(),
            parked: HashMap::new(),
            tasks: JoinSet::new(),
            task_info: HashMap::new(),
            held: vec![0; n],
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
                Some((source, subscription, delivery)) = self.reading.next(), if !self.reading.is_empty() => {
                    match delivery {
                        Some(delivery) => {
                            self.intake(source, delivery).await;
                            if self.held[source] < prefetch {
                                self.reading.push(read(source, subscription));
                            } else {
                                self.paused[source] = Some(subscription);
                            }
                        }
                        None => {
                            // The bus closed this partition (shutdown): it ends here.
                            self.open -= 1;
                            if self.open == 0 {
                                break;
                            }
                        }
                    }
                }
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
                        queues = ?self.queues,
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

    async fn intake(&mut self, source: usize, delivery: Delivery) {
        let stats = &self.shared.stats;
        stats.incr(Counter::Received);
        let change: EntityChange = match decode(&delivery.body) {
            Ok(change) => change,
            Err(e) => {
                let reason = format!("publish cannot read this change: {e}");
                tracing::error!(queue = ?self.queues[source], reason = %reason, "dead-lettering an undecodable change");
                settle_dead_letter(stats, delivery, &reason).await;
                return;
            }
        };
        stats.per_kind_incr(&change.kind, "received", change.origin.resync_id());
        let key = EntityKey::of_change(&change);
        // Serialised once here to measure and fingerprint it; the client serialises the batch.
        let (json_bytes, version) = match &change.op {
            ChangeOp::Upsert { entity } => {
                let body = serde_json::to_vec(entity).unwrap_or_default();
                let version = fingerprint(
                    &body,
                    change.write.merge,
                    change.write.create_missing_related_entities,
                );
                (body.len(), version)
            }
            ChangeOp::Delete => (0, 0),
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
                stats.per_kind_incr(&change.kind, "dead_lettered", change.origin.resync_id());
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
            stats.per_kind_incr(&change.kind, "skipped_stale", change.origin.resync_id());
            settle_ack(stats, delivery).await;
            return;
        }
        // Identical to what Port last accepted from us, and no other write of it pending: ack
        // without a request (a resync of an unchanged organization costs nothing).
        if matches!(change.op, ChangeOp::Upsert { .. })
            && let Some(cache) = &self.shared.accepted
            && !self.pending.contains_key(&key)
            && !self.in_flight.contains(&key)
            && !self.parked.contains_key(&key)
            && cache.is_unchanged(&key, version)
        {
            stats.incr(Counter::SkippedUnchanged);
            stats.per_kind_incr(&change.kind, "skipped_unchanged", change.origin.resync_id());
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
                    gitops: change.kind == GITOPS_KIND,
                },
                entity,
                json_bytes,
                version,
            },
            ChangeOp::Delete => Payload::Delete {
                delete_dependents: change.write.delete_dependents,
                check_ownership: matches!(change.origin, Origin::Webhook { .. })
                    || change.kind == GITOPS_KIND,
            },
        };
        let mut item = Item {
            held: Held {
                source,
                key: key.clone(),
                kind: change.kind,
                resync_id: change.origin.resync_id(),
                observed_at: change.observed_at,
                delivery,
                superseded: Vec::new(),
                version,
            },
            payload,
        };
        self.held[source] += 1;
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
        let mut sources = Vec::with_capacity(items.len());
        for item in &items {
            self.pending.remove(&item.held.key);
            // In flight, Port's version is unknown until it answers (an accepted upsert
            // remembers it again; a delete or a rejection leaves it forgotten).
            if let Some(cache) = &self.shared.accepted {
                cache.forget(&item.held.key);
            }
            self.in_flight.insert(item.held.key.clone());
            keys.push(item.held.key.clone());
            sources.extend(item.held.sources());
        }
        let shared = self.shared.clone();
        let handle = match batch_key {
            Some(batch_key) => self.tasks.spawn(send_upserts(shared, batch_key, items)),
            None => self.tasks.spawn(send_deletes(shared, items)),
        };
        self.task_info
            .insert(handle.id(), InFlightTask { keys, sources });
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
        for source in task.sources {
            if let Some(held) = self.held.get_mut(source) {
                *held = held.saturating_sub(1);
            }
        }
        for key in task.keys {
            self.in_flight.remove(&key);
            if let Some(item) = self.parked.remove(&key) {
                self.enqueue(item);
            }
        }
        self.resume_reading();
    }

    /// Reads again from partitions that dropped below their prefetch bound.
    fn resume_reading(&mut self) {
        let prefetch = usize::from(self.shared.config.prefetch.max(1));
        for (source, slot) in self.paused.iter_mut().enumerate() {
            if self.held[source] < prefetch
                && let Some(subscription) = slot.take()
            {
                self.reading.push(read(source, subscription));
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
async fn request_slot(shared: &Shared) -> Option<Permit> {
    let paused = *lock(&shared.paused_until);
    if let Some(until) = paused
        && until > Instant::now()
    {
        tokio::time::sleep_until(until).await;
    }
    // Not cut short by a stop: the shutdown flush still sends (the drain deadline bounds it).
    Some(shared.requests.acquire().await)
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
        if let Payload::Upsert {
            entity, version, ..
        } = item.payload
        {
            entities.push(entity);
            let mut h = item.held;
            h.version = version;
            held.push(h);
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
            let client = if key.gitops {
                shared.client.gitops()
            } else {
                shared.client.clone()
            };
            let result = client
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
            release(permit, &result);
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
                                stats.per_kind_incr(&held.kind, "upserted", held.resync_id);
                                if let Some(cache) = &shared.accepted {
                                    cache.accepted(&held.key, held.version);
                                }
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

/// Sends deletes (one request each) to completion; 404 counts as deleted. A live delete first
/// searches whether this integration owns the entity, and is acked without deleting when the
/// entity is missing or belongs to another datasource.
async fn send_deletes(shared: Arc<Shared>, items: Vec<Item>) -> TaskEnd {
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
        let client = if held.kind == GITOPS_KIND {
            shared.client.gitops()
        } else {
            shared.client.clone()
        };
        let mut schedule = shared.config.retry.schedule();
        let mut owned_checked = !check_ownership;
        loop {
            let Some(permit) = request_slot(&shared).await else {
                return TaskEnd { fatal: None };
            };
            stats.incr(Counter::PortRequests);
            let (what, error) = if owned_checked {
                let result = client
                    .delete_entity(&held.key.blueprint, &held.key.identifier, delete_dependents)
                    .await;
                release(permit, &result);
                match result {
                    Ok(outcome) => {
                        if outcome == DeleteOutcome::AlreadyGone {
                            tracing::debug!(blueprint = %held.key.blueprint, identifier = %held.key.identifier, "entity to delete was already gone");
                        }
                        stats.incr(Counter::Deleted);
                        stats.per_kind_incr(&held.kind, "deleted", held.resync_id);
                        accept(stats, held).await;
                        break;
                    }
                    Err(error) => ("delete", error),
                }
            } else {
                let result = client.owns(&held.key.blueprint, &held.key.identifier).await;
                release(permit, &result);
                match result {
                    Ok(true) => {
                        owned_checked = true;
                        continue;
                    }
                    Ok(false) => {
                        tracing::debug!(
                            blueprint = %held.key.blueprint, identifier = %held.key.identifier,
                            "not deleting: the entity is missing or another datasource owns it"
                        );
                        stats.incr(Counter::SkippedNotOwned);
                        stats.per_kind_incr(&held.kind, "skipped_not_owned", held.resync_id);
                        accept(stats, held).await;
                        break;
                    }
                    Err(error) => ("ownership search before the delete", error),
                }
            };
            let decision = classify_error(&error);
            if !decision.is_retryable() {
                if let PublishError::Auth { .. } = error {
                    return TaskEnd { fatal: Some(error) };
                }
                let reason = format!(
                    "{error} ({what} of entity {} of blueprint {}, kind {})",
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
                        "{what} failed; retrying"
                    );
                    if !backoff(&shared, delay).await {
                        return TaskEnd { fatal: None };
                    }
                }
                None => {
                    let reason = format!(
                        "gave up after {} attempts; last error: {error} ({what} of entity {} of blueprint {}, kind {})",
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
    settle_superseded(stats, &held.kind, held.resync_id, held.superseded).await;
    settle_ack(stats, held.delivery).await;
}

/// The write failed for good: dead-letter the newest delivery with the reason; the older ones
/// it superseded are acked (the newest, in the DLQ, is what a replay should apply).
async fn reject(stats: &PublishStats, held: Held, reason: &str) {
    tracing::error!(
        blueprint = %held.key.blueprint, identifier = %held.key.identifier, kind = %held.kind,
        reason = %reason, "dead-lettering a change"
    );
    settle_superseded(stats, &held.kind, held.resync_id, held.superseded).await;
    stats.per_kind_incr(&held.kind, "dead_lettered", held.resync_id);
    settle_dead_letter(stats, held.delivery, reason).await;
}

/// Acks the older deliveries a newer change of the same entity superseded (counted against the
/// newer change's resync: the older ones' resync is not kept).
async fn settle_superseded(
    stats: &PublishStats,
    kind: &str,
    resync_id: Option<ResyncId>,
    superseded: Vec<(usize, Delivery)>,
) {
    for (_, delivery) in superseded {
        stats.incr(Counter::SkippedStale);
        stats.per_kind_incr(kind, "skipped_stale", resync_id);
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
