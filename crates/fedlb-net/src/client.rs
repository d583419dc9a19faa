//! The connecting side: an agent reporting to its farm node, a farm node to the global node.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use quinn::{Connection, ConnectionError, Endpoint, ReadError, ReadToEndError, SendStream};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{error, info, warn};

use crate::close::{clip, describe, is_duplicate_identity};
use crate::socket::enlarge_buffers;
use crate::wire::{HELLO_LEN, Hello, StreamClass, encode, frame};
use crate::{CloseCode, NetError, NodeTls, PeerIdentity, TransportSettings};

/// Reconnect delays: exponential from `min` to `max`, each delay drawn uniformly from its
/// upper half ("equal jitter") so that a fleet that lost its server at the same instant does
/// not come back at the same instant.
///
/// A server that refused the handshake (QUIC `CONNECTION_REFUSED`: it is up, and its
/// handshake budget is full) caps the delay at `busy_max` instead: a slot frees as soon as
/// one handshake in flight ends, and a refused attempt costs the server a stateless Retry
/// and one packet. With the long cap, a fleet reconnecting after a farm-node restart comes
/// back as an exponential tail whose time constant is the cap: most of the farm node's
/// slots stay idle while refused agents sleep (benchmark 5, restart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay's upper bound.
    pub min: Duration,
    /// The cap.
    pub max: Duration,
    /// The cap after a refusal by a busy server.
    pub busy_max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            min: Duration::from_millis(200),
            max: Duration::from_secs(10),
            busy_max: Duration::from_secs(2),
        }
    }
}

impl Backoff {
    /// The delay after `failures` consecutive failures (0 = the first), with `jitter` in
    /// `[0, 1)` picking a point in `[d/2, d]`.
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        self.capped(failures, jitter, self.max)
    }

    /// [`Backoff::delay`] after a busy server refused the handshake: capped at `busy_max`.
    pub fn delay_busy(&self, failures: u32, jitter: f64) -> Duration {
        self.capped(failures, jitter, self.busy_max.min(self.max))
    }

    fn capped(&self, failures: u32, jitter: f64, max: Duration) -> Duration {
        let max = max.max(self.min);
        let exp = self
            .min
            .checked_mul(1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(max)
            .min(max);
        exp / 2 + exp.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
    }
}

/// Where a client is, for status pages and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Connecting; `attempt` counts consecutive failures so far plus one.
    Connecting { attempt: u32 },
    /// Connected and past the hello; messages flow.
    Connected { remote: SocketAddr },
    /// The last attempt failed or the connection ended; the next one starts after `retry_in`.
    Disconnected { reason: String, retry_in: Duration },
    /// Shut down; the client will not connect again.
    Stopped,
}

/// What [`Client::send`] did with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queued {
    /// Queued.
    Queued,
    /// Queued; the queue was full, so its oldest message was dropped ("latest wins").
    DroppedOldest,
}

/// Client settings.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The server's address.
    pub server_addr: SocketAddr,
    /// Who the server must be: its certificate must carry this identity's name.
    pub server: PeerIdentity,
    /// The application protocol version sent in the hello.
    pub protocol_version: u16,
    /// Reconnect delays.
    pub backoff: Backoff,
    /// Messages held while disconnected or while the server is slow.
    pub queue_capacity: usize,
    /// Where requests the server sends on this connection go (a global node forwarding an
    /// operator's admin call to a farm node); `None`: every such stream is refused.
    pub requests: Option<mpsc::Sender<ServerRequest>>,
    /// What becomes of the messages held while disconnected once a connection is up.
    pub backlog: Backlog,
}

/// What a [`Client`] does, on connecting, with the messages queued while it had no
/// connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backlog {
    /// Sends them, oldest first.
    #[default]
    Replay,
    /// Drops them (counted in [`Client::dropped`]) before [`ConnState::Connected`] is
    /// announced: for an application whose messages are states, not events, and which
    /// sends its current state when it sees `Connected`. Replaying the history instead
    /// would make a server that just (re)started live through every old state in a burst
    /// and act on the stale ones.
    Discard,
}

/// A request the server sent on a bidirectional stream of a client's connection, and where
/// its answer goes (written back on the same stream).
#[derive(Debug)]
pub struct ServerRequest {
    /// The server that sent it, as its certificate proved when the client connected.
    pub server: PeerIdentity,
    /// The request's bytes.
    pub body: Vec<u8>,
    /// The answer's bytes.
    pub reply: oneshot::Sender<Vec<u8>>,
}

