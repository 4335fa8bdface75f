//! The single-object reads only live events need (a build, a pipeline run, a pipeline, a
//! release definition, the deployments of a release environment, an Advanced Security alert)
//! and service-hook subscription calls on any host with an explicit `api-version`. Reads the
//! crawler makes too (timelines, test runs and results) are in [`super::runs`], once.

use serde_json::Value;

use super::{ADVANCED_SECURITY_API_VERSION, AdoClient, AdoError, values};

impl AdoClient {
    /// `GET {org}/{project}/_apis/build/builds/{id}`.
    pub async fn build(&self, project_id: &str, build_id: u64) -> Result<Value, AdoError> {
        let url = self.url(&format!("{project_id}/_apis/build/builds/{build_id}"));
        Ok(self.get_json(&url, &[]).await?.body)
    }

    /// `GET {org}/{project}/_apis/pipelines/{pipeline}/runs/{run}`.
    pub async fn pipeline_run(
        &self,
        project_id: &str,
        pipeline_id: u64,
        run_id: u64,
    ) -> Result<Value, AdoError> {
        let url = self.url(&format!(
            "{project_id}/_apis/pipelines/{pipeline_id}/runs/{run_id}"
        ));
        Ok(self.get_json(&url, &[]).await?.body)
    }

    /// `GET {org}/{project}/_apis/pipelines/{pipeline}`.
    pub async fn pipeline(&self, project_id: &str, pipeline_id: u64) -> Result<Value, AdoError> {
        let url = self.url(&format!("{project_id}/_apis/pipelines/{pipeline_id}"));
        Ok(self.get_json(&url, &[]).await?.body)
    }

    /// `GET {vsrm}/{project}/_apis/release/definitions/{id}` (`$expand` as the selector asks).
    pub async fn release_definition(
        &self,
        project_id: &str,
        definition_id: u64,
        expand: Option<&str>,
    ) -> Result<Value, AdoError> {
        let url = self.service_url(
            "vsrm",
            &format!("{project_id}/_apis/release/definitions/{definition_id}"),
        );
        let query: Vec<(&str, &str)> = expand.map(|e| ("$expand", e)).into_iter().collect();
        Ok(self.get_json(&url, &query).await?.body)
    }

    /// `GET {vsrm}/{project}/_apis/release/deployments?releaseId=&definitionEnvironmentId=`
    /// with every deployment status: the deployments of one release (environment).
    pub async fn release_deployments(
        &self,
        project_id: &str,
        release_id: u64,
        definition_environment_id: Option<u64>,
    ) -> Result<Vec<Value>, AdoError> {
        let url = self.service_url("vsrm", &format!("{project_id}/_apis/release/deployments"));
        let release = release_id.to_string();
        let environment = definition_environment_id.map(|id| id.to_string());
        let mut query = vec![("releaseId", release.as_str()), ("deploymentStatus", "all")];
        if let Some(environment) = &environment {
            query.push(("definitionEnvironmentId", environment.as_str()));
        }
        values(&url, self.get_json(&url, &query).await?.body)
    }

    /// `GET {advsec}/{project}/_apis/alert/repositories/{repository}/alerts/{alert}`.
    pub async fn advanced_security_alert(
        &self,
        project_id: &str,
        repository_id: &str,
        alert_id: u64,
    ) -> Result<Value, AdoError> {
        let url = self.service_url(
            "advsec",
            &format!("{project_id}/_apis/alert/repositories/{repository_id}/alerts/{alert_id}"),
        );
        let query = [("api-version", ADVANCED_SECURITY_API_VERSION)];
        Ok(self.get_json(&url, &query).await?.body)
    }

    /// `GET {host}/_apis/hooks/subscriptions?publisherId=&eventType=` with `api_version`.
    pub async fn hook_subscriptions(
        &self,
        host: &str,
        api_version: &str,
        publisher_id: &str,
        event_type: &str,
    ) -> Result<Vec<Value>, AdoError> {
        let url = format!("{host}/_apis/hooks/subscriptions");
        let query = [
            ("publisherId", publisher_id),
            ("eventType", event_type),
            ("api-version", api_version),
        ];
        values(&url, self.get_json(&url, &query).await?.body)
    }

    /// `POST {host}/_apis/hooks/subscriptions` with `api_version`.
    pub async fn create_hook_subscription(
        &self,
        host: &str,
        api_version: &str,
        body: &Value,
    ) -> Result<Value, AdoError> {
        let url = format!("{host}/_apis/hooks/subscriptions");
        Ok(self
            .post_json(&url, &[("api-version", api_version)], body)
            .await?
            .body)
    }

    /// `PUT {host}/_apis/hooks/subscriptions/{id}` with `api_version` (re-enable, new
    /// credentials).
    pub async fn replace_hook_subscription(
        &self,
        host: &str,
        api_version: &str,
        id: &str,
        body: &Value,
    ) -> Result<Value, AdoError> {
        let url = format!("{host}/_apis/hooks/subscriptions/{id}");
        Ok(self
            .put_json(&url, &[("api-version", api_version)], body)
            .await?
            .body)
    }
}
