//! The reference mappings' resources for the pipeline, build, test and security kinds through
//! the whole pipeline (real RabbitMQ): every property they map is filled for the simulator's
//! data. The reference default mapping maps none of these kinds today; its resources of them
//! are included should it gain some.

use adoport::pipeline::Roles;
use adoport::sim::default_mapping;
use adoport_tests::{BusKind, Start};
use serde_json::Value;

const EXAMPLE_MAPPINGS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/ocean-azure-devops/mapping-example/example-mappings.yaml"
);

/// The kinds this test covers.
const KINDS: &[&str] = &[
    "pipeline",
    "build",
    "pipeline-run",
    "pipeline-stage",
    "pipeline-deployment",
    "test-run",
    "advanced-security-alert",
];

fn resources_of_kinds(mapping: &Value) -> Vec<Value> {
    mapping["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter(|r| r["kind"].as_str().is_some_and(|k| KINDS.contains(&k)))
        .cloned()
        .collect()
}

#[tokio::test]
async fn the_reference_mappings_fill_every_property_of_the_pipeline_kinds() {
    let text = std::fs::read_to_string(EXAMPLE_MAPPINGS).expect("mapping example");
    let mut mapping: Value = serde_saphyr::from_str(&text).expect("mapping example parses");
    let mut resources = resources_of_kinds(&default_mapping(None).expect("default mapping"));
    resources.extend(resources_of_kinds(&mapping));
    let kinds: Vec<&str> = resources
        .iter()
        .filter_map(|r| r["kind"].as_str())
        .collect();
    for kind in [
        "build",
        "pipeline-run",
        "pipeline-stage",
        "pipeline-deployment",
    ] {
        assert!(kinds.contains(&kind), "the reference maps {kind}");
    }
    mapping["resources"] = Value::Array(resources.clone());

    let mut running = Start::new("kinds-pipelines-reference", BusKind::Rabbit, Roles::ALL)
        .mapping(mapping)
        .run()
        .await;
    running.resync_settled_without_failures().await;

    for resource in &resources {
        let mappings = &resource["port"]["entity"]["mappings"];
        let blueprint = mappings["blueprint"]
            .as_str()
            .expect("blueprint")
            .trim_matches(|c| c == '\'' || c == '"');
        let properties = mappings["properties"].as_object().into_iter().flatten();
        running.assert_properties_filled(blueprint, properties.map(|(name, _)| name.as_str()));
    }
    // `leadTimeHours` comes from `__firstCommit`, which the build resource asks for.
    let builds = running.world.port.entities("build");
    assert!(
        builds
            .iter()
            .all(|b| b["properties"]["leadTimeHours"].is_number()),
        "every simulated build has a first commit: {:?}",
        builds.first()
    );
    running.stop().await;
}
