//! The validated topology: typed, complete (defaults applied), cross-checked.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use fedlb_core::{
    Aggregate, CandidateId, Distance, FarmConfig, FarmId, GlobalConfig, Liveness, MemberKind,
    MemberSpec, MonitorConfig, ProbeId, ProbeSchedule, RegionId, RegionSpec, SelectorConfig,
    ServerId, ServiceId, Spread, Thresholds, TierService, TtlRule,
};
use ipnet::IpNet;

use crate::tsig::TsigKey;

/// A validated topology.
#[derive(Clone, Debug, PartialEq)]
pub struct Topology {
    /// The topology's name (from the file, else the file name).
    pub name: String,
    /// The file it was read from (for messages).
    pub file: String,
    /// The default heartbeat of reports and summaries.
    pub heartbeat: Heartbeat,
    /// The first global node declared: the default region's distances are measured from
    /// its location. Always `globals[0]`.
    pub global: GlobalNode,
    /// Every global node, in declaration order (one for a `[global]` table).
    pub globals: Vec<GlobalNode>,
    /// Where answers are published (a global node with its own embedded server publishes
    /// there instead: [`Topology::dns_for`]).
    pub dns: DnsTarget,
    /// Services by name.
    pub services: BTreeMap<ServiceId, Service>,
    /// Farms by name.
    pub farms: BTreeMap<FarmId, Farm>,
    /// Servers attached directly to the global node (the patent's mixed case).
    pub direct_servers: BTreeMap<ServerId, Server>,
    /// Regions of clients, each answered from where it is; clients in none get the
    /// implicit default region (the global node's own view). Empty: one answer for all.
    pub regions: BTreeMap<RegionId, Region>,
}

/// How often a reporter speaks when nothing changes, and when its silence counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// A report or summary goes out at least this often.
    pub interval: Duration,
    /// Missed heartbeats before the reporter is stale (twice as many: down).
    pub missed: u32,
}

impl Default for Heartbeat {
    /// 1 s and 3 missed: stale after 3 s, down after 6 s — one lost heartbeat is
    /// tolerated, a dead node is noticed within seconds, and the cost is one small
    /// message per second per reporter.
    fn default() -> Self {
        Heartbeat {
            interval: Duration::from_secs(1),
            missed: 3,
        }
    }
}

impl Heartbeat {
    /// The liveness rule the tier above applies: stale after `missed` intervals, down
    /// after twice as many.
    pub fn liveness(&self) -> Liveness {
        Liveness::from_heartbeat(self.interval, self.missed)
    }
}

/// A point on Earth, in degrees.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Location {
    /// Latitude, −90..=90.
    pub lat: f64,
    /// Longitude, −180..=180.
    pub lon: f64,
}

impl Location {
    /// What is wrong with the location, as (field, message): the latitude must be within
    /// −90..=90, the longitude within −180..=180. Topologies and scenarios both check it.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !(-90.0..=90.0).contains(&self.lat) {
            out.push((
                "lat",
                format!("latitude {} is out of range -90..=90", self.lat),
            ));
        }
        if !(-180.0..=180.0).contains(&self.lon) {
            out.push((
                "lon",
                format!("longitude {} is out of range -180..=180", self.lon),
            ));
        }
        out
    }

    /// Great-circle distance in kilometres (haversine, mean Earth radius).
    pub fn km_to(&self, other: &Location) -> f64 {
        const R: f64 = 6371.0088;
        let (p1, p2) = (self.lat.to_radians(), other.lat.to_radians());
        let dp = p2 - p1;
        let dl = (other.lon - self.lon).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * R * a.sqrt().min(1.0).asin()
    }
}

/// The global node.
#[derive(Clone, Debug, PartialEq)]
pub struct GlobalNode {
    /// Its node name (certificate identity).
    pub name: String,
    /// QUIC address farm nodes and agents connect to.
    pub listen: SocketAddr,
    /// Status HTTP endpoint.
    pub status: SocketAddr,
    /// Where it stands, for great-circle distances to farms.
    pub location: Option<Location>,
    /// Its own DNS server (an embedded one), instead of `dns.server`.
    pub dns: Option<DnsServer>,
}

