//! Operating the dead-letter queues (`adoport dlq`): list without removing, requeue to the
//! work queue a letter came from, purge.
//!
//! Listing takes messages with `basic.get` without acking them and returns them all at the
//! end (`nack`, requeue), so the queue keeps every letter. Requeueing publishes a letter to
//! its origin queue through the default exchange (confirmed) and only then acks it, so a crash
//! in between duplicates a message (harmless) and never loses it. Every operation is bounded by
//! the queue's length when it started.

use bytes::Bytes;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions, QueuePurgeOptions};
use lapin::{Acker, BasicProperties, Channel};

use super::rabbit::{RabbitBus, broker_death_reason, header_text, persistent, within};
use super::{Backend, Bus, BusError, DeadLetter, ORIGIN_QUEUE_HEADER, REASON_HEADER};
use crate::topology::{DeadLetterQueue, Topology, WorkQueue};

/// How long a listing waits for the broker to make the letters it returned ready again.
const RETURN_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// What a requeue did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequeueOutcome {
    /// Letters put back into their work queue.
    pub requeued: u64,
    /// Letters the filter did not select (left in the DLQ).
    pub kept: u64,
    /// Letters whose origin queue is not one of this topology's work queues (left in the DLQ).
    pub unknown_origin: u64,
}

fn letter_from(properties: &BasicProperties, data: &[u8]) -> DeadLetter {
    let headers = properties.headers().clone().unwrap_or_default();
    let reason = header_text(&headers, REASON_HEADER)
        .or_else(|| broker_death_reason(&headers))
        .unwrap_or_else(|| "no reason recorded".into());
    let origin_queue = header_text(&headers, ORIGIN_QUEUE_HEADER)
        .or_else(|| {
            // Dead-lettered by the broker itself (delivery limit): `x-death` names the queue.
            let lapin::types::AMQPValue::FieldArray(deaths) = headers.inner().get("x-death")?
            else {
                return None;
            };
            let lapin::types::AMQPValue::FieldTable(first) = deaths.as_slice().first()? else {
                return None;
            };
            header_text(first, "queue")
        })
        .unwrap_or_default();
    DeadLetter {
        body: Bytes::copy_from_slice(data),
        reason,
        origin_queue,
    }
}

/// The work queue of `topology` named `name`.
pub fn work_queue_named(topology: &Topology, name: &str) -> Option<WorkQueue> {
    topology
        .work_queues()
        .into_iter()
        .find(|q| topology.work_queue(*q) == name)
}

impl RabbitBus {
    async fn dead_letter_count(&self, queue: DeadLetterQueue) -> Result<u64, BusError> {
        let channel = self.open_channel().await?;
        let count = self
            .message_count(&channel, &self.topology().dead_letter_queue(queue))
            .await;
        self.close_channel(channel).await;
        count
    }

    async fn list_dead_letters(
        &self,
        queue: DeadLetterQueue,
        max: usize,
    ) -> Result<Vec<DeadLetter>, BusError> {
        let name = self.topology().dead_letter_queue(queue);
        let channel = self.open_channel().await?;
        let available = self.message_count(&channel, &name).await?;
        let limit = usize::try_from(available).unwrap_or(usize::MAX).min(max);
        let mut letters = Vec::new();
        let mut last_tag = None;
        while letters.len() < limit {
            let get = channel.basic_get(name.as_str().into(), BasicGetOptions::default());
            let Some(message) =
                within(self.timeouts().operation, &format!("basic.get {name}"), get).await?
            else {
                break;
            };
            letters.push(letter_from(
                &message.delivery.properties,
                &message.delivery.data,
            ));
            last_tag = Some(message.delivery.acker);
        }
        if let Some(acker) = last_tag {
            // Give every letter back, in one go.
            self.give_back(&acker, &name, true).await?;
            self.await_returned(&channel, &name, available).await?;
        }
        self.close_channel(channel).await;
        Ok(letters)
    }

