//! The monitor (the patent's individual monitor object): one per service instance. It
//! schedules that instance's probes, applies each probe's rise/fall thresholds, keeps the
//! latest readings and emits reports — at once on a health change, otherwise as heartbeats.
//!
//! The monitor runs wherever the probes run: in an agent on the server (intrusive mode) or
//! in a farm or global node probing the server over the network (non-intrusive mode).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::candidate::{Health, Readings, Sample};
use crate::health::{ProbeHealth, Thresholds};
use crate::id::{ProbeId, ServerId, ServiceId};
use crate::time::Timestamp;

/// One probe as the monitor schedules it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeSchedule {
    /// The probe's name within its service.
    pub id: ProbeId,
    /// Time between the end of one run and the start of the next.
    pub interval: Duration,
    /// Rise/fall thresholds.
    pub thresholds: Thresholds,
    /// Whether a failure of this probe makes the instance down. Probes that only measure
    /// (load, hops, metrics) do not.
    pub affects_health: bool,
}

/// What a monitor watches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MonitorConfig {
    /// The service.
    pub service: ServiceId,
    /// The server offering it.
    pub server: ServerId,
    /// Its probes.
    pub probes: Vec<ProbeSchedule>,
    /// A report goes out at least this often (it doubles as a heartbeat).
    pub heartbeat: Duration,
}

/// One measurement taken by a probe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Measurement {
    /// Response time (HTTP, TCP connect, ICMP echo).
    ResponseTime(Duration),
    /// Pending requests.
    Pending(u64),
    /// Open connections.
    Connections(u64),
    /// Network hops.
    Hops(u32),
    /// A named application metric.
    Metric(String, f64),
}

/// The result of one probe run, as the shell hands it over.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// Which probe ran.
    pub probe: ProbeId,
    /// Whether it succeeded.
    pub ok: bool,
    /// What it measured.
    pub measurements: Vec<Measurement>,
    /// Why it failed, for operators.
    pub error: Option<String>,
    /// The failure hints at a crash (connection refused or reset): see
    /// [`Monitor::handle_probe_result`] for the confirmation re-probe it may earn.
    #[serde(default)]
    pub crash_hint: bool,
}

/// A monitor's report: health and readings of one service instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The service.
    pub service: ServiceId,
    /// The server.
    pub server: ServerId,
    /// Changes whenever the reporter restarts, so that sequence numbers can start over.
    pub epoch: u64,
    /// Increases with every report of this epoch.
    pub seq: u64,
    /// Health of the instance.
    pub health: Health,
    /// Why it has that health (the failing probe and its error).
    pub reason: String,
    /// Latest readings, timestamped on the monitor's timeline.
    pub readings: Readings,
}

/// What the monitor asks its shell to do.
// Outputs are drained at once; boxing the report would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum MonitorOutput {
    /// Run this probe now and hand back its result.
    RunProbe(ProbeId),
    /// Send this report upward.
    Report(Report),
}

/// Where a probe stands in its current failure episode (from the first failure after a
/// success to the next success). A crash hint may earn one immediate re-probe per episode,
/// never more: once a server is down every re-probe would be refused too, and re-probing on
/// each refusal turns a dead server into thousands of connects a second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Confirm {
    /// No confirmation re-probe spent in this episode.
    Armed,
    /// A crash hint (or a listen-watcher event) asked for a re-probe: the next crash-hinted
    /// failure confirms the crash.
    Pending,
    /// This episode's re-probe is spent: the normal interval applies until a success.
    Spent,
}

#[derive(Clone, Debug)]
struct ProbeSlot {
    schedule: ProbeSchedule,
    health: ProbeHealth,
    next_run: Option<Timestamp>,
    last_error: Option<String>,
    confirm: Confirm,
}

/// The monitor state machine of one service instance.
#[derive(Clone, Debug)]
pub struct Monitor {
    config: MonitorConfig,
    epoch: u64,
    seq: u64,
    probes: BTreeMap<ProbeId, ProbeSlot>,
    readings: Readings,
    health: Health,
    paused: bool,
    next_heartbeat: Timestamp,
    outputs: VecDeque<MonitorOutput>,
}

