//! What one process among many holds on the broker, for work that must run once however many
//! replicas run (the ingest leader, `adoport_ingest::leader`): a lock, and a register.
//!
//! - **A lock is an exclusive queue** ([`Bus::try_lock`](super::Bus::try_lock)). The broker lets
//!   one connection declare it; any other gets `405 RESOURCE_LOCKED` on its channel, which
//!   means "another process holds it" ([`LockAnswer::HeldElsewhere`]). The broker deletes it
//!   when the holder's connection closes or misses its heartbeats, so that another process can
//!   take it. The holder learns that its connection is gone from the link ([`BusLock::lost`]),
//!   and confirms every quarter heartbeat that the broker still answers it as the holder
//!   ([`BusLock::confirm`]), within half the negotiated heartbeat: a holder cut off from the
//!   broker notices before the broker would hand the lock to someone else.
//! - **Quiet while taken.** The broker logs every refused declaration as an error, and the
//!   others ask every few seconds; so the holder also consumes a *presence* queue (which never
//!   holds a message), and a process first looks at that queue's consumer count — a question
//!   the broker answers without an error — and asks for the lock only when nobody consumes it.
//!   The consumer goes with the holder's connection, as the lock does.
//! - **A register is a quorum queue that keeps its newest message** (`x-max-length` 1,
//!   `drop-head`; declared with the topology): a write is a confirmed publish, a read takes
//!   every message without acking and gives them back by closing its channel.
//!
//! In process ([`MemoryBus`](super::MemoryBus)) the lock is always free (one process) and the
//! register is a value in memory.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use lapin::options::{BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer, ErrorKind};

use super::BusError;
use super::consumer::{StartConsuming, start_consuming};
use super::link::Live;
use super::rabbit::{RabbitBus, persistent, within};
use crate::topology::LockQueues;

/// The outcome of trying to take a lock.
pub enum LockAttempt {
    /// This process holds it until [`BusLock::lost`] completes or it is released.
    Held(BusLock),
    /// Another process holds it.
    Taken,
}

/// What the broker's refusal of a lock declaration (or confirmation) means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockAnswer {
    /// `405 RESOURCE_LOCKED`: another connection holds the queue.
    HeldElsewhere,
    /// `404 NOT_FOUND` (when confirming): the queue is gone, e.g. deleted by an operator.
    Gone,
    /// `403 ACCESS_REFUSED`: the broker user may not configure the queue.
    Forbidden(String),
    /// `406 PRECONDITION_FAILED`: a queue of that name exists with other properties.
    Mismatch(String),
    /// The connection failed (I/O, a connection-level error, missed heartbeats, a closed
    /// channel): the link reconnects.
    ConnectionFailed(String),
    /// Anything else the broker answered.
    Other(String),
}

impl LockAnswer {
    /// Reads a lapin error from `queue.declare` on the lock's queue.
    pub fn classify(error: &lapin::Error) -> Self {
        match error.kind() {
            ErrorKind::ProtocolError(amqp) => {
                let text = amqp.get_message().to_string();
                match amqp.kind() {
                    AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED) => Self::HeldElsewhere,
                    AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND) => Self::Gone,
                    AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) => Self::Forbidden(text),
                    AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED) => Self::Mismatch(text),
                    AMQPErrorKind::Hard(_) => Self::ConnectionFailed(text),
                    AMQPErrorKind::Soft(_) => Self::Other(text),
                }
            }
            ErrorKind::IOError(_)
            | ErrorKind::RuntimeShutdownError(_)
            | ErrorKind::MissingHeartbeatError
            | ErrorKind::InvalidConnectionState(_)
            | ErrorKind::InvalidChannelState(..)
            | ErrorKind::InvalidChannel(_) => Self::ConnectionFailed(error.to_string()),
            _ => Self::Other(error.to_string()),
        }
    }

    /// The error a caller reports for an answer that is not [`LockAnswer::HeldElsewhere`]:
    /// what happened to `queue` and what to do.
    pub fn into_error(self, queue: &str) -> BusError {
        let operation = format!("queue.declare (exclusive) {queue}");
        let detail = match self {
            Self::HeldElsewhere => "another connection holds it".to_string(),
            Self::Gone => "the queue is gone (deleted on the broker?)".to_string(),
            Self::Forbidden(text) => format!(
                "{text}: the broker user needs the configure permission on the queues of ADOPORT__BROKER__PREFIX"
            ),
            Self::Mismatch(text) => format!(
                "{text}: a queue of this name exists that is not this lock (not exclusive); delete it (rabbitmqctl delete_queue {queue})"
            ),
            Self::ConnectionFailed(text) => format!("the connection failed: {text}"),
            Self::Other(text) => text,
        };
        BusError::Operation { operation, detail }
    }
}

