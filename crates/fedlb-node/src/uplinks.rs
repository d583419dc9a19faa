//! A node's links upward: one QUIC client per node it reports to (every global node, for
//! a farm node or an agent of directly attached servers), each with its own connection,
//! queue, reconnect and backoff, so that a dead or slow upstream delays none of the others.
//!
//! What a node sends upward are states (a server's health and load, a farm's summary), not
//! events: a link that (re)connects drops what was queued while it was down and the node
//! sends its current state on it instead ([`Uplinks::connected`]). Replaying the queue
//! would make a node that just restarted live through every old state in a burst — a
//! server's old "down" after its newer "up" — and answer with the stale one for a moment.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use fedlb_net::{
    Backlog, Client, ClientConfig, ClientEndpoint, ConnState, NetError, NodeTls, PeerIdentity,
    Queued, ServerRequest, TransportSettings, bind_udp,
};
use fedlb_proto::{Message, PROTOCOL_VERSION};
use fedlb_topology::Topology;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::common::{NodeError, identity, unspecified_for};

/// Where one upstream node is, and who it must be.
pub(crate) type Upstream = (SocketAddr, PeerIdentity);

/// Every global node of `t`, in declaration order.
pub(crate) fn global_upstreams(t: &Topology) -> Result<Vec<Upstream>, NodeError> {
    t.globals
        .iter()
        .map(|g| Ok((g.listen, identity(fedlb_net::Role::Global, &g.name)?)))
        .collect()
}

/// One client per upstream node, sharing one UDP endpoint per address family.
pub(crate) struct Uplinks {
    tls: NodeTls,
    shutdown: CancellationToken,
    /// One endpoint per address family (false: IPv4, true: IPv6), made on first use.
    endpoints: BTreeMap<bool, ClientEndpoint>,
    links: BTreeMap<Upstream, Client<Message>>,
    /// Where requests the upstream nodes send on these links go (admin calls forwarded by
    /// global nodes, for a farm node); `None`: refused.
    requests: Option<mpsc::Sender<ServerRequest>>,
    /// Each link that has just connected (one watcher task per link sends here).
    connected_tx: mpsc::UnboundedSender<Upstream>,
    connected_rx: mpsc::UnboundedReceiver<Upstream>,
}

impl Uplinks {
    /// Links to each of `targets`.
    pub(crate) fn start(
        tls: NodeTls,
        targets: &[Upstream],
        requests: Option<mpsc::Sender<ServerRequest>>,
        shutdown: &CancellationToken,
    ) -> Result<Self, NodeError> {
        let (connected_tx, connected_rx) = mpsc::unbounded_channel();
        let mut links = Uplinks {
            tls,
            shutdown: shutdown.clone(),
            endpoints: BTreeMap::new(),
            links: BTreeMap::new(),
            requests,
            connected_tx,
            connected_rx,
        };
        links.follow(targets)?;
        Ok(links)
    }

    /// Links to exactly `targets`: new ones are dialled, those no longer listed are closed
    /// (dropping a client closes its connection), unchanged ones keep their connection.
    pub(crate) fn follow(&mut self, targets: &[Upstream]) -> Result<(), NodeError> {
        let before = self.links.len();
        self.links.retain(|k, _| targets.contains(k));
        let closed = before - self.links.len();
        for t in targets {
            if self.links.contains_key(t) {
                continue;
            }
            let v6 = t.0.is_ipv6();
            if !self.endpoints.contains_key(&v6) {
                let endpoint = ClientEndpoint::new(
                    bind_udp(unspecified_for(t.0)).map_err(NodeError::Net)?,
                    &self.tls,
                    TransportSettings::default(),
                )?;
                self.endpoints.insert(v6, endpoint);
            }
            let mut config = ClientConfig::new(t.0, t.1.clone(), PROTOCOL_VERSION);
            config.requests = self.requests.clone();
            config.backlog = Backlog::Discard;
            let client = Client::start(&self.endpoints[&v6], config, self.shutdown.clone());
            self.watch(t, &client);
            if before > 0 || closed > 0 {
                info!(upstream = %t.1, addr = %t.0, "new upstream; connecting");
            }
            self.links.insert(t.clone(), client);
        }
        if closed > 0 {
            info!(closed, "upstreams no longer in the topology; disconnected");
        }
        Ok(())
    }

    /// Reports each time `client`'s connection comes up, until the client stops (a link
    /// dropped by [`Uplinks::follow`] stops its client, which ends the watch).
    fn watch(&self, link: &Upstream, client: &Client<Message>) {
        let mut state = client.state();
        let tx = self.connected_tx.clone();
        let link = link.clone();
        tokio::spawn(async move {
            while state.changed().await.is_ok() {
                let up = matches!(*state.borrow_and_update(), ConnState::Connected { .. });
                if up && tx.send(link.clone()).is_err() {
                    break;
                }
            }
        });
    }

    /// The next link whose connection came up; what it had queued is gone, so the caller
    /// sends its current state on it with [`Uplinks::send_to`]. Cancel-safe.
    pub(crate) async fn connected(&mut self) -> Upstream {
        self.connected_rx
            .recv()
            .await
            .expect("the sender lives in self")
    }

    /// Queues `msg` on `link` only (urgent or routine); nothing if the link is gone.
    pub(crate) fn send_to(&self, link: &Upstream, msg: &Message, urgent: bool, what: &str) {
        let Some(client) = self.links.get(link) else {
            return;
        };
        let sent = if urgent {
            client.send_urgent(msg)
        } else {
            client.send(msg)
        };
        if let Err(e) = sent {
            warn!(upstream = %link.1, addr = %link.0, error = %e, "{what} not sent");
        }
    }

    /// Queues `msg` on every link (each link's queue drops its oldest when full: one slow
    /// upstream never holds the others). Per-link failures are logged.
    pub(crate) fn send(&self, msg: &Message, what: &str) {
        self.each(what, |c| c.send(msg));
    }

    /// [`Uplinks::send`] on each link's urgent stream.
    pub(crate) fn send_urgent(&self, msg: &Message, what: &str) {
        self.each(what, |c| c.send_urgent(msg));
    }

    fn each(&self, what: &str, send: impl Fn(&Client<Message>) -> Result<Queued, NetError>) {
        for ((addr, to), client) in &self.links {
            if let Err(e) = send(client) {
                warn!(upstream = %to, %addr, error = %e, "{what} not sent");
            }
        }
    }

    /// Closes every link.
    pub(crate) async fn stop(self) {
        for (_, client) in self.links {
            client.stop().await;
        }
    }
}
