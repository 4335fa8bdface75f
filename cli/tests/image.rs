//! The Dockerfile's promises, checked without a Docker daemon: the image runs the whole
//! integration when started without arguments (as the Python integration's image does), as a
//! non-root user, on a current Debian, exposing the ports the roles listen on by default, built
//! with a Cargo profile that exists and has no debug line tables (`dist`: fat LTO, one codegen
//! unit, unwinding panics), from a build context that leaves `target/` out.

use std::path::Path;

use adoport::cli::{Cli, Command};
use adoport_shared::config::{HealthSettings, IngestSettings};
use clap::Parser;

fn read(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{} is readable: {e}", path.display()))
}

/// The Dockerfile's instructions as (INSTRUCTION, arguments), continuation lines joined and
/// comments dropped.
fn instructions() -> Vec<(String, String)> {
    let text = read("Dockerfile");
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined
        .into_iter()
        .filter(|line| !line.is_empty())
        .map(|line| match line.split_once(char::is_whitespace) {
            Some((op, rest)) => (op.to_ascii_uppercase(), rest.trim().to_string()),
            None => (line.to_ascii_uppercase(), String::new()),
        })
        .collect()
}

/// The instructions of the last stage (what the image is).
fn final_stage() -> Vec<(String, String)> {
    let all = instructions();
    let start = all
        .iter()
        .rposition(|(op, _)| op == "FROM")
        .expect("a FROM instruction");
    all[start..].to_vec()
}

fn last<'a>(stage: &'a [(String, String)], op: &str) -> &'a str {
    stage
        .iter()
        .rev()
        .find(|(o, _)| o == op)
        .map(|(_, args)| args.as_str())
        .unwrap_or_else(|| panic!("the final stage has {op}"))
}

fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("{args} is in exec (JSON) form: {e}"))
}

#[test]
fn without_arguments_the_image_runs_every_role() {
    let stage = final_stage();
    assert_eq!(
        exec_form(last(&stage, "ENTRYPOINT")),
        ["/usr/local/bin/adoport"]
    );
    let command = exec_form(last(&stage, "CMD"));
    assert_eq!(command, ["all"]);
    let parsed = Cli::try_parse_from(std::iter::once("adoport".to_string()).chain(command))
        .expect("the default command parses");
    assert!(matches!(parsed.command, Command::All));
}

#[test]
fn the_image_runs_as_a_numeric_non_root_user_on_current_debian() {
    let stage = final_stage();
    let user = last(&stage, "USER");
    let uid: u32 = user
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("USER {user} is numeric (runAsNonRoot can check it)"));
    assert_ne!(uid, 0, "USER is not root");
    let base = last(&stage, "FROM");
    assert!(
        base.starts_with("debian:trixie"),
        "the image is based on Debian 13 (trixie), found {base}"
    );
    let builder = &instructions()[0];
    assert!(
        builder.0 == "FROM" && builder.1.contains("trixie"),
        "the build stage uses the same Debian release: {builder:?}"
    );
}

#[test]
fn the_image_exposes_the_default_ports_and_carries_oci_labels() {
    let stage = final_stage();
    let exposed: Vec<u16> = stage
        .iter()
        .filter(|(op, _)| op == "EXPOSE")
        .flat_map(|(_, args)| args.split_whitespace())
        .map(|port| {
            port.trim_end_matches("/tcp")
                .parse()
                .expect("a port number")
        })
        .collect();
    let port_of = |address: &str| -> u16 {
        address
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("host:port")
    };
    let webhook = port_of(&IngestSettings::default().listen);
    let health = port_of(HealthSettings::DEFAULT_LISTEN);
    for port in [webhook, health] {
        assert!(exposed.contains(&port), "EXPOSE {port}: {exposed:?}");
    }
    let labels: String = stage
        .iter()
        .filter(|(op, _)| op == "LABEL")
        .map(|(_, args)| args.as_str())
        .collect();
    for label in [
        "org.opencontainers.image.source",
        "org.opencontainers.image.licenses",
        "org.opencontainers.image.version",
        "org.opencontainers.image.revision",
    ] {
        assert!(labels.contains(label), "LABEL {label}: {labels}");
    }
}

/// Asserts that the workspace manifest has `[profile.<name>]`, with each of `lines` (as
/// written, trimmed) and no `panic` setting: every profile adoport is built with unwinds (a
/// panicking send task must not take the process down with it).
fn assert_profile(name: &str, lines: &[&str]) {
    let header = format!("[profile.{name}]");
    let manifest = read("Cargo.toml");
    let section: Vec<&str> = manifest
        .lines()
        .skip_while(|line| line.trim() != header)
        .skip(1)
        .take_while(|line| !line.trim_start().starts_with('['))
        .map(str::trim)
        .collect();
    assert!(!section.is_empty(), "Cargo.toml has {header}");
    for line in lines {
        assert!(section.contains(line), "{header} has `{line}`: {section:?}");
    }
    assert!(
        !section.iter().any(|l| l.starts_with("panic")),
        "{header} keeps panic = unwind: {section:?}"
    );
}

#[test]
fn the_build_uses_a_cargo_profile_without_debug_line_tables() {
    let builds: Vec<String> = instructions()
        .into_iter()
        .filter(|(op, args)| op == "RUN" && args.contains("cargo build"))
        .map(|(_, args)| args)
        .collect();
    assert!(!builds.is_empty(), "the Dockerfile builds with cargo");
    for build in builds {
        let profile = build
            .split_whitespace()
            .skip_while(|word| *word != "--profile")
            .nth(1)
            .unwrap_or_else(|| panic!("`{build}` names its profile with --profile"));
        assert_profile(profile, &["debug = false"]);
        let copied = instructions()
            .into_iter()
            .any(|(op, args)| op == "RUN" && args.contains(&format!("target/{profile}/adoport")));
        assert!(
            copied,
            "the image takes the binary of the {profile} profile"
        );
    }
}

#[test]
fn release_builds_carry_no_debug_info_and_keep_unwinding() {
    assert_profile("release", &["debug = false", "strip = \"debuginfo\""]);
}

#[test]
fn the_image_profile_optimizes_the_whole_program_and_keeps_unwinding() {
    // The README's binary size and each role's resident executable pages are measured with
    // these: without them the binary is 40.1 MiB instead of 27.5, and each process maps 3 to
    // 4.5 MiB more of it.
    assert_profile(
        "dist",
        &[
            "inherits = \"release\"",
            "lto = \"fat\"",
            "codegen-units = 1",
        ],
    );
}

#[test]
fn the_build_context_leaves_out_target_and_git() {
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            line.trim_end_matches('/')
                .trim_start_matches('/')
                .to_string()
        })
        .collect();
    for path in ["target", ".git"] {
        assert!(
            ignored.iter().any(|p| p == path),
            ".dockerignore has {path}: {ignored:?}"
        );
    }
}
