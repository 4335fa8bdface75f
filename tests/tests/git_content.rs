//! Files through the whole pipeline (real RabbitMQ): a resync publishes the files a selector
//! names, and a multi-commit `git.push` adds and deletes the right entities in Port.

use std::time::Duration;

use adoport::pipeline::Roles;
use adoport_sim::ado::{FileChange, SimCommit};
use adoport_tests::{BusKind, Start};
use serde_json::json;

/// Files of `docs/` as repository-blueprint entities (a blueprint the Port simulator knows).
fn file_mapping() -> serde_json::Value {
    json!({
        "resources": [{
            "kind": "file",
            "selector": {"query": "true", "files": {"path": "docs/*.md"}},
            "port": {"entity": {"mappings": {
                "identifier": ".repo.name + \"/\" + .file.path",
                "title": ".file.path",
                "blueprint": "\"azureDevopsRepository\"",
                "properties": {"readme": ".file.content.raw"},
            }}},
        }]
    })
}

#[tokio::test]
async fn a_push_adds_and_removes_file_entities() {
    let mut running = Start::new("git-content-push", BusKind::Rabbit, Roles::ALL)
        .organization(1, 2)
        .mapping(file_mapping())
        .run()
        .await;
    running.resync_settled_without_failures().await;
    let port = &running.world.port;
    // docs/README.md and docs/guide.md of both repositories.
    assert_eq!(port.entities("azureDevopsRepository").len(), 4);
    assert!(
        port.entity("azureDevopsRepository", "repo-0-0/docs/guide.md")
            .is_some()
    );

    let repository = running.repository_id(|r| r["name"] == "repo-0-0");
    let pushed = running
        .world
        .ado
        .push(
            &repository,
            "main",
            vec![
                SimCommit::new(
                    "remove the guide",
                    vec![FileChange::delete("docs/guide.md")],
                ),
                SimCommit::new("new page", vec![FileChange::put("docs/new.md", "# New\n")]),
            ],
        )
        .expect("pushed");
    let answer = running.post_event(&pushed.webhook).await;
    assert_eq!(answer.status().as_u16(), 200);
    let landed = port
        .wait_for(
            |p| {
                p.entity("azureDevopsRepository", "repo-0-0/docs/new.md")
                    .is_some()
                    && p.entity("azureDevopsRepository", "repo-0-0/docs/guide.md")
                        .is_none()
            },
            Duration::from_secs(30),
        )
        .await;
    assert!(
        landed,
        "{:?}",
        port.entities("azureDevopsRepository")
            .iter()
            .map(|e| e["identifier"].clone())
            .collect::<Vec<_>>()
    );
    let new = port
        .entity("azureDevopsRepository", "repo-0-0/docs/new.md")
        .expect("new file entity");
    assert_eq!(new["properties"]["readme"], "# New\n");
    assert_eq!(port.entities("azureDevopsRepository").len(), 4);
    running.stop().await;
}
