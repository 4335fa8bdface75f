//! Simulated Release - List and Definitions - List filters, as Microsoft documents them
//! (Release - List: `statusFilter`, `tagFilter`, `sourceBranchFilter`, `minCreatedTime`,
//! `maxCreatedTime`, `$expand`; Definitions - List: `tagFilter`, `$expand`).
//!
//! | key | answer |
//! |---|---|
//! | `GET /{org}/{project}/_apis/release/releases` | releases newest first, `$top` (default 50), `continuationToken`, filtered (see below) |
//! | `GET /{org}/{project}/_apis/release/definitions` | the project's definition, `$top`, `continuationToken`, `tagFilter`, `$expand` |
//!
//! Seeded releases (`n` from 1): status `abandoned` when `n` is a multiple of 4, else `draft`
//! when a multiple of 5, else `active`; tags `hotfix` (even `n`) and `prod` (`n` a multiple of
//! 3); one build artifact from `refs/heads/main` (odd `n`) or `refs/heads/develop` (even `n`);
//! created `n × 7` hours after the seed's epoch. The definition of the `i`-th project (from 0)
//! is tagged `cd` (even `i`) or `legacy` (odd `i`).
//!
//! Filters: `statusFilter` one status (any case); `tagFilter` a comma list, every tag must be
//! on the release (any case); `sourceBranchFilter` the primary artifact's branch; `minCreatedTime`
//! (created at or after) and `maxCreatedTime` (created before) as ISO 8601 dates or times. A
//! list answers the shallow release: `environments`, `artifacts` only with those `$expand`s,
//! `tags` and `variables` empty without theirs. A value the API cannot read is a 400
//! `ArgumentException` naming it.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Value, json};

use axum::response::Response;

use super::error::AdoError;
use super::request::AdoRequest;
use super::routes::{continued_list, parse_count};
use super::seed::{Organization, Project, Urls};
use super::work::project;

/// `ReleaseStatus`.
const STATUSES: &[&str] = &["undefined", "draft", "active", "abandoned"];
/// `ReleaseExpands`.
const RELEASE_EXPANDS: &[&str] = &[
    "none",
    "environments",
    "artifacts",
    "approvals",
    "manualInterventions",
    "variables",
    "tags",
];
/// `ReleaseDefinitionExpands`.
const DEFINITION_EXPANDS: &[&str] = &[
    "none",
    "environments",
    "artifacts",
    "triggers",
    "variables",
    "tags",
    "lastRelease",
];

/// The status of release `n`.
pub(crate) fn release_status(n: u64) -> &'static str {
    if n.is_multiple_of(4) {
        "abandoned"
    } else if n.is_multiple_of(5) {
        "draft"
    } else {
        "active"
    }
}

/// The tags of release `n`.
pub(crate) fn release_tags(n: u64) -> Vec<&'static str> {
    let mut tags = Vec::new();
    if n.is_multiple_of(2) {
        tags.push("hotfix");
    }
    if n.is_multiple_of(3) {
        tags.push("prod");
    }
    tags
}

/// The branch release `n`'s artifact was built from.
pub(crate) fn release_branch(n: u64) -> &'static str {
    if n.is_multiple_of(2) {
        "refs/heads/develop"
    } else {
        "refs/heads/main"
    }
}

/// The tags of the release definition of the `index`-th project.
pub(crate) fn definition_tags(index: usize) -> Vec<&'static str> {
    vec![if index.is_multiple_of(2) {
        "cd"
    } else {
        "legacy"
    }]
}

/// The `$expand` values asked (a comma list, any case), checked against `allowed`.
fn expands(request: &AdoRequest, allowed: &[&str]) -> Result<Vec<String>, AdoError> {
    let mut out = Vec::new();
    for value in request.query_list("$expand") {
        match allowed.iter().find(|a| a.eq_ignore_ascii_case(&value)) {
            Some(known) => out.push(known.to_string()),
            None => {
                return Err(AdoError::bad_argument(format!(
                    "The value '{value}' is not valid for parameter '$expand'."
                )));
            }
        }
    }
    Ok(out)
}

/// The tags of a `tagFilter` (none without one).
fn tag_filter(request: &AdoRequest) -> Vec<String> {
    request
        .query_list("tagFilter")
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect()
}

/// An ISO 8601 date or time parameter, as the API reads it (a time without a zone is UTC).
fn time(request: &AdoRequest, name: &str) -> Result<Option<DateTime<Utc>>, AdoError> {
    let Some(text) = request.query.get(name).map(|t| t.trim()) else {
        return Ok(None);
    };
    let parsed = DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
        });
    parsed.map(Some).ok_or_else(|| {
        AdoError::bad_argument(format!(
            "The value '{text}' is not valid for parameter '{name}'."
        ))
    })
}

/// Release - List's filters, read from the query.
struct ReleaseFilters {
    status: Option<&'static str>,
    tags: Vec<String>,
    branch: Option<String>,
    min_created: Option<DateTime<Utc>>,
    max_created: Option<DateTime<Utc>>,
    expand: Vec<String>,
}

impl ReleaseFilters {
    fn read(request: &AdoRequest) -> Result<Self, AdoError> {
        let status = match request.query.get("statusFilter") {
            None => None,
            Some(value) => Some(
                *STATUSES
                    .iter()
                    .find(|s| s.eq_ignore_ascii_case(value.trim()))
                    .ok_or_else(|| {
                        AdoError::bad_argument(format!(
                            "The value '{value}' is not valid for parameter 'statusFilter'."
                        ))
                    })?,
            ),
        };
        Ok(Self {
            status,
            tags: tag_filter(request),
            branch: request
                .query
                .get("sourceBranchFilter")
                .filter(|b| !b.is_empty())
                .cloned(),
            min_created: time(request, "minCreatedTime")?,
            max_created: time(request, "maxCreatedTime")?,
            expand: expands(request, RELEASE_EXPANDS)?,
        })
    }