/// A lock this process holds. Dropping it keeps the lock until the connection goes; call
/// [`BusLock::release`] to hand it over at once.
pub struct BusLock {
    inner: Held,
}

enum Held {
    // Boxed: lapin's channel and consumer are large, and a lock moves between tasks.
    Rabbit(Box<RabbitHeld>),
    Memory { bus: MemoryLocks, name: String },
}

impl BusLock {
    /// Completes, with why, when the connection that holds the lock is lost (the broker then
    /// drops the lock, or already has). Never, in process.
    pub async fn lost(&self) -> String {
        match &self.inner {
            Held::Rabbit(held) => held.bus.link().gone(held.live.generation).await,
            Held::Memory { .. } => std::future::pending().await,
        }
    }

    /// How long [`BusLock::confirm`] waits for the broker: half the heartbeat negotiated on
    /// the holder's connection (the broker drops a connection it hears nothing from for about
    /// one heartbeat), at least half a second.
    pub fn confirm_limit(&self) -> Duration {
        (self.heartbeat_or_default() / 2).max(Duration::from_millis(500))
    }

    /// How often the holder should confirm: a quarter of the heartbeat, so that a holder cut
    /// off from the broker gives up within three quarters of a heartbeat — before the broker
    /// drops its connection and lets another process take the lock.
    pub fn confirm_every(&self) -> Duration {
        (self.heartbeat_or_default() / 4).max(Duration::from_millis(250))
    }

    fn heartbeat_or_default(&self) -> Duration {
        self.heartbeat().unwrap_or(Duration::from_secs(2))
    }

    /// The heartbeat negotiated on the holder's connection (`None` in process).
    pub fn heartbeat(&self) -> Option<Duration> {
        match &self.inner {
            Held::Rabbit(held) => Some(Duration::from_secs(u64::from(
                held.live.connection.configuration().heartbeat(),
            ))),
            Held::Memory { .. } => None,
        }
    }

    /// Asks the broker whether this connection still holds the lock (a passive declare on the
    /// lock's channel), within [`BusLock::confirm_limit`]. An error says why it cannot be
    /// taken as held any longer.
    pub async fn confirm(&self) -> Result<(), String> {
        let Held::Rabbit(held) = &self.inner else {
            return Ok(());
        };
        let RabbitHeld {
            live,
            channel,
            queue,
            ..
        } = &**held;
        if !live.healthy() {
            return Err("the connection to the broker is down".into());
        }
        let limit = self.confirm_limit();
        let asked = channel.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        );
        match tokio::time::timeout(limit, asked).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(match LockAnswer::classify(&e) {
                LockAnswer::Gone => "the lock's queue is gone (deleted on the broker)".into(),
                LockAnswer::HeldElsewhere => "another connection holds the lock".into(),
                _ => format!("the broker refused the confirmation: {e}"),
            }),
            Err(_) => Err(format!(
                "the broker did not confirm the lock within {} ms (half the heartbeat): it may be cut off",
                limit.as_millis()
            )),
        }
    }

    /// Gives the lock up now (deletes its queue, bounded by the operation timeout), so that
    /// another process takes it without waiting for this connection to close.
    pub async fn release(self) {
        match self.inner {
            Held::Rabbit(held) => {
                let RabbitHeld {
                    bus,
                    channel,
                    queue,
                    ..
                } = *held;
                // Deleting the queue ends the lock; closing the channel ends the presence.
                let limit = bus.timeouts().operation;
                let _ = within(
                    limit,
                    "queue.delete",
                    channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()),
                )
                .await;
                bus.close_channel(channel).await;
            }
            Held::Memory { bus, name } => bus.release(&name),
        }
    }
}

