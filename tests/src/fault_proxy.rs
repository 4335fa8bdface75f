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
//! - [`Fault::HoldNextPublisher`]: forwards both ways, but on each connection the channel the
//!   client publishes on next (`basic.publish`) hears nothing more from the broker: its
//!   publisher confirms, and anything else the broker sends on it, are held in order, while
//!   the other channels and the heartbeats (channel 0) pass. [`FaultProxy::holds`] waits until
//!   frames are held; [`FaultProxy::set`]`(Pass)` sends them, in order, and passes the rest.
//!
//! Leaving `BlackHole` or `Cut` closes the connections that were affected: bytes were lost on
//! them. New connections after [`FaultProxy::set`]`(Pass)` work.
//!
//! Connections are forwarded frame by frame (AMQP 0-9-1 framing, to tell channels apart); a
//! stream that does not follow it is closed.
//!
//! Depends on tokio only: `shared/tests/rabbit_bus.rs` includes this file as a module too (the
//! shared crate cannot depend on this harness, which depends on it).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How the proxy treats connections (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forwards both ways.
    Pass,
    /// Closes every connection.
    Cut,
    /// Nothing passes; the broker's side is closed.
    BlackHole,
    /// Nothing passes; both sides stay open.
    Partition,
    /// The broker's frames on the channel the client publishes on next are held.
    HoldNextPublisher,
}

impl Fault {
    /// Whether connections stay up and carry frames in this mode.
    fn forwards(self) -> bool {
        matches!(self, Fault::Pass | Fault::HoldNextPublisher)
    }
}

/// A running proxy; dropping it closes every connection it holds.
pub struct FaultProxy {
    address: SocketAddr,
    mode: watch::Sender<Fault>,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

/// Connections accepted, and open now; frames held back from clients now.
struct Counts {
    accepted: AtomicU64,
    open: AtomicU64,
    held: watch::Sender<usize>,
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
        let counts = Arc::new(Counts {
            accepted: AtomicU64::new(0),
            open: AtomicU64::new(0),
            held: watch::Sender::new(0),
        });
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

    /// Frames from the broker held back from clients now ([`Fault::HoldNextPublisher`]).
    pub fn held(&self) -> usize {
        *self.counts.held.borrow()
    }

    /// Waits until at least `frames` frames from the broker are held back from clients.
    pub async fn holds(&self, frames: usize) {
        let mut held = self.counts.held.subscribe();
        // The sender lives in `self`: the wait ends only when the condition holds.
        let _ = held.wait_for(|held| *held >= frames).await;
    }
}

/// Accepts connections and serves each in its own task until the proxy is dropped.
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
                let counts = counts.clone();
                connections.spawn(async move {
                    serve(client, upstream, mode, &counts.held).await;
                    drop(open);
                });
            }
            // Reap finished connections so the set stays as large as what is open.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Forwards one connection while the mode forwards, and breaks it as the mode says.
