//! Azure DevOps Analytics (OData v4.0-preview): the pipeline runs of a project that completed
//! since a time, as the Python integration's incremental sync discovers them.
//!
//! - Host: the organization's Analytics service (`https://analytics.dev.azure.com/{org}`,
//!   `https://{org}.analytics.visualstudio.com`, the collection URL on Azure DevOps Server; see
//!   [`super::service_base`]), path `{project}/_odata/v4.0-preview/PipelineRuns`. OData is
//!   versioned by its path: no `api-version` is sent.
//! - Query: `$select=PipelineRunId,CompletedDate`,
//!   `$expand=Pipeline($select=PipelineId,PipelineName)`, `$filter=CompletedDate ge <ISO 8601>`
//!   (the offset is required; `+` is sent as `%2B`), `$orderby=CompletedDate desc`.
//! - Paging is server-driven: a page carries `@odata.nextLink` (the query with a
//!   `$skiptoken`) while more rows remain; it is followed as given, and only on the same
//!   Analytics host. The Python integration also sends `$top=100`, which in OData caps the
//!   whole answer at 100 rows (Analytics adds a next link only past its own page size), so a
//!   project with more runs completed in one interval lost the rest; adoport sends no `$top`.
//!
//! Rows come back as Analytics returns them: `{PipelineRunId, CompletedDate, Pipeline:
//! {PipelineId, PipelineName}}`.

use futures_util::Stream;
use serde_json::Value;

use super::{AdoClient, AdoError, Page, ProjectId, paginate, service_base};

/// Path of the pipeline runs entity set under a project's Analytics root.
pub const PIPELINE_RUNS_ODATA_PATH: &str = "_odata/v4.0-preview/PipelineRuns";
/// `$select` of the discovery query.
pub const PIPELINE_RUNS_SELECT: &str = "PipelineRunId,CompletedDate";
/// `$expand` of the discovery query.
pub const PIPELINE_RUNS_EXPAND: &str = "Pipeline($select=PipelineId,PipelineName)";
/// `$orderby` of the discovery query.
pub const PIPELINE_RUNS_ORDER: &str = "CompletedDate desc";

/// The `$filter` of runs completed at or after `since` (an ISO 8601 time with its offset), as
/// the Python integration writes it.
pub fn completed_since_filter(since: &str) -> String {
    format!("CompletedDate ge {since}")
}

impl AdoClient {
    /// One page of the runs of `project_id` completed since `since`: the first page (no
    /// `next_link`) or the page `next_link` names. Its `continuation_token` is the next link.
    pub async fn completed_pipeline_runs_page(
        &self,
        project_id: &ProjectId,
        since: &str,
        next_link: Option<&str>,
    ) -> Result<Page, AdoError> {
        let answer = match next_link {
            None => {
                let url = self.service_url(
                    "analytics",
                    &format!("{project_id}/{PIPELINE_RUNS_ODATA_PATH}"),
                );
                let filter = completed_since_filter(since);
                let query = [
                    ("$select", PIPELINE_RUNS_SELECT),
                    ("$expand", PIPELINE_RUNS_EXPAND),
                    ("$filter", filter.as_str()),
                    ("$orderby", PIPELINE_RUNS_ORDER),
                ];
                (self.get_json(&url, &query).await?.body, url)
            }
            Some(link) => {
                let root = service_base(self.organization_url(), "analytics");
                if !starts_with_ignore_case(link, &format!("{root}/")) {
                    return Err(AdoError::Decode {
                        url: link.to_string(),
                        detail: format!(
                            "Analytics answered an @odata.nextLink outside {root}; it is not followed (credentials stay on the organization's hosts)"
                        ),
                    });
                }
                (self.get_json(link, &[]).await?.body, link.to_string())
            }
        };
        odata_page(&answer.1, answer.0)
    }

    /// Every page of [`AdoClient::completed_pipeline_runs_page`], in order, one stream item a
    /// page, following `@odata.nextLink`.
    pub fn completed_pipeline_runs<'a>(
        &'a self,
        project_id: &'a ProjectId,
        since: &'a str,
    ) -> impl Stream<Item = Result<Vec<Value>, AdoError>> + 'a {
        paginate(move |link: Option<String>| async move {
            self.completed_pipeline_runs_page(project_id, since, link.as_deref())
                .await
        })
    }
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len()
        && text.is_char_boundary(prefix.len())
        && text[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// An OData answer's `value` rows and `@odata.nextLink`.
fn odata_page(url: &str, body: Value) -> Result<Page, AdoError> {
    let Value::Object(mut map) = body else {
        return Err(AdoError::Decode {
            url: url.to_string(),
            detail: "expected an OData answer object".into(),
        });
    };
    let next = map
        .remove("@odata.nextLink")
        .and_then(|v| v.as_str().map(String::from))
        .filter(|v| !v.is_empty());
    match map.remove("value") {
        Some(Value::Array(items)) => Ok(Page {
            items,
            continuation_token: next,
        }),
        None | Some(Value::Null) => Ok(Page {
            items: Vec::new(),
            continuation_token: next,
        }),
        Some(_) => Err(AdoError::Decode {
            url: url.to_string(),
            detail: "expected an OData answer whose \"value\" is an array".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_page_carries_its_rows_and_next_link() {
        let page = odata_page(
            "u",
            json!({"@odata.context": "c", "value": [{"PipelineRunId": 1}], "@odata.nextLink": "n"}),
        )
        .expect("page");
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.continuation_token.as_deref(), Some("n"));
        let last = odata_page("u", json!({"value": []})).expect("page");
        assert!(last.continuation_token.is_none());
        assert!(odata_page("u", json!([])).is_err());
        assert_eq!(
            completed_since_filter("2026-12-04T21:00:00+00:00"),
            "CompletedDate ge 2026-12-04T21:00:00+00:00"
        );
        assert!(starts_with_ignore_case(
            "https://Analytics.dev.azure.com/acme/x",
            "https://analytics.dev.azure.com/acme/"
        ));
    }
}
