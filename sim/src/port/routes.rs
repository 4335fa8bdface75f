//! The Port routes, their handlers and the gate middleware in front of them.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use chrono::DateTime;
use serde_json::{Value, json};

use super::PortState;
use super::action_runs::{acknowledge, claim_pending, find_runs, get_run, patch_run, post_log};
use super::auth::TOKEN_LIFETIME;
use super::cursors::{create_cursor, get_cursor, put_cursor};
use super::error::PortError;
use super::request::PortRequest;
use super::store::{matches_query, page, parse_entity, project_fields};
use crate::route_table::route_table;
use crate::traffic::{lock, route_key};

/// Largest request body Port accepts.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Entities per bulk upsert and per bulk delete.
const MAX_BULK_UPSERT: usize = 20;
const MAX_BULK_DELETE: usize = 100;
/// Page sizes of the paged listings.
const DATASOURCE_PAGE_MAX: usize = 5000;
const SEARCH_PAGE_MAX: usize = 1000;

pub(super) type Answer = Result<Response, PortError>;

/// Every route of the simulated Port: its path template and the handlers answering it.
#[rustfmt::skip]
fn routes() -> Vec<(&'static str, MethodRouter<Arc<PortState>>)> {
    vec![
        ("/v1/auth/access_token",                           post(access_token)),
        ("/v1/blueprints",                                  get(list_blueprints)),
        ("/v1/blueprints",                                  post(create_blueprint)),
        ("/v1/blueprints/{bp}",                             get(get_blueprint)),
        ("/v1/blueprints/{bp}",                             patch(patch_blueprint)),
        ("/v1/blueprints/{bp}/entities",                    get(list_entities)),
        ("/v1/blueprints/{bp}/entities",                    post(upsert_one)),
        ("/v1/blueprints/{bp}/entities/bulk",               post(bulk_upsert)),
        ("/v1/blueprints/{bp}/entities/search",             post(blueprint_search)),
        ("/v1/blueprints/{bp}/entities/{id}",               get(get_entity)),
        ("/v1/blueprints/{bp}/entities/{id}",               delete(delete_entity)),
        ("/v1/blueprints/{bp}/scorecards",                  post(create_scorecard)),
        ("/v1/pages",                                       post(create_page)),
        ("/v1/blueprints/{bp}/bulk/entities/delete",        post(bulk_delete)),
        ("/v1/blueprints/entities/datasource-entities",     post(datasource_entities)),
        ("/v1/entities/search",                             post(search)),
        ("/v1/organization",                                get(organization)),
        ("/v1/integration",                                 post(create_integration)),
        ("/v1/integration/provision-enabled",               get(provision_enabled)),
        ("/v1/integration/{id}",                            get(get_integration)),
        ("/v1/integration/{id}",                            patch(patch_integration)),
        ("/v1/integration/{id}/config",                     patch(patch_integration_config)),
        ("/v1/integration/{id}/resync-state",               patch(patch_resync_state)),
        ("/v1/integration/{id}/resync-request",             get(get_resync_request)),
        ("/v1/integration/{id}/cursor",                     get(get_cursor)),
        ("/v1/integration/{id}/cursor",                     put(put_cursor)),
        ("/v1/integration/{id}/cursor",                     post(create_cursor)),
        ("/v1/integration/{id}/kinds/{kind}/examples",      post(post_examples)),
        ("/v1/metrics-ingest/{id}/syncMetrics",             post(post_sync_metrics)),
        ("/v1/metrics-ingest/{id}/heartbeat",               post(post_metrics_heartbeat)),
        ("/v1/metrics-ingest/{id}/syncMetrics/resync/{event}/kind/{kind}", put(put_kind_sync_metrics)),
        ("/v1/logs-ingest/{id}",                            post(post_logs)),
        ("/v1/actions/runs/claim-pending",                  post(claim_pending)),
        ("/v1/actions/runs/ack",                            patch(acknowledge)),
        ("/v1/actions/runs",                                get(find_runs)),
        ("/v1/actions/runs/{run_id}",                       get(get_run)),
        ("/v1/actions/runs/{run_id}",                       patch(patch_run)),
        ("/v1/actions/runs/{run_id}/logs",                  post(post_log)),
    ]
}

