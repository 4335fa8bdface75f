//! What a `git.push` means for the `branch`, `file`, `folder` and `wiki` kinds, for the kinds
//! the mapping asks for (the repository itself is the webhook receiver's business).
//!
//! - `branch`: every `refs/heads/*` update; the ref is read again, so a late delivery never
//!   carries an older commit than the repository has now; gone → delete.
//! - `file`: pushes to the default branch of a repository the selector covers. The whole push
//!   is diffed (`oldObjectId..newObjectId`, every commit of it, not only the last one); added or
//!   edited files that a selector names are read at the pushed commit and upserted, removed ones
//!   (and ones that became empty or too large) deleted.
//! - `folder`: pushes to the branch a folder rule tracks; matching folders that changed are read
//!   at the pushed commit and upserted, removed ones deleted.
//! - `wiki`: pushes to a wiki repository (`*.wiki`); changed pages are read again and upserted,
//!   removed pages deleted.

use serde_json::{Map, Value, json};

use crate::ado::organization::OrganizationStamp;
use crate::ado::{AdoClient, AdoError, GitVersion, Recursion, WikiPageRef};
use crate::crawler::KindPlan;
use crate::kinds::files::{FileRead, FileRule, deleted_file_item, file_item};
use crate::kinds::folders::{FolderRule, folder_item};
use crate::kinds::wikis::page_item;
use crate::webhook::{WebhookError, WebhookState};
use adoport_shared::bus::{Destination, Outgoing};
use adoport_shared::messages::{Origin, RawAction, RawEvent, encode};

/// The object id of "no commit": a created ref's old id, a deleted ref's new id.
const ZERO_OBJECT_ID: &str = "0000000000000000000000000000000000000000";

/// One ref a push moved.
struct RefUpdate {
    name: String,
    old: String,
    new: String,
}

/// A file or folder change of a push.
struct Change {
    path: String,
    folder: bool,
    deleted: bool,
    /// The object id before (for deletions).
    original_object_id: Option<String>,
}

/// The raw events one push produced, in the order they are published.
#[derive(Default)]
struct Events {
    batches: Vec<(&'static str, RawAction, Vec<Value>)>,
}

impl Events {
    fn add(&mut self, kind: &'static str, action: RawAction, items: Vec<Value>) {
        if !items.is_empty() {
            self.batches.push((kind, action, items));
        }
    }
}

fn upstream(e: AdoError) -> WebhookError {
    WebhookError::Upstream(e)
}

fn plan_of<'a>(plan: &'a [KindPlan], kind: &str) -> Option<&'a KindPlan> {
    plan.iter().find(|k| k.kind == kind)
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// Publishes the `branch`, `file`, `folder` and `wiki` changes of a `git.push` whose envelope
/// carried `resource`, for the kinds the mapping asks for.
pub async fn on_push(
    state: &WebhookState,
    client: &AdoClient,
    event_type: &str,
    delivery_id: &str,
    resource: &Map<String, Value>,
) -> Result<(), WebhookError> {
    let plan = state.plan.current();
    let plan = plan.as_slice();
    let wanted = ["branch", "file", "folder", "wiki"];
    if !wanted.iter().any(|k| plan_of(plan, k).is_some()) {
        return Ok(());
    }
    let Some(pushed) = resource.get("repository").filter(|r| r.is_object()) else {
        return Err(WebhookError::Envelope(
            "git.push event without resource.repository".into(),
        ));
    };
    let updates: Vec<RefUpdate> = resource
        .get("refUpdates")
        .and_then(Value::as_array)
        .map(|updates| {
            updates
                .iter()
                .filter_map(|u| {
                    Some(RefUpdate {
                        name: text(u, "name")?.to_string(),
                        old: text(u, "oldObjectId").unwrap_or(ZERO_OBJECT_ID).to_string(),
                        new: text(u, "newObjectId").unwrap_or(ZERO_OBJECT_ID).to_string(),
                    })
                })
                .filter(|u| u.name.starts_with("refs/heads/"))
                .collect()
        })
        .unwrap_or_default();
    let mut events = Events::default();
    let name = text(pushed, "name").unwrap_or_default();
    if name.to_ascii_lowercase().ends_with(".wiki") {
        if let Some(wiki_plan) = plan_of(plan, "wiki") {
            wiki_changes(client, wiki_plan, pushed, &updates, &mut events).await?;
        }
    } else {
        let repository = match text(pushed, "id") {
            Some(id) => match client.repository(id).await {
                Ok(repository) => repository,
                Err(AdoError::NotFound { .. }) => pushed.clone(),
                Err(e) => return Err(upstream(e)),
            },
            None => pushed.clone(),
        };
        if plan_of(plan, "branch").is_some() {
            branch_changes(client, &repository, &updates, &mut events).await?;
        }
        if let Some(file_plan) = plan_of(plan, "file") {
            file_changes(client, file_plan, &repository, &updates, &mut events).await?;
        }
        if let Some(folder_plan) = plan_of(plan, "folder") {
            folder_changes(client, folder_plan, &repository, &updates, &mut events).await?;
        }
    }
    publish(state, client, event_type, delivery_id, events).await
}

