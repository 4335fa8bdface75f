//! The bus on RabbitMQ (lapin): confirmed publishing that waits out an outage or fails fast,
//! and the operator operations (counts, dead letters, deleting the topology).
//!
//! The connection is kept by [`Link`] in the background. One confirm-mode channel on it carries
//! the pipeline's publishes, another the live events' ([`Lane`]: a webhook's confirm never
//! waits behind a crawl's pages); each subscription has its own channel ([`super::consumer`]).
//!
//! Two ways to publish, chosen by the caller's [`super::Bus`] handle:
//! - **waiting** (the pipeline: crawler, transform, publish, control messages): a publish that
//!   cannot be confirmed is sent again once the broker is back, as often as it takes. An outage
//!   pauses the caller; nothing piles up, because every caller holds at most its own batch. Only
//!   shutdown or a topology mismatch (a message no queue takes) ends the wait with an error.
//! - **failing fast** (webhooks, whose sender retries): no connection, a broker holding back
//!   publishes, or no confirm within the deadline is an error at once.
//!
//! Confirms have a timeout; a publish whose confirms do not come in time marks the connection
//! broken (the link reconnects) and is sent again: at least once, duplicates are harmless.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ExchangeDeleteOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation};
use tokio_util::sync::CancellationToken;

use super::consumer::RabbitSubscription;
use super::link::{Link, Live};
use super::{
    BusError, DeadLetter, Destination, Lane, ORIGIN_QUEUE_HEADER, Outgoing, REASON_HEADER,
    reconnect_delay,
};
use crate::config::{BrokerEndpoint, BrokerTimeouts};
use crate::topology::{DeadLetterQueue, RECONNECT_BACKOFF_MAX, Topology, WorkQueue};

/// A message ready for `basic.publish`: exchange, routing key, properties, body.
pub(super) type Routed = (String, String, BasicProperties, Bytes);

struct Inner {
    link: Link,
    topology: Topology,
}

/// The RabbitMQ bus. Cheap to clone; the connection closes when the last clone goes (or at
/// [`RabbitBus::close`]).
#[derive(Clone)]
pub struct RabbitBus {
    inner: Arc<Inner>,
}

/// Runs one broker operation within `limit`: its error, or a timeout naming the operation.
pub(super) async fn within<T>(
    limit: Duration,
    operation: &str,
    operation_future: impl Future<Output = Result<T, lapin::Error>>,
) -> Result<T, BusError> {
    match tokio::time::timeout(limit, operation_future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(op_error(operation, e)),
        Err(_) => Err(BusError::TimedOut {
            operation: operation.to_string(),
            after: limit,
        }),
    }
}

pub(super) fn op_error(operation: &str, e: impl std::fmt::Display) -> BusError {
    BusError::Operation {
        operation: operation.to_string(),
        detail: e.to_string(),
    }
}

pub(super) fn persistent() -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
}

