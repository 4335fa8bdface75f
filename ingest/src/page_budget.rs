//! The crawl's byte budget (`ADOPORT__INGEST__CRAWL_BUFFER_MIB`): how many bytes of pages one
//! organization's resync may hold at once, whatever the kinds it reads at the same time and
//! however wide their fan-out. A page takes its bytes before it is handed to the publisher and
//! gives them back once the broker confirmed it; a unit (a project, a repository) takes its
//! expected page's bytes before its first request, so the fan-out is as wide as the request
//! budget for small pages and narrower for large ones. What it owns: the budget, the holds on
//! it and the estimate of a page's bytes in memory ([`heap_bytes`]).

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes of pages a resync holds at most unless the crawler is told otherwise.
pub const DEFAULT_BUFFER_BYTES: usize =
    adoport_shared::config::DEFAULT_CRAWL_BUFFER_MIB as usize * 1024 * 1024;

/// The budget counts in units of this many bytes (a semaphore counts permits in `u32`).
const UNIT: usize = 1024;

/// A resync's byte budget, shared by every unit of every kind it reads.
#[derive(Clone, Debug)]
pub(crate) struct PageBudget {
    units: Arc<Semaphore>,
    total: u32,
}

/// Bytes taken from a [`PageBudget`], given back when dropped.
#[derive(Debug)]
pub(crate) struct HeldBytes(OwnedSemaphorePermit);

impl PageBudget {
    pub(crate) fn new(bytes: usize) -> Self {
        let total = u32::try_from(bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX);
        Self {
            units: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// The budget's size.
    pub(crate) fn bytes(&self) -> usize {
        self.total as usize * UNIT
    }

    fn units_of(&self, bytes: usize) -> u32 {
        u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total)
    }

    /// Waits until `bytes` may be held (a hold larger than the budget takes all of it).
    pub(crate) async fn hold(&self, bytes: usize) -> HeldBytes {
        let units = self.units_of(bytes);
        // The semaphore is never closed: the crawler owns it.
        match Arc::clone(&self.units).acquire_many_owned(units).await {
            Ok(permit) => HeldBytes(permit),
            Err(_) => unreachable!("the page budget's semaphore is never closed"),
        }
    }

    /// `held`, grown to `bytes` if there is room now; otherwise `held` as it is. A unit takes
    /// the bytes of the kind's mean page before its request: a page somewhat larger than that
    /// goes on with what its unit took rather than wait for more while in memory (and let
    /// units that have not read anything yet take the bytes it waits for).
    pub(crate) fn grow(&self, mut held: HeldBytes, bytes: usize) -> HeldBytes {
        let want = self.units_of(bytes) as usize;
        let have = held.0.num_permits();
        if have < want
            && let Ok(more) = Arc::clone(&self.units).try_acquire_many_owned((want - have) as u32)
        {
            held.0.merge(more);
        }
        held
    }

    /// Bytes free now (tests).
    #[cfg(test)]
    fn free(&self) -> usize {
        self.units.available_permits() * UNIT
    }
}

/// Running mean of the pages of one kind's fan-out, for what a unit takes before its first
/// request. Until the first page is seen (or a unit ends without one), only the first
/// `first_wave` units start, each with an even share of the budget between the kinds read at
/// once; the others wait for the mean (at most [`FIRST_PAGE_WAIT`], then take the least), so
/// that they neither take more than their pages need nor start blind.
#[derive(Debug)]
pub(crate) struct PageSizes {
    /// (bytes, pages) seen so far.
    seen: std::sync::Mutex<(usize, usize)>,
    first_guess: usize,
    first_wave: usize,
    started: std::sync::atomic::AtomicUsize,
    /// True once a page was seen (a unit that ends without one counts as a page of no bytes).
    known: tokio::sync::watch::Sender<bool>,
}

/// How long units past the first wave wait for the first page before they start, taking
/// [`LEAST_EXPECTED`]: a kind whose units read for a long time before their first page (a
/// project's spec files, read repository by repository) must not run eight units at a time
/// for it.
const FIRST_PAGE_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// The least a unit takes before its first request: a unit of tiny pages still counts.
const LEAST_EXPECTED: usize = 4 * 1024;

impl PageSizes {
    /// `kinds`: the units of this many kinds may start at the same time, each with its first
    /// wave: together they take half the budget at most, so that units started past
    /// [`FIRST_PAGE_WAIT`] find room.
    pub(crate) fn new(budget: &PageBudget, first_wave: usize, kinds: usize) -> Self {
        Self {
            seen: std::sync::Mutex::new((0, 0)),
            first_guess: budget.bytes() / (2 * first_wave.max(1) * kinds.max(1)),
            first_wave: first_wave.max(1),
            started: std::sync::atomic::AtomicUsize::new(0),
            known: tokio::sync::watch::Sender::new(false),
        }
    }

    pub(crate) fn observe(&self, bytes: usize) {
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.0 = seen.0.saturating_add(bytes);
            seen.1 += 1;
        }
        self.known.send_replace(true);
    }

    /// The bytes a unit's next page is expected to hold.
    pub(crate) fn expected(&self) -> usize {
        let (bytes, pages) = *self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match pages {
            0 => self.first_guess,
            _ => (bytes / pages).max(LEAST_EXPECTED),
        }
    }

