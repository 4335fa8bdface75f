//! Live events: which service-hook event types map to which kinds, and what to publish for one
//! event.
//!
//! The rule, for every event type: the event only says *which* object changed. Every handler
//! reads that object again from Azure DevOps with the client it is given (the caller picks the
//! organization's client) through [`Context::current`], and publishes what Azure DevOps holds
//! now: found → an upsert of its current state, built with the crawler's builders
//! ([`crate::kinds::items`]: `__project`, `__projectId`, `__pipeline`, `__build`,
//! `__testResults`, `__includedFiles`, selector-driven enrichment, …), so a live item is the
//! crawled one; a 404 for the object itself ([`Current::Gone`]) → a delete carrying the fields
//! the kind's identifier is built from. A `git.repo.deleted` or `workitem.deleted` for an object
//! Azure DevOps still has (forged, or late after a restore) therefore upserts it, and a delete
//! can only be built from a [`Gone`] ([`Publication::delete`]). Any other failure names the
//! object ([`ReadFailure`]) for the receiver's answer. Build, pipeline, release and alert kinds
//! are read only when the mapping asks for them.
//!
//! | event type | kind(s) |
//! |---|---|
//! | `git.repo.created`, `…renamed`, `…statuschanged`, `…deleted`, `git.push` | `repository` (`__includedFiles`; a push's branches, files, folders, wiki pages and GitOps specs are [`crate::push_events`]' and [`crate::gitops`]') |
//! | `git.pullrequest.created`, `…updated`, `…merged` | `pull-request` |
//! | `workitem.created`, `…updated` (by `workItemId`), `…restored`, `…commented`, `…deleted` | `work-item` (`__projectId`, `__project`) |
//! | `build.complete` | `build`, `test-run` (runs of the build by `buildUri`, `__testResults` unless `includeResults: false`, `__codeCoverage` when asked) |
//! | `ms.vss-pipelines.run-state-changed-event` | `pipeline-run` (`__project`, `__pipeline`) |
//! | `ms.vss-pipelines.stage-state-changed-event`, `…job-state-changed-event`, `ms.vss-pipelinechecks-events.approval-pending`/`-completed` | `pipeline-stage` (the stage's timeline record, `__project`, `__build`) |
//! | `ms.vss-pipelinechecks-events.check-updated-event` | `pipeline`, only when the payload names a pipeline (see [`pipeline_of_check`]) |
//! | `ms.vss-release.release-created-event`, `…release-abandoned-event` | `release`, `release-definition` (`__project`) |
//! | `ms.vss-release.deployment-started-event`, `…deployment-completed-event` | `release-deployment` |
//! | `ms.vss-alerts.alert-created-event`, `…alert-state-changed-event`, `…alert-updated-event` | `advanced-security-alert` (`__repositoryId`, `__projectId`; selector `criteria`) |

use std::fmt::Display;
use std::future::Future;

use serde_json::{Map, Value, json};

use crate::ado::{
    AdoClient, AdoError, BuildId, Current, Gone, PipelineId, ProjectId, ReleaseDefinitionId,
    ReleaseId, RepositoryId,
};
use crate::events;
use crate::kind::{Handler, Kind};
use crate::kinds::{
    self,
    items::{self, ItemBuilder, ListEnrichment, TestRunEnrichment},
};
use crate::plan::KindPlan;
use crate::publisher::Publication;
use crate::selector::{AlertCriteria, AlertSelector, ReleaseDefinitionSelector, SelectorError};

/// Whether this module resolves `event_type` (others are acknowledged and ignored): whether
/// the event table has it.
pub fn handles(event_type: &str) -> bool {
    events::event_type(event_type).is_some()
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

    fn plan(&self, kind: Kind) -> Option<&KindPlan> {
        self.plans.iter().find(|p| p.kind == kind)
    }

    /// Every crawl unit of `kind`: its resources grouped by selector. A live item built or
    /// selected with a selector is published once per unit, for that unit's resources.
    fn units(&self, kind: Kind) -> Vec<&KindPlan> {
        self.plans.iter().filter(|p| p.kind == kind).collect()
    }

    fn wants(&self, kind: Kind) -> bool {
        self.plan(kind).is_some()
    }
}

