//! The health and metrics endpoint every role serves (`ADOPORT__HEALTH__LISTEN`, `:9000`):
//!
//! - `GET /healthz`: the process is alive (200).
//! - `GET /readyz`: "can I take work": 200 when the broker takes messages and the roles run;
//!   503 naming what is not ready otherwise (the broker's problem names it and what failed).
//!   Served from the first second of the process, before the roles start: they may wait for
//!   the broker. An outage of the role's upstream (Azure DevOps for ingest, Port for publish)
//!   does not make a replica unready — webhooks must still be taken and queued, and a rollout
//!   must not stall on Port — it shows as `adoport_upstream_reachable 0`, a WARN line and a line
//!   of the body. Where ingest runs, the body also says whether this replica is the ingest
//!   leader (leader or not, a replica is ready: every replica takes webhooks and crawls).
//! - `GET /metrics`: Prometheus text format, rendered from the stages' own counters
//!   ([`TransformStats`], [`PublishStats`], [`IngestStats`]: totals and per kind, Azure DevOps
//!   and Port requests by status with latency histograms, resync progress and duration) and,
//!   at scrape time, the ready count of the work queues (queue lag) and of the dead-letter
//!   queues.
//!
//! The metric names live here, in one place. No entity ids or item ids are labels: the labels
//! are the stage, the kind (capped, see `adoport_shared::metrics::MAX_KINDS`), an outcome, an
//! HTTP status code and a queue name.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use adoport_ingest::IngestStats;
use adoport_ingest::leader::Leadership;
use adoport_publish::PublishStats;
use adoport_shared::bus::Bus;
use adoport_shared::metrics::{self, HistogramSnapshot, HttpStats, KindCounters, PublishOutcome};
use adoport_shared::topology::{DeadLetterQueue, WorkQueue};
use adoport_transform::worker::TransformStats;

/// How long a scrape waits for a queue count, and a probe for an upstream.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// An upstream that answered is taken as reachable for this long (probes come every few s).
const UPSTREAM_CACHE: Duration = Duration::from_secs(10);

/// An HTTP service a role depends on.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `azure_devops` or `port`.
    pub name: &'static str,
    pub url: String,
}

/// What the last probe of one upstream found.
#[derive(Debug, Clone, Default)]
struct UpstreamProbe {
    /// When it was last probed.
    checked: Option<Instant>,
    /// Why the last probe got no answer; `None` while it answers (or before the first probe).
    failure: Option<String>,
}

/// One upstream as the last probe found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamState {
    pub name: &'static str,
    pub url: String,
    /// Why it did not answer; `None` when it answered HTTP (even 401/404).
    pub failure: Option<String>,
}

fn states_of(upstreams: &[Upstream], probes: &[UpstreamProbe]) -> Vec<UpstreamState> {
    upstreams
        .iter()
        .zip(probes)
        .map(|(upstream, probe)| UpstreamState {
            name: upstream.name,
            url: upstream.url.clone(),
            failure: probe.failure.clone(),
        })
        .collect()
}

/// What the endpoint reports on.
#[derive(Clone)]
pub struct HealthState {
    inner: Arc<Inner>,
}

/// The counters of the stages running in this process.
#[derive(Clone, Default)]
pub struct Stages {
    pub transform: Option<TransformStats>,
    pub publish: Option<PublishStats>,
    pub ingest: Option<IngestStats>,
    /// Whether this process leads the ingest replicas (where ingest runs).
    pub leadership: Option<Leadership>,
}

struct Inner {
    role: &'static str,
    bus: Bus,
    /// Set once the roles run ([`HealthState::attach`]); not ready before.
    stages: OnceLock<Stages>,
    upstreams: Vec<Upstream>,
    work_queues: Vec<WorkQueue>,
    http: reqwest::Client,
    /// What is known of each upstream.
    reachable: Mutex<Vec<UpstreamProbe>>,
    started: Instant,
}

