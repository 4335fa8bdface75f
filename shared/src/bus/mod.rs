//! The bus: how roles hand messages to each other, with the same contract on RabbitMQ and in
//! process.
//!
//! - [`Bus::publish_all`] returns only once every message is durable (publisher confirms on
//!   RabbitMQ). A caller acks its own input only after that. What it does while the broker is
//!   away depends on the handle: the pipeline's handles wait until the broker is back (the work
//!   pauses, nothing piles up); a [`Bus::failing_fast`] handle (webhooks) gets an error at once.
//! - [`Bus::subscribe`] yields [`Delivery`]s with bounded prefetch; each is acked after its
//!   effect, dead-lettered with a reason, or returned to the queue. A subscription resumes on
//!   its own after a lost connection; what was delivered on the old one comes again.
//!
//! On RabbitMQ the connection is made and kept in the background ([`Bus::start`]): creating a
//! bus never waits for the broker, and every step has a timeout and heartbeats (see `link`).
//! The in-process bus backs `adoport all` without a broker: bounded channels, nothing durable,
//! the same stages.

mod archive;
mod consumer;
mod dead_letters;
mod declare;
mod link;
mod lock;
mod members;
mod memory;
mod rabbit;

use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::config::{BrokerEndpoint, BrokerTimeouts, Secret, Settings};
use crate::topology::{DeadLetterQueue, LockQueues, Topology, WorkQueue};

pub use archive::{ArchiveReader, ArchiveStart, ArchivedMessage};
pub use consumer::{RabbitSettle, RabbitSubscription};
pub use dead_letters::{RequeueOutcome, work_queue_named};
pub use lock::{BusLock, LockAnswer, LockAttempt};
pub use memory::{MemoryBus, QUEUE_CAPACITY, RAW_QUEUE_BYTES};
pub use rabbit::RabbitBus;

/// Header that carries the reason a message was dead-lettered.
pub const REASON_HEADER: &str = "x-adoport-reason";
/// Header that names the queue a dead letter came from.
pub const ORIGIN_QUEUE_HEADER: &str = "x-adoport-queue";

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot reach the broker at {endpoint}: {detail}")]
    Unreachable { endpoint: String, detail: String },
    #[error("the broker did not confirm a publish to {destination}: {detail}")]
    NotConfirmed { destination: String, detail: String },
    #[error(
        "no queue is bound to {destination} ({detail}): the topology does not match this message (are ADOPORT__BROKER__PARTITIONS and PREFIX the same in every role?)"
    )]
    Unroutable { destination: String, detail: String },
    #[error("broker operation {operation} failed: {detail}")]
    Operation { operation: String, detail: String },
    #[error(
        "the broker did not answer {operation} within {} ms (ADOPORT__BROKER__OPERATION_TIMEOUT_SECS): it is overloaded or stuck, or the network to it is",
        after.as_millis()
    )]
    TimedOut { operation: String, after: Duration },
    #[error(
        "a delivery from {queue} could not be settled: its channel to the broker closed; the broker delivers the message again"
    )]
    DeliveryLost { queue: String },
    #[error(
        "queue {0} already has its consumer in this process (the in-process bus has one consumer per queue)"
    )]
    AlreadyConsumed(String),
    #[error("shutting down")]
    ShuttingDown,
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination {
    /// The raw exchange: the work queue for transform and the archive stream.
    Raw,
    /// One partition of the change queues.
    Change { partition: u16 },
    /// The resync request queue.
    ResyncRequest,
    /// The resync progress queue (reconciliation bookkeeping).
    ResyncProgress,
}

impl Destination {
    /// The work queue a message sent here lands in (the in-process bus routes by it).
    pub fn work_queue(self) -> WorkQueue {
        match self {
            Destination::Raw => WorkQueue::Raw,
            Destination::Change { partition } => WorkQueue::Changes { partition },
            Destination::ResyncRequest => WorkQueue::ResyncRequests,
            Destination::ResyncProgress => WorkQueue::ResyncProgress,
        }
    }
}

/// A message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub destination: Destination,
    pub body: Bytes,
}

impl Outgoing {
    pub fn new(destination: Destination, body: impl Into<Bytes>) -> Self {
        Self {
            destination,
            body: body.into(),
        }
    }
}

