//! What one kind of a resync reads for another kind of the same resync, kept within a byte
//! limit so that sharing a read never means holding the organization: the organization's
//! groups (`group`, `group-member` and the users' `__groups` read one list, [`BoundedList`])
//! and each team's members (`team`'s `includeMembers` and `member` read them once,
//! [`SharedReads`]). Below the kinds and `crate::crawl_context` (whose resync cache holds
//! them); names neither.
//!
//! Both keep JSON text (about a fifth of the parsed items' memory) and count its bytes: past
//! [`SHARED_READ_BYTES`] (or the crawler's own limit) nothing more is kept, and the kind that
//! would have taken it reads it again itself, as before sharing (what the bound costs is that
//! request).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// `item` as the JSON text kept (here and in the resync cache's lists).
pub(crate) fn compact(item: &Value) -> Box<str> {
    item.to_string().into_boxed_str()
}

/// An item kept as its JSON text, parsed: text [`compact`] wrote, or that Azure DevOps sent and
/// serde_json read as one JSON value, always parses back; `Null` otherwise.
pub(crate) fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// Most bytes of JSON text each shared read of a resync keeps: the group list as a whole, and
/// the team members read and not yet taken by every kind that needs them. A graph group is
/// about 1 KB of text (a team member about 0.6 KB), so organizations of up to about 4,000
/// groups list their groups once per resync; a larger list is not kept (it grows with the
/// organization) and each kind lists the groups itself, resolving the groups a membership
/// names with `subjectlookup` as the Python integration does.
pub const SHARED_READ_BYTES: usize = 4 * 1024 * 1024;

/// A list kept whole, with the position of each item by a key of its own (a group's
/// `descriptor`).
#[derive(Debug, Default)]
pub(crate) struct KeptList {
    items: Vec<Box<str>>,
    by_key: HashMap<Box<str>, usize>,
}

impl KeptList {
    #[cfg(test)]
    fn len(&self) -> usize {
        self.items.len()
    }

    /// The items, in order, each parsed as it is reached.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Value> + '_ {
        self.items.iter().map(|text| parse(text))
    }

    /// The item whose key is `key`.
    pub(crate) fn get(&self, key: &str) -> Option<Value> {
        let index = *self.by_key.get(key)?;
        self.items.get(index).map(|text| parse(text))
    }

    /// Whether an item has key `key`.
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.by_key.contains_key(key)
    }
}

/// A [`KeptList`] being read, until it passes its byte limit.
pub(crate) struct KeptListBuilder {
    texts: Vec<Box<str>>,
    by_key: HashMap<Box<str>, usize>,
    bytes: usize,
    limit: usize,
}

impl KeptListBuilder {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            texts: Vec::new(),
            by_key: HashMap::new(),
            bytes: 0,
            limit,
        }
    }

    /// Keeps `item` under `key`; false (and nothing more may be pushed) once the list would
    /// pass the limit.
    pub(crate) fn push(&mut self, key: &str, item: &Value) -> bool {
        let text = compact(item);
        self.bytes += text.len() + key.len() + 2 * std::mem::size_of::<Box<str>>() + 8;
        if self.bytes > self.limit {
            return false;
        }
        self.by_key.insert(key.into(), self.texts.len());
        self.texts.push(text);
        true
    }

    pub(crate) fn finish(self) -> KeptList {
        KeptList {
            items: self.texts,
            by_key: self.by_key,
        }
    }
}

/// What a resync knows of a [`BoundedList`] once it was read.
#[derive(Clone)]
pub(crate) enum ListRead {
    Kept(Arc<KeptList>),
    /// Larger than the limit: each kind reads the list itself.
    TooLarge,
}

/// A list of one resync read once for the kinds that need it, when more than one does
/// (`keep`) and only up to `limit` bytes. Only a complete read is remembered: after a failed
/// one the next kind that needs the list reads it again.
pub(crate) struct BoundedList {
    read: tokio::sync::Mutex<Option<ListRead>>,
    keep: bool,
    limit: usize,
}

impl Default for BoundedList {
    /// Not kept: each kind reads the list itself.
    fn default() -> Self {
        Self::new(false, SHARED_READ_BYTES)
    }
}

impl BoundedList {
    pub(crate) fn new(keep: bool, limit: usize) -> Self {
        Self {
            read: tokio::sync::Mutex::new(None),
            keep,
            limit,
        }
    }

    /// The byte limit a read gives its [`KeptListBuilder`].
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// The list, read with `read` unless a kind read it before (kinds that ask meanwhile wait
    /// for this read); `None` when it is not kept (one kind needs it, or it is too large).
    pub(crate) async fn get_or_read<E, Fut>(
        &self,
        read: impl FnOnce() -> Fut,
    ) -> Result<Option<Arc<KeptList>>, E>
    where
        Fut: Future<Output = Result<ListRead, E>>,
    {
        if !self.keep {
            return Ok(None);
        }
        let mut held = self.read.lock().await;
        let read = match held.as_ref() {
            Some(read) => read.clone(),
            None => held.insert(read().await?).clone(),
        };
        Ok(match read {
            ListRead::Kept(list) => Some(list),
            ListRead::TooLarge => None,
        })
    }
}

