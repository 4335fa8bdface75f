//! Simulated Advanced Security alerts (the `advsec` host, which the simulator serves on the
//! organization URL as Azure DevOps Server does).
//!
//! | key | answer |
//! |---|---|
//! | `GET /{org}/{project}/_apis/alert/repositories/{repository}/alerts` | [`ALERTS_PER_REPOSITORY`] alerts of a repository with Advanced Security on; `top` (default 50) and continuation token; `criteria.states`, `criteria.severities` (comma lists), `criteria.alertType` |
//! | `GET /{org}/{project}/_apis/alert/repositories/{repository}/alerts/{alertId}` | one alert, as the list has it; 404 `AlertNotFoundException` past [`ALERTS_PER_REPOSITORY`] |
//!
//! An alert's state is the seeded one until a test changes it with
//! [`super::AdoSim::set_alert_state`]; both routes answer the changed state.
//!
//! Advanced Security is on for the enabled repositories at an even position in the
//! organization (0, 2, …); any other repository answers 400, as Azure DevOps does for a
//! repository that is not onboarded. The API is in preview: an `api-version` without
//! `-preview` gets 400 `VssInvalidPreviewVersionException`.

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Duration;
use serde_json::{Value, json};

use super::AdoState;
use super::error::{AdoError, ado_error};
use super::request::AdoRequest;
use super::routes::ok_json;
use super::runs::token_page;
use super::seed::{Organization, Project, Repository, Urls, ado_time, epoch};
use super::work::project_repository;

/// Alerts seeded per repository with Advanced Security on: a dependency (high, active), a
/// secret (critical, active) and a code alert (medium, fixed).
pub const ALERTS_PER_REPOSITORY: u64 = 3;

impl Organization {
    /// Whether Advanced Security is on for a repository.
    pub(crate) fn advanced_security_enabled(&self, repository: &Repository) -> bool {
        !repository.is_disabled
            && self
                .repositories
                .iter()
                .position(|r| r.id == repository.id)
                .is_some_and(|index| index.is_multiple_of(2))
    }

    /// Alert `n` of a repository with the state a test set, if any (`fixedDate` only when
    /// fixed, `dismissal` only when dismissed).
    pub(crate) fn current_alert_json(
        &self,
        state: &AdoState,
        urls: &Urls,
        project: &Project,
        repository: &Repository,
        n: u64,
    ) -> Value {
        let mut alert = self.alert_json(urls, project, repository, n);
        if let (Some(changed), Value::Object(map)) =
            (state.live.alert_state(&repository.id, n), &mut alert)
        {
            let introduced = epoch() + Duration::days(n as i64);
            map.remove("fixedDate");
            map.remove("dismissal");
            if changed == "fixed" {
                map.insert(
                    "fixedDate".into(),
                    json!(ado_time(introduced + Duration::days(5))),
                );
            }
            if changed == "dismissed" {
                map.insert(
                    "dismissal".into(),
                    json!({"dismissalId": n, "dismissalType": "acceptedRisk", "message": "accepted", "stateChangedBy": self.identity(urls, 1)}),
                );
            }
            map.insert("state".into(), json!(changed));
        }
        alert
    }

    fn alert_json(&self, urls: &Urls, project: &Project, repository: &Repository, n: u64) -> Value {
        let org = &urls.organization_url;
        let (alert_type, severity, state, title, tool, rule) = match n % 3 {
            1 => (
                "dependency",
                "high",
                "active",
                "CVE-2024-21907: Newtonsoft.Json stack overflow",
                "Component Governance",
                "CVE-2024-21907",
            ),
            2 => (
                "secret",
                "critical",
                "active",
                "Azure DevOps personal access token",
                "Secret Scanning",
                "AzureDevOpsPAT",
            ),
            _ => (
                "code",
                "medium",
                "fixed",
                "SQL query built from user-controlled sources",
                "CodeQL",
                "cs/sql-injection",
            ),
        };
        let introduced = epoch() + Duration::days(n as i64);
        let repository_url = format!("{org}/{}/_git/{}", project.id, repository.name);
        let mut alert = json!({
            "alertId": n,
            "alertType": alert_type,
            "severity": severity,
            "state": state,
            "title": title,
            "confidence": "high",
            "repositoryUrl": repository_url,
            "gitRef": repository.default_branch,
            "introducedDate": ado_time(introduced),
            "firstSeenDate": ado_time(introduced),
            "lastSeenDate": ado_time(introduced + Duration::days(3)),
            "physicalLocations": [{
                "filePath": if alert_type == "dependency" { "src/app.csproj" } else { "src/Program.cs" },
                "region": {"lineStart": 10 + n, "lineEnd": 10 + n, "columnStart": 1, "columnEnd": 40},
                "versionControl": {
                    "commitHash": format!("{:0>40x}", n * 0x51),
                    "itemUrl": format!("{repository_url}?path=/src/Program.cs"),
                },
            }],
            "logicalLocations": if alert_type == "dependency" {
                json!([{"fullyQualifiedName": "pkg:nuget/Newtonsoft.Json@12.0.1", "kind": "rootDependency"}])
            } else {
                json!([])
            },
            "tools": [{"name": tool, "rules": [{"id": rule, "friendlyName": rule, "description": title}]}],
            "validationFingerprints": [],
        });
        if let Value::Object(map) = &mut alert {
            if state == "fixed" {
                map.insert(
                    "fixedDate".into(),
                    json!(ado_time(introduced + Duration::days(5))),
                );
            }
            if alert_type == "secret" {
                map.insert("truncatedSecret".into(), json!("abc1***"));
            }
        }
        alert
    }
}

