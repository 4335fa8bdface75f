//! Where the mapping (port-app-config) comes from: a local file (`ADOPORT__MAPPING_FILE`) or the
//! integration's config in Port (`GET /v1/integration/{identifier}`), as the Python
//! integration reads it — once at start-up ([`load`]), then by the one follower of each process
//! ([`follow`]) that every role's mapping versions come from.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::Value;

use adoport_shared::config::Settings;

use crate::port_reader::PortReader;
use adoport_shared::mapping_versions::{FollowerGuard, Offer};
use adoport_shared::port_app_config::PortAppConfig;
use adoport_transform::mapping::versions::validate;
use tokio_util::sync::CancellationToken;

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
    let port = PortReader::new(
        settings,
        "the mapping is read from Port unless ADOPORT__MAPPING_FILE is set",
    )?;
    let config = read_from_port(&port).await?;
    PortAppConfig::from_json_value(config).context(
        "the integration's mapping in Port is not a valid port-app-config (fix it in Port's data sources page)",
    )
}

/// Where the mapping is read from: the file, or Port (one client and token for every read).
enum Source {
    File(std::path::PathBuf),
    Port(PortReader),
}

impl Source {
    fn for_settings(settings: &Settings) -> anyhow::Result<Self> {
        match &settings.pipeline.mapping_file {
            Some(path) => Ok(Source::File(path.clone())),
            None => Ok(Source::Port(PortReader::new(
                settings,
                "the mapping is read from Port unless ADOPORT__MAPPING_FILE is set",
            )?)),
        }
    }

    /// The mapping's current source text as JSON (the file read as YAML, or Port's config).
    async fn read(&self) -> anyhow::Result<Value> {
        match self {
            Source::File(path) => {
                let text = tokio::fs::read_to_string(path).await.with_context(|| {
                    format!("ADOPORT__MAPPING_FILE: cannot read {}", path.display())
                })?;
                serde_saphyr::from_str(&text).with_context(|| {
                    format!(
                        "ADOPORT__MAPPING_FILE: {} is not YAML or JSON",
                        path.display()
                    )
                })
            }
            Source::Port(port) => read_from_port(port).await,
        }
    }
}

/// Follows the mapping's source for every role of this process: reads it every `every`, and
/// at once when a role asks ([`MappingVersions::refresh`]: a resync starts, or names a version
/// this process does not know), and offers what it finds to `versions`. A new version is in
/// force once it parses and every expression compiles; a bad one is logged with all its
/// errors (once) and the running one stays. Runs until shutdown.
///
/// `follower` is attached by the caller before this runs, so that a role asking for a fresh
/// read right after start-up is not told that nobody reads the source.
pub async fn follow(
    settings: Settings,
    follower: FollowerGuard,
    every: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let versions = follower.versions().clone();
    let source = Source::for_settings(&settings)?;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
            _ = follower.read_requested() => {}
        }
        let read = follower.read_started();
        match source.read().await {
            Err(e) => tracing::warn!(
                error = %format!("{e:#}"),
                "cannot read the mapping; the running version stays"
            ),
            Ok(raw) => match versions.offer(raw, validate) {
                Offer::Unchanged | Offer::AlreadyRefused => {}
                Offer::Replaced { version, id } => {
                    let kinds = versions.current().config.kinds().join(", ");
                    tracing::info!(version, id = %id, kinds = %kinds, "a new mapping version is in force for every role of this process")
                }
                Offer::Refused(e) => tracing::error!(
                    error = %e,
                    "a new mapping version was refused; the running version stays (fix the mapping)"
                ),
            },
        }
        read.finished();
    }
}

async fn read_from_port(port: &PortReader) -> anyhow::Result<Value> {
    let Some(integration) = port.integration_record().await? else {
        bail!(
            "Port has no integration \"{}\" (OCEAN__INTEGRATION__IDENTIFIER); create it in Port, or set ADOPORT__MAPPING_FILE to a port-app-config file",
            port.integration()
        );
    };
    integration
        .get("config")
        .cloned()
        .filter(|c| !c.is_null())
        .ok_or_else(|| {
            anyhow!(
                "integration \"{}\" in Port has no mapping yet; set one in Port or use ADOPORT__MAPPING_FILE",
                port.integration()
            )
        })
}
