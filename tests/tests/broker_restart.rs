//! A broker restart is survived: the roles reconnect, declare again and resume, and what was
//! confirmed before the restart is still there after it.
//!
//! This is the only test in its binary because it restarts the shared RabbitMQ node: cargo runs
//! test binaries one after another, so no other test sees the restart.

use std::process::Command;
use std::time::Duration;

use adoport::pipeline::Roles;
use adoport_tests::{BusKind, WEBHOOK_SECRET, basic_auth, repo_renamed_event, start, within};

fn rabbitmqctl(args: &[&str]) {
    let status = Command::new("rabbitmqctl")
        .args(args)
        .status()
        .expect("rabbitmqctl runs (scripts/ensure-rabbitmq.sh installs RabbitMQ)");
    assert!(status.success(), "rabbitmqctl {args:?} failed");
}

#[tokio::test]
async fn the_pipeline_survives_a_broker_restart() {
    let mut running = start("restart", BusKind::Rabbit, Roles::ALL, 2, 3, &[]).await;
    running.resync_settled().await;
    assert_eq!(running.world.port.entity_count(), 2 + 6);

    // Restart the node's application: every connection drops, queues and messages stay.
    tokio::task::spawn_blocking(|| {
        rabbitmqctl(&["stop_app"]);
        rabbitmqctl(&["start_app"]);
        rabbitmqctl(&["await_startup"]);
    })
    .await
    .expect("restart");

    // A live event after the restart goes all the way through: ingest publishes on a new
    // connection, transform and publish consume again.
    let repository = running.world.ado.repositories().remove(0);
    let id = repository["id"].as_str().expect("id").to_string();
    running.world.ado.rename_repository(&id, "after-restart");
    let http = reqwest::Client::new();
    let url = running.webhook_url.clone().expect("ingest runs");
    let status = within(60, "the webhook to be accepted after the restart", async {
        loop {
            let answer = http
                .post(&url)
                .header("Authorization", basic_auth(WEBHOOK_SECRET))
                .json(&repo_renamed_event(&repository))
                .send()
                .await
                .expect("ingest answers");
            // 503 while the bus reconnects: Azure DevOps would retry, and so do we.
            if answer.status().as_u16() != 503 {
                return answer.status().as_u16();
            }
        }
    })
    .await;
    assert_eq!(status, 200);
    let landed = running
        .world
        .port
        .wait_for(
            |port| {
                port.entity("azureDevopsRepository", &id)
                    .is_some_and(|e| e["title"] == "after-restart")
            },
            Duration::from_secs(60),
        )
        .await;
    assert!(landed, "the change made after the restart reached Port");
    running.stop().await;
}
