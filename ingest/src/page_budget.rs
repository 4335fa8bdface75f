//! The crawl's byte budget (`ADOPORT__INGEST__CRAWL_BUFFER_MIB`): how many bytes of pages one
//! organization's resync may hold at once, whatever the kinds it reads at the same time and
//! however wide their fan-out. A page takes its bytes before it is handed to the publisher and
//! gives them back once the broker confirmed it; a unit (a project, a repository) takes its
//! expected page's bytes before its first request, so the fan-out is as wide as the request
//! budget for small pages and narrower for large ones. What it owns: the budget's default size
//! ([`DEFAULT_BUFFER_BYTES`]), what a unit takes of it before its first request
//! ([`PageSizes`]) and the estimate of a page's bytes in memory ([`heap_bytes`]); the budget
//! and the holds on it are a [`ByteBudget`] and its [`HeldBytes`] (`crate::byte_budget`).

use serde_json::Value;

use crate::byte_budget::{ByteBudget, HeldBytes, MeanBytes};

/// Bytes of pages a resync holds at most unless the crawler is told otherwise.
pub const DEFAULT_BUFFER_BYTES: usize =
    adoport_shared::config::DEFAULT_CRAWL_BUFFER_MIB as usize * 1024 * 1024;

/// Running mean of the pages of one kind's fan-out, for what a unit takes before its first
/// request. Until the first page is seen (or a unit ends without one), only the first
/// `first_wave` units start, each with an even share of the budget between the kinds read at
/// once; the others wait for the mean (at most [`FIRST_PAGE_WAIT`], then take the least), so
/// that they neither take more than their pages need nor start blind. A unit's first page
/// takes over what the unit took, grown to its bytes only if they are free now
/// ([`HeldBytes::grow_if_free`]): a page somewhat larger than the mean goes on with what its
/// unit took rather than wait for more while in memory (and let units that have not read
/// anything yet take the bytes it waits for).
#[derive(Debug)]
pub(crate) struct PageSizes {
    /// The pages seen so far (a unit that ends without one counts as a page of no bytes).
    pages: MeanBytes,
    first_guess: usize,
    first_wave: usize,
    started: std::sync::atomic::AtomicUsize,
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
    pub(crate) fn new(budget: &ByteBudget, first_wave: usize, kinds: usize) -> Self {
        Self {
            pages: MeanBytes::default(),
            first_guess: budget.bytes() / (2 * first_wave.max(1) * kinds.max(1)),
            first_wave: first_wave.max(1),
            started: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Counts a page of `bytes` (a unit that ends without a page counts one of no bytes).
    pub(crate) fn observe(&self, bytes: usize) {
        self.pages.observe(bytes);
    }

    /// The bytes a unit's next page is expected to hold.
    pub(crate) fn expected(&self) -> usize {
        self.pages
            .mean()
            .map_or(self.first_guess, |mean| mean.max(LEAST_EXPECTED))
    }

    /// What a unit takes of `budget` before its first request (see the type's docs).
    pub(crate) async fn reserve(&self, budget: &ByteBudget) -> HeldBytes {
        let order = self
            .started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if order >= self.first_wave {
            // The wait ends with a page or the timeout.
            if tokio::time::timeout(FIRST_PAGE_WAIT, self.pages.known())
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
        let budget = ByteBudget::new(64 * 1024);
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
        let budget = ByteBudget::new(8 * 1024 * 1024);
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
