//! What an Azure DevOps handler reads from its request, extracted once: the shared state, the
//! path parameters, the query string and the URLs answers are rendered with (from `Host`).
//!
//! Handlers take one [`AdoRequest`] instead of repeating the same four extractors and the
//! `urls(&state, &headers)` line; a handler that needs the request body takes it after this.

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::AdoState;
use super::routes::{json_body, urls};
use super::seed::{Organization, Urls};
use crate::params::path_and_query;
use crate::traffic::lock;

/// The parts of a request every simulated Azure DevOps handler starts from.
pub(crate) struct AdoRequest {
    /// The organization's state.
    pub(crate) state: Arc<AdoState>,
    /// The route's path parameters by name (`org`, `project`, `repository`, …).
    pub(crate) params: HashMap<String, String>,
    /// The query string's parameters by name (the last of repeated names).
    pub(crate) query: HashMap<String, String>,
    /// The request headers.
    pub(crate) headers: HeaderMap,
    /// The organization and collection URLs answers name, on the host the caller used.
    pub(crate) urls: Urls,
}

impl AdoRequest {
    /// The organization's data, locked for this answer.
    pub(crate) fn organization(&self) -> MutexGuard<'_, Organization> {
        lock(&self.state.organization)
    }

    /// The query parameter `name` as a comma-separated list, each entry trimmed and in lower
    /// case; empty without one.
    pub(crate) fn query_list(&self, name: &str) -> Vec<String> {
        self.query
            .get(name)
            .map(|list| {
                list.split(',')
                    .map(|entry| entry.trim().to_ascii_lowercase())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the query sets `name=true` (any case).
    pub(crate) fn flag(&self, name: &str) -> bool {
        self.query
            .get(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    /// The path parameter `name` as a number, if it is one.
    pub(crate) fn id(&self, name: &str) -> Option<u64> {
        self.params.get(name).and_then(|id| id.parse::<u64>().ok())
    }

    /// The path parameter `name`, empty when the route has none of that name.
    pub(crate) fn param(&self, name: &str) -> String {
        self.params.get(name).cloned().unwrap_or_default()
    }
}

impl FromRequestParts<Arc<AdoState>> for AdoRequest {
    /// The answer of a path that does not decode (400), as `Path` gives it.
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AdoState>,
    ) -> Result<Self, Self::Rejection> {
        let (params, query) = path_and_query(parts, state).await?;
        let headers = parts.headers.clone();
        let urls = urls(state, &headers);
        Ok(Self {
            state: Arc::clone(state),
            params,
            query,
            headers,
            urls,
        })
    }
}

/// A JSON request body, or Azure DevOps' 400 (`ArgumentException`) for one that is not JSON.
pub(crate) struct JsonBody(pub(crate) Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    /// The 400 of a body that cannot be read or is not JSON.
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        json_body(&bytes)
            .map(JsonBody)
            .map_err(IntoResponse::into_response)
    }
}
