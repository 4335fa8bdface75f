//! `adoport bench-mapping`: how many items per second the mapping engine maps on one core.
//!
//! Compiles the built-in default mapping (the Python integration's, unchanged) and maps
//! realistic `work-item` and `repository` items through it in a plain loop on the calling
//! thread: no runtime, no broker, no I/O, so the figure is the engine's alone. Each kind is
//! measured twice: as the pipeline runs it (the fast path answers what it covers) and with
//! every expression on jaq alone (what the engine did before the fast path). The items are
//! built here (the work item from a captured Azure DevOps answer, varied per item; the
//! repositories with a README and CODEOWNERS, as ingest delivers them), so the command needs
//! nothing outside the binary. Every item must map to exactly one entity without a problem,
//! or the command fails: a fast wrong answer is not a result.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use adoport_shared::messages::{ChangeOp, RawAction};
use adoport_shared::port_app_config::{DEFAULT_PORT_APP_CONFIG, PortAppConfig};
use adoport_transform::CompiledMapping;

use crate::cli::BenchMappingArgs;

/// A work item as `workitemsbatch` returns it with `$expand=All`, plus the `__project` and
/// `__projectId` ingest adds.
const WORK_ITEM: &str = include_str!("../../transform/fixtures/work-item.json");

/// What one kind measured.
#[derive(Debug, Clone)]
pub struct KindFigures {
    pub kind: &'static str,
    /// `"fast path"` or `"jaq only"`.
    pub engine: &'static str,
    /// Items mapped (the item set, repeated).
    pub items: u64,
    pub elapsed: Duration,
}

