//! The `project` kind: the organization's projects (without those of `excludedTags`), read in
//! full when a resource asks for `defaultTeam` (the list omits it).

use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::Value;

use crate::ado::AdoError;
use crate::crawl_context::{CONCURRENT_UNITS, CrawlError, Crawler, KindReport, ResyncCache};
use crate::kind::Kind;
use crate::plan::KindPlan;
use crate::selector::AzureDevopsSelector;
use adoport_shared::messages::ResyncId;

impl Crawler {
    pub(crate) async fn crawl_projects(
        &self,
        resync_id: ResyncId,
        plan: &KindPlan,
        cache: &mut ResyncCache,
        report: &mut KindReport,
    ) -> Result<(), CrawlError> {
        let default_team =
            (plan.selectors::<AzureDevopsSelector>()?.iter()).any(|s| s.default_team.0);
        let projects = self.project_list(&mut cache.projects).await?;
        if !default_team {
            for page in projects.chunks(self.items_per_event) {
                self.publish(resync_id, Kind::Project, page.to_vec(), report)
                    .await?;
            }
            return Ok(());
        }
        // The list omits `defaultTeam`: read each project in full, page by page.
        for page in projects.chunks(self.items_per_event) {
            let full: Vec<Value> = stream::iter(page.iter().filter_map(project_id))
                .map(|id| async move {
                    match self.client.project(&id).await {
                        Ok(project) => Ok(Some(project)),
                        // Deleted between list and read: nothing to sync.
                        Err(AdoError::NotFound { .. }) => Ok(None),
                        Err(e) => Err(e),
                    }
                })
                .buffered(CONCURRENT_UNITS)
                .try_filter_map(|p| async move { Ok(p) })
                .try_collect()
                .await?;
            self.publish(resync_id, Kind::Project, full, report).await?;
        }
        Ok(())
    }
}

fn project_id(project: &Value) -> Option<String> {
    project.get("id").and_then(Value::as_str).map(String::from)
}