/// Where answers are published.
#[derive(Clone, Debug, PartialEq)]
pub struct DnsTarget {
    /// The zone updated, lowercase with a trailing dot (with `dns.zones`, the first).
    pub zone: String,
    /// Every zone updated (`dns.zone` alone: that one, with the dns-level servers and key).
    pub zones: Vec<Zone>,
    /// TTL of published records.
    pub ttl: Duration,
    /// Derive the TTL from the time until the answer could next change, between
    /// `ttl_min` and `ttl`.
    pub derive_ttl: bool,
    /// Lower bound of a derived or by-load TTL.
    pub ttl_min: Duration,
    /// Scale the TTL by the answer's relative headroom, between `ttl_min` and `ttl`
    /// ([`TtlRule::by_load`]).
    pub ttl_by_load: bool,
    /// How the embedded server answers a name with several addresses (external servers
    /// always answer the whole set).
    pub spread: Spread,
    /// How often the publisher re-reads the DNS server to repair drift.
    pub reconcile: Duration,
    /// Also write the answers to files (the patent's "specialized object").
    pub file: Option<FileOutput>,
    /// Also hand the answers to a command.
    pub command: Option<CommandOutput>,
    /// Default number of addresses per name (a service's global tier may override).
    pub answers: usize,
    /// The server.
    pub server: DnsServer,
    /// The TSIG key signing updates; `None` when none is configured, or when the key file
    /// was not read (see [`crate::Loader::read_key_files`]; then `tsig_file` is set).
    pub tsig: Option<TsigKey>,
    /// The key file, when the key comes from one.
    pub tsig_file: Option<PathBuf>,
    /// The MaxMind-format country database that places clients of regions with `geoip`
    /// (GeoIP2/GeoLite2 Country, DB-IP); `None` when no region matches by geography.
    pub geoip_database: Option<PathBuf>,
}

/// One zone fedlb publishes into.
#[derive(Clone, Debug, PartialEq)]
pub struct Zone {
    /// Its name, lowercase with a trailing dot.
    pub name: String,
    /// Its own primaries (external servers only); `None`: `dns.servers`.
    pub servers: Option<Vec<SocketAddr>>,
    /// Its own key; `None`: `dns.tsig` (also when the key file was not read: see
    /// `tsig_file`).
    pub tsig: Option<TsigKey>,
    /// Its key file, when its key comes from one.
    pub tsig_file: Option<PathBuf>,
}

impl DnsTarget {
    /// The zone a name (lowercase, trailing dot) is published in: the longest zone it ends
    /// with.
    pub fn zone_of(&self, fqdn: &str) -> Option<&Zone> {
        self.zones
            .iter()
            .filter(|z| in_zone(fqdn, &z.name))
            .max_by_key(|z| z.name.len())
    }
}

/// Whether `name` is `zone` or below it (both lowercase with a trailing dot).
pub fn in_zone(name: &str, zone: &str) -> bool {
    name == zone || zone == "." || name.ends_with(&format!(".{zone}"))
}

/// Files the answers are also written to.
#[derive(Clone, Debug, PartialEq)]
pub struct FileOutput {
    /// The answers as JSON.
    pub json: PathBuf,
    /// The answers as a zone-file fragment.
    pub zone_fragment: Option<PathBuf>,
}

/// A command the answers are also handed to (JSON on stdin), when they change.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandOutput {
    /// Program and arguments (not run through a shell).
    pub argv: Vec<String>,
    /// How long one run may take before it is killed.
    pub timeout: Duration,
}

/// The DNS server updated.
#[derive(Clone, Debug, PartialEq)]
pub enum DnsServer {
    /// External primaries updated by RFC 2136 (each one gets every update).
    Rfc2136 {
        /// Their addresses.
        primaries: Vec<SocketAddr>,
    },
    /// The built-in authoritative server.
    Embedded {
        /// Where it answers queries (UDP and TCP).
        listen: SocketAddr,
        /// Its zone database and journal.
        state_dir: PathBuf,
        /// Secondaries: the only addresses it serves zone transfers to, and where it sends
        /// NOTIFY after every change. Empty: transfers are refused.
        secondaries: Vec<SocketAddr>,
        /// The key secondaries sign their transfers with (it cannot update the zone). Read
        /// only where key files are read (the global node, `fedlb check`).
        transfer_key: Option<TsigKey>,
        /// The file `transfer_key` was read from, if any.
        transfer_key_file: Option<PathBuf>,
    },
}

