//! Multiple Accounts against the simulators: a service principal's token from the identity
//! simulator, shared by two organizations served by one Azure DevOps simulator; cached,
//! refreshed ahead of expiry and after a 401; a wrong secret named without the secret.

use std::sync::Arc;
use std::time::Duration;

use adoport_ingest::ado::{AdoAuth, AdoClient, AdoError, ClientOptions, RequestStats};
use adoport_shared::config::{AzureDevopsCredentials, Secret, ServicePrincipal};
use adoport_sim::ado::{AdoSim, AdoSimConfig};
use adoport_sim::identity::TOKEN_ROUTE;
use adoport_sim::{IdentitySim, IdentitySimConfig};
use tokio_util::sync::CancellationToken;

struct World {
    identity: IdentitySim,
    organizations: Vec<AdoSim>,
}

async fn world(lifetime: Duration) -> World {
    let identity = IdentitySim::start(IdentitySimConfig {
        token_lifetime: lifetime,
        ..IdentitySimConfig::default()
    })
    .await
    .expect("identity simulator starts");
    let config = |name: &str| AdoSimConfig {
        organization: name.to_string(),
        projects: 2,
        bearer_tokens: Some(identity.tokens()),
        ..AdoSimConfig::default()
    };
    let organizations = AdoSim::start_organizations(vec![config("org-a"), config("org-b")])
        .await
        .expect("Azure DevOps simulator starts");
    World {
        identity,
        organizations,
    }
}

impl World {
    fn auth(&self, secret: &str) -> AdoAuth {
        let config = self.identity.config();
        let credentials = AzureDevopsCredentials::ServicePrincipal(ServicePrincipal {
            tenant_id: config.tenant_id.clone(),
            client_id: config.client_id.clone(),
            client_secret: Secret::new(secret),
            authority_host: self.identity.authority_host(),
        });
        AdoAuth::for_credentials(&credentials, 10, &Default::default()).expect("auth")
    }

    /// Signs in with the identity's own (right) secret.
    fn signed_in(&self) -> AdoAuth {
        self.auth(&self.identity.config().client_secret.clone())
    }

    /// A client of the first organization, signed in with the right secret.
    fn first_client(&self) -> AdoClient {
        self.client(0, &self.signed_in())
    }

    fn client(&self, index: usize, auth: &AdoAuth) -> AdoClient {
        AdoClient::for_organization(
            &self.organizations[index].organization_url(),
            auth.clone(),
            ClientOptions {
                timeout_secs: 10,
                network: &Default::default(),
                lanes: adoport_ingest::ado::LaneLimits::shared(8),
            },
            CancellationToken::new(),
            Arc::new(RequestStats::default()),
        )
        .expect("client")
    }

    fn token_requests(&self) -> u64 {
        self.identity
            .requests()
            .get(TOKEN_ROUTE)
            .copied()
            .unwrap_or(0)
    }
}

#[tokio::test]
async fn one_token_serves_a_burst_and_every_organization_of_the_tenant() {
    let world = world(Duration::from_secs(3600)).await;
    let auth = world.signed_in();
    let (a, b) = (world.client(0, &auth), world.client(1, &auth));
    let burst = (0..10).flat_map(|_| [a.clone(), b.clone()]).map(|client| {
        tokio::spawn(async move { client.projects_page(None).await.map(|p| p.items.len()) })
    });
    for task in burst {
        assert_eq!(task.await.expect("task").expect("projects"), 2);
    }
    assert_eq!(world.token_requests(), 1, "one token for 20 requests");
    assert_eq!(world.identity.issued(), 1);
    for organization in &world.organizations {
        assert_eq!(organization.total_requests(), 10, "no refused request");
    }
}

#[tokio::test]
async fn a_token_is_replaced_before_it_expires() {
    // A fifth of the lifetime ahead of expiry: after 1.7 s of 2 s the token is still valid for
    // Azure DevOps, and the client already asks for the next one.
    let world = world(Duration::from_secs(2)).await;
    let client = world.first_client();
    client.projects_page(None).await.expect("first read");
    assert_eq!(world.token_requests(), 1);
    // Waiting for time to pass is the point here: no condition to await instead.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    client.projects_page(None).await.expect("second read");
    assert_eq!(world.token_requests(), 2, "a new token ahead of expiry");
    assert_eq!(
        world.organizations[0].total_requests(),
        2,
        "no request was refused (a refusal would be retried, a third request)"
    );
}

#[tokio::test]
async fn a_refused_token_is_replaced_once_and_the_request_retried() {
    let world = world(Duration::from_secs(3600)).await;
    let client = world.first_client();
    client.projects_page(None).await.expect("first read");
    world.identity.revoke_all();
    let page = client
        .projects_page(None)
        .await
        .expect("read with a new token");
    assert_eq!(page.items.len(), 2);
    assert_eq!(world.token_requests(), 2, "one new token after the 401");
    assert_eq!(
        world.organizations[0].total_requests(),
        3,
        "read, refused read, read again"
    );
}

#[tokio::test]
async fn a_token_azure_devops_keeps_refusing_names_the_principal() {
    let world = world(Duration::from_secs(3600)).await;
    let auth = world.signed_in();
    // An organization that does not accept this tenant's tokens.
    let foreign = AdoSim::start(AdoSimConfig {
        organization: "elsewhere".into(),
        ..AdoSimConfig::default()
    })
    .await
    .expect("simulator");
    let client = AdoClient::for_organization(
        &foreign.organization_url(),
        auth,
        ClientOptions {
            timeout_secs: 10,
            network: &Default::default(),
            lanes: adoport_ingest::ado::LaneLimits::shared(2),
        },
        CancellationToken::new(),
        Arc::new(RequestStats::default()),
    )
    .expect("client");
    let error = client.projects_page(None).await.expect_err("refused");
    assert!(matches!(error, AdoError::TokenRefused { .. }), "{error}");
    let text = error.to_string();
    assert!(
        text.contains("sim-tenant") && text.contains("sim-client"),
        "{text}"
    );
    assert_eq!(world.token_requests(), 2, "asked again once, then gave up");
    assert_eq!(foreign.total_requests(), 2);
}

#[tokio::test]
async fn a_wrong_secret_says_so_naming_tenant_and_client_but_not_the_secret() {
    let world = world(Duration::from_secs(3600)).await;
    let auth = world.auth("not-the-right-secret-42");
    let client = world.client(0, &auth);
    let error = client.projects_page(None).await.expect_err("refused");
    assert!(matches!(error, AdoError::IdentityRefused { .. }), "{error}");
    assert!(error.stops_crawl());
    let text = error.to_string();
    assert!(text.contains("client secret is wrong"), "{text}");
    assert!(text.contains("AADSTS7000215"), "{text}");
    assert!(
        text.contains("tenant sim-tenant") && text.contains("client id sim-client"),
        "{text}"
    );
    assert!(!text.contains("not-the-right-secret-42"), "{text}");
    assert!(
        !text.contains(&world.identity.config().client_secret),
        "{text}"
    );
    assert_eq!(world.token_requests(), 1, "a refusal is not retried");
    assert_eq!(world.organizations[0].total_requests(), 0);
}
