//! Git kinds: `repository` (with `includedFiles` → `__includedFiles`), `repository-policy`
//! (`__repository`) and `pull-request` (active, plus completed/abandoned closed within
//! `minTimeInDays`, at most `maxResults` each per repository; listed per project and status
//! once for every `pull-request` selector of the resync).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt, TryStreamExt, stream};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::KindCrawl;
use super::items::{ItemBuilder, ListEnrichment};
use super::{Pages, enrich, text};
use crate::ado::{AdoError, ProjectId, repository_ids};
use crate::crawl_context::{
    BoundedTexts, CompactList, CrawlError, Crawler, OrganizationList, ResyncCache, parse,
};
use crate::listing_budget::HeldListing;
use crate::page_budget::heap_bytes;
use crate::selector::PullRequestSelector;

/// Most heap bytes of a `repository-policy` page: a project's policies, each with the
/// repository it applies to, are several MB parsed (a page of them built whole, in every
/// project read at once, held 90 MiB at 30 projects in flight); pages of this size keep the
/// crawl buffer's units busy.
const POLICY_PAGE_BYTES: usize = 256 * 1024;

/// Whether derived kinds read this repository: enabled, in a project that is not being
/// created or deleted.
fn healthy(repository: &Value) -> bool {
    let disabled = repository
        .get("isDisabled")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let state = repository
        .get("project")
        .and_then(|p| text(p, "state"))
        .unwrap_or("wellFormed");
    !disabled && !matches!(state, "deleted" | "deleting" | "new" | "createPending")
}

/// Every repository of a kept list, each parsed as the fan-out reaches it (the list is kept
/// as text; parsed all at once it would take about five times as much).
fn listed(list: Arc<CompactList>) -> impl Iterator<Item = Value> {
    (0..list.len()).map(move |index| list.get(index))
}

fn project_of(repository: &Value) -> String {
    repository
        .get("project")
        .and_then(|p| text(p, "id"))
        .unwrap_or_default()
        .to_string()
}

/// A repository list (each project's repositories one after another) as one fan-out unit per
/// project (label = project id), in order, each made as the fan-out reaches it.
fn repositories_by_project(
    repositories: impl IntoIterator<Item = Value>,
) -> impl Iterator<Item = (String, Vec<Value>)> {
    let mut repositories = repositories.into_iter().peekable();
    std::iter::from_fn(move || {
        let first = repositories.next()?;
        let project = project_of(&first);
        let mut list = vec![first];
        while let Some(next) = repositories.next_if(|r| project_of(r) == project) {
            list.push(next);
        }
        Some((format!("project {project}"), list))
    })
}

/// The repositories of a kept list that `keep` keeps, as their texts grouped by project (label
/// = project id, as [`repositories_by_project`] labels them), in order. Each repository is
/// parsed only to be grouped: a unit holds its project's repositories as text.
fn texts_by_project(
    list: Arc<CompactList>,
    keep: fn(&Value) -> bool,
) -> impl Iterator<Item = (String, (ProjectId, Vec<Box<str>>))> {
    let mut kept = (0..list.len())
        .filter_map(move |index| {
            let text = list.text(index)?;
            let repository = parse(text);
            keep(&repository).then(|| {
                let (project_id, _) = repository_ids(&repository);
                (project_of(&repository), project_id, Box::<str>::from(text))
            })
        })
        .peekable();
    std::iter::from_fn(move || {
        let (project, project_id, first) = kept.next()?;
        let mut texts = vec![first];
        while let Some((_, _, next)) = kept.next_if(|(of, _, _)| *of == project) {
            texts.push(next);
        }
        Some((format!("project {project}"), (project_id, texts)))
    })
}

/// The healthy repositories of a listing, each kept as its text (parsed only to be checked).
fn healthy_texts(listed: Vec<Box<RawValue>>) -> Vec<Box<str>> {
    listed
        .into_iter()
        .filter(|repository| healthy(&parse(repository.get())))
        .map(Box::<str>::from)
        .collect()
}

