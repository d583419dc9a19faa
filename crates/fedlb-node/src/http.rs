//! The status endpoint: `GET /status` (JSON), `GET /` (HTML page), `GET /metrics`
//! (Prometheus text), `GET /healthz`; and on the same port, over TLS with an operator's
//! client certificate, `POST /admin` (see [`crate::admin`]). A connection whose first byte
//! is a TLS handshake record (0x16, never the start of an HTTP request) is an admin
//! connection; any other is plain read-only HTTP.
//!
//! The endpoint shares the node's file descriptors with its probes and QUIC socket, so it
//! must never hold an unbounded number of them: connections are capped (in all and per
//! source address; excess ones are closed at once), a client has [`Limits::header_timeout`]
//! to send its request headers, a connection serves one request (no keep-alive: the page
//! refreshes every few seconds and scrapers are rare) and lives at most
//! [`Limits::connection_timeout`].

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::admin::{Call, Request};
use crate::fds::{ShortageLog, Throttle, is_fd_shortage};
use crate::metrics::{Metrics, labels};
use crate::status::{Status, render_html};

/// Where the endpoint gets a fresh status document (`None` while the node shuts down).
pub type StatusFn =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Option<Status>> + Send>> + Send + Sync>;

#[derive(Clone)]
struct AppState {
    status: StatusFn,
    metrics: Arc<Metrics>,
}

/// The router; bind it where you like (tests bind port 0).
pub fn router(status: StatusFn, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/status", get(json))
        .route("/metrics", get(prometheus))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(AppState { status, metrics })
}

/// What the endpoint allows its clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once, in all.
    pub max_connections: usize,
    /// Connections open at once from one source address.
    pub per_source: usize,
    /// Time a client has, from connecting, to send its request headers.
    pub header_timeout: Duration,
    /// Longest life of a connection (request, handling and response).
    pub connection_timeout: Duration,
}

impl Default for Limits {
    /// 256 connections, 32 per source address, 5 s for the headers, 30 s in all.
    fn default() -> Self {
        Limits {
            max_connections: 256,
            per_source: 32,
            header_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(30),
        }
    }
}

/// Where admin calls go: the TLS configuration (the node's certificate; a client
/// certificate from the federation CA required) and the node's driver.
#[derive(Clone)]
pub struct AdminEndpoint {
    /// Accepts TLS with the node's credentials, client certificates required.
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// The node's driver.
    pub calls: mpsc::Sender<Call>,
}

impl AdminEndpoint {
    /// The endpoint of a node with credentials `tls`, its calls going to `calls`.
    pub fn new(
        tls: &fedlb_net::NodeTls,
        calls: mpsc::Sender<Call>,
    ) -> Result<Self, fedlb_net::NetError> {
        let mut cfg = tls.server_tls_config()?;
        cfg.alpn_protocols = vec![ADMIN_ALPN.to_vec()];
        Ok(AdminEndpoint {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(cfg)),
            calls,
        })
    }
}

/// The ALPN protocol of admin connections.
pub const ADMIN_ALPN: &[u8] = b"fedlb-admin/1";

/// Serves the endpoint on `listener` with the default [`Limits`], and admin calls when
/// `admin` is set, until `shutdown` completes.
pub async fn serve_admin(
    listener: TcpListener,
    status: StatusFn,
    admin: Option<AdminEndpoint>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = router(status, metrics.clone());
    serve_inner(listener, app, admin, Limits::default(), metrics, shutdown).await;
    Ok(())
}

/// Serves the endpoint on `listener` with the default [`Limits`] until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    status: StatusFn,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = router(status, metrics.clone());
    serve_with(listener, app, Limits::default(), metrics, shutdown).await;
    Ok(())
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes, then gives open
/// connections a moment to finish.
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    serve_inner(listener, app, None, limits, metrics, shutdown).await;
}

async fn serve_inner(
    listener: TcpListener,
    app: Router,
    admin: Option<AdminEndpoint>,
    limits: Limits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let sources: Sources = Arc::default();
    let stop = CancellationToken::new();
    let mut conns = JoinSet::new();
    let shortage = ShortageLog::default();
    let refusals = Throttle::new(Duration::from_secs(10));
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if is_fd_shortage(&e) => {
                    metrics.fd_shortages.get_or_create(&labels(&[("during", "accept")])).inc();
                    shortage.note("accepting a status connection", &e);
                    // the connection stays in the backlog; try again once some are closed
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(e) => {
                    debug!(error = %e, "status connection not accepted");
                    continue;
                }
            }
        };
        let why = match slots.clone().try_acquire_owned() {
            Err(_) => Err("too many status connections"),
            Ok(slot) => match SourceSlot::take(&sources, remote.ip(), limits.per_source) {
                Some(source) => Ok((slot, source)),
                None => Err("too many status connections from one address"),
            },
        };
        match why {
            Ok(permits) => {
                conns.spawn(connection(
                    stream,
                    app.clone(),
                    admin.clone(),
                    limits,
                    stop.clone(),
                    permits,
                ));
            }
            Err(why) => {
                // dropping the stream closes it at once
                metrics.status_refused.inc();
                if let Some(count) = refusals.hit() {
                    warn!(%remote, count, max = limits.max_connections, per_source = limits.per_source, "{why}; closed at once");
                }
            }
        }
    }
    stop.cancel();
    let drain = async { while conns.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    conns.abort_all();
}

