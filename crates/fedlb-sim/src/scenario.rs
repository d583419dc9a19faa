//! The scenario file: what the simulated world looks like around a topology (clients,
//! networks, servers' speed, faults) and which policies to compare.
//!
//! TOML, read through `serde_path_to_error` into raw types with `deny_unknown_fields`, then
//! checked into a [`Scenario`]; every problem is reported, each with its field path
//! (`regions[1].rate`), as a topology's are. The rules shared with topologies live in
//! `fedlb-topology`: durations ([`fedlb_topology::duration`]: humane strings such as
//! `"500ms"`, `"1m30s"`, `"1h"`, or seconds), policy names ([`fedlb_topology::policy`])
//! and [`Location`].

use std::collections::BTreeMap;
use std::time::Duration;

use fedlb_core::{ClosestBy, Filter, Hysteresis, Policy, Spill, Spread};
use fedlb_topology::duration::{parse_duration_or_seconds, seconds_to_duration};
use fedlb_topology::policy::PolicyKind;
use fedlb_topology::{Location, Problem};
use serde::Deserialize;

use crate::error::Error;

/// Round-trip time over fibre between two places: 5 ms of access network plus 1 ms per
/// 100 km (light in fibre covers ≈ 200 km/ms, there and back).
pub fn fibre_rtt(a: &Location, b: &Location) -> Duration {
    Duration::from_secs_f64((5.0 + a.km_to(b) / 100.0) / 1e3)
}

/// A service-time distribution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ServiceTime {
    /// Always the same.
    Constant(Duration),
    /// Exponential with this mean (M/M/c).
    Exponential(Duration),
    /// Log-normal with this mean and coefficient of variation (heavy tail).
    LogNormal {
        /// Mean.
        mean: Duration,
        /// Standard deviation / mean.
        cv: f64,
    },
}

impl ServiceTime {
    /// The mean.
    pub fn mean(&self) -> Duration {
        match *self {
            ServiceTime::Constant(d) | ServiceTime::Exponential(d) => d,
            ServiceTime::LogNormal { mean, .. } => mean,
        }
    }
}

/// How a simulated server serves: concurrent slots, service time, backlog.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ServerModel {
    /// Requests served at once (the c of M/G/c).
    pub slots: u32,
    /// Time one request takes in a slot.
    pub service_time: ServiceTime,
    /// Requests waiting beyond this are refused (the listen backlog).
    pub queue_limit: u32,
}

/// A temporary change of a region's request rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Burst {
    /// Start.
    pub at: Duration,
    /// Length.
    pub duration: Duration,
    /// Rate multiplier while it lasts.
    pub factor: f64,
}

/// A daily cycle of a region's request rate: `rate × (1 + amplitude × cos(2π (t − peak) / period))`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Diurnal {
    /// 0..1.
    pub amplitude: f64,
    /// Length of a cycle (24 h for a day).
    pub period: Duration,
    /// When in the cycle the rate peaks.
    pub peak: Duration,
}

/// Clients in one place.
#[derive(Clone, Debug, PartialEq)]
pub struct Region {
    /// Its name.
    pub name: String,
    /// Where it is (for latencies not given in `rtt_ms`).
    pub location: Option<Location>,
    /// Mean request rate, per second.
    pub rate: f64,
    /// Daily cycle.
    pub diurnal: Option<Diurnal>,
    /// Bursts.
    pub bursts: Vec<Burst>,
    /// Caching resolvers the region's clients share (each request asks one at random).
    pub resolvers: u32,
}

impl Region {
    /// The request rate at `t`.
    pub fn rate_at(&self, t: Duration) -> f64 {
        let mut r = self.rate;
        if let Some(d) = self.diurnal {
            let phase = (t.as_secs_f64() - d.peak.as_secs_f64()) / d.period.as_secs_f64();
            r *= 1.0 + d.amplitude * (std::f64::consts::TAU * phase).cos();
        }
        for b in &self.bursts {
            if t >= b.at && t < b.at + b.duration {
                r *= b.factor;
            }
        }
        r.max(0.0)
    }

    /// An upper bound of [`Region::rate_at`] over all times.
    pub fn max_rate(&self) -> f64 {
        let diurnal = self.diurnal.map_or(1.0, |d| 1.0 + d.amplitude);
        // the worst overlap of bursts starts where one of them starts
        let bursts = self
            .bursts
            .iter()
            .map(|b| {
                self.bursts
                    .iter()
                    .filter(|o| o.at <= b.at && b.at < o.at + o.duration)
                    .map(|o| o.factor.max(1.0))
                    .product::<f64>()
            })
            .fold(1.0, f64::max);
        self.rate * diurnal * bursts
    }
}

/// What a fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// A server stops answering (probes fail, requests time out).
    ServerDown,
    /// A server's service times are multiplied by `factor`.
    ServerSlow,
    /// A whole site goes dark: its servers and its farm node.
    FarmDown,
    /// Only the farm node dies; its servers keep serving.
    FarmNodeDown,
}

/// A fault at given times.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    /// What happens.
    pub kind: FaultKind,
    /// The server or farm it happens to.
    pub target: String,
    /// Start.
    pub at: Duration,
    /// End (`None`: until the end of the run).
    pub until: Option<Duration>,
    /// Slowdown factor (`server_slow` only).
    pub factor: f64,
}

