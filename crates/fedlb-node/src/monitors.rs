//! The monitors a node runs (an agent's, or a farm or global node's for remote servers):
//! one core `Monitor` per service instance, its probes run as tasks, listen-watcher events
//! handed to the monitor (which decides whether and when to re-probe).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fedlb_core::{
    Monitor, MonitorConfig, MonitorOutput, ProbeId, ProbeResult, Report, ServerId, ServiceId,
    Timestamp,
};
use fedlb_probe::{ListenEvent, ListenWatcher, ProbeSpec, Prober};
use fedlb_topology::Topology;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::fds::ShortageLog;
use crate::metrics::{Metrics, labels};

type Key = (ServiceId, ServerId);

/// A probe run that finished.
#[derive(Debug)]
pub struct ProbeDone {
    key: Key,
    /// The probe could not run for want of file descriptors on this node.
    not_run: bool,
    probe: ProbeId,
    kind: &'static str,
    result: ProbeResult,
    elapsed: Duration,
}

struct Entry {
    monitor: Monitor,
    probes: ProbeSet,
}

/// Every monitor of one node.
pub struct MonitorSet {
    entries: BTreeMap<Key, Entry>,
    prober: Arc<Prober>,
    epoch: u64,
    done_tx: mpsc::Sender<ProbeDone>,
    done_rx: mpsc::Receiver<ProbeDone>,
    watchers: BTreeMap<u16, (ListenWatcher, Vec<Key>)>,
    watch_local: bool,
    metrics: Arc<Metrics>,
    shortage: ShortageLog,
}

