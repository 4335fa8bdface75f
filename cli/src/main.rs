//! `adoport`: parse arguments and hand over to the library. Nothing else lives here.

use clap::Parser;

use adoport::cli::Cli;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    adoport::command::execute(Cli::parse()).await
}
