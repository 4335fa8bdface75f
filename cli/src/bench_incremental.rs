//! `adoport bench --mode incremental`: a full `adoport all` ONCE run of a simulated
//! organization against an incremental one (`OCEAN__INTEGRATION__INCREMENTAL_SYNC_ENABLED`, as
//! Ocean's incremental CronJob runs it) after a few work items changed. Prints each run's
//! time, Azure DevOps and Port requests and the entities written. Both run against Azure
//! DevOps answering in `--ado-latency-ms`, so request counts show in the times as they would
//! against a real organization.

use std::time::Duration;

use anyhow::bail;

use crate::bench_processes::run_once;
use crate::cli::BenchArgs;
use crate::sim::{SimulatedWorld, default_mapping};
use adoport_sim::ado::AdoSimConfig;

/// Work items changed between the two runs.
const CHANGED: usize = 10;

/// The kinds of the run: the default mapping's, without the ones a sim organization of this
/// size would make the full run slow for no difference (boards, policies).
const KINDS: [&str; 4] = ["project", "repository", "work-item", "release"];

/// Requests to Port that wrote entities (bulk and single upserts, deletes).
fn entity_write_requests(port: &adoport_sim::port::PortSim) -> u64 {
    port.requests()
        .iter()
        .filter(|(route, _)| {
            route.starts_with("POST /v1/blueprints/{bp}/entities")
                && !route.ends_with("/entities/search")
                || route.starts_with("DELETE /v1/blueprints/{bp}/entities/")
                || route.starts_with("POST /v1/blueprints/{bp}/bulk/entities/delete")
        })
        .map(|(_, count)| count)
        .sum()
}

/// One run's figures.
struct Run {
    label: &'static str,
    seconds: f64,
    ado_requests: u64,
    port_requests: u64,
    entity_writes: u64,
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let ado = AdoSimConfig {
        projects: args.projects,
        repositories_per_project: args.repositories,
        work_items_per_project: args.work_items,
        latency: Duration::from_millis(args.ado_latency_ms),
        ..AdoSimConfig::default()
    };
    println!(
        "incremental vs full: {} projects × {} repositories, {} work items each, Azure DevOps answering in {} ms, {CHANGED} work items changed",
        args.projects, args.repositories, args.work_items, args.ado_latency_ms
    );
    let world = SimulatedWorld::start_with(ado, default_mapping(Some(&KINDS))?).await?;
    let mut environment = world.environment(None);
    environment.push(("OCEAN__EVENT_LISTENER__TYPE".into(), "ONCE".into()));

    let full = measured(&world, "full resync (ONCE)", &environment).await?;
    let work_items = world.ado.work_items();
    if work_items.len() < CHANGED {
        bail!("the organization has fewer than {CHANGED} work items; raise --work-items");
    }
    for item in work_items
        .iter()
        .step_by(work_items.len() / CHANGED)
        .take(CHANGED)
    {
        if let Some(id) = item["id"].as_u64() {
            world
                .ado
                .set_work_item_title(id, "Changed for the benchmark");
        }
    }
    environment.push((
        "OCEAN__INTEGRATION__INCREMENTAL_SYNC_ENABLED".into(),
        "true".into(),
    ));
    let incremental = measured(&world, "incremental sync (ONCE)", &environment).await?;
    println!();
    println!(
        "{:<28} {:>8} {:>12} {:>12} {:>20}",
        "run", "seconds", "ADO req", "Port req", "entity write req"
    );
    for run in [&full, &incremental] {
        println!(
            "{:<28} {:>8.2} {:>12} {:>12} {:>20}",
            run.label, run.seconds, run.ado_requests, run.port_requests, run.entity_writes
        );
    }
    println!(
        "incremental: {:.1}× faster, {:.1}% of the Azure DevOps requests",
        full.seconds / incremental.seconds.max(f64::EPSILON),
        100.0 * incremental.ado_requests as f64 / full.ado_requests.max(1) as f64
    );
    world.shutdown().await;
    Ok(())
}

/// Runs `adoport all` once with `environment`; the requests it made are the counters' growth.
async fn measured(
    world: &SimulatedWorld,
    label: &'static str,
    environment: &[(String, String)],
) -> anyhow::Result<Run> {
    let (ado, port, writes) = (
        world.ado.total_requests(),
        world.port.total_requests(),
        entity_write_requests(&world.port),
    );
    let (seconds, _) = run_once(environment).await?;
    Ok(Run {
        label,
        seconds,
        ado_requests: world.ado.total_requests() - ado,
        port_requests: world.port.total_requests() - port,
        entity_writes: entity_write_requests(&world.port) - writes,
    })
}
