//! jaq is not jq: this test measures the difference instead of guessing it.
//!
//! Every expression of the reference mappings (the default port-app-config and the mapping
//! example of the Python integration) and a corpus of expressions users write is run through
//! our [`JqProgram`] (jaq + our prelude) and through the `jq` binary (Debian package `jq`) on
//! the reference example items, and the first outputs must be identical (an error on one side
//! must be an error on the other; the messages may differ). The Python integration hides the
//! environment from jq, so the `jq` binary runs with an empty environment.
//!
//! `jq` must be installed (`scripts/test.sh` installs it): without it this test fails.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use adoport_shared::port_app_config::{MappingValue, PortAppConfig, SearchQuery, SearchRule};
use adoport_transform::jq::{JqProgram, Prelude, convert_single_quotes};
use serde_json::Value;

const REFERENCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/ocean-azure-devops"
);
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

/// Builtins of jq 1.7 (the Python integration's jq) that jaq has and Debian's jq 1.6 lacks:
/// an expression using them is compared only when the `jq` binary knows them.
const NEWER_THAN_JQ_1_6: &[&str] = &["abs", "trim", "ltrim", "rtrim", "pick", "toarray"];

/// Expressions users write in port-app-configs, by the builtin they exercise. Each runs on
/// every input item.
const CORPUS: &[&str] = &[
    // paths, quoted keys, optional access, alternatives
    ".",
    ".id",
    ".fields.\"System.Title\"",
    ".fields[\"System.State\"]",
    ".[\"fields\"][\"System.CreatedBy\"].displayName",
    ".fields.\"System.AssignedTo\".uniqueName // \"unassigned\"",
    ".fields.\"Microsoft.VSTS.Scheduling.Effort\" // -1",
    ".fields.\"System.Description\" // ''",
    ".missing.deeper // 'none'",
    ".name?",
    "try .a.b.c catch \"failed\"",
    ".id?.x?",
    "(.fields // {}) | keys",
    ".fields | keys_unsorted | length",
    "._links.html.href",
    ".relations[0].url?",
    ".relations // [] | map(.rel)",
    ".relations[]?.attributes.name",
    ".__project.name + \" / \" + (.id | tostring)",
    // strings
    ".name | ascii_downcase",
    ".name | ascii_upcase",
    ".fields.\"System.Title\" | ascii_downcase | gsub(\" \"; \"-\")",
    ".name | gsub(\"[^a-zA-Z0-9]\"; \"\")",
    ".name | gsub(\"(?<x>[A-Z])\"; \"_\\(.x)\")",
    ".name | sub(\"-\"; \"_\")",
    ".name | test(\"fabrikam\"; \"i\")",
    ".name | test(\"^[A-Z]\")",
    ".url | test(\"dev.azure.com\")",
    ".url | capture(\"https://(?<host>[^/]+)/(?<org>[^/]+)\")",
    "[.url | scan(\"[0-9a-f]{8}\")] | length",
    ".url | split(\"/\")",
    ".url | split(\"/\") | last",
    ".url | split(\"/\") | .[2:4] | join(\"/\")",
    ".fields.\"System.Tags\" | split(\"; \")",
    ".fields.\"System.Tags\" // \"\" | split(\";\") | map(ltrimstr(\" \"))",
    "[.name, .id] | map(tostring) | join(\"-\")",
    ".url | ltrimstr(\"https://\")",
    ".url | rtrimstr(\"/\")",
    ".url | startswith(\"https://\")",
    ".url | endswith(\".git\")",
    ".name | length",
    ".name | utf8bytelength",
    ".name | explode | implode",
    ".name | ascii_downcase | ltrimstr(\"fabrikam\")",
    ".remoteUrl | sub(\"^https://[^@]*@\"; \"https://\")",
    ".name | @base64",
    ".name | @base64 | @base64d",
    ".name | @uri",
    ".name | @html",
    ".name | @sh",
    "[.id, .name] | @csv",
    "[.id, .name] | @tsv",
    ".name | @json",
    ".name | @text",
    "\"\\(.name) (\\(.id))\"",
    "@base64 \"id:\\(.id)\"",
    ".name | tojson | fromjson",
    ".name | ltrimstr(1)",
    "1 | ltrimstr(\"x\")",
    ".id | ascii_downcase?",
    "[.name | splits(\"-\")]",
    ".name | index(\"-\")",
    ".name | indices(\"a\")",
    ".name | contains(\"Fiber\")",
    ".name | inside(\"Fabrikam-Fiber-Git and more\")",
    // numbers and conversions
    ".id | tostring",
    ".revision | tostring",
    ".fields.\"Microsoft.VSTS.Common.BacklogPriority\" | tostring",
    ".fields.\"Microsoft.VSTS.Common.BacklogPriority\"",
    ".fields.\"Microsoft.VSTS.Common.Priority\" * 1.5",
    ".fields.\"Microsoft.VSTS.Scheduling.Effort\" / 3 | floor",
    ".revision / 2",
    "(.revision // 0) + 0.5 | tostring",
    "1e3, 1.0, 100000000000000000000",
    "\"42\" | tonumber",
    "\"4.50\" | tonumber",
    "\"abc\" | tonumber",
    ".id | tonumber",
    "[.revision?, 3] | add",
    "[1, 2.5, 3] | add / length",
    "[.[]?] | length",
    "length",
    "3.0 | tostring",
    "1.5e300 * 1.5e300 | tostring",
    "[10, 2, 33] | sort | .[0]",
    "[10, 2, 33] | min, max",
    "-7 | abs?",
    "(5 | sqrt) * 100 | round",
    "17 % 5",
    "type",
    ".id | type",
    // dates
    "\"2024-03-18T11:08:16Z\" | fromdate",
    "\"2024-03-18T11:08:16Z\" | fromdateiso8601",
    "1710760096 | todate",
    "1710760096 | todateiso8601",
    "1710760096 | gmtime | mktime",
    "1710760096 | strftime(\"%Y-%m-%d\")",
    "\"2024-03-18\" | strptime(\"%Y-%m-%d\") | mktime",
    ".fields.\"System.CreatedDate\" | sub(\"\\\\.[0-9]+Z$\"; \"Z\") | fromdate",
    ".createdOn | sub(\"\\\\.[0-9]+Z$\"; \"Z\")? | fromdate? // null",
    "now | type",
    "now > 1700000000",
    "(now - (\"2024-03-18T11:08:16Z\" | fromdate)) > 0",
    // selection, arrays, objects
    "select(.id != null) | .id",
    "select(.name == \"nope\")",
    ".relations // [] | map(select(.rel == \"ArtifactLink\")) | length",
    ".relations // [] | map(.attributes.name) | unique",
    "[.relations[]? | .url] | first",
    ".relations // [] | first(.[] | select(.rel | startswith(\"System\"))) | .url",
    "[limit(2; .[]?)] | length",
    "to_entries | map(.key) | sort",
    "to_entries | map(select(.value | type == \"string\")) | from_entries | keys",
    "(.fields // {}) | with_entries(select(.key | startswith(\"System.\"))) | length",
    "has(\"id\")",
    "has(\"nope\")",
    ".fields | has(\"System.Title\")?",
    "[paths] | length",
    "[paths(type == \"number\")] | length",
    "[leaf_paths] | length",
    "getpath([\"fields\", \"System.State\"])",
    "del(.fields) | keys",
    "to_entries | length",
    "keys | map(ascii_downcase) | join(\",\")",
    "[.[]?] | map(type) | group_by(.) | map({(.[0]): length}) | add",
    "any(.[]?; . == null)",
    "all(.[]?; . != null)",
    "[.relations[]?.rel] | index(\"ArtifactLink\")",
    "if .isEnabled then \"on\" elif .isEnabled == false then \"off\" else null end",
    ".isEnabled and .isBlocking",
    ".isEnabled or .isBlocking",
    ".isEnabled | not",
    ".type.displayName == \"Minimum number of reviewers\"",
    ".type.displayName | IN(\"Minimum number of reviewers\", \"Work item linking\")",
    "[.settings.scope[]?.refName] | map(ltrimstr(\"refs/heads/\"))",
    "reduce (.relations // [])[] as $r (0; . + 1)",
    ". as $item | .id as $id | {id: $id, has: ($item | has(\"name\"))}",
    "{identifier: .id, title: .name} | tojson",
    "{(.name // \"x\"): .id}",
    "[.[]?] | flatten | length",
    "[range(0; 3)] | map(. * 2)",
    "[.id, .name] | @json",
    "tostream | select(length == 2) | .[0] | length",
    "walk(if type == \"string\" then ascii_downcase else . end) | .name",
    "env | length",
    "$ENV | length",
    "$ENV.HOME",
    "env.PATH // \"hidden\"",
    "splits(\"x\")?",
    "ascii",
    "tojson | length > 10",
    "getpath([\"a\", 0, \"b\"])",
    "[.[]?] | unique_by(type) | length",
    "map_values(type)?",
    "to_entries? | map(.value | type) | unique",
    "error(\"custom\")",
    "try error(\"custom\") catch .",
    "[.[]?] | .[1:] | length",
    "\"x\" * 3",
    "{} | .a += 1",
    "[\"b\", \"a\"] | sort_by(.)",
    "infinite | tostring",
    "nan | isnan",
    "[1,2] | contains([1])",
    "ltrimstr(\"x\")",
    "trim?",
    "ascii_downcase",
    "tostring",
    "tostring | length",
    "\"v\\(.revision / 1 | tostring)\"",
    "[.revision / 2] | tostring",
    "{a: (.id / 1)} | tojson",
    "{a: {}} | .a.b = 1",
    "(.a // {}) | .b = 1",
    "[.id / 1, {b: 2.0}] | tojson",
];