pub(super) fn header_text(headers: &FieldTable, key: &str) -> Option<String> {
    match headers.inner().get(key)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

pub(super) fn header_number(headers: &FieldTable, key: &str) -> Option<u64> {
    match headers.inner().get(key)? {
        AMQPValue::LongLongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::ShortInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongUInt(n) => Some(u64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(u64::from(*n)),
        _ => None,
    }
}

/// The reason the broker itself gave when it dead-lettered a message (`x-death`).
pub(super) fn broker_death_reason(headers: &FieldTable) -> Option<String> {
    let AMQPValue::FieldArray(deaths) = headers.inner().get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(first) = deaths.as_slice().first()? else {
        return None;
    };
    let reason = header_text(first, "reason")?;
    let queue = header_text(first, "queue").unwrap_or_default();
    Some(format!(
        "dead-lettered by the broker from {queue}: {reason}"
    ))
}

/// Why one attempt at a publish failed, and what it means for the next one.
enum Failure {
    /// No queue takes the message: retrying cannot help.
    Permanent(BusError),
    /// The broker refused it (nack): the connection is fine; try again after a pause.
    Refused(BusError),
    /// The channel or connection failed, or the confirms did not come in time.
    Broken(BusError),
}

impl RabbitBus {
    /// Starts connecting in the background and returns at once (needs a tokio runtime).
    /// Operations wait for the connection as their kind asks (see the module doc).
    pub fn start(
        endpoint: BrokerEndpoint,
        topology: Topology,
        timeouts: BrokerTimeouts,
        shutdown: CancellationToken,
    ) -> Self {
        RabbitBus {
            inner: Arc::new(Inner {
                link: Link::start(endpoint, topology.clone(), timeouts, shutdown),
                topology,
            }),
        }
    }

    /// Connects now: `Ok` once connected, the first attempt's error otherwise (for operator
    /// tools and tests, which should fail rather than wait).
    pub async fn connect(
        endpoint: BrokerEndpoint,
        topology: Topology,
        timeouts: BrokerTimeouts,
        shutdown: CancellationToken,
    ) -> Result<Self, BusError> {
        let bus = Self::start(endpoint, topology, timeouts, shutdown);
        bus.inner.link.first_attempt().await?;
        Ok(bus)
    }

    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    pub(super) fn link(&self) -> &Link {
        &self.inner.link
    }

    pub(super) fn timeouts(&self) -> &BrokerTimeouts {
        self.inner.link.timeouts()
    }

    pub fn is_connected(&self) -> bool {
        self.inner.link.is_up()
    }

    /// Why the bus cannot take messages now (for readiness), or `None`.
    pub fn problem(&self) -> Option<String> {
        self.inner.link.problem()
    }

    /// A new channel on the current connection, waiting at most the connect timeout for one
    /// (operator tools, metrics). The caller closes it.
    pub(super) async fn open_channel(&self) -> Result<Channel, BusError> {
        let live = self.inner.link.soon().await?;
        let opened = within(
            self.timeouts().operation,
            "channel.open",
            live.connection.create_channel(),
        )
        .await;
        if let Err(e @ BusError::TimedOut { .. }) = &opened {
            self.inner.link.broken(live.generation, e.to_string());
        }
        opened
    }

    fn route(&self, destination: Destination) -> (String, String) {
        let t = &self.inner.topology;
        match destination {
            Destination::Raw => (t.raw_exchange(), String::new()),
            Destination::Change { partition } => (
                t.changes_exchange(),
                t.work_queue(WorkQueue::Changes { partition }),
            ),
            Destination::ResyncRequest => (String::new(), t.work_queue(WorkQueue::ResyncRequests)),
            Destination::ResyncProgress => (String::new(), t.work_queue(WorkQueue::ResyncProgress)),
        }
    }

    pub(super) fn routed(&self, messages: Vec<Outgoing>) -> Vec<Routed> {
        messages
            .into_iter()
            .map(|m| {
                let (exchange, key) = self.route(m.destination);
                (exchange, key, persistent(), m.body)
            })
            .collect()
    }

    /// Publishes and waits for the confirms, sending everything again on a new connection
    /// after a failure, for as long as it takes (see the module doc). Ends early only on
    /// shutdown (`ShuttingDown`) or a message no queue takes (`Unroutable`).
    pub(super) async fn publish_waiting(&self, routed: &[Routed]) -> Result<(), BusError> {
        self.publish_waiting_on(Lane::Pipeline, routed).await
    }

    /// [`RabbitBus::publish_waiting`] on `lane`'s channel.
    pub(super) async fn publish_waiting_on(
        &self,
        lane: Lane,
        routed: &[Routed],
    ) -> Result<(), BusError> {
        let link = &self.inner.link;
        let mut failures = 0u32;
        loop {
            let live = link.up().await?;
            let failure = match self
                .publish_on(&live, lane, routed, self.timeouts().confirm)
                .await
            {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(
                            attempts = failures + 1,
                            "publish confirmed after the broker came back"
                        );
                    }
                    return Ok(());
                }
                Err(Failure::Permanent(e)) => return Err(e),
                Err(Failure::Refused(e)) => e,
                Err(Failure::Broken(e)) => {
                    // A broker holding back publishes (memory or disk alarm) is not broken:
                    // wait for it rather than reconnect into the same alarm.
                    if !live.blocked() {
                        link.broken(live.generation, e.to_string());
                    }
                    e
                }
            };
            failures += 1;
            tracing::warn!(
                endpoint = link.endpoint(),
                error = %failure,
                attempt = failures,
                "publish not confirmed; it is sent again once the broker takes it"
            );
            link.pause(reconnect_delay(failures, RECONNECT_BACKOFF_MAX))
                .await?;
        }
    }

    /// Publishes on the connection there is now, within the fail-fast deadline; any trouble is
    /// an error at once (the caller answers 503 and its peer retries).
    pub(super) async fn publish_fail_fast(&self, routed: &[Routed]) -> Result<(), BusError> {
        self.publish_fail_fast_on(Lane::Pipeline, routed).await
    }

    /// [`RabbitBus::publish_fail_fast`] on `lane`'s channel.
    pub(super) async fn publish_fail_fast_on(
        &self,
        lane: Lane,
        routed: &[Routed],
    ) -> Result<(), BusError> {
        let link = &self.inner.link;
        let live = link.now()?;
        let deadline = self.timeouts().fail_fast;
        match self.publish_on(&live, lane, routed, deadline).await {
            Ok(()) => Ok(()),
            Err(Failure::Permanent(e) | Failure::Refused(e)) => Err(e),
            Err(Failure::Broken(e)) => {
                // A deadline this short says little about the connection: the waiting path
                // and the heartbeats judge it. A failed channel is another matter.
                if !live.healthy() {
                    link.broken(live.generation, e.to_string());
                }
                Err(e)
            }
        }
    }

    /// One attempt: publish every message (mandatory) on `lane`'s channel, then wait for all
    /// confirms, the whole within `limit`.
    async fn publish_on(
        &self,
        live: &Live,
        lane: Lane,
        routed: &[Routed],
        limit: Duration,
    ) -> Result<(), Failure> {
        let channel = match lane {
            Lane::Pipeline => &live.publisher,
            Lane::Live => &live.live_publisher,
        };
        let attempt = async {
            let mut pending = Vec::with_capacity(routed.len());
            for (exchange, key, properties, body) in routed {
                let confirm = channel
                    .basic_publish(
                        exchange.as_str().into(),
                        key.as_str().into(),
                        // Mandatory: a message no queue takes comes back instead of vanishing.
                        BasicPublishOptions {
                            mandatory: true,
                            ..BasicPublishOptions::default()
                        },
                        body,
                        properties.clone(),
                    )
                    .await
                    .map_err(|e| Failure::Broken(not_confirmed(exchange, key, e.to_string())))?;
                pending.push((exchange, key, confirm));
            }
            for (exchange, key, confirm) in pending {
                let confirmation = confirm
                    .await
                    .map_err(|e| Failure::Broken(not_confirmed(exchange, key, e.to_string())))?;
                match confirmation {
                    Confirmation::Ack(None) => {}
                    Confirmation::Ack(Some(returned)) => {
                        return Err(Failure::Permanent(BusError::Unroutable {
                            destination: format!("{exchange}/{key}"),
                            detail: returned.reply_text.to_string(),
                        }));
                    }
                    Confirmation::Nack(_) => {
                        return Err(Failure::Refused(not_confirmed(
                            exchange,
                            key,
                            "the broker refused it (nack)".into(),
                        )));
                    }
                    Confirmation::NotRequested => {
                        return Err(Failure::Broken(not_confirmed(
                            exchange,
                            key,
                            "the channel is not in confirm mode".into(),
                        )));
                    }
                }
            }
            Ok(())
        };
        match tokio::time::timeout(limit, attempt).await {
            Ok(outcome) => outcome,
            Err(_) => {
                let destination = routed
                    .first()
                    .map(|(exchange, key, _, _)| format!("{exchange}/{key}"))
                    .unwrap_or_default();
                Err(Failure::Broken(BusError::NotConfirmed {
                    destination,
                    detail: format!(
                        "no confirm within {} ms (the broker is slow, stuck or holding back publishes)",
                        limit.as_millis()
                    ),
                }))
            }
        }
    }

    /// Parks a message in a DLQ with its reason (confirmed, waiting out an outage).
    pub(super) async fn publish_dead_letter(
        &self,
        dlq: DeadLetterQueue,
        origin_queue: &str,
        body: Bytes,
        reason: &str,
    ) -> Result<(), BusError> {
        let t = &self.inner.topology;
        let mut headers = FieldTable::default();
        headers.insert(REASON_HEADER.into(), AMQPValue::LongString(reason.into()));
        headers.insert(
            ORIGIN_QUEUE_HEADER.into(),
            AMQPValue::LongString(origin_queue.into()),
        );
        let properties = persistent().with_headers(headers);
        let routed = [(
            t.dead_letter_exchange(),
            t.dead_letter_queue(dlq),
            properties,
            body,
        )];
        self.publish_waiting(&routed).await
    }

    /// A consumer of `queue`: waits for the connection and starts consuming; after a lost
    /// connection it resumes on the next one by itself.
    pub async fn subscribe(&self, queue: WorkQueue, prefetch: u16) -> RabbitSubscription {
        RabbitSubscription::open(self.clone(), queue, prefetch).await
    }

    pub async fn drain_dead_letters(
        &self,
        queue: DeadLetterQueue,
        max: usize,
    ) -> Result<Vec<DeadLetter>, BusError> {
        let channel = self.open_channel().await?;
        let limit = self.timeouts().operation;
        let name = self.inner.topology.dead_letter_queue(queue);
        let mut letters = Vec::new();
        while letters.len() < max {
            let get = channel.basic_get(name.as_str().into(), BasicGetOptions::default());
            let Some(message) = within(limit, "basic.get", get).await? else {
                break;
            };
            let headers = message.properties.headers().clone().unwrap_or_default();
            let reason = header_text(&headers, REASON_HEADER)
                .or_else(|| broker_death_reason(&headers))
                .unwrap_or_else(|| "no reason recorded".into());
            let origin_queue = header_text(&headers, ORIGIN_QUEUE_HEADER).unwrap_or_default();
            letters.push(DeadLetter {
                body: Bytes::from(message.delivery.data.clone()),
                reason,
                origin_queue,
            });
            let ack = message.delivery.acker.ack(BasicAckOptions::default());
            within(limit, "basic.ack", ack).await?;
        }
        self.close_channel(channel).await;
        Ok(letters)
    }

    pub async fn ready_count(&self, queue: WorkQueue) -> Result<u64, BusError> {
        let channel = self.open_channel().await?;
        let name = self.inner.topology.work_queue(queue);
        let count = self.message_count(&channel, &name).await;
        self.close_channel(channel).await;
        count
    }

    /// Messages ready in the queue `name` (passive declare).
    pub(super) async fn message_count(
        &self,
        channel: &Channel,
        name: &str,
    ) -> Result<u64, BusError> {
        let declared = within(
            self.timeouts().operation,
            &format!("queue.declare (passive) {name}"),
            channel.queue_declare(
                name.into(),
                QueueDeclareOptions::default().passive(),
                FieldTable::default(),
            ),
        )
        .await?;
        Ok(u64::from(declared.message_count()))
    }

    /// Closes a channel of an operation, waiting at most the operation timeout.
    pub(super) async fn close_channel(&self, channel: Channel) {
        let limit = self.timeouts().operation;
        let _ = tokio::time::timeout(limit, channel.close(200, "done".into())).await;
    }

    /// Deletes every queue and exchange of this topology (tests, and uninstalling). Messages
    /// in them are gone.
    pub async fn delete_topology(&self) -> Result<(), BusError> {
        let channel = self.open_channel().await?;
        let limit = self.timeouts().operation;
        let t = &self.inner.topology;
        let mut queues: Vec<String> = t
            .work_queues()
            .into_iter()
            .map(|q| t.work_queue(q))
            .collect();
        queues.extend(
            [
                DeadLetterQueue::Raw,
                DeadLetterQueue::Changes,
                DeadLetterQueue::ResyncRequests,
            ]
            .into_iter()
            .map(|q| t.dead_letter_queue(q)),
        );
        queues.push(t.raw_archive());
        // Not the leader's lock: an exclusive queue goes with the connection that holds it.
        queues.push(t.leader_record());
        queues.push(t.leader_presence());
        for queue in queues {
            within(
                limit,
                &format!("queue.delete {queue}"),
                channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()),
            )
            .await?;
        }
        for exchange in [
            t.raw_exchange(),
            t.changes_exchange(),
            t.dead_letter_exchange(),
            t.members_exchange(),
        ] {
            within(
                limit,
                &format!("exchange.delete {exchange}"),
                channel.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default()),
            )
            .await?;
        }
        self.close_channel(channel).await;
        Ok(())
    }

    /// Closes the connection and stops reconnecting; deliveries not acked yet go back to
    /// their queues.
    pub async fn close(&self) {
        self.inner.link.close().await;
    }
}

fn not_confirmed(exchange: &str, key: &str, detail: String) -> BusError {
    BusError::NotConfirmed {
        destination: format!("{exchange}/{key}"),
        detail,
    }
}
