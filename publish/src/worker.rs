//! The publish worker: change queues in, Port writes out, each delivery settled after its effect.
//!
//! One coordinator per process reads every partition this process consumes and owns the state
//! (batchers, version guard, which entities are batched or in flight) without locks; the Port
//! client, the request limit and the counters are shared with the send tasks
//! (`send`). Because the batchers span partitions, a request takes entities of one
//! blueprint and write options from all of them (a 15-entity resync over 8 partitions costs 1
//! request, not 8). Per-entity order does not depend on the partition a change came from: every
//! entity maps to one partition (one active consumer each), at most one request about an entity
//! is in flight, and the version guard drops older changes.
//!
//! Live upserts go into write batches (one bulk request each). A resync's upserts go into check
//! groups of up to 100 (see [`crate::batcher`]): the send task reads Port's current state of
//! the group in one request and writes only what differs, so a resync repairs whatever changed
//! in Port meanwhile — by hand, by a cascade, by another process — and a resync of an unchanged
//! organization writes nothing. Nothing about Port's state is remembered between changes: a
//! fresh process, or another replica taking over a partition, decides the same.
//!
//! Stale changes are acked here, undecodable or too-large ones dead-lettered here; every other
//! delivery (with the older ones its change superseded) is settled by its send task.
//!
//! Two requests about one entity are never in flight together: a newer change of an entity that
//! is in flight waits ("parked") until that request ends, so Port sees writes in admission order.
//!
//! Bounded: at most `prefetch` deliveries are held per partition (the in-process bus has no
//! prefetch, so the coordinator stops reading a partition at that bound; when every partition
//! is there and nothing is being sent, the open batches and groups go at once instead of
//! waiting out their linger), at most
//! `max_concurrent_requests` requests are in flight (fewer while Port answers 429: see
//! [`crate::concurrency`]), and each request has at most `max_attempts` attempts.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use adoport_shared::bus::{Bus, Delivery, Subscription};
use adoport_shared::config::Settings;
use adoport_shared::messages::{ChangeOp, EntityChange, GITOPS_KIND, Origin, decode};
use adoport_shared::topology::WorkQueue;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::batcher::{Batch, BatchKey, BatchLimits, Batcher, body_size};
use crate::client::{COMPATIBLE_INTEGRATION_VERSION, PortClient, exporter_user_agent};
use crate::concurrency::AdaptiveLimit;
use crate::error::PublishError;
use crate::ordering::{Admission, DEFAULT_GUARD_CAPACITY, EntityKey, VersionGuard};
use crate::retry::RetryPolicy;
use crate::send::{self, Held, Item, Payload, Shared, TaskEnd, settle_ack, settle_dead_letter};
use crate::stats::{Counter, PublishStats};

/// How the worker runs; [`PublishConfig::from_settings`] reads it from the settings.
#[derive(Debug, Clone)]
pub struct PublishConfig {
    /// The change partitions to consume.
    pub partitions: Vec<u16>,
    /// Deliveries held per partition (broker prefetch, and the coordinator's own bound).
    pub prefetch: u16,
    /// Write batches: one bulk request each (live upserts; a check group's differing upserts).
    pub batch: BatchLimits,
    /// Check groups: a resync's upserts whose current state in Port one read fetches.
    pub check: BatchLimits,
    /// Requests to Port in flight at once, across partitions.
    pub max_concurrent_requests: usize,
    pub retry: RetryPolicy,
    /// On shutdown, how long in-flight requests may take before their deliveries are returned.
    pub shutdown_deadline: Duration,
    /// Entities the version guard remembers per partition consumed (the guard spans them).
    pub guard_capacity: usize,
}

