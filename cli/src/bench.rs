//! `adoport bench`: a resync of a simulated organization through the pipeline, measured.
//!
//! Prints raw items/s, entities/s, Azure DevOps and Port requests (with the fewest each could
//! take), Port entity-write requests per entity (the fewest is 1/20: full bulk requests) and
//! peak memory. It prints the Port reads (searches of entities' current state, ownership
//! listings) and writes (entity write requests) of each resync: the first sync, and a second
//! resync of the unchanged organization — by a fresh `adoport all` in ONCE mode (a process that
//! remembers nothing) and by the RabbitMQ run's long-running processes — which read Port in
//! bulk and write nothing. A third run puts a rate limit on the simulated Port (entities/s
//! while Port answers 429s). A fourth run makes every Azure DevOps answer take
//! `--ado-latency-ms` (as a real organization's do) and reports the resync time and how many
//! requests the crawl kept in flight, once with the kinds read one by one
//! (`ADOPORT__INGEST__CONCURRENT_KINDS=1`) and once at the same time (the default). The in-process run measures the pipeline in one process; the
//! RabbitMQ run starts `adoport ingest`, `transform` and `publish` as separate processes (as a
//! deployment runs them) and reads each one's peak resident memory from /proc.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use crate::bench_processes::{AnonymousPeaks, Peaks, peak_rss_kib, run_once_with, spawn_role_of};
use crate::cli::{BenchArgs, BenchMode};
use crate::sim::{PATIENCE, SimulatedWorld, default_mapping};
use adoport_shared::bus::{Bus, Destination, Outgoing};
use adoport_shared::messages::{ResyncRequest, ResyncTrigger, encode};
use adoport_sim::ado::{AdoSim, AdoSimConfig};
use adoport_sim::port::{PortSim, PortSimConfig, RateLimit};

/// The rate limit of the rate-limited run: Port's budget, scaled down so the benchmark hits it.
const RATE_LIMIT: RateLimit = RateLimit {
    requests: 40,
    per: Duration::from_secs(1),
};

/// The figures of one run.
pub(crate) struct Figures {
    label: &'static str,
    seconds: f64,
    items: u64,
    entities: u64,
    ado_requests: u64,
    ado_minimum: u64,
    port_requests: u64,
    /// Requests that wrote entities (bulk and single upserts, deletes), retries included.
    entity_writes: u64,
    /// Each process's peaks (resident high-water mark and sampled anonymous memory).
    pub(crate) memory: Vec<(&'static str, Peaks)>,
    /// The Port reads and writes of each resync of the run.
    resyncs: Vec<ResyncTraffic>,
}

/// Requests to Port that wrote entities, by the simulator's per-route counts.
fn entity_writes(port: &PortSim) -> u64 {
    EntityTraffic::of(port).writes
}

/// Port's entity requests so far, by the simulator's per-route counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct EntityTraffic {
    /// Searches of entities (publish's reads of the current state of a resync's entities).
    searches: u64,
    /// Pages of the entities the integration owns (the reconciliation's listing).
    listings: u64,
    /// Requests that wrote entities (bulk and single upserts, deletes), retries included.
    writes: u64,
}

impl EntityTraffic {
    fn of(port: &PortSim) -> Self {
        let mut traffic = Self::default();
        for (route, count) in port.requests() {
            let slot = if route.ends_with("/entities/search") {
                &mut traffic.searches
            } else if route == "POST /v1/blueprints/entities/datasource-entities" {
                &mut traffic.listings
            } else if route.starts_with("POST /v1/blueprints/{bp}/entities")
                || route.starts_with("DELETE /v1/blueprints/{bp}/entities/")
                || route.starts_with("POST /v1/blueprints/{bp}/bulk/entities/delete")
            {
                &mut traffic.writes
            } else {
                continue;
            };
            *slot += count;
        }
        traffic
    }

