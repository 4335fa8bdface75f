//! The pull-request actions against the Port and Azure DevOps simulators: Port hands out the
//! action run, the executor changes the pull request in Azure DevOps once, the simulator's
//! listings show the change, and Port sees the run end — `SUCCESS` with a link to the pull
//! request, or `FAILURE` with a message naming the action, the input or item, and Azure
//! DevOps' HTTP status and message.

use std::time::Duration;

use adoport_ingest::actions::{ActionWorker, Organizations, PortRuns};
use adoport_shared::config::{ActionsProcessor, PortAccess, Secret};
use adoport_sim::ScriptedAnswer;
use adoport_sim::ado::content::{FileChange, SimCommit};
use adoport_sim::ado::{AdoSim, AdoSimConfig};
use adoport_sim::port::{PortSim, PortSimConfig};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

mod support;

use support::{StopOnDrop, client_with_pat};

const CREATE_POST: &str = "POST /{org}/{project}/_apis/git/repositories/{repository}/pullrequests";
const UPDATE_PATCH: &str =
    "PATCH /{org}/{project}/_apis/git/repositories/{repository}/pullrequests/{pullRequestId}";
const WAIT: Duration = Duration::from_secs(20);

struct Harness {
    ado: AdoSim,
    port: PortSim,
    organization_url: String,
    _shutdown: StopOnDrop,
}

/// Both simulators and an executor polling Port every second, its client using `pat`.
async fn harness_with_pat(pat: &str) -> Harness {
    let ado = AdoSim::start(AdoSimConfig::default()).await.expect("ado");
    let port = PortSim::start(PortSimConfig::default())
        .await
        .expect("port");
    let shutdown = CancellationToken::new();
    let client = client_with_pat(&ado, pat, &shutdown);
    let organization_url = client.organization_url().to_string();
    let access = PortAccess {
        base_url: port.base_url(),
        client_id: "sim-client".into(),
        client_secret: Secret::new("sim-secret"),
        integration_identifier: "azure-devops".into(),
        integration_type: "azure-devops".into(),
        timeout_secs: 10,
        network: Default::default(),
    };
    let worker = ActionWorker::new(
        PortRuns::new(access).expect("port runs"),
        Organizations::new(vec![client]),
        ActionsProcessor {
            enabled: true,
            poll_check_interval_seconds: 1,
            visibility_timeout_ms: 60_000,
            workers_count: 3,
        },
    );
    tokio::spawn(worker.run(shutdown.clone()));
    Harness {
        ado,
        port,
        organization_url,
        _shutdown: StopOnDrop(shutdown),
    }
}

async fn harness() -> Harness {
    harness_with_pat("sim-pat").await
}

/// Where a pull request lives: project name, repository name, repository id.
struct Place {
    project: String,
    repository: String,
    repository_id: String,
}

impl Harness {
    fn pull_request(&self, id: u64) -> Value {
        self.ado
            .pull_requests()
            .into_iter()
            .find(|pr| pr["pullRequestId"] == id)
            .expect("pull request listed")
    }

    /// An active, non-draft pull request and where it lives.
    fn active_pull_request(&self, skip: usize) -> (u64, Place) {
        let pr = self
            .ado
            .pull_requests()
            .into_iter()
            .filter(|pr| pr["status"] == "active" && pr["isDraft"] == false)
            .nth(skip)
            .expect("an active pull request");
        (pr["pullRequestId"].as_u64().expect("id"), place_of(&pr))
    }

    /// An active pull request closed with `status` (`completed`, `abandoned`) in the simulator.
    fn closed(&self, status: &str, skip: usize) -> (u64, Place) {
        let (id, place) = self.active_pull_request(skip);
        assert!(self.ado.set_pull_request_status(id, status));
        (id, place)
    }

    fn run(&self, action: &str, inputs: Value) -> String {
        self.port.create_action_run(action, inputs)
    }

    /// Waits for the run to end; the run and its logs.
    async fn ended(&self, id: &str) -> (Value, Vec<String>) {
        let reached = self
            .port
            .wait_for(
                |port| {
                    port.action_run(id)
                        .is_some_and(|run| run["status"] != "IN_PROGRESS")
                },
                WAIT,
            )
            .await;
        let run = self.port.action_run(id).expect("run exists");
        let logs = self.port.action_run_logs(id);
        assert!(reached, "run {id} never ended: {run}; logs {logs:?}");
        (run, logs)
    }

    async fn succeeded(&self, id: &str) -> Value {
        let (run, logs) = self.ended(id).await;
        assert_eq!(run["status"], "SUCCESS", "{run}; logs {logs:?}");
        run
    }