/// A region: a set of clients, by address prefix or geography, answered from where they
/// are. Its distances to farms replace the global node's own when deciding for it.
#[derive(Clone, Debug, PartialEq)]
pub struct Region {
    /// Its name (never `default`: that is the implicit region of every other client).
    pub id: RegionId,
    /// Client prefixes (host bits zero; a bare address is a /32 or /128), in file order.
    /// A client matches the most specific prefix of all regions.
    pub clients: Vec<IpNet>,
    /// Countries placed here by the geoip database: ISO 3166-1 alpha-2, upper-case.
    pub countries: BTreeSet<String>,
    /// Continents placed here by the geoip database.
    pub continents: BTreeSet<Continent>,
    /// Where its clients are, for great-circle distances to farms with a location.
    pub location: Option<Location>,
    /// Pinned distances in milliseconds to farms and direct servers; they beat the ones
    /// computed from locations.
    pub distance_ms: BTreeMap<CandidateId, f64>,
    /// Its own primaries (DNS servers without views: Knot, PowerDNS); empty when it is a
    /// view of `dns.servers` (selected by its key) or served by the embedded server.
    pub dns_servers: Vec<SocketAddr>,
    /// The key signing its updates: its own `tsig`, else the zone's `dns.tsig` when it has
    /// servers of its own. `None` with the embedded server when none is given (a random
    /// one is made at run time), or when key files are not read (then `tsig_file` is set).
    pub tsig: Option<TsigKey>,
    /// The key file, when the key comes from one.
    pub tsig_file: Option<PathBuf>,
}

impl Region {
    /// Whether its key is the zone's `dns.tsig` (it has servers of its own and names no
    /// key), rather than one of its own.
    pub fn uses_zone_key(&self, dns: &DnsTarget) -> bool {
        !self.dns_servers.is_empty()
            && self.tsig.is_some()
            && self.tsig == dns.tsig
            && self.tsig_file == dns.tsig_file
    }
}

/// A continent as geoip databases code it (MaxMind's `continent.code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Continent {
    /// `AF`, Africa.
    Africa,
    /// `AN`, Antarctica.
    Antarctica,
    /// `AS`, Asia.
    Asia,
    /// `EU`, Europe.
    Europe,
    /// `NA`, North America.
    NorthAmerica,
    /// `OC`, Oceania.
    Oceania,
    /// `SA`, South America.
    SouthAmerica,
}

impl Continent {
    /// Every continent, in code order.
    pub const ALL: [Continent; 7] = [
        Continent::Africa,
        Continent::Antarctica,
        Continent::Asia,
        Continent::Europe,
        Continent::NorthAmerica,
        Continent::Oceania,
        Continent::SouthAmerica,
    ];

    /// The two-letter code (`EU`).
    pub fn code(self) -> &'static str {
        match self {
            Continent::Africa => "AF",
            Continent::Antarctica => "AN",
            Continent::Asia => "AS",
            Continent::Europe => "EU",
            Continent::NorthAmerica => "NA",
            Continent::Oceania => "OC",
            Continent::SouthAmerica => "SA",
        }
    }

    /// The continent of a code, upper-case (`EU`).
    pub fn from_code(code: &str) -> Option<Continent> {
        Continent::ALL.into_iter().find(|c| c.code() == code)
    }
}

impl std::fmt::Display for Continent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// A replicated service.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    /// Its name.
    pub id: ServiceId,
    /// The name answered, lowercase with a trailing dot.
    pub fqdn: String,
    /// The service port.
    pub port: u16,
    /// TTL of its records, when not the zone's.
    pub ttl: Option<Duration>,
    /// How each instance is measured.
    pub probes: Vec<Probe>,
    /// How the global node chooses among farms and direct servers.
    pub global: SelectorConfig,
    /// How farm nodes choose among their servers, unless a farm overrides it.
    pub local: SelectorConfig,
    /// The application metrics farm summaries carry upward, each with the rule that
    /// aggregates it over the farm's servers that are up (`metrics = { dbms_users = "sum" }`).
    pub metrics: BTreeMap<String, Aggregate>,
}