/// The healthy repositories of a list as fan-out units (label = repository name).
pub(crate) fn repository_units(
    repositories: impl IntoIterator<Item = Value>,
) -> impl Iterator<Item = (String, Value)> {
    repositories
        .into_iter()
        .filter(healthy)
        .map(|r| (format!("repository {}", text(&r, "name").unwrap_or("?")), r))
}

/// Repository units grouped by project (label = project id), in order: a resync's list holds
/// each project's repositories one after another.
fn project_units(
    units: impl Iterator<Item = (String, Value)>,
) -> impl Iterator<Item = (String, (ProjectId, Vec<Value>))> {
    repositories_by_project(units.map(|(_, repository)| repository)).filter_map(
        |(label, repositories)| {
            let (project_id, _) = repository_ids(repositories.first()?);
            Some((label, (project_id, repositories)))
        },
    )
}

/// A repository unit of a derived kind: the repository, or why its project's repositories
/// could not be listed (when the resync keeps no list).
pub(crate) type RepositoryUnit = Result<Value, AdoError>;

/// The repository units of a derived kind, labelled.
pub(crate) type RepositoryUnits<'a> = BoxStream<'a, (String, RepositoryUnit)>;

/// The healthy repositories of a kept list as fan-out units, each parsed as the fan-out
/// reaches it.
pub(crate) fn kept_repository_units(
    list: Arc<CompactList>,
) -> impl Stream<Item = (String, RepositoryUnit)> + Send + 'static {
    stream::iter(repository_units(listed(list)).map(|(label, repository)| (label, Ok(repository))))
}

/// A project's unit of `repository-policy`: its healthy repositories from the kept list, each
/// as its text, or the project alone when the resync keeps no list (the unit lists them).
enum PolicyUnit {
    Listed(ProjectId, Vec<Box<str>>),
    Unlisted(ProjectId),
}

/// What a policy configuration's `settings.scope` is read from (the rest of it skipped).
#[derive(Deserialize)]
struct Scoped {
    settings: Option<ScopeSettings>,
}

#[derive(Deserialize)]
struct ScopeSettings {
    scope: Option<Value>,
}

/// A policy configuration's `settings.scope` (see [`scope_applies`]), read from its text
/// without parsing the rest of it.
fn scope_of(policy: &str) -> Option<Value> {
    match serde_json::from_str::<Scoped>(policy) {
        Ok(scoped) => scoped.settings.and_then(|settings| settings.scope),
        // A `settings` that is no object (or a duplicate key): as the parsed policy has it.
        Err(_) => parse(policy).pointer("/settings/scope").cloned(),
    }
}

/// The `repository-policy` items of a project, each policy that applies to each repository in
/// turn, built (parsed) one by one as they are taken.
struct PolicyItems<'a> {
    /// The project's healthy repositories, as text.
    repositories: std::slice::Iter<'a, Box<str>>,
    /// The project's policies: each one's scope, and its text.
    policies: &'a [(Option<Value>, Box<str>)],
    /// The repository being read (parsed), its id and default branch, and the index of the
    /// next policy to check against it.
    current: Option<(Value, String, Option<String>, usize)>,
}

impl Iterator for PolicyItems<'_> {
    type Item = Value;

    fn next(&mut self) -> Option<Value> {
        loop {
            if let Some((repository, id, branch, next)) = &mut self.current {
                while let Some((scope, policy)) = self.policies.get(*next) {
                    *next += 1;
                    if scope_applies(scope.as_ref(), id, branch.as_deref()) {
                        return Some(enrich(parse(policy), "__repository", repository));
                    }
                }
            }
            let repository = parse(self.repositories.next()?);
            let (_, id) = repository_ids(&repository);
            let branch = text(&repository, "defaultBranch").map(str::to_string);
            self.current = Some((repository, id.as_str().to_string(), branch, 0));
        }
    }
}

