//! The log lines waiting to be shipped to Port's log view, and the `tracing` layer that puts
//! them there, in the shape the Python integration sends them (`{message, level, timestamp,
//! extra}`, `extra` holding `hostname`, `instance` and the event's fields).
//!
//! This module only keeps lines: sending them is publish's (every write to Port is), which
//! takes them with [`LogOutbox::take`]. Keeping them never blocks and never grows without
//! bound: the outbox holds at most [`OUTBOX_LINES`] lines and [`OUTBOX_BYTES`] bytes, and when
//! Port is slow or down the oldest line gives way and is counted ([`LogOutbox::dropped`]). A
//! line waits as its JSON text, so that the byte bound is what it holds in memory (as parsed
//! JSON, every line's object and `extra` map took about three times its text: 8.7 MiB for a
//! full outbox of a crawl's warnings). A line leaves the outbox parsed and redacted
//! ([`super::redact`]): secrets never reach Port.
//!
//! Not kept: events with a `local_only` field (the Python integration's `local_only` binding;
//! the shipper's own complaints carry it, so a failing shipment is not shipped in a loop) and
//! events of the HTTP stack (`hyper`, `reqwest`, `h2`, `rustls`, …), which every shipment would
//! otherwise feed at debug level.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{Map, Value, json};
use tokio::sync::Notify;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

use super::redact::Redactor;

/// Most lines the outbox holds.
pub const OUTBOX_LINES: usize = 5_000;
/// Most bytes (of the lines' JSON) the outbox holds.
pub const OUTBOX_BYTES: usize = 4 * 1024 * 1024;
/// Longest message or field value kept; longer ones are cut (and say so).
pub const LONGEST_TEXT: usize = 8 * 1024;
/// The field that keeps an event out of the outbox: `tracing::warn!(local_only = true, …)`.
pub const LOCAL_ONLY: &str = "local_only";
/// Targets whose events are not kept (the HTTP stack every shipment runs through).
const UNSHIPPED_TARGETS: [&str; 7] = [
    "hyper",
    "hyper_util",
    "reqwest",
    "h2",
    "rustls",
    "tower",
    "tower_http",
];

/// A handle on the outbox; clones share it.
#[derive(Clone)]
pub struct LogOutbox {
    inner: Arc<Inner>,
}

struct Inner {
    lines: Mutex<Lines>,
    redactor: RwLock<Redactor>,
    /// Lines that gave way to newer ones (or were refused while closed, never counted).
    dropped: AtomicU64,
    /// Lines Port took.
    shipped: AtomicU64,
    /// Lines taken for a shipment that failed (lost: a shipment is not retried).
    lost: AtomicU64,
    /// Whether lines are kept (false once shipping is turned off).
    open: AtomicBool,
    /// Signalled when the outbox reaches `wake_at` lines.
    ready: Notify,
    wake_at: usize,
    hostname: String,
    instance: String,
}

#[derive(Default)]
struct Lines {
    /// Each line's JSON text.
    queue: VecDeque<Box<str>>,
    /// The lines' bytes of text.
    bytes: usize,
}

