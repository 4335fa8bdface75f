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
//! Live upserts go into write batches (one bulk request each). A live write batch goes at once
//! when no request of its key (blueprint and query) is in flight: an idle pipeline writes a
//! webhook's change without waiting. While one is, the batch fills with what comes meanwhile and
//! goes when that request ends, when it is full, or after its linger at the latest — so a burst
//! still travels in full bulk requests, and a lone change waits no longer than one request to
//! Port (`ADOPORT__PUBLISH__SEND_WHEN_IDLE=false`: every batch waits out its linger, as before).
//!
//! A resync's upserts go into check groups of up to 100 (see [`crate::batcher`]), which keep
//! their linger (a resync waits for no single entity): the send task reads Port's current state of
//! the group in one request and writes only what differs, so a resync repairs whatever changed
//! in Port meanwhile — by hand, by a cascade, by another process — and a resync of an unchanged
//! organization writes nothing. Nothing about Port's state is remembered between changes: a
//! fresh process, or another replica taking over a partition, decides the same.
//!
//! Stale changes are acked here, undecodable or too-large ones dead-lettered here; every other
//! delivery (with the older ones its change superseded) is settled by its send task.
//!
//! A resync's barrier (`ResyncBarrier`, put behind the resync's changes in every partition by
//! the reconciliation coordinator) stops the reading of its partition until every delivery read
//! before it is settled; the worker then reports `BarrierPassed` for the partition, acks the
//! barrier and reads on. A partition handed over lets a waiting barrier go with the rest.
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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use adoport_shared::bus::{Bus, Delivery, Destination, Outgoing, Subscription};
use adoport_shared::config::Settings;
use adoport_shared::messages::{
    ChangeOp, GITOPS_KIND, Origin, PartitionMessage, ResyncBarrier, ResyncControl, SCHEMA_VERSION,
    encode,
};
use adoport_shared::port::BlueprintId;
use adoport_shared::telemetry::live_timing::{self, Stage};
use adoport_shared::topology::WorkQueue;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use tokio::sync::watch;
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
use crate::sharing::{MembershipTiming, Sharing};
use crate::stats::{BatchClose, Counter, PublishStats};
use adoport_shared::metrics::PublishOutcome;

/// How the worker runs; [`PublishConfig::from_settings`] reads it from the settings.
#[derive(Debug, Clone)]
pub struct PublishConfig {
    /// The change partitions to consume when they are not shared: pinned
    /// (`ADOPORT__PUBLISH__PARTITIONS`), or every one (in process).
    pub partitions: Vec<u16>,
    /// Share the partitions with the other publish replicas on the broker (`None`: consume
    /// `partitions`, pinned). Ignored in process, where there is no other replica.
    pub membership: Option<MembershipTiming>,
    /// Deliveries held per partition (broker prefetch, and the coordinator's own bound).
    pub prefetch: u16,
    /// Write batches: one bulk request each (live upserts; a check group's differing upserts).
    pub batch: BatchLimits,
    /// A live write batch goes at once when no request of its key is in flight (and lingers
    /// only while one is); false: it waits out `batch.linger`.
    pub send_when_idle: bool,
    /// Check groups: a resync's upserts whose current state in Port one read fetches.
    pub check: BatchLimits,
    /// Requests to Port in flight at once, across partitions.
    pub max_concurrent_requests: usize,
    pub retry: RetryPolicy,
    /// On shutdown, how long in-flight requests may take before their deliveries are returned.
    pub shutdown_deadline: Duration,
    /// Entities the version guard remembers, across every partition the process consumes
    /// (fixed bytes each: see `crate::ordering`).
    pub guard_capacity: usize,
}

