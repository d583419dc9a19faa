//! Raw file → [`Topology`]: every problem collected with its field path.
//!
//! [`validate`] walks the file in `Ctx::topology`; each section is checked by one `impl`
//! in its own file: [`values`] (single values), [`globals`] (one or several global nodes),
//! [`dns`], [`services`] (and probes),
//! [`policies`] (tiers), [`farms`] (and servers), [`regions`], and [`checks`] across
//! sections.

mod checks;
mod dns;
mod farms;
mod globals;
mod policies;
mod regions;
mod services;
mod values;
mod zones;

use services::metrics_of;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use fedlb_core::{CandidateId, FarmId, ServerId, ServiceId};

use crate::Problem;
use crate::model::{Farm, GlobalNode, Heartbeat, Server, Service, Topology};
use crate::schema::RawTopology;

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
    /// Farm node name → (path of its name, path of its `listen`/`status`' parent), first
    /// declaration wins.
    node_paths: BTreeMap<(FarmId, String), (String, String)>,
    /// The field path of each global node, in declaration order.
    global_paths: Vec<String>,
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
    /// At the global tier of a service some farm offers: the metrics farm summaries carry
    /// (measured by a probe and given an aggregation rule in the service's `metrics`).
    farm_metrics: Option<&'a BTreeSet<String>>,
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
        node_paths: BTreeMap::new(),
        global_paths: Vec::new(),
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
        let summary_heartbeat = raw.summary_heartbeat.as_ref().map(|r| {
            let base = Heartbeat {
                interval: fedlb_core::summary_interval(heartbeat.interval),
                missed: heartbeat.missed,
            };
            self.heartbeat("summary_heartbeat", Some(r), base)
        });
        let globals = self.globals(raw.global);
        // every global node with its own embedded server: `dns` needs none
        let own_servers = (!globals.is_empty()
            && globals
                .iter()
                .all(|(g, _)| g.as_ref().is_some_and(|g| g.dns.is_some())))
        .then(|| {
            let first = globals[0].0.as_ref().expect("checked");
            (first.dns.clone(), globals[0].1)
        });
        let dns_facts = (
            match (&raw.dns.server, &raw.dns.servers, &raw.dns.embedded) {
                (Some(_), None, None) | (None, Some(_), None) => Some(true),
                (None, None, Some(_)) => Some(false),
                (None, None, None) if own_servers.is_some() => Some(false),
                _ => None,
            },
            raw.dns.geoip_database.is_some(),
            raw.dns.server.is_some(),
        );
        let has_regions = !raw.regions.is_empty();
        let dns = self.dns(raw.dns, own_servers);

        // services
        let mut services: BTreeMap<ServiceId, Service> = BTreeMap::new();
        let mut service_paths: BTreeMap<ServiceId, String> = BTreeMap::new();
        let mut orders = Vec::new();
        let default_answers = dns.as_ref().map_or(1, |d| d.answers);
        for (i, rs) in raw.services.into_iter().enumerate() {
            let path = format!("services[{i}]");
            let in_farms = index
                .farms
                .values()
                .any(|servers| servers.values().any(|s| s.contains(&rs.name)));
            let svc = self.service(
                &path,
                rs,
                default_answers,
                dns.as_ref(),
                services::Placement {
                    regions: has_regions,
                    in_farms,
                },
                &mut orders,
            );
            if let Some(s) = svc {
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
                summary_heartbeat,
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

        let regions = self.regions(
            raw.regions,
            &regions::DnsFacts {
                external: dns_facts.0,
                geoip_database: dns_facts.1,
                single_server: dns_facts.2,
                dns: dns.as_ref(),
            },
            &index,
            &farms,
            &direct,
        );

        let globals: Option<Vec<GlobalNode>> = globals.into_iter().map(|(g, _)| g).collect();
        let (Some(globals), Some(dns), Some(regions)) = (globals, dns, regions) else {
            return None;
        };
        if globals.is_empty() {
            return None;
        }
        self.check_globals(&globals, &dns);
        let topology = Topology {
            name,
            file: self.opts.file.to_owned(),
            heartbeat,
            global: globals[0].clone(),
            globals,
            dns,
            services,
            farms,
            direct_servers: direct,
            regions,
        };
        self.check_nodes(&topology, &farm_paths, &server_paths);
        self.check_distances(&topology, &service_paths, &farm_paths, &direct_paths);
        self.check_ttl(&topology);
        Some(topology)
    }
}
