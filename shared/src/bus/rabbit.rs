//! The bus on RabbitMQ (lapin): topology declaration, confirmed publishing, supervised consumers.
//!
//! One connection per process carries one confirm-mode channel for publishing (shared by every
//! publisher; lapin channels are safe to share) and one channel per subscription (prefetch is
//! per consumer). When the connection drops, the next publish or `next()` reconnects with
//! backoff, declares the topology again and resumes. Messages that were delivered but not acked
//! on the old connection are redelivered by the broker: at least once, never lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer,
    ExchangeKind,
};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::{
    BusError, DeadLetter, Delivery, Destination, ORIGIN_QUEUE_HEADER, Outgoing, REASON_HEADER,
    Settle, reconnect_delay,
};
use crate::config::Secret;
use crate::topology::{DeadLetterQueue, RECONNECT_BACKOFF_MAX, Topology, WorkQueue};

/// Attempts at one `publish_all` before the caller gets an error (≈15 s of broker outage).
const PUBLISH_ATTEMPTS: u32 = 8;

struct Live {
    connection: Connection,
    publisher: Channel,
    generation: u64,
}

impl Live {
    fn healthy(&self) -> bool {
        self.connection.status().connected() && self.publisher.status().connected()
    }
}

struct Inner {
    url: Secret,
    /// The URL without credentials, for messages.
    endpoint: String,
    topology: Topology,
    shutdown: CancellationToken,
    live: Mutex<Option<Arc<Live>>>,
    generation: AtomicU64,
    connected: AtomicBool,
}

/// The RabbitMQ bus. Cheap to clone.
#[derive(Clone)]
pub struct RabbitBus {
    inner: Arc<Inner>,
}

/// Removes `user:password@` from an AMQP URL.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

pub(super) fn op_error(operation: &str, e: impl std::fmt::Display) -> BusError {
    BusError::Operation {
        operation: operation.to_string(),
        detail: e.to_string(),
    }
}

fn quorum_arguments(
    topology: &Topology,
    dead_letters: Option<&str>,
    single_active: bool,
) -> FieldTable {
    let mut args = FieldTable::default();
    // Quorum queues replicate and fsync before confirming: a confirmed publish survives a
    // broker restart.
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    if let Some(dlq) = dead_letters {
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(topology.dead_letter_exchange().into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(dlq.into()),
        );
        // A message that keeps crashing its consumer stops after this many deliveries
        // (unlimited unless set) and lands in the DLQ with reason `delivery_limit`.
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(i64::from(topology.delivery_limit)),
        );
        // At-least-once dead lettering: without it (and reject-publish) the broker may drop a
        // dead letter silently.
        args.insert(
            "x-dead-letter-strategy".into(),
            AMQPValue::LongString("at-least-once".into()),
        );
        args.insert(
            "x-overflow".into(),
            AMQPValue::LongString("reject-publish".into()),
        );
    }
    if single_active {
        // One consumer at a time: the order of a partition (or the single running resync)
        // holds however many replicas subscribe; the others take over when it goes away.
        args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    }
    args
}

