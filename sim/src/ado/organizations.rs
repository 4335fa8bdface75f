//! Several simulated organizations behind one server, as `dev.azure.com` serves every
//! organization under its first path segment: a request goes to the router of the organization
//! it names (each with its own data, counters and scripts); one naming no served organization
//! gets Azure DevOps' `HostNotFoundException` 404.

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;

use super::AdoState;
use super::error::AdoError;
use super::routes::organization_segment;

/// The router that dispatches to each organization's own router by the first path segment.
pub(crate) fn router(states: &[Arc<AdoState>]) -> Router {
    let organizations: Arc<Vec<(String, Router)>> = Arc::new(
        states
            .iter()
            .map(|state| {
                (
                    state.config.organization.to_ascii_lowercase(),
                    super::routes::router(Arc::clone(state)),
                )
            })
            .collect(),
    );
    Router::new().fallback(move |request: Request| {
        let organizations = Arc::clone(&organizations);
        async move { dispatch(&organizations, request).await }
    })
}

async fn dispatch(organizations: &[(String, Router)], request: Request) -> Response {
    let organization = organization_segment(&request);
    let wanted = organization.to_ascii_lowercase();
    match organizations.iter().find(|(name, _)| *name == wanted) {
        Some((_, router)) => match router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        None => AdoError::OrganizationNotFound { organization }.into_response(),
    }
}
