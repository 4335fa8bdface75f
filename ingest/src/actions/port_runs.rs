//! Port's action-run API as a self-hosted integration uses it (the calls Ocean's actions
//! processor makes): claim pending runs, acknowledge one (the step that makes exactly one
//! executor own it), report logs, the link and external id, and the final status; find a run by
//! its external id when Azure DevOps reports a completion.
//!
//! These are the only Port writes ingest makes: bookkeeping of action runs, never the catalog
//! (that is publish's).

use std::time::Duration;

use adoport_shared::config::PortAccess;
use adoport_shared::metrics::HttpStats;
use adoport_shared::port::answer::status_error;
use adoport_shared::port::retry::classify_error;
use adoport_shared::port::{Next, PortApi, PortError, RetryPolicy};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::ActionsError;

/// Header Ocean sends on the executor-only routes (`claim-pending`, `ack`).
const RESERVED_USAGE: (&str, &str) = ("x-port-reserved-usage", "true");

/// The retries of a Port call that is safe to repeat (everything but the ack): three
/// attempts, never sooner than Port's `Retry-After` (up to a minute). An executor keeps
/// polling, so a run call that fails is reported, not retried for long.
const RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    min_delay: Duration::from_millis(200),
    max_delay: Duration::from_secs(2),
    max_retry_after: Duration::from_secs(60),
    retry_window: Duration::ZERO,
};

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

/// A client of Port's action-run routes over the shared Port client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PortRuns {
    api: PortApi,
    /// Cancelled on shutdown: a retry stops waiting.
    stop: CancellationToken,
}

/// A run call: the route under `/v1`, its query, its body, and whether it is executor-only.
struct RunCall<'a> {
    method: Method,
    segments: &'a [&'a str],
    query: &'a [(&'a str, &'a str)],
    body: Option<&'a Value>,
    reserved: bool,
}

impl<'a> RunCall<'a> {
    /// A call of `method` on `/v1/{segments…}` with `body`, no query, on a route any client
    /// may use.
    fn new(method: Method, segments: &'a [&'a str], body: Option<&'a Value>) -> Self {
        Self {
            method,
            segments,
            query: &[],
            body,
            reserved: false,
        }
    }

    /// The same call on an executor-only route (Ocean's reserved-usage header).
    fn reserved(self) -> Self {
        Self {
            reserved: true,
            ..self
        }
    }

    fn operation(&self) -> String {
        format!("{} /v1/{}", self.method, self.segments.join("/"))
    }
}

impl PortRuns {
    pub fn new(access: PortAccess) -> Result<Self, ActionsError> {
        let api = PortApi::new(&access, None, HttpStats::default())
            .map_err(|e| ActionsError::Setup(e.to_string()))?;
        Ok(Self {
            api,
            stop: CancellationToken::new(),
        })
    }

    /// The same client, whose retries stop waiting once `shutdown` is cancelled.
    pub fn stopping_on(self, shutdown: CancellationToken) -> Self {
        Self {
            stop: shutdown,
            ..self
        }
    }

    /// The installation whose runs this client claims (`OCEAN__INTEGRATION__IDENTIFIER`).
    pub fn installation(&self) -> &str {
        self.api.integration_identifier()
    }

