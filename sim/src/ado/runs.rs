//! Simulated pipeline runs, build definitions, build timelines and changes, commits,
//! environment deployment records, test runs, test results and code coverage, all derived
//! deterministically from the seeded projects, repositories, pipelines and builds of
//! [`super::pipelines`] (no state of their own).
//!
//! | key | answer |
//! |---|---|
//! | `GET /{org}/{project}/_apis/build/definitions/{definitionId}` | the definition of a pipeline, with its `repository` (pipeline `p` builds the project's `p`-th non-empty healthy repository, cycling) |
//! | `GET /{org}/{project}/_apis/pipelines/{pipelineId}/runs` | the runs started through the API (newest first), then one run per build of the pipeline, newest first; not paged (the API ignores `$top`) |
//! | `GET /{org}/{project}/_apis/pipelines/{pipelineId}/runs/{runId}` | one run (run id = build id), as the list has it |
//! | `GET /{org}/{project}/_apis/build/builds/{buildId}` | one build, as the builds list has it |
//! | `GET /{org}/{project}/_apis/build/builds/{buildId}/timeline` | Stage, Phase and Job records: stages `Build` and `Deploy` per build |
//! | `GET /{org}/{project}/_apis/build/builds/{buildId}/changes` | `build id % 4` commits, newest first; `$top` (default 50) and continuation token |
//! | `GET /{org}/{project}/_apis/git/repositories/{repositoryId}/commits/{commitId}` | served by `content_routes`; a commit its Git model does not hold and any 40-hex id resolve here (builds' source commits) |
//! | `GET /{org}/{project}/_apis/distributedtask/environments/{environmentId}/environmentdeploymentrecords` | [`DEPLOYMENTS_PER_ENVIRONMENT`] records; `top` (default 50) and continuation token |
//! | `GET /{org}/{project}/_apis/test/runs` | [`TEST_RUNS_PER_PROJECT`] runs (run `r` of build `r`; the last one manual, without a build); `$top`/`$skip`; `includeRunDetails`; `buildUri` (`vstfs:///Build/Build/{id}`) keeps the runs of one build |
//! | `GET /{org}/{project}/_apis/test/runs/{runId}/results` | [`RESULTS_PER_TEST_RUN`] results; `$top` (default and most 1000)/`$skip` |
//! | `GET /{org}/{project}/_apis/test/codecoverage` | module coverage of a build (`buildId` required); `flags` 2 adds functions |
//!
//! 404 bodies name the missing object as Azure DevOps does (`BuildNotFoundException`,
//! `DefinitionNotFoundException`, `PipelineNotFoundException`, `PipelineRunNotFoundException`,
//! `TestRunNotFoundException`,
//! `TF401175` for an unknown commit).

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::error::{AdoError, ado_error};
use super::pipelines::{BUILDS_PER_PIPELINE, ENVIRONMENTS_PER_PROJECT, PIPELINES_PER_PROJECT};
use super::request::AdoRequest;
use super::routes::{continued_list, ok_json, parse_count};
use super::seed::{Organization, Project, Repository, Urls, ado_time, epoch};
use super::work::project;

/// Deployment records seeded per environment.
pub const DEPLOYMENTS_PER_ENVIRONMENT: u64 = 3;
/// Test runs seeded per project (the last one is manual: no build).
pub const TEST_RUNS_PER_PROJECT: u64 = 3;
/// Results seeded per test run.
pub const RESULTS_PER_TEST_RUN: u64 = 3;

fn build_not_found(id: &str) -> AdoError {
    AdoError::service(
        StatusCode::NOT_FOUND,
        format!("The requested build {id} could not be found."),
        "Microsoft.TeamFoundation.Build.WebApi.BuildNotFoundException, Microsoft.TeamFoundation.Build2.WebApi",
    )
}

/// The build the path's `buildId` names with its pipeline and number within the pipeline, or
/// the 404 for a build the project does not have.
fn build(request: &AdoRequest) -> Result<(u64, (u64, u64)), AdoError> {
    number(&request.params, "buildId")
        .and_then(|build| Some((build, build_position(build)?)))
        .ok_or_else(|| build_not_found(request.params.get("buildId").map_or("", String::as_str)))
}

