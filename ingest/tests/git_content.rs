//! The `file`, `folder` and `wiki` kinds against the Azure DevOps simulator, and what a
//! `git.push` service hook publishes for them (and for `branch`).

use adoport_ingest::{CrawlLimits, KindPlan};
use adoport_shared::messages::{RawAction, RawEvent};
use adoport_sim::ado::{AdoSimConfig, FileChange, PushResult, SimCommit};
use serde_json::{Value, json};

mod support;

use support::crawl::{CrawlHarness, counted, crawl_harness, pages, plan_with};
use support::{items_of, push_commit, repository_id, serve_receiver};
use tokio_util::sync::CancellationToken;

async fn harness(limits: CrawlLimits) -> CrawlHarness {
    crawl_harness(
        AdoSimConfig::default(),
        "sim-pat",
        "git-content.",
        |crawler| crawler.with_limits(limits),
    )
    .await
}

impl CrawlHarness {
    /// Serves the webhook receiver with `plan` and returns its URL.
    async fn webhook(&self, plan: Vec<KindPlan>) -> String {
        let shutdown = CancellationToken::new();
        serve_receiver(self.bus.clone(), &self.client, None, plan, &shutdown).await
    }
}

fn paths(items: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = items
        .iter()
        .map(|i| {
            format!(
                "{}:{}",
                i["repo"]["name"].as_str().unwrap_or_default(),
                i["file"]["path"].as_str().unwrap_or_default()
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn literal_files_are_parsed_and_carry_included_files_next_to_them() {
    let h = harness(CrawlLimits::default()).await;
    let items = h.crawl_ok(&[plan_with(
            "file",
            &[json!({
                "files": {"path": ["service.json", "deploy/values.yaml", "/port.yml"], "repos": ["repo-0-0", "REPO-0-1"]},
                "includedFiles": ["README.md"],
            })],
        )]).await;
    let files = &items["file"];
    assert_eq!(
        paths(files),
        [
            "repo-0-0:deploy/values.yaml",
            "repo-0-0:port.yml",
            "repo-0-0:service.json",
            "repo-0-1:deploy/values.yaml",
            "repo-0-1:port.yml",
            "repo-0-1:service.json",
        ]
    );
    for item in files {
        let file = &item["file"];
        let name = item["repo"]["name"].as_str().expect("repo name");
        assert!(file["objectId"].as_str().is_some_and(|id| id.len() == 40));
        assert!(file["commitId"].is_string() && file["isFolder"] == false);
        assert_eq!(
            file["size"].as_u64(),
            file["content"]["raw"].as_str().map(|r| r.len() as u64)
        );
        let parsed = &file["content"]["parsed"];
        match file["path"].as_str() {
            Some("service.json") => {
                assert_eq!(parsed["name"], name);
                // The Python integration's fields, no content metadata.
                assert!(file.get("extension").is_none() && file.get("fileName").is_none());
                // The root README.
                assert!(
                    item["__includedFiles"]["README.md"]
                        .as_str()
                        .is_some_and(|r| r.contains(name))
                );
            }
            Some("port.yml") => assert_eq!(parsed["service"]["name"], name),
            Some("deploy/values.yaml") => {
                // Two YAML documents → a list; README.md is the root's (as the Python
                // integration resolves included files), not one in deploy/, where there is none.
                assert_eq!(parsed.as_array().map(Vec::len), Some(2), "{parsed}");
                assert_eq!(parsed[1]["image"], format!("{name}:latest"));
                assert!(
                    item["__includedFiles"]["README.md"]
                        .as_str()
                        .is_some_and(|r| r.contains(name)),
                    "{item}"
                );
            }
            other => panic!("unexpected file {other:?}"),
        }
    }
    h.assert_requests(
        "POST /{org}/{project}/_apis/git/repositories/{repository}/itemsbatch",
        2,
    );
    // Per repository its three files and its README.md once: the included files resolve from
    // the root, the same for every file, so they are not read again for each.
    h.assert_requests(
        "GET /{org}/{project}/_apis/git/repositories/{repository}/items",
        2 * (3 + 1),
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn a_missing_literal_path_does_not_hide_the_others() {
    let h = harness(CrawlLimits::default()).await;
    let items = h.crawl_ok(&[plan_with(
            "file",
            &[json!({"files": {"path": ["service.json", "no/such/file.txt"], "repos": ["repo-1-0"]}})],
        )]).await;
    assert_eq!(paths(&items["file"]), ["repo-1-0:service.json"]);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn glob_patterns_match_at_any_depth_ignore_case_and_see_dotfiles() {
    let h = harness(CrawlLimits::default()).await;
    let items = h
        .crawl_ok(&[plan_with(
            "file",
            &[
                json!({"files": {"path": "**/docs/*.md"}}),
                json!({"files": {"path": ["*.JSON", "*.txt", ".config/*.yaml"]}}),
            ],
        )])
        .await;
    let files = paths(&items["file"]);
    // 10 healthy, non-empty repositories: 5 docs, service.json and the dotfile each.
    assert_eq!(files.len(), 10 * 7, "{files:?}");
    for expected in [
        "repo-0-0:docs/README.md",
        "repo-0-0:src/a/docs/x.md",
        "repo-0-0:src/b/lib/docs/deep.md",
        "repo-0-0:.config/settings.yaml",
        "repo-2-3:service.json",
    ] {
        assert!(files.iter().any(|f| f == expected), "{expected} missing");
    }
    // Over 1 MiB (big.json), empty (empty.txt), other folders (README.md at the root).
    assert!(
        !files.iter().any(|f| f.ends_with("big.json")
            || f.ends_with("empty.txt")
            || f.ends_with(":README.md"))
    );
    // Disabled (repo-0-3) and empty (repo-1-1) repositories are not read.
    assert!(
        !files
            .iter()
            .any(|f| f.starts_with("repo-0-3:") || f.starts_with("repo-1-1:"))
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn folders_match_at_depth_on_the_configured_branch() {
    let h = harness(CrawlLimits::default()).await;
    let items = h.crawl_ok(&[plan_with(
            "folder",
            &[
                json!({"folders": [
                    {"path": "src/*/docs"},
                    {"path": "src/**/docs", "repos": [{"name": "repo-0-1", "branch": "feature/change-0"}]},
                ]}),
                json!({"project_name": "project-0", "folders": [{"path": "docs/"}]}),
            ],
        )]).await;
    let folders = &items["folder"];
    let mut seen: Vec<String> = folders
        .iter()
        .map(|f| {
            format!(
                "{}@{}:{} ({})",
                f["__repository"]["name"].as_str().unwrap_or_default(),
                f["__branch"].as_str().unwrap_or_default(),
                f["path"].as_str().unwrap_or_default(),
                f["__pattern"].as_str().unwrap_or_default()
            )
        })
        .collect();
    seen.sort();
    assert_eq!(folders.len(), 20 + 4 + 3, "{seen:#?}");
    assert!(
        folders
            .iter()
            .all(|f| f["isFolder"] == true && f["objectId"].is_string())
    );
    for expected in [
        "repo-0-0@main:/src/a/docs (src/*/docs)",
        "repo-2-3@main:/src/b/docs (src/*/docs)",
        "repo-0-1@feature/change-0:/src/b/lib/docs (src/**/docs)",
        "repo-0-1@feature/change-0:/src/feature/docs (src/**/docs)",
        "repo-0-2@main:/docs (docs/)",
    ] {
        assert!(
            seen.iter().any(|s| s == expected),
            "{expected} missing from {seen:#?}"
        );
    }
    // `src/*/docs` is one level deep only; the feature folder exists on the feature branch only.
    assert!(
        !seen
            .iter()
            .any(|s| s.contains("@main:/src/b/lib/docs") || s.contains("@main:/src/feature"))
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn wiki_pages_are_paged_and_read_with_their_content() {
    let h = harness(pages(4)).await;
    let items = h
        .crawl_ok(&[plan_with("wiki", &[json!({"includeContent": true})])])
        .await;
    let pages = counted(&items, "wiki", 3 * 6);
    for page in pages {
        assert!(page["id"].is_u64() && page["path"].is_string());
        assert!(
            page["content"]
                .as_str()
                .is_some_and(|c| c.starts_with("# "))
        );
        assert!(
            page["__wiki"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with(".wiki"))
        );
        assert_eq!(page["__wiki"]["projectId"], page["__project"]["id"]);
    }
    // 6 pages per wiki, 4 per call: two calls per wiki.
    h.assert_requests(
        "POST /{org}/{project}/_apis/wiki/wikis/{wikiIdentifier}/pagesbatch",
        6,
    );
    // Without includeContent: the page details only.
    let (_, items) = h.crawl(&[plan_with("wiki", &[json!({})])]).await;
    assert_eq!(items["wiki"].len(), 18);
    assert!(items["wiki"].iter().all(|p| p.get("content").is_none()));
    h.sim.shutdown().await;
}

/// Pushes a commit adding `docs/a.md` to `main` of the repository named `name`; its id and the
/// push.
fn push_a_doc(h: &CrawlHarness, name: &str) -> (String, PushResult) {
    let repository = repository_id(&h.sim, name);
    let pushed = push_commit(
        &h.sim,
        &repository,
        "main",
        "docs",
        vec![FileChange::put("docs/a.md", "# A\n")],
    );
    (repository, pushed)
}

/// Posts a push's webhook and returns the raw events it produced (`expected` of them).
async fn deliver(h: &CrawlHarness, url: &str, webhook: &Value, expected: usize) -> Vec<RawEvent> {
    let response = reqwest::Client::new()
        .post(url)
        .json(webhook)
        .send()
        .await
        .expect("webhook delivered");
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    h.next_events(expected).await
}

#[tokio::test]
async fn a_multi_commit_push_upserts_and_deletes_files_folders_and_branches() {
    let h = harness(CrawlLimits::default()).await;
    let url = h
        .webhook(vec![
            plan_with("repository", &[json!({})]),
            plan_with("branch", &[json!({})]),
            plan_with(
                "file",
                &[json!({"files": {"path": ["**/*.md", "service.json"]}})],
            ),
            plan_with("folder", &[json!({"folders": [{"path": "src/*/docs"}]})]),
            plan_with("wiki", &[json!({"includeContent": true})]),
        ])
        .await;
    let repository = repository_id(&h.sim, "repo-0-1");
    let pushed = h
        .sim
        .push(
            &repository,
            "main",
            vec![
                SimCommit::new(
                    "add docs, bump service",
                    vec![
                        FileChange::put("docs/new.md", "# New\n"),
                        FileChange::put("service.json", "{\"name\": \"renamed\"}"),
                    ],
                ),
                SimCommit::new(
                    "move docs",
                    vec![
                        FileChange::delete("docs/guide.md"),
                        FileChange::put("src/c/docs/z.md", "# Component c\n"),
                    ],
                ),
                SimCommit::new(
                    "final touches",
                    vec![
                        FileChange::put("docs/new.md", "# New, edited\n"),
                        FileChange::delete("src/b/docs/y.md"),
                    ],
                ),
            ],
        )
        .expect("pushed");
    assert_eq!(
        pushed.webhook["resource"]["commits"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    // repository, branch, file upserts + deletes, folder upserts + deletes.
    let events = deliver(&h, &url, &pushed.webhook, 6).await;
    assert!(events.iter().all(|e| matches!(&e.origin, adoport_shared::messages::Origin::Webhook { event_type, .. } if event_type == "git.push")));

    let branches = items_of(&events, "branch", RawAction::Upsert);
    assert_eq!(branches.len(), 1);
    assert_eq!(branches[0]["name"], "main");
    assert_eq!(branches[0]["objectId"], pushed.new_object_id.as_str());

    let file_path = |i: &Value| i["file"]["path"].as_str().unwrap_or_default().to_string();
    let mut upserted: Vec<String> = items_of(&events, "file", RawAction::Upsert)
        .iter()
        .map(file_path)
        .collect();
    upserted.sort();
    // Every commit counts: service.json changed in the first of three commits.
    assert_eq!(upserted, ["docs/new.md", "service.json", "src/c/docs/z.md"]);
    let upserts = items_of(&events, "file", RawAction::Upsert);
    let new_doc = upserts
        .iter()
        .find(|i| i["file"]["path"] == "docs/new.md")
        .expect("docs/new.md");
    assert_eq!(new_doc["file"]["content"]["raw"], "# New, edited\n");
    assert_eq!(new_doc["file"]["commitId"], pushed.new_object_id.as_str());
    assert_eq!(new_doc["repo"]["id"], repository.as_str());
    let mut deleted: Vec<String> = items_of(&events, "file", RawAction::Delete)
        .iter()
        .map(file_path)
        .collect();
    deleted.sort();
    assert_eq!(deleted, ["docs/guide.md", "src/b/docs/y.md"]);
    assert!(
        items_of(&events, "file", RawAction::Delete)
            .iter()
            .all(|i| i["file"]["objectId"]
                .as_str()
                .is_some_and(|id| id.len() == 40))
    );

    let folders = items_of(&events, "folder", RawAction::Upsert);
    assert_eq!(folders.len(), 1);
    assert_eq!(folders[0]["path"], "/src/c/docs");
    assert_eq!(folders[0]["__branch"], "main");
    assert_eq!(folders[0]["__pattern"], "src/*/docs");
    let gone = items_of(&events, "folder", RawAction::Delete);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0]["path"], "/src/b/docs");

    // A push to another branch: only the branch moves (files and folders track main).
    let feature = push_commit(
        &h.sim,
        &repository,
        "feature/change-0",
        "wip",
        vec![FileChange::put("docs/wip.md", "# WIP\n")],
    );
    let events = deliver(&h, &url, &feature.webhook, 2).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["repository", "branch"]);
    assert_eq!(
        events[1].items[0]["objectId"],
        feature.new_object_id.as_str()
    );

    // A deleted branch.
    let removed = h
        .sim
        .delete_branch(&repository, "feature/change-1")
        .expect("branch existed");
    let events = deliver(&h, &url, &removed.webhook, 2).await;
    let deletes = items_of(&events, "branch", RawAction::Delete);
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0]["name"], "feature/change-1");
    assert_eq!(deletes[0]["objectId"], removed.old_object_id.as_str());
    assert_eq!(deletes[0]["__repository"]["id"], repository.as_str());

    // A push to a project wiki: changed pages upserted with their content, removed ones deleted.
    let (wiki_id, _, _) = h.sim.wikis().into_iter().next().expect("a wiki");
    let wiki_push = push_commit(
        &h.sim,
        &wiki_id,
        "wikiMaster",
        "edit wiki",
        vec![
            FileChange::put("Runbooks/Rollback.md", "# Rollback\n"),
            FileChange::delete("Architecture/Decisions.md"),
        ],
    );
    // The repository event (the wiki repository is not a listed repository) + wiki events.
    let events = deliver(&h, &url, &wiki_push.webhook, 3).await;
    let pages = items_of(&events, "wiki", RawAction::Upsert);
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0]["path"], "/Runbooks/Rollback");
    assert_eq!(pages[0]["content"], "# Rollback\n");
    assert!(pages[0]["id"].is_u64());
    assert_eq!(pages[0]["__wiki"]["id"], wiki_id.as_str());
    let removed_pages = items_of(&events, "wiki", RawAction::Delete);
    assert_eq!(removed_pages.len(), 1);
    assert_eq!(removed_pages[0]["path"], "/Architecture/Decisions");
    h.sim.shutdown().await;
}

#[tokio::test]
async fn a_push_publishes_nothing_more_for_kinds_the_mapping_does_not_ask_for() {
    let h = harness(CrawlLimits::default()).await;
    let url = h.webhook(vec![plan_with("repository", &[json!({})])]).await;
    let (_, pushed) = push_a_doc(&h, "repo-0-0");
    let events = deliver(&h, &url, &pushed.webhook, 1).await;
    assert_eq!(events[0].kind, "repository");
    assert!(
        !h.sim
            .requests()
            .keys()
            .any(|k| k.contains("diffs") || k.contains("refs")),
        "no Git content was read: {:?}",
        h.sim.requests()
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn a_push_to_a_repository_deleted_since_deletes_the_repository_and_reads_nothing_else() {
    let h = harness(CrawlLimits::default()).await;
    let url = h
        .webhook(vec![
            plan_with("branch", &[json!({})]),
            plan_with("file", &[json!({"files": {"path": "**/*.md"}})]),
        ])
        .await;
    let (repository, pushed) = push_a_doc(&h, "repo-0-2");
    assert!(h.sim.remove_repository(&repository));
    let events = deliver(&h, &url, &pushed.webhook, 1).await;
    assert_eq!(events[0].kind, "repository");
    assert_eq!(events[0].action, RawAction::Delete);
    // Its branches and files could only be named with the push's own description of the
    // repository, which nothing confirms: the next resync removes them.
    let reads = h.sim.requests();
    assert!(
        !reads
            .keys()
            .any(|route| route.contains("/refs") || route.contains("/diffs")),
        "{reads:?}"
    );
    h.sim.shutdown().await;
}

/// The crawl units of a mapping whose resources of `kind` have `selectors`, in order.
fn units_of(kind: &str, selectors: &[Value]) -> Vec<KindPlan> {
    let resources: Vec<Value> = selectors
        .iter()
        .map(|selector| {
            json!({"kind": kind, "selector": selector,
                "port": {"entity": {"mappings": {"identifier": ".id", "blueprint": "\"b\""}}}})
        })
        .collect();
    let mapping = adoport_shared::port_app_config::PortAppConfig::from_json_value(
        json!({"resources": resources, "specPath": []}),
    )
    .expect("mapping");
    KindPlan::for_mapping(&mapping)
}

/// `(resources, sorted paths)` of each file event.
fn files_per_unit(events: &[RawEvent]) -> Vec<(Option<Vec<u32>>, Vec<String>)> {
    let mut out: Vec<(Option<Vec<u32>>, Vec<String>)> = events
        .iter()
        .filter(|e| e.kind == "file")
        .map(|e| (e.resources.clone(), paths(&e.items)))
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn each_file_resource_reads_its_own_paths_and_identical_selectors_share_a_crawl() {
    let h = harness(CrawlLimits::default()).await;
    let selectors = [
        json!({"query": "true", "files": {"path": "service.json", "repos": ["repo-0-0"]}}),
        json!({"query": "true", "files": {"path": "port.yml", "repos": ["repo-0-0"]}}),
        json!({"query": ".file.size > 0", "files": {"path": "service.json", "repos": ["repo-0-0"]}}),
    ];
    let plan = units_of("file", &selectors);
    assert_eq!(plan.len(), 2, "{plan:?}");
    let report = (h
        .crawler
        .crawl(adoport_shared::messages::ResyncId::new(), &plan)
        .await)
        .expect("crawl succeeds");
    assert_eq!(
        report.kinds.keys().collect::<Vec<_>>(),
        ["file#0,2", "file#1"],
        "one crawl per distinct selector"
    );
    assert_eq!(report.failed_kinds(), Vec::<&str>::new(), "{report:?}");
    // The two units' items were published apart: each event names its unit's resources.
    let events: u64 = report.kinds.values().map(|k| k.events).sum();
    let events = h.next_events(events as usize).await;
    assert_eq!(
        files_per_unit(&events),
        [
            (Some(vec![0, 2]), vec!["repo-0-0:service.json".to_string()]),
            (Some(vec![1]), vec!["repo-0-0:port.yml".to_string()]),
        ],
        "{report:?}"
    );
    // One listing of the repository's files for both units (the kind is crawled together),
    // and one read of each file.
    h.assert_requests(
        "POST /{org}/{project}/_apis/git/repositories/{repository}/itemsbatch",
        1,
    );
    h.assert_requests(
        "GET /{org}/{project}/_apis/git/repositories/{repository}/items",
        2,
    );

    // A push that changes both files: each change goes to the unit whose paths take it.
    let url = h.webhook(plan).await;
    let repository = repository_id(&h.sim, "repo-0-0");
    let pushed = h
        .sim
        .push(
            &repository,
            "main",
            vec![SimCommit::new(
                "both",
                vec![
                    FileChange::put("port.yml", "service:\n  name: changed\n"),
                    FileChange::put("service.json", "{\"name\": \"changed\"}"),
                ],
            )],
        )
        .expect("pushed");
    // The repository (every push re-reads it) and one file event per unit.
    let events = deliver(&h, &url, &pushed.webhook, 3).await;
    assert_eq!(
        files_per_unit(&events),
        [
            (Some(vec![0, 2]), vec!["repo-0-0:service.json".to_string()]),
            (Some(vec![1]), vec!["repo-0-0:port.yml".to_string()]),
        ]
    );
    h.sim.shutdown().await;
}

/// Every `file` selector of a resync is fed from one listing per repository and one read per
/// file, and each publishes what it publishes crawled alone (its files, its `includedFiles`).
#[tokio::test]
async fn file_selectors_share_one_listing_and_one_read_per_file() {
    const ITEMS: &str = "GET /{org}/{project}/_apis/git/repositories/{repository}/items";
    let h = harness(CrawlLimits::default()).await;
    let selectors = [
        json!({"files": {"path": "port.yml"}, "includedFiles": ["README.md"]}),
        json!({"files": {"path": ["**/*.json"]}}),
        json!({"files": {"path": ["service.json", "port.yml"], "repos": ["repo-0-0"]}, "includedFiles": ["README.md", "CODEOWNERS"]}),
    ];
    let file_key = |i: &Value| format!("{}:{}", i["repo"]["name"], i["file"]["path"]);
    let by_file = |items: &[Value]| -> std::collections::BTreeMap<String, Value> {
        (items.iter()).map(|i| (file_key(i), i.clone())).collect()
    };
    let mut alone = std::collections::BTreeMap::new();
    let mut item_reads = 0;
    for (index, selector) in selectors.iter().enumerate() {
        let items = h
            .crawl_ok(&[plan_with("file", std::slice::from_ref(selector))])
            .await;
        alone.insert(index as u32, by_file(&items["file"]));
        item_reads = h.requests(ITEMS);
    }
    assert!(alone.values().all(|files| !files.is_empty()), "{alone:?}");
    let together = (h.crawl_selectors_together("file", &selectors, file_key)).await;
    assert_eq!(together, alone);
    // Each matched file read once, however many selectors match it: fewer reads than alone.
    let files: std::collections::BTreeSet<&String> =
        alone.values().flat_map(|f| f.keys()).collect();
    let reads = h.requests(ITEMS) - item_reads;
    let matched: usize = alone.values().map(|f| f.len()).sum();
    assert!(
        reads < item_reads && files.len() < matched,
        "{reads} reads, {item_reads} alone"
    );
    h.sim.shutdown().await;
}
