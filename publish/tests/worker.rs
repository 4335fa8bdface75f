//! The publish worker against a scripted fake Port (axum on 127.0.0.1:0) and the in-process bus.
//!
//! Each test scripts Port's answers, publishes changes, awaits a condition on the worker's
//! counters (with a timeout, never a fixed sleep), then asserts what the fake saw and what the
//! bus holds.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use adoport_publish::batcher::BatchLimits;
use adoport_publish::retry::RetryPolicy;
use adoport_publish::{PublishConfig, PublishError, PublishStats, Publisher, StatsSnapshot};
use adoport_shared::bus::{Bus, DeadLetter, Destination, Outgoing};
use adoport_shared::messages::{ChangeOp, EntityChange, Origin, ResyncId, encode};
use adoport_shared::topology::{DeadLetterQueue, Topology};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod support;

use support::{assert_says, port_client, serve, webhook};

const WAIT: Duration = Duration::from_secs(10);
const IDENTIFIER: &str = "test-ado";

// ---------------------------------------------------------------- the fake Port

#[derive(Clone, Debug)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Value,
    delay: Duration,
}

impl Reply {
    fn new(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body,
            delay: Duration::ZERO,
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }

    fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(self.body)).into_response();
        for (name, value) in self.headers {
            response
                .headers_mut()
                .insert(name, value.parse().expect("header value"));
        }
        response
            .headers_mut()
            .insert("x-trace-id", "trace-123".parse().expect("header value"));
        response
    }
}

#[derive(Debug, Clone)]
struct Recorded {
    method: &'static str,
    path: String,
    query: HashMap<String, String>,
    body: Value,
    body_bytes: usize,
    authorization: Option<String>,
    user_agent: Option<String>,
    at: Instant,
}

