//! The Port simulator over real HTTP: tokens, upserts, limits, deletes, search, integration.

use std::time::Duration;

use adoport_sim::ScriptedAnswer;
use adoport_sim::port::{PortSim, PortSimConfig, RateLimit};
use serde_json::{Value, json};

/// The JSON answer to `request` (the test fails when it is not sent or not JSON).
async fn json_of(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

const UA: &str = "port-ocean/azure-devops/0.1.0/azure-devops/exporter";

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn new(sim: &PortSim) -> Self {
        let http = reqwest::Client::builder().user_agent(UA).build().unwrap();
        let base = sim.base_url();
        let answer: Value = json_of(
            http.post(format!("{base}/v1/auth/access_token"))
                .json(&json!({"clientId": "sim-client", "clientSecret": "sim-secret"})),
        )
        .await;
        let token = answer["accessToken"].as_str().unwrap().to_string();
        Self { http, base, token }
    }

    /// A request to `path` (below the base URL) with the token.
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.request(reqwest::Method::POST, path)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// The JSON answer to a POST of `body` to `path`.
    async fn post_json(&self, path: &str, body: &Value) -> Value {
        self.post(path, body).await.json().await.unwrap()
    }

    /// The answer to a request without a body.
    async fn send(&self, method: reqwest::Method, path: &str) -> reqwest::Response {
        self.request(method, path).send().await.unwrap()
    }
}

/// A bulk upsert body of entities with these identifiers (and nothing else).
fn bulk_of(identifiers: impl Iterator<Item = String>) -> Value {
    let entities: Vec<Value> = identifiers
        .map(|identifier| json!({"identifier": identifier}))
        .collect();
    json!({"entities": entities})
}

const BULK: &str = "/v1/blueprints/azureDevopsRepository/entities/bulk?upsert=true&merge=true&create_missing_related_entities=true";

