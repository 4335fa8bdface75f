//! Team-structure kinds: `team` (every team of the organization, `$top`/`$skip`; selectors
//! `includeMembers` → `__members`, `includeAreaPaths` → `__areaPaths`), `member` (each team's
//! members with `__teamId`), `iteration` (per project, per team — every page of teams —
//! with `__project`, `__team`) and `area-path` (each project's area tree flattened, with
//! `__project`, `__parentIdentifier`, `__normalizedPath`; selector `depth`).
//!
//! `team` and `member` are organization-level (not filtered by `excludedTags`); `iteration`
//! and `area-path` hang off the project list of the resync. A team's members are read once
//! per resync for `team`'s `includeMembers` and `member` together, kept for the other only
//! until it took them and within a byte limit (`crate::shared_reads::SharedReads`; past it
//! the other reads them again).

use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::Value;

use super::KindCrawl;
use super::{CONCURRENT_UNITS, Pages, enrich, is_fatal, text};
use crate::ado::{AdoError, ProjectId, TeamId};
use crate::crawl_context::{CrawlError, Crawler, ResyncCache};
use crate::kind::Kind;
use crate::plan::KindPlan;
use crate::selector::{AreaPathSelector, TeamSelector};

/// The crawl units of `plan` that read each team's members: `member`'s, and `team`'s with
/// `includeMembers`. The resync keeps a team's members for the others until each took them.
pub(crate) fn team_member_readers(plan: &[KindPlan]) -> usize {
    plan.iter()
        .filter(|unit| match unit.known() {
            Some(Kind::Member) => true,
            Some(Kind::Team) => unit
                .selectors::<TeamSelector>()
                .is_ok_and(|selectors| selectors.iter().any(|s| s.include_members.0)),
            _ => false,
        })
        .count()
}

/// `\Project\Area\A\B` → `Project\A\B` (the form of `System.AreaPath`).
pub(crate) fn normalized_area_path(path: &str) -> String {
    let segments: Vec<&str> = path
        .trim_start_matches('\\')
        .split('\\')
        .filter(|s| !s.is_empty())
        .collect();
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        if i == 1 && segment.eq_ignore_ascii_case("Area") {
            continue;
        }
        out.push(segment);
    }
    out.join("\\")
}

/// The area nodes of a classification tree, depth first, each without `children` and with
/// `__project`, `__parentIdentifier` (the parent's `identifier`, `null` for the root) and
/// `__normalizedPath`. Nodes of another structure type are left out.
pub(crate) fn flatten_areas(root: Value, project: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let mut stack = vec![(root, Value::Null)];
    while let Some((mut node, parent)) = stack.pop() {
        let children = match &mut node {
            Value::Object(map) => map.remove("children"),
            _ => None,
        };
        let identifier = node.get("identifier").cloned().unwrap_or(Value::Null);
        if let Some(Value::Array(children)) = children {
            for child in children.into_iter().rev() {
                stack.push((child, identifier.clone()));
            }
        }
        if text(&node, "structureType").is_some_and(|t| t != "area") {
            continue;
        }
        let path = normalized_area_path(text(&node, "path").unwrap_or_default());
        let node = enrich(node, "__project", project);
        let node = enrich(node, "__parentIdentifier", &parent);
        out.push(enrich(node, "__normalizedPath", &Value::String(path)));
    }
    out
}

/// `typeKey`s of a 404 saying a team is gone.
pub(crate) const TEAM_GONE: &[&str] = &["TeamNotFoundException"];

impl Crawler {
    /// Every member of a team, page by page of `$top`.
    async fn all_team_members(&self, team: &Value) -> Result<Vec<Value>, AdoError> {
        let project_id = &ProjectId::new(text(team, "projectId").unwrap_or_default());
        let team_id = &TeamId::new(text(team, "id").unwrap_or_default());
        let top = self.limits.page.max(1);
        let mut members = Vec::new();
        let mut skip = 0;
        loop {
            let page = self
                .client
                .team_members_page(project_id, team_id, top, skip)
                .await?;
            let got = page.len();
            members.extend(page);
            if got < top {
                return Ok(members);
            }
            skip += got;
        }
    }

