//! End to end: simulated Azure DevOps → ingest → bus → transform → bus → publish → simulated
//! Port, on the real RabbitMQ and on the in-process bus.

use adoport::pipeline::Roles;
use adoport_shared::topology::WorkQueue;
use adoport_sim::AdoSim;
use adoport_tests::{
    BusKind, Running, WEBHOOKS_ONLY, basic_auth, on_both_buses, port_reaches, repo_renamed_event,
    repository_titled, roles, signed_post, start, within,
};
use serde_json::{Value, json};
use std::time::Duration;

/// What the default mapping makes of a project (port-app-config.yaml, `kind: project`).
fn expected_project(project: &Value) -> Value {
    json!({
        "identifier": project["id"].as_str().expect("id").replace(' ', ""),
        "title": project["name"],
        "properties": {
            "state": project["state"],
            "revision": project["revision"],
            "visibility": project["visibility"],
            "defaultTeam": project["defaultTeam"]["name"],
            "link": project["url"].as_str().expect("url").replace("_apis/projects/", ""),
        },
    })
}

/// What the default mapping makes of a repository (`kind: repository`, with `includedFiles`
/// README.md and CODEOWNERS read from the default branch).
fn expected_repository(ado: &AdoSim, repository: &Value) -> Value {
    let id = repository["id"].as_str().expect("id");
    json!({
        "identifier": id,
        "title": repository["name"],
        "properties": {
            "url": repository["remoteUrl"],
            // A file the repository lacks is "", as the Python integration writes it.
            "readme": ado.file(id, "README.md").unwrap_or_default(),
            "codeowners": ado.file(id, "CODEOWNERS").unwrap_or_default(),
        },
        "relations": {"project": repository["project"]["id"].as_str().expect("project id").replace(' ', "")},
    })
}

/// Asserts that `stored` (Port's entity) has every field of `expected` with the same value.
fn assert_entity(stored: &Value, expected: &Value) {
    let id = &expected["identifier"];
    assert_eq!(&stored["identifier"], id);
    assert_eq!(stored["title"], expected["title"], "title of {id}");
    for section in ["properties", "relations"] {
        if let Some(fields) = expected[section].as_object() {
            for (name, value) in fields {
                assert_eq!(&stored[section][name], value, "{section}.{name} of {id}");
            }
        }
    }
}

async fn resync_lands_exactly_the_expected_entities(kind: BusKind) {
    let mut running = start("resync", kind, Roles::ALL, 3, 4, &[]).await;
    let report = running.resync_settled().await;
    assert_eq!(report.kinds["project"].items, 3);
    assert_eq!(report.kinds["repository"].items, 12);
    assert!(report.failed_kinds().is_empty(), "{report:?}");

    let port = &running.world.port;
    let projects = running.world.ado.projects();
    let repositories = running.world.ado.repositories();
    assert_eq!(port.entities("azureDevopsProject").len(), projects.len());
    assert_eq!(
        port.entities("azureDevopsRepository").len(),
        repositories.len()
    );
    assert_eq!(
        port.entity_count(),
        projects.len() + repositories.len(),
        "nothing else was written"
    );
    for project in &projects {
        let expected = expected_project(project);
        let id = expected["identifier"].as_str().expect("id");
        let stored = port
            .entity("azureDevopsProject", id)
            .unwrap_or_else(|| panic!("project {id} in Port"));
        assert_entity(&stored, &expected);
    }
    for repository in &repositories {
        let expected = expected_repository(&running.world.ado, repository);
        let id = expected["identifier"].as_str().expect("id");
        let stored = port
            .entity("azureDevopsRepository", id)
            .unwrap_or_else(|| panic!("repository {id} in Port"));
        assert_entity(&stored, &expected);
    }
    // Ownership: written with the Python integration's datasource format.
    let any = port.entity(
        "azureDevopsProject",
        expected_project(&projects[0])["identifier"]
            .as_str()
            .expect("id"),
    );
    let datasource = any.expect("project")["$datasource"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        datasource.starts_with("port-ocean/azure-devops/")
            && datasource.ends_with("/azure-devops/exporter"),
        "{datasource}"
    );
    assert_eq!(running.pipeline.transform_stats.item_failures(), 0);

    // Raw data examples (OCEAN__SEND_RAW_DATA_EXAMPLES defaults to true, as in Ocean): the
    // first page of each kind (one project's 4 repositories; at most 5), as the mapping sees them.
    let examples_sent = port
        .wait_for(
            |port| port.examples("repository").len() == 4 && port.examples("project").len() == 3,
            Duration::from_secs(30),
        )
        .await;
    assert!(
        examples_sent,
        "examples: {} repository, {} project",
        port.examples("repository").len(),
        port.examples("project").len()
    );
    for example in port.examples("repository") {
        // Stamped as the Python integration does: a loopback host's name is its URL.
        assert_eq!(
            example["__organizationName"], example["__organizationUrl"],
            "{example}"
        );
        assert!(
            (example["__organizationUrl"].as_str()).is_some_and(|u| u.ends_with("/acme")),
            "{example}"
        );
        assert!(
            repositories.iter().any(|r| r["id"] == example["id"]),
            "{example}"
        );
    }
    running.stop().await;
}