impl Monitor {
    /// A monitor whose probes are all due at `now`. `epoch` should differ between runs of
    /// the same monitor (the shell draws it at start-up).
    pub fn new(config: MonitorConfig, epoch: u64, now: Timestamp) -> Self {
        let mut m = Monitor {
            config: config.clone(),
            epoch,
            seq: 0,
            probes: BTreeMap::new(),
            readings: Readings::default(),
            health: Health::Unknown,
            paused: false,
            next_heartbeat: now + config.heartbeat,
            outputs: VecDeque::new(),
        };
        m.set_config(config, now);
        m
    }

    /// Current health of the instance.
    pub fn health(&self) -> Health {
        self.health
    }

    /// Latest readings.
    pub fn readings(&self) -> &Readings {
        &self.readings
    }

    /// The config in force.
    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    /// Swaps the probe set (a reload): probes that keep their name keep their state; new
    /// ones are due at once; removed ones are forgotten.
    pub fn set_config(&mut self, config: MonitorConfig, now: Timestamp) {
        let mut probes = BTreeMap::new();
        for schedule in &config.probes {
            let slot = match self.probes.remove(&schedule.id) {
                Some(mut old) => {
                    old.health.set_thresholds(schedule.thresholds);
                    if old.schedule.interval != schedule.interval {
                        old.next_run = old.next_run.map(|_| now);
                    }
                    old.schedule = schedule.clone();
                    old
                }
                None => ProbeSlot {
                    schedule: schedule.clone(),
                    health: ProbeHealth::new(schedule.thresholds),
                    next_run: Some(now),
                    last_error: None,
                    confirm: Confirm::Armed,
                },
            };
            probes.insert(schedule.id.clone(), slot);
        }
        self.probes = probes;
        if config.heartbeat != self.config.heartbeat {
            self.next_heartbeat = now + config.heartbeat;
        }
        self.config = config;
        self.recompute_health(now);
        self.handle_timeout(now);
    }

    /// Stops scheduling probes (reports go on with the last known state).
    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// Resumes probing: every probe not running is due at once.
    pub fn resume(&mut self, now: Timestamp) {
        self.paused = false;
        for slot in self.probes.values_mut() {
            if slot.next_run.is_some() {
                slot.next_run = Some(now);
            }
        }
        self.handle_timeout(now);
    }

    /// Something outside the probes suggests the instance just failed (an intrusive agent
    /// saw its listening socket vanish): every health probe not already running is due now,
    /// once per call, and a crash hint in its result confirms the crash at once (the event
    /// was the first sign, the refused probe the second).
    pub fn handle_trigger(&mut self, now: Timestamp) {
        for slot in self.probes.values_mut() {
            if !slot.schedule.affects_health || slot.health.state() == Health::Down {
                continue;
            }
            slot.confirm = Confirm::Pending;
            if slot.next_run.is_some() {
                slot.next_run = Some(now);
            }
        }
        self.handle_timeout(now);
    }

