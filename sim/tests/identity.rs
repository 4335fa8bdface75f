//! The identity simulator over real HTTP (token issue, AADSTS refusals, expiry and revocation
//! as the Azure DevOps simulator sees them), and several organizations on one Azure DevOps
//! simulator, each with its own data, counters and request budget.

use std::time::Duration;

use adoport_sim::ado::{AdoSim, AdoSimConfig};
use adoport_sim::identity::AZURE_DEVOPS_SCOPE;
use adoport_sim::{IdentitySim, IdentitySimConfig};
use serde_json::Value;

async fn token_request(
    identity: &IdentitySim,
    tenant: &str,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!(
            "{}/{tenant}/oauth2/v2.0/token",
            identity.authority_host()
        ))
        .form(form)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

fn credentials<'a>(secret: &'a str, client: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "client_credentials"),
        ("client_id", client),
        ("client_secret", secret),
        ("scope", AZURE_DEVOPS_SCOPE),
    ]
}

async fn projects_status(sim: &AdoSim, authorization: &str) -> u16 {
    reqwest::Client::new()
        .get(format!(
            "{}/_apis/projects?api-version=7.1",
            sim.organization_url()
        ))
        .header("Authorization", authorization)
        .header("X-TFS-FedAuthRedirect", "Suppress")
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

#[tokio::test]
async fn refusals_carry_the_aadsts_code_of_the_real_endpoint() {
    let identity = IdentitySim::start(IdentitySimConfig::default())
        .await
        .expect("start");
    let cases = [
        (
            "sim-tenant",
            credentials("wrong", "sim-client"),
            401,
            "invalid_client",
            7000215,
        ),
        (
            "sim-tenant",
            credentials("sim-client-secret", "who"),
            400,
            "unauthorized_client",
            700016,
        ),
        (
            "other-tenant",
            credentials("sim-client-secret", "sim-client"),
            400,
            "invalid_request",
            90002,
        ),
        (
            "sim-tenant",
            vec![("grant_type", "password"), ("client_id", "sim-client")],
            400,
            "unsupported_grant_type",
            70003,
        ),
    ];
    for (tenant, form, status, error, code) in cases {
        let (got, body) = token_request(&identity, tenant, &form).await;
        assert_eq!(got, status, "{body}");
        assert_eq!(body["error"], error);
        assert_eq!(body["error_codes"][0], code);
        let description = body["error_description"].as_str().expect("description");
        assert!(
            description.starts_with(&format!("AADSTS{code}: ")),
            "{description}"
        );
        assert!(description.contains("Trace ID: "), "{description}");
    }
    assert_eq!(identity.issued(), 0);
}

#[tokio::test]
async fn tokens_are_accepted_until_they_expire_or_are_revoked() {
    let identity = IdentitySim::start(IdentitySimConfig {
        token_lifetime: Duration::from_millis(1500),
        ..IdentitySimConfig::default()
    })
    .await
    .expect("start");
    let sim = AdoSim::start(AdoSimConfig {
        bearer_tokens: Some(identity.tokens()),
        ..AdoSimConfig::default()
    })
    .await
    .expect("start");
    let (status, body) = token_request(
        &identity,
        "sim-tenant",
        &credentials("sim-client-secret", "sim-client"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 1);
    let bearer = format!("Bearer {}", body["access_token"].as_str().expect("token"));
    assert_eq!(projects_status(&sim, &bearer).await, 200);
    assert_eq!(projects_status(&sim, "Bearer forged").await, 401);
    // The PAT still works beside bearer tokens.
    let pat = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, ":sim-pat")
    );
    assert_eq!(projects_status(&sim, &pat).await, 200);
    // A token for another resource is refused.
    let mut other = credentials("sim-client-secret", "sim-client");
    other[3] = ("scope", "https://graph.microsoft.com/.default");
    let (_, body) = token_request(&identity, "sim-tenant", &other).await;
    let graph = format!("Bearer {}", body["access_token"].as_str().expect("token"));
    assert_eq!(projects_status(&sim, &graph).await, 401);
    // Expired: waiting for the lifetime to pass is the point, there is no condition to await.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(projects_status(&sim, &bearer).await, 401);
    let (_, body) = token_request(
        &identity,
        "sim-tenant",
        &credentials("sim-client-secret", "sim-client"),
    )
    .await;
    let fresh = format!("Bearer {}", body["access_token"].as_str().expect("token"));
    assert_eq!(projects_status(&sim, &fresh).await, 200);
    identity.revoke_all();
    assert_eq!(projects_status(&sim, &fresh).await, 401);
}

