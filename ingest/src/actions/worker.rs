//! The actions executor loop: claims pending runs of this installation from Port, at most
//! `OCEAN__ACTIONS_PROCESSOR__WORKERS_COUNT` at a time, acknowledges each (the step that makes
//! this executor its only owner) and executes it.
//!
//! A run is executed only after Port acknowledged it to us, so however many ingest replicas poll,
//! one run starts at most one pipeline: a run claimed but not acknowledged (we crashed, or the
//! ack failed) becomes claimable again after its visibility timeout; an acknowledged run is never
//! handed out again.

use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::port_runs::{Acknowledged, ActionRun, PortRuns};
use super::trigger_pipeline::{self, ACTION_TYPE};
use super::{ActionsError, Organizations};
use super::{pull_request_inputs, pull_requests};
use crate::ado::{BuildId, PipelineId, ProjectId};
use adoport_shared::config::ActionsProcessor;

/// How long a stopping executor waits for runs in flight.
const DRAIN: Duration = Duration::from_secs(20);

/// Runs Port's self-service actions against Azure DevOps.
#[derive(Debug, Clone)]
pub struct ActionWorker {
    port: PortRuns,
    organizations: Organizations,
    settings: ActionsProcessor,
}

impl ActionWorker {
    pub fn new(port: PortRuns, organizations: Organizations, settings: ActionsProcessor) -> Self {
        Self {
            port,
            organizations,
            settings,
        }
    }

    /// Claims and executes runs until `shutdown`, then lets the runs in flight finish (bounded).
    pub async fn run(self, shutdown: CancellationToken) {
        let workers = self.settings.workers_count.max(1) as usize;
        let poll = Duration::from_secs(self.settings.poll_check_interval_seconds.max(1));
        let visibility = Duration::from_millis(self.settings.visibility_timeout_ms.max(1000));
        let mut running = JoinSet::new();
        tracing::info!(installation = %self.port.installation(), workers, "executing Port actions (trigger_pipeline and the pull-request actions)");
        loop {
            while running.try_join_next().is_some() {}
            let free = workers.saturating_sub(running.len());
            if free == 0 {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = running.join_next() => continue,
                }
            }
            let claimed = match self.port.claim_pending(free, visibility).await {
                Ok(runs) => runs,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim pending action runs from Port; will try again");
                    Vec::new()
                }
            };
            if claimed.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(poll) => continue,
                }
            }
            for run in claimed {
                let worker = self.clone();
                running.spawn(async move { worker.handle(run).await });
            }
        }
        let drained = tokio::time::timeout(DRAIN, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "action runs still in flight at shutdown were abandoned; they stay in progress in Port"
            );
        }
    }

    async fn handle(&self, run: ActionRun) {
        match self.port.acknowledge(&run.id).await {
            Ok(Acknowledged::Owned) => {}
            Ok(Acknowledged::TakenElsewhere) => {
                tracing::info!(run_id = %run.id, "action run acknowledged by another executor; skipped");
                return;
            }
            Err(e) => {
                tracing::warn!(run_id = %run.id, error = %e, "cannot acknowledge the action run; it is left for a later claim");
                return;
            }
        }
        let outcome = if run.action_type == ACTION_TYPE {
            self.trigger(&run).await
        } else if pull_requests::handles(&run.action_type) {
            pull_requests::execute(&self.port, &self.organizations, &run).await
        } else {
            Err(ActionsError::Input(format!(
                "the Azure DevOps integration has no action {:?}; it runs {ACTION_TYPE}, {}",
                run.action_type,
                pull_request_inputs::ACTION_TYPES.join(", ")
            )))
        };
        if let Err(e) = outcome {
            tracing::warn!(run_id = %run.id, action = %run.action_type, error = %e, "action run failed");
            if let Err(report) = self
                .port
                .report_completed(&run.id, false, &e.to_string())
                .await
            {
                tracing::error!(run_id = %run.id, error = %report, failure = %e, "cannot report the action run's failure to Port");
            }
        }
    }

    async fn trigger(&self, run: &ActionRun) -> Result<(), ActionsError> {
        let started = trigger_pipeline::execute(&self.port, &self.organizations, run).await?;
        let inputs = trigger_pipeline::TriggerInputs::parse(&run.properties)
            .map_err(|e| ActionsError::Input(e.to_string()))?;
        if !inputs.report_pipeline_status {
            return self
                .port
                .report_completed(
                    &run.id,
                    true,
                    "Pipeline run started; not waiting for its result (reportPipelineStatus is false)",
                )
                .await;
        }
        // The run may have finished before Port knew its external id, so before the completion
        // service hook could find it: look once now.
        let client = self.organizations.for_link(Some(&started.link));
        let (Some(client), Some(project_id), Some(pipeline_id), Some(run_id)) = (
            client,
            started
                .external_id
                .strip_prefix("ado_")
                .and_then(|rest| rest.split('_').next()),
            started.run.pointer("/pipeline/id").and_then(Value::as_u64),
            started.run.get("id").and_then(Value::as_u64),
        ) else {
            return Ok(());
        };
        let (project_id, pipeline_id, run_id) = (
            ProjectId::new(project_id),
            PipelineId::from(pipeline_id),
            BuildId::from(run_id),
        );
        match client
            .pipeline_run(&project_id, &pipeline_id, &run_id)
            .await
        {
            Ok(now) => super::completion::report_if_completed(&self.port, &run.id, &now).await,
            Err(e) => {
                tracing::debug!(run_id = %run.id, error = %e, "cannot read the started pipeline run; its completion hook will report it");
                Ok(())
            }
        }
    }
}
