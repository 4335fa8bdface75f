//! `adoport all` survives a mapping that runs away. Every repository's `readme` recurses
//! without end (`def f: 1 + f; f`), which used to overflow the stack and abort the whole
//! process, webhooks included. Now the resync completes, the projects land, each repository
//! is dead-lettered with the expression's path and its id, reconciliation is told the items
//! failed, and the webhook receiver still answers — in this very process.

use adoport::pipeline::Roles;
use adoport_shared::messages::{RawEvent, decode};
use adoport_shared::topology::DeadLetterQueue;
use adoport_tests::{BusKind, Start, repo_renamed_event, test_mapping};
use serde_json::Value;

/// The test mapping with the repository's `readme` replaced by an endless recursion; returns
/// the mapping and the path of that expression.
fn runaway_mapping() -> (Value, String) {
    let mut mapping = test_mapping();
    let resources = mapping["resources"].as_array_mut().expect("resources");
    let index = resources
        .iter()
        .position(|r| r["kind"] == "repository")
        .expect("a repository resource");
    resources[index]["port"]["entity"]["mappings"]["properties"]["readme"] =
        Value::String("def f: 1 + f; f".into());
    let path = format!("resources[{index}].port.entity.mappings.properties.readme");
    (mapping, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_mapping_fails_its_items_and_the_process_carries_on() {
    let (mapping, path) = runaway_mapping();
    // Small limits, through the settings, so that the test is quick.
    let limits = [
        ("ADOPORT__TRANSFORM__JQ_MAX_STACK_MIB", "1"),
        ("ADOPORT__TRANSFORM__JQ_MAX_STEPS", "100000"),
        ("ADOPORT__TRANSFORM__JQ_ITEM_TIME_MS", "500"),
    ];
    let mut running = Start::new("runaway", BusKind::Memory, Roles::ALL)
        .organization(2, 2)
        .extra(&limits)
        .mapping(mapping)
        .run()
        .await;
    let report = running.resync_settled().await;
    assert_eq!(report.kinds["repository"].items, 4);

    let port = &running.world.port;
    let repositories = running.world.ado.repositories();
    running.wait_for_entity_count(2).await;
    assert_eq!(port.entities("azureDevopsProject").len(), 2);
    assert!(port.entities("azureDevopsRepository").is_empty());
    let stats = &running.pipeline.transform_stats;
    assert_eq!(stats.items_dead_lettered(), 4);
    assert_eq!(stats.item_failures(), 4, "reconciliation is told");

    // Each repository is parked with the reason.
    let letters = running
        .bus
        .drain_dead_letters(DeadLetterQueue::Raw, 10)
        .await
        .expect("drain");
    let mut parked = Vec::new();
    for letter in letters {
        let event: RawEvent = decode(&letter.body).expect("a raw event");
        for item in &event.items {
            let id = item["id"].as_str().expect("id");
            assert!(
                letter.reason.contains(&path)
                    && letter.reason.contains(&format!("(repository {id})"))
                    && letter
                        .reason
                        .contains("ADOPORT__TRANSFORM__JQ_MAX_STACK_MIB"),
                "{}",
                letter.reason
            );
            parked.push(id.to_string());
        }
    }
    parked.sort();
    let mut expected: Vec<String> = repositories
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect();
    expected.sort();
    assert_eq!(parked, expected);

    // The webhook receiver, in the same process, still answers; its item is parked too.
    let settled = stats.events_settled();
    let answer = running
        .post_event(&repo_renamed_event(&repositories[0]))
        .await;
    assert_eq!(answer.status().as_u16(), 200);
    running
        .transform_settled(settled + 1, "the webhook's item to be dead-lettered")
        .await;
    assert_eq!(stats.items_dead_lettered(), 5);
    running.stop().await;
}