impl HealthState {
    /// For roles that run already: `transform`/`publish` are the counters of the stages
    /// running in this process; `work_queues` the queues whose lag to report.
    pub fn new(
        role: &'static str,
        bus: Bus,
        transform: Option<TransformStats>,
        publish: Option<PublishStats>,
        upstreams: Vec<Upstream>,
        work_queues: Vec<WorkQueue>,
    ) -> Self {
        let state = Self::starting(role, bus, upstreams, work_queues);
        state.attach(Stages {
            transform,
            publish,
            ingest: None,
            leadership: None,
        });
        state
    }

    /// Also reports ingest's counters (Azure DevOps requests, resyncs). Call it right after
    /// [`HealthState::new`], before the state is cloned (a shared state is left as it is).
    pub fn with_ingest(mut self, ingest: Option<IngestStats>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner)
            && let Some(stages) = inner.stages.get_mut()
        {
            stages.ingest = ingest;
        }
        self
    }

    /// Also reports whether this process leads the ingest replicas. Call it as
    /// [`HealthState::with_ingest`].
    pub fn with_leadership(mut self, leadership: Option<Leadership>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner)
            && let Some(stages) = inner.stages.get_mut()
        {
            stages.leadership = leadership;
        }
        self
    }

    /// The line `/readyz` adds about the ingest leadership, where ingest runs.
    pub fn leadership_line(&self) -> Option<String> {
        let stages = self.inner.stages.get()?;
        let leadership = stages.leadership.as_ref()?;
        Some(format!("ingest leader: {}", leadership.describe()))
    }

    /// Before the roles start (they may wait for the broker): serve it at once, and
    /// [`HealthState::attach`] the stages' counters once they run. `work_queues` are the
    /// queues whose lag to report.
    pub fn starting(
        role: &'static str,
        bus: Bus,
        upstreams: Vec<Upstream>,
        work_queues: Vec<WorkQueue>,
    ) -> Self {
        let reachable = Mutex::new(vec![UpstreamProbe::default(); upstreams.len()]);
        Self {
            inner: Arc::new(Inner {
                role,
                bus,
                stages: OnceLock::new(),
                upstreams,
                work_queues,
                http: reqwest::Client::builder()
                    .timeout(PROBE_TIMEOUT)
                    .build()
                    .unwrap_or_default(),
                reachable,
                started: Instant::now(),
            }),
        }
    }

    /// The roles run: report their counters, and readiness no longer waits for them. Only the
    /// first call counts.
    pub fn attach(&self, stages: Stages) {
        let _ = self.inner.stages.set(stages);
    }

    /// What is not ready, or an empty list.
    pub async fn not_ready(&self) -> Vec<String> {
        let inner = &self.inner;
        let mut problems = Vec::new();
        if let Some(problem) = inner.bus.problem() {
            problems.push(format!("broker: {problem}"));
        }
        if inner.stages.get().is_none() {
            problems.push("roles: starting".to_string());
        }
        problems
    }

    /// Whether each upstream answers HTTP at all (any status, even 401/404), probed at most
    /// every [`UPSTREAM_CACHE`] (scrapes probe; readiness reads
    /// [`HealthState::upstreams_as_last_probed`]). Informational: readiness does not depend on
    /// it. A WARN line is logged when an upstream stops answering, an INFO line when it answers
    /// again.
    pub async fn upstreams(&self) -> Vec<UpstreamState> {
        let inner = &self.inner;
        let mut reachable = inner.reachable.lock().await;
        for (upstream, probe) in inner.upstreams.iter().zip(reachable.iter_mut()) {
            if probe
                .checked
                .is_some_and(|at| at.elapsed() < UPSTREAM_CACHE)
            {
                continue;
            }
            probe.checked = Some(Instant::now());
            match inner.http.get(&upstream.url).send().await {
                Ok(_) => {
                    if probe.failure.take().is_some() {
                        tracing::info!(
                            upstream = upstream.name,
                            url = %upstream.url,
                            "upstream answers again"
                        );
                    }
                }
                Err(e) => {
                    if probe.failure.is_none() {
                        tracing::warn!(
                            upstream = upstream.name,
                            url = %upstream.url,
                            error = %e,
                            "upstream is not reachable from this process; work for it waits \
                             and is retried (check the network path, proxy and DNS)"
                        );
                    }
                    probe.failure = Some(e.to_string());
                }
            }
        }
        states_of(&inner.upstreams, &reachable)
    }

    /// What the last probes found, without probing: a readiness probe must answer at once,
    /// even while an upstream black-holes requests. Empty while a probe is in flight.
    pub fn upstreams_as_last_probed(&self) -> Vec<UpstreamState> {
        let inner = &self.inner;
        match inner.reachable.try_lock() {
            Ok(reachable) => states_of(&inner.upstreams, &reachable),
            Err(_) => Vec::new(),
        }
    }

    /// The metrics in Prometheus text format.
    pub async fn render(&self) -> String {
        let inner = &self.inner;
        let mut m = Exposition::default();
        let role = [("role", inner.role)];
        m.gauge("adoport_up", "1 while the process runs.", &role, 1);
        m.gauge(
            "adoport_uptime_seconds",
            "Seconds since the process started.",
            &role,
            inner.started.elapsed().as_secs(),
        );
        m.gauge(
            "adoport_broker_connected",
            "1 when the broker connection is up.",
            &role,
            u64::from(inner.bus.is_connected()),
        );
        for upstream in self.upstreams().await {
            m.gauge(
                "adoport_upstream_reachable",
                "1 when the upstream (azure_devops, port) answers HTTP from this process.",
                &[("upstream", upstream.name)],
                u64::from(upstream.failure.is_none()),
            );
        }
        if let Some(outbox) = adoport_shared::telemetry::port_log_outbox().filter(|o| o.is_open()) {
            for (outcome, value) in [
                ("shipped", outbox.shipped()),
                ("lost", outbox.lost()),
                ("dropped", outbox.dropped()),
            ] {
                m.counter(
                    "adoport_port_log_lines_total",
                    "Log lines for Port's log view by outcome: shipped, lost (a failed shipment), dropped (gave way in a full outbox).",
                    &[("outcome", outcome)],
                    value,
                );
            }
            m.gauge(
                "adoport_port_log_lines_waiting",
                "Log lines waiting to be shipped to Port's log view.",
                &role,
                outbox.len(),
            );
        }
        let stages = inner.stages.get().cloned().unwrap_or_default();
        if let Some(t) = &stages.transform {
            let stage = [("stage", "transform")];
            m.counter(
                "adoport_messages_in_total",
                "Messages a stage settled (acked or dead-lettered).",
                &stage,
                t.events_settled(),
            );
            m.counter(
                "adoport_messages_out_total",
                "Messages a stage published downstream (confirmed).",
                &stage,
                t.changes_published(),
            );
            m.counter(
                "adoport_messages_dead_lettered_total",
                "Messages a stage parked in its dead-letter queue.",
                &stage,
                t.events_dead_lettered(),
            );
            m.counter(
                "adoport_transform_items_total",
                "Raw items mapped.",
                &[],
                t.items(),
            );
            m.counter(
                "adoport_transform_item_problems_total",
                "Items or fields the mapping could not handle.",
                &[],
                t.item_problems(),
            );
            render_transform_kinds(&mut m, t.per_kind());
        }
        if let Some(p) = &stages.publish {
            let s = p.snapshot();
            let stage = [("stage", "publish")];
            m.counter(
                "adoport_messages_in_total",
                "Messages a stage settled (acked or dead-lettered).",
                &stage,
                s.received,
            );
            m.counter(
                "adoport_messages_out_total",
                "Messages a stage published downstream (confirmed).",
                &stage,
                s.acked,
            );
            m.counter(
                "adoport_messages_retried_total",
                "Retries after a transient failure.",
                &stage,
                s.retried,
            );
            m.counter(
                "adoport_messages_dead_lettered_total",
                "Messages a stage parked in its dead-letter queue.",
                &stage,
                s.dead_lettered,
            );
            for (op, n) in [
                ("upserted", s.upserted),
                ("deleted", s.deleted),
                ("skipped_stale", s.skipped_stale),
            ] {
                m.counter(
                    "adoport_port_entities_total",
                    "Entities written to Port, by outcome.",
                    &[("outcome", op)],
                    n,
                );
            }
            m.counter(
                "adoport_port_requests_total",
                "HTTP requests that wrote to Port (retries included).",
                &[],
                s.port_requests,
            );
            m.counter(
                "adoport_port_reads_total",
                "HTTP requests that read entities from Port: a resync's reads of its entities' current state, live deletes' ownership searches (retries included).",
                &[],
                s.port_reads,
            );
            render_publish_kinds(&mut m, p.per_kind());
            render_http(&mut m, "port", p.port_http());
            let share = p.share().snapshot();
            m.gauge(
                metrics::PUBLISH_PARTITIONS,
                "Change partitions this publish replica consumes now (its share among the replicas, or the pinned list).",
                &[],
                share.partitions,
            );
            m.gauge(
                metrics::PUBLISH_MEMBERS,
                "Publish replicas this replica sees, itself included.",
                &[],
                share.members,
            );
            m.counter(
                metrics::PUBLISH_ASSIGNMENT_CHANGES,
                "Changes of this publish replica's share of the change partitions.",
                &[],
                share.changes,
            );
        }
        if let Some(i) = &stages.ingest {
            render_ingest(&mut m, i);
        }
        if let Some(leadership) = &stages.leadership {
            m.gauge(
                "adoport_ingest_leader",
                "1 while this replica is the ingest leader (runs the resync schedule, Port's resync requests, the service-hook subscriptions).",
                &role,
                u64::from(leadership.is_leader()),
            );
        }
        let topology = inner.bus.topology().clone();
        for queue in &inner.work_queues {
            let name = topology.work_queue(*queue);
            if let Ok(Ok(n)) =
                tokio::time::timeout(PROBE_TIMEOUT, inner.bus.ready_count(*queue)).await
            {
                m.gauge(
                    "adoport_queue_ready_messages",
                    "Messages waiting in a work queue (queue lag).",
                    &[("queue", &name)],
                    n,
                );
            }
        }
        if inner.bus.is_broker() {
            for dlq in [
                DeadLetterQueue::Raw,
                DeadLetterQueue::Changes,
                DeadLetterQueue::ResyncRequests,
            ] {
                let name = topology.dead_letter_queue(dlq);
                if let Ok(Ok(n)) =
                    tokio::time::timeout(PROBE_TIMEOUT, inner.bus.dead_letter_count(dlq)).await
                {
                    m.gauge(
                        "adoport_dead_letter_messages",
                        "Messages in a dead-letter queue.",
                        &[("queue", &name)],
                        n,
                    );
                }
            }
        }
        m.finish()
    }
}