#[tokio::test]
async fn token_flow() {
    let sim = PortSim::start(PortSimConfig::default()).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/v1/auth/access_token", sim.base_url());
    let wrong = http
        .post(&url)
        .json(&json!({"clientId": "sim-client", "clientSecret": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(wrong.headers().contains_key("x-trace-id"));
    assert_eq!(wrong.json::<Value>().await.unwrap()["ok"], false);

    let good = json!({"clientId": "sim-client", "clientSecret": "sim-secret"});
    let first: Value = json_of(http.post(&url).json(&good)).await;
    assert_eq!(first["ok"], true);
    assert_eq!(first["expiresIn"], 10800);
    assert_eq!(first["tokenType"], "Bearer");
    let second: Value = json_of(http.post(&url).json(&good)).await;
    assert_eq!(
        first["accessToken"], second["accessToken"],
        "same token until it expires"
    );

    let search = format!("{}/v1/entities/search", sim.base_url());
    let search_status = |token: Option<&str>| {
        let request = http
            .post(&search)
            .json(&json!({"combinator": "and", "rules": []}));
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(search_status(None).await, 401, "anonymous");
    let token = first["accessToken"].as_str().unwrap();
    assert_eq!(search_status(Some(token)).await, 200, "with the token");
    sim.expire_tokens();
    assert_eq!(search_status(Some(token)).await, 401, "expired");
}

#[tokio::test]
async fn bulk_upsert_stores_and_merges() {
    let sim = PortSim::start(PortSimConfig::default()).await.unwrap();
    let client = Client::new(&sim).await;
    let body = json!({"entities": [
        {"identifier": "r1", "title": "repo one", "properties": {"url": "u1", "readme": "x"}, "relations": {"project": "p1"}},
        {"identifier": "r2", "title": "repo two", "properties": {"url": "u2"}},
    ]});
    let answer = client.post(BULK, &body).await;
    assert_eq!(answer.status().as_u16(), 200);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(
        answer["entities"],
        json!([{"identifier": "r1", "index": 0, "created": true}, {"identifier": "r2", "index": 1, "created": true}])
    );
    assert_eq!(answer["errors"], json!([]));

    let update = json!({"entities": [{"identifier": "r1", "properties": {"url": "u1b"}}]});
    let answer: Value = client.post_json(BULK, &update).await;
    assert_eq!(answer["entities"][0]["created"], false);
    let stored = sim.entity("azureDevopsRepository", "r1").unwrap();
    assert_eq!(
        stored["properties"],
        json!({"url": "u1b", "readme": "x"}),
        "merge keeps other properties"
    );
    assert_eq!(stored["relations"]["project"], "p1");
    assert_eq!(stored["title"], "repo one");
    assert_eq!(stored["$datasource"], UA);
    assert_eq!(stored["$blueprint"], "azureDevopsRepository");
    assert!(stored["$updatedAt"].as_str().unwrap() >= stored["$createdAt"].as_str().unwrap());

    let replace = "/v1/blueprints/azureDevopsRepository/entities/bulk?upsert=true";
    client.post(replace, &update).await;
    let stored = sim.entity("azureDevopsRepository", "r1").unwrap();
    assert_eq!(
        stored["properties"],
        json!({"url": "u1b"}),
        "without merge the entity is replaced"
    );
    assert_eq!(sim.entity_count(), 2);
    assert_eq!(sim.requests()["POST /v1/blueprints/{bp}/entities/bulk"], 3);
}

#[tokio::test]
async fn bulk_limits_and_partial_failure() {
    let sim = PortSim::start(PortSimConfig::default()).await.unwrap();
    let client = Client::new(&sim).await;
    let too_many = bulk_of((0..21).map(|i| format!("e{i}")));
    let answer = client.post(BULK, &too_many).await;
    assert_eq!(answer.status().as_u16(), 422);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["ok"], false);
    assert_eq!(answer["error"], "invalid_request");
    assert_eq!(sim.entity_count(), 0);

    let mixed = json!({"entities": [{"identifier": "good"}, {"title": "no identifier"}, {"identifier": "bad id!"}]});
    let answer = client.post(BULK, &mixed).await;
    assert_eq!(answer.status().as_u16(), 207);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["entities"].as_array().unwrap().len(), 1);
    let errors = answer["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0]["index"], 1);
    assert_eq!(errors[1]["index"], 2);
    assert_eq!(errors[1]["identifier"], "bad id!");
    assert_eq!(errors[1]["statusCode"], 422);
    assert_eq!(sim.entity_count(), 1);

    let huge = json!({"entities": [{"identifier": "big", "properties": {"blob": "x".repeat(1024 * 1024)}}]});
    let answer = client.post(BULK, &huge).await;
    assert_eq!(answer.status().as_u16(), 413);
    assert_eq!(answer.json::<Value>().await.unwrap()["ok"], false);

    sim.mark_blueprint_unknown("azureDevopsRepository");
    assert_eq!(
        client
            .post(BULK, &json!({"entities": [{"identifier": "x"}]}))
            .await
            .status()
            .as_u16(),
        404
    );
}

#[tokio::test]
async fn datasource_entities_page_and_search() {
    let sim = PortSim::start(PortSimConfig::default()).await.unwrap();
    let client = Client::new(&sim).await;
    for chunk in 0..3 {
        let entities = bulk_of((0..20).map(|i| format!("e{chunk}-{i:02}")));
        assert_eq!(client.post(BULK, &entities).await.status().as_u16(), 200);
    }
    let other = reqwest::Client::builder()
        .user_agent("someone-else")
        .build()
        .unwrap();
    other
        .post(format!(
            "{}/v1/blueprints/x/entities?upsert=true",
            sim.base_url()
        ))
        .bearer_auth(&client.token)
        .json(&json!({"identifier": "foreign"}))
        .send()
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let mut body = json!({
            "datasource_prefix": "port-ocean/azure-devops/",
            "datasource_suffix": "/azure-devops/exporter",
            "limit": 25,
            "before": "2999-01-01T00:00:00.000Z",
        });
        if let Some(cursor) = &from {
            body["from"] = json!(cursor);
        }
        let page: Value = client
            .post_json("/v1/blueprints/entities/datasource-entities", &body)
            .await;
        seen.extend(
            page["entities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["identifier"].as_str().unwrap().to_string()),
        );
        match page["next"].as_str() {
            Some(next) => from = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 60);
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(unique.len(), 60);

    let before_all = json!({"datasource_prefix": "port-ocean/", "datasource_suffix": "", "limit": 100, "before": "2000-01-01T00:00:00Z"});
    let before_all: Value = client
        .post_json("/v1/blueprints/entities/datasource-entities", &before_all)
        .await;
    assert_eq!(before_all["entities"], json!([]));

    let search = json!({"combinator": "and", "rules": [
        {"property": "$datasource", "operator": "contains", "value": "port-ocean/azure-devops/"},
        {"property": "$datasource", "operator": "contains", "value": "/azure-devops/exporter"},
        {"property": "$identifier", "operator": "in", "value": ["e0-00", "e2-19", "foreign"]},
    ]});
    let found: Value = client
        .post_json("/v1/entities/search?include=identifier", &search)
        .await;
    assert_eq!(
        found["entities"],
        json!([{"identifier": "e0-00"}, {"identifier": "e2-19"}])
    );
}

#[tokio::test]
async fn deletes() {
    let sim = PortSim::start(PortSimConfig::default()).await.unwrap();
    let client = Client::new(&sim).await;
    client
        .post(BULK, &bulk_of((0..5).map(|i| format!("d{i}"))))
        .await;
    let path = "/v1/blueprints/azureDevopsRepository/entities/d0";
    let first = client.send(reqwest::Method::DELETE, path).await;
    assert_eq!(first.status().as_u16(), 200);
    let again = client.send(reqwest::Method::DELETE, path).await;
    assert_eq!(again.status().as_u16(), 404);
    assert_eq!(again.json::<Value>().await.unwrap()["error"], "not_found");
    let answer: Value = client
        .post_json(
            "/v1/blueprints/azureDevopsRepository/bulk/entities/delete?delete_dependents=true",
            &json!({"entities": ["d1", "d2", "missing"]}),
        )
        .await;
    assert_eq!(answer["deletedEntities"], json!(["d1", "d2"]));
    assert_eq!(sim.entity_count(), 2);
    // Every delete is logged in order, a missing entity's not; one written back stays logged.
    client
        .post(BULK, &bulk_of(["d0".to_string()].into_iter()))
        .await;
    let logged = |ids: &[&str]| -> Vec<(String, String)> {
        (ids.iter())
            .map(|id| ("azureDevopsRepository".to_string(), id.to_string()))
            .collect()
    };
    assert_eq!(sim.deletions(), logged(&["d0", "d1", "d2"]));
    assert_eq!(sim.entity_count(), 3);
}

#[tokio::test]
async fn rate_limit_and_scripted_answers() {
    let config = PortSimConfig {
        rate_limit: Some(RateLimit {
            requests: 3,
            per: Duration::from_secs(60),
        }),
        ..PortSimConfig::default()
    };
    let sim = PortSim::start(config).await.unwrap();
    let client = Client::new(&sim).await; // 1 request
    let body = json!({"entities": [{"identifier": "a"}]});
    let ok = client.post(BULK, &body).await;
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(ok.headers()["x-ratelimit-limit"], "3");
    assert_eq!(ok.headers()["x-ratelimit-remaining"], "1");
    client.post(BULK, &body).await;
    let limited = client.post(BULK, &body).await;
    assert_eq!(limited.status().as_u16(), 429);
    let seconds: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&seconds));
    assert_eq!(
        limited.json::<Value>().await.unwrap()["error"],
        "too_many_requests"
    );

    let sim = PortSim::start(PortSimConfig::default()).await.unwrap();
    let client = Client::new(&sim).await;
    sim.fail_next(
        "POST /v1/blueprints/{bp}/entities/bulk",
        vec![ScriptedAnswer::rate_limited(3), ScriptedAnswer::status(503)],
    );
    let first = client.post(BULK, &body).await;
    assert_eq!(first.status().as_u16(), 429);
    assert_eq!(first.headers()["retry-after"], "3");
    assert_eq!(client.post(BULK, &body).await.status().as_u16(), 503);
    assert_eq!(client.post(BULK, &body).await.status().as_u16(), 200);
}

#[tokio::test]
async fn integration_resource_and_wait_for() {
    let mapping = json!({"resources": [{"kind": "project"}]});
    let config = PortSimConfig {
        integration_config: Some(mapping.clone()),
        ..PortSimConfig::default()
    };
    let sim = PortSim::start(config).await.unwrap();
    let client = Client::new(&sim).await;
    let got: Value =
        json_of(client.request(reqwest::Method::GET, "/v1/integration/azure-devops")).await;
    assert_eq!(got["integration"]["config"], mapping);
    assert_eq!(got["integration"]["installationAppType"], "azure-devops");
    let missing = client
        .send(reqwest::Method::GET, "/v1/integration/other")
        .await;
    assert_eq!(missing.status().as_u16(), 404);

    let state = json!({"status": "running", "lastResyncStart": "2026-01-01T00:00:00Z", "intervalInMinuets": 60});
    let patched = client
        .request(
            reqwest::Method::PATCH,
            "/v1/integration/azure-devops/resync-state",
        )
        .json(&state)
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status().as_u16(), 200);
    assert_eq!(sim.resync_states(), vec![state]);
    let request: Value = json_of(client.request(
        reqwest::Method::GET,
        "/v1/integration/azure-devops/resync-request",
    ))
    .await;
    assert!(request["request"]["updatedAt"].is_string());

    // wait_for wakes on the write, not on a timer.
    let writer = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .post(BULK, &json!({"entities": [{"identifier": "late"}]}))
                .await;
        })
    };
    assert!(
        sim.wait_for(
            |s| s.entity("azureDevopsRepository", "late").is_some(),
            Duration::from_secs(2)
        )
        .await
    );
    writer.await.unwrap();
    assert!(
        !sim.wait_for(|s| s.entity_count() > 1, Duration::from_millis(50))
            .await
    );
    sim.shutdown().await;
}

