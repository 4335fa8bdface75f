//! Broker topology: every exchange, queue and routing key, in one place.
//!
//! ```text
//! ado.raw (fanout) ──► ado.raw.work (quorum)          ──► transform
//!                  └─► ado.raw.archive (stream)       ──► replay
//! port.changes (direct, key = partition) ──► port.changes.p{i} (quorum, single active consumer) ──► publish
//! adoport.resync.requests (quorum, single active consumer)  ──► the one active crawler
//! adoport.resync.progress (quorum, single active consumer)  ──► the one reconciliation coordinator
//! adoport.dlx (direct, key = queue's DLQ) ──► ado.raw.dlq, port.changes.dlq, adoport.resync.dlq
//! adoport.publish.members (fanout) ──► one exclusive, auto-delete queue per publish replica
//! adoport.ingest.leader         (exclusive, declared by the ingest replica that leads: a lock)
//! adoport.ingest.leader.present (quorum, never a message: the leader consumes it, so others see one leads)
//! adoport.ingest.leader.record  (quorum, at most one message: what the leaders keep across failovers)
//! ```
//!
//! The members exchange carries the publish replicas' heartbeats, from which they share the
//! change partitions among themselves (`publish::membership`).
//!
//! Every name takes the configured prefix, so that several installations (or parallel tests)
//! share one broker without touching each other's queues. The declaration itself lives in
//! `bus::rabbit`; the in-process bus uses the same names.

use std::time::Duration;

/// Which work queue a consumer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkQueue {
    /// Raw events waiting for transform.
    Raw,
    /// Entity changes of one partition waiting for publish.
    Changes { partition: u16 },
    /// Resync requests waiting for the crawler.
    ResyncRequests,
    /// Resync bookkeeping (crawl start/end, transform progress) waiting for the
    /// reconciliation coordinator in publish.
    ResyncProgress,
}

/// Where dead letters of a work queue go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterQueue {
    Raw,
    Changes,
    ResyncRequests,
}

impl WorkQueue {
    pub fn dead_letter_queue(self) -> DeadLetterQueue {
        match self {
            WorkQueue::Raw => DeadLetterQueue::Raw,
            WorkQueue::Changes { .. } => DeadLetterQueue::Changes,
            // Both are resync control messages: one DLQ for them.
            WorkQueue::ResyncRequests | WorkQueue::ResyncProgress => {
                DeadLetterQueue::ResyncRequests
            }
        }
    }
}

/// The queues of one lock: the exclusive queue that is the lock, and the presence queue its
/// holder consumes (declared with the topology; the lock is declared by whoever takes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockQueues {
    pub lock: String,
    pub presence: String,
}

/// Retention of the raw archive stream (what `adoport replay` can read back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveRetention {
    /// RabbitMQ duration syntax, e.g. `7D`, `12h`.
    pub max_age: String,
    /// Upper bound on the stream's size on disk.
    pub max_bytes: u64,
}

impl Default for ArchiveRetention {
    fn default() -> Self {
        Self {
            max_age: "7D".into(),
            max_bytes: 5 * 1024 * 1024 * 1024,
        }
    }
}

/// The names and parameters of everything adoport declares on the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
    /// Number of change partitions; every entity maps to exactly one.
    pub partitions: u16,
    /// Deliveries of one message before the broker dead-letters it (a crash loop guard).
    pub delivery_limit: u32,
    pub archive: ArchiveRetention,
}

impl Topology {
    pub fn new(prefix: impl Into<String>, partitions: u16) -> Self {
        Self {
            prefix: prefix.into(),
            partitions: partitions.max(1),
            delivery_limit: 5,
            archive: ArchiveRetention::default(),
        }
    }