#[tokio::test]
async fn several_organizations_share_a_server_with_their_own_data_and_counters() {
    let config = |name: &str, projects| AdoSimConfig {
        organization: name.to_string(),
        projects,
        ..AdoSimConfig::default()
    };
    let organizations = AdoSim::start_organizations(vec![config("org-a", 1), config("org-b", 4)])
        .await
        .expect("start");
    let (a, b) = (&organizations[0], &organizations[1]);
    assert_eq!(a.base_url(), b.base_url());
    assert_eq!(a.organization_url(), format!("{}/org-a", a.base_url()));
    let pat = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, ":sim-pat")
    );
    let client = reqwest::Client::new();
    let count = |sim: &AdoSim| {
        let url = format!("{}/_apis/projects?api-version=7.1", sim.organization_url());
        let request = client.get(url).header("Authorization", &pat);
        async move {
            let body: Value = request
                .send()
                .await
                .expect("request")
                .json()
                .await
                .expect("json");
            body["count"].as_u64().expect("count")
        }
    };
    assert_eq!(count(a).await, 1);
    assert_eq!(count(b).await, 4);
    assert_eq!(count(b).await, 4);
    let key = "GET /{org}/_apis/projects";
    assert_eq!(a.requests().get(key).copied(), Some(1));
    assert_eq!(b.requests().get(key).copied(), Some(2));
    let unknown = client
        .get(format!(
            "{}/org-z/_apis/projects?api-version=7.1",
            a.base_url()
        ))
        .header("Authorization", &pat)
        .send()
        .await
        .expect("request");
    assert_eq!(unknown.status().as_u16(), 404);
    let body: Value = unknown.json().await.expect("json");
    assert_eq!(body["typeKey"], "HostNotFoundException");
    assert_eq!(a.total_requests() + b.total_requests(), 3);
}

#[tokio::test]
async fn each_organization_has_its_own_request_budget() {
    let limited = AdoSimConfig {
        organization: "org-a".into(),
        rate_limit: Some(adoport_sim::RateLimit {
            requests: 2,
            per: Duration::from_secs(60),
        }),
        ..AdoSimConfig::default()
    };
    let free = AdoSimConfig {
        organization: "org-b".into(),
        ..AdoSimConfig::default()
    };
    let organizations = AdoSim::start_organizations(vec![limited, free])
        .await
        .expect("start");
    let pat = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, ":sim-pat")
    );
    let client = reqwest::Client::new();
    let get = |sim: &AdoSim| {
        client
            .get(format!(
                "{}/_apis/projects?api-version=7.1",
                sim.organization_url()
            ))
            .header("Authorization", &pat)
            .send()
    };
    let (a, b) = (&organizations[0], &organizations[1]);
    for remaining in ["1", "0"] {
        let answer = get(a).await.expect("answer");
        assert_eq!(answer.status().as_u16(), 200);
        assert_eq!(answer.headers()["x-ratelimit-limit"], "2");
        assert_eq!(answer.headers()["x-ratelimit-remaining"], remaining);
        let reset: i64 = answer.headers()["x-ratelimit-reset"]
            .to_str()
            .expect("text")
            .parse()
            .expect("epoch");
        assert!(
            reset > chrono_now() && reset <= chrono_now() + 61,
            "{reset}"
        );
    }
    let blocked = get(a).await.expect("answer");
    assert_eq!(blocked.status().as_u16(), 429);
    let wait: u64 = blocked.headers()["retry-after"]
        .to_str()
        .expect("text")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&wait), "{wait}");
    let body: Value = blocked.json().await.expect("json");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .starts_with("TF400733")
    );
    // The other organization's budget is its own.
    for _ in 0..5 {
        assert_eq!(get(b).await.expect("answer").status().as_u16(), 200);
    }
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}
