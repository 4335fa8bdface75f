//! `adoport bench --mode live-events`: how long a webhook takes to reach Port while a resync
//! crawls a large organization against a rate-limited Azure DevOps, against the same without
//! a resync.
//!
//! The simulated organization allows `--ado-budget` requests per sliding
//! `--ado-budget-window-secs` (then delays a tenth more, then answers 429), every answer takes
//! `--ado-latency-ms`. The whole pipeline runs in this process (webhooks only, no start-up
//! resync), on the in-process bus or on RabbitMQ. Webhooks are `git.repo.renamed` of a
//! different repository each, sent at `--webhooks-per-second`: first for `--quiet-secs` without
//! a resync, then from the moment a resync's crawl starts until it ends. For each webhook the
//! run records the time from the POST to ingest's answer and to the moment Port holds the new
//! name. `--live-compare` says which runs are made:
//! - `batching` (default): publish's live batches waiting out their linger
//!   (`ADOPORT__PUBLISH__SEND_WHEN_IDLE=false`, the behaviour before) against sent at once when
//!   no request of theirs is in flight (the default), each in one process and on RabbitMQ;
//! - `reserve`: the live lane's reserve off (`ADOPORT__INGEST__LIVE_RESERVED_REQUESTS=0`,
//!   `…_BUDGET_PERCENT=0`: one lane, the behaviour before the reserve existed) and with the
//!   default reserve, in one process;
//! - `lane`: on RabbitMQ, live events publishing on the pipeline's channel
//!   (`ADOPORT__BROKER__LIVE_CHANNEL=false`, the behaviour before) and on their own, twice each.
//!
//! Each run also says where the time went: the stretches between the stages a webhook's raw
//! event passes (`adoport_shared::telemetry::live_timing`), from the POST to Port.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cli::{BenchArgs, LiveCompare};
use crate::demo::{basic_auth, repo_renamed_event, start_all_roles};
use crate::sim::{PATIENCE, SimulatedWorld, WEBHOOK_SECRET, default_mapping};
use adoport_publish::BatchesSent;
use adoport_shared::bus::Bus;
use adoport_shared::config::Settings;
use adoport_shared::messages::ResyncTrigger;
use adoport_shared::port_app_config::PortAppConfig;
use adoport_shared::telemetry::live_timing::{self, Stage};
use adoport_sim::RateLimit;
use adoport_sim::ado::AdoSimConfig;

/// The blueprint a repository becomes in the default mapping.
const REPOSITORY_BLUEPRINT: &str = "azureDevopsRepository";
/// How long a webhook's change may take to reach Port before it counts as missed.
const IN_PORT_PATIENCE: Duration = Duration::from_secs(60);

/// What one webhook took.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// ingest's HTTP status.
    status: u16,
    /// POST → ingest's answer.
    answered: Duration,
    /// POST → Port holds the new name (`None`: not within [`IN_PORT_PATIENCE`]).
    in_port: Option<Duration>,
    /// POST → each stage of its raw event ([`Stage::ALL`]; `None`: not seen).
    stages: [Option<Duration>; Stage::ALL.len()],
}

/// The stretches a webhook's time is split into, between consecutive stages: their names.
const STRETCHES: [&str; 7] = [
    "read ADO",
    "raw confirm",
    "raw queue",
    "mapping",
    "change confirm",
    "change queue",
    "publish+Port",
];

impl Sample {
    /// How long each of [`STRETCHES`] took (`None` where a stage was not seen).
    fn stretches(&self) -> [Option<Duration>; STRETCHES.len()] {
        let mut marks = vec![Some(Duration::ZERO)];
        marks.extend(self.stages);
        marks.push(self.in_port);
        let mut out = [None; STRETCHES.len()];
        for (i, slot) in out.iter_mut().enumerate() {
            if let (Some(from), Some(to)) = (marks[i], marks[i + 1]) {
                *slot = Some(to.saturating_sub(from));
            }
        }
        out
    }
}

/// What one run sets.
struct Variant {
    label: &'static str,
    /// The live lane's reserve at its defaults (false: off).
    reserve: bool,
    /// `ADOPORT__PUBLISH__SEND_WHEN_IDLE`.
    send_when_idle: bool,
    /// On RabbitMQ (`--amqp-url`) rather than the in-process bus.
    rabbit: bool,
    /// `ADOPORT__BROKER__LIVE_CHANNEL`.
    live_lane: bool,
}

