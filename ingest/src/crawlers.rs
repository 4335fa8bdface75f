//! Resyncs of several organizations: one [`Crawler`] per organization, run concurrently (each
//! with its own client and request budget, as Azure DevOps limits each organization
//! separately), and their reports merged into one.
//!
//! A kind is complete only if it is complete in every organization: a kind that failed in one
//! organization is failed in the merged report, and so is every kind of an organization whose
//! crawl stopped (a refused token, say), so that reconciliation deletes nothing on the strength
//! of it while the other organizations' items still land. A broker that stays away stops the
//! whole resync, as it does for one organization.

use futures_util::future::join_all;

use crate::ado::OrganizationName;
use crate::crawl_context::{CrawlError, CrawlFence, CrawlReport, CrawlStamp, Crawler, KindReport};
use crate::crawler::CrawlOrder;
use crate::plan::KindPlan;
use adoport_shared::messages::ResyncId;
use adoport_shared::metrics::ResyncStats;

/// The crawlers of every configured organization.
pub struct Crawlers {
    crawlers: Vec<Crawler>,
    resync_stats: ResyncStats,
}

impl Crawlers {
    /// `crawlers` share one [`ResyncStats`] (the first one's is reported).
    pub fn new(crawlers: Vec<Crawler>) -> Self {
        let resync_stats = crawlers
            .first()
            .map(|c| c.resync_stats().clone())
            .unwrap_or_default();
        Self {
            crawlers,
            resync_stats,
        }
    }

    /// Resync progress: started, finished, items crawled per kind.
    pub fn resync_stats(&self) -> &ResyncStats {
        &self.resync_stats
    }

    /// The crawlers, one per organization, in configuration order.
    pub fn crawlers(&self) -> &[Crawler] {
        &self.crawlers
    }

    /// Crawls every organization at once, as a new attempt at `resync_id`.
    pub async fn crawl(
        &self,
        resync_id: ResyncId,
        plan: &[KindPlan],
    ) -> Result<CrawlReport, CrawlError> {
        self.crawl_as(&CrawlStamp::new(resync_id), &CrawlFence::none(), plan)
            .await
    }

    /// Crawls every organization at once and merges the reports; every raw event carries
    /// `stamp`, and only while `fence` holds. With one organization this is exactly its crawl
    /// (a refused token fails the resync as a whole).
    pub async fn crawl_as(
        &self,
        stamp: &CrawlStamp,
        fence: &CrawlFence,
        plan: &[KindPlan],
    ) -> Result<CrawlReport, CrawlError> {
        self.crawl_ordered(stamp, fence, plan, CrawlOrder::Concurrent)
            .await
    }

    /// [`Crawlers::crawl_as`], each organization's units run as `order` says.
    pub async fn crawl_ordered(
        &self,
        stamp: &CrawlStamp,
        fence: &CrawlFence,
        plan: &[KindPlan],
        order: CrawlOrder,
    ) -> Result<CrawlReport, CrawlError> {
        if let [only] = self.crawlers.as_slice() {
            return only.crawl_ordered(stamp, fence, plan, order).await;
        }
        let outcomes = join_all(
            self.crawlers
                .iter()
                .map(|crawler| crawler.crawl_ordered(stamp, fence, plan, order)),
        )
        .await;
        let mut merged = CrawlReport::default();
        for (crawler, outcome) in self.crawlers.iter().zip(outcomes) {
            let organization = crawler.client().organization_name();
            match outcome {
                Ok(report) => {
                    for (kind, report) in report.kinds {
                        add(&mut merged, &kind, &organization, report);
                    }
                }
                Err(e @ (CrawlError::Bus(_) | CrawlError::LeaseLost)) => return Err(e),
                Err(e) => {
                    tracing::error!(organization = %organization, error = %e, "organization could not be crawled; its kinds are marked failed and nothing of it is deleted");
                    for kind in plan {
                        add(
                            &mut merged,
                            &kind.key(),
                            &organization,
                            KindReport {
                                failure: Some(e.to_string()),
                                ..KindReport::default()
                            },
                        );
                    }
                }
            }
        }
        Ok(merged)
    }
}

/// Adds one organization's report of `kind` to the merged one; failures are kept, each
/// prefixed with its organization.
fn add(merged: &mut CrawlReport, kind: &str, organization: &OrganizationName, report: KindReport) {
    let entry = merged.kinds.entry(kind.to_string()).or_default();
    if entry.resources.is_none() {
        entry.resources = report.resources;
    }
    entry.items += report.items;
    entry.events += report.events;
    if let Some(failure) = report.failure {
        let failure = format!("organization {organization}: {failure}");
        entry.failure = Some(match entry.failure.take() {
            Some(earlier) => format!("{earlier}; {failure}"),
            None => failure,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_failed_in_one_organization_is_failed() {
        let mut merged = CrawlReport::default();
        let ok = |items| KindReport {
            items,
            events: 1,
            ..KindReport::default()
        };
        let (a, b) = (OrganizationName::new("a"), OrganizationName::new("b"));
        add(&mut merged, "project", &a, ok(3));
        add(&mut merged, "project", &b, ok(2));
        add(&mut merged, "repository", &a, ok(4));
        add(
            &mut merged,
            "repository",
            &b,
            KindReport {
                failure: Some("HTTP 500".into()),
                ..KindReport::default()
            },
        );
        assert_eq!(
            merged.kinds["project"],
            KindReport {
                items: 5,
                events: 2,
                ..KindReport::default()
            }
        );
        assert_eq!(merged.items(), 9);
        assert_eq!(merged.failed_kinds(), vec!["repository"]);
        assert_eq!(
            merged.kinds["repository"].failure.as_deref(),
            Some("organization b: HTTP 500")
        );
    }
}