/// Where jaq differs from jq in its core language, not in a builtin our prelude could
/// redefine. Each must still differ (else the README's list is stale); the README lists them
/// with the way to write the expression so that both agree.
const KNOWN_DIFFERENCES: &[&str] = &[
    // Updating a path through null: jq creates the objects, jaq fails.
    "null | .a = 1",
    ".a.b = 1 | .a",
    ".a.b |= 1 | .a",
    // Indexing an object with a number: jq fails, jaq yields null.
    "{} | .[0]",
    ".[0]?",
    // Integral floats inside string interpolation: jq `11`, jaq `11.0`.
    "\"v\\(.revision / 1)\"",
    // Not in jaq.
    "@base32",
];

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The reference example items, the mapping example's items and our realistic fixtures.
fn inputs() -> Vec<Value> {
    let mut out = Vec::new();
    let examples = Path::new(REFERENCE).join("examples");
    let mut kinds: Vec<_> = std::fs::read_dir(&examples)
        .expect("reference examples")
        .map(|e| e.expect("entry").path())
        .collect();
    kinds.sort();
    for kind in kinds {
        let mut files: Vec<_> = std::fs::read_dir(&kind)
            .expect("kind dir")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        out.extend(files.iter().map(|f| read_json(f)));
    }
    let example = Path::new(REFERENCE).join("mapping-example");
    match read_json(&example.join("example-data.json")) {
        Value::Array(items) => out.extend(items),
        other => out.push(other),
    }
    out.push(read_json(&example.join("example-file-data.json")));
    out.push(read_json(&Path::new(FIXTURES).join("work-item.json")));
    match read_json(&Path::new(FIXTURES).join("repository-policies.json")) {
        Value::Array(items) => out.extend(items),
        other => out.push(other),
    }
    // edge inputs: wrong types reach expressions too
    out.extend([
        Value::Null,
        serde_json::json!({}),
        serde_json::json!([]),
        serde_json::json!("Fabrikam-Fiber"),
        serde_json::json!(12.5),
    ]);
    out
}