/// The runs `compare` asks for.
fn variants(compare: LiveCompare) -> Vec<Variant> {
    let run = |label, reserve, send_when_idle, rabbit| Variant {
        label,
        reserve,
        send_when_idle,
        rabbit,
        live_lane: true,
    };
    let lane = |label, live_lane| Variant {
        live_lane,
        ..run(label, true, true, true)
    };
    match compare {
        LiveCompare::Batching => vec![
            run("in process, linger always (before)", true, false, false),
            run("in process, send when idle", true, true, false),
            run("RabbitMQ, linger always (before)", true, false, true),
            run("RabbitMQ, send when idle", true, true, true),
        ],
        LiveCompare::Reserve => vec![
            run("one lane (reserve off)", false, true, false),
            run("live lane (default reserve)", true, true, false),
        ],
        LiveCompare::Lane => vec![
            lane("RabbitMQ, one channel (before)", false),
            lane("RabbitMQ, live channel", true),
            lane("RabbitMQ, one channel (before), again", false),
            lane("RabbitMQ, live channel, again", true),
        ],
    }
}

/// The figures of one run.
struct Figures {
    label: &'static str,
    quiet: Vec<Sample>,
    during: Vec<Sample>,
    resync_seconds: f64,
    /// Azure DevOps requests of the whole run (webhooks, crawl, retries).
    ado_requests: u64,
    /// Live write batches publish sent while no resync ran, by why they closed.
    quiet_batches: BatchesSent,
}

/// Runs the comparison and prints it.
pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if args.webhooks_per_second <= 0.0 {
        bail!("--webhooks-per-second must be above 0");
    }
    if args.ado_budget == 0 || args.ado_budget_window_secs == 0 {
        bail!("--ado-budget and --ado-budget-window-secs must be above 0");
    }
    println!(
        "live events during a resync: Azure DevOps allows {} requests per sliding {} s (then delays {}, then 429), answers in {} ms; {} webhooks/s",
        args.ado_budget,
        args.ado_budget_window_secs,
        args.ado_budget / 10,
        args.ado_latency_ms,
        args.webhooks_per_second
    );
    live_timing::enable();
    let mut runs = Vec::new();
    for (index, variant) in variants(args.live_compare).iter().enumerate() {
        runs.push(measure(args, variant, index).await?);
    }
    println!();
    println!(
        "{:<50} {:>9} {:>20} {:>21} {:>22} {:>8} {:>8}",
        "run",
        "webhooks",
        "answer p50/p99 (ms)",
        "in Port p50/p99 (ms)",
        "not 200 / not in Port",
        "resync",
        "ADO req"
    );
    for f in &runs {
        for (phase, samples) in [("no resync", &f.quiet), ("during resync", &f.during)] {
            let answered: Vec<Option<Duration>> =
                samples.iter().map(|s| Some(s.answered)).collect();
            let in_port: Vec<Option<Duration>> = samples.iter().map(|s| s.in_port).collect();
            let refused = samples.iter().filter(|s| s.status != 200).count();
            let missed = samples.iter().filter(|s| s.in_port.is_none()).count();
            println!(
                "{:<50} {:>9} {:>20} {:>21} {:>22} {:>8} {:>8}",
                format!("{}, {phase}", f.label),
                samples.len(),
                format!(
                    "{} / {}",
                    millis(percentile(&answered, 50)),
                    millis(percentile(&answered, 99))
                ),
                format!(
                    "{} / {}",
                    millis(percentile(&in_port, 50)),
                    millis(percentile(&in_port, 99))
                ),
                format!("{refused} / {missed}"),
                if phase == "no resync" {
                    String::new()
                } else {
                    format!("{:.1} s", f.resync_seconds)
                },
                if phase == "no resync" {
                    String::new()
                } else {
                    f.ado_requests.to_string()
                },
            );
        }
    }
    println!();
    println!(
        "where the time went, p50/p99 (ms) of each stretch between stages (a webhook's p99 is not the sum of its stretches' p99)"
    );
    print!("{:<50}", "run");
    for name in STRETCHES {
        print!(" {name:>14}");
    }
    println!();
    for f in &runs {
        for (phase, samples) in [("no resync", &f.quiet), ("during resync", &f.during)] {
            print!("{:<50}", format!("{}, {phase}", f.label));
            let stretches: Vec<_> = samples.iter().map(Sample::stretches).collect();
            for i in 0..STRETCHES.len() {
                // A stage noted after the webhook's sample was taken is left out.
                let column: Vec<Option<Duration>> = stretches
                    .iter()
                    .filter(|s| s[i].is_some())
                    .map(|s| s[i])
                    .collect();
                print!(
                    " {:>14}",
                    format!(
                        "{} / {}",
                        millis(percentile(&column, 50)),
                        millis(percentile(&column, 99))
                    )
                );
            }
            println!();
        }
    }
    println!();
    println!("the slowest webhooks during the resync, each stretch (ms)");
    for f in &runs {
        let mut slowest: Vec<&Sample> = f.during.iter().collect();
        slowest.sort_by_key(|s| std::cmp::Reverse(s.in_port.unwrap_or(Duration::MAX)));
        for sample in slowest.iter().take(3) {
            let parts: Vec<String> = STRETCHES
                .iter()
                .zip(sample.stretches())
                .map(|(name, d)| format!("{name} {}", millis(d.map(Some))))
                .collect();
            println!(
                "{:<50} in Port {}: {}",
                f.label,
                millis(Some(sample.in_port)),
                parts.join(", ")
            );
        }
    }
    println!();
    println!(
        "{:<50} {:>6} {:>6} {:>14} {:>7} {:>5}",
        "live batches while no resync ran", "idle", "full", "after request", "linger", "held"
    );
    for f in &runs {
        let b = f.quiet_batches;
        println!(
            "{:<50} {:>6} {:>6} {:>14} {:>7} {:>5}",
            f.label, b.idle, b.full, b.after_request, b.linger, b.held
        );
    }
    Ok(())
}

