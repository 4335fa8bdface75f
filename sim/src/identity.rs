//! The Microsoft identity platform simulator: the client-credentials token endpoint a service
//! principal uses to read Azure DevOps (`Multiple Accounts`).
//!
//! `POST /{tenant}/oauth2/v2.0/token` with a form body (`grant_type=client_credentials`,
//! `client_id`, `client_secret`, `scope`) answers `{token_type, expires_in, ext_expires_in,
//! access_token}`, or the endpoint's error body `{error, error_description: "AADSTS…: …",
//! error_codes, timestamp, trace_id, correlation_id, error_uri}`:
//!
//! | case | status | error | code |
//! |---|---|---|---|
//! | unknown tenant | 400 | `invalid_request` | AADSTS90002 |
//! | unknown client id | 400 | `unauthorized_client` | AADSTS700016 |
//! | wrong secret | 401 | `invalid_client` | AADSTS7000215 |
//! | grant type other than `client_credentials` | 400 | `unsupported_grant_type` | AADSTS70003 |
//! | no `scope` | 400 | `invalid_request` | AADSTS900144 |
//!
//! Tokens expire after [`IdentitySimConfig::token_lifetime`]; [`IssuedTokens`] is what the Azure
//! DevOps simulator checks bearer tokens against (expired, revoked or unknown → 401), so tests
//! see refreshes happen. Requests are counted per route like the other simulators.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Form, MatchedPath, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use crate::server::Server;
use crate::traffic::{Traffic, lock, route_key};

/// The scope of Azure DevOps' resource: what a token for it is requested with.
pub const AZURE_DEVOPS_SCOPE: &str = "499b84ac-1321-427f-aa17-267ca6975798/.default";

/// The route key of the token endpoint in [`IdentitySim::requests`].
pub const TOKEN_ROUTE: &str = "POST /{tenant}/oauth2/v2.0/token";

/// The one application the simulated tenant knows.
#[derive(Clone, Debug)]
pub struct IdentitySimConfig {
    /// Default `"sim-tenant"`.
    pub tenant_id: String,
    /// Default `"sim-client"`.
    pub client_id: String,
    /// Default `"sim-client-secret"`.
    pub client_secret: String,
    /// How long an issued token is valid (default one hour, as Entra ID's).
    pub token_lifetime: Duration,
}

impl Default for IdentitySimConfig {
    fn default() -> Self {
        Self {
            tenant_id: "sim-tenant".into(),
            client_id: "sim-client".into(),
            client_secret: "sim-client-secret".into(),
            token_lifetime: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone)]
struct Issued {
    scope: String,
    expires_at: Instant,
    revoked: bool,
}

/// Whether a bearer token may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCheck {
    /// Issued for `scope`, not expired, not revoked.
    Valid,
    /// Issued, but for another scope.
    WrongAudience,
    /// Issued and past its lifetime, or revoked.
    Expired,
    /// Never issued here.
    Unknown,
}

/// The tokens the identity simulator issued; shared with the Azure DevOps simulator, which
/// accepts them as bearer tokens. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct IssuedTokens {
    tokens: Arc<Mutex<HashMap<String, Issued>>>,
}

impl IssuedTokens {
    /// Checks `token` for `scope`.
    pub fn check(&self, token: &str, scope: &str) -> TokenCheck {
        match lock(&self.tokens).get(token) {
            None => TokenCheck::Unknown,
            Some(issued) if issued.revoked || issued.expires_at <= Instant::now() => {
                TokenCheck::Expired
            }
            Some(issued) if issued.scope != scope => TokenCheck::WrongAudience,
            Some(_) => TokenCheck::Valid,
        }
    }

    fn issue(&self, scope: &str, lifetime: Duration) -> String {
        let token = format!("sim-access-token.{}", uuid::Uuid::new_v4().simple());
        lock(&self.tokens).insert(
            token.clone(),
            Issued {
                scope: scope.to_string(),
                expires_at: Instant::now() + lifetime,
                revoked: false,
            },
        );
        token
    }

    fn revoke_all(&self) {
        lock(&self.tokens)
            .values_mut()
            .for_each(|issued| issued.revoked = true);
    }
}

#[derive(Debug)]
struct IdentityState {
    config: IdentitySimConfig,
    tokens: IssuedTokens,
    traffic: Traffic,
}

/// A running identity simulator. Dropping it (or [`IdentitySim::shutdown`]) stops the server.
#[derive(Debug)]
pub struct IdentitySim {
    state: Arc<IdentityState>,
    server: Server,
}

impl IdentitySim {
    /// Serves the token endpoint on `127.0.0.1:0`.
    pub async fn start(config: IdentitySimConfig) -> std::io::Result<IdentitySim> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let state = Arc::new(IdentityState {
            config,
            tokens: IssuedTokens::default(),
            traffic: Traffic::default(),
        });
        let router = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .layer(middleware::from_fn_with_state(Arc::clone(&state), count))
            .with_state(Arc::clone(&state));
        let server = Server::spawn(listener, router)?;
        Ok(IdentitySim { state, server })
    }

    /// `http://127.0.0.1:PORT`: what `AZURE_AUTHORITY_HOST` takes.
    pub fn authority_host(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// The tokens issued so far, for [`crate::AdoSimConfig::bearer_tokens`].
    pub fn tokens(&self) -> IssuedTokens {
        self.state.tokens.clone()
    }

    /// The configuration it runs with (tenant, client id, secret).
    pub fn config(&self) -> &IdentitySimConfig {
        &self.state.config
    }

    /// Tokens issued (successful token requests).
    pub fn issued(&self) -> u64 {
        lock(&self.state.tokens.tokens).len() as u64
    }

    /// Requests received, per route key ([`TOKEN_ROUTE`]).
    pub fn requests(&self) -> BTreeMap<String, u64> {
        self.state.traffic.counts()
    }

    /// Makes every token issued so far unusable before its expiry (as a revoked session or a
    /// rotated key does): Azure DevOps answers 401 to them.
    pub fn revoke_all(&self) {
        self.state.tokens.revoke_all();
        self.state.traffic.touch();
    }

    /// Stops the server.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

async fn count(
    State(state): State<Arc<IdentityState>>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    state
        .traffic
        .arrive(&route_key(request.method(), matched.as_ref()));
    let response = next.run(request).await;
    state.traffic.touch();
    response
}

/// The endpoint's error body.
fn refusal(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    let trace_id = uuid::Uuid::new_v4();
    let correlation_id = uuid::Uuid::new_v4();
    let timestamp = chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
    let body = json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {description} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}"
        ),
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    (status, axum::Json(body)).into_response()
}

async fn token(
    State(state): State<Arc<IdentityState>>,
    Path(tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let config = &state.config;
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    if !tenant.eq_ignore_ascii_case(&config.tenant_id) {
        return refusal(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        );
    }
    if field("grant_type") != "client_credentials" {
        return refusal(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    let scope = field("scope");
    if scope.is_empty() {
        return refusal(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        );
    }
    let client_id = field("client_id");
    if client_id != config.client_id {
        return refusal(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant."
            ),
        );
    }
    if field("client_secret") != config.client_secret {
        return refusal(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        );
    }
    let lifetime = config.token_lifetime;
    let access_token = state.tokens.issue(scope, lifetime);
    let seconds = lifetime.as_secs();
    axum::Json(json!({
        "token_type": "Bearer",
        "expires_in": seconds,
        "ext_expires_in": seconds,
        "access_token": access_token,
    }))
    .into_response()
}
