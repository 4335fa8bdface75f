//! # adoport-tests
//!
//! Helpers for the end-to-end and fault tests in `tests/tests/`: a simulated world (Azure
//! DevOps and Port simulators), a pipeline on the real RabbitMQ (each test on its own queue
//! prefix, deleted afterwards) or on the in-process bus ([`start`], [`Start`], [`Running`]),
//! more role "processes" on the same queues ([`roles_process`], [`roles`]), what a test does
//! to it (signed webhooks, resync requests) and condition waits with timeouts (on Port's
//! store: [`port_reaches`]; on the pipeline: [`Running`]'s methods).
//!
//! For tests of broker failures: a private RabbitMQ node to stop and restart
//! ([`rabbit_node`]; the shared broker is never touched), a TCP proxy that cuts or black-holes
//! connections or holds back one channel's confirms ([`fault_proxy`]), and the logs of the code under test, to wait for a line
//! ([`logs`]).
//!
//! The chaos soak ([`soak`]): the scaled-out stack as processes under every fault at once,
//! then compared with a clean one-shot sync; `tests/tests/soak.rs` and the `soak` binary.

pub mod fault_proxy;
pub mod logs;
pub mod rabbit_node;
pub mod soak;
pub mod source_tree;

use std::future::Future;
use std::time::Duration;

use adoport::pipeline::{Pipeline, Roles};
use adoport::sim::{SimulatedWorld, default_mapping};
use adoport_shared::bus::Bus;
use adoport_shared::config::Settings;
use adoport_shared::port_app_config::PortAppConfig;
use adoport_shared::topology::{DeadLetterQueue, WorkQueue};
use adoport_sim::ado::AdoSimConfig;
use adoport_sim::port::PortSim;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use adoport::demo::{basic_auth, repo_renamed_event};
pub use adoport::sim::WEBHOOK_SECRET;
pub use fault_proxy::{Fault, FaultProxy};
pub use logs::logs;
pub use rabbit_node::{RabbitNode, free_port};

