//! The `trigger_pipeline` action against the Port and Azure DevOps simulators: a run claimed,
//! acknowledged, started once and reported through the webhook receiver; bad inputs and an
//! answer-less start fail the run with a message a person can act on; two executors never start
//! one run twice.

use std::time::Duration;

use adoport_ingest::actions::completion::CompletionContext;
use adoport_ingest::actions::{ActionWorker, Organizations, PortRuns};
use adoport_shared::bus::Bus;
use adoport_shared::config::{ActionsProcessor, PortAccess, Secret};
use adoport_shared::topology::Topology;
use adoport_sim::ScriptedAnswer;
use adoport_sim::ado::{AdoSim, AdoSimConfig};
use adoport_sim::port::{PortSim, PortSimConfig};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

mod support;

use support::{StopOnDrop, client_with_pat, serve_receiver};

const RUN_POST: &str = "POST /{org}/{project}/_apis/pipelines/{pipelineId}/runs";
const WAIT: Duration = Duration::from_secs(20);

struct Harness {
    ado: AdoSim,
    port: PortSim,
    context: CompletionContext,
    webhook_url: String,
    /// The first project of the simulated organization.
    project: Value,
    shutdown: StopOnDrop,
}

async fn harness() -> Harness {
    let ado = AdoSim::start(AdoSimConfig::default()).await.expect("ado");
    let port = PortSim::start(PortSimConfig::default())
        .await
        .expect("port");
    let shutdown = CancellationToken::new();
    let client = client_with_pat(&ado, "sim-pat", &shutdown);
    let port_access = PortAccess {
        base_url: port.base_url(),
        client_id: "sim-client".into(),
        client_secret: Secret::new("sim-secret"),
        integration_identifier: "azure-devops".into(),
        integration_type: "azure-devops".into(),
        timeout_secs: 10,
        network: Default::default(),
    };
    let context = CompletionContext {
        port: PortRuns::new(port_access).expect("port runs"),
        organizations: Organizations::new(vec![client.clone()]),
    };
    let bus = Bus::memory(Topology::new("actions.", 1), shutdown.clone());
    let webhook_url =
        serve_receiver(bus, &client, Some(context.clone()), Vec::new(), &shutdown).await;
    let project = ado.projects().remove(0);
    Harness {
        ado,
        port,
        context,
        webhook_url,
        project,
        shutdown: StopOnDrop(shutdown),
    }
}

impl Harness {
    fn start_executor(&self) {
        let worker = ActionWorker::new(
            self.context.port.clone(),
            self.context.organizations.clone(),
            ActionsProcessor {
                enabled: true,
                poll_check_interval_seconds: 1,
                visibility_timeout_ms: 60_000,
                workers_count: 3,
            },
        );
        tokio::spawn(worker.run(self.shutdown.0.clone()));
    }

    /// Creates a `trigger_pipeline` action run with `inputs` in Port; its id.
    fn trigger(&self, inputs: Value) -> String {
        self.port.create_action_run("trigger_pipeline", inputs)
    }

    async fn wait_for_run(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let reached = self
            .port
            .wait_for(
                |port| port.action_run(id).is_some_and(|run| done(&run)),
                WAIT,
            )
            .await;
        let run = self.port.action_run(id).expect("run exists");
        assert!(
            reached,
            "{what}: {run}; logs {:?}",
            self.port.action_run_logs(id)
        );
        run
    }

    async fn deliver(&self, body: &Value) -> u16 {
        reqwest::Client::new()
            .post(&self.webhook_url)
            .json(body)
            .send()
            .await
            .expect("webhook answered")
            .status()
            .as_u16()
    }

    fn run_posts(&self) -> u64 {
        self.ado.requests().get(RUN_POST).copied().unwrap_or(0)
    }
}

fn ended(run: &Value) -> bool {
    run["status"] != "IN_PROGRESS"
}