/// [`scope_applies`] for a whole policy (tests).
#[cfg(test)]
fn policy_applies(policy: &Value, repository_id: &str, branch: Option<&str>) -> bool {
    scope_applies(policy.pointer("/settings/scope"), repository_id, branch)
}

/// Whether a policy configuration of the project listing, by its `settings.scope`, applies to the repository
/// `repository_id` at `branch` (its default branch, `refs/heads/main`), as Azure DevOps decides
/// for `git/policy/configurations?repositoryId=&refName=`: one of its `settings.scope` entries
/// names the repository or no repository (project-wide), and names no branch, or the branch
/// (`matchKind` `Exact`, case-insensitive), a prefix of it (`Prefix`), or the default branch
/// (`DefaultBranch`). Without a branch (an empty repository) every scope of the repository
/// applies, as the query without `refName` answers; a policy without a scope is project-wide.
fn scope_applies(scope: Option<&Value>, repository_id: &str, branch: Option<&str>) -> bool {
    let Some(scopes) = scope.and_then(Value::as_array) else {
        return true;
    };
    scopes.iter().any(|scope| {
        let repository =
            text(scope, "repositoryId").is_none_or(|id| id.eq_ignore_ascii_case(repository_id));
        let reference = match (branch, text(scope, "refName")) {
            (None, _) | (_, None) => true,
            (Some(branch), Some(name)) => {
                match text(scope, "matchKind")
                    .map(str::to_ascii_lowercase)
                    .as_deref()
                {
                    Some("prefix") => branch
                        .to_ascii_lowercase()
                        .starts_with(&name.to_ascii_lowercase()),
                    Some("defaultbranch") => true,
                    _ => branch.eq_ignore_ascii_case(name),
                }
            }
        };
        repository && reference
    })
}

impl Crawler {
    /// Every repository of every project, read once per resync (not published): by the
    /// `repository` kind as it publishes them, or by the first kind that needs them; or, past
    /// the resync's byte limit ([`crate::crawl_context::REPOSITORY_LIST_BYTES`]), the word that
    /// each kind lists each project's repositories itself (the read stops there: what it read
    /// so far is dropped).
    pub(crate) async fn repository_list(
        &self,
        cache: &ResyncCache,
    ) -> Result<OrganizationList, CrawlError> {
        let mut held = cache.repositories.lock().await;
        if let Some(list) = held.as_ref() {
            return Ok(list.clone());
        }
        let projects = self.project_list(cache).await?;
        let ids: Vec<ProjectId> = projects
            .iter()
            .filter_map(|p| text(&p, "id").map(ProjectId::new))
            .collect();
        drop(projects);
        let mut listings = stream::iter(ids)
            .map(|id| async move {
                match self.client.repositories(&id).await {
                    // The project went away between the list and the read.
                    Err(e) if e.unit_gone() => Ok(Vec::new()),
                    other => other,
                }
            })
            .buffered(super::CONCURRENT_UNITS);
        let mut kept = BoundedTexts::new(cache.repository_list_bytes);
        while let Some(listed) = listings.try_next().await? {
            if !listed
                .into_iter()
                .all(|repository| kept.push(repository.into()))
            {
                break;
            }
        }
        let list = kept.finish();
        *held = Some(list.clone());
        Ok(list)
    }

