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
//! Besides, as Ocean, two pseudo-kinds of the resync (`kind` = `kindIdentifier`, `kindIndex` 0,
//! `blueprint` empty):
//! - `__runtime__`, the resync as a whole: `POST` syncing (`success` 0) right after the
//!   resources' first `POST`, and `POST` once the resync state is reported at its end, with
//!   that state (`completed`/`failed`/`aborted`), its `success` and `duration_seconds`
//!   (Ocean's `update_after_resync`);
//! - `__reconciliation__`, the deletion of stale entities: `POST` syncing (`success` 0) when
//!   every resource's changes are written and the reconciliation starts, and `PUT
//!   …/kind/__reconciliation__` when it ends: `completed` (`success` 1) or `failed`
//!   (`success` 0: the resync was incomplete or a delete failed), its `duration_seconds`, and
//!   when it came to deleting (not refused, state known) the `delete` phase's
//!   `object_count_type` `deleted` (entities Port deleted) and `failed` (entities it was asked
//!   to delete and did not; Ocean has no such count, it is adoport's), with the deletion's
//!   `duration_seconds` when anything was to be deleted. adoport reports the resync state
//!   before that `PUT` (Ocean after it); the resources' end `PUT`s come just before it.
//!   Figures are the resync's own (Ocean's gauges add up over the process's resyncs).

use serde_json::{Map, Value, json};

use crate::client::{COMPATIBLE_INTEGRATION_VERSION, INTEGRATION_TYPE, PortClient};

/// Ocean's pseudo-kind of a resync's reconciliation (`MetricResourceKind.RECONCILIATION`).
pub const RECONCILIATION_KIND: &str = "__reconciliation__";
/// Ocean's pseudo-kind of the resync as a whole (`MetricResourceKind.RUNTIME`).
pub const RUNTIME_KIND: &str = "__runtime__";

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
    let sync_state = match (context.running, figures.crawl_failed) {
        (true, _) => "syncing",
        (false, true) => "failed",
        (false, false) => "completed",
    };
    let success = !context.running && figures.success();
    let metrics = json!({
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
    });
    event_envelope(
        context,
        &format!("{}-{}", resource.kind, resource.index),
        resource,
        sync_state,
        metrics,
    )
}

/// Ocean's envelope of every sync-metrics event, a mapping resource's or a pseudo-kind's:
/// who reports (integration, installation, versions), the resync (`eventId`), what the event
/// is about (`kindIdentifier`, `kind`, `kindIndex`, `blueprint`), its `syncState`, and
/// `metrics`. The one place these fields are written, so the two kinds of event cannot drift.
fn event_envelope(
    context: &SyncContext<'_>,
    kind_identifier: &str,
    resource: ResourceId<'_>,
    sync_state: &str,
    metrics: Value,
) -> Value {
    json!({
        "integrationType": INTEGRATION_TYPE,
        "installationType": context.installation_type,
        // Ocean's single-process mode: one process crawls, maps and writes a resource's items.
        "executionMode": "single_process",
        "integrationIdentifier": context.integration_identifier,
        // The Python integration's version: Port keys on it (see COMPATIBLE_INTEGRATION_VERSION).
        "integrationVersion": COMPATIBLE_INTEGRATION_VERSION,
        "oceanVersion": OCEAN_VERSION,
        "kindIdentifier": kind_identifier,
        "kind": resource.kind,
        "kindIndex": resource.index,
        "eventId": context.event_id,
        "syncState": sync_state,
        "blueprint": resource.blueprint,
        "metrics": metrics,
    })
}

/// One `object_count_type` figure, as Ocean writes it (a float).
fn count(n: u64) -> Value {
    json!({ "object_count": n as f64 })
}

/// What a resync's reconciliation did, for its `__reconciliation__` event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeleteFigures {
    /// It came to deleting: the resync was complete, its policy known and the share to delete
    /// within the threshold (Ocean's `delete_diff` counting).
    pub reached: bool,
    /// Stale entities Port deleted.
    pub deleted: u64,
    /// Stale entities Port was asked to delete and did not (refused, or the reconciliation
    /// stopped before their request).
    pub failed: u64,
    /// Seconds the deletion requests took (`None`: nothing was to be deleted).
    pub seconds: Option<f64>,
}