/// The comma-separated values of a criteria parameter, lower-cased.
fn criteria(query: &HashMap<String, String>, name: &str) -> Option<Vec<String>> {
    query.get(name).map(|v| {
        v.split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect()
    })
}

/// 400 unless `api-version` is a preview version, as this preview API answers.
fn preview_refused(query: &HashMap<String, String>) -> Option<Response> {
    let version = query.get("api-version").cloned().unwrap_or_default();
    (!version.contains("-preview")).then(|| ado_error(
        StatusCode::BAD_REQUEST,
        &format!(
            "The requested version \"{version}\" of the resource is under preview. The -preview flag must be supplied in the api-version for such requests. For example: \"7.2-preview.1\""
        ),
        "Microsoft.VisualStudio.Services.WebApi.VssInvalidPreviewVersionException, Microsoft.VisualStudio.Services.WebApi",
    ))
}

/// 400 for a repository Advanced Security is not on for.
fn not_enabled(repository: &Repository) -> Response {
    ado_error(
        StatusCode::BAD_REQUEST,
        &format!(
            "Advanced Security is not enabled for repository {}.",
            repository.id
        ),
        "Microsoft.VisualStudio.Services.AdvancedSecurity.WebApi.AdvancedSecurityNotEnabledException, Microsoft.VisualStudio.Services.AdvancedSecurity.WebApi",
    )
}

/// The project and repository an alerts route names, or the answer refusing the request: an
/// `api-version` without `-preview` (400), an unknown project or repository (404), or a
/// repository Advanced Security is not on for (400), checked in that order.
fn alerts_repository<'a>(
    request: &AdoRequest,
    org: &'a Organization,
) -> Result<(&'a Project, &'a Repository), Box<Response>> {
    if let Some(refused) = preview_refused(&request.query) {
        return Err(Box::new(refused));
    }
    let (project, repository) =
        project_repository(org, &request.params).map_err(|e| Box::new(e.into_response()))?;
    if !org.advanced_security_enabled(repository) {
        return Err(Box::new(not_enabled(repository)));
    }
    Ok((project, repository))
}

pub(super) async fn get_alert(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let (project, repository) = match alerts_repository(&request, &org) {
        Ok(found) => found,
        Err(refused) => return Ok(*refused),
    };
    let alert_id = request.params.get("alertId").map_or("", String::as_str);
    match alert_id
        .parse::<u64>()
        .ok()
        .filter(|n| (1..=ALERTS_PER_REPOSITORY).contains(n))
    {
        Some(n) => Ok(ok_json(org.current_alert_json(
            &request.state,
            &request.urls,
            project,
            repository,
            n,
        ))),
        None => Ok(ado_error(
            StatusCode::NOT_FOUND,
            &format!(
                "Alert {alert_id} was not found in repository {}.",
                repository.id
            ),
            "Microsoft.VisualStudio.Services.AdvancedSecurity.WebApi.AlertNotFoundException, Microsoft.VisualStudio.Services.AdvancedSecurity.WebApi",
        )),
    }
}

pub(super) async fn list_alerts(request: AdoRequest) -> Result<Response, AdoError> {
    let org = request.organization();
    let (project, repository) = match alerts_repository(&request, &org) {
        Ok(found) => found,
        Err(refused) => return Ok(*refused),
    };
    let states = criteria(&request.query, "criteria.states");
    let severities = criteria(&request.query, "criteria.severities");
    let alert_type = criteria(&request.query, "criteria.alertType");
    let keep = |alert: &Value, field: &str, wanted: &Option<Vec<String>>| {
        wanted.as_ref().is_none_or(|wanted| {
            alert
                .get(field)
                .and_then(Value::as_str)
                .is_some_and(|v| wanted.iter().any(|w| w.eq_ignore_ascii_case(v)))
        })
    };
    let values = (1..=ALERTS_PER_REPOSITORY)
        .map(|n| org.current_alert_json(&request.state, &request.urls, project, repository, n))
        .filter(|a| {
            keep(a, "state", &states)
                && keep(a, "severity", &severities)
                && keep(a, "alertType", &alert_type)
        })
        .collect();
    let values = super::since::keep_since(
        values,
        &request.query,
        "criteria.modifiedSince",
        "lastSeenDate",
    )?;
    token_page(values, &request.query, "top")
}
