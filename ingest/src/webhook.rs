//! The webhook receiver: Azure DevOps service hooks in, confirmed raw events out — and the
//! HTTP edge of ingest that is exposed to the internet.
//!
//! Served at `POST /integration/webhook`, the path the Python integration registers, so
//! existing subscriptions keep working. Every request to the webhook and to `POST /resync` goes
//! through the same gate before its body is read ([`router`]): with a `webhookSecret`, missing
//! or wrong basic-auth credentials get 401 at once (a large body from an unauthenticated caller
//! is never buffered); then at most [`WebhookLimits::max_in_flight`] requests are served at once
//! (bodies held, objects read, events published), the next get 503 with `Retry-After`, and a
//! request not complete within [`WebhookLimits::request_deadline`] (a trickled body) gets 408.
//! The answer tells Azure DevOps what to do:
//! - 200 only after the broker confirmed the raw events (nothing is lost once we said yes);
//! - 400 for a body that is not a service-hook envelope, 401 when the basic-auth secret is
//!   wrong or missing (a secret is configured), 413 for an oversized body — none of these is
//!   queued;
//! - 503 when the broker or Azure DevOps is unavailable (5xx, 429, timeouts, a refused token):
//!   Azure DevOps retries 503s. Never 410, which makes Azure DevOps disable the subscription at
//!   once;
//! - 200 with `"status": "skipped"` and the reason for an event whose object cannot be read for
//!   a reason that will not go away (its project is gone, Azure DevOps answers 400 or 403 for
//!   it): Azure DevOps puts a subscription on probation after repeated non-2xx answers, and
//!   retrying would not help. The reason is logged with the kind, event type, object, status and
//!   Azure DevOps' message; the next resync reconciles the object.
//!
//! What an event publishes is [`live_events::resolve`]'s business: the object is read again, so
//! a forged, late or redelivered event never carries older data than the API has now, and only
//! Azure DevOps saying the object is gone deletes it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::ado::{AdoClient, ProjectId};
use crate::events;
use crate::kind::Handler;
use crate::live_events::{self, LiveError, LiveEvent, LiveKinds, ReadFailure};
use crate::organizations::{Organizations, UnknownOrganization, event_urls};
use crate::publisher::raw_events;
use crate::selector::SelectorError;
use adoport_shared::bus::{Bus, Destination, Outgoing};
use adoport_shared::config::{IngestSettings, Secret};
use adoport_shared::messages::{Origin, RawEvent, ResyncRequest, ResyncTrigger, encode};

/// The path Azure DevOps posts service hooks to (Ocean mounts the integration under `/integration`).
pub const WEBHOOK_PATH: &str = "/integration/webhook";
/// The path of the manual resync trigger.
pub const RESYNC_PATH: &str = "/resync";
/// How long a webhook may take (re-fetch + confirmed publish) before we answer 503.
const HANDLER_DEADLINE: Duration = Duration::from_secs(20);
/// `Retry-After` (seconds) of a 503 for a request over [`WebhookLimits::max_in_flight`].
const BUSY_RETRY_AFTER_SECS: u64 = 5;
/// How long a whole request may take, body upload included (the handler itself answers 503
/// after [`HANDLER_DEADLINE`]): a caller that trickles its body cannot hold a slot for long.
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// What the receiver needs.
pub struct WebhookState {
    pub bus: Bus,
    /// The client of each organization; an event goes to the one it came from.
    pub organizations: Organizations,
    /// Basic-auth password Azure DevOps must send (`webhookSecret`); `None` accepts any
    /// request (webhooks and `POST /resync` alike).
    pub secret: Option<Secret>,
    /// `excludedTags`: work item events of projects carrying one of these are ignored.
    pub excluded_tags: Vec<String>,
    /// Reports `trigger_pipeline` completions, when the actions processor is enabled.
    pub actions: Option<crate::actions::completion::CompletionContext>,
    /// The kinds the mapping version in force asks for, with their selectors: which push
    /// changes, and which build, pipeline, release and alert events, to publish.
    pub plan: crate::plan::KindPlans,
}