/// The broker the tests use (scripts/test.sh makes sure it runs).
pub fn amqp_url() -> String {
    std::env::var("ADOPORT_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The setting that turns the start-up resync off: events arrive through the webhook only.
pub const WEBHOOKS_ONLY: (&str, &str) = ("OCEAN__EVENT_LISTENER__TYPE", "WEBHOOKS_ONLY");

/// The settings of the POLLING event listener, reading Port's resync request every second.
pub const POLLING_EVERY_SECOND: [(&str, &str); 2] = [
    ("OCEAN__EVENT_LISTENER__TYPE", "POLLING"),
    ("OCEAN__EVENT_LISTENER__INTERVAL", "1"),
];

/// The Port request the POLLING listener makes to read the resync request.
pub const RESYNC_REQUEST_ROUTE: &str = "GET /v1/integration/{id}/resync-request";

/// The role sets of "processes" that run part of the pipeline (all of it is `Roles::ALL`).
pub mod roles {
    use adoport::pipeline::Roles;

    const fn roles(ingest: bool, transform: bool, publish: bool) -> Roles {
        Roles {
            ingest,
            transform,
            publish,
        }
    }

    /// No role: the simulators and the test's own connection to the queues.
    pub const NONE: Roles = roles(false, false, false);
    pub const INGEST: Roles = roles(true, false, false);
    pub const TRANSFORM: Roles = roles(false, true, false);
    pub const PUBLISH: Roles = roles(false, false, true);
    /// Ingest and transform, with publish in another "process".
    pub const INGEST_TRANSFORM: Roles = roles(true, true, false);
    /// Ingest and publish, with transform in other "processes".
    pub const INGEST_PUBLISH: Roles = roles(true, false, true);
}

/// Two tests of one scenario, `$scenario(kind: BusKind)`: `$on_rabbitmq` on the real RabbitMQ,
/// `$in_process` on the in-process bus.
#[macro_export]
macro_rules! on_both_buses {
    ($scenario:ident: $on_rabbitmq:ident, $in_process:ident) => {
        #[tokio::test]
        async fn $on_rabbitmq() {
            $scenario($crate::BusKind::Rabbit).await;
        }

        #[tokio::test]
        async fn $in_process() {
            $scenario($crate::BusKind::Memory).await;
        }
    };
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

/// Waits (at most `secs`) until `condition` holds of what Port stores, failing the test with
/// `what` it waited for.
pub async fn port_reaches(
    port: &PortSim,
    secs: u64,
    what: &str,
    condition: impl Fn(&PortSim) -> bool,
) {
    let reached = port.wait_for(condition, Duration::from_secs(secs)).await;
    assert!(reached, "Port never reached {what} within {secs}s");
}

/// Whether Port holds entity `identifier` of `blueprint` under the title `title`.
pub fn entity_titled(port: &PortSim, blueprint: &str, identifier: &str, title: &str) -> bool {
    port.entity(blueprint, identifier)
        .is_some_and(|e| e["title"] == title)
}

/// Whether Port holds repository `id` under the title `title`.
pub fn repository_titled(port: &PortSim, id: &str, title: &str) -> bool {
    entity_titled(port, "azureDevopsRepository", id, title)
}

/// How many resync states with `status` ("running", "completed", "failed", …) Port was told.
pub fn resyncs_reported(port: &PortSim, status: &str) -> usize {
    port.resync_states()
        .iter()
        .filter(|s| s["status"] == status)
        .count()
}

/// How many requests the Azure DevOps simulator answered on `route`.
pub fn ado_requests_on(ado: &adoport_sim::AdoSim, route: &str) -> u64 {
    ado.requests().get(route).copied().unwrap_or(0)
}

/// How many requests Port answered on `route` (e.g. [`RESYNC_REQUEST_ROUTE`]).
pub fn requests_on(port: &PortSim, route: &str) -> u64 {
    port.requests().get(route).copied().unwrap_or(0)
}

/// Asks for a manual resync on `bus` (as `adoport resync` does); returns its id.
pub async fn request_resync(bus: &Bus) -> adoport_shared::messages::ResyncId {
    adoport_ingest::resync::request(bus, adoport_shared::messages::ResyncTrigger::Manual)
        .await
        .expect("resync requested")
}

/// A service-hook envelope of a work item event, as Azure DevOps sends it: `event_type`
/// (`workitem.updated`, …) of `resource` in project `project_id`, the `notification`'th.
pub fn work_item_event(
    event_type: &str,
    project_id: &str,
    notification: u64,
    resource: serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({
        "subscriptionId": "00000000-0000-0000-0000-00000000a002",
        "notificationId": notification,
        "id": format!("{event_type}-{notification}"),
        "eventType": event_type,
        "publisherId": "tfs",
        "resource": resource,
        "resourceVersion": "1.0",
        "resourceContainers": {"project": {"id": project_id}},
        "createdDate": "2026-01-12T09:00:01Z",
    })
}

/// Signs in to Port at `base_url` as `client_id`, as any API client does; returns the access
/// token.
pub async fn port_access_token(
    http: &reqwest::Client,
    base_url: &str,
    client_id: &str,
    client_secret: &str,
) -> String {
    let token: serde_json::Value = http
        .post(format!("{base_url}/v1/auth/access_token"))
        .json(&serde_json::json!({"clientId": client_id, "clientSecret": client_secret}))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token json");
    token["accessToken"]
        .as_str()
        .expect("accessToken")
        .to_string()
}

/// The `$datasource` of the Python integration for integration `azure-devops` (the
/// User-Agent that writes it): entities under it are ours, reconciliation may delete them.
pub const OURS: &str = "port-ocean/azure-devops/0.12.2/azure-devops/exporter";

/// Writes entities `identifiers` of `blueprint` into Port as the writer with User-Agent
/// `user_agent` (their `$datasource`, e.g. [`OURS`]), 20 to a request, bypassing the pipeline:
/// what a test plants before a resync (stale entities, another writer's).
pub async fn seed_entities(
    port: &PortSim,
    user_agent: &str,
    blueprint: &str,
    identifiers: &[String],
) {
    let http = reqwest::Client::builder()
        .user_agent(user_agent)
        .build()
        .expect("client");
    let token = port_access_token(&http, &port.base_url(), "sim-client", "sim-secret").await;
    for chunk in identifiers.chunks(20) {
        let entities: Vec<serde_json::Value> = chunk
            .iter()
            .map(|id| serde_json::json!({"identifier": id, "title": id, "properties": {}, "relations": {}}))
            .collect();
        let response = http
            .post(format!(
                "{}/v1/blueprints/{blueprint}/entities/bulk?upsert=true&merge=true",
                port.base_url()
            ))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "entities": entities }))
            .send()
            .await
            .expect("seed");
        assert!(response.status().is_success(), "{}", response.status());
    }
}

