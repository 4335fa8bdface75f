//! The crawler against the Azure DevOps simulator, kind by kind: items, enrichment fields,
//! page boundaries, 403 for one project, a bad PAT, a 429 storm and suspiciously empty answers.

use std::time::Duration;

use adoport_ingest::{CrawlFence, CrawlLimits, CrawlStamp};
use adoport_shared::messages::ResyncId;
use adoport_sim::ScriptedAnswer;
use adoport_sim::ado::AdoSimConfig;
use serde_json::{Value, json};

mod support;

use support::crawl::{CrawlHarness, counted, crawl_harness, failure, pages, plan};

async fn harness(config: AdoSimConfig, pat: &str, limits: CrawlLimits) -> CrawlHarness {
    crawl_harness(config, pat, "kinds.", |crawler| crawler.with_limits(limits)).await
}

fn default_config() -> AdoSimConfig {
    AdoSimConfig::default()
}

/// One project of `work_items` work items.
fn one_project(work_items: usize) -> AdoSimConfig {
    AdoSimConfig {
        projects: 1,
        work_items_per_project: work_items,
        ..AdoSimConfig::default()
    }
}

#[tokio::test]
async fn repositories_carry_included_files_from_the_default_branch() {
    let h = harness(default_config(), "sim-pat", CrawlLimits::default()).await;
    let items = h
        .crawl_ok(&[plan(
            "repository",
            json!({"includedFiles": ["README.md", "CODEOWNERS"]}),
        )])
        .await;
    let repositories = counted(&items, "repository", 12);
    for repository in repositories {
        let files = &repository["__includedFiles"];
        let readme = &files["README.md"];
        if repository.get("defaultBranch").is_some() {
            let name = repository["name"].as_str().expect("name");
            assert!(
                readme.as_str().is_some_and(|r| r.contains(name)),
                "{repository}"
            );
        } else {
            // As the Python integration writes a file it cannot find: "", not null.
            assert_eq!(readme, &json!(""), "empty repository has no README");
        }
        assert!(
            files["CODEOWNERS"].is_string(),
            "key present, a string even when missing: {repository}"
        );
    }
    fn codeowners(repository: &Value) -> Option<&str> {
        repository["__includedFiles"]["CODEOWNERS"].as_str()
    }
    assert!(
        repositories
            .iter()
            .any(|r| codeowners(r).is_some_and(|c| !c.is_empty()))
    );
    assert!(
        repositories.iter().any(|r| codeowners(r) == Some("")),
        "a repository without CODEOWNERS reads as \"\""
    );
    h.sim.shutdown().await;
}

/// Requests on the items route so far.
fn item_requests(h: &CrawlHarness) -> u64 {
    h.sim
        .requests()
        .get("GET /{org}/{project}/_apis/git/repositories/{repository}/items")
        .copied()
        .unwrap_or(0)
}

#[tokio::test]
async fn several_included_files_of_a_folder_are_listed_first_and_only_the_existing_read() {
    let h = harness(default_config(), "sim-pat", CrawlLimits::default()).await;
    let two = json!({"includedFiles": ["README.md", "CODEOWNERS"]});
    let read = h.crawl_ok(&[plan("repository", two)]).await;
    let before = item_requests(&h);
    let four = json!({"includedFiles": ["README.md", "CODEOWNERS", "none.txt", "/nothing.md"]});
    let listed = h.crawl_ok(&[plan("repository", four)]).await;
    // 11 repositories with a default branch: one listing each, then their README.md and the
    // 6 CODEOWNERS (even repositories) — not 44 reads.
    assert_eq!(item_requests(&h) - before, 11 + 11 + 6);
    let by_id = |items: &[Value]| -> std::collections::BTreeMap<String, Value> {
        (items.iter())
            .map(|r| {
                (
                    r["id"].as_str().unwrap_or_default().to_string(),
                    r["__includedFiles"].clone(),
                )
            })
            .collect()
    };
    let (read, listed) = (by_id(&read["repository"]), by_id(&listed["repository"]));
    assert_eq!(read.len(), 12);
    for (id, files) in &listed {
        assert_eq!(files["README.md"], read[id]["README.md"], "{id}");
        assert_eq!(files["CODEOWNERS"], read[id]["CODEOWNERS"], "{id}");
        assert_eq!(files["none.txt"], json!(""), "{id}");
        assert_eq!(files["/nothing.md"], json!(""), "{id}");
    }
    // A folder that does not exist holds none of them: one request per repository.
    let before = item_requests(&h);
    let missing = json!({"includedFiles": ["gone/a.md", "gone/b.md", "gone/c.md"]});
    let items = h.crawl_ok(&[plan("repository", missing)]).await;
    assert_eq!(item_requests(&h) - before, 11);
    assert!(
        items["repository"]
            .iter()
            .all(|r| r["__includedFiles"]["gone/b.md"] == json!(""))
    );
    h.sim.shutdown().await;
}

