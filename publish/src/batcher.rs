//! Batching of entity writes into bulk requests, and of a resync's upserts into check groups.
//!
//! Entities that share a [`BatchKey`] (blueprint and every query parameter of the bulk request)
//! are grouped; a batch closes when it holds `max_entities` entities, when one more would push
//! its JSON body over `max_bytes`, or `linger` after its first entity. A write batch is one bulk
//! request ([`MAX_BATCH_ENTITIES`], [`MAX_BATCH_BYTES`]); a check group is the upserts whose
//! current state in Port one read fetches ([`BatchLimits::check`]), written afterwards in write
//! batches ([`split_into_batches`]). The batcher only groups; it never sends, and it owns no
//! timer: the worker sleeps until [`Batcher::next_deadline`] and then calls
//! [`Batcher::take_expired`]. The worker may also close one batch before its linger
//! ([`Batcher::take`]): a live write batch goes at once when no request of its key is in flight.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use adoport_shared::messages::ResyncId;
use adoport_shared::port::BlueprintId;
use tokio::time::Instant;

/// Port's bulk endpoint takes 1 to 20 entities.
pub const MAX_BATCH_ENTITIES: usize = 20;
/// Port answers 413 to bodies over 1 MiB.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Upserts per check group: as many as one read of Port's current state names.
pub const MAX_CHECK_ENTITIES: usize = crate::client::MAX_READ_IDENTIFIERS;
/// Bound on a check group's entities' JSON: about the size of Port's answer to its read too.
pub const MAX_CHECK_BYTES: usize = 4 * MAX_BATCH_BYTES;
/// Least time a check group waits for more upserts after its first. A resync is not waiting
/// for any one entity, and fuller groups mean fewer reads (Azure DevOps answers pages tens to
/// hundreds of milliseconds apart). When every partition holds its prefetch and nothing is
/// being sent, the worker closes the groups at once, so this never stalls intake.
pub const MIN_CHECK_LINGER: Duration = Duration::from_millis(250);
/// `{"entities":[` + `]}`.
const BODY_OVERHEAD: usize = r#"{"entities":[]}"#.len();

/// What entities in one bulk request must share: the URL and its query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchKey {
    pub blueprint: BlueprintId,
    pub merge: bool,
    pub create_missing_related_entities: bool,
    /// `ocean_info_event_type`.
    pub event_type: &'static str,
    /// `ocean_info_resync_id`.
    pub resync_id: Option<ResyncId>,
    /// GitOps entities are written with the GitOps User-Agent, so never in a batch with
    /// exporter entities.
    pub gitops: bool,
}

impl BatchKey {
    /// A resync's upserts are compared with Port's current state before they are written (in
    /// check groups); live upserts are changes by nature and are written at once.
    pub fn reads_port_first(&self) -> bool {
        self.resync_id.is_some()
    }
}

/// When a batch closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_entities: usize,
    /// Bound on the serialised body `{"entities":[…]}`.
    pub max_bytes: usize,
    /// How long a batch waits for more entities after its first.
    pub linger: Duration,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_entities: MAX_BATCH_ENTITIES,
            max_bytes: MAX_BATCH_BYTES,
            linger: Duration::from_millis(50),
        }
    }
}

impl BatchLimits {
    /// The limits of a check group, for write batches that linger `write_linger`.
    pub fn check(write_linger: Duration) -> Self {
        Self {
            max_entities: MAX_CHECK_ENTITIES,
            max_bytes: MAX_CHECK_BYTES,
            linger: write_linger.max(MIN_CHECK_LINGER),
        }
    }
}

/// A closed batch, ready to send.
#[derive(Debug)]
pub struct Batch<K, T> {
    pub key: K,
    pub items: Vec<T>,
}

/// An item too large to be sent even alone.
#[derive(Debug)]
pub struct TooLarge<T> {
    pub item: T,
    /// Its body size alone, in bytes.
    pub body_bytes: usize,
}

struct Open<T> {
    items: Vec<(T, usize)>,
    body_bytes: usize,
    deadline: Instant,
}

/// Open batches by key. Bounded by its caller: every item is a held delivery.
pub struct Batcher<K, T> {
    limits: BatchLimits,
    open: HashMap<K, Open<T>>,
}

