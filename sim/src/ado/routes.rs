//! The Azure DevOps routes (one table), the gate middleware in front of them and the helpers
//! handlers answer with.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use serde_json::{Value, json};

use super::auth::{check_api_version, check_credentials};
use super::error::{AdoError, json_headers, rate_limit_headers};
use super::seed::Urls;
use super::{
    AdoState, analytics, content_routes, core_routes, identities, live, pipeline_runs, pipelines,
    pull_request_writes, releases, runs, security, work,
};
use crate::route_table::route_table;
use crate::traffic::{lock, route_key};

/// Every route of the simulated Azure DevOps: its path template and the handlers answering it
/// (each module's docs say what they answer). A part in brackets is optional (`[/{project}]`:
/// the organization-scoped and the project-scoped route) and `(a|b)` are alternatives (the
/// spellings Azure DevOps accepts); each spelling is a route of its own.
#[rustfmt::skip]
fn routes() -> Vec<(&'static str, MethodRouter<Arc<AdoState>>)> {
    vec![
        ("/{org}/_apis/projects",                                                   get(core_routes::list_projects)),
        ("/{org}/_apis/projects/{project}",                                         get(core_routes::get_project)),
        ("/{org}[/{project}]/_apis/git/repositories",                               get(core_routes::list_repositories)),
        ("/{org}[/{project}]/_apis/git/repositories/{repository}",                  get(core_routes::get_repository)),
        ("/{org}[/{project}]/_apis/git/repositories/{repository}/pull(r|R)equests", get(core_routes::list_repository_pull_requests)),
        ("/{org}[/{project}]/_apis/git/repositories/{repository}/pull(r|R)equests", post(pull_request_writes::create)),
        ("/{org}/{project}/_apis/git/repositories/{repository}/pull(r|R)equests/{pullRequestId}", get(core_routes::get_pull_request)),
        ("/{org}[/{project}]/_apis/git/repositories/{repository}/pull(r|R)equests/{pullRequestId}", patch(pull_request_writes::update)),
        ("/{org}[/{project}]/_apis/git/repositories/{repository}/pull(r|R)equests/{pullRequestId}/reviewers", post(pull_request_writes::add_reviewers)),
        ("/{org}[/{project}]/_apis/git/repositories/{repository}/pull(r|R)equests/{pullRequestId}/threads", get(pull_request_writes::list_threads)),
        ("/{org}[/{project}]/_apis/git/repositories/{repository}/pull(r|R)equests/{pullRequestId}/threads", post(pull_request_writes::create_thread)),
        ("/{org}/{project}/_apis/git/pull(r|R)equests",                             get(core_routes::list_project_pull_requests)),
        ("/{org}[/{project}]/_apis/git/pull(r|R)equests/{pullRequestId}",           get(core_routes::get_pull_request)),
        ("/{org}[/{project}]/_apis/git/repositories/{repository}/items",            get(content_routes::get_items)),
        ("/{org}[/{project}]/_apis/git/repositories/{repository}/itemsbatch",       post(content_routes::items_batch)),
        ("/{org}/{project}/_apis/git/repositories/{repository}/commits/{commitId}", get(content_routes::get_commit)),
        ("/{org}/{project}/_apis/git/repositories/{repository}/commits/{commitId}/changes", get(content_routes::commit_changes)),
        ("/{org}/{project}/_apis/git/repositories/{repository}/diffs/commits",      get(content_routes::diff_commits)),
        ("/{org}/{project}/_apis/git/repositories/{repository}/refs",               get(pipelines::list_refs)),
        ("/{org}[/{project}]/_apis/wiki/wikis",                                     get(content_routes::list_wikis)),
        ("/{org}/{project}/_apis/wiki/wikis/{wikiIdentifier}",                      get(content_routes::get_wiki)),
        ("/{org}/{project}/_apis/wiki/wikis/{wikiIdentifier}/pagesbatch",           post(content_routes::pages_batch)),
        ("/{org}/{project}/_apis/wiki/wikis/{wikiIdentifier}/pages",                get(content_routes::get_page)),
        ("/{org}/{project}/_apis/wiki/wikis/{wikiIdentifier}/pages/{pageId}",       get(content_routes::get_page)),
        ("/{org}/_apis/teams",                                                      get(work::list_teams)),
        ("/{org}/_apis/projects/{project}/teams",                                   get(work::list_teams)),
        ("/{org}/_apis/projects/{project}/teams/{team}/members",                    get(identities::team_members)),
        ("/{org}/_apis/projects/{project}/properties",                              get(identities::project_properties)),
        ("/{org}/{project}/{team}/_apis/work/boards",                               get(work::list_boards)),
        ("/{org}/{project}/{team}/_apis/work/boards/{board}",                       get(work::get_board)),
        ("/{org}/{project}/{team}/_apis/work/teamsettings/teamfieldvalues",         get(identities::team_field_values)),
        ("/{org}/{project}/{team}/_apis/work/teamsettings/iterations",              get(identities::iterations)),
        ("/{org}/{project}/_apis/wit/classification(n|N)odes/{group}",              get(identities::classification_nodes)),
        ("/{org}/{project}/_apis/git/policy/configurations",                        get(work::list_policies)),
        ("/{org}/{project}/_apis/policy/configurations",                            get(work::list_project_policies)),
        ("/{org}/{project}/_apis/wit/wiql",                                         post(work::wiql)),
        ("/{org}[/{project}]/_apis/wit/workitemsbatch",                             post(work::batch)),
        ("/{org}[/{project}]/_apis/wit/workitems",                                  get(work::list_by_ids)),
        ("/{org}[/{project}]/_apis/wit/workitems/{id}",                             get(work::work_item)),
        ("/{org}/{project}/_apis/release/releases",                                 get(releases::list_releases)),
        ("/{org}/{project}/_apis/release/releases/{releaseId}",                     get(work::get_release)),
        ("/{org}/{project}/_apis/release/definitions",                              get(releases::list_definitions)),
        ("/{org}/{project}/_apis/release/definitions/{definitionId}",               get(live::get_definition)),
        ("/{org}/{project}/_apis/release/deployments",                              get(pipelines::list_deployments)),
        ("/{org}/_apis/hooks/subscriptions",                                        get(work::list_subscriptions)),
        ("/{org}/_apis/hooks/subscriptions",                                        post(work::create_subscription)),
        ("/{org}/_apis/hooks/subscriptions/{subscriptionId}",                       put(work::update_subscription)),
        ("/{org}/_apis/hooks/subscriptions/{subscriptionId}",                       delete(work::delete_subscription)),
        ("/{org}/{project}/_apis/pipelines",                                        get(pipelines::list_pipelines)),
        ("/{org}/{project}/_apis/pipelines/{pipelineId}",                           get(live::get_pipeline)),
        ("/{org}/{project}/_apis/pipelines/{pipelineId}/runs",                      get(runs::list_runs)),
        ("/{org}/{project}/_apis/pipelines/{pipelineId}/runs",                      post(pipeline_runs::run_pipeline)),
        ("/{org}/{project}/_apis/pipelines/{pipelineId}/runs/{runId}",              get(runs::get_run)),
        ("/{org}/{project}/_odata/v4.0-preview/PipelineRuns",                       get(analytics::pipeline_runs)),
        ("/{org}/{project}/_apis/build/definitions/{definitionId}",                 get(runs::get_definition)),
        ("/{org}/{project}/_apis/build/builds",                                     get(pipelines::list_builds)),
        ("/{org}/{project}/_apis/build/builds/{buildId}",                           get(runs::get_build)),
        ("/{org}/{project}/_apis/build/builds/{buildId}/timeline",                  get(runs::get_timeline)),
        ("/{org}/{project}/_apis/build/builds/{buildId}/changes",                   get(runs::list_changes)),
        ("/{org}/{project}/_apis/distributedtask/environments",                     get(pipelines::list_environments)),
        ("/{org}/{project}/_apis/distributedtask/environments/{environmentId}/environmentdeploymentrecords", get(runs::list_deployment_records)),
        ("/{org}/{project}/_apis/test/runs",                                        get(runs::list_test_runs)),
        ("/{org}/{project}/_apis/test/runs/{runId}/results",                        get(runs::list_test_results)),
        ("/{org}/{project}/_apis/test/codecoverage",                                get(runs::code_coverage)),
        ("/{org}/{project}/_apis/alert/repositories/{repository}/alerts",           get(security::list_alerts)),
        ("/{org}/{project}/_apis/alert/repositories/{repository}/alerts/{alertId}", get(security::get_alert)),
        ("/{org}/_apis/graph/users",                                                get(identities::graph_users)),
        ("/{org}/_apis/graph/groups",                                               get(identities::graph_groups)),
        ("/{org}/_apis/graph/(m|M)emberships/{descriptor}",                         get(identities::memberships)),
        ("/{org}/_apis/graph/subjectlookup",                                        post(identities::subject_lookup)),
        ("/{org}/_apis/userentitlements",                                           get(identities::entitlements)),
    ]
}

