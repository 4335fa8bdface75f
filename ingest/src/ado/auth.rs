//! How the client proves who it is to Azure DevOps: a personal access token (basic auth), or a
//! service principal's bearer token from the Microsoft identity platform.
//!
//! The token comes from the client-credentials flow
//! (`POST {authority}/{tenant}/oauth2/v2.0/token`, scope [`AZURE_DEVOPS_SCOPE`]). One
//! [`TokenProvider`] serves every organization of its tenant: it caches the token, asks for a
//! new one ahead of expiry (a fifth of its lifetime, at most five minutes, before), and after
//! Azure DevOps refused the cached one (a 401: revoked, rotated key). Requests that find no
//! usable token wait for the one request that fetches it (single flight), so a burst of
//! requests asks for one token. The secret is only ever sent to the token endpoint.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::header::HeaderValue;
use serde::Deserialize;

use super::error::{AdoError, excerpt};
use adoport_shared::config::{AzureDevopsCredentials, NetworkSettings, Secret, ServicePrincipal};

/// The scope of Azure DevOps' resource (its well-known application id) for client credentials.
pub const AZURE_DEVOPS_SCOPE: &str = "499b84ac-1321-427f-aa17-267ca6975798/.default";
/// At most this long before its expiry a token is replaced.
const REFRESH_AHEAD_MAX: Duration = Duration::from_secs(300);
/// Attempts at a token request that failed transiently (transport, 429, 5xx).
const TOKEN_ATTEMPTS: u32 = 3;

/// The credentials every request of a client carries.
#[derive(Clone)]
pub enum AdoAuth {
    /// `Authorization: Basic base64(":" + PAT)`, fixed for the client's life.
    Basic(HeaderValue),
    /// `Authorization: Bearer <token>` from a shared provider.
    Bearer(Arc<TokenProvider>),
}

impl AdoAuth {
    /// Basic auth with a personal access token.
    pub fn personal_access_token(token: &Secret) -> Result<Self, AdoError> {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!(":{}", token.expose()));
        let mut header = HeaderValue::from_str(&format!("Basic {encoded}")).map_err(|_| {
            AdoError::Unauthorized {
                url: String::new(),
                detail: "the token contains characters that cannot be sent in a header".into(),
            }
        })?;
        header.set_sensitive(true);
        Ok(AdoAuth::Basic(header))
    }

    /// The auth of the configured account mode; a service principal gets one provider,
    /// to be shared by every organization's client.
    pub fn for_credentials(
        credentials: &AzureDevopsCredentials,
        timeout_secs: u64,
        network: &NetworkSettings,
    ) -> Result<Self, AdoError> {
        match credentials {
            AzureDevopsCredentials::PersonalAccessToken(token) => {
                Self::personal_access_token(token)
            }
            AzureDevopsCredentials::ServicePrincipal(principal) => Ok(AdoAuth::Bearer(Arc::new(
                TokenProvider::new(principal, timeout_secs, network)?,
            ))),
        }
    }
}

#[derive(Clone)]
struct CachedToken {
    header: HeaderValue,
    refresh_at: Instant,
}

/// When a token that lives `lifetime` from `issued` should be replaced.
fn refresh_at(issued: Instant, lifetime: Duration) -> Instant {
    issued + lifetime - (lifetime / 5).min(REFRESH_AHEAD_MAX)
}

/// The token endpoint's answer.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