/// The read publish makes before writing a resync's entities, and the hand changes tests make
/// behind its back: the search answers what Port holds now, team as an array, owned only.
#[tokio::test]
async fn the_current_state_read_sees_hand_edits_deletes_and_cascades() {
    let sim = PortSim::start(PortSimConfig::default()).await.unwrap();
    sim.define_blueprint(json!({"identifier": "azureDevopsRepository",
        "relations": {"project": {"target": "azureDevopsProject", "many": false}}}));
    let client = Client::new(&sim).await;
    let project = "/v1/blueprints/azureDevopsProject/entities/bulk?upsert=true&merge=true";
    client
        .post(
            project,
            &json!({"entities": [{"identifier": "p1", "team": "t1"}, {"identifier": "p2"}]}),
        )
        .await;
    client
        .post(BULK, &json!({"entities": [
            {"identifier": "r1", "title": "one", "properties": {"n": 1}, "relations": {"project": "p1"}},
            {"identifier": "r2", "title": "two", "properties": {"n": 2}, "relations": {"project": "p1"}},
            {"identifier": "r3", "title": "three", "properties": {"n": 3}, "relations": {"project": "p2"}},
        ]}))
        .await;
    let read = |blueprint: &'static str, ids: Value| {
        json!({"combinator": "and", "rules": [
            {"property": "$blueprint", "operator": "=", "value": blueprint},
            {"property": "$identifier", "operator": "in", "value": ids},
            {"property": "$datasource", "operator": "contains", "value": "port-ocean/azure-devops/"},
            {"property": "$datasource", "operator": "contains", "value": "/azure-devops/exporter"},
        ]})
    };
    let search = "/v1/entities/search?exclude_calculated_properties=true";
    let found = |answer: Value| -> Vec<Value> { answer["entities"].as_array().unwrap().clone() };
    let projects = found(
        client
            .post_json(search, &read("azureDevopsProject", json!(["p1", "p2"])))
            .await,
    );
    assert_eq!(
        projects[0]["team"],
        json!(["t1"]),
        "a team name is stored as an array"
    );
    assert_eq!(projects[1]["team"], json!([]));

    // By hand: r1 edited (our datasource stays), r2 taken by another writer, p2 deleted with
    // its dependents (r3 goes too).
    assert!(sim.edit_entity(
        "azureDevopsRepository",
        "r1",
        json!({"title": "edited", "properties": {"n": 100}})
    ));
    sim.put_entity(
        "azureDevopsRepository",
        json!({"identifier": "r2", "title": "two", "properties": {"n": 2}, "relations": {"project": "p1"}}),
        Some("Mozilla/5.0"),
    )
    .unwrap();
    assert!(
        sim.delete_entity("azureDevopsProject", "p1", false)
            .is_err(),
        "p1 has dependents"
    );
    let mut cascade = sim.delete_entity("azureDevopsProject", "p2", true).unwrap();
    cascade.sort();
    assert_eq!(
        cascade,
        [
            ("azureDevopsProject", "p2"),
            ("azureDevopsRepository", "r3")
        ]
        .map(|(b, i)| (b.to_string(), i.to_string()))
    );
    let repositories = found(
        client
            .post_json(
                search,
                &read("azureDevopsRepository", json!(["r1", "r2", "r3"])),
            )
            .await,
    );
    assert_eq!(repositories.len(), 1, "r2 is not ours any more, r3 is gone");
    assert_eq!(repositories[0]["identifier"], "r1");
    assert_eq!(repositories[0]["title"], "edited");
    assert_eq!(repositories[0]["properties"]["n"], 100);
    assert_eq!(
        sim.entity("azureDevopsRepository", "r2").unwrap()["$datasource"],
        "Mozilla/5.0"
    );
    assert_eq!(sim.delete_all_entities(), 3);
    assert_eq!(sim.entity_count(), 0);
}

