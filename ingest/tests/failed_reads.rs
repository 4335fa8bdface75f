//! A read that fails mid-crawl fails its kind — a 404 included — so that reconciliation
//! deletes nothing on the strength of a partial read. A 404 means "none" only where Azure
//! DevOps says what is missing and its contract makes that "none": the unit's project or
//! repository gone, a path not in a repository, a deleted environment, a deleted test run, a
//! deleted team.

use adoport_ingest::CrawlLimits;
use adoport_sim::ado::AdoSimConfig;
use serde_json::json;

mod support;

use support::crawl::{CrawlHarness, crawl_harness, failure, pages, plan};

const RESULTS: &str = "GET /{org}/{project}/_apis/test/runs/{runId}/results";
const RELEASES: &str = "GET /{org}/{project}/_apis/release/releases";
const POLICIES: &str = "GET /{org}/{project}/_apis/policy/configurations";
const ITEMS: &str = "GET /{org}/{project}/_apis/git/repositories/{repository}/items";
const RECORDS: &str = "GET /{org}/{project}/_apis/distributedtask/environments/{environmentId}/environmentdeploymentrecords";

/// What Azure DevOps (or a proxy in front of it) answers for a resource it does not name.
const GENERIC: &str = "The requested resource was not found.";

async fn harness(config: AdoSimConfig, limits: CrawlLimits) -> CrawlHarness {
    crawl_harness(config, "sim-pat", "failed-reads.", |crawler| {
        crawler.with_limits(limits)
    })
    .await
}

fn one_project() -> AdoSimConfig {
    AdoSimConfig {
        projects: 1,
        ..AdoSimConfig::default()
    }
}

#[tokio::test]
async fn a_later_page_of_test_results_answering_404_fails_the_kind() {
    // Pages of 2: each run's 3 results take two pages.
    let h = harness(one_project(), pages(2)).await;
    h.crawl_ok(&[plan("test-run", json!({}))]).await;
    h.sim.not_found_after(RESULTS, 1, GENERIC, "");
    let (report, _) = h.crawl(&[plan("test-run", json!({}))]).await;
    let failure = failure(&report, "test-run");
    assert!(failure.contains("404"), "{failure}");
    h.sim.shutdown().await;
}

#[tokio::test]
async fn test_results_of_a_run_deleted_before_its_first_page_are_none() {
    // The Python integration keeps such a run with no results; so do we.
    let h = harness(one_project(), pages(2)).await;
    h.sim.not_found_after(
        RESULTS,
        0,
        "Test run 1 not found.",
        "Microsoft.TeamFoundation.TestManagement.WebApi.TestObjectNotFoundException, Microsoft.TeamFoundation.TestManagement.WebApi",
    );
    let items = h.crawl_ok(&[plan("test-run", json!({}))]).await;
    let runs = &items["test-run"];
    assert_eq!(runs.len(), 3);
    let empty = runs
        .iter()
        .filter(|r| r["__testResults"] == json!([]))
        .count();
    assert_eq!(empty, 1, "{runs:?}");
    h.sim.shutdown().await;
}

#[tokio::test]
async fn a_later_page_of_a_projects_listing_answering_404_fails_the_kind() {
    let config = AdoSimConfig {
        projects: 1,
        releases_per_project: 5,
        ..AdoSimConfig::default()
    };
    let h = harness(config, pages(2)).await;
    h.sim.not_found_after(RELEASES, 1, GENERIC, "");
    let (report, items) = h.crawl(&[plan("release", json!({}))]).await;
    let failure = failure(&report, "release");
    assert!(
        failure.contains("404") && failure.contains(GENERIC),
        "{failure}"
    );
    assert_eq!(items["release"].len(), 2, "the first page only");
    h.sim.shutdown().await;
}

