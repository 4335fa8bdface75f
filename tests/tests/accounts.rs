//! Multiple Accounts end to end (real RabbitMQ): a service principal of the simulated identity
//! platform reads two organizations of one Azure DevOps simulator; a mapping that puts
//! `__organizationName` in its identifiers lands each organization's entities; one failing
//! organization marks its kinds failed and deletes nothing while the other completes; webhooks
//! go to the organization they came from, and one from an unknown organization gets a 422.

use std::time::Duration;

use adoport::pipeline::{Pipeline, Roles};
use adoport_ingest::resync;
use adoport_shared::bus::Bus;
use adoport_shared::config::Settings;
use adoport_shared::messages::ResyncTrigger;
use adoport_shared::port_app_config::PortAppConfig;
use adoport_sim::ado::{AdoSim, AdoSimConfig};
use adoport_sim::port::{PortSim, PortSimConfig};
use adoport_sim::{IdentitySim, IdentitySimConfig, ScriptedAnswer};
use adoport_tests::{
    WEBHOOK_SECRET, amqp_url, basic_auth, crawl_settled, test_mapping, unique_prefix,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const PROJECT: &str = "azureDevopsProject";
const REPOSITORY: &str = "azureDevopsRepository";

/// The end-to-end mapping with the organization's name and `/` in front of every identifier
/// and relation: the simulated organizations are seeded alike, so their ids repeat. The name
/// is the last segment of `__organizationName`, which for the simulators' loopback URLs is the
/// whole organization URL (as the Python integration stamps any host but dev.azure.com and
/// visualstudio.com).
fn mapping_by_organization() -> Value {
    const NAME: &str = "(.__organizationName | split(\"/\") | last)";
    let mut mapping = test_mapping();
    for resource in mapping["resources"].as_array_mut().expect("resources") {
        let mappings = &mut resource["port"]["entity"]["mappings"];
        let identifier = mappings["identifier"].as_str().expect("identifier");
        mappings["identifier"] = json!(format!("{NAME} + \"/\" + ({identifier})"));
        if let Some(relations) = mappings["relations"].as_object_mut() {
            for relation in relations.values_mut() {
                let target = relation.as_str().expect("relation").to_string();
                *relation = json!(format!("{NAME} + \"/\" + ({target})"));
            }
        }
    }
    mapping
}

struct World {
    identity: IdentitySim,
    /// org-a: 2 projects × 2 repositories; org-b: 3 projects × 1 repository.
    a: AdoSim,
    b: AdoSim,
    port: PortSim,
    pipeline: Pipeline,
    bus: Bus,
    webhook_url: String,
}

async fn start(test: &str, listener_type: &str) -> World {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info,lapin=warn"))
        .with_test_writer()
        .try_init();
    let identity = IdentitySim::start(IdentitySimConfig::default())
        .await
        .expect("identity simulator");
    let organization = |name: &str, projects, repositories| AdoSimConfig {
        organization: name.to_string(),
        projects,
        repositories_per_project: repositories,
        bearer_tokens: Some(identity.tokens()),
        ..AdoSimConfig::default()
    };
    let mut organizations = AdoSim::start_organizations(vec![
        organization("org-a", 2, 2),
        organization("org-b", 3, 1),
    ])
    .await
    .expect("Azure DevOps simulator");
    let b = organizations.pop().expect("org-b");
    let a = organizations.pop().expect("org-a");
    let mapping_json = mapping_by_organization();
    let port = PortSim::start(PortSimConfig {
        integration_config: Some(mapping_json.clone()),
        ..PortSimConfig::default()
    })
    .await
    .expect("Port simulator");
    let port_config = PortSimConfig::default();
    let principal = identity.config();
    let vars: Vec<(String, String)> = [
        ("OCEAN__PORT__CLIENT_ID", port_config.client_id.clone()),
        (
            "OCEAN__PORT__CLIENT_SECRET",
            port_config.client_secret.clone(),
        ),
        ("OCEAN__PORT__BASE_URL", port.base_url()),
        (
            "OCEAN__INTEGRATION__IDENTIFIER",
            port_config.integration_identifier.clone(),
        ),
        (
            "OCEAN__INTEGRATION__CONFIG__ACCOUNT_MODE",
            "Multiple Accounts".into(),
        ),
        (
            "OCEAN__INTEGRATION__CONFIG__TENANT_ID",
            principal.tenant_id.clone(),
        ),
        (
            "OCEAN__INTEGRATION__CONFIG__CLIENT_ID",
            principal.client_id.clone(),
        ),
        (
            "OCEAN__INTEGRATION__CONFIG__CLIENT_SECRET",
            principal.client_secret.clone(),
        ),
        (
            "OCEAN__INTEGRATION__CONFIG__ORGANIZATION_URLS",
            format!("{},{}", a.organization_url(), b.organization_url()),
        ),
        ("AZURE_AUTHORITY_HOST", identity.authority_host()),
        (
            "OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET",
            WEBHOOK_SECRET.into(),
        ),
        ("OCEAN__EVENT_LISTENER__TYPE", listener_type.into()),
        ("ADOPORT__INGEST__LISTEN", "127.0.0.1:0".into()),
        ("ADOPORT__BROKER__URL", amqp_url()),
        ("ADOPORT__BROKER__PREFIX", unique_prefix(test)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let settings = Settings::from_vars(vars).expect("settings valid");
    let shutdown = CancellationToken::new();
    let bus = Bus::for_settings(&settings, shutdown.clone())
        .await
        .expect("RabbitMQ reachable (scripts/ensure-rabbitmq.sh starts it)");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mapping = PortAppConfig::from_json_value(mapping_json).expect("mapping parses");
    let pipeline = Pipeline::start(
        &settings,
        Roles::ALL,
        bus.clone(),
        Some(mapping),
        Some(listener),
        shutdown,
    )
    .await
    .expect("pipeline starts");
    let webhook_url = format!(
        "http://{}{}",
        pipeline.webhook_address.expect("ingest runs"),
        adoport_ingest::webhook::WEBHOOK_PATH
    );
    World {
        identity,
        a,
        b,
        port,
        pipeline,
        bus,
        webhook_url,
    }
}

impl World {
    /// Waits for the next crawl and for everything it produced to settle.
    async fn resync_settled(&mut self) -> adoport_ingest::CrawlReport {
        crawl_settled(&mut self.pipeline).await.1
    }

    /// Waits until Port has been told `count` resyncs ended with `status`.
    async fn reported(&self, status: &str, count: usize) {
        let states = |port: &PortSim| {
            port.resync_states()
                .iter()
                .filter(|s| s["status"] == status)
                .count()
        };
        assert!(
            self.port
                .wait_for(|p| states(p) >= count, Duration::from_secs(60))
                .await,
            "resync state {status} reported {count} time(s): {:?}",
            self.port.resync_states()
        );
    }

    /// Identifiers of `blueprint` in Port starting with `{organization}/`.
    fn identifiers(&self, blueprint: &str, organization: &str) -> Vec<String> {
        let prefix = format!("{organization}/");
        let mut ids: Vec<String> = self
            .port
            .entities(blueprint)
            .iter()
            .filter_map(|e| e["identifier"].as_str())
            .filter(|id| id.starts_with(&prefix))
            .map(String::from)
            .collect();
        ids.sort();
        ids
    }

    async fn stop(self) {
        self.pipeline.stop().await.expect("pipeline stops cleanly");
        self.bus.delete_topology().await.expect("cleanup");
        self.bus.close().await;
        self.a.shutdown().await;
        self.b.shutdown().await;
        self.port.shutdown().await;
        self.identity.shutdown().await;
    }
}

fn expected_ids(organization: &str, items: Vec<Value>) -> Vec<String> {
    let mut ids: Vec<String> = items
        .iter()
        .map(|i| format!("{organization}/{}", i["id"].as_str().expect("id")))
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn two_organizations_land_their_entities_and_one_failing_deletes_nothing() {
    let mut world = start("accounts-two-orgs", "POLLING").await;
    let report = world.resync_settled().await;
    assert!(report.failed_kinds().is_empty(), "{report:?}");
    world.reported("completed", 1).await;
    // Each organization's entities, told apart by `__organizationName`.
    for (sim, name) in [(&world.a, "org-a"), (&world.b, "org-b")] {
        assert_eq!(
            world.identifiers(PROJECT, name),
            expected_ids(name, sim.projects()),
            "{name} projects"
        );
        assert_eq!(
            world.identifiers(REPOSITORY, name),
            expected_ids(name, sim.repositories()),
            "{name} repositories"
        );
    }
    assert_eq!(world.port.entity_count(), 2 + 4 + 3 + 3);
    let repository = world.a.repositories()[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let related = world
        .port
        .entity(REPOSITORY, &format!("org-a/{repository}"))
        .expect("org-a repository");
    assert!(
        related["relations"]["project"]
            .as_str()
            .is_some_and(|p| p.starts_with("org-a/")),
        "{related}"
    );
    // One token for both organizations and every request.
    assert_eq!(world.identity.issued(), 1);

    // org-b refuses everything now; org-a changes: a renamed and a removed repository.
    world.b.fail_next(
        "GET /{org}/_apis/projects",
        vec![ScriptedAnswer::status(403); 5],
    );
    world.a.rename_repository(&repository, "renamed-in-org-a");
    let removed = world.a.repositories()[1]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert!(world.a.remove_repository(&removed));
    resync::request(&world.bus, ResyncTrigger::Manual)
        .await
        .expect("request");
    let report = world.resync_settled().await;
    // Every kind, GitOps specs (read from each repository on a resync) included.
    assert_eq!(
        report.failed_kinds(),
        vec!["gitops", "project", "repository"],
        "{report:?}"
    );
    let failure = report.kinds["project"].failure.clone().unwrap_or_default();
    assert!(failure.starts_with("organization org-b: "), "{failure}");
    assert!(!failure.contains("org-a"), "{failure}");
    world.reported("failed", 1).await;
    // org-a completed: its change lands (the failed state is reported once the crawl is
    // accounted for, which may be before publish has written every change).
    let key = format!("org-a/{repository}");
    let renamed = world
        .port
        .wait_for(
            |port| {
                port.entity(REPOSITORY, &key)
                    .is_some_and(|e| e["title"] == "renamed-in-org-a")
            },
            Duration::from_secs(30),
        )
        .await;
    assert!(renamed, "org-a's renamed repository reached Port");
    // Nothing was deleted: not org-b's entities, not org-a's removed repository.
    assert_eq!(world.port.entity_count(), 12);
    assert!(
        world
            .port
            .entity(REPOSITORY, &format!("org-a/{removed}"))
            .is_some()
    );
    world.stop().await;
}

/// A `git.repo.renamed` envelope as Azure DevOps sends it from `organization_url`.
fn renamed_event(organization_url: &str, repository_id: &str) -> Value {
    json!({
        "subscriptionId": "00000000-0000-0000-0000-00000000a001",
        "notificationId": 7,
        "id": format!("renamed-{repository_id}-{organization_url}"),
        "eventType": "git.repo.renamed",
        "publisherId": "tfs",
        "message": {"text": "A repository was renamed."},
        "resource": {"repository": {"id": repository_id, "name": "old"}},
        "resourceVersion": "1.0",
        "resourceContainers": {
            "collection": {"id": "c", "baseUrl": format!("{organization_url}/")},
            "account": {"id": "a", "baseUrl": format!("{organization_url}/")},
            "project": {"id": "p", "baseUrl": format!("{organization_url}/")}
        },
        "createdDate": "2026-03-01T09:00:00Z",
    })
}

#[tokio::test]
async fn webhooks_go_to_the_organization_they_came_from() {
    let mut world = start("accounts-webhooks", "POLLING").await;
    world.resync_settled().await;
    // The simulated organizations are seeded alike: the same repository id exists in both.
    let repository = world.b.repositories()[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    world.b.rename_repository(&repository, "renamed-in-org-b");
    let http = reqwest::Client::new();
    let send = |body: Value| {
        http.post(&world.webhook_url)
            .header("Authorization", basic_auth(WEBHOOK_SECRET))
            .json(&body)
            .send()
    };
    let answer = send(renamed_event(&world.b.organization_url(), &repository))
        .await
        .expect("answered");
    assert_eq!(answer.status().as_u16(), 200);
    let key = "GET /{org}/_apis/git/repositories/{repository}";
    assert_eq!(
        world.b.requests().get(key).copied(),
        Some(1),
        "read from org-b"
    );
    assert_eq!(world.a.requests().get(key), None, "org-a not asked");
    let renamed = world
        .port
        .wait_for(
            |p| {
                p.entity(REPOSITORY, &format!("org-b/{repository}"))
                    .is_some_and(|e| e["title"] == "renamed-in-org-b")
            },
            Duration::from_secs(30),
        )
        .await;
    assert!(renamed, "org-b's repository renamed in Port");
    assert_ne!(
        world
            .port
            .entity(REPOSITORY, &format!("org-a/{repository}"))
            .expect("org-a's twin")["title"],
        "renamed-in-org-b"
    );

    // An organization this integration does not read: 422, naming the URL it saw.
    let stranger = format!("{}/org-z", world.a.base_url());
    let answer = send(renamed_event(&stranger, &repository))
        .await
        .expect("answered");
    assert_eq!(answer.status().as_u16(), 422);
    let body: Value = answer.json().await.expect("json");
    let error = body["error"].as_str().expect("error");
    assert!(error.contains(&format!("{stranger}/")), "{error}");
    assert!(error.contains(&world.a.organization_url()), "{error}");
    assert_eq!(world.a.requests().get(key), None);
    world.stop().await;
}
