//! The global node (the patent's RMO): accepts farm nodes' summaries and the reports of
//! agents on directly attached servers, runs the monitors of directly attached remote
//! servers, feeds `GlobalState` (the global policy), and hands every answer change to the
//! publisher. With `embedded` DNS it also runs the authoritative server.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use fedlb_core::{Decision, GlobalOutput, GlobalState, Publish, Report, ServiceId};
use fedlb_dns::{
    DesiredZone, EmbeddedConfig, EmbeddedServer, Name, Publisher, RecordSet, Rfc2136Config,
    Rfc2136Publisher, TsigAlgorithm, TsigKey,
};
use fedlb_net::{FnAuthoriser, PeerIdentity, Role, Server, ServerConfig, ServerEvent, bind_udp};
use fedlb_probe::Prober;
use fedlb_proto::{Message, PROTOCOL_VERSION};
use fedlb_topology::{DnsServer, Topology};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::clock::{Clock, new_epoch, sleep_until};
use crate::common::{
    NodeError, NodeOptions, SharedTopology, StatusRequest, load_tls, load_topology,
    own_address_changed, peer_event, status_fn,
};
use crate::farm::{agent_belongs, agent_may_report, earliest};
use crate::metrics::{Metrics, labels};
use crate::monitors::{MonitorSet, plan};
use crate::status::{GlobalExtras, PublishStatus};
use crate::{http, reload, status};

/// The outcome of one publish pass, for status and metrics.
#[derive(Debug)]
struct Published {
    /// `dns`, `file` or `command`.
    publisher: &'static str,
    ok: bool,
    /// What each DNS primary serves after the pass.
    primaries: Vec<fedlb_dns::PrimaryView>,
}

