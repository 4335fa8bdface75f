//! What live events read, simulated: single builds with their timelines and test runs, pipeline
//! runs, release definitions and Advanced Security alerts; the service-hook rules of the
//! release management (`vsrm`) and Advanced Security (`advsec`) hosts; and service-hook
//! envelopes built from the simulated objects, shaped like Microsoft's sample payloads.
//!
//! | key | answer |
//! |---|---|
//! | `GET /{org}/{project}/_apis/build/builds/{buildId}` | one build (ids `1..=PIPELINES_PER_PROJECT*BUILDS_PER_PIPELINE` per project) |
//! | `GET /{org}/{project}/_apis/build/builds/{buildId}/timeline` | `Stage` records `Build` and `Deploy`, each with a `Phase` and a `Job` |
//! | `GET /{org}/{project}/_apis/test/runs` | one run per build (run id = build id), `buildUri` filter, `$top` (≤ 1000)/`$skip` |
//! | `GET /{org}/{project}/_apis/test/runs/{runId}/results` | [`RESULTS_PER_RUN`] results, `$top` (≤ 1000)/`$skip` |
//! | `GET /{org}/{project}/_apis/pipelines/{pipelineId}` | one pipeline |
//! | `GET /{org}/{project}/_apis/pipelines/{pipelineId}/runs/{runId}` | one run (run id = build id) |
//! | `GET /{org}/{project}/_apis/release/definitions/{definitionId}` | the release definition (id 1) |
//! | `GET /{org}/{project}/_apis/alert/repositories/{repository}/alerts/{alertId}` | one alert ([`ALERTS_PER_REPOSITORY`] per repository; `api-version=7.2-preview.1` required) |
//!
//! Service hooks on Azure DevOps Services hosts (`dev.azure.com`, reached through a proxy in
//! tests): a subscription lives on the host it was created on and is listed only there;
//! publisher `rm` only on `vsrm.dev.azure.com`, `advsec` only on `advsec.dev.azure.com` (with
//! `api-version=7.2-preview.1`), the others only on `dev.azure.com`. On any other host (Azure
//! DevOps Server, the plain simulator) every publisher lives on the collection URL. Passwords
//! are answered masked (`********`), and org-level subscriptions get a
//! `publisherInputs.tfsSubscriptionId`, as Azure DevOps does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Duration;
use serde_json::{Value, json};

use super::error::{AdoError, json_headers};
use super::pipelines::{BUILDS_PER_PIPELINE, PIPELINES_PER_PROJECT};
use super::routes::{list, ok_json, parse_count, urls};
use super::seed::{Organization, Project, Repository, Urls, ado_time, epoch, stable_id};
use super::work::project;
use super::{AdoSim, AdoState};
use crate::traffic::lock;

type Params = Path<HashMap<String, String>>;
type QueryMap = Query<HashMap<String, String>>;

/// Test results per test run.
pub const RESULTS_PER_RUN: u64 = 3;
/// Advanced Security alerts per repository (states cycle `active`, `dismissed`, `fixed`).
pub const ALERTS_PER_REPOSITORY: u64 = 3;
/// The `api-version` the Advanced Security APIs and hooks take.
const ADVSEC_API_VERSION: &str = "7.2-preview.1";
/// What Azure DevOps answers in place of a secret subscription input.
const MASKED: &str = "********";

const KIND_TIMELINE: u16 = 0x0011;
const KIND_ADDED_PROJECT: u16 = 0x0012;

const ALERT_STATES: [&str; 3] = ["active", "dismissed", "fixed"];
const ALERT_SEVERITIES: [&str; 3] = ["high", "medium", "critical"];
const ALERT_TYPES: [&str; 3] = ["dependency", "code", "secret"];

/// What live-event tests change in the simulated organization.
#[derive(Debug, Default)]
pub(crate) struct LiveState {
    /// `(repository id, alert id)` → state set with [`AdoSim::set_alert_state`].
    alert_states: Mutex<HashMap<(String, u64), String>>,
}