/// Takes the lock on RabbitMQ: waits for the connection; on a channel of its own (kept for
/// confirmations), looks whether anyone consumes the presence queue, and only if nobody does,
/// declares the exclusive queue and consumes the presence queue.
pub(super) async fn try_lock_rabbit(
    bus: &RabbitBus,
    queues: &LockQueues,
) -> Result<LockAttempt, BusError> {
    let link = bus.link();
    let live = link.up().await?;
    let limit = bus.timeouts().operation;
    let open = |live: Arc<Live>| async move {
        let opened = within(limit, "channel.open", live.connection.create_channel()).await;
        if let Err(e @ BusError::TimedOut { .. }) = &opened {
            link.broken(live.generation, e.to_string());
        }
        opened
    };
    let channel = open(live.clone()).await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let present = channel.queue_declare(
        queues.presence.as_str().into(),
        passive,
        FieldTable::default(),
    );
    let channel = match tokio::time::timeout(limit, present).await {
        Ok(Ok(declared)) if declared.consumer_count() > 0 => {
            bus.close_channel(channel).await;
            return Ok(LockAttempt::Taken);
        }
        Ok(Ok(_)) => channel,
        // The presence queue is gone (deleted by hand): ask for the lock itself, on a new
        // channel (the broker closed this one).
        Ok(Err(_)) => open(live.clone()).await?,
        Err(_) => {
            bus.close_channel(channel).await;
            return Err(BusError::TimedOut {
                operation: format!("queue.declare (passive) {}", queues.presence),
                after: limit,
            });
        }
    };
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        ..QueueDeclareOptions::default()
    };
    let declared = channel.queue_declare(
        queues.lock.as_str().into(),
        exclusive,
        FieldTable::default(),
    );
    match tokio::time::timeout(limit, declared).await {
        Ok(Ok(_)) => {}
        // The broker closed the channel with the refusal: nothing to close here.
        Ok(Err(e)) => {
            return match LockAnswer::classify(&e) {
                LockAnswer::HeldElsewhere => Ok(LockAttempt::Taken),
                other => Err(other.into_error(&queues.lock)),
            };
        }
        Err(_) => {
            bus.close_channel(channel).await;
            return Err(BusError::TimedOut {
                operation: format!("queue.declare (exclusive) {}", queues.lock),
                after: limit,
            });
        }
    }
    let consuming = start_consuming(
        &channel,
        limit,
        &queues.presence,
        StartConsuming {
            prefetch: Some(1),
            tag: "adoport-leader",
            no_ack: true,
        },
    );
    match consuming.await {
        Ok(presence) => Ok(LockAttempt::Held(BusLock {
            inner: Held::Rabbit(Box::new(RabbitHeld {
                bus: bus.clone(),
                live,
                channel,
                queue: queues.lock.clone(),
                _presence: presence,
            })),
        })),
        Err(e) => {
            // Without the presence consumer the others would keep asking: give the lock back.
            let _ = within(
                limit,
                "queue.delete",
                channel.queue_delete(queues.lock.as_str().into(), QueueDeleteOptions::default()),
            )
            .await;
            bus.close_channel(channel).await;
            Err(e)
        }
    }
}

/// Every message of the register `queue` (normally one), oldest first; they stay in it.
pub(super) async fn read_register_rabbit(
    bus: &RabbitBus,
    queue: &str,
) -> Result<Vec<Bytes>, BusError> {
    /// A register holds one message; a few more can exist for a moment (a write while a read
    /// held the one before).
    const MOST: usize = 16;
    let channel = bus.open_channel().await?;
    let limit = bus.timeouts().operation;
    let mut bodies = Vec::new();
    let outcome = async {
        while bodies.len() < MOST {
            let get = channel.basic_get(queue.into(), BasicGetOptions { no_ack: false });
            match within(limit, &format!("basic.get {queue}"), get).await? {
                Some(message) => bodies.push(Bytes::from(message.delivery.data.clone())),
                None => break,
            }
        }
        Ok::<_, BusError>(())
    }
    .await;
    // Closing the channel gives every message taken back to the queue, unacked.
    bus.close_channel(channel).await;
    outcome.map(|()| bodies)
}

/// Writes the register `queue`: a confirmed publish (waiting for the broker as the pipeline's
/// publishes do), which drops the message before.
pub(super) async fn write_register_rabbit(
    bus: &RabbitBus,
    queue: &str,
    body: Bytes,
) -> Result<(), BusError> {
    bus.publish_waiting(&[(String::new(), queue.to_string(), persistent(), body)])
        .await
}

/// A lock held on RabbitMQ.
struct RabbitHeld {
    bus: RabbitBus,
    live: Arc<Live>,
    channel: Channel,
    queue: String,
    /// On the presence queue: tells the others that someone holds the lock.
    _presence: Consumer,
}

/// The in-process bus's locks and registers.
#[derive(Clone, Default)]
pub(super) struct MemoryLocks {
    inner: Arc<MemoryLocksInner>,
}

