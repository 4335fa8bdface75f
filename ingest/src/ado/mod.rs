//! Azure DevOps: the REST client and one function per resource adoport reads.
//!
//! Every function returns items exactly as Azure DevOps returns them (the shape the user's jq
//! mapping expects); enrichment (`__project`, …) is the crawler's job.

pub mod analytics;
pub mod auth;
mod budget;
mod client;
pub mod directory;
mod error;
mod git_content;
pub mod ids;
mod live_reads;
pub mod organization;
mod paging;
mod pull_request_writes;
mod runs;

use futures_util::{Stream, TryStreamExt};
use serde_json::Value;
use serde_json::value::RawValue;

pub use auth::{AdoAuth, TokenProvider};
pub use budget::{Lane, LaneLimits};
pub use client::{API_VERSION, AdoClient, ClientOptions, JsonResponse, RequestStats, service_base};
pub use error::{AdoError, CONTENT_MISSING, ErrorClass};
pub use git_content::{
    GitVersion, LIST_FIRST_FROM, Presence, Recursion, WikiPageRef, none_if_missing,
};
pub use ids::{
    BoardId, BuildId, CommitId, EnvironmentId, OrganizationName, PipelineId, ProjectId,
    ReleaseDefinitionId, ReleaseId, RepositoryId, SubscriptionId, TeamId, TestRunId, WikiId,
    repository_ids,
};
pub use live_reads::{Current, Gone, HookHost};
pub use paging::{Page, paginate};
pub use pull_request_writes::encode_segment;
pub use runs::ADVANCED_SECURITY_API_VERSION;

/// Projects per page (the API allows more than the Python integration's 50).
pub const PROJECTS_PAGE_SIZE: usize = 100;
/// Policy configurations per page of a project's listing (the most the simulator serves; Azure
/// DevOps documents no cap).
pub const POLICIES_PAGE_SIZE: usize = 1000;
/// Most ids `workitemsbatch` takes in one call.
pub const WORK_ITEMS_BATCH: usize = 200;
/// `api-version` of the service-hook and WIQL endpoints that are still in preview.
pub const HOOKS_API_VERSION: &str = "7.1-preview.1";

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

/// What a plain read's answer becomes: the body as it is, or its `value` array.
trait Answer: Sized {
    fn from_body(url: &str, body: Value) -> Result<Self, AdoError>;
}

impl Answer for Value {
    fn from_body(_url: &str, body: Value) -> Result<Self, AdoError> {
        Ok(body)
    }
}

impl Answer for Vec<Value> {
    fn from_body(url: &str, body: Value) -> Result<Self, AdoError> {
        values(url, body)
    }
}

