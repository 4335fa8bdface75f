//! Simulated Azure DevOps resources beyond Git: teams, boards, branch policies, work items
//! (WIQL + `workitemsbatch`), releases (served on the organization's own host, as Azure DevOps
//! Server does for `vsrm`) and service-hook subscriptions.
//!
//! | key | answer |
//! |---|---|
//! | `GET /{org}/_apis/teams` | every team, `$top` (default 100)/`$skip` |
//! | `GET /{org}/_apis/projects/{project}/teams` | the project's teams, `$top`/`$skip` |
//! | `GET /{org}/{project}/{team}/_apis/work/boards` | board references of a team |
//! | `GET /{org}/{project}/{team}/_apis/work/boards/{board}` | the board with `columns[].stateMappings` |
//! | `GET /{org}/{project}/_apis/git/policy/configurations` | the policies that apply to `repositoryId` at `refName` (scope rules: `scope_applies`) |
//! | `GET /{org}/{project}/_apis/policy/configurations` | every policy configuration of the project in id order, `$top` (default 50, at most [`POLICIES_PAGE_MAX`]), `continuationToken` |
//! | `POST /{org}/{project}/_apis/wit/wiql` | ids in id order; honours `[System.Id] > N`, `[System.State] = '…'`, `[System.WorkItemType] = '…'` and `$top`; more than `wiql_max_results` without `$top` → 400 `VS402337`; an `ORDER BY` twice or inside parentheses → 400 `TF51006` |
//! | `POST /{org}/{project}/_apis/wit/workitemsbatch` | `{ids ≤ 200, $expand, errorPolicy}` → items (`null` for a missing id with `errorPolicy: Omit`, else 404) |
//! | `GET /{org}/{project}/_apis/wit/workitems/{id}` (and without `{project}`) | one work item, `$expand` |
//! | `GET /{org}/{project}/_apis/release/releases` | see [`super::releases`] |
//! | `GET /{org}/{project}/_apis/release/releases/{releaseId}` | one release |
//! | `GET/POST /{org}/_apis/hooks/subscriptions`, `PUT/DELETE …/{subscriptionId}` | service-hook subscriptions (host rules, masked passwords: see [`super::live`]) |

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Duration;
use serde_json::{Value, json};

use super::AdoState;
use super::error::{AdoError, ado_json};
use super::request::{AdoRequest, JsonBody};
use super::routes::{json_body, list, ok_json, parse_count, urls};
use super::seed::{
    KIND_BOARD, KIND_COLUMN, Organization, Project, Repository, Urls, WORK_ITEM_STATES, WorkItem,
    ado_time, encode_segment, epoch, stable_id,
};
use crate::traffic::lock;

type Params = Path<HashMap<String, String>>;

/// Most ids one `workitemsbatch` call takes.
const WORK_ITEMS_BATCH_MAX: usize = 200;

pub(super) fn project<'a>(
    org: &'a Organization,
    params: &HashMap<String, String>,
) -> Result<&'a Project, AdoError> {
    let id = params.get("project").cloned().unwrap_or_default();
    org.project(&id)
        .ok_or(AdoError::ProjectNotFound { project: id })
}

/// Resolves the optional `{project}` path segment.
pub(super) fn scoped_project<'a>(
    org: &'a Organization,
    params: &HashMap<String, String>,
) -> Result<Option<&'a Project>, AdoError> {
    match params.get("project") {
        Some(name) => org
            .project(name)
            .map(Some)
            .ok_or_else(|| AdoError::ProjectNotFound {
                project: name.clone(),
            }),
        None => Ok(None),
    }
}

/// The project and the repository (id or name) a project-scoped repository route names.
pub(super) fn project_repository<'a>(
    org: &'a Organization,
    params: &HashMap<String, String>,
) -> Result<(&'a Project, &'a Repository), AdoError> {
    let project = project(org, params)?;
    let id = params.get("repository").cloned().unwrap_or_default();
    let repository = org
        .repository(Some(project), &id)
        .ok_or(AdoError::RepositoryNotFound { repository: id })?;
    Ok((project, repository))
}

fn not_found(message: String) -> Response {
    ado_json(
        StatusCode::NOT_FOUND,
        &message,
        "Microsoft.TeamFoundation.WorkItemTracking.Server.WorkItemUnauthorizedAccessException, Microsoft.TeamFoundation.WorkItemTracking.Server",
        "WorkItemUnauthorizedAccessException",
        3200,
    )
}

