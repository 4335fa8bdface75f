//! Identity kinds, all organization-level (never filtered by `excludedTags`):
//! - `user`: selector `source` = `entitlements` (default; `vsaex` user entitlements, `select`
//!   from `includeFields`, `api-version` from `apiVersion`: 7 and later page by continuation
//!   token with items under `items`, older ones by `top`/`skip` under `value`) or `graph`
//!   (`vssps` graph users, `subjectTypes`; `includeGroupMemberships` adds `__groups`, the
//!   groups the user directly belongs to, and `__projects`, the sorted names of the projects
//!   of those groups);
//! - `group`: `vssps` graph groups;
//! - `group-member`: each group's direct members (memberships down, resolved by
//!   `subjectlookup` at most 500 at a time across groups), one item per member with `__group`.
//!
//! When two of them read the groups list (`group`, `group-member`, graph users with
//! `includeGroupMemberships`), a resync lists the groups once for all of them and resolves
//! the groups a membership names from that list rather than with `subjectlookup` (both answer
//! the same graph group: Microsoft's recorded answers of the two calls carry the same fields),
//! within [`crate::shared_reads::SHARED_READ_BYTES`]: a larger list is listed by each kind and
//! its groups resolved with `subjectlookup`, as the Python integration does. A descriptor the
//! list lacks is always looked up.

use std::collections::{BTreeSet, HashSet};
use std::pin::pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt, TryStreamExt, stream};
use serde_json::{Map, Value};

use super::KindCrawl;
use super::is_fatal;
use super::{enrich, text};
use crate::ado::directory::{Direction, EntitlementsCursor, SUBJECT_LOOKUP_BATCH};
use crate::ado::{AdoError, paginate};
use crate::crawl_context::{CrawlError, Crawler, KindReport, ResyncCache};
use crate::kind::Kind;
use crate::plan::KindPlan;
use crate::selector::{self, UserSelector};
use crate::shared_reads::{KeptList, KeptListBuilder, ListRead};
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

/// The crawl units of `plan` that read the organization's groups: `group`, `group-member`,
/// and graph users with `includeGroupMemberships` (their `__groups`). When more than one
/// does, the resync keeps the list for them ([`crate::shared_reads::BoundedList`]).
pub(crate) fn group_list_readers(plan: &[KindPlan]) -> usize {
    plan.iter()
        .filter(|unit| match unit.known() {
            Some(Kind::Group | Kind::GroupMember) => true,
            Some(Kind::User) => unit
                .selectors::<UserSelector>()
                .is_ok_and(|selectors| reads_group_memberships(&selectors)),
            _ => false,
        })
        .count()
}

/// Whether a `user` crawl unit of these selectors reads graph users with their groups.
fn reads_group_memberships(selectors: &[UserSelector]) -> bool {
    let source = selectors.iter().find_map(|s| s.source.as_ref());
    source.is_some_and(|s| s.as_str() == "graph")
        && selectors.iter().any(|s| s.include_group_memberships.0)
}