pub(crate) fn router(state: Arc<PortState>) -> Router {
    route_table(routes())
        .fallback(|| async { PortError::not_found("Route not found") })
        .layer(middleware::from_fn_with_state(Arc::clone(&state), gate))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Counting, scripted answers, rate limit and token, then the handler; adds `x-trace-id` and
/// the rate-limit headers to every answer.
async fn gate(
    State(state): State<Arc<PortState>>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let key = route_key(request.method(), matched.as_ref());
    if let Some(response) = outage_answer(&state) {
        // Counted like any request; the scripts wait until Port is back.
        state.traffic.count(&key);
        state.traffic.touch();
        return response;
    }
    let _round = state.traffic.begin_round();
    let scripted = state.traffic.arrive(&key);
    let verdict = lock(&state.window).take();
    let mut response = match scripted {
        Some(answer) if !answer.passes_through() => {
            let status = answer.status_code();
            let body = answer.body.clone().unwrap_or_else(|| {
                if status == StatusCode::TOO_MANY_REQUESTS {
                    PortError::too_many_requests().body()
                } else {
                    PortError::scripted(status).body()
                }
            });
            let mut response = (status, Json(body)).into_response();
            let retry_after = answer
                .retry_after_secs
                .or((status == StatusCode::TOO_MANY_REQUESTS).then_some(1));
            if let Some(seconds) = retry_after {
                set_header(response.headers_mut(), "retry-after", &seconds.to_string());
            }
            response
        }
        passing => {
            let mut response = if !verdict.allowed {
                PortError::too_many_requests().into_response()
            } else if key != "POST /v1/auth/access_token"
                && !lock(&state.tokens).accepts(request.headers())
            {
                PortError::unauthorized().into_response()
            } else {
                if !state.config.latency.is_zero() {
                    tokio::time::sleep(state.config.latency).await;
                }
                next.run(request).await
            };
            if let Some(seconds) = passing.and_then(|a| a.retry_after_secs) {
                set_header(response.headers_mut(), "retry-after", &seconds.to_string());
            }
            response
        }
    };
    verdict.write_headers(response.headers_mut());
    let trace = uuid::Uuid::new_v4().simple().to_string();
    set_header(response.headers_mut(), "x-trace-id", &trace);
    state.traffic.touch();
    response
}

/// The answer of the outage in force, if any: 500 and 503 alternately, or 429 with
/// `Retry-After`.
fn outage_answer(state: &PortState) -> Option<Response> {
    let mut outage = lock(&state.outage);
    let kind = outage.0?;
    outage.1 += 1;
    let mut response = match kind {
        super::PortOutage::Unavailable => {
            let status = if outage.1.is_multiple_of(2) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            (status, Json(PortError::scripted(status).body())).into_response()
        }
        super::PortOutage::RateLimited { retry_after_secs } => {
            let mut response = PortError::too_many_requests().into_response();
            set_header(
                response.headers_mut(),
                "retry-after",
                &retry_after_secs.to_string(),
            );
            response
        }
    };
    let trace = uuid::Uuid::new_v4().simple().to_string();
    set_header(response.headers_mut(), "x-trace-id", &trace);
    Some(response)
}

fn set_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// A JSON request body, with Port's answers for a body that is too large (413) or not JSON.
pub(super) struct Body(pub(super) Value);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = PortError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    PortError::too_large()
                } else {
                    PortError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        rejection.body_text(),
                    )
                }
            })?;
        if bytes.is_empty() {
            return Ok(Body(json!({})));
        }
        serde_json::from_slice(&bytes).map(Body).map_err(|e| {
            PortError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("The body is not valid JSON: {e}"),
            )
        })
    }
}

pub(super) fn ok(status: StatusCode, body: Value) -> Answer {
    Ok((status, Json(body)).into_response())
}

async fn access_token(State(state): State<Arc<PortState>>, Body(body): Body) -> Answer {
    let client_id = body.get("clientId").and_then(Value::as_str);
    let client_secret = body.get("clientSecret").and_then(Value::as_str);
    if client_id != Some(state.config.client_id.as_str())
        || client_secret != Some(state.config.client_secret.as_str())
    {
        return Err(PortError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Could not authenticate with the given client id and secret",
        ));
    }
    let token = lock(&state.tokens).issue(&state.config.client_id);
    ok(
        StatusCode::OK,
        json!({"ok": true, "accessToken": token, "expiresIn": TOKEN_LIFETIME.as_secs(), "tokenType": "Bearer"}),
    )
}