/// One probe of a service.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    /// Its name within the service.
    pub id: ProbeId,
    /// What it does.
    pub kind: ProbeKind,
    /// Time between the end of one run and the start of the next.
    pub interval: Duration,
    /// How long one run may take.
    pub timeout: Duration,
    /// Rise/fall thresholds.
    pub thresholds: Thresholds,
    /// Whether failing makes the instance down.
    pub affects_health: bool,
    /// The port probed, when not the service's.
    pub port: Option<u16>,
}

impl Probe {
    /// The schedule the core's monitor runs.
    pub fn schedule(&self) -> ProbeSchedule {
        ProbeSchedule {
            id: self.id.clone(),
            interval: self.interval,
            thresholds: self.thresholds,
            affects_health: self.affects_health,
        }
    }
}

/// What a probe does.
#[derive(Clone, Debug, PartialEq)]
pub enum ProbeKind {
    /// TCP connect; measures connect time.
    Tcp,
    /// HTTP request; measures response time.
    Http(HttpCheck),
    /// HTTPS request; measures response time.
    Https(HttpCheck),
    /// ICMP echo; measures round-trip time.
    Icmp,
    /// Hop count to the server.
    Hops {
        /// Give up beyond this many hops.
        max_hops: u8,
    },
    /// Server load (pending requests, connections, or a metric).
    Load(LoadSource),
    /// A command printing one number (an application metric).
    Command {
        /// Program and arguments (not run through a shell).
        argv: Vec<String>,
        /// The metric name its output is recorded under.
        metric: String,
    },
}

impl ProbeKind {
    /// The kind as written in the file.
    pub fn as_str(&self) -> &'static str {
        match self {
            ProbeKind::Tcp => "tcp",
            ProbeKind::Http(_) => "http",
            ProbeKind::Https(_) => "https",
            ProbeKind::Icmp => "icmp",
            ProbeKind::Hops { .. } => "hops",
            ProbeKind::Load(_) => "load",
            ProbeKind::Command { .. } => "command",
        }
    }
}

/// An HTTP(S) check.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpCheck {
    /// Request path.
    pub path: String,
    /// Host header (default: the service FQDN without the trailing dot).
    pub host: Option<String>,
    /// The status that counts as success.
    pub expect_status: u16,
    /// A string the body must contain.
    pub body_contains: Option<String>,
    /// CA certificates to trust (https only; default: the system roots).
    pub ca_file: Option<PathBuf>,
}

/// What a number read by a Prometheus load probe is recorded as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordAs {
    /// Pending requests (the default: what `least_loaded` and `max_load` read).
    Pending,
    /// Open connections.
    Connections,
    /// An application metric under the Prometheus metric's own name (what `lowest_metric`
    /// and `max_metric` read).
    Metric,
}

/// Where a load probe reads load.
#[derive(Clone, Debug, PartialEq)]
pub enum LoadSource {
    /// nginx `stub_status` page (active connections, writing = pending).
    NginxStubStatus {
        /// Its URL.
        url: String,
    },
    /// One metric of a Prometheus text exposition: the series of that name carrying every
    /// label of `labels`, summed.
    Prometheus {
        /// The exposition URL.
        url: String,
        /// The metric read.
        metric: String,
        /// Labels a series must carry to count (`handler="api"`).
        labels: Vec<(String, String)>,
        /// What the value is recorded as.
        record_as: RecordAs,
    },
    /// Established connections to a local port, from `/proc/net/tcp{,6}` (intrusive mode).
    ProcNetTcp {
        /// The port counted.
        port: u16,
    },
}

/// One farm node of a farm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FarmNode {
    /// Its node name (certificate identity); the farm's name for a farm with one node
    /// declared by `listen`/`status`.
    pub name: String,
    /// Its QUIC address (agents connect to it).
    pub listen: SocketAddr,
    /// Its status endpoint.
    pub status: SocketAddr,
}

