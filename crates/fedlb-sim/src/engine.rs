//! The discrete-event engine: one run of one policy variant on the simulated clock.
//!
//! Control plane: a real [`Monitor`] per server, fed probe results computed from the
//! simulated server at probe time and delivered after the probe's duration; reports reach
//! a real [`FarmState`] after a delay; summaries reach a real [`GlobalState`]; its
//! publishes reach the "DNS" after a delay. Every state machine's `poll_timeout` is an
//! event. Data plane: requests arrive per region (Poisson, thinned for time-varying
//! rates), ask one of the region's caching resolvers, go to one answered server and queue
//! there for one of its slots.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use fedlb_core::{
    CandidateId, Distance, FarmConfig, FarmOutput, FarmState, GlobalConfig, GlobalOutput,
    GlobalState, Measurement, MemberSpec, Monitor, MonitorOutput, Policy, ProbeId, ProbeResult,
    Report as CoreReport, SelectorConfig, Summary, TierService, Timestamp, TtlRule,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, LogNormal};

use crate::Error;
use crate::report::{BinResult, PolicyResult, RegionResult, ServerResult};
use crate::scenario::{
    FaultKind, Measures, ProbeModel, Scenario, ServerModel, ServiceTime, TtlMode, Variant,
    fibre_rtt,
};
use crate::stats::Acc;
use crate::topology::{ServerInfo, Topology};

// Herds last about a TTL; a one-minute average would hide them.
const UTIL_WINDOW: u64 = 10_000_000;

fn us(d: Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}

fn ts(t: u64) -> Timestamp {
    Timestamp::from_duration(Duration::from_micros(t))
}

fn from_ts(t: Timestamp) -> u64 {
    us(t.as_duration())
}

/// What is shared by every variant of one scenario: servers, latencies, fault targets.
pub(crate) struct Prepared {
    pub servers: Vec<ServerInfo>,
    pub models: Vec<ServerModel>,
    /// Region × server round-trip time, µs.
    pub rtt: Vec<Vec<u64>>,
    /// Region × place round-trip time in ms (for per-region "closest").
    pub place_rtt_ms: Vec<BTreeMap<String, f64>>,
    pub by_addr: BTreeMap<IpAddr, u32>,
    pub server_farm: Vec<Option<usize>>,
    pub faults: Vec<(FaultKind, usize, u64, Option<u64>, f64)>,
}

impl Prepared {
    pub fn new(topo: &Topology, sc: &Scenario) -> Result<Prepared, Error> {
        let servers = topo.servers()?;
        let farm_ids: Vec<_> = topo.farms.keys().cloned().collect();
        let server_farm: Vec<Option<usize>> = servers
            .iter()
            .map(|s| {
                s.farm
                    .as_ref()
                    .and_then(|f| farm_ids.iter().position(|x| x == f))
            })
            .collect();
        for name in sc.servers.keys() {
            if !servers.iter().any(|s| s.id.as_str() == name) {
                return Err(Error::Mismatch(format!(
                    "scenario servers.{name}: no server \"{name}\" offers service \"{}\"",
                    topo.service
                )));
            }
        }
        let models = servers
            .iter()
            .map(|s| {
                sc.servers
                    .get(s.id.as_str())
                    .copied()
                    .unwrap_or(sc.server_defaults)
            })
            .collect();
        let mut locations = topo.locations.clone();
        locations.extend(sc.locations.iter().map(|(k, v)| (k.clone(), *v)));
        let mut places: Vec<String> = servers.iter().map(|s| s.place.clone()).collect();
        places.dedup();
        for name in sc.locations.keys() {
            if !places.contains(name) {
                return Err(Error::Mismatch(format!(
                    "scenario farms.{name}: no farm or direct server \"{name}\""
                )));
            }
        }
        let mut place_rtt_ms = Vec::new();
        for (i, region) in sc.regions.iter().enumerate() {
            let row = sc.rtt_ms.get(&region.name);
            let mut out = BTreeMap::new();
            for place in &places {
                let ms = match (
                    row.and_then(|r| r.get(place)),
                    region.location,
                    locations.get(place),
                ) {
                    (Some(ms), _, _) => *ms,
                    (None, Some(a), Some(b)) => fibre_rtt(&a, b).as_secs_f64() * 1e3,
                    _ => {
                        return Err(Error::Mismatch(format!(
                            "regions[{i}] \"{}\": no latency to \"{place}\"; give rtt_ms.{}.{place}, or locations of both",
                            region.name, region.name
                        )));
                    }
                };
                out.insert(place.clone(), ms);
            }
            if let Some(row) = row {
                for to in row.keys() {
                    if !places.contains(to) {
                        return Err(Error::Mismatch(format!(
                            "scenario rtt_ms.{}.{to}: no farm or direct server \"{to}\"",
                            region.name
                        )));
                    }
                }
            }
            place_rtt_ms.push(out);
        }
        let rtt = place_rtt_ms
            .iter()
            .map(|row| {
                servers
                    .iter()
                    .map(|s| (row[&s.place] * 1e3).round() as u64)
                    .collect()
            })
            .collect();
        let mut by_addr = BTreeMap::new();
        for (i, s) in servers.iter().enumerate() {
            for a in &s.addresses {
                by_addr.insert(*a, i as u32);
            }
        }
        let mut faults = Vec::new();
        for (i, f) in sc.faults.iter().enumerate() {
            let target = match f.kind {
                FaultKind::ServerDown | FaultKind::ServerSlow => {
                    servers.iter().position(|s| s.id.as_str() == f.target)
                }
                FaultKind::FarmDown | FaultKind::FarmNodeDown => {
                    farm_ids.iter().position(|x| x.as_str() == f.target)
                }
            }
            .ok_or_else(|| {
                Error::Mismatch(format!(
                    "scenario faults[{i}].target: no {} \"{}\"",
                    match f.kind {
                        FaultKind::ServerDown | FaultKind::ServerSlow => "server",
                        _ => "farm",
                    },
                    f.target
                ))
            })?;
            faults.push((f.kind, target, us(f.at), f.until.map(us), f.factor));
        }
        Ok(Prepared {
            servers,
            models,
            rtt,
            place_rtt_ms,
            by_addr,
            server_farm,
            faults,
        })
    }
}

