//! The accepting side: a farm node accepting agents, the global node accepting farm nodes.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use quinn::crypto::rustls::HandshakeData;
use quinn::{Connection, Endpoint, ReadExactError, ReadToEndError, RecvStream, SendStream, VarInt};
use rustls::pki_types::CertificateDer;
use serde::de::DeserializeOwned;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::admission::{Admission, AdmissionLimits, LogGate, Source};
use crate::close::{clip, describe};
use crate::socket::enlarge_buffers;
use crate::wire::{FRAME_HEADER_LEN, HELLO_LEN, Hello, MAX_MESSAGE_LEN, StreamClass, decode};
use crate::{CloseCode, NetError, NodeTls, PeerIdentity, TransportSettings};

/// Decides who may connect and what they may say. Both checks run on every connection and
/// every message; a refusal closes the connection with the returned reason, which is logged
/// here and shown to the peer.
pub trait Authoriser<M>: Send + Sync + 'static {
    /// May this identity connect at all (e.g. "is this agent in the topology, under this
    /// farm")? Called once per connection, after the TLS handshake, before the hello.
    fn authorise_peer(&self, peer: &PeerIdentity) -> Result<(), String>;
    /// May this peer send this message (e.g. "agent X reports only for server X")?
    fn authorise_message(&self, peer: &PeerIdentity, msg: &M) -> Result<(), String>;
}

/// An [`Authoriser`] made of two closures.
pub struct FnAuthoriser<P, Q> {
    /// The per-connection check.
    pub peer: P,
    /// The per-message check.
    pub message: Q,
}

impl<M, P, Q> Authoriser<M> for FnAuthoriser<P, Q>
where
    P: Fn(&PeerIdentity) -> Result<(), String> + Send + Sync + 'static,
    Q: Fn(&PeerIdentity, &M) -> Result<(), String> + Send + Sync + 'static,
{
    fn authorise_peer(&self, peer: &PeerIdentity) -> Result<(), String> {
        (self.peer)(peer)
    }
    fn authorise_message(&self, peer: &PeerIdentity, msg: &M) -> Result<(), String> {
        (self.message)(peer, msg)
    }
}

/// Identifies one connection of a server (numbered from 1). A peer that reconnects gets a new one, so an
/// application can tell the `Disconnected` of an old connection from the state of the new.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What the server tells the application.
///
/// For one connection the order is always `Connected`, `Message`*, `Disconnected`.
/// Messages a peer sent on its urgent stream reach the application before routine messages
/// that are still queued ([`Events::recv`]).
#[derive(Debug)]
pub enum ServerEvent<M> {
    /// A peer passed TLS, the authoriser and the hello.
    Connected {
        conn: ConnId,
        peer: PeerIdentity,
        remote: SocketAddr,
    },
    /// A decoded message that passed the per-message authoriser.
    Message {
        conn: ConnId,
        peer: PeerIdentity,
        msg: M,
    },
    /// A connection that had been `Connected` ended.
    Disconnected {
        conn: ConnId,
        peer: PeerIdentity,
        reason: String,
    },
    /// A connection attempt was refused before `Connected` (bad certificate, unauthorised
    /// identity, bad hello). Informational: dropped when the event queue is full.
    Rejected {
        remote: SocketAddr,
        peer: Option<PeerIdentity>,
        reason: String,
    },
}

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The application protocol version; clients must send the same in their hello.
    pub protocol_version: u16,
    /// Transport settings.
    pub transport: TransportSettings,
    /// Capacity of each of the two event queues (routine and urgent). When one is full,
    /// the streams feeding it wait (QUIC flow control then slows those peers); `Rejected`
    /// events are dropped instead.
    pub event_capacity: usize,
    /// TLS handshakes in progress beyond this are refused at once; the client backs off.
    pub max_handshakes_in_flight: usize,
    /// Per-source handshake limits, applied after QUIC address validation (Retry).
    pub admission: AdmissionLimits,
    /// How long shutdown waits for peers to acknowledge the close.
    pub shutdown_grace: Duration,
}

