//! Reading the raw archive stream back (`adoport replay`), and putting messages straight into
//! a work queue.
//!
//! The archive (`ado.raw.archive`) is a RabbitMQ stream: reading it does not consume it. A
//! reader starts at an offset, a timestamp or an age (`x-stream-offset`), with a bounded
//! prefetch and manual acks (a stream refuses `no_ack` consumers). A stream has no end for a
//! consumer, so a reader stops when nothing new arrived for its idle time.
//!
//! [`Bus::publish_to_queue`] publishes through the default exchange with the queue's name as
//! routing key: a replayed raw event reaches transform without being archived a second time.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Consumer};

use super::rabbit::{RabbitBus, Routed, header_number, op_error, persistent, within};
use super::{Backend, Bus, BusError, Destination, Outgoing};
use crate::topology::WorkQueue;

/// Deliveries in flight from the stream (a stream consumer must set a prefetch).
const ARCHIVE_PREFETCH: u16 = 256;

/// Where a reader starts in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveStart {
    /// The oldest message still retained.
    First,
    /// A stream offset (as printed by `adoport replay`).
    Offset(u64),
    /// Messages stored at or after this time (chunk granularity: a few earlier ones may come
    /// too; filter on the event's own time when that matters).
    Since(DateTime<Utc>),
    /// Messages younger than this RabbitMQ interval, e.g. `10m`, `2h`, `1D`.
    Age(String),
}

impl ArchiveStart {
    fn argument(&self) -> AMQPValue {
        match self {
            ArchiveStart::First => AMQPValue::LongString("first".into()),
            ArchiveStart::Offset(n) => {
                AMQPValue::LongLongInt(i64::try_from(*n).unwrap_or(i64::MAX))
            }
            ArchiveStart::Since(t) => {
                AMQPValue::Timestamp(u64::try_from(t.timestamp()).unwrap_or_default())
            }
            ArchiveStart::Age(age) => AMQPValue::LongString(age.as_str().into()),
        }
    }
}

/// One message read from the archive.
#[derive(Debug, Clone)]
pub struct ArchivedMessage {
    /// Its offset in the stream.
    pub offset: u64,
    pub body: Bytes,
}

/// A reader of the archive stream; dropping it closes its channel.
pub struct ArchiveReader {
    channel: Channel,
    consumer: Consumer,
    idle: Duration,
    stream: String,
}

impl ArchiveReader {
    /// The next archived message, or `None` once nothing new arrived for the idle time.
    pub async fn next(&mut self) -> Result<Option<ArchivedMessage>, BusError> {
        let item = match tokio::time::timeout(self.idle, self.consumer.next()).await {
            Err(_) => return Ok(None),
            Ok(item) => item,
        };
        match item {
            None => Err(op_error(
                &format!("reading {}", self.stream),
                "the broker cancelled the stream consumer",
            )),
            Some(Err(e)) => Err(op_error(&format!("reading {}", self.stream), e)),
            Some(Ok(delivery)) => {
                let headers = delivery.properties.headers().clone().unwrap_or_default();
                let offset = header_number(&headers, "x-stream-offset").unwrap_or_default();
                delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .map_err(|e| op_error("basic.ack (stream)", e))?;
                Ok(Some(ArchivedMessage {
                    offset,
                    body: Bytes::from(delivery.data),
                }))
            }
        }
    }

    /// Closes the reader's channel.
    pub async fn close(self) {
        let _ = self.channel.close(200, "replay done".into()).await;
    }
}

impl RabbitBus {
    pub(super) async fn read_archive(
        &self,
        start: &ArchiveStart,
        idle: Duration,
    ) -> Result<ArchiveReader, BusError> {
        let stream = self.topology().raw_archive();
        let channel = self.open_channel().await?;
        let limit = self.timeouts().operation;
        within(
            limit,
            "basic.qos (stream)",
            channel.basic_qos(ARCHIVE_PREFETCH, BasicQosOptions::default()),
        )
        .await?;
        let mut arguments = FieldTable::default();
        arguments.insert("x-stream-offset".into(), start.argument());
        let consumer = within(
            limit,
            &format!("basic.consume {stream} from {start:?}"),
            channel.basic_consume(
                stream.as_str().into(),
                ShortString::from(""),
                BasicConsumeOptions::default(),
                arguments,
            ),
        )
        .await?;
        Ok(ArchiveReader {
            channel,
            consumer,
            idle,
            stream,
        })
    }

    pub(super) async fn publish_to_queue(
        &self,
        queue: WorkQueue,
        bodies: Vec<Bytes>,
    ) -> Result<(), BusError> {
        let name = self.topology().work_queue(queue);
        let routed: Vec<Routed> = bodies
            .into_iter()
            .map(|body| (String::new(), name.clone(), persistent(), body))
            .collect();
        self.publish_waiting(&routed).await
    }
}

impl Bus {
    /// Reads the raw archive stream from `start`; the reader ends after `idle` without a new
    /// message. Needs RabbitMQ: the in-process bus keeps no archive.
    pub async fn read_archive(
        &self,
        start: &ArchiveStart,
        idle: Duration,
    ) -> Result<ArchiveReader, BusError> {
        match &self.backend {
            Backend::Rabbit(b) => b.read_archive(start, idle).await,
            Backend::Memory(_) => Err(BusError::Operation {
                operation: "read the raw archive".into(),
                detail: "the in-process bus keeps no archive; set ADOPORT__BROKER__URL".into(),
            }),
        }
    }

    /// Publishes straight into one work queue (confirmed), bypassing exchanges: replayed raw
    /// events are not archived again, requeued dead letters go back where they came from.
    pub async fn publish_to_queue(
        &self,
        queue: WorkQueue,
        bodies: Vec<Bytes>,
    ) -> Result<(), BusError> {
        if bodies.is_empty() {
            return Ok(());
        }
        match &self.backend {
            Backend::Rabbit(b) => b.publish_to_queue(queue, bodies).await,
            Backend::Memory(b) => {
                let destination = match queue {
                    WorkQueue::Raw => Destination::Raw,
                    WorkQueue::Changes { partition } => Destination::Change { partition },
                    WorkQueue::ResyncRequests => Destination::ResyncRequest,
                    WorkQueue::ResyncProgress => Destination::ResyncProgress,
                };
                b.publish_all(
                    bodies
                        .into_iter()
                        .map(|body| Outgoing::new(destination, body))
                        .collect(),
                )
                .await
            }
        }
    }
}