impl Organization {
    fn project_index(&self, project: &Project) -> u32 {
        let index = self
            .projects
            .iter()
            .position(|p| p.id == project.id)
            .unwrap_or(0);
        u32::try_from(index).unwrap_or(u32::MAX)
    }

    /// The default team of a project (the only team the simulator seeds).
    pub(crate) fn team_json(&self, urls: &Urls, project: &Project) -> Value {
        let org = &urls.organization_url;
        json!({
            "id": project.default_team_id,
            "name": format!("{} Team", project.name),
            "url": format!("{org}/_apis/projects/{}/teams/{}", project.id, project.default_team_id),
            "description": format!("The default project team of {}.", project.name),
            "identityUrl": format!("{org}/_apis/Identities/{}", project.default_team_id),
            "projectName": project.name,
            "projectId": project.id,
        })
    }

    fn board_id(&self, project: &Project) -> String {
        stable_id(KIND_BOARD, self.project_index(project), 0)
    }

    fn board_url(&self, urls: &Urls, project: &Project) -> String {
        format!(
            "{}/{}/{}/_apis/work/boards/{}",
            urls.organization_url,
            project.id,
            project.default_team_id,
            self.board_id(project)
        )
    }

    /// The board reference `GET …/work/boards` lists.
    pub(crate) fn board_reference(&self, urls: &Urls, project: &Project) -> Value {
        json!({"id": self.board_id(project), "name": "Stories", "url": self.board_url(urls, project)})
    }

    /// The full board, with one column per work item state.
    pub(crate) fn board_json(&self, urls: &Urls, project: &Project) -> Value {
        let index = self.project_index(project);
        let url = self.board_url(urls, project);
        let columns = WORK_ITEM_STATES
            .iter()
            .zip(0u32..)
            .map(|(state, i)| {
                let column_type = match i {
                    0 => "incoming",
                    3 => "outgoing",
                    _ => "inProgress",
                };
                json!({
                    "id": stable_id(KIND_COLUMN, index, i),
                    "name": state,
                    "itemLimit": if column_type == "inProgress" { 5 } else { 0 },
                    "stateMappings": {"User Story": state, "Bug": state},
                    "isSplit": false,
                    "description": "",
                    "columnType": column_type,
                })
            })
            .collect::<Vec<_>>();
        let org = &urls.organization_url;
        json!({
            "id": self.board_id(project),
            "name": "Stories",
            "url": url,
            "revision": 1,
            "columns": columns,
            "rows": [{"id": "00000000-0000-0000-0000-000000000000", "name": null, "color": null}],
            "isValid": true,
            "allowedMappings": {
                "Incoming": {"User Story": ["New"], "Bug": ["New"]},
                "InProgress": {"User Story": ["Active", "Resolved"], "Bug": ["Active", "Resolved"]},
                "Outgoing": {"User Story": ["Closed"], "Bug": ["Closed"]},
            },
            "canEdit": true,
            "fields": {
                "columnField": {"referenceName": "WEF_STORIES_Kanban.Column", "url": format!("{org}/_apis/wit/fields/WEF_STORIES_Kanban.Column")},
                "rowField": {"referenceName": "WEF_STORIES_Kanban.Lane", "url": format!("{org}/_apis/wit/fields/WEF_STORIES_Kanban.Lane")},
                "doneField": {"referenceName": "WEF_STORIES_Kanban.Column.Done", "url": format!("{org}/_apis/wit/fields/WEF_STORIES_Kanban.Column.Done")},
            },
            "_links": {
                "self": {"href": url},
                "project": {"href": format!("{org}/_apis/projects/{}", project.id)},
                "team": {"href": format!("{org}/_apis/projects/{}/teams/{}", project.id, project.default_team_id)},
                "columns": {"href": format!("{url}/columns")},
                "rows": {"href": format!("{url}/rows")},
                "charts": {"href": format!("{url}/charts")},
            },
        })
    }

