//! Consuming a work queue on RabbitMQ, across broker outages, and settling what was delivered.
//!
//! A [`RabbitSubscription`] has its own channel (prefetch is per consumer). When the channel or
//! the connection dies, [`RabbitSubscription::next_until`] waits for the link to be up again and
//! consumes on a new channel; the broker redelivers whatever was delivered on the old one and
//! not acked. Settling a delivery whose channel is gone cannot reach the broker: it is reported
//! as [`BusError::DeliveryLost`] (the message comes again), never as a failure of the consumer.

use bytes::Bytes;
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Acker, Channel, Consumer};

use std::sync::Arc;

use super::link::Live;
use super::rabbit::{RabbitBus, header_number, op_error, within};
use super::{BusError, Delivery, Settle, reconnect_delay};
use crate::topology::{DeadLetterQueue, RECONNECT_BACKOFF_MAX, WorkQueue};

/// The channel and consumer of one subscription on one connection.
struct Current {
    channel: Channel,
    consumer: Consumer,
    generation: u64,
}

/// A supervised consumer of one work queue.
pub struct RabbitSubscription {
    bus: RabbitBus,
    queue: WorkQueue,
    name: String,
    prefetch: u16,
    current: Option<Current>,
}

impl RabbitSubscription {
    /// Waits for the connection and starts consuming. On shutdown, or when the first try
    /// fails, the subscription is returned anyway: [`RabbitSubscription::next_until`] tries
    /// again (and ends on shutdown).
    pub(super) async fn open(bus: RabbitBus, queue: WorkQueue, prefetch: u16) -> Self {
        let name = bus.topology().work_queue(queue);
        let mut subscription = Self {
            bus,
            queue,
            name,
            prefetch: prefetch.max(1),
            current: None,
        };
        match subscription.consume_when_up().await {
            Ok(current) => subscription.current = Some(current),
            Err(BusError::ShuttingDown) => {}
            Err(e) => {
                tracing::warn!(queue = %subscription.name, error = %e, "cannot consume yet; trying again")
            }
        }
        subscription
    }

    /// A subscription that starts consuming on its first
    /// [`RabbitSubscription::next_until`] (waiting for the link there, not here).
    pub(super) fn lazy(bus: RabbitBus, queue: WorkQueue, prefetch: u16) -> Self {
        let name = bus.topology().work_queue(queue);
        Self {
            bus,
            queue,
            name,
            prefetch: prefetch.max(1),
            current: None,
        }
    }

    /// A channel with this subscription's prefetch, consuming its queue, on `live`. Not to be
    /// abandoned half-way (a channel left consuming would hold deliveries nobody reads): every
    /// step is bounded by the operation timeout instead.
    async fn consume(&self, live: Arc<Live>) -> Result<Current, BusError> {
        let link = self.bus.link();
        let limit = self.bus.timeouts().operation;
        let opened = async {
            let channel = within(limit, "channel.open", live.connection.create_channel()).await?;
            let consumer = start_consuming(
                &channel,
                limit,
                &self.name,
                StartConsuming {
                    prefetch: Some(self.prefetch),
                    ..StartConsuming::default()
                },
            )
            .await;
            keep_or_close(channel, limit, consumer)
        };
        match opened.await {
            Ok((channel, consumer)) => Ok(Current {
                channel,
                consumer,
                generation: live.generation,
            }),
            Err(e) => {
                if matches!(e, BusError::TimedOut { .. }) {
                    link.broken(live.generation, e.to_string());
                }
                Err(e)
            }
        }
    }

    /// Waits for the link, then consumes (see [`RabbitSubscription::consume`]).
    async fn consume_when_up(&self) -> Result<Current, BusError> {
        let live = self.bus.link().up().await?;
        self.consume(live).await
    }

