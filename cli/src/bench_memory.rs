//! `adoport bench --mode rss`: peak resident memory against the organization's size.
//!
//! For each of `--sizes` (entities: `size / 100` projects × 99 repositories, the project and
//! repository kinds), it runs `adoport all` in ONCE mode twice (a first sync, then a fresh
//! process against the unchanged organization) and the three roles as separate processes on
//! RabbitMQ through two resyncs (the second reconciles against every entity Port holds), and
//! prints each process's peak resident memory (VmHWM) per size, against the targets: at most
//! [`ROLE_LIMIT_MIB`] per role and [`ALL_LIMIT_MIB`] for `adoport all`, the same (±10 %) at
//! every size. With `--baseline-binary`, that build's processes are measured too, size by
//! size before this build's (the same simulators and broker, one after the other), and a table
//! is printed for each.

use crate::bench::{Conditions, Figures, in_process, separate_processes};
use crate::cli::BenchArgs;

/// Repositories per project of the measured organizations.
const REPOSITORIES: usize = 99;
/// Target peak of each role on RabbitMQ, MiB.
const ROLE_LIMIT_MIB: f64 = 40.0;
/// Target peak of `adoport all`, MiB.
const ALL_LIMIT_MIB: f64 = 60.0;
/// How far the peak may differ between sizes (a share of the smallest size's figure).
const FLAT_TOLERANCE: f64 = 0.10;

/// The processes measured, in the order printed.
const PROCESSES: [&str; 4] = ["all", "ingest", "transform", "publish"];

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    // (label, the build whose processes run): the baseline first, if any.
    let builds: Vec<(String, Option<std::path::PathBuf>)> = args
        .baseline_binary
        .iter()
        .map(|b| (format!("baseline {}", b.display()), Some(b.clone())))
        .chain([("this build".to_string(), None)])
        .collect();
    let mut rows: Vec<Vec<(u64, Vec<Option<f64>>)>> = vec![Vec::new(); builds.len()];
    for &size in &args.sizes {
        let projects = (size / (REPOSITORIES + 1)).max(1);
        let expected = (projects + projects * REPOSITORIES) as u64;
        for ((label, binary), rows) in builds.iter().zip(rows.iter_mut()) {
            let mut sized = args.clone();
            sized.projects = projects;
            sized.repositories = REPOSITORIES;
            sized.roles_binary = binary.clone();
            println!(
                "rss, {label}: {projects} projects × {REPOSITORIES} repositories = {expected} entities"
            );
            let all = in_process(&sized, expected, Conditions::Unhindered).await?;
            let roles = separate_processes(&sized, expected).await?;
            let measured = peaks(&[all, roles]);
            // Each row as soon as it is measured: a long run's first rows are not lost with it.
            print_rows(&[(expected, measured.clone())]);
            rows.push((expected, measured));
        }
    }
    for ((label, _), rows) in builds.iter().zip(&rows) {
        println!();
        println!("{label}");
        print_rows(rows);
    }
    Ok(())
}

/// Peak (MiB) per process of [`PROCESSES`], from the runs' figures.
fn peaks(runs: &[Figures]) -> Vec<Option<f64>> {
    PROCESSES
        .iter()
        .map(|process| {
            runs.iter()
                .flat_map(|run| run.memory.iter())
                .find(|(name, _)| name == process)
                .and_then(|(_, kib)| kib.map(|kib| kib as f64 / 1024.0))
        })
        .collect()
}

fn print_rows(rows: &[(u64, Vec<Option<f64>>)]) {
    print!("{:<30}", "peak RSS (MiB)");
    for process in PROCESSES {
        print!(" {process:>10}");
    }
    println!();
    for (entities, peaks) in rows {
        print!("{:<30}", format!("{entities} entities"));
        for peak in peaks {
            match peak {
                Some(mib) => print!(" {mib:>10.1}"),
                None => print!(" {:>10}", "n/a"),
            }
        }
        println!();
    }
    print!("{:<30}", "target");
    for process in PROCESSES {
        let limit = if process == "all" {
            ALL_LIMIT_MIB
        } else {
            ROLE_LIMIT_MIB
        };
        print!(" {:>10}", format!("≤ {limit:.0}"));
    }
    println!();
    let Some((_, smallest)) = rows.first() else {
        return;
    };
    print!("{:<30}", "largest vs smallest size");
    for (index, base) in smallest.iter().enumerate() {
        let largest = rows
            .iter()
            .filter_map(|(_, peaks)| peaks[index])
            .fold(f64::MIN, f64::max);
        match base {
            Some(base) if *base > 0.0 => {
                let change = (largest - base) / base;
                let mark = if change.abs() <= FLAT_TOLERANCE {
                    ""
                } else {
                    " !"
                };
                print!(" {:>10}", format!("{:+.0} %{mark}", change * 100.0));
            }
            _ => print!(" {:>10}", "n/a"),
        }
    }
    println!();
}
