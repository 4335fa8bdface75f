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
//! - a thread of its own ([`start_trimming`]) hands the free pages inside the heaps back too
//!   (`malloc_trim`): the top-of-heap threshold alone keeps every page a freed page or message
//!   left between two live blocks, and a resync frees thousands of them. It looks every
//!   [`TRIM_EVERY`] and trims only when the rest of the process has worked since: at least
//!   [`BUSY`] of CPU since the previous look, and once more at the look after (what the end
//!   of the work freed), or [`TRIM_AFTER_WORK`] since the last trim (work spread thin)
//!   ([`TrimGate`]). An idle process has freed next to nothing: it trims once in minutes.
//!
//! Why CPU time and not malloc's own figures: `mallinfo2` walks every free block under the
//! arena's lock, as `malloc_trim` does (1.8 against 2.5 ms with 10,000 free blocks), and its
//! free bytes (`fordblks`) still count the pages a trim gave back, so they never say "nothing
//! to give back". Freeing memory takes CPU; a process that did not run freed nothing.
//!
//! Other allocators (musl, or a build without glibc) are left as they are.

use std::time::Duration;

/// Most malloc arenas.
pub const ARENAS: i32 = 2;
/// Blocks at least this large are mapped on their own (bytes).
pub const MMAP_THRESHOLD: i32 = 128 * 1024;
/// Free memory kept at the top of a heap before it is returned (bytes).
pub const TRIM_THRESHOLD: i32 = 1024 * 1024;

/// How often the trimming thread looks whether to hand free pages back.
pub const TRIM_EVERY: Duration = Duration::from_millis(250);
/// CPU time the rest of the process uses between two looks when it is working (a resync, a
/// burst of messages): such a look trims. An idle `adoport all` uses a twentieth of it.
pub const BUSY: Duration = Duration::from_millis(1);
/// CPU time the rest of the process uses between two trims, in looks none of which was busy:
/// then a look trims too (an idle `adoport all` takes minutes to use it).
pub const TRIM_AFTER_WORK: Duration = Duration::from_millis(100);

/// Stack of the trimming thread: it only reads two clocks and calls `malloc_trim`.
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

/// CPU time the whole process has used so far; `None` where the clock cannot be read.
pub fn process_cpu() -> Option<Duration> {
    #[cfg(unix)]
    return cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID);
    #[cfg(not(unix))]
    None
}

/// CPU time the calling thread has used so far; `None` where the clock cannot be read.
pub fn thread_cpu() -> Option<Duration> {
    #[cfg(unix)]
    return cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID);
    #[cfg(not(unix))]
    None
}

#[cfg(unix)]
fn cpu_clock(clock: libc::clockid_t) -> Option<Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given, which lives on this stack.
    let status = unsafe { libc::clock_gettime(clock, &mut now) };
    let seconds = u64::try_from(now.tv_sec).ok()?;
    let nanos = u32::try_from(now.tv_nsec).ok()?;
    (status == 0).then(|| Duration::new(seconds, nanos))
}

/// When the trimming thread trims, from the CPU time the rest of the process has used (its
/// work): at a look after [`BUSY`] work since the previous look, at the look after that (for
/// what the end of the work freed, which may have taken less than [`BUSY`]), and once
/// [`TRIM_AFTER_WORK`] work was done since the last trim. Where the clocks cannot be
/// read, at every look, as before there was a gate.
#[derive(Debug, Default)]
pub struct TrimGate {
    /// The work at the previous look (`None`: no look yet).
    at_last_look: Option<Duration>,
    /// The work at the last trim (`None`: no trim yet).
    at_last_trim: Option<Duration>,
    /// The previous look was busy: this one trims too.
    follow_up: bool,
}

impl TrimGate {
    /// Whether to trim now, with `work` the CPU time the process's other threads have used so
    /// far; counts the trim when it says yes.
    pub fn look(&mut self, work: Option<Duration>) -> bool {
        let since =
            |then: Option<Duration>| work.zip(then).map(|(now, then)| now.saturating_sub(then));
        let busy = since(self.at_last_look).is_none_or(|w| w >= BUSY);
        let trim =
            busy || self.follow_up || since(self.at_last_trim).is_none_or(|w| w >= TRIM_AFTER_WORK);
        self.follow_up = busy;
        self.at_last_look = work;
        if trim {
            self.at_last_trim = work;
        }
        trim
    }
}

/// Starts the thread that looks every [`TRIM_EVERY`], for as long as the process runs, and
/// calls [`trim`] when its [`TrimGate`] says so (call once, after [`tune`]). Where it cannot
/// start, the process runs without it (logged by the caller through the returned error).
pub fn start_trimming() -> std::io::Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    std::thread::Builder::new()
        .name("malloc-trim".into())
        .stack_size(TRIMMER_STACK)
        .spawn(|| {
            let mut gate = TrimGate::default();
            loop {
                std::thread::sleep(TRIM_EVERY);
                // The process's CPU time less this thread's own: its trims are no work.
                let work = process_cpu()
                    .zip(thread_cpu())
                    .map(|(all, own)| all.saturating_sub(own));
                if gate.look(work) {
                    trim();
                }
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

    /// A process that worked trims, and once more at the next look.
    #[test]
    fn the_gate_trims_after_work() {
        let mut gate = TrimGate::default();
        let start = process_cpu();
        assert!(start.is_some(), "the process's CPU clock reads");
        assert!(
            gate.look(start),
            "the first look trims: nothing is known yet"
        );
        assert!(gate.look(start), "and its follow-up");
        // Work (this thread spinning) for twice the threshold.
        let spun = thread_cpu().expect("the thread's CPU clock reads");
        while thread_cpu().is_some_and(|now| now < spun + 2 * BUSY) {
            std::hint::black_box(0u64);
        }
        assert!(gate.look(process_cpu()), "after work the gate trims");
        assert!(gate.look(process_cpu()), "and once more at the next look");
    }

    /// An idle process does not trim: while the rest of the process works less than [`BUSY`]
    /// between looks, a look trims nothing (each used to call `malloc_trim`, which walks every
    /// free block and gives the same pages back again) until [`TRIM_AFTER_WORK`] is reached.
    #[test]
    fn an_idle_process_does_not_trim() {
        let mut gate = TrimGate::default();
        let at = |micros: u64| Some(Duration::from_micros(micros));
        assert!(gate.look(at(500_000)) && gate.look(at(500_000)));
        // A minute of looks without work, then one with 0.2 ms of housekeeping a look (what
        // an idle `adoport all` uses, twice over).
        for _ in 0..240 {
            assert!(!gate.look(at(500_000)), "no work: no trim");
        }
        let mut work = 500_000;
        for _ in 0..240 {
            work += 200;
            assert!(!gate.look(at(work)), "idle at {work} µs of work: no trim");
        }
        // Work spread thin still trims, once it adds up.
        let trims = (0..500)
            .filter(|_| {
                work += 900;
                gate.look(at(work))
            })
            .count();
        assert!(
            trims > 0 && trims < 10,
            "thin work (0.9 ms a look) trimmed {trims} times in 500 looks"
        );
        // Unknown work: every look trims, as without the gate.
        assert!(gate.look(None) && gate.look(None));
    }
}
