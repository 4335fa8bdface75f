//! The `file` kind: files of every repository's default branch that a selector's
//! `files.path` names (literal paths through `itemsbatch`, patterns through a recursive listing
//! and a glob match), each downloaded and parsed (JSON, else YAML, else the raw text), with
//! `includedFiles` resolved from the repository's root. Every `file` selector of a resync is
//! fed from one listing per repository and one read per file (the kind is crawled together).
//!
//! Also what live `git.push` events need to build or delete one file item ([`FileRule`],
//! [`file_of_item`], [`deleted_file_item`]).

use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::{Map, Value, json};

use super::KindCrawl;
use super::glob::{Glob, is_glob};
use super::{Pages, text};
use crate::ado::{
    AdoClient, AdoError, CONTENT_MISSING, GitVersion, Recursion, none_if_missing, repository_ids,
};
use crate::crawl_context::{CrawlError, Crawler};
use crate::plan::KindPlan;
use crate::selector::{self, FileSelector, SelectorError};

/// Files larger than this are not published (the Python integration's limit).
pub(crate) const MAX_FILE_BYTES: usize = 1024 * 1024;
/// Files of one repository downloaded at the same time.
const CONCURRENT_DOWNLOADS: usize = 8;

/// One resource's `files` selector: the paths or patterns, and the repositories (by name) it
/// is limited to.
#[derive(Debug, Clone)]
pub(crate) struct FileRule {
    literals: Vec<String>,
    patterns: Vec<Glob>,
    repositories: Option<Vec<String>>,
}

impl FileRule {
    /// The rules of every resource of the kind, and the union of their `includedFiles`.
    pub(crate) fn of_plan(plan: &KindPlan) -> Result<(Vec<FileRule>, Vec<String>), SelectorError> {
        let selectors = plan.selectors::<FileSelector>()?;
        let rules = (selectors.iter().map(|s| &s.files))
            .map(|files| {
                let (patterns, literals): (Vec<&String>, Vec<&String>) =
                    files.path.0.iter().partition(|p| is_glob(p));
                FileRule {
                    literals: (literals.into_iter())
                        .map(|p| format!("/{}", p.trim().trim_start_matches('/')))
                        .collect(),
                    patterns: patterns.into_iter().map(|p| Glob::new(p)).collect(),
                    repositories: (files.repos.as_ref())
                        .map(|names| names.0.iter().map(|n| n.to_lowercase()).collect()),
                }
            })
            .collect();
        let included = selector::union(selectors.iter().map(|s| &s.included_files));
        Ok((rules, included))
    }

    /// Whether this rule reads the repository named `name`.
    pub(crate) fn covers(&self, name: &str) -> bool {
        self.repositories
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n.eq_ignore_ascii_case(name)))
    }

    /// Whether `path` (`/docs/README.md`) is one of this rule's files.
    pub(crate) fn matches(&self, path: &str) -> bool {
        let absolute = format!("/{}", path.trim_start_matches('/'));
        self.literals
            .iter()
            .any(|l| l.eq_ignore_ascii_case(&absolute))
            || self.patterns.iter().any(|g| g.matches(&absolute))
    }
}

/// `parsed`: JSON, else YAML (several documents → a list; only a mapping or a list counts, so
/// that prose is not read as a YAML string), else the raw text.
pub(crate) fn parse_content(raw: &str) -> Value {
    if let Ok(value) = serde_json::from_str::<Value>(raw) {
        return value;
    }
    if let Ok(mut documents) = serde_saphyr::from_multiple::<Value>(raw) {
        match documents.len() {
            0 => {}
            1 => {
                let document = documents.remove(0);
                if document.is_object() || document.is_array() {
                    return document;
                }
            }
            _ => return Value::Array(documents),
        }
    }
    Value::String(raw.to_string())
}

/// `name` resolved against the directory of `file` (`README.md` next to `/docs/guide.md` is
/// `/docs/README.md`); a name starting with `/` is from the repository root.
pub(crate) fn relative_to(directory: &str, name: &str) -> String {
    if name.starts_with('/') {
        return name.to_string();
    }
    let mut segments: Vec<&str> = directory.split('/').filter(|s| !s.is_empty()).collect();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    format!("/{}", segments.join("/"))
}

/// What reading one file gave.
#[derive(Debug)]
pub(crate) enum FileRead {
    Item(Value),
    /// No such file at that version.
    Gone,
    /// Empty, or larger than [`MAX_FILE_BYTES`].
    Skipped,
}

/// `__includedFiles` for an item at `directory`: each name's text at `version`, `""` when
/// missing (as the Python integration writes it).
pub(crate) async fn included_files(
    client: &AdoClient,
    repository: &Value,
    directory: &str,
    names: &[String],
    version: &GitVersion,
) -> Result<Value, AdoError> {
    let (project_id, repository_id) = &repository_ids(repository);
    let contents: Vec<(String, Value)> = stream::iter(names.to_vec())
        .map(|name| async move {
            let path = relative_to(directory, &name);
            let read = client.read_item(project_id, repository_id, &path, version, true);
            let item = none_if_missing(read.await)?;
            let content = item
                .and_then(|i| i.get("content").and_then(Value::as_str).map(String::from))
                .unwrap_or_default();
            let content = Value::String(content);
            Ok::<_, AdoError>((name, content))
        })
        .buffered(CONCURRENT_DOWNLOADS)
        .try_collect()
        .await?;
    Ok(Value::Object(contents.into_iter().collect::<Map<_, _>>()))
}