async fn bulk_upsert(request: PortRequest, Body(body): Body) -> Answer {
    let blueprint = request.param("bp");
    let Some(items) = body.get("entities").and_then(Value::as_array) else {
        return Err(PortError::invalid("body must be {\"entities\": [...]}"));
    };
    if items.is_empty() || items.len() > MAX_BULK_UPSERT {
        return Err(PortError::invalid(format!(
            "\"entities\" must hold between 1 and {MAX_BULK_UPSERT} entities, got {}",
            items.len()
        )));
    }
    let options = request.upsert_options();
    let delay = write_delay(&request.state);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut done = Vec::new();
    let mut errors = Vec::new();
    {
        let mut catalog = lock(&request.state.catalog);
        catalog.check_blueprint(&blueprint)?;
        let refused = lock(&request.state.refused).clone();
        for (index, item) in items.iter().enumerate() {
            let outcome = parse_entity(item).and_then(|input| {
                let identifier = input.identifier.clone();
                if refused.contains(&identifier) {
                    let message =
                        format!("entity {identifier} is refused by this Port (refuse_upserts_of)");
                    return Err((
                        Some(identifier),
                        PortError::new(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "entity_validation_error",
                            message,
                        ),
                    ));
                }
                catalog
                    .upsert(
                        &blueprint,
                        input,
                        options,
                        request.datasource(),
                        &request.state.config.client_id,
                    )
                    .map(|(_, created)| (identifier.clone(), created))
                    .map_err(|e| (Some(identifier), e))
            });
            match outcome {
                Ok((identifier, created)) => {
                    done.push(json!({"identifier": identifier, "index": index, "created": created}))
                }
                Err((identifier, e)) => errors.push(json!({
                    "identifier": identifier,
                    "index": index,
                    "statusCode": e.status.as_u16(),
                    "error": e.error,
                    "message": e.message,
                })),
            }
        }
    }
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::MULTI_STATUS
    };
    ok(
        status,
        json!({"ok": true, "entities": done, "errors": errors}),
    )
}

/// The configured latency of a write, plus its share of the jitter: spread over the range by
/// the golden ratio, so consecutive requests take very different times (deterministically).
fn write_delay(state: &PortState) -> std::time::Duration {
    let n = state
        .upserts
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let jitter = state.config.write_jitter;
    let fraction = (n as f64 * 0.618_033_988_75).fract();
    state.config.write_latency + jitter.mul_f64(fraction)
}

async fn upsert_one(request: PortRequest, Body(body): Body) -> Answer {
    let blueprint = request.param("bp");
    let input = parse_entity(&body).map_err(|(_, e)| e)?;
    let (entity, _) = lock(&request.state.catalog).upsert(
        &blueprint,
        input,
        request.upsert_options(),
        request.datasource(),
        &request.state.config.client_id,
    )?;
    ok(StatusCode::CREATED, json!({"ok": true, "entity": entity}))
}

async fn list_entities(request: PortRequest) -> Answer {
    let blueprint = request.param("bp");
    let catalog = lock(&request.state.catalog);
    catalog.check_blueprint(&blueprint)?;
    let entities: Vec<Value> = catalog
        .of_blueprint(&blueprint)
        .map(|e| e.api_json())
        .collect();
    ok(StatusCode::OK, json!({"ok": true, "entities": entities}))
}

async fn get_entity(request: PortRequest) -> Answer {
    let (blueprint, identifier) = (request.param("bp"), request.param("id"));
    let catalog = lock(&request.state.catalog);
    catalog.check_blueprint(&blueprint)?;
    let entity = catalog.get(&blueprint, &identifier).ok_or_else(|| {
        PortError::not_found(format!(
            "Entity with identifier \"{identifier}\" was not found"
        ))
    })?;
    ok(
        StatusCode::OK,
        json!({"ok": true, "entity": entity.api_json()}),
    )
}