/// Runs the global node until `shutdown` is cancelled.
pub async fn run(opts: NodeOptions, shutdown: CancellationToken) -> Result<(), NodeError> {
    crate::fds::raise_nofile_limit();
    let topology = load_topology(&opts.topology, true)?;
    if opts.node != topology.global.name {
        return Err(NodeError::UnknownNode {
            file: topology.file.clone(),
            role: "global node",
            node: opts.node.clone(),
            known: topology.global.name.clone(),
        });
    }
    let tls = load_tls(&opts.certs, Role::Global, &opts.node)?;
    let shared: SharedTopology = Arc::new(RwLock::new(Arc::new(topology.clone())));
    let metrics = Arc::new(Metrics::new());
    let certificates = status::CertificateExpiry::of(&tls);
    metrics.set_certificate_expiry(certificates);

    let authoriser = {
        let (t1, t2) = (shared.clone(), shared.clone());
        FnAuthoriser {
            peer: move |peer: &PeerIdentity| {
                let t = t1.read().expect("topology lock").clone();
                match peer.role {
                    Role::Farm if t.farms.contains_key(&peer.node.as_str().into()) => Ok(()),
                    Role::Farm => Err(format!("farm \"{}\" is not in the topology", peer.node)),
                    Role::Agent if agent_belongs(&t, None, peer.node.as_str()) => Ok(()),
                    Role::Agent => Err(format!(
                        "agent \"{}\" monitors no server attached to the global node",
                        peer.node
                    )),
                    Role::Global => {
                        Err("a global node may not connect to a global node".to_owned())
                    }
                }
            },
            message: move |peer: &PeerIdentity, msg: &Message| {
                msg.validate().map_err(|e| e.to_string())?;
                let t = t2.read().expect("topology lock").clone();
                match (peer.role, msg) {
                    (Role::Farm, Message::Summaries(ss)) => ss.iter().try_for_each(|s| {
                        if s.farm == peer.node.as_str() {
                            Ok(())
                        } else {
                            Err(format!(
                                "farm node \"{}\" sent a summary for farm \"{}\"",
                                peer.node, s.farm
                            ))
                        }
                    }),
                    (Role::Agent, Message::Reports(rs)) => rs
                        .iter()
                        .try_for_each(|r| agent_may_report(&t, None, peer, &r.server)),
                    (role, _) => Err(format!(
                        "a {} may not send that message here",
                        role.as_str()
                    )),
                }
            },
        }
    };
    let (server, mut events) = Server::start::<Message, _>(
        bind_udp(topology.global.listen).map_err(NodeError::Net)?,
        &tls,
        ServerConfig::new(PROTOCOL_VERSION),
        authoriser,
        shutdown.clone(),
    )?;

    // DNS: the embedded server (if asked) and the publisher
    let (publisher, embedded) = start_dns(&topology).await?;
    let zone =
        Name::from_ascii(&topology.dns.zone).map_err(|e| NodeError::Probe(format!("zone: {e}")))?;
    let (desired_tx, desired_rx) = watch::channel(DesiredZone::for_zone(&zone));
    let (published_tx, mut published_rx) = mpsc::channel::<Published>(16);
    // the DNS publisher, plus the files and the command the topology may ask for (the
    // patent's "specialized objects"): each follows the same answers on its own
    let mut publisher_tasks = vec![tokio::spawn(publish_loop(
        "dns",
        publisher,
        desired_rx.clone(),
        published_tx.clone(),
        shutdown.clone(),
    ))];
    for (kind, extra) in extra_publishers(&topology, &zone) {
        publisher_tasks.push(tokio::spawn(publish_loop(
            kind,
            extra,
            desired_rx.clone(),
            published_tx.clone(),
            shutdown.clone(),
        )));
    }
    drop((desired_rx, published_tx));
    let embedded_task = embedded.map(|e| {
        let token = shutdown.clone();
        tokio::spawn(async move {
            if let Err(err) = e.serve(token.cancelled_owned()).await {
                error!(error = %err, "embedded dns server stopped");
            }
        })
    });

    // status endpoint
    let (status_tx, mut status_rx) = mpsc::channel::<StatusRequest>(16);
    let listener = tokio::net::TcpListener::bind(topology.global.status)
        .await
        .map_err(|source| NodeError::Bind {
            addr: topology.global.status,
            source,
        })?;
    let http_task = tokio::spawn(http::serve(
        listener,
        status_fn(status_tx),
        metrics.clone(),
        shutdown.clone().cancelled_owned(),
    ));

    let clock = Clock::start();
    let mut state = GlobalState::new(topology.global_config(), rand::random());
    // the core holds decisions back after a start or a pause until every member is heard
    state.set_warmup_window(topology.heartbeat.liveness().stale_after);
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
    feed(&mut state, &own, &clock);
    let mut extras = GlobalExtras {
        fqdns: fqdns(&topology),
        ..GlobalExtras::default()
    };
    let mut decisions: BTreeMap<ServiceId, Decision> = BTreeMap::new();
    let mut current = Arc::new(topology);
    let mut reloads = reload::spawn(opts.topology.clone(), true, shutdown.clone());
    info!(node = %opts.node, quic = %server.local_addr(), status = %current.global.status, zone = %zone, "global node running");

    // the addresses this node is bound to; a reload does not move them
    let bound = (current.global.listen, current.global.status);
    // what the DNS primaries serve after the last publish pass, and when it ended
    let mut dns_primaries: Option<(Vec<fedlb_dns::PrimaryView>, fedlb_core::Timestamp)> = None;
    // QUIC's RTT estimate to each farm node feeds "closest by rtt"
    let mut rtt_tick = tokio::time::interval(current.heartbeat.interval);
    loop {
        let deadline = earliest(state.poll_timeout(clock.now()), monitors.poll_timeout());
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = rtt_tick.tick() => {
                let now = clock.now();
                for (peer, rtt) in server.peer_rtts() {
                    if peer.role == Role::Farm {
                        state.handle_rtt(&peer.node.as_str().into(), rtt, now);
                    }
                }
            }
            Some(ev) = events.recv() => {
                let now = clock.now();
                match ev {
                    ServerEvent::Message { msg: Message::Summaries(ss), peer, .. } => {
                        metrics.messages_received.get_or_create(&labels(&[("from", "farm")])).inc();
                        for s in &ss {
                            let summary = s.to_summary(now);
                            match state.handle_summary(&summary, now) {
                                Ok(()) => {
                                    extras.summaries.insert((summary.service.clone(), summary.farm.clone()), (summary, now));
                                }
                                Err(e) => debug!(%peer, error = %e, "summary not taken"),
                            }
                        }
                    }
                    ServerEvent::Message { msg: Message::Reports(rs), peer, .. } => {
                        metrics.messages_received.get_or_create(&labels(&[("from", "agent")])).inc();
                        for r in &rs {
                            if let Err(e) = state.handle_report(&r.to_report(now), now) {
                                debug!(%peer, error = %e, "report not taken");
                            }
                        }
                    }
                    other => peer_event(&other, &metrics),
                }
            }
            ev = monitors.next() => {
                let reports = monitors.handle(ev, clock.now());
                feed(&mut state, &reports, &clock);
            }
            () = sleep_until(&clock, deadline) => {
                let now = clock.now();
                let reports = monitors.handle_timeout(now);
                feed(&mut state, &reports, &clock);
                state.handle_timeout(now);
            }
            Some(p) = published_rx.recv() => {
                metrics
                    .publishes
                    .get_or_create(&labels(&[("publisher", p.publisher), ("result", if p.ok { "ok" } else { "error" })]))
                    .inc();
                if p.publisher == "dns" {
                    dns_primaries = Some((p.primaries, clock.now()));
                }
            }
            Some(reply) = status_rx.recv() => {
                extras.published = publish_statuses(&extras.fqdns, &desired_tx.borrow(), dns_primaries.as_ref(), clock.now());
                let mut s = status::global_status(&opts.node, &state, &extras, clock.uptime(), clock.now());
                s.certificates = Some(certificates);
                let _ = reply.send(s);
            }
            Some(t) = reloads.recv() => {
                let now = clock.now();
                match plan(&t, &opts.node) {
                    Ok(p) => {
                        let reports = monitors.set_plan(p, now);
                        feed(&mut state, &reports, &clock);
                    }
                    Err(e) => warn!(error = %e, "new probes refused; keeping the old ones"),
                }
                own_address_changed("global.listen", bound.0, t.global.listen);
                own_address_changed("global.status", bound.1, t.global.status);
                if t.dns != current.dns {
                    warn!("dns settings changed; they take effect at the next restart of the global node");
                }
                state.set_config(t.global_config(), now);
                state.set_warmup_window(t.heartbeat.liveness().stale_after);
                // names may have moved: the publisher diffs, so an unchanged zone costs nothing
                desired_tx.send_replace(desired_zone(&zone, &t, state.published()));
                extras.fqdns = fqdns(&t);
                extras.summaries.retain(|(_, farm), _| t.farms.contains_key(farm));
                *shared.write().expect("topology lock") = Arc::new(t.clone());
                current = Arc::new(t);
                info!("new topology in force");
            }
        }
        // carry out what the core decided
        let mut changed = false;
        while let Some(GlobalOutput::Publish(p)) = state.poll_output() {
            let (service, d) = (&p.service, &p.decision);
            let moved = decisions
                .get(service)
                .is_none_or(|old| old.addresses != d.addresses);
            if moved {
                metrics
                    .decisions
                    .get_or_create(&labels(&[
                        ("service", service.as_str()),
                        ("tier", "global"),
                    ]))
                    .inc();
                info!(%service, answer = ?d.addresses, ttl = p.ttl, degraded = d.degraded, why = %d.why, "global decision");
            } else {
                debug!(%service, ttl = p.ttl, "derived ttl changed");
            }
            decisions.insert(service.clone(), d.clone());
            changed = true;
        }
        if changed {
            let desired = desired_zone(&zone, &current, state.published());
            desired_tx.send_replace(desired);
        }
        // degraded: answering fail-static, or DNS behind the decision with updates failing
        let published = publish_statuses(
            &extras.fqdns,
            &desired_tx.borrow(),
            dns_primaries.as_ref(),
            clock.now(),
        );
        let degraded = decisions
            .iter()
            .filter(|(service, d)| {
                d.degraded || published.get(*service).is_some_and(|p| p.degraded)
            })
            .count();
        metrics.degraded_services.set(degraded as i64);
    }
    for task in publisher_tasks {
        let _ = task.await;
    }
    if let Some(t) = embedded_task {
        let _ = t.await;
    }
    let _ = http_task.await;
    server.closed().await;
    info!(node = %opts.node, "global node stopped");
    Ok(())
}