    /// The two branch policies of a repository with a default branch.
    pub(crate) fn policies_json(&self, urls: &Urls, repository: &Repository) -> Vec<Value> {
        let Some(branch) = &repository.default_branch else {
            return Vec::new();
        };
        let index = self
            .repositories
            .iter()
            .position(|r| r.id == repository.id)
            .unwrap_or(0);
        let scope =
            json!([{"refName": branch, "matchKind": "Exact", "repositoryId": repository.id}]);
        let kinds = [
            (
                "fa4e907d-c16b-4a4c-9dfa-4906e5d171dd",
                "Minimum number of reviewers",
                json!({"minimumApproverCount": 1 + index % 3, "creatorVoteCounts": false, "allowDownvotes": false, "resetOnSourcePush": true, "scope": scope}),
            ),
            (
                "40e92b44-2fe1-4dd6-b3d8-74a9c21d0c6e",
                "Work item linking",
                json!({"scope": scope}),
            ),
        ];
        let org = &urls.organization_url;
        kinds
            .into_iter()
            .zip(0usize..)
            .map(|((type_id, name, settings), k)| {
                let id = index * 2 + k + 1;
                json!({
                    "createdBy": self.identity(urls, index % self.users.len().max(1)),
                    "createdDate": ado_time(epoch() - Duration::days(30)),
                    "isEnabled": true,
                    "isBlocking": index.is_multiple_of(2),
                    "isDeleted": false,
                    "settings": settings,
                    "isEnterpriseManaged": false,
                    "_links": {"self": {"href": format!("{org}/{}/_apis/policy/configurations/{id}", repository.project_id)},
                               "policyType": {"href": format!("{org}/{}/_apis/policy/types/{type_id}", repository.project_id)}},
                    "revision": 1,
                    "id": id,
                    "url": format!("{org}/{}/_apis/policy/configurations/{id}", repository.project_id),
                    "type": {"id": type_id, "url": format!("{org}/{}/_apis/policy/types/{type_id}", repository.project_id), "displayName": name},
                })
            })
            .collect()
    }

    /// A work item; `expand` is `none`, `fields`, `relations`, `links` or `all`.
    pub(crate) fn work_item_json(&self, urls: &Urls, item: &WorkItem, expand: &str) -> Value {
        let Some(project) = self.project_by_id(&item.project_id) else {
            return Value::Null;
        };
        let org = &urls.organization_url;
        let url = format!("{org}/{}/_apis/wit/workItems/{}", project.id, item.id);
        let mut fields = json!({
            "System.Id": item.id,
            "System.AreaPath": project.name,
            "System.TeamProject": project.name,
            "System.IterationPath": format!("{}\\Sprint 1", project.name),
            "System.WorkItemType": item.work_item_type,
            "System.State": item.state,
            "System.Reason": if item.state == "New" { "New" } else { "Work started" },
            "System.CreatedDate": ado_time(item.created_date),
            "System.CreatedBy": self.identity(urls, item.created_by),
            "System.ChangedDate": ado_time(item.changed_date),
            "System.ChangedBy": self.identity(urls, (item.created_by + 1) % self.users.len().max(1)),
            "System.CommentCount": 0,
            "System.Title": item.title,
            "System.BoardColumn": item.state,
            "System.BoardColumnDone": false,
            "Microsoft.VSTS.Common.Priority": 2,
            "Microsoft.VSTS.Scheduling.Effort": 1 + item.id % 8,
            "System.Description": format!("<div>{}</div>", item.title),
        });
        if let Value::Object(map) = &mut fields
            && item.id.is_multiple_of(2)
        {
            map.remove("System.Description");
        }
        let mut value = json!({"id": item.id, "rev": item.rev, "fields": fields, "url": url});
        if let Value::Object(map) = &mut value {
            if matches!(expand, "all" | "relations") {
                map.insert("relations".into(), json!([]));
            }
            if matches!(expand, "all" | "links") {
                map.insert(
                    "_links".into(),
                    json!({
                        "self": {"href": url},
                        "workItemUpdates": {"href": format!("{url}/updates")},
                        "html": {"href": format!("{org}/{}/_workitems/edit/{}", encode_segment(&project.name), item.id)},
                    }),
                );
            }
        }
        value
    }

