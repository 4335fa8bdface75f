//! The simulator's pull-request writes over real HTTP: the state transitions Azure DevOps
//! allows and refuses, its 404s and auth, and listings that show every change.

use adoport_sim::ado::{AdoSim, AdoSimConfig};
use base64::Engine;
use serde_json::{Value, json};

fn basic(pat: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(":{pat}"))
    )
}

/// `method` on `{org}/{path}?api-version=7.1` with `body`: status and JSON answer.
async fn call(sim: &AdoSim, method: &str, path: &str, body: Value) -> (u16, Value) {
    let url = format!("{}/{path}?api-version=7.1", sim.organization_url());
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let response = reqwest::Client::new()
        .request(method, url)
        .header("Authorization", basic("sim-pat"))
        .header("X-TFS-FedAuthRedirect", "Suppress")
        .json(&body)
        .send()
        .await
        .expect("answer");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn transitions_follow_azure_devops_and_listings_show_them() {
    let sim = AdoSim::start(AdoSimConfig::default()).await.expect("start");
    let prs = sim.pull_requests();
    let active = |draft: bool| {
        prs.iter()
            .find(|pr| pr["status"] == "active" && pr["isDraft"] == draft)
            .expect("seeded")
            .clone()
    };
    let (pr, draft) = (active(false), active(true));
    let base = |pr: &Value| {
        format!(
            "{}/_apis/git/repositories/{}/pullrequests/{}",
            pr["repository"]["project"]["id"].as_str().expect("project"),
            pr["repository"]["id"].as_str().expect("repo"),
            pr["pullRequestId"]
        )
    };
    let head = pr["lastMergeSourceCommit"]["commitId"].clone();

    let (status, body) = call(
        &sim,
        "PATCH",
        &base(&draft),
        json!({"status": "completed",
        "lastMergeSourceCommit": draft["lastMergeSourceCommit"]}),
    )
    .await;
    assert_eq!(
        (
            status,
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("draft"))
        ),
        (409, true),
        "{body}"
    );
    let (status, body) = call(
        &sim,
        "PATCH",
        &base(&pr),
        json!({"status": "completed",
        "lastMergeSourceCommit": {"commitId": "0000"}}),
    )
    .await;
    assert_eq!(status, 409, "a stale source commit: {body}");
    let (status, _) = call(&sim, "PATCH", &base(&pr), json!({"status": "completed"})).await;
    assert_eq!(status, 400, "completing needs lastMergeSourceCommit");

    let (status, body) = call(&sim, "PATCH", &base(&pr), json!({"status": "abandoned"})).await;
    assert_eq!((status, body["status"].clone()), (200, json!("abandoned")));
    let project = pr["repository"]["project"]["id"].as_str().expect("project");
    let listed = |status: &str| {
        let path = format!("{project}/_apis/git/pullrequests?searchCriteria.status={status}");
        let sim = &sim;
        async move {
            let url = format!("{}/{path}&api-version=7.1", sim.organization_url());
            let body: Value = reqwest::Client::new()
                .get(url)
                .header("Authorization", basic("sim-pat"))
                .send()
                .await
                .expect("answer")
                .json()
                .await
                .expect("json");
            body["value"].as_array().cloned().unwrap_or_default()
        }
    };
    assert!(
        listed("abandoned")
            .await
            .iter()
            .any(|p| p["pullRequestId"] == pr["pullRequestId"] && p["closedDate"].is_string())
    );
    let completing = json!({"status": "completed", "lastMergeSourceCommit": {"commitId": head}});
    let (status, body) = call(&sim, "PATCH", &base(&pr), completing.clone()).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["typeKey"], "GitPullRequestNotEditableException");
    let (status, _) = call(&sim, "PATCH", &base(&pr), json!({"title": "x"})).await;
    assert_eq!(status, 409, "a closed pull request cannot be edited");

    let (status, _) = call(&sim, "PATCH", &base(&pr), json!({"status": "active"})).await;
    assert_eq!(status, 200, "an abandoned pull request may be reactivated");
    let (status, body) = call(&sim, "PATCH", &base(&pr), completing).await;
    assert_eq!(
        (status, body["status"].clone()),
        (200, json!("completed")),
        "{body}"
    );
    assert!(
        listed("completed")
            .await
            .iter()
            .any(|p| p["pullRequestId"] == pr["pullRequestId"])
    );
    let (status, _) = call(&sim, "PATCH", &base(&pr), json!({"status": "abandoned"})).await;
    assert_eq!(status, 409, "a completed pull request cannot be abandoned");

    let (status, body) = call(
        &sim,
        "POST",
        &format!("{}/threads", base(&pr)),
        json!({"comments": [{"content": "late note"}], "status": 4}),
    )
    .await;
    assert_eq!(
        (status, body["status"].clone(), body["id"].clone()),
        (200, json!("closed"), json!(1))
    );
}

#[tokio::test]
async fn unknown_objects_and_credentials_are_refused_as_azure_devops_does() {
    let sim = AdoSim::start(AdoSimConfig::default()).await.expect("start");
    let pr = sim.pull_requests().remove(0);
    let project = pr["repository"]["project"]["id"].as_str().expect("project");
    let repository = pr["repository"]["id"].as_str().expect("repo");
    let (status, body) = call(
        &sim,
        "PATCH",
        &format!("{project}/_apis/git/repositories/{repository}/pullrequests/9999"),
        json!({"title": "x"}),
    )
    .await;
    assert_eq!(
        (status, body["typeKey"].clone()),
        (404, json!("GitPullRequestNotFoundException"))
    );
    let (status, body) = call(
        &sim,
        "POST",
        &format!("{project}/_apis/git/repositories/nope/pullrequests"),
        json!({"sourceRefName": "refs/heads/a", "targetRefName": "refs/heads/main", "title": "x"}),
    )
    .await;
    assert_eq!(
        (status, body["typeKey"].clone()),
        (404, json!("GitRepositoryNotFoundException"))
    );
    let (status, body) = call(
        &sim,
        "POST",
        &format!("{project}/_apis/git/repositories/{repository}/pullrequests"),
        json!({"sourceRefName": "refs/heads/main", "targetRefName": "main", "title": "x"}),
    )
    .await;
    assert_eq!(status, 400, "same source and target: {body}");
    let (status, body) = call(
        &sim,
        "POST",
        &format!(
            "{project}/_apis/git/repositories/{repository}/pullrequests/{}/reviewers",
            pr["pullRequestId"]
        ),
        json!([{"id": "00000000-0000-0000-0000-00000000dead"}]),
    )
    .await;
    assert_eq!(status, 400, "an unknown identity: {body}");

    let refused = reqwest::Client::new()
        .patch(format!(
            "{}/{project}/_apis/git/repositories/{repository}/pullrequests/{}?api-version=7.1",
            sim.organization_url(),
            pr["pullRequestId"]
        ))
        .header("Authorization", basic("wrong"))
        .header("X-TFS-FedAuthRedirect", "Suppress")
        .json(&json!({"status": "abandoned"}))
        .send()
        .await
        .expect("answer");
    assert_eq!(refused.status().as_u16(), 401);
    assert_eq!(
        sim.pull_requests()[0]["status"],
        pr["status"],
        "nothing changed"
    );
}