/// A message read back from a dead-letter queue.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub body: Bytes,
    pub reason: String,
    pub origin_queue: String,
}

/// Which of the bus's publishing paths a handle's publishes take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The pipeline's: crawl pages, resync changes, control messages.
    Pipeline,
    /// Live events' (a webhook's raw events, the changes made of them): a confirm-mode
    /// channel of their own on RabbitMQ, so that their confirms do not wait behind the
    /// pipeline's (see [`Bus::live_lane`]).
    Live,
}

/// One bus, either kind, with how its publishes behave while the broker is away. Cheap to
/// clone.
#[derive(Clone)]
pub struct Bus {
    backend: Backend,
    publishing: Publishing,
    /// The channel its publishes take ([`Bus::live_lane`]).
    lane: Lane,
    /// Whether [`Bus::live_lane`] gives the live lane (`ADOPORT__BROKER__LIVE_CHANNEL`).
    live_lane_enabled: bool,
    /// The deadline of a [`Bus::failing_fast`] handle's publishes.
    fail_fast: Duration,
}

#[derive(Clone)]
enum Backend {
    Rabbit(RabbitBus),
    Memory(MemoryBus),
}

/// What a publish does when the broker cannot take it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Publishing {
    /// Wait until it can (the pipeline).
    Wait,
    /// Fail at once, or once the deadline passes (webhooks: their sender retries).
    FailFast,
}

impl Bus {
    fn of(backend: Backend, fail_fast: Duration) -> Self {
        Self {
            backend,
            publishing: Publishing::Wait,
            lane: Lane::Pipeline,
            live_lane_enabled: true,
            fail_fast,
        }
    }

    /// Connects to RabbitMQ now and declares the topology; the first attempt's error if it
    /// fails, within the connect and operation timeouts (operator tools and tests).
    pub async fn rabbit(
        url: &Secret,
        topology: Topology,
        timeouts: BrokerTimeouts,
        shutdown: CancellationToken,
    ) -> Result<Self, BusError> {
        let endpoint = Self::endpoint(url)?;
        let bus = RabbitBus::connect(endpoint, topology, timeouts, shutdown).await?;
        Ok(Self::of(Backend::Rabbit(bus), timeouts.fail_fast))
    }

    /// An in-process bus.
    pub fn memory(topology: Topology, shutdown: CancellationToken) -> Self {
        Self::of(
            Backend::Memory(MemoryBus::new(topology, shutdown)),
            BrokerTimeouts::default().fail_fast,
        )
    }

    /// The bus the settings ask for, connecting in the background: RabbitMQ at
    /// `ADOPORT__BROKER__URL`, or in process when it is unset. Never waits for the broker
    /// (the roles' start-up, health and webhook ports must not); operations wait as their
    /// kind asks. Needs a tokio runtime.
    pub fn start(settings: &Settings, shutdown: CancellationToken) -> Result<Self, BusError> {
        let broker = &settings.pipeline.broker;
        let timeouts = broker.timeouts();
        let backend = match &broker.url {
            Some(url) => Backend::Rabbit(RabbitBus::start(
                Self::endpoint(url)?,
                settings.topology(),
                timeouts,
                shutdown,
            )),
            None => Backend::Memory(MemoryBus::new(settings.topology(), shutdown)),
        };
        Ok(Self::of(backend, timeouts.fail_fast).with_live_lane(broker.live_channel))
    }

    /// The bus the settings ask for, connected now ([`Bus::rabbit`]), or in process when
    /// `ADOPORT__BROKER__URL` is unset (operator tools, tests, the demo).
    pub async fn for_settings(
        settings: &Settings,
        shutdown: CancellationToken,
    ) -> Result<Self, BusError> {
        let broker = &settings.pipeline.broker;
        let bus = match &broker.url {
            Some(url) => {
                Self::rabbit(url, settings.topology(), broker.timeouts(), shutdown).await?
            }
            None => Self::memory(settings.topology(), shutdown),
        };
        Ok(bus.with_live_lane(broker.live_channel))
    }

    fn endpoint(url: &Secret) -> Result<BrokerEndpoint, BusError> {
        BrokerEndpoint::parse(url).map_err(|problem| BusError::Unreachable {
            endpoint: "ADOPORT__BROKER__URL".into(),
            detail: problem,
        })
    }

