//! `adoport mapping validate|test`: a port-app-config checked offline, and run on items — the
//! offline equivalent of Port's "test mapping" screen. Nothing here talks to Port or Azure
//! DevOps.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{Value, json};

use adoport_shared::messages::{ChangeOp, RawAction};
use adoport_transform::JqLimits;
use adoport_transform::evaluator::map_blocking;
use adoport_transform::mapping::ItemProblem;
use adoport_transform::mapping::versions::{RefusedMapping, compile_version};

use crate::cli::MappingCommand;

pub fn run(command: MappingCommand) -> anyhow::Result<ExitCode> {
    match command {
        MappingCommand::Validate { file } => validate(&file),
        MappingCommand::Test { file, kind, input } => test(&file, &kind, &input),
    }
}

fn read_mapping(file: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the mapping {}", file.display()))?;
    serde_saphyr::from_str(&text).with_context(|| format!("{} is not YAML or JSON", file.display()))
}

/// Prints every error of a refused mapping, one per line.
fn print_refusal(file: &Path, refusal: &RefusedMapping) {
    match refusal {
        RefusedMapping::Compile(e) => {
            let errors = e.errors();
            eprintln!("{}: {} error(s)", file.display(), errors.len());
            for e in errors {
                eprintln!("  {e}");
            }
        }
        RefusedMapping::Model(e) => eprintln!("{}: {e}", file.display()),
    }
}

fn validate(file: &Path) -> anyhow::Result<ExitCode> {
    let raw = read_mapping(file)?;
    match compile_version(&raw) {
        Ok((config, _)) => {
            println!(
                "{}: valid; {} resource(s), kinds: {}",
                file.display(),
                config.resources.len(),
                config.kinds().join(", ")
            );
            for ignored in &config.ignored_keys {
                println!("  note: `{ignored}` is not used by adoport");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(refusal) => {
            print_refusal(file, &refusal);
            Ok(ExitCode::FAILURE)
        }
    }
}

fn test(file: &Path, kind: &str, input: &Path) -> anyhow::Result<ExitCode> {
    let raw = read_mapping(file)?;
    let (_, mapping) = match compile_version(&raw) {
        Ok(compiled) => compiled,
        Err(refusal) => {
            print_refusal(file, &refusal);
            return Ok(ExitCode::FAILURE);
        }
    };
    let text = std::fs::read_to_string(input)
        .with_context(|| format!("cannot read the items {}", input.display()))?;
    let items = match serde_json::from_str::<Value>(&text)
        .with_context(|| format!("{} is not JSON", input.display()))?
    {
        Value::Array(items) => items,
        one => vec![one],
    };
    if !mapping.handles(kind) {
        eprintln!(
            "{}: no resource maps kind `{kind}`; the items produce nothing",
            file.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    let mut entities = Vec::new();
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    // Within the jq limits transform runs with (their defaults), on a thread sized for them.
    let outcomes = map_blocking(
        &mapping,
        kind,
        RawAction::Upsert,
        &items,
        JqLimits::default(),
    )?;
    for (index, outcome) in outcomes.into_iter().enumerate() {
        for change in outcome.changes {
            entities.push(match change.op {
                ChangeOp::Upsert { entity } => {
                    json!({"blueprint": change.blueprint, "entity": entity})
                }
                ChangeOp::Delete => {
                    json!({"blueprint": change.blueprint, "delete": change.identifier})
                }
            });
        }
        for problem in &outcome.problems {
            let entry = json!({"item": index, "problem": problem.to_string()});
            // A field that yields nothing is a warning, as in Port's mapping screen.
            if matches!(problem, ItemProblem::FieldNull { .. }) {
                warnings.push(entry);
            } else {
                problems.push(entry);
            }
        }
    }
    let report = json!({"entities": entities, "problems": problems, "warnings": warnings});
    println!(
        "{}",
        serde_json::to_string_pretty(&report).context("cannot print the report")?
    );
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
