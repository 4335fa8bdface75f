//! What the tests that run `adoport` processes share: the simulators, the broker URL, a test's
//! queue prefix, environment and broker connection ([`TestBroker`]), `adoport` child processes and their logs,
//! roles run in the test's own process, resync requests, waiting with a deadline, free ports for
//! health servers, what `rabbitmqctl` says (consumers, closing a child's connection) and a ONCE
//! resync's Azure DevOps requests against the fewest possible.

// Each test file uses the part it needs.
#![allow(dead_code)]

use std::future::Future;
use std::process::Stdio;
use std::time::Duration;

use adoport::pipeline::{Pipeline, Roles};
use adoport::sim::{SimulatedWorld, default_mapping};
use adoport_shared::bus::Bus;
use adoport_shared::config::Settings;
use adoport_shared::messages::{ResyncId, ResyncTrigger};
use adoport_shared::port_app_config::PortAppConfig;
use adoport_sim::ado::AdoSimConfig;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The mapping of projects and repositories (the default mapping's), as the tests' Port holds.
pub fn projects_and_repositories() -> Value {
    default_mapping(Some(&["project", "repository"])).expect("default mapping")
}

/// A simulated organization of `projects` × `repositories`, for [`start_world`].
pub fn organization(projects: usize, repositories: usize) -> AdoSimConfig {
    AdoSimConfig {
        projects,
        repositories_per_project: repositories,
        ..AdoSimConfig::default()
    }
}

/// The simulators: Azure DevOps as `ado` says, Port holding `mapping`.
pub async fn start_world(ado: AdoSimConfig, mapping: Value) -> SimulatedWorld {
    SimulatedWorld::start_with(ado, mapping)
        .await
        .expect("simulators start")
}

/// The broker the tests use (`ADOPORT_TEST_AMQP_URL`, else the local RabbitMQ).
pub fn amqp_url() -> String {
    std::env::var("ADOPORT_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A queue prefix no other test or run uses: `t-{test}-{process id}-{microseconds}.`.
pub fn unique_prefix(test: &str) -> String {
    format!(
        "t-{test}-{}-{}.",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    )
}

/// A test's place on the test broker: its own queue prefix, the environment of the children
/// (the simulated world's, on that prefix, with the test's variables on top), the settings it
/// makes, and the test's own connection (for its requests, queue counts and clean-up).
pub struct TestBroker {
    pub prefix: String,
    pub environment: Vec<(String, String)>,
    pub settings: Settings,
    pub bus: Bus,
}

impl TestBroker {
    /// A new queue prefix for `test`, with `extra` variables on top of `world`'s environment.
    pub async fn start(world: &SimulatedWorld, test: &str, extra: &[(&str, &str)]) -> Self {
        let url = amqp_url();
        let prefix = unique_prefix(test);
        let mut environment = world.environment(Some((&url, &prefix)));
        environment.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let settings = Settings::from_vars(environment.clone()).expect("settings");
        let bus = Bus::for_settings(&settings, CancellationToken::new())
            .await
            .expect("RabbitMQ reachable (scripts/ensure-rabbitmq.sh starts it)");
        Self {
            prefix,
            environment,
            settings,
            bus,
        }
    }

    /// Removes the test's queues and closes the test's connection.
    pub async fn clean_up(self) {
        self.bus.delete_topology().await.expect("cleanup");
        self.bus.close().await;
    }
}

/// The role sets a test runs in its own process.
pub mod roles {
    use adoport::pipeline::Roles;

    pub const TRANSFORM: Roles = Roles {
        ingest: false,
        transform: true,
        publish: false,
    };
    /// Publish, with the reconciliation coordinator.
    pub const PUBLISH: Roles = Roles {
        ingest: false,
        transform: false,
        publish: true,
    };
}

/// `adoport ARGS` as the test's child: nothing in its environment but `environment` and
/// `RUST_LOG=rust_log`, its errors on the test's output, killed when dropped.
pub fn adoport(args: &[&str], environment: &[(String, String)], rust_log: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_adoport"));
    command
        .args(args)
        .env_clear()
        .envs(environment.iter().cloned())
        .env("RUST_LOG", rust_log)
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    command
}

/// Starts `command` with its output read as it comes (uncoloured): the child, and its output
/// once it has ended.
pub fn spawn_logged(command: &mut Command) -> (Child, JoinHandle<String>) {
    let mut child = command
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("adoport starts");
    let mut stdout = child.stdout.take().expect("piped");
    let log = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text).await;
        text
    });
    (child, log)
}

