//! Azure DevOps calls about people and team structure: team members and settings (area paths,
//! iterations), area classification trees, project tags, and the identity services — graph
//! users, groups, memberships and subject lookup on `vssps`, user entitlements on `vsaex`.

use serde_json::{Map, Value};

use super::{AdoClient, AdoError, Page, ProjectId, TeamId, reads, values};

/// `api-version` of the graph and project-properties endpoints (still in preview).
pub const GRAPH_API_VERSION: &str = "7.1-preview.1";
/// Most descriptors one `subjectlookup` call takes.
pub const SUBJECT_LOOKUP_BATCH: usize = 500;
/// The property name prefix Azure DevOps stores project tags under.
pub const PROJECT_TAG_PREFIX: &str = "Microsoft.TeamFoundation.Project.Tag.";

/// Which way a membership query goes from a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The groups the subject belongs to.
    Up,
    /// The subject's (a group's) direct members.
    Down,
}

/// How the entitlements list pages, which depends on the `api-version` asked for.
#[derive(Debug, Clone, Copy)]
pub enum EntitlementsCursor<'a> {
    /// api-version 7 and later (or unset): a continuation token, items under `items`.
    Token(Option<&'a str>),
    /// Older api-versions: `top`/`skip`, items under `value`.
    Offset { top: usize, skip: usize },
}

fn object(url: &str, body: Value) -> Result<Map<String, Value>, AdoError> {
    match body {
        Value::Object(map) => Ok(map),
        _ => Err(AdoError::Decode {
            url: url.to_string(),
            detail: "expected a JSON object".into(),
        }),
    }
}

/// A continuation token from the body (`"continuationToken": "…"` or `["…"]`).
fn body_token(map: &Map<String, Value>) -> Option<String> {
    match map.get("continuationToken")? {
        Value::String(token) => Some(token.clone()),
        Value::Array(tokens) => tokens.first().and_then(Value::as_str).map(String::from),
        _ => None,
    }
    .filter(|t| !t.is_empty())
}

impl AdoClient {
    /// One `$top`/`$skip` page of `GET {org}/_apis/projects/{project}/teams/{team}/members`.
    pub async fn team_members_page(
        &self,
        project_id: &ProjectId,
        team_id: &TeamId,
        top: usize,
        skip: usize,
    ) -> Result<Vec<Value>, AdoError> {
        let url = self.url(&format!(
            "_apis/projects/{project_id}/teams/{team_id}/members"
        ));
        self.offset_page(&url, &[], top, skip).await
    }

    reads! {
        /// `GET {org}/{project}/{team}/_apis/work/teamsettings/teamfieldvalues` (the team's area
        /// paths).
        team_field_values(project_id: &ProjectId, team_id: &TeamId) -> Value
            = "{project_id}/{team_id}/_apis/work/teamsettings/teamfieldvalues";
        /// `GET {org}/{project}/{team}/_apis/work/teamsettings/iterations` (the API does not
        /// page it).
        team_iterations(project_id: &ProjectId, team_id: &TeamId) -> Vec<Value>
            = "{project_id}/{team_id}/_apis/work/teamsettings/iterations";
    }

    /// `GET {org}/{project}/_apis/wit/classificationnodes/Areas[?$depth=]`: the root area node,
    /// its `children` down to `depth` levels.
    pub async fn area_tree(
        &self,
        project_id: &ProjectId,
        depth: Option<u64>,
    ) -> Result<Value, AdoError> {
        let url = self.url(&format!("{project_id}/_apis/wit/classificationnodes/Areas"));
        let depth = depth.map(|d| d.to_string());
        let mut query = Vec::new();
        if let Some(depth) = &depth {
            query.push(("$depth", depth.as_str()));
        }
        Ok(self.get_json(&url, &query).await?.body)
    }

    /// The tags of a project (`GET {org}/_apis/projects/{id}/properties`, names under
    /// [`PROJECT_TAG_PREFIX`], prefix stripped).
    pub async fn project_tags(&self, project_id: &ProjectId) -> Result<Vec<String>, AdoError> {
        let url = self.url(&format!("_apis/projects/{project_id}/properties"));
        let keys = format!("{PROJECT_TAG_PREFIX}*");
        let query = [("keys", keys.as_str()), ("api-version", GRAPH_API_VERSION)];
        let properties = values(&url, self.get_json(&url, &query).await?.body)?;
        Ok(properties
            .iter()
            .filter_map(|p| p.get("name").and_then(Value::as_str))
            .filter_map(|name| name.strip_prefix(PROJECT_TAG_PREFIX))
            .map(String::from)
            .collect())
    }

