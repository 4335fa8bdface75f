//! The processes a benchmark starts: `adoport <role>` as a child with exactly the environment
//! given, and its peak resident memory, for `bench` and `bench_scaling` alike.

use std::process::Stdio;

use anyhow::Context;

/// Peak resident memory of a process, in KiB (Linux).
pub(crate) fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Starts `adoport ROLE` as a child process with exactly `environment`.
pub(crate) fn spawn_role(
    role: &str,
    environment: &[(String, String)],
) -> anyhow::Result<tokio::process::Child> {
    let executable = std::env::current_exe().context("cannot find the adoport executable")?;
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
