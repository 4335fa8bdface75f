//! Configuration of every role, read once at start-up and validated there.
//!
//! Two families of environment variables:
//! - `OCEAN__…`: the Python integration's settings, unchanged, so that its install examples
//!   (Helm values, the Azure Pipelines job, docker run lines) work as they are. Settings of
//!   Ocean that adoport has no use for are accepted with a warning, never an error.
//! - `ADOPORT__…`: the pipeline's own (broker, partitions, ports, …). Unknown ones are errors:
//!   a typo there should stop start-up, not be silently ignored.
//!
//! Nothing else in the project reads the environment. Secrets are [`Secret`]s and never print.

mod accounts;
mod broker;
mod env;
mod flex;
mod jq_environment;
mod log_level;
mod network;
mod secret;

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use accounts::{
    AUTHORITY_HOST_VARIABLE, AzureDevopsAccounts, AzureDevopsCredentials, DEFAULT_AUTHORITY_HOST,
    ServicePrincipal,
};
pub use broker::{BrokerEndpoint, BrokerTimeouts};
pub use jq_environment::{JqEnvironment, looks_secret};
pub use log_level::{LOG_LEVEL_VARIABLE, LogLevel, role_filter_from, role_filter_from_env};
pub use network::{CA_FILE_VARIABLES, CaBundle, NetworkSettings, ProxySetting};
pub use secret::Secret;

use crate::topology::{ArchiveRetention, Topology};

/// A setting that is missing or wrong. The message names the variable and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{setting}: {problem}")]
    Invalid { setting: String, problem: String },
    #[error("{setting} is required: {hint}")]
    Missing { setting: String, hint: String },
}

impl ConfigError {
    fn missing(setting: &str, hint: &str) -> Self {
        ConfigError::Missing {
            setting: setting.into(),
            hint: hint.into(),
        }
    }
}

/// Checks each setting's value against its allowed range; the first outside it is the error.
fn check_ranges(
    ranges: impl IntoIterator<Item = (&'static str, u64, RangeInclusive<u64>)>,
) -> Result<(), ConfigError> {
    for (setting, value, range) in ranges {
        check_range(setting, value, range, "")?;
    }
    Ok(())
}

/// Checks one setting's value against its allowed range; the error names the setting, the
/// range and, when `meaning` is not empty, what the value is (in parentheses after the range).
fn check_range(
    setting: &str,
    value: u64,
    range: RangeInclusive<u64>,
    meaning: &str,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        return Ok(());
    }
    let (start, end) = range.into_inner();
    let meaning = if meaning.is_empty() {
        String::new()
    } else {
        format!(" ({meaning})")
    };
    Err(ConfigError::Invalid {
        setting: setting.into(),
        problem: format!("{value} is out of range; use {start} to {end}{meaning}"),
    })
}

/// A secret that is set and not empty.
fn required_secret(
    value: &Option<Secret>,
    setting: &str,
    hint: &str,
) -> Result<Secret, ConfigError> {
    value
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ConfigError::missing(setting, hint))
}

/// How the integration learns about changes (Ocean's `event_listener.type`: every type Ocean
/// knows is accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventListenerType {
    /// Resync at start, then on Port's resync requests (and the schedule), plus live events.
    #[default]
    Polling,
    /// Live events only (and manual resyncs).
    WebhooksOnly,
    /// One resync, then exit when the pipeline has drained.
    Once,
    /// Ocean's Kafka listener: Port's resync requests on Port's Kafka topic. adoport has no
    /// Kafka client; it polls Port's resync requests instead, as POLLING, and says so at WARN.
    Kafka,
    /// Ocean's HTTP listener: Port asks for a resync with `POST {appHost}/resync` (served on
    /// the webhook port); resync at start (`resync_on_start`), the schedule and live events as
    /// POLLING, without polling Port.
    Webhook,
    /// Ocean's actions-only listener: Port's self-service actions (the actions processor,
    /// `OCEAN__ACTIONS_PROCESSOR__ENABLED`) and nothing else: no resync of any kind and no
    /// service-hook subscriptions.
    ActionsOnly,
}

impl EventListenerType {
    /// The name Ocean gives it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Polling => "POLLING",
            Self::WebhooksOnly => "WEBHOOKS_ONLY",
            Self::Once => "ONCE",
            Self::Kafka => "KAFKA",
            Self::Webhook => "WEBHOOK",
            Self::ActionsOnly => "ACTIONS_ONLY",
        }
    }

    /// Whether the integration resyncs at all (Ocean's `should_resync`): at start, on the
    /// schedule, on request. Not ACTIONS_ONLY.
    pub fn resyncs(self) -> bool {
        self != Self::ActionsOnly
    }

    /// Whether ingest asks for a resync when the installation starts; `resync_on_start` is
    /// the listener's setting (POLLING, KAFKA, WEBHOOK).
    pub fn resyncs_at_start(self, resync_on_start: bool) -> bool {
        match self {
            Self::Once => true,
            Self::WebhooksOnly | Self::ActionsOnly => false,
            Self::Polling | Self::Kafka | Self::Webhook => resync_on_start,
        }
    }

    /// Whether Port's resync requests are polled (POLLING, and KAFKA in its stead).
    pub fn polls_port(self) -> bool {
        matches!(self, Self::Polling | Self::Kafka)
    }

    /// Whether Azure DevOps is asked to send live events (service-hook subscriptions): not
    /// for one ONCE run, not for ACTIONS_ONLY (Ocean's `should_process_webhooks` is false).
    pub fn subscribes(self) -> bool {
        !matches!(self, Self::Once | Self::ActionsOnly)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct EventListener {
    #[serde(rename = "type", deserialize_with = "event_listener_type")]
    pub kind: EventListenerType,
    /// POLLING: seconds between checks of Port's resync request (Ocean's `interval`).
    #[serde(deserialize_with = "flex::u64")]
    pub interval: u64,
    /// POLLING: whether to resync at start-up (Ocean's `resync_on_start`).
    #[serde(deserialize_with = "flex::bool")]
    pub resync_on_start: bool,
    /// WEBHOOK: the public URL Port sends resync requests to (`{app_host}/resync`), which the
    /// integration record in Port names as its changelog destination (Ocean's `app_host`).
    #[serde(deserialize_with = "flex::opt_string")]
    pub app_host: Option<String>,
}

impl Default for EventListener {
    fn default() -> Self {
        Self {
            kind: EventListenerType::default(),
            interval: 60,
            resync_on_start: true,
            app_host: None,
        }
    }
}

fn event_listener_type<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<EventListenerType, D::Error> {
    let text = flex::string(deserializer)?;
    match text.trim().to_ascii_uppercase().as_str() {
        "POLLING" => Ok(EventListenerType::Polling),
        "WEBHOOKS_ONLY" => Ok(EventListenerType::WebhooksOnly),
        "ONCE" => Ok(EventListenerType::Once),
        "KAFKA" => Ok(EventListenerType::Kafka),
        "WEBHOOK" => Ok(EventListenerType::Webhook),
        "ACTIONS_ONLY" => Ok(EventListenerType::ActionsOnly),
        _ => Err(serde::de::Error::custom(format!(
            "unknown event listener type \"{text}\"; expected ONCE, POLLING, WEBHOOKS_ONLY, WEBHOOK, KAFKA or ACTIONS_ONLY"
        ))),
    }
}

/// `OCEAN__PORT__…`
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PortSettings {
    #[serde(deserialize_with = "flex::opt_string")]
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    #[serde(deserialize_with = "flex::string")]
    pub base_url: String,
}

impl Default for PortSettings {
    fn default() -> Self {
        Self {
            client_id: None,
            client_secret: None,
            base_url: "https://api.getport.io".into(),
        }
    }
}

/// `accountMode` of the integration config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccountMode {
    #[default]
    SingleAccount,
    MultipleAccounts,
}

impl<'de> Deserialize<'de> for AccountMode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = flex::string(deserializer)?;
        match text.trim() {
            "Single Account" => Ok(AccountMode::SingleAccount),
            "Multiple Accounts" => Ok(AccountMode::MultipleAccounts),
            other => Err(serde::de::Error::custom(format!(
                "unknown account mode \"{other}\"; expected \"Single Account\" or \"Multiple Accounts\""
            ))),
        }
    }
}

/// `OCEAN__INTEGRATION__CONFIG__…`: the Azure DevOps integration's own settings (spec.yaml).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AzureDevopsConfig {
    #[serde(alias = "accountMode")]
    pub account_mode: AccountMode,
    #[serde(alias = "organizationUrl", deserialize_with = "flex::opt_string")]
    pub organization_url: Option<String>,
    #[serde(alias = "personalAccessToken")]
    pub personal_access_token: Option<Secret>,
    #[serde(alias = "clientId", deserialize_with = "flex::opt_string")]
    pub client_id: Option<String>,
    #[serde(alias = "clientSecret")]
    pub client_secret: Option<Secret>,
    #[serde(alias = "tenantId", deserialize_with = "flex::opt_string")]
    pub tenant_id: Option<String>,
    #[serde(alias = "organizationUrls", deserialize_with = "flex::string_list")]
    pub organization_urls: Vec<String>,
    #[serde(alias = "isProjectsLimited", deserialize_with = "flex::bool")]
    pub is_projects_limited: bool,
    #[serde(alias = "appHost", deserialize_with = "flex::opt_string")]
    pub app_host: Option<String>,
    #[serde(alias = "webhookSecret")]
    pub webhook_secret: Option<Secret>,
    #[serde(alias = "webhookAuthUsername", deserialize_with = "flex::string")]
    pub webhook_auth_username: String,
    #[serde(alias = "excludedTags", deserialize_with = "flex::string_list")]
    pub excluded_tags: Vec<String>,
}

