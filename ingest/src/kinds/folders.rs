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

use super::KindCrawl;
use super::files::included_files;
use super::glob::{Glob, is_glob};
use super::{Pages, enrich, text};
use crate::ado::{AdoClient, AdoError, CONTENT_MISSING, GitVersion, Recursion, repository_ids};
use crate::crawl_context::{CrawlError, Crawler};
use crate::plan::KindPlan;
use crate::selector::{self, FolderSelector, SelectorError};

/// One folder pattern and the repositories (name, optional branch) it applies to; no
/// repositories means every repository.
#[derive(Debug, Clone)]
pub(crate) struct FolderRule {
    pub(crate) glob: Glob,
    repositories: Vec<(String, Option<String>)>,
    project: Option<String>,
}

impl FolderRule {
    /// The rules of every pattern of every resource of the kind, and the union of their
    /// `includedFiles`.
    pub(crate) fn of_plan(
        plan: &KindPlan,
    ) -> Result<(Vec<FolderRule>, Vec<String>), SelectorError> {
        let selectors = plan.selectors::<FolderSelector>()?;
        let rules = (selectors.iter())
            .flat_map(|selector| {
                let project = selector.project_name.as_ref().map(|p| p.0.clone());
                selector.folders.iter().map(move |folder| FolderRule {
                    glob: Glob::new(&folder.path.0),
                    repositories: (folder.repos.iter())
                        .map(|r| (r.name.clone(), r.branch.clone()))
                        .collect(),
                    project: project.clone(),
                })
            })
            .collect();
        let included = selector::union(selectors.iter().map(|s| &s.included_files));
        Ok((rules, included))
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
        // Azure DevOps says the path (or the branch) is not in the repository: no folders.
        Err(e) if e.says_missing(CONTENT_MISSING) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    // The listing includes its scope folder: the root for a top-level pattern. The Python
    // integration matches the root's path as "" (it strips slashes), which a pattern of only
    // `*` matches, so `*` also yields the root folder there; so it does here.
    let root_matches = !source.is_empty() && source.chars().all(|c| c == '*');
    let folders: Vec<Value> = items
        .into_iter()
        .filter(|i| i.get("isFolder").and_then(Value::as_bool) == Some(true))
        .filter(|i| {
            text(i, "path").is_some_and(|p| {
                if p == "/" {
                    root_matches
                } else {
                    rule.glob.matches(p)
                }
            })
        })
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
    pub(crate) async fn crawl_folders(&self, mut crawl: KindCrawl<'_>) -> Result<(), CrawlError> {
        let plan = crawl.plan;
        let (rules, included) = FolderRule::of_plan(plan)?;
        // Parsed from the kept list as the fan-out reaches them.
        let units = self
            .healthy_repository_units(crawl.cache)
            .await?
            .filter(|(_, r)| {
                std::future::ready(r.as_ref().map_or(true, |r| {
                    rules.iter().any(|rule| rule.branch_for(r).is_some())
                }))
            });
        let (rules, included) = (&rules, &included);
        self.fan_out_stream(
            &mut crawl,
            units,
            self.fan_out_width(),
            |repository, pages: Pages| async move {
                let repository: Value = repository?;
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
