//! # adoport-ingest
//!
//! Everything adoport reads from Azure DevOps: the webhook receiver ([`webhook`]), the REST
//! client ([`ado`]), the configured organizations and which one an event came from
//! ([`organizations`]), the resync crawler of one organization ([`crawler`]) and of all of them
//! ([`crawlers`]), what a push changes ([`push_events`]), the live events of builds, pipelines,
//! releases and alerts ([`live_events`]), GitOps pushes ([`gitops`]), the `trigger_pipeline`
//! and pull-request actions ([`actions`]), the resync request loop ([`resync`]) and the lease
//! it holds on the request it crawls ([`lease`]), the service-hook subscription manager
//! ([`subscriptions`]), and which replica runs the work that must run once — the schedule, the
//! start-up resync, the subscriptions ([`leader`]). Its crawl plan and subscriptions follow the
//! mapping version in force ([`adoport_shared::mapping_versions`]). At the bottom: the kinds
//! it knows ([`kind`]; each kind's row is in `kinds::KINDS`), the one table of service-hook
//! event types ([`events`]), the typed selectors ([`selector`]), the plan of kinds to read
//! ([`plan`]), what every kind's crawl works with ([`crawl_context`]), what one kind reads for another of
//! the same resync (`shared_reads`, within [`SHARED_READ_BYTES`]) and the
//! publisher of live events' raw events ([`publisher`]); docs/design.md draws the layers.
//! It publishes raw events and resync bookkeeping, and nothing else.
//!
//! An incremental sync ([`incremental`]) reads only what changed since each kind's cursor,
//! which it keeps in Port ([`cursors`]).
//!
//! It must not evaluate mappings or write to Port's catalog: those are transform's and publish's
//! jobs. Its only Port writes are the records of the action runs it executes ([`actions`]) and
//! the incremental sync cursors ([`cursors`]).

pub mod actions;
pub mod ado;
mod byte_budget;
pub mod crawl_context;
pub mod crawler;
pub mod crawlers;
pub mod cursors;
pub mod events;
pub mod examples;
pub mod gitops;
pub mod incremental;
pub mod kind;
mod kinds;
pub mod leader;
pub mod lease;
mod listing_budget;
pub mod live_events;
pub mod organizations;
mod page_budget;
pub mod plan;
mod project_tags;
pub mod publisher;
pub mod push_events;
pub mod resync;
pub mod selector;
mod shared_reads;
pub mod subscriptions;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use adoport_shared::bus::{Bus, BusError};
use adoport_shared::config::{ConfigError, EventListenerType, Settings};
use adoport_shared::mapping_versions::MappingVersions;
use adoport_shared::messages::ResyncTrigger;
use adoport_shared::metrics::ResyncStats;

pub use ado::RequestStats;
pub use crawl_context::{
    BOARD_LIST_BYTES, CrawlFence, CrawlLimits, CrawlReport, CrawlStamp, Crawler,
    DEFAULT_CONCURRENT_KINDS, KindReport, REPOSITORY_LIST_BYTES,
};
pub use crawler::CrawlOrder;
pub use crawlers::Crawlers;
pub use organizations::Organizations;
pub use plan::{KindPlan, KindPlans};
pub use resync::ResyncDone;
pub use shared_reads::SHARED_READ_BYTES;

/// Why ingest stopped.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Ado(#[from] ado::AdoError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("webhook server failed: {0}")]
    Server(std::io::Error),
    #[error(transparent)]
    Actions(#[from] actions::ActionsError),
    #[error(transparent)]
    Cursors(#[from] cursors::CursorError),
}

/// How long stopping waits for the leader to stop its term and hand the lock over.
const LEADER_STOP_PATIENCE: Duration = Duration::from_secs(15);

/// What ingest runs with, beyond settings.
pub struct IngestRun {
    /// The mapping versions this process follows: each resync crawls the kinds and selectors
    /// of the version in force when it starts.
    pub mapping: MappingVersions,
    /// Where the webhook receiver listens (bound by the caller: port 0 in tests).
    pub listener: TcpListener,
    /// Told about every finished crawl (never waited for; see [`resync::done_channel`]).
    pub resync_done: Option<broadcast::Sender<ResyncDone>>,
    /// Where ingest counts, for the caller's `/metrics`.
    pub stats: IngestStats,
    /// Whether this replica leads (set by [`leader::run`]), for `/metrics`, `/readyz` and the
    /// caller's per-term tasks (Port's resync requests).
    pub leadership: leader::Leadership,
}

/// What ingest counts: Azure DevOps requests and resync progress. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct IngestStats {
    pub requests: Arc<RequestStats>,
    pub resyncs: ResyncStats,
}

