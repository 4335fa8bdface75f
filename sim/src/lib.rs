//! HTTP simulators of **Azure DevOps** (REST 7.1) and **Port** (`/v1`), for the end-to-end
//! tests, the local demo (`adoport sim`, the compose `sim` profile) and the benchmark.
//!
//! This crate is test and demo infrastructure: nothing in the pipeline depends on it at run
//! time, and it must never be pointed at by a production configuration. What it owns:
//!
//! - [`ado`]: a seeded, deterministic Azure DevOps organization (projects, repositories, pull
//!   requests, files) served on the real paths with the real auth quirks (a 203 sign-in page for
//!   a bad PAT), `api-version` checks, continuation-token and `$top/$skip` paging and the
//!   `TFxxxxxx` error bodies.
//! - [`port`]: an in-memory Port catalog with the token flow, bulk and single upserts (merge,
//!   207 partial failures, 20-entity and 1 MiB limits), deletes, search, datasource listing,
//!   the integration resource and an optional rate limit answering 429 with `Retry-After`.
//! - [`identity`]: the Microsoft identity platform's client-credentials token endpoint, whose
//!   tokens the Azure DevOps simulator accepts as bearer tokens (service principals).
//! - Shared machinery: per-route request counting and scripted failures ([`ScriptedAnswer`],
//!   `fail_next`), keyed by *route template* (`"GET /{org}/_apis/projects"`), and the server
//!   lifecycle (a handle whose drop stops the server).
//!
//! What it must not do: depend on the pipeline's crates, sleep to simulate anything, or hold a
//! lock across an `.await`. State lives in `Arc<Mutex<..>>` and every mutation is visible to
//! the test through the handle at once.
//!
//! Layout: `scripted` (scripted answers), `traffic` (counting, scripts, change notification),
//! `server` (spawn and stop), `route_table` (a simulator's routes as one table of rows),
//! `params` (path and query parameters for the request extractors),
//! `ado/{seed,auth,error,request,routes,…}`, `port/{store,auth,limit,error,request,routes}`.
//! Each simulator lists every route it serves in one table (`ado/routes.rs`, `port/routes.rs`);
//! a new endpoint is a handler in its module and a row there.

pub mod ado;
pub mod identity;
mod params;
pub mod port;
mod route_table;
mod scripted;
mod server;
mod traffic;

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

pub use ado::{AdoSim, AdoSimConfig};
pub use identity::{IdentitySim, IdentitySimConfig};
pub use port::{PortOutage, PortSim, PortSimConfig, RateLimit};
pub use scripted::ScriptedAnswer;
pub use traffic::QueryParams;

/// Serves both simulators until `shutdown` is cancelled: Azure DevOps on `ado_addr`, Port on
/// `port_addr`. This is what `adoport sim` runs for the compose `sim` profile, e.g.
/// `ado_addr = 0.0.0.0:8081` (organization URL `http://sim:8081/acme`) and
/// `port_addr = 0.0.0.0:8082` (Port base URL `http://sim:8082`).
///
/// URLs inside Azure DevOps answers are built from each request's `Host` header, so they are
/// right for whoever calls (`http://sim:8081/...` inside compose, `http://localhost:8081/...`
/// from the host). Returns once both servers have stopped; fails if an address cannot be bound.
pub async fn serve(
    ado: AdoSimConfig,
    ado_addr: SocketAddr,
    port: PortSimConfig,
    port_addr: SocketAddr,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let ado_listener = tokio::net::TcpListener::bind(ado_addr).await?;
    let port_listener = tokio::net::TcpListener::bind(port_addr).await?;
    let ado = AdoSim::start_on(ado, ado_listener).await?;
    let port = PortSim::start_on(port, port_listener).await?;
    tracing::info!(
        organization_url = %ado.organization_url(),
        port_url = %port.base_url(),
        "simulators serving"
    );
    shutdown.cancelled().await;
    ado.shutdown().await;
    port.shutdown().await;
    tracing::info!("simulators stopped");
    Ok(())
}
