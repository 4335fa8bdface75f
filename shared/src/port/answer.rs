//! One request's answer: sent with its status and latency recorded, its body read, and a
//! failure turned into a [`PortError`] that names the request, the status, a body excerpt and
//! the wait Port asked for. Below both the sign-in ([`super::auth`]) and the client
//! ([`super::client`]), which send through it.

use std::time::SystemTime;

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, Response};
use serde::Deserialize;
use tokio::time::Instant;

use super::error::{PortError, excerpt};
use super::retry;
use crate::metrics::HttpStats;

/// The method of the request a response answers, kept on the response so that an error can
/// name the request (`PATCH https://…/v1/actions/runs/ack`).
#[derive(Clone)]
struct RequestMethod(Method);

/// Keeps on `response` the method of the request it answers, for [`status_error`].
pub(super) fn tag_method(response: &mut Response, method: Method) {
    response.extensions_mut().insert(RequestMethod(method));
}

#[derive(Deserialize)]
struct PortErrorBody {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Sends `request`, recording its status (or transport error) and latency into `stats`.
pub(super) async fn timed(
    stats: &HttpStats,
    request: RequestBuilder,
) -> Result<Response, reqwest::Error> {
    let started = Instant::now();
    let result = request.send().await;
    stats.record(
        result.as_ref().ok().map(|r| r.status().as_u16()),
        started.elapsed(),
    );
    result
}

/// Reads a success's JSON body, or turns a failure into [`PortError::Status`].
pub async fn read_json<T: serde::de::DeserializeOwned>(
    operation: &str,
    response: Response,
) -> Result<T, PortError> {
    if !response.status().is_success() {
        return Err(status_error(operation, response).await);
    }
    let bytes = read_body(operation, response).await?;
    serde_json::from_slice(&bytes).map_err(|e| PortError::InvalidResponse {
        operation: operation.to_string(),
        detail: format!("{e}; body: {}", excerpt(&String::from_utf8_lossy(&bytes))),
    })
}

/// Reads an answer's body; a connection lost on the way is a [`PortError::Transport`].
pub async fn read_body(operation: &str, response: Response) -> Result<bytes::Bytes, PortError> {
    let url = response.url().to_string();
    response
        .bytes()
        .await
        .map_err(|source| PortError::transport(operation, &url, source))
}

/// Port's `x-trace-id`, for a support ticket.
pub fn trace_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-trace-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Port's `message` (or `error`) from an error body, else an excerpt of the body.
pub fn port_message(body: &str) -> String {
    match serde_json::from_str::<PortErrorBody>(body) {
        Ok(PortErrorBody {
            message: Some(message),
            ..
        }) => excerpt(&message),
        Ok(PortErrorBody {
            error: Some(error), ..
        }) => excerpt(&error),
        _ if body.trim().is_empty() => "(no body)".into(),
        _ => excerpt(body),
    }
}

/// Turns a non-success answer into [`PortError::Status`], reading the wait hint first.
pub async fn status_error(operation: &str, response: Response) -> PortError {
    let status = response.status();
    let headers = response.headers().clone();
    let method = response
        .extensions()
        .get::<RequestMethod>()
        .map_or(Method::POST, |m| m.0.clone());
    let request = format!("{method} {}", response.url());
    let body = response.text().await.unwrap_or_default();
    PortError::Status {
        operation: operation.to_string(),
        request,
        status: status.as_u16(),
        excerpt: excerpt(&body),
        trace_id: trace_id(&headers),
        retry_after: retry::wait_hint(status, &headers, SystemTime::now()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_message_prefers_message() {
        assert_eq!(
            port_message(r#"{"ok":false,"error":"not_found","message":"Entity x not found"}"#),
            "Entity x not found"
        );
        assert_eq!(port_message(r#"{"ok":false,"error":"bad"}"#), "bad");
        assert_eq!(port_message("<html>oops</html>"), "<html>oops</html>");
        assert_eq!(port_message(""), "(no body)");
    }
}
