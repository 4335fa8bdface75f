//! `adoport`: parse arguments, read settings, hand over to the library. Nothing else lives here.

use clap::Parser;

use adoport::cli::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = match cli.command {
        Command::Demo(_) | Command::Bench(_) | Command::BenchMapping(_) => {
            adoport_shared::telemetry::TOOL_FILTER
        }
        _ => adoport_shared::telemetry::ROLE_FILTER,
    };
    adoport_shared::telemetry::init(cli.log_json, filter);
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            // `{:#}` prints the whole chain: what failed, and why.
            eprintln!("adoport: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Demo(args) => adoport::demo::run(args).await,
        Command::Sim(args) => adoport::sim::run(args).await,
        Command::Bench(args) => adoport::bench::run(args).await,
        Command::BenchMapping(args) => adoport::bench_mapping::run(args),
        Command::CheckConfig(args) => adoport::roles::check_config(args),
        Command::Ingest => adoport::roles::run_role(adoport::roles::Role::Ingest).await,
        Command::Transform => adoport::roles::run_role(adoport::roles::Role::Transform).await,
        Command::Publish => adoport::roles::run_role(adoport::roles::Role::Publish).await,
        Command::All => adoport::roles::run_role(adoport::roles::Role::All).await,
        Command::Replay(args) => adoport::operate::replay(args).await,
        Command::Dlq(args) => adoport::operate::dlq(args).await,
        Command::Mapping(command) => adoport::mapping_cmd::run(command),
    }
}