    /// What a unit takes of `budget` before its first request (see the type's docs).
    pub(crate) async fn reserve(&self, budget: &PageBudget) -> HeldBytes {
        let order = self
            .started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if order >= self.first_wave {
            let mut known = self.known.subscribe();
            // The sender lives as long as `self`: the wait ends with a page or the timeout.
            let page_seen = async { known.wait_for(|known| *known).await.is_ok() };
            if tokio::time::timeout(FIRST_PAGE_WAIT, page_seen)
                .await
                .is_err()
            {
                // Still no page: the units are slow to their first one. Holding the first
                // guess through it would run eight at a time; take the least instead.
                return budget.hold(LEAST_EXPECTED).await;
            }
        }
        budget.hold(self.expected()).await
    }
}

impl HeldBytes {
    /// The bytes held (tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.num_permits() * UNIT
    }
}

/// About the heap bytes `value` takes as serde_json holds it (ordered maps): its strings,
/// plus each node's and map entry's own size. Within tens of percent of the allocator's
/// count, which is what a budget of pages needs.
pub(crate) fn heap_bytes(value: &Value) -> usize {
    const NODE: usize = std::mem::size_of::<Value>();
    // An ordered map entry: the key, the value, its hash and index slot.
    const ENTRY: usize = std::mem::size_of::<String>() + NODE + 16;
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => NODE,
        Value::String(s) => NODE + s.capacity(),
        Value::Array(items) => NODE + items.iter().map(heap_bytes).sum::<usize>(),
        Value::Object(map) => {
            NODE + map
                .iter()
                .map(|(key, value)| ENTRY + key.capacity() + heap_bytes(value) - NODE)
                .sum::<usize>()
        }
    }
}

/// [`heap_bytes`] of a page of items.
pub(crate) fn page_bytes(items: &[Value]) -> usize {
    items.iter().map(heap_bytes).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn holds_take_and_give_back_bytes() {
        let budget = PageBudget::new(64 * 1024);
        let a = budget.hold(10 * 1024).await;
        assert_eq!(budget.free(), 54 * 1024);
        let a = budget.grow(a, 12 * 1024);
        assert_eq!(a.len(), 12 * 1024);
        // Without room to grow, the hold stays as it was.
        let b = budget.hold(50 * 1024).await;
        let a = budget.grow(a, 20 * 1024);
        assert_eq!(a.len(), 12 * 1024);
        assert_eq!(budget.free(), 2 * 1024);
        drop(b);
        // More than the whole budget takes the whole budget, not forever.
        drop(a);
        let all = budget.hold(1 << 30).await;
        assert_eq!(all.len(), 64 * 1024);
        assert_eq!(budget.free(), 0);
        drop(all);
        assert_eq!(budget.free(), 64 * 1024);
    }

    #[tokio::test]
    async fn a_hold_waits_until_bytes_are_given_back() {
        let budget = PageBudget::new(8 * 1024);
        let first = budget.hold(8 * 1024).await;
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.hold(4 * 1024).await.len() }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(first);
        assert_eq!(waiting.await.expect("joins"), 4 * 1024);
    }

    #[test]
    fn the_estimate_follows_the_text() {
        let small = json!({"id": "a", "name": "b"});
        let large = json!({"id": "a".repeat(1000), "name": "b", "tags": vec!["x"; 20]});
        assert!(heap_bytes(&small) < 400, "{}", heap_bytes(&small));
        assert!(
            heap_bytes(&large) > 1000 + 20 * 32,
            "{}",
            heap_bytes(&large)
        );
        assert_eq!(
            page_bytes(&[small.clone(), small.clone()]),
            2 * heap_bytes(&small)
        );
    }

    #[tokio::test]
    async fn units_past_the_first_wave_wait_for_the_first_page() {
        let budget = PageBudget::new(64 * 1024);
        let sizes = std::sync::Arc::new(PageSizes::new(&budget, 2, 1));
        let first = sizes.reserve(&budget).await;
        let second = sizes.reserve(&budget).await;
        assert_eq!(first.len() + second.len(), 32 * 1024);
        let third = tokio::spawn({
            let (sizes, budget) = (sizes.clone(), budget.clone());
            async move { sizes.reserve(&budget).await.len() }
        });
        tokio::task::yield_now().await;
        assert!(!third.is_finished());
        // A page of 8 KiB seen, and the first unit's bytes given back: the third takes 8 KiB.
        sizes.observe(8 * 1024);
        drop(first);
        assert_eq!(third.await.expect("joins"), 8 * 1024);
    }

    #[test]
    fn a_unit_expects_the_mean_page_once_pages_are_seen() {
        let budget = PageBudget::new(8 * 1024 * 1024);
        let sizes = PageSizes::new(&budget, 8, 1);
        assert_eq!(sizes.expected(), 512 * 1024);
        assert_eq!(PageSizes::new(&budget, 8, 4).expected(), 128 * 1024);
        sizes.observe(100_000);
        sizes.observe(300_000);
        assert_eq!(sizes.expected(), 200_000);
        sizes.observe(0);
        sizes.observe(0);
        sizes.observe(0);
        sizes.observe(0);
        assert_eq!(sizes.expected(), LEAST_EXPECTED.max(400_000 / 6));
    }
}
