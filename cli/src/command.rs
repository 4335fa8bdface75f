//! What the `adoport` binary does with a parsed command line ([`crate::cli`]): set up logging,
//! dispatch to the role or tool, and turn an error into exit status 1. It sits above every
//! module it dispatches to, so that those can use the argument types without a loop.

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// What the `adoport` binary does with its command line: set up logging, run the command, and
/// turn an error into exit status 1 with the whole chain on stderr. `main.rs` is this call; the
/// chaos soak (`tests/src/bin/soak.rs`) runs its role processes through it too, so they are
/// `adoport` exactly.
pub async fn execute(cli: Cli) -> ExitCode {
    let filter = match cli.command {
        Command::Demo(_) | Command::Bench(_) | Command::BenchMapping(_) => {
            adoport_shared::telemetry::TOOL_FILTER
        }
        // The Python integration's OCEAN__LOG_LEVEL sets the roles' level (RUST_LOG wins).
        _ => adoport_shared::config::role_filter_from_env()
            .unwrap_or(adoport_shared::telemetry::ROLE_FILTER),
    };
    // The roles keep their log lines for Port's log view (shipped once the settings say so,
    // see `roles::run`); the tools do not.
    let keep_for_port = matches!(
        cli.command,
        Command::Ingest | Command::Transform | Command::Publish | Command::All
    );
    adoport_shared::telemetry::init(cli.log_json, filter, keep_for_port);
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            // `{:#}` prints the whole chain: what failed, and why.
            eprintln!("adoport: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    use crate::roles::{Role, run_role};
    match cli.command {
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Sim(args) => crate::sim::run(args).await,
        // The memory mode runs the bench's own runs at several sizes: above `bench`.
        Command::Bench(args) if args.mode == crate::cli::BenchMode::Rss => {
            crate::bench_memory::run(&args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => crate::bench::run(args).await,
        Command::BenchMapping(args) => crate::bench_mapping::run(args),
        Command::CheckConfig(args) => crate::roles::check_config(args),
        Command::Ingest => run_role(Role::Ingest).await,
        Command::Transform => run_role(Role::Transform).await,
        Command::Publish => run_role(Role::Publish).await,
        Command::All => run_role(Role::All).await,
        Command::Replay(args) => crate::operate::replay(args).await,
        Command::Dlq(args) => crate::operate::dlq(args).await,
        Command::Mapping(command) => crate::mapping_cmd::run(command),
    }
}
