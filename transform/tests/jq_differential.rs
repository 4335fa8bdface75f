//! jaq is not jq: this test measures the difference instead of guessing it.
//!
//! Every expression of the Azure DevOps mappings (the Python integration's default
//! port-app-config and its mapping example), of the default mappings of Port's other
//! integrations (`tests/fixtures/ocean-mappings`) and of a corpus of expressions users write is
//! run through our [`JqProgram`] (jaq + our prelude) and through libjq as the Python integration
//! runs it — the PyPI package `jq` 1.12.0, which its lock file pins — on the reference example
//! items, and the first outputs must be identical, object key order included (an error on one
//! side must be an error on the other; the messages may differ). The Python integration hides
//! the environment from jq, so libjq runs with an empty environment (`tests/libjq.py`).
//!
//! `python3` with that package must be installed (`scripts/test.sh` installs it): without it
//! this test fails.

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
const OTHER_MAPPINGS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/ocean-mappings"
);
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

/// The version of the PyPI package `jq` the Python integration locks (tests/libjq.py checks it).
const LIBJQ_VERSION: &str = "1.12.0";

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
    // object key order (jq keeps insertion order) and joins
    "keys_unsorted",
    "to_entries | map(.key)",
    "tojson",
    "\"\\(.)\"",
    "{z: 1, a: .id} | keys_unsorted",
    "del(.id) + {zz: 1} | keys_unsorted?",
    "with_entries(.) | keys_unsorted?",
    "to_entries? | from_entries | tojson",
    "del(.name, .id) | keys_unsorted?",
    "del(.[\"description\"]?) | keys_unsorted?",
    "{a: {x: 1, y: 2, z: 3}, b: [{p: 1, q: 2, r: 3}]} | del(.a.x, .b[0].p) | tojson",
    "[1, 2, 3, 4] | del(.[1, 2])",
    "[1, 2, 3, 4] | del(.[1:3])",
    "{a: 1} | del(.b.c)",
    "delpaths([[\"id\"], [\"name\"]]) | keys_unsorted?",
    "del(.[0])",
    ".storyPoints | tostring",
    "\"\\(.storyPoints) points\"",
    "[.storyPoints, .big] | tojson",
    "[\"a\", null] | join(\"-\")",
    "[.name, null, 1, true, 2.5] | join(\"/\")",
    "[.[]?] | join(\",\")",
    "[\"a\", \"b\"] | join(1)",
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
    // Slicing null: jq yields null, jaq fails.
    "null | .[:10]",
    ".missing[1:]",
    // Indexing an object with null: jq fails, jaq yields null.
    "{a: 1}[.missing]",
    // Not in jaq.
    "@base32",
];

