//! Reconciliation (DESIGN.md §4): after a resync, delete from Port the entities this
//! integration owns that the resync no longer produced, and report the resync state to Port.
//!
//! The coordinator is the single active consumer of the resync progress queue, so however many
//! publish replicas run, one reconciles. It collects, per resync:
//! - from ingest, the start (`Started`) and the end of the crawl with the raw events published
//!   per kind (`CrawlFinished`);
//! - from transform, per raw event, the entities produced and the items it could not map
//!   (`Progress`; redeliveries are counted once, by raw event id).
//!
//! A resync crawled more than once (a restarted or taken-over crawl) is tallied per crawl
//! attempt (see `reconcile/tally.rs`): it completes on the events of one attempt that
//! finished, never a mix.
//!
//! When every raw event of an attempt is accounted for, every change it produced is confirmed
//! on its partition, but not yet written: the coordinator puts a barrier behind them in every
//! change partition (`reconcile/barrier.rs`) and waits until publish reported, for every
//! partition, that it settled everything before the barrier (`BarrierPassed`). Only then is the
//! resync over: it lists the entities this integration
//! owns that were not updated since the resync started (`datasource-entities`, paged),
//! subtracts the produced set (and, with `createMissingRelatedEntities`, the relation targets
//! of produced entities), and deletes the rest in bulk — unless the crawl or any kind failed,
//! any item failed to map, publish dead-lettered any of its changes, the produced set outgrew
//! its bound, or the share to delete exceeds
//! `entityDeletionThreshold` — the policy of the mapping version the resync was crawled with.
//! Then it reports the resync state (`running`, `completed`, `failed`, `aborted`) with the
//! Python integration's field names.
//!
//! Crash safety: progress is acked on receipt and held only in memory. A coordinator that
//! restarts mid-resync misses part of the progress, so that resync never completes and is
//! given up after `resync_timeout` without deleting anything. A crash mid-deletion leaves some
//! stale entities deleted and some not: every one of them was stale (deletes are idempotent),
//! and the next resync deletes the rest. A newer resync supersedes an older unfinished one.
//!
//! Bounded: open resyncs end (completed, superseded or given up), and the last [`ENDED_KEPT`]
//! ended ones are remembered so that their late messages are ignored rather than reopening them.

mod barrier;
mod tally;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use adoport_shared::bus::{Bus, BusError, Destination, Outgoing, Subscription};
use adoport_shared::config::Settings;
use adoport_shared::mapping_versions::MappingVersions;
use adoport_shared::messages::{
    AttemptId, ResyncBarrier, ResyncControl, ResyncId, SCHEMA_VERSION, decode, encode,
};
use adoport_shared::metrics::{HttpStats, PublishOutcome};
use adoport_shared::port_app_config::PortAppConfig;
use adoport_shared::topology::WorkQueue;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::sync_metrics::{
    DeleteFigures, MetricsIngest, ReconciliationEnd, ResourceFigures, ResourceId, SyncContext,
    reconciliation_event, resource_event, runtime_event,
};
use barrier::{Barrier, Passed};
use tally::{Progress, Reported, Tally};

use crate::client::{
    BULK_DELETE_MAX, COMPATIBLE_INTEGRATION_VERSION, INTEGRATION_TYPE, PortClient,
    exporter_user_agent,
};
use crate::error::PublishError;
use crate::retry::{Next, RetryPolicy, classify_error};
use crate::stats::{PublishStats, ResyncCounts};

/// What the mapping's root flags say about deleting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReconcilePolicy {
    /// `entityDeletionThreshold`: the largest share of owned entities one resync may delete.
    pub deletion_threshold: f64,
    /// `deleteDependentEntities`.
    pub delete_dependents: bool,
    /// `createMissingRelatedEntities`: relation targets of kept entities are kept too (Port
    /// created them for us, so they carry our datasource but are never produced themselves).
    pub keep_relation_targets: bool,
}

impl ReconcilePolicy {
    pub fn from_mapping(mapping: &PortAppConfig) -> Self {
        Self {
            deletion_threshold: mapping.entity_deletion_threshold,
            delete_dependents: mapping.delete_dependent_entities,
            keep_relation_targets: mapping.create_missing_related_entities,
        }
    }
}

/// How the coordinator runs.
#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    /// The integration's identifier (`OCEAN__INTEGRATION__IDENTIFIER`): the resync state goes
    /// to it, and its datasource suffix finds the entities it owns.
    pub integration_identifier: String,
    /// The mapping versions this process follows: a resync is reconciled with the policy of
    /// the version it was crawled with. `None`: no mapping known, so nothing is ever deleted
    /// (the state is still reported).
    pub mapping: Option<MappingVersions>,
    /// How long a resync waits for this process to learn the mapping version it was crawled
    /// with.
    pub mapping_patience: Duration,
    /// Most `(blueprint, identifier)` pairs held across open resyncs (produced sets plus the
    /// owned listing). Past it the resync is not reconciled (fail safe: nothing deleted).
    pub max_tracked: usize,
    /// A resync with no news for this long is given up (nothing deleted).
    pub resync_timeout: Duration,
    /// `OCEAN__SCHEDULED_RESYNC_INTERVAL`, for `nextResync` / `intervalInMinuets`.
    pub interval_minutes: Option<u64>,
    /// `OCEAN__STATUS_HEARTBEAT_INTERVAL_SECONDS`: how often a running resync's sync metrics
    /// heartbeat goes to Port (when the integration record says where).
    pub heartbeat_interval: Duration,
    pub retry: RetryPolicy,
}

impl ReconcileConfig {
    pub fn from_settings(
        settings: &Settings,
        mapping: Option<MappingVersions>,
    ) -> Result<Self, PublishError> {
        let access = settings.port_access()?;
        Ok(Self {
            integration_identifier: access.integration_identifier,
            mapping,
            mapping_patience: Duration::from_secs(20),
            max_tracked: DEFAULT_MAX_TRACKED,
            resync_timeout: Duration::from_secs(6 * 3600),
            interval_minutes: settings.ocean.scheduled_resync_interval.filter(|m| *m > 0),
            // At least 1 (checked at start-up); `interval` panics on zero.
            heartbeat_interval: Duration::from_secs(
                settings.ocean.status_heartbeat_interval_seconds.max(1),
            ),
            // The coordinator gives up on a call after its attempts (the next resync repairs):
            // it must not sit out a Port outage while progress messages queue behind it.
            retry: RetryPolicy {
                retry_window: Duration::ZERO,
                ..RetryPolicy::default()
            },
        })
    }
}

/// Default bound on tracked entity keys, those of every open resync together. They are held
/// as 8-byte fingerprints (`crate::fingerprint::KeySet`), each set in one vector whose
/// capacity doubles: a resync's produced set takes 1 MiB for 80,000 entities (also when
/// several resources or a restarted crawl report them again), and its produced set and
/// relation targets at most
/// [`MAX_TRACKED_BYTES`] at this bound.
pub const DEFAULT_MAX_TRACKED: usize = 1_000_000;

/// The most one resync's produced set and relation targets take at [`DEFAULT_MAX_TRACKED`]
/// keys: 16 MiB, two vectors of 2²⁰ fingerprints (checked by a test that gets there). A set
/// doubles from `c` fingerprints only when it holds `c` (it is full) of which more than
/// `3c / 4` are distinct, and the bound counts what the sets hold, so neither grows past 2²⁰
/// (the first power of two over 1,000,000); both get there if each, full at 2¹⁹, held over
/// 3 · 2¹⁷ distinct keys (the rest reported again). 1,000,000 keys reported once take at most
/// 12 MiB (2²⁰ and 2¹⁹). A newer resync's start ends the older ones.
pub const MAX_TRACKED_BYTES: usize = 16 << 20;

/// Resyncs remembered as ended, so that their late or redelivered messages are recognised
/// (and ignored) instead of opening a resync that never completes.
pub const ENDED_KEPT: usize = 64;

