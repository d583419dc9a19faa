//! The farm node (the patent's intermediate RMO): accepts its agents' reports, runs the
//! monitors of its remote servers itself, feeds `FarmState` (the local policy), and sends
//! the farm's summary to the global node — at once on change, otherwise as a heartbeat.

use std::sync::{Arc, RwLock};

use fedlb_core::{FarmId, FarmOutput, FarmState, Report};
use fedlb_net::{
    Client, ClientConfig, ClientEndpoint, Role, Server, ServerConfig, ServerEvent,
    TransportSettings, bind_udp,
};
use fedlb_probe::Prober;
use fedlb_proto::{MAX_BATCH, Message, PROTOCOL_VERSION, WireSummary};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::authz::{Access, Site};
use crate::clock::{Clock, new_epoch, sleep_until};
use crate::common::{
    NodeError, NodeOptions, SharedTopology, StatusRequest, earliest, identity, known_nodes,
    load_tls, load_topology, own_address_changed, peer_event, status_fn, unspecified_for,
};
use crate::metrics::{Metrics, labels};
use crate::monitors::{MonitorSet, plan};
use crate::{http, reload, status};

/// Runs a farm node until `shutdown` is cancelled.
pub async fn run(opts: NodeOptions, shutdown: CancellationToken) -> Result<(), NodeError> {
    crate::fds::raise_nofile_limit();
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
    let authoriser = Access::new(shared.clone(), Site::Farm(farm_id.clone()));
    let socket = bind_udp(farm.listen).map_err(NodeError::Net)?;
    let (server, mut events) = Server::start::<Message, _>(
        socket,
        &tls,
        ServerConfig::new(PROTOCOL_VERSION),
        authoriser,
        shutdown.clone(),
    )?;

    // the global node
    let mut endpoint = ClientEndpoint::new(
        bind_udp(unspecified_for(topology.global.listen)).map_err(NodeError::Net)?,
        &tls,
        TransportSettings::default(),
    )?;
    let mut global_at = (topology.global.listen, topology.global.name.clone());
    let mut upstream: Client<Message> = Client::start(
        &endpoint,
        ClientConfig::new(
            global_at.0,
            identity(Role::Global, &global_at.1)?,
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
    // the core holds decisions back after a start or a pause until every member is heard
    state.set_warmup_window(farm.heartbeat.liveness().stale_after);
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

    loop {
        let deadline = earliest(state.poll_timeout(clock.now()), monitors.poll_timeout());
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(ev) = events.recv() => match ev {
                ServerEvent::Message { msg: Message::Reports(rs), peer, .. } => {
                    metrics.messages_received.get_or_create(&labels(&[("from", "agent")])).inc();
                    let now = clock.now();
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
                        let me = &t.farms[&farm_id];
                        own_address_changed(&format!("farm \"{farm_id}\": listen"), farm.listen, me.listen);
                        own_address_changed(&format!("farm \"{farm_id}\": status"), farm.status, me.status);
                        // the global node moved (or was renamed): dial it where it is now
                        let global_now = (t.global.listen, t.global.name.clone());
                        if global_now != global_at {
                            match follow_global(&tls, &endpoint, &global_now, &shutdown) {
                                Ok((new_endpoint, client)) => {
                                    info!(from = %global_at.0, to = %global_now.0, global = %global_now.1, "global node address changed; reconnecting");
                                    if let Some(e) = new_endpoint {
                                        endpoint = e;
                                    }
                                    // dropping the old client closes its connection
                                    upstream = client;
                                    global_at = global_now;
                                }
                                Err(e) => error!(error = %e, to = %global_now.0, "cannot dial the global node's new address; keeping the old one"),
                            }
                        }
                        match plan(&t, &opts.node) {
                            Ok(p) => {
                                let reports = monitors.set_plan(p, now);
                                feed(&mut state, &reports, &clock, &metrics);
                            }
                            Err(e) => warn!(error = %e, "new probes refused; keeping the old ones"),
                        }
                        state.set_config(config, now);
                        if let Some(f) = t.farms.get(&farm_id) {
                            state.set_warmup_window(f.heartbeat.liveness().stale_after);
                        }
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

/// A client for the global node at `to`; a new endpoint too when the address family changed.
fn follow_global(
    tls: &fedlb_net::NodeTls,
    endpoint: &ClientEndpoint,
    to: &(std::net::SocketAddr, String),
    shutdown: &CancellationToken,
) -> Result<(Option<ClientEndpoint>, Client<Message>), NodeError> {
    let server = identity(Role::Global, &to.1)?;
    let fresh = if endpoint
        .local_addr()
        .is_some_and(|a| a.is_ipv4() == to.0.is_ipv4())
    {
        None
    } else {
        Some(ClientEndpoint::new(
            bind_udp(unspecified_for(to.0)).map_err(NodeError::Net)?,
            tls,
            TransportSettings::default(),
        )?)
    };
    let client = Client::start(
        fresh.as_ref().unwrap_or(endpoint),
        ClientConfig::new(to.0, server, PROTOCOL_VERSION),
        shutdown.clone(),
    );
    Ok((fresh, client))
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
