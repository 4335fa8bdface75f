//! Logging set-up shared by every role: structured `tracing`, JSON on request.
//!
//! `RUST_LOG` filters (default `info`); `ADOPORT_LOG_FORMAT=json` switches to one JSON object
//! per line for log collectors. Secrets never reach a log line: they are `Secret`s.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Call once, at start-up.
pub fn init(json: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,lapin=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    // Already installed (tests, or `all` calling twice): keep the first.
    let _ = result;
}