    /// The next delivery, or `None` once the process shuts down or as soon as `stop`
    /// completes. Waits out broker outages. Safe to give up on: it stops only while waiting (for the broker, or for a delivery, which then stays
    /// with the consumer and goes back to the queue when the subscription closes), never
    /// half-way through opening a consumer.
    pub async fn next_until(
        &mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Option<Delivery> {
        let mut stop = std::pin::pin!(stop);
        let mut failures = 0u32;
        loop {
            let current = match &mut self.current {
                Some(current) => current,
                None => {
                    let live = tokio::select! {
                        _ = &mut stop => return None,
                        live = self.bus.link().up() => live,
                    };
                    let opened = match live {
                        Ok(live) => self.consume(live).await,
                        Err(e) => Err(e),
                    };
                    match opened {
                        Ok(current) => {
                            if failures > 0 {
                                tracing::info!(queue = %self.name, "consuming again");
                            }
                            failures = 0;
                            self.current.insert(current)
                        }
                        Err(BusError::ShuttingDown) => return None,
                        Err(e) => {
                            failures += 1;
                            tracing::warn!(queue = %self.name, error = %e, attempt = failures, "cannot consume; trying again");
                            let delay = reconnect_delay(failures, RECONNECT_BACKOFF_MAX);
                            tokio::select! {
                                _ = &mut stop => return None,
                                paused = self.bus.link().pause(delay) => if paused.is_err() {
                                    return None;
                                },
                            }
                            continue;
                        }
                    }
                }
            };
            let item = tokio::select! {
                _ = &mut stop => return None,
                _ = self.bus.link().stopping() => return None,
                item = current.consumer.next() => item,
            };
            let why = match item {
                Some(Ok(delivery)) => {
                    let headers = delivery.properties.headers().clone().unwrap_or_default();
                    let previous = header_number(&headers, "x-delivery-count")
                        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
                        .unwrap_or(u32::from(delivery.redelivered));
                    return Some(Delivery {
                        body: Bytes::from(delivery.data),
                        previous_deliveries: previous,
                        settle: Settle::Rabbit(RabbitSettle {
                            acker: delivery.acker,
                            bus: self.bus.clone(),
                            origin_queue: self.name.clone(),
                            dlq: self.queue.dead_letter_queue(),
                        }),
                    });
                }
                Some(Err(e)) => e.to_string(),
                None => "the broker cancelled the consumer".to_string(),
            };
            let Some(ended) = self.current.take() else {
                continue;
            };
            close_in_background(ended.channel, self.bus.timeouts().operation);
            failures += 1;
            if self.bus.link().is_up() {
                // The connection is fine but this consumer ended (its queue deleted, a
                // channel error): consume again after a pause, not in a tight loop.
                tracing::warn!(queue = %self.name, reason = %why, "consumer ended; consuming again");
                let delay = reconnect_delay(failures, RECONNECT_BACKOFF_MAX);
                tokio::select! {
                    _ = &mut stop => return None,
                    paused = self.bus.link().pause(delay) => if paused.is_err() {
                        return None;
                    },
                }
            } else {
                // The connection went: the link logs that once and reconnects; the next
                // round waits for it.
                tracing::debug!(queue = %self.name, reason = %why, generation = ended.generation, "consumer lost with its connection");
            }
        }
    }

    /// Stops consuming and closes the channel, waiting (within the operation timeout) until
    /// the broker confirmed it. Whatever was delivered and not settled goes back to the
    /// queue, in the order it was delivered; under single active consumer the next consumer
    /// becomes active only now. Settle what must stay settled first.
    pub async fn close(mut self) {
        if let Some(current) = self.current.take() {
            let limit = self.bus.timeouts().operation;
            let closed = tokio::time::timeout(
                limit,
                current
                    .channel
                    .close(200, "consumer released its queue".into()),
            )
            .await;
            if !matches!(closed, Ok(Ok(()))) {
                tracing::debug!(queue = %self.name, "closing the consumer's channel did not finish; the broker closes it with the connection");
            }
        }
    }
}

impl Drop for RabbitSubscription {
    fn drop(&mut self) {
        // Close the channel now, so that the broker hands this consumer's prefetched,
        // unacked deliveries to another consumer at once instead of when the connection ends.
        if let Some(current) = self.current.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            close_in_background(current.channel, self.bus.timeouts().operation);
        }
    }
}

