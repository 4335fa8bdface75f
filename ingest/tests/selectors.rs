//! Selectors that filter what a kind reads, against the Azure DevOps simulator's filters:
//! `release` (`expand`, `statusFilter`, `tagFilter`, `sourceBranchFilter`, `minCreatedTime`,
//! `maxCreatedTime`), `release-definition` (`tagFilter`), `wiki` (`wikiType`, `apiVersion`) and
//! a `wiql` ending with `ORDER BY`.

use std::collections::BTreeMap;

use adoport_ingest::CrawlLimits;
use adoport_sim::ado::AdoSimConfig;
use serde_json::{Value, json};

mod support;

use support::crawl::{CrawlHarness, crawl_harness, failure, plan, plan_with};

const RELEASES: &str = "GET /{org}/{project}/_apis/release/releases";

async fn harness(config: AdoSimConfig, limits: CrawlLimits) -> CrawlHarness {
    crawl_harness(config, "sim-pat", "selectors.", |crawler| {
        crawler.with_limits(limits)
    })
    .await
}

/// One project of six releases: 1, 2, 3 and 6 active, 4 abandoned, 5 draft; `hotfix` on the
/// even ones, `prod` on 3 and 6; built from `main` (odd) or `develop` (even); release `n`
/// created `7n` hours after 2026-03-01T09:00Z.
fn six_releases() -> AdoSimConfig {
    AdoSimConfig {
        projects: 1,
        releases_per_project: 6,
        ..AdoSimConfig::default()
    }
}

