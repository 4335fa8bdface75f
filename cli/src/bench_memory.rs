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
//!
//! Each size is measured `--rounds` times (every build once a round, alternating), and each
//! figure of the summary is the median of its rounds: a process's peak moves by a few MiB
//! between runs of the same build on the same organization (how far the pages of the crawl,
//! the queues and malloc's free lists happen to fill at once), which a single run mistakes for
//! growth, or hides.
//!
//! Each table is printed twice: the peak resident memory the targets are set on (`VmHWM`), and
//! the peak anonymous resident memory (`RssAnon`, sampled): what the process allocated,
//! without its executable's pages, whose residency follows the machine's page cache (see
//! [`crate::bench_processes::Peaks`]). Whether memory grows with the organization is read on
//! the second as much as on the first.

use crate::bench::{Conditions, Figures, in_process, separate_processes};
use crate::bench_processes::Peaks;
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
    let rounds = args.rounds.max(1);
    let mut rows: Vec<Vec<(u64, Vec<Peaks>)>> = vec![Vec::new(); builds.len()];
    for &size in &args.sizes {
        let projects = (size / (REPOSITORIES + 1)).max(1);
        let expected = (projects + projects * REPOSITORIES) as u64;
        let mut measured: Vec<Vec<Vec<Peaks>>> = vec![Vec::new(); builds.len()];
        for round in 1..=rounds {
            for ((label, binary), measured) in builds.iter().zip(measured.iter_mut()) {
                let mut sized = args.clone();
                sized.projects = projects;
                sized.repositories = REPOSITORIES;
                sized.roles_binary = binary.clone();
                println!(
                    "rss, {label}, round {round} of {rounds}: {projects} projects × {REPOSITORIES} repositories = {expected} entities"
                );
                let all = in_process(&sized, expected, Conditions::Unhindered).await?;
                let roles = separate_processes(&sized, expected).await?;
                let peaks = peaks(&[all, roles]);
                // Each round as soon as it is measured: a long run's first rounds are not lost
                // with it.
                print_tables(&[(expected, peaks.clone())]);
                measured.push(peaks);
            }
        }
        for (rows, rounds) in rows.iter_mut().zip(&measured) {
            rows.push((expected, median_peaks(rounds)));
        }
    }
    for ((label, _), rows) in builds.iter().zip(&rows) {
        println!();
        println!("{label}, median of {rounds} round(s) per size");
        print_tables(rows);
    }
    Ok(())
}

/// Each process's median of each figure over `rounds` (the lower middle of an even count).
fn median_peaks(rounds: &[Vec<Peaks>]) -> Vec<Peaks> {
    let median = |figures: Vec<Option<u64>>| {
        let mut figures: Vec<u64> = figures.into_iter().flatten().collect();
        figures.sort_unstable();
        figures.get(figures.len().saturating_sub(1) / 2).copied()
    };
    (0..PROCESSES.len())
        .map(|process| {
            let of = |figure: fn(&Peaks) -> Option<u64>| {
                median(
                    rounds
                        .iter()
                        .map(|round| round.get(process).and_then(figure))
                        .collect(),
                )
            };
            Peaks {
                resident_kib: of(|p| p.resident_kib),
                anonymous_kib: of(|p| p.anonymous_kib),
            }
        })
        .collect()
}

/// Peaks per process of [`PROCESSES`], from the runs' figures.
fn peaks(runs: &[Figures]) -> Vec<Peaks> {
    PROCESSES
        .iter()
        .map(|process| {
            runs.iter()
                .flat_map(|run| run.memory.iter())
                .find(|(name, _)| name == process)
                .map(|(_, peaks)| *peaks)
                .unwrap_or_default()
        })
        .collect()
}

/// The resident table (against the targets), then the anonymous one.
fn print_tables(rows: &[(u64, Vec<Peaks>)]) {
    print!("{}", tables(rows));
}