/// One read (by key) that `readers` crawl units of a resync need, read by the first of them to
/// reach it while the others wait, and kept (as text) for the others only until the last of
/// them took it, within `limit` bytes for all keys at once: past it the others read it again.
/// A unit that never comes (it failed before) leaves its reads kept until the resync ends,
/// still within the limit.
pub(crate) struct SharedReads {
    entries: Mutex<Entries>,
    readers: usize,
    limit: usize,
}

#[derive(Default)]
struct Entries {
    by_key: HashMap<String, Arc<tokio::sync::Mutex<Entry>>>,
    bytes: usize,
}

struct Entry {
    /// The read, while a unit still needs it.
    kept: Option<Box<str>>,
    /// Units that have not reached this key yet.
    left: usize,
}

impl Default for SharedReads {
    /// For one unit: nothing is kept.
    fn default() -> Self {
        Self::new(1, SHARED_READ_BYTES)
    }
}

impl SharedReads {
    pub(crate) fn new(readers: usize, limit: usize) -> Self {
        Self {
            entries: Mutex::new(Entries::default()),
            readers,
            limit,
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes kept now (tests).
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.entries().bytes
    }

    /// The read of `key`: kept by a unit that read it before, else read with `read` (and kept
    /// for the units still to come, within the limit).
    pub(crate) async fn get_or_read<E, Fut>(
        &self,
        key: &str,
        read: impl FnOnce() -> Fut,
    ) -> Result<Value, E>
    where
        Fut: Future<Output = Result<Value, E>>,
    {
        if self.readers <= 1 {
            return read().await;
        }
        let entry = {
            let mut entries = self.entries();
            let readers = self.readers;
            Arc::clone(entries.by_key.entry(key.to_string()).or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(Entry {
                    kept: None,
                    left: readers,
                }))
            }))
        };
        let mut held = entry.lock().await;
        held.left = held.left.saturating_sub(1);
        let outcome = match held.kept.take() {
            Some(text) => {
                let value = parse(&text);
                if held.left > 0 {
                    held.kept = Some(text);
                } else {
                    let mut entries = self.entries();
                    entries.bytes = entries.bytes.saturating_sub(text.len());
                }
                Ok(value)
            }
            None => {
                let outcome = read().await;
                if let Ok(value) = &outcome
                    && held.left > 0
                {
                    let text = compact(value);
                    let mut entries = self.entries();
                    if entries.bytes + text.len() <= self.limit {
                        entries.bytes += text.len();
                        held.kept = Some(text);
                    }
                }
                outcome
            }
        };
        if held.left == 0 {
            self.entries().by_key.remove(key);
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn read(reads: &AtomicUsize, value: Value) -> Result<Value, ()> {
        reads.fetch_add(1, Ordering::SeqCst);
        Ok(value)
    }

    #[tokio::test]
    async fn a_read_is_kept_until_every_unit_took_it() {
        let shared = SharedReads::new(3, 1024);
        let reads = AtomicUsize::new(0);
        for _ in 0..3 {
            let got = shared
                .get_or_read("team", || read(&reads, json!([1, 2])))
                .await;
            assert_eq!(got, Ok(json!([1, 2])));
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert_eq!(shared.bytes(), 0, "the last unit freed it");
        assert!(shared.entries().by_key.is_empty());
    }

    #[tokio::test]
    async fn past_the_limit_the_other_units_read_again() {
        let big = json!(["x".repeat(100)]);
        let shared = SharedReads::new(2, 50);
        let reads = AtomicUsize::new(0);
        for _ in 0..2 {
            let got = shared
                .get_or_read("team", || read(&reads, big.clone()))
                .await;
            assert_eq!(got, Ok(big.clone()));
        }
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        assert_eq!(shared.bytes(), 0);
    }

    #[tokio::test]
    async fn a_failed_read_is_read_again_by_the_next_unit() {
        let shared = SharedReads::new(2, 1024);
        let failed: Result<Value, ()> = shared.get_or_read("team", || async { Err(()) }).await;
        assert_eq!(failed, Err(()));
        let reads = AtomicUsize::new(0);
        let got = shared.get_or_read("team", || read(&reads, json!(1))).await;
        assert_eq!((got, reads.load(Ordering::SeqCst)), (Ok(json!(1)), 1));
        assert_eq!(shared.bytes(), 0);
    }

    #[test]
    fn a_list_past_its_limit_is_not_kept() {
        let mut list = KeptListBuilder::new(200);
        assert!(list.push("a", &json!({"descriptor": "a"})));
        assert!(!list.push("b", &json!({"descriptor": "b", "pad": "y".repeat(200)})));
        let mut list = KeptListBuilder::new(1024);
        assert!(list.push("a", &json!({"descriptor": "a"})));
        assert!(list.push("b", &json!({"descriptor": "b"})));
        let list = list.finish();
        assert_eq!(list.len(), 2);
        assert_eq!(list.get("b"), Some(json!({"descriptor": "b"})));
        assert!(list.contains("a") && !list.contains("c"));
    }
}