/// Runs ingest until `shutdown`: the webhook receiver, the resync request loop, and the
/// triggers the event-listener mode asks for.
pub async fn run(
    settings: &Settings,
    bus: Bus,
    run: IngestRun,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    let ingest = &settings.pipeline.ingest;
    let organizations = organization_clients(settings, &run.stats, &shutdown)?;

    let listener = &settings.ocean.event_listener;
    let mode = listener.kind;
    let resync_at_start = mode.resyncs_at_start(listener.resync_on_start);
    // Everything but ONCE elects one leader among the replicas for the work that must run
    // once: the schedule, the start-up resync, the subscriptions (and the caller's Port
    // poller). ONCE runs one resync in one process and needs none of it.
    let leader_work = (mode != EventListenerType::Once).then(|| leader::LeaderWork {
        retry: Duration::from_secs(ingest.leader_retry_secs.max(1)),
        started_at: chrono::Utc::now(),
        resync_at_start,
        // ACTIONS_ONLY resyncs never (Ocean's `should_resync` is false for it).
        schedule: settings.scheduled_resync_every().filter(|_| mode.resyncs()),
        subscriptions: subscriptions::SubscriptionPlan::from_settings(&settings.ocean).map(
            |plan| leader::SubscriptionWork {
                clients: organizations.clients().to_vec(),
                plan,
                mapping: run.mapping.clone(),
                every: Some(ingest.subscription_check_minutes)
                    .filter(|m| *m > 0)
                    .map(|m| Duration::from_secs(m * 60)),
            },
        ),
    });

    let incremental = incremental_sync(settings, &shutdown)?;

    let secret = settings
        .ocean
        .integration
        .config
        .webhook_secret
        .clone()
        .filter(|s| !s.is_empty());
    if secret.is_none() {
        tracing::warn!(
            "no webhookSecret configured: webhooks are accepted without authentication (set OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET)"
        );
    }
    let actions = actions::start(
        settings,
        organizations.live().clients().to_vec(),
        shutdown.clone(),
    )?;
    let state = Arc::new(webhook::WebhookState {
        // Webhooks get 503 at once while the broker is away (Azure DevOps sends them again),
        // and publish on the live lane: their confirms do not wait behind the crawl's pages.
        bus: bus.failing_fast().live_lane(),
        organizations: organizations.live(),
        secret,
        excluded_tags: project_tags::normalized(&settings.ocean.integration.config.excluded_tags),
        actions,
        plan: plan::KindPlans::following(run.mapping.clone()),
    });
    let prefix = settings.ocean.route_prefix();
    let app = webhook::prefixed_router(
        state,
        webhook::WebhookLimits::from_settings(ingest),
        &prefix,
    );
    let address = run.listener.local_addr().map_err(IngestError::Server)?;
    tracing::info!(%address, path = %format!("{prefix}{}", webhook::WEBHOOK_PATH), "webhook receiver listening");
    let server_shutdown = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(run.listener, app)
            .with_graceful_shutdown(async move { server_shutdown.cancelled().await })
            .await
    });

    // Once the receiver answers: the leader asks for the start-up resync (ONCE asks here).
    // Either request waits for the broker if it is away.
    let leader = match leader_work {
        Some(work) => Some(tokio::spawn(leader::run(
            bus.clone(),
            run.leadership.clone(),
            work,
            shutdown.clone(),
        ))),
        None => {
            // ONCE with incremental sync on is Ocean's incremental CronJob: one incremental
            // run instead of the full resync.
            let requested = if incremental.is_some() {
                resync::request_incremental(&bus, ResyncTrigger::Startup).await
            } else {
                resync::request(&bus, ResyncTrigger::Startup).await
            };
            match requested {
                Ok(id) => {
                    tracing::info!(resync_id = %id, mode = ?mode, incremental = incremental.is_some(), "start-up resync requested")
                }
                // Stopped while waiting for the broker: the next start asks again.
                Err(BusError::ShuttingDown) => {}
                Err(e) => return Err(e.into()),
            }
            None
        }
    };

    // Raw data examples: one sampler for every organization, so a kind is sampled once.
    let examples = settings.ocean.send_raw_data_examples.then(|| {
        let config = &settings.ocean.integration.config;
        let secrets = [
            &config.personal_access_token,
            &config.client_secret,
            &config.webhook_secret,
        ]
        .into_iter()
        .flatten()
        .map(|secret| secret.expose().to_string());
        examples::ExampleSampler::new(secrets)
    });
    let crawler = Crawlers::new(
        organizations
            .crawl()
            .clients()
            .iter()
            .map(|client| {
                let crawler =
                    Crawler::new(client.clone(), bus.clone(), ingest.items_per_event as usize)
                        .with_resync_stats(run.stats.resyncs.clone())
                        .with_concurrent_kinds(ingest.concurrent_kinds as usize)
                        .with_crawl_buffer(ingest.crawl_buffer_mib as usize * 1024 * 1024)
                        .with_excluded_tags(&settings.ocean.integration.config.excluded_tags);
                match &examples {
                    Some(sampler) => crawler.with_examples(sampler.clone()),
                    None => crawler,
                }
            })
            .collect(),
    );
    let requests = resync::RequestLoop {
        bus,
        crawler,
        mapping: run.mapping,
        done: run.resync_done,
        renew_every: Duration::from_secs(ingest.resync_lease_secs.max(1)),
        incremental,
    }
    .run(shutdown.clone())
    .await;
    shutdown.cancel();
    // The leader hands its lock over before the bus closes (bounded: its steps are).
    if let Some(leader) = leader {
        let _ = tokio::time::timeout(LEADER_STOP_PATIENCE, leader).await;
    }
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(IngestError::Server(e)),
        Err(e) => return Err(IngestError::Server(std::io::Error::other(e))),
    }
    match requests {
        // A wait for the broker that shutdown ended is a clean stop: the request is redelivered.
        Err(BusError::ShuttingDown) => Ok(()),
        other => other.map_err(IngestError::from),
    }
}

