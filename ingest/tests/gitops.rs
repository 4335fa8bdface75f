//! GitOps through the webhook receiver against the Azure DevOps simulator's Git content: a
//! push that adds, changes and removes entities of `port.yml` (with a `file://` property), a
//! multi-commit push over a list of spec paths, a broken spec, and a push to another branch.

use std::time::Duration;

use adoport_ingest::plan::GitopsPlan;
use adoport_shared::bus::{Bus, Subscription};
use adoport_shared::messages::{GITOPS_KIND, RawAction, RawEvent, decode};
use adoport_shared::port_app_config::PortAppConfig;
use adoport_shared::topology::{Topology, WorkQueue};
use adoport_sim::ado::{AdoSim, AdoSimConfig, FileChange, SimCommit};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

mod support;

use support::{StopOnDrop, client_with_pat, serve_receiver};

struct Harness {
    ado: AdoSim,
    raw: Subscription,
    webhook_url: String,
    repository: String,
    _shutdown: StopOnDrop,
}

async fn harness(mapping: &str) -> Harness {
    let ado = AdoSim::start(AdoSimConfig::default()).await.expect("ado");
    let shutdown = CancellationToken::new();
    let client = client_with_pat(&ado, "sim-pat", &shutdown);
    let bus = Bus::memory(Topology::new("gitops.", 1), shutdown.clone());
    let raw = bus.subscribe(WorkQueue::Raw, 256).await.expect("subscribe");
    let config = PortAppConfig::from_yaml_str(mapping).expect("mapping");
    let plan = GitopsPlan::kind_plan(&config).into_iter().collect();
    let webhook_url = serve_receiver(bus, &client, None, plan, &shutdown).await;
    let repository = ado
        .repositories()
        .into_iter()
        .find(|r| r["defaultBranch"] == "refs/heads/main")
        .and_then(|r| r["id"].as_str().map(String::from))
        .expect("a repository with a main branch");
    Harness {
        ado,
        raw,
        webhook_url,
        repository,
        _shutdown: StopOnDrop(shutdown),
    }
}

/// The GitOps raw events a push produced: (action, items).
type GitopsEvents = Vec<(RawAction, Vec<Value>)>;

impl Harness {
    /// Pushes one commit, `message` with `changes`, to `branch`: see [`Harness::push`].
    async fn commit(
        &mut self,
        branch: &str,
        message: &str,
        changes: Vec<FileChange>,
    ) -> GitopsEvents {
        self.push(branch, vec![SimCommit::new(message, changes)])
            .await
    }

    /// Commits [`SPEC_V1`] as `port.yml`, with `checkout_config` as the file it names, to
    /// `main`: see [`Harness::push`].
    async fn commit_spec_v1(&mut self, message: &str, checkout_config: &str) -> GitopsEvents {
        let changes = vec![
            FileChange::put("port.yml", SPEC_V1),
            FileChange::put("docs/checkout.json", checkout_config),
        ];
        self.commit("main", message, changes).await
    }

    /// Pushes `commits` to `branch`, delivers the `git.push` hook and returns the GitOps raw
    /// events it produced (the receiver publishes them before it answers).
    async fn push(&mut self, branch: &str, commits: Vec<SimCommit>) -> GitopsEvents {
        let pushed = self
            .ado
            .push(&self.repository, branch, commits)
            .expect("push");
        let status = reqwest::Client::new()
            .post(&self.webhook_url)
            .json(&pushed.webhook)
            .send()
            .await
            .expect("webhook answered")
            .status();
        assert_eq!(status.as_u16(), 200);
        let mut events = Vec::new();
        // Everything was published before the 200: drain what is queued.
        while let Ok(Some(delivery)) =
            tokio::time::timeout(Duration::from_millis(300), self.raw.next()).await
        {
            let event: RawEvent = decode(&delivery.body).expect("raw event");
            delivery.ack().await.expect("ack");
            if event.kind == GITOPS_KIND {
                events.push((event.action, event.items));
            }
        }
        events
    }
}

fn identifiers(events: &GitopsEvents, action: RawAction) -> Vec<String> {
    let mut ids: Vec<String> = events
        .iter()
        .filter(|(a, _)| *a == action)
        .flat_map(|(_, items)| items.iter())
        .filter_map(|item| item["identifier"].as_str().map(String::from))
        .collect();
    ids.sort();
    ids
}

