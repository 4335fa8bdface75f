//! Transform's heap does not grow with the number of raw events a fast producer sends: on the
//! in-process bus (`adoport all`) a crawl that outruns transform waits at the raw queue's byte
//! bound, and transform maps at most `IN_FLIGHT_BYTES` of events at once. A counting allocator
//! measures the peak of live heap bytes while a producer publishes pages of ~200 KB as fast as
//! the bus takes them, at two sizes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use adoport_shared::bus::{Bus, Destination, Outgoing, RAW_QUEUE_BYTES};
use adoport_shared::mapping_versions::MappingVersions;
use adoport_shared::messages::{Origin, encode};
use adoport_shared::topology::{Topology, WorkQueue};
use adoport_transform::mapping::versions::CompiledVersions;
use adoport_transform::worker::{IN_FLIGHT_BYTES, TransformStats, run};
use serde_json::json;
use tokio_util::sync::CancellationToken;

mod support;

use support::{thing_event, thing_mapping};

/// Counts live heap bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(pointer, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract is passed on.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            if new_size >= layout.size() {
                let live = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed)
                    + (new_size - layout.size());
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Items per raw event (a crawl's page).
const ITEMS: usize = 100;
/// Bytes of text each item carries besides its identifier: a page of ~200 KB.
const ITEM_TEXT: usize = 2_000;

/// A page of `thing` items, encoded as the crawl publishes it.
fn page() -> Vec<u8> {
    let items = (0..ITEMS)
        .map(|id| json!({"id": id, "name": format!("thing {id}"), "text": "x".repeat(ITEM_TEXT)}))
        .collect();
    let webhook = Origin::Webhook {
        event_type: "thing.updated".into(),
        delivery_id: "d1".into(),
    };
    encode(&thing_event(webhook, items))
}

/// The peak of live heap bytes above the start while a producer publishes `pages` pages as
/// fast as the in-process bus takes them and transform maps them (their changes are taken off
/// the change queues as they come).
async fn peak_heap(pages: usize) -> usize {
    let shutdown = CancellationToken::new();
    let bus = Bus::memory(Topology::new("memory.", 2), shutdown.clone());
    let mut drains = Vec::new();
    for partition in 0..2 {
        let mut changes = bus
            .subscribe(WorkQueue::Changes { partition }, 16)
            .await
            .expect("subscribe");
        drains.push(tokio::spawn(async move {
            while let Some(delivery) = changes.next().await {
                delivery.ack().await.expect("ack");
            }
        }));
    }
    let versions = std::sync::Arc::new(
        CompiledVersions::new(MappingVersions::new(thing_mapping(
            "            name: .name",
        )))
        .expect("mapping compiles"),
    );
    let stats = TransformStats::default();
    let start = LIVE.load(Ordering::Relaxed);
    PEAK.store(start, Ordering::Relaxed);
    let worker = tokio::spawn(run(
        bus.clone(),
        versions,
        16,
        support::limits(Duration::from_secs(2)),
        stats.clone(),
        shutdown.clone(),
    ));
    // Each page is a copy of one (its own allocation, as a crawl's pages are), so that the
    // producer is much faster than mapping.
    let template = page();
    for _ in 0..pages {
        bus.publish(Outgoing::new(Destination::Raw, template.clone()))
            .await
            .expect("publish a page");
    }
    drop(template);
    tokio::time::timeout(
        Duration::from_secs(120),
        stats.clone().wait_for_settled(pages as u64),
    )
    .await
    .expect("every page mapped in time");
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(start);
    shutdown.cancel();
    worker.await.expect("worker").expect("worker ends cleanly");
    for drain in drains {
        drain.await.expect("drain");
    }
    peak
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transform_heap_is_flat_however_many_pages_a_fast_producer_sends() {
    let small = peak_heap(40).await;
    let large = peak_heap(160).await;
    let mib = |bytes: usize| bytes as f64 / (1024.0 * 1024.0);
    // What may be live at once: the raw queue's bound, the pages in flight (decoded and
    // mapped: a few times their bytes), their changes, and what the producer is encoding.
    let bound = RAW_QUEUE_BYTES + 6 * IN_FLIGHT_BYTES + 4 * 1024 * 1024;
    assert!(
        large <= bound,
        "transform's heap peaked at {:.1} MiB for 160 pages, over the {:.1} MiB its bounds allow",
        mib(large),
        mib(bound)
    );
    assert!(
        large as f64 <= small as f64 * 1.25 + 1024.0 * 1024.0,
        "transform's heap grew with the pages sent: {:.1} MiB for 40 pages, {:.1} MiB for 160",
        mib(small),
        mib(large)
    );
}
