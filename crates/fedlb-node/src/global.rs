//! The global node (the patent's RMO): accepts farm nodes' summaries and the reports of
//! agents on directly attached servers, runs the monitors of directly attached remote
//! servers, feeds `GlobalState` (the global policy), and hands every answer the core
//! decides to the publishers. With `embedded` DNS it also runs the authoritative server.
//!
//! One driver task owns the core: [`run`] sets up, then each loop turn feeds one event to
//! a `Global::on_*` handler and carries out what the core outputs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use fedlb_core::{
    Cause, Decision, FarmId, GlobalOutput, GlobalState, RegionId, Report, ServerId, ServiceId,
};
use fedlb_dns::PassOutcome;
use fedlb_net::{Requester, Role, Server, ServerConfig, ServerEvent, bind_udp};
use fedlb_probe::Prober;
use fedlb_proto::{Message, PROTOCOL_VERSION};
use fedlb_topology::Topology;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::admin::{self, Held};
use crate::authz::{Access, Site};
use crate::clock::{Clock, new_epoch, sleep_until};
use crate::common::{
    NodeError, NodeOptions, SharedTopology, StatusRequest, earliest, load_tls, load_topology,
    own_address_changed, peer_event, serve_status,
};
use crate::http::AdminEndpoint;
use crate::metrics::{Metrics, labels};
use crate::monitors::{MonitorSet, plan};
use crate::publish::{Publishing, ViewOf};
use crate::status::{CertificateExpiry, GlobalExtras};
use crate::{reload, status};

/// How long a farm node has to answer an admin call forwarded to it.
const FORWARD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);

/// Runs the global node until `shutdown` is cancelled.
pub async fn run(opts: NodeOptions, shutdown: CancellationToken) -> Result<(), NodeError> {
    let topology = load_topology(&opts.topology, true)?;
    run_with(topology, opts, shutdown).await
}

/// Runs the global node on a topology already loaded from `opts.topology` (with its key
/// files read), until `shutdown` is cancelled.
pub async fn run_with(
    topology: Topology,
    opts: NodeOptions,
    shutdown: CancellationToken,
) -> Result<(), NodeError> {
    crate::fds::raise_nofile_limit();
    let Some(me) = topology.global_node(&opts.node).cloned() else {
        return Err(NodeError::UnknownNode {
            file: topology.file.clone(),
            role: "global node",
            node: opts.node.clone(),
            known: topology.global_names().join(", "),
        });
    };
    let topology = as_node(topology, &me.name);
    let tls = load_tls(&opts.certs, Role::Global, &opts.node)?;
    let shared: SharedTopology = Arc::new(RwLock::new(Arc::new(topology.clone())));
    let (server, mut events) = Server::start::<Message, _>(
        bind_udp(me.listen).map_err(NodeError::Net)?,
        &tls,
        ServerConfig::new(PROTOCOL_VERSION),
        Access::new(shared.clone(), Site::Global),
        shutdown.clone(),
    )?;
    // other global nodes writing the same DNS server: the partition rule applies
    let peers = (topology.shares_dns() && me.dns.is_none()).then(|| fedlb_dns::PeerConfig {
        node: me.name.clone(),
        rule: fedlb_core::PeerRule::from_heartbeat(
            topology.heartbeat.interval,
            topology.heartbeat.missed,
        ),
    });
    let publishing = Publishing::start(&topology, peers, &shutdown).await?;
    let metrics = Arc::new(Metrics::new());
    let certificates = CertificateExpiry::of(&tls);
    metrics.set_certificate_expiry(certificates);
    let held = Held::load(&opts.state_dir(), "global", &opts.node)?;
    let (admin_tx, mut admin_rx) = mpsc::channel::<admin::Call>(16);
    let admin = AdminEndpoint::new(&tls, admin_tx).map_err(NodeError::Net)?;
    let (status_tx, mut status_rx) = mpsc::channel::<StatusRequest>(16);
    let http_task = serve_status(me.status, status_tx, Some(admin), &metrics, &shutdown).await?;
    let mut node = Global::new(
        opts,
        topology,
        shared,
        publishing,
        metrics,
        certificates,
        held,
    )?;
    node.requester = Some(server.requester());
    let mut reloads = reload::spawn(node.opts.topology.clone(), true, shutdown.clone());
    info!(node = %node.opts.node, quic = %server.local_addr(), status = %me.status, peers = node.current.globals.len() - 1, zone = %node.publishing.zone(), "global node running");

    // QUIC's RTT estimate to each farm node feeds "closest by rtt"
    let mut rtt_tick = tokio::time::interval(node.current.heartbeat.interval);
    loop {
        let deadline = earliest(
            node.state.poll_timeout(node.clock.now()),
            node.monitors.poll_timeout(),
        );
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = rtt_tick.tick() => {
                node.on_rtt_tick(&server);
                node.follow_heard();
            }
            Some(ev) = events.recv() => node.on_peer_event(ev),
            ev = node.monitors.next() => {
                let reports = node.monitors.handle(ev, node.clock.now());
                node.feed(&reports);
            }
            () = sleep_until(&node.clock, deadline) => node.on_timeout(),
            Some((view, outcome)) = node.publishing.next_outcome() => node.on_published(view, outcome),
            Some(reply) = status_rx.recv() => {
                let _ = reply.send(node.status());
            }
            Some(call) = admin_rx.recv() => node.on_admin(call),
            Some(t) = reloads.recv() => node.on_reload(t),
        }
        node.carry_out();
    }
    let name = node.opts.node.clone();
    node.publishing.stopped().await;
    let _ = http_task.await;
    server.closed().await;
    info!(node = %name, "global node stopped");
    Ok(())
}

