//! The subscription manager against the Azure DevOps simulator: the expected set is created
//! once, a second start creates nothing, a disabled subscription is re-enabled, org-wide mode,
//! a failed lookup creates nothing, each publisher on its own host (through a proxy that
//! reaches the simulator as `dev.azure.com`), a changed password replaces the subscriptions,
//! the periodic check repairs a disabled one and subscribes a new project, and a kind added
//! to the mapping gets its subscriptions without a restart.

use std::time::Duration;

use adoport_ingest::ado::AdoClient;
use adoport_ingest::subscriptions::{SubscriptionPlan, ensure, hook_events, run};
use adoport_shared::config::{AzureDevopsAccess, NetworkSettings, ProxySetting, Secret};
use adoport_shared::mapping_versions::{MappingVersions, Offer};
use adoport_shared::port_app_config::{PortAppConfig, minimal_json};
use adoport_sim::ScriptedAnswer;
use adoport_sim::ado::{AdoSim, AdoSimConfig};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

mod support;

use support::{client_with_pat, text};

const URL: &str = "https://adoport.example/integration/webhook";

async fn start() -> (AdoSim, AdoClient) {
    let sim = AdoSim::start(AdoSimConfig::default())
        .await
        .expect("simulator starts");
    let client = client_with_pat(&sim, "sim-pat", &CancellationToken::new());
    (sim, client)
}

fn mapping(kinds: &[&str]) -> MappingVersions {
    MappingVersions::new(PortAppConfig::from_json_value(minimal_json(kinds)).expect("mapping"))
}

/// Every kind some event type updates: the whole set is subscribed.
fn every_kind() -> MappingVersions {
    let mut kinds: Vec<&str> = hook_events()
        .iter()
        .flat_map(|e| e.kinds.iter().map(|k| k.name()))
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    mapping(&kinds)
}

/// [`start`], with the per-project set created; how many subscriptions that is.
async fn start_subscribed() -> (AdoSim, AdoClient, usize) {
    let (sim, client) = start().await;
    ensure(&client, &plan(true)).await.expect("ensure");
    let total = sim.subscriptions().len();
    (sim, client, total)
}

/// Disables the `index`th subscription of `sim` as Azure DevOps does; its id.
fn disable(sim: &AdoSim, index: usize) -> String {
    let victim = text(&sim.subscriptions()[index], "/id");
    assert!(sim.set_subscription_status(&victim, "disabledBySystem"));
    victim
}

fn plan(per_project: bool) -> SubscriptionPlan {
    plan_with_secret(per_project, "hook-secret")
}

fn plan_with_secret(per_project: bool, secret: &str) -> SubscriptionPlan {
    SubscriptionPlan {
        target_url: URL.to_string(),
        basic_auth: Some(("port".to_string(), Secret::new(secret))),
        per_project,
        events: hook_events(),
    }
}

