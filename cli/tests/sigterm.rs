//! SIGTERM mid-batch loses nothing: the three roles run as processes on RabbitMQ against the
//! simulators; publish is stopped with SIGTERM while Port is making it wait, then started
//! again, and every entity lands with nothing dead-lettered.

use std::process::Stdio;
use std::time::Duration;

use adoport_shared::topology::DeadLetterQueue;
use adoport_sim::ScriptedAnswer;
use tokio::process::Child;

mod support;

use support::{TestBroker, adoport, organization, projects_and_repositories, start_world};

const BULK: &str = "POST /v1/blueprints/{bp}/entities/bulk";

fn spawn(role: &str, environment: &[(String, String)]) -> Child {
    adoport(&[role], environment, "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("adoport starts")
}

#[tokio::test]
async fn sigterm_mid_batch_loses_nothing() {
    let world = start_world(organization(4, 30), projects_and_repositories()).await;
    let expected = 4 + 4 * 30;
    let TestBroker {
        environment, bus, ..
    } = TestBroker::start(&world, "sigterm", &[("ADOPORT__HEALTH__LISTEN", "off")]).await;

    // Port makes the first bulk requests wait, so that SIGTERM finds publish mid-batch.
    world.port.fail_next(
        BULK,
        vec![
            ScriptedAnswer::rate_limited(2),
            ScriptedAnswer::rate_limited(2),
        ],
    );
    let mut publish = spawn("publish", &environment);
    let mut transform = spawn("transform", &environment);
    let mut ingest = spawn("ingest", &environment);

    let busy = world
        .port
        .wait_for(
            |port| port.requests().get(BULK).copied().unwrap_or(0) >= 1,
            Duration::from_secs(60),
        )
        .await;
    assert!(busy, "publish started writing");
    let pid = publish.id().expect("publish runs").to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(signalled.success());
    let status = tokio::time::timeout(Duration::from_secs(45), publish.wait())
        .await
        .expect("publish stops within its shutdown deadline")
        .expect("exit status");
    assert!(
        status.success(),
        "publish exits cleanly on SIGTERM: {status}"
    );
    assert!(
        world.port.entity_count() < expected,
        "stopped before the end"
    );

    let mut publish = spawn("publish", &environment);
    let landed = world
        .port
        .wait_for(
            |port| port.entity_count() == expected,
            Duration::from_secs(90),
        )
        .await;
    assert!(
        landed,
        "Port holds {} of {expected} entities",
        world.port.entity_count()
    );
    let letters = bus
        .drain_dead_letters(DeadLetterQueue::Changes, 10)
        .await
        .expect("drain");
    assert!(
        letters.is_empty(),
        "nothing dead-lettered: {:?}",
        letters.first().map(|l| &l.reason)
    );

    for child in [&mut publish, &mut transform, &mut ingest] {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    bus.delete_topology().await.expect("cleanup");
    bus.close().await;
    world.shutdown().await;
}
