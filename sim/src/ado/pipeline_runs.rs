//! Simulated pipeline runs started through the Pipelines API (what the `trigger_pipeline`
//! action calls), and the `ms.vss-pipelines.run-state-changed-event` service-hook body a run's
//! completion sends.
//!
//! | key | answer |
//! |---|---|
//! | `POST /{org}/{project}/_apis/pipelines/{pipelineId}/runs` | `{resources?: {repositories: {self: {refName}}}, templateParameters?, variables?: {name: {value}}}` → 200 the run (`state: inProgress`, `_links.web.href`); 404 `PipelineNotFoundException` for an unknown pipeline, 400 `PipelineValidationException` for a branch the repository does not have |
//! | `GET /{org}/{project}/_apis/pipelines/{pipelineId}/runs/{runId}` | served by `runs`, which answers these runs too (`state`, `result` and `finishedDate` once completed) and lists them first |
//!
//! Branches a run may name: `refs/heads/main` and the source branches of the project's pull
//! requests (the refs the simulator serves).

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::error::{AdoError, ado_json};
use super::pipelines::PIPELINES_PER_PROJECT;
use super::request::AdoRequest;
use super::routes::{json_body, ok_json};
use super::seed::{Organization, Project, ado_time};
use super::work::project;
use super::{AdoSim, AdoState};
use crate::traffic::lock;

/// First id of a run started through the API (seeded builds use the low ids).
const FIRST_RUN_ID: u64 = 1000;

/// One run started through the API.
#[derive(Debug, Clone)]
struct Run {
    id: u64,
    project_id: String,
    pipeline_id: u64,
    ref_name: String,
    body: Value,
    created: chrono::DateTime<chrono::Utc>,
    /// `None` while in progress; `succeeded`, `failed` or `canceled` once completed.
    result: Option<String>,
    /// When it completed.
    finished: Option<chrono::DateTime<chrono::Utc>>,
}

/// Every run started through the API, in start order.
#[derive(Debug, Default)]
pub(crate) struct PipelineRuns {
    runs: Vec<Run>,
}

fn pipeline_not_found(id: &str) -> Response {
    ado_json(
        StatusCode::NOT_FOUND,
        &format!("Pipeline with id {id} not found."),
        "Microsoft.Azure.Pipelines.WebApi.PipelineNotFoundException, Microsoft.Azure.Pipelines.WebApi",
        "PipelineNotFoundException",
        3000,
    )
}

fn known_branches(org: &Organization, project: &Project) -> Vec<String> {
    let mut names = vec!["refs/heads/main".to_string()];
    for pr in &org.pull_requests {
        let in_project = org
            .repositories
            .iter()
            .any(|r| r.id == pr.repository_id && r.project_id == project.id);
        if in_project && !names.contains(&pr.source_ref_name) {
            names.push(pr.source_ref_name.clone());
        }
    }
    names
}

fn run_json(organization_url: &str, project: &Project, run: &Run) -> Value {
    let pipeline_url = format!(
        "{organization_url}/{}/_apis/pipelines/{}",
        project.id, run.pipeline_id
    );
    let url = format!("{pipeline_url}/runs/{}", run.id);
    let mut value = json!({
        "_links": {
            "self": {"href": url},
            "web": {"href": format!("{organization_url}/{}/_build/results?buildId={}", project.id, run.id)},
            "pipeline.web": {"href": format!("{organization_url}/{}/_build/definition?definitionId={}", project.id, run.pipeline_id)},
            "pipeline": {"href": format!("{pipeline_url}?revision=1")},
        },
        "pipeline": {
            "url": format!("{pipeline_url}?revision=1"),
            "id": run.pipeline_id,
            "revision": 1,
            "name": format!("{}-pipeline-{}", project.name.replace(' ', "-"), run.pipeline_id),
            "folder": "\\",
        },
        "state": if run.result.is_some() { "completed" } else { "inProgress" },
        "createdDate": ado_time(run.created),
        "url": url,
        "resources": {"repositories": {"self": {
            "refName": run.ref_name,
            "version": format!("{:040x}", run.id),
        }}},
        "id": run.id,
        "name": format!("{}.{}", run.created.format("%Y%m%d"), run.id - FIRST_RUN_ID + 1),
    });
    for field in ["templateParameters", "variables"] {
        if let Some(given) = run.body.get(field) {
            value[field] = given.clone();
        }
    }
    if let Some(result) = &run.result {
        value["result"] = json!(result);
        value["finishedDate"] = json!(ado_time(run.finished.unwrap_or(run.created)));
    }
    value
}

pub(super) async fn run_pipeline(request: AdoRequest, body: Bytes) -> Result<Response, AdoError> {
    let body: Value = if body.is_empty() {
        json!({})
    } else {
        json_body(&body)?
    };
    let org = request.organization();
    let project = project(&org, &request.params)?;
    let pipeline_text = request.param("pipelineId");
    let pipeline_id = match pipeline_text.parse::<u64>() {
        Ok(id) if (1..=PIPELINES_PER_PROJECT).contains(&id) => id,
        _ => return Ok(pipeline_not_found(&pipeline_text)),
    };
    let ref_name = body
        .pointer("/resources/repositories/self/refName")
        .and_then(Value::as_str)
        .unwrap_or("refs/heads/main")
        .to_string();
    if !known_branches(&org, project).contains(&ref_name) {
        return Ok(ado_json(
            StatusCode::BAD_REQUEST,
            &format!(
                "Unable to resolve the reference '{ref_name}' to a specific version. Verify the reference exists in the source repository."
            ),
            "Microsoft.Azure.Pipelines.WebApi.PipelineValidationException, Microsoft.Azure.Pipelines.WebApi",
            "PipelineValidationException",
            3000,
        ));
    }
    let mut runs = lock(&request.state.pipeline_runs);
    let run = Run {
        id: FIRST_RUN_ID + runs.runs.len() as u64,
        project_id: project.id.clone(),
        pipeline_id,
        ref_name,
        body,
        created: chrono::Utc::now(),
        result: None,
        finished: None,
    };
    let answer = run_json(&request.urls.organization_url, project, &run);
    runs.runs.push(run);
    Ok(ok_json(answer))
}

