//! The process's malloc settings, set once at start before any thread exists: so that what a
//! process keeps resident does not grow with the organization it syncs.
//!
//! glibc malloc (the image is Debian) gives each thread that meets contention an arena of its
//! own, up to 8 per core, and keeps what is freed in each; it also raises its mmap threshold
//! to the largest block freed so far (up to 32 MiB), after which big page buffers are carved
//! from the arenas and fragment them instead of going back to the system when freed. A resync
//! frees page after page of JSON of every size: with the defaults, the resident peak follows
//! the number of pages more than what is live at once.
//!
//! - [`ARENAS`] arenas at most: the runtime's worker threads share them.
//! - blocks of [`MMAP_THRESHOLD`] and more are mapped on their own and unmapped when freed (a
//!   fixed threshold also turns off glibc's raising of it);
//! - free memory at the top of a heap past [`TRIM_THRESHOLD`] goes back to the system;
//! - every [`TRIM_EVERY`], a thread of its own ([`start_trimming`]) hands the free pages inside
//!   the heaps back too (`malloc_trim`): the top-of-heap threshold alone keeps every page a
//!   freed page or message left between two live blocks, and a resync frees thousands of them.
//!
//! Other allocators (musl, or a build without glibc) are left as they are.

/// Most malloc arenas.
pub const ARENAS: i32 = 2;
/// Blocks at least this large are mapped on their own (bytes).
pub const MMAP_THRESHOLD: i32 = 128 * 1024;
/// Free memory kept at the top of a heap before it is returned (bytes).
pub const TRIM_THRESHOLD: i32 = 1024 * 1024;

/// How often free pages inside the heaps are handed back to the system.
pub const TRIM_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Stack of the trimming thread: it only calls `malloc_trim`.
const TRIMMER_STACK: usize = 64 * 1024;

/// Applies the settings; call first thing in `main`, before any thread is started.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's parameters; it is called before any other thread
    // exists, so no allocation races it.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

/// Hands the free pages of every malloc heap back to the system now (glibc's `malloc_trim`:
/// whole free pages anywhere in a heap, not only at its top). Returns whether any was.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes each arena's lock itself; it is safe from any thread.
    unsafe {
        libc::malloc_trim(0) != 0
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

/// Starts the thread that calls [`trim`] every [`TRIM_EVERY`] for as long as the process runs
/// (call once, after [`tune`]). Where it cannot start, the process runs without it (logged by
/// the caller through the returned error).
pub fn start_trimming() -> std::io::Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    std::thread::Builder::new()
        .name("malloc-trim".into())
        .stack_size(TRIMMER_STACK)
        .spawn(|| {
            loop {
                std::thread::sleep(TRIM_EVERY);
                trim();
            }
        })?;
    Ok(())
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;
    use crate::process_status::status_kib;

    /// Anonymous resident memory of this process (KiB).
    fn anonymous_kib() -> u64 {
        status_kib(std::process::id(), "RssAnon").expect("RssAnon in /proc/<pid>/status")
    }

    /// Pages freed between live blocks stay resident with the top-of-heap threshold alone;
    /// [`trim`] hands them back.
    #[test]
    fn trim_returns_free_pages_between_live_blocks() {
        tune();
        const BLOCKS: usize = 8 * 1024;
        const BLOCK: usize = 4 * 1024;
        // 32 MiB in blocks below the mmap threshold, every page touched.
        let mut blocks: Vec<Vec<u8>> = (0..BLOCKS).map(|i| vec![(i % 251) as u8; BLOCK]).collect();
        // Free all but every 64th block: most of the heap is free, its top is still live.
        let mut kept = Vec::new();
        for (i, block) in blocks.drain(..).enumerate() {
            if i % 64 == 63 {
                kept.push(block);
            }
        }
        let before = anonymous_kib();
        assert!(trim(), "malloc_trim handed nothing back");
        let after = anonymous_kib();
        assert!(
            before.saturating_sub(after) >= 16 * 1024,
            "trim gave back {} KiB of {before} KiB",
            before.saturating_sub(after)
        );
        assert_eq!(kept.len(), BLOCKS / 64);
    }
}
