//! The webhook receiver: Azure DevOps service hooks in, confirmed raw events out.
//!
//! Served at `POST /integration/webhook`, the path the Python integration registers, so
//! existing subscriptions keep working. The answer tells Azure DevOps what to do:
//! - 200 only after the broker confirmed the raw event (nothing is lost once we said yes);
//! - 400 for a body that is not a service-hook envelope, 401 when the basic-auth secret is
//!   wrong or missing (a secret is configured), 413 for an oversized body — none of these is
//!   queued;
//! - 503 when the broker or Azure DevOps is unavailable: Azure DevOps retries 503s. Never 410,
//!   which makes Azure DevOps disable the subscription at once.
//!
//! The object an event names is read again from Azure DevOps before it is published, so a
//! late or redelivered event never carries older data than what the API has now.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::ado::organization::OrganizationStamp;
use crate::ado::{AdoClient, AdoError};
use crate::live_events::{self, LiveError, LiveEvent, LiveKinds};
use crate::organizations::{Organizations, UnknownOrganization, event_urls};
use adoport_shared::bus::{Bus, Destination, Outgoing};
use adoport_shared::config::Secret;
use adoport_shared::messages::{Origin, RawAction, RawEvent, ResyncRequest, ResyncTrigger, encode};

/// The path Azure DevOps posts service hooks to (Ocean mounts the integration under `/integration`).
pub const WEBHOOK_PATH: &str = "/integration/webhook";
/// How long a webhook may take (re-fetch + confirmed publish) before we answer 503.
const HANDLER_DEADLINE: Duration = Duration::from_secs(20);

/// What the receiver needs.
pub struct WebhookState {
    pub bus: Bus,
    /// The client of each organization; an event goes to the one it came from.
    pub organizations: Organizations,
    /// Basic-auth password Azure DevOps must send (`webhookSecret`); `None` accepts any request.
    pub secret: Option<Secret>,
    /// `excludedTags`: work item events of projects carrying one of these are ignored.
    pub excluded_tags: Vec<String>,
    /// Reports `trigger_pipeline` completions, when the actions processor is enabled.
    pub actions: Option<crate::actions::completion::CompletionContext>,
    /// The kinds the mapping version in force asks for, with their selectors: which push
    /// changes, and which build, pipeline, release and alert events, to publish.
    pub plan: crate::crawler::KindPlans,
}

/// Why a webhook was not accepted. Each maps to the status Azure DevOps should see.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(
        "missing or wrong basic-auth credentials (the subscription's password must equal webhookSecret)"
    )]
    Unauthenticated,
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("not a service-hook envelope: {0}")]
    Envelope(String),
    #[error("could not queue the event: {0}")]
    Unavailable(String),
    #[error("could not read the object the event names from Azure DevOps: {0}")]
    Upstream(AdoError),
    #[error(transparent)]
    UnknownOrganization(#[from] UnknownOrganization),
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        let status = match &self {
            WebhookError::Unauthenticated => StatusCode::UNAUTHORIZED,
            WebhookError::NotJson(_) | WebhookError::Envelope(_) => StatusCode::BAD_REQUEST,
            WebhookError::UnknownOrganization(_) => StatusCode::UNPROCESSABLE_ENTITY,
            WebhookError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            WebhookError::Upstream(e) if e.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
            WebhookError::Upstream(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        match &self {
            WebhookError::Unavailable(_) | WebhookError::Upstream(_) => {
                tracing::warn!(error = %self, status = status.as_u16(), "webhook not accepted; Azure DevOps will retry")
            }
            _ => tracing::info!(error = %self, status = status.as_u16(), "webhook refused"),
        }
        let mut response = (
            status,
            axum::Json(json!({"ok": false, "error": self.to_string()})),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"adoport\""),
            );
        }
        response
    }
}