fn search_leaves(query: &SearchQuery, out: &mut Vec<String>) {
    out.push(query.combinator.as_str().to_owned());
    for rule in &query.rules {
        match rule {
            SearchRule::Rule {
                property,
                operator,
                value,
            } => {
                out.extend([property, operator, value].map(|e| e.as_str().to_owned()));
            }
            SearchRule::Query(inner) => search_leaves(inner, out),
        }
    }
}

fn value_exprs(value: &MappingValue, out: &mut Vec<String>) {
    match value {
        MappingValue::Jq(e) => out.push(e.as_str().to_owned()),
        MappingValue::Search(q) => search_leaves(q, out),
    }
}

/// Every jq expression of a port-app-config.
fn mapping_expressions(config: &PortAppConfig) -> Vec<String> {
    let mut out = Vec::new();
    for r in &config.resources {
        out.push(r.selector.query.as_str().to_owned());
        if let Some(e) = &r.port.items_to_parse {
            out.push(e.as_str().to_owned());
        }
        let m = &r.port.entity.mappings;
        value_exprs(&m.identifier, &mut out);
        out.push(m.blueprint.as_str().to_owned());
        out.extend(m.title.iter().chain(&m.icon).map(|e| e.as_str().to_owned()));
        if let Some(team) = &m.team {
            value_exprs(team, &mut out);
        }
        out.extend(m.properties.iter().map(|(_, e)| e.as_str().to_owned()));
        for (_, v) in m.relations.iter() {
            value_exprs(v, &mut out);
        }
    }
    out.retain(|e| !e.trim().starts_with("file://"));
    out
}