/// One `top`-style page (`top_param` is `$top` or `top`) with a continuation token in the
/// `x-ms-continuationtoken` header while more remain.
pub(crate) fn token_page(
    values: Vec<Value>,
    query: &HashMap<String, String>,
    top_param: &str,
) -> Result<Response, AdoError> {
    let top = parse_count(query, top_param)?.unwrap_or(50).clamp(1, 1000);
    let start = parse_count(query, "continuationToken")?.unwrap_or(0);
    Ok(continued_list(values, start, top))
}

/// One `$top`/`$skip` page (no continuation token: the caller pages until a short page).
fn skip_page(
    values: Vec<Value>,
    query: &HashMap<String, String>,
    max_top: usize,
) -> Result<Response, AdoError> {
    let top = parse_count(query, "$top")?
        .unwrap_or(max_top)
        .clamp(1, max_top);
    let skip = parse_count(query, "$skip")?.unwrap_or(0);
    let page: Vec<Value> = values.into_iter().skip(skip).take(top).collect();
    Ok(ok_json(json!({"count": page.len(), "value": page})))
}

fn number(params: &HashMap<String, String>, name: &str) -> Option<u64> {
    params.get(name).and_then(|v| v.trim().parse().ok())
}

/// The pipeline a project-scoped build id belongs to, and its number within the pipeline.
pub(super) fn build_position(build: u64) -> Option<(u64, u64)> {
    if build == 0 || build > PIPELINES_PER_PROJECT * BUILDS_PER_PIPELINE {
        return None;
    }
    Some((
        (build - 1) / BUILDS_PER_PIPELINE + 1,
        (build - 1) % BUILDS_PER_PIPELINE + 1,
    ))
}

/// The changes build `build` lists (`build % 4`: every fourth build lists none).
fn build_change_count(build: u64) -> u64 {
    build % 4
}

fn queued(build: u64) -> DateTime<Utc> {
    epoch() + Duration::hours(build as i64 * 2)
}

fn commit_sha(repository: &Repository, n: u64) -> String {
    let seed: String = repository
        .id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect();
    format!("{:0>8x}{}", n, &seed[..seed.len().min(32)])
}

impl Organization {
    /// The repository pipeline `pipeline` of `project` builds: the project's non-empty,
    /// enabled repositories in turn.
    pub(crate) fn pipeline_repository(
        &self,
        project: &Project,
        pipeline: u64,
    ) -> Option<&Repository> {
        let candidates: Vec<&Repository> = self
            .repositories
            .iter()
            .filter(|r| r.project_id == project.id && !r.is_disabled && r.default_branch.is_some())
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let index = (pipeline.saturating_sub(1) as usize) % candidates.len();
        candidates.get(index).copied()
    }

    /// A build's `repository` field.
    pub(crate) fn build_repository(&self, urls: &Urls, project: &Project, pipeline: u64) -> Value {
        match self.pipeline_repository(project, pipeline) {
            Some(repository) => json!({
                "id": repository.id,
                "type": "TfsGit",
                "name": repository.name,
                "url": format!("{}/{}/_git/{}", urls.organization_url, project.id, repository.name),
                "clean": null,
                "checkoutSubmodules": false,
            }),
            None => Value::Null,
        }
    }