/// Each probe of a monitor: what to run, its timeout, its kind (for metrics).
pub type ProbeSet = BTreeMap<ProbeId, (ProbeSpec, Duration, &'static str)>;

/// What a node's monitors must watch: one monitor per service instance, with its probes.
pub type Plan = Vec<(MonitorConfig, ProbeSet)>;

/// What a node's monitors must watch, from the topology.
pub fn plan(topology: &Topology, node: &str) -> Result<Plan, String> {
    let mut out = Vec::new();
    for config in topology.monitors_run_by(node) {
        let (server, _) = topology
            .server(&config.server)
            .ok_or_else(|| format!("server \"{}\" is not in the topology", config.server))?;
        let service = &topology.services[&config.service];
        let mut probes = BTreeMap::new();
        for p in &service.probes {
            let spec = crate::probes::spec(service, p, server).map_err(|e| {
                format!(
                    "service \"{}\" probe \"{}\" for server \"{}\": {e}",
                    service.id, p.id, server.id
                )
            })?;
            probes.insert(p.id.clone(), (spec, p.timeout, p.kind.as_str()));
        }
        out.push((config, probes));
    }
    Ok(out)
}

impl MonitorSet {
    /// Monitors for `plan`, all probes due at `now`. With `watch_local`, a watcher on each
    /// probed TCP port re-probes at once when the service's listening socket disappears
    /// (intrusive agents only: the socket tables are this machine's).
    pub fn new(prober: Arc<Prober>, epoch: u64, watch_local: bool, metrics: Arc<Metrics>) -> Self {
        let (done_tx, done_rx) = mpsc::channel(1024);
        MonitorSet {
            entries: BTreeMap::new(),
            prober,
            epoch,
            done_tx,
            done_rx,
            watchers: BTreeMap::new(),
            watch_local,
            metrics,
            shortage: ShortageLog::default(),
        }
    }

    /// Applies a plan (at start and on reload): monitors that stay keep their state; their
    /// probe sets are swapped with the monitor paused, as the patent describes.
    pub fn set_plan(&mut self, plan: Plan, now: Timestamp) -> Vec<Report> {
        let mut old = std::mem::take(&mut self.entries);
        for (config, probes) in plan {
            let key = (config.service.clone(), config.server.clone());
            let entry = match old.remove(&key) {
                Some(mut e) => {
                    if e.monitor.config() != &config || e.probes != probes {
                        e.monitor.pause();
                        e.monitor.set_config(config, now);
                        e.probes = probes;
                        e.monitor.resume(now);
                        info!(service = %key.0, server = %key.1, "monitor probes changed");
                    }
                    e
                }
                None => {
                    debug!(service = %key.0, server = %key.1, "monitor started");
                    Entry {
                        monitor: Monitor::new(config, self.epoch, now),
                        probes,
                    }
                }
            };
            self.entries.insert(key, entry);
        }
        for key in old.keys() {
            info!(service = %key.0, server = %key.1, "monitor removed");
        }
        self.rewatch();
        self.drain(now)
    }

    fn rewatch(&mut self) {
        if !self.watch_local {
            return;
        }
        // per port: the monitors probing it, and the first address it is probed at (the
        // watcher looks that listener up directly; any listener on the port counts)
        let mut ports: BTreeMap<u16, (SocketAddr, Vec<Key>)> = BTreeMap::new();
        for (key, e) in &self.entries {
            for (spec, _, _) in e.probes.values() {
                let addr = match spec {
                    ProbeSpec::Tcp { target } => *target,
                    ProbeSpec::Http(c) => c.target.addr,
                    _ => continue,
                };
                let entry = ports.entry(addr.port()).or_insert((addr, Vec::new()));
                entry.1.push(key.clone());
            }
        }
        self.watchers.retain(|p, _| ports.contains_key(p));
        for (port, (addr, keys)) in ports {
            match self.watchers.get_mut(&port) {
                Some((_, k)) => *k = keys,
                None => {
                    self.watchers.insert(
                        port,
                        (
                            ListenWatcher::spawn_at(addr, Duration::from_millis(50)),
                            keys,
                        ),
                    );
                }
            }
        }
    }

    /// Every monitor's current report (for status and for a fresh upstream connection).
    pub fn current_reports(&self) -> Vec<Report> {
        self.entries
            .values()
            .map(|e| e.monitor.current_report())
            .collect()
    }

    /// The next moment a monitor has work.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.entries
            .values()
            .filter_map(|e| e.monitor.poll_timeout())
            .min()
    }

    /// Time passed: starts due probes; returns reports due.
    pub fn handle_timeout(&mut self, now: Timestamp) -> Vec<Report> {
        for e in self.entries.values_mut() {
            e.monitor.handle_timeout(now);
        }
        self.drain(now)
    }

    /// Waits for the next finished probe or listener event (cancel-safe).
    pub async fn next(&mut self) -> MonitorEvent {
        let watchers = &mut self.watchers;
        let listen = async {
            if watchers.is_empty() {
                return std::future::pending().await;
            }
            let futs = watchers.iter_mut().map(|(port, (w, _))| {
                let port = *port;
                Box::pin(async move { (port, w.changed().await) })
            });
            let ((port, ev), _, _) = futures_select_all(futs).await;
            MonitorEvent::Listen(port, ev)
        };
        tokio::select! {
            Some(done) = self.done_rx.recv() => MonitorEvent::Done(done),
            ev = listen => ev,
        }
    }

    /// Takes an event from [`MonitorSet::next`]; returns reports due.
    pub fn handle(&mut self, event: MonitorEvent, now: Timestamp) -> Vec<Report> {
        match event {
            // the node, not the server, lacked something: the run says nothing about it
            MonitorEvent::Done(done) if done.not_run => {
                self.metrics
                    .fd_shortages
                    .get_or_create(&labels(&[("during", "probe")]))
                    .inc();
                let error = done
                    .result
                    .error
                    .as_deref()
                    .unwrap_or("out of file descriptors");
                self.shortage.note("running a probe", &error);
                if let Some(e) = self.entries.get_mut(&done.key) {
                    e.monitor.handle_probe_not_run(&done.probe, now);
                }
            }
            MonitorEvent::Done(done) => {
                self.metrics
                    .probe_seconds
                    .get_or_create(&labels(&[("kind", done.kind)]))
                    .observe(done.elapsed.as_secs_f64());
                if let Some(e) = self.entries.get_mut(&done.key) {
                    let before = e.monitor.health();
                    e.monitor.handle_probe_result(done.result, now);
                    let after = e.monitor.health();
                    if after != before {
                        self.metrics
                            .health_changes
                            .get_or_create(&labels(&[
                                ("service", done.key.0.as_str()),
                                ("health", &after.to_string()),
                            ]))
                            .inc();
                        info!(service = %done.key.0, server = %done.key.1, health = %after, "health changed");
                    }
                }
            }
            MonitorEvent::Listen(port, Some(ListenEvent::Vanished { .. })) => {
                if let Some((_, keys)) = self.watchers.get(&port) {
                    for key in keys.clone() {
                        warn!(port, service = %key.0, server = %key.1, "listening socket vanished; re-probing at once");
                        if let Some(e) = self.entries.get_mut(&key) {
                            e.monitor.handle_trigger(now);
                        }
                    }
                }
            }
            MonitorEvent::Listen(port, None) => {
                self.watchers.remove(&port);
            }
            MonitorEvent::Listen(_, Some(ListenEvent::Listening { .. })) => {}
        }
        self.drain(now)
    }

    fn drain(&mut self, now: Timestamp) -> Vec<Report> {
        let _ = now;
        let mut reports = Vec::new();
        for (key, e) in &mut self.entries {
            while let Some(out) = e.monitor.poll_output() {
                match out {
                    MonitorOutput::Report(r) => reports.push(r),
                    MonitorOutput::RunProbe(probe) => {
                        let Some((spec, timeout, kind)) = e.probes.get(&probe).cloned() else {
                            continue;
                        };
                        let prober = self.prober.clone();
                        let tx = self.done_tx.clone();
                        let key = key.clone();
                        tokio::spawn(async move {
                            let outcome = prober.probe(&spec, timeout).await;
                            let not_run =
                                outcome.result.as_ref().is_err_and(|e| e.is_node_shortage());
                            let done = ProbeDone {
                                not_run,
                                result: outcome.to_probe_result(&probe),
                                elapsed: outcome.elapsed,
                                key,
                                probe,
                                kind,
                            };
                            let _ = tx.send(done).await;
                        });
                    }
                }
            }
        }
        reports
    }
}

/// Something a monitor set must handle.
#[derive(Debug)]
pub enum MonitorEvent {
    /// A probe finished.
    Done(ProbeDone),
    /// A watched port changed (None: the watcher stopped).
    Listen(u16, Option<ListenEvent>),
}

async fn futures_select_all<F, T>(futs: impl IntoIterator<Item = F>) -> (T, usize, Vec<F>)
where
    F: std::future::Future<Output = T> + Unpin,
{
    futures::future::select_all(futs).await
}
