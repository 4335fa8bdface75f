//! `adoport sim`, and the simulated environment the demo and the benchmark share.
//!
//! The simulators (crate `adoport-sim`) stand in for Azure DevOps and Port; this module starts
//! them with the default mapping and derives the settings a pipeline needs to talk to them.
//! `adoport sim` prints the requests each simulator received so far on SIGUSR1 (a line
//! `requests: azure_devops=N port=M`, after one `azure_devops route: N ROUTE` line per Azure
//! DevOps route and one `azure_devops kind: MADE MINIMUM KIND` line per row of the request
//! report: the requests attributed to each kind and the fewest a resync of the mapping
//! (`--mapping`, else the whole default mapping) needs), so that a script can count one run's
//! traffic.

use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cli::SimArgs;
use adoport_shared::config::Settings;
use adoport_shared::port_app_config::DEFAULT_PORT_APP_CONFIG;
use adoport_sim::ado::{AdoSim, AdoSimConfig};
use adoport_sim::port::{PortSim, PortSimConfig};

/// The default mapping as JSON, limited to `kinds` when given (the crawler of this version
/// reads projects and repositories).
pub fn default_mapping(kinds: Option<&[&str]>) -> anyhow::Result<Value> {
    let mut mapping: Value = serde_saphyr::from_str(DEFAULT_PORT_APP_CONFIG)
        .context("the built-in default mapping does not parse")?;
    if let (Some(kinds), Some(Value::Array(resources))) = (kinds, mapping.get_mut("resources")) {
        resources.retain(|r| {
            r.get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| kinds.contains(&k))
        });
    }
    Ok(mapping)
}

/// Simulated Azure DevOps and Port, running in this process.
pub struct SimulatedWorld {
    pub ado: AdoSim,
    pub port: PortSim,
}

/// The webhook secret the simulated world is configured with.
pub const WEBHOOK_SECRET: &str = "sim-webhook-secret";

impl SimulatedWorld {
    pub async fn start(
        projects: usize,
        repositories: usize,
        mapping: Value,
    ) -> anyhow::Result<Self> {
        let ado = AdoSimConfig {
            projects,
            repositories_per_project: repositories,
            ..AdoSimConfig::default()
        };
        Self::start_with(ado, mapping).await
    }

    /// [`SimulatedWorld::start`] with an Azure DevOps simulator configured in full (latency,
    /// page sizes, rate limits).
    pub async fn start_with(ado: AdoSimConfig, mapping: Value) -> anyhow::Result<Self> {
        let ado = AdoSim::start(ado)
            .await
            .context("cannot start the Azure DevOps simulator")?;
        let port = PortSim::start(PortSimConfig {
            integration_config: Some(mapping),
            ..PortSimConfig::default()
        })
        .await
        .context("cannot start the Port simulator")?;
        Ok(Self { ado, port })
    }