impl Default for AzureDevopsConfig {
    fn default() -> Self {
        Self {
            account_mode: AccountMode::SingleAccount,
            organization_url: None,
            personal_access_token: None,
            client_id: None,
            client_secret: None,
            tenant_id: None,
            organization_urls: Vec::new(),
            is_projects_limited: true,
            app_host: None,
            webhook_secret: None,
            webhook_auth_username: "port".into(),
            excluded_tags: Vec::new(),
        }
    }
}

/// `OCEAN__INTEGRATION__…`
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct IntegrationSettings {
    #[serde(deserialize_with = "flex::opt_string")]
    pub identifier: Option<String>,
    #[serde(rename = "type", deserialize_with = "flex::string")]
    pub integration_type: String,
    pub config: AzureDevopsConfig,
    /// Ocean's `incremental_sync_enabled`: a ONCE run (`adoport all`, the chart's incremental
    /// CronJob) reads only what changed since each kind's cursor instead of a full resync.
    #[serde(alias = "incrementalSyncEnabled", deserialize_with = "flex::bool")]
    pub incremental_sync_enabled: bool,
    /// Ocean's `incremental_sync_interval`, in minutes: 15, 30 or 60 (`"15"`, `"15m"`, `"1h"`
    /// are read as Ocean reads them). A kind without a cursor starts this long before the run.
    #[serde(
        alias = "incrementalSyncInterval",
        deserialize_with = "flex::interval_minutes"
    )]
    pub incremental_sync_interval: u64,
}

/// The incremental sync intervals Ocean allows, in minutes.
pub const INCREMENTAL_SYNC_INTERVALS: [u64; 3] = [15, 30, 60];

impl Default for IntegrationSettings {
    fn default() -> Self {
        Self {
            identifier: None,
            integration_type: "azure-devops".into(),
            config: AzureDevopsConfig::default(),
            incremental_sync_enabled: false,
            incremental_sync_interval: 15,
        }
    }
}

/// The Python integration's settings (`OCEAN__…`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct OceanSettings {
    pub port: PortSettings,
    pub integration: IntegrationSettings,
    pub event_listener: EventListener,
    /// Minutes between scheduled resyncs.
    #[serde(deserialize_with = "flex::opt_u64")]
    pub scheduled_resync_interval: Option<u64>,
    #[serde(deserialize_with = "flex::bool")]
    pub initialize_port_resources: bool,
    #[serde(deserialize_with = "flex::bool")]
    pub send_raw_data_examples: bool,
    /// The public URL Azure DevOps sends webhooks to (also `appHost`).
    #[serde(deserialize_with = "flex::opt_string")]
    pub base_url: Option<String>,
    /// Seconds before an HTTP request to Azure DevOps or Port is abandoned.
    #[serde(deserialize_with = "flex::u64")]
    pub client_timeout: u64,
    /// Seconds between the sync metrics heartbeats of a running resync (Ocean's
    /// `status_heartbeat_interval_seconds`, 10; 1 to 3600, Ocean requires more than 0).
    #[serde(deserialize_with = "flex::u64")]
    pub status_heartbeat_interval_seconds: u64,
    /// `OCEAN__ACTIONS_PROCESSOR__…`: running Port's self-service actions (`trigger_pipeline` and
    /// the pull-request actions).
    pub actions_processor: ActionsProcessor,
    /// Whether `env`/`$ENV` in a mapping's jq hold the process environment (its secrets left
    /// out, see [`JqEnvironment`]) or nothing.
    #[serde(deserialize_with = "flex::bool")]
    pub allow_environment_variables_jq_access: bool,
    /// Ocean's log level; the roles' default log filter ([`log_level`]).
    pub log_level: Option<LogLevel>,
    /// Mounts the integration's routes under a prefix, as Ocean does: the webhook at
    /// `{prefix}/integration/webhook`, and subscriptions point there.
    #[serde(deserialize_with = "flex::opt_string")]
    pub path_prefix: Option<String>,
}

/// Ocean's actions processor settings (`OCEAN__ACTIONS_PROCESSOR__ENABLED`, …), same names and
/// defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ActionsProcessor {
    #[serde(deserialize_with = "flex::bool")]
    pub enabled: bool,
    /// Seconds between `claim-pending` polls when nothing was pending.
    #[serde(deserialize_with = "flex::u64")]
    pub poll_check_interval_seconds: u64,
    /// How long a claimed run stays hidden from other executors (ms).
    #[serde(deserialize_with = "flex::u64")]
    pub visibility_timeout_ms: u64,
    /// Runs executed at the same time.
    #[serde(deserialize_with = "flex::u64")]
    pub workers_count: u64,
}

impl Default for ActionsProcessor {
    fn default() -> Self {
        Self {
            enabled: false,
            poll_check_interval_seconds: 10,
            visibility_timeout_ms: 60_000,
            workers_count: 3,
        }
    }
}

impl OceanSettings {
    /// `OCEAN__PATH_PREFIX` as a route prefix: `""`, or `/prefix` without a trailing slash.
    pub fn route_prefix(&self) -> String {
        match self
            .path_prefix
            .as_deref()
            .map(|p| p.trim().trim_matches('/'))
        {
            Some(p) if !p.is_empty() => format!("/{p}"),
            _ => String::new(),
        }
    }
}

impl Default for OceanSettings {
    fn default() -> Self {
        Self {
            port: PortSettings::default(),
            integration: IntegrationSettings::default(),
            event_listener: EventListener::default(),
            scheduled_resync_interval: None,
            initialize_port_resources: true,
            send_raw_data_examples: true,
            base_url: None,
            client_timeout: 60,
            status_heartbeat_interval_seconds: 10,
            actions_processor: ActionsProcessor::default(),
            allow_environment_variables_jq_access: true,
            log_level: None,
            path_prefix: None,
        }
    }
}

/// `ADOPORT__BROKER__…`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerSettings {
    /// `amqp://user:pass@host:5672/vhost`. Unset: `adoport all` runs on the in-process bus.
    pub url: Option<Secret>,
    /// Prepended to every exchange and queue name.
    #[serde(deserialize_with = "flex::string")]
    pub prefix: String,
    /// Entity-change partitions; every entity maps to one. Changing it reorders in-flight
    /// changes, so change it only with empty change queues.
    #[serde(deserialize_with = "flex::u64")]
    pub partitions: u64,
    /// Deliveries of one message before the broker dead-letters it.
    #[serde(deserialize_with = "flex::u64")]
    pub delivery_limit: u64,
    /// How long the raw archive keeps events (RabbitMQ duration: `7D`, `24h`, `30m`).
    #[serde(deserialize_with = "flex::string")]
    pub archive_max_age: String,
    /// Upper bound of the raw archive's size in bytes.
    #[serde(deserialize_with = "flex::u64")]
    pub archive_max_bytes: u64,
    /// Seconds to open the TCP connection and finish the AMQP handshake.
    #[serde(deserialize_with = "flex::u64")]
    pub connect_timeout_secs: u64,
    /// AMQP heartbeat interval asked of the broker, in seconds: a connection that hears nothing
    /// for twice this long is taken as dead. The URL's own `?heartbeat=` wins when present.
    #[serde(deserialize_with = "flex::u64")]
    pub heartbeat_secs: u64,
    /// Seconds one broker operation may take (open a channel, declare, start consuming, ack)
    /// before the connection is taken as broken.
    #[serde(deserialize_with = "flex::u64")]
    pub operation_timeout_secs: u64,
    /// Seconds the broker may take to confirm a publish before the connection is taken as
    /// broken and the messages are published again on a new one.
    #[serde(deserialize_with = "flex::u64")]
    pub confirm_timeout_secs: u64,
    /// Milliseconds a webhook's publish may take; past it (or at once while the broker is
    /// down) the webhook gets 503 and Azure DevOps sends it again.
    #[serde(deserialize_with = "flex::u64")]
    pub webhook_publish_timeout_ms: u64,
    /// Live events (a webhook's raw events and the changes made of them) publish on a
    /// confirm-mode channel of their own, so that their confirms do not wait behind the
    /// crawl's pages and the resync's changes. `false`: one channel for everything (as before).
    #[serde(deserialize_with = "flex::bool")]
    pub live_channel: bool,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            url: None,
            prefix: String::new(),
            partitions: 8,
            delivery_limit: 5,
            archive_max_age: ArchiveRetention::default().max_age,
            archive_max_bytes: ArchiveRetention::default().max_bytes,
            connect_timeout_secs: 10,
            heartbeat_secs: 10,
            operation_timeout_secs: 10,
            confirm_timeout_secs: 30,
            webhook_publish_timeout_ms: 1500,
            live_channel: true,
        }
    }
}

/// Crawl units a resync reads at the same time unless `ADOPORT__INGEST__CONCURRENT_KINDS` says
/// otherwise: with 8 projects or repositories read at once within each, enough to keep the
/// crawl's share of the request budget busy when Azure DevOps' latency, not its budget, bounds
/// a resync.
pub const DEFAULT_CONCURRENT_KINDS: u64 = 4;

/// Most crawl units a resync may read at the same time (`ADOPORT__INGEST__CONCURRENT_KINDS`).
pub const MAX_CONCURRENT_KINDS: u64 = 64;

/// MiB of pages a resync holds at once, per organization, unless
/// `ADOPORT__INGEST__CRAWL_BUFFER_MIB` says otherwise: room for about 17 pages of 40
/// repositories (about 120 KiB each in memory), 7 of 100, or 30 of a project's few policies,
/// so that requests in flight stay busy with typical pages while the ingest role's memory stays
/// flat whatever the organization's size.
pub const DEFAULT_CRAWL_BUFFER_MIB: u64 = 2;