    /// One call (the shared client signs in again once on 401). Returns the status (a success
    /// or 409) and the JSON body (`null` when there is none).
    async fn call_once(&self, call: &RunCall<'_>) -> Result<(StatusCode, Value), PortError> {
        let url = self.api.url(&[&["v1"], call.segments].concat())?;
        let operation = call.operation();
        let response = self
            .api
            .send(&operation, |http| {
                let mut request = http.request(call.method.clone(), url.clone());
                if !call.query.is_empty() {
                    request = request.query(call.query);
                }
                if call.reserved {
                    request = request.header(RESERVED_USAGE.0, RESERVED_USAGE.1);
                }
                match call.body {
                    Some(body) => request.json(body),
                    None => request,
                }
            })
            .await?;
        let status = response.status();
        if !(status.is_success() || status == StatusCode::CONFLICT) {
            return Err(status_error(&operation, response).await);
        }
        let text = response.text().await.unwrap_or_default();
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// A call that is safe to repeat: retried (bounded, honouring `Retry-After`) on what the
    /// shared classifier calls transient (429, 5xx, no answer).
    async fn call(&self, call: RunCall<'_>) -> Result<Value, ActionsError> {
        let mut schedule = RETRY.schedule();
        loop {
            let error = match self.call_once(&call).await {
                Ok((_, value)) => return Ok(value),
                Err(error) => error,
            };
            let decision = classify_error(&error);
            if !decision.is_retryable() {
                return Err(error.into());
            }
            let next = schedule
                .wait_next(&decision, &self.stop, |delay, attempt| {
                    tracing::warn!(
                        error = %error, attempt, delay_ms = delay.as_millis() as u64,
                        "Port action-run call failed; retrying"
                    );
                })
                .await;
            if next != Next::Again {
                return Err(error.into());
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
                RunCall::new(
                    Method::POST,
                    &["actions", "runs", "claim-pending"],
                    Some(&body),
                )
                .reserved(),
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
            .call_once(
                &RunCall::new(Method::PATCH, &["actions", "runs", "ack"], Some(&body)).reserved(),
            )
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
        self.call(RunCall::new(
            Method::POST,
            &["actions", "runs", run_id, "logs"],
            Some(&body),
        ))
        .await
        .map(|_| ())
    }

    /// `PATCH /v1/actions/runs/{id}` with `patch` (`status`, `link`, `externalRunId`, …).
    pub async fn patch(&self, run_id: &str, patch: &Value) -> Result<(), ActionsError> {
        self.call(RunCall::new(
            Method::PATCH,
            &["actions", "runs", run_id],
            Some(patch),
        ))
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
        let answer = self
            .call(RunCall {
                query: &[("version", "v2"), ("external_run_id", external_id)],
                ..RunCall::new(Method::GET, &["actions", "runs"], None)
            })
            .await?;
        Ok(answer
            .get("runs")
            .and_then(Value::as_array)
            .and_then(|runs| runs.first())
            .and_then(ActionRun::from_port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adoport_shared::config::Secret;
    use adoport_sim::ScriptedAnswer;
    use adoport_sim::port::{PortSim, PortSimConfig};
    use tokio::time::Instant;

    const LOGS: &str = "POST /v1/actions/runs/{run_id}/logs";

    fn access(port: &PortSim) -> PortAccess {
        PortAccess {
            base_url: port.base_url(),
            client_id: "sim-client".into(),
            client_secret: Secret::new("sim-secret"),
            integration_identifier: "azure-devops".into(),
            integration_type: "azure-devops".into(),
            timeout_secs: 10,
            network: Default::default(),
        }
    }

    /// A 429 is retried no sooner than its `Retry-After` (the shared classifier's rule; the
    /// executor used to retry after 200 ms whatever Port asked), and a 4xx is not retried.
    #[tokio::test]
    async fn a_429_is_retried_after_the_wait_port_asks_for_and_a_4xx_is_not() {
        let port = PortSim::start(PortSimConfig::default()).await.expect("sim");
        let runs = PortRuns::new(access(&port)).expect("client");
        let run_id = port.create_action_run("trigger_pipeline", json!({}));

        port.fail_next(LOGS, vec![ScriptedAnswer::rate_limited(1)]);
        let started = Instant::now();
        runs.log(&run_id, "first")
            .await
            .expect("logged after the wait");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
        assert_eq!(port.action_run_logs(&run_id), vec!["first".to_string()]);
        assert_eq!(port.requests().get(LOGS), Some(&2));

        port.fail_next(LOGS, vec![ScriptedAnswer::status(422)]);
        let error = runs.log(&run_id, "second").await.expect_err("422");
        assert!(
            matches!(error, ActionsError::Port { status: 422, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("/v1/actions/runs/"), "{error}");
        assert_eq!(port.requests().get(LOGS), Some(&3), "a 4xx is not retried");
        port.shutdown().await;
    }

    /// A retry waiting out Port's `Retry-After` ends when the executor shuts down.
    #[tokio::test]
    async fn a_retry_wait_ends_on_shutdown() {
        let port = PortSim::start(PortSimConfig::default()).await.expect("sim");
        let shutdown = CancellationToken::new();
        let runs = PortRuns::new(access(&port))
            .expect("client")
            .stopping_on(shutdown.clone());
        let run_id = port.create_action_run("trigger_pipeline", json!({}));
        port.fail_next(LOGS, vec![ScriptedAnswer::rate_limited(30)]);
        let logging = tokio::spawn(async move { runs.log(&run_id, "never").await });
        let attempted = port
            .wait_for(
                |port| port.requests().contains_key(LOGS),
                Duration::from_secs(10),
            )
            .await;
        assert!(attempted, "the first attempt was made");
        shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(5), logging)
            .await
            .expect("the wait ended promptly")
            .expect("task");
        assert!(
            matches!(result, Err(ActionsError::Port { status: 429, .. })),
            "{result:?}"
        );
        assert_eq!(port.requests().get(LOGS), Some(&1));
        port.shutdown().await;
    }
}