    fn build_definition_json(&self, urls: &Urls, project: &Project, id: u64) -> Value {
        let org = &urls.organization_url;
        let url = format!(
            "{org}/{}/_apis/build/Definitions/{id}?revision=1",
            project.id
        );
        let mut repository = self.build_repository(urls, project, id);
        if let (Value::Object(map), Some(r)) =
            (&mut repository, self.pipeline_repository(project, id))
        {
            map.insert("defaultBranch".into(), json!(r.default_branch));
            map.insert("properties".into(), json!({"reportBuildStatus": "true"}));
        }
        json!({
            "process": {"yamlFilename": "azure-pipelines.yml", "type": 2},
            "repository": repository,
            "_links": {
                "self": {"href": url},
                "web": {"href": format!("{org}/{}/_build/definition?definitionId={id}", project.id)},
            },
            "quality": "definition",
            "queue": {"id": 9, "name": "Azure Pipelines", "pool": {"id": 9, "name": "Azure Pipelines", "isHosted": true}},
            "id": id,
            "name": format!("{}-pipeline-{id}", project.name.replace(' ', "-")),
            "url": url,
            "uri": format!("vstfs:///Build/Definition/{id}"),
            "path": "\\",
            "type": "build",
            "queueStatus": "enabled",
            "revision": 1,
            "createdDate": ado_time(epoch()),
            "project": self.project_reference(urls, project),
        })
    }

    fn run_json(&self, urls: &Urls, project: &Project, pipeline: u64, n: u64) -> Value {
        let org = &urls.organization_url;
        let id = (pipeline - 1) * BUILDS_PER_PIPELINE + n;
        let name = format!("{}-pipeline-{pipeline}", project.name.replace(' ', "-"));
        let url = format!("{org}/{}/_apis/pipelines/{pipeline}/runs/{id}", project.id);
        json!({
            "_links": {
                "self": {"href": url},
                "web": {"href": format!("{org}/{}/_build/results?buildId={id}", project.id)},
                "pipeline.web": {"href": format!("{org}/{}/_build/definition?definitionId={pipeline}", project.id)},
                "pipeline": {"href": format!("{org}/{}/_apis/pipelines/{pipeline}?revision=1", project.id)},
            },
            "pipeline": {
                "url": format!("{org}/{}/_apis/pipelines/{pipeline}?revision=1", project.id),
                "id": pipeline,
                "revision": 1,
                "name": name,
                "folder": "\\",
            },
            "state": "completed",
            "result": if n.is_multiple_of(3) { "failed" } else { "succeeded" },
            "createdDate": ado_time(queued(id)),
            "finishedDate": ado_time(queued(id) + Duration::minutes(7)),
            "url": url,
            "id": id,
            "name": format!("2026030{pipeline}.{n}"),
        })
    }

    fn timeline_json(&self, urls: &Urls, project: &Project, build: u64) -> Value {
        let org = &urls.organization_url;
        let failed = build_position(build).is_some_and(|(_, n)| n.is_multiple_of(3));
        let start = queued(build) + Duration::seconds(20);
        let mut records = Vec::new();
        for (order, stage) in ["Build", "Deploy"].into_iter().enumerate() {
            let order = order as u64 + 1;
            let skipped = failed && stage == "Deploy";
            let stage_start = start + Duration::minutes(3 * (order as i64 - 1));
            let result = match (skipped, failed) {
                (true, _) => "skipped",
                (false, true) => "failed",
                _ => "succeeded",
            };
            let id = |kind: u64| format!("{:08x}-{:04x}-4000-8000-{:012x}", build, kind, order);
            let (stage_id, phase_id, job_id) = (id(1), id(2), id(3));
            let record = |rid: &str, parent: Value, kind: &str, name: &str, identifier: &str| {
                json!({
                    "previousAttempts": [],
                    "id": rid,
                    "parentId": parent,
                    "type": kind,
                    "name": name,
                    "startTime": if skipped { Value::Null } else { json!(ado_time(stage_start)) },
                    "finishTime": if skipped { Value::Null } else { json!(ado_time(stage_start + Duration::minutes(3))) },
                    "currentOperation": null,
                    "percentComplete": null,
                    "state": "completed",
                    "result": result,
                    "resultCode": null,
                    "changeId": order * 3,
                    "lastModified": ado_time(stage_start + Duration::minutes(3)),
                    "workerName": if kind == "Job" && !skipped { json!("Hosted Agent") } else { Value::Null },
                    "order": order,
                    "details": null,
                    "errorCount": u64::from(result == "failed"),
                    "warningCount": 0,
                    "url": null,
                    "log": null,
                    "task": null,
                    "attempt": 1,
                    "identifier": identifier,
                })
            };
            records.push(record(&stage_id, Value::Null, "Stage", stage, stage));
            records.push(record(
                &phase_id,
                json!(stage_id),
                "Phase",
                &format!("{stage} job"),
                &format!("{stage}.__default"),
            ));
            records.push(record(
                &job_id,
                json!(phase_id),
                "Job",
                &format!("{stage} job"),
                &format!("{stage}.__default.__default"),
            ));
        }
        json!({
            "records": records,
            "lastChangedBy": "00000002-0000-8888-8000-000000000000",
            "lastChangedOn": ado_time(start + Duration::minutes(7)),
            "id": format!("{:08x}-0000-4000-8000-000000000000", build),
            "changeId": 6,
            "url": format!("{org}/{}/_apis/build/builds/{build}/Timeline/{:08x}-0000-4000-8000-000000000000", project.id, build),
        })
    }

