//! The Azure DevOps simulator over real HTTP: auth, api-version, paging, shapes, scripts.

use std::collections::HashSet;
use std::time::Duration;

use adoport_sim::ScriptedAnswer;
use adoport_sim::ado::{AdoSim, AdoSimConfig};
use base64::Engine;
use serde_json::Value;

fn basic(pat: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(":{pat}"))
    )
}

async fn get(sim: &AdoSim, path_and_query: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}/{path_and_query}", sim.organization_url()))
        .header("Authorization", basic("sim-pat"))
        .header("X-TFS-FedAuthRedirect", "Suppress")
        .send()
        .await
        .expect("request")
}

/// A write without `api-version` (which Azure DevOps refuses, unlike a read).
async fn unversioned_post(sim: &AdoSim) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!(
            "{}/_apis/wit/workitemsbatch",
            sim.organization_url()
        ))
        .header("Authorization", basic("sim-pat"))
        .json(&serde_json::json!({"ids": [1]}))
        .send()
        .await
        .expect("request")
}

/// A simulator of `config` with one repository per project.
async fn start_with_one_repository_each(config: AdoSimConfig) -> AdoSim {
    AdoSim::start(AdoSimConfig {
        repositories_per_project: 1,
        ..config
    })
    .await
    .expect("start")
}

#[tokio::test]
async fn bad_pat_gets_sign_in_page_or_401_when_suppressed() {
    let sim = AdoSim::start(AdoSimConfig::default()).await.expect("start");
    let url = format!("{}/_apis/projects?api-version=7.1", sim.organization_url());
    let client = reqwest::Client::new();
    let page = client
        .get(&url)
        .header("Authorization", basic("wrong"))
        .send()
        .await
        .expect("send");
    assert_eq!(page.status().as_u16(), 203);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().await.unwrap().contains("Sign In"));

    let refused = client
        .get(&url)
        .header("X-TFS-FedAuthRedirect", "Suppress")
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status().as_u16(), 401);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["typeKey"], "UnauthorizedRequestException");
    assert!(body["message"].as_str().unwrap().starts_with("TF400813"));

    let accepted = client
        .get(&url)
        .header(
            "Authorization",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("anyone:sim-pat")
            ),
        )
        .send()
        .await
        .expect("send");
    assert_eq!(accepted.status().as_u16(), 200);
    assert_eq!(sim.requests()["GET /{org}/_apis/projects"], 3);
}

#[tokio::test]
async fn api_version_is_required_query_or_accept() {
    let sim = AdoSim::start(AdoSimConfig::default()).await.expect("start");
    // A read without one gets the latest version.
    assert_eq!(get(&sim, "_apis/projects").await.status().as_u16(), 200);
    let missing = unversioned_post(&sim).await;
    assert_eq!(missing.status().as_u16(), 400);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["typeKey"], "VssVersionNotSpecifiedException");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("No api-version was supplied for the \"POST\" request")
    );

    let via_accept = reqwest::Client::new()
        .get(format!("{}/_apis/projects", sim.organization_url()))
        .header("Authorization", basic("sim-pat"))
        .header("Accept", "application/json; api-version=7.1")
        .send()
        .await
        .unwrap();
    assert_eq!(via_accept.status().as_u16(), 200);
}

#[tokio::test]
async fn continuation_tokens_return_every_project_once() {
    let sim = start_with_one_repository_each(AdoSimConfig {
        projects: 23,
        max_page_size: 5,
        ..AdoSimConfig::default()
    })
    .await;
    let mut seen = HashSet::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = "_apis/projects?api-version=7.1&$top=50".to_string();
        if let Some(t) = &token {
            path.push_str(&format!("&continuationToken={t}"));
        }
        let response = get(&sim, &path).await;
        assert_eq!(response.status().as_u16(), 200);
        token = response
            .headers()
            .get("x-ms-continuationtoken")
            .map(|v| v.to_str().unwrap().to_string());
        let body: Value = response.json().await.unwrap();
        let values = body["value"].as_array().unwrap();
        assert!(values.len() <= 5, "$top is capped at max_page_size");
        assert_eq!(body["count"], values.len());
        for project in values {
            assert!(
                seen.insert(project["id"].as_str().unwrap().to_string()),
                "duplicate"
            );
            assert_eq!(project["state"], "wellFormed");
        }
        pages += 1;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 23);
    assert_eq!(pages, 5);
}

