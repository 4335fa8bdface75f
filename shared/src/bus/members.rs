//! The publish replicas' heartbeats on RabbitMQ, carried and nothing more: each replica
//! publishes its beats to the members fanout exchange and hears everyone's (its own included)
//! through a queue of its own — server-named, exclusive and auto-delete, made again on every
//! connection, so it never outlives its replica. What the beats mean (who is there, which
//! partitions are whose) is publish's business (`publish::membership`).
//!
//! Beats are small, transient and replaced by the next one: they are published without
//! persistence and fail fast, and a listener's queue drops beats older than the member
//! timeout and keeps at most [`MAX_QUEUED_BEATS`] (a listener that fell behind reads recent
//! beats, not history).

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use lapin::options::{QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Consumer};
use tokio::sync::mpsc;

use super::consumer::{StartConsuming, close_in_background, keep_or_close, start_consuming};
use super::rabbit::{RabbitBus, within};
use super::{BusError, reconnect_delay};
use crate::topology::RECONNECT_BACKOFF_MAX;

/// Beats a listener's queue holds at most (the oldest go first).
pub const MAX_QUEUED_BEATS: i64 = 1000;
/// Beats heard and not yet read by the caller; more are dropped (the next ones say the same).
const HEARD_CAPACITY: usize = 256;

impl RabbitBus {
    /// Publishes one beat on the connection there is now; an error at once when there is
    /// none (the next beat tries again).
    pub(super) async fn announce_member(&self, body: Bytes) -> Result<(), BusError> {
        let properties = BasicProperties::default().with_content_type("application/json".into());
        let routed = [(
            self.topology().members_exchange(),
            String::new(),
            properties,
            body,
        )];
        self.publish_fail_fast(&routed).await
    }

    /// Starts hearing every replica's beats (see the module doc); the listener runs until the
    /// receiver is dropped or the process shuts down, across reconnects. Beats older than
    /// `max_age` are dropped by the broker.
    pub(super) fn hear_members(&self, max_age: Duration) -> mpsc::Receiver<Bytes> {
        let (sender, receiver) = mpsc::channel(HEARD_CAPACITY);
        tokio::spawn(listen(self.clone(), max_age, sender));
        receiver
    }
}

async fn listen(bus: RabbitBus, max_age: Duration, heard: mpsc::Sender<Bytes>) {
    let exchange = bus.topology().members_exchange();
    let limit = bus.timeouts().operation;
    let mut failures = 0u32;
    loop {
        let live = tokio::select! {
            _ = heard.closed() => return,
            live = bus.link().up() => live,
        };
        let Ok(live) = live else {
            return; // shutting down
        };
        match open(&live.connection, &exchange, max_age, limit).await {
            Ok((channel, mut consumer)) => {
                if failures > 0 {
                    tracing::info!(exchange = %exchange, "hearing the publish replicas again");
                }
                failures = 0;
                loop {
                    let item = tokio::select! {
                        _ = heard.closed() => {
                            close_in_background(channel, limit);
                            return;
                        }
                        _ = bus.link().stopping() => return,
                        item = consumer.next() => item,
                    };
                    match item {
                        // Full: the caller is behind, and the next beats say the same.
                        Some(Ok(delivery)) => {
                            let _ = heard.try_send(Bytes::from(delivery.data));
                        }
                        Some(Err(e)) => {
                            tracing::debug!(exchange = %exchange, error = %e, "lost the members queue; listening again");
                            break;
                        }
                        None => break,
                    }
                }
                close_in_background(channel, limit);
                failures += 1;
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(exchange = %exchange, error = %e, attempt = failures, "cannot hear the other publish replicas yet; trying again");
                if matches!(e, BusError::TimedOut { .. }) {
                    bus.link().broken(live.generation, e.to_string());
                }
            }
        }
        let delay = reconnect_delay(failures, RECONNECT_BACKOFF_MAX);
        tokio::select! {
            _ = heard.closed() => return,
            paused = bus.link().pause(delay) => if paused.is_err() {
                return;
            },
        }
    }
}

/// A channel consuming (without acks) a new queue of this connection bound to `exchange`.
async fn open(
    connection: &lapin::Connection,
    exchange: &str,
    max_age: Duration,
    limit: Duration,
) -> Result<(Channel, Consumer), BusError> {
    let channel = within(limit, "channel.open", connection.create_channel()).await?;
    let setup = async {
        let mut arguments = FieldTable::default();
        // Old beats say nothing about now; a slow listener reads recent ones.
        arguments.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX)),
        );
        arguments.insert(
            "x-max-length".into(),
            AMQPValue::LongLongInt(MAX_QUEUED_BEATS),
        );
        let queue = within(
            limit,
            "queue.declare (members)",
            channel.queue_declare(
                ShortString::from(""),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                arguments,
            ),
        )
        .await?;
        let name = queue.name().clone();
        within(
            limit,
            &format!("queue.bind {name}"),
            channel.queue_bind(
                name.clone(),
                exchange.into(),
                ShortString::from(""),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
        start_consuming(
            &channel,
            limit,
            name.as_str(),
            StartConsuming {
                no_ack: true,
                ..StartConsuming::default()
            },
        )
        .await
    };
    let consumer = setup.await;
    keep_or_close(channel, limit, consumer)
}
