//! Pull requests changed through the Git API, as the pull-request actions change them: create,
//! update (title, description, draft, status — complete or abandon — and completion options),
//! reviewers added, and comment threads. The listings and reads of `core_routes` render the
//! same pull requests, so every change shows there at once.
//!
//! | key | answer |
//! |---|---|
//! | `POST /{org}[/{project}]/_apis/git/repositories/{repository}/pullrequests` | `{sourceRefName, targetRefName, title, description?, isDraft?, reviewers?: [{id}]}` → 201 the pull request (`active`, created by the first user); 404 `TF401019` unknown repository; 400 `InvalidArgumentValueException` for a missing field, the same source and target or an unknown reviewer; 400 `TF401398` for a branch the repository does not have; 409 `TF401179` when an active pull request joins the same branches |
//! | `PATCH /{org}[/{project}]/_apis/git/repositories/{repository}/pullrequests/{pullRequestId}` | `{title?, description?, isDraft?, status?, lastMergeSourceCommit?, completionOptions?}` → 200 the pull request; 404 `TF401180` unknown (or in another repository); 409 `TF401181` for a change to a pull request that is not active (completing or abandoning one that is closed, editing a closed one; an abandoned one may be reactivated); completing needs `lastMergeSourceCommit` (400 without, 409 when it is not the source branch's commit) and is refused for a draft (409); `completionOptions.deleteSourceBranch` deletes the source branch |
//! | `POST …/pullrequests/{pullRequestId}/reviewers` | `[{id}]` → 200 `{count, value}` the reviewers added; 400 for an unknown identity; 409 `TF401181` when the pull request is not active |
//! | `GET`/`POST …/pullrequests/{pullRequestId}/threads` | the threads / `{comments: [{content, parentCommentId?, commentType?}], status?}` → 200 the thread (`status` a name or its number, 1 = `active` … 6 = `pending`); 400 without a comment's content |
//!
//! The messages and exception names are Azure DevOps' where known (`TF401179`, `TF401180`,
//! `TF401181`, `TF401398`); the draft and stale-commit refusals are modelled on them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Value, json};

use super::error::{AdoError, json_headers};
use super::request::{AdoRequest, JsonBody};
use super::routes::{list, ok_json};
use super::seed::{Organization, PullRequest, PullRequestThread, Urls, ado_time};
use super::work::scoped_project;

/// The user every change through the API is made by (the PAT's owner).
const CALLER: usize = 0;

/// The names of thread statuses, by their number in `CommentThreadStatus`.
const THREAD_STATUSES: [&str; 7] = [
    "unknown", "active", "fixed", "wontFix", "closed", "byDesign", "pending",
];

fn invalid_argument(parameter: &str) -> AdoError {
    AdoError::service(
        StatusCode::BAD_REQUEST,
        format!("Invalid argument value.\r\nParameter name: {parameter}"),
        "Microsoft.TeamFoundation.SourceControl.WebServer.InvalidArgumentValueException, Microsoft.TeamFoundation.SourceControl.WebServer",
    )
}

fn not_editable() -> AdoError {
    AdoError::service(
        StatusCode::CONFLICT,
        "TF401181: The pull request cannot be edited due to its state.",
        "Microsoft.TeamFoundation.Git.Server.GitPullRequestNotEditableException, Microsoft.TeamFoundation.Git.Server",
    )
}

fn conflict(message: String, type_name: &str) -> AdoError {
    AdoError::service(StatusCode::CONFLICT, message, type_name)
}

/// `refs/heads/x` for `x`; a full ref name as it is.
fn full_ref(name: &str) -> String {
    if name.starts_with("refs/") {
        name.to_string()
    } else {
        format!("refs/heads/{name}")
    }
}

/// The repository (id, or name within the project) a route names, and its id.
fn repository_id(request: &AdoRequest, org: &Organization) -> Result<String, AdoError> {
    let project = scoped_project(org, &request.params)?;
    let id = request.param("repository");
    org.repository(project, &id)
        .map(|r| r.id.clone())
        .ok_or(AdoError::RepositoryNotFound { repository: id })
}

/// The index of the pull request the route names, in its repository.
fn pull_request_index(request: &AdoRequest, org: &Organization) -> Result<usize, AdoError> {
    let repository = repository_id(request, org)?;
    let id = request
        .id("pullRequestId")
        .ok_or(AdoError::PullRequestNotFound)?;
    org.pull_requests
        .iter()
        .position(|pr| pr.id == id && pr.repository_id == repository)
        .ok_or(AdoError::PullRequestNotFound)
}