/// A site: its farm node(s) and its servers.
#[derive(Clone, Debug, PartialEq)]
pub struct Farm {
    /// Its name (also the farm node's name when it has one declared by `listen`/`status`).
    pub id: FarmId,
    /// The first farm node's QUIC address.
    pub listen: SocketAddr,
    /// The first farm node's status endpoint.
    pub status: SocketAddr,
    /// Its farm nodes, in topology order (one or more): the global node uses the summary of
    /// the first one that is live and reports the farm up.
    pub nodes: Vec<FarmNode>,
    /// How often its farm nodes summarise when nothing changes, and when their silence
    /// makes the farm stale at the global node.
    pub summary_heartbeat: Heartbeat,
    /// Pinned distance from the global node, in milliseconds.
    pub distance_ms: Option<f64>,
    /// Where it stands.
    pub location: Option<Location>,
    /// Heartbeat of its summaries and of its servers' reports.
    pub heartbeat: Heartbeat,
    /// The local decision of every service offered here (service default + overrides).
    pub local: BTreeMap<ServiceId, SelectorConfig>,
    /// Its servers.
    pub servers: BTreeMap<ServerId, Server>,
}

impl Farm {
    /// One of its farm nodes by name.
    pub fn node(&self, name: &str) -> Option<&FarmNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The services at least one of its servers offers.
    pub fn services(&self) -> BTreeSet<ServiceId> {
        self.servers
            .values()
            .flat_map(|s| s.services.iter().cloned())
            .collect()
    }
}

/// A server.
#[derive(Clone, Debug, PartialEq)]
pub struct Server {
    /// Its name.
    pub id: ServerId,
    /// Addresses answered when it is chosen.
    pub addresses: Vec<IpAddr>,
    /// Services it offers.
    pub services: BTreeSet<ServiceId>,
    /// Who runs its probes.
    pub mode: Mode,
    /// Relative capacity.
    pub capacity: f64,
    /// Probed at this address instead of its first answered one.
    pub probe_address: Option<IpAddr>,
    /// Direct servers only: pinned distance from the global node.
    pub distance_ms: Option<f64>,
    /// Direct servers only: where it stands.
    pub location: Option<Location>,
}

impl Server {
    /// The address its probes target.
    pub fn probe_target(&self) -> IpAddr {
        self.probe_address.unwrap_or(self.addresses[0])
    }
}

/// Who runs a server's probes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Its farm node (or the global node, for a direct server) probes it over the network.
    Remote,
    /// An agent on the server probes it locally and reports upward.
    Intrusive {
        /// The agent's node name.
        agent: String,
    },
}

/// Where a server is attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attachment {
    /// Inside a farm.
    Farm(FarmId),
    /// Directly to the global node.
    Global,
}

/// The role of a node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// The global node.
    Global,
    /// A farm node.
    Farm(FarmId),
    /// An agent on intrusive servers.
    Agent,
}

/// A node that runs: what `fedlb certs` issues a certificate for, and what `fedlb check`
/// lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Its name (the certificate identity).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// QUIC address it listens on (agents only dial out).
    pub listen: Option<SocketAddr>,
    /// Status endpoint.
    pub status: Option<SocketAddr>,
    /// The node it reports to (none for a global node); with several global nodes, the
    /// first of [`NodeInfo::upstreams`].
    pub reports_to: Option<String>,
    /// Every node it reports to: each global node, for a farm node or an agent of
    /// directly attached servers; its farm node for an agent in a farm.
    pub upstreams: Vec<String>,
    /// Servers whose monitors it runs.
    pub monitors: Vec<ServerId>,
}

impl Topology {
    /// A global node by name.
    pub fn global_node(&self, name: &str) -> Option<&GlobalNode> {
        self.globals.iter().find(|g| g.name == name)
    }

    /// Where global node `name` publishes: `dns` with its own server when it has one.
    pub fn dns_for(&self, name: &str) -> DnsTarget {
        let mut dns = self.dns.clone();
        if let Some(server) = self.global_node(name).and_then(|g| g.dns.clone()) {
            dns.server = server;
        }
        dns
    }

