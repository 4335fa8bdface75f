//! The crawl's budget of what its units keep while they run: a unit that reads a listing and
//! keeps it until all its pages are sent (a project's policies and repositories, as text)
//! holds the listing's bytes of this budget for its whole life, so that however wide the
//! fan-out (as wide as the requests may be in flight, for units of small pages) the listings
//! kept at once stay bounded. What it owns: the budget's size ([`LISTING_BUDGET_BYTES`]), a
//! unit's hold on it ([`HeldListing`]) and the estimate of a unit's listing in one fan-out
//! ([`ListingSizes`]); the budget itself is a [`ByteBudget`] (`crate::byte_budget`).
//!
//! It is separate from the page budget (`crate::page_budget`) on purpose. A unit holds its
//! listing's bytes from before its first request until it ends, and on the way waits for page
//! bytes; were both taken from one budget, units holding listings could take all of it and
//! wait for page bytes that only their own ends would give back. Here a unit waits for listing
//! bytes only before it starts, holding nothing else (not even its unit's data: the fan-out
//! asks for the next unit once the bytes are held); a unit that runs never waits for more
//! listing bytes (it grows its hold only with bytes free at that moment), and whatever it
//! waits for afterwards (page bytes, the publisher, requests) is given back by others without
//! waiting for listing bytes. So every hold ends, and every wait here ends.

use std::sync::Arc;

use crate::byte_budget::{ByteBudget, HeldBytes, MeanBytes};

/// Bytes of listings a resync's units keep at once. The fan-out runs units as wide as the
/// crawl may have requests in flight (30 by default): up to about 140 KB a listing they all
/// run, which a real project's policy listing (a few dozen policies of 1 to 2 KB) is far
/// under; larger listings narrow the fan-out (the simulator's 0.45 MB per project, 99
/// repositories and 198 policies, to about nine at once, instead of 13 MiB kept by 30). Twice
/// the default page buffer (`ADOPORT__INGEST__CRAWL_BUFFER_MIB`): pages move through the
/// budget in a broker round trip, listings stay for a unit's life.
pub(crate) const LISTING_BUDGET_BYTES: usize = 4 * 1024 * 1024;

/// The listings one fan-out's units kept so far, for what the next unit takes before it
/// starts: their mean. Until a unit kept its listing the size is unknown, and the first unit
/// takes the whole budget (so it runs alone), the next waiting until a listing is seen (or
/// the budget is whole again); a kind whose listings are small then runs as wide as its
/// requests after one unit's read, one whose listings are large never starts 30 units of
/// unknown size at once.
#[derive(Debug, Default)]
pub(crate) struct ListingSizes {
    /// The listings kept so far.
    listings: MeanBytes,
}

impl ListingSizes {
    /// The bytes the next unit's listing is expected to hold: the mean so far, or the whole
    /// budget while none was seen.
    fn expected(&self, budget: &ByteBudget) -> usize {
        self.listings.mean().unwrap_or_else(|| budget.bytes())
    }

    /// What a unit takes of `budget` before it starts (see the type's docs); the only wait
    /// for listing bytes, made while holding nothing else.
    pub(crate) async fn reserve(self: &Arc<Self>, budget: &ByteBudget) -> HeldListing {
        let held = if self.listings.is_known() {
            budget.hold(self.expected(budget)).await
        } else {
            tokio::select! {
                // The first unit, or a later one once every unit before it ended without
                // keeping a listing (failed): alone with the whole budget.
                held = budget.hold(budget.bytes()) => held,
                // A listing seen while waiting: the mean from now on.
                () = self.listings.known() => budget.hold(self.expected(budget)).await,
            }
        };
        HeldListing {
            held,
            sizes: Arc::clone(self),
        }
    }
}

/// A unit's bytes of the listing budget, given back when the unit drops it (when it ends).
#[derive(Debug)]
pub(crate) struct HeldListing {
    held: HeldBytes,
    sizes: Arc<ListingSizes>,
}

impl HeldListing {
    /// The unit read its listing and keeps `bytes` of it: counted for the fan-out's estimate,
    /// and the hold made `bytes`. What it held beyond them goes back to the budget; more is
    /// taken only if free now (a unit that runs never waits for listing bytes: that is what
    /// keeps the budget free of deadlocks), so a listing larger than the estimate may keep
    /// more than it holds.
    pub(crate) fn keeps(&mut self, bytes: usize) {
        self.sizes.listings.observe(bytes);
        self.held.resize(bytes);
    }