    /// The same bus, but its publishes fail at once while the broker is down or holding
    /// publishes back, and when the confirms take longer than
    /// `ADOPORT__BROKER__WEBHOOK_PUBLISH_TIMEOUT_MS`: for callers whose peer retries (the
    /// webhook receiver answers 503, and Azure DevOps sends the event again).
    pub fn failing_fast(&self) -> Bus {
        Bus {
            publishing: Publishing::FailFast,
            ..self.clone()
        }
    }

    /// The same bus, but its publishes take the live events' lane: on RabbitMQ a
    /// confirm-mode channel of their own, whose confirms do not wait behind the crawl's
    /// pages and the resync's changes on the pipeline's channel. Confirmed the same way; the
    /// same queues. `ADOPORT__BROKER__LIVE_CHANNEL=false` ([`Bus::with_live_lane`]) keeps every
    /// publish on the pipeline's channel, as before the lane existed.
    pub fn live_lane(&self) -> Bus {
        Bus {
            lane: if self.live_lane_enabled {
                Lane::Live
            } else {
                Lane::Pipeline
            },
            ..self.clone()
        }
    }

    /// The lane this handle publishes on.
    pub fn lane(&self) -> Lane {
        self.lane
    }

    /// The same bus, with [`Bus::live_lane`] giving the live lane or not (`false`: every
    /// publish on the pipeline's channel, as before the lane existed).
    pub fn with_live_lane(self, enabled: bool) -> Bus {
        Bus {
            live_lane_enabled: enabled,
            lane: if enabled { self.lane } else { Lane::Pipeline },
            ..self
        }
    }

    pub fn topology(&self) -> &Topology {
        match &self.backend {
            Backend::Rabbit(b) => b.topology(),
            Backend::Memory(b) => b.topology(),
        }
    }

    /// Whether this bus is RabbitMQ (durable, with dead-letter queues and an archive).
    pub fn is_broker(&self) -> bool {
        matches!(self.backend, Backend::Rabbit(_))
    }

    /// Publishes every message and returns when all are durable. While the broker cannot take
    /// them, this handle's kind decides: wait until it can, publishing again after a failure
    /// (duplicates are harmless downstream), or fail at once ([`Bus::failing_fast`]). Waiting
    /// ends with `ShuttingDown` on shutdown.
    pub async fn publish_all(&self, messages: Vec<Outgoing>) -> Result<(), BusError> {
        if messages.is_empty() {
            return Ok(());
        }
        match (&self.backend, self.publishing) {
            (Backend::Rabbit(b), Publishing::Wait) => {
                b.publish_waiting_on(self.lane, &b.routed(messages)).await
            }
            (Backend::Rabbit(b), Publishing::FailFast) => {
                b.publish_fail_fast_on(self.lane, &b.routed(messages)).await
            }
            (Backend::Memory(b), Publishing::Wait) => b.publish_all(messages).await,
            (Backend::Memory(b), Publishing::FailFast) => {
                tokio::time::timeout(self.fail_fast, b.publish_all(messages))
                    .await
                    .unwrap_or_else(|_| {
                        Err(BusError::NotConfirmed {
                            destination: "the in-process queue".into(),
                            detail: "it stayed full (the stages behind it are busy)".into(),
                        })
                    })
            }
        }
    }

    pub async fn publish(&self, message: Outgoing) -> Result<(), BusError> {
        self.publish_all(vec![message]).await
    }

    /// Starts consuming a work queue with at most `prefetch` unacknowledged deliveries. On
    /// RabbitMQ it waits for the connection (not past shutdown); a subscription keeps
    /// consuming across reconnects.
    pub async fn subscribe(
        &self,
        queue: WorkQueue,
        prefetch: u16,
    ) -> Result<Subscription, BusError> {
        match &self.backend {
            Backend::Rabbit(b) => Ok(Subscription::Rabbit(Box::new(
                b.subscribe(queue, prefetch).await,
            ))),
            Backend::Memory(b) => Ok(Subscription::Memory(b.subscribe(queue)?)),
        }
    }

