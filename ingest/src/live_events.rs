//! Live events for builds, pipelines, releases and Advanced Security alerts: which service-hook
//! event types map to which kinds, and what to publish for one event.
//!
//! Every handler re-reads the object from Azure DevOps with the client it is given (the caller
//! picks the organization's client) and builds its item with the crawler's builders
//! ([`crate::kinds::items`]: `__project`, `__projectId`, `__pipeline`, `__build`,
//! `__testResults`, selector-driven enrichment, …), so a live item is the crawled one. Only kinds the
//! mapping asks for are read and published. An object Azure DevOps no longer has (404) becomes
//! a delete carrying the fields the kind's identifier is built from (ids plus project context).
//!
//! | event type | kind(s) |
//! |---|---|
//! | `build.complete` | `build`, `test-run` (runs of the build by `buildUri`, `__testResults` unless `includeResults: false`, `__codeCoverage` when asked) |
//! | `ms.vss-pipelines.run-state-changed-event` | `pipeline-run` (`__project`, `__pipeline`) |
//! | `ms.vss-pipelines.stage-state-changed-event`, `…job-state-changed-event`, `ms.vss-pipelinechecks-events.approval-pending`/`-completed` | `pipeline-stage` (the stage's timeline record, `__project`, `__build`) |
//! | `ms.vss-pipelinechecks-events.check-updated-event` | `pipeline`, only when the payload names a pipeline (see [`pipeline_of_check`]) |
//! | `ms.vss-release.release-created-event`, `…release-abandoned-event` | `release`, `release-definition` (`__project`) |
//! | `ms.vss-release.deployment-started-event`, `…deployment-completed-event` | `release-deployment` |
//! | `ms.vss-alerts.alert-created-event`, `…alert-state-changed-event`, `…alert-updated-event` | `advanced-security-alert` (`__repositoryId`, `__projectId`; selector `criteria`) |

use serde_json::{Map, Value, json};

use crate::ado::{AdoClient, AdoError};
use crate::crawler::KindPlan;
use crate::kinds::items::{self, ItemBuilder, TestRunEnrichment};
use adoport_shared::messages::RawAction;

/// The event types this module handles.
pub const EVENT_TYPES: &[&str] = &[
    "build.complete",
    "ms.vss-pipelines.run-state-changed-event",
    "ms.vss-pipelines.stage-state-changed-event",
    "ms.vss-pipelines.job-state-changed-event",
    "ms.vss-pipelinechecks-events.approval-pending",
    "ms.vss-pipelinechecks-events.approval-completed",
    "ms.vss-pipelinechecks-events.check-updated-event",
    "ms.vss-release.release-created-event",
    "ms.vss-release.release-abandoned-event",
    "ms.vss-release.deployment-started-event",
    "ms.vss-release.deployment-completed-event",
    "ms.vss-alerts.alert-created-event",
    "ms.vss-alerts.alert-state-changed-event",
    "ms.vss-alerts.alert-updated-event",
];

/// Whether `event_type` is one of [`EVENT_TYPES`].
pub fn handles(event_type: &str) -> bool {
    EVENT_TYPES.contains(&event_type)
}

/// The kinds the mapping asks for, with their selectors: what live events may publish.
#[derive(Debug, Clone, Default)]
pub struct LiveKinds {
    plans: std::sync::Arc<Vec<KindPlan>>,
}

impl LiveKinds {
    pub fn new(plans: impl Into<std::sync::Arc<Vec<KindPlan>>>) -> Self {
        Self {
            plans: plans.into(),
        }
    }

    fn plan(&self, kind: &str) -> Option<&KindPlan> {
        self.plans.iter().find(|p| p.kind == kind)
    }

    fn wants(&self, kind: &str) -> bool {
        self.plan(kind).is_some()
    }
}

/// The parts of a service-hook envelope a handler reads.
#[derive(Debug, Clone, Copy)]
pub struct LiveEvent<'a> {
    pub event_type: &'a str,
    pub resource: &'a Map<String, Value>,
    /// `resourceContainers.project.id`.
    pub project_id: Option<&'a str>,
}

