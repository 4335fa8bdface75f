//! The `project` kind: the organization's projects (without those of `excludedTags`), read in
//! full when a resource asks for `defaultTeam` (the list omits it).

use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::Value;

use super::KindCrawl;
use crate::ado::ProjectId;
use crate::crawl_context::{CONCURRENT_UNITS, CrawlError, Crawler};
use crate::kind::Kind;
use crate::selector::AzureDevopsSelector;

impl Crawler {
    pub(crate) async fn crawl_projects(&self, crawl: KindCrawl<'_>) -> Result<(), CrawlError> {
        let plan = crawl.plan;
        let default_team =
            (plan.selectors::<AzureDevopsSelector>()?.iter()).any(|s| s.default_team.0);
        let projects = self.project_list(crawl.cache).await?;
        let mut listed = projects.iter().peekable();
        while listed.peek().is_some() {
            let page: Vec<Value> = listed.by_ref().take(self.items_per_event).collect();
            if !default_team {
                self.publish(crawl.resync_id, Kind::Project, page, crawl.report)
                    .await?;
                continue;
            }
            // The list omits `defaultTeam`: read each project in full, page by page.
            let full: Vec<Value> = stream::iter(page.iter().filter_map(project_id))
                .map(|id| async move {
                    match self.client.project(&id).await {
                        // As the Python integration reads a project alone (no
                        // `includeCapabilities`): the full project without `capabilities`.
                        Ok(mut project) => {
                            if let Some(map) = project.as_object_mut() {
                                map.remove("capabilities");
                            }
                            Ok(Some(project))
                        }
                        // Deleted between list and read: nothing to sync.
                        Err(e) if e.unit_gone() => Ok(None),
                        Err(e) => Err(e),
                    }
                })
                .buffered(CONCURRENT_UNITS)
                .try_filter_map(|p| async move { Ok(p) })
                .try_collect()
                .await?;
            self.publish(crawl.resync_id, Kind::Project, full, crawl.report)
                .await?;
        }
        Ok(())
    }
}

fn project_id(project: &Value) -> Option<ProjectId> {
    project
        .get("id")
        .and_then(Value::as_str)
        .map(ProjectId::new)
}