/// The router of ingest's HTTP interface: the webhook, a manual resync trigger and probes.
pub fn router(state: Arc<WebhookState>, max_body_bytes: usize) -> Router {
    Router::new()
        .route(WEBHOOK_PATH, post(receive))
        .route("/resync", post(request_resync))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn ready(State(state): State<Arc<WebhookState>>) -> StatusCode {
    if state.bus.is_connected() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn request_resync(State(state): State<Arc<WebhookState>>) -> Result<Response, WebhookError> {
    let request = ResyncRequest::new(ResyncTrigger::Manual);
    state
        .bus
        .publish(Outgoing::new(Destination::ResyncRequest, encode(&request)))
        .await
        .map_err(|e| WebhookError::Unavailable(e.to_string()))?;
    tracing::info!(resync_id = %request.resync_id, "manual resync requested");
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"ok": true, "resyncId": request.resync_id})),
    )
        .into_response())
}

fn authenticate(headers: &HeaderMap, secret: &Secret) -> Result<(), WebhookError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(WebhookError::Unauthenticated)?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
        .ok_or(WebhookError::Unauthenticated)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| WebhookError::Unauthenticated)?;
    // user:password; the Python integration checks only the password, and so do we.
    let password = match decoded.iter().position(|&b| b == b':') {
        Some(colon) => &decoded[colon + 1..],
        None => &decoded[..],
    };
    if bool::from(password.ct_eq(secret.expose().as_bytes())) {
        Ok(())
    } else {
        Err(WebhookError::Unauthenticated)
    }
}

/// The parts of a service-hook envelope we rely on.
#[derive(Debug)]
struct Envelope {
    event_type: String,
    delivery_id: String,
    resource: serde_json::Map<String, Value>,
    /// `resourceContainers.project.id`: the project the event happened in.
    project_id: Option<String>,
    /// URLs that name the organization the event came from.
    organization_urls: Vec<String>,
}

fn parse_envelope(body: &[u8]) -> Result<Envelope, WebhookError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::NotJson(e.to_string()))?;
    let Value::Object(mut map) = value else {
        return Err(WebhookError::Envelope("expected a JSON object".into()));
    };
    let text = |map: &serde_json::Map<String, Value>, key: &str| -> Result<String, WebhookError> {
        match map.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(_) => Err(WebhookError::Envelope(format!(
                "\"{key}\" must be a non-empty string"
            ))),
            None => Err(WebhookError::Envelope(format!("\"{key}\" is missing"))),
        }
    };
    let event_type = text(&map, "eventType")?;
    text(&map, "publisherId")?;
    let organization_urls = event_urls(&map);
    let delivery_id = match map.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let resource = match map.remove("resource") {
        Some(Value::Object(resource)) => resource,
        Some(_) => {
            return Err(WebhookError::Envelope(
                "\"resource\" must be an object".into(),
            ));
        }
        None => return Err(WebhookError::Envelope("\"resource\" is missing".into())),
    };
    let project_id = map
        .get("resourceContainers")
        .and_then(|c| c.pointer("/project/id"))
        .and_then(Value::as_str)
        .map(String::from);
    Ok(Envelope {
        event_type,
        delivery_id,
        resource,
        project_id,
        organization_urls,
    })
}

/// What an event means for the catalog.
#[derive(Debug, PartialEq)]
enum Route {
    /// Read the repository again and upsert it (or delete it if it is gone).
    Repository { id: String, fallback: Value },
    /// The repository was deleted.
    RepositoryDeleted { repository: Value },
    /// Read the pull request again and upsert it.
    PullRequest { id: u64 },
    /// Read the work item again (with its project) and upsert it, or delete it if it is gone.
    WorkItem { project_id: String, id: u64 },
    /// The work item was deleted.
    WorkItemDeleted { project_id: String, id: u64 },
    /// A build, pipeline, release or alert event: see [`live_events`].
    Live,
    /// Not an event this version acts on.
    Ignored,
}

