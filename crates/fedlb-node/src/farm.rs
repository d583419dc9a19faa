//! The farm node (the patent's intermediate RMO): accepts its agents' reports, runs the
//! monitors of its remote servers itself, feeds `FarmState` (the local policy), and sends
//! the farm's summary to every global node — at once on change, otherwise as a heartbeat
//! (one connection per global node: [`crate::uplinks`]).
//!
//! One driver task owns the core: [`run`] sets up, then each loop turn feeds one event to
//! a `FarmNode::on_*` handler and carries out what the core outputs.

use std::sync::{Arc, RwLock};

use fedlb_core::{FarmId, FarmOutput, FarmState, Report};
use fedlb_net::{NodeTls, Role, Server, ServerConfig, ServerEvent, ServerRequest, bind_udp};
use fedlb_probe::Prober;
use fedlb_proto::{MAX_BATCH, Message, PROTOCOL_VERSION, WireSummary};
use fedlb_topology::{Farm, Topology};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::admin::{self, Held};
use crate::authz::{Access, Site};
use crate::clock::{Clock, new_epoch, sleep_until};
use crate::common::{
    NodeError, NodeOptions, SharedTopology, StatusRequest, earliest, known_nodes, load_tls,
    load_topology, own_address_changed, peer_event, serve_status,
};
use crate::http::AdminEndpoint;
use crate::metrics::{Metrics, labels};
use crate::monitors::{MonitorSet, plan};
use crate::status::CertificateExpiry;
use crate::uplinks::{Uplinks, Upstream, global_upstreams};
use crate::{reload, status};

/// Runs a farm node until `shutdown` is cancelled.
pub async fn run(opts: NodeOptions, shutdown: CancellationToken) -> Result<(), NodeError> {
    crate::fds::raise_nofile_limit();
    let topology = load_topology(&opts.topology, false)?;
    // the farm this node is one of the farm nodes of (a farm may have several)
    let Some((farm, me)) = topology
        .farm_of_node(&opts.node)
        .and_then(|f| Some((f.clone(), f.node(&opts.node)?.clone())))
    else {
        return Err(NodeError::UnknownNode {
            file: topology.file.clone(),
            role: "farm",
            node: opts.node.clone(),
            known: known_nodes(&topology),
        });
    };
    let farm_id = farm.id.clone();
    let tls = load_tls(&opts.certs, Role::Farm, &opts.node)?;
    let shared: SharedTopology = Arc::new(RwLock::new(Arc::new(topology.clone())));
    // agents connect here
    let (server, mut events) = Server::start::<Message, _>(
        bind_udp(me.listen).map_err(NodeError::Net)?,
        &tls,
        ServerConfig::new(PROTOCOL_VERSION),
        Access::new(shared.clone(), Site::Farm(farm_id.clone())),
        shutdown.clone(),
    )?;
    let metrics = Arc::new(Metrics::new());
    let (admin_tx, mut admin_rx) = mpsc::channel::<admin::Call>(16);
    let admin = AdminEndpoint::new(&tls, admin_tx).map_err(NodeError::Net)?;
    let (status_tx, mut status_rx) = mpsc::channel::<StatusRequest>(16);
    let http_task = serve_status(me.status, status_tx, Some(admin), &metrics, &shutdown).await?;
    let mut node = FarmNode::new(
        &opts,
        &topology,
        (farm, me),
        tls,
        shared,
        metrics,
        &shutdown,
    )?;
    let mut reloads = reload::spawn(opts.topology.clone(), false, shutdown.clone());
    info!(farm = %farm_id, node = %opts.node, quic = %server.local_addr(), status = %node.me.status, "farm node running");

    loop {
        let deadline = earliest(
            node.state.poll_timeout(node.clock.now()),
            node.monitors.poll_timeout(),
        );
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(ev) = events.recv() => node.on_peer_event(ev),
            ev = node.monitors.next() => {
                let reports = node.monitors.handle(ev, node.clock.now());
                node.feed(&reports);
            }
            () = sleep_until(&node.clock, deadline) => node.on_timeout(),
            link = node.uplinks.connected() => node.on_uplink(&link),
            Some(reply) = status_rx.recv() => {
                let _ = reply.send(node.status());
            }
            Some(call) = admin_rx.recv() => node.on_admin(call),
            Some(req) = node.forwarded.recv() => node.on_forwarded(req),
            Some(t) = reloads.recv() => node.on_reload(t, &shutdown),
        }
        node.carry_out();
    }
    node.uplinks.stop().await;
    let _ = http_task.await;
    server.closed().await;
    info!(farm = %farm_id, "farm node stopped");
    Ok(())
}

