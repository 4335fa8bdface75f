//! [`PortApi`]: the transport every Port call goes through — one connection pool, the URL of a
//! route under `OCEAN__PORT__BASE_URL`, the token on every request (renewed once on 401), the
//! status and latency of every request recorded, and a failed answer turned into a
//! [`PortError`] with Port's wait hint. One request per call: what to retry and when is the
//! caller's, by [`super::retry`].

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde_json::Value;

use super::answer::{port_message, read_json, tag_method, timed};
use super::auth::TokenCache;
use super::error::PortError;
use crate::config::PortAccess;
use crate::metrics::HttpStats;

struct Inner {
    http: reqwest::Client,
    base: Url,
    /// Shared with every client of this process for the same Port and credentials.
    tokens: Arc<TokenCache>,
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
        let tokens = TokenCache::for_credentials(&base, &access.client_id, &access.client_secret);
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base,
                tokens,
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

    /// The cached token, or a fresh one from the sign-in route.
    async fn token(&self) -> Result<crate::config::Secret, PortError> {
        let url = self.url(&["v1", "auth", "access_token"])?;
        self.inner
            .tokens
            .get(&self.inner.http, url, &self.inner.http_stats)
            .await
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
        let mut response = timed(&self.inner.http_stats, request)
            .await
            .map_err(|source| PortError::transport(operation, url.as_str(), source))?;
        tag_method(&mut response, method);
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
        let token = self.token().await?;
        let response = self.send_with(operation, &build, &token).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        tracing::debug!(
            operation,
            "Port answered 401; fetching a new token and retrying once"
        );
        tokens.invalidate(&token).await;
        let token = self.token().await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn api(base_url: &str, secret: &str) -> Result<PortApi, PortError> {
        let access = PortAccess {
            base_url: base_url.into(),
            client_id: "cid".into(),
            client_secret: Secret::new(secret),
            integration_identifier: "i".into(),
            integration_type: "azure-devops".into(),
            timeout_secs: 5,
            network: Default::default(),
        };
        PortApi::new(&access, None, HttpStats::default())
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let api = api("http://127.0.0.1:9", "super-secret").expect("client");
        assert!(!format!("{api:?}").contains("super-secret"));
    }

    #[test]
    fn urls_encode_identifiers() {
        let api = api("http://127.0.0.1:9/", "s").expect("client");
        let url = api
            .url(&["v1", "blueprints", "bp", "entities", "a/b c"])
            .expect("url");
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/v1/blueprints/bp/entities/a%2Fb%20c"
        );
    }

    /// `adoport all` builds several clients at start; they sign in once between them.
    #[test]
    fn clients_of_one_port_and_credentials_share_one_token() {
        let shares = |a: &PortApi, b: &PortApi| Arc::ptr_eq(&a.inner.tokens, &b.inner.tokens);
        let first = api("http://127.0.0.1:9/shared-token", "s1").expect("client");
        let second = api("http://127.0.0.1:9/shared-token", "s1").expect("client");
        assert!(shares(&first, &second));
        let other_secret = api("http://127.0.0.1:9/shared-token", "s2").expect("client");
        assert!(!shares(&first, &other_secret));
        let other_port = api("http://127.0.0.1:9/another-port", "s1").expect("client");
        assert!(!shares(&first, &other_port));
        // Once no client holds it, a new client starts from a cache of its own (signs in anew).
        let kept = Arc::downgrade(&first.inner.tokens);
        drop((first, second));
        assert!(kept.upgrade().is_none());
    }

    #[test]
    fn a_base_url_that_is_not_one_is_a_setup_error() {
        let error = api("not a url", "s").expect_err("bad base");
        assert!(
            error.to_string().contains("OCEAN__PORT__BASE_URL"),
            "{error}"
        );
    }
}
