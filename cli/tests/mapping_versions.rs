//! A new mapping version in Port replaces the running one once it compiles; a bad one is
//! refused and the running one stays (against the Port simulator).

use std::time::Duration;

use adoport::mapping_source::poll;
use adoport_shared::config::Settings;
use adoport_shared::messages::{ChangeOp, RawAction};
use adoport_sim::port::{PortSim, PortSimConfig};
use adoport_transform::mapping::versions::{MappingVersions, MappingWatch, compile_version};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn config(title: &str) -> Value {
    json!({"resources": [{"kind": "project", "selector": {"query": "true"},
        "port": {"entity": {"mappings": {"identifier": ".id", "blueprint": "\"p\"",
        "title": title}}}}]})
}

fn title(watch: &MappingWatch) -> Value {
    let outcome = watch.borrow().apply(
        "project",
        RawAction::Upsert,
        &json!({"id": "a", "name": "Name"}),
    );
    match &outcome.changes[0].op {
        ChangeOp::Upsert { entity } => entity["title"].clone(),
        ChangeOp::Delete => panic!("delete"),
    }
}

#[tokio::test]
async fn port_versions_replace_the_running_mapping_and_bad_ones_are_refused() {
    let sim = PortSim::start(PortSimConfig {
        integration_config: Some(config(".name")),
        ..PortSimConfig::default()
    })
    .await
    .expect("port sim");
    let settings = Settings::from_vars([
        ("OCEAN__PORT__BASE_URL".to_owned(), sim.base_url()),
        ("OCEAN__PORT__CLIENT_ID".to_owned(), "sim-client".to_owned()),
        (
            "OCEAN__PORT__CLIENT_SECRET".to_owned(),
            "sim-secret".to_owned(),
        ),
        (
            "OCEAN__INTEGRATION__IDENTIFIER".to_owned(),
            "azure-devops".to_owned(),
        ),
    ])
    .expect("settings");
    let (_, compiled) = compile_version(&config(".name")).expect("compiles");
    let versions = MappingVersions::new(config(".name"), compiled);
    let watch = versions.subscribe();
    let mut status = versions.status();
    let shutdown = CancellationToken::new();
    let poller = tokio::spawn(poll(
        settings,
        versions,
        Duration::from_millis(20),
        shutdown.clone(),
    ));
    let patience = Duration::from_secs(10);

    sim.set_integration_config(config(".name | ascii_downcase"));
    tokio::time::timeout(patience, status.wait_for(|s| s.version == 2))
        .await
        .expect("the new version in time")
        .expect("status");
    assert_eq!(title(&watch), json!("name"));

    sim.set_integration_config(config(".name | nosuch"));
    tokio::time::timeout(patience, status.wait_for(|s| s.refused == 1))
        .await
        .expect("the bad version refused in time")
        .expect("status");
    assert_eq!(title(&watch), json!("name"), "the running version stays");
    assert!(
        status
            .borrow()
            .last_refusal
            .as_deref()
            .is_some_and(|r| r.contains("nosuch")),
        "{:?}",
        status.borrow()
    );

    sim.set_integration_config(config(".name | ascii_upcase"));
    tokio::time::timeout(patience, status.wait_for(|s| s.version == 3))
        .await
        .expect("the fixed version in time")
        .expect("status");
    assert_eq!(title(&watch), json!("NAME"));

    shutdown.cancel();
    poller.await.expect("joins").expect("poller ends cleanly");
}