async fn delete_entity(request: PortRequest) -> Answer {
    let (blueprint, identifier) = (request.param("bp"), request.param("id"));
    let deleted = lock(&request.state.catalog).delete(
        &blueprint,
        &identifier,
        request.flag("delete_dependents"),
    )?;
    if !deleted {
        return Err(PortError::not_found(format!(
            "Entity with identifier \"{identifier}\" was not found"
        )));
    }
    ok(StatusCode::OK, json!({"ok": true}))
}

async fn bulk_delete(request: PortRequest, Body(body): Body) -> Answer {
    let blueprint = request.param("bp");
    let ids = body
        .get("entities")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|v| v.as_str().map(String::from))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| PortError::invalid("body must be {\"entities\": [identifiers]}"))?
        .ok_or_else(|| PortError::invalid("\"entities\" must hold identifiers (strings)"))?;
    if ids.is_empty() || ids.len() > MAX_BULK_DELETE {
        return Err(PortError::invalid(format!(
            "\"entities\" must hold between 1 and {MAX_BULK_DELETE} identifiers, got {}",
            ids.len()
        )));
    }
    let delete_dependents = request.flag("delete_dependents");
    let mut catalog = lock(&request.state.catalog);
    catalog.check_blueprint(&blueprint)?;
    if !delete_dependents
        && let Some(id) = ids
            .iter()
            .find(|id| !catalog.dependents(&blueprint, id).is_empty())
    {
        return Err(PortError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "has_dependents",
            format!("Entity \"{id}\" has dependent entities; pass delete_dependents=true"),
        ));
    }
    let mut deleted = Vec::new();
    for id in ids {
        if catalog.delete(&blueprint, &id, delete_dependents)? {
            deleted.push(id);
        }
    }
    ok(
        StatusCode::OK,
        json!({"ok": true, "deletedEntities": deleted}),
    )
}

fn limit_of(body: &Value, default: usize, max: usize) -> Result<usize, PortError> {
    match body.get("limit") {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                PortError::invalid(format!("\"limit\" must be an integer between 1 and {max}"))
            }),
    }
}

async fn blueprint_search(request: PortRequest, Body(body): Body) -> Answer {
    let blueprint = request.param("bp");
    let limit = limit_of(&body, 200, SEARCH_PAGE_MAX)?;
    let from = body.get("from").and_then(Value::as_str);
    let query = body.get("query").cloned();
    let catalog = lock(&request.state.catalog);
    catalog.check_blueprint(&blueprint)?;
    let mut candidates = Vec::new();
    for entity in catalog.of_blueprint(&blueprint) {
        if let Some(query) = &query
            && !matches_query(entity, query)?
        {
            continue;
        }
        candidates.push(entity);
    }
    let (selected, next) = page(candidates.into_iter(), from, limit)?;
    let entities: Vec<Value> = selected.into_iter().map(|e| e.api_json()).collect();
    ok(
        StatusCode::OK,
        json!({"ok": true, "entities": entities, "next": next}),
    )
}

async fn search(
    State(state): State<Arc<PortState>>,
    Query(query): Query<Vec<(String, String)>>,
    Body(body): Body,
) -> Answer {
    let include: Vec<String> = query
        .into_iter()
        .filter(|(k, _)| k == "include")
        .map(|(_, v)| v)
        .collect();
    let catalog = lock(&state.catalog);
    let entities: Vec<Value> = catalog
        .search(&body)?
        .into_iter()
        .map(|entity| project_fields(entity.api_json(), &include))
        .collect();
    ok(StatusCode::OK, json!({"ok": true, "entities": entities}))
}

async fn datasource_entities(State(state): State<Arc<PortState>>, Body(body): Body) -> Answer {
    let text = |name: &str| body.get(name).and_then(Value::as_str).map(String::from);
    let prefix = text("datasource_prefix").unwrap_or_default();
    let suffix = text("datasource_suffix").unwrap_or_default();
    let before = text("before")
        .map(|b| {
            DateTime::parse_from_rfc3339(&b).map_err(|_| {
                PortError::invalid(format!("\"before\" is not an ISO 8601 date-time: {b}"))
            })
        })
        .transpose()?;
    let limit = limit_of(&body, DATASOURCE_PAGE_MAX, DATASOURCE_PAGE_MAX)?;
    let catalog = lock(&state.catalog);
    let owned = catalog.all().filter(|e| {
        e.datasource
            .as_deref()
            .is_some_and(|d| d.starts_with(&prefix) && d.ends_with(&suffix))
            && before.is_none_or(|b| e.updated_at < b)
    });
    let (selected, next) = page(owned, text("from").as_deref(), limit)?;
    let entities: Vec<Value> = selected.into_iter().map(|e| e.api_json()).collect();
    ok(
        StatusCode::OK,
        json!({"ok": true, "entities": entities, "next": next}),
    )
}

