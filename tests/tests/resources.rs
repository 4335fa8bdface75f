//! First start against the Port simulator (`OCEAN__INITIALIZE_PORT_RESOURCES`): the default
//! blueprints are created in three stages only when none exists, the integration with the
//! default mapping only when it is missing, and nothing the user has is overwritten; the
//! integration record is brought up to date as the Python integration does on every start.
//! With the blueprints come the default scorecards and pages, as Ocean's default setup
//! creates them.

use adoport_publish::client::{COMPATIBLE_INTEGRATION_VERSION, PortClient, exporter_user_agent};
use adoport_publish::integration_record::IntegrationRecord;
use adoport_publish::resources::{
    default_blueprints, default_presentation, initialize, update_record,
};
use adoport_shared::config::{PortAccess, Secret};
use adoport_sim::ScriptedAnswer;
use adoport_sim::port::{PortSim, PortSimConfig};
use serde_json::{Value, json};

const INTEGRATION: &str = "azure-devops";

fn client(port: &PortSim) -> PortClient {
    let access = PortAccess {
        base_url: port.base_url(),
        client_id: "sim-client".into(),
        client_secret: Secret::new("sim-secret"),
        integration_identifier: INTEGRATION.into(),
        integration_type: "azure-devops".into(),
        timeout_secs: 5,
        network: Default::default(),
    };
    PortClient::new(
        &access,
        exporter_user_agent(COMPATIBLE_INTEGRATION_VERSION, INTEGRATION),
    )
    .expect("client")
}

/// The Port simulator with the integration installed with `integration_config` as its
/// mapping, or not installed (`None`).
async fn port_with(integration_config: Option<Value>) -> PortSim {
    PortSim::start(PortSimConfig {
        integration_config,
        ..PortSimConfig::default()
    })
    .await
    .expect("simulator")
}

/// A mapping the user wrote (not the default one).
fn user_mapping() -> Value {
    json!({"resources": [{"kind": "project", "selector": {"query": "true"},
        "port": {"entity": {"mappings": {"identifier": ".id", "blueprint": "\"mine\""}}}}]})
}

fn record() -> IntegrationRecord {
    IntegrationRecord::default()
}

/// The start-up `PATCH /v1/integration/{id}` body of the Python integration (Ocean 0.48.12)
/// for the default settings, with adoport's version and processing mode.
fn expected_update() -> Value {
    json!({
        "installationAppType": "azure-devops",
        "changelogDestination": {},
        "actionsProcessingEnabled": false,
        "incrementalSyncEnabled": false,
        "processingMode": "ocean-core",
        "version": COMPATIBLE_INTEGRATION_VERSION,
        "arePortResourcesInitialized": true,
    })
}

fn count(port: &PortSim, route: &str) -> u64 {
    port.requests().get(route).copied().unwrap_or(0)
}

#[tokio::test]
async fn an_empty_port_gets_the_default_blueprints_and_mapping_once() {
    let port = port_with(None).await;
    assert!(port.integration(INTEGRATION).is_none());
    let client = client(&port);
    let defaults = default_blueprints().expect("defaults");

    let done = initialize(&client, INTEGRATION, &record())
        .await
        .expect("initialize");
    assert_eq!(done.blueprints_created.len(), defaults.len());
    assert!(done.integration_created);
    // Three stages: every blueprint bare, then the relations of those that have any, then
    // every full body.
    let with_relations = defaults
        .iter()
        .filter(|b| b["relations"].as_object().is_some_and(|r| !r.is_empty()))
        .count() as u64;
    assert!(with_relations > 0);
    assert_eq!(count(&port, "POST /v1/blueprints"), defaults.len() as u64);
    assert_eq!(
        count(&port, "PATCH /v1/blueprints/{bp}"),
        with_relations + defaults.len() as u64
    );
    for blueprint in &defaults {
        let identifier = blueprint["identifier"].as_str().expect("identifier");
        let stored = client
            .blueprint(identifier)
            .await
            .expect("read")
            .expect("created");
        for field in [
            "title",
            "schema",
            "relations",
            "mirrorProperties",
            "calculationProperties",
            "aggregationProperties",
        ] {
            assert_eq!(stored[field], blueprint[field], "{field} of {identifier}");
        }
    }
    let integration = port.integration(INTEGRATION).expect("integration created");
    let resources = integration["config"]["resources"]
        .as_array()
        .expect("default mapping as config");
    assert!(resources.iter().any(|r| r["kind"] == "repository"));

    // A second start creates nothing.
    let again = initialize(&client, INTEGRATION, &record())
        .await
        .expect("initialize");
    assert!(again.blueprints_created.is_empty());
    assert!(!again.integration_created);
    assert_eq!(count(&port, "POST /v1/blueprints"), defaults.len() as u64);
    assert_eq!(count(&port, "POST /v1/integration"), 1);
    port.shutdown().await;
}

