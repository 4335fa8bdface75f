//! The pipeline, build, test and security kinds against the Azure DevOps simulator:
//! `pipeline` with `includeRepo`, `build` with `enrichWithFirstCommit`, `pipeline-run`,
//! `pipeline-stage`, `pipeline-deployment`, `test-run` (results and code coverage) and
//! `advanced-security-alert` (criteria, repositories without Advanced Security), across page
//! boundaries, and a 403 project marking each kind failed.

use std::collections::{BTreeMap, HashMap};

use adoport_ingest::KindPlan;
use adoport_sim::ScriptedAnswer;
use adoport_sim::ado::AdoSimConfig;
use adoport_sim::ado::pipelines::{
    BUILDS_PER_PIPELINE, ENVIRONMENTS_PER_PROJECT, PIPELINES_PER_PROJECT,
};
use adoport_sim::ado::runs::{
    DEPLOYMENTS_PER_ENVIRONMENT, RESULTS_PER_TEST_RUN, TEST_RUNS_PER_PROJECT,
};
use adoport_sim::ado::security::ALERTS_PER_REPOSITORY;
use serde_json::{Value, json};

mod support;

use support::crawl::{CrawlHarness, counted, crawl_harness, failure, pages, plan};

/// Projects the default simulator seeds.
const PROJECTS: u64 = 3;
const BUILDS_PER_PROJECT: u64 = PIPELINES_PER_PROJECT * BUILDS_PER_PIPELINE;

/// Pages of 2 cross the page boundary of every list the simulator seeds with 3 or more.
async fn harness() -> CrawlHarness {
    crawl_harness(
        AdoSimConfig::default(),
        "sim-pat",
        "kinds-runs.",
        |crawler| crawler.with_limits(pages(2)),
    )
    .await
}

/// [`harness`], and the items of a crawl of `plan` no kind of which failed.
async fn crawled(plan: &[KindPlan]) -> (CrawlHarness, BTreeMap<String, Vec<Value>>) {
    let h = harness().await;
    let items = h.crawl_ok(plan).await;
    (h, items)
}