/// What the coordinator holds now (for `/metrics` and the long-running tests: it must not
/// grow with the number of resyncs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tracking {
    /// Resyncs started and not ended yet.
    pub open_resyncs: usize,
    /// Entity keys held for them (a key reported again counts until its set is compacted).
    pub tracked_keys: usize,
    /// Ended resyncs remembered (at most [`ENDED_KEPT`]).
    pub ended_remembered: usize,
}

/// How a resync ended, as the coordinator decided.
#[derive(Debug, Clone, PartialEq)]
pub enum ResyncOutcome {
    /// Reconciled: `deleted` stale entities removed.
    Completed { resync_id: ResyncId, deleted: usize },
    /// Complete, but deletion was skipped (the state is still `completed`), e.g. the share to
    /// delete exceeded the threshold.
    DeletionRefused { resync_id: ResyncId, reason: String },
    /// Nothing deleted because the resync is incomplete (reported `failed`).
    Failed { resync_id: ResyncId, reason: String },
    /// A newer resync started before this one was reconciled (reported `aborted`).
    Superseded { resync_id: ResyncId },
}

/// One mapping resource's figures for a resync, as the coordinator saw them (Ocean reports a
/// resync per resource: `{kind}-{index}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceSummary {
    /// The resource's kind.
    pub kind: String,
    /// Its index in the mapping's `resources`.
    pub index: u32,
    /// Its `port.entity.mappings.blueprint`, as the mapping writes it (empty for a resource
    /// the coordinator knows only from the figures).
    pub blueprint: String,
    /// Raw items the crawl published for it (its crawl unit's, shared with the resources of
    /// the same selector).
    pub items_crawled: u64,
    /// Entity upserts transform produced from them with this resource.
    pub entities_produced: u64,
    /// Items this resource could not map.
    pub failed_items: u64,
    /// Why its crawl failed, if it did.
    pub crawl_failure: Option<String>,
    /// What this process's publish did with the resource's changes of the resync: upserted,
    /// deleted, skipped (stale, unchanged or not owned), dead-lettered. Other publish replicas
    /// count their own share.
    pub upserted: u64,
    pub deleted: u64,
    pub skipped: u64,
    pub dead_lettered: u64,
}

/// A kind's figures: the sum of its resources'.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindSummary {
    pub items_crawled: u64,
    pub entities_produced: u64,
    pub failed_items: u64,
    pub upserted: u64,
    pub skipped: u64,
    pub dead_lettered: u64,
}

/// A resync as the coordinator ended it: per mapping resource what was crawled, produced and
/// written, and what was deleted. Logged at the end of every resync (one line per resource
/// and a summary line).
#[derive(Debug, Clone, PartialEq)]
pub struct ResyncSummary {
    pub resync_id: ResyncId,
    /// `completed`, `deletion_refused` or `failed`.
    pub status: &'static str,
    /// One per resource of the mapping the resync was crawled with, in its order.
    pub resources: Vec<ResourceSummary>,
    /// Stale entities deleted (0 unless `completed`).
    pub deleted: usize,
    /// Changes of the resync publish dead-lettered (Port refused them), over every partition
    /// and publish replica, as the partition barriers reported. More than 0 forbids deletion.
    pub changes_dead_lettered: u64,
    /// From the resync's start to the end of its reconciliation.
    pub seconds: f64,
}

impl From<&ResourceSummary> for ResourceFigures {
    fn from(resource: &ResourceSummary) -> Self {
        Self {
            extracted: resource.items_crawled,
            transformed: resource.entities_produced,
            transform_failed: resource.failed_items,
            loaded: resource.upserted,
            load_failed: resource.dead_lettered,
            skipped: resource.skipped,
            crawl_failed: resource.crawl_failure.is_some(),
        }
    }
}

impl ResyncSummary {
    /// The resource at `index` of the mapping, if the summary has it.
    pub fn resource(&self, index: u32) -> Option<&ResourceSummary> {
        self.resources.iter().find(|r| r.index == index)
    }

    /// The figures of `kind`: its resources' added up.
    pub fn kind(&self, kind: &str) -> KindSummary {
        let mut sum = KindSummary::default();
        for r in self.resources.iter().filter(|r| r.kind == kind) {
            sum.items_crawled += r.items_crawled;
            sum.entities_produced += r.entities_produced;
            sum.failed_items += r.failed_items;
            sum.upserted += r.upserted;
            sum.skipped += r.skipped;
            sum.dead_lettered += r.dead_lettered;
        }
        sum
    }

    /// Fills in what publish did with the resync's changes (this process's share), per
    /// resource; a resource the summary lacks (a change of a resource no longer in the
    /// mapping) gets a line of its own.
    fn add_publish_counts(&mut self, counts: &ResyncCounts) {
        for (key, counters) in counts {
            let position = match (self.resources.iter())
                .position(|r| r.kind == key.kind && r.index == key.index)
            {
                Some(position) => position,
                None => {
                    self.resources.push(ResourceSummary {
                        kind: key.kind.clone(),
                        index: key.index,
                        ..ResourceSummary::default()
                    });
                    self.resources.len() - 1
                }
            };
            let r = &mut self.resources[position];
            let count = |outcome: PublishOutcome| counters.get(outcome.as_str()).copied();
            r.upserted = count(PublishOutcome::Upserted).unwrap_or(0);
            r.deleted = count(PublishOutcome::Deleted).unwrap_or(0);
            r.skipped = PublishOutcome::ALL
                .into_iter()
                .filter(|o| o.is_skipped())
                .filter_map(count)
                .sum();
            r.dead_lettered = count(PublishOutcome::DeadLettered).unwrap_or(0);
        }
    }

    fn of(
        resync_id: ResyncId,
        tally: &Tally,
        mapping: Option<&PortAppConfig>,
        outcome: &ResyncOutcome,
    ) -> Self {
        let (status, deleted) = match outcome {
            ResyncOutcome::Completed { deleted, .. } => ("completed", *deleted),
            ResyncOutcome::DeletionRefused { .. } => ("deletion_refused", 0),
            ResyncOutcome::Failed { .. } | ResyncOutcome::Superseded { .. } => ("failed", 0),
        };
        let seconds = tally.started_at.map_or(0.0, |started| {
            (Utc::now() - started).num_milliseconds().max(0) as f64 / 1000.0
        });
        Self {
            resync_id,
            status,
            resources: tally.resource_summaries(mapping),
            deleted,
            changes_dead_lettered: tally.changes_dead_lettered(),
            seconds,
        }
    }

    /// One INFO line per resource (`resync resource summary`), then the summary line.
    fn log(&self) {
        for r in &self.resources {
            tracing::info!(
                resync_id = %self.resync_id,
                kind = %r.kind,
                index = r.index,
                blueprint = %r.blueprint,
                items_crawled = r.items_crawled,
                entities_produced = r.entities_produced,
                failed_items = r.failed_items,
                upserted = r.upserted,
                deleted = r.deleted,
                skipped = r.skipped,
                dead_lettered = r.dead_lettered,
                crawl_failure = r.crawl_failure.as_deref().unwrap_or(""),
                "resync resource summary"
            );
        }
        let sum = |f: fn(&ResourceSummary) -> u64| self.resources.iter().map(f).sum::<u64>();
        tracing::info!(
            resync_id = %self.resync_id,
            status = self.status,
            resources = self.resources.len(),
            items_crawled = sum(|r| r.items_crawled),
            entities_produced = sum(|r| r.entities_produced),
            failed_items = sum(|r| r.failed_items),
            upserted = sum(|r| r.upserted),
            skipped = sum(|r| r.skipped),
            dead_lettered = sum(|r| r.dead_lettered),
            changes_dead_lettered = self.changes_dead_lettered,
            deleted = self.deleted,
            seconds = self.seconds,
            "resync summary"
        );
    }
}

/// Sync metrics `PUT`s of one report in flight at once.
const SYNC_METRICS_PUTS_IN_FLIGHT: usize = 16;

