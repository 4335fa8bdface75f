//! The bus: how roles hand messages to each other, with the same contract on RabbitMQ and in
//! process.
//!
//! - [`Bus::publish_all`] returns only once every message is durable (publisher confirms on
//!   RabbitMQ). A caller acks its own input only after that.
//! - [`Bus::subscribe`] yields [`Delivery`]s with bounded prefetch; each is acked after its
//!   effect, dead-lettered with a reason, or returned to the queue.
//!
//! The RabbitMQ implementation survives broker restarts (reconnect with backoff, re-declare,
//! resume consuming). The in-process one backs `adoport all` without a broker: bounded channels,
//! nothing durable, the same stages.

mod archive;
mod dead_letters;
mod memory;
mod rabbit;

use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::config::{Secret, Settings};
use crate::topology::{DeadLetterQueue, Topology, WorkQueue};

pub use archive::{ArchiveReader, ArchiveStart, ArchivedMessage};
pub use dead_letters::{RequeueOutcome, work_queue_named};
pub use memory::MemoryBus;
pub use rabbit::RabbitBus;

/// Header that carries the reason a message was dead-lettered.
pub const REASON_HEADER: &str = "x-adoport-reason";
/// Header that names the queue a dead letter came from.
pub const ORIGIN_QUEUE_HEADER: &str = "x-adoport-queue";

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error(
        "cannot reach the broker at {endpoint}: {detail} (is RabbitMQ running and ADOPORT__BROKER__URL right?)"
    )]
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

/// One bus, either kind. Cheap to clone.
#[derive(Clone)]
pub enum Bus {
    Rabbit(RabbitBus),
    Memory(MemoryBus),
}

impl Bus {
    /// Connects to RabbitMQ and declares the topology.
    pub async fn rabbit(
        url: &Secret,
        topology: Topology,
        shutdown: CancellationToken,
    ) -> Result<Self, BusError> {
        Ok(Bus::Rabbit(
            RabbitBus::connect(url.clone(), topology, shutdown).await?,
        ))
    }

    /// An in-process bus.
    pub fn memory(topology: Topology, shutdown: CancellationToken) -> Self {
        Bus::Memory(MemoryBus::new(topology, shutdown))
    }

    /// The bus the settings ask for: RabbitMQ at `ADOPORT__BROKER__URL`, or in process when
    /// it is unset.
    pub async fn for_settings(
        settings: &Settings,
        shutdown: CancellationToken,
    ) -> Result<Self, BusError> {
        match &settings.pipeline.broker.url {
            Some(url) => Self::rabbit(url, settings.topology(), shutdown).await,
            None => Ok(Self::memory(settings.topology(), shutdown)),
        }
    }

    pub fn topology(&self) -> &Topology {
        match self {
            Bus::Rabbit(b) => b.topology(),
            Bus::Memory(b) => b.topology(),
        }
    }

    /// Publishes every message and returns when all are durable. On a broker failure it
    /// reconnects and publishes them again (duplicates are harmless downstream), within a
    /// bounded number of attempts.
    pub async fn publish_all(&self, messages: Vec<Outgoing>) -> Result<(), BusError> {
        if messages.is_empty() {
            return Ok(());
        }
        match self {
            Bus::Rabbit(b) => b.publish_all(messages).await,
            Bus::Memory(b) => b.publish_all(messages).await,
        }
    }

    pub async fn publish(&self, message: Outgoing) -> Result<(), BusError> {
        self.publish_all(vec![message]).await
    }

    /// Starts consuming a work queue with at most `prefetch` unacknowledged deliveries.
    pub async fn subscribe(
        &self,
        queue: WorkQueue,
        prefetch: u16,
    ) -> Result<Subscription, BusError> {
        match self {
            Bus::Rabbit(b) => Ok(Subscription::Rabbit(Box::new(
                b.subscribe(queue, prefetch).await?,
            ))),
            Bus::Memory(b) => Ok(Subscription::Memory(b.subscribe(queue)?)),
        }
    }

    /// Takes up to `max` dead letters off a DLQ (for the operator tools and tests). They are
    /// removed from the queue.
    pub async fn drain_dead_letters(
        &self,
        queue: DeadLetterQueue,
        max: usize,
    ) -> Result<Vec<DeadLetter>, BusError> {
        match self {
            Bus::Rabbit(b) => b.drain_dead_letters(queue, max).await,
            Bus::Memory(b) => Ok(b.drain_dead_letters(queue, max)),
        }
    }

    /// Number of messages ready in a work queue (not counting unacked ones).
    pub async fn ready_count(&self, queue: WorkQueue) -> Result<u64, BusError> {
        match self {
            Bus::Rabbit(b) => b.ready_count(queue).await,
            Bus::Memory(b) => Ok(b.ready_count(queue)),
        }
    }

    /// Whether the bus can take messages now (for readiness probes).
    pub fn is_connected(&self) -> bool {
        match self {
            Bus::Rabbit(b) => b.is_connected(),
            Bus::Memory(_) => true,
        }
    }

    /// Deletes the topology's queues and exchanges (tests and uninstall). No-op in process.
    pub async fn delete_topology(&self) -> Result<(), BusError> {
        match self {
            Bus::Rabbit(b) => b.delete_topology().await,
            Bus::Memory(_) => Ok(()),
        }
    }

    /// Closes connections; deliveries not acked yet go back to their queues.
    pub async fn close(&self) {
        if let Bus::Rabbit(b) = self {
            b.close().await;
        }
    }
}

/// A stream of deliveries from one work queue.
pub enum Subscription {
    // Boxed: the RabbitMQ consumer state is large, and a subscription moves into its task.
    Rabbit(Box<rabbit::RabbitSubscription>),
    Memory(memory::MemorySubscription),
}

impl Subscription {
    /// The next delivery, or `None` once the bus shuts down.
    pub async fn next(&mut self) -> Option<Delivery> {
        match self {
            Subscription::Rabbit(s) => s.next().await,
            Subscription::Memory(s) => s.next().await,
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
    Rabbit(rabbit::RabbitSettle),
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