    /// Whether build `build` of `project` lists no changes although it ran on a repository's
    /// commit (its `sourceVersion`): `enrichWithFirstCommit` then reads that commit.
    pub(crate) fn build_without_changes(&self, project: &Project, build: u64) -> bool {
        build_position(build)
            .is_some_and(|(pipeline, _)| self.pipeline_repository(project, pipeline).is_some())
            && build_change_count(build) == 0
    }

    /// The commits of a build ([`build_change_count`] of them), newest first, as the changes
    /// API lists them.
    fn changes_json(&self, urls: &Urls, project: &Project, build: u64) -> Vec<Value> {
        let Some((pipeline, _)) = build_position(build) else {
            return Vec::new();
        };
        let Some(repository) = self.pipeline_repository(project, pipeline) else {
            return Vec::new();
        };
        let org = &urls.organization_url;
        (1..=build_change_count(build))
            .map(|k| {
                let sha = commit_sha(repository, build * 10 + k);
                let when = queued(build) - Duration::hours(k as i64 * 5);
                json!({
                    "id": sha,
                    "message": format!("Change {k} built by build {build}"),
                    "type": "TfsGit",
                    "author": self.identity(urls, (build + k) as usize % self.users.len().max(1)),
                    "timestamp": ado_time(when),
                    "location": format!("{org}/{}/_apis/git/repositories/{}/commits/{sha}", project.id, repository.id),
                    "displayUri": format!("{org}/{}/_git/{}/commit/{sha}", project.id, repository.name),
                })
            })
            .collect()
    }

    fn commit_json(
        &self,
        urls: &Urls,
        project: &Project,
        repository: &Repository,
        sha: &str,
    ) -> Value {
        let org = &urls.organization_url;
        let hours = sha
            .chars()
            .take(4)
            .filter_map(|c| c.to_digit(16))
            .sum::<u32>();
        let when = ado_time(epoch() - Duration::hours(i64::from(hours)));
        let user = self.users.first();
        let person = json!({
            "name": user.map(|u| u.display_name.clone()),
            "email": user.map(|u| u.unique_name.clone()),
            "date": when,
        });
        let url = format!(
            "{org}/{}/_apis/git/repositories/{}/commits/{sha}",
            project.id, repository.id
        );
        json!({
            "treeId": format!("{:0>40}", &sha[..sha.len().min(8)]),
            "commitId": sha,
            "author": person,
            "committer": person,
            "comment": format!("Commit {} of {}", &sha[..sha.len().min(8)], repository.name),
            "parents": [],
            "url": url,
            "remoteUrl": format!("{org}/{}/_git/{}/commit/{sha}", project.id, repository.name),
            "_links": {"self": {"href": url}},
            "push": {"pushedBy": self.identity(urls, 0), "pushId": 1, "date": when},
        })
    }

