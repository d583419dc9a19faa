//! The agent (intrusive mode): runs the monitors of its server(s) on the server itself and
//! pushes their reports to its farm node — to every one, one connection each, when its farm
//! has several — or to the global node for a server attached directly. A health change goes at once; otherwise reports are heartbeats.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use fedlb_core::{Health, Report, ServerId, ServiceId};
use fedlb_net::{
    Client, ClientConfig, ClientEndpoint, PeerIdentity, Role, TransportSettings, bind_udp,
};
use fedlb_probe::Prober;
use fedlb_proto::{MAX_BATCH, Message, PROTOCOL_VERSION, WireReport};
use fedlb_topology::Topology;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::{Clock, new_epoch, sleep_until};
use crate::common::{
    NodeError, NodeOptions, identity, known_nodes, load_tls, load_topology, unspecified_for,
};
use crate::metrics::Metrics;
use crate::monitors::{MonitorSet, plan};
use crate::reload;

/// Where an agent reports: every farm node of its farm (a farm may have several; each gets
/// every report), or the global node for a server attached directly.
fn upstreams(t: &Topology, node: &str) -> Result<Vec<(SocketAddr, PeerIdentity)>, NodeError> {
    let info = t
        .node(node)
        .filter(|n| n.role == fedlb_topology::Role::Agent)
        .ok_or_else(|| NodeError::UnknownNode {
            file: t.file.clone(),
            role: "agent",
            node: node.to_owned(),
            known: known_nodes(t),
        })?;
    let to = info.reports_to.unwrap_or_default();
    if let Some(farm) = t.farms.values().find(|f| f.id.as_str() == to) {
        return farm
            .nodes
            .iter()
            .map(|n| Ok((n.listen, identity(Role::Farm, &n.name)?)))
            .collect();
    }
    Ok(vec![(
        t.global.listen,
        identity(Role::Global, &t.global.name)?,
    )])
}

/// One upstream connection with its own reconnects: a dead upstream never delays reports
/// to another (each client queues on its own, dropping its oldest when full).
struct Upstream {
    at: (SocketAddr, PeerIdentity),
    client: Client<Message>,
    sent: SentHealth,
}

/// Runs an agent until `shutdown` is cancelled.
pub async fn run(opts: NodeOptions, shutdown: CancellationToken) -> Result<(), NodeError> {
    crate::fds::raise_nofile_limit();
    let topology = load_topology(&opts.topology, false)?;
    let targets = upstreams(&topology, &opts.node)?;
    let tls = load_tls(&opts.certs, Role::Agent, &opts.node)?;
    let family = targets[0].0;
    let mut endpoint = ClientEndpoint::new(
        bind_udp(unspecified_for(family)).map_err(NodeError::Net)?,
        &tls,
        TransportSettings::default(),
    )?;
    let clock = Clock::start();
    let metrics = Arc::new(Metrics::new());
    metrics.set_certificate_expiry(crate::status::CertificateExpiry::of(&tls));
    let mut monitors = MonitorSet::new(Arc::new(Prober::default()), new_epoch(), true, metrics);
    let mut ups: Vec<Upstream> = targets
        .into_iter()
        .map(|at| start_upstream(&endpoint, at, &shutdown))
        .collect();
    let plan0 = plan(&topology, &opts.node).map_err(NodeError::Probe)?;
    for u in &ups {
        info!(node = %opts.node, upstream = %u.at.1, addr = %u.at.0, monitors = plan0.len(), "agent running");
    }
    let first = monitors.set_plan(plan0, clock.now());
    send(&mut ups, first, &clock);
    let mut reloads = reload::spawn(opts.topology.clone(), false, shutdown.clone());

    loop {
        let deadline = monitors.poll_timeout();
        let reports = tokio::select! {
            () = shutdown.cancelled() => break,
            ev = monitors.next() => monitors.handle(ev, clock.now()),
            () = sleep_until(&clock, deadline) => monitors.handle_timeout(clock.now()),
            Some(t) = reloads.recv() => {
                match (upstreams(&t, &opts.node), plan(&t, &opts.node)) {
                    (Ok(targets), Ok(p)) => {
                        let now: Vec<_> = ups.iter().map(|u| u.at.clone()).collect();
                        if targets != now {
                            if let Some(at) = targets.first()
                                && endpoint.local_addr().is_some_and(|a| a.is_ipv4() != at.0.is_ipv4())
                            {
                                match bind_udp(unspecified_for(at.0)).map_err(NodeError::Net).and_then(|s| Ok(ClientEndpoint::new(s, &tls, TransportSettings::default())?)) {
                                    Ok(e) => endpoint = e,
                                    Err(e) => warn!(error = %e, "no socket for the new upstream's address family"),
                                }
                            }
                            // an upstream that stays keeps its connection; dropping a client
                            // closes its connection
                            let mut old = std::mem::take(&mut ups);
                            for at in targets {
                                match old.iter().position(|u| u.at == at) {
                                    Some(i) => ups.push(old.swap_remove(i)),
                                    None => {
                                        info!(upstream = %at.1, addr = %at.0, "upstream changed; connecting");
                                        ups.push(start_upstream(&endpoint, at, &shutdown));
                                    }
                                }
                            }
                        }
                        monitors.set_plan(p, clock.now())
                    }
                    (Err(e), _) => { warn!(error = %e, "reload refused for this agent"); Vec::new() }
                    (_, Err(e)) => { warn!(error = %e, "reload refused for this agent"); Vec::new() }
                }
            }
        };
        send(&mut ups, reports, &clock);
    }
    for u in ups {
        u.client.stop().await;
    }
    info!(node = %opts.node, "agent stopped");
    Ok(())
}

fn start_upstream(
    endpoint: &ClientEndpoint,
    at: (SocketAddr, PeerIdentity),
    shutdown: &CancellationToken,
) -> Upstream {
    let client = Client::start(
        endpoint,
        ClientConfig::new(at.0, at.1.clone(), PROTOCOL_VERSION),
        shutdown.clone(),
    );
    Upstream {
        at,
        client,
        sent: SentHealth::default(),
    }
}

/// The health last sent for each monitored instance.
type SentHealth = BTreeMap<(ServiceId, ServerId), Health>;

/// Sends reports to every upstream.
fn send(ups: &mut [Upstream], reports: Vec<Report>, clock: &Clock) {
    for u in ups {
        send_to(&u.client, reports.clone(), clock, &mut u.sent);
    }
}

/// Sends reports in batches (one message carries up to [`MAX_BATCH`]). A report whose
/// health differs from the last one sent for its instance goes urgent: the farm node
/// decides a server going down before the readings queued ahead of it.
fn send_to(client: &Client<Message>, reports: Vec<Report>, clock: &Clock, sent: &mut SentHealth) {
    let now = clock.now();
    let (urgent, routine): (Vec<Report>, Vec<Report>) = reports.into_iter().partition(|r| {
        let key = (r.service.clone(), r.server.clone());
        sent.insert(key, r.health) != Some(r.health)
    });
    for (reports, urgent) in [(urgent, true), (routine, false)] {
        for chunk in reports.chunks(MAX_BATCH) {
            let msg = Message::Reports(
                chunk
                    .iter()
                    .map(|r| WireReport::from_report(r, now))
                    .collect(),
            );
            let queued = if urgent {
                client.send_urgent(&msg)
            } else {
                client.send(&msg)
            };
            if let Err(e) = queued {
                warn!(error = %e, "report not sent");
            }
        }
    }
}
