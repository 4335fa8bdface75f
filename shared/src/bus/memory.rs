//! The in-process bus for `adoport all` without a broker: bounded channels, same contracts.
//!
//! Every work queue is a bounded channel with one consumer. Publishing waits for room (the
//! same back-pressure prefetch gives on RabbitMQ). Nothing survives the process: this mode is
//! for small organizations and CI jobs, where a failed run is simply run again.
//!
//! Room is counted in messages ([`QUEUE_CAPACITY`]), and in the raw and change queues also in
//! bytes of message bodies ([`RAW_QUEUE_BYTES`], [`CHANGE_QUEUES_BYTES`]). A raw event is a
//! page of up to hundreds of KB: counted in messages alone, a crawl faster than transform could
//! pile a thousand pages (hundreds of MB) ahead of it in `adoport all`. An entity change is a
//! KB or so, but transform can make them faster than Port takes them: counted in messages
//! alone, the change partitions could fill to 1,024 changes each (8 partitions: 8,192 changes,
//! about 8 MB) in a large enough organization. The bytes are freed as the consumer takes a
//! message; what it holds after that, its own bound covers (transform's `IN_FLIGHT_BYTES`,
//! publish's prefetch). A message larger than its queue's bound goes alone, once the queue is
//! empty.
//!
//! Waiting for room in a change partition cannot close a cycle: publish drains every partition
//! on its own, a barrier is sent from a task of its own (the coordinator never waits for room
//! there), and publish's reports to the coordinator go to the progress queue, which keeps the
//! message count alone, as the request queue does.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::lock::MemoryLocks;
use super::{BusError, DeadLetter, Delivery, Outgoing, Settle};
use crate::topology::{DeadLetterQueue, Topology, WorkQueue};

/// Messages a work queue holds before publishers wait.
pub const QUEUE_CAPACITY: usize = 1024;
/// Bytes of raw events (pages of a crawl, webhooks) the raw queue holds before publishers wait.
pub const RAW_QUEUE_BYTES: usize = 4 * 1024 * 1024;
/// Bytes of entity changes all change partitions hold together before publishers wait, shared
/// evenly between the partitions (each at least [`LEAST_CHANGE_QUEUE_BYTES`]).
pub const CHANGE_QUEUES_BYTES: usize = 2 * 1024 * 1024;
/// The least a change partition holds, however many partitions share [`CHANGE_QUEUES_BYTES`].
pub const LEAST_CHANGE_QUEUE_BYTES: usize = 64 * 1024;
/// Dead letters kept for inspection; older ones are dropped (and were logged when they came).
const DEAD_LETTER_CAPACITY: usize = 10_000;

/// A message in a queue, with the room it takes in its queue's byte bound (given back when the
/// consumer takes the message).
struct Queued {
    body: Bytes,
    _room: OwnedSemaphorePermit,
}

struct Queue {
    sender: mpsc::Sender<Queued>,
    receiver: Mutex<Option<mpsc::Receiver<Queued>>>,
    /// Free bytes of the queue's bound, one permit each.
    room: Arc<Semaphore>,
    /// The queue's bound in bytes.
    bytes: usize,
}

impl Queue {
    fn new(bytes: usize) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        Self {
            sender,
            receiver: Mutex::new(Some(receiver)),
            room: Arc::new(Semaphore::new(bytes)),
            bytes,
        }
    }

    /// Waits for room for `body` (its bytes, at most the whole bound) and queues it.
    async fn send(&self, body: Bytes) -> Result<(), BusError> {
        let wanted = body.len().clamp(1, self.bytes);
        let room = Arc::clone(&self.room)
            .acquire_many_owned(u32::try_from(wanted).unwrap_or(u32::MAX))
            .await
            .map_err(|_| BusError::ShuttingDown)?;
        self.sender
            .send(Queued { body, _room: room })
            .await
            .map_err(|_| BusError::ShuttingDown)
    }

    /// Bytes of the messages in the queue now.
    fn queued_bytes(&self) -> usize {
        self.bytes - self.room.available_permits()
    }
}

/// The byte bound of `queue` among `partitions` change partitions: the raw queue's, a change
/// partition's share, or none below the message count for the others.
fn queue_bytes(queue: WorkQueue, partitions: u16) -> usize {
    match queue {
        WorkQueue::Raw => RAW_QUEUE_BYTES,
        WorkQueue::Changes { .. } => {
            (CHANGE_QUEUES_BYTES / usize::from(partitions.max(1))).max(LEAST_CHANGE_QUEUE_BYTES)
        }
        WorkQueue::ResyncRequests | WorkQueue::ResyncProgress => {
            // A whole u32 per message (the most one takes) times the count bound stays far
            // below the semaphore's limit.
            Semaphore::MAX_PERMITS
        }
    }
}