    /// The traffic once Port has seen no entity request for [`QUIET`]: a resync is reported
    /// completed before publish has settled all it produced (the long-running processes say
    /// nothing more to the bench).
    async fn once_quiet(port: &PortSim) -> anyhow::Result<Self> {
        let started = Instant::now();
        let mut last = Self::of(port);
        loop {
            tokio::time::sleep(QUIET).await;
            let now = Self::of(port);
            if now == last {
                return Ok(now);
            }
            if started.elapsed() > PATIENCE {
                bail!("Port's entity traffic did not settle within {PATIENCE:?}");
            }
            last = now;
        }
    }

    /// What happened between `earlier` and this.
    fn since(self, earlier: EntityTraffic) -> EntityTraffic {
        EntityTraffic {
            searches: self.searches - earlier.searches,
            listings: self.listings - earlier.listings,
            writes: self.writes - earlier.writes,
        }
    }
}

/// How long Port must see no entity request for a resync's traffic to count as settled: four
/// times the longest a check group of publish lingers by default.
const QUIET: Duration = adoport_publish::batcher::MIN_CHECK_LINGER.saturating_mul(4);

/// One resync's Port reads and writes, for the per-resync table.
struct ResyncTraffic {
    label: String,
    entities: u64,
    traffic: EntityTraffic,
}

fn print_resync_traffic(rows: &[ResyncTraffic]) {
    if rows.is_empty() {
        return;
    }
    println!();
    println!(
        "{:<58} {:>9} {:>12} {:>9} {:>8} {:>16}",
        "Port requests per resync", "entities", "reads", "(search", "+ list)", "writes"
    );
    for row in rows {
        let reads = row.traffic.searches + row.traffic.listings;
        println!(
            "{:<58} {:>9} {:>12} {:>9} {:>8} {:>16}",
            row.label,
            row.entities,
            format!(
                "{reads} ({:.1}/100)",
                reads as f64 * 100.0 / row.entities.max(1) as f64
            ),
            row.traffic.searches,
            row.traffic.listings,
            row.traffic.writes,
        );
    }
}

/// Fewest Azure DevOps requests for a crawl of the simulated organization with the bench's
/// mapping (see `adoport_sim::ado::RequestReport`): project pages, one read per project (for
/// `defaultTeam`), one repository list per project, the included files of each repository with
/// a default branch, and one read of the GitOps spec (`port.yml`) per enabled repository.
fn min_ado_requests(ado: &AdoSim) -> anyhow::Result<u64> {
    Ok(ado.request_report(&mapping_json()?).minimum())
}