/// Per kind, transform's raw events in, changes out, items mapped and items that failed.
fn render_transform_kinds(m: &mut Exposition, per_kind: &KindCounters) {
    for (kind, what, n) in per_kind.snapshot() {
        let labels = [("stage", "transform"), ("kind", kind.as_str())];
        match what {
            "events" => m.counter(
                "adoport_messages_in_by_kind_total",
                "Messages a stage settled, by kind.",
                &labels,
                n,
            ),
            "changes" => m.counter(
                "adoport_messages_out_by_kind_total",
                "Messages a stage published downstream or wrote, by kind.",
                &labels,
                n,
            ),
            "items" => m.counter(
                "adoport_transform_items_by_kind_total",
                "Raw items mapped, by kind.",
                &labels[1..],
                n,
            ),
            "item_failures" => m.counter(
                "adoport_transform_item_failures_by_kind_total",
                "Raw items the mapping could not map (they block deletions), by kind.",
                &labels[1..],
                n,
            ),
            _ => {}
        }
    }
}

/// Per kind, publish's changes in, what became of them, and the dead-lettered ones.
fn render_publish_kinds(m: &mut Exposition, per_kind: &KindCounters) {
    let mut out: std::collections::BTreeMap<String, u64> = Default::default();
    for (kind, what, n) in per_kind.snapshot() {
        let labels = [("stage", "publish"), ("kind", kind.as_str())];
        let Some(outcome) = PublishOutcome::from_label(what) else {
            continue;
        };
        match outcome {
            PublishOutcome::Received => m.counter(
                "adoport_messages_in_by_kind_total",
                "Messages a stage settled, by kind.",
                &labels,
                n,
            ),
            PublishOutcome::DeadLettered => m.counter(
                "adoport_messages_dead_lettered_by_kind_total",
                "Messages a stage parked in its dead-letter queue, by kind.",
                &labels,
                n,
            ),
            outcome => {
                if outcome.is_written() {
                    *out.entry(kind.clone()).or_default() += n;
                }
                m.counter(
                    "adoport_port_entities_by_kind_total",
                    "Changes publish settled, by kind and outcome (upserted, deleted, skipped_stale, skipped_unchanged, skipped_not_owned).",
                    &[("kind", kind.as_str()), ("outcome", outcome.as_str())],
                    n,
                );
            }
        }
    }
    for (kind, n) in out {
        m.counter(
            "adoport_messages_out_by_kind_total",
            "Messages a stage published downstream or wrote, by kind.",
            &[("stage", "publish"), ("kind", kind.as_str())],
            n,
        );
    }
}