on_both_buses!(
    resync_lands_exactly_the_expected_entities:
    resync_lands_exactly_the_expected_entities_on_rabbitmq,
    resync_lands_exactly_the_expected_entities_in_process
);

async fn webhook_updates_one_entity(kind: BusKind) {
    let mut running = start("webhook", kind, Roles::ALL, 2, 2, &[]).await;
    running.resync_settled().await;
    let before = running.world.port.total_requests();
    let writes_before = entity_write_requests(&running.world.port);
    let repository = running.world.ado.repositories().remove(0);
    let id = repository["id"].as_str().expect("id").to_string();
    running.world.ado.rename_repository(&id, "renamed-in-ado");

    let answer = running.post_event(&repo_renamed_event(&repository)).await;
    assert_eq!(answer.status().as_u16(), 200);

    let port = &running.world.port;
    port_reaches(port, 30, "the rename", |p| {
        repository_titled(p, &id, "renamed-in-ado")
    })
    .await;
    // One entity changed: one write request, the other entities were not written again.
    assert_eq!(entity_write_requests(port) - writes_before, 1);
    assert!(
        port.total_requests() - before <= 3,
        "one upsert (plus at most a token refresh)"
    );
    running.stop().await;
}

on_both_buses!(
    webhook_updates_one_entity: webhook_updates_one_entity_on_rabbitmq,
    webhook_updates_one_entity_in_process
);

/// Ingest alone, live events only: what it queues is left in the raw queue to count.
#[tokio::test]
async fn no_raw_data_examples_when_turned_off() {
    let mut running = start(
        "no-examples",
        BusKind::Memory,
        Roles::ALL,
        2,
        2,
        &[("OCEAN__SEND_RAW_DATA_EXAMPLES", "false")],
    )
    .await;
    running.resync_settled().await;
    running.wait_for_entity_count(2 + 4).await;
    // The coordinator handles control messages in order: once it reconciled this resync
    // (after its last progress message), an example sent at the start would be in Port.
    port_reaches(&running.world.port, 30, "the resync reconciled", |port| {
        port.resync_states()
            .iter()
            .any(|state| state["status"] == "completed")
    })
    .await;
    assert!(running.world.port.examples("repository").is_empty());
    assert!(running.world.port.examples("project").is_empty());
    running.stop().await;
}

async fn ingest_only(kind: BusKind) -> Running {
    start("badinput", kind, roles::INGEST, 1, 1, &[WEBHOOKS_ONLY]).await
}

async fn bad_webhooks_get_clear_answers_and_nothing_is_queued(kind: BusKind) {
    let running = ingest_only(kind).await;
    let url = running.webhook();
    let http = reqwest::Client::new();
    let repository = running.world.ado.repositories().remove(0);

    let malformed = signed_post(&http, url)
        .header("content-type", "application/json")
        .body("{\"eventType\": \"git.push\", ")
        .send()
        .await
        .expect("answered");
    assert_eq!(malformed.status().as_u16(), 400);
    let not_an_envelope = signed_post(&http, url)
        .json(&json!({"eventType": "git.push", "publisherId": "tfs"}))
        .send()
        .await
        .expect("answered");
    assert_eq!(not_an_envelope.status().as_u16(), 400);
    let body: Value = not_an_envelope.json().await.expect("json error");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("resource"),
        "{body}"
    );

    let unauthenticated = http
        .post(url)
        .json(&repo_renamed_event(&repository))
        .send()
        .await
        .expect("answered");
    assert_eq!(unauthenticated.status().as_u16(), 401);
    let wrong_secret = http
        .post(url)
        .header("Authorization", basic_auth("not-the-secret"))
        .json(&repo_renamed_event(&repository))
        .send()
        .await
        .expect("answered");
    assert_eq!(wrong_secret.status().as_u16(), 401);
    let too_large = signed_post(&http, url)
        .header("content-type", "application/json")
        .body(vec![b' '; 5 * 1024 * 1024])
        .send()
        .await
        .expect("answered");
    assert_eq!(too_large.status().as_u16(), 413);
    assert_eq!(running.ready(WorkQueue::Raw).await, 0, "nothing queued");

    // The same request with credentials is queued: the counter above can see a message.
    let good = running.post_event(&repo_renamed_event(&repository)).await;
    assert_eq!(good.status().as_u16(), 200);
    within(10, "the event in the raw queue", async {
        while running.ready(WorkQueue::Raw).await != 1 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    running.stop().await;
}

on_both_buses!(
    bad_webhooks_get_clear_answers_and_nothing_is_queued:
    bad_webhooks_get_clear_answers_and_nothing_is_queued_on_rabbitmq,
    bad_webhooks_get_clear_answers_and_nothing_is_queued_in_process
);

/// Requests that wrote entities (upserts, bulk or single, and deletes; not searches).
fn entity_write_requests(port: &adoport_sim::port::PortSim) -> u64 {
    port.requests()
        .iter()
        .filter(|(route, _)| route.contains("/entities") && !route.contains("search"))
        .map(|(_, n)| n)
        .sum()
}