#[tokio::test]
async fn pipeline_runs_stages_and_deployments_carry_their_context() {
    let (h, items) = crawled(&[
        plan("pipeline-run", json!({})),
        plan("pipeline-stage", json!({})),
        plan("pipeline-deployment", json!({})),
    ])
    .await;

    let runs = counted(&items, "pipeline-run", PROJECTS * BUILDS_PER_PROJECT);
    for run in runs {
        assert_eq!(run["__pipeline"]["id"], run["pipeline"]["id"], "{run}");
        assert!(run["__project"]["name"].is_string());
        assert!(run["state"].is_string() && run["createdDate"].is_string());
    }

    // Two stages (Build, Deploy) per build; the Phase and Job records are left out.
    let stages = counted(&items, "pipeline-stage", PROJECTS * BUILDS_PER_PROJECT * 2);
    for stage in stages {
        assert_eq!(stage["type"], "Stage");
        assert_eq!(stage["__build"]["project"]["id"], stage["__project"]["id"]);
        assert!(stage["__build"]["id"].is_number() && stage["name"].is_string());
    }
    assert!(stages.iter().any(|s| s["result"] == "skipped"));

    let deployments = counted(
        &items,
        "pipeline-deployment",
        PROJECTS * ENVIRONMENTS_PER_PROJECT * DEPLOYMENTS_PER_ENVIRONMENT,
    );
    for deployment in deployments {
        assert_eq!(deployment["__project"]["id"], deployment["scopeId"]);
        assert!(deployment["stageName"].is_string() && deployment["planType"].is_string());
    }

    // 6 builds per project in pages of 2: 3 build pages, one timeline per build; 3 records
    // per environment in pages of 2 (`top`): 2 requests each.
    h.assert_requests("GET /{org}/{project}/_apis/build/builds", 9);
    h.assert_requests(
        "GET /{org}/{project}/_apis/build/builds/{buildId}/timeline",
        PROJECTS * BUILDS_PER_PROJECT,
    );
    h.assert_requests(
        "GET /{org}/{project}/_apis/pipelines/{pipelineId}/runs",
        PROJECTS * PIPELINES_PER_PROJECT,
    );
    h.assert_requests(
        "GET /{org}/{project}/_apis/distributedtask/environments/{environmentId}/environmentdeploymentrecords",
        PROJECTS * ENVIRONMENTS_PER_PROJECT * 2,
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn pipelines_get_their_own_repository_even_when_a_definition_is_gone() {
    let h = harness().await;
    // One definition disappears between the pipeline list and its read.
    // Azure DevOps says so (a 404 that does not name the definition fails the kind).
    h.sim.not_found_after(
        "GET /{org}/{project}/_apis/build/definitions/{definitionId}",
        0,
        "The definition with id 1 could not be found.",
        "Microsoft.TeamFoundation.Build.WebApi.DefinitionNotFoundException, Microsoft.TeamFoundation.Build2.WebApi",
    );
    let items = h
        .crawl_ok(&[
            plan("pipeline", json!({"includeRepo": true})),
            plan("build", json!({})),
        ])
        .await;

    // The repository each pipeline builds, as its builds report it.
    let mut built: HashMap<(String, u64), Value> = HashMap::new();
    for build in &items["build"] {
        let key = (
            build["__projectId"].as_str().expect("project").to_string(),
            build["definition"]["id"].as_u64().expect("definition"),
        );
        built.insert(key, build["repository"]["id"].clone());
    }
    let pipelines = counted(&items, "pipeline", PROJECTS * PIPELINES_PER_PROJECT);
    let without: Vec<&Value> = pipelines
        .iter()
        .filter(|p| p.get("__repository").is_none())
        .collect();
    assert_eq!(
        without.len(),
        1,
        "only the pipeline whose definition is gone"
    );
    for pipeline in pipelines.iter().filter(|p| p.get("__repository").is_some()) {
        let key = (
            pipeline["__projectId"]
                .as_str()
                .expect("project")
                .to_string(),
            pipeline["id"].as_u64().expect("id"),
        );
        assert_eq!(
            pipeline["__repository"]["id"], built[&key],
            "pipeline {key:?} got another pipeline's repository"
        );
        assert_eq!(pipeline["__repository"]["project"]["id"], key.0.as_str());
        assert_eq!(pipeline["__repository"]["type"], "TfsGit");
    }
    // Pipelines and definitions of the 2nd project build different repositories, so a
    // misaligned list would have been caught above.
    let distinct: std::collections::HashSet<String> =
        built.values().map(|v| v.to_string()).collect();
    assert!(distinct.len() as u64 > PROJECTS);

    // Without the option, no definition is read.
    let before = h.requests("GET /{org}/{project}/_apis/build/definitions/{definitionId}");
    let (_, items) = h.crawl(&[plan("pipeline", json!({}))]).await;
    assert!(
        items["pipeline"]
            .iter()
            .all(|p| p.get("__repository").is_none())
    );
    h.assert_requests(
        "GET /{org}/{project}/_apis/build/definitions/{definitionId}",
        before,
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn builds_carry_their_earliest_commit_or_their_source_commit() {
    let (h, items) = crawled(&[plan("build", json!({"enrichWithFirstCommit": "true"}))]).await;
    let builds = counted(&items, "build", PROJECTS * BUILDS_PER_PROJECT);
    for build in builds {
        let id = build["id"].as_u64().expect("id");
        let first = &build["__firstCommit"];
        // The simulator gives build `id` `id % 4` changes, newest first.
        let changes = id % 4;
        if changes == 0 {
            // No changes: the commit the build ran on.
            assert_eq!(first["__sha"], build["sourceVersion"], "{build}");
            assert_eq!(first["__commitCount"], 1);
            assert_eq!(first["__timestamp"], first["committer"]["date"]);
        } else {
            assert_eq!(first["__commitCount"], changes, "{first}");
            assert_eq!(
                first["message"],
                format!("Change {changes} built by build {id}"),
                "the earliest change, which is listed last"
            );
            assert_eq!(first["__sha"], first["id"]);
            assert_eq!(first["__timestamp"], first["timestamp"]);
        }
    }
    // Changes of builds 1..6 (1, 2, 3, 0, 1, 2 of them) in pages of 2: 7 requests a project;
    // one commit read for build 4.
    h.assert_requests(
        "GET /{org}/{project}/_apis/build/builds/{buildId}/changes",
        PROJECTS * 7,
    );
    h.assert_requests(
        "GET /{org}/{project}/_apis/git/repositories/{repository}/commits/{commitId}",
        PROJECTS,
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn test_runs_carry_every_result_and_their_build_coverage() {
    let (h, items) = crawled(&[plan("test-run", json!({"codeCoverage": {"flags": 2}}))]).await;
    let runs = counted(&items, "test-run", PROJECTS * TEST_RUNS_PER_PROJECT);
    for run in runs {
        let results = run["__testResults"].as_array().expect("results");
        assert_eq!(
            results.len() as u64,
            RESULTS_PER_TEST_RUN,
            "every page of $skip"
        );
        let run_id = run["id"].to_string();
        assert!(
            results
                .iter()
                .all(|r| r["testRun"]["id"] == run_id.as_str())
        );
        assert!(run["totalTests"].is_number(), "run details included");
        if run.get("build").is_some() {
            let module = &run["__codeCoverage"]["value"][0]["modules"][0];
            assert!(module["statistics"]["linesCovered"].is_number(), "{run}");
            assert!(module["functions"].is_array(), "flags passed on");
        } else {
            assert_eq!(run["__codeCoverage"], json!({}), "manual run");
        }
    }
    // Runs: a page of 2, then a short page of 1, the last (no request for an empty page);
    // results: 2 + a short page of 1 per run.
    h.assert_requests("GET /{org}/{project}/_apis/test/runs", PROJECTS * 2);
    h.assert_requests(
        "GET /{org}/{project}/_apis/test/runs/{runId}/results",
        PROJECTS * TEST_RUNS_PER_PROJECT * 2,
    );
    h.assert_requests(
        "GET /{org}/{project}/_apis/test/codecoverage",
        PROJECTS * (TEST_RUNS_PER_PROJECT - 1),
    );

    // `includeResults: false` and no coverage: the runs alone, with the fields empty as the
    // Python integration writes them.
    let before = h.requests("GET /{org}/{project}/_apis/test/runs/{runId}/results");
    let (_, items) = h
        .crawl(&[plan("test-run", json!({"includeResults": false}))])
        .await;
    assert!(
        items["test-run"]
            .iter()
            .all(|r| r["__testResults"] == json!([]) && r["__codeCoverage"] == json!({}))
    );
    h.assert_requests(
        "GET /{org}/{project}/_apis/test/runs/{runId}/results",
        before,
    );
    h.sim.shutdown().await;
}

/// Every `test-run` selector of a resync is fed from one listing of each project's runs; each
/// run's results are read once for all the selectors that ask for them, its coverage once per
/// distinct `flags`; and each selector publishes what it publishes crawled alone.
#[tokio::test]
async fn test_run_selectors_share_one_listing_and_each_read() {
    let selectors = [
        json!({"includeResults": false}),
        json!({"codeCoverage": {"flags": 2}}),
        json!({}),
        json!({"includeResults": false, "codeCoverage": {"flags": 7}}),
    ];
    let h = harness().await;
    let mut alone = BTreeMap::new();
    for (index, selector) in selectors.iter().enumerate() {
        let items = h.crawl_ok(&[plan("test-run", selector.clone())]).await;
        alone.insert(index as u32, by_id(&items["test-run"]));
    }
    let before = h.sim.requests();
    let together = (h.crawl_selectors_together("test-run", &selectors, id_of)).await;
    assert_eq!(together, alone);

    let made = |route: &str| {
        let all = h.sim.requests();
        all.get(route).copied().unwrap_or(0) - before.get(route).copied().unwrap_or(0)
    };
    // Runs: a page of 2 and a short page of 1 per project, once; results read once per run;
    // coverage once per run of a build for each of the two flags.
    assert_eq!(made("GET /{org}/{project}/_apis/test/runs"), PROJECTS * 2);
    assert_eq!(
        made("GET /{org}/{project}/_apis/test/runs/{runId}/results"),
        PROJECTS * TEST_RUNS_PER_PROJECT * 2
    );
    assert_eq!(
        made("GET /{org}/{project}/_apis/test/codecoverage"),
        2 * PROJECTS * (TEST_RUNS_PER_PROJECT - 1)
    );
    h.sim.shutdown().await;
}

/// Every `build` selector of a resync is fed from one listing of each project's builds, and
/// each publishes what it publishes crawled alone (`__firstCommit` as it asks).
#[tokio::test]
async fn build_selectors_share_one_listing() {
    const BUILDS: &str = "GET /{org}/{project}/_apis/build/builds";
    let selectors = [json!({"enrichWithFirstCommit": true}), json!({})];
    let h = harness().await;
    let mut alone = BTreeMap::new();
    let mut reads = Vec::new();
    for (index, selector) in selectors.iter().enumerate() {
        let before = h.sim.requests();
        let items = h.crawl_ok(&[plan("build", selector.clone())]).await;
        alone.insert(index as u32, by_id(&items["build"]));
        reads.push(made_since(&h, &before));
    }
    let before = h.sim.requests();
    let together = (h.crawl_selectors_together("build", &selectors, id_of)).await;
    assert_eq!(together, alone);
    assert!(
        together[&0]
            .values()
            .all(|b| b.get("__firstCommit").is_some())
    );
    // The listing of one selector alone, and the other reads of the enriching one.
    let made = made_since(&h, &before);
    assert_eq!(made[BUILDS], reads[1][BUILDS]);
    assert_eq!(made, reads[0]);
    h.sim.shutdown().await;
}

/// `build` and `pipeline-stage` in one resync list each project's builds once (each page
/// kept for the other until it took it), and each publishes exactly what it publishes crawled
/// alone; past the shared-read limit each lists them, and publishes the same.
#[tokio::test]
async fn build_and_pipeline_stage_share_the_builds_listing() {
    const BUILDS: &str = "GET /{org}/{project}/_apis/build/builds";
    let kinds = [
        ("build", json!({"enrichWithFirstCommit": true})),
        ("pipeline-stage", json!({})),
    ];
    let sorted = |items: &BTreeMap<String, Vec<Value>>, kind: &str| {
        let mut texts: Vec<String> = items[kind].iter().map(Value::to_string).collect();
        texts.sort();
        texts
    };
    // 6 builds a project in pages of 2: 3 pages a project, listed once or by each kind (with
    // one kind at a time, `build` keeps every page until `pipeline-stage` takes it).
    let kept = adoport_ingest::SHARED_READ_BYTES;
    for (limit, at_once, listed) in [(kept, 4, 9), (kept, 1, 9), (1, 4, 18)] {
        let h = crawl_harness(AdoSimConfig::default(), "sim-pat", "kinds-runs.", |c| {
            (c.with_limits(pages(2)).with_shared_read_bytes(limit)).with_concurrent_kinds(at_once)
        })
        .await;
        let mut alone = BTreeMap::new();
        let mut reads = BTreeMap::<String, u64>::new();
        for (kind, selector) in &kinds {
            let before = h.sim.requests();
            let items = h.crawl_ok(&[plan(kind, selector.clone())]).await;
            alone.insert(*kind, sorted(&items, kind));
            for (route, made) in made_since(&h, &before) {
                *reads.entry(route).or_default() += made;
            }
        }
        let before = h.sim.requests();
        let together = h.crawl_ok(&support::plans(&kinds)).await;
        for (kind, _) in &kinds {
            assert_eq!(
                sorted(&together, kind),
                alone[kind],
                "limit {limit}, {at_once} at once: {kind}"
            );
        }
        // Every read of the two alone, but the second listing when it is shared (and the
        // second projects list, shared by every kind of a resync).
        let made = made_since(&h, &before);
        assert_eq!(made[BUILDS], listed, "limit {limit}, {at_once} at once");
        reads.insert(BUILDS.to_string(), listed);
        reads.insert("GET /{org}/_apis/projects".to_string(), 1);
        assert_eq!(made, reads, "limit {limit}, {at_once} at once");
        h.sim.shutdown().await;
    }
}

/// Requests per route since `before`.
fn made_since(h: &CrawlHarness, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    (h.sim.requests().into_iter())
        .map(|(route, count)| {
            let made = count - before.get(&route).copied().unwrap_or(0);
            (route, made)
        })
        .filter(|(_, made)| *made > 0)
        .collect()
}

/// Items by their `id`.
fn by_id(items: &[Value]) -> BTreeMap<String, Value> {
    (items.iter())
        .map(|item| (id_of(item), item.clone()))
        .collect()
}

/// An item's `id`, as [`by_id`] keys it.
fn id_of(item: &Value) -> String {
    item["id"].to_string()
}

#[tokio::test]
async fn security_alerts_skip_repositories_without_advanced_security() {
    let h = harness().await;
    let repositories = h.sim.repositories();
    let healthy: Vec<&Value> = repositories
        .iter()
        .filter(|r| r["isDisabled"] != true)
        .collect();
    // The simulator turns Advanced Security on for enabled repositories at even positions.
    let enabled: Vec<&Value> = repositories
        .iter()
        .enumerate()
        .filter(|(i, r)| i % 2 == 0 && r["isDisabled"] != true)
        .map(|(_, r)| r)
        .collect();
    assert!(enabled.len() < healthy.len());

    // A 400 is not a failure.
    let items = h
        .crawl_ok(&[plan("advanced-security-alert", json!({}))])
        .await;
    let alerts = counted(
        &items,
        "advanced-security-alert",
        enabled.len() as u64 * ALERTS_PER_REPOSITORY,
    );
    for alert in alerts {
        let repository = enabled
            .iter()
            .find(|r| r["id"] == alert["__repositoryId"])
            .expect("an alert of a repository with Advanced Security");
        assert_eq!(alert["__projectId"], repository["project"]["id"]);
        assert!(alert["alertId"].is_number() && alert["severity"].is_string());
    }
    // 3 alerts in pages of 2 (`top`) per enabled repository, one 400 per other one.
    let route = "GET /{org}/{project}/_apis/alert/repositories/{repository}/alerts";
    h.assert_requests(
        route,
        enabled.len() as u64 * 2 + (healthy.len() - enabled.len()) as u64,
    );

    // Criteria filter on the server.
    let items = h.crawl_ok(&[plan(
            "advanced-security-alert",
            json!({"criteria": {"states": ["active"], "severity": ["critical", "high"], "alertType": "secret"}}),
        )]).await;
    let secrets = counted(&items, "advanced-security-alert", enabled.len() as u64);
    assert!(secrets.iter().all(|a| a["alertType"] == "secret"));

    // Any other error fails the kind.
    h.sim.fail_next(route, vec![ScriptedAnswer::status(409)]);
    let (report, _) = h.crawl(&[plan("advanced-security-alert", json!({}))]).await;
    let failure = failure(&report, "advanced-security-alert");
    assert!(failure.contains("409"), "{failure}");
    h.sim.shutdown().await;
}

#[tokio::test]
async fn a_forbidden_project_marks_each_new_kind_failed() {
    let h = harness().await;
    let forbidden = h.forbid_project(1);
    let kinds = [
        "pipeline-run",
        "pipeline-stage",
        "pipeline-deployment",
        "test-run",
        "advanced-security-alert",
    ];
    let (report, items) = h.crawl(&kinds.map(|k| plan(k, json!({})))).await;
    for kind in kinds {
        let failure = failure(&report, kind);
        assert!(failure.contains("403"), "{kind}: {failure}");
    }
    // The other projects were still read.
    let runs = counted(&items, "pipeline-run", (PROJECTS - 1) * BUILDS_PER_PROJECT);
    assert!(
        runs.iter()
            .all(|r| r["__project"]["id"] != forbidden.as_str())
    );
    assert_eq!(
        items["test-run"].len() as u64,
        (PROJECTS - 1) * TEST_RUNS_PER_PROJECT
    );
    h.sim.shutdown().await;
}
