//! Incremental sync cursors as Port keeps them for an integration: one document per
//! `(kind, index)` — the kind and the position of its resource in the mapping — holding the
//! time up to which that resource was synced (`primary`, ISO 8601).
//!
//! | key | answer |
//! |---|---|
//! | `GET /v1/integration/{id}/cursor?kind=&index=` | `{ok, cursor: {kind, index, primary, updatedAt}}`, or `{ok, cursor: null}` before the first save; 404 for an unknown integration |
//! | `PUT /v1/integration/{id}/cursor?kind=&index=` | `{primary}` → `{ok, cursor}`; 404 `not_found` while no cursor exists (the client then creates it) |
//! | `POST /v1/integration/{id}/cursor?kind=&index=` | `{primary}` → 201 `{ok, cursor}`; 409 when it exists |
//!
//! `kind` and `index` are required (400 without them); a `primary` that is not an ISO 8601
//! time is 422.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::error::PortError;
use super::routes::{Answer, Body, ok};
use super::{PortSim, PortState};
use crate::traffic::lock;

/// `(integration, kind, index)` → the cursor document.
pub(crate) type Cursors = BTreeMap<(String, String, u64), Value>;

/// The cursor a request names: its integration, kind and index.
fn key(
    state: &PortState,
    identifier: String,
    query: &HashMap<String, String>,
) -> Result<(String, String, u64), PortError> {
    if lock(&state.integrations).get(&identifier).is_none() {
        return Err(PortError::not_found(format!(
            "Integration with identifier \"{identifier}\" was not found"
        )));
    }
    let kind = query.get("kind").filter(|k| !k.is_empty()).ok_or_else(|| {
        PortError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "querystring must have required property 'kind'",
        )
    })?;
    let index = query
        .get("index")
        .and_then(|i| i.parse::<u64>().ok())
        .ok_or_else(|| {
            PortError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "querystring/index must be integer",
            )
        })?;
    Ok((identifier, kind.clone(), index))
}

/// The `primary` of a save's body, checked to be a time.
fn primary(body: &Value) -> Result<String, PortError> {
    match body.get("primary").and_then(Value::as_str) {
        Some(text) if DateTime::parse_from_rfc3339(text).is_ok() => Ok(text.to_string()),
        _ => Err(PortError::invalid(
            "body/primary must be an ISO 8601 date-time string",
        )),
    }
}

fn document(key: &(String, String, u64), primary: String) -> Value {
    json!({
        "kind": key.1,
        "index": key.2,
        "primary": primary,
        "updatedAt": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
    })
}

pub(super) async fn get_cursor(
    State(state): State<Arc<PortState>>,
    Path(identifier): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    let key = key(&state, identifier, &query)?;
    let cursor = lock(&state.cursors).get(&key).cloned();
    ok(StatusCode::OK, json!({"ok": true, "cursor": cursor}))
}

pub(super) async fn put_cursor(
    State(state): State<Arc<PortState>>,
    Path(identifier): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    Body(body): Body,
) -> Answer {
    let key = key(&state, identifier, &query)?;
    let primary = primary(&body)?;
    let mut cursors = lock(&state.cursors);
    let Some(stored) = cursors.get_mut(&key) else {
        return Err(PortError::not_found(format!(
            "Cursor for kind \"{}\" and index {} was not found",
            key.1, key.2
        )));
    };
    *stored = document(&key, primary);
    ok(StatusCode::OK, json!({"ok": true, "cursor": stored}))
}

pub(super) async fn create_cursor(
    State(state): State<Arc<PortState>>,
    Path(identifier): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    Body(body): Body,
) -> Answer {
    let key = key(&state, identifier, &query)?;
    let primary = primary(&body)?;
    let mut cursors = lock(&state.cursors);
    if cursors.contains_key(&key) {
        return Err(PortError::new(
            StatusCode::CONFLICT,
            "cursor_already_exists",
            format!(
                "A cursor for kind \"{}\" and index {} already exists",
                key.1, key.2
            ),
        ));
    }
    let cursor = document(&key, primary);
    cursors.insert(key, cursor.clone());
    ok(StatusCode::CREATED, json!({"ok": true, "cursor": cursor}))
}

impl PortSim {
    /// The stored cursor of `(kind, index)` of integration `identifier`: its `primary` time.
    pub fn cursor(&self, identifier: &str, kind: &str, index: u64) -> Option<String> {
        lock(&self.state.cursors)
            .get(&(identifier.to_string(), kind.to_string(), index))
            .and_then(|c| c["primary"].as_str().map(String::from))
    }

    /// Sets a cursor as a previous run would have left it.
    pub fn set_cursor(&self, identifier: &str, kind: &str, index: u64, primary: &str) {
        let key = (identifier.to_string(), kind.to_string(), index);
        let cursor = document(&key, primary.to_string());
        lock(&self.state.cursors).insert(key, cursor);
    }
}
