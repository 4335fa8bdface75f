//! ONCE mode as the CI job runs it: `adoport all` as a child process without a broker, against
//! the simulators. It exits 0 when the resync landed, and non-zero with a summary when it did not.

use std::time::Duration;

use adoport::sim::{SimulatedWorld, default_mapping};
use adoport_sim::ScriptedAnswer;

const BULK: &str = "POST /v1/blueprints/{bp}/entities/bulk";

async fn run_once(world: &SimulatedWorld) -> std::process::Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_adoport"));
    command
        .arg("all")
        .env_clear()
        .env("RUST_LOG", "info,lapin=warn");
    for (name, value) in world.environment(None) {
        command.env(name, value);
    }
    command
        .env("OCEAN__EVENT_LISTENER__TYPE", "ONCE")
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("ONCE run finishes within 2 minutes")
        .expect("adoport runs")
}

async fn world(projects: usize, repositories: usize) -> SimulatedWorld {
    let mapping = default_mapping(Some(&["project", "repository"])).expect("default mapping");
    SimulatedWorld::start(projects, repositories, mapping)
        .await
        .expect("simulators start")
}

#[tokio::test]
async fn once_exits_zero_when_everything_landed() {
    let world = world(2, 3).await;
    let output = run_once(&world).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}\n{stderr}",
        output.status
    );
    assert_eq!(world.port.entity_count(), 2 + 6, "{stderr}");
    world.shutdown().await;
}

#[tokio::test]
async fn once_exits_non_zero_with_a_summary_when_port_refuses_changes() {
    let world = world(1, 2).await;
    // Port refuses every bulk upsert for good: the changes are dead-lettered.
    world
        .port
        .fail_next(BULK, (0..50).map(|_| ScriptedAnswer::status(422)).collect());
    let output = run_once(&world).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("resync incomplete"), "{stderr}");
    assert!(stderr.contains("dead-lettered"), "{stderr}");
    world.shutdown().await;
}
