//! A budget of bytes that tasks take before they hold data and give back when they drop it,
//! the mechanics under the crawl's page budget (`crate::page_budget`) and listing budget
//! (`crate::listing_budget`). What it owns: the budget ([`ByteBudget`]), counted in 1 KiB
//! units of a semaphore (a semaphore counts permits in `u32`); a hold on it ([`HeldBytes`]),
//! given back when dropped, which waits for bytes only when taken and afterwards grows only
//! with bytes free at that moment; and the running mean of the sizes a budget's users saw
//! ([`MeanBytes`]), with a wait until the first one was seen. When to take how many bytes
//! (the wait policies) is for the budgets' users to say.
//!
//! Every hold is of at least one unit and at most the whole budget: data larger than the
//! budget is still held, alone, rather than waited for forever.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// The budget counts in units of this many bytes (a semaphore counts permits in `u32`).
const UNIT: usize = 1024;

/// A budget of bytes, shared by every task that takes from it (clones share the budget).
#[derive(Clone, Debug)]
pub(crate) struct ByteBudget {
    units: Arc<Semaphore>,
    total: u32,
}

/// Bytes taken from a [`ByteBudget`], given back when dropped.
#[derive(Debug)]
pub(crate) struct HeldBytes {
    permit: OwnedSemaphorePermit,
    budget: ByteBudget,
}

impl ByteBudget {
    /// A budget of `bytes`, rounded up to whole units (at least one).
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

    /// Units of `bytes`, at least one, at most the whole budget (data larger than the budget
    /// is still held, alone).
    fn units_of(&self, bytes: usize) -> u32 {
        u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total)
    }

    /// Waits until `bytes` may be held (a hold larger than the budget takes all of it).
    pub(crate) async fn hold(&self, bytes: usize) -> HeldBytes {
        let units = self.units_of(bytes);
        match Arc::clone(&self.units).acquire_many_owned(units).await {
            Ok(permit) => HeldBytes {
                permit,
                budget: self.clone(),
            },
            // The semaphore is never closed: the budget owns it.
            Err(_) => unreachable!("a byte budget's semaphore is never closed"),
        }
    }

    /// Bytes free now (tests).
    #[cfg(test)]
    pub(crate) fn free(&self) -> usize {
        self.units.available_permits() * UNIT
    }
}

impl HeldBytes {
    /// Grows the hold to `bytes` if the budget has the difference free now; otherwise leaves
    /// it as it is. Never waits: a task that holds bytes and waited for more could wait for
    /// bytes only its own end would give back.
    pub(crate) fn grow_if_free(&mut self, bytes: usize) {
        let want = self.budget.units_of(bytes) as usize;
        let have = self.permit.num_permits();
        if have < want
            && let Ok(more) =
                Arc::clone(&self.budget.units).try_acquire_many_owned((want - have) as u32)
        {
            self.permit.merge(more);
        }
    }

    /// Makes the hold `bytes`: what it held beyond them goes back to the budget, more is taken
    /// only if free now ([`HeldBytes::grow_if_free`]).
    pub(crate) fn resize(&mut self, bytes: usize) {
        let want = self.budget.units_of(bytes) as usize;
        let have = self.permit.num_permits();
        if want < have {
            // Split off and dropped: back to the budget.
            drop(self.permit.split(have - want));
        } else {
            self.grow_if_free(bytes);
        }
    }

    /// The bytes held (tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.permit.num_permits() * UNIT
    }
}

/// The running mean of the sizes seen so far, and whether one was seen yet.
#[derive(Debug)]
pub(crate) struct MeanBytes {
    /// (bytes, sizes) seen so far.
    seen: Mutex<(usize, usize)>,
    /// True once a size was seen.
    known: watch::Sender<bool>,
}

impl Default for MeanBytes {
    fn default() -> Self {
        Self {
            seen: Mutex::new((0, 0)),
            known: watch::Sender::new(false),
        }
    }
}

