//! The processes a benchmark starts: `adoport <role>` as a child with exactly the environment
//! given, and its peak resident memory, for `bench` and `bench_scaling` alike.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::process_status::status_kib;
use crate::sim::PATIENCE;

/// Peak resident memory of a process, in KiB (Linux).
pub(crate) fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM")
}

/// Anonymous resident memory of a process now (`RssAnon`: its heap, stacks and other private
/// pages, without the pages of its executable and libraries), in KiB (Linux).
pub(crate) fn anonymous_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "RssAnon")
}

/// How often [`AnonymousPeaks`] and [`run_once_with`] sample a child's memory.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// A process's two peaks: the kernel's high-water mark of its resident memory (`VmHWM`, the
/// figure the targets are set on) and the largest anonymous resident memory it was seen with
/// (sampled every [`SAMPLE_EVERY`]). `VmHWM` also counts the pages of the executable and its
/// libraries (`RssFile`, about 23 MiB for a `release` build of `adoport all`), resident or not
/// as the machine's page cache allows; what the process allocates is in the anonymous peak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Peaks {
    pub(crate) resident_kib: Option<u64>,
    pub(crate) anonymous_kib: Option<u64>,
}

impl Peaks {
    /// The larger of each figure of two runs.
    pub(crate) fn max(self, other: Peaks) -> Peaks {
        Peaks {
            resident_kib: self.resident_kib.max(other.resident_kib),
            anonymous_kib: self.anonymous_kib.max(other.anonymous_kib),
        }
    }

    /// Folds one sample of `pid`'s status in (call until just before it exits).
    fn sample(&mut self, pid: u32) {
        self.resident_kib = peak_rss_kib(pid).or(self.resident_kib);
        self.anonymous_kib = self.anonymous_kib.max(anonymous_kib(pid));
    }
}

/// The anonymous peaks of running children, sampled by a task of its own every
/// [`SAMPLE_EVERY`] until [`AnonymousPeaks::finish`].
pub(crate) struct AnonymousPeaks {
    stop: tokio_util::sync::CancellationToken,
    sampler: tokio::task::JoinHandle<Vec<Option<u64>>>,
    /// The peaks so far, after each round of samples.
    #[cfg_attr(not(test), allow(dead_code))]
    so_far: tokio::sync::watch::Receiver<Vec<Option<u64>>>,
}

impl AnonymousPeaks {
    /// Starts sampling `pids` (`None`: a child that already exited, never sampled).
    pub(crate) fn start(pids: Vec<Option<u32>>) -> Self {
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        let (report, so_far) = tokio::sync::watch::channel(vec![None; pids.len()]);
        let sampler = tokio::spawn(async move {
            let mut peaks = vec![None; pids.len()];
            loop {
                for (peak, pid) in peaks.iter_mut().zip(&pids) {
                    *peak = (*peak).max(pid.and_then(anonymous_kib));
                }
                report.send_replace(peaks.clone());
                tokio::select! {
                    _ = stopped.cancelled() => return peaks,
                    _ = tokio::time::sleep(SAMPLE_EVERY) => {}
                }
            }
        });
        Self {
            stop,
            sampler,
            so_far,
        }
    }

    /// The peaks so far, updated after each round of samples (tests).
    #[cfg(test)]
    fn so_far(&self) -> tokio::sync::watch::Receiver<Vec<Option<u64>>> {
        self.so_far.clone()
    }

    /// Stops sampling (call before the children are stopped); the peak of each pid, in order.
    pub(crate) async fn finish(self) -> Vec<Option<u64>> {
        self.stop.cancel();
        self.sampler.await.unwrap_or_default()
    }
}

/// Starts `adoport ROLE` as a child process with exactly `environment`.
pub(crate) fn spawn_role(
    role: &str,
    environment: &[(String, String)],
) -> anyhow::Result<tokio::process::Child> {
    let executable = std::env::current_exe().context("cannot find the adoport executable")?;
    spawn_role_of(&executable, role, environment)
}