type Sources = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// One connection counted against its source address until dropped.
struct SourceSlot {
    sources: Sources,
    ip: IpAddr,
}

impl SourceSlot {
    fn take(sources: &Sources, ip: IpAddr, max: usize) -> Option<SourceSlot> {
        let mut map = sources.lock().expect("sources lock");
        let n = map.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            sources: sources.clone(),
            ip,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut map = self.sources.lock().expect("sources lock");
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

async fn connection(
    stream: TcpStream,
    app: Router,
    admin: Option<AdminEndpoint>,
    limits: Limits,
    stop: CancellationToken,
    permits: (OwnedSemaphorePermit, SourceSlot),
) {
    let _ = stream.set_nodelay(true);
    if let Some(admin) = admin {
        let mut first = [0u8; 1];
        let peeked = tokio::time::timeout(limits.header_timeout, stream.peek(&mut first)).await;
        if matches!(peeked, Ok(Ok(1))) && first[0] == 0x16 {
            let remote = stream.peer_addr().ok();
            admin_connection(stream, admin, remote, limits, stop, permits).await;
            return;
        }
    }
    serve_http(stream, app, limits, stop, permits).await;
}

/// Admin over TLS: the handshake verifies the client certificate against the federation
/// CA (none, or another CA's, fails here and is logged); the call is then served only to
/// an identity with the operator role.
async fn admin_connection(
    stream: TcpStream,
    admin: AdminEndpoint,
    remote: Option<std::net::SocketAddr>,
    limits: Limits,
    stop: CancellationToken,
    permits: (OwnedSemaphorePermit, SourceSlot),
) {
    let remote = remote.map_or_else(|| "?".to_owned(), |r| r.to_string());
    let tls = match tokio::time::timeout(limits.header_timeout, admin.acceptor.accept(stream)).await
    {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            warn!(%remote, error = %e, "admin call refused: TLS handshake failed (an operator certificate from the federation CA is required)");
            return;
        }
        Err(_) => {
            warn!(%remote, "admin call refused: TLS handshake timed out");
            return;
        }
    };
    let peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| fedlb_net::PeerIdentity::from_certificate(c.as_ref()));
    let peer = match peer {
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            warn!(%remote, error = %e, "admin call refused: no identity in the client certificate");
            return;
        }
        None => {
            warn!(%remote, "admin call refused: no client certificate");
            return;
        }
    };
    let app = Router::new()
        .route("/admin", axum::routing::post(admin_call))
        .with_state(AdminConn {
            calls: admin.calls,
            peer,
            remote,
        });
    serve_http(tls, app, limits, stop, permits).await;
}

#[derive(Clone)]
struct AdminConn {
    calls: mpsc::Sender<Call>,
    peer: fedlb_net::PeerIdentity,
    remote: String,
}

async fn admin_call(State(c): State<AdminConn>, body: axum::body::Bytes) -> Response {
    if c.peer.role != fedlb_net::Role::Operator {
        warn!(remote = %c.remote, peer = %c.peer, "admin call refused: not an operator certificate");
        return (
            StatusCode::FORBIDDEN,
            format!(
                "admin call refused: {} is not an operator (issue one with `fedlb certs TOPOLOGY --operator NAME`)\n",
                c.peer
            ),
        )
            .into_response();
    }
    let request: Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("admin call: {e}\n")).into_response();
        }
    };
    let (reply, answer) = oneshot::channel();
    let call = Call {
        operator: c.peer.node.to_string(),
        request,
        reply,
    };
    if c.calls.send(call).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match answer.await {
        Ok(Ok(response)) => Json(response).into_response(),
        Ok(Err(why)) => (StatusCode::UNPROCESSABLE_ENTITY, format!("{why}\n")).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
}

async fn serve_http<S>(
    stream: S,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
    _permits: (OwnedSemaphorePermit, SourceSlot),
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                debug!(error = %e, "status connection ended");
            }
        }
        () = tokio::time::sleep(limits.connection_timeout) => {
            debug!(after = ?limits.connection_timeout, "status connection closed: too long");
        }
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
}

async fn json(State(s): State<AppState>) -> Response {
    match (s.status)().await {
        Some(status) => Json(status).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
}

async fn page(State(s): State<AppState>) -> Response {
    match (s.status)().await {
        Some(status) => Html(render_html(&status, 2)).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
}

async fn prometheus(State(s): State<AppState>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}