#[derive(Clone, Copy, Debug)]
enum Ev {
    Arrival {
        region: u16,
    },
    Departure {
        server: u32,
        sent: u64,
        region: u16,
        incarnation: u32,
    },
    MonitorTimer {
        m: u32,
        generation: u32,
    },
    ProbeDone {
        m: u32,
        probe: u16,
        ok: bool,
        value: u64,
    },
    ReportToFarm {
        farm: u16,
        payload: u32,
    },
    ReportToGlobal {
        g: u16,
        payload: u32,
    },
    FarmTimer {
        farm: u16,
        generation: u32,
    },
    SummaryToGlobal {
        g: u16,
        payload: u32,
    },
    GlobalTimer {
        g: u16,
        generation: u32,
    },
    DnsUpdate {
        g: u16,
        payload: u32,
    },
    Fault,
}

struct Entry {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

enum Payload {
    Report(CoreReport),
    Summary(Summary),
    Answer(Vec<IpAddr>, u32),
}

enum Sampler {
    Constant(f64),
    Exp(Exp<f64>),
    LogNormal(LogNormal<f64>),
}

impl Sampler {
    fn new(st: ServiceTime) -> Sampler {
        let mean_us = st.mean().as_secs_f64() * 1e6;
        match st {
            ServiceTime::Constant(_) => Sampler::Constant(mean_us),
            ServiceTime::Exponential(_) => {
                Sampler::Exp(Exp::new(1.0 / mean_us).expect("mean is positive"))
            }
            ServiceTime::LogNormal { cv, .. } => {
                let s2 = (1.0 + cv * cv).ln();
                Sampler::LogNormal(
                    LogNormal::new(mean_us.ln() - s2 / 2.0, s2.sqrt()).expect("cv is positive"),
                )
            }
        }
    }

