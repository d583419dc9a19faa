//! The `services` section and their probes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use fedlb_core::time::human;
use fedlb_core::{
    Aggregate, AnswerSet, ClosestBy, Filter, Hysteresis, Policy, ProbeId, SelectorConfig,
    ServiceId, Spill, Thresholds,
};

use crate::model::{DnsTarget, HttpCheck, LoadSource, Probe, ProbeKind, RecordAs, Service};
use crate::schema::{RawProbe, RawService};

use super::{
    Ctx, DEFAULT_HOPS_INTERVAL, DEFAULT_INTERVAL, DEFAULT_TIMEOUT, OrderCheck, PROBE_KINDS,
    PolicyUse, Scope,
};

/// Where a service is decided: with regions of clients or not, and whether farms offer it
/// (then its global candidates are farms, which report only the metrics they aggregate).
#[derive(Clone, Copy)]
pub(super) struct Placement {
    pub regions: bool,
    pub in_farms: bool,
}

impl Ctx<'_> {
    pub(super) fn service(
        &mut self,
        path: &str,
        raw: RawService,
        default_answers: usize,
        dns: Option<&DnsTarget>,
        at: Placement,
        orders: &mut Vec<OrderCheck>,
    ) -> Option<Service> {
        let Placement { regions, in_farms } = at;
        let name_ok = self.name(&format!("{path}.name"), &raw.name);
        let id = ServiceId(raw.name.clone());
        let fqdn = self.domain(&format!("{path}.fqdn"), &raw.fqdn);
        if let (Some(f), Some(d)) = (&fqdn, dns)
            && d.zone_of(f).is_none()
        {
            let message = match d.zones.as_slice() {
                [one] => format!("\"{f}\" is not inside zone \"{}\"", one.name),
                zones => format!(
                    "\"{f}\" is inside no zone of dns.zones ({})",
                    zones
                        .iter()
                        .map(|z| format!("\"{}\"", z.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            self.err(format!("{path}.fqdn"), message);
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
        let mut rules: BTreeMap<String, Aggregate> = BTreeMap::new();
        for (name, rule) in raw.metrics.iter().flatten() {
            let mpath = format!("{path}.metrics.{name}");
            match Aggregate::from_name(rule) {
                Some(a) => {
                    if !metrics.contains(name) {
                        self.warn(
                            &mpath,
                            format!(
                                "no probe of service \"{id}\" measures metric \"{name}\" (add a command probe, or a prometheus load probe with record_as = \"metric\")"
                            ),
                        );
                    }
                    rules.insert(name.clone(), a);
                }
                None => self.err(
                    mpath,
                    format!(
                        "unknown aggregation \"{rule}\" for metric \"{name}\" (expected min, max, sum or mean)"
                    ),
                ),
            }
        }
        let carried: BTreeSet<String> = rules
            .keys()
            .filter(|m| metrics.contains(*m))
            .cloned()
            .collect();
        // With regions, a region whose closest farm is over the load limit is split with
        // the next farms (only its excess moves) instead of moved whole: the scenario suite
        // chose it (README, "The scenario suite").
        let global_base = SelectorConfig {
            answers: default_answers,
            spill: if regions { Spill::Split } else { Spill::Move },
            ..SelectorConfig::new(default_global_policy(regions))
        };
        let global_use = PolicyUse {
            service: &id,
            scope: Scope::Global,
            metrics: &metrics,
            farm_metrics: in_farms.then_some(&carried),
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
            farm_metrics: None,
        };
        let local = self.tier(
            &format!("{path}.local"),
            raw.local.as_ref(),
            // By default a farm answers every healthy server weighted by its headroom, with
            // no hysteresis: one preferred server takes whole resolvers' worth of load and
            // drowns before the next report moves the answer, and holding a least-loaded
            // choice for a dwell sends every refreshing resolver to it (the scenario suite
            // in the README chose this).
            SelectorConfig {
                hysteresis: Hysteresis::NONE,
                set: AnswerSet::Weighted,
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
            metrics: rules,
        })
    }

    pub(super) fn probe(&mut self, path: &str, raw: &RawProbe) -> Option<Probe> {
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
            "load" => &["source", "url", "metric", "labels", "record_as"],
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
            ("labels", raw.labels.is_some()),
            ("record_as", raw.record_as.is_some()),
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

    pub(super) fn load_source(&mut self, path: &str, raw: &RawProbe) -> Option<LoadSource> {
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
                for (f, given) in [
                    ("metric", raw.metric.is_some()),
                    ("labels", raw.labels.is_some()),
                    ("record_as", raw.record_as.is_some()),
                ] {
                    if given {
                        self.err(
                            p(f),
                            format!("`{f}` does not apply to source \"nginx_stub_status\""),
                        );
                    }
                }
                url(self).map(|url| LoadSource::NginxStubStatus { url })
            }
            "prometheus" => {
                let u = url(self);
                let m = self.metric_name(&p("metric"), raw.metric.as_deref(), "prometheus");
                let record_as = match raw.record_as.as_deref() {
                    None | Some("pending") => Some(RecordAs::Pending),
                    Some("connections") => Some(RecordAs::Connections),
                    Some("metric") => Some(RecordAs::Metric),
                    Some(other) => {
                        self.err(
                            p("record_as"),
                            format!("unknown record_as \"{other}\" (expected pending, connections or metric: the metric under its own name)"),
                        );
                        None
                    }
                };
                let mut labels = Vec::new();
                for (k, v) in raw.labels.iter().flatten() {
                    let valid = !k.is_empty()
                        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && !k.starts_with(|c: char| c.is_ascii_digit());
                    if valid {
                        labels.push((k.clone(), v.clone()));
                    } else {
                        self.err(
                            format!("{}.{k}", p("labels")),
                            format!("\"{k}\" is not a Prometheus label name (letters, digits and _, not starting with a digit)"),
                        );
                    }
                }
                Some(LoadSource::Prometheus {
                    url: u?,
                    metric: m?,
                    labels,
                    record_as: record_as?,
                })
            }
            "proc_net_tcp" => {
                for (f, given) in [
                    ("url", raw.url.is_some()),
                    ("metric", raw.metric.is_some()),
                    ("labels", raw.labels.is_some()),
                    ("record_as", raw.record_as.is_some()),
                ] {
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

    pub(super) fn metric_name(
        &mut self,
        path: &str,
        metric: Option<&str>,
        what: &str,
    ) -> Option<String> {
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
}

/// Why the host of a load probe's URL cannot be used: probes never resolve names, so the
/// host must be an IP address or `server` (the server's probe address), as the node reads
/// it when it starts.
pub(super) fn url_host_problem(url: &str) -> Option<String> {
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

pub(super) fn metrics_of_probes(probes: &[Probe]) -> BTreeSet<String> {
    probes
        .iter()
        .filter_map(|p| match &p.kind {
            ProbeKind::Command { metric, .. } => Some(metric.clone()),
            ProbeKind::Load(LoadSource::Prometheus {
                metric,
                record_as: RecordAs::Metric,
                ..
            }) => Some(metric.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn metrics_of(s: &Service) -> BTreeSet<String> {
    metrics_of_probes(&s.probes)
}

/// The global policy of a service that sets none: the closest candidate. With regions,
/// the closest among those with load ≤ 0.8, else the least loaded: a region's closest farm
/// would otherwise take all of that region's clients however busy it is, and once every
/// farm is over the limit the one with the most room left is the best guess.
pub(crate) fn default_global_policy(regions: bool) -> Policy {
    if regions {
        Policy::Composite {
            filters: vec![Filter::MaxLoad(0.8)],
            rank: Box::new(Policy::Closest(ClosestBy::Auto)),
            fallback: Some(Box::new(Policy::LeastLoaded)),
        }
    } else {
        Policy::Closest(ClosestBy::Auto)
    }
}