pub(crate) fn routes() -> Router<Arc<AdoState>> {
    let build = "/{org}/{project}/_apis/build/builds/{buildId}";
    Router::new()
        .route(build, get(get_build))
        .route(&format!("{build}/timeline"), get(get_timeline))
        .route("/{org}/{project}/_apis/test/runs", get(list_test_runs))
        .route(
            "/{org}/{project}/_apis/test/runs/{runId}/results",
            get(list_test_results),
        )
        .route(
            "/{org}/{project}/_apis/pipelines/{pipelineId}",
            get(get_pipeline),
        )
        .route(
            "/{org}/{project}/_apis/pipelines/{pipelineId}/runs/{runId}",
            get(get_pipeline_run),
        )
        .route(
            "/{org}/{project}/_apis/release/definitions/{definitionId}",
            get(get_definition),
        )
        .route(
            "/{org}/{project}/_apis/alert/repositories/{repository}/alerts/{alertId}",
            get(get_alert),
        )
}

fn not_found(message: String, type_key: &str) -> Response {
    let body = json!({"$id": "1", "innerException": null, "message": message,
        "typeName": format!("Microsoft.TeamFoundation.{type_key}, Microsoft.TeamFoundation.Server.Core"),
        "typeKey": type_key, "errorCode": 0, "eventId": 3000});
    (StatusCode::NOT_FOUND, json_headers(), body.to_string()).into_response()
}

fn id_param(params: &HashMap<String, String>, name: &str) -> u64 {
    params
        .get(name)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
}

const RECORD_STAGE: u64 = 1;
const RECORD_PHASE: u64 = 2;
const RECORD_JOB: u64 = 3;

/// The id of a timeline record: build, record type (stage, phase, job) and stage order.
fn record_id(build_id: u64, record: u64, order: u64) -> String {
    format!("{build_id:08x}-{record:04x}-4000-8000-{order:012x}")
}

/// `(pipeline, n)` of a build id, if the project has that build.
fn build_position(build_id: u64) -> Option<(u64, u64)> {
    let total = PIPELINES_PER_PROJECT * BUILDS_PER_PIPELINE;
    (1..=total).contains(&build_id).then(|| {
        (
            (build_id - 1) / BUILDS_PER_PIPELINE + 1,
            (build_id - 1) % BUILDS_PER_PIPELINE + 1,
        )
    })
}

fn build_missing(build_id: u64) -> Response {
    not_found(
        format!("The requested build {build_id} could not be found."),
        "BuildNotFoundException",
    )
}

/// `$top`/`$skip` page of `values` (these APIs return no continuation token).
fn skip_page(values: Vec<Value>, query: &HashMap<String, String>) -> Result<Response, AdoError> {
    let top = parse_count(query, "$top")?.unwrap_or(100).clamp(1, 1000);
    let skip = parse_count(query, "$skip")?.unwrap_or(0);
    Ok(list(values.into_iter().skip(skip).take(top).collect()))
}

impl Organization {
    fn live_timeline_json(&self, urls: &Urls, project: &Project, build_id: u64) -> Value {
        let org = &urls.organization_url;
        let started = epoch() + Duration::hours(build_id as i64 * 2) + Duration::seconds(20);
        let b = u32::try_from(build_id).unwrap_or(u32::MAX);
        let mut records = Vec::new();
        for (i, stage) in ["Build", "Deploy"].iter().enumerate() {
            let order = i as u64 + 1;
            let stage_id = record_id(build_id, RECORD_STAGE, order);
            let phase_id = record_id(build_id, RECORD_PHASE, order);
            let job_id = record_id(build_id, RECORD_JOB, order);
            let start = started + Duration::minutes(i as i64 * 3);
            let result = if build_id.is_multiple_of(3) && i == 1 {
                "failed"
            } else {
                "succeeded"
            };
            let record = |id: &str,
                          parent: Option<&str>,
                          kind: &str,
                          name: &str,
                          identifier: &str,
                          order: usize| {
                json!({
                    "previousAttempts": [],
                    "id": id,
                    "parentId": parent,
                    "type": kind,
                    "name": name,
                    "startTime": ado_time(start),
                    "finishTime": ado_time(start + Duration::minutes(3)),
                    "currentOperation": null,
                    "percentComplete": null,
                    "state": "completed",
                    "result": result,
                    "resultCode": null,
                    "changeId": order,
                    "lastModified": ado_time(start + Duration::minutes(3)),
                    "workerName": if kind == "Job" { json!("Hosted Agent") } else { Value::Null },
                    "order": order,
                    "details": null,
                    "errorCount": usize::from(result == "failed"),
                    "warningCount": 0,
                    "url": null,
                    "log": null,
                    "task": null,
                    "attempt": 1,
                    "identifier": identifier,
                })
            };
            records.push(record(&stage_id, None, "Stage", stage, stage, i + 1));
            records.push(record(
                &phase_id,
                Some(&stage_id),
                "Phase",
                "Job",
                &format!("{stage}.__default"),
                1,
            ));
            records.push(record(
                &job_id,
                Some(&phase_id),
                "Job",
                "Job",
                &format!("{stage}.__default.Job"),
                1,
            ));
        }
        json!({
            "records": records,
            "lastChangedBy": stable_id(KIND_TIMELINE, b, 99),
            "lastChangedOn": ado_time(started + Duration::minutes(7)),
            "id": stable_id(KIND_TIMELINE, b, 100),
            "changeId": 6,
            "url": format!("{org}/{}/_apis/build/builds/{build_id}/Timeline/{}", project.id, stable_id(KIND_TIMELINE, b, 100)),
        })
    }