/// How a resync's reconciliation ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReconciliationEnd {
    /// It ran to its end (deletion done, or refused by the threshold or the policy).
    pub success: bool,
    /// Seconds it took.
    pub seconds: f64,
    pub deletes: DeleteFigures,
}

/// Ocean's event of a pseudo-kind (`__runtime__`, `__reconciliation__`).
fn pseudo_kind_event(
    context: &SyncContext<'_>,
    kind: &str,
    sync_state: &str,
    metrics: Value,
) -> Value {
    let pseudo_kind = ResourceId {
        kind,
        index: 0,
        blueprint: "",
    };
    event_envelope(context, kind, pseudo_kind, sync_state, metrics)
}

/// The `resync` phase of a pseudo-kind: its `success`, and its `duration_seconds` once known.
fn resync_phase(success: bool, seconds: Option<f64>) -> Value {
    let mut phase = Map::new();
    phase.insert("success".into(), json!(f64::from(u8::from(success))));
    if let Some(seconds) = seconds {
        phase.insert("duration_seconds".into(), json!(seconds));
    }
    Value::Object(phase)
}

/// The `__runtime__` event: `syncing` while the resync runs (`state` `None`), else the resync
/// state reported at its end (`completed`, `failed`, `aborted`) with its duration.
pub fn runtime_event(context: &SyncContext<'_>, end_state: Option<&str>) -> Value {
    let (state, phase) = match end_state {
        None => ("syncing", resync_phase(false, None)),
        Some(state) => (
            state,
            resync_phase(state == "completed", Some(context.seconds)),
        ),
    };
    pseudo_kind_event(
        context,
        RUNTIME_KIND,
        state,
        json!({ "phase": { "resync": phase } }),
    )
}

/// The `__reconciliation__` event: `syncing` when it starts (`end` `None`), else `completed`
/// or `failed` with its figures.
pub fn reconciliation_event(context: &SyncContext<'_>, end: Option<&ReconciliationEnd>) -> Value {
    let Some(end) = end else {
        let metrics = json!({ "phase": { "resync": resync_phase(false, None) } });
        return pseudo_kind_event(context, RECONCILIATION_KIND, "syncing", metrics);
    };
    let mut phases = Map::new();
    phases.insert(
        "resync".into(),
        resync_phase(end.success, Some(end.seconds)),
    );
    if end.deletes.reached {
        let mut delete = Map::new();
        if let Some(seconds) = end.deletes.seconds {
            delete.insert("duration_seconds".into(), json!(seconds));
        }
        delete.insert(
            "object_count_type".into(),
            json!({ "deleted": count(end.deletes.deleted), "failed": count(end.deletes.failed) }),
        );
        phases.insert("delete".into(), Value::Object(delete));
    }
    let state = if end.success { "completed" } else { "failed" };
    pseudo_kind_event(
        context,
        RECONCILIATION_KIND,
        state,
        json!({ "phase": phases }),
    )
}

/// `POST {ingestUrl}/syncMetrics` of pseudo-kind events; a failure is logged (as Ocean).
pub async fn post_pseudo_kinds(client: &PortClient, ingest: &MetricsIngest, events: &[Value]) {
    if let Err(e) = client.post_sync_metrics(&ingest.url, events).await {
        tracing::warn!(kinds = ?events.iter().map(|e| &e["kindIdentifier"]).collect::<Vec<_>>(), error = %e, "could not report the resync's sync metrics to Port");
    }
}