/// A POST to ingest's `url` signed with the simulated environment's webhook secret.
pub fn signed_post(http: &reqwest::Client, url: &str) -> reqwest::RequestBuilder {
    http.post(url)
        .header("Authorization", basic_auth(WEBHOOK_SECRET))
}

/// The mapping the end-to-end tests run: the default mapping's project and repository resources.
pub fn test_mapping() -> serde_json::Value {
    default_mapping(Some(&["project", "repository"])).expect("default mapping")
}

/// A publish "process" on the test's queues: the publish role (with the reconciliation
/// coordinator) on its own broker connection, so that a test can kill or replace it while
/// ingest and transform go on.
pub async fn publish_process(settings: &Settings) -> (Pipeline, Bus) {
    roles_process(settings, roles::PUBLISH, None, &CancellationToken::new()).await
}

/// `roles` on their own broker connection (a "process" a test can kill or replace), with the
/// test mapping, until `shutdown`; `listener` serves the webhook and health endpoints when
/// given.
pub async fn roles_process(
    settings: &Settings,
    roles: Roles,
    listener: Option<TcpListener>,
    shutdown: &CancellationToken,
) -> (Pipeline, Bus) {
    roles_process_with_mapping(settings, roles, test_mapping(), listener, shutdown).await
}

/// [`roles_process`] with another mapping.
pub async fn roles_process_with_mapping(
    settings: &Settings,
    roles: Roles,
    mapping: serde_json::Value,
    listener: Option<TcpListener>,
    shutdown: &CancellationToken,
) -> (Pipeline, Bus) {
    let bus = Bus::for_settings(settings, shutdown.clone())
        .await
        .expect("RabbitMQ reachable");
    let mapping = PortAppConfig::from_json_value(mapping).expect("mapping");
    let pipeline = Pipeline::start(
        settings,
        roles,
        bus.clone(),
        Some(mapping),
        listener,
        shutdown.clone(),
    )
    .await
    .unwrap_or_else(|e| panic!("{roles:?} start: {e:?}"));
    (pipeline, bus)
}

/// Waits for the next crawl of `pipeline` and for everything it produced to settle in
/// transform and publish; returns the resync's id and the crawl's report.
pub async fn crawl_settled(
    pipeline: &mut Pipeline,
) -> (
    adoport_shared::messages::ResyncId,
    adoport_ingest::CrawlReport,
) {
    let done = within(60, "the resync crawl", pipeline.next_resync())
        .await
        .expect("pipeline running");
    let report = done.report.expect("resync succeeded");
    let events = report.kinds.values().map(|k| k.events).sum();
    within(60, "the pipeline to drain", pipeline.drained(events)).await;
    (done.resync_id, report)
}

/// Stops a "process" of [`roles_process`]: its roles, then its broker connection.
pub async fn stop_process((pipeline, bus): (Pipeline, Bus)) {
    pipeline.stop().await.expect("the process stops cleanly");
    bus.close().await;
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
    Start::new(test, kind, roles)
        .organization(projects, repositories)
        .extra(extra)
        .run()
        .await
}

/// [`start`] of every role on RabbitMQ without the start-up resync: events come through the
/// webhook only (or a resync the test asks for).
pub async fn start_webhooks_only(test: &str, projects: usize, repositories: usize) -> Running {
    start(
        test,
        BusKind::Rabbit,
        Roles::ALL,
        projects,
        repositories,
        &[WEBHOOKS_ONLY],
    )
    .await
}

/// [`start`] of every role on the in-process bus, with the POLLING listener reading Port's
/// resync request every second.
pub async fn start_polling(test: &str, projects: usize, repositories: usize) -> Running {
    start(
        test,
        BusKind::Memory,
        Roles::ALL,
        projects,
        repositories,
        &POLLING_EVERY_SECOND,
    )
    .await
}

/// A pipeline to start, for tests that need more than [`start`] offers: another mapping,
/// another broker (a private node, a fault proxy), a slower Azure DevOps.
pub struct Start {
    test: String,
    kind: BusKind,
    roles: Roles,
    ado: AdoSimConfig,
    extra: Vec<(String, String)>,
    mapping: serde_json::Value,
    broker_url: String,
}