    fn live_test_run_json(&self, urls: &Urls, project: &Project, build_id: u64) -> Value {
        let org = &urls.organization_url;
        let id = build_id;
        let completed = epoch() + Duration::hours(build_id as i64 * 2) + Duration::minutes(6);
        let failed = u64::from(build_id.is_multiple_of(3));
        json!({
            "id": id,
            "name": format!("VSTest run of build {build_id}"),
            "url": format!("{org}/{}/_apis/test/Runs/{id}", project.id),
            "build": {"id": build_id.to_string(), "name": format!("build {build_id}"), "url": format!("{org}/{}/_apis/build/Builds/{build_id}", project.id)},
            "isAutomated": true,
            "owner": self.identity(urls, 0),
            "project": {"id": project.id, "name": project.name},
            "startedDate": ado_time(completed - Duration::minutes(1)),
            "completedDate": ado_time(completed),
            "state": "Completed",
            "totalTests": RESULTS_PER_RUN,
            "incompleteTests": 0,
            "notApplicableTests": 0,
            "passedTests": RESULTS_PER_RUN - failed,
            "unanalyzedTests": failed,
            "revision": 3,
            "webAccessUrl": format!("{org}/{}/_TestManagement/Runs?runId={id}&_a=runCharts", project.id),
            "buildConfiguration": {"id": build_id, "number": format!("build {build_id}"), "uri": format!("vstfs:///Build/Build/{build_id}")},
        })
    }

    fn live_test_result_json(&self, urls: &Urls, project: &Project, run_id: u64, n: u64) -> Value {
        let org = &urls.organization_url;
        let failed = run_id.is_multiple_of(3) && n == RESULTS_PER_RUN;
        json!({
            "id": 100_000 + n,
            "project": {"id": project.id, "name": project.name},
            "outcome": if failed { "Failed" } else { "Passed" },
            "testRun": {"id": run_id.to_string(), "name": format!("VSTest run {run_id}"), "url": format!("{org}/{}/_apis/test/Runs/{run_id}", project.id)},
            "testCaseTitle": format!("test_case_{n}"),
            "automatedTestName": format!("Suite.test_case_{n}"),
            "durationInMs": 120.0 * n as f64,
            "state": "Completed",
            "url": format!("{org}/{}/_apis/test/Runs/{run_id}/Results/{}", project.id, 100_000 + n),
        })
    }

    fn live_run_json(&self, urls: &Urls, project: &Project, pipeline: u64, run_id: u64) -> Value {
        let org = &urls.organization_url;
        let build = self.build_json(
            urls,
            project,
            pipeline,
            (run_id - 1) % BUILDS_PER_PIPELINE + 1,
        );
        let definition = self.pipeline_json(urls, project, pipeline);
        let url = format!(
            "{org}/{}/_apis/pipelines/{pipeline}/runs/{run_id}",
            project.id
        );
        json!({
            "_links": {
                "self": {"href": url},
                "web": {"href": format!("{org}/{}/_build/results?buildId={run_id}", project.id)},
                "pipeline.web": {"href": format!("{org}/{}/_build/definition?definitionId={pipeline}", project.id)},
                "pipeline": {"href": format!("{org}/{}/_apis/pipelines/{pipeline}?revision=1", project.id)},
            },
            "pipeline": {"url": definition["url"], "id": pipeline, "revision": 1, "name": definition["name"], "folder": "\\"},
            "state": "completed",
            "result": build["result"],
            "createdDate": build["queueTime"],
            "finishedDate": build["finishTime"],
            "url": url,
            "id": run_id,
            "name": build["buildNumber"],
        })
    }

