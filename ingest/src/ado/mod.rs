//! Azure DevOps: the REST client and one function per resource adoport reads.
//!
//! Every function returns items exactly as Azure DevOps returns them (the shape the user's jq
//! mapping expects); enrichment (`__project`, …) is the crawler's job.

mod client;
mod error;

use serde_json::Value;

pub use client::{API_VERSION, AdoClient, JsonResponse, RequestStats};
pub use error::AdoError;

/// Projects per page (the API allows more than the Python integration's 50).
pub const PROJECTS_PAGE_SIZE: usize = 100;

/// One page of a continuation-token listing.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Value>,
    pub continuation_token: Option<String>,
}

fn values(url: &str, body: Value) -> Result<Vec<Value>, AdoError> {
    match body {
        Value::Object(mut map) => match map.remove("value") {
            Some(Value::Array(items)) => Ok(items),
            _ => Err(AdoError::Decode {
                url: url.to_string(),
                detail: "expected an object with a \"value\" array".into(),
            }),
        },
        _ => Err(AdoError::Decode {
            url: url.to_string(),
            detail: "expected a JSON object".into(),
        }),
    }
}

impl AdoClient {
    /// One page of `GET {org}/_apis/projects` (continuation token paging).
    pub async fn projects_page(&self, continuation_token: Option<&str>) -> Result<Page, AdoError> {
        let url = self.url("_apis/projects");
        let top = PROJECTS_PAGE_SIZE.to_string();
        let mut query = vec![("$top", top.as_str())];
        if let Some(token) = continuation_token {
            query.push(("continuationToken", token));
        }
        let response = self.get_json(&url, &query).await?;
        Ok(Page {
            items: values(&url, response.body)?,
            continuation_token: response.continuation_token,
        })
    }

    /// `GET {org}/_apis/projects/{id}`: the full project, with `defaultTeam` and capabilities.
    pub async fn project(&self, project_id: &str) -> Result<Value, AdoError> {
        let url = self.url(&format!("_apis/projects/{project_id}"));
        let query = [("includeCapabilities", "true")];
        Ok(self.get_json(&url, &query).await?.body)
    }

    /// `GET {org}/{project}/_apis/git/repositories` (the API does not page this list).
    pub async fn repositories(&self, project_id: &str) -> Result<Vec<Value>, AdoError> {
        let url = self.url(&format!("{project_id}/_apis/git/repositories"));
        let response = self.get_json(&url, &[]).await?;
        values(&url, response.body)
    }

    /// `GET {org}/_apis/git/repositories/{id}`.
    pub async fn repository(&self, repository_id: &str) -> Result<Value, AdoError> {
        let url = self.url(&format!("_apis/git/repositories/{repository_id}"));
        Ok(self.get_json(&url, &[]).await?.body)
    }

    /// `GET {org}/_apis/git/pullrequests/{id}`.
    pub async fn pull_request(&self, pull_request_id: u64) -> Result<Value, AdoError> {
        let url = self.url(&format!("_apis/git/pullrequests/{pull_request_id}"));
        Ok(self.get_json(&url, &[]).await?.body)
    }
}
