//! compose.yaml runs real subcommands with settings the binary accepts.
//!
//! `docker-compose config` (Debian's docker-compose; scripts/test.sh installs it) validates the
//! file and resolves anchors and `${VAR:-default}`s; then every adoport service's command is
//! parsed by the real command line, and every role's environment is checked by the built
//! binary's `check-config`, exactly as the container would start.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use clap::Parser;
use serde_json::Value;

fn resolved_compose() -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new("docker-compose")
        .current_dir(&root)
        .args(["--profile", "sim", "config"])
        .env_remove("OCEAN__INTEGRATION__CONFIG__ORGANIZATION_URL")
        .output()
        .expect("docker-compose is installed (scripts/test.sh installs it)");
    assert!(
        output.status.success(),
        "compose.yaml is invalid: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_saphyr::from_str(&String::from_utf8_lossy(&output.stdout))
        .expect("resolved compose parses")
}

#[test]
fn every_compose_service_runs_a_real_subcommand_with_accepted_settings() {
    let compose = resolved_compose();
    let services = compose["services"].as_object().expect("services");
    let mut roles_seen = Vec::new();
    for (name, service) in services {
        if service["image"] != "adoport:local" {
            continue;
        }
        let command: Vec<String> = service["command"]
            .as_array()
            .unwrap_or_else(|| panic!("service {name} has a command list"))
            .iter()
            .map(|a| a.as_str().expect("string argument").to_string())
            .collect();
        let argv = std::iter::once("adoport".to_string()).chain(command.iter().cloned());
        adoport::cli::Cli::try_parse_from(argv).unwrap_or_else(|e| {
            panic!(
                "service {name}: `adoport {}` is not accepted: {e}",
                command.join(" ")
            )
        });
        let role = command[0].as_str();
        if !["ingest", "transform", "publish", "all"].contains(&role) {
            continue;
        }
        let environment: BTreeMap<String, String> = service["environment"]
            .as_object()
            .map(|env| {
                env.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str()
                                .map(String::from)
                                .unwrap_or_else(|| v.to_string()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let output = Command::new(env!("CARGO_BIN_EXE_adoport"))
            .args(["check-config", role])
            .env_clear()
            .envs(&environment)
            .output()
            .expect("adoport runs");
        assert!(
            output.status.success(),
            "service {name}: `adoport check-config {role}` refused its settings: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        roles_seen.push(role.to_string());
    }
    roles_seen.sort();
    assert_eq!(roles_seen, ["ingest", "publish", "transform"]);
}

#[test]
fn check_config_names_a_bad_setting() {
    let output = Command::new(env!("CARGO_BIN_EXE_adoport"))
        .args(["check-config", "publish"])
        .env_clear()
        .env(
            "ADOPORT__BROKER__URL",
            "amqp://guest:guest@127.0.0.1:5672/%2f",
        )
        .env("ADOPORT__BROKER__PARTITIONS", "many")
        .output()
        .expect("adoport runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ADOPORT__BROKER__PARTITIONS"), "{stderr}");
}