/// Most MiB of pages a resync may hold (`ADOPORT__INGEST__CRAWL_BUFFER_MIB`).
pub const MAX_CRAWL_BUFFER_MIB: u64 = 4096;

/// `ADOPORT__INGEST__…`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestSettings {
    /// Where the webhook receiver listens (Ocean's port is 8000).
    #[serde(deserialize_with = "flex::string")]
    pub listen: String,
    /// Largest webhook body accepted; larger ones get 413.
    #[serde(deserialize_with = "flex::u64")]
    pub webhook_max_bytes: u64,
    /// Webhook and `/resync` requests served at once (bodies in memory, objects being read);
    /// more get 503 with `Retry-After`, which Azure DevOps retries.
    #[serde(deserialize_with = "flex::u64")]
    pub webhook_max_in_flight: u64,
    /// Items per raw event published by the crawler.
    #[serde(deserialize_with = "flex::u64")]
    pub items_per_event: u64,
    /// Azure DevOps requests in flight at once, per organization. Azure DevOps limits an
    /// identity's rate (TSTUs per five minutes, which the crawl paces by), not its requests in
    /// flight: 30 lets a resync's kinds keep their requests going when latency, not the rate
    /// budget, bounds it.
    #[serde(deserialize_with = "flex::u64")]
    pub max_concurrent_requests: u64,
    /// Crawl units (a kind, for the resources that share a selector) a resync reads at the
    /// same time, per organization; their requests share `max_concurrent_requests`. 1 reads
    /// them one after another.
    #[serde(deserialize_with = "flex::u64")]
    pub concurrent_kinds: u64,
    /// MiB of pages a resync holds at once, per organization, across the units it reads at
    /// the same time: a page takes its bytes before it is published and gives them back once
    /// the broker confirmed it; large pages narrow the crawl's fan-out rather than pile up.
    #[serde(deserialize_with = "flex::u64")]
    pub crawl_buffer_mib: u64,
    /// Of those, how many the resync crawl leaves to live re-reads (webhooks, actions); 0
    /// lets the crawl take them all.
    #[serde(deserialize_with = "flex::u64")]
    pub live_reserved_requests: u64,
    /// Share of each organization's rate budget (`X-RateLimit-Limit`, percent) the crawl
    /// leaves to live re-reads; with 0 a `Retry-After` advice pauses live re-reads too.
    #[serde(deserialize_with = "flex::u64")]
    pub live_reserved_budget_percent: u64,
    /// Minutes between checks of the service-hook subscriptions (re-enable, recreate, new
    /// projects); 0 checks only at start-up.
    #[serde(deserialize_with = "flex::u64")]
    pub subscription_check_minutes: u64,
    /// Seconds between renewals of the lease on the resync request being crawled. Keep it
    /// well below the broker's `consumer_timeout` (RabbitMQ's default: 30 min), which would
    /// otherwise take the request away from a long crawl.
    #[serde(deserialize_with = "flex::u64")]
    pub resync_lease_secs: u64,
    /// Seconds between a replica's attempts to become the ingest leader (the one that runs the
    /// resync schedule, Port's resync requests, the service-hook subscriptions and the start-up
    /// resync): a leader that dies is replaced within about this long.
    #[serde(deserialize_with = "flex::u64")]
    pub leader_retry_secs: u64,
    /// Seconds between scheduled resyncs; when set, overrides
    /// `OCEAN__SCHEDULED_RESYNC_INTERVAL` (whole minutes), e.g. for sub-minute schedules in
    /// tests and try-outs. 0 or unset: the Ocean setting decides.
    #[serde(deserialize_with = "flex::opt_u64")]
    pub scheduled_resync_secs: Option<u64>,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8000".into(),
            webhook_max_bytes: 4 * 1024 * 1024,
            webhook_max_in_flight: 32,
            items_per_event: 100,
            max_concurrent_requests: 30,
            concurrent_kinds: DEFAULT_CONCURRENT_KINDS,
            crawl_buffer_mib: DEFAULT_CRAWL_BUFFER_MIB,
            live_reserved_requests: 3,
            live_reserved_budget_percent: 20,
            subscription_check_minutes: 10,
            resync_lease_secs: 600,
            leader_retry_secs: 2,
            scheduled_resync_secs: None,
        }
    }
}

/// `ADOPORT__TRANSFORM__…`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransformSettings {
    /// Raw events in flight per transform process.
    #[serde(deserialize_with = "flex::u64")]
    pub prefetch: u64,
    /// Seconds between checks for a new mapping version (in Port, or the mapping file).
    #[serde(deserialize_with = "flex::u64")]
    pub mapping_poll_secs: u64,
    /// Milliseconds all jq expressions of one item may run together; an item that takes
    /// longer is failed and dead-lettered.
    #[serde(deserialize_with = "flex::u64")]
    pub jq_item_time_ms: u64,
    /// Steps one jq expression may take on one item (function calls, loop iterations,
    /// generated or collected values).
    #[serde(deserialize_with = "flex::u64")]
    pub jq_max_steps: u64,
    /// MiB of strings, arrays and objects one jq expression may build on one item.
    #[serde(deserialize_with = "flex::u64")]
    pub jq_max_memory_mib: u64,
    /// MiB of stack one jq expression may use: bounds its recursion depth.
    #[serde(deserialize_with = "flex::u64")]
    pub jq_max_stack_mib: u64,
}

impl Default for TransformSettings {
    fn default() -> Self {
        Self {
            prefetch: 16,
            mapping_poll_secs: 60,
            jq_item_time_ms: 2_000,
            jq_max_steps: 1_000_000,
            jq_max_memory_mib: 64,
            jq_max_stack_mib: 16,
        }
    }
}

impl TransformSettings {
    /// The ranges of the jq limits: wide enough for any mapping, narrow enough that the
    /// limits still protect the process (an evaluator thread reserves stack in proportion to
    /// the steps and the stack allowed).
    fn validate(&self) -> Result<(), ConfigError> {
        check_ranges([
            (
                "ADOPORT__TRANSFORM__JQ_ITEM_TIME_MS",
                self.jq_item_time_ms,
                10..=600_000,
            ),
            (
                "ADOPORT__TRANSFORM__JQ_MAX_STEPS",
                self.jq_max_steps,
                1_000..=10_000_000,
            ),
            (
                "ADOPORT__TRANSFORM__JQ_MAX_MEMORY_MIB",
                self.jq_max_memory_mib,
                1..=4_096,
            ),
            (
                "ADOPORT__TRANSFORM__JQ_MAX_STACK_MIB",
                self.jq_max_stack_mib,
                1..=256,
            ),
        ])
    }
}

/// `ADOPORT__PUBLISH__…`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublishSettings {
    /// Changes in flight per partition consumer (bounds memory; feeds batching).
    #[serde(deserialize_with = "flex::u64")]
    pub prefetch: u64,
    /// Milliseconds a batch waits for more entities after its first (live batches: only while
    /// a request of theirs is in flight, see `send_when_idle`).
    #[serde(deserialize_with = "flex::u64")]
    pub batch_linger_ms: u64,
    /// A live write batch goes at once when no request of its blueprint and query is in
    /// flight, and lingers only while one is. False: every batch waits out `batch_linger_ms`
    /// (the behaviour before; for comparisons).
    #[serde(deserialize_with = "flex::bool")]
    pub send_when_idle: bool,
    /// Bulk requests to Port in flight at once.
    #[serde(deserialize_with = "flex::u64")]
    pub max_concurrent_requests: u64,
    /// Attempts at one write before it is dead-lettered.
    #[serde(deserialize_with = "flex::u64")]
    pub max_attempts: u64,
    /// Seconds a write Port answers with a transient failure (5xx, 429, no answer) is retried
    /// at least, however many attempts that takes: a Port outage shorter than this
    /// dead-letters nothing. 0: `max_attempts` alone decides.
    #[serde(deserialize_with = "flex::u64")]
    pub retry_window_secs: u64,
    /// Partitions this process consumes, pinned, e.g. `0,1,2,3`. Empty (the default): the
    /// publish replicas on the broker share the partitions among themselves.
    #[serde(deserialize_with = "flex::string_list")]
    pub partitions: Vec<String>,
    /// Milliseconds between two heartbeats of this replica on the membership exchange.
    #[serde(deserialize_with = "flex::u64")]
    pub member_heartbeat_ms: u64,
    /// Milliseconds without a heartbeat after which a replica is taken as gone and its
    /// partitions are taken over (a killed replica's partitions wait this long).
    #[serde(deserialize_with = "flex::u64")]
    pub member_timeout_ms: u64,
}

impl Default for PublishSettings {
    fn default() -> Self {
        Self {
            prefetch: 200,
            batch_linger_ms: 50,
            send_when_idle: true,
            max_concurrent_requests: 32,
            max_attempts: 8,
            retry_window_secs: 600,
            partitions: Vec::new(),
            member_heartbeat_ms: 1000,
            member_timeout_ms: 5000,
        }
    }
}

impl PublishSettings {
    /// Heartbeats of 0.1 to 60 s, and a timeout of at least three of them (one lost or late
    /// heartbeat must not move partitions) and at most 10 minutes.
    fn validate_membership(&self) -> Result<(), ConfigError> {
        let heartbeat = self.member_heartbeat_ms;
        check_range(
            "ADOPORT__PUBLISH__MEMBER_HEARTBEAT_MS",
            heartbeat,
            100..=60_000,
            "milliseconds",
        )?;
        check_range(
            "ADOPORT__PUBLISH__MEMBER_TIMEOUT_MS",
            self.member_timeout_ms,
            heartbeat.saturating_mul(3)..=600_000,
            "milliseconds; at least three heartbeats of ADOPORT__PUBLISH__MEMBER_HEARTBEAT_MS",
        )
    }

