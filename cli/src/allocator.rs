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
//! - free memory at the top of a heap past [`TRIM_THRESHOLD`] goes back to the system.
//!
//! Other allocators (musl, or a build without glibc) are left as they are.

/// Most malloc arenas.
pub const ARENAS: i32 = 2;
/// Blocks at least this large are mapped on their own (bytes).
pub const MMAP_THRESHOLD: i32 = 128 * 1024;
/// Free memory kept at the top of a heap before it is returned (bytes).
pub const TRIM_THRESHOLD: i32 = 1024 * 1024;

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
