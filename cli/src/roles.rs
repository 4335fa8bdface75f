//! Running a role as a process: settings, bus, mapping, signals, exit status.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cli::{CheckConfigArgs, RoleArg};
use crate::health::{HealthState, Stages};
use crate::mapping_source;
use crate::pipeline::{Pipeline, Roles};
use crate::starting::StartingServer;
use adoport_shared::bus::Bus;
use adoport_shared::config::{EventListenerType, Settings};

/// A process role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Ingest,
    Transform,
    Publish,
    All,
}

impl Role {
    fn roles(self) -> Roles {
        match self {
            Role::Ingest => Roles {
                ingest: true,
                transform: false,
                publish: false,
            },
            Role::Transform => Roles {
                ingest: false,
                transform: true,
                publish: false,
            },
            Role::Publish => Roles {
                ingest: false,
                transform: false,
                publish: true,
            },
            Role::All => Roles::ALL,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Transform => "transform",
            Role::Publish => "publish",
            Role::All => "all",
        }
    }
}

impl From<RoleArg> for Role {
    fn from(arg: RoleArg) -> Self {
        match arg {
            RoleArg::Ingest => Role::Ingest,
            RoleArg::Transform => Role::Transform,
            RoleArg::Publish => Role::Publish,
            RoleArg::All => Role::All,
        }
    }
}

/// Reads the settings and checks everything `role` needs, naming what is missing.
pub fn validated_settings(role: Role) -> anyhow::Result<Settings> {
    let settings = Settings::from_env().context("bad setting")?;
    warn_about_settings(&settings);
    check_settings(role, &settings)?;
    Ok(settings)
}

/// What the operator should know about settings that are read differently from the Python
/// integration: the `OCEAN__…` variables adoport does not use (one line naming them all: Port's
/// chart renders several for Ocean's own machinery), KAFKA read as POLLING, and the identifier
/// defaulted.
fn warn_about_settings(settings: &Settings) {
    if !settings.unused.is_empty() {
        tracing::warn!(
            settings = %settings.unused.join(", "),
            "settings of the Python integration that adoport does not use; ignored"
        );
    }
    let listener = &settings.ocean.event_listener;
    if listener.kind == EventListenerType::Kafka {
        tracing::warn!(
            interval_secs = listener.interval,
            "event listener KAFKA: adoport does not read Port's Kafka topic; it polls Port's resync requests instead (as POLLING, every OCEAN__EVENT_LISTENER__INTERVAL seconds)"
        );
    }
    if settings
        .ocean
        .integration
        .identifier
        .as_deref()
        .is_none_or(|i| i.trim().is_empty())
    {
        tracing::info!(
            identifier = %settings.integration_identifier(),
            "OCEAN__INTEGRATION__IDENTIFIER is not set: using the Python integration's default"
        );
    }
}

/// What `role` needs beyond the settings every role shares.
fn check_settings(role: Role, settings: &Settings) -> anyhow::Result<()> {
    let roles = role.roles();
    if settings.pipeline.broker.url.is_none() && role != Role::All {
        bail!(
            "ADOPORT__BROKER__URL is required for the {} role (e.g. amqp://guest:guest@rabbitmq:5672/%2f); only `adoport all` runs without a broker",
            role.name()
        );
    }
    if roles.ingest {
        settings.azure_devops_accounts()?;
    }
    if roles.publish || settings.pipeline.mapping_file.is_none() {
        settings.port_access()?;
    }
    Ok(())
}

/// `adoport check-config ROLE`.
pub fn check_config(args: CheckConfigArgs) -> anyhow::Result<ExitCode> {
    let role = Role::from(args.role);
    let settings = validated_settings(role)?;
    println!("settings for `adoport {}` are valid:", role.name());
    println!("{settings:#?}");
    Ok(ExitCode::SUCCESS)
}

/// `adoport ingest|transform|publish|all`.
pub async fn run_role(role: Role) -> anyhow::Result<ExitCode> {
    let settings = validated_settings(role)?;
    let shutdown = CancellationToken::new();
    adoport_shared::shutdown::cancel_on_signal(shutdown.clone());
    run(role, &settings, shutdown).await
}

