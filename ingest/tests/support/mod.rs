//! The harness the webhook receiver's tests share: the Azure DevOps simulator, a receiver on a
//! local port (on the in-process bus) for a mapping with the given kinds, and helpers to post
//! envelopes and read what was queued.

// Each test file uses the part of the harness it needs.
#![allow(dead_code)]

pub mod crawl;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use adoport_ingest::actions::completion::CompletionContext;
use adoport_ingest::ado::AdoClient;
use adoport_ingest::organizations::Organizations;
use adoport_ingest::webhook::{RESYNC_PATH, WEBHOOK_PATH, WebhookLimits, WebhookState, router};
use adoport_ingest::{Crawler, KindPlan};
use adoport_shared::bus::{Bus, Subscription};
use adoport_shared::config::{AzureDevopsAccess, Secret};
use adoport_shared::messages::{RawAction, RawEvent};
use adoport_shared::topology::{Topology, WorkQueue};
use adoport_sim::ado::{AdoSim, AdoSimConfig, FileChange, PushResult, SimCommit};
use base64::Engine;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub struct Harness {
    pub sim: AdoSim,
    pub client: AdoClient,
    /// `http://127.0.0.1:PORT/integration/webhook`.
    pub url: String,
    /// Where the receiver listens.
    pub address: SocketAddr,
    pub http: reqwest::Client,
    /// The credentials sent with [`Harness::post`] (the configured secret, if any).
    pub credentials: Option<String>,
    /// The raw queue's consumer (only the first organization's harness has it: one queue).
    pub deliveries: Option<Subscription>,
    pub shutdown: CancellationToken,
}

/// How the receiver is configured.
#[derive(Debug, Clone, Default)]
pub struct Receiver {
    /// `webhookSecret`.
    pub secret: Option<String>,
    pub limits: WebhookLimits,
}

/// The crawl units of a mapping with one resource per `(kind, selector)`, in order (no GitOps).
pub fn plans(kinds: &[(&str, Value)]) -> Vec<KindPlan> {
    let resources: Vec<Value> = kinds
        .iter()
        .map(|(kind, selector)| {
            serde_json::json!({"kind": kind, "selector": selector,
                "port": {"entity": {"mappings": {"identifier": ".id", "blueprint": "\"b\""}}}})
        })
        .collect();
    let mapping = adoport_shared::port_app_config::PortAppConfig::from_json_value(
        serde_json::json!({"resources": resources, "specPath": []}),
    )
    .expect("mapping");
    KindPlan::for_mapping(&mapping)
}

fn client_of(sim: &AdoSim, shutdown: &CancellationToken) -> AdoClient {
    client_with_pat(sim, "sim-pat", shutdown)
}

/// A client of `sim` that signs in with `pat`.
pub fn client_with_pat(sim: &AdoSim, pat: &str, shutdown: &CancellationToken) -> AdoClient {
    client_in_flight(sim, pat, 8, shutdown)
}

/// A client of `sim` that signs in with `pat` and may have `max_in_flight` requests in flight.
pub fn client_in_flight(
    sim: &AdoSim,
    pat: &str,
    max_in_flight: usize,
    shutdown: &CancellationToken,
) -> AdoClient {
    let access = AzureDevopsAccess {
        organization_url: sim.organization_url(),
        personal_access_token: Secret::new(pat),
        timeout_secs: 10,
        network: Default::default(),
    };
    AdoClient::new(&access, max_in_flight, shutdown.clone()).expect("client")
}

/// The `Authorization` header Azure DevOps sends for a subscription with basic auth.
pub fn basic_auth(password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("port:{password}"))
    )
}

/// The simulator, and a webhook receiver for a mapping with `kinds` (kind, selector).
pub async fn harness(kinds: &[(&str, Value)]) -> Harness {
    harness_with(kinds, Receiver::default()).await
}

/// [`harness`], and the id of the simulator's `project`th project.
pub async fn harness_in(kinds: &[(&str, Value)], project: usize) -> (Harness, String) {
    let h = harness(kinds).await;
    let id = h.project_id(project);
    (h, id)
}

/// [`harness`] with a receiver configured as `receiver` says.
pub async fn harness_with(kinds: &[(&str, Value)], receiver: Receiver) -> Harness {
    let sim = AdoSim::start(AdoSimConfig::default())
        .await
        .expect("simulator starts");
    receivers(vec![sim], kinds, receiver).await.remove(0)
}