/// The body size of `n` entities whose JSON sizes add up to `sum`.
pub fn body_size(n: usize, sum: usize) -> usize {
    BODY_OVERHEAD + sum + n.saturating_sub(1)
}

impl<K: Hash + Eq + Clone, T> Batcher<K, T> {
    pub fn new(limits: BatchLimits) -> Self {
        Self {
            limits: BatchLimits {
                max_entities: limits.max_entities.max(1),
                ..limits
            },
            open: HashMap::new(),
        }
    }

    pub fn limits(&self) -> BatchLimits {
        self.limits
    }

    /// Adds an item whose JSON is `json_bytes` long. Returns the batches this closed (a full
    /// batch, or the one it did not fit in), or the item back if it cannot fit any body.
    pub fn push(
        &mut self,
        key: K,
        item: T,
        json_bytes: usize,
    ) -> Result<Vec<Batch<K, T>>, TooLarge<T>> {
        let alone = body_size(1, json_bytes);
        if alone > self.limits.max_bytes {
            return Err(TooLarge {
                item,
                body_bytes: alone,
            });
        }
        let mut closed = Vec::new();
        let fits = self.open.get(&key).is_none_or(|open| {
            open.body_bytes + 1 + json_bytes <= self.limits.max_bytes
                && open.items.len() < self.limits.max_entities
        });
        if !fits && let Some(open) = self.open.remove(&key) {
            closed.push(Batch {
                key: key.clone(),
                items: open.items.into_iter().map(|(item, _)| item).collect(),
            });
        }
        let linger = self.limits.linger;
        let open = self.open.entry(key.clone()).or_insert_with(|| Open {
            items: Vec::new(),
            body_bytes: BODY_OVERHEAD - 1,
            deadline: Instant::now() + linger,
        });
        open.items.push((item, json_bytes));
        // The first entity adds no comma: BODY_OVERHEAD - 1 above pays for it.
        open.body_bytes += json_bytes + 1;
        if open.items.len() >= self.limits.max_entities
            && let Some(full) = self.open.remove(&key)
        {
            closed.push(Batch {
                key,
                items: full.items.into_iter().map(|(item, _)| item).collect(),
            });
        }
        Ok(closed)
    }

    /// Takes the first item of the open batch `key` that matches, e.g. an entity superseded by
    /// a newer change.
    pub fn remove(&mut self, key: &K, matches: impl Fn(&T) -> bool) -> Option<T> {
        let open = self.open.get_mut(key)?;
        let index = open.items.iter().position(|(item, _)| matches(item))?;
        let (item, bytes) = open.items.remove(index);
        open.body_bytes -= bytes + 1;
        if open.items.is_empty() {
            self.open.remove(key);
        }
        Some(item)
    }

