//! `soak`: the chaos soak for as long as asked, printing its figures; exit 0 on PASS, 1 on
//! FAIL (see `adoport_tests::soak`).
//!
//! ```sh
//! cargo run -p adoport-tests --release --bin soak -- --duration 30m --seed 42
//! ```
//!
//! The role processes it starts are this binary run as `soak adoport ROLE`, which is
//! `adoport ROLE` exactly (`adoport::command::execute`, what the `adoport` binary's `main` calls):
//! a binary of another package is not built by `cargo run -p adoport-tests`, and a soak that
//! tested a stale `adoport` left in `target/` would prove nothing.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use adoport_tests::soak::fleet::Executable;
use adoport_tests::soak::{SoakConfig, run};

/// The chaos soak of adoport's scaled-out stack (RabbitMQ must be installed; a private node is
/// started).
#[derive(Debug, Parser)]
#[command(name = "soak")]
struct Args {
    /// Length of the chaos phase: `90s`, `30m`, `2h` (the calm and the comparison come on top).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    duration: Duration,
    /// Seed of every random choice (printed; re-run a failure with it). Default: from the clock.
    #[arg(long)]
    seed: Option<u64>,
    /// Projects of the simulated organization at the start.
    #[arg(long, default_value_t = 6)]
    projects: usize,
    /// Repositories per project at the start.
    #[arg(long, default_value_t = 4)]
    repositories: usize,
    /// Where the replicas' logs go (default: a temporary directory, removed on PASS).
    #[arg(long)]
    logs: Option<std::path::PathBuf>,
    /// Length of the Port outage (default: 60s in runs of 10m or more, proportionally less).
    #[arg(long, value_parser = parse_duration)]
    port_outage: Option<Duration>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(text.len()),
    );
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number and a unit, e.g. 90s, 30m, 2h"))?;
    let seconds = match unit {
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{text:?}: the unit must be s, m or h")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

fn main() -> ExitCode {
    let mut arguments = std::env::args();
    let program = arguments.next().unwrap_or_default();
    if std::env::args().nth(1).as_deref() == Some("adoport") {
        // A role process of the soak: `adoport` itself.
        let cli = adoport::cli::Cli::parse_from(
            std::iter::once("adoport".to_string()).chain(arguments.skip(1)),
        );
        return tokio_main(adoport::command::execute(cli));
    }
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() % 100_000)
    });
    let config = SoakConfig {
        duration: args.duration,
        seed,
        executable: Executable {
            program: std::env::current_exe().unwrap_or_else(|_| program.into()),
            arguments: vec!["adoport".into()],
        },
        projects: args.projects,
        repositories: args.repositories,
        directory: args.logs,
        port_outage: args.port_outage,
    };
    tokio_main(async move {
        // Interrupted (SIGINT, SIGTERM), the run is dropped: its replicas (killed on drop) and its RabbitMQ node
        // (killed, its directory removed) go with it.
        let signalled = tokio_util::sync::CancellationToken::new();
        adoport_shared::shutdown::cancel_on_signal(signalled.clone());
        let outcome = tokio::select! {
            outcome = run(config) => outcome,
            _ = signalled.cancelled() => {
                eprintln!("soak: interrupted; the replicas and the RabbitMQ node are stopped");
                return ExitCode::from(130);
            }
        };
        match outcome {
            Ok(report) => {
                println!("{}", report.render());
                if report.passed() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("soak: {e:#}");
                ExitCode::from(2)
            }
        }
    })
}

fn tokio_main(future: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(future),
        Err(e) => {
            eprintln!("soak: cannot start the async runtime: {e}");
            ExitCode::from(2)
        }
    }
}
