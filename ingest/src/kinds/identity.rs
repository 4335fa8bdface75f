//! Identity kinds, all organization-level (never filtered by `excludedTags`):
//! - `user`: selector `source` = `entitlements` (default; `vsaex` user entitlements, `select`
//!   from `includeFields`, `api-version` from `apiVersion`: 7 and later page by continuation
//!   token with items under `items`, older ones by `top`/`skip` under `value`) or `graph`
//!   (`vssps` graph users, `subjectTypes`; `includeGroupMemberships` adds `__groups`, the
//!   groups the user directly belongs to, and `__projects`, the sorted names of the projects
//!   of those groups);
//! - `group`: `vssps` graph groups;
//! - `group-member`: each group's direct members (memberships down, resolved by
//!   `subjectlookup` at most 500 at a time), one item per member with `__group`.

use std::collections::{BTreeSet, HashSet};
use std::pin::pin;

use futures_util::{Stream, StreamExt, TryStreamExt, stream};
use serde_json::{Map, Value};

use super::KindCrawl;
use super::is_fatal;
use super::{Pages, enrich, text};
use crate::ado::directory::{Direction, EntitlementsCursor, SUBJECT_LOOKUP_BATCH};
use crate::ado::{AdoError, paginate};
use crate::crawl_context::{CrawlError, Crawler, KindReport};
use crate::kind::Kind;
use crate::selector::{self, UserSelector};
use adoport_shared::messages::ResyncId;

/// Users whose memberships are read at the same time.
const CONCURRENT_MEMBERSHIPS: usize = 10;
/// The `domain` of groups that belong to a project.
const PROJECT_DOMAIN_PREFIX: &str = "vstfs:///Classification/TeamProject/";

/// The major version of an `api-version` (`"6.0-preview.3"` → 6); `None` when unset or odd.
fn api_major(version: Option<&str>) -> Option<u32> {
    version?.trim().split(['.', '-']).next()?.parse().ok()
}

/// The project a group belongs to: the `[Project]` of its `principalName`, for groups whose
/// `domain` is a project (organization-level groups such as `[org]\Project Collection
/// Administrators` name the organization there, not a project).
pub(crate) fn group_project(group: &Value) -> Option<String> {
    if let Some(domain) = text(group, "domain")
        && !domain.starts_with(PROJECT_DOMAIN_PREFIX)
    {
        return None;
    }
    let principal = text(group, "principalName")?;
    let rest = principal.strip_prefix('[')?;
    let (project, _) = rest.split_once(']')?;
    Some(project.to_string())
}

/// Whether the next token is worth following (present and not the one just used).
fn next_token(page_token: Option<String>, current: &Option<String>) -> Option<String> {
    page_token.filter(|next| Some(next) != current.as_ref())
}

impl Crawler {
    /// Resolves descriptors to subjects, [`SUBJECT_LOOKUP_BATCH`] at a time.
    async fn lookup_subjects(
        &self,
        descriptors: Vec<String>,
    ) -> Result<Map<String, Value>, AdoError> {
        let mut found = Map::new();
        for batch in descriptors.chunks(SUBJECT_LOOKUP_BATCH) {
            found.extend(self.client.subject_lookup(batch).await?);
        }
        Ok(found)
    }

    pub(crate) async fn crawl_users(&self, crawl: KindCrawl<'_>) -> Result<(), CrawlError> {
        let plan = crawl.plan;
        let selectors = plan.selectors::<UserSelector>()?;
        let source = selectors.iter().find_map(|s| s.source.as_ref());
        if source.is_some_and(|s| s.as_str() == "graph") {
            self.crawl_graph_users(crawl.resync_id, &selectors, crawl.report)
                .await
        } else {
            self.crawl_entitlements(crawl.resync_id, &selectors, crawl.report)
                .await
        }
    }