#[tokio::test]
async fn replicas_starting_together_all_start_and_leave_the_full_defaults() {
    // A first deployment with several publish replicas: they race through the same creations.
    // Each must start (a 409 means another one created it), and Port ends with every default
    // blueprint in full and one integration.
    let port = port_with(None).await;
    let replicas: Vec<PortClient> = (0..4).map(|_| client(&port)).collect();
    let record = record();
    let (a, b, c, d) = tokio::join!(
        initialize(&replicas[0], INTEGRATION, &record),
        initialize(&replicas[1], INTEGRATION, &record),
        initialize(&replicas[2], INTEGRATION, &record),
        initialize(&replicas[3], INTEGRATION, &record),
    );
    let outcomes = [a, b, c, d];
    let defaults = default_blueprints().expect("defaults");
    let mut created = Vec::new();
    let mut integrations_created = 0;
    for outcome in outcomes {
        let done = outcome.expect("every replica starts");
        created.extend(done.blueprints_created);
        integrations_created += usize::from(done.integration_created);
    }
    created.sort();
    created.dedup();
    assert!(
        created.len() <= defaults.len(),
        "each blueprint created once: {created:?}"
    );
    assert_eq!(
        integrations_created, 1,
        "one replica created the integration"
    );
    let reader = client(&port);
    for blueprint in &defaults {
        let identifier = blueprint["identifier"].as_str().expect("identifier");
        let stored = reader
            .blueprint(identifier)
            .await
            .expect("read")
            .expect("created");
        for field in ["title", "schema", "relations", "mirrorProperties"] {
            assert_eq!(stored[field], blueprint[field], "{field} of {identifier}");
        }
    }
    assert!(port.integration(INTEGRATION).is_some());
    port.shutdown().await;
}

#[tokio::test]
async fn what_the_user_has_is_never_overwritten() {
    let user_mapping = user_mapping();
    let port = port_with(Some(user_mapping.clone())).await;
    // The user has one of the default blueprints, customised.
    let mine = json!({"identifier": "azureDevopsProject", "title": "My projects", "schema": {"properties": {}}, "relations": {}});
    port.define_blueprint(mine.clone());
    let client = client(&port);

    let done = initialize(&client, INTEGRATION, &record())
        .await
        .expect("initialize");
    assert!(done.blueprints_created.is_empty());
    assert!(!done.integration_created);
    assert_eq!(count(&port, "POST /v1/blueprints"), 0);
    assert_eq!(count(&port, "PATCH /v1/blueprints/{bp}"), 0);
    assert_eq!(count(&port, "POST /v1/integration"), 0);
    let stored: Value = client
        .blueprint("azureDevopsProject")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(stored["title"], "My projects");
    assert!(
        client
            .blueprint("azureDevopsRepository")
            .await
            .expect("read")
            .is_none()
    );
    assert_eq!(
        port.integration(INTEGRATION).expect("integration")["config"],
        user_mapping
    );
    port.shutdown().await;
}