/// The reconciliation coordinator.
pub struct Reconciler {
    client: PortClient,
    config: ReconcileConfig,
    outcomes: watch::Sender<Vec<ResyncOutcome>>,
    summary: watch::Sender<Option<ResyncSummary>>,
    tracking: watch::Sender<Tracking>,
    /// The publish worker of this process, to tell in a resync's summary what it did.
    publish: Option<PublishStats>,
    /// Port's metrics ingest URL from the integration record, as last read (at each resync's
    /// start and end, so that a record Port changes is followed; `None`: the record has none,
    /// so no sync metrics are sent).
    metrics_ingest: std::sync::Mutex<Option<MetricsIngest>>,
    /// Whether a heartbeat is on its way: a slow Port gets one at a time, not a pile.
    heartbeat_in_flight: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// The resyncs the coordinator follows: open ones by id, ended ones remembered (bounded) with
/// the crawl attempts they had.
#[derive(Default)]
struct Resyncs {
    open: HashMap<ResyncId, Tally>,
    ended: VecDeque<(ResyncId, Vec<Option<AttemptId>>)>,
}

impl Resyncs {
    fn end(&mut self, resync_id: ResyncId) -> Option<Tally> {
        let tally = self.open.remove(&resync_id);
        self.ended.retain(|(id, _)| *id != resync_id);
        if self.ended.len() == ENDED_KEPT {
            self.ended.pop_front();
        }
        let attempts = tally.as_ref().map(Tally::attempt_ids).unwrap_or_default();
        self.ended.push_back((resync_id, attempts));
        tally
    }

    /// The attempts of `resync_id`, if it ended.
    fn ended(&self, resync_id: ResyncId) -> Option<&[Option<AttemptId>]> {
        self.ended
            .iter()
            .find(|(id, _)| *id == resync_id)
            .map(|(_, attempts)| attempts.as_slice())
    }

    /// A partition passed a resync's barrier. Never opens a resync: a report for one not
    /// followed (superseded, given up, or sent before this coordinator restarted) is late, and
    /// ignored (`None`).
    fn barrier_passed(
        &mut self,
        resync_id: ResyncId,
        barrier_id: uuid::Uuid,
        partition: u16,
        dead_lettered: u64,
    ) -> Option<Passed> {
        self.open
            .get_mut(&resync_id)
            .map(|tally| tally.barrier_passed(barrier_id, partition, dead_lettered))
    }

    fn tracked(&self) -> usize {
        self.open.values().map(Tally::tracked).sum()
    }

    /// Transform's report for `resync_id` (opened if new), within `max_tracked` keys held by
    /// every open resync together. Keys reported again are held until their set is compacted,
    /// so the sets are compacted before the report is found not to fit, when what they hold
    /// uncompacted could make the room it lacks (near the bound, each report after the first
    /// then costs a merge of the few keys since, [`KeySet::compact`], not a sort of them all).
    ///
    /// [`KeySet::compact`]: crate::fingerprint::KeySet::compact
    fn progress(&mut self, resync_id: ResyncId, report: Reported, max_tracked: usize) -> Progress {
        let needed = report.produced.len() + report.related.len();
        let lacking = needed.saturating_sub(max_tracked.saturating_sub(self.tracked()));
        let uncompacted: usize = self.open.values().map(Tally::uncompacted).sum();
        if lacking > 0 && uncompacted >= lacking {
            self.open.values_mut().for_each(Tally::compact);
        }
        let room = max_tracked.saturating_sub(self.tracked());
        self.open
            .entry(resync_id)
            .or_default()
            .progress(report, room)
    }

    fn tracking(&self) -> Tracking {
        Tracking {
            open_resyncs: self.open.len(),
            tracked_keys: self.tracked(),
            ended_remembered: self.ended.len(),
        }
    }
}

/// Outcomes kept for [`Reconciler::outcomes`] watchers.
const OUTCOMES_KEPT: usize = 32;

impl Reconciler {
    pub fn new(client: PortClient, config: ReconcileConfig) -> Self {
        Self {
            client,
            config,
            outcomes: watch::Sender::new(Vec::new()),
            summary: watch::Sender::new(None),
            tracking: watch::Sender::new(Tracking::default()),
            publish: None,
            metrics_ingest: std::sync::Mutex::new(None),
            heartbeat_in_flight: std::sync::Arc::default(),
        }
    }

    /// Reports, in each resync's summary, what this process's publish worker did with the
    /// resync's changes (upserted, skipped, dead-lettered per kind).
    pub fn with_publish_stats(mut self, stats: PublishStats) -> Self {
        self.publish = Some(stats);
        self
    }

    /// The coordinator a deployment runs, with the publish role's Port credentials.
    pub fn from_settings(
        settings: &Settings,
        mapping: Option<MappingVersions>,
    ) -> Result<Self, PublishError> {
        Self::from_settings_with_stats(settings, mapping, HttpStats::default())
    }

    /// Like [`Reconciler::from_settings`], recording its Port requests into `port_http` (the
    /// pipeline passes the publish worker's, so `/metrics` counts every Port request).
    pub fn from_settings_with_stats(
        settings: &Settings,
        mapping: Option<MappingVersions>,
        port_http: HttpStats,
    ) -> Result<Self, PublishError> {
        let access = settings.port_access()?;
        let user_agent = exporter_user_agent(
            COMPATIBLE_INTEGRATION_VERSION,
            &access.integration_identifier,
        );
        let client = PortClient::with_http_stats(&access, user_agent, port_http)?;
        Ok(Self::new(
            client,
            ReconcileConfig::from_settings(settings, mapping)?,
        ))
    }

    /// The latest outcomes (newest last, at most 32); watch it before [`Reconciler::run`].
    pub fn outcomes(&self) -> watch::Receiver<Vec<ResyncOutcome>> {
        self.outcomes.subscribe()
    }

    /// The summary of the last resync reconciled (or given up as incomplete once all its
    /// events were in); watch it before [`Reconciler::run`].
    pub fn summaries(&self) -> watch::Receiver<Option<ResyncSummary>> {
        self.summary.subscribe()
    }

    /// What the coordinator holds, updated after every message.
    pub fn tracking(&self) -> watch::Receiver<Tracking> {
        self.tracking.subscribe()
    }

    /// Consumes the resync progress queue until `shutdown`.
    pub async fn run(self, bus: Bus, shutdown: CancellationToken) -> Result<(), PublishError> {
        let subscription = bus.subscribe(WorkQueue::ResyncProgress, 256).await?;
        tracing::info!(
            deletes = self.config.mapping.is_some(),
            partitions = bus.topology().partitions,
            "reconciliation coordinator started"
        );
        self.consume(subscription, bus, shutdown).await
    }

