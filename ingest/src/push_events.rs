//! What a `git.push` means for the `branch`, `file`, `folder` and `wiki` kinds, for the kinds
//! the mapping asks for (the repository itself is [`crate::live_events`]' business).
//!
//! A push only says *what* changed; what is published is what Azure DevOps holds now (the rule
//! of [`crate::live_events`]). So a late, replayed or forged push never deletes a branch, file,
//! folder or page that still exists, nor brings back an older version of one:
//! - `branch`: every `refs/heads/*` update; the ref is read again: found → upsert at its current
//!   commit; not among the repository's refs → delete. A repository that is gone is the
//!   repository event's business: nothing of it is read or deleted here.
//! - `file`: pushes to the default branch of a repository the selector covers. The whole push
//!   is diffed (`oldObjectId..newObjectId`, every commit of it, not only the last one) to learn
//!   which paths changed; each changed path that a selector names is then read at the default
//!   branch's *current head*: found → upsert (empty or too large → delete, as the crawl skips
//!   it); missing there → delete.
//! - `folder`: pushes to the branch a folder rule tracks; changed matching folders are read at
//!   that branch's current head the same way.
//! - `wiki`: pushes to a wiki repository (`*.wiki`); changed pages are read again (the wiki's
//!   current version): found → upsert, missing → delete.

use serde_json::{Map, Value, json};

use crate::ado::{
    AdoClient, AdoError, CommitId, Current, GitVersion, Gone, ProjectId, Recursion, RepositoryId,
    WikiId, WikiPageRef, repository_ids,
};
use crate::kind::Kind;
use crate::kinds::files::{FileRead, FileRule, RootIncluded, deleted_file_item, file_of_item};
use crate::kinds::folders::{FolderRule, folder_item};
use crate::kinds::wikis::page_item;
use crate::live_events::{LiveError, ReadFailure};
use crate::plan::KindPlan;
use crate::publisher::{Publication, raw_events};
use crate::selector::WikiSelector;
use adoport_shared::messages::{Origin, RawEvent};

/// The object id of "no commit": a created ref's old id, a deleted ref's new id.
const ZERO_OBJECT_ID: &str = "0000000000000000000000000000000000000000";

/// One ref a push moved.
struct RefUpdate {
    name: String,
    old: CommitId,
    new: CommitId,
}

/// A push to one repository: what every kind's handler of its changes reads with.
struct Push<'a> {
    client: &'a AdoClient,
    /// The repository pushed to (a wiki's backing repository, for a wiki).
    repository: &'a Value,
    project_id: ProjectId,
    repository_id: RepositoryId,
    /// Its branches the push moved.
    updates: &'a [RefUpdate],
}

/// A file or folder change of a push.
struct Change {
    path: String,
    folder: bool,
    /// The object id before (what a delete carries).
    original_object_id: Option<String>,
}

/// The raw events one push produced, in the order they are published.
#[derive(Default)]
struct Events {
    publications: Vec<Publication>,
}

impl Events {
    /// Adds what one kind's changes came to: upserts, deletes of gone objects, and deletes of
    /// objects the selector no longer takes; `unit`, when the changes were selected by one
    /// crawl unit's selector, is the only one whose resources map them.
    fn add(
        &mut self,
        kind: Kind,
        unit: Option<&KindPlan>,
        found: Vec<Value>,
        gone: Vec<(Gone, Value)>,
        dropped: Vec<Value>,
    ) {
        let mut add = |publication: Publication| {
            self.publications.push(match unit {
                Some(unit) => publication.for_unit(unit),
                None => publication,
            });
        };
        if !found.is_empty() {
            add(Publication::upsert(kind, found));
        }
        if !gone.is_empty() {
            let gone = gone.iter().map(|(g, item)| (g, item.clone())).collect();
            add(Publication::delete_all(kind, gone));
        }
        if !dropped.is_empty() {
            add(Publication::deselected(kind, dropped));
        }
    }
}

fn plan_of(plan: &[KindPlan], kind: Kind) -> Option<&KindPlan> {
    plan.iter().find(|k| k.kind == kind)
}