/// What the global node's driver owns: the core, its own monitors, the publishers, and
/// what the status page remembers besides the core.
struct Global {
    opts: NodeOptions,
    clock: Clock,
    state: GlobalState,
    monitors: MonitorSet,
    publishing: Publishing,
    metrics: Arc<Metrics>,
    certificates: CertificateExpiry,
    extras: GlobalExtras,
    /// The last answer carried out per service, to tell a new answer from a new TTL.
    decisions: BTreeMap<(ServiceId, Option<RegionId>), Decision>,
    current: Arc<Topology>,
    shared: SharedTopology,
    /// The addresses this node is bound to (QUIC, status); a reload does not move them.
    bound: (SocketAddr, SocketAddr),
    /// Operator overrides held (farms, directly attached servers, pins to them) and their
    /// file.
    held: Held,
    /// Forwards admin calls about a farm's servers to its farm nodes, over their
    /// connections to this node.
    requester: Option<Requester>,
    /// The last changes of its decisions (global and regional).
    timeline: status::Timeline,
    /// Each farm's, direct server's and farm server's recent load.
    loads: status::LoadHistory,
    /// `messages_received{from="farm"}` and `{from="agent"}`, looked up once: a lookup
    /// builds its labels, an allocation per message.
    received: [prometheus_client::metrics::counter::Counter; 2],
}

impl Global {
    fn new(
        opts: NodeOptions,
        topology: Topology,
        shared: SharedTopology,
        publishing: Publishing,
        metrics: Arc<Metrics>,
        certificates: CertificateExpiry,
        held: Held,
    ) -> Result<Self, NodeError> {
        let clock = Clock::start();
        // every global node draws the same random numbers from the same inputs: the seed
        // comes from the federation, never from the node
        let mut state = GlobalState::new(
            topology.global_config(),
            fedlb_core::federation_seed(&topology.name),
        );
        // the core holds decisions back after a start or a pause until every member is heard
        state.set_warmup_window(topology.heartbeat.liveness().stale_after);
        state.record_changes(true);
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
        let extras = GlobalExtras {
            fqdns: fqdns(&topology),
            ..GlobalExtras::default()
        };
        let bound = topology
            .global_node(&opts.node)
            .map_or((topology.global.listen, topology.global.status), |g| {
                (g.listen, g.status)
            });
        let received = ["farm", "agent"].map(|from| {
            metrics
                .messages_received
                .get_or_create(&labels(&[("from", from)]))
                .clone()
        });
        let mut node = Self {
            received,
            opts,
            clock,
            state,
            monitors,
            publishing,
            metrics,
            certificates,
            extras,
            decisions: BTreeMap::new(),
            bound,
            current: Arc::new(topology),
            shared,
            held,
            requester: None,
            timeline: status::Timeline::default(),
            loads: status::LoadHistory::default(),
        };
        let now = node.clock.now();
        node.held.log_restored();
        node.state.set_overrides(node.held.to_core(now), now);
        node.feed(&own);
        Ok(node)
    }

