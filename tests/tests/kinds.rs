//! The full reference default mapping through the whole pipeline (real RabbitMQ): every
//! blueprint it maps gets entities, and every property it maps is filled for the simulator's
//! data.

use adoport::pipeline::Roles;
use adoport::sim::default_mapping;
use adoport_tests::{BusKind, WEBHOOK_SECRET, basic_auth, start_with_mapping};

#[tokio::test]
async fn the_full_default_mapping_fills_every_mapped_property() {
    let mapping = default_mapping(None).expect("default mapping");
    let mut running = start_with_mapping(
        "kinds-default-mapping",
        BusKind::Rabbit,
        Roles::ALL,
        3,
        4,
        &[],
        mapping.clone(),
    )
    .await;
    let report = running.resync_settled().await;
    assert_eq!(report.failed_kinds(), Vec::<&str>::new(), "{report:?}");

    // blueprint → properties the mapping fills.
    let mut expected: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for resource in mapping["resources"].as_array().expect("resources") {
        let mappings = &resource["port"]["entity"]["mappings"];
        let blueprint = mappings["blueprint"]
            .as_str()
            .expect("blueprint")
            .trim_matches(|c| c == '\'' || c == '"')
            .to_string();
        let properties = expected.entry(blueprint).or_default();
        if let Some(map) = mappings["properties"].as_object() {
            properties.extend(map.keys().cloned());
        }
    }
    for (blueprint, properties) in &expected {
        running.assert_properties_filled(blueprint, properties.iter().map(String::as_str));
    }
    running.stop().await;
}

/// A service-hook envelope for a work item event, as Azure DevOps sends it.
fn work_item_event(
    event_type: &str,
    project_id: &str,
    resource: serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({
        "subscriptionId": "00000000-0000-0000-0000-00000000a002",
        "notificationId": 3,
        "id": format!("{event_type}-{}", resource["id"]),
        "eventType": event_type,
        "publisherId": "tfs",
        "resource": resource,
        "resourceVersion": "1.0",
        "resourceContainers": {"project": {"id": project_id}},
        "createdDate": "2026-01-12T09:00:01Z",
    })
}

#[tokio::test]
async fn work_item_events_update_and_delete_the_right_entity() {
    let mapping = default_mapping(Some(&["project", "work-item"])).expect("default mapping");
    let mut running = start_with_mapping(
        "kinds-work-item-events",
        BusKind::Rabbit,
        Roles::ALL,
        1,
        1,
        &[],
        mapping,
    )
    .await;
    running.resync_settled().await;
    let port = &running.world.port;
    let work_items = port.entities("azureDevopsWorkItem");
    assert!(!work_items.is_empty());
    // The default identifier is `{project id}/{work item id}`.
    let identifier = work_items[0]["identifier"]
        .as_str()
        .expect("id")
        .to_string();
    let (project_id, id) = identifier.split_once('/').expect("project/id");
    let id: u64 = id.parse().expect("numeric id");
    let http = reqwest::Client::new();
    let url = running.webhook_url.clone().expect("ingest runs");
    let send = |body: serde_json::Value| {
        http.post(&url)
            .header("Authorization", basic_auth(WEBHOOK_SECRET))
            .json(&body)
            .send()
    };

    // workitem.updated: `resource.id` is the update's number (4), the item is `workItemId`.
    let updated = send(work_item_event(
        "workitem.updated",
        project_id,
        serde_json::json!({"id": 4, "workItemId": id, "rev": 4}),
    ))
    .await
    .expect("answered");
    assert_eq!(updated.status().as_u16(), 200);

    // workitem.deleted: the entity goes, found by the full identifier.
    assert!(running.world.ado.remove_work_item(id));
    let deleted = send(work_item_event(
        "workitem.deleted",
        project_id,
        serde_json::json!({"id": id, "fields": {"System.Title": "gone"}}),
    ))
    .await
    .expect("answered");
    assert_eq!(deleted.status().as_u16(), 200);
    let gone = port
        .wait_for(
            |p| p.entity("azureDevopsWorkItem", &identifier).is_none(),
            std::time::Duration::from_secs(30),
        )
        .await;
    assert!(gone, "work item {identifier} deleted from Port");
    assert_eq!(
        port.entities("azureDevopsWorkItem").len(),
        work_items.len() - 1,
        "only that work item"
    );
    // The update was read back (by the work item's id: the update's id would 404 and delete
    // the wrong entity, which the count above rules out), the delete too (only Azure DevOps'
    // 404 deletes), and nothing failed.
    let reads = running
        .world
        .ado
        .requests()
        .get("GET /{org}/_apis/wit/workitems/{id}")
        .copied()
        .unwrap_or(0);
    assert_eq!(reads, 2, "the update and the delete re-read the work item");
    let stats = running.pipeline.publish_stats.snapshot();
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    running.stop().await;
}
