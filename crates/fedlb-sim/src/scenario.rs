//! The scenario file: what the simulated world looks like around a topology (clients,
//! networks, servers' speed, faults) and which policies to compare.
//!
//! TOML, read through `serde_path_to_error` into raw types with `deny_unknown_fields`, then
//! checked into a [`Scenario`]; every error names the field path (`regions[1].rate`).
//! Durations are humane strings (`"500ms"`, `"30s"`, `"1m30s"`, `"1h"`) or seconds.

use std::collections::BTreeMap;
use std::time::Duration;

use fedlb_core::{ClosestBy, Hysteresis, Policy};
use serde::Deserialize;

use crate::Error;

/// A point on Earth, in degrees.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
}

impl Location {
    /// Great-circle distance in kilometres.
    pub fn km_to(&self, other: &Location) -> f64 {
        const R: f64 = 6371.0088;
        let (p1, p2) = (self.lat.to_radians(), other.lat.to_radians());
        let dp = p2 - p1;
        let dl = (other.lon - self.lon).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * R * a.sqrt().min(1.0).asin()
    }

    /// Round-trip time over fibre between two places: 5 ms of access network plus
    /// 1 ms per 100 km (light in fibre covers ≈ 200 km/ms, there and back).
    pub fn rtt_to(&self, other: &Location) -> Duration {
        Duration::from_secs_f64((5.0 + self.km_to(other) / 100.0) / 1e3)
    }
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
    /// Addresses answered by the local tier (or by the single tier when flat).
    pub answers: Option<usize>,
    /// Addresses answered by the global tier (hierarchical).
    pub global_answers: Option<usize>,
    /// Rotation period of rotating policies.
    pub rotate_every: Option<Duration>,
    /// TTL override.
    pub ttl: Option<TtlMode>,
    /// One answer per client region, "closest" measured from the region — the DESIGN's
    /// future direction, not what fedlb publishes today.
    pub per_region: bool,
}

impl Variant {
    fn named(name: &str) -> Self {
        Variant {
            name: name.to_owned(),
            flat: None,
            global: None,
            local: None,
            hysteresis: None,
            answers: None,
            global_answers: None,
            rotate_every: None,
            ttl: None,
            per_region: false,
        }
    }

    /// The comparison run when a scenario lists no `[[policies]]`: the patent's four
    /// single-level baselines against fedlb's hierarchical policy and its knobs.
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
        let mut per_region = fedlb();
        per_region.name = "per-region(future)".into();
        per_region.per_region = true;
        vec![
            rr,
            random,
            flat("closest", Policy::Closest(ClosestBy::Auto)),
            flat("least-loaded", Policy::LeastLoaded),
            fedlb(),
            no_hyst,
            top2,
            derived,
            per_region,
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
    location: Location,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegion {
    name: String,
    location: Option<Location>,
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
    answers: Option<i64>,
    global_answers: Option<i64>,
    rotate_every: Option<RawDuration>,
    ttl: Option<RawDuration>,
    #[serde(default)]
    per_region: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawHysteresis {
    Off(String),
    On { margin: f64, dwell: RawDuration },
}

/// Parses `"500ms"`, `"30s"`, `"1m30s"`, `"1h"`, `"1d"` (or a bare number of seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = t.parse::<f64>() {
        return seconds(secs);
    }
    let mut total = 0.0;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("\"{text}\": a number needs a unit (ms, s, m, h, d)"))?;
        if num_len == 0 {
            return Err(format!("\"{text}\": expected a number"));
        }
        let value: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("\"{text}\": bad number"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            other => return Err(format!("\"{text}\": unknown unit \"{other}\"")),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    seconds(total)
}

fn seconds(s: f64) -> Result<Duration, String> {
    if !s.is_finite() || s < 0.0 {
        return Err(format!("{s}: a duration must be a finite number ≥ 0"));
    }
    Ok(Duration::from_secs_f64(s))
}

/// Parses a policy name as the scenario writes it.
pub fn parse_policy(name: &str) -> Result<Policy, String> {
    Ok(match name {
        "round_robin" => Policy::RoundRobin,
        "random" => Policy::Random,
        "weighted" => Policy::Weighted,
        "closest" => Policy::Closest(ClosestBy::Auto),
        "least_loaded" => Policy::LeastLoaded,
        "fastest_response" => Policy::FastestResponse,
        other => {
            return Err(format!(
                "unknown policy \"{other}\" (round_robin, random, weighted, closest, least_loaded, fastest_response)"
            ));
        }
    })
}

struct Ctx<'a> {
    file: &'a str,
}