    fn sample(&self, rng: &mut SmallRng) -> f64 {
        match self {
            Sampler::Constant(v) => *v,
            Sampler::Exp(d) => d.sample(rng),
            Sampler::LogNormal(d) => d.sample(rng),
        }
    }
}

#[derive(Clone, Copy)]
struct Queued {
    sent: u64,
    region: u16,
}

struct ServerSim {
    model: ServerModel,
    sampler: Sampler,
    mean_us: f64,
    busy: u32,
    queue: VecDeque<Queued>,
    down: bool,
    slow: f64,
    incarnation: u32,
    requests: u64,
    util_last: u64,
    util_area: f64,
    util_window_end: u64,
    util_max: f64,
}

impl ServerSim {
    fn account(&mut self, now: u64, window: u64) {
        while now >= self.util_window_end {
            self.util_area += f64::from(self.busy) * (self.util_window_end - self.util_last) as f64;
            let u = self.util_area / (f64::from(self.model.slots) * window as f64);
            self.util_max = self.util_max.max(u);
            self.util_area = 0.0;
            self.util_last = self.util_window_end;
            self.util_window_end += window;
        }
        if now > self.util_last {
            self.util_area += f64::from(self.busy) * (now - self.util_last) as f64;
            self.util_last = now;
        }
    }
}

struct MonSim {
    monitor: Monitor,
    probes: Vec<(ProbeId, ProbeModel)>,
    timer_at: Option<u64>,
    generation: u32,
}

struct FarmSim {
    config: FarmConfig,
    state: Option<FarmState>,
    epoch: u64,
    node_down: bool,
    timer_at: Option<u64>,
    generation: u32,
}

struct GlobalSim {
    state: GlobalState,
    /// What its DNS server serves: the answer and its TTL in µs (from the core's Publish).
    answer: Vec<u32>,
    answer_ttl: u64,
    /// The last answer handed to its DNS server (a new TTL alone is not a flip).
    published: Vec<IpAddr>,
    timer_at: Option<u64>,
    generation: u32,
}

#[derive(Clone)]
struct Resolver {
    answer: Vec<u32>,
    /// `None` until its first answer.
    expires: Option<u64>,
}

/// One run.
struct World<'a> {
    sc: &'a Scenario,
    pre: &'a Prepared,
    topo: &'a Topology,
    now: u64,
    end: u64,
    warmup: u64,
    seq: u64,
    heap: BinaryHeap<Reverse<Entry>>,
    payloads: Vec<Option<Payload>>,
    free: Vec<u32>,
    servers: Vec<ServerSim>,
    monitors: Vec<MonSim>,
    farms: Vec<FarmSim>,
    globals: Vec<GlobalSim>,
    flat: bool,
    resolvers: Vec<Vec<Resolver>>,
    max_rate: Vec<f64>,
    arrival_rng: SmallRng,
    service_rng: SmallRng,
    client_rng: SmallRng,
    fault_times: Vec<u64>,
    // statistics
    overall: Acc,
    regions: Vec<Acc>,
    bins: Vec<(u64, f64, u64)>,
    bin_us: u64,
    dns_changes: u64,
    flips: u64,
    last_to_down: Option<u64>,
}

fn seeded(seed: u64, stream: u64) -> SmallRng {
    // splitmix-style mixing keeps the streams independent of each other
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    SmallRng::seed_from_u64(z ^ (z >> 31))
}

fn with_overrides(
    base: &SelectorConfig,
    v: &Variant,
    policy: Option<&Policy>,
    answers: Option<usize>,
) -> SelectorConfig {
    let mut s = base.clone();
    if let Some(p) = policy {
        s.policy = p.clone();
    }
    if let Some(h) = v.hysteresis {
        s.hysteresis = h;
    }
    if let Some(n) = answers {
        s.answers = n;
    }
    if let Some(r) = v.rotate_every {
        s.rotate_every = r;
    }
    s
}

/// The TTL mode of a variant, with defaults filled in.
pub(crate) fn ttl_mode(topo: &Topology, sc: &Scenario, v: &Variant) -> TtlMode {
    let fixed = sc.ttl.unwrap_or(topo.ttl);
    match v.ttl {
        None => TtlMode::Fixed(fixed),
        Some(TtlMode::Fixed(d)) => TtlMode::Fixed(d),
        Some(TtlMode::Derived { min, max }) => TtlMode::Derived {
            min: if min.is_zero() { sc.ttl_min } else { min },
            max: if max.is_zero() {
                sc.ttl_max.unwrap_or(fixed)
            } else {
                max
            },
        },
    }
}

/// The selectors a variant runs: (global, local by farm).
pub(crate) fn selectors(
    topo: &Topology,
    v: &Variant,
) -> Result<(SelectorConfig, BTreeMap<fedlb_core::FarmId, SelectorConfig>), Error> {
    let base = &topo.global_service()?.selector;
    let global = match &v.flat {
        Some(p) => with_overrides(base, v, Some(p), v.answers),
        None => with_overrides(base, v, v.global.as_ref(), v.global_answers),
    };
    let local = topo
        .farms
        .iter()
        .filter_map(|(id, f)| {
            let svc = f.services.get(&topo.service)?;
            Some((
                id.clone(),
                with_overrides(&svc.selector, v, v.local.as_ref(), v.answers),
            ))
        })
        .collect();
    Ok((global, local))
}

/// Runs one variant.
pub(crate) fn run(
    topo: &Topology,
    sc: &Scenario,
    pre: &Prepared,
    v: &Variant,
    seed: u64,
) -> Result<PolicyResult, Error> {
    let mut w = World::new(topo, sc, pre, v, seed)?;
    w.start();
    while let Some(Reverse(e)) = w.heap.pop() {
        if e.at > w.end {
            break;
        }
        w.now = e.at;
        w.handle(e.ev);
    }
    Ok(w.finish(v))
}