pub(crate) fn router(state: Arc<AdoState>) -> Router {
    route_table(routes())
        .fallback(|| async { AdoError::NoRoute })
        .layer(middleware::from_fn_with_state(Arc::clone(&state), gate))
        .with_state(state)
}

/// Counting, scripted answers, PAT, organization and `api-version`, in that order.
async fn gate(
    State(state): State<Arc<AdoState>>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let key = route_key(request.method(), matched.as_ref());
    if let Ok(axum::extract::Query(params)) =
        axum::extract::Query::<crate::traffic::QueryParams>::try_from_uri(request.uri())
    {
        state.traffic.record_query(&key, params);
    }
    let _answering = state.traffic.enter(&key);
    let scripted = state.traffic.arrive(&key);
    if !state.config.latency.is_zero() {
        // The time a real organization takes to answer (network and server).
        tokio::time::sleep(state.config.latency).await;
    }
    let response = match scripted {
        Some(answer) if answer.passes_through() => {
            let mut response = checked(&state, matched.is_some(), request, next).await;
            if let Some(seconds) = answer.retry_after_secs {
                rate_limit_headers(response.headers_mut(), seconds);
            }
            response
        }
        Some(answer) => {
            let status = answer.status_code();
            let mut response = match (&answer.body, status.as_u16()) {
                (Some(body), _) => (status, json_headers(), body.to_string()).into_response(),
                (None, 429) => AdoError::RateLimited {
                    retry_after_secs: answer.retry_after_secs.unwrap_or(1),
                }
                .into_response(),
                (None, 203) => AdoError::SignInPage.into_response(),
                (None, _) => AdoError::Scripted { status }.into_response(),
            };
            if let Some(seconds) = answer.retry_after_secs {
                rate_limit_headers(response.headers_mut(), seconds);
            }
            response
        }
        None => checked(&state, matched.is_some(), request, next).await,
    };
    state.traffic.touch();
    response
}

