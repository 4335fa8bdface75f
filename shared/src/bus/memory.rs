//! The in-process bus for `adoport all` without a broker: bounded channels, same contracts.
//!
//! Every work queue is a bounded channel with one consumer. Publishing waits for room (the
//! same back-pressure prefetch gives on RabbitMQ). Nothing survives the process: this mode is
//! for small organizations and CI jobs, where a failed run is simply run again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::lock::MemoryLocks;
use super::{BusError, DeadLetter, Delivery, Outgoing, Settle};
use crate::topology::{DeadLetterQueue, Topology, WorkQueue};

/// Messages a work queue holds before publishers wait.
const QUEUE_CAPACITY: usize = 1024;
/// Dead letters kept for inspection; older ones are dropped (and were logged when they came).
const DEAD_LETTER_CAPACITY: usize = 10_000;

struct Queue {
    sender: mpsc::Sender<Bytes>,
    receiver: Mutex<Option<mpsc::Receiver<Bytes>>>,
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
            .map(|q| {
                let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
                (
                    q,
                    Queue {
                        sender,
                        receiver: Mutex::new(Some(receiver)),
                    },
                )
            })
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
                sent = queue.sender.send(message.body) => sent.map_err(|_| BusError::ShuttingDown)?,
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
    receiver: mpsc::Receiver<Bytes>,
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
            body = self.receiver.recv() => body?,
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
        let sender = self
            .bus
            .inner
            .queues
            .get(&self.queue)
            .map(|q| q.sender.clone());
        if let Some(sender) = sender {
            tokio::spawn(async move {
                let _ = sender.send(body).await;
            });
        }
    }
}