/// A run started through the API, as `GET …/pipelines/{pipelineId}/runs/{runId}` returns it;
/// `None` for any other run (`runs` serves the route and answers the seeded runs).
pub(super) fn started_run(
    state: &AdoState,
    organization_url: &str,
    project: &Project,
    pipeline: &str,
    run_id: &str,
) -> Option<Value> {
    let runs = lock(&state.pipeline_runs);
    runs.runs
        .iter()
        .find(|run| {
            run.project_id == project.id
                && run.pipeline_id.to_string() == pipeline
                && run.id.to_string() == run_id
        })
        .map(|run| run_json(organization_url, project, run))
}

/// The runs of `project` started through the API (of pipeline `pipeline` when given), newest
/// first, as the runs list has them.
pub(super) fn started_runs(
    state: &AdoState,
    organization_url: &str,
    project: &Project,
    pipeline: Option<u64>,
) -> Vec<Value> {
    let runs = lock(&state.pipeline_runs);
    runs.runs
        .iter()
        .rev()
        .filter(|run| run.project_id == project.id && pipeline.is_none_or(|p| p == run.pipeline_id))
        .map(|run| run_json(organization_url, project, run))
        .collect()
}

impl AdoSim {
    /// Starts a run of pipeline `pipeline_id` of project `project_id` on `refs/heads/main`, as
    /// `POST …/pipelines/{id}/runs` does (no service hook): its id, `None` for an unknown
    /// project or pipeline.
    pub fn start_pipeline_run(&self, project_id: &str, pipeline_id: u64) -> Option<u64> {
        if !(1..=PIPELINES_PER_PROJECT).contains(&pipeline_id) {
            return None;
        }
        let project_id = lock(&self.state.organization)
            .project(project_id)?
            .id
            .clone();
        let mut runs = lock(&self.state.pipeline_runs);
        let id = FIRST_RUN_ID + runs.runs.len() as u64;
        runs.runs.push(Run {
            id,
            project_id,
            pipeline_id,
            ref_name: "refs/heads/main".into(),
            body: json!({}),
            created: chrono::Utc::now(),
            result: None,
            finished: None,
        });
        drop(runs);
        self.state.traffic.touch();
        Some(id)
    }

    /// Every run started through `POST …/pipelines/{id}/runs`, as `GET …/runs/{runId}` returns
    /// it, in start order.
    pub fn pipeline_runs(&self) -> Vec<Value> {
        let urls = self.urls();
        let org = lock(&self.state.organization);
        lock(&self.state.pipeline_runs)
            .runs
            .iter()
            .filter_map(|run| {
                let project = org.project_by_id(&run.project_id)?;
                Some(run_json(&urls.organization_url, project, run))
            })
            .collect()
    }

    /// The request body a run was started with.
    pub fn pipeline_run_request(&self, run_id: u64) -> Option<Value> {
        lock(&self.state.pipeline_runs)
            .runs
            .iter()
            .find(|run| run.id == run_id)
            .map(|run| run.body.clone())
    }

    /// Completes a run with `result` (`succeeded`, `failed`, `canceled`) and returns the
    /// `ms.vss-pipelines.run-state-changed-event` service-hook body Azure DevOps posts for it;
    /// `None` for an unknown run.
    pub fn complete_pipeline_run(&self, run_id: u64, result: &str) -> Option<Value> {
        let body = {
            let urls = self.urls();
            let org = lock(&self.state.organization);
            let mut runs = lock(&self.state.pipeline_runs);
            let run = runs.runs.iter_mut().find(|run| run.id == run_id)?;
            run.result = Some(result.to_string());
            run.finished = Some(chrono::Utc::now());
            let project = org.project_by_id(&run.project_id)?;
            let resource = run_json(&urls.organization_url, project, run);
            json!({
                "subscriptionId": uuid::Uuid::new_v4().to_string(),
                "notificationId": run_id,
                "id": uuid::Uuid::new_v4().to_string(),
                "eventType": "ms.vss-pipelines.run-state-changed-event",
                "publisherId": "pipelines",
                "message": {"text": format!("Run {} {result}.", resource["name"].as_str().unwrap_or_default())},
                "resource": {
                    "run": {
                        "id": run.id,
                        "name": resource["name"],
                        "state": "completed",
                        "result": result,
                        "_links": resource["_links"],
                    },
                    "pipeline": resource["pipeline"],
                    "runId": run.id,
                    "pipelineId": run.pipeline_id,
                },
                "resourceVersion": "5.1-preview.1",
                "resourceContainers": {
                    "collection": {"id": uuid::Uuid::nil().to_string(), "baseUrl": format!("{}/", urls.organization_url)},
                    "account": {"id": uuid::Uuid::nil().to_string(), "baseUrl": format!("{}/", urls.organization_url)},
                    "project": {"id": project.id, "baseUrl": format!("{}/", urls.organization_url)},
                },
                "createdDate": ado_time(chrono::Utc::now()),
            })
        };
        self.state.traffic.touch();
        Some(body)
    }
}
