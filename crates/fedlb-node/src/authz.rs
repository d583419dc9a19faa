//! Who may connect to a node and what each peer may send: the access rules of the farm node
//! and the global node, in one place. The rules read the topology in force; a reload
//! replaces it whole, so a peer's rights follow the file.
//!
//! - A farm node accepts only the agents of its own servers; an agent may report only for
//!   the servers it is named for, and only for servers of that farm.
//! - The global node accepts the farm nodes of the topology (a farm may have several), each
//!   sending summaries for its own farm only, each summary naming the node that sends it;
//!   and the agents of servers attached directly to it.
//! - A server probed remotely has no agent: nobody may report for it.

use std::fmt;

use fedlb_core::FarmId;
use fedlb_net::{Authoriser, PeerIdentity, Role};
use fedlb_proto::Message;
use fedlb_topology::{Attachment, Mode, Topology};

use crate::common::SharedTopology;

/// Which server of the hierarchy applies the rules: a farm node or the global node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Site {
    /// The farm node of this farm.
    Farm(FarmId),
    /// The global node.
    Global,
}

impl Site {
    /// Whether servers attached at `attachment` report here.
    fn holds(&self, attachment: &Attachment) -> bool {
        match (attachment, self) {
            (Attachment::Farm(f), Site::Farm(me)) => f == me,
            (Attachment::Global, Site::Global) => true,
            _ => false,
        }
    }
}

/// Why a peer or one of its messages is refused. The text goes to the refused peer's log
/// line and to the peer itself (as the close reason).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A role that never connects to this site (a global node anywhere, a farm node to a
    /// farm node).
    #[error("{}", role_refused(*.role, .site))]
    RoleNotAccepted {
        /// The peer's role.
        role: Role,
        /// Where it connected.
        site: Site,
    },
    /// A farm node the topology does not declare.
    #[error("farm node \"{farm}\" is not in the topology")]
    UnknownFarm {
        /// The farm name in the peer's certificate.
        farm: String,
    },
    /// An agent that monitors no server attached here.
    #[error("agent \"{agent}\" monitors no server {}", where_attached(.site))]
    AgentNotHere {
        /// The agent's name.
        agent: String,
        /// Where it connected.
        site: Site,
    },
    /// A message that fails the protocol's limits.
    #[error("{0}")]
    Invalid(String),
    /// Summaries sent to a farm node.
    #[error("summaries are not taken by a farm node")]
    SummariesAtFarm,
    /// A message kind this role may not send to the global node.
    #[error("a {} may not send that message here", .role.as_str())]
    MessageNotAccepted {
        /// The peer's role.
        role: Role,
    },
    /// A farm node's summary for another farm.
    #[error("farm node \"{node}\" sent a summary for farm \"{farm}\"")]
    OtherFarm {
        /// The sending farm node.
        node: String,
        /// The farm named in the summary.
        farm: String,
    },
    /// A farm node's summary that names another farm node as its author.
    #[error("farm node \"{node}\" sent a summary naming farm node \"{named}\"")]
    OtherNode {
        /// The sending farm node.
        node: String,
        /// The farm node named in the summary.
        named: String,
    },
    /// A report for a server the topology does not declare.
    #[error("reports for unknown server \"{server}\"")]
    UnknownServer {
        /// The server named in the report.
        server: String,
    },
    /// A report for a server attached elsewhere (another farm, or the global node).
    #[error("reports for server \"{server}\", which is not attached here")]
    NotAttachedHere {
        /// The server named in the report.
        server: String,
    },
    /// A report for a server whose agent is another.
    #[error("reports for server \"{server}\", whose agent is \"{agent}\"")]
    OtherAgent {
        /// The server named in the report.
        server: String,
        /// Its agent.
        agent: String,
    },
    /// A report for a server its farm node (or the global node) probes itself.
    #[error("reports for server \"{server}\", which is probed remotely")]
    ProbedRemotely {
        /// The server named in the report.
        server: String,
    },
}

fn role_refused(role: Role, site: &Site) -> String {
    let a = if role == Role::Operator { "an" } else { "a" };
    match (site, role) {
        (Site::Farm(_), _) => format!("{a} {} may not connect to a farm node", role.as_str()),
        // an operator's certificate is for admin calls (HTTPS on the status port) only
        (Site::Global, Role::Operator) => {
            "an operator may not connect to a global node (admin calls go to its status port)"
                .to_owned()
        }
        (Site::Global, _) => {
            format!(
                "{a} {} node may not connect to a global node",
                role.as_str()
            )
        }
    }
}

fn where_attached(site: &Site) -> String {
    match site {
        Site::Farm(f) => format!("of farm \"{f}\""),
        Site::Global => "attached to the global node".to_owned(),
    }
}