/// `PUT …/kind/{kindIdentifier}` of a pseudo-kind event; a failure is logged (as Ocean).
pub async fn put_pseudo_kind(client: &PortClient, ingest: &MetricsIngest, event: &Value) {
    if let Err(e) = client.put_kind_sync_metrics(&ingest.url, event).await {
        tracing::warn!(kind = %event["kindIdentifier"], error = %e, "could not report the resync's sync metrics to Port");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The context of a resync that has ended after `seconds`.
    fn ended(seconds: f64) -> SyncContext<'static> {
        SyncContext {
            integration_identifier: "my-ado",
            installation_type: "OnPrem",
            event_id: "e1",
            running: false,
            seconds,
        }
    }

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
        let context = ended(2.5);
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
            running: true,
            ..ended(0.0)
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

    #[test]
    fn the_runtime_event_is_syncing_then_the_resync_state_with_its_duration() {
        let context = ended(7.5);
        let syncing = runtime_event(&context, None);
        assert_eq!(syncing["kindIdentifier"], RUNTIME_KIND);
        assert_eq!(syncing["kind"], RUNTIME_KIND);
        assert_eq!(syncing["kindIndex"], 0);
        assert_eq!(syncing["blueprint"], "");
        assert_eq!(syncing["syncState"], "syncing");
        assert_eq!(
            syncing["metrics"],
            json!({"phase": {"resync": {"success": 0.0}}})
        );
        let done = runtime_event(&context, Some("completed"));
        assert_eq!(done["syncState"], "completed");
        assert_eq!(
            done["metrics"],
            json!({"phase": {"resync": {"success": 1.0, "duration_seconds": 7.5}}})
        );
        let failed = runtime_event(&context, Some("failed"));
        assert_eq!(failed["syncState"], "failed");
        assert_eq!(failed["metrics"]["phase"]["resync"]["success"], 0.0);
    }

    #[test]
    fn resource_and_pseudo_kind_events_share_one_envelope() {
        let context = ended(1.0);
        let resource = ResourceId {
            kind: "project",
            index: 0,
            blueprint: "azureDevopsProject",
        };
        let events = [
            resource_event(&context, resource, &ResourceFigures::default()),
            runtime_event(&context, None),
            reconciliation_event(&context, None),
        ];
        let envelope = |event: &Value| -> Vec<String> {
            let fields = event.as_object().expect("an object");
            fields.keys().cloned().collect()
        };
        for event in &events[1..] {
            assert_eq!(envelope(event), envelope(&events[0]), "{event}");
            for field in [
                "integrationType",
                "installationType",
                "executionMode",
                "integrationIdentifier",
                "integrationVersion",
                "oceanVersion",
                "eventId",
            ] {
                assert_eq!(event[field], events[0][field], "{field}");
            }
        }
    }

    #[test]
    fn the_reconciliation_event_carries_the_delete_phase_only_when_it_came_to_deleting() {
        let context = ended(0.0);
        let syncing = reconciliation_event(&context, None);
        assert_eq!(syncing["kindIdentifier"], RECONCILIATION_KIND);
        assert_eq!(syncing["syncState"], "syncing");
        let deleted = ReconciliationEnd {
            success: true,
            seconds: 1.25,
            deletes: DeleteFigures {
                reached: true,
                deleted: 4,
                failed: 1,
                seconds: Some(0.5),
            },
        };
        let event = reconciliation_event(&context, Some(&deleted));
        assert_eq!(event["syncState"], "completed");
        assert_eq!(
            event["metrics"],
            json!({"phase": {
                "resync": {"success": 1.0, "duration_seconds": 1.25},
                "delete": {
                    "duration_seconds": 0.5,
                    "object_count_type": {
                        "deleted": {"object_count": 4.0},
                        "failed": {"object_count": 1.0},
                    },
                },
            }})
        );
        let incomplete = ReconciliationEnd {
            success: false,
            seconds: 0.1,
            deletes: DeleteFigures::default(),
        };
        let event = reconciliation_event(&context, Some(&incomplete));
        assert_eq!(event["syncState"], "failed");
        assert_eq!(event["metrics"]["phase"]["resync"]["success"], 0.0);
        assert_eq!(event["metrics"]["phase"].get("delete"), None);
    }
}