/// Bounds of the receiver (`ADOPORT__INGEST__WEBHOOK_MAX_BYTES`,
/// `ADOPORT__INGEST__WEBHOOK_MAX_IN_FLIGHT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookLimits {
    /// Largest body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Requests (webhooks and `/resync`) served at once; the next get 503 with `Retry-After`.
    /// Memory for bodies stays under `max_in_flight × max_body_bytes`.
    pub max_in_flight: usize,
    /// How long one request may take, its body upload included; then 408 and its slot is
    /// free again.
    pub request_deadline: Duration,
}

impl WebhookLimits {
    pub fn from_settings(settings: &IngestSettings) -> Self {
        Self {
            max_body_bytes: usize::try_from(settings.webhook_max_bytes).unwrap_or(usize::MAX),
            max_in_flight: usize::try_from(settings.webhook_max_in_flight).unwrap_or(usize::MAX),
            request_deadline: REQUEST_DEADLINE,
        }
    }
}

impl Default for WebhookLimits {
    fn default() -> Self {
        Self::from_settings(&IngestSettings::default())
    }
}

/// Why a webhook was not accepted. Each maps to the status Azure DevOps should see.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(
        "missing or wrong basic-auth credentials (the subscription's password must equal webhookSecret)"
    )]
    Unauthenticated,
    #[error(
        "{0} requests are being served already (ADOPORT__INGEST__WEBHOOK_MAX_IN_FLIGHT); try again later"
    )]
    Busy(usize),
    #[error("the request was not complete within {0} s")]
    TooSlow(u64),
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("not a service-hook envelope: {0}")]
    Envelope(String),
    #[error("could not queue the event: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Upstream(ReadFailure),
    /// A selector of a kind the event updates does not read: answered 200 with the reason,
    /// nothing updated (the mapping must change first; the resync reports the kind failed).
    #[error(transparent)]
    Selector(SelectorError),
    #[error(transparent)]
    UnknownOrganization(#[from] UnknownOrganization),
}

impl From<LiveError> for WebhookError {
    fn from(error: LiveError) -> Self {
        match error {
            LiveError::Missing { .. } => WebhookError::Envelope(error.to_string()),
            LiveError::Envelope(message) => WebhookError::Envelope(message),
            LiveError::Read(failure) => WebhookError::Upstream(failure),
            LiveError::Selector(refused) => WebhookError::Selector(refused),
        }
    }
}

impl From<ReadFailure> for WebhookError {
    fn from(failure: ReadFailure) -> Self {
        WebhookError::Upstream(failure)
    }
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        let status = match &self {
            WebhookError::Unauthenticated => StatusCode::UNAUTHORIZED,
            WebhookError::NotJson(_) | WebhookError::Envelope(_) => StatusCode::BAD_REQUEST,
            WebhookError::UnknownOrganization(_) | WebhookError::Selector(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            WebhookError::TooSlow(_) => StatusCode::REQUEST_TIMEOUT,
            WebhookError::Busy(_) | WebhookError::Unavailable(_) | WebhookError::Upstream(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        match &self {
            WebhookError::Unavailable(_) | WebhookError::Upstream(_) | WebhookError::Busy(_) => {
                tracing::warn!(error = %self, status = status.as_u16(), "webhook not accepted; Azure DevOps will retry")
            }
            _ => tracing::info!(error = %self, status = status.as_u16(), "webhook refused"),
        }
        let busy = matches!(self, WebhookError::Busy(_));
        let mut response = (
            status,
            axum::Json(json!({"ok": false, "error": self.to_string()})),
        )
            .into_response();
        let headers = response.headers_mut();
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"adoport\""),
            );
        }
        if busy {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(BUSY_RETRY_AFTER_SECS),
            );
        }
        response
    }
}

/// Whether Azure DevOps should deliver the event again: only when the failure may heal by
/// itself (Azure DevOps unavailable or throttling, or our token refused until an operator
/// fixes it). Everything else about one object is answered 2xx with the reason.
fn retry_later(failure: &ReadFailure) -> bool {
    use crate::ado::ErrorClass;
    matches!(
        failure.source.class(),
        ErrorClass::Transient | ErrorClass::Refused
    )
}