    async fn consume(
        self,
        mut subscription: Subscription,
        bus: Bus,
        shutdown: CancellationToken,
    ) -> Result<(), PublishError> {
        let mut resyncs = Resyncs::default();
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        let mut heartbeat = tokio::time::interval(self.config.heartbeat_interval);
        loop {
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = heartbeat.tick() => {
                    self.heartbeat(&resyncs);
                    continue;
                }
                _ = tick.tick() => {
                    self.expire(&mut resyncs).await;
                    log_waiting(&resyncs);
                    self.tracking.send_replace(resyncs.tracking());
                    continue;
                }
                delivery = subscription.next() => match delivery {
                    Some(delivery) => delivery,
                    None => return Ok(()),
                },
            };
            let message: ResyncControl = match decode(&delivery.body) {
                Ok(message) => message,
                Err(e) => {
                    let reason = format!("the reconciliation coordinator cannot read this: {e}");
                    tracing::error!(reason = %reason, "dead-lettering a resync control message");
                    if let Err(e) = delivery.dead_letter(&reason).await {
                        tracing::warn!(error = %e, "could not dead-letter a resync control message");
                    }
                    continue;
                }
            };
            // Acked on receipt: the state lives in memory (see the module doc on crashes).
            if let Err(e) = delivery.ack().await {
                tracing::warn!(error = %e, "could not ack a resync control message");
            }
            if let ResyncControl::Examples { kind, items, .. } = message {
                self.send_examples(&kind, &items).await;
                continue;
            }
            let resync_id = message.resync_id();
            self.absorb(&mut resyncs, message).await;
            if let Some(tally) = resyncs.open.get_mut(&resync_id)
                && tally.barrier.is_none()
                && tally.complete()
            {
                send_barriers(&bus, resync_id, tally);
            }
            let settled = resyncs.open.get(&resync_id).is_some_and(Tally::settled);
            if settled && let Some(tally) = resyncs.end(resync_id) {
                self.tracking.send_replace(resyncs.tracking());
                let outcome = tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    outcome = self.reconcile(resync_id, tally, &shutdown) => outcome,
                };
                self.record(outcome);
            }
            self.tracking.send_replace(resyncs.tracking());
        }
    }

    async fn absorb(&self, resyncs: &mut Resyncs, message: ResyncControl) {
        let resync_id = message.resync_id();
        let ended_attempts = resyncs.ended(resync_id).map(<[_]>::to_vec);
        match message {
            ResyncControl::Started { attempt, .. }
                if ended_attempts
                    .as_ref()
                    .is_some_and(|attempts| attempts.contains(&attempt)) =>
            {
                tracing::debug!(resync_id = %resync_id, "a repeated start of an ended resync ignored");
            }
            ResyncControl::Started {
                started_at,
                attempt,
                mapping_version,
                ..
            } => {
                if ended_attempts.is_some() {
                    // A request delivered again after its resync ended (ingest restarted before
                    // acking it): the new crawl is a resync of its own.
                    tracing::info!(resync_id = %resync_id, "an ended resync is crawled again; it is reconciled again");
                    resyncs.ended.retain(|(id, _)| *id != resync_id);
                }
                // A newer resync supersedes every older one not reconciled yet.
                let older: Vec<ResyncId> = resyncs
                    .open
                    .iter()
                    .filter(|(id, t)| {
                        **id != resync_id && t.started_at.is_none_or(|s| s < started_at)
                    })
                    .map(|(id, _)| *id)
                    .collect();
                for id in older {
                    if let Some(tally) = resyncs.end(id) {
                        tracing::info!(resync_id = %id, newer = %resync_id, "resync superseded by a newer one before it was reconciled; nothing deleted");
                        self.report_state("aborted", tally.started_at, Some(Utc::now()))
                            .await;
                        self.report_given_up(id, "aborted", &tally).await;
                        self.record(ResyncOutcome::Superseded { resync_id: id });
                    }
                }
                let mapping = self.mapping_of(mapping_version.as_ref());
                let tally = resyncs.open.entry(resync_id).or_default();
                let again = tally.started_at.is_some();
                tally.started(started_at, attempt, mapping_version);
                if again {
                    tracing::info!(resync_id = %resync_id, attempt = ?attempt, "resync crawled again (its crawl was restarted); only the attempt that finishes counts");
                }
                self.report_state("running", tally.started_at, None).await;
                // Every resource of the mapping it is crawled with, syncing, zero counts.
                let resources = Tally::default()
                    .resource_summaries(mapping.as_deref().map(|version| &version.config));
                self.report_sync_metrics(resync_id, true, 0.0, &resources, None)
                    .await;
            }
            _ if ended_attempts.is_some() => {
                tracing::debug!(resync_id = %resync_id, "message of an ended resync ignored");
            }
            ResyncControl::BarrierPassed {
                barrier_id,
                partition,
                dead_lettered,
                ..
            } => {
                let passed =
                    resyncs.barrier_passed(resync_id, barrier_id, partition, dead_lettered);
                tracing::debug!(resync_id = %resync_id, partition, passed = ?passed, "partition barrier reported");
            }
            ResyncControl::CrawlFinished {
                started_at,
                attempt,
                kinds,
                failure,
                ..
            } => {
                resyncs
                    .open
                    .entry(resync_id)
                    .or_default()
                    .crawl_finished(started_at, attempt, kinds, failure);
            }
            // Handled on receipt (see `consume`): examples are not resync bookkeeping.
            ResyncControl::Examples { .. } => {}
            ResyncControl::Progress {
                kind,
                raw_event_id,
                produced,
                related,
                failed_items,
                attempt,
                mapping_version,
                resources,
                per_resource,
                ..
            } => {
                let report = Reported {
                    attempt,
                    kind,
                    raw_event_id,
                    produced,
                    related,
                    failed_items,
                    mapping_version,
                    resources,
                    per_resource,
                };
                if resyncs.progress(resync_id, report, self.config.max_tracked)
                    == Progress::Overflowed
                {
                    tracing::warn!(
                        resync_id = %resync_id,
                        max_tracked = self.config.max_tracked,
                        "resync outgrew the coordinator's bound; it will not delete anything"
                    );
                }
            }
        }
    }

    /// Gives up resyncs with no news for `resync_timeout`.
    async fn expire(&self, resyncs: &mut Resyncs) {
        let timeout = self.config.resync_timeout;
        let stale: Vec<ResyncId> = resyncs
            .open
            .iter()
            .filter(|(_, t)| t.last_news.is_some_and(|at| at.elapsed() > timeout))
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(tally) = resyncs.end(id) {
                let reason = format!(
                    "not every raw event of the resync was reported within {} s (a transform event dead-lettered, or the coordinator restarted mid-resync)",
                    timeout.as_secs()
                );
                tracing::warn!(resync_id = %id, reason = %reason, "resync given up; nothing deleted");
                self.report_state("failed", tally.started_at, Some(Utc::now()))
                    .await;
                self.report_given_up(id, "failed", &tally).await;
                self.record(ResyncOutcome::Failed {
                    resync_id: id,
                    reason,
                });
            }
        }
    }

    fn record(&self, outcome: ResyncOutcome) {
        self.outcomes.send_modify(|all| {
            all.push(outcome);
            if all.len() > OUTCOMES_KEPT {
                all.remove(0);
            }
        });
    }

    /// Decides and deletes for one complete resync (every partition passed its barrier), then
    /// reports its state and logs its summary.
    async fn reconcile(
        &self,
        resync_id: ResyncId,
        mut tally: Tally,
        stop: &CancellationToken,
    ) -> ResyncOutcome {
        // Every key is in: the lookups of the owned entities are binary searches, and the
        // counts are of distinct keys.
        tally.compact();
        self.report_reconciliation_started(resync_id).await;
        let reconciling = std::time::Instant::now();
        let mut deletes = DeleteFigures::default();
        let outcome = self.decide(resync_id, &tally, stop, &mut deletes).await;
        let reconciliation = ReconciliationEnd {
            success: !matches!(outcome, ResyncOutcome::Failed { .. }),
            seconds: reconciling.elapsed().as_secs_f64(),
            deletes,
        };
        let mapping = self.mapping_of(tally.mapping_version());
        let mut summary = ResyncSummary::of(
            resync_id,
            &tally,
            mapping.as_deref().map(|v| &v.config),
            &outcome,
        );
        if let Some(publish) = &self.publish {
            // Every partition passed the resync's barrier: this process's share is settled.
            summary.add_publish_counts(&publish.resync_counts(resync_id));
        }
        summary.log();
        let resync_state = if reconciliation.success {
            "completed"
        } else {
            "failed"
        };
        self.report_sync_metrics(
            resync_id,
            false,
            summary.seconds,
            &summary.resources,
            Some((&reconciliation, resync_state)),
        )
        .await;
        self.summary.send_replace(Some(summary));
        outcome
    }

    /// The mapping version a resync was crawled with (the one in force when it is not known
    /// here, or the resync did not say); `None` without a mapping.
    fn mapping_of(
        &self,
        version: Option<&adoport_shared::messages::MappingVersionId>,
    ) -> Option<std::sync::Arc<adoport_shared::mapping_versions::MappingVersion>> {
        let versions = self.config.mapping.as_ref()?;
        Some(
            version
                .and_then(|id| versions.get(id))
                .unwrap_or_else(|| versions.current()),
        )
    }

    /// Ocean's sync metrics of a resync (`sync_metrics`): one event per mapping resource
    /// with its figures (`running`: every resource syncing) in one `POST …/syncMetrics`,
    /// each event again in its resource's `PUT
    /// …/syncMetrics/resync/{eventId}/kind/{kindIdentifier}` — with Ocean's `__runtime__`
    /// syncing after the `POST` at the start; at the end (`end`: the reconciliation's figures
    /// and the resync state reported) the `__reconciliation__` `PUT` and the `__runtime__`
    /// `POST` after the resources' — then a heartbeat of the resync,
    /// to the integration record's metrics ingest URL. Without one nothing is sent; a failure
    /// is logged, never fatal (as Ocean).
    async fn report_sync_metrics(
        &self,
        resync_id: ResyncId,
        running: bool,
        seconds: f64,
        resources: &[ResourceSummary],
        end: Option<(&ReconciliationEnd, &str)>,
    ) {
        let identifier = &self.config.integration_identifier;
        let ingest = match MetricsIngest::of_integration(&self.client, identifier).await {
            Ok(found) => {
                *self
                    .metrics_ingest
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = found.clone();
                match found {
                    Some(ingest) => ingest,
                    None => return,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read where Port takes the sync metrics");
                return;
            }
        };
        let event_id = resync_id.to_string();
        let context = SyncContext {
            integration_identifier: identifier,
            installation_type: &ingest.installation_type,
            event_id: &event_id,
            running,
            seconds,
        };
        let sync_state = if running { "syncing" } else { "ended" };
        let events: Vec<Value> = (resources.iter())
            .map(|r| {
                let id = ResourceId {
                    kind: &r.kind,
                    index: r.index,
                    blueprint: &r.blueprint,
                };
                resource_event(&context, id, &ResourceFigures::from(r))
            })
            .collect();
        if let Err(e) = self.client.post_sync_metrics(&ingest.url, &events).await {
            tracing::warn!(sync_state, error = %e, "could not report the sync metrics to Port");
        }
        if end.is_none() {
            let runtime = runtime_event(&context, None);
            crate::sync_metrics::post_pseudo_kinds(&self.client, &ingest, &[runtime]).await;
        }
        // Ocean also puts each resource's event on its own when the resource starts and when it
        // ends; here every resource starts with the resync and ends with its reconciliation.
        // The puts are independent: up to 16 go together (2.2 s for 44 resources one by one
        // at 50 ms), and only the first failure is logged.
        let mut puts = Vec::with_capacity(events.len());
        for event in &events {
            puts.push(self.client.put_kind_sync_metrics(&ingest.url, event));
        }
        let puts: Vec<_> = futures_util::stream::iter(puts)
            .buffered(SYNC_METRICS_PUTS_IN_FLIGHT)
            .collect()
            .await;
        if let Some((event, Err(e))) = (events.iter().zip(puts)).find(|(_, r)| r.is_err()) {
            tracing::warn!(sync_state, kind = %event["kindIdentifier"], error = %e, "could not report a resource's sync metrics to Port");
        }
        if let Some((reconciliation, resync_state)) = end {
            let event = reconciliation_event(&context, Some(reconciliation));
            crate::sync_metrics::put_pseudo_kind(&self.client, &ingest, &event).await;
            let runtime = runtime_event(&context, Some(resync_state));
            crate::sync_metrics::post_pseudo_kinds(&self.client, &ingest, &[runtime]).await;
        }
        if let Err(e) = self
            .client
            .post_metrics_heartbeat(&ingest.url, &event_id)
            .await
        {
            tracing::warn!(error = %e, "could not send the sync metrics heartbeat to Port");
        }
    }

    /// Where the sync metrics go, as read at the resync's start (`None`: nowhere).
    fn known_metrics_ingest(&self) -> Option<MetricsIngest> {
        self.metrics_ingest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Ocean's `__reconciliation__` event, syncing: every resource's changes are written and
    /// the reconciliation starts (`sync_metrics`).
    async fn report_reconciliation_started(&self, resync_id: ResyncId) {
        let Some(ingest) = self.known_metrics_ingest() else {
            return;
        };
        let event_id = resync_id.to_string();
        let context = self.metrics_context(&ingest, &event_id, 0.0);
        let event = reconciliation_event(&context, None);
        crate::sync_metrics::post_pseudo_kinds(&self.client, &ingest, &[event]).await;
    }

    /// A resync ended without a reconciliation (given up, or superseded): as Ocean when a
    /// resync stops, its `__reconciliation__` aborted and its `__runtime__` in the state
    /// reported (`sync_metrics`).
    async fn report_given_up(&self, resync_id: ResyncId, state: &str, tally: &Tally) {
        let Some(ingest) = self.known_metrics_ingest() else {
            return;
        };
        let event_id = resync_id.to_string();
        let seconds = tally.started_at.map_or(0.0, |started| {
            (Utc::now() - started).num_milliseconds().max(0) as f64 / 1000.0
        });
        let context = self.metrics_context(&ingest, &event_id, seconds);
        let mut reconciliation = reconciliation_event(&context, None);
        reconciliation["syncState"] = json!("aborted");
        crate::sync_metrics::post_pseudo_kinds(&self.client, &ingest, &[reconciliation]).await;
        let runtime = runtime_event(&context, Some(state));
        crate::sync_metrics::post_pseudo_kinds(&self.client, &ingest, &[runtime]).await;
    }

    fn metrics_context<'a>(
        &'a self,
        ingest: &'a MetricsIngest,
        event_id: &'a str,
        seconds: f64,
    ) -> SyncContext<'a> {
        SyncContext {
            integration_identifier: &self.config.integration_identifier,
            installation_type: &ingest.installation_type,
            event_id,
            running: false,
            seconds,
        }
    }

    /// The sync metrics heartbeat of the newest running resync, as Ocean sends it every
    /// `status_heartbeat_interval_seconds` while a resync runs; sent from a task of its own so
    /// that a slow Port does not hold the coordinator. Only once the ingest URL was read (at
    /// the resync's start).
    fn heartbeat(&self, resyncs: &Resyncs) {
        let Some(ingest) = self
            .metrics_ingest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        else {
            return;
        };
        let Some((resync_id, _)) = resyncs
            .open
            .iter()
            .filter_map(|(id, tally)| tally.started_at.map(|at| (*id, at)))
            .max_by_key(|(_, at)| *at)
        else {
            return;
        };
        let in_flight = self.heartbeat_in_flight.clone();
        if in_flight.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let client = self.client.clone();
        tokio::spawn(async move {
            let event_id = resync_id.to_string();
            if let Err(e) = client.post_metrics_heartbeat(&ingest.url, &event_id).await {
                tracing::warn!(error = %e, "could not send the sync metrics heartbeat to Port");
            }
            in_flight.store(false, std::sync::atomic::Ordering::Release);
        });
    }

    async fn decide(
        &self,
        resync_id: ResyncId,
        tally: &Tally,
        stop: &CancellationToken,
        deletes: &mut DeleteFigures,
    ) -> ResyncOutcome {
        let started_at = tally.started_at.unwrap_or_else(Utc::now);
        if let Some(reason) = tally.incomplete_reason() {
            tracing::warn!(resync_id = %resync_id, reason = %reason, "resync incomplete; no entity is deleted");
            self.report_state("failed", Some(started_at), Some(Utc::now()))
                .await;
            return ResyncOutcome::Failed { resync_id, reason };
        }
        let outcome = match self
            .delete_stale(resync_id, started_at, tally, stop, deletes)
            .await
        {
            Ok(outcome) => outcome,
            Err(e) => {
                let reason = format!("reconciliation stopped: {e}");
                tracing::error!(resync_id = %resync_id, reason = %reason, "reconciliation failed; stale entities stay until the next resync");
                ResyncOutcome::Failed { resync_id, reason }
            }
        };
        let status = match outcome {
            ResyncOutcome::Failed { .. } => "failed",
            _ => "completed",
        };
        self.report_state(status, Some(started_at), Some(Utc::now()))
            .await;
        outcome
    }

    async fn delete_stale(
        &self,
        resync_id: ResyncId,
        started_at: DateTime<Utc>,
        tally: &Tally,
        stop: &CancellationToken,
        deletes: &mut DeleteFigures,
    ) -> Result<ResyncOutcome, PublishError> {
        let policy = match self.policy_for(tally).await {
            Ok(policy) => policy,
            Err(reason) => return Ok(ResyncOutcome::DeletionRefused { resync_id, reason }),
        };
        let prefix = format!("port-ocean/{INTEGRATION_TYPE}/");
        let suffix = format!("/{}/exporter", self.config.integration_identifier);
        let budget = self.config.max_tracked.saturating_sub(tally.tracked());
        let mut listed = 0usize;
        let mut stale: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut to_delete = 0usize;
        let mut from: Option<String> = None;
        loop {
            let page = self
                .with_retries("listing owned entities", stop, || {
                    self.client
                        .owned_entities(&prefix, &suffix, started_at, from.as_deref())
                })
                .await?;
            for (blueprint, identifier) in page.entities {
                listed += 1;
                if listed > budget {
                    return Ok(ResyncOutcome::Failed {
                        resync_id,
                        reason: format!(
                            "Port lists more owned entities than the coordinator tracks ({}); nothing deleted",
                            self.config.max_tracked
                        ),
                    });
                }
                let key = (blueprint, identifier);
                if tally.produced.contains(&[&key.0, &key.1])
                    || (policy.keep_relation_targets && tally.related.contains(&[&key.1]))
                {
                    continue;
                }
                to_delete += 1;
                stale.entry(key.0).or_default().push(key.1);
            }
            match page.next {
                Some(next) if from.as_deref() != Some(next.as_str()) => from = Some(next),
                _ => break,
            }
        }
        let kept = listed - to_delete;
        // Owned in Port: what the resync wrote (updated since it started) plus what it listed.
        let owned = tally.produced.len() + kept + to_delete;
        let share = if owned == 0 {
            0.0
        } else {
            to_delete as f64 / owned as f64
        };
        if to_delete > 0 && share > policy.deletion_threshold {
            let reason = format!(
                "deleting {to_delete} of {owned} owned entities ({:.0} %) exceeds entityDeletionThreshold {}; nothing deleted (raise the threshold in the mapping if this is intended)",
                share * 100.0,
                policy.deletion_threshold
            );
            tracing::warn!(resync_id = %resync_id, reason = %reason, "mass deletion refused");
            return Ok(ResyncOutcome::DeletionRefused { resync_id, reason });
        }
        deletes.reached = true;
        let deleting = std::time::Instant::now();
        let mut deleted = 0usize;
        let mut asked = 0usize;
        for (blueprint, identifiers) in &stale {
            for chunk in identifiers.chunks(BULK_DELETE_MAX) {
                let gone = self
                    .with_retries("bulk delete", stop, || {
                        self.client
                            .bulk_delete(blueprint, chunk, policy.delete_dependents)
                    })
                    .await;
                // The sync metrics' delete figures: what Port deleted, and what it did not
                // of what it was asked (all the rest when the reconciliation stops here).
                let done = gone.as_ref().map_or(0, Vec::len);
                deleted += done;
                asked += if gone.is_ok() {
                    chunk.len()
                } else {
                    to_delete - asked
                };
                deletes.deleted = deleted as u64;
                deletes.failed = (asked - deleted) as u64;
                deletes.seconds = Some(deleting.elapsed().as_secs_f64());
                gone?;
            }
        }
        tracing::info!(
            resync_id = %resync_id,
            listed,
            deleted,
            produced_set_bytes = tally.tracked_bytes(),
            "reconciliation deleted the entities the resync no longer produced"
        );
        Ok(ResyncOutcome::Completed { resync_id, deleted })
    }

    /// The deletion policy of the mapping version the resync was crawled with (`Err`: why
    /// nothing may be deleted).
    async fn policy_for(&self, tally: &Tally) -> Result<ReconcilePolicy, String> {
        let Some(versions) = &self.config.mapping else {
            return Err("the publish role has no mapping, so it does not delete".into());
        };
        let version = match tally.mapping_version() {
            None => versions.current(),
            Some(id) => versions
                .resolve(id, self.config.mapping_patience)
                .await
                .ok_or_else(|| {
                    format!(
                        "the mapping version {id} the resync was crawled with is no longer in the mapping's source, so its deletion policy is unknown; nothing deleted (the next resync reconciles)"
                    )
                })?,
        };
        Ok(ReconcilePolicy::from_mapping(&version.config))
    }

    /// Runs a Port call with the retry policy (bounded attempts, honours wait hints) in the
    /// retry driver: a wait ends at once when `stop` is cancelled, with the last error.
    async fn with_retries<T, F, Fut>(
        &self,
        what: &str,
        stop: &CancellationToken,
        call: F,
    ) -> Result<T, PublishError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, PublishError>>,
    {
        let mut schedule = self.config.retry.schedule();
        loop {
            let error = match call().await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            let decision = classify_error(&error);
            if !decision.is_retryable() {
                return Err(error);
            }
            let next = schedule
                .wait_next(&decision, stop, |delay, _| {
                    tracing::warn!(operation = what, error = %error, delay_ms = delay.as_millis() as u64, "reconciliation call failed; retrying");
                })
                .await;
            if next != Next::Again {
                return Err(error);
            }
        }
    }

    /// `PATCH /v1/integration/{id}/resync-state`; a failure is logged, never fatal.
    /// Port's raw data examples of a kind (masked by ingest). A failure only costs the
    /// mapping editor its preview, so it is logged, not retried.
    async fn send_examples(&self, kind: &str, items: &[Value]) {
        match self
            .client
            .send_examples(&self.config.integration_identifier, kind, items)
            .await
        {
            Ok(()) => tracing::debug!(kind, count = items.len(), "raw data examples sent to Port"),
            Err(e) => {
                tracing::warn!(kind, error = %e, "could not send raw data examples to Port")
            }
        }
    }

    async fn report_state(
        &self,
        status: &str,
        started_at: Option<DateTime<Utc>>,
        ended_at: Option<DateTime<Utc>>,
    ) {
        let state = resync_state(status, started_at, ended_at, self.config.interval_minutes);
        if let Err(e) = self
            .client
            .report_resync_state(&self.config.integration_identifier, &state)
            .await
        {
            tracing::warn!(status, error = %e, "could not report the resync state to Port");
        }
    }
}

