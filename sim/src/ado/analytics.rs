//! Simulated Azure DevOps Analytics (OData v4.0-preview): the `PipelineRuns` entity set of a
//! project, as Microsoft's Analytics docs describe it, over the runs [`super::runs`] serves
//! (the seeded ones and those started through the API, once completed).
//!
//! | key | answer |
//! |---|---|
//! | `GET /{org}/{project}/_odata/v4.0-preview/PipelineRuns` | `{"@odata.context", "value": [rows], "@odata.nextLink"?}` |
//!
//! - Host: on Azure DevOps Services only `analytics.dev.azure.com` serves it (any other
//!   `*dev.azure.com` host answers 404); the plain simulator serves it on its one host, as
//!   Azure DevOps Server does on the collection URL. Auth and organization as every route.
//! - Rows are completed runs: `PipelineRunId`, `RunNumber`, `RunOutcome` (`Succeed`, `Failed`,
//!   `Canceled`, `PartiallySucceeded`), `QueuedDate`, `StartedDate`, `CompletedDate`, and the
//!   `Pipeline` navigation property (`PipelineId`, `PipelineName`) with `$expand`.
//! - `$select` (unknown property: 400), `$expand=Pipeline[($select=…)]`, `$filter` of
//!   `CompletedDate ge|gt|le|lt <time>` clauses joined by `and` (a time without offset, or a
//!   `+` sent unencoded and so read as a space: 400 with Analytics' message), `$orderby`
//!   `CompletedDate|PipelineRunId [asc|desc]`, `$top` (caps the whole answer).
//! - Server-driven paging: past [`super::AdoSimConfig::analytics_page_size`] rows a page ends
//!   with `@odata.nextLink`, the query as asked plus `$skiptoken`.
//! - Without `$select` every property is returned, with the `@vsts.warnings` Analytics adds.
//! - Errors are OData's: `{"error": {"code": "0", "message": …}}` with 400.

use std::collections::HashMap;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::error::{AdoError, json_headers};
use super::request::AdoRequest;
use super::routes::ok_json;
use super::since::parse;
use super::work::project;

/// The entity set's path under a project.
pub const PIPELINE_RUNS_PATH: &str = "_odata/v4.0-preview/PipelineRuns";

const PROPERTIES: [&str; 6] = [
    "PipelineRunId",
    "RunNumber",
    "RunOutcome",
    "QueuedDate",
    "StartedDate",
    "CompletedDate",
];
const PIPELINE_PROPERTIES: [&str; 2] = ["PipelineId", "PipelineName"];

/// An OData 400.
fn invalid(message: impl Into<String>) -> Response {
    let body = json!({"error": {"code": "0", "message": message.into()}});
    (StatusCode::BAD_REQUEST, json_headers(), body.to_string()).into_response()
}

/// The message of a 400 for a query Analytics does not accept.
fn query_invalid(detail: &str) -> String {
    format!("The query specified in the URI is not valid. {detail}")
}

/// Whether the request reached a Services host other than Analytics'.
fn wrong_host(request: &AdoRequest) -> bool {
    let host = request
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.split(':').next())
        .unwrap_or_default()
        .to_ascii_lowercase();
    host.ends_with("dev.azure.com") && host != "analytics.dev.azure.com"
}

fn outcome(result: Option<&str>) -> &'static str {
    match result {
        Some("succeeded") => "Succeed",
        Some("failed") => "Failed",
        Some("canceled") => "Canceled",
        Some("partiallySucceeded") => "PartiallySucceeded",
        _ => "None",
    }
}

/// A run as an Analytics row with every property, and its completion time; `None` for a run
/// not completed (Analytics has only completed runs).
fn row(run: &Value) -> Option<(DateTime<Utc>, Map<String, Value>)> {
    let completed = run.get("finishedDate").and_then(Value::as_str)?;
    let completed_at = parse(completed)?;
    let created = run.get("createdDate").cloned().unwrap_or(Value::Null);
    let mut row = Map::new();
    row.insert("PipelineRunId".into(), run["id"].clone());
    row.insert("RunNumber".into(), run["name"].clone());
    row.insert(
        "RunOutcome".into(),
        json!(outcome(run.get("result").and_then(Value::as_str))),
    );
    row.insert("QueuedDate".into(), created.clone());
    row.insert("StartedDate".into(), created);
    row.insert("CompletedDate".into(), json!(completed));
    row.insert(
        "Pipeline".into(),
        json!({"PipelineId": run["pipeline"]["id"], "PipelineName": run["pipeline"]["name"]}),
    );
    Some((completed_at, row))
}

/// One `CompletedDate <op> <time>` clause.
struct Clause {
    op: String,
    time: DateTime<Utc>,
}