    pub(crate) async fn crawl_repositories(
        &self,
        mut crawl: KindCrawl<'_>,
    ) -> Result<(), CrawlError> {
        let plan = crawl.plan;
        let enrichment = &ListEnrichment::of(plan)?;
        let builder = ItemBuilder::new(&self.client);
        let builder = &builder;
        // Kinds read repository by repository wait for the list this crawl reads.
        let cache = crawl.cache;
        let held = match cache.keep_repositories {
            true => Some(cache.repositories.lock().await),
            false => None,
        };
        let keeping = match held.as_ref().map(|held| (**held).clone()) {
            Some(Some(OrganizationList::Kept(listed))) => {
                // A kind read repository by repository listed them first: publish that list,
                // each project's repositories kept as text until its unit builds them.
                drop(held);
                let units = texts_by_project(listed, |_| true);
                return self
                    .fan_out(
                        &mut crawl,
                        units,
                        |(_, repositories), pages: Pages| async move {
                            pages
                                .send_built(builder.list_items(enrichment, repositories))
                                .await
                        },
                    )
                    .await;
            }
            // Too many to keep (a kind found so): each lists them itself.
            Some(Some(OrganizationList::PerProject)) | None => {
                drop(held);
                None
            }
            Some(None) => held.map(|held| (held, BoundedTexts::new(cache.repository_list_bytes))),
        };
        let units = self.project_units(cache).await?;
        let keeping = Mutex::new(keeping);
        let keeping_ref = &keeping;
        self.fan_out(&mut crawl, units, |project, pages: Pages| async move {
            let id = ProjectId::new(text(&project, "id").unwrap_or_default());
            let repositories = self.client.repositories(&id).await?;
            {
                let mut keeping = keeping_ref.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((_, kept)) = keeping.as_mut()
                    && !(repositories.iter()).all(|repository| kept.push(repository.get().into()))
                    && let Some((mut held, _)) = keeping.take()
                {
                    // Past the limit: the kinds that wait for the list list them themselves,
                    // starting now.
                    *held = Some(OrganizationList::PerProject);
                }
            }
            // Built (parsed) once the publisher has room for the page: until then the unit
            // holds the listing's text.
            pages
                .send_built(builder.list_items(enrichment, repositories))
                .await
        })
        .await?;
        if crawl.report.failure.is_none()
            && let Some((mut held, kept)) = keeping.into_inner().unwrap_or_else(|p| p.into_inner())
        {
            *held = Some(kept.finish());
        }
        Ok(())
    }