/// A repository's `includedFiles` at one version, read once however many of its files carry
/// them: they are resolved from the repository's root, the same for every file.
pub(crate) struct RootIncluded<'a> {
    names: &'a [String],
    read: tokio::sync::OnceCell<Value>,
}

impl<'a> RootIncluded<'a> {
    pub(crate) fn new(names: &'a [String]) -> Self {
        Self {
            names,
            read: tokio::sync::OnceCell::new(),
        }
    }

    /// The `__includedFiles` value, read on the first call (a failed read is not kept).
    async fn value(
        &self,
        client: &AdoClient,
        repository: &Value,
        version: &GitVersion,
    ) -> Result<Value, AdoError> {
        self.read
            .get_or_try_init(|| included_files(client, repository, "", self.names, version))
            .await
            .cloned()
    }
}

/// The `file` item of `item`, an items-API answer for `path` at `version` with its content.
pub(crate) async fn file_of_item(
    client: &AdoClient,
    repository: &Value,
    path: &str,
    item: Value,
    version: &GitVersion,
    included: &RootIncluded<'_>,
) -> Result<FileRead, AdoError> {
    if item.get("isFolder").and_then(Value::as_bool) == Some(true) {
        return Ok(FileRead::Gone);
    }
    let raw = item
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if raw.is_empty() || raw.len() > MAX_FILE_BYTES {
        tracing::debug!(path, size = raw.len(), "file skipped: empty or over 1 MiB");
        return Ok(FileRead::Skipped);
    }
    let item_path = text(&item, "path").unwrap_or(path);
    // The Python integration's fields exactly: it lists files through `itemsbatch` without
    // content metadata, so its items have no `encoding`, `contentType`, `fileName` or
    // `extension`. `commitId` is kept even when null, as it writes it.
    let file = json!({
        "path": item_path.trim_start_matches('/'),
        "objectId": item.get("objectId"),
        "size": raw.len(),
        "isFolder": false,
        "commitId": item.get("commitId"),
        "content": {"raw": raw, "parsed": parse_content(raw)},
    });
    let mut out = json!({"file": file, "repo": repository});
    if !included.names.is_empty() {
        // From the repository's root, not the file's folder: the Python integration looks for
        // the file's folder at the item's top-level `path`, which a `file` item does not have
        // (it is `file.path`), so it always resolves them from the root. Mappings moved from it
        // rely on that. Read once for all the repository's files.
        let files = included.value(client, repository, version).await?;
        out = super::enrich(out, "__includedFiles", &files);
    }
    Ok(FileRead::Item(out))
}

/// What a deletion knows of a file: its path and last object id, and the repository.
pub(crate) fn deleted_file_item(repository: &Value, path: &str, object_id: Option<&str>) -> Value {
    json!({
        "file": {"path": path.trim_start_matches('/'), "objectId": object_id, "isFolder": false},
        "repo": repository,
    })
}