/// What incremental runs need, when `OCEAN__INTEGRATION__INCREMENTAL_SYNC_ENABLED` is on: the
/// cursors in Port and how far back a first run looks.
fn incremental_sync(
    settings: &Settings,
    shutdown: &CancellationToken,
) -> Result<Option<incremental::Incremental>, IngestError> {
    if !settings.ocean.integration.incremental_sync_enabled {
        return Ok(None);
    }
    let cursors = cursors::CursorStore::new(&settings.port_access()?, shutdown.clone())?;
    Ok(Some(incremental::Incremental {
        cursors,
        interval: settings.incremental_sync_every(),
    }))
}

/// One client per configured organization, sharing the credentials (one token provider for a
/// service principal) and the request counts; each has its own request budget, with its live
/// lane's reserve (`ado::budget`).
fn organization_clients(
    settings: &Settings,
    stats: &IngestStats,
    shutdown: &CancellationToken,
) -> Result<Organizations, IngestError> {
    let accounts = settings.azure_devops_accounts()?;
    let auth = ado::AdoAuth::for_credentials(
        &accounts.credentials,
        accounts.timeout_secs,
        &accounts.network,
    )?;
    let ingest = &settings.pipeline.ingest;
    let options = ado::ClientOptions {
        timeout_secs: accounts.timeout_secs,
        network: &accounts.network,
        lanes: ado::LaneLimits {
            max_in_flight: ingest.max_concurrent_requests as usize,
            reserved_in_flight: ingest.live_reserved_requests as usize,
            reserved_percent: ingest.live_reserved_budget_percent.min(90) as u8,
        },
    };
    let clients = accounts
        .organization_urls
        .iter()
        .map(|url| {
            ado::AdoClient::for_organization(
                url,
                auth.clone(),
                options,
                shutdown.clone(),
                stats.requests.clone(),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    tracing::info!(
        organizations = clients.len(),
        urls = ?accounts.organization_urls,
        "Azure DevOps organizations configured"
    );
    Ok(Organizations::new(clients))
}