    /// Waits for the run to fail and checks that its logs hold every one of `expected`.
    async fn failed(&self, id: &str, expected: &[&str]) {
        let (run, logs) = self.ended(id).await;
        assert_eq!(run["status"], "FAILURE", "{run}; logs {logs:?}");
        for text in expected {
            assert!(
                logs.iter().any(|log| log.contains(text)),
                "{text:?} not in {logs:?}"
            );
        }
    }

    fn requests(&self, key: &str) -> u64 {
        self.ado.requests().get(key).copied().unwrap_or(0)
    }

    fn web_link(&self, place: &Place, id: u64) -> String {
        format!(
            "{}/{}/_git/{}/pullrequest/{id}",
            self.organization_url,
            place.project.replace(' ', "%20"),
            place.repository.replace(' ', "%20")
        )
    }
}

fn place_of(pr: &Value) -> Place {
    Place {
        project: pr["repository"]["project"]["name"]
            .as_str()
            .expect("project")
            .into(),
        repository: pr["repository"]["name"].as_str().expect("name").into(),
        repository_id: pr["repository"]["id"].as_str().expect("id").into(),
    }
}

fn reviewer_ids(pr: &Value) -> Vec<String> {
    pr["reviewers"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|r| r["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Every user id the simulated organization has (creators and reviewers of its pull requests).
fn user_ids(ado: &AdoSim) -> Vec<String> {
    let mut ids: Vec<String> = ado
        .pull_requests()
        .iter()
        .flat_map(|pr| {
            let mut ids = reviewer_ids(pr);
            ids.extend(pr["createdBy"]["id"].as_str().map(String::from));
            ids
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

#[tokio::test]
async fn create_pull_request_opens_one_the_listing_shows_and_a_duplicate_is_refused() {
    let h = harness().await;
    let (_, place) = h.active_pull_request(0);
    h.ado
        .push(
            &place.repository_id,
            "feature/from-port",
            vec![SimCommit::new(
                "Work for the action",
                vec![FileChange::put("docs/port.md", "# From Port\n")],
            )],
        )
        .expect("branch pushed");
    let reviewer = user_ids(&h.ado).remove(2);
    let inputs = json!({
        "project": place.project, "repository": place.repository,
        "sourceBranch": "feature/from-port", "title": "Add the Port page",
        "description": "Opened from Port", "reviewers": [reviewer],
    });
    let run = h.run("create_pull_request", inputs.clone());
    let done = h.succeeded(&run).await;

    let created = h
        .ado
        .pull_requests()
        .into_iter()
        .find(|pr| pr["title"] == "Add the Port page")
        .expect("the listing shows the new pull request");
    let id = created["pullRequestId"].as_u64().expect("id");
    assert_eq!(created["status"], "active");
    assert_eq!(created["sourceRefName"], "refs/heads/feature/from-port");
    assert_eq!(
        created["targetRefName"], "refs/heads/main",
        "the repository's default branch"
    );
    assert_eq!(created["description"], "Opened from Port");
    assert_eq!(reviewer_ids(&created), vec![reviewer]);
    assert_eq!(done["link"], h.web_link(&place, id));
    assert!(
        h.port
            .action_run_logs(&run)
            .iter()
            .any(|log| log.starts_with(&format!("Pull request {id} created"))),
        "{:?}",
        h.port.action_run_logs(&run)
    );

    let again = h.run("create_pull_request", inputs);
    h.failed(
        &again,
        &[
            "create_pull_request: Azure DevOps refused to create a pull request from refs/heads/feature/from-port into refs/heads/main",
            "(HTTP 409): TF401179: An active pull request for the source and target branch already exists.",
        ],
    )
    .await;
    assert_eq!(h.requests(CREATE_POST), 2, "each run sent its create once");
}

#[tokio::test]
async fn update_pull_request_changes_title_description_draft_and_reviewers() {
    let h = harness().await;
    let (id, place) = h.active_pull_request(0);
    let before = h.pull_request(id);
    let added = user_ids(&h.ado)
        .into_iter()
        .find(|u| !reviewer_ids(&before).contains(u))
        .expect("a user who is not a reviewer");
    let run = h.run(
        "update_pull_request",
        json!({"project": place.project, "repository": place.repository_id,
               "pullRequestId": id.to_string(), "title": "Renamed from Port",
               "description": "New words", "isDraft": true, "reviewers": added}),
    );
    let done = h.succeeded(&run).await;
    let after = h.pull_request(id);
    assert_eq!(after["title"], "Renamed from Port");
    assert_eq!(after["description"], "New words");
    assert_eq!(after["isDraft"], true);
    assert!(reviewer_ids(&after).contains(&added), "{after}");
    assert_eq!(
        reviewer_ids(&after).len(),
        reviewer_ids(&before).len() + 1,
        "reviewers are added, none removed"
    );
    assert_eq!(done["link"], h.web_link(&place, id));

    // A closed pull request cannot be edited: Azure DevOps' 409, reported as it said it.
    let (completed, place) = h.closed("completed", 1);
    let refused = h.run(
        "update_pull_request",
        json!({"project": place.project, "repository": place.repository,
               "pullRequestId": completed, "title": "Too late"}),
    );
    h.failed(
        &refused,
        &[
            &format!("update_pull_request: Azure DevOps refused to update pull request {completed} in repository '{}'", place.repository),
            "(HTTP 409): TF401181: The pull request cannot be edited due to its state.",
        ],
    )
    .await;
    let unknown = h.run(
        "update_pull_request",
        json!({"project": place.project, "repository": place.repository,
               "pullRequestId": 9999, "title": "x"}),
    );
    h.failed(
        &unknown,
        &[&format!(
            "update_pull_request: pull request 9999 was not found in repository '{}' of project '{}'; fix the \"pullRequestId\" input",
            place.repository, place.project
        )],
    )
    .await;
    let nothing = h.run(
        "update_pull_request",
        json!({"project": place.project, "repository": place.repository, "pullRequestId": id}),
    );
    h.failed(&nothing, &["update_pull_request: nothing to change"])
        .await;
    assert_ne!(h.pull_request(completed)["title"], "Too late");
}

#[tokio::test]
async fn complete_pull_request_merges_it_and_an_abandoned_one_is_refused() {
    let h = harness().await;
    let (id, place) = h.active_pull_request(0);
    let source = h.pull_request(id)["sourceRefName"]
        .as_str()
        .expect("source")
        .trim_start_matches("refs/heads/")
        .to_string();
    assert!(h.ado.branch_head(&place.repository_id, &source).is_some());
    let run = h.run(
        "complete_pull_request",
        json!({"project": place.project, "repository": place.repository, "pullRequestId": id,
               "mergeStrategy": "squash", "deleteSourceBranch": true,
               "mergeCommitMessage": "Merged from Port"}),
    );
    let done = h.succeeded(&run).await;
    let after = h.pull_request(id);
    assert_eq!(after["status"], "completed");
    assert!(after["closedDate"].is_string(), "{after}");
    assert_eq!(
        after["completionOptions"],
        json!({"mergeStrategy": "squash", "deleteSourceBranch": true,
               "transitionWorkItems": false, "mergeCommitMessage": "Merged from Port"})
    );
    assert_eq!(
        h.ado.branch_head(&place.repository_id, &source),
        None,
        "the source branch was deleted"
    );
    assert_eq!(done["link"], h.web_link(&place, id));

    let (other, place) = h.active_pull_request(0);
    assert!(h.ado.set_pull_request_status(other, "abandoned"));
    let refused = h.run(
        "complete_pull_request",
        json!({"project": place.project, "repository": place.repository, "pullRequestId": other}),
    );
    h.failed(
        &refused,
        &[
            &format!("complete_pull_request: Azure DevOps refused to complete pull request {other} in repository '{}' of project '{}' (it is abandoned) (HTTP 409)", place.repository, place.project),
            "TF401181: The pull request cannot be edited due to its state.",
        ],
    )
    .await;
    assert_eq!(h.pull_request(other)["status"], "abandoned");
    let strategy = h.run(
        "complete_pull_request",
        json!({"project": place.project, "repository": place.repository, "pullRequestId": other,
               "mergeStrategy": "octopus"}),
    );
    h.failed(
        &strategy,
        &["complete_pull_request: the \"mergeStrategy\" input must be one of noFastForward, squash, rebase, rebaseMerge, not \"octopus\""],
    )
    .await;
    assert_eq!(
        h.requests(UPDATE_PATCH),
        2,
        "the bad strategy never reached Azure DevOps"
    );
}

#[tokio::test]
async fn abandon_pull_request_closes_it_and_a_completed_one_is_refused() {
    let h = harness().await;
    let (id, place) = h.active_pull_request(1);
    let run = h.run(
        "abandon_pull_request",
        json!({"project": place.project, "repository": place.repository, "pullRequestId": id}),
    );
    let done = h.succeeded(&run).await;
    let after = h.pull_request(id);
    assert_eq!(after["status"], "abandoned");
    assert!(after["closedDate"].is_string(), "{after}");
    assert_eq!(done["link"], h.web_link(&place, id));
    assert!(
        h.port.action_run_logs(&run).contains(&format!(
            "Pull request {id} abandoned: {}",
            h.web_link(&place, id)
        )),
        "{:?}",
        h.port.action_run_logs(&run)
    );

    let (completed, place) = h.closed("completed", 1);
    let refused = h.run(
        "abandon_pull_request",
        json!({"project": place.project, "repository": place.repository, "pullRequestId": completed}),
    );
    h.failed(
        &refused,
        &[
            "abandon_pull_request: Azure DevOps refused to abandon",
            "(it is completed) (HTTP 409): TF401181",
        ],
    )
    .await;
    assert_eq!(h.pull_request(completed)["status"], "completed");
}

#[tokio::test]
async fn add_pull_request_comment_opens_a_thread() {
    let h = harness().await;
    let (id, place) = h.active_pull_request(0);
    let run = h.run(
        "add_pull_request_comment",
        json!({"project": place.project, "repository": place.repository, "pullRequestId": id,
               "comment": "Deployed to staging from Port.", "status": "closed"}),
    );
    let done = h.succeeded(&run).await;
    let threads = h.ado.pull_request_threads(id);
    assert_eq!(threads.len(), 1, "{threads:?}");
    assert_eq!(threads[0]["status"], "closed");
    assert_eq!(
        threads[0]["comments"][0]["content"],
        "Deployed to staging from Port."
    );
    assert_eq!(
        done["link"],
        format!("{}?discussionId=1", h.web_link(&place, id))
    );

    let empty = h.run(
        "add_pull_request_comment",
        json!({"project": place.project, "repository": place.repository, "pullRequestId": id,
               "comment": "  "}),
    );
    h.failed(
        &empty,
        &["add_pull_request_comment: the \"comment\" input is required"],
    )
    .await;
    assert_eq!(h.ado.pull_request_threads(id).len(), 1);
}

#[tokio::test]
async fn wrong_places_refused_credentials_and_lost_answers_fail_the_run_with_what_to_do() {
    let h = harness().await;
    let (_, place) = h.active_pull_request(0);
    let no_repository = h.run(
        "abandon_pull_request",
        json!({"project": place.project, "repository": "no-such-repo", "pullRequestId": 1}),
    );
    let no_project = h.run(
        "abandon_pull_request",
        json!({"project": "Nowhere", "repository": place.repository, "pullRequestId": 1}),
    );
    let missing = h.run("create_pull_request", json!({"project": place.project}));
    let no_branch = h.run(
        "create_pull_request",
        json!({"project": place.project, "repository": place.repository,
               "sourceBranch": "feature/never-pushed", "title": "x"}),
    );
    h.failed(
        &no_repository,
        &[&format!(
            "abandon_pull_request: repository \"no-such-repo\" was not found in project '{}'; the \"repository\" input takes a repository's name or id",
            place.project
        )],
    )
    .await;
    h.failed(
        &no_project,
        &["abandon_pull_request: project \"Nowhere\" was not found in acme"],
    )
    .await;
    h.failed(
        &missing,
        &["create_pull_request: the \"repository\" input is required"],
    )
    .await;
    h.failed(
        &no_branch,
        &["(HTTP 400): TF401398: The pull request cannot be activated because the source and/or the target branch no longer exists"],
    )
    .await;

    // No answer to the create: reported, never repeated.
    h.ado
        .fail_next(CREATE_POST, vec![ScriptedAnswer::status(503)]);
    let (_, place) = h.active_pull_request(1);
    h.ado
        .push(
            &place.repository_id,
            "feature/lost",
            vec![SimCommit::new("w", vec![FileChange::put("a.md", "a")])],
        )
        .expect("pushed");
    let posts = h.requests(CREATE_POST);
    let lost = h.run(
        "create_pull_request",
        json!({"project": place.project, "repository": place.repository,
               "sourceBranch": "feature/lost", "title": "Lost"}),
    );
    h.failed(
        &lost,
        &["not repeated automatically because it may have taken effect: check a pull request from refs/heads/feature/lost"],
    )
    .await;
    assert_eq!(
        h.requests(CREATE_POST),
        posts + 1,
        "a 503 create is never retried"
    );
}

#[tokio::test]
async fn a_refused_token_fails_the_run_and_names_the_setting() {
    let h = harness_with_pat("expired-pat").await;
    let run = h.run(
        "add_pull_request_comment",
        json!({"project": "project 0", "repository": "r", "pullRequestId": 1, "comment": "hi"}),
    );
    h.failed(
        &run,
        &[
            "add_pull_request_comment: could not look up project \"project 0\"",
            "Azure DevOps refused the personal access token",
            "OCEAN__INTEGRATION__CONFIG__PERSONAL_ACCESS_TOKEN",
        ],
    )
    .await;
}
