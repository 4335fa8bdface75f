//! # adoport-publish
//!
//! Owns every write to Port: it consumes `EntityChange`s from the change partitions, batches
//! upserts into bulk requests (at most 20 entities and 1 MiB each), deletes, retries transient
//! failures with backoff that honours `Retry-After`, never lets an older observation of an
//! entity overwrite a newer one, and acks each change only after Port accepted it — or
//! dead-letters it with Port's answer as the reason. A resync's upserts are first compared, in
//! bulk, with what Port holds now, so that a resync writes exactly what Port lacks or holds
//! differently (and repairs whatever changed there meanwhile); nothing about Port's state is
//! remembered between changes.
//!
//! It must not read Azure DevOps or evaluate mappings (ingest and transform do), and it writes
//! to Port only through [`client::PortClient`].
//!
//! Layout, one job per module:
//! - [`client`]: the HTTP calls to Port (token, bulk upsert, delete, searches) and the
//!   User-Agent that makes Port record our ownership;
//! - [`retry`]: the classifier of Port's answers and the backoff schedule;
//! - [`concurrency`]: the adaptive limit on requests in flight (halved on 429, grown on success);
//! - [`batcher`]: grouping entities into bulk requests, and a resync's upserts into check
//!   groups;
//! - [`ordering`]: the version guard against stale overwrites;
//! - [`compare`]: whether Port already holds what an upsert would write;
//! - [`worker`]: the coordinator that ties them to the bus: intake, ordering, batching, and
//!   taking up or handing over partitions as this replica's share changes;
//! - [`membership`]: the view of the publish replicas and which partitions are whose (pure);
//! - [`sharing`]: the task that heartbeats, keeps the view and tells the worker its share;
//! - `send`: the send tasks — read Port's current state of a resync's upserts, write what
//!   differs or what came live, delete — that settle every delivery;
//! - [`stats`]: counters the worker exposes;
//! - [`reconcile`]: the coordinator that deletes what a resync no longer produced and reports
//!   the resync state;
//! - [`resources`]: the default blueprints and mapping created on first start;
//! - [`log_shipping`]: the process's log lines to Port's log view (the outbox they wait in is
//!   the logging layer's, in `adoport_shared::telemetry`);
//! - [`error`]: [`PublishError`], one variant per case a caller acts on.

pub mod batcher;
pub mod client;
pub mod compare;
pub mod concurrency;
pub mod error;
pub mod fingerprint;
pub mod integration_record;
pub mod log_shipping;
pub mod membership;
pub mod ordering;
pub mod reconcile;
pub mod resources;
pub mod retry;
mod send;
pub mod sharing;
pub mod stats;
pub mod sync_metrics;
pub mod worker;

pub use client::{COMPATIBLE_INTEGRATION_VERSION, PortClient, exporter_user_agent};
pub use error::PublishError;
pub use reconcile::{
    KindSummary, ReconcilePolicy, Reconciler, ResourceSummary, ResyncOutcome, ResyncSummary,
};
pub use sharing::MembershipTiming;
pub use stats::{BatchesSent, PublishStats, StatsSnapshot};
pub use worker::{PublishConfig, Publisher, run};
