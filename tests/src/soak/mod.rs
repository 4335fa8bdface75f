//! The chaos soak: the scaled-out stack (two `adoport` processes per role) on a private
//! RabbitMQ node, against a simulated Azure DevOps that keeps changing and a simulated Port,
//! under every fault the issue lists — then the proof that it converged:
//!
//! 1. **Chaos** for the given duration ([`schedule`]): Azure DevOps changes ([`churn`]) with
//!    their service hooks delivered as Azure DevOps delivers them ([`hooks`]); repeated
//!    SIGKILLs and restarts ([`fleet`], [`faults`]); one broker restart; a Port outage (500/503,
//!    then 429 with `Retry-After`); hand edits and deletes in Port, and once emptying it; a
//!    mapping change; resync requests all along (and the scheduled resync).
//! 2. **Calm**: the faults stop, pending deliveries end, every replica runs and is ready; one
//!    more resync is requested and its reconciliation summary awaited; the queues drain.
//! 3. **Verdict**: a clean one-shot sync (`adoport all`, ONCE, no broker) of the same final
//!    Azure DevOps state into a fresh Port with the final mapping; both catalogs compared
//!    entity by entity ([`compare`]); every dead-letter queue must be empty; entities planted
//!    by another writer must still be there; no webhook may have been refused.
//!
//! Everything random comes from the seed (printed first), per concern ([`rng`]).
//! Used by `tests/tests/soak.rs` (a bounded run) and the `soak` binary (any length).

pub mod churn;
pub mod compare;
pub mod faults;
pub mod fleet;
pub mod hooks;
pub mod mapping;
pub mod rng;
pub mod schedule;
pub mod summaries;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use adoport::sim::{SimulatedWorld, WEBHOOK_SECRET};
use adoport_shared::bus::Bus;
use adoport_shared::config::Settings;
use adoport_shared::topology::{DeadLetterQueue, WorkQueue};
use adoport_sim::ado::{AdoSim, AdoSimConfig};
use adoport_sim::port::{PortSim, PortSimConfig};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::RabbitNode;
use compare::{Comparison, Key};
use faults::{HandEdits, ResyncRequests, Timeline, progress};
use fleet::{Executable, Fleet, FleetFigures, Role};
use hooks::{HookPlan, Hooks};
use schedule::Schedule;
use summaries::Summaries;

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// Length of the chaos phase (the calm and the verdict come on top).
    pub duration: Duration,
    pub seed: u64,
    /// How to start `adoport ROLE`.
    pub executable: Executable,
    /// The simulated organization's size at the start.
    pub projects: usize,
    pub repositories: usize,
    /// Where the replicas' logs go (a new temporary directory when `None`; kept on failure).
    pub directory: Option<PathBuf>,
    /// The Port outage's length instead of the schedule's (a minute in runs of ten minutes or
    /// more, proportionally less in shorter ones).
    pub port_outage: Option<Duration>,
}

/// Replicas per role.
pub const REPLICAS: usize = 2;
/// How many differences a failed comparison prints.
const SHOWN_DIFFERENCES: usize = 25;

/// Everything a run measured, and its verdict.
#[derive(Debug)]
pub struct SoakReport {
    pub seed: u64,
    pub schedule: Schedule,
    pub wall: Duration,
    pub fleet: FleetFigures,
    pub timeline: Timeline,
    pub hooks: BTreeMap<&'static str, u64>,
    pub ado_changes: BTreeMap<&'static str, u64>,
    pub resyncs_requested: u64,
    pub resyncs_refused: u64,
    pub port_button: u64,
    pub resyncs_by_status: BTreeMap<String, u64>,
    pub hand_edits: BTreeMap<&'static str, u64>,
    pub final_resync: Option<String>,
    pub comparison: Comparison,
    pub dead_letters: BTreeMap<&'static str, Vec<String>>,
    /// Anything else that makes the run fail, in words.
    pub problems: Vec<String>,
    pub directory: PathBuf,
}

