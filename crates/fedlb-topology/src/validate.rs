//! Raw file → [`Topology`]: every problem collected with its field path.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use fedlb_core::time::human;
use fedlb_core::{
    CandidateId, ClosestBy, FailStatic, FarmId, Filter, Hysteresis, Policy, ProbeId,
    SelectorConfig, ServerId, ServiceId, Thresholds,
};

use crate::Problem;
use crate::policy::PolicyKind;
use crate::duration::{parse_duration, seconds_to_duration};
use crate::model::{
    CommandOutput, DnsServer, DnsTarget, Farm, FileOutput, GlobalNode, Heartbeat, HttpCheck,
    LoadSource, Location, Mode, Probe, ProbeKind, Server, Service, Topology,
};
use crate::schema::{
    RawDns, RawDuration, RawFarm, RawHeartbeat, RawLocation, RawPolicyTable, RawProbe, RawServer,
    RawService, RawTier, RawTopology, RawTsig,
};
use crate::tsig::{KeyFile, TsigAlgorithm, TsigKey, decode_secret, parse_key_file};

/// How files named by the topology are found and read.
pub(crate) struct Options<'a> {
    pub file: &'a str,
    pub base_dir: Option<&'a Path>,
    pub read_key_files: bool,
}

/// The default probe interval: 1 s (detection in `interval × fall` = 2 s).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// The default probe timeout: 800 ms, below the interval so runs do not pile up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(800);
/// Hop counts change rarely and cost a traceroute: hourly.
pub const DEFAULT_HOPS_INTERVAL: Duration = Duration::from_secs(3600);
/// The default TTL of published records: 30 s.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// Default interval between reads of the DNS server to repair drift.
pub const DEFAULT_RECONCILE: Duration = Duration::from_secs(60);
/// Default lower bound of a derived TTL.
pub const DEFAULT_TTL_MIN: Duration = Duration::from_secs(5);
/// Default server capacity: requests (or connections) in flight at full load.
pub const DEFAULT_CAPACITY: f64 = 100.0;

const PROBE_KINDS: &str = "tcp, http, https, icmp, hops, load, command";

struct Ctx<'a> {
    opts: &'a Options<'a>,
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
    /// (answered address, service port) → (server, path of the address), in file order
    answered: BTreeMap<(IpAddr, u16), (ServerId, String)>,
}

/// A failover order to check once members are known.
struct OrderCheck {
    path: String,
    service: ServiceId,
    scope: Scope,
    order: Vec<CandidateId>,
}

#[derive(Clone)]
enum Scope {
    Global,
    AnyFarm,
    Farm(FarmId),
}

/// What the file declares, read before validation so that one bad part does not make
/// others look wrong (a server with a bad address still offers its services).
#[derive(Default)]
struct RawIndex {
    services: BTreeSet<String>,
    offered: BTreeSet<String>,
    /// farm → server → services
    farms: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// direct server → services
    direct: BTreeMap<String, Vec<String>>,
}

impl RawIndex {
    fn of(raw: &RawTopology) -> Self {
        let mut ix = RawIndex {
            services: raw.services.iter().map(|s| s.name.clone()).collect(),
            ..RawIndex::default()
        };
        for f in &raw.farms {
            let servers = ix.farms.entry(f.name.clone()).or_default();
            for s in &f.servers {
                servers.insert(s.name.clone(), s.services.clone());
                ix.offered.extend(s.services.iter().cloned());
            }
        }
        for s in &raw.servers {
            ix.direct.insert(s.name.clone(), s.services.clone());
            ix.offered.extend(s.services.iter().cloned());
        }
        ix
    }
}

/// Where a policy is used, to check what it asks for.
struct PolicyUse<'a> {
    service: &'a ServiceId,
    scope: Scope,
    metrics: &'a BTreeSet<String>,
}

pub(crate) fn validate(
    raw: RawTopology,
    opts: &Options<'_>,
) -> Result<(Topology, Vec<Problem>), Vec<Problem>> {
    let mut cx = Ctx {
        opts,
        errors: Vec::new(),
        warnings: Vec::new(),
        answered: BTreeMap::new(),
    };
    let topology = cx.topology(raw);
    if cx.errors.is_empty() {
        Ok((topology.expect("no errors means a topology"), cx.warnings))
    } else {
        Err(cx.errors)
    }
}

