//! First start against the Port simulator (`OCEAN__INITIALIZE_PORT_RESOURCES`): the default
//! blueprints are created in three stages only when none exists, the integration with the
//! default mapping only when it is missing, and nothing the user has is overwritten.

use adoport_publish::client::{COMPATIBLE_INTEGRATION_VERSION, PortClient, exporter_user_agent};
use adoport_publish::resources::{default_blueprints, initialize};
use adoport_shared::config::{PortAccess, Secret};
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

fn count(port: &PortSim, route: &str) -> u64 {
    port.requests().get(route).copied().unwrap_or(0)
}

#[tokio::test]
async fn an_empty_port_gets_the_default_blueprints_and_mapping_once() {
    let port = PortSim::start(PortSimConfig::default())
        .await
        .expect("simulator");
    assert!(port.integration(INTEGRATION).is_none());
    let client = client(&port);
    let defaults = default_blueprints().expect("defaults");

    let done = initialize(&client, INTEGRATION).await.expect("initialize");
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
    let again = initialize(&client, INTEGRATION).await.expect("initialize");
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
    let port = PortSim::start(PortSimConfig::default())
        .await
        .expect("simulator");
    let replicas: Vec<PortClient> = (0..4).map(|_| client(&port)).collect();
    let (a, b, c, d) = tokio::join!(
        initialize(&replicas[0], INTEGRATION),
        initialize(&replicas[1], INTEGRATION),
        initialize(&replicas[2], INTEGRATION),
        initialize(&replicas[3], INTEGRATION),
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
    let user_mapping = json!({"resources": [{"kind": "project", "selector": {"query": "true"},
        "port": {"entity": {"mappings": {"identifier": ".id", "blueprint": "\"mine\""}}}}]});
    let port = PortSim::start(PortSimConfig {
        integration_config: Some(user_mapping.clone()),
        ..PortSimConfig::default()
    })
    .await
    .expect("simulator");
    // The user has one of the default blueprints, customised.
    let mine = json!({"identifier": "azureDevopsProject", "title": "My projects", "schema": {"properties": {}}, "relations": {}});
    port.define_blueprint(mine.clone());
    let client = client(&port);

    let done = initialize(&client, INTEGRATION).await.expect("initialize");
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