/// How long published answers are cached.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TtlMode {
    /// The same TTL on every answer.
    Fixed(Duration),
    /// No longer than the time until the global decision could next change (a
    /// challenger's dwell ending, the next rotation), clamped to the bounds; evaluated when
    /// a resolver asks, like an authoritative server that computes it per answer.
    Derived {
        /// Lower bound.
        min: Duration,
        /// Upper bound.
        max: Duration,
    },
}

/// One policy set to compare.
#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    /// Short name (table rows, CSV, plot legend).
    pub name: String,
    /// Single-level: the global node picks among all servers with this policy, as the
    /// patent's baselines do. `None`: hierarchical (farm nodes pick locally).
    pub flat: Option<Policy>,
    /// Global policy override (hierarchical).
    pub global: Option<Policy>,
    /// Local policy override (hierarchical).
    pub local: Option<Policy>,
    /// Hysteresis override for every tier.
    pub hysteresis: Option<Hysteresis>,
    /// Hysteresis override for the local (farm) tier alone; wins over `hysteresis` there.
    pub local_hysteresis: Option<Hysteresis>,
    /// Addresses answered by the local tier (or by the single tier when flat).
    pub answers: Option<usize>,
    /// Addresses answered by the global tier (hierarchical).
    pub global_answers: Option<usize>,
    /// Rotation period of rotating policies.
    pub rotate_every: Option<Duration>,
    /// TTL override.
    pub ttl: Option<TtlMode>,
    /// One answer per client region: each scenario region becomes one of the global node's
    /// regions (`GlobalConfig::regions`, distances its round-trip times to each farm), and
    /// its clients resolve in that region's view.
    pub per_region: bool,
    /// The local tier (the single tier when flat) answers every healthy member weighted by
    /// headroom (`answers = "weighted"`) instead of its top-N.
    pub weighted: bool,
    /// What the global tier's composite does when its best farm is over the load limit.
    pub spill: Option<Spill>,
    /// How the DNS server answers a set: the whole set (resolvers' clients spread evenly),
    /// or one member per query by weight / by the resolver's subnet, as the embedded server
    /// does with `dns.embedded.spread`.
    pub spread: Spread,
    /// The TTL shortens for answers with little headroom (`dns.ttl_by_load`).
    pub ttl_by_load: bool,
}

impl Variant {
    fn named(name: &str) -> Self {
        Variant {
            name: name.to_owned(),
            flat: None,
            global: None,
            local: None,
            hysteresis: None,
            local_hysteresis: None,
            answers: None,
            global_answers: None,
            rotate_every: None,
            ttl: None,
            per_region: false,
            weighted: false,
            spill: None,
            spread: Spread::All,
            ttl_by_load: false,
        }
    }

    /// Whether it is one of the patent's single-level baselines the suite compares every
    /// policy with: round robin, random, closest or least loaded over all servers.
    pub fn is_baseline(&self) -> bool {
        matches!(
            self.flat,
            Some(Policy::RoundRobin | Policy::Random | Policy::Closest(_) | Policy::LeastLoaded)
        )
    }

