//! Ships the process's log lines to Port's log view, as the Python integration does
//! (`APPLICATION__ENABLE_HTTP_LOGGING`, default true): `POST {logAttributes.ingestUrl}` of the
//! integration record with `{"logs": [{message, level, timestamp, extra}, …]}`.
//!
//! The lines come from the outbox the `tracing` layer fills (`adoport_shared::telemetry`),
//! already redacted. They are sent when [`SHIP_BATCH`] (100) are waiting or every
//! [`FLUSH_INTERVAL`] (5 s), Ocean's capacity and flush interval, in shipments of at most
//! [`SHIP_BATCH`] lines, one at a time, and once more (for at most [`FINAL_FLUSH`]) when the
//! process stops.
//!
//! Like Ocean, a failed shipment is not retried: its lines are lost and counted, the ingest URL
//! is read again from the record before a later shipment (Port may have moved it), and one
//! WARN line says so — a
//! `local_only` line, which the outbox does not keep, so a failing shipment never ships its own
//! failure in a loop. Unlike Ocean, nothing waits on Port: while Port is slow or down the
//! outbox keeps its newest lines within its bound and counts those that gave way. An
//! integration record without `logAttributes.ingestUrl` (yet) leaves the lines waiting, and the
//! record is read again at most every [`RECORD_RECHECK`].

use std::time::{Duration, Instant};

use adoport_shared::telemetry::LogOutbox;
pub use adoport_shared::telemetry::SHIP_BATCH;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::client::PortClient;

/// Longest a line waits in the outbox while Port takes shipments.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// Least time between two reads of the integration record for its log ingest URL.
pub const RECORD_RECHECK: Duration = Duration::from_secs(30);
/// How long the last shipment at stop may take.
pub const FINAL_FLUSH: Duration = Duration::from_secs(5);
/// Least time between two WARN lines about lines that gave way in a full outbox.
const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// Where Port takes the integration's log lines: the record's `logAttributes.ingestUrl`.
pub fn log_ingest_url(record: &Value) -> Option<String> {
    record["logAttributes"]["ingestUrl"]
        .as_str()
        .filter(|url| !url.trim().is_empty())
        .map(String::from)
}

/// The task that empties the outbox into Port.
pub struct LogShipper {
    client: PortClient,
    integration: String,
    outbox: LogOutbox,
    interval: Duration,
    recheck: Duration,
    url: Option<String>,
    /// Whether the URL should be read again (a shipment to it failed).
    stale: bool,
    last_lookup: Option<Instant>,
    failing: bool,
    dropped_reported: u64,
    last_drop_report: Option<Instant>,
}

impl LogShipper {
    /// A shipper of `outbox` for integration `integration`.
    pub fn new(client: PortClient, integration: &str, outbox: LogOutbox) -> Self {
        Self {
            client,
            integration: integration.to_string(),
            outbox,
            interval: FLUSH_INTERVAL,
            recheck: RECORD_RECHECK,
            url: None,
            stale: false,
            last_lookup: None,
            failing: false,
            dropped_reported: 0,
            last_drop_report: None,
        }
    }

    /// Other intervals than Ocean's (tests).
    pub fn with_intervals(mut self, flush: Duration, recheck: Duration) -> Self {
        self.interval = flush;
        self.recheck = recheck;
        self
    }

    /// Ships until `stop`, then once more for at most [`FINAL_FLUSH`].
    pub async fn run(mut self, stop: CancellationToken) {
        // After a shipment that could not go (no URL, Port failing), wait for the interval
        // alone: the outbox may stay full, and waking on it would spin.
        let mut stalled = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(self.interval) => {}
                () = self.outbox.ready(), if !stalled => {}
            }
            stalled = !self.flush().await;
        }
        self.last_lookup = None;
        if tokio::time::timeout(FINAL_FLUSH, self.flush())
            .await
            .is_err()
        {
            tracing::warn!(
                local_only = true,
                waiting = self.outbox.len(),
                "stopping: Port did not take the last log lines in time"
            );
        }
    }

    /// Sends what waits now, shipment after shipment, until one fails; whether all went.
    async fn flush(&mut self) -> bool {
        self.report_drops();
        let waiting = self.outbox.len();
        let mut sent = 0;
        while sent < waiting {
            let Some(url) = self.ingest_url().await else {
                return false;
            };
            let lines = self.outbox.take(SHIP_BATCH);
            if lines.is_empty() {
                return true;
            }
            sent += lines.len();
            match self.client.post_logs(&url, &lines).await {
                Ok(()) => {
                    self.outbox.count_shipped(lines.len());
                    if self.failing {
                        self.failing = false;
                        tracing::info!(local_only = true, "Port takes the log lines again");
                    }
                }
                Err(e) => {
                    self.outbox.count_lost(lines.len());
                    self.stale = true;
                    if !self.failing {
                        self.failing = true;
                        tracing::warn!(
                            local_only = true,
                            lines = lines.len(),
                            error = %e,
                            "could not ship log lines to Port's log view; they are lost, later lines are still sent (APPLICATION__ENABLE_HTTP_LOGGING=false turns shipping off)"
                        );
                    }
                    return false;
                }
            }
        }
        true
    }

    /// The log ingest URL, read from the integration record when not known or after a failed
    /// shipment (at most every `recheck`; meanwhile the known one is used).
    async fn ingest_url(&mut self) -> Option<String> {
        let due = self
            .last_lookup
            .is_none_or(|at| at.elapsed() >= self.recheck);
        if !due || (self.url.is_some() && !self.stale) {
            return self.url.clone();
        }
        self.last_lookup = Some(Instant::now());
        match self.client.integration(&self.integration).await {
            Ok(record) => {
                self.stale = false;
                self.url = record.as_ref().and_then(log_ingest_url);
                if self.url.is_none() {
                    tracing::debug!(
                        local_only = true,
                        integration = %self.integration,
                        "the integration record has no logAttributes.ingestUrl yet; log lines wait"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(
                    local_only = true,
                    error = %e,
                    "could not read where Port takes the log lines; they wait"
                );
            }
        }
        self.url.clone()
    }

    /// One WARN line (at most a minute apart) when lines gave way in a full outbox.
    fn report_drops(&mut self) {
        let dropped = self.outbox.dropped();
        if dropped == self.dropped_reported
            || self
                .last_drop_report
                .is_some_and(|at| at.elapsed() < DROP_REPORT_INTERVAL)
        {
            return;
        }
        tracing::warn!(
            local_only = true,
            dropped = dropped - self.dropped_reported,
            total = dropped,
            "log lines were not shipped to Port: the outbox was full while Port was slow or down (the oldest gave way)"
        );
        self.dropped_reported = dropped;
        self.last_drop_report = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_url_comes_from_the_records_log_attributes() {
        let record =
            json!({"logAttributes": {"ingestId": "i", "ingestUrl": "https://l.example/logs/i"}});
        assert_eq!(
            log_ingest_url(&record).as_deref(),
            Some("https://l.example/logs/i")
        );
        assert_eq!(log_ingest_url(&json!({"logAttributes": {}})), None);
        assert_eq!(log_ingest_url(&json!({})), None);
    }
}