/// The 2xx answer to an event whose object cannot be read for a reason that will not go away,
/// logged with what an operator needs to look into it.
fn skipped(event_type: &str, failure: &ReadFailure) -> Response {
    tracing::warn!(
        kind = failure.kind.name(),
        event_type,
        object = %failure.object,
        status = failure.source.status(),
        class = ?failure.source.class(),
        error = %failure.source,
        "webhook acknowledged without changes: Azure DevOps will keep refusing this object; the next resync reconciles it"
    );
    axum::Json(json!({"ok": true, "status": "skipped", "reason": failure.to_string()}))
        .into_response()
}

/// The 2xx answer to an event that would update a kind whose selector does not read: nothing
/// is updated until the mapping is corrected (sending it again would not help).
fn refused_by_selector(event_type: &str, refused: &SelectorError) -> Response {
    tracing::warn!(
        kind = %refused.kind,
        event_type,
        error = %refused,
        "webhook acknowledged without changes: a selector of a kind it updates is not valid"
    );
    axum::Json(json!({"ok": true, "status": "skipped", "reason": refused.to_string()}))
        .into_response()
}

/// The state of the gate in front of the webhook and `/resync`.
struct Gate {
    secret: Option<Secret>,
    in_flight: Arc<Semaphore>,
    limits: WebhookLimits,
}

/// Credentials first (from the headers alone: the body is not read), then a slot among
/// [`WebhookLimits::max_in_flight`], held until the answer is ready or
/// [`WebhookLimits::request_deadline`] has passed (408).
async fn gate(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    if let Some(secret) = &gate.secret
        && let Err(refused) = authenticate(request.headers(), secret)
    {
        return refused.into_response();
    }
    let Ok(_permit) = Arc::clone(&gate.in_flight).try_acquire_owned() else {
        return WebhookError::Busy(gate.limits.max_in_flight).into_response();
    };
    let deadline = gate.limits.request_deadline;
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => WebhookError::TooSlow(deadline.as_secs()).into_response(),
    }
}

/// Ocean's probe paths, which Port's `port-ocean` chart checks on this port.
pub const LIVE_PATH: &str = "/health/live";
pub const READY_PATH: &str = "/health/ready";

/// The router of ingest's HTTP interface: the webhook and the manual resync trigger behind the
/// [`gate`], and probes — ours (`/healthz`, `/readyz`) and Ocean's (`/health/live`,
/// `/health/ready`, where Port's `port-ocean` chart looks).
pub fn router(state: Arc<WebhookState>, limits: WebhookLimits) -> Router {
    prefixed_router(state, limits, "")
}

/// [`router`] with `OCEAN__PATH_PREFIX` (`""` or `/name`, see
/// [`adoport_shared::config::OceanSettings::route_prefix`]): as in Ocean, the webhook and
/// Ocean's probes are served under it; the probes also stay at the root, where the chart's
/// probes look whatever the prefix.
pub fn prefixed_router(state: Arc<WebhookState>, limits: WebhookLimits, prefix: &str) -> Router {
    let limits = WebhookLimits {
        max_in_flight: limits.max_in_flight.max(1),
        ..limits
    };
    let gate_state = Arc::new(Gate {
        secret: state.secret.clone(),
        in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
        limits,
    });
    let webhook_path = format!("{prefix}{WEBHOOK_PATH}");
    let gated = Router::new()
        .route(&webhook_path, post(receive))
        .route(RESYNC_PATH, post(request_resync))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(gate_state, gate));
    let mut probes = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route(LIVE_PATH, get(ocean_live))
        .route(READY_PATH, get(ocean_ready));
    if !prefix.is_empty() {
        probes = probes
            .route(&format!("{prefix}{LIVE_PATH}"), get(ocean_live))
            .route(&format!("{prefix}{READY_PATH}"), get(ocean_ready));
    }
    probes.merge(gated).with_state(state)
}