/// One harness per simulated organization, all posting to one receiver that reads each
/// organization with its own client.
pub async fn harness_of(sims: Vec<AdoSim>, kinds: &[(&str, Value)]) -> Vec<Harness> {
    receivers(sims, kinds, Receiver::default()).await
}

async fn receivers(sims: Vec<AdoSim>, kinds: &[(&str, Value)], receiver: Receiver) -> Vec<Harness> {
    let shutdown = CancellationToken::new();
    let clients: Vec<AdoClient> = sims.iter().map(|s| client_of(s, &shutdown)).collect();
    let bus = Bus::memory(Topology::new("live.", 2), shutdown.clone());
    let mut deliveries = vec![Some(
        bus.subscribe(WorkQueue::Raw, 64).await.expect("subscribe"),
    )];
    deliveries.resize_with(sims.len(), || None);
    let state = std::sync::Arc::new(WebhookState {
        bus,
        organizations: Organizations::new(clients.clone()),
        secret: receiver.secret.as_deref().map(Secret::new),
        excluded_tags: Vec::new(),
        actions: None,
        plan: adoport_ingest::KindPlans::fixed(plans(kinds)),
    });
    let address = serve_webhook(state, receiver.limits, &shutdown).await;
    let credentials = receiver.secret.as_deref().map(basic_auth);
    sims.into_iter()
        .zip(clients)
        .zip(deliveries)
        .map(|((sim, client), deliveries)| Harness {
            sim,
            client,
            url: format!("http://{address}{WEBHOOK_PATH}"),
            address,
            http: reqwest::Client::new(),
            credentials: credentials.clone(),
            deliveries,
            shutdown: shutdown.clone(),
        })
        .collect()
}

/// Serves a receiver (no secret, no excluded tags, default limits) on `bus` for one
/// organization read with `client`, with `actions` and a mapping of `plan`, until `shutdown`;
/// its webhook URL.
pub async fn serve_receiver(
    bus: Bus,
    client: &AdoClient,
    actions: Option<CompletionContext>,
    plan: Vec<KindPlan>,
    shutdown: &CancellationToken,
) -> String {
    let state = std::sync::Arc::new(WebhookState {
        bus,
        organizations: Organizations::new(vec![client.clone()]),
        secret: None,
        excluded_tags: Vec::new(),
        actions,
        plan: adoport_ingest::KindPlans::fixed(plan),
    });
    let address = serve_webhook(state, WebhookLimits::default(), shutdown).await;
    format!("http://{address}{WEBHOOK_PATH}")
}

