//! The few reads the binary makes from Port outside the publish stage: the integration's mapping,
//! its resync requests (POLLING mode) and entities for `replay`'s comparison.
//!
//! Writes to Port belong to `adoport-publish`; this reader goes through the same shared Port
//! client ([`adoport_shared::port`]): the same sign-in, token cache (renewed once on 401) and
//! classifier, which tells an unavailable Port from a refusal.

use anyhow::Context;
use serde_json::Value;

use adoport_shared::config::Settings;
use adoport_shared::metrics::HttpStats;
use adoport_shared::port::answer::read_json;
use adoport_shared::port::{PortApi, PortError};

/// An authenticated reader of Port's API. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PortReader {
    api: PortApi,
}

/// Port did not answer, or answered that it cannot now (5xx, 408, 429): the request may
/// succeed later, unlike a refusal. Found in an error's chain by [`is_port_unavailable`].
#[derive(Debug, thiserror::Error)]
#[error("Port is unavailable: {0}; the credentials were not refused, try again once Port answers")]
pub struct PortUnavailable(#[source] pub PortError);

/// Whether `error` (or what caused it) is a [`PortUnavailable`].
pub fn is_port_unavailable(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.is::<PortUnavailable>())
}

/// An error of the shared client as the binary reports it: an outage as [`PortUnavailable`],
/// anything else (a refusal names the settings to check) as it is.
fn reported(error: PortError) -> anyhow::Error {
    if error.is_unavailable() {
        PortUnavailable(error).into()
    } else {
        error.into()
    }
}

impl PortReader {
    /// A reader for the Port credentials of `settings`; `purpose` says in errors why Port is
    /// needed (e.g. "the mapping is read from Port unless ADOPORT__MAPPING_FILE is set").
    pub fn new(settings: &Settings, purpose: &str) -> anyhow::Result<Self> {
        let access = settings.port_access().context(purpose.to_string())?;
        Ok(Self {
            api: PortApi::new(&access, None, HttpStats::default())?,
        })
    }

    /// The integration identifier the reader's settings name.
    pub fn integration(&self) -> &str {
        self.api.integration_identifier()
    }

    /// `GET {base}/v1/{segments…}` (each segment URL-encoded). `None` when Port answers 404.
    pub async fn get(&self, segments: &[&str]) -> anyhow::Result<Option<Value>> {
        let url = self.api.url(&[&["v1"], segments].concat())?;
        let operation = format!("GET {url}");
        let response = self
            .api
            .send(&operation, |http| http.get(url.clone()))
            .await
            .map_err(reported)?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        read_json(&operation, response)
            .await
            .map(Some)
            .map_err(reported)
    }

    /// The integration (`GET /v1/integration/{identifier}` → `integration`), if it exists.
    pub async fn integration_record(&self) -> anyhow::Result<Option<Value>> {
        let identifier = self.integration().to_string();
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