/// The `p`th percentile (nearest rank) of `samples`; a missing sample counts as the slowest.
/// `None` when there are no samples or the percentile falls on a missing one.
fn percentile(samples: &[Option<Duration>], p: usize) -> Option<Option<Duration>> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted: Vec<Duration> = samples.iter().map(|s| s.unwrap_or(Duration::MAX)).collect();
    sorted.sort();
    let rank = (p * sorted.len()).div_ceil(100).max(1) - 1;
    let value = sorted[rank.min(sorted.len() - 1)];
    Some((value != Duration::MAX).then_some(value))
}

fn millis(value: Option<Option<Duration>>) -> String {
    match value {
        None => "-".into(),
        Some(None) => format!(">{}", IN_PORT_PATIENCE.as_millis()),
        Some(Some(d)) => format!("{:.0}", d.as_secs_f64() * 1000.0),
    }
}

/// One run: the pipeline against a rate-limited organization, webhooks without and during a
/// resync.
async fn measure(args: &BenchArgs, variant: &Variant, index: usize) -> anyhow::Result<Figures> {
    let label = variant.label;
    let mapping_json = default_mapping(Some(&["project", "repository"]))?;
    let world = Arc::new(rate_limited_world(args, mapping_json.clone()).await?);
    let prefix = format!("bench-live-{}-{index}.", std::process::id());
    let broker = variant
        .rabbit
        .then_some((args.amqp_url.as_str(), prefix.as_str()));
    let mut environment = world.environment(broker);
    for (name, value) in &mut environment {
        if name == "OCEAN__EVENT_LISTENER__TYPE" {
            *value = "WEBHOOKS_ONLY".into();
        }
    }
    if !variant.send_when_idle {
        environment.push(("ADOPORT__PUBLISH__SEND_WHEN_IDLE".into(), "false".into()));
    }
    if !variant.live_lane {
        environment.push(("ADOPORT__BROKER__LIVE_CHANNEL".into(), "false".into()));
    }
    if !variant.reserve {
        for name in [
            "ADOPORT__INGEST__LIVE_RESERVED_REQUESTS",
            "ADOPORT__INGEST__LIVE_RESERVED_BUDGET_PERCENT",
        ] {
            environment.push((name.into(), "0".into()));
        }
    }
    let settings = Settings::from_vars(environment).context("bench settings are invalid")?;
    let mapping = PortAppConfig::from_json_value(mapping_json)?;
    let shutdown = CancellationToken::new();
    let bus = Bus::for_settings(&settings, shutdown.clone()).await?;
    let figures = run_variant(args, label, &settings, &bus, mapping, world, &shutdown).await;
    shutdown.cancel();
    // The run's queues and exchanges go with it, whether it succeeded or not.
    if let Err(e) = bus.delete_topology().await {
        tracing::warn!(error = %e, prefix = %prefix, "could not delete the bench's queues and exchanges; delete the queues named with this prefix on the broker");
    }
    bus.close().await;
    figures
}

