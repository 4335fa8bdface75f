//! Where the mapping (port-app-config) comes from: a local file (`ADOPORT__MAPPING_FILE`) or the
//! integration's config in Port (`GET /v1/integration/{identifier}`), as the Python
//! integration reads it.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

use adoport_shared::config::Settings;
use adoport_shared::port_app_config::PortAppConfig;

/// Reads and parses the mapping, naming the source in every error.
pub async fn load(settings: &Settings) -> anyhow::Result<PortAppConfig> {
    if let Some(path) = &settings.pipeline.mapping_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("ADOPORT__MAPPING_FILE: cannot read {}", path.display()))?;
        return PortAppConfig::from_yaml_str(&text).with_context(|| {
            format!(
                "ADOPORT__MAPPING_FILE: {} is not a valid port-app-config",
                path.display()
            )
        });
    }
    let config = fetch_from_port(settings).await?;
    PortAppConfig::from_json_value(config).context(
        "the integration's mapping in Port is not a valid port-app-config (fix it in Port's data sources page)",
    )
}

async fn fetch_from_port(settings: &Settings) -> anyhow::Result<Value> {
    let access = settings
        .port_access()
        .context("the mapping is read from Port unless ADOPORT__MAPPING_FILE is set")?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(access.timeout_secs.max(1)))
        .build()?;
    let token_url = format!("{}/v1/auth/access_token", access.base_url);
    let response = http
        .post(&token_url)
        .json(&json!({"clientId": access.client_id, "clientSecret": access.client_secret.expose()}))
        .send()
        .await
        .with_context(|| format!("cannot reach Port at {token_url} (OCEAN__PORT__BASE_URL)"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "Port refused the credentials (HTTP {status}: {}); check OCEAN__PORT__CLIENT_ID and OCEAN__PORT__CLIENT_SECRET",
            body.get("message")
                .and_then(Value::as_str)
                .unwrap_or("no message")
        );
    }
    let token = body
        .get("accessToken")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("Port's token answer has no accessToken"))?;
    let url = format!(
        "{}/v1/integration/{}",
        access.base_url, access.integration_identifier
    );
    let response = http
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("cannot reach Port at {url}"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.as_u16() == 404 {
        bail!(
            "Port has no integration \"{}\" (OCEAN__INTEGRATION__IDENTIFIER); create it in Port, or set ADOPORT__MAPPING_FILE to a port-app-config file",
            access.integration_identifier
        );
    }
    if !status.is_success() {
        bail!("Port answered HTTP {status} for {url}: {body}");
    }
    body.pointer("/integration/config")
        .cloned()
        .filter(|c| !c.is_null())
        .ok_or_else(|| {
            anyhow!(
                "integration \"{}\" in Port has no mapping yet; set one in Port or use ADOPORT__MAPPING_FILE",
                access.integration_identifier
            )
        })
}
