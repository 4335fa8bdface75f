//! The connection to RabbitMQ, kept up by one background task: connect, declare, watch, and
//! reconnect with backoff for as long as the process runs.
//!
//! Nothing waits for the broker when the bus is created: the task connects in the background
//! and everyone else asks [`Link`] for the live connection. [`Link::up`] waits until there is
//! one (the pipeline's publishers and consumers: a broker outage pauses them, nothing piles up);
//! [`Link::now`] answers at once (webhooks: 503 while the broker is away); [`Link::soon`] waits
//! at most the connect timeout (operator tools, metrics).
//!
//! Every step is bounded ([`BrokerTimeouts`]): the TCP connect and the AMQP handshake by the
//! connect timeout, channel open, declarations and `confirm.select` by the operation timeout.
//! A handshake that times out has its socket shut down, so that lapin's I/O thread for it ends
//! instead of waiting for ever on a broker that never answers. Once connected, AMQP heartbeats
//! (asked for at [`BrokerTimeouts::heartbeat`]) make lapin drop a connection that hears nothing
//! for two intervals; the task also hears about a dead connection from lapin's events, from a
//! periodic look at its status, and from operations that timed out on it ([`Link::broken`]).
//!
//! Each failed attempt and each lost connection is logged once, at WARN, naming the broker
//! (without credentials), what failed or timed out, and what to check.

use std::net::Shutdown;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::ConfirmSelectOptions;
use lapin::tcp::{AsyncTcpStream, OwnedTLSConfig};
use lapin::types::LongString;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties, Event};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::declare::declare_topology;
use super::rabbit::within;
use super::{BusError, reconnect_delay};
use crate::config::{BrokerEndpoint, BrokerTimeouts};
use crate::topology::{RECONNECT_BACKOFF_MAX, Topology};

/// A connection that is up: declared, with its confirm-mode publishing channels.
pub(super) struct Live {
    pub(super) connection: Connection,
    /// Shared by every publisher of the pipeline (lapin channels are safe to share).
    pub(super) publisher: Channel,
    /// Live events' publishes ([`super::Lane::Live`]): on a channel of their own, their
    /// confirms never wait behind a crawl's or a resync's (the broker handles each channel in
    /// its own process and confirms each channel's publishes in its order).
    pub(super) live_publisher: Channel,
    /// Counts connections; a report about an older one is ignored.
    pub(super) generation: u64,
}

impl Live {
    pub(super) fn healthy(&self) -> bool {
        self.connection.status().connected()
            && self.publisher.status().connected()
            && self.live_publisher.status().connected()
    }

    /// The broker holds back our publishes (a memory or disk alarm).
    pub(super) fn blocked(&self) -> bool {
        self.connection.status().blocked()
    }
}

/// What the link is doing.
#[derive(Clone)]
enum LinkState {
    /// Not connected: `attempts` in a row failed so far, the last one with `error`.
    Down {
        attempts: u32,
        error: Option<String>,
    },
    Up(Arc<Live>),
    /// Closed by its owner; nothing connects again.
    Closed,
}

/// Shared by the handles and the background task.
struct Shared {
    endpoint: BrokerEndpoint,
    topology: Topology,
    timeouts: BrokerTimeouts,
    state: watch::Sender<LinkState>,
    /// Operations report a connection they found broken (generation, what happened).
    broken: mpsc::Sender<(u64, String)>,
    /// The process's shutdown: waits end on it (the connection itself stays until [`Link::close`]).
    shutdown: CancellationToken,
}