/// The token endpoint's error body (`AADSTS…` codes).
#[derive(Deserialize, Default)]
struct TokenRefusal {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

/// Bearer tokens of one service principal (tenant + client id), cached and refreshed.
pub struct TokenProvider {
    http: reqwest::Client,
    token_url: String,
    tenant_id: String,
    client_id: String,
    client_secret: Secret,
    /// An async mutex on purpose: whoever finds no usable token holds it across the token
    /// request, and everyone else waits for that answer instead of asking too.
    cached: tokio::sync::Mutex<Option<CachedToken>>,
    requested: AtomicU64,
}

impl TokenProvider {
    pub fn new(
        principal: &ServicePrincipal,
        timeout_secs: u64,
        network: &NetworkSettings,
    ) -> Result<Self, AdoError> {
        let token_url = format!(
            "{}/{}/oauth2/v2.0/token",
            principal.authority_host.trim_end_matches('/'),
            principal.tenant_id
        );
        let transport = |detail: String| AdoError::Transport {
            url: token_url.clone(),
            detail,
        };
        let http = adoport_shared::http::client_builder(network)
            .map_err(|e| transport(e.to_string()))?
            .user_agent(concat!("adoport/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(timeout_secs.max(1)))
            .build()
            .map_err(|e| transport(e.to_string()))?;
        Ok(Self {
            http,
            token_url,
            tenant_id: principal.tenant_id.clone(),
            client_id: principal.client_id.clone(),
            client_secret: principal.client_secret.clone(),
            cached: tokio::sync::Mutex::new(None),
            requested: AtomicU64::new(0),
        })
    }

    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Token requests made so far (successful or not).
    pub fn tokens_requested(&self) -> u64 {
        self.requested.load(Ordering::Relaxed)
    }

    /// The `Authorization` header to send now: the cached token while it is fresh, else a
    /// new one.
    pub async fn header(&self) -> Result<HeaderValue, AdoError> {
        let mut slot = self.cached.lock().await;
        if let Some(token) = slot.as_ref()
            && Instant::now() < token.refresh_at
        {
            return Ok(token.header.clone());
        }
        let fresh = self.request_token().await?;
        *slot = Some(fresh.clone());
        Ok(fresh.header)
    }

    /// Drops `refused` (a header Azure DevOps just answered 401 to) so that the next
    /// [`TokenProvider::header`] asks for a new token; a newer token someone else already
    /// fetched is kept.
    pub async fn forget(&self, refused: &HeaderValue) {
        let mut slot = self.cached.lock().await;
        if slot.as_ref().is_some_and(|token| token.header == *refused) {
            *slot = None;
        }
    }

    async fn request_token(&self) -> Result<CachedToken, AdoError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.request_token_once().await {
                Ok(token) => return Ok(token),
                Err(error @ AdoError::IdentityUnavailable { .. }) if attempt < TOKEN_ATTEMPTS => {
                    let wait = Duration::from_millis(500 * u64::from(attempt));
                    tracing::warn!(url = %self.token_url, attempt, error = %error, "token request failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn request_token_once(&self) -> Result<CachedToken, AdoError> {
        self.requested.fetch_add(1, Ordering::Relaxed);
        let unavailable = |detail: String| AdoError::IdentityUnavailable {
            url: self.token_url.clone(),
            tenant_id: self.tenant_id.clone(),
            client_id: self.client_id.clone(),
            detail,
        };
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("scope", AZURE_DEVOPS_SCOPE),
        ];
        let issued = Instant::now();
        let response = self
            .http
            .post(&self.token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if status.is_success() {
            let answer: TokenAnswer = serde_json::from_str(&text).map_err(|e| {
                unavailable(format!(
                    "the answer is not a token ({e}): {}",
                    excerpt(&text, 200)
                ))
            })?;
            let mut header = HeaderValue::from_str(&format!("Bearer {}", answer.access_token))
                .map_err(|_| unavailable("the token cannot be sent in a header".into()))?;
            header.set_sensitive(true);
            tracing::debug!(tenant_id = %self.tenant_id, client_id = %self.client_id, expires_in = answer.expires_in, "service principal token obtained");
            return Ok(CachedToken {
                header,
                refresh_at: refresh_at(issued, Duration::from_secs(answer.expires_in)),
            });
        }
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(unavailable(format!(
                "HTTP {}: {}",
                status.as_u16(),
                excerpt(&text, 200)
            )));
        }
        let refusal: TokenRefusal = serde_json::from_str(&text).unwrap_or_default();
        Err(AdoError::IdentityRefused {
            tenant_id: self.tenant_id.clone(),
            client_id: self.client_id.clone(),
            problem: refusal_problem(status.as_u16(), &refusal, &text),
        })
    }
}

/// What a refusal of the token endpoint means and which setting fixes it.
fn refusal_problem(status: u16, refusal: &TokenRefusal, body: &str) -> String {
    // The description ends with trace ids and a timestamp: keep the sentence that explains.
    let description = refusal
        .error_description
        .split(" Trace ID:")
        .next()
        .unwrap_or_default()
        .trim();
    let code = description
        .strip_prefix("AADSTS")
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_default();
    let what = match (refusal.error.as_str(), code) {
        ("invalid_client", _) | (_, "7000215" | "7000222") => {
            "the client secret is wrong or expired; set OCEAN__INTEGRATION__CONFIG__CLIENT_SECRET to the value (not the id) of a current secret of this application"
        }
        (_, "700016") => {
            "no application with this client id in this tenant; check OCEAN__INTEGRATION__CONFIG__CLIENT_ID and OCEAN__INTEGRATION__CONFIG__TENANT_ID"
        }
        (_, "90002" | "900023") => {
            "the tenant does not exist; check OCEAN__INTEGRATION__CONFIG__TENANT_ID (and AZURE_AUTHORITY_HOST for a sovereign cloud)"
        }
        _ => {
            "check the service principal's settings (OCEAN__INTEGRATION__CONFIG__TENANT_ID, CLIENT_ID, CLIENT_SECRET)"
        }
    };
    let said = if description.is_empty() {
        excerpt(body, 200)
    } else {
        description.to_string()
    };
    format!("{what} (HTTP {status}: {said})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_replaced_ahead_of_expiry() {
        let now = Instant::now();
        // An hour-long token: five minutes ahead.
        assert_eq!(
            refresh_at(now, Duration::from_secs(3600)),
            now + Duration::from_secs(3300)
        );
        // A short one: a fifth of its life ahead.
        assert_eq!(
            refresh_at(now, Duration::from_secs(10)),
            now + Duration::from_secs(8)
        );
        assert_eq!(refresh_at(now, Duration::ZERO), now);
    }

    #[test]
    fn refusals_name_the_setting_to_fix() {
        let refusal = |error: &str, description: &str| TokenRefusal {
            error: error.into(),
            error_description: description.into(),
        };
        let wrong_secret = refusal_problem(
            401,
            &refusal(
                "invalid_client",
                "AADSTS7000215: Invalid client secret provided. Trace ID: 1 Correlation ID: 2 Timestamp: 3",
            ),
            "",
        );
        assert!(
            wrong_secret.contains("client secret is wrong"),
            "{wrong_secret}"
        );
        assert!(wrong_secret.contains("AADSTS7000215: Invalid client secret provided."));
        assert!(!wrong_secret.contains("Trace ID"), "{wrong_secret}");
        let unknown_client = refusal_problem(
            400,
            &refusal(
                "unauthorized_client",
                "AADSTS700016: Application not found.",
            ),
            "",
        );
        assert!(unknown_client.contains("CLIENT_ID"), "{unknown_client}");
        let unknown_tenant = refusal_problem(
            400,
            &refusal("invalid_request", "AADSTS90002: Tenant 'x' not found."),
            "",
        );
        assert!(unknown_tenant.contains("TENANT_ID"), "{unknown_tenant}");
    }
}
