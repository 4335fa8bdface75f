//! The partition barriers of one resync: which change partitions reported that publish settled
//! every change they held before the resync's barrier, and how many of those changes publish
//! dead-lettered.
//!
//! Transform reports a raw event's progress only after its changes are confirmed on the
//! partitions, so once every raw event of an attempt is reported, a barrier published to every
//! partition sits behind every change of that attempt. A resync completes (deletes, reports
//! `completed`) only once every partition's barrier passed: Port then holds everything the
//! attempt produced, or publish dead-lettered it. A barrier delivered again (a publish replica
//! killed, a partition handed over) reports again; `(barrier_id, partition)` counts once.

use std::collections::BTreeSet;

use tokio::time::Instant;
use uuid::Uuid;

/// What happened to one `BarrierPassed` report.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Passed {
    /// A partition reported for the first time.
    Counted,
    /// This partition already reported (a redelivered barrier): nothing changed.
    Again,
    /// Not this resync's barrier (an older set, sent by a coordinator that restarted), or a
    /// partition the topology does not have: ignored.
    Foreign,
}

/// One set of barriers, one per change partition.
#[derive(Debug)]
pub(crate) struct Barrier {
    pub(crate) id: Uuid,
    partitions: u16,
    passed: BTreeSet<u16>,
    /// Changes of the resync publish dead-lettered, summed over the partitions that reported.
    pub(crate) dead_lettered: u64,
    pub(crate) sent_at: Instant,
}

impl Barrier {
    pub(crate) fn new(partitions: u16) -> Self {
        Self {
            id: Uuid::new_v4(),
            partitions: partitions.max(1),
            passed: BTreeSet::new(),
            dead_lettered: 0,
            sent_at: Instant::now(),
        }
    }

    pub(crate) fn partitions(&self) -> u16 {
        self.partitions
    }

    /// A publish replica's report that `partition` passed barrier `barrier_id`.
    pub(crate) fn pass(&mut self, barrier_id: Uuid, partition: u16, dead_lettered: u64) -> Passed {
        if barrier_id != self.id || partition >= self.partitions {
            return Passed::Foreign;
        }
        if !self.passed.insert(partition) {
            return Passed::Again;
        }
        self.dead_lettered += dead_lettered;
        Passed::Counted
    }

    /// Every partition reported.
    pub(crate) fn all_passed(&self) -> bool {
        self.passed.len() == usize::from(self.partitions)
    }

    /// The partitions that have not reported yet (for the log: no publish replica consumes
    /// them, or one is still writing).
    pub(crate) fn waiting(&self) -> Vec<u16> {
        (0..self.partitions)
            .filter(|p| !self.passed.contains(p))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_barrier_passes_once_every_partition_reported_each_counted_once() {
        let mut barrier = Barrier::new(3);
        let id = barrier.id;
        assert_eq!(barrier.waiting(), vec![0, 1, 2]);
        assert_eq!(barrier.pass(id, 1, 2), Passed::Counted);
        assert_eq!(
            barrier.pass(id, 1, 2),
            Passed::Again,
            "a redelivered barrier reports again"
        );
        assert_eq!(barrier.dead_lettered, 2, "a repeated report adds nothing");
        assert_eq!(barrier.pass(id, 0, 0), Passed::Counted);
        assert!(!barrier.all_passed());
        assert_eq!(barrier.waiting(), vec![2]);
        assert_eq!(barrier.pass(id, 2, 1), Passed::Counted);
        assert!(barrier.all_passed());
        assert_eq!(barrier.dead_lettered, 3);
    }

    #[test]
    fn reports_of_another_barrier_or_partition_are_ignored() {
        let mut barrier = Barrier::new(2);
        assert_eq!(barrier.pass(Uuid::new_v4(), 0, 5), Passed::Foreign);
        assert_eq!(barrier.pass(barrier.id, 2, 5), Passed::Foreign);
        assert_eq!(barrier.dead_lettered, 0);
        assert!(!barrier.all_passed());
    }
}
