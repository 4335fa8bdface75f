//! The Port simulator: an in-memory catalog behind Port's `/v1` API, on `http://127.0.0.1:PORT`
//! (the equivalent of `https://api.getport.io`).
//!
//! Every request goes through the same gate, in this order: count it under its route template,
//! apply a scripted answer if one is queued ([`PortSim::fail_next`]), take one request from the
//! rate-limit budget (429 + `Retry-After` when spent), check the bearer token (except on the
//! token route). Every answer carries `x-trace-id` and `x-ratelimit-{limit,remaining,reset,period}`.
//! Request bodies above 1 MiB get 413.
//!
//! Route template keys, as [`PortSim::requests`] reports them and [`PortSim::fail_next`] takes
//! them:
//!
//! | key | answer |
//! |---|---|
//! | `POST /v1/auth/access_token` | `{ok, accessToken, expiresIn: 10800, tokenType: "Bearer"}`; 401 for wrong credentials |
//! | `POST /v1/blueprints/{bp}/entities/bulk` | bulk upsert of 1..20 entities: 200, or 207 with `errors` |
//! | `POST /v1/blueprints/{bp}/entities` | single upsert: 201 `{ok, entity}` |
//! | `GET /v1/blueprints/{bp}/entities` | every entity of the blueprint |
//! | `GET /v1/blueprints/{bp}/entities/{id}` | one entity, 404 `not_found` |
//! | `DELETE /v1/blueprints/{bp}/entities/{id}` | delete (`delete_dependents`), 404 `not_found` |
//! | `POST /v1/blueprints/{bp}/bulk/entities/delete` | `{entities: [≤100 ids]}` → `{ok, deletedEntities}` |
//! | `POST /v1/blueprints/{bp}/entities/search` | `{query?, limit ≤1000, from?}` → `{ok, entities, next}` |
//! | `POST /v1/entities/search` | `{combinator, rules}` → `{ok, entities}`, not paged (`include=` query filters fields; `exclude_calculated_properties` is accepted: the simulator has no calculated properties) |
//! | `POST /v1/blueprints/entities/datasource-entities` | `{datasource_prefix, datasource_suffix, limit, before, from?}` → `{ok, entities, next}` |
//! | `GET /v1/blueprints`, `POST /v1/blueprints` | blueprints defined through the API |
//! | `GET /v1/blueprints/{bp}`, `PATCH /v1/blueprints/{bp}` | one blueprint |
//! | `POST /v1/blueprints/{bp}/scorecards` | 201 `{ok, scorecard}`; 404 for an unknown blueprint, 409 for a taken identifier; see [`PortSim::scorecards`] |
//! | `POST /v1/pages` | 201 `{ok, page}`; 409 for a taken identifier; see [`PortSim::pages`] |
//! | `GET /v1/integration/{id}` | `{ok, integration: {identifier, installationAppType, config, resyncState, …}}`, 404 when not installed |
//! | `POST /v1/integration` | create (409 when it exists) |
//! | `PATCH /v1/integration/{id}` | update fields, recorded, see [`PortSim::integration_patches`]; an empty body requests a resync |
//! | `PATCH /v1/integration/{id}/config` | `{config}` |
//! | `PATCH /v1/integration/{id}/resync-state` | recorded, see [`PortSim::resync_states`] |
//! | `GET /v1/integration/{id}/resync-request` | `{ok, request: {updatedAt}}` |
//! | `GET`, `PUT`, `POST /v1/integration/{id}/cursor?kind=&index=` | incremental sync cursors (see `cursors`), see [`PortSim::cursor`] |
//! | `POST /v1/integration/{id}/kinds/{kind}/examples` | `{examples}` recorded, see [`PortSim::examples`] |
//! | `POST /v1/metrics-ingest/{id}/syncMetrics` | `{syncKindsMetrics}` recorded, see [`PortSim::sync_metrics`] (Ocean's pseudo-kinds `__runtime__`, `__reconciliation__`: [`PortSim::pseudo_kind_metrics`]); the integration's `metricAttributes.ingestUrl` points here after [`PortSim::enable_sync_metrics`] |
//! | `PUT /v1/metrics-ingest/{id}/syncMetrics/resync/{event}/kind/{kind}` | `{syncKindMetrics}` recorded, see [`PortSim::kind_sync_metrics`] (pseudo-kinds: [`PortSim::pseudo_kind_metrics`]) |
//! | `POST /v1/metrics-ingest/{id}/heartbeat` | `{eventId}` recorded, see [`PortSim::metrics_heartbeats`] |
//! | `POST /v1/logs-ingest/{id}` | `{logs: [{message, level, timestamp, extra}]}` recorded, see [`PortSim::log_shipments`]; the integration's `logAttributes.ingestUrl` points here after [`PortSim::enable_log_ingest`] |
//! | `… /v1/actions/runs…` | action runs: claim, ack, patch, logs (see `action_runs`) |
//! | `{METHOD} <unmatched>` | 404 `not_found` |
//!
//! Ownership: an entity's `$datasource` is the User-Agent of its last write. `team` is stored
//! (and answered) as an array of names, whatever shape it was written in. Tests change the
//! catalog behind the client's back as a user would ([`PortSim::delete_entity`] with or without
//! cascade, [`PortSim::delete_all_entities`], [`PortSim::edit_entity`], [`PortSim::put_entity`]). Blueprints need
//! no definition; a blueprint defined through `POST /v1/blueprints` (or
//! [`PortSim::define_blueprint`]) has its relation targets checked (404 `not_found` per entity
//! without `create_missing_related_entities=true`, stubs created with it), and
//! [`PortSim::mark_blueprint_unknown`] makes a blueprint answer 404.

