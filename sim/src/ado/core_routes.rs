//! The core Azure DevOps endpoints: projects, repositories and pull requests (see the module
//! docs of [`super`] for what each answers).

use std::collections::HashMap;

use axum::response::Response;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Value, json};

use super::error::AdoError;
use super::request::AdoRequest;
use super::routes::{continuation_token, continued_list, list, ok_json, parse_count};
use super::seed::{Organization, PullRequest, Urls};
use super::work::scoped_project;

/// Default and largest `$top` of pull request lists.
const PULL_REQUEST_PAGE: usize = 100;
const PULL_REQUEST_PAGE_MAX: usize = 1000;

pub(super) async fn list_projects(request: AdoRequest) -> Result<Response, AdoError> {
    let page = parse_count(&request.query, "$top")?
        .unwrap_or(100)
        .clamp(1, request.state.config.max_page_size.max(1));
    let start = match continuation_token(&request.query)? {
        Some(start) => start,
        None => parse_count(&request.query, "$skip")?.unwrap_or(0),
    };
    let capabilities = request.flag("includeCapabilities");
    let org = request.organization();
    let values = org
        .projects
        .iter()
        .map(|p| org.project_list_item(&request.urls, p, capabilities))
        .collect();
    Ok(continued_list(values, start, page))
}

pub(super) async fn get_project(request: AdoRequest) -> Result<Response, AdoError> {
    let id = request.param("project");
    let org = request.organization();
    let project = org.project(&id).ok_or(AdoError::ProjectNotFound {
        project: id.clone(),
    })?;
    Ok(ok_json(org.project_full(
        &request.urls,
        project,
        request.flag("includeCapabilities"),
    )))
}

pub(super) async fn list_repositories(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let project = scoped_project(&org, &request.params)?;
    let values = org
        .repositories
        .iter()
        .filter(|r| project.is_none_or(|p| p.id == r.project_id))
        .map(|r| org.repository_json(&request.urls, r))
        .collect();
    Ok(list(values))
}

fn find_repository<'a>(
    org: &'a Organization,
    params: &HashMap<String, String>,
) -> Result<&'a super::seed::Repository, AdoError> {
    let project = scoped_project(org, params)?;
    let id = params.get("repository").cloned().unwrap_or_default();
    org.repository(project, &id)
        .ok_or(AdoError::RepositoryNotFound { repository: id })
}

pub(super) async fn get_repository(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let repository = find_repository(&org, &request.params)?;
    Ok(ok_json(org.repository_json(&request.urls, repository)))
}

/// Parses `searchCriteria.minTime`/`maxTime` (ISO 8601; the Python client sends
/// `2026-01-01 00:00:00.000000+00:00`, whose `+` may arrive decoded as a space).
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    let iso = text.replacen(' ', "T", 1).replace(' ', "+");
    DateTime::parse_from_rfc3339(&iso)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(&iso, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
}

/// The `searchCriteria.*` filter of a pull request list.
struct Criteria {
    status: String,
    repository_id: Option<String>,
    creator_id: Option<String>,
    reviewer_id: Option<String>,
    source_ref_name: Option<String>,
    target_ref_name: Option<String>,
    closed_range: bool,
    min_time: Option<DateTime<Utc>>,
    max_time: Option<DateTime<Utc>>,
    skip: usize,
    top: usize,
}

impl Criteria {
    fn parse(query: &HashMap<String, String>) -> Result<Self, AdoError> {
        let criterion = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&format!("searchCriteria.{name}")))
                .map(|(_, v)| v.clone())
        };
        let time =
            |name: &str| -> Result<Option<DateTime<Utc>>, AdoError> {
                criterion(name)
                    .map(|text| {
                        parse_time(&text).ok_or_else(|| AdoError::bad_argument(format!(
                            "The value '{text}' is not valid for parameter 'searchCriteria.{name}'."
                        )))
                    })
                    .transpose()
            };
        Ok(Self {
            status: criterion("status")
                .unwrap_or_else(|| "active".into())
                .to_ascii_lowercase(),
            repository_id: criterion("repositoryId"),
            creator_id: criterion("creatorId"),
            reviewer_id: criterion("reviewerId"),
            source_ref_name: criterion("sourceRefName"),
            target_ref_name: criterion("targetRefName"),
            closed_range: criterion("queryTimeRangeType")
                .is_some_and(|v| v.eq_ignore_ascii_case("closed")),
            min_time: time("minTime")?,
            max_time: time("maxTime")?,
            skip: parse_count(query, "$skip")?.unwrap_or(0),
            top: parse_count(query, "$top")?
                .unwrap_or(PULL_REQUEST_PAGE)
                .min(PULL_REQUEST_PAGE_MAX),
        })
    }

    fn matches(&self, org: &Organization, pr: &PullRequest) -> bool {
        let status_ok =
            matches!(self.status.as_str(), "all" | "notset") || self.status == pr.status;
        let time = if self.closed_range {
            pr.closed_date
        } else {
            Some(pr.creation_date)
        };
        let time_ok = match (self.min_time, self.max_time) {
            (None, None) => true,
            (min, max) => {
                time.is_some_and(|t| min.is_none_or(|m| t >= m) && max.is_none_or(|m| t <= m))
            }
        };
        let user = |index: usize| org.users.get(index).map(|u| u.id.as_str());
        status_ok
            && time_ok
            && self
                .repository_id
                .as_deref()
                .is_none_or(|id| id.eq_ignore_ascii_case(&pr.repository_id))
            && self
                .creator_id
                .as_deref()
                .is_none_or(|id| user(pr.created_by) == Some(id))
            && self
                .reviewer_id
                .as_deref()
                .is_none_or(|id| pr.reviewers.iter().any(|&r| user(r) == Some(id)))
            && self
                .source_ref_name
                .as_deref()
                .is_none_or(|r| r == pr.source_ref_name)
            && self
                .target_ref_name
                .as_deref()
                .is_none_or(|r| r == pr.target_ref_name)
    }
}

