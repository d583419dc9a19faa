//! The `farms` section, their servers, and directly attached servers.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use fedlb_core::{FarmId, ServerId, ServiceId};

use crate::model::{Farm, Heartbeat, Mode, Server, Service};
use crate::schema::{RawFarm, RawServer};

use super::{Ctx, DEFAULT_CAPACITY, OrderCheck, PolicyUse, RawIndex, Scope};

impl Ctx<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn farm(
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
                farm_metrics: None,
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

    pub(super) fn server(
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
}
