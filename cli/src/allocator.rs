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
//!
//! The executable's own pages: on a page fault in a file mapping, Linux maps the neighbouring
//! pages of the file too (fault-around, 64 KiB), and every one counts in the resident size.
//! A role runs a few MB of a 40 MB executable scattered through it, and with fault-around about
//! 18 MiB of the executable was resident in each role (measured with `/proc/PID/smaps`), half of
//! the 40 MiB target. [`map_code_on_demand`] marks the executable's mappings `MADV_RANDOM`, which
//! turns fault-around (and read-ahead) off for them: only the pages run are mapped.

/// Most malloc arenas.
pub const ARENAS: i32 = 2;
/// Blocks at least this large are mapped on their own (bytes).
pub const MMAP_THRESHOLD: i32 = 128 * 1024;
/// Free memory kept at the top of a heap before it is returned (bytes).
pub const TRIM_THRESHOLD: i32 = 1024 * 1024;

/// Applies the settings; call first thing in `main`, before any thread is started.
pub fn tune() {
    map_code_on_demand();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's parameters; it is called before any other thread
    // exists, so no allocation races it.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

/// Marks every mapping of this process's executable `MADV_RANDOM` (see the module's doc). Best
/// effort: where `/proc` cannot be read, nothing changes.
pub fn map_code_on_demand() {
    #[cfg(target_os = "linux")]
    {
        let Ok(executable) = std::fs::read_link("/proc/self/exe") else {
            return;
        };
        let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
            return;
        };
        for (start, end) in executable_mappings(&maps, &executable.to_string_lossy()) {
            // SAFETY: the range is a whole mapping of this process (page-aligned, as the
            // kernel lists it); MADV_RANDOM changes only how its pages are faulted in.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_RANDOM);
            }
        }
    }
}

/// The address ranges of `/proc/self/maps` lines (`start-end perms offset dev inode path`) that
/// map the file at `path`.
fn executable_mappings(maps: &str, path: &str) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(6, char::is_whitespace);
            let range = fields.next()?;
            let mapped = fields.nth(4)?.trim_start();
            if mapped != path {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            (end > start).then_some((start, end))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_mappings_of_the_executable_only() {
        let maps = "\
55d0a0000000-55d0a0400000 r--p 00000000 fd:01 123 /app/adoport
55d0a0400000-55d0a1c00000 r-xp 00400000 fd:01 123 /app/adoport
55d0a2000000-55d0a2100000 rw-p 02000000 fd:01 123 /app/adoport (deleted)
7f0000000000-7f0000200000 r-xp 00000000 fd:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000300000-7f0000400000 rw-p 00000000 00:00 0
";
        assert_eq!(
            executable_mappings(maps, "/app/adoport"),
            [
                (0x55d0a0000000, 0x55d0a0400000),
                (0x55d0a0400000, 0x55d0a1c00000)
            ]
        );
    }

    /// Every mapping of the (test) executable carries the random-read advice (`rr` in
    /// smaps' VmFlags), which is what turns fault-around off.
    #[test]
    fn marks_every_mapping_of_the_executable_random() {
        map_code_on_demand();
        let executable = std::fs::read_link("/proc/self/exe").expect("exe");
        let executable = executable.to_string_lossy();
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let mut mine = false;
        let mut marked = Vec::new();
        for line in smaps.lines() {
            if let Some(flags) = line.strip_prefix("VmFlags:") {
                if mine {
                    marked.push(flags.split_whitespace().any(|flag| flag == "rr"));
                }
            } else if line.split_whitespace().count() >= 5
                && line
                    .split_whitespace()
                    .next()
                    .is_some_and(|r| r.contains('-'))
                && !line.ends_with(':')
            {
                mine = line.trim_end().ends_with(&*executable);
            }
        }
        assert!(!marked.is_empty(), "no mapping of {executable} in smaps");
        assert!(
            marked.iter().all(|m| *m),
            "mappings of {executable} without MADV_RANDOM: {marked:?}"
        );
    }
}