async fn ready(State(state): State<Arc<WebhookState>>) -> StatusCode {
    if state.bus.is_connected() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// Ocean's liveness answer: the process serves.
async fn ocean_live() -> Response {
    axum::Json(json!({"status": "healthy", "check": "live"})).into_response()
}

/// Ocean's readiness answer: webhooks can be taken (the broker, or the in-process bus, takes
/// messages); 503 naming the broker otherwise.
async fn ocean_ready(State(state): State<Arc<WebhookState>>) -> Response {
    if state.bus.is_connected() {
        axum::Json(json!({"status": "healthy", "check": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "unavailable", "check": "ready", "reason": "the broker is not connected"})),
        )
            .into_response()
    }
}

async fn request_resync(State(state): State<Arc<WebhookState>>) -> Result<Response, WebhookError> {
    let request = ResyncRequest::new(ResyncTrigger::Manual);
    let message = Outgoing::new(Destination::ResyncRequest, encode(&request));
    send(&state, vec![message]).await?;
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
    project_id: Option<ProjectId>,
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
        .map(ProjectId::new);
    Ok(Envelope {
        event_type,
        delivery_id,
        resource,
        project_id,
        organization_urls,
    })
}

impl Envelope {
    fn live(&self) -> LiveEvent<'_> {
        LiveEvent {
            event_type: &self.event_type,
            resource: &self.resource,
            project_id: self.project_id.as_ref(),
        }
    }

    fn origin(&self) -> Origin {
        Origin::Webhook {
            event_type: self.event_type.clone(),
            delivery_id: self.delivery_id.clone(),
        }
    }

    /// The project of a work item event whose tags [`WebhookState::excluded_tags`] are
    /// checked against (`excludedTags` applies to work item events only).
    fn work_item_project(&self) -> Option<&ProjectId> {
        self.event_type
            .starts_with("workitem.")
            .then_some(self.project_id.as_ref())
            .flatten()
    }
}

async fn receive(
    State(state): State<Arc<WebhookState>>,
    body: Bytes,
) -> Result<Response, WebhookError> {
    let envelope = parse_envelope(&body)?;
    crate::actions::completion::on_webhook(state.actions.as_ref(), &envelope.event_type, &body)
        .await
        .map_err(WebhookError::Unavailable)?;
    drop(body);
    let Some(handled) = events::event_type(&envelope.event_type) else {
        tracing::debug!(event_type = %envelope.event_type, "webhook event type not handled; acknowledged");
        return Ok(ignored());
    };
    // The broker could not take the result: 503 before reading Azure DevOps, whose budget a
    // read would spend for nothing (Azure DevOps sends the event again).
    if let Some(problem) = state.bus.problem() {
        return Err(WebhookError::Unavailable(problem));
    }
    let client = state
        .organizations
        .for_event(&envelope.organization_urls)?
        .clone();
    let handled = tokio::time::timeout(
        HANDLER_DEADLINE,
        handle(&state, &client, &envelope, handled.handler),
    )
    .await;
    match handled {
        Ok(Err(WebhookError::Upstream(failure))) if !retry_later(&failure) => {
            Ok(skipped(&envelope.event_type, &failure))
        }
        Ok(Err(WebhookError::Selector(refused))) => {
            Ok(refused_by_selector(&envelope.event_type, &refused))
        }
        Ok(result) => result,
        Err(_) => Err(WebhookError::Unavailable(format!(
            "not done within {}s",
            HANDLER_DEADLINE.as_secs()
        ))),
    }
}

fn ignored() -> Response {
    axum::Json(json!({"ok": true, "status": "ignored"})).into_response()
}

/// Publishes what [`live_events::resolve`] makes of the event (and, for a push, what the push
/// changed), each batch confirmed by the broker before the answer; `client` is the
/// organization's client the event is read with, `handler` the event table's for its type.
async fn handle(
    state: &WebhookState,
    client: &AdoClient,
    envelope: &Envelope,
    handler: Handler,
) -> Result<Response, WebhookError> {
    if let Some(project_id) = envelope.work_item_project()
        && crate::project_tags::is_excluded(client, &state.excluded_tags, project_id).await
    {
        tracing::debug!(project = %project_id, "work item event of a project with an excluded tag; ignored");
        return Ok(ignored());
    }
    let publications = live_events::resolve(
        client,
        &LiveKinds::new(state.plan.current()),
        &envelope.live(),
    )
    .await?;
    let events = raw_events(client, envelope.origin(), publications);
    let mut event_ids = publish(state, events).await?;
    if handler == Handler::Push {
        let (event_type, delivery_id) = (&envelope.event_type, &envelope.delivery_id);
        let plan = state.plan.current();
        let pushed =
            crate::push_events::on_push(&plan, client, event_type, delivery_id, &envelope.resource);
        event_ids.extend(publish(state, pushed.await?).await?);
        let plan = state.plan.current();
        let specs = crate::gitops::on_push(&plan, client, delivery_id, &envelope.resource);
        event_ids.extend(publish(state, specs.await?).await?);
    }
    tracing::debug!(event_type = %envelope.event_type, events = event_ids.len(), "webhook queued");
    let status = if event_ids.is_empty() {
        "ignored"
    } else {
        "queued"
    };
    Ok(axum::Json(json!({"ok": true, "status": status, "eventIds": event_ids})).into_response())
}

