//! Resources of one kind with different selectors, through the whole pipeline (real RabbitMQ):
//! each resource is crawled with its own selector and its items are mapped by it alone, as the
//! Python integration runs each resource on its own. Resources whose selectors are identical
//! (but for `query`) share one crawl; a push's file changes reach only the resources whose
//! paths take them.

use std::collections::BTreeSet;
use std::time::Duration;

use adoport::pipeline::Roles;
use adoport_sim::ado::{FileChange, SimCommit};
use adoport_tests::{BusKind, Start, ado_requests_on};
use serde_json::{Value, json};

/// Azure DevOps' WIQL route: one request per project and work-item crawl unit.
const WIQL: &str = "POST /{org}/{project}/_apis/wit/wiql";

fn resource(kind: &str, selector: Value, identifier: &str, blueprint: &str) -> Value {
    json!({
        "kind": kind,
        "selector": selector,
        "port": {"entity": {"mappings": {
            "identifier": identifier,
            "title": identifier,
            "blueprint": format!("\"{blueprint}\""),
            "properties": {"raw": ".file.content.raw // null"},
        }}},
    })
}

/// Two work-item resources with different wiql (and a third sharing the first's), two file
/// resources with different paths and blueprints.
fn mapping() -> Value {
    let work_item = ".id | tostring";
    let file = ".repo.name + \"/\" + .file.path";
    json!({
        "specPath": [],
        "resources": [
            resource("work-item", json!({"query": "true", "wiql": "[System.State] = 'Active'"}), work_item, "activeWorkItem"),
            resource("work-item", json!({"query": "true", "wiql": "[System.State] = 'Closed'"}), work_item, "closedWorkItem"),
            resource("file", json!({"query": "true", "files": {"path": "port.yml"}}), file, "service"),
            resource("work-item", json!({"query": ".fields[\"System.WorkItemType\"] == \"Bug\"", "wiql": "[System.State] = 'Active'"}), work_item, "activeBug"),
            resource("file", json!({"query": "true", "files": {"path": "service.json"}}), file, "npmPackage"),
        ],
    })
}

fn identifiers(port: &adoport_sim::PortSim, blueprint: &str) -> BTreeSet<String> {
    (port.entities(blueprint).iter())
        .filter_map(|e| e["identifier"].as_str().map(String::from))
        .collect()
}