    /// Feeds this node's own monitors' reports to the core.
    fn feed(&mut self, reports: &[Report]) {
        let now = self.clock.now();
        for r in reports {
            if let Err(e) = self.state.handle_report(r, now) {
                warn!(error = %e, "own monitor's report not taken");
            }
        }
    }

    fn on_rtt_tick(&mut self, server: &Server) {
        let now = self.clock.now();
        for (peer, rtt) in server.peer_rtts() {
            if peer.role == Role::Farm {
                self.state.handle_rtt(&peer.node.as_str().into(), rtt, now);
            }
        }
    }

    fn on_peer_event(&mut self, ev: ServerEvent<Message>) {
        let now = self.clock.now();
        match ev {
            ServerEvent::Message {
                msg: Message::Summaries(ss),
                peer,
                ..
            } => {
                self.received[0].inc();
                for s in ss {
                    // the message is done with: its strings move into the summary
                    let summary = s.into_summary(now);
                    match self.state.handle_summary(&summary, now) {
                        Ok(()) => self.extras.keep_summary(summary, now),
                        Err(e) => debug!(%peer, error = %e, "summary not taken"),
                    }
                }
            }
            ServerEvent::Message {
                msg: Message::Reports(rs),
                peer,
                ..
            } => {
                self.received[1].inc();
                for r in rs {
                    if let Err(e) = self.state.handle_report(&r.into_report(now), now) {
                        debug!(%peer, error = %e, "report not taken");
                    }
                }
            }
            other => peer_event(&other, &self.metrics),
        }
    }

    fn on_timeout(&mut self) {
        let now = self.clock.now();
        let reports = self.monitors.handle_timeout(now);
        self.feed(&reports);
        self.state.handle_timeout(now);
    }

    fn on_published(&mut self, view: ViewOf, outcome: PassOutcome) {
        let region = &view.region;
        let result = if outcome.is_ok() { "ok" } else { "error" };
        self.metrics
            .publishes
            .get_or_create(&labels(&[
                ("publisher", outcome.publisher.as_str()),
                ("result", result),
                (
                    "region",
                    region.as_ref().map_or("default", RegionId::as_str),
                ),
            ]))
            .inc();
        self.publishing.record(view, outcome, self.clock.now());
        self.count_degraded();
    }

