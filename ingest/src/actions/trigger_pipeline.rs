//! The `trigger_pipeline` action: its inputs, the organization and project they name, the one
//! `POST {org}/{projectId}/_apis/pipelines/{pipelineId}/runs` that starts the run, and the
//! external id (`ado_{projectId}_{pipelineId}_{runId}`) that ties the pipeline run to the Port
//! action run.
//!
//! Exactly once: the POST is sent only after Port acknowledged the run to this executor, and it
//! is never repeated — a failure whose outcome is unknown (no answer, 5xx) fails the action run
//! with a message saying to check the pipeline before running the action again.

use serde_json::{Map, Value, json};

use super::port_runs::{ActionRun, PortRuns};
use super::target::{ado_message, resolve_project};
use super::{ActionsError, Organizations};
use crate::ado::{AdoClient, AdoError, BuildId, PipelineId, ProjectId};

/// The action's name in the integration's spec (`payload.integrationActionType`).
pub const ACTION_TYPE: &str = "trigger_pipeline";

/// The inputs of one `trigger_pipeline` run.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerInputs {
    /// A project name or id.
    pub project: ProjectId,
    pub pipeline_id: PipelineId,
    /// `main` or `refs/heads/main`; the pipeline's default branch when absent.
    pub branch: Option<String>,
    /// Whether the action run waits for the pipeline's result (default true).
    pub report_pipeline_status: bool,
    pub template_parameters: Option<Map<String, Value>>,
    pub variables: Option<Map<String, Value>>,
    /// Which configured organization runs it (name or URL); needed only when several are
    /// configured and the project name is ambiguous.
    pub organization: Option<String>,
}

pub use super::inputs::InputError;
use super::inputs::{object as object_input, text as text_input};

impl TriggerInputs {
    /// Reads the action run's execution properties.
    pub fn parse(properties: &Value) -> Result<Self, InputError> {
        let project = text_input(properties, "project")
            .map(ProjectId::new)
            .ok_or_else(|| {
                InputError("the \"project\" input is required: a project name or id".into())
            })?;
        let pipeline_text = text_input(properties, "pipelineId").ok_or_else(|| {
            InputError(
                "the \"pipelineId\" input is required: the number in the pipeline's URL (definitionId=…)"
                    .into(),
            )
        })?;
        let pipeline_id = pipeline_text.parse::<u64>().map_err(|_| {
            InputError(format!(
                "the \"pipelineId\" input must be a pipeline's number (definitionId in its URL), not {pipeline_text:?}"
            ))
        })?;
        let report_pipeline_status = match properties.get("reportPipelineStatus") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => !s.eq_ignore_ascii_case("false"),
            Some(_) => true,
        };
        Ok(Self {
            project,
            pipeline_id: PipelineId::from(pipeline_id),
            branch: text_input(properties, "branch"),
            report_pipeline_status,
            template_parameters: object_input(properties, "templateParameters")?,
            variables: object_input(properties, "variables")?,
            organization: text_input(properties, "organization"),
        })
    }

    /// The body of the run request, as the Pipelines API documents it.
    pub fn run_body(&self) -> Value {
        let mut body = json!({});
        if let Some(branch) = &self.branch {
            let ref_name = if branch.starts_with("refs/") {
                branch.clone()
            } else {
                format!("refs/heads/{branch}")
            };
            body["resources"] = json!({"repositories": {"self": {"refName": ref_name}}});
        }
        if let Some(parameters) = &self.template_parameters {
            body["templateParameters"] = Value::Object(parameters.clone());
        }
        if let Some(variables) = &self.variables {
            let wrapped: Map<String, Value> = variables
                .iter()
                .map(|(name, value)| {
                    let value = match value {
                        Value::Object(map) if map.contains_key("value") => value.clone(),
                        other => json!({"value": other}),
                    };
                    (name.clone(), value)
                })
                .collect();
            body["variables"] = Value::Object(wrapped);
        }
        body
    }
}

/// `ado_{projectId}_{pipelineId}_{runId}`, the Python integration's format.
pub fn external_id(project_id: &ProjectId, pipeline_id: &PipelineId, run_id: &BuildId) -> String {
    format!("ado_{project_id}_{pipeline_id}_{run_id}")
}

/// The organization and project a run's inputs name.
async fn resolve<'a>(
    organizations: &'a Organizations,
    inputs: &TriggerInputs,
) -> Result<(&'a AdoClient, Value), ActionsError> {
    resolve_project(
        organizations,
        &inputs.project,
        inputs.organization.as_deref(),
    )
    .await
}