/// The user indexes of `reviewers` (`[{id}]`), or the 400 naming the first unknown one.
fn reviewer_indexes(org: &Organization, reviewers: &[Value]) -> Result<Vec<usize>, AdoError> {
    reviewers
        .iter()
        .map(|reviewer| {
            let id = reviewer.get("id").and_then(Value::as_str).unwrap_or("");
            org.users
                .iter()
                .position(|u| u.id.eq_ignore_ascii_case(id))
                .ok_or_else(|| {
                    invalid_argument(&format!("reviewers (identity '{id}' was not found)"))
                })
        })
        .collect()
}

/// A pull request as the write endpoints answer it (with `artifactId` and `_links`).
fn answer(
    org: &Organization,
    request: &AdoRequest,
    pr: &PullRequest,
    status: StatusCode,
) -> Response {
    let mut value = org.pull_request_json(&request.urls, pr);
    let project_id = org
        .repositories
        .iter()
        .find(|r| r.id == pr.repository_id)
        .map(|r| r.project_id.clone())
        .unwrap_or_default();
    if let Value::Object(map) = &mut value {
        let self_url = map.get("url").cloned().unwrap_or(Value::Null);
        map.insert("_links".into(), json!({"self": {"href": self_url}}));
        map.insert(
            "artifactId".into(),
            json!(format!(
                "vstfs:///Git/PullRequestId/{project_id}%2f{}%2f{}",
                pr.repository_id, pr.id
            )),
        );
    }
    (status, json_headers(), value.to_string()).into_response()
}

pub(super) async fn create(
    request: AdoRequest,
    JsonBody(body): JsonBody,
) -> Result<Response, AdoError> {
    let response = {
        let mut org = request.organization();
        let repository = repository_id(&request, &org)?;
        let text = |name: &str| {
            body.get(name)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
        };
        let source = text("sourceRefName").ok_or_else(|| invalid_argument("sourceRefName"))?;
        let target = text("targetRefName").ok_or_else(|| invalid_argument("targetRefName"))?;
        let title = text("title").ok_or_else(|| invalid_argument("title"))?;
        let (source, target) = (full_ref(&source), full_ref(&target));
        if source == target {
            return Err(invalid_argument(
                "targetRefName (the source and target refs are the same)",
            ));
        }
        let branches = org
            .git
            .repositories
            .get(&repository)
            .map(|c| c.branches.clone())
            .unwrap_or_default();
        let Some(source_commit) = branches.get(&source).cloned() else {
            return Err(AdoError::service(
                StatusCode::BAD_REQUEST,
                "TF401398: The pull request cannot be activated because the source and/or the target branch no longer exists, or the requested refs are not branches",
                "Microsoft.TeamFoundation.Git.Server.GitPullRequestCannotBeActivated, Microsoft.TeamFoundation.Git.Server",
            ));
        };
        if !branches.contains_key(&target) {
            return Err(AdoError::service(
                StatusCode::BAD_REQUEST,
                "TF401398: The pull request cannot be activated because the source and/or the target branch no longer exists, or the requested refs are not branches",
                "Microsoft.TeamFoundation.Git.Server.GitPullRequestCannotBeActivated, Microsoft.TeamFoundation.Git.Server",
            ));
        }
        if let Some(existing) = org.pull_requests.iter().find(|pr| {
            pr.repository_id == repository
                && pr.status == "active"
                && pr.source_ref_name == source
                && pr.target_ref_name == target
        }) {
            return Err(conflict(
                format!(
                    "TF401179: An active pull request for the source and target branch already exists. (pull request {})",
                    existing.id
                ),
                "Microsoft.TeamFoundation.Git.Server.GitPullRequestExistsException, Microsoft.TeamFoundation.Git.Server",
            ));
        }
        let reviewers = reviewer_indexes(
            &org,
            body.get("reviewers")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice),
        )?;
        let id = org
            .pull_requests
            .iter()
            .chain(&org.recycle_bin.pull_requests)
            .map(|pr| pr.id)
            .max()
            .unwrap_or(0)
            + 1;
        let pr = PullRequest {
            id,
            repository_id: repository,
            title,
            description: text("description").unwrap_or_default(),
            status: "active",
            created_by: CALLER,
            reviewers,
            creation_date: Utc::now(),
            closed_date: None,
            source_ref_name: source,
            target_ref_name: target,
            is_draft: body
                .get("isDraft")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            merge_commit: format!("{:040x}", u128::from(id) << 8 | 0xc1),
            source_commit: Some(source_commit),
            closed_by: None,
            completion_options: None,
            threads: Vec::new(),
        };
        let response = answer(&org, &request, &pr, StatusCode::CREATED);
        org.pull_requests.push(pr);
        response
    };
    request.state.traffic.touch();
    Ok(response)
}

