//! What each node will run, for `fedlb check`.

use std::fmt::Write;

use fedlb_core::time::human;
use fedlb_core::{AnswerSet, Distance, FailStatic, Policy, SelectorConfig, Spill, Spread};

use crate::model::{DnsServer, Mode, Probe, ProbeKind, Role, Topology};

impl Topology {
    /// Where one of several global nodes publishes, and how it shares the work.
    fn describe_global_dns(&self, name: &str) -> String {
        let peers = self.globals.len() - 1;
        match self.dns_for(name).server {
            DnsServer::Embedded {
                listen, state_dir, ..
            } => format!(
                "publishes to its own embedded server at {listen} (state in {}); decides alone from the same summaries as its {peers} peer(s)",
                state_dir.display()
            ),
            DnsServer::Rfc2136 { primaries } => {
                let list: Vec<String> = primaries.iter().map(ToString::to_string).collect();
                format!(
                    "publishes to the shared primaries {} by compare-and-swap; defers to a peer that hears more candidates (partition rule)",
                    list.join(", ")
                )
            }
        }
    }

    /// A human-readable account of what each node runs: roles, services, probes and the
    /// policy at each tier.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let w = &mut out;
        let _ = writeln!(w, "topology \"{}\" ({})", self.name, self.file);
        let dns = &self.dns;
        let each_own = self.globals.len() > 1 && self.globals.iter().all(|g| g.dns.is_some());
        match &dns.server {
            _ if each_own => {
                let _ = writeln!(
                    w,
                    "dns: zone {} on each global node's own embedded server (see nodes)",
                    dns.zone
                );
            }
            DnsServer::Rfc2136 { primaries } => {
                let list: Vec<String> = primaries.iter().map(ToString::to_string).collect();
                let _ = writeln!(
                    w,
                    "dns: zone {} on {} by RFC 2136",
                    zones_shown(dns),
                    list.join(", ")
                );
            }
            DnsServer::Embedded {
                listen,
                state_dir,
                secondaries,
                ..
            } => {
                let _ = writeln!(
                    w,
                    "dns: zone {} on the embedded server at {listen} (state in {})",
                    zones_shown(dns),
                    state_dir.display()
                );
                if !secondaries.is_empty() {
                    let list: Vec<String> = secondaries.iter().map(ToString::to_string).collect();
                    let _ = writeln!(
                        w,
                        "dns: secondaries {} (signed transfers, NOTIFY on change)",
                        list.join(", ")
                    );
                }
            }
        }
        let key = match (&dns.tsig, &dns.tsig_file) {
            (Some(k), _) => format!("tsig key \"{}\" ({})", k.name, k.algorithm),
            (None, Some(f)) => format!("tsig key file {} (not read)", f.display()),
            (None, None) => "no tsig".to_owned(),
        };
        let mut ttl = format!("ttl {}", human(dns.ttl));
        if dns.ttl_by_load {
            let _ = write!(ttl, " (by load, at least {})", human(dns.ttl_min));
        }
        if dns.spread != Spread::All && matches!(dns.server, DnsServer::Embedded { .. }) {
            let _ = write!(ttl, ", spread {} per query", dns.spread.as_str());
        }
        let _ = writeln!(w, "     {ttl}, {key}");
        if let Some(g) = &dns.geoip_database {
            let _ = writeln!(w, "     geoip database {}", g.display());
        }
        let _ = writeln!(
            w,
            "heartbeat every {}; stale after {} missed, down after {}",
            human(self.heartbeat.interval),
            self.heartbeat.missed,
            self.heartbeat.missed * 2
        );

        let _ = writeln!(w, "\nservices:");
        for s in self.services.values() {
            let zone = if self.dns.zones.len() > 1 {
                self.dns
                    .zone_of(&s.fqdn)
                    .map_or(String::new(), |z| format!(" (zone {})", z.name))
            } else {
                String::new()
            };
            let _ = writeln!(w, "  {} → {}{zone} port {}", s.id, s.fqdn, s.port);
            let _ = writeln!(w, "    global: {}", selector(&s.global));
            let _ = writeln!(w, "    local:  {}", selector(&s.local));
            if !s.metrics.is_empty() {
                let rules: Vec<String> = s
                    .metrics
                    .iter()
                    .map(|(m, a)| format!("{m} ({a})"))
                    .collect();
                let _ = writeln!(w, "    farm summaries carry: {}", rules.join(", "));
            }
            for p in &s.probes {
                let _ = writeln!(w, "    probe {}", probe(p));
            }
        }

        self.describe_regions(w);

