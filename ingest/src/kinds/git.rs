//! Git kinds: `repository` (with `includedFiles` → `__includedFiles`), `repository-policy`
//! (`__repository`) and `pull-request` (active, plus completed/abandoned closed within
//! `minTimeInDays`, at most `maxResults` each per repository; listed per project and status
//! once for every `pull-request` selector of the resync).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::Value;

use super::KindCrawl;
use super::items::{ItemBuilder, ListEnrichment};
use super::{Pages, enrich, text};
use crate::ado::{ProjectId, repository_ids};
use crate::crawl_context::{CompactList, CrawlError, Crawler, ResyncCache, compact};
use crate::selector::PullRequestSelector;

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

/// Whether a policy configuration of the project listing applies to the repository
/// `repository_id` at `branch` (its default branch, `refs/heads/main`), as Azure DevOps decides
/// for `git/policy/configurations?repositoryId=&refName=`: one of its `settings.scope` entries
/// names the repository or no repository (project-wide), and names no branch, or the branch
/// (`matchKind` `Exact`, case-insensitive), a prefix of it (`Prefix`), or the default branch
/// (`DefaultBranch`). Without a branch (an empty repository) every scope of the repository
/// applies, as the query without `refName` answers; a policy without a scope is project-wide.
pub(crate) fn policy_applies(policy: &Value, repository_id: &str, branch: Option<&str>) -> bool {
    let Some(scopes) = policy.pointer("/settings/scope").and_then(Value::as_array) else {
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
    /// `repository` kind as it publishes them, or by the first kind that needs them.
    async fn repository_list(&self, cache: &ResyncCache) -> Result<Arc<CompactList>, CrawlError> {
        cache
            .repositories
            .get_or_read(|| async {
                let projects = self.project_list(cache).await?;
                let lists: Vec<Vec<Value>> = stream::iter(
                    projects
                        .iter()
                        .filter_map(|p| text(&p, "id").map(ProjectId::new))
                        .collect::<Vec<_>>(),
                )
                .map(|id| async move {
                    match self.client.repositories(&id).await {
                        // The project went away between the list and the read.
                        Err(e) if e.unit_gone() => Ok(Vec::new()),
                        other => other,
                    }
                })
                .buffer_unordered(super::CONCURRENT_UNITS)
                .try_collect()
                .await?;
                Ok(CompactList::from_values(lists.into_iter().flatten()))
            })
            .await
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
        let mut held = match cache.keep_repositories {
            true => Some(cache.repositories.hold().await),
            false => None,
        };
        if let Some(listed) = held.as_ref().and_then(|held| held.as_ref()).cloned() {
            // A kind read repository by repository listed them first: publish that list.
            drop(held);
            let units = repositories_by_project(self::listed(listed));
            return self
                .fan_out(&mut crawl, units, |repositories, pages: Pages| async move {
                    pages
                        .send(builder.list_items(enrichment, repositories).await?)
                        .await
                })
                .await;
        }
        let units = self.project_units(cache).await?;
        let seen = held.is_some().then(|| Mutex::new(Vec::new()));
        let seen_ref = seen.as_ref();
        self.fan_out(&mut crawl, units, |project, pages: Pages| async move {
            let id = ProjectId::new(text(&project, "id").unwrap_or_default());
            let repositories = self.client.repositories(&id).await?;
            if let Some(seen) = seen_ref {
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(repositories.iter().map(compact));
            }
            pages
                .send(builder.list_items(enrichment, repositories).await?)
                .await
        })
        .await?;
        if crawl.report.failure.is_none()
            && let (Some(held), Some(seen)) = (held.as_mut(), seen)
        {
            **held = Some(Arc::new(CompactList::from_texts(
                seen.into_inner().unwrap_or_else(|p| p.into_inner()),
            )));
        }
        Ok(())
    }

    /// The healthy repositories of this resync as fan-out units (derived kinds read these).
    pub(crate) async fn healthy_repository_units(
        &self,
        cache: &ResyncCache,
    ) -> Result<impl Iterator<Item = (String, Value)> + use<>, CrawlError> {
        let repositories = self.repository_list(cache).await?;
        Ok(repository_units(listed(repositories)))
    }

    /// One policy listing per project ([`crate::ado::AdoClient::project_policies`]) instead of one per
    /// repository, each policy published for every healthy repository it applies to (as
    /// `git/policy/configurations?repositoryId=&refName=` would answer for that repository).
    pub(crate) async fn crawl_policies(&self, mut crawl: KindCrawl<'_>) -> Result<(), CrawlError> {
        let repositories = self.repository_list(crawl.cache).await?;
        let units = project_units(repository_units(listed(repositories)));
        self.fan_out(
            &mut crawl,
            units,
            |(project_id, repositories), pages: Pages| async move {
                let policies = self.client.project_policies(&project_id).await?;
                let items = repositories
                    .iter()
                    .flat_map(|repository| {
                        let (_, repository_id) = repository_ids(repository);
                        let branch = text(repository, "defaultBranch");
                        policies
                            .iter()
                            .filter(move |p| policy_applies(p, repository_id.as_str(), branch))
                            .map(|p| enrich(p.clone(), "__repository", repository))
                    })
                    .collect();
                pages.send(items).await
            },
        )
        .await
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
        let repositories = self.repository_list(cache).await?;
        let units = project_units(repository_units(listed(repositories))).flat_map(
            |(label, (project_id, repositories))| {
                PullRequestList::of_project(&label, project_id, &repositories)
            },
        );
        let (windows, min_time) = (&windows, min_time.as_str());
        let top = self.limits.pull_request_page.max(1);
        self.fan_out_to(
            &mut crawls,
            units,
            |list: PullRequestList, pages: Pages| async move {
                let PullRequestList {
                    project_id,
                    healthy,
                    status,
                } = list;
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
                    // A short page is the last one: no extra request for an empty page. Closed
                    // lists end once every unit took all it may of every repository.
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
                Ok(())
            },
        )
        .await
    }
}

/// One pull request list of a resync: a project's pull requests of one status.
struct PullRequestList {
    project_id: ProjectId,
    /// The ids of the project's healthy repositories (lower case): the others' pull requests
    /// are left out.
    healthy: Arc<HashSet<String>>,
    status: &'static str,
}

impl PullRequestList {
    /// The lists of a project (fan-out units labelled after `label`), one per status, as the
    /// Python integration reads them: active ones all, abandoned and completed ones closed
    /// within `minTimeInDays`.
    fn of_project(
        label: &str,
        project_id: ProjectId,
        repositories: &[Value],
    ) -> [(String, PullRequestList); 3] {
        let healthy: Arc<HashSet<String>> = Arc::new(
            (repositories.iter())
                .filter_map(|r| text(r, "id"))
                .map(str::to_ascii_lowercase)
                .collect(),
        );
        ["active", "abandoned", "completed"].map(|status| {
            let list = PullRequestList {
                project_id: project_id.clone(),
                healthy: Arc::clone(&healthy),
                status,
            };
            (format!("{label}, {status} pull requests"), list)
        })
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