/// What DNS serves for each service next to what the decisions want (`null` for a service
/// before the first publish pass).
fn publish_statuses(
    fqdns: &BTreeMap<ServiceId, String>,
    desired: &DesiredZone,
    primaries: Option<&(Vec<fedlb_dns::PrimaryView>, fedlb_core::Timestamp)>,
    now: fedlb_core::Timestamp,
) -> BTreeMap<ServiceId, PublishStatus> {
    let Some((primaries, at)) = primaries else {
        return BTreeMap::new();
    };
    fqdns
        .iter()
        .filter_map(|(service, fqdn)| {
            let name = fedlb_dns::fqdn(fqdn).ok()?;
            let age = (now - *at).as_secs_f64();
            Some((
                service.clone(),
                PublishStatus::new(
                    &name,
                    desired.get(&name),
                    primaries,
                    Some((age * 1000.0).round() / 1000.0),
                ),
            ))
        })
        .collect()
}

fn feed(state: &mut GlobalState, reports: &[Report], clock: &Clock) {
    let now = clock.now();
    for r in reports {
        if let Err(e) = state.handle_report(r, now) {
            warn!(error = %e, "own monitor's report not taken");
        }
    }
}

fn fqdns(t: &Topology) -> BTreeMap<ServiceId, String> {
    t.services
        .iter()
        .map(|(id, s)| (id.clone(), s.fqdn.clone()))
        .collect()
}