impl Start {
    /// The test mapping, a 2 × 3 organization, the shared broker.
    pub fn new(test: &str, kind: BusKind, roles: Roles) -> Self {
        Self {
            test: test.to_string(),
            kind,
            roles,
            ado: AdoSimConfig {
                projects: 2,
                repositories_per_project: 3,
                ..AdoSimConfig::default()
            },
            extra: Vec::new(),
            mapping: test_mapping(),
            broker_url: amqp_url(),
        }
    }

    pub fn organization(mut self, projects: usize, repositories: usize) -> Self {
        self.ado.projects = projects;
        self.ado.repositories_per_project = repositories;
        self
    }

    /// How long the Azure DevOps simulator takes to answer each request.
    pub fn ado_latency(mut self, latency: Duration) -> Self {
        self.ado.latency = latency;
        self
    }

    /// Variables on top of the simulated environment.
    pub fn extra(mut self, extra: &[(&str, &str)]) -> Self {
        self.extra
            .extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    pub fn mapping(mut self, mapping: serde_json::Value) -> Self {
        self.mapping = mapping;
        self
    }

    /// The broker to run on (a private node's or a proxy's URL) instead of the shared one.
    pub fn broker(mut self, url: &str) -> Self {
        self.broker_url = url.to_string();
        self
    }

    /// Starts the simulators and the roles.
    pub async fn run(self) -> Running {
        // Logs of the pipeline under test, shown for failing tests (RUST_LOG=debug for more).
        logs();
        let mapping = PortAppConfig::from_json_value(self.mapping.clone()).expect("mapping parses");
        let world = SimulatedWorld::start_with(self.ado, self.mapping)
            .await
            .expect("simulators start");
        let prefix = unique_prefix(&self.test);
        let broker =
            (self.kind == BusKind::Rabbit).then_some((self.broker_url.as_str(), prefix.as_str()));
        let mut vars = world.environment(broker);
        vars.extend(self.extra);
        let settings = Settings::from_vars(vars).expect("settings valid");
        let shutdown = CancellationToken::new();
        let bus = Bus::for_settings(&settings, shutdown.clone())
            .await
            .expect("RabbitMQ reachable (scripts/ensure-rabbitmq.sh starts it)");
        let listener = if self.roles.ingest {
            Some(TcpListener::bind("127.0.0.1:0").await.expect("bind"))
        } else {
            None
        };
        let pipeline = Pipeline::start(
            &settings,
            self.roles,
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
            kind: self.kind,
        }
    }
}

impl Running {
    /// Asserts that Port holds `blueprint` entities and that each of `properties` is filled
    /// (not null) in at least one of them: the mapping's expression for it found its data.
    pub fn assert_properties_filled<'a>(
        &self,
        blueprint: &str,
        properties: impl IntoIterator<Item = &'a str>,
    ) {
        let entities = self.world.port.entities(blueprint);
        assert!(!entities.is_empty(), "no {blueprint} entities");
        for property in properties {
            let filled = entities
                .iter()
                .filter(|e| !e["properties"][property].is_null())
                .count();
            assert!(
                filled > 0,
                "{blueprint}.{property} is null in every entity: {:?}",
                entities.first()
            );
        }
    }

    /// The settings of one more "process" on the test's queues (on the shared broker), with
    /// `extra` variables on top.
    pub fn process_settings(&self, extra: &[(&str, &str)]) -> Settings {
        let url = amqp_url();
        let prefix = &self.settings.pipeline.broker.prefix;
        let mut vars = self.world.environment(Some((&url, prefix)));
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Settings::from_vars(vars).expect("settings valid")
    }

    /// Transform alone with `mapping`, on the test's settings and connection: a "process" a
    /// test kills (`stop`) and starts again while ingest and publish go on.
    pub async fn start_transform(&self, mapping: &serde_json::Value) -> Pipeline {
        let mapping = PortAppConfig::from_json_value(mapping.clone()).expect("mapping");
        Pipeline::start(
            &self.settings,
            roles::TRANSFORM,
            self.bus.clone(),
            Some(mapping),
            None,
            CancellationToken::new(),
        )
        .await
        .expect("transform starts")
    }

