//! Port's action runs as a self-hosted Ocean integration sees them: the runs of integration
//! actions (`payload.type = INTEGRATION_ACTION`) waiting for the installation that executes
//! them, the claim/ack protocol that hands each run to exactly one executor, and the updates
//! the executor reports (status, link, external run id, logs).
//!
//! | key | answer |
//! |---|---|
//! | `POST /v1/actions/runs/claim-pending` | `{installationId, limit, visibilityTimeoutMs, exclude?}` → `{ok, runs}`: runs of that installation neither acked nor claimed within their visibility timeout; each is hidden from other claims for `visibilityTimeoutMs` |
//! | `PATCH /v1/actions/runs/ack` | `{runId}` → `{ok}`; 409 `run_already_acknowledged` the second time, 404 for an unknown run |
//! | `GET /v1/actions/runs` | `?external_run_id=` → `{ok, runs}` (the run whose `externalRunId` is that, or none) |
//! | `GET /v1/actions/runs/{run_id}` | `{ok, run}`, 404 `not_found` |
//! | `PATCH /v1/actions/runs/{run_id}` | `{status?, statusLabel?, link?, externalRunId?, summary?}` → `{ok, run}`; 422 for a status other than `IN_PROGRESS`/`SUCCESS`/`FAILURE`, or for a change to a run that already ended |
//! | `POST /v1/actions/runs/{run_id}/logs` | `{message, terminationStatus?, statusLabel?}` → `{ok, runLog}`; a `terminationStatus` ends the run |

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

use super::error::PortError;
use super::request::PortRequest;
use super::routes::{Answer, Body, ok};
use super::{PortSim, PortState};
use crate::traffic::lock;

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One action run and the executor bookkeeping Port keeps beside it.
#[derive(Debug)]
struct StoredRun {
    run: Value,
    claimed_until: Option<Instant>,
    acked: bool,
    logs: Vec<Value>,
    claims: u32,
}

/// Every action run, by id.
#[derive(Debug, Default)]
pub(crate) struct ActionRuns {
    runs: BTreeMap<String, StoredRun>,
    next: u64,
}

impl ActionRuns {
    fn create(&mut self, installation: &str, action_type: &str, properties: Value) -> String {
        self.next += 1;
        let id = format!("r_sim{:06}", self.next);
        let at = now();
        let run = json!({
            "id": id,
            "status": "IN_PROGRESS",
            "statusLabel": null,
            "link": null,
            "summary": null,
            "externalRunId": null,
            "source": "UI",
            "action": {"identifier": format!("{action_type}_action"), "title": action_type},
            "payload": {
                "type": "INTEGRATION_ACTION",
                "installationId": installation,
                "integrationActionType": action_type,
                "integrationActionExecutionProperties": properties,
            },
            "createdAt": at,
            "updatedAt": at,
            "endedAt": null,
        });
        self.runs.insert(
            id.clone(),
            StoredRun {
                run,
                claimed_until: None,
                acked: false,
                logs: Vec::new(),
                claims: 0,
            },
        );
        id
    }

    fn claim(&mut self, installation: &str, limit: usize, visibility: Duration) -> Vec<Value> {
        let at = Instant::now();
        self.runs
            .values_mut()
            .filter(|stored| {
                !stored.acked
                    && stored.run["status"] == "IN_PROGRESS"
                    && stored.run.pointer("/payload/installationId") == Some(&json!(installation))
                    && stored.claimed_until.is_none_or(|until| until <= at)
            })
            .take(limit)
            .map(|stored| {
                stored.claimed_until = Some(at + visibility);
                stored.claims += 1;
                stored.run.clone()
            })
            .collect()
    }

    fn ended(stored: &StoredRun) -> bool {
        stored.run["status"] != "IN_PROGRESS"
    }

    fn update(&mut self, id: &str, body: &Value) -> Result<Value, PortError> {
        let stored = self.runs.get_mut(id).ok_or_else(|| run_not_found(id))?;
        if let Some(status) = body.get("status")
            && !matches!(status.as_str(), Some("IN_PROGRESS" | "SUCCESS" | "FAILURE"))
        {
            return Err(PortError::invalid(format!(
                "status must be IN_PROGRESS, SUCCESS or FAILURE, not {status}"
            )));
        }
        if Self::ended(stored) {
            return Err(PortError::invalid(format!(
                "Action run \"{id}\" has already ended with status {}",
                stored.run["status"]
            )));
        }
        for field in ["status", "statusLabel", "link", "externalRunId", "summary"] {
            if let Some(value) = body.get(field) {
                stored.run[field] = value.clone();
            }
        }
        stored.run["updatedAt"] = json!(now());
        if Self::ended(stored) {
            stored.run["endedAt"] = json!(now());
        }
        Ok(stored.run.clone())
    }
}