    /// When the oldest open batch is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.open.values().map(|open| open.deadline).min()
    }

    /// Closes every batch whose linger ran out by `now`.
    pub fn take_expired(&mut self, now: Instant) -> Vec<Batch<K, T>> {
        let due: Vec<K> = self
            .open
            .iter()
            .filter(|(_, open)| open.deadline <= now)
            .map(|(key, _)| key.clone())
            .collect();
        due.into_iter().filter_map(|key| self.close(key)).collect()
    }

    /// Closes the open batch of `key`, whatever its linger.
    pub fn take(&mut self, key: &K) -> Option<Batch<K, T>> {
        self.close(key.clone())
    }

    /// Closes every open batch (shutdown).
    pub fn drain(&mut self) -> Vec<Batch<K, T>> {
        let keys: Vec<K> = self.open.keys().cloned().collect();
        keys.into_iter().filter_map(|key| self.close(key)).collect()
    }

    fn close(&mut self, key: K) -> Option<Batch<K, T>> {
        let open = self.open.remove(&key)?;
        Some(Batch {
            key,
            items: open.items.into_iter().map(|(item, _)| item).collect(),
        })
    }

    /// Items in open batches.
    pub fn len(&self) -> usize {
        self.open.values().map(|open| open.items.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

/// Splits `items` (each with its JSON size), in order, into batches within `limits`' entity
/// and byte bounds. An item too large for any body gets a batch of its own: Port has the last
/// word on it.
pub fn split_into_batches<T>(
    limits: BatchLimits,
    items: impl IntoIterator<Item = (T, usize)>,
) -> Vec<Vec<T>> {
    let mut batcher = Batcher::new(limits);
    let mut batches = Vec::new();
    for (item, json_bytes) in items {
        match batcher.push((), item, json_bytes) {
            Ok(closed) => batches.extend(closed.into_iter().map(|b| b.items)),
            Err(too_large) => batches.push(vec![too_large.item]),
        }
    }
    batches.extend(batcher.drain().into_iter().map(|b| b.items));
    batches
}

/// Splits a batch Port refused as too large (413) into two halves to send separately.
pub fn split_in_halves<T>(mut items: Vec<T>) -> (Vec<T>, Vec<T>) {
    let second = items.split_off(items.len() / 2);
    (items, second)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_entities: usize, max_bytes: usize, linger_ms: u64) -> BatchLimits {
        BatchLimits {
            max_entities,
            max_bytes,
            linger: Duration::from_millis(linger_ms),
        }
    }

    fn ids<K>(batch: &Batch<K, u32>) -> Vec<u32> {
        batch.items.clone()
    }

    #[tokio::test(start_paused = true)]
    async fn closes_on_count() {
        let mut b: Batcher<&str, u32> = Batcher::new(limits(20, MAX_BATCH_BYTES, 50));
        let mut closed = Vec::new();
        for i in 0..45 {
            closed.extend(b.push("bp", i, 10).expect("fits"));
        }
        assert_eq!(closed.len(), 2);
        assert_eq!(ids(&closed[0]), (0..20).collect::<Vec<_>>());
        assert_eq!(ids(&closed[1]), (20..40).collect::<Vec<_>>());
        assert_eq!(b.len(), 5);
        // The rest waits for the linger.
        assert!(b.take_expired(Instant::now()).is_empty());
        tokio::time::advance(Duration::from_millis(49)).await;
        assert!(b.take_expired(Instant::now()).is_empty());
        tokio::time::advance(Duration::from_millis(1)).await;
        let rest = b.take_expired(Instant::now());
        assert_eq!(rest.len(), 1);
        assert_eq!(ids(&rest[0]), (40..45).collect::<Vec<_>>());
        assert!(b.is_empty());
        assert_eq!(b.next_deadline(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn linger_runs_from_the_first_entity() {
        let mut b: Batcher<&str, u32> = Batcher::new(limits(20, MAX_BATCH_BYTES, 50));
        let start = Instant::now();
        assert!(b.push("bp", 1, 10).expect("fits").is_empty());
        tokio::time::advance(Duration::from_millis(30)).await;
        assert!(b.push("bp", 2, 10).expect("fits").is_empty());
        assert_eq!(b.next_deadline(), Some(start + Duration::from_millis(50)));
        tokio::time::advance(Duration::from_millis(20)).await;
        let due = b.take_expired(Instant::now());
        assert_eq!(ids(&due[0]), vec![1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn keys_batch_separately() {
        let mut b: Batcher<&str, u32> = Batcher::new(limits(2, MAX_BATCH_BYTES, 50));
        assert!(b.push("a", 1, 10).expect("fits").is_empty());
        assert!(b.push("b", 2, 10).expect("fits").is_empty());
        let closed = b.push("a", 3, 10).expect("fits");
        assert_eq!(closed.len(), 1);
        assert_eq!((closed[0].key, ids(&closed[0])), ("a", vec![1, 3]));
        let rest = b.drain();
        assert_eq!((rest[0].key, ids(&rest[0])), ("b", vec![2]));
    }

    #[tokio::test(start_paused = true)]
    async fn closes_on_bytes_exactly_at_the_limit() {
        // Body of n items of 10 bytes: 15 + 10n + (n - 1). Three fit in 47, four need 58.
        let mut b: Batcher<&str, u32> = Batcher::new(limits(20, 47, 50));
        for i in 0..3 {
            assert!(b.push("bp", i, 10).expect("fits").is_empty(), "item {i}");
        }
        let closed = b.push("bp", 3, 10).expect("fits");
        assert_eq!(ids(&closed[0]), vec![0, 1, 2]);
        assert_eq!(b.len(), 1);
        // Exactly the limit alone fits; one byte more does not.
        let mut b: Batcher<&str, u32> = Batcher::new(limits(20, 47, 50));
        assert!(b.push("bp", 0, 47 - 15).is_ok());
        let too_large = b.push("bp", 1, 47 - 14).expect_err("too large");
        assert_eq!((too_large.item, too_large.body_bytes), (1, 48));
    }

    #[tokio::test(start_paused = true)]
    async fn real_bodies_respect_the_byte_limit() {
        // The accounting matches serde_json's output.
        let entities: Vec<serde_json::Value> = (0..7)
            .map(|i| serde_json::json!({"identifier": format!("e{i}"), "properties": {"x": "y".repeat(i * 3)}}))
            .collect();
        let sizes: Vec<usize> = entities
            .iter()
            .map(|e| serde_json::to_vec(e).expect("json").len())
            .collect();
        let body = serde_json::to_vec(&serde_json::json!({ "entities": entities })).expect("json");
        assert_eq!(body.len(), body_size(sizes.len(), sizes.iter().sum()));
        let limit = body.len() - 1;
        let mut b: Batcher<&str, usize> = Batcher::new(limits(20, limit, 50));
        let mut closed = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            closed.extend(b.push("bp", i, *size).expect("fits"));
        }
        closed.extend(b.drain());
        assert_eq!(closed.len(), 2, "one byte over the limit splits the batch");
        for batch in &closed {
            let part: Vec<&serde_json::Value> = batch.items.iter().map(|i| &entities[*i]).collect();
            let len = serde_json::to_vec(&serde_json::json!({ "entities": part }))
                .expect("json")
                .len();
            assert!(len <= limit, "{len} > {limit}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn take_closes_one_key_before_its_linger() {
        let mut b: Batcher<&str, u32> = Batcher::new(limits(20, MAX_BATCH_BYTES, 50));
        b.push("a", 1, 10).expect("fits");
        b.push("a", 2, 10).expect("fits");
        b.push("b", 3, 10).expect("fits");
        let taken = b.take(&"a").expect("a is open");
        assert_eq!((taken.key, ids(&taken)), ("a", vec![1, 2]));
        assert!(b.take(&"a").is_none());
        assert_eq!(b.len(), 1, "b still lingers");
    }

    #[tokio::test(start_paused = true)]
    async fn remove_takes_an_item_out_of_its_batch() {
        let mut b: Batcher<&str, u32> = Batcher::new(limits(3, MAX_BATCH_BYTES, 50));
        b.push("bp", 1, 10).expect("fits");
        b.push("bp", 2, 10).expect("fits");
        assert_eq!(b.remove(&"bp", |i| *i == 1), Some(1));
        assert_eq!(b.remove(&"bp", |i| *i == 9), None);
        b.push("bp", 3, 10).expect("fits");
        let closed = b.push("bp", 4, 10).expect("fits");
        assert_eq!(ids(&closed[0]), vec![2, 3, 4]);
        assert_eq!(b.remove(&"bp", |_| true), None);
    }

    #[tokio::test(start_paused = true)]
    async fn splits_into_batches_within_count_and_bytes_in_order() {
        let items = (0..45u32).map(|i| (i, 10));
        let batches = split_into_batches(limits(20, MAX_BATCH_BYTES, 50), items);
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![20, 20, 5]);
        assert_eq!(batches.concat(), (0..45).collect::<Vec<_>>());
        // Body of n items of 10 bytes: 15 + 10n + (n - 1); 47 bytes hold three. An item too
        // large alone still gets its own batch.
        let items = [(0u32, 10), (1, 10), (2, 10), (3, 10), (4, 100), (5, 10)];
        let batches = split_into_batches(limits(20, 47, 50), items);
        assert_eq!(batches, vec![vec![0, 1, 2], vec![4], vec![3, 5]]);
        assert!(split_into_batches(limits(20, 47, 50), Vec::<(u32, usize)>::new()).is_empty());
    }

    #[test]
    fn check_groups_read_a_hundred_and_linger_longer() {
        let check = BatchLimits::check(Duration::from_millis(50));
        assert_eq!(check.max_entities, 100);
        assert_eq!(check.linger, MIN_CHECK_LINGER);
        assert_eq!(
            BatchLimits::check(Duration::from_secs(2)).linger,
            Duration::from_secs(2)
        );
    }

    #[test]
    fn halves() {
        let (a, b) = split_in_halves((0..5).collect::<Vec<u32>>());
        assert_eq!((a, b), (vec![0, 1], vec![2, 3, 4]));
    }
}