    /// An operator's admin call: the override's target must be a farm or a directly
    /// attached server of this node (a server inside a farm belongs to its farm nodes).
    fn on_admin(&mut self, call: admin::Call) {
        let t = self.current.clone();
        let farm_of = |server: &str| {
            t.farms
                .values()
                .find(|f| f.servers.keys().any(|s| s.as_str() == server))
                .map(|f| f.id.as_str())
        };
        let held = |id: &str| self.held.records().any(|r| r.id == id);
        let scope = call.request.farm_scope(farm_of, held);
        let (Some(scope), Some(requester)) = (scope, self.requester.clone()) else {
            let result = self.admin(&call.operator, call.request);
            let _ = call.reply.send(result);
            return;
        };
        // the farm nodes of that farm (or of every farm) hold it: forward, and answer once
        // each has answered (a task: the driver goes on meanwhile)
        let nodes: Vec<fedlb_net::PeerIdentity> = t
            .farms
            .values()
            .filter(|f| scope.is_none_or(|s| f.id.as_str() == s))
            .flat_map(|f| f.nodes.iter())
            .filter_map(|n| crate::common::identity(Role::Farm, &n.name).ok())
            .collect();
        let mut own = self.admin(&call.operator, admin::Request::List { farms: false });
        let forward = admin::Forwarded {
            operator: call.operator.clone(),
            request: call.request,
        };
        let body = serde_json::to_vec(&forward).unwrap_or_default();
        // the audit trail of this node too: who asked for what, and where it went
        info!(operator = %forward.operator, request = ?forward.request, farm = %scope.unwrap_or("every farm"), nodes = nodes.len(), "admin call forwarded to farm nodes");
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for peer in nodes {
                let result = requester
                    .request(&peer, &body, FORWARD_TIMEOUT)
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| {
                        serde_json::from_slice::<Result<admin::Response, String>>(&bytes)
                            .map_err(|e| format!("{peer}'s answer: {e}"))?
                    });
                if let Err(e) = &result {
                    warn!(%peer, error = %e, "forwarded admin call failed");
                }
                answers.push(admin::ForwardAnswer {
                    node: peer.node.to_string(),
                    result,
                });
            }
            if let Ok(own) = &mut own {
                own.forwarded = answers;
            }
            let _ = call.reply.send(own);
        });
    }

    fn admin(
        &mut self,
        operator: &str,
        request: admin::Request,
    ) -> Result<admin::Response, String> {
        let tier = self.state.tier();
        let t = &self.current;
        let node = self.opts.node.clone();
        let check = |r: &admin::Record| -> Result<(), String> {
            let target: fedlb_core::CandidateId = r.target.as_str().into();
            let here = |svc: &fedlb_core::ServiceId| {
                tier.services()
                    .get(svc)
                    .is_some_and(|s| s.members.contains_key(&target))
            };
            let elsewhere = || match t
                .farms
                .values()
                .find(|f| f.servers.keys().any(|s| s.as_str() == r.target))
            {
                Some(f) => format!(
                    "; it is a server of farm \"{}\": its farm nodes hold overrides on it",
                    f.id
                ),
                None => String::new(),
            };
            match (&r.service, &r.region) {
                (Some(service), region) => {
                    let svc: fedlb_core::ServiceId = service.as_str().into();
                    if !tier.services().contains_key(&svc) {
                        return Err(format!(
                            "unknown service \"{service}\" on global node {node}"
                        ));
                    }
                    if let Some(region) = region
                        && !tier.regions().iter().any(|x| x.id.as_str() == region)
                    {
                        return Err(format!("unknown region \"{region}\" on global node {node}"));
                    }
                    if !here(&svc) {
                        return Err(format!(
                            "unknown target \"{}\": not a farm or directly attached server offering \"{service}\" on global node {node}{}",
                            r.target,
                            elsewhere()
                        ));
                    }
                }
                (None, _) => {
                    if !tier.services().keys().any(here) {
                        return Err(format!(
                            "unknown target \"{}\": not a farm or directly attached server of global node {node}{}",
                            r.target,
                            elsewhere()
                        ));
                    }
                }
            }
            Ok(())
        };
        let result = self.held.handle(operator, request, check);
        if result.as_ref().is_ok_and(|r| !r.changed.is_empty()) {
            let now = self.clock.now();
            self.state.set_overrides(self.held.to_core(now), now);
        }
        result
    }

    /// Overrides the core let expire: forgotten in the file too.
    fn forget_expired(&mut self) {
        let gone = self.state.take_expired();
        if !gone.is_empty()
            && let Err(e) = self.held.expired(&gone)
        {
            warn!(error = %e, "expired overrides not written");
        }
    }

    fn status(&mut self) -> status::Status {
        let now = self.clock.now();
        self.extras.published = self.publishing.statuses(now);
        self.extras.peers = self.peers_status(now);
        let mut s = status::global_status(
            &self.opts.node,
            &self.state,
            &self.extras,
            self.clock.uptime(),
            now,
        );
        s.certificates = Some(self.certificates);
        s.overrides = self.held.status();
        s.changes = self.timeline.statuses(now);
        s.loads = self.loads.statuses(now);
        s
    }

    /// Keeps the changes of the decisions just made, and once a second a sample of the
    /// load of every candidate and of every farm's servers (from the summary in use).
    fn remember(&mut self, now: fedlb_core::Timestamp) {
        let mut changes = self.state.take_changes();
        if !changes.is_empty() {
            // a farm's own choice moved the answer: say what the farm said
            for c in &mut changes {
                let Some(farm) = c
                    .reason
                    .subject
                    .as_ref()
                    .filter(|_| c.reason.cause == Cause::Farm)
                else {
                    continue;
                };
                let farm = FarmId::from(farm.as_str());
                let said = self
                    .extras
                    .summaries
                    .iter()
                    .filter(|((s, f, _), _)| s == &c.service && f == &farm)
                    .max_by_key(|(_, (_, at))| *at)
                    .map(|(_, (summary, _))| summary.why.clone());
                if let Some(why) = said {
                    c.why = format!("{}; farm {farm}: {why}", c.why);
                }
            }
            self.timeline
                .record(changes, now, std::time::SystemTime::now());
        }
        if !self.loads.due(now) {
            return;
        }
        let mut loads = Vec::new();
        // a very large federation charts its first candidates only: no need to build the rest
        'services: for (service, tier) in self.state.tier().services() {
            for c in tier.candidates(now) {
                if loads.len() >= status::LoadHistory::MAX_SERIES {
                    break 'services;
                }
                let member = tier.members.get(&c.id);
                let kind = member.map_or(fedlb_core::MemberKind::Server, |m| m.spec.kind);
                let key = |farm: Option<String>, id: String, kind: &str| status::SeriesKey {
                    service: service.to_string(),
                    farm,
                    id,
                    kind: kind.to_owned(),
                };
                loads.push((key(None, c.id.to_string(), kind.as_str()), c.load()));
                if kind != fedlb_core::MemberKind::Farm {
                    continue;
                }
                let farm = FarmId::from(c.id.as_str());
                let node = member
                    .and_then(|m| m.source_in_use(now).cloned())
                    .unwrap_or_else(|| farm.to_string());
                let Some((summary, _)) =
                    self.extras
                        .summaries
                        .get(&(service.clone(), farm.clone(), node))
                else {
                    continue;
                };
                let servers = self.current.farms.get(&farm).map(|f| &f.servers);
                for v in &summary.servers {
                    let capacity = servers
                        .and_then(|s| s.get(&ServerId::from(v.id.as_str())))
                        .map_or(1.0, |s| s.capacity.max(f64::MIN_POSITIVE));
                    let raw = v
                        .readings
                        .pending
                        .map(|p| p.value)
                        .or(v.readings.connections.map(|p| p.value));
                    loads.push((
                        key(Some(farm.to_string()), v.id.to_string(), "server"),
                        raw.map(|r| r as f64 / capacity),
                    ));
                }
            }
        }
        self.loads.sample(now, loads);
    }

    fn on_reload(&mut self, t: Topology) {
        let Some(me) = t.global_node(&self.opts.node).cloned() else {
            warn!(node = %self.opts.node, "the new topology has no such global node; keeping the old one");
            return;
        };
        let t = as_node(t, &me.name);
        let now = self.clock.now();
        match plan(&t, &self.opts.node) {
            Ok(p) => {
                let reports = self.monitors.set_plan(p, now);
                self.feed(&reports);
            }
            Err(e) => warn!(error = %e, "new probes refused; keeping the old ones"),
        }
        own_address_changed("global.listen", self.bound.0, me.listen);
        own_address_changed("global.status", self.bound.1, me.status);
        if t.dns != self.current.dns {
            warn!("dns settings changed; they take effect at the next restart of the global node");
        }
        self.state.set_config(t.global_config(), now);
        self.state
            .set_warmup_window(t.heartbeat.liveness().stale_after);
        // names may have moved: the publishers diff, so an unchanged zone costs nothing
        self.publishing.set_topology(&t);
        let heard = self.heard(&t);
        self.publishing
            .set_answers(&t, self.state.published(), heard);
        self.extras.fqdns = fqdns(&t);
        self.extras
            .summaries
            .retain(|(_, farm, node), _| t.farms.get(farm).is_some_and(|f| f.node(node).is_some()));
        let t = Arc::new(t);
        *self.shared.write().expect("topology lock") = t.clone();
        self.current = t;
        self.count_degraded();
        info!("new topology in force");
    }

    /// Carries out what the core decided: every new answer or TTL goes to the publishers.
    fn carry_out(&mut self) {
        self.forget_expired();
        self.remember(self.clock.now());
        let mut changed = false;
        while let Some(GlobalOutput::Publish(p)) = self.state.poll_output() {
            let (service, d) = (&p.service, &p.decision);
            let key = (service.clone(), p.region.clone());
            let moved = self
                .decisions
                .get(&key)
                .is_none_or(|old| old.addresses != d.addresses);
            let region = p.region.as_ref().map_or("default", RegionId::as_str);
            if moved {
                self.metrics
                    .decisions
                    .get_or_create(&labels(&[
                        ("service", service.as_str()),
                        ("tier", "global"),
                        ("region", region),
                    ]))
                    .inc();
                info!(%service, region, answer = ?d.addresses, ttl = p.ttl, degraded = d.degraded, why = %d.why, "global decision");
            } else {
                debug!(%service, region, ttl = p.ttl, "derived ttl changed");
            }
            self.decisions.insert(key, d.clone());
            changed = true;
        }
        if changed {
            let heard = self.heard(&self.current);
            self.publishing
                .set_answers(&self.current, self.state.published(), heard);
            self.count_degraded();
        }
    }

    /// With several global nodes: the others, the farm nodes feeding them all as this node
    /// hears them, and what it hears per service.
    fn peers_status(&self, now: fedlb_core::Timestamp) -> Option<status::PeersStatus> {
        let t = &self.current;
        if t.globals.len() < 2 {
            return None;
        }
        let farm_nodes = t
            .farms
            .values()
            .flat_map(|f| f.nodes.iter().map(move |n| (&f.id, &n.name)))
            .map(|(farm, node)| {
                let last = self
                    .extras
                    .summaries
                    .iter()
                    .filter(|((_, f, n), _)| f == farm && n == node)
                    .map(|(_, (_, at))| *at)
                    .max();
                status::FarmNodeSeen {
                    farm: farm.to_string(),
                    node: node.clone(),
                    heard_s_ago: last
                        .map(|at| ((now - at).as_secs_f64() * 1000.0).round() / 1000.0),
                }
            })
            .collect();
        Some(status::PeersStatus {
            global_nodes: t.global_names(),
            shares_dns: t.shares_dns(),
            farm_nodes,
            heard: self
                .heard(t)
                .into_iter()
                .map(|(s, n)| (s.to_string(), n))
                .collect(),
        })
    }

    /// Per service, how many candidates this node hears now.
    fn heard(&self, t: &Topology) -> BTreeMap<ServiceId, u32> {
        let now = self.clock.now();
        t.services
            .keys()
            .map(|s| (s.clone(), self.state.heard(s, now)))
            .collect()
    }

    /// A farm heard again or gone silent changes what the markers next to a shared DNS
    /// server's answers compare: hand the counts over when they moved.
    fn follow_heard(&mut self) {
        if self.current.globals.len() < 2 || self.state.published().is_empty() {
            return;
        }
        let heard = self.heard(&self.current);
        if &heard != self.publishing.heard() {
            self.publishing
                .set_answers(&self.current, self.state.published(), heard);
        }
    }

    /// Sets `fedlb_degraded_services`: services answering fail-static, or whose DNS is
    /// behind the decision with updates failing.
    fn count_degraded(&mut self) {
        let published = self.publishing.statuses(self.clock.now());
        let degraded: std::collections::BTreeSet<&ServiceId> = self
            .decisions
            .iter()
            .filter(|(key, d)| d.degraded || published.get(*key).is_some_and(|p| p.degraded))
            .map(|((service, _), _)| service)
            .collect();
        self.metrics.degraded_services.set(degraded.len() as i64);
    }
}

/// The topology as global node `name` runs it: `dns` is where it publishes (its own
/// embedded server when it has one).
fn as_node(mut t: Topology, name: &str) -> Topology {
    t.dns = t.dns_for(name);
    t
}

fn fqdns(t: &Topology) -> BTreeMap<ServiceId, String> {
    t.services
        .iter()
        .map(|(id, s)| (id.clone(), s.fqdn.clone()))
        .collect()
}
