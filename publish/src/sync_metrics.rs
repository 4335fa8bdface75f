//! The per-kind sync metrics the Python integration (Ocean) reports to Port during a resync, in
//! its shape: one event per kind (`{kind}-{index}`, Ocean's `kindIdentifier`) with the counts
//! nested by label (`phase` → `extract`/`transform`/`load`/`resync`, then `object_count_type`),
//! sent to the integration record's `metricAttributes.ingestUrl`: all kinds in one `POST
//! {ingestUrl}/syncMetrics` (`{"syncKindsMetrics": [...]}`) at a resync's start and end, and
//! each kind's event in its own `PUT {ingestUrl}/syncMetrics/resync/{eventId}/kind/{kindIdentifier}`
//! (`{"syncKindMetrics": event}`), which Ocean sends when the kind starts and ends; adoport's
//! kinds start with the resync and end with its reconciliation, so both go at the same moments.
//! Not sent: Ocean's `__runtime__` pseudo-kind (process figures, and its reconciliation's
//! `delete` phase).
//!
//! Ocean sends them whenever the record has that URL (no setting turns them on; its data-source-processor mode, which
//! adoport never uses, turns them off), and a failure is only logged.

use serde_json::{Value, json};

use crate::client::{COMPATIBLE_INTEGRATION_VERSION, INTEGRATION_TYPE};

/// The Ocean release of the Python integration adoport is compatible with (its
/// `oceanVersion` in the metrics).
pub const OCEAN_VERSION: &str = "0.48.12";

/// One kind's figures for a resync, in Ocean's phases.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KindFigures {
    /// Raw items extracted (`extract` / `raw_extracted`).
    pub extracted: u64,
    /// Entities produced (`transform` / `transformed`).
    pub transformed: u64,
    /// Items that could not be mapped (`transform` / `failed`).
    pub transform_failed: u64,
    /// Entities written (`load` / `loaded`).
    pub loaded: u64,
    /// Entities Port refused (`load` / `failed`).
    pub load_failed: u64,
    /// Entities not written because Port already had them (`load` / `skipped`).
    pub skipped: u64,
}

/// Where Port takes the sync metrics, from the integration record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsIngest {
    /// `metricAttributes.ingestUrl`, without a trailing slash.
    pub url: String,
    /// The record's `installationType` (`Unknown` when absent, as Ocean).
    pub installation_type: String,
}

impl MetricsIngest {
    /// Where Port takes the integration's sync metrics: the record's
    /// `metricAttributes.ingestUrl` (the Python integration's `get_metrics_attributes`), or
    /// `None` when the record (or the integration) has none.
    pub async fn of_integration(
        client: &crate::client::PortClient,
        identifier: &str,
    ) -> Result<Option<Self>, crate::error::PublishError> {
        Ok(client
            .integration(identifier)
            .await?
            .and_then(|record| Self::of_record(&record)))
    }

    /// From the integration record; `None` when it has no `metricAttributes.ingestUrl`.
    pub fn of_record(record: &Value) -> Option<Self> {
        let url = record["metricAttributes"]["ingestUrl"].as_str()?;
        Some(Self {
            url: url.trim_end_matches('/').to_string(),
            installation_type: record["installationType"]
                .as_str()
                .unwrap_or("Unknown")
                .to_string(),
        })
    }
}

/// What a resync's metrics events share.
#[derive(Debug, Clone)]
pub struct SyncContext<'a> {
    /// `OCEAN__INTEGRATION__IDENTIFIER`.
    pub integration_identifier: &'a str,
    /// The record's `installationType`.
    pub installation_type: &'a str,
    /// The resync's id (Ocean's `event_id`).
    pub event_id: &'a str,
    /// Ocean's `syncState`: `syncing`, `completed`, `failed` or `aborted`.
    pub sync_state: &'a str,
    /// Seconds the resync took so far.
    pub seconds: f64,
    /// Whether the resync succeeded (Ocean's `success` of the `resync` phase).
    pub success: bool,
}

/// Ocean's event for kind `kind` at position `index` of the mapping.
pub fn kind_event(
    context: &SyncContext<'_>,
    kind: &str,
    index: usize,
    blueprint: &str,
    figures: &KindFigures,
) -> Value {
    let count = |n: u64| json!({ "object_count": n as f64 });
    json!({
        "integrationType": INTEGRATION_TYPE,
        "installationType": context.installation_type,
        // Ocean's single-process mode: one process crawls, maps and writes a kind's items.
        "executionMode": "single_process",
        "integrationIdentifier": context.integration_identifier,
        // The Python integration's version: Port keys on it (see COMPATIBLE_INTEGRATION_VERSION).
        "integrationVersion": COMPATIBLE_INTEGRATION_VERSION,
        "oceanVersion": OCEAN_VERSION,
        "kindIdentifier": format!("{kind}-{index}"),
        "kind": kind,
        "kindIndex": index,
        "eventId": context.event_id,
        "syncState": context.sync_state,
        "blueprint": blueprint,
        "metrics": {
            "phase": {
                "resync": {
                    "success": f64::from(u8::from(context.success)),
                    "duration_seconds": context.seconds,
                },
                "extract": { "object_count_type": { "raw_extracted": count(figures.extracted) } },
                "transform": { "object_count_type": {
                    "transformed": count(figures.transformed),
                    "filtered_out": count(0),
                    "failed": count(figures.transform_failed),
                } },
                "load": { "object_count_type": {
                    "loaded": count(figures.loaded),
                    "failed": count(figures.load_failed),
                    "skipped": count(figures.skipped),
                } },
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ingest_url_and_installation_type_come_from_the_record() {
        let record = json!({"metricAttributes": {"ingestUrl": "https://m.example/x/"}});
        let ingest = MetricsIngest::of_record(&record).expect("ingest");
        assert_eq!(ingest.url, "https://m.example/x");
        assert_eq!(ingest.installation_type, "Unknown");
        assert_eq!(
            MetricsIngest::of_record(&json!({"metricAttributes": {}})),
            None
        );
    }

    #[test]
    fn an_event_has_oceans_shape() {
        let context = SyncContext {
            integration_identifier: "my-ado",
            installation_type: "OnPrem",
            event_id: "e1",
            sync_state: "completed",
            seconds: 2.5,
            success: true,
        };
        let figures = KindFigures {
            extracted: 3,
            transformed: 2,
            transform_failed: 1,
            loaded: 2,
            ..KindFigures::default()
        };
        let event = kind_event(&context, "repository", 1, "service", &figures);
        assert_eq!(event["kindIdentifier"], "repository-1");
        assert_eq!(event["kindIndex"], 1);
        assert_eq!(event["installationType"], "OnPrem");
        assert_eq!(event["syncState"], "completed");
        let phase = &event["metrics"]["phase"];
        assert_eq!(phase["resync"]["success"], 1.0);
        assert_eq!(
            phase["extract"]["object_count_type"]["raw_extracted"]["object_count"],
            3.0
        );
        assert_eq!(
            phase["transform"]["object_count_type"]["failed"]["object_count"],
            1.0
        );
        assert_eq!(
            phase["load"]["object_count_type"]["loaded"]["object_count"],
            2.0
        );
    }
}
