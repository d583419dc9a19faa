//! The peer and message access rules (`fedlb_node::authz`), as a table: every row is one
//! peer at one site (farm node "near" or the global node) connecting or sending one
//! message, with the verdict and the reason the refused peer is told. Each row is checked
//! twice: the pure rule gives the verdict, and the authoriser the transport calls gives
//! the same reason as text.
//!
//! The topology: farm "near" holds `i1` (agent `i1-agent`), `i2` (agent `i2-agent`) and
//! `r1` (probed remotely); farm "far" holds `f1` (agent `f1-agent`); the global node has
//! `d1` (agent `d1-agent`) and `d2` (probed remotely) attached directly.

mod support;

use std::sync::{Arc, RwLock};

use fedlb_core::{FarmId, Health, Members};
use fedlb_net::{Authoriser, NodeName, PeerIdentity, Role};
use fedlb_node::authz::{self, Access, Refusal, Site};
use fedlb_proto::{Message, WireReadings, WireReport, WireSummary};
use fedlb_topology::{Format, Topology};
use support::{farm, header, intrusive_server, remote_server};

const B: u8 = 250;

fn topology() -> Topology {
    let toml = [
        header(B, r#""least_loaded""#),
        farm(B, 2, "near", 10, &["i1", "i2", "r1"]),
        intrusive_server(B, 11, "i1", "i1-agent"),
        intrusive_server(B, 12, "i2", "i2-agent"),
        remote_server(B, 13, "r1"),
        farm(B, 3, "far", 50, &["f1"]),
        intrusive_server(B, 21, "f1", "f1-agent"),
        format!(
            r#"
[[farms]]
name = "pair"
nodes = [
  {{ name = "pair-a", listen = "127.0.{B}.4:7401", status = "127.0.{B}.4:7481" }},
  {{ name = "pair-b", listen = "127.0.{B}.5:7401", status = "127.0.{B}.5:7481" }},
]
distance_ms = 20
"#
        ),
        intrusive_server(B, 41, "p1", "p1-agent"),
        format!(
            r#"
[[servers]]
name = "d1"
address = "127.0.{B}.31"
services = ["www"]
mode = "intrusive"
agent = "d1-agent"
distance_ms = 30

[[servers]]
name = "d2"
address = "127.0.{B}.32"
services = ["www"]
distance_ms = 40
"#
        ),
    ]
    .concat();
    fedlb_topology::load_str(&toml, Format::Toml, "authz.toml")
        .expect("the test topology is valid")
        .topology
}

/// What the peer does.
#[derive(Clone, Copy, Debug)]
enum Act {
    /// Connects.
    Connect,
    /// Sends a report for this server.
    Report(&'static str),
    /// Sends a summary for this farm, naming the sending node as its author.
    Summary(&'static str),
    /// Sends a summary for this farm naming this farm node as its author.
    SummaryBy(&'static str, &'static str),
    /// Sends a message that fails the protocol's limits (no report in a batch).
    EmptyBatch,
}

struct Row {
    site: &'static str,
    role: Role,
    peer: &'static str,
    act: Act,
    /// The verdict.
    expect: Result<(), Refusal>,
    /// What the refused peer is told ("" when allowed).
    reason: String,
}

fn near() -> Site {
    Site::Farm(FarmId::from("near"))
}

fn site(name: &str) -> Site {
    match name {
        "global" => Site::Global,
        farm => Site::Farm(FarmId::from(farm)),
    }
}

fn s(text: &str) -> String {
    text.to_owned()
}

fn report(server: &str) -> WireReport {
    WireReport {
        service: s("www"),
        server: s(server),
        epoch: 1,
        seq: 1,
        health: Health::Up,
        reason: s("probe passed"),
        readings: WireReadings::default(),
    }
}

fn summary(farm: &str, node: &str) -> WireSummary {
    WireSummary {
        farm: s(farm),
        node: s(node),
        service: s("www"),
        epoch: 1,
        seq: 1,
        health: Health::Up,
        policy: s("failover"),
        why: s("failover: first up in order"),
        chosen: vec![s("i1")],
        addresses: vec![support::ip(B, 11)],
        weights: vec![1.0],
        members: Members { up: 1, total: 1 },
        capacity: 1.0,
        readings: WireReadings::default(),
        aggregates: Vec::new(),
        degraded: false,
        servers: Vec::new(),
        incomplete: false,
    }
}

fn message(act: Act, peer: &str) -> Option<Message> {
    match act {
        Act::Connect => None,
        Act::Report(server) => Some(Message::Reports(vec![report(server)])),
        Act::Summary(farm) => Some(Message::Summaries(vec![summary(farm, peer)])),
        Act::SummaryBy(farm, node) => Some(Message::Summaries(vec![summary(farm, node)])),
        Act::EmptyBatch => Some(Message::Reports(Vec::new())),
    }
}

fn rows() -> Vec<Row> {
    use Act::*;
    use Role::{Agent, Farm, Global};
    let ok = |site, role, peer, act| Row {
        site,
        role,
        peer,
        act,
        expect: Ok(()),
        reason: String::new(),
    };
    let no = |site, role, peer, act, refusal, reason: &str| Row {
        site,
        role,
        peer,
        act,
        expect: Err(refusal),
        reason: reason.to_owned(),
    };
    let agent_not_here = |agent: &str, site: Site| Refusal::AgentNotHere {
        agent: s(agent),
        site,
    };
    vec![
        // who may connect to farm node "near"
        ok("near", Agent, "i1-agent", Connect),
        ok("near", Agent, "i2-agent", Connect),
        no(
            "near",
            Agent,
            "f1-agent",
            Connect,
            agent_not_here("f1-agent", near()),
            r#"agent "f1-agent" monitors no server of farm "near""#,
        ),
        no(
            "near",
            Agent,
            "d1-agent",
            Connect,
            agent_not_here("d1-agent", near()),
            r#"agent "d1-agent" monitors no server of farm "near""#,
        ),
        no(
            "near",
            Agent,
            "nobody",
            Connect,
            agent_not_here("nobody", near()),
            r#"agent "nobody" monitors no server of farm "near""#,
        ),
        no(
            "near",
            Farm,
            "far",
            Connect,
            Refusal::RoleNotAccepted {
                role: Farm,
                site: near(),
            },
            "a farm may not connect to a farm node",
        ),
        no(
            "near",
            Farm,
            "near",
            Connect,
            Refusal::RoleNotAccepted {
                role: Farm,
                site: near(),
            },
            "a farm may not connect to a farm node",
        ),
        no(
            "near",
            Global,
            "global",
            Connect,
            Refusal::RoleNotAccepted {
                role: Global,
                site: near(),
            },
            "a global may not connect to a farm node",
        ),
        // who may connect to the global node
        ok("global", Agent, "d1-agent", Connect),
        ok("global", Farm, "near", Connect),
        ok("global", Farm, "far", Connect),
        no(
            "global",
            Agent,
            "i1-agent",
            Connect,
            agent_not_here("i1-agent", Site::Global),
            r#"agent "i1-agent" monitors no server attached to the global node"#,
        ),
        no(
            "global",
            Agent,
            "nobody",
            Connect,
            agent_not_here("nobody", Site::Global),
            r#"agent "nobody" monitors no server attached to the global node"#,
        ),
        no(
            "global",
            Farm,
            "atlantis",
            Connect,
            Refusal::UnknownFarm {
                farm: s("atlantis"),
            },
            r#"farm node "atlantis" is not in the topology"#,
        ),
        no(
            "global",
            Global,
            "global",
            Connect,
            Refusal::RoleNotAccepted {
                role: Global,
                site: Site::Global,
            },
            "a global node may not connect to a global node",
        ),
        // what an agent may report to farm node "near"
        ok("near", Agent, "i1-agent", Report("i1")),
        ok("near", Agent, "i2-agent", Report("i2")),
        no(
            "near",
            Agent,
            "i1-agent",
            Report("i2"),
            Refusal::OtherAgent {
                server: s("i2"),
                agent: s("i2-agent"),
            },
            r#"reports for server "i2", whose agent is "i2-agent""#,
        ),
        no(
            "near",
            Agent,
            "i1-agent",
            Report("r1"),
            Refusal::ProbedRemotely { server: s("r1") },
            r#"reports for server "r1", which is probed remotely"#,
        ),
        no(
            "near",
            Agent,
            "f1-agent",
            Report("f1"),
            Refusal::NotAttachedHere { server: s("f1") },
            r#"reports for server "f1", which is not attached here"#,
        ),
        no(
            "near",
            Agent,
            "d1-agent",
            Report("d1"),
            Refusal::NotAttachedHere { server: s("d1") },
            r#"reports for server "d1", which is not attached here"#,
        ),
        no(
            "near",
            Agent,
            "i1-agent",
            Report("ghost"),
            Refusal::UnknownServer { server: s("ghost") },
            r#"reports for unknown server "ghost""#,
        ),
        no(
            "near",
            Agent,
            "i1-agent",
            Summary("near"),
            Refusal::SummariesAtFarm,
            "summaries are not taken by a farm node",
        ),
        // what an agent attached to the global node may report there
        ok("global", Agent, "d1-agent", Report("d1")),
        no(
            "global",
            Agent,
            "d1-agent",
            Report("d2"),
            Refusal::ProbedRemotely { server: s("d2") },
            r#"reports for server "d2", which is probed remotely"#,
        ),
        no(
            "global",
            Agent,
            "d1-agent",
            Report("i1"),
            Refusal::NotAttachedHere { server: s("i1") },
            r#"reports for server "i1", which is not attached here"#,
        ),
        no(
            "global",
            Agent,
            "i1-agent",
            Report("d1"),
            Refusal::OtherAgent {
                server: s("d1"),
                agent: s("d1-agent"),
            },
            r#"reports for server "d1", whose agent is "d1-agent""#,
        ),
        no(
            "global",
            Agent,
            "d1-agent",
            Summary("near"),
            Refusal::MessageNotAccepted { role: Agent },
            "a agent may not send that message here",
        ),
        // what a farm node may send to the global node
        ok("global", Farm, "near", Summary("near")),
        ok("global", Farm, "far", Summary("far")),
        no(
            "global",
            Farm,
            "near",
            Summary("far"),
            Refusal::OtherFarm {
                node: s("near"),
                farm: s("far"),
            },
            r#"farm node "near" sent a summary for farm "far""#,
        ),
        no(
            "global",
            Farm,
            "near",
            Report("i1"),
            Refusal::MessageNotAccepted { role: Farm },
            "a farm may not send that message here",
        ),
        // a farm with two farm nodes: each may connect and summarise its farm, under its
        // own name; the farm's name is no node
        ok("global", Farm, "pair-a", Connect),
        ok("global", Farm, "pair-b", Connect),
        ok("global", Farm, "pair-a", Summary("pair")),
        ok("global", Farm, "pair-b", Summary("pair")),
        no(
            "global",
            Farm,
            "pair",
            Connect,
            Refusal::UnknownFarm { farm: s("pair") },
            r#"farm node "pair" is not in the topology"#,
        ),
        no(
            "global",
            Farm,
            "pair-a",
            Summary("near"),
            Refusal::OtherFarm {
                node: s("pair-a"),
                farm: s("near"),
            },
            r#"farm node "pair-a" sent a summary for farm "near""#,
        ),
        no(
            "global",
            Farm,
            "pair-a",
            SummaryBy("pair", "pair-b"),
            Refusal::OtherNode {
                node: s("pair-a"),
                named: s("pair-b"),
            },
            r#"farm node "pair-a" sent a summary naming farm node "pair-b""#,
        ),
        no(
            "global",
            Farm,
            "near",
            SummaryBy("near", "far"),
            Refusal::OtherNode {
                node: s("near"),
                named: s("far"),
            },
            r#"farm node "near" sent a summary naming farm node "far""#,
        ),
        // an operator's certificate is for admin calls over HTTPS, never the federation's
        // QUIC connections
        no(
            "global",
            Role::Operator,
            "alice",
            Connect,
            Refusal::RoleNotAccepted {
                role: Role::Operator,
                site: Site::Global,
            },
            "an operator may not connect to a global node (admin calls go to its status port)",
        ),
        no(
            "near",
            Role::Operator,
            "alice",
            Connect,
            Refusal::RoleNotAccepted {
                role: Role::Operator,
                site: near(),
            },
            "an operator may not connect to a farm node",
        ),
        ok("pair", Agent, "p1-agent", Connect),
        ok("pair", Agent, "p1-agent", Report("p1")),
        // the protocol's limits come first, at both sites
        no(
            "global",
            Farm,
            "near",
            EmptyBatch,
            invalid_batch(),
            &invalid_batch().to_string(),
        ),
        no(
            "near",
            Agent,
            "i1-agent",
            EmptyBatch,
            invalid_batch(),
            &invalid_batch().to_string(),
        ),
    ]
}

fn invalid_batch() -> Refusal {
    Refusal::Invalid(
        Message::Reports(Vec::new())
            .validate()
            .expect_err("an empty batch is invalid")
            .to_string(),
    )
}

fn verdict(t: &Topology, site: &Site, peer: &PeerIdentity, act: Act) -> Result<(), Refusal> {
    match message(act, peer.node.as_str()) {
        None => authz::peer_may_connect(t, site, peer),
        Some(msg) => authz::message_allowed(t, site, peer, &msg),
    }
}

fn told(access: &Access, peer: &PeerIdentity, act: Act) -> Result<(), String> {
    match message(act, peer.node.as_str()) {
        None => access.authorise_peer(peer),
        Some(msg) => access.authorise_message(peer, &msg),
    }
}

#[test]
fn item6_access_rules_allow_and_refuse_as_the_table_says() {
    let t = topology();
    let shared = Arc::new(RwLock::new(Arc::new(t.clone())));
    let mut failures = Vec::new();
    for row in rows() {
        let site = site(row.site);
        let peer = PeerIdentity::new(row.role, NodeName::new(row.peer).expect("node name"));
        let what = format!(
            "{} {} at {} {:?}",
            row.role.as_str(),
            row.peer,
            row.site,
            row.act
        );
        let got = verdict(&t, &site, &peer, row.act);
        if got != row.expect {
            failures.push(format!("{what}: verdict {got:?}, want {:?}", row.expect));
        }
        let access = Access::new(shared.clone(), site);
        let text = told(&access, &peer, row.act);
        let want = if row.reason.is_empty() {
            Ok(())
        } else {
            Err(row.reason.clone())
        };
        if text != want {
            failures.push(format!("{what}: told {text:?}, want {want:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} rows wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The table covers every kind of refusal, so a rule that always allowed would fail a row.
#[test]
fn item6_every_refusal_has_a_row() {
    let kinds: std::collections::BTreeSet<&str> = rows()
        .iter()
        .filter_map(|r| r.expect.as_ref().err())
        .map(|r| match r {
            Refusal::RoleNotAccepted { .. } => "role",
            Refusal::UnknownFarm { .. } => "unknown farm",
            Refusal::AgentNotHere { .. } => "agent not here",
            Refusal::Invalid(_) => "invalid",
            Refusal::SummariesAtFarm => "summaries at farm",
            Refusal::MessageNotAccepted { .. } => "message",
            Refusal::OtherFarm { .. } => "other farm",
            Refusal::OtherNode { .. } => "other node",
            Refusal::UnknownServer { .. } => "unknown server",
            Refusal::NotAttachedHere { .. } => "not attached",
            Refusal::OtherAgent { .. } => "other agent",
            Refusal::ProbedRemotely { .. } => "remote",
        })
        .collect();
    assert_eq!(kinds.len(), 12, "kinds with a row: {kinds:?}");
}

/// A reload replaces the topology the authoriser reads: an agent removed from the file is
/// refused from then on.
#[test]
fn item6_the_rules_follow_the_topology_in_force() {
    let t = topology();
    let shared = Arc::new(RwLock::new(Arc::new(t.clone())));
    let access = Access::new(shared.clone(), near());
    let agent = PeerIdentity::new(Role::Agent, NodeName::new("i2-agent").unwrap());
    assert_eq!(access.authorise_peer(&agent), Ok(()));
    let mut without = t.clone();
    for f in without.farms.values_mut() {
        f.servers.retain(|id, _| id.as_str() != "i2");
    }
    *shared.write().unwrap() = Arc::new(without);
    assert_eq!(
        access.authorise_peer(&agent),
        Err(r#"agent "i2-agent" monitors no server of farm "near""#.to_owned())
    );
}
