//! The HTTP client every Azure DevOps call goes through: auth, api-version, one request budget,
//! rate-limit headers, bounded retries.
//!
//! - Auth ([`AdoAuth`]) is `Basic base64(":" + PAT)` or a service principal's bearer token
//!   (asked for again once after a 401), with `X-TFS-FedAuthRedirect: Suppress` so that a bad
//!   token gives 401 instead of a sign-in page; a 203 or any non-JSON success is still treated
//!   as a refused token.
//! - One request budget per organization (Azure DevOps limits each organization separately),
//!   in two lanes ([`super::budget`]): requests in flight and the rate budget told by
//!   `X-RateLimit-*` and `Retry-After` are shared so that the crawl leaves a reserve to live
//!   re-reads. A client is a *view* of its organization in one lane: [`AdoClient::live`] for
//!   webhook and action handlers, [`AdoClient::crawl`] (the default) for everything else.
//! - 429, 408 and 5xx answers and transport errors are retried with jittered exponential backoff
//!   (or the server's `Retry-After`), a bounded number of times.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::auth::AdoAuth;
use super::budget::{Lane, LaneBudget, LaneLimits, RateSignals};
use super::error::{AdoError, error_body, excerpt};
use super::ids::OrganizationName;
use adoport_shared::config::{AzureDevopsAccess, NetworkSettings};
use adoport_shared::metrics::HttpStats;

/// The REST API version adoport speaks.
pub const API_VERSION: &str = "7.1";
/// Attempts at one request before giving up on a transient failure.
const MAX_ATTEMPTS: usize = 6;

/// A JSON answer plus the continuation token Azure DevOps put in its header, if any.
#[derive(Debug)]
pub struct JsonResponse {
    pub body: Value,
    pub continuation_token: Option<String>,
}

/// A successful answer's JSON text, not parsed yet (empty for 204 or an empty body), plus its
/// continuation token: listings whose items are parsed one by one read this
/// ([`AdoClient::get_text`]).
#[derive(Debug)]
pub(crate) struct TextResponse {
    pub(crate) text: String,
    pub(crate) continuation_token: Option<String>,
}

impl TextResponse {
    /// The answer parsed (`Null` when empty).
    fn json(self, url: &str) -> Result<JsonResponse, AdoError> {
        let body = if self.text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&self.text).map_err(|e| AdoError::Decode {
                url: url.to_string(),
                detail: e.to_string(),
            })?
        };
        Ok(JsonResponse {
            body,
            continuation_token: self.continuation_token,
        })
    }
}

/// Counts of requests made, for logs, metrics and the benchmark.
#[derive(Debug, Default)]
pub struct RequestStats {
    pub requests: AtomicU64,
    pub retried: AtomicU64,
    pub throttled: AtomicU64,
    /// Answers whose `X-RateLimit-*` headers made us slow down before reaching the limit.
    pub paced: AtomicU64,
    /// Every request (attempts, retries included) by HTTP status or transport error, with
    /// latency until the answer's head.
    pub http: HttpStats,
}

struct Inner {
    http: reqwest::Client,
    /// Basic auth is one of `http`'s default headers; a bearer token is added per request.
    auth: AdoAuth,
    organization_url: String,
    /// Who may send now, per lane.
    budget: LaneBudget,
    stats: Arc<RequestStats>,
    shutdown: CancellationToken,
}

/// How a client reaches its organization, beyond credentials.
#[derive(Debug, Clone, Copy)]
pub struct ClientOptions<'a> {
    /// Seconds before a request is abandoned.
    pub timeout_secs: u64,
    /// Proxies and extra trusted CAs.
    pub network: &'a NetworkSettings,
    /// This organization's requests in flight and how they are shared between the lanes.
    pub lanes: LaneLimits,
}

/// A client of one Azure DevOps organization, in one lane of its request budget. Cheap to
/// clone; [`AdoClient::live`] and [`AdoClient::crawl`] are views of the same organization
/// (same connections, budget and counts).
#[derive(Clone)]
pub struct AdoClient {
    inner: Arc<Inner>,
    lane: Lane,
}