    /// Publishes a publish replica's heartbeat to the members exchange (not persisted, at once
    /// or an error: the next beat tries again). Nothing to do in process, where no other
    /// replica can be.
    pub async fn announce_member(&self, body: impl Into<Bytes>) -> Result<(), BusError> {
        match &self.backend {
            Backend::Rabbit(b) => b.announce_member(body.into()).await,
            Backend::Memory(_) => Ok(()),
        }
    }

    /// Every publish replica's heartbeats, its own included, as they arrive (beats older than
    /// `max_age` are dropped), across reconnects, until the receiver is dropped or the process
    /// shuts down. `None` in process: there is no other replica to hear.
    pub fn hear_members(&self, max_age: Duration) -> Option<tokio::sync::mpsc::Receiver<Bytes>> {
        match &self.backend {
            Backend::Rabbit(b) => Some(b.hear_members(max_age)),
            Backend::Memory(_) => None,
        }
    }

    /// Like [`Bus::subscribe`], but returns at once: on RabbitMQ the consumer starts with the
    /// first read ([`Subscription::next`] / [`Subscription::next_until`]), which waits for the
    /// connection. For a caller that must not block while the broker is away.
    pub fn subscribe_lazily(
        &self,
        queue: WorkQueue,
        prefetch: u16,
    ) -> Result<Subscription, BusError> {
        match &self.backend {
            Backend::Rabbit(b) => Ok(Subscription::Rabbit(Box::new(RabbitSubscription::lazy(
                b.clone(),
                queue,
                prefetch,
            )))),
            Backend::Memory(b) => Ok(Subscription::Memory(b.subscribe(queue)?)),
        }
    }

    /// Tries to take a lock (an exclusive queue, and a presence queue its holder consumes; see
    /// `lock`): `Held` until its connection goes or it is released, `Taken` while another
    /// process holds it. On RabbitMQ it waits for the connection (not past shutdown). In
    /// process, the lock is free unless this process holds it.
    pub async fn try_lock(&self, queues: &LockQueues) -> Result<LockAttempt, BusError> {
        match &self.backend {
            Backend::Rabbit(b) => lock::try_lock_rabbit(b, queues).await,
            Backend::Memory(b) => Ok(b.locks().try_lock(queues)),
        }
    }

    /// Every value in the register `queue` (a quorum queue that keeps its newest message;
    /// normally one value, oldest first), left in place. Waits at most the connect timeout
    /// for the broker.
    pub async fn read_register(&self, queue: &str) -> Result<Vec<Bytes>, BusError> {
        match &self.backend {
            Backend::Rabbit(b) => lock::read_register_rabbit(b, queue).await,
            Backend::Memory(b) => Ok(b.locks().read(queue)),
        }
    }

    /// Replaces the value of the register `queue`, confirmed; waits for the broker as long as
    /// it takes (not past shutdown).
    pub async fn write_register(&self, queue: &str, body: Bytes) -> Result<(), BusError> {
        match &self.backend {
            Backend::Rabbit(b) => lock::write_register_rabbit(b, queue, body).await,
            Backend::Memory(b) => {
                b.locks().write(queue, body);
                Ok(())
            }
        }
    }

    /// Takes up to `max` dead letters off a DLQ (for the operator tools and tests). They are
    /// removed from the queue.
    pub async fn drain_dead_letters(
        &self,
        queue: DeadLetterQueue,
        max: usize,
    ) -> Result<Vec<DeadLetter>, BusError> {
        match &self.backend {
            Backend::Rabbit(b) => b.drain_dead_letters(queue, max).await,
            Backend::Memory(b) => Ok(b.drain_dead_letters(queue, max)),
        }
    }

    /// Number of messages ready in a work queue (not counting unacked ones).
    pub async fn ready_count(&self, queue: WorkQueue) -> Result<u64, BusError> {
        match &self.backend {
            Backend::Rabbit(b) => b.ready_count(queue).await,
            Backend::Memory(b) => Ok(b.ready_count(queue)),
        }
    }

    /// Whether the bus is connected now (for readiness probes and metrics).
    pub fn is_connected(&self) -> bool {
        match &self.backend {
            Backend::Rabbit(b) => b.is_connected(),
            Backend::Memory(_) => true,
        }
    }

