//! The reference mapping example's `iteration` resource through the whole pipeline (real
//! RabbitMQ): the properties it maps are filled from the crawled iterations. (The example's
//! only mapping of the organization/team/identity kinds; its `iterationKind` reads
//! `.__iterationKind`, which the Python integration never sets, so it stays empty there too.)
//! And `excludedTags` end to end: a tagged project's work items are neither crawled nor
//! updated by live events.

use adoport::pipeline::Roles;
use adoport::sim::default_mapping;
use adoport_tests::{BusKind, Start, ado_requests_on, work_item_event};
use serde_json::{Value, json};

const EXAMPLE_MAPPINGS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/ocean-azure-devops/mapping-example/example-mappings.yaml"
);

#[tokio::test]
async fn the_example_iteration_mapping_fills_its_properties() {
    let text = std::fs::read_to_string(EXAMPLE_MAPPINGS).expect("example mappings");
    let mut mapping: Value = serde_saphyr::from_str(&text).expect("example mappings parse");
    if let Some(Value::Array(resources)) = mapping.get_mut("resources") {
        resources.retain(|r| r["kind"] == "iteration");
    }
    assert_eq!(mapping["resources"].as_array().map(Vec::len), Some(1));
    let mut running = Start::new("org-kinds-iteration", BusKind::Rabbit, Roles::ALL)
        .organization(3, 1)
        .mapping(mapping)
        .run()
        .await;
    running.resync_settled_without_failures().await;
    running.wait_for_entity_count(9).await;
    let iterations = running.world.port.entities("iteration");
    assert_eq!(
        iterations.len(),
        9,
        "three sprints in each of three projects"
    );
    let projects: Vec<String> = running
        .world
        .ado
        .projects()
        .iter()
        .filter_map(|p| p["id"].as_str().map(String::from))
        .collect();
    for entity in &iterations {
        for property in ["name", "path", "timeFrame"] {
            assert!(
                entity["properties"][property].is_string(),
                "{property} of {entity}"
            );
        }
        let project = entity["relations"]["project"].as_str().unwrap_or_default();
        assert!(projects.iter().any(|p| p == project), "{entity}");
    }
    running.stop().await;
}

#[tokio::test]
async fn excluded_tags_keep_a_tagged_project_out_of_resyncs_and_live_events() {
    let mapping = default_mapping(Some(&["project", "work-item"])).expect("default mapping");
    let mut running = Start::new("org-kinds-excluded-tags", BusKind::Rabbit, Roles::ALL)
        .organization(3, 1)
        .extra(&[("OCEAN__INTEGRATION__CONFIG__EXCLUDED_TAGS", "[\"legacy\"]")])
        .mapping(mapping)
        .run()
        .await;
    running.resync_settled_without_failures().await;
    let projects = running.world.ado.projects();
    let tagged = projects[0]["id"].as_str().expect("id").to_string();
    let kept = projects[1]["id"].as_str().expect("id").to_string();
    let port = &running.world.port;
    let work_items = port.entities("azureDevopsWorkItem");
    assert_eq!(
        work_items.len(),
        12,
        "six work items in each untagged project"
    );
    assert!(
        work_items.iter().all(|w| !w["identifier"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&tagged)),
        "no work item of the tagged project"
    );

    // Ingest's answer to a `workitem.updated` of work item `id` in project `project_id`.
    let update = |project_id: &str, id: u64| {
        let event = work_item_event(
            "workitem.updated",
            project_id,
            id,
            json!({"id": 1, "workItemId": id, "rev": 2}),
        );
        let running = &running;
        async move {
            let answer: Value = running.post_event(&event).await.json().await.expect("json");
            answer
        }
    };
    // Work items 1–6 belong to project 0, 7–12 to project 1.
    let ignored = update(&tagged, 1).await;
    assert_eq!(ignored["status"], "ignored", "{ignored}");
    let queued = update(&kept, 7).await;
    assert_eq!(queued["status"], "queued", "{queued}");
    let reads = ado_requests_on(&running.world.ado, "GET /{org}/_apis/wit/workitems/{id}");
    assert_eq!(
        reads, 1,
        "only the untagged project's work item is read back"
    );
    running.stop().await;
}