impl Recorded {
    fn identifiers(&self) -> Vec<String> {
        self.body["entities"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e["identifier"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many identifiers a search reads (its `$identifier` rule's values).
    fn identifiers_read(&self) -> usize {
        self.body["rules"]
            .as_array()
            .and_then(|rules| rules.iter().find(|r| r["property"] == "$identifier"))
            .and_then(|r| r["value"].as_array())
            .map_or(0, Vec::len)
    }
}

#[derive(Default)]
struct Fake {
    requests: Mutex<Vec<Recorded>>,
    /// Answers to the next bulk requests, in order; then `bulk_always`, then normal behaviour.
    bulk_script: Mutex<VecDeque<Reply>>,
    bulk_always: Mutex<Option<Reply>>,
    token_always: Mutex<Option<Reply>>,
    tokens_issued: AtomicUsize,
    /// 413 for bulk bodies larger than this.
    max_body: Mutex<Option<usize>>,
    /// Identifiers a bulk upsert rejects in a 207: (statusCode, error, message).
    reject: Mutex<HashMap<String, (u16, String, String)>>,
    entities: Mutex<HashMap<(String, String), Value>>,
    /// Entities another datasource owns: the ownership search does not find them.
    foreign: Mutex<std::collections::HashSet<(String, String)>>,
    /// Answers to the next searches, in order; then normal behaviour.
    search_script: Mutex<VecDeque<Reply>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().expect("fake port lock")
}

impl Fake {
    fn record(
        &self,
        method: &'static str,
        path: String,
        query: HashMap<String, String>,
        headers: &HeaderMap,
        body: &[u8],
    ) {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        lock(&self.requests).push(Recorded {
            method,
            path,
            query,
            body: serde_json::from_slice(body).unwrap_or(Value::Null),
            body_bytes: body.len(),
            authorization: header("authorization"),
            user_agent: header("user-agent"),
            at: Instant::now(),
        });
    }

    fn requests(&self) -> Vec<Recorded> {
        lock(&self.requests).clone()
    }

    fn bulk_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/entities/bulk"))
            .collect()
    }

    fn searches(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == "/v1/entities/search")
            .collect()
    }

    /// Identifiers written since request number `from`.
    fn written_since(&self, from: usize) -> Vec<String> {
        self.requests()[from..]
            .iter()
            .filter(|r| r.path.ends_with("/entities/bulk"))
            .flat_map(Recorded::identifiers)
            .collect()
    }

    fn entity(&self, blueprint: &str, identifier: &str) -> Option<Value> {
        lock(&self.entities)
            .get(&(blueprint.to_string(), identifier.to_string()))
            .cloned()
    }
}

async fn token(State(fake): State<Arc<Fake>>, headers: HeaderMap, body: Bytes) -> Reply {
    fake.record(
        "POST",
        "/v1/auth/access_token".into(),
        HashMap::new(),
        &headers,
        &body,
    );
    if let Some(reply) = lock(&fake.token_always).clone() {
        return reply;
    }
    let n = fake.tokens_issued.fetch_add(1, Ordering::SeqCst) + 1;
    Reply::new(
        200,
        json!({"ok": true, "accessToken": format!("tok-{n}"), "expiresIn": 10800, "tokenType": "Bearer"}),
    )
}

async fn bulk(
    State(fake): State<Arc<Fake>>,
    Path(blueprint): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    fake.record(
        "POST",
        format!("/v1/blueprints/{blueprint}/entities/bulk"),
        query,
        &headers,
        &body,
    );
    let scripted = lock(&fake.bulk_script).pop_front();
    let reply = scripted.or_else(|| lock(&fake.bulk_always).clone());
    if let Some(reply) = reply {
        if !reply.delay.is_zero() {
            tokio::time::sleep(reply.delay).await;
        }
        if reply.status < 300 {
            // A scripted success still stores what it was sent.
            store(&fake, &blueprint, &body);
        }
        return reply;
    }
    if lock(&fake.max_body).is_some_and(|max| body.len() > max) {
        return Reply::new(
            413,
            json!({"ok": false, "error": "payload_too_large", "message": "request entity too large"}),
        );
    }
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut errors = Vec::new();
    let mut written = Vec::new();
    for (index, entity) in parsed["entities"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let identifier = entity["identifier"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if let Some((status, error, message)) = lock(&fake.reject).get(&identifier).cloned() {
            errors.push(json!({"identifier": identifier, "index": index, "statusCode": status, "error": error, "message": message}));
        } else {
            written.push(json!({"identifier": identifier, "index": index, "created": true}));
            lock(&fake.entities).insert((blueprint.clone(), identifier), entity);
        }
    }
    let status = if errors.is_empty() { 200 } else { 207 };
    Reply::new(
        status,
        json!({"ok": errors.is_empty(), "entities": written, "errors": errors}),
    )
}

fn store(fake: &Fake, blueprint: &str, body: &[u8]) {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    for entity in parsed["entities"].as_array().cloned().unwrap_or_default() {
        let identifier = entity["identifier"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        lock(&fake.entities).insert((blueprint.to_string(), identifier), entity);
    }
}

async fn delete_one(
    State(fake): State<Arc<Fake>>,
    Path((blueprint, identifier)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Reply {
    fake.record(
        "DELETE",
        format!("/v1/blueprints/{blueprint}/entities/{identifier}"),
        query,
        &headers,
        b"",
    );
    match lock(&fake.entities).remove(&(blueprint, identifier)) {
        Some(_) => Reply::new(200, json!({"ok": true})),
        None => Reply::new(
            404,
            json!({"ok": false, "error": "not_found", "message": "Entity not found"}),
        ),
    }
}

/// `POST /v1/entities/search`, for the ownership check before a live delete (`$identifier =`)
/// and the read of a resync's entities (`$identifier in […]`): the stored entities named by the
/// `$blueprint` and `$identifier` rules that exist and are not foreign, as they were written.
async fn search(
    State(fake): State<Arc<Fake>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    fake.record("POST", "/v1/entities/search".into(), query, &headers, &body);
    if let Some(reply) = lock(&fake.search_script).pop_front() {
        return reply;
    }
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let rule = |property: &str| {
        parsed["rules"]
            .as_array()
            .and_then(|rules| rules.iter().find(|r| r["property"] == property))
            .map(|r| r["value"].clone())
            .unwrap_or(Value::Null)
    };
    let blueprint = rule("$blueprint").as_str().unwrap_or_default().to_string();
    let identifiers: Vec<String> = match rule("$identifier") {
        Value::String(id) => vec![id],
        Value::Array(ids) => ids
            .iter()
            .filter_map(|id| id.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    let owned_suffix = parsed["rules"].as_array().is_some_and(|rules| {
        rules.iter().any(|r| {
            r["property"] == "$datasource" && r["value"] == format!("/{IDENTIFIER}/exporter")
        })
    });
    let entities: Vec<Value> = identifiers
        .into_iter()
        .map(|id| (blueprint.clone(), id))
        .filter(|key| owned_suffix && !lock(&fake.foreign).contains(key))
        .filter_map(|key| lock(&fake.entities).get(&key).cloned())
        .collect();
    Reply::new(200, json!({"ok": true, "entities": entities}))
}

async fn start_fake() -> (Arc<Fake>, String) {
    let fake = Arc::new(Fake::default());
    let app = Router::new()
        .route("/v1/auth/access_token", post(token))
        .route("/v1/blueprints/{bp}/entities/bulk", post(bulk))
        .route("/v1/blueprints/{bp}/entities/{id}", delete(delete_one))
        .route("/v1/entities/search", post(search))
        .layer(axum::extract::DefaultBodyLimit::max(4 * 1024 * 1024))
        .with_state(fake.clone());
    (fake, serve(app).await)
}

// ---------------------------------------------------------------- the harness

fn config() -> PublishConfig {
    PublishConfig {
        partitions: vec![0],
        membership: None,
        prefetch: 200,
        batch: BatchLimits {
            linger: Duration::from_millis(100),
            ..BatchLimits::default()
        },
        send_when_idle: true,
        max_concurrent_requests: 4,
        retry: RetryPolicy {
            max_attempts: 4,
            min_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            max_retry_after: Duration::from_secs(5),
            retry_window: Duration::ZERO,
        },
        check: BatchLimits {
            linger: Duration::from_millis(100),
            ..BatchLimits::check(Duration::ZERO)
        },
        shutdown_deadline: Duration::from_secs(5),
        guard_capacity: 10_000,
    }
}

struct Harness {
    fake: Arc<Fake>,
    bus: Bus,
    shutdown: CancellationToken,
    stats: PublishStats,
    worker: JoinHandle<Result<(), PublishError>>,
}

impl Harness {
    /// A fake Port and a worker with `config` writing to it from one change queue.
    async fn start(config: PublishConfig) -> (Arc<Fake>, Self) {
        Self::start_scripted(config, 1, |_| {}).await
    }

    /// A fake Port that `script` tells how to answer (before the worker starts), and a worker
    /// with `config` writing to it from every one of `partitions` change queues.
    async fn start_scripted(
        config: PublishConfig,
        partitions: u16,
        script: impl FnOnce(&Fake),
    ) -> (Arc<Fake>, Self) {
        let (fake, url) = start_fake().await;
        script(&fake);
        let h = Self::start_on(fake.clone(), &url, config, partitions).await;
        (fake, h)
    }

    /// A worker writing to `fake` (at `base_url`) from every one of `partitions` change queues.
    async fn start_on(
        fake: Arc<Fake>,
        base_url: &str,
        mut config: PublishConfig,
        partitions: u16,
    ) -> Self {
        config.partitions = (0..partitions).collect();
        let shutdown = CancellationToken::new();
        let bus = Bus::memory(Topology::new("test.", partitions), shutdown.clone());
        let client = port_client(base_url, ("cid", "csecret"), IDENTIFIER, 5);
        let publisher = Publisher::new(client, config);
        let stats = publisher.stats();
        let worker = tokio::spawn(publisher.run(bus.clone(), shutdown.clone()));
        Self {
            fake,
            bus,
            shutdown,
            stats,
            worker,
        }
    }

    async fn send(&self, changes: &[EntityChange]) {
        let messages = changes
            .iter()
            .map(|c| Outgoing::new(Destination::Change { partition: 0 }, encode(c)))
            .collect();
        self.bus.publish_all(messages).await.expect("publish");
    }

    async fn send_raw(&self, body: &'static [u8]) {
        self.bus
            .publish(Outgoing::new(Destination::Change { partition: 0 }, body))
            .await
            .expect("publish");
    }

    async fn wait_until(
        &self,
        what: &str,
        condition: impl Fn(&StatsSnapshot) -> bool,
    ) -> StatsSnapshot {
        if tokio::time::timeout(WAIT, self.stats.wait_until(&condition))
            .await
            .is_err()
        {
            panic!(
                "timed out waiting for {what}; stats {:?}; requests {:?}",
                self.stats.snapshot(),
                self.fake.requests().len()
            );
        }
        self.stats.snapshot()
    }

    async fn dead_letters(&self) -> Vec<DeadLetter> {
        self.bus
            .drain_dead_letters(DeadLetterQueue::Changes, 100)
            .await
            .expect("drain")
    }

    async fn stop(self) -> Result<(), PublishError> {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.worker)
            .await
            .expect("worker stops in time")
            .expect("worker task")
    }
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(1_700_000_000 + secs)
}

fn upsert(
    blueprint: &str,
    identifier: &str,
    observed: i64,
    properties: Value,
    origin: Origin,
) -> EntityChange {
    let entity = json!({"identifier": identifier, "title": identifier, "properties": properties, "relations": {}});
    EntityChange {
        origin,
        observed_at: at(observed),
        ..support::change(blueprint, identifier, ChangeOp::Upsert { entity })
    }
}

fn repo(identifier: &str, observed: i64) -> EntityChange {
    upsert(
        "azureDevopsRepository",
        identifier,
        observed,
        json!({"v": observed}),
        webhook(),
    )
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn forty_five_changes_go_out_as_twenty_twenty_five_and_are_all_acked() {
    let resync_id = ResyncId::new();
    let changes: Vec<EntityChange> = (0..45)
        .map(|i| {
            upsert(
                "azureDevopsRepository",
                &format!("r{i}"),
                0,
                json!({"n": i}),
                Origin::Resync { resync_id },
            )
        })
        .collect();
    let (fake, h) = Harness::start(config()).await;
    h.send(&changes).await;
    let stats = h.wait_until("45 acks", |s| s.acked == 45).await;
    assert_eq!(stats.upserted, 45);
    assert_eq!(stats.dead_lettered, 0);

    let bulk = fake.bulk_requests();
    let mut sizes: Vec<usize> = bulk.iter().map(|r| r.identifiers().len()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![5, 20, 20]);
    assert_eq!(stats.port_requests, 3);
    // A resync's upserts: one read of Port's current state for all 45 first (none there yet).
    assert_eq!((stats.port_reads, stats.compared), (1, 45));
    assert_eq!(fake.searches().len(), 1);
    for i in 0..45 {
        let entity = fake
            .entity("azureDevopsRepository", &format!("r{i}"))
            .expect("entity at Port");
        assert_eq!(entity["properties"]["n"], i);
    }
    let first = &bulk[0];
    assert_eq!(
        first.path,
        "/v1/blueprints/azureDevopsRepository/entities/bulk"
    );
    assert_eq!(first.query.get("upsert").map(String::as_str), Some("true"));
    assert_eq!(first.query.get("merge").map(String::as_str), Some("true"));
    assert_eq!(
        first
            .query
            .get("create_missing_related_entities")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(
        first.query.get("ocean_info_event_type").map(String::as_str),
        Some("resync")
    );
    assert_eq!(
        first.query.get("ocean_info_resync_id"),
        Some(&resync_id.to_string())
    );
    assert_eq!(first.authorization.as_deref(), Some("Bearer tok-1"));
    assert_eq!(
        first.user_agent.as_deref(),
        Some("port-ocean/azure-devops/0.12.2/test-ado/exporter")
    );
    // One token for all requests.
    assert_eq!(fake.tokens_issued.load(Ordering::SeqCst), 1);
    assert!(h.dead_letters().await.is_empty());
    h.stop().await.expect("clean stop");
}

#[tokio::test]
async fn one_bulk_request_takes_entities_from_every_partition() {
    let resync_id = ResyncId::new();
    let (fake, h) = Harness::start_scripted(config(), 8, |_| {}).await;
    // 15 entities spread over the 8 partitions, as transform routes them.
    let messages = (0..15u16)
        .map(|i| {
            let change = upsert(
                "azureDevopsRepository",
                &format!("r{i}"),
                0,
                json!({"n": i}),
                Origin::Resync { resync_id },
            );
            Outgoing::new(Destination::Change { partition: i % 8 }, encode(&change))
        })
        .collect();
    h.bus.publish_all(messages).await.expect("publish");
    let stats = h.wait_until("15 acks", |s| s.acked == 15).await;
    assert_eq!(stats.upserted, 15);
    let bulk = fake.bulk_requests();
    assert_eq!(
        bulk.len(),
        1,
        "one request for 15 entities of one blueprint, whatever their partitions: {:?}",
        bulk.iter().map(Recorded::identifiers).collect::<Vec<_>>()
    );
    assert_eq!(bulk[0].identifiers().len(), 15);
    assert_eq!(stats.port_requests, 1);
    h.stop().await.expect("clean stop");
}

#[tokio::test]
async fn prefetch_bounds_each_partition_and_everything_still_goes_out() {
    let mut cfg = config();
    cfg.prefetch = 3;
    let (fake, h) = Harness::start_scripted(cfg, 2, |_| {}).await;
    let messages = (0..40u16)
        .map(|i| {
            let change = repo(&format!("r{i}"), 1);
            Outgoing::new(Destination::Change { partition: i % 2 }, encode(&change))
        })
        .collect();
    h.bus.publish_all(messages).await.expect("publish");
    let stats = h.wait_until("40 acks", |s| s.acked == 40).await;
    assert_eq!(stats.upserted, 40);
    // At most 3 held per partition: no bulk request can carry more than 6 entities.
    for r in fake.bulk_requests() {
        assert!(r.identifiers().len() <= 6, "{:?}", r.identifiers());
    }
    h.stop().await.expect("clean stop");
}

#[tokio::test]
async fn entities_with_different_query_parameters_are_not_batched_together() {
    let (fake, h) = Harness::start(config()).await;
    let mut no_merge = repo("a", 1);
    no_merge.write.merge = false;
    h.send(&[
        no_merge,
        repo("b", 1),
        upsert("azureDevopsProject", "p", 1, json!({}), webhook()),
    ])
    .await;
    h.wait_until("3 acks", |s| s.acked == 3).await;
    let bulk = fake.bulk_requests();
    assert_eq!(bulk.len(), 3, "three distinct (blueprint, query) keys");
    for r in &bulk {
        assert_eq!(r.identifiers().len(), 1);
        assert_eq!(
            r.query.get("ocean_info_event_type").map(String::as_str),
            Some("http_request")
        );
        assert!(!r.query.contains_key("ocean_info_resync_id"));
    }
    let a = bulk
        .iter()
        .find(|r| r.identifiers() == ["a"])
        .expect("a sent");
    assert_eq!(a.query.get("merge").map(String::as_str), Some("false"));
    h.stop().await.expect("clean stop");
}

#[tokio::test]
async fn rate_limited_request_waits_for_retry_after_then_succeeds() {
    let (fake, h) = Harness::start_scripted(config(), 1, |fake| {
        lock(&fake.bulk_script).push_back(
            Reply::new(
                429,
                json!({"ok": false, "error": "rate_limit", "message": "slow down"}),
            )
            .header("retry-after", "1"),
        );
    })
    .await;
    h.send(&[repo("r1", 1)]).await;
    let stats = h.wait_until("1 ack", |s| s.acked == 1).await;
    assert_eq!(
        (stats.upserted, stats.retried, stats.dead_lettered),
        (1, 1, 0)
    );
    let bulk = fake.bulk_requests();
    assert_eq!(bulk.len(), 2);
    let waited = bulk[1].at.duration_since(bulk[0].at);
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    assert!(fake.entity("azureDevopsRepository", "r1").is_some());
    assert!(h.dead_letters().await.is_empty());
    h.stop().await.expect("clean stop");
}

#[tokio::test]
async fn transient_errors_are_retried_until_success() {
    // The two in one request: every batch waits out its linger.
    let mut cfg = config();
    cfg.send_when_idle = false;
    let (_, h) = Harness::start_scripted(cfg, 1, |fake| {
        for _ in 0..2 {
            lock(&fake.bulk_script).push_back(Reply::new(
                503,
                json!({"ok": false, "error": "unavailable"}),
            ));
        }
    })
    .await;
    h.send(&[repo("r1", 1), repo("r2", 1)]).await;
    let stats = h.wait_until("2 acks", |s| s.acked == 2).await;
    assert_eq!(
        (stats.retried, stats.dead_lettered, stats.port_requests),
        (2, 0, 3)
    );
    assert!(h.dead_letters().await.is_empty());
    h.stop().await.expect("clean stop");
}

#[tokio::test]
async fn server_error_forever_is_dead_lettered_after_max_attempts_with_status_and_body() {
    // The two in one request: every batch waits out its linger.
    let mut cfg = config();
    cfg.send_when_idle = false;
    let (fake, h) = Harness::start_scripted(cfg, 1, |fake| {
        *lock(&fake.bulk_always) = Some(Reply::new(
            500,
            json!({"ok": false, "error": "internal_error", "message": "database on fire"}),
        ));
    })
    .await;
    h.send(&[repo("r1", 1), repo("r2", 1)]).await;
    let stats = h
        .wait_until("2 dead letters", |s| s.dead_lettered == 2)
        .await;
    assert_eq!(stats.acked, 0);
    assert_eq!(stats.retried, 3);
    assert_eq!(fake.bulk_requests().len(), 4, "max_attempts = 4");
    let letters = h.dead_letters().await;
    assert_eq!(letters.len(), 2);
    for letter in &letters {
        assert_says(
            &letter.reason,
            &["HTTP 500", "database on fire", "trace-123", "4 attempts"],
        );
        assert_eq!(letter.origin_queue, "test.port.changes.p0");
    }
    h.stop().await.expect("clean stop");
}

#[tokio::test]
async fn partial_failure_dead_letters_only_the_rejected_entity() {
    // The three in one request: every batch waits out its linger.
    let mut cfg = config();
    cfg.send_when_idle = false;
    let (fake, h) = Harness::start_scripted(cfg, 1, |fake| {
        lock(&fake.reject).insert(
            "bad".into(),
            (
                422,
                "invalid_entity".into(),
                "property stars must be a number".into(),
            ),
        );
    })
    .await;
    h.send(&[repo("good1", 1), repo("bad", 1), repo("good2", 1)])
        .await;
    let stats = h
        .wait_until("2 acks and 1 dead letter", |s| {
            s.acked == 2 && s.dead_lettered == 1
        })
        .await;
    assert_eq!(stats.upserted, 2);
    assert_eq!(fake.bulk_requests().len(), 1, "a 422 is not retried");
    assert!(fake.entity("azureDevopsRepository", "good1").is_some());
    assert!(fake.entity("azureDevopsRepository", "good2").is_some());
    let letters = h.dead_letters().await;
    assert_eq!(letters.len(), 1);
    assert_says(
        &letters[0].reason,
        &["property stars must be a number", "bad", "422"],
    );
    let body: Value = serde_json::from_slice(&letters[0].body).expect("the original change");
    assert_eq!(body["identifier"], "bad");
    h.stop().await.expect("clean stop");
}

#[tokio::test]
async fn too_large_batch_is_split_in_halves_and_succeeds() {
    let padding = "x".repeat(200);
    let changes: Vec<EntityChange> = (0..10)
        .map(|i| {
            upsert(
                "azureDevopsRepository",
                &format!("r{i}"),
                1,
                json!({"pad": padding}),
                webhook(),
            )
        })
        .collect();
    let one = serde_json::to_vec(&match &changes[0].op {
        ChangeOp::Upsert { entity } => entity.clone(),
        ChangeOp::Delete => Value::Null,
    })
    .expect("json")
    .len();
    // The ten in one request first: every batch waits out its linger.
    let mut cfg = config();
    cfg.send_when_idle = false;
    let (fake, h) = Harness::start_scripted(cfg, 1, |fake| {
        // Ten do not fit, five do.
        *lock(&fake.max_body) = Some(one * 6);
    })
    .await;
    h.send(&changes).await;
    let stats = h.wait_until("10 acks", |s| s.acked == 10).await;
    assert_eq!((stats.upserted, stats.dead_lettered), (10, 0));
    let bulk = fake.bulk_requests();
    let sizes: Vec<usize> = bulk.iter().map(|r| r.identifiers().len()).collect();
    assert_eq!(sizes, vec![10, 5, 5]);
    assert!(bulk[0].body_bytes > one * 6 && bulk[1].body_bytes <= one * 6);
    for i in 0..10 {
        assert!(
            fake.entity("azureDevopsRepository", &format!("r{i}"))
                .is_some()
        );
    }
    h.stop().await.expect("clean stop");
}

#[tokio::test]
async fn entity_too_large_even_alone_is_dead_lettered_without_a_request() {
    let mut cfg = config();
    cfg.batch.max_bytes = 2_000;
    let (fake, h) = Harness::start(cfg).await;
    h.send(&[upsert(
        "azureDevopsRepository",
        "huge",
        1,
        json!({"pad": "x".repeat(3_000)}),
        webhook(),
    )])
    .await;
    h.wait_until("1 dead letter", |s| s.dead_lettered == 1)
        .await;
    assert!(fake.bulk_requests().is_empty());
    let letters = h.dead_letters().await;
    assert_says(&letters[0].reason, &["too large"]);
    h.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_401_refreshes_the_token_and_the_request_succeeds() {
    let (fake, h) = Harness::start_scripted(config(), 1, |fake| {
        lock(&fake.bulk_script).push_back(Reply::new(
            401,
            json!({"ok": false, "error": "unauthorized"}),
        ));
    })
    .await;
    h.send(&[repo("r1", 1)]).await;
    let stats = h.wait_until("1 ack", |s| s.acked == 1).await;
    assert_eq!(
        (stats.upserted, stats.dead_lettered, stats.retried),
        (1, 0, 0)
    );
    assert_eq!(fake.tokens_issued.load(Ordering::SeqCst), 2);
    let bulk = fake.bulk_requests();
    assert_eq!(bulk.len(), 2);
    assert_eq!(bulk[0].authorization.as_deref(), Some("Bearer tok-1"));
    assert_eq!(bulk[1].authorization.as_deref(), Some("Bearer tok-2"));
    h.stop().await.expect("clean stop");
}

#[tokio::test]
async fn bad_credentials_stop_the_worker_with_a_clear_error_and_lose_nothing() {
    let (fake, h) = Harness::start_scripted(config(), 1, |fake| {
        *lock(&fake.token_always) = Some(Reply::new(
            401,
            json!({"ok": false, "error": "invalid_credentials", "message": "Invalid client id or secret"}),
        ));
    })
    .await;
    h.send(&[repo("r1", 1)]).await;
    let result = tokio::time::timeout(WAIT, h.worker)
        .await
        .expect("worker stops by itself")
        .expect("task");
    let error = result.expect_err("auth failure is fatal");
    assert!(
        matches!(
            error,
            PublishError::Port(adoport_shared::port::PortError::Auth { status: 401, .. })
        ),
        "{error:?}"
    );
    let text = error.to_string();
    assert_says(
        &text,
        &["OCEAN__PORT__CLIENT_ID", "Invalid client id or secret"],
    );
    assert!(
        !text.contains("csecret"),
        "the secret never appears: {text}"
    );
    // Nothing dead-lettered, nothing sent: the change stays for a run with good credentials.
    assert_eq!(h.stats.snapshot().dead_lettered, 0);
    assert_eq!(h.stats.snapshot().acked, 0);
    assert!(fake.bulk_requests().is_empty());
    let token_request = &fake.requests()[0];
    assert_eq!(
        token_request.body,
        json!({"clientId": "cid", "clientSecret": "csecret"})
    );
}

#[tokio::test]
async fn stale_changes_are_not_sent() {
    let (fake, h) = Harness::start(config()).await;
    // e1: newer first, then older (stale). e2: older first, then newer (supersedes in the batch).
    h.send(&[
        repo("e1", 20),
        repo("e1", 10),
        repo("e2", 10),
        repo("e2", 20),
    ])
    .await;
    let stats = h.wait_until("4 acks", |s| s.acked == 4).await;
    assert_eq!(
        (stats.upserted, stats.skipped_stale, stats.dead_lettered),
        (2, 2, 0)
    );
    let sent: Vec<String> = fake
        .bulk_requests()
        .iter()
        .flat_map(|r| r.identifiers())
        .collect();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(
        fake.entity("azureDevopsRepository", "e1").expect("e1")["properties"]["v"],
        20
    );
    assert_eq!(
        fake.entity("azureDevopsRepository", "e2").expect("e2")["properties"]["v"],
        20
    );

    // After e1@20 was applied, a late e1@15 is acked and not sent.
    let requests_before = fake.bulk_requests().len();
    h.send(&[repo("e1", 15)]).await;
    let stats = h.wait_until("5 acks", |s| s.acked == 5).await;
    assert_eq!(stats.skipped_stale, 3);
    assert_eq!(fake.bulk_requests().len(), requests_before);
    assert_eq!(
        fake.entity("azureDevopsRepository", "e1").expect("e1")["properties"]["v"],
        20
    );
    h.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_newer_change_waits_for_the_in_flight_write_of_its_entity() {
    let slow = Duration::from_millis(400);
    let mut cfg = config();
    cfg.batch.linger = Duration::from_millis(10);
    let (fake, h) = Harness::start_scripted(cfg, 1, |fake| {
        lock(&fake.bulk_script).push_back(Reply::new(200, json!({"ok": true})).delayed(slow));
    })
    .await;
    h.send(&[repo("e1", 10)]).await;
    h.wait_until("the first request", |s| s.port_requests == 1)
        .await;
    h.send(&[repo("e1", 20)]).await;
    h.wait_until("2 acks", |s| s.acked == 2).await;
    let bulk = fake.bulk_requests();
    assert_eq!(bulk.len(), 2);
    assert_eq!(bulk[1].body["entities"][0]["properties"]["v"], 20);
    assert!(
        bulk[1].at.duration_since(bulk[0].at) >= slow,
        "the newer write started before the older one ended"
    );
    assert_eq!(
        fake.entity("azureDevopsRepository", "e1").expect("e1")["properties"]["v"],
        20
    );
    h.stop().await.expect("clean stop");
}

#[tokio::test]
async fn undecodable_and_unknown_version_messages_are_dead_lettered_with_the_reason() {
    let (fake, h) = Harness::start(config()).await;
    h.send_raw(br#"{"v": 99, "blueprint": "azureDevopsRepository", "identifier": "x"}"#)
        .await;
    h.send_raw(b"not json at all").await;
    h.wait_until("2 dead letters", |s| s.dead_lettered == 2)
        .await;
    let letters = h.dead_letters().await;
    assert_eq!(letters.len(), 2);
    assert_says(&letters[0].reason, &["schema version 99"]);
    assert_says(&letters[1].reason, &["\"v\""]);
    assert!(fake.requests().is_empty(), "nothing reaches Port");
    h.stop().await.expect("clean stop");
}

#[tokio::test]
async fn deletes_use_the_delete_endpoint_and_404_is_success() {
    let (fake, h) = Harness::start(config()).await;
    h.send(&[repo("keep", 1), repo("gone", 1)]).await;
    h.wait_until("2 acks", |s| s.acked == 2).await;
    // Deletes of a resync (the reconciliation's) need no ownership search.
    let delete = |identifier: &str| EntityChange {
        op: ChangeOp::Delete,
        origin: Origin::Resync {
            resync_id: ResyncId::new(),
        },
        ..repo(identifier, 2)
    };
    h.send(&[delete("gone"), delete("never-existed")]).await;
    let stats = h.wait_until("4 acks", |s| s.acked == 4).await;
    assert_eq!((stats.deleted, stats.dead_lettered), (2, 0));
    assert!(fake.entity("azureDevopsRepository", "gone").is_none());
    assert!(fake.entity("azureDevopsRepository", "keep").is_some());
    let deletes: Vec<Recorded> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 2);
    assert_eq!(
        deletes[0]
            .query
            .get("delete_dependents")
            .map(String::as_str),
        Some("true")
    );
    assert!(
        !fake
            .requests()
            .iter()
            .any(|r| r.path == "/v1/entities/search")
    );
    h.stop().await.expect("clean stop");
}

#[tokio::test]
async fn live_deletes_only_delete_entities_this_integration_owns() {
    let (fake, h) = Harness::start(config()).await;
    h.send(&[repo("ours", 1), repo("theirs", 1)]).await;
    h.wait_until("2 acks", |s| s.acked == 2).await;
    lock(&fake.foreign).insert(("azureDevopsRepository".into(), "theirs".into()));
    let delete = |identifier: &str| EntityChange {
        op: ChangeOp::Delete,
        ..repo(identifier, 2)
    };
    h.send(&[delete("ours"), delete("theirs"), delete("missing")])
        .await;
    let stats = h.wait_until("5 acks", |s| s.acked == 5).await;
    assert_eq!(stats.deleted, 1);
    assert_eq!(stats.skipped_not_owned, 2);
    assert_eq!(stats.dead_lettered, 0);
    assert!(fake.entity("azureDevopsRepository", "ours").is_none());
    assert!(fake.entity("azureDevopsRepository", "theirs").is_some());
    let requests = fake.requests();
    let searches: Vec<&Recorded> = requests
        .iter()
        .filter(|r| r.path == "/v1/entities/search")
        .collect();
    assert_eq!(searches.len(), 3, "one ownership search per live delete");
    // The search is the Python integration's: our datasource prefix and suffix.
    let rules = searches[0].body["rules"].as_array().expect("rules");
    for value in ["port-ocean/azure-devops/", "/test-ado/exporter"] {
        assert!(
            rules
                .iter()
                .any(|r| r["property"] == "$datasource" && r["value"] == value),
            "{rules:?}"
        );
    }
    let deletes: Vec<&Recorded> = requests.iter().filter(|r| r.method == "DELETE").collect();
    assert_eq!(deletes.len(), 1);
    assert!(deletes[0].path.ends_with("/ours"));
    h.stop().await.expect("clean stop");
}

#[tokio::test]
async fn shutdown_during_retries_returns_promptly_and_dead_letters_nothing() {
    let mut cfg = config();
    cfg.retry.max_attempts = 1_000;
    cfg.retry.min_delay = Duration::from_millis(200);
    cfg.retry.max_delay = Duration::from_secs(2);
    let (_, h) = Harness::start_scripted(cfg, 1, |fake| {
        *lock(&fake.bulk_always) = Some(Reply::new(503, json!({"ok": false})));
    })
    .await;
    h.send(&[repo("r1", 1)]).await;
    h.wait_until("a retry", |s| s.retried >= 1).await;
    let stats = h.stats.clone();
    let started = Instant::now();
    h.stop().await.expect("clean stop");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let s = stats.snapshot();
    assert_eq!(
        (s.acked, s.dead_lettered),
        (0, 0),
        "the change goes back to the broker"
    );
}

#[tokio::test]
async fn shutdown_flushes_open_batches() {
    let mut cfg = config();
    cfg.batch.linger = Duration::from_secs(3600);
    cfg.send_when_idle = false;
    let (fake, h) = Harness::start(cfg).await;
    h.send(&[repo("r1", 1), repo("r2", 1)]).await;
    h.wait_until("2 received", |s| s.received == 2).await;
    assert!(fake.bulk_requests().is_empty(), "still lingering");
    let stats = h.stats.clone();
    h.stop().await.expect("clean stop");
    assert_eq!(stats.snapshot().acked, 2);
    assert_eq!(fake.bulk_requests().len(), 1);
    assert_eq!(stats.snapshot().batches.held, 1);
}

#[tokio::test]
async fn an_idle_single_live_change_is_sent_at_once_not_after_its_linger() {
    let mut cfg = config();
    // Far longer than the test waits: only sending at once gets the change to Port.
    cfg.batch.linger = Duration::from_secs(3600);
    let (fake, h) = Harness::start(cfg).await;
    h.send(&[repo("r1", 1)]).await;
    let stats = h.wait_until("the change acked", |s| s.acked == 1).await;
    assert_eq!(
        stats.batches,
        adoport_publish::BatchesSent {
            idle: 1,
            ..Default::default()
        },
        "sent because nothing was in flight, not for its linger"
    );
    assert_eq!(fake.bulk_requests().len(), 1);
    assert!(fake.entity("azureDevopsRepository", "r1").is_some());
    h.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_change_that_came_during_a_request_goes_when_that_request_ends() {
    let slow = Duration::from_millis(300);
    let mut cfg = config();
    cfg.batch.linger = Duration::from_secs(3600);
    let (fake, h) = Harness::start_scripted(cfg, 1, |fake| {
        lock(&fake.bulk_script).push_back(Reply::new(200, json!({"ok": true})).delayed(slow));
    })
    .await;
    h.send(&[repo("r1", 1)]).await;
    h.wait_until("the first request", |s| s.port_requests == 1)
        .await;
    h.send(&[repo("r2", 1), repo("r3", 1)]).await;
    let stats = h.wait_until("3 acks", |s| s.acked == 3).await;
    assert_eq!(
        (
            stats.batches.idle,
            stats.batches.after_request,
            stats.batches.linger
        ),
        (1, 1, 0)
    );
    let bulk = fake.bulk_requests();
    assert_eq!(bulk.len(), 2);
    assert_eq!(bulk[1].identifiers(), ["r2", "r3"]);
    assert!(bulk[1].at.duration_since(bulk[0].at) >= slow);
    h.stop().await.expect("clean stop");
}

/// The fewest bulk requests for `n` entities, and five percent over it.
fn request_budget(n: usize) -> usize {
    n.div_ceil(20) * 105 / 100
}

#[tokio::test]
async fn a_first_sync_of_n_changes_makes_at_most_one_twentieth_plus_five_percent_bulk_requests() {
    let n = 1000;
    let resync_id = ResyncId::new();
    let (fake, h) = Harness::start_scripted(config(), 8, |_| {}).await;
    let messages = (0..n)
        .map(|i| {
            let change = resync_upsert(&format!("r{i}"), resync_id, 1, i as i64);
            Outgoing::new(
                Destination::Change {
                    partition: (i % 8) as u16,
                },
                encode(&change),
            )
        })
        .collect();
    h.bus.publish_all(messages).await.expect("publish");
    let stats = h
        .wait_until("every change acked", |s| s.acked == n as u64)
        .await;
    assert_eq!((stats.upserted, stats.dead_lettered), (n as u64, 0));
    let bulk = fake.bulk_requests();
    assert!(
        bulk.len() <= request_budget(n),
        "{} bulk requests for a first sync of {n} entities (budget {}): {:?}",
        bulk.len(),
        request_budget(n),
        bulk.iter()
            .map(|r| r.identifiers().len())
            .collect::<Vec<_>>()
    );
    h.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_burst_of_live_changes_fills_bulk_requests_while_one_is_in_flight() {
    let n = 1000;
    let slow = Duration::from_millis(500);
    let mut cfg = config();
    // The batches fill for what Port takes to answer, not for a linger.
    cfg.batch.linger = Duration::from_secs(3600);
    let (fake, h) = Harness::start_scripted(cfg, 1, |fake| {
        lock(&fake.bulk_script).push_back(Reply::new(200, json!({"ok": true})).delayed(slow));
    })
    .await;
    let changes: Vec<EntityChange> = (0..n).map(|i| repo(&format!("r{i}"), 1)).collect();
    h.send(&changes).await;
    let stats = h
        .wait_until("every change acked", |s| s.acked == n as u64)
        .await;
    assert_eq!((stats.upserted, stats.dead_lettered), (n as u64, 0));
    let bulk = fake.bulk_requests();
    assert!(
        bulk.len() <= request_budget(n),
        "{} bulk requests for a burst of {n} live changes (budget {}): {:?}",
        bulk.len(),
        request_budget(n),
        bulk.iter()
            .map(|r| r.identifiers().len())
            .collect::<Vec<_>>()
    );
    // The first went at once, alone; the rest filled up behind it.
    assert_eq!(bulk[0].identifiers(), ["r0"]);
    assert_eq!(stats.batches.idle, 1);
    assert_eq!(stats.batches.linger, 0);
    assert!(stats.batches.full >= 45, "{:?}", stats.batches);
    for i in 0..n {
        assert!(
            fake.entity("azureDevopsRepository", &format!("r{i}"))
                .is_some()
        );
    }
    h.stop().await.expect("clean stop");
}

fn resync_upsert(identifier: &str, resync_id: ResyncId, observed: i64, n: i64) -> EntityChange {
    upsert(
        "azureDevopsRepository",
        identifier,
        observed,
        json!({"n": n}),
        Origin::Resync { resync_id },
    )
}

#[tokio::test]
async fn a_resync_writes_only_what_port_does_not_hold_now() {
    let (fake, h) = Harness::start(config()).await;
    // Live changes are written as they come, even when Port holds them already.
    h.send(&[repo_n("a", 0, 1), repo_n("b", 0, 1)]).await;
    h.wait_until("2 upserts", |s| s.upserted == 2).await;
    h.send(&[repo_n("a", 1, 1)]).await;
    let stats = h.wait_until("3 upserts", |s| s.upserted == 3).await;
    assert_eq!((stats.port_reads, stats.skipped_unchanged), (0, 0));

    // A resync: a unchanged, b changed, c new. One read; only b and c are written.
    let first = ResyncId::new();
    let mark = fake.requests().len();
    h.send(&[
        resync_upsert("a", first, 2, 1),
        resync_upsert("b", first, 2, 2),
        resync_upsert("c", first, 2, 1),
    ])
    .await;
    let stats = h.wait_until("6 acks", |s| s.acked == 6).await;
    assert_eq!(
        (stats.port_reads, stats.compared, stats.skipped_unchanged),
        (1, 3, 1)
    );
    let mut written = fake.written_since(mark);
    written.sort();
    assert_eq!(written, ["b", "c"]);
    let search = &fake.searches()[0];
    assert_eq!(
        search
            .query
            .get("exclude_calculated_properties")
            .map(String::as_str),
        Some("true")
    );
    let rules = search.body["rules"].as_array().expect("rules");
    let ids = rules
        .iter()
        .find(|r| r["property"] == "$identifier")
        .expect("identifier rule");
    assert_eq!(ids["operator"], "in");
    assert_eq!(ids["value"], json!(["a", "b", "c"]));
    assert!(rules.iter().any(|r| r["property"] == "$blueprint"
        && r["operator"] == "="
        && r["value"] == "azureDevopsRepository"));
    for value in ["port-ocean/azure-devops/", "/test-ado/exporter"] {
        assert!(
            rules.iter().any(|r| r["property"] == "$datasource"
                && r["operator"] == "contains"
                && r["value"] == value),
            "{rules:?}"
        );
    }

    // Behind our back: a deleted, b's property edited. The same resync again repairs both,
    // though this process wrote them itself: what counts is what Port holds now.
    lock(&fake.entities).remove(&("azureDevopsRepository".into(), "a".into()));
    lock(&fake.entities)
        .get_mut(&("azureDevopsRepository".into(), "b".into()))
        .expect("b")["properties"]["n"] = json!(99);
    let second = ResyncId::new();
    let mark = fake.requests().len();
    h.send(&[
        resync_upsert("a", second, 3, 1),
        resync_upsert("b", second, 3, 2),
        resync_upsert("c", second, 3, 1),
    ])
    .await;
    let stats = h.wait_until("9 acks", |s| s.acked == 9).await;
    assert_eq!((stats.port_reads, stats.skipped_unchanged), (2, 2));
    let mut written = fake.written_since(mark);
    written.sort();
    assert_eq!(written, ["a", "b"]);
    assert_eq!(
        fake.entity("azureDevopsRepository", "b").expect("b")["properties"]["n"],
        2
    );
    assert!(fake.entity("azureDevopsRepository", "a").is_some());
    assert!(h.dead_letters().await.is_empty());
    h.stop().await.expect("clean stop");
}

fn repo_n(identifier: &str, observed: i64, n: i64) -> EntityChange {
    upsert(
        "azureDevopsRepository",
        identifier,
        observed,
        json!({"n": n}),
        webhook(),
    )
}

#[tokio::test]
async fn a_fresh_publisher_decides_from_port_not_from_memory() {
    let (fake, url) = start_fake().await;
    let resync = |observed| {
        let id = ResyncId::new();
        (0..30)
            .map(|i| resync_upsert(&format!("r{i}"), id, observed, i))
            .collect::<Vec<_>>()
    };
    let first = Harness::start_on(fake.clone(), &url, config(), 1).await;
    first.send(&resync(0)).await;
    first.wait_until("30 upserts", |s| s.upserted == 30).await;
    first.stop().await.expect("clean stop");

    // Another process (a restart, or the replica a partition moved to) knows nothing.
    let mark = fake.requests().len();
    let second = Harness::start_on(fake.clone(), &url, config(), 1).await;
    second.send(&resync(1)).await;
    let stats = second.wait_until("30 acks", |s| s.acked == 30).await;
    assert_eq!(
        (stats.upserted, stats.skipped_unchanged, stats.port_reads),
        (0, 30, 1)
    );
    assert!(fake.written_since(mark).is_empty());
    second.stop().await.expect("clean stop");
}

#[tokio::test]
async fn check_groups_read_a_hundred_entities_at_a_time() {
    let mut cfg = config();
    cfg.prefetch = 300;
    let (fake, h) = Harness::start(cfg).await;
    let id = ResyncId::new();
    let changes: Vec<EntityChange> = (0..250)
        .map(|i| resync_upsert(&format!("r{i}"), id, 0, i))
        .collect();
    h.send(&changes).await;
    let stats = h.wait_until("250 acks", |s| s.acked == 250).await;
    let mut read_sizes: Vec<usize> = fake
        .searches()
        .iter()
        .map(Recorded::identifiers_read)
        .collect();
    read_sizes.sort_unstable();
    assert_eq!(read_sizes, vec![50, 100, 100]);
    // Written within the bulk limits: 5 + 5 + 3 requests.
    assert_eq!((stats.port_reads, stats.port_requests), (3, 13));
    assert!(
        fake.bulk_requests()
            .iter()
            .all(|r| r.identifiers().len() <= 20)
    );
    h.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_failing_read_is_retried_and_never_taken_as_unchanged() {
    let (fake, h) = Harness::start(config()).await;
    h.send(&[repo_n("a", 0, 1)]).await;
    h.wait_until("1 upsert", |s| s.upserted == 1).await;
    // Two 503s, then Port answers: the read is retried and then decides.
    for _ in 0..2 {
        lock(&fake.search_script).push_back(Reply::new(503, json!({"ok": false})));
    }
    h.send(&[resync_upsert("a", ResyncId::new(), 1, 1)]).await;
    let stats = h.wait_until("2 acks", |s| s.acked == 2).await;
    assert_eq!(
        (
            stats.port_reads,
            stats.retried,
            stats.skipped_unchanged,
            stats.upserted
        ),
        (3, 2, 1, 1)
    );
    // Port never answers: the change is dead-lettered with the reason, not acked as unchanged.
    for _ in 0..4 {
        lock(&fake.search_script).push_back(Reply::new(
            500,
            json!({"ok": false, "error": "internal_error", "message": "search is down"}),
        ));
    }
    let mark = fake.requests().len();
    h.send(&[resync_upsert("a", ResyncId::new(), 2, 1)]).await;
    let stats = h
        .wait_until("1 dead letter", |s| s.dead_lettered == 1)
        .await;
    assert_eq!((stats.skipped_unchanged, stats.acked), (1, 2));
    assert!(fake.written_since(mark).is_empty());
    let letters = h.dead_letters().await;
    assert_says(
        &letters[0].reason,
        &["4 attempts", "search is down", "read of the current state"],
    );
    h.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_read_port_refuses_leads_to_writing_without_comparing() {
    let (fake, h) = Harness::start(config()).await;
    h.send(&[repo_n("a", 0, 1)]).await;
    h.wait_until("1 upsert", |s| s.upserted == 1).await;
    lock(&fake.search_script).push_back(Reply::new(
        422,
        json!({"ok": false, "error": "invalid_request", "message": "bad query"}),
    ));
    h.send(&[resync_upsert("a", ResyncId::new(), 1, 1)]).await;
    let stats = h.wait_until("2 upserts", |s| s.upserted == 2).await;
    assert_eq!(
        (stats.port_reads, stats.retried, stats.skipped_unchanged),
        (1, 0, 0)
    );
    assert!(h.dead_letters().await.is_empty());
    h.stop().await.expect("clean stop");
}

#[tokio::test]
async fn an_identical_entity_another_datasource_owns_is_written_to_take_it_over() {
    let (fake, h) = Harness::start(config()).await;
    h.send(&[repo_n("a", 0, 1), repo_n("b", 0, 1)]).await;
    h.wait_until("2 upserts", |s| s.upserted == 2).await;
    // b now belongs to someone else in Port, with exactly our content.
    lock(&fake.foreign).insert(("azureDevopsRepository".into(), "b".into()));
    let mark = fake.requests().len();
    let id = ResyncId::new();
    h.send(&[resync_upsert("a", id, 1, 1), resync_upsert("b", id, 1, 1)])
        .await;
    let stats = h.wait_until("4 acks", |s| s.acked == 4).await;
    assert_eq!(stats.skipped_unchanged, 1);
    assert_eq!(fake.written_since(mark), ["b"]);
    h.stop().await.expect("clean stop");
}

#[tokio::test]
async fn upserts_naming_a_relation_by_search_query_are_written_without_a_read() {
    let (_, h) = Harness::start(config()).await;
    let mut change = resync_upsert("a", ResyncId::new(), 0, 1);
    change.op = ChangeOp::Upsert {
        entity: json!({"identifier": "a", "properties": {}, "relations": {
            "project": {"combinator": "and", "rules": [{"property": "name", "operator": "=", "value": "p"}]}
        }}),
    };
    h.send(&[change.clone()]).await;
    h.wait_until("1 upsert", |s| s.upserted == 1).await;
    change.observed_at = at(1);
    h.send(&[change]).await;
    let stats = h.wait_until("2 upserts", |s| s.upserted == 2).await;
    assert_eq!((stats.port_reads, stats.compared), (0, 0));
    h.stop().await.expect("clean stop");
}

#[tokio::test]
async fn open_groups_go_at_once_when_every_partition_holds_its_prefetch() {
    let mut cfg = config();
    cfg.prefetch = 3;
    // Lingers far longer than the test waits: only full partitions with nothing in flight can
    // close a group (9 changes per partition: three rounds of 3 + 3).
    cfg.check.linger = Duration::from_secs(3600);
    let (fake, h) = Harness::start_scripted(cfg, 2, |_| {}).await;
    let id = ResyncId::new();
    let messages = (0..18u16)
        .map(|i| {
            let change = resync_upsert(&format!("r{i}"), id, 0, i64::from(i));
            Outgoing::new(Destination::Change { partition: i % 2 }, encode(&change))
        })
        .collect();
    h.bus.publish_all(messages).await.expect("publish");
    let stats = h.wait_until("18 upserts", |s| s.upserted == 18).await;
    assert_eq!(stats.port_reads, 3, "{stats:?}");
    for search in fake.searches() {
        let ids = search.identifiers_read();
        assert_eq!(ids, 6, "what both partitions hold, read at once");
    }
    h.stop().await.expect("clean stop");
}
