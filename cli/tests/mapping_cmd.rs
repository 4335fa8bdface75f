//! `adoport mapping validate|test` as a user runs them.

use std::process::Command;

const REFERENCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/ocean-azure-devops"
);
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../transform/fixtures");

fn adoport(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_adoport"))
        .args(args)
        .output()
        .expect("adoport runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("adoport-mapping-cmd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn validate_accepts_the_reference_mapping() {
    let file = format!("{REFERENCE}/port-app-config.yaml");
    let (ok, out, err) = adoport(&["mapping", "validate", &file]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("valid; 8 resource(s)"), "{out}");
}

#[test]
fn validate_lists_every_error_and_fails() {
    let file = temp_file(
        "bad.yaml",
        r#"
resources:
  - kind: a
    selector: {query: '.x =='}
    port: {entity: {mappings: {identifier: .id, blueprint: '"b"', properties: {state: '.a | nosuch'}}}}
"#,
    );
    let (ok, _, err) = adoport(&["mapping", "validate", file.to_str().expect("utf-8")]);
    assert!(!ok);
    assert!(err.contains("2 error(s)"), "{err}");
    assert!(err.contains("resources[0].selector.query"), "{err}");
    assert!(
        err.contains("resources[0].port.entity.mappings.properties.state"),
        "{err}"
    );
    let file = temp_file(
        "typo.yaml",
        "resources: [{kind: a, port: {entity: {mapings: {}}}}]",
    );
    let (ok, _, err) = adoport(&["mapping", "validate", file.to_str().expect("utf-8")]);
    assert!(!ok);
    assert!(err.contains("resources[0].port.entity"), "{err}");
}

#[test]
fn test_prints_the_entities_of_the_items() {
    let file = format!("{REFERENCE}/port-app-config.yaml");
    let input = format!("{FIXTURES}/work-item.json");
    let (ok, out, err) = adoport(&[
        "mapping",
        "test",
        &file,
        "--kind",
        "work-item",
        "--input",
        &input,
    ]);
    assert!(ok, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
    let entity = &report["entities"][0]["entity"];
    assert_eq!(report["entities"][0]["blueprint"], "azureDevopsWorkItem");
    assert_eq!(
        entity["identifier"],
        "6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c/1764"
    );
    assert_eq!(entity["properties"]["effort"], 8);
    assert_eq!(
        entity["relations"]["column"],
        "ProductBacklogItem-Committed-6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c"
    );
    assert_eq!(report["problems"], serde_json::json!([]));
}

#[test]
fn test_reports_item_problems_and_fails() {
    let file = temp_file(
        "sel.yaml",
        r#"
resources:
  - kind: work-item
    selector: {query: .fields}
    port: {entity: {mappings: {identifier: .id | tostring, blueprint: '"w"'}}}
"#,
    );
    let input = format!("{FIXTURES}/work-item.json");
    let (ok, out, _) = adoport(&[
        "mapping",
        "test",
        file.to_str().expect("utf-8"),
        "--kind",
        "work-item",
        "--input",
        &input,
    ]);
    assert!(!ok);
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
    let problem = report["problems"][0]["problem"]
        .as_str()
        .expect("a problem");
    assert!(problem.contains("expected a boolean"), "{problem}");
}

/// A runaway expression compiles (whether it ends cannot be known before it runs), and
/// `mapping test` reports it as the service would, within the default jq limits, instead of
/// overflowing its stack. What cannot be compiled safely is refused by `validate`.
#[test]
fn runaway_expressions_are_reported_by_test_and_overlong_ones_refused() {
    let runaway = temp_file(
        "runaway.yaml",
        r#"
resources:
  - kind: work-item
    selector: {query: 'true'}
    port: {entity: {mappings: {identifier: .id | tostring, blueprint: '"w"', properties: {deep: 'def f: 1 + f; f'}}}}
"#,
    );
    let file = runaway.to_str().expect("utf-8");
    let (ok, out, err) = adoport(&["mapping", "validate", file]);
    assert!(ok, "{out}{err}");
    let input = format!("{FIXTURES}/work-item.json");
    let (ok, out, err) = adoport(&[
        "mapping",
        "test",
        file,
        "--kind",
        "work-item",
        "--input",
        &input,
    ]);
    assert!(!ok, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
    let problem = report["problems"][0]["problem"]
        .as_str()
        .expect("a problem");
    assert!(
        problem.contains("resources[0].port.entity.mappings.properties.deep")
            && problem.contains("ADOPORT__TRANSFORM__JQ_MAX_STACK_MIB"),
        "{problem}"
    );
    assert_eq!(report["entities"], serde_json::json!([]));

    let nested = format!("{}1{}", "(".repeat(9_000), ")".repeat(9_000));
    let overlong = temp_file(
        "overlong.yaml",
        &format!(
            "resources: [{{kind: a, port: {{entity: {{mappings: {{identifier: .id, blueprint: '\"b\"', properties: {{p: '{nested}'}}}}}}}}}}]"
        ),
    );
    let (ok, _, err) = adoport(&["mapping", "validate", overlong.to_str().expect("utf-8")]);
    assert!(!ok);
    assert!(
        err.contains("at most 16384"),
        "{}",
        &err[..err.len().min(300)]
    );
}
