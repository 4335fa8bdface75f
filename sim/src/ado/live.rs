//! What live events read that no crawl reads (one pipeline, one release definition), the
//! alert states live-event tests change, the service-hook rules of the release management
//! (`vsrm`) and Advanced Security (`advsec`) hosts, and service-hook envelopes built from the
//! simulated objects of [`super::pipelines`], [`super::runs`], [`super::security`] and
//! releases, shaped like Microsoft's sample payloads. Builds, runs, timelines, test runs and
//! alerts by id are served by those modules, from the same data the crawl reads.
//!
//! | key | answer |
//! |---|---|
//! | `GET /{org}/{project}/_apis/pipelines/{pipelineId}` | one pipeline |
//! | `GET /{org}/{project}/_apis/release/definitions/{definitionId}` | the release definition (id 1) |
//!
//! Service hooks on Azure DevOps Services hosts (`dev.azure.com`, reached through a proxy in
//! tests): a subscription lives on the host it was created on and is listed only there;
//! publisher `rm` only on `vsrm.dev.azure.com`, `advsec` only on `advsec.dev.azure.com` (with
//! `api-version=7.2-preview.1`), the others only on `dev.azure.com`. On any other host (Azure
//! DevOps Server, the plain simulator) every publisher lives on the collection URL. Passwords
//! are answered masked (`********`), and org-level subscriptions get a
//! `publisherInputs.tfsSubscriptionId`, as Azure DevOps does.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use chrono::Duration;
use serde_json::{Value, json};

use super::AdoSim;
use super::error::{AdoError, ado_error};
use super::pipelines::PIPELINES_PER_PROJECT;
use super::request::AdoRequest;
use super::routes::ok_json;
use super::runs::build_position;
use super::security::ALERTS_PER_REPOSITORY;
use super::seed::{Project, Urls, ado_time, epoch, stable_id};
use super::work::project;
use crate::traffic::lock;

/// The `api-version` the Advanced Security APIs and hooks take.
const ADVSEC_API_VERSION: &str = "7.2-preview.1";
/// What Azure DevOps answers in place of a secret subscription input.
const MASKED: &str = "********";

const KIND_ADDED_PROJECT: u16 = 0x0012;

/// What live-event tests change in the simulated organization.
#[derive(Debug, Default)]
pub(crate) struct LiveState {
    /// `(repository id, alert id)` → state set with [`AdoSim::set_alert_state`].
    alert_states: Mutex<HashMap<(String, u64), String>>,
}

impl LiveState {
    /// The state a test set for alert `alert_id` of a repository, if any.
    pub(super) fn alert_state(&self, repository_id: &str, alert_id: u64) -> Option<String> {
        lock(&self.alert_states)
            .get(&(repository_id.to_string(), alert_id))
            .cloned()
    }
}

fn not_found(message: String, type_key: &str) -> Response {
    ado_error(
        StatusCode::NOT_FOUND,
        &message,
        &format!("Microsoft.TeamFoundation.{type_key}, Microsoft.TeamFoundation.Server.Core"),
    )
}

const RECORD_STAGE: u64 = 1;
const RECORD_JOB: u64 = 3;

/// The id of a timeline record: build, record type (stage, phase, job) and stage order.
fn record_id(build_id: u64, record: u64, order: u64) -> String {
    format!("{build_id:08x}-{record:04x}-4000-8000-{order:012x}")
}

fn pipeline_missing(id: u64) -> Response {
    not_found(
        format!("Pipeline with id {id} not found."),
        "PipelineNotFoundException",
    )
}

pub(super) async fn get_pipeline(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let project = project(&org, &request.params)?;
    let id = request.id("pipelineId").unwrap_or(0);
    Ok(if (1..=PIPELINES_PER_PROJECT).contains(&id) {
        ok_json(org.pipeline_json(&request.urls, project, id))
    } else {
        pipeline_missing(id)
    })
}

pub(super) async fn get_definition(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let project = project(&org, &request.params)?;
    let id = request.id("definitionId").unwrap_or(0);
    Ok(if id == 1 {
        ok_json(org.definition_json(&request.urls, project))
    } else {
        not_found(
            format!("VS402856: Release definition with id {id} does not exist."),
            "ReleaseDefinitionNotFoundException",
        )
    })
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
        return Err(AdoError::bad_argument(format!(
            "Advanced Security service hooks require api-version={ADVSEC_API_VERSION}."
        )));
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
        Err(AdoError::bad_argument(format!(
            "VS1001001: The publisher '{publisher}' is not available on this host; use {}dev.azure.com.",
            if home.is_empty() {
                String::new()
            } else {
                format!("{home}.")
            }
        )))
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
pub(super) fn envelope(
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
            let n = org.next_created();
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
            Some(repository) => (
                repository.project_id.clone(),
                match org.project_by_id(&repository.project_id) {
                    Some(project) if (1..=ALERTS_PER_REPOSITORY).contains(&alert_id) => {
                        org.current_alert_json(&self.state, &urls, project, repository, alert_id)
                    }
                    _ => json!({}),
                },
            ),
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