/// Newest first, like Azure DevOps, then `$skip`/`$top`.
fn pull_request_page(
    org: &Organization,
    urls: &Urls,
    criteria: &Criteria,
    in_scope: impl Fn(&PullRequest) -> bool,
) -> Response {
    let mut selected = org
        .pull_requests
        .iter()
        .filter(|pr| in_scope(pr) && criteria.matches(org, pr))
        .collect::<Vec<_>>();
    selected.sort_by_key(|pr| std::cmp::Reverse(pr.id));
    let values = selected
        .into_iter()
        .skip(criteria.skip)
        .take(criteria.top)
        .map(|pr| org.pull_request_json(urls, pr))
        .collect();
    list(values)
}

pub(super) async fn list_repository_pull_requests(
    request: AdoRequest,
) -> Result<Response, AdoError> {
    let criteria = Criteria::parse(&request.query)?;
    let org = request.organization();
    let repository = find_repository(&org, &request.params)?;
    Ok(pull_request_page(&org, &request.urls, &criteria, |pr| {
        pr.repository_id == repository.id
    }))
}

pub(super) async fn list_project_pull_requests(request: AdoRequest) -> Result<Response, AdoError> {
    let criteria = Criteria::parse(&request.query)?;
    let org = request.organization();
    let project = scoped_project(&org, &request.params)?;
    // The project's repositories first: one pass over them, not one per pull request.
    let repositories: std::collections::HashSet<&str> = (org.repositories.iter())
        .filter(|r| project.is_none_or(|p| p.id == r.project_id))
        .map(|r| r.id.as_str())
        .collect();
    let in_project = |pr: &PullRequest| repositories.contains(pr.repository_id.as_str());
    Ok(pull_request_page(
        &org,
        &request.urls,
        &criteria,
        in_project,
    ))
}

pub(super) async fn get_pull_request(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let project = scoped_project(&org, &request.params)?;
    let repository = match request.params.get("repository") {
        Some(_) => Some(find_repository(&org, &request.params)?),
        None => None,
    };
    let id = request
        .id("pullRequestId")
        .ok_or(AdoError::PullRequestNotFound)?;
    let pr = org
        .pull_request(id)
        .filter(|pr| repository.is_none_or(|r| r.id == pr.repository_id))
        .filter(|pr| {
            project.is_none_or(|p| {
                org.repositories
                    .iter()
                    .any(|r| r.id == pr.repository_id && r.project_id == p.id)
            })
        })
        .ok_or(AdoError::PullRequestNotFound)?;
    let mut value = org.pull_request_json(&request.urls, pr);
    if let Value::Object(map) = &mut value {
        let self_url = map.get("url").cloned().unwrap_or(Value::Null);
        map.insert(
            "_links".into(),
            json!({"self": {"href": self_url}, "repository": {"href": map.get("repository").and_then(|r| r.get("url")).cloned().unwrap_or(Value::Null)}}),
        );
        map.insert(
            "artifactId".into(),
            json!(format!(
                "vstfs:///Git/PullRequestId/{}%2f{}%2f{}",
                pr_project_id(&org, pr),
                pr.repository_id,
                pr.id
            )),
        );
    }
    Ok(ok_json(value))
}

fn pr_project_id(org: &Organization, pr: &PullRequest) -> String {
    org.repositories
        .iter()
        .find(|r| r.id == pr.repository_id)
        .map(|r| r.project_id.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_style_times_parse() {
        assert!(parse_time("2026-01-01 00:00:00.000000+00:00").is_some());
        assert!(parse_time("2026-01-01 00:00:00.000000 00:00").is_some());
        assert!(parse_time("2026-01-01T00:00:00Z").is_some());
        assert!(parse_time("yesterday").is_none());
    }
}