/// The measurement of [`measure`] once the bus is up: warm-up, webhooks alone, then webhooks
/// during a resync.
async fn run_variant(
    args: &BenchArgs,
    label: &'static str,
    settings: &Settings,
    bus: &Bus,
    mapping: PortAppConfig,
    world: Arc<SimulatedWorld>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Figures> {
    let (mut pipeline, webhook) = start_all_roles(settings, bus, mapping, shutdown).await?;
    let mut sender = WebhookSender::new(Arc::clone(&world), webhook, args.webhooks_per_second)?;

    // One webhook first, not counted: the connections to Port and the broker are open and
    // the consumers subscribed before the timing starts, as in a pipeline that has run a while.
    if sender.one().await?.in_port.is_none() {
        bail!("{label}: the warm-up webhook did not reach Port");
    }
    let before_quiet = pipeline.publish_stats.snapshot().batches;
    let quiet = sender
        .until(tokio::time::sleep(Duration::from_secs(args.quiet_secs)))
        .await?;
    let quiet_batches = since(pipeline.publish_stats.snapshot().batches, before_quiet);

    let before = world.ado.total_requests();
    adoport_ingest::resync::request(bus, ResyncTrigger::Manual).await?;
    if !world
        .ado
        .wait_for(|ado| ado.total_requests() > before + 1, PATIENCE)
        .await
    {
        bail!("{label}: the resync did not start within {PATIENCE:?}");
    }
    let started = Instant::now();
    let mut done = None;
    let during = sender
        .until(async {
            done = pipeline.next_resync().await;
        })
        .await?;
    let resync_seconds = started.elapsed().as_secs_f64();
    let done = done.context("the pipeline stopped during the resync")?;
    let report = done.report.map_err(anyhow::Error::msg)?;
    if !report.failed_kinds().is_empty() {
        bail!("{label}: the resync failed: {report:?}");
    }
    let ado_requests = world.ado.total_requests();
    println!(
        "  {label}: resync of {} items in {resync_seconds:.1} s with {} webhooks during it",
        report.items(),
        during.len()
    );
    pipeline.stop().await?;
    Ok(Figures {
        label,
        quiet,
        during,
        resync_seconds,
        ado_requests,
        quiet_batches,
    })
}

/// The batches sent between `earlier` and `now`.
fn since(now: BatchesSent, earlier: BatchesSent) -> BatchesSent {
    BatchesSent {
        idle: now.idle - earlier.idle,
        full: now.full - earlier.full,
        after_request: now.after_request - earlier.after_request,
        linger: now.linger - earlier.linger,
        held: now.held - earlier.held,
    }
}

/// The simulators: an organization of `--projects` × `--repositories` with the request budget
/// and latency of the arguments, and Port holding the mapping.
async fn rate_limited_world(args: &BenchArgs, mapping: Value) -> anyhow::Result<SimulatedWorld> {
    let ado = AdoSimConfig {
        projects: args.projects,
        repositories_per_project: args.repositories,
        latency: Duration::from_millis(args.ado_latency_ms),
        rate_limit: Some(RateLimit {
            requests: args.ado_budget,
            per: Duration::from_secs(args.ado_budget_window_secs),
        }),
        rate_limit_delayed: args.ado_budget / 10,
        ..AdoSimConfig::default()
    };
    SimulatedWorld::start_with(ado, mapping).await
}

/// Sends repository renames at a steady rate, going round the repositories; a repository
/// comes round again only after its previous webhook's outcome is known.
struct WebhookSender {
    world: Arc<SimulatedWorld>,
    url: String,
    http: reqwest::Client,
    every: Duration,
    repositories: Vec<Value>,
    sent: usize,
}

impl WebhookSender {
    fn new(world: Arc<SimulatedWorld>, url: String, per_second: f64) -> anyhow::Result<Self> {
        let repositories = world.ado.repositories();
        let every = Duration::from_secs_f64(1.0 / per_second);
        // A webhook's outcome is known within IN_PORT_PATIENCE of its POST (the answer's
        // time counts against it); a margin for the tasks' own scheduling.
        let outcome_known = IN_PORT_PATIENCE + Duration::from_secs(10);
        let round = every.mul_f64(repositories.len() as f64);
        if round <= outcome_known {
            bail!(
                "{} repositories at {per_second} webhooks/s come round again in {round:?}, before an earlier webhook's outcome is sure ({outcome_known:?}): give more --projects or --repositories, or fewer --webhooks-per-second",
                repositories.len(),
            );
        }
        Ok(Self {
            world,
            url,
            http: reqwest::Client::builder()
                .timeout(IN_PORT_PATIENCE)
                .build()?,
            every,
            repositories,
            sent: 0,
        })
    }

    /// Sends one webhook and waits for its outcome.
    async fn one(&mut self) -> anyhow::Result<Sample> {
        let repository = self.repositories[self.sent % self.repositories.len()].clone();
        self.sent += 1;
        rename(
            Arc::clone(&self.world),
            self.http.clone(),
            self.url.clone(),
            repository,
            format!("renamed-by-webhook-{}", self.sent),
        )
        .await
    }

    /// Sends webhooks until `stop` completes, then waits for each one's outcome.
    async fn until(&mut self, stop: impl Future<Output = ()>) -> anyhow::Result<Vec<Sample>> {
        let mut outcomes = JoinSet::new();
        let mut tick = tokio::time::interval(self.every);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = tick.tick() => {
                    let repository = self.repositories[self.sent % self.repositories.len()].clone();
                    self.sent += 1;
                    outcomes.spawn(rename(
                        Arc::clone(&self.world),
                        self.http.clone(),
                        self.url.clone(),
                        repository,
                        format!("renamed-by-webhook-{}", self.sent),
                    ));
                }
            }
        }
        let mut samples = Vec::new();
        while let Some(outcome) = outcomes.join_next().await {
            samples.push(outcome.context("a webhook task failed")??);
        }
        Ok(samples)
    }
}

