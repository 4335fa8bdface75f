//! A TCP proxy in front of a broker that fails on demand, for tests of what a role does when
//! the network or the broker misbehaves without anyone restarting the broker.
//!
//! - [`Fault::Pass`]: forwards both ways.
//! - [`Fault::Cut`]: closes every connection at once and closes new ones as soon as they are
//!   accepted (what a stopped broker or a cut network looks like to the client).
//! - [`Fault::BlackHole`]: keeps every connection open and accepts new ones, but nothing
//!   passes and nothing is ever answered (an overloaded or wedged broker, a half-open proxy).
//!   The broker sees its side closed.
//! - [`Fault::Partition`]: like `BlackHole` for the client, and the broker's side stays open
//!   too, hearing nothing (a network partition: each side finds out only by its heartbeats).
//!
//! Leaving `BlackHole` or `Cut` closes the connections that were affected: bytes were lost on
//! them. New connections after [`FaultProxy::set`]`(Pass)` work.
//!
//! Depends on tokio only: `shared/tests/rabbit_bus.rs` includes this file as a module too (the
//! shared crate cannot depend on this harness, which depends on it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How the proxy treats connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Pass,
    Cut,
    BlackHole,
    Partition,
}

/// A running proxy; dropping it closes every connection it holds.
pub struct FaultProxy {
    address: SocketAddr,
    mode: watch::Sender<Fault>,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

/// Connections accepted, and open now.
#[derive(Default)]
struct Counts {
    accepted: AtomicU64,
    open: AtomicU64,
}

/// Counts a connection as open while it lives.
struct Open(Arc<Counts>);

impl Open {
    fn new(counts: &Arc<Counts>) -> Self {
        counts.accepted.fetch_add(1, Ordering::Relaxed);
        counts.open.fetch_add(1, Ordering::Relaxed);
        Self(counts.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The accept task owns the connection tasks: aborting it drops them all.
        self.task.abort();
    }
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`, starting in `mode`.
    pub async fn start(upstream: SocketAddr, mode: Fault) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let (mode, watcher) = watch::channel(mode);
        let counts = Arc::new(Counts::default());
        let task = tokio::spawn(accept(listener, upstream, watcher, counts.clone()));
        Ok(Self {
            address,
            mode,
            counts,
            task,
        })
    }

    /// Where clients connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `url` (an `amqp://user:pass@host:port/vhost` URL) pointed at this proxy instead.
    pub fn amqp_url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap_or(("amqp", url));
        let (credentials, rest) = match rest.rsplit_once('@') {
            Some((credentials, rest)) => (format!("{credentials}@"), rest),
            None => (String::new(), rest),
        };
        let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("/");
        format!("{scheme}://{credentials}{}{path}", self.address)
    }

    /// Changes the mode; connections already open follow at once.
    pub fn set(&self, mode: Fault) {
        self.mode.send_replace(mode);
    }

    /// Connections accepted so far (in any mode).
    pub fn accepted(&self) -> u64 {
        self.counts.accepted.load(Ordering::Relaxed)
    }

    /// Connections open now: a client that gave up on one has closed it.
    pub fn open(&self) -> u64 {
        self.counts.open.load(Ordering::Relaxed)
    }
}

async fn accept(
    listener: TcpListener,
    upstream: SocketAddr,
    mode: watch::Receiver<Fault>,
    counts: Arc<Counts>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            incoming = listener.accept() => {
                let Ok((client, _)) = incoming else { continue };
                let open = Open::new(&counts);
                let mode = mode.clone();
                connections.spawn(async move {
                    serve(client, upstream, mode).await;
                    drop(open);
                });
            }
            // Reap finished connections so the set stays as large as what is open.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve(mut client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Fault>) {
    let started_in = *mode.borrow_and_update();
    match started_in {
        Fault::Cut => return,
        Fault::BlackHole | Fault::Partition => return black_hole(client, mode).await,
        Fault::Pass => {}
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let changed = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
        changed = mode.wait_for(|m| *m != Fault::Pass) => changed.map(|m| *m),
    };
    match changed {
        Ok(Fault::BlackHole) => {
            drop(server);
            black_hole(client, mode).await;
        }
        Ok(Fault::Partition) => {
            let server_mode = mode.clone();
            tokio::join!(black_hole(client, mode), black_hole(server, server_mode));
        }
        _ => {}
    }
}

/// Reads and drops whatever one side sends, answers nothing, until the mode changes.
async fn black_hole(mut client: TcpStream, mut mode: watch::Receiver<Fault>) {
    let faulty = *mode.borrow_and_update();
    let mut sink = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = client.read(&mut sink) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            changed = mode.changed() => {
                if changed.is_err() || *mode.borrow_and_update() != faulty {
                    return;
                }
            }
        }
    }
}