    fn live_alert_json(
        &self,
        urls: &Urls,
        repository: &Repository,
        alert_id: u64,
        state: &str,
    ) -> Value {
        let project = self
            .project_by_id(&repository.project_id)
            .map(|p| p.name.clone())
            .unwrap_or_default();
        let i = ((alert_id - 1) % 3) as usize;
        let seen = epoch() + Duration::days(alert_id as i64);
        json!({
            "alertId": alert_id,
            "severity": ALERT_SEVERITIES[i],
            "title": format!("{} finding {alert_id} in {}", ALERT_TYPES[i], repository.name),
            "tools": [{"name": "AdvancedSecurity", "rules": [{"id": format!("rule-{alert_id}"), "friendlyName": format!("Rule {alert_id}")}]}],
            "repositoryUrl": format!("{}/{}/_git/{}", urls.organization_url, super::seed::encode_segment(&project), repository.name),
            "gitRef": repository.default_branch.clone().unwrap_or_else(|| "refs/heads/main".into()),
            "alertType": ALERT_TYPES[i],
            "firstSeenDate": ado_time(seen),
            "lastSeenDate": ado_time(seen + Duration::hours(6)),
            "introducedDate": ado_time(seen),
            "fixedDate": if state == "fixed" { json!(ado_time(seen + Duration::days(1))) } else { Value::Null },
            "state": state,
            "dismissal": if state == "dismissed" { json!({"dismissalId": alert_id, "dismissalType": "acceptedRisk", "message": "accepted", "stateChangedBy": self.identity(urls, 1)}) } else { Value::Null },
            "physicalLocations": [{"filePath": "package-lock.json", "region": {"lineStart": alert_id, "lineEnd": alert_id}}],
            "logicalLocations": [],
        })
    }

    fn live_alert_state(&self, live: &LiveState, repository_id: &str, alert_id: u64) -> String {
        lock(&live.alert_states)
            .get(&(repository_id.to_string(), alert_id))
            .cloned()
            .unwrap_or_else(|| ALERT_STATES[((alert_id - 1) % 3) as usize].to_string())
    }
}

async fn get_build(
    State(state): State<Arc<AdoState>>,
    Path(params): Params,
    headers: HeaderMap,
) -> Result<Response, AdoError> {
    let urls = urls(&state, &headers);
    let org = lock(&state.organization);
    let project = project(&org, &params)?;
    let id = id_param(&params, "buildId");
    Ok(match build_position(id) {
        Some((pipeline, n)) => ok_json(org.build_json(&urls, project, pipeline, n)),
        None => build_missing(id),
    })
}

async fn get_timeline(
    State(state): State<Arc<AdoState>>,
    Path(params): Params,
    headers: HeaderMap,
) -> Result<Response, AdoError> {
    let urls = urls(&state, &headers);
    let org = lock(&state.organization);
    let project = project(&org, &params)?;
    let id = id_param(&params, "buildId");
    Ok(match build_position(id) {
        Some(_) => ok_json(org.live_timeline_json(&urls, project, id)),
        None => build_missing(id),
    })
}

async fn list_test_runs(
    State(state): State<Arc<AdoState>>,
    Path(params): Params,
    Query(query): QueryMap,
    headers: HeaderMap,
) -> Result<Response, AdoError> {
    let urls = urls(&state, &headers);
    let org = lock(&state.organization);
    let project = project(&org, &params)?;
    let wanted = match query.get("buildUri") {
        Some(uri) => match uri
            .strip_prefix("vstfs:///Build/Build/")
            .map(str::parse::<u64>)
        {
            Some(Ok(id)) => Some(id),
            _ => {
                return Err(AdoError::BadArgument {
                    message: format!("The value '{uri}' is not valid for parameter 'buildUri'."),
                });
            }
        },
        None => None,
    };
    let total = PIPELINES_PER_PROJECT * BUILDS_PER_PIPELINE;
    let values = (1..=total)
        .filter(|id| wanted.is_none_or(|w| w == *id))
        .map(|id| org.live_test_run_json(&urls, project, id))
        .collect();
    skip_page(values, &query)
}

