//! Test topologies: short intervals everywhere (probes every 250 ms, heartbeats every
//! 300 ms, dwells of a few seconds) so that each scenario takes seconds, not minutes.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};

use crate::fed::Fed;

/// The suite's TSIG key name (BIND, the embedded server and nsupdate share it).
pub const TSIG_NAME: &str = "fedlb-it";
/// The suite's TSIG secret (hmac-sha256, 32 bytes).
pub const TSIG_SECRET: &str = "yEJLwxMvZN+2Sokg00jb+a2uBusiYoLtflt2Nf6gHzQ=";

/// Where answers are published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsTarget {
    /// The global node's embedded server, on the global node's address, port 5300.
    Embedded,
    /// An external primary (BIND), updated by RFC 2136.
    External(SocketAddr),
}

impl DnsTarget {
    /// `embedded` or `bind`, for timings.
    pub fn label(&self) -> &'static str {
        match self {
            DnsTarget::Embedded => "embedded",
            DnsTarget::External(_) => "bind",
        }
    }
}

/// A server of a farm, or attached directly to the global node.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    /// Its name.
    pub name: String,
    /// Its address (answered and probed, port 8080).
    pub ip: Ipv4Addr,
    /// Intrusive mode: the agent that probes it on the server.
    pub agent: Option<String>,
    /// Direct servers only: pinned distance from the global node.
    pub distance_ms: Option<u32>,
}

impl ServerSpec {
    /// A server probed remotely by its farm node (or by the global node).
    pub fn remote(name: &str, ip: Ipv4Addr) -> ServerSpec {
        ServerSpec {
            name: name.to_owned(),
            ip,
            agent: None,
            distance_ms: None,
        }
    }

    /// A server probed by an agent running on it.
    pub fn intrusive(name: &str, ip: Ipv4Addr, agent: &str) -> ServerSpec {
        ServerSpec {
            agent: Some(agent.to_owned()),
            ..ServerSpec::remote(name, ip)
        }
    }

    /// With a pinned distance (direct servers).
    pub fn distance(mut self, ms: u32) -> ServerSpec {
        self.distance_ms = Some(ms);
        self
    }

    /// The address its service listens on.
    pub fn addr(&self) -> SocketAddr {
        (self.ip, 8080).into()
    }
}

/// A farm and its farm node.
#[derive(Clone, Debug)]
pub struct FarmSpec {
    /// Its name (and the farm node's).
    pub name: String,
    /// The farm node's address (QUIC port 7401, status port 7481).
    pub ip: Ipv4Addr,
    /// Pinned distance from the global node.
    pub distance_ms: u32,
    /// A per-farm override of the local tier, as an inline TOML table.
    pub local: Option<String>,
    /// Its servers.
    pub servers: Vec<ServerSpec>,
    /// Several farm nodes (name, address), declared as `nodes`; empty: one farm node named
    /// as the farm on `ip`.
    pub nodes: Vec<(String, Ipv4Addr)>,
}

impl FarmSpec {
    /// A farm at `distance_ms` with `servers`.
    pub fn new(name: &str, ip: Ipv4Addr, distance_ms: u32, servers: Vec<ServerSpec>) -> FarmSpec {
        FarmSpec {
            name: name.to_owned(),
            ip,
            distance_ms,
            local: None,
            servers,
            nodes: Vec::new(),
        }
    }

    /// The names of its farm nodes (process names).
    pub fn node_names(&self) -> Vec<String> {
        if self.nodes.is_empty() {
            vec![self.name.clone()]
        } else {
            self.nodes.iter().map(|(n, _)| n.clone()).collect()
        }
    }

    /// The farm node's status URL.
    pub fn status_url(&self) -> String {
        format!("http://{}:7481", self.ip)
    }
}

/// A region of clients (`[[regions]]`).
#[derive(Clone, Debug)]
pub struct RegionSpec {
    /// Its name.
    pub name: String,
    /// Its client prefixes.
    pub clients: Vec<String>,
    /// Pinned distance from its clients to each farm.
    pub distance_ms: Vec<(String, u32)>,
    /// Its own TSIG key name (secret: the suite's); `None`: none given.
    pub tsig_name: Option<String>,
    /// Its own primaries (`dns.servers` of the region).
    pub servers: Vec<SocketAddr>,
}