    /// The healthy repositories of this resync as fan-out units (derived kinds read these):
    /// from the kept list, or listed project by project as the fan-out reaches each project
    /// when the resync keeps none (a project whose list cannot be read is a failed unit).
    pub(crate) async fn healthy_repository_units(
        &self,
        cache: &ResyncCache,
    ) -> Result<RepositoryUnits<'_>, CrawlError> {
        Ok(match self.repository_list(cache).await? {
            OrganizationList::Kept(list) => kept_repository_units(list).boxed(),
            OrganizationList::PerProject => {
                let projects = self.project_units(cache).await?;
                stream::iter(projects)
                    .then(move |(label, project)| async move {
                        let id = ProjectId::new(text(&project, "id").unwrap_or_default());
                        (label, self.client.repositories(&id).await)
                    })
                    .flat_map(|(label, listed)| {
                        // Each repository parsed as the fan-out reaches it; the listing's
                        // others stay text.
                        let units: Box<dyn Iterator<Item = (String, RepositoryUnit)> + Send> =
                            match listed {
                                Ok(repositories) => Box::new(
                                    repository_units(
                                        (repositories.into_iter())
                                            .map(|repository| parse(repository.get())),
                                    )
                                    .map(|(label, repository)| (label, Ok(repository))),
                                ),
                                Err(e) => Box::new(std::iter::once((label, Err(e)))),
                            };
                        stream::iter(units)
                    })
                    .boxed()
            }
        })
    }

    /// One policy listing per project ([`crate::ado::AdoClient::project_policies`]) instead of one per
    /// repository, each policy published for every healthy repository it applies to (as
    /// `git/policy/configurations?repositoryId=&refName=` would answer for that repository).
    pub(crate) async fn crawl_policies(&self, mut crawl: KindCrawl<'_>) -> Result<(), CrawlError> {
        let units: Box<dyn Iterator<Item = (String, PolicyUnit)> + Send> =
            match self.repository_list(crawl.cache).await? {
                OrganizationList::Kept(list) => Box::new(texts_by_project(list, healthy).map(
                    |(label, (id, repositories))| (label, PolicyUnit::Listed(id, repositories)),
                )),
                OrganizationList::PerProject => Box::new(
                    self.project_units(crawl.cache)
                        .await?
                        .map(|(label, project)| {
                            let id = ProjectId::new(text(&project, "id").unwrap_or_default());
                            (label, PolicyUnit::Unlisted(id))
                        }),
                ),
            };
        // Each unit keeps its project's listings until its last page is sent: as many at once
        // as the crawl's listing budget holds (about 0.45 MB a project in the simulator, 99
        // repositories and 198 policies; 30 units at once kept 13 MiB).
        let read = |unit, mut held: HeldListing, pages: Pages| async move {
            let (project_id, repositories) = match unit {
                PolicyUnit::Listed(id, repositories) => (id, repositories),
                PolicyUnit::Unlisted(id) => {
                    let listed = self.client.repositories(&id).await?;
                    (id, healthy_texts(listed))
                }
            };
            let repositories_bytes: usize = repositories.iter().map(|text| text.len()).sum();
            if repositories.is_empty() {
                held.keeps(repositories_bytes);
                return Ok(());
            }
            // Each policy kept as its text and scope (the only part read to pick it), parsed
            // only for the repositories it applies to; each repository parsed only while its
            // policies are built; pages sent as they fill, not the project's whole as one.
            let policies: Vec<(Option<Value>, Box<str>)> = self
                .client
                .project_policies(&project_id)
                .await?
                .into_iter()
                .map(|policy| (scope_of(policy.get()), policy.into()))
                .collect();
            held.keeps(
                repositories_bytes
                    + (policies.iter())
                        .map(|(scope, text)| scope.as_ref().map_or(0, heap_bytes) + text.len())
                        .sum::<usize>(),
            );
            // Each item built as its page is taken: a policy and the repository it applies to
            // are parsed only then.
            let items = PolicyItems {
                repositories: repositories.iter(),
                policies: &policies,
                current: None,
            };
            pages
                .send_pages(items, self.items_per_event, POLICY_PAGE_BYTES)
                .await
        };
        self.fan_out_keeping(&mut crawl, units, read).await
    }

    /// Every `pull-request` crawl unit of the resync at once (one per distinct selector):
    /// per project with a healthy repository, one list per status of every repository's pull
    /// requests (`GET {project}/_apis/git/pullrequests`, closed ones within the widest
    /// `minTimeInDays`), each page split among the units as each would have read it
    /// repository by repository: pull requests of healthy repositories only, and for each unit
    /// the closed ones within its own window, at most its `maxResults` per repository and
    /// status (newest first, the lists' order). Nothing outlives its page but the counts per
    /// repository of the project being read.
    pub(crate) async fn crawl_pull_requests(
        &self,
        mut crawls: Vec<KindCrawl<'_>>,
    ) -> Result<(), CrawlError> {
        let Some(cache) = crawls.first().map(|crawl| crawl.cache) else {
            return Ok(());
        };
        // Whole seconds: the API's minTime is given so, and every unit compares with it.
        let now = Utc::now();
        let now = DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
        let windows = (crawls.iter())
            .map(|crawl| {
                let (days, max_results) = PullRequestSelector::window(&crawl.plan.selectors()?);
                // Beyond a million days (before year 0) every pull request is within it.
                let days = i64::try_from(days.min(1_000_000)).unwrap_or(1_000_000);
                Ok(Window {
                    min_time: now - chrono::Duration::days(days),
                    max_results: usize::try_from(max_results).unwrap_or(usize::MAX),
                })
            })
            .collect::<Result<Vec<_>, CrawlError>>()?;
        let widest = windows.iter().map(|w| w.min_time).min().unwrap_or(now);
        let min_time = widest.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let units: Vec<(String, PullRequestList)> = match self.repository_list(cache).await? {
            OrganizationList::Kept(list) => project_units(repository_units(listed(list)))
                .flat_map(|(label, (project_id, repositories))| {
                    PullRequestList::of_project(&label, project_id, &repositories)
                })
                .collect(),
            // Too many repositories to keep: each project's unit lists them itself.
            OrganizationList::PerProject => (self.project_units(cache).await?)
                .map(|(label, project)| {
                    let id = ProjectId::new(text(&project, "id").unwrap_or_default());
                    (
                        format!("{label}, pull requests"),
                        PullRequestList::unlisted(id),
                    )
                })
                .collect(),
        };
        let (windows, min_time) = (&windows, min_time.as_str());
        let top = self.limits.pull_request_page.max(1);
        self.fan_out_to(
            &mut crawls,
            units,
            |list: PullRequestList, pages: Pages| async move {
                let PullRequestList {
                    project_id,
                    healthy,
                    statuses,
                } = list;
                let healthy = match healthy {
                    Some(healthy) => healthy,
                    None => {
                        let listed = self.client.repositories(&project_id).await?;
                        let healthy: Vec<Value> = repository_units(
                            (listed.into_iter()).map(|repository| parse(repository.get())),
                        )
                        .map(|(_, r)| r)
                        .collect();
                        healthy_ids(&healthy)
                    }
                };
                for &status in statuses {
                    let closed = status != "active";
                    let mut criteria = vec![("searchCriteria.status", status)];
                    if closed {
                        criteria.push(("searchCriteria.queryTimeRangeType", "closed"));
                        criteria.push(("searchCriteria.minTime", min_time));
                    }
                    // Per unit, the pull requests of each repository it took so far.
                    let mut taken = vec![HashMap::new(); windows.len()];
                    let mut skip = 0;
                    loop {
                        let page = self
                            .client
                            .project_pull_requests_page(&project_id, &criteria, top, skip)
                            .await?;
                        let got = page.len();
                        skip += got;
                        let page: Vec<(String, Value)> = (page.into_iter())
                            .filter_map(|pr| Some((repository_of(&pr)?, pr)))
                            .filter(|(repository, _)| healthy.contains(repository))
                            .collect();
                        for (index, window) in windows.iter().enumerate() {
                            let taken = &mut taken[index];
                            let items = (page.iter())
                                .filter(|(repository, pr)| {
                                    !closed || window.takes(repository, pr, taken)
                                })
                                .map(|(_, pr)| pr.clone())
                                .collect();
                            pages.send_to(index, items).await?;
                        }
                        // A short page is the last one: no extra request for an empty page.
                        // Closed lists end once every unit took all it may of every repository.
                        let full = || {
                            (windows.iter().zip(&taken)).all(|(window, taken)| {
                                (healthy.iter())
                                    .all(|r| taken.get(r).is_some_and(|n| *n >= window.max_results))
                            })
                        };
                        if got < top || (closed && full()) {
                            break;
                        }
                    }
                }
                Ok(())
            },
        )
        .await
    }
}