impl std::fmt::Debug for LogOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogOutbox")
            .field("lines", &self.len())
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl LogOutbox {
    /// An open outbox that wakes [`LogOutbox::ready`] waiters at `wake_at` lines.
    pub fn new(wake_at: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                lines: Mutex::new(Lines::default()),
                redactor: RwLock::new(Redactor::default()),
                dropped: AtomicU64::new(0),
                shipped: AtomicU64::new(0),
                lost: AtomicU64::new(0),
                open: AtomicBool::new(true),
                ready: Notify::new(),
                wake_at: wake_at.max(1),
                hostname: hostname(),
                instance: uuid::Uuid::new_v4().to_string(),
            }),
        }
    }

    /// The `tracing` layer that fills this outbox.
    pub fn layer(&self) -> OutboxLayer {
        OutboxLayer {
            outbox: self.clone(),
        }
    }

    /// Masks these secret values in every line taken from now on (lines already kept
    /// included: redaction happens on the way out).
    pub fn hide<I, S>(&self, secrets: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.inner
            .redactor
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .hide(secrets);
    }

    /// Stops keeping lines and forgets those kept (shipping is off).
    pub fn close(&self) {
        self.inner.open.store(false, Ordering::Release);
        let mut lines = self.lines();
        lines.queue.clear();
        lines.bytes = 0;
    }

    /// Whether lines are kept.
    pub fn is_open(&self) -> bool {
        self.inner.open.load(Ordering::Acquire)
    }

    /// Up to `max` of the oldest lines, redacted, removed from the outbox.
    pub fn take(&self, max: usize) -> Vec<Value> {
        let taken: Vec<Box<str>> = {
            let mut lines = self.lines();
            let n = max.min(lines.queue.len());
            let taken: Vec<Box<str>> = lines.queue.drain(..n).collect();
            lines.bytes -= taken.iter().map(|line| line.len()).sum::<usize>();
            taken
        };
        let redactor = self
            .inner
            .redactor
            .read()
            .unwrap_or_else(|p| p.into_inner());
        taken
            .iter()
            // Text the outbox wrote itself from a JSON value: it parses back.
            .filter_map(|text| serde_json::from_str::<Value>(text).ok())
            .map(|mut line| {
                redactor.redact_value(&mut line);
                line
            })
            .collect()
    }

    /// Lines waiting.
    pub fn len(&self) -> usize {
        self.lines().queue.len()
    }

    /// Whether no line waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lines that gave way to newer ones because the outbox was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Counts lines Port took (the shipper calls it).
    pub fn count_shipped(&self, lines: usize) {
        self.inner
            .shipped
            .fetch_add(lines as u64, Ordering::Relaxed);
    }

    /// Counts lines of a shipment that failed (the shipper calls it).
    pub fn count_lost(&self, lines: usize) {
        self.inner.lost.fetch_add(lines as u64, Ordering::Relaxed);
    }

    /// Lines Port took.
    pub fn shipped(&self) -> u64 {
        self.inner.shipped.load(Ordering::Relaxed)
    }

    /// Lines lost with a failed shipment.
    pub fn lost(&self) -> u64 {
        self.inner.lost.load(Ordering::Relaxed)
    }

    /// Waits until the outbox holds its wake-up count of lines (or returns at once if it
    /// does).
    pub async fn ready(&self) {
        let notified = self.inner.ready.notified();
        if self.len() >= self.inner.wake_at {
            return;
        }
        notified.await;
    }

    /// Keeps one line, the oldest giving way when full. Never blocks on anything but the
    /// outbox's own short lock.
    pub fn push(&self, line: Value) {
        if !self.is_open() {
            return;
        }
        // A JSON value always serializes (its map keys are strings).
        let Ok(text) = serde_json::to_string(&line) else {
            return;
        };
        let text = text.into_boxed_str();
        let size = text.len();
        let (len, dropped) = {
            let mut lines = self.lines();
            let mut dropped = 0;
            while !lines.queue.is_empty()
                && (lines.queue.len() >= OUTBOX_LINES || lines.bytes + size > OUTBOX_BYTES)
            {
                if let Some(gone) = lines.queue.pop_front() {
                    lines.bytes -= gone.len();
                    dropped += 1;
                }
            }
            lines.bytes += size;
            lines.queue.push_back(text);
            (lines.queue.len(), dropped)
        };
        if dropped > 0 {
            self.inner.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        if len >= self.inner.wake_at {
            self.inner.ready.notify_waiters();
        }
    }

    fn lines(&self) -> std::sync::MutexGuard<'_, Lines> {
        self.inner.lines.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The line the Python integration sends for a log record.
    fn line(&self, level: &Level, message: String, fields: Map<String, Value>) -> Value {
        let mut extra = Map::new();
        extra.insert("hostname".into(), json!(self.inner.hostname));
        extra.insert("instance".into(), json!(self.inner.instance));
        extra.extend(fields);
        json!({
            "message": message.trim_end_matches('\n'),
            "level": level_name(level),
            "timestamp": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            "extra": extra,
        })
    }
}

/// Ocean's (loguru's) level names.
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Cuts `text` to [`LONGEST_TEXT`] bytes (on a character boundary), saying so.
fn bounded(mut text: String) -> String {
    if text.len() > LONGEST_TEXT {
        let mut cut = LONGEST_TEXT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(" …[cut]");
    }
    text
}

/// The `tracing` layer of a [`LogOutbox`].
pub struct OutboxLayer {
    outbox: LogOutbox,
}

