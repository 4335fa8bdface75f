//! Serving a router on a listener, and stopping it: on `shutdown()` (graceful, awaited) or when
//! the handle is dropped (the server task is told to stop and finishes on its own).

use std::net::SocketAddr;

use axum::Router;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

#[derive(Debug)]
pub(crate) struct Server {
    addr: SocketAddr,
    stop: Option<DropGuard>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    pub(crate) fn spawn(
        listener: tokio::net::TcpListener,
        router: Router,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let token = CancellationToken::new();
        let stopped = token.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::warn!(%addr, error = %error, "simulator server failed");
            }
        });
        Ok(Self {
            addr,
            stop: Some(token.drop_guard()),
            task: Some(task),
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight requests finish, and waits for the server task.
    pub(crate) async fn shutdown(mut self) {
        drop(self.stop.take());
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}
