//! `PortClient`: the calls publish makes to Port (bulk upsert, delete, ownership listing and
//! search, reads of entities' current state, blueprints, the integration, resync state), and
//! nothing else. One request per call: retries, batching and ordering are the caller's job.
//!
//! - Sign-in, the token cache (renewed before it expires and once on 401), sending and error
//!   classification are the shared Port client's ([`adoport_shared::port`]); this is the
//!   publish-specific layer over it.
//! - The User-Agent is the entity's ownership in Port (`$datasource`): the same format as the
//!   Python integration, so a user who switches keeps and reconciles their entities.
//! - The client secret and the token are never logged and never appear in an error.

use adoport_shared::config::PortAccess;
use adoport_shared::messages::{ResyncId, WriteOptions};
use adoport_shared::metrics::HttpStats;
use adoport_shared::port::answer::{read_body, read_json, status_error, trace_id};
use adoport_shared::port::{BlueprintId, EntityId, PortApi, PortError, excerpt};
use chrono::{DateTime, Utc};
use reqwest::{RequestBuilder, Response, StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::PublishError;

/// The version of Port's Python Azure DevOps integration whose behaviour (and `$datasource`)
/// adoport reproduces. Port shows it in the datasource and the reconciliation matches entities
/// by its prefix `port-ocean/azure-devops/` and suffix `/{identifier}/exporter`, so the exact
/// value does not change ownership; it says which behaviour we are compatible with
/// (v0.12.2: see `tests/fixtures/README.md` for the reference copies tests check against).
/// It is also the `version` of the integration record in Port (created and kept current at
/// start, see `integration_record`): Port's UI keys on it (which integration release, which
/// changelog and upgrade notice it shows), so it must stay the Python integration's version and
/// not adoport's own.
pub const COMPATIBLE_INTEGRATION_VERSION: &str = "0.12.2";

/// The integration type in the User-Agent (the Python integration's `integration.type`).
pub const INTEGRATION_TYPE: &str = "azure-devops";

/// The User-Agent of exporter writes, which Port stores as each entity's `$datasource`:
/// `port-ocean/azure-devops/{version}/{identifier}/exporter`.
pub fn exporter_user_agent(version: &str, identifier: &str) -> String {
    format!("port-ocean/{INTEGRATION_TYPE}/{version}/{identifier}/exporter")
}

/// The User-Agent of GitOps writes (entities from `port.yml` specs in repositories):
/// `port-ocean/azure-devops/{version}/{identifier}/gitops`, as the Python integration's
/// `UserAgentType.gitops`. Reconciliation never lists them (their suffix is not `/exporter`).
pub fn gitops_user_agent(version: &str, identifier: &str) -> String {
    format!("port-ocean/{INTEGRATION_TYPE}/{version}/{identifier}/gitops")
}

/// The `$datasource` prefix and suffix of the entities integration `identifier` owns, as the
/// Python integration searches them (any version: a user who upgrades keeps their entities).
pub fn ownership(identifier: &str) -> (String, String) {
    (
        format!("port-ocean/{INTEGRATION_TYPE}/"),
        format!("/{identifier}/exporter"),
    )
}

/// Port's verdict on one entity of a bulk upsert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityResult {
    Accepted,
    /// Listed in a 207's `errors[]`.
    Rejected {
        /// Port's per-entity `statusCode` (400 when Port gave none).
        status: u16,
        /// Port's error code, e.g. `not_found`.
        error: String,
        message: String,
    },
}

/// The answer to one bulk upsert: one result per entity, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkOutcome {
    pub results: Vec<EntityResult>,
    pub trace_id: Option<String>,
}

/// The answer to a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    /// 404: the entity was not there (success: deletes are idempotent).
    AlreadyGone,
}

/// Writes to Port. Cheap to clone; clones share the connection pool and the token.
#[derive(Clone, Debug)]
pub struct PortClient {
    api: PortApi,
    /// Set on the GitOps client ([`PortClient::gitops`]): the User-Agent its writes carry.
    gitops_user_agent: Option<reqwest::header::HeaderValue>,
}

#[derive(Serialize)]
struct BulkBody<'a> {
    entities: &'a [Value],
}

#[derive(Deserialize, Default)]
struct BulkResponse {
    #[serde(default)]
    errors: Vec<BulkError>,
}

