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
pub(crate) async fn run_once(
    environment: &[(String, String)],
) -> anyhow::Result<(f64, Option<u64>)> {
    let executable = std::env::current_exe().context("cannot find the adoport executable")?;
    run_once_with(&executable, environment).await
}

/// [`run_once`] with the adoport at `executable` (another build).
pub(crate) async fn run_once_with(
    executable: &std::path::Path,
    environment: &[(String, String)],
) -> anyhow::Result<(f64, Option<u64>)> {
    let started = Instant::now();
    let mut child = spawn_role_of(executable, "all", environment)?;
    let pid = child.id();
    // Read the peak just before the process ends: poll its status until it exits.
    let mut peak = None;
    let status = loop {
        if let Some(pid) = pid {
            peak = peak_rss_kib(pid).or(peak);
        }
        tokio::select! {
            status = child.wait() => break status?,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
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
