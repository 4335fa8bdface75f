//! What Azure DevOps holds *now* for an object a live event names, and the single-object reads
//! only live events need (a build, a pipeline run, a pipeline, a release definition, the
//! deployments of a release environment, an Advanced Security alert), plus service-hook
//! subscription calls on any host with an explicit `api-version`. Reads the crawler makes too
//! (timelines, test runs and results) are in [`super::runs`], once.
//!
//! [`Current`] is the one place where "the event says X is gone" becomes "read X": a read
//! answers [`Current::Found`] with the object's state, or [`Current::Gone`] when Azure DevOps
//! answered 404 for the object itself ([`ErrorClass::Gone`]); any other failure stays an
//! [`AdoError`] for the caller to classify (transient → Azure DevOps retries; permanent →
//! acknowledged with the reason). A [`Gone`] can only be made here, and a live delete cannot be
//! published without one, so no event deletes on its own word.

use serde_json::Value;

use super::error::ErrorClass;
use super::{
    ADVANCED_SECURITY_API_VERSION, AdoClient, AdoError, BuildId, HOOKS_API_VERSION, PipelineId,
    ProjectId, ReleaseDefinitionId, ReleaseId, RepositoryId, SubscriptionId, reads, service_base,
    values,
};

/// Proof that Azure DevOps no longer has an object: the answer that said so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gone {
    evidence: String,
}

impl Gone {
    /// The object is not in a listing Azure DevOps just returned that would hold it (a ref not
    /// among the repository's refs, a deployment not among its release's, a file not in the
    /// tree of the branch's head). `listing` says which, for the log.
    pub(crate) fn absent_from(listing: impl Into<String>) -> Gone {
        Gone {
            evidence: format!("not in {}", listing.into()),
        }
    }

    /// What Azure DevOps answered, for the log.
    pub fn evidence(&self) -> &str {
        &self.evidence
    }
}

/// What Azure DevOps holds for an object now.
#[derive(Debug, Clone, PartialEq)]
pub enum Current<T> {
    /// Its current state.
    Found(T),
    /// It does not exist (any more).
    Gone(Gone),
}

impl<T> Current<T> {
    /// Reads `result` of a request for the object: a 404 for the object itself is
    /// [`Current::Gone`]; every other failure is returned as it is.
    pub fn of(result: Result<T, AdoError>) -> Result<Current<T>, AdoError> {
        match result {
            Ok(value) => Ok(Current::Found(value)),
            Err(error) if error.class() == ErrorClass::Gone => Ok(Current::Gone(Gone {
                evidence: error.to_string(),
            })),
            Err(error) => Err(error),
        }
    }

    /// `Current::Found(f(value))`, or still gone.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Current<U> {
        match self {
            Current::Found(value) => Current::Found(f(value)),
            Current::Gone(gone) => Current::Gone(gone),
        }
    }

    /// The object, if found.
    pub fn found(self) -> Option<T> {
        match self {
            Current::Found(value) => Some(value),
            Current::Gone(_) => None,
        }
    }
}

impl AdoClient {
    /// `GET {org}/_apis/wit/workitems/{id}?$expand=All`: by id alone (ids are unique in the
    /// organization), so that an event naming another project cannot hide the work item.
    pub async fn work_item(&self, id: u64) -> Result<Value, AdoError> {
        let url = self.url(&format!("_apis/wit/workitems/{id}"));
        Ok(self.get_json(&url, &[("$expand", "All")]).await?.body)
    }

    /// The ref `ref_name` (`refs/heads/…`) of a repository now: found in its refs, or gone
    /// (not among them, or the repository is gone).
    pub async fn branch_now(
        &self,
        project_id: &ProjectId,
        repository_id: &RepositoryId,
        ref_name: &str,
    ) -> Result<Current<Value>, AdoError> {
        Ok(
            match Current::of(self.branch_ref(project_id, repository_id, ref_name).await)? {
                Current::Found(Some(reference)) => Current::Found(reference),
                Current::Found(None) => Current::Gone(Gone::absent_from(format!(
                    "the refs of repository {repository_id}"
                ))),
                Current::Gone(gone) => Current::Gone(gone),
            },
        )
    }

    reads! {
        /// `GET {org}/{project}/_apis/build/builds/{id}`.
        build(project_id: &ProjectId, build_id: &BuildId) -> Value
            = "{project_id}/_apis/build/builds/{build_id}";
        /// `GET {org}/{project}/_apis/pipelines/{pipeline}/runs/{run}`.
        pipeline_run(project_id: &ProjectId, pipeline_id: &PipelineId, run_id: &BuildId) -> Value
            = "{project_id}/_apis/pipelines/{pipeline_id}/runs/{run_id}";
        /// `GET {org}/{project}/_apis/pipelines/{pipeline}`.
        pipeline(project_id: &ProjectId, pipeline_id: &PipelineId) -> Value
            = "{project_id}/_apis/pipelines/{pipeline_id}";
    }