#[tokio::test]
async fn writes_are_recorded_per_entity_in_the_order_applied_when_asked() {
    let sim = PortSim::start(PortSimConfig {
        record_writes: true,
        write_latency: Duration::from_millis(50),
        ..PortSimConfig::default()
    })
    .await
    .unwrap();
    let client = Client::new(&sim).await;
    for version in 1..=3 {
        let body = json!({"entities": [
            {"identifier": "a", "properties": {"version": version}},
            {"identifier": "b", "properties": {"version": version * 10}},
        ]});
        let started = std::time::Instant::now();
        assert_eq!(client.post(BULK, &body).await.status().as_u16(), 200);
        assert!(
            started.elapsed() >= Duration::from_millis(50),
            "the latency"
        );
    }
    let writes = sim.writes();
    let versions = |id: &str| -> Vec<Value> {
        writes[&("azureDevopsRepository".to_string(), id.to_string())]
            .iter()
            .map(|e| e["properties"]["version"].clone())
            .collect()
    };
    assert_eq!(versions("a"), vec![json!(1), json!(2), json!(3)]);
    assert_eq!(versions("b"), vec![json!(10), json!(20), json!(30)]);
    // Off by default.
    let quiet = PortSim::start(PortSimConfig::default()).await.unwrap();
    let client = Client::new(&quiet).await;
    client
        .post(BULK, &json!({"entities": [{"identifier": "a"}]}))
        .await;
    assert!(quiet.writes().is_empty());
}

