//! The few reads the binary makes from Port outside the publish stage: the integration's mapping,
//! its resync requests (POLLING mode) and entities for `replay`'s comparison.
//!
//! Writes to Port belong to `adoport-publish`; this reader signs in with the same credentials,
//! keeps the token, and signs in again once when Port answers 401 (tokens live 3 h).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use adoport_shared::config::{PortAccess, Settings};

/// An authenticated reader of Port's API. Cheap to clone.
#[derive(Clone)]
pub struct PortReader {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    access: PortAccess,
    token: Mutex<Option<String>>,
}

/// Port did not answer, or answered that it cannot now (5xx, 429): the request may succeed
/// later, unlike a refusal. Found in an error's chain by [`is_port_unavailable`].
#[derive(Debug, thiserror::Error)]
#[error("Port is unavailable: {0}")]
pub struct PortUnavailable(pub String);

/// Whether `error` (or what caused it) is a [`PortUnavailable`].
pub fn is_port_unavailable(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.is::<PortUnavailable>())
}

/// At most this much of a body in an error message.
fn excerpt(body: &str) -> String {
    let flat: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    flat.chars().take(300).collect()
}

impl PortReader {
    /// A reader for the Port credentials of `settings`; `purpose` says in errors why Port is
    /// needed (e.g. "the mapping is read from Port unless ADOPORT__MAPPING_FILE is set").
    pub fn new(settings: &Settings, purpose: &str) -> anyhow::Result<Self> {
        let access = settings.port_access().context(purpose.to_string())?;
        let http = adoport_shared::http::client_builder(&access.network)?
            .timeout(Duration::from_secs(access.timeout_secs.max(1)))
            .build()?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                access,
                token: Mutex::new(None),
            }),
        })
    }

    /// The integration identifier the reader's settings name.
    pub fn integration(&self) -> &str {
        &self.inner.access.integration_identifier
    }

    async fn sign_in(&self) -> anyhow::Result<String> {
        let url = format!("{}/v1/auth/access_token", self.inner.access.base_url);
        let response = self
            .inner
            .http
            .post(&url)
            .json(&json!({
                "clientId": self.inner.access.client_id,
                "clientSecret": self.inner.access.client_secret.expose(),
            }))
            .send()
            .await
            .map_err(|e| PortUnavailable(format!("{e}")))
            .with_context(|| format!("cannot reach Port at {url} (OCEAN__PORT__BASE_URL)"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let token = serde_json::from_str::<Value>(&text).ok().and_then(|body| {
            body.get("accessToken")
                .and_then(Value::as_str)
                .map(String::from)
        });
        match token {
            Some(token) if status.is_success() => Ok(token),
            // Port down or throttling says nothing about the credentials.
            _ if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                Err(PortUnavailable(format!(
                    "signing in at {url} answered HTTP {status} ({}); the credentials were not refused, try again once Port answers",
                    excerpt(&text)
                ))
                .into())
            }
            _ => bail!(
                "Port refused the credentials (HTTP {status}: {}); check OCEAN__PORT__CLIENT_ID and OCEAN__PORT__CLIENT_SECRET",
                excerpt(&text)
            ),
        }
    }

    async fn token(&self, renew: bool) -> anyhow::Result<String> {
        let mut slot = self.inner.token.lock().await;
        if renew {
            *slot = None;
        }
        if let Some(token) = slot.as_ref() {
            return Ok(token.clone());
        }
        let token = self.sign_in().await?;
        *slot = Some(token.clone());
        Ok(token)
    }

    /// `GET {base}/v1/{segments…}` (each segment URL-encoded). `None` when Port answers 404.
    pub async fn get(&self, segments: &[&str]) -> anyhow::Result<Option<Value>> {
        let mut url = reqwest::Url::parse(&self.inner.access.base_url).with_context(|| {
            format!(
                "OCEAN__PORT__BASE_URL {} is not a URL",
                self.inner.access.base_url
            )
        })?;
        url.path_segments_mut()
            .map_err(|()| {
                anyhow!(
                    "OCEAN__PORT__BASE_URL {} cannot take a path",
                    self.inner.access.base_url
                )
            })?
            .push("v1")
            .extend(segments);
        let mut renewed = false;
        loop {
            let token = self.token(renewed).await?;
            let response = self
                .inner
                .http
                .get(url.clone())
                .bearer_auth(token)
                .send()
                .await
                .map_err(|e| PortUnavailable(format!("{e}")))
                .with_context(|| format!("GET {url}: Port is not reachable"))?;
            let status = response.status();
            if status == reqwest::StatusCode::UNAUTHORIZED && !renewed {
                renewed = true;
                continue;
            }
            if status == reqwest::StatusCode::NOT_FOUND {
                return Ok(None);
            }
            let text = response.text().await.unwrap_or_default();
            if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                return Err(PortUnavailable(format!(
                    "GET {url} answered HTTP {status}: {}",
                    excerpt(&text)
                ))
                .into());
            }
            if !status.is_success() {
                bail!("GET {url} answered HTTP {status}: {}", excerpt(&text));
            }
            return serde_json::from_str(&text)
                .map(Some)
                .with_context(|| format!("GET {url} answered something that is not JSON"));
        }
    }

    /// The integration (`GET /v1/integration/{identifier}` → `integration`), if it exists.
    pub async fn integration_record(&self) -> anyhow::Result<Option<Value>> {
        let identifier = self.inner.access.integration_identifier.clone();
        Ok(self
            .get(&["integration", &identifier])
            .await?
            .and_then(|body| body.get("integration").cloned()))
    }

    /// An entity as Port holds it, if it exists.
    pub async fn entity(&self, blueprint: &str, identifier: &str) -> anyhow::Result<Option<Value>> {
        Ok(self
            .get(&["blueprints", blueprint, "entities", identifier])
            .await?
            .and_then(|body| body.get("entity").cloned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adoport_sim::port::{PortSim, PortSimConfig};
    use adoport_sim::{PortOutage, ScriptedAnswer};

    fn settings(port: &PortSim, secret: &str) -> Settings {
        Settings::from_vars(
            [
                ("OCEAN__PORT__CLIENT_ID", "sim-client".to_string()),
                ("OCEAN__PORT__CLIENT_SECRET", secret.to_string()),
                ("OCEAN__PORT__BASE_URL", port.base_url()),
                ("OCEAN__INTEGRATION__IDENTIFIER", "azure-devops".to_string()),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        )
        .expect("settings")
    }

    /// A Port outage at start-up is named as one, not as refused credentials (found by the
    /// chaos soak: replicas restarted during the outage told the operator to check the client
    /// id and secret).
    #[tokio::test]
    async fn an_unavailable_port_is_not_reported_as_refused_credentials() {
        let port = PortSim::start(PortSimConfig::default()).await.expect("sim");
        port.set_outage(Some(PortOutage::RateLimited {
            retry_after_secs: 1,
        }));
        let reader = PortReader::new(&settings(&port, "sim-secret"), "test").expect("reader");
        let error = reader.integration_record().await.expect_err("Port is down");
        assert!(is_port_unavailable(&error), "{error:#}");
        let error = format!("{error:#}");
        assert!(
            error.contains("Port is unavailable") && error.contains("429"),
            "{error}"
        );
        assert!(!error.contains("refused the credentials"), "{error}");
        port.set_outage(None);
        port.fail_next(
            "POST /v1/auth/access_token",
            vec![ScriptedAnswer::status(503)],
        );
        let error = reader.integration_record().await.expect_err("503");
        assert!(is_port_unavailable(&error), "{error:#}");
        assert!(
            format!("{error:#}").contains("Port is unavailable"),
            "{error:#}"
        );

        let wrong = PortReader::new(&settings(&port, "wrong"), "test").expect("reader");
        let error = wrong.integration_record().await.expect_err("401");
        assert!(
            !is_port_unavailable(&error),
            "a refusal is not an outage: {error:#}"
        );
        assert!(
            format!("{error:#}").contains("refused the credentials"),
            "{error:#}"
        );
        port.shutdown().await;
    }
}