impl Ctx<'_> {
    fn err(&self, path: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Scenario {
            file: self.file.to_owned(),
            path: path.into(),
            message: message.into(),
        }
    }

    fn dur(&self, path: &str, d: &RawDuration) -> Result<Duration, Error> {
        match d {
            RawDuration::Text(t) => parse_duration(t),
            RawDuration::Seconds(s) => seconds(*s),
        }
        .map_err(|m| self.err(path, m))
    }

    fn opt_dur(
        &self,
        path: &str,
        d: &Option<RawDuration>,
        default: Duration,
    ) -> Result<Duration, Error> {
        d.as_ref().map_or(Ok(default), |d| self.dur(path, d))
    }

    fn count(&self, path: &str, v: Option<i64>, default: u32, min: i64) -> Result<u32, Error> {
        match v {
            None => Ok(default),
            Some(n) if n >= min && n <= i64::from(u32::MAX) => Ok(n as u32),
            Some(n) => Err(self.err(path, format!("{n} is out of range (at least {min})"))),
        }
    }

    fn policy(&self, path: &str, p: &Option<String>) -> Result<Option<Policy>, Error> {
        p.as_deref()
            .map(parse_policy)
            .transpose()
            .map_err(|m| self.err(path, m))
    }

    fn server(&self, path: &str, raw: &RawServer, base: ServerModel) -> Result<ServerModel, Error> {
        let service_time = match &raw.service_time {
            None => base.service_time,
            Some(st) => {
                let p = format!("{path}.service_time");
                let mean = self.dur(&format!("{p}.mean"), &st.mean)?;
                if mean.is_zero() {
                    return Err(self.err(format!("{p}.mean"), "must be above zero"));
                }
                let cv_path = format!("{p}.cv");
                match (st.dist.as_str(), st.cv) {
                    ("constant", None) => ServiceTime::Constant(mean),
                    ("exponential", None) => ServiceTime::Exponential(mean),
                    ("lognormal", Some(cv)) if cv > 0.0 && cv.is_finite() => {
                        ServiceTime::LogNormal { mean, cv }
                    }
                    ("lognormal", Some(cv)) => {
                        return Err(self.err(cv_path, format!("{cv}: must be above zero")));
                    }
                    ("lognormal", None) => {
                        return Err(self.err(cv_path, "lognormal needs cv (stddev / mean)"));
                    }
                    ("constant" | "exponential", Some(_)) => {
                        return Err(self.err(cv_path, "only lognormal takes cv"));
                    }
                    (other, _) => {
                        return Err(self.err(
                            format!("{p}.dist"),
                            format!(
                                "unknown distribution \"{other}\" (constant, exponential, lognormal)"
                            ),
                        ));
                    }
                }
            }
        };
        Ok(ServerModel {
            slots: self.count(&format!("{path}.slots"), raw.slots, base.slots, 1)?,
            service_time,
            queue_limit: self.count(
                &format!("{path}.queue_limit"),
                raw.queue_limit,
                base.queue_limit,
                0,
            )?,
        })
    }
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

    /// Parses and checks scenario text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Scenario, Error> {
        let cx = Ctx { file };
        let de = toml::Deserializer::parse(text).map_err(|e| cx.err("", e.to_string()))?;
        let raw: RawScenario = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            cx.err(
                if path == "." { String::new() } else { path },
                inner.message().to_owned(),
            )
        })?;
        cx.check(raw)
    }
}