/// What an `adoport` child that has ended logged (its stdout), failing the test with its exit
/// status, errors and log unless it exited with success.
pub fn log_of_success(output: &std::process::Output) -> String {
    let log = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}\n{stderr}\n{log}",
        output.status
    );
    log
}

/// `roles` in the test's own process, on a broker connection of their own, with `mapping`.
pub async fn in_process(
    settings: &Settings,
    roles: Roles,
    mapping: &PortAppConfig,
) -> (Pipeline, Bus) {
    let bus = Bus::for_settings(settings, CancellationToken::new())
        .await
        .expect("broker");
    let pipeline = Pipeline::start(
        settings,
        roles,
        bus.clone(),
        Some(mapping.clone()),
        None,
        CancellationToken::new(),
    )
    .await
    .expect("role starts");
    (pipeline, bus)
}

/// Stops roles started by [`in_process`], then their broker connection.
pub async fn stop_in_process((pipeline, bus): (Pipeline, Bus)) {
    pipeline.stop().await.expect("role stops");
    bus.close().await;
}

/// Asks for a manual resync on `bus` (as `adoport resync` does); returns its id.
pub async fn request_resync(bus: &Bus) -> ResyncId {
    adoport_ingest::resync::request(bus, ResyncTrigger::Manual)
        .await
        .expect("resync requested")
}

/// `future`, failing the test when it takes longer than `secs` (naming `what` it waited for).
pub async fn within<T>(secs: u64, what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {secs}s waiting for {what}"))
}

/// Polls, every `every`, a figure that has no notification (queue depths, Port's entities,
/// consumers) until `done` holds, failing the test after `secs`.
pub async fn until<F: Future<Output = bool>>(
    secs: u64,
    every: Duration,
    what: &str,
    mut done: impl FnMut() -> F,
) {
    within(secs, what, async {
        while !done().await {
            tokio::time::sleep(every).await;
        }
    })
    .await;
}

/// A free TCP port on 127.0.0.1 for a child's health server.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Runs `rabbitmqctl` with `args` (quiet, no headers), its output's lines split by tabs.
pub async fn rabbitmqctl(args: &[&str]) -> Vec<Vec<String>> {
    let output = Command::new("rabbitmqctl")
        .args(["-q", "--no-table-headers"])
        .args(args)
        .output()
        .await
        .expect("rabbitmqctl runs (scripts/ensure-rabbitmq.sh installs RabbitMQ)");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.split('\t').map(str::to_string).collect())
        .collect()
}

/// Consumers of `queue`, as the broker counts them.
pub async fn queue_consumers(queue: &str) -> u32 {
    rabbitmqctl(&["list_queues", "name", "consumers"])
        .await
        .into_iter()
        .find(|line| line.first().is_some_and(|name| name == queue))
        .and_then(|line| line.get(1)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Closes the broker connection of child process `pid`, found by the name the bus gives it
/// (`adoport-{prefix}{pid}` in the client properties the broker lists), giving `reason`.
pub fn close_connection_of(prefix: &str, pid: u32, reason: &str) {
    let name = format!("\"adoport-{prefix}{pid}\"");
    let listed = std::process::Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "-q",
            "--no-table-headers",
            "pid",
            "client_properties",
        ])
        .output()
        .expect("rabbitmqctl runs (scripts/ensure-rabbitmq.sh installs RabbitMQ)");
    let text = String::from_utf8_lossy(&listed.stdout);
    let connection = text
        .lines()
        .find(|line| line.contains(&name))
        .and_then(|line| line.split('\t').next())
        .map(|pid| pid.trim().to_string())
        .unwrap_or_else(|| panic!("no connection named {name} in {text}"));
    let closed = std::process::Command::new("rabbitmqctl")
        .args(["close_connection", &connection, reason])
        .status()
        .expect("rabbitmqctl runs");
    assert!(closed.success());
}

/// What 1.05 times `minimum` allows, rounded up (a row of 2 may take 3: at most one request
/// more than the minimum on any row).
pub fn allowed(minimum: u64) -> u64 {
    (minimum * 105).div_ceil(100)
}

/// Runs one ONCE resync of `world`'s organization with `mapping` (`adoport all`, no broker)
/// and returns the Azure DevOps requests it made against the fewest possible.
pub async fn once_request_report(
    world: &SimulatedWorld,
    mapping: &Value,
) -> adoport_sim::ado::RequestReport {
    let mut command = adoport(&["all"], &world.environment(None), "warn");
    command
        .env("OCEAN__EVENT_LISTENER__TYPE", "ONCE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the ONCE run finishes within 2 minutes")
        .expect("adoport runs");
    log_of_success(&output);
    world.ado.request_report(mapping)
}
