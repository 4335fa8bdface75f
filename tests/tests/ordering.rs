//! Order end to end (real RabbitMQ, simulated Port): interleaved updates of the same objects
//! through several transform and publish "processes" (each its own pipeline and broker
//! connection, on one queue prefix) end with Port holding the newest state of every object.
//!
//! Raw events carry one version of one repository each; all versions of all repositories are
//! published in a shuffled order, so the two transforms see older versions after newer ones and
//! emit changes out of order. The two publishers split the change partitions. Port must end with
//! the newest version of every repository.

use std::time::Duration;

use adoport::pipeline::{Pipeline, Roles};
use adoport_shared::bus::{Bus, Destination, Outgoing};
use adoport_shared::config::Settings;
use adoport_shared::messages::{Origin, RawAction, RawEvent, encode};
use adoport_shared::topology::DeadLetterQueue;
use adoport_tests::{BusKind, roles, roles_process, start, within};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const REPOSITORY: &str = "azureDevopsRepository";
const VERSIONS: i64 = 8;

/// A deterministic shuffle (a linear congruential generator drives Fisher–Yates).
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let j = (seed >> 33) as usize % (i + 1);
        items.swap(i, j);
    }
}

/// One process: its own broker connection and the given roles.
async fn process(settings: &Settings, roles: Roles) -> (Pipeline, Bus, CancellationToken) {
    let shutdown = CancellationToken::new();
    let (pipeline, bus) = roles_process(settings, roles, None, &shutdown).await;
    (pipeline, bus, shutdown)
}

#[tokio::test]
async fn interleaved_updates_through_two_transforms_and_two_publishers_end_newest() {
    let running = start("ordering", BusKind::Rabbit, roles::NONE, 2, 6, &[]).await;
    let (transform, publish) = (roles::TRANSFORM, roles::PUBLISH);
    let mut processes = Vec::new();
    for roles_and_vars in [
        (transform, vec![("ADOPORT__TRANSFORM__PREFETCH", "4")]),
        (transform, vec![("ADOPORT__TRANSFORM__PREFETCH", "4")]),
        (publish, vec![("ADOPORT__PUBLISH__PARTITIONS", "0,1,2,3")]),
        (publish, vec![("ADOPORT__PUBLISH__PARTITIONS", "4,5,6,7")]),
    ] {
        let (roles, vars) = roles_and_vars;
        let settings = running.process_settings(&vars);
        processes.push(process(&settings, roles).await);
    }

    // VERSIONS versions of every repository, each renamed, observed one second apart.
    let repositories = running.world.ado.repositories();
    assert_eq!(repositories.len(), 12);
    let organization = running.world.ado.organization_url();
    let at = |version: i64| Duration::from_secs(version as u64);
    let base = RawEvent::new(
        "repository",
        Origin::Webhook {
            event_type: String::new(),
            delivery_id: String::new(),
        },
        organization.clone(),
        RawAction::Upsert,
        Vec::new(),
    )
    .observed_at
        - Duration::from_secs(3600);
    let mut events = Vec::new();
    for repository in &repositories {
        for version in 0..VERSIONS {
            let mut item = repository.clone();
            let name = format!("{}-v{version}", repository["name"].as_str().expect("name"));
            item["name"] = Value::String(name);
            let mut event = RawEvent::new(
                "repository",
                Origin::Webhook {
                    event_type: "git.repo.renamed".into(),
                    delivery_id: format!("{}-{version}", repository["id"]),
                },
                organization.clone(),
                RawAction::Upsert,
                vec![item],
            );
            event.observed_at = base + at(version);
            events.push(event);
        }
    }
    shuffle(&mut events, 0x5eed);
    // Make sure the order really is mixed: some newest version comes before an older one.
    let newest_first = repositories.iter().any(|r| {
        let position = |v: i64| {
            events
                .iter()
                .position(|e| e.items[0]["id"] == r["id"] && e.observed_at == base + at(v))
        };
        position(VERSIONS - 1) < position(0)
    });
    assert!(newest_first, "the shuffle must put a newest version first");
    // Published in small chunks so both transforms work at once.
    for chunk in events.chunks(8) {
        let messages = chunk
            .iter()
            .map(|e| Outgoing::new(Destination::Raw, encode(e)))
            .collect();
        running.bus.publish_all(messages).await.expect("publish");
    }

    let newest = |repository: &Value| {
        format!(
            "{}-v{}",
            repository["name"].as_str().expect("name"),
            VERSIONS - 1
        )
    };
    let port = &running.world.port;
    let converged = port
        .wait_for(
            |port| {
                repositories.iter().all(|r| {
                    port.entity(REPOSITORY, r["id"].as_str().expect("id"))
                        .is_some_and(|e| e["title"] == newest(r).as_str())
                })
            },
            Duration::from_secs(60),
        )
        .await;
    let titles: Vec<(String, Value)> = repositories
        .iter()
        .map(|r| {
            (
                newest(r),
                port.entity(REPOSITORY, r["id"].as_str().expect("id"))
                    .map(|e| e["title"].clone())
                    .unwrap_or(Value::Null),
            )
        })
        .collect();
    assert!(
        converged,
        "Port does not hold the newest versions: {titles:?}"
    );

    // Every change settled: nothing dead-lettered, and what was not written was skipped as
    // stale (or superseded) — the publishers wrote no older version after a newer one.
    let settled = within(30, "every change to settle", async {
        loop {
            let (acked, dead, stale) =
                processes
                    .iter()
                    .fold((0, 0, 0), |(a, d, s), (pipeline, _, _)| {
                        let snapshot = pipeline.publish_stats.snapshot();
                        (
                            a + snapshot.acked,
                            d + snapshot.dead_lettered,
                            s + snapshot.skipped_stale,
                        )
                    });
            if acked + dead >= events.len() as u64 {
                break (acked, dead, stale);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(settled.1, 0, "nothing dead-lettered");
    assert!(
        settled.2 > 0,
        "older versions arrived after newer ones and were skipped"
    );
    for queue in [DeadLetterQueue::Raw, DeadLetterQueue::Changes] {
        let dead = running
            .bus
            .drain_dead_letters(queue, 10)
            .await
            .expect("drain");
        assert!(dead.is_empty(), "{queue:?}: {dead:?}");
    }
    // Both publishers took part (the partitions are split between them).
    for (pipeline, _, _) in &processes[2..] {
        assert!(pipeline.publish_stats.snapshot().received > 0);
    }
    for (pipeline, bus, _) in processes {
        pipeline.stop().await.expect("stops");
        bus.close().await;
    }
    running.stop().await;
}