    /// True when global nodes share a DNS server (several nodes, at least one of them
    /// without its own): their writes then go through the partition rule
    /// (`fedlb_core::peers`).
    pub fn shares_dns(&self) -> bool {
        self.globals.len() > 1 && self.globals.iter().filter(|g| g.dns.is_none()).count() > 1
    }

    /// A server wherever it is attached.
    pub fn server(&self, id: &ServerId) -> Option<(&Server, Attachment)> {
        if let Some(s) = self.direct_servers.get(id) {
            return Some((s, Attachment::Global));
        }
        self.farms.values().find_map(|f| {
            f.servers
                .get(id)
                .map(|s| (s, Attachment::Farm(f.id.clone())))
        })
    }

    /// Every server, with where it is attached.
    pub fn servers(&self) -> impl Iterator<Item = (&Server, Attachment)> {
        self.farms
            .values()
            .flat_map(|f| {
                f.servers
                    .values()
                    .map(|s| (s, Attachment::Farm(f.id.clone())))
            })
            .chain(
                self.direct_servers
                    .values()
                    .map(|s| (s, Attachment::Global)),
            )
    }

    /// A farm's distance from the global node: pinned if given, else great-circle
    /// kilometres between the two locations.
    pub fn farm_distance(&self, farm: &Farm) -> Option<Distance> {
        self.distance(farm.distance_ms, farm.location)
    }

    fn distance(&self, pinned: Option<f64>, location: Option<Location>) -> Option<Distance> {
        if let Some(ms) = pinned {
            return Some(Distance::Pinned(ms));
        }
        Some(Distance::Kilometres(
            self.global.location?.km_to(&location?),
        ))
    }

    /// A region's distance to a farm or direct server: pinned in the region's
    /// `distance_ms` if listed, else great-circle kilometres between the region's location
    /// and the candidate's. `None` when neither is known (or the candidate is unknown).
    pub fn region_distance(&self, region: &Region, candidate: &CandidateId) -> Option<Distance> {
        if let Some(ms) = region.distance_ms.get(candidate) {
            return Some(Distance::Pinned(*ms));
        }
        let at = self
            .farms
            .get(&FarmId::from(candidate.as_str()))
            .map(|f| f.location)
            .or_else(|| {
                self.direct_servers
                    .get(&ServerId::from(candidate.as_str()))
                    .map(|s| s.location)
            })??;
        Some(Distance::Kilometres(region.location?.km_to(&at)))
    }

    /// The global tier's candidates that a region measures distances to: every farm
    /// offering a service, then every direct server, by name.
    pub fn region_members(&self) -> Vec<CandidateId> {
        self.farms
            .values()
            .filter(|f| f.servers.values().any(|s| !s.services.is_empty()))
            .map(|f| CandidateId::from(&f.id))
            .chain(self.direct_servers.keys().map(CandidateId::from))
            .collect()
    }

    /// Per region, its distance to each farm and direct server it can be measured to
    /// ([`Topology::region_distance`]), in region name order; candidates with no known
    /// distance are left out (closest ranks them after those that have one). This is what
    /// the global node decides each region's answers with ([`GlobalConfig::regions`]).
    pub fn region_specs(&self) -> Vec<RegionSpec> {
        let members = self.region_members();
        self.regions
            .values()
            .map(|r| RegionSpec {
                id: r.id.clone(),
                distances: members
                    .iter()
                    .filter_map(|c| Some((c.clone(), self.region_distance(r, c)?)))
                    .collect(),
            })
            .collect()
    }

    /// What a farm node runs: per service offered in the farm, its local policy and the
    /// servers offering it.
    pub fn farm_config(&self, farm: &FarmId) -> Option<FarmConfig> {
        let f = self.farms.get(farm)?;
        let services = f
            .local
            .iter()
            .map(|(service, selector)| {
                let members = f
                    .servers
                    .values()
                    .filter(|s| s.services.contains(service))
                    .map(|s| MemberSpec {
                        id: CandidateId::from(&s.id),
                        kind: MemberKind::Server,
                        addresses: s.addresses.clone(),
                        capacity: s.capacity,
                        distance: None,
                        liveness: f.heartbeat.liveness(),
                        sources: Vec::new(),
                    })
                    .collect();
                (
                    service.clone(),
                    TierService {
                        selector: selector.clone(),
                        members,
                    },
                )
            })
            .collect();
        Some(FarmConfig {
            farm: f.id.clone(),
            node: f
                .nodes
                .first()
                .map_or_else(|| f.id.0.clone(), |n| n.name.clone()),
            services,
            heartbeat: f.summary_heartbeat.interval,
            metrics: self
                .services
                .values()
                .filter(|s| !s.metrics.is_empty())
                .map(|s| (s.id.clone(), s.metrics.clone()))
                .collect(),
        })
    }

