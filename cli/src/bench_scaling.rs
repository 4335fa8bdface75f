//! `adoport bench --mode scaling`: the same resync with 1, 2 and 4 transform and publish
//! processes on RabbitMQ, against a Port whose every answer takes `--port-latency-ms`.
//!
//! The organization is one the pipeline, not the crawl, has to work for: `--projects` projects
//! with `--work-items` work items each (the default mapping's `project` and `work-item` kinds),
//! which Azure DevOps hands out 200 per request while Port takes them 20 per request. One
//! ingest process crawls; `N` transform and `N` publish processes share the work. Each run is
//! timed from the processes' start to the resync's completion as reported to Port (every entity
//! written and reconciled), on a fresh simulated world and a fresh broker prefix.
//!
//! A last run repeats the largest replica count against a Port that also enforces its published
//! rate limit (35,000 requests per 5 minutes, as 117 per second): the ceiling that no number of
//! replicas lifts.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use crate::bench_processes::{peak_rss_kib, spawn_role};
use crate::cli::BenchArgs;
use crate::sim::{PATIENCE, SimulatedWorld, default_mapping};
use adoport_shared::bus::Bus;
use adoport_sim::ado::{AdoSim, AdoSimConfig};
use adoport_sim::port::{PortSim, PortSimConfig, RateLimit};

/// Port's published budget, 35,000 requests per 5 minutes, as a one-second window.
const PORT_PUBLISHED_LIMIT: RateLimit = RateLimit {
    requests: 117,
    per: Duration::from_secs(1),
};

const PROJECT_BLUEPRINT: &str = "azureDevopsProject";
const WORK_ITEM_BLUEPRINT: &str = "azureDevopsWorkItem";

/// The figures of one scaling run.
struct Run {
    replicas: usize,
    limited: bool,
    seconds: f64,
    /// Projects and work items written.
    entities: u64,
    /// Entities Port held (every blueprint, not only projects and work items) when it was told
    /// the resync completed: all the resync produced, since `completed` comes after publish
    /// settled every change.
    held_when_completed: usize,
    port_requests: u64,
    /// Peak resident memory (KiB) of the largest transform and publish process.
    transform_peak: Option<u64>,
    publish_peak: Option<u64>,
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let latency = Duration::from_millis(args.port_latency_ms);
    println!(
        "scaling: {} projects × {} work items, Port answering in {} ms, {} Port requests in flight per publish process",
        args.projects, args.work_items, args.port_latency_ms, PUBLISH_CONCURRENCY
    );
    let mut runs = Vec::new();
    for &replicas in &args.replicas {
        runs.push(resync_with(args, replicas, latency, None).await?);
    }
    if let Some(&most) = args.replicas.iter().max() {
        runs.push(resync_with(args, most, latency, Some(PORT_PUBLISHED_LIMIT)).await?);
    }
    print_runs(&runs);
    Ok(())
}

/// `ADOPORT__PUBLISH__MAX_CONCURRENT_REQUESTS` of every publish process (the default).
const PUBLISH_CONCURRENCY: u64 = 8;

fn print_runs(runs: &[Run]) {
    let Some(base) = runs.first().map(|r| r.entities as f64 / r.seconds) else {
        return;
    };
    println!();
    println!(
        "{:<48} {:>8} {:>9} {:>11} {:>11} {:>9} {:>10}  peak memory (largest)",
        "transform + publish processes",
        "seconds",
        "entities",
        "at complete",
        "entities/s",
        "speed-up",
        "Port req"
    );
    for run in runs {
        let rate = run.entities as f64 / run.seconds;
        let label = if run.limited {
            format!(
                "{} + {}, Port limited to {} req/s",
                run.replicas, run.replicas, PORT_PUBLISHED_LIMIT.requests
            )
        } else {
            format!("{} + {}", run.replicas, run.replicas)
        };
        let mib = |kib: Option<u64>| {
            kib.map_or("n/a".to_string(), |k| {
                format!("{:.1} MiB", k as f64 / 1024.0)
            })
        };
        println!(
            "{label:<48} {:>8.2} {:>9} {:>11} {:>11.0} {:>8.2}× {:>10}  transform {}, publish {}",
            run.seconds,
            run.entities,
            run.held_when_completed,
            rate,
            rate / base,
            run.port_requests,
            mib(run.transform_peak),
            mib(run.publish_peak),
        );
    }
    let ceiling =
        PORT_PUBLISHED_LIMIT.requests as f64 * adoport_publish::batcher::MAX_BATCH_ENTITIES as f64;
    println!(
        "Port's published limit caps any deployment at {} requests/s, {ceiling:.0} entities/s in full bulk requests of {}.",
        PORT_PUBLISHED_LIMIT.requests,
        adoport_publish::batcher::MAX_BATCH_ENTITIES
    );
}

