//! GitOps: Port entities described in `port.yml` spec files of repositories (the
//! port-app-config's `specPath`, a path or a list of them; `useDefaultBranch`; `branch`).
//!
//! - On a `git.push` to a repository's tracked branch (its default branch with
//!   `useDefaultBranch`, else `branch`, default `main`), the specs are read at the ref's old
//!   commit and at the branch's current head (not the push's new commit: a late or forged push
//!   must not undo what later pushes did); `file://path` property values are replaced by that
//!   file's content at the same commit (`.json` parsed). The difference is published: new and
//!   changed entities as upserts, removed ones as deletes. Reading both ends takes every commit
//!   in between into account.
//! - On a resync, the specs on the tracked branch of every repository are read and upserted, so
//!   GitOps entities converge without a push.
//! - A spec that does not parse (or names no blueprint/identifier, or a missing `file://`) is
//!   logged and, for a push, sent to the raw dead-letter queue with the repository, file, commit
//!   and parser error (transform dead-letters it); its entities are neither upserted nor
//!   deleted.
//!
//! Entities travel as raw events of the reserved kind [`GITOPS_KIND`]: transform passes them
//! through without the mapping, publish writes them with the GitOps User-Agent.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::ado::{AdoClient, AdoError, Current, ErrorClass, GitVersion};
use crate::crawler::{CrawlError, Crawler, KindPlan, KindReport, ResyncCache};
use crate::kinds::{Pages, text};
use crate::live_events::ReadFailure;
use crate::webhook::{WebhookError, WebhookState};
use adoport_shared::messages::{
    GITOPS_KIND, GITOPS_SPEC_ERROR_KEY, Origin, RawAction, RawEvent, ResyncId,
};
use adoport_shared::port_app_config::PortAppConfig;

/// The object id of "no commit" (a created ref's old id).
const ZERO_OBJECT_ID: &str = "0000000000000000000000000000000000000000";

/// Where the specs are and which branch they are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitopsPlan {
    pub spec_paths: Vec<String>,
    pub use_default_branch: bool,
    /// Short name, e.g. `main`.
    pub branch: String,
}

impl GitopsPlan {
    /// The crawl plan entry of GitOps for a mapping (none when `specPath` is an empty list).
    pub fn kind_plan(config: &PortAppConfig) -> Option<KindPlan> {
        let paths: Vec<&str> = config.spec_path.paths();
        if paths.is_empty() {
            return None;
        }
        let mut options = Map::new();
        options.insert("specPath".into(), json!(paths));
        options.insert(
            "useDefaultBranch".into(),
            json!(config.use_default_branch.unwrap_or(false)),
        );
        options.insert(
            "branch".into(),
            json!(config.branch.clone().unwrap_or_else(|| "main".into())),
        );
        Some(KindPlan {
            kind: GITOPS_KIND.to_string(),
            selectors: vec![options],
        })
    }

    /// The plan's GitOps entry, if any.
    pub fn of(plan: &[KindPlan]) -> Option<GitopsPlan> {
        let kind = plan.iter().find(|k| k.kind == GITOPS_KIND)?;
        let options = kind.selectors.first()?;
        Some(GitopsPlan {
            spec_paths: kind.strings("specPath"),
            use_default_branch: kind.flag("useDefaultBranch"),
            branch: options
                .get("branch")
                .and_then(Value::as_str)
                .unwrap_or("main")
                .trim_start_matches("refs/heads/")
                .to_string(),
        })
    }

    /// `refs/heads/…` of the branch tracked in `repository`.
    pub fn tracked_ref(&self, repository: &Value) -> String {
        if self.use_default_branch
            && let Some(branch) = text(repository, "defaultBranch")
        {
            return branch.to_string();
        }
        format!("refs/heads/{}", self.branch)
    }
}

/// A spec that could not be used.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokenSpec {
    pub path: String,
    pub error: String,
}

/// The entities of a repository's specs at one version, by `(blueprint, identifier)`.
#[derive(Debug, Default)]
pub struct SpecEntities {
    pub entities: BTreeMap<(String, String), Value>,
    pub broken: Vec<BrokenSpec>,
}