/// A cancellation token cancelled when dropped: a harness's background tasks stop with its test.
pub struct StopOnDrop(pub CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Serves the webhook receiver over `state` on a local port until `shutdown`; its address.
pub async fn serve_webhook(
    state: std::sync::Arc<WebhookState>,
    limits: WebhookLimits,
    shutdown: &CancellationToken,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let app = router(state, limits);
    let stop = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    address
}

impl Harness {
    /// Posts `envelope` (with the harness's credentials) and returns the answer's status and
    /// body.
    pub async fn post(&self, envelope: &Value) -> (u16, Value) {
        let mut request = self.http.post(&self.url).json(envelope);
        if let Some(credentials) = &self.credentials {
            request = request.header("Authorization", credentials);
        }
        let response = request.send().await.expect("webhook answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON answer"))
    }

    /// `POST /resync` with `authorization` as the `Authorization` header; the status.
    pub async fn resync(&self, authorization: Option<&str>) -> u16 {
        let mut request = self
            .http
            .post(format!("http://{}{RESYNC_PATH}", self.address));
        if let Some(authorization) = authorization {
            request = request.header("Authorization", authorization);
        }
        request.send().await.expect("answered").status().as_u16()
    }

    /// Posts `envelope`, expects 200, and returns the raw events it queued (as many as the
    /// answer's `eventIds` says, in publication order).
    pub async fn deliver(&mut self, envelope: &Value) -> Vec<RawEvent> {
        let (status, body) = self.post(envelope).await;
        assert_eq!(status, 200, "{body}");
        let count = body["eventIds"].as_array().map_or(0, Vec::len);
        self.queued(count).await
    }

    /// Posts `envelope`, expects it to queue one event of `kind`, an `action`, among others,
    /// and returns that event's first item.
    pub async fn deliver_item(&mut self, envelope: &Value, kind: &str, action: RawAction) -> Value {
        let events = self.deliver(envelope).await;
        only_as(&events, kind, action).items[0].clone()
    }

    /// The next `count` raw events on the queue.
    pub async fn queued(&mut self, count: usize) -> Vec<RawEvent> {
        let consumer = self
            .deliveries
            .as_mut()
            .expect("the first organization's harness consumes the raw queue");
        crawl::next_events(consumer, count).await
    }

    /// The first repository's id and a `git.repo.renamed` event for it.
    pub fn first_repository_renamed(&self) -> (String, Value) {
        let repository = text(&self.sim.repositories()[0], "/id");
        let event = self
            .sim
            .repository_event("git.repo.renamed", &repository)
            .expect("the repository exists");
        (repository, event)
    }

    /// Proves nothing was queued since the last event read: a rename of the first repository
    /// is delivered, and it is the next event on the queue.
    pub async fn nothing_queued_before_a_sentinel(&mut self) {
        let (repository, sentinel) = self.first_repository_renamed();
        let (status, body) = self.post(&sentinel).await;
        assert_eq!(status, 200, "{body}");
        let next = self.queued(1).await.remove(0);
        assert_eq!(
            (next.kind.as_str(), next.items[0]["id"].as_str()),
            ("repository", Some(repository.as_str())),
            "the sentinel is the next event: nothing else was queued before it"
        );
    }

    /// Posts `envelope` and expects it acknowledged and ignored (200, `status: ignored`).
    pub async fn assert_ignored(&self, envelope: &Value) {
        let (status, body) = self.post(envelope).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("ignored")),
            "{body}"
        );
    }

    /// How many requests the simulator counted under route template `route`.
    pub fn requests(&self, route: &str) -> u64 {
        self.sim.requests().get(route).copied().unwrap_or(0)
    }

    pub fn project_id(&self, index: usize) -> String {
        text(&self.sim.projects()[index], "/id")
    }

    /// Crawls `kinds` with the harness's client and returns the items published per kind.
    pub async fn crawl(&self, kinds: &[(&str, Value)]) -> BTreeMap<String, Vec<Value>> {
        let shutdown = CancellationToken::new();
        let bus = Bus::memory(Topology::new("live-crawl.", 2), shutdown);
        let mut deliveries = bus.subscribe(WorkQueue::Raw, 64).await.expect("subscribe");
        let crawler = Crawler::new(self.client.clone(), bus, 50);
        let (report, items) = crawl::crawl_with(&crawler, &mut deliveries, &plans(kinds)).await;
        assert_eq!(report.failed_kinds(), Vec::<&str>::new(), "{report:?}");
        items
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.sim.shutdown().await;
    }
}

/// The string at `pointer` in `value` (there must be one).
pub fn text(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("a string at {pointer} in {value}"))
        .to_string()
}

/// The one event of `kind` among `events`.
pub fn only(events: &[RawEvent], kind: &str) -> RawEvent {
    let found: Vec<&RawEvent> = events.iter().filter(|e| e.kind == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} event in {events:?}");
    found[0].clone()
}

/// The one event of `kind` among `events`, which must be an `action`.
pub fn only_as(events: &[RawEvent], kind: &str, action: RawAction) -> RawEvent {
    let event = only(events, kind);
    assert_eq!(event.action, action, "{event:?}");
    event
}

/// The one event among `events`, which must be of `kind` with `action`.
pub fn single(events: &[RawEvent], kind: &str, action: RawAction) -> RawEvent {
    assert_eq!(events.len(), 1, "{events:?}");
    only_as(events, kind, action)
}

/// The items of the events of `kind` with `action` among `events`.
pub fn items_of(events: &[RawEvent], kind: &str, action: RawAction) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.kind == kind && e.action == action)
        .flat_map(|e| e.items.clone())
        .collect()
}

/// The id of the seeded repository named `name`.
pub fn repository_id(sim: &AdoSim, name: &str) -> String {
    sim.repositories()
        .into_iter()
        .find(|r| r["name"] == name)
        .and_then(|r| r["id"].as_str().map(String::from))
        .expect("seeded repository")
}

/// Pushes one commit, `message` with `changes`, to `branch` of `repository`.
pub fn push_commit(
    sim: &AdoSim,
    repository: &str,
    branch: &str,
    message: &str,
    changes: Vec<FileChange>,
) -> PushResult {
    sim.push(repository, branch, vec![SimCommit::new(message, changes)])
        .expect("pushed")
}
