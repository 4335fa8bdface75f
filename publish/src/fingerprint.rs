//! Fingerprints of entity keys: what publish remembers about many entities instead of their
//! identifiers, so that each one costs a fixed few bytes however long its blueprint and
//! identifier are.
//!
//! - [`KeySet`]: a set of 64-bit fingerprints (the reconciliation's produced set and relation
//!   targets). A collision makes an entity look produced when it was not: it is kept rather
//!   than deleted, the safe side, and only for this resync (each set has its own random keys).
//!   With a million keys the chance that any given stale entity collides is about 5 · 10⁻¹⁴.
//! - [`Fingerprinter::wide`]: a 128-bit fingerprint for the version guard, where a collision
//!   would drop a change, so its chance must be negligible (about 10⁻²⁸ for a million keys).
//!
//! Fingerprints are process-local (random keys per set or guard): nothing stores them.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

/// Bytes one slot of a `HashSet`/`HashMap` of `entry` bytes takes (the entry and its control
/// byte), for the byte accounting of the structures built on fingerprints.
pub const fn slot_bytes(entry: usize) -> usize {
    entry + 1
}

/// A 128-bit fingerprint ([`Fingerprinter::wide`]).
pub type WideFingerprint = [u64; 2];

/// Hashes keys of string parts with keys of its own.
#[derive(Debug, Clone, Default)]
pub struct Fingerprinter {
    first: RandomState,
    second: RandomState,
}

impl Fingerprinter {
    pub fn new() -> Self {
        Self::default()
    }

    /// 64 bits of `parts` (each part is hashed with its length, so `("ab", "c")` and
    /// `("a", "bc")` differ).
    pub fn narrow(&self, parts: &[&str]) -> u64 {
        self.first.hash_one(parts)
    }

    /// 128 bits of `parts`, from two independently keyed hashes: as two `u64`s, which are
    /// aligned to 8 bytes where a `u128` is aligned to 16 (an entry of the fingerprint and an
    /// `i64` takes 24 bytes, not 32).
    pub fn wide(&self, parts: &[&str]) -> WideFingerprint {
        [self.first.hash_one(parts), self.second.hash_one(parts)]
    }
}

/// A set of keys, held as 64-bit fingerprints (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    fingerprints: HashSet<u64>,
    hasher: Fingerprinter,
}

impl KeySet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, parts: &[&str]) -> bool {
        let fingerprint = self.hasher.narrow(parts);
        self.fingerprints.insert(fingerprint)
    }

    /// Whether `parts` was inserted (or, rarely, collides with a key that was).
    pub fn contains(&self, parts: &[&str]) -> bool {
        self.fingerprints.contains(&self.hasher.narrow(parts))
    }

    pub fn len(&self) -> usize {
        self.fingerprints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fingerprints.is_empty()
    }

    /// Bytes the set's table takes (its capacity, not its length: what the allocator holds).
    pub fn bytes(&self) -> usize {
        table_bytes(self.fingerprints.capacity(), std::mem::size_of::<u64>())
    }
}

/// Bytes of a hash table with room for `capacity` entries of `entry` bytes: hashbrown keeps
/// at most 7/8 of a power-of-two number of slots full.
pub fn table_bytes(capacity: usize, entry: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let slots = if capacity < 8 {
        (capacity + 1).next_power_of_two()
    } else {
        (capacity * 8 / 7).next_power_of_two()
    };
    slots * slot_bytes(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_told_apart_by_their_boundaries() {
        let hasher = Fingerprinter::new();
        assert_ne!(hasher.narrow(&["ab", "c"]), hasher.narrow(&["a", "bc"]));
        assert_ne!(hasher.wide(&["ab", "c"]), hasher.wide(&["a", "bc"]));
        assert_eq!(hasher.wide(&["a", "b"]), hasher.wide(&["a", "b"]));
    }

    #[test]
    fn a_key_set_holds_eight_bytes_and_a_control_byte_per_slot() {
        let mut set = KeySet::new();
        for i in 0..100_000 {
            assert!(set.insert(&["azureDevopsRepository", &format!("project-{i}/repository")]));
        }
        assert!(!set.insert(&["azureDevopsRepository", "project-7/repository"]));
        assert!(set.contains(&["azureDevopsRepository", "project-99999/repository"]));
        assert!(!set.contains(&["azureDevopsRepository", "project-100000/repository"]));
        assert_eq!(set.len(), 100_000);
        // 100,000 keys: 131,072 slots of 9 bytes, whatever the identifiers' length.
        assert_eq!(set.bytes(), 131_072 * 9);
    }
}