    fn deployment_record_json(
        &self,
        urls: &Urls,
        project: &Project,
        environment: u64,
        n: u64,
    ) -> Value {
        let org = &urls.organization_url;
        let build = (n - 1) % (PIPELINES_PER_PROJECT * BUILDS_PER_PIPELINE) + 1;
        let pipeline = build_position(build).map_or(1, |(p, _)| p);
        let queue = queued(build) + Duration::minutes(3);
        let name = format!("{}-pipeline-{pipeline}", project.name.replace(' ', "-"));
        json!({
            "id": environment * 100 + n,
            "requestIdentifier": format!("{}-{build}-{n}", project.name.replace(' ', "-")),
            "environmentId": environment,
            "serviceOwner": "00025394-6065-48ca-87d9-7f5672854ef7",
            "scopeId": project.id,
            "resourceId": null,
            "planType": "Build",
            "planId": format!("{:08x}-0000-4000-8000-{:012x}", build, environment),
            "stageName": if environment == 1 { "DeployStaging" } else { "DeployProduction" },
            "jobName": "Deploy",
            "stageAttempt": 1,
            "jobAttempt": 1,
            "definition": {
                "id": pipeline,
                "name": name,
                "_links": {"web": {"href": format!("{org}/{}/_build/definition?definitionId={pipeline}", project.id)}},
            },
            "owner": {
                "id": build,
                "name": format!("2026030{pipeline}.{n}"),
                "_links": {"web": {"href": format!("{org}/{}/_build/results?buildId={build}", project.id)}},
            },
            "result": if n.is_multiple_of(3) { "failed" } else { "succeeded" },
            "queueTime": ado_time(queue),
            "startTime": ado_time(queue + Duration::seconds(10)),
            "finishTime": ado_time(queue + Duration::minutes(2)),
        })
    }

    fn test_run_json(&self, urls: &Urls, project: &Project, run: u64, details: bool) -> Value {
        let org = &urls.organization_url;
        let url = format!("{org}/{}/_apis/test/Runs/{run}", project.id);
        let name = format!("Test run {run} of {}", project.name);
        if !details {
            return json!({"id": run, "name": name, "url": url});
        }
        let manual = run == TEST_RUNS_PER_PROJECT;
        let build = run;
        let started = queued(build) + Duration::minutes(2);
        let passed = RESULTS_PER_TEST_RUN - u64::from(run.is_multiple_of(2));
        let mut value = json!({
            "id": run,
            "name": name,
            "url": url,
            "isAutomated": !manual,
            "owner": self.identity(urls, 0),
            "project": {"id": project.id, "name": project.name},
            "startedDate": ado_time(started),
            "completedDate": ado_time(started + Duration::minutes(1)),
            "state": "Completed",
            "plan": {"id": "0"},
            "postProcessState": "Complete",
            "totalTests": RESULTS_PER_TEST_RUN,
            "incompleteTests": 0,
            "notApplicableTests": 0,
            "passedTests": passed,
            "unanalyzedTests": RESULTS_PER_TEST_RUN - passed,
            "revision": 4,
            "webAccessUrl": format!("{org}/{}/_TestManagement/Runs?runId={run}&_a=runCharts", project.id),
            "runStatistics": [
                {"state": "Completed", "outcome": "Passed", "count": passed},
            ],
        });
        if !manual && let Value::Object(map) = &mut value {
            map.insert(
                "build".into(),
                json!({"id": build.to_string(), "name": format!("20260301.{build}"), "url": format!("{org}/{}/_apis/build/Builds/{build}", project.id)}),
            );
            map.insert(
                "pipelineReference".into(),
                json!({"pipelineId": build, "stageReference": {}, "phaseReference": {}, "jobReference": {}}),
            );
        }
        value
    }