    /// The comparison run when a scenario lists no `[[policies]]`: the patent's four
    /// single-level baselines against fedlb's hierarchical policy, its knobs, and fedlb
    /// deciding per region of clients (`fedlb-regions`).
    pub fn defaults() -> Vec<Variant> {
        let flat = |name: &str, p: Policy| {
            let mut v = Variant::named(name);
            v.flat = Some(p);
            v.hysteresis = Some(Hysteresis::NONE);
            v
        };
        let mut rr = flat("round-robin", Policy::RoundRobin);
        rr.rotate_every = Some(Duration::from_secs(1));
        let mut random = flat("random", Policy::Random);
        random.rotate_every = Some(Duration::from_secs(1));
        let fedlb = || {
            let mut v = Variant::named("fedlb");
            v.global = Some(Policy::Closest(ClosestBy::Auto));
            v.local = Some(Policy::LeastLoaded);
            v
        };
        let mut no_hyst = fedlb();
        no_hyst.name = "fedlb-no-hyst".into();
        no_hyst.hysteresis = Some(Hysteresis::NONE);
        let mut top2 = fedlb();
        top2.name = "fedlb-top2".into();
        top2.answers = Some(2);
        let mut derived = fedlb();
        derived.name = "fedlb-ttl-derived".into();
        derived.ttl = Some(TtlMode::Derived {
            min: Duration::from_secs(1),
            max: Duration::ZERO, // filled in with the fixed TTL
        });
        // One answer per region of clients, each farm's single preferred server: closest
        // from each region among the farms under their load limit, else the least loaded, a
        // region moved whole to the next farm over the limit; no hysteresis inside a farm
        // (a least-loaded choice held for a dwell herds every resolver that refreshes onto
        // one server). fedlb's default for a topology with regions until the suite chose
        // the one below.
        let mut top1 = fedlb();
        top1.local_hysteresis = Some(Hysteresis::NONE);
        top1.name = "fedlb-regions-top1".into();
        top1.global = Some(Policy::Composite {
            filters: vec![Filter::MaxLoad(0.8)],
            rank: Box::new(Policy::Closest(ClosestBy::Auto)),
            fallback: Some(Box::new(Policy::LeastLoaded)),
        });
        top1.per_region = true;
        // The same without the load limit: each region always answered by its closest
        // farm, so that the suite shows what moving a whole region at once costs.
        let mut regions_closest = top1.clone();
        regions_closest.name = "fedlb-regions-closest".into();
        regions_closest.global = Some(Policy::Closest(ClosestBy::Auto));
        // fedlb's default for a topology with regions (what `fedlb_topology` gives a service
        // that sets no tier, published by the embedded server): answers sized to capacity.
        // Each farm answers all its healthy servers weighted by headroom; a region whose
        // closest farm is over the limit is split with the next ones (only its excess
        // moves); the DNS server hands each resolver one member by weight, keyed by its
        // subnet (`spread = "hashed"`).
        let mut regions = top1.clone();
        regions.name = "fedlb-regions".into();
        regions.weighted = true;
        regions.spill = Some(Spill::Split);
        regions.spread = Spread::Hashed;
        // ... with the region moved whole instead of split
        let mut moved = regions.clone();
        moved.name = "fedlb-regions-move".into();
        moved.spill = Some(Spill::Move);
        // ... drawn per query by weight (`spread = "weighted"`) instead of keyed by subnet
        let mut drawn = regions.clone();
        drawn.name = "fedlb-regions-drawn".into();
        drawn.spread = Spread::Weighted;
        // ... with a TTL shortened by the answer's lack of headroom (`dns.ttl_by_load`)
        let mut ttl_load = regions.clone();
        ttl_load.name = "fedlb-regions-ttl-load".into();
        ttl_load.ttl_by_load = true;
        // ... published to a DNS server that hands out the whole set (BIND, Knot, PowerDNS):
        // each resolver's clients spread evenly over it, weights unseen
        let mut whole = regions.clone();
        whole.name = "fedlb-regions-whole-set".into();
        whole.spread = Spread::All;
        // Power of two choices inside each farm, one server per farm
        let mut two = top1.clone();
        two.name = "fedlb-two-choices".into();
        two.local = Some(Policy::TwoChoices);
        vec![
            rr,
            random,
            flat("closest", Policy::Closest(ClosestBy::Auto)),
            flat("least-loaded", Policy::LeastLoaded),
            fedlb(),
            no_hyst,
            top2,
            derived,
            regions,
            top1,
            regions_closest,
            moved,
            drawn,
            ttl_load,
            whole,
            two,
        ]
    }
}

/// Transit delays of the control plane.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Delays {
    /// Round trip between a farm node (or agent) and a server it probes.
    pub probe_rtt: Duration,
    /// A monitor's report to its farm node.
    pub report: Duration,
    /// A farm node's summary (or a directly attached monitor's report) to the global node.
    pub summary: Duration,
    /// From the global node's decision to the DNS server answering it.
    pub publish: Duration,
}

/// What a probe measures in the simulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measures {
    /// Up/down and response time (tcp, http, icmp).
    Health,
    /// Pending requests: the queue and the busy slots at probe time.
    Load,
    /// Nothing the simulation models (hops, commands): always succeeds.
    Nothing,
}

/// How one probe behaves in the simulation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProbeModel {
    /// What it measures.
    pub measures: Measures,
    /// A health probe slower than this fails.
    pub timeout: Duration,
}

/// A checked scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Its name.
    pub name: String,
    /// Simulated time.
    pub duration: Duration,
    /// Statistics start here: clients send from the start, but their first requests meet
    /// an empty DNS and resolvers that have not settled yet.
    pub warmup: Duration,
    /// Seed of every random draw (the command line may override it).
    pub seed: u64,
    /// The service simulated (`None`: the topology's only one).
    pub service: Option<String>,
    /// What a request to a down or refusing server costs its client.
    pub client_timeout: Duration,
    /// Width of the time-series bins (CSV and plot).
    pub bin: Duration,
    /// Control-plane delays.
    pub delays: Delays,
    /// TTL replacing the topology's.
    pub ttl: Option<Duration>,
    /// Bounds of derived TTLs (`max` zero: the fixed TTL).
    pub ttl_min: Duration,
    /// See `ttl_min`.
    pub ttl_max: Option<Duration>,
    /// Probe behaviour by probe name, overriding what the topology says.
    pub probes: BTreeMap<String, ProbeModel>,
    /// Server model for servers not listed in `servers`.
    pub server_defaults: ServerModel,
    /// Server models by server name.
    pub servers: BTreeMap<String, ServerModel>,
    /// Locations of farms (and direct servers) by name, adding to the topology's.
    pub locations: BTreeMap<String, Location>,
    /// Client regions.
    pub regions: Vec<Region>,
    /// Round-trip times in ms, region → farm or direct server (beats locations).
    pub rtt_ms: BTreeMap<String, BTreeMap<String, f64>>,
    /// Faults.
    pub faults: Vec<Fault>,
    /// Policies compared.
    pub variants: Vec<Variant>,
}

// ---- raw file types ----