/// Longest request or answer on a server-opened stream, in bytes.
pub const MAX_REQUEST: usize = 256 * 1024;

impl ClientConfig {
    /// Defaults for connecting to `server` at `server_addr`.
    pub fn new(server_addr: SocketAddr, server: PeerIdentity, protocol_version: u16) -> Self {
        ClientConfig {
            server_addr,
            server,
            protocol_version,
            backoff: Backoff::default(),
            queue_capacity: 64,
            requests: None,
            backlog: Backlog::Replay,
        }
    }
}

/// One UDP socket with this node's client credentials, shared by any number of [`Client`]s.
#[derive(Clone, Debug)]
pub struct ClientEndpoint {
    endpoint: Endpoint,
    identity: PeerIdentity,
    transport: TransportSettings,
}

impl ClientEndpoint {
    /// An endpoint on `socket` (bound by the caller, e.g. to `0.0.0.0:0`). Must be called
    /// inside a tokio runtime.
    pub fn new(
        socket: UdpSocket,
        tls: &NodeTls,
        transport: TransportSettings,
    ) -> Result<Self, NetError> {
        let config = tls.client_config(&transport)?;
        let addr = socket.local_addr().map_err(|source| NetError::Socket {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
        enlarge_buffers(&socket);
        let mut endpoint = Endpoint::new(
            tls.endpoint_config(),
            None,
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| NetError::Socket { addr, source })?;
        endpoint.set_default_client_config(config);
        Ok(ClientEndpoint {
            endpoint,
            identity: tls.identity().clone(),
            transport,
        })
    }

    /// The local address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    /// Closes every connection on this endpoint and waits, at most `grace`, for the servers
    /// to acknowledge.
    pub async fn shutdown(&self, grace: Duration) {
        self.endpoint
            .close(CloseCode::Shutdown.varint(), b"client shutting down");
        if tokio::time::timeout(grace, self.endpoint.wait_idle())
            .await
            .is_err()
        {
            warn!(identity = %self.identity, ?grace, "servers did not acknowledge the close in time");
        }
    }
}

struct Queue {
    items: Mutex<QueueInner>,
    capacity: usize,
    readable: Notify,
    writable: Notify,
}

struct QueueInner {
    items: VecDeque<Bytes>,
    /// Messages for the urgent stream, sent before any routine one.
    urgent: VecDeque<Bytes>,
    dropped: u64,
    stopped: bool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueInner> {
        self.items.lock().expect("client queue poisoned")
    }

    /// Takes the oldest urgent message, else the oldest routine one; cancel-safe (removes
    /// only when it returns).
    async fn pop(&self) -> (StreamClass, Bytes) {
        loop {
            let notified = self.readable.notified();
            {
                let mut q = self.lock();
                if let Some(b) = q.urgent.pop_front() {
                    return (StreamClass::Urgent, b);
                }
                if let Some(b) = q.items.pop_front() {
                    drop(q);
                    self.writable.notify_one();
                    return (StreamClass::Routine, b);
                }
            }
            notified.await;
        }
    }

    /// Drops every queued message.
    fn discard(&self) {
        let mut q = self.lock();
        let n = q.items.len() + q.urgent.len();
        q.items.clear();
        q.urgent.clear();
        q.dropped += n as u64;
        drop(q);
        self.writable.notify_waiters();
    }

    /// Puts back a message that never got written, unless newer ones fill the queue.
    fn requeue(&self, class: StreamClass, b: Bytes) {
        let mut q = self.lock();
        let items = match class {
            StreamClass::Urgent => &mut q.urgent,
            StreamClass::Routine => &mut q.items,
        };
        if items.len() < self.capacity {
            items.push_front(b);
        } else {
            q.dropped += 1;
        }
    }
}

/// A connection to one server that keeps itself up: it reconnects with [`Backoff`] and sends
/// queued messages whenever it is connected, on one long-lived stream per class (urgent
/// messages first, on their own stream).
///
/// Delivery is at most once: a message whose stream was written when the connection died is
/// lost, and the queue drops its oldest message when full. That suits status reports, where
/// the next report supersedes the last; use [`Client::send_wait`] where nothing may be
/// dropped from the queue. Dropping the `Client` stops it.
pub struct Client<M> {
    queue: Arc<Queue>,
    state: watch::Receiver<ConnState>,
    server: PeerIdentity,
    task: JoinHandle<()>,
    stop: DropGuard,
    _msg: PhantomData<fn(&M)>,
}

impl<M: Serialize> Client<M> {
    /// Starts connecting to `config.server` through `endpoint`. Must be called inside a
    /// tokio runtime. Cancelling `shutdown` closes the connection and stops the client.
    pub fn start(
        endpoint: &ClientEndpoint,
        config: ClientConfig,
        shutdown: CancellationToken,
    ) -> Self {
        let queue = Arc::new(Queue {
            items: Mutex::new(QueueInner {
                items: VecDeque::new(),
                urgent: VecDeque::new(),
                dropped: 0,
                stopped: false,
            }),
            capacity: config.queue_capacity.max(1),
            readable: Notify::new(),
            writable: Notify::new(),
        });
        let (state_tx, state) = watch::channel(ConnState::Connecting { attempt: 1 });
        let token = shutdown.child_token();
        let server = config.server.clone();
        let task = tokio::spawn(run(
            endpoint.clone(),
            config,
            queue.clone(),
            state_tx,
            token.clone(),
        ));
        Client {
            queue,
            state,
            server,
            task,
            stop: token.drop_guard(),
            _msg: PhantomData,
        }
    }

    fn encode(&self, msg: &M) -> Result<Bytes, NetError> {
        if self.queue.lock().stopped {
            return Err(NetError::ClientStopped {
                server: self.server.to_string(),
            });
        }
        Ok(Bytes::from(frame(&encode(msg)?)))
    }

    /// Queues a message without waiting; when the queue is full the oldest queued message
    /// is dropped. Fails only if the message is too large or the client has stopped.
    pub fn send(&self, msg: &M) -> Result<Queued, NetError> {
        let bytes = self.encode(msg)?;
        let mut q = self.queue.lock();
        let outcome = if q.items.len() >= self.queue.capacity {
            q.items.pop_front();
            q.dropped += 1;
            Queued::DroppedOldest
        } else {
            Queued::Queued
        };
        q.items.push_back(bytes);
        drop(q);
        self.queue.readable.notify_one();
        Ok(outcome)
    }

    /// Queues a message that must not wait behind routine ones (a health change): it goes
    /// out before any queued routine message, on the urgent stream, and the server hands it
    /// to the application before routine messages it has queued. When the urgent queue is
    /// full its oldest message is dropped.
    pub fn send_urgent(&self, msg: &M) -> Result<Queued, NetError> {
        let bytes = self.encode(msg)?;
        let mut q = self.queue.lock();
        let outcome = if q.urgent.len() >= self.queue.capacity {
            q.urgent.pop_front();
            q.dropped += 1;
            Queued::DroppedOldest
        } else {
            Queued::Queued
        };
        q.urgent.push_back(bytes);
        drop(q);
        self.queue.readable.notify_one();
        Ok(outcome)
    }

    /// Queues a message, waiting while the queue is full.
    pub async fn send_wait(&self, msg: &M) -> Result<(), NetError> {
        let bytes = self.encode(msg)?;
        loop {
            let room = self.queue.writable.notified();
            {
                let mut q = self.queue.lock();
                if q.stopped {
                    return Err(NetError::ClientStopped {
                        server: self.server.to_string(),
                    });
                }
                if q.items.len() < self.queue.capacity {
                    q.items.push_back(bytes);
                    drop(q);
                    self.queue.readable.notify_one();
                    return Ok(());
                }
            }
            room.await;
        }
    }

    /// The connection state; `changed()`/`wait_for()` on it to follow it.
    pub fn state(&self) -> watch::Receiver<ConnState> {
        self.state.clone()
    }

    /// How many messages the queue has dropped so far.
    pub fn dropped(&self) -> u64 {
        self.queue.lock().dropped
    }

    /// Stops the client and waits until its connection is closed.
    pub async fn stop(self) {
        let Client { task, stop, .. } = self;
        drop(stop);
        let _ = task.await;
    }
}

async fn run(
    endpoint: ClientEndpoint,
    config: ClientConfig,
    queue: Arc<Queue>,
    state: watch::Sender<ConnState>,
    token: CancellationToken,
) {
    let server = &config.server;
    let addr = config.server_addr;
    // Jitter only has to differ between nodes and attempts, not be unpredictable.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ u64::from(endpoint.local_addr().map_or(0, |a| a.port())) << 48;
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut failures: u32 = 0;
    loop {
        state.send_replace(ConnState::Connecting {
            attempt: failures + 1,
        });
        let attempt = tokio::select! {
            _ = token.cancelled() => break,
            r = connect(&endpoint, &config) => r,
        };
        let mut duplicate = false;
        let mut busy = false;
        let reason = match attempt {
            Ok(conn) => {
                let remote = conn.remote_address();
                info!(%server, %remote, "connected");
                if config.backlog == Backlog::Discard {
                    queue.discard();
                }
                state.send_replace(ConnState::Connected { remote });
                let since = Instant::now();
                let served = tokio::spawn(serve_requests(
                    conn.clone(),
                    server.clone(),
                    config.requests.clone(),
                ));
                let pumped = pump(&conn, &queue, &token).await;
                served.abort();
                let Some(reason) = pumped else {
                    conn.close(CloseCode::Shutdown.varint(), b"client shutting down");
                    break;
                };
                // A connection that stayed up resets the backoff; one that a server drops
                // right after the hello (say, for each message it refuses) does not.
                if since.elapsed() >= config.backoff.max {
                    failures = 0;
                }
                reason
            }
            Err(failed) => {
                duplicate = failed.duplicate;
                busy = failed.busy;
                failed.reason
            }
        };
        let retry_in = if busy {
            config.backoff.delay_busy(failures, rng.random::<f64>())
        } else {
            config.backoff.delay(failures, rng.random::<f64>())
        };
        failures = failures.saturating_add(1);
        if duplicate {
            error!(%server, %addr, %reason, ?retry_in,
                "another process with this node's identity is connected to the server; stop one of them (this one retries with backoff)");
        } else {
            warn!(%server, %addr, %reason, ?retry_in, "not connected; will retry");
        }
        state.send_replace(ConnState::Disconnected { reason, retry_in });
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tokio::time::sleep(retry_in) => {}
        }
    }
    queue.lock().stopped = true;
    queue.writable.notify_waiters();
    state.send_replace(ConnState::Stopped);
    info!(%server, "client stopped");
}

/// Why a connection attempt failed.
struct Failed {
    /// For an operator.
    reason: String,
    /// The server refused us because another process with our identity is connected.
    duplicate: bool,
    /// The server refused the handshake: it is up, its handshake budget full.
    busy: bool,
}

impl From<String> for Failed {
    fn from(reason: String) -> Self {
        Failed {
            reason,
            duplicate: false,
            busy: false,
        }
    }
}

/// Handshake plus hello.
async fn connect(endpoint: &ClientEndpoint, config: &ClientConfig) -> Result<Connection, Failed> {
    let limit = endpoint.transport.connect_timeout;
    let connecting = endpoint
        .endpoint
        .connect(config.server_addr, &config.server.dns_name())
        .map_err(|e| {
            Failed::from(format!(
                "cannot start connecting to {}: {e}",
                config.server_addr
            ))
        })?;
    let attempt = async {
        let conn = connecting.await.map_err(|e| Failed {
            busy: is_refused(&e),
            ..Failed::from(describe(&e))
        })?;
        // A server that refuses us closes right after the handshake; prefer its reason to
        // whatever our own half-finished hello ran into.
        let why = |conn: &Connection, e: String| match conn.close_reason() {
            Some(c) => Failed {
                reason: describe(&c),
                duplicate: is_duplicate_identity(&c),
                busy: false,
            },
            None => Failed::from(e),
        };
        match hello(&conn, config, &endpoint.identity).await {
            Ok(()) => Ok(conn),
            Err(HelloError::Io(e)) => Err(why(&conn, e)),
            Err(HelloError::Refused(e)) => {
                warn!(server = %config.server, reason = %e, "closing connection");
                conn.close(CloseCode::BadHello.varint(), clip(&e).as_bytes());
                Err(Failed::from(e))
            }
        }
    };
    tokio::time::timeout(limit, attempt).await.map_err(|_| {
        Failed::from(format!(
            "no answer from {} within {limit:?}",
            config.server_addr
        ))
    })?
}

/// Whether the server refused the handshake (`Incoming::refuse`: QUIC `CONNECTION_REFUSED`).
fn is_refused(e: &ConnectionError) -> bool {
    matches!(e, ConnectionError::ConnectionClosed(c)
        if c.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED)
}

enum HelloError {
    Io(String),
    Refused(String),
}

async fn hello(
    conn: &Connection,
    config: &ClientConfig,
    us: &PeerIdentity,
) -> Result<(), HelloError> {
    let ours = Hello {
        version: config.protocol_version,
        role: us.role,
    };
    let io = |e: &dyn std::fmt::Display| HelloError::Io(format!("hello: {e}"));
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| io(&e))?;
    send.write_all(&ours.to_bytes()).await.map_err(|e| io(&e))?;
    send.finish().map_err(|e| io(&e))?;
    let bytes = match recv.read_to_end(HELLO_LEN).await {
        Ok(bytes) => bytes,
        Err(ReadToEndError::Read(ReadError::ConnectionLost(e))) => {
            return Err(HelloError::Io(describe(&e)));
        }
        Err(e) => return Err(io(&e)),
    };
    let theirs = Hello::from_bytes(&bytes).map_err(|e| HelloError::Refused(e.to_string()))?;
    if theirs.version != ours.version {
        return Err(HelloError::Refused(format!(
            "peer speaks protocol {}, this node speaks {}",
            theirs.version, ours.version
        )));
    }
    if theirs.role != config.server.role {
        return Err(HelloError::Refused(format!(
            "server hello claims role {}, expected {}",
            theirs.role, config.server.role
        )));
    }
    Ok(())
}