    fn keeps(&self, n: u64, created: DateTime<Utc>) -> bool {
        let tags = release_tags(n);
        self.status.is_none_or(|s| s == release_status(n))
            && self
                .tags
                .iter()
                .all(|t| tags.iter().any(|tag| tag.eq_ignore_ascii_case(t)))
            && (self.branch.as_ref()).is_none_or(|b| b.eq_ignore_ascii_case(release_branch(n)))
            && self.min_created.is_none_or(|min| created >= min)
            && self.max_created.is_none_or(|max| created < max)
    }

    fn expands(&self, what: &str) -> bool {
        self.expand.iter().any(|e| e == what)
    }
}

impl Organization {
    /// The parts of release `n` a list leaves out unless expanded: `(environments, artifacts,
    /// variables)`.
    fn release_expansions(&self, urls: &Urls, project: &Project, n: u64) -> (Value, Value, Value) {
        let branch = release_branch(n);
        let environments = json!([
            {"id": n * 10 + 1, "releaseId": n, "name": "staging", "status": "succeeded", "rank": 1, "definitionEnvironmentId": 1, "preDeployApprovals": [], "postDeployApprovals": []},
            {"id": n * 10 + 2, "releaseId": n, "name": "production", "status": if release_status(n) == "active" { "inProgress" } else { "notStarted" }, "rank": 2, "definitionEnvironmentId": 2, "preDeployApprovals": [], "postDeployApprovals": []},
        ]);
        let artifacts = json!([{
            "sourceId": format!("{}:1", project.id),
            "type": "Build",
            "alias": "_build",
            "isPrimary": true,
            "isRetained": false,
            "definitionReference": {
                "branch": {"id": branch, "name": branch},
                "definition": {"id": "1", "name": format!("{}-pipeline-1", project.name.replace(' ', "-"))},
                "project": {"id": project.id, "name": project.name},
                "version": {"id": format!("{n}"), "name": format!("2026.{n}")},
                "artifactSourceDefinitionUrl": {"id": format!("{}/{}/_build?definitionId=1", urls.organization_url, project.id), "name": ""},
            },
        }]);
        let variables =
            json!({"deployTarget": {"value": if n.is_multiple_of(2) { "canary" } else { "all" }}});
        (environments, artifacts, variables)
    }
}

pub(super) async fn list_releases(request: AdoRequest) -> Result<Response, AdoError> {
    let top = parse_count(&request.query, "$top")?
        .unwrap_or(50)
        .clamp(1, 100);
    let start = parse_count(&request.query, "continuationToken")?.unwrap_or(0);
    let filters = ReleaseFilters::read(&request)?;
    let org = request.organization();
    let project = project(&org, &request.params)?;
    let values = (1..=org.releases_per_project)
        .rev()
        .filter_map(|n| {
            let mut release = org.release_json(&request.urls, project, n);
            let created = release
                .get("createdOn")
                .and_then(Value::as_str)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())?
                .with_timezone(&Utc);
            if !filters.keeps(n, created) {
                return None;
            }
            let (environments, artifacts, variables) =
                org.release_expansions(&request.urls, project, n);
            if let Value::Object(map) = &mut release {
                if filters.expands("environments") {
                    map.insert("environments".into(), environments);
                }
                if filters.expands("artifacts") {
                    map.insert("artifacts".into(), artifacts);
                }
                if filters.expands("variables") {
                    map.insert("variables".into(), variables);
                }
                if filters.expands("tags") {
                    map.insert("tags".into(), json!(release_tags(n)));
                }
            }
            Some(release)
        })
        .collect();
    Ok(continued_list(values, start, top))
}

pub(super) async fn list_definitions(request: AdoRequest) -> Result<Response, AdoError> {
    let top = parse_count(&request.query, "$top")?
        .unwrap_or(50)
        .clamp(1, 100);
    let start = parse_count(&request.query, "continuationToken")?.unwrap_or(0);
    let wanted = tag_filter(&request);
    let expand = expands(&request, DEFINITION_EXPANDS)?;
    let org = request.organization();
    let project = project(&org, &request.params)?;
    let index = (org.projects.iter())
        .position(|p| p.id == project.id)
        .unwrap_or(0);
    let tags = definition_tags(index);
    let mut values = Vec::new();
    if wanted
        .iter()
        .all(|t| tags.iter().any(|tag| tag.eq_ignore_ascii_case(t)))
    {
        let mut definition = org.definition_json(&request.urls, project);
        if let Value::Object(map) = &mut definition {
            if !expand.iter().any(|e| e == "environments") {
                map.remove("environments");
            }
            if expand.iter().any(|e| e == "tags") {
                map.insert("tags".into(), json!(tags));
            }
        }
        values.push(definition);
    }
    Ok(continued_list(values, start, top))
}

/// `createdOn` of release `n`, as its JSON writes it.
#[cfg(test)]
fn created(n: u64) -> String {
    super::seed::ado_time(super::seed::epoch() + chrono::Duration::hours(n as i64 * 7))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_releases_differ_in_every_filtered_field() {
        let statuses: Vec<_> = (1..=6).map(release_status).collect();
        assert_eq!(
            statuses,
            ["active", "active", "active", "abandoned", "draft", "active"]
        );
        assert_eq!(release_tags(6), ["hotfix", "prod"]);
        assert!(release_tags(1).is_empty());
        assert_ne!(release_branch(1), release_branch(2));
        assert!(created(1) < created(2));
    }
}