/// One raw event to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    pub kind: &'static str,
    pub action: RawAction,
    pub items: Vec<Value>,
}

/// Why an event could not be turned into publications.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The envelope lacks a field the event type must carry (the webhook answers 400).
    #[error("{event_type} event without {field}")]
    Missing {
        event_type: String,
        field: &'static str,
    },
    /// Azure DevOps could not be read (transient errors get 503, so Azure DevOps retries).
    #[error(transparent)]
    Upstream(#[from] AdoError),
}

fn at<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    value.pointer(path).filter(|v| !v.is_null())
}

fn number(value: &Value, paths: &[&str]) -> Option<u64> {
    paths.iter().find_map(|p| match at(value, p)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

fn string<'a>(value: &'a Value, paths: &[&str]) -> Option<&'a str> {
    paths
        .iter()
        .find_map(|p| at(value, p)?.as_str().filter(|s| !s.is_empty()))
}

fn upsert(kind: &'static str, items: Vec<Value>) -> Publication {
    Publication {
        kind,
        action: RawAction::Upsert,
        items,
    }
}

fn delete(kind: &'static str, item: Value) -> Publication {
    Publication {
        kind,
        action: RawAction::Delete,
        items: vec![item],
    }
}

/// `Ok(None)` for a 404, the object otherwise.
fn found(result: Result<Value, AdoError>) -> Result<Option<Value>, AdoError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(AdoError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

struct Context<'a> {
    client: &'a AdoClient,
    kinds: &'a LiveKinds,
    event_type: &'a str,
    resource: Value,
    project_id: Option<String>,
}

impl Context<'_> {
    fn missing(&self, field: &'static str) -> LiveError {
        LiveError::Missing {
            event_type: self.event_type.to_string(),
            field,
        }
    }

    /// The event's project: `resourceContainers.project.id`, else the resource's own.
    fn project_id(&self) -> Result<String, LiveError> {
        self.project_id
            .clone()
            .or_else(|| {
                string(
                    &self.resource,
                    &["/projectId", "/project/id", "/release/projectReference/id"],
                )
                .map(String::from)
            })
            .ok_or_else(|| self.missing("resourceContainers.project.id"))
    }
}

/// What to publish for `event` (nothing when the mapping has none of its kinds, or the event
/// names no object a kind is about).
pub async fn resolve(
    client: &AdoClient,
    kinds: &LiveKinds,
    event: &LiveEvent<'_>,
) -> Result<Vec<Publication>, LiveError> {
    let context = Context {
        client,
        kinds,
        event_type: event.event_type,
        resource: Value::Object(event.resource.clone()),
        project_id: event.project_id.map(String::from),
    };
    match event.event_type {
        "build.complete" => build_complete(&context).await,
        "ms.vss-pipelines.run-state-changed-event" => pipeline_run(&context).await,
        "ms.vss-pipelines.stage-state-changed-event"
        | "ms.vss-pipelines.job-state-changed-event"
        | "ms.vss-pipelinechecks-events.approval-pending"
        | "ms.vss-pipelinechecks-events.approval-completed" => pipeline_stage(&context).await,
        "ms.vss-pipelinechecks-events.check-updated-event" => pipeline(&context).await,
        "ms.vss-release.release-created-event" | "ms.vss-release.release-abandoned-event" => {
            release(&context).await
        }
        "ms.vss-release.deployment-started-event" | "ms.vss-release.deployment-completed-event" => {
            release_deployment(&context).await
        }
        "ms.vss-alerts.alert-created-event"
        | "ms.vss-alerts.alert-state-changed-event"
        | "ms.vss-alerts.alert-updated-event" => alert(&context).await,
        _ => Ok(Vec::new()),
    }
}