        let _ = writeln!(w, "\nnodes:");
        for n in self.nodes() {
            let role = match &n.role {
                Role::Global => "global node".to_owned(),
                Role::Farm(_) => "farm node".to_owned(),
                Role::Agent => "agent".to_owned(),
            };
            let mut head = format!("  {} ({role})", n.name);
            if let Some(l) = n.listen {
                let _ = write!(head, " listen {l}");
            }
            if let Some(s) = n.status {
                let _ = write!(head, " status {s}");
            }
            if !n.upstreams.is_empty() {
                let _ = write!(head, " → reports to {}", n.upstreams.join(", "));
            }
            let _ = writeln!(w, "{head}");
            match &n.role {
                Role::Global => {
                    if self.globals.len() > 1 {
                        let _ = writeln!(w, "    {}", self.describe_global_dns(&n.name));
                    }
                    let gc = self.global_config();
                    for (sid, ts) in &gc.services {
                        let members: Vec<String> = ts
                            .members
                            .iter()
                            .map(|m| match m.distance {
                                Some(Distance::Pinned(ms)) => format!("{} ({ms} ms)", m.id),
                                Some(Distance::Kilometres(km)) => format!("{} ({km:.0} km)", m.id),
                                None => m.id.to_string(),
                            })
                            .collect();
                        let _ = writeln!(
                            w,
                            "    decides {sid} among {} by {}; publishes {}",
                            members.join(", "),
                            ts.selector.policy,
                            self.services[sid].fqdn
                        );
                    }
                }
                Role::Farm(fid) => {
                    let f = &self.farms[fid];
                    if f.nodes.len() > 1 {
                        let names: Vec<&str> = f.nodes.iter().map(|x| x.name.as_str()).collect();
                        let _ = writeln!(
                            w,
                            "    one of {} farm nodes of farm {fid} ({}): each takes every agent's reports and probes the remote servers itself; the global node uses the first live one reporting the farm up",
                            f.nodes.len(),
                            names.join(", ")
                        );
                    }
                    let _ = writeln!(
                        w,
                        "    summarises every {} when idle; stale at the global node after {} missed ({})",
                        human(f.summary_heartbeat.interval),
                        f.summary_heartbeat.missed,
                        human(f.summary_heartbeat.liveness().stale_after)
                    );
                    if let Some(d) = self.farm_distance(f) {
                        let shown = match d {
                            Distance::Pinned(ms) => format!("{ms} ms (pinned)"),
                            Distance::Kilometres(km) => format!("{km:.0} km"),
                        };
                        let _ = writeln!(w, "    distance from {}: {shown}", self.global.name);
                    }
                    for (sid, cfg) in &f.local {
                        let members: Vec<&str> = f
                            .servers
                            .values()
                            .filter(|s| s.services.contains(sid))
                            .map(|s| s.id.as_str())
                            .collect();
                        let _ = writeln!(
                            w,
                            "    decides {sid} among {} by {}",
                            members.join(", "),
                            selector(cfg)
                        );
                    }
                }
                Role::Agent => {}
            }
            for server in &n.monitors {
                let Some((s, _)) = self.server(server) else {
                    continue;
                };
                let addrs: Vec<String> = s.addresses.iter().map(ToString::to_string).collect();
                let how = match &s.mode {
                    Mode::Intrusive { .. } => "locally",
                    Mode::Remote => "remotely",
                };
                let services: Vec<&str> = s.services.iter().map(|x| x.as_str()).collect();
                let _ = writeln!(
                    w,
                    "    monitors {} [{}] {how} at {}: {} (capacity {})",
                    s.id,
                    addrs.join(", "),
                    s.probe_target(),
                    services.join(", "),
                    s.capacity
                );
            }
        }
        out
    }
}

