//! The simulator's input: the deployment as fedlb-core configs, exactly what the nodes run.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use fedlb_core::{
    CandidateId, Distance, FarmConfig, FarmId, GlobalConfig, Hysteresis, Liveness, MemberSpec,
    MonitorConfig, Policy, ProbeId, ProbeSchedule, SelectorConfig, ServerId, ServiceId, Thresholds,
    TierService,
};

use crate::error::Error;
use fedlb_topology::Location;

use crate::scenario::{Measures, ProbeModel};

/// One server's monitor: the core's config plus what each probe measures.
#[derive(Clone, Debug, PartialEq)]
pub struct MonitorSetup {
    /// The monitor's config, as the agent or farm node runs it.
    pub config: MonitorConfig,
    /// What each probe measures and its timeout (a probe missing here measures health).
    pub probes: BTreeMap<ProbeId, ProbeModel>,
}

/// The deployment, as fedlb-core configs.
#[derive(Clone, Debug, PartialEq)]
pub struct Topology {
    /// The service simulated.
    pub service: ServiceId,
    /// What the global node runs (farms and directly attached servers as members).
    pub global: GlobalConfig,
    /// What each farm node runs.
    pub farms: BTreeMap<FarmId, FarmConfig>,
    /// One monitor per server offering the service.
    pub monitors: BTreeMap<ServerId, MonitorSetup>,
    /// The TTL published answers carry.
    pub ttl: Duration,
    /// Where farms and direct servers stand (for latencies to client regions).
    pub locations: BTreeMap<String, Location>,
}

/// A server as the simulation sees it (derived from the configs).
#[derive(Clone, Debug, PartialEq)]
pub struct ServerInfo {
    /// Its name.
    pub id: ServerId,
    /// Its answered addresses.
    pub addresses: Vec<IpAddr>,
    /// Relative capacity.
    pub capacity: f64,
    /// Its farm, or `None` when attached directly to the global node.
    pub farm: Option<FarmId>,
    /// Where requests to it are measured from: its farm's name or its own.
    pub place: String,
    /// Declared distance from the global node (its farm's, for a farm server).
    pub distance: Option<Distance>,
    /// Liveness rule of its reports.
    pub liveness: Liveness,
}

impl Topology {
    /// The global tier of the simulated service.
    pub fn global_service(&self) -> Result<&TierService, Error> {
        self.global.services.get(&self.service).ok_or_else(|| {
            Error::Topology(format!(
                "the global node does not decide service \"{}\"",
                self.service
            ))
        })
    }

    /// Every server offering the service, farms first (in name order), then direct ones.
    pub fn servers(&self) -> Result<Vec<ServerInfo>, Error> {
        let global = self.global_service()?;
        let mut out = Vec::new();
        for (farm, cfg) in &self.farms {
            let Some(svc) = cfg.services.get(&self.service) else {
                continue;
            };
            let distance = global
                .members
                .iter()
                .find(|m| m.id.as_str() == farm.as_str())
                .and_then(|m| m.distance);
            for m in &svc.members {
                out.push(ServerInfo {
                    id: ServerId::from(m.id.as_str()),
                    addresses: m.addresses.clone(),
                    capacity: m.capacity,
                    farm: Some(farm.clone()),
                    place: farm.0.clone(),
                    distance,
                    liveness: m.liveness,
                });
            }
        }
        for m in &global.members {
            if self.farms.contains_key(&FarmId::from(m.id.as_str())) {
                continue;
            }
            out.push(ServerInfo {
                id: ServerId::from(m.id.as_str()),
                addresses: m.addresses.clone(),
                capacity: m.capacity,
                farm: None,
                place: m.id.as_str().to_owned(),
                distance: m.distance,
                liveness: m.liveness,
            });
        }
        let mut seen = BTreeMap::new();
        for s in &out {
            if s.addresses.is_empty() {
                return Err(Error::Topology(format!(
                    "server \"{}\" has no address",
                    s.id
                )));
            }
            for a in &s.addresses {
                if let Some(other) = seen.insert(*a, s.id.clone()) {
                    return Err(Error::Topology(format!(
                        "servers \"{other}\" and \"{}\" share address {a}; the simulator tells servers apart by address",
                        s.id
                    )));
                }
            }
            if !self.monitors.contains_key(&s.id) {
                return Err(Error::Topology(format!(
                    "server \"{}\" has no monitor",
                    s.id
                )));
            }
        }
        if out.is_empty() {
            return Err(Error::Topology(format!(
                "no server offers service \"{}\"",
                self.service
            )));
        }
        Ok(out)
    }
}

