//! Port's action-run API as a self-hosted integration uses it (the calls Ocean's actions
//! processor makes): claim pending runs, acknowledge one (the step that makes exactly one
//! executor own it), report logs, the link and external id, and the final status; find a run by
//! its external id when Azure DevOps reports a completion.
//!
//! These are the only Port writes ingest makes: bookkeeping of action runs, never the catalog
//! (that is publish's).

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::ActionsError;
use adoport_shared::config::PortAccess;

/// Header Ocean sends on the executor-only routes (`claim-pending`, `ack`).
const RESERVED_USAGE: (&str, &str) = ("x-port-reserved-usage", "true");
/// Attempts of a Port call that is safe to repeat (everything but the ack).
const ATTEMPTS: u32 = 3;

/// One action run as Port hands it to the executor.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionRun {
    pub id: String,
    /// `payload.integrationActionType`, e.g. `trigger_pipeline`.
    pub action_type: String,
    /// `payload.integrationActionExecutionProperties`: the action's inputs.
    pub properties: Value,
    /// `IN_PROGRESS`, `SUCCESS` or `FAILURE`.
    pub status: String,
    /// The link reported when the run started (Azure DevOps' web URL of the pipeline run).
    pub link: Option<String>,
}

impl ActionRun {
    fn from_port(value: &Value) -> Option<Self> {
        let text = |pointer: &str| value.pointer(pointer).and_then(Value::as_str);
        let link = match value.get("link") {
            Some(Value::String(link)) => Some(link.clone()),
            Some(Value::Array(links)) => links.first().and_then(Value::as_str).map(String::from),
            _ => None,
        };
        Some(Self {
            id: text("/id")?.to_string(),
            action_type: text("/payload/integrationActionType")
                .unwrap_or_default()
                .to_string(),
            properties: value
                .pointer("/payload/integrationActionExecutionProperties")
                .cloned()
                .unwrap_or_else(|| json!({})),
            status: text("/status").unwrap_or("IN_PROGRESS").to_string(),
            link,
        })
    }

    pub fn is_in_progress(&self) -> bool {
        self.status == "IN_PROGRESS"
    }
}

/// Whether this executor now owns a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acknowledged {
    /// Ours: execute it.
    Owned,
    /// Another executor acknowledged it first (Port answered 409): leave it alone.
    TakenElsewhere,
}

/// A client of Port's action-run routes. Cheap to clone.
#[derive(Clone)]
pub struct PortRuns {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    access: PortAccess,
    token: Mutex<Option<String>>,
}

impl std::fmt::Debug for PortRuns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortRuns")
            .field("base_url", &self.inner.access.base_url)
            .finish_non_exhaustive()
    }
}

fn excerpt(body: &str) -> String {
    let flat: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    flat.chars().take(300).collect()
}