impl PublishConfig {
    pub fn from_settings(settings: &Settings) -> Result<Self, PublishError> {
        let publish = &settings.pipeline.publish;
        let linger = Duration::from_millis(publish.batch_linger_ms);
        Ok(Self {
            partitions: settings.publish_partitions()?,
            prefetch: publish.prefetch.clamp(1, u64::from(u16::MAX)) as u16,
            batch: BatchLimits {
                linger,
                ..BatchLimits::default()
            },
            check: BatchLimits::check(linger),
            max_concurrent_requests: publish.max_concurrent_requests.clamp(1, 1024) as usize,
            retry: RetryPolicy {
                max_attempts: publish.max_attempts.clamp(1, 100) as u32,
                retry_window: Duration::from_secs(publish.retry_window_secs),
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
        let config = self.config;
        let shared = Arc::new(Shared {
            requests: AdaptiveLimit::new(config.max_concurrent_requests),
            client: self.client,
            retry: config.retry,
            write_limits: config.batch,
            stats: self.stats,
            paused_until: Mutex::new(None),
            stop: shutdown.child_token(),
        });
        let mut subscriptions = Vec::with_capacity(config.partitions.len());
        for &partition in &config.partitions {
            let queue = WorkQueue::Changes { partition };
            match bus.subscribe(queue, config.prefetch).await {
                Ok(s) => subscriptions.push((queue, s)),
                Err(e) => {
                    shared.stop.cancel();
                    return Err(e.into());
                }
            }
        }
        tracing::info!(
            partitions = ?config.partitions,
            prefetch = config.prefetch,
            max_concurrent_requests = config.max_concurrent_requests,
            "publish worker started"
        );
        let result = Coordinator::new(shared.clone(), config, subscriptions)
            .run()
            .await;
        if result.is_err() {
            shared.stop.cancel();
        }
        let s = shared.stats.snapshot();
        tracing::info!(
            received = s.received,
            upserted = s.upserted,
            deleted = s.deleted,
            skipped_stale = s.skipped_stale,
            skipped_unchanged = s.skipped_unchanged,
            dead_lettered = s.dead_lettered,
            retried = s.retried,
            port_requests = s.port_requests,
            port_reads = s.port_reads,
            "publish worker stopped"
        );
        result
    }
}

/// What the coordinator knows of a running send task.
struct InFlightTask {
    keys: Vec<EntityKey>,
    /// The source of each delivery the task settles.
    sources: Vec<usize>,
}

/// Which open batches and groups to send.
#[derive(Debug, Clone, Copy)]
enum Close {
    /// Those whose linger ran out.
    Expired,
    /// All of them (every partition paused at its prefetch bound with nothing in flight, or
    /// shutdown).
    All,
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
    config: PublishConfig,
    queues: Vec<WorkQueue>,
    /// Reads in progress, one per partition that is below its prefetch bound.
    reading: FuturesUnordered<Reading>,
    /// Subscriptions not read for now because their partition holds `prefetch` deliveries.
    paused: Vec<Option<Subscription>>,
    /// Subscriptions that have not ended.
    open: usize,
    /// Live upserts, by bulk request.
    writes: Batcher<BatchKey, Item>,
    /// A resync's upserts, by read of their current state in Port.
    checks: Batcher<BatchKey, Item>,
    guard: VersionGuard,
    /// Entities in an open write batch or check group, and which.
    pending: HashMap<EntityKey, BatchKey>,
    /// Entities in a send task that has not ended.
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
    fn new(
        shared: Arc<Shared>,
        config: PublishConfig,
        subscriptions: Vec<(WorkQueue, Subscription)>,
    ) -> Self {
        let n = subscriptions.len();
        let reading = FuturesUnordered::new();
        let mut queues = Vec::with_capacity(n);
        for (source, (queue, subscription)) in subscriptions.into_iter().enumerate() {
            queues.push(queue);
            reading.push(read(source, subscription));
        }
        Self {
            writes: Batcher::new(config.batch),
            checks: Batcher::new(config.check),
            guard: VersionGuard::new(config.guard_capacity.saturating_mul(n.max(1))),
            shared,
            config,
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
        let prefetch = usize::from(self.config.prefetch.max(1));
        let stop = self.shared.stop.clone();
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.task_ended(joined);
                }
                _ = sleep_until(deadline), if deadline.is_some() => {
                    self.close_batches(Close::Expired);
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
            if self.reading.is_empty() && self.tasks.is_empty() {
                // Every partition holds its prefetch and nothing is being sent: nothing can
                // join the open batches until they go, so they must not wait out a linger.
                self.close_batches(Close::All);
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
        let deadline = Instant::now() + self.config.shutdown_deadline;
        self.close_batches(Close::All);
        while !self.tasks.is_empty() {
            tokio::select! {
                Some(joined) = self.tasks.join_next_with_id() => {
                    self.task_ended(joined);
                    // Parked changes released by that request go out now.
                    self.close_batches(Close::All);
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
        // Serialised once here to measure it; the client serialises the batch.
        let json_bytes = match &change.op {
            ChangeOp::Upsert { entity } => serde_json::to_vec(entity).map_or(0, |b| b.len()),
            ChangeOp::Delete => 0,
        };
        if matches!(change.op, ChangeOp::Upsert { .. }) {
            let limit = self.config.batch.max_bytes;
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
            },
            payload,
        };
        self.held[source] += 1;
        // A batched older change of this entity is superseded: only the newest is sent.
        if let Some(batch_key) = self.pending.remove(&key)
            && let Some(older) = self
                .batcher(&batch_key)
                .remove(&batch_key, |i| i.held.key == key)
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
        match self
            .batcher(&batch_key)
            .push(batch_key.clone(), item, json_bytes)
        {
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

    /// The batcher of a batch key: check groups for a resync's upserts, write batches for the
    /// others.
    fn batcher(&mut self, key: &BatchKey) -> &mut Batcher<BatchKey, Item> {
        if key.reads_port_first() {
            &mut self.checks
        } else {
            &mut self.writes
        }
    }

    /// When the oldest open batch or group is due.
    fn next_deadline(&self) -> Option<Instant> {
        [self.writes.next_deadline(), self.checks.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Sends the open batches and groups whose linger ran out, or all of them.
    fn close_batches(&mut self, which: Close) {
        let closed: Vec<Batch<BatchKey, Item>> = match which {
            Close::Expired => {
                let now = Instant::now();
                let mut due = self.writes.take_expired(now);
                due.extend(self.checks.take_expired(now));
                due
            }
            Close::All => {
                let mut all = self.writes.drain();
                all.extend(self.checks.drain());
                all
            }
        };
        for batch in closed {
            self.dispatch_batch(batch);
        }
    }

    fn dispatch_batch(&mut self, batch: Batch<BatchKey, Item>) {
        self.dispatch(batch.items, Some(batch.key));
    }

    /// Spawns the task that sends `items`: a write batch, a check group, or one delete.
    fn dispatch(&mut self, items: Vec<Item>, batch_key: Option<BatchKey>) {
        let mut keys = Vec::with_capacity(items.len());
        let mut sources = Vec::with_capacity(items.len());
        for item in &items {
            self.pending.remove(&item.held.key);
            self.in_flight.insert(item.held.key.clone());
            keys.push(item.held.key.clone());
            sources.extend(item.held.sources());
        }
        let shared = self.shared.clone();
        let handle = match batch_key {
            Some(key) if key.reads_port_first() => {
                self.tasks.spawn(send::checked_upserts(shared, key, items))
            }
            Some(key) => self.tasks.spawn(send::upserts(shared, key, items)),
            None => self.tasks.spawn(send::deletes(shared, items)),
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
        let prefetch = usize::from(self.config.prefetch.max(1));
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