    /// How often this replica says it is there, and how long the others wait for it.
    pub fn membership_timing(&self) -> (Duration, Duration) {
        (
            Duration::from_millis(self.member_heartbeat_ms),
            Duration::from_millis(self.member_timeout_ms),
        )
    }
}

/// The pipeline's own settings (`ADOPORT__…`).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineSettings {
    /// A port-app-config file (YAML or JSON) to use instead of the integration's config in
    /// Port (`ADOPORT__MAPPING_FILE`).
    pub mapping_file: Option<PathBuf>,
    pub broker: BrokerSettings,
    pub ingest: IngestSettings,
    pub transform: TransformSettings,
    pub publish: PublishSettings,
    pub health: HealthSettings,
}

/// `ADOPORT__HEALTH__…`: the `/healthz`, `/readyz` and `/metrics` endpoint of every role.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct HealthSettings {
    /// Where it listens; unset: `0.0.0.0:9000` (not for `adoport all` in ONCE mode); `off`
    /// disables it.
    #[serde(deserialize_with = "flex::opt_string")]
    pub listen: Option<String>,
}

impl HealthSettings {
    /// The default address.
    pub const DEFAULT_LISTEN: &str = "0.0.0.0:9000";
}

/// `APPLICATION__…`: Ocean's application settings (its `ApplicationSettings`, read from the
/// environment under that prefix). Only `ENABLE_HTTP_LOGGING` means something to adoport;
/// the others are reported as unused.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ApplicationSettings {
    /// Whether the roles ship their log lines to Port's log view (the integration record's
    /// `logAttributes.ingestUrl`), as Ocean does by default.
    #[serde(deserialize_with = "flex::bool")]
    pub enable_http_logging: bool,
}

impl Default for ApplicationSettings {
    fn default() -> Self {
        Self {
            enable_http_logging: true,
        }
    }
}

/// Everything a process is configured with.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub ocean: OceanSettings,
    /// `APPLICATION__…` (Ocean's application settings).
    pub application: ApplicationSettings,
    pub pipeline: PipelineSettings,
    /// Proxies and extra trusted CAs (`HTTPS_PROXY`, `SSL_CERT_FILE`, …) for every HTTP client.
    pub network: NetworkSettings,
    /// `OCEAN__…` variables that adoport does not use (reported as warnings at start-up).
    pub unused: Vec<String>,
    /// `AZURE_AUTHORITY_HOST`: the Microsoft Entra ID endpoint of a service principal.
    pub azure_authority_host: Option<String>,
    /// What `env` holds in a mapping (`OCEAN__ALLOW_ENVIRONMENT_VARIABLES_JQ_ACCESS`).
    pub jq_environment: JqEnvironment,
}

/// Variables as a process would see them, from a test's list.
#[cfg(test)]
pub(crate) fn test_vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Turns a serde path (`integration.config.organizationUrl`) into the variable that sets it.
fn variable_name(prefix: &str, path: &str) -> String {
    let mut name = prefix.to_string();
    for segment in path.split('.').filter(|s| !s.is_empty() && *s != "?") {
        name.push_str("__");
        name.push_str(&to_screaming_snake(segment));
    }
    name
}