/// Runs `role` until `shutdown` (the process's signals; a test's token).
///
/// Nothing here waits for the broker: the bus connects in the background, and the health
/// endpoint is served first, so `/healthz` answers from the first second and `/readyz` says
/// what is not ready yet (the broker, the roles). The roles wait for the broker
/// themselves.
pub async fn run(
    role: Role,
    settings: &Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<ExitCode> {
    check_settings(role, settings)?;
    let shipping = LogShipping::start(settings);
    let outcome = run_roles(role, settings, shutdown).await;
    if let Some(shipping) = shipping {
        shipping.stop().await;
    }
    outcome
}

/// The shipper of this process's log lines to Port's log view, while the roles run: every
/// role's process ships its own lines, as each Ocean process does. Its code is publish's
/// (every write to Port is); the lines wait in the logging layer's outbox meanwhile.
struct LogShipping {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl LogShipping {
    /// Starts shipping when the process keeps its lines for Port and
    /// `APPLICATION__ENABLE_HTTP_LOGGING` is on; with it off, stops keeping them.
    fn start(settings: &Settings) -> Option<Self> {
        let outbox = adoport_shared::telemetry::port_log_outbox()?;
        if !settings.application.enable_http_logging {
            outbox.close();
            tracing::info!(
                "APPLICATION__ENABLE_HTTP_LOGGING=false: log lines are not sent to Port"
            );
            return None;
        }
        outbox.hide(settings.secret_values());
        let client = settings
            .port_access()
            .map_err(anyhow::Error::from)
            .and_then(|access| {
                let agent = adoport_publish::exporter_user_agent(
                    adoport_publish::COMPATIBLE_INTEGRATION_VERSION,
                    &access.integration_identifier,
                );
                Ok((
                    adoport_publish::PortClient::new(&access, agent)?,
                    access.integration_identifier,
                ))
            });
        let (client, integration) = match client {
            Ok(found) => found,
            Err(e) => {
                outbox.close();
                tracing::warn!(error = %format!("{e:#}"), "log lines are not sent to Port: no Port client");
                return None;
            }
        };
        let stop = CancellationToken::new();
        let shipper = adoport_publish::log_shipping::LogShipper::new(client, &integration, outbox);
        let task = tokio::spawn(shipper.run(stop.clone()));
        Some(Self { stop, task })
    }

    /// Ships what is left (bounded by the shipper's final flush) and stops.
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn run_roles(
    role: Role,
    settings: &Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<ExitCode> {
    let roles = role.roles();
    if settings.pipeline.broker.url.is_none() {
        tracing::info!("ADOPORT__BROKER__URL not set: running every role on the in-process bus");
    }
    if roles.transform {
        adoport_transform::expose_environment(settings.jq_environment.variables());
    }
    let bus = Bus::start(settings, shutdown.clone()).context("ADOPORT__BROKER__URL")?;
    let once = role == Role::All && settings.ocean.event_listener.kind == EventListenerType::Once;
    let health = start_health(role, settings, &bus, once, shutdown.clone()).await?;
    // Ingest's port answers probes from the first second (Port's chart probes it), while Port's
    // resources are created and the mapping is read below.
    let (starting, listener) = if roles.ingest {
        let address = &settings.pipeline.ingest.listen;
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("ADOPORT__INGEST__LISTEN: cannot listen on {address}"))?;
        let (starting, listener) = StartingServer::start(listener, &settings.ocean.route_prefix())
            .with_context(|| format!("ADOPORT__INGEST__LISTEN: cannot serve on {address}"))?;
        (Some(starting), Some(listener))
    } else {
        (None, None)
    };
    // Start: publish owns Port, so it creates the default blueprints and the integration (with
    // the default mapping) on a first start, and on every start brings the integration record
    // up to date as the Python integration does, before the mapping is read from Port below.
    // Ingest and transform processes started alone wait for a publish process to have done it
    // once (they fail on a missing integration and are restarted).
    if roles.publish {
        let initialize = || async {
            adoport_publish::resources::initialize_for_settings(settings)
                .await
                .context("cannot bring the integration and the default resources up to date in Port (OCEAN__INITIALIZE_PORT_RESOURCES=false skips creating the resources)")
        };
        let Some(done) = while_port_unavailable(
            "initializing the integration in Port",
            &shutdown,
            initialize,
        )
        .await?
        else {
            return Ok(ExitCode::SUCCESS);
        };
        tracing::info!(
            blueprints_created = ?done.blueprints_created,
            scorecards_created = ?done.scorecards_created,
            pages_created = ?done.pages_created,
            integration_created = done.integration_created,
            record_updated = done.record_updated,
            "Port resources initialized"
        );
    }
    // Publish reads it too: its reconciliation follows the mapping's deletion flags.
    let mapping = if roles.ingest || roles.transform || roles.publish {
        let load = || mapping_source::load(settings);
        match while_port_unavailable("reading the mapping", &shutdown, load).await? {
            Some(mapping) => Some(mapping),
            None => return Ok(ExitCode::SUCCESS),
        }
    } else {
        None
    };
    if let Some(starting) = starting {
        starting.stop().await;
    }
    let mut pipeline = Pipeline::start(
        settings,
        roles,
        bus.clone(),
        mapping,
        listener,
        shutdown.clone(),
    )
    .await?;
    pipeline.poll_mapping(settings);
    pipeline.poll_port_resync_requests(settings)?;
    if let Some(health) = &health {
        health.attach(Stages {
            transform: roles.transform.then(|| pipeline.transform_stats.clone()),
            publish: roles.publish.then(|| pipeline.publish_stats.clone()),
            ingest: roles.ingest.then(|| pipeline.ingest_stats.clone()),
            leadership: pipeline.leadership.clone(),
        });
    }
    tracing::info!(role = role.name(), "adoport started");

    let outcome = if once {
        run_once(pipeline).await
    } else {
        pipeline.wait().await.map(|()| ExitCode::SUCCESS)
    };
    bus.close().await;
    tracing::info!(role = role.name(), "adoport stopped");
    outcome
}

/// Serves `/healthz`, `/readyz` and `/metrics` (ADOPORT__HEALTH__LISTEN); the stages' counters
/// are attached once the roles run. An explicit address that cannot be bound stops the
/// process; the default one only warns (several roles may share a host in try-outs), and ONCE
/// runs skip it unless it is set.
/// Longest pause between two start-up attempts while Port is unavailable.
const PORT_PATIENCE_CAP: Duration = Duration::from_secs(30);

/// Runs a start-up step that needs Port, again and again while Port is unavailable (no answer,
/// 5xx, 429), with pauses growing from 1 s to [`PORT_PATIENCE_CAP`], for as long as it takes:
/// a replica (re)started during a Port outage waits for Port, alive (`/healthz`) and not
/// ready, instead of exiting into a restart loop. Any other failure ends the start at once.
/// `None` when the process is asked to stop meanwhile.
async fn while_port_unavailable<T, F, Fut>(
    what: &str,
    shutdown: &CancellationToken,
    step: F,
) -> anyhow::Result<Option<T>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut pause = Duration::from_secs(1);
    loop {
        match step().await {
            Ok(value) => return Ok(Some(value)),
            Err(e) if port_unavailable(&e) => {
                tracing::warn!(
                    step = what,
                    error = %format!("{e:#}"),
                    retry_in_secs = pause.as_secs(),
                    "Port is unavailable at start-up; waiting for it"
                );
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(PORT_PATIENCE_CAP);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether a start-up failure is Port being unavailable rather than refusing: the reader's
/// [`crate::port_reader::PortUnavailable`], or publish's error for no answer, 5xx, 408 or 429.
fn port_unavailable(error: &anyhow::Error) -> bool {
    use adoport_publish::error::PublishError;
    crate::port_reader::is_port_unavailable(error)
        || error
            .chain()
            .filter_map(|cause| cause.downcast_ref::<PublishError>())
            .any(|e| matches!(e, PublishError::Port(e) if e.is_unavailable()))
}

async fn start_health(
    role: Role,
    settings: &Settings,
    bus: &Bus,
    once: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<HealthState>> {
    use adoport_shared::config::HealthSettings;
    use adoport_shared::topology::WorkQueue;
    let configured = settings.pipeline.health.listen.as_deref();
    let address = match configured {
        Some("off") => return Ok(None),
        None if once => return Ok(None),
        Some(address) => address,
        None => HealthSettings::DEFAULT_LISTEN,
    };
    let listener = match TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(e) if configured.is_none() => {
            tracing::warn!(address, error = %e, "cannot serve health and metrics on the default address (set ADOPORT__HEALTH__LISTEN)");
            return Ok(None);
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("ADOPORT__HEALTH__LISTEN: cannot listen on {address}"));
        }
    };
    let roles = role.roles();
    let mut upstreams = Vec::new();
    if roles.ingest
        && let Ok(accounts) = settings.azure_devops_accounts()
        && let Some(url) = accounts.organization_urls.into_iter().next()
    {
        upstreams.push(crate::health::Upstream {
            name: "azure_devops",
            url,
        });
    }
    if roles.publish
        && let Ok(access) = settings.port_access()
    {
        upstreams.push(crate::health::Upstream {
            name: "port",
            url: access.base_url,
        });
    }
    let topology = settings.topology();
    let mut queues = Vec::new();
    if roles.transform {
        queues.push(WorkQueue::Raw);
    }
    if roles.publish {
        queues.extend(topology.change_queues());
    }
    let state = HealthState::starting(role.name(), bus.clone(), upstreams, queues);
    let served = state.clone();
    tokio::spawn(async move {
        if let Err(e) = crate::health::serve(listener, served, shutdown).await {
            tracing::error!(error = %e, "the health and metrics endpoint stopped");
        }
    });
    Ok(Some(state))
}

/// How long ONCE waits for the resync's reconciliation once its changes are settled: listing
/// the integration's entities and deleting the stale ones (at most 100 per request).
const ONCE_RECONCILE_PATIENCE: Duration = Duration::from_secs(30 * 60);

/// The end of a ONCE incremental run (Ocean's incremental CronJob): what changed is in Port,
/// nothing is reconciled; a kind that failed kept its cursor and fails the run.
async fn once_incremental_finished(
    pipeline: Pipeline,
    report: &adoport_ingest::CrawlReport,
) -> anyhow::Result<ExitCode> {
    let (failed, dead_lettered) = incomplete(&pipeline, report);
    tracing::info!(
        items = report.items(),
        kinds = ?report.kinds.keys().collect::<Vec<_>>(),
        entities_upserted = pipeline.publish_stats.snapshot().upserted,
        dead_lettered,
        failed_kinds = ?failed,
        "ONCE incremental sync finished"
    );
    pipeline.stop().await?;
    Ok(exit_code(
        &failed,
        dead_lettered,
        "incremental sync incomplete",
        " (their cursors were not advanced)",
    ))
}

/// What a ONCE run left undone: the kinds that failed, and the messages dead-lettered.
fn incomplete(pipeline: &Pipeline, report: &adoport_ingest::CrawlReport) -> (Vec<String>, u64) {
    let failed = report
        .failed_kinds()
        .iter()
        .map(|k| k.to_string())
        .collect::<Vec<_>>();
    let dead_lettered = pipeline.publish_stats.snapshot().dead_lettered
        + pipeline.transform_stats.events_dead_lettered();
    (failed, dead_lettered)
}

/// A ONCE run's exit: success only when no kind failed and nothing was dead-lettered; else a
/// line on stderr saying what (`what`, then the failed kinds with `about_failed`).
fn exit_code(failed: &[String], dead_lettered: u64, what: &str, about_failed: &str) -> ExitCode {
    if failed.is_empty() && dead_lettered == 0 {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "adoport: {what}: failed kinds {failed:?}{about_failed}, {dead_lettered} message(s) dead-lettered (see the log)"
    );
    ExitCode::FAILURE
}

/// ONCE: one resync, wait until the pipeline has drained and the resync is reconciled, report,
/// exit.
async fn run_once(mut pipeline: Pipeline) -> anyhow::Result<ExitCode> {
    let Some(done) = pipeline.next_resync().await else {
        pipeline.stop().await?;
        bail!("stopped before the resync finished");
    };
    let report = match done.report {
        Ok(report) => report,
        Err(e) => {
            pipeline.stop().await?;
            bail!("the resync failed: {e}");
        }
    };
    let events: u64 = report.kinds.values().map(|k| k.events).sum();
    pipeline.drained(events).await;
    if done.incremental {
        return once_incremental_finished(pipeline, &report).await;
    }
    // The resync ends with its reconciliation (stale entities deleted, the state reported to
    // Port), as the Python integration's ONCE run does; the coordinator waits for publish to
    // settle the resync's changes first.
    let reconciled = tokio::time::timeout(
        ONCE_RECONCILE_PATIENCE,
        pipeline.resync_summary(done.resync_id),
    )
    .await;
    let summary = match reconciled {
        Ok(Some(summary)) => summary,
        Ok(None) => {
            pipeline.stop().await?;
            bail!("the reconciliation coordinator stopped before it reconciled the resync");
        }
        Err(_) => {
            pipeline.stop().await?;
            bail!(
                "the resync was not reconciled within {} minutes (stale entities were not deleted; see the log)",
                ONCE_RECONCILE_PATIENCE.as_secs() / 60
            );
        }
    };
    let (failed, dead_lettered) = incomplete(&pipeline, &report);
    tracing::info!(
        items = report.items(),
        entities_upserted = pipeline.publish_stats.snapshot().upserted,
        dead_lettered,
        failed_kinds = ?failed,
        reconciliation = summary.status,
        entities_deleted = summary.deleted,
        "ONCE resync finished"
    );
    pipeline.stop().await?;
    Ok(exit_code(&failed, dead_lettered, "resync incomplete", ""))
}