#[tokio::test]
async fn an_outage_answers_every_route_until_it_ends() {
    use adoport_sim::PortOutage;
    let sim = PortSim::start(PortSimConfig::default()).await.unwrap();
    let client = Client::new(&sim).await;
    let entity = json!({"entities": [{"identifier": "r1", "title": "one", "properties": {}}]});
    sim.set_outage(Some(PortOutage::Unavailable));
    let first = client.post(BULK, &entity).await.status().as_u16();
    let second = client.post(BULK, &entity).await.status().as_u16();
    let mut statuses = [first, second];
    statuses.sort_unstable();
    assert_eq!(statuses, [500, 503], "500 and 503 alternate");
    // The token route too: Port as a whole is down.
    let token = reqwest::Client::new()
        .post(format!("{}/v1/auth/access_token", sim.base_url()))
        .json(&json!({"clientId": "sim-client", "clientSecret": "sim-secret"}))
        .send()
        .await
        .unwrap();
    assert!(token.status().is_server_error());
    sim.set_outage(Some(PortOutage::RateLimited {
        retry_after_secs: 7,
    }));
    let limited = client.post(BULK, &entity).await;
    assert_eq!(limited.status().as_u16(), 429);
    assert_eq!(limited.headers()["retry-after"], "7");
    assert_eq!(
        sim.entity_count(),
        0,
        "nothing was written during the outage"
    );
    assert_eq!(sim.outage_answers(), 4);
    sim.set_outage(None);
    assert_eq!(client.post(BULK, &entity).await.status().as_u16(), 200);
    assert_eq!(sim.entity_count(), 1);
}

