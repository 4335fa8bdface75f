//! The `wiki` kind: the pages of every wiki of every project (`pagesbatch`, continuation
//! token), each with `__wiki` and `__project`; with `includeContent`, each page is read in full
//! with its Markdown; with `wikiType`, only the wikis of that type; every call with the
//! selector's `apiVersion` (default 7.1).

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

impl Crawler {
    pub(crate) async fn crawl_wikis(&self, mut crawl: KindCrawl<'_>) -> Result<(), CrawlError> {
        let plan = crawl.plan;
        let selectors = plan.selectors::<WikiSelector>()?;
        let include_content = selectors.iter().any(|s| s.include_content.0);
        let types = &WikiSelector::types(&selectors);
        let api_version = WikiSelector::api_version(&selectors);
        let page_size = self.limits.page.clamp(1, 100);
        self.per_project(&mut crawl, |project_id, project, pages: Pages| async move {
            for wiki in self.client.wikis(&project_id, api_version).await? {
                if let Some(types) = types
                    && !types.iter().any(|t| text(&wiki, "type") == Some(t))
                {
                    continue;
                }
                let wiki_id = WikiId::new(text(&wiki, "id").unwrap_or_default());
                let (project_id, wiki_id) = (&project_id, &wiki_id);
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
                    let full = full_pages(
                        &self.client,
                        project_id,
                        wiki_id,
                        listed,
                        include_content,
                        api_version,
                    )
                    .await?;
                    let items = full
                        .into_iter()
                        .map(|p| page_item(p, &wiki, &project))
                        .collect();
                    pages.send(items).await?;
                }
            }
            Ok(())
        })
        .await
    }
}
