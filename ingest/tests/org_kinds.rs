//! The organization, team and identity kinds against the Azure DevOps simulator: `team`
//! selectors, `member`, `user` (entitlements and graph), `group`, `group-member`, `iteration`,
//! `area-path`, page boundaries, `excludedTags` and a 403 on one project.

use std::collections::BTreeMap;

use adoport_ingest::{CrawlLimits, SHARED_READ_BYTES};
use adoport_sim::ado::AdoSimConfig;
use serde_json::{Value, json};

mod support;

use support::crawl::{CrawlHarness, counted, crawl_harness, failure, pages, plan, plan_with};
use support::plans;

async fn harness(
    config: AdoSimConfig,
    limits: CrawlLimits,
    excluded_tags: &[&str],
) -> CrawlHarness {
    let tags: Vec<String> = excluded_tags.iter().map(|t| t.to_string()).collect();
    crawl_harness(config, "sim-pat", "org-kinds.", |crawler| {
        crawler.with_limits(limits).with_excluded_tags(&tags)
    })
    .await
}

/// The simulator's default seed with identity lists in pages of `page`.
fn identity_pages(page: usize) -> AdoSimConfig {
    AdoSimConfig {
        identity_page_size: page,
        ..AdoSimConfig::default()
    }
}

/// The items of `kind`, each as its JSON text, sorted: what two crawls published, to compare.
fn sorted(items: &BTreeMap<String, Vec<Value>>, kind: &str) -> Vec<String> {
    let mut texts: Vec<String> = (items.get(kind).into_iter().flatten())
        .map(Value::to_string)
        .collect();
    texts.sort();
    texts
}

/// Requests the simulator counted under each of `routes`.
fn counts(h: &CrawlHarness, routes: &[&str]) -> Vec<u64> {
    routes.iter().map(|route| h.requests(route)).collect()
}

fn strings<'a>(items: &'a [Value], pointer: &str) -> Vec<&'a str> {
    items
        .iter()
        .filter_map(|i| i.pointer(pointer).and_then(Value::as_str))
        .collect()
}

