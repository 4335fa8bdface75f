//! Release kinds: `release`, from the release management host (`vsrm`; the organization URL
//! itself on Azure DevOps Server), continuation-token pages per project, filtered by the
//! selector's `expand`, `statusFilter`, `tagFilter`, `sourceBranchFilter`, `minCreatedTime`
//! and `maxCreatedTime` (sent to Release - List as they are given).

use std::pin::pin;

use futures_util::TryStreamExt;

use super::KindCrawl;
use super::Pages;
use crate::ado::paginate;
use crate::crawl_context::{CrawlError, Crawler};
use crate::selector::ReleaseSelector;

/// The distinct query parameter sets of a kind's resources, in mapping order: each is one
/// listing per project (an item two sets select is published twice, which is harmless).
pub(crate) fn distinct<T: PartialEq>(sets: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for set in sets {
        if !out.contains(&set) {
            out.push(set);
        }
    }
    out
}

impl Crawler {
    pub(crate) async fn crawl_releases(&self, mut crawl: KindCrawl<'_>) -> Result<(), CrawlError> {
        let top = self.limits.page;
        let selectors = crawl.plan.selectors::<ReleaseSelector>()?;
        let sets = &distinct(selectors.iter().map(ReleaseSelector::params));
        self.per_project(&mut crawl, |project_id, _, pages: Pages| async move {
            let project_id = &project_id;
            for set in sets {
                let params: Vec<(&str, &str)> = set.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let params = &params;
                let mut listing = pin!(paginate(|token: Option<String>| async move {
                    self.client
                        .releases_page(project_id, params, top, token.as_deref())
                        .await
                }));
                while let Some(items) = listing.try_next().await? {
                    pages.send(items).await?;
                }
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_parameter_sets_are_listed_once() {
        assert_eq!(
            distinct([vec![1], vec![2], vec![1], vec![]]),
            [vec![1], vec![2], vec![]]
        );
    }
}