/// Policies of every scope Azure DevOps has (project-wide, project-level branch, default
/// branch, prefix, repository-wide, several entries) are read once per project and published
/// for exactly the repositories that `git/policy/configurations?repositoryId=&refName=<default
/// branch>` (what the Python integration reads per repository) answers them for.
#[tokio::test]
async fn policies_of_every_scope_go_to_the_repositories_the_per_repository_read_names() {
    let h = harness(default_config(), "sim-pat", CrawlLimits::default()).await;
    let repositories: Vec<Value> = h
        .sim
        .repositories()
        .into_iter()
        .filter(|r| r["isDisabled"] != json!(true))
        .collect();
    let mut projects: Vec<&str> = repositories
        .iter()
        .filter_map(|r| r["project"]["id"].as_str())
        .collect();
    projects.dedup();
    for project in &projects {
        let with_branch: Vec<&str> = repositories
            .iter()
            .filter(|r| r["project"]["id"] == json!(project) && r["defaultBranch"].is_string())
            .filter_map(|r| r["id"].as_str())
            .collect();
        let (one, other) = (with_branch[0], with_branch[1]);
        let scopes = [
            json!([{"repositoryId": null}]),
            json!([{"repositoryId": null, "refName": "refs/heads/main", "matchKind": "Exact"}]),
            json!([{"repositoryId": null, "refName": "refs/heads/dev", "matchKind": "Exact"}]),
            json!([{"repositoryId": null, "refName": null, "matchKind": "DefaultBranch"}]),
            json!([{"repositoryId": one, "refName": "refs/heads/ma", "matchKind": "Prefix"}]),
            json!([{"repositoryId": one, "refName": "refs/heads/release/", "matchKind": "Prefix"}]),
            json!([{"repositoryId": other}]),
            json!([{"repositoryId": other, "refName": "refs/heads/dev", "matchKind": "Exact"},
                   {"repositoryId": one.to_uppercase(), "refName": "REFS/HEADS/MAIN", "matchKind": "Exact"}]),
        ];
        for (scope, n) in scopes.into_iter().zip(1..) {
            h.sim.add_policy(project, &format!("scope {n}"), scope);
        }
    }
    let items = h.crawl_ok(&[plan("repository-policy", json!({}))]).await;
    let pair =
        |p: &Value, repository: &str| (repository.to_string(), p["id"].as_u64().unwrap_or(0));
    let mut published: Vec<(String, u64)> = items["repository-policy"]
        .iter()
        .map(|p| pair(p, p["__repository"]["id"].as_str().unwrap_or_default()))
        .collect();
    published.sort();

    let http = reqwest::Client::new();
    let mut per_repository = Vec::new();
    for repository in &repositories {
        let id = repository["id"].as_str().expect("repository id");
        let mut query = vec![("repositoryId", id.to_string())];
        if let Some(branch) = repository["defaultBranch"].as_str() {
            query.push(("refName", branch.to_string()));
        }
        let url = format!(
            "{}/{}/_apis/git/policy/configurations",
            h.sim.organization_url(),
            repository["project"]["id"].as_str().expect("project id")
        );
        let answer: Value = http
            .get(url)
            .basic_auth("", Some("sim-pat"))
            .query(&query)
            .send()
            .await
            .expect("policies read")
            .json()
            .await
            .expect("policies JSON");
        let values = answer["value"].as_array().expect("value");
        per_repository.extend(values.iter().map(|p| pair(p, id)));
    }
    per_repository.sort();
    assert_eq!(published, per_repository);

    // Each scope reached the repositories it names, and only those.
    let added = |repository: &str| -> Vec<u64> {
        published
            .iter()
            .filter(|(r, id)| r == repository && *id >= 100_000)
            .map(|(_, id)| (id - 100_000) % 8 + 1)
            .collect()
    };
    let first_project: Vec<&Value> = repositories
        .iter()
        .filter(|r| r["project"]["id"] == json!(projects[0]))
        .collect();
    let with_branch: Vec<&str> = first_project
        .iter()
        .filter(|r| r["defaultBranch"].is_string())
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(added(with_branch[0]), vec![1, 2, 4, 5, 8]);
    assert_eq!(added(with_branch[1]), vec![1, 2, 4, 7]);
    assert_eq!(added(with_branch[2]), vec![1, 2, 4]);
    // The empty repository (no default branch) is read without `refName`: every scope of it.
    let empty = repositories
        .iter()
        .find(|r| !r["defaultBranch"].is_string())
        .and_then(|r| r["id"].as_str())
        .expect("an empty repository");
    assert_eq!(added(empty), vec![1, 2, 3, 4]);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn policies_boards_columns_work_items_and_releases_are_enriched() {
    let h = harness(default_config(), "sim-pat", CrawlLimits::default()).await;
    let items = h
        .crawl_ok(&[
            plan("repository-policy", json!({})),
            plan("board", json!({})),
            plan("column", json!({})),
            plan(
                "work-item",
                json!({"wiql": "[System.State] <> 'Removed'", "expand": "All"}),
            ),
            plan("release", json!({})),
            plan("team", json!({})),
            plan(
                "pull-request",
                json!({"minTimeInDays": 36500, "maxResults": 100}),
            ),
        ])
        .await;

    // Policies: two per healthy repository with a default branch (12 - disabled - empty).
    let policies = counted(&items, "repository-policy", 20);
    assert!(policies.iter().all(|p| p["__repository"]["id"].is_string()));
    // Read per project, each published for the repository its scope names.
    assert!(
        policies
            .iter()
            .all(|p| p["settings"]["scope"][0]["repositoryId"] == p["__repository"]["id"])
    );
    assert!(policies.iter().any(
        |p| p["type"]["displayName"] == "Minimum number of reviewers"
            && p["settings"]["minimumApproverCount"].is_number()
    ));

    // Boards: one per project (its default team), with `__project` and columns.
    let boards = counted(&items, "board", 3);
    assert!(boards.iter().all(|b| b["__project"]["id"].is_string()
        && b["columns"].is_array()
        && b["url"].is_string()));

    // Columns: 4 columns × 2 work item types per board; the board is carried whole.
    let columns = counted(&items, "column", 3 * 4 * 2);
    assert!(
        columns
            .iter()
            .all(|c| c["__board"]["__project"]["id"].is_string()
                && c["__stateType"].is_string()
                && c["__stateName"].is_string()
                && c["name"].is_string())
    );

    // Work items: 6 per project, with project context and the expanded fields.
    let work_items = counted(&items, "work-item", 18);
    for item in work_items {
        assert_eq!(item["__projectId"], item["__project"]["id"]);
        assert!(item["fields"]["System.Title"].is_string());
        assert!(item["_links"].is_object(), "expand=All gives links");
    }

    let releases = counted(&items, "release", 9);
    assert!(
        releases
            .iter()
            .all(|r| r["projectReference"]["id"].is_string()
                && r["_links"]["web"]["href"].is_string())
    );

    assert_eq!(items["team"].len(), 3);
    assert_eq!(items["pull-request"].len(), 20);
    // The board list was read once and shared with the column kind.
    h.assert_requests("GET /{org}/{project}/{team}/_apis/work/boards/{board}", 3);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn work_items_page_by_id_range_and_batch_by_200() {
    let config = AdoSimConfig {
        wiql_max_results: 300,
        ..one_project(450)
    };
    // Page of 225: 450 = 2 full pages, then one empty query that ends it.
    let limits = CrawlLimits {
        wiql_page: 225,
        page: 2,
        ..CrawlLimits::default()
    };
    let h = harness(config, "sim-pat", limits).await;
    let items = h
        .crawl_ok(&[plan("work-item", json!({})), plan("release", json!({}))])
        .await;
    let mut ids: Vec<u64> = items["work-item"]
        .iter()
        .filter_map(|i| i["id"].as_u64())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 450, "every work item exactly once");
    h.assert_requests("POST /{org}/{project}/_apis/wit/wiql", 3);
    // 225 ids → batches of 200 + 25, twice.
    h.assert_requests("POST /{org}/{project}/_apis/wit/workitemsbatch", 4);
    // 3 releases with pages of 2: two pages, no third request.
    assert_eq!(items["release"].len(), 3);
    h.assert_requests("GET /{org}/{project}/_apis/release/releases", 2);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn a_forbidden_project_is_skipped_and_marks_the_kind_failed() {
    let h = harness(default_config(), "sim-pat", CrawlLimits::default()).await;
    let forbidden = h.forbid_project(1);
    let (report, items) = h.crawl(&[plan("work-item", json!({}))]).await;
    let failure = failure(&report, "work-item");
    assert!(failure.contains("403"), "{failure}");
    // The other two projects were still read.
    assert_eq!(items["work-item"].len(), 12);
    assert!(
        items["work-item"]
            .iter()
            .all(|i| i["__projectId"] != forbidden.as_str())
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn a_bad_pat_stops_the_crawl_with_a_message_that_says_so() {
    let h = harness(default_config(), "wrong-pat", CrawlLimits::default()).await;
    let error = h
        .crawler
        .crawl(ResyncId::new(), &[plan("work-item", json!({}))])
        .await
        .expect_err("a refused token stops the crawl");
    let message = error.to_string();
    assert!(message.contains("PERSONAL_ACCESS_TOKEN"), "{message}");
    h.sim.shutdown().await;
}

#[tokio::test]
async fn a_429_storm_with_retry_after_is_waited_out() {
    let h = harness(default_config(), "sim-pat", CrawlLimits::default()).await;
    h.sim.fail_next(
        "POST /{org}/{project}/_apis/wit/workitemsbatch",
        vec![ScriptedAnswer::rate_limited(1); 3],
    );
    let started = std::time::Instant::now();
    let items = h.crawl_ok(&[plan("work-item", json!({}))]).await;
    assert_eq!(items["work-item"].len(), 18);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert!(
        h.crawler
            .client()
            .stats()
            .retried
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn an_empty_answer_after_a_full_one_is_suspicious_until_confirmed() {
    let h = harness(one_project(2), "sim-pat", CrawlLimits::default()).await;
    let work_items = [plan("work-item", json!({}))];
    let (first, _) = h.crawl(&work_items).await;
    assert_eq!(first.kinds["work-item"].items, 2);
    assert!(h.sim.remove_work_item(1) && h.sim.remove_work_item(2));
    let (second, _) = h.crawl(&work_items).await;
    let failure = failure(&second, "work-item");
    assert!(failure.contains("no items"), "{second:?}");
    let (third, _) = h.crawl(&work_items).await;
    assert_eq!(third.kinds["work-item"].failure, None, "confirmed empty");
    h.sim.shutdown().await;
}

#[tokio::test]
async fn pipelines_builds_environments_release_definitions_deployments_and_branches() {
    // Pages of 2 cross the page boundary of every list (6 builds, 3 deployments per project).
    let h = harness(default_config(), "sim-pat", pages(2)).await;
    let items = h
        .crawl_ok(&[
            plan("pipeline", json!({})),
            plan("build", json!({})),
            plan("environment", json!({})),
            plan("release-definition", json!({})),
            plan("release-deployment", json!({})),
            plan("branch", json!({})),
        ])
        .await;

    let pipelines = counted(&items, "pipeline", 3 * 2);
    assert!(
        pipelines
            .iter()
            .all(|p| p["__projectId"].is_string() && p["name"].is_string())
    );

    let builds = counted(&items, "build", 3 * 6);
    for build in builds {
        assert_eq!(build["__projectId"], build["__project"]["id"]);
        assert_eq!(build["project"]["id"], build["__projectId"]);
        assert!(build["buildNumber"].is_string() && build["definition"]["name"].is_string());
        assert!(build["requestedFor"]["displayName"].is_string());
    }

    let environments = counted(&items, "environment", 3 * 2);
    assert!(
        environments
            .iter()
            .all(|e| e["project"]["id"].is_string() && e["createdOn"].is_string())
    );

    let definitions = counted(&items, "release-definition", 3);
    assert!(
        definitions
            .iter()
            .all(|d| d["__project"]["id"].is_string() && d["environments"].is_array())
    );

    let deployments = counted(&items, "release-deployment", 9);
    assert!(deployments.iter().all(|d| d["release"]["name"].is_string()
        && d["releaseEnvironment"]["name"].is_string()
        && d["deploymentStatus"].is_string()));

    // Branches: main + one source branch per pull request of the 10 healthy, non-empty
    // repositories (2 pull requests each); the empty repository has no refs.
    let branches = &items["branch"];
    assert_eq!(branches.len(), 10 * 3, "{branches:?}");
    for branch in branches {
        let name = branch["name"].as_str().expect("name");
        assert_eq!(branch["refName"], format!("refs/heads/{name}"));
        assert!(branch["objectId"].is_string());
        assert!(branch["__repository"]["project"]["name"].is_string());
    }

    // 6 builds per project in pages of 2: exactly 3 requests each, none for an empty page.
    h.assert_requests("GET /{org}/{project}/_apis/build/builds", 9);
    h.sim.shutdown().await;
}

/// A crawl's items are observed when its attempt started, not when their page is published:
/// a repository is published only after its files were read, and a webhook re-read of it in
/// between holds newer data that publish must keep (it keeps the newer observation).
#[tokio::test]
async fn every_event_of_an_attempt_is_observed_at_the_attempt_start() {
    let h = harness(default_config(), "sim-pat", CrawlLimits::default()).await;
    let mut stamp = CrawlStamp::new(ResyncId::new());
    stamp.observed_at = chrono::Utc::now() - chrono::Duration::minutes(10);
    let plan = [
        plan("project", json!({})),
        plan(
            "repository",
            json!({"includedFiles": ["README.md", "CODEOWNERS"]}),
        ),
    ];
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        h.crawler.crawl_as(&stamp, &CrawlFence::none(), &plan),
    )
    .await
    .expect("crawl within 60 s")
    .expect("crawl succeeds");
    let events: u64 = report.kinds.values().map(|k| k.events).sum();
    assert!(events >= 2, "{report:?}");
    for event in h.next_events(events as usize).await {
        assert_eq!(event.observed_at, stamp.observed_at, "{} event", event.kind);
        assert_eq!(event.attempt, Some(stamp.attempt));
    }
}

/// Azure DevOps answers 500 for the boards of a team that is in no iteration. The Python
/// integration skips such a team; so do we, once the team's (empty) iterations confirm it. A
/// 500 for a team that has iterations is an outage: the kind fails and nothing is skipped.
#[tokio::test]
async fn a_team_in_no_iteration_has_no_boards_and_other_500s_still_fail_the_kind() {
    let h = harness(default_config(), "sim-pat", CrawlLimits::default()).await;
    let boards_route = "GET /{org}/{project}/{team}/_apis/work/boards";
    let iterations_route = "GET /{org}/{project}/{team}/_apis/work/teamsettings/iterations";

    // Every attempt at every team's boards fails (three teams read at once, six attempts
    // each), for teams that have iterations: an outage.
    h.sim
        .fail_next(boards_route, vec![ScriptedAnswer::status(500); 3 * 6]);
    let (report, _) = h.crawl(&[plan("board", json!({}))]).await;
    assert_eq!(report.failed_kinds(), ["board"]);
    assert!(
        failure(&report, "board").contains("500"),
        "{}",
        failure(&report, "board")
    );
    let checked = h.requests(iterations_route);
    assert!(
        checked >= 1,
        "the 500 was checked against the team's iterations"
    );

    let project = h.sim.projects()[0]["id"]
        .as_str()
        .expect("project id")
        .to_string();
    h.sim.remove_team_iterations(&project);
    let items = h
        .crawl_ok(&[plan("board", json!({})), plan("column", json!({}))])
        .await;
    let boards = counted(&items, "board", 2);
    assert!(
        boards
            .iter()
            .all(|b| b["__project"]["id"] != project.as_str()),
        "the team in no iteration has no board"
    );
    counted(&items, "column", 2 * 4 * 2);
    assert_eq!(
        h.requests(iterations_route),
        checked + 1,
        "only a 500 is checked against the team's iterations"
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn each_work_item_resource_runs_its_own_wiql_and_identical_selectors_share_a_crawl() {
    let h = harness(default_config(), "sim-pat", CrawlLimits::default()).await;
    let resources: Vec<Value> = [
        json!({"query": "true", "wiql": "[System.State] = 'Active'"}),
        json!({"query": "true", "wiql": "[System.State] = 'Closed'"}),
        json!({"query": ".id > 0", "wiql": "[System.State] = 'Active'"}),
    ]
    .into_iter()
    .map(|selector| {
        json!({"kind": "work-item", "selector": selector,
            "port": {"entity": {"mappings": {"identifier": ".id", "blueprint": "\"b\""}}}})
    })
    .collect();
    let mapping = adoport_shared::port_app_config::PortAppConfig::from_json_value(
        json!({"resources": resources, "specPath": []}),
    )
    .expect("mapping");
    let plan = adoport_ingest::KindPlan::for_mapping(&mapping);
    let report = (h
        .crawler
        .crawl(adoport_shared::messages::ResyncId::new(), &plan)
        .await)
        .expect("crawl succeeds");
    assert_eq!(
        report.kinds.keys().collect::<Vec<_>>(),
        ["work-item#0,2", "work-item#1"],
        "{report:?}"
    );
    let events: u64 = report.kinds.values().map(|k| k.events).sum();
    let events = h.next_events(events as usize).await;
    let in_state = |state: &str| {
        let mut ids: Vec<u64> = (h.sim.work_items().iter())
            .filter(|w| w["fields"]["System.State"] == state)
            .filter_map(|w| w["id"].as_u64())
            .collect();
        ids.sort_unstable();
        ids
    };
    let of_unit = |resources: &[u32]| {
        let mut ids: Vec<u64> = (events.iter())
            .filter(|e| e.resources.as_deref() == Some(resources))
            .flat_map(|e| e.items.iter().filter_map(|i| i["id"].as_u64()))
            .collect();
        ids.sort_unstable();
        ids
    };
    assert!(!in_state("Active").is_empty() && !in_state("Closed").is_empty());
    assert_eq!(of_unit(&[0, 2]), in_state("Active"));
    assert_eq!(of_unit(&[1]), in_state("Closed"));
    // One WIQL query per project and unit: the two resources with the same wiql share one.
    h.assert_requests("POST /{org}/{project}/_apis/wit/wiql", 3 * 2);
    h.sim.shutdown().await;
}

/// Every `pull-request` selector of a resync is fed from one list per project and status
/// (paged), and each publishes what it would have read repository by repository, as the
/// Python integration reads them: active ones all, closed ones within its own
/// `minTimeInDays` and at most its `maxResults` per repository and status (newest first), none
/// of a disabled repository.
#[tokio::test]
async fn pull_request_selectors_share_one_list_per_project_and_status() {
    use std::collections::{BTreeMap, BTreeSet};

    use adoport_ingest::ado::ProjectId;
    use chrono::{DateTime, Utc};

    const LIST: &str = "GET /{org}/{project}/_apis/git/pullrequests";
    const PAGE: usize = 5;
    let config = AdoSimConfig {
        pull_requests_per_repository: 12,
        ..default_config()
    };
    let limits = CrawlLimits {
        pull_request_page: PAGE,
        ..CrawlLimits::default()
    };
    let h = harness(config, "sim-pat", limits).await;
    let repositories = h.sim.repositories();
    let disabled = (repositories.iter())
        .find(|r| r["isDisabled"] == true)
        .expect("a disabled repository");
    let hidden = (h.sim)
        .add_pull_request(
            disabled["id"].as_str().expect("id"),
            "in a disabled repository",
        )
        .expect("opened");
    // A window that holds about half the completed pull requests.
    let mut closed: Vec<DateTime<Utc>> = (h.sim.pull_requests().iter())
        .filter_map(|pr| pr["closedDate"].as_str())
        .map(|t| t.parse().expect("closedDate"))
        .collect();
    closed.sort();
    let days = (Utc::now() - closed[closed.len() / 2]).num_days();
    let selectors = [
        json!({"minTimeInDays": 36500, "maxResults": 3}),
        json!({"minTimeInDays": days}),
        json!({}),
    ];
    let kinds: Vec<(&str, Value)> = (selectors.iter())
        .map(|s| ("pull-request", s.clone()))
        .collect();
    let plan = support::plans(&kinds);
    assert_eq!(plan.len(), 3, "one crawl unit per selector");
    let crawled = h.crawl_by_resource(&plan).await;
    // Per project and status one list, paged (a short page is the last), whatever the
    // selectors; none per repository.
    let all = h.sim.pull_requests();
    let lists: u64 = (h.sim.projects().iter())
        .map(|project| {
            let pages = |status: &str| {
                let listed = (all.iter())
                    .filter(|pr| pr["repository"]["project"]["id"] == project["id"])
                    .filter(|pr| pr["status"] == status)
                    .count();
                (listed / PAGE + 1) as u64
            };
            pages("active") + pages("abandoned") + pages("completed")
        })
        .sum();
    h.assert_requests(LIST, lists);
    h.assert_requests(
        "GET /{org}/{project}/_apis/git/repositories/{repository}/pullrequests",
        0,
    );
    let mut published: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    for (resource, items) in crawled {
        let ids = published.entry(resource).or_default();
        for item in &items {
            let id = item["pullRequestId"].as_u64().expect("pullRequestId");
            assert!(ids.insert(id), "pull request {id} published twice");
        }
    }

    // What each selector reads from every healthy repository's own list.
    let mut expected: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    for (index, selector) in selectors.iter().enumerate() {
        let days = selector["minTimeInDays"].as_i64().unwrap_or(7);
        let max_results = selector["maxResults"].as_u64().unwrap_or(100).to_string();
        let min_time = (Utc::now() - chrono::Duration::days(days))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let ids = expected.entry(index as u32).or_default();
        for repository in repositories.iter().filter(|r| r["isDisabled"] != true) {
            let project = ProjectId::new(repository["project"]["id"].as_str().expect("project"));
            let url = h.client.url(&format!(
                "{project}/_apis/git/repositories/{}/pullrequests",
                repository["id"].as_str().expect("id")
            ));
            let mut lists = vec![vec![("searchCriteria.status", "active"), ("$top", "1000")]];
            for status in ["abandoned", "completed"] {
                lists.push(vec![
                    ("searchCriteria.status", status),
                    ("searchCriteria.queryTimeRangeType", "closed"),
                    ("searchCriteria.minTime", min_time.as_str()),
                    ("$top", max_results.as_str()),
                ]);
            }
            for query in lists {
                let listed = h.client.get_json(&url, &query).await.expect("listed");
                for pr in listed.body["value"].as_array().expect("value") {
                    ids.insert(pr["pullRequestId"].as_u64().expect("pullRequestId"));
                }
            }
        }
    }
    assert_eq!(published, expected);
    assert!(published.values().all(|ids| !ids.contains(&hidden)));
    // The selectors differ: the window and maxResults cut what each publishes.
    let sizes: BTreeSet<usize> = published.values().map(BTreeSet::len).collect();
    assert_eq!(sizes.len(), 3, "{published:?}");

    h.sim.shutdown().await;
}
