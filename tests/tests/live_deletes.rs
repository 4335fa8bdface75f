//! Deletes are never taken on trust, end to end (the whole pipeline on the real RabbitMQ,
//! simulated Azure DevOps and Port, no webhook secret — the Python integration's default): a
//! forged delete of an object Azure DevOps still has leaves its entity in Port with the
//! object's current data; a delete Azure DevOps made removes the entity; a delete that arrives
//! after the object was restored changes nothing. For repositories, work items and pull
//! requests.

use adoport::pipeline::Roles;
use adoport::sim::default_mapping;
use adoport_tests::{BusKind, Running, Start, entity_titled, port_reaches};
use serde_json::{Value, json};

/// The default mapping's projects, repositories and work items, plus pull requests.
fn mapping() -> Value {
    let mut mapping =
        default_mapping(Some(&["project", "repository", "work-item"])).expect("default mapping");
    let pull_requests = json!({
        "kind": "pull-request",
        "selector": {"query": "true"},
        "port": {"entity": {"mappings": {
            "identifier": ".pullRequestId | tostring",
            "title": ".title",
            "blueprint": "\"azureDevopsPullRequest\"",
            "properties": {"status": ".status"},
        }}},
    });
    mapping["resources"]
        .as_array_mut()
        .expect("resources")
        .push(pull_requests);
    mapping
}

/// Posts `envelope` without credentials and expects 200.
async fn deliver(running: &Running, envelope: &Value) {
    let answer = reqwest::Client::new()
        .post(running.webhook_url.as_deref().expect("ingest runs"))
        .json(envelope)
        .send()
        .await
        .expect("webhook answered");
    let status = answer.status().as_u16();
    let body: Value = answer.json().await.expect("JSON answer");
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn only_azure_devops_deletes_entities_through_live_events() {
    let mut running = Start::new("live-deletes", BusKind::Rabbit, Roles::ALL)
        .organization(2, 2)
        .extra(&[("OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET", "")])
        .mapping(mapping())
        .run()
        .await;
    running.resync_settled().await;
    let ado = &running.world.ado;
    let port = &running.world.port;
    let repository = |name: &str| running.repository_id(|r| r["name"] == name);
    let repo = "azureDevopsRepository";
    let (a, b, c) = (
        repository("repo-0-0"),
        repository("repo-0-1"),
        repository("repo-1-0"),
    );
    port_reaches(port, 30, "the crawled repositories", |p| {
        [&a, &b, &c].iter().all(|id| p.entity(repo, id).is_some())
    })
    .await;

    // Forged: the request for a repository Azure DevOps still has.
    ado.rename_repository(&a, "a-as-it-is-now");
    let forged = json!({"eventType": "git.repo.deleted", "publisherId": "tfs", "resource": {"repository": {"id": a}}});
    deliver(&running, &forged).await;
    port_reaches(
        port,
        30,
        "repository a upserted with its current name",
        |p| entity_titled(p, repo, &a, "a-as-it-is-now"),
    )
    .await;

    // Deleted in Azure DevOps: the entity goes.
    let deleted_b = ado.repository_event("git.repo.deleted", &b).expect("b");
    assert!(ado.remove_repository(&b));
    deliver(&running, &deleted_b).await;
    port_reaches(port, 30, "repository b deleted", |p| {
        p.entity(repo, &b).is_none()
    })
    .await;

    // Deleted, restored (and renamed), then the delete arrives: the entity stays, current.
    let deleted_c = ado.repository_event("git.repo.deleted", &c).expect("c");
    assert!(ado.remove_repository(&c));
    assert!(ado.restore_repository(&c));
    ado.rename_repository(&c, "c-restored");
    deliver(&running, &deleted_c).await;
    port_reaches(port, 30, "repository c kept, as restored", |p| {
        entity_titled(p, repo, &c, "c-restored")
    })
    .await;

    // Work items, the same three ways.
    let work_item = "azureDevopsWorkItem";
    let project = ado.projects()[0]["id"].as_str().expect("id").to_string();
    let (w1, w2, w3) = (1, 2, 3);
    let identifier = |id: u64| format!("{project}/{id}");
    port_reaches(port, 30, "the crawled work items", |p| {
        [w1, w2, w3]
            .iter()
            .all(|id| p.entity(work_item, &identifier(*id)).is_some())
    })
    .await;
    let forged = ado.work_item_event("workitem.deleted", w1).expect("w1");
    assert!(ado.set_work_item_title(w1, "w1 as it is now"));
    deliver(&running, &forged).await;
    port_reaches(port, 30, "work item 1 upserted", |p| {
        entity_titled(p, work_item, &identifier(w1), "w1 as it is now")
    })
    .await;
    let deleted = ado.work_item_event("workitem.deleted", w2).expect("w2");
    assert!(ado.remove_work_item(w2));
    deliver(&running, &deleted).await;
    port_reaches(port, 30, "work item 2 deleted", |p| {
        p.entity(work_item, &identifier(w2)).is_none()
    })
    .await;
    let late = ado.work_item_event("workitem.deleted", w3).expect("w3");
    assert!(ado.remove_work_item(w3));
    assert!(ado.restore_work_item(w3));
    assert!(ado.set_work_item_title(w3, "w3 restored"));
    deliver(&running, &late).await;
    port_reaches(port, 30, "work item 3 kept, as restored", |p| {
        entity_titled(p, work_item, &identifier(w3), "w3 restored")
    })
    .await;

    // A pull request gone with its repository is deleted; back with it, upserted again.
    let pull_request = ado
        .pull_requests()
        .into_iter()
        .find(|pr| pr["repository"]["id"] == c.as_str())
        .expect("a pull request of repository c");
    let id = pull_request["pullRequestId"].as_u64().expect("id");
    let pr = "azureDevopsPullRequest";
    port_reaches(port, 30, "the crawled pull request", |p| {
        p.entity(pr, &id.to_string()).is_some()
    })
    .await;
    let updated = ado
        .pull_request_event("git.pullrequest.updated", id)
        .expect("event");
    assert!(ado.remove_repository(&c));
    deliver(&running, &updated).await;
    port_reaches(port, 30, "pull request deleted", |p| {
        p.entity(pr, &id.to_string()).is_none()
    })
    .await;
    assert!(ado.restore_repository(&c));
    deliver(&running, &updated).await;
    port_reaches(port, 30, "pull request back", |p| {
        p.entity(pr, &id.to_string()).is_some()
    })
    .await;

    // Nothing else was deleted on the way.
    assert!(port.entity(repo, &a).is_some() && port.entity(repo, &c).is_some());
    running.stop().await;
}