impl Crawler {
    /// Every `file` crawl unit of the resync at once (one per distinct selector): per
    /// repository with a default branch that a unit's rules cover, one listing for every
    /// unit's paths and patterns, each matching file read once, and each unit's items built
    /// from the files its own rules match, with its own `includedFiles`.
    pub(crate) async fn crawl_files(
        &self,
        mut crawls: Vec<KindCrawl<'_>>,
    ) -> Result<(), CrawlError> {
        let Some(cache) = crawls.first().map(|crawl| crawl.cache) else {
            return Ok(());
        };
        let plans = (crawls.iter())
            .map(|crawl| FileRule::of_plan(crawl.plan))
            .collect::<Result<Vec<_>, _>>()?;
        let every: Vec<FileRule> = plans.iter().flat_map(|(rules, _)| rules.clone()).collect();
        // Parsed from the kept list as the fan-out reaches them.
        let units = self
            .healthy_repository_units(cache)
            .await?
            .filter(move |(_, r)| {
                std::future::ready(r.as_ref().map_or(true, |r| {
                    r.get("defaultBranch").is_some()
                        && every
                            .iter()
                            .any(|rule| rule.covers(text(r, "name").unwrap_or("")))
                }))
            });
        let plans = &plans;
        let width = self.fan_out_width();
        self.fan_out_stream_to(
            &mut crawls,
            units,
            width,
            |repository, pages: Pages| async move {
                let repository: Value = repository?;
                let name = text(&repository, "name").unwrap_or_default();
                // Per unit, its rules that cover the repository.
                let applicable: Vec<Vec<&FileRule>> = (plans.iter())
                    .map(|(rules, _)| rules.iter().filter(|r| r.covers(name)).collect())
                    .collect();
                let every: Vec<&FileRule> = applicable.iter().flatten().copied().collect();
                let branch =
                    GitVersion::Branch(text(&repository, "defaultBranch").unwrap_or("main").into());
                let listed = self.matching_paths(&repository, &every, &branch).await?;
                let paths: Vec<Vec<&String>> = (applicable.iter())
                    .map(|rules| {
                        (listed.iter())
                            .filter(|path| rules.iter().any(|rule| rule.matches(path)))
                            .collect()
                    })
                    .collect();
                let (project_id, repository_id) = &repository_ids(&repository);
                let branch = &branch;
                // Each file any unit matches, read once (`None`: gone in between).
                let wanted: Vec<String> = (listed.iter())
                    .filter(|path| paths.iter().any(|unit| unit.contains(path)))
                    .cloned()
                    .collect();
                let client = &self.client;
                let read: Vec<(String, Option<Value>)> = stream::iter(wanted)
                    .map(|path| async move {
                        let read = client.read_item(project_id, repository_id, &path, branch, true);
                        let item = none_if_missing(read.await)?;
                        Ok::<_, AdoError>((path, item))
                    })
                    .buffered(CONCURRENT_DOWNLOADS)
                    .try_collect()
                    .await?;
                let repository = &repository;
                for (index, unit_paths) in paths.iter().enumerate() {
                    let included = RootIncluded::new(&plans[index].1);
                    let mut items = Vec::new();
                    for (path, item) in &read {
                        let Some(item) = item.as_ref().filter(|_| unit_paths.contains(&path))
                        else {
                            continue;
                        };
                        let built = file_of_item(
                            &self.client,
                            repository,
                            path,
                            item.clone(),
                            branch,
                            &included,
                        )
                        .await?;
                        if let FileRead::Item(item) = built {
                            items.push(item);
                        }
                    }
                    pages.send_to(index, items).await?;
                }
                Ok(())
            },
        )
        .await
    }

    /// The file paths of a repository that the rules name, each once, in path order.
    async fn matching_paths(
        &self,
        repository: &Value,
        rules: &[&FileRule],
        branch: &GitVersion,
    ) -> Result<Vec<String>, AdoError> {
        let (project_id, repository_id) = &repository_ids(repository);
        let mut requests: Vec<(String, Recursion)> = Vec::new();
        for rule in rules {
            for literal in &rule.literals {
                requests.push((literal.clone(), Recursion::None));
            }
            for glob in &rule.patterns {
                let (base, deep) = glob.base();
                let recursion = if deep {
                    Recursion::Full
                } else {
                    Recursion::OneLevel
                };
                match requests.iter_mut().find(|(p, _)| *p == base) {
                    Some((_, existing)) if recursion == Recursion::Full => *existing = recursion,
                    Some(_) => {}
                    None => requests.push((base, recursion)),
                }
            }
        }
        let lists = match self
            .client
            .items_batch(project_id, repository_id, &requests, branch)
            .await
        {
            Ok(lists) => lists,
            // One missing path fails the whole batch: ask path by path instead.
            Err(AdoError::NotFound { .. }) | Err(AdoError::Status { status: 400, .. }) => {
                let mut lists = Vec::new();
                for (path, recursion) in &requests {
                    match self
                        .client
                        .list_items(project_id, repository_id, path, *recursion, branch)
                        .await
                    {
                        Ok(items) => lists.push(items),
                        // Azure DevOps says the path is not in the repository: none there.
                        Err(e) if e.says_missing(CONTENT_MISSING) => {}
                        Err(e) => return Err(e),
                    }
                }
                lists
            }
            Err(e) => return Err(e),
        };
        let mut paths: Vec<String> = lists
            .iter()
            .flatten()
            .filter(|item| item.get("isFolder").and_then(Value::as_bool) != Some(true))
            .filter_map(|item| text(item, "path"))
            .filter(|path| rules.iter().any(|rule| rule.matches(path)))
            .map(String::from)
            .collect();
        paths.sort();
        paths.dedup();
        Ok(paths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_parsed_as_json_then_yaml_then_kept_raw() {
        assert_eq!(parse_content("{\"a\": 1}"), json!({"a": 1}));
        assert_eq!(parse_content("a: 1\nb: [x]\n"), json!({"a": 1, "b": ["x"]}));
        assert_eq!(
            parse_content("a: 1\n---\nb: 2\n"),
            json!([{"a": 1}, {"b": 2}])
        );
        assert_eq!(
            parse_content("# Title\n\nSome prose.\n"),
            json!("# Title\n\nSome prose.\n")
        );
    }

    #[test]
    fn included_files_are_relative_to_the_file() {
        assert_eq!(relative_to("/docs", "README.md"), "/docs/README.md");
        assert_eq!(relative_to("", "README.md"), "/README.md");
        assert_eq!(relative_to("/docs/a", "../b.md"), "/docs/b.md");
        assert_eq!(relative_to("/docs", "/CODEOWNERS"), "/CODEOWNERS");
    }
}