async fn checked(state: &AdoState, matched: bool, request: Request, next: Next) -> Response {
    // Every answer past this point carries the budget's headers, as Azure DevOps' do.
    let usage = match super::limit::take(state) {
        Ok(usage) => usage,
        Err(blocked) => return blocked.into_response(),
    };
    super::limit::with_headers(usage, admitted(state, matched, request, next).await)
}

/// Credentials, organization, forbidden projects and `api-version`, then the handler.
async fn admitted(state: &AdoState, matched: bool, request: Request, next: Next) -> Response {
    if let Err(refused) = check_credentials(request.headers(), &state.config) {
        return refused.into_response();
    }
    if !matched {
        return AdoError::NoRoute.into_response();
    }
    let forbidden = {
        let forbidden = lock(&state.forbidden_projects);
        !forbidden.is_empty()
            && request
                .uri()
                .path()
                .split('/')
                .any(|segment| forbidden.contains(segment))
    };
    if forbidden {
        return AdoError::Scripted {
            status: StatusCode::FORBIDDEN,
        }
        .into_response();
    }
    let organization = organization_segment(&request);
    if !organization.eq_ignore_ascii_case(&state.config.organization) {
        return AdoError::OrganizationNotFound { organization }.into_response();
    }
    if let Err(refused) = check_api_version(
        request.method().as_str(),
        request.uri().query(),
        request.headers(),
    ) {
        return refused.into_response();
    }
    next.run(request).await
}

/// The organization a request names: the first segment of its path, as sent.
pub(super) fn organization_segment(request: &Request) -> String {
    request
        .uri()
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The URLs to render answers with: the host the caller used.
pub(super) fn urls(state: &AdoState, headers: &HeaderMap) -> Urls {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(&state.default_host);
    Urls::new(host, &state.config.organization)
}

/// A request body as JSON, or Azure DevOps' 400 for one that is not.
pub(super) fn json_body(body: &[u8]) -> Result<Value, AdoError> {
    serde_json::from_slice(body)
        .map_err(|e| AdoError::bad_argument(format!("The request body is not valid JSON: {e}")))
}

/// The array `key` of a request body, or the 400 `message` when it has none.
pub(super) fn required_array<'a>(
    body: &'a Value,
    key: &str,
    message: &str,
) -> Result<&'a Vec<Value>, AdoError> {
    body.get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| AdoError::bad_argument(message))
}

pub(super) fn ok_json(body: Value) -> Response {
    (StatusCode::OK, json_headers(), body.to_string()).into_response()
}

pub(super) fn list(values: Vec<Value>) -> Response {
    ok_json(json!({"count": values.len(), "value": values}))
}

/// The list answer of the page of `values` from `start`, `size` long, with the
/// `x-ms-continuationtoken` header naming where the next page starts while more remain.
pub(super) fn continued_list(values: Vec<Value>, start: usize, size: usize) -> Response {
    let total = values.len();
    let mut response = list(values.into_iter().skip(start).take(size).collect());
    if start + size < total
        && let Ok(token) = HeaderValue::from_str(&(start + size).to_string())
    {
        response
            .headers_mut()
            .insert("x-ms-continuationtoken", token);
    }
    response
}

/// Where a continuation-token request starts (the token is an offset); `None` without one.
pub(super) fn continuation_token(
    query: &HashMap<String, String>,
) -> Result<Option<usize>, AdoError> {
    query
        .get("continuationToken")
        .map(|token| {
            token.trim().parse::<usize>().map_err(|_| {
                AdoError::bad_argument(format!("The continuation token '{token}' is not valid."))
            })
        })
        .transpose()
}

pub(super) fn parse_count(
    query: &HashMap<String, String>,
    name: &str,
) -> Result<Option<usize>, AdoError> {
    query
        .get(name)
        .map(|text| {
            text.trim().parse::<usize>().map_err(|_| {
                AdoError::bad_argument(format!(
                    "The value '{text}' is not valid for parameter '{name}'."
                ))
            })
        })
        .transpose()
}