    /// Why the bus cannot take messages now, naming the broker and what failed; `None` when
    /// it can (for `/readyz`).
    pub fn problem(&self) -> Option<String> {
        match &self.backend {
            Backend::Rabbit(b) => b.problem(),
            Backend::Memory(_) => None,
        }
    }

    /// Deletes the topology's queues and exchanges (tests and uninstall). No-op in process.
    pub async fn delete_topology(&self) -> Result<(), BusError> {
        match &self.backend {
            Backend::Rabbit(b) => b.delete_topology().await,
            Backend::Memory(_) => Ok(()),
        }
    }

    /// Closes connections; deliveries not acked yet go back to their queues.
    pub async fn close(&self) {
        if let Backend::Rabbit(b) = &self.backend {
            b.close().await;
        }
    }
}

/// A stream of deliveries from one work queue.
pub enum Subscription {
    // Boxed: the RabbitMQ consumer state is large, and a subscription moves into its task.
    Rabbit(Box<RabbitSubscription>),
    Memory(memory::MemorySubscription),
}

impl Subscription {
    /// The next delivery, or `None` once the bus shuts down.
    pub async fn next(&mut self) -> Option<Delivery> {
        self.next_until(std::future::pending()).await
    }

    /// The next delivery, or `None` once the bus shuts down or as soon as `stop` completes.
    /// Giving up loses nothing: a delivery not taken stays with the consumer (and goes back
    /// to the queue when it closes).
    pub async fn next_until(
        &mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Option<Delivery> {
        match self {
            Subscription::Rabbit(s) => s.next_until(stop).await,
            Subscription::Memory(s) => s.next_until(stop).await,
        }
    }

    /// Stops consuming, and returns when the broker has taken back everything delivered and
    /// not settled (in delivery order). Under single active consumer, the next consumer of
    /// the queue becomes active only then: settle what this consumer holds first.
    pub async fn close(self) {
        match self {
            Subscription::Rabbit(s) => s.close().await,
            Subscription::Memory(s) => s.close(),
        }
    }
}

/// A received message. Exactly one of [`ack`](Delivery::ack),
/// [`dead_letter`](Delivery::dead_letter) or [`requeue`](Delivery::requeue) settles it; dropping
/// it unsettled leaves it with the broker, which redelivers it after a reconnect.
pub struct Delivery {
    pub body: Bytes,
    /// How many times the broker delivered this message before (0 on first delivery).
    pub previous_deliveries: u32,
    settle: Settle,
}

enum Settle {
    Rabbit(RabbitSettle),
    Memory(memory::MemorySettle),
}

impl Delivery {
    /// Whether this consumer still holds the delivery. False once its channel closed (a
    /// connection loss, or the broker's consumer timeout): the broker has put the message back
    /// and may have handed it to another consumer, so settling it here does nothing.
    pub fn is_held(&self) -> bool {
        match &self.settle {
            Settle::Rabbit(s) => s.is_held(),
            Settle::Memory(_) => true,
        }
    }

    /// The effect is durable: remove the message.
    pub async fn ack(self) -> Result<(), BusError> {
        match self.settle {
            Settle::Rabbit(s) => s.ack().await,
            Settle::Memory(_) => Ok(()),
        }
    }

    /// The message cannot be processed: park it in the queue's DLQ with `reason` (confirmed),
    /// then remove it.
    pub async fn dead_letter(self, reason: &str) -> Result<(), BusError> {
        match self.settle {
            Settle::Rabbit(s) => s.dead_letter(self.body, reason).await,
            Settle::Memory(s) => {
                s.dead_letter(self.body, reason);
                Ok(())
            }
        }
    }

    /// Give the message back to its queue for another try (counts against the delivery limit).
    pub async fn requeue(self) -> Result<(), BusError> {
        match self.settle {
            Settle::Rabbit(s) => s.requeue().await,
            Settle::Memory(s) => {
                s.requeue(self.body);
                Ok(())
            }
        }
    }
}

/// Backoff between reconnect attempts: 100 ms doubling to `max`.
pub(crate) fn reconnect_delay(attempt: u32, max: Duration) -> Duration {
    let millis = 100u64.saturating_mul(1u64 << attempt.min(16));
    Duration::from_millis(millis).min(max)
}