async fn declare_topology(channel: &Channel, t: &Topology) -> Result<(), lapin::Error> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            t.dead_letter_exchange().into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            t.raw_exchange().into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            t.changes_exchange().into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;

    for dlq in [
        DeadLetterQueue::Raw,
        DeadLetterQueue::Changes,
        DeadLetterQueue::ResyncRequests,
    ] {
        let name = t.dead_letter_queue(dlq);
        channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions::durable(),
                quorum_arguments(t, None, false),
            )
            .await?;
        channel
            .queue_bind(
                name.as_str().into(),
                t.dead_letter_exchange().into(),
                name.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }

    for queue in t.work_queues() {
        let name = t.work_queue(queue);
        let dlq = t.dead_letter_queue(queue.dead_letter_queue());
        let single_active = !matches!(queue, WorkQueue::Raw);
        channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions::durable(),
                quorum_arguments(t, Some(&dlq), single_active),
            )
            .await?;
        let (exchange, key) = match queue {
            WorkQueue::Raw => (t.raw_exchange(), String::new()),
            WorkQueue::Changes { .. } => (t.changes_exchange(), name.clone()),
            // Published through the default exchange by queue name.
            WorkQueue::ResyncRequests | WorkQueue::ResyncProgress => continue,
        };
        channel
            .queue_bind(
                name.as_str().into(),
                exchange.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }

    // The archive: every raw event, kept by age and size, for `adoport replay`.
    let mut stream_args = FieldTable::default();
    stream_args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("stream".into()),
    );
    stream_args.insert(
        "x-max-age".into(),
        AMQPValue::LongString(t.archive.max_age.as_str().into()),
    );
    stream_args.insert(
        "x-max-length-bytes".into(),
        AMQPValue::LongLongInt(i64::try_from(t.archive.max_bytes).unwrap_or(i64::MAX)),
    );
    channel
        .queue_declare(
            t.raw_archive().into(),
            QueueDeclareOptions::durable(),
            stream_args,
        )
        .await?;
    channel
        .queue_bind(
            t.raw_archive().into(),
            t.raw_exchange().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
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

impl RabbitBus {
    /// Connects (retrying for a while: the broker may still be starting) and declares the topology.
    pub async fn connect(
        url: Secret,
        topology: Topology,
        shutdown: CancellationToken,
    ) -> Result<Self, BusError> {
        let bus = RabbitBus {
            inner: Arc::new(Inner {
                endpoint: redact(url.expose()),
                url,
                topology,
                shutdown,
                live: Mutex::new(None),
                generation: AtomicU64::new(0),
                connected: AtomicBool::new(false),
            }),
        };
        let mut attempt = 0;
        loop {
            match bus.live().await {
                Ok(_) => return Ok(bus),
                Err(e) if attempt >= 6 => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "broker not reachable yet; retrying");
                    bus.pause(attempt).await?;
                    attempt += 1;
                }
            }
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Relaxed)
    }

    /// Sleeps before the next reconnect attempt, or stops on shutdown.
    async fn pause(&self, attempt: u32) -> Result<(), BusError> {
        tokio::select! {
            _ = self.inner.shutdown.cancelled() => Err(BusError::ShuttingDown),
            _ = tokio::time::sleep(reconnect_delay(attempt, RECONNECT_BACKOFF_MAX)) => Ok(()),
        }
    }

    /// The current connection, or a new one (declared and in confirm mode).
    async fn live(&self) -> Result<Arc<Live>, BusError> {
        let mut slot = self.inner.live.lock().await;
        if let Some(live) = slot.as_ref()
            && live.healthy()
        {
            return Ok(live.clone());
        }
        self.inner.connected.store(false, Ordering::Relaxed);
        if let Some(old) = slot.take() {
            let _ = old.connection.close(200, "reconnecting".into()).await;
        }
        let unreachable = |e: lapin::Error| BusError::Unreachable {
            endpoint: self.inner.endpoint.clone(),
            detail: e.to_string(),
        };
        let properties = ConnectionProperties::default()
            // Named after the topology prefix, so an operator (or a test) can find it.
            .with_connection_name(LongString::from(format!(
                "adoport-{}{}",
                self.inner.topology.prefix(),
                std::process::id()
            )));
        let connection = Connection::connect(self.inner.url.expose(), properties)
            .await
            .map_err(unreachable)?;
        let publisher = connection.create_channel().await.map_err(unreachable)?;
        declare_topology(&publisher, &self.inner.topology)
            .await
            .map_err(|e| op_error("declare topology", e))?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| op_error("confirm.select", e))?;
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let live = Arc::new(Live {
            connection,
            publisher,
            generation,
        });
        *slot = Some(live.clone());
        self.inner.connected.store(true, Ordering::Relaxed);
        if generation > 1 {
            tracing::info!(endpoint = %self.inner.endpoint, generation, "reconnected to the broker");
        }
        Ok(live)
    }

    /// A new channel on the current connection (the operator tools: archive, dead letters).
    /// The caller closes it.
    pub(super) async fn open_channel(&self) -> Result<Channel, BusError> {
        let live = self.live().await?;
        live.connection
            .create_channel()
            .await
            .map_err(|e| op_error("channel.open", e))
    }

    /// Forgets a connection that failed, so that the next call reconnects.
    async fn invalidate(&self, generation: u64) {
        let mut slot = self.inner.live.lock().await;
        if slot.as_ref().is_some_and(|l| l.generation == generation) {
            if let Some(old) = slot.take() {
                let _ = old.connection.close(200, "reconnecting".into()).await;
            }
            self.inner.connected.store(false, Ordering::Relaxed);
        }
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

    pub async fn publish_all(&self, messages: Vec<Outgoing>) -> Result<(), BusError> {
        let routed: Vec<(String, String, BasicProperties, Bytes)> = messages
            .into_iter()
            .map(|m| {
                let (exchange, key) = self.route(m.destination);
                (exchange, key, persistent(), m.body)
            })
            .collect();
        self.publish_routed(&routed).await
    }

    /// Publishes with retries across reconnects; all-or-error.
    pub(super) async fn publish_routed(
        &self,
        routed: &[(String, String, BasicProperties, Bytes)],
    ) -> Result<(), BusError> {
        let mut attempt = 0;
        loop {
            if self.inner.shutdown.is_cancelled() {
                return Err(BusError::ShuttingDown);
            }
            let error = match self.live().await {
                Ok(live) => match Self::publish_on(&live, routed).await {
                    Ok(()) => return Ok(()),
                    // A topology mismatch does not heal by retrying.
                    Err(e @ BusError::Unroutable { .. }) => return Err(e),
                    Err(e) => {
                        self.invalidate(live.generation).await;
                        e
                    }
                },
                Err(e) => e,
            };
            attempt += 1;
            if attempt >= PUBLISH_ATTEMPTS {
                return Err(error);
            }
            tracing::warn!(error = %error, attempt, "publish failed; reconnecting and publishing again");
            self.pause(attempt).await?;
        }
    }

    async fn publish_on(
        live: &Live,
        routed: &[(String, String, BasicProperties, Bytes)],
    ) -> Result<(), BusError> {
        let mut pending = Vec::with_capacity(routed.len());
        for (exchange, key, properties, body) in routed {
            let confirm = live
                .publisher
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
                .map_err(|e| BusError::NotConfirmed {
                    destination: format!("{exchange}/{key}"),
                    detail: e.to_string(),
                })?;
            pending.push((exchange, key, confirm));
        }
        for (exchange, key, confirm) in pending {
            let not_confirmed = |detail: String| BusError::NotConfirmed {
                destination: format!("{exchange}/{key}"),
                detail,
            };
            match confirm.await.map_err(|e| not_confirmed(e.to_string()))? {
                Confirmation::Ack(None) => {}
                Confirmation::Ack(Some(returned)) => {
                    return Err(BusError::Unroutable {
                        destination: format!("{exchange}/{key}"),
                        detail: returned.reply_text.to_string(),
                    });
                }
                Confirmation::Nack(_) => {
                    return Err(not_confirmed("the broker refused it (nack)".into()));
                }
                Confirmation::NotRequested => {
                    return Err(not_confirmed("channel is not in confirm mode".into()));
                }
            }
        }
        Ok(())
    }

    /// Parks a message in a DLQ with its reason (confirmed).
    async fn publish_dead_letter(
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
        self.publish_routed(&routed).await
    }

    pub async fn subscribe(
        &self,
        queue: WorkQueue,
        prefetch: u16,
    ) -> Result<RabbitSubscription, BusError> {
        let mut subscription = RabbitSubscription {
            bus: self.clone(),
            queue,
            name: self.inner.topology.work_queue(queue),
            prefetch: prefetch.max(1),
            current: None,
        };
        // Open now, so that a caller learns at start-up that the queue is unreachable.
        subscription.current = Some(subscription.open().await?);
        Ok(subscription)
    }

    pub async fn drain_dead_letters(
        &self,
        queue: DeadLetterQueue,
        max: usize,
    ) -> Result<Vec<DeadLetter>, BusError> {
        let live = self.live().await?;
        let channel = live
            .connection
            .create_channel()
            .await
            .map_err(|e| op_error("channel.open", e))?;
        let name = self.inner.topology.dead_letter_queue(queue);
        let mut letters = Vec::new();
        while letters.len() < max {
            let Some(message) = channel
                .basic_get(name.as_str().into(), BasicGetOptions::default())
                .await
                .map_err(|e| op_error("basic.get", e))?
            else {
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
            message
                .delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .map_err(|e| op_error("basic.ack", e))?;
        }
        let _ = channel.close(200, "done".into()).await;
        Ok(letters)
    }

    pub async fn ready_count(&self, queue: WorkQueue) -> Result<u64, BusError> {
        let live = self.live().await?;
        let channel = live
            .connection
            .create_channel()
            .await
            .map_err(|e| op_error("channel.open", e))?;
        let name = self.inner.topology.work_queue(queue);
        let declared = channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions::default().passive(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| op_error("queue.declare (passive)", e))?;
        let _ = channel.close(200, "done".into()).await;
        Ok(u64::from(declared.message_count()))
    }

    /// Deletes every queue and exchange of this topology (tests, and uninstalling). Messages
    /// in them are gone.
    pub async fn delete_topology(&self) -> Result<(), BusError> {
        let live = self.live().await?;
        let channel = live
            .connection
            .create_channel()
            .await
            .map_err(|e| op_error("channel.open", e))?;
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
        for queue in queues {
            channel
                .queue_delete(
                    queue.as_str().into(),
                    lapin::options::QueueDeleteOptions::default(),
                )
                .await
                .map_err(|e| op_error(&format!("queue.delete {queue}"), e))?;
        }
        for exchange in [
            t.raw_exchange(),
            t.changes_exchange(),
            t.dead_letter_exchange(),
        ] {
            channel
                .exchange_delete(
                    exchange.as_str().into(),
                    lapin::options::ExchangeDeleteOptions::default(),
                )
                .await
                .map_err(|e| op_error(&format!("exchange.delete {exchange}"), e))?;
        }
        let _ = channel.close(200, "done".into()).await;
        Ok(())
    }

    pub async fn close(&self) {
        let mut slot = self.inner.live.lock().await;
        if let Some(live) = slot.take() {
            let _ = live.connection.close(200, "shutting down".into()).await;
        }
        self.inner.connected.store(false, Ordering::Relaxed);
    }
}

/// A supervised consumer of one work queue.
pub struct RabbitSubscription {
    bus: RabbitBus,
    queue: WorkQueue,
    name: String,
    prefetch: u16,
    current: Option<(Channel, Consumer)>,
}

impl RabbitSubscription {
    async fn open(&self) -> Result<(Channel, Consumer), BusError> {
        let live = self.bus.live().await?;
        let channel = live
            .connection
            .create_channel()
            .await
            .map_err(|e| op_error("channel.open", e))?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| op_error("basic.qos", e))?;
        let consumer = channel
            .basic_consume(
                self.name.as_str().into(),
                ShortString::from(""),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| op_error(&format!("basic.consume {}", self.name), e))?;
        Ok((channel, consumer))
    }

    pub async fn next(&mut self) -> Option<Delivery> {
        let mut attempt = 0u32;
        loop {
            if self.bus.inner.shutdown.is_cancelled() {
                return None;
            }
            let Some((_, consumer)) = self.current.as_mut() else {
                match self.open().await {
                    Ok(opened) => {
                        tracing::info!(queue = %self.name, "consuming again after reconnect");
                        self.current = Some(opened);
                        attempt = 0;
                    }
                    Err(e) => {
                        tracing::warn!(queue = %self.name, error = %e, attempt, "cannot consume; retrying");
                        if self.bus.pause(attempt).await.is_err() {
                            return None;
                        }
                        attempt += 1;
                    }
                }
                continue;
            };
            let shutdown = self.bus.inner.shutdown.clone();
            let item = tokio::select! {
                _ = shutdown.cancelled() => return None,
                item = consumer.next() => item,
            };
            match item {
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
                Some(Err(e)) => {
                    tracing::warn!(queue = %self.name, error = %e, "consumer failed; reconnecting");
                    self.drop_current().await;
                }
                None => {
                    tracing::warn!(queue = %self.name, "consumer was cancelled by the broker; reconnecting");
                    self.drop_current().await;
                }
            }
        }
    }

    async fn drop_current(&mut self) {
        if let Some((channel, _)) = self.current.take() {
            let _ = channel.close(200, "reconnecting".into()).await;
        }
        // Give the broker (maybe restarting) a moment before the first reconnect attempt.
        let _ = self.bus.pause(0).await;
    }
}

impl Drop for RabbitSubscription {
    fn drop(&mut self) {
        // Close the channel now, so that the broker hands this consumer's prefetched,
        // unacked deliveries to another consumer at once instead of when the connection ends.
        if let Some((channel, _)) = self.current.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = channel.close(200, "consumer stopped".into()).await;
            });
        }
    }
}

/// Settles a RabbitMQ delivery.
pub struct RabbitSettle {
    acker: lapin::Acker,
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
        self.acker
            .ack(BasicAckOptions::default())
            .await
            .map(|_| ())
            .map_err(|e| op_error("basic.ack", e))
    }

    pub(super) async fn requeue(self) -> Result<(), BusError> {
        self.acker
            .nack(BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            })
            .await
            .map(|_| ())
            .map_err(|e| op_error("basic.nack", e))
    }

    pub(super) async fn dead_letter(self, body: Bytes, reason: &str) -> Result<(), BusError> {
        self.bus
            .publish_dead_letter(self.dlq, &self.origin_queue, body, reason)
            .await?;
        self.ack().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials() {
        assert_eq!(
            redact("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("amqp://127.0.0.1"), "amqp://127.0.0.1");
    }
}
