//! The integration resource Port keeps for an installation: its config (the mapping), the
//! resync state the integration reports, the resync-request time it polls, and the raw-data
//! examples it sends, the record updates, the sync metrics and heartbeats sent to its
//! metrics ingest URL, and the log lines sent to its log ingest URL. Every report is recorded so tests can read them.

use std::collections::BTreeMap;

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

/// Fields of a `POST /v1/integration` body stored as sent, beside the identifier, type,
/// version and config.
const RECORD_FIELDS: [&str; 4] = [
    "changelogDestination",
    "actionsProcessingEnabled",
    "incrementalSyncEnabled",
    "createPortResourcesOrigin",
];

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[derive(Debug)]
pub(crate) struct Integrations {
    /// identifier → the integration object `GET /v1/integration/{id}` returns.
    installed: BTreeMap<String, Value>,
    /// Every `PATCH …/resync-state` body, in order.
    pub resync_states: Vec<Value>,
    /// The entities the catalog held when each of them came (same order).
    pub resync_state_entities: Vec<usize>,
    /// When a resync was last requested (initially: when the simulator started).
    pub resync_requested_at: String,
    /// kind → examples, last write wins.
    pub examples: BTreeMap<String, Vec<Value>>,
    /// Every `PATCH /v1/integration/{id}` body applied to an installed integration, in order.
    pub patches: Vec<Value>,
    /// Every `POST {ingestUrl}/syncMetrics`'s `syncKindsMetrics` of mapping resources, in
    /// order (those of Ocean's pseudo-kinds are in `pseudo_kind_metrics`).
    pub sync_metrics: Vec<Vec<Value>>,
    /// Every event of Ocean's pseudo-kinds (`__runtime__`, `__reconciliation__`: a
    /// `kindIdentifier` starting with `__`), `POST`ed or `PUT`, in order: the method, the
    /// metrics ingest id it came to, the event.
    pub pseudo_kind_metrics: Vec<(&'static str, String, Value)>,
    /// The metrics ingest id (`/v1/metrics-ingest/{id}`) each of `sync_metrics` came to.
    pub sync_metrics_ingest: Vec<String>,
    /// Metrics ingest ids besides the integration's identifier that take metrics (an ingest
    /// URL Port moved the record to).
    pub metrics_ingests: std::collections::BTreeSet<String>,
    /// Every `PUT {ingestUrl}/syncMetrics/resync/{eventId}/kind/{kindIdentifier}` of a mapping
    /// resource: the two ids of its path and its `syncKindMetrics`, in order.
    pub kind_sync_metrics: Vec<(String, String, Value)>,
    /// Every `POST {ingestUrl}/heartbeat`'s `eventId`, in order.
    pub heartbeats: Vec<String>,
    /// Every `POST {logAttributes.ingestUrl}`'s `logs`, one entry per shipment, in order.
    pub log_shipments: Vec<Vec<Value>>,
}

impl Integrations {
    pub(crate) fn new(identifier: &str, config: Option<Value>) -> Self {
        let mut installed = BTreeMap::new();
        if let Some(config) = config {
            installed.insert(
                identifier.to_string(),
                Self::object(identifier, "azure-devops", Value::Null, config),
            );
        }
        Self {
            installed,
            resync_states: Vec::new(),
            resync_state_entities: Vec::new(),
            resync_requested_at: now(),
            examples: BTreeMap::new(),
            patches: Vec::new(),
            sync_metrics: Vec::new(),
            pseudo_kind_metrics: Vec::new(),
            sync_metrics_ingest: Vec::new(),
            metrics_ingests: Default::default(),
            heartbeats: Vec::new(),
            kind_sync_metrics: Vec::new(),
            log_shipments: Vec::new(),
        }
    }

    fn object(identifier: &str, app_type: &str, version: Value, config: Value) -> Value {
        let at = now();
        json!({
            "identifier": identifier,
            "installationId": identifier,
            "installationAppType": app_type,
            "version": version,
            "changelogDestination": null,
            "config": config,
            "resyncState": null,
            "createdAt": at,
            "updatedAt": at,
        })
    }

    pub(crate) fn get(&self, identifier: &str) -> Option<&Value> {
        self.installed.get(identifier)
    }

    /// Creates an integration from a `POST /v1/integration` body; `None` if it exists already.
    pub(crate) fn create(&mut self, body: &Value) -> Option<Value> {
        let identifier = body
            .get("installationId")
            .or_else(|| body.get("identifier"))
            .and_then(Value::as_str)?
            .to_string();
        if self.installed.contains_key(&identifier) {
            return None;
        }
        let app_type = body
            .get("installationAppType")
            .and_then(Value::as_str)
            .unwrap_or("azure-devops");
        let mut object = Self::object(
            &identifier,
            app_type,
            body.get("version").cloned().unwrap_or(Value::Null),
            body.get("config").cloned().unwrap_or_else(|| json!({})),
        );
        if let Value::Object(map) = &mut object {
            for field in RECORD_FIELDS {
                if let Some(value) = body.get(field) {
                    map.insert(field.into(), value.clone());
                }
            }
        }
        self.installed.insert(identifier, object.clone());
        Some(object)
    }

    /// Whether `/v1/metrics-ingest/{id}` takes metrics: the integration's own, or one the
    /// record was moved to.
    pub(crate) fn takes_metrics(&self, id: &str) -> bool {
        self.installed.contains_key(id) || self.metrics_ingests.contains(id)
    }

    /// `PATCH /v1/integration/{id}`: [`Self::patch`], recorded.
    pub(crate) fn patch_record(&mut self, identifier: &str, body: &Value) -> Option<Value> {
        let answer = self.patch(identifier, body)?;
        self.patches.push(body.clone());
        Some(answer)
    }

    /// Applies a `PATCH` body (top-level fields replace); an empty body requests a resync.
    pub(crate) fn patch(&mut self, identifier: &str, body: &Value) -> Option<Value> {
        let empty = body.as_object().is_none_or(serde_json::Map::is_empty);
        let integration = self.installed.get_mut(identifier)?;
        if let (Value::Object(target), Value::Object(fields)) = (&mut *integration, body) {
            for (key, value) in fields {
                target.insert(key.clone(), value.clone());
            }
            target.insert("updatedAt".into(), json!(now()));
        }
        let answer = integration.clone();
        if empty {
            self.resync_requested_at = now();
        }
        Some(answer)
    }

    /// Records a resync state report and shows it on the integration.
    pub(crate) fn report_resync_state(
        &mut self,
        identifier: &str,
        body: &Value,
        entities: usize,
    ) -> Option<Value> {
        let integration = self.installed.get_mut(identifier)?;
        let mut state = body.clone();
        if let Value::Object(map) = &mut state {
            map.insert("updatedAt".into(), json!(now()));
        }
        if let Value::Object(target) = integration {
            target.insert("resyncState".into(), state);
        }
        let answer = integration.clone();
        self.resync_states.push(body.clone());
        self.resync_state_entities.push(entities);
        Some(answer)
    }

    /// Marks "a resync was requested now" (what the UI's resync button does).
    pub(crate) fn request_resync(&mut self) {
        self.resync_requested_at = now();
    }
}