/// Expressions of other integrations' default mappings that meet one of the core-language
/// differences above on our inputs (which lack their fields), with the difference they meet.
const OTHER_MAPPINGS_AT_KNOWN_DIFFERENCES: &[(&str, &str)] = &[
    (
        "(.actor.name // .actor.email // .actor.user_id) + \" - \" + .__starting_at[:10]",
        "slicing null",
    ),
    (
        ".actor.user_id + \"-\" + .__starting_at[:10] + \"-\" + (.product // \"all\") + \"-\" + (.model // \"all\")",
        "slicing null",
    ),
    (
        "{\"notbuilt\": \"created\", \"blue\": \"passing\", \"red\": \"failing\"}[.color]",
        "indexing an object with null",
    ),
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
        // Azure DevOps writes story points, effort and estimates as floats (`3.0`)
        serde_json::json!({"storyPoints": 3.0, "big": 1e20, "small": 0.00001}),
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

/// Every jq expression of the port-app-configs in `files`, each once.
fn mapping_file_expressions(files: &[std::path::PathBuf]) -> Vec<String> {
    let mut out = Vec::new();
    for path in files {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // only the resources: other integrations have root keys of their own
        let document: Value =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let resources = serde_json::json!({"resources": document["resources"]});
        let config = PortAppConfig::from_json_value(resources)
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

/// What libjq made of one expression: it refused it, or an outcome per input.
type LibJqAnswer = Result<Vec<Outcome>, String>;

/// Runs every expression (already in jq syntax) through libjq on every input, in one
/// `python3 tests/libjq.py` process (see that script for the protocol).
fn run_libjq(exprs: &[String], inputs: &[Value]) -> Vec<LibJqAnswer> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/libjq.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("python3 is needed to run libjq ({e}): run scripts/test.sh, which installs it")
        });
    let mut stdin = child.stdin.take().expect("stdin");
    let request = serde_json::json!({"exprs": exprs, "inputs": inputs}).to_string();
    let writer = std::thread::spawn(move || stdin.write_all(request.as_bytes()));
    let out = child.wait_with_output().expect("python3 runs");
    writer.join().expect("writer").expect("write to python3");
    assert!(
        out.status.success(),
        "tests/libjq.py failed: {}\nthe reference is the PyPI package jq {LIBJQ_VERSION} \
         (`python3 -m pip install jq=={LIBJQ_VERSION}`; scripts/test.sh installs it)",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let answers: Vec<Value> = serde_json::from_slice(&out.stdout).expect("libjq.py prints JSON");
    assert_eq!(
        answers.len(),
        exprs.len(),
        "libjq.py: one answer per expression"
    );
    answers
        .into_iter()
        .map(|answer| {
            if let Some(message) = answer.get("compile_error") {
                return Err(message.as_str().unwrap_or_default().to_owned());
            }
            let outcomes = answer["outcomes"].as_array().expect("outcomes");
            assert_eq!(
                outcomes.len(),
                inputs.len(),
                "libjq.py: one outcome per input"
            );
            Ok(outcomes
                .iter()
                .map(|o| match (o.get("first"), o.get("none")) {
                    (Some(first), _) => Outcome::First(Some(first.clone())),
                    (None, Some(_)) => Outcome::First(None),
                    (None, None) => Outcome::Error,
                })
                .collect())
        })
        .collect()
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

/// Both failed, both gave nothing, or both gave a value of the same JSON type.
fn same_kind(a: &Outcome, b: &Outcome) -> bool {
    fn kind(o: &Outcome) -> Option<std::mem::Discriminant<Value>> {
        match o {
            Outcome::First(Some(v)) => Some(std::mem::discriminant(v)),
            _ => None,
        }
    }
    std::mem::discriminant(a) == std::mem::discriminant(b) && kind(a) == kind(b)
}

fn clip(text: &str) -> String {
    if text.chars().count() > 70 {
        format!("{}…", text.chars().take(70).collect::<String>())
    } else {
        text.to_owned()
    }
}

/// Differences of each expression between jaq (with our prelude) and libjq, as report lines.
fn differences(exprs: &[String], inputs: &[Value]) -> Vec<String> {
    let prelude = Prelude::new();
    let jq_syntax: Vec<String> = exprs
        .iter()
        .map(|e| convert_single_quotes(e).into_owned())
        .collect();
    let libjq = run_libjq(&jq_syntax, inputs);
    let mut report = Vec::new();
    for (expr, libjq) in exprs.iter().zip(libjq) {
        let jaq = JqProgram::compile_with(&prelude, expr);
        match (jaq, libjq) {
            (Err(e), Ok(_)) => report.push(format!("`{expr}`: jq compiles it, jaq does not: {e}")),
            (Ok(_), Err(e)) => report.push(format!("`{expr}`: jaq compiles it, jq does not: {e}")),
            (Err(_), Err(_)) => {}
            (Ok(program), Ok(jq_out)) => {
                let jaq_out = run_jaq(&program, inputs);
                // `now` differs between two runs: only what kind of answer it gives can agree
                let compare = if expr.contains("now") {
                    same_kind
                } else {
                    same
                };
                let differing: Vec<_> = jaq_out
                    .iter()
                    .zip(&jq_out)
                    .zip(inputs)
                    .filter(|((a, b), _)| !compare(a, b))
                    .collect();
                if let Some(((a, b), input)) = differing.first() {
                    report.push(format!(
                        "`{expr}` differs on {} of {} inputs, e.g. on {}: jaq {}, jq {}",
                        differing.len(),
                        inputs.len(),
                        clip(&input.to_string()),
                        clip(&format!("{a:?}")),
                        clip(&format!("{b:?}")),
                    ));
                }
            }
        }
    }
    report
}

fn assert_no_differences(exprs: &[String]) {
    let inputs = inputs();
    let report = differences(exprs, &inputs);
    assert!(
        report.is_empty(),
        "{} differences between jaq and libjq {LIBJQ_VERSION} over {} expressions × {} inputs:\n{}",
        report.len(),
        exprs.len(),
        inputs.len(),
        report.join("\n")
    );
}

#[test]
fn azure_devops_mapping_expressions_match_libjq() {
    let exprs = mapping_file_expressions(&[
        Path::new(REFERENCE).join("port-app-config.yaml"),
        Path::new(REFERENCE).join("mapping-example/example-mappings.yaml"),
    ]);
    assert!(exprs.len() > 60, "only {} expressions found", exprs.len());
    assert_no_differences(&exprs);
}

/// The default mappings of Port's other integrations: a corpus of the jq users really write.
#[test]
fn other_integrations_mapping_expressions_match_libjq() {
    let mut files: Vec<_> = std::fs::read_dir(OTHER_MAPPINGS)
        .expect("tests/fixtures/ocean-mappings")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() > 40, "only {} mappings found", files.len());
    let mut exprs = mapping_file_expressions(&files);
    assert!(exprs.len() > 1000, "only {} expressions found", exprs.len());
    let inputs = inputs();
    for (expr, difference) in OTHER_MAPPINGS_AT_KNOWN_DIFFERENCES {
        assert!(
            exprs.iter().any(|e| e == expr),
            "`{expr}` is no longer in the mappings: remove it from OTHER_MAPPINGS_AT_KNOWN_DIFFERENCES"
        );
        assert!(
            !differences(&[(*expr).to_owned()], &inputs).is_empty(),
            "`{expr}` ({difference}) now agrees: remove it from OTHER_MAPPINGS_AT_KNOWN_DIFFERENCES"
        );
    }
    exprs.retain(|e| {
        !OTHER_MAPPINGS_AT_KNOWN_DIFFERENCES
            .iter()
            .any(|(known, _)| known == e)
    });
    assert_no_differences(&exprs);
}

#[test]
fn user_expression_corpus_matches_libjq() {
    let exprs: Vec<String> = CORPUS.iter().map(|e| (*e).to_owned()).collect();
    assert_no_differences(&exprs);
}

#[test]
fn known_differences_still_differ() {
    let inputs = inputs();
    for expr in KNOWN_DIFFERENCES {
        assert!(
            !differences(&[(*expr).to_owned()], &inputs).is_empty(),
            "`{expr}` now gives the same output in jaq and libjq: remove it from \
             KNOWN_DIFFERENCES and from the README's list of differences"
        );
    }
}

/// The comparison itself can fail: a real difference is reported.
#[test]
fn a_difference_is_detected() {
    let inputs = [serde_json::json!({"a": 1, "b": 2})];
    let exprs = |list: &[&str]| -> Vec<String> { list.iter().map(|e| (*e).to_owned()).collect() };
    assert!(differences(&exprs(&[".a", "keys_unsorted"]), &inputs).is_empty());
    // both refuse it: no difference
    assert!(differences(&exprs(&["nosuchbuiltin_in_either"]), &inputs).is_empty());
    // only jaq knows our prelude's own names: a difference
    assert_eq!(
        differences(&exprs(&["_jaq_delpaths([])"]), &inputs).len(),
        1
    );
    assert!(!same(
        &Outcome::First(Some(serde_json::json!(1))),
        &Outcome::First(Some(serde_json::json!("1")))
    ));
    assert!(!same(&Outcome::First(None), &Outcome::Error));
    // object key order counts, as jq keeps it
    assert!(!same(
        &Outcome::First(Some(serde_json::json!({"a": 1, "b": 2}))),
        &Outcome::First(Some(serde_json::json!({"b": 2, "a": 1})))
    ));
}