async fn publish(
    state: &WebhookState,
    client: &AdoClient,
    event_type: &str,
    delivery_id: &str,
    events: Events,
) -> Result<(), WebhookError> {
    if events.batches.is_empty() {
        return Ok(());
    }
    let organization_url = client.organization_url();
    let stamp = OrganizationStamp::new(organization_url);
    let messages = events
        .batches
        .into_iter()
        .map(|(kind, action, mut items)| {
            items.iter_mut().for_each(|item| stamp.apply(item));
            let event = RawEvent::new(
                kind,
                Origin::Webhook {
                    event_type: event_type.to_string(),
                    delivery_id: delivery_id.to_string(),
                },
                organization_url,
                action,
                items,
            );
            Outgoing::new(Destination::Raw, encode(&event))
        })
        .collect();
    state
        .bus
        .publish_all(messages)
        .await
        .map_err(|e| WebhookError::Unavailable(e.to_string()))
}

fn ids(repository: &Value) -> (String, String) {
    (
        repository
            .get("project")
            .and_then(|p| text(p, "id"))
            .unwrap_or_default()
            .to_string(),
        text(repository, "id").unwrap_or_default().to_string(),
    )
}

async fn branch_changes(
    client: &AdoClient,
    repository: &Value,
    updates: &[RefUpdate],
    events: &mut Events,
) -> Result<(), WebhookError> {
    let (project_id, repository_id) = ids(repository);
    let (mut upserts, mut deletes) = (Vec::new(), Vec::new());
    for update in updates {
        // The repository itself may be gone: then so is the branch.
        let current = match client
            .branch_ref(&project_id, &repository_id, &update.name)
            .await
        {
            Ok(current) => current,
            Err(AdoError::NotFound { .. }) => None,
            Err(e) => return Err(upstream(e)),
        };
        let short = update.name.trim_start_matches("refs/heads/");
        match current {
            Some(reference) => upserts.push(json!({
                "name": short,
                "refName": update.name,
                "objectId": reference.get("objectId").cloned().unwrap_or(Value::Null),
                "__repository": repository,
            })),
            None => deletes.push(json!({
                "name": short,
                "refName": update.name,
                "objectId": update.old,
                "__repository": repository,
            })),
        }
    }
    events.add("branch", RawAction::Upsert, upserts);
    events.add("branch", RawAction::Delete, deletes);
    Ok(())
}