impl MeanBytes {
    /// Counts a size of `bytes` (zero counts too).
    pub(crate) fn observe(&self, bytes: usize) {
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.0 = seen.0.saturating_add(bytes);
            seen.1 += 1;
        }
        self.known.send_replace(true);
    }

    /// The mean of the sizes seen, or `None` while none was.
    pub(crate) fn mean(&self) -> Option<usize> {
        let (bytes, sizes) = *self.seen.lock().unwrap_or_else(|p| p.into_inner());
        bytes.checked_div(sizes)
    }

    /// Whether a size was seen yet.
    pub(crate) fn is_known(&self) -> bool {
        *self.known.borrow()
    }

    /// Waits until a size was seen (at once if one was).
    pub(crate) async fn known(&self) {
        let mut known = self.known.subscribe();
        // The sender is `self`'s and outlives the wait: it ends only with a size seen.
        let _seen = known.wait_for(|known| *known).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: usize = 1024;

    #[tokio::test]
    async fn holds_take_and_give_back_bytes() {
        let budget = ByteBudget::new(64 * KIB);
        let mut a = budget.hold(10 * KIB).await;
        assert_eq!(budget.free(), 54 * KIB);
        a.grow_if_free(12 * KIB);
        assert_eq!(a.len(), 12 * KIB);
        // Without room to grow, the hold stays as it was.
        let b = budget.hold(50 * KIB).await;
        a.grow_if_free(20 * KIB);
        assert_eq!(a.len(), 12 * KIB);
        assert_eq!(budget.free(), 2 * KIB);
        drop(b);
        // More than the whole budget takes the whole budget, not forever.
        drop(a);
        let all = budget.hold(1 << 30).await;
        assert_eq!(all.len(), 64 * KIB);
        assert_eq!(budget.free(), 0);
        drop(all);
        assert_eq!(budget.free(), 64 * KIB);
    }

    #[tokio::test]
    async fn a_hold_waits_until_bytes_are_given_back() {
        let budget = ByteBudget::new(8 * KIB);
        let first = budget.hold(8 * KIB).await;
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.hold(4 * KIB).await.len() }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(first);
        assert_eq!(waiting.await.expect("joins"), 4 * KIB);
    }

    #[tokio::test]
    async fn sizes_round_up_to_whole_units_within_the_budget() {
        assert_eq!(ByteBudget::new(0).bytes(), KIB);
        assert_eq!(ByteBudget::new(KIB + 1).bytes(), 2 * KIB);
        let budget = ByteBudget::new(8 * KIB);
        let mut held = budget.hold(0).await;
        assert_eq!(held.len(), KIB);
        held.grow_if_free(KIB + 1);
        assert_eq!(held.len(), 2 * KIB);
        held.resize(0);
        assert_eq!(held.len(), KIB);
    }

    #[tokio::test]
    async fn a_resize_gives_back_or_grows_only_with_bytes_free_now() {
        let budget = ByteBudget::new(64 * KIB);
        let mut a = budget.hold(64 * KIB).await;
        // Smaller: the rest goes back.
        a.resize(10 * KIB);
        assert_eq!(a.len(), 10 * KIB);
        assert_eq!(budget.free(), 54 * KIB);
        // Larger, with room: it takes the difference.
        a.resize(30 * KIB);
        assert_eq!(a.len(), 30 * KIB);
        // Larger than what is free: it stays, without waiting.
        let b = budget.hold(30 * KIB).await;
        a.resize(40 * KIB);
        assert_eq!(a.len(), 30 * KIB);
        assert_eq!(budget.free(), 4 * KIB);
        // Larger than the budget: at most all of it.
        drop(b);
        a.resize(1 << 30);
        assert_eq!(a.len(), 64 * KIB);
        drop(a);
        assert_eq!(budget.free(), 64 * KIB);
    }

    #[tokio::test]
    async fn the_mean_is_known_once_a_size_is_seen() {
        let mean = Arc::new(MeanBytes::default());
        assert_eq!(mean.mean(), None);
        assert!(!mean.is_known());
        let waiting = tokio::spawn({
            let mean = Arc::clone(&mean);
            async move { mean.known().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        mean.observe(0);
        waiting.await.expect("joins");
        assert!(mean.is_known());
        assert_eq!(mean.mean(), Some(0));
        mean.observe(300);
        mean.observe(usize::MAX);
        assert_eq!(mean.mean(), Some(usize::MAX / 3));
        // Once known, the wait ends at once.
        mean.known().await;
    }
}