impl<S: Subscriber> Layer<S> for OutboxLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if !self.outbox.is_open() {
            return;
        }
        let krate = event.metadata().target().split("::").next();
        if krate.is_some_and(|k| UNSHIPPED_TARGETS.contains(&k)) {
            return;
        }
        let mut visitor = Fields::default();
        event.record(&mut visitor);
        if visitor.local_only {
            return;
        }
        let line = self.outbox.line(
            event.metadata().level(),
            bounded(visitor.message),
            visitor.fields,
        );
        self.outbox.push(line);
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    fields: Map<String, Value>,
    local_only: bool,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.record_text(field, text);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_text(field, value.to_string());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == LOCAL_ONLY {
            self.local_only = value;
        }
        self.fields.insert(field.name().into(), json!(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.insert(field.name().into(), json!(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.insert(field.name().into(), json!(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.fields.insert(field.name().into(), json!(value));
    }
}

impl Fields {
    fn record_text(&mut self, field: &Field, text: String) {
        if field.name() == "message" {
            self.message = text;
        } else {
            if field.name() == LOCAL_ONLY {
                self.local_only = true;
            }
            self.fields
                .insert(field.name().into(), Value::String(bounded(text)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    fn with_outbox(outbox: &LogOutbox, f: impl FnOnce()) {
        let subscriber = tracing_subscriber::registry().with(outbox.layer());
        tracing::subscriber::with_default(subscriber, f);
    }

    #[test]
    fn a_line_has_the_python_integrations_shape() {
        let outbox = LogOutbox::new(100);
        with_outbox(&outbox, || {
            tracing::warn!(kind = "repository", items = 3_u64, "crawl slow\n");
        });
        let lines = outbox.take(10);
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["message"], "crawl slow");
        assert_eq!(line["level"], "WARNING");
        assert_eq!(line["extra"]["kind"], "repository");
        assert_eq!(line["extra"]["items"], 3);
        assert!(line["extra"]["hostname"].is_string());
        assert!(line["extra"]["instance"].is_string());
        let timestamp = line["timestamp"].as_str().expect("timestamp");
        assert!(
            chrono::NaiveDateTime::parse_from_str(timestamp, "%Y-%m-%dT%H:%M:%S%.6fZ").is_ok(),
            "{timestamp}"
        );
        assert!(outbox.is_empty());
    }

    #[test]
    fn local_only_lines_and_the_http_stack_are_not_kept() {
        let outbox = LogOutbox::new(100);
        with_outbox(&outbox, || {
            tracing::warn!(local_only = true, "could not ship the logs");
            tracing::info!(target: "hyper_util::client", "connecting");
            tracing::info!(target: "reqwest::connect", "connecting");
            tracing::info!("kept");
        });
        let lines = outbox.take(10);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["message"], "kept");
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_and_counts() {
        let outbox = LogOutbox::new(100);
        with_outbox(&outbox, || {
            for i in 0..OUTBOX_LINES + 7 {
                tracing::info!(i, "line");
            }
        });
        assert_eq!(outbox.len(), OUTBOX_LINES);
        assert_eq!(outbox.dropped(), 7);
        assert_eq!(outbox.take(1)[0]["extra"]["i"], 7);
    }

    #[test]
    fn the_byte_bound_holds_for_large_lines() {
        let outbox = LogOutbox::new(100);
        let big = "x".repeat(LONGEST_TEXT * 4);
        with_outbox(&outbox, || {
            for _ in 0..2_000 {
                tracing::info!(body = %big, "{big}");
            }
        });
        let bytes: usize = outbox
            .take(usize::MAX)
            .iter()
            .map(|l| serde_json::to_string(l).map_or(0, |s| s.len()))
            .sum();
        assert!(bytes <= OUTBOX_BYTES, "{bytes}");
        assert!(outbox.dropped() > 0);
    }

    #[test]
    fn secrets_are_masked_on_the_way_out_even_if_hidden_late() {
        let outbox = LogOutbox::new(100);
        with_outbox(&outbox, || {
            tracing::error!(
                header = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
                "PAT pat-secret-value refused"
            );
        });
        outbox.hide(["pat-secret-value"]);
        let text = serde_json::to_string(&outbox.take(10)).expect("json");
        assert!(!text.contains("pat-secret-value"), "{text}");
        assert!(!text.contains("eyJhbGciOiJIUzI1NiJ9"), "{text}");
        assert!(text.contains("[REDACTED]"), "{text}");
    }

    #[test]
    fn a_closed_outbox_keeps_nothing() {
        let outbox = LogOutbox::new(100);
        with_outbox(&outbox, || tracing::info!("before"));
        outbox.close();
        with_outbox(&outbox, || tracing::info!("after"));
        assert!(outbox.is_empty());
    }

    #[tokio::test]
    async fn ready_wakes_at_the_wake_up_count() {
        let outbox = LogOutbox::new(3);
        let waiter = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.ready().await }
        });
        tokio::task::yield_now().await;
        for i in 0..3 {
            outbox.push(json!({ "message": i }));
        }
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("joined");
    }
}
