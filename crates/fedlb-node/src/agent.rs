//! The agent (intrusive mode): runs the monitors of its server(s) on the server itself and
//! pushes their reports to its farm node — to every one when its farm has several — or to
//! every global node for a server attached directly (one connection each, each with its own
//! reconnects: [`crate::uplinks`]). A health change goes at once; otherwise reports are
//! heartbeats.

use std::collections::BTreeMap;
use std::sync::Arc;

use fedlb_core::{Health, Report, ServerId, ServiceId};
use fedlb_net::Role;
use fedlb_probe::Prober;
use fedlb_proto::{MAX_BATCH, Message, WireReport};
use fedlb_topology::Topology;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::{Clock, new_epoch, sleep_until};
use crate::common::{NodeError, NodeOptions, identity, known_nodes, load_tls, load_topology};
use crate::metrics::Metrics;
use crate::monitors::{MonitorSet, plan};
use crate::reload;
use crate::uplinks::{Uplinks, Upstream, global_upstreams};

/// Where an agent reports: every farm node of its farm (each gets every report), or every
/// global node.
fn upstreams(t: &Topology, node: &str) -> Result<Vec<Upstream>, NodeError> {
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
    global_upstreams(t)
}

/// Runs an agent until `shutdown` is cancelled.
pub async fn run(opts: NodeOptions, shutdown: CancellationToken) -> Result<(), NodeError> {
    crate::fds::raise_nofile_limit();
    let topology = load_topology(&opts.topology, false)?;
    let targets = upstreams(&topology, &opts.node)?;
    let tls = load_tls(&opts.certs, Role::Agent, &opts.node)?;
    let clock = Clock::start();
    let metrics = Arc::new(Metrics::new());
    metrics.set_certificate_expiry(crate::status::CertificateExpiry::of(&tls));
    let mut monitors = MonitorSet::new(Arc::new(Prober::default()), new_epoch(), true, metrics);
    let mut uplinks = Uplinks::start(tls, &targets, None, &shutdown)?;
    let mut current = targets;
    let plan0 = plan(&topology, &opts.node).map_err(NodeError::Probe)?;
    let shown: Vec<String> = current.iter().map(|(a, id)| format!("{id}@{a}")).collect();
    info!(node = %opts.node, upstreams = %shown.join(", "), monitors = plan0.len(), "agent running");
    let first = monitors.set_plan(plan0, clock.now());
    let mut sent = SentHealth::default();
    send(&uplinks, first, &clock, &mut sent);
    let mut reloads = reload::spawn(opts.topology.clone(), false, shutdown.clone());

    loop {
        let deadline = monitors.poll_timeout();
        let reports = tokio::select! {
            () = shutdown.cancelled() => break,
            ev = monitors.next() => monitors.handle(ev, clock.now()),
            link = uplinks.connected() => {
                // the link dropped what it queued while down: it gets the state of now
                let now = clock.now();
                for chunk in monitors.current_reports().chunks(MAX_BATCH) {
                    let msg = Message::Reports(
                        chunk.iter().map(|r| WireReport::from_report(r, now)).collect(),
                    );
                    uplinks.send_to(&link, &msg, true, "report");
                }
                continue;
            }
            () = sleep_until(&clock, deadline) => monitors.handle_timeout(clock.now()),
            Some(t) = reloads.recv() => {
                match (upstreams(&t, &opts.node), plan(&t, &opts.node)) {
                    (Ok(up), Ok(p)) => {
                        if up != current {
                            match uplinks.follow(&up) {
                                Ok(()) => {
                                    // a new upstream learns every health from scratch
                                    sent = SentHealth::default();
                                    current = up;
                                }
                                Err(e) => warn!(error = %e, "cannot dial the new upstreams; keeping the old links"),
                            }
                        }
                        monitors.set_plan(p, clock.now())
                    }
                    (Err(e), _) => { warn!(error = %e, "reload refused for this agent"); Vec::new() }
                    (_, Err(e)) => { warn!(error = %e, "reload refused for this agent"); Vec::new() }
                }
            }
        };
        send(&uplinks, reports, &clock, &mut sent);
    }
    uplinks.stop().await;
    info!(node = %opts.node, "agent stopped");
    Ok(())
}

/// The health last sent for each monitored instance.
type SentHealth = BTreeMap<(ServiceId, ServerId), Health>;

/// Sends reports in batches (one message carries up to [`MAX_BATCH`]). A report whose
/// health differs from the last one sent for its instance goes urgent: the farm node
/// decides a server going down before the readings queued ahead of it.
fn send(uplinks: &Uplinks, reports: Vec<Report>, clock: &Clock, sent: &mut SentHealth) {
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
            if urgent {
                uplinks.send_urgent(&msg, "report");
            } else {
                uplinks.send(&msg, "report");
            }
        }
    }
}