mod action_runs;
mod auth;
mod cursors;
mod error;
mod integration;
mod limit;
mod presentation;
mod request;
mod routes;
mod store;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::scripted::ScriptedAnswer;
use crate::server::Server;
use crate::traffic::{Traffic, lock};

/// How the simulated Port is set up.
#[derive(Clone, Debug)]
pub struct PortSimConfig {
    /// The accepted client id (default `"sim-client"`).
    pub client_id: String,
    /// The accepted client secret (default `"sim-secret"`).
    pub client_secret: String,
    /// The installed integration's identifier (default `"azure-devops"`).
    pub integration_identifier: String,
    /// The port-app-config served as `integration.config`; `None` → the integration is not
    /// installed (`GET /v1/integration/{id}` answers 404 until a `POST /v1/integration`).
    pub integration_config: Option<Value>,
    /// `None` = unlimited.
    pub rate_limit: Option<RateLimit>,
    /// How long every answer that is not refused (429, 401, scripted) takes: Port's own server
    /// and network time (default 0). Requests overlap: each waits its own latency.
    pub latency: Duration,
    /// Record every upsert per entity, in the order applied ([`PortSim::writes`]); off by
    /// default (it grows with every write).
    pub record_writes: bool,
    /// How long an upsert request takes before it is applied (a slower Port: requests
    /// overlap, and some are in flight when a client dies).
    pub write_latency: Duration,
    /// Up to this much more, varying from request to request (so that a request sent later
    /// can be applied earlier, as on a real network).
    pub write_jitter: Duration,
}

impl Default for PortSimConfig {
    fn default() -> Self {
        Self {
            client_id: "sim-client".to_string(),
            client_secret: "sim-secret".to_string(),
            integration_identifier: "azure-devops".to_string(),
            integration_config: None,
            rate_limit: None,
            latency: Duration::ZERO,
            record_writes: false,
            write_latency: Duration::ZERO,
            write_jitter: Duration::ZERO,
        }
    }
}

/// Port unavailable as a whole (an outage or an incident), set with [`PortSim::set_outage`]:
/// every request, on every route (the token route included), gets the outage's answer instead
/// of being served. Scripted answers stay queued until it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortOutage {
    /// 500 and 503, alternately, with Port's error body.
    Unavailable,
    /// 429 with `Retry-After: retry_after_secs`, as Port answers a caller it throttles.
    RateLimited { retry_after_secs: u64 },
}

/// A fixed-window budget: `requests` per `per`, counted over every route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub per: Duration,
}

