//! Simulated Azure DevOps identity and team-structure endpoints (data from [`super::directory`]).
//! The `vssps` (graph) and `vsaex` (entitlements) services are served on the organization's own
//! host, as Azure DevOps Server does.
//!
//! | key | answer |
//! |---|---|
//! | `GET /{org}/_apis/graph/users` | graph users, `subjectTypes` (descriptor prefixes), `identity_page_size` a page, `continuationToken` / `x-ms-continuationtoken` header |
//! | `GET /{org}/_apis/graph/groups` | graph groups, paged the same way |
//! | `GET /{org}/_apis/graph/memberships/{descriptor}` | `direction=up` (default) or `down`: `{containerDescriptor, memberDescriptor}`; unknown subject → 404 |
//! | `POST /{org}/_apis/graph/subjectlookup` | `{lookupKeys:[{descriptor}]}` → `{value: {descriptor: subject}}` (unknown ones omitted) |
//! | `GET /{org}/_apis/userentitlements` | api-version ≥ 7: `{items, members, continuationToken, totalCount}`, `identity_page_size` a page, token in the body; older: `top`/`skip`, `{count, value}`; `select` |
//! | `GET /{org}/_apis/projects/{project}/teams/{team}/members` | team members `{identity, isTeamAdmin}`, `$top` (default 100)/`$skip` |
//! | `GET /{org}/{project}/{team}/_apis/work/teamsettings/teamfieldvalues` | the team's area paths |
//! | `GET /{org}/{project}/{team}/_apis/work/teamsettings/iterations` | the team's iterations (`$timeframe=current` filters) |
//! | `GET /{org}/{project}/_apis/wit/classificationnodes/{group}` | `Areas`: the area tree down to `$depth` (default 0) |
//! | `GET /{org}/_apis/projects/{project}/properties` | project properties, `keys` (comma list, trailing `*` wildcard) |

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::AdoState;
use super::error::AdoError;
use super::request::{AdoRequest, JsonBody};
use super::routes::{
    continuation_token, continued_list, list, ok_json, parse_count, required_array,
};
use super::work::{project, team_project};
use crate::traffic::lock;

/// A refusal of the graph service (exception `type_key` of its assembly).
fn error(status: StatusCode, message: &str, type_key: &str) -> AdoError {
    AdoError::service(
        status,
        message,
        format!(
            "Microsoft.VisualStudio.Services.Graph.{type_key}, Microsoft.VisualStudio.Services.WebApi"
        ),
    )
}

/// One server-sized page of `values` from the request's token, with `x-ms-continuationtoken`
/// while more remain (the graph APIs take no page size).
fn graph_page(
    state: &AdoState,
    values: Vec<Value>,
    query: &HashMap<String, String>,
) -> Result<Response, AdoError> {
    let from = continuation_token(query)?.unwrap_or(0);
    let size = state.config.identity_page_size.max(1);
    Ok(continued_list(values, from, size))
}

pub(super) async fn graph_users(request: AdoRequest) -> Result<Response, AdoError> {
    let kinds = request.query_list("subjectTypes");
    let values = {
        let org = request.organization();
        (0..org.users.len())
            .map(|u| org.graph_user_json(&request.urls, u))
            .filter(|user| {
                let descriptor = user["descriptor"].as_str().unwrap_or_default();
                kinds.is_empty()
                    || kinds
                        .iter()
                        .any(|k| descriptor.starts_with(&format!("{k}.")))
            })
            .collect()
    };
    graph_page(&request.state, values, &request.query)
}

pub(super) async fn graph_groups(request: AdoRequest) -> Result<Response, AdoError> {
    let values = {
        let org = request.organization();
        org.groups(&request.urls)
            .iter()
            .map(|g| org.group_json(&request.urls, g))
            .collect()
    };
    graph_page(&request.state, values, &request.query)
}

fn membership(graph: &str, container: &str, member: &str) -> Value {
    json!({
        "_links": {
            "self": {"href": format!("{graph}/Memberships/{member}/{container}")},
            "member": {"href": format!("{graph}/Subjects/{member}")},
            "container": {"href": format!("{graph}/Subjects/{container}")},
        },
        "containerDescriptor": container,
        "memberDescriptor": member,
    })
}

pub(super) async fn memberships(request: AdoRequest) -> Result<Response, AdoError> {
    let graph = format!("{}/_apis/Graph", request.urls.organization_url);
    let descriptor = request.param("descriptor");
    let down = request
        .query
        .get("direction")
        .is_some_and(|d| d.eq_ignore_ascii_case("down"));
    let org = request.organization();
    let groups = org.groups(&request.urls);
    if org
        .subject_json(&request.urls, &groups, &descriptor)
        .is_none()
    {
        return Err(error(
            StatusCode::NOT_FOUND,
            &format!("VS860018: The subject with descriptor '{descriptor}' could not be found."),
            "GraphSubjectNotFoundException",
        ));
    }
    let user_descriptor = |u: usize| {
        org.users
            .get(u)
            .map(|user| super::directory::user_descriptor(&user.id))
    };
    let values: Vec<Value> = if down {
        groups
            .iter()
            .filter(|g| g.descriptor == descriptor)
            .flat_map(|g| {
                g.users
                    .iter()
                    .filter_map(|u| user_descriptor(*u))
                    .chain(g.groups.iter().cloned())
                    .map(|member| membership(&graph, &g.descriptor, &member))
                    .collect::<Vec<_>>()
            })
            .collect()
    } else {
        groups
            .iter()
            .filter(|g| {
                g.groups.contains(&descriptor)
                    || g.users
                        .iter()
                        .any(|u| user_descriptor(*u).as_deref() == Some(descriptor.as_str()))
            })
            .map(|g| membership(&graph, &g.descriptor, &descriptor))
            .collect()
    };
    Ok(list(values))
}