/// Parses one spec's text: an entity or a list of entities, each with `identifier` and
/// `blueprint`.
pub fn parse_spec(text: &str) -> Result<Vec<Value>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let value: Value = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    let entities = match value {
        Value::Array(items) => items,
        Value::Object(_) => vec![value],
        Value::Null => Vec::new(),
        other => {
            return Err(format!(
                "expected an entity or a list of entities, found {other}"
            ));
        }
    };
    for (index, entity) in entities.iter().enumerate() {
        let has = |key: &str| {
            entity
                .get(key)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        };
        if !has("identifier") || !has("blueprint") {
            return Err(format!(
                "entity #{} has no \"identifier\" or no \"blueprint\" (both are required strings)",
                index + 1
            ));
        }
    }
    Ok(entities)
}

fn item_text(item: &Value) -> String {
    item.get("content")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Replaces `file://path` property values by that file's content at `version` (`.json` parsed).
async fn resolve_files(
    client: &AdoClient,
    project_id: &str,
    repository_id: &str,
    version: &GitVersion,
    entity: &mut Value,
) -> Result<(), String> {
    let Some(Value::Object(properties)) = entity.get_mut("properties") else {
        return Ok(());
    };
    for value in properties.values_mut() {
        let Some(path) = value.as_str().and_then(|s| s.strip_prefix("file://")) else {
            continue;
        };
        let path = path.to_string();
        let item = client
            .item(project_id, repository_id, &path, version, true)
            .await
            .map_err(|e| format!("cannot read file://{path}: {e}"))?
            .ok_or_else(|| format!("file://{path} does not exist at this commit"))?;
        let content = item_text(&item);
        *value = if path.to_ascii_lowercase().ends_with(".json") {
            serde_json::from_str(&content)
                .map_err(|e| format!("file://{path} is not valid JSON: {e}"))?
        } else {
            Value::String(content)
        };
    }
    Ok(())
}

/// Reads every spec of a repository at `version`. A missing spec is no entities; a broken one
/// is reported in [`SpecEntities::broken`] and contributes nothing.
pub async fn read_specs(
    client: &AdoClient,
    plan: &GitopsPlan,
    project_id: &str,
    repository_id: &str,
    version: &GitVersion,
) -> Result<SpecEntities, AdoError> {
    let mut read = SpecEntities::default();
    for path in &plan.spec_paths {
        let Some(item) = client
            .item(project_id, repository_id, path, version, true)
            .await?
        else {
            continue;
        };
        let mut entities = match parse_spec(&item_text(&item)) {
            Ok(entities) => entities,
            Err(error) => {
                read.broken.push(BrokenSpec {
                    path: path.clone(),
                    error,
                });
                continue;
            }
        };
        let mut failure = None;
        for entity in &mut entities {
            if let Err(error) =
                resolve_files(client, project_id, repository_id, version, entity).await
            {
                failure = Some(error);
                break;
            }
        }
        if let Some(error) = failure {
            read.broken.push(BrokenSpec {
                path: path.clone(),
                error,
            });
            continue;
        }
        for entity in entities {
            let key = (
                text(&entity, "blueprint").unwrap_or_default().to_string(),
                text(&entity, "identifier").unwrap_or_default().to_string(),
            );
            read.entities.insert(key, entity);
        }
    }
    Ok(read)
}

/// What a push changes: entities to upsert (new or changed) and to delete (removed).
pub fn diff(before: &SpecEntities, after: &SpecEntities) -> (Vec<Value>, Vec<Value>) {
    let upserts = after
        .entities
        .iter()
        .filter(|(key, entity)| before.entities.get(*key) != Some(*entity))
        .map(|(_, entity)| entity.clone())
        .collect();
    // A spec broken at either end: what it held is unknown, so nothing is deleted on its account.
    let unsure = !before.broken.is_empty() || !after.broken.is_empty();
    let deletes = if unsure {
        Vec::new()
    } else {
        before
            .entities
            .iter()
            .filter(|(key, _)| !after.entities.contains_key(*key))
            .map(|((blueprint, identifier), _)| {
                json!({"blueprint": blueprint, "identifier": identifier})
            })
            .collect()
    };
    (upserts, deletes)
}

/// The specs at `commit` (none at the zero commit of a created ref).
async fn read_at(
    client: &AdoClient,
    plan: &GitopsPlan,
    project_id: &str,
    repository_id: &str,
    commit: &str,
) -> Result<SpecEntities, AdoError> {
    if commit == ZERO_OBJECT_ID {
        return Ok(SpecEntities::default());
    }
    let version = GitVersion::Commit(commit.to_string());
    read_specs(client, plan, project_id, repository_id, &version).await
}

/// Publishes the GitOps changes of a `git.push` (whose envelope carried `resource`): the specs
/// at the push's old commit against the specs at the tracked branch's *current head* (what
/// Azure DevOps holds now), so a late, replayed or forged push never deletes an entity the
/// branch still describes, nor brings back an older version of one. The ids of the raw events
/// published.
pub async fn on_push(
    state: &WebhookState,
    client: &AdoClient,
    delivery_id: &str,
    resource: &Map<String, Value>,
) -> Result<Vec<String>, WebhookError> {
    let Some(plan) = GitopsPlan::of(&state.plan.current()) else {
        return Ok(Vec::new());
    };
    let Some(repository) = resource.get("repository") else {
        return Ok(Vec::new());
    };
    let (Some(repository_id), Some(project_id)) = (
        text(repository, "id"),
        repository.pointer("/project/id").and_then(Value::as_str),
    ) else {
        return Ok(Vec::new());
    };
    let tracked = plan.tracked_ref(repository);
    let Some(update) = resource
        .get("refUpdates")
        .and_then(Value::as_array)
        .and_then(|updates| updates.iter().find(|u| text(u, "name") == Some(&tracked)))
    else {
        return Ok(Vec::new());
    };
    let failed = |e| ReadFailure::new(GITOPS_KIND, format!("{repository_id} {tracked}"), e);
    let old = text(update, "oldObjectId").unwrap_or(ZERO_OBJECT_ID);
    // What the push started from; unknown (the repository is gone) is nothing.
    let before = match read_at(client, &plan, project_id, repository_id, old).await {
        Err(e) if e.class() == ErrorClass::Gone => SpecEntities::default(),
        other => other.map_err(failed)?,
    };
    let head = match client
        .branch_now(project_id, repository_id, &tracked)
        .await
        .map_err(failed)?
    {
        Current::Found(reference) => text(&reference, "objectId")
            .unwrap_or(ZERO_OBJECT_ID)
            .to_string(),
        // The branch (or the repository) is gone: so are its specs.
        Current::Gone(_) => ZERO_OBJECT_ID.to_string(),
    };
    let after = read_at(client, &plan, project_id, repository_id, &head)
        .await
        .map_err(failed)?;
    let origin = Origin::Webhook {
        event_type: "git.push".into(),
        delivery_id: delivery_id.to_string(),
    };
    let event = |action, items| {
        RawEvent::new(
            GITOPS_KIND,
            origin.clone(),
            client.organization_url(),
            action,
            items,
        )
    };
    let mut events = Vec::new();
    for broken in &after.broken {
        tracing::warn!(
            repository = repository_id, path = %broken.path, commit = %head, error = %broken.error,
            "GitOps spec does not parse; its entities are left as they are (dead-lettered with the error)"
        );
        let mut item = Map::new();
        item.insert(
            GITOPS_SPEC_ERROR_KEY.to_string(),
            json!({
                "repositoryId": repository_id,
                "repository": text(repository, "name"),
                "path": broken.path,
                "commit": head,
                "error": broken.error,
            }),
        );
        events.push(event(RawAction::Upsert, vec![Value::Object(item)]));
    }
    let (upserts, deletes) = diff(&before, &after);
    if !upserts.is_empty() {
        events.push(event(RawAction::Upsert, upserts));
    }
    if !deletes.is_empty() {
        events.push(event(RawAction::Delete, deletes));
    }
    crate::webhook::publish(state, events).await
}

impl Crawler {
    /// The resync of GitOps: the specs on the tracked branch of every repository, upserted.
    pub(crate) async fn crawl_gitops(
        &self,
        resync_id: ResyncId,
        plan: &KindPlan,
        cache: &mut ResyncCache,
        report: &mut KindReport,
    ) -> Result<(), CrawlError> {
        let Some(gitops) = GitopsPlan::of(std::slice::from_ref(plan)) else {
            return Ok(());
        };
        // The kind's series exists (at 0) even when no repository has a spec.
        self.resync_stats.crawled(GITOPS_KIND, 0);
        let gitops = &gitops;
        if cache.repositories.is_some() || cache.keep_repositories {
            // Another kind of this resync holds the repository list: read it from there.
            let units = self.healthy_repository_units(cache).await?;
            return self
                .fan_out(
                    resync_id,
                    GITOPS_KIND,
                    units,
                    report,
                    |repository, pages| async move {
                        self.gitops_specs_of(gitops, repository, &pages).await
                    },
                )
                .await;
        }
        // Otherwise list each project's repositories as its specs are read, so that the
        // organization's repository list is never held (memory stays flat).
        let units = self.project_units(cache).await?;
        self.fan_out(
            resync_id,
            GITOPS_KIND,
            units,
            report,
            |project, pages| async move {
                let project_id = text(&project, "id").unwrap_or_default().to_string();
                let repositories = self.client.repositories(&project_id).await?;
                for (_, repository) in crate::kinds::repository_units(&repositories) {
                    self.gitops_specs_of(gitops, repository, &pages).await?;
                }
                Ok(())
            },
        )
        .await
    }

    /// Reads the specs of one repository's tracked branch and sends their entities.
    async fn gitops_specs_of(
        &self,
        gitops: &GitopsPlan,
        repository: Value,
        pages: &Pages,
    ) -> Result<(), AdoError> {
        let (Some(id), Some(project)) = (
            text(&repository, "id"),
            repository.pointer("/project/id").and_then(Value::as_str),
        ) else {
            return Ok(());
        };
        let version = GitVersion::Branch(gitops.tracked_ref(&repository));
        let read = match read_specs(&self.client, gitops, project, id, &version).await {
            // The tracked branch does not exist in this repository: nothing to read.
            Err(AdoError::NotFound { .. }) => return Ok(()),
            other => other?,
        };
        for broken in &read.broken {
            tracing::warn!(
                repository = id, path = %broken.path, branch = ?version, error = %broken.error,
                "GitOps spec does not parse; its entities are left as they are"
            );
        }
        pages.send(read.entities.into_values().collect()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_hold_one_or_many_entities() {
        let one =
            parse_spec("identifier: a\nblueprint: service\nproperties:\n  x: 1\n").expect("one");
        assert_eq!(one.len(), 1);
        let many = parse_spec("- identifier: a\n  blueprint: s\n- identifier: b\n  blueprint: s\n")
            .expect("many");
        assert_eq!(many.len(), 2);
        assert!(parse_spec("identifier: [\n").is_err());
        let missing = parse_spec("- identifier: a\n").expect_err("no blueprint");
        assert!(missing.contains("entity #1"), "{missing}");
    }

    #[test]
    fn a_broken_spec_deletes_nothing() {
        let mut before = SpecEntities::default();
        before
            .entities
            .insert(("s".into(), "a".into()), json!({"identifier": "a"}));
        let after = SpecEntities {
            entities: BTreeMap::new(),
            broken: vec![BrokenSpec {
                path: "port.yml".into(),
                error: "bad".into(),
            }],
        };
        assert_eq!(diff(&before, &after), (vec![], vec![]));
        let (_, deletes) = diff(&before, &SpecEntities::default());
        assert_eq!(deletes, vec![json!({"blueprint": "s", "identifier": "a"})]);
    }
}