/// Publishes raw events of a webhook and returns their ids once the broker confirmed them all;
/// a broker that cannot take them is [`WebhookError::Unavailable`] (503, which Azure DevOps
/// retries).
async fn publish(state: &WebhookState, events: Vec<RawEvent>) -> Result<Vec<String>, WebhookError> {
    crate::publisher::publish(&state.bus, events)
        .await
        .map_err(|e| WebhookError::Unavailable(e.to_string()))
}

/// The one place the receiver hands messages to the bus: returns when the broker confirmed
/// them all; a broker that cannot take them is [`WebhookError::Unavailable`] (503, which Azure
/// DevOps retries).
async fn send(state: &WebhookState, messages: Vec<Outgoing>) -> Result<(), WebhookError> {
    state
        .bus
        .publish_all(messages)
        .await
        .map_err(|e| WebhookError::Unavailable(e.to_string()))
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
    fn the_receiver_acts_on_the_event_types_live_events_resolve() {
        for handled in [
            "git.repo.deleted",
            "git.push",
            "workitem.deleted",
            "build.complete",
        ] {
            assert!(live_events::handles(handled), "{handled}");
        }
        assert!(!live_events::handles(
            "ms.vss-code.git-pullrequest-comment-event"
        ));
        let work_item = envelope(json!({"eventType": "workitem.deleted", "publisherId": "tfs", "resource": {"id": 1}, "resourceContainers": {"project": {"id": "p"}}})).expect("ok");
        assert_eq!(work_item.work_item_project(), Some(&ProjectId::new("p")));
        let push = envelope(json!({"eventType": "git.push", "publisherId": "tfs", "resource": {}, "resourceContainers": {"project": {"id": "p"}}})).expect("ok");
        assert_eq!(
            push.work_item_project(),
            None,
            "excludedTags is for work items only"
        );
    }

    fn failure(source: crate::ado::AdoError) -> ReadFailure {
        ReadFailure::new(crate::kind::Kind::PullRequest, 7, source)
    }

    #[test]
    fn only_failures_that_may_heal_are_answered_with_a_retry() {
        use crate::ado::AdoError;
        let status = |status| AdoError::Status {
            status,
            url: "u".into(),
            body: "b".into(),
        };
        assert!(retry_later(&failure(status(500))));
        assert!(retry_later(&failure(status(429))));
        assert!(retry_later(&failure(AdoError::Unauthorized {
            url: "u".into(),
            detail: "d".into()
        })));
        assert!(!retry_later(&failure(status(400))));
        assert!(!retry_later(&failure(AdoError::Forbidden {
            url: "u".into()
        })));
        let project_gone = AdoError::NotFound {
            url: "u".into(),
            message: "TF200016: The following project does not exist: p.".into(),
            type_key: "ProjectDoesNotExistWithNameException".into(),
        };
        assert!(!retry_later(&failure(project_gone)));
    }

    #[test]
    fn the_documented_bounds_are_the_defaults() {
        let limits = WebhookLimits::default();
        assert_eq!(limits.max_body_bytes, 4 * 1024 * 1024);
        assert_eq!(limits.max_in_flight, 32);
        assert_eq!(limits.request_deadline, Duration::from_secs(30));
        assert_eq!(BUSY_RETRY_AFTER_SECS, 5);
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