#[tokio::test]
async fn a_pipeline_run_goes_from_request_to_reported_success() {
    let h = harness().await;
    let project_name = h.project["name"].as_str().expect("name");
    let project_id = h.project["id"].as_str().expect("id");
    let run_id = h.trigger(
        json!({"project": project_name, "pipelineId": "1", "branch": "main",
               "templateParameters": {"env": "prod"}, "variables": {"VERSION": "1.2.3"}}),
    );
    h.start_executor();

    let started = h
        .wait_for_run(&run_id, "marked started", |run| {
            run["externalRunId"].is_string()
        })
        .await;
    let pipeline_runs = h.ado.pipeline_runs();
    assert_eq!(pipeline_runs.len(), 1, "one pipeline run started");
    let pipeline_run = &pipeline_runs[0];
    let pipeline_run_id = pipeline_run["id"].as_u64().expect("run id");
    assert_eq!(
        started["externalRunId"],
        format!("ado_{project_id}_1_{pipeline_run_id}")
    );
    assert_eq!(started["link"], pipeline_run["_links"]["web"]["href"]);
    assert_eq!(started["status"], "IN_PROGRESS", "waits for the result");
    assert_eq!(
        h.ado.pipeline_run_request(pipeline_run_id),
        Some(json!({
            "resources": {"repositories": {"self": {"refName": "refs/heads/main"}}},
            "templateParameters": {"env": "prod"},
            "variables": {"VERSION": {"value": "1.2.3"}},
        }))
    );

    let hook = h
        .ado
        .complete_pipeline_run(pipeline_run_id, "succeeded")
        .expect("known run");
    assert_eq!(h.deliver(&hook).await, 200);
    let done = h.wait_for_run(&run_id, "reported", ended).await;
    assert_eq!(done["status"], "SUCCESS");
    assert!(
        h.port
            .action_run_logs(&run_id)
            .iter()
            .any(|log| log == "Pipeline run succeeded"),
        "{:?}",
        h.port.action_run_logs(&run_id)
    );
    // A redelivery changes nothing and is still accepted.
    assert_eq!(h.deliver(&hook).await, 200);
    assert_eq!(
        h.port.action_run(&run_id).expect("run")["status"],
        "SUCCESS"
    );
    assert_eq!(h.run_posts(), 1, "the pipeline was started once");
}

#[tokio::test]
async fn a_failed_pipeline_fails_the_action_run_and_bad_inputs_say_what_to_fix() {
    let h = harness().await;
    let name = h.project["name"].as_str().expect("name").to_string();
    let ok = h.trigger(json!({"project": h.project["id"], "pipelineId": 2}));
    let no_project = h.trigger(json!({"project": "No Such Project", "pipelineId": "1"}));
    let no_pipeline = h.trigger(json!({"project": name, "pipelineId": "99"}));
    let no_branch = h.trigger(json!({"project": name, "pipelineId": "1", "branch": "nope"}));
    let unknown_action = h.port.create_action_run("delete_everything", json!({}));
    h.start_executor();

    let failed = |id: &str, expected: &str| {
        let run = h.port.action_run(id).expect("run");
        let logs = h.port.action_run_logs(id);
        assert_eq!(run["status"], "FAILURE", "{run}");
        assert!(
            logs.iter().any(|log| log.contains(expected)),
            "{expected:?} not in {logs:?}"
        );
    };
    for id in [&no_project, &no_pipeline, &no_branch, &unknown_action] {
        h.wait_for_run(id, "failed", ended).await;
    }
    failed(
        &no_project,
        "project \"No Such Project\" was not found in acme",
    );
    failed(&no_pipeline, "pipeline 99 was not found in project");
    failed(
        &no_branch,
        "Unable to resolve the reference 'refs/heads/nope'",
    );
    failed(&unknown_action, "no action \"delete_everything\"");

    h.wait_for_run(&ok, "started", |run| run["externalRunId"].is_string())
        .await;
    let pipeline_run_id = h.ado.pipeline_runs()[0]["id"].as_u64().expect("id");
    let hook = h
        .ado
        .complete_pipeline_run(pipeline_run_id, "failed")
        .expect("run");
    assert_eq!(h.deliver(&hook).await, 200);
    h.wait_for_run(&ok, "reported", ended).await;
    failed(&ok, "Pipeline run failed");
    // The unknown project and the unknown action never reach the run endpoint.
    assert_eq!(h.run_posts(), 3);
}

#[tokio::test]
async fn a_start_without_an_answer_is_not_repeated() {
    let h = harness().await;
    h.ado.fail_next(RUN_POST, vec![ScriptedAnswer::status(503)]);
    let run = h.trigger(json!({"project": h.project["name"], "pipelineId": "1"}));
    h.start_executor();
    let done = h.wait_for_run(&run, "failed", ended).await;
    assert_eq!(done["status"], "FAILURE");
    let logs = h.port.action_run_logs(&run);
    assert!(
        logs.iter()
            .any(|log| log.contains("not repeated automatically")
                && log.contains("check the pipeline's runs")),
        "{logs:?}"
    );
    assert_eq!(h.run_posts(), 1, "a 503 start is never retried");
}

#[tokio::test]
async fn two_executors_start_one_run_once() {
    let h = harness().await;
    let runs: Vec<String> = (0..4)
        .map(|_| {
            h.trigger(json!({"project": h.project["name"], "pipelineId": "1", "reportPipelineStatus": false}),
            )
        })
        .collect();
    h.start_executor();
    h.start_executor();
    for run in &runs {
        let done = h.wait_for_run(run, "done", ended).await;
        assert_eq!(
            done["status"], "SUCCESS",
            "reportPipelineStatus=false ends at start"
        );
    }
    assert_eq!(h.run_posts(), 4, "one pipeline run per action run");
    assert_eq!(h.ado.pipeline_runs().len(), 4);
}
