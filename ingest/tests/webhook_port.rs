//! The webhook port is safe to expose: `POST /resync` takes the webhook's credentials,
//! credentials are checked before a body is read, bodies in flight are bounded, and an event
//! Azure DevOps will keep refusing is acknowledged with the reason while a failure that may
//! heal is answered 503 (Azure DevOps retries it; repeated non-2xx answers put a subscription
//! on probation).
//!
//! Slow and unauthenticated bodies are sent over plain TCP, so the test controls exactly how
//! much of a body is on the wire when the answer comes.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use adoport_ingest::webhook::{WEBHOOK_PATH, WebhookLimits};
use adoport_sim::ScriptedAnswer;
use serde_json::{Value, json};
use support::{Receiver, basic_auth, harness_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "s3cret";

fn with_secret() -> Receiver {
    Receiver {
        secret: Some(SECRET.into()),
        ..Receiver::default()
    }
}

/// Opens a connection and sends a request's head (and `body_start`), leaving the body
/// unfinished.
async fn start_request(address: SocketAddr, headers: &[&str], body_start: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    let mut head = format!(
        "POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n"
    );
    for header in headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("head sent");
    stream.write_all(body_start).await.expect("body start sent");
    stream
}

/// The status line and headers of the answer on `stream`, within 5 s.
async fn answer_head(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    tokio::time::timeout(Duration::from_secs(5), async {
        while !received.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buffer).await.expect("read");
            assert!(n > 0, "connection closed before an answer");
            received.extend_from_slice(&buffer[..n]);
        }
    })
    .await
    .expect("an answer within 5 s, before the body was sent");
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn resync_takes_the_webhook_credentials_when_a_secret_is_set() {
    let h = harness_with(&[], with_secret()).await;
    assert_eq!(h.resync(None).await, 401);
    assert_eq!(h.resync(Some(&basic_auth("wrong"))).await, 401);
    assert_eq!(h.resync(Some(&basic_auth(SECRET))).await, 202);
    h.stop().await;
    // Without a secret (the Python integration's default) it stays open, as webhooks do.
    let open = harness_with(&[], Receiver::default()).await;
    assert_eq!(open.resync(None).await, 202);
    open.stop().await;
}

#[tokio::test]
async fn an_unauthenticated_body_is_refused_before_it_is_read() {
    let h = harness_with(&[], with_secret()).await;
    // 4 MiB announced, 16 KiB sent: the answer comes while the client still has to send the
    // rest, so nothing of it was waited for, let alone buffered.
    let announced = format!("Content-Length: {}", 4 * 1024 * 1024);
    let mut stream = start_request(h.address, &[&announced], &[b' '; 16 * 1024]).await;
    let head = answer_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: basic"),
        "{head}"
    );

    // A chunked body that never ends gets the same prompt answer.
    let mut endless = start_request(h.address, &["Transfer-Encoding: chunked"], b"400\r\n").await;
    endless.write_all(&[b' '; 0x400]).await.expect("chunk");
    endless.write_all(b"\r\n").await.expect("chunk end");
    let head = answer_head(&mut endless).await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");

    // With the credentials, the same oversized body is read (up to the limit) and refused.
    let too_large = h
        .http
        .post(&h.url)
        .header("Authorization", basic_auth(SECRET))
        .header("Content-Type", "application/json")
        .body(vec![b' '; 5 * 1024 * 1024])
        .send()
        .await
        .expect("answered");
    assert_eq!(too_large.status().as_u16(), 413);
    h.stop().await;
}

/// An event of a type the receiver ignores: answered at once, without any read.
fn probe() -> Value {
    json!({"eventType": "ms.vss-code.git-pullrequest-comment-event", "publisherId": "tfs", "resource": {}})
}

#[tokio::test]
async fn requests_over_the_in_flight_bound_get_503_with_retry_after() {
    let receiver = Receiver {
        limits: WebhookLimits {
            max_in_flight: 2,
            request_deadline: Duration::from_secs(2),
            ..WebhookLimits::default()
        },
        ..Receiver::default()
    };
    let h = harness_with(&[], receiver).await;
    // Two requests whose bodies trickle in: each holds a slot.
    let slow = [
        start_request(h.address, &["Content-Length: 1000"], b"{").await,
        start_request(h.address, &["Content-Length: 1000"], b"{").await,
    ];
    // The third request is refused as soon as both slots are held.
    let busy = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let answer = h
                .http
                .post(&h.url)
                .json(&probe())
                .send()
                .await
                .expect("answered");
            if answer.status().as_u16() == 503 {
                return answer;
            }
            assert_eq!(answer.status().as_u16(), 200);
        }
    })
    .await
    .expect("a 503 while two bodies are in flight");
    assert_eq!(
        busy.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let body: Value = busy.json().await.expect("JSON");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("ADOPORT__INGEST__WEBHOOK_MAX_IN_FLIGHT")),
        "{body}"
    );
    // A trickling body does not hold its slot for ever: past the deadline it gets 408 and the
    // slot is free again.
    for mut stream in slow {
        let head = answer_head_within(&mut stream, Duration::from_secs(10)).await;
        assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    }
    let (status, _) = h.post(&probe()).await;
    assert_eq!(status, 200);
    h.stop().await;
}

async fn answer_head_within(stream: &mut TcpStream, limit: Duration) -> String {
    tokio::time::timeout(limit, answer_head(stream))
        .await
        .expect("answered")
}

#[tokio::test]
async fn an_event_azure_devops_will_keep_refusing_is_acknowledged_with_the_reason() {
    let mut h = harness_with(
        &[("build", json!({})), ("repository", json!({}))],
        with_secret(),
    )
    .await;
    let project = h.project_id(2);
    let build = h.sim.build_complete_event(&project, 2);

    // The event's project is gone (TF200016): nothing to read, nothing to delete, and
    // retrying would not help.
    assert!(h.sim.remove_project(&project));
    let (status, body) = h.post(&build).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "skipped", "{body}");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("build 2") && reason.contains("TF200016"),
        "{body}"
    );
    h.nothing_queued_before_a_sentinel().await;

    // Azure DevOps answers 400 for the object.
    let (repository, renamed) = h.first_repository_renamed();
    h.sim.fail_next(
        "GET /{org}/_apis/git/repositories/{repository}",
        vec![ScriptedAnswer::status(400)],
    );
    let (status, body) = h.post(&renamed).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("skipped")),
        "{body}"
    );
    assert!(
        body["reason"]
            .as_str()
            .is_some_and(|r| r.contains("HTTP 400") && r.contains(&repository)),
        "{body}"
    );
    h.nothing_queued_before_a_sentinel().await;
    h.stop().await;
}

#[tokio::test]
async fn a_failure_that_may_heal_is_answered_503() {
    let h = harness_with(&[("repository", json!({}))], with_secret()).await;
    let (_, renamed) = h.first_repository_renamed();
    // Every attempt the client makes fails with 500.
    h.sim.fail_next(
        "GET /{org}/_apis/git/repositories/{repository}",
        (0..6).map(|_| ScriptedAnswer::status(500)).collect(),
    );
    let (status, body) = h.post(&renamed).await;
    assert_eq!(status, 503, "{body}");
    // Azure DevOps delivers it again; now it is read and queued.
    let (status, body) = h.post(&renamed).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("queued")),
        "{body}"
    );
    h.stop().await;
}
