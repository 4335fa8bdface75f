//! Release kinds: `release`, from the release management host (`vsrm`; the organization URL
//! itself on Azure DevOps Server), continuation-token pages per project.

use std::pin::pin;

use futures_util::TryStreamExt;
use serde_json::Value;

use super::{Pages, text};
use crate::ado::paginate;
use crate::crawl_context::{CrawlError, Crawler, KindReport, ResyncCache};
use crate::kind::Kind;
use crate::plan::KindPlan;
use adoport_shared::messages::ResyncId;

impl Crawler {
    pub(crate) async fn crawl_releases(
        &self,
        resync_id: ResyncId,
        _plan: &KindPlan,
        cache: &mut ResyncCache,
        report: &mut KindReport,
    ) -> Result<(), CrawlError> {
        let top = self.limits.page;
        let units = self.project_units(cache).await?;
        self.fan_out(
            resync_id,
            Kind::Release,
            units,
            report,
            |project: Value, pages: Pages| async move {
                let project_id = text(&project, "id").unwrap_or_default();
                let mut listing = pin!(paginate(|token: Option<String>| async move {
                    self.client
                        .releases_page(project_id, top, token.as_deref())
                        .await
                }));
                while let Some(items) = listing.try_next().await? {
                    pages.send(items).await?;
                }
                Ok(())
            },
        )
        .await
    }
}
