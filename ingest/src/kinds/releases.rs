//! Release kinds: `release`, from the release management host (`vsrm`; the organization URL
//! itself on Azure DevOps Server), continuation-token pages per project.

use std::pin::pin;

use futures_util::TryStreamExt;

use super::KindCrawl;
use super::Pages;
use crate::ado::paginate;
use crate::crawl_context::{CrawlError, Crawler};

impl Crawler {
    pub(crate) async fn crawl_releases(&self, mut crawl: KindCrawl<'_>) -> Result<(), CrawlError> {
        let top = self.limits.page;
        // Incremental: releases created since the cursor (a status change of an older release
        // is not seen, as in the Python integration).
        let since = crawl.plan.since.map(crate::cursors::iso);
        let since = &since;
        self.per_project(&mut crawl, |project_id, _, pages: Pages| async move {
            let project_id = &project_id;
            let extra: Vec<(&str, &str)> = since
                .as_deref()
                .map(|since| ("minCreatedTime", since))
                .into_iter()
                .collect();
            let extra = &extra;
            let mut listing = pin!(paginate(|token: Option<String>| async move {
                self.client
                    .releases_page(project_id, top, extra, token.as_deref())
                    .await
            }));
            while let Some(items) = listing.try_next().await? {
                pages.send(items).await?;
            }
            Ok(())
        })
        .await
    }
}
