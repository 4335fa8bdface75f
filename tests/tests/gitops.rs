//! GitOps through the whole pipeline (real RabbitMQ, Port simulator): `port.yml` entities of a
//! push land in Port owned by GitOps, a removed one is deleted, a resync neither deletes them
//! (the exporter's reconciliation) nor loses them (the GitOps crawl), and a broken spec lands
//! in the raw DLQ with the file, commit and parser error.

use adoport::pipeline::Roles;
use adoport_shared::topology::DeadLetterQueue;
use adoport_sim::ado::{AdoSim, FileChange, SimCommit};
use adoport_tests::{BusKind, Running, start, within};
use serde_json::Value;

const SPEC: &str = "
- identifier: checkout
  blueprint: service
  title: Checkout
  properties:
    tier: gold
- identifier: payments
  blueprint: service
  properties:
    tier: silver
";

/// Posts a push event to the webhook; ingest takes it.
async fn deliver(running: &Running, push: &Value) {
    assert_eq!(running.post_event(push).await.status().as_u16(), 200);
}

/// Port's `service` entity `id`, when it holds one.
fn service(running: &Running, id: &str) -> Option<Value> {
    running.world.port.entity("service", id)
}

#[tokio::test]
async fn spec_entities_live_beside_the_exporter_s_and_converge() {
    let mut running = start("gitops-e2e", BusKind::Rabbit, Roles::ALL, 1, 2, &[]).await;
    running.resync_settled().await;
    let exporter_entities = running.world.port.entity_count();
    let repository = running.repository_id(|r| r["defaultBranch"] == "refs/heads/main");
    let push = |ado: &AdoSim, changes: Vec<FileChange>| {
        ado.push(&repository, "main", vec![SimCommit::new("spec", changes)])
            .expect("push")
    };

    deliver(
        &running,
        &push(&running.world.ado, vec![FileChange::put("port.yml", SPEC)]).webhook,
    )
    .await;
    running.wait_for_entity_count(exporter_entities + 2).await;
    let checkout = service(&running, "checkout").expect("checkout");
    assert!(
        checkout["$datasource"]
            .as_str()
            .is_some_and(|d| d.starts_with("port-ocean/azure-devops/") && d.ends_with("/gitops")),
        "{checkout}"
    );
    assert_eq!(checkout["properties"]["tier"], "gold");

    let removed = push(
        &running.world.ado,
        vec![FileChange::put(
            "port.yml",
            "identifier: checkout\nblueprint: service\ntitle: Checkout\nproperties:\n  tier: platinum\n",
        )],
    );
    deliver(&running, &removed.webhook).await;
    running.wait_for_entity_count(exporter_entities + 1).await;
    assert!(service(&running, "payments").is_none());

    // A resync: the exporter's reconciliation leaves GitOps entities alone, and the GitOps crawl
    // reads the spec of the tracked branch.
    running.request_resync_over_http().await;
    let report = running.resync_settled().await;
    assert_eq!(report.kinds["gitops"].items, 1, "{report:?}");
    running.wait_for_entity_count(exporter_entities + 1).await;
    let checkout = service(&running, "checkout").expect("checkout survives the resync");
    assert_eq!(checkout["properties"]["tier"], "platinum");

    // A spec that does not parse: dead-lettered with the file, the commit and the error.
    let broken = push(
        &running.world.ado,
        vec![FileChange::put("port.yml", "- identifier: [oops\n")],
    );
    deliver(&running, &broken.webhook).await;
    let stats = running.pipeline.transform_stats.clone();
    within(30, "the broken spec's dead letter", async {
        loop {
            let changed = stats.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if stats.events_dead_lettered() >= 1 {
                return;
            }
            changed.await;
        }
    })
    .await;
    let letters = running.list_dead_letters(DeadLetterQueue::Raw).await;
    assert_eq!(letters.len(), 1);
    let reason = &letters[0].reason;
    assert!(
        reason.contains("port.yml")
            && reason.contains(&broken.new_object_id)
            && reason.contains("does not parse"),
        "{reason}"
    );
    assert_eq!(
        running.world.port.entity_count(),
        exporter_entities + 1,
        "a broken spec deletes nothing"
    );
    running.stop().await;
}
