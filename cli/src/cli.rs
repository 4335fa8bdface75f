//! The command line: one subcommand per role, plus the operator and try-out tools.
//!
//! Roles take their settings from the environment (the Python integration's `OCEAN__…`
//! variables and adoport's `ADOPORT__…`), never from flags, so that one set of variables
//! configures every deployment style alike.

use clap::{Args, Parser, Subcommand, ValueEnum};

const SETTINGS_HELP: &str = "\
Settings come from the environment:
  OCEAN__PORT__CLIENT_ID, OCEAN__PORT__CLIENT_SECRET, OCEAN__PORT__BASE_URL
  OCEAN__INTEGRATION__IDENTIFIER
  OCEAN__INTEGRATION__CONFIG__ORGANIZATION_URL, OCEAN__INTEGRATION__CONFIG__PERSONAL_ACCESS_TOKEN
  OCEAN__EVENT_LISTENER__TYPE (or OCEAN__EVENT_LISTENER='{\"type\":\"ONCE\"}'), OCEAN__SCHEDULED_RESYNC_INTERVAL
  ADOPORT__BROKER__URL (amqp://…; unset: `all` runs without a broker), ADOPORT__MAPPING_FILE
See the README for the full list.";

/// Azure DevOps → Port, as an event-driven pipeline over RabbitMQ.
#[derive(Debug, Parser)]
#[command(name = "adoport", version, about, long_about = None, after_help = SETTINGS_HELP)]
pub struct Cli {
    /// Log one JSON object per line (for log collectors). Also ADOPORT_LOG_JSON=true.
    #[arg(long, global = true, env = "ADOPORT_LOG_JSON", default_value_t = false)]
    pub log_json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Receive Azure DevOps service hooks and crawl the REST API on resync; publish raw events.
    /// Needs a broker (ADOPORT__BROKER__URL).
    #[command(after_help = SETTINGS_HELP)]
    Ingest,
    /// Apply the port-app-config mapping (jq) to raw events; publish entity changes.
    /// Needs a broker.
    #[command(after_help = SETTINGS_HELP)]
    Transform,
    /// Batch and write entity changes to Port, with retries and ordering. Needs a broker.
    #[command(after_help = SETTINGS_HELP)]
    Publish,
    /// Every role in one process. Without ADOPORT__BROKER__URL it runs on an in-process bus
    /// (small organizations, CI jobs: OCEAN__EVENT_LISTENER__TYPE=ONCE exits after one resync).
    #[command(after_help = SETTINGS_HELP)]
    All,
    /// Try it out: start simulated Azure DevOps and Port, run a resync and a few webhooks
    /// through the pipeline, and print what landed in Port.
    Demo(DemoArgs),
    /// Serve the Azure DevOps and Port simulators (for the compose try-out profile).
    Sim(SimArgs),
    /// Measure a resync of a simulated organization through the pipeline and print figures.
    Bench(BenchArgs),
    /// Measure the mapping engine alone: items/s of the default mapping on one thread.
    BenchMapping(BenchMappingArgs),
    /// Validate the settings a role would start with, print them (secrets masked) and exit.
    CheckConfig(CheckConfigArgs),
    /// Read raw events back from the archive stream: show what the current mapping makes of
    /// them and how that differs from Port (default), or put them back into the pipeline
    /// (--apply). Needs ADOPORT__BROKER__URL.
    #[command(after_help = SETTINGS_HELP)]
    Replay(ReplayArgs),
    /// List, show, requeue or purge dead-lettered messages. Needs ADOPORT__BROKER__URL.
    #[command(after_help = SETTINGS_HELP)]
    Dlq(DlqArgs),
    /// Check a port-app-config offline, or run it on items (Port's "test mapping", offline).
    #[command(subcommand)]
    Mapping(MappingCommand),
}

#[derive(Debug, Subcommand)]
pub enum MappingCommand {
    /// Parse FILE (YAML or JSON) and compile every jq expression; print every error.
    Validate {
        /// The port-app-config file.
        file: std::path::PathBuf,
    },
    /// Print the entities (or the errors) that the items of --input produce with FILE.
    Test {
        /// The port-app-config file.
        file: std::path::PathBuf,
        /// The kind the items are, e.g. `work-item`.
        #[arg(long)]
        kind: String,
        /// A JSON file: one item, or an array of items.
        #[arg(long)]
        input: std::path::PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Start at this age (`10m`, `2h`, `7D`) or time (`2025-01-31T12:00:00Z`).
    #[arg(long, conflicts_with = "offset")]
    pub since: Option<String>,
    /// Start at this stream offset (printed by earlier replays). Neither: the oldest retained.
    #[arg(long)]
    pub offset: Option<u64>,
    /// Leave out events observed after this time (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// Only events of this mapping kind (repeatable).
    #[arg(long = "kind")]
    pub kinds: Vec<String>,
    /// Only events of this webhook event type (`git.push`), or `resync` for crawled pages.
    #[arg(long)]
    pub event_type: Option<String>,
    /// Only items with this `id` (events keep just those items).
    #[arg(long)]
    pub id: Option<String>,
    /// Put the matching events back into the raw work queue instead of a dry run.
    #[arg(long)]
    pub apply: bool,
    /// Dry run: do not compare with Port.
    #[arg(long)]
    pub no_port: bool,
    /// Dry run: entities printed in full (the rest are counted).
    #[arg(long, default_value_t = 50)]
    pub show: usize,
    /// Stop after reading this many archived messages.
    #[arg(long)]
    pub limit: Option<u64>,
    /// The archive is read to its end: stop after this many milliseconds without a new message.
    #[arg(long, default_value_t = 2000)]
    pub idle_ms: u64,
}

#[derive(Debug, Args)]
pub struct DlqArgs {
    /// Which dead-letter queue.
    #[arg(value_enum)]
    pub queue: DlqName,
    #[command(subcommand)]
    pub action: DlqAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DlqName {
    /// Raw events transform could not read (ado.raw.dlq).
    Raw,
    /// Entity changes Port refused or that ran out of attempts (port.changes.dlq).
    Changes,
    /// Resync requests (adoport.resync.dlq).
    Resync,
}

impl DlqName {
    pub fn as_str(self) -> &'static str {
        match self {
            DlqName::Raw => "raw",
            DlqName::Changes => "changes",
            DlqName::Resync => "resync",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum DlqAction {
    /// List the letters with their reasons (they stay in the queue).
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show one letter in full, by its position in `list`.
    Show { position: usize },
    /// Put letters back into the work queue they came from.
    Requeue {
        /// Every letter.
        #[arg(long)]
        all: bool,
        /// The letter at this position in `list` (repeatable).
        #[arg(long = "position")]
        positions: Vec<usize>,
        /// Letters whose reason or body contains this text.
        #[arg(long)]
        contains: Option<String>,
    },
    /// Drop every letter of the queue.
    Purge,
}

/// Which bus the demo and benchmark run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BusChoice {
    /// The in-process bus (no broker needed).
    Memory,
    /// RabbitMQ at --amqp-url.
    Rabbit,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Projects in the simulated organization.
    #[arg(long, default_value_t = 3)]
    pub projects: usize,
    /// Repositories per project.
    #[arg(long, default_value_t = 4)]
    pub repositories: usize,
    /// Run on RabbitMQ instead of in process.
    #[arg(long, value_enum, default_value_t = BusChoice::Memory)]
    pub bus: BusChoice,
    /// Broker for --bus rabbit.
    #[arg(
        long,
        env = "ADOPORT_DEMO_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,
}

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address of the Azure DevOps simulator.
    #[arg(long, default_value = "0.0.0.0:8081")]
    pub ado_listen: String,
    /// Address of the Port simulator.
    #[arg(long, default_value = "0.0.0.0:8082")]
    pub port_listen: String,
    /// Projects in the simulated organization.
    #[arg(long, default_value_t = 5)]
    pub projects: usize,
    /// Repositories per project.
    #[arg(long, default_value_t = 10)]
    pub repositories: usize,
    /// Work items per project (types and states cycle).
    #[arg(long, default_value_t = 6)]
    pub work_items: usize,
    /// Pull requests per repository (none in the disabled and the empty repository).
    #[arg(long, default_value_t = 2)]
    pub pull_requests: usize,
    /// Releases per project.
    #[arg(long, default_value_t = 3)]
    pub releases: usize,
    /// Port-app-config file the Port simulator serves as the integration's mapping.
    #[arg(long)]
    pub mapping: Option<std::path::PathBuf>,
    /// Identifier of the integration the Port simulator holds (with `--mapping` as its config);
    /// an integration started with another `OCEAN__INTEGRATION__IDENTIFIER` creates its own.
    #[arg(long, default_value = "azure-devops")]
    pub integration_identifier: String,
    /// Milliseconds every Azure DevOps answer takes (a real organization's network and server
    /// time; requests overlap, each waits its own).
    #[arg(long, default_value_t = 0)]
    pub ado_latency_ms: u64,
    /// Milliseconds every Port answer takes (requests overlap, each waits its own).
    #[arg(long, default_value_t = 0)]
    pub port_latency_ms: u64,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Projects in the simulated organization.
    #[arg(long, default_value_t = 50)]
    pub projects: usize,
    /// Repositories per project.
    #[arg(long, default_value_t = 40)]
    pub repositories: usize,
    /// Milliseconds every simulated Azure DevOps answer takes in the latency runs (0: no such
    /// runs): one with the kinds read one by one (`ADOPORT__INGEST__CONCURRENT_KINDS=1`), one
    /// with the default; the `ADOPORT__INGEST__*` settings of the bench's environment apply to
    /// both.
    #[arg(long, default_value_t = 50)]
    pub ado_latency_ms: u64,
    /// Run each role as its own process on RabbitMQ (measures per-role memory), in process, or both.
    #[arg(long, value_enum, default_value_t = BenchMode::Both)]
    pub mode: BenchMode,
    /// Broker for the RabbitMQ run.
    #[arg(
        long,
        env = "ADOPORT_BENCH_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,
    /// Also compare the resync crawl of one organization with that of this many at once
    /// (Multiple Accounts); 1 skips it.
    #[arg(long, default_value_t = 1)]
    pub organizations: usize,
    /// Each simulated organization's request budget in the organizations comparison.
    #[arg(long, default_value_t = 500)]
    pub ado_requests_per_second: u32,
    /// live-events mode: requests the simulated organization allows per sliding
    /// --ado-budget-window-secs (Azure DevOps' 200 TSTUs per 5 minutes, scaled down so the
    /// resync hits it); a tenth more are answered delayed, then 429.
    #[arg(long, default_value_t = 1000)]
    pub ado_budget: u32,
    /// live-events mode: the sliding window of --ado-budget, in seconds.
    #[arg(long, default_value_t = 10)]
    pub ado_budget_window_secs: u64,
    /// live-events mode: webhooks (repository renames) sent per second, with and without a
    /// resync running.
    #[arg(long, default_value_t = 5.0)]
    pub webhooks_per_second: f64,
    /// live-events mode: seconds of webhooks without a resync (the baseline).
    #[arg(long, default_value_t = 10)]
    pub quiet_secs: u64,
    /// live-events mode: what the runs compare.
    #[arg(long, value_enum, default_value_t = LiveCompare::Batching)]
    pub live_compare: LiveCompare,
    /// scaling and incremental modes: work items per project (the organization is `--projects`
    /// projects with this many work items each).
    #[arg(long, default_value_t = 1000)]
    pub work_items: usize,
    /// scaling mode: milliseconds every simulated Port answer takes.
    #[arg(long, default_value_t = 50)]
    pub port_latency_ms: u64,
    /// scaling mode: the transform and publish process counts to compare, e.g. `1,2,4`.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 4])]
    pub replicas: Vec<usize>,
    /// Another adoport build (e.g. main's) whose Azure DevOps requests for the default-mapping
    /// resync are counted before this build's, on an organization of the same shape; in rss
    /// mode, whose processes are measured before this build's, size by size.
    #[arg(long)]
    pub baseline_binary: Option<std::path::PathBuf>,
    /// The adoport build whose roles a run starts (none: this one). Set by the rss mode for
    /// its `--baseline-binary` runs.
    #[arg(skip)]
    pub roles_binary: Option<std::path::PathBuf>,
    /// Resync modes: the port-app-config (YAML or JSON) whose resync's Azure DevOps requests
    /// are counted against the minimum, instead of the whole default mapping (e.g.
    /// `scripts/side-by-side-mapping.yaml`, every kind).
    #[arg(long)]
    pub mapping: Option<std::path::PathBuf>,
    /// rss mode: the organization sizes to compare, in entities (each `size / 100` projects
    /// × 99 repositories, so a size that is a multiple of 100 is the exact entity count).
    #[arg(long, value_delimiter = ',', default_values_t = [5_000, 80_000])]
    pub sizes: Vec<usize>,
    /// rss mode: rounds per size (and build, alternating); each figure of the summary is the
    /// median of its rounds, as a process's peak moves by a few MiB between runs.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
}

#[derive(Debug, Args)]
pub struct BenchMappingArgs {
    /// Distinct items per kind (mapped round after round).
    #[arg(long, default_value_t = 1000)]
    pub items: usize,
    /// Seconds to measure each kind (with each engine) for.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Measure only the fast path, not also every expression on jaq alone.
    #[arg(long)]
    pub skip_jaq_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchMode {
    Memory,
    Rabbit,
    Both,
    /// Only the crawl comparison of `--organizations`.
    Organizations,
    /// Webhook → Port latency during a resync against a rate-limited Azure DevOps, against
    /// the same without a resync; `--live-compare` says which runs.
    LiveEvents,
    /// The same resync with 1, 2 and 4 transform and publish processes on RabbitMQ against
    /// a Port that takes `--port-latency-ms` per request (`--replicas` to choose the counts).
    Scaling,
    /// A full `adoport all` ONCE run against an incremental one after 10 work items changed
    /// (`--projects`, `--repositories`, `--work-items`, `--ado-latency-ms`): times and requests.
    Incremental,
    /// Peak resident memory of `adoport all` (ONCE) and of each role on RabbitMQ (two
    /// resyncs) at each of `--sizes`: memory must not grow with the organization.
    Rss,
}

/// What the live-events benchmark compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LiveCompare {
    /// Publish's batches waiting out their linger (`ADOPORT__PUBLISH__SEND_WHEN_IDLE=false`,
    /// as before) against sent at once when idle (the default), in one process and on
    /// RabbitMQ.
    Batching,
    /// The live lane's reserve off, then on (in one process).
    Reserve,
    /// On RabbitMQ: live events' publishes on the pipeline's channel
    /// (`ADOPORT__BROKER__LIVE_CHANNEL=false`, as before) against on a channel of their own (the
    /// default), twice each, alternating.
    Lane,
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The role whose requirements to check.
    #[arg(value_enum)]
    pub role: RoleArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Ingest,
    Transform,
    Publish,
    All,
}