/// The answers to publish: every decided service under its FQDN, with the TTL the core
/// chose for it.
fn desired_zone(
    zone: &Name,
    t: &Topology,
    published: &BTreeMap<ServiceId, Publish>,
) -> DesiredZone {
    let mut desired = DesiredZone::for_zone(zone);
    for (service, p) in published {
        let Some(svc) = t.services.get(service) else {
            continue;
        };
        match RecordSet::new(&svc.fqdn, p.ttl) {
            Ok(set) => desired.insert(set.with_addrs(p.decision.addresses.iter().copied())),
            Err(e) => warn!(%service, error = %e, "cannot publish this name"),
        }
    }
    desired
}

/// Starts the embedded DNS server if the topology asks for it, and builds the publisher.
async fn start_dns(t: &Topology) -> Result<(Publisher, Option<EmbeddedServer>), NodeError> {
    let zone = Name::from_ascii(&t.dns.zone)
        .map_err(|e| NodeError::Probe(format!("zone {}: {e}", t.dns.zone)))?;
    let key = t.dns.tsig.clone();
    match &t.dns.server {
        DnsServer::Rfc2136 { primaries } => {
            let Some(key) = key else {
                return Err(NodeError::Probe(format!(
                    "{}: dns: updates to {:?} need a tsig key",
                    t.file, primaries
                )));
            };
            let mut config = Rfc2136Config::new(zone, primaries.clone(), key);
            config.reconcile_interval = reconcile_interval(t.dns.reconcile);
            let publisher = Rfc2136Publisher::new(config)?;
            Ok((Publisher::Rfc2136(publisher), None))
        }
        DnsServer::Embedded { listen, state_dir } => {
            // The embedded server and this node share a key; without one in the topology,
            // a fresh random key is made for this run.
            let key = match key {
                Some(k) => k,
                None => {
                    let secret: [u8; 32] = rand::random();
                    TsigKey::new(
                        "fedlb-embedded.",
                        TsigAlgorithm::HmacSha256,
                        secret.to_vec(),
                    )
                    .map_err(fedlb_dns::Error::from)?
                }
            };
            let server = EmbeddedServer::start(EmbeddedConfig::new(
                zone.clone(),
                *listen,
                state_dir,
                vec![key.clone()],
            ))
            .await?;
            let mut config = Rfc2136Config::new(zone, vec![server.local_addr()], key);
            config.reconcile_interval = reconcile_interval(t.dns.reconcile);
            info!(addr = %server.local_addr(), dir = %state_dir.display(), "embedded dns server running");
            Ok((
                Publisher::Rfc2136(Rfc2136Publisher::new(config)?),
                Some(server),
            ))
        }
    }
}