    fn test_result_json(&self, urls: &Urls, project: &Project, run: u64, n: u64) -> Value {
        let org = &urls.organization_url;
        let failed = run.is_multiple_of(2) && n == RESULTS_PER_TEST_RUN;
        let started = queued(run) + Duration::minutes(2) + Duration::seconds(n as i64);
        json!({
            "id": 100_000 + n,
            "project": {"id": project.id, "name": project.name, "url": format!("{org}/_apis/projects/{}", project.id)},
            "startedDate": ado_time(started),
            "completedDate": ado_time(started + Duration::milliseconds(350)),
            "durationInMs": 350.0,
            "outcome": if failed { "Failed" } else { "Passed" },
            "revision": 1,
            "runBy": self.identity(urls, 0),
            "state": "Completed",
            "testCase": {"name": format!("Test{n}")},
            "testRun": {"id": run.to_string(), "name": format!("Test run {run} of {}", project.name), "url": format!("{org}/{}/_apis/test/Runs/{run}", project.id)},
            "lastUpdatedDate": ado_time(started + Duration::seconds(1)),
            "priority": 0,
            "computerName": "fv-az100-1",
            "createdDate": ado_time(started + Duration::seconds(1)),
            "url": format!("{org}/{}/_apis/test/Runs/{run}/Results/{}", project.id, 100_000 + n),
            "failureType": "None",
            "automatedTestStorage": "Sim.Tests.dll",
            "automatedTestType": "UnitTest",
            "testCaseTitle": format!("Test{n}"),
            "automatedTestName": format!("Sim.Tests.Suite.Test{n}"),
            "errorMessage": if failed { json!("Assert.Equal() Failure") } else { Value::Null },
            "customFields": [],
            "testCaseReferenceId": 1000 + n,
        })
    }

    fn coverage_json(&self, urls: &Urls, project: &Project, build: u64, flags: u64) -> Value {
        let org = &urls.organization_url;
        let covered = 400 + build * 10;
        let mut module = json!({
            "name": "sim.dll",
            "signature": format!("{:08x}-0000-4000-8000-000000000000", build),
            "signatureAge": 1,
            "statistics": {
                "blocksCovered": covered,
                "blocksNotCovered": 100,
                "linesCovered": covered * 2,
                "linesNotCovered": 150,
                "linesPartiallyCovered": 12,
            },
            "blockCount": covered + 100,
            "blockData": "",
            "fileUrl": "",
        });
        if flags & 2 != 0
            && let Value::Object(map) = &mut module
        {
            map.insert(
                "functions".into(),
                json!([{"name": "Run", "namespace": "Sim", "class": "Program", "sourceFile": "Program.cs",
                    "statistics": {"blocksCovered": 10, "blocksNotCovered": 2, "linesCovered": 20, "linesNotCovered": 3, "linesPartiallyCovered": 0}}]),
            );
        }
        json!({
            "count": 1,
            "value": [{
                "configuration": {
                    "id": build,
                    "flavor": "Release",
                    "platform": "Any CPU",
                    "buildUri": format!("vstfs:///Build/Build/{build}"),
                    "buildFlavor": "Release",
                    "buildPlatform": "Any CPU",
                    "lastUpdated": ado_time(queued(build) + Duration::minutes(6)),
                    "project": {"id": project.id, "name": project.name, "url": format!("{org}/_apis/projects/{}", project.id)},
                },
                "state": "1",
                "lastError": "",
                "modules": [module],
                "codeCoverageFileUrl": format!("{org}/{}/_apis/test/CodeCoverage/browse/{build}", project.id),
            }],
        })
    }
}

pub(super) async fn get_definition(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let project = project(&org, &request.params)?;
    match number(&request.params, "definitionId")
        .filter(|id| (1..=PIPELINES_PER_PROJECT).contains(id))
    {
        Some(id) => Ok(ok_json(org.build_definition_json(
            &request.urls,
            project,
            id,
        ))),
        None => Ok(ado_error(
            StatusCode::NOT_FOUND,
            &format!(
                "The requested build definition {} could not be found.",
                request
                    .params
                    .get("definitionId")
                    .map_or("", String::as_str)
            ),
            "Microsoft.TeamFoundation.Build.WebApi.DefinitionNotFoundException, Microsoft.TeamFoundation.Build2.WebApi",
        )),
    }
}