async fn list_test_results(
    State(state): State<Arc<AdoState>>,
    Path(params): Params,
    Query(query): QueryMap,
    headers: HeaderMap,
) -> Result<Response, AdoError> {
    let urls = urls(&state, &headers);
    let org = lock(&state.organization);
    let project = project(&org, &params)?;
    let run_id = id_param(&params, "runId");
    if build_position(run_id).is_none() {
        return Ok(not_found(
            format!("Test run {run_id} does not exist."),
            "TestObjectNotFoundException",
        ));
    }
    let values = (1..=RESULTS_PER_RUN)
        .map(|n| org.live_test_result_json(&urls, project, run_id, n))
        .collect();
    skip_page(values, &query)
}

fn pipeline_missing(id: u64) -> Response {
    not_found(
        format!("Pipeline with id {id} not found."),
        "PipelineNotFoundException",
    )
}

async fn get_pipeline(
    State(state): State<Arc<AdoState>>,
    Path(params): Params,
    headers: HeaderMap,
) -> Result<Response, AdoError> {
    let urls = urls(&state, &headers);
    let org = lock(&state.organization);
    let project = project(&org, &params)?;
    let id = id_param(&params, "pipelineId");
    Ok(if (1..=PIPELINES_PER_PROJECT).contains(&id) {
        ok_json(org.pipeline_json(&urls, project, id))
    } else {
        pipeline_missing(id)
    })
}

async fn get_pipeline_run(
    State(state): State<Arc<AdoState>>,
    Path(params): Params,
    headers: HeaderMap,
) -> Result<Response, AdoError> {
    let urls = urls(&state, &headers);
    let org = lock(&state.organization);
    let project = project(&org, &params)?;
    let pipeline = id_param(&params, "pipelineId");
    let run_id = id_param(&params, "runId");
    if !(1..=PIPELINES_PER_PROJECT).contains(&pipeline) {
        return Ok(pipeline_missing(pipeline));
    }
    Ok(match build_position(run_id) {
        Some((of, _)) if of == pipeline => {
            ok_json(org.live_run_json(&urls, project, pipeline, run_id))
        }
        _ => not_found(
            format!("Run with id {run_id} for pipeline {pipeline} not found."),
            "PipelineRunNotFoundException",
        ),
    })
}

async fn get_definition(
    State(state): State<Arc<AdoState>>,
    Path(params): Params,
    headers: HeaderMap,
) -> Result<Response, AdoError> {
    let urls = urls(&state, &headers);
    let org = lock(&state.organization);
    let project = project(&org, &params)?;
    let id = id_param(&params, "definitionId");
    Ok(if id == 1 {
        ok_json(org.definition_json(&urls, project))
    } else {
        not_found(
            format!("VS402856: Release definition with id {id} does not exist."),
            "ReleaseDefinitionNotFoundException",
        )
    })
}

async fn get_alert(
    State(state): State<Arc<AdoState>>,
    Path(params): Params,
    Query(query): QueryMap,
    headers: HeaderMap,
) -> Result<Response, AdoError> {
    if query.get("api-version").map(String::as_str) != Some(ADVSEC_API_VERSION) {
        return Err(AdoError::BadArgument {
            message: format!(
                "The Advanced Security alerts API requires api-version={ADVSEC_API_VERSION}."
            ),
        });
    }
    let urls = urls(&state, &headers);
    let org = lock(&state.organization);
    let project = project(&org, &params)?;
    let repository_id = params.get("repository").cloned().unwrap_or_default();
    let Some(repository) = org.repository(Some(project), &repository_id) else {
        return Err(AdoError::RepositoryNotFound {
            repository: repository_id,
        });
    };
    let id = id_param(&params, "alertId");
    if !(1..=ALERTS_PER_REPOSITORY).contains(&id) {
        return Ok(not_found(
            format!("Alert {id} was not found in repository {}.", repository.id),
            "AlertNotFoundException",
        ));
    }
    let alert_state = org.live_alert_state(&state.live, &repository.id, id);
    Ok(ok_json(org.live_alert_json(
        &urls,
        repository,
        id,
        &alert_state,
    )))
}