    fn name(&self, base: &str) -> String {
        format!("{}{}", self.prefix, base)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Fanout exchange that receives every raw event.
    pub fn raw_exchange(&self) -> String {
        self.name("ado.raw")
    }

    /// Stream of every raw event, kept for replay.
    pub fn raw_archive(&self) -> String {
        self.name("ado.raw.archive")
    }

    /// Direct exchange for entity changes; the routing key is the partition's queue name.
    pub fn changes_exchange(&self) -> String {
        self.name("port.changes")
    }

    /// Direct exchange every work queue dead-letters to.
    pub fn dead_letter_exchange(&self) -> String {
        self.name("adoport.dlx")
    }

    /// Fanout exchange of the publish replicas' heartbeats; each replica listens through a
    /// queue of its own (exclusive, auto-delete, server-named).
    pub fn members_exchange(&self) -> String {
        self.name("adoport.publish.members")
    }

    pub fn work_queue(&self, queue: WorkQueue) -> String {
        match queue {
            WorkQueue::Raw => self.name("ado.raw.work"),
            WorkQueue::Changes { partition } => self.name(&format!("port.changes.p{partition}")),
            WorkQueue::ResyncRequests => self.name("adoport.resync.requests"),
            WorkQueue::ResyncProgress => self.name("adoport.resync.progress"),
        }
    }

    pub fn dead_letter_queue(&self, queue: DeadLetterQueue) -> String {
        match queue {
            DeadLetterQueue::Raw => self.name("ado.raw.dlq"),
            DeadLetterQueue::Changes => self.name("port.changes.dlq"),
            DeadLetterQueue::ResyncRequests => self.name("adoport.resync.dlq"),
        }
    }

    /// The ingest leader's lock: an exclusive queue that only the leading replica's connection
    /// holds (never declared with the topology; see `ingest::leader`), and the presence queue
    /// the leader consumes.
    pub fn leader_lock(&self) -> LockQueues {
        LockQueues {
            lock: self.name("adoport.ingest.leader"),
            presence: self.leader_presence(),
        }
    }

    /// A queue that never holds a message: the leader consumes it, so that the others see
    /// from its consumer count that someone leads without asking for the lock (the broker
    /// logs every refused lock as an error).
    pub fn leader_presence(&self) -> String {
        self.name("adoport.ingest.leader.present")
    }

    /// The ingest leaders' record (schedule, Port's last resync request, when a leader was last
    /// alive): a quorum queue that keeps only its newest message.
    pub fn leader_record(&self) -> String {
        self.name("adoport.ingest.leader.record")
    }

    /// Every change queue, in partition order.
    pub fn change_queues(&self) -> impl Iterator<Item = WorkQueue> + '_ {
        (0..self.partitions).map(|partition| WorkQueue::Changes { partition })
    }

    /// Every work queue.
    pub fn work_queues(&self) -> Vec<WorkQueue> {
        let mut all = vec![
            WorkQueue::Raw,
            WorkQueue::ResyncRequests,
            WorkQueue::ResyncProgress,
        ];
        all.extend(self.change_queues());
        all
    }

    /// The partition of an entity: stable across processes, versions and restarts.
    pub fn partition_of(&self, blueprint: &str, identifier: &str) -> u16 {
        // FNV-1a: tiny, stable and well spread for short keys. std's hasher is not stable.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in blueprint
            .bytes()
            .chain(std::iter::once(0))
            .chain(identifier.bytes())
        {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        (hash % u64::from(self.partitions)) as u16
    }
}

/// How long a consumer waits before it tries again to reach a broker that went away.
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix() {
        let t = Topology::new("t1.", 4);
        assert_eq!(t.raw_exchange(), "t1.ado.raw");
        assert_eq!(t.raw_archive(), "t1.ado.raw.archive");
        assert_eq!(
            t.work_queue(WorkQueue::Changes { partition: 3 }),
            "t1.port.changes.p3"
        );
        assert_eq!(t.dead_letter_queue(DeadLetterQueue::Raw), "t1.ado.raw.dlq");
        assert_eq!(t.members_exchange(), "t1.adoport.publish.members");
        assert_eq!(t.work_queues().len(), 7);
        assert_eq!(t.leader_lock().lock, "t1.adoport.ingest.leader");
        assert_eq!(t.leader_lock().presence, "t1.adoport.ingest.leader.present");
        assert_eq!(t.leader_record(), "t1.adoport.ingest.leader.record");
    }

    #[test]
    fn partition_is_stable_and_spread() {
        let t = Topology::new("", 8);
        // Pinned: a change of hash would reorder in-flight changes across an upgrade.
        assert_eq!(
            t.partition_of("azureDevopsRepository", "r1"),
            t.partition_of("azureDevopsRepository", "r1")
        );
        let mut counts = [0u32; 8];
        for i in 0..8000 {
            counts[t.partition_of("bp", &format!("id-{i}")) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
        // The separator keeps ("ab","c") and ("a","bc") apart.
        let t = Topology::new("", 1024);
        assert_ne!(t.partition_of("ab", "c"), t.partition_of("a", "bc"));
    }
}