    /// Release `number` (1-based) of a project.
    pub(crate) fn release_json(&self, urls: &Urls, project: &Project, number: u64) -> Value {
        let org = &urls.organization_url;
        let definition_url = format!("{org}/{}/_apis/Release/definitions/1", project.id);
        let created = epoch() + Duration::hours(number as i64 * 7);
        let users = self.users.len().max(1);
        json!({
            "id": number,
            "name": format!("Release-{number}"),
            "status": super::releases::release_status(number),
            "createdOn": ado_time(created),
            "modifiedOn": ado_time(created + Duration::minutes(30)),
            "modifiedBy": self.identity(urls, (number as usize + 1) % users),
            "createdBy": self.identity(urls, number as usize % users),
            "createdFor": self.identity(urls, number as usize % users),
            "variables": {},
            "variableGroups": [],
            "releaseDefinition": {
                "id": 1,
                "name": format!("{} CD", project.name),
                "path": "\\",
                "projectReference": null,
                "url": definition_url,
                "_links": {"self": {"href": definition_url}, "web": {"href": format!("{org}/{}/_release?definitionId=1", encode_segment(&project.name))}},
            },
            "releaseDefinitionRevision": 1,
            "description": "",
            "reason": if number.is_multiple_of(2) { "continuousIntegration" } else { "manual" },
            "releaseNameFormat": "Release-$(rev:r)",
            "keepForever": false,
            "definitionSnapshotRevision": 1,
            "logsContainerUrl": format!("{org}/{}/_apis/release/releases/{number}/logs", project.id),
            "url": format!("{org}/{}/_apis/Release/releases/{number}", project.id),
            "_links": {
                "self": {"href": format!("{org}/{}/_apis/Release/releases/{number}", project.id)},
                "web": {"href": format!("{org}/{}/_release?releaseId={number}&_a=release-summary", encode_segment(&project.name))},
            },
            "tags": [],
            "triggeringArtifactAlias": null,
            "projectReference": {"id": project.id, "name": null},
            "properties": {},
        })
    }
}

pub(super) async fn list_teams(request: AdoRequest) -> Result<Response, AdoError> {
    let top = parse_count(&request.query, "$top")?.unwrap_or(100).max(1);
    let skip = parse_count(&request.query, "$skip")?.unwrap_or(0);
    let org = request.organization();
    let scope = scoped_project(&org, &request.params)?.map(|p| p.id.clone());
    let values = org
        .projects
        .iter()
        .filter(|p| scope.as_ref().is_none_or(|id| *id == p.id))
        .skip(skip)
        .take(top)
        .map(|p| org.team_json(&request.urls, p))
        .collect();
    Ok(list(values))
}

/// The project and its default team (by id or name) a team path names; `unknown` words the
/// refusal of another team (each API words it its own way).
pub(super) fn team_project<'a>(
    org: &'a Organization,
    params: &HashMap<String, String>,
    unknown: impl FnOnce(String) -> AdoError,
) -> Result<&'a Project, AdoError> {
    let project = project(org, params)?;
    let team = params.get("team").cloned().unwrap_or_default();
    let name = format!("{} Team", project.name);
    if team.eq_ignore_ascii_case(&project.default_team_id) || team.eq_ignore_ascii_case(&name) {
        Ok(project)
    } else {
        Err(unknown(team))
    }
}

/// The work APIs' refusal of a team the project does not have.
fn unknown_team(team: String) -> AdoError {
    AdoError::bad_argument(format!("VS403155: The team '{team}' does not exist."))
}

pub(super) async fn list_boards(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let project = team_project(&org, &request.params, unknown_team)?;
    if lock(&request.state.teams_without_iterations).contains(&project.id) {
        // What Azure DevOps answers for the boards of a team that is in no iteration.
        return Err(AdoError::service(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Object reference not set to an instance of an object.",
            "System.NullReferenceException, mscorlib",
        ));
    }
    Ok(list(vec![org.board_reference(&request.urls, project)]))
}

pub(super) async fn get_board(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let project = team_project(&org, &request.params, unknown_team)?;
    let board = request.param("board");
    if !board.eq_ignore_ascii_case(&org.board_id(project)) && !board.eq_ignore_ascii_case("Stories")
    {
        return Ok(not_found(format!(
            "TF400499: The board '{board}' does not exist."
        )));
    }
    Ok(ok_json(org.board_json(&request.urls, project)))
}

pub(super) async fn list_policies(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let project = project(&org, &request.params)?;
    let repository_id = request.query.get("repositoryId");
    let ref_name = request.query.get("refName").map(String::as_str);
    let mut values: Vec<Value> = org
        .repositories
        .iter()
        .filter(|r| r.project_id == project.id)
        .filter(|r| repository_id.is_none_or(|id| id.eq_ignore_ascii_case(&r.id)))
        .filter(|r| ref_name.is_none_or(|name| r.default_branch.as_deref() == Some(name)))
        .flat_map(|r| org.policies_json(&request.urls, r))
        .collect();
    let repository = repository_id.and_then(|id| {
        org.repositories
            .iter()
            .find(|r| r.project_id == project.id && r.id.eq_ignore_ascii_case(id))
    });
    values.extend(
        org.added_policies
            .iter()
            .filter(|(project_id, _)| *project_id == project.id)
            .filter(|(_, policy)| {
                policy
                    .pointer("/settings/scope")
                    .and_then(Value::as_array)
                    .is_none_or(|scopes| {
                        scopes
                            .iter()
                            .any(|scope| scope_applies(scope, repository, ref_name))
                    })
            })
            .map(|(_, policy)| policy.clone()),
    );
    Ok(list(values))
}