    /// What the global node runs: per service, the global policy over the farms offering
    /// it and the direct servers offering it, with their distances; and the regions each
    /// service is also decided for ([`Topology::region_specs`]). A farm's addresses
    /// start as all its servers' (used only by fail-static `all` before its first
    /// summary); its summaries replace them.
    pub fn global_config(&self) -> GlobalConfig {
        let services = self
            .services
            .values()
            .map(|svc| {
                let farms = self.farms.values().filter_map(|f| {
                    let offering: Vec<&Server> = f
                        .servers
                        .values()
                        .filter(|s| s.services.contains(&svc.id))
                        .collect();
                    if offering.is_empty() {
                        return None;
                    }
                    Some(MemberSpec {
                        id: CandidateId::from(&f.id),
                        kind: MemberKind::Farm,
                        addresses: dedup(offering.iter().flat_map(|s| s.addresses.iter().copied())),
                        capacity: offering.iter().map(|s| s.capacity).sum(),
                        distance: self.farm_distance(f),
                        liveness: f.summary_heartbeat.liveness(),
                        sources: f.nodes.iter().map(|n| n.name.clone()).collect(),
                    })
                });
                let direct = self
                    .direct_servers
                    .values()
                    .filter(|s| s.services.contains(&svc.id))
                    .map(|s| MemberSpec {
                        id: CandidateId::from(&s.id),
                        kind: MemberKind::Server,
                        addresses: s.addresses.clone(),
                        capacity: s.capacity,
                        distance: self.distance(s.distance_ms, s.location),
                        liveness: self.heartbeat.liveness(),
                        sources: Vec::new(),
                    });
                (
                    svc.id.clone(),
                    TierService {
                        selector: svc.global.clone(),
                        members: farms.chain(direct).collect(),
                    },
                )
            })
            .collect();
        let ttl = self
            .services
            .values()
            .map(|svc| {
                let max = svc.ttl.unwrap_or(self.dns.ttl);
                let min = self.dns.ttl_min.min(max);
                let rule = if self.dns.derive_ttl {
                    TtlRule::derived(min, max)
                } else {
                    TtlRule::fixed(max)
                };
                let rule = if self.dns.ttl_by_load {
                    rule.with_load(min)
                } else {
                    rule
                };
                (svc.id.clone(), rule)
            })
            .collect();
        GlobalConfig {
            services,
            ttl,
            regions: self.region_specs(),
        }
    }

    /// The monitors of one server: one per service it offers.
    pub fn monitor_configs(&self, server: &ServerId) -> Vec<MonitorConfig> {
        let Some((s, attachment)) = self.server(server) else {
            return Vec::new();
        };
        let heartbeat = match attachment {
            Attachment::Farm(f) => self.farms[&f].heartbeat.interval,
            Attachment::Global => self.heartbeat.interval,
        };
        s.services
            .iter()
            .filter_map(|id| self.services.get(id))
            .map(|svc| MonitorConfig {
                service: svc.id.clone(),
                server: s.id.clone(),
                probes: svc.probes.iter().map(Probe::schedule).collect(),
                heartbeat,
            })
            .collect()
    }

    /// The node that runs a server's monitors: its agent (intrusive), else its farm node,
    /// else the global node.
    pub fn monitored_by(&self, server: &ServerId) -> Option<String> {
        let (s, attachment) = self.server(server)?;
        Some(match (&s.mode, attachment) {
            (Mode::Intrusive { agent }, _) => agent.clone(),
            (Mode::Remote, Attachment::Farm(f)) => f.0,
            (Mode::Remote, Attachment::Global) => self.global.name.clone(),
        })
    }