async fn build_complete(cx: &Context<'_>) -> Result<Vec<Publication>, LiveError> {
    let (wants_build, wants_runs) = (cx.kinds.wants("build"), cx.kinds.wants("test-run"));
    if !wants_build && !wants_runs {
        return Ok(Vec::new());
    }
    let build_id = number(&cx.resource, &["/id"]).ok_or_else(|| cx.missing("resource.id"))?;
    let project_id = cx.project_id()?;
    let builder = ItemBuilder::new(cx.client);
    let mut out = Vec::new();
    if let Some(plan) = cx.kinds.plan("build") {
        match found(cx.client.build(&project_id, build_id).await)? {
            Some(build) => {
                let project = items::listed_project(cx.client.project(&project_id).await?);
                let item = items::project_list_item("build", build, &project);
                out.push(upsert("build", builder.list_items(plan, vec![item]).await?));
            }
            None => out.push(delete(
                "build",
                json!({"id": build_id, "__projectId": project_id, "__project": {"id": project_id}}),
            )),
        }
    }
    if let Some(plan) = cx.kinds.plan("test-run") {
        let enrichment = TestRunEnrichment::for_plan(plan);
        let mut runs = Vec::new();
        for run in test_runs_of_build(&builder, &project_id, build_id).await? {
            runs.push(builder.test_run(&project_id, run, enrichment).await?);
        }
        if !runs.is_empty() {
            out.push(upsert("test-run", runs));
        }
    }
    Ok(out)
}

/// Every test run of a build (`$top`/`$skip` until an empty page, as the crawler pages); none
/// when the project went away.
async fn test_runs_of_build(
    builder: &ItemBuilder<'_>,
    project_id: &str,
    build_id: u64,
) -> Result<Vec<Value>, AdoError> {
    let mut all: Vec<Value> = Vec::new();
    loop {
        let page = match builder
            .client
            .test_runs_page(project_id, Some(build_id), builder.page, all.len())
            .await
        {
            Ok(page) => page,
            Err(AdoError::NotFound { .. }) => return Ok(all),
            Err(e) => return Err(e),
        };
        if page.is_empty() {
            return Ok(all);
        }
        all.extend(page);
    }
}

async fn pipeline_run(cx: &Context<'_>) -> Result<Vec<Publication>, LiveError> {
    if !cx.kinds.wants("pipeline-run") {
        return Ok(Vec::new());
    }
    let run_id = number(&cx.resource, &["/run/id", "/runId"])
        .ok_or_else(|| cx.missing("resource.run.id"))?;
    let pipeline_id = number(
        &cx.resource,
        &["/pipeline/id", "/pipelineId", "/run/pipeline/id"],
    )
    .ok_or_else(|| cx.missing("resource.pipeline.id"))?;
    let project_id = cx.project_id()?;
    let Some(run) = found(
        cx.client
            .pipeline_run(&project_id, pipeline_id, run_id)
            .await,
    )?
    else {
        return Ok(vec![delete(
            "pipeline-run",
            json!({"id": run_id, "__project": {"id": project_id}, "__pipeline": {"id": pipeline_id}}),
        )]);
    };
    let project = items::listed_project(cx.client.project(&project_id).await?);
    let pipeline = found(cx.client.pipeline(&project_id, pipeline_id).await)?
        .map(items::listed_pipeline)
        .or_else(|| run.get("pipeline").cloned())
        .unwrap_or_else(|| json!({"id": pipeline_id}));
    Ok(vec![upsert(
        "pipeline-run",
        vec![items::pipeline_run(run, &project, &pipeline)],
    )])
}

/// The timeline record of the event's stage: by id, else a `Stage` record with the stage's
/// name as identifier or name.
fn stage_record(records: Vec<Value>, stage_id: Option<&str>, name: Option<&str>) -> Option<Value> {
    let is_stage = items::is_stage;
    let by_id = stage_id.and_then(|id| {
        records
            .iter()
            .find(|r| is_stage(r) && r.get("id").and_then(Value::as_str) == Some(id))
    });
    let by_name = || {
        name.and_then(|name| {
            records.iter().find(|r| {
                is_stage(r)
                    && (r.get("identifier").and_then(Value::as_str) == Some(name)
                        || r.get("name").and_then(Value::as_str) == Some(name))
            })
        })
    };
    by_id.or_else(by_name).cloned()
}