pub(super) async fn list_runs(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let project = project(&org, &request.params)?;
    let Some(pipeline) =
        number(&request.params, "pipelineId").filter(|id| (1..=PIPELINES_PER_PROJECT).contains(id))
    else {
        return Ok(pipeline_not_found(
            request.params.get("pipelineId").map_or("", String::as_str),
        ));
    };
    // Newest first, every run at once: the Runs - List API does not page.
    let values = org.runs(&request.state, &request.urls, project, Some(pipeline));
    Ok(ok_json(json!({"count": values.len(), "value": values})))
}

impl Organization {
    /// The runs of `project` (of pipeline `pipeline` when given), newest first: those started
    /// through the API, then the seeded ones (pipeline by pipeline).
    pub(super) fn runs(
        &self,
        state: &super::AdoState,
        urls: &Urls,
        project: &Project,
        pipeline: Option<u64>,
    ) -> Vec<Value> {
        let mut runs =
            super::pipeline_runs::started_runs(state, &urls.organization_url, project, pipeline);
        for p in (1..=PIPELINES_PER_PROJECT).filter(|p| pipeline.is_none_or(|only| only == *p)) {
            runs.extend(
                (1..=BUILDS_PER_PIPELINE)
                    .rev()
                    .map(|n| self.run_json(urls, project, p, n)),
            );
        }
        runs
    }
}

fn pipeline_not_found(id: &str) -> Response {
    ado_error(
        StatusCode::NOT_FOUND,
        &format!("Pipeline with id {id} not found."),
        "Microsoft.Azure.Pipelines.WebApi.PipelineNotFoundException, Microsoft.Azure.Pipelines.WebApi",
    )
}

pub(super) async fn get_run(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let project = project(&org, &request.params)?;
    // Runs started through the API (the `trigger_pipeline` action) first.
    if let Some(run) = super::pipeline_runs::started_run(
        &request.state,
        &request.urls.organization_url,
        project,
        request.params.get("pipelineId").map_or("", String::as_str),
        request.params.get("runId").map_or("", String::as_str),
    ) {
        return Ok(ok_json(run));
    }
    let Some(pipeline) =
        number(&request.params, "pipelineId").filter(|id| (1..=PIPELINES_PER_PROJECT).contains(id))
    else {
        return Ok(pipeline_not_found(
            request.params.get("pipelineId").map_or("", String::as_str),
        ));
    };
    match number(&request.params, "runId").and_then(build_position) {
        Some((of, n)) if of == pipeline => {
            Ok(ok_json(org.run_json(&request.urls, project, pipeline, n)))
        }
        _ => Ok(ado_error(
            StatusCode::NOT_FOUND,
            &format!(
                "Run with id {} for pipeline {pipeline} not found.",
                request.params.get("runId").map_or("", String::as_str)
            ),
            "Microsoft.Azure.Pipelines.WebApi.PipelineRunNotFoundException, Microsoft.Azure.Pipelines.WebApi",
        )),
    }
}

pub(super) async fn get_build(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let project = project(&org, &request.params)?;
    let (_, (pipeline, n)) = build(&request)?;
    Ok(ok_json(org.build_json(&request.urls, project, pipeline, n)))
}

pub(super) async fn get_timeline(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let project = project(&org, &request.params)?;
    let (build, _) = build(&request)?;
    Ok(ok_json(org.timeline_json(&request.urls, project, build)))
}

pub(super) async fn list_changes(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let project = project(&org, &request.params)?;
    let (build, _) = build(&request)?;
    token_page(
        org.changes_json(&request.urls, project, build),
        &request.query,
        "$top",
    )
}

/// A build's source commit (any 40-hex id of the repository), for commits the Git content
/// model does not hold: `content_routes` serves the route and falls back to this.
pub(super) async fn get_commit(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let project = project(&org, &request.params)?;
    // `content_routes` serves the route (its parameter is `repository`).
    let id = request
        .params
        .get("repositoryId")
        .or_else(|| request.params.get("repository"))
        .cloned()
        .unwrap_or_default();
    let repository = org
        .repository(Some(project), &id)
        .ok_or(AdoError::RepositoryNotFound { repository: id })?;
    let sha = request.param("commitId");
    if sha.len() != 40 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(ado_error(
            StatusCode::NOT_FOUND,
            &format!(
                "TF401175:The version descriptor <Commit: {sha}> could not be resolved to a version in the repository {}",
                repository.name
            ),
            "Microsoft.TeamFoundation.Git.Server.GitUnresolvableToCommitException, Microsoft.TeamFoundation.Git.Server",
        ));
    }
    Ok(ok_json(org.commit_json(
        &request.urls,
        project,
        repository,
        &sha,
    )))
}