    /// Every member of a team, read once per resync for the crawl units that need them
    /// ([`team_member_readers`]).
    async fn shared_team_members(
        &self,
        cache: &ResyncCache,
        team: &Value,
    ) -> Result<Vec<Value>, AdoError> {
        let key = text(team, "id").unwrap_or_default();
        let members = (cache.team_members)
            .get_or_read(key, || async {
                Ok::<_, AdoError>(Value::Array(self.all_team_members(team).await?))
            })
            .await?;
        Ok(match members {
            Value::Array(members) => members,
            _ => Vec::new(),
        })
    }

    /// A team with `__members` and/or `__areaPaths`; `None` (and a message in `failures`)
    /// when its members could not be read, so that it is not published with a wrong list.
    async fn enriched_team(
        &self,
        cache: &ResyncCache,
        team: Value,
        members: bool,
        area_paths: bool,
    ) -> Result<Result<Option<Value>, String>, AdoError> {
        let mut team = team;
        if members {
            match self.shared_team_members(cache, &team).await {
                Ok(list) => team = enrich(team, "__members", &Value::Array(list)),
                // The team (or its project) went away between the list and the read.
                Err(e) if e.says_missing(TEAM_GONE) || e.unit_gone() => return Ok(Ok(None)),
                Err(e) if is_fatal(&e) => return Err(e),
                Err(e) => {
                    let name = text(&team, "name").unwrap_or("?");
                    tracing::warn!(team = name, error = %e, "could not read the team's members; team skipped and kind marked failed");
                    return Ok(Err(format!("team {name}: {e}")));
                }
            }
        }
        if area_paths {
            let project_id = ProjectId::new(text(&team, "projectId").unwrap_or_default());
            let team_id = TeamId::new(text(&team, "id").unwrap_or_default());
            let value = match self.client.team_field_values(&project_id, &team_id).await {
                Ok(values) => values,
                Err(e) if is_fatal(&e) => return Err(e),
                Err(e) => {
                    tracing::warn!(team = %team_id, error = %e, "could not read the team's area paths; __areaPaths is null");
                    Value::Null
                }
            };
            team = enrich(team, "__areaPaths", &value);
        }
        Ok(Ok(Some(team)))
    }

    pub(crate) async fn crawl_teams(&self, crawl: KindCrawl<'_>) -> Result<(), CrawlError> {
        let plan = crawl.plan;
        let selectors = plan.selectors::<TeamSelector>()?;
        let members = selectors.iter().any(|s| s.include_members.0);
        let area_paths = selectors.iter().any(|s| s.include_area_paths.0);
        let top = self.limits.page.max(1);
        let mut failures: Vec<String> = Vec::new();
        let list = self.team_list(crawl.cache).await?;
        // A page of teams parsed at a time: the list is kept as text for the resync.
        let mut listed = list.iter();
        loop {
            let page: Vec<Value> = listed.by_ref().take(top).collect();
            if page.is_empty() {
                break;
            }
            let items = if members || area_paths {
                let outcomes: Vec<Result<Option<Value>, String>> = stream::iter(page)
                    .map(|team| self.enriched_team(crawl.cache, team, members, area_paths))
                    .buffered(CONCURRENT_UNITS)
                    .try_collect()
                    .await?;
                let mut items = Vec::with_capacity(outcomes.len());
                for outcome in outcomes {
                    match outcome {
                        Ok(Some(team)) => items.push(team),
                        Ok(None) => {}
                        Err(message) => failures.push(message),
                    }
                }
                items
            } else {
                page
            };
            if !items.is_empty() {
                self.publish(crawl.resync_id, Kind::Team, items, crawl.report)
                    .await?;
            }
        }
        if let Some(first) = failures.first() {
            crawl.report.failure = Some(format!(
                "{} team(s) of kind team could not be read, e.g. {first}",
                failures.len()
            ));
        }
        Ok(())
    }