/// Requests to an upstream (`azure_devops` or `port`) by status, and their latency.
fn render_http(m: &mut Exposition, upstream: &'static str, http: &HttpStats) {
    let (requests, duration): (&'static str, &'static str) = match upstream {
        "azure_devops" => (
            "adoport_azure_devops_requests_total",
            "adoport_azure_devops_request_duration_seconds",
        ),
        _ => (
            "adoport_port_http_requests_total",
            "adoport_port_request_duration_seconds",
        ),
    };
    for (status, n) in http.by_status() {
        m.counter(
            requests,
            "HTTP requests by status code (transport_error: no answer), retries included.",
            &[("status", status.as_str())],
            n,
        );
    }
    m.histogram(
        duration,
        "Request latency until the answer's head, seconds.",
        &http.latency(),
    );
}

/// Azure DevOps requests and resync progress.
fn render_ingest(m: &mut Exposition, ingest: &IngestStats) {
    use std::sync::atomic::Ordering::Relaxed;
    let r = &ingest.requests;
    render_http(m, "azure_devops", &r.http);
    for (name, help, n) in [
        (
            "adoport_azure_devops_retries_total",
            "Azure DevOps requests retried after a transient failure.",
            r.retried.load(Relaxed),
        ),
        (
            "adoport_azure_devops_throttled_total",
            "Times Azure DevOps asked us to wait (Retry-After).",
            r.throttled.load(Relaxed),
        ),
        (
            "adoport_azure_devops_paced_total",
            "Answers whose rate-limit headers made us slow down.",
            r.paced.load(Relaxed),
        ),
    ] {
        m.counter(name, help, &[], n);
    }
    let s = ingest.resyncs.snapshot();
    m.counter(
        "adoport_resyncs_started_total",
        "Resyncs this process started crawling.",
        &[],
        s.started,
    );
    m.counter(
        "adoport_resyncs_completed_total",
        "Resync crawls that finished with every kind crawled.",
        &[],
        s.completed,
    );
    m.counter(
        "adoport_resyncs_failed_total",
        "Resync crawls that failed, or in which a kind failed.",
        &[],
        s.failed,
    );
    m.gauge(
        "adoport_resync_running",
        "1 while a resync crawls.",
        &[],
        s.running,
    );
    m.gauge(
        "adoport_resync_last_duration_seconds",
        "Duration of the last finished resync crawl.",
        &[],
        s.last_duration_seconds,
    );
    for (kind, n) in &s.items_per_kind {
        m.gauge(
            "adoport_resync_items_crawled",
            "Items crawled per kind by the running resync, or else by the last one.",
            &[("kind", kind.as_str())],
            *n,
        );
    }
}