    /// `POST {org}/{project}/_apis/pipelines/{pipeline}/runs` with `body`, sent exactly once
    /// (see [`AdoClient::post_json_once`]): the run it started.
    pub async fn start_pipeline_run(
        &self,
        project_id: &ProjectId,
        pipeline_id: &PipelineId,
        body: &Value,
    ) -> Result<Value, AdoError> {
        let url = self.url(&format!("{project_id}/_apis/pipelines/{pipeline_id}/runs"));
        Ok(self.post_json_once(&url, &[], body).await?.body)
    }

    /// `GET {vsrm}/{project}/_apis/release/definitions/{id}` (`$expand` as the selector asks).
    pub async fn release_definition(
        &self,
        project_id: &ProjectId,
        definition_id: &ReleaseDefinitionId,
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
        project_id: &ProjectId,
        release_id: &ReleaseId,
        definition_environment_id: Option<u64>,
    ) -> Result<Vec<Value>, AdoError> {
        let url = self.service_url("vsrm", &format!("{project_id}/_apis/release/deployments"));
        let environment = definition_environment_id.map(|id| id.to_string());
        let mut query = vec![
            ("releaseId", release_id.as_str()),
            ("deploymentStatus", "all"),
        ];
        if let Some(environment) = &environment {
            query.push(("definitionEnvironmentId", environment.as_str()));
        }
        values(&url, self.get_json(&url, &query).await?.body)
    }

    /// `GET {advsec}/{project}/_apis/alert/repositories/{repository}/alerts/{alert}`.
    pub async fn advanced_security_alert(
        &self,
        project_id: &ProjectId,
        repository_id: &RepositoryId,
        alert_id: u64,
    ) -> Result<Value, AdoError> {
        let url = self.service_url(
            "advsec",
            &format!("{project_id}/_apis/alert/repositories/{repository_id}/alerts/{alert_id}"),
        );
        let query = [("api-version", ADVANCED_SECURITY_API_VERSION)];
        Ok(self.get_json(&url, &query).await?.body)
    }

    /// `GET {host}/_apis/hooks/subscriptions?publisherId=&eventType=` on `host`.
    pub async fn hook_subscriptions(
        &self,
        host: &HookHost,
        publisher_id: &str,
        event_type: &str,
    ) -> Result<Vec<Value>, AdoError> {
        let url = host.subscriptions_url();
        let query = [
            ("publisherId", publisher_id),
            ("eventType", event_type),
            ("api-version", host.api_version),
        ];
        values(&url, self.get_json(&url, &query).await?.body)
    }

    /// `POST {host}/_apis/hooks/subscriptions` on `host`.
    pub async fn create_hook_subscription(
        &self,
        host: &HookHost,
        body: &Value,
    ) -> Result<Value, AdoError> {
        let url = host.subscriptions_url();
        let query = [("api-version", host.api_version)];
        Ok(self.post_json(&url, &query, body).await?.body)
    }

    /// `PUT {host}/_apis/hooks/subscriptions/{id}` on `host` (re-enable, new credentials).
    pub async fn replace_hook_subscription(
        &self,
        host: &HookHost,
        id: &SubscriptionId,
        body: &Value,
    ) -> Result<Value, AdoError> {
        let url = format!("{}/{id}", host.subscriptions_url());
        let query = [("api-version", host.api_version)];
        Ok(self.put_json(&url, &query, body).await?.body)
    }
}

/// Where a publisher's service-hook subscriptions live: the host, and the `api-version` it
/// takes there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookHost {
    url: String,
    api_version: &'static str,
}

impl HookHost {
    /// The host of `publisher`'s subscriptions for the organization at `organization_url`.
    pub fn of(organization_url: &str, publisher: &str) -> Self {
        let (url, api_version) = match publisher {
            "rm" => (service_base(organization_url, "vsrm"), HOOKS_API_VERSION),
            "advsec" => (
                service_base(organization_url, "advsec"),
                ADVANCED_SECURITY_API_VERSION,
            ),
            _ => (
                organization_url.trim_end_matches('/').to_string(),
                HOOKS_API_VERSION,
            ),
        };
        Self { url, api_version }
    }

    /// The host, e.g. `https://vsrm.dev.azure.com/acme`.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn subscriptions_url(&self) -> String {
        format!("{}/_apis/hooks/subscriptions", self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishers_live_on_their_own_hosts() {
        let host = |org: &str, publisher: &str| {
            let host = HookHost::of(org, publisher);
            (host.url, host.api_version)
        };
        let org = "https://dev.azure.com/acme";
        assert_eq!(host(org, "tfs"), (org.to_string(), HOOKS_API_VERSION));
        assert_eq!(host(org, "pipelines").0, org);
        assert_eq!(
            host(org, "rm"),
            (
                "https://vsrm.dev.azure.com/acme".to_string(),
                HOOKS_API_VERSION
            )
        );
        assert_eq!(
            host(org, "advsec"),
            (
                "https://advsec.dev.azure.com/acme".to_string(),
                "7.2-preview.1"
            )
        );
        assert_eq!(
            host("https://acme.visualstudio.com", "rm").0,
            "https://acme.vsrm.visualstudio.com"
        );
    }
}