/// The handle every part of the RabbitMQ bus holds. When the last handle goes, the task
/// closes the connection and ends.
pub(super) struct Link {
    shared: Arc<Shared>,
    /// Cancelled by [`Link::close`] or when the link is dropped: the task ends.
    stop: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Link {
    /// Starts connecting in the background (needs a tokio runtime). Never waits.
    pub(super) fn start(
        endpoint: BrokerEndpoint,
        topology: Topology,
        timeouts: BrokerTimeouts,
        shutdown: CancellationToken,
    ) -> Self {
        let (state, _) = watch::channel(LinkState::Down {
            attempts: 0,
            error: None,
        });
        // Bounded: reports about older connections pile up while one is made (they are read
        // and ignored after), and one about the current connection must still fit. Past this,
        // reports are dropped; heartbeats still notice a dead connection.
        let (broken, reports) = mpsc::channel(64);
        let shared = Arc::new(Shared {
            endpoint,
            topology,
            timeouts,
            state,
            broken,
            shutdown,
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(supervise(shared.clone(), reports, stop.clone()));
        Self {
            shared,
            stop,
            task: Mutex::new(Some(task)),
        }
    }

    /// The broker's URL without credentials.
    pub(super) fn endpoint(&self) -> &str {
        &self.shared.endpoint.redacted
    }

    pub(super) fn timeouts(&self) -> &BrokerTimeouts {
        &self.shared.timeouts
    }

    /// The live connection, waiting as long as it takes; `ShuttingDown` once the process
    /// shuts down or the link is closed.
    pub(super) async fn up(&self) -> Result<Arc<Live>, BusError> {
        self.wait_up(None).await
    }

    /// The live connection, waiting at most the connect timeout.
    pub(super) async fn soon(&self) -> Result<Arc<Live>, BusError> {
        self.wait_up(Some(self.shared.timeouts.connect)).await
    }

    /// The live connection if there is one now and the broker takes publishes.
    pub(super) fn now(&self) -> Result<Arc<Live>, BusError> {
        match &*self.shared.state.borrow() {
            LinkState::Up(live) if live.healthy() && !live.blocked() => Ok(live.clone()),
            LinkState::Closed => Err(BusError::ShuttingDown),
            state => Err(self.unreachable(state)),
        }
    }

    /// Why the bus cannot take messages now, or `None` when it can.
    pub(super) fn problem(&self) -> Option<String> {
        match self.now() {
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    pub(super) fn is_up(&self) -> bool {
        matches!(&*self.shared.state.borrow(), LinkState::Up(live) if live.healthy())
    }

    /// Tells the task that connection `generation` is broken (an operation on it timed out or
    /// failed at the connection level); the task drops it and connects again.
    pub(super) fn broken(&self, generation: u64, why: String) {
        let _ = self.shared.broken.try_send((generation, why));
    }

    /// Completes, with why, once connection `generation` is no longer the live one: lost,
    /// replaced by a new one, or closed. At once if that is already so.
    pub(super) async fn gone(&self, generation: u64) -> String {
        let mut state = self.shared.state.subscribe();
        loop {
            match &*state.borrow_and_update() {
                LinkState::Up(live) if live.generation == generation && live.healthy() => {}
                LinkState::Up(live) if live.generation == generation => {
                    return describe_dead(live);
                }
                LinkState::Up(_) => return "the connection was replaced by a new one".into(),
                LinkState::Down { error, .. } => {
                    return error
                        .clone()
                        .unwrap_or_else(|| "the connection was lost".into());
                }
                LinkState::Closed => return "the connection was closed".into(),
            }
            if state.changed().await.is_err() {
                return "the connection was closed".into();
            }
        }
    }

    /// Waits (watching shutdown) for `delay` before the next try of an operation.
    pub(super) async fn pause(&self, delay: Duration) -> Result<(), BusError> {
        tokio::select! {
            _ = self.shared.shutdown.cancelled() => Err(BusError::ShuttingDown),
            _ = self.stop.cancelled() => Err(BusError::ShuttingDown),
            _ = tokio::time::sleep(delay) => Ok(()),
        }
    }

    /// Completes when waits should end: the process shuts down or the link is closed.
    pub(super) async fn stopping(&self) {
        tokio::select! {
            _ = self.shared.shutdown.cancelled() => {}
            _ = self.stop.cancelled() => {}
        }
    }

    /// Waits until the first connection attempt has an outcome: `Ok` once connected, its
    /// error if it failed (the link keeps trying in the background).
    pub(super) async fn first_attempt(&self) -> Result<(), BusError> {
        let mut state = self.shared.state.subscribe();
        loop {
            match &*state.borrow_and_update() {
                LinkState::Up(_) => return Ok(()),
                LinkState::Closed => return Err(BusError::ShuttingDown),
                down @ LinkState::Down { attempts, .. } if *attempts > 0 => {
                    return Err(self.unreachable(down));
                }
                LinkState::Down { .. } => {}
            }
            tokio::select! {
                _ = self.shared.shutdown.cancelled() => return Err(BusError::ShuttingDown),
                changed = state.changed() => if changed.is_err() { return Err(BusError::ShuttingDown) },
            }
        }
    }

    /// Closes the connection (bounded) and stops reconnecting.
    pub(super) async fn close(&self) {
        self.stop.cancel();
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            // The task closes the connection within the operation timeout.
            let _ = tokio::time::timeout(self.shared.timeouts.operation * 2, task).await;
        }
    }

    async fn wait_up(&self, limit: Option<Duration>) -> Result<Arc<Live>, BusError> {
        let deadline = limit.map(|d| tokio::time::Instant::now() + d);
        let mut state = self.shared.state.subscribe();
        loop {
            let current = state.borrow_and_update().clone();
            match &current {
                LinkState::Up(live) if live.healthy() => return Ok(live.clone()),
                // Dead before the task noticed: tell it, then wait for the next state.
                LinkState::Up(live) => self.broken(live.generation, describe_dead(live)),
                LinkState::Closed => return Err(BusError::ShuttingDown),
                LinkState::Down { .. } => {}
            }
            let expired = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.shared.shutdown.cancelled() => return Err(BusError::ShuttingDown),
                _ = self.stop.cancelled() => return Err(BusError::ShuttingDown),
                _ = expired => return Err(self.unreachable(&current)),
                changed = state.changed() => if changed.is_err() { return Err(BusError::ShuttingDown) },
            }
        }
    }

    fn unreachable(&self, state: &LinkState) -> BusError {
        let detail = match state {
            LinkState::Down {
                error: Some(error), ..
            } => error.clone(),
            LinkState::Down { error: None, .. } => "not connected yet (connecting)".into(),
            LinkState::Up(live) if live.blocked() => "the broker is holding back publishes (a memory or disk alarm on the broker: check its free memory and disk)".into(),
            LinkState::Up(live) => describe_dead(live),
            LinkState::Closed => "the connection is closed".into(),
        };
        BusError::Unreachable {
            endpoint: self.shared.endpoint.redacted.clone(),
            detail,
        }
    }
}

fn describe_dead(live: &Live) -> String {
    let status = live.connection.status();
    let what = if status.connected() {
        "a publishing channel closed"
    } else if status.errored() {
        "the connection failed"
    } else if status.closing() || status.closed() {
        "the connection was closed"
    } else {
        "the connection is not up"
    };
    what.to_string()
}

/// The background task: connect, watch, reconnect, until stopped.
async fn supervise(
    shared: Arc<Shared>,
    mut reports: mpsc::Receiver<(u64, String)>,
    stop: CancellationToken,
) {
    let endpoint = shared.endpoint.redacted.clone();
    let mut generation = 0;
    let mut attempts = 0u32;
    let mut down_since: Option<Instant> = None;
    loop {
        let attempt = tokio::select! {
            _ = stop.cancelled() => break,
            attempt = connect(&shared, generation + 1) => attempt,
        };
        match attempt {
            Ok(live) => {
                generation = live.generation;
                attempts = 0;
                let waited = down_since.take().map(|since| since.elapsed().as_secs_f64());
                match (generation, waited) {
                    (1, None) => tracing::info!(endpoint = %endpoint, "connected to the broker"),
                    (1, Some(waited)) => tracing::info!(
                        endpoint = %endpoint,
                        waited_seconds = waited,
                        "connected to the broker; publishing and consuming start"
                    ),
                    (_, waited) => tracing::info!(
                        endpoint = %endpoint,
                        down_seconds = waited.unwrap_or_default(),
                        "connected to the broker again; publishing and consuming resume"
                    ),
                }
                let live = Arc::new(live);
                shared.state.send_replace(LinkState::Up(live.clone()));
                let lost = watch_connection(&shared, &live, &mut reports, &stop).await;
                match lost {
                    None => {
                        close_connection(&live.connection, shared.timeouts.operation).await;
                        break;
                    }
                    Some(why) => {
                        tracing::warn!(
                            endpoint = %endpoint,
                            reason = %why,
                            "lost the connection to the broker; reconnecting (publishing and consuming wait until it is back)"
                        );
                        down_since = Some(Instant::now());
                        shared.state.send_replace(LinkState::Down {
                            attempts: 0,
                            error: Some(format!("connection lost: {why}")),
                        });
                        let limit = shared.timeouts.operation;
                        tokio::spawn(
                            async move { close_connection(&live.connection, limit).await },
                        );
                        // A broker that takes connections and drops them again is not
                        // hammered: a short pause before the next attempt.
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = tokio::time::sleep(reconnect_delay(0, RECONNECT_BACKOFF_MAX)) => {}
                        }
                    }
                }
            }
            Err(error) => {
                attempts += 1;
                let delay = reconnect_delay(attempts, RECONNECT_BACKOFF_MAX);
                tracing::warn!(
                    endpoint = %endpoint,
                    attempt = attempts,
                    retry_in_ms = delay.as_millis() as u64,
                    error = %error,
                    "cannot connect to the broker; publishing and consuming wait until it answers"
                );
                down_since.get_or_insert_with(Instant::now);
                shared.state.send_replace(LinkState::Down {
                    attempts,
                    error: Some(error),
                });
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    shared.state.send_replace(LinkState::Closed);
}

/// Watches a live connection until it is broken (returns why) or the link stops (`None`).
async fn watch_connection(
    shared: &Shared,
    live: &Live,
    reports: &mut mpsc::Receiver<(u64, String)>,
    stop: &CancellationToken,
) -> Option<String> {
    let mut events = live.connection.events_listener();
    // lapin reports some closes (a clean close by the broker) without an event: look at the
    // status now and then too.
    let mut look = tokio::time::interval(shared.timeouts.heartbeat.max(Duration::from_secs(1)));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return None,
            report = reports.recv() => match report {
                Some((generation, why)) if generation == live.generation => return Some(why),
                Some(_) => {}
                None => return None,
            },
            event = events.next() => match event {
                Some(Event::ConnectionBlocked(reason)) => {
                    tracing::warn!(
                        endpoint = %shared.endpoint.redacted,
                        reason = %reason,
                        "the broker holds back our publishes (memory or disk alarm): check its free memory and disk; publishing waits, webhooks get 503"
                    );
                    shared.state.send_modify(|_| {});
                }
                Some(Event::ConnectionUnblocked) => {
                    tracing::info!(endpoint = %shared.endpoint.redacted, "the broker takes publishes again");
                    shared.state.send_modify(|_| {});
                }
                Some(Event::Error(e)) if !live.healthy() => return Some(e.to_string()),
                Some(_) => {}
                None => return Some("lapin ended the connection's events".into()),
            },
            _ = look.tick() => if !live.healthy() {
                return Some(describe_dead(live));
            },
        }
    }
}

/// One connection attempt: TCP, AMQP handshake, publishing channel, topology, confirm mode.
async fn connect(shared: &Shared, generation: u64) -> Result<Live, String> {
    let t = &shared.timeouts;
    let connection = open_connection(shared).await?;
    let ready = async {
        let publisher = within(t.operation, "channel.open", connection.create_channel()).await?;
        declare_topology(&publisher, &shared.topology, t.operation).await?;
        let live_publisher =
            within(t.operation, "channel.open", connection.create_channel()).await?;
        for channel in [&publisher, &live_publisher] {
            within(
                t.operation,
                "confirm.select",
                channel.confirm_select(ConfirmSelectOptions::default()),
            )
            .await?;
        }
        Ok::<_, BusError>((publisher, live_publisher))
    };
    match ready.await {
        Ok((publisher, live_publisher)) => Ok(Live {
            connection,
            publisher,
            live_publisher,
            generation,
        }),
        Err(e) => {
            let limit = t.operation;
            tokio::spawn(async move { close_connection(&connection, limit).await });
            Err(format!(
                "connected, but {e} (an overloaded broker answers slowly: check its load, memory and disk alarms; a refused declaration means the queues were declared with other arguments)"
            ))
        }
    }
}

/// Opens the TCP connection (and TLS) ourselves, within the connect timeout, and hands the
/// socket to lapin for the AMQP handshake, within what is left of it. A handshake that does
/// not finish in time has its socket shut down: lapin's I/O thread for it then ends.
async fn open_connection(shared: &Shared) -> Result<Connection, String> {
    let endpoint = &shared.endpoint;
    let t = &shared.timeouts;
    let started = tokio::time::Instant::now();
    let setting = "ADOPORT__BROKER__CONNECT_TIMEOUT_SECS";
    let address = (endpoint.host.as_str(), endpoint.port);
    let tcp = match tokio::time::timeout(t.connect, tokio::net::TcpStream::connect(address)).await {
        Err(_) => {
            return Err(format!(
                "no TCP connection within {} ({setting}): check the host and port in ADOPORT__BROKER__URL and that no firewall drops the packets",
                seconds(t.connect)
            ));
        }
        Ok(Err(e)) => {
            return Err(format!(
                "TCP connect failed ({e}): is RabbitMQ running there, and are the host and port in ADOPORT__BROKER__URL right?"
            ));
        }
        Ok(Ok(tcp)) => tcp,
    };
    let (stream, socket) = detachable(tcp).map_err(|e| format!("cannot set up the socket: {e}"))?;
    // Until lapin has finished the handshake, leaving (timeout, error, cancellation) shuts
    // the socket down, so that lapin's I/O thread for it ends too.
    let mut abandon = Abandon(Some(socket));
    let handshake = async {
        let stream = if endpoint.tls {
            stream
                .into_tls(&endpoint.host, OwnedTLSConfig::default().as_ref())
                .await
                .map_err(|e| format!("TLS handshake failed: {e}"))?
        } else {
            stream
        };
        let uri = connection_uri(&endpoint.uri, t.heartbeat);
        let runtime = lapin::runtime::default_runtime().map_err(|e| e.to_string())?;
        // lapin asks this for the socket; it gets the one opened above, once.
        let slot = Arc::new(Mutex::new(Some(stream)));
        let socket = async move |_uri, _runtime| {
            slot.lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .ok_or_else(|| {
                    lapin::Error::from(std::io::Error::other(
                        "adoport opens one socket per connection attempt",
                    ))
                })
        };
        let properties = ConnectionProperties::default()
            // Named after the topology prefix, so an operator (or a test) can find it.
            .with_connection_name(LongString::from(format!(
                "adoport-{}{}",
                shared.topology.prefix(),
                std::process::id()
            )));
        Connection::connector(uri, runtime, socket, properties)
            .await
            .map_err(|e| {
                format!(
                    "the AMQP handshake failed ({e}): check the user, password and vhost in ADOPORT__BROKER__URL"
                )
            })
    };
    let left = t.connect.saturating_sub(started.elapsed());
    match tokio::time::timeout(left, handshake).await {
        Ok(Ok(connection)) => {
            abandon.0 = None;
            Ok(connection)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "the broker took the TCP connection but did not finish the AMQP handshake within {} ({setting}): it may be overloaded or stuck (check its log, memory and disk alarms), or a proxy or load balancer in between accepts connections without forwarding them",
            seconds(t.connect)
        )),
    }
}

/// A second handle on a socket lapin is handshaking on: shuts it down when dropped, unless
/// the handshake succeeded (then it is `None`).
struct Abandon(Option<std::net::TcpStream>);

impl Drop for Abandon {
    fn drop(&mut self) {
        if let Some(socket) = self.0.take() {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

/// The socket as lapin's stream type, plus a second handle on it to shut it down.
fn detachable(
    tcp: tokio::net::TcpStream,
) -> std::io::Result<(
    AsyncTcpStream<async_compat::Compat<tokio::net::TcpStream>>,
    std::net::TcpStream,
)> {
    tcp.set_nodelay(true)?;
    let std = tcp.into_std()?;
    let killer = std.try_clone()?;
    let tcp = tokio::net::TcpStream::from_std(std)?;
    Ok((
        AsyncTcpStream::Plain(async_compat::Compat::new(tcp)),
        killer,
    ))
}

/// Closes a connection, waiting at most `limit` for the broker to answer.
async fn close_connection(connection: &Connection, limit: Duration) {
    let _ = tokio::time::timeout(limit, connection.close(200, "adoport: closing".into())).await;
}

fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// The largest AMQP frame adoport asks for (bytes), unless `ADOPORT__BROKER__URL` names one
/// (`?frame_max=`). lapin keeps a send and a receive buffer of 32 frames per connection, which
/// fill up as a ring over time: at RabbitMQ's default of 128 KiB that is 8 MiB resident per
/// connection, at 32 KiB 2 MiB. A larger message is sent in more frames.
pub const FRAME_MAX: u32 = 32 * 1024;

/// `uri` with the heartbeat (`heartbeat`, unless the URL names one) and the frame size
/// ([`FRAME_MAX`], unless the URL names one) adoport asks the broker for.
fn connection_uri(uri: &AMQPUri, heartbeat: Duration) -> AMQPUri {
    let mut uri = uri.clone();
    if uri.query.heartbeat.is_none() {
        uri.query.heartbeat = Some(u16::try_from(heartbeat.as_secs()).unwrap_or(u16::MAX));
    }
    if uri.query.frame_max.is_none() {
        uri.query.frame_max = Some(FRAME_MAX);
    }
    uri
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_for_small_frames_unless_the_url_names_a_size() {
        let heartbeat = Duration::from_secs(10);
        let plain: AMQPUri = "amqp://guest:guest@127.0.0.1:5672/%2f"
            .parse()
            .expect("a URL");
        let asked = connection_uri(&plain, heartbeat);
        assert_eq!(asked.query.frame_max, Some(FRAME_MAX));
        assert_eq!(asked.query.heartbeat, Some(10));
        let named: AMQPUri = "amqp://guest:guest@127.0.0.1:5672/%2f?frame_max=131072&heartbeat=5"
            .parse()
            .expect("a URL");
        let asked = connection_uri(&named, heartbeat);
        assert_eq!(asked.query.frame_max, Some(131_072));
        assert_eq!(asked.query.heartbeat, Some(5));
    }
}
