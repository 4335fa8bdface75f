//! The subscription manager against the Azure DevOps simulator: the expected set is created
//! once, a second start creates nothing, a disabled subscription is re-enabled, org-wide mode,
//! and a failed lookup creates nothing.

use adoport_ingest::ado::AdoClient;
use adoport_ingest::subscriptions::{EVENT_TYPES, SubscriptionPlan, ensure};
use adoport_shared::config::{AzureDevopsAccess, Secret};
use adoport_sim::ScriptedAnswer;
use adoport_sim::ado::{AdoSim, AdoSimConfig};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const URL: &str = "https://adoport.example/integration/webhook";

async fn start() -> (AdoSim, AdoClient) {
    let sim = AdoSim::start(AdoSimConfig::default())
        .await
        .expect("simulator starts");
    let access = AzureDevopsAccess {
        organization_url: sim.organization_url(),
        personal_access_token: Secret::new("sim-pat"),
        timeout_secs: 10,
        network: Default::default(),
    };
    let client = AdoClient::new(&access, 8, CancellationToken::new()).expect("client");
    (sim, client)
}

fn plan(per_project: bool) -> SubscriptionPlan {
    SubscriptionPlan {
        target_url: URL.to_string(),
        basic_auth: Some(("port".to_string(), Secret::new("hook-secret"))),
        per_project,
    }
}

#[tokio::test]
async fn creates_the_expected_set_once_per_project() {
    let (sim, client) = start().await;
    let first = ensure(&client, &plan(true)).await.expect("ensure");
    let expected = 3 * EVENT_TYPES.len();
    assert_eq!(first.created, expected, "{first:?}");
    assert!(first.failures.is_empty());
    let subscriptions = sim.subscriptions();
    assert_eq!(subscriptions.len(), expected);
    let projects: Vec<String> = sim
        .projects()
        .iter()
        .filter_map(|p| p["id"].as_str().map(String::from))
        .collect();
    for event_type in EVENT_TYPES {
        for project in &projects {
            let found = subscriptions
                .iter()
                .filter(|s| {
                    s["eventType"] == *event_type
                        && s["publisherInputs"]["projectId"] == project.as_str()
                })
                .collect::<Vec<_>>();
            assert_eq!(found.len(), 1, "{event_type} in {project}");
            let s = found[0];
            assert_eq!(s["publisherId"], "tfs");
            assert_eq!(s["consumerId"], "webHooks");
            assert_eq!(s["consumerInputs"]["url"], URL);
            assert_eq!(s["consumerInputs"]["basicAuthUsername"], "port");
            assert_eq!(s["consumerInputs"]["basicAuthPassword"], "hook-secret");
        }
    }

    // A second start finds them all and creates nothing.
    let second = ensure(&client, &plan(true)).await.expect("ensure again");
    assert_eq!((second.created, second.kept), (0, expected), "{second:?}");
    assert_eq!(sim.subscriptions().len(), expected);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_disabled_subscription_is_re_enabled_not_duplicated() {
    let (sim, client) = start().await;
    ensure(&client, &plan(true)).await.expect("ensure");
    let total = sim.subscriptions().len();
    let victim = sim.subscriptions()[4]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert!(sim.set_subscription_status(&victim, "disabledBySystem"));
    let report = ensure(&client, &plan(true)).await.expect("ensure");
    assert_eq!((report.created, report.reenabled), (0, 1), "{report:?}");
    let subscriptions = sim.subscriptions();
    assert_eq!(subscriptions.len(), total);
    let repaired = subscriptions
        .iter()
        .find(|s| s["id"] == victim.as_str())
        .expect("still there");
    assert_eq!(repaired["status"], "enabled");
    assert_eq!(repaired["consumerInputs"]["url"], URL);
    sim.shutdown().await;
}

#[tokio::test]
async fn not_projects_limited_means_one_org_wide_subscription_per_event_type() {
    let (sim, client) = start().await;
    let report = ensure(&client, &plan(false)).await.expect("ensure");
    assert_eq!(report.created, EVENT_TYPES.len());
    let subscriptions = sim.subscriptions();
    assert_eq!(subscriptions.len(), EVENT_TYPES.len());
    assert!(
        subscriptions
            .iter()
            .all(|s| s["publisherInputs"].get("projectId").is_none())
    );
    // No project list is needed org-wide.
    assert_eq!(sim.requests().get("GET /{org}/_apis/projects"), None);
    // A subscription of another deployment (other URL) is no match and is left alone.
    let other = SubscriptionPlan {
        target_url: "https://other.example/integration/webhook".into(),
        basic_auth: None,
        per_project: false,
    };
    let report = ensure(&client, &other).await.expect("ensure");
    assert_eq!(report.created, EVENT_TYPES.len());
    assert_eq!(sim.subscriptions().len(), 2 * EVENT_TYPES.len());
    assert!(
        sim.subscriptions()
            .iter()
            .filter(|s| s["consumerInputs"]["url"] == "https://other.example/integration/webhook")
            .all(|s| s["consumerInputs"].get("basicAuthPassword").is_none())
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_failed_lookup_creates_nothing() {
    let (sim, client) = start().await;
    sim.fail_next(
        "GET /{org}/_apis/hooks/subscriptions",
        vec![ScriptedAnswer::status(400)],
    );
    let error = ensure(&client, &plan(true))
        .await
        .expect_err("lookup failure is reported");
    assert!(error.to_string().contains("400"), "{error}");
    assert_eq!(sim.subscriptions(), Vec::<Value>::new());
    sim.shutdown().await;
}
