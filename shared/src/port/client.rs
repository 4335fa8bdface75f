//! [`PortApi`]: the transport every Port call goes through — one connection pool, the URL of a
//! route under `OCEAN__PORT__BASE_URL`, the token on every request (renewed once on 401), the
//! status and latency of every request recorded, and a failed answer turned into a
//! [`PortError`] with Port's wait hint. One request per call: what to retry and when is the
//! caller's, by [`super::retry`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;

use super::auth::TokenCache;
use super::error::{PortError, excerpt};
use super::retry;
use crate::config::PortAccess;
use crate::metrics::HttpStats;

struct Inner {
    http: reqwest::Client,
    base: Url,
    tokens: TokenCache,
    /// `OCEAN__INTEGRATION__IDENTIFIER`.
    integration_identifier: String,
    /// Every request's status (or transport error) and latency.
    http_stats: HttpStats,
}

/// An authenticated client of Port's API. Cheap to clone; clones share the connection pool
/// and the token.
#[derive(Clone)]
pub struct PortApi {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PortApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortApi")
            .field("base", &self.inner.base.as_str())
            .field("client_id", &self.inner.tokens.client_id())
            .finish_non_exhaustive()
    }
}

/// The method of the request a response answers, kept on the response so that an error can
/// name the request (`PATCH https://…/v1/actions/runs/ack`).
#[derive(Clone)]
struct RequestMethod(Method);

#[derive(Deserialize)]
struct PortErrorBody {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl PortApi {
    /// A client of `access.base_url` that sends `user_agent` (reqwest's none when `None`) and
    /// records every request into `http_stats`.
    pub fn new(
        access: &PortAccess,
        user_agent: Option<String>,
        http_stats: HttpStats,
    ) -> Result<Self, PortError> {
        let base = Url::parse(&access.base_url).map_err(|e| {
            PortError::Setup(format!("OCEAN__PORT__BASE_URL {:?}: {e}", access.base_url))
        })?;
        if base.cannot_be_a_base() {
            return Err(PortError::Setup(format!(
                "OCEAN__PORT__BASE_URL {:?} is not an http(s) URL",
                access.base_url
            )));
        }
        let timeout = Duration::from_secs(access.timeout_secs.max(1));
        let mut builder = crate::http::client_builder(&access.network)
            .map_err(|e| PortError::Setup(e.to_string()))?
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)));
        if let Some(agent) = user_agent {
            builder = builder.user_agent(agent);
        }
        let http = builder
            .build()
            .map_err(|e| PortError::Setup(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base,
                tokens: TokenCache::new(access.client_id.clone(), access.client_secret.clone()),
                integration_identifier: access.integration_identifier.clone(),
                http_stats,
            }),
        })
    }

    /// The configured integration identifier (`OCEAN__INTEGRATION__IDENTIFIER`).
    pub fn integration_identifier(&self) -> &str {
        &self.inner.integration_identifier
    }

    /// Requests by status and their latency (shared with clones of this client).
    pub fn http_stats(&self) -> &HttpStats {
        &self.inner.http_stats
    }

    pub(super) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// `{base}/{segments…}`, each segment percent-encoded.
    pub fn url(&self, segments: &[&str]) -> Result<Url, PortError> {
        let mut url = self.inner.base.clone();
        url.path_segments_mut()
            .map_err(|()| PortError::Setup("OCEAN__PORT__BASE_URL cannot take a path".into()))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// Sends `request`, recording its status (or transport error) and latency.
    pub(super) async fn timed(&self, request: RequestBuilder) -> Result<Response, reqwest::Error> {
        let started = Instant::now();
        let result = request.send().await;
        self.inner.http_stats.record(
            result.as_ref().ok().map(|r| r.status().as_u16()),
            started.elapsed(),
        );
        result
    }

    /// One authenticated attempt.
    async fn send_with(
        &self,
        operation: &str,
        build: &impl Fn(&reqwest::Client) -> RequestBuilder,
        token: &crate::config::Secret,
    ) -> Result<Response, PortError> {
        let request = build(&self.inner.http).bearer_auth(token.expose());
        let (method, url) = match request.try_clone().and_then(|r| r.build().ok()) {
            Some(built) => (built.method().clone(), built.url().clone()),
            None => (Method::GET, self.inner.base.clone()),
        };
        let mut response = self
            .timed(request)
            .await
            .map_err(|source| PortError::Transport {
                operation: operation.to_string(),
                url: url.to_string(),
                source,
            })?;
        response.extensions_mut().insert(RequestMethod(method));
        Ok(response)
    }

    /// Sends an authenticated request; on 401 fetches a new token and sends it once more. Any
    /// other answer is returned as it is: what a status means is the caller's.
    pub async fn send(
        &self,
        operation: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, PortError> {
        let tokens = &self.inner.tokens;
        let token = tokens.get(self).await?;
        let response = self.send_with(operation, &build, &token).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        tracing::debug!(
            operation,
            "Port answered 401; fetching a new token and retrying once"
        );
        tokens.invalidate(&token).await;
        let token = tokens.get(self).await?;
        let response = self.send_with(operation, &build, &token).await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            tokens.invalidate(&token).await;
            let body = response.text().await.unwrap_or_default();
            return Err(PortError::Auth {
                status: 401,
                message: format!(
                    "{operation} refused a freshly issued token: {}",
                    port_message(&body)
                ),
            });
        }
        Ok(response)
    }

    /// Sends `body` (if any) as JSON and reads a JSON answer; any non-success status is an
    /// error.
    pub async fn call_json<T: serde::de::DeserializeOwned>(
        &self,
        operation: &str,
        method: Method,
        url: Url,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<T, PortError> {
        let response = self
            .send(operation, |http| {
                let request = http.request(method.clone(), url.clone()).query(query);
                match body {
                    Some(body) => request.json(body),
                    None => request,
                }
            })
            .await?;
        read_json(operation, response).await
    }
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
        .map_err(|source| PortError::Transport {
            operation: operation.to_string(),
            url,
            source,
        })
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
    use crate::config::Secret;

    fn access(base_url: &str, secret: &str) -> PortAccess {
        PortAccess {
            base_url: base_url.into(),
            client_id: "cid".into(),
            client_secret: Secret::new(secret),
            integration_identifier: "i".into(),
            integration_type: "azure-devops".into(),
            timeout_secs: 5,
            network: Default::default(),
        }
    }

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

    #[test]
    fn debug_never_shows_the_secret() {
        let api = PortApi::new(
            &access("http://127.0.0.1:9", "super-secret"),
            None,
            HttpStats::default(),
        )
        .expect("client");
        assert!(!format!("{api:?}").contains("super-secret"));
    }

    #[test]
    fn urls_encode_identifiers() {
        let api = PortApi::new(
            &access("http://127.0.0.1:9/", "s"),
            None,
            HttpStats::default(),
        )
        .expect("client");
        let url = api
            .url(&["v1", "blueprints", "bp", "entities", "a/b c"])
            .expect("url");
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/v1/blueprints/bp/entities/a%2Fb%20c"
        );
    }

    #[test]
    fn a_base_url_that_is_not_one_is_a_setup_error() {
        let error = PortApi::new(&access("not a url", "s"), None, HttpStats::default())
            .expect_err("bad base");
        assert!(
            error.to_string().contains("OCEAN__PORT__BASE_URL"),
            "{error}"
        );
    }
}
