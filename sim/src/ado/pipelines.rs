//! Simulated Azure DevOps pipelines, builds, environments, release definitions, release
//! deployments and branch refs. Every list pages with `$top` (default 50) and a continuation
//! token (`x-ms-continuationtoken` header while more remain), as these APIs do.
//!
//! | key | answer |
//! |---|---|
//! | `GET /{org}/{project}/_apis/pipelines` | [`PIPELINES_PER_PROJECT`] pipelines |
//! | `GET /{org}/{project}/_apis/build/builds` | [`BUILDS_PER_PIPELINE`] builds per pipeline, newest queue time first |
//! | `GET /{org}/{project}/_apis/distributedtask/environments` | [`ENVIRONMENTS_PER_PROJECT`] environments |
//! | `GET /{org}/{project}/_apis/release/definitions` | one release definition (id 1, the one releases name; filters: see `releases.rs`) |
//! | `GET /{org}/{project}/_apis/release/deployments` | one deployment per release; `releaseId`, `definitionEnvironmentId` filter |
//! | `GET /{org}/{project}/_apis/git/repositories/{repository}/refs` | `main` + one branch per pull request (`filter=heads/`) |

use axum::response::Response;
use chrono::Duration;
use serde_json::{Value, json};

use super::error::AdoError;
use super::request::AdoRequest;
use super::routes::parse_count;
use super::runs::token_page;
use super::seed::{Organization, Project, Urls, ado_time, encode_segment, epoch};
use super::work::{project, project_repository};

/// Pipelines seeded per project.
pub const PIPELINES_PER_PROJECT: u64 = 2;
/// Builds seeded per pipeline.
pub const BUILDS_PER_PIPELINE: u64 = 3;
/// Environments seeded per project.
pub const ENVIRONMENTS_PER_PROJECT: u64 = 2;

/// One `$top`/continuation-token page of `values`.
/// The list of the project's objects numbered 1 to `count`, as `json` renders each.
fn numbered_list(
    request: &AdoRequest,
    count: u64,
    json: fn(&Organization, &Urls, &Project, u64) -> Value,
) -> Result<Response, AdoError> {
    project_list(request, |org, project, urls| {
        (1..=count).map(|id| json(org, urls, project, id)).collect()
    })
}

/// The list of what `values` makes of the project the path names, one `$top` page with a
/// continuation token.
fn project_list(
    request: &AdoRequest,
    values: impl FnOnce(&Organization, &Project, &Urls) -> Vec<Value>,
) -> Result<Response, AdoError> {
    let org = request.organization();
    let project = project(&org, &request.params)?;
    token_page(values(&org, project, &request.urls), &request.query, "$top")
}

impl Organization {
    pub(super) fn pipeline_json(&self, urls: &Urls, project: &Project, id: u64) -> Value {
        let org = &urls.organization_url;
        let url = format!("{org}/{}/_apis/pipelines/{id}?revision=1", project.id);
        json!({
            "_links": {
                "self": {"href": url},
                "web": {"href": format!("{org}/{}/_build/definition?definitionId={id}", project.id)},
            },
            "url": url,
            "id": id,
            "revision": 1,
            "name": format!("{}-pipeline-{id}", project.name.replace(' ', "-")),
            "folder": "\\",
        })
    }

    pub(super) fn build_json(
        &self,
        urls: &Urls,
        project: &Project,
        pipeline: u64,
        n: u64,
    ) -> Value {
        let org = &urls.organization_url;
        let id = (pipeline - 1) * BUILDS_PER_PIPELINE + n;
        let queued = epoch() + Duration::hours(id as i64 * 2);
        let users = self.users.len().max(1);
        let result = if n.is_multiple_of(3) {
            "failed"
        } else {
            "succeeded"
        };
        let definition = self.pipeline_json(urls, project, pipeline);
        json!({
            "_links": {
                "self": {"href": format!("{org}/{}/_apis/build/Builds/{id}", project.id)},
                "web": {"href": format!("{org}/{}/_build/results?buildId={id}", project.id)},
            },
            "id": id,
            "buildNumber": format!("2026030{}.{n}", pipeline),
            "status": "completed",
            "result": result,
            "queueTime": ado_time(queued),
            "startTime": ado_time(queued + Duration::seconds(20)),
            "finishTime": ado_time(queued + Duration::minutes(7)),
            "url": format!("{org}/{}/_apis/build/Builds/{id}", project.id),
            "definition": {
                "id": pipeline, "name": definition["name"], "path": "\\", "type": "build",
                "queueStatus": "enabled", "revision": 1,
                "url": format!("{org}/{}/_apis/build/Definitions/{pipeline}?revision=1", project.id),
                "project": self.project_reference(urls, project),
            },
            "project": self.project_reference(urls, project),
            "repository": self.build_repository(urls, project, pipeline),
            "uri": format!("vstfs:///Build/Build/{id}"),
            "sourceBranch": "refs/heads/main",
            "sourceVersion": format!("{:0>40x}", id),
            "priority": "normal",
            "reason": "individualCI",
            "requestedFor": self.identity(urls, id as usize % users),
            "requestedBy": self.identity(urls, (id as usize + 1) % users),
        })
    }

