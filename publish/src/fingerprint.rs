//! Fingerprints of entity keys: what publish remembers about many entities instead of their
//! identifiers, so that each one costs a fixed few bytes however long its blueprint and
//! identifier are.
//!
//! - [`KeySet`]: a set of 64-bit fingerprints (the reconciliation's produced set and relation
//!   targets), 8 bytes a key in one vector (1 MiB for 80,000 keys inserted once each). A
//!   collision makes an entity look produced when it was not: it is kept rather than deleted,
//!   the safe side, and only for this resync (each set has its own random keys). With a million
//!   keys the chance that any given stale entity collides is about 5 · 10⁻¹⁴.
//! - [`Fingerprinter::wide`]: a 128-bit fingerprint for the version guard, where a collision
//!   would drop a change, so its chance must be negligible (about 10⁻²⁸ for a million keys).
//! - [`table_bytes`]: what a hash table of fingerprints takes (the version guard's byte bound).
//!
//! Fingerprints are process-local (random keys per set or guard): nothing stores them.

use std::hash::{BuildHasher, RandomState};

/// Bytes one slot of a `HashSet`/`HashMap` of `entry` bytes takes (the entry and its control
/// byte), for the byte accounting of the version guard's table.
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

/// Fingerprints a [`KeySet`] makes room for at its first insert (then it doubles).
const FIRST_CAPACITY: usize = 64;

/// A set of keys, held as 64-bit fingerprints (see the module documentation) in one vector.
///
/// Keys are inserted while a resync runs and looked up only once it is reconciled, after the
/// last insert, so the set is built for that order: an insert appends its fingerprint; when the
/// vector is full it is compacted in place (sorted, duplicates dropped), and its capacity
/// doubles only if it is then more than three quarters full, so a key inserted again costs no
/// room for long: with the default mapping each repository is produced three times (its own
/// resource and the two policy resources), and 80,000 of them stay in 131,072 fingerprints. [`KeySet::compact`] before the lookups makes each a binary search and [`KeySet::len`]
/// the number of distinct keys.
///
/// There is never a second table: compacting allocates nothing (`sort_unstable` and `dedup`
/// work in place; a merge, [`KeySet::compact`], uses the vector's spare capacity), and doubling
/// reallocates the one vector. In the processes, whose malloc maps blocks of 128 KiB and more
/// on their own (the cli's allocator settings), glibc grows such a block with `mremap`, which
/// moves its pages instead of copying them, from 32,768 keys on; below, the copy is at most
/// 128 KiB.
#[derive(Debug, Default)]
pub struct KeySet {
    /// The first `compacted` are sorted and distinct; the rest are as inserted since.
    fingerprints: Vec<u64>,
    compacted: usize,
    hasher: Fingerprinter,
}