#[derive(Default)]
struct MemoryLocksInner {
    held: Mutex<HashSet<String>>,
    registers: Mutex<HashMap<String, Bytes>>,
}

fn guard<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemoryLocks {
    pub(super) fn try_lock(&self, queues: &LockQueues) -> LockAttempt {
        let name = &queues.lock;
        if guard(&self.inner.held).insert(name.clone()) {
            LockAttempt::Held(BusLock {
                inner: Held::Memory {
                    bus: self.clone(),
                    name: name.clone(),
                },
            })
        } else {
            LockAttempt::Taken
        }
    }

    fn release(&self, name: &str) {
        guard(&self.inner.held).remove(name);
    }

    pub(super) fn read(&self, name: &str) -> Vec<Bytes> {
        guard(&self.inner.registers)
            .get(name)
            .cloned()
            .into_iter()
            .collect()
    }

    pub(super) fn write(&self, name: &str, body: Bytes) {
        guard(&self.inner.registers).insert(name.to_string(), body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::protocol::{AMQPError, AMQPHardError};

    fn amqp(kind: AMQPErrorKind, text: &str) -> lapin::Error {
        ErrorKind::ProtocolError(AMQPError::new(kind, text.into())).into()
    }

    #[test]
    fn a_locked_queue_means_another_process_leads_and_the_rest_say_what_to_do() {
        let locked = amqp(
            AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED),
            "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'p.adoport.ingest.leader'",
        );
        assert_eq!(LockAnswer::classify(&locked), LockAnswer::HeldElsewhere);

        let gone = amqp(AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND), "NOT_FOUND");
        assert_eq!(LockAnswer::classify(&gone), LockAnswer::Gone);

        let refused = amqp(
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED),
            "ACCESS_REFUSED - configure access",
        );
        let answer = LockAnswer::classify(&refused);
        assert!(matches!(answer, LockAnswer::Forbidden(_)), "{answer:?}");
        let error = answer.into_error("p.adoport.ingest.leader").to_string();
        assert!(
            error.contains("configure permission") && error.contains("p.adoport.ingest.leader"),
            "{error}"
        );

        let mismatch = amqp(
            AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED),
            "PRECONDITION_FAILED - inequivalent arg 'exclusive'",
        );
        let error = LockAnswer::classify(&mismatch).into_error("q").to_string();
        assert!(error.contains("rabbitmqctl delete_queue q"), "{error}");

        let forced = amqp(
            AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED),
            "CONNECTION_FORCED - broker forced connection closure",
        );
        assert!(matches!(
            LockAnswer::classify(&forced),
            LockAnswer::ConnectionFailed(_)
        ));
        let io: lapin::Error = std::io::Error::from(std::io::ErrorKind::ConnectionReset).into();
        assert!(matches!(
            LockAnswer::classify(&io),
            LockAnswer::ConnectionFailed(_)
        ));
        let heartbeat: lapin::Error = ErrorKind::MissingHeartbeatError.into();
        assert!(matches!(
            LockAnswer::classify(&heartbeat),
            LockAnswer::ConnectionFailed(_)
        ));
        let other = amqp(
            AMQPErrorKind::Soft(AMQPSoftError::CONTENTTOOLARGE),
            "CONTENT_TOO_LARGE",
        );
        assert!(matches!(LockAnswer::classify(&other), LockAnswer::Other(_)));
    }

    #[test]
    fn in_process_one_holder_at_a_time_and_the_register_keeps_the_newest() {
        let locks = MemoryLocks::default();
        let queues = |lock: &str| LockQueues {
            lock: lock.into(),
            presence: format!("{lock}.present"),
        };
        let LockAttempt::Held(held) = locks.try_lock(&queues("leader")) else {
            panic!("free at first");
        };
        assert!(matches!(
            locks.try_lock(&queues("leader")),
            LockAttempt::Taken
        ));
        assert!(matches!(
            locks.try_lock(&queues("other")),
            LockAttempt::Held(_)
        ));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(held.release());
        assert!(matches!(
            locks.try_lock(&queues("leader")),
            LockAttempt::Held(_)
        ));

        assert!(locks.read("record").is_empty());
        locks.write("record", Bytes::from_static(b"1"));
        locks.write("record", Bytes::from_static(b"2"));
        assert_eq!(locks.read("record"), [Bytes::from_static(b"2")]);
    }
}