fn to_screaming_snake(segment: &str) -> String {
    let mut out = String::new();
    for (i, c) in segment.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn parse_tree<T: serde::de::DeserializeOwned>(
    prefix: &str,
    tree: serde_json::Value,
    unused: &mut Vec<String>,
) -> Result<T, ConfigError> {
    let mut track = serde_path_to_error::Track::new();
    let tracked = serde_path_to_error::Deserializer::new(&tree, &mut track);
    let result = serde_ignored::deserialize(tracked, |path| {
        unused.push(variable_name(prefix, &path.to_string()));
    });
    result.map_err(|e: serde_json::Error| {
        let path = track.path().to_string();
        let message = e.to_string();
        // serde reports an unknown field by name; point at the variable that holds it.
        let setting = match message.strip_prefix("unknown field `") {
            Some(rest) => {
                let field = rest.split('`').next().unwrap_or_default();
                let parent = path.rsplit_once('.').map(|(p, _)| p).unwrap_or("");
                variable_name(prefix, &format!("{parent}.{field}"))
            }
            None => variable_name(prefix, &path),
        };
        ConfigError::Invalid {
            setting,
            problem: message,
        }
    })
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads the given variables (tests pass their own).
    pub fn from_vars<I>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let ocean_tree = env::tree("OCEAN", vars.iter().cloned())?;
        let pipeline_tree = env::tree("ADOPORT", vars.iter().cloned())?;
        let mut unused = Vec::new();
        let ocean: OceanSettings = parse_tree("OCEAN", ocean_tree, &mut unused)?;
        let application_tree = env::tree("APPLICATION", vars.iter().cloned())?;
        let application: ApplicationSettings =
            parse_tree("APPLICATION", application_tree, &mut unused)?;
        let mut denied = Vec::new();
        let pipeline: PipelineSettings = parse_tree("ADOPORT", pipeline_tree, &mut denied)?;
        let network = NetworkSettings::from_vars(&vars)?;
        let azure_authority_host = vars
            .iter()
            .find(|(k, v)| k == AUTHORITY_HOST_VARIABLE && !v.trim().is_empty())
            .map(|(_, v)| v.clone());
        let jq_environment =
            JqEnvironment::from_vars(ocean.allow_environment_variables_jq_access, &vars);
        let settings = Settings {
            ocean,
            application,
            pipeline,
            network,
            unused,
            azure_authority_host,
            jq_environment,
        };
        settings.validate()?;
        Ok(settings)
    }

    /// Checks that hold for every role.
    fn validate(&self) -> Result<(), ConfigError> {
        let broker = &self.pipeline.broker;
        check_ranges([
            ("ADOPORT__BROKER__PARTITIONS", broker.partitions, 1..=1024),
            (
                "OCEAN__STATUS_HEARTBEAT_INTERVAL_SECONDS",
                self.ocean.status_heartbeat_interval_seconds,
                1..=3_600,
            ),
        ])?;
        if broker.delivery_limit == 0 {
            return Err(ConfigError::Invalid {
                setting: "ADOPORT__BROKER__DELIVERY_LIMIT".into(),
                problem: "must be at least 1".into(),
            });
        }
        broker.validate_connection()?;
        if self.pipeline.ingest.listen.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::Invalid {
                setting: "ADOPORT__INGEST__LISTEN".into(),
                problem: format!(
                    "\"{}\" is not an address; use host:port such as 0.0.0.0:8000",
                    self.pipeline.ingest.listen
                ),
            });
        }
        if let Some(listen) = &self.pipeline.health.listen
            && listen != "off"
            && listen.parse::<SocketAddr>().is_err()
        {
            return Err(ConfigError::Invalid {
                setting: "ADOPORT__HEALTH__LISTEN".into(),
                problem: format!(
                    "\"{listen}\" is not an address; use host:port such as 0.0.0.0:9000, or off"
                ),
            });
        }
        for (setting, value) in [
            (
                "ADOPORT__TRANSFORM__PREFETCH",
                self.pipeline.transform.prefetch,
            ),
            (
                "ADOPORT__TRANSFORM__MAPPING_POLL_SECS",
                self.pipeline.transform.mapping_poll_secs,
            ),
            ("ADOPORT__PUBLISH__PREFETCH", self.pipeline.publish.prefetch),
            (
                "ADOPORT__PUBLISH__MAX_CONCURRENT_REQUESTS",
                self.pipeline.publish.max_concurrent_requests,
            ),
            (
                "ADOPORT__PUBLISH__MAX_ATTEMPTS",
                self.pipeline.publish.max_attempts,
            ),
            (
                "ADOPORT__INGEST__MAX_CONCURRENT_REQUESTS",
                self.pipeline.ingest.max_concurrent_requests,
            ),
            (
                "ADOPORT__INGEST__ITEMS_PER_EVENT",
                self.pipeline.ingest.items_per_event,
            ),
            (
                "ADOPORT__INGEST__WEBHOOK_MAX_IN_FLIGHT",
                self.pipeline.ingest.webhook_max_in_flight,
            ),
            (
                "ADOPORT__INGEST__RESYNC_LEASE_SECS",
                self.pipeline.ingest.resync_lease_secs,
            ),
        ] {
            if !(1..=u64::from(u16::MAX)).contains(&value) {
                return Err(ConfigError::Invalid {
                    setting: setting.into(),
                    problem: format!("{value} is out of range; use 1 to 65535"),
                });
            }
        }
        if self.pipeline.publish.retry_window_secs > 86_400 {
            return Err(ConfigError::Invalid {
                setting: "ADOPORT__PUBLISH__RETRY_WINDOW_SECS".into(),
                problem: format!(
                    "{} is out of range; use 0 to 86400 (a day)",
                    self.pipeline.publish.retry_window_secs
                ),
            });
        }
        self.validate_live_reserve()?;
        self.validate_concurrent_kinds()?;
        self.validate_crawl_buffer()?;
        self.validate_leader_retry()?;
        self.validate_incremental_interval()?;
        self.pipeline.transform.validate()?;
        self.publish_partitions()?;
        self.pipeline.publish.validate_membership()?;
        Ok(())
    }

    /// Ocean allows 15, 30 or 60 minutes between incremental runs, and refuses the others.
    fn validate_incremental_interval(&self) -> Result<(), ConfigError> {
        let minutes = self.ocean.integration.incremental_sync_interval;
        if !INCREMENTAL_SYNC_INTERVALS.contains(&minutes) {
            return Err(ConfigError::Invalid {
                setting: "OCEAN__INTEGRATION__INCREMENTAL_SYNC_INTERVAL".into(),
                problem: format!(
                    "{minutes} minutes is not allowed; use 15, 30 or 60 (also \"15m\", \"1h\"), as Ocean does"
                ),
            });
        }
        Ok(())
    }

    /// The time a kind's first incremental run looks back
    /// (`OCEAN__INTEGRATION__INCREMENTAL_SYNC_INTERVAL`).
    pub fn incremental_sync_every(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.ocean.integration.incremental_sync_interval * 60)
    }

    /// Attempts to lead every 1 to 60 seconds: a dead leader is replaced within about this long.
    fn validate_leader_retry(&self) -> Result<(), ConfigError> {
        check_range(
            "ADOPORT__INGEST__LEADER_RETRY_SECS",
            self.pipeline.ingest.leader_retry_secs,
            1..=60,
            "seconds between attempts to lead; a dead leader is replaced within about this long",
        )
    }

    /// Time between scheduled resyncs: `ADOPORT__INGEST__SCHEDULED_RESYNC_SECS` when set (and
    /// not 0), else `OCEAN__SCHEDULED_RESYNC_INTERVAL` minutes; `None` when neither asks for
    /// a schedule.
    pub fn scheduled_resync_every(&self) -> Option<std::time::Duration> {
        match self
            .pipeline
            .ingest
            .scheduled_resync_secs
            .filter(|s| *s > 0)
        {
            Some(seconds) => Some(std::time::Duration::from_secs(seconds)),
            None => self
                .ocean
                .scheduled_resync_interval
                .filter(|m| *m > 0)
                .map(|minutes| std::time::Duration::from_secs(minutes.saturating_mul(60))),
        }
    }

    /// A resync must read at least one crawl unit at a time; past the number of kinds there is
    /// nothing more to run at once.
    fn validate_concurrent_kinds(&self) -> Result<(), ConfigError> {
        check_range(
            "ADOPORT__INGEST__CONCURRENT_KINDS",
            self.pipeline.ingest.concurrent_kinds,
            1..=MAX_CONCURRENT_KINDS,
            "the crawl units a resync reads at the same time, 1 for one kind after another; their requests share ADOPORT__INGEST__MAX_CONCURRENT_REQUESTS",
        )
    }

    /// A resync must be able to hold a page.
    fn validate_crawl_buffer(&self) -> Result<(), ConfigError> {
        check_range(
            "ADOPORT__INGEST__CRAWL_BUFFER_MIB",
            self.pipeline.ingest.crawl_buffer_mib,
            1..=MAX_CRAWL_BUFFER_MIB,
            "MiB of pages a resync holds at once per organization",
        )
    }

    /// The live lane's reserve must leave the crawl something.
    fn validate_live_reserve(&self) -> Result<(), ConfigError> {
        let ingest = &self.pipeline.ingest;
        if ingest.live_reserved_requests >= ingest.max_concurrent_requests {
            return Err(ConfigError::Invalid {
                setting: "ADOPORT__INGEST__LIVE_RESERVED_REQUESTS".into(),
                problem: format!(
                    "{} leaves the resync crawl no request of ADOPORT__INGEST__MAX_CONCURRENT_REQUESTS ({}); use 0 to {}",
                    ingest.live_reserved_requests,
                    ingest.max_concurrent_requests,
                    ingest.max_concurrent_requests.saturating_sub(1)
                ),
            });
        }
        check_range(
            "ADOPORT__INGEST__LIVE_RESERVED_BUDGET_PERCENT",
            ingest.live_reserved_budget_percent,
            0..=90,
            "percent of the rate budget kept for live re-reads",
        )
    }

    /// The broker topology these settings describe.
    pub fn topology(&self) -> Topology {
        let broker = &self.pipeline.broker;
        let mut topology = Topology::new(broker.prefix.clone(), broker.partitions as u16);
        topology.delivery_limit = broker.delivery_limit as u32;
        topology.archive = ArchiveRetention {
            max_age: broker.archive_max_age.clone(),
            max_bytes: broker.archive_max_bytes,
        };
        topology
    }

    /// The partitions this publish process is pinned to by `ADOPORT__PUBLISH__PARTITIONS`, or
    /// `None` when it is unset (the replicas share the partitions among themselves).
    pub fn publish_pinned_partitions(&self) -> Result<Option<Vec<u16>>, ConfigError> {
        if self.pipeline.publish.partitions.is_empty() {
            Ok(None)
        } else {
            self.publish_partitions().map(Some)
        }
    }

    /// The partitions a publish process consumes when it is alone (or pinned): the pinned
    /// list, else all of them.
    pub fn publish_partitions(&self) -> Result<Vec<u16>, ConfigError> {
        let total = self.pipeline.broker.partitions;
        let listed = &self.pipeline.publish.partitions;
        if listed.is_empty() {
            return Ok((0..total as u16).collect());
        }
        listed
            .iter()
            .map(|p| {
                p.parse::<u16>()
                    .ok()
                    .filter(|n| u64::from(*n) < total)
                    .ok_or_else(|| ConfigError::Invalid {
                        setting: "ADOPORT__PUBLISH__PARTITIONS".into(),
                        problem: format!(
                            "\"{p}\" is not a partition; partitions are 0 to {}",
                            total - 1
                        ),
                    })
            })
            .collect()
    }

    /// `OCEAN__INTEGRATION__IDENTIFIER`, or Ocean's default when it is unset or empty:
    /// `my-{type}-integration`, `my-azure-devops-integration` for this integration.
    pub fn integration_identifier(&self) -> String {
        let integration = &self.ocean.integration;
        match integration.identifier.as_deref().map(str::trim) {
            Some(identifier) if !identifier.is_empty() => identifier.to_string(),
            _ => format!(
                "my-{}-integration",
                integration.integration_type.trim().to_ascii_lowercase()
            ),
        }
    }

    /// Every secret value configured, to be masked in what leaves the process (the log lines
    /// shipped to Port): the Port credentials (Ocean masks the client id too), the Azure
    /// DevOps personal access token or service principal secret, the webhook secret, and the
    /// broker's password.
    pub fn secret_values(&self) -> Vec<String> {
        let config = &self.ocean.integration.config;
        let mut values: Vec<String> = [
            self.ocean.port.client_secret.as_ref(),
            config.personal_access_token.as_ref(),
            config.client_secret.as_ref(),
            config.webhook_secret.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|secret| secret.expose().to_string())
        .collect();
        values.extend(self.ocean.port.client_id.clone());
        if let Some(password) = self
            .pipeline
            .broker
            .url
            .as_ref()
            .and_then(|url| url::Url::parse(url.expose()).ok())
            .and_then(|url| url.password().map(String::from))
        {
            values.push(password);
        }
        values.retain(|v| !v.trim().is_empty());
        values
    }

    /// Port credentials and the integration's identity; required by every role that talks to Port.
    pub fn port_access(&self) -> Result<PortAccess, ConfigError> {
        let port = &self.ocean.port;
        let client_id = port.client_id.clone().ok_or_else(|| ConfigError::Missing {
            setting: "OCEAN__PORT__CLIENT_ID".into(),
            hint: "the client id of your Port organization (Port → Settings → Credentials)".into(),
        })?;
        let client_secret = required_secret(
            &port.client_secret,
            "OCEAN__PORT__CLIENT_SECRET",
            "the client secret of your Port organization (Port → Settings → Credentials)",
        )?;
        if !(port.base_url.starts_with("http://") || port.base_url.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                setting: "OCEAN__PORT__BASE_URL".into(),
                problem: format!(
                    "\"{}\" is not a URL; use https://api.getport.io (EU) or https://api.us.getport.io (US)",
                    port.base_url
                ),
            });
        }
        let identifier = self.integration_identifier();
        Ok(PortAccess {
            base_url: port.base_url.trim_end_matches('/').to_string(),
            client_id,
            client_secret,
            integration_identifier: identifier,
            integration_type: self.ocean.integration.integration_type.clone(),
            timeout_secs: self.ocean.client_timeout,
            network: self.network.clone(),
        })
    }

    /// The one organization and PAT of `Single Account` (ingest reads
    /// [`Settings::azure_devops_accounts`], which covers both account modes).
    pub fn azure_devops_access(&self) -> Result<AzureDevopsAccess, ConfigError> {
        let config = &self.ocean.integration.config;
        if config.account_mode == AccountMode::MultipleAccounts {
            return Err(ConfigError::Invalid {
                setting: "OCEAN__INTEGRATION__CONFIG__ACCOUNT_MODE".into(),
                problem: "\"Multiple Accounts\" authenticates with a service principal, not a personal access token".into(),
            });
        }
        let url = config
            .organization_url
            .clone()
            .ok_or_else(|| ConfigError::Missing {
                setting: "OCEAN__INTEGRATION__CONFIG__ORGANIZATION_URL".into(),
                hint: "your organization's URL, e.g. https://dev.azure.com/my-org".into(),
            })?;
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(ConfigError::Invalid {
                setting: "OCEAN__INTEGRATION__CONFIG__ORGANIZATION_URL".into(),
                problem: format!(
                    "\"{url}\" is not a URL; use https://dev.azure.com/my-org or your Azure DevOps Server collection URL"
                ),
            });
        }
        let pat = required_secret(
            &config.personal_access_token,
            "OCEAN__INTEGRATION__CONFIG__PERSONAL_ACCESS_TOKEN",
            "a personal access token with read access to the resources to sync",
        )?;
        Ok(AzureDevopsAccess {
            organization_url: url.trim_end_matches('/').to_string(),
            personal_access_token: pat,
            timeout_secs: self.ocean.client_timeout,
            network: self.network.clone(),
        })
    }
}

