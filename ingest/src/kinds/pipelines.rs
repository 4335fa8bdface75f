//! Project-scoped list kinds read with `$top` and continuation tokens: `pipeline`
//! (`__projectId`), `build` (`__projectId`, `__project`; newest queue time first; every
//! selector fed from one listing), `environment`,
//! `release-definition` (`__project`; selectors `expand`, default `environments`, and
//! `tagFilter`) and
//! `release-deployment` (both on the release management host), plus `branch` (per healthy
//! repository: `{name, refName, objectId, __repository}`).
//!
//! A project's builds list is read once per resync for `build` and `pipeline-stage`, page by
//! page ([`Crawler::shared_builds`]): a page is kept for the other kind only until it took it,
//! within the resync's shared-read limit (`crate::shared_reads::SharedReads`; past it the
//! other lists the page again). An incremental `build` (`minTime`) lists its own.

use std::pin::pin;

use std::sync::Arc;

use futures_util::{Stream, TryStreamExt};
use serde_json::{Value, json};

use super::KindCrawl;
use super::items::{self, ListEnrichment};
use super::releases::distinct;
use super::{Pages, RepositoryUnit, text};
use crate::ado::{AdoError, Page, ProjectId, paginate, repository_ids};
use crate::crawl_context::{CompactList, CrawlError, Crawler, ResyncCache};
use crate::kind::Kind;
use crate::plan::KindPlan;
use crate::selector::ReleaseDefinitionSelector;

/// How one project-scoped list kind is read (its items are built by
/// [`items::project_list_item`]).
struct ListKind {
    service: Option<&'static str>,
    path: &'static str,
}

fn list_kind(kind: Kind) -> Option<ListKind> {
    let (service, path) = match kind {
        Kind::Pipeline => (None, PIPELINES),
        Kind::Environment => (None, ENVIRONMENTS),
        Kind::ReleaseDefinition => (Some("vsrm"), "_apis/release/definitions"),
        Kind::ReleaseDeployment => (Some("vsrm"), "_apis/release/deployments"),
        _ => return None,
    };
    Some(ListKind { service, path })
}

/// The pipelines list of a project (read by `pipeline` and `pipeline-run`).
pub(crate) const PIPELINES: &str = "_apis/pipelines";
/// The builds list of a project (read by `build`, all its units at once, and
/// `pipeline-stage`).
const BUILDS: &str = "_apis/build/builds";
/// The order both kinds list the builds in (the Python integration's).
const BUILDS_ORDER: (&str, &str) = ("queryOrder", "queueTimeDescending");

/// The crawl units of `plan` that list every project's builds in full: `pipeline-stage`'s,
/// and `build`'s (one for all its units, which share one listing) unless every one of them
/// reads only what changed (`minTime`). The resync keeps a page of builds for the others
/// until each took it.
pub(crate) fn build_list_readers(plan: &[KindPlan]) -> usize {
    let of = |kind: Kind| plan.iter().filter(move |unit| unit.known() == Some(kind));
    let builds = of(Kind::Build).count() > 0 && !of(Kind::Build).all(|unit| unit.since.is_some());
    of(Kind::PipelineStage).count() + usize::from(builds)
}

/// A page of builds as [`Crawler::shared_builds`] keeps it, back as a [`Page`].
fn builds_page(kept: Value) -> Page {
    let Value::Object(mut kept) = kept else {
        return Page {
            items: Vec::new(),
            continuation_token: None,
        };
    };
    let items = match kept.remove("items") {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    };
    let continuation_token = match kept.remove("token") {
        Some(Value::String(token)) => Some(token),
        _ => None,
    };
    Page {
        items,
        continuation_token,
    }
}
/// The environments list of a project (read by `environment` and `pipeline-deployment`).
pub(crate) const ENVIRONMENTS: &str = "_apis/distributedtask/environments";