    async fn graph_page(
        &self,
        path: &str,
        extra: &[(&str, &str)],
        continuation_token: Option<&str>,
    ) -> Result<Page, AdoError> {
        let url = self.service_url("vssps", path);
        let mut query = extra.to_vec();
        query.push(("api-version", GRAPH_API_VERSION));
        if let Some(token) = continuation_token {
            query.push(("continuationToken", token));
        }
        let response = self.get_json(&url, &query).await?;
        Ok(Page {
            items: values(&url, response.body)?,
            continuation_token: response.continuation_token,
        })
    }

    /// One page of `GET {vssps}/_apis/graph/users[?subjectTypes=]` (the server sizes pages).
    pub async fn graph_users_page(
        &self,
        subject_types: Option<&str>,
        continuation_token: Option<&str>,
    ) -> Result<Page, AdoError> {
        let extra: Vec<(&str, &str)> = subject_types
            .map(|types| vec![("subjectTypes", types)])
            .unwrap_or_default();
        self.graph_page("_apis/graph/users", &extra, continuation_token)
            .await
    }

    /// One page of `GET {vssps}/_apis/graph/groups`.
    pub async fn graph_groups_page(
        &self,
        continuation_token: Option<&str>,
    ) -> Result<Page, AdoError> {
        self.graph_page("_apis/graph/groups", &[], continuation_token)
            .await
    }

    /// `GET {vssps}/_apis/graph/memberships/{descriptor}?direction=`: the subject's direct
    /// memberships (`containerDescriptor`, `memberDescriptor`).
    pub async fn memberships(
        &self,
        descriptor: &str,
        direction: Direction,
    ) -> Result<Vec<Value>, AdoError> {
        let url = self.service_url("vssps", &format!("_apis/graph/memberships/{descriptor}"));
        let direction = match direction {
            Direction::Up => "up",
            Direction::Down => "down",
        };
        let query = [("direction", direction), ("api-version", GRAPH_API_VERSION)];
        values(&url, self.get_json(&url, &query).await?.body)
    }

    /// `POST {vssps}/_apis/graph/subjectlookup` for at most [`SUBJECT_LOOKUP_BATCH`]
    /// descriptors: the subjects found, by descriptor (unknown ones are absent).
    pub async fn subject_lookup(
        &self,
        descriptors: &[String],
    ) -> Result<Map<String, Value>, AdoError> {
        let url = self.service_url("vssps", "_apis/graph/subjectlookup");
        let keys: Vec<Value> = descriptors
            .iter()
            .map(|d| serde_json::json!({ "descriptor": d }))
            .collect();
        let body = serde_json::json!({ "lookupKeys": keys });
        let response = self
            .post_json(&url, &[("api-version", GRAPH_API_VERSION)], &body)
            .await?;
        match object(&url, response.body)?.remove("value") {
            Some(Value::Object(found)) => Ok(found),
            Some(Value::Null) | None => Ok(Map::new()),
            Some(_) => Err(AdoError::Decode {
                url,
                detail: "expected \"value\" to be an object keyed by descriptor".into(),
            }),
        }
    }

    /// One page of `GET {vsaex}/_apis/userentitlements` with `select` (comma list, when not
    /// empty) and `api_version` (the client's own when `None`).
    pub async fn entitlements_page(
        &self,
        select: &str,
        api_version: Option<&str>,
        cursor: EntitlementsCursor<'_>,
    ) -> Result<Page, AdoError> {
        let url = self.service_url("vsaex", "_apis/userentitlements");
        let offsets = match cursor {
            EntitlementsCursor::Offset { top, skip } => Some((top.to_string(), skip.to_string())),
            EntitlementsCursor::Token(_) => None,
        };
        let mut query: Vec<(&str, &str)> = Vec::new();
        if !select.is_empty() {
            query.push(("select", select));
        }
        if let Some(version) = api_version {
            query.push(("api-version", version));
        }
        if let Some((top, skip)) = &offsets {
            query.push(("top", top.as_str()));
            query.push(("skip", skip.as_str()));
        }
        if let EntitlementsCursor::Token(Some(token)) = cursor {
            query.push(("continuationToken", token));
        }
        let response = self.get_json(&url, &query).await?;
        let header_token = response.continuation_token;
        let mut map = object(&url, response.body)?;
        let key = match cursor {
            EntitlementsCursor::Token(_) => "items",
            EntitlementsCursor::Offset { .. } => "value",
        };
        let continuation_token = body_token(&map).or(header_token);
        match map.remove(key) {
            Some(Value::Array(items)) => Ok(Page {
                items,
                continuation_token,
            }),
            _ => Err(AdoError::Decode {
                url,
                detail: format!("expected an object with an \"{key}\" array"),
            }),
        }
    }
}