/// Whether `peer` may connect to `site` at all.
pub fn peer_may_connect(t: &Topology, site: &Site, peer: &PeerIdentity) -> Result<(), Refusal> {
    let name = peer.node.as_str();
    match (peer.role, site) {
        (Role::Agent, _) if agent_belongs(t, site, name) => Ok(()),
        (Role::Agent, _) => Err(Refusal::AgentNotHere {
            agent: name.to_owned(),
            site: site.clone(),
        }),
        (Role::Farm, Site::Global) if t.farm_of_node(name).is_some() => Ok(()),
        (Role::Farm, Site::Global) => Err(Refusal::UnknownFarm {
            farm: name.to_owned(),
        }),
        (role, _) => Err(Refusal::RoleNotAccepted {
            role,
            site: site.clone(),
        }),
    }
}

/// Whether `peer` may send `msg` to `site`.
pub fn message_allowed(
    t: &Topology,
    site: &Site,
    peer: &PeerIdentity,
    msg: &Message,
) -> Result<(), Refusal> {
    msg.validate()
        .map_err(|e| Refusal::Invalid(e.to_string()))?;
    match (site, peer.role, msg) {
        (Site::Farm(_), _, Message::Reports(rs))
        | (Site::Global, Role::Agent, Message::Reports(rs)) => rs
            .iter()
            .try_for_each(|r| agent_may_report(t, site, peer, &r.server)),
        (Site::Farm(_), _, Message::Summaries(_)) => Err(Refusal::SummariesAtFarm),
        (Site::Global, Role::Farm, Message::Summaries(ss)) => {
            let node = peer.node.as_str();
            ss.iter().try_for_each(|s| {
                // the farm the summary names, looked up by name, must list this node (node
                // names are unique across the topology): one look-up, where finding the
                // node's farm visited every farm (a global node of 1,000 farms spent a
                // tenth of its time there)
                let of_farm = t
                    .farms
                    .get(&FarmId::from(s.farm.as_str()))
                    .is_some_and(|f| f.node(node).is_some());
                if !of_farm {
                    Err(Refusal::OtherFarm {
                        node: node.to_owned(),
                        farm: s.farm.clone(),
                    })
                } else if s.node != node {
                    Err(Refusal::OtherNode {
                        node: node.to_owned(),
                        named: s.node.clone(),
                    })
                } else {
                    Ok(())
                }
            })
        }
        (Site::Global, role, _) => Err(Refusal::MessageNotAccepted { role }),
    }
}

/// Whether `peer` may report for server `server` at `site`: only the agent the topology
/// names for that server, and only for servers attached there.
pub fn agent_may_report(
    t: &Topology,
    site: &Site,
    peer: &PeerIdentity,
    server: &str,
) -> Result<(), Refusal> {
    let (s, attachment) = t
        .server(&server.into())
        .ok_or_else(|| Refusal::UnknownServer {
            server: server.to_owned(),
        })?;
    if !site.holds(&attachment) {
        return Err(Refusal::NotAttachedHere {
            server: server.to_owned(),
        });
    }
    match &s.mode {
        Mode::Intrusive { agent } if agent == peer.node.as_str() => Ok(()),
        Mode::Intrusive { agent } => Err(Refusal::OtherAgent {
            server: server.to_owned(),
            agent: agent.clone(),
        }),
        Mode::Remote => Err(Refusal::ProbedRemotely {
            server: server.to_owned(),
        }),
    }
}

/// Whether an agent named `name` monitors a server attached at `site`.
pub fn agent_belongs(t: &Topology, site: &Site, name: &str) -> bool {
    t.servers().any(|(s, a)| {
        site.holds(&a) && matches!(&s.mode, Mode::Intrusive { agent } if agent == name)
    })
}

/// The rules of one site over the topology in force, as the transport asks for them.
pub struct Access {
    topology: SharedTopology,
    site: Site,
}

impl Access {
    /// The rules of `site`, reading `topology` at every check.
    pub fn new(topology: SharedTopology, site: Site) -> Self {
        Self { topology, site }
    }
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Access").field("site", &self.site).finish()
    }
}

impl Authoriser<Message> for Access {
    fn authorise_peer(&self, peer: &PeerIdentity) -> Result<(), String> {
        let t = self.topology.read().expect("topology lock").clone();
        peer_may_connect(&t, &self.site, peer).map_err(|r| r.to_string())
    }

    fn authorise_message(&self, peer: &PeerIdentity, msg: &Message) -> Result<(), String> {
        let t = self.topology.read().expect("topology lock").clone();
        message_allowed(&t, &self.site, peer, msg).map_err(|r| r.to_string())
    }
}
