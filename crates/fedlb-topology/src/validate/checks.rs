//! Whole-topology checks, once every section is read: remote probes, failover orders,
//! node names and addresses, distances, TTLs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use fedlb_core::time::human;
use fedlb_core::{ClosestBy, FarmId, Policy, ProbeId, ServerId, ServiceId};

use crate::model::{DnsServer, Farm, LoadSource, Mode, ProbeKind, Server, Service, Topology};

use super::{Ctx, OrderCheck, RawIndex, Scope};

impl Ctx<'_> {
    /// Probes that read the machine they run on (`/proc/net/tcp`, a command) measure the
    /// farm or global node when the server is probed remotely: an error. A hop count from
    /// the probing node is at least a measurement, but not the server's distance: a warning.
    pub(super) fn check_remote_probes(
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

    pub(super) fn check_orders(&mut self, orders: &[OrderCheck], index: &RawIndex) {
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

    /// Where a farm node was declared: the path of its name and of its addresses' parent.
    fn node_path(&self, farm: &FarmId, node: &str, farm_path: &str) -> (String, String) {
        self.node_paths
            .get(&(farm.clone(), node.to_owned()))
            .cloned()
            .unwrap_or_else(|| (format!("{farm_path}.name"), farm_path.to_owned()))
    }

    pub(super) fn check_nodes(
        &mut self,
        t: &Topology,
        farm_paths: &BTreeMap<FarmId, String>,
        server_paths: &BTreeMap<ServerId, String>,
    ) {
        // node names are certificate identities: one node, one name
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        for g in &t.globals {
            let what = if t.globals.len() > 1 {
                format!("global node \"{}\"", g.name)
            } else {
                "the global node".to_owned()
            };
            names.insert(g.name.clone(), what);
        }
        for f in t.farms.values() {
            for n in &f.nodes {
                let what = if n.name == f.id.as_str() {
                    format!("farm \"{}\"", f.id)
                } else {
                    format!("farm node \"{}\" of farm \"{}\"", n.name, f.id)
                };
                let (name_path, _) = self.node_path(&f.id, &n.name, &farm_paths[&f.id]);
                if let Some(other) = names.get(&n.name) {
                    let msg = if n.name == f.id.as_str() {
                        format!("farm \"{}\" has the node name of {other}", f.id)
                    } else {
                        format!("farm node \"{}\" has the node name of {other}", n.name)
                    };
                    self.err(name_path, msg);
                } else {
                    names.insert(n.name.clone(), what);
                }
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
        let mut listeners: Vec<(SocketAddr, String)> = Vec::new();
        for (g, path) in t.globals.iter().zip(self.global_paths.clone()) {
            listeners.push((g.listen, format!("{path}.listen")));
            listeners.push((g.status, format!("{path}.status")));
            if let Some(DnsServer::Embedded { listen, .. }) = &g.dns {
                listeners.push((*listen, format!("{path}.embedded.listen")));
            }
        }
        for f in t.farms.values() {
            for n in &f.nodes {
                let (_, np) = self.node_path(&f.id, &n.name, &farm_paths[&f.id]);
                listeners.push((n.listen, format!("{np}.listen")));
                listeners.push((n.status, format!("{np}.status")));
            }
        }
        if let DnsServer::Embedded { listen, .. } = &t.dns.server
            && t.globals.iter().any(|g| g.dns.is_none())
        {
            listeners.push((*listen, "dns.embedded.listen".to_owned()));
        }
        // the status port serves read-only status without authentication (admin calls
        // need an operator certificate): open beyond this machine, anyone who reaches it
        // reads the federation's state
        for (addr, path) in listeners.iter().filter(|(_, p)| p.ends_with(".status")) {
            if !addr.ip().is_loopback() {
                self.warn(
                    path.clone(),
                    format!(
                        "status address {addr} is not loopback and the read-only status (page, JSON, metrics) has no authentication: anyone who reaches it reads the federation's state (admin calls still need an operator certificate); bind it to loopback or restrict who reaches it"
                    ),
                );
            }
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

    pub(super) fn check_distances(
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
            let by = closest_by(&svc.global.policy);
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
                let declared = closest_by(&cfg.policy) == Some(ClosestBy::Declared);
                if declared {
                    self.err(
                        format!("{}.local.{sid}.policy", farm_paths[fid]),
                        "closest by declared distance inside a farm: servers in a farm declare no distance (use rtt or hops)",
                    );
                }
            }
        }
    }

    pub(super) fn check_ttl(&mut self, t: &Topology) {
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

/// How a policy measures distance when it ranks by closest: itself, or a composite's `rank`,
/// else its `fallback` (declared distance first: it is the one that can be missing).
fn closest_by(policy: &Policy) -> Option<ClosestBy> {
    match policy {
        Policy::Closest(by) => Some(*by),
        Policy::Composite { rank, fallback, .. } => {
            let inner = [Some(rank.as_ref()), fallback.as_deref()];
            let found: Vec<ClosestBy> =
                inner.into_iter().flatten().filter_map(closest_by).collect();
            found
                .iter()
                .copied()
                .find(|b| *b == ClosestBy::Declared)
                .or(found.first().copied())
        }
        _ => None,
    }
}
