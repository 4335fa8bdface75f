//! The worker maps live (webhook) events with the live rules: an item that no longer passes the
//! selector, or a deletion, becomes a delete; a resync page never deletes.

use adoport_shared::bus::Destination;
use adoport_shared::messages::{
    ChangeOp, EntityChange, Origin, RawAction, RawEvent, ResyncId, WriteOptions, decode,
};
use adoport_shared::port_app_config::PortAppConfig;
use adoport_shared::topology::Topology;
use adoport_transform::mapping::CompiledMapping;
use adoport_transform::worker::{TransformStats, changes_for};
use serde_json::json;

const MAPPING: &str = r#"
resources:
  - kind: pull-request
    selector:
      query: .status == "active"
    port:
      entity:
        mappings:
          identifier: .pullRequestId | tostring
          blueprint: '"azureDevopsPullRequest"'
          properties:
            status: .status
"#;

fn ops(event: &RawEvent) -> Vec<(String, &'static str)> {
    let config = PortAppConfig::from_yaml_str(MAPPING).expect("parses");
    let mapping = CompiledMapping::compile(&config).expect("compiles");
    let topology = Topology::new("t", 4);
    changes_for(
        &mapping,
        event,
        WriteOptions::default(),
        &topology,
        &TransformStats::default(),
    )
    .0
    .into_iter()
    .filter(|o| matches!(o.destination, Destination::Change { .. }))
    .map(|o| {
        let change: EntityChange = decode(&o.body).expect("an entity change");
        let op = match change.op {
            ChangeOp::Upsert { .. } => "upsert",
            ChangeOp::Delete => "delete",
        };
        (change.identifier, op)
    })
    .collect()
}

fn webhook() -> Origin {
    Origin::Webhook {
        event_type: "git.pullrequest.updated".into(),
        delivery_id: "d1".into(),
    }
}

fn event(origin: Origin, action: RawAction, status: &str) -> RawEvent {
    RawEvent::new(
        "pull-request",
        origin,
        "https://dev.azure.com/o",
        action,
        vec![json!({"pullRequestId": 7, "status": status})],
    )
}

#[test]
fn live_event_that_no_longer_passes_the_selector_is_a_delete() {
    let out = ops(&event(webhook(), RawAction::Upsert, "completed"));
    assert_eq!(out, [("7".to_owned(), "delete")]);
    let out = ops(&event(webhook(), RawAction::Upsert, "active"));
    assert_eq!(out, [("7".to_owned(), "upsert")]);
}

#[test]
fn live_deletion_is_a_delete() {
    let out = ops(&event(webhook(), RawAction::Delete, "active"));
    assert_eq!(out, [("7".to_owned(), "delete")]);
}

#[test]
fn resync_item_that_does_not_pass_is_skipped_not_deleted() {
    let resync = Origin::Resync {
        resync_id: ResyncId::new(),
    };
    assert!(ops(&event(resync, RawAction::Upsert, "completed")).is_empty());
}
