//! The reference mapping example's `iteration` resource through the whole pipeline (real
//! RabbitMQ): the properties it maps are filled from the crawled iterations. (The example's
//! only mapping of the organization/team/identity kinds; its `iterationKind` reads
//! `.__iterationKind`, which the Python integration never sets, so it stays empty there too.)

use adoport::pipeline::Roles;
use adoport_tests::{BusKind, start_with_mapping};
use serde_json::Value;

const EXAMPLE_MAPPINGS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/reference/ocean-azure-devops/mapping-example/example-mappings.yaml"
);

#[tokio::test]
async fn the_example_iteration_mapping_fills_its_properties() {
    let text = std::fs::read_to_string(EXAMPLE_MAPPINGS).expect("example mappings");
    let mut mapping: Value = serde_saphyr::from_str(&text).expect("example mappings parse");
    if let Some(Value::Array(resources)) = mapping.get_mut("resources") {
        resources.retain(|r| r["kind"] == "iteration");
    }
    assert_eq!(mapping["resources"].as_array().map(Vec::len), Some(1));
    let mut running = start_with_mapping(
        "org-kinds-iteration",
        BusKind::Rabbit,
        Roles::ALL,
        3,
        1,
        &[],
        mapping,
    )
    .await;
    let report = running.resync_settled().await;
    assert_eq!(report.failed_kinds(), Vec::<&str>::new(), "{report:?}");
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