/// Prometheus text exposition (format 0.0.4): one HELP/TYPE header per family, and every
/// sample of a family grouped under it (whatever order the samples were added in).
#[derive(Default)]
struct Exposition {
    /// Family name and its text (header and samples), in first-declared order.
    families: Vec<(&'static str, String)>,
}

impl Exposition {
    fn sample(
        &mut self,
        kind: &str,
        name: &'static str,
        help: &str,
        labels: &[(&str, &str)],
        value: impl std::fmt::Display,
    ) {
        self.declare(kind, name, help);
        self.line(name, "", labels, value);
    }

    fn declare(&mut self, kind: &str, name: &'static str, help: &str) {
        if !self.families.iter().any(|(n, _)| *n == name) {
            self.families.push((
                name,
                format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"),
            ));
        }
    }

    /// One sample line of family `name` (declared first): `{name}{suffix}{labels} {value}`.
    fn line(
        &mut self,
        name: &'static str,
        suffix: &str,
        labels: &[(&str, &str)],
        value: impl std::fmt::Display,
    ) {
        let Some((_, text)) = self.families.iter_mut().find(|(n, _)| *n == name) else {
            return;
        };
        text.push_str(name);
        text.push_str(suffix);
        if !labels.is_empty() {
            text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                let escaped = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(text, "{k}=\"{escaped}\"");
            }
            text.push('}');
        }
        let _ = writeln!(text, " {value}");
    }