impl ServerConfig {
    /// Defaults for `protocol_version`.
    pub fn new(protocol_version: u16) -> Self {
        ServerConfig {
            protocol_version,
            transport: TransportSettings::default(),
            event_capacity: 1024,
            max_handshakes_in_flight: 1024,
            admission: AdmissionLimits::default(),
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// The server's events: two queues, urgent first.
///
/// A peer marks the messages that must not wait (a server going down) by sending them on
/// its urgent stream; they go through a queue of their own that [`Events::recv`] empties
/// first, so under load they are handled before routine readings that arrived earlier.
#[derive(Debug)]
pub struct Events<M> {
    urgent: mpsc::Receiver<ServerEvent<M>>,
    routine: mpsc::Receiver<ServerEvent<M>>,
}

impl<M> Events<M> {
    /// The next event, urgent ones first; `None` once the server has stopped and both
    /// queues are empty. Cancel-safe: use it in `select!`.
    pub async fn recv(&mut self) -> Option<ServerEvent<M>> {
        tokio::select! {
            biased;
            Some(ev) = self.urgent.recv() => Some(ev),
            ev = self.routine.recv() => match ev {
                Some(ev) => Some(ev),
                None => self.urgent.recv().await,
            },
        }
    }
}

/// A running server. Stop it with the `CancellationToken` given to [`Server::start`].
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
    live: LiveMap,
}

/// Sends requests to the server's connected peers.
#[derive(Clone, Debug)]
pub struct Requester {
    live: LiveMap,
}

impl Requester {
    /// Sends `body` to the connected peer `peer` on a new bidirectional stream (the peer's
    /// client hands it to its [`crate::ClientConfig::requests`]) and returns its answer.
    pub async fn request(
        &self,
        peer: &PeerIdentity,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, NetError> {
        let failed = |why: String| NetError::Request {
            peer: peer.to_string(),
            why,
        };
        let conn = self
            .live
            .lock()
            .expect("live-connection map poisoned")
            .get(peer)
            .map(|(_, c)| c.clone())
            .ok_or_else(|| failed("not connected".to_owned()))?;
        let exchange = async {
            let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
            send.write_all(body).await.map_err(|e| e.to_string())?;
            send.finish().map_err(|e| e.to_string())?;
            recv.read_to_end(crate::client::MAX_REQUEST)
                .await
                .map_err(|e| e.to_string())
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| failed(format!("no answer within {timeout:?}")))?
            .map_err(failed)
    }
}

/// Connections by peer, shared between the accept loop and the [`Server`] handle.
type LiveMap = Arc<Mutex<HashMap<PeerIdentity, (ConnId, Connection)>>>;

struct Shared<M, A> {
    config: ServerConfig,
    identity: PeerIdentity,
    authoriser: A,
    /// Routine messages, disconnections and refusals.
    events: mpsc::Sender<ServerEvent<M>>,
    /// Urgent messages and connections (so that a connection's urgent messages never
    /// overtake its `Connected`).
    urgent: mpsc::Sender<ServerEvent<M>>,
    live: LiveMap,
    next_id: AtomicU64,
    shutdown: CancellationToken,
    admission: Arc<Mutex<Admission>>,
    log_gate: Mutex<LogGate<GateKey>>,
    receive_window: u32,
    _msg: PhantomData<fn() -> M>,
}

/// What a refusal line is rate-limited by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum GateKey {
    /// Refusals before the peer's identity is known, per source.
    Source(Source),
    /// Refusals of an authenticated peer.
    Peer(PeerIdentity),
    /// The server-wide handshake limit.
    AllSources,
}

/// One admitted handshake: its global permit and its count against its source, both
/// returned when it ends.
struct Slot {
    admission: Arc<Mutex<Admission>>,
    source: Source,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.admission
            .lock()
            .expect("admission table poisoned")
            .finished(self.source);
    }
}

impl Server {
    /// Starts accepting on `socket` (bound by the caller; its buffers are enlarged to
    /// [`crate::SOCKET_BUFFER_BYTES`]). Must be called inside a tokio runtime. Returns the
    /// server and the receiving end of its event queue.
    pub fn start<M, A>(
        socket: UdpSocket,
        tls: &NodeTls,
        config: ServerConfig,
        authoriser: A,
        shutdown: CancellationToken,
    ) -> Result<(Server, Events<M>), NetError>
    where
        M: DeserializeOwned + Send + 'static,
        A: Authoriser<M>,
    {
        let quinn_config = tls.server_config(&config.transport)?;
        let local_addr = socket.local_addr().map_err(|source| NetError::Socket {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
        enlarge_buffers(&socket);
        let endpoint = Endpoint::new(
            tls.endpoint_config(),
            Some(quinn_config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| NetError::Socket {
            addr: local_addr,
            source,
        })?;
        let (tx, rx) = mpsc::channel(config.event_capacity.max(1));
        let (urgent_tx, urgent_rx) = mpsc::channel(config.event_capacity.max(1));
        let live: LiveMap = Arc::new(Mutex::new(HashMap::new()));
        let admission = Arc::new(Mutex::new(Admission::new(config.admission.clone())));
        let log_gate = Mutex::new(LogGate::new(
            config.admission.log_interval,
            config.admission.max_sources,
        ));
        let receive_window = config.transport.receive_window;
        let shared = Arc::new(Shared {
            config,
            identity: tls.identity().clone(),
            authoriser,
            events: tx,
            urgent: urgent_tx,
            live: live.clone(),
            next_id: AtomicU64::new(1),
            shutdown,
            admission,
            log_gate,
            receive_window,
            _msg: PhantomData,
        });
        info!(identity = %shared.identity, %local_addr, version = shared.config.protocol_version, "server listening");
        let task = tokio::spawn(accept_loop(shared, endpoint));
        Ok((
            Server {
                local_addr,
                task,
                live,
            },
            Events {
                urgent: urgent_rx,
                routine: rx,
            },
        ))
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that sends requests to connected peers (see [`Requester::request`]); it
    /// outlives nothing: once the server stops, every request fails.
    pub fn requester(&self) -> Requester {
        Requester {
            live: self.live.clone(),
        }
    }

    /// The current round-trip time to every connected peer, as QUIC estimates it (for
    /// "closest" policies that measure distance by RTT).
    pub fn peer_rtts(&self) -> Vec<(PeerIdentity, Duration)> {
        let live = self.live.lock().expect("live-connection map poisoned");
        live.iter()
            .map(|(peer, (_, conn))| (peer.clone(), conn.rtt()))
            .collect()
    }

    /// Waits until the server has shut down (after its token is cancelled).
    pub async fn closed(self) {
        let _ = self.task.await;
    }
}

async fn accept_loop<M, A>(shared: Arc<Shared<M, A>>, endpoint: Endpoint)
where
    M: DeserializeOwned + Send + 'static,
    A: Authoriser<M>,
{
    let tracker = TaskTracker::new();
    let handshakes = Arc::new(Semaphore::new(
        shared.config.max_handshakes_in_flight.max(1),
    ));
    loop {
        let incoming = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            _ = shared.events.closed() => {
                warn!(identity = %shared.identity, "event receiver dropped; stopping the server");
                break;
            }
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
        };
        // Address validation first, for every source not yet validated: a Retry costs the
        // server no state, so spoofed sources can neither hold handshakes nor spend the
        // per-source budget of the address they forge.
        if !incoming.remote_address_validated() {
            if let Err(e) = incoming.retry() {
                e.into_incoming().ignore();
            }
            continue;
        }
        let remote = incoming.remote_address();
        let source = Source::of(remote.ip());
        let admitted = shared
            .admission
            .lock()
            .expect("admission table poisoned")
            .admit(source, now());
        let refusal = match admitted {
            Err(refusal) => Some((GateKey::Source(source), refusal.to_string())),
            Ok(()) => {
                let slot = handshakes
                    .clone()
                    .try_acquire_owned()
                    .ok()
                    .map(|permit| Slot {
                        admission: shared.admission.clone(),
                        source,
                        _permit: permit,
                    });
                match slot {
                    Some(slot) => {
                        tracker.spawn(connection(shared.clone(), incoming, slot));
                        continue;
                    }
                    None => {
                        // Give back the source's count taken above.
                        shared
                            .admission
                            .lock()
                            .expect("admission table poisoned")
                            .finished(source);
                        Some((
                            GateKey::AllSources,
                            format!(
                                "too many handshakes in flight (limit {})",
                                shared.config.max_handshakes_in_flight
                            ),
                        ))
                    }
                }
            }
        };
        if let Some((key, reason)) = refusal {
            shared.gated(key, |held_back| {
                warn!(%remote, %source, %reason, held_back, log_every = ?shared.config.admission.log_interval, "handshake refused");
            });
            shared.rejected(remote, None, reason);
            incoming.refuse();
        }
    }
    endpoint.close(CloseCode::Shutdown.varint(), b"server shutting down");
    tracker.close();
    let grace = shared.config.shutdown_grace;
    let drained = tokio::time::timeout(grace, async {
        tracker.wait().await;
        endpoint.wait_idle().await;
    })
    .await;
    if drained.is_err() {
        warn!(identity = %shared.identity, ?grace, "peers did not acknowledge the close in time");
    }
    info!(identity = %shared.identity, "server stopped");
}

impl<M: Send + 'static, A> Shared<M, A> {
    /// Queues an event; waits for room, except during shutdown, when waiting could hang.
    async fn emit(&self, event: ServerEvent<M>) {
        self.emit_to(false, event).await;
    }

    /// Queues an event on the urgent or the routine queue.
    async fn emit_to(&self, urgent: bool, event: ServerEvent<M>) {
        let queue = if urgent { &self.urgent } else { &self.events };
        tokio::select! {
            _ = queue.send(event) => {}
            _ = self.shutdown.cancelled() => {}
        }
    }

    fn rejected(&self, remote: SocketAddr, peer: Option<PeerIdentity>, reason: String) {
        let _ = self.events.try_send(ServerEvent::Rejected {
            remote,
            peer,
            reason,
        });
    }

    /// Runs `log` (given the number of lines held back since the last one) unless a line
    /// for `key` was written within the log interval.
    fn gated(&self, key: GateKey, log: impl FnOnce(u64)) {
        let allowed = self
            .log_gate
            .lock()
            .expect("log gate poisoned")
            .allow(key, now());
        if let Some(held_back) = allowed {
            log(held_back);
        }
    }
}

/// The shell's clock for the pure admission rules (tokio's, so paused-time tests hold).
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// The state one connection's tasks share: the first close reason wins.
struct ConnCtx {
    conn: Connection,
    id: ConnId,
    peer: PeerIdentity,
    reason: OnceLock<String>,
}

impl ConnCtx {
    fn refuse(&self, code: CloseCode, reason: String) {
        warn!(peer = %self.peer, conn = %self.id, ?code, %reason, "closing connection");
        let _ = self.reason.set(reason.clone());
        self.conn.close(code.varint(), clip(&reason).as_bytes());
    }
}

fn identity_of(conn: &Connection) -> Result<PeerIdentity, String> {
    let any = conn
        .peer_identity()
        .ok_or_else(|| "no client certificate".to_owned())?;
    let chain = any
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| "peer identity is not a certificate chain".to_owned())?;
    let leaf = chain
        .first()
        .ok_or_else(|| "empty certificate chain".to_owned())?;
    PeerIdentity::from_certificate(leaf.as_ref()).map_err(|e| e.to_string())
}

async fn connection<M, A>(shared: Arc<Shared<M, A>>, incoming: quinn::Incoming, slot: Slot)
where
    M: DeserializeOwned + Send + 'static,
    A: Authoriser<M>,
{
    let remote = incoming.remote_address();
    let source = slot.source;
    let limit = shared.config.admission.handshake_timeout;
    let handshake = async {
        let connecting = incoming.accept().map_err(|e| describe(&e))?;
        // Dropping an unfinished `Connecting` abandons the handshake.
        match tokio::time::timeout(limit, connecting).await {
            Ok(done) => done.map_err(|e| describe(&e)),
            Err(_) => Err(format!("handshake not finished within {limit:?}")),
        }
    };
    let conn = match handshake.await {
        Ok(conn) => conn,
        Err(reason) => {
            shared.gated(GateKey::Source(source), |held_back| {
                warn!(%remote, %reason, held_back, log_every = ?shared.config.admission.log_interval, "handshake failed; connection refused");
            });
            shared.rejected(remote, None, reason);
            return;
        }
    };
    drop(slot);
    let id = ConnId(shared.next_id.fetch_add(1, Ordering::Relaxed));
    let alpn_ok = conn
        .handshake_data()
        .and_then(|d| d.downcast::<HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .is_some_and(|p| p == crate::tls::ALPN);
    let peer = match identity_of(&conn) {
        Ok(peer) if alpn_ok => peer,
        Ok(peer) => {
            return refuse_early(
                &shared,
                &conn,
                remote,
                Some(peer),
                CloseCode::BadHello,
                "no fedlb ALPN".to_owned(),
            );
        }
        Err(reason) => {
            let reason = format!("certificate has no usable identity: {reason}");
            return refuse_early(&shared, &conn, remote, None, CloseCode::BadIdentity, reason);
        }
    };
    if let Err(reason) = shared.authoriser.authorise_peer(&peer) {
        let reason = format!("{peer} not authorised: {reason}");
        return refuse_early(
            &shared,
            &conn,
            remote,
            Some(peer),
            CloseCode::Unauthorised,
            reason,
        );
    }
    let hello_timeout = shared.config.transport.hello_timeout;
    let hello = tokio::time::timeout(
        hello_timeout,
        read_hello(&conn, &peer, shared.config.protocol_version),
    )
    .await
    .unwrap_or_else(|_| {
        Err((
            CloseCode::BadHello,
            format!("no hello within {hello_timeout:?}"),
        ))
    });
    let answer = match hello {
        Ok(send) => send,
        Err((code, reason)) => {
            return refuse_early(&shared, &conn, remote, Some(peer), code, reason);
        }
    };
    // Before answering the hello, so that a refused second process never counts itself
    // connected.
    if let Err(reason) = claim(&shared, &peer, id, &conn).await {
        return refuse_early(
            &shared,
            &conn,
            remote,
            Some(peer),
            CloseCode::DuplicateIdentity,
            reason,
        );
    }
    if let Err((code, reason)) =
        answer_hello(answer, shared.config.protocol_version, &shared.identity).await
    {
        return refuse_early(&shared, &conn, remote, Some(peer), code, reason);
    }
    info!(%peer, conn = %id, %remote, "peer connected");
    // On the urgent queue, which is emptied first: the connection's urgent messages
    // cannot overtake it.
    shared
        .emit_to(
            true,
            ServerEvent::Connected {
                conn: id,
                peer: peer.clone(),
                remote,
            },
        )
        .await;

    let ctx = Arc::new(ConnCtx {
        conn,
        id,
        peer,
        reason: OnceLock::new(),
    });
    // Each message stream is read by a task of its own, so that the urgent stream is never
    // held up by a routine one waiting for room in its queue. The transport's stream limit
    // bounds the tasks, and each stream's window the bytes a slow application leaves unread.
    let streams = TaskTracker::new();
    let ended = loop {
        match ctx.conn.accept_uni().await {
            Ok(stream) => {
                streams.spawn(message_stream(shared.clone(), ctx.clone(), stream));
            }
            Err(e) => break e,
        }
    };
    streams.close();
    streams.wait().await;
    {
        let mut live = shared.live.lock().expect("live-connection map poisoned");
        if live
            .get(&ctx.peer)
            .is_some_and(|(live_id, _)| *live_id == id)
        {
            live.remove(&ctx.peer);
        }
    }
    let reason = ctx
        .reason
        .get()
        .cloned()
        .unwrap_or_else(|| describe(&ended));
    info!(peer = %ctx.peer, conn = %id, %reason, "peer disconnected");
    shared
        .emit(ServerEvent::Disconnected {
            conn: id,
            peer: ctx.peer.clone(),
            reason,
        })
        .await;
}

fn refuse_early<M: Send + 'static, A>(
    shared: &Shared<M, A>,
    conn: &Connection,
    remote: SocketAddr,
    peer: Option<PeerIdentity>,
    code: CloseCode,
    reason: String,
) {
    let key = match &peer {
        Some(peer) => GateKey::Peer(peer.clone()),
        None => GateKey::Source(Source::of(remote.ip())),
    };
    shared.gated(key, |held_back| match &peer {
        Some(peer) => warn!(%remote, %peer, ?code, %reason, held_back, "connection refused"),
        None => warn!(%remote, ?code, %reason, held_back, "connection refused"),
    });
    conn.close(code.varint(), clip(&reason).as_bytes());
    shared.rejected(remote, peer, reason);
}

/// Reads the client's hello; returns the stream to answer on.
async fn read_hello(
    conn: &Connection,
    peer: &PeerIdentity,
    version: u16,
) -> Result<SendStream, (CloseCode, String)> {
    let bad = |why: String| (CloseCode::BadHello, why);
    let (send, mut recv) = conn
        .accept_bi()
        .await
        .map_err(|e| bad(format!("no hello stream: {}", describe(&e))))?;
    let bytes = recv.read_to_end(HELLO_LEN).await.map_err(|e| match e {
        ReadToEndError::TooLong => bad(format!("hello longer than {HELLO_LEN} bytes")),
        ReadToEndError::Read(e) => bad(format!("hello unreadable: {e}")),
    })?;
    let theirs = Hello::from_bytes(&bytes).map_err(|e| bad(e.to_string()))?;
    if theirs.version != version {
        warn!(%peer, peer_version = theirs.version, version,
            "peer speaks protocol {}, this node speaks {version}", theirs.version);
        return Err((
            CloseCode::VersionMismatch,
            format!(
                "protocol version mismatch: client speaks {}, server speaks {version}",
                theirs.version
            ),
        ));
    }
    if theirs.role != peer.role {
        return Err(bad(format!(
            "hello claims role {}, certificate says {}",
            theirs.role, peer.role
        )));
    }
    Ok(send)
}

/// Answers a client's hello with ours.
async fn answer_hello(
    mut send: SendStream,
    version: u16,
    us: &PeerIdentity,
) -> Result<(), (CloseCode, String)> {
    let ours = Hello {
        version,
        role: us.role,
    };
    send.write_all(&ours.to_bytes())
        .await
        .map_err(|e| (CloseCode::BadHello, format!("hello answer: {e}")))?;
    let _ = send.finish();
    Ok(())
}

/// How long an identity's existing connection has to show it is alive when a second
/// connection with the same identity arrives. A restarted node reconnects while the server
/// still holds its dead connection; it gets in after at most this long.
pub(crate) const LIVENESS_WINDOW: Duration = Duration::from_secs(1);
const PING_EVERY: Duration = Duration::from_millis(200);

/// Makes `conn` the live connection of `peer`. If the identity already has one that
/// answers within [`LIVENESS_WINDOW`], that one stays and this is refused with the reason;
/// if it does not answer, it is closed and replaced. Two processes with one identity thus
/// settle on the first instead of evicting each other forever.
async fn claim<M: Send + 'static, A>(
    shared: &Shared<M, A>,
    peer: &PeerIdentity,
    id: ConnId,
    conn: &Connection,
) -> Result<(), String> {
    loop {
        let (old_id, old) = {
            let mut live = shared.live.lock().expect("live-connection map poisoned");
            match live.get(peer) {
                None => {
                    live.insert(peer.clone(), (id, conn.clone()));
                    return Ok(());
                }
                Some((old_id, old)) => (*old_id, old.clone()),
            }
        };
        if answers(&old, shared.receive_window).await {
            return Err(format!(
                "identity {peer} already connected from {}",
                old.remote_address()
            ));
        }
        let mut live = shared.live.lock().expect("live-connection map poisoned");
        if live
            .get(peer)
            .is_some_and(|(live_id, _)| *live_id == old_id)
        {
            info!(%peer, old = %old_id, new = %id, old_remote = %old.remote_address(),
                "the old connection of this identity did not answer; replacing it");
            old.close(
                CloseCode::Replaced.varint(),
                b"replaced: a new connection of the same identity arrived and this one did not answer",
            );
            live.insert(peer.clone(), (id, conn.clone()));
            return Ok(());
        }
        // The entry changed while we waited: judge whoever holds it now.
    }
}

/// Whether the peer of `conn` shows it is alive within [`LIVENESS_WINDOW`]: any packet
/// from it counts. quinn 0.11 does not expose a PING, so the probe is a one-byte raise of
/// the connection receive window (taken back at once), which makes quinn send a MAX_DATA
/// frame that a live peer must acknowledge within its ACK delay.
async fn answers(conn: &Connection, receive_window: u32) -> bool {
    if conn.close_reason().is_some() {
        return false;
    }
    let before = conn.stats().udp_rx.datagrams;
    let start = tokio::time::Instant::now();
    let mut next_ping = start;
    loop {
        let now = tokio::time::Instant::now();
        if now >= start + LIVENESS_WINDOW {
            return false;
        }
        if now >= next_ping {
            let raised = VarInt::from_u64(u64::from(receive_window) + 1).unwrap_or(VarInt::MAX);
            conn.set_receive_window(raised);
            conn.set_receive_window(VarInt::from_u32(receive_window));
            next_ping = now + PING_EVERY;
        }
        tokio::select! {
            _ = conn.closed() => return false,
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
        if conn.stats().udp_rx.datagrams > before {
            return true;
        }
    }
}

/// Reads one message stream: its class byte, then frames until the peer finishes it.
/// Each frame is read into one buffer reused for the life of the stream, decoded,
/// authorised and handed over on the queue of the stream's class.
async fn message_stream<M, A>(shared: Arc<Shared<M, A>>, ctx: Arc<ConnCtx>, mut stream: RecvStream)
where
    M: DeserializeOwned + Send + 'static,
    A: Authoriser<M>,
{
    let mut class = [0u8; 1];
    if let Err(e) = stream.read_exact(&mut class).await {
        debug!(peer = %ctx.peer, conn = %ctx.id, error = %e, "message stream ended before its class");
        return;
    }
    let Some(class) = StreamClass::from_wire(class[0]) else {
        return ctx.refuse(
            CloseCode::BadMessage,
            format!("message stream of unknown class {}", class[0]),
        );
    };
    let urgent = class == StreamClass::Urgent;
    let mut buf = Vec::new();
    loop {
        let mut header = [0u8; FRAME_HEADER_LEN];
        match stream.read_exact(&mut header).await {
            Ok(()) => {}
            // finished between two messages: the peer is done with this stream
            Err(ReadExactError::FinishedEarly(0)) => return,
            Err(e) => {
                // Stream reset or connection gone: the connection task reports the latter.
                debug!(peer = %ctx.peer, conn = %ctx.id, error = %e, "message stream ended early");
                return;
            }
        }
        let len = u32::from_be_bytes(header) as usize;
        if len > MAX_MESSAGE_LEN {
            return ctx.refuse(
                CloseCode::MessageTooLarge,
                format!("message exceeds {MAX_MESSAGE_LEN} bytes"),
            );
        }
        buf.resize(len, 0);
        if let Err(e) = stream.read_exact(&mut buf).await {
            debug!(peer = %ctx.peer, conn = %ctx.id, error = %e, "message stream ended inside a message");
            return;
        }
        let msg: M = match decode(&buf) {
            Ok(msg) => msg,
            Err(e) => {
                return ctx.refuse(
                    CloseCode::BadMessage,
                    format!("undecodable message of {len} bytes: {e}"),
                );
            }
        };
        if let Err(reason) = shared.authoriser.authorise_message(&ctx.peer, &msg) {
            return ctx.refuse(
                CloseCode::MessageRefused,
                format!("message refused: {reason}"),
            );
        }
        if ctx.reason.get().is_some() {
            return; // the connection was refused meanwhile; nothing more from it counts
        }
        shared
            .emit_to(
                urgent,
                ServerEvent::Message {
                    conn: ctx.id,
                    peer: ctx.peer.clone(),
                    msg,
                },
            )
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: u64) -> ServerEvent<u64> {
        ServerEvent::Message {
            conn: ConnId(1),
            peer: PeerIdentity::new(crate::Role::Agent, crate::NodeName::new("a").unwrap()),
            msg: n,
        }
    }

    fn seq(ev: Option<ServerEvent<u64>>) -> u64 {
        match ev {
            Some(ServerEvent::Message { msg, .. }) => msg,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn urgent_events_overtake_queued_routine_ones() {
        let (routine_tx, routine) = mpsc::channel(8);
        let (urgent_tx, urgent) = mpsc::channel(8);
        let mut events = Events { urgent, routine };
        for n in 1..=3 {
            routine_tx.send(message(n)).await.unwrap();
        }
        urgent_tx.send(message(100)).await.unwrap();
        assert_eq!(seq(events.recv().await), 100);
        assert_eq!(seq(events.recv().await), 1);
        urgent_tx.send(message(101)).await.unwrap();
        assert_eq!(seq(events.recv().await), 101);
        drop(routine_tx);
        assert_eq!(seq(events.recv().await), 2);
        assert_eq!(seq(events.recv().await), 3);
        urgent_tx.send(message(102)).await.unwrap();
        assert_eq!(seq(events.recv().await), 102);
        drop(urgent_tx);
        assert!(events.recv().await.is_none());
    }
}