#[tokio::test]
async fn what_an_integration_start_reads_and_creates_besides_entities() {
    let sim = PortSim::start(PortSimConfig::default()).await.unwrap();
    let client = Client::new(&sim).await;
    let get = |path: &'static str| client.request(reqwest::Method::GET, path);
    let organization = json_of(get("/v1/organization")).await;
    assert!(organization["organization"]["id"].is_string());
    assert_eq!(organization["organization"]["featureFlags"], json!([]));
    let provisioned = json_of(get("/v1/integration/provision-enabled")).await;
    assert_eq!(provisioned["integrations"], json!([]));

    let scorecard = json!({"identifier": "ready", "title": "Ready", "rules": []});
    let unknown = client
        .post("/v1/blueprints/service/scorecards", &scorecard)
        .await;
    assert_eq!(unknown.status().as_u16(), 404);
    let blueprint =
        json!({"identifier": "service", "title": "Service", "schema": {"properties": {}}});
    assert_eq!(
        client
            .post("/v1/blueprints", &blueprint)
            .await
            .status()
            .as_u16(),
        201
    );
    let created = client
        .post("/v1/blueprints/service/scorecards", &scorecard)
        .await;
    assert_eq!(created.status().as_u16(), 201);
    let again = client
        .post("/v1/blueprints/service/scorecards", &scorecard)
        .await;
    assert_eq!(again.status().as_u16(), 409);

    let page = json!({"identifier": "dashboard", "type": "dashboard", "widgets": []});
    assert_eq!(client.post("/v1/pages", &page).await.status().as_u16(), 201);
    assert_eq!(client.post("/v1/pages", &page).await.status().as_u16(), 409);
    let nameless = client
        .post("/v1/pages", &json!({"type": "dashboard"}))
        .await;
    assert_eq!(nameless.status().as_u16(), 422);
}

#[tokio::test]
async fn incremental_cursors_are_read_created_and_updated_as_ocean_uses_them() {
    let config = PortSimConfig {
        integration_config: Some(json!({"resources": []})),
        ..PortSimConfig::default()
    };
    let identifier = config.integration_identifier.clone();
    let sim = PortSim::start(config).await.unwrap();
    let client = Client::new(&sim).await;
    let path = format!("/v1/integration/{identifier}/cursor?kind=work-item&index=2");
    let body = json!({"primary": "2026-03-01T12:00:00+00:00"});
    // None yet: 200 with a null cursor; an update is 404, so the client creates it.
    let none = json_of(client.request(reqwest::Method::GET, &path)).await;
    assert_eq!(none["cursor"], Value::Null);
    let update = client.request(reqwest::Method::PUT, &path).json(&body);
    assert_eq!(update.send().await.unwrap().status(), 404);
    assert_eq!(client.post(&path, &body).await.status(), 201);
    assert_eq!(client.post(&path, &body).await.status(), 409);
    let stored = json_of(client.request(reqwest::Method::GET, &path)).await;
    assert_eq!(stored["cursor"]["primary"], "2026-03-01T12:00:00+00:00");
    let later = json!({"primary": "2026-03-01T12:15:00+00:00"});
    let update = client.request(reqwest::Method::PUT, &path).json(&later);
    assert_eq!(update.send().await.unwrap().status(), 200);
    assert_eq!(
        sim.cursor(&identifier, "work-item", 2).as_deref(),
        Some("2026-03-01T12:15:00+00:00")
    );
    // Another index is another cursor; a bad time, a missing kind or an unknown integration
    // are refused.
    assert_eq!(sim.cursor(&identifier, "work-item", 0), None);
    let bad = client
        .request(reqwest::Method::PUT, &path)
        .json(&json!({"primary": "soon"}));
    assert_eq!(bad.send().await.unwrap().status(), 422);
    let no_kind = format!("/v1/integration/{identifier}/cursor?index=2");
    assert_eq!(
        client.send(reqwest::Method::GET, &no_kind).await.status(),
        400
    );
    let unknown = "/v1/integration/nobody/cursor?kind=work-item&index=2";
    assert_eq!(
        client.send(reqwest::Method::GET, unknown).await.status(),
        404
    );
}