/// Plain reads, one row each: `name(ids) -> Value` (the answer) or `-> Vec<Value>` (its `value`
/// array) `= "path"`, read with `GET {org}/{path}` and no query (see [`AdoClient::read`]); the
/// path names the ids in braces. A macro because a function cannot declare methods.
macro_rules! reads {
    ($($(#[$doc:meta])* $name:ident($($id:ident: $ty:ty),*) -> $answer:ty = $path:literal;)+) => {$(
        $(#[$doc])*
        pub async fn $name(&self, $($id: $ty),*) -> Result<$answer, AdoError> {
            self.read(&format!($path)).await
        }
    )+};
}
use reads;

impl AdoClient {
    /// `GET {org}/{path}` without a query, as `T`: the body or its `value` array.
    async fn read<T: Answer>(&self, path: &str) -> Result<T, AdoError> {
        let url = self.url(path);
        T::from_body(&url, self.get_json(&url, &[]).await?.body)
    }

    /// One `$top`/`$skip` page of `GET url` with `query` (then `$top`, `$skip`): its `value`
    /// array.
    async fn offset_page(
        &self,
        url: &str,
        query: &[(&str, &str)],
        top: usize,
        skip: usize,
    ) -> Result<Vec<Value>, AdoError> {
        let (top, skip) = (top.to_string(), skip.to_string());
        let mut query = query.to_vec();
        query.push(("$top", top.as_str()));
        query.push(("$skip", skip.as_str()));
        values(url, self.get_json(url, &query).await?.body)
    }

    /// One page of `GET {org}/_apis/projects` (continuation token paging), with each
    /// project's `capabilities` (source control, process template), as the Python integration
    /// lists them, so that `__project` carries them too.
    pub async fn projects_page(&self, continuation_token: Option<&str>) -> Result<Page, AdoError> {
        let url = self.url("_apis/projects");
        let top = PROJECTS_PAGE_SIZE.to_string();
        let query = vec![("$top", top.as_str()), ("includeCapabilities", "true")];
        self.get_page(&url, query, continuation_token).await
    }

    /// Every project of the organization, all pages of [`AdoClient::projects_page`], in order.
    pub async fn projects(&self) -> Result<Vec<Value>, AdoError> {
        paginate(|token: Option<String>| async move { self.projects_page(token.as_deref()).await })
            .try_concat()
            .await
    }

    /// `GET {org}/_apis/projects/{id}`: the full project, with `defaultTeam` and capabilities.
    pub async fn project(&self, project_id: &ProjectId) -> Result<Value, AdoError> {
        let url = self.url(&format!("_apis/projects/{project_id}"));
        let query = [("includeCapabilities", "true")];
        Ok(self.get_json(&url, &query).await?.body)
    }

    /// `GET {org}/{project}/_apis/git/repositories` (the API does not page this list), each
    /// repository as its JSON text: the crawl keeps a project's listing so while its units
    /// work through it, and parses each repository as it uses it.
    pub async fn repositories(
        &self,
        project_id: &ProjectId,
    ) -> Result<Vec<Box<RawValue>>, AdoError> {
        let url = self.url(&format!("{project_id}/_apis/git/repositories"));
        Ok(self.get_raw_page(&url, Vec::new(), None).await?.items)
    }

    reads! {
        /// `GET {org}/_apis/git/repositories/{id}`.
        repository(repository_id: &RepositoryId) -> Value
            = "_apis/git/repositories/{repository_id}";
        /// `GET {org}/_apis/git/pullrequests/{id}`.
        pull_request(pull_request_id: u64) -> Value
            = "_apis/git/pullrequests/{pull_request_id}";
        /// `GET {org}/{project}/{team}/_apis/work/boards`: board references of a team.
        boards(project_id: &ProjectId, team_id: &TeamId) -> Vec<Value>
            = "{project_id}/{team_id}/_apis/work/boards";
        /// `GET {org}/{project}/{team}/_apis/work/boards/{board}`: the board with its columns.
        board(project_id: &ProjectId, team_id: &TeamId, board_id: &BoardId) -> Value
            = "{project_id}/{team_id}/_apis/work/boards/{board_id}";
    }

    /// One `$top`/`$skip` page of `GET {org}/_apis/teams` (every team of the organization).
    pub async fn teams_page(&self, top: usize, skip: usize) -> Result<Vec<Value>, AdoError> {
        let url = self.url("_apis/teams");
        self.offset_page(&url, &[], top, skip).await
    }

    /// One `$top`/`$skip` page of `GET {org}/_apis/projects/{project}/teams`.
    pub async fn project_teams_page(
        &self,
        project_id: &ProjectId,
        top: usize,
        skip: usize,
    ) -> Result<Vec<Value>, AdoError> {
        let url = self.url(&format!("_apis/projects/{project_id}/teams"));
        self.offset_page(&url, &[], top, skip).await
    }

    /// `GET {org}/{project}/_apis/policy/configurations`: every policy configuration of the
    /// project, whatever its scope (project, repository or branch), [`POLICIES_PAGE_SIZE`] a
    /// page with continuation tokens. One listing serves all the project's repositories
    /// (`repository-policy` picks the ones that apply to each repository's default branch).
    /// Each policy as its JSON text: a project's policies parsed take about five times their
    /// text, and the crawl reads many projects' at once.
    pub async fn project_policies(
        &self,
        project_id: &ProjectId,
    ) -> Result<Vec<Box<RawValue>>, AdoError> {
        let url = self.url(&format!("{project_id}/_apis/policy/configurations"));
        let (url, top) = (url.as_str(), POLICIES_PAGE_SIZE.to_string());
        let top = top.as_str();
        paginate(|token: Option<String>| async move {
            self.get_raw_page(url, vec![("$top", top)], token.as_deref())
                .await
        })
        .try_concat()
        .await
    }

    /// The text of `path` on `branch` (e.g. `refs/heads/main`) of a repository; `None` when
    /// Azure DevOps says the file (or the branch) does not exist ([`CONTENT_MISSING`]).
    pub async fn file_text(
        &self,
        project_id: &ProjectId,
        repository_id: &RepositoryId,
        path: &str,
        branch: &str,
    ) -> Result<Option<String>, AdoError> {
        let url = self.url(&format!(
            "{project_id}/_apis/git/repositories/{repository_id}/items"
        ));
        let branch = branch.strip_prefix("refs/heads/").unwrap_or(branch);
        let query = [
            ("path", path),
            ("includeContent", "true"),
            ("$format", "json"),
            ("versionDescriptor.version", branch),
            ("versionDescriptor.versionType", "branch"),
        ];
        match self.get_json(&url, &query).await {
            Ok(response) => Ok(Some(
                response
                    .body
                    .get("content")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            )),
            Err(e) if e.says_missing(CONTENT_MISSING) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One `$top`/`$skip` page of a project's pull requests (of every repository, newest
    /// first) matching `criteria` (`searchCriteria.*` pairs):
    /// `GET {org}/{project}/_apis/git/pullrequests`.
    pub async fn project_pull_requests_page(
        &self,
        project_id: &ProjectId,
        criteria: &[(&str, &str)],
        top: usize,
        skip: usize,
    ) -> Result<Vec<Value>, AdoError> {
        let url = self.url(&format!("{project_id}/_apis/git/pullrequests"));
        self.offset_page(&url, criteria, top, skip).await
    }

    /// `POST {org}/{project}/_apis/wit/wiql`: the ids a query selects, at most `top`.
    pub async fn wiql_ids(
        &self,
        project_id: &ProjectId,
        query: &str,
        top: usize,
        time_precision: bool,
    ) -> Result<Vec<u64>, AdoError> {
        let url = self.url(&format!("{project_id}/_apis/wit/wiql"));
        let top = top.to_string();
        let body = serde_json::json!({ "query": query });
        let mut params = vec![("$top", top.as_str())];
        if time_precision {
            params.push(("timePrecision", "true"));
        }
        let response = self.post_json(&url, &params, &body).await?;
        match response.body.get("workItems").and_then(Value::as_array) {
            Some(items) => Ok(items
                .iter()
                .filter_map(|i| i.get("id").and_then(Value::as_u64))
                .collect()),
            None => Err(AdoError::Decode {
                url,
                detail: "expected a WIQL result with a \"workItems\" array".into(),
            }),
        }
    }

    /// `POST {org}/{project}/_apis/wit/workitemsbatch` for at most [`WORK_ITEMS_BATCH`] ids;
    /// items deleted in between are omitted.
    pub async fn work_items_batch(
        &self,
        project_id: &ProjectId,
        ids: &[u64],
        expand: &str,
    ) -> Result<Vec<Value>, AdoError> {
        let url = self.url(&format!("{project_id}/_apis/wit/workitemsbatch"));
        let mut body = serde_json::json!({ "ids": ids, "errorPolicy": "Omit" });
        if !expand.eq_ignore_ascii_case("none")
            && let Value::Object(map) = &mut body
        {
            map.insert("$expand".into(), Value::String(expand.to_string()));
        }
        let response = self.post_json(&url, &[], &body).await?;
        Ok(values(&url, response.body)?
            .into_iter()
            .filter(|v| !v.is_null())
            .collect())
    }

    /// One continuation-token page of `GET {vsrm}/{project}/_apis/release/releases` with the
    /// filters `params` (`statusFilter`, `tagFilter`, `$expand`, …).
    pub async fn releases_page(
        &self,
        project_id: &ProjectId,
        params: &[(&str, &str)],
        top: usize,
        continuation_token: Option<&str>,
    ) -> Result<Page, AdoError> {
        let url = self.service_url("vsrm", &format!("{project_id}/_apis/release/releases"));
        let top = top.to_string();
        let mut query = params.to_vec();
        query.push(("$top", top.as_str()));
        self.get_page(&url, query, continuation_token).await
    }

    /// `GET {vsrm}/{project}/_apis/release/releases/{id}`.
    pub async fn release(&self, project_id: &ProjectId, id: &ReleaseId) -> Result<Value, AdoError> {
        let url = self.service_url("vsrm", &format!("{project_id}/_apis/release/releases/{id}"));
        Ok(self.get_json(&url, &[]).await?.body)
    }

    /// One `$top`/continuation-token page of the project-scoped list `{host}/{project}/{path}`,
    /// where `host` is the organization (`service` `None`) or a service host such as `vsrm`.
    pub async fn project_list_page(
        &self,
        service: Option<&str>,
        project_id: &ProjectId,
        path: &str,
        extra: &[(&str, &str)],
        top: usize,
        continuation_token: Option<&str>,
    ) -> Result<Page, AdoError> {
        let path = format!("{project_id}/{}", path.trim_start_matches('/'));
        let url = match service {
            Some(service) => self.service_url(service, &path),
            None => self.url(&path),
        };
        let top = top.to_string();
        let mut query = extra.to_vec();
        query.push(("$top", top.as_str()));
        self.get_page(&url, query, continuation_token).await
    }

    /// Every page of [`AdoClient::project_list_page`], in order, one stream item a page.
    pub fn project_list<'a>(
        &'a self,
        service: Option<&'a str>,
        project_id: &'a ProjectId,
        path: &'a str,
        extra: &'a [(&'a str, &'a str)],
        top: usize,
    ) -> impl Stream<Item = Result<Vec<Value>, AdoError>> + 'a {
        paginate(move |token: Option<String>| async move {
            self.project_list_page(service, project_id, path, extra, top, token.as_deref())
                .await
        })
    }
}