/// The parts of a service-hook envelope a handler reads.
#[derive(Debug, Clone, Copy)]
pub struct LiveEvent<'a> {
    pub event_type: &'a str,
    pub resource: &'a Map<String, Value>,
    /// `resourceContainers.project.id`.
    pub project_id: Option<&'a ProjectId>,
}

/// A read of Azure DevOps that failed for the object an event names: which object, and the
/// failure (classified by [`AdoError::class`]).
#[derive(Debug, thiserror::Error)]
#[error("cannot read {kind} {object} from Azure DevOps: {source}")]
pub struct ReadFailure {
    pub kind: Kind,
    pub object: String,
    #[source]
    pub source: Box<AdoError>,
}

impl ReadFailure {
    pub fn new(kind: Kind, object: impl Display, source: AdoError) -> ReadFailure {
        ReadFailure {
            kind,
            object: object.to_string(),
            source: Box::new(source),
        }
    }
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
    /// The envelope of a push lacks what its handling needs (the webhook answers 400).
    #[error("{0}")]
    Envelope(String),
    /// Azure DevOps could not be read for the object (the receiver classifies the failure).
    #[error(transparent)]
    Read(#[from] ReadFailure),
    /// A selector of a kind the event updates does not read with the kind's model: the
    /// event updates nothing (the receiver acknowledges it with the reason).
    #[error(transparent)]
    Selector(#[from] SelectorError),
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

struct Context<'a> {
    client: &'a AdoClient,
    kinds: &'a LiveKinds,
    event_type: &'a str,
    resource: Value,
    project_id: Option<ProjectId>,
}

impl Context<'_> {
    fn missing(&self, field: &'static str) -> LiveError {
        LiveError::Missing {
            event_type: self.event_type.to_string(),
            field,
        }
    }

    /// The event's project: `resourceContainers.project.id`, else the resource's own.
    fn project_id(&self) -> Result<ProjectId, LiveError> {
        self.project_id
            .clone()
            .or_else(|| {
                string(
                    &self.resource,
                    &["/projectId", "/project/id", "/release/projectReference/id"],
                )
                .map(ProjectId::new)
            })
            .ok_or_else(|| self.missing("resourceContainers.project.id"))
    }

    /// Reads the object of `kind` the event names: what Azure DevOps holds now, or
    /// [`Current::Gone`] for a 404 about the object itself. Any other failure names the object.
    async fn current<T>(
        &self,
        kind: Kind,
        object: impl Display,
        read: impl Future<Output = Result<T, AdoError>>,
    ) -> Result<Current<T>, LiveError> {
        Current::of(read.await).map_err(|e| ReadFailure::new(kind, object, e).into())
    }

    /// Reads something the item of `kind` is built with (its project, pipeline, runs, …): any
    /// failure, a 404 included (it says nothing about the object), names the object.
    async fn context<T>(
        &self,
        kind: Kind,
        object: impl Display,
        read: impl Future<Output = Result<T, AdoError>>,
    ) -> Result<T, LiveError> {
        read.await
            .map_err(|e| ReadFailure::new(kind, object, e).into())
    }

    /// The project as the project list has it (`__project`).
    async fn listed_project(
        &self,
        kind: Kind,
        object: impl Display,
        project_id: &ProjectId,
    ) -> Result<Value, LiveError> {
        self.context(kind, object, self.client.project(project_id))
            .await
            .map(items::listed_project)
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
        project_id: event.project_id.cloned(),
    };
    let Some(row) = events::event_type(event.event_type) else {
        return Ok(Vec::new());
    };
    kinds::check_live(row.handler, &kinds.plans)?;
    match row.handler {
        Handler::Repository | Handler::Push => repository(&context).await,
        Handler::PullRequest => pull_request(&context).await,
        Handler::WorkItem => work_item(&context).await,
        Handler::Build => build_complete(&context).await,
        Handler::PipelineRun => pipeline_run(&context).await,
        Handler::PipelineStage => pipeline_stage(&context).await,
        Handler::Pipeline => pipeline(&context).await,
        Handler::Release => release(&context).await,
        Handler::ReleaseDeployment => release_deployment(&context).await,
        Handler::Alert => alert(&context).await,
    }
}

/// The repository of a `git.repo.*` or `git.push` event: `resource.repository`, else the
/// resource itself (`git.repo.created` carries the repository).
fn event_repository(cx: &Context<'_>) -> Result<(RepositoryId, Value), LiveError> {
    let repository = cx
        .resource
        .get("repository")
        .filter(|r| r.is_object())
        .unwrap_or(&cx.resource)
        .clone();
    match string(&repository, &["/id"]) {
        Some(id) => Ok((RepositoryId::new(id), repository)),
        None => Err(cx.missing("resource.repository.id")),
    }
}

async fn repository(cx: &Context<'_>) -> Result<Vec<Publication>, LiveError> {
    let (id, named) = event_repository(cx)?;
    Ok(
        match cx
            .current(Kind::Repository, &id, cx.client.repository(&id))
            .await?
        {
            Current::Found(repository) => {
                let units = cx.kinds.units(Kind::Repository);
                if units.is_empty() {
                    vec![Publication::upsert(Kind::Repository, vec![repository])]
                } else {
                    let builder = ItemBuilder::new(cx.client);
                    let mut out = Vec::new();
                    for plan in units {
                        let enrichment = ListEnrichment::of(plan)?;
                        let built = builder.list_items(&enrichment, vec![repository.clone()]);
                        let items = cx.context(Kind::Repository, &id, built).await?;
                        out.push(Publication::upsert(Kind::Repository, items).for_unit(plan));
                    }
                    out
                }
            }
            // The event's repository: its id is the one Azure DevOps said is gone.
            Current::Gone(gone) => vec![Publication::delete(Kind::Repository, &gone, named)],
        },
    )
}

async fn pull_request(cx: &Context<'_>) -> Result<Vec<Publication>, LiveError> {
    let id = number(&cx.resource, &["/pullRequestId"])
        .ok_or_else(|| cx.missing("a numeric resource.pullRequestId"))?;
    Ok(
        match cx
            .current(Kind::PullRequest, id, cx.client.pull_request(id))
            .await?
        {
            Current::Found(pull_request) => {
                vec![Publication::upsert(Kind::PullRequest, vec![pull_request])]
            }
            // Gone with its repository (pull requests are not deleted on their own).
            Current::Gone(gone) => vec![Publication::delete(
                Kind::PullRequest,
                &gone,
                cx.resource.clone(),
            )],
        },
    )
}

/// A work item as the crawler publishes it: with `__projectId` and the full `__project`.
fn work_item_with_project(item: Value, project_id: &ProjectId, project: &Value) -> Value {
    let item = crate::kinds::enrich(item, "__projectId", &json!(project_id));
    crate::kinds::enrich(item, "__project", project)
}

/// What a deletion knows of a work item: enough for the mapping's identifier
/// (`.__project.id + "/" + (.id | tostring)`), which the Python integration's delete lacks.
fn deleted_work_item(project_id: &ProjectId, id: u64) -> Value {
    json!({"id": id, "__projectId": project_id, "__project": {"id": project_id}})
}

/// The work item of a `workitem.*` event: `workitem.updated` carries an update, whose `id` is
/// the update's number and whose work item is `workItemId` (the Python integration reads `id`,
/// and so fetches the wrong item); the other events carry the work item itself.
fn work_item_id(resource: &Value) -> Option<u64> {
    number(resource, &["/workItemId", "/id"])
}

/// The work item's own project (`System.TeamProject`, a name), whatever project the event
/// named: the event's project when the names agree (one read, as usual), else read by name.
async fn work_item_project(
    cx: &Context<'_>,
    id: u64,
    item: &Value,
    event_project: &ProjectId,
) -> Result<Value, LiveError> {
    let named = string(item, &["/fields/System.TeamProject"]);
    let read = cx.client.project(event_project);
    if let Current::Found(project) = cx.current(Kind::WorkItem, id, read).await?
        && named.is_none_or(|name| {
            string(&project, &["/name"]).is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    {
        return Ok(project);
    }
    let name = named.map_or_else(|| event_project.clone(), ProjectId::new);
    cx.context(Kind::WorkItem, id, cx.client.project(&name))
        .await
}

async fn work_item(cx: &Context<'_>) -> Result<Vec<Publication>, LiveError> {
    let id = work_item_id(&cx.resource)
        .ok_or_else(|| cx.missing("a numeric resource.workItemId or resource.id"))?;
    let event_project = cx.project_id()?;
    Ok(
        match cx
            .current(Kind::WorkItem, id, cx.client.work_item(id))
            .await?
        {
            Current::Found(item) => {
                let project = work_item_project(cx, id, &item, &event_project).await?;
                let project_id = string(&project, &["/id"])
                    .map_or_else(|| event_project.clone(), ProjectId::new);
                vec![Publication::upsert(
                    Kind::WorkItem,
                    vec![work_item_with_project(item, &project_id, &project)],
                )]
            }
            Current::Gone(gone) => vec![Publication::delete(
                Kind::WorkItem,
                &gone,
                deleted_work_item(&event_project, id),
            )],
        },
    )
}

async fn build_complete(cx: &Context<'_>) -> Result<Vec<Publication>, LiveError> {
    let (wants_build, wants_runs) = (cx.kinds.wants(Kind::Build), cx.kinds.wants(Kind::TestRun));
    if !wants_build && !wants_runs {
        return Ok(Vec::new());
    }
    let build_id = number(&cx.resource, &["/id"]).ok_or_else(|| cx.missing("resource.id"))?;
    let project_id = cx.project_id()?;
    let builder = ItemBuilder::new(cx.client);
    let build = cx
        .current(
            Kind::Build,
            build_id,
            cx.client.build(&project_id, &BuildId::from(build_id)),
        )
        .await?;
    let mut out = Vec::new();
    let build_units = cx.kinds.units(Kind::Build);
    match &build {
        Current::Found(found) if !build_units.is_empty() => {
            let project = cx
                .listed_project(Kind::Build, build_id, &project_id)
                .await?;
            let item = items::project_list_item(Kind::Build, found.clone(), &project);
            for plan in build_units {
                let enrichment = ListEnrichment::of(plan)?;
                let items = cx
                    .context(
                        Kind::Build,
                        build_id,
                        builder.list_items(&enrichment, vec![item.clone()]),
                    )
                    .await?;
                out.push(Publication::upsert(Kind::Build, items).for_unit(plan));
            }
        }
        Current::Gone(gone) if !build_units.is_empty() => out.push(Publication::delete(
            Kind::Build,
            gone,
            json!({"id": build_id, "__projectId": project_id, "__project": {"id": project_id}}),
        )),
        _ => {}
    }
    if let Current::Found(_) = &build {
        let build = BuildId::from(build_id);
        let mut listed: Option<Vec<Value>> = None;
        for plan in cx.kinds.units(Kind::TestRun) {
            let enrichment = TestRunEnrichment::for_plan(plan)?;
            let listed = match &listed {
                Some(runs) => runs.clone(),
                None => {
                    let read = test_runs_of_build(&builder, &project_id, &build);
                    let runs = cx.context(Kind::TestRun, build_id, read).await?;
                    listed.insert(runs).clone()
                }
            };
            let mut runs = Vec::new();
            for run in listed {
                let run = builder.test_run(&project_id, run, enrichment);
                runs.push(cx.context(Kind::TestRun, build_id, run).await?);
            }
            if !runs.is_empty() {
                out.push(Publication::upsert(Kind::TestRun, runs).for_unit(plan));
            }
        }
    }
    Ok(out)
}

/// Every test run of a build (`$top`/`$skip` until an empty page, as the crawler pages).
async fn test_runs_of_build(
    builder: &ItemBuilder<'_>,
    project_id: &ProjectId,
    build_id: &BuildId,
) -> Result<Vec<Value>, AdoError> {
    let mut all: Vec<Value> = Vec::new();
    loop {
        let page = builder
            .client
            .test_runs_page(project_id, Some(build_id), None, builder.page, all.len())
            .await?;
        if page.is_empty() {
            return Ok(all);
        }
        all.extend(page);
    }
}

async fn pipeline_run(cx: &Context<'_>) -> Result<Vec<Publication>, LiveError> {
    if !cx.kinds.wants(Kind::PipelineRun) {
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
    let (pipeline, run) = (PipelineId::from(pipeline_id), BuildId::from(run_id));
    let read = cx.client.pipeline_run(&project_id, &pipeline, &run);
    let run = match cx.current(Kind::PipelineRun, run_id, read).await? {
        Current::Found(run) => run,
        Current::Gone(gone) => {
            return Ok(vec![Publication::delete(
                Kind::PipelineRun,
                &gone,
                json!({"id": run_id, "__project": {"id": project_id}, "__pipeline": {"id": pipeline_id}}),
            )]);
        }
    };
    let project = cx
        .listed_project(Kind::PipelineRun, run_id, &project_id)
        .await?;
    // The run's own pipeline reference stands in for a pipeline read that finds nothing.
    let read = cx.client.pipeline(&project_id, &pipeline);
    let pipeline = cx
        .current(Kind::PipelineRun, run_id, read)
        .await?
        .found()
        .map(items::listed_pipeline)
        .or_else(|| run.get("pipeline").cloned())
        .unwrap_or_else(|| json!({"id": pipeline_id}));
    Ok(vec![Publication::upsert(
        Kind::PipelineRun,
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
    if !cx.kinds.wants(Kind::PipelineStage) {
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
    // The stage's identifier needs its record id: a stage named only by name that is gone
    // cannot be deleted live (the next resync does).
    let gone = |gone: &Gone| -> Vec<Publication> {
        stage_id
            .map(|id| {
                Publication::delete(
                    Kind::PipelineStage,
                    gone,
                    json!({"id": id, "__project": {"id": project_id}, "__build": {"id": run_id}}),
                )
            })
            .into_iter()
            .collect()
    };
    let run = BuildId::from(run_id);
    let read = cx.client.build(&project_id, &run);
    let build = match cx.current(Kind::PipelineStage, run_id, read).await? {
        Current::Found(build) => build,
        Current::Gone(g) => return Ok(gone(&g)),
    };
    let read = cx.client.build_timeline_records(&project_id, &run);
    let records = match cx.current(Kind::PipelineStage, run_id, read).await? {
        Current::Found(records) => records,
        Current::Gone(g) => return Ok(gone(&g)),
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
    let project = cx
        .listed_project(Kind::PipelineStage, run_id, &project_id)
        .await?;
    let build = items::project_list_item(Kind::Build, build, &project);
    Ok(vec![Publication::upsert(
        Kind::PipelineStage,
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
    let units = cx.kinds.units(Kind::Pipeline);
    if units.is_empty() {
        return Ok(Vec::new());
    }
    let Some(pipeline_id) = pipeline_of_check(&cx.resource) else {
        tracing::debug!(
            event_type = cx.event_type,
            "check event names no pipeline (only a check configuration on a resource); acknowledged"
        );
        return Ok(Vec::new());
    };
    let project_id = cx.project_id()?;
    let pipeline = PipelineId::from(pipeline_id);
    let read = cx.client.pipeline(&project_id, &pipeline);
    Ok(match cx.current(Kind::Pipeline, pipeline_id, read).await? {
        Current::Found(pipeline) => {
            let item = items::project_list_item(
                Kind::Pipeline,
                items::listed_pipeline(pipeline),
                &json!({"id": project_id}),
            );
            let builder = ItemBuilder::new(cx.client);
            let mut out = Vec::new();
            for plan in units {
                let enrichment = ListEnrichment::of(plan)?;
                let built = builder.list_items(&enrichment, vec![item.clone()]);
                let items = cx.context(Kind::Pipeline, pipeline_id, built).await?;
                out.push(Publication::upsert(Kind::Pipeline, items).for_unit(plan));
            }
            out
        }
        Current::Gone(gone) => vec![Publication::delete(
            Kind::Pipeline,
            &gone,
            json!({"id": pipeline_id, "__projectId": project_id}),
        )],
    })
}

async fn release(cx: &Context<'_>) -> Result<Vec<Publication>, LiveError> {
    let (wants_release, wants_definition) = (
        cx.kinds.wants(Kind::Release),
        cx.kinds.wants(Kind::ReleaseDefinition),
    );
    if !wants_release && !wants_definition {
        return Ok(Vec::new());
    }
    let release_id =
        number(&cx.resource, &["/release/id"]).ok_or_else(|| cx.missing("resource.release.id"))?;
    let project_id = cx.project_id()?;
    let id = ReleaseId::from(release_id);
    let read = cx.client.release(&project_id, &id);
    let release = cx.current(Kind::Release, release_id, read).await?;
    let mut out = Vec::new();
    if wants_release {
        out.push(match &release {
            Current::Found(release) => Publication::upsert(Kind::Release, vec![release.clone()]),
            Current::Gone(gone) => Publication::delete(
                Kind::Release,
                gone,
                json!({"id": release_id, "projectReference": {"id": project_id}}),
            ),
        });
    }
    if wants_definition {
        let definition_id = match &release {
            Current::Found(release) => number(release, &["/releaseDefinition/id"]),
            Current::Gone(_) => None,
        }
        .or_else(|| number(&cx.resource, &["/release/releaseDefinition/id"]));
        if let Some(definition_id) = definition_id {
            // Read with each unit's `expand`: the units' items differ by it.
            for plan in cx.kinds.units(Kind::ReleaseDefinition) {
                let selectors = plan.selectors::<ReleaseDefinitionSelector>()?;
                let expand = ReleaseDefinitionSelector::expand(&selectors).to_string();
                let id = ReleaseDefinitionId::from(definition_id);
                let read = cx
                    .client
                    .release_definition(&project_id, &id, Some(&expand));
                let publication = match cx
                    .current(Kind::ReleaseDefinition, definition_id, read)
                    .await?
                {
                    Current::Found(definition) => {
                        let project = cx
                            .listed_project(Kind::ReleaseDefinition, definition_id, &project_id)
                            .await?;
                        Publication::upsert(
                            Kind::ReleaseDefinition,
                            vec![items::project_list_item(
                                Kind::ReleaseDefinition,
                                definition,
                                &project,
                            )],
                        )
                    }
                    Current::Gone(gone) => Publication::delete(
                        Kind::ReleaseDefinition,
                        &gone,
                        json!({"id": definition_id, "__project": {"id": project_id}}),
                    ),
                };
                out.push(publication.for_unit(plan));
            }
        }
    }
    Ok(out)
}

async fn release_deployment(cx: &Context<'_>) -> Result<Vec<Publication>, LiveError> {
    if !cx.kinds.wants(Kind::ReleaseDeployment) {
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
    let release = ReleaseId::from(release_id);
    // Azure DevOps has no read of one deployment: the deployments of its release (environment)
    // are read. Deployments are not deleted on their own, only with their release: one absent
    // from an existing release's deployments proves nothing, and is left to the next resync.
    let read = cx
        .client
        .release_deployments(&project_id, &release, environment);
    let deployments = cx
        .context(Kind::ReleaseDeployment, release_id, read)
        .await?;
    let chosen = match deployment_id {
        Some(id) => deployments
            .into_iter()
            .find(|d| number(d, &["/id"]) == Some(id)),
        // The newest deployment of that release environment (the API lists newest first).
        None => deployments.into_iter().next(),
    };
    if let Some(deployment) = chosen {
        return Ok(vec![Publication::upsert(
            Kind::ReleaseDeployment,
            vec![deployment],
        )]);
    }
    let Some(id) = deployment_id else {
        return Ok(Vec::new());
    };
    let read = cx.client.release(&project_id, &release);
    Ok(match cx.current(Kind::ReleaseDeployment, id, read).await? {
        Current::Gone(gone) => vec![Publication::delete(
            Kind::ReleaseDeployment,
            &gone,
            json!({"id": id, "release": {"id": release_id}, "projectReference": {"id": project_id}}),
        )],
        Current::Found(_) => {
            tracing::debug!(
                event_type = cx.event_type,
                release_id,
                deployment_id = id,
                "deployment not among its release's deployments; acknowledged"
            );
            Vec::new()
        }
    })
}

/// Whether `alert` satisfies one selector's `criteria` (`states`, `severity`, `alertType`;
/// an absent or empty filter lets everything through).
fn meets(criteria: Option<&AlertCriteria>, alert: &Value) -> bool {
    let Some(criteria) = criteria else {
        return true;
    };
    let field = |name: &str| alert.get(name).and_then(Value::as_str).unwrap_or_default();
    let listed = |filter: &str, value: &str| {
        (criteria.filter(filter))
            .is_none_or(|allowed| allowed.iter().any(|a| a.eq_ignore_ascii_case(value)))
    };
    listed("states", field("state"))
        && listed("severity", field("severity"))
        && listed("alertType", field("alertType"))
}

/// Whether any resource of the kind selects `alert`.
fn selected(plan: &KindPlan, alert: &Value) -> Result<bool, SelectorError> {
    let selectors = plan.selectors::<AlertSelector>()?;
    Ok(selectors.is_empty()
        || (selectors.iter()).any(|selector| meets(selector.criteria.as_ref(), alert)))
}

async fn alert(cx: &Context<'_>) -> Result<Vec<Publication>, LiveError> {
    let units = cx.kinds.units(Kind::AdvancedSecurityAlert);
    if units.is_empty() {
        return Ok(Vec::new());
    }
    let alert_id = number(&cx.resource, &["/alertId", "/alert/alertId"])
        .ok_or_else(|| cx.missing("resource.alertId"))?;
    let repository_id = string(&cx.resource, &["/repositoryId", "/repository/id"])
        .map(RepositoryId::new)
        .ok_or_else(|| cx.missing("resource.repositoryId"))?;
    let project_id = cx.project_id()?;
    let identity =
        json!({"alertId": alert_id, "__repositoryId": repository_id, "__projectId": project_id});
    let read = cx
        .client
        .advanced_security_alert(&project_id, &repository_id, alert_id);
    let alert = match cx
        .current(Kind::AdvancedSecurityAlert, alert_id, read)
        .await?
    {
        Current::Found(alert) => alert,
        Current::Gone(gone) => {
            return Ok(vec![Publication::delete(
                Kind::AdvancedSecurityAlert,
                &gone,
                identity,
            )]);
        }
    };
    // Each unit with its own criteria: an upsert for the units that select it, a delete for
    // those that no longer do (e.g. dismissed while `states: [active]`).
    let item = items::security_alert(alert.clone(), &repository_id, &project_id);
    let mut out = Vec::new();
    for plan in units {
        out.push(if selected(plan, &alert)? {
            Publication::upsert(Kind::AdvancedSecurityAlert, vec![item.clone()]).for_unit(plan)
        } else {
            Publication::deselected(Kind::AdvancedSecurityAlert, vec![identity.clone()])
                .for_unit(plan)
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let text = match name {
            "workitem.updated" => include_str!("../tests/fixtures/webhooks/workitem.updated.json"),
            "workitem.deleted" => include_str!("../tests/fixtures/webhooks/workitem.deleted.json"),
            other => panic!("no fixture {other}"),
        };
        serde_json::from_str(text).expect("fixture is JSON")
    }

    #[test]
    fn work_item_events_name_the_work_item_not_the_update() {
        let updated = fixture("workitem.updated");
        assert_eq!(
            work_item_id(&updated["resource"]),
            Some(1234),
            "resource.id (4) is the update's number; the work item is resource.workItemId"
        );
        assert_eq!(
            work_item_id(&fixture("workitem.deleted")["resource"]),
            Some(1234)
        );
        // The delete carries what the default mapping's identifier needs.
        let item = deleted_work_item(&ProjectId::new("p 1"), 1234);
        assert_eq!(item["__project"]["id"], "p 1");
        assert_eq!(item["id"], 1234);
    }

    #[test]
    fn every_handler_is_reached_by_an_event_type() {
        let handlers = [
            Handler::Repository,
            Handler::Push,
            Handler::PullRequest,
            Handler::WorkItem,
            Handler::Build,
            Handler::PipelineRun,
            Handler::PipelineStage,
            Handler::Pipeline,
            Handler::Release,
            Handler::ReleaseDeployment,
            Handler::Alert,
        ];
        for handler in handlers {
            assert!(
                events::EVENTS.iter().any(|e| e.handler == handler),
                "{handler:?} has no event type"
            );
        }
        assert!(handles("workitem.deleted"));
        assert!(handles("git.repo.statuschanged"));
        assert!(!handles("git.pullrequest.comment-event"));
    }

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
        let meets = |criteria: Value| {
            let plan = KindPlan::of(
                "advanced-security-alert",
                &[json!({ "criteria": criteria })],
            );
            selected(&plan, &alert).expect("reads")
        };
        assert!(super::meets(None, &alert));
        assert!(meets(json!(null)));
        assert!(meets(json!({})));
        assert!(meets(json!({"states": []})));
        assert!(!meets(json!({"states": ["active"]})));
        assert!(meets(json!({"states": ["active", "dismissed"]})));
        assert!(!meets(json!({"severity": ["low"]})));
        assert!(meets(json!({"alertType": "dependency"})));
        assert!(!meets(json!({"alertType": "secret"})));
        let refused = KindPlan::of(
            "advanced-security-alert",
            &[json!({"criteria": {"states": "active"}})],
        );
        assert_eq!(
            selected(&refused, &alert).map_err(|e| e.field),
            Err("criteria.states".to_string())
        );
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