impl Ctx<'_> {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors
            .push(Problem::new(self.opts.file, path, message));
    }

    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings
            .push(Problem::new(self.opts.file, path, message));
    }

    fn topology(&mut self, raw: RawTopology) -> Option<Topology> {
        let index = RawIndex::of(&raw);
        let name = match raw.name {
            Some(n) if n.trim().is_empty() => {
                self.err("name", "must not be empty");
                String::new()
            }
            Some(n) => n,
            None => Path::new(self.opts.file).file_stem().map_or_else(
                || "topology".to_owned(),
                |s| s.to_string_lossy().into_owned(),
            ),
        };
        let heartbeat = self.heartbeat("heartbeat", raw.heartbeat.as_ref(), Heartbeat::default());
        let global_name = raw
            .global
            .name
            .clone()
            .unwrap_or_else(|| "global".to_owned());
        self.name("global.name", &global_name);
        let global_listen = self.socket("global.listen", &raw.global.listen);
        let global_status = self.socket("global.status", &raw.global.status);
        let global_location = raw
            .global
            .location
            .and_then(|l| self.location("global.location", l));
        let dns = self.dns(raw.dns);

        // services
        let mut services: BTreeMap<ServiceId, Service> = BTreeMap::new();
        let mut service_paths: BTreeMap<ServiceId, String> = BTreeMap::new();
        let mut orders = Vec::new();
        let default_answers = dns.as_ref().map_or(1, |d| d.answers);
        for (i, rs) in raw.services.into_iter().enumerate() {
            let path = format!("services[{i}]");
            if let Some(s) = self.service(&path, rs, default_answers, dns.as_ref(), &mut orders) {
                if let Some(first) = service_paths.get(&s.id) {
                    self.err(
                        format!("{path}.name"),
                        format!("service \"{}\" declared twice (first at {first})", s.id),
                    );
                    continue;
                }
                service_paths.insert(s.id.clone(), path);
                services.insert(s.id.clone(), s);
            }
        }
        if service_paths.is_empty() && self.errors.is_empty() {
            self.err("services", "at least one service is needed");
        }
        let metrics: BTreeMap<ServiceId, BTreeSet<String>> = services
            .iter()
            .map(|(id, s)| (id.clone(), metrics_of(s)))
            .collect();

        // farms and their servers
        let mut server_paths: BTreeMap<ServerId, String> = BTreeMap::new();
        let mut farm_paths: BTreeMap<FarmId, String> = BTreeMap::new();
        let mut farms: BTreeMap<FarmId, Farm> = BTreeMap::new();
        for (i, rf) in raw.farms.into_iter().enumerate() {
            let path = format!("farms[{i}]");
            let farm = self.farm(
                &path,
                rf,
                &services,
                &index,
                &metrics,
                heartbeat,
                &mut server_paths,
                &mut orders,
            );
            if let Some(f) = farm {
                if let Some(first) = farm_paths.get(&f.id) {
                    self.err(
                        format!("{path}.name"),
                        format!("farm \"{}\" declared twice (first at {first})", f.id),
                    );
                    continue;
                }
                farm_paths.insert(f.id.clone(), path);
                farms.insert(f.id.clone(), f);
            }
        }
        // farm and server names share one namespace in ids, reports and status
        for f in farms.values() {
            for sid in f.servers.keys() {
                if let Some(fpath) = farm_paths.get(&FarmId(sid.0.clone())) {
                    self.err(
                        format!("{}.name", server_paths[sid]),
                        format!(
                            "server \"{sid}\" has the name of the farm at {fpath}: farms and servers share one namespace"
                        ),
                    );
                }
            }
        }
        let mut direct: BTreeMap<ServerId, Server> = BTreeMap::new();
        let mut direct_paths = BTreeMap::new();
        for (i, rs) in raw.servers.into_iter().enumerate() {
            let path = format!("servers[{i}]");
            if let Some(s) = self.server(&path, rs, true, &services, &index, &mut server_paths) {
                if let Some(fpath) = farm_paths.get(&FarmId(s.id.0.clone())) {
                    self.err(
                        format!("{path}.name"),
                        format!(
                            "server \"{}\" has the name of the farm at {fpath}: the global node could not tell them apart",
                            s.id
                        ),
                    );
                }
                direct_paths.insert(s.id.clone(), path);
                direct.insert(s.id.clone(), s);
            }
        }

        // every service offered somewhere
        for (id, path) in &service_paths {
            if !index.offered.contains(id.as_str()) {
                self.err(
                    path.clone(),
                    format!("service \"{id}\" is offered by no server"),
                );
            }
        }
        self.check_orders(&orders, &index);
        self.check_remote_probes(&services, &service_paths, &farms, &direct, &server_paths);

        let (Some(listen), Some(status), Some(dns)) = (global_listen, global_status, dns) else {
            return None;
        };
        let topology = Topology {
            name,
            file: self.opts.file.to_owned(),
            heartbeat,
            global: GlobalNode {
                name: global_name,
                listen,
                status,
                location: global_location,
            },
            dns,
            services,
            farms,
            direct_servers: direct,
        };
        self.check_nodes(&topology, &farm_paths, &server_paths);
        self.check_distances(&topology, &service_paths, &farm_paths, &direct_paths);
        self.check_ttl(&topology);
        Some(topology)
    }

    // ---- values

    fn name(&mut self, path: &str, name: &str) -> bool {
        let ok = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !ok {
            self.err(
                path,
                format!("invalid name \"{name}\": use 1 to 63 lowercase letters, digits and '-' (not first or last)"),
            );
        }
        ok
    }

    fn socket(&mut self, path: &str, s: &str) -> Option<SocketAddr> {
        match s.trim().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                let hint = if s.parse::<IpAddr>().is_ok() {
                    " (missing port)"
                } else if s.contains("::") && !s.starts_with('[') {
                    " (write IPv6 as \"[::1]:7400\")"
                } else {
                    " (expected ip:port; host names are not resolved)"
                };
                self.err(path, format!("invalid socket address \"{s}\"{hint}"));
                None
            }
        }
    }

    fn ip(&mut self, path: &str, s: &str) -> Option<IpAddr> {
        match s.trim().parse::<IpAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(path, format!("invalid ip address \"{s}\""));
                None
            }
        }
    }

    fn duration(&mut self, path: &str, d: &RawDuration) -> Option<Duration> {
        let parsed = match d {
            RawDuration::Text(s) => parse_duration(s),
            RawDuration::Seconds(s) => seconds_to_duration(*s),
        };
        match parsed {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(path, format!("invalid duration {d}: {e}"));
                None
            }
        }
    }

    fn positive_duration(&mut self, path: &str, d: &RawDuration) -> Option<Duration> {
        let v = self.duration(path, d)?;
        if v.is_zero() {
            self.err(path, "must be longer than zero");
            return None;
        }
        Some(v)
    }

    fn int(&mut self, path: &str, v: i64, lo: i64, hi: i64) -> Option<i64> {
        if (lo..=hi).contains(&v) {
            Some(v)
        } else {
            self.err(path, format!("{v} is out of range {lo}..={hi}"));
            None
        }
    }

    fn port(&mut self, path: &str, v: i64) -> Option<u16> {
        self.int(path, v, 1, 65535).map(|v| v as u16)
    }

    fn location(&mut self, path: &str, l: RawLocation) -> Option<Location> {
        let location = Location {
            lat: l.lat,
            lon: l.lon,
        };
        let problems = location.problems();
        let ok = problems.is_empty();
        for (field, message) in problems {
            self.err(format!("{path}.{field}"), message);
        }
        ok.then_some(location)
    }

    fn distance_ms(&mut self, path: &str, v: Option<f64>) -> Option<f64> {
        let v = v?;
        if v.is_finite() && v >= 0.0 {
            Some(v)
        } else {
            self.err(path, format!("distance {v} ms must be a number ≥ 0"));
            None
        }
    }

    fn domain(&mut self, path: &str, s: &str) -> Option<String> {
        let lower = s.trim().to_ascii_lowercase();
        let body = lower.strip_suffix('.').unwrap_or(&lower);
        let ok = !body.is_empty()
            && body.len() <= 253
            && body.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if ok {
            Some(format!("{body}."))
        } else {
            self.err(path, format!("invalid domain name \"{s}\""));
            None
        }
    }

    fn file_path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        match self.opts.base_dir {
            Some(base) if p.is_relative() => base.join(p),
            _ => p.to_owned(),
        }
    }

    fn heartbeat(&mut self, path: &str, raw: Option<&RawHeartbeat>, base: Heartbeat) -> Heartbeat {
        let Some(raw) = raw else { return base };
        let mut hb = base;
        if let Some(d) = &raw.interval
            && let Some(d) = self.positive_duration(&format!("{path}.interval"), d)
        {
            hb.interval = d;
        }
        if let Some(m) = raw.missed
            && let Some(m) = self.int(&format!("{path}.missed"), m, 1, 1000)
        {
            hb.missed = m as u32;
        }
        hb
    }

    // ---- dns

    fn dns(&mut self, raw: RawDns) -> Option<DnsTarget> {
        let zone = self.domain("dns.zone", &raw.zone);
        let ttl = match &raw.ttl {
            Some(d) => self.duration("dns.ttl", d),
            None => Some(DEFAULT_TTL),
        };
        if ttl.is_some_and(|t| t > Duration::from_secs(i32::MAX as u64)) {
            self.err("dns.ttl", "ttl above 2^31-1 seconds is not valid DNS");
        }
        if ttl == Some(Duration::ZERO) {
            self.warn(
                "dns.ttl",
                "ttl 0 disables caching: every client query reaches the DNS server",
            );
        }
        let ttl_min = match &raw.ttl_min {
            Some(d) => self.duration("dns.ttl_min", d),
            None => Some(DEFAULT_TTL_MIN.min(ttl.unwrap_or(DEFAULT_TTL))),
        };
        if let (Some(min), Some(max)) = (ttl_min, ttl)
            && min > max
        {
            self.err(
                "dns.ttl_min",
                format!("ttl_min {} is above ttl {}", human(min), human(max)),
            );
        }
        let reconcile = match &raw.reconcile {
            Some(d) => self.duration("dns.reconcile", d),
            None => Some(DEFAULT_RECONCILE),
        };
        if reconcile == Some(Duration::ZERO) {
            self.err("dns.reconcile", "reconcile interval must be above 0");
        }
        let file = match &raw.file {
            Some(f) if f.json.trim().is_empty() => {
                self.err("dns.file.json", "must not be empty");
                None
            }
            Some(f) => Some(FileOutput {
                json: self.file_path(&f.json),
                zone_fragment: f.zone_fragment.as_deref().map(|z| self.file_path(z)),
            }),
            None => None,
        };
        let command = match &raw.command {
            Some(c) if c.argv.is_empty() || c.argv[0].trim().is_empty() => {
                self.err("dns.command.argv", "must name a program");
                None
            }
            Some(c) => {
                let timeout = match &c.timeout {
                    Some(d) => self.duration("dns.command.timeout", d),
                    None => Some(Duration::from_secs(10)),
                };
                timeout.map(|timeout| CommandOutput {
                    argv: c.argv.clone(),
                    timeout,
                })
            }
            None => None,
        };
        let answers = match raw.answers {
            Some(a) => self.int("dns.answers", a, 1, 64).map(|a| a as usize),
            None => Some(1),
        };
        let server = match (raw.server, raw.servers, raw.embedded) {
            (Some(_), Some(_), _) => {
                self.err("dns.server", "give `server` or `servers`, not both");
                None
            }
            (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
                self.err(
                    "dns.embedded",
                    "`embedded` and `server(s)` exclude each other: run the built-in server or update an external one",
                );
                None
            }
            (Some(s), None, None) => self
                .socket("dns.server", &s)
                .map(|a| DnsServer::Rfc2136 { primaries: vec![a] }),
            (None, Some(list), None) => {
                if list.is_empty() {
                    self.err("dns.servers", "at least one server is needed");
                }
                let mut primaries = Vec::new();
                for (i, s) in list.iter().enumerate() {
                    let p = format!("dns.servers[{i}]");
                    if let Some(a) = self.socket(&p, s) {
                        if primaries.contains(&a) {
                            self.err(p, format!("server {a} listed twice"));
                        } else {
                            primaries.push(a);
                        }
                    }
                }
                (!list.is_empty() && primaries.len() == list.len())
                    .then_some(DnsServer::Rfc2136 { primaries })
            }
            (None, None, Some(e)) => {
                let listen = self.socket("dns.embedded.listen", &e.listen);
                if e.state_dir.trim().is_empty() {
                    self.err("dns.embedded.state_dir", "must not be empty");
                }
                listen.map(|listen| DnsServer::Embedded {
                    listen,
                    state_dir: self.file_path(&e.state_dir),
                })
            }
            (None, None, None) => {
                self.err(
                    "dns",
                    "missing `servers` (external primaries updated by RFC 2136) or `embedded` (the built-in server)",
                );
                None
            }
        };
        let (tsig, tsig_file) = match raw.tsig {
            Some(t) => self.tsig(t),
            None => {
                if matches!(server, Some(DnsServer::Rfc2136 { .. })) {
                    self.err(
                        "dns.tsig",
                        "missing: updates to an external server must be signed with a TSIG key",
                    );
                }
                (None, None)
            }
        };
        Some(DnsTarget {
            zone: zone?,
            ttl: ttl?,
            derive_ttl: raw.derive_ttl.unwrap_or(false),
            ttl_min: ttl_min?,
            reconcile: reconcile?,
            file,
            command,
            answers: answers?,
            server: server?,
            tsig,
            tsig_file,
        })
    }

    fn tsig(&mut self, raw: RawTsig) -> (Option<TsigKey>, Option<PathBuf>) {
        let algorithm = match &raw.algorithm {
            Some(a) => match TsigAlgorithm::parse(a) {
                Ok(a) => Some(a),
                Err(e) => {
                    self.err("dns.tsig.algorithm", e);
                    return (None, None);
                }
            },
            None => None,
        };
        let key = match (raw.key_file, raw.secret) {
            (Some(_), Some(_)) => {
                self.err("dns.tsig.secret", "give `key_file` or `secret`, not both");
                return (None, None);
            }
            (None, None) => {
                self.err(
                    "dns.tsig",
                    "needs `key_file` (a tsig-keygen file or a bare base64 secret) or `secret`",
                );
                return (None, None);
            }
            (None, Some(secret)) => {
                let secret = match decode_secret(&secret) {
                    Ok(s) => s,
                    Err(e) => {
                        self.err("dns.tsig.secret", e);
                        return (None, None);
                    }
                };
                let Some(name) = raw.name else {
                    self.err("dns.tsig.name", "required with an inline secret");
                    return (None, None);
                };
                (
                    TsigKey {
                        name,
                        algorithm: algorithm.unwrap_or(TsigAlgorithm::HmacSha256),
                        secret,
                    },
                    None,
                )
            }
            (Some(file), None) => {
                let path = self.file_path(&file);
                if !self.opts.read_key_files {
                    return (None, Some(path));
                }
                let shown = path.display().to_string();
                let text = match std::fs::read_to_string(&path) {
                    Ok(t) => t,
                    Err(e) => {
                        self.err(
                            "dns.tsig.key_file",
                            format!("cannot read key file \"{shown}\": {e}"),
                        );
                        return (None, Some(path));
                    }
                };
                match parse_key_file(&text) {
                    Err(e) => {
                        self.err("dns.tsig.key_file", format!("key file \"{shown}\": {e}"));
                        return (None, Some(path));
                    }
                    Ok(KeyFile::Bare(secret)) => {
                        let Some(name) = raw.name else {
                            self.err(
                                "dns.tsig.name",
                                format!("required: key file \"{shown}\" holds a bare secret, not a named key"),
                            );
                            return (None, Some(path));
                        };
                        (
                            TsigKey {
                                name,
                                algorithm: algorithm.unwrap_or(TsigAlgorithm::HmacSha256),
                                secret,
                            },
                            Some(path),
                        )
                    }
                    Ok(KeyFile::Keys(keys)) => {
                        let names = || {
                            keys.iter()
                                .map(|k| format!("\"{}\"", k.name))
                                .collect::<Vec<_>>()
                                .join(", ")
                        };
                        let found = match &raw.name {
                            Some(n) => keys
                                .iter()
                                .find(|k| k.name.trim_end_matches('.') == n.trim_end_matches('.')),
                            None if keys.len() == 1 => keys.first(),
                            None => {
                                self.err(
                                    "dns.tsig.name",
                                    format!(
                                        "required: key file \"{shown}\" holds several keys ({})",
                                        names()
                                    ),
                                );
                                return (None, Some(path));
                            }
                        };
                        let Some(k) = found else {
                            self.err(
                                "dns.tsig.name",
                                format!(
                                    "key file \"{shown}\" has no key \"{}\" (it has {})",
                                    raw.name.unwrap_or_default(),
                                    names()
                                ),
                            );
                            return (None, Some(path));
                        };
                        let file_alg = match TsigAlgorithm::parse(&k.algorithm) {
                            Ok(a) => a,
                            Err(e) => {
                                self.err("dns.tsig.key_file", format!("key file \"{shown}\": {e}"));
                                return (None, Some(path));
                            }
                        };
                        if let Some(a) = algorithm
                            && a != file_alg
                        {
                            self.err(
                                "dns.tsig.algorithm",
                                format!("{a} does not match key \"{}\" in \"{shown}\", which is {file_alg}", k.name),
                            );
                        }
                        (
                            TsigKey {
                                name: k.name.clone(),
                                algorithm: file_alg,
                                secret: k.secret.clone(),
                            },
                            Some(path),
                        )
                    }
                }
            }
        };
        let (key, file) = key;
        if key.secret.len() < key.algorithm.output_len() {
            self.warn(
                "dns.tsig",
                format!(
                    "key \"{}\" is {} bytes, shorter than {}'s {} (RFC 8945 advises at least that); make one with tsig-keygen",
                    key.name,
                    key.secret.len(),
                    key.algorithm,
                    key.algorithm.output_len()
                ),
            );
        }
        (Some(key), file)
    }

    // ---- services

    fn service(
        &mut self,
        path: &str,
        raw: RawService,
        default_answers: usize,
        dns: Option<&DnsTarget>,
        orders: &mut Vec<OrderCheck>,
    ) -> Option<Service> {
        let name_ok = self.name(&format!("{path}.name"), &raw.name);
        let id = ServiceId(raw.name.clone());
        let fqdn = self.domain(&format!("{path}.fqdn"), &raw.fqdn);
        if let (Some(f), Some(d)) = (&fqdn, dns)
            && !(f == &d.zone || f.ends_with(&format!(".{}", d.zone)))
        {
            self.err(
                format!("{path}.fqdn"),
                format!("\"{f}\" is not inside zone \"{}\"", d.zone),
            );
        }
        let port = self.port(&format!("{path}.port"), raw.port);

        let mut probes = Vec::new();
        let mut probe_paths: BTreeMap<ProbeId, String> = BTreeMap::new();
        let mut probes_ok = true;
        for (i, rp) in raw.probes.iter().enumerate() {
            let ppath = format!("{path}.probes[{i}]");
            match self.probe(&ppath, rp) {
                Some(p) => {
                    if let Some(first) = probe_paths.get(&p.id) {
                        self.err(
                            format!("{ppath}.name"),
                            format!(
                                "probe \"{}\" declared twice in service \"{id}\" (first at {first}); give one a `name`",
                                p.id
                            ),
                        );
                        probes_ok = false;
                    }
                    probe_paths.insert(p.id.clone(), ppath);
                    probes.push(p);
                }
                None => probes_ok = false,
            }
        }
        if probes_ok && !probes.iter().any(|p| p.affects_health) {
            self.warn(
                format!("{path}.probes"),
                format!(
                    "service \"{id}\" has no probe that affects health: its instances are down only when their reports stop"
                ),
            );
        }
        let metrics = metrics_of_probes(&probes);
        let global_base = SelectorConfig {
            answers: default_answers,
            ..SelectorConfig::new(Policy::Closest(ClosestBy::Auto))
        };
        let global_use = PolicyUse {
            service: &id,
            scope: Scope::Global,
            metrics: &metrics,
        };
        let global = self.tier(
            &format!("{path}.global"),
            raw.global.as_ref(),
            global_base,
            &global_use,
            orders,
        );
        let local_use = PolicyUse {
            service: &id,
            scope: Scope::AnyFarm,
            metrics: &metrics,
        };
        let local = self.tier(
            &format!("{path}.local"),
            raw.local.as_ref(),
            // No hysteresis by default inside a farm: with DNS caching, holding a
            // least-loaded choice for a dwell sends every refreshing resolver to the same
            // server until it drowns (see the simulation in the README).
            SelectorConfig {
                hysteresis: Hysteresis::NONE,
                ..SelectorConfig::new(Policy::LeastLoaded)
            },
            &local_use,
            orders,
        );
        if !name_ok || !probes_ok {
            return None;
        }
        let port = port?;
        let ttl = match &raw.ttl {
            Some(d) => Some(self.duration(&format!("{path}.ttl"), d)?),
            None => None,
        };
        for probe in &mut probes {
            if let ProbeKind::Load(LoadSource::ProcNetTcp { port: p }) = &mut probe.kind {
                *p = probe.port.unwrap_or(port);
            }
        }
        Some(Service {
            id,
            fqdn: fqdn?,
            port,
            ttl,
            probes,
            global: global?,
            local: local?,
        })
    }

    fn probe(&mut self, path: &str, raw: &RawProbe) -> Option<Probe> {
        let p = |f: &str| format!("{path}.{f}");
        let (interval_default, timeout_default, affects_default) = match raw.kind.as_str() {
            "tcp" | "http" | "https" | "icmp" => (DEFAULT_INTERVAL, DEFAULT_TIMEOUT, true),
            "hops" => (DEFAULT_HOPS_INTERVAL, Duration::from_secs(10), false),
            "load" => (DEFAULT_INTERVAL, DEFAULT_TIMEOUT, false),
            "command" => (DEFAULT_INTERVAL, Duration::from_secs(2), false),
            other => {
                self.err(
                    p("kind"),
                    format!("unknown probe kind \"{other}\" (expected one of {PROBE_KINDS})"),
                );
                return None;
            }
        };
        let kind_name = raw.kind.clone();
        // fields that only some kinds take
        let allowed: &[&str] = match raw.kind.as_str() {
            "http" => &["path", "host", "expect_status", "body_contains"],
            "https" => &["path", "host", "expect_status", "body_contains", "ca_file"],
            "hops" => &["max_hops"],
            "load" => &["source", "url", "metric"],
            "command" => &["argv", "metric"],
            _ => &[],
        };
        let given = [
            ("path", raw.path.is_some()),
            ("host", raw.host.is_some()),
            ("expect_status", raw.expect_status.is_some()),
            ("body_contains", raw.body_contains.is_some()),
            ("ca_file", raw.ca_file.is_some()),
            ("max_hops", raw.max_hops.is_some()),
            ("source", raw.source.is_some()),
            ("url", raw.url.is_some()),
            ("metric", raw.metric.is_some()),
            ("argv", raw.argv.is_some()),
        ];
        let mut ok = true;
        for (field, present) in given {
            if present && !allowed.contains(&field) {
                self.err(
                    p(field),
                    format!("`{field}` does not apply to a \"{kind_name}\" probe"),
                );
                ok = false;
            }
        }
        let name = raw.name.clone().unwrap_or_else(|| kind_name.clone());
        ok &= self.name(&p("name"), &name);
        let interval = match &raw.interval {
            Some(d) => self.positive_duration(&p("interval"), d),
            None => Some(interval_default),
        };
        let timeout = match &raw.timeout {
            Some(d) => self.positive_duration(&p("timeout"), d),
            None => Some(timeout_default.min(interval.unwrap_or(timeout_default))),
        };
        let rise = raw
            .rise
            .map_or(Some(2), |v| self.int(&p("rise"), v, 1, 100));
        let fall = raw
            .fall
            .map_or(Some(2), |v| self.int(&p("fall"), v, 1, 100));
        let port = match raw.port {
            Some(v) => self.port(&p("port"), v).map(Some),
            None => Some(None),
        };

        let kind = match raw.kind.as_str() {
            "tcp" => Some(ProbeKind::Tcp),
            "icmp" => Some(ProbeKind::Icmp),
            "http" | "https" => {
                let http_path = raw.path.clone().unwrap_or_else(|| "/".to_owned());
                if !http_path.starts_with('/') {
                    self.err(p("path"), format!("\"{http_path}\" must start with '/'"));
                    ok = false;
                }
                let status = raw
                    .expect_status
                    .map_or(Some(200), |v| self.int(&p("expect_status"), v, 100, 599));
                let ca_file = raw.ca_file.as_deref().map(|f| self.file_path(f));
                if let Some(f) = &ca_file
                    && !f.exists()
                {
                    self.warn(
                        p("ca_file"),
                        format!(
                            "\"{}\" does not exist here (it must on the node that runs the probe)",
                            f.display()
                        ),
                    );
                }
                status.map(|s| {
                    let check = HttpCheck {
                        path: http_path,
                        host: raw.host.clone(),
                        expect_status: s as u16,
                        body_contains: raw.body_contains.clone(),
                        ca_file,
                    };
                    if raw.kind == "http" {
                        ProbeKind::Http(check)
                    } else {
                        ProbeKind::Https(check)
                    }
                })
            }
            "hops" => raw
                .max_hops
                .map_or(Some(30), |v| self.int(&p("max_hops"), v, 1, 255))
                .map(|m| ProbeKind::Hops { max_hops: m as u8 }),
            "load" => self.load_source(path, raw).map(ProbeKind::Load),
            "command" => {
                let argv = raw.argv.clone().unwrap_or_default();
                if argv.is_empty() || argv[0].trim().is_empty() {
                    self.err(
                        p("argv"),
                        "a command probe needs `argv`, e.g. [\"/usr/local/bin/dbusers\"]",
                    );
                    ok = false;
                }
                let metric = self.metric_name(&p("metric"), raw.metric.as_deref(), "command");
                metric.map(|metric| ProbeKind::Command { argv, metric })
            }
            _ => None,
        };

        let (interval, timeout) = (interval?, timeout?);
        let (rise, fall) = (rise? as u32, fall? as u32);
        if timeout >= interval && raw.timeout.is_some() {
            self.warn(
                p("timeout"),
                format!(
                    "timeout {} is not below the interval {}: a slow run delays the next one",
                    human(timeout),
                    human(interval)
                ),
            );
        }
        if interval < Duration::from_secs(1) && (rise == 1 || fall == 1) {
            self.warn(
                path,
                format!(
                    "rise {rise} / fall {fall} with a {} interval: a single lost packet changes health; expect flapping",
                    human(interval)
                ),
            );
        }
        if raw.kind == "hops" && interval < Duration::from_secs(60) {
            self.warn(
                p("interval"),
                format!(
                    "hop counts change rarely; probing them every {} costs traffic for nothing",
                    human(interval)
                ),
            );
        }
        if !ok {
            return None;
        }
        Some(Probe {
            id: ProbeId(name),
            kind: kind?,
            interval,
            timeout,
            thresholds: Thresholds { rise, fall },
            affects_health: raw.affects_health.unwrap_or(affects_default),
            port: port?,
        })
    }

    fn load_source(&mut self, path: &str, raw: &RawProbe) -> Option<LoadSource> {
        let p = |f: &str| format!("{path}.{f}");
        let Some(source) = &raw.source else {
            self.err(
                p("source"),
                "a load probe needs `source`: nginx_stub_status, prometheus or proc_net_tcp",
            );
            return None;
        };
        let url = |cx: &mut Self| -> Option<String> {
            match &raw.url {
                Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
                    match url_host_problem(u) {
                        None => Some(u.clone()),
                        Some(why) => {
                            cx.err(p("url"), format!("\"{u}\": {why}"));
                            None
                        }
                    }
                }
                Some(u) => {
                    cx.err(
                        p("url"),
                        format!("\"{u}\" is not an http:// or https:// URL"),
                    );
                    None
                }
                None => {
                    cx.err(p("url"), format!("required with source \"{source}\""));
                    None
                }
            }
        };
        match source.as_str() {
            "nginx_stub_status" => {
                if raw.metric.is_some() {
                    self.err(
                        p("metric"),
                        "`metric` does not apply to source \"nginx_stub_status\"",
                    );
                }
                url(self).map(|url| LoadSource::NginxStubStatus { url })
            }
            "prometheus" => {
                let u = url(self);
                let m = self.metric_name(&p("metric"), raw.metric.as_deref(), "prometheus");
                Some(LoadSource::Prometheus {
                    url: u?,
                    metric: m?,
                })
            }
            "proc_net_tcp" => {
                for (f, given) in [("url", raw.url.is_some()), ("metric", raw.metric.is_some())] {
                    if given {
                        self.err(
                            p(f),
                            format!("`{f}` does not apply to source \"proc_net_tcp\""),
                        );
                    }
                }
                // the port comes from the probe's `port`, else the service's; filled in later
                Some(LoadSource::ProcNetTcp { port: 0 })
            }
            other => {
                self.err(
                    p("source"),
                    format!("unknown load source \"{other}\" (expected nginx_stub_status, prometheus or proc_net_tcp)"),
                );
                None
            }
        }
    }

    fn metric_name(&mut self, path: &str, metric: Option<&str>, what: &str) -> Option<String> {
        match metric {
            Some(m) if !m.trim().is_empty() => Some(m.to_owned()),
            _ => {
                self.err(
                    path,
                    format!("a {what} probe needs `metric`, the name its value is recorded under"),
                );
                None
            }
        }
    }

    // ---- policies

    fn tier(
        &mut self,
        path: &str,
        raw: Option<&RawTier>,
        base: SelectorConfig,
        usage: &PolicyUse<'_>,
        orders: &mut Vec<OrderCheck>,
    ) -> Option<SelectorConfig> {
        let Some(raw) = raw else { return Some(base) };
        let mut cfg = base;
        let mut ok = true;
        if let Some(p) = &raw.policy {
            let ppath = format!("{path}.policy");
            match self.policy(&ppath, &p.0, usage, orders, false) {
                Some(p) => cfg.policy = p,
                None => ok = false,
            }
        }
        if let Some(a) = raw.answers {
            match self.int(&format!("{path}.answers"), a, 1, 64) {
                Some(a) => cfg.answers = a as usize,
                None => ok = false,
            }
        }
        if let Some(fs) = &raw.fail_static {
            match fs.as_str() {
                "keep_last" => cfg.fail_static = FailStatic::KeepLast,
                "all" => cfg.fail_static = FailStatic::All,
                other => {
                    self.err(
                        format!("{path}.fail_static"),
                        format!("unknown fail_static \"{other}\" (expected keep_last or all)"),
                    );
                    ok = false;
                }
            }
        }
        if let Some(h) = &raw.hysteresis {
            let mut hyst: Hysteresis = cfg.hysteresis;
            if let Some(m) = h.margin {
                if (0.0..1.0).contains(&m) {
                    hyst.margin = m;
                } else {
                    self.err(
                        format!("{path}.hysteresis.margin"),
                        format!("margin {m} is out of range 0..1 (0.2 = a challenger must be 20 % better)"),
                    );
                    ok = false;
                }
            }
            if let Some(d) = &h.dwell {
                match self.duration(&format!("{path}.hysteresis.dwell"), d) {
                    Some(d) => hyst.dwell = d,
                    None => ok = false,
                }
            }
            cfg.hysteresis = hyst;
        }
        if let Some(r) = &raw.rotate_every {
            match self.positive_duration(&format!("{path}.rotate_every"), r) {
                Some(r) => cfg.rotate_every = r,
                None => ok = false,
            }
        }
        ok.then_some(cfg)
    }

    fn policy(
        &mut self,
        path: &str,
        raw: &RawPolicyTable,
        usage: &PolicyUse<'_>,
        orders: &mut Vec<OrderCheck>,
        nested: bool,
    ) -> Option<Policy> {
        let p = |f: &str| format!("{path}.{f}");
        let Some(kind) = PolicyKind::from_name(&raw.kind) else {
            self.err(
                if raw.short {
                    path.to_owned()
                } else {
                    p("kind")
                },
                format!(
                    "unknown policy \"{}\" (expected one of {})",
                    raw.kind,
                    PolicyKind::list(PolicyKind::ALL)
                ),
            );
            return None;
        };
        let given = [
            ("by", raw.by.is_some()),
            ("order", raw.order.is_some()),
            ("metric", raw.metric.is_some()),
            ("filters", raw.filters.is_some()),
            ("rank", raw.rank.is_some()),
        ];
        let mut ok = true;
        for (field, present) in given {
            if present && !kind.fields().contains(&field) {
                self.err(
                    p(field),
                    format!("`{field}` does not apply to policy \"{}\"", raw.kind),
                );
                ok = false;
            }
        }
        let policy = match kind {
            PolicyKind::LeastLoaded
            | PolicyKind::FastestResponse
            | PolicyKind::Weighted
            | PolicyKind::RoundRobin
            | PolicyKind::Random => kind.plain()?,
            PolicyKind::Closest => match raw.by.as_deref().unwrap_or("auto") {
                "auto" => Policy::Closest(ClosestBy::Auto),
                "rtt" => Policy::Closest(ClosestBy::Rtt),
                "hops" => Policy::Closest(ClosestBy::Hops),
                "declared" => Policy::Closest(ClosestBy::Declared),
                other => {
                    self.err(
                        p("by"),
                        format!("unknown distance \"{other}\" for policy \"closest\" (expected auto, rtt, hops or declared)"),
                    );
                    return None;
                }
            },
            PolicyKind::Failover => {
                let order = raw.order.clone().unwrap_or_default();
                if order.is_empty() {
                    self.err(
                        p("order"),
                        "policy \"failover\" needs `order`, the names to prefer in turn",
                    );
                    return None;
                }
                let mut seen = BTreeSet::new();
                for (i, n) in order.iter().enumerate() {
                    if !seen.insert(n) {
                        self.err(
                            format!("{path}.order[{i}]"),
                            format!("\"{n}\" listed twice"),
                        );
                        ok = false;
                    }
                }
                let order: Vec<CandidateId> = order.into_iter().map(CandidateId).collect();
                orders.push(OrderCheck {
                    path: p("order"),
                    service: usage.service.clone(),
                    scope: usage.scope.clone(),
                    order: order.clone(),
                });
                Policy::Failover(order)
            }
            PolicyKind::LowestMetric => {
                let Some(m) = raw.metric.clone().filter(|m| !m.trim().is_empty()) else {
                    self.err(p("metric"), "policy \"lowest_metric\" needs `metric`");
                    return None;
                };
                self.check_metric(&p("metric"), &m, usage);
                Policy::LowestMetric(m)
            }
            PolicyKind::Composite => {
                if nested {
                    self.err(
                        path,
                        "a composite policy cannot rank by another composite; merge their filters",
                    );
                    return None;
                }
                let raw_filters = raw.filters.clone().unwrap_or_default();
                if raw_filters.is_empty() {
                    self.err(
                        p("filters"),
                        "policy \"composite\" needs `filters`, e.g. [{ max_load = 0.8 }]",
                    );
                    ok = false;
                }
                let mut filters = Vec::new();
                for (i, f) in raw_filters.iter().enumerate() {
                    let fp = format!("{path}.filters[{i}]");
                    let mut any = false;
                    if let Some(l) = f.max_load {
                        any = true;
                        if (0.0..=1.0).contains(&l) {
                            filters.push(Filter::MaxLoad(l));
                        } else {
                            self.err(
                                format!("{fp}.max_load"),
                                format!("{l} is out of range 0..=1 (0.8 = 80 % of capacity)"),
                            );
                            ok = false;
                        }
                    }
                    if let Some(d) = &f.max_response_time {
                        any = true;
                        match self.positive_duration(&format!("{fp}.max_response_time"), d) {
                            Some(d) => filters.push(Filter::MaxResponseTime(d)),
                            None => ok = false,
                        }
                    }
                    if let Some(m) = &f.max_metric {
                        any |= !m.is_empty();
                        for (name, v) in m {
                            if v.is_finite() {
                                self.check_metric(&format!("{fp}.max_metric.{name}"), name, usage);
                                filters.push(Filter::MaxMetric(name.clone(), *v));
                            } else {
                                self.err(
                                    format!("{fp}.max_metric.{name}"),
                                    format!("{v} is not a number"),
                                );
                                ok = false;
                            }
                        }
                    }
                    if !any {
                        self.err(
                            fp,
                            "an empty filter: give max_load, max_response_time or max_metric",
                        );
                        ok = false;
                    }
                }
                let Some(rank) = &raw.rank else {
                    self.err(
                        p("rank"),
                        "policy \"composite\" needs `rank`, the policy applied among those passing",
                    );
                    return None;
                };
                let rank = self.policy(&p("rank"), &rank.0, usage, orders, true)?;
                Policy::Composite {
                    filters,
                    rank: Box::new(rank),
                }
            }
        };
        ok.then_some(policy)
    }

    fn check_metric(&mut self, path: &str, metric: &str, usage: &PolicyUse<'_>) {
        if !usage.metrics.contains(metric) {
            self.warn(
                path,
                format!(
                    "no probe of service \"{}\" measures metric \"{metric}\" (add a command or prometheus load probe)",
                    usage.service
                ),
            );
        }
    }

    // ---- farms and servers

    #[allow(clippy::too_many_arguments)]
    fn farm(
        &mut self,
        path: &str,
        raw: RawFarm,
        services: &BTreeMap<ServiceId, Service>,
        index: &RawIndex,
        metrics: &BTreeMap<ServiceId, BTreeSet<String>>,
        heartbeat: Heartbeat,
        server_paths: &mut BTreeMap<ServerId, String>,
        orders: &mut Vec<OrderCheck>,
    ) -> Option<Farm> {
        let name_ok = self.name(&format!("{path}.name"), &raw.name);
        let id = FarmId(raw.name.clone());
        let listen = self.socket(&format!("{path}.listen"), &raw.listen);
        let status = self.socket(&format!("{path}.status"), &raw.status);
        let distance_ms = self.distance_ms(&format!("{path}.distance_ms"), raw.distance_ms);
        let location = raw
            .location
            .and_then(|l| self.location(&format!("{path}.location"), l));
        let heartbeat = self.heartbeat(
            &format!("{path}.heartbeat"),
            raw.heartbeat.as_ref(),
            heartbeat,
        );
        if raw.servers.is_empty() {
            self.err(
                format!("{path}.servers"),
                format!("farm \"{id}\" has no servers"),
            );
        }
        let mut servers = BTreeMap::new();
        let mut ok = name_ok;
        for (i, rs) in raw.servers.into_iter().enumerate() {
            // a bad server has its own errors; the farm goes on without it
            if let Some(s) = self.server(
                &format!("{path}.servers[{i}]"),
                rs,
                false,
                services,
                index,
                server_paths,
            ) {
                servers.insert(s.id.clone(), s);
            }
        }
        let offered: BTreeSet<ServiceId> = servers
            .values()
            .flat_map(|s| s.services.iter().cloned())
            .collect();
        let mut local = BTreeMap::new();
        for (key, over) in &raw.local {
            let lpath = format!("{path}.local.{key}");
            let sid = ServiceId(key.clone());
            let Some(svc) = services.get(&sid) else {
                if !index.services.contains(key) {
                    self.err(lpath, format!("unknown service \"{key}\""));
                    ok = false;
                }
                continue;
            };
            if !offered.contains(&sid) {
                self.warn(lpath.clone(), format!("farm \"{id}\" overrides service \"{key}\", which none of its servers offers"));
            }
            let empty = BTreeSet::new();
            let usage = PolicyUse {
                service: &sid,
                scope: Scope::Farm(id.clone()),
                metrics: metrics.get(&sid).unwrap_or(&empty),
            };
            match self.tier(&lpath, Some(over), svc.local.clone(), &usage, orders) {
                Some(cfg) => {
                    local.insert(sid, cfg);
                }
                None => ok = false,
            }
        }
        for sid in &offered {
            if !local.contains_key(sid)
                && let Some(svc) = services.get(sid)
            {
                local.insert(sid.clone(), svc.local.clone());
            }
        }
        local.retain(|sid, _| offered.contains(sid));
        if !ok {
            return None;
        }
        Some(Farm {
            id,
            listen: listen?,
            status: status?,
            distance_ms,
            location,
            heartbeat,
            local,
            servers,
        })
    }

    fn server(
        &mut self,
        path: &str,
        raw: RawServer,
        direct: bool,
        services: &BTreeMap<ServiceId, Service>,
        index: &RawIndex,
        server_paths: &mut BTreeMap<ServerId, String>,
    ) -> Option<Server> {
        let p = |f: &str| format!("{path}.{f}");
        let mut ok = self.name(&p("name"), &raw.name);
        let id = ServerId(raw.name.clone());
        if ok {
            if let Some(first) = server_paths.get(&id) {
                self.err(
                    p("name"),
                    format!("server \"{id}\" declared twice (first at {first})"),
                );
                ok = false;
            } else {
                server_paths.insert(id.clone(), path.to_owned());
            }
        }
        let mut addresses = Vec::new();
        match (&raw.address, &raw.addresses) {
            (Some(_), Some(_)) => {
                self.err(p("addresses"), "give `address` or `addresses`, not both");
                ok = false;
            }
            (None, None) => {
                self.err(
                    path,
                    format!("server \"{id}\" needs `address` or `addresses`"),
                );
                ok = false;
            }
            (Some(a), None) => match self.ip(&p("address"), a) {
                Some(a) => addresses.push(a),
                None => ok = false,
            },
            (None, Some(list)) => {
                if list.is_empty() {
                    self.err(
                        p("addresses"),
                        format!("server \"{id}\" needs at least one address"),
                    );
                    ok = false;
                }
                for (i, a) in list.iter().enumerate() {
                    let ap = format!("{path}.addresses[{i}]");
                    match self.ip(&ap, a) {
                        Some(a) if addresses.contains(&a) => {
                            self.err(ap, format!("address {a} listed twice"));
                            ok = false;
                        }
                        Some(a) => addresses.push(a),
                        None => ok = false,
                    }
                }
            }
        }
        if raw.services.is_empty() {
            self.err(p("services"), format!("server \"{id}\" offers no service"));
            ok = false;
        }
        let mut offered = BTreeSet::new();
        for (i, s) in raw.services.iter().enumerate() {
            let sp = format!("{path}.services[{i}]");
            let sid = ServiceId(s.clone());
            if !services.contains_key(&sid) {
                // a service that failed validation is not "unknown": it has its own errors
                if !index.services.contains(s) {
                    self.err(sp, format!("unknown service \"{s}\""));
                }
                ok = false;
            } else if !offered.insert(sid) {
                self.err(sp, format!("service \"{s}\" listed twice"));
                ok = false;
            }
        }
        let mode = match raw.mode.as_deref().unwrap_or("remote") {
            "remote" => {
                if raw.agent.is_some() {
                    self.err(
                        p("agent"),
                        "only intrusive servers have an agent (set mode = \"intrusive\")",
                    );
                    ok = false;
                }
                Mode::Remote
            }
            "intrusive" => {
                let agent = raw.agent.clone().unwrap_or_else(|| raw.name.clone());
                ok &= raw.agent.is_none() || self.name(&p("agent"), &agent);
                Mode::Intrusive { agent }
            }
            other => {
                self.err(
                    p("mode"),
                    format!("unknown mode \"{other}\" (expected remote or intrusive)"),
                );
                ok = false;
                Mode::Remote
            }
        };
        let capacity = raw.capacity.unwrap_or(DEFAULT_CAPACITY);
        if !(capacity.is_finite() && capacity > 0.0) {
            self.err(
                p("capacity"),
                format!("capacity {capacity} must be a number > 0"),
            );
            ok = false;
        }
        let probe_address = match &raw.probe_address {
            Some(a) => match self.ip(&p("probe_address"), a) {
                Some(a) => Some(a),
                None => {
                    ok = false;
                    None
                }
            },
            None => None,
        };
        let (mut distance_ms, mut location) = (None, None);
        if direct {
            distance_ms = self.distance_ms(&p("distance_ms"), raw.distance_ms);
            location = raw.location.and_then(|l| self.location(&p("location"), l));
        } else {
            for (f, given) in [
                ("distance_ms", raw.distance_ms.is_some()),
                ("location", raw.location.is_some()),
            ] {
                if given {
                    self.err(
                        p(f),
                        format!("`{f}` applies only to servers attached directly to the global node; set it on the farm"),
                    );
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        // two servers answering the same address for one port are one server to clients
        // and to probes: their health and load would mix
        for (i, a) in addresses.iter().enumerate() {
            let apath = if raw.address.is_some() {
                p("address")
            } else {
                format!("{path}.addresses[{i}]")
            };
            let ports: BTreeSet<(u16, &ServiceId)> = offered
                .iter()
                .filter_map(|sid| services.get(sid).map(|s| (s.port, sid)))
                .collect();
            let mut reported = false;
            for (port, sid) in ports {
                match self.answered.get(&(*a, port)) {
                    Some((other, first)) if other != &id && !reported => {
                        let msg = format!(
                            "server \"{id}\" and server \"{other}\" (at {first}) both answer {} for port {port} (service \"{sid}\"): give each server its own address",
                            SocketAddr::new(*a, port)
                        );
                        self.err(apath.clone(), msg);
                        reported = true;
                    }
                    Some(_) => {}
                    None => {
                        self.answered
                            .insert((*a, port), (id.clone(), apath.clone()));
                    }
                }
            }
            if reported {
                ok = false;
            }
        }
        if !ok {
            return None;
        }
        Some(Server {
            id,
            addresses,
            services: offered,
            mode,
            capacity,
            probe_address,
            distance_ms,
            location,
        })
    }

    // ---- cross checks

    /// Probes that read the machine they run on (`/proc/net/tcp`, a command) measure the
    /// farm or global node when the server is probed remotely: an error. A hop count from
    /// the probing node is at least a measurement, but not the server's distance: a warning.
    fn check_remote_probes(
        &mut self,
        services: &BTreeMap<ServiceId, Service>,
        service_paths: &BTreeMap<ServiceId, String>,
        farms: &BTreeMap<FarmId, Farm>,
        direct: &BTreeMap<ServerId, Server>,
        server_paths: &BTreeMap<ServerId, String>,
    ) {
        // probe path → (kind, remote servers running it)
        let mut hits: BTreeMap<String, (&'static str, ProbeId, Vec<String>)> = BTreeMap::new();
        let all = farms
            .values()
            .flat_map(|f| f.servers.values())
            .chain(direct.values());
        for server in all {
            if !matches!(server.mode, Mode::Remote) {
                continue;
            }
            for sid in &server.services {
                let (Some(svc), Some(spath)) = (services.get(sid), service_paths.get(sid)) else {
                    continue;
                };
                for (j, probe) in svc.probes.iter().enumerate() {
                    let kind = match probe.kind {
                        ProbeKind::Load(LoadSource::ProcNetTcp { .. }) => "proc_net_tcp",
                        ProbeKind::Command { .. } => "command",
                        ProbeKind::Hops { .. } => "hops",
                        _ => continue,
                    };
                    let shown = match server_paths.get(&server.id) {
                        Some(p) => format!("\"{}\" ({p})", server.id),
                        None => format!("\"{}\"", server.id),
                    };
                    hits.entry(format!("{spath}.probes[{j}]"))
                        .or_insert_with(|| (kind, probe.id.clone(), Vec::new()))
                        .2
                        .push(shown);
                }
            }
        }
        for (path, (kind, id, servers)) in hits {
            let servers = servers.join(", ");
            match kind {
                "proc_net_tcp" => self.err(
                    path,
                    format!(
                        "probe \"{id}\" reads /proc/net/tcp of the node that runs it, and remotely probed servers {servers} are probed by their farm node (or the global node): it would count that node's connections, not the server's; make these servers intrusive (an agent runs the probe on the server) or use another load source"
                    ),
                ),
                "command" => self.err(
                    path,
                    format!(
                        "probe \"{id}\" runs its command on the node that runs it, and remotely probed servers {servers} are probed by their farm node (or the global node): it would measure that node, not the server; make these servers intrusive (an agent runs the command on the server)"
                    ),
                ),
                _ => self.warn(
                    path,
                    format!(
                        "probe \"{id}\" of remotely probed servers {servers} counts hops from their farm node (or the global node), not from the server"
                    ),
                ),
            }
        }
    }

    fn check_orders(&mut self, orders: &[OrderCheck], index: &RawIndex) {
        for check in orders {
            let offers =
                |services: &Vec<String>| services.iter().any(|s| s == check.service.as_str());
            let members: BTreeSet<&str> = match &check.scope {
                Scope::Global => index
                    .farms
                    .iter()
                    .filter(|(_, servers)| servers.values().any(offers))
                    .map(|(f, _)| f.as_str())
                    .chain(
                        index
                            .direct
                            .iter()
                            .filter(|(_, s)| offers(s))
                            .map(|(n, _)| n.as_str()),
                    )
                    .collect(),
                Scope::AnyFarm => index
                    .farms
                    .values()
                    .flatten()
                    .filter(|(_, s)| offers(s))
                    .map(|(n, _)| n.as_str())
                    .collect(),
                Scope::Farm(fid) => index
                    .farms
                    .get(fid.as_str())
                    .map(|servers| {
                        servers
                            .iter()
                            .filter(|(_, s)| offers(s))
                            .map(|(n, _)| n.as_str())
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            let what = match &check.scope {
                Scope::Global => "a farm or direct server offering".to_owned(),
                Scope::AnyFarm => "a farm server offering".to_owned(),
                Scope::Farm(f) => format!("a server of farm \"{f}\" offering"),
            };
            for (i, name) in check.order.iter().enumerate() {
                if !members.contains(name.as_str()) {
                    self.err(
                        format!("{}[{i}]", check.path),
                        format!("\"{name}\" is not {what} service \"{}\"", check.service),
                    );
                }
            }
        }
    }

    fn check_nodes(
        &mut self,
        t: &Topology,
        farm_paths: &BTreeMap<FarmId, String>,
        server_paths: &BTreeMap<ServerId, String>,
    ) {
        // node names are certificate identities: one node, one name
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        names.insert(t.global.name.clone(), "the global node".to_owned());
        for f in t.farms.values() {
            if let Some(other) = names.get(f.id.as_str()) {
                self.err(
                    format!("{}.name", farm_paths[&f.id]),
                    format!("farm \"{}\" has the node name of {other}", f.id),
                );
            } else {
                names.insert(f.id.0.clone(), format!("farm \"{}\"", f.id));
            }
        }
        let mut agents: BTreeMap<String, (String, String)> = BTreeMap::new(); // agent → (parent, path)
        for (s, attachment) in t.servers() {
            let crate::model::Mode::Intrusive { agent } = &s.mode else {
                continue;
            };
            let parent = match &attachment {
                crate::model::Attachment::Farm(f) => format!("farm \"{f}\""),
                crate::model::Attachment::Global => "the global node".to_owned(),
            };
            let path = format!("{}.agent", server_paths[&s.id]);
            match agents.get(agent) {
                Some((p, first)) if *p != parent => self.err(
                    path,
                    format!("agent \"{agent}\" reports to {p} (at {first}); one agent reports to one node"),
                ),
                Some(_) => {}
                None => {
                    if let Some(other) = names.get(agent) {
                        self.err(path.clone(), format!("agent \"{agent}\" has the node name of {other}"));
                    }
                    agents.insert(agent.clone(), (parent, path));
                }
            }
        }

        // two listeners on one address cannot both start (port 0 means "any")
        let mut listeners: Vec<(SocketAddr, String)> = vec![
            (t.global.listen, "global.listen".to_owned()),
            (t.global.status, "global.status".to_owned()),
        ];
        for f in t.farms.values() {
            let fp = &farm_paths[&f.id];
            listeners.push((f.listen, format!("{fp}.listen")));
            listeners.push((f.status, format!("{fp}.status")));
        }
        if let DnsServer::Embedded { listen, .. } = &t.dns.server {
            listeners.push((*listen, "dns.embedded.listen".to_owned()));
        }
        let mut seen: BTreeMap<SocketAddr, String> = BTreeMap::new();
        for (addr, path) in listeners {
            if addr.port() == 0 {
                continue;
            }
            match seen.get(&addr) {
                Some(first) => self.err(path, format!("address {addr} is already used by {first}")),
                None => {
                    seen.insert(addr, path);
                }
            }
        }
    }

    fn check_distances(
        &mut self,
        t: &Topology,
        service_paths: &BTreeMap<ServiceId, String>,
        farm_paths: &BTreeMap<FarmId, String>,
        direct_paths: &BTreeMap<ServerId, String>,
    ) {
        if t.global.location.is_none() {
            for f in t.farms.values() {
                if f.location.is_some() && f.distance_ms.is_none() {
                    self.warn(
                        format!("{}.location", farm_paths[&f.id]),
                        "ignored: global.location is not set, so no distance can be computed",
                    );
                }
            }
            for s in t.direct_servers.values() {
                if s.location.is_some() && s.distance_ms.is_none() {
                    self.warn(
                        format!("{}.location", direct_paths[&s.id]),
                        "ignored: global.location is not set, so no distance can be computed",
                    );
                }
            }
        }
        let gc = t.global_config();
        for (sid, svc) in &t.services {
            let by = match &svc.global.policy {
                Policy::Closest(by) => Some(*by),
                Policy::Composite { rank, .. } => match rank.as_ref() {
                    Policy::Closest(by) => Some(*by),
                    _ => None,
                },
                _ => None,
            };
            let Some(by) = by else { continue };
            let members = &gc.services[sid].members;
            let without: Vec<&str> = members
                .iter()
                .filter(|m| m.distance.is_none())
                .map(|m| m.id.as_str())
                .collect();
            let path = format!("{}.global.policy", service_paths[sid]);
            let kinds: BTreeSet<&str> = members
                .iter()
                .filter_map(|m| match m.distance {
                    Some(fedlb_core::Distance::Pinned(_)) => Some("pinned milliseconds"),
                    Some(fedlb_core::Distance::Kilometres(_)) => Some("kilometres"),
                    None => None,
                })
                .collect();
            match by {
                ClosestBy::Declared if !without.is_empty() => self.err(
                    path,
                    format!(
                        "closest by declared distance, but no distance is declared for {} (set distance_ms, or a location here and on global)",
                        without.join(", ")
                    ),
                ),
                ClosestBy::Auto if !without.is_empty() && without.len() < members.len() => self.warn(
                    path,
                    format!(
                        "closest compares declared distances with measured rtt: {} declare no distance",
                        without.join(", ")
                    ),
                ),
                ClosestBy::Auto | ClosestBy::Declared if kinds.len() > 1 => self.warn(
                    path,
                    "closest compares pinned milliseconds with kilometres between locations; declare one kind for all",
                ),
                _ => {}
            }
        }
        for (fid, f) in &t.farms {
            for (sid, cfg) in &f.local {
                let declared = matches!(cfg.policy, Policy::Closest(ClosestBy::Declared))
                    || matches!(&cfg.policy, Policy::Composite { rank, .. } if matches!(rank.as_ref(), Policy::Closest(ClosestBy::Declared)));
                if declared {
                    self.err(
                        format!("{}.local.{sid}.policy", farm_paths[fid]),
                        "closest by declared distance inside a farm: servers in a farm declare no distance (use rtt or hops)",
                    );
                }
            }
        }
    }

    fn check_ttl(&mut self, t: &Topology) {
        // Failover is detection plus caching: a TTL far above detection means clients keep
        // a dead answer long after fedlb knows better.
        for svc in t.services.values() {
            let detection = svc
                .probes
                .iter()
                .filter(|p| p.affects_health)
                .map(|p| p.interval * p.thresholds.fall)
                .min();
            let Some(detection) = detection else { continue };
            if t.dns.ttl > Duration::from_secs(60) && t.dns.ttl > detection * 10 {
                self.warn(
                    "dns.ttl",
                    format!(
                        "ttl {} is far above service \"{}\"'s failure detection ({}): clients keep a failed answer for up to {}",
                        human(t.dns.ttl),
                        svc.id,
                        human(detection),
                        human(t.dns.ttl)
                    ),
                );
            }
        }
    }
}

/// Why the host of a load probe's URL cannot be used: probes never resolve names, so the
/// host must be an IP address or `server` (the server's probe address), as the node reads
/// it when it starts.
fn url_host_problem(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Some("user information in the URL is not supported".to_owned());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((h, after)) = v6.split_once(']') else {
            return Some("unclosed '[' in the host".to_owned());
        };
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Some(format!("host \"[{h}]\" is not an IPv6 address"));
        }
        (None, after.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((h, port)) => (Some(h), Some(port)),
            None => (Some(authority), None),
        }
    };
    if let Some(h) = host
        && h != "server"
        && h.parse::<std::net::Ipv4Addr>().is_err()
    {
        return Some(format!(
            "host \"{h}\" is not an IP address (probes do not resolve names; `server` stands for the server's probe address)"
        ));
    }
    if let Some(port) = port
        && port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Some(format!("port \"{port}\" is not a port number"));
    }
    None
}

fn metrics_of_probes(probes: &[Probe]) -> BTreeSet<String> {
    probes
        .iter()
        .filter_map(|p| match &p.kind {
            ProbeKind::Command { metric, .. } => Some(metric.clone()),
            ProbeKind::Load(LoadSource::Prometheus { metric, .. }) => Some(metric.clone()),
            _ => None,
        })
        .collect()
}

fn metrics_of(s: &Service) -> BTreeSet<String> {
    metrics_of_probes(&s.probes)
}