#[tokio::test]
async fn a_first_start_creates_the_record_as_the_python_integration_does() {
    let port = port_with(None).await;
    let client = client(&port);
    let done = initialize(&client, INTEGRATION, &record())
        .await
        .expect("initialize");
    assert!(done.integration_created);
    // Ocean's creation body has no processingMode and no arePortResourcesInitialized: its
    // start-up check patches them right after.
    assert!(done.record_updated);
    assert_eq!(port.integration_patches(), vec![expected_update()]);
    let stored = port.integration(INTEGRATION).expect("created");
    for (field, value) in expected_update().as_object().expect("object") {
        assert_eq!(&stored[field], value, "{field}");
    }
    assert_eq!(stored["createPortResourcesOrigin"], "Default");
    port.shutdown().await;
}

#[tokio::test]
async fn an_integration_the_python_integration_created_is_brought_up_to_date_once() {
    let user_mapping = user_mapping();
    let port = port_with(Some(user_mapping.clone())).await;
    // As the Python integration 0.1.x left it: an older version, its processing mode.
    port.install_integration(json!({
        "installationAppType": "azure-devops",
        "version": "0.1.90",
        "changelogDestination": {},
        "actionsProcessingEnabled": false,
        "incrementalSyncEnabled": false,
        "processingMode": "dsp",
        "arePortResourcesInitialized": true,
    }));
    let client = client(&port);

    let done = initialize(&client, INTEGRATION, &record())
        .await
        .expect("initialize");
    assert!(!done.integration_created);
    assert!(done.record_updated);
    assert_eq!(port.integration_patches(), vec![expected_update()]);
    let stored = port.integration(INTEGRATION).expect("integration");
    assert_eq!(stored["version"], COMPATIBLE_INTEGRATION_VERSION);
    assert_eq!(stored["processingMode"], "ocean-core");
    assert_eq!(stored["config"], user_mapping, "the mapping is the user's");

    // Up to date: the next start patches nothing.
    let again = update_record(&client, INTEGRATION, &record())
        .await
        .expect("update");
    assert!(!again);
    assert_eq!(port.integration_patches().len(), 1);
    port.shutdown().await;
}

#[tokio::test]
async fn a_missing_integration_is_not_patched() {
    let port = port_with(None).await;
    let client = client(&port);
    let updated = update_record(&client, INTEGRATION, &record())
        .await
        .expect("update");
    assert!(!updated);
    assert_eq!(count(&port, "PATCH /v1/integration/{id}"), 0);
    // Port answers 404 to a PATCH of an integration it does not have.
    let error = client
        .patch_integration("not-installed", &expected_update())
        .await
        .expect_err("404")
        .to_string();
    assert!(error.contains("HTTP 404"), "{error}");
    assert!(port.integration_patches().is_empty());
    port.shutdown().await;
}

#[tokio::test]
async fn a_refused_update_names_the_endpoint_status_and_answer() {
    let port = port_with(Some(json!({"resources": []}))).await;
    port.fail_next(
        "PATCH /v1/integration/{id}",
        vec![ScriptedAnswer::json(
            422,
            json!({"ok": false, "error": "invalid_body", "message": "processingMode is not allowed"}),
        )],
    );
    let client = client(&port);
    let error = update_record(&client, INTEGRATION, &record())
        .await
        .expect_err("refused")
        .to_string();
    for part in [
        "PATCH /v1/integration/azure-devops",
        "HTTP 422",
        "processingMode is not allowed",
    ] {
        assert!(error.contains(part), "{part} in {error}");
    }
    port.shutdown().await;
}

