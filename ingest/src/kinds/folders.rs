//! The `folder` kind: folders matching each selector pattern (`folders[].path`, e.g. `docs` or
//! `src/*/docs`, at any depth) in the listed repositories (or all, or those of `project_name`),
//! on the branch each repository entry names (its default branch otherwise). Items are the
//! Git folder items plus `__repository`, `__branch`, `__pattern` (and `__includedFiles`,
//! resolved inside the folder).
//!
//! Unlike the Python integration, the listing goes as deep as the pattern needs (it lists one
//! level only) and is read at the configured branch (it always reads the default branch).

use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::Value;

use super::files::included_files;
use super::glob::{Glob, is_glob};
use super::{Pages, enrich, text};
use crate::ado::{AdoClient, AdoError, GitVersion, Recursion, repository_ids};
use crate::crawl_context::{CrawlError, Crawler, KindReport, ResyncCache};
use crate::kind::Kind;
use crate::plan::KindPlan;
use crate::selector::{self, FolderSelector};
use adoport_shared::messages::ResyncId;

/// One folder pattern and the repositories (name, optional branch) it applies to; no
/// repositories means every repository.
#[derive(Debug, Clone)]
pub(crate) struct FolderRule {
    pub(crate) glob: Glob,
    repositories: Vec<(String, Option<String>)>,
    project: Option<String>,
}

impl FolderRule {
    pub(crate) fn of_plan(plan: &KindPlan) -> Vec<FolderRule> {
        let mut rules = Vec::new();
        for selector in &plan.selectors {
            let project = selector
                .get("project_name")
                .or_else(|| selector.get("projectName"))
                .and_then(Value::as_str)
                .map(String::from);
            let Some(folders) = selector.get("folders").and_then(Value::as_array) else {
                continue;
            };
            for folder in folders {
                let Some(path) = folder.get("path").and_then(Value::as_str) else {
                    continue;
                };
                let repositories = folder
                    .get("repos")
                    .and_then(Value::as_array)
                    .map(|repos| {
                        repos
                            .iter()
                            .filter_map(|r| match r {
                                Value::String(name) => Some((name.clone(), None)),
                                other => Some((
                                    text(other, "name")?.to_string(),
                                    text(other, "branch").map(String::from),
                                )),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                rules.push(FolderRule {
                    glob: Glob::new(path),
                    repositories,
                    project: project.clone(),
                });
            }
        }
        rules
    }

    /// The branch this rule reads in `repository`, or `None` if it does not apply there.
    pub(crate) fn branch_for(&self, repository: &Value) -> Option<String> {
        let name = text(repository, "name").unwrap_or_default();
        let project = repository
            .get("project")
            .and_then(|p| text(p, "name"))
            .unwrap_or_default();
        if self
            .project
            .as_deref()
            .is_some_and(|p| !p.eq_ignore_ascii_case(project))
        {
            return None;
        }
        let default = text(repository, "defaultBranch")?
            .trim_start_matches("refs/heads/")
            .to_string();
        if self.repositories.is_empty() {
            return Some(default);
        }
        self.repositories
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, branch)| {
                branch
                    .as_deref()
                    .map_or(default, |b| b.trim_start_matches("refs/heads/").to_string())
            })
    }
}

/// A folder item with what the crawl adds.
pub(crate) fn folder_item(item: Value, repository: &Value, branch: &str, pattern: &str) -> Value {
    let item = enrich(item, "__repository", repository);
    let item = enrich(item, "__branch", &Value::String(branch.to_string()));
    enrich(item, "__pattern", &Value::String(pattern.to_string()))
}

/// The folders of `repository` at `branch` that `rule` matches, enriched.
pub(crate) async fn matching_folders(
    client: &AdoClient,
    repository: &Value,
    rule: &FolderRule,
    branch: &str,
    included: &[String],
) -> Result<Vec<Value>, AdoError> {
    let (project_id, repository_id) = &repository_ids(repository);
    let version = GitVersion::Branch(branch.to_string());
    let source = rule.glob.source.trim().trim_matches('/');
    let (scope, recursion) = if is_glob(source) {
        let (base, deep) = rule.glob.base();
        (
            base,
            if deep {
                Recursion::Full
            } else {
                Recursion::OneLevel
            },
        )
    } else {
        (format!("/{source}"), Recursion::None)
    };
    let items = match client
        .list_items(project_id, repository_id, &scope, recursion, &version)
        .await
    {
        Ok(items) => items,
        Err(AdoError::NotFound { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let folders: Vec<Value> = items
        .into_iter()
        .filter(|i| i.get("isFolder").and_then(Value::as_bool) == Some(true))
        .filter(|i| text(i, "path").is_some_and(|p| p != "/" && rule.glob.matches(p)))
        .collect();
    let version = &version;
    stream::iter(folders)
        .map(|folder| async move {
            let mut item = folder_item(folder, repository, branch, &rule.glob.source);
            if !included.is_empty() {
                let directory = text(&item, "path").unwrap_or_default().to_string();
                let files =
                    included_files(client, repository, &directory, included, version).await?;
                item = enrich(item, "__includedFiles", &files);
            }
            Ok::<_, AdoError>(item)
        })
        .buffered(super::CONCURRENT_UNITS)
        .try_collect()
        .await
}

impl Crawler {
    pub(crate) async fn crawl_folders(
        &self,
        resync_id: ResyncId,
        plan: &KindPlan,
        cache: &mut ResyncCache,
        report: &mut KindReport,
    ) -> Result<(), CrawlError> {
        let rules = FolderRule::of_plan(plan);
        let included = selector::union(
            plan.selectors::<FolderSelector>()
                .iter()
                .map(|s| &s.included_files),
        );
        let units: Vec<(String, Value)> = self
            .healthy_repository_units(cache)
            .await?
            .into_iter()
            .filter(|(_, r)| rules.iter().any(|rule| rule.branch_for(r).is_some()))
            .collect();
        let (rules, included) = (&rules, &included);
        self.fan_out(
            resync_id,
            Kind::Folder,
            units,
            report,
            |repository, pages: Pages| async move {
                for rule in rules {
                    let Some(branch) = rule.branch_for(&repository) else {
                        continue;
                    };
                    let items =
                        matching_folders(&self.client, &repository, rule, &branch, included)
                            .await?;
                    pages.send(items).await?;
                }
                Ok(())
            },
        )
        .await
    }
}
