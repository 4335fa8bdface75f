//! The full reference default mapping through the whole pipeline (real RabbitMQ): every
//! blueprint it maps gets entities, and every property it maps is filled for the simulator's
//! data.

use adoport::pipeline::Roles;
use adoport::sim::default_mapping;
use adoport_tests::{BusKind, start_with_mapping};

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
        let entities = running.world.port.entities(blueprint);
        assert!(!entities.is_empty(), "no {blueprint} entities");
        for property in properties {
            let filled = entities
                .iter()
                .filter(|e| !e["properties"][property].is_null())
                .count();
            assert!(
                filled > 0,
                "{blueprint}.{property} is null in every entity: {:?}",
                entities.first()
            );
        }
    }
    running.stop().await;
}