/// Which Azure DevOps Services host a request reached: `Some("")` for `dev.azure.com`,
/// `Some("vsrm")`/`Some("advsec")` for those hosts, `None` for any other host (Azure DevOps
/// Server or the plain simulator, where every service shares the collection URL).
fn service_of(headers: &HeaderMap) -> Option<String> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())?
        .split(':')
        .next()?
        .to_ascii_lowercase();
    if host == "dev.azure.com" {
        Some(String::new())
    } else {
        host.strip_suffix(".dev.azure.com").map(String::from)
    }
}

/// Refuses a subscription call the host does not serve: `rm` only on `vsrm`, `advsec` only on
/// `advsec` with its `api-version`, every other publisher only on the organization host.
pub(super) fn check_hook_host(
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    publisher: Option<&str>,
) -> Result<(), AdoError> {
    let service = service_of(headers);
    let api_version = query.get("api-version").map(String::as_str);
    if (publisher == Some("advsec") || service.as_deref() == Some("advsec"))
        && api_version != Some(ADVSEC_API_VERSION)
    {
        return Err(AdoError::BadArgument {
            message: format!(
                "Advanced Security service hooks require api-version={ADVSEC_API_VERSION}."
            ),
        });
    }
    let (Some(service), Some(publisher)) = (service, publisher) else {
        return Ok(());
    };
    let home = match publisher {
        "rm" => "vsrm",
        "advsec" => "advsec",
        _ => "",
    };
    if service == home {
        Ok(())
    } else {
        Err(AdoError::BadArgument {
            message: format!(
                "VS1001001: The publisher '{publisher}' is not available on this host; use {}dev.azure.com.",
                if home.is_empty() {
                    String::new()
                } else {
                    format!("{home}.")
                }
            ),
        })
    }
}

/// Whether a stored subscription lives on the host `headers` reached.
pub(super) fn on_this_host(subscription: &Value, urls: &Urls) -> bool {
    subscription
        .get("url")
        .and_then(Value::as_str)
        .is_some_and(|u| u.starts_with(&format!("{}/", urls.organization_url)))
}

/// What Azure DevOps stores on creation: org-level subscriptions get a `tfsSubscriptionId`.
pub(super) fn decorate_subscription(subscription: &mut Value) {
    if let Some(Value::Object(inputs)) = subscription.get_mut("publisherInputs")
        && inputs
            .get("projectId")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        && !inputs.contains_key("tfsSubscriptionId")
    {
        inputs.insert(
            "tfsSubscriptionId".into(),
            json!(uuid::Uuid::new_v4().to_string()),
        );
    }
}

/// A subscription as the API answers it: the password masked.
pub(super) fn masked(mut subscription: Value) -> Value {
    if let Some(Value::Object(inputs)) = subscription.get_mut("consumerInputs")
        && inputs.contains_key("basicAuthPassword")
    {
        inputs.insert("basicAuthPassword".into(), json!(MASKED));
    }
    subscription
}

/// A service-hook envelope as Azure DevOps posts it.
fn envelope(
    event_type: &str,
    publisher: &str,
    project_id: &str,
    resource: Value,
    text: &str,
) -> Value {
    json!({
        "subscriptionId": uuid::Uuid::new_v4().to_string(),
        "notificationId": 1,
        "id": uuid::Uuid::new_v4().to_string(),
        "eventType": event_type,
        "publisherId": publisher,
        "message": {"text": text, "html": text, "markdown": text},
        "detailedMessage": {"text": text, "html": text, "markdown": text},
        "resource": resource,
        "resourceVersion": match publisher { "pipelines" => "5.1-preview.1", "rm" => "3.0-preview.1", _ => "1.0" },
        "resourceContainers": {
            "collection": {"id": "c0c0c0c0-0000-0000-0000-000000000000"},
            "account": {"id": "a0a0a0a0-0000-0000-0000-000000000000"},
            "project": {"id": project_id},
        },
        "createdDate": ado_time(epoch()),
    })
}

impl AdoSim {
    fn live_urls(&self) -> Urls {
        Urls::new(&self.state.default_host, &self.state.config.organization)
    }