pub(super) async fn update(
    request: AdoRequest,
    JsonBody(body): JsonBody,
) -> Result<Response, AdoError> {
    let response = {
        let mut org = request.organization();
        let index = pull_request_index(&request, &org)?;
        let current = org.pull_requests[index].clone();
        let edits = ["title", "description", "isDraft"]
            .iter()
            .any(|field| body.get(field).is_some_and(|v| !v.is_null()));
        let status = body.get("status").and_then(Value::as_str);
        let mut next = current.clone();
        match status {
            None => {}
            Some(s) if s.eq_ignore_ascii_case(current.status) && s != "completed" => {}
            Some(s) if s.eq_ignore_ascii_case("completed") => {
                if current.status != "active" {
                    return Err(not_editable());
                }
                if current.is_draft {
                    return Err(conflict(
                        format!(
                            "The pull request {} is a draft and cannot be completed; publish it first (isDraft: false).",
                            current.id
                        ),
                        "Microsoft.TeamFoundation.Git.Server.GitPullRequestNotEditableException, Microsoft.TeamFoundation.Git.Server",
                    ));
                }
                let given = body
                    .pointer("/lastMergeSourceCommit/commitId")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid_argument("lastMergeSourceCommit"))?;
                let rendered = org.pull_request_json(&request.urls, &current);
                let head = rendered
                    .pointer("/lastMergeSourceCommit/commitId")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if !given.eq_ignore_ascii_case(head) {
                    return Err(conflict(
                        format!(
                            "The pull request cannot be completed: its source branch is at commit {head}, not at lastMergeSourceCommit {given}. Read the pull request again and retry."
                        ),
                        "Microsoft.TeamFoundation.Git.Server.GitPullRequestStaleException, Microsoft.TeamFoundation.Git.Server",
                    ));
                }
                next.status = "completed";
                next.closed_date = Some(Utc::now());
                next.closed_by = Some(CALLER);
                next.completion_options = body.get("completionOptions").cloned();
            }
            Some(s) if s.eq_ignore_ascii_case("abandoned") => {
                if current.status != "active" {
                    return Err(not_editable());
                }
                next.status = "abandoned";
                next.closed_date = Some(Utc::now());
                next.closed_by = Some(CALLER);
            }
            Some(s) if s.eq_ignore_ascii_case("active") => {
                if current.status != "abandoned" {
                    return Err(not_editable());
                }
                next.status = "active";
                next.closed_date = None;
                next.closed_by = None;
            }
            Some(other) => return Err(invalid_argument(&format!("status ('{other}')"))),
        }
        if edits {
            if next.status != "active" {
                return Err(not_editable());
            }
            if let Some(title) = body.get("title").and_then(Value::as_str) {
                if title.trim().is_empty() {
                    return Err(invalid_argument("title"));
                }
                next.title = title.to_string();
            }
            if let Some(description) = body.get("description").and_then(Value::as_str) {
                next.description = description.to_string();
            }
            if let Some(draft) = body.get("isDraft").and_then(Value::as_bool) {
                next.is_draft = draft;
            }
        }
        let delete_source = next.status == "completed"
            && current.status != "completed"
            && body
                .pointer("/completionOptions/deleteSourceBranch")
                .and_then(Value::as_bool)
                .unwrap_or(false);
        if delete_source && let Some(content) = org.git.repositories.get_mut(&next.repository_id) {
            content.branches.remove(&next.source_ref_name);
        }
        let response = answer(&org, &request, &next, StatusCode::OK);
        org.pull_requests[index] = next;
        response
    };
    request.state.traffic.touch();
    Ok(response)
}