async fn pipeline_stage(cx: &Context<'_>) -> Result<Vec<Publication>, LiveError> {
    if !cx.kinds.wants("pipeline-stage") {
        return Ok(Vec::new());
    }
    // Approval events of runs Azure DevOps no longer describes carry `run: null`: nothing to
    // read, nothing to publish.
    let Some(run_id) = number(&cx.resource, &["/run/id", "/runId"]) else {
        tracing::debug!(
            event_type = cx.event_type,
            "stage event without a run; acknowledged"
        );
        return Ok(Vec::new());
    };
    let stage_id = string(&cx.resource, &["/stage/id"]);
    let stage_name = string(&cx.resource, &["/stage/name", "/stageName"]);
    if stage_id.is_none() && stage_name.is_none() {
        tracing::debug!(
            event_type = cx.event_type,
            run_id,
            "stage event without a stage; acknowledged"
        );
        return Ok(Vec::new());
    }
    let project_id = cx.project_id()?;
    let gone = |id: Option<&str>| -> Vec<Publication> {
        id.map(|id| {
            delete(
                "pipeline-stage",
                json!({"id": id, "__project": {"id": project_id}, "__build": {"id": run_id}}),
            )
        })
        .into_iter()
        .collect()
    };
    let Some(build) = found(cx.client.build(&project_id, run_id).await)? else {
        return Ok(gone(stage_id));
    };
    let records = match cx
        .client
        .build_timeline_records(&project_id, &run_id.to_string())
        .await
    {
        Ok(records) => records,
        Err(AdoError::NotFound { .. }) => return Ok(gone(stage_id)),
        Err(e) => return Err(e.into()),
    };
    let Some(record) = stage_record(records, stage_id, stage_name) else {
        tracing::debug!(
            event_type = cx.event_type,
            run_id,
            stage = stage_name.or(stage_id).unwrap_or_default(),
            "stage not in the build's timeline (yet); acknowledged"
        );
        return Ok(Vec::new());
    };
    let project = items::listed_project(cx.client.project(&project_id).await?);
    Ok(vec![upsert(
        "pipeline-stage",
        vec![items::pipeline_stage(record, &project, &build)],
    )])
}

/// The pipeline a `check-updated-event` is about, if it names one. The event describes a
/// check configuration (`checkConfigurationId`) on a protected resource (`resource.resource`:
/// `{type, id}`, e.g. `queue`, `environment`, `endpoint`); the Python integration reads the
/// check configuration id as a pipeline id, which updates an unrelated pipeline. Only a
/// `resource.pipeline.id`, or a protected resource of type `pipeline`, is a pipeline id.
pub fn pipeline_of_check(resource: &Value) -> Option<u64> {
    number(resource, &["/pipeline/id"]).or_else(|| {
        (string(resource, &["/resource/type"])?.eq_ignore_ascii_case("pipeline"))
            .then(|| number(resource, &["/resource/id"]))
            .flatten()
    })
}

async fn pipeline(cx: &Context<'_>) -> Result<Vec<Publication>, LiveError> {
    let Some(plan) = cx.kinds.plan("pipeline") else {
        return Ok(Vec::new());
    };
    let Some(pipeline_id) = pipeline_of_check(&cx.resource) else {
        tracing::debug!(
            event_type = cx.event_type,
            "check event names no pipeline (only a check configuration on a resource); acknowledged"
        );
        return Ok(Vec::new());
    };
    let project_id = cx.project_id()?;
    Ok(
        match found(cx.client.pipeline(&project_id, pipeline_id).await)? {
            Some(pipeline) => {
                let item = items::project_list_item(
                    "pipeline",
                    items::listed_pipeline(pipeline),
                    &json!({"id": project_id}),
                );
                vec![upsert(
                    "pipeline",
                    ItemBuilder::new(cx.client)
                        .list_items(plan, vec![item])
                        .await?,
                )]
            }
            None => vec![delete(
                "pipeline",
                json!({"id": pipeline_id, "__projectId": project_id}),
            )],
        },
    )
}