/// The adoport whose roles a benchmark runs: `args.roles_binary` (another build, e.g. the
/// rss mode's `--baseline-binary`), else this one.
pub(crate) fn roles_executable(args: &crate::cli::BenchArgs) -> anyhow::Result<std::path::PathBuf> {
    match &args.roles_binary {
        Some(binary) => Ok(binary.clone()),
        None => std::env::current_exe().context("cannot find the adoport executable"),
    }
}

/// [`spawn_role`] of the adoport at `executable` (another build).
pub(crate) fn spawn_role_of(
    executable: &std::path::Path,
    role: &str,
    environment: &[(String, String)],
) -> anyhow::Result<tokio::process::Child> {
    tokio::process::Command::new(executable)
        .arg(role)
        .env_clear()
        .envs(environment.iter().cloned())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start `adoport {role}`"))
}

/// Runs `adoport all` in ONCE mode with `environment` until it exits; its run time in seconds
/// and peak memory (KiB).
pub(crate) async fn run_once(environment: &[(String, String)]) -> anyhow::Result<(f64, Peaks)> {
    let executable = std::env::current_exe().context("cannot find the adoport executable")?;
    run_once_with(&executable, environment).await
}

/// [`run_once`] with the adoport at `executable` (another build).
pub(crate) async fn run_once_with(
    executable: &std::path::Path,
    environment: &[(String, String)],
) -> anyhow::Result<(f64, Peaks)> {
    let started = Instant::now();
    let mut child = spawn_role_of(executable, "all", environment)?;
    let pid = child.id();
    // Read the peak just before the process ends: poll its status until it exits.
    let mut peak = Peaks::default();
    let status = loop {
        if let Some(pid) = pid {
            peak.sample(pid);
        }
        tokio::select! {
            status = child.wait() => break status?,
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
        }
        if started.elapsed() > PATIENCE {
            bail!("`adoport all` did not finish within {PATIENCE:?}");
        }
    };
    if !status.success() {
        bail!("`adoport all` (ONCE) exited with {status}");
    }
    Ok((started.elapsed().as_secs_f64(), peak))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The sampler sees memory a process holds for a while and lets go of, which its current
    /// `RssAnon` no longer shows.
    #[tokio::test]
    async fn the_anonymous_peak_outlasts_the_memory() {
        const HELD: usize = 64 * 1024 * 1024;
        let me = std::process::id();
        let before = anonymous_kib(me).expect("RssAnon of this process");
        let sampler = AnonymousPeaks::start(vec![Some(me), None]);
        // Every page written, so that it is resident; held until a sample saw it.
        let held = vec![7u8; HELD];
        let seen = before + (HELD / 1024) as u64 * 3 / 4;
        let mut so_far = sampler.so_far();
        let sampled = tokio::time::timeout(
            Duration::from_secs(30),
            so_far.wait_for(|peaks| peaks[0].is_some_and(|kib| kib >= seen)),
        )
        .await
        // The peaks' guard dropped here: the sampler cannot send while it is held.
        .is_ok_and(|seen| seen.is_ok());
        assert!(
            sampled,
            "no sample within 30 s saw {} KiB held after {before} KiB",
            HELD / 1024
        );
        assert_eq!(
            held.iter().map(|&b| u64::from(b)).sum::<u64>(),
            7 * HELD as u64
        );
        drop(held);
        // Let go of, and still the peak the sampler reports.
        let peaks = sampler.finish().await;
        let peak = peaks[0].expect("a peak of this process");
        assert!(
            peak >= seen,
            "peak {peak} KiB after {before} KiB with {} KiB held",
            HELD / 1024
        );
        assert_eq!(peaks[1], None, "a child that exited has no peak");
    }

    #[test]
    fn peaks_of_two_runs_are_the_larger_of_each() {
        let first = Peaks {
            resident_kib: Some(10),
            anonymous_kib: None,
        };
        let second = Peaks {
            resident_kib: Some(8),
            anonymous_kib: Some(5),
        };
        assert_eq!(
            first.max(second),
            Peaks {
                resident_kib: Some(10),
                anonymous_kib: Some(5),
            }
        );
    }
}