async fn list_blueprints(State(state): State<Arc<PortState>>) -> Answer {
    ok(
        StatusCode::OK,
        json!({"ok": true, "blueprints": lock(&state.catalog).blueprints()}),
    )
}

async fn create_blueprint(State(state): State<Arc<PortState>>, Body(body): Body) -> Answer {
    let Some(identifier) = body
        .get("identifier")
        .and_then(Value::as_str)
        .map(String::from)
    else {
        return Err(PortError::invalid("a blueprint needs an \"identifier\""));
    };
    let mut catalog = lock(&state.catalog);
    if catalog.blueprint(&identifier).is_some() {
        return Err(PortError::new(
            StatusCode::CONFLICT,
            "identifier_taken",
            format!("Blueprint with identifier \"{identifier}\" already exists"),
        ));
    }
    catalog.define_blueprint(&identifier, body.clone());
    ok(StatusCode::CREATED, json!({"ok": true, "blueprint": body}))
}

async fn get_blueprint(request: PortRequest) -> Answer {
    let identifier = request.param("bp");
    let catalog = lock(&request.state.catalog);
    let blueprint = catalog.blueprint(&identifier).ok_or_else(|| {
        PortError::not_found(format!(
            "Blueprint with identifier \"{identifier}\" was not found"
        ))
    })?;
    ok(StatusCode::OK, json!({"ok": true, "blueprint": blueprint}))
}

async fn patch_blueprint(request: PortRequest, Body(body): Body) -> Answer {
    let identifier = request.param("bp");
    let mut catalog = lock(&request.state.catalog);
    let mut blueprint = catalog.blueprint(&identifier).cloned().ok_or_else(|| {
        PortError::not_found(format!(
            "Blueprint with identifier \"{identifier}\" was not found"
        ))
    })?;
    if let (Value::Object(target), Value::Object(fields)) = (&mut blueprint, body) {
        target.extend(fields);
    }
    catalog.define_blueprint(&identifier, blueprint.clone());
    ok(StatusCode::OK, json!({"ok": true, "blueprint": blueprint}))
}

/// The `{"ok": true, "integration": …}` answer, or 404 when there is no integration
/// `identifier` (`integration` is `None`).
fn integration_answer(identifier: &str, integration: Option<Value>) -> Answer {
    let integration = integration.ok_or_else(|| integration_not_found(identifier))?;
    ok(
        StatusCode::OK,
        json!({"ok": true, "integration": integration}),
    )
}

fn integration_not_found(identifier: &str) -> PortError {
    PortError::not_found(format!(
        "Integration with identifier \"{identifier}\" was not found"
    ))
}

/// A scorecard of an existing blueprint: 201, 404 for an unknown blueprint, 409 for an
/// identifier taken.
async fn create_scorecard(request: PortRequest, Body(body): Body) -> Answer {
    let blueprint = request.param("bp");
    if lock(&request.state.catalog).blueprint(&blueprint).is_none() {
        return Err(PortError::not_found(format!(
            "Blueprint with identifier \"{blueprint}\" was not found"
        )));
    }
    let identifier = identifier_of(&body, "a scorecard")?;
    let mut scorecard = body.clone();
    scorecard["blueprint"] = json!(blueprint);
    if !lock(&request.state.presentation).add_scorecard(&blueprint, &identifier, scorecard.clone())
    {
        return Err(taken("A scorecard with this identifier already exists"));
    }
    ok(
        StatusCode::CREATED,
        json!({"ok": true, "scorecard": scorecard}),
    )
}