pub(super) async fn list_deployment_records(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let project = project(&org, &request.params)?;
    let Some(environment) = number(&request.params, "environmentId")
        .filter(|e| (1..=ENVIRONMENTS_PER_PROJECT).contains(e))
    else {
        return Ok(ado_error(
            StatusCode::NOT_FOUND,
            &format!(
                "Environment with id '{}' does not exist or you do not have permission to access it.",
                request
                    .params
                    .get("environmentId")
                    .map_or("", String::as_str)
            ),
            "Microsoft.TeamFoundation.DistributedTask.WebApi.EnvironmentNotFoundException, Microsoft.TeamFoundation.DistributedTask.WebApi",
        ));
    };
    // Newest first; this API names its page size `top` (no `$`).
    let values = (1..=DEPLOYMENTS_PER_ENVIRONMENT)
        .rev()
        .map(|n| org.deployment_record_json(&request.urls, project, environment, n))
        .collect();
    token_page(values, &request.query, "top")
}

pub(super) async fn list_test_runs(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let project = project(&org, &request.params)?;
    let details = request.flag("includeRunDetails");
    let of_build = match request.query.get("buildUri") {
        None => None,
        Some(uri) => match uri
            .strip_prefix("vstfs:///Build/Build/")
            .and_then(|id| id.parse::<u64>().ok())
        {
            Some(build) => Some(build),
            None => {
                return Err(AdoError::bad_argument(format!(
                    "The value '{uri}' is not valid for parameter 'buildUri'."
                )));
            }
        },
    };
    let window = super::since::update_window(&request.query)?;
    // Run `r` is of build `r`, except the last (manual) run, which has none.
    let values = (1..=TEST_RUNS_PER_PROJECT)
        .filter(|run| of_build.is_none_or(|build| build == *run && *run != TEST_RUNS_PER_PROJECT))
        .map(|run| org.test_run_json(&request.urls, project, run, details))
        .filter(|run| {
            window.is_none_or(|(min, max)| {
                run.get("lastUpdatedDate")
                    .and_then(Value::as_str)
                    .and_then(super::since::parse)
                    .is_some_and(|t| t >= min && t <= max)
            })
        })
        .collect();
    skip_page(values, &request.query, 100)
}

pub(super) async fn list_test_results(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let project = project(&org, &request.params)?;
    let Some(run) =
        number(&request.params, "runId").filter(|r| (1..=TEST_RUNS_PER_PROJECT).contains(r))
    else {
        return Ok(ado_error(
            StatusCode::NOT_FOUND,
            &format!("Test run {} not found.", request.param("runId")),
            "Microsoft.TeamFoundation.TestManagement.WebApi.TestObjectNotFoundException, Microsoft.TeamFoundation.TestManagement.WebApi",
        ));
    };
    let values = (1..=RESULTS_PER_TEST_RUN)
        .map(|n| org.test_result_json(&request.urls, project, run, n))
        .collect();
    skip_page(values, &request.query, 1000)
}

pub(super) async fn code_coverage(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let project = project(&org, &request.params)?;
    let Some(build) = parse_count(&request.query, "buildId")? else {
        return Err(AdoError::bad_argument(
            "Value cannot be null.\r\nParameter name: buildId",
        ));
    };
    let flags = parse_count(&request.query, "flags")?.unwrap_or(0) as u64;
    if build_position(build as u64).is_none() {
        return Err(build_not_found(&build.to_string()));
    }
    Ok(ok_json(org.coverage_json(
        &request.urls,
        project,
        build as u64,
        flags,
    )))
}