/// Whether one `settings.scope` entry of a policy configuration answers
/// `git/policy/configurations?repositoryId=&refName=` as Azure DevOps documents it: with a
/// repository, the entries of that repository or of every repository (`repositoryId` null) that
/// apply to branch `ref_name` (`Exact`: that branch, case-insensitive; `Prefix`: a branch
/// starting with it; `DefaultBranch`: the repository's default branch; no `refName`: every
/// branch), or to any branch without `refName`; without a repository, the project-level
/// entries (`repositoryId` null) only, matched to `ref_name` the same way.
fn scope_applies(scope: &Value, repository: Option<&Repository>, ref_name: Option<&str>) -> bool {
    let scoped_to = scope.get("repositoryId").and_then(Value::as_str);
    let repository_matches = match (scoped_to, repository) {
        (None, _) => true,
        (Some(id), Some(repository)) => id.eq_ignore_ascii_case(&repository.id),
        (Some(_), None) => false,
    };
    let Some(ref_name) = ref_name else {
        return repository_matches;
    };
    let kind = scope
        .get("matchKind")
        .and_then(Value::as_str)
        .unwrap_or("Exact")
        .to_ascii_lowercase();
    let branch_matches = match (kind.as_str(), scope.get("refName").and_then(Value::as_str)) {
        ("defaultbranch", _) => repository.is_none_or(|r| {
            r.default_branch
                .as_deref()
                .is_some_and(|b| b.eq_ignore_ascii_case(ref_name))
        }),
        (_, None) => true,
        ("prefix", Some(prefix)) => ref_name
            .to_ascii_lowercase()
            .starts_with(&prefix.to_ascii_lowercase()),
        (_, Some(name)) => name.eq_ignore_ascii_case(ref_name),
    };
    repository_matches && branch_matches
}

/// Most policy configurations one page of the project listing holds.
pub const POLICIES_PAGE_MAX: usize = 1000;

/// `GET {project}/_apis/policy/configurations`: the project's policies, whatever their scope.
pub(super) async fn list_project_policies(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let project = project(&org, &request.params)?;
    let mut values: Vec<Value> = org
        .repositories
        .iter()
        .filter(|r| r.project_id == project.id)
        .flat_map(|r| org.policies_json(&request.urls, r))
        .chain(
            org.added_policies
                .iter()
                .filter(|(project_id, _)| *project_id == project.id)
                .map(|(_, policy)| policy.clone()),
        )
        .collect();
    values.sort_by_key(|p| p.get("id").and_then(Value::as_u64));
    super::runs::token_page(values, &request.query, "$top")
}

/// `[System.Id] > N` in a WIQL query, if present.
fn id_floor(query: &str) -> Option<u64> {
    let lower = query.to_ascii_lowercase();
    let at = lower.find("[system.id] >")?;
    let rest = &query[at + "[system.id] >".len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The time of a `[System.ChangedDate] >= '…'` clause, if the query has one. A time of day needs
/// `timePrecision=true` (Azure DevOps refuses it otherwise); a date alone is its midnight, UTC.
fn changed_since(
    query: &str,
    time_precision: bool,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, AdoError> {
    let Some((_, rest)) = query.split_once("[System.ChangedDate] >= '") else {
        return Ok(None);
    };
    let value = rest.split('\'').next().unwrap_or_default();
    if let Ok(date) = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Ok(date.and_hms_opt(0, 0, 0).map(|t| t.and_utc()));
    }
    let Some(time) = super::since::parse(value) else {
        return Err(AdoError::bad_argument(format!(
            "TF51005: The query references a field that expects a date, but '{value}' is not a date."
        )));
    };
    if !time_precision {
        return Err(AdoError::bad_argument(format!(
            "VS402625: Dates in WIQL queries must be dates without a time of day unless the query asks for time precision ('{value}')."
        )));
    }
    Ok(Some(time))
}

/// The value of a `[field] = 'value'` condition in a WIQL query, if present.
fn field_equals<'q>(query: &'q str, field: &str) -> Option<&'q str> {
    let lower = query.to_ascii_lowercase();
    let needle = format!("[{}] = '", field.to_ascii_lowercase());
    let start = lower.find(&needle)? + needle.len();
    let end = start + query[start..].find('\'')?;
    Some(&query[start..end])
}