/// Fewest Port requests: one token, one read of the current state of 100 entities per
/// blueprint (publish decides what a resync writes from Port), then bulk upserts of 20 per
/// blueprint.
fn min_port_requests(projects: usize, repositories: usize) -> u64 {
    let read = adoport_publish::client::MAX_READ_IDENTIFIERS;
    let write = adoport_publish::batcher::MAX_BATCH_ENTITIES;
    let per_blueprint = |n: usize| n.div_ceil(read) + n.div_ceil(write);
    (1 + per_blueprint(projects) + per_blueprint(projects * repositories)) as u64
}

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.mode == BenchMode::Scaling {
        crate::bench_scaling::run(&args).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let expected = (args.projects + args.projects * args.repositories) as u64;
    println!(
        "adoport bench: {} projects × {} repositories = {expected} entities",
        args.projects, args.repositories
    );
    if args.mode == BenchMode::Organizations {
        crate::bench_organizations::run(&args).await?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.mode == BenchMode::LiveEvents {
        crate::bench_live::run(&args).await?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.mode == BenchMode::Incremental {
        crate::bench_incremental::run(&args).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut results = Vec::new();
    if matches!(args.mode, BenchMode::Memory | BenchMode::Both) {
        crate::bench_requests::run(&args).await?;
        results.push(in_process(&args, expected, Conditions::Unhindered).await?);
        results.push(in_process(&args, expected, Conditions::PortRateLimited(RATE_LIMIT)).await?);
        if args.ado_latency_ms > 0 {
            let latency = Duration::from_millis(args.ado_latency_ms);
            // Before and after crawling kinds at the same time, on the same build.
            for kinds_at_once in [Some(1), None] {
                let conditions = Conditions::AdoLatency(latency, kinds_at_once);
                let figures = in_process(&args, expected, conditions).await?;
                // With every answer taking `latency`, one request at a time would need
                // requests × latency; the crawl overlaps requests within its budget.
                let serial = figures.ado_requests as f64 * latency.as_secs_f64();
                println!(
                    "Azure DevOps answering in {} ms, {}: resync {:.2} s for {} requests (min {}); one at a time they would take {:.1} s, so {:.1} requests were in flight on average",
                    args.ado_latency_ms,
                    match kinds_at_once {
                        Some(1) => "kinds one by one".to_string(),
                        Some(n) => format!("{n} kinds at once"),
                        None => "kinds at once (default)".to_string(),
                    },
                    figures.seconds,
                    figures.ado_requests,
                    figures.ado_minimum,
                    serial,
                    serial / figures.seconds
                );
                results.push(figures);
            }
        }
    }
    if matches!(args.mode, BenchMode::Rabbit | BenchMode::Both) {
        results.push(separate_processes(&args, expected).await?);
    }
    if args.organizations > 1 {
        crate::bench_organizations::run(&args).await?;
    }
    println!();
    println!(
        "{:<36} {:>8} {:>10} {:>12} {:>16} {:>16} {:>22}  peak memory",
        "run",
        "seconds",
        "items/s",
        "entities/s",
        "ADO req (min)",
        "Port req (min)",
        "Port req/entity (min)"
    );
    for f in &results {
        let memory = f
            .memory
            .iter()
            .map(|(role, peaks)| match peaks.resident_kib {
                Some(kib) => format!("{role} {:.1} MiB", kib as f64 / 1024.0),
                None => format!("{role} n/a"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "{:<36} {:>8.2} {:>10.0} {:>12.0} {:>16} {:>16} {:>22}  {memory}",
            f.label,
            f.seconds,
            f.items as f64 / f.seconds,
            f.entities as f64 / f.seconds,
            format!("{} ({})", f.ado_requests, f.ado_minimum),
            format!(
                "{} ({})",
                f.port_requests,
                min_port_requests(args.projects, args.repositories)
            ),
            format!(
                "{:.3} ({:.3})",
                f.entity_writes as f64 / f.entities.max(1) as f64,
                1.0 / adoport_publish::batcher::MAX_BATCH_ENTITIES as f64
            ),
        );
    }
    let resyncs: Vec<ResyncTraffic> = results.into_iter().flat_map(|f| f.resyncs).collect();
    print_resync_traffic(&resyncs);
    Ok(ExitCode::SUCCESS)
}

fn mapping_json() -> anyhow::Result<serde_json::Value> {
    default_mapping(Some(&["project", "repository"]))
}

/// What a single-process run puts in the way of the pipeline.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Conditions {
    /// Simulators answering as fast as they can.
    Unhindered,
    /// Port answers 429 past this budget.
    PortRateLimited(RateLimit),
    /// Every Azure DevOps answer takes this long (network and server time of a real
    /// organization), with `ADOPORT__INGEST__CONCURRENT_KINDS` set to the second value (`None`:
    /// its default).
    AdoLatency(Duration, Option<u64>),
}

/// `adoport all` in ONCE mode, no broker: the CI-job install. Timed from start to exit.
pub(crate) async fn in_process(
    args: &BenchArgs,
    expected: u64,
    conditions: Conditions,
) -> anyhow::Result<Figures> {
    let world = match conditions {
        Conditions::Unhindered => {
            SimulatedWorld::start(args.projects, args.repositories, mapping_json()?).await?
        }
        Conditions::PortRateLimited(limit) => {
            custom_world(args, Some(limit), Duration::ZERO).await?
        }
        Conditions::AdoLatency(latency, _) => custom_world(args, None, latency).await?,
    };
    let mut environment = world.environment(None);
    environment.push(("OCEAN__EVENT_LISTENER__TYPE".into(), "ONCE".into()));
    if let Conditions::AdoLatency(_, kinds) = conditions {
        // The crawl's settings of this shell apply to the latency runs (to compare request
        // budgets); the one-by-one run still reads one kind at a time.
        environment.extend(std::env::vars().filter(|(k, _)| k.starts_with("ADOPORT__INGEST__")));
        if let Some(kinds) = kinds {
            environment.push((
                "ADOPORT__INGEST__CONCURRENT_KINDS".into(),
                kinds.to_string(),
            ));
        }
    }
    let executable = crate::bench_processes::roles_executable(args)?;
    let (seconds, mut peak) = run_once_with(&executable, &environment).await?;
    let entities = world.port.entity_count() as u64;
    if entities != expected {
        bail!("`adoport all`: Port holds {entities} entities, expected {expected}");
    }
    let label = match conditions {
        Conditions::Unhindered => "adoport all (ONCE, no broker)",
        Conditions::PortRateLimited(_) => "ONCE, Port limited to 40 req/s",
        Conditions::AdoLatency(_, Some(1)) => "ONCE, ADO latency, kinds one by one",
        Conditions::AdoLatency(..) => "ONCE, ADO answers in --ado-latency-ms",
    };
    let first = EntityTraffic::of(&world.port);
    let (ado_requests, port_requests) = (world.ado.total_requests(), world.port.total_requests());
    let mut resyncs = vec![ResyncTraffic {
        label: format!("{label}: first sync"),
        entities,
        traffic: first,
    }];
    if matches!(conditions, Conditions::Unhindered) {
        // The same again in a fresh process, which remembers nothing of the first: what it
        // skips, it skips because Port holds it.
        let (_, again) = run_once_with(&executable, &environment).await?;
        peak = peak.max(again);
        resyncs.push(ResyncTraffic {
            label: format!("{label}: again, fresh process, unchanged"),
            entities,
            traffic: EntityTraffic::of(&world.port).since(first),
        });
    }
    let figures = Figures {
        label,
        seconds,
        items: expected,
        entities,
        ado_requests,
        ado_minimum: min_ado_requests(&world.ado)?,
        port_requests,
        entity_writes: first.writes,
        memory: vec![("all", peak)],
        resyncs,
    };
    world.shutdown().await;
    Ok(figures)
}

pub(crate) async fn separate_processes(args: &BenchArgs, expected: u64) -> anyhow::Result<Figures> {
    let world = SimulatedWorld::start(args.projects, args.repositories, mapping_json()?).await?;
    let prefix = format!("bench-{}.", std::process::id());
    let environment = world.environment(Some((&args.amqp_url, &prefix)));
    // Declare the topology first so no role races another's declaration.
    let settings = world.settings(Some((&args.amqp_url, &prefix)))?;
    let shutdown = CancellationToken::new();
    let url = settings.pipeline.broker.url.clone().context("broker URL")?;
    let timeouts = settings.pipeline.broker.timeouts();
    let bus = Bus::rabbit(&url, settings.topology(), timeouts, shutdown.clone()).await?;

    let started = Instant::now();
    let executable = crate::bench_processes::roles_executable(args)?;
    let mut children = Vec::new();
    for role in ["publish", "transform", "ingest"] {
        children.push((role, spawn_role_of(&executable, role, &environment)?));
    }
    let anonymous = AnonymousPeaks::start(children.iter().map(|(_, child)| child.id()).collect());
    let landed = world
        .port
        .wait_for(move |port| port.entity_count() as u64 >= expected, PATIENCE)
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let first_writes = entity_writes(&world.port);
    let first_requests = world.port.total_requests();
    let first_ado_requests = world.ado.total_requests();
    // A second resync of the unchanged organization: publish skips what Port already holds.
    let resyncs = if landed {
        second_resync(&world, &bus).await
    } else {
        Ok(Vec::new())
    };
    let mut memory = Vec::new();
    let anonymous = anonymous.finish().await;
    for ((role, child), anonymous_kib) in children.iter().zip(anonymous) {
        let peaks = Peaks {
            resident_kib: child.id().and_then(peak_rss_kib),
            anonymous_kib,
        };
        memory.push((*role, peaks));
    }
    for (_, child) in &mut children {
        let _ = child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    }
    bus.delete_topology().await?;
    bus.close().await;
    if !landed {
        bail!(
            "separate processes: Port holds {} entities after {PATIENCE:?}, expected {expected}",
            world.port.entity_count()
        );
    }
    let resyncs = resyncs?;
    // Counted once Port is quiet: the last entities to land may be stubs a relation created
    // before their own write.
    let first_writes = resyncs.first().map_or(first_writes, |r| r.traffic.writes);
    let figures = Figures {
        label: "3 processes on RabbitMQ",
        seconds,
        items: expected,
        entities: world.port.entity_count() as u64,
        ado_requests: first_ado_requests,
        ado_minimum: min_ado_requests(&world.ado)?,
        port_requests: first_requests,
        entity_writes: first_writes,
        memory,
        resyncs,
    };
    world.shutdown().await;
    Ok(figures)
}

/// The simulated world with a rate-limited Port and/or an Azure DevOps that takes `ado_latency`
/// to answer each request.
async fn custom_world(
    args: &BenchArgs,
    rate_limit: Option<RateLimit>,
    ado_latency: Duration,
) -> anyhow::Result<SimulatedWorld> {
    let ado = AdoSim::start(AdoSimConfig {
        projects: args.projects,
        repositories_per_project: args.repositories,
        latency: ado_latency,
        ..AdoSimConfig::default()
    })
    .await
    .context("cannot start the Azure DevOps simulator")?;
    let port = PortSim::start(PortSimConfig {
        integration_config: Some(mapping_json()?),
        rate_limit,
        ..PortSimConfig::default()
    })
    .await
    .context("cannot start the Port simulator")?;
    Ok(SimulatedWorld { ado, port })
}

/// Waits for the first resync to be reported completed, asks for another one on the bus, waits
/// until it is reported completed too, and returns the Port reads and writes of both.
async fn second_resync(world: &SimulatedWorld, bus: &Bus) -> anyhow::Result<Vec<ResyncTraffic>> {
    let completed = |port: &PortSim| {
        port.resync_states()
            .iter()
            .filter(|s| s["status"] == "completed")
            .count()
    };
    if !world.port.wait_for(|p| completed(p) >= 1, PATIENCE).await {
        bail!("the first resync was not reported completed to Port within {PATIENCE:?}");
    }
    let first = EntityTraffic::once_quiet(&world.port).await?;
    let request = ResyncRequest::new(ResyncTrigger::Manual);
    bus.publish(Outgoing::new(Destination::ResyncRequest, encode(&request)))
        .await
        .context("cannot ask for the second resync")?;
    if !world.port.wait_for(|p| completed(p) >= 2, PATIENCE).await {
        bail!("the second resync was not reported completed to Port within {PATIENCE:?}");
    }
    let entities = world.port.entity_count() as u64;
    Ok(vec![
        ResyncTraffic {
            label: "3 processes on RabbitMQ: first sync".into(),
            entities,
            traffic: first,
        },
        ResyncTraffic {
            label: "3 processes on RabbitMQ: second resync, unchanged".into(),
            entities,
            traffic: EntityTraffic::once_quiet(&world.port).await?.since(first),
        },
    ])
}