/// How often the publisher re-reads the DNS server to repair drift: `default`, unless the
/// environment variable `FEDLB_DNS_RECONCILE` gives a number of seconds (`2`, `0.5`) — for
/// tests and demos that change records by hand and cannot wait a minute for the repair.
fn reconcile_interval(default: Duration) -> Duration {
    std::env::var("FEDLB_DNS_RECONCILE")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(default, Duration::from_secs_f64)
}

/// The file and command publishers the topology asks for, besides DNS.
fn extra_publishers(t: &Topology, zone: &Name) -> Vec<(&'static str, Publisher)> {
    let mut out = Vec::new();
    if let Some(f) = &t.dns.file {
        let mut config = fedlb_dns::FileConfig::new(zone.clone(), &f.json);
        config.zone_fragment_path = f.zone_fragment.clone();
        config.reconcile_interval = t.dns.reconcile;
        out.push((
            "file",
            Publisher::File(fedlb_dns::FilePublisher::new(config)),
        ));
    }
    if let Some(c) = &t.dns.command {
        let mut config =
            fedlb_dns::CommandConfig::new(zone.clone(), &c.argv[0], c.argv[1..].to_vec());
        config.timeout = c.timeout;
        out.push((
            "command",
            Publisher::Command(fedlb_dns::CommandPublisher::new(config)),
        ));
    }
    out
}

/// Drives the publisher: the latest answers win; retries and reconciles when due.
async fn publish_loop(
    kind: &'static str,
    mut publisher: Publisher,
    mut desired: watch::Receiver<DesiredZone>,
    results: mpsc::Sender<Published>,
    shutdown: CancellationToken,
) {
    // The first decision may be sent before this task first runs (reports queued during
    // start-up, warm-up already over): treat whatever is there as new, or it is never
    // published until the answer changes again.
    desired.mark_changed();
    loop {
        let deadline = publisher.poll_timeout();
        let report = tokio::select! {
            () = shutdown.cancelled() => return,
            changed = desired.changed() => {
                if changed.is_err() {
                    return;
                }
                let last = desired.borrow_and_update().clone();
                if last.is_empty() {
                    continue;
                }
                publisher.publish(&last).await
            }
            () = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => publisher.handle_timeout().await,
        };
        let errors: Vec<String> = report.errors().map(|e| e.to_string()).collect();
        if report.changes() > 0 {
            info!(
                changes = report.changes(),
                ok = errors.is_empty(),
                "update acknowledged"
            );
        }
        for e in &errors {
            warn!(publisher = kind, error = %e, "publish failed; will retry");
        }
        let _ = results
            .send(Published {
                publisher: kind,
                ok: errors.is_empty(),
                primaries: publisher.primaries(),
            })
            .await;
    }
}