#[tokio::test]
async fn a_project_deleted_between_the_list_and_its_read_is_skipped() {
    let h = harness(AdoSimConfig::default(), CrawlLimits::default()).await;
    h.sim.not_found_after(
        RELEASES,
        0,
        "TF200016: The following project does not exist: gone. Verify that the name of the project is correct and that the project exists on the specified Azure DevOps Server.",
        "Microsoft.TeamFoundation.Core.WebApi.ProjectDoesNotExistWithNameException, Microsoft.TeamFoundation.Core.WebApi",
    );
    let items = h.crawl_ok(&[plan("release", json!({}))]).await;
    assert_eq!(
        items["release"].len(),
        2 * 3,
        "the two other projects' releases"
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn a_projects_policy_listing_answering_404_fails_the_policy_kind() {
    // One listing serves every repository of the project: a 404 that does not say the project
    // is gone is no "no policies".
    let h = harness(AdoSimConfig::default(), CrawlLimits::default()).await;
    let read = h.crawl_ok(&[plan("repository-policy", json!({}))]).await;
    assert!(!read["repository-policy"].is_empty());
    h.sim.not_found_after(POLICIES, 1, GENERIC, "");
    let (report, _) = h.crawl(&[plan("repository-policy", json!({}))]).await;
    let failure = failure(&report, "repository-policy");
    assert!(failure.contains("404"), "{failure}");
    h.sim.shutdown().await;
}

#[tokio::test]
async fn one_repositorys_items_answering_404_fails_the_file_kind() {
    let h = harness(AdoSimConfig::default(), CrawlLimits::default()).await;
    let selector = json!({"files": {"path": "port.yml"}});
    let read = h.crawl_ok(&[plan("file", selector.clone())]).await;
    assert!(!read["file"].is_empty());
    h.sim.not_found_after(ITEMS, 0, GENERIC, "");
    let (report, _) = h.crawl(&[plan("file", selector)]).await;
    let failure = failure(&report, "file");
    assert!(failure.contains("404"), "{failure}");
    h.sim.shutdown().await;
}

#[tokio::test]
async fn a_path_a_repository_does_not_have_is_no_file() {
    let h = harness(AdoSimConfig::default(), CrawlLimits::default()).await;
    let items = h
        .crawl_ok(&[plan(
            "file",
            json!({"files": {"path": ["port.yml", "no/such/file.yml"]}}),
        )])
        .await;
    let paths: Vec<&str> = (items["file"].iter())
        .filter_map(|f| f["file"]["path"].as_str())
        .collect();
    assert!(
        !paths.is_empty() && paths.iter().all(|p| *p == "port.yml"),
        "{paths:?}"
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn one_repositorys_folder_listing_answering_404_fails_the_folder_kind() {
    let h = harness(AdoSimConfig::default(), CrawlLimits::default()).await;
    let selector = json!({"folders": [{"path": "src/*"}]});
    let read = h.crawl_ok(&[plan("folder", selector.clone())]).await;
    assert!(!read["folder"].is_empty());
    h.sim.not_found_after(ITEMS, 0, GENERIC, "");
    let (report, _) = h.crawl(&[plan("folder", selector)]).await;
    assert!(failure(&report, "folder").contains("404"));
    h.sim.shutdown().await;
}

#[tokio::test]
async fn deployment_records_end_on_a_deleted_environment_but_fail_on_any_other_404() {
    let h = harness(one_project(), CrawlLimits::default()).await;
    let all = h.crawl_ok(&[plan("pipeline-deployment", json!({}))]).await;
    let count = all["pipeline-deployment"].len();
    h.sim.not_found_after(
        RECORDS,
        0,
        "Environment 1 not found.",
        "Microsoft.TeamFoundation.DistributedTask.WebApi.EnvironmentNotFoundException, Microsoft.TeamFoundation.DistributedTask.WebApi",
    );
    let deleted = h.crawl_ok(&[plan("pipeline-deployment", json!({}))]).await;
    assert!(deleted["pipeline-deployment"].len() < count);
    h.sim.not_found_after(RECORDS, 0, GENERIC, "");
    let (report, _) = h.crawl(&[plan("pipeline-deployment", json!({}))]).await;
    assert!(failure(&report, "pipeline-deployment").contains("404"));
    h.sim.shutdown().await;
}

#[tokio::test]
async fn a_spec_read_answering_a_404_that_names_nothing_fails_gitops() {
    let h = harness(AdoSimConfig::default(), CrawlLimits::default()).await;
    let selector = json!({"specPath": ["port.yml"], "useDefaultBranch": true, "branch": "main"});
    h.crawl_ok(&[plan("gitops", selector.clone())]).await;
    h.sim.not_found_after(ITEMS, 0, GENERIC, "");
    let (report, _) = h.crawl(&[plan("gitops", selector)]).await;
    assert!(failure(&report, "gitops").contains("404"));
    h.sim.shutdown().await;
}

const BOARDS: &str = "GET /{org}/{project}/{team}/_apis/work/boards";

#[tokio::test]
async fn a_teams_boards_answering_a_404_that_names_nothing_fail_the_board_kind() {
    let h = harness(one_project(), CrawlLimits::default()).await;
    h.sim.not_found_after(BOARDS, 0, GENERIC, "");
    let (report, _) = h.crawl(&[plan("board", json!({}))]).await;
    let failure = failure(&report, "board");
    assert!(failure.contains("404"), "{failure}");
    h.sim.shutdown().await;
}

#[tokio::test]
async fn the_boards_of_a_team_deleted_between_the_list_and_the_read_are_none() {
    // The same organization read normally has boards.
    let normal = harness(one_project(), CrawlLimits::default()).await;
    let all = normal.crawl_ok(&[plan("board", json!({}))]).await["board"].len();
    assert!(all > 0, "the simulated project has boards");
    normal.sim.shutdown().await;
    let h = harness(one_project(), CrawlLimits::default()).await;
    h.sim.not_found_after(
        BOARDS,
        0,
        "The team with id 'x' does not exist.",
        "Microsoft.TeamFoundation.Core.WebApi.TeamNotFoundException, Microsoft.TeamFoundation.Core.WebApi",
    );
    let items = h.crawl_ok(&[plan("board", json!({}))]).await;
    // The kind succeeded (`crawl_ok`) with no board.
    assert!(items.get("board").is_none_or(|b| b.is_empty()), "{items:?}");
    h.sim.shutdown().await;
}
