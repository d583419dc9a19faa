//! The farm node (the patent's intermediate RMO): accepts its agents' reports, runs the
//! monitors of its remote servers itself, feeds `FarmState` (the local policy), and sends
//! the farm's summary to the global node — at once on change, otherwise as a heartbeat.

use std::sync::{Arc, RwLock};

use fedlb_core::{FarmId, FarmOutput, FarmState, Report};
use fedlb_net::{
    Client, ClientConfig, ClientEndpoint, FnAuthoriser, PeerIdentity, Role, Server, ServerConfig,
    ServerEvent, TransportSettings, bind_udp,
};
use fedlb_probe::Prober;
use fedlb_proto::{MAX_BATCH, Message, PROTOCOL_VERSION, WireSummary};
use fedlb_topology::{Mode, Topology};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::agent::unspecified_for;
use crate::clock::{Clock, new_epoch, sleep_until};
use crate::common::{
    NodeError, NodeOptions, SharedTopology, StatusRequest, identity, known_nodes, load_tls,
    load_topology, peer_event, status_fn,
};
use crate::metrics::{Metrics, labels};
use crate::monitors::{MonitorSet, plan};
use crate::{http, reload, status};

/// Whether `peer` may report `report` to farm `farm`: only the agent the topology names
/// for that server, and only for servers of this farm.
pub(crate) fn agent_may_report(
    t: &Topology,
    farm: Option<&FarmId>,
    peer: &PeerIdentity,
    report: &str,
) -> Result<(), String> {
    let (server, attachment) = t
        .server(&report.into())
        .ok_or_else(|| format!("reports for unknown server \"{report}\""))?;
    let here = match (&attachment, farm) {
        (fedlb_topology::Attachment::Farm(f), Some(me)) => f == me,
        (fedlb_topology::Attachment::Global, None) => true,
        _ => false,
    };
    if !here {
        return Err(format!(
            "reports for server \"{report}\", which is not attached here"
        ));
    }
    match &server.mode {
        Mode::Intrusive { agent } if agent == peer.node.as_str() => Ok(()),
        Mode::Intrusive { agent } => Err(format!(
            "reports for server \"{report}\", whose agent is \"{agent}\""
        )),
        Mode::Remote => Err(format!(
            "reports for server \"{report}\", which is probed remotely"
        )),
    }
}

/// Whether an agent named `name` reports here.
pub(crate) fn agent_belongs(t: &Topology, farm: Option<&FarmId>, name: &str) -> bool {
    t.servers().any(|(s, a)| {
        let here = match (&a, farm) {
            (fedlb_topology::Attachment::Farm(f), Some(me)) => f == me,
            (fedlb_topology::Attachment::Global, None) => true,
            _ => false,
        };
        here && matches!(&s.mode, Mode::Intrusive { agent } if agent == name)
    })
}