impl<'a> World<'a> {
    fn new(
        topo: &'a Topology,
        sc: &'a Scenario,
        pre: &'a Prepared,
        v: &Variant,
        seed: u64,
    ) -> Result<World<'a>, Error> {
        let (global_sel, local_sel) = selectors(topo, v)?;
        let flat = v.flat.is_some();
        let n_globals = if v.per_region { sc.regions.len() } else { 1 };
        let warmup = us(sc.warmup);
        let mut globals = Vec::new();
        for g in 0..n_globals {
            let distance = |place: &str, declared: Option<Distance>| {
                if v.per_region {
                    Some(Distance::Pinned(pre.place_rtt_ms[g][place]))
                } else {
                    declared
                }
            };
            let members: Vec<MemberSpec> = if flat {
                pre.servers
                    .iter()
                    .map(|s| MemberSpec {
                        id: CandidateId::from(&s.id),
                        addresses: s.addresses.clone(),
                        capacity: s.capacity,
                        distance: distance(&s.place, s.distance),
                        liveness: s.liveness,
                    })
                    .collect()
            } else {
                topo.global_service()?
                    .members
                    .iter()
                    .map(|m| {
                        let mut m = m.clone();
                        m.distance = distance(m.id.as_str(), m.distance);
                        m
                    })
                    .collect()
            };
            let ttl = match ttl_mode(topo, sc, v) {
                TtlMode::Fixed(d) => TtlRule::fixed(d),
                TtlMode::Derived { min, max } => TtlRule::derived(min, max),
            };
            let config = GlobalConfig {
                services: BTreeMap::from([(
                    topo.service.clone(),
                    TierService {
                        selector: global_sel.clone(),
                        members,
                    },
                )]),
                ttl: BTreeMap::from([(topo.service.clone(), ttl)]),
            };
            globals.push(GlobalSim {
                state: GlobalState::new(config, seed.wrapping_add(g as u64)),
                answer: Vec::new(),
                answer_ttl: 0,
                published: Vec::new(),
                timer_at: None,
                generation: 0,
            });
        }
        let farms = if flat {
            Vec::new()
        } else {
            topo.farms
                .values()
                .map(|f| {
                    let mut config = f.clone();
                    config.services.retain(|s, _| s == &topo.service);
                    if let Some(svc) = config.services.get_mut(&topo.service) {
                        svc.selector = local_sel[&f.farm].clone();
                    }
                    FarmSim {
                        state: None,
                        config,
                        epoch: 0,
                        node_down: false,
                        timer_at: None,
                        generation: 0,
                    }
                })
                .collect()
        };
        let servers = pre
            .models
            .iter()
            .map(|m| ServerSim {
                model: *m,
                sampler: Sampler::new(m.service_time),
                mean_us: m.service_time.mean().as_secs_f64() * 1e6,
                busy: 0,
                queue: VecDeque::new(),
                down: false,
                slow: 1.0,
                incarnation: 0,
                requests: 0,
                util_last: warmup,
                util_area: 0.0,
                util_window_end: warmup + UTIL_WINDOW.min(us(sc.duration) - warmup),
                util_max: 0.0,
            })
            .collect();
        let monitors = pre
            .servers
            .iter()
            .map(|s| {
                let setup = &topo.monitors[&s.id];
                let probes = setup
                    .config
                    .probes
                    .iter()
                    .map(|p| {
                        let model = sc
                            .probes
                            .get(p.id.as_str())
                            .or(setup.probes.get(&p.id))
                            .copied()
                            .unwrap_or(ProbeModel {
                                measures: Measures::Health,
                                timeout: Duration::from_millis(800),
                            });
                        (p.id.clone(), model)
                    })
                    .collect();
                let mut config = setup.config.clone();
                config.service = topo.service.clone();
                MonSim {
                    monitor: Monitor::new(config, 1, Timestamp::ZERO),
                    probes,
                    timer_at: None,
                    generation: 0,
                }
            })
            .collect();
        let resolvers = sc
            .regions
            .iter()
            .map(|r| {
                vec![
                    Resolver {
                        answer: Vec::new(),
                        expires: None,
                    };
                    r.resolvers as usize
                ]
            })
            .collect();
        let bin_us = us(sc.bin);
        let span = us(sc.duration) - warmup;
        let n_bins = span.div_ceil(bin_us) as usize;
        let mut fault_times: Vec<u64> = pre
            .faults
            .iter()
            .flat_map(|f| std::iter::once(f.2).chain(f.3))
            .collect();
        fault_times.sort_unstable();
        fault_times.dedup();
        Ok(World {
            sc,
            pre,
            topo,
            now: 0,
            end: us(sc.duration),
            warmup,
            seq: 0,
            heap: BinaryHeap::new(),
            payloads: Vec::new(),
            free: Vec::new(),
            servers,
            monitors,
            farms,
            globals,
            flat,
            resolvers,
            max_rate: sc.regions.iter().map(|r| r.max_rate()).collect(),
            arrival_rng: seeded(seed, 1),
            service_rng: seeded(seed, 2),
            client_rng: seeded(seed, 3),
            fault_times,
            overall: Acc::new(),
            regions: sc.regions.iter().map(|_| Acc::new()).collect(),
            bins: vec![(0, 0.0, 0); n_bins],
            bin_us,
            dns_changes: 0,
            flips: 0,
            last_to_down: None,
        })
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            at,
            seq: self.seq,
            ev,
        }));
    }

    fn store(&mut self, p: Payload) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.payloads[i as usize] = Some(p);
                i
            }
            None => {
                self.payloads.push(Some(p));
                (self.payloads.len() - 1) as u32
            }
        }
    }

    fn take(&mut self, i: u32) -> Payload {
        self.free.push(i);
        self.payloads[i as usize]
            .take()
            .expect("payload stored once")
    }

    fn start(&mut self) {
        for f in 0..self.farms.len() {
            self.start_farm(f);
        }
        for m in 0..self.monitors.len() {
            self.after_monitor(m, false);
        }
        for g in 0..self.globals.len() {
            self.after_global(g, false);
        }
        for r in 0..self.sc.regions.len() {
            self.next_arrival(r, 0);
        }
        for t in self.fault_times.clone() {
            self.push(t, Ev::Fault);
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Arrival { region } => self.arrival(region as usize),
            Ev::Departure {
                server,
                sent,
                region,
                incarnation,
            } => self.departure(server as usize, sent, region as usize, incarnation),
            Ev::MonitorTimer { m, generation } => {
                let m = m as usize;
                if self.monitors[m].generation == generation {
                    self.monitors[m].timer_at = None;
                    self.monitors[m].monitor.handle_timeout(ts(self.now));
                    self.after_monitor(m, true);
                }
            }
            Ev::ProbeDone {
                m,
                probe,
                ok,
                value,
            } => self.probe_done(m as usize, probe as usize, ok, value),
            Ev::ReportToFarm { farm, payload } => {
                let Payload::Report(r) = self.take(payload) else {
                    unreachable!("report payload")
                };
                let f = farm as usize;
                if let Some(state) = &mut self.farms[f].state {
                    // refused reports (unknown or reordered) are what the real node drops too
                    let _ = state.handle_report(&r, ts(self.now));
                    self.after_farm(f, false);
                }
            }
            Ev::ReportToGlobal { g, payload } => {
                let Payload::Report(r) = self.take(payload) else {
                    unreachable!("report payload")
                };
                let g = g as usize;
                let _ = self.globals[g].state.handle_report(&r, ts(self.now));
                self.after_global(g, false);
            }
            Ev::FarmTimer { farm, generation } => {
                let f = farm as usize;
                if self.farms[f].generation == generation {
                    self.farms[f].timer_at = None;
                    if let Some(state) = &mut self.farms[f].state {
                        state.handle_timeout(ts(self.now));
                        self.after_farm(f, true);
                    }
                }
            }
            Ev::SummaryToGlobal { g, payload } => {
                let Payload::Summary(s) = self.take(payload) else {
                    unreachable!("summary payload")
                };
                let g = g as usize;
                let _ = self.globals[g].state.handle_summary(&s, ts(self.now));
                self.after_global(g, false);
            }
            Ev::GlobalTimer { g, generation } => {
                let g = g as usize;
                if self.globals[g].generation == generation {
                    self.globals[g].timer_at = None;
                    self.globals[g].state.handle_timeout(ts(self.now));
                    self.after_global(g, true);
                }
            }
            Ev::DnsUpdate { g, payload } => {
                let Payload::Answer(addrs, ttl) = self.take(payload) else {
                    unreachable!("answer payload")
                };
                self.globals[g as usize].answer_ttl = us(Duration::from_secs(u64::from(ttl)));
                let answer: Vec<u32> = addrs
                    .iter()
                    .filter_map(|a| self.pre.by_addr.get(a).copied())
                    .collect();
                let dns = &mut self.globals[g as usize].answer;
                if *dns != answer {
                    if self.now >= self.warmup {
                        self.dns_changes += 1;
                    }
                    *dns = answer;
                }
            }
            Ev::Fault => self.apply_faults(),
        }
    }

    // ---- data plane ----

    fn next_arrival(&mut self, r: usize, from: u64) {
        let max = self.max_rate[r];
        if max <= 0.0 {
            return;
        }
        let gap: f64 = Exp::new(max)
            .expect("rate is positive")
            .sample(&mut self.arrival_rng);
        let at = from + ((gap * 1e6).round() as u64).max(1);
        if at <= self.end {
            self.push(at, Ev::Arrival { region: r as u16 });
        }
    }

    fn arrival(&mut self, r: usize) {
        let now = self.now;
        self.next_arrival(r, now);
        let rate = self.sc.regions[r].rate_at(Duration::from_micros(now));
        if self.arrival_rng.random::<f64>() * self.max_rate[r] >= rate {
            return; // thinned: the rate is below its maximum now
        }
        let g = if self.globals.len() > 1 { r } else { 0 };
        let k = self.resolvers[r].len();
        let which = if k == 1 {
            0
        } else {
            self.client_rng.random_range(0..k)
        };
        let expires = self.resolvers[r][which].expires;
        if expires.is_none_or(|e| now >= e) && !self.globals[g].answer.is_empty() {
            let mut ttl = self.globals[g].answer_ttl;
            if expires.is_none() {
                // As if cached some time before: resolvers that all started together
                // would otherwise stay in step for the whole run.
                ttl = (ttl as f64 * (1.0 - self.client_rng.random::<f64>())) as u64;
            }
            let res = &mut self.resolvers[r][which];
            res.answer.clone_from(&self.globals[g].answer);
            res.expires = Some(now + ttl);
        }
        let answer = &self.resolvers[r][which].answer;
        let s = match answer.len() {
            0 => {
                self.record(r, now, us(self.sc.client_timeout), Outcome::Refused);
                return;
            }
            1 => answer[0] as usize,
            n => answer[self.client_rng.random_range(0..n)] as usize,
        };
        if now >= self.warmup {
            self.servers[s].requests += 1;
        }
        if self.servers[s].down {
            self.last_to_down = Some(now);
            self.record(r, now, us(self.sc.client_timeout), Outcome::ToDown);
            return;
        }
        let srv = &mut self.servers[s];
        if srv.busy < srv.model.slots {
            srv.account(now, UTIL_WINDOW.min(self.end - self.warmup));
            srv.busy += 1;
            self.begin_service(s, now, r as u16);
        } else if (srv.queue.len() as u64) < u64::from(srv.model.queue_limit) {
            srv.queue.push_back(Queued {
                sent: now,
                region: r as u16,
            });
        } else {
            self.record(r, now, us(self.sc.client_timeout), Outcome::Refused);
        }
    }

    fn begin_service(&mut self, s: usize, sent: u64, region: u16) {
        let srv = &self.servers[s];
        let t = (srv.sampler.sample(&mut self.service_rng) * srv.slow).round() as u64;
        let incarnation = srv.incarnation;
        self.push(
            self.now + t.max(1),
            Ev::Departure {
                server: s as u32,
                sent,
                region,
                incarnation,
            },
        );
    }

    fn departure(&mut self, s: usize, sent: u64, r: usize, incarnation: u32) {
        let now = self.now;
        if self.servers[s].incarnation != incarnation {
            // the server died while serving it: the client waits out its timeout
            self.record(r, sent, us(self.sc.client_timeout), Outcome::ToDown);
            return;
        }
        let rtt = self.pre.rtt[r][s];
        self.record(r, sent, rtt + (now - sent), Outcome::Ok);
        let window = UTIL_WINDOW.min(self.end - self.warmup);
        let srv = &mut self.servers[s];
        match srv.queue.pop_front() {
            Some(q) => self.begin_service(s, q.sent, q.region),
            None => {
                srv.account(now, window);
                srv.busy -= 1;
            }
        }
    }

    fn record(&mut self, r: usize, sent: u64, response: u64, outcome: Outcome) {
        if sent < self.warmup {
            return;
        }
        self.overall.add(response, outcome);
        self.regions[r].add(response, outcome);
        let b = ((sent - self.warmup) / self.bin_us) as usize;
        if let Some(bin) = self.bins.get_mut(b) {
            bin.0 += 1;
            bin.1 += response as f64;
            bin.2 += u64::from(outcome == Outcome::ToDown);
        }
    }

    // ---- faults ----

    fn apply_faults(&mut self) {
        let now = self.now;
        let active = |k: FaultKind, target: usize| {
            self.pre.faults.iter().filter(move |(fk, t, at, until, _)| {
                *fk == k && *t == target && *at <= now && until.is_none_or(|u| now < u)
            })
        };
        let window = UTIL_WINDOW.min(self.end - self.warmup);
        for s in 0..self.servers.len() {
            // a dark site's servers are dark in every shape, flat or hierarchical
            let site_dark = self.pre.server_farm[s]
                .is_some_and(|f| active(FaultKind::FarmDown, f).next().is_some());
            let down = site_dark || active(FaultKind::ServerDown, s).next().is_some();
            let slow: f64 = active(FaultKind::ServerSlow, s).map(|f| f.4).product();
            let srv = &mut self.servers[s];
            let was_down = srv.down;
            srv.down = down;
            srv.slow = slow;
            if down && !was_down {
                // everything in it is lost; clients time out
                srv.account(now, window);
                srv.busy = 0;
                srv.incarnation += 1;
                let lost: Vec<Queued> = srv.queue.drain(..).collect();
                for q in lost {
                    self.record(
                        q.region as usize,
                        q.sent,
                        us(self.sc.client_timeout),
                        Outcome::ToDown,
                    );
                }
            }
        }
        for f in 0..self.farms.len() {
            let down = active(FaultKind::FarmDown, f).next().is_some();
            let node_down = down || active(FaultKind::FarmNodeDown, f).next().is_some();
            let farm = &mut self.farms[f];
            if node_down && !farm.node_down {
                farm.node_down = true;
                farm.state = None;
                farm.generation += 1;
                farm.timer_at = None;
            } else if !node_down && farm.node_down {
                farm.node_down = false;
                self.start_farm(f);
            }
        }
    }

    fn start_farm(&mut self, f: usize) {
        let farm = &mut self.farms[f];
        farm.epoch += 1;
        let seed = self.sc.seed ^ (f as u64 + 1) << 32 ^ farm.epoch;
        farm.state = Some(FarmState::new(
            farm.config.clone(),
            farm.epoch,
            seed,
            ts(self.now),
        ));
        self.after_farm(f, false);
    }

    // ---- control plane ----

    fn schedule(&mut self, next: Option<Timestamp>, fired: bool) -> Option<u64> {
        let t = from_ts(next?);
        Some(if t > self.now {
            t
        } else if fired {
            self.now + 1_000
        } else {
            self.now
        })
    }

    fn after_monitor(&mut self, m: usize, fired: bool) {
        while let Some(out) = self.monitors[m].monitor.poll_output() {
            match out {
                MonitorOutput::RunProbe(id) => self.start_probe(m, &id),
                MonitorOutput::Report(r) => self.send_report(m, r),
            }
        }
        let next = self.monitors[m].monitor.poll_timeout();
        if let Some(t) = self.schedule(next, fired) {
            let mon = &mut self.monitors[m];
            if mon.timer_at != Some(t) {
                mon.generation += 1;
                mon.timer_at = Some(t);
                let generation = mon.generation;
                self.push(
                    t,
                    Ev::MonitorTimer {
                        m: m as u32,
                        generation,
                    },
                );
            }
        }
    }

    fn start_probe(&mut self, m: usize, id: &ProbeId) {
        let Some(idx) = self.monitors[m].probes.iter().position(|(p, _)| p == id) else {
            return;
        };
        let model = self.monitors[m].probes[idx].1;
        let dead = self.servers[m].down;
        let rtt = us(self.sc.delays.probe_rtt);
        let timeout = us(model.timeout);
        let srv = &self.servers[m];
        let (after, ok, value) = if dead {
            (timeout, false, 0)
        } else {
            match model.measures {
                Measures::Health => {
                    let mean = srv.mean_us * srv.slow;
                    let ahead = (srv.busy as usize + srv.queue.len() + 1)
                        .saturating_sub(srv.model.slots as usize);
                    let rt =
                        rtt + (mean * (1.0 + ahead as f64 / f64::from(srv.model.slots))) as u64;
                    if rt > timeout {
                        (timeout, false, 0)
                    } else {
                        (rt, true, rt)
                    }
                }
                Measures::Load => (rtt, true, u64::from(srv.busy) + srv.queue.len() as u64),
                Measures::Nothing => (rtt, true, 0),
            }
        };
        self.push(
            self.now + after,
            Ev::ProbeDone {
                m: m as u32,
                probe: idx as u16,
                ok,
                value,
            },
        );
    }

    fn probe_done(&mut self, m: usize, idx: usize, ok: bool, value: u64) {
        let (id, model) = self.monitors[m].probes[idx].clone();
        let measurements = match (ok, model.measures) {
            (true, Measures::Health) => {
                vec![Measurement::ResponseTime(Duration::from_micros(value))]
            }
            (true, Measures::Load) => vec![Measurement::Pending(value)],
            _ => Vec::new(),
        };
        let result = ProbeResult {
            probe: id,
            ok,
            measurements,
            error: (!ok).then(|| "timed out".to_owned()),
            crash_hint: false,
        };
        self.monitors[m]
            .monitor
            .handle_probe_result(result, ts(self.now));
        self.after_monitor(m, false);
    }

    fn send_report(&mut self, m: usize, r: CoreReport) {
        let delays = self.sc.delays;
        match self.pre.server_farm[m].filter(|_| !self.flat) {
            Some(f) => {
                let payload = self.store(Payload::Report(r));
                self.push(
                    self.now + us(delays.report),
                    Ev::ReportToFarm {
                        farm: f as u16,
                        payload,
                    },
                );
            }
            None => {
                let at = self.now + us(delays.report) + us(delays.summary);
                for g in 0..self.globals.len() {
                    let payload = self.store(Payload::Report(r.clone()));
                    self.push(
                        at,
                        Ev::ReportToGlobal {
                            g: g as u16,
                            payload,
                        },
                    );
                }
            }
        }
    }

    fn after_farm(&mut self, f: usize, fired: bool) {
        let now = self.now;
        let Some(state) = &mut self.farms[f].state else {
            return;
        };
        let mut summaries = Vec::new();
        while let Some(out) = state.poll_output() {
            match out {
                FarmOutput::Summary(s) => summaries.push(s),
                FarmOutput::Decision(..) => {
                    if now >= self.warmup {
                        self.flips += 1;
                    }
                }
            }
        }
        let next = state.poll_timeout(ts(now));
        let at = now + us(self.sc.delays.summary);
        for s in summaries {
            for g in 0..self.globals.len() {
                let payload = self.store(Payload::Summary(s.clone()));
                self.push(
                    at,
                    Ev::SummaryToGlobal {
                        g: g as u16,
                        payload,
                    },
                );
            }
        }
        if let Some(t) = self.schedule(next, fired) {
            let farm = &mut self.farms[f];
            if farm.timer_at != Some(t) {
                farm.generation += 1;
                farm.timer_at = Some(t);
                let generation = farm.generation;
                self.push(
                    t,
                    Ev::FarmTimer {
                        farm: f as u16,
                        generation,
                    },
                );
            }
        }
    }

    fn after_global(&mut self, g: usize, fired: bool) {
        let now = self.now;
        let glob = &mut self.globals[g];
        let mut answers = Vec::new();
        let mut flips = 0;
        while let Some(GlobalOutput::Publish(p)) = glob.state.poll_output() {
            if p.decision.addresses != glob.published {
                flips += 1;
                glob.published.clone_from(&p.decision.addresses);
            }
            answers.push((p.decision.addresses, p.ttl));
        }
        if now >= self.warmup {
            self.flips += flips;
        }
        let next = glob.state.poll_timeout(ts(now));
        let at = now + us(self.sc.delays.publish);
        for (a, ttl) in answers {
            let payload = self.store(Payload::Answer(a, ttl));
            self.push(
                at,
                Ev::DnsUpdate {
                    g: g as u16,
                    payload,
                },
            );
        }
        if let Some(t) = self.schedule(next, fired) {
            let glob = &mut self.globals[g];
            if glob.timer_at != Some(t) {
                glob.generation += 1;
                glob.timer_at = Some(t);
                let generation = glob.generation;
                self.push(
                    t,
                    Ev::GlobalTimer {
                        g: g as u16,
                        generation,
                    },
                );
            }
        }
    }

    fn finish(mut self, v: &Variant) -> PolicyResult {
        let end = self.end;
        let window = UTIL_WINDOW.min(self.end - self.warmup);
        for s in &mut self.servers {
            s.account(end, window);
        }
        let span_s = (self.end - self.warmup) as f64 / 1e6;
        let servers = self
            .pre
            .servers
            .iter()
            .zip(&self.servers)
            .map(|(info, s)| ServerResult {
                name: info.id.0.clone(),
                requests: s.requests,
                max_utilisation: s.util_max,
            })
            .collect::<Vec<_>>();
        PolicyResult {
            name: v.name.clone(),
            description: crate::report::describe(self.topo, self.sc, v),
            requests: self.overall.count,
            mean_ms: self.overall.mean_ms(),
            p50_ms: self.overall.quantile_ms(0.5),
            p99_ms: self.overall.quantile_ms(0.99),
            max_utilisation: servers
                .iter()
                .map(|s| s.max_utilisation)
                .fold(0.0, f64::max),
            to_down_share: self.overall.share(self.overall.to_down),
            refused_share: self.overall.share(self.overall.refused),
            dns_changes_per_hour: self.dns_changes as f64 * 3600.0 / span_s,
            flips_per_minute: self.flips as f64 * 60.0 / span_s,
            last_to_down: self.last_to_down.map(Duration::from_micros),
            regions: self
                .sc
                .regions
                .iter()
                .zip(&self.regions)
                .map(|(r, a)| RegionResult {
                    name: r.name.clone(),
                    requests: a.count,
                    mean_ms: a.mean_ms(),
                    p50_ms: a.quantile_ms(0.5),
                    p99_ms: a.quantile_ms(0.99),
                    to_down_share: a.share(a.to_down),
                })
                .collect(),
            series: self
                .bins
                .iter()
                .enumerate()
                .map(|(i, (n, sum, down))| BinResult {
                    start: Duration::from_micros(self.warmup + i as u64 * self.bin_us),
                    requests: *n,
                    mean_ms: if *n == 0 { 0.0 } else { sum / *n as f64 / 1e3 },
                    to_down_share: if *n == 0 {
                        0.0
                    } else {
                        *down as f64 / *n as f64
                    },
                })
                .collect(),
            servers,
        }
    }
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Served.
    Ok,
    /// Sent to a down server (or lost in one when it died).
    ToDown,
    /// Refused: the server's backlog was full, or no answer was published yet.
    Refused,
}
