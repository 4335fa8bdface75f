//! The organization, team and identity kinds against the Azure DevOps simulator: `team`
//! selectors, `member`, `user` (entitlements and graph), `group`, `group-member`, `iteration`,
//! `area-path`, page boundaries, `excludedTags` and a 403 on one project.

use adoport_ingest::CrawlLimits;
use adoport_sim::ado::{AdoSim, AdoSimConfig};
use serde_json::{Value, json};

mod support;

use support::crawl::{CrawlHarness, crawl_harness, plan, plan_with};

async fn harness(
    config: AdoSimConfig,
    limits: CrawlLimits,
    excluded_tags: &[&str],
) -> CrawlHarness {
    let sim = AdoSim::start(config).await.expect("simulator starts");
    let tags: Vec<String> = excluded_tags.iter().map(|t| t.to_string()).collect();
    crawl_harness(sim, "sim-pat", "org-kinds.", |crawler| {
        crawler.with_limits(limits).with_excluded_tags(&tags)
    })
    .await
}

fn small_pages(page: usize) -> CrawlLimits {
    CrawlLimits {
        page,
        ..CrawlLimits::default()
    }
}

fn strings<'a>(items: &'a [Value], pointer: &str) -> Vec<&'a str> {
    items
        .iter()
        .filter_map(|i| i.pointer(pointer).and_then(Value::as_str))
        .collect()
}