/// Builds a [`Topology`] in code (tests, benchmarks, scenarios without a topology file).
#[derive(Clone, Debug)]
pub struct TopologyBuilder {
    service: ServiceId,
    global: SelectorConfig,
    local: SelectorConfig,
    heartbeat: Duration,
    liveness: Liveness,
    probes: Vec<(ProbeSchedule, ProbeModel)>,
    ttl: Duration,
    farms: Vec<FarmSpec>,
}

/// A farm as given to the builder: name, distance from the global node (ms), location,
/// servers with their capacities.
type FarmSpec = (String, f64, Option<Location>, Vec<(String, f64)>);

impl Default for TopologyBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TopologyBuilder {
    /// Service `www`; closest farm then least-loaded server, with the core's default
    /// hysteresis; an http probe every second and a load probe every second (rise/fall 2);
    /// heartbeats every second (stale after 3 s); TTL 30 s.
    pub fn new() -> Self {
        let timeout = Duration::from_millis(800);
        let probe = |id: &str, affects_health: bool, measures: Measures| {
            (
                ProbeSchedule {
                    id: ProbeId::from(id),
                    interval: Duration::from_secs(1),
                    thresholds: Thresholds::default(),
                    affects_health,
                },
                ProbeModel { measures, timeout },
            )
        };
        TopologyBuilder {
            service: ServiceId::from("www"),
            global: SelectorConfig::new(Policy::Closest(fedlb_core::ClosestBy::Auto)),
            local: SelectorConfig::new(Policy::LeastLoaded),
            heartbeat: Duration::from_secs(1),
            liveness: Liveness::from_heartbeat(Duration::from_secs(1), 3),
            probes: vec![
                probe("http", true, Measures::Health),
                probe("load", false, Measures::Load),
            ],
            ttl: Duration::from_secs(30),
            farms: Vec::new(),
        }
    }

    /// Adds a farm at `distance_ms` from the global node, with servers `(name, capacity)`;
    /// servers get addresses 10.0.f.s in the order they are added.
    pub fn farm(
        mut self,
        name: &str,
        distance_ms: f64,
        location: Option<Location>,
        servers: &[(&str, f64)],
    ) -> Self {
        self.farms.push((
            name.to_owned(),
            distance_ms,
            location,
            servers.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect(),
        ));
        self
    }

    /// The global policy.
    pub fn global_policy(mut self, p: Policy) -> Self {
        self.global.policy = p;
        self
    }

    /// The local policy.
    pub fn local_policy(mut self, p: Policy) -> Self {
        self.local.policy = p;
        self
    }

    /// Hysteresis at both tiers.
    pub fn hysteresis(mut self, h: Hysteresis) -> Self {
        self.global.hysteresis = h;
        self.local.hysteresis = h;
        self
    }

    /// Interval of every probe.
    pub fn probe_interval(mut self, d: Duration) -> Self {
        for (p, _) in &mut self.probes {
            p.interval = d;
        }
        self
    }

    /// Heartbeat of reports and summaries (stale after 3 missed).
    pub fn heartbeat(mut self, d: Duration) -> Self {
        self.heartbeat = d;
        self.liveness = Liveness::from_heartbeat(d, 3);
        self
    }

    /// The TTL.
    pub fn ttl(mut self, d: Duration) -> Self {
        self.ttl = d;
        self
    }

