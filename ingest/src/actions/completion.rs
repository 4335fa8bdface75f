//! The end of a `trigger_pipeline` run: Azure DevOps' `ms.vss-pipelines.run-state-changed-event`
//! service hook names a pipeline run; the Port action run started with its external id is
//! reported `SUCCESS` when the run succeeded and `FAILURE` otherwise.
//!
//! The hook is only a hint: the run's state is read again from Azure DevOps (in the organization
//! the action run's link points to) before anything is reported, so a forged or stale delivery
//! cannot end an action run.

use serde_json::Value;

use super::port_runs::PortRuns;
use super::trigger_pipeline::external_id;
use super::{ActionsError, Organizations};
use crate::ado::{BuildId, PipelineId, ProjectId};

/// The service-hook event type of pipeline run state changes.
pub const RUN_STATE_CHANGED: &str = "ms.vss-pipelines.run-state-changed-event";

/// What the receiver needs to report completions.
#[derive(Debug, Clone)]
pub struct CompletionContext {
    pub port: PortRuns,
    pub organizations: Organizations,
}

/// What a run-state-changed delivery led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Not a completion (queued, in progress), or Azure DevOps does not say it completed.
    NotCompleted,
    /// No Port action run started this pipeline run (a manual or CI run).
    NotAnActionRun,
    /// The action run had already ended, or does not wait for the result.
    NothingToReport,
    /// The action run was ended with this outcome.
    Reported { success: bool },
}

/// Ends the action run `run_id` when `pipeline_run` (as Azure DevOps returns it) is completed.
pub(crate) async fn report_if_completed(
    port: &PortRuns,
    run_id: &str,
    pipeline_run: &Value,
) -> Result<(), ActionsError> {
    if pipeline_run.get("state").and_then(Value::as_str) != Some("completed") {
        return Ok(());
    }
    let result = pipeline_run
        .get("result")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    port.report_completed(
        run_id,
        result == "succeeded",
        &format!("Pipeline run {result}"),
    )
    .await
}

/// Handles one run-state-changed delivery.
pub async fn on_run_state_changed(
    context: &CompletionContext,
    payload: &Value,
) -> Result<Completion, ActionsError> {
    let resource = payload.get("resource").cloned().unwrap_or(Value::Null);
    if resource.pointer("/run/state").and_then(Value::as_str) != Some("completed") {
        return Ok(Completion::NotCompleted);
    }
    let project_id = payload
        .pointer("/resourceContainers/project/id")
        .and_then(Value::as_str);
    let pipeline_id = resource
        .pointer("/pipeline/id")
        .or_else(|| resource.get("pipelineId"))
        .and_then(Value::as_u64);
    let run_number = resource
        .pointer("/run/id")
        .or_else(|| resource.get("runId"))
        .and_then(Value::as_u64);
    let (Some(project_id), Some(pipeline_id), Some(run_number)) =
        (project_id, pipeline_id, run_number)
    else {
        tracing::info!("run-state-changed event without project, pipeline or run id; ignored");
        return Ok(Completion::NotAnActionRun);
    };
    let (project_id, pipeline_id, run_id) = (
        ProjectId::new(project_id),
        PipelineId::from(pipeline_id),
        BuildId::from(run_number),
    );
    let external = external_id(&project_id, &pipeline_id, &run_id);
    let Some(action_run) = context.port.find_by_external_id(&external).await? else {
        tracing::debug!(%external, "no Port action run started this pipeline run");
        return Ok(Completion::NotAnActionRun);
    };
    let report = super::trigger_pipeline::TriggerInputs::parse(&action_run.properties)
        .map(|inputs| inputs.report_pipeline_status)
        .unwrap_or(true);
    if !action_run.is_in_progress() || !report {
        return Ok(Completion::NothingToReport);
    }
    let Some(client) = context.organizations.for_link(action_run.link.as_deref()) else {
        return Err(ActionsError::Ado(format!(
            "action run {} links to {:?}, which is in none of the configured organizations ({})",
            action_run.id,
            action_run.link,
            context.organizations.names().join(", ")
        )));
    };
    let now = client
        .pipeline_run(&project_id, &pipeline_id, &run_id)
        .await
        .map_err(|e| ActionsError::Ado(e.to_string()))?;
    if now.get("state").and_then(Value::as_str) != Some("completed") {
        tracing::info!(%external, "the service hook says completed but Azure DevOps does not; not reported");
        return Ok(Completion::NotCompleted);
    }
    let success = now.get("result").and_then(Value::as_str) == Some("succeeded");
    report_if_completed(&context.port, &action_run.id, &now).await?;
    tracing::info!(run_id = %action_run.id, %external, success, "action run completed");
    Ok(Completion::Reported { success })
}

/// The receiver's hook: for a run-state-changed delivery, reports the completion. `Err` (with
/// the reason) only when trying again later may work, so the receiver answers 503 and Azure
/// DevOps delivers the event again.
pub async fn on_webhook(
    context: Option<&CompletionContext>,
    event_type: &str,
    body: &[u8],
) -> Result<(), String> {
    let Some(context) = context else {
        return Ok(());
    };
    if event_type != RUN_STATE_CHANGED {
        return Ok(());
    }
    let Ok(payload) = serde_json::from_slice::<Value>(body) else {
        return Ok(());
    };
    match on_run_state_changed(context, &payload).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_transient() => Err(e.to_string()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot report a pipeline run's completion to its Port action run");
            Ok(())
        }
    }
}
