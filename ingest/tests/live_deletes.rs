//! Deletes are never taken on trust: whatever an event says, what is published is what Azure
//! DevOps holds now. A forged delete (no webhook secret, the Python integration's default) or
//! a late one (the object was deleted, restored, and then the delete arrived) upserts the
//! object's current state; only Azure DevOps answering 404 for the object deletes it. Checked
//! for repositories, work items, pull requests, branches and files at ingest level: the raw
//! events the receiver queues.

mod support;

use adoport_shared::messages::RawAction;
use adoport_sim::ado::FileChange;
use serde_json::json;
use support::{Harness, harness, harness_in, items_of as items, push_commit, single, text};

fn repository_id(h: &Harness, name: &str) -> String {
    support::repository_id(&h.sim, name)
}

#[tokio::test]
async fn a_forged_repository_delete_upserts_what_azure_devops_has() {
    let mut h = harness(&[("repository", json!({"includedFiles": ["README.md"]}))]).await;
    let id = repository_id(&h, "repo-0-1");
    h.sim.rename_repository(&id, "still-here");
    // The request: no credentials, a bare repository id.
    let forged = json!({
        "eventType": "git.repo.deleted",
        "publisherId": "tfs",
        "resource": {"repository": {"id": id}},
    });
    let events = h.deliver(&forged).await;
    let repository = single(&events, "repository", RawAction::Upsert);
    let item = &repository.items[0];
    assert_eq!(item["id"], id.as_str());
    assert_eq!(item["name"], "still-here", "the current state: {item}");
    assert!(
        item["__includedFiles"]["README.md"]
            .as_str()
            .is_some_and(|text| text.contains("repo-0-1")),
        "enriched as the crawl does: {item}"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_repository_is_deleted_only_once_azure_devops_has_deleted_it() {
    let mut h = harness(&[("repository", json!({}))]).await;
    let id = repository_id(&h, "repo-1-0");
    let deleted = h
        .sim
        .repository_event("git.repo.deleted", &id)
        .expect("event");
    assert!(h.sim.remove_repository(&id));
    let events = h.deliver(&deleted).await;
    let repository = single(&events, "repository", RawAction::Delete);
    assert_eq!(repository.items[0]["id"], id.as_str());

    // Restored in Azure DevOps; the same delete arrives again, late: it changes nothing.
    assert!(h.sim.restore_repository(&id));
    let events = h.deliver(&deleted).await;
    let repository = single(&events, "repository", RawAction::Upsert);
    assert_eq!(repository.items[0]["name"], "repo-1-0");
    h.stop().await;
}

#[tokio::test]
async fn work_item_deletes_are_read_again_and_the_item_keeps_its_own_project() {
    let (mut h, project) = harness_in(&[("work-item", json!({}))], 0).await;
    let deleted = h
        .sim
        .work_item_event("workitem.deleted", 1)
        .expect("work item 1");

    // Forged: the work item exists, so its current state is upserted with its project.
    let events = h.deliver(&deleted).await;
    let item = &single(&events, "work-item", RawAction::Upsert).items[0];
    assert_eq!(item["id"], 1);
    assert_eq!(item["__projectId"], project.as_str());
    assert_eq!(item["__project"]["id"], project.as_str());

    // An event naming another project cannot hide it (ids are unique in the organization),
    // nor move it: it keeps its own project, found by name ("project 1" has a space).
    let mut elsewhere = h
        .sim
        .work_item_event("workitem.deleted", 7)
        .expect("work item 7, of project 1");
    elsewhere["resourceContainers"]["project"]["id"] = json!(project);
    let events = h.deliver(&elsewhere).await;
    let item = &single(&events, "work-item", RawAction::Upsert).items[0];
    assert_eq!(item["id"], 7);
    assert_eq!(item["__projectId"], h.project_id(1).as_str());
    assert_eq!(item["__project"]["name"], "project 1");

    // Deleted in Azure DevOps (TF401232): deleted, with what the identifier needs.
    assert!(h.sim.remove_work_item(1));
    let events = h.deliver(&deleted).await;
    let item = &single(&events, "work-item", RawAction::Delete).items[0];
    assert_eq!(item["id"], 1);
    assert_eq!(item["__project"]["id"], project.as_str());

    // Restored, then the delete arrives late: the work item stays.
    assert!(h.sim.restore_work_item(1));
    let events = h.deliver(&deleted).await;
    single(&events, "work-item", RawAction::Upsert);
    h.stop().await;
}

#[tokio::test]
async fn a_pull_request_that_is_gone_is_deleted_and_one_that_is_back_upserted() {
    let mut h = harness(&[("pull-request", json!({}))]).await;
    let pull_request = h.sim.pull_requests()[0].clone();
    let id = pull_request["pullRequestId"].as_u64().expect("id");
    let repository = text(&pull_request, "/repository/id");
    let updated = h
        .sim
        .pull_request_event("git.pullrequest.updated", id)
        .expect("event");
    // Gone with its repository (TF401180): acknowledged 2xx, and deleted.
    assert!(h.sim.remove_repository(&repository));
    let events = h.deliver(&updated).await;
    let gone = single(&events, "pull-request", RawAction::Delete);
    assert_eq!(gone.items[0]["pullRequestId"], id);
    // Restored: the same (late) event upserts it.
    assert!(h.sim.restore_repository(&repository));
    let events = h.deliver(&updated).await;
    let back = single(&events, "pull-request", RawAction::Upsert);
    assert_eq!(back.items[0]["pullRequestId"], id);
    assert_eq!(back.items[0]["status"], pull_request["status"]);
    h.stop().await;
}

#[tokio::test]
async fn a_push_removing_a_branch_that_still_exists_keeps_it() {
    let mut h = harness(&[("branch", json!({}))]).await;
    let id = repository_id(&h, "repo-0-1");
    let head = h.sim.branch_head(&id, "main").expect("main");
    let mut forged = push_commit(
        &h.sim,
        &id,
        "feature/x",
        "x",
        vec![FileChange::put("x.md", "x")],
    )
    .webhook;
    // A push that says main was deleted (new object id zero).
    forged["resource"]["refUpdates"] = json!([{
        "name": "refs/heads/main",
        "oldObjectId": head,
        "newObjectId": "0000000000000000000000000000000000000000",
    }]);
    let events = h.deliver(&forged).await;
    assert!(
        items(&events, "branch", RawAction::Delete).is_empty(),
        "{events:?}"
    );
    let kept = items(&events, "branch", RawAction::Upsert);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0]["name"], "main");
    assert_eq!(kept[0]["objectId"], head.as_str());

    // Really deleted: deleted.
    let deleted = h.sim.delete_branch(&id, "feature/x").expect("deleted");
    let events = h.deliver(&deleted.webhook).await;
    let gone = items(&events, "branch", RawAction::Delete);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0]["name"], "feature/x");
    h.stop().await;
}