    /// The environment variables a user would set to point adoport at this world.
    pub fn environment(&self, broker: Option<(&str, &str)>) -> Vec<(String, String)> {
        let ado = AdoSimConfig::default();
        let port = PortSimConfig::default();
        let mut vars = vec![
            ("OCEAN__PORT__CLIENT_ID", port.client_id),
            ("OCEAN__PORT__CLIENT_SECRET", port.client_secret),
            ("OCEAN__PORT__BASE_URL", self.port.base_url()),
            (
                "OCEAN__INTEGRATION__IDENTIFIER",
                port.integration_identifier,
            ),
            (
                "OCEAN__INTEGRATION__CONFIG__ORGANIZATION_URL",
                self.ado.organization_url(),
            ),
            (
                "OCEAN__INTEGRATION__CONFIG__PERSONAL_ACCESS_TOKEN",
                ado.personal_access_token,
            ),
            (
                "OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET",
                WEBHOOK_SECRET.to_string(),
            ),
            ("OCEAN__EVENT_LISTENER__TYPE", "POLLING".to_string()),
            ("ADOPORT__INGEST__LISTEN", "127.0.0.1:0".to_string()),
        ];
        if let Some((url, prefix)) = broker {
            vars.push(("ADOPORT__BROKER__URL", url.to_string()));
            vars.push(("ADOPORT__BROKER__PREFIX", prefix.to_string()));
        }
        vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    pub fn settings(&self, broker: Option<(&str, &str)>) -> anyhow::Result<Settings> {
        Settings::from_vars(self.environment(broker)).context("simulated settings are invalid")
    }

    pub async fn shutdown(self) {
        self.ado.shutdown().await;
        self.port.shutdown().await;
    }
}

/// `adoport sim`: serve both simulators until Ctrl-C / SIGTERM.
pub async fn run(args: SimArgs) -> anyhow::Result<std::process::ExitCode> {
    let mapping = match &args.mapping {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--mapping: cannot read {}", path.display()))?;
            serde_saphyr::from_str(&text)
                .with_context(|| format!("--mapping: {} is not YAML/JSON", path.display()))?
        }
        None => default_mapping(Some(&["project", "repository"]))?,
    };
    // The mapping the request report's minimum is of: the one given, else the whole default
    // mapping (what an integration with another identifier installs for itself).
    let reported = match &args.mapping {
        Some(_) => mapping.clone(),
        None => default_mapping(None)?,
    };
    let ado_listener = TcpListener::bind(&args.ado_listen)
        .await
        .with_context(|| format!("--ado-listen: cannot listen on {}", args.ado_listen))?;
    let port_listener = TcpListener::bind(&args.port_listen)
        .await
        .with_context(|| format!("--port-listen: cannot listen on {}", args.port_listen))?;
    let ado = AdoSim::start_on(
        AdoSimConfig {
            projects: args.projects,
            repositories_per_project: args.repositories,
            work_items_per_project: args.work_items,
            pull_requests_per_repository: args.pull_requests,
            releases_per_project: args.releases,
            latency: Duration::from_millis(args.ado_latency_ms),
            ..AdoSimConfig::default()
        },
        ado_listener,
    )
    .await?;
    let port = PortSim::start_on(
        PortSimConfig {
            integration_config: Some(mapping),
            integration_identifier: args.integration_identifier.clone(),
            latency: Duration::from_millis(args.port_latency_ms),
            ..PortSimConfig::default()
        },
        port_listener,
    )
    .await?;
    // The integration the simulator holds looks like Port's record: it names where sync
    // metrics go.
    port.enable_sync_metrics();
    // Listen for SIGUSR1 before announcing the addresses: a script that signals as soon as it
    // reads them must get a report, not SIGUSR1's default action (the process ending).
    let report_signal = ReportSignal::listen()?;
    println!(
        "Azure DevOps simulator: {} (organization URL)",
        ado.organization_url()
    );
    println!("Port simulator:         {}", port.base_url());
    let shutdown = CancellationToken::new();
    adoport_shared::shutdown::cancel_on_signal(shutdown.clone());
    report_requests_on_signal(report_signal, &ado, &port, &reported, &shutdown).await?;
    ado.shutdown().await;
    port.shutdown().await;
    Ok(std::process::ExitCode::SUCCESS)
}

/// The signal that asks for a request report: SIGUSR1 on Unix, none elsewhere.
struct ReportSignal {
    #[cfg(unix)]
    usr1: tokio::signal::unix::Signal,
}

impl ReportSignal {
    #[cfg(unix)]
    fn listen() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let usr1 = signal(SignalKind::user_defined1()).context("cannot listen for SIGUSR1")?;
        Ok(Self { usr1 })
    }

    #[cfg(not(unix))]
    fn listen() -> anyhow::Result<Self> {
        Ok(Self {})
    }
}

/// Prints the requests each simulator received so far on every SIGUSR1, until `shutdown`.
#[cfg(unix)]
async fn report_requests_on_signal(
    mut signal: ReportSignal,
    ado: &AdoSim,
    port: &PortSim,
    mapping: &Value,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    use std::io::Write;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = signal.usr1.recv() => {
                // Azure DevOps requests by route first, the totals line last (scripts read it).
                for (route, count) in ado.requests() {
                    println!("azure_devops route: {count:>7} {route}");
                }
                for row in ado.request_report(mapping).rows {
                    println!("azure_devops kind: {} {} {}", row.made, row.minimum, row.kind);
                }
                println!(
                    "requests: azure_devops={} port={}",
                    ado.total_requests(),
                    port.total_requests()
                );
                // Stdout is a file when a script reads it: the line must be there now.
                std::io::stdout().flush().context("cannot write to stdout")?;
            }
        }
    }
}

#[cfg(not(unix))]
async fn report_requests_on_signal(
    _signal: ReportSignal,
    _ado: &AdoSim,
    _port: &PortSim,
    _mapping: &Value,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    shutdown.cancelled().await;
    Ok(())
}

/// How long the demo and benchmark wait for a pipeline before they give up: the rss bench's
/// 80,000-entity `adoport all` took over 300 s on a 2-core machine busy with other builds.
pub const PATIENCE: Duration = Duration::from_secs(900);