impl Clause {
    fn keeps(&self, t: DateTime<Utc>) -> bool {
        match self.op.as_str() {
            "ge" => t >= self.time,
            "gt" => t > self.time,
            "le" => t <= self.time,
            "lt" => t < self.time,
            _ => t == self.time,
        }
    }
}

/// The clauses of `$filter`, or the 400 Analytics answers.
fn clauses(filter: &str) -> Result<Vec<Clause>, String> {
    let mut clauses = Vec::new();
    let mut position = 0;
    for part in filter.split(" and ") {
        let tokens: Vec<&str> = part.split_whitespace().collect();
        if tokens.len() != 3 {
            let at = position + tokens.iter().take(3).map(|t| t.len() + 1).sum::<usize>();
            return Err(query_invalid(&format!(
                "Syntax error at position {at} in '{filter}'."
            )));
        }
        let (property, op, value) = (tokens[0], tokens[1], tokens[2]);
        if property != "CompletedDate" {
            return Err(query_invalid(&format!(
                "The simulator filters PipelineRuns on CompletedDate only, not '{property}'."
            )));
        }
        if !["ge", "gt", "le", "lt", "eq"].contains(&op) {
            return Err(query_invalid(&format!(
                "Syntax error at position {} in '{filter}'.",
                position + property.len() + 1
            )));
        }
        let has_offset = value.ends_with('Z')
            || value
                .get(value.len().saturating_sub(6)..)
                .is_some_and(|tail| tail.starts_with(['+', '-']) && tail.contains(':'));
        if !has_offset {
            return Err(query_invalid(
                "No datetime offset was specified.  Please use either of these formats YYYY-MM-ddZ to specify everything since midnight or yyyy-MM-ddThh:mm-hh:mm (ISO 8601 standard representation of dates and times) to specify the offset.",
            ));
        }
        let time = parse(value).ok_or_else(|| {
            query_invalid(&format!(
                "The DateTimeOffset text '{value}' should be in format 'yyyy-mm-ddThh:mm:ss('.'s+)?(zzzzzz)?' and each field value is within valid range."
            ))
        })?;
        clauses.push(Clause {
            op: op.to_string(),
            time,
        });
        position += part.len() + 5;
    }
    Ok(clauses)
}

/// The properties `$select` names (every one without it).
fn selected(query: &HashMap<String, String>) -> Result<Vec<String>, String> {
    let Some(select) = query.get("$select") else {
        return Ok(PROPERTIES.iter().map(|p| p.to_string()).collect());
    };
    select
        .split(',')
        .map(str::trim)
        .map(|name| {
            if PROPERTIES.contains(&name) {
                Ok(name.to_string())
            } else {
                Err(query_invalid(&format!(
                    "Could not find a property named '{name}' on type 'Microsoft.VisualStudio.Services.Analytics.Model.PipelineRun'."
                )))
            }
        })
        .collect()
}

