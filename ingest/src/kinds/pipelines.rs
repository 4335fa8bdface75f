//! Project-scoped list kinds read with `$top` and continuation tokens: `pipeline`
//! (`__projectId`), `build` (`__projectId`, `__project`; newest queue time first), `environment`,
//! `release-definition` (`__project`; selectors `expand`, default `environments`, and
//! `tagFilter`) and
//! `release-deployment` (both on the release management host), plus `branch` (per healthy
//! repository: `{name, refName, objectId, __repository}`).

use std::pin::pin;

use futures_util::TryStreamExt;
use serde_json::{Value, json};

use super::KindCrawl;
use super::items::{self, ListEnrichment};
use super::releases::distinct;
use super::{Pages, text};
use crate::ado::{AdoError, ProjectId, repository_ids};
use crate::crawl_context::{CrawlError, Crawler};
use crate::kind::Kind;
use crate::selector::ReleaseDefinitionSelector;

/// How one project-scoped list kind is read (its items are built by
/// [`items::project_list_item`]).
struct ListKind {
    service: Option<&'static str>,
    path: &'static str,
}

fn list_kind(kind: Kind) -> Option<ListKind> {
    let (service, path) = match kind {
        Kind::Pipeline => (None, "_apis/pipelines"),
        Kind::Build => (None, "_apis/build/builds"),
        Kind::Environment => (None, "_apis/distributedtask/environments"),
        Kind::ReleaseDefinition => (Some("vsrm"), "_apis/release/definitions"),
        Kind::ReleaseDeployment => (Some("vsrm"), "_apis/release/deployments"),
        _ => return None,
    };
    Some(ListKind { service, path })
}

impl Crawler {
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
            Kind::Build => vec![vec![("queryOrder", "queueTimeDescending".into())]],
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
        let enrichment = &ListEnrichment::of(plan)?;
        let top = self.limits.page;
        let units = self.project_units(crawl.cache).await?;
        let (spec, sets) = (&spec, &sets);
        self.fan_out(
            &mut crawl,
            units,
            |project: Value, pages: Pages| async move {
                let project_id = ProjectId::new(text(&project, "id").unwrap_or_default());
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

    pub(crate) async fn crawl_branches(&self, mut crawl: KindCrawl<'_>) -> Result<(), CrawlError> {
        let top = self.limits.page;
        let units = self.healthy_repository_units(crawl.cache).await?;
        self.fan_out(
            &mut crawl,
            units,
            |repository: Value, pages: Pages| async move {
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
