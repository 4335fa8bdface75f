//! Assembles the roles of one process (one role, or all of them) on a bus, and watches them.
//!
//! `adoport ingest|transform|publish|all`, the demo, the benchmark and the end-to-end tests all
//! start the pipeline through here, so they run the same code a deployment runs.

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use adoport_ingest::leader::Leadership;
use adoport_ingest::{IngestRun, IngestStats, ResyncDone};
use adoport_publish::reconcile::Tracking;
use adoport_publish::{PublishStats, ResyncSummary};
use adoport_shared::bus::Bus;
use adoport_shared::config::Settings;
use adoport_shared::mapping_versions::MappingVersions;
use adoport_shared::messages::ResyncId;
use adoport_shared::port_app_config::PortAppConfig;
use adoport_transform::mapping::versions::CompiledVersions;
use adoport_transform::worker::TransformStats;

/// Which roles run in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub ingest: bool,
    pub transform: bool,
    pub publish: bool,
}

impl Roles {
    pub const ALL: Roles = Roles {
        ingest: true,
        transform: true,
        publish: true,
    };
}

/// A running pipeline.
pub struct Pipeline {
    pub bus: Bus,
    pub transform_stats: TransformStats,
    pub publish_stats: PublishStats,
    /// Azure DevOps requests and resync progress (counted when ingest runs here).
    pub ingest_stats: IngestStats,
    /// Where the webhook receiver listens, when ingest runs here.
    pub webhook_address: Option<SocketAddr>,
    /// The reconciliation coordinator's summary of the last resync, when publish runs here.
    pub resync_summaries: Option<watch::Receiver<Option<ResyncSummary>>>,
    /// What the coordinator holds (open resyncs, tracked keys), when publish runs here.
    pub reconcile_tracking: Option<watch::Receiver<Tracking>>,
    /// The mapping versions every role of this process follows (when it has a mapping).
    pub mapping: Option<MappingVersions>,
    /// Whether this process leads the ingest replicas, when ingest runs here.
    pub leadership: Option<Leadership>,
    resync_done: broadcast::Receiver<ResyncDone>,
    tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
    shutdown: CancellationToken,
    /// Whether [`Pipeline::poll_mapping`] started the follower already.
    following: bool,
}

