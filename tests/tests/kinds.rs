//! The full reference default mapping through the whole pipeline (real RabbitMQ): every
//! blueprint it maps gets entities, and every property it maps is filled for the simulator's
//! data.

use adoport::pipeline::Roles;
use adoport::sim::default_mapping;
use adoport_tests::{BusKind, Start, ado_requests_on, port_reaches, work_item_event};

/// Azure DevOps' route that reads one work item.
const WORK_ITEM_READ: &str = "GET /{org}/_apis/wit/workitems/{id}";

#[tokio::test]
async fn the_full_default_mapping_fills_every_mapped_property() {
    let mapping = default_mapping(None).expect("default mapping");
    let mut running = Start::new("kinds-default-mapping", BusKind::Rabbit, Roles::ALL)
        .organization(3, 4)
        .mapping(mapping.clone())
        .run()
        .await;
    running.resync_settled_without_failures().await;

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

#[tokio::test]
async fn work_item_events_update_and_delete_the_right_entity() {
    let mapping = default_mapping(Some(&["project", "work-item"])).expect("default mapping");
    let mut running = Start::new("kinds-work-item-events", BusKind::Rabbit, Roles::ALL)
        .organization(1, 1)
        .mapping(mapping)
        .run()
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

    // workitem.updated: `resource.id` is the update's number (4), the item is `workItemId`.
    let updated = running
        .post_event(&work_item_event(
            "workitem.updated",
            project_id,
            4,
            serde_json::json!({"id": 4, "workItemId": id, "rev": 4}),
        ))
        .await;
    assert_eq!(updated.status().as_u16(), 200);

    // workitem.deleted: the entity goes, found by the full identifier.
    assert!(running.world.ado.remove_work_item(id));
    let deleted = running
        .post_event(&work_item_event(
            "workitem.deleted",
            project_id,
            id,
            serde_json::json!({"id": id, "fields": {"System.Title": "gone"}}),
        ))
        .await;
    assert_eq!(deleted.status().as_u16(), 200);
    port_reaches(port, 30, &format!("work item {identifier} deleted"), |p| {
        p.entity("azureDevopsWorkItem", &identifier).is_none()
    })
    .await;
    assert_eq!(
        port.entities("azureDevopsWorkItem").len(),
        work_items.len() - 1,
        "only that work item"
    );
    // The update was read back (by the work item's id: the update's id would 404 and delete
    // the wrong entity, which the count above rules out), the delete too (only Azure DevOps'
    // 404 deletes), and nothing failed.
    let reads = ado_requests_on(&running.world.ado, WORK_ITEM_READ);
    assert_eq!(reads, 2, "the update and the delete re-read the work item");
    let stats = running.pipeline.publish_stats.snapshot();
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    running.stop().await;
}
