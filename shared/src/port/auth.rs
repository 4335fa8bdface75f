//! Signing in to Port and the one token cache: `POST /v1/auth/access_token` with the client id
//! and secret, the token kept until shortly before Port says it expires, and dropped when a
//! request using it is answered 401 (the caller then signs in again, once). A process signs in
//! once per Port and credentials: every client built for them shares one cache
//! ([`TokenCache::for_credentials`]).
//!
//! The client secret and the token are never logged and never appear in an error.

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;

use reqwest::Url;

use super::answer::{port_message, read_body, status_error, timed};
use super::error::PortError;
use super::retry::classify_status;
use crate::config::Secret;
use crate::metrics::HttpStats;

/// A token is fetched again this long before Port said it expires.
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// What the sign-in is called in errors.
const OPERATION: &str = "access token request";

/// The token caches of the clients alive in this process, by Port base URL (entries of dropped
/// clients are pruned as new ones are made).
static CACHES: std::sync::Mutex<Vec<(String, Weak<TokenCache>)>> =
    std::sync::Mutex::new(Vec::new());

struct CachedToken {
    value: Secret,
    refresh_at: Instant,
}

/// The credentials and the token they were last exchanged for. Shared by every clone of a
/// [`super::PortApi`].
pub struct TokenCache {
    client_id: String,
    client_secret: Secret,
    token: Mutex<Option<CachedToken>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct TokenRequest<'a> {
    #[serde(rename = "clientId")]
    client_id: &'a str,
    #[serde(rename = "clientSecret")]
    client_secret: &'a str,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(rename = "accessToken")]
    access_token: String,
    #[serde(rename = "expiresIn")]
    expires_in: Option<u64>,
}

impl TokenCache {
    pub fn new(client_id: String, client_secret: Secret) -> Self {
        Self {
            client_id,
            client_secret,
            token: Mutex::new(None),
        }
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The cache every client of this process for `base` with these credentials shares, made
    /// on first use. In `adoport all` publish, the mapping reader, the cursors and the actions
    /// each build a client at start; with one cache they sign in once (one round trip) rather
    /// than once each, as the Python integration's one client does.
    pub fn for_credentials(base: &Url, client_id: &str, client_secret: &Secret) -> Arc<Self> {
        let mut caches = CACHES.lock().unwrap_or_else(|p| p.into_inner());
        caches.retain(|(_, cache)| cache.strong_count() > 0);
        let same = caches.iter().find_map(|(url, cache)| {
            let cache = cache.upgrade()?;
            (url == base.as_str()
                && cache.client_id == client_id
                && &cache.client_secret == client_secret)
                .then_some(cache)
        });
        if let Some(cache) = same {
            return cache;
        }
        let cache = Arc::new(Self::new(client_id.to_string(), client_secret.clone()));
        caches.push((base.as_str().to_string(), Arc::downgrade(&cache)));
        cache
    }

    /// The cached token, or a fresh one from `url` (the sign-in route, through `http`) when
    /// there is none or it is about to expire.
    pub(super) async fn get(
        &self,
        http: &reqwest::Client,
        url: Url,
        stats: &HttpStats,
    ) -> Result<Secret, PortError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref()
            && Instant::now() < token.refresh_at
        {
            return Ok(token.value.clone());
        }
        let fresh = self.sign_in(http, url, stats).await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    /// Forgets `used` if it is still the cached token (a concurrent 401 may have replaced it).
    pub(super) async fn invalidate(&self, used: &Secret) {
        let mut cached = self.token.lock().await;
        if cached.as_ref().is_some_and(|t| &t.value == used) {
            *cached = None;
        }
    }

    /// `POST /v1/auth/access_token`. A 4xx that retrying cannot change is a refusal of the
    /// credentials ([`PortError::Auth`]); Port down or throttling (5xx, 408, 429, no answer)
    /// says nothing about them and is reported as such.
    async fn sign_in(
        &self,
        http: &reqwest::Client,
        url: Url,
        stats: &HttpStats,
    ) -> Result<CachedToken, PortError> {
        let request = http.post(url.clone()).json(&TokenRequest {
            client_id: &self.client_id,
            client_secret: self.client_secret.expose(),
        });
        let response = timed(stats, request)
            .await
            .map_err(|source| PortError::transport(OPERATION, url.as_str(), source))?;
        let status = response.status();
        if status.is_client_error() && !classify_status(status.as_u16()).is_retryable() {
            let body = response.text().await.unwrap_or_default();
            return Err(PortError::Auth {
                status: status.as_u16(),
                message: port_message(&body),
            });
        }
        if !status.is_success() {
            return Err(status_error(OPERATION, response).await);
        }
        let body = read_body(OPERATION, response).await?;
        let token: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| PortError::InvalidResponse {
                operation: OPERATION.into(),
                // Never echo the body: it holds the token.
                detail: format!("no accessToken in the answer ({e})"),
            })?;
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(3600));
        let refresh_at = Instant::now() + lifetime.saturating_sub(TOKEN_REFRESH_MARGIN);
        tracing::debug!(
            expires_in_secs = lifetime.as_secs(),
            "fetched a Port access token"
        );
        Ok(CachedToken {
            value: Secret::new(token.access_token),
            refresh_at,
        })
    }
}