impl Pipeline {
    /// Starts the given roles. `listener` is required when ingest runs.
    pub async fn start(
        settings: &Settings,
        roles: Roles,
        bus: Bus,
        mapping: Option<PortAppConfig>,
        listener: Option<TcpListener>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Pipeline> {
        let mut tasks = JoinSet::new();
        let transform_stats = TransformStats::default();
        let ingest_stats = IngestStats::default();
        let (done_tx, resync_done) = adoport_ingest::resync::done_channel();
        let mut webhook_address = None;
        let mut resync_summaries = None;
        let mut reconcile_tracking = None;
        let mut leadership = None;
        // One set of mapping versions for every role here: the follower started by
        // `poll_mapping` offers new versions to it, and each role takes what it needs.
        let versions = mapping.map(MappingVersions::new);

        if roles.transform {
            let versions = versions.clone().context("transform needs the mapping")?;
            let compiled =
                Arc::new(CompiledVersions::new(versions).context("the mapping does not compile")?);
            let prefetch = settings.pipeline.transform.prefetch as u16;
            let limits = adoport_transform::JqLimits::from_settings(&settings.pipeline.transform);
            let (bus, stats, shutdown) = (bus.clone(), transform_stats.clone(), shutdown.clone());
            tasks.spawn(async move {
                let result = adoport_transform::worker::run(
                    bus, compiled, prefetch, limits, stats, shutdown,
                )
                .await;
                ("transform", result.map_err(anyhow::Error::from))
            });
        }
        let publisher = if roles.publish {
            Some(
                adoport_publish::Publisher::from_settings(settings)
                    .context("publish cannot start")?,
            )
        } else {
            None
        };
        let publish_stats = publisher.as_ref().map(|p| p.stats()).unwrap_or_default();
        if let Some(worker) = publisher {
            let (bus2, shutdown2) = (bus.clone(), shutdown.clone());
            tasks.spawn(async move {
                let result = worker.run(bus2, shutdown2).await;
                ("publish", result.map_err(anyhow::Error::from))
            });
            // Publish owns Port, so it also runs the reconciliation coordinator (one active
            // across replicas: single active consumer on the progress queue).
            let reconciler = adoport_publish::Reconciler::from_settings_with_stats(
                settings,
                versions.clone(),
                publish_stats.port_http().clone(),
            )
            .context("the reconciliation coordinator cannot start")?
            .with_publish_stats(publish_stats.clone());
            resync_summaries = Some(reconciler.summaries());
            reconcile_tracking = Some(reconciler.tracking());
            let (bus, shutdown) = (bus.clone(), shutdown.clone());
            tasks.spawn(async move {
                let result = reconciler.run(bus, shutdown).await;
                ("reconcile", result.map_err(anyhow::Error::from))
            });
        }
        if roles.ingest {
            let versions = versions.clone().context("ingest needs the mapping")?;
            let listener = listener.context("ingest needs a listener")?;
            webhook_address = Some(listener.local_addr()?);
            let leads = Leadership::new();
            leadership = Some(leads.clone());
            let run = IngestRun {
                mapping: versions,
                listener,
                resync_done: Some(done_tx),
                stats: ingest_stats.clone(),
                leadership: leads,
            };
            let (settings, bus, shutdown) = (settings.clone(), bus.clone(), shutdown.clone());
            tasks.spawn(async move {
                let result = adoport_ingest::run(&settings, bus, run, shutdown).await;
                ("ingest", result.map_err(anyhow::Error::from))
            });
        }
        Ok(Pipeline {
            bus,
            transform_stats,
            publish_stats,
            ingest_stats,
            webhook_address,
            resync_summaries,
            reconcile_tracking,
            mapping: versions,
            leadership,
            resync_done,
            tasks,
            shutdown,
            following: false,
        })
    }

    /// Follows the mapping's source (the file, or Port) for every role here: reads it every
    /// `ADOPORT__TRANSFORM__MAPPING_POLL_SECS`, and at once when a resync starts or names a
    /// version this process does not know; a new version is in force once it compiled
    /// completely (a bad one is refused with all its errors, logged, and the running one
    /// stays). Ingest then crawls and subscribes its kinds, transform maps with it and its
    /// write options, publish reconciles with its policy.
    pub fn poll_mapping(&mut self, settings: &Settings) {
        let Some(versions) = self.mapping.clone().filter(|_| !self.following) else {
            return;
        };
        self.following = true;
        let every = Duration::from_secs(settings.pipeline.transform.mapping_poll_secs.max(1));
        let (settings, shutdown) = (settings.clone(), self.shutdown.clone());
        let follower = versions.attach_follower();
        self.tasks.spawn(async move {
            let result = crate::mapping_source::follow(settings, follower, every, shutdown).await;
            ("mapping follower", result)
        });
    }

    /// When ingest runs here in POLLING mode: turns Port's resync requests into resyncs (checked
    /// every `OCEAN__EVENT_LISTENER__INTERVAL` seconds), while this process leads the ingest
    /// replicas.
    pub fn poll_port_resync_requests(&mut self, settings: &Settings) -> anyhow::Result<()> {
        let listener = &settings.ocean.event_listener;
        let Some(leadership) = self.leadership.clone() else {
            return Ok(());
        };
        if !listener.kind.polls_port() {
            return Ok(());
        }
        let port = crate::port_reader::PortReader::new(
            settings,
            "POLLING mode reads Port's resync requests",
        )?;
        let every = Duration::from_secs(listener.interval.max(1));
        let (bus, shutdown) = (self.bus.clone(), self.shutdown.clone());
        self.tasks.spawn(async move {
            leadership
                .each_term(shutdown, |term| {
                    crate::port_triggers::poll_resync_requests(
                        port.clone(),
                        bus.clone(),
                        every,
                        term,
                    )
                })
                .await;
            ("resync request poller", Ok(()))
        });
        Ok(())
    }

    /// Waits for the next finished crawl (announcements older than the last
    /// [`adoport_ingest::resync::DONE_KEPT`] are dropped for a listener that fell behind).
    pub async fn next_resync(&mut self) -> Option<ResyncDone> {
        loop {
            match self.resync_done.recv().await {
                Ok(done) => return Some(done),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "finished crawls not waited for were dropped");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Waits for the reconciliation coordinator's summary of `resync_id` (when publish runs
    /// here; `None` otherwise, or if the coordinator stopped). Callers bound the wait.
    pub async fn resync_summary(&self, resync_id: ResyncId) -> Option<ResyncSummary> {
        let mut summaries = self.resync_summaries.clone()?;
        loop {
            let last = summaries.borrow_and_update().clone();
            if let Some(summary) = last.filter(|s| s.resync_id == resync_id) {
                return Some(summary);
            }
            summaries.changed().await.ok()?;
        }
    }

    /// Raw events transform has settled since the pipeline started (every origin). A caller
    /// waiting for a later crawl reads it first and passes it plus the crawl's events to
    /// [`Pipeline::drained`].
    pub fn raw_events_settled(&self) -> u64 {
        self.transform_stats.events_settled()
    }

    /// Waits until everything a crawl of `raw_events` events produced has been settled by
    /// transform and publish (acked, skipped or dead-lettered). For one-process pipelines.
    /// `raw_events` counts from the pipeline's start: after earlier crawls, add theirs
    /// ([`Pipeline::raw_events_settled`] before the crawl).
    pub async fn drained(&self, raw_events: u64) {
        loop {
            let transform_changed = self.transform_stats.changed();
            tokio::pin!(transform_changed);
            transform_changed.as_mut().enable();
            let published = self.publish_stats.snapshot();
            // Publish settles after transform published, so read transform's figure last.
            if self.transform_stats.events_settled() >= raw_events
                && published.acked + published.dead_lettered
                    >= self.transform_stats.changes_published()
            {
                return;
            }
            tokio::select! {
                _ = &mut transform_changed => {}
                _ = self.publish_stats.wait_until(|now| *now != published) => {}
            }
        }
    }

    /// Waits until a role stops (an error, or shutdown), then stops the others.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let first = self.tasks.join_next().await;
        self.shutdown.cancel();
        let mut result = Ok(());
        if let Some(done) = first {
            result = flatten(done);
        }
        let rest = self.finish().await;
        result.and(rest)
    }

    /// Stops every role: stop intake, finish in-flight work (bounded). The bus stays open: its
    /// owner closes it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.finish().await
    }

    async fn finish(&mut self) -> anyhow::Result<()> {
        let mut result = Ok(());
        let deadline = tokio::time::sleep(Duration::from_secs(30));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => {
                    tracing::warn!("roles did not stop within 30 s; abandoning them (unacked work returns to the broker)");
                    self.tasks.abort_all();
                    break;
                }
                done = self.tasks.join_next() => match done {
                    Some(done) => {
                        if let Err(e) = flatten(done) {
                            result = Err(e);
                        }
                    }
                    None => break,
                },
            }
        }
        result
    }
}

fn flatten(
    done: Result<(&'static str, anyhow::Result<()>), tokio::task::JoinError>,
) -> anyhow::Result<()> {
    match done {
        Ok((_, Ok(()))) => Ok(()),
        Ok((role, Err(e))) => Err(e.context(format!("{role} stopped"))),
        Err(e) => Err(anyhow::anyhow!("a role panicked: {e}")),
    }
}