impl RegionSpec {
    /// A region of `clients` at the given distances from farms.
    pub fn new(name: &str, clients: &[String], distance_ms: &[(&str, u32)]) -> RegionSpec {
        RegionSpec {
            name: name.to_owned(),
            clients: clients.to_vec(),
            distance_ms: distance_ms
                .iter()
                .map(|(f, d)| ((*f).to_owned(), *d))
                .collect(),
            tsig_name: None,
            servers: Vec::new(),
        }
    }
}

/// A whole test topology, rendered as TOML.
#[derive(Clone, Debug)]
pub struct Topo {
    /// Federation name.
    pub name: String,
    /// The global node's address (QUIC 7400, status 7480, embedded DNS 5300).
    pub global_ip: Ipv4Addr,
    /// Where answers go.
    pub dns: DnsTarget,
    /// The zone.
    pub zone: String,
    /// The service's name in DNS.
    pub fqdn: String,
    /// The global tier, as an inline TOML table.
    pub global_tier: String,
    /// The service's default local tier, as an inline TOML table.
    pub local_tier: String,
    /// `[[services.probes]]` blocks, as TOML.
    pub probes: Vec<String>,
    /// The heartbeat, as an inline TOML table.
    pub heartbeat: String,
    /// `dns.reconcile`: how often the publisher re-reads the server to repair drift.
    pub reconcile: Option<String>,
    /// Farms.
    pub farms: Vec<FarmSpec>,
    /// Servers attached directly to the global node.
    pub direct: Vec<ServerSpec>,
    /// Regions of clients.
    pub regions: Vec<RegionSpec>,
}

/// The default probe: HTTP `/health` every 250 ms, 200 ms timeout, rise 2, fall 2.
pub const HTTP_PROBE: &str = r#"kind = "http"
path = "/health"
interval = "250ms"
timeout = "200ms"
rise = 2
fall = 2
"#;

impl Topo {
    /// Closest farm globally (dwell 3 s), least loaded locally; embedded DNS; no farms yet.
    pub fn new(fed: &Fed) -> Topo {
        Topo {
            name: fed.scenario.clone(),
            global_ip: fed.ip(1),
            dns: DnsTarget::Embedded,
            zone: "it.test.".to_owned(),
            fqdn: "www.it.test.".to_owned(),
            global_tier: r#"{ policy = "closest", hysteresis = { margin = 0.2, dwell = "3s" } }"#
                .to_owned(),
            local_tier:
                r#"{ policy = "least_loaded", hysteresis = { margin = 0.2, dwell = "2s" } }"#
                    .to_owned(),
            probes: vec![HTTP_PROBE.to_owned()],
            heartbeat: r#"{ interval = "300ms", missed = 3 }"#.to_owned(),
            reconcile: None,
            farms: Vec::new(),
            direct: Vec::new(),
            regions: Vec::new(),
        }
    }

    /// Where to ask for the answer.
    pub fn dns_addr(&self) -> SocketAddr {
        match self.dns {
            DnsTarget::Embedded => (self.global_ip, 5300).into(),
            DnsTarget::External(a) => a,
        }
    }

    /// The global node's status URL.
    pub fn status_url(&self) -> String {
        format!("http://{}:7480", self.global_ip)
    }

    /// Farm `name`.
    pub fn farm(&self, name: &str) -> &FarmSpec {
        self.farms
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no farm {name}"))
    }

    /// Server `name`, wherever it is attached.
    pub fn server(&self, name: &str) -> &ServerSpec {
        self.farms
            .iter()
            .flat_map(|f| f.servers.iter())
            .chain(self.direct.iter())
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no server {name}"))
    }

    /// Every server.
    pub fn servers(&self) -> Vec<ServerSpec> {
        self.farms
            .iter()
            .flat_map(|f| f.servers.iter())
            .chain(self.direct.iter())
            .cloned()
            .collect()
    }

    /// Every agent name, once.
    pub fn agents(&self) -> Vec<String> {
        let mut out: Vec<String> = self.servers().into_iter().filter_map(|s| s.agent).collect();
        out.sort();
        out.dedup();
        out
    }

