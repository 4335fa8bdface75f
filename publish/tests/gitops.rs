//! GitOps writes against the Port simulator: spec entities carry the GitOps datasource, and a
//! GitOps delete removes only entities GitOps owns — never one the exporter wrote.

use std::time::Duration;

use adoport_publish::batcher::BatchLimits;
use adoport_publish::{PublishConfig, Publisher};
use adoport_shared::bus::{Bus, Destination, Outgoing};
use adoport_shared::messages::{ChangeOp, EntityChange, GITOPS_KIND, encode};
use adoport_shared::topology::Topology;
use adoport_sim::port::{PortSim, PortSimConfig};
use serde_json::json;
use tokio_util::sync::CancellationToken;

mod support;

use support::port_client;

fn change(kind: &str, identifier: &str, op: ChangeOp) -> EntityChange {
    EntityChange {
        kind: kind.into(),
        ..support::change("service", identifier, op)
    }
}

fn upsert(kind: &str, identifier: &str) -> EntityChange {
    change(
        kind,
        identifier,
        ChangeOp::Upsert {
            entity: json!({"identifier": identifier, "title": identifier, "properties": {}}),
        },
    )
}

#[tokio::test]
async fn gitops_writes_are_owned_by_gitops_and_never_delete_the_exporter_s() {
    let port = PortSim::start(PortSimConfig::default())
        .await
        .expect("port");
    let credentials = ("sim-client", "sim-secret");
    let client = port_client(&port.base_url(), credentials, "azure-devops", 5);
    let config = PublishConfig {
        partitions: vec![0],
        batch: BatchLimits {
            linger: Duration::from_millis(20),
            ..BatchLimits::default()
        },
        ..PublishConfig::from_settings(&adoport_shared::config::Settings::default())
            .expect("defaults")
    };
    let shutdown = CancellationToken::new();
    let bus = Bus::memory(Topology::new("gitops.", 1), shutdown.clone());
    let publisher = Publisher::new(client, config);
    let stats = publisher.stats();
    let worker = tokio::spawn(publisher.run(bus.clone(), shutdown.clone()));
    let send = |changes: Vec<EntityChange>| {
        let bus = bus.clone();
        async move {
            let messages = changes
                .iter()
                .map(|c| Outgoing::new(Destination::Change { partition: 0 }, encode(c)))
                .collect();
            bus.publish_all(messages).await.expect("publish");
        }
    };
    let wait = |acked: u64| {
        let stats = stats.clone();
        async move {
            tokio::time::timeout(
                Duration::from_secs(20),
                stats.wait_until(|s| s.acked == acked),
            )
            .await
            .expect("acked in time");
        }
    };

    send(vec![
        upsert("repository", "shared"),
        upsert(GITOPS_KIND, "spec"),
    ])
    .await;
    wait(2).await;
    let datasource = |id: &str| {
        port.entity("service", id)
            .and_then(|e| e["$datasource"].as_str().map(String::from))
            .unwrap_or_default()
    };
    assert_eq!(
        datasource("spec"),
        "port-ocean/azure-devops/0.12.2/azure-devops/gitops"
    );
    assert_eq!(
        datasource("shared"),
        "port-ocean/azure-devops/0.12.2/azure-devops/exporter"
    );

    send(vec![
        change(GITOPS_KIND, "shared", ChangeOp::Delete),
        change(GITOPS_KIND, "spec", ChangeOp::Delete),
    ])
    .await;
    wait(4).await;
    assert!(
        port.entity("service", "spec").is_none(),
        "GitOps deletes its own"
    );
    assert!(
        port.entity("service", "shared").is_some(),
        "a GitOps delete never removes an exporter entity"
    );
    shutdown.cancel();
    worker.await.expect("task").expect("clean stop");
}
