//! A request's path and query parameters by name, as both simulators' request extractors read
//! them, with axum's own 400 for a path or query that does not decode.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

/// Parameters by name (the last of repeated query names).
pub(crate) type Params = HashMap<String, String>;

/// The route's path parameters and the query string's parameters.
pub(crate) async fn path_and_query<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
) -> Result<(Params, Params), Response> {
    let Path(path) = Path::<Params>::from_request_parts(parts, state)
        .await
        .map_err(IntoResponse::into_response)?;
    let Query(query) = Query::<Params>::from_request_parts(parts, state)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok((path, query))
}