/// [`print_tables`]' text: a line per size, then the targets (resident only) and each
/// process's growth from the smallest size to the largest peak (when there are two sizes).
fn tables(rows: &[(u64, Vec<Peaks>)]) -> String {
    let mib = |kib: Option<u64>| kib.map(|kib| kib as f64 / 1024.0);
    let of = |figure: fn(&Peaks) -> Option<u64>| -> Vec<(u64, Vec<Option<f64>>)> {
        rows.iter()
            .map(|(entities, peaks)| (*entities, peaks.iter().map(|p| mib(figure(p))).collect()))
            .collect()
    };
    let mut text = table("peak RSS (MiB)", true, &of(|p| p.resident_kib));
    text.push_str(&table(
        "peak anonymous RSS (MiB)",
        false,
        &of(|p| p.anonymous_kib),
    ));
    text
}

fn table(title: &str, targets: bool, rows: &[(u64, Vec<Option<f64>>)]) -> String {
    let mut text = format!("{title:<30}");
    for process in PROCESSES {
        text.push_str(&format!(" {process:>10}"));
    }
    text.push('\n');
    for (entities, peaks) in rows {
        text.push_str(&format!("{:<30}", format!("{entities} entities")));
        for peak in peaks {
            match peak {
                Some(mib) => text.push_str(&format!(" {mib:>10.1}")),
                None => text.push_str(&format!(" {:>10}", "n/a")),
            }
        }
        text.push('\n');
    }
    if targets {
        text.push_str(&format!("{:<30}", "target"));
        for process in PROCESSES {
            let limit = if process == "all" {
                ALL_LIMIT_MIB
            } else {
                ROLE_LIMIT_MIB
            };
            text.push_str(&format!(" {:>10}", format!("≤ {limit:.0}")));
        }
        text.push('\n');
    }
    // A table of one size (each round's, as it is measured) has no growth to show.
    let [(_, smallest), _, ..] = rows else {
        return text;
    };
    text.push_str(&format!("{:<30}", "largest vs smallest size"));
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
                text.push_str(&format!(
                    " {:>10}",
                    format!("{:+.0} %{mark}", change * 100.0)
                ));
            }
            _ => text.push_str(&format!(" {:>10}", "n/a")),
        }
    }
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peaks(resident_kib: u64, anonymous_kib: Option<u64>) -> Peaks {
        Peaks {
            resident_kib: Some(resident_kib),
            anonymous_kib,
        }
    }

    #[test]
    fn growth_is_shown_for_two_sizes_and_not_for_one() {
        let small = vec![peaks(30 * 1024, Some(15 * 1024)); PROCESSES.len()];
        let large = vec![peaks(36 * 1024, Some(15 * 1024)); PROCESSES.len()];
        let one = tables(&[(5_000, small.clone())]);
        assert!(one.contains("5000 entities"), "{one}");
        assert!(!one.contains("largest vs smallest"), "{one}");
        let two = tables(&[(5_000, small), (80_000, large)]);
        let growth: Vec<&str> = two
            .lines()
            .filter(|line| line.starts_with("largest vs smallest"))
            .collect();
        assert_eq!(growth.len(), 2, "{two}");
        assert!(growth[0].contains("+20 % !"), "{two}");
        assert!(
            growth[1].contains("+0 %") && !growth[1].contains('!'),
            "{two}"
        );
    }

    #[test]
    fn each_figure_is_the_median_of_its_rounds() {
        let rounds = vec![
            vec![peaks(30, Some(15)), peaks(40, None)],
            vec![peaks(36, Some(12)), peaks(20, Some(9))],
            vec![peaks(31, Some(20)), peaks(25, Some(7))],
        ];
        let median = median_peaks(&rounds);
        assert_eq!(median[0], peaks(31, Some(15)));
        // A round without a figure does not count; of two, the lower.
        assert_eq!(median[1], peaks(25, Some(7)));
        // Processes no round measured have no figure.
        assert_eq!(median[2], Peaks::default());
        assert_eq!(median.len(), PROCESSES.len());
    }
}