#[derive(Deserialize)]
struct BulkError {
    index: usize,
    #[serde(rename = "statusCode")]
    status_code: Option<u16>,
    #[serde(default)]
    error: String,
    #[serde(default)]
    message: String,
}

impl PortClient {
    /// A client for `access.base_url` that identifies itself with `user_agent` (see
    /// [`exporter_user_agent`]).
    pub fn new(access: &PortAccess, user_agent: String) -> Result<Self, PublishError> {
        Self::with_http_stats(access, user_agent, HttpStats::default())
    }

    /// Like [`PortClient::new`], recording every request (status, latency) into `http_stats`.
    pub fn with_http_stats(
        access: &PortAccess,
        user_agent: String,
        http_stats: HttpStats,
    ) -> Result<Self, PublishError> {
        Ok(Self {
            api: PortApi::new(access, Some(user_agent), http_stats)?,
            gitops_user_agent: None,
        })
    }

    /// The same client (connections, token) writing as GitOps: its upserts and deletes carry
    /// [`gitops_user_agent`], and [`PortClient::owns`] recognises GitOps-owned entities only.
    pub fn gitops(&self) -> PortClient {
        let agent = gitops_user_agent(
            COMPATIBLE_INTEGRATION_VERSION,
            self.api.integration_identifier(),
        );
        PortClient {
            api: self.api.clone(),
            gitops_user_agent: reqwest::header::HeaderValue::from_str(&agent).ok(),
        }
    }

    fn with_agent(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.gitops_user_agent {
            Some(agent) => request.header(reqwest::header::USER_AGENT, agent.clone()),
            None => request,
        }
    }

    /// Requests by status and their latency (shared with clones of this client).
    pub fn http_stats(&self) -> &HttpStats {
        self.api.http_stats()
    }

    fn url(&self, segments: &[&str]) -> Result<Url, PortError> {
        self.api.url(segments)
    }

    /// Sends an authenticated request with this client's User-Agent (see [`PortApi::send`]).
    async fn send(
        &self,
        operation: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, PortError> {
        self.api
            .send(operation, |http| self.with_agent(build(http)))
            .await
    }

    /// `POST /v1/blueprints/{bp}/entities/bulk?upsert=true&merge=…&create_missing_related_entities=…`
    /// with the Ocean event type and resync id. 200 and 207 give a per-entity result (by
    /// `index`); any other status is an error (see [`crate::retry::classify_error`]).
    pub async fn bulk_upsert(
        &self,
        blueprint: &str,
        entities: &[Value],
        write: &WriteOptions,
        event_type: &str,
        resync_id: Option<ResyncId>,
    ) -> Result<BulkOutcome, PublishError> {
        let operation = format!(
            "bulk upsert of {} entities to blueprint {blueprint}",
            entities.len()
        );
        let url = self.url(&["v1", "blueprints", blueprint, "entities", "bulk"])?;
        let mut query: Vec<(&str, String)> = vec![
            ("upsert", "true".into()),
            ("merge", write.merge.to_string()),
            (
                "create_missing_related_entities",
                write.create_missing_related_entities.to_string(),
            ),
            ("ocean_info_event_type", event_type.to_string()),
        ];
        if let Some(id) = resync_id {
            query.push(("ocean_info_resync_id", id.to_string()));
        }
        let body = BulkBody { entities };
        let response = self
            .send(&operation, |http| {
                http.post(url.clone()).query(&query).json(&body)
            })
            .await?;
        let status = response.status();
        if !status.is_success() {
            return Err(status_error(&operation, response).await.into());
        }
        let trace_id = trace_id(response.headers());
        let bytes = read_body(&operation, response).await?;
        let parsed: BulkResponse = if bytes.is_empty() {
            BulkResponse::default()
        } else {
            serde_json::from_slice(&bytes).map_err(|e| PortError::InvalidResponse {
                operation: operation.clone(),
                detail: format!("{e}; body: {}", excerpt(&String::from_utf8_lossy(&bytes))),
            })?
        };
        // Anything Port did not list under errors[] was written (200 lists none).
        let mut results = vec![EntityResult::Accepted; entities.len()];
        for error in parsed.errors {
            if let Some(slot) = results.get_mut(error.index) {
                *slot = EntityResult::Rejected {
                    status: error.status_code.unwrap_or(400),
                    error: error.error,
                    message: error.message,
                };
            }
        }
        Ok(BulkOutcome { results, trace_id })
    }

    /// `DELETE /v1/blueprints/{bp}/entities/{id}?delete_dependents=…`; 404 is success.
    pub async fn delete_entity(
        &self,
        blueprint: &BlueprintId,
        identifier: &EntityId,
        delete_dependents: bool,
    ) -> Result<DeleteOutcome, PublishError> {
        let operation = format!("delete of an entity of blueprint {blueprint}");
        let url = self.url(&["v1", "blueprints", blueprint, "entities", identifier])?;
        let query = [("delete_dependents", delete_dependents.to_string())];
        let response = self
            .send(&operation, |http| http.delete(url.clone()).query(&query))
            .await?;
        match response.status() {
            s if s.is_success() => Ok(DeleteOutcome::Deleted),
            StatusCode::NOT_FOUND => Ok(DeleteOutcome::AlreadyGone),
            _ => Err(status_error(&operation, response).await.into()),
        }
    }
}

/// One page of the entities a datasource owns in Port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnedPage {
    /// `(blueprint, identifier)` of each entity.
    pub entities: Vec<(String, String)>,
    /// The cursor of the next page, when there is one.
    pub next: Option<String>,
}