/// The base URL of Azure DevOps service `sub` (`vsrm`, `vssps`, …) for an organization URL:
/// `https://dev.azure.com/{org}` → `https://{sub}.dev.azure.com/{org}`,
/// `https://{org}.visualstudio.com` → `https://{org}.{sub}.visualstudio.com`; any other host is
/// Azure DevOps Server (or a simulator), where every service lives on the collection URL.
pub fn service_base(organization_url: &str, sub: &str) -> String {
    let trimmed = organization_url.trim_end_matches('/');
    let Some((scheme, rest)) = trimmed.split_once("://") else {
        return trimmed.to_string();
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host_lower = host.to_ascii_lowercase();
    let new_host = if host_lower == "dev.azure.com" {
        format!("{sub}.dev.azure.com")
    } else if let Some(org) = host_lower.strip_suffix(".visualstudio.com")
        && !org.contains('.')
    {
        format!("{org}.{sub}.visualstudio.com")
    } else {
        return trimmed.to_string();
    };
    if path.is_empty() {
        format!("{scheme}://{new_host}")
    } else {
        format!("{scheme}://{new_host}/{path}")
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"))
}

impl AdoClient {
    pub fn new(
        access: &AzureDevopsAccess,
        max_concurrent_requests: usize,
        shutdown: CancellationToken,
    ) -> Result<Self, AdoError> {
        Self::with_stats(
            access,
            max_concurrent_requests,
            shutdown,
            Arc::new(RequestStats::default()),
        )
    }

    /// Like [`AdoClient::new`], counting into `stats` (so that the caller can expose them).
    pub fn with_stats(
        access: &AzureDevopsAccess,
        max_concurrent_requests: usize,
        shutdown: CancellationToken,
        stats: Arc<RequestStats>,
    ) -> Result<Self, AdoError> {
        let auth =
            AdoAuth::personal_access_token(&access.personal_access_token).map_err(|e| match e {
                AdoError::Unauthorized { detail, .. } => AdoError::Unauthorized {
                    url: access.organization_url.clone(),
                    detail,
                },
                other => other,
            })?;
        Self::for_organization(
            &access.organization_url,
            auth,
            ClientOptions {
                timeout_secs: access.timeout_secs,
                network: &access.network,
                lanes: LaneLimits::shared(max_concurrent_requests),
            },
            shutdown,
            stats,
        )
    }

    /// A client of the organization at `organization_url` (no trailing slash) that
    /// authenticates with `auth` (a bearer provider may be shared by several organizations),
    /// in the crawl lane (see [`AdoClient::live`]).
    pub fn for_organization(
        organization_url: &str,
        auth: AdoAuth,
        options: ClientOptions<'_>,
        shutdown: CancellationToken,
        stats: Arc<RequestStats>,
    ) -> Result<Self, AdoError> {
        let organization_url = organization_url.trim_end_matches('/').to_string();
        let mut headers = HeaderMap::new();
        if let AdoAuth::Basic(header) = &auth {
            headers.insert(AUTHORIZATION, header.clone());
        }
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(
            "X-TFS-FedAuthRedirect",
            HeaderValue::from_static("Suppress"),
        );
        let builder = adoport_shared::http::client_builder(options.network).map_err(|e| {
            AdoError::Transport {
                url: organization_url.clone(),
                detail: e.to_string(),
            }
        })?;
        let http = builder
            .default_headers(headers)
            .user_agent(concat!("adoport/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(options.timeout_secs.max(1)))
            .build()
            .map_err(|e| AdoError::Transport {
                url: organization_url.clone(),
                detail: e.to_string(),
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                auth,
                organization_url,
                budget: LaneBudget::new(options.lanes),
                stats,
                shutdown,
            }),
            lane: Lane::Crawl,
        })
    }

    /// This organization's client in the live lane: for reads a webhook or an action waits
    /// for, which may use the budget the crawl leaves in reserve.
    pub fn live(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            lane: Lane::Live,
        }
    }

    /// This organization's client in the crawl lane (resync, background checks), which
    /// leaves the reserve alone.
    pub fn crawl(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            lane: Lane::Crawl,
        }
    }

    /// The lane this view's requests take.
    pub fn lane(&self) -> Lane {
        self.lane
    }

    /// The organization's URL, e.g. `https://dev.azure.com/acme` (no trailing slash).
    pub fn organization_url(&self) -> &str {
        &self.inner.organization_url
    }

    /// The organization's name, e.g. `acme` (see [`super::organization::organization_name`]).
    pub fn organization_name(&self) -> OrganizationName {
        super::organization::organization_name(&self.inner.organization_url)
    }

    pub fn stats(&self) -> &RequestStats {
        &self.inner.stats
    }

    /// Requests in flight the crawl may hold at most in this organization (its share of
    /// `ADOPORT__INGEST__MAX_CONCURRENT_REQUESTS`).
    pub(crate) fn crawl_in_flight(&self) -> usize {
        self.inner.budget.crawl_in_flight()
    }

    /// `{service host of sub}/{path}`: the organization URL of another Azure DevOps service
    /// (`vsrm`, `vssps`, `vsaex`, `advsec`, …). See [`service_base`].
    pub fn service_url(&self, sub: &str, path: &str) -> String {
        format!(
            "{}/{}",
            service_base(&self.inner.organization_url, sub),
            path.trim_start_matches('/')
        )
    }

    /// `{organization_url}/{path}`.
    pub fn url(&self, path: &str) -> String {
        format!(
            "{}/{}",
            self.inner.organization_url,
            path.trim_start_matches('/')
        )
    }

    /// GET `url` with `query` (+ `api-version`), returning its JSON and continuation token.
    pub async fn get_json(
        &self,
        url: &str,
        query: &[(&str, &str)],
    ) -> Result<JsonResponse, AdoError> {
        self.get_text(url, query).await?.json(url)
    }

    /// [`AdoClient::get_json`] without parsing the answer: its JSON text.
    pub(crate) async fn get_text(
        &self,
        url: &str,
        query: &[(&str, &str)],
    ) -> Result<TextResponse, AdoError> {
        self.send(reqwest::Method::GET, url, query, None).await
    }

    /// PUT `body` to `url` (replacing a resource is safe to repeat).
    pub async fn put_json(
        &self,
        url: &str,
        query: &[(&str, &str)],
        body: &Value,
    ) -> Result<JsonResponse, AdoError> {
        self.send(reqwest::Method::PUT, url, query, Some(body))
            .await?
            .json(url)
    }

    /// DELETE `url` (a 404 is the caller's to interpret).
    pub async fn delete(&self, url: &str, query: &[(&str, &str)]) -> Result<(), AdoError> {
        self.send(reqwest::Method::DELETE, url, query, None)
            .await
            .map(|_| ())
    }

    /// POST `body` to `url` (WIQL, batch endpoints: safe to repeat, so retried like a GET).
    pub async fn post_json(
        &self,
        url: &str,
        query: &[(&str, &str)],
        body: &Value,
    ) -> Result<JsonResponse, AdoError> {
        self.send(reqwest::Method::POST, url, query, Some(body))
            .await?
            .json(url)
    }

    /// POST `body` to `url` exactly once: for requests that are not safe to repeat (starting a
    /// pipeline run). Any failure is returned as it is, never retried.
    pub async fn post_json_once(
        &self,
        url: &str,
        query: &[(&str, &str)],
        body: &Value,
    ) -> Result<JsonResponse, AdoError> {
        self.write_once(reqwest::Method::POST, url, query, body)
            .await
    }

    /// PATCH `body` to `url` exactly once: for changes whose repetition is not harmless
    /// (completing a pull request). Any failure is returned as it is, never retried.
    pub async fn patch_json_once(
        &self,
        url: &str,
        query: &[(&str, &str)],
        body: &Value,
    ) -> Result<JsonResponse, AdoError> {
        self.write_once(reqwest::Method::PATCH, url, query, body)
            .await
    }

    async fn write_once(
        &self,
        method: reqwest::Method,
        url: &str,
        query: &[(&str, &str)],
        body: &Value,
    ) -> Result<JsonResponse, AdoError> {
        let bearer = self.bearer().await?;
        match self
            .send_once(method, url, query, Some(body), bearer.as_ref())
            .await
        {
            Ok(response) => response.json(url),
            Err(Attempt::Final(e)) | Err(Attempt::Transient { error: e, .. }) => Err(e),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<TextResponse, AdoError> {
        let mut delays = ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(30))
            .with_max_times(MAX_ATTEMPTS - 1)
            .with_jitter()
            .build();
        let mut attempt: u32 = 0;
        let mut token_renewed = false;
        loop {
            attempt += 1;
            let bearer = self.bearer().await?;
            let outcome = self
                .send_once(method.clone(), url, query, body, bearer.as_ref())
                .await;
            let (error, server_wait) = match outcome {
                Ok(response) => return Ok(response),
                Err(Attempt::Final(AdoError::Unauthorized { url, detail })) => {
                    let AdoAuth::Bearer(provider) = &self.inner.auth else {
                        return Err(AdoError::Unauthorized { url, detail });
                    };
                    if token_renewed {
                        return Err(AdoError::TokenRefused {
                            url,
                            tenant_id: provider.tenant_id().to_string(),
                            client_id: provider.client_id().to_string(),
                            detail,
                        });
                    }
                    // Revoked or expired early: ask for a new token once, and try again.
                    if let Some(refused) = &bearer {
                        provider.forget(refused).await;
                    }
                    token_renewed = true;
                    tracing::warn!(%url, "Azure DevOps refused the service principal's token; asking for a new one");
                    continue;
                }
                Err(Attempt::Final(e)) => return Err(e),
                Err(Attempt::Transient { error, retry_after }) => (error, retry_after),
            };
            let Some(backoff) = delays.next() else {
                return Err(match error {
                    AdoError::Status { status, url, body } => AdoError::Exhausted {
                        status,
                        url,
                        attempts: attempt,
                        body,
                    },
                    other => other,
                });
            };
            self.inner.stats.retried.fetch_add(1, Ordering::Relaxed);
            let wait = server_wait.unwrap_or(backoff);
            tracing::warn!(%url, attempt, wait_ms = wait.as_millis() as u64, error = %error, "Azure DevOps request failed; retrying");
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return Err(AdoError::ShuttingDown),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// The bearer header to send now (none with basic auth, which is a default header).
    async fn bearer(&self) -> Result<Option<HeaderValue>, AdoError> {
        let AdoAuth::Bearer(provider) = &self.inner.auth else {
            return Ok(None);
        };
        tokio::select! {
            _ = self.inner.shutdown.cancelled() => Err(AdoError::ShuttingDown),
            header = provider.header() => header.map(Some),
        }
    }

    async fn send_once(
        &self,
        method: reqwest::Method,
        url: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        bearer: Option<&HeaderValue>,
    ) -> Result<TextResponse, Attempt> {
        let _place = self
            .inner
            .budget
            .admit(self.lane, &self.inner.shutdown, || {
                self.inner.stats.throttled.fetch_add(1, Ordering::Relaxed);
            })
            .await
            .map_err(|_| Attempt::Final(AdoError::ShuttingDown))?;
        let mut request = self.inner.http.request(method, url).query(query);
        if let Some(bearer) = bearer {
            request = request.header(AUTHORIZATION, bearer.clone());
        }
        // Analytics OData is versioned by its path (`_odata/v4.0-preview`): no api-version.
        if !query.iter().any(|(k, _)| *k == "api-version") && !url.contains("/_odata/") {
            request = request.query(&[("api-version", API_VERSION)]);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        self.inner.stats.requests.fetch_add(1, Ordering::Relaxed);
        let sent = Instant::now();
        let response = request.send().await;
        self.inner.stats.http.record(
            response.as_ref().ok().map(|r| r.status().as_u16()),
            sent.elapsed(),
        );
        let response = response.map_err(|e| transport_failure(url, &e))?;
        let status = response.status();
        let headers = response.headers().clone();
        // Whatever the status: Azure DevOps sends `Retry-After` on successful answers too
        // when a caller nears its budget, and rate headers on every answer.
        let signals = RateSignals::read(status.as_u16(), &headers, chrono::Utc::now().timestamp());
        if self.inner.budget.observe(&signals).paced {
            self.inner.stats.paced.fetch_add(1, Ordering::Relaxed);
        }
        let server_wait = signals.retry_after;
        let continuation_token = headers
            .get("x-ms-continuationtoken")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(String::from);
        let body = response.bytes().await.map_err(|e| Attempt::Transient {
            error: AdoError::Transport {
                url: url.to_string(),
                detail: e.to_string(),
            },
            retry_after: None,
        })?;
        let text = utf8_text(body);
        let code = status.as_u16();
        match code {
            204 => Ok(TextResponse {
                text: String::new(),
                continuation_token,
            }),
            203 => Err(Attempt::Final(AdoError::Unauthorized {
                url: url.to_string(),
                detail: "HTTP 203 with a sign-in page".into(),
            })),
            200..=299 if !is_json(&headers) => Err(Attempt::Final(AdoError::Unauthorized {
                url: url.to_string(),
                detail: format!("HTTP {code} answered with a non-JSON page"),
            })),
            // Parsed by the caller: as a whole, or a listing item by item.
            200..=299 => Ok(TextResponse {
                text,
                continuation_token,
            }),
            401 => Err(Attempt::Final(AdoError::Unauthorized {
                url: url.to_string(),
                detail: format!("HTTP 401: {}", excerpt(&text, 200)),
            })),
            403 => Err(Attempt::Final(AdoError::Forbidden {
                url: url.to_string(),
            })),
            404 => {
                let (message, type_key) = error_body(&text);
                Err(Attempt::Final(AdoError::NotFound {
                    url: url.to_string(),
                    message,
                    type_key,
                }))
            }
            408 | 429 | 500..=599 => Err(Attempt::Transient {
                error: AdoError::Status {
                    status: code,
                    url: url.to_string(),
                    body: excerpt(&text, 300),
                },
                retry_after: server_wait,
            }),
            _ => Err(Attempt::Final(AdoError::Status {
                status: code,
                url: url.to_string(),
                body: excerpt(&text, 300),
            })),
        }
    }
}

/// The error and every cause under it, on one line (reqwest's own text omits the causes).
/// An answer's body as text, in the buffer it was read into: `reqwest`'s `text()` decodes into
/// a copy, so each page in flight would be held twice while it is read. Azure DevOps answers
/// UTF-8 JSON; a byte-order mark is dropped (JSON parsers refuse it) and a malformed sequence
/// becomes U+FFFD, as `text()` would have it.
fn utf8_text(body: bytes::Bytes) -> String {
    let text = match String::from_utf8(Vec::from(body)) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    }
}

fn error_chain(error: &reqwest::Error) -> String {
    let mut chain = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}

/// A request that got no answer: an untrusted certificate will not heal by retrying (it fails at
/// once, naming the setting that fixes it); anything else is retried.
fn transport_failure(url: &str, error: &reqwest::Error) -> Attempt {
    let detail = error_chain(error);
    if detail.to_ascii_lowercase().contains("certificate") {
        return Attempt::Final(AdoError::UntrustedCertificate {
            url: url.to_string(),
            detail,
        });
    }
    Attempt::Transient {
        error: AdoError::Transport {
            url: url.to_string(),
            detail,
        },
        retry_after: None,
    }
}

/// The outcome of one failed attempt.
enum Attempt {
    Final(AdoError),
    Transient {
        error: AdoError,
        retry_after: Option<Duration>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_hosts_follow_the_organization_url() {
        assert_eq!(
            service_base("https://dev.azure.com/acme", "vsrm"),
            "https://vsrm.dev.azure.com/acme"
        );
        assert_eq!(
            service_base("https://acme.visualstudio.com/", "vssps"),
            "https://acme.vssps.visualstudio.com"
        );
        // Azure DevOps Server and the simulator: one host for every service.
        assert_eq!(
            service_base("https://tfs.example.com/DefaultCollection", "vsrm"),
            "https://tfs.example.com/DefaultCollection"
        );
        assert_eq!(
            service_base("http://127.0.0.1:4000/acme", "vsrm"),
            "http://127.0.0.1:4000/acme"
        );
    }

    #[test]
    fn an_answer_becomes_text_in_the_buffer_it_was_read_into() {
        let body = bytes::Bytes::from(br#"{"count":1,"value":["caf\u00e9"]}"#.to_vec());
        let read_into = body.as_ptr();
        let text = utf8_text(body);
        assert_eq!(text, r#"{"count":1,"value":["caf\u00e9"]}"#);
        assert_eq!(text.as_ptr(), read_into, "copied instead of reused");

        let with_mark = bytes::Bytes::from("\u{feff}{\"value\":[]}".as_bytes().to_vec());
        assert_eq!(utf8_text(with_mark), r#"{"value":[]}"#);
        let malformed = bytes::Bytes::from(b"{\"name\":\"a\xffb\"}".to_vec());
        assert_eq!(utf8_text(malformed), "{\"name\":\"a\u{fffd}b\"}");
    }
}