#[tokio::test]
async fn teams_carry_members_and_area_paths_only_when_asked() {
    let h = harness(AdoSimConfig::default(), pages(2), &[]).await;
    let items = h.crawl_ok(&[plan("team", json!({}))]).await;
    // Three projects, one team each, over two pages.
    let teams = counted(&items, "team", 3);
    assert!(
        teams
            .iter()
            .all(|t| t.get("__members").is_none() && t.get("__areaPaths").is_none())
    );
    h.assert_requests("GET /{org}/_apis/teams", 2);

    let items = h
        .crawl_ok(&[plan(
            "team",
            json!({"includeMembers": "true", "includeAreaPaths": true}),
        )])
        .await;
    let teams = counted(&items, "team", 3);
    for team in teams {
        let members = team["__members"].as_array().expect("__members");
        assert_eq!(members.len(), 2, "{team}");
        assert!(
            members
                .iter()
                .all(|m| m["identity"]["uniqueName"].is_string())
        );
        assert_eq!(
            team["__areaPaths"]["defaultValue"], team["projectName"],
            "{team}"
        );
        assert_eq!(
            team["__areaPaths"]["field"]["referenceName"],
            "System.AreaPath"
        );
    }
    // Two members a team, pages of two: a second, empty page is read for each team.
    h.assert_requests(
        "GET /{org}/_apis/projects/{project}/teams/{team}/members",
        6,
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn a_selector_its_model_refuses_fails_the_kind_without_reading_it() {
    let h = harness(AdoSimConfig::default(), pages(2), &[]).await;
    let refused = plan_with("team", &[json!({}), json!({"includeMembers": "maybe"})]);
    let (report, items) = h.crawl(std::slice::from_ref(&refused)).await;
    assert_eq!(report.failed_kinds(), ["team"]);
    assert_eq!(
        report.kinds["team"].failure.as_deref(),
        Some(
            "kind team: the selector of its resource #2 (in mapping order) is not valid: field `includeMembers`: \"maybe\" is not a boolean"
        )
    );
    assert!(!items.contains_key("team"), "{items:?}");
    assert_eq!(h.requests("GET /{org}/_apis/teams"), 0);
    let (report, items) = h.crawl(&[refused, plan("member", json!({}))]).await;
    assert_eq!(report.failed_kinds(), ["team"]);
    assert_eq!(
        items["member"].len(),
        6,
        "the other kinds are read as usual"
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn members_come_one_per_team_membership_with_the_team_id() {
    let h = harness(AdoSimConfig::default(), pages(1), &[]).await;
    let items = h.crawl_ok(&[plan("member", json!({}))]).await;
    // Two members in each of three teams.
    let members = counted(&items, "member", 6);
    let team_ids: Vec<String> = h
        .sim
        .projects()
        .iter()
        .filter_map(|p| p["defaultTeam"]["id"].as_str().map(String::from))
        .collect();
    for member in members {
        let team = member["__teamId"].as_str().expect("__teamId");
        assert!(team_ids.iter().any(|t| t == team), "{member}");
        assert!(member["identity"]["descriptor"].is_string());
    }
    assert_eq!(
        members.iter().filter(|m| m["isTeamAdmin"] == true).count(),
        3,
        "one admin a team"
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn users_from_entitlements_page_by_token_or_by_skip_for_old_api_versions() {
    let h = harness(identity_pages(3), pages(3), &[]).await;
    let route = "GET /{org}/_apis/userentitlements";
    let items = h
        .crawl_ok(&[plan(
            "user",
            json!({"includeFields": ["projects", "license"]}),
        )])
        .await;
    // Four users over two token pages.
    let users = counted(&items, "user", 4);
    h.assert_requests(route, 2);
    assert!(
        users
            .iter()
            .all(|u| u["accessLevel"]["licenseDisplayName"].is_string()
                && u["user"]["principalName"].is_string()
                && u["lastAccessedDate"].is_string())
    );
    assert!(
        users.iter().any(|u| !u["projectEntitlements"]
            .as_array()
            .expect("array")
            .is_empty()),
        "select=projects fills projectEntitlements"
    );

    let items = h
        .crawl_ok(&[plan(
            "user",
            json!({"source": "entitlements", "apiVersion": "6.0-preview.3"}),
        )])
        .await;
    assert_eq!(items["user"].len(), 4, "top/skip pages of three");
    h.assert_requests(route, 4);
    assert!(
        items["user"].iter().all(|u| u["projectEntitlements"]
            .as_array()
            .is_some_and(Vec::is_empty)),
        "no select, no project entitlements"
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn graph_users_carry_their_groups_and_projects_when_asked() {
    let h = harness(identity_pages(3), CrawlLimits::default(), &[]).await;
    let items = h
        .crawl_ok(&[plan("user", json!({"source": "graph"}))])
        .await;
    let users = counted(&items, "user", 4);
    h.assert_requests("GET /{org}/_apis/graph/users", 2);
    assert!(users.iter().all(|u| u["subjectKind"] == "user"
        && u["origin"] == "aad"
        && u["descriptor"].is_string()
        && u.get("__groups").is_none()));

    let items = h
        .crawl_ok(&[plan(
            "user",
            json!({"source": "graph", "includeGroupMemberships": true}),
        )])
        .await;
    let users = &items["user"];
    let ada = users
        .iter()
        .find(|u| u["principalName"] == "ada@acme.example")
        .expect("user 0");
    let groups = strings(
        ada["__groups"].as_array().expect("__groups"),
        "/principalName",
    );
    assert_eq!(groups.len(), 4, "{groups:?}");
    assert!(groups.contains(&"[acme]\\Project Collection Administrators"));
    assert!(groups.contains(&"[project-0]\\Contributors"));
    assert!(groups.contains(&"[project 1]\\Readers"));
    assert_eq!(
        ada["__projects"],
        json!(["project 1", "project-0", "project-2"]),
        "sorted, organization groups left out"
    );
    // Every user's memberships, then one lookup per page of users.
    h.assert_requests("GET /{org}/_apis/graph/memberships/{descriptor}", 4);
    h.assert_requests("POST /{org}/_apis/graph/subjectlookup", 2);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn groups_and_their_direct_members() {
    let h = harness(identity_pages(2), CrawlLimits::default(), &[]).await;
    let items = h
        .crawl_ok(&[plan("group", json!({})), plan("group-member", json!({}))])
        .await;
    // Collection administrators + two groups a project.
    let groups = counted(&items, "group", 7);
    assert!(groups.iter().all(|g| {
        g["subjectKind"] == "group"
            && g["descriptor"]
                .as_str()
                .is_some_and(|d| d.starts_with("vssgp."))
            && g["_links"]["memberships"]["href"].is_string()
    }));
    let members = &items["group-member"];
    // 4 users split over each project's two groups, plus user 0 and one nested group.
    assert_eq!(members.len(), 3 * 4 + 2);
    let nested = members
        .iter()
        .find(|m| m["subjectKind"] == "group")
        .expect("a group member that is a group");
    assert_eq!(
        nested["__group"]["principalName"],
        "[acme]\\Project Collection Administrators"
    );
    assert_eq!(nested["principalName"], "[project-0]\\Contributors");
    assert!(
        members
            .iter()
            .all(|m| m["__group"]["descriptor"].is_string())
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn iterations_read_every_page_of_teams_and_area_trees_flatten() {
    let h = harness(AdoSimConfig::default(), pages(1), &[]).await;
    let items = h
        .crawl_ok(&[plan("iteration", json!({})), plan("area-path", json!({}))])
        .await;
    // Three sprints of one team in three projects.
    let iterations = counted(&items, "iteration", 9);
    // The teams come from the organization's list, read once (pages of one team: three and
    // an empty one), not from one list per project.
    h.assert_requests("GET /{org}/_apis/teams", 4);
    h.assert_requests("GET /{org}/_apis/projects/{project}/teams", 0);
    for iteration in iterations {
        assert!(iteration["attributes"]["timeFrame"].is_string());
        assert!(iteration["attributes"]["startDate"].is_string());
        assert_eq!(
            iteration["__team"]["projectId"],
            iteration["__project"]["id"]
        );
    }
    // No depth: the root area of each project.
    let roots = counted(&items, "area-path", 3);
    assert!(
        roots.iter().all(|a| a["__parentIdentifier"].is_null()
            && a["__normalizedPath"] == a["__project"]["name"])
    );

    let items = h.crawl_ok(&[plan("area-path", json!({"depth": 2}))]).await;
    let areas = counted(&items, "area-path", 12);
    let api = areas
        .iter()
        .find(|a| a["path"] == "\\project-0\\Area\\Backend\\API")
        .expect("a leaf area");
    assert_eq!(api["__normalizedPath"], "project-0\\Backend\\API");
    let backend = areas
        .iter()
        .find(|a| a["path"] == "\\project-0\\Area\\Backend")
        .expect("its parent");
    assert_eq!(api["__parentIdentifier"], backend["identifier"]);
    assert!(areas.iter().all(|a| a.get("children").is_none()));
    h.sim.shutdown().await;
}

#[tokio::test]
async fn excluded_tags_drop_a_tagged_project_from_project_derived_kinds_only() {
    let h = harness(AdoSimConfig::default(), CrawlLimits::default(), &["Legacy"]).await;
    let tagged = h.sim.projects()[0]["id"].as_str().expect("id").to_string();
    let items = h
        .crawl_ok(&[
            plan("project", json!({})),
            plan("iteration", json!({})),
            plan("area-path", json!({})),
            plan("repository", json!({})),
            plan("team", json!({})),
            plan("member", json!({})),
            plan("group", json!({})),
        ])
        .await;
    let project_derived = [
        ("project", 2),
        ("iteration", 6),
        ("area-path", 2),
        ("repository", 8),
    ];
    // Organization-level kinds are not filtered.
    let organization_level = [("team", 3), ("member", 6), ("group", 7)];
    for (kind, count) in project_derived.into_iter().chain(organization_level) {
        assert_eq!(items[kind].len(), count, "{kind}");
    }
    for (kind, project_id) in [("project", "/id"), ("repository", "/project/id")] {
        let projects = strings(&items[kind], project_id);
        assert!(projects.iter().all(|id| *id != tagged), "{kind}");
    }
    // Tags are read once per project per resync.
    h.assert_requests("GET /{org}/_apis/projects/{project}/properties", 3);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn a_forbidden_project_marks_iteration_and_area_path_failed_and_keeps_the_others() {
    let h = harness(AdoSimConfig::default(), CrawlLimits::default(), &["legacy"]).await;
    h.forbid_project(1);
    let (report, items) = h
        .crawl(&[plan("iteration", json!({})), plan("area-path", json!({}))])
        .await;
    assert_eq!(report.failed_kinds(), vec!["area-path", "iteration"]);
    let failure = failure(&report, "iteration");
    assert!(
        failure.contains("project project 1") && failure.contains("403"),
        "{failure}"
    );
    // Project 0 is excluded by its tag, project 1 is forbidden (its tags unreadable: kept,
    // then failed), project 2 is read.
    assert_eq!(items["iteration"].len(), 3);
    assert_eq!(items["area-path"].len(), 1);
    assert_eq!(items["area-path"][0]["__project"]["name"], "project-2");
    h.sim.shutdown().await;
}

/// `group`, `group-member` and graph users with their groups in one resync list the groups
/// once and resolve the groups memberships name from that list (no `subjectlookup` for the
/// users, one for every group's members together), and each publishes exactly what it
/// publishes crawled alone; with a shared-read limit the list passes, each kind lists the
/// groups and looks them up, as before, and publishes the same.
#[tokio::test]
async fn identity_kinds_read_the_groups_once_and_publish_what_each_does_alone() {
    let kinds = [
        ("group", json!({})),
        ("group-member", json!({})),
        (
            "user",
            json!({"source": "graph", "includeGroupMemberships": true}),
        ),
    ];
    let routes = [
        "GET /{org}/_apis/graph/groups",
        "GET /{org}/_apis/graph/memberships/{descriptor}",
        "POST /{org}/_apis/graph/subjectlookup",
    ];
    // 7 groups in pages of 2 (4 pages), 4 users in pages of 2: groups listed once; 4 + 7
    // memberships; lookups: none for the users' groups, one for every group's members.
    // Not kept: the first page read then given up on, and `group` and `group-member` list
    // the 4 pages each; the users' groups looked up per page of users (2), the members per
    // page of groups (4).
    // The same with one kind at a time.
    for (limit, at_once, expected) in [
        (SHARED_READ_BYTES, 4, [4, 11, 1]),
        (SHARED_READ_BYTES, 1, [4, 11, 1]),
        (1, 4, [9, 11, 6]),
    ] {
        let h = crawl_harness(identity_pages(2), "sim-pat", "org-kinds.", |crawler| {
            (crawler.with_shared_read_bytes(limit)).with_concurrent_kinds(at_once)
        })
        .await;
        let mut alone = BTreeMap::new();
        for (kind, selector) in &kinds {
            let items = h.crawl_ok(&[plan(kind, selector.clone())]).await;
            alone.insert(*kind, sorted(&items, kind));
        }
        assert_eq!(alone["group-member"].len(), 3 * 4 + 2);
        let before = counts(&h, &routes);
        let together = h.crawl_ok(&plans(&kinds)).await;
        let made: Vec<u64> = (counts(&h, &routes).iter().zip(&before))
            .map(|(after, before)| after - before)
            .collect();
        assert_eq!(
            made, expected,
            "limit {limit}, {at_once} at once: {routes:?}"
        );
        for (kind, _) in &kinds {
            assert_eq!(
                sorted(&together, kind),
                alone[kind],
                "limit {limit}, {at_once} at once: {kind}"
            );
        }
        h.sim.shutdown().await;
    }
}

/// `team` with `includeMembers` and `member` in one resync read each team's members once
/// (kept for the other only until it took them), and each publishes exactly what it publishes
/// crawled alone; past the shared-read limit each reads them itself, and publishes the same.
#[tokio::test]
async fn team_members_are_read_once_for_team_and_member() {
    let kinds = [
        ("team", json!({"includeMembers": true})),
        ("team", json!({})),
        ("member", json!({})),
    ];
    let route = "GET /{org}/_apis/projects/{project}/teams/{team}/members";
    // Three teams, one page of members each; with one kind at a time, `team` keeps every
    // team's members until `member` takes them.
    for (limit, at_once, expected) in [
        (SHARED_READ_BYTES, 4, 3),
        (SHARED_READ_BYTES, 1, 3),
        (1, 4, 6),
    ] {
        let h = crawl_harness(
            AdoSimConfig::default(),
            "sim-pat",
            "org-kinds.",
            |crawler| (crawler.with_shared_read_bytes(limit)).with_concurrent_kinds(at_once),
        )
        .await;
        let mut alone = BTreeMap::new();
        for (kind, selector) in &kinds[..1] {
            let items = h.crawl_ok(&[plan(kind, selector.clone())]).await;
            alone.insert(*kind, sorted(&items, kind));
        }
        let items = h.crawl_ok(&[plan("member", json!({}))]).await;
        alone.insert("member", sorted(&items, "member"));
        assert_eq!(alone["member"].len(), 6);
        let before = h.requests(route);
        let (report, together) = h.crawl(&plans(&kinds)).await;
        assert_eq!(report.failed_kinds(), Vec::<&str>::new(), "{report:?}");
        assert_eq!(
            h.requests(route) - before,
            expected,
            "limit {limit}, {at_once} at once"
        );
        assert_eq!(sorted(&together, "member"), alone["member"]);
        let with_members: Vec<String> = (together["team"].iter())
            .filter(|team| team.get("__members").is_some())
            .map(Value::to_string)
            .collect();
        let mut with_members = with_members;
        with_members.sort();
        assert_eq!(
            with_members, alone["team"],
            "limit {limit}, {at_once} at once"
        );
        h.sim.shutdown().await;
    }
}