#[derive(Deserialize)]
struct OwnedEntity {
    blueprint: String,
    identifier: String,
}

#[derive(Deserialize)]
struct OwnedResponse {
    #[serde(default)]
    entities: Vec<OwnedEntity>,
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
struct BulkDeleteResponse {
    #[serde(default, rename = "deletedEntities")]
    deleted_entities: Vec<String>,
}

#[derive(Deserialize)]
struct SearchResponse {
    #[serde(default)]
    entities: Vec<Value>,
}

/// Entities listed per page of `datasource-entities` (Port's maximum).
pub const OWNED_PAGE_SIZE: usize = 5000;
/// Identifiers per bulk delete (Port's maximum).
pub const BULK_DELETE_MAX: usize = 100;
/// Identifiers per read of entities' current state ([`PortClient::current_entities`]). The
/// search route is not paged, so this bounds its answer (and the `in` rule's list, ≤ 100 kB).
pub const MAX_READ_IDENTIFIERS: usize = 100;

impl PortClient {
    /// Sends a JSON body and reads a JSON answer.
    async fn call_json<T: serde::de::DeserializeOwned>(
        &self,
        operation: &str,
        method: reqwest::Method,
        url: Url,
        query: &[(&str, String)],
        body: &Value,
    ) -> Result<T, PortError> {
        let response = self
            .send(operation, |http| {
                http.request(method.clone(), url.clone())
                    .query(query)
                    .json(body)
            })
            .await?;
        read_json(operation, response).await
    }

    /// `method` on the route of `path` with `body`, for a write whose answer only has to be
    /// JSON.
    async fn write(
        &self,
        operation: &str,
        method: reqwest::Method,
        path: &[&str],
        body: &Value,
    ) -> Result<(), PublishError> {
        let url = self.url(path)?;
        let _: Value = self.call_json(operation, method, url, &[], body).await?;
        Ok(())
    }

    /// `POST /v1/blueprints/entities/datasource-entities`: one page of the entities whose
    /// `$datasource` starts with `prefix` and ends with `suffix`, not updated since `before`.
    pub async fn owned_entities(
        &self,
        prefix: &str,
        suffix: &str,
        before: DateTime<Utc>,
        from: Option<&str>,
    ) -> Result<OwnedPage, PublishError> {
        let url = self.url(&["v1", "blueprints", "entities", "datasource-entities"])?;
        let mut body = serde_json::json!({
            "datasource_prefix": prefix,
            "datasource_suffix": suffix,
            "limit": OWNED_PAGE_SIZE,
            "before": before.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        });
        if let (Some(from), Value::Object(map)) = (from, &mut body) {
            map.insert("from".into(), Value::String(from.to_string()));
        }
        let page: OwnedResponse = self
            .call_json(
                "listing of the entities this integration owns",
                reqwest::Method::POST,
                url,
                &[],
                &body,
            )
            .await?;
        Ok(OwnedPage {
            entities: page
                .entities
                .into_iter()
                .map(|e| (e.blueprint, e.identifier))
                .collect(),
            next: page.next.filter(|n| !n.is_empty()),
        })
    }