#[derive(Debug)]
pub(crate) struct PortState {
    pub(crate) config: PortSimConfig,
    pub(crate) catalog: Mutex<store::Catalog>,
    pub(crate) integrations: Mutex<integration::Integrations>,
    pub(crate) tokens: Mutex<auth::Tokens>,
    pub(crate) window: Mutex<limit::Window>,
    pub(crate) traffic: Traffic,
    pub(crate) action_runs: Mutex<action_runs::ActionRuns>,
    pub(crate) presentation: Mutex<presentation::Presentation>,
    /// Upsert requests answered so far (picks each one's jitter).
    pub(crate) upserts: std::sync::atomic::AtomicU64,
    /// The outage in force, if any, and the answers it has given.
    pub(crate) outage: Mutex<(Option<PortOutage>, u64)>,
    /// Identifiers whose upserts are refused (422 in the bulk answer's errors).
    pub(crate) refused: Mutex<std::collections::BTreeSet<String>>,
    /// Incremental sync cursors (see `cursors`).
    pub(crate) cursors: Mutex<cursors::Cursors>,
}

/// A running Port simulator. Dropping it (or [`PortSim::shutdown`]) stops the server.
#[derive(Debug)]
pub struct PortSim {
    state: Arc<PortState>,
    server: Server,
}