struct Inner {
    topology: Topology,
    shutdown: CancellationToken,
    queues: HashMap<WorkQueue, Queue>,
    dead_letters: Mutex<HashMap<DeadLetterQueue, VecDeque<DeadLetter>>>,
    /// Locks and registers (one process: a lock is free unless this process holds it).
    locks: MemoryLocks,
}

/// The in-process bus. Cheap to clone.
#[derive(Clone)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data half-written (every
    // critical section is a single push or take), so a poisoned lock is still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemoryBus {
    pub fn new(topology: Topology, shutdown: CancellationToken) -> Self {
        let queues = topology
            .work_queues()
            .into_iter()
            .map(|q| (q, Queue::new(queue_bytes(q, topology.partitions))))
            .collect();
        Self {
            inner: Arc::new(Inner {
                topology,
                shutdown,
                queues,
                dead_letters: Mutex::new(HashMap::new()),
                locks: MemoryLocks::default(),
            }),
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    pub(super) fn locks(&self) -> &MemoryLocks {
        &self.inner.locks
    }

    fn queue(&self, queue: WorkQueue) -> Result<&Queue, BusError> {
        self.inner
            .queues
            .get(&queue)
            .ok_or_else(|| BusError::Operation {
                operation: "publish".into(),
                detail: format!("no queue {}", self.inner.topology.work_queue(queue)),
            })
    }

    pub async fn publish_all(&self, messages: Vec<Outgoing>) -> Result<(), BusError> {
        for message in messages {
            let queue = self.queue(message.destination.work_queue())?;
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return Err(BusError::ShuttingDown),
                sent = queue.send(message.body) => sent?,
            }
        }
        Ok(())
    }

    pub fn subscribe(&self, queue: WorkQueue) -> Result<MemorySubscription, BusError> {
        let receiver = lock(&self.queue(queue)?.receiver)
            .take()
            .ok_or_else(|| BusError::AlreadyConsumed(self.inner.topology.work_queue(queue)))?;
        Ok(MemorySubscription {
            bus: self.clone(),
            queue,
            receiver,
        })
    }

    pub fn drain_dead_letters(&self, queue: DeadLetterQueue, max: usize) -> Vec<DeadLetter> {
        let mut all = lock(&self.inner.dead_letters);
        let Some(letters) = all.get_mut(&queue) else {
            return Vec::new();
        };
        let n = max.min(letters.len());
        letters.drain(..n).collect()
    }

    /// Bytes of the message bodies waiting in `queue` (at most its byte bound, or one message
    /// larger than that).
    pub fn queued_bytes(&self, queue: WorkQueue) -> usize {
        self.inner.queues.get(&queue).map_or(0, Queue::queued_bytes)
    }

    pub fn ready_count(&self, queue: WorkQueue) -> u64 {
        self.inner
            .queues
            .get(&queue)
            .map(|q| (QUEUE_CAPACITY - q.sender.capacity()) as u64)
            .unwrap_or(0)
    }

    fn park(&self, queue: WorkQueue, body: Bytes, reason: &str) {
        let origin_queue = self.inner.topology.work_queue(queue);
        let mut all = lock(&self.inner.dead_letters);
        let letters = all.entry(queue.dead_letter_queue()).or_default();
        if letters.len() == DEAD_LETTER_CAPACITY {
            letters.pop_front();
        }
        letters.push_back(DeadLetter {
            body,
            reason: reason.to_string(),
            origin_queue,
        });
    }
}

/// The consumer of one in-process queue.
pub struct MemorySubscription {
    bus: MemoryBus,
    queue: WorkQueue,
    receiver: mpsc::Receiver<Queued>,
}

impl MemorySubscription {
    /// The next message, or `None` once the bus shuts down or as soon as `stop` completes
    /// (nothing is lost: a message not received stays in the channel).
    pub async fn next_until(
        &mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Option<Delivery> {
        let shutdown = self.bus.inner.shutdown.clone();
        let body = tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = stop => return None,
            queued = self.receiver.recv() => queued?.body,
        };
        Some(Delivery {
            body,
            previous_deliveries: 0,
            settle: Settle::Memory(MemorySettle {
                bus: self.bus.clone(),
                queue: self.queue,
            }),
        })
    }
}

impl MemorySubscription {
    /// Gives the queue back to the bus: it can be subscribed to again.
    pub fn close(self) {
        if let Some(queue) = self.bus.inner.queues.get(&self.queue) {
            lock(&queue.receiver).replace(self.receiver);
        }
    }
}

/// Settles an in-process delivery.
pub struct MemorySettle {
    bus: MemoryBus,
    queue: WorkQueue,
}

impl MemorySettle {
    pub(super) fn dead_letter(self, body: Bytes, reason: &str) {
        self.bus.park(self.queue, body, reason);
    }