/// WIQL takes one `ORDER BY`, at the end of the query, outside parentheses (keywords in any
/// case; quoted literals and bracketed field names are not read as keywords); anything else is
/// Azure DevOps' 400 syntax error.
fn check_order_by(query: &str) -> Result<(), AdoError> {
    let lower = query.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let (mut depth, mut quote, mut found) = (0i32, None::<u8>, Vec::new());
    let word = |at: usize, w: &str| {
        lower.get(at..at + w.len()) == Some(w)
            && (at == 0 || !bytes[at - 1].is_ascii_alphanumeric())
            && bytes
                .get(at + w.len())
                .is_none_or(|b| !b.is_ascii_alphanumeric())
    };
    for (at, byte) in bytes.iter().enumerate() {
        match (quote, *byte) {
            (Some(q), b) if b == q => quote = None,
            (Some(_), _) => {}
            (None, b'\'' | b'"') => quote = Some(*byte),
            (None, b'[') => quote = Some(b']'),
            (None, b'(') => depth += 1,
            (None, b')') => depth -= 1,
            (None, _) if word(at, "order") => {
                let rest = &lower[at + 5..];
                let gap = rest.len() - rest.trim_start().len();
                if gap > 0 && word(at + 5 + gap, "by") {
                    found.push(depth);
                }
            }
            _ => {}
        }
    }
    if found.len() > 1 || found.iter().any(|d| *d != 0) {
        return Err(AdoError::bad_argument(
            "TF51006: The query statement is missing a closing parenthesis or has an ORDER BY clause that is not at its end. Expecting end of string.",
        ));
    }
    Ok(())
}

pub(super) async fn wiql(
    request: AdoRequest,
    JsonBody(body): JsonBody,
) -> Result<Response, AdoError> {
    let Some(text) = body.get("query").and_then(Value::as_str) else {
        return Err(AdoError::bad_argument("The query parameter is required."));
    };
    request.state.traffic.record_query(
        "WIQL",
        [("query".to_string(), text.to_string())]
            .into_iter()
            .collect(),
    );
    check_order_by(text)?;
    let floor = id_floor(text).unwrap_or(0);
    let changed_since = changed_since(text, request.flag("timePrecision"))?;
    let state = field_equals(text, "System.State");
    let work_item_type = field_equals(text, "System.WorkItemType");
    let top = parse_count(&request.query, "$top")?;
    let org = request.organization();
    let project = project(&org, &request.params)?;
    let mut ids = org
        .work_items
        .iter()
        .filter(|w| w.project_id == project.id && w.id > floor)
        .filter(|w| changed_since.is_none_or(|since| w.changed_date >= since))
        .filter(|w| state.is_none_or(|s| s.eq_ignore_ascii_case(w.state)))
        .filter(|w| work_item_type.is_none_or(|t| t.eq_ignore_ascii_case(w.work_item_type)))
        .map(|w| w.id)
        .collect::<Vec<_>>();
    ids.sort_unstable();
    let limit = request.state.config.wiql_max_results;
    match top {
        None if ids.len() > limit => {
            return Err(AdoError::bad_argument(format!(
                "VS402337: The number of work items returned exceeds the size limit of {limit}. Change the query to return fewer items."
            )));
        }
        Some(top) => ids.truncate(top.min(limit)),
        None => {}
    }
    let org_url = &request.urls.organization_url;
    let items = ids
        .iter()
        .map(|id| json!({"id": id, "url": format!("{org_url}/{}/_apis/wit/workItems/{id}", project.id)}))
        .collect::<Vec<_>>();
    Ok(ok_json(json!({
        "queryType": "flat",
        "queryResultType": "workItem",
        "asOf": ado_time(chrono::Utc::now()),
        "columns": [{"referenceName": "System.Id", "name": "ID", "url": format!("{org_url}/_apis/wit/fields/System.Id")}],
        "sortColumns": [{"field": {"referenceName": "System.Id", "name": "ID"}, "descending": false}],
        "workItems": items,
    })))
}