impl PublishConfig {
    pub fn from_settings(settings: &Settings) -> Result<Self, PublishError> {
        let publish = &settings.pipeline.publish;
        let linger = Duration::from_millis(publish.batch_linger_ms);
        Ok(Self {
            partitions: settings.publish_partitions()?,
            membership: match settings.publish_pinned_partitions()? {
                Some(_) => None,
                None => {
                    let (heartbeat, timeout) = publish.membership_timing();
                    Some(MembershipTiming { heartbeat, timeout })
                }
            },
            prefetch: publish.prefetch.clamp(1, u64::from(u16::MAX)) as u16,
            batch: BatchLimits {
                linger,
                ..BatchLimits::default()
            },
            send_when_idle: publish.send_when_idle,
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

    /// Consumes its partitions until `shutdown` is cancelled or the bus closes, then drains
    /// (flushes open batches, finishes in-flight requests within the deadline). On RabbitMQ
    /// without pinned partitions, its partitions are its share among the publish replicas
    /// ([`crate::sharing`]), and change as replicas come and go.
    pub async fn run(self, bus: Bus, shutdown: CancellationToken) -> Result<(), PublishError> {
        let (config, shared) = self.into_shared(&shutdown);
        let total = bus.topology().partitions;
        let heard = config.membership.and_then(|timing| {
            bus.hear_members(timing.timeout)
                .map(|heard| (timing, heard))
        });
        let (share, assignment) = watch::channel(Vec::new());
        let sharing = match heard {
            Some((timing, heard)) => {
                let me = uuid::Uuid::new_v4().to_string();
                tracing::info!(
                    member = %me,
                    partitions = total,
                    heartbeat_ms = timing.heartbeat.as_millis() as u64,
                    timeout_ms = timing.timeout.as_millis() as u64,
                    prefetch = config.prefetch,
                    max_concurrent_requests = config.max_concurrent_requests,
                    "publish worker started; sharing the change partitions with the other publish replicas"
                );
                let task = Sharing {
                    bus: bus.clone(),
                    heard,
                    me,
                    partitions: total,
                    timing,
                    share,
                    gauges: shared.stats.share().clone(),
                    stop: shared.stop.clone(),
                };
                Some(tokio::spawn(task.run()))
            }
            None => {
                tracing::info!(
                    partitions = ?config.partitions,
                    prefetch = config.prefetch,
                    max_concurrent_requests = config.max_concurrent_requests,
                    "publish worker started"
                );
                shared.stats.share().set_members(1);
                // Sent once; the coordinator notices the sender is gone and stops watching.
                let _ = share.send(config.partitions.clone());
                None
            }
        };
        consume(shared, config, bus, assignment, sharing).await
    }

    /// Consumes the partitions `assignment` names, taking up and handing over partitions as
    /// it changes — what the sharing task drives in [`Publisher::run`]; for tests of the
    /// hand-over and for embedders with their own membership.
    pub async fn run_with_assignment(
        self,
        bus: Bus,
        shutdown: CancellationToken,
        assignment: watch::Receiver<Vec<u16>>,
    ) -> Result<(), PublishError> {
        let (config, shared) = self.into_shared(&shutdown);
        consume(shared, config, bus, assignment, None).await
    }

    fn into_shared(self, shutdown: &CancellationToken) -> (PublishConfig, Arc<Shared>) {
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
        (config, shared)
    }
}

/// Runs the coordinator until shutdown, then lets the sharing task say goodbye.
async fn consume(
    shared: Arc<Shared>,
    config: PublishConfig,
    bus: Bus,
    assignment: watch::Receiver<Vec<u16>>,
    sharing: Option<tokio::task::JoinHandle<()>>,
) -> Result<(), PublishError> {
    let result = Coordinator::new(shared.clone(), config, bus, assignment)
        .run()
        .await;
    shared.stop.cancel();
    if let Some(sharing) = sharing {
        // Says goodbye to the other replicas (bounded by the fail-fast publish).
        let _ = sharing.await;
    }
    shared.stats.share().set_partitions(0);
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

/// What the coordinator knows of a running send task.
struct InFlightTask {
    keys: Vec<EntityKey>,
    /// The source of each delivery the task settles.
    sources: Vec<usize>,
    /// The key of the live write batch it sends (`None`: a check group or a delete).
    write_key: Option<BatchKey>,
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

/// A pending read of one partition: its source, the subscription back, and what it read
/// (`None` when the read was stopped, or the bus shut down).
type Reading = BoxFuture<'static, (usize, Subscription, Option<Delivery>)>;

fn read(source: usize, mut subscription: Subscription, stop: CancellationToken) -> Reading {
    Box::pin(async move {
        let delivery = subscription.next_until(stop.cancelled_owned()).await;
        (source, subscription, delivery)
    })
}

/// One partition consumed: a subscription and what the coordinator holds of it. A partition
/// consumed again after a hand-over is a new source (sources are never reused), so a task
/// that ends late never settles into the wrong one.
struct Source {
    partition: u16,
    /// The subscription while no read is pending (paused at prefetch, or back from a read
    /// stopped by a release); `None` while a read holds it, or after it ended.
    idle: Option<Subscription>,
    /// A read of this source is pending.
    reading: bool,
    /// Stops the pending read (a release).
    stop_read: CancellationToken,
    /// Deliveries of this source in open batches, parked or in flight.
    held: usize,
    /// The partition is being handed over: nothing is read, unsent deliveries are let go, and
    /// the subscription closes once the requests in flight ended.
    releasing: bool,
    /// The bus ended the subscription (shutdown).
    ended: bool,
    /// A resync's barrier read from this partition, waiting until every delivery read before
    /// it is settled (`held` = 0). Nothing more is read from the partition meanwhile.
    barrier: Option<(ResyncBarrier, Delivery)>,
}

/// The state of every partition this process consumes.
struct Coordinator {
    shared: Arc<Shared>,
    config: PublishConfig,
    bus: Bus,
    /// The partitions this process should consume, as the sharing task (or the settings) says.
    assignment: watch::Receiver<Vec<u16>>,
    /// False once the assignment's sender is gone (static partitions after start-up).
    assignment_open: bool,
    /// The partitions wanted now.
    wanted: BTreeSet<u16>,
    sources: HashMap<usize, Source>,
    /// The source of each partition consumed or being handed over.
    by_partition: BTreeMap<u16, usize>,
    next_source: usize,
    /// Reads in progress, one per partition that is below its prefetch bound.
    reading: FuturesUnordered<Reading>,
    /// Live upserts, by bulk request.
    writes: Batcher<BatchKey, Item>,
    /// A resync's upserts, by read of their current state in Port.
    checks: Batcher<BatchKey, Item>,
    guard: VersionGuard,
    /// Entities in an open write batch or check group, and which.
    pending: HashMap<EntityKey, BatchKey>,
    /// Entities in a send task that has not ended.
    in_flight: HashSet<EntityKey>,
    /// Live write batches in a send task that has not ended, by key.
    writes_in_flight: HashMap<BatchKey, usize>,
    /// Newer changes of in-flight entities, waiting for that request to end.
    parked: HashMap<EntityKey, Item>,
    tasks: JoinSet<TaskEnd>,
    task_info: HashMap<Id, InFlightTask>,
    fatal: Option<PublishError>,
}

impl Coordinator {
    fn new(
        shared: Arc<Shared>,
        config: PublishConfig,
        bus: Bus,
        assignment: watch::Receiver<Vec<u16>>,
    ) -> Self {
        Self {
            writes: Batcher::new(config.batch),
            checks: Batcher::new(config.check),
            guard: VersionGuard::new(config.guard_capacity),
            shared,
            config,
            bus,
            assignment,
            assignment_open: true,
            wanted: BTreeSet::new(),
            sources: HashMap::new(),
            by_partition: BTreeMap::new(),
            next_source: 0,
            reading: FuturesUnordered::new(),
            pending: HashMap::new(),
            in_flight: HashSet::new(),
            writes_in_flight: HashMap::new(),
            parked: HashMap::new(),
            tasks: JoinSet::new(),
            task_info: HashMap::new(),
            fatal: None,
        }
    }

    fn prefetch(&self) -> usize {
        usize::from(self.config.prefetch.max(1))
    }

    async fn run(mut self) -> Result<(), PublishError> {
        let stop = self.shared.stop.clone();
        let first = self.assignment.borrow_and_update().clone();
        self.reassign(first).await;
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    let sources = self.task_ended(joined);
                    self.finish_releases(sources.clone()).await;
                    self.pass_barriers(sources).await;
                }
                changed = self.assignment.changed(), if self.assignment_open => {
                    match changed {
                        Ok(()) => {
                            let wanted = self.assignment.borrow_and_update().clone();
                            self.reassign(wanted).await;
                        }
                        Err(_) => self.assignment_open = false,
                    }
                }
                _ = sleep_until(deadline), if deadline.is_some() => {
                    self.close_batches(Close::Expired);
                }
                Some((source, subscription, delivery)) = self.reading.next(), if !self.reading.is_empty() => {
                    self.read_ended(source, subscription, delivery).await;
                    if self.all_ended() {
                        break;
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

    /// What a read brought: a delivery to take in, or the end of the read (stopped by a
    /// release, or the bus shut down).
    async fn read_ended(
        &mut self,
        id: usize,
        subscription: Subscription,
        delivery: Option<Delivery>,
    ) {
        let prefetch = self.prefetch();
        let Some(source) = self.sources.get_mut(&id) else {
            return;
        };
        source.reading = false;
        if source.releasing {
            // A delivery read as the release began is let go with the rest: unsettled, it
            // goes back to the queue, in order, when the subscription closes.
            drop(delivery);
            source.idle = Some(subscription);
            self.finish_releases([id]).await;
            return;
        }
        let Some(delivery) = delivery else {
            // The bus closed this partition (shutdown): it ends here.
            source.ended = true;
            return;
        };
        self.intake(id, delivery).await;
        let Some(source) = self.sources.get_mut(&id) else {
            return;
        };
        if source.held < prefetch && source.barrier.is_none() {
            source.reading = true;
            self.reading
                .push(read(id, subscription, source.stop_read.clone()));
        } else {
            source.idle = Some(subscription);
            self.pass_barriers([id]).await;
        }
    }

    /// Passes the barriers of `ids` whose partition has settled every delivery read before
    /// them: reports `BarrierPassed` to the coordinator (confirmed), then acks the barrier and
    /// reads on. A waiting barrier does not hurry the open batches: they go after their linger
    /// as usual (closing them early would split a resync's check groups into more reads).
    async fn pass_barriers(&mut self, ids: impl IntoIterator<Item = usize>) {
        for id in ids {
            let Some(source) = self.sources.get_mut(&id) else {
                continue;
            };
            if source.barrier.is_none() || source.releasing {
                continue;
            }
            if source.held > 0 {
                continue;
            }
            let Some((barrier, delivery)) = source.barrier.take() else {
                continue;
            };
            let partition = source.partition;
            let dead_lettered = self
                .shared
                .stats
                .take_barrier_dead_letters(id, barrier.resync_id);
            let report = encode(&ResyncControl::BarrierPassed {
                v: SCHEMA_VERSION,
                resync_id: barrier.resync_id,
                barrier_id: barrier.barrier_id,
                partition,
                dead_lettered,
            });
            let published = self
                .bus
                .publish(Outgoing::new(Destination::ResyncProgress, report))
                .await;
            match published {
                // Reported: the barrier is done here. A lost ack only means it comes again
                // and is reported again (the coordinator counts a partition once).
                Ok(()) => {
                    if let Err(e) = delivery.ack().await {
                        tracing::debug!(partition, error = %e, "could not ack a resync barrier; it will be reported again");
                    }
                    tracing::debug!(resync_id = %barrier.resync_id, partition, dead_lettered, "resync barrier passed");
                }
                // Shutting down: unsettled, the barrier goes back to the queue.
                Err(e) => {
                    tracing::warn!(resync_id = %barrier.resync_id, partition, error = %e, "could not report a passed resync barrier; it is delivered again");
                    drop(delivery);
                }
            }
        }
        self.resume_reading();
    }

    /// Whether every partition consumed was ended by the bus (shutdown; with static
    /// partitions, the end of the worker).
    fn all_ended(&self) -> bool {
        !self.sources.is_empty() && self.sources.values().all(|s| s.ended)
    }

    /// Consumes what `wanted` names and no more: new partitions are subscribed at once (under
    /// single active consumer, a standby until their previous consumer lets go), partitions
    /// no longer wanted are handed over (see [`Coordinator::release`]).
    async fn reassign(&mut self, wanted: Vec<u16>) {
        self.wanted = wanted.into_iter().collect();
        let lost: Vec<usize> = self
            .by_partition
            .iter()
            .filter(|(partition, id)| {
                !self.wanted.contains(partition)
                    && self.sources.get(id).is_some_and(|s| !s.releasing)
            })
            .map(|(_, id)| *id)
            .collect();
        for id in lost {
            self.release(id).await;
        }
        self.gain_wanted();
        self.report_share();
    }

    /// Subscribes to the wanted partitions that have no source. A partition still being
    /// handed over is subscribed again only once that subscription closed: the deliveries its
    /// release let go must go back to the queue first.
    fn gain_wanted(&mut self) {
        let missing: Vec<u16> = self
            .wanted
            .iter()
            .filter(|p| !self.by_partition.contains_key(p))
            .copied()
            .collect();
        for partition in missing {
            let queue = WorkQueue::Changes { partition };
            let subscription = match self.bus.subscribe_lazily(queue, self.config.prefetch) {
                Ok(subscription) => subscription,
                Err(e) => {
                    tracing::error!(partition, error = %e, "cannot consume a change partition");
                    continue;
                }
            };
            let id = self.next_source;
            self.next_source += 1;
            let stop_read = CancellationToken::new();
            self.reading.push(read(id, subscription, stop_read.clone()));
            self.sources.insert(
                id,
                Source {
                    partition,
                    idle: None,
                    reading: true,
                    stop_read,
                    held: 0,
                    releasing: false,
                    ended: false,
                    barrier: None,
                },
            );
            self.by_partition.insert(partition, id);
        }
    }

    /// Hands a partition over: stops reading it, lets go of what it holds and has not sent
    /// (open batches, parked changes: unsettled, they go back to the queue when the
    /// subscription closes, in the order they were delivered), and lets the requests in
    /// flight end and settle. Only then does the subscription close, and under single active
    /// consumer the next consumer of the queue becomes active: it never sees a change while
    /// an older one of the same entity is still being written here.
    ///
    /// Not `nack` + requeue: while this consumer is the active one, the broker would deliver
    /// the requeued messages straight back to it, behind the ones it had prefetched, and the
    /// close would return them in that order — newer changes ahead of older ones. Closing
    /// returns every unsettled delivery in the order it was delivered (quorum queues sort
    /// them back by delivery, and hand returned messages out before the rest).
    async fn release(&mut self, id: usize) {
        let Some(source) = self.sources.get_mut(&id) else {
            return;
        };
        source.releasing = true;
        source.stop_read.cancel();
        // A barrier waiting here is let go too: the next owner passes it (and reports it).
        drop(source.barrier.take());
        // Unsent items of this source: out of the batches, out of the parking.
        let batched: Vec<(EntityKey, BatchKey)> = self
            .pending
            .iter()
            .map(|(key, batch)| (key.clone(), batch.clone()))
            .collect();
        let mut let_go = 0usize;
        for (key, batch_key) in batched {
            if let Some(item) = self
                .batcher(&batch_key)
                .remove(&batch_key, |i| i.held.key == key && i.held.source == id)
            {
                self.pending.remove(&key);
                let_go += item.held.sources().count();
            }
        }
        let parked: Vec<EntityKey> = self
            .parked
            .iter()
            .filter(|(_, item)| item.held.source == id)
            .map(|(key, _)| key.clone())
            .collect();
        for key in parked {
            if let Some(item) = self.parked.remove(&key) {
                let_go += item.held.sources().count();
            }
        }
        if let Some(source) = self.sources.get_mut(&id) {
            source.held = source.held.saturating_sub(let_go);
            tracing::debug!(
                partition = source.partition,
                let_go,
                in_flight = source.held,
                "handing a change partition over"
            );
        }
        self.finish_releases([id]).await;
    }

    /// Closes the subscriptions of released sources whose requests have all ended and whose
    /// read has stopped; subscribes again to a partition wanted back meanwhile.
    async fn finish_releases(&mut self, ids: impl IntoIterator<Item = usize>) {
        let mut closed = false;
        for id in ids {
            let done = self
                .sources
                .get(&id)
                .is_some_and(|s| s.releasing && s.held == 0 && !s.reading);
            if !done {
                continue;
            }
            let Some(source) = self.sources.remove(&id) else {
                continue;
            };
            if self.by_partition.get(&source.partition) == Some(&id) {
                self.by_partition.remove(&source.partition);
            }
            self.shared.stats.forget_barrier_source(id);
            if let Some(subscription) = source.idle {
                subscription.close().await;
            }
            tracing::debug!(partition = source.partition, "change partition handed over");
            closed = true;
        }
        if closed {
            self.gain_wanted();
            self.report_share();
        }
    }

    /// The partitions consumed now (the gauge).
    fn report_share(&self) {
        let consumed = self.sources.values().filter(|s| !s.releasing).count();
        self.shared.stats.share().set_partitions(consumed);
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
                        partitions = ?self.by_partition.keys().collect::<Vec<_>>(),
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

    /// The queue of a source, for log lines.
    fn queue_of(&self, source: usize) -> Option<WorkQueue> {
        self.sources.get(&source).map(|s| WorkQueue::Changes {
            partition: s.partition,
        })
    }

    async fn intake(&mut self, source: usize, delivery: Delivery) {
        let stats = &self.shared.stats;
        let change = match PartitionMessage::decode(&delivery.body) {
            Ok(PartitionMessage::Change(change)) => *change,
            // Not a change: it never meets the version guard, the batches or the counters.
            Ok(PartitionMessage::Barrier(barrier)) => {
                if let Some(source) = self.sources.get_mut(&source) {
                    // One barrier at a time per partition: nothing is read past it.
                    source.barrier = Some((barrier, delivery));
                }
                return;
            }
            Err(e) => {
                stats.incr(Counter::Received);
                let reason = format!("publish cannot read this change: {e}");
                tracing::error!(queue = ?self.queue_of(source), reason = %reason, "dead-lettering an undecodable change");
                settle_dead_letter(stats, delivery, &reason).await;
                return;
            }
        };
        stats.incr(Counter::Received);
        if matches!(change.origin, Origin::Webhook { .. }) {
            live_timing::record(change.raw_event_id, Stage::PublishReceived);
        }
        stats.per_kind_incr(
            &change.kind,
            change.resource_index,
            PublishOutcome::Received,
            change.origin.resync_id(),
        );
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
                stats.per_kind_incr(
                    &change.kind,
                    change.resource_index,
                    PublishOutcome::DeadLettered,
                    change.origin.resync_id(),
                );
                stats.barrier_dead_letter(source, change.origin.resync_id());
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
            stats.per_kind_incr(
                &change.kind,
                change.resource_index,
                PublishOutcome::SkippedStale,
                change.origin.resync_id(),
            );
            settle_ack(stats, delivery).await;
            return;
        }
        let payload = match change.op {
            ChangeOp::Upsert { entity } => Payload::Upsert {
                batch_key: BatchKey {
                    blueprint: BlueprintId::new(change.blueprint.clone()),
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
                resource: change.resource_index,
                resync_id: change.origin.resync_id(),
                observed_at: change.observed_at,
                delivery,
                superseded: Vec::new(),
            },
            payload,
        };
        if let Some(source) = self.sources.get_mut(&source) {
            source.held += 1;
        }
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
                    self.dispatch_batch(batch, BatchClose::Full);
                }
                self.send_if_idle(&batch_key, BatchClose::Idle);
            }
            // Checked on intake, so this does not happen; sent alone, Port has the last word.
            Err(too_large) => self.dispatch(vec![too_large.item], Some(batch_key)),
        }
    }

    /// Sends the open live write batch of `key` now if no request of that key is in flight
    /// (and sending when idle is on); otherwise it fills until that request ends.
    fn send_if_idle(&mut self, key: &BatchKey, why: BatchClose) {
        if !self.config.send_when_idle
            || key.reads_port_first()
            || self.writes_in_flight.get(key).is_some_and(|n| *n > 0)
        {
            return;
        }
        if let Some(batch) = self.writes.take(key) {
            self.dispatch_batch(batch, why);
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
        let (writes, checks, why) = match which {
            Close::Expired => {
                let now = Instant::now();
                (
                    self.writes.take_expired(now),
                    self.checks.take_expired(now),
                    BatchClose::Linger,
                )
            }
            Close::All => (self.writes.drain(), self.checks.drain(), BatchClose::Held),
        };
        for batch in writes.into_iter().chain(checks) {
            self.dispatch_batch(batch, why);
        }
    }

    /// Sends a closed batch or group; `why` it closed is counted for live write batches.
    fn dispatch_batch(&mut self, batch: Batch<BatchKey, Item>, why: BatchClose) {
        if !batch.key.reads_port_first() {
            self.shared.stats.incr(why.into());
        }
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
        let write_key = batch_key.clone().filter(|key| !key.reads_port_first());
        if let Some(key) = &write_key {
            *self.writes_in_flight.entry(key.clone()).or_default() += 1;
        }
        let handle = match batch_key {
            Some(key) if key.reads_port_first() => {
                self.tasks.spawn(send::checked_upserts(shared, key, items))
            }
            Some(key) => self.tasks.spawn(send::upserts(shared, key, items)),
            None => self.tasks.spawn(send::deletes(shared, items)),
        };
        self.task_info.insert(
            handle.id(),
            InFlightTask {
                keys,
                sources,
                write_key,
            },
        );
    }

    /// Settles the coordinator's side of a send task that ended; answers the sources it held
    /// deliveries of.
    fn task_ended(&mut self, joined: Result<(Id, TaskEnd), tokio::task::JoinError>) -> Vec<usize> {
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
            return Vec::new();
        };
        for source in &task.sources {
            if let Some(source) = self.sources.get_mut(source) {
                source.held = source.held.saturating_sub(1);
            }
        }
        if let Some(key) = &task.write_key
            && let Some(n) = self.writes_in_flight.get_mut(key)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.writes_in_flight.remove(key);
            }
        }
        for key in task.keys {
            self.in_flight.remove(&key);
            if let Some(item) = self.parked.remove(&key) {
                self.enqueue(item);
            }
        }
        // What came while this request was out goes now, if it was the last of its key.
        if let Some(key) = &task.write_key {
            self.send_if_idle(key, BatchClose::AfterRequest);
        }
        self.resume_reading();
        task.sources
    }

    /// Reads again from partitions that dropped below their prefetch bound.
    fn resume_reading(&mut self) {
        let prefetch = self.prefetch();
        for (id, source) in self.sources.iter_mut() {
            if !source.releasing
                && source.held < prefetch
                && source.barrier.is_none()
                && let Some(subscription) = source.idle.take()
            {
                source.reading = true;
                self.reading
                    .push(read(*id, subscription, source.stop_read.clone()));
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
