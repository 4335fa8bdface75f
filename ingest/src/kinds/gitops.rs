//! The GitOps kind ([`GITOPS_KIND`]): the `port.yml` spec files of repositories, read at their
//! tracked branch by a resync, and what a spec holds ([`read_specs`], [`diff`]) for the crawl
//! and for a push alike (the push is [`crate::gitops`]' business). See [`crate::plan::GitopsPlan`]
//! for where specs are read from.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::KindCrawl;
use super::{Pages, kept_repository_units, repository_units, text};
use crate::ado::{
    AdoClient, AdoError, CONTENT_MISSING, GitVersion, ProjectId, RepositoryId, none_if_missing,
};
use crate::crawl_context::{CrawlError, Crawler, OrganizationList, parse};
use crate::plan::GitopsPlan;
use adoport_shared::messages::GITOPS_KIND;

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
    project_id: &ProjectId,
    repository_id: &RepositoryId,
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
        let read = client.read_item(project_id, repository_id, &path, version, true);
        let item = none_if_missing(read.await)
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
    project_id: &ProjectId,
    repository_id: &RepositoryId,
    version: &GitVersion,
) -> Result<SpecEntities, AdoError> {
    let mut read = SpecEntities::default();
    for path in &plan.spec_paths {
        let answer = client.read_item(project_id, repository_id, path, version, true);
        let Some(item) = none_if_missing(answer.await)? else {
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

/// What reading a repository's specs needs of its listing ([`Crawler::gitops_specs_of`], the
/// health check and label of `repository_units`): its id, name, default branch, whether it is
/// disabled, and its project's id and state.
pub(crate) fn spec_reading(repository: Value) -> Value {
    let Value::Object(mut listed) = repository else {
        return repository;
    };
    let mut kept = serde_json::Map::new();
    for key in ["id", "name", "defaultBranch", "isDisabled"] {
        if let Some(value) = listed.remove(key) {
            kept.insert(key.to_string(), value);
        }
    }
    if let Some(Value::Object(mut project)) = listed.remove("project") {
        let mut kept_project = serde_json::Map::new();
        for key in ["id", "state"] {
            if let Some(value) = project.remove(key) {
                kept_project.insert(key.to_string(), value);
            }
        }
        kept.insert("project".into(), Value::Object(kept_project));
    }
    Value::Object(kept)
}

impl Crawler {
    /// The resync of GitOps: the specs on the tracked branch of every repository, upserted.
    pub(crate) async fn crawl_gitops(&self, mut crawl: KindCrawl<'_>) -> Result<(), CrawlError> {
        let Some(gitops) = GitopsPlan::of(std::slice::from_ref(crawl.plan)) else {
            return Ok(());
        };
        // The kind's series exists (at 0) even when no repository has a spec.
        self.resync_stats.crawled(GITOPS_KIND, 0);
        let gitops = &gitops;
        if crawl.cache.keep_repositories
            && let OrganizationList::Kept(list) = self.repository_list(crawl.cache).await?
        {
            // Another kind of this resync holds the repository list: read it from there.
            let units = kept_repository_units(list);
            return self
                .fan_out_stream(
                    &mut crawl,
                    units,
                    self.fan_out_width(),
                    |repository, pages| async move {
                        self.gitops_specs_of(gitops, repository?, &pages).await
                    },
                )
                .await;
        }
        // Otherwise list each project's repositories as its specs are read, so that the
        // organization's repository list is never held (memory stays flat). A unit reads its
        // project's specs one repository after another, for as long as that takes, and as many
        // units run as requests may be in flight: each keeps only what the reads need of its
        // repositories, not the listing (about 3 KB a repository parsed, 8 MiB over 30 units of
        // 99 repositories, outside the crawl buffer, which counts the specs' pages).
        self.per_project(
            &mut crawl,
            |project_id, _project, pages: Pages| async move {
                // Each repository parsed only to keep what the reads need of it.
                let repositories: Vec<Value> = self
                    .client
                    .repositories(&project_id)
                    .await?
                    .into_iter()
                    .map(|repository| spec_reading(parse(repository.get())))
                    .collect();
                for (_, repository) in repository_units(repositories) {
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
        let (project, id) = (ProjectId::new(project), RepositoryId::new(id));
        let read = match read_specs(&self.client, gitops, &project, &id, &version).await {
            // Azure DevOps says the tracked branch (or the repository) does not exist: nothing
            // to read. Any other 404 fails the kind.
            Err(e) if e.says_missing(CONTENT_MISSING) => return Ok(()),
            other => other?,
        };
        for broken in &read.broken {
            tracing::warn!(
                repository = id.as_str(), path = %broken.path, branch = ?version, error = %broken.error,
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
    fn spec_reading_keeps_what_the_reads_need() {
        let listed = json!({
            "id": "r1", "name": "api", "defaultBranch": "refs/heads/dev", "isDisabled": false,
            "url": "https://example/r1", "remoteUrl": "https://example/r1.git", "size": 12,
            "project": {"id": "p1", "state": "wellFormed", "name": "P", "url": "https://example/p1"},
        });
        let kept = spec_reading(listed.clone());
        assert_eq!(
            kept,
            json!({
                "id": "r1", "name": "api", "defaultBranch": "refs/heads/dev", "isDisabled": false,
                "project": {"id": "p1", "state": "wellFormed"},
            })
        );
        let plan = GitopsPlan {
            spec_paths: vec!["port.yml".into()],
            use_default_branch: true,
            branch: "main".into(),
        };
        assert_eq!(plan.tracked_ref(&kept), plan.tracked_ref(&listed));
        assert_eq!(
            repository_units([kept])
                .map(|(label, _)| label)
                .collect::<Vec<_>>(),
            repository_units([listed])
                .map(|(label, _)| label)
                .collect::<Vec<_>>(),
        );
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