#[tokio::test]
async fn shapes_follow_the_reference_examples() {
    let sim = AdoSim::start(AdoSimConfig::default()).await.expect("start");
    let project = sim.projects()[1].clone();
    let id = project["id"].as_str().unwrap();
    assert_eq!(project["name"], "project 1");
    assert_eq!(
        project["url"],
        format!("{}/_apis/projects/{id}", sim.organization_url())
    );

    let full: Value = get(
        &sim,
        &format!("_apis/projects/{id}?api-version=7.1&includeCapabilities=true"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(full, project);
    assert_eq!(full["defaultTeam"]["name"], "project 1 Team");
    assert!(
        full["_links"]["web"]["href"]
            .as_str()
            .unwrap()
            .ends_with("/project%201")
    );

    let repos: Value = get(
        &sim,
        &format!("{id}/_apis/git/repositories?api-version=7.1"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(repos["count"], 4);
    let repo = &repos["value"][0];
    for field in [
        "id",
        "name",
        "url",
        "project",
        "defaultBranch",
        "size",
        "remoteUrl",
        "sshUrl",
        "webUrl",
        "isDisabled",
        "isInMaintenance",
    ] {
        assert!(repo.get(field).is_some(), "repository field {field}");
    }
    let by_name = get(
        &sim,
        &format!(
            "project%201/_apis/git/repositories/{}?api-version=7.1",
            repo["name"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(by_name.json::<Value>().await.unwrap(), *repo);
    assert_eq!(
        sim.repositories()
            .iter()
            .filter(|r| r["isDisabled"] == true)
            .count(),
        1
    );

    let missing = get(&sim, "_apis/projects/nope?api-version=7.1").await;
    assert_eq!(missing.status().as_u16(), 404);
    assert!(
        missing.json::<Value>().await.unwrap()["message"]
            .as_str()
            .unwrap()
            .starts_with("TF200016")
    );
    let missing = get(
        &sim,
        "_apis/git/repositories/00000000-0000-0000-0000-000000000000?api-version=7.1",
    )
    .await;
    assert!(
        missing.json::<Value>().await.unwrap()["message"]
            .as_str()
            .unwrap()
            .starts_with("TF401019")
    );

    let readme = get(
        &sim,
        &format!(
            "_apis/git/repositories/{}/items?path=README.md&api-version=7.1",
            repo["id"].as_str().unwrap()
        ),
    )
    .await;
    assert!(readme.text().await.unwrap().starts_with("# "));

    let rename_id = repo["id"].as_str().unwrap().to_string();
    sim.rename_repository(&rename_id, "renamed");
    let renamed: Value = get(
        &sim,
        &format!("_apis/git/repositories/{rename_id}?api-version=7.1"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(renamed["name"], "renamed");
}

#[tokio::test]
async fn pull_requests_page_with_top_and_skip() {
    let sim = start_with_one_repository_each(AdoSimConfig {
        projects: 1,
        pull_requests_per_repository: 7,
        ..AdoSimConfig::default()
    })
    .await;
    let repo = sim.repositories()[0].clone();
    let (project, repo_id) = (
        repo["project"]["id"].as_str().unwrap(),
        repo["id"].as_str().unwrap(),
    );
    let mut ids = Vec::new();
    let mut skip = 0;
    loop {
        let page: Value = get(
            &sim,
            &format!("{project}/_apis/git/repositories/{repo_id}/pullrequests?searchCriteria.status=all&$top=3&$skip={skip}&api-version=7.1"),
        )
        .await
        .json()
        .await
        .unwrap();
        let values = page["value"].as_array().unwrap();
        if values.is_empty() {
            break;
        }
        ids.extend(
            values
                .iter()
                .map(|pr| pr["pullRequestId"].as_u64().unwrap()),
        );
        skip += values.len();
    }
    assert_eq!(ids.len(), 7);
    let active: Value = get(
        &sim,
        &format!("{project}/_apis/git/repositories/{repo_id}/pullrequests?api-version=7.1"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(active["count"], 5, "two of seven are completed");
    let one: Value = get(
        &sim,
        &format!("_apis/git/pullrequests/{}?api-version=7.1", ids[0]),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(one["repository"]["id"], repo_id);
    for field in [
        "pullRequestId",
        "codeReviewId",
        "status",
        "createdBy",
        "creationDate",
        "title",
        "sourceRefName",
        "targetRefName",
        "mergeStatus",
        "isDraft",
        "reviewers",
        "url",
    ] {
        assert!(one.get(field).is_some(), "pull request field {field}");
    }
}

#[tokio::test]
async fn scripted_429_carries_retry_after_then_normal_answers() {
    let sim = AdoSim::start(AdoSimConfig::default()).await.expect("start");
    let route = "GET /{org}/{project}/_apis/git/repositories";
    sim.fail_next(
        route,
        vec![ScriptedAnswer::rate_limited(7), ScriptedAnswer::status(503)],
    );
    let project = sim.projects()[0]["id"].as_str().unwrap().to_string();
    let path = format!("{project}/_apis/git/repositories?api-version=7.1");
    let limited = get(&sim, &path).await;
    assert_eq!(limited.status().as_u16(), 429);
    assert_eq!(limited.headers()["retry-after"], "7");
    for name in [
        "x-ratelimit-resource",
        "x-ratelimit-delay",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ] {
        assert!(limited.headers().contains_key(name), "{name}");
    }
    assert!(
        limited.json::<Value>().await.unwrap()["message"]
            .as_str()
            .unwrap()
            .starts_with("TF400733")
    );
    assert_eq!(get(&sim, &path).await.status().as_u16(), 503);
    assert_eq!(get(&sim, &path).await.status().as_u16(), 200);
    sim.fail_next(route, vec![ScriptedAnswer::ok_with_retry_after(2)]);
    let slowed = get(&sim, &path).await;
    assert_eq!(slowed.status().as_u16(), 200);
    assert_eq!(slowed.headers()["retry-after"], "2");
    assert_eq!(sim.requests()[route], 4);
    assert!(
        sim.wait_for(|s| s.total_requests() == 4, Duration::from_secs(1))
            .await
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn single_reads_answer_what_the_lists_hold_and_404_past_them() {
    let sim = AdoSim::start(AdoSimConfig::default()).await.expect("start");
    let project = sim.projects()[0]["id"].as_str().expect("id").to_string();
    let json = |r: reqwest::Response| async move {
        assert_eq!(r.status().as_u16(), 200);
        r.json::<Value>().await.expect("JSON")
    };
    let runs = json(
        get(
            &sim,
            &format!("{project}/_apis/pipelines/2/runs?api-version=7.1"),
        )
        .await,
    )
    .await;
    let run = json(
        get(
            &sim,
            &format!("{project}/_apis/pipelines/2/runs/4?api-version=7.1"),
        )
        .await,
    )
    .await;
    assert!(
        runs["value"].as_array().expect("runs").contains(&run),
        "{run}"
    );
    let wrong_pipeline = get(
        &sim,
        &format!("{project}/_apis/pipelines/1/runs/4?api-version=7.1"),
    )
    .await;
    assert_eq!(wrong_pipeline.status().as_u16(), 404);
    let body: Value = wrong_pipeline.json().await.expect("JSON");
    assert_eq!(body["typeKey"], "PipelineRunNotFoundException");

    let of_build = json(
        get(&sim, &format!("{project}/_apis/test/runs?buildUri=vstfs:///Build/Build/2&includeRunDetails=true&api-version=7.1")).await,
    )
    .await;
    let ids: Vec<&Value> = of_build["value"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| &r["id"])
        .collect();
    assert_eq!(ids, vec![&Value::from(2)]);
    let bad_uri = get(
        &sim,
        &format!("{project}/_apis/test/runs?buildUri=2&api-version=7.1"),
    )
    .await;
    assert_eq!(bad_uri.status().as_u16(), 400);

    let repository = sim.repositories()[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let alerts = format!("{project}/_apis/alert/repositories/{repository}/alerts");
    let listed = json(get(&sim, &format!("{alerts}?api-version=7.2-preview.1")).await).await;
    let one = json(get(&sim, &format!("{alerts}/1?api-version=7.2-preview.1")).await).await;
    assert_eq!(listed["value"][0], one);
    sim.set_alert_state(&repository, 1, "dismissed");
    let dismissed = json(get(&sim, &format!("{alerts}/1?api-version=7.2-preview.1")).await).await;
    assert_eq!(dismissed["state"], "dismissed");
    assert!(dismissed["dismissal"].is_object(), "{dismissed}");
    let missing = get(&sim, &format!("{alerts}/99?api-version=7.2-preview.1")).await;
    assert_eq!(missing.status().as_u16(), 404);
    sim.shutdown().await;
}

/// The status of `GET {path}` and Azure DevOps' `typeKey` and message code (`TF…`) when it is
/// an error.
async fn read(sim: &AdoSim, path: &str) -> (u16, String, String) {
    let answer = get(sim, &format!("{path}?api-version=7.1")).await;
    let status = answer.status().as_u16();
    let body: Value = answer.json().await.expect("JSON body");
    let text = |key: &str| body[key].as_str().unwrap_or_default().to_string();
    let code = text("message")
        .split(':')
        .next()
        .unwrap_or_default()
        .to_string();
    (
        status,
        text("typeKey"),
        if status == 200 { String::new() } else { code },
    )
}

/// Checks what each `GET {path}` answers: 200 (`None`), or a 404 with Azure DevOps'
/// `typeKey` and message code.
async fn expect_reads(sim: &AdoSim, expected: &[(&str, Option<(&str, &str)>)]) {
    for (path, gone) in expected {
        let answer = match gone {
            None => (200, String::new(), String::new()),
            Some((type_key, code)) => (404, type_key.to_string(), code.to_string()),
        };
        assert_eq!(read(sim, path).await, answer, "GET {path}");
    }
}

#[tokio::test]
async fn deleted_objects_answer_azure_devops_404s_until_restored() {
    let sim = AdoSim::start(AdoSimConfig::default()).await.expect("start");
    let repository = sim.repositories()[0].clone();
    let text = |value: &Value| value.as_str().expect("a string").to_string();
    let (repository_id, project) = (text(&repository["id"]), text(&repository["project"]["id"]));
    let pull_request = sim
        .pull_requests()
        .into_iter()
        .find(|pr| pr["repository"]["id"] == repository["id"])
        .expect("a pull request of the repository")["pullRequestId"]
        .as_u64()
        .expect("id");
    let repo_path = format!("_apis/git/repositories/{repository_id}");
    let pr_path = format!("_apis/git/pullrequests/{pull_request}");
    let work_item = "_apis/wit/workitems/1";
    let project_repositories = format!("{project}/_apis/git/repositories");
    let repository_gone = Some(("GitRepositoryNotFoundException", "TF401019"));

    assert!(sim.remove_repository(&repository_id));
    assert!(!sim.remove_repository(&repository_id), "already in the bin");
    let pull_request_gone = Some(("GitPullRequestNotFoundException", "TF401180"));
    expect_reads(
        &sim,
        &[(&repo_path, repository_gone), (&pr_path, pull_request_gone)],
    )
    .await;
    assert!(sim.restore_repository(&repository_id));
    expect_reads(&sim, &[(&repo_path, None), (&pr_path, None)]).await;

    assert!(sim.remove_work_item(1));
    let work_item_gone = Some(("WorkItemUnauthorizedAccessException", "TF401232"));
    expect_reads(&sim, &[(work_item, work_item_gone)]).await;
    assert!(sim.restore_work_item(1));
    expect_reads(&sim, &[(work_item, None)]).await;

    assert!(sim.remove_project(&project));
    let project_gone = Some(("ProjectDoesNotExistWithNameException", "TF200016"));
    expect_reads(
        &sim,
        &[
            (&project_repositories, project_gone),
            (&repo_path, repository_gone),
        ],
    )
    .await;
    assert!(sim.restore_project(&project));
    expect_reads(&sim, &[(&repo_path, None)]).await;
    assert_eq!(sim.projects().len(), 3);
    sim.shutdown().await;
}

/// The budget answers as Azure DevOps does: every answer (errors too) carries the
/// `X-RateLimit-*` headers; past the budget the next answers are delayed (200 with
/// `Retry-After`), then blocked (429 `TF400733` with `Retry-After` and the budget's headers).
#[tokio::test]
async fn the_budget_heads_every_answer_delays_then_blocks() {
    let sim = AdoSim::start(AdoSimConfig {
        rate_limit: Some(adoport_sim::RateLimit {
            requests: 3,
            per: Duration::from_secs(60),
        }),
        rate_limit_delayed: 1,
        ..AdoSimConfig::default()
    })
    .await
    .expect("start");
    let header = |response: &reqwest::Response, name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().expect("text").to_string())
    };
    let first = get(&sim, "_apis/projects?api-version=7.1").await;
    assert_eq!(first.status().as_u16(), 200);
    assert_eq!(header(&first, "x-ratelimit-limit").as_deref(), Some("3"));
    assert_eq!(
        header(&first, "x-ratelimit-remaining").as_deref(),
        Some("2")
    );
    assert_eq!(header(&first, "retry-after"), None);
    // An error answer is metered and headed too.
    let missing = get(&sim, "_apis/git/repositories/nope?api-version=7.1").await;
    assert_eq!(missing.status().as_u16(), 404);
    assert_eq!(
        header(&missing, "x-ratelimit-remaining").as_deref(),
        Some("1")
    );
    let no_version = unversioned_post(&sim).await;
    assert_eq!(no_version.status().as_u16(), 400);
    assert_eq!(
        header(&no_version, "x-ratelimit-remaining").as_deref(),
        Some("0")
    );
    // Past the budget: still answered, with the advice to wait.
    let delayed = get(&sim, "_apis/projects?api-version=7.1").await;
    assert_eq!(delayed.status().as_u16(), 200);
    assert_eq!(
        header(&delayed, "x-ratelimit-remaining").as_deref(),
        Some("0")
    );
    let advice: u64 = header(&delayed, "retry-after")
        .expect("Retry-After on the delayed 200")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&advice), "{advice}");
    assert!(header(&delayed, "x-ratelimit-delay").is_some());
    // Past the delayed ones: blocked, with the real budget in the headers.
    let blocked = get(&sim, "_apis/projects?api-version=7.1").await;
    assert_eq!(blocked.status().as_u16(), 429);
    assert_eq!(header(&blocked, "x-ratelimit-limit").as_deref(), Some("3"));
    let wait: u64 = header(&blocked, "retry-after")
        .expect("Retry-After on the 429")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&wait), "{wait}");
    let reset: i64 = header(&blocked, "x-ratelimit-reset")
        .expect("reset")
        .parse()
        .expect("epoch");
    let now = chrono::Utc::now().timestamp();
    assert!(reset > now && reset <= now + 61, "{reset} vs {now}");
    assert!(
        blocked.json::<Value>().await.unwrap()["message"]
            .as_str()
            .unwrap()
            .starts_with("TF400733")
    );
}

#[tokio::test]
async fn work_items_listed_by_ids_in_the_query() {
    let sim = AdoSim::start(AdoSimConfig::default()).await.expect("start");
    let projects: Value = get(&sim, "_apis/projects?api-version=7.1")
        .await
        .json()
        .await
        .expect("json");
    let project = projects["value"][0]["id"].as_str().expect("project id");
    let listed: Value = get(
        &sim,
        &format!("{project}/_apis/wit/workitems?ids=2,1&$expand=All"),
    )
    .await
    .json()
    .await
    .expect("json");
    let ids: Vec<u64> = listed["value"]
        .as_array()
        .expect("value")
        .iter()
        .map(|w| w["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(ids, vec![2, 1]);
    assert_eq!(listed["count"], 2);
    let unknown = format!("{project}/_apis/wit/workitems?ids=1,999999");
    assert_eq!(get(&sim, &unknown).await.status().as_u16(), 404);
    let omitted: Value = get(&sim, &format!("{unknown}&errorPolicy=Omit"))
        .await
        .json()
        .await
        .expect("json");
    assert!(omitted["value"][1].is_null());
    let malformed = format!("{project}/_apis/wit/workitems?ids=one");
    assert_eq!(get(&sim, &malformed).await.status().as_u16(), 400);
}

/// Requests being answered are counted per route from their arrival to their answer, and a
/// waiter sees them start: a test can await reads of several kinds under way at once.
#[tokio::test]
async fn requests_in_flight_are_counted_per_route_until_answered() {
    let sim = start_with_one_repository_each(AdoSimConfig {
        latency: Duration::from_millis(300),
        ..AdoSimConfig::default()
    })
    .await;
    assert!(sim.in_flight().is_empty());
    let projects = "_apis/projects?api-version=7.1";
    let repositories = "_apis/git/repositories?api-version=7.1";
    let reads = async {
        tokio::join!(
            get(&sim, projects),
            get(&sim, projects),
            get(&sim, repositories)
        )
    };
    let watch = async {
        let under_way = |sim: &AdoSim| {
            sim.in_flight().get("GET /{org}/_apis/projects") == Some(&2)
                && sim.in_flight().values().sum::<u64>() == 3
        };
        assert!(
            sim.wait_for(under_way, Duration::from_secs(5)).await,
            "{:?}",
            sim.in_flight()
        );
    };
    let ((first, second, third), ()) = tokio::join!(reads, watch);
    for answer in [first, second, third] {
        assert_eq!(answer.status().as_u16(), 200);
    }
    assert!(sim.in_flight().is_empty(), "{:?}", sim.in_flight());
}