impl Topology {
    /// Each region: its clients, its distance to each candidate of the global tier, and
    /// where its answers are published.
    fn describe_regions(&self, w: &mut String) {
        if self.regions.is_empty() {
            return;
        }
        let _ = writeln!(w, "\nregions:");
        let members = self.region_members();
        for r in self.regions.values() {
            let mut clients = vec![
                r.clients
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            ];
            if !r.countries.is_empty() {
                let list: Vec<&str> = r.countries.iter().map(String::as_str).collect();
                clients.push(format!("countries {}", list.join(", ")));
            }
            if !r.continents.is_empty() {
                let list: Vec<&str> = r.continents.iter().map(|c| c.code()).collect();
                clients.push(format!("continents {}", list.join(", ")));
            }
            clients.retain(|c| !c.is_empty());
            let _ = writeln!(w, "  {}: {}", r.id, clients.join("; "));
            let distances: Vec<String> = members
                .iter()
                .map(|c| match self.region_distance(r, c) {
                    Some(Distance::Pinned(ms)) => format!("{c} {ms} ms (pinned)"),
                    Some(Distance::Kilometres(km)) => format!("{c} {km:.0} km"),
                    None => format!("{c} unknown"),
                })
                .collect();
            let _ = writeln!(w, "    distance to {}", distances.join(", "));
            let key = match (&r.tsig, &r.tsig_file) {
                (Some(k), _) if r.uses_zone_key(&self.dns) => {
                    format!("the zone's tsig key \"{}\"", k.name)
                }
                (Some(k), _) => format!("tsig key \"{}\" ({})", k.name, k.algorithm),
                (None, Some(f)) => format!("tsig key file {} (not read)", f.display()),
                (None, None) => "a tsig key made at run time".to_owned(),
            };
            let target = match (&self.dns.server, r.dns_servers.as_slice()) {
                (_, []) if matches!(self.dns.server, DnsServer::Embedded { .. }) => {
                    "answered by the embedded server".to_owned()
                }
                (_, []) => "published to its view of the zone's servers".to_owned(),
                (_, own) => {
                    let list: Vec<String> = own.iter().map(ToString::to_string).collect();
                    format!("published to its own servers {}", list.join(", "))
                }
            };
            let _ = writeln!(w, "    {target}, {key}");
        }
    }
}

fn selector(c: &SelectorConfig) -> String {
    let mut s = format!("{}", c.policy);
    if let Policy::Failover(order) = &c.policy {
        let names: Vec<&str> = order.iter().map(|c| c.as_str()).collect();
        let _ = write!(s, " [{}]", names.join(" > "));
    }
    match c.set {
        AnswerSet::Top => {
            let _ = write!(
                s,
                ", {} answer{}",
                c.answers,
                if c.answers == 1 { "" } else { "s" }
            );
        }
        AnswerSet::Weighted => s.push_str(", every healthy member weighted by headroom"),
    }
    if c.spill == Spill::Split {
        s.push_str(", split over the load limit");
    }
    if c.policy.is_stable() {
        let _ = write!(
            s,
            ", hysteresis {:.0} % / {}",
            c.hysteresis.margin * 100.0,
            human(c.hysteresis.dwell)
        );
    } else {
        let _ = write!(s, ", new order every {}", human(c.rotate_every));
    }
    s.push_str(match c.fail_static {
        FailStatic::KeepLast => ", fail-static keeps the last answer",
        FailStatic::All => ", fail-static answers all",
    });
    s
}

fn probe(p: &Probe) -> String {
    let what = match &p.kind {
        ProbeKind::Tcp => "tcp connect".to_owned(),
        ProbeKind::Http(h) | ProbeKind::Https(h) => {
            format!(
                "{} GET {} expecting {}",
                p.kind.as_str(),
                h.path,
                h.expect_status
            )
        }
        ProbeKind::Icmp => "icmp echo".to_owned(),
        ProbeKind::Hops { max_hops } => format!("hop count (max {max_hops})"),
        ProbeKind::Load(src) => match src {
            crate::model::LoadSource::NginxStubStatus { url } => {
                format!("load from nginx stub_status {url}")
            }
            crate::model::LoadSource::Prometheus {
                url,
                metric,
                labels,
                record_as,
            } => {
                let labels: Vec<String> =
                    labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                let labels = if labels.is_empty() {
                    String::new()
                } else {
                    format!("{{{}}}", labels.join(","))
                };
                let what = match record_as {
                    crate::model::RecordAs::Pending => "load from",
                    crate::model::RecordAs::Connections => "connections from",
                    crate::model::RecordAs::Metric => "metric",
                };
                format!("{what} {metric}{labels} at {url}")
            }
            crate::model::LoadSource::ProcNetTcp { port } => {
                format!("load: connections to port {port}")
            }
        },
        ProbeKind::Command { argv, metric } => format!("command {} → {metric}", argv.join(" ")),
    };
    format!(
        "{}: {what}, every {}, timeout {}, rise {} fall {}{}",
        p.id,
        human(p.interval),
        human(p.timeout),
        p.thresholds.rise,
        p.thresholds.fall,
        if p.affects_health {
            ""
        } else {
            ", measures only"
        }
    )
}

/// The zones as `fedlb check` lists them: `a.test.`, or `a.test., b.test. (own servers)`.
fn zones_shown(dns: &crate::model::DnsTarget) -> String {
    dns.zones
        .iter()
        .map(|z| {
            let mut own = Vec::new();
            if let Some(s) = &z.servers {
                let list: Vec<String> = s.iter().map(ToString::to_string).collect();
                own.push(format!("servers {}", list.join(", ")));
            }
            if let Some(k) = &z.tsig {
                own.push(format!("key {}", k.name));
            }
            if own.is_empty() {
                z.name.clone()
            } else {
                format!("{} ({})", z.name, own.join("; "))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}