/// One pull request unit of a resync: a project's pull requests of one status (or, when the
/// resync keeps no repository list, of every status, after listing the project's repositories).
struct PullRequestList {
    project_id: ProjectId,
    /// The ids of the project's healthy repositories (lower case): the others' pull requests
    /// are left out. `None`: the unit lists them first.
    healthy: Option<Arc<HashSet<String>>>,
    statuses: &'static [&'static str],
}

/// The statuses of pull requests read, as the Python integration reads them: active ones all,
/// abandoned and completed ones closed within `minTimeInDays`.
const PULL_REQUEST_STATUSES: [&str; 3] = ["active", "abandoned", "completed"];

/// The lower-case ids of `repositories`, as [`PullRequestList`] keeps them.
fn healthy_ids(repositories: &[Value]) -> Arc<HashSet<String>> {
    Arc::new(
        (repositories.iter())
            .filter_map(|r| text(r, "id"))
            .map(str::to_ascii_lowercase)
            .collect(),
    )
}

impl PullRequestList {
    /// The lists of a project (fan-out units labelled after `label`), one per status.
    fn of_project(
        label: &str,
        project_id: ProjectId,
        repositories: &[Value],
    ) -> [(String, PullRequestList); 3] {
        let healthy = healthy_ids(repositories);
        [0, 1, 2].map(|index| {
            let statuses = &PULL_REQUEST_STATUSES[index..=index];
            let list = PullRequestList {
                project_id: project_id.clone(),
                healthy: Some(Arc::clone(&healthy)),
                statuses,
            };
            (format!("{label}, {} pull requests", statuses[0]), list)
        })
    }