pub(super) async fn subject_lookup(
    request: AdoRequest,
    JsonBody(batch): JsonBody,
) -> Result<Response, AdoError> {
    let keys = required_array(
        &batch,
        "lookupKeys",
        "Value cannot be null. Parameter name: subjectLookup.LookupKeys",
    )?;
    let org = request.organization();
    let groups = org.groups(&request.urls);
    let mut found = serde_json::Map::new();
    for descriptor in keys
        .iter()
        .filter_map(|k| k.get("descriptor").and_then(Value::as_str))
    {
        if let Some(subject) = org.subject_json(&request.urls, &groups, descriptor) {
            found.insert(descriptor.to_string(), subject);
        }
    }
    Ok(ok_json(json!({"count": found.len(), "value": found})))
}

fn api_major(query: &HashMap<String, String>) -> u32 {
    query
        .get("api-version")
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.trim().parse().ok())
        .unwrap_or(7)
}

pub(super) async fn entitlements(request: AdoRequest) -> Result<Response, AdoError> {
    let select = request.query_list("select");
    let all: Vec<Value> = {
        let org = request.organization();
        (0..org.users.len())
            .map(|u| org.entitlement_json(&request.urls, u, &select))
            .collect()
    };
    let total = all.len();
    if api_major(&request.query) < 7 {
        let top = parse_count(&request.query, "top")?.unwrap_or(100).max(1);
        let skip = parse_count(&request.query, "skip")?.unwrap_or(0);
        return Ok(list(all.into_iter().skip(skip).take(top).collect()));
    }
    let from = continuation_token(&request.query)?.unwrap_or(0);
    let size = request.state.config.identity_page_size.max(1);
    let page: Vec<Value> = all.into_iter().skip(from).take(size).collect();
    let token = (from + size < total).then(|| (from + size).to_string());
    Ok(ok_json(json!({
        "members": page,
        "items": page,
        "continuationToken": token,
        "totalCount": total,
    })))
}

/// The graph APIs' refusal of a team the project does not have.
fn unknown_team(team: String) -> AdoError {
    error(
        StatusCode::NOT_FOUND,
        &format!("VS403155: The team '{team}' does not exist."),
        "TeamNotFoundException",
    )
}

pub(super) async fn team_members(request: AdoRequest) -> Result<Response, AdoError> {
    let top = parse_count(&request.query, "$top")?.unwrap_or(100).max(1);
    let skip = parse_count(&request.query, "$skip")?.unwrap_or(0);
    let org = request.organization();
    let project = team_project(&org, &request.params, unknown_team)?;
    let members = org.team_members_json(&request.urls, project);
    Ok(list(members.into_iter().skip(skip).take(top).collect()))
}

pub(super) async fn team_field_values(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let project = team_project(&org, &request.params, unknown_team)?;
    Ok(ok_json(org.team_field_values_json(&request.urls, project)))
}

pub(super) async fn iterations(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let project = team_project(&org, &request.params, unknown_team)?;
    let frame = request
        .query
        .get("$timeframe")
        .map(|f| f.to_ascii_lowercase());
    if lock(&request.state.teams_without_iterations).contains(&project.id) {
        return Ok(list(Vec::new()));
    }
    let values = org
        .iterations_json(&request.urls, project)
        .into_iter()
        .filter(|i| {
            frame
                .as_deref()
                .is_none_or(|f| i["attributes"]["timeFrame"] == f)
        })
        .collect();
    Ok(list(values))
}

pub(super) async fn classification_nodes(request: AdoRequest) -> Result<Response, AdoError> {
    let depth = parse_count(&request.query, "$depth")?.unwrap_or(0);
    let group = request.param("group");
    let org = request.organization();
    let project = project(&org, &request.params)?;
    if !group.eq_ignore_ascii_case("areas") {
        return Err(error(
            StatusCode::NOT_FOUND,
            &format!("VS402485: The node '{group}' does not exist."),
            "WorkItemTrackingTreeNodeNotFoundException",
        ));
    }
    let tree = org.area_tree(project);
    Ok(ok_json(org.area_json(&request.urls, project, &tree, depth)))
}

pub(super) async fn project_properties(request: AdoRequest) -> Result<Response, AdoError> {
    let keys: Vec<String> = request
        .query
        .get("keys")
        .map(|k| k.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();
    let org = request.organization();
    let project = project(&org, &request.params)?;
    let matches = |name: &str| {
        keys.is_empty()
            || keys.iter().any(|key| match key.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == key,
            })
    };
    Ok(list(
        org.project_properties(project)
            .into_iter()
            .filter(|p| matches(p["name"].as_str().unwrap_or_default()))
            .collect(),
    ))
}