/// Renames `repository` in Azure DevOps, posts the webhook, and times the answer and the
/// change in Port.
async fn rename(
    world: Arc<SimulatedWorld>,
    http: reqwest::Client,
    url: String,
    repository: Value,
    title: String,
) -> anyhow::Result<Sample> {
    let id = repository["id"]
        .as_str()
        .context("a repository without id")?
        .to_string();
    world.ado.rename_repository(&id, &title);
    let posted = Instant::now();
    let response = http
        .post(&url)
        .header("Authorization", basic_auth(WEBHOOK_SECRET))
        .json(&repo_renamed_event(&repository))
        .send()
        .await
        .context("ingest did not answer a webhook")?;
    let answered = posted.elapsed();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let raw_event_id = body["eventIds"][0]
        .as_str()
        .and_then(|id| id.parse::<uuid::Uuid>().ok());
    let landed = world
        .port
        .wait_for(
            |port| {
                port.entity(REPOSITORY_BLUEPRINT, &id)
                    .is_some_and(|e| e["title"] == title.as_str())
            },
            IN_PORT_PATIENCE.saturating_sub(answered),
        )
        .await;
    let in_port = landed.then(|| posted.elapsed());
    let mut stages = [None; Stage::ALL.len()];
    if let Some(moments) = raw_event_id.and_then(|id| live_timing::take(&id)) {
        for (slot, moment) in stages.iter_mut().zip(moments) {
            *slot = moment.map(|m| m.saturating_duration_since(posted));
        }
    }
    Ok(Sample {
        status,
        answered,
        in_port,
        stages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_comparison_measures_before_and_after() {
        let runs = variants(LiveCompare::Batching);
        for rabbit in [false, true] {
            let send_when_idle: Vec<bool> = runs
                .iter()
                .filter(|v| v.rabbit == rabbit)
                .map(|v| v.send_when_idle)
                .collect();
            assert_eq!(send_when_idle, [false, true], "rabbit: {rabbit}");
        }
        assert!(
            runs.iter().all(|v| v.reserve),
            "the default reserve throughout"
        );
        let reserve: Vec<bool> = variants(LiveCompare::Reserve)
            .iter()
            .map(|v| v.reserve)
            .collect();
        assert_eq!(reserve, [false, true]);
        let lane = variants(LiveCompare::Lane);
        assert!(
            lane.iter()
                .all(|v| v.rabbit && v.send_when_idle && v.reserve)
        );
        let live_lane: Vec<bool> = lane.iter().map(|v| v.live_lane).collect();
        assert_eq!(live_lane, [false, true, false, true]);
        assert!(variants(LiveCompare::Batching).iter().all(|v| v.live_lane));
    }

    #[test]
    fn percentiles_count_missing_samples_as_the_slowest() {
        let ms = |n: u64| Some(Duration::from_millis(n));
        let samples: Vec<Option<Duration>> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&samples, 50), Some(ms(50)));
        assert_eq!(percentile(&samples, 99), Some(ms(99)));
        let mut missing = samples.clone();
        missing[0] = None;
        missing[1] = None;
        assert_eq!(percentile(&missing, 99), Some(None));
        assert_eq!(millis(percentile(&missing, 99)), ">60000");
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(millis(percentile(&[ms(7)], 99)), "7");
    }
}