    /// `POST /v1/blueprints/{bp}/bulk/entities/delete?delete_dependents=…` with at most
    /// [`BULK_DELETE_MAX`] identifiers; returns the identifiers Port deleted.
    pub async fn bulk_delete(
        &self,
        blueprint: &str,
        identifiers: &[String],
        delete_dependents: bool,
    ) -> Result<Vec<String>, PublishError> {
        let operation = format!(
            "bulk delete of {} entities of blueprint {blueprint}",
            identifiers.len()
        );
        let url = self.url(&["v1", "blueprints", blueprint, "bulk", "entities", "delete"])?;
        let answer: BulkDeleteResponse = self
            .call_json(
                &operation,
                reqwest::Method::POST,
                url,
                &[("delete_dependents", delete_dependents.to_string())],
                &serde_json::json!({ "entities": identifiers }),
            )
            .await?;
        Ok(answer.deleted_entities)
    }

    /// The `$datasource` prefix and suffix of the entities this client writes: the exporter's
    /// ([`ownership`] of the configured integration identifier), or GitOps' for
    /// [`PortClient::gitops`].
    fn own_datasource(&self) -> (String, String) {
        let (prefix, mut suffix) = ownership(self.api.integration_identifier());
        if self.gitops_user_agent.is_some() {
            suffix = format!("/{}/gitops", self.api.integration_identifier());
        }
        (prefix, suffix)
    }

    /// `POST /v1/entities/search?exclude_calculated_properties=true` for the entities of
    /// `blueprint` that `identifier_rule` selects and this client's datasource owns (the
    /// Python integration's two `$datasource contains` rules), with only the `include`d fields
    /// when given. The route is not paged: the answer holds every match.
    async fn search_own(
        &self,
        operation: &str,
        blueprint: &str,
        identifier_rule: Value,
        include: Option<&str>,
    ) -> Result<Vec<Value>, PublishError> {
        let (prefix, suffix) = self.own_datasource();
        let url = self.url(&["v1", "entities", "search"])?;
        let body = serde_json::json!({
            "combinator": "and",
            "rules": [
                {"property": "$blueprint", "operator": "=", "value": blueprint},
                identifier_rule,
                {"property": "$datasource", "operator": "contains", "value": prefix},
                {"property": "$datasource", "operator": "contains", "value": suffix},
            ],
        });
        let mut query = vec![("exclude_calculated_properties", "true".to_string())];
        query.extend(include.map(|field| ("include", field.to_string())));
        let answer: SearchResponse = self
            .call_json(operation, reqwest::Method::POST, url, &query, &body)
            .await?;
        Ok(answer.entities)
    }

    /// Whether this integration owns entity `identifier` of `blueprint` in Port: it exists and
    /// its `$datasource` is ours (the exporter's, or GitOps' for [`PortClient::gitops`]). The
    /// ownership check before a live delete.
    pub async fn owns(
        &self,
        blueprint: &BlueprintId,
        identifier: &EntityId,
    ) -> Result<bool, PublishError> {
        let found = self
            .search_own(
                &format!("ownership search of an entity of blueprint {blueprint}"),
                blueprint,
                serde_json::json!({"property": "$identifier", "operator": "=", "value": identifier}),
                Some("$identifier"),
            )
            .await?;
        Ok(!found.is_empty())
    }

    /// Port's current state of the entities `identifiers` (at most [`MAX_READ_IDENTIFIERS`]) of
    /// `blueprint` that this client's datasource owns, in one request: the rules `$blueprint =`,
    /// `$identifier in […]` and the two `$datasource contains` rules of ownership — the query
    /// the Python integration makes before upserting a resync's entities (`search_entities`
    /// with `_construct_search_query_for_entities`). An entity that is missing, or that another
    /// datasource owns, is not in the answer. The route is not paged, so the identifiers per
    /// request are bounded instead. Calculated and mirror properties are left out: Port
    /// computes them, we never write them.
    pub async fn current_entities(
        &self,
        blueprint: &BlueprintId,
        identifiers: &[&str],
    ) -> Result<Vec<Value>, PublishError> {
        self.search_own(
            &format!(
                "read of the current state of {} entities of blueprint {blueprint}",
                identifiers.len()
            ),
            blueprint,
            serde_json::json!({"property": "$identifier", "operator": "in", "value": identifiers}),
            None,
        )
        .await
    }