fn reference_expressions() -> Vec<String> {
    let mut out = Vec::new();
    for file in [
        "port-app-config.yaml",
        "mapping-example/example-mappings.yaml",
    ] {
        let path = Path::new(REFERENCE).join(file);
        let text = std::fs::read_to_string(&path).expect("reference mapping");
        let config = PortAppConfig::from_yaml_str(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        out.extend(mapping_expressions(&config));
    }
    out.sort();
    out.dedup();
    out
}

/// What one side made of one expression on one input.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// The first output, or `None` when it yields nothing.
    First(Option<Value>),
    Error,
}

/// Runs `expr` (already in jq syntax) through the `jq` binary on every input.
fn run_jq(expr: &str, inputs: &[Value]) -> Result<Vec<Outcome>, String> {
    let program = format!("try ([limit(1; ({expr}))] | {{ok: .}}) catch {{err: true}}");
    let mut child = Command::new("jq")
        .arg("-c")
        .arg(&program)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "the `jq` binary is needed for this test and could not be run ({e}): \
                 run scripts/test.sh, or `apt-get install jq`"
            )
        });
    let mut stdin = child.stdin.take().expect("stdin");
    let body: String = inputs.iter().map(|v| format!("{v}\n")).collect();
    let writer = std::thread::spawn(move || stdin.write_all(body.as_bytes()));
    let out = child.wait_with_output().expect("jq runs");
    writer.join().expect("writer").expect("write to jq");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let outcomes: Vec<Outcome> = text
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("jq prints JSON");
            match v.get("ok") {
                Some(Value::Array(first)) => Outcome::First(first.first().cloned()),
                _ => Outcome::Error,
            }
        })
        .collect();
    assert_eq!(outcomes.len(), inputs.len(), "jq: one line per input");
    Ok(outcomes)
}

fn run_jaq(program: &JqProgram, inputs: &[Value]) -> Vec<Outcome> {
    inputs
        .iter()
        .map(|input| match program.first(input) {
            Ok(v) => Outcome::First(v),
            Err(_) => Outcome::Error,
        })
        .collect()
}

/// Numbers are compared as numbers (jq prints `1e+300`, serde_json `1e300`).
fn same(a: &Outcome, b: &Outcome) -> bool {
    fn eq(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x == y || (x - y).abs() <= f64::EPSILON * x.abs().max(1.0),
                _ => x == y,
            },
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(a, b)| eq(a, b))
            }
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len()
                    && x.iter()
                        .zip(y)
                        .all(|((ka, va), (kb, vb))| ka == kb && eq(va, vb))
            }
            _ => a == b,
        }
    }
    match (a, b) {
        (Outcome::First(Some(a)), Outcome::First(Some(b))) => eq(a, b),
        _ => a == b,
    }
}

