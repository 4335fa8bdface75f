//! Logging set-up shared by every role: structured `tracing`, JSON on request.
//!
//! `RUST_LOG` filters (roles default to `info`); `--log-json` (or `ADOPORT_LOG_JSON=true`)
//! switches to one JSON object per line for log collectors. Colours only on a terminal: a log
//! collector (docker, Kubernetes, a CI job) reads plain text. Secrets never reach a log line:
//! they are `Secret`s.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The filter of a role when `RUST_LOG` is unset.
pub const ROLE_FILTER: &str = "info,lapin=warn";
/// The filter of the try-out tools (demo, bench), whose own output is the point.
pub const TOOL_FILTER: &str = "warn,lapin=error";

/// Installs the global subscriber with `default_filter` unless `RUST_LOG` says otherwise.
/// Call once, at start-up.
pub fn init(json: bool, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal());
    let result = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    // Already installed (tests, or `all` calling twice): keep the first.
    let _ = result;
}