impl PortSim {
    /// Serves an empty catalog on `127.0.0.1:0`.
    pub async fn start(config: PortSimConfig) -> std::io::Result<PortSim> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        Self::start_on(config, listener).await
    }

    /// Serves an empty catalog on `listener`.
    pub async fn start_on(
        config: PortSimConfig,
        listener: tokio::net::TcpListener,
    ) -> std::io::Result<PortSim> {
        let mut catalog = store::Catalog::default();
        if config.record_writes {
            catalog.record_writes();
        }
        let state = Arc::new(PortState {
            integrations: Mutex::new(integration::Integrations::new(
                &config.integration_identifier,
                config.integration_config.clone(),
            )),
            window: Mutex::new(limit::Window::new(config.rate_limit)),
            catalog: Mutex::new(catalog),
            tokens: Mutex::default(),
            traffic: Traffic::default(),
            action_runs: Mutex::default(),
            presentation: Mutex::default(),
            upserts: Default::default(),
            outage: Mutex::default(),
            refused: Mutex::default(),
            cursors: Mutex::default(),
            config,
        });
        let server = Server::spawn(listener, routes::router(Arc::clone(&state)))?;
        Ok(PortSim { state, server })
    }

    /// `http://127.0.0.1:PORT` (what `OCEAN__PORT__BASE_URL` takes).
    pub fn base_url(&self) -> String {
        let addr = self.server.addr();
        if addr.ip().is_unspecified() {
            format!("http://127.0.0.1:{}", addr.port())
        } else {
            format!("http://{addr}")
        }
    }

    /// The stored entities of a blueprint, by identifier, in Port's shape plus the meta
    /// fields `$identifier $blueprint $title $datasource $createdAt $updatedAt`.
    pub fn entities(&self, blueprint: &str) -> Vec<Value> {
        lock(&self.state.catalog)
            .of_blueprint(blueprint)
            .map(store::Stored::with_meta)
            .collect()
    }

    /// Every stored entity of every blueprint (with meta fields), by blueprint and identifier.
    pub fn all_entities(&self) -> Vec<Value> {
        lock(&self.state.catalog)
            .all()
            .map(store::Stored::with_meta)
            .collect()
    }

    /// One stored entity (with meta fields).
    pub fn entity(&self, blueprint: &str, identifier: &str) -> Option<Value> {
        lock(&self.state.catalog)
            .get(blueprint, identifier)
            .map(store::Stored::with_meta)
    }

    /// Entities stored of one blueprint (without copying them, unlike [`PortSim::entities`]).
    pub fn blueprint_entity_count(&self, blueprint: &str) -> usize {
        lock(&self.state.catalog).of_blueprint(blueprint).count()
    }

    /// Every upsert applied per (blueprint, identifier), in order, as the entity stood after
    /// it (with [`PortSimConfig::record_writes`]; empty otherwise): what order a client's
    /// writes of one entity reached Port in.
    pub fn writes(&self) -> BTreeMap<(String, String), Vec<Value>> {
        lock(&self.state.catalog).writes()
    }

    /// Every entity deleted since the start, `(blueprint, identifier)` in the order Port
    /// deleted them (through the API or [`PortSim::delete_entity`], cascades included): an
    /// entity deleted and written again later shows here though the catalog holds it.
    pub fn deletions(&self) -> Vec<(String, String)> {
        lock(&self.state.catalog).deletions()
    }

    /// Entities stored over all blueprints.
    pub fn entity_count(&self) -> usize {
        lock(&self.state.catalog).count()
    }

    /// Deletes an entity as a user does in Port's UI; with `delete_dependents`, the entities
    /// whose relations point at it go too, as Port cascades (relations of blueprints defined
    /// through the API or [`PortSim::define_blueprint`]). Answers every `(blueprint,
    /// identifier)` deleted (none when it did not exist), or Port's message when it has
    /// dependents and `delete_dependents` is false.
    pub fn delete_entity(
        &self,
        blueprint: &str,
        identifier: &str,
        delete_dependents: bool,
    ) -> Result<Vec<(String, String)>, String> {
        let deleted = lock(&self.state.catalog)
            .delete_cascading(blueprint, identifier, delete_dependents)
            .map_err(|e| e.message);
        self.state.traffic.touch();
        deleted
    }

    /// Deletes every entity (a user emptying the catalog); answers how many there were.
    pub fn delete_all_entities(&self) -> usize {
        let count = lock(&self.state.catalog).clear();
        self.state.traffic.touch();
        count
    }

    /// Edits an entity as a user does in Port's UI: `changes` sets `title`, `icon`, `team`, and
    /// the `properties` and `relations` it names. The `$datasource` stays as it was, so only
    /// the content tells that the entity changed. False when the entity does not exist.
    pub fn edit_entity(&self, blueprint: &str, identifier: &str, changes: Value) -> bool {
        let edited = lock(&self.state.catalog).edit(blueprint, identifier, &changes, "user");
        self.state.traffic.touch();
        edited
    }

    /// Creates (or replaces) an entity as another writer does: `datasource` is its `$datasource`
    /// (a writer's User-Agent; `None` for an entity made in the UI without one). Port's answer
    /// when the entity is invalid.
    pub fn put_entity(
        &self,
        blueprint: &str,
        entity: Value,
        datasource: Option<&str>,
    ) -> Result<(), String> {
        let input = store::parse_entity(&entity).map_err(|(_, e)| e.message)?;
        let options = store::UpsertOptions {
            upsert: true,
            merge: false,
            create_missing_related_entities: true,
        };
        let written = lock(&self.state.catalog)
            .upsert(blueprint, input, options, datasource, "user")
            .map(|_| ())
            .map_err(|e| e.message);
        self.state.traffic.touch();
        written
    }

    /// Requests received, per route template key (see the module docs for the keys).
    pub fn requests(&self) -> BTreeMap<String, u64> {
        self.state.traffic.counts()
    }

    /// Starts (`Some`) or ends (`None`) an outage of the whole of Port.
    pub fn set_outage(&self, outage: Option<PortOutage>) {
        lock(&self.state.outage).0 = outage;
        self.state.traffic.touch();
    }

    /// Requests answered by an outage instead of being served, since the start.
    pub fn outage_answers(&self) -> u64 {
        lock(&self.state.outage).1
    }

    /// Round trips one after another so far: the longest chain of requests each of which
    /// arrived after the one before it was answered (requests sent together are one round).
    /// A client's wall time at a latency, without the clock.
    pub fn rounds(&self) -> u64 {
        self.state.traffic.rounds()
    }

    /// Requests received in total (including refused, limited and unmatched ones).
    pub fn total_requests(&self) -> u64 {
        self.state.traffic.total()
    }

    /// The next `answers.len()` requests on `route` (e.g.
    /// `"POST /v1/blueprints/{bp}/entities/bulk"`) get these answers; they take precedence over
    /// the rate limit and the token check.
    pub fn fail_next(&self, route: &str, answers: Vec<ScriptedAnswer>) {
        self.state.traffic.script(route, answers);
    }

    /// Waits until `predicate` holds, re-checking after every answered request and every
    /// change made through this handle; false when `timeout` passes first.
    pub async fn wait_for(&self, predicate: impl Fn(&PortSim) -> bool, timeout: Duration) -> bool {
        self.state
            .traffic
            .wait_for(|| predicate(self), timeout)
            .await
    }

    /// The integration object as `GET /v1/integration/{id}` returns it.
    pub fn integration(&self, identifier: &str) -> Option<Value> {
        lock(&self.state.integrations).get(identifier).cloned()
    }

    /// From now on, every upsert of an entity with this identifier is refused with 422 (in the
    /// bulk answer's `errors`, as Port answers an entity that breaks its blueprint's schema).
    pub fn refuse_upserts_of(&self, identifier: &str) {
        lock(&self.state.refused).insert(identifier.to_string());
    }

    /// Every resync-state report received with the number of entities the catalog held when
    /// it came (what a user polling the state would find in Port at that moment).
    pub fn resync_states_with_entity_counts(&self) -> Vec<(Value, usize)> {
        let integrations = lock(&self.state.integrations);
        integrations
            .resync_states
            .iter()
            .cloned()
            .zip(integrations.resync_state_entities.iter().copied())
            .collect()
    }

    /// Every resync-state report received (`PATCH /v1/integration/{id}/resync-state` bodies).
    pub fn resync_states(&self) -> Vec<Value> {
        lock(&self.state.integrations).resync_states.clone()
    }

    /// Every `PATCH /v1/integration/{id}` body applied (404s for an unknown integration are
    /// not), in order.
    pub fn integration_patches(&self) -> Vec<Value> {
        lock(&self.state.integrations).patches.clone()
    }

    /// Installs an integration as another program (the Python integration, say) left it: the
    /// object `GET /v1/integration/{id}` answers is `record` over the simulator's defaults.
    pub fn install_integration(&self, record: Value) {
        let identifier = self.state.config.integration_identifier.clone();
        {
            let mut integrations = lock(&self.state.integrations);
            let create =
                serde_json::json!({"installationId": identifier, "config": {"resources": []}});
            integrations.create(&create);
            integrations.patch(&identifier, &record);
        }
        self.state.traffic.touch();
    }

    /// Gives the installed integration `metricAttributes.ingestUrl` (this simulator's
    /// `/v1/metrics-ingest/{id}`), as Port's record has, so that sync metrics are sent.
    pub fn enable_sync_metrics(&self) {
        let identifier = self.state.config.integration_identifier.clone();
        self.move_sync_metrics(&identifier);
    }

    /// Points the installed integration's `metricAttributes.ingestUrl` at
    /// `/v1/metrics-ingest/{ingest}`, which takes metrics from now on (the old one too), as
    /// Port moving an integration's metrics ingest would.
    pub fn move_sync_metrics(&self, ingest: &str) {
        let identifier = self.state.config.integration_identifier.clone();
        let url = format!("{}/v1/metrics-ingest/{ingest}", self.base_url());
        let body = serde_json::json!({"metricAttributes": {"ingestUrl": url}});
        {
            let mut integrations = lock(&self.state.integrations);
            integrations.metrics_ingests.insert(ingest.to_string());
            integrations.patch(&identifier, &body);
        }
        self.state.traffic.touch();
    }

    /// The metrics ingest id (`/v1/metrics-ingest/{id}`) each `POST …/syncMetrics` came to,
    /// in the order of [`PortSim::sync_metrics`].
    pub fn sync_metrics_ingests(&self) -> Vec<String> {
        lock(&self.state.integrations).sync_metrics_ingest.clone()
    }

    /// Gives the installed integration `logAttributes` (`ingestId`, and `ingestUrl`: this
    /// simulator's `/v1/logs-ingest/{id}`), as Port's record has, so that log lines are
    /// shipped.
    pub fn enable_log_ingest(&self) {
        let identifier = self.state.config.integration_identifier.clone();
        let url = format!("{}/v1/logs-ingest/{identifier}", self.base_url());
        let body = serde_json::json!({"logAttributes": {"ingestId": identifier, "ingestUrl": url}});
        lock(&self.state.integrations).patch(&identifier, &body);
        self.state.traffic.touch();
    }

    /// The scorecards created through `POST /v1/blueprints/{bp}/scorecards`: (blueprint,
    /// identifier) → the scorecard as created (with its `blueprint`).
    pub fn scorecards(&self) -> BTreeMap<(String, String), Value> {
        lock(&self.state.presentation).scorecards.clone()
    }

    /// The pages created through `POST /v1/pages`: identifier → the page as created.
    pub fn pages(&self) -> BTreeMap<String, Value> {
        lock(&self.state.presentation).pages.clone()
    }

    /// Every log shipment's `logs`, in order (one entry per `POST` to the log ingest URL).
    pub fn log_shipments(&self) -> Vec<Vec<Value>> {
        lock(&self.state.integrations).log_shipments.clone()
    }

    /// Every log line received, in order.
    pub fn log_lines(&self) -> Vec<Value> {
        self.log_shipments().into_iter().flatten().collect()
    }

    /// Every `syncKindsMetrics` of mapping resources received, in order (one per `POST
    /// …/syncMetrics`; Ocean's pseudo-kinds are in [`PortSim::pseudo_kind_metrics`]).
    pub fn sync_metrics(&self) -> Vec<Vec<Value>> {
        lock(&self.state.integrations).sync_metrics.clone()
    }

    /// Every event of Ocean's pseudo-kinds (`__runtime__`, `__reconciliation__`), `POST`ed to
    /// `…/syncMetrics` or `PUT` to `…/kind/{kindIdentifier}`, in order: the method, the
    /// metrics ingest id it came to, and the event.
    pub fn pseudo_kind_metrics(&self) -> Vec<(&'static str, String, Value)> {
        lock(&self.state.integrations).pseudo_kind_metrics.clone()
    }

    /// Every per-resource `PUT …/syncMetrics/resync/{eventId}/kind/{kindIdentifier}` (Ocean's
    /// pseudo-kinds are in [`PortSim::pseudo_kind_metrics`]): the event id
    /// and kind identifier of its path, and its `syncKindMetrics`, in order.
    pub fn kind_sync_metrics(&self) -> Vec<(String, String, Value)> {
        lock(&self.state.integrations).kind_sync_metrics.clone()
    }

    /// Every heartbeat's `eventId`, in order.
    pub fn metrics_heartbeats(&self) -> Vec<String> {
        lock(&self.state.integrations).heartbeats.clone()
    }

    /// The raw-data examples last received for a kind.
    pub fn examples(&self, kind: &str) -> Vec<Value> {
        lock(&self.state.integrations)
            .examples
            .get(kind)
            .cloned()
            .unwrap_or_default()
    }

    /// Replaces the configured integration's config (the mapping), as a user editing it in
    /// Port would; creates the integration if it was not installed.
    pub fn set_integration_config(&self, config: Value) {
        {
            let identifier = &self.state.config.integration_identifier;
            let mut integrations = lock(&self.state.integrations);
            let body = serde_json::json!({"config": config});
            if integrations.patch(identifier, &body).is_none() {
                let create =
                    serde_json::json!({"installationId": identifier, "config": body["config"]});
                integrations.create(&create);
            }
        }
        self.state.traffic.touch();
    }

    /// Moves the resync-request time to now (Port's "resync" button).
    pub fn request_resync(&self) {
        lock(&self.state.integrations).request_resync();
        self.state.traffic.touch();
    }

    /// Invalidates every issued token: the next request with an old token gets 401.
    pub fn expire_tokens(&self) {
        lock(&self.state.tokens).expire_all();
    }

    /// Defines a blueprint (`{identifier, relations: {name: {target}}, …}`) so that its
    /// relation targets are checked on upsert and its dependents on delete.
    pub fn define_blueprint(&self, blueprint: Value) {
        if let Some(identifier) = blueprint.get("identifier").and_then(Value::as_str) {
            let identifier = identifier.to_string();
            lock(&self.state.catalog).define_blueprint(&identifier, blueprint);
        }
    }

    /// Makes every entity route of `blueprint` answer 404 `not_found` (until it is defined).
    pub fn mark_blueprint_unknown(&self, blueprint: &str) {
        lock(&self.state.catalog).mark_unknown(blueprint);
    }

    /// Stops the server, letting in-flight requests finish.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}
