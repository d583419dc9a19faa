//! What every role shares: errors, loading the topology and credentials, identities,
//! the status request channel.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use fedlb_core::Timestamp;
use fedlb_net::{NodeName, NodeTls, PeerIdentity, Role};
use fedlb_topology::{Loader, Topology};
use tokio::sync::{mpsc, oneshot};

use crate::status::Status;

/// Why a node could not start (or had to stop).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The topology file is invalid; every problem is listed.
    #[error("{0}")]
    Topology(#[from] fedlb_topology::LoadError),
    /// The node name is not in the topology, or not in the role asked for.
    #[error("{file}: no {role} named \"{node}\" (nodes: {known})")]
    UnknownNode {
        /// The topology file.
        file: String,
        /// The role asked for.
        role: &'static str,
        /// The name asked for.
        node: String,
        /// What the topology declares.
        known: String,
    },
    /// Credentials could not be loaded.
    #[error("certificates in {dir}: {source} (make them with `fedlb certs TOPOLOGY --out {dir}`)")]
    Credentials {
        /// The certificate directory.
        dir: String,
        /// Why.
        #[source]
        source: fedlb_net::NetError,
    },
    /// The transport could not start.
    #[error("transport: {0}")]
    Net(#[from] fedlb_net::NetError),
    /// The file of operator overrides in the state directory cannot be read or written, or
    /// a line of it does not parse.
    #[error("{file}: {}{why}", at_line(*.line))]
    OverrideFile {
        /// The file.
        file: String,
        /// The line (1-based; 0: the file as a whole).
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// A socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A probe declaration cannot run.
    #[error("{0}")]
    Probe(String),
    /// The DNS zone of the topology is not a name DNS takes.
    #[error("{file}: dns.zone: {source}")]
    Zone {
        /// The topology file.
        file: String,
        /// The zone as written.
        zone: String,
        /// Why.
        #[source]
        source: Box<fedlb_dns::Error>,
    },
    /// Updates to DNS primaries need a TSIG key, and the topology gives none.
    #[error("{file}: dns: updates to {primaries:?} need a tsig key")]
    TsigKeyMissing {
        /// The topology file.
        file: String,
        /// The primaries the updates would go to.
        primaries: Vec<SocketAddr>,
    },
    /// The regions' clients cannot be told apart (a prefix in two regions).
    #[error("{file}: regions: {reason}")]
    Regions {
        /// The topology file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// The TSIG key cannot sign updates.
    #[error("{file}: dns.tsig: {source}")]
    TsigKey {
        /// The topology file.
        file: String,
        /// The key's name.
        key: String,
        /// Why.
        #[source]
        source: Box<fedlb_dns::Error>,
    },
    /// The DNS side could not start.
    #[error("dns: {0}")]
    Dns(#[from] fedlb_dns::Error),
}

/// The earlier of two deadlines, if any.
pub(crate) fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The unspecified address of `addr`'s family, port 0: where a client binds to reach `addr`.
pub(crate) fn unspecified_for(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    }
}

/// Where a node's inputs are.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// The topology file.
    pub topology: PathBuf,
    /// The node's name in it.
    pub node: String,
    /// The directory `fedlb certs` wrote.
    pub certs: PathBuf,
    /// Where the node keeps what must survive a restart (operator overrides); `None`:
    /// [`NodeOptions::DEFAULT_STATE_DIR`].
    pub state_dir: Option<PathBuf>,
}

impl NodeOptions {
    /// The state directory when none is given: `state`, under the working directory (a
    /// systemd unit sets `StateDirectory=` and passes `--state-dir`).
    pub const DEFAULT_STATE_DIR: &str = "state";

    /// The state directory in use.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(Self::DEFAULT_STATE_DIR))
    }
}

fn at_line(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!("line {line}: ")
    }
}

/// The topology as every task of a node sees it; replaced whole on reload.
pub type SharedTopology = Arc<RwLock<Arc<Topology>>>;

/// Loads the topology. Only the global node reads the TSIG key file.
pub fn load_topology(path: &Path, read_keys: bool) -> Result<Topology, NodeError> {
    let loaded = Loader::new().read_key_files(read_keys).load(path)?;
    for w in &loaded.warnings {
        tracing::warn!(%w, "topology warning");
    }
    Ok(loaded.topology)
}

/// The node's credentials.
pub fn load_tls(certs: &Path, role: Role, node: &str) -> Result<NodeTls, NodeError> {
    let identity = identity(role, node)?;
    NodeTls::load(certs, &identity).map_err(|source| NodeError::Credentials {
        dir: certs.display().to_string(),
        source,
    })
}

/// The transport identity of a node.
pub fn identity(role: Role, node: &str) -> Result<PeerIdentity, NodeError> {
    Ok(PeerIdentity::new(role, NodeName::new(node)?))
}

/// The names of the nodes a topology declares, for error messages.
pub fn known_nodes(t: &Topology) -> String {
    t.nodes()
        .iter()
        .map(|n| n.name.clone())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A request for a fresh status document, answered by the role's driver task.
pub type StatusRequest = oneshot::Sender<Status>;

/// The sending side used by the HTTP endpoint.
pub fn status_fn(tx: mpsc::Sender<StatusRequest>) -> crate::http::StatusFn {
    Arc::new(move || {
        let tx = tx.clone();
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            tx.send(reply).await.ok()?;
            rx.await.ok()
        })
    })
}

/// Binds a role's status endpoint on `addr` and serves it until shutdown.
pub(crate) async fn serve_status(
    addr: SocketAddr,
    requests: mpsc::Sender<StatusRequest>,
    admin: Option<crate::http::AdminEndpoint>,
    metrics: &Arc<crate::metrics::Metrics>,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, NodeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Bind { addr, source })?;
    Ok(tokio::spawn(crate::http::serve_admin(
        listener,
        status_fn(requests),
        admin,
        metrics.clone(),
        shutdown.clone().cancelled_owned(),
    )))
}

/// Checks, on reload, one address a node is bound to (`field`: `global.listen`,
/// `farm "eu-west": status`). A node does not rebind its own sockets: a changed address is
/// logged as needing a restart and the node keeps the old one, while the rest of the new
/// topology is applied. Returns whether it changed.
pub(crate) fn own_address_changed(field: &str, bound: SocketAddr, new: SocketAddr) -> bool {
    if bound == new {
        return false;
    }
    tracing::error!(
        %bound,
        new = %new,
        "{field} changed: restart the node to apply (it keeps {bound} until then; the rest of the topology is in force)"
    );
    true
}

/// Counts and logs a peer's arrival, departure or refusal (every event but a message).
pub(crate) fn peer_event<M>(ev: &fedlb_net::ServerEvent<M>, metrics: &crate::metrics::Metrics) {
    use fedlb_net::ServerEvent;
    match ev {
        ServerEvent::Message { .. } => {}
        ServerEvent::Connected { peer, remote, .. } => {
            metrics.peers.inc();
            metrics.peer_connects.inc();
            tracing::info!(%peer, %remote, "peer connected");
        }
        ServerEvent::Disconnected { peer, reason, .. } => {
            metrics.peers.dec();
            tracing::info!(%peer, %reason, "peer disconnected");
        }
        ServerEvent::Rejected {
            remote,
            peer,
            reason,
        } => {
            metrics
                .refused
                .get_or_create(&crate::metrics::labels(&[("what", "peer")]))
                .inc();
            tracing::warn!(%remote, peer = ?peer.as_ref().map(|p| p.to_string()), %reason, "peer refused");
        }
    }
}