impl KeySet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, parts: &[&str]) {
        if self.fingerprints.len() == self.fingerprints.capacity() {
            self.make_room();
        }
        self.fingerprints.push(self.hasher.narrow(parts));
    }

    /// Makes room for one more fingerprint in the full vector: compacts it, and doubles its
    /// capacity only if it is still more than three quarters full (so a compaction frees at
    /// least a quarter of it, and the sorting costs amortized O(log n) per insert).
    fn make_room(&mut self) {
        self.compact();
        let (held, capacity) = (self.fingerprints.len(), self.fingerprints.capacity());
        if capacity == 0 || held > capacity / 4 * 3 {
            let doubled = (capacity * 2).max(FIRST_CAPACITY);
            self.fingerprints.reserve_exact(doubled - held);
        }
    }

    /// Sorts the fingerprints and drops the duplicates, in place: afterwards [`KeySet::len`] is
    /// the number of distinct keys and [`KeySet::contains`] a binary search.
    ///
    /// When the vector has room for a copy of the fingerprints inserted since the last
    /// compaction (it does, unless it is full), only those are sorted, and merged into the
    /// sorted ones from the back: O(n + k log n) for k new fingerprints instead of a sort of all
    /// n, so compacting a large set after a few inserts (as the coordinator does near its bound)
    /// costs a pass over it. Otherwise the whole vector is sorted. Neither allocates.
    pub fn compact(&mut self) {
        let sorted = self.compacted;
        if sorted == self.fingerprints.len() {
            return;
        }
        let spare = self.fingerprints.capacity() - self.fingerprints.len();
        if sorted == 0 || spare < self.fingerprints.len() - sorted {
            self.fingerprints.sort_unstable();
            self.fingerprints.dedup();
        } else {
            self.merge_new_into_sorted(sorted);
        }
        self.compacted = self.fingerprints.len();
    }

    /// [`KeySet::compact`] when the first `sorted` fingerprints are sorted and distinct and the
    /// spare capacity holds the rest: keeps the new ones that are neither repeated nor among
    /// the sorted, then merges them in.
    fn merge_new_into_sorted(&mut self, sorted: usize) {
        let (old, new) = self.fingerprints.split_at_mut(sorted);
        new.sort_unstable();
        let mut kept = 0;
        for index in 0..new.len() {
            let fingerprint = new[index];
            let repeated = kept > 0 && new[kept - 1] == fingerprint;
            if !repeated && old.binary_search(&fingerprint).is_err() {
                new[kept] = fingerprint;
                kept += 1;
            }
        }
        self.fingerprints.truncate(sorted + kept);
        if kept == 0 {
            return;
        }
        // [old | new | copy of new], within the capacity; then fill [old | new] from its end
        // with the larger of the last unmerged old and copied new fingerprints. Each write lands
        // at `old_left + new_left - 1`, never below the last old fingerprint still to be read.
        self.fingerprints.extend_from_within(sorted..);
        let (mut old_left, mut new_left) = (sorted, kept);
        for write in (0..sorted + kept).rev() {
            let from_old = new_left == 0
                || (old_left > 0
                    && self.fingerprints[old_left - 1]
                        > self.fingerprints[sorted + kept + new_left - 1]);
            self.fingerprints[write] = if from_old {
                old_left -= 1;
                self.fingerprints[old_left]
            } else {
                new_left -= 1;
                self.fingerprints[sorted + kept + new_left]
            };
            if new_left == 0 {
                break;
            }
        }
        self.fingerprints.truncate(sorted + kept);
    }

    /// Fingerprints inserted since the last compaction: at most this many could be repeats
    /// that [`KeySet::compact`] would drop.
    pub fn uncompacted(&self) -> usize {
        self.fingerprints.len() - self.compacted
    }

    /// Whether `parts` was inserted (or, rarely, collides with a key that was): a binary search
    /// of the compacted fingerprints, and a scan of those inserted since (none after
    /// [`KeySet::compact`]).
    pub fn contains(&self, parts: &[&str]) -> bool {
        let fingerprint = self.hasher.narrow(parts);
        let (compacted, since) = self.fingerprints.split_at(self.compacted);
        compacted.binary_search(&fingerprint).is_ok() || since.contains(&fingerprint)
    }

    /// Fingerprints held: the number of distinct keys once compacted; until then a key inserted
    /// again may count more than once.
    pub fn len(&self) -> usize {
        self.fingerprints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fingerprints.is_empty()
    }

    /// Bytes the set's vector takes: its capacity, not its length (what the allocator holds).
    pub fn bytes(&self) -> usize {
        self.fingerprints.capacity() * std::mem::size_of::<u64>()
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

    fn repository(i: usize) -> String {
        format!("a-rather-long-project-name-{i}/a-rather-long-repository-name")
    }

    #[test]
    fn a_key_set_holds_eight_bytes_a_key_and_80_000_keys_in_1_mib() {
        let mut set = repositories_inserted(1, 80_000);
        set.compact();
        assert_eq!(set.len(), 80_000);
        assert!(set.contains(&["azureDevopsRepository", &repository(0)]));
        assert!(set.contains(&["azureDevopsRepository", &repository(79_999)]));
        assert!(!set.contains(&["azureDevopsRepository", &repository(80_000)]));
        assert!(!set.contains(&["azureDevopsProject", &repository(7)]));
        // 131,072 fingerprints of 8 bytes, whatever the identifiers' length (a hash set of them
        // took 9 bytes a slot, and both its tables while it grew: 1.8 MB).
        assert_eq!(set.bytes(), 131_072 * 8);
        assert!(set.bytes() <= 1 << 20);
    }

    /// A key set of `keys` repositories, each inserted `rounds` times (all, then all again).
    fn repositories_inserted(rounds: usize, keys: usize) -> KeySet {
        let mut set = KeySet::new();
        for _ in 0..rounds {
            for i in 0..keys {
                set.insert(&["azureDevopsRepository", &repository(i)]);
            }
        }
        set
    }

    /// The default mapping's repositories: each produced by its own resource, then by each of
    /// the two policy resources.
    #[test]
    fn keys_produced_by_three_resources_take_the_room_of_one() {
        let mut set = repositories_inserted(3, 80_000);
        assert_eq!(set.bytes(), 131_072 * 8);
        set.compact();
        assert_eq!(set.len(), 80_000);
    }

    #[test]
    fn keys_inserted_again_do_not_grow_it_nor_count_twice() {
        let mut set = repositories_inserted(50, 1_000);
        // Fifty times 1,000 keys: the smallest doubling that 1,000 keys fill at most three
        // quarters of (kept without compaction, the 50,000 would take 65,536).
        assert_eq!(set.bytes(), 2_048 * 8);
        set.compact();
        assert_eq!(set.len(), 1_000);
        assert_eq!(
            set.bytes(),
            2_048 * 8,
            "compacting neither grows nor moves it"
        );
        assert!((0..1_000).all(|i| set.contains(&["azureDevopsRepository", &repository(i)])));
        assert!(!(1_000..2_000).any(|i| set.contains(&["azureDevopsRepository", &repository(i)])));
    }

    /// Inserts `repository(i)` for each `i` into `set`, and its fingerprint into `expected`.
    fn insert_repositories(
        set: &mut KeySet,
        expected: &mut std::collections::BTreeSet<u64>,
        indices: impl Iterator<Item = usize>,
    ) {
        for i in indices {
            set.insert(&[&repository(i)]);
            expected.insert(set.hasher.narrow(&[&repository(i)]));
        }
    }

    /// The fingerprints of a compacted set are those of a `BTreeSet`, in its order.
    fn assert_compacted_as(set: &KeySet, expected: &std::collections::BTreeSet<u64>) {
        assert_eq!(set.compacted, set.fingerprints.len());
        assert!(set.fingerprints.iter().eq(expected.iter()));
    }

    #[test]
    fn a_few_keys_inserted_after_compaction_are_merged_in_without_moving_the_vector() {
        let mut set = KeySet::new();
        let mut expected = std::collections::BTreeSet::new();
        insert_repositories(&mut set, &mut expected, 0..5_000);
        set.compact();
        assert_compacted_as(&set, &expected);
        // Rounds of a few keys: some held already, some repeated within the round, some new,
        // spread over the whole range so that merging moves most of the vector.
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        for round in 0..200 {
            let (capacity, start) = (set.fingerprints.capacity(), set.fingerprints.as_ptr());
            for _ in 0..round % 17 + 1 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let key = repository((state % 7_000) as usize);
                for _ in 0..(state % 3) + 1 {
                    set.insert(&[&key]);
                }
                expected.insert(set.hasher.narrow(&[&key]));
            }
            assert!(set.uncompacted() > 0);
            set.compact();
            assert_compacted_as(&set, &expected);
            assert_eq!(set.uncompacted(), 0);
            assert_eq!(
                (set.fingerprints.capacity(), set.fingerprints.as_ptr()),
                (capacity, start),
                "merged in place, round {round}"
            );
        }
        assert!((0..7_000).all(|i| set.contains(&[&repository(i)])
            == expected.contains(&set.hasher.narrow(&[&repository(i)]))));
    }

    #[test]
    fn a_full_vector_is_compacted_by_sorting_it_whole() {
        let mut set = KeySet::new();
        let mut expected = std::collections::BTreeSet::new();
        insert_repositories(&mut set, &mut expected, 0..40);
        set.compact();
        // Fill the rest of the 64 with repeats and new keys: no spare room for a copy of them.
        insert_repositories(&mut set, &mut expected, 20..44);
        assert_eq!(set.fingerprints.len(), set.fingerprints.capacity());
        set.compact();
        assert_compacted_as(&set, &expected);
        assert_eq!(set.len(), 44);
    }

    #[test]
    fn keys_inserted_since_the_last_compaction_are_found_too() {
        let mut set = KeySet::new();
        for i in 0..100 {
            set.insert(&[&repository(i)]);
            set.insert(&[&repository(i)]);
        }
        // Duplicates are held: the last inserts came after the last compaction, and are found
        // by the scan after the sorted fingerprints.
        assert!(set.len() > 100);
        assert!((0..100).all(|i| set.contains(&[&repository(i)])));
        assert!(!set.contains(&[&repository(100)]));
        set.compact();
        assert_eq!(set.len(), 100);
        assert!((0..100).all(|i| set.contains(&[&repository(i)])));
    }
}