/// What the farm node's driver owns: the core, its own monitors, the link to the global
/// node.
struct FarmNode {
    node: String,
    farm_id: FarmId,
    /// This farm node as it started: the addresses it is bound to (a reload does not move
    /// them).
    me: fedlb_topology::FarmNode,
    clock: Clock,
    state: FarmState,
    monitors: MonitorSet,
    metrics: Arc<Metrics>,
    /// `messages_received{from="agent"}`, looked up once: a lookup per report cost more
    /// than the count.
    agent_messages: prometheus_client::metrics::counter::Counter,
    certificates: CertificateExpiry,
    shared: SharedTopology,
    /// One link to each global node.
    uplinks: Uplinks,
    /// Operator overrides on the farm's servers, and their file.
    held: Held,
    /// Admin calls the global nodes forward on this node's links to them.
    forwarded: mpsc::Receiver<ServerRequest>,
    /// The last changes of its local decisions.
    timeline: status::Timeline,
    /// Each server's recent load.
    loads: status::LoadHistory,
}

impl FarmNode {
    /// `me` is this node, one of the farm nodes of `farm`.
    fn new(
        opts: &NodeOptions,
        topology: &Topology,
        (farm, me): (Farm, fedlb_topology::FarmNode),
        tls: NodeTls,
        shared: SharedTopology,
        metrics: Arc<Metrics>,
        shutdown: &CancellationToken,
    ) -> Result<Self, NodeError> {
        let held = Held::load(&opts.state_dir(), "farm", &opts.node)?;
        let farm_id = farm.id.clone();
        let certificates = CertificateExpiry::of(&tls);
        metrics.set_certificate_expiry(certificates);
        // every global node, one connection each
        let (forward_tx, forwarded) = mpsc::channel(16);
        let uplinks = Uplinks::start(
            tls,
            &global_upstreams(topology)?,
            Some(forward_tx),
            shutdown,
        )?;
        let clock = Clock::start();
        let mut config = topology.farm_config(&farm_id).expect("the farm exists");
        // its summaries name this node: the global node tells the farm's nodes apart
        config.node = opts.node.clone();
        let mut state = FarmState::new(config, new_epoch(), rand::random(), clock.now());
        state.record_changes(true);
        // the core holds decisions back after a start or a pause until every member is heard
        state.set_warmup_window(farm.heartbeat.liveness().stale_after);
        let mut monitors = MonitorSet::new(
            Arc::new(Prober::default()),
            new_epoch(),
            false,
            metrics.clone(),
        );
        let own = monitors.set_plan(
            plan(topology, &opts.node).map_err(NodeError::Probe)?,
            clock.now(),
        );
        let agent_messages = metrics
            .messages_received
            .get_or_create(&labels(&[("from", "agent")]))
            .clone();
        let mut node = Self {
            node: opts.node.clone(),
            farm_id,
            me,
            clock,
            state,
            monitors,
            metrics,
            agent_messages,
            certificates,
            shared,
            uplinks,
            held,
            forwarded,
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
                self.metrics
                    .refused
                    .get_or_create(&labels(&[("what", "report")]))
                    .inc();
                warn!(error = %e, "own monitor's report not taken");
            }
        }
    }

    fn on_peer_event(&mut self, ev: ServerEvent<Message>) {
        match ev {
            ServerEvent::Message {
                msg: Message::Reports(rs),
                peer,
                ..
            } => {
                self.agent_messages.inc();
                let now = self.clock.now();
                for r in rs {
                    let report = r.into_report(now);
                    if let Err(e) = self.state.handle_report(&report, now) {
                        debug!(%peer, error = %e, "report not taken");
                    }
                }
            }
            other => peer_event(&other, &self.metrics),
        }
    }

    /// A global node's link came up with nothing queued: it gets every summary as of now
    /// (none for a service still warming up; its first decision goes to every link).
    fn on_uplink(&mut self, link: &Upstream) {
        let now = self.clock.now();
        let summaries: Vec<WireSummary> = self
            .state
            .tier()
            .services()
            .keys()
            .filter_map(|service| self.state.summary(service, now))
            .map(|s| WireSummary::from_summary(&s, now))
            .collect();
        for chunk in summaries.chunks(MAX_BATCH) {
            self.uplinks
                .send_to(link, &Message::Summaries(chunk.to_vec()), false, "summary");
        }
    }

    fn on_timeout(&mut self) {
        let now = self.clock.now();
        let reports = self.monitors.handle_timeout(now);
        self.feed(&reports);
        self.state.handle_timeout(now);
    }

    /// An operator's admin call: the override's target must be a server of this farm (a
    /// pin: of the service), and a farm node decides for no region.
    fn on_admin(&mut self, call: admin::Call) {
        let result = self.admin(&call.operator, call.request);
        let _ = call.reply.send(result);
    }

    /// An admin call a global node forwarded: trusted as the global node's (this node
    /// dialled it and checked its certificate), on behalf of the operator it names.
    fn on_forwarded(&mut self, req: ServerRequest) {
        let result = match serde_json::from_slice::<admin::Forwarded>(&req.body) {
            Ok(f) => {
                debug!(via = %req.server, operator = %f.operator, "admin call forwarded");
                self.admin(&f.operator, f.request)
            }
            Err(e) => Err(format!("forwarded admin call from {}: {e}", req.server)),
        };
        let _ = req
            .reply
            .send(serde_json::to_vec(&result).unwrap_or_default());
    }

    fn admin(
        &mut self,
        operator: &str,
        request: admin::Request,
    ) -> Result<admin::Response, String> {
        let tier = self.state.tier();
        let farm = self.farm_id.clone();
        let check = |r: &admin::Record| -> Result<(), String> {
            let target: fedlb_core::CandidateId = r.target.as_str().into();
            let here = |svc: &fedlb_core::ServiceId| {
                tier.services()
                    .get(svc)
                    .is_some_and(|s| s.members.contains_key(&target))
            };
            if let Some(region) = &r.region {
                return Err(format!(
                    "a farm node decides for no region; \"{region}\" given (pin per region on the global nodes)"
                ));
            }
            match &r.service {
                Some(service) => {
                    let svc: fedlb_core::ServiceId = service.as_str().into();
                    if !tier.services().contains_key(&svc) {
                        return Err(format!("unknown service \"{service}\" in farm \"{farm}\""));
                    }
                    if !here(&svc) {
                        return Err(format!(
                            "unknown target \"{}\": not a server of farm \"{farm}\" offering \"{service}\"",
                            r.target
                        ));
                    }
                }
                None if !tier.services().keys().any(here) => {
                    return Err(format!(
                        "unknown target \"{}\": not a server of farm \"{farm}\"",
                        r.target
                    ));
                }
                None => {}
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

    fn status(&self) -> status::Status {
        let mut s = status::farm_status(
            &self.node,
            &self.state,
            self.clock.uptime(),
            self.clock.now(),
        );
        s.certificates = Some(self.certificates);
        s.overrides = self.held.status();
        let now = self.clock.now();
        s.changes = self.timeline.statuses(now);
        s.loads = self.loads.statuses(now);
        s
    }

    /// Keeps the changes of the decisions just made, and a sample of every server's load
    /// once a second.
    fn remember(&mut self, now: fedlb_core::Timestamp) {
        let changes = self.state.take_changes();
        if !changes.is_empty() {
            self.timeline
                .record(changes, now, std::time::SystemTime::now());
        }
        if self.loads.due(now) {
            let tier = self.state.tier();
            let loads = tier.services().iter().flat_map(|(service, t)| {
                t.candidates(now).into_iter().map(move |c| {
                    (
                        status::SeriesKey {
                            service: service.to_string(),
                            farm: None,
                            id: c.id.to_string(),
                            kind: "server".to_owned(),
                        },
                        c.load(),
                    )
                })
            });
            // a very large farm charts its first servers only: no need to build the rest
            let loads: Vec<_> = loads.take(status::LoadHistory::MAX_SERIES).collect();
            self.loads.sample(now, loads);
        }
    }

    fn on_reload(&mut self, t: Topology, shutdown: &CancellationToken) {
        let farm_id = self.farm_id.clone();
        let (Some(mut config), Some(node)) = (
            t.farm_config(&farm_id),
            t.farms.get(&farm_id).and_then(|f| f.node(&self.node)),
        ) else {
            warn!(farm = %farm_id, node = %self.node, "the new topology has no such farm node; keeping the old one");
            return;
        };
        config.node = self.node.clone();
        let now = self.clock.now();
        let me = &t.farms[&farm_id];
        let field = |what| {
            if self.node == farm_id.as_str() {
                format!("farm \"{farm_id}\": {what}")
            } else {
                format!("farm \"{farm_id}\" node \"{}\": {what}", self.node)
            }
        };
        own_address_changed(&field("listen"), self.me.listen, node.listen);
        own_address_changed(&field("status"), self.me.status, node.status);
        self.follow_global(&t, shutdown);
        match plan(&t, &self.node) {
            Ok(p) => {
                let reports = self.monitors.set_plan(p, now);
                self.feed(&reports);
            }
            Err(e) => warn!(error = %e, "new probes refused; keeping the old ones"),
        }
        self.state.set_config(config, now);
        self.state
            .set_warmup_window(me.heartbeat.liveness().stale_after);
        *self.shared.write().expect("topology lock") = Arc::new(t);
        info!(farm = %farm_id, "new topology in force");
    }

    /// Global nodes added, moved, renamed or removed: link to exactly those of `t`.
    fn follow_global(&mut self, t: &Topology, _shutdown: &CancellationToken) {
        match global_upstreams(t).and_then(|targets| self.uplinks.follow(&targets)) {
            Ok(()) => {}
            Err(e) => {
                error!(error = %e, "cannot dial the global nodes of the new topology; keeping the old links")
            }
        }
    }

    /// Carries out what the core decided: summaries go up, local decisions are logged.
    fn carry_out(&mut self) {
        let gone = self.state.take_expired();
        if !gone.is_empty()
            && let Err(e) = self.held.expired(&gone)
        {
            warn!(error = %e, "expired overrides not written");
        }
        let now = self.clock.now();
        self.remember(now);
        let mut summaries = Vec::new();
        while let Some(out) = self.state.poll_output() {
            match out {
                FarmOutput::Summary(s) => summaries.push(WireSummary::from_summary(&s, now)),
                FarmOutput::Decision(service, d) => {
                    self.metrics
                        .decisions
                        .get_or_create(&labels(&[("service", service.as_str()), ("tier", "local")]))
                        .inc();
                    info!(farm = %self.farm_id, %service, answer = ?d.addresses, degraded = d.degraded, why = %d.why, "local decision");
                }
            }
        }
        for chunk in summaries.chunks(MAX_BATCH) {
            self.uplinks
                .send(&Message::Summaries(chunk.to_vec()), "summary");
        }
    }
}