    /// The topology.
    pub fn build(self) -> Topology {
        let mut farms = BTreeMap::new();
        let mut monitors = BTreeMap::new();
        let mut locations = BTreeMap::new();
        let mut global_members = Vec::new();
        for (f_idx, (name, distance_ms, location, servers)) in self.farms.iter().enumerate() {
            let members: Vec<MemberSpec> = servers
                .iter()
                .enumerate()
                .map(|(s_idx, (server, capacity))| MemberSpec {
                    id: CandidateId::from(server.as_str()),
                    kind: fedlb_core::MemberKind::Server,
                    addresses: vec![IpAddr::V4(Ipv4Addr::new(
                        10,
                        0,
                        f_idx as u8 + 1,
                        s_idx as u8 + 1,
                    ))],
                    capacity: *capacity,
                    distance: None,
                    liveness: self.liveness,
                    sources: Vec::new(),
                })
                .collect();
            for (server, _) in servers {
                monitors.insert(
                    ServerId::from(server.as_str()),
                    MonitorSetup {
                        config: MonitorConfig {
                            service: self.service.clone(),
                            server: ServerId::from(server.as_str()),
                            probes: self.probes.iter().map(|(p, _)| p.clone()).collect(),
                            heartbeat: self.heartbeat,
                        },
                        probes: self
                            .probes
                            .iter()
                            .map(|(p, m)| (p.id.clone(), *m))
                            .collect(),
                    },
                );
            }
            global_members.push(MemberSpec {
                id: CandidateId::from(name.as_str()),
                kind: fedlb_core::MemberKind::Farm,
                addresses: members.iter().flat_map(|m| m.addresses.clone()).collect(),
                capacity: servers.iter().map(|(_, c)| c).sum(),
                distance: Some(Distance::Pinned(*distance_ms)),
                liveness: self.liveness,
                sources: Vec::new(),
            });
            if let Some(l) = location {
                locations.insert(name.clone(), *l);
            }
            farms.insert(
                FarmId::from(name.as_str()),
                FarmConfig {
                    farm: FarmId::from(name.as_str()),
                    services: BTreeMap::from([(
                        self.service.clone(),
                        TierService {
                            selector: self.local.clone(),
                            members,
                        },
                    )]),
                    heartbeat: self.heartbeat,
                    metrics: Default::default(),
                    node: String::new(),
                },
            );
        }
        Topology {
            global: GlobalConfig {
                services: BTreeMap::from([(
                    self.service.clone(),
                    TierService {
                        selector: self.global,
                        members: global_members,
                    },
                )]),
                ttl: BTreeMap::new(),
                regions: Vec::new(),
            },
            service: self.service,
            farms,
            monitors,
            ttl: self.ttl,
            locations,
        }
    }
}

impl Topology {
    /// The part of a topology file that simulating `service` needs (`None`: the file's only
    /// service): the global node's config, each farm node's, each server's monitor, the
    /// TTL and the locations — exactly what the nodes would run.
    pub fn from_file(
        t: &fedlb_topology::Topology,
        service: Option<&str>,
    ) -> Result<Topology, Error> {
        use fedlb_topology::ProbeKind;
        let service = match service {
            Some(s) => ServiceId::from(s),
            None if t.services.len() == 1 => t.services.keys().next().cloned().expect("one"),
            None => {
                return Err(Error::Topology(format!(
                    "{}: several services ({}); name the one to simulate with `service` in the scenario",
                    t.file,
                    t.services
                        .keys()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        };
        let svc = t
            .services
            .get(&service)
            .ok_or_else(|| Error::Topology(format!("{}: no service \"{service}\"", t.file)))?;
        let mut global = t.global_config();
        global.services.retain(|s, _| s == &service);
        let mut farms = BTreeMap::new();
        let mut locations = BTreeMap::new();
        for (id, farm) in &t.farms {
            if !farm.services().contains(&service) {
                continue;
            }
            if let Some(mut cfg) = t.farm_config(id) {
                cfg.services.retain(|s, _| s == &service);
                farms.insert(id.clone(), cfg);
            }
            if let Some(l) = farm.location {
                locations.insert(id.0.clone(), l);
            }
        }
        let probes: BTreeMap<ProbeId, ProbeModel> = svc
            .probes
            .iter()
            .map(|p| {
                let measures = match p.kind {
                    ProbeKind::Tcp | ProbeKind::Http(_) | ProbeKind::Https(_) | ProbeKind::Icmp => {
                        Measures::Health
                    }
                    ProbeKind::Load(_) => Measures::Load,
                    ProbeKind::Hops { .. } | ProbeKind::Command { .. } => Measures::Nothing,
                };
                (
                    p.id.clone(),
                    ProbeModel {
                        measures,
                        timeout: p.timeout,
                    },
                )
            })
            .collect();
        let mut monitors = BTreeMap::new();
        for (server, _) in t.servers() {
            if !server.services.contains(&service) {
                continue;
            }
            if let Some(config) = t
                .monitor_configs(&server.id)
                .into_iter()
                .find(|m| m.service == service)
            {
                monitors.insert(
                    server.id.clone(),
                    MonitorSetup {
                        config,
                        probes: probes.clone(),
                    },
                );
            }
            if let Some(l) = server.location {
                locations.insert(server.id.0.clone(), l);
            }
        }
        Ok(Topology {
            service,
            global,
            farms,
            monitors,
            ttl: t.dns.ttl,
            locations,
        })
    }
}