/// What a role needs to talk to Port.
#[derive(Debug, Clone)]
pub struct PortAccess {
    pub base_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub integration_identifier: String,
    pub integration_type: String,
    pub timeout_secs: u64,
    /// Proxies and extra trusted CAs ([`crate::http::client_builder`]).
    pub network: NetworkSettings,
}

/// What ingest needs to talk to Azure DevOps.
#[derive(Debug, Clone)]
pub struct AzureDevopsAccess {
    /// Without trailing slash, e.g. `https://dev.azure.com/acme`.
    pub organization_url: String,
    pub personal_access_token: Secret,
    pub timeout_secs: u64,
    /// Proxies and extra trusted CAs ([`crate::http::client_builder`]).
    pub network: NetworkSettings,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings(list: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_vars(list.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    const HELM_STYLE: &[(&str, &str)] = &[
        ("OCEAN__PORT__CLIENT_ID", "cid"),
        ("OCEAN__PORT__CLIENT_SECRET", "csecret"),
        ("OCEAN__PORT__BASE_URL", "https://api.getport.io"),
        ("OCEAN__INITIALIZE_PORT_RESOURCES", "true"),
        ("OCEAN__SEND_RAW_DATA_EXAMPLES", "false"),
        ("OCEAN__SCHEDULED_RESYNC_INTERVAL", "1440"),
        ("OCEAN__EVENT_LISTENER__TYPE", "ONCE"),
        ("OCEAN__INTEGRATION__IDENTIFIER", "my-ado"),
        ("OCEAN__INTEGRATION__TYPE", "azure-devops"),
        (
            "OCEAN__INTEGRATION__CONFIG__ORGANIZATION_URL",
            "https://dev.azure.com/acme/",
        ),
        ("OCEAN__INTEGRATION__CONFIG__PERSONAL_ACCESS_TOKEN", "pat"),
        ("OCEAN__INTEGRATION__CONFIG__IS_PROJECTS_LIMITED", "False"),
    ];

    #[test]
    fn the_heartbeat_interval_is_oceans_and_must_be_positive() {
        let s = settings(HELM_STYLE).expect("valid");
        assert_eq!(s.ocean.status_heartbeat_interval_seconds, 10);
        let mut vars = HELM_STYLE.to_vec();
        vars.push(("OCEAN__EVENT_LISTENER__APP_HOST", "https://ado.example.com"));
        vars.push(("OCEAN__STATUS_HEARTBEAT_INTERVAL_SECONDS", "0"));
        let error = settings(&vars).expect_err("0 refused").to_string();
        assert!(
            error.contains("OCEAN__STATUS_HEARTBEAT_INTERVAL_SECONDS"),
            "{error}"
        );
        vars.pop();
        let s = settings(&vars).expect("valid");
        assert_eq!(
            s.ocean.event_listener.app_host.as_deref(),
            Some("https://ado.example.com")
        );
    }

    #[test]
    fn python_integration_variables_are_read() {
        let s = settings(HELM_STYLE).expect("valid");
        assert_eq!(s.ocean.event_listener.kind, EventListenerType::Once);
        assert_eq!(s.ocean.scheduled_resync_interval, Some(1440));
        assert!(!s.ocean.send_raw_data_examples);
        assert!(!s.ocean.integration.config.is_projects_limited);
        let ado = s.azure_devops_access().expect("ado");
        assert_eq!(ado.organization_url, "https://dev.azure.com/acme");
        assert_eq!(ado.personal_access_token.expose(), "pat");
        let port = s.port_access().expect("port");
        assert_eq!(port.integration_identifier, "my-ado");
        assert!(s.unused.is_empty(), "{:?}", s.unused);
    }

    #[test]
    fn event_listener_as_json_is_read() {
        let s = settings(&[("OCEAN__EVENT_LISTENER", r#"{"type":"ONCE"}"#)]).expect("valid");
        assert_eq!(s.ocean.event_listener.kind, EventListenerType::Once);
        let s =
            settings(&[("OCEAN__EVENT_LISTENER", r#"{"type":"WEBHOOKS_ONLY"}"#)]).expect("valid");
        assert_eq!(s.ocean.event_listener.kind, EventListenerType::WebhooksOnly);
    }

    #[test]
    fn integration_config_as_json_with_camel_case_is_read() {
        let s = settings(&[(
            "OCEAN__INTEGRATION__CONFIG",
            r#"{"organizationUrl":"https://dev.azure.com/x","personalAccessToken":"p","organizationUrls":"https://a, https://b"}"#,
        )])
        .expect("valid");
        let c = &s.ocean.integration.config;
        assert_eq!(
            c.organization_url.as_deref(),
            Some("https://dev.azure.com/x")
        );
        assert_eq!(c.organization_urls, vec!["https://a", "https://b"]);
    }

    #[test]
    fn the_subscription_check_interval_is_read_and_defaults_to_ten_minutes() {
        let s = settings(&[]).expect("valid");
        assert_eq!(s.pipeline.ingest.subscription_check_minutes, 10);
        let s = settings(&[("ADOPORT__INGEST__SUBSCRIPTION_CHECK_MINUTES", "0")]).expect("valid");
        assert_eq!(s.pipeline.ingest.subscription_check_minutes, 0);
        assert!(settings(&[("ADOPORT__INGEST__SUBSCRIPTION_CHECK_MINUTES", "often")]).is_err());
    }

    #[test]
    fn the_leader_retry_is_read_and_validated() {
        let s = settings(&[]).expect("valid");
        assert_eq!(s.pipeline.ingest.leader_retry_secs, 2);
        let s = settings(&[("ADOPORT__INGEST__LEADER_RETRY_SECS", "30")]).expect("valid");
        assert_eq!(s.pipeline.ingest.leader_retry_secs, 30);
        for value in ["0", "61", "soon"] {
            let error = settings(&[("ADOPORT__INGEST__LEADER_RETRY_SECS", value)])
                .expect_err("refused")
                .to_string();
            assert!(
                error.contains("ADOPORT__INGEST__LEADER_RETRY_SECS"),
                "{error}"
            );
        }
    }

    #[test]
    fn a_seconds_schedule_overrides_the_ocean_minutes() {
        let s = settings(&[]).expect("valid");
        assert_eq!(s.scheduled_resync_every(), None);
        let s = settings(&[("OCEAN__SCHEDULED_RESYNC_INTERVAL", "360")]).expect("valid");
        assert_eq!(
            s.scheduled_resync_every(),
            Some(Duration::from_secs(360 * 60))
        );
        let s = settings(&[
            ("OCEAN__SCHEDULED_RESYNC_INTERVAL", "360"),
            ("ADOPORT__INGEST__SCHEDULED_RESYNC_SECS", "4"),
        ])
        .expect("valid");
        assert_eq!(s.scheduled_resync_every(), Some(Duration::from_secs(4)));
        let s = settings(&[
            ("OCEAN__SCHEDULED_RESYNC_INTERVAL", "0"),
            ("ADOPORT__INGEST__SCHEDULED_RESYNC_SECS", "0"),
        ])
        .expect("valid");
        assert_eq!(s.scheduled_resync_every(), None);
        assert!(settings(&[("ADOPORT__INGEST__SCHEDULED_RESYNC_SECS", "soon")]).is_err());
    }

    #[test]
    fn the_webhook_in_flight_bound_is_read_and_must_be_positive() {
        let s = settings(&[]).expect("valid");
        assert_eq!(s.pipeline.ingest.webhook_max_in_flight, 32);
        let s = settings(&[("ADOPORT__INGEST__WEBHOOK_MAX_IN_FLIGHT", "4")]).expect("valid");
        assert_eq!(s.pipeline.ingest.webhook_max_in_flight, 4);
        let error = settings(&[("ADOPORT__INGEST__WEBHOOK_MAX_IN_FLIGHT", "0")])
            .expect_err("0 serves nothing");
        assert!(
            error
                .to_string()
                .contains("ADOPORT__INGEST__WEBHOOK_MAX_IN_FLIGHT"),
            "{error}"
        );
    }

    #[test]
    fn the_publish_retry_window_is_read_and_bounded() {
        let s = settings(&[]).expect("valid");
        assert_eq!(s.pipeline.publish.retry_window_secs, 600);
        let s = settings(&[("ADOPORT__PUBLISH__RETRY_WINDOW_SECS", "0")]).expect("valid");
        assert_eq!(s.pipeline.publish.retry_window_secs, 0);
        let error = settings(&[("ADOPORT__PUBLISH__RETRY_WINDOW_SECS", "100000")])
            .expect_err("more than a day");
        assert!(
            error
                .to_string()
                .contains("ADOPORT__PUBLISH__RETRY_WINDOW_SECS"),
            "{error}"
        );
    }

    #[test]
    fn live_events_publish_on_their_own_lane_unless_told_not_to() {
        let s = settings(&[]).expect("valid");
        assert!(s.pipeline.broker.live_channel);
        let s = settings(&[("ADOPORT__BROKER__LIVE_CHANNEL", "false")]).expect("valid");
        assert!(!s.pipeline.broker.live_channel);
    }

    #[test]
    fn publish_sends_live_batches_when_idle_unless_told_not_to() {
        let s = settings(&[]).expect("valid");
        assert!(s.pipeline.publish.send_when_idle);
        let s = settings(&[("ADOPORT__PUBLISH__SEND_WHEN_IDLE", "false")]).expect("valid");
        assert!(!s.pipeline.publish.send_when_idle);
    }

    #[test]
    fn broker_timeouts_have_defaults_and_are_read() {
        let t = settings(&[]).expect("valid").pipeline.broker.timeouts();
        assert_eq!(
            t,
            BrokerTimeouts {
                connect: Duration::from_secs(10),
                heartbeat: Duration::from_secs(10),
                operation: Duration::from_secs(10),
                confirm: Duration::from_secs(30),
                fail_fast: Duration::from_millis(1500),
            }
        );
        assert_eq!(t, BrokerTimeouts::default());
        let t = settings(&[
            ("ADOPORT__BROKER__CONNECT_TIMEOUT_SECS", "2"),
            ("ADOPORT__BROKER__HEARTBEAT_SECS", "5"),
            ("ADOPORT__BROKER__OPERATION_TIMEOUT_SECS", "3"),
            ("ADOPORT__BROKER__CONFIRM_TIMEOUT_SECS", "60"),
            ("ADOPORT__BROKER__WEBHOOK_PUBLISH_TIMEOUT_MS", "800"),
        ])
        .expect("valid")
        .pipeline
        .broker
        .timeouts();
        assert_eq!(
            (t.connect, t.heartbeat, t.operation, t.confirm, t.fail_fast),
            (
                Duration::from_secs(2),
                Duration::from_secs(5),
                Duration::from_secs(3),
                Duration::from_secs(60),
                Duration::from_millis(800)
            )
        );
    }

    #[test]
    fn the_live_reserve_defaults_to_three_requests_and_a_fifth_of_the_budget() {
        let s = settings(&[]).expect("valid");
        assert_eq!(s.pipeline.ingest.live_reserved_requests, 3);
        assert_eq!(s.pipeline.ingest.live_reserved_budget_percent, 20);
        let off = settings(&[
            ("ADOPORT__INGEST__LIVE_RESERVED_REQUESTS", "0"),
            ("ADOPORT__INGEST__LIVE_RESERVED_BUDGET_PERCENT", "0"),
        ])
        .expect("valid");
        assert_eq!(off.pipeline.ingest.live_reserved_requests, 0);
        assert_eq!(off.pipeline.ingest.live_reserved_budget_percent, 0);
    }

    #[test]
    fn four_kinds_are_crawled_at_once_unless_told_otherwise() {
        let s = settings(&[]).expect("valid");
        assert_eq!(s.pipeline.ingest.concurrent_kinds, 4);
        let one = settings(&[("ADOPORT__INGEST__CONCURRENT_KINDS", "1")]).expect("valid");
        assert_eq!(one.pipeline.ingest.concurrent_kinds, 1);
    }

    #[test]
    fn a_resync_holds_2_mib_of_pages_unless_told_otherwise() {
        let s = settings(&[]).expect("valid");
        assert_eq!(s.pipeline.ingest.crawl_buffer_mib, 2);
        let more = settings(&[("ADOPORT__INGEST__CRAWL_BUFFER_MIB", "64")]).expect("valid");
        assert_eq!(more.pipeline.ingest.crawl_buffer_mib, 64);
        let none = settings(&[("ADOPORT__INGEST__CRAWL_BUFFER_MIB", "0")]).expect_err("refused");
        assert!(none.to_string().contains("CRAWL_BUFFER_MIB"), "{none}");
    }

    #[test]
    fn the_identifier_defaults_as_in_the_python_integration() {
        let s = settings(&[]).expect("valid");
        assert_eq!(s.integration_identifier(), "my-azure-devops-integration");
        let s = settings(&[("OCEAN__INTEGRATION__IDENTIFIER", " ")]).expect("valid");
        assert_eq!(s.integration_identifier(), "my-azure-devops-integration");
        let s = settings(&[("OCEAN__INTEGRATION__IDENTIFIER", "mine")]).expect("valid");
        assert_eq!(s.integration_identifier(), "mine");
        let s = settings(&[
            ("OCEAN__PORT__CLIENT_ID", "id"),
            ("OCEAN__PORT__CLIENT_SECRET", "secret"),
        ])
        .expect("valid");
        let port = s.port_access().expect("no identifier needed");
        assert_eq!(port.integration_identifier, "my-azure-devops-integration");
    }

    #[test]
    fn incremental_sync_is_read_as_ocean_reads_it() {
        let s = settings(&[]).expect("valid");
        assert!(!s.ocean.integration.incremental_sync_enabled);
        assert_eq!(s.ocean.integration.incremental_sync_interval, 15);
        for (value, minutes) in [("30", 30), ("30m", 30), ("1h", 60), ("", 15), (" 15 ", 15)] {
            let s = settings(&[
                ("OCEAN__INTEGRATION__INCREMENTAL_SYNC_ENABLED", "true"),
                ("OCEAN__INTEGRATION__INCREMENTAL_SYNC_INTERVAL", value),
            ])
            .expect("valid");
            assert!(s.ocean.integration.incremental_sync_enabled);
            assert_eq!(
                s.ocean.integration.incremental_sync_interval, minutes,
                "{value}"
            );
            assert_eq!(s.incremental_sync_every().as_secs(), minutes * 60);
        }
        let json = settings(&[(
            "OCEAN__INTEGRATION",
            r#"{"incrementalSyncEnabled": true, "incrementalSyncInterval": 60}"#,
        )])
        .expect("valid");
        assert!(json.ocean.integration.incremental_sync_enabled);
        assert_eq!(json.ocean.integration.incremental_sync_interval, 60);
        for bad in ["20", "2h", "soon", "0"] {
            let e = settings(&[("OCEAN__INTEGRATION__INCREMENTAL_SYNC_INTERVAL", bad)])
                .expect_err(bad)
                .to_string();
            assert!(
                e.contains("OCEAN__INTEGRATION__INCREMENTAL_SYNC_INTERVAL"),
                "{bad}: {e}"
            );
        }
        let e = settings(&[("OCEAN__INTEGRATION__INCREMENTAL_SYNC_ENABLED", "maybe")])
            .expect_err("not a boolean")
            .to_string();
        assert!(
            e.contains("OCEAN__INTEGRATION__INCREMENTAL_SYNC_ENABLED"),
            "{e}"
        );
    }

    #[test]
    fn every_listener_type_of_ocean_is_accepted_with_its_meaning() {
        use EventListenerType as T;
        let cases = [
            ("POLLING", T::Polling, true, true, true, true),
            ("KAFKA", T::Kafka, true, true, true, true),
            ("WEBHOOK", T::Webhook, true, true, false, true),
            ("WEBHOOKS_ONLY", T::WebhooksOnly, true, false, false, true),
            ("ONCE", T::Once, true, true, false, false),
            ("ACTIONS_ONLY", T::ActionsOnly, false, false, false, false),
        ];
        for (name, kind, resyncs, at_start, polls, subscribes) in cases {
            let json = format!(r#"{{"type":"{name}"}}"#);
            for vars in [
                vec![("OCEAN__EVENT_LISTENER", json.as_str())],
                vec![("OCEAN__EVENT_LISTENER__TYPE", name)],
            ] {
                let s = settings(&vars).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(s.ocean.event_listener.kind, kind, "{name}");
            }
            assert_eq!(kind.name(), name);
            assert_eq!(kind.resyncs(), resyncs, "{name} resyncs");
            assert_eq!(kind.resyncs_at_start(true), at_start, "{name} at start");
            assert_eq!(kind.polls_port(), polls, "{name} polls Port");
            assert_eq!(kind.subscribes(), subscribes, "{name} subscribes");
        }
        assert!(!T::Polling.resyncs_at_start(false));
        // Port's chart renders KAFKA with its brokers: the brokers are reported as unused.
        let s = settings(&[(
            "OCEAN__EVENT_LISTENER",
            r#"{"brokers":"b-1:9196,b-2:9196","type":"KAFKA"}"#,
        )])
        .expect("valid");
        assert_eq!(s.ocean.event_listener.kind, T::Kafka);
        assert_eq!(s.unused, ["OCEAN__EVENT_LISTENER__BROKERS"]);
    }

    #[test]
    fn mappings_see_the_environment_without_secrets_unless_access_is_off() {
        let vars = [
            ("CLUSTER_NAME", "prod-eu"),
            ("OCEAN__PORT__CLIENT_SECRET", "csecret"),
            ("OCEAN__INTEGRATION__CONFIG__PERSONAL_ACCESS_TOKEN", "pat"),
        ];
        let s = settings(&vars).expect("valid");
        assert!(s.ocean.allow_environment_variables_jq_access);
        let names: Vec<&String> = s.jq_environment.variables().keys().collect();
        assert_eq!(names, ["CLUSTER_NAME"]);
        let mut off = vars.to_vec();
        off.push(("OCEAN__ALLOW_ENVIRONMENT_VARIABLES_JQ_ACCESS", "false"));
        let s = settings(&off).expect("valid");
        assert!(s.jq_environment.variables().is_empty());
    }

    #[test]
    fn http_logging_is_on_by_default_and_ocean_turns_it_off() {
        let s = Settings::from_vars(test_vars(&[])).expect("settings");
        assert!(s.application.enable_http_logging);
        let s = Settings::from_vars(test_vars(&[
            ("APPLICATION__ENABLE_HTTP_LOGGING", "false"),
            ("APPLICATION__PORT", "8000"),
        ]))
        .expect("settings");
        assert!(!s.application.enable_http_logging);
        assert_eq!(s.unused, ["APPLICATION__PORT"]);
    }

    #[test]
    fn every_configured_secret_is_listed_for_masking() {
        let s = Settings::from_vars(test_vars(&[
            ("OCEAN__PORT__CLIENT_ID", "port-id"),
            ("OCEAN__PORT__CLIENT_SECRET", "port-secret"),
            (
                "OCEAN__INTEGRATION__CONFIG__PERSONAL_ACCESS_TOKEN",
                "the-pat",
            ),
            ("OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET", "hook-secret"),
            (
                "ADOPORT__BROKER__URL",
                "amqp://guest:broker-pass@127.0.0.1:5672/%2f",
            ),
        ]))
        .expect("settings");
        let mut values = s.secret_values();
        values.sort();
        assert_eq!(
            values,
            [
                "broker-pass",
                "hook-secret",
                "port-id",
                "port-secret",
                "the-pat"
            ]
        );
    }

    #[test]
    fn log_level_and_path_prefix_are_read() {
        let s = settings(&[
            ("OCEAN__LOG_LEVEL", "DEBUG"),
            ("OCEAN__PATH_PREFIX", "/ado/"),
        ])
        .expect("valid");
        assert_eq!(s.ocean.log_level, Some(LogLevel::Debug));
        assert_eq!(s.ocean.route_prefix(), "/ado");
        assert!(s.unused.is_empty(), "{:?}", s.unused);
        assert_eq!(settings(&[]).expect("valid").ocean.route_prefix(), "");
        let error = settings(&[("OCEAN__LOG_LEVEL", "LOUD")]).expect_err("not a level");
        assert!(error.to_string().starts_with("OCEAN__LOG_LEVEL"), "{error}");
    }

    #[test]
    fn unknown_ocean_settings_are_reported_not_fatal() {
        let s = settings(&[("OCEAN__LOG_LEVEL_X", "DEBUG")]).expect("valid");
        assert_eq!(s.unused, vec!["OCEAN__LOG_LEVEL_X"]);
    }

    #[test]
    fn jq_limits_have_defaults_and_are_checked_at_start_up() {
        let limits = |s: Settings| {
            let t = s.pipeline.transform;
            (
                t.jq_item_time_ms,
                t.jq_max_steps,
                t.jq_max_memory_mib,
                t.jq_max_stack_mib,
            )
        };
        let s = settings(&[]).expect("valid");
        assert_eq!(limits(s), (2_000, 1_000_000, 64, 16));
        let s = settings(&[
            ("ADOPORT__TRANSFORM__JQ_ITEM_TIME_MS", "250"),
            ("ADOPORT__TRANSFORM__JQ_MAX_STEPS", "50000"),
            ("ADOPORT__TRANSFORM__JQ_MAX_MEMORY_MIB", "8"),
            ("ADOPORT__TRANSFORM__JQ_MAX_STACK_MIB", "2"),
        ])
        .expect("valid");
        assert_eq!(limits(s), (250, 50_000, 8, 2));
        for (name, value) in [
            ("ADOPORT__TRANSFORM__JQ_ITEM_TIME_MS", "0"),
            ("ADOPORT__TRANSFORM__JQ_ITEM_TIME_MS", "soon"),
            ("ADOPORT__TRANSFORM__JQ_MAX_STEPS", "10"),
            ("ADOPORT__TRANSFORM__JQ_MAX_MEMORY_MIB", "0"),
            ("ADOPORT__TRANSFORM__JQ_MAX_STACK_MIB", "100000"),
        ] {
            let err = settings(&[(name, value)]).expect_err(name);
            assert!(err.to_string().starts_with(name), "{name}={value}: {err}");
        }
    }

    #[test]
    fn bad_settings_name_the_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("OCEAN__EVENT_LISTENER__TYPE", "SOMETIMES")],
                "OCEAN__EVENT_LISTENER__TYPE",
            ),
            (
                &[("OCEAN__SCHEDULED_RESYNC_INTERVAL", "daily")],
                "OCEAN__SCHEDULED_RESYNC_INTERVAL",
            ),
            (
                &[("OCEAN__INTEGRATION__CONFIG__IS_PROJECTS_LIMITED", "maybe")],
                "OCEAN__INTEGRATION__CONFIG__IS_PROJECTS_LIMITED",
            ),
            (
                &[("ADOPORT__BROKER__PARTITONS", "4")],
                "ADOPORT__BROKER__PARTITONS",
            ),
            (
                &[("ADOPORT__BROKER__PARTITIONS", "0")],
                "ADOPORT__BROKER__PARTITIONS",
            ),
            (
                &[("ADOPORT__BROKER__URL", "http://x")],
                "ADOPORT__BROKER__URL",
            ),
            (
                &[("ADOPORT__INGEST__LISTEN", "everywhere")],
                "ADOPORT__INGEST__LISTEN",
            ),
            (
                &[("ADOPORT__PUBLISH__PARTITIONS", "0,9")],
                "ADOPORT__PUBLISH__PARTITIONS",
            ),
            (
                &[("ADOPORT__PUBLISH__MEMBER_HEARTBEAT_MS", "50")],
                "ADOPORT__PUBLISH__MEMBER_HEARTBEAT_MS",
            ),
            (
                &[
                    ("ADOPORT__PUBLISH__MEMBER_HEARTBEAT_MS", "1000"),
                    ("ADOPORT__PUBLISH__MEMBER_TIMEOUT_MS", "2000"),
                ],
                "ADOPORT__PUBLISH__MEMBER_TIMEOUT_MS",
            ),
            (
                &[("ADOPORT__PUBLISH__MEMBER_TIMEOUT_MS", "forever")],
                "ADOPORT__PUBLISH__MEMBER_TIMEOUT_MS",
            ),
            (
                &[("ADOPORT__BROKER__URL", "amqp://guest:guest@")],
                "ADOPORT__BROKER__URL",
            ),
            (
                &[("ADOPORT__BROKER__HEARTBEAT_SECS", "0")],
                "ADOPORT__BROKER__HEARTBEAT_SECS",
            ),
            (
                &[("ADOPORT__BROKER__CONNECT_TIMEOUT_SECS", "soon")],
                "ADOPORT__BROKER__CONNECT_TIMEOUT_SECS",
            ),
            (
                &[("ADOPORT__BROKER__OPERATION_TIMEOUT_SECS", "0")],
                "ADOPORT__BROKER__OPERATION_TIMEOUT_SECS",
            ),
            (
                &[("ADOPORT__BROKER__CONFIRM_TIMEOUT_SECS", "86400")],
                "ADOPORT__BROKER__CONFIRM_TIMEOUT_SECS",
            ),
            (
                &[("ADOPORT__BROKER__WEBHOOK_PUBLISH_TIMEOUT_MS", "20000")],
                "ADOPORT__BROKER__WEBHOOK_PUBLISH_TIMEOUT_MS",
            ),
            (
                &[
                    ("ADOPORT__INGEST__MAX_CONCURRENT_REQUESTS", "4"),
                    ("ADOPORT__INGEST__LIVE_RESERVED_REQUESTS", "4"),
                ],
                "ADOPORT__INGEST__LIVE_RESERVED_REQUESTS",
            ),
            (
                &[("ADOPORT__INGEST__LIVE_RESERVED_BUDGET_PERCENT", "95")],
                "ADOPORT__INGEST__LIVE_RESERVED_BUDGET_PERCENT",
            ),
            (
                &[("ADOPORT__INGEST__CONCURRENT_KINDS", "0")],
                "ADOPORT__INGEST__CONCURRENT_KINDS",
            ),
            (
                &[("ADOPORT__INGEST__CONCURRENT_KINDS", "65")],
                "ADOPORT__INGEST__CONCURRENT_KINDS",
            ),
        ];
        for (vars, name) in cases {
            let err = settings(vars).expect_err(name);
            assert!(err.to_string().starts_with(name), "{name}: {err}");
        }
    }

    #[test]
    fn a_value_out_of_range_names_the_setting_the_range_and_its_meaning() {
        let err = settings(&[
            ("ADOPORT__PUBLISH__MEMBER_HEARTBEAT_MS", "1000"),
            ("ADOPORT__PUBLISH__MEMBER_TIMEOUT_MS", "2000"),
        ])
        .expect_err("a timeout of two heartbeats is refused");
        assert_eq!(
            err.to_string(),
            "ADOPORT__PUBLISH__MEMBER_TIMEOUT_MS: 2000 is out of range; use 3000 to 600000 \
             (milliseconds; at least three heartbeats of ADOPORT__PUBLISH__MEMBER_HEARTBEAT_MS)"
        );
        let err = settings(&[("ADOPORT__BROKER__PARTITIONS", "0")]).expect_err("no partition");
        assert_eq!(
            err.to_string(),
            "ADOPORT__BROKER__PARTITIONS: 0 is out of range; use 1 to 1024"
        );
    }

    #[test]
    fn missing_credentials_name_the_variable_and_never_print_secrets() {
        let s = settings(&[(
            "OCEAN__INTEGRATION__CONFIG__ORGANIZATION_URL",
            "https://dev.azure.com/x",
        )])
        .expect("valid");
        let err = s.azure_devops_access().expect_err("no pat");
        assert!(
            err.to_string()
                .contains("OCEAN__INTEGRATION__CONFIG__PERSONAL_ACCESS_TOKEN")
        );
        let err = s.port_access().expect_err("no port id");
        assert!(err.to_string().contains("OCEAN__PORT__CLIENT_ID"));
        let s = settings(HELM_STYLE).expect("valid");
        let printed = format!("{s:?}");
        assert!(
            !printed.contains("csecret") && !printed.contains("\"pat\""),
            "{printed}"
        );
    }
}