/// A page: 201, 409 for an identifier taken.
async fn create_page(State(state): State<Arc<PortState>>, Body(body): Body) -> Answer {
    let identifier = identifier_of(&body, "a page")?;
    if !lock(&state.presentation).add_page(&identifier, body.clone()) {
        return Err(taken("A page with this identifier already exists"));
    }
    ok(StatusCode::CREATED, json!({"ok": true, "page": body}))
}

/// The `identifier` of a created resource, or 422 naming what lacks it.
fn identifier_of(body: &Value, what: &str) -> Result<String, PortError> {
    body.get("identifier")
        .and_then(Value::as_str)
        .map(String::from)
        .ok_or_else(|| PortError::invalid(format!("{what} needs an \"identifier\"")))
}

fn taken(message: &str) -> PortError {
    PortError::new(StatusCode::CONFLICT, "identifier_taken", message)
}

/// The organization the credentials belong to: its id and no feature flags (Port's defaults).
async fn organization(State(state): State<Arc<PortState>>) -> Answer {
    Ok(Json(json!({
        "ok": true,
        "organization": {
            "id": format!("org_{}", state.config.client_id),
            "name": "Simulated organization",
            "featureFlags": [],
        },
    }))
    .into_response())
}

/// The integration types whose resources Port provisions itself: none here, so an integration
/// creates its own blueprints and mapping.
async fn provision_enabled() -> Answer {
    Ok(Json(json!({"ok": true, "integrations": []})).into_response())
}

async fn get_integration(request: PortRequest) -> Answer {
    let identifier = request.param("id");
    integration_answer(
        &identifier,
        lock(&request.state.integrations).get(&identifier).cloned(),
    )
}

async fn create_integration(State(state): State<Arc<PortState>>, Body(body): Body) -> Answer {
    if body
        .get("installationId")
        .or_else(|| body.get("identifier"))
        .and_then(Value::as_str)
        .is_none()
    {
        return Err(PortError::invalid(
            "an integration needs an \"installationId\"",
        ));
    }
    let integration = lock(&state.integrations).create(&body).ok_or_else(|| {
        PortError::new(
            StatusCode::CONFLICT,
            "identifier_taken",
            "An integration with this identifier already exists",
        )
    })?;
    ok(
        StatusCode::OK,
        json!({"ok": true, "integration": integration}),
    )
}

async fn patch_integration(request: PortRequest, Body(body): Body) -> Answer {
    let identifier = request.param("id");
    integration_answer(
        &identifier,
        lock(&request.state.integrations).patch_record(&identifier, &body),
    )
}

async fn patch_integration_config(request: PortRequest, Body(body): Body) -> Answer {
    let identifier = request.param("id");
    let Some(config) = body.get("config") else {
        return Err(PortError::invalid("body must be {\"config\": {...}}"));
    };
    integration_answer(
        &identifier,
        lock(&request.state.integrations).patch(&identifier, &json!({"config": config})),
    )
}

async fn patch_resync_state(request: PortRequest, Body(body): Body) -> Answer {
    let identifier = request.param("id");
    let entities = lock(&request.state.catalog).count();
    integration_answer(
        &identifier,
        lock(&request.state.integrations).report_resync_state(&identifier, &body, entities),
    )
}

async fn get_resync_request(request: PortRequest) -> Answer {
    let identifier = request.param("id");
    let integrations = lock(&request.state.integrations);
    if integrations.get(&identifier).is_none() {
        return Err(integration_not_found(&identifier));
    }
    ok(
        StatusCode::OK,
        json!({"ok": true, "request": {"updatedAt": integrations.resync_requested_at}}),
    )
}

async fn post_examples(request: PortRequest, Body(body): Body) -> Answer {
    let (identifier, kind) = (request.param("id"), request.param("kind"));
    let Some(examples) = body.get("examples").and_then(Value::as_array).cloned() else {
        return Err(PortError::invalid("body must be {\"examples\": [...]}"));
    };
    let mut integrations = lock(&request.state.integrations);
    if integrations.get(&identifier).is_none() {
        return Err(integration_not_found(&identifier));
    }
    integrations.examples.insert(kind, examples);
    ok(StatusCode::OK, json!({"ok": true}))
}