    /// The id of the first simulated repository `matching` (its Azure DevOps JSON).
    pub fn repository_id(&self, matching: impl Fn(&serde_json::Value) -> bool) -> String {
        self.world
            .ado
            .repositories()
            .into_iter()
            .find(|r| matching(r))
            .and_then(|r| r["id"].as_str().map(String::from))
            .expect("a repository that matches")
    }

    /// Where ingest takes webhooks (it runs in this pipeline).
    pub fn webhook(&self) -> &str {
        self.webhook_url.as_deref().expect("ingest runs")
    }

    /// Posts `event` to the webhook, signed.
    pub async fn post_event(&self, event: &serde_json::Value) -> reqwest::Response {
        signed_post(&reqwest::Client::new(), self.webhook())
            .json(event)
            .send()
            .await
            .expect("webhook answered")
    }

    /// Asks for a manual resync on the test's bus; returns its id.
    pub async fn request_resync(&self) -> adoport_shared::messages::ResyncId {
        request_resync(&self.bus).await
    }

    /// Asks ingest for a resync over HTTP (`POST /resync`, signed) and checks it was accepted.
    pub async fn request_resync_over_http(&self) {
        let url = self
            .webhook()
            .replace(adoport_ingest::webhook::WEBHOOK_PATH, "/resync");
        let answer = signed_post(&reqwest::Client::new(), &url)
            .send()
            .await
            .expect("POST /resync answered");
        assert_eq!(answer.status().as_u16(), 202);
    }

    /// Waits (at most 30 s) until transform has settled `events` raw events in all (mapped,
    /// skipped or dead-lettered), naming `what` when it fails the test.
    pub async fn transform_settled(&self, events: u64, what: &str) {
        let stats = self.pipeline.transform_stats.clone();
        within(30, what, stats.wait_for_settled(events)).await;
    }

    /// Up to ten letters of one of the test's dead-letter queues, left in place.
    pub async fn list_dead_letters(
        &self,
        queue: DeadLetterQueue,
    ) -> Vec<adoport_shared::bus::DeadLetter> {
        self.bus
            .list_dead_letters(queue, 10)
            .await
            .expect("dead letters listed")
    }

    /// Messages ready in one of the test's work queues.
    pub async fn ready(&self, queue: WorkQueue) -> u64 {
        self.bus.ready_count(queue).await.expect("count")
    }

    /// Messages in one of the test's dead-letter queues.
    pub async fn dead_letters(&self, queue: DeadLetterQueue) -> u64 {
        self.bus.dead_letter_count(queue).await.expect("count")
    }

    /// Starts reading Port's resync requests (POLLING) and waits until the poller has read the
    /// current one: from then on, a newer request is a resync.
    pub async fn poll_port_resync_requests(&mut self) {
        self.pipeline
            .poll_port_resync_requests(&self.settings)
            .expect("poller starts");
        port_reaches(
            &self.world.port,
            10,
            "the poller reading its resync request",
            |port| requests_on(port, RESYNC_REQUEST_ROUTE) >= 1,
        )
        .await;
    }

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

    /// Waits for the next crawl, for everything it produced to settle and, when publish runs
    /// here, for its reconciliation (the resync's end: deletions done, state reported).
    pub async fn resync_settled(&mut self) -> adoport_ingest::CrawlReport {
        let (resync_id, report) = crawl_settled(&mut self.pipeline).await;
        if self.pipeline.resync_summaries.is_some() {
            within(
                60,
                "the resync's reconciliation",
                self.pipeline.resync_summary(resync_id),
            )
            .await;
        }
        report
    }

    /// [`Running::resync_settled`], failing the test when a kind failed.
    pub async fn resync_settled_without_failures(&mut self) -> adoport_ingest::CrawlReport {
        let report = self.resync_settled().await;
        assert_eq!(report.failed_kinds(), Vec::<&str>::new(), "{report:?}");
        report
    }

    /// Waits (at most `secs`) for the reconciliation coordinator's summary of `resync_id`.
    pub async fn resync_summary(
        &self,
        secs: u64,
        resync_id: adoport_shared::messages::ResyncId,
    ) -> adoport_publish::ResyncSummary {
        within(
            secs,
            "the resync summary",
            self.pipeline.resync_summary(resync_id),
        )
        .await
        .expect("publish runs the reconciliation coordinator here")
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