    pub(super) fn requeue(self, body: Bytes) {
        // The consumer itself may be the only one draining this queue: never wait for room
        // here. A full queue means the message is redelivered when there is room again.
        let (bus, queue) = (self.bus, self.queue);
        tokio::spawn(async move {
            if let Some(queue) = bus.inner.queues.get(&queue) {
                let _ = queue.send(body).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;
    use crate::bus::Destination;

    /// Publishes pages of `page` bytes (each its own allocation, as a crawl's are) to `queue`
    /// until publishing has to wait; returns the bytes the queue took.
    fn fill(bus: &MemoryBus, destination: Destination, page: usize) -> usize {
        let mut taken = 0;
        // The count bound stops it at QUEUE_CAPACITY messages at the latest.
        for _ in 0..=QUEUE_CAPACITY {
            let body = Bytes::from(vec![b'x'; page]);
            let publish = bus.publish_all(vec![Outgoing::new(destination, body)]);
            // Unconstrained: the runtime's cooperative budget would make a ready queue look
            // full after a hundred-odd sends.
            match tokio::task::unconstrained(publish).now_or_never() {
                Some(result) => result.expect("publish"),
                None => break,
            }
            taken += page;
        }
        taken
    }

    /// A crawl faster than transform (consumer stalled): the raw queue stops taking pages at
    /// its byte bound, not at a thousand pages.
    #[tokio::test]
    async fn a_stalled_consumer_holds_the_raw_queue_at_its_byte_bound() {
        let bus = MemoryBus::new(Topology::new("t.", 8), CancellationToken::new());
        let mut subscription = bus.subscribe(WorkQueue::Raw).expect("subscribe");
        let page = 200 * 1024;
        let taken = fill(&bus, Destination::Raw, page);
        assert!(
            taken <= RAW_QUEUE_BYTES && taken + page > RAW_QUEUE_BYTES,
            "the raw queue took {taken} bytes of {page}-byte pages; its bound is {RAW_QUEUE_BYTES}"
        );
        assert_eq!(bus.queued_bytes(WorkQueue::Raw), taken);
        // Taking a page frees its room: the next page goes in.
        let delivery = subscription
            .next_until(std::future::pending())
            .await
            .expect("a page");
        assert_eq!(delivery.body.len(), page);
        assert_eq!(fill(&bus, Destination::Raw, page), page);
    }

    /// A raw event larger than the bound still goes, alone; the resync bookkeeping queues take
    /// large messages up to their count.
    #[tokio::test]
    async fn a_large_raw_event_goes_alone_and_progress_counts_messages_only() {
        let bus = MemoryBus::new(Topology::new("t.", 8), CancellationToken::new());
        let large = RAW_QUEUE_BYTES + 1;
        assert_eq!(fill(&bus, Destination::Raw, large), large);
        assert_eq!(bus.queued_bytes(WorkQueue::Raw), RAW_QUEUE_BYTES);
        let progress = fill(&bus, Destination::ResyncProgress, 64 * 1024);
        assert_eq!(progress, QUEUE_CAPACITY * 64 * 1024);
    }

    /// Publish slower than transform (every partition's consumer stalled): the change
    /// partitions stop taking changes at their share of the byte bound, not at 1,024 changes
    /// each; taking a change frees its room.
    #[tokio::test]
    async fn stalled_partitions_hold_changes_at_their_byte_bound() {
        let partitions = 8;
        let bus = MemoryBus::new(Topology::new("t.", partitions), CancellationToken::new());
        let share = CHANGE_QUEUES_BYTES / usize::from(partitions);
        let change = 1000;
        let mut held = 0;
        for partition in 0..partitions {
            let taken = fill(&bus, Destination::Change { partition }, change);
            assert!(
                taken <= share && taken + change > share,
                "partition {partition} took {taken} bytes of {change}-byte changes; its share is {share}"
            );
            held += bus.queued_bytes(WorkQueue::Changes { partition });
        }
        assert!(held <= CHANGE_QUEUES_BYTES, "{held}");
        let mut subscription = bus
            .subscribe(WorkQueue::Changes { partition: 3 })
            .expect("subscribe");
        subscription
            .next_until(std::future::pending())
            .await
            .expect("a change");
        assert_eq!(
            fill(&bus, Destination::Change { partition: 3 }, change),
            change
        );
    }

    /// However many partitions, each still holds some changes; a change larger than its
    /// partition's share goes alone.
    #[tokio::test]
    async fn many_partitions_keep_the_least_share_and_a_large_change_goes_alone() {
        let bus = MemoryBus::new(Topology::new("t.", 1000), CancellationToken::new());
        assert_eq!(
            fill(&bus, Destination::Change { partition: 999 }, 1024),
            LEAST_CHANGE_QUEUE_BYTES
        );
        let bus = MemoryBus::new(Topology::new("t.", 8), CancellationToken::new());
        let large = CHANGE_QUEUES_BYTES;
        assert_eq!(
            fill(&bus, Destination::Change { partition: 7 }, large),
            large
        );
        assert_eq!(
            bus.queued_bytes(WorkQueue::Changes { partition: 7 }),
            CHANGE_QUEUES_BYTES / 8
        );
    }
}