impl Ctx<'_> {
    fn check(&self, raw: RawScenario) -> Result<Scenario, Error> {
        let duration = self.dur("duration", &raw.duration)?;
        if duration.is_zero() {
            return Err(self.err("duration", "must be above zero"));
        }
        let warmup = self.opt_dur("warmup", &raw.warmup, Duration::from_secs(60))?;
        if warmup >= duration {
            return Err(self.err("warmup", "must be shorter than duration"));
        }
        let bin = self.opt_dur("bin", &raw.bin, Duration::from_secs(30))?;
        if bin < Duration::from_millis(100) {
            return Err(self.err("bin", "must be at least 100ms"));
        }
        let d = &raw.delays;
        let delays = Delays {
            probe_rtt: self.opt_dur("delays.probe_rtt", &d.probe_rtt, Duration::from_millis(1))?,
            report: self.opt_dur("delays.report", &d.report, Duration::from_millis(1))?,
            summary: self.opt_dur("delays.summary", &d.summary, Duration::from_millis(40))?,
            publish: self.opt_dur("delays.publish", &d.publish, Duration::from_millis(500))?,
        };
        let ttl = raw
            .dns
            .ttl
            .as_ref()
            .map(|t| self.dur("dns.ttl", t))
            .transpose()?;
        let ttl_min = self.opt_dur("dns.ttl_min", &raw.dns.ttl_min, Duration::from_secs(1))?;
        let ttl_max = raw
            .dns
            .ttl_max
            .as_ref()
            .map(|t| self.dur("dns.ttl_max", t))
            .transpose()?;
        if ttl_max.is_some_and(|m| m < ttl_min) {
            return Err(self.err("dns.ttl_max", "must not be below dns.ttl_min"));
        }
        let mut probes = BTreeMap::new();
        for (name, p) in &raw.probes {
            let path = format!("probes.{name}");
            probes.insert(
                name.clone(),
                ProbeModel {
                    measures: p.measures,
                    timeout: self.opt_dur(
                        &format!("{path}.timeout"),
                        &p.timeout,
                        Duration::from_millis(800),
                    )?,
                },
            );
        }
        let builtin = ServerModel {
            slots: 8,
            service_time: ServiceTime::Exponential(Duration::from_millis(20)),
            queue_limit: 1_000,
        };
        let server_defaults = self.server("server_defaults", &raw.server_defaults, builtin)?;
        let mut servers = BTreeMap::new();
        for (name, s) in &raw.servers {
            servers.insert(
                name.clone(),
                self.server(&format!("servers.{name}"), s, server_defaults)?,
            );
        }
        let locations = raw
            .farms
            .iter()
            .map(|(k, v)| (k.clone(), v.location))
            .collect();
        if raw.regions.is_empty() {
            return Err(self.err("regions", "at least one region is needed"));
        }
        let mut regions = Vec::new();
        for (i, r) in raw.regions.iter().enumerate() {
            let path = format!("regions[{i}]");
            if regions.iter().any(|o: &Region| o.name == r.name) {
                return Err(self.err(
                    format!("{path}.name"),
                    format!("region \"{}\" listed twice", r.name),
                ));
            }
            if !(r.rate.is_finite() && r.rate >= 0.0) {
                return Err(self.err(format!("{path}.rate"), format!("{}: must be ≥ 0", r.rate)));
            }
            let diurnal = match &r.diurnal {
                None => None,
                Some(d) => {
                    if !(0.0..=1.0).contains(&d.amplitude) {
                        return Err(self.err(
                            format!("{path}.diurnal.amplitude"),
                            format!("{}: must be within 0..=1", d.amplitude),
                        ));
                    }
                    let period = self.opt_dur(
                        &format!("{path}.diurnal.period"),
                        &d.period,
                        Duration::from_secs(86_400),
                    )?;
                    if period.is_zero() {
                        return Err(
                            self.err(format!("{path}.diurnal.period"), "must be above zero")
                        );
                    }
                    Some(Diurnal {
                        amplitude: d.amplitude,
                        period,
                        peak: self.dur(&format!("{path}.diurnal.peak"), &d.peak)?,
                    })
                }
            };
            let mut bursts = Vec::new();
            for (j, b) in r.bursts.iter().enumerate() {
                let bp = format!("{path}.bursts[{j}]");
                if !(b.factor.is_finite() && b.factor >= 0.0) {
                    return Err(
                        self.err(format!("{bp}.factor"), format!("{}: must be ≥ 0", b.factor))
                    );
                }
                bursts.push(Burst {
                    at: self.dur(&format!("{bp}.at"), &b.at)?,
                    duration: self.dur(&format!("{bp}.duration"), &b.duration)?,
                    factor: b.factor,
                });
            }
            regions.push(Region {
                name: r.name.clone(),
                location: r.location,
                rate: r.rate,
                diurnal,
                bursts,
                resolvers: self.count(&format!("{path}.resolvers"), r.resolvers, 20, 1)?,
            });
        }
        for (region, row) in &raw.rtt_ms {
            if !regions.iter().any(|r| &r.name == region) {
                return Err(self.err(
                    format!("rtt_ms.{region}"),
                    format!("no region \"{region}\""),
                ));
            }
            for (to, ms) in row {
                if !(ms.is_finite() && *ms >= 0.0) {
                    return Err(self.err(
                        format!("rtt_ms.{region}.{to}"),
                        format!("{ms}: must be ≥ 0"),
                    ));
                }
            }
        }
        let mut faults = Vec::new();
        for (i, f) in raw.faults.iter().enumerate() {
            let path = format!("faults[{i}]");
            let at = self.dur(&format!("{path}.at"), &f.at)?;
            let until = f
                .until
                .as_ref()
                .map(|u| self.dur(&format!("{path}.until"), u))
                .transpose()?;
            if until.is_some_and(|u| u <= at) {
                return Err(self.err(format!("{path}.until"), "must be after `at`"));
            }
            let factor = match (f.kind, f.factor) {
                (FaultKind::ServerSlow, Some(x)) if x.is_finite() && x > 0.0 => x,
                (FaultKind::ServerSlow, Some(x)) => {
                    return Err(self.err(format!("{path}.factor"), format!("{x}: must be > 0")));
                }
                (FaultKind::ServerSlow, None) => {
                    return Err(self.err(
                        format!("{path}.factor"),
                        "server_slow needs a factor (service times are multiplied by it)",
                    ));
                }
                (_, Some(_)) => {
                    return Err(
                        self.err(format!("{path}.factor"), "only server_slow takes a factor")
                    );
                }
                (_, None) => 1.0,
            };
            faults.push(Fault {
                kind: f.kind,
                target: f.target.clone(),
                at,
                until,
                factor,
            });
        }
        let variants = if raw.policies.is_empty() {
            Variant::defaults()
        } else {
            let mut out: Vec<Variant> = Vec::new();
            for (i, p) in raw.policies.iter().enumerate() {
                out.push(self.variant(&format!("policies[{i}]"), p, &out)?);
            }
            out
        };
        Ok(Scenario {
            name: raw.name.unwrap_or_else(|| {
                std::path::Path::new(self.file)
                    .file_stem()
                    .map_or_else(|| "scenario".to_owned(), |s| s.to_string_lossy().into())
            }),
            duration,
            warmup,
            seed: raw.seed.unwrap_or(1),
            service: raw.service,
            client_timeout: self.opt_dur(
                "client_timeout",
                &raw.client_timeout,
                Duration::from_secs(3),
            )?,
            bin,
            delays,
            ttl,
            ttl_min,
            ttl_max,
            probes,
            server_defaults,
            servers,
            locations,
            regions,
            rtt_ms: raw.rtt_ms,
            faults,
            variants,
        })
    }

    fn variant(&self, path: &str, p: &RawPolicy, before: &[Variant]) -> Result<Variant, Error> {
        if p.name.is_empty() || p.name.contains([',', ' ', '"']) {
            return Err(self.err(
                format!("{path}.name"),
                "must be non-empty, without spaces, commas or quotes",
            ));
        }
        if before.iter().any(|v| v.name == p.name) {
            return Err(self.err(
                format!("{path}.name"),
                format!("policy \"{}\" listed twice", p.name),
            ));
        }
        let flat = self.policy(&format!("{path}.flat"), &p.flat)?;
        if flat.is_some() && (p.global.is_some() || p.local.is_some()) {
            return Err(self.err(
                format!("{path}.flat"),
                "a single-level (flat) policy takes no global or local policy",
            ));
        }
        let hysteresis = match &p.hysteresis {
            None => None,
            Some(RawHysteresis::Off(s)) if s == "none" => Some(Hysteresis::NONE),
            Some(RawHysteresis::Off(s)) => {
                return Err(self.err(
                    format!("{path}.hysteresis"),
                    format!("\"{s}\": expected \"none\" or {{ margin, dwell }}"),
                ));
            }
            Some(RawHysteresis::On { margin, dwell }) => {
                if !(0.0..1.0).contains(margin) {
                    return Err(self.err(
                        format!("{path}.hysteresis.margin"),
                        format!("{margin}: must be within 0..1"),
                    ));
                }
                Some(Hysteresis {
                    margin: *margin,
                    dwell: self.dur(&format!("{path}.hysteresis.dwell"), dwell)?,
                })
            }
        };
        let answers = |field: &str, v: Option<i64>| -> Result<Option<usize>, Error> {
            v.map(|n| {
                self.count(&format!("{path}.{field}"), Some(n), 1, 1)
                    .map(|n| n as usize)
            })
            .transpose()
        };
        let ttl = match &p.ttl {
            None => None,
            Some(RawDuration::Text(t)) if t == "derived" => Some(TtlMode::Derived {
                min: Duration::ZERO,
                max: Duration::ZERO,
            }),
            Some(t) => Some(TtlMode::Fixed(self.dur(&format!("{path}.ttl"), t)?)),
        };
        Ok(Variant {
            name: p.name.clone(),
            flat,
            global: self.policy(&format!("{path}.global"), &p.global)?,
            local: self.policy(&format!("{path}.local"), &p.local)?,
            hysteresis,
            answers: answers("answers", p.answers)?,
            global_answers: answers("global_answers", p.global_answers)?,
            rotate_every: p
                .rotate_every
                .as_ref()
                .map(|d| self.dur(&format!("{path}.rotate_every"), d))
                .transpose()?,
            ttl,
            per_region: p.per_region,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
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
