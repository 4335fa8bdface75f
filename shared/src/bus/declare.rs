//! Declaring the topology on RabbitMQ: every exchange, queue and binding, with the arguments
//! that make "confirmed" mean "kept" (see `crate::topology` for the names). Each call has the
//! operation timeout: a broker that does not answer a declaration fails the connection attempt,
//! which is then made again.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

use super::BusError;
use super::rabbit::within;
use crate::topology::{DeadLetterQueue, Topology, WorkQueue};

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

/// Declares every exchange, queue and binding of `t` (idempotent), each call within `limit`.
pub(super) async fn declare_topology(
    channel: &Channel,
    t: &Topology,
    limit: Duration,
) -> Result<(), BusError> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    for (exchange, kind) in [
        (t.dead_letter_exchange(), ExchangeKind::Direct),
        (t.raw_exchange(), ExchangeKind::Fanout),
        (t.changes_exchange(), ExchangeKind::Direct),
        // Publish replicas' heartbeats: every replica hears every other (bus::members).
        (t.members_exchange(), ExchangeKind::Fanout),
    ] {
        within(
            limit,
            &format!("exchange.declare {exchange}"),
            channel.exchange_declare(
                exchange.as_str().into(),
                kind,
                durable,
                FieldTable::default(),
            ),
        )
        .await?;
    }
    let declarations = Declarations { channel, limit };

    for dlq in [
        DeadLetterQueue::Raw,
        DeadLetterQueue::Changes,
        DeadLetterQueue::ResyncRequests,
    ] {
        let name = t.dead_letter_queue(dlq);
        declarations
            .queue(&name, quorum_arguments(t, None, false))
            .await?;
        declarations
            .bind(&name, &t.dead_letter_exchange(), &name)
            .await?;
    }

    for queue in t.work_queues() {
        let name = t.work_queue(queue);
        let dlq = t.dead_letter_queue(queue.dead_letter_queue());
        let single_active = !matches!(queue, WorkQueue::Raw);
        declarations
            .queue(&name, quorum_arguments(t, Some(&dlq), single_active))
            .await?;
        let (exchange, key) = match queue {
            WorkQueue::Raw => (t.raw_exchange(), String::new()),
            WorkQueue::Changes { .. } => (t.changes_exchange(), name.clone()),
            // Published through the default exchange by queue name.
            WorkQueue::ResyncRequests | WorkQueue::ResyncProgress => continue,
        };
        declarations.bind(&name, &exchange, &key).await?;
    }

    // Consumed by the ingest leader only, so that the others see that one leads.
    declarations
        .queue(&t.leader_presence(), quorum_arguments(t, None, false))
        .await?;

    // The ingest leaders' record: one small durable value, the newest written. A quorum queue
    // (replicated, confirmed on disk) that keeps one message: each write drops the one before.
    let mut record_args = quorum_arguments(t, None, false);
    record_args.insert("x-max-length".into(), AMQPValue::LongLongInt(1));
    record_args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("drop-head".into()),
    );
    declarations.queue(&t.leader_record(), record_args).await?;

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
    declarations.queue(&t.raw_archive(), stream_args).await?;
    declarations
        .bind(&t.raw_archive(), &t.raw_exchange(), "")
        .await
}

/// Durable queue declarations and bindings on one channel, each within the limit.
struct Declarations<'a> {
    channel: &'a Channel,
    limit: Duration,
}

impl Declarations<'_> {
    async fn queue(&self, name: &str, arguments: FieldTable) -> Result<(), BusError> {
        within(
            self.limit,
            &format!("queue.declare {name}"),
            self.channel
                .queue_declare(name.into(), QueueDeclareOptions::durable(), arguments),
        )
        .await
        .map(|_| ())
    }

    async fn bind(&self, queue: &str, exchange: &str, key: &str) -> Result<(), BusError> {
        within(
            self.limit,
            &format!("queue.bind {queue}"),
            self.channel.queue_bind(
                queue.into(),
                exchange.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await
    }
}