fn route(envelope: &Envelope) -> Result<Route, WebhookError> {
    let resource = &envelope.resource;
    let repository = || -> Result<(String, Value), WebhookError> {
        let repo = resource
            .get("repository")
            .filter(|r| r.is_object())
            .cloned()
            .unwrap_or_else(|| Value::Object(resource.clone()));
        match repo.get("id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => Ok((id.to_string(), repo)),
            _ => Err(WebhookError::Envelope(format!(
                "{} event without resource.repository.id",
                envelope.event_type
            ))),
        }
    };
    match envelope.event_type.as_str() {
        "git.pullrequest.created" | "git.pullrequest.updated" | "git.pullrequest.merged" => {
            let id = resource
                .get("pullRequestId")
                .and_then(Value::as_u64)
                .ok_or_else(|| {
                    WebhookError::Envelope(format!(
                        "{} event without a numeric resource.pullRequestId",
                        envelope.event_type
                    ))
                })?;
            Ok(Route::PullRequest { id })
        }
        "git.repo.created" | "git.repo.renamed" | "git.repo.statuschanged" | "git.push" => {
            let (id, fallback) = repository()?;
            Ok(Route::Repository { id, fallback })
        }
        "workitem.created" | "workitem.updated" | "workitem.restored" | "workitem.commented"
        | "workitem.deleted" => {
            // `workitem.updated` carries an update: its `id` is the update's number and the
            // work item is `workItemId` (the Python integration reads `id`, and so fetches the
            // wrong item). The other events carry the work item itself.
            let id = resource
                .get("workItemId")
                .or_else(|| resource.get("id"))
                .and_then(Value::as_u64)
                .ok_or_else(|| {
                    WebhookError::Envelope(format!(
                        "{} event without a numeric resource.workItemId or resource.id",
                        envelope.event_type
                    ))
                })?;
            let project_id = envelope.project_id.clone().ok_or_else(|| {
                WebhookError::Envelope(format!(
                    "{} event without resourceContainers.project.id",
                    envelope.event_type
                ))
            })?;
            Ok(if envelope.event_type == "workitem.deleted" {
                Route::WorkItemDeleted { project_id, id }
            } else {
                Route::WorkItem { project_id, id }
            })
        }
        "git.repo.deleted" => {
            let (_, repository) = repository()?;
            Ok(Route::RepositoryDeleted { repository })
        }
        event_type if live_events::handles(event_type) => Ok(Route::Live),
        _ => Ok(Route::Ignored),
    }
}

