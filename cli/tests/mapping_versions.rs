//! A new mapping version in Port replaces the running one once it compiles; a bad one is
//! refused with all its errors and the running one stays; a role that asks for a fresh read
//! gets it at once (against the Port simulator).

use std::time::Duration;

use adoport::mapping_source::follow;
use adoport_shared::config::Settings;
use adoport_shared::mapping_versions::MappingVersions;
use adoport_shared::messages::{ChangeOp, RawAction};
use adoport_shared::port_app_config::PortAppConfig;
use adoport_sim::port::{PortSim, PortSimConfig};
use adoport_transform::mapping::versions::CompiledVersions;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn config(title: &str) -> Value {
    json!({"resources": [{"kind": "project", "selector": {"query": "true"},
        "port": {"entity": {"mappings": {"identifier": ".id", "blueprint": "\"p\"",
        "title": title}}}}]})
}

fn title(compiled: &CompiledVersions) -> Value {
    let outcome = compiled.current().compiled.apply(
        "project",
        RawAction::Upsert,
        &json!({"id": "a", "name": "Name"}),
    );
    match &outcome.changes[0].op {
        ChangeOp::Upsert { entity } => entity["title"].clone(),
        ChangeOp::Delete => panic!("delete"),
    }
}

fn test_settings(sim: &PortSim) -> Settings {
    Settings::from_vars([
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
    .expect("settings")
}

/// Waits (at most 10 s) until the versions' `status` satisfies `done`, naming `what` when not.
async fn until_status<T>(
    status: &mut watch::Receiver<T>,
    what: &str,
    done: impl FnMut(&T) -> bool,
) {
    tokio::time::timeout(Duration::from_secs(10), status.wait_for(done))
        .await
        .unwrap_or_else(|_| panic!("{what} in time"))
        .expect("status");
}

/// The mapping follower of `versions`, reading the source `settings` name every `every`.
struct Follower {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Follower {
    fn start(settings: Settings, versions: &MappingVersions, every: Duration) -> Self {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(follow(
            settings,
            versions.attach_follower(),
            every,
            shutdown.clone(),
        ));
        Self { shutdown, task }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("joins")
            .expect("follower ends cleanly");
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
    let first = PortAppConfig::from_json_value(config(".name")).expect("config");
    let versions = MappingVersions::new(first);
    let compiled = CompiledVersions::new(versions.clone()).expect("compiles");
    let mut status = versions.status();
    // Polls rarely: the first change is picked up because a role asks for a fresh read.
    let follower = Follower::start(test_settings(&sim), &versions, Duration::from_secs(3600));
    sim.set_integration_config(config(".name | ltrimstr(\"x\")"));
    assert!(
        versions.refresh(Duration::from_secs(10)).await,
        "a fresh read was made at once"
    );
    assert_eq!(versions.current().number, 2);
    follower.stop().await;

    let follower = Follower::start(test_settings(&sim), &versions, Duration::from_millis(20));

    sim.set_integration_config(config(".name | ascii_downcase"));
    until_status(&mut status, "the new version", |s| s.version == 3).await;
    assert_eq!(title(&compiled), json!("name"));

    let mut bad = config(".name | nosuch");
    bad["resources"][0]["port"]["entity"]["mappings"]["properties"] = json!({"a": ".x | nosuch2"});
    sim.set_integration_config(bad);
    until_status(&mut status, "the bad version refused", |s| s.refused == 1).await;
    assert_eq!(title(&compiled), json!("name"), "the running version stays");
    assert!(
        status
            .borrow()
            .last_refusal
            .as_deref()
            .is_some_and(|r| r.contains("nosuch") && r.contains("nosuch2")),
        "every error is named: {:?}",
        status.borrow()
    );

    sim.set_integration_config(config(".name | ascii_upcase"));
    until_status(&mut status, "the fixed version", |s| s.version == 4).await;
    assert_eq!(title(&compiled), json!("NAME"));

    follower.stop().await;
}

#[tokio::test]
async fn the_mapping_file_is_followed_like_port() {
    let dir = std::env::temp_dir().join(format!(
        "adoport-mapping-follow-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("port-app-config.yaml");
    let write = |title: &str| {
        std::fs::write(
            &path,
            serde_json::to_string(&config(title)).expect("json is yaml"),
        )
        .expect("write mapping")
    };
    write(".name");
    let settings = Settings::from_vars([(
        "ADOPORT__MAPPING_FILE".to_owned(),
        path.display().to_string(),
    )])
    .expect("settings");
    let first = PortAppConfig::from_json_value(config(".name")).expect("config");
    let versions = MappingVersions::new(first);
    let compiled = CompiledVersions::new(versions.clone()).expect("compiles");
    let follower = Follower::start(settings, &versions, Duration::from_secs(3600));
    write(".name | ascii_upcase");
    assert!(versions.refresh(Duration::from_secs(10)).await);
    assert_eq!(title(&compiled), json!("NAME"));
    follower.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