async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut mode: watch::Receiver<Fault>,
    held: &watch::Sender<usize>,
) {
    let started_in = *mode.borrow_and_update();
    match started_in {
        Fault::Cut => return,
        Fault::BlackHole | Fault::Partition => return black_hole(client, mode).await,
        Fault::Pass | Fault::HoldNextPublisher => {}
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let changed = tokio::select! {
        _ = forward(&mut client, &mut server, mode.clone(), held) => return,
        changed = mode.wait_for(|m| !m.forwards()) => changed.map(|m| *m),
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

/// How much one read takes from a socket.
const READ_SIZE: usize = 16 * 1024;

/// Forwards both ways while the mode forwards, until either side closes. The channel held in
/// [`Fault::HoldNextPublisher`] is this connection's.
async fn forward(
    client: &mut TcpStream,
    server: &mut TcpStream,
    mode: watch::Receiver<Fault>,
    held: &watch::Sender<usize>,
) {
    let (from_client, to_client) = client.split();
    let (from_server, to_server) = server.split();
    let publisher = Publisher::default();
    tokio::select! {
        _ = client_to_broker(from_client, to_server, mode.clone(), &publisher) => {}
        _ = broker_to_client(from_server, to_client, mode, &publisher, held) => {}
    }
}

/// Forwards what the client sends as it comes. In [`Fault::HoldNextPublisher`], the channel
/// of the first `basic.publish` becomes `publisher`, before the broker has the message: none
/// of its confirms can pass.
async fn client_to_broker(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    mode: watch::Receiver<Fault>,
    publisher: &Publisher,
) {
    let mut frames = FrameSplitter::default();
    let mut buffer = vec![0u8; READ_SIZE];
    loop {
        // 0: the client closed.
        let Ok(read @ 1..) = from.read(&mut buffer).await else {
            return;
        };
        frames.push(&buffer[..read]);
        loop {
            match frames.next_frame() {
                Ok(Some(frame)) => {
                    let picking = *mode.borrow() == Fault::HoldNextPublisher;
                    if let Some(channel) = frame.publishes_on().filter(|_| picking) {
                        publisher.pick(channel);
                    }
                }
                Ok(None) => break,
                Err(NotAmqp) => return,
            }
        }
        let forwards = mode.borrow().forwards();
        if !forwards {
            return out_of_service().await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

/// Forwards what the broker sends, frame by frame. In [`Fault::HoldNextPublisher`] the frames
/// of `publisher`'s channel are held; in [`Fault::Pass`] the held frames go first, in order.
async fn broker_to_client(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    mut mode: watch::Receiver<Fault>,
    publisher: &Publisher,
    held_count: &watch::Sender<usize>,
) {
    let mut frames = FrameSplitter::default();
    let mut held = Held::new(held_count);
    let mut buffer = vec![0u8; READ_SIZE];
    loop {
        tokio::select! {
            read = from.read(&mut buffer) => {
                // 0: the broker closed.
                let Ok(read @ 1..) = read else { return };
                frames.push(&buffer[..read]);
            }
            changed = mode.changed() => if changed.is_err() { return },
        }
        // The mode now, for everything read so far: a frame never overtakes one held before it.
        let mut sending = Vec::new();
        let now = *mode.borrow_and_update();
        let held_channel = match now {
            Fault::HoldNextPublisher => publisher.picked(),
            Fault::Pass => {
                sending.extend(held.release());
                publisher.forget();
                None
            }
            Fault::Cut | Fault::BlackHole | Fault::Partition => return out_of_service().await,
        };
        loop {
            match frames.next_frame() {
                Ok(Some(frame)) if held_channel.is_some() && frame.channel() == held_channel => {
                    held.push(frame);
                }
                Ok(Some(frame)) => sending.extend_from_slice(&frame.bytes),
                Ok(None) => break,
                Err(NotAmqp) => return,
            }
        }
        if !sending.is_empty() && to.write_all(&sending).await.is_err() {
            return;
        }
    }
}

/// The channel of a connection whose frames from the broker are held
/// ([`Fault::HoldNextPublisher`]), once it published.
#[derive(Default)]
struct Publisher(Mutex<Option<u16>>);

impl Publisher {
    /// Picks `channel`, unless one is picked already.
    fn pick(&self, channel: u16) {
        self.lock().get_or_insert(channel);
    }

    /// The channel picked, if any.
    fn picked(&self) -> Option<u16> {
        *self.lock()
    }

    /// Picks none: the next publish picks again.
    fn forget(&self) {
        *self.lock() = None;
    }

    /// The pick, to read or change.
    fn lock(&self) -> MutexGuard<'_, Option<u16>> {
        // Nothing panics while holding it; and a plain value is sound either way.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Passes nothing more, and leaves the connection open: `serve` takes it out of service as the
/// mode says.
async fn out_of_service() {
    std::future::pending::<()>().await;
}

/// Frames held back from a client, in order, counted in the proxy's `held` while they are.
struct Held<'a> {
    bytes: Vec<u8>,
    frames: usize,
    count: &'a watch::Sender<usize>,
}

impl<'a> Held<'a> {
    /// Nothing held yet, counted in `count`.
    fn new(count: &'a watch::Sender<usize>) -> Self {
        Self {
            bytes: Vec::new(),
            frames: 0,
            count,
        }
    }

    /// Holds `frame` after those held before it.
    fn push(&mut self, frame: Frame) {
        self.bytes.extend_from_slice(&frame.bytes);
        self.frames += 1;
        self.count.send_modify(|held| *held += 1);
    }

    /// The held frames' bytes, in order; none are held any more.
    fn release(&mut self) -> Vec<u8> {
        let frames = std::mem::take(&mut self.frames);
        self.count.send_modify(|held| *held -= frames);
        std::mem::take(&mut self.bytes)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // The connection ended: what it held is lost with it.
        self.release();
    }
}

/// The protocol header an AMQP 0-9-1 client's stream opens with.
const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
/// A frame's header: type (u8), channel (u16), payload size (u32), big-endian.
const FRAME_HEADER_LEN: usize = 7;
/// The byte every frame ends with.
const FRAME_END: u8 = 0xCE;
/// The type of a method frame, whose payload starts with its class and method ids.
const METHOD_FRAME: u8 = 1;
/// The frame types there are: method, content header, content body, heartbeat.
const FRAME_TYPES: [u8; 4] = [METHOD_FRAME, 2, 3, 8];
/// `basic.publish` (class 60, method 40).
const BASIC_PUBLISH: (u16, u16) = (60, 40);

/// A whole frame of an AMQP 0-9-1 stream as read, end byte included; or the protocol header.
#[derive(Debug, PartialEq, Eq)]
struct Frame {
    bytes: Vec<u8>,
}

impl Frame {
    /// Its channel (0: the connection's own, heartbeats among them); `None` for the protocol
    /// header.
    fn channel(&self) -> Option<u16> {
        if self.bytes.starts_with(b"AMQP") {
            return None;
        }
        let channel = self.bytes.get(1..3)?;
        Some(u16::from_be_bytes([channel[0], channel[1]]))
    }

    /// Its class and method ids, for a method frame.
    fn method(&self) -> Option<(u16, u16)> {
        if self.bytes.first() != Some(&METHOD_FRAME) {
            return None;
        }
        let ids = self.bytes.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + 4)?;
        Some((
            u16::from_be_bytes([ids[0], ids[1]]),
            u16::from_be_bytes([ids[2], ids[3]]),
        ))
    }

    /// The channel it publishes on, for a `basic.publish` frame.
    fn publishes_on(&self) -> Option<u16> {
        self.channel()
            .filter(|_| self.method() == Some(BASIC_PUBLISH))
    }
}

/// A stream that does not follow AMQP 0-9-1 framing.
#[derive(Debug, PartialEq, Eq)]
struct NotAmqp;

/// Splits one direction of an AMQP 0-9-1 connection, read in pieces of any size, into whole
/// frames (the first may be the protocol header).
#[derive(Default)]
struct FrameSplitter {
    /// Bytes read; those before `start` were handed out as frames.
    pending: Vec<u8>,
    start: usize,
    /// Whether a frame was handed out: only the first can be the protocol header.
    started: bool,
}

impl FrameSplitter {
    /// Adds what was read.
    fn push(&mut self, bytes: &[u8]) {
        self.pending.drain(..self.start);
        self.start = 0;
        self.pending.extend_from_slice(bytes);
    }

    /// The next whole frame, `None` until more is read.
    fn next_frame(&mut self) -> Result<Option<Frame>, NotAmqp> {
        let unread = &self.pending[self.start..];
        let opening = !self.started && unread.first() == Some(&PROTOCOL_HEADER[0]);
        let length = if opening {
            PROTOCOL_HEADER.len()
        } else {
            if unread
                .first()
                .is_some_and(|kind| !FRAME_TYPES.contains(kind))
            {
                return Err(NotAmqp);
            }
            let Some(&[_, _, _, a, b, c, d]) = unread.get(..FRAME_HEADER_LEN) else {
                return Ok(None);
            };
            FRAME_HEADER_LEN + u32::from_be_bytes([a, b, c, d]) as usize + 1
        };
        let Some(bytes) = unread.get(..length) else {
            return Ok(None);
        };
        let well_formed = if opening {
            bytes.starts_with(b"AMQP")
        } else {
            bytes.last() == Some(&FRAME_END)
        };
        if !well_formed {
            return Err(NotAmqp);
        }
        let frame = Frame {
            bytes: bytes.to_vec(),
        };
        self.start += length;
        self.started = true;
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame of `kind` on `channel` with `payload`.
    fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
        let mut bytes = vec![kind];
        bytes.extend_from_slice(&channel.to_be_bytes());
        bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes.push(FRAME_END);
        bytes
    }

    /// A method frame of `(class, method)` on `channel`, with a few argument bytes.
    fn method(channel: u16, (class, method): (u16, u16)) -> Vec<u8> {
        let mut payload = class.to_be_bytes().to_vec();
        payload.extend_from_slice(&method.to_be_bytes());
        payload.extend_from_slice(&[0, 0, 1, b'x']);
        frame(METHOD_FRAME, channel, &payload)
    }

    /// Every frame `stream` splits into, read `chunk` bytes at a time.
    fn split(stream: &[u8], chunk: usize) -> Result<Vec<Frame>, NotAmqp> {
        let mut splitter = FrameSplitter::default();
        let mut frames = Vec::new();
        for piece in stream.chunks(chunk) {
            splitter.push(piece);
            while let Some(frame) = splitter.next_frame()? {
                frames.push(frame);
            }
        }
        Ok(frames)
    }

    #[test]
    fn a_clients_stream_splits_into_the_header_and_its_frames_however_it_is_read() {
        let publish = method(3, BASIC_PUBLISH);
        let content_header = frame(2, 3, &[0; 14]);
        let body = frame(3, 3, &[b'p'; 40_000]);
        let heartbeat = frame(8, 0, &[]);
        let pieces = [
            PROTOCOL_HEADER.to_vec(),
            publish.clone(),
            content_header,
            body,
            heartbeat,
        ];
        let stream = pieces.concat();
        for chunk in [1, 2, 7, 8, 9, 1000, stream.len()] {
            let frames = split(&stream, chunk).expect("AMQP");
            let bytes: Vec<_> = frames.iter().map(|f| f.bytes.clone()).collect();
            assert_eq!(bytes, pieces, "read {chunk} bytes at a time");
            assert_eq!(frames[0].channel(), None, "the protocol header");
            assert_eq!(frames[1].method(), Some(BASIC_PUBLISH));
            assert_eq!(frames[1].channel(), Some(3));
            assert_eq!(frames[2].method(), None, "a content header is no method");
            assert_eq!(frames[4].channel(), Some(0));
        }
    }

    #[test]
    fn a_brokers_stream_has_no_header_and_a_partial_frame_waits_for_the_rest() {
        let ack = method(5, (60, 80));
        let mut splitter = FrameSplitter::default();
        splitter.push(&ack[..FRAME_HEADER_LEN - 1]);
        assert_eq!(splitter.next_frame(), Ok(None), "half a frame header");
        splitter.push(&ack[FRAME_HEADER_LEN - 1..ack.len() - 1]);
        assert_eq!(splitter.next_frame(), Ok(None), "all but the end byte");
        splitter.push(&ack[ack.len() - 1..]);
        let frame = splitter.next_frame().expect("AMQP").expect("a frame");
        assert_eq!((frame.channel(), frame.method()), (Some(5), Some((60, 80))));
        assert_eq!(splitter.next_frame(), Ok(None));
        // A protocol header later in the stream is not AMQP: 'A' is no frame type.
        splitter.push(PROTOCOL_HEADER);
        splitter.push(&[0; 8]);
        assert_eq!(splitter.next_frame(), Err(NotAmqp));
    }

    #[test]
    fn a_frame_without_its_end_byte_or_of_no_frame_type_is_not_amqp() {
        let mut broken = method(1, BASIC_PUBLISH);
        *broken.last_mut().expect("a byte") = 0;
        assert_eq!(split(&broken, 4), Err(NotAmqp));
        assert_eq!(split(b"GET / HTTP/1.1\r\n\r\n", 64), Err(NotAmqp));
    }

    /// Reads exactly `length` bytes from `stream`, failing the test after a few seconds.
    async fn read(stream: &mut TcpStream, length: usize) -> Vec<u8> {
        let mut bytes = vec![0; length];
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            stream.read_exact(&mut bytes),
        )
        .await
        .expect("in time")
        .expect("read");
        bytes
    }

    #[tokio::test]
    async fn the_next_publishers_channel_is_held_in_order_while_the_others_pass() {
        let broker = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let proxy = FaultProxy::start(broker.local_addr().expect("address"), Fault::Pass)
            .await
            .expect("proxy");
        let mut client = TcpStream::connect(proxy.address()).await.expect("connect");
        let (mut server, _) = broker.accept().await.expect("accept");
        proxy.set(Fault::HoldNextPublisher);

        // Channel 1 publishes; channel 2 only hears the broker.
        let publish = [PROTOCOL_HEADER.to_vec(), method(1, BASIC_PUBLISH)].concat();
        client.write_all(&publish).await.expect("write");
        assert_eq!(read(&mut server, publish.len()).await, publish);
        let (first_ack, second_ack) = (method(1, (60, 80)), method(1, (60, 120)));
        let (heartbeat, other) = (frame(8, 0, &[]), method(2, (60, 80)));
        let answers = [
            first_ack.clone(),
            heartbeat.clone(),
            other.clone(),
            second_ack.clone(),
        ];
        server.write_all(&answers.concat()).await.expect("write");

        let passing = [heartbeat, other].concat();
        assert_eq!(read(&mut client, passing.len()).await, passing);
        proxy.holds(2).await;
        assert_eq!(proxy.held(), 2);
        proxy.set(Fault::Pass);
        let held = [first_ack, second_ack].concat();
        assert_eq!(read(&mut client, held.len()).await, held, "in order");
        assert_eq!(proxy.held(), 0);
    }
}
