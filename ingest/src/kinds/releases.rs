//! Release kinds: `release`, from the release management host (`vsrm`; the organization URL
//! itself on Azure DevOps Server), continuation-token pages per project.

use std::pin::pin;

use futures_util::TryStreamExt;
use serde_json::Value;

use super::KindCrawl;
use super::{Pages, text};
use crate::ado::{ProjectId, paginate};
use crate::crawl_context::{CrawlError, Crawler};

impl Crawler {
    pub(crate) async fn crawl_releases(&self, mut crawl: KindCrawl<'_>) -> Result<(), CrawlError> {
        let top = self.limits.page;
        let units = self.project_units(crawl.cache).await?;
        self.fan_out(
            &mut crawl,
            units,
            |project: Value, pages: Pages| async move {
                let project_id = &ProjectId::new(text(&project, "id").unwrap_or_default());
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
