//! Logging set-up shared by every role: structured `tracing`, JSON on request.
//!
//! `RUST_LOG` filters (roles default to `info`); `--log-json` (or `ADOPORT_LOG_JSON=true`)
//! switches to one JSON object per line for log collectors. Colours only on a terminal: a log
//! collector (docker, Kubernetes, a CI job) reads plain text. Secrets never reach a log line:
//! they are `Secret`s.
//!
//! A role's process also keeps its log lines for Port's log view, as the Python integration
//! ships them (`APPLICATION__ENABLE_HTTP_LOGGING`, default true): [`outbox`] is the layer that
//! keeps them, bounded and redacted ([`redact`]); publish sends them
//! (`adoport_publish::log_shipping`), because every write to Port is publish's. The layer
//! lives here because the subscriber is installed here, before any role or setting exists.

pub mod live_timing;
pub mod outbox;
pub mod redact;

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use outbox::{LOCAL_ONLY, LogOutbox};

/// Lines that make the shipper send at once (the Python integration's handler capacity).
pub const SHIP_BATCH: usize = 100;

static OUTBOX: OnceLock<LogOutbox> = OnceLock::new();

/// The outbox of this process's log lines for Port, when [`init`] was asked to keep them.
pub fn port_log_outbox() -> Option<LogOutbox> {
    OUTBOX.get().cloned()
}

/// The filter of a role when `RUST_LOG` is unset.
pub const ROLE_FILTER: &str = "info,lapin=warn";
/// The filter of the try-out tools (demo, bench), whose own output is the point.
pub const TOOL_FILTER: &str = "warn,lapin=error";

/// Installs the global subscriber with `default_filter` unless `RUST_LOG` says otherwise.
/// With `keep_for_port`, what passes the filter is also kept for Port's log view
/// ([`port_log_outbox`]). Call once, at start-up.
pub fn init(json: bool, default_filter: &str, keep_for_port: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let outbox = keep_for_port.then(|| OUTBOX.get_or_init(|| LogOutbox::new(SHIP_BATCH)).layer());
    let ansi = std::io::stdout().is_terminal();
    let registry = tracing_subscriber::registry().with(filter).with(outbox);
    let result = if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_target(false),
            )
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(ansi),
            )
            .try_init()
    };
    // Already installed (tests, or `all` calling twice): keep the first.
    let _ = result;
}
