//! The health and metrics endpoint every role serves (`ADOPORT__HEALTH__LISTEN`, `:9000`):
//!
//! - `GET /healthz`: the process is alive (200).
//! - `GET /readyz`: 200 when the broker connection is up and the role's upstream (Azure DevOps
//!   for ingest, Port for publish) answers HTTP at all; 503 naming what is not ready otherwise.
//! - `GET /metrics`: Prometheus text format, rendered from the stages' own counters
//!   ([`TransformStats`], [`PublishStats`]) and, at scrape time, the ready count of the work
//!   queues (queue lag) and of the dead-letter queues.
//!
//! The metric names live here, in one place. No entity ids or item ids are labels.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use adoport_publish::PublishStats;
use adoport_shared::bus::Bus;
use adoport_shared::topology::{DeadLetterQueue, WorkQueue};
use adoport_transform::worker::TransformStats;

/// How long a scrape waits for a queue count, and a readiness probe for an upstream.
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

/// What the endpoint reports on.
#[derive(Clone)]
pub struct HealthState {
    inner: Arc<Inner>,
}

struct Inner {
    role: &'static str,
    bus: Bus,
    transform: Option<TransformStats>,
    publish: Option<PublishStats>,
    upstreams: Vec<Upstream>,
    work_queues: Vec<WorkQueue>,
    http: reqwest::Client,
    /// When each upstream last answered.
    reachable: Mutex<Vec<Option<Instant>>>,
    started: Instant,
}

impl HealthState {
    /// `transform`/`publish` are the counters of the stages running in this process;
    /// `work_queues` the queues whose lag to report.
    pub fn new(
        role: &'static str,
        bus: Bus,
        transform: Option<TransformStats>,
        publish: Option<PublishStats>,
        upstreams: Vec<Upstream>,
        work_queues: Vec<WorkQueue>,
    ) -> Self {
        let reachable = Mutex::new(vec![None; upstreams.len()]);
        Self {
            inner: Arc::new(Inner {
                role,
                bus,
                transform,
                publish,
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

    /// What is not ready, or an empty list.
    pub async fn not_ready(&self) -> Vec<String> {
        let inner = &self.inner;
        let mut problems = Vec::new();
        if !inner.bus.is_connected() {
            problems.push("broker: not connected".to_string());
        }
        let mut reachable = inner.reachable.lock().await;
        for (i, upstream) in inner.upstreams.iter().enumerate() {
            if reachable[i].is_some_and(|at| at.elapsed() < UPSTREAM_CACHE) {
                continue;
            }
            // Any HTTP answer (even 401/404) means the service is reachable from here.
            match inner.http.get(&upstream.url).send().await {
                Ok(_) => reachable[i] = Some(Instant::now()),
                Err(e) => problems.push(format!(
                    "{}: {} is not reachable: {e}",
                    upstream.name, upstream.url
                )),
            }
        }
        problems
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
        if let Some(t) = &inner.transform {
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
        }
        if let Some(p) = &inner.publish {
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
        if matches!(inner.bus, Bus::Rabbit(_)) {
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
        m.text
    }
}

/// Prometheus text exposition (format 0.0.4): one HELP/TYPE header per family.
#[derive(Default)]
struct Exposition {
    text: String,
    declared: Vec<&'static str>,
}

impl Exposition {
    fn sample(
        &mut self,
        kind: &str,
        name: &'static str,
        help: &str,
        labels: &[(&str, &str)],
        value: u64,
    ) {
        if !self.declared.contains(&name) {
            self.declared.push(name);
            let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        }
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let escaped = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.text, "{k}=\"{escaped}\"");
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    fn counter(&mut self, name: &'static str, help: &str, labels: &[(&str, &str)], value: u64) {
        self.sample("counter", name, help, labels, value);
    }

    fn gauge(&mut self, name: &'static str, help: &str, labels: &[(&str, &str)], value: u64) {
        self.sample("gauge", name, help, labels, value);
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<HealthState>) -> Response {
    let problems = state.not_ready().await;
    if problems.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready:\n{}\n", problems.join("\n")),
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