    /// A probe finished.
    ///
    /// Re-probe rule: a failure with a crash hint (refused, reset) on a probe that is not
    /// down yet earns one immediate re-probe per failure episode; if that re-probe fails
    /// with a crash hint too, the crash is confirmed and the probe goes down at once,
    /// without waiting for the rest of its fall count (a refused connection is an answer
    /// from the host, not a lost packet). Every other result waits for the probe's
    /// interval. So a server that refuses for 10 s at a 1 s interval is probed 11 or 12
    /// times, and a crash is confirmed one re-probe after it is first seen.
    pub fn handle_probe_result(&mut self, result: ProbeResult, now: Timestamp) {
        let Some(slot) = self.probes.get_mut(&result.probe) else {
            return; // a probe removed while it ran
        };
        let mut next_run = now + slot.schedule.interval;
        if result.ok {
            slot.confirm = Confirm::Armed;
            slot.health.observe(true);
        } else if !result.crash_hint || slot.health.state() == Health::Down {
            if slot.confirm == Confirm::Pending {
                slot.confirm = Confirm::Spent;
            }
            slot.health.observe(false);
        } else {
            match slot.confirm {
                Confirm::Armed => {
                    slot.health.observe(false);
                    if slot.health.state() != Health::Down {
                        slot.confirm = Confirm::Pending;
                        next_run = now;
                    } else {
                        slot.confirm = Confirm::Spent;
                    }
                }
                Confirm::Pending => {
                    slot.confirm = Confirm::Spent;
                    slot.health.force_down();
                }
                Confirm::Spent => {
                    slot.health.observe(false);
                }
            }
        }
        slot.next_run = Some(next_run);
        slot.last_error = if result.ok {
            None
        } else {
            result.error.clone()
        };
        for m in result.measurements {
            match m {
                Measurement::ResponseTime(d) => {
                    self.readings.response_time = Some(Sample::new(d, now))
                }
                Measurement::Pending(n) => self.readings.pending = Some(Sample::new(n, now)),
                Measurement::Connections(n) => {
                    self.readings.connections = Some(Sample::new(n, now))
                }
                Measurement::Hops(n) => self.readings.hops = Some(Sample::new(n, now)),
                Measurement::Metric(name, v) => {
                    self.readings.metrics.insert(name, Sample::new(v, now));
                }
            }
        }
        self.recompute_health(now);
        self.handle_timeout(now);
    }

    /// A probe could not run for a reason of the node's own (it had no file descriptor
    /// left): the run says nothing about the instance, so its health and readings stay as
    /// they were, and the probe is due again after its interval.
    pub fn handle_probe_not_run(&mut self, probe: &ProbeId, now: Timestamp) {
        let Some(slot) = self.probes.get_mut(probe) else {
            return;
        };
        slot.next_run = Some(now + slot.schedule.interval);
        self.handle_timeout(now);
    }

    /// Time passed: start due probes and send a due heartbeat.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if !self.paused {
            for (id, slot) in &mut self.probes {
                if slot.next_run.is_some_and(|t| t <= now) {
                    slot.next_run = None; // running
                    self.outputs.push_back(MonitorOutput::RunProbe(id.clone()));
                }
            }
        }
        if now >= self.next_heartbeat {
            self.report(now);
        }
    }

    /// The next moment [`Monitor::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let probes = if self.paused {
            None
        } else {
            self.probes.values().filter_map(|s| s.next_run).min()
        };
        Some(probes.map_or(self.next_heartbeat, |p| p.min(self.next_heartbeat)))
    }

    /// The next thing for the shell to do.
    pub fn poll_output(&mut self) -> Option<MonitorOutput> {
        self.outputs.pop_front()
    }

    /// The report describing the instance right now (also used for status pages).
    pub fn current_report(&self) -> Report {
        Report {
            service: self.config.service.clone(),
            server: self.config.server.clone(),
            epoch: self.epoch,
            seq: self.seq,
            health: self.health,
            reason: self.reason(),
            readings: self.readings.clone(),
        }
    }

    fn reason(&self) -> String {
        let failing: Vec<String> = self
            .probes
            .iter()
            .filter(|(_, s)| s.schedule.affects_health && s.health.state() == Health::Down)
            .map(|(id, s)| match &s.last_error {
                Some(e) => format!("{id} failing: {e}"),
                None => format!("{id} failing"),
            })
            .collect();
        if !failing.is_empty() {
            return failing.join("; ");
        }
        match self.health {
            Health::Up => "all probes passing".to_owned(),
            Health::Unknown => "waiting for first probe results".to_owned(),
            other => other.to_string(),
        }
    }

    fn recompute_health(&mut self, now: Timestamp) {
        let states: Vec<Health> = self
            .probes
            .values()
            .filter(|s| s.schedule.affects_health)
            .map(|s| s.health.state())
            .collect();
        let health = if states.contains(&Health::Down) {
            Health::Down
        } else if states.contains(&Health::Unknown) {
            Health::Unknown
        } else {
            Health::Up
        };
        if health != self.health {
            self.health = health;
            self.report(now);
        }
    }

    fn report(&mut self, now: Timestamp) {
        self.seq += 1;
        self.next_heartbeat = now + self.config.heartbeat;
        let report = self.current_report();
        self.outputs.push_back(MonitorOutput::Report(report));
    }
}