impl SoakReport {
    pub fn passed(&self) -> bool {
        self.comparison.equal()
            && self.dead_letters.values().all(Vec::is_empty)
            && self.problems.is_empty()
    }

    /// The figures, and on failure what failed (the first differences, the dead letters'
    /// reasons) and how to run it again.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut line = |text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        let secs = |d: Duration| format!("{:.0} s", d.as_secs_f64());
        let list = |m: &BTreeMap<&'static str, u64>| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        line(format!(
            "adoport soak: seed {}, chaos {}, wall {} ({} replicas per role)",
            self.seed,
            secs(self.schedule.duration),
            secs(self.wall),
            REPLICAS
        ));
        let kills: u64 = self.fleet.kills.values().sum();
        line(format!(
            "  kills (SIGKILL)      {kills}: {}; exits on their own {}, process starts {}",
            self.fleet
                .kills
                .iter()
                .map(|(r, n)| format!("{} {n}", r.name()))
                .collect::<Vec<_>>()
                .join(", "),
            self.fleet.exits,
            self.fleet.starts
        ));
        line(format!(
            "  broker restarts      {}",
            self.timeline.broker_restarts
        ));
        line(format!(
            "  Port outage          {:.1} s ({} requests answered 500/503/429)",
            self.timeline.port_outage.as_secs_f64(),
            self.timeline.port_outage_answers
        ));
        line(format!(
            "  mapping change       at {}",
            self.timeline
                .mapping_changed_at
                .map_or("never".into(), secs)
        ));
        line(format!("  webhooks             {}", list(&self.hooks)));
        line(format!(
            "  Azure DevOps changes {}",
            list(&self.ado_changes)
        ));
        line(format!(
            "  resyncs              requested {} by POST /resync ({} refused), {} by Port's button, plus the schedule; reconciled: {}",
            self.resyncs_requested,
            self.resyncs_refused,
            self.port_button,
            self.resyncs_by_status
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        line(format!(
            "  hand edits in Port   {} ({}), Port emptied {}×",
            self.hand_edits.values().sum::<u64>(),
            list(&self.hand_edits),
            self.timeline.port_emptied
        ));
        line(format!(
            "  entities compared    {} ({} differences)",
            self.comparison.compared,
            self.comparison.differences.len()
        ));
        let dead: usize = self.dead_letters.values().map(Vec::len).sum();
        line(format!(
            "  dead letters         {dead} ({})",
            self.dead_letters
                .iter()
                .map(|(k, v)| format!("{k} {}", v.len()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if !self.comparison.equal() {
            line(format!(
                "differences (soak's Port vs the clean one-shot sync):\n{}",
                self.comparison.first(SHOWN_DIFFERENCES)
            ));
        }
        for (queue, letters) in &self.dead_letters {
            for letter in letters.iter().take(5) {
                line(format!("  dead letter in {queue}: {letter}"));
            }
        }
        for problem in &self.problems {
            line(format!("problem: {problem}"));
        }
        line(format!(
            "{} (seed {}; logs in {})",
            if self.passed() { "PASS" } else { "FAIL" },
            self.seed,
            self.directory.display()
        ));
        if !self.passed() {
            line(format!(
                "run again: cargo run -p adoport-tests --release --bin soak -- --duration {}s --seed {}",
                self.schedule.duration.as_secs(),
                self.seed
            ));
        }
        out
    }
}

/// The environment every replica starts with.
fn role_environment(world: &SimulatedWorld, url: &str, prefix: &str) -> Vec<(String, String)> {
    let mut environment = world.environment(Some((url, prefix)));
    for (key, value) in [
        // The integration and its mapping are in Port already: no blueprints are created, so
        // a replica started during the Port outage fails only on reading the mapping.
        ("OCEAN__INITIALIZE_PORT_RESOURCES", "false"),
        // Port's resync button, polled every 3 s; a resync at start-up (every restart).
        ("OCEAN__EVENT_LISTENER__INTERVAL", "3"),
        ("OCEAN__SCHEDULED_RESYNC_INTERVAL", "1"),
        ("ADOPORT__TRANSFORM__MAPPING_POLL_SECS", "3"),
        ("ADOPORT__BROKER__HEARTBEAT_SECS", "5"),
        ("ADOPORT_LOG_JSON", "true"),
        ("RUST_LOG", "info,lapin=warn"),
        ("NO_COLOR", "1"),
    ] {
        environment.push((key.into(), value.into()));
    }
    environment
}

/// Runs the soak. Errors are failures of the harness itself (a simulator that cannot start);
/// everything the stack did wrong is in the report.
pub async fn run(config: SoakConfig) -> anyhow::Result<SoakReport> {
    let began = Instant::now();
    let seed = config.seed;
    let mut schedule = Schedule::new(seed, config.duration);
    if let Some(outage) = config.port_outage {
        schedule.port_outage = outage;
    }
    eprintln!("soak: seed {seed}");
    eprintln!("soak: {}", schedule.describe());
    let directory = match &config.directory {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("adoport-soak-{seed}-{}", std::process::id())),
    };
    std::fs::create_dir_all(&directory)?;

    let node = RabbitNode::start().await;
    let ado = AdoSim::start(AdoSimConfig {
        projects: config.projects,
        repositories_per_project: config.repositories,
        work_items_per_project: 4,
        ..AdoSimConfig::default()
    })
    .await?;
    let port = PortSim::start(PortSimConfig {
        integration_config: Some(mapping::mapping(1)),
        ..PortSimConfig::default()
    })
    .await?;
    let world = SimulatedWorld { ado, port };
    let prefix = format!("soak-{seed}.");
    let environment = role_environment(&world, &node.url(), &prefix);
    let settings = Settings::from_vars(environment.clone())?;
    // The soak's own connection: declares the topology before the roles race to, counts the
    // queues, drains the dead letters at the end. It reconnects after the broker restart.
    let bus = Bus::for_settings(&settings, CancellationToken::new()).await?;

    let fleet = Arc::new(Fleet::new(
        config.executable.clone(),
        &directory,
        &environment,
        REPLICAS,
    ));
    fleet.start_all().await?;
    let http = reqwest::Client::new();
    let start = Instant::now();
    if !wait_until(Duration::from_secs(120), || async {
        fleet.all_ready(&http).await
    })
    .await
    {
        anyhow::bail!(
            "the replicas were not ready within 120 s (logs in {})",
            directory.display()
        );
    }
    progress(start, "every replica is ready; chaos begins");

    let hooks = Hooks::start(
        HookPlan {
            ports: fleet.ingest_ports().await,
            secret: WEBHOOK_SECRET.to_string(),
            first_backoff: Duration::from_millis(500),
            max_backoff: (schedule.duration / 10)
                .clamp(Duration::from_secs(2), Duration::from_secs(30)),
            late_share: 0.15,
            max_lateness: Duration::from_secs(5),
            duplicate_share: 0.1,
        },
        seed,
    );
    let stop = CancellationToken::new();
    let edits = Arc::new(HandEdits::default());
    let requests = Arc::new(ResyncRequests::default());
    // A std mutex: never held across an await, and the timeline clears it without waiting.
    let foreign = Arc::new(std::sync::Mutex::new(BTreeSet::<Key>::new()));
    let world = Arc::new(world);
    let churn = Arc::new(Mutex::new(churn::Churn::new(seed)));
    let chaos_start = Instant::now();

    // Azure DevOps changes, with their service hooks.
    let churning = {
        let (stop, world, churn, every) = (
            stop.clone(),
            Arc::clone(&world),
            Arc::clone(&churn),
            schedule.ado_change_every,
        );
        let hooks = &hooks;
        async move {
            let mut rng = rng::Rng::stream(seed, "churn-pace");
            while faults::pause(&stop, faults::around(&mut rng, every)).await {
                churn.lock().await.step(&world.ado, hooks);
            }
        }
    };
    let killing = faults::kill_loop(&fleet, &schedule, seed, stop.clone());
    let supervising = {
        let (stop, fleet) = (stop.clone(), Arc::clone(&fleet));
        async move {
            while faults::pause(&stop, Duration::from_millis(500)).await {
                if let Err(e) = fleet.revive_exited().await {
                    eprintln!("soak: cannot start a replica again: {e}");
                }
            }
        }
    };
    let editing = {
        let (stop, world, edits, foreign) = (
            stop.clone(),
            Arc::clone(&world),
            Arc::clone(&edits),
            Arc::clone(&foreign),
        );
        let every = schedule.hand_edit_every;
        async move {
            let mut rng = rng::Rng::stream(seed, "hand-edits");
            let mut n = 0;
            while faults::pause(&stop, faults::around(&mut rng, every)).await {
                n += 1;
                let mut foreign = foreign.lock().unwrap_or_else(|p| p.into_inner());
                faults::hand_edit(&mut rng, &world.port, n, &edits, &mut foreign);
            }
        }
    };
    let requesting = {
        let (stop, world, requests, fleet, http) = (
            stop.clone(),
            Arc::clone(&world),
            Arc::clone(&requests),
            Arc::clone(&fleet),
            http.clone(),
        );
        let every = schedule.resync_every;
        async move {
            let mut rng = rng::Rng::stream(seed, "resyncs");
            let ports = fleet.ingest_ports().await;
            while faults::pause(&stop, faults::around(&mut rng, every)).await {
                if rng.chance(0.25) {
                    world.port.request_resync();
                    requests.port_button.fetch_add(1, Ordering::Relaxed);
                } else if let Some(&port) = rng.pick(&ports) {
                    let counter = match faults::post_resync(&http, port, WEBHOOK_SECRET).await {
                        Some(_) => &requests.accepted,
                        None => &requests.refused,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    };
    let timeline = {
        let foreign = Arc::clone(&foreign);
        let world = Arc::clone(&world);
        let schedule = schedule.clone();
        async move {
            faults::timeline(
                node,
                &world.port,
                &schedule,
                chaos_start,
                mapping::mapping(2),
                || {
                    // Under the lock, so no hand edit plants an entity in between: the
                    // planted entities go with everything else.
                    let mut foreign = foreign.lock().unwrap_or_else(|p| p.into_inner());
                    foreign.clear();
                    world.port.delete_all_entities()
                },
            )
            .await
        }
    };
    let ending = async {
        tokio::time::sleep(schedule.duration).await;
        stop.cancel();
    };
    let ((node, timeline), ..) = tokio::join!(
        timeline,
        ending,
        churning,
        killing,
        supervising,
        editing,
        requesting
    );
    progress(chaos_start, "chaos ends; calming down");

    // Calm: pending deliveries end (retried until delivered or given up), every replica runs.
    let hook_limit = schedule.duration / 10 * 4 + Duration::from_secs(60);
    let delivered_in_time = hooks.figures.clone();
    let finished = hooks.finish(hook_limit).await;
    let mut problems = Vec::new();
    if !finished {
        problems.push(format!(
            "webhook deliveries still under way {} s after the chaos ended",
            hook_limit.as_secs()
        ));
    }
    fleet.start_all().await?;
    if !wait_until(Duration::from_secs(180), || async {
        let _ = fleet.revive_exited().await;
        fleet.all_ready(&http).await
    })
    .await
    {
        problems.push("not every replica was ready within 180 s of the calm".into());
    }
    progress(chaos_start, "every replica is ready; the final resync");

    // The final resync, and its reconciliation. A resync the schedule or a restart requests
    // meanwhile supersedes it (reported `failed`); then the final one is requested again.
    let publish_logs = fleet.log_paths(Role::Publish).await;
    let ingest_ports = fleet.ingest_ports().await;
    let mut summaries = Summaries::default();
    let mut final_resync = None;
    for attempt in 0..4 {
        let Some(id) = faults::post_resync(
            &http,
            ingest_ports[attempt % ingest_ports.len()],
            WEBHOOK_SECRET,
        )
        .await
        else {
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        };
        let seen = wait_until(Duration::from_secs(300), || {
            summaries.scan(&publish_logs);
            let done = summaries.status(&id).is_some();
            async move { done }
        })
        .await;
        let status = summaries.status(&id).map(str::to_string);
        progress(
            chaos_start,
            &format!(
                "final resync {id}: {}",
                status.as_deref().unwrap_or("no summary")
            ),
        );
        if seen && status.as_deref() == Some("completed") {
            final_resync = Some(id);
            break;
        }
    }
    if final_resync.is_none() {
        problems.push("the final resync was not reconciled as completed (4 tries)".into());
    }
    // Everything it produced settled: no message waits in any queue and Port is quiet.
    let queues: Vec<WorkQueue> = settings.topology().work_queues();
    let quiet = wait_until(Duration::from_secs(120), || {
        let (bus, queues, port) = (&bus, &queues, &world.port);
        async move {
            let before = entity_requests(port);
            for queue in queues {
                if bus.ready_count(*queue).await.map_or(true, |n| n > 0) {
                    return false;
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            entity_requests(port) == before
        }
    })
    .await;
    if !quiet {
        problems.push("the queues did not drain within 120 s after the final resync".into());
    }
    summaries.scan(&publish_logs);
    let soak_catalog = world.port.all_entities();
    let foreign = foreign.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for (blueprint, identifier) in &foreign {
        match world.port.entity(blueprint, identifier) {
            Some(e) if e["$datasource"] == faults::FOREIGN_DATASOURCE => {}
            Some(_) => problems.push(format!(
                "{blueprint}/{identifier}, planted by another writer, was taken over"
            )),
            None => problems.push(format!(
                "{blueprint}/{identifier}, planted by another writer, was deleted"
            )),
        }
    }

    // The verdict: a clean one-shot sync of the same Azure DevOps state with the final
    // mapping, into a fresh Port.
    progress(chaos_start, "the clean one-shot sync");
    let final_mapping = world
        .port
        .integration("azure-devops")
        .and_then(|i| i.get("config").cloned())
        .unwrap_or_else(|| mapping::mapping(2));
    let clean = PortSim::start(PortSimConfig {
        integration_config: Some(final_mapping),
        ..PortSimConfig::default()
    })
    .await?;
    if let Err(e) = one_shot(&config.executable, &world, &clean, &directory).await {
        problems.push(format!("the clean one-shot sync failed: {e:#}"));
    }
    let comparison = compare::compare(soak_catalog, clean.all_entities(), &foreign);

    let mut dead_letters = BTreeMap::new();
    for (name, queue) in [
        ("raw", DeadLetterQueue::Raw),
        ("changes", DeadLetterQueue::Changes),
        ("resync", DeadLetterQueue::ResyncRequests),
    ] {
        let letters = match bus.drain_dead_letters(queue, 1000).await {
            Ok(letters) => letters
                .into_iter()
                .map(|l| format!("{} (from {})", l.reason, l.origin_queue))
                .collect(),
            Err(e) => vec![format!("cannot read the dead letters: {e}")],
        };
        dead_letters.insert(name, letters);
    }

    let figures = &delivered_in_time;
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    if get(&figures.refused) > 0 {
        problems.push(format!(
            "{} webhook deliveries were refused (4xx); first: {}",
            get(&figures.refused),
            figures
                .first_refusal
                .lock()
                .map(|f| f.clone().unwrap_or_default())
                .unwrap_or_default()
        ));
    }
    let hooks = BTreeMap::from([
        ("events", get(&figures.events)),
        ("attempts", get(&figures.attempts)),
        ("retries", get(&figures.retries)),
        ("duplicates", get(&figures.duplicates)),
        ("late", get(&figures.late)),
        ("delivered", get(&figures.delivered)),
        ("given up", get(&figures.given_up)),
        ("refused", get(&figures.refused)),
    ]);
    let churned = churn.lock().await;
    let ado_changes = BTreeMap::from([
        ("total", get(&churned.figures.changes)),
        ("created", get(&churned.figures.created)),
        ("deleted", get(&churned.figures.deleted)),
        ("restored", get(&churned.figures.restored)),
        ("forged deletes", get(&churned.figures.forged)),
    ]);
    let hand_edits = BTreeMap::from([
        ("titles", get(&edits.titles)),
        ("properties", get(&edits.properties)),
        ("deletes", get(&edits.deletes)),
        ("taken over", get(&edits.taken_over)),
        ("stale planted", get(&edits.stale_planted)),
        ("foreign planted", get(&edits.foreign_planted)),
    ]);

    fleet.stop_all().await;
    let _ = bus.delete_topology().await;
    bus.close().await;
    drop(node);
    clean.shutdown().await;
    if let Ok(world) = Arc::try_unwrap(world) {
        world.shutdown().await;
    }
    let report = SoakReport {
        seed,
        schedule,
        wall: began.elapsed(),
        fleet: fleet.figures().await,
        timeline,
        hooks,
        ado_changes,
        resyncs_requested: get(&requests.accepted),
        resyncs_refused: get(&requests.refused),
        port_button: get(&requests.port_button),
        resyncs_by_status: summaries.per_status(),
        hand_edits,
        final_resync,
        comparison,
        dead_letters,
        problems,
        directory: directory.clone(),
    };
    if report.passed() && config.directory.is_none() {
        let _ = std::fs::remove_dir_all(&directory);
    }
    Ok(report)
}

/// Port requests about entities so far (reads and writes; not the roles' periodic reads of
/// the mapping and of the resync request).
fn entity_requests(port: &PortSim) -> u64 {
    port.requests()
        .iter()
        .filter(|(route, _)| route.contains("entities"))
        .map(|(_, count)| count)
        .sum()
}

/// Polls `condition` every 250 ms until it holds or `limit` passes.
async fn wait_until<F, Fut>(limit: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `adoport all` in ONCE mode without a broker, against the soak's Azure DevOps and `port`.
async fn one_shot(
    executable: &Executable,
    world: &SimulatedWorld,
    port: &PortSim,
    directory: &std::path::Path,
) -> anyhow::Result<()> {
    let mut environment: Vec<(String, String)> = world
        .environment(None)
        .into_iter()
        .filter(|(k, _)| k != "OCEAN__PORT__BASE_URL" && k != "OCEAN__EVENT_LISTENER__TYPE")
        .collect();
    for (key, value) in [
        ("OCEAN__PORT__BASE_URL", port.base_url()),
        ("OCEAN__EVENT_LISTENER__TYPE", "ONCE".into()),
        ("OCEAN__INITIALIZE_PORT_RESOURCES", "false".into()),
        ("ADOPORT_LOG_JSON", "true".into()),
        ("RUST_LOG", "info".into()),
    ] {
        environment.push((key.into(), value));
    }
    let log = std::fs::File::create(directory.join("one-shot.log"))?;
    let errors = log.try_clone()?;
    let mut child = tokio::process::Command::new(&executable.program)
        .args(&executable.arguments)
        .arg("all")
        .env_clear()
        .envs(environment)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(errors)
        .kill_on_drop(true)
        .spawn()?;
    let status = tokio::time::timeout(Duration::from_secs(600), child.wait())
        .await
        .map_err(|_| anyhow::anyhow!("`adoport all` (ONCE) did not finish within 10 minutes"))??;
    if !status.success() {
        anyhow::bail!("`adoport all` (ONCE) exited with {status} (see one-shot.log)");
    }
    Ok(())
}