/// Every crawl unit of `kind` (one per distinct selector of its resources).
fn units_of(plan: &[KindPlan], kind: Kind) -> impl Iterator<Item = &KindPlan> {
    plan.iter().filter(move |k| k.kind == kind)
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// A failed read of the push's `kind` object `object`.
fn failed(kind: Kind, object: impl std::fmt::Display) -> impl FnOnce(AdoError) -> ReadFailure {
    move |e| ReadFailure::new(kind, object, e)
}

/// The raw events of the `branch`, `file`, `folder` and `wiki` changes of a `git.push` whose
/// envelope carried `resource`, for the kinds of `plan`; the webhook receiver publishes them.
pub async fn on_push(
    plan: &[KindPlan],
    client: &AdoClient,
    event_type: &str,
    delivery_id: &str,
    resource: &Map<String, Value>,
) -> Result<Vec<RawEvent>, LiveError> {
    let wanted = [Kind::Branch, Kind::File, Kind::Folder, Kind::Wiki];
    if !wanted.iter().any(|k| plan_of(plan, *k).is_some()) {
        return Ok(Vec::new());
    }
    let Some(pushed) = resource.get("repository").filter(|r| r.is_object()) else {
        return Err(LiveError::Envelope(
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
                        old: CommitId::new(text(u, "oldObjectId").unwrap_or(ZERO_OBJECT_ID)),
                        new: CommitId::new(text(u, "newObjectId").unwrap_or(ZERO_OBJECT_ID)),
                    })
                })
                .filter(|u| u.name.starts_with("refs/heads/"))
                .collect()
        })
        .unwrap_or_default();
    let mut events = Events::default();
    let name = text(pushed, "name").unwrap_or_default();
    if name.to_ascii_lowercase().ends_with(".wiki") {
        let push = Push::new(client, pushed, &updates);
        for wiki_plan in units_of(plan, Kind::Wiki) {
            push.wiki_changes(wiki_plan, &mut events).await?;
        }
    } else {
        let Some(id) = text(pushed, "id").map(RepositoryId::new) else {
            return Err(LiveError::Envelope(
                "git.push event without resource.repository.id".into(),
            ));
        };
        let repository = match Current::of(client.repository(&id).await)
            .map_err(failed(Kind::Repository, &id))?
        {
            Current::Found(repository) => repository,
            // Gone: the repository's own delete is published; its branches, files and folders
            // could only be named with the event's description of it, which nothing confirms
            // (a forged push could name another repository's): the next resync removes them.
            Current::Gone(_) => return Ok(Vec::new()),
        };
        let push = Push::new(client, &repository, &updates);
        if plan_of(plan, Kind::Branch).is_some() {
            push.branch_changes(&mut events).await?;
        }
        // Each unit with its own selector, as the crawl reads them: a change is mapped only by
        // the resources whose paths take it.
        for file_plan in units_of(plan, Kind::File) {
            push.file_changes(file_plan, &mut events).await?;
        }
        for folder_plan in units_of(plan, Kind::Folder) {
            push.folder_changes(folder_plan, &mut events).await?;
        }
    }
    let origin = Origin::Webhook {
        event_type: event_type.to_string(),
        delivery_id: delivery_id.to_string(),
    };
    Ok(raw_events(client, origin, events.publications))
}

impl<'a> Push<'a> {
    fn new(client: &'a AdoClient, repository: &'a Value, updates: &'a [RefUpdate]) -> Self {
        let (project_id, repository_id) = repository_ids(repository);
        Self {
            client,
            repository,
            project_id,
            repository_id,
            updates,
        }
    }

    /// The commit `ref_name` of a repository points at now, as a version to read at; gone when the
    /// branch (or the repository) is.
    async fn head(&self, kind: Kind, ref_name: &str) -> Result<Current<GitVersion>, ReadFailure> {
        let reference = self
            .client
            .branch_now(&self.project_id, &self.repository_id, ref_name)
            .await
            .map_err(failed(kind, ref_name))?;
        Ok(reference
            .map(|r| GitVersion::Commit(CommitId::new(text(&r, "objectId").unwrap_or_default()))))
    }

