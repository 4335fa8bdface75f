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
//! Memory is bounded: past `capacity` entities the guard forgets the half with the oldest
//! observations. The trade-off: a stale change for a forgotten entity is applied again. That
//! takes a change older than that entity's last one arriving after the guard has seen
//! `capacity / 2` newer entity versions; the per-partition queue order (one entity = one
//! partition, in publish order) already rules out the common case, so the guard only has to
//! cover redeliveries and replays that arrive close together.

use std::collections::HashMap;

use adoport_shared::port::{BlueprintId, EntityId};
use chrono::{DateTime, Utc};

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

/// Entities the guard remembers by default (a few tens of MB at most).
pub const DEFAULT_GUARD_CAPACITY: usize = 200_000;

/// The guard's verdict on a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Newer than (or as new as) anything seen: send it.
    Fresh,
    /// Older than a change already admitted (observed at `newest`): drop it.
    Stale { newest: DateTime<Utc> },
}

/// Newest admitted observation per entity, bounded.
#[derive(Debug)]
pub struct VersionGuard {
    newest: HashMap<EntityKey, DateTime<Utc>>,
    capacity: usize,
    forgotten: u64,
}

impl VersionGuard {
    pub fn new(capacity: usize) -> Self {
        Self {
            newest: HashMap::new(),
            capacity: capacity.max(2),
            forgotten: 0,
        }
    }

    /// Decides on a change and, if it is fresh, remembers it as the entity's newest.
    pub fn admit(&mut self, key: &EntityKey, observed_at: DateTime<Utc>) -> Admission {
        if let Some(newest) = self.newest.get_mut(key) {
            if observed_at < *newest {
                return Admission::Stale { newest: *newest };
            }
            *newest = observed_at;
            return Admission::Fresh;
        }
        if self.newest.len() >= self.capacity {
            self.forget_oldest_half();
        }
        self.newest.insert(key.clone(), observed_at);
        Admission::Fresh
    }

    /// The newest admitted observation of an entity, if remembered.
    pub fn newest(&self, key: &EntityKey) -> Option<DateTime<Utc>> {
        self.newest.get(key).copied()
    }

    pub fn len(&self) -> usize {
        self.newest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.newest.is_empty()
    }

    /// Entities forgotten to stay within capacity, since start.
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }

    fn forget_oldest_half(&mut self) {
        let mut times: Vec<DateTime<Utc>> = self.newest.values().copied().collect();
        let middle = times.len() / 2;
        let (_, median, _) = times.select_nth_unstable(middle);
        let median = *median;
        let before = self.newest.len();
        self.newest.retain(|_, at| *at > median);
        // Many equal timestamps (one resync page) could keep everything: then drop them too.
        if self.newest.len() >= self.capacity {
            self.newest.clear();
        }
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
}
