//! [`PortError`]: every way a request to Port can fail, one variant per case a caller acts on
//! (refused credentials, an HTTP status with its body excerpt, no answer, an unreadable answer,
//! a client that cannot be built). Whether to retry (and whether Port is unavailable) is
//! [`super::retry`]'s call.

use std::time::Duration;

/// Longest excerpt of a response body kept in an error (and so in a dead-letter reason).
pub const BODY_EXCERPT_CHARS: usize = 300;

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// Port refused our credentials (token endpoint, or a 401 that survived a token refresh).
    /// Fatal: retrying or dead-lettering would not help; the operator must fix the settings.
    #[error(
        "Port refused the credentials (HTTP {status}): {message} — check OCEAN__PORT__CLIENT_ID and OCEAN__PORT__CLIENT_SECRET (Port → Settings → Credentials) and OCEAN__PORT__BASE_URL (EU or US region)"
    )]
    Auth { status: u16, message: String },

    /// Port answered with a non-success status.
    #[error("Port answered HTTP {status} to {operation}{}: {excerpt}", trace_suffix(trace_id.as_deref()))]
    Status {
        operation: String,
        /// The request's method and URL, e.g. `PATCH https://api.getport.io/v1/actions/runs/ack`.
        request: String,
        status: u16,
        /// The response body, cut to [`BODY_EXCERPT_CHARS`].
        excerpt: String,
        /// Port's `x-trace-id`, for a support ticket.
        trace_id: Option<String>,
        /// How long Port asked us to wait (`Retry-After` / `x-ratelimit-reset`), if it said.
        retry_after: Option<Duration>,
    },

    /// The request did not get an HTTP answer (connect, timeout, reset, body read).
    #[error("request to Port for {operation} failed: {source}")]
    Transport {
        operation: String,
        /// The URL the request went to.
        url: String,
        #[source]
        source: reqwest::Error,
    },

    /// Port answered 2xx with a body we cannot read.
    #[error("Port's answer to {operation} is not what its API documents: {detail}")]
    InvalidResponse { operation: String, detail: String },

    /// The Port client could not be built (bad base URL, TLS setup).
    #[error("cannot set up the Port client: {0}")]
    Setup(String),
}

impl PortError {
    /// A request for `operation` to `url` that got no (complete) answer.
    pub fn transport(operation: &str, url: &str, source: reqwest::Error) -> Self {
        PortError::Transport {
            operation: operation.to_string(),
            url: url.to_string(),
            source,
        }
    }

    /// The HTTP status Port answered, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            PortError::Auth { status, .. } | PortError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Port refused the credentials: nothing but new settings helps.
    pub fn is_auth(&self) -> bool {
        matches!(self, PortError::Auth { .. })
    }

    /// Port is over its rate limit (429): the one answer that paces every request, not only
    /// the one that got it.
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, PortError::Status { status: 429, .. })
    }
}

fn trace_suffix(trace_id: Option<&str>) -> String {
    match trace_id {
        Some(id) => format!(" (x-trace-id {id})"),
        None => String::new(),
    }
}

/// The first [`BODY_EXCERPT_CHARS`] characters of a body, on a char boundary, with `…` when cut.
pub fn excerpt(body: &str) -> String {
    let trimmed = body.trim();
    match trimmed.char_indices().nth(BODY_EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_is_bounded_and_char_safe() {
        let long = "é".repeat(1000);
        let e = excerpt(&long);
        assert_eq!(e.chars().count(), BODY_EXCERPT_CHARS + 1);
        assert_eq!(excerpt("  short  "), "short");
    }

    #[test]
    fn auth_error_names_the_settings() {
        let e = PortError::Auth {
            status: 401,
            message: "invalid credentials".into(),
        };
        let text = e.to_string();
        assert!(text.contains("OCEAN__PORT__CLIENT_ID"), "{text}");
        assert!(text.contains("OCEAN__PORT__CLIENT_SECRET"), "{text}");
        assert!(text.contains("invalid credentials"), "{text}");
    }

    #[test]
    fn status_error_carries_trace_id_and_excerpt() {
        let e = PortError::Status {
            operation: "bulk upsert of 3 entities to blueprint svc".into(),
            request: "POST http://port/v1/blueprints/svc/entities/bulk".into(),
            status: 500,
            excerpt: "boom".into(),
            trace_id: Some("t-1".into()),
            retry_after: None,
        };
        let text = e.to_string();
        assert!(
            text.contains("HTTP 500") && text.contains("boom") && text.contains("t-1"),
            "{text}"
        );
        assert_eq!(e.status(), Some(500));
        assert!(!e.is_rate_limited() && !e.is_auth());
    }
}
