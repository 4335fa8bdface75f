//! The accepted-version cache: a hash of the last entity body Port accepted from this process,
//! per entity, so that an identical upsert (a resync of an unchanged organization) is acked
//! without a request.
//!
//! Only what Port *accepted* is remembered; a delete or a rejection forgets the entity. The
//! worker consults the cache only when no other write of the entity is batched, parked or in
//! flight, so a skipped change can never leave an older body in Port.
//!
//! Bounded: past `capacity` entities the oldest-remembered entries are dropped (a forgotten
//! entity is simply sent again). Shared by the partitions of one process behind a mutex whose
//! critical sections are a map lookup or insert.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use crate::ordering::EntityKey;

/// Entities remembered by default (about 100 bytes each).
pub const DEFAULT_ACCEPTED_CAPACITY: usize = 200_000;

/// The fingerprint of one upsert: its JSON body and the write flags that change its effect.
pub fn fingerprint(body: &[u8], merge: bool, create_missing_related_entities: bool) -> u64 {
    let mut hasher = DefaultHasher::new();
    body.hash(&mut hasher);
    merge.hash(&mut hasher);
    create_missing_related_entities.hash(&mut hasher);
    hasher.finish()
}

#[derive(Debug, Default)]
struct Inner {
    accepted: HashMap<EntityKey, u64>,
    /// Insertion order, for eviction (may hold keys already forgotten or re-inserted).
    order: VecDeque<EntityKey>,
}

/// Last accepted fingerprint per entity, bounded.
#[derive(Debug)]
pub struct AcceptedCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl AcceptedCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every critical section is one map operation: a poisoned lock holds consistent data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether Port's last accepted version of `key` from us has this fingerprint.
    pub fn is_unchanged(&self, key: &EntityKey, fingerprint: u64) -> bool {
        self.lock().accepted.get(key) == Some(&fingerprint)
    }

    /// Port accepted this version.
    pub fn accepted(&self, key: &EntityKey, fingerprint: u64) {
        let mut inner = self.lock();
        if inner.accepted.insert(key.clone(), fingerprint).is_none() {
            inner.order.push_back(key.clone());
        }
        while inner.accepted.len() > self.capacity {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            inner.accepted.remove(&oldest);
        }
        // Keep the order queue from growing without bound through forget/re-insert cycles.
        if inner.order.len() > self.capacity.saturating_mul(2) {
            let Inner { accepted, order } = &mut *inner;
            order.retain(|k| accepted.contains_key(k));
        }
    }

    /// The entity was deleted, rejected, or is in an unknown state: send it next time.
    pub fn forget(&self, key: &EntityKey) {
        self.lock().accepted.remove(key);
    }

    pub fn len(&self) -> usize {
        self.lock().accepted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_accepted_versions_and_forgets_on_request() {
        let cache = AcceptedCache::new(10);
        let key = EntityKey::new("bp", "a");
        let v1 = fingerprint(br#"{"identifier":"a","title":"1"}"#, true, true);
        let v2 = fingerprint(br#"{"identifier":"a","title":"2"}"#, true, true);
        assert!(!cache.is_unchanged(&key, v1));
        cache.accepted(&key, v1);
        assert!(cache.is_unchanged(&key, v1));
        assert!(!cache.is_unchanged(&key, v2));
        // The flags are part of the version.
        assert!(!cache.is_unchanged(
            &key,
            fingerprint(br#"{"identifier":"a","title":"1"}"#, false, true)
        ));
        cache.forget(&key);
        assert!(!cache.is_unchanged(&key, v1));
    }

    #[test]
    fn stays_within_capacity() {
        let cache = AcceptedCache::new(3);
        for i in 0..100 {
            let key = EntityKey::new("bp", format!("e{i}"));
            cache.accepted(&key, i);
            if i % 2 == 0 {
                cache.forget(&key);
            }
        }
        assert!(cache.len() <= 3);
        let newest = EntityKey::new("bp", "e99");
        assert!(cache.is_unchanged(&newest, 99));
        assert!(cache.lock().order.len() <= 6);
    }
}