/// What a started pipeline run is known by.
#[derive(Debug, Clone, PartialEq)]
pub struct StartedRun {
    pub external_id: String,
    pub link: String,
    pub run: Value,
}

/// Starts the pipeline a run names (the run is already acknowledged to this executor) and
/// marks the Port run started. Errors are for the caller to report on the run.
pub async fn execute(
    port: &PortRuns,
    organizations: &Organizations,
    run: &ActionRun,
) -> Result<StartedRun, ActionsError> {
    let inputs =
        TriggerInputs::parse(&run.properties).map_err(|e| ActionsError::Input(e.to_string()))?;
    let (client, project) = resolve(organizations, &inputs).await?;
    let project_id = ProjectId::new(
        project
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    );
    let project_name = project
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or(inputs.project.as_str())
        .to_string();
    let pipeline_id = &inputs.pipeline_id;
    port.log(
        &run.id,
        &format!(
            "Triggering pipeline {pipeline_id} in project '{project_name}' ({})",
            client.organization_name()
        ),
    )
    .await?;
    let started = match client
        .start_pipeline_run(&project_id, pipeline_id, &inputs.run_body())
        .await
    {
        Ok(started) => started,
        Err(AdoError::NotFound { .. }) => {
            return Err(ActionsError::Input(format!(
                "pipeline {pipeline_id} was not found in project '{project_name}'; the \"pipelineId\" input is the definitionId in the pipeline's URL"
            )));
        }
        Err(e @ AdoError::Status { status: 400, .. }) => {
            return Err(ActionsError::Input(format!(
                "Azure DevOps refused to run pipeline {pipeline_id} in project '{project_name}': {}",
                ado_message(&e)
            )));
        }
        Err(e) if e.is_transient() => {
            return Err(ActionsError::Ado(format!(
                "the request to run pipeline {pipeline_id} in project '{project_name}' failed ({e}); it is not repeated automatically because it may have started a run: check the pipeline's runs in Azure DevOps before running the action again"
            )));
        }
        Err(e) => {
            return Err(ActionsError::Ado(format!(
                "Azure DevOps did not run pipeline {pipeline_id} in project '{project_name}': {e}"
            )));
        }
    };
    let run_id = started.get("id").and_then(Value::as_u64).ok_or_else(|| {
        ActionsError::Ado(format!(
            "Azure DevOps answered the run of pipeline {pipeline_id} without a run id; check the pipeline's runs in Azure DevOps"
        ))
    })?;
    let link = started
        .pointer("/_links/web/href")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let external_id = external_id(&project_id, pipeline_id, &BuildId::from(run_id));
    port.log(&run.id, &format!("Pipeline run started: {link}"))
        .await?;
    port.report_started(&run.id, &link, &external_id).await?;
    tracing::info!(run_id = %run.id, %external_id, %link, "pipeline run started for a Port action run");
    Ok(StartedRun {
        external_id,
        link,
        run: started,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_follow_the_spec() {
        let inputs = TriggerInputs::parse(&json!({
            "project": "Shop", "pipelineId": "12", "branch": "release",
            "templateParameters": {"env": "prod"},
            "variables": {"a": 1, "b": {"value": "x", "isSecret": true}}
        }))
        .expect("valid");
        assert!(inputs.report_pipeline_status);
        assert_eq!(
            inputs.run_body(),
            json!({
                "resources": {"repositories": {"self": {"refName": "refs/heads/release"}}},
                "templateParameters": {"env": "prod"},
                "variables": {"a": {"value": 1}, "b": {"value": "x", "isSecret": true}}
            })
        );
        let missing = TriggerInputs::parse(&json!({"project": "Shop"})).expect_err("no pipeline");
        assert!(missing.0.contains("pipelineId"), "{missing}");
        let bad = TriggerInputs::parse(&json!({"project": "Shop", "pipelineId": "ci"}))
            .expect_err("not a number");
        assert!(bad.0.contains("definitionId"), "{bad}");
        let off = TriggerInputs::parse(
            &json!({"project": "p", "pipelineId": 3, "reportPipelineStatus": false}),
        )
        .expect("valid");
        assert!(!off.report_pipeline_status);
        assert_eq!(off.run_body(), json!({}));
        assert_eq!(
            external_id(
                &ProjectId::new("p-1"),
                &PipelineId::from(3),
                &BuildId::from(99)
            ),
            "ado_p-1_3_99"
        );
    }
}
