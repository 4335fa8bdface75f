//! What the tests that run `adoport` processes share: the broker URL, a test's queue prefix,
//! environment and broker connection, waiting with a deadline, free ports for health servers
//! and closing a child's broker connection.

// Each test file uses the part it needs.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use adoport::sim::SimulatedWorld;
use adoport_shared::bus::Bus;
use adoport_shared::config::Settings;
use tokio_util::sync::CancellationToken;

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

/// The environment of `world` on the test broker under queue prefix `prefix`, with `extra`
/// on top, and the settings it makes.
pub fn broker_environment(
    world: &SimulatedWorld,
    prefix: &str,
    extra: &[(&str, &str)],
) -> (Vec<(String, String)>, Settings) {
    let url = amqp_url();
    let mut environment = world.environment(Some((&url, prefix)));
    environment.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let settings = Settings::from_vars(environment.clone()).expect("settings");
    (environment, settings)
}

/// A connection of the test itself to the broker `settings` name.
pub async fn test_bus(settings: &Settings) -> Bus {
    Bus::for_settings(settings, CancellationToken::new())
        .await
        .expect("RabbitMQ reachable (scripts/ensure-rabbitmq.sh starts it)")
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