    /// The bytes held (tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: usize = 1024;

    /// Whether `task` is still waiting after every other task had its turn.
    async fn waits<T>(task: &tokio::task::JoinHandle<T>) -> bool {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        !task.is_finished()
    }

    #[tokio::test]
    async fn the_first_unit_runs_alone_until_its_listing_is_seen() {
        let budget = ByteBudget::new(64 * KIB);
        let sizes = Arc::new(ListingSizes::default());
        let mut first = sizes.reserve(&budget).await;
        assert_eq!(first.len(), 64 * KIB);
        let second = tokio::spawn({
            let (sizes, budget) = (Arc::clone(&sizes), budget.clone());
            async move { sizes.reserve(&budget).await }
        });
        assert!(waits(&second).await);
        // Its listing read: it keeps 10 KiB, the rest goes back, and the next unit takes
        // the mean.
        first.keeps(10 * KIB);
        assert_eq!(first.len(), 10 * KIB);
        let second = second.await.expect("joins");
        assert_eq!(second.len(), 10 * KIB);
        assert_eq!(budget.free(), 44 * KIB);
        drop(first);
        drop(second);
        assert_eq!(budget.free(), 64 * KIB);
    }

    #[tokio::test]
    async fn a_first_unit_that_keeps_nothing_hands_the_whole_budget_on() {
        let budget = ByteBudget::new(64 * KIB);
        let sizes = Arc::new(ListingSizes::default());
        let first = sizes.reserve(&budget).await;
        let second = tokio::spawn({
            let (sizes, budget) = (Arc::clone(&sizes), budget.clone());
            async move { sizes.reserve(&budget).await.len() }
        });
        assert!(waits(&second).await);
        // The first unit failed before its listing: the next runs alone in turn.
        drop(first);
        assert_eq!(second.await.expect("joins"), 64 * KIB);
    }

    #[tokio::test]
    async fn units_wait_for_the_bytes_of_the_mean_listing() {
        let budget = ByteBudget::new(64 * KIB);
        let sizes = Arc::new(ListingSizes::default());
        let mut first = sizes.reserve(&budget).await;
        first.keeps(20 * KIB);
        let mut second = sizes.reserve(&budget).await;
        second.keeps(40 * KIB);
        // Mean 30 KiB, 4 KiB free: the third waits until a unit ends.
        let third = tokio::spawn({
            let (sizes, budget) = (Arc::clone(&sizes), budget.clone());
            async move { sizes.reserve(&budget).await.len() }
        });
        assert!(waits(&third).await);
        drop(second);
        assert_eq!(third.await.expect("joins"), 30 * KIB);
    }

    #[tokio::test]
    async fn a_hold_grows_only_with_bytes_free_now() {
        let budget = ByteBudget::new(64 * KIB);
        let sizes = Arc::new(ListingSizes::default());
        let mut first = sizes.reserve(&budget).await;
        first.keeps(10 * KIB);
        let mut second = sizes.reserve(&budget).await;
        assert_eq!(second.len(), 10 * KIB);
        // Larger than expected, with room: it holds what it keeps.
        second.keeps(30 * KIB);
        assert_eq!(second.len(), 30 * KIB);
        assert_eq!(budget.free(), 24 * KIB);
        // Larger than what is free: it goes on with what it held, without waiting.
        let mut third = sizes.reserve(&budget).await;
        assert_eq!(third.len(), 20 * KIB);
        third.keeps(50 * KIB);
        assert_eq!(third.len(), 20 * KIB);
        assert_eq!(budget.free(), 4 * KIB);
        // Every hold goes back when its unit ends.
        drop((first, second, third));
        assert_eq!(budget.free(), 64 * KIB);
        // A listing larger than the budget takes all of it, not forever.
        let mut alone = sizes.reserve(&budget).await;
        alone.keeps(1 << 30);
        assert_eq!(alone.len(), 64 * KIB);
        drop(alone);
        assert_eq!(budget.free(), 64 * KIB);
    }
}