pub(super) async fn add_reviewers(
    request: AdoRequest,
    JsonBody(body): JsonBody,
) -> Result<Response, AdoError> {
    let response = {
        let mut org = request.organization();
        let index = pull_request_index(&request, &org)?;
        let wanted = body
            .as_array()
            .ok_or_else(|| invalid_argument("reviewers"))?;
        let added = reviewer_indexes(&org, wanted)?;
        if org.pull_requests[index].status != "active" {
            return Err(not_editable());
        }
        for reviewer in &added {
            if !org.pull_requests[index].reviewers.contains(reviewer) {
                org.pull_requests[index].reviewers.push(*reviewer);
            }
        }
        let rendered = org.pull_request_json(&request.urls, &org.pull_requests[index]);
        let ids: Vec<&str> = added
            .iter()
            .filter_map(|&i| org.users.get(i).map(|u| u.id.as_str()))
            .collect();
        let values = rendered["reviewers"]
            .as_array()
            .map(|all| {
                all.iter()
                    .filter(|r| r["id"].as_str().is_some_and(|id| ids.contains(&id)))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        list(values)
    };
    request.state.traffic.touch();
    Ok(response)
}

pub(crate) fn thread_json(
    org: &Organization,
    urls: &Urls,
    pr: &PullRequest,
    thread: &PullRequestThread,
) -> Value {
    let pr_url = org.pull_request_json(urls, pr)["url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let url = format!("{pr_url}/threads/{}", thread.id);
    let comments: Vec<Value> = thread
        .comments
        .iter()
        .zip(1u64..)
        .map(|((author, content), id)| {
            json!({
                "id": id,
                "parentCommentId": if id == 1 { 0 } else { 1 },
                "author": org.identity(urls, *author),
                "content": content,
                "publishedDate": ado_time(thread.published),
                "lastUpdatedDate": ado_time(thread.published),
                "lastContentUpdatedDate": ado_time(thread.published),
                "commentType": "text",
                "usersLiked": [],
                "_links": {"self": {"href": format!("{url}/comments/{id}")}},
            })
        })
        .collect();
    json!({
        "pullRequestThreadContext": null,
        "id": thread.id,
        "publishedDate": ado_time(thread.published),
        "lastUpdatedDate": ado_time(thread.published),
        "comments": comments,
        "status": thread.status,
        "threadContext": null,
        "properties": {},
        "identities": null,
        "isDeleted": false,
        "_links": {"self": {"href": url}, "repository": {"href": pr_url.split("/pullRequests/").next().unwrap_or_default()}},
    })
}

pub(super) async fn list_threads(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let pr = &org.pull_requests[pull_request_index(&request, &org)?];
    let values = pr
        .threads
        .iter()
        .map(|t| thread_json(&org, &request.urls, pr, t))
        .collect();
    Ok(list(values))
}

pub(super) async fn create_thread(
    request: AdoRequest,
    JsonBody(body): JsonBody,
) -> Result<Response, AdoError> {
    let response = {
        let mut org = request.organization();
        let index = pull_request_index(&request, &org)?;
        let comments: Vec<(usize, String)> = body
            .get("comments")
            .and_then(Value::as_array)
            .map(|all| {
                all.iter()
                    .filter_map(|c| c.get("content").and_then(Value::as_str))
                    .filter(|c| !c.trim().is_empty())
                    .map(|c| (CALLER, c.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        if comments.is_empty() {
            return Err(invalid_argument(
                "comments (a thread needs a comment with content)",
            ));
        }
        let status = match body.get("status") {
            None | Some(Value::Null) => "active",
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|n| THREAD_STATUSES.get(n as usize).copied())
                .filter(|s| *s != "unknown")
                .ok_or_else(|| invalid_argument("status"))?,
            Some(Value::String(s)) => THREAD_STATUSES
                .iter()
                .find(|known| known.eq_ignore_ascii_case(s) && **known != "unknown")
                .copied()
                .ok_or_else(|| invalid_argument(&format!("status ('{s}')")))?,
            Some(_) => return Err(invalid_argument("status")),
        };
        let pr = &mut org.pull_requests[index];
        let thread = PullRequestThread {
            id: pr.threads.len() as u64 + 1,
            status,
            comments,
            published: Utc::now(),
        };
        pr.threads.push(thread.clone());
        let pr = org.pull_requests[index].clone();
        ok_json(thread_json(&org, &request.urls, &pr, &thread))
    };
    request.state.traffic.touch();
    Ok(response)
}