/// Every file and folder change of `update` (a new ref: every file and folder at its commit).
async fn changes_of(
    client: &AdoClient,
    project_id: &str,
    repository_id: &str,
    update: &RefUpdate,
) -> Result<Vec<Change>, AdoError> {
    if update.old == ZERO_OBJECT_ID {
        let listed = client
            .list_items(
                project_id,
                repository_id,
                "/",
                Recursion::Full,
                &GitVersion::Commit(update.new.clone()),
            )
            .await;
        let items = match listed {
            Ok(items) => items,
            Err(AdoError::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        return Ok(items
            .iter()
            .filter_map(|item| {
                Some(Change {
                    path: text(item, "path")?.to_string(),
                    folder: item.get("isFolder").and_then(Value::as_bool) == Some(true),
                    deleted: false,
                    original_object_id: None,
                })
            })
            .collect());
    }
    let diff = match client
        .commit_diff(project_id, repository_id, &update.old, &update.new)
        .await
    {
        Ok(diff) => diff,
        // The repository was deleted since: its removal is the repository event's business.
        Err(AdoError::NotFound { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(diff
        .iter()
        .filter_map(|change| {
            let item = change.get("item")?;
            Some(Change {
                path: text(item, "path")?.to_string(),
                folder: item.get("isFolder").and_then(Value::as_bool) == Some(true)
                    || text(item, "gitObjectType") == Some("tree"),
                deleted: text(change, "changeType")
                    .is_some_and(|t| t.split(',').any(|t| t.trim() == "delete")),
                original_object_id: text(item, "originalObjectId")
                    .or_else(|| text(item, "objectId"))
                    .map(String::from),
            })
        })
        .collect())
}

async fn file_changes(
    client: &AdoClient,
    plan: &KindPlan,
    repository: &Value,
    updates: &[RefUpdate],
    events: &mut Events,
) -> Result<(), WebhookError> {
    let name = text(repository, "name").unwrap_or_default();
    let rules: Vec<FileRule> = FileRule::of_plan(plan)
        .into_iter()
        .filter(|r| r.covers(name))
        .collect();
    let Some(default_branch) = text(repository, "defaultBranch") else {
        return Ok(());
    };
    if rules.is_empty() {
        return Ok(());
    }
    let included = plan.strings("includedFiles");
    let (project_id, repository_id) = ids(repository);
    for update in updates
        .iter()
        .filter(|u| u.name == default_branch && u.new != ZERO_OBJECT_ID)
    {
        let changes = changes_of(client, &project_id, &repository_id, update)
            .await
            .map_err(upstream)?;
        let version = GitVersion::Commit(update.new.clone());
        let (mut upserts, mut deletes) = (Vec::new(), Vec::new());
        for change in changes
            .iter()
            .filter(|c| !c.folder && rules.iter().any(|r| r.matches(&c.path)))
        {
            if change.deleted {
                deletes.push(deleted_file_item(
                    repository,
                    &change.path,
                    change.original_object_id.as_deref(),
                ));
                continue;
            }
            match file_item(client, repository, &change.path, &version, &included)
                .await
                .map_err(upstream)?
            {
                FileRead::Item(item) => upserts.push(item),
                FileRead::Gone | FileRead::Skipped => deletes.push(deleted_file_item(
                    repository,
                    &change.path,
                    change.original_object_id.as_deref(),
                )),
            }
        }
        events.add("file", RawAction::Upsert, upserts);
        events.add("file", RawAction::Delete, deletes);
    }
    Ok(())
}

async fn folder_changes(
    client: &AdoClient,
    plan: &KindPlan,
    repository: &Value,
    updates: &[RefUpdate],
    events: &mut Events,
) -> Result<(), WebhookError> {
    let rules = FolderRule::of_plan(plan);
    let (project_id, repository_id) = ids(repository);
    for update in updates.iter().filter(|u| u.new != ZERO_OBJECT_ID) {
        let branch = update.name.trim_start_matches("refs/heads/");
        let tracking: Vec<&FolderRule> = rules
            .iter()
            .filter(|r| r.branch_for(repository).as_deref() == Some(branch))
            .collect();
        if tracking.is_empty() {
            continue;
        }
        let changes = changes_of(client, &project_id, &repository_id, update)
            .await
            .map_err(upstream)?;
        let version = GitVersion::Commit(update.new.clone());
        let (mut upserts, mut deletes) = (Vec::new(), Vec::new());
        for change in changes.iter().filter(|c| c.folder && c.path != "/") {
            for rule in tracking.iter().filter(|r| r.glob.matches(&change.path)) {
                let pattern = rule.glob.source.as_str();
                if change.deleted {
                    let gone = json!({
                        "objectId": change.original_object_id,
                        "gitObjectType": "tree",
                        "path": change.path,
                        "isFolder": true,
                    });
                    deletes.push(folder_item(gone, repository, branch, pattern));
                    continue;
                }
                match client
                    .item(&project_id, &repository_id, &change.path, &version, false)
                    .await
                    .map_err(upstream)?
                {
                    Some(item) => upserts.push(folder_item(item, repository, branch, pattern)),
                    None => {
                        let gone = json!({"objectId": change.original_object_id, "path": change.path, "isFolder": true});
                        deletes.push(folder_item(gone, repository, branch, pattern));
                    }
                }
            }
        }
        events.add("folder", RawAction::Upsert, upserts);
        events.add("folder", RawAction::Delete, deletes);
    }
    Ok(())
}

/// The wiki page a file of a wiki repository is (`/Home/Getting-started.md` →
/// `/Home/Getting started`); `None` for other files.
fn page_path(file: &str) -> Option<String> {
    Some(file.strip_suffix(".md")?.replace('-', " "))
}

async fn wiki_changes(
    client: &AdoClient,
    plan: &KindPlan,
    pushed: &Value,
    updates: &[RefUpdate],
    events: &mut Events,
) -> Result<(), WebhookError> {
    let (project_id, wiki_id) = ids(pushed);
    let wiki = match client.wiki(&project_id, &wiki_id).await {
        Ok(wiki) => wiki,
        // Not a wiki after all (a code repository named `*.wiki`), or deleted.
        Err(AdoError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(upstream(e)),
    };
    let project = client.project(&project_id).await.map_err(upstream)?;
    let include_content = plan.flag("includeContent");
    for update in updates.iter().filter(|u| u.new != ZERO_OBJECT_ID) {
        let changes = changes_of(client, &project_id, &wiki_id, update)
            .await
            .map_err(upstream)?;
        let (mut upserts, mut deletes) = (Vec::new(), Vec::new());
        for change in changes.iter().filter(|c| !c.folder) {
            let Some(path) = page_path(&change.path) else {
                continue;
            };
            let page = if change.deleted {
                None
            } else {
                client
                    .wiki_page(
                        &project_id,
                        &wiki_id,
                        WikiPageRef::Path(&path),
                        include_content,
                    )
                    .await
                    .map_err(upstream)?
            };
            match page {
                Some(page) => upserts.push(page_item(page, &wiki, &project)),
                None => deletes.push(page_item(
                    json!({"path": path, "gitItemPath": change.path}),
                    &wiki,
                    &project,
                )),
            }
        }
        events.add("wiki", RawAction::Upsert, upserts);
        events.add("wiki", RawAction::Delete, deletes);
    }
    Ok(())
}
