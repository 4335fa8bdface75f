//! `adoport bench --organizations N`: the resync crawl of one simulated organization against
//! that of N organizations at once (Multiple Accounts), in the same run.
//!
//! Each simulated organization has its own request budget (`--ado-requests-per-second`), as
//! Azure DevOps limits each organization separately, and the crawler gives each its own client
//! and budget; so N organizations should crawl in about the time of one, where a single shared
//! budget would take N times as long. Crawl only: raw events go to the in-process bus and are
//! discarded as they arrive.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use crate::cli::BenchArgs;
use crate::sim::default_mapping;
use adoport_ingest::ado::{AdoAuth, AdoClient, ClientOptions, RequestStats};
use adoport_ingest::{Crawler, Crawlers, KindPlan};
use adoport_shared::bus::Bus;
use adoport_shared::config::Secret;
use adoport_shared::messages::ResyncId;
use adoport_shared::port_app_config::PortAppConfig;
use adoport_shared::topology::{Topology, WorkQueue};
use adoport_sim::RateLimit;
use adoport_sim::ado::{AdoSim, AdoSimConfig};

/// Requests in flight per organization (the Python integration's 15).
const CONCURRENCY: usize = 15;

/// One crawl's figures.
struct CrawlFigures {
    organizations: usize,
    seconds: f64,
    items: u64,
    requests: u64,
}

/// Crawls one organization, then `args.organizations` at once, and prints both.
pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if args.organizations < 2 {
        bail!("--organizations: give 2 or more to compare with one organization");
    }
    let budget = RateLimit {
        requests: args.ado_requests_per_second,
        per: Duration::from_secs(1),
    };
    println!(
        "crawl of {} projects × {} repositories per organization, each organization limited to {} requests/s:",
        args.projects, args.repositories, budget.requests
    );
    let one = crawl(args, 1, budget).await?;
    let many = crawl(args, args.organizations, budget).await?;
    for f in [&one, &many] {
        println!(
            "  {} organization(s): {:>7.2} s, {:>6} items, {:>6} Azure DevOps requests, {:>8.0} items/s",
            f.organizations,
            f.seconds,
            f.items,
            f.requests,
            f.items as f64 / f.seconds
        );
    }
    println!(
        "  {} organizations took {:.2}× the time of one ({:.2}× the items)",
        many.organizations,
        many.seconds / one.seconds,
        many.items as f64 / one.items.max(1) as f64
    );
    Ok(())
}

async fn crawl(
    args: &BenchArgs,
    organizations: usize,
    budget: RateLimit,
) -> anyhow::Result<CrawlFigures> {
    let configs = (0..organizations)
        .map(|i| AdoSimConfig {
            organization: format!("org-{i}"),
            projects: args.projects,
            repositories_per_project: args.repositories,
            rate_limit: Some(budget),
            ..AdoSimConfig::default()
        })
        .collect();
    let sims = AdoSim::start_organizations(configs)
        .await
        .context("cannot start the Azure DevOps simulator")?;
    let shutdown = CancellationToken::new();
    let bus = Bus::memory(Topology::new("bench-organizations.", 1), shutdown.clone());
    let mut raw = bus.subscribe(WorkQueue::Raw, 256).await?;
    let drain = tokio::spawn(async move {
        while let Some(delivery) = raw.next().await {
            if delivery.ack().await.is_err() {
                break;
            }
        }
    });
    let stats = Arc::new(RequestStats::default());
    let auth = AdoAuth::personal_access_token(&Secret::new(
        AdoSimConfig::default().personal_access_token,
    ))?;
    let network = Default::default();
    let crawlers = sims
        .iter()
        .map(|sim| {
            let client = AdoClient::for_organization(
                &sim.organization_url(),
                auth.clone(),
                ClientOptions {
                    timeout_secs: 60,
                    network: &network,
                    lanes: adoport_ingest::ado::LaneLimits::shared(CONCURRENCY),
                },
                shutdown.clone(),
                Arc::clone(&stats),
            )?;
            Ok(Crawler::new(client, bus.clone(), 100))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let crawlers = Crawlers::new(crawlers);
    let mapping =
        PortAppConfig::from_json_value(default_mapping(Some(&["project", "repository"]))?)
            .context("the default mapping does not parse")?;
    let plan = KindPlan::for_mapping(&mapping);
    let started = Instant::now();
    let report = crawlers.crawl(ResyncId::new(), &plan).await?;
    let seconds = started.elapsed().as_secs_f64();
    shutdown.cancel();
    drain.abort();
    if !report.failed_kinds().is_empty() {
        bail!("the crawl of {organizations} organization(s) failed: {report:?}");
    }
    let figures = CrawlFigures {
        organizations,
        seconds,
        items: report.items(),
        requests: stats.requests.load(std::sync::atomic::Ordering::Relaxed),
    };
    for sim in sims {
        sim.shutdown().await;
    }
    Ok(figures)
}