#[tokio::test]
async fn the_default_scorecards_and_pages_come_with_the_blueprints_and_only_then() {
    let port = port_with(None).await;
    let client = client(&port);
    let done = initialize(&client, INTEGRATION, &record())
        .await
        .expect("initialize");
    // The pages are created as the Python integration ships them.
    let pages = port.pages();
    assert_eq!(
        pages.keys().cloned().collect::<Vec<_>>(),
        [
            "azureDevops-Service-Dashboard",
            "azureDevopsProductionReadinessDashboard"
        ]
    );
    for page in &default_presentation().expect("defaults").pages {
        let identifier = page["identifier"].as_str().expect("identifier");
        assert_eq!(&pages[identifier], page, "page {identifier} as sent");
    }
    assert_eq!(done.pages_created.len(), 2);
    // Its scorecard is of a `service` blueprint the defaults do not define: Port refuses it,
    // and the start goes on (as Ocean's does).
    assert_eq!(count(&port, "POST /v1/blueprints/{bp}/scorecards"), 1);
    assert!(port.scorecards().is_empty());
    assert!(done.scorecards_created.is_empty());
    assert!(done.integration_created);

    // A second start finds the blueprints: no scorecard or page is sent again.
    let again = initialize(&client, INTEGRATION, &record())
        .await
        .expect("initialize");
    assert!(again.pages_created.is_empty());
    assert_eq!(count(&port, "POST /v1/pages"), 2);
    assert_eq!(count(&port, "POST /v1/blueprints/{bp}/scorecards"), 1);
    port.shutdown().await;
}

#[tokio::test]
async fn the_default_scorecard_is_created_where_its_blueprint_exists_and_a_taken_page_is_left() {
    let port = port_with(None).await;
    port.define_blueprint(json!({"identifier": "service", "title": "Service"}));
    let client = client(&port);
    // A page of that identifier is already there (the user's, or another replica's).
    port.fail_next(
        "POST /v1/pages",
        vec![ScriptedAnswer::json(
            409,
            json!({"ok": false, "error": "identifier_taken"}),
        )],
    );
    let done = initialize(&client, INTEGRATION, &record())
        .await
        .expect("initialize");
    assert_eq!(done.scorecards_created, ["service/ProductionReadiness"]);
    let scorecards = port.scorecards();
    let scorecard = &scorecards[&("service".to_string(), "ProductionReadiness".to_string())];
    assert_eq!(scorecard["title"], "Production Readiness");
    assert_eq!(scorecard["rules"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        done.pages_created,
        ["azureDevopsProductionReadinessDashboard"]
    );
    port.shutdown().await;
}

/// At real latency the first start pays a round trip per blueprint stage, not per blueprint:
/// each stage's requests go together (README "Other shapes"), and the integration's read and
/// creation go beside the resources. One by one, the six default blueprints alone take 18
/// round trips and more (GET, POST, full PATCH each, and the relation PATCHes); stage by
/// stage, but the pages one by one and the integration after the resources, 12; now 9: the
/// token, the four blueprint stages, the scorecards and the pages (the integration's read and
/// creation meanwhile), then the record's read and update. Counted as the simulator's rounds
/// (requests each sent after the one before it was answered), not timed: a busy machine made
/// the wall time of 9 rounds of 100 ms over 1.1 s.
#[tokio::test]
async fn the_default_blueprints_are_created_a_stage_at_a_time() {
    // Long enough that requests sent together all arrive before the first is answered.
    let latency = std::time::Duration::from_millis(250);
    let port = PortSim::start(PortSimConfig {
        latency,
        ..PortSimConfig::default()
    })
    .await
    .expect("simulator");
    let client = client(&port);
    let done = initialize(&client, INTEGRATION, &record())
        .await
        .expect("initialize");
    assert_eq!(
        done.blueprints_created.len(),
        default_blueprints().expect("defaults").len()
    );
    assert_eq!(
        port.rounds(),
        9,
        "round trips one after another of the first start ({} requests)",
        port.total_requests()
    );
    assert!(done.integration_created);
    port.shutdown().await;
}