#[tokio::test]
async fn each_resource_gets_exactly_the_entities_of_its_own_selector() {
    let mut running = Start::new("per-resource", BusKind::Rabbit, Roles::ALL)
        .organization(1, 2)
        .mapping(mapping())
        .run()
        .await;
    let report = running.resync_settled_without_failures().await;
    assert_eq!(
        report.kinds.keys().collect::<Vec<_>>(),
        ["file#2", "file#4", "work-item#0,3", "work-item#1"],
        "one crawl per distinct selector"
    );
    let port = &running.world.port;

    let work_items = running.world.ado.work_items();
    let ids = |keep: &dyn Fn(&Value) -> bool| -> BTreeSet<String> {
        (work_items.iter())
            .filter(|w| keep(w))
            .filter_map(|w| w["id"].as_u64().map(|id| id.to_string()))
            .collect()
    };
    let state = |w: &Value, s: &str| w["fields"]["System.State"] == s;
    let active = ids(&|w| state(w, "Active"));
    let closed = ids(&|w| state(w, "Closed"));
    let active_bugs = ids(&|w| state(w, "Active") && w["fields"]["System.WorkItemType"] == "Bug");
    assert!(!active.is_empty() && !closed.is_empty() && !active_bugs.is_empty());
    assert_eq!(identifiers(port, "activeWorkItem"), active);
    assert_eq!(identifiers(port, "closedWorkItem"), closed);
    assert_eq!(identifiers(port, "activeBug"), active_bugs);

    let files = |path: &str| -> BTreeSet<String> {
        ["repo-0-0", "repo-0-1"]
            .iter()
            .map(|repo| format!("{repo}/{path}"))
            .collect()
    };
    assert_eq!(identifiers(port, "service"), files("port.yml"));
    assert_eq!(identifiers(port, "npmPackage"), files("service.json"));
    // Nothing else: no entity of one resource's items under another resource's blueprint.
    assert_eq!(
        port.entity_count(),
        active.len() + closed.len() + active_bugs.len() + 4,
        "no cross-blueprint entities"
    );
    // The two resources with the same wiql shared one query per project.
    assert_eq!(ado_requests_on(&running.world.ado, WIQL), 2);

    // A push changing port.yml and service.json: each file updates its own resource's entity.
    let repository = running.repository_id(|r| r["name"] == "repo-0-0");
    let pushed = running
        .world
        .ado
        .push(
            &repository,
            "main",
            vec![SimCommit::new(
                "both",
                vec![
                    FileChange::put("port.yml", "service:\n  name: pushed\n"),
                    FileChange::put("service.json", "{\"name\": \"pushed\"}"),
                ],
            )],
        )
        .expect("pushed");
    let answer = running.post_event(&pushed.webhook).await;
    assert_eq!(answer.status().as_u16(), 200);
    let raw = |blueprint: &str, identifier: &str| {
        (port.entity(blueprint, identifier)).map(|e| e["properties"]["raw"].clone())
    };
    let landed = port
        .wait_for(
            |_| {
                raw("service", "repo-0-0/port.yml") == Some(json!("service:\n  name: pushed\n"))
                    && raw("npmPackage", "repo-0-0/service.json")
                        == Some(json!("{\"name\": \"pushed\"}"))
            },
            Duration::from_secs(30),
        )
        .await;
    assert!(landed, "{:?}", port.entities("service"));
    // Still one entity per file, under its own resource's blueprint only.
    assert_eq!(identifiers(port, "service"), files("port.yml"));
    assert_eq!(identifiers(port, "npmPackage"), files("service.json"));
    running.stop().await;
}

#[tokio::test]
async fn a_failed_crawl_unit_deletes_nothing() {
    let mut running = Start::new("per-resource-failed-unit", BusKind::Rabbit, Roles::ALL)
        .organization(1, 2)
        .mapping(mapping())
        .run()
        .await;
    running.resync_settled_without_failures().await;
    let port = &running.world.port;
    let first = |blueprint: &str| -> String {
        identifiers(port, blueprint)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("a {blueprint} entity"))
    };
    // Gone from Azure DevOps: an item of the unit that will fail, and a file of a unit that
    // will not (its push is never delivered: only the resync can see it).
    let active = first("activeWorkItem");
    assert!((running.world.ado).remove_work_item(active.parse().expect("numeric id")));
    let repository = running.repository_id(|r| r["name"] == "repo-0-1");
    (running.world.ado)
        .push(
            &repository,
            "main",
            vec![SimCommit::new("drop", vec![FileChange::delete("port.yml")])],
        )
        .expect("pushed");
    // The next crawl's first WIQL query — the Active unit's (resources 0 and 3) — is refused.
    running
        .world
        .ado
        .fail_next(WIQL, vec![adoport_sim::ScriptedAnswer::status(400)]);
    let resync_id = running.request_resync().await;
    let done = adoport_tests::within(60, "the crawl", running.pipeline.next_resync())
        .await
        .expect("pipeline running");
    let report = done.report.expect("crawl ran");
    assert_eq!(report.failed_kinds(), vec!["work-item#0,3"], "{report:?}");
    let summary = running.resync_summary(60, resync_id).await;
    assert_eq!(summary.status, "failed", "{summary:?}");
    assert_eq!(summary.deleted, 0);
    let port = &running.world.port;
    assert!(port.entity("activeWorkItem", &active).is_some());
    assert!(
        port.entity("service", "repo-0-1/port.yml").is_some(),
        "not even the stale entities of a unit crawled whole"
    );
    running.stop().await;
}