    async fn requeue_dead_letters(
        &self,
        queue: DeadLetterQueue,
        select: &(dyn Fn(usize, &DeadLetter) -> bool + Sync),
    ) -> Result<RequeueOutcome, BusError> {
        let topology = self.topology().clone();
        let name = topology.dead_letter_queue(queue);
        let channel = self.open_channel().await?;
        let available = self.message_count(&channel, &name).await?;
        let mut outcome = RequeueOutcome::default();
        let mut kept = Vec::new();
        for index in 0..available {
            let get = channel.basic_get(name.as_str().into(), BasicGetOptions::default());
            let Some(message) =
                within(self.timeouts().operation, &format!("basic.get {name}"), get).await?
            else {
                break;
            };
            let letter = letter_from(&message.delivery.properties, &message.delivery.data);
            let acker = message.delivery.acker.clone();
            let selected = select(usize::try_from(index).unwrap_or(usize::MAX), &letter);
            let origin = work_queue_named(&topology, &letter.origin_queue);
            match (selected, origin) {
                (true, Some(origin)) => {
                    let routed = [(
                        String::new(),
                        topology.work_queue(origin),
                        persistent(),
                        letter.body,
                    )];
                    self.publish_waiting(&routed).await?;
                    within(
                        self.timeouts().operation,
                        &format!("basic.ack {name}"),
                        acker.ack(BasicAckOptions::default()),
                    )
                    .await?;
                    outcome.requeued += 1;
                }
                (true, None) => {
                    outcome.unknown_origin += 1;
                    kept.push(acker);
                }
                (false, _) => {
                    outcome.kept += 1;
                    kept.push(acker);
                }
            }
        }
        for acker in kept {
            self.give_back(&acker, &name, false).await?;
        }
        let left = outcome.kept + outcome.unknown_origin;
        if left > 0 {
            self.await_returned(&channel, &name, left).await?;
        }
        self.close_channel(channel).await;
        Ok(outcome)
    }

    /// Returns a letter taken with `basic.get` to the DLQ (with `multiple`, every letter up to
    /// it).
    async fn give_back(&self, acker: &Acker, name: &str, multiple: bool) -> Result<(), BusError> {
        within(
            self.timeouts().operation,
            &format!("basic.nack {name}"),
            acker.nack(BasicNackOptions {
                multiple,
                requeue: true,
            }),
        )
        .await?;
        Ok(())
    }

    /// A quorum queue takes returned messages back asynchronously: waits (bounded) until
    /// `count` letters are ready again, so that the next reader sees them.
    async fn await_returned(
        &self,
        channel: &Channel,
        name: &str,
        count: u64,
    ) -> Result<(), BusError> {
        let deadline = tokio::time::Instant::now() + RETURN_WAIT;
        while self.message_count(channel, name).await? < count
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Ok(())
    }

    async fn purge_dead_letters(&self, queue: DeadLetterQueue) -> Result<u64, BusError> {
        let name = self.topology().dead_letter_queue(queue);
        let channel = self.open_channel().await?;
        let purged = within(
            self.timeouts().operation,
            &format!("queue.purge {name}"),
            channel.queue_purge(name.as_str().into(), QueuePurgeOptions::default()),
        )
        .await;
        self.close_channel(channel).await;
        Ok(u64::from(purged?))
    }
}

fn needs_broker(operation: &str) -> BusError {
    BusError::Operation {
        operation: operation.into(),
        detail: "the in-process bus keeps its dead letters in the process only; set ADOPORT__BROKER__URL".into(),
    }
}

impl Bus {
    /// Number of letters in a DLQ.
    pub async fn dead_letter_count(&self, queue: DeadLetterQueue) -> Result<u64, BusError> {
        match &self.backend {
            Backend::Rabbit(b) => b.dead_letter_count(queue).await,
            Backend::Memory(_) => Err(needs_broker("count dead letters")),
        }
    }

    /// Up to `max` letters of a DLQ, oldest first, with their reasons. They stay in the queue.
    pub async fn list_dead_letters(
        &self,
        queue: DeadLetterQueue,
        max: usize,
    ) -> Result<Vec<DeadLetter>, BusError> {
        match &self.backend {
            Backend::Rabbit(b) => b.list_dead_letters(queue, max).await,
            Backend::Memory(_) => Err(needs_broker("list dead letters")),
        }
    }

    /// Puts the letters `select` picks (by position, oldest first, and content) back into the
    /// work queue each came from; the others stay.
    pub async fn requeue_dead_letters(
        &self,
        queue: DeadLetterQueue,
        select: &(dyn Fn(usize, &DeadLetter) -> bool + Sync),
    ) -> Result<RequeueOutcome, BusError> {
        match &self.backend {
            Backend::Rabbit(b) => b.requeue_dead_letters(queue, select).await,
            Backend::Memory(_) => Err(needs_broker("requeue dead letters")),
        }
    }

    /// Removes every letter of a DLQ; returns how many there were.
    pub async fn purge_dead_letters(&self, queue: DeadLetterQueue) -> Result<u64, BusError> {
        match &self.backend {
            Backend::Rabbit(b) => b.purge_dead_letters(queue).await,
            Backend::Memory(_) => Err(needs_broker("purge dead letters")),
        }
    }
}