async fn receive(
    State(state): State<Arc<WebhookState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WebhookError> {
    if let Some(secret) = &state.secret {
        authenticate(&headers, secret)?;
    }
    let envelope = parse_envelope(&body)?;
    crate::actions::completion::on_webhook(state.actions.as_ref(), &envelope.event_type, &body)
        .await
        .map_err(WebhookError::Unavailable)?;
    let route = route(&envelope)?;
    if route == Route::Ignored {
        tracing::debug!(event_type = %envelope.event_type, "webhook event type not handled; acknowledged");
        return Ok(axum::Json(json!({"ok": true, "status": "ignored"})).into_response());
    }
    let client = state
        .organizations
        .for_event(&envelope.organization_urls)?
        .clone();
    match tokio::time::timeout(HANDLER_DEADLINE, handle(&state, &client, &envelope, route)).await {
        Ok(result) => result,
        Err(_) => Err(WebhookError::Unavailable(format!(
            "not done within {}s",
            HANDLER_DEADLINE.as_secs()
        ))),
    }
}

/// A work item as the crawler publishes it: with `__projectId` and the full `__project`.
fn work_item_with_project(mut item: Value, project_id: &str, project: Value) -> Value {
    if let Value::Object(map) = &mut item {
        map.insert("__projectId".into(), Value::String(project_id.to_string()));
        map.insert("__project".into(), project);
    }
    item
}

/// What a deletion knows of a work item: enough for the mapping's identifier
/// (`.__project.id + "/" + (.id | tostring)`), which the Python integration's delete lacks.
fn deleted_work_item(project_id: &str, id: u64) -> Value {
    json!({"id": id, "__projectId": project_id, "__project": {"id": project_id}})
}

async fn handle(
    state: &WebhookState,
    client: &AdoClient,
    envelope: &Envelope,
    route: Route,
) -> Result<Response, WebhookError> {
    if let Route::WorkItem { project_id, .. } | Route::WorkItemDeleted { project_id, .. } = &route
        && crate::project_tags::is_excluded(client, &state.excluded_tags, project_id).await
    {
        tracing::debug!(project = %project_id, "work item event of a project with an excluded tag; ignored");
        return Ok(axum::Json(json!({"ok": true, "status": "ignored"})).into_response());
    }
    let (kind, action, item) = match route {
        Route::Live => return handle_live(state, client, envelope).await,
        Route::PullRequest { id } => {
            let pr = client
                .pull_request(id)
                .await
                .map_err(WebhookError::Upstream)?;
            ("pull-request", RawAction::Upsert, pr)
        }
        Route::Repository { id, fallback } => match client.repository(&id).await {
            Ok(repo) => ("repository", RawAction::Upsert, repo),
            Err(AdoError::NotFound { .. }) => ("repository", RawAction::Delete, fallback),
            Err(e) => return Err(WebhookError::Upstream(e)),
        },
        Route::RepositoryDeleted { repository } => ("repository", RawAction::Delete, repository),
        Route::WorkItem { project_id, id } => match client.work_item(&project_id, id).await {
            Ok(item) => {
                let project = client
                    .project(&project_id)
                    .await
                    .map_err(WebhookError::Upstream)?;
                (
                    "work-item",
                    RawAction::Upsert,
                    work_item_with_project(item, &project_id, project),
                )
            }
            Err(AdoError::NotFound { .. }) => (
                "work-item",
                RawAction::Delete,
                deleted_work_item(&project_id, id),
            ),
            Err(e) => return Err(WebhookError::Upstream(e)),
        },
        Route::WorkItemDeleted { project_id, id } => (
            "work-item",
            RawAction::Delete,
            deleted_work_item(&project_id, id),
        ),
        Route::Ignored => unreachable!("ignored events are answered before"),
    };
    let mut item = item;
    OrganizationStamp::new(client.organization_url()).apply(&mut item);
    let event = RawEvent::new(
        kind,
        Origin::Webhook {
            event_type: envelope.event_type.clone(),
            delivery_id: envelope.delivery_id.clone(),
        },
        client.organization_url(),
        action,
        vec![item],
    );
    state
        .bus
        .publish(Outgoing::new(Destination::Raw, encode(&event)))
        .await
        .map_err(|e| WebhookError::Unavailable(e.to_string()))?;
    if envelope.event_type == "git.push" {
        let (event_type, delivery_id) = (&envelope.event_type, &envelope.delivery_id);
        crate::push_events::on_push(state, client, event_type, delivery_id, &envelope.resource)
            .await?;
        crate::gitops::on_push(state, client, delivery_id, &envelope.resource).await?;
    }
    tracing::debug!(event_type = %envelope.event_type, kind, event_id = %event.id, "webhook queued");
    Ok(axum::Json(json!({"ok": true, "status": "queued", "eventId": event.id})).into_response())
}

/// Publishes what [`live_events::resolve`] makes of the event, each raw event confirmed by the
/// broker before the next; `client` is the organization's client the event is read with.
async fn handle_live(
    state: &WebhookState,
    client: &AdoClient,
    envelope: &Envelope,
) -> Result<Response, WebhookError> {
    let event = LiveEvent {
        event_type: &envelope.event_type,
        resource: &envelope.resource,
        project_id: envelope.project_id.as_deref(),
    };
    let kinds = LiveKinds::new(state.plan.current());
    let publications = live_events::resolve(client, &kinds, &event)
        .await
        .map_err(|e| match e {
            LiveError::Missing { .. } => WebhookError::Envelope(e.to_string()),
            LiveError::Upstream(e) => WebhookError::Upstream(e),
        })?;
    let stamp = OrganizationStamp::new(client.organization_url());
    let mut event_ids = Vec::new();
    for publication in publications.into_iter().filter(|p| !p.items.is_empty()) {
        let mut items = publication.items;
        items.iter_mut().for_each(|item| stamp.apply(item));
        let event = RawEvent::new(
            publication.kind,
            Origin::Webhook {
                event_type: envelope.event_type.clone(),
                delivery_id: envelope.delivery_id.clone(),
            },
            client.organization_url(),
            publication.action,
            items,
        );
        state
            .bus
            .publish(Outgoing::new(Destination::Raw, encode(&event)))
            .await
            .map_err(|e| WebhookError::Unavailable(e.to_string()))?;
        tracing::debug!(event_type = %envelope.event_type, kind = publication.kind, event_id = %event.id, "webhook queued");
        event_ids.push(event.id.to_string());
    }
    let status = if event_ids.is_empty() {
        "ignored"
    } else {
        "queued"
    };
    Ok(axum::Json(json!({"ok": true, "status": status, "eventIds": event_ids})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(json: Value) -> Result<Envelope, WebhookError> {
        parse_envelope(json.to_string().as_bytes())
    }

    #[test]
    fn envelopes_are_validated_field_by_field() {
        let cases = [
            (json!([1]), "JSON object"),
            (
                json!({"publisherId": "tfs", "resource": {}}),
                "\"eventType\" is missing",
            ),
            (
                json!({"eventType": "git.push", "resource": {}}),
                "\"publisherId\" is missing",
            ),
            (
                json!({"eventType": "git.push", "publisherId": "tfs"}),
                "\"resource\" is missing",
            ),
            (
                json!({"eventType": "git.push", "publisherId": "tfs", "resource": 3}),
                "must be an object",
            ),
            (
                json!({"eventType": 1, "publisherId": "tfs", "resource": {}}),
                "non-empty string",
            ),
        ];
        for (body, expected) in cases {
            let err = envelope(body.clone()).expect_err("invalid");
            assert!(err.to_string().contains(expected), "{body}: {err}");
        }
        assert!(matches!(
            parse_envelope(b"{nope"),
            Err(WebhookError::NotJson(_))
        ));
    }

    #[test]
    fn events_route_to_kinds() {
        let pr = envelope(json!({"eventType": "git.pullrequest.updated", "publisherId": "tfs", "resource": {"pullRequestId": 42}})).expect("ok");
        assert_eq!(route(&pr).expect("route"), Route::PullRequest { id: 42 });
        let push = envelope(json!({"eventType": "git.push", "publisherId": "tfs", "resource": {"repository": {"id": "r1"}}})).expect("ok");
        assert!(matches!(route(&push).expect("route"), Route::Repository { id, .. } if id == "r1"));
        let deleted = envelope(json!({"eventType": "git.repo.deleted", "publisherId": "tfs", "resource": {"repository": {"id": "r1", "name": "x"}}})).expect("ok");
        assert!(matches!(
            route(&deleted).expect("route"),
            Route::RepositoryDeleted { .. }
        ));
        let other = envelope(
            json!({"eventType": "ms.vss-code.git-pullrequest-comment-event", "publisherId": "tfs", "resource": {}}),
        )
        .expect("ok");
        assert_eq!(route(&other).expect("route"), Route::Ignored);
        let bad = envelope(json!({"eventType": "git.pullrequest.created", "publisherId": "tfs", "resource": {"pullRequestId": "x"}})).expect("ok");
        assert!(route(&bad).is_err());
    }

    fn reference_envelope(name: &str) -> Envelope {
        let path = format!(
            "{}/../../shared/reference/ocean-azure-devops/webhooks/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        parse_envelope(&body).expect("a valid envelope")
    }

    #[test]
    fn work_item_events_name_the_work_item_not_the_update() {
        let updated = reference_envelope("workitem.updated.json");
        assert_eq!(
            route(&updated).expect("route"),
            Route::WorkItem {
                project_id: "22222222-2222-2222-2222-222222222222".into(),
                id: 1234
            },
            "resource.id (4) is the update's number; the work item is resource.workItemId"
        );
        let deleted = reference_envelope("workitem.deleted.json");
        assert_eq!(
            route(&deleted).expect("route"),
            Route::WorkItemDeleted {
                project_id: "22222222-2222-2222-2222-222222222222".into(),
                id: 1234
            }
        );
        // The delete carries what the default mapping's identifier needs.
        let item = deleted_work_item("p 1", 1234);
        assert_eq!(item["__project"]["id"], "p 1");
        assert_eq!(item["id"], 1234);
    }

    #[test]
    fn basic_auth_checks_the_password_only() {
        let secret = Secret::new("s3cret");
        let mut headers = HeaderMap::new();
        assert!(authenticate(&headers, &secret).is_err());
        let good = base64::engine::general_purpose::STANDARD.encode("port:s3cret");
        headers.insert(
            header::AUTHORIZATION,
            format!("Basic {good}").parse().expect("header"),
        );
        assert!(authenticate(&headers, &secret).is_ok());
        let bad = base64::engine::general_purpose::STANDARD.encode("port:s3cre");
        headers.insert(
            header::AUTHORIZATION,
            format!("Basic {bad}").parse().expect("header"),
        );
        assert!(authenticate(&headers, &secret).is_err());
    }
}