#[tokio::test]
async fn a_late_push_that_removed_a_file_since_restored_keeps_it() {
    let mut h = harness(&[("file", json!({"files": {"path": "docs/*.md"}}))]).await;
    let id = repository_id(&h, "repo-0-1");
    let push = |h: &Harness, message: &str, change: FileChange| {
        push_commit(&h.sim, &id, "main", message, vec![change])
    };
    let removed = push(&h, "remove the guide", FileChange::delete("docs/guide.md"));
    push(
        &h,
        "bring it back",
        FileChange::put("docs/guide.md", "# Guide, again\n"),
    );
    // The first push's event arrives after the second push.
    let events = h.deliver(&removed.webhook).await;
    assert!(
        items(&events, "file", RawAction::Delete).is_empty(),
        "{events:?}"
    );
    let files = items(&events, "file", RawAction::Upsert);
    assert_eq!(files.len(), 1, "{events:?}");
    assert_eq!(files[0]["file"]["path"], "docs/guide.md");
    assert_eq!(files[0]["file"]["content"]["raw"], "# Guide, again\n");

    // Removed for good: the same late event now deletes it.
    push(&h, "remove it again", FileChange::delete("docs/guide.md"));
    let events = h.deliver(&removed.webhook).await;
    let gone = items(&events, "file", RawAction::Delete);
    assert_eq!(gone.len(), 1, "{events:?}");
    assert_eq!(gone[0]["file"]["path"], "docs/guide.md");
    h.stop().await;
}

#[tokio::test]
async fn a_late_push_does_not_delete_gitops_entities_the_branch_still_describes() {
    let gitops = json!({"specPath": ["port.yml"], "useDefaultBranch": true, "branch": "main"});
    let mut h = harness(&[("gitops", gitops)]).await;
    let id = repository_id(&h, "repo-0-1");
    let spec = |ids: &[&str]| {
        ids.iter()
            .map(|id| format!("- identifier: {id}\n  blueprint: service\n"))
            .collect::<String>()
    };
    let push = |h: &Harness, content: String| {
        push_commit(
            &h.sim,
            &id,
            "main",
            "spec",
            vec![FileChange::put("port.yml", &content)],
        )
    };
    push(&h, spec(&["a", "b"]));
    let dropped_b = push(&h, spec(&["a"]));
    push(&h, spec(&["a", "b"]));
    // The push that dropped `b` arrives after the one that brought it back: from where it
    // started to what the branch holds now, nothing changed.
    let events = h.deliver(&dropped_b.webhook).await;
    assert!(
        items(&events, "gitops", RawAction::Delete).is_empty(),
        "{events:?}"
    );
    assert!(
        items(&events, "gitops", RawAction::Upsert).is_empty(),
        "{events:?}"
    );
    // The same late push once `b` is gone for good deletes it.
    push(&h, spec(&["a"]));
    let events = h.deliver(&dropped_b.webhook).await;
    assert_eq!(
        items(&events, "gitops", RawAction::Delete),
        vec![json!({"blueprint": "service", "identifier": "b"})]
    );
    h.stop().await;
}