/// Takes the requests the server opens bidirectional streams for, until the connection
/// ends: each is read whole, handed to `requests`, and its answer written back. Without a
/// taker, each stream is refused at once.
async fn serve_requests(
    conn: Connection,
    server: PeerIdentity,
    requests: Option<mpsc::Sender<ServerRequest>>,
) {
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        let Some(tx) = requests.clone() else {
            let _ = recv.stop(quinn::VarInt::from_u32(0));
            let _ = send.reset(quinn::VarInt::from_u32(0));
            continue;
        };
        let server = server.clone();
        tokio::spawn(async move {
            let Ok(body) = recv.read_to_end(MAX_REQUEST).await else {
                return;
            };
            let (reply, answer) = oneshot::channel();
            let request = ServerRequest {
                server,
                body,
                reply,
            };
            if tx.send(request).await.is_err() {
                return;
            }
            if let Ok(bytes) = answer.await {
                let _ = send.write_all(&bytes).await;
                let _ = send.finish();
                // the answer is delivered before the stream's state goes
                let _ = send.stopped().await;
            }
        });
    }
}

/// Sends queued messages until the connection ends (returns why) or shutdown (`None`).
async fn pump(conn: &Connection, queue: &Queue, token: &CancellationToken) -> Option<String> {
    // The long-lived streams of this connection, opened at their first message.
    let mut routine: Option<SendStream> = None;
    let mut urgent: Option<SendStream> = None;
    loop {
        let (class, bytes) = tokio::select! {
            _ = token.cancelled() => return None,
            e = conn.closed() => return Some(describe(&e)),
            m = queue.pop() => m,
        };
        let slot = match class {
            StreamClass::Routine => &mut routine,
            StreamClass::Urgent => &mut urgent,
        };
        let sent = async {
            if slot.is_none() {
                let stream = conn.open_uni().await.map_err(|e| e.to_string())?;
                // quinn sends the data of higher-priority streams first
                if class == StreamClass::Urgent {
                    let _ = stream.set_priority(1);
                }
                *slot = Some(stream);
                let stream = slot.as_mut().expect("just opened");
                stream
                    .write_all(&[class.to_wire()])
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let stream = slot.as_mut().expect("opened above");
            stream
                .write_chunk(bytes.clone())
                .await
                .map_err(|e| e.to_string())
        };
        let sent = tokio::select! {
            _ = token.cancelled() => return None,
            r = sent => r,
        };
        if let Err(e) = sent {
            queue.requeue(class, bytes);
            return Some(conn.close_reason().map_or(e, |c| describe(&c)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        let b = Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(1),
            busy_max: Duration::from_millis(400),
        };
        assert_eq!(b.delay(0, 0.0), Duration::from_millis(50));
        let top = b.delay(0, 0.999_999);
        assert!(top > Duration::from_micros(99_990) && top <= Duration::from_millis(100));
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(100));
        assert_eq!(b.delay(3, 0.0), Duration::from_millis(400));
        assert_eq!(b.delay(4, 0.0), Duration::from_millis(500));
        assert_eq!(b.delay(40, 1.0), Duration::from_secs(1));
        assert_eq!(b.delay(u32::MAX, 0.5), Duration::from_millis(750));
        // a busy server's refusal: the same doubling, a shorter cap
        assert_eq!(b.delay_busy(1, 0.0), Duration::from_millis(100));
        assert_eq!(b.delay_busy(3, 0.0), Duration::from_millis(200));
        assert_eq!(b.delay_busy(40, 1.0), Duration::from_millis(400));
        // never longer than the cap of other failures
        let short = Backoff {
            busy_max: Duration::from_secs(5),
            ..b
        };
        assert_eq!(short.delay_busy(40, 1.0), Duration::from_secs(1));
    }
}