/// One resync of a fresh world by one ingest and `replicas` transform and publish processes.
async fn resync_with(
    args: &BenchArgs,
    replicas: usize,
    latency: Duration,
    rate_limit: Option<RateLimit>,
) -> anyhow::Result<Run> {
    let mapping = default_mapping(Some(&["project", "work-item"]))?;
    let ado = AdoSim::start(AdoSimConfig {
        projects: args.projects,
        repositories_per_project: 0,
        work_items_per_project: args.work_items,
        ..AdoSimConfig::default()
    })
    .await
    .context("cannot start the Azure DevOps simulator")?;
    let port = PortSim::start(PortSimConfig {
        integration_config: Some(mapping),
        latency,
        rate_limit,
        ..PortSimConfig::default()
    })
    .await
    .context("cannot start the Port simulator")?;
    let world = SimulatedWorld { ado, port };
    let prefix = format!("bench-scaling-{}-{replicas}.", std::process::id());
    let mut environment = world.environment(Some((&args.amqp_url, &prefix)));
    environment.push((
        "ADOPORT__PUBLISH__MAX_CONCURRENT_REQUESTS".into(),
        PUBLISH_CONCURRENCY.to_string(),
    ));
    // Declare the topology first so no role races another's declaration.
    let settings = world.settings(Some((&args.amqp_url, &prefix)))?;
    let shutdown = CancellationToken::new();
    let url = settings.pipeline.broker.url.clone().context("broker URL")?;
    let bus = Bus::rabbit(
        &url,
        settings.topology(),
        settings.pipeline.broker.timeouts(),
        shutdown.clone(),
    )
    .await?;

    let started = Instant::now();
    let mut children = Vec::new();
    for _ in 0..replicas {
        children.push(("publish", spawn_role("publish", &environment)?));
        children.push(("transform", spawn_role("transform", &environment)?));
    }
    children.push(("ingest", spawn_role("ingest", &environment)?));
    // Done when Port holds every project and work item and the resync is reported completed
    // (reconciliation reports it once publish settled every change, so both come together).
    let expected = (args.projects, world.ado.work_items().len());
    let completed = world
        .port
        .wait_for(
            |port| {
                port.blueprint_entity_count(PROJECT_BLUEPRINT) >= expected.0
                    && port.blueprint_entity_count(WORK_ITEM_BLUEPRINT) >= expected.1
                    && port
                        .resync_states()
                        .iter()
                        .any(|s| s["status"] == "completed")
            },
            PATIENCE,
        )
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let peak = |role: &str| {
        children
            .iter()
            .filter(|(r, _)| *r == role)
            .filter_map(|(_, child)| child.id().and_then(peak_rss_kib))
            .max()
    };
    let (transform_peak, publish_peak) = (peak("transform"), peak("publish"));
    for (_, child) in &mut children {
        let _ = child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    }
    bus.delete_topology().await?;
    bus.close().await;
    if !completed {
        bail!(
            "{replicas} + {replicas} processes: within {PATIENCE:?} Port got {} of {} projects and {} of {} work items, or the resync was not reported completed",
            world.port.blueprint_entity_count(PROJECT_BLUEPRINT),
            expected.0,
            world.port.blueprint_entity_count(WORK_ITEM_BLUEPRINT),
            expected.1
        );
    }
    let run = Run {
        replicas,
        limited: rate_limit.is_some(),
        seconds,
        entities: (expected.0 + expected.1) as u64,
        held_when_completed: world
            .port
            .resync_states_with_entity_counts()
            .into_iter()
            .find(|(state, _)| state["status"] == "completed")
            .map_or(0, |(_, held)| held),
        port_requests: world.port.total_requests(),
        transform_peak,
        publish_peak,
    };
    world.shutdown().await;
    Ok(run)
}