    pub(crate) async fn crawl_members(&self, mut crawl: KindCrawl<'_>) -> Result<(), CrawlError> {
        let list = self.team_list(crawl.cache).await?;
        let cache = crawl.cache;
        {
            let units: Vec<_> = list
                .iter()
                .map(|team| (format!("team {}", text(&team, "name").unwrap_or("?")), team))
                .collect();
            self.fan_out(&mut crawl, units, |team, pages: Pages| async move {
                let team_id = team.get("id").cloned().unwrap_or(Value::Null);
                let members = self.shared_team_members(cache, &team).await?;
                pages
                    .send(
                        members
                            .into_iter()
                            .map(|m| enrich(m, "__teamId", &team_id))
                            .collect(),
                    )
                    .await
            })
            .await?;
        }
        Ok(())
    }

    pub(crate) async fn crawl_iterations(
        &self,
        mut crawl: KindCrawl<'_>,
    ) -> Result<(), CrawlError> {
        let units = self.project_units(crawl.cache).await?;
        // Each project's teams from the organization's list (read once per resync, shared
        // with `team`, `member` and the boards), not one teams list per project.
        let teams = &self.teams_by_project(crawl.cache).await?;
        self.fan_out(&mut crawl, units, |project, pages: Pages| async move {
            let project_id = ProjectId::new(text(&project, "id").unwrap_or_default());
            let project_teams = teams
                .get(project_id.as_ref() as &str)
                .map_or(&[][..], Vec::as_slice);
            for team in project_teams {
                let team_id = TeamId::new(text(team, "id").unwrap_or_default());
                let iterations = match self.client.team_iterations(&project_id, &team_id).await {
                    Ok(iterations) => iterations,
                    // The team went away between the list and the read.
                    Err(e) if e.says_missing(TEAM_GONE) => continue,
                    Err(e) => return Err(e),
                };
                let items = iterations
                    .into_iter()
                    .map(|i| enrich(enrich(i, "__project", &project), "__team", team))
                    .collect();
                pages.send(items).await?;
            }
            Ok(())
        })
        .await
    }

    pub(crate) async fn crawl_area_paths(
        &self,
        mut crawl: KindCrawl<'_>,
    ) -> Result<(), CrawlError> {
        let plan = crawl.plan;
        let depth = (plan.selectors::<AreaPathSelector>()?.into_iter())
            .find_map(|s| s.depth)
            .and_then(|c| u64::try_from(c.0).ok());
        self.per_project(&mut crawl, |project_id, project, pages: Pages| async move {
            let root = self.client.area_tree(&project_id, depth).await?;
            pages.send(flatten_areas(root, &project)).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn area_paths_are_normalized_like_system_area_path() {
        assert_eq!(normalized_area_path("\\Proj\\Area\\A\\B"), "Proj\\A\\B");
        assert_eq!(normalized_area_path("\\Proj\\Area"), "Proj");
        assert_eq!(
            normalized_area_path("\\Proj\\Areas of work"),
            "Proj\\Areas of work"
        );
    }

    #[test]
    fn trees_flatten_depth_first_with_parents() {
        let tree = json!({"identifier": "r", "structureType": "area", "path": "\\P\\Area", "children": [
            {"identifier": "a", "structureType": "area", "path": "\\P\\Area\\A", "children": [
                {"identifier": "b", "structureType": "area", "path": "\\P\\Area\\A\\B"}]},
            {"identifier": "i", "structureType": "iteration", "path": "\\P\\Iteration\\I"}
        ]});
        let items = flatten_areas(tree, &json!({"id": "p"}));
        let ids: Vec<&str> = items
            .iter()
            .filter_map(|i| i["identifier"].as_str())
            .collect();
        assert_eq!(ids, ["r", "a", "b"]);
        assert!(items[0]["__parentIdentifier"].is_null());
        assert_eq!(items[2]["__parentIdentifier"], "a");
        assert_eq!(items[2]["__normalizedPath"], "P\\A\\B");
        assert_eq!(items[1]["__project"]["id"], "p");
        assert!(items.iter().all(|i| i.get("children").is_none()));
    }
}
