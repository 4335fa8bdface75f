//! What the publish worker's tests share: serving a fake Port on a local port, a Port client
//! signed in as an integration, entity changes with the fields a test does not care about
//! filled in, and the check that a text (a dead letter's reason, an error) says what it must.

// Each test file uses the part it needs.
#![allow(dead_code)]

use adoport_publish::client::{COMPATIBLE_INTEGRATION_VERSION, PortClient, exporter_user_agent};
use adoport_shared::config::{PortAccess, Secret};
use adoport_shared::messages::{ChangeOp, EntityChange, Origin, SCHEMA_VERSION, WriteOptions};
use axum::Router;

/// Serves `app` on a local port for the rest of the test; its base URL.
pub async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// A client of the Port at `base_url`, signing in with `credentials` (client id and secret)
/// as integration `identifier` (whose exporter's user agent it sends).
pub fn port_client(
    base_url: &str,
    credentials: (&str, &str),
    identifier: &str,
    timeout_secs: u64,
) -> PortClient {
    let (client_id, client_secret) = credentials;
    let access = PortAccess {
        base_url: base_url.to_string(),
        client_id: client_id.into(),
        client_secret: Secret::new(client_secret),
        integration_identifier: identifier.into(),
        integration_type: "azure-devops".into(),
        timeout_secs,
        network: Default::default(),
    };
    PortClient::new(
        &access,
        exporter_user_agent(COMPATIBLE_INTEGRATION_VERSION, identifier),
    )
    .expect("client")
}

/// The origin of a change from a `git.push` service hook.
pub fn webhook() -> Origin {
    Origin::Webhook {
        event_type: "git.push".into(),
        delivery_id: "d1".into(),
    }
}

/// `op` on `identifier` of `blueprint`: a `repository` change from a `git.push` webhook,
/// observed now, of a new raw event (set the fields a test cares about).
pub fn change(blueprint: &str, identifier: &str, op: ChangeOp) -> EntityChange {
    EntityChange {
        v: SCHEMA_VERSION,
        blueprint: blueprint.into(),
        identifier: identifier.into(),
        kind: "repository".into(),
        resource_index: 0,
        origin: webhook(),
        observed_at: chrono::Utc::now(),
        raw_event_id: uuid::Uuid::new_v4(),
        write: WriteOptions::default(),
        op,
    }
}

/// Asserts that `text` contains every one of `parts`.
pub fn assert_says(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "{part:?} not in: {text}");
    }
}