    /// Adds a project (no repositories) as if created after start-up; returns its id.
    pub fn add_project(&self, name: &str) -> String {
        let id = {
            let mut org = lock(&self.state.organization);
            let n = u32::try_from(org.projects.len()).unwrap_or(u32::MAX);
            let id = stable_id(KIND_ADDED_PROJECT, n, 0);
            org.projects.push(Project {
                id: id.clone(),
                name: name.to_string(),
                description: None,
                revision: 1,
                last_update_time: epoch() + Duration::days(30),
                default_team_id: stable_id(KIND_ADDED_PROJECT, n, 1),
            });
            id
        };
        self.state.traffic.touch();
        id
    }

    /// Sets an Advanced Security alert's state (`active`, `dismissed`, `fixed`, …).
    pub fn set_alert_state(&self, repository_id: &str, alert_id: u64, state: &str) {
        lock(&self.state.live.alert_states)
            .insert((repository_id.to_string(), alert_id), state.to_string());
        self.state.traffic.touch();
    }

    /// `build.complete` for a build of a project (a bare resource for an unknown build id).
    pub fn build_complete_event(&self, project_id: &str, build_id: u64) -> Value {
        let urls = self.live_urls();
        let org = lock(&self.state.organization);
        let resource = match (org.project_by_id(project_id), build_position(build_id)) {
            (Some(project), Some((pipeline, n))) => org.build_json(&urls, project, pipeline, n),
            _ => json!({"id": build_id, "status": "completed", "result": "succeeded"}),
        };
        let text = format!("Build {build_id} completed.");
        envelope("build.complete", "tfs", project_id, resource, &text)
    }

    /// `ms.vss-pipelines.run-state-changed-event` for a run, or a stage/job/approval event
    /// (`event_type`) of its stage `stage` (`Build` or `Deploy`), shaped like Microsoft's
    /// samples (`resource.run`, `resource.pipeline`, `resource.stage`).
    pub fn pipeline_event(
        &self,
        event_type: &str,
        project_id: &str,
        pipeline_id: u64,
        run_id: u64,
        stage: Option<&str>,
    ) -> Value {
        let urls = self.live_urls();
        let org = lock(&self.state.organization);
        let pipeline = match org.project_by_id(project_id) {
            Some(project) => org.pipeline_json(&urls, project, pipeline_id),
            None => json!({"id": pipeline_id}),
        };
        let pipeline = json!({"url": pipeline["url"], "id": pipeline_id, "revision": 1, "name": pipeline["name"], "folder": "\\"});
        let run = json!({"id": run_id, "name": run_id.to_string(), "state": "completed", "result": "succeeded", "pipeline": pipeline});
        let mut resource =
            json!({"run": run, "pipeline": pipeline, "runId": run_id, "pipelineId": pipeline_id});
        if let (Some(name), Value::Object(map)) = (stage, &mut resource) {
            let order = if name == "Deploy" { 2 } else { 1 };
            map.insert(
                "stage".into(),
                json!({"id": record_id(run_id, RECORD_STAGE, order), "name": name, "displayName": null, "state": "completed", "result": "succeeded"}),
            );
            if event_type.contains("job-state") {
                map.insert(
                    "job".into(),
                    json!({"id": record_id(run_id, RECORD_JOB, order), "name": "Job", "state": "completed", "result": "succeeded"}),
                );
            }
            if event_type.contains("approval") {
                map.insert(
                    "approval".into(),
                    json!({"id": uuid::Uuid::new_v4().to_string(), "status": if event_type.ends_with("pending") { "pending" } else { "approved" }, "steps": []}),
                );
                map.insert("stageName".into(), json!(name));
                map.insert("projectId".into(), json!(project_id));
            }
        }
        let text = format!("Run {run_id} changed.");
        envelope(event_type, "pipelines", project_id, resource, &text)
    }

    /// `ms.vss-pipelinechecks-events.check-updated-event` for a check on a protected resource
    /// (`resource_type` such as `queue`, `environment` or `pipeline`), as documented.
    pub fn check_updated_event(
        &self,
        project_id: &str,
        resource_type: &str,
        resource_id: &str,
        check_configuration_id: u64,
    ) -> Value {
        let text = format!(
            "Check with configuration ID {check_configuration_id} updated for resource {resource_type}:{resource_id}"
        );
        let resource = json!({"resource": {"type": resource_type, "id": resource_id}, "checkConfigurationId": check_configuration_id, "projectId": project_id});
        envelope(
            "ms.vss-pipelinechecks-events.check-updated-event",
            "pipelines",
            project_id,
            resource,
            &text,
        )
    }

