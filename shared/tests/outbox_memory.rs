//! What a full log outbox holds in memory, counted by a global allocator: its byte bound
//! (`OUTBOX_BYTES`) is a bound on memory, not only on the lines' text. A crawl that warns once
//! per repository fills the outbox while Port takes 100 lines at a time; kept as parsed JSON,
//! 5,000 such lines took 8.7 MiB of a 4 MiB bound.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use adoport_shared::telemetry::outbox::{LogOutbox, OUTBOX_BYTES, OUTBOX_LINES};
use tracing_subscriber::layer::SubscriberExt;

static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every call is passed on to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout, passed on.
        let block = unsafe { System.alloc(layout) };
        if !block.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // SAFETY: a block of the system allocator, with its layout.
        unsafe { System.dealloc(block, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        // SAFETY: a block of the system allocator, with its layout.
        let moved = unsafe { System.realloc(block, layout, size) };
        if !moved.is_null() {
            LIVE.fetch_add(size as isize - layout.size() as isize, Ordering::Relaxed);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A full outbox of warnings shaped like the crawl's (a message and four fields) holds about
/// the bytes of their text, and at most its byte bound.
#[test]
fn a_full_outbox_holds_about_its_texts_bytes() {
    let outbox = LogOutbox::new(100);
    let subscriber = tracing_subscriber::registry().with(outbox.layer());
    let before = LIVE.load(Ordering::Relaxed);
    tracing::subscriber::with_default(subscriber, || {
        for i in 0..OUTBOX_LINES + 500 {
            let repository = format!("{i:08x}-5f0c-4d5e-9a7b-0123456789ab");
            tracing::warn!(
                repository = repository.as_str(),
                path = "port.yml",
                branch = "Branch(\"main\")",
                error = "invalid type: string \"not a spec\", expected a sequence or a map at line 1 column 1",
                "GitOps spec does not parse; its entities are left as they are"
            );
        }
    });
    let held = (LIVE.load(Ordering::Relaxed) - before).max(0) as usize;
    assert_eq!(outbox.len(), OUTBOX_LINES, "the outbox is full");
    let text: usize = outbox
        .take(usize::MAX)
        .iter()
        .map(|line| serde_json::to_string(line).map_or(0, |s| s.len()))
        .sum();
    let mib = |bytes: usize| bytes as f64 / (1024.0 * 1024.0);
    println!(
        "{OUTBOX_LINES} lines: {:.2} MiB held for {:.2} MiB of text",
        mib(held),
        mib(text)
    );
    assert!(
        held <= OUTBOX_BYTES,
        "a full outbox held {:.2} MiB, over its bound of {:.2} MiB",
        mib(held),
        mib(OUTBOX_BYTES)
    );
    // The text, a pointer and a length per line, and the allocator's rounding.
    assert!(
        held <= text + text / 4 + OUTBOX_LINES * 32,
        "a full outbox held {:.2} MiB for {:.2} MiB of text",
        mib(held),
        mib(text)
    );
}