    /// The whole exposition.
    fn finish(self) -> String {
        self.families.into_iter().map(|(_, text)| text).collect()
    }

    fn counter(&mut self, name: &'static str, help: &str, labels: &[(&str, &str)], value: u64) {
        self.sample("counter", name, help, labels, value);
    }

    fn gauge(
        &mut self,
        name: &'static str,
        help: &str,
        labels: &[(&str, &str)],
        value: impl std::fmt::Display,
    ) {
        self.sample("gauge", name, help, labels, value);
    }

    /// A histogram without labels: cumulative `_bucket{le=…}` lines, `+Inf`, `_sum`, `_count`.
    fn histogram(&mut self, name: &'static str, help: &str, h: &HistogramSnapshot) {
        self.declare("histogram", name, help);
        for (bound, n) in &h.buckets {
            let le = bound.to_string();
            self.line(name, "_bucket", &[("le", le.as_str())], n);
        }
        self.line(name, "_bucket", &[("le", "+Inf")], h.count);
        self.line(name, "_sum", &[], h.sum_seconds);
        self.line(name, "_count", &[], h.count);
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<HealthState>) -> Response {
    let problems = state.not_ready().await;
    let mut notes = String::new();
    if let Some(line) = state.leadership_line() {
        notes.push_str(&line);
        notes.push('\n');
    }
    for upstream in state.upstreams_as_last_probed() {
        if let Some(failure) = upstream.failure {
            notes.push_str(&format!(
                "{}: {} is not reachable (work for it waits; readiness does not depend on it): \
                 {failure}\n",
                upstream.name, upstream.url
            ));
        }
    }
    if problems.is_empty() {
        (StatusCode::OK, format!("ready\n{notes}")).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready:\n{}\n{notes}", problems.join("\n")),
        )
            .into_response()
    }
}

async fn metrics(State(state): State<HealthState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.render().await,
    )
        .into_response()
}