/// The subject of `descriptor`: from the kept group list, else from what `subjectlookup`
/// answered.
fn subject(
    groups: Option<&KeptList>,
    looked_up: &Map<String, Value>,
    descriptor: &str,
) -> Option<Value> {
    (groups.and_then(|g| g.get(descriptor))).or_else(|| looked_up.get(descriptor).cloned())
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
            self.crawl_graph_users(crawl.resync_id, &selectors, crawl.cache, crawl.report)
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
        groups: Option<&KeptList>,
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
            .filter(|d| groups.is_none_or(|g| !g.contains(d)))
            .cloned()
            .collect();
        let looked_up = self.lookup_subjects(wanted.into_iter().collect()).await?;
        let mut items = Vec::new();
        let mut failures = Vec::new();
        for (user, containers) in containers {
            let containers = match containers {
                Ok(containers) => containers,
                Err(message) => {
                    failures.push(message);
                    continue;
                }
            };
            let resolved: Vec<Value> = (containers.iter())
                .filter_map(|d| subject(groups, &looked_up, d))
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
        cache: &ResyncCache,
        report: &mut KindReport,
    ) -> Result<(), CrawlError> {
        let subject_types =
            selector::union(selectors.iter().filter_map(|s| s.subject_types.as_ref())).join(",");
        let subject_types = (!subject_types.is_empty()).then_some(subject_types.as_str());
        let memberships = selectors.iter().any(|s| s.include_group_memberships.0);
        let groups = match memberships {
            true => self.group_list(cache).await?,
            false => None,
        };
        let mut failures: Vec<String> = Vec::new();
        let mut users = pin!(paginate(|token: Option<String>| async move {
            self.client
                .graph_users_page(subject_types, token.as_deref())
                .await
        }));
        while let Some(page) = users.try_next().await? {
            let items = if memberships {
                let (items, failed) = self.with_memberships(page, groups.as_deref()).await?;
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
        if let Some(list) = self.group_list(crawl.cache).await? {
            let mut listed = list.iter();
            loop {
                let page: Vec<Value> = listed.by_ref().take(self.limits.page.max(1)).collect();
                if page.is_empty() {
                    return Ok(());
                }
                self.publish(crawl.resync_id, Kind::Group, page, crawl.report)
                    .await?;
            }
        }
        let mut groups = pin!(self.groups());
        while let Some(page) = groups.try_next().await? {
            if !page.is_empty() {
                self.publish(crawl.resync_id, Kind::Group, page, crawl.report)
                    .await?;
            }
        }
        Ok(())
    }

    pub(crate) async fn crawl_group_members(&self, crawl: KindCrawl<'_>) -> Result<(), CrawlError> {
        let groups = self.group_list(crawl.cache).await?;
        let mut members = GroupMembers {
            crawl,
            groups: groups.clone(),
            failures: Vec::new(),
        };
        match groups {
            Some(list) => {
                let mut listed = list.iter();
                loop {
                    let page: Vec<Value> = listed.by_ref().take(self.limits.page.max(1)).collect();
                    if page.is_empty() {
                        break;
                    }
                    self.publish_group_members(&mut members, page).await?;
                }
            }
            None => {
                let mut pages = pin!(self.groups());
                while let Some(page) = pages.try_next().await? {
                    self.publish_group_members(&mut members, page).await?;
                }
            }
        }
        if let Some(first) = members.failures.first() {
            members.crawl.report.failure = Some(format!(
                "{} group(s) of kind group-member could not be read, e.g. {first}",
                members.failures.len()
            ));
        }
        Ok(())
    }

    /// The direct members of `groups`: each group's memberships (as many read at a time as
    /// the crawl may have requests in flight), then the members resolved for groups in order
    /// until [`SUBJECT_LOOKUP_BATCH`] descriptors are wanted, one `subjectlookup` for them
    /// all rather than one per group (groups of the kept list need none), and published.
    async fn publish_group_members(
        &self,
        members: &mut GroupMembers<'_>,
        groups: Vec<Value>,
    ) -> Result<(), CrawlError> {
        let mut read = pin!(
            stream::iter(groups)
                .map(|group| self.group_memberships(group))
                .buffered(self.fan_out_width())
        );
        let mut batch = MemberBatch::default();
        while let Some(read) = read.try_next().await? {
            let (group, descriptors) = match read {
                Ok(Some(read)) => read,
                Ok(None) => continue,
                Err(message) => {
                    members.failures.push(message);
                    continue;
                }
            };
            // The members the kept group list does not name.
            let unresolved: Vec<String> = (descriptors.iter())
                .filter(|d| members.groups.as_ref().is_none_or(|g| !g.contains(d)))
                .cloned()
                .collect();
            let new = unresolved.iter().filter(|d| !batch.wanted.contains(*d));
            if !batch.groups.is_empty() && batch.wanted.len() + new.count() > SUBJECT_LOOKUP_BATCH {
                self.publish_member_batch(members, std::mem::take(&mut batch))
                    .await?;
            }
            batch.wanted.extend(unresolved);
            batch.groups.push((group, descriptors));
        }
        if !batch.groups.is_empty() {
            self.publish_member_batch(members, batch).await?;
        }
        Ok(())
    }

    /// A group with its direct members' descriptors (distinct, in order); `Ok(None)` when
    /// it went away since the list, `Err` (a message) when its memberships could not be read.
    async fn group_memberships(
        &self,
        group: Value,
    ) -> Result<Result<Option<(Value, Vec<String>)>, String>, AdoError> {
        let descriptor = text(&group, "descriptor").unwrap_or_default().to_string();
        match self.client.memberships(&descriptor, Direction::Down).await {
            Ok(memberships) => {
                let mut seen: HashSet<String> = HashSet::new();
                let members = (memberships.iter())
                    .filter_map(|m| text(m, "memberDescriptor"))
                    .filter(|d| seen.insert(d.to_string()))
                    .map(String::from)
                    .collect();
                Ok(Ok(Some((group, members))))
            }
            Err(e) if e.unit_gone() => Ok(Ok(None)),
            Err(e) if is_fatal(&e) => Err(e),
            Err(e) => {
                let name = text(&group, "principalName")
                    .unwrap_or(&descriptor)
                    .to_string();
                tracing::warn!(group = %name, error = %e, "could not read the group's members; group skipped and kind marked failed");
                Ok(Err(format!("group {name}: {e}")))
            }
        }
    }

    /// Resolves the members of a batch of groups (one `subjectlookup` per
    /// [`SUBJECT_LOOKUP_BATCH`] descriptors the kept group list lacks) and publishes them, one
    /// item per member with `__group`.
    async fn publish_member_batch(
        &self,
        members: &mut GroupMembers<'_>,
        batch: MemberBatch,
    ) -> Result<(), CrawlError> {
        let looked_up = match self
            .lookup_subjects(batch.wanted.into_iter().collect())
            .await
        {
            Ok(found) => found,
            Err(e) if is_fatal(&e) => return Err(e.into()),
            Err(e) => {
                tracing::warn!(groups = batch.groups.len(), error = %e, "could not resolve the groups' members; groups skipped and kind marked failed");
                for (group, _) in &batch.groups {
                    let name = text(group, "principalName").unwrap_or("?");
                    members.failures.push(format!("group {name}: {e}"));
                }
                return Ok(());
            }
        };
        let groups = members.groups.as_deref();
        let items: Vec<Value> = (batch.groups.iter())
            .flat_map(|(group, descriptors)| {
                (descriptors.iter())
                    .filter_map(|d| subject(groups, &looked_up, d))
                    .map(move |subject| enrich(subject, "__group", group))
            })
            .collect();
        if !items.is_empty() {
            self.publish(
                members.crawl.resync_id,
                Kind::GroupMember,
                items,
                members.crawl.report,
            )
            .await?;
        }
        Ok(())
    }

    /// The organization's groups as the resync keeps them for the kinds that read them
    /// ([`group_list_readers`]); `None` when it does not (one kind reads them, or the list is
    /// larger than the resync keeps): the kind lists them itself.
    async fn group_list(&self, cache: &ResyncCache) -> Result<Option<Arc<KeptList>>, CrawlError> {
        let limit = cache.groups.limit();
        cache
            .groups
            .get_or_read(|| async move {
                let mut kept = KeptListBuilder::new(limit);
                let mut pages = pin!(self.groups());
                while let Some(page) = pages.try_next().await? {
                    for group in &page {
                        let descriptor = text(group, "descriptor").unwrap_or_default();
                        if !kept.push(descriptor, group) {
                            tracing::info!(
                                limit,
                                "the organization's groups are more than a resync keeps; each kind lists them and resolves groups with subjectlookup"
                            );
                            return Ok::<_, CrawlError>(ListRead::TooLarge);
                        }
                    }
                }
                Ok(ListRead::Kept(Arc::new(kept.finish())))
            })
            .await
    }

    /// Every page of the organization's groups.
    fn groups(&self) -> impl Stream<Item = Result<Vec<Value>, AdoError>> + '_ {
        paginate(move |token: Option<String>| async move {
            self.client.graph_groups_page(token.as_deref()).await
        })
    }
}

/// The crawl of `group-member`: its unit, the kept group list, and the groups it could not
/// read.
struct GroupMembers<'a> {
    crawl: KindCrawl<'a>,
    groups: Option<Arc<KeptList>>,
    failures: Vec<String>,
}

/// Groups whose members are resolved together: each with its members' descriptors, and the
/// descriptors to look up (at most [`SUBJECT_LOOKUP_BATCH`] unless one group has more).
#[derive(Default)]
struct MemberBatch {
    groups: Vec<(Value, Vec<String>)>,
    wanted: BTreeSet<String>,
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
