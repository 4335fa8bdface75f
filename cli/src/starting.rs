//! What ingest's port (`ADOPORT__INGEST__LISTEN`, Ocean's 8000) answers before ingest runs.
//!
//! A process first creates Port's resources and reads the mapping, and waits for Port as long
//! as Port is unavailable ([`crate::roles`]). Orchestrators that probe the integration's port —
//! Port's own `port-ocean` chart probes `GET /health/live` and `/health/ready` on 8000 — must
//! see a live process meanwhile, or they restart it into the same wait. So the port is bound
//! first and answers the probes at once: live (200), not ready (503, saying it is starting);
//! everything else gets 503 too, which Azure DevOps retries. When ingest starts, this server
//! stops accepting and ingest serves the same socket: connections waiting meanwhile are kept
//! by the kernel and taken by ingest.

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use adoport_ingest::webhook::{LIVE_PATH, READY_PATH};

/// The probe server on ingest's port until ingest takes the socket over.
pub struct StartingServer {
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl StartingServer {
    /// Serves the probes on a second handle of `listener`'s socket, and gives `listener` back
    /// for ingest. `prefix` is `OCEAN__PATH_PREFIX` (the probes answer with and without it).
    pub fn start(listener: TcpListener, prefix: &str) -> std::io::Result<(Self, TcpListener)> {
        let served = second_handle(&listener)?;
        let stop = CancellationToken::new();
        let mut router = Router::new()
            .route(LIVE_PATH, get(live))
            .route(READY_PATH, get(starting))
            .route("/healthz", get(live))
            .route("/readyz", get(starting));
        if !prefix.is_empty() {
            router = router
                .route(&format!("{prefix}{LIVE_PATH}"), get(live))
                .route(&format!("{prefix}{READY_PATH}"), get(starting));
        }
        let router = router.fallback(starting);
        let until = stop.clone();
        let task = tokio::spawn(async move {
            axum::serve(served, router)
                .with_graceful_shutdown(async move { until.cancelled().await })
                .await
        });
        Ok((Self { stop, task }, listener))
    }

    /// Stops accepting and waits for the requests in flight; the socket stays open for ingest.
    pub async fn stop(self) {
        self.stop.cancel();
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "the start-up probe server failed"),
            Err(e) => tracing::warn!(error = %e, "the start-up probe server panicked"),
        }
    }
}

/// Another listener on `listener`'s socket (a duplicate descriptor, non-blocking as tokio
/// needs): closing it leaves the socket open for `listener`.
fn second_handle(listener: &TcpListener) -> std::io::Result<TcpListener> {
    use std::os::fd::AsFd;
    let socket = std::net::TcpListener::from(listener.as_fd().try_clone_to_owned()?);
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket)
}

async fn live() -> Response {
    axum::Json(json!({"status": "healthy", "check": "live"})).into_response()
}

async fn starting() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [("retry-after", "5")],
        axum::Json(json!({
            "status": "starting",
            "check": "ready",
            "reason": "creating Port's resources and reading the mapping (waiting for Port while it is unavailable)"
        })),
    )
        .into_response()
}
