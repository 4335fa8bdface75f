//! # adoport-tests
//!
//! Helpers for the end-to-end and fault tests in `tests/tests/`: a simulated world (Azure
//! DevOps and Port simulators), a pipeline on the real RabbitMQ (each test on its own queue
//! prefix, deleted afterwards) or on the in-process bus, and condition waits with timeouts.

use std::future::Future;
use std::time::Duration;

use adoport::pipeline::{Pipeline, Roles};
use adoport::sim::{SimulatedWorld, default_mapping};
use adoport_shared::bus::Bus;
use adoport_shared::config::Settings;
use adoport_shared::port_app_config::PortAppConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use adoport::demo::{basic_auth, repo_renamed_event};
pub use adoport::sim::WEBHOOK_SECRET;

/// The broker the tests use (scripts/test.sh makes sure it runs).
pub fn amqp_url() -> String {
    std::env::var("ADOPORT_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Which bus a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusKind {
    Rabbit,
    Memory,
}

/// A unique queue prefix for one test.
pub fn unique_prefix(test: &str) -> String {
    format!("t-{test}-{}.", uuid::Uuid::new_v4().simple())
}

/// Awaits `future`, failing the test with `what` after `secs` seconds.
pub async fn within<T>(secs: u64, what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {secs}s waiting for {what}"))
}

/// The mapping the end-to-end tests run: the default mapping's project and repository resources.
pub fn test_mapping() -> serde_json::Value {
    default_mapping(Some(&["project", "repository"])).expect("default mapping")
}

/// A publish "process" on the test's queues: the publish role (with the reconciliation
/// coordinator) on its own broker connection, so that a test can kill or replace it while
/// ingest and transform go on.
pub async fn publish_process(settings: &Settings) -> (Pipeline, Bus) {
    let bus = Bus::for_settings(settings, CancellationToken::new())
        .await
        .expect("RabbitMQ reachable");
    let pipeline = Pipeline::start(
        settings,
        Roles {
            ingest: false,
            transform: false,
            publish: true,
        },
        bus.clone(),
        Some(PortAppConfig::from_json_value(test_mapping()).expect("mapping")),
        None,
        CancellationToken::new(),
    )
    .await
    .expect("publish starts");
    (pipeline, bus)
}

/// A simulated world plus a pipeline running against it.
pub struct Running {
    pub world: SimulatedWorld,
    pub pipeline: Pipeline,
    pub bus: Bus,
    pub settings: Settings,
    pub webhook_url: Option<String>,
    kind: BusKind,
}

/// Starts the simulators and the given roles on the given bus, with extra variables on top
/// of the simulated environment.
pub async fn start(
    test: &str,
    kind: BusKind,
    roles: Roles,
    projects: usize,
    repositories: usize,
    extra: &[(&str, &str)],
) -> Running {
    start_with_mapping(
        test,
        kind,
        roles,
        projects,
        repositories,
        extra,
        test_mapping(),
    )
    .await
}

/// [`start`] with another mapping (e.g. the full default mapping).
pub async fn start_with_mapping(
    test: &str,
    kind: BusKind,
    roles: Roles,
    projects: usize,
    repositories: usize,
    extra: &[(&str, &str)],
    mapping_json: serde_json::Value,
) -> Running {
    // Logs of the pipeline under test, shown for failing tests (RUST_LOG=debug for more).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,lapin=warn")),
        )
        .with_test_writer()
        .try_init();
    let mapping = PortAppConfig::from_json_value(mapping_json.clone()).expect("mapping parses");
    let world = SimulatedWorld::start(projects, repositories, mapping_json)
        .await
        .expect("simulators start");
    let prefix = unique_prefix(test);
    let url = amqp_url();
    let broker = (kind == BusKind::Rabbit).then_some((url.as_str(), prefix.as_str()));
    let mut vars = world.environment(broker);
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let settings = Settings::from_vars(vars).expect("settings valid");
    let shutdown = CancellationToken::new();
    let bus = Bus::for_settings(&settings, shutdown.clone())
        .await
        .expect("RabbitMQ reachable (scripts/ensure-rabbitmq.sh starts it)");
    let listener = if roles.ingest {
        Some(TcpListener::bind("127.0.0.1:0").await.expect("bind"))
    } else {
        None
    };
    let pipeline = Pipeline::start(
        &settings,
        roles,
        bus.clone(),
        Some(mapping),
        listener,
        shutdown,
    )
    .await
    .expect("pipeline starts");
    let webhook_url = pipeline
        .webhook_address
        .map(|a| format!("http://{a}{}", adoport_ingest::webhook::WEBHOOK_PATH));
    Running {
        world,
        pipeline,
        bus,
        settings,
        webhook_url,
        kind,
    }
}

impl Running {
    /// Waits until Port holds exactly `expected` entities; fails the test with the count
    /// after 60 s.
    pub async fn wait_for_entity_count(&self, expected: usize) {
        let landed = self
            .world
            .port
            .wait_for(
                |port| port.entity_count() == expected,
                Duration::from_secs(60),
            )
            .await;
        assert!(
            landed,
            "Port holds {} of {expected} entities",
            self.world.port.entity_count()
        );
    }

    /// Waits for the next crawl and for everything it produced to settle.
    pub async fn resync_settled(&mut self) -> adoport_ingest::CrawlReport {
        let done = within(60, "the resync crawl", self.pipeline.next_resync())
            .await
            .expect("pipeline running");
        let report = done.report.expect("resync succeeded");
        let events = report.kinds.values().map(|k| k.events).sum();
        within(60, "the pipeline to drain", self.pipeline.drained(events)).await;
        report
    }

    /// Stops the pipeline and removes the test's queues.
    pub async fn stop(self) {
        self.pipeline.stop().await.expect("pipeline stops cleanly");
        if self.kind == BusKind::Rabbit {
            self.bus.delete_topology().await.expect("cleanup");
            self.bus.close().await;
        }
        self.world.shutdown().await;
    }
}
