//! The version guard: for one entity (blueprint, identifier), never apply a change observed
//! earlier than one already taken.
//!
//! The guard remembers, per entity, the newest `observed_at` it admitted. A change observed
//! strictly earlier is stale: the worker acks it without sending it and counts it. A change
//! with the same `observed_at` (a redelivery) is admitted again: writes are idempotent.
//!
//! "Admitted" rather than "applied": once a newer change is admitted, an older one can never be
//! the right final state, whether the newer one is still in a batch, in flight, or ends in the
//! dead-letter queue (from where it is replayed). The worker keeps two writes of one entity
//! from being in flight together, so admission order is also the order Port sees them in.
//!
//! Memory is bounded and does not grow with the organization: entities are remembered as
//! 128-bit fingerprints (24 bytes with the observation), at most `capacity` of them
//! ([`DEFAULT_GUARD_CAPACITY`], [`GUARD_BYTES`]) for the whole process, however many
//! partitions it consumes. The table is allocated at that bound when the guard is made and
//! never grows, shrinks or is rebuilt: the process takes the same memory for a small
//! organization as for a large one, and never holds an old and a new table at once (growing
//! from 32,768 to 65,536 slots would, 2.4 MB for a moment). Past `capacity` entities the
//! guard forgets the half with the oldest observations. The trade-off: a stale change for a
//! forgotten entity is applied again. That takes a change older than that entity's last one
//! arriving after the guard has seen `capacity / 2` newer entity versions; the per-partition
//! queue order (one entity = one partition, in publish order) already rules out the common
//! case, so the guard only has to cover redeliveries and replays that arrive close together.

use std::collections::HashMap;

use adoport_shared::port::{BlueprintId, EntityId};
use chrono::{DateTime, Utc};

use crate::fingerprint::{Fingerprinter, WideFingerprint};

/// What ordering is kept for: one entity in Port, or one part of it.
///
/// With merge writes (`enableMergeEntity`, the default), several mapping resources may each
/// write their own properties of one entity (the reference mapping's `repository` and two
/// `repository-policy` resources all write `azureDevopsRepository`). Their changes are parts of
/// the entity, not versions of it: a policy change must not supersede the repository's own
/// fields. So merge writes are ordered per part (`kind#resource`), and only replace writes are
/// ordered per whole entity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntityKey {
    pub blueprint: BlueprintId,
    pub identifier: EntityId,
    /// `kind#resource_index` for merge writes; empty for the whole entity.
    pub part: String,
}

impl EntityKey {
    /// The whole entity.
    pub fn new(blueprint: impl Into<String>, identifier: impl Into<String>) -> Self {
        Self {
            blueprint: BlueprintId::new(blueprint),
            identifier: EntityId::new(identifier),
            part: String::new(),
        }
    }

    /// The key a change is ordered by (see the type's documentation).
    pub fn of_change(change: &adoport_shared::messages::EntityChange) -> Self {
        let part = if change.write.merge {
            format!("{}#{}", change.kind, change.resource_index)
        } else {
            String::new()
        };
        Self {
            blueprint: BlueprintId::new(change.blueprint.clone()),
            identifier: EntityId::new(change.identifier.clone()),
            part,
        }
    }
}

/// Entities the guard remembers by default: 7/8 of 65,536 slots, the most a table of 65,536
/// slots holds, so the guard never takes more than [`GUARD_BYTES`].
pub const DEFAULT_GUARD_CAPACITY: usize = 57_344;

/// Bytes of one remembered entity: a 128-bit fingerprint of its key and the observation in
/// nanoseconds.
const ENTRY_BYTES: usize = std::mem::size_of::<(WideFingerprint, i64)>();

/// The most the guard takes at [`DEFAULT_GUARD_CAPACITY`]: 65,536 slots of an entry and a
/// control byte (about 1.6 MB, whatever the identifiers' length).
pub const GUARD_BYTES: usize = 65_536 * crate::fingerprint::slot_bytes(ENTRY_BYTES);

/// The guard's verdict on a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Newer than (or as new as) anything seen: send it.
    Fresh,
    /// Older than a change already admitted (observed at `newest`): drop it.
    Stale { newest: DateTime<Utc> },
}

/// Newest admitted observation per entity, bounded: entities are held as 128-bit
/// fingerprints of their key (`crate::fingerprint`), observations as nanoseconds.
#[derive(Debug)]
pub struct VersionGuard {
    newest: HashMap<WideFingerprint, i64>,
    hasher: Fingerprinter,
    capacity: usize,
    forgotten: u64,
}