/// The endpoint's routes.
pub fn router(state: HealthState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serves the endpoint on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    state: HealthState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let address: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(address = ?address, "health and metrics endpoint listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use adoport_shared::topology::Topology;

    fn sample(text: &str, series: &str) -> String {
        text.lines()
            .find_map(|line| Some(line.strip_prefix(series)?.trim().to_string()))
            .unwrap_or_else(|| panic!("{series} in\n{text}"))
    }

    #[tokio::test]
    async fn the_log_lines_for_port_show_in_metrics() {
        // As a role's process: its lines are kept for Port's log view.
        adoport_shared::telemetry::init(false, "info", true);
        let outbox = adoport_shared::telemetry::port_log_outbox().expect("outbox");
        outbox.push(serde_json::json!({"message": "a line for Port"}));
        let shutdown = CancellationToken::new();
        let bus = Bus::memory(Topology::new("health.", 1), shutdown.clone());
        let state = HealthState::starting("all", bus, Vec::new(), Vec::new());
        let text = state.render().await;
        let waiting: usize = sample(&text, "adoport_port_log_lines_waiting{role=\"all\"}")
            .parse()
            .expect("a number");
        assert!(waiting >= 1, "{text}");
        for outcome in ["shipped", "lost", "dropped"] {
            sample(
                &text,
                &format!("adoport_port_log_lines_total{{outcome=\"{outcome}\"}}"),
            );
        }
        shutdown.cancel();
    }

    #[tokio::test]
    async fn not_ready_until_the_roles_run() {
        let shutdown = CancellationToken::new();
        let bus = Bus::memory(Topology::new("health.", 1), shutdown.clone());
        let state = HealthState::starting("all", bus, Vec::new(), Vec::new());
        assert_eq!(state.not_ready().await, ["roles: starting"]);
        let served = state.clone();
        state.attach(Stages::default());
        assert!(served.not_ready().await.is_empty());
        shutdown.cancel();
    }

    #[tokio::test]
    async fn an_unreachable_upstream_shows_in_metrics_and_the_body_not_in_readiness() {
        let shutdown = CancellationToken::new();
        let bus = Bus::memory(Topology::new("health.", 1), shutdown.clone());
        // A port nothing listens on: bound, then closed.
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .local_addr()
            .expect("address");
        let answering = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let answering_url = format!("http://{}/", answering.local_addr().expect("address"));
        tokio::spawn(async move {
            axum::serve(
                answering,
                Router::new().route("/", get(|| async { StatusCode::UNAUTHORIZED })),
            )
            .await
        });
        let upstreams = vec![
            Upstream {
                name: "port",
                url: format!("http://{closed}/"),
            },
            Upstream {
                name: "azure_devops",
                url: answering_url,
            },
        ];
        let state = HealthState::new("all", bus, None, None, upstreams, Vec::new());

        assert!(
            state.not_ready().await.is_empty(),
            "Port's outage is not ours"
        );
        let text = state.render().await;
        let reachable = |upstream: &str| {
            sample(
                &text,
                &format!("adoport_upstream_reachable{{upstream=\"{upstream}\"}}"),
            )
        };
        assert_eq!(reachable("port"), "0");
        assert_eq!(reachable("azure_devops"), "1", "a 401 is an answer");

        // Readiness tells what the scrape found, without probing again, and stays ready.
        let response = readyz(State(state.clone())).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        let body = String::from_utf8_lossy(&body);
        assert!(
            body.contains("port: http://") && body.contains("is not reachable"),
            "{body}"
        );
        assert!(!body.contains("azure_devops"), "a 401 is an answer: {body}");
        shutdown.cancel();
    }

    #[tokio::test]
    async fn metrics_render_per_kind_http_and_resync_figures_grouped_by_family() {
        let shutdown = CancellationToken::new();
        let bus = Bus::memory(Topology::new("health.", 2), shutdown.clone());
        let transform = TransformStats::default();
        transform.per_kind().add("repository", "events", 2);
        transform.per_kind().add("repository", "items", 7);
        transform.per_kind().add("repository", "changes", 7);
        transform.per_kind().add("project", "item_failures", 1);
        let publish = PublishStats::new();
        publish.per_kind().add("repository", "received", 7);
        publish.per_kind().add("repository", "upserted", 5);
        publish.per_kind().add("repository", "deleted", 1);
        publish.per_kind().add("repository", "skipped_unchanged", 1);
        publish.per_kind().add("project", "dead_lettered", 2);
        publish
            .port_http()
            .record(Some(200), Duration::from_millis(40));
        publish
            .port_http()
            .record(Some(429), Duration::from_secs(2));
        publish.port_http().record(None, Duration::from_secs(30));
        publish.share().set_partitions(4);
        publish.share().set_members(3);
        publish.share().changed();
        let ingest = IngestStats::default();
        ingest
            .requests
            .http
            .record(Some(200), Duration::from_millis(5));
        ingest
            .requests
            .http
            .record(Some(503), Duration::from_millis(5));
        ingest.resyncs.started();
        ingest.resyncs.crawled("repository", 7);
        ingest.resyncs.finished(true, Duration::from_millis(2500));

        let state = HealthState::new(
            "all",
            bus,
            Some(transform),
            Some(publish),
            Vec::new(),
            Vec::new(),
        )
        .with_ingest(Some(ingest));
        let text = state.render().await;

        let kind = |stage: &str, kind: &str| format!("{{stage=\"{stage}\",kind=\"{kind}\"}}");
        let in_by_kind = "adoport_messages_in_by_kind_total";
        let out_by_kind = "adoport_messages_out_by_kind_total";
        assert_eq!(
            sample(
                &text,
                &format!("{in_by_kind}{}", kind("transform", "repository"))
            ),
            "2"
        );
        assert_eq!(
            sample(
                &text,
                &format!("{out_by_kind}{}", kind("transform", "repository"))
            ),
            "7"
        );
        assert_eq!(
            sample(
                &text,
                &format!("{in_by_kind}{}", kind("publish", "repository"))
            ),
            "7"
        );
        assert_eq!(
            sample(
                &text,
                &format!("{out_by_kind}{}", kind("publish", "repository"))
            ),
            "6",
            "upserted + deleted"
        );
        assert_eq!(
            sample(
                &text,
                &format!(
                    "adoport_messages_dead_lettered_by_kind_total{}",
                    kind("publish", "project")
                )
            ),
            "2"
        );
        assert_eq!(
            sample(
                &text,
                "adoport_transform_items_by_kind_total{kind=\"repository\"}"
            ),
            "7"
        );
        assert_eq!(
            sample(
                &text,
                "adoport_transform_item_failures_by_kind_total{kind=\"project\"}"
            ),
            "1"
        );
        assert_eq!(
            sample(
                &text,
                "adoport_port_entities_by_kind_total{kind=\"repository\",outcome=\"skipped_unchanged\"}"
            ),
            "1"
        );
        assert_eq!(
            sample(&text, "adoport_port_http_requests_total{status=\"429\"}"),
            "1"
        );
        // Reads of Port are counted apart from writes (the worker's tests count them).
        assert_eq!(sample(&text, "adoport_port_reads_total"), "0");
        assert_eq!(sample(&text, "adoport_port_requests_total"), "0");
        // How this replica shares the change partitions.
        assert_eq!(sample(&text, "adoport_publish_partitions"), "4");
        assert_eq!(sample(&text, "adoport_publish_members"), "3");
        assert_eq!(
            sample(&text, "adoport_publish_assignment_changes_total"),
            "1"
        );
        assert_eq!(
            sample(
                &text,
                "adoport_port_http_requests_total{status=\"transport_error\"}"
            ),
            "1"
        );
        assert_eq!(
            sample(
                &text,
                "adoport_port_request_duration_seconds_bucket{le=\"0.05\"}"
            ),
            "1"
        );
        assert_eq!(
            sample(
                &text,
                "adoport_port_request_duration_seconds_bucket{le=\"2.5\"}"
            ),
            "2"
        );
        assert_eq!(
            sample(
                &text,
                "adoport_port_request_duration_seconds_bucket{le=\"10\"}"
            ),
            "2"
        );
        assert_eq!(
            sample(
                &text,
                "adoport_port_request_duration_seconds_bucket{le=\"+Inf\"}"
            ),
            "3"
        );
        assert_eq!(
            sample(&text, "adoport_port_request_duration_seconds_count"),
            "3"
        );
        assert_eq!(
            sample(&text, "adoport_azure_devops_requests_total{status=\"503\"}"),
            "1"
        );
        assert_eq!(
            sample(&text, "adoport_azure_devops_request_duration_seconds_count"),
            "2"
        );
        assert_eq!(sample(&text, "adoport_resyncs_started_total"), "1");
        assert_eq!(sample(&text, "adoport_resyncs_completed_total"), "1");
        assert_eq!(sample(&text, "adoport_resync_last_duration_seconds"), "2.5");
        assert_eq!(
            sample(&text, "adoport_resync_items_crawled{kind=\"repository\"}"),
            "7"
        );

        // Every sample sits under its own family's header; each family is declared once.
        let mut declared = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap_or_default().to_string();
                assert!(!declared.contains(&name), "{name} declared twice:\n{text}");
                declared.push(name.clone());
                current = name;
            } else if !line.starts_with('#') {
                let series = line.split(['{', ' ']).next().unwrap_or_default();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| series.strip_suffix(s).filter(|f| *f == current))
                    .unwrap_or(series);
                assert_eq!(family, current, "{line} outside its family:\n{text}");
            }
        }
        shutdown.cancel();
    }
}