/// The ids of the releases a crawl published, ascending.
fn ids(items: &BTreeMap<String, Vec<Value>>, kind: &str) -> Vec<u64> {
    let mut ids: Vec<u64> = (items.get(kind).into_iter().flatten())
        .filter_map(|r| r["id"].as_u64())
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn release_filters_select_what_release_list_answers() {
    let h = harness(six_releases(), CrawlLimits::default()).await;
    let cases = [
        (json!({}), vec![1, 2, 3, 4, 5, 6]),
        (json!({"statusFilter": "active"}), vec![1, 2, 3, 6]),
        (json!({"statusFilter": "draft"}), vec![5]),
        (json!({"tagFilter": ["hotfix"]}), vec![2, 4, 6]),
        (json!({"tagFilter": ["hotfix", "prod"]}), vec![6]),
        (json!({"tagFilter": []}), vec![1, 2, 3, 4, 5, 6]),
        (
            json!({"sourceBranchFilter": "refs/heads/main"}),
            vec![1, 3, 5],
        ),
        (json!({"minCreatedTime": "2026-03-02"}), vec![3, 4, 5, 6]),
        (
            json!({"maxCreatedTime": "2026-03-02T12:00:00Z"}),
            vec![1, 2, 3],
        ),
        (
            json!({"minCreatedTime": "2026-03-02", "maxCreatedTime": "2026-03-02T12:00:00Z", "statusFilter": "active"}),
            vec![3],
        ),
    ];
    for (selector, expected) in cases {
        let items = h.crawl_ok(&[plan("release", selector.clone())]).await;
        assert_eq!(ids(&items, "release"), expected, "{selector}");
    }
    h.sim.shutdown().await;
}

#[tokio::test]
async fn release_expand_adds_what_it_names_and_nothing_else() {
    let h = harness(six_releases(), CrawlLimits::default()).await;
    let plain = h.crawl_ok(&[plan("release", json!({}))]).await;
    assert!(
        plain["release"]
            .iter()
            .all(|r| r.get("artifacts").is_none() && r.get("environments").is_none()),
        "a list is shallow without $expand"
    );
    let expanded = h
        .crawl_ok(&[plan("release", json!({"expand": "artifacts"}))])
        .await;
    for release in &expanded["release"] {
        let branch = &release["artifacts"][0]["definitionReference"]["branch"]["id"];
        assert!(
            branch
                .as_str()
                .is_some_and(|b| b.starts_with("refs/heads/"))
        );
        assert!(release.get("environments").is_none(), "{release}");
    }
    let environments = h
        .crawl_ok(&[plan("release", json!({"expand": "environments"}))])
        .await;
    assert!(
        environments["release"]
            .iter()
            .all(|r| r["environments"].as_array().is_some_and(|e| e.len() == 2))
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn resources_with_different_release_filters_read_the_union() {
    let h = harness(six_releases(), CrawlLimits::default()).await;
    let before = h.requests(RELEASES);
    let items = h
        .crawl_ok(&[plan_with(
            "release",
            &[
                json!({"statusFilter": "draft"}),
                json!({"statusFilter": "abandoned"}),
                json!({"statusFilter": "draft"}),
            ],
        )])
        .await;
    assert_eq!(ids(&items, "release"), [4, 5]);
    assert_eq!(
        h.requests(RELEASES) - before,
        2,
        "one listing per distinct filter set"
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn a_release_filter_the_model_refuses_fails_the_kind_without_reading_it() {
    let h = harness(six_releases(), CrawlLimits::default()).await;
    for (selector, field) in [
        (json!({"statusFilter": "open"}), "statusFilter"),
        (json!({"tagFilter": "hotfix"}), "tagFilter"),
        (json!({"expand": "everything"}), "expand"),
        (json!({"minCreatedTime": ["2026"]}), "minCreatedTime"),
    ] {
        let (report, items) = h.crawl(&[plan("release", selector.clone())]).await;
        let failure = failure(&report, "release");
        assert!(
            failure.starts_with(&format!(
                "kind release: the selector of its resource #1 (in mapping order) is not valid: field `{field}`"
            )),
            "{selector}: {failure}"
        );
        assert!(!items.contains_key("release"));
    }
    assert_eq!(h.requests(RELEASES), 0);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn a_time_azure_devops_cannot_read_fails_the_kind_with_its_answer() {
    let h = harness(six_releases(), CrawlLimits::default()).await;
    let (report, items) = h
        .crawl(&[plan("release", json!({"minCreatedTime": "last tuesday"}))])
        .await;
    let failure = failure(&report, "release");
    assert!(
        failure.contains("400") && failure.contains("minCreatedTime"),
        "{failure}"
    );
    assert!(!items.contains_key("release"));
    h.sim.shutdown().await;
}

#[tokio::test]
async fn release_definitions_are_filtered_by_tag_and_expanded_as_asked() {
    // Three projects: the definitions of the first and third are tagged `cd`, the second's
    // `legacy`.
    let h = harness(AdoSimConfig::default(), CrawlLimits::default()).await;
    let all = h.crawl_ok(&[plan("release-definition", json!({}))]).await;
    assert_eq!(all["release-definition"].len(), 3);
    assert!(
        all["release-definition"]
            .iter()
            .all(|d| d["environments"].is_array()),
        "`environments` is expanded by default"
    );
    let cd = h
        .crawl_ok(&[plan("release-definition", json!({"tagFilter": ["cd"]}))])
        .await;
    assert_eq!(cd["release-definition"].len(), 2);
    let legacy = h
        .crawl_ok(&[plan(
            "release-definition",
            json!({"tagFilter": ["legacy"], "expand": "tags"}),
        )])
        .await;
    let definitions = &legacy["release-definition"];
    assert_eq!(definitions.len(), 1);
    assert_eq!(definitions[0]["tags"], json!(["legacy"]));
    assert!(definitions[0].get("environments").is_none());
    assert_eq!(
        definitions[0]["__project"]["id"],
        h.sim.projects()[1]["id"],
        "{definitions:?}"
    );
    // No definition carries both tags. (The crawler distrusts an empty answer after a full
    // one and holds deletions back for a resync, which says that it read none.)
    let (report, neither) = h
        .crawl(&[plan(
            "release-definition",
            json!({"tagFilter": ["cd", "legacy"]}),
        )])
        .await;
    assert!(!neither.contains_key("release-definition"));
    assert!(failure(&report, "release-definition").contains("returned no items"));
    h.sim.shutdown().await;
}

#[tokio::test]
async fn wiki_type_selects_project_or_code_wikis() {
    let config = AdoSimConfig {
        projects: 2,
        ..AdoSimConfig::default()
    };
    let h = harness(config, CrawlLimits::default()).await;
    let project = h.sim.projects()[0]["name"]
        .as_str()
        .expect("name")
        .to_string();
    let code_wiki = h.sim.publish_code_wiki(&project).expect("published");
    let pages_of = |items: &BTreeMap<String, Vec<Value>>, kind: &str| -> Vec<String> {
        let mut wikis: Vec<String> = (items.get("wiki").into_iter().flatten())
            .filter(|p| p["__wiki"]["type"] == kind)
            .map(|p| p["__wiki"]["id"].as_str().unwrap_or_default().to_string())
            .collect();
        wikis.dedup();
        wikis
    };
    let both = h.crawl_ok(&[plan("wiki", json!({}))]).await;
    assert_eq!(
        pages_of(&both, "codeWiki"),
        std::slice::from_ref(&code_wiki)
    );
    assert_eq!(pages_of(&both, "projectWiki").len(), 2);
    let all_pages = both["wiki"].len();

    let code = h
        .crawl_ok(&[plan("wiki", json!({"wikiType": "codeWiki"}))])
        .await;
    assert!(code["wiki"].iter().all(|p| p["__wiki"]["id"] == code_wiki));
    assert_eq!(code["wiki"].len(), all_pages / 3);
    let project_wikis = h
        .crawl_ok(&[plan("wiki", json!({"wikiType": "projectWiki"}))])
        .await;
    assert_eq!(project_wikis["wiki"].len(), all_pages / 3 * 2);
    assert!(pages_of(&project_wikis, "codeWiki").is_empty());
    // Two resources, one per type: both.
    let union = h
        .crawl_ok(&[plan_with(
            "wiki",
            &[
                json!({"wikiType": "codeWiki"}),
                json!({"wikiType": "projectWiki"}),
            ],
        )])
        .await;
    assert_eq!(union["wiki"].len(), all_pages);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn wiki_api_version_is_the_one_every_wiki_call_sends() {
    let h = harness(AdoSimConfig::default(), CrawlLimits::default()).await;
    let older = h
        .crawl_ok(&[plan(
            "wiki",
            json!({"apiVersion": "7.0", "includeContent": true}),
        )])
        .await;
    assert!(older["wiki"].iter().all(|p| p["content"].is_string()));
    // A version the service does not offer is refused: the selector's version was sent.
    let (report, _) = h.crawl(&[plan("wiki", json!({"apiVersion": "9.9"}))]).await;
    let failure = failure(&report, "wiki");
    assert!(failure.contains("9.9"), "{failure}");
    // Empty is the default (7.1), as in the Python integration.
    h.crawl_ok(&[plan("wiki", json!({"apiVersion": ""}))]).await;
    h.sim.shutdown().await;
}

/// Every `wiki` selector of a resync of one `apiVersion` is fed from one wiki list per project,
/// one page listing per wiki and one full read per page; each publishes what it publishes
/// crawled alone (its `wikiType`, its pages in full or as listed); another `apiVersion` reads
/// apart.
#[tokio::test]
async fn wiki_selectors_of_one_api_version_share_every_read() {
    const LIST: &str = "GET /{org}/{project}/_apis/wiki/wikis";
    const BATCH: &str = "POST /{org}/{project}/_apis/wiki/wikis/{wikiIdentifier}/pagesbatch";
    const PAGE: &str = "GET /{org}/{project}/_apis/wiki/wikis/{wikiIdentifier}/pages/{pageId}";
    let h = harness(AdoSimConfig::default(), CrawlLimits::default()).await;
    let project = h.sim.projects()[0]["name"]
        .as_str()
        .expect("name")
        .to_string();
    h.sim.publish_code_wiki(&project).expect("published");
    let selectors = [
        json!({"wikiType": "codeWiki", "includeContent": true}),
        json!({}),
        json!({"includeContent": true, "apiVersion": "7.0"}),
        json!({"wikiType": "projectWiki", "includeContent": true}),
    ];
    let page_key = |p: &Value| format!("{} {}", p["__wiki"]["id"], p["id"]);
    let by_page = |items: &[Value]| -> BTreeMap<String, Value> {
        (items.iter()).map(|p| (page_key(p), p.clone())).collect()
    };
    let mut alone = BTreeMap::new();
    for (index, selector) in selectors.iter().enumerate() {
        let items = h.crawl_ok(&[plan("wiki", selector.clone())]).await;
        alone.insert(index as u32, by_page(&items["wiki"]));
    }
    let before = h.sim.requests();
    let together = (h.crawl_selectors_together("wiki", &selectors, page_key)).await;
    assert_eq!(together, alone);
    assert!(together[&0].values().all(|p| p["content"].is_string()));
    assert!(together[&1].values().all(|p| p.get("content").is_none()));

    let made = |route: &str| {
        let all = h.sim.requests();
        all.get(route).copied().unwrap_or(0) - before.get(route).copied().unwrap_or(0)
    };
    // 7.1 and 7.0: each version lists the wikis of every project and the pages of each wiki
    // once, and reads each page in full once.
    let projects = h.sim.projects().len() as u64;
    let wikis = projects + 1;
    let pages = alone[&1].len() as u64;
    assert_eq!(made(LIST), 2 * projects);
    assert_eq!(made(BATCH), 2 * wikis);
    assert_eq!(made(PAGE), 2 * pages);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn a_wiql_ending_with_order_by_still_reads_every_work_item_by_id_range() {
    let config = AdoSimConfig {
        projects: 1,
        work_items_per_project: 7,
        ..AdoSimConfig::default()
    };
    let limits = CrawlLimits {
        wiql_page: 3,
        ..CrawlLimits::default()
    };
    let h = harness(config, limits).await;
    let wiql = "POST /{org}/{project}/_apis/wit/wiql";
    let items = h
        .crawl_ok(&[plan(
            "work-item",
            json!({"wiql": "[System.State] <> 'Removed' order by [System.ChangedDate] DESC"}),
        )])
        .await;
    assert_eq!(ids(&items, "work-item").len(), 7);
    assert_eq!(h.requests(wiql), 3, "three id ranges of at most 3");
    h.sim.shutdown().await;
}
