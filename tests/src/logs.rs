//! The tests' log subscriber: what the code under test logs is shown for failing tests (as
//! before), and kept in memory so that a test can wait for a line (e.g. "the log names the
//! broker within seconds").
//!
//! One subscriber per test binary, installed by the first caller. The last
//! [`KEPT_LINES`] lines are kept; `RUST_LOG` sets the filter (default `info,lapin=warn`).

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::watch;
use tracing_subscriber::fmt::MakeWriter;

/// Lines kept in memory.
const KEPT_LINES: usize = 20_000;

/// What the code under test logged.
pub struct Logs {
    lines: Mutex<VecDeque<String>>,
    /// Counts lines, so that waiters wake on each new one.
    written: watch::Sender<u64>,
}

static LOGS: OnceLock<Logs> = OnceLock::new();

/// Installs the subscriber (once per binary) and returns the log.
pub fn logs() -> &'static Logs {
    let mut installed = false;
    let logs = LOGS.get_or_init(|| {
        installed = true;
        Logs {
            lines: Mutex::new(VecDeque::new()),
            written: watch::channel(0).0,
        }
    });
    if installed {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,lapin=warn")),
            )
            .with_ansi(false)
            .with_writer(Tee(logs))
            .try_init();
    }
    logs
}

impl Logs {
    /// The first line logged so far for which `matches` holds.
    pub fn find(&self, matches: impl Fn(&str) -> bool) -> Option<String> {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.iter().find(|line| matches(line)).cloned()
    }

    /// Waits (at most `limit`) for a line for which `matches` holds, already logged or new.
    pub async fn wait_for(
        &self,
        limit: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let mut written = self.written.subscribe();
        let found = async {
            loop {
                if let Some(line) = self.find(&matches) {
                    return line;
                }
                if written.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(limit, found).await.ok()
    }

    fn keep(&self, text: &str) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        for line in text.lines() {
            if lines.len() == KEPT_LINES {
                lines.pop_front();
            }
            lines.push_back(line.to_string());
        }
        drop(lines);
        self.written.send_modify(|n| *n += 1);
    }
}

/// Writes each event both to the test's output and to [`Logs`].
#[derive(Clone, Copy)]
struct Tee(&'static Logs);

/// One event's text, handed over when the formatter is done with it.
struct Event {
    logs: &'static Logs,
    text: Vec<u8>,
}

impl<'a> MakeWriter<'a> for Tee {
    type Writer = Event;

    fn make_writer(&'a self) -> Self::Writer {
        Event {
            logs: self.0,
            text: Vec::new(),
        }
    }
}

impl Write for Event {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.text);
        // `print!` goes through the test harness's capture, like `with_test_writer`.
        print!("{text}");
        self.logs.keep(&text);
    }
}