impl Crawler {
    /// Every page of a project's builds, newest queued first, each page read once per resync
    /// for the crawl units that list them ([`build_list_readers`]), keyed by the token it was
    /// asked with.
    pub(crate) fn shared_builds<'a>(
        &'a self,
        cache: &'a ResyncCache,
        project_id: &'a ProjectId,
    ) -> impl Stream<Item = Result<Vec<Value>, AdoError>> + 'a {
        let top = self.limits.page;
        paginate(move |token: Option<String>| async move {
            let key = format!("{project_id} {}", token.as_deref().unwrap_or_default());
            let kept = (cache.build_pages)
                .get_or_read(&key, || async {
                    let page = (self.client)
                        .project_list_page(
                            None,
                            project_id,
                            BUILDS,
                            &[BUILDS_ORDER],
                            top,
                            token.as_deref(),
                        )
                        .await?;
                    Ok::<_, AdoError>(json!({
                        "items": page.items,
                        "token": page.continuation_token,
                    }))
                })
                .await?;
            Ok(builds_page(kept))
        })
    }

    /// Every page of the project list at `path` (no parameters), read once per resync and
    /// project whichever kind or crawl unit asks first ([`ProjectLists`]); a failed read is not
    /// kept (the next unit reads again).
    pub(crate) async fn shared_project_list(
        &self,
        cache: &ResyncCache,
        project_id: &ProjectId,
        path: &'static str,
    ) -> Result<Arc<CompactList>, AdoError> {
        let shared = cache.project_lists.of(project_id.as_ref(), path);
        let mut held = shared.hold().await;
        if let Some(list) = held.as_ref() {
            return Ok(Arc::clone(list));
        }
        let pages: Vec<Vec<Value>> = self
            .client
            .project_list(None, project_id, path, &[], self.limits.page)
            .try_collect()
            .await?;
        let list = Arc::new(CompactList::from_values(pages.into_iter().flatten()));
        *held = Some(Arc::clone(&list));
        Ok(list)
    }

    pub(crate) async fn crawl_project_list(
        &self,
        mut crawl: KindCrawl<'_>,
    ) -> Result<(), CrawlError> {
        let plan = crawl.plan;
        let Some((kind, spec)) = plan.known().and_then(|k| Some((k, list_kind(k)?))) else {
            return Ok(());
        };
        // One listing per project for each distinct parameter set of the kind's resources.
        let sets: Vec<Vec<(&str, String)>> = match kind {
            Kind::ReleaseDefinition => {
                let selectors = plan.selectors::<ReleaseDefinitionSelector>()?;
                let expand = ReleaseDefinitionSelector::expand(&selectors);
                distinct(selectors.iter().map(|s| {
                    let mut set = vec![("$expand", expand.to_string())];
                    set.extend(s.params());
                    set
                }))
            }
            _ => vec![Vec::new()],
        };
        // Incremental: deployments modified since the cursor.
        let since_param = match kind {
            Kind::ReleaseDeployment => Some("minModifiedTime"),
            _ => None,
        };
        let sets = match (since_param, plan.since.map(crate::cursors::iso)) {
            (Some(param), Some(since)) => sets
                .into_iter()
                .map(|mut set| {
                    set.push((param, since.clone()));
                    set
                })
                .collect(),
            _ => sets,
        };
        let enrichment = &ListEnrichment::of(plan)?;
        let top = self.limits.page;
        let cache = crawl.cache;
        let units = self.project_units(cache).await?;
        let (spec, sets) = (&spec, &sets);
        let shared = sets.iter().all(Vec::is_empty) && spec.service.is_none();
        self.fan_out(
            &mut crawl,
            units,
            |project: Value, pages: Pages| async move {
                let project_id = ProjectId::new(text(&project, "id").unwrap_or_default());
                // Pipelines and environments: the list other kinds read too, read once.
                if shared && (spec.path == PIPELINES || spec.path == ENVIRONMENTS) {
                    let path = if spec.path == PIPELINES {
                        PIPELINES
                    } else {
                        ENVIRONMENTS
                    };
                    let list = self.shared_project_list(cache, &project_id, path).await?;
                    let listed: Vec<Value> = list.iter().collect();
                    for page in listed.chunks(top.max(1)) {
                        let items: Vec<Value> = (page.iter().cloned())
                            .map(|item| items::project_list_item(kind, item, &project))
                            .collect();
                        pages
                            .send(self.items().list_items(enrichment, items).await?)
                            .await?;
                    }
                    return Ok(());
                }
                for set in sets {
                    let query: Vec<(&str, &str)> =
                        set.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    let mut listing = pin!(self.client.project_list(
                        spec.service,
                        &project_id,
                        spec.path,
                        &query,
                        top
                    ));
                    while let Some(listed) = listing.try_next().await? {
                        let items: Vec<Value> = listed
                            .into_iter()
                            .map(|item| items::project_list_item(kind, item, &project))
                            .collect();
                        pages
                            .send(self.items().list_items(enrichment, items).await?)
                            .await?;
                    }
                }
                Ok(())
            },
        )
        .await
    }

    /// Every `build` crawl unit of the resync at once (one per distinct selector): one listing
    /// of each project's builds (newest queue time first; in an incremental run, queued since
    /// the earliest of the units' cursors) feeds them all, each page enriched as each unit asks
    /// (`enrichWithFirstCommit`).
    pub(crate) async fn crawl_builds(
        &self,
        mut crawls: Vec<KindCrawl<'_>>,
    ) -> Result<(), CrawlError> {
        let Some(cache) = crawls.first().map(|crawl| crawl.cache) else {
            return Ok(());
        };
        let enrichments = (crawls.iter())
            .map(|crawl| ListEnrichment::of(crawl.plan))
            .collect::<Result<Vec<_>, _>>()?;
        let mut query = vec![(BUILDS_ORDER.0, BUILDS_ORDER.1.to_string())];
        if crawls.iter().all(|crawl| crawl.plan.since.is_some())
            && let Some(since) = crawls.iter().filter_map(|crawl| crawl.plan.since).min()
        {
            query.push(("minTime", crate::cursors::iso(since)));
        }
        // The full listing is the one `pipeline-stage` lists too.
        let shared = query.len() == 1;
        let (enrichments, query) = (&enrichments, &query);
        let top = self.limits.page;
        let units = self.project_units(cache).await?;
        self.fan_out_to(
            &mut crawls,
            units,
            |project: Value, pages: Pages| async move {
                let project_id = ProjectId::new(text(&project, "id").unwrap_or_default());
                let query: Vec<(&str, &str)> =
                    query.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let mut own =
                    pin!(
                        self.client
                            .project_list(None, &project_id, BUILDS, &query, top)
                    );
                let mut kept = pin!(self.shared_builds(cache, &project_id));
                loop {
                    let listed = match shared {
                        true => kept.try_next().await?,
                        false => own.try_next().await?,
                    };
                    let Some(listed) = listed else {
                        break;
                    };
                    let items: Vec<Value> = (listed.into_iter())
                        .map(|item| items::project_list_item(Kind::Build, item, &project))
                        .collect();
                    for (index, enrichment) in enrichments.iter().enumerate() {
                        let enriched = self.items().list_items(enrichment, items.clone()).await?;
                        pages.send_to(index, enriched).await?;
                    }
                }
                Ok(())
            },
        )
        .await
    }

    pub(crate) async fn crawl_branches(&self, mut crawl: KindCrawl<'_>) -> Result<(), CrawlError> {
        let top = self.limits.page;
        let units = self.healthy_repository_units(crawl.cache).await?;
        self.fan_out_stream(
            &mut crawl,
            units,
            self.fan_out_width(),
            |repository: RepositoryUnit, pages: Pages| async move {
                let repository = repository?;
                let (project_id, repository_id) = repository_ids(&repository);
                let path = format!("_apis/git/repositories/{repository_id}/refs");
                let mut listing = pin!(self.client.project_list(
                    None,
                    &project_id,
                    &path,
                    &[("filter", "heads/")],
                    top
                ));
                while let Some(refs) = listing.try_next().await? {
                    let items = refs.iter().filter_map(|r| branch(r, &repository)).collect();
                    pages.send(items).await?;
                }
                Ok::<(), AdoError>(())
            },
        )
        .await
    }
}

/// The branch item the Python integration emits for a ref.
fn branch(reference: &Value, repository: &Value) -> Option<Value> {
    let ref_name = text(reference, "name")?;
    Some(json!({
        "name": ref_name.strip_prefix("refs/heads/").unwrap_or(ref_name),
        "refName": ref_name,
        "objectId": reference.get("objectId").cloned().unwrap_or(Value::Null),
        "__repository": repository,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_branch_item_names_the_branch_without_refs_heads() {
        let item = branch(
            &json!({"name": "refs/heads/feature/x", "objectId": "abc"}),
            &json!({"id": "r"}),
        )
        .expect("branch");
        assert_eq!(item["name"], "feature/x");
        assert_eq!(item["refName"], "refs/heads/feature/x");
        assert_eq!(item["__repository"]["id"], "r");
        assert!(branch(&json!({}), &json!({})).is_none());
    }
}