async fn release(cx: &Context<'_>) -> Result<Vec<Publication>, LiveError> {
    let (wants_release, wants_definition) = (
        cx.kinds.wants("release"),
        cx.kinds.wants("release-definition"),
    );
    if !wants_release && !wants_definition {
        return Ok(Vec::new());
    }
    let release_id =
        number(&cx.resource, &["/release/id"]).ok_or_else(|| cx.missing("resource.release.id"))?;
    let project_id = cx.project_id()?;
    let release = found(cx.client.release(&project_id, release_id).await)?;
    let mut out = Vec::new();
    if wants_release {
        out.push(match &release {
            Some(release) => upsert("release", vec![release.clone()]),
            None => delete(
                "release",
                json!({"id": release_id, "projectReference": {"id": project_id}}),
            ),
        });
    }
    if wants_definition {
        let definition_id = release
            .as_ref()
            .and_then(|r| number(r, &["/releaseDefinition/id"]))
            .or_else(|| number(&cx.resource, &["/release/releaseDefinition/id"]));
        if let Some(definition_id) = definition_id {
            let expand = cx
                .kinds
                .plan("release-definition")
                .and_then(|p| p.option("expand"))
                .and_then(Value::as_str)
                .unwrap_or("environments");
            match found(
                cx.client
                    .release_definition(&project_id, definition_id, Some(expand))
                    .await,
            )? {
                Some(definition) => {
                    let project = items::listed_project(cx.client.project(&project_id).await?);
                    out.push(upsert(
                        "release-definition",
                        vec![items::project_list_item(
                            "release-definition",
                            definition,
                            &project,
                        )],
                    ));
                }
                None => out.push(delete(
                    "release-definition",
                    json!({"id": definition_id, "__project": {"id": project_id}}),
                )),
            }
        }
    }
    Ok(out)
}

