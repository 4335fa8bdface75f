//! `adoport`: parse arguments and hand over to the library. Nothing else lives here.

use clap::Parser;

use adoport::cli::Cli;

fn main() -> std::process::ExitCode {
    // Before the runtime starts its threads: malloc's settings apply to every thread.
    adoport::allocator::tune();
    if let Err(error) = adoport::allocator::start_trimming() {
        eprintln!(
            "adoport: cannot start the thread that returns free memory: {error}; running without it"
        );
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("adoport: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(adoport::command::execute(Cli::parse()))
}
