//! A process's memory figures as Linux reports them in `/proc/<pid>/status` (`VmRSS`,
//! `VmHWM`, `RssAnon`, … in KiB): read by the benchmarks of child processes and by the tests
//! that watch their own memory. Nothing here is needed to run adoport; elsewhere than Linux
//! every figure is `None`.

/// The `field` line of `/proc/<pid>/status` in KiB (`status_kib(pid, "VmHWM")`: the peak
/// resident memory); `None` when the process or the field does not exist or the field is not
/// a size. A process reads its own with `std::process::id()`.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    field_kib(&status, field)
}

/// The `field` line of a status text in KiB (`VmHWM:\t  123 kB` → 123).
fn field_kib(status: &str, field: &str) -> Option<u64> {
    let value = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?;
    value.trim().strip_suffix("kB")?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_is_read_by_its_whole_name_and_only_as_a_size() {
        let status = "Name:\tadoport\nVmPeak:\t  9000 kB\nVmHWM:\t  4321 kB\nVmRSS:\t  1234 kB\n\
                      Threads:\t7\n";
        assert_eq!(field_kib(status, "VmHWM"), Some(4321));
        assert_eq!(field_kib(status, "VmRSS"), Some(1234));
        // A prefix of a field's name is not that field.
        assert_eq!(field_kib(status, "Vm"), None);
        assert_eq!(field_kib(status, "VmSwap"), None);
        // Not a size.
        assert_eq!(field_kib(status, "Threads"), None);
        assert_eq!(field_kib(status, "Name"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_live_process_reports_its_resident_memory_and_its_peak() {
        let me = std::process::id();
        let rss = status_kib(me, "VmRSS").expect("VmRSS of this process");
        let peak = status_kib(me, "VmHWM").expect("VmHWM of this process");
        assert!(rss > 0 && peak >= rss, "VmRSS {rss} KiB, VmHWM {peak} KiB");
        // No process has the largest pid (the kernel's limit is far below it).
        assert_eq!(status_kib(u32::MAX, "VmRSS"), None);
    }
}