async fn release_deployment(cx: &Context<'_>) -> Result<Vec<Publication>, LiveError> {
    if !cx.kinds.wants("release-deployment") {
        return Ok(Vec::new());
    }
    let release_id = number(
        &cx.resource,
        &[
            "/deployment/release/id",
            "/environment/releaseId",
            "/release/id",
        ],
    )
    .ok_or_else(|| cx.missing("resource.deployment.release.id"))?;
    let environment = number(
        &cx.resource,
        &[
            "/deployment/definitionEnvironmentId",
            "/environment/definitionEnvironmentId",
        ],
    );
    let deployment_id = number(&cx.resource, &["/deployment/id"]);
    let project_id = cx.project_id()?;
    let deployments = match cx
        .client
        .release_deployments(&project_id, release_id, environment)
        .await
    {
        Ok(deployments) => deployments,
        Err(AdoError::NotFound { .. }) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let chosen = match deployment_id {
        Some(id) => deployments
            .into_iter()
            .find(|d| number(d, &["/id"]) == Some(id)),
        // The newest deployment of that release environment (the API lists newest first).
        None => deployments.into_iter().next(),
    };
    Ok(match (chosen, deployment_id) {
        (Some(deployment), _) => vec![upsert("release-deployment", vec![deployment])],
        (None, Some(id)) => vec![delete(
            "release-deployment",
            json!({"id": id, "release": {"id": release_id}, "projectReference": {"id": project_id}}),
        )],
        (None, None) => Vec::new(),
    })
}

/// Whether `alert` satisfies one selector's `criteria` (`states`, `severity`, `alertType`;
/// an absent or empty filter lets everything through).
fn meets(criteria: Option<&Value>, alert: &Value) -> bool {
    let Some(criteria) = criteria.filter(|c| c.is_object()) else {
        return true;
    };
    let field = |name: &str| alert.get(name).and_then(Value::as_str).unwrap_or_default();
    let listed = |filter: &str, value: &str| match criteria.get(filter) {
        Some(Value::Array(allowed)) if !allowed.is_empty() => allowed
            .iter()
            .filter_map(Value::as_str)
            .any(|a| a.eq_ignore_ascii_case(value)),
        Some(Value::String(allowed)) if !allowed.is_empty() => allowed
            .split(',')
            .any(|a| a.trim().eq_ignore_ascii_case(value)),
        _ => true,
    };
    listed("states", field("state"))
        && listed("severity", field("severity"))
        && listed("alertType", field("alertType"))
}

/// Whether any resource of the kind selects `alert`.
fn selected(plan: &KindPlan, alert: &Value) -> bool {
    plan.selectors.is_empty()
        || plan
            .selectors
            .iter()
            .any(|selector| meets(selector.get("criteria"), alert))
}

async fn alert(cx: &Context<'_>) -> Result<Vec<Publication>, LiveError> {
    let Some(plan) = cx.kinds.plan("advanced-security-alert") else {
        return Ok(Vec::new());
    };
    let alert_id = number(&cx.resource, &["/alertId", "/alert/alertId"])
        .ok_or_else(|| cx.missing("resource.alertId"))?;
    let repository_id = string(&cx.resource, &["/repositoryId", "/repository/id"])
        .ok_or_else(|| cx.missing("resource.repositoryId"))?
        .to_string();
    let project_id = cx.project_id()?;
    let gone =
        json!({"alertId": alert_id, "__repositoryId": repository_id, "__projectId": project_id});
    let Some(alert) = found(
        cx.client
            .advanced_security_alert(&project_id, &repository_id, alert_id)
            .await,
    )?
    else {
        return Ok(vec![delete("advanced-security-alert", gone)]);
    };
    if !selected(plan, &alert) {
        // No longer what the selector asks for (e.g. dismissed while `states: [active]`).
        return Ok(vec![delete("advanced-security-alert", gone)]);
    }
    Ok(vec![upsert(
        "advanced-security-alert",
        vec![items::security_alert(alert, &repository_id, &project_id)],
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_event_names_a_pipeline_only_when_it_carries_one() {
        let documented = json!({"resource": {"type": "queue", "id": "1"}, "checkConfigurationId": 1, "projectId": "p"});
        assert_eq!(pipeline_of_check(&documented), None);
        let on_pipeline =
            json!({"resource": {"type": "pipeline", "id": "12"}, "checkConfigurationId": 1});
        assert_eq!(pipeline_of_check(&on_pipeline), Some(12));
        let with_pipeline = json!({"pipeline": {"id": 7}, "checkConfigurationId": 1});
        assert_eq!(pipeline_of_check(&with_pipeline), Some(7));
    }

    #[test]
    fn criteria_filter_states_severity_and_alert_type() {
        let alert = json!({"state": "dismissed", "severity": "high", "alertType": "dependency"});
        assert!(meets(None, &alert));
        assert!(meets(Some(&json!({})), &alert));
        assert!(!meets(Some(&json!({"states": ["active"]})), &alert));
        assert!(meets(
            Some(&json!({"states": ["active", "dismissed"]})),
            &alert
        ));
        assert!(!meets(Some(&json!({"severity": ["low"]})), &alert));
        assert!(meets(Some(&json!({"alertType": "dependency"})), &alert));
        assert!(!meets(Some(&json!({"alertType": "secret"})), &alert));
    }

    #[test]
    fn the_stage_record_is_found_by_id_else_by_name() {
        let records = vec![
            json!({"id": "a", "type": "Job", "name": "Build"}),
            json!({"id": "b", "type": "Stage", "identifier": "Build", "name": "Build"}),
            json!({"id": "c", "type": "Stage", "identifier": "Deploy", "name": "Deploy"}),
        ];
        let by_id = stage_record(records.clone(), Some("c"), Some("Build")).expect("by id");
        assert_eq!(by_id["id"], "c");
        let by_name = stage_record(records.clone(), Some("zz"), Some("Build")).expect("by name");
        assert_eq!(by_name["id"], "b");
        assert!(stage_record(records, None, Some("Nope")).is_none());
    }
}