#[derive(Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Text(String),
    Seconds(f64),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<String>,
    duration: RawDuration,
    warmup: Option<RawDuration>,
    seed: Option<u64>,
    service: Option<String>,
    client_timeout: Option<RawDuration>,
    bin: Option<RawDuration>,
    #[serde(default)]
    delays: RawDelays,
    #[serde(default)]
    dns: RawDns,
    #[serde(default)]
    probes: BTreeMap<String, RawProbe>,
    #[serde(default)]
    server_defaults: RawServer,
    #[serde(default)]
    servers: BTreeMap<String, RawServer>,
    #[serde(default)]
    farms: BTreeMap<String, RawPlace>,
    regions: Vec<RawRegion>,
    #[serde(default)]
    rtt_ms: BTreeMap<String, BTreeMap<String, f64>>,
    #[serde(default)]
    faults: Vec<RawFault>,
    #[serde(default)]
    policies: Vec<RawPolicy>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDelays {
    probe_rtt: Option<RawDuration>,
    report: Option<RawDuration>,
    summary: Option<RawDuration>,
    publish: Option<RawDuration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDns {
    ttl: Option<RawDuration>,
    ttl_min: Option<RawDuration>,
    ttl_max: Option<RawDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    measures: Measures,
    timeout: Option<RawDuration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    slots: Option<i64>,
    service_time: Option<RawServiceTime>,
    queue_limit: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServiceTime {
    dist: String,
    mean: RawDuration,
    cv: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlace {
    location: RawLocation,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocation {
    lat: f64,
    lon: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegion {
    name: String,
    location: Option<RawLocation>,
    rate: f64,
    diurnal: Option<RawDiurnal>,
    #[serde(default)]
    bursts: Vec<RawBurst>,
    resolvers: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDiurnal {
    amplitude: f64,
    period: Option<RawDuration>,
    peak: RawDuration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBurst {
    at: RawDuration,
    duration: RawDuration,
    factor: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    kind: FaultKind,
    target: String,
    at: RawDuration,
    until: Option<RawDuration>,
    factor: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    name: String,
    flat: Option<String>,
    global: Option<String>,
    local: Option<String>,
    hysteresis: Option<RawHysteresis>,
    local_hysteresis: Option<RawHysteresis>,
    answers: Option<RawAnswers>,
    global_answers: Option<i64>,
    rotate_every: Option<RawDuration>,
    ttl: Option<RawDuration>,
    #[serde(default)]
    per_region: bool,
    spill: Option<String>,
    spread: Option<String>,
    #[serde(default)]
    ttl_by_load: bool,
}

/// A policy's `answers`: a number of addresses, or `"weighted"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawAnswers {
    Count(i64),
    Named(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawHysteresis {
    Off(String),
    On { margin: f64, dwell: RawDuration },
}

/// Reads a policy name as a scenario writes it (`local = "least_loaded"`): the names of
/// the topology's table that need no further field.
fn parse_policy(name: &str) -> Result<Policy, String> {
    match PolicyKind::from_name(name) {
        Some(kind) => kind.plain().ok_or_else(|| {
            format!(
                "policy \"{name}\" needs fields a scenario cannot give (use one of {})",
                plain_policies()
            )
        }),
        None => Err(format!("unknown policy \"{name}\" ({})", plain_policies())),
    }
}

fn plain_policies() -> String {
    PolicyKind::list(PolicyKind::ALL.into_iter().filter(|k| k.plain().is_some()))
}

/// The checks of a scenario file: each notes its problems and goes on, so that one run
/// of `fedlb simulate` reports them all.
struct Ctx<'a> {
    file: &'a str,
    problems: Vec<Problem>,
    /// paths whose values were taken out while reading the file
    removed: Vec<String>,
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &std::path::Path) -> Result<Scenario, Error> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            file: file.clone(),
            source,
        })?;
        Scenario::parse(&text, &file)
    }

    /// Parses and checks scenario text; `file` names it in errors. Every problem found is
    /// reported, each with its field path.
    pub fn parse(text: &str, file: &str) -> Result<Scenario, Error> {
        let mut cx = Ctx {
            file,
            problems: Vec::new(),
            removed: Vec::new(),
        };
        let raw = cx.deserialize(text);
        let scenario = raw.and_then(|raw| cx.check(raw));
        match scenario {
            Some(s) if cx.problems.is_empty() => Ok(s),
            _ => Err(Error::Scenario(cx.problems)),
        }
    }
}

impl Ctx<'_> {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        // a value taken out stands at its default: what follows from that is not news
        let inside = |r: &String| {
            *r == path || path.starts_with(&format!("{r}.")) || path.starts_with(&format!("{r}["))
        };
        if self.removed.iter().any(inside) {
            return;
        }
        self.problems.push(Problem {
            file: self.file.to_owned(),
            path,
            message: message.into(),
        });
    }

    /// The raw file; on an unknown field or a value of the wrong type, notes it, takes the
    /// value out and tries again, so that one mistake does not hide the others.
    fn deserialize(&mut self, text: &str) -> Option<RawScenario> {
        let mut value = match toml::Deserializer::parse(text).and_then(toml::Table::deserialize) {
            Ok(t) => toml::Value::Table(t),
            Err(e) => {
                self.err("", e.to_string());
                return None;
            }
        };
        // each turn takes one value out, so the file's size bounds the turns
        loop {
            match serde_path_to_error::deserialize::<_, RawScenario>(value.clone()) {
                Ok(raw) => return Some(raw),
                Err(e) => {
                    let segments: Vec<serde_path_to_error::Segment> =
                        e.path().iter().cloned().collect();
                    let path = e.path().to_string();
                    let path = if path == "." { String::new() } else { path };
                    let message = e.into_inner().message().to_owned();
                    let missing = message
                        .strip_prefix("missing field `")
                        .and_then(|m| m.split('`').next())
                        .map(|field| join(&path, field));
                    if missing.is_some_and(|m| self.removed.contains(&m)) {
                        // missing because its bad value was taken out: already reported
                        return None;
                    }
                    self.err(path.clone(), message);
                    if !remove(&mut value, &segments) {
                        return None;
                    }
                    self.removed.push(path);
                }
            }
        }
    }

    fn dur(&mut self, path: &str, d: &RawDuration) -> Option<Duration> {
        let parsed = match d {
            RawDuration::Text(t) => parse_duration_or_seconds(t),
            RawDuration::Seconds(s) => seconds_to_duration(*s),
        };
        match parsed {
            Ok(d) => Some(d),
            Err(e) => {
                let shown = match d {
                    RawDuration::Text(t) => format!("\"{t}\""),
                    RawDuration::Seconds(s) => s.to_string(),
                };
                self.err(path, format!("invalid duration {shown}: {e}"));
                None
            }
        }
    }

    fn opt_dur(
        &mut self,
        path: &str,
        d: &Option<RawDuration>,
        default: Duration,
    ) -> Option<Duration> {
        match d {
            None => Some(default),
            Some(d) => self.dur(path, d),
        }
    }

    /// An optional duration: `Some(None)` when absent, `None` when invalid.
    fn maybe_dur(&mut self, path: &str, d: &Option<RawDuration>) -> Option<Option<Duration>> {
        match d {
            None => Some(None),
            Some(d) => self.dur(path, d).map(Some),
        }
    }

    fn count(&mut self, path: &str, v: Option<i64>, default: u32, min: i64) -> Option<u32> {
        match v {
            None => Some(default),
            Some(n) if n >= min && n <= i64::from(u32::MAX) => Some(n as u32),
            Some(n) => {
                self.err(path, format!("{n} is out of range (at least {min})"));
                None
            }
        }
    }

    /// An optional policy: `Some(None)` when absent, `None` when invalid.
    fn policy(&mut self, path: &str, p: &Option<String>) -> Option<Option<Policy>> {
        match p.as_deref().map(parse_policy) {
            None => Some(None),
            Some(Ok(p)) => Some(Some(p)),
            Some(Err(m)) => {
                self.err(path, m);
                None
            }
        }
    }

    fn location(&mut self, path: &str, raw: Option<RawLocation>) -> Option<Option<Location>> {
        let Some(raw) = raw else { return Some(None) };
        let location = Location {
            lat: raw.lat,
            lon: raw.lon,
        };
        let problems = location.problems();
        let ok = problems.is_empty();
        for (field, message) in problems {
            self.err(format!("{path}.{field}"), message);
        }
        ok.then_some(Some(location))
    }

    fn server(&mut self, path: &str, raw: &RawServer, base: ServerModel) -> Option<ServerModel> {
        let service_time = match &raw.service_time {
            None => Some(base.service_time),
            Some(st) => self.service_time(&format!("{path}.service_time"), st),
        };
        let slots = self.count(&format!("{path}.slots"), raw.slots, base.slots, 1);
        let queue_limit = self.count(
            &format!("{path}.queue_limit"),
            raw.queue_limit,
            base.queue_limit,
            0,
        );
        Some(ServerModel {
            slots: slots?,
            service_time: service_time?,
            queue_limit: queue_limit?,
        })
    }

    fn service_time(&mut self, p: &str, st: &RawServiceTime) -> Option<ServiceTime> {
        let mean = self.dur(&format!("{p}.mean"), &st.mean);
        if mean.is_some_and(|m| m.is_zero()) {
            self.err(format!("{p}.mean"), "must be above zero");
        }
        let mean = mean.filter(|m| !m.is_zero());
        let cv_path = format!("{p}.cv");
        match (st.dist.as_str(), st.cv) {
            ("constant", None) => mean.map(ServiceTime::Constant),
            ("exponential", None) => mean.map(ServiceTime::Exponential),
            ("lognormal", Some(cv)) if cv > 0.0 && cv.is_finite() => {
                mean.map(|mean| ServiceTime::LogNormal { mean, cv })
            }
            ("lognormal", Some(cv)) => {
                self.err(cv_path, format!("{cv}: must be above zero"));
                None
            }
            ("lognormal", None) => {
                self.err(cv_path, "lognormal needs cv (stddev / mean)");
                None
            }
            ("constant" | "exponential", Some(_)) => {
                self.err(cv_path, "only lognormal takes cv");
                None
            }
            (other, _) => {
                self.err(
                    format!("{p}.dist"),
                    format!("unknown distribution \"{other}\" (constant, exponential, lognormal)"),
                );
                None
            }
        }
    }

    fn check(&mut self, raw: RawScenario) -> Option<Scenario> {
        let duration = self.dur("duration", &raw.duration);
        if duration.is_some_and(|d| d.is_zero()) {
            self.err("duration", "must be above zero");
        }
        let warmup = self.opt_dur("warmup", &raw.warmup, Duration::from_secs(60));
        if let (Some(w), Some(d)) = (warmup, duration)
            && w >= d
            && !d.is_zero()
        {
            self.err("warmup", "must be shorter than duration");
        }
        let bin = self.opt_dur("bin", &raw.bin, Duration::from_secs(30));
        if bin.is_some_and(|b| b < Duration::from_millis(100)) {
            self.err("bin", "must be at least 100ms");
        }
        let d = &raw.delays;
        let probe_rtt = self.opt_dur("delays.probe_rtt", &d.probe_rtt, Duration::from_millis(1));
        let report = self.opt_dur("delays.report", &d.report, Duration::from_millis(1));
        let summary = self.opt_dur("delays.summary", &d.summary, Duration::from_millis(40));
        let publish = self.opt_dur("delays.publish", &d.publish, Duration::from_millis(500));
        let ttl = self.maybe_dur("dns.ttl", &raw.dns.ttl);
        let ttl_min = self.opt_dur("dns.ttl_min", &raw.dns.ttl_min, Duration::from_secs(1));
        let ttl_max = self.maybe_dur("dns.ttl_max", &raw.dns.ttl_max);
        if let (Some(Some(max)), Some(min)) = (ttl_max, ttl_min)
            && max < min
        {
            self.err("dns.ttl_max", "must not be below dns.ttl_min");
        }
        let mut probes = BTreeMap::new();
        for (name, p) in &raw.probes {
            let timeout = self.opt_dur(
                &format!("probes.{name}.timeout"),
                &p.timeout,
                Duration::from_millis(800),
            );
            if let Some(timeout) = timeout {
                probes.insert(
                    name.clone(),
                    ProbeModel {
                        measures: p.measures,
                        timeout,
                    },
                );
            }
        }
        let builtin = ServerModel {
            slots: 8,
            service_time: ServiceTime::Exponential(Duration::from_millis(20)),
            queue_limit: 1_000,
        };
        // a bad default is reported once; the servers are checked against the built-in one
        let server_defaults = self.server("server_defaults", &raw.server_defaults, builtin);
        let mut servers = BTreeMap::new();
        for (name, s) in &raw.servers {
            let path = format!("servers.{name}");
            if let Some(m) = self.server(&path, s, server_defaults.unwrap_or(builtin)) {
                servers.insert(name.clone(), m);
            }
        }
        let mut locations = BTreeMap::new();
        for (name, place) in &raw.farms {
            if let Some(Some(l)) =
                self.location(&format!("farms.{name}.location"), Some(place.location))
            {
                locations.insert(name.clone(), l);
            }
        }
        if raw.regions.is_empty() {
            self.err("regions", "at least one region is needed");
        }
        let mut regions: Vec<Region> = Vec::new();
        for (i, r) in raw.regions.iter().enumerate() {
            if let Some(region) = self.region(&format!("regions[{i}]"), r, &raw.regions[..i]) {
                regions.push(region);
            }
        }
        for (region, row) in &raw.rtt_ms {
            if !raw.regions.iter().any(|r| &r.name == region) {
                self.err(
                    format!("rtt_ms.{region}"),
                    format!("no region \"{region}\""),
                );
            }
            for (to, ms) in row {
                if !(ms.is_finite() && *ms >= 0.0) {
                    self.err(
                        format!("rtt_ms.{region}.{to}"),
                        format!("{ms}: must be ≥ 0"),
                    );
                }
            }
        }
        let mut faults = Vec::new();
        for (i, f) in raw.faults.iter().enumerate() {
            if let Some(fault) = self.fault(&format!("faults[{i}]"), f) {
                faults.push(fault);
            }
        }
        let variants = if raw.policies.is_empty() {
            Variant::defaults()
        } else {
            let mut out: Vec<Variant> = Vec::new();
            for (i, p) in raw.policies.iter().enumerate() {
                let path = format!("policies[{i}]");
                if raw.policies[..i].iter().any(|o| o.name == p.name) {
                    self.err(
                        format!("{path}.name"),
                        format!("policy \"{}\" listed twice", p.name),
                    );
                    continue;
                }
                if let Some(v) = self.variant(&path, p) {
                    out.push(v);
                }
            }
            out
        };
        let client_timeout = self.opt_dur(
            "client_timeout",
            &raw.client_timeout,
            Duration::from_secs(3),
        );
        Some(Scenario {
            name: raw.name.unwrap_or_else(|| {
                std::path::Path::new(self.file)
                    .file_stem()
                    .map_or_else(|| "scenario".to_owned(), |s| s.to_string_lossy().into())
            }),
            duration: duration?,
            warmup: warmup?,
            seed: raw.seed.unwrap_or(1),
            service: raw.service,
            client_timeout: client_timeout?,
            bin: bin?,
            delays: Delays {
                probe_rtt: probe_rtt?,
                report: report?,
                summary: summary?,
                publish: publish?,
            },
            ttl: ttl?,
            ttl_min: ttl_min?,
            ttl_max: ttl_max?,
            probes,
            server_defaults: server_defaults?,
            servers,
            locations,
            regions,
            rtt_ms: raw.rtt_ms,
            faults,
            variants,
        })
    }

    fn region(&mut self, path: &str, r: &RawRegion, before: &[RawRegion]) -> Option<Region> {
        if before.iter().any(|o| o.name == r.name) {
            self.err(
                format!("{path}.name"),
                format!("region \"{}\" listed twice", r.name),
            );
        }
        let mut ok = true;
        if !(r.rate.is_finite() && r.rate >= 0.0) {
            self.err(format!("{path}.rate"), format!("{}: must be ≥ 0", r.rate));
            ok = false;
        }
        let location = self.location(&format!("{path}.location"), r.location);
        let diurnal = match &r.diurnal {
            None => Some(None),
            Some(d) => self.diurnal(&format!("{path}.diurnal"), d).map(Some),
        };
        let mut bursts = Vec::new();
        for (j, b) in r.bursts.iter().enumerate() {
            let bp = format!("{path}.bursts[{j}]");
            if !(b.factor.is_finite() && b.factor >= 0.0) {
                self.err(format!("{bp}.factor"), format!("{}: must be ≥ 0", b.factor));
                ok = false;
            }
            let at = self.dur(&format!("{bp}.at"), &b.at);
            let duration = self.dur(&format!("{bp}.duration"), &b.duration);
            if let (Some(at), Some(duration)) = (at, duration) {
                bursts.push(Burst {
                    at,
                    duration,
                    factor: b.factor,
                });
            }
        }
        let resolvers = self.count(&format!("{path}.resolvers"), r.resolvers, 20, 1);
        let region = Region {
            name: r.name.clone(),
            location: location?,
            rate: r.rate,
            diurnal: diurnal?,
            bursts,
            resolvers: resolvers?,
        };
        ok.then_some(region)
    }

    fn diurnal(&mut self, path: &str, d: &RawDiurnal) -> Option<Diurnal> {
        let mut ok = true;
        if !(0.0..=1.0).contains(&d.amplitude) {
            self.err(
                format!("{path}.amplitude"),
                format!("{}: must be within 0..=1", d.amplitude),
            );
            ok = false;
        }
        let period = self.opt_dur(
            &format!("{path}.period"),
            &d.period,
            Duration::from_secs(86_400),
        );
        if period.is_some_and(|p| p.is_zero()) {
            self.err(format!("{path}.period"), "must be above zero");
            ok = false;
        }
        let peak = self.dur(&format!("{path}.peak"), &d.peak);
        let diurnal = Diurnal {
            amplitude: d.amplitude,
            period: period?,
            peak: peak?,
        };
        ok.then_some(diurnal)
    }

    fn fault(&mut self, path: &str, f: &RawFault) -> Option<Fault> {
        let at = self.dur(&format!("{path}.at"), &f.at);
        let until = self.maybe_dur(&format!("{path}.until"), &f.until);
        if let (Some(at), Some(Some(until))) = (at, until)
            && until <= at
        {
            self.err(format!("{path}.until"), "must be after `at`");
        }
        let factor = match (f.kind, f.factor) {
            (FaultKind::ServerSlow, Some(x)) if x.is_finite() && x > 0.0 => Some(x),
            (FaultKind::ServerSlow, Some(x)) => {
                self.err(format!("{path}.factor"), format!("{x}: must be > 0"));
                None
            }
            (FaultKind::ServerSlow, None) => {
                self.err(
                    format!("{path}.factor"),
                    "server_slow needs a factor (service times are multiplied by it)",
                );
                None
            }
            (_, Some(_)) => {
                self.err(format!("{path}.factor"), "only server_slow takes a factor");
                None
            }
            (_, None) => Some(1.0),
        };
        Some(Fault {
            kind: f.kind,
            target: f.target.clone(),
            at: at?,
            until: until?,
            factor: factor?,
        })
    }

    fn variant(&mut self, path: &str, p: &RawPolicy) -> Option<Variant> {
        let mut ok = true;
        if p.name.is_empty() || p.name.contains([',', ' ', '"']) {
            self.err(
                format!("{path}.name"),
                "must be non-empty, without spaces, commas or quotes",
            );
            ok = false;
        }
        let flat = self.policy(&format!("{path}.flat"), &p.flat);
        if p.flat.is_some() && (p.global.is_some() || p.local.is_some()) {
            self.err(
                format!("{path}.flat"),
                "a single-level (flat) policy takes no global or local policy",
            );
            ok = false;
        }
        if p.flat.is_some() && p.local_hysteresis.is_some() {
            self.err(
                format!("{path}.local_hysteresis"),
                "a single-level (flat) policy has no local tier",
            );
            ok = false;
        }
        let mut hysteresis = |field: &str, raw: &Option<RawHysteresis>| match raw {
            None => Some(None),
            Some(RawHysteresis::Off(s)) if s == "none" => Some(Some(Hysteresis::NONE)),
            Some(RawHysteresis::Off(s)) => {
                self.err(
                    format!("{path}.{field}"),
                    format!("\"{s}\": expected \"none\" or {{ margin, dwell }}"),
                );
                None
            }
            Some(RawHysteresis::On { margin, dwell }) => {
                if !(0.0..1.0).contains(margin) {
                    self.err(
                        format!("{path}.{field}.margin"),
                        format!("{margin}: must be within 0..1"),
                    );
                    ok = false;
                }
                self.dur(&format!("{path}.{field}.dwell"), dwell)
                    .map(|dwell| {
                        Some(Hysteresis {
                            margin: *margin,
                            dwell,
                        })
                    })
            }
        };
        let local_hysteresis = hysteresis("local_hysteresis", &p.local_hysteresis);
        let hysteresis = hysteresis("hysteresis", &p.hysteresis);
        let mut answers = |field: &str, v: Option<i64>| -> Option<Option<usize>> {
            match v {
                None => Some(None),
                Some(n) => self
                    .count(&format!("{path}.{field}"), Some(n), 1, 1)
                    .map(|n| Some(n as usize)),
            }
        };
        let global_answers = answers("global_answers", p.global_answers);
        let local_count = match &p.answers {
            Some(RawAnswers::Count(n)) => answers("answers", Some(*n)),
            _ => Some(None),
        };
        let (local_answers, weighted) = match &p.answers {
            Some(RawAnswers::Named(n)) if n == "weighted" => (Some(None), true),
            Some(RawAnswers::Named(n)) => {
                self.err(
                    format!("{path}.answers"),
                    format!("unknown answers \"{n}\" (a number of addresses or \"weighted\")"),
                );
                (None, false)
            }
            Some(RawAnswers::Count(_)) => (local_count, false),
            None => (Some(None), false),
        };
        let spill = match p.spill.as_deref() {
            None => Some(None),
            Some("move") => Some(Some(Spill::Move)),
            Some("split") => Some(Some(Spill::Split)),
            Some(other) => {
                self.err(
                    format!("{path}.spill"),
                    format!("unknown spill \"{other}\" (\"move\" or \"split\")"),
                );
                None
            }
        };
        let spread = match p.spread.as_deref() {
            None | Some("all") => Some(Spread::All),
            Some("weighted") => Some(Spread::Weighted),
            Some("hashed") => Some(Spread::Hashed),
            Some(other) => {
                self.err(
                    format!("{path}.spread"),
                    format!("unknown spread \"{other}\" (\"all\", \"weighted\" or \"hashed\")"),
                );
                None
            }
        };
        let ttl = match &p.ttl {
            None => Some(None),
            Some(RawDuration::Text(t)) if t == "derived" => Some(Some(TtlMode::Derived {
                min: Duration::ZERO,
                max: Duration::ZERO,
            })),
            Some(t) => self
                .dur(&format!("{path}.ttl"), t)
                .map(|d| Some(TtlMode::Fixed(d))),
        };
        let global = self.policy(&format!("{path}.global"), &p.global);
        let local = self.policy(&format!("{path}.local"), &p.local);
        let rotate_every = self.maybe_dur(&format!("{path}.rotate_every"), &p.rotate_every);
        let variant = Variant {
            name: p.name.clone(),
            flat: flat?,
            global: global?,
            local: local?,
            hysteresis: hysteresis?,
            local_hysteresis: local_hysteresis?,
            answers: local_answers?,
            global_answers: global_answers?,
            rotate_every: rotate_every?,
            ttl: ttl?,
            per_region: p.per_region,
            weighted,
            spill: spill?,
            spread: spread?,
            ttl_by_load: p.ttl_by_load,
        };
        ok.then_some(variant)
    }
}

/// `a.b` from a path and a field.
fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// Takes the value at `segments` out of the tree (a table entry); false when it cannot be
/// taken out without changing other paths (an array element) or is not found.
fn remove(value: &mut toml::Value, segments: &[serde_path_to_error::Segment]) -> bool {
    use serde_path_to_error::Segment;
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut at = value;
    for s in parents {
        at = match (s, at) {
            (Segment::Map { key }, toml::Value::Table(t)) => match t.get_mut(key.as_str()) {
                Some(v) => v,
                None => return false,
            },
            (Segment::Seq { index }, toml::Value::Array(a)) => match a.get_mut(*index) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, at) {
        (Segment::Map { key }, toml::Value::Table(t)) => t.remove(key.as_str()).is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        // the topology's parser, which takes a bare number as seconds in scenarios
        let parse_duration = parse_duration_or_seconds;
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2500)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("10").is_ok());
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn burst_and_diurnal_rates() {
        let r = Region {
            name: "eu".into(),
            location: None,
            rate: 100.0,
            diurnal: Some(Diurnal {
                amplitude: 0.5,
                period: Duration::from_secs(100),
                peak: Duration::from_secs(0),
            }),
            bursts: vec![
                Burst {
                    at: Duration::from_secs(10),
                    duration: Duration::from_secs(10),
                    factor: 2.0,
                },
                Burst {
                    at: Duration::from_secs(15),
                    duration: Duration::from_secs(10),
                    factor: 3.0,
                },
            ],
            resolvers: 1,
        };
        assert!((r.rate_at(Duration::ZERO) - 150.0).abs() < 1e-9);
        assert!((r.rate_at(Duration::from_secs(50)) - 50.0).abs() < 1e-9);
        assert!(r.max_rate() >= 150.0 * 6.0 - 1e-9);
        let t = Duration::from_secs(16);
        assert!(r.rate_at(t) <= r.max_rate());
        assert!(r.rate_at(t) > r.rate_at(Duration::from_secs(26)) * 3.0);
    }
}
