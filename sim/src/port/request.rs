//! What a Port handler of a path with parameters reads from its request, extracted once: the
//! shared state, the path parameters, the query flags and the datasource the caller names (its
//! `User-Agent`). Handlers take one [`PortRequest`] instead of repeating the same four
//! extractors; a handler that needs the body takes it after this.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use axum::response::Response;

use super::PortState;
use super::store::UpsertOptions;
use crate::params::path_and_query;

/// The parts of a request the simulated Port's handlers start from.
pub(super) struct PortRequest {
    /// Port's state.
    pub(super) state: Arc<PortState>,
    /// The route's path parameters by name (`bp`, `id`, …).
    params: HashMap<String, String>,
    /// The query string's parameters by name (the last of repeated names).
    query: HashMap<String, String>,
    /// The `User-Agent`, which Port stores as a written entity's `$datasource`.
    datasource: Option<String>,
}

impl PortRequest {
    /// The path parameter `name`, empty when the route has none of that name.
    pub(super) fn param(&self, name: &str) -> String {
        self.params.get(name).cloned().unwrap_or_default()
    }

    /// Whether the query sets `name=true` (any case).
    pub(super) fn flag(&self, name: &str) -> bool {
        self.query
            .get(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    /// The datasource a write is recorded under (the caller's `User-Agent`).
    pub(super) fn datasource(&self) -> Option<&str> {
        self.datasource.as_deref()
    }

    /// How an upsert treats what exists (`upsert`, `merge`, `create_missing_related_entities`).
    pub(super) fn upsert_options(&self) -> UpsertOptions {
        UpsertOptions {
            upsert: self.flag("upsert"),
            merge: self.flag("merge"),
            create_missing_related_entities: self.flag("create_missing_related_entities"),
        }
    }
}

impl FromRequestParts<Arc<PortState>> for PortRequest {
    /// The answer of a path or query that does not decode (400), as `Path` and `Query` give it.
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<PortState>,
    ) -> Result<Self, Self::Rejection> {
        let (params, query) = path_and_query(parts, state).await?;
        let datasource = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        Ok(Self {
            state: Arc::clone(state),
            params,
            query,
            datasource,
        })
    }
}
