//! `advanced-security-alert`: the Advanced Security alerts of every healthy repository, from
//! the `advsec` host (`api-version` 7.2-preview.1, `top` and continuation token), each with
//! `__repositoryId` and `__projectId`.
//!
//! Selector `criteria: {states: [..], severity: [..], alertType: ..}` becomes
//! `criteria.states`, `criteria.severities` and `criteria.alertType` (the API's names). Over
//! several resources of the kind the filters are united (a resource without a filter means
//! none), so every resource sees at least the alerts it asked for.
//!
//! A repository without Advanced Security answers HTTP 400: it is skipped, and the kind stays
//! complete; any other error marks the kind failed as usual.

use std::pin::pin;

use futures_util::TryStreamExt;

use super::KindCrawl;
use super::items;
use super::{Pages, RepositoryUnit};
use crate::ado::{AdoError, Page, paginate, repository_ids};
use crate::crawl_context::{CrawlError, Crawler};
use crate::plan::KindPlan;
use crate::selector::{AlertSelector, SelectorError};

/// The values of a `criteria` filter over every resource: `None` when any resource does not
/// filter on it.
fn united_filter(selectors: &[AlertSelector], key: &str) -> Option<Vec<String>> {
    let mut values: Vec<String> = Vec::new();
    for selector in selectors {
        for value in selector.criteria.as_ref()?.filter(key)? {
            if !values.iter().any(|v| v == value) {
                values.push(value.to_string());
            }
        }
    }
    (!values.is_empty()).then_some(values)
}

/// The `criteria.*` query pairs for the kind's resources.
fn criteria_query(plan: &KindPlan) -> Result<Vec<(&'static str, String)>, SelectorError> {
    let selectors = plan.selectors::<AlertSelector>()?;
    Ok([
        ("criteria.states", "states"),
        ("criteria.severities", "severity"),
        ("criteria.alertType", "alertType"),
    ]
    .into_iter()
    .filter_map(|(param, key)| united_filter(&selectors, key).map(|v| (param, v.join(","))))
    .collect())
}

impl Crawler {
    pub(crate) async fn crawl_security_alerts(
        &self,
        mut crawl: KindCrawl<'_>,
    ) -> Result<(), CrawlError> {
        let plan = crawl.plan;
        let top = self.limits.page;
        let mut criteria = criteria_query(plan)?;
        // Incremental: alerts modified since the cursor.
        if let Some(since) = plan.since.map(crate::cursors::iso) {
            criteria.push(("criteria.modifiedSince", since));
        }
        let criteria = &criteria;
        let units = self.healthy_repository_units(crawl.cache).await?;
        self.fan_out_stream(
            &mut crawl,
            units,
            self.fan_out_width(),
            |repository: RepositoryUnit, pages: Pages| async move {
                let repository = repository?;
                let (project_id, repository_id) = &repository_ids(&repository);
                let query: Vec<(&str, &str)> =
                    criteria.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let query = &query;
                let mut alerts = pin!(paginate(|token: Option<String>| async move {
                    match self
                        .client
                        .security_alerts_page(
                            project_id,
                            repository_id,
                            query,
                            top,
                            token.as_deref(),
                        )
                        .await
                    {
                        Err(AdoError::Status { status: 400, url, body }) => {
                            tracing::info!(%url, %body, "Advanced Security is not enabled for this repository (HTTP 400); skipped");
                            Ok(Page {
                                items: Vec::new(),
                                continuation_token: None,
                            })
                        }
                        answer => answer,
                    }
                }));
                while let Some(page) = alerts.try_next().await? {
                    let items = page
                        .into_iter()
                        .map(|alert| items::security_alert(alert, repository_id, project_id))
                        .collect();
                    pages.send(items).await?;
                }
                Ok::<(), AdoError>(())
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use serde_json::json;

    #[test]
    fn criteria_become_the_api_parameters_united_over_resources() {
        let query = |selectors: &[Value]| {
            criteria_query(&KindPlan::of("advanced-security-alert", selectors))
        };
        let one = query(&[
            json!({"criteria": {"states": ["active", "fixed"], "severity": ["high"], "alertType": "secret"}}),
        ]);
        assert_eq!(
            one.expect("reads"),
            vec![
                ("criteria.states", "active,fixed".to_string()),
                ("criteria.severities", "high".to_string()),
                ("criteria.alertType", "secret".to_string()),
            ]
        );
        let two = query(&[
            json!({"criteria": {"states": ["active"], "alertType": "code"}}),
            json!({"criteria": {"states": ["dismissed"]}}),
        ]);
        assert_eq!(
            two.expect("reads"),
            vec![("criteria.states", "active,dismissed".to_string())]
        );
        assert!(query(&[json!({})]).expect("reads").is_empty());
        let refused = query(&[json!({"criteria": {"alertType": ["code"]}})]);
        assert_eq!(
            refused.map_err(|e| e.field),
            Err("criteria.alertType".to_string())
        );
    }
}