/// An observation as nanoseconds since the epoch (saturated outside 1677–2262, where no
/// observation falls).
fn nanos(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(if at.timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

impl VersionGuard {
    /// A guard of `capacity` entities, its table allocated for all of them now (see the
    /// module documentation).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(2);
        Self {
            newest: HashMap::with_capacity(capacity),
            hasher: Fingerprinter::new(),
            capacity,
            forgotten: 0,
        }
    }

    fn fingerprint(&self, key: &EntityKey) -> WideFingerprint {
        self.hasher
            .wide(&[key.blueprint.as_str(), key.identifier.as_str(), &key.part])
    }

    /// Decides on a change and, if it is fresh, remembers it as the entity's newest.
    pub fn admit(&mut self, key: &EntityKey, observed_at: DateTime<Utc>) -> Admission {
        let fingerprint = self.fingerprint(key);
        let observed = nanos(observed_at);
        if let Some(newest) = self.newest.get_mut(&fingerprint) {
            if observed < *newest {
                return Admission::Stale {
                    newest: DateTime::from_timestamp_nanos(*newest),
                };
            }
            *newest = observed;
            return Admission::Fresh;
        }
        if self.newest.len() >= self.capacity {
            self.forget_oldest_half();
        }
        self.newest.insert(fingerprint, observed);
        Admission::Fresh
    }

    /// The newest admitted observation of an entity, if remembered.
    pub fn newest(&self, key: &EntityKey) -> Option<DateTime<Utc>> {
        self.newest
            .get(&self.fingerprint(key))
            .map(|at| DateTime::from_timestamp_nanos(*at))
    }

    pub fn len(&self) -> usize {
        self.newest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.newest.is_empty()
    }

    /// Bytes the guard's table takes (its capacity: what the allocator holds).
    pub fn bytes(&self) -> usize {
        crate::fingerprint::table_bytes(self.newest.capacity(), ENTRY_BYTES)
    }

    /// Entities forgotten to stay within capacity, since start.
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// Keeps the entities observed after the median observation, in the same table.
    fn forget_oldest_half(&mut self) {
        let median = {
            let mut times: Vec<i64> = self.newest.values().copied().collect();
            let middle = times.len() / 2;
            *times.select_nth_unstable(middle).1
        };
        let before = self.newest.len();
        let kept: Vec<(WideFingerprint, i64)> = self
            .newest
            .iter()
            .filter(|(_, at)| **at > median)
            .map(|(fingerprint, at)| (*fingerprint, *at))
            .collect();
        // At most half is kept: every entry at or before the median's place in the order is
        // observed no later than it (so many equal timestamps, one resync page, keep fewer).
        // `clear` keeps the allocation and leaves no tombstones: removing entries one by one
        // (`retain`) would, and on the way back to `capacity` entries they would make the
        // table grow past its slots.
        self.newest.clear();
        self.newest.extend(kept);
        self.forgotten += (before - self.newest.len()) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(secs)
    }

    #[test]
    fn older_is_stale_equal_and_newer_are_fresh() {
        let mut guard = VersionGuard::new(100);
        let e = EntityKey::new("bp", "e1");
        assert_eq!(guard.admit(&e, at(10)), Admission::Fresh);
        assert_eq!(guard.admit(&e, at(10)), Admission::Fresh, "a redelivery");
        assert_eq!(guard.admit(&e, at(5)), Admission::Stale { newest: at(10) });
        assert_eq!(guard.admit(&e, at(11)), Admission::Fresh);
        assert_eq!(guard.admit(&e, at(10)), Admission::Stale { newest: at(11) });
        // Other entities and blueprints are independent.
        assert_eq!(
            guard.admit(&EntityKey::new("bp", "e2"), at(1)),
            Admission::Fresh
        );
        assert_eq!(
            guard.admit(&EntityKey::new("bp2", "e1"), at(1)),
            Admission::Fresh
        );
    }

    #[test]
    fn memory_is_bounded_and_keeps_the_newest() {
        let mut guard = VersionGuard::new(10);
        for i in 0..1000 {
            guard.admit(&EntityKey::new("bp", format!("e{i}")), at(i));
            assert!(guard.len() <= 10);
        }
        // The most recent entity is still guarded.
        let last = EntityKey::new("bp", "e999");
        assert_eq!(
            guard.admit(&last, at(1)),
            Admission::Stale { newest: at(999) }
        );
        assert!(guard.forgotten() >= 990);
    }

    #[test]
    fn equal_timestamps_do_not_defeat_the_bound() {
        let mut guard = VersionGuard::new(10);
        for i in 0..100 {
            guard.admit(&EntityKey::new("bp", format!("e{i}")), at(7));
            assert!(guard.len() <= 10);
        }
    }

    /// The regression guard of memory that does not grow with the organization: twice as
    /// many distinct entities as the guard keeps (as a resync of a large organization sends),
    /// with long identifiers, and the guard's table is the one it started with, within
    /// [`GUARD_BYTES`]: allocated once, never grown or rebuilt.
    #[test]
    fn twice_the_capacity_of_entities_stays_within_the_byte_limit() {
        let mut guard = VersionGuard::new(DEFAULT_GUARD_CAPACITY);
        let allocated = guard.bytes();
        assert!(
            allocated <= GUARD_BYTES,
            "{allocated} bytes > {GUARD_BYTES}"
        );
        for i in 0..2 * DEFAULT_GUARD_CAPACITY as i64 {
            let key = EntityKey {
                blueprint: BlueprintId::new("azureDevopsRepository"),
                identifier: EntityId::new(format!(
                    "a-rather-long-project-name-{}/a-rather-long-repository-name-{i}",
                    i / 100
                )),
                part: "repository#0".into(),
            };
            guard.admit(&key, at(i));
            assert!(guard.len() <= DEFAULT_GUARD_CAPACITY);
            assert_eq!(guard.bytes(), allocated, "the table changed at entity {i}");
        }
        assert!(guard.forgotten() >= DEFAULT_GUARD_CAPACITY as u64);
    }

    #[test]
    fn observations_keep_their_nanoseconds() {
        let mut guard = VersionGuard::new(10);
        let e = EntityKey::new("bp", "e1");
        let later = at(10) + TimeDelta::nanoseconds(1);
        assert_eq!(guard.admit(&e, later), Admission::Fresh);
        assert_eq!(guard.admit(&e, at(10)), Admission::Stale { newest: later });
        assert_eq!(guard.newest(&e), Some(later));
    }
}