    /// `ms.vss-release.release-created-event` / `-abandoned-event` for release `number`.
    pub fn release_event(&self, event_type: &str, project_id: &str, number: u64) -> Value {
        let urls = self.live_urls();
        let org = lock(&self.state.organization);
        let release = match org.project_by_id(project_id) {
            Some(project) if (1..=org.releases_per_project).contains(&number) => {
                org.release_json(&urls, project, number)
            }
            _ => json!({"id": number, "name": format!("Release-{number}")}),
        };
        let resource = json!({"release": release, "project": {"id": project_id}});
        let text = format!("Release Release-{number} changed.");
        envelope(event_type, "rm", project_id, resource, &text)
    }

    /// `ms.vss-release.deployment-started-event` / `-completed-event` for the deployment of
    /// release `number` (deployment id = release number).
    pub fn deployment_event(&self, event_type: &str, project_id: &str, number: u64) -> Value {
        let environment = 1 + number % 2;
        let resource = json!({
            "environment": {"id": number * 10 + environment, "releaseId": number, "definitionEnvironmentId": environment, "name": if environment == 1 { "staging" } else { "production" }},
            "deployment": {"id": number, "release": {"id": number, "name": format!("Release-{number}")}, "definitionEnvironmentId": environment},
            "project": {"id": project_id},
        });
        let text = format!("Deployment of release Release-{number} changed.");
        envelope(event_type, "rm", project_id, resource, &text)
    }

    /// `ms.vss-alerts.alert-*` for alert `alert_id` of a repository, with the alert's current
    /// state, severity and type.
    pub fn alert_event(&self, event_type: &str, repository_id: &str, alert_id: u64) -> Value {
        let urls = self.live_urls();
        let org = lock(&self.state.organization);
        let (project_id, alert) = match org.repository(None, repository_id) {
            Some(repository) => {
                let state = org.live_alert_state(&self.state.live, repository_id, alert_id.max(1));
                (
                    repository.project_id.clone(),
                    org.live_alert_json(&urls, repository, alert_id.max(1), &state),
                )
            }
            None => (String::new(), json!({})),
        };
        let resource = json!({
            "alertId": alert_id,
            "repositoryId": repository_id,
            "state": alert["state"],
            "severity": alert["severity"],
            "alertType": alert["alertType"],
            "title": alert["title"],
        });
        let text = format!("Alert {alert_id} changed.");
        envelope(event_type, "advsec", &project_id, resource, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_ids_map_to_pipeline_and_position() {
        assert_eq!(build_position(1), Some((1, 1)));
        assert_eq!(build_position(BUILDS_PER_PIPELINE + 1), Some((2, 1)));
        assert_eq!(build_position(0), None);
        assert_eq!(
            build_position(PIPELINES_PER_PROJECT * BUILDS_PER_PIPELINE + 1),
            None
        );
    }

    #[test]
    fn hook_hosts_are_enforced_only_on_azure_devops_services() {
        let mut headers = HeaderMap::new();
        let query: HashMap<String, String> = HashMap::new();
        headers.insert(header::HOST, "127.0.0.1:9".parse().expect("header"));
        assert!(check_hook_host(&headers, &query, Some("rm")).is_ok());
        headers.insert(header::HOST, "dev.azure.com".parse().expect("header"));
        assert!(check_hook_host(&headers, &query, Some("rm")).is_err());
        assert!(check_hook_host(&headers, &query, Some("tfs")).is_ok());
        headers.insert(header::HOST, "vsrm.dev.azure.com".parse().expect("header"));
        assert!(check_hook_host(&headers, &query, Some("rm")).is_ok());
        headers.insert(
            header::HOST,
            "advsec.dev.azure.com".parse().expect("header"),
        );
        assert!(check_hook_host(&headers, &query, Some("advsec")).is_err());
        let query: HashMap<String, String> =
            [("api-version".to_string(), ADVSEC_API_VERSION.to_string())].into();
        assert!(check_hook_host(&headers, &query, Some("advsec")).is_ok());
    }
}