/// Every raw event of `tally`'s complete attempt is reported, so every change it produced is
/// confirmed on its partition: puts a barrier behind them in every partition. Sent from a task
/// of its own (a full partition on the in-process bus must not stop the coordinator from
/// reading the progress that would empty it).
fn send_barriers(bus: &Bus, resync_id: ResyncId, tally: &mut Tally) {
    let partitions = bus.topology().partitions;
    let barrier = Barrier::new(partitions);
    let body = encode(&ResyncBarrier {
        v: SCHEMA_VERSION,
        resync_id,
        attempt: tally.complete_attempt_id(),
        barrier_id: barrier.id,
    });
    let messages = (0..partitions)
        .map(|partition| Outgoing::new(Destination::Change { partition }, body.clone()))
        .collect();
    tracing::info!(
        resync_id = %resync_id,
        partitions,
        "every change of the resync is produced; waiting for publish to settle them on every partition"
    );
    tally.barrier = Some(barrier);
    let bus = bus.clone();
    tokio::spawn(async move {
        match bus.publish_all(messages).await {
            Ok(()) => {}
            // The process is stopping, as asked: not an error to act on.
            Err(BusError::ShuttingDown) => {
                tracing::info!(resync_id = %resync_id, "shutting down before the resync's barriers were sent; this process does not complete the resync (nothing deleted)");
            }
            Err(e) => {
                tracing::error!(resync_id = %resync_id, error = %e, "could not put the resync's barriers on the change partitions; the resync will not complete (it is given up after the resync timeout, nothing deleted)");
            }
        }
    });
}