pub(super) async fn batch(
    State(state): State<Arc<AdoState>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, AdoError> {
    let ids = body
        .get("ids")
        .and_then(Value::as_array)
        .map(|ids| ids.iter().filter_map(Value::as_u64).collect::<Vec<_>>())
        .unwrap_or_default();
    let expand = body
        .get("$expand")
        .and_then(Value::as_str)
        .unwrap_or("none")
        .to_ascii_lowercase();
    let omit = body
        .get("errorPolicy")
        .and_then(Value::as_str)
        .is_some_and(|p| p.eq_ignore_ascii_case("omit"));
    let urls = urls(&state, &headers);
    let org = lock(&state.organization);
    work_items_by_id(&org, &urls, None, &ids, &expand, omit)
}

/// `GET …/_apis/wit/workitems?ids=1,2,3`: the listed work items, like the batch but with the
/// ids, `$expand` and `errorPolicy` in the query and only the URL's project searched.
pub(super) async fn list_by_ids(request: AdoRequest) -> Result<Response, AdoError> {
    let raw = request.query.get("ids").cloned().unwrap_or_default();
    let ids = raw
        .split(',')
        .filter(|id| !id.trim().is_empty())
        .map(|id| {
            id.trim().parse::<u64>().map_err(|_| {
                AdoError::bad_argument(format!(
                    "The value '{raw}' is not valid for the parameter 'ids'."
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let expand = request
        .query
        .get("$expand")
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_else(|| "none".into());
    let omit = request
        .query
        .get("errorPolicy")
        .is_some_and(|p| p.eq_ignore_ascii_case("omit"));
    let org = request.organization();
    let scope = scoped_project(&org, &request.params)?.map(|p| p.id.clone());
    work_items_by_id(&org, &request.urls, scope.as_deref(), &ids, &expand, omit)
}

/// The work items of `ids` in that order (of the project `scope` only, when given); a missing
/// one is `null` under the `omit` error policy, else the whole answer is 404.
fn work_items_by_id(
    org: &Organization,
    urls: &Urls,
    scope: Option<&str>,
    ids: &[u64],
    expand: &str,
    omit: bool,
) -> Result<Response, AdoError> {
    if ids.is_empty() || ids.len() > WORK_ITEMS_BATCH_MAX {
        return Err(AdoError::bad_argument(format!(
            "VS403474: The number of ids must be between 1 and {WORK_ITEMS_BATCH_MAX}; got {}.",
            ids.len()
        )));
    }
    let mut values = Vec::with_capacity(ids.len());
    for &id in ids {
        let found = org
            .work_items
            .iter()
            .find(|w| w.id == id && scope.is_none_or(|p| p == w.project_id));
        match found {
            Some(item) => values.push(org.work_item_json(urls, item, expand)),
            None if omit => values.push(Value::Null),
            None => {
                return Ok(not_found(format!(
                    "TF401232: Work item {id} does not exist, or you do not have permissions to read it."
                )));
            }
        }
    }
    Ok(list(values))
}

pub(super) async fn work_item(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let scope = scoped_project(&org, &request.params)?.map(|p| p.id.clone());
    let id = request.id("id").unwrap_or(0);
    let expand = request
        .query
        .get("$expand")
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_else(|| "none".into());
    match org
        .work_items
        .iter()
        .find(|w| w.id == id && scope.as_ref().is_none_or(|p| *p == w.project_id))
    {
        Some(item) => Ok(ok_json(org.work_item_json(&request.urls, item, &expand))),
        None => Ok(not_found(format!(
            "TF401232: Work item {id} does not exist, or you do not have permissions to read it."
        ))),
    }
}

pub(super) async fn get_release(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let project = project(&org, &request.params)?;
    let number = request.id("releaseId").unwrap_or(0);
    if number == 0 || number > org.releases_per_project {
        return Ok(not_found(format!(
            "VS402853: Release with id {number} does not exist."
        )));
    }
    Ok(ok_json(org.release_json(&request.urls, project, number)))
}

pub(super) async fn list_subscriptions(request: AdoRequest) -> Result<Response, AdoError> {
    let publisher = request.query.get("publisherId").map(String::as_str);
    super::live::check_hook_host(&request.headers, &request.query, publisher)?;
    let subscriptions = lock(&request.state.subscriptions);
    let field = |s: &Value, name: &str| s.get(name).and_then(Value::as_str).map(String::from);
    let values = subscriptions
        .iter()
        .filter(|s| {
            request
                .query
                .get("publisherId")
                .is_none_or(|p| field(s, "publisherId").as_ref() == Some(p))
                && request
                    .query
                    .get("eventType")
                    .is_none_or(|e| field(s, "eventType").as_ref() == Some(e))
                && super::live::on_this_host(s, &request.urls)
        })
        .cloned()
        .map(super::live::masked)
        .collect();
    Ok(list(values))
}

fn subscription_from(
    state: &AdoState,
    headers: &HeaderMap,
    id: &str,
    body: &[u8],
) -> Result<Value, AdoError> {
    let mut body = json_body(body)?;
    let Value::Object(map) = &mut body else {
        return Err(AdoError::bad_argument(
            "The subscription must be a JSON object.",
        ));
    };
    for required in ["publisherId", "eventType", "consumerId", "consumerActionId"] {
        if map.get(required).and_then(Value::as_str).is_none() {
            return Err(AdoError::bad_argument(format!(
                "The subscription field '{required}' is required."
            )));
        }
    }
    let urls = urls(state, headers);
    map.insert("id".into(), json!(id));
    if !map.get("status").is_some_and(Value::is_string) {
        map.insert("status".into(), json!("enabled"));
    }
    map.insert(
        "url".into(),
        json!(format!(
            "{}/_apis/hooks/subscriptions/{id}",
            urls.organization_url
        )),
    );
    if !map.get("publisherInputs").is_some_and(Value::is_object) {
        map.insert("publisherInputs".into(), json!({}));
    }
    super::live::decorate_subscription(&mut body);
    Ok(body)
}

pub(super) async fn create_subscription(
    request: AdoRequest,
    body: axum::body::Bytes,
) -> Result<Response, AdoError> {
    let id = uuid::Uuid::new_v4().to_string();
    let subscription = subscription_from(&request.state, &request.headers, &id, &body)?;
    let publisher = subscription.get("publisherId").and_then(Value::as_str);
    super::live::check_hook_host(&request.headers, &request.query, publisher)?;
    lock(&request.state.subscriptions).push(subscription.clone());
    Ok(ok_json(super::live::masked(subscription)))
}

pub(super) async fn update_subscription(
    request: AdoRequest,
    body: axum::body::Bytes,
) -> Result<Response, AdoError> {
    let id = request.param("subscriptionId");
    let subscription = subscription_from(&request.state, &request.headers, &id, &body)?;
    let publisher = subscription.get("publisherId").and_then(Value::as_str);
    super::live::check_hook_host(&request.headers, &request.query, publisher)?;
    let mut subscriptions = lock(&request.state.subscriptions);
    match subscriptions
        .iter_mut()
        .find(|s| s.get("id").and_then(Value::as_str) == Some(id.as_str()))
    {
        Some(existing) => {
            *existing = subscription.clone();
            Ok(ok_json(super::live::masked(subscription)))
        }
        None => Ok(not_found(format!("The subscription {id} does not exist."))),
    }
}

pub(super) async fn delete_subscription(
    State(state): State<Arc<AdoState>>,
    Path(params): Params,
) -> Response {
    let id = params.get("subscriptionId").cloned().unwrap_or_default();
    lock(&state.subscriptions).retain(|s| s.get("id").and_then(Value::as_str) != Some(id.as_str()));
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wiql_field_conditions_are_read_from_the_query() {
        let query = "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = 'p' AND [System.State] = 'Active' AND [System.WorkItemType] = 'Bug'";
        assert_eq!(field_equals(query, "System.State"), Some("Active"));
        assert_eq!(field_equals(query, "System.WorkItemType"), Some("Bug"));
        assert_eq!(field_equals(query, "System.Title"), None);
    }

    #[test]
    fn order_by_is_taken_once_at_the_end_outside_parentheses() {
        for ok in [
            "SELECT [System.Id] FROM WorkItems WHERE [System.Id] > 0 ORDER BY [System.Id] ASC",
            "SELECT [System.Id] FROM WorkItems WHERE ([System.Title] CONTAINS 'order by') order by [System.Id]",
            "SELECT [System.Id] FROM WorkItems WHERE [Custom.Order By] = 1",
        ] {
            assert!(check_order_by(ok).is_ok(), "{ok}");
        }
        for bad in [
            "SELECT [System.Id] FROM WorkItems WHERE ([System.State] = 'New' ORDER BY [System.ChangedDate]) ORDER BY [System.Id] ASC",
            "SELECT [System.Id] FROM WorkItems ORDER BY [System.Id] ORDER  BY [System.Title]",
        ] {
            assert!(check_order_by(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wiql_id_floor_is_read_from_the_query() {
        assert_eq!(
            id_floor(
                "SELECT [System.Id] FROM WorkItems WHERE [System.Id] > 42 ORDER BY [System.Id]"
            ),
            Some(42)
        );
        assert_eq!(id_floor("SELECT [System.Id] FROM WorkItems"), None);
    }
}