/// The identifiers `events` upsert and those they delete.
fn upserted_and_deleted(events: &GitopsEvents) -> [Vec<String>; 2] {
    [
        identifiers(events, RawAction::Upsert),
        identifiers(events, RawAction::Delete),
    ]
}

const SPEC_V1: &str = "
- identifier: checkout
  blueprint: service
  title: Checkout
  properties:
    tier: gold
    config: file://docs/checkout.json
- identifier: payments
  blueprint: service
  properties:
    tier: silver
";

const SPEC_V2: &str = "
- identifier: checkout
  blueprint: service
  title: Checkout service
  properties:
    tier: gold
    config: file://docs/checkout.json
- identifier: search
  blueprint: service
  properties:
    tier: bronze
";

#[tokio::test]
async fn a_push_adds_changes_and_removes_spec_entities() {
    let mut h = harness("resources: []\n").await;
    let first = h.commit_spec_v1("add port.yml", r#"{"replicas": 3}"#).await;
    assert_eq!(
        identifiers(&first, RawAction::Upsert),
        ["checkout", "payments"]
    );
    assert!(identifiers(&first, RawAction::Delete).is_empty());
    let checkout = first
        .iter()
        .flat_map(|(_, items)| items)
        .find(|i| i["identifier"] == "checkout")
        .expect("checkout");
    assert_eq!(
        checkout["properties"]["config"],
        json!({"replicas": 3}),
        "file:// .json values are parsed at the pushed commit"
    );

    let second = h
        .commit(
            "main",
            "rename checkout, drop payments, add search",
            vec![FileChange::put("port.yml", SPEC_V2)],
        )
        .await;
    assert_eq!(
        upserted_and_deleted(&second),
        [vec!["checkout", "search"], vec!["payments"]],
        "new and changed entities only"
    );
    let deleted = second
        .iter()
        .find(|(a, _)| *a == RawAction::Delete)
        .expect("delete event");
    assert_eq!(
        deleted.1,
        vec![json!({"blueprint": "service", "identifier": "payments"})]
    );

    // A push to another branch is not the tracked one.
    let elsewhere = h
        .commit(
            "feature/x",
            "remove spec on a branch",
            vec![FileChange::delete("port.yml")],
        )
        .await;
    assert!(elsewhere.is_empty(), "{elsewhere:?}");
}

#[tokio::test]
async fn every_commit_of_a_push_and_every_spec_path_counts() {
    let mut h = harness("resources: []\nspecPath: [port.yml, teams/port.yml]\n").await;
    h.commit_spec_v1("specs", r#"{"replicas": 3}"#).await;
    let pushed = h
        .push(
            "main",
            vec![
                SimCommit::new(
                    "a team spec",
                    vec![FileChange::put(
                        "teams/port.yml",
                        "identifier: platform\nblueprint: team\n",
                    )],
                ),
                SimCommit::new(
                    "more replicas",
                    vec![FileChange::put("docs/checkout.json", r#"{"replicas": 5}"#)],
                ),
                SimCommit::new(
                    "payments moves out",
                    vec![FileChange::put(
                        "port.yml",
                        "- identifier: checkout\n  blueprint: service\n  title: Checkout\n  properties:\n    tier: gold\n    config: file://docs/checkout.json\n",
                    )],
                ),
            ],
        )
        .await;
    assert_eq!(
        upserted_and_deleted(&pushed),
        [vec!["checkout", "platform"], vec!["payments"]],
        "the file:// change of the second commit and the spec of the first both count"
    );
}

#[tokio::test]
async fn a_broken_spec_is_reported_and_changes_nothing() {
    let mut h = harness("resources: []\n").await;
    h.commit_spec_v1("spec", "{}").await;
    let broken = h
        .commit(
            "main",
            "oops",
            vec![FileChange::put("port.yml", "- identifier: [unclosed\n")],
        )
        .await;
    assert_eq!(broken.len(), 1, "only the report: {broken:?}");
    let (action, items) = &broken[0];
    assert_eq!(*action, RawAction::Upsert);
    // The wire shape archived raw events keep.
    let report = &items[0]["__gitopsSpecError"];
    assert_eq!(report["path"], "port.yml");
    assert_eq!(report["repositoryId"], h.repository.as_str());
    assert_eq!(
        report["commit"].as_str().map(str::len),
        Some(40),
        "{report}"
    );
    assert!(
        !report["error"].as_str().unwrap_or_default().is_empty(),
        "{report}"
    );
}