#[tokio::test]
async fn teams_carry_members_and_area_paths_only_when_asked() {
    let h = harness(AdoSimConfig::default(), small_pages(2), &[]).await;
    let (report, items) = h.crawl(&[plan("team", json!({}))]).await;
    assert_eq!(report.failed_kinds(), Vec::<&str>::new());
    let teams = &items["team"];
    assert_eq!(
        teams.len(),
        3,
        "three projects, one team each, over two pages"
    );
    assert!(
        teams
            .iter()
            .all(|t| t.get("__members").is_none() && t.get("__areaPaths").is_none())
    );
    assert_eq!(h.requests("GET /{org}/_apis/teams"), 2);

    let (report, items) = h
        .crawl(&[plan(
            "team",
            json!({"includeMembers": "true", "includeAreaPaths": true}),
        )])
        .await;
    assert_eq!(report.failed_kinds(), Vec::<&str>::new());
    let teams = &items["team"];
    assert_eq!(teams.len(), 3);
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
    assert_eq!(
        h.requests("GET /{org}/_apis/projects/{project}/teams/{team}/members"),
        6
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn a_selector_its_model_refuses_fails_the_kind_without_reading_it() {
    let h = harness(AdoSimConfig::default(), small_pages(2), &[]).await;
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
    let h = harness(AdoSimConfig::default(), small_pages(1), &[]).await;
    let (report, items) = h.crawl(&[plan("member", json!({}))]).await;
    assert_eq!(report.failed_kinds(), Vec::<&str>::new());
    let members = &items["member"];
    assert_eq!(members.len(), 6, "two members in each of three teams");
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
    let config = AdoSimConfig {
        identity_page_size: 3,
        ..AdoSimConfig::default()
    };
    let h = harness(config, small_pages(3), &[]).await;
    let route = "GET /{org}/_apis/userentitlements";
    let (report, items) = h
        .crawl(&[plan(
            "user",
            json!({"includeFields": ["projects", "license"]}),
        )])
        .await;
    assert_eq!(report.failed_kinds(), Vec::<&str>::new());
    let users = &items["user"];
    assert_eq!(users.len(), 4, "four users over two token pages");
    assert_eq!(h.requests(route), 2);
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

    let (report, items) = h
        .crawl(&[plan(
            "user",
            json!({"source": "entitlements", "apiVersion": "6.0-preview.3"}),
        )])
        .await;
    assert_eq!(report.failed_kinds(), Vec::<&str>::new());
    assert_eq!(items["user"].len(), 4, "top/skip pages of three");
    assert_eq!(h.requests(route), 4);
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
    let config = AdoSimConfig {
        identity_page_size: 3,
        ..AdoSimConfig::default()
    };
    let h = harness(config, CrawlLimits::default(), &[]).await;
    let (report, items) = h.crawl(&[plan("user", json!({"source": "graph"}))]).await;
    assert_eq!(report.failed_kinds(), Vec::<&str>::new());
    let users = &items["user"];
    assert_eq!(users.len(), 4);
    assert_eq!(h.requests("GET /{org}/_apis/graph/users"), 2);
    assert!(users.iter().all(|u| u["subjectKind"] == "user"
        && u["origin"] == "aad"
        && u["descriptor"].is_string()
        && u.get("__groups").is_none()));

    let (report, items) = h
        .crawl(&[plan(
            "user",
            json!({"source": "graph", "includeGroupMemberships": true}),
        )])
        .await;
    assert_eq!(report.failed_kinds(), Vec::<&str>::new());
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
    assert_eq!(
        h.requests("GET /{org}/_apis/graph/memberships/{descriptor}"),
        4
    );
    assert_eq!(h.requests("POST /{org}/_apis/graph/subjectlookup"), 2);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn groups_and_their_direct_members() {
    let config = AdoSimConfig {
        identity_page_size: 2,
        ..AdoSimConfig::default()
    };
    let h = harness(config, CrawlLimits::default(), &[]).await;
    let (report, items) = h
        .crawl(&[plan("group", json!({})), plan("group-member", json!({}))])
        .await;
    assert_eq!(report.failed_kinds(), Vec::<&str>::new());
    let groups = &items["group"];
    assert_eq!(
        groups.len(),
        7,
        "collection administrators + two groups a project"
    );
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
    let h = harness(AdoSimConfig::default(), small_pages(1), &[]).await;
    let (report, items) = h
        .crawl(&[plan("iteration", json!({})), plan("area-path", json!({}))])
        .await;
    assert_eq!(report.failed_kinds(), Vec::<&str>::new());
    let iterations = &items["iteration"];
    assert_eq!(
        iterations.len(),
        9,
        "three sprints of one team in three projects"
    );
    // Pages of one team: every project's team list is read twice (the second page is empty).
    assert_eq!(h.requests("GET /{org}/_apis/projects/{project}/teams"), 6);
    for iteration in iterations {
        assert!(iteration["attributes"]["timeFrame"].is_string());
        assert!(iteration["attributes"]["startDate"].is_string());
        assert_eq!(
            iteration["__team"]["projectId"],
            iteration["__project"]["id"]
        );
    }
    let roots = &items["area-path"];
    assert_eq!(roots.len(), 3, "no depth: the root area of each project");
    assert!(
        roots.iter().all(|a| a["__parentIdentifier"].is_null()
            && a["__normalizedPath"] == a["__project"]["name"])
    );

    let (report, items) = h.crawl(&[plan("area-path", json!({"depth": 2}))]).await;
    assert_eq!(report.failed_kinds(), Vec::<&str>::new());
    let areas = &items["area-path"];
    assert_eq!(areas.len(), 12);
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
    let (report, items) = h
        .crawl(&[
            plan("project", json!({})),
            plan("iteration", json!({})),
            plan("area-path", json!({})),
            plan("repository", json!({})),
            plan("team", json!({})),
            plan("member", json!({})),
            plan("group", json!({})),
        ])
        .await;
    assert_eq!(report.failed_kinds(), Vec::<&str>::new());
    assert_eq!(items["project"].len(), 2);
    assert!(
        strings(&items["project"], "/id")
            .iter()
            .all(|id| *id != tagged)
    );
    assert_eq!(items["iteration"].len(), 6);
    assert_eq!(items["area-path"].len(), 2);
    assert_eq!(items["repository"].len(), 8);
    assert!(
        strings(&items["repository"], "/project/id")
            .iter()
            .all(|id| *id != tagged)
    );
    // Organization-level kinds are not filtered.
    assert_eq!(items["team"].len(), 3);
    assert_eq!(items["member"].len(), 6);
    assert_eq!(items["group"].len(), 7);
    // Tags are read once per project per resync.
    assert_eq!(
        h.requests("GET /{org}/_apis/projects/{project}/properties"),
        3
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn a_forbidden_project_marks_iteration_and_area_path_failed_and_keeps_the_others() {
    let h = harness(AdoSimConfig::default(), CrawlLimits::default(), &["legacy"]).await;
    let forbidden = h.sim.projects()[1]["id"].as_str().expect("id").to_string();
    h.sim.forbid_project(&forbidden);
    let (report, items) = h
        .crawl(&[plan("iteration", json!({})), plan("area-path", json!({}))])
        .await;
    assert_eq!(report.failed_kinds(), vec!["area-path", "iteration"]);
    let failure = report.kinds["iteration"]
        .failure
        .as_deref()
        .unwrap_or_default();
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