/// `POST {ingestUrl}/syncMetrics` (`{syncKindsMetrics: [...]}`), recorded.
async fn post_sync_metrics(request: PortRequest, Body(body): Body) -> Answer {
    let identifier = request.param("id");
    let Some(events) = body
        .get("syncKindsMetrics")
        .and_then(Value::as_array)
        .cloned()
    else {
        return Err(PortError::invalid(
            "body must be {\"syncKindsMetrics\": [...]}",
        ));
    };
    let mut integrations = lock(&request.state.integrations);
    if !integrations.takes_metrics(&identifier) {
        return Err(integration_not_found(&identifier));
    }
    if !events.is_empty() && events.iter().all(is_pseudo_kind) {
        for event in events {
            (integrations.pseudo_kind_metrics).push(("POST", identifier.clone(), event));
        }
    } else {
        integrations.sync_metrics.push(events);
        integrations.sync_metrics_ingest.push(identifier);
    }
    ok(StatusCode::OK, json!({"ok": true}))
}

/// An event of one of Ocean's pseudo-kinds (`__runtime__`, `__reconciliation__`), not of a
/// mapping resource.
fn is_pseudo_kind(event: &Value) -> bool {
    event["kindIdentifier"]
        .as_str()
        .is_some_and(|k| k.starts_with("__"))
}

/// `POST {ingestUrl}/heartbeat` (`{eventId}`), recorded.
async fn post_metrics_heartbeat(request: PortRequest, Body(body): Body) -> Answer {
    let identifier = request.param("id");
    let Some(event_id) = body.get("eventId").and_then(Value::as_str) else {
        return Err(PortError::invalid("body must be {\"eventId\": \"...\"}"));
    };
    let mut integrations = lock(&request.state.integrations);
    if !integrations.takes_metrics(&identifier) {
        return Err(integration_not_found(&identifier));
    }
    integrations.heartbeats.push(event_id.to_string());
    ok(StatusCode::OK, json!({"ok": true}))
}

/// `POST {logAttributes.ingestUrl}` (`{logs: [{message, level, timestamp, extra}]}`), recorded;
/// 422 for a line without a string `message`, `level` or `timestamp`, or `extra` not an object.
async fn post_logs(request: PortRequest, Body(body): Body) -> Answer {
    let identifier = request.param("id");
    let Some(lines) = body.get("logs").and_then(Value::as_array).cloned() else {
        return Err(PortError::invalid("body must be {\"logs\": [...]}"));
    };
    for line in &lines {
        let text = |field: &str| line.get(field).and_then(Value::as_str).is_some();
        let complete = text("message")
            && text("level")
            && text("timestamp")
            && line.get("extra").is_some_and(Value::is_object);
        if !complete {
            return Err(PortError::invalid(
                "each log needs a string message, level and timestamp and an extra object",
            ));
        }
    }
    let mut integrations = lock(&request.state.integrations);
    if integrations.get(&identifier).is_none() {
        return Err(integration_not_found(&identifier));
    }
    integrations.log_shipments.push(lines);
    ok(StatusCode::OK, json!({"ok": true}))
}

/// `PUT {ingestUrl}/syncMetrics/resync/{eventId}/kind/{kindIdentifier}`
/// (`{syncKindMetrics: {...}}`), recorded; 422 when the body's ids differ from the path's.
async fn put_kind_sync_metrics(request: PortRequest, Body(body): Body) -> Answer {
    let (identifier, event_id, kind) = (
        request.param("id"),
        request.param("event"),
        request.param("kind"),
    );
    let Some(event) = body
        .get("syncKindMetrics")
        .filter(|e| e.is_object())
        .cloned()
    else {
        return Err(PortError::invalid(
            "body must be {\"syncKindMetrics\": {...}}",
        ));
    };
    if event["eventId"] != json!(event_id) || event["kindIdentifier"] != json!(kind) {
        return Err(PortError::invalid(
            "syncKindMetrics.eventId and kindIdentifier must be the path's",
        ));
    }
    let mut integrations = lock(&request.state.integrations);
    if !integrations.takes_metrics(&identifier) {
        return Err(integration_not_found(&identifier));
    }
    if is_pseudo_kind(&event) {
        (integrations.pseudo_kind_metrics).push(("PUT", identifier, event));
    } else {
        integrations.kind_sync_metrics.push((event_id, kind, event));
    }
    ok(StatusCode::OK, json!({"ok": true}))
}
