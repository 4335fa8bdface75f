//! Client calls for pipeline runs, build details (definition, timeline, changes), commits,
//! environment deployment records, test runs, test results, code coverage and Advanced
//! Security alerts. Items come back exactly as Azure DevOps returns them.

use serde_json::Value;

use super::{
    AdoClient, AdoError, BuildId, CommitId, EnvironmentId, Page, PipelineId, ProjectId,
    RepositoryId, TestRunId, reads, values,
};

/// `api-version` of the Advanced Security alerts API (preview only).
pub const ADVANCED_SECURITY_API_VERSION: &str = "7.2-preview.1";

impl AdoClient {
    reads! {
        /// `GET {org}/{project}/_apis/build/definitions/{id}`.
        build_definition(project_id: &ProjectId, definition_id: &PipelineId) -> Value
            = "{project_id}/_apis/build/definitions/{definition_id}";
        /// `GET {org}/{project}/_apis/pipelines/{id}/runs`: every run the API keeps (it does not
        /// page; at most the newest 10,000).
        pipeline_runs(project_id: &ProjectId, pipeline_id: &PipelineId) -> Vec<Value>
            = "{project_id}/_apis/pipelines/{pipeline_id}/runs";
        /// `GET {org}/{project}/_apis/git/repositories/{repository}/commits/{id}`.
        commit(project_id: &ProjectId, repository_id: &RepositoryId, commit_id: &CommitId) -> Value
            = "{project_id}/_apis/git/repositories/{repository_id}/commits/{commit_id}";
    }

    /// The records of `GET {org}/{project}/_apis/build/builds/{id}/timeline` (none for a
    /// build that has no timeline yet).
    pub async fn build_timeline_records(
        &self,
        project_id: &ProjectId,
        build_id: &BuildId,
    ) -> Result<Vec<Value>, AdoError> {
        let url = self.url(&format!(
            "{project_id}/_apis/build/builds/{build_id}/timeline"
        ));
        match self.get_json(&url, &[]).await?.body {
            Value::Null => Ok(Vec::new()),
            Value::Object(mut map) => match map.remove("records") {
                Some(Value::Array(records)) => Ok(records),
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(_) => Err(AdoError::Decode {
                    url,
                    detail: "expected a timeline whose \"records\" is an array".into(),
                }),
            },
            _ => Err(AdoError::Decode {
                url,
                detail: "expected a timeline object".into(),
            }),
        }
    }

    /// One page of `GET {org}/{project}/_apis/distributedtask/environments/{id}/environmentdeploymentrecords`
    /// (this API names its page size `top`, without `$`).
    pub async fn deployment_records_page(
        &self,
        project_id: &ProjectId,
        environment_id: &EnvironmentId,
        top: usize,
        continuation_token: Option<&str>,
    ) -> Result<Page, AdoError> {
        let url = self.url(&format!(
            "{project_id}/_apis/distributedtask/environments/{environment_id}/environmentdeploymentrecords"
        ));
        let top = top.to_string();
        self.get_page(&url, vec![("top", top.as_str())], continuation_token)
            .await
    }

    /// One `$top`/`$skip` page of `GET {org}/{project}/_apis/test/runs?includeRunDetails=true`,
    /// only the runs of build `build_id` when given (`buildUri=vstfs:///Build/Build/{id}`).
    pub async fn test_runs_page(
        &self,
        project_id: &ProjectId,
        build_id: Option<&BuildId>,
        updated: Option<(&str, &str)>,
        top: usize,
        skip: usize,
    ) -> Result<Vec<Value>, AdoError> {
        let url = self.url(&format!("{project_id}/_apis/test/runs"));
        let (top, skip) = (top.to_string(), skip.to_string());
        let build_uri = build_id.map(|id| format!("vstfs:///Build/Build/{id}"));
        let mut query = vec![
            ("includeRunDetails", "true"),
            ("$top", top.as_str()),
            ("$skip", skip.as_str()),
        ];
        if let Some(build_uri) = &build_uri {
            query.push(("buildUri", build_uri.as_str()));
        }
        if let Some((min, max)) = updated {
            query.push(("minLastUpdatedDate", min));
            query.push(("maxLastUpdatedDate", max));
        }
        values(&url, self.get_json(&url, &query).await?.body)
    }

    /// One `$top`/`$skip` page of `GET {org}/{project}/_apis/test/runs/{id}/results`.
    pub async fn test_results_page(
        &self,
        project_id: &ProjectId,
        run_id: &TestRunId,
        top: usize,
        skip: usize,
    ) -> Result<Vec<Value>, AdoError> {
        let url = self.url(&format!("{project_id}/_apis/test/runs/{run_id}/results"));
        self.offset_page(&url, &[], top, skip).await
    }

    /// `GET {org}/{project}/_apis/test/codecoverage?buildId=[&flags=]`, the answer as a whole.
    pub async fn build_code_coverage(
        &self,
        project_id: &ProjectId,
        build_id: &BuildId,
        flags: Option<u64>,
    ) -> Result<Value, AdoError> {
        let url = self.url(&format!("{project_id}/_apis/test/codecoverage"));
        let flags = flags.map(|f| f.to_string());
        let mut query = vec![("buildId", build_id.as_str())];
        if let Some(flags) = &flags {
            query.push(("flags", flags.as_str()));
        }
        Ok(self.get_json(&url, &query).await?.body)
    }

    /// One page of `GET {advsec}/{project}/_apis/alert/repositories/{repository}/alerts`
    /// with `criteria` (`criteria.*` pairs); `top` and the continuation token as the API
    /// names them.
    pub async fn security_alerts_page(
        &self,
        project_id: &ProjectId,
        repository_id: &RepositoryId,
        criteria: &[(&str, &str)],
        top: usize,
        continuation_token: Option<&str>,
    ) -> Result<Page, AdoError> {
        let url = self.service_url(
            "advsec",
            &format!("{project_id}/_apis/alert/repositories/{repository_id}/alerts"),
        );
        let top = top.to_string();
        let mut query = criteria.to_vec();
        query.push(("top", top.as_str()));
        query.push(("api-version", ADVANCED_SECURITY_API_VERSION));
        self.get_page(&url, query, continuation_token).await
    }
}