    /// Reads `path` at `version` (the branch's head) with or without its content.
    async fn item_at(
        &self,
        kind: Kind,
        path: &str,
        version: &Current<GitVersion>,
        include_content: bool,
    ) -> Result<Current<Value>, ReadFailure> {
        let version = match version {
            Current::Found(version) => version,
            Current::Gone(gone) => return Ok(Current::Gone(gone.clone())),
        };
        let read = self
            .client
            .read_item(
                &self.project_id,
                &self.repository_id,
                path,
                version,
                include_content,
            )
            .await;
        Current::of(read).map_err(failed(kind, path))
    }

    /// Every file and folder change of `update` (a new ref: every file and folder at its
    /// commit); a failure names the ref, for `kind`.
    async fn changes_of(&self, kind: Kind, update: &RefUpdate) -> Result<Vec<Change>, ReadFailure> {
        (self.read_changes(update).await).map_err(failed(kind, &update.name))
    }

    async fn read_changes(&self, update: &RefUpdate) -> Result<Vec<Change>, AdoError> {
        let (client, project_id, repository_id) =
            (self.client, &self.project_id, &self.repository_id);
        if update.old.as_str() == ZERO_OBJECT_ID {
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
                    original_object_id: text(item, "originalObjectId")
                        .or_else(|| text(item, "objectId"))
                        .map(String::from),
                })
            })
            .collect())
    }

    async fn branch_changes(&self, events: &mut Events) -> Result<(), LiveError> {
        let repository = self.repository;
        let (mut found, mut gone) = (Vec::new(), Vec::new());
        for update in self.updates {
            let short = update.name.trim_start_matches("refs/heads/");
            match self
                .client
                .branch_now(&self.project_id, &self.repository_id, &update.name)
                .await
                .map_err(failed(Kind::Branch, &update.name))?
            {
                Current::Found(reference) => found.push(json!({
                    "name": short,
                    "refName": update.name,
                    "objectId": reference.get("objectId").cloned().unwrap_or(Value::Null),
                    "__repository": repository,
                })),
                Current::Gone(g) => gone.push((
                    g,
                    json!({
                        "name": short,
                        "refName": update.name,
                        "objectId": update.old,
                        "__repository": repository,
                    }),
                )),
            }
        }
        events.add(Kind::Branch, None, found, gone, Vec::new());
        Ok(())
    }

    async fn file_changes(&self, plan: &KindPlan, events: &mut Events) -> Result<(), LiveError> {
        let (client, repository) = (self.client, self.repository);
        let name = text(repository, "name").unwrap_or_default();
        let (rules, included) = FileRule::of_plan(plan)?;
        let rules: Vec<FileRule> = rules.into_iter().filter(|r| r.covers(name)).collect();
        let Some(default_branch) = text(repository, "defaultBranch") else {
            return Ok(());
        };
        if rules.is_empty() {
            return Ok(());
        }
        for update in self
            .updates
            .iter()
            .filter(|u| u.name == default_branch && u.new.as_str() != ZERO_OBJECT_ID)
        {
            let changes = self.changes_of(Kind::File, update).await?;
            let changed: Vec<&Change> = changes
                .iter()
                .filter(|c| !c.folder && rules.iter().any(|r| r.matches(&c.path)))
                .collect();
            if changed.is_empty() {
                continue;
            }
            let head = self.head(Kind::File, default_branch).await?;
            let (mut found, mut gone, mut dropped) = (Vec::new(), Vec::new(), Vec::new());
            for change in changed {
                let deleted = || {
                    deleted_file_item(
                        repository,
                        &change.path,
                        change.original_object_id.as_deref(),
                    )
                };
                let item = match self.item_at(Kind::File, &change.path, &head, true).await? {
                    Current::Found(item) => item,
                    Current::Gone(g) => {
                        gone.push((g, deleted()));
                        continue;
                    }
                };
                let Current::Found(version) = &head else {
                    continue;
                };
                let root_included = RootIncluded::new(&included);
                match file_of_item(
                    client,
                    repository,
                    &change.path,
                    item,
                    version,
                    &root_included,
                )
                .await
                .map_err(failed(Kind::File, &change.path))?
                {
                    FileRead::Item(item) => found.push(item),
                    // A folder now, empty, or too large: not a file the crawl would publish.
                    FileRead::Gone | FileRead::Skipped => dropped.push(deleted()),
                }
            }
            events.add(Kind::File, Some(plan), found, gone, dropped);
        }
        Ok(())
    }

    async fn folder_changes(&self, plan: &KindPlan, events: &mut Events) -> Result<(), LiveError> {
        let (rules, _) = FolderRule::of_plan(plan)?;
        let repository = self.repository;
        for update in self
            .updates
            .iter()
            .filter(|u| u.new.as_str() != ZERO_OBJECT_ID)
        {
            let branch = update.name.trim_start_matches("refs/heads/");
            let tracking: Vec<&FolderRule> = rules
                .iter()
                .filter(|r| r.branch_for(repository).as_deref() == Some(branch))
                .collect();
            if tracking.is_empty() {
                continue;
            }
            let changes = self.changes_of(Kind::Folder, update).await?;
            let changed: Vec<&Change> = changes
                .iter()
                .filter(|c| c.folder && c.path != "/")
                .filter(|c| tracking.iter().any(|r| r.glob.matches(&c.path)))
                .collect();
            if changed.is_empty() {
                continue;
            }
            let head = self.head(Kind::Folder, &update.name).await?;
            let (mut found, mut gone) = (Vec::new(), Vec::new());
            for change in changed {
                let current = self
                    .item_at(Kind::Folder, &change.path, &head, false)
                    .await?;
                for rule in tracking.iter().filter(|r| r.glob.matches(&change.path)) {
                    let pattern = rule.glob.source.as_str();
                    match &current {
                        Current::Found(item) => {
                            found.push(folder_item(item.clone(), repository, branch, pattern));
                        }
                        Current::Gone(g) => {
                            let item = json!({
                                "objectId": change.original_object_id,
                                "gitObjectType": "tree",
                                "path": change.path,
                                "isFolder": true,
                            });
                            gone.push((g.clone(), folder_item(item, repository, branch, pattern)));
                        }
                    }
                }
            }
            events.add(Kind::Folder, Some(plan), found, gone, Vec::new());
        }
        Ok(())
    }

    async fn wiki_changes(&self, plan: &KindPlan, events: &mut Events) -> Result<(), LiveError> {
        let (client, project_id) = (self.client, &self.project_id);
        // A wiki's id is its backing repository's.
        let wiki_id = WikiId::new(self.repository_id.as_str());
        // Not a wiki after all (a code repository named `*.wiki`), or deleted: nothing to read.
        let Current::Found(wiki) = Current::of(client.wiki(project_id, &wiki_id).await)
            .map_err(failed(Kind::Wiki, &wiki_id))?
        else {
            return Ok(());
        };
        let project = client
            .project(project_id)
            .await
            .map_err(failed(Kind::Wiki, &wiki_id))?;
        let include_content =
            (plan.selectors::<WikiSelector>()?.iter()).any(|s| s.include_content.0);
        for update in self
            .updates
            .iter()
            .filter(|u| u.new.as_str() != ZERO_OBJECT_ID)
        {
            let changes = self.changes_of(Kind::Wiki, update).await?;
            let (mut found, mut gone) = (Vec::new(), Vec::new());
            for change in changes.iter().filter(|c| !c.folder) {
                let Some(path) = page_path(&change.path) else {
                    continue;
                };
                let page = WikiPageRef::Path(&path);
                let read = client
                    .read_wiki_page(project_id, &wiki_id, page, include_content)
                    .await;
                match Current::of(read).map_err(failed(Kind::Wiki, &path))? {
                    Current::Found(page) => found.push(page_item(page, &wiki, &project)),
                    Current::Gone(g) => gone.push((
                        g,
                        page_item(
                            json!({"path": path, "gitItemPath": change.path}),
                            &wiki,
                            &project,
                        ),
                    )),
                }
            }
            events.add(Kind::Wiki, Some(plan), found, gone, Vec::new());
        }
        Ok(())
    }
}

/// The wiki page a file of a wiki repository is (`/Home/Getting-started.md` →
/// `/Home/Getting started`); `None` for other files.
fn page_path(file: &str) -> Option<String> {
    Some(file.strip_suffix(".md")?.replace('-', " "))
}