    /// The farm whose farm node is named `node`.
    pub fn farm_of_node(&self, node: &str) -> Option<&Farm> {
        self.farms.values().find(|f| f.node(node).is_some())
    }

    /// The names of every global node, in declaration order.
    pub fn global_names(&self) -> Vec<String> {
        self.globals.iter().map(|g| g.name.clone()).collect()
    }

    /// True when `node` runs the monitors of `server`: [`Topology::monitored_by`]; every
    /// farm node of a farm for the farm's remotely probed servers (independent views, no
    /// coordination between them); and every global node for a remote server attached
    /// directly (each global node decides from its own readings).
    pub fn runs_monitors_of(&self, node: &str, server: &ServerId) -> bool {
        match self.server(server) {
            Some((s, Attachment::Global)) if s.mode == Mode::Remote => {
                self.global_node(node).is_some()
            }
            Some((s, _)) => {
                let by = self.monitored_by(server);
                let farm = self.farm_of_node(node).map(|f| f.id.as_str());
                by.as_deref() == Some(node)
                    || (s.mode == Mode::Remote && farm.is_some() && by.as_deref() == farm)
            }
            None => false,
        }
    }

    /// Every monitor a node runs.
    pub fn monitors_run_by(&self, node: &str) -> Vec<MonitorConfig> {
        self.servers()
            .filter(|(s, _)| self.runs_monitors_of(node, &s.id))
            .flat_map(|(s, _)| self.monitor_configs(&s.id))
            .collect()
    }

    /// Every node that runs: the global node, each farm node, each agent.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        let monitors = |node: &str| -> Vec<ServerId> {
            self.servers()
                .filter(|(s, _)| self.runs_monitors_of(node, &s.id))
                .map(|(s, _)| s.id.clone())
                .collect()
        };
        let mut out: Vec<NodeInfo> = self
            .globals
            .iter()
            .map(|g| NodeInfo {
                name: g.name.clone(),
                role: Role::Global,
                listen: Some(g.listen),
                status: Some(g.status),
                reports_to: None,
                upstreams: Vec::new(),
                monitors: monitors(&g.name),
            })
            .collect();
        for f in self.farms.values() {
            for n in &f.nodes {
                out.push(NodeInfo {
                    name: n.name.clone(),
                    role: Role::Farm(f.id.clone()),
                    listen: Some(n.listen),
                    status: Some(n.status),
                    reports_to: Some(self.global.name.clone()),
                    upstreams: self.global_names(),
                    monitors: monitors(&n.name),
                });
            }
        }
        let mut agents: BTreeMap<String, String> = BTreeMap::new();
        for (s, attachment) in self.servers() {
            if let Mode::Intrusive { agent } = &s.mode {
                let parent = match attachment {
                    Attachment::Farm(f) => f.0,
                    Attachment::Global => self.global.name.clone(),
                };
                agents.insert(agent.clone(), parent);
            }
        }
        for (agent, parent) in agents {
            out.push(NodeInfo {
                monitors: monitors(&agent),
                name: agent,
                role: Role::Agent,
                listen: None,
                status: None,
                // an agent of a farm reports to every farm node of its farm
                upstreams: match self.farms.get(&FarmId(parent.clone())) {
                    Some(f) => f.nodes.iter().map(|n| n.name.clone()).collect(),
                    None => self.global_names(),
                },
                reports_to: Some(parent),
            });
        }
        out
    }

    /// One node by name.
    pub fn node(&self, name: &str) -> Option<NodeInfo> {
        self.nodes().into_iter().find(|n| n.name == name)
    }
}

fn dedup(addrs: impl Iterator<Item = IpAddr>) -> Vec<IpAddr> {
    let mut seen = BTreeSet::new();
    addrs.filter(|a| seen.insert(*a)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn great_circle_paris_new_york() {
        let paris = Location {
            lat: 48.8566,
            lon: 2.3522,
        };
        let nyc = Location {
            lat: 40.7128,
            lon: -74.0060,
        };
        let km = paris.km_to(&nyc);
        assert!((km - 5837.0).abs() < 10.0, "{km}");
        assert_eq!(paris.km_to(&paris), 0.0);
    }
}