fn clip(text: &str) -> String {
    if text.chars().count() > 70 {
        format!("{}…", text.chars().take(70).collect::<String>())
    } else {
        text.to_owned()
    }
}

/// Differences of one expression, as report lines.
fn differences(prelude: &Prelude, expr: &str, inputs: &[Value]) -> Vec<String> {
    let jq_syntax = convert_single_quotes(expr);
    let jaq = JqProgram::compile_with(prelude, expr);
    let jq = run_jq(&jq_syntax, inputs);
    match (jaq, jq) {
        (Err(e), Ok(_)) => vec![format!("`{expr}`: jq compiles it, jaq does not: {e}")],
        (Ok(_), Err(e))
            if NEWER_THAN_JQ_1_6
                .iter()
                .any(|name| e.contains(&format!("{name}/0 is not defined"))) =>
        {
            Vec::new()
        }
        (Ok(_), Err(e)) => vec![format!("`{expr}`: jaq compiles it, jq does not: {e}")],
        (Err(_), Err(_)) => Vec::new(),
        (Ok(program), Ok(jq_out)) => {
            let jaq_out = run_jaq(&program, inputs);
            let differing: Vec<_> = jaq_out
                .iter()
                .zip(&jq_out)
                .zip(inputs)
                .filter(|((a, b), _)| !same(a, b))
                .collect();
            match differing.first() {
                None => Vec::new(),
                Some(((a, b), input)) => vec![format!(
                    "`{expr}` differs on {} of {} inputs, e.g. on {}: jaq {}, jq {}",
                    differing.len(),
                    inputs.len(),
                    clip(&input.to_string()),
                    clip(&format!("{a:?}")),
                    clip(&format!("{b:?}")),
                )],
            }
        }
    }
}

fn assert_no_differences(exprs: &[String]) {
    let prelude = Prelude::new();
    let inputs = inputs();
    let mut report = Vec::new();
    for expr in exprs {
        report.extend(differences(&prelude, expr, &inputs));
    }
    assert!(
        report.is_empty(),
        "{} differences between jaq and jq over {} expressions × {} inputs:\n{}",
        report.len(),
        exprs.len(),
        inputs.len(),
        report.join("\n")
    );
}

#[test]
fn jq_binary_is_installed() {
    let out = Command::new("jq").arg("--version").output().unwrap_or_else(|e| {
        panic!("the `jq` binary is not installed ({e}): run scripts/test.sh or `apt-get install jq`")
    });
    assert!(out.status.success(), "`jq --version` failed");
}

#[test]
fn reference_mapping_expressions_match_jq() {
    let exprs = reference_expressions();
    assert!(exprs.len() > 60, "only {} expressions found", exprs.len());
    assert_no_differences(&exprs);
}

#[test]
fn user_expression_corpus_matches_jq() {
    let exprs: Vec<String> = CORPUS.iter().map(|e| (*e).to_owned()).collect();
    assert_no_differences(&exprs);
}

#[test]
fn known_differences_still_differ() {
    let prelude = Prelude::new();
    let inputs = inputs();
    for expr in KNOWN_DIFFERENCES {
        assert!(
            !differences(&prelude, expr, &inputs).is_empty(),
            "`{expr}` now gives the same output in jaq and jq: remove it from KNOWN_DIFFERENCES \
             and from the README's list of differences"
        );
    }
}

/// The comparison itself can fail: a real difference is reported.
#[test]
fn a_difference_is_detected() {
    let prelude = Prelude::new();
    let inputs = [serde_json::json!({"a": 1})];
    // same program text, but jq's `env` sees an empty environment while `$__loc__` differs
    assert!(differences(&prelude, ".a", &inputs).is_empty());
    let jq_only = differences(&prelude, "nosuchbuiltin_in_either", &inputs);
    assert!(jq_only.is_empty(), "both refuse it: {jq_only:?}");
    // `getpath/1` on a non-container: compare a constructed mismatch
    assert!(!same(
        &Outcome::First(Some(serde_json::json!(1))),
        &Outcome::First(Some(serde_json::json!("1")))
    ));
    assert!(!same(&Outcome::First(None), &Outcome::Error));
}
