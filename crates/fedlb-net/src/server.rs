//! The accepting side: a farm node accepting agents, the global node accepting farm nodes.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use quinn::crypto::rustls::HandshakeData;
use quinn::{Connection, Endpoint, ReadToEndError, RecvStream};
use rustls::pki_types::CertificateDer;
use serde::de::DeserializeOwned;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::close::{clip, describe};
use crate::socket::enlarge_buffers;
use crate::wire::{HELLO_LEN, Hello, MAX_MESSAGE_LEN, decode};
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
    /// Capacity of the event queue. When it is full, connection tasks wait (QUIC flow
    /// control then slows the peers); `Rejected` events are dropped instead.
    pub event_capacity: usize,
    /// TLS handshakes in progress beyond this are refused at once; the client backs off.
    pub max_handshakes_in_flight: usize,
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
            shutdown_grace: Duration::from_secs(2),
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

/// Connections by peer, shared between the accept loop and the [`Server`] handle.
type LiveMap = Arc<Mutex<HashMap<PeerIdentity, (ConnId, Connection)>>>;

struct Shared<M, A> {
    config: ServerConfig,
    identity: PeerIdentity,
    authoriser: A,
    events: mpsc::Sender<ServerEvent<M>>,
    live: LiveMap,
    next_id: AtomicU64,
    shutdown: CancellationToken,
    _msg: PhantomData<fn() -> M>,
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
    ) -> Result<(Server, mpsc::Receiver<ServerEvent<M>>), NetError>
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
        let live: LiveMap = Arc::new(Mutex::new(HashMap::new()));
        let shared = Arc::new(Shared {
            config,
            identity: tls.identity().clone(),
            authoriser,
            events: tx,
            live: live.clone(),
            next_id: AtomicU64::new(1),
            shutdown,
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
            rx,
        ))
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
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
        let remote = incoming.remote_address();
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            warn!(%remote, limit = shared.config.max_handshakes_in_flight, "too many handshakes in flight; refusing connection");
            shared.rejected(remote, None, "too many handshakes in flight".to_owned());
            incoming.refuse();
            continue;
        };
        tracker.spawn(connection(shared.clone(), incoming, permit));
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
        tokio::select! {
            _ = self.events.send(event) => {}
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

async fn connection<M, A>(
    shared: Arc<Shared<M, A>>,
    incoming: quinn::Incoming,
    permit: OwnedSemaphorePermit,
) where
    M: DeserializeOwned + Send + 'static,
    A: Authoriser<M>,
{
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(e) => {
            let reason = describe(&e);
            warn!(%remote, %reason, "handshake failed; connection refused");
            shared.rejected(remote, None, reason);
            return;
        }
    };
    drop(permit);
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
    let hello = tokio::time::timeout(
        shared.config.transport.hello_timeout,
        hello(
            &conn,
            &peer,
            shared.config.protocol_version,
            &shared.identity,
        ),
    )
    .await
    .unwrap_or_else(|_| {
        Err((
            CloseCode::BadHello,
            format!(
                "no hello within {:?}",
                shared.config.transport.hello_timeout
            ),
        ))
    });
    if let Err((code, reason)) = hello {
        return refuse_early(&shared, &conn, remote, Some(peer), code, reason);
    }

    let previous = shared
        .live
        .lock()
        .expect("live-connection map poisoned")
        .insert(peer.clone(), (id, conn.clone()));
    if let Some((old_id, old)) = previous {
        info!(%peer, old = %old_id, new = %id, "newer connection from the same identity; closing the old one");
        old.close(
            CloseCode::Replaced.varint(),
            b"replaced by a newer connection from the same identity",
        );
    }
    info!(%peer, conn = %id, %remote, "peer connected");
    shared
        .emit(ServerEvent::Connected {
            conn: id,
            peer: peer.clone(),
            remote,
        })
        .await;

    let ctx = Arc::new(ConnCtx {
        conn,
        id,
        peer,
        reason: OnceLock::new(),
    });
    // A stream's credit returns to the peer once it is read, before its message is handed
    // over; the permits keep the messages waiting for a slow application bounded too.
    let permits = Arc::new(Semaphore::new(
        shared.config.transport.max_concurrent_uni_streams.max(1) as usize,
    ));
    let streams = TaskTracker::new();
    let ended = loop {
        let permit = tokio::select! {
            e = ctx.conn.closed() => break e,
            p = permits.clone().acquire_owned() => p.expect("stream permits are never closed"),
        };
        match ctx.conn.accept_uni().await {
            Ok(stream) => {
                streams.spawn(message(shared.clone(), ctx.clone(), stream, permit));
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
    match &peer {
        Some(peer) => warn!(%remote, %peer, ?code, %reason, "connection refused"),
        None => warn!(%remote, ?code, %reason, "connection refused"),
    }
    conn.close(code.varint(), clip(&reason).as_bytes());
    shared.rejected(remote, peer, reason);
}

/// Reads the client's hello and answers with ours.
async fn hello(
    conn: &Connection,
    peer: &PeerIdentity,
    version: u16,
    us: &PeerIdentity,
) -> Result<(), (CloseCode, String)> {
    let bad = |why: String| (CloseCode::BadHello, why);
    let (mut send, mut recv) = conn
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
    let ours = Hello {
        version,
        role: us.role,
    };
    send.write_all(&ours.to_bytes())
        .await
        .map_err(|e| bad(format!("hello answer: {e}")))?;
    let _ = send.finish();
    Ok(())
}

/// Reads, decodes and authorises one message stream.
async fn message<M, A>(
    shared: Arc<Shared<M, A>>,
    ctx: Arc<ConnCtx>,
    mut stream: RecvStream,
    _permit: OwnedSemaphorePermit,
) where
    M: DeserializeOwned + Send + 'static,
    A: Authoriser<M>,
{
    let bytes = match stream.read_to_end(MAX_MESSAGE_LEN).await {
        Ok(bytes) => bytes,
        Err(ReadToEndError::TooLong) => {
            return ctx.refuse(
                CloseCode::MessageTooLarge,
                format!("message exceeds {MAX_MESSAGE_LEN} bytes"),
            );
        }
        Err(ReadToEndError::Read(e)) => {
            // Stream reset or connection gone: the connection task reports the latter.
            debug!(peer = %ctx.peer, conn = %ctx.id, error = %e, "message stream ended early");
            return;
        }
    };
    let msg: M = match decode(&bytes) {
        Ok(msg) => msg,
        Err(e) => {
            return ctx.refuse(
                CloseCode::BadMessage,
                format!("undecodable message of {} bytes: {e}", bytes.len()),
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
        .emit(ServerEvent::Message {
            conn: ctx.id,
            peer: ctx.peer.clone(),
            msg,
        })
        .await;
}