    async fn crawl_entitlements(
        &self,
        resync_id: ResyncId,
        selectors: &[UserSelector],
        report: &mut KindReport,
    ) -> Result<(), CrawlError> {
        let mut fields: Vec<&str> = Vec::new();
        for field in selectors
            .iter()
            .filter_map(|s| s.include_fields.as_ref())
            .flatten()
        {
            if !fields.contains(&field.as_str()) {
                fields.push(field.as_str());
            }
        }
        let select = fields.join(",");
        let api_version = (selectors.iter().find_map(|s| s.api_version.as_ref()))
            .map(|v| v.0.trim())
            .filter(|v| !v.is_empty());
        if api_major(api_version).is_some_and(|major| major < 7) {
            let top = self.limits.page.max(1);
            let mut skip = 0;
            loop {
                let page = self
                    .client
                    .entitlements_page(
                        &select,
                        api_version,
                        EntitlementsCursor::Offset { top, skip },
                    )
                    .await?;
                let got = page.items.len();
                if got > 0 {
                    self.publish(resync_id, Kind::User, page.items, report)
                        .await?;
                }
                if got < top {
                    return Ok(());
                }
                skip += got;
            }
        }
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .entitlements_page(
                    &select,
                    api_version,
                    EntitlementsCursor::Token(token.as_deref()),
                )
                .await?;
            let empty = page.items.is_empty();
            if !empty {
                self.publish(resync_id, Kind::User, page.items, report)
                    .await?;
            }
            match next_token(page.continuation_token, &token) {
                Some(next) if !empty => token = Some(next),
                _ => return Ok(()),
            }
        }
    }

    /// Users with the groups they directly belong to (`__groups`) and those groups' projects
    /// (`__projects`), plus a message per user whose memberships could not be read (left out).
    async fn with_memberships(
        &self,
        users: Vec<Value>,
    ) -> Result<(Vec<Value>, Vec<String>), AdoError> {
        let containers: Vec<(Value, Result<Vec<String>, String>)> = stream::iter(users)
            .map(|user| async move {
                let descriptor = text(&user, "descriptor").unwrap_or_default().to_string();
                match self.client.memberships(&descriptor, Direction::Up).await {
                    Ok(memberships) => {
                        let groups = memberships
                            .iter()
                            .filter_map(|m| text(m, "containerDescriptor").map(String::from))
                            .collect();
                        Ok((user, Ok(groups)))
                    }
                    Err(e) if is_fatal(&e) => Err(e),
                    Err(e) => {
                        let name = text(&user, "principalName").unwrap_or(&descriptor).to_string();
                        tracing::warn!(user = %name, error = %e, "could not read the user's group memberships; user skipped and kind marked failed");
                        Ok((user, Err(format!("user {name}: {e}"))))
                    }
                }
            })
            .buffered(CONCURRENT_MEMBERSHIPS)
            .try_collect()
            .await?;
        let wanted: BTreeSet<String> = containers
            .iter()
            .filter_map(|(_, groups)| groups.as_ref().ok())
            .flatten()
            .cloned()
            .collect();
        let subjects = self.lookup_subjects(wanted.into_iter().collect()).await?;
        let mut items = Vec::new();
        let mut failures = Vec::new();
        for (user, groups) in containers {
            let groups = match groups {
                Ok(groups) => groups,
                Err(message) => {
                    failures.push(message);
                    continue;
                }
            };
            let resolved: Vec<Value> = groups
                .iter()
                .filter_map(|d| subjects.get(d).cloned())
                .collect();
            let projects: BTreeSet<String> = resolved.iter().filter_map(group_project).collect();
            let projects = projects.into_iter().map(Value::String).collect();
            let user = enrich(user, "__groups", &Value::Array(resolved));
            items.push(enrich(user, "__projects", &Value::Array(projects)));
        }
        Ok((items, failures))
    }

    async fn crawl_graph_users(
        &self,
        resync_id: ResyncId,
        selectors: &[UserSelector],
        report: &mut KindReport,
    ) -> Result<(), CrawlError> {
        let subject_types =
            selector::union(selectors.iter().filter_map(|s| s.subject_types.as_ref())).join(",");
        let subject_types = (!subject_types.is_empty()).then_some(subject_types.as_str());
        let memberships = selectors.iter().any(|s| s.include_group_memberships.0);
        let mut failures: Vec<String> = Vec::new();
        let mut users = pin!(paginate(|token: Option<String>| async move {
            self.client
                .graph_users_page(subject_types, token.as_deref())
                .await
        }));
        while let Some(page) = users.try_next().await? {
            let items = if memberships {
                let (items, failed) = self.with_memberships(page).await?;
                failures.extend(failed);
                items
            } else {
                page
            };
            if !items.is_empty() {
                self.publish(resync_id, Kind::User, items, report).await?;
            }
        }
        if let Some(first) = failures.first() {
            report.failure = Some(format!(
                "{} user(s) of kind user could not be read, e.g. {first}",
                failures.len()
            ));
        }
        Ok(())
    }

    pub(crate) async fn crawl_groups(&self, crawl: KindCrawl<'_>) -> Result<(), CrawlError> {
        let mut groups = pin!(self.groups());
        while let Some(page) = groups.try_next().await? {
            if !page.is_empty() {
                self.publish(crawl.resync_id, Kind::Group, page, crawl.report)
                    .await?;
            }
        }
        Ok(())
    }

    pub(crate) async fn crawl_group_members(
        &self,
        mut crawl: KindCrawl<'_>,
    ) -> Result<(), CrawlError> {
        let mut groups = pin!(self.groups());
        while let Some(page) = groups.try_next().await? {
            let units: Vec<_> = page
                .into_iter()
                .map(|group| {
                    let label = format!("group {}", text(&group, "principalName").unwrap_or("?"));
                    (label, group)
                })
                .collect();
            self.fan_out(&mut crawl, units, |group, pages: Pages| async move {
                let descriptor = text(&group, "descriptor").unwrap_or_default().to_string();
                let memberships = self
                    .client
                    .memberships(&descriptor, Direction::Down)
                    .await?;
                let members: Vec<String> = memberships
                    .iter()
                    .filter_map(|m| text(m, "memberDescriptor").map(String::from))
                    .collect();
                let subjects = self.lookup_subjects(members.clone()).await?;
                let mut seen: HashSet<&str> = HashSet::new();
                let items = members
                    .iter()
                    .filter(|d| seen.insert(d.as_str()))
                    .filter_map(|d| subjects.get(d).cloned())
                    .map(|subject| enrich(subject, "__group", &group))
                    .collect();
                pages.send(items).await
            })
            .await?;
        }
        Ok(())
    }

    /// Every page of the organization's groups.
    fn groups(&self) -> impl Stream<Item = Result<Vec<Value>, AdoError>> + '_ {
        paginate(move |token: Option<String>| async move {
            self.client.graph_groups_page(token.as_deref()).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn group_projects_come_from_project_groups_only() {
        let project = json!({"principalName": "[Fabrikam]\\Contributors", "domain": "vstfs:///Classification/TeamProject/1"});
        let org = json!({"principalName": "[acme]\\Project Collection Administrators", "domain": "vstfs:///Framework/IdentityDomain/2"});
        assert_eq!(group_project(&project).as_deref(), Some("Fabrikam"));
        assert_eq!(group_project(&org), None);
        assert_eq!(
            group_project(&json!({"principalName": "no brackets"})),
            None
        );
    }

    #[test]
    fn api_versions_choose_the_paging() {
        assert_eq!(api_major(Some("6.0-preview.3")), Some(6));
        assert_eq!(api_major(Some("7.1")), Some(7));
        assert_eq!(api_major(None), None);
    }
}