    /// The topology file.
    pub fn to_toml(&self) -> String {
        let mut t = String::new();
        let g = self.global_ip;
        let _ = writeln!(t, "name = \"{}\"", self.name);
        let _ = writeln!(t, "heartbeat = {}", self.heartbeat);
        let _ = writeln!(
            t,
            "\n[global]\nlisten = \"{g}:7400\"\nstatus = \"{g}:7480\""
        );
        let _ = writeln!(t, "\n[dns]\nzone = \"{}\"\nttl = \"5s\"", self.zone);
        if let Some(r) = &self.reconcile {
            let _ = writeln!(t, "reconcile = \"{r}\"");
        }
        let _ = writeln!(
            t,
            "tsig = {{ secret = \"{TSIG_SECRET}\", name = \"{TSIG_NAME}\", algorithm = \"hmac-sha256\" }}"
        );
        match self.dns {
            DnsTarget::Embedded => {
                let _ = writeln!(
                    t,
                    "embedded = {{ listen = \"{g}:5300\", state_dir = \"dns\" }}"
                );
            }
            DnsTarget::External(a) => {
                let _ = writeln!(t, "servers = [\"{a}\"]");
            }
        }
        let _ = writeln!(
            t,
            "\n[[services]]\nname = \"www\"\nfqdn = \"{}\"\nport = 8080\nglobal = {}\nlocal = {}",
            self.fqdn, self.global_tier, self.local_tier
        );
        for p in &self.probes {
            let _ = writeln!(t, "\n[[services.probes]]\n{p}");
        }
        for f in &self.farms {
            if f.nodes.is_empty() {
                let _ = writeln!(
                    t,
                    "\n[[farms]]\nname = \"{}\"\nlisten = \"{}:7401\"\nstatus = \"{}:7481\"\ndistance_ms = {}",
                    f.name, f.ip, f.ip, f.distance_ms
                );
            } else {
                let nodes: Vec<String> = f
                    .nodes
                    .iter()
                    .map(|(n, ip)| {
                        format!(
                            "{{ name = \"{n}\", listen = \"{ip}:7401\", status = \"{ip}:7481\" }}"
                        )
                    })
                    .collect();
                let _ = writeln!(
                    t,
                    "\n[[farms]]\nname = \"{}\"\nnodes = [{}]\ndistance_ms = {}",
                    f.name,
                    nodes.join(", "),
                    f.distance_ms
                );
            }
            if let Some(local) = &f.local {
                let _ = writeln!(t, "local.www = {local}");
            }
            for s in &f.servers {
                server_toml(&mut t, "farms.servers", s);
            }
        }
        for s in &self.direct {
            server_toml(&mut t, "servers", s);
        }
        for r in &self.regions {
            let clients: Vec<String> = r.clients.iter().map(|c| format!("\"{c}\"")).collect();
            let distances: Vec<String> = r
                .distance_ms
                .iter()
                .map(|(f, d)| format!("{f} = {d}"))
                .collect();
            let _ = writeln!(
                t,
                "\n[[regions]]\nname = \"{}\"\nclients = [{}]\ndistance_ms = {{ {} }}",
                r.name,
                clients.join(", "),
                distances.join(", ")
            );
            if let Some(key) = &r.tsig_name {
                let _ = writeln!(
                    t,
                    "tsig = {{ secret = \"{TSIG_SECRET}\", name = \"{key}\", algorithm = \"hmac-sha256\" }}"
                );
            }
            if !r.servers.is_empty() {
                let servers: Vec<String> = r.servers.iter().map(|a| format!("\"{a}\"")).collect();
                let _ = writeln!(t, "dns = {{ servers = [{}] }}", servers.join(", "));
            }
        }
        t
    }
}

fn server_toml(t: &mut String, table: &str, s: &ServerSpec) {
    let _ = writeln!(
        t,
        "\n[[{table}]]\nname = \"{}\"\naddress = \"{}\"\nservices = [\"www\"]",
        s.name, s.ip
    );
    if let Some(agent) = &s.agent {
        let _ = writeln!(t, "mode = \"intrusive\"\nagent = \"{agent}\"");
    }
    if let Some(d) = s.distance_ms {
        let _ = writeln!(t, "distance_ms = {d}");
    }
}