/// Logs, for every resync waiting on its barriers, the partitions that have not reported.
fn log_waiting(resyncs: &Resyncs) {
    for (resync_id, tally) in &resyncs.open {
        if let Some(barrier) = &tally.barrier
            && !barrier.all_passed()
        {
            let waiting = barrier.waiting();
            tracing::info!(
                resync_id = %resync_id,
                waiting_seconds = barrier.sent_at.elapsed().as_secs(),
                partitions = barrier.partitions(),
                waiting_for = ?waiting,
                "resync waits for publish to settle its changes on these partitions (no publish replica consumes them, or one is still writing)"
            );
        }
    }
}

/// The resync-state body, with the Python integration's field names (the misspelled
/// `intervalInMinuets` is the real key).
pub fn resync_state(
    status: &str,
    started_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    interval_minutes: Option<u64>,
) -> Value {
    let iso = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let next =
        match (ended_at.or(started_at), interval_minutes) {
            (Some(from), Some(minutes)) => Some(iso(from
                + chrono::Duration::minutes(i64::try_from(minutes).unwrap_or(i64::MAX / 60_000)))),
            _ => None,
        };
    json!({
        "status": status,
        "lastResyncStart": started_at.map(iso),
        "lastResyncEnd": ended_at.map(iso),
        "nextResync": next,
        "intervalInMinuets": interval_minutes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use adoport_shared::messages::{KindCrawl, ResourceProgress};
    use uuid::Uuid;

    #[test]
    fn the_summary_carries_per_resource_figures_and_deletions() {
        let resync_id = ResyncId::new();
        let mut tally = Tally::default();
        let started = Utc::now() - chrono::Duration::seconds(3);
        tally.crawl_finished(
            started,
            None,
            [
                (
                    "project".to_string(),
                    KindCrawl {
                        events: 1,
                        items: 2,
                        failure: None,
                    },
                ),
                (
                    "repository".to_string(),
                    KindCrawl {
                        events: 1,
                        items: 5,
                        failure: Some("HTTP 500".into()),
                    },
                ),
            ]
            .into(),
            None,
        );
        let reported = |kind: &str, produced: usize, failed_items: u64| Reported {
            attempt: None,
            kind: kind.into(),
            raw_event_id: Uuid::new_v4(),
            produced: (0..produced)
                .map(|n| ("b".to_string(), format!("{kind}-{n}")))
                .collect(),
            related: Vec::new(),
            failed_items,
            mapping_version: None,
            resources: None,
            per_resource: vec![ResourceProgress {
                resource: u32::from(kind == "repository"),
                items: 1,
                produced: produced as u64,
                failed_items,
            }],
        };
        tally.progress(reported("project", 2, 0), usize::MAX);
        tally.progress(reported("repository", 4, 1), usize::MAX);
        let outcome = ResyncOutcome::Completed {
            resync_id,
            deleted: 3,
        };
        let mapping = PortAppConfig::from_json_value(json!({"resources": [
            {"kind": "project", "selector": {"query": "true"},
             "port": {"entity": {"mappings": {"identifier": ".id", "blueprint": "\"p\""}}}},
            {"kind": "repository", "selector": {"query": "true"},
             "port": {"entity": {"mappings": {"identifier": ".id", "blueprint": "\"r\""}}}},
        ]}))
        .expect("mapping");
        let mut summary = ResyncSummary::of(resync_id, &tally, Some(&mapping), &outcome);
        assert_eq!((summary.status, summary.deleted), ("completed", 3));
        assert!(summary.seconds >= 3.0, "{summary:?}");
        assert_eq!(
            summary.resources[0],
            ResourceSummary {
                kind: "project".into(),
                index: 0,
                blueprint: "\"p\"".into(),
                items_crawled: 2,
                entities_produced: 2,
                ..ResourceSummary::default()
            }
        );
        assert_eq!(
            summary.resources[1],
            ResourceSummary {
                kind: "repository".into(),
                index: 1,
                blueprint: "\"r\"".into(),
                items_crawled: 5,
                entities_produced: 4,
                failed_items: 1,
                crawl_failure: Some("HTTP 500".into()),
                ..ResourceSummary::default()
            }
        );
        // Publish's counts go to their resource.
        let key = crate::stats::ResourceKey {
            kind: "repository".into(),
            index: 1,
        };
        let counts: ResyncCounts =
            [(key, [("upserted", 3), ("skipped_unchanged", 1)].into())].into();
        summary.add_publish_counts(&counts);
        let repository = summary.resource(1).expect("resource 1");
        assert_eq!((repository.upserted, repository.skipped), (3, 1));
        assert_eq!(summary.kind("repository").upserted, 3);
        assert_eq!(summary.kind("project").upserted, 0);
        let failed = ResyncOutcome::Failed {
            resync_id,
            reason: "x".into(),
        };
        let summary = ResyncSummary::of(resync_id, &tally, None, &failed);
        assert_eq!((summary.status, summary.deleted), ("failed", 0));
    }

    #[test]
    fn ended_resyncs_are_remembered_with_their_attempts_and_bounded() {
        let mut resyncs = Resyncs::default();
        let first = ResyncId::new();
        let attempt = Some(AttemptId::new());
        resyncs
            .open
            .entry(first)
            .or_default()
            .started(Utc::now(), attempt, None);
        assert!(resyncs.end(first).is_some());
        assert_eq!(resyncs.ended(first), Some([attempt].as_slice()));
        assert_eq!(resyncs.tracking().open_resyncs, 0);
        for _ in 0..(ENDED_KEPT * 3) {
            let id = ResyncId::new();
            resyncs.open.entry(id).or_default();
            resyncs.end(id);
        }
        assert_eq!(resyncs.tracking().ended_remembered, ENDED_KEPT);
        assert_eq!(resyncs.ended(first), None, "the oldest is forgotten");
    }

    /// A tally whose one attempt finished a crawl of one event and heard of it.
    fn complete_tally() -> Tally {
        let mut tally = Tally::default();
        tally.started(Utc::now(), None, None);
        tally.crawl_finished(
            Utc::now(),
            None,
            [(
                "project".to_string(),
                KindCrawl {
                    events: 1,
                    items: 1,
                    failure: None,
                },
            )]
            .into(),
            None,
        );
        tally.progress(
            Reported {
                attempt: None,
                kind: "project".into(),
                raw_event_id: Uuid::new_v4(),
                produced: vec![("b".into(), "p".into())],
                related: Vec::new(),
                failed_items: 0,
                mapping_version: None,
                resources: None,
                per_resource: Vec::new(),
            },
            usize::MAX,
        );
        assert!(tally.complete());
        tally
    }

    /// One progress report of `produced` keys (blueprint `b`) and relation targets `related`.
    fn keys_report(produced: impl Iterator<Item = usize>, related: &[usize]) -> Reported {
        Reported {
            attempt: None,
            kind: "repository".into(),
            raw_event_id: Uuid::new_v4(),
            produced: produced.map(|i| ("b".into(), format!("r{i}"))).collect(),
            related: related.iter().map(|i| format!("p{i}")).collect(),
            failed_items: 0,
            mapping_version: None,
            resources: None,
            per_resource: Vec::new(),
        }
    }

    #[test]
    fn keys_reported_again_do_not_make_resyncs_overflow_their_bound() {
        let max_tracked = 1_000;
        let mut resyncs = Resyncs::default();
        let (older, newer) = (ResyncId::new(), ResyncId::new());
        let targets: Vec<usize> = (0..100).collect();
        for _ in 0..4 {
            let report = keys_report(0..200, &[]);
            assert_eq!(
                resyncs.progress(older, report, max_tracked),
                Progress::Counted
            );
        }
        for _ in 0..10 {
            let report = keys_report(0..300, &targets);
            assert_eq!(
                resyncs.progress(newer, report, max_tracked),
                Progress::Counted,
                "{} keys held",
                resyncs.tracked()
            );
        }
        // 600 distinct keys: 400 fresh ones fit exactly, one more does not.
        let report = keys_report(300..700, &[]);
        assert_eq!(
            resyncs.progress(newer, report, max_tracked),
            Progress::Counted
        );
        resyncs.open.values_mut().for_each(Tally::compact);
        assert_eq!(resyncs.tracked(), max_tracked);
        let report = keys_report(700..701, &[]);
        assert_eq!(
            resyncs.progress(newer, report, max_tracked),
            Progress::Overflowed
        );
    }

    #[test]
    fn sets_are_compacted_for_a_report_only_when_that_could_make_its_room() {
        let max_tracked = 1_000;
        // An older resync holding 200 distinct keys, compacted, then 50 of them again.
        let with_repeats = || {
            let mut resyncs = Resyncs::default();
            let older = ResyncId::new();
            let report = keys_report(0..200, &[]);
            assert_eq!(
                resyncs.progress(older, report, max_tracked),
                Progress::Counted
            );
            resyncs.open.values_mut().for_each(Tally::compact);
            let report = keys_report(0..50, &[]);
            assert_eq!(
                resyncs.progress(older, report, max_tracked),
                Progress::Counted
            );
            assert_eq!(
                (resyncs.tracked(), resyncs.open[&older].uncompacted()),
                (250, 50)
            );
            (resyncs, older)
        };
        // 800 fresh keys lack 50 places, which dropping the repeats makes: compacted, they fit.
        let (mut resyncs, older) = with_repeats();
        let report = keys_report(1_000..1_800, &[]);
        assert_eq!(
            resyncs.progress(ResyncId::new(), report, max_tracked),
            Progress::Counted
        );
        assert_eq!(resyncs.tracked(), max_tracked);
        assert_eq!(resyncs.open[&older].uncompacted(), 0);
        // 900 lack 150: the 50 repeats could not make that room, so nothing is compacted.
        let (mut resyncs, older) = with_repeats();
        let report = keys_report(1_000..1_900, &[]);
        assert_eq!(
            resyncs.progress(ResyncId::new(), report, max_tracked),
            Progress::Overflowed
        );
        assert_eq!(resyncs.open[&older].uncompacted(), 50);
    }

    /// [`MAX_TRACKED_BYTES`] with the real sets: each set gets just over 3 · 2¹⁷ distinct keys
    /// and repeats of them until it doubles to 2²⁰ (its worst), then fresh keys until the bound.
    #[test]
    fn one_resync_at_the_default_bound_takes_at_most_max_tracked_bytes() {
        let mut resyncs = Resyncs::default();
        let id = ResyncId::new();
        let distinct = (3 << 17) + 1;
        let page = 1_000;
        for start in (0..600_000).step_by(page) {
            let report = keys_report((start..start + page).map(|i| i % distinct), &[]);
            assert_eq!(
                resyncs.progress(id, report, DEFAULT_MAX_TRACKED),
                Progress::Counted
            );
        }
        for start in (0..600_000).step_by(page) {
            let related: Vec<usize> = (start..start + page).map(|i| i % distinct).collect();
            let report = keys_report(std::iter::empty(), &related);
            assert_eq!(
                resyncs.progress(id, report, DEFAULT_MAX_TRACKED),
                Progress::Counted
            );
        }
        let tally = &resyncs.open[&id];
        assert_eq!(
            (tally.produced.bytes(), tally.related.bytes()),
            (8 << 20, 8 << 20),
            "each set doubled to 2^20 fingerprints"
        );
        let mut fresh = distinct;
        loop {
            let before = resyncs.tracked();
            let report = keys_report(fresh..fresh + page, &[]);
            fresh += page;
            let progress = resyncs.progress(id, report, DEFAULT_MAX_TRACKED);
            let tally = &resyncs.open[&id];
            assert!(
                tally.tracked_bytes() <= MAX_TRACKED_BYTES,
                "{} bytes for {} keys",
                tally.tracked_bytes(),
                tally.tracked()
            );
            if progress == Progress::Overflowed {
                assert!(before + page > DEFAULT_MAX_TRACKED, "{before} keys held");
                break;
            }
        }
    }

    #[test]
    fn a_complete_resync_is_settled_only_when_every_partition_passed_its_barrier() {
        let mut resyncs = Resyncs::default();
        let id = ResyncId::new();
        resyncs.open.insert(id, complete_tally());
        let tally = resyncs.open.get_mut(&id).expect("open");
        assert!(!tally.settled(), "complete, but no barrier sent yet");
        assert_eq!(
            tally.barrier_passed(Uuid::new_v4(), 0, 0),
            Passed::Foreign,
            "no barrier of this resync is out"
        );
        tally.barrier = Some(Barrier::new(3));
        let barrier_id = tally.barrier.as_ref().expect("barrier").id;
        for partition in [2, 0] {
            assert_eq!(
                resyncs.barrier_passed(id, barrier_id, partition, 0),
                Some(Passed::Counted)
            );
        }
        assert_eq!(
            resyncs.barrier_passed(id, barrier_id, 0, 0),
            Some(Passed::Again),
            "a barrier redelivered after a hand-over reports again"
        );
        assert!(!resyncs.open[&id].settled());
        resyncs.barrier_passed(id, barrier_id, 1, 0);
        assert!(resyncs.open[&id].settled());
        assert_eq!(resyncs.open[&id].incomplete_reason(), None);
    }

    #[test]
    fn dead_lettered_changes_are_summed_and_forbid_deletion_like_failed_items() {
        let id = ResyncId::new();
        let mut tally = complete_tally();
        tally.barrier = Some(Barrier::new(2));
        let barrier_id = tally.barrier.as_ref().expect("barrier").id;
        tally.barrier_passed(barrier_id, 0, 1);
        tally.barrier_passed(barrier_id, 0, 1);
        tally.barrier_passed(barrier_id, 1, 2);
        assert!(tally.settled());
        assert_eq!(
            tally.changes_dead_lettered(),
            3,
            "each partition counted once"
        );
        let reason = tally.incomplete_reason().expect("deletion forbidden");
        assert!(reason.contains("refused 3 change"), "{reason}");
        let outcome = ResyncOutcome::Failed {
            resync_id: id,
            reason,
        };
        let summary = ResyncSummary::of(id, &tally, None, &outcome);
        assert_eq!(summary.changes_dead_lettered, 3);
        assert_eq!(summary.status, "failed");
    }

    #[test]
    fn barrier_reports_of_superseded_or_unknown_resyncs_are_ignored_and_open_nothing() {
        let mut resyncs = Resyncs::default();
        let old = ResyncId::new();
        let mut tally = complete_tally();
        tally.barrier = Some(Barrier::new(1));
        let barrier_id = tally.barrier.as_ref().expect("barrier").id;
        resyncs.open.insert(old, tally);
        // A newer resync superseded it while it waited on its barrier.
        assert!(resyncs.end(old).is_some());
        assert_eq!(resyncs.barrier_passed(old, barrier_id, 0, 0), None);
        assert_eq!(
            resyncs.barrier_passed(ResyncId::new(), Uuid::new_v4(), 0, 0),
            None
        );
        assert_eq!(resyncs.tracking().open_resyncs, 0);
    }

    #[test]
    fn resync_state_uses_the_python_field_names() {
        let start = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
            .expect("date")
            .with_timezone(&Utc);
        let end = start + chrono::Duration::minutes(2);
        let state = resync_state("completed", Some(start), Some(end), Some(60));
        assert_eq!(state["status"], "completed");
        assert_eq!(state["lastResyncStart"], "2025-01-01T00:00:00.000Z");
        assert_eq!(state["lastResyncEnd"], "2025-01-01T00:02:00.000Z");
        assert_eq!(state["nextResync"], "2025-01-01T01:02:00.000Z");
        assert_eq!(state["intervalInMinuets"], 60);
        let running = resync_state("running", Some(start), None, None);
        assert!(running["lastResyncEnd"].is_null() && running["nextResync"].is_null());
    }
}