/// Closes a channel without waiting for it (bounded by `limit`).
pub(super) fn close_in_background(channel: Channel, limit: std::time::Duration) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(limit, channel.close(200, "consumer stopped".into())).await;
    });
}

/// The channel with what was set up on it; or, when setting up failed, the error, the channel
/// closed in the background (a half-set-up channel must not linger).
pub(super) fn keep_or_close<T>(
    channel: Channel,
    limit: std::time::Duration,
    setup: Result<T, BusError>,
) -> Result<(Channel, T), BusError> {
    match setup {
        Ok(value) => Ok((channel, value)),
        Err(e) => {
            close_in_background(channel, limit);
            Err(e)
        }
    }
}

/// How [`start_consuming`] consumes a queue.
#[derive(Debug, Default)]
pub(super) struct StartConsuming<'a> {
    /// Deliveries unacknowledged at once (`basic.qos`); `None` leaves the channel's.
    pub prefetch: Option<u16>,
    /// The consumer tag; empty: the broker names the consumer.
    pub tag: &'a str,
    /// Deliveries count as acknowledged when sent.
    pub no_ack: bool,
}

/// Sets the prefetch (when asked) and starts consuming `queue` on `channel`, each step bounded
/// by `limit`.
pub(super) async fn start_consuming(
    channel: &Channel,
    limit: std::time::Duration,
    queue: &str,
    how: StartConsuming<'_>,
) -> Result<Consumer, BusError> {
    if let Some(prefetch) = how.prefetch {
        within(
            limit,
            "basic.qos",
            channel.basic_qos(prefetch, BasicQosOptions::default()),
        )
        .await?;
    }
    within(
        limit,
        &format!("basic.consume {queue}"),
        channel.basic_consume(
            queue.into(),
            ShortString::from(how.tag),
            BasicConsumeOptions {
                no_ack: how.no_ack,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await
}

/// Settles a RabbitMQ delivery.
pub struct RabbitSettle {
    acker: Acker,
    bus: RabbitBus,
    origin_queue: String,
    dlq: DeadLetterQueue,
}

impl RabbitSettle {
    /// lapin poisons every acker of a channel that closed.
    pub(super) fn is_held(&self) -> bool {
        self.acker.usable()
    }

    pub(super) async fn ack(self) -> Result<(), BusError> {
        let settled = self.acker.ack(BasicAckOptions::default());
        self.settled("basic.ack", settled).await
    }

    pub(super) async fn requeue(self) -> Result<(), BusError> {
        let settled = self.acker.nack(BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        });
        self.settled("basic.nack", settled).await
    }

    pub(super) async fn dead_letter(self, body: Bytes, reason: &str) -> Result<(), BusError> {
        self.bus
            .publish_dead_letter(self.dlq, &self.origin_queue, body, reason)
            .await?;
        self.ack().await
    }

    /// What became of an ack or nack: `DeliveryLost` when its channel or connection is gone
    /// or going (lapin answers `false`, or refuses to send on it): the broker delivers the
    /// message again once that channel is closed.
    async fn settled(
        &self,
        operation: &str,
        settled: impl std::future::Future<Output = lapin::Result<bool>>,
    ) -> Result<(), BusError> {
        let lost = || BusError::DeliveryLost {
            queue: self.origin_queue.clone(),
        };
        let limit = self.bus.timeouts().operation;
        match tokio::time::timeout(limit, settled).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(lost()),
            Ok(Err(e)) if self.acker.poisoned() || channel_gone(&e) => Err(lost()),
            Ok(Err(e)) => Err(op_error(operation, e)),
            Err(_) => Err(BusError::TimedOut {
                operation: operation.to_string(),
                after: limit,
            }),
        }
    }
}

/// Whether `e` says the channel or its connection cannot carry anything any more.
fn channel_gone(e: &lapin::Error) -> bool {
    use lapin::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::InvalidChannel(_)
            | ErrorKind::InvalidChannelState(..)
            | ErrorKind::InvalidConnectionState(_)
            | ErrorKind::IOError(_)
            | ErrorKind::MissingHeartbeatError
            | ErrorKind::ProtocolError(_)
    )
}