impl KindFigures {
    pub fn items_per_second(&self) -> f64 {
        self.items as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    pub fn nanos_per_item(&self) -> f64 {
        self.elapsed.as_nanos() as f64 / self.items.max(1) as f64
    }
}

/// The default mapping, compiled.
pub fn default_mapping() -> anyhow::Result<CompiledMapping> {
    let config = PortAppConfig::from_yaml_str(DEFAULT_PORT_APP_CONFIG)
        .context("the built-in default mapping does not parse")?;
    CompiledMapping::compile(&config).context("the built-in default mapping does not compile")
}

/// `count` distinct work items: ids, titles, types, states, board columns and projects vary;
/// every fourth has no effort and every fifth no description (the mapping's `//` defaults).
pub fn work_items(count: usize) -> anyhow::Result<Vec<Value>> {
    let template: Value =
        serde_json::from_str(WORK_ITEM).context("the built-in work-item fixture does not parse")?;
    const TYPES: [&str; 4] = ["Product Backlog Item", "Bug", "Task", "Feature"];
    const STATES: [&str; 4] = ["New", "Approved", "Committed", "Done"];
    let mut items = Vec::with_capacity(count);
    for i in 0..count {
        let mut item = template.clone();
        let id = 10_000 + i as u64;
        let project = project_id(i % 10);
        item["id"] = json!(id);
        item["rev"] = json!(1 + i % 30);
        item["url"] = json!(format!(
            "https://dev.azure.com/fabrikam/_apis/wit/workItems/{id}"
        ));
        item["__projectId"] = json!(project);
        item["__project"]["id"] = json!(project);
        let fields = item
            .get_mut("fields")
            .and_then(Value::as_object_mut)
            .context("the work-item fixture has no `fields` object")?;
        fields.insert(
            "System.Title".into(),
            json!(format!("Customer can do thing number {i} from the portal")),
        );
        fields.insert("System.WorkItemType".into(), json!(TYPES[i % TYPES.len()]));
        fields.insert("System.State".into(), json!(STATES[i % STATES.len()]));
        fields.insert("System.BoardColumn".into(), json!(STATES[i % STATES.len()]));
        if i % 4 == 0 {
            fields.remove("Microsoft.VSTS.Scheduling.Effort");
        } else {
            fields.insert("Microsoft.VSTS.Scheduling.Effort".into(), json!(i % 13));
        }
        if i % 5 == 0 {
            fields.remove("System.Description");
        }
        items.push(item);
    }
    Ok(items)
}

fn project_id(n: usize) -> String {
    format!("6ce954b1-ce1f-45d1-b94d-{n:012x}")
}

/// `count` distinct repositories as the repositories list returns them, with the
/// `__includedFiles` (README.md of a few KiB, CODEOWNERS) the default mapping asks for.
pub fn repositories(count: usize) -> Vec<Value> {
    let readme = {
        let mut text = String::from("# service\n\nWhat this service does and how to run it.\n\n");
        for section in 0..24 {
            text.push_str(&format!(
                "## Section {section}\n\nSome prose about the service, with `code` and a \
                 [link](https://example.com/docs/{section}).\n\n```sh\nmake run-{section}\n```\n\n"
            ));
        }
        text
    };
    (0..count)
        .map(|i| {
            let project = project_id(i % 10);
            let id = format!("6bd9f476-ffca-43da-b324-{i:012x}");
            let name = format!("service-{i}");
            let base = "https://dev.azure.com/fabrikam";
            json!({
                "id": id,
                "name": name,
                "url": format!("{base}/{project}/_apis/git/repositories/{id}"),
                "project": {
                    "id": project,
                    "name": format!("Project {}", i % 10),
                    "url": format!("{base}/_apis/projects/{project}"),
                    "state": "wellFormed",
                    "revision": 11,
                    "visibility": "private",
                    "lastUpdateTime": "2026-03-31T09:36:39.42Z"
                },
                "defaultBranch": "refs/heads/main",
                "size": 38_944 + i,
                "remoteUrl": format!("https://fabrikam@dev.azure.com/fabrikam/Project%20{}/_git/{name}", i % 10),
                "sshUrl": format!("git@ssh.dev.azure.com:v3/fabrikam/Project%20{}/{name}", i % 10),
                "webUrl": format!("{base}/Project%20{}/_git/{name}", i % 10),
                "isDisabled": false,
                "isInMaintenance": false,
                "__includedFiles": {
                    "README.md": readme,
                    "CODEOWNERS": if i % 3 == 0 { "" } else { "* @fabrikam/platform\n/docs/ @fabrikam/writers\n" }
                }
            })
        })
        .collect()
}

/// Maps every item once and checks the outcome: exactly one upsert, no problem.
fn check(mapping: &CompiledMapping, kind: &str, items: &[Value]) -> anyhow::Result<()> {
    for item in items {
        let outcome = mapping.apply(kind, RawAction::Upsert, item);
        if let Some(problem) = outcome.problems.first() {
            bail!("the default mapping has a problem with a {kind} item: {problem}");
        }
        match outcome.changes.as_slice() {
            [change] if matches!(change.op, ChangeOp::Upsert { .. }) => {}
            other => bail!(
                "the default mapping made {} changes of a {kind} item (expected one upsert)",
                other.len()
            ),
        }
    }
    Ok(())
}

/// Maps `items` round after round until `at_least` has passed (at least one round), on this
/// thread.
pub fn measure(
    mapping: &CompiledMapping,
    engine: &'static str,
    kind: &'static str,
    items: &[Value],
    at_least: Duration,
) -> anyhow::Result<KindFigures> {
    check(mapping, kind, items)?;
    let started = Instant::now();
    let mut mapped = 0u64;
    loop {
        for item in items {
            black_box(mapping.apply(kind, RawAction::Upsert, black_box(item)));
        }
        mapped += items.len() as u64;
        if started.elapsed() >= at_least {
            break;
        }
    }
    Ok(KindFigures {
        kind,
        engine,
        items: mapped,
        elapsed: started.elapsed(),
    })
}

pub fn run(args: BenchMappingArgs) -> anyhow::Result<ExitCode> {
    if args.items == 0 {
        bail!("--items must be at least 1");
    }
    let at_least = Duration::from_secs_f64(args.seconds.max(0.01));
    let started = Instant::now();
    let mapping = default_mapping()?;
    let compile = started.elapsed();
    let jaq_only = mapping.without_fast_paths();
    let (fast, total) = mapping.fast_path_coverage();
    println!(
        "adoport bench-mapping: default mapping compiled in {:.1} ms ({fast} of {total} \
         expressions with a fast path); {} distinct items per kind, {:.1} s per run, one thread{}",
        compile.as_secs_f64() * 1e3,
        args.items,
        at_least.as_secs_f64(),
        if cfg!(debug_assertions) {
            " (DEBUG BUILD: use --release for figures)"
        } else {
            ""
        }
    );
    let work_items = work_items(args.items)?;
    let repositories = repositories(args.items);
    let mut results = Vec::new();
    for (kind, items) in [("work-item", &work_items), ("repository", &repositories)] {
        for (engine, mapping) in [("fast path", &mapping), ("jaq only", &jaq_only)] {
            if engine == "jaq only" && args.skip_jaq_only {
                continue;
            }
            // One untimed round first: caches and allocator warm.
            check(mapping, kind, items)?;
            results.push(measure(mapping, engine, kind, items, at_least)?);
        }
    }
    println!();
    println!(
        "{:<12} {:<10} {:>10} {:>12} {:>10}",
        "kind", "engine", "items", "items/s", "ns/item"
    );
    for f in &results {
        println!(
            "{:<12} {:<10} {:>10} {:>12.0} {:>10.0}",
            f.kind,
            f.engine,
            f.items,
            f.items_per_second(),
            f.nanos_per_item()
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_distinct_and_map_to_one_entity_each() {
        let mapping = default_mapping().expect("default mapping");
        let items = work_items(20).expect("work items");
        let repos = repositories(20);
        for (kind, items) in [("work-item", &items), ("repository", &repos)] {
            check(&mapping, kind, items).unwrap_or_else(|e| panic!("{e}"));
            let ids: std::collections::BTreeSet<String> = items
                .iter()
                .map(|item| {
                    mapping.apply(kind, RawAction::Upsert, item).changes[0]
                        .identifier
                        .clone()
                })
                .collect();
            assert_eq!(ids.len(), items.len(), "{kind} identifiers are distinct");
        }
        // The `//` defaults are exercised: an item without effort maps it to -1.
        let outcome = mapping.apply("work-item", RawAction::Upsert, &items[0]);
        let ChangeOp::Upsert { entity } = &outcome.changes[0].op else {
            panic!("upsert expected");
        };
        assert_eq!(entity["properties"]["effort"], json!(-1));
        assert_eq!(entity["properties"]["description"], json!(""));
    }

    #[test]
    fn measure_counts_whole_rounds() {
        let mapping = default_mapping().expect("default mapping");
        let repos = repositories(3);
        let figures =
            measure(&mapping, "fast path", "repository", &repos, Duration::ZERO).expect("measures");
        assert_eq!(figures.items, 3);
        assert!(figures.items_per_second() > 0.0);
    }

    #[test]
    fn a_kind_the_mapping_does_not_map_fails_the_check() {
        let mapping = default_mapping().expect("default mapping");
        let err = measure(
            &mapping,
            "fast path",
            "pipeline",
            &repositories(1),
            Duration::ZERO,
        )
        .expect_err("no pipeline resource in the default mapping");
        assert!(err.to_string().contains("0 changes"), "{err}");
    }
}