/// Runs a farm node until `shutdown` is cancelled.
pub async fn run(opts: NodeOptions, shutdown: CancellationToken) -> Result<(), NodeError> {
    let topology = load_topology(&opts.topology, false)?;
    let farm_id = FarmId::from(opts.node.as_str());
    let Some(farm) = topology.farms.get(&farm_id).cloned() else {
        return Err(NodeError::UnknownNode {
            file: topology.file.clone(),
            role: "farm",
            node: opts.node.clone(),
            known: known_nodes(&topology),
        });
    };
    let tls = load_tls(&opts.certs, Role::Farm, &opts.node)?;
    let shared: SharedTopology = Arc::new(RwLock::new(Arc::new(topology.clone())));
    let metrics = Arc::new(Metrics::new());
    let certificates = status::CertificateExpiry::of(&tls);
    metrics.set_certificate_expiry(certificates);

    // agents connect here
    let authoriser = {
        let (t1, t2, f1, f2) = (
            shared.clone(),
            shared.clone(),
            farm_id.clone(),
            farm_id.clone(),
        );
        FnAuthoriser {
            peer: move |peer: &PeerIdentity| {
                let t = t1.read().expect("topology lock").clone();
                match peer.role {
                    Role::Agent if agent_belongs(&t, Some(&f1), peer.node.as_str()) => Ok(()),
                    Role::Agent => Err(format!(
                        "agent \"{}\" monitors no server of farm \"{f1}\"",
                        peer.node
                    )),
                    other => Err(format!(
                        "a {} may not connect to a farm node",
                        other.as_str()
                    )),
                }
            },
            message: move |peer: &PeerIdentity, msg: &Message| {
                msg.validate().map_err(|e| e.to_string())?;
                let t = t2.read().expect("topology lock").clone();
                match msg {
                    Message::Reports(rs) => rs
                        .iter()
                        .try_for_each(|r| agent_may_report(&t, Some(&f2), peer, &r.server)),
                    Message::Summaries(_) => {
                        Err("summaries are not taken by a farm node".to_owned())
                    }
                }
            },
        }
    };
    let socket = bind_udp(farm.listen).map_err(NodeError::Net)?;
    let (server, mut events) = Server::start::<Message, _>(
        socket,
        &tls,
        ServerConfig::new(PROTOCOL_VERSION),
        authoriser,
        shutdown.clone(),
    )?;

    // the global node
    let endpoint = ClientEndpoint::new(
        bind_udp(unspecified_for(topology.global.listen)).map_err(NodeError::Net)?,
        &tls,
        TransportSettings::default(),
    )?;
    let upstream: Client<Message> = Client::start(
        &endpoint,
        ClientConfig::new(
            topology.global.listen,
            identity(Role::Global, &topology.global.name)?,
            PROTOCOL_VERSION,
        ),
        shutdown.clone(),
    );

    // status endpoint
    let (status_tx, mut status_rx) = mpsc::channel::<StatusRequest>(16);
    let listener = tokio::net::TcpListener::bind(farm.status)
        .await
        .map_err(|source| NodeError::Bind {
            addr: farm.status,
            source,
        })?;
    let http_task = tokio::spawn(http::serve(
        listener,
        status_fn(status_tx),
        metrics.clone(),
        shutdown.clone().cancelled_owned(),
    ));

    let clock = Clock::start();
    let config = topology.farm_config(&farm_id).expect("the farm exists");
    let mut state = FarmState::new(config, new_epoch(), rand::random(), clock.now());
    state.set_warmup(clock.now() + farm.heartbeat.liveness().stale_after);
    let mut monitors = MonitorSet::new(
        Arc::new(Prober::default()),
        new_epoch(),
        false,
        metrics.clone(),
    );
    let own = monitors.set_plan(
        plan(&topology, &opts.node).map_err(NodeError::Probe)?,
        clock.now(),
    );
    feed(&mut state, &own, &clock, &metrics);
    let mut reloads = reload::spawn(opts.topology.clone(), false, shutdown.clone());
    info!(farm = %farm_id, quic = %server.local_addr(), status = %farm.status, "farm node running");

    let mut agent_heard = false;
    loop {
        let deadline = earliest(state.poll_timeout(clock.now()), monitors.poll_timeout());
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(ev) = events.recv() => match ev {
                ServerEvent::Message { msg: Message::Reports(rs), peer, .. } => {
                    metrics.messages_received.get_or_create(&labels(&[("from", "agent")])).inc();
                    let now = clock.now();
                    // agents come back after a restart only when their transport notices:
                    // count the warm-up again from the first one heard (as the global node)
                    if !agent_heard {
                        agent_heard = true;
                        state.set_warmup(now + farm.heartbeat.liveness().stale_after);
                    }
                    for r in &rs {
                        let report = r.to_report(now);
                        if let Err(e) = state.handle_report(&report, now) {
                            debug!(%peer, error = %e, "report not taken");
                        }
                    }
                }
                other => peer_event(&other, &metrics),
            },
            ev = monitors.next() => {
                let reports = monitors.handle(ev, clock.now());
                feed(&mut state, &reports, &clock, &metrics);
            }
            () = sleep_until(&clock, deadline) => {
                let now = clock.now();
                let reports = monitors.handle_timeout(now);
                feed(&mut state, &reports, &clock, &metrics);
                state.handle_timeout(now);
            }
            Some(reply) = status_rx.recv() => {
                let mut s = status::farm_status(&opts.node, &state, clock.uptime(), clock.now());
                s.certificates = Some(certificates);
                let _ = reply.send(s);
            }
            Some(t) = reloads.recv() => {
                match t.farm_config(&farm_id) {
                    Some(config) => {
                        let now = clock.now();
                        match plan(&t, &opts.node) {
                            Ok(p) => {
                                let reports = monitors.set_plan(p, now);
                                feed(&mut state, &reports, &clock, &metrics);
                            }
                            Err(e) => warn!(error = %e, "new probes refused; keeping the old ones"),
                        }
                        state.set_config(config, now);
                        *shared.write().expect("topology lock") = Arc::new(t);
                        info!(farm = %farm_id, "new topology in force");
                    }
                    None => warn!(farm = %farm_id, "the new topology has no such farm; keeping the old one"),
                }
            }
        }
        // carry out what the core decided
        let now = clock.now();
        let mut summaries = Vec::new();
        while let Some(out) = state.poll_output() {
            match out {
                FarmOutput::Summary(s) => summaries.push(WireSummary::from_summary(&s, now)),
                FarmOutput::Decision(service, d) => {
                    metrics
                        .decisions
                        .get_or_create(&labels(&[("service", service.as_str()), ("tier", "local")]))
                        .inc();
                    info!(farm = %farm_id, %service, answer = ?d.addresses, degraded = d.degraded, why = %d.why, "local decision");
                }
            }
        }
        for chunk in summaries.chunks(MAX_BATCH) {
            if let Err(e) = upstream.send(&Message::Summaries(chunk.to_vec())) {
                warn!(error = %e, "summary not sent");
            }
        }
    }
    upstream.stop().await;
    let _ = http_task.await;
    server.closed().await;
    info!(farm = %farm_id, "farm node stopped");
    Ok(())
}

fn feed(state: &mut FarmState, reports: &[Report], clock: &Clock, metrics: &Metrics) {
    let now = clock.now();
    for r in reports {
        if let Err(e) = state.handle_report(r, now) {
            metrics
                .refused
                .get_or_create(&labels(&[("what", "report")]))
                .inc();
            warn!(error = %e, "own monitor's report not taken");
        }
    }
}

pub(crate) fn earliest(
    a: Option<fedlb_core::Timestamp>,
    b: Option<fedlb_core::Timestamp>,
) -> Option<fedlb_core::Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