    fn environment_json(&self, urls: &Urls, project: &Project, id: u64) -> Value {
        let created = epoch() + Duration::days(id as i64);
        json!({
            "id": id,
            "name": if id == 1 { "staging" } else { "production" },
            "description": format!("Environment {id} of {}", project.name),
            "createdBy": self.identity(urls, 0),
            "createdOn": ado_time(created),
            "lastModifiedBy": self.identity(urls, 1),
            "lastModifiedOn": ado_time(created + Duration::hours(3)),
            "project": {"id": project.id, "name": null},
        })
    }

    pub(super) fn definition_json(&self, urls: &Urls, project: &Project) -> Value {
        let org = &urls.organization_url;
        let url = format!("{org}/{}/_apis/Release/definitions/1", project.id);
        json!({
            "source": "userInterface",
            "revision": 1,
            "description": null,
            "createdBy": self.identity(urls, 0),
            "createdOn": ado_time(epoch()),
            "modifiedBy": self.identity(urls, 1),
            "modifiedOn": ado_time(epoch() + Duration::hours(1)),
            "isDeleted": false,
            "path": "\\",
            "releaseNameFormat": "Release-$(rev:r)",
            "id": 1,
            "name": format!("{} CD", project.name),
            "url": url,
            "environments": [
                {"id": 1, "name": "staging", "rank": 1},
                {"id": 2, "name": "production", "rank": 2},
            ],
            "_links": {
                "self": {"href": url},
                "web": {"href": format!("{org}/{}/_release?definitionId=1", encode_segment(&project.name))},
            },
        })
    }

    fn deployment_json(&self, urls: &Urls, project: &Project, release: u64) -> Value {
        let org = &urls.organization_url;
        let queued = epoch() + Duration::hours(release as i64 * 7 + 1);
        let environment = 1 + release % 2;
        json!({
            "id": release,
            "release": {
                "id": release,
                "name": format!("Release-{release}"),
                "url": format!("{org}/{}/_apis/Release/releases/{release}", project.id),
                "_links": {"web": {"href": format!("{org}/{}/_release?releaseId={release}", encode_segment(&project.name))}},
            },
            "releaseDefinition": {"id": 1, "name": format!("{} CD", project.name), "path": "\\"},
            "releaseEnvironment": {"id": release * 10 + environment, "name": if environment == 1 { "staging" } else { "production" }},
            "projectReference": {"id": project.id, "name": project.name},
            "definitionEnvironmentId": environment,
            "attempt": 1,
            "reason": "automated",
            "deploymentStatus": if release.is_multiple_of(3) { "failed" } else { "succeeded" },
            "operationStatus": "Approved",
            "requestedBy": self.identity(urls, 0),
            "requestedFor": self.identity(urls, release as usize % self.users.len().max(1)),
            "queuedOn": ado_time(queued),
            "startedOn": ado_time(queued + Duration::seconds(30)),
            "completedOn": ado_time(queued + Duration::minutes(4)),
            "lastModifiedOn": ado_time(queued + Duration::minutes(4)),
            "url": format!("{org}/{}/_apis/release/deployments/{release}", project.id),
            "conditions": [],
            "preDeployApprovals": [],
            "postDeployApprovals": [],
        })
    }
}

pub(super) async fn list_pipelines(request: AdoRequest) -> Result<Response, AdoError> {
    numbered_list(&request, PIPELINES_PER_PROJECT, Organization::pipeline_json)
}

pub(super) async fn list_builds(request: AdoRequest) -> Result<Response, AdoError> {
    project_list(&request, |org, project, urls| {
        let mut values: Vec<Value> = (1..=PIPELINES_PER_PROJECT)
            .flat_map(|p| (1..=BUILDS_PER_PIPELINE).map(move |n| (p, n)))
            .map(|(p, n)| org.build_json(urls, project, p, n))
            .collect();
        values.reverse();
        values
    })
}

pub(super) async fn list_environments(request: AdoRequest) -> Result<Response, AdoError> {
    numbered_list(
        &request,
        ENVIRONMENTS_PER_PROJECT,
        Organization::environment_json,
    )
}

pub(super) async fn list_deployments(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let project = project(&org, &request.params)?;
    let release = parse_count(&request.query, "releaseId")?;
    let environment = parse_count(&request.query, "definitionEnvironmentId")?;
    let values = (1..=org.releases_per_project)
        .rev()
        .filter(|n| release.is_none_or(|r| r as u64 == *n))
        .filter(|n| environment.is_none_or(|e| e as u64 == 1 + n % 2))
        .map(|n| org.deployment_json(&request.urls, project, n))
        .collect();
    token_page(values, &request.query, "$top")
}

pub(super) async fn list_refs(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let (project, repository) = project_repository(&org, &request.params)?;
    let filter = request.query.get("filter").map(|f| format!("refs/{f}"));
    // The branches of the repository's Git content (`main` and the pull requests' sources).
    let refs = org.git.refs(&repository.id);
    let repo_url = format!(
        "{}/{}/_apis/git/repositories/{}",
        request.urls.organization_url, project.id, repository.id
    );
    let values = refs
        .iter()
        .filter(|(name, _)| filter.as_ref().is_none_or(|f| name.starts_with(f.as_str())))
        .map(|(name, object_id)| {
            json!({
                "name": name,
                "objectId": object_id,
                "creator": org.identity(&request.urls, 0),
                "url": format!("{repo_url}/refs?filter={}", encode_segment(name.trim_start_matches("refs/"))),
            })
        })
        .collect();
    token_page(values, &request.query, "$top")
}