/// The `Pipeline` properties `$expand` asks for; `None` without `$expand`.
fn expanded(query: &HashMap<String, String>) -> Result<Option<Vec<String>>, String> {
    let Some(expand) = query.get("$expand").map(|e| e.trim()) else {
        return Ok(None);
    };
    if expand == "Pipeline" {
        return Ok(Some(
            PIPELINE_PROPERTIES.iter().map(|p| p.to_string()).collect(),
        ));
    }
    let inner = expand
        .strip_prefix("Pipeline(")
        .and_then(|rest| rest.strip_suffix(')'))
        .and_then(|inner| inner.strip_prefix("$select="))
        .ok_or_else(|| {
            query_invalid(&format!(
                "The simulator expands only Pipeline on PipelineRuns, not '{expand}'."
            ))
        })?;
    inner
        .split(',')
        .map(str::trim)
        .map(|name| {
            if PIPELINE_PROPERTIES.contains(&name) {
                Ok(name.to_string())
            } else {
                Err(query_invalid(&format!(
                    "Could not find a property named '{name}' on type 'Microsoft.VisualStudio.Services.Analytics.Model.Pipeline'."
                )))
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn count(query: &HashMap<String, String>, name: &str) -> Result<Option<usize>, String> {
    query
        .get(name)
        .map(|v| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| query_invalid(&format!("Invalid value '{v}' for {name}.")))
        })
        .transpose()
}

/// Percent-encodes a query component (everything but RFC 3986's unreserved characters and
/// the `$`, `(`, `)`, `,` OData keeps readable).
fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
            | b'$'
            | b'('
            | b')'
            | b',' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

pub(super) async fn pipeline_runs(request: AdoRequest) -> Result<Response, AdoError> {
    if wrong_host(&request) {
        return Err(AdoError::NoRoute);
    }
    let query = &request.query;
    let answer = (|| {
        let select = selected(query)?;
        let expand = expanded(query)?;
        let filter = query
            .get("$filter")
            .map(|f| clauses(f))
            .transpose()?
            .unwrap_or_default();
        let top = count(query, "$top")?;
        let skip = count(query, "$skip")?.unwrap_or(0);
        let skiptoken = count(query, "$skiptoken")?.unwrap_or(0);
        let order = query
            .get("$orderby")
            .map(|o| o.trim().to_string())
            .unwrap_or_else(|| "PipelineRunId asc".into());
        Ok::<_, String>((select, expand, filter, top, skip, skiptoken, order))
    })();
    let (select, expand, filter, top, skip, skiptoken, order) = match answer {
        Ok(parts) => parts,
        Err(refusal) => return Ok(invalid(refusal)),
    };
    let (project_id, mut rows) = {
        let org = request.organization();
        let project = project(&org, &request.params)?;
        let rows: Vec<(DateTime<Utc>, Map<String, Value>)> = org
            .runs(&request.state, &request.urls, project, None)
            .iter()
            .filter_map(row)
            .filter(|(completed, _)| filter.iter().all(|c| c.keeps(*completed)))
            .collect();
        (project.id.clone(), rows)
    };
    let mut words = order.split_whitespace();
    let (by, direction) = (words.next().unwrap_or_default(), words.next());
    match by {
        "CompletedDate" => rows.sort_by_key(|(completed, _)| *completed),
        "PipelineRunId" => rows.sort_by_key(|(_, r)| r["PipelineRunId"].as_u64()),
        other => {
            return Ok(invalid(query_invalid(&format!(
                "The simulator orders PipelineRuns by CompletedDate or PipelineRunId, not '{other}'."
            ))));
        }
    }
    match direction {
        Some("desc") => rows.reverse(),
        None | Some("asc") => {}
        Some(other) => {
            return Ok(invalid(query_invalid(&format!(
                "Syntax error at position {} in '{order}': '{other}'.",
                by.len() + 1
            ))));
        }
    }
    let total = top.map_or(rows.len(), |top| rows.len().min(skip + top));
    let page_size = request.state.config.analytics_page_size.max(1);
    let start = skip + skiptoken;
    let end = total.min(start + page_size);
    let value: Vec<Value> = rows
        .get(start..end.max(start))
        .unwrap_or_default()
        .iter()
        .map(|(_, row)| {
            let mut out = Map::new();
            for name in &select {
                out.insert(name.clone(), row[name].clone());
            }
            if let Some(properties) = &expand {
                let pipeline: Map<String, Value> = properties
                    .iter()
                    .map(|p| (p.clone(), row["Pipeline"][p].clone()))
                    .collect();
                out.insert("Pipeline".into(), Value::Object(pipeline));
            }
            Value::Object(out)
        })
        .collect();
    let root = format!(
        "{}/{project_id}/_odata/v4.0-preview",
        request.urls.organization_url
    );
    let mut shape = select.join(",");
    if let Some(properties) = &expand {
        shape.push_str(&format!(",Pipeline({})", properties.join(",")));
    }
    let mut body = json!({
        "@odata.context": format!("{root}/$metadata#PipelineRuns({shape})"),
        "value": value,
    });
    if !query.contains_key("$select") {
        body["@vsts.warnings"] = json!([
            "VS403507: The specified query does not include a $select or $apply clause which is recommended for all queries. Details on recommended query patterns are available here: https://go.microsoft.com/fwlink/?linkid=861060."
        ]);
    }
    if end < total {
        let mut pairs: Vec<(&String, &String)> =
            query.iter().filter(|(k, _)| *k != "$skiptoken").collect();
        pairs.sort();
        let mut next = format!("{root}/PipelineRuns?");
        for (k, v) in pairs {
            next.push_str(&format!("{}={}&", encode(k), encode(v)));
        }
        next.push_str(&format!("$skiptoken={}", end - skip));
        body["@odata.nextLink"] = json!(next);
    }
    Ok(ok_json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_need_an_offset_and_an_encoded_plus() {
        assert!(clauses("CompletedDate ge 2026-12-04T21:00:00+00:00").is_ok());
        assert!(clauses("CompletedDate ge 2026-12-04T21:00:00Z and CompletedDate lt 2026-12-05T00:00:00-08:00").is_ok());
        // `+` sent unencoded reaches the server as a space.
        assert!(clauses("CompletedDate ge 2026-12-04T21:00:00 00:00").is_err());
        assert!(clauses("CompletedDate ge 2026-12-04T21:00:00").is_err());
        assert_eq!(
            encode("CompletedDate ge 2026-12-04T21:00:00+00:00"),
            "CompletedDate%20ge%202026-12-04T21%3A00%3A00%2B00%3A00"
        );
    }
}
