//! The sync metrics the Python integration (Ocean) reports to Port during a resync, in its
//! shape: one event per mapping resource, identified as Ocean identifies it (`{kind}-{index}`,
//! its `kindIdentifier`, with `kind`, `kindIndex` and the resource's `blueprint`), so that two
//! resources of one kind are two events with their own figures. Each carries the resource's
//! counts nested by label (`phase` → `extract`/`transform`/`load`/`resync`, then
//! `object_count_type`) and its own `syncState`: `syncing` at the start, then `failed` when its
//! crawl failed, else `completed` — as Ocean reports each resource when it ends, whatever
//! happens to the resync's reconciliation (that is the resync state's business). The events
//! go to the integration record's `metricAttributes.ingestUrl`: all resources in one `POST
//! {ingestUrl}/syncMetrics` (`{"syncKindsMetrics": [...]}`) at a resync's start and end, and
//! each resource's event in its own `PUT
//! {ingestUrl}/syncMetrics/resync/{eventId}/kind/{kindIdentifier}` (`{"syncKindMetrics":
//! event}`), which Ocean sends when the resource starts and ends; adoport's resources start
//! with the resync and end with its reconciliation, so both go at the same moments.
//! Not sent: Ocean's `__runtime__` and `__reconciliation__` pseudo-kinds (process figures, and
//! the reconciliation's `delete` phase).
//!
//! Ocean sends them whenever the record has that URL (no setting turns them on; its data-source-processor mode, which
//! adoport never uses, turns them off), and a failure is only logged.

use serde_json::{Value, json};

use crate::client::{COMPATIBLE_INTEGRATION_VERSION, INTEGRATION_TYPE};

/// The Ocean release of the Python integration adoport is compatible with (its
/// `oceanVersion` in the metrics).
pub const OCEAN_VERSION: &str = "0.48.12";

/// One mapping resource's figures for a resync, in Ocean's phases.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceFigures {
    /// Raw items its selector read (`extract` / `raw_extracted`).
    pub extracted: u64,
    /// Entities it produced (`transform` / `transformed`).
    pub transformed: u64,
    /// Items it could not map (`transform` / `failed`).
    pub transform_failed: u64,
    /// Entities written (`load` / `loaded`).
    pub loaded: u64,
    /// Entities Port refused (`load` / `failed`).
    pub load_failed: u64,
    /// Entities not written because Port already had them (`load` / `skipped`).
    pub skipped: u64,
    /// Its crawl failed (its `syncState` is `failed`).
    pub crawl_failed: bool,
}

impl ResourceFigures {
    /// Items read that made no entity (`transform` / `filtered_out`): as Ocean counts them,
    /// the raw items past the entities transformed.
    pub fn filtered_out(&self) -> u64 {
        self.extracted.saturating_sub(self.transformed)
    }

    /// Ocean's `success` of the resource's `resync` phase: it ran without errors.
    pub fn success(&self) -> bool {
        !self.crawl_failed && self.transform_failed == 0 && self.load_failed == 0
    }
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
    /// Whether the resync is still running (every resource `syncing`, its success 0) or
    /// ended (each resource `completed` or `failed`).
    pub running: bool,
    /// Seconds the resync took so far.
    pub seconds: f64,
}

/// A mapping resource, as its sync metrics name it.
#[derive(Debug, Clone, Copy)]
pub struct ResourceId<'a> {
    pub kind: &'a str,
    /// Its index in the mapping's `resources`.
    pub index: u32,
    /// Its `port.entity.mappings.blueprint`, as the mapping writes it.
    pub blueprint: &'a str,
}

/// Ocean's event for one mapping resource.
pub fn resource_event(
    context: &SyncContext<'_>,
    resource: ResourceId<'_>,
    figures: &ResourceFigures,
) -> Value {
    let count = |n: u64| json!({ "object_count": n as f64 });
    let sync_state = match (context.running, figures.crawl_failed) {
        (true, _) => "syncing",
        (false, true) => "failed",
        (false, false) => "completed",
    };
    let success = !context.running && figures.success();
    let ResourceId {
        kind,
        index,
        blueprint,
    } = resource;
    json!({
        "integrationType": INTEGRATION_TYPE,
        "installationType": context.installation_type,
        // Ocean's single-process mode: one process crawls, maps and writes a resource's items.
        "executionMode": "single_process",
        "integrationIdentifier": context.integration_identifier,
        // The Python integration's version: Port keys on it (see COMPATIBLE_INTEGRATION_VERSION).
        "integrationVersion": COMPATIBLE_INTEGRATION_VERSION,
        "oceanVersion": OCEAN_VERSION,
        "kindIdentifier": format!("{kind}-{index}"),
        "kind": kind,
        "kindIndex": index,
        "eventId": context.event_id,
        "syncState": sync_state,
        "blueprint": blueprint,
        "metrics": {
            "phase": {
                "resync": {
                    "success": f64::from(u8::from(success)),
                    "duration_seconds": context.seconds,
                },
                "extract": { "object_count_type": { "raw_extracted": count(figures.extracted) } },
                "transform": { "object_count_type": {
                    "transformed": count(figures.transformed),
                    "filtered_out": count(figures.filtered_out()),
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
            running: false,
            seconds: 2.5,
        };
        let figures = ResourceFigures {
            extracted: 3,
            transformed: 2,
            loaded: 2,
            ..ResourceFigures::default()
        };
        let resource = ResourceId {
            kind: "repository",
            index: 1,
            blueprint: "service",
        };
        let event = resource_event(&context, resource, &figures);
        assert_eq!(event["kindIdentifier"], "repository-1");
        assert_eq!(event["kind"], "repository");
        assert_eq!(event["kindIndex"], 1);
        assert_eq!(event["blueprint"], "service");
        assert_eq!(event["installationType"], "OnPrem");
        assert_eq!(event["syncState"], "completed");
        let phase = &event["metrics"]["phase"];
        assert_eq!(phase["resync"]["success"], 1.0);
        let count = |phase_name: &str, result: &str| {
            phase[phase_name]["object_count_type"][result]["object_count"].clone()
        };
        assert_eq!(count("extract", "raw_extracted"), 3.0);
        assert_eq!(count("transform", "transformed"), 2.0);
        assert_eq!(count("transform", "filtered_out"), 1.0, "read, not mapped");
        assert_eq!(count("load", "loaded"), 2.0);
    }

    #[test]
    fn a_resource_is_syncing_while_the_resync_runs_and_failed_when_its_crawl_failed() {
        let mut context = SyncContext {
            integration_identifier: "my-ado",
            installation_type: "OnPrem",
            event_id: "e1",
            running: true,
            seconds: 0.0,
        };
        let resource = ResourceId {
            kind: "work-item",
            index: 3,
            blueprint: "\"bug\"",
        };
        let failed = ResourceFigures {
            crawl_failed: true,
            ..ResourceFigures::default()
        };
        let event = resource_event(&context, resource, &failed);
        assert_eq!(event["syncState"], "syncing");
        assert_eq!(event["metrics"]["phase"]["resync"]["success"], 0.0);
        context.running = false;
        let event = resource_event(&context, resource, &failed);
        assert_eq!(event["syncState"], "failed");
        assert_eq!(event["metrics"]["phase"]["resync"]["success"], 0.0);
        let refused = ResourceFigures {
            load_failed: 1,
            ..ResourceFigures::default()
        };
        let event = resource_event(&context, resource, &refused);
        assert_eq!(event["syncState"], "completed", "Ocean: ran to its end");
        assert_eq!(event["metrics"]["phase"]["resync"]["success"], 0.0);
    }
}