    /// A project's unit that lists its repositories, then reads every status.
    fn unlisted(project_id: ProjectId) -> Self {
        PullRequestList {
            project_id,
            healthy: None,
            statuses: &PULL_REQUEST_STATUSES,
        }
    }
}

/// The id of a listed pull request's repository (lower case, as the healthy set keeps them).
fn repository_of(pull_request: &Value) -> Option<String> {
    let id = pull_request.pointer("/repository/id")?.as_str()?;
    Some(id.to_ascii_lowercase())
}

/// What one `pull-request` crawl unit takes of the closed pull requests (its selector's
/// `minTimeInDays` and `maxResults`).
struct Window {
    min_time: DateTime<Utc>,
    max_results: usize,
}

impl Window {
    /// Whether the unit takes `pull_request` of `repository` (the list's order is newest
    /// first, as the repository's own list would give them): closed within its window, and
    /// fewer than `maxResults` of the repository taken so far (`taken`, counted here).
    fn takes(
        &self,
        repository: &str,
        pull_request: &Value,
        taken: &mut HashMap<String, usize>,
    ) -> bool {
        let closed =
            text(pull_request, "closedDate").and_then(|t| DateTime::parse_from_rfc3339(t).ok());
        // The list asked for the widest window: a date that does not read is within it.
        if closed.is_some_and(|t| t < self.min_time) {
            return false;
        }
        let count = taken.entry(repository.to_string()).or_insert(0);
        if *count >= self.max_results {
            return false;
        }
        *count += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn policy(scope: Value) -> Value {
        json!({"id": 1, "settings": {"scope": scope}})
    }

    #[test]
    fn a_policy_applies_to_the_repositories_and_branches_its_scope_names() {
        let main = Some("refs/heads/main");
        let exact = policy(
            json!([{"repositoryId": "R1", "refName": "refs/heads/main", "matchKind": "Exact"}]),
        );
        assert!(policy_applies(&exact, "r1", main));
        assert!(!policy_applies(&exact, "r2", main));
        assert!(!policy_applies(&exact, "r1", Some("refs/heads/dev")));
        // Without a default branch, everything scoped to the repository applies.
        assert!(policy_applies(&exact, "r1", None));

        let prefix = policy(
            json!([{"repositoryId": null, "refName": "refs/heads/ma", "matchKind": "Prefix"}]),
        );
        assert!(policy_applies(&prefix, "any", main));
        assert!(!policy_applies(&prefix, "any", Some("refs/heads/dev")));

        let default_branch = policy(json!([{"repositoryId": null, "matchKind": "DefaultBranch"}]));
        assert!(policy_applies(&default_branch, "any", main));

        let repository_wide = policy(json!([{"repositoryId": "r1"}]));
        assert!(policy_applies(&repository_wide, "r1", main));
        assert!(!policy_applies(&repository_wide, "r2", main));

        let either = policy(
            json!([{"repositoryId": "r2"}, {"repositoryId": "r1", "refName": "refs/heads/main", "matchKind": "exact"}]),
        );
        assert!(policy_applies(&either, "r1", main));
        assert!(policy_applies(
            &json!({"id": 2, "settings": {}}),
            "r9",
            main
        ));
    }
}