    /// `GET /v1/blueprints/{id}`: the blueprint, or `None` when Port answers 404.
    pub async fn blueprint(&self, identifier: &str) -> Result<Option<Value>, PublishError> {
        let url = self.url(&["v1", "blueprints", identifier])?;
        let operation = format!("read of blueprint {identifier}");
        let response = self.send(&operation, |http| http.get(url.clone())).await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body: Value = read_json(&operation, response).await?;
        Ok(Some(body.get("blueprint").cloned().unwrap_or(body)))
    }

    /// `POST /v1/blueprints` with the blueprint's body.
    pub async fn create_blueprint(&self, blueprint: &Value) -> Result<(), PublishError> {
        let identifier = blueprint["identifier"].as_str().unwrap_or("?");
        self.write(
            &format!("creation of blueprint {identifier}"),
            reqwest::Method::POST,
            &["v1", "blueprints"],
            blueprint,
        )
        .await
    }

    /// `POST /v1/blueprints/{bp}/scorecards` with a scorecard (Ocean's `create_scorecard`).
    pub async fn create_scorecard(
        &self,
        blueprint: &str,
        scorecard: &Value,
    ) -> Result<(), PublishError> {
        let identifier = scorecard["identifier"].as_str().unwrap_or("?");
        self.write(
            &format!("creation of scorecard {identifier} of blueprint {blueprint}"),
            reqwest::Method::POST,
            &["v1", "blueprints", blueprint, "scorecards"],
            scorecard,
        )
        .await
    }

    /// `POST /v1/pages` with a page (Ocean's `create_page`).
    pub async fn create_page(&self, page: &Value) -> Result<(), PublishError> {
        let identifier = page["identifier"].as_str().unwrap_or("?");
        self.write(
            &format!("creation of page {identifier}"),
            reqwest::Method::POST,
            &["v1", "pages"],
            page,
        )
        .await
    }

    /// `PATCH /v1/blueprints/{id}` with the fields to change.
    pub async fn patch_blueprint(
        &self,
        identifier: &str,
        fields: &Value,
    ) -> Result<(), PublishError> {
        self.write(
            &format!("update of blueprint {identifier}"),
            reqwest::Method::PATCH,
            &["v1", "blueprints", identifier],
            fields,
        )
        .await
    }

    /// `GET /v1/integration/{id}`: whether the integration exists in Port.
    pub async fn integration_exists(&self, identifier: &str) -> Result<bool, PublishError> {
        Ok(self.integration(identifier).await?.is_some())
    }

    /// `GET /v1/integration/{id}`: the integration record (the answer's `integration`), or
    /// `None` when Port answers 404.
    pub async fn integration(&self, identifier: &str) -> Result<Option<Value>, PublishError> {
        let url = self.url(&["v1", "integration", identifier])?;
        let operation =
            format!("read of integration {identifier} (GET /v1/integration/{identifier})");
        let response = self.send(&operation, |http| http.get(url.clone())).await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(status_error(&operation, response).await.into());
        }
        let body: Value = read_json(&operation, response).await?;
        Ok(Some(body.get("integration").cloned().unwrap_or(body)))
    }

    /// `PATCH /v1/integration/{id}` with the record fields to change (the Python integration's
    /// `patch_integration`).
    pub async fn patch_integration(
        &self,
        identifier: &str,
        fields: &Value,
    ) -> Result<(), PublishError> {
        self.write(
            &format!("update of integration {identifier} (PATCH /v1/integration/{identifier})"),
            reqwest::Method::PATCH,
            &["v1", "integration", identifier],
            fields,
        )
        .await
    }

    /// `POST {ingestUrl}/syncMetrics` with `{"syncKindsMetrics": [...]}`: one event per kind
    /// (see `sync_metrics`).
    pub async fn post_sync_metrics(
        &self,
        ingest_url: &str,
        metrics: &[Value],
    ) -> Result<(), PublishError> {
        self.post_to_ingest(
            "sync metrics report",
            &format!("{ingest_url}/syncMetrics"),
            &json!({ "syncKindsMetrics": metrics }),
        )
        .await
    }

    /// `POST {ingestUrl}/heartbeat` with `{"eventId"}`: the resync `event_id` is alive.
    pub async fn post_metrics_heartbeat(
        &self,
        ingest_url: &str,
        event_id: &str,
    ) -> Result<(), PublishError> {
        self.post_to_ingest(
            "sync metrics heartbeat",
            &format!("{ingest_url}/heartbeat"),
            &json!({ "eventId": event_id }),
        )
        .await
    }

