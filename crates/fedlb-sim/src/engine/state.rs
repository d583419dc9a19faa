//! The state of one run: the simulated servers, the state machines of the roles, the
//! event queue, and what is counted.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use fedlb_core::{
    FarmConfig, FarmState, GlobalState, Monitor, ProbeId, RegionId, Report as CoreReport, Spread,
    Summary, Timestamp,
};
use ipnet::IpNet;
use rand::rngs::SmallRng;
use rand_distr::{Distribution, Exp, LogNormal};

use crate::scenario::{FaultKind, ProbeModel, Scenario, ServerModel, ServiceTime};
use crate::stats::Acc;
use crate::topology::{ServerInfo, Topology};

// Herds last about a TTL; a one-minute average would hide them.
pub(super) const UTIL_WINDOW: u64 = 10_000_000;

pub(super) fn us(d: Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}

pub(super) fn ts(t: u64) -> Timestamp {
    Timestamp::from_duration(Duration::from_micros(t))
}

pub(super) fn from_ts(t: Timestamp) -> u64 {
    us(t.as_duration())
}

/// What is shared by every variant of one scenario: servers, latencies, fault targets.
pub(crate) struct Prepared {
    pub(super) servers: Vec<ServerInfo>,
    pub(super) models: Vec<ServerModel>,
    /// Region × server round-trip time, µs.
    pub(super) rtt: Vec<Vec<u64>>,
    /// Region × place round-trip time in ms (for per-region "closest").
    pub(super) place_rtt_ms: Vec<BTreeMap<String, f64>>,
    pub(super) by_addr: BTreeMap<IpAddr, u32>,
    pub(super) server_farm: Vec<Option<usize>>,
    pub(super) faults: Vec<(FaultKind, usize, u64, Option<u64>, f64)>,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Ev {
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
        payload: u32,
    },
    FarmTimer {
        farm: u16,
        generation: u32,
    },
    SummaryToGlobal {
        payload: u32,
    },
    GlobalTimer {
        generation: u32,
    },
    DnsUpdate {
        view: u16,
        payload: u32,
    },
    Fault,
}

pub(super) struct Entry {
    pub(super) at: u64,
    pub(super) seq: u64,
    pub(super) ev: Ev,
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

pub(super) enum Payload {
    Report(CoreReport),
    Summary(Summary),
    Answer(Vec<IpAddr>, Vec<(IpAddr, f64)>, u32),
}

pub(super) enum Sampler {
    Constant(f64),
    Exp(Exp<f64>),
    LogNormal(LogNormal<f64>),
}

impl Sampler {
    pub(super) fn new(st: ServiceTime) -> Sampler {
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

    pub(super) fn sample(&self, rng: &mut SmallRng) -> f64 {
        match self {
            Sampler::Constant(v) => *v,
            Sampler::Exp(d) => d.sample(rng),
            Sampler::LogNormal(d) => d.sample(rng),
        }
    }
}

#[derive(Clone, Copy)]
pub(super) struct Queued {
    pub(super) sent: u64,
    pub(super) region: u16,
}

pub(super) struct ServerSim {
    pub(super) model: ServerModel,
    pub(super) sampler: Sampler,
    pub(super) mean_us: f64,
    pub(super) busy: u32,
    pub(super) queue: VecDeque<Queued>,
    pub(super) down: bool,
    pub(super) slow: f64,
    pub(super) incarnation: u32,
    pub(super) requests: u64,
    pub(super) util_last: u64,
    pub(super) util_area: f64,
    pub(super) util_window_end: u64,
    pub(super) util_max: f64,
}

impl ServerSim {
    pub(super) fn account(&mut self, now: u64, window: u64) {
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

pub(super) struct MonSim {
    pub(super) monitor: Monitor,
    pub(super) probes: Vec<(ProbeId, ProbeModel)>,
    pub(super) timer_at: Option<u64>,
    pub(super) generation: u32,
}

pub(super) struct FarmSim {
    pub(super) config: FarmConfig,
    pub(super) state: Option<FarmState>,
    pub(super) epoch: u64,
    pub(super) node_down: bool,
    pub(super) timer_at: Option<u64>,
    pub(super) generation: u32,
}

pub(super) struct GlobalSim {
    pub(super) state: GlobalState,
    /// What its DNS server serves to each region of clients: the default region's view
    /// first, then one per region the core decides for.
    pub(super) views: Vec<DnsView>,
    pub(super) timer_at: Option<u64>,
    pub(super) generation: u32,
}

/// One region's answer at the DNS server (a view, in BIND's words).
pub(super) struct DnsView {
    /// Whose it is, as the core's `Publish::region` names it (`None`: the default region).
    pub(super) region: Option<RegionId>,
    /// The answer and its TTL in µs (from the core's Publish).
    pub(super) answer: Vec<u32>,
    /// The answer's members with their shares (what the embedded server spreads by).
    pub(super) shares: Vec<(IpAddr, f64)>,
    pub(super) answer_ttl: u64,
    /// The last answer handed to the DNS server (a new TTL alone is not a flip).
    pub(super) published: Vec<IpAddr>,
}

#[derive(Clone)]
pub(super) struct Resolver {
    pub(super) answer: Vec<u32>,
    /// `None` until its first answer.
    pub(super) expires: Option<u64>,
    /// The subnet the DNS server keys it by (hashed spreading).
    pub(super) key: IpNet,
}

/// One run.
pub(super) struct World<'a> {
    pub(super) sc: &'a Scenario,
    pub(super) pre: &'a Prepared,
    pub(super) topo: &'a Topology,
    pub(super) now: u64,
    pub(super) end: u64,
    pub(super) warmup: u64,
    pub(super) seq: u64,
    pub(super) heap: BinaryHeap<Reverse<Entry>>,
    pub(super) payloads: Vec<Option<Payload>>,
    pub(super) free: Vec<u32>,
    pub(super) servers: Vec<ServerSim>,
    pub(super) monitors: Vec<MonSim>,
    pub(super) farms: Vec<FarmSim>,
    pub(super) global: GlobalSim,
    pub(super) flat: bool,
    /// How the DNS server answers a set (the variant's `spread`).
    pub(super) spread: Spread,
    /// The view (index into `global.views`) each client region resolves in.
    pub(super) client_view: Vec<usize>,
    pub(super) resolvers: Vec<Vec<Resolver>>,
    pub(super) max_rate: Vec<f64>,
    pub(super) arrival_rng: SmallRng,
    pub(super) service_rng: SmallRng,
    pub(super) client_rng: SmallRng,
    pub(super) fault_times: Vec<u64>,
    // statistics
    pub(super) overall: Acc,
    pub(super) regions: Vec<Acc>,
    pub(super) bins: Vec<(u64, f64, u64)>,
    pub(super) bin_us: u64,
    pub(super) dns_changes: u64,
    pub(super) flips: u64,
    pub(super) last_to_down: Option<u64>,
}
