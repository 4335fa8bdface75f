//! The Azure DevOps requests of one resync with the whole default mapping (every kind it
//! names, GitOps included) or the one `--mapping` names, kind by kind, against the fewest the simulated organization allows
//! (`adoport_sim::ado::RequestReport`): part of `adoport bench`'s resync modes. With
//! `--baseline-binary`, another adoport build (e.g. main's) runs the same resync first against
//! a fresh organization of the same shape, so a change's before and after come from one run.

use std::path::Path;

use anyhow::Context;
use serde_json::Value;

use crate::bench_processes::run_once_with;
use crate::cli::BenchArgs;
use crate::sim::{SimulatedWorld, default_mapping};
use adoport_sim::ado::RequestReport;

/// One ONCE resync of a fresh `projects` × `repositories` organization with `mapping` by the
/// adoport at `executable`; its requests against the minimum.
pub async fn resync_requests(
    executable: &Path,
    projects: usize,
    repositories: usize,
    mapping: Value,
) -> anyhow::Result<RequestReport> {
    let world = SimulatedWorld::start(projects, repositories, mapping.clone()).await?;
    let mut environment = world.environment(None);
    environment.push(("OCEAN__EVENT_LISTENER__TYPE".into(), "ONCE".into()));
    let outcome = run_once_with(executable, &environment).await;
    let report = world.ado.request_report(&mapping);
    world.shutdown().await;
    outcome.with_context(|| format!("the resync by {}", executable.display()))?;
    Ok(report)
}

/// Prints the requests of the resync of the default mapping (or `--mapping`) by `--baseline-binary` (when given) and
/// by this build.
pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let this = std::env::current_exe().context("cannot find the adoport executable")?;
    let mut builds = Vec::new();
    if let Some(baseline) = &args.baseline_binary {
        builds.push((
            format!("{} (baseline)", baseline.display()),
            baseline.clone(),
        ));
    }
    builds.push(("this build".to_string(), this));
    let (mapping, name) = match &args.mapping {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--mapping: cannot read {}", path.display()))?;
            let mapping: Value = serde_saphyr::from_str(&text)
                .with_context(|| format!("--mapping: {} is not YAML/JSON", path.display()))?;
            (mapping, format!("Mapping {}", path.display()))
        }
        None => (default_mapping(None)?, "Default mapping".to_string()),
    };
    for (label, executable) in builds {
        let report = resync_requests(
            &executable,
            args.projects,
            args.repositories,
            mapping.clone(),
        )
        .await?;
        println!();
        println!(
            "{name}, one ONCE resync of {} projects × {} repositories by {label}:",
            args.projects, args.repositories
        );
        println!("{report}");
    }
    Ok(())
}