fn run_not_found(id: &str) -> PortError {
    PortError::not_found(format!("Action run with id \"{id}\" was not found"))
}

pub(super) async fn claim_pending(State(state): State<Arc<PortState>>, Body(body): Body) -> Answer {
    let Some(installation) = body.get("installationId").and_then(Value::as_str) else {
        return Err(PortError::invalid("\"installationId\" is required"));
    };
    let limit = body.get("limit").and_then(Value::as_u64).unwrap_or(100) as usize;
    let visibility = body
        .get("visibilityTimeoutMs")
        .and_then(Value::as_u64)
        .unwrap_or(60_000);
    let runs = lock(&state.action_runs).claim(
        installation,
        limit.min(1000),
        Duration::from_millis(visibility),
    );
    ok(StatusCode::OK, json!({"ok": true, "runs": runs}))
}

pub(super) async fn acknowledge(State(state): State<Arc<PortState>>, Body(body): Body) -> Answer {
    let Some(id) = body.get("runId").and_then(Value::as_str) else {
        return Err(PortError::invalid("\"runId\" is required"));
    };
    let mut runs = lock(&state.action_runs);
    let stored = runs.runs.get_mut(id).ok_or_else(|| run_not_found(id))?;
    if stored.acked {
        return Err(PortError::new(
            StatusCode::CONFLICT,
            "run_already_acknowledged",
            format!("Action run \"{id}\" was already acknowledged"),
        ));
    }
    stored.acked = true;
    ok(StatusCode::OK, json!({"ok": true}))
}

pub(super) async fn find_runs(
    State(state): State<Arc<PortState>>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let external = query.get("external_run_id");
    let runs: Vec<Value> = lock(&state.action_runs)
        .runs
        .values()
        .filter(|stored| {
            external.is_none_or(|wanted| stored.run["externalRunId"].as_str() == Some(wanted))
        })
        .map(|stored| stored.run.clone())
        .collect();
    ok(StatusCode::OK, json!({"ok": true, "runs": runs}))
}

pub(super) async fn get_run(request: PortRequest) -> Answer {
    let id = request.param("run_id");
    let runs = lock(&request.state.action_runs);
    let stored = runs.runs.get(&id).ok_or_else(|| run_not_found(&id))?;
    ok(StatusCode::OK, json!({"ok": true, "run": stored.run}))
}

pub(super) async fn patch_run(request: PortRequest, Body(body): Body) -> Answer {
    let run = lock(&request.state.action_runs).update(&request.param("run_id"), &body)?;
    ok(StatusCode::OK, json!({"ok": true, "run": run}))
}

pub(super) async fn post_log(request: PortRequest, Body(body): Body) -> Answer {
    let id = request.param("run_id");
    let Some(message) = body.get("message").and_then(Value::as_str) else {
        return Err(PortError::invalid("\"message\" is required"));
    };
    let mut runs = lock(&request.state.action_runs);
    if let Some(status) = body.get("terminationStatus") {
        let mut update = json!({"status": status});
        if let Some(label) = body.get("statusLabel") {
            update["statusLabel"] = label.clone();
        }
        runs.update(&id, &update)?;
    }
    let stored = runs.runs.get_mut(&id).ok_or_else(|| run_not_found(&id))?;
    let log = json!({"message": message, "createdAt": now()});
    stored.logs.push(log.clone());
    ok(StatusCode::CREATED, json!({"ok": true, "runLog": log}))
}

impl PortSim {
    /// Creates a pending run of the integration action `action_type` (e.g. `trigger_pipeline`)
    /// for the configured installation, as a user clicking the action in Port does; returns its
    /// id.
    pub fn create_action_run(&self, action_type: &str, properties: Value) -> String {
        let installation = self.state.config.integration_identifier.clone();
        let id = lock(&self.state.action_runs).create(&installation, action_type, properties);
        self.state.traffic.touch();
        id
    }

    /// An action run as `GET /v1/actions/runs/{id}` returns it.
    pub fn action_run(&self, id: &str) -> Option<Value> {
        lock(&self.state.action_runs)
            .runs
            .get(id)
            .map(|stored| stored.run.clone())
    }

    /// The log messages reported for an action run, in order.
    pub fn action_run_logs(&self, id: &str) -> Vec<String> {
        lock(&self.state.action_runs)
            .runs
            .get(id)
            .map(|stored| {
                stored
                    .logs
                    .iter()
                    .filter_map(|log| log["message"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many times an action run was handed out by `claim-pending`.
    pub fn action_run_claims(&self, id: &str) -> u32 {
        lock(&self.state.action_runs)
            .runs
            .get(id)
            .map_or(0, |stored| stored.claims)
    }
}