impl PortRuns {
    pub fn new(access: PortAccess) -> Result<Self, ActionsError> {
        let http = adoport_shared::http::client_builder(&access.network)
            .map_err(|e| ActionsError::Setup(e.to_string()))?
            .timeout(Duration::from_secs(access.timeout_secs.max(1)))
            .build()
            .map_err(|e| ActionsError::Setup(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                access,
                token: Mutex::new(None),
            }),
        })
    }

    /// The installation whose runs this client claims (`OCEAN__INTEGRATION__IDENTIFIER`).
    pub fn installation(&self) -> &str {
        &self.inner.access.integration_identifier
    }

    async fn token(&self, renew: bool) -> Result<String, ActionsError> {
        let mut slot = self.inner.token.lock().await;
        if renew {
            *slot = None;
        }
        if let Some(token) = slot.as_ref() {
            return Ok(token.clone());
        }
        let url = format!("{}/v1/auth/access_token", self.inner.access.base_url);
        let response = self
            .inner
            .http
            .post(&url)
            .json(&json!({
                "clientId": self.inner.access.client_id,
                "clientSecret": self.inner.access.client_secret.expose(),
            }))
            .send()
            .await
            .map_err(|e| ActionsError::PortUnreachable {
                url: url.clone(),
                detail: e.to_string(),
            })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let token = serde_json::from_str::<Value>(&text).ok().and_then(|b| {
            b.get("accessToken")
                .and_then(Value::as_str)
                .map(String::from)
        });
        match token {
            Some(token) if status.is_success() => {
                *slot = Some(token.clone());
                Ok(token)
            }
            _ => Err(ActionsError::Port {
                request: format!("POST {url}"),
                status: status.as_u16(),
                body: format!(
                    "{} (check OCEAN__PORT__CLIENT_ID and OCEAN__PORT__CLIENT_SECRET)",
                    excerpt(&text)
                ),
            }),
        }
    }

    /// One call; signs in again once on 401. Returns the status and the JSON body.
    async fn call_once(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Value>,
        reserved: bool,
    ) -> Result<(StatusCode, Value), ActionsError> {
        let url = format!("{}/v1/{path}", self.inner.access.base_url);
        let mut renewed = false;
        loop {
            let token = self.token(renewed).await?;
            let mut request = self
                .inner
                .http
                .request(method.clone(), &url)
                .bearer_auth(token);
            if reserved {
                request = request.header(RESERVED_USAGE.0, RESERVED_USAGE.1);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request
                .send()
                .await
                .map_err(|e| ActionsError::PortUnreachable {
                    url: url.clone(),
                    detail: e.to_string(),
                })?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !renewed {
                renewed = true;
                continue;
            }
            let text = response.text().await.unwrap_or_default();
            let value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if status.is_success() || status == StatusCode::CONFLICT {
                return Ok((status, value));
            }
            return Err(ActionsError::Port {
                request: format!("{method} {url}"),
                status: status.as_u16(),
                body: excerpt(&text),
            });
        }
    }

    /// A call that is safe to repeat: retried (bounded) on 429, 5xx and transport failures.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        reserved: bool,
    ) -> Result<Value, ActionsError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.call_once(&method, path, body, reserved).await {
                Ok((_, value)) => return Ok(value),
                Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "Port action-run call failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `POST /v1/actions/runs/claim-pending`: up to `limit` runs of this installation, hidden
    /// from other executors for `visibility`.
    pub async fn claim_pending(
        &self,
        limit: usize,
        visibility: Duration,
    ) -> Result<Vec<ActionRun>, ActionsError> {
        let body = json!({
            "installationId": self.installation(),
            "limit": limit,
            "visibilityTimeoutMs": visibility.as_millis() as u64,
        });
        let answer = self
            .call(
                Method::POST,
                "actions/runs/claim-pending",
                Some(&body),
                true,
            )
            .await?;
        Ok(answer
            .get("runs")
            .and_then(Value::as_array)
            .map(|runs| runs.iter().filter_map(ActionRun::from_port).collect())
            .unwrap_or_default())
    }

    /// `PATCH /v1/actions/runs/ack`: makes this executor the run's only owner. Not retried: a
    /// repeated ack of our own would read as "taken elsewhere".
    pub async fn acknowledge(&self, run_id: &str) -> Result<Acknowledged, ActionsError> {
        let body = json!({"runId": run_id});
        let (status, _) = self
            .call_once(&Method::PATCH, "actions/runs/ack", Some(&body), true)
            .await?;
        Ok(if status == StatusCode::CONFLICT {
            Acknowledged::TakenElsewhere
        } else {
            Acknowledged::Owned
        })
    }

    /// `POST /v1/actions/runs/{id}/logs`.
    pub async fn log(&self, run_id: &str, message: &str) -> Result<(), ActionsError> {
        let body = json!({"message": message});
        self.call(
            Method::POST,
            &format!("actions/runs/{run_id}/logs"),
            Some(&body),
            false,
        )
        .await
        .map(|_| ())
    }

    /// `PATCH /v1/actions/runs/{id}` with `patch` (`status`, `link`, `externalRunId`, …).
    pub async fn patch(&self, run_id: &str, patch: &Value) -> Result<(), ActionsError> {
        self.call(
            Method::PATCH,
            &format!("actions/runs/{run_id}"),
            Some(patch),
            false,
        )
        .await
        .map(|_| ())
    }

    /// Marks the run started: its link and the external id a completion finds it by.
    pub async fn report_started(
        &self,
        run_id: &str,
        link: &str,
        external_id: &str,
    ) -> Result<(), ActionsError> {
        self.patch(run_id, &json!({"link": link, "externalRunId": external_id}))
            .await
    }

    /// Logs `message` and ends the run with `SUCCESS` or `FAILURE`.
    pub async fn report_completed(
        &self,
        run_id: &str,
        success: bool,
        message: &str,
    ) -> Result<(), ActionsError> {
        self.log(run_id, message).await?;
        let status = if success { "SUCCESS" } else { "FAILURE" };
        self.patch(run_id, &json!({"status": status})).await
    }

    /// `GET /v1/actions/runs?version=v2&external_run_id=…`: the run started with that external
    /// id, if any.
    pub async fn find_by_external_id(
        &self,
        external_id: &str,
    ) -> Result<Option<ActionRun>, ActionsError> {
        let path = format!(
            "actions/runs?version=v2&external_run_id={}",
            urlencoding_component(external_id)
        );
        let answer = self.call(Method::GET, &path, None, false).await?;
        Ok(answer
            .get("runs")
            .and_then(Value::as_array)
            .and_then(|runs| runs.first())
            .and_then(ActionRun::from_port))
    }
}

/// Percent-encodes a query value (external ids are `ado_<guid>_<n>_<n>`, but stay safe).
fn urlencoding_component(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
