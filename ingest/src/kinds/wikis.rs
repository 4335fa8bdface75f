//! The `wiki` kind: the pages of every wiki of every project (`pagesbatch`, continuation
//! token), each with `__wiki` and `__project`; with `includeContent`, each page is read in full
//! with its Markdown; with `wikiType`, only the wikis of that type; every call with the
//! selector's `apiVersion` (default 7.1). Every `wiki` selector of a resync is fed from the
//! same reads (the kind is crawled together), per API version.

use std::pin::pin;

use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::Value;

use super::KindCrawl;
use super::{Pages, enrich, text};
use crate::ado::{AdoClient, AdoError, ProjectId, WikiId, WikiPageRef, none_if_missing, paginate};
use crate::crawl_context::{CrawlError, Crawler};
use crate::selector::WikiSelector;

/// Pages read in full at the same time.
const CONCURRENT_PAGES: usize = 8;

/// A wiki page item: the page plus `__wiki` (the wiki with its own `__project`, as the Python
/// integration enriches the wiki before its pages) and `__project`.
pub(crate) fn page_item(page: Value, wiki: &Value, project: &Value) -> Value {
    let wiki = enrich(wiki.clone(), "__project", project);
    enrich(enrich(page, "__wiki", &wiki), "__project", project)
}

/// The pages of `page_details` (from `pagesbatch`), read in full with their content when
/// `include_content` (a page gone in between is left out).
pub(crate) async fn full_pages(
    client: &AdoClient,
    project_id: &ProjectId,
    wiki_id: &WikiId,
    page_details: Vec<Value>,
    include_content: bool,
    api_version: &str,
) -> Result<Vec<Value>, AdoError> {
    if !include_content {
        return Ok(page_details);
    }
    stream::iter(page_details)
        .map(|detail| async move {
            let Some(id) = detail.get("id").and_then(Value::as_u64) else {
                return Ok(Some(detail));
            };
            let page = WikiPageRef::Id(id);
            let read = client.read_wiki_page_at(project_id, wiki_id, page, true, api_version);
            none_if_missing(read.await)
        })
        .buffered(CONCURRENT_PAGES)
        .try_filter_map(|page| async move { Ok(page) })
        .try_collect()
        .await
}

/// What one `wiki` crawl unit reads: its wiki types (`None`: both), whether it reads each page
/// in full, and the API version of its calls.
struct WikiUnit {
    types: Option<Vec<String>>,
    include_content: bool,
    api_version: String,
}

impl WikiUnit {
    fn wants(&self, wiki: &Value) -> bool {
        (self.types.as_ref())
            .is_none_or(|types| types.iter().any(|t| text(wiki, "type") == Some(t)))
    }
}

impl Crawler {
    /// Every `wiki` crawl unit of the resync at once (one per distinct selector): the units of
    /// one `apiVersion` share each project's wiki list, each wiki's page listing and each
    /// page's full read (for the units with `includeContent`), and each publishes the pages of
    /// the wikis of its `wikiType`, in full or as listed as it asks. Units of another
    /// `apiVersion` read on their own, after.
    pub(crate) async fn crawl_wikis(&self, crawls: Vec<KindCrawl<'_>>) -> Result<(), CrawlError> {
        let mut units = Vec::with_capacity(crawls.len());
        for crawl in &crawls {
            let selectors = crawl.plan.selectors::<WikiSelector>()?;
            units.push(WikiUnit {
                types: WikiSelector::types(&selectors),
                include_content: selectors.iter().any(|s| s.include_content.0),
                api_version: WikiSelector::api_version(&selectors).to_string(),
            });
        }
        // The units of one API version one after another, in the order of their first unit.
        let groups: Vec<usize> = (units.iter())
            .map(|unit| {
                (units.iter())
                    .position(|u| u.api_version == unit.api_version)
                    .unwrap_or(0)
            })
            .collect();
        let mut paired: Vec<(usize, KindCrawl<'_>, WikiUnit)> = (groups.into_iter().zip(crawls))
            .zip(units)
            .map(|((group, crawl), unit)| (group, crawl, unit))
            .collect();
        paired.sort_by_key(|(group, _, _)| *group);
        let (mut crawls, units): (Vec<_>, Vec<_>) = paired
            .into_iter()
            .map(|(_, crawl, unit)| (crawl, unit))
            .unzip();
        let mut start = 0;
        while start < units.len() {
            let version = &units[start].api_version;
            let end = start
                + (units[start..].iter())
                    .take_while(|u| &u.api_version == version)
                    .count();
            self.crawl_wikis_of(&mut crawls[start..end], &units[start..end])
                .await?;
            start = end;
        }
        Ok(())
    }

    /// [`Crawler::crawl_wikis`] for units of one API version.
    async fn crawl_wikis_of(
        &self,
        crawls: &mut [KindCrawl<'_>],
        units: &[WikiUnit],
    ) -> Result<(), CrawlError> {
        let (Some(cache), Some(first)) = (crawls.first().map(|c| c.cache), units.first()) else {
            return Ok(());
        };
        let api_version = first.api_version.as_str();
        let page_size = self.limits.page.clamp(1, 100);
        let projects = self.project_units(cache).await?;
        self.fan_out_to(
            crawls,
            projects,
            |project: Value, pages: Pages| async move {
                let project_id = &ProjectId::new(text(&project, "id").unwrap_or_default());
                for wiki in self.client.wikis(project_id, api_version).await? {
                    let wanting: Vec<usize> = (units.iter().enumerate())
                        .filter(|(_, unit)| unit.wants(&wiki))
                        .map(|(index, _)| index)
                        .collect();
                    if wanting.is_empty() {
                        continue;
                    }
                    let include_content = wanting.iter().any(|&i| units[i].include_content);
                    let wiki_id = WikiId::new(text(&wiki, "id").unwrap_or_default());
                    let wiki_id = &wiki_id;
                    let mut listing = pin!(paginate(|token: Option<String>| async move {
                        self.client
                            .wiki_pages_page(
                                project_id,
                                wiki_id,
                                api_version,
                                page_size,
                                token.as_deref(),
                            )
                            .await
                    }));
                    while let Some(listed) = listing.try_next().await? {
                        let full = match include_content {
                            true => Some(
                                full_pages(
                                    &self.client,
                                    project_id,
                                    wiki_id,
                                    listed.clone(),
                                    true,
                                    api_version,
                                )
                                .await?,
                            ),
                            false => None,
                        };
                        for &index in &wanting {
                            let read = match (&full, units[index].include_content) {
                                (Some(full), true) => full,
                                _ => &listed,
                            };
                            let items = (read.iter())
                                .map(|p| page_item(p.clone(), &wiki, &project))
                                .collect();
                            pages.send_to(index, items).await?;
                        }
                    }
                }
                Ok(())
            },
        )
        .await
    }
}
