//! Release kinds: `release`, from the release management host (`vsrm`; the organization URL
//! itself on Azure DevOps Server), continuation-token pages per project.

use serde_json::Value;

use super::{Pages, text};
use crate::crawl_context::{CrawlError, Crawler, KindReport, ResyncCache};
use crate::kind::Kind;
use adoport_shared::messages::ResyncId;

impl Crawler {
    pub(crate) async fn crawl_releases(
        &self,
        resync_id: ResyncId,
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
                let mut token: Option<String> = None;
                loop {
                    let page = self
                        .client
                        .releases_page(project_id, top, token.as_deref())
                        .await?;
                    pages.send(page.items).await?;
                    match page.continuation_token {
                        Some(next) if Some(&next) != token.as_ref() => token = Some(next),
                        _ => return Ok(()),
                    }
                }
            },
        )
        .await
    }
}