#[tokio::test]
async fn creates_the_expected_set_once_per_project() {
    let (sim, client) = start().await;
    let first = ensure(&client, &plan(true)).await.expect("ensure");
    let expected = 3 * hook_events().len();
    assert_eq!(first.created, expected, "{first:?}");
    assert!(first.failures.is_empty());
    let subscriptions = sim.subscriptions();
    assert_eq!(subscriptions.len(), expected);
    let projects: Vec<String> = sim
        .projects()
        .iter()
        .filter_map(|p| p["id"].as_str().map(String::from))
        .collect();
    for event in hook_events() {
        for project in &projects {
            let found = subscriptions
                .iter()
                .filter(|s| {
                    s["eventType"] == event.event_type
                        && s["publisherInputs"]["projectId"] == project.as_str()
                })
                .collect::<Vec<_>>();
            assert_eq!(found.len(), 1, "{} in {project}", event.event_type);
            let s = found[0];
            assert_eq!(s["publisherId"], event.publisher);
            assert_eq!(s["consumerId"], "webHooks");
            let url = s["consumerInputs"]["url"].as_str().expect("url");
            assert!(url.starts_with(&format!("{URL}?auth=")), "{url}");
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
    let (sim, client, total) = start_subscribed().await;
    let victim = disable(&sim, 4);
    let report = ensure(&client, &plan(true)).await.expect("ensure");
    assert_eq!((report.created, report.reenabled), (0, 1), "{report:?}");
    let subscriptions = sim.subscriptions();
    assert_eq!(subscriptions.len(), total);
    let repaired = subscriptions
        .iter()
        .find(|s| s["id"] == victim.as_str())
        .expect("still there");
    assert_eq!(repaired["status"], "enabled");
    assert_eq!(
        repaired["consumerInputs"]["url"],
        plan(true).subscribed_url().as_str()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn not_projects_limited_means_one_org_wide_subscription_per_event_type() {
    let (sim, client) = start().await;
    let report = ensure(&client, &plan(false)).await.expect("ensure");
    assert_eq!(report.created, hook_events().len());
    let subscriptions = sim.subscriptions();
    assert_eq!(subscriptions.len(), hook_events().len());
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
        events: hook_events(),
    };
    let report = ensure(&client, &other).await.expect("ensure");
    assert_eq!(report.created, hook_events().len());
    assert_eq!(sim.subscriptions().len(), 2 * hook_events().len());
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

/// A client of `http://dev.azure.com/acme` whose requests all reach the simulator through an
/// HTTP proxy, so that the simulator sees the Azure DevOps Services host names
/// (`dev.azure.com`, `vsrm.dev.azure.com`, `advsec.dev.azure.com`).
async fn start_as_azure_devops_services() -> (AdoSim, AdoClient) {
    let sim = AdoSim::start(AdoSimConfig::default())
        .await
        .expect("simulator starts");
    let access = AzureDevopsAccess {
        organization_url: "http://dev.azure.com/acme".to_string(),
        personal_access_token: Secret::new("sim-pat"),
        timeout_secs: 10,
        network: NetworkSettings {
            http_proxy: Some(ProxySetting {
                variable: "HTTP_PROXY".into(),
                url: sim.base_url(),
            }),
            ..Default::default()
        },
    };
    let client = AdoClient::new(&access, 8, CancellationToken::new()).expect("client");
    (sim, client)
}

fn host_of(subscription: &Value) -> String {
    let url = subscription["url"].as_str().unwrap_or_default();
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn each_publisher_is_subscribed_and_found_again_on_its_own_host() {
    let (sim, client) = start_as_azure_devops_services().await;
    let first = ensure(&client, &plan(false)).await.expect("ensure");
    assert_eq!(first.created, hook_events().len(), "{first:?}");
    assert!(first.failures.is_empty(), "{first:?}");
    for subscription in sim.subscriptions() {
        let expected = match subscription["publisherId"].as_str() {
            Some("rm") => "vsrm.dev.azure.com",
            Some("advsec") => "advsec.dev.azure.com",
            _ => "dev.azure.com",
        };
        assert_eq!(host_of(&subscription), expected, "{subscription}");
        // Azure DevOps marks org-level subscriptions (PR #3778): they must still match.
        assert!(subscription["publisherInputs"]["tfsSubscriptionId"].is_string());
    }
    // A second start finds every one on its host (PR #3997: `rm` is only listed on vsrm).
    let second = ensure(&client, &plan(false)).await.expect("ensure again");
    assert_eq!(
        (second.created, second.replaced, second.kept),
        (0, 0, hook_events().len()),
        "{second:?}"
    );
    assert_eq!(sim.subscriptions().len(), hook_events().len());
    assert_eq!(
        sim.requests()
            .get("GET /{org}/_apis/hooks/subscriptions")
            .copied(),
        Some(2 * hook_events().len() as u64)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_changed_password_replaces_the_subscriptions_once() {
    let (sim, client, total) = start_subscribed().await;
    // The API answers passwords masked; the URL's fingerprint is what tells them apart.
    let rotated = plan_with_secret(true, "rotated-secret");
    let report = ensure(&client, &rotated).await.expect("ensure rotated");
    assert_eq!(
        (report.created, report.replaced, report.kept),
        (0, total, 0),
        "{report:?}"
    );
    let subscriptions = sim.subscriptions();
    assert_eq!(subscriptions.len(), total);
    assert!(subscriptions.iter().all(|s| {
        s["consumerInputs"]["basicAuthPassword"] == "rotated-secret"
            && s["consumerInputs"]["url"] == rotated.subscribed_url().as_str()
    }));
    let again = ensure(&client, &rotated).await.expect("ensure again");
    assert_eq!((again.replaced, again.kept), (0, total), "{again:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn the_periodic_check_re_enables_a_disabled_one_and_subscribes_a_new_project() {
    let (sim, client) = start().await;
    let per_project = hook_events().len();
    let shutdown = CancellationToken::new();
    let checks = tokio::spawn(run(
        client,
        plan(true),
        every_kind(),
        Some(Duration::from_millis(200)),
        shutdown.clone(),
    ));
    assert!(
        sim.wait_for(
            |s| s.subscriptions().len() == 3 * per_project,
            Duration::from_secs(20)
        )
        .await,
        "start-up check creates the set"
    );
    disable(&sim, 7);
    let project = sim.add_project("project-new");
    let repaired = sim
        .wait_for(
            |s| {
                let subscriptions = s.subscriptions();
                subscriptions.len() == 4 * per_project
                    && subscriptions.iter().all(|x| x["status"] == "enabled")
                    && subscriptions
                        .iter()
                        .filter(|x| x["publisherInputs"]["projectId"] == project.as_str())
                        .count()
                        == per_project
            },
            Duration::from_secs(20),
        )
        .await;
    assert!(repaired, "{:?}", sim.subscriptions().len());
    shutdown.cancel();
    checks.await.expect("checks stop on shutdown");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_kind_added_to_the_mapping_gets_its_subscriptions_without_a_restart() {
    let (sim, client) = start().await;
    let versions = mapping(&["project"]);
    let shutdown = CancellationToken::new();
    // No periodic check: only the mapping change can add the new event types.
    let checks = tokio::spawn(run(
        client,
        plan(false),
        versions.clone(),
        None,
        shutdown.clone(),
    ));
    let event_types = |s: &AdoSim| {
        let mut types: Vec<String> = s
            .subscriptions()
            .iter()
            .filter_map(|x| x["eventType"].as_str().map(String::from))
            .collect();
        types.sort();
        types
    };
    assert!(
        sim.wait_for(|s| s.subscriptions().len() == 2, Duration::from_secs(20))
            .await,
        "the kinds-independent pair first: {:?}",
        event_types(&sim)
    );
    assert!(matches!(
        versions.offer(minimal_json(&["project", "work-item"]), |_| Ok(())),
        Offer::Replaced { .. }
    ));
    let work_item_events = hook_events()
        .iter()
        .filter(|e| e.kinds.iter().any(|k| k.name() == "work-item"))
        .count();
    assert!(
        sim.wait_for(
            |s| s.subscriptions().len() == 2 + work_item_events,
            Duration::from_secs(20)
        )
        .await,
        "the work-item event types were subscribed: {:?}",
        event_types(&sim)
    );
    assert!(event_types(&sim).contains(&"workitem.updated".to_string()));
    shutdown.cancel();
    checks.await.expect("checks stop on shutdown");
    sim.shutdown().await;
}