    /// `POST {logAttributes.ingestUrl}` with `{"logs": [...]}`: log lines for Port's log
    /// view (see `log_shipping`), already redacted.
    pub async fn post_logs(&self, ingest_url: &str, lines: &[Value]) -> Result<(), PublishError> {
        self.post_to_ingest("log shipment", ingest_url, &json!({ "logs": lines }))
            .await
    }

    /// `PUT {ingestUrl}/syncMetrics/resync/{eventId}/kind/{kindIdentifier}` with
    /// `{"syncKindMetrics": event}`: one kind's event, as Ocean reports a kind when it starts
    /// and when it ends (`put_integration_sync_metrics`). The ids are path segments, encoded.
    pub async fn put_kind_sync_metrics(
        &self,
        ingest_url: &str,
        event: &Value,
    ) -> Result<(), PublishError> {
        let event_id = event["eventId"].as_str().unwrap_or_default();
        let kind_identifier = event["kindIdentifier"].as_str().unwrap_or_default();
        let mut url = ingest_url_of(ingest_url)?;
        url.path_segments_mut()
            .map_err(|()| {
                PublishError::Setup(format!(
                    "the ingest URL {ingest_url} of the integration record in Port cannot take a path"
                ))
            })?
            .pop_if_empty()
            .extend(["syncMetrics", "resync", event_id, "kind", kind_identifier]);
        self.to_ingest(
            &format!("sync metrics of kind {kind_identifier}"),
            reqwest::Method::PUT,
            url,
            &json!({ "syncKindMetrics": event }),
        )
        .await
    }

    async fn post_to_ingest(
        &self,
        what: &str,
        url: &str,
        body: &Value,
    ) -> Result<(), PublishError> {
        self.to_ingest(what, reqwest::Method::POST, ingest_url_of(url)?, body)
            .await
    }

    async fn to_ingest(
        &self,
        what: &str,
        method: reqwest::Method,
        url: Url,
        body: &Value,
    ) -> Result<(), PublishError> {
        let operation = format!("{what} ({method} {url})");
        // The answer's body is not read: only its status says whether Port took it.
        let response = self
            .send(&operation, |http| {
                http.request(method.clone(), url.clone()).json(body)
            })
            .await?;
        if !response.status().is_success() {
            return Err(status_error(&operation, response).await.into());
        }
        Ok(())
    }

    /// `POST /v1/integration` with the body the Python integration sends.
    pub async fn create_integration(&self, body: &Value) -> Result<(), PublishError> {
        self.write(
            "creation of the integration in Port",
            reqwest::Method::POST,
            &["v1", "integration"],
            body,
        )
        .await
    }

    /// `POST /v1/integration/{id}/kinds/{kind}/examples`: raw data examples for Port's mapping
    /// editor (already masked by ingest).
    pub async fn send_examples(
        &self,
        integration: &str,
        kind: &str,
        items: &[Value],
    ) -> Result<(), PublishError> {
        self.write(
            &format!("raw data examples of kind {kind} for integration {integration}"),
            reqwest::Method::POST,
            &["v1", "integration", integration, "kinds", kind, "examples"],
            &json!({ "examples": items }),
        )
        .await
    }

    /// `PATCH /v1/integration/{id}/resync-state` with the Python integration's field names.
    pub async fn report_resync_state(
        &self,
        integration: &str,
        state: &Value,
    ) -> Result<(), PublishError> {
        self.write(
            &format!("resync state report of integration {integration}"),
            reqwest::Method::PATCH,
            &["v1", "integration", integration, "resync-state"],
            state,
        )
        .await
    }
}

/// An ingest URL of the integration record, parsed.
fn ingest_url_of(url: &str) -> Result<Url, PublishError> {
    Url::parse(url).map_err(|e| {
        PublishError::Setup(format!(
            "the ingest URL {url} of the integration record in Port is not a URL: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agent_matches_the_python_integration() {
        assert_eq!(
            exporter_user_agent(COMPATIBLE_INTEGRATION_VERSION, "my-ado"),
            "port-ocean/azure-devops/0.12.2/my-ado/exporter"
        );
    }
}
