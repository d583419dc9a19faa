//! The status model: what `GET /status` serves (JSON), what `GET /` draws (HTML) and what
//! `fedlb status URL` prints. It is a view of the core's state; it decides nothing.
//!
//! The JSON schema is documented in `docs/status.md`; `tests/status_schema.rs` checks it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use fedlb_core::{
    Decision, FarmId, FarmState, GlobalState, MemberView, Members, Readings, ServiceId, Summary,
    Timestamp,
};
use serde::{Deserialize, Serialize};

/// Version of the status document's schema.
pub const SCHEMA_VERSION: u32 = 1;

/// The whole status document of one node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Schema version ([`SCHEMA_VERSION`]).
    pub schema: u32,
    /// Node name.
    pub node: String,
    /// `global` or `farm`.
    pub role: String,
    /// Seconds since the node started.
    pub uptime_s: f64,
    /// One entry per service.
    pub services: Vec<ServiceStatus>,
    /// When this node's certificate and the CA's expire; set by the running node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<CertificateExpiry>,
}

/// When this node's own certificate and the federation CA's certificate expire (Unix
/// seconds, UTC), so that renewal is watched rather than discovered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateExpiry {
    /// This node's certificate's notAfter.
    pub node_expires_at: u64,
    /// The CA certificate's notAfter.
    pub ca_expires_at: u64,
}

impl CertificateExpiry {
    /// The expiry of the credentials a node runs with.
    pub fn of(tls: &fedlb_net::NodeTls) -> Self {
        let unix = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        };
        CertificateExpiry {
            node_expires_at: unix(tls.not_after()),
            ca_expires_at: unix(tls.ca_not_after()),
        }
    }
}

/// One service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Service name.
    pub service: String,
    /// The name it is published under, if this node publishes.
    pub fqdn: Option<String>,
    /// The global decision (on the global node; `null` on a farm node).
    pub global: Option<TierStatus>,
    /// Each farm's local decision.
    pub farms: Vec<FarmStatus>,
    /// What was last published (global node only).
    pub published: Option<PublishStatus>,
}

/// A decision at one tier and the candidates it was made from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TierStatus {
    /// The policy, as an operator reads it (`closest among load ≤ 80 %`).
    pub policy: String,
    /// Chosen candidates, preferred first.
    pub chosen: Vec<String>,
    /// The addresses answered.
    pub answers: Vec<IpAddr>,
    /// Why.
    pub why: String,
    /// True when no candidate is healthy and the answer is fail-static.
    pub degraded: bool,
    /// Seconds since the choice last changed.
    pub since_s: f64,
    /// Every candidate.
    pub candidates: Vec<CandidateStatus>,
}

/// One candidate (a farm or a server).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CandidateStatus {
    /// Name.
    pub id: String,
    /// `farm` or `server`.
    pub kind: String,
    /// `up`, `unknown`, `stale`, `down` or `drained`.
    pub health: String,
    /// Why it has that health.
    pub reason: String,
    /// 1-based rank among healthy candidates.
    pub rank: Option<usize>,
    /// The policy's view of it.
    pub shown: String,
    /// Whether the decision chose it.
    pub chosen: bool,
    /// Its addresses.
    pub addresses: Vec<IpAddr>,
    /// For a farm: servers up and in all.
    pub members: Option<Members>,
    /// Latest readings with their ages.
    pub readings: ReadingsStatus,
}

/// A reading and its age.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgedValue {
    /// The value (milliseconds for times).
    pub value: f64,
    /// Its age in seconds.
    pub age_s: f64,
}

/// Readings with ages; absent readings are omitted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReadingsStatus {
    /// Response time, ms.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub response_time_ms: Option<AgedValue>,
    /// Pending requests.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pending: Option<AgedValue>,
    /// Open connections.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub connections: Option<AgedValue>,
    /// Hops.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hops: Option<AgedValue>,
    /// Round-trip time from the deciding node, ms.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rtt_ms: Option<AgedValue>,
    /// Application metrics.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub metrics: BTreeMap<String, AgedValue>,
}

/// One farm's local decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FarmStatus {
    /// Farm name.
    pub farm: String,
    /// Seconds since its last summary arrived (global node), or 0 on the farm node.
    pub heard_s_ago: Option<f64>,
    /// The local decision and its servers.
    pub local: TierStatus,
}

/// What DNS serves for a service, next to what the decision wants it to serve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PublishStatus {
    /// The addresses DNS serves: what the (first) primary last confirmed, by acknowledging
    /// an update or answering a read. Empty while unknown.
    pub addresses: Vec<IpAddr>,
    /// Their TTL (0 while unknown).
    pub ttl: u32,
    /// `ok`, or the error of the last attempt.
    pub result: String,
    /// Seconds since the last attempt.
    pub at_s_ago: Option<f64>,
    /// The addresses the decision wants DNS to serve.
    pub desired: Vec<IpAddr>,
    /// The desired addresses while some primary does not serve them yet; `null` when every
    /// primary serves the decision.
    pub pending: Option<Vec<IpAddr>>,
    /// True when DNS is behind the decision and the last update failed: clients are sent
    /// to an answer the decision has left.
    pub degraded: bool,
    /// Each primary DNS server.
    pub primaries: Vec<PrimaryStatus>,
}

/// What one primary DNS server serves for a service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrimaryStatus {
    /// The server.
    pub server: String,
    /// The addresses it last confirmed; `null` while unknown.
    pub addresses: Option<Vec<IpAddr>>,
    /// `ok`, or the error it is failing with.
    pub result: String,
}

impl PublishStatus {
    /// The publish status of `name`: `desired` is what the decision wants published (its
    /// addresses), `primaries` what each DNS server serves, `at_s_ago` the age of the last
    /// publish attempt.
    pub fn new(
        name: &fedlb_dns::Name,
        desired: Option<&fedlb_dns::RecordSet>,
        primaries: &[fedlb_dns::PrimaryView],
        at_s_ago: Option<f64>,
    ) -> Self {
        let desired: Vec<IpAddr> = desired.map_or_else(Vec::new, |set| {
            set.v4
                .iter()
                .map(|a| IpAddr::from(*a))
                .chain(set.v6.iter().map(|a| IpAddr::from(*a)))
                .collect()
        });
        let per: Vec<PrimaryStatus> = primaries
            .iter()
            .map(|p| PrimaryStatus {
                server: p.server.to_string(),
                addresses: p
                    .serves
                    .as_ref()
                    .map(|z| z.addrs(name).into_iter().collect()),
                result: p.failing.clone().unwrap_or_else(|| "ok".to_owned()),
            })
            .collect();
        let behind = |p: &PrimaryStatus| {
            !desired.is_empty() && p.addresses.as_ref().is_none_or(|a| a != &desired)
        };
        let pending = per.iter().any(behind);
        let degraded = primaries
            .iter()
            .zip(&per)
            .any(|(view, p)| behind(p) && view.failing.is_some());
        let first = primaries.first();
        let ttl = first
            .and_then(|p| p.serves.as_ref())
            .and_then(|z| {
                fedlb_dns::Family::ALL
                    .iter()
                    .find_map(|f| z.get(&fedlb_dns::RrKey::new(name.clone(), *f)))
            })
            .map_or(0, |d| d.ttl);
        let result = per
            .iter()
            .find(|p| p.result != "ok")
            .map_or_else(|| "ok".to_owned(), |p| p.result.clone());
        PublishStatus {
            addresses: per
                .first()
                .and_then(|p| p.addresses.clone())
                .unwrap_or_default(),
            ttl,
            result,
            at_s_ago,
            pending: pending.then(|| desired.clone()),
            desired,
            degraded,
            primaries: per,
        }
    }
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

fn aged_ms(v: Duration, at: Timestamp, now: Timestamp) -> AgedValue {
    AgedValue {
        value: v.as_secs_f64() * 1e3,
        age_s: secs(now - at),
    }
}

fn aged_n(v: f64, at: Timestamp, now: Timestamp) -> AgedValue {
    AgedValue {
        value: v,
        age_s: secs(now - at),
    }
}

impl ReadingsStatus {
    /// The readings as of `now`.
    pub fn new(r: &Readings, now: Timestamp) -> Self {
        ReadingsStatus {
            response_time_ms: r.response_time.map(|s| aged_ms(s.value, s.at, now)),
            pending: r.pending.map(|s| aged_n(s.value as f64, s.at, now)),
            connections: r.connections.map(|s| aged_n(s.value as f64, s.at, now)),
            hops: r.hops.map(|s| aged_n(f64::from(s.value), s.at, now)),
            rtt_ms: r.rtt.map(|s| aged_ms(s.value, s.at, now)),
            metrics: r
                .metrics
                .iter()
                .map(|(k, s)| (k.clone(), aged_n(s.value, s.at, now)))
                .collect(),
        }
    }
}

fn candidate(v: &MemberView, kind: &str, now: Timestamp) -> CandidateStatus {
    CandidateStatus {
        id: v.id.to_string(),
        kind: kind.to_owned(),
        health: v.health.to_string(),
        reason: v.reason.clone(),
        rank: v.rank,
        shown: v.shown.clone(),
        chosen: v.chosen,
        addresses: v.addresses.clone(),
        members: v.members,
        readings: ReadingsStatus::new(&v.readings, now),
    }
}

fn tier_status(
    policy: String,
    d: Option<&Decision>,
    candidates: Vec<CandidateStatus>,
    now: Timestamp,
) -> TierStatus {
    TierStatus {
        policy,
        chosen: d
            .map(|d| d.chosen.iter().map(|c| c.to_string()).collect())
            .unwrap_or_default(),
        answers: d.map(|d| d.addresses.clone()).unwrap_or_default(),
        why: d.map_or_else(|| "no decision yet".to_owned(), |d| d.why.clone()),
        degraded: d.is_none_or(|d| d.degraded),
        since_s: d.map_or(0.0, |d| secs(now - d.since)),
        candidates,
    }
}

/// A farm node's status.
pub fn farm_status(node: &str, farm: &FarmState, uptime: Duration, now: Timestamp) -> Status {
    let services = farm
        .tier()
        .services()
        .iter()
        .map(|(id, tier)| {
            let candidates = tier
                .views(now)
                .iter()
                .map(|v| candidate(v, "server", now))
                .collect();
            ServiceStatus {
                service: id.to_string(),
                fqdn: None,
                global: None,
                farms: vec![FarmStatus {
                    farm: farm.farm().to_string(),
                    heard_s_ago: Some(0.0),
                    local: tier_status(
                        tier.selector_config().policy.to_string(),
                        tier.decision(),
                        candidates,
                        now,
                    ),
                }],
                published: None,
            }
        })
        .collect();
    Status {
        schema: SCHEMA_VERSION,
        node: node.to_owned(),
        role: "farm".to_owned(),
        uptime_s: secs(uptime),
        services,
        certificates: None,
    }
}

/// What the global node's shell remembers for its status page, beyond the core's state.
#[derive(Clone, Debug, Default)]
pub struct GlobalExtras {
    /// The latest summary of each farm per service, and when it arrived.
    pub summaries: BTreeMap<(ServiceId, FarmId), (Summary, Timestamp)>,
    /// The published name of each service.
    pub fqdns: BTreeMap<ServiceId, String>,
    /// The publisher's last result per service.
    pub published: BTreeMap<ServiceId, PublishStatus>,
}

/// The global node's status.
pub fn global_status(
    node: &str,
    global: &GlobalState,
    extras: &GlobalExtras,
    uptime: Duration,
    now: Timestamp,
) -> Status {
    let services = global
        .tier()
        .services()
        .iter()
        .map(|(id, tier)| {
            let views = tier.views(now);
            let candidates = views
                .iter()
                .map(|v| {
                    let is_farm = extras
                        .summaries
                        .contains_key(&(id.clone(), FarmId(v.id.0.clone())))
                        || v.members.is_some();
                    candidate(v, if is_farm { "farm" } else { "server" }, now)
                })
                .collect();
            let farms = extras
                .summaries
                .iter()
                .filter(|((svc, _), _)| svc == id)
                .map(|((_, farm), (s, at))| FarmStatus {
                    farm: farm.to_string(),
                    heard_s_ago: Some(secs(now - *at)),
                    local: TierStatus {
                        policy: local_policy(&s.why),
                        chosen: s.chosen.iter().map(|c| c.to_string()).collect(),
                        answers: s.addresses.clone(),
                        why: s.why.clone(),
                        degraded: s.degraded,
                        since_s: secs(now - *at),
                        candidates: s
                            .servers
                            .iter()
                            .map(|v| candidate(v, "server", now))
                            .collect(),
                    },
                })
                .collect();
            ServiceStatus {
                service: id.to_string(),
                fqdn: extras.fqdns.get(id).cloned(),
                global: Some(tier_status(
                    tier.selector_config().policy.to_string(),
                    tier.decision(),
                    candidates,
                    now,
                )),
                farms,
                published: extras.published.get(id).cloned(),
            }
        })
        .collect();
    Status {
        schema: SCHEMA_VERSION,
        node: node.to_owned(),
        role: "global".to_owned(),
        uptime_s: secs(uptime),
        services,
        certificates: None,
    }
}

/// The local policy's name as the farm's why states it (`eu1: least loaded (…)`).
fn local_policy(why: &str) -> String {
    why.split_once(": ")
        .and_then(|(_, rest)| rest.split_once(" (").map(|(p, _)| p.to_owned()))
        .unwrap_or_default()
}

/// The status as a terminal table (what `fedlb status URL` prints).
pub fn render_table(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} node \"{}\", up {:.0} s",
        s.role, s.node, s.uptime_s
    );
    for svc in &s.services {
        let _ = writeln!(out);
        let name = svc.fqdn.as_deref().unwrap_or(&svc.service);
        let _ = writeln!(out, "service {} ({name})", svc.service);
        if let Some(g) = &svc.global {
            let _ = writeln!(
                out,
                "  global  {:<28} → {:<24} {}",
                g.policy,
                join_ips(&g.answers),
                if g.degraded { "DEGRADED" } else { "" }
            );
            let _ = writeln!(out, "          why: {}", g.why);
            for c in &g.candidates {
                let _ = writeln!(
                    out,
                    "          {} {:<14} {:<8} {:<16} {}",
                    if c.chosen { "*" } else { " " },
                    c.id,
                    c.health,
                    c.shown,
                    c.reason
                );
            }
        }
        if let Some(p) = &svc.published {
            let _ = writeln!(
                out,
                "  dns     {} ttl {} — {}{}",
                join_ips(&p.addresses),
                p.ttl,
                p.result,
                if p.degraded { "  DEGRADED" } else { "" }
            );
            if let Some(pending) = &p.pending {
                let _ = writeln!(out, "          pending: {}", join_ips(pending));
            }
        }
        for f in &svc.farms {
            let _ = writeln!(
                out,
                "  farm {:<12} {:<22} → {:<24} {}",
                f.farm,
                f.local.policy,
                join_ips(&f.local.answers),
                if f.local.degraded { "DEGRADED" } else { "" }
            );
            let _ = writeln!(out, "          why: {}", f.local.why);
            for c in &f.local.candidates {
                let _ = writeln!(
                    out,
                    "          {} {:<14} {:<8} {:<16} {}",
                    if c.chosen { "*" } else { " " },
                    c.id,
                    c.health,
                    c.shown,
                    c.reason
                );
            }
        }
    }
    out
}

fn join_ips(ips: &[IpAddr]) -> String {
    if ips.is_empty() {
        return "-".to_owned();
    }
    ips.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The status as an HTML page that draws the hierarchy (global → farms → servers) with the
/// chosen path highlighted, and refreshes itself every `refresh_s` seconds.
pub fn render_html(s: &Status, refresh_s: u32) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh_s}">
<title>fedlb — {node}</title>
<style>
body{{font:14px system-ui,sans-serif;margin:1.5em;color:#222}}
h1{{font-size:1.3em}} h2{{font-size:1.1em;margin-top:1.5em}}
.tree ul{{list-style:none;margin:0;padding-left:1.6em;border-left:2px solid #ccc}}
.tree li{{margin:.35em 0}}
.node{{display:inline-block;padding:.25em .6em;border:1px solid #bbb;border-radius:6px;background:#fafafa}}
.chosen>.node{{border:2px solid #1a7f37;background:#e6f4ea;font-weight:600}}
.tree li.chosen>ul{{border-left-color:#1a7f37}}
.tree li:not(.chosen)>ul>li.chosen>.node{{border:2px dashed #7bbf8e;background:#f3faf5;font-weight:400}}
.down .node,.stale .node{{background:#fde8e8;border-color:#d33}}
.why{{color:#555;font-size:.9em;margin-left:.5em}}
.badge{{font-size:.8em;padding:0 .4em;border-radius:4px;background:#eee;margin-left:.4em}}
.degraded{{color:#b00;font-weight:700}}
.legend{{color:#555;font-size:.9em}} .legend .node{{margin:0 .3em}}
.legend .sample-local{{border:2px dashed #7bbf8e;background:#f3faf5}}
</style></head><body>
<h1>fedlb {role} node “{node}”</h1>
<p>up {up:.0} s · refreshes every {refresh_s} s · <a href="/status">JSON</a> · <a href="/metrics">metrics</a></p>
<p class="legend">legend:<span class="chosen"><span class="node">chosen path</span></span>{local_sample}<span class="down"><span class="node">down or stale</span></span></p>
"#,
        node = esc(&s.node),
        role = esc(&s.role),
        up = s.uptime_s,
        local_sample = if s.role == "global" {
            r#"<span class="node sample-local">a farm's own choice, farm not chosen</span>"#
        } else {
            ""
        },
    );
    for svc in &s.services {
        let name = svc.fqdn.as_deref().unwrap_or(&svc.service);
        let _ = write!(
            h,
            r#"<h2>service {} <span class="badge">{}</span></h2>"#,
            esc(&svc.service),
            esc(name)
        );
        if let Some(p) = &svc.published {
            let _ = write!(
                h,
                r#"<p>DNS: <b class="published">{}</b> TTL {} s — {}{}{}</p>"#,
                esc(&join_ips(&p.addresses)),
                p.ttl,
                esc(&p.result),
                p.pending.as_ref().map_or_else(String::new, |a| format!(
                    r#" · pending <b class="pending">{}</b>"#,
                    esc(&join_ips(a))
                )),
                if p.degraded {
                    r#" <span class="degraded">DEGRADED: DNS is behind the decision</span>"#
                } else {
                    ""
                }
            );
        }
        let _ = write!(
            h,
            r#"<div class="tree" data-service="{}">"#,
            esc(&svc.service)
        );
        let farm_local = |f: &FarmStatus, h: &mut String| {
            let _ = write!(h, "<ul>");
            for c in &f.local.candidates {
                server_li(c, h);
            }
            let _ = write!(h, "</ul>");
        };
        match &svc.global {
            Some(g) => {
                let _ = write!(
                    h,
                    r#"<div class="node global">global: {}{}</div><span class="why">{}</span><ul>"#,
                    esc(&g.policy),
                    if g.degraded {
                        r#" <span class="degraded">DEGRADED</span>"#
                    } else {
                        ""
                    },
                    esc(&g.why)
                );
                for c in &g.candidates {
                    let farm = svc.farms.iter().find(|f| f.farm == c.id);
                    let _ = write!(
                        h,
                        r#"<li class="{} {}" data-id="{}"><span class="node">{} {}<span class="badge">{}</span>{}</span><span class="why">{}</span>"#,
                        if c.chosen { "chosen" } else { "" },
                        esc(&c.health),
                        esc(&c.id),
                        esc(&c.kind),
                        esc(&c.id),
                        esc(&c.health),
                        shown_badge(c),
                        esc(&farm.map_or(c.reason.clone(), |f| format!("local: {}", f.local.why)))
                    );
                    if let Some(f) = farm {
                        farm_local(f, &mut h);
                    }
                    let _ = write!(h, "</li>");
                }
                let _ = write!(h, "</ul>");
            }
            None => {
                for f in &svc.farms {
                    let _ = write!(
                        h,
                        r#"<div class="node farm">farm {}: {}{}</div><span class="why">{}</span>"#,
                        esc(&f.farm),
                        esc(&f.local.policy),
                        if f.local.degraded {
                            r#" <span class="degraded">DEGRADED</span>"#
                        } else {
                            ""
                        },
                        esc(&f.local.why)
                    );
                    farm_local(f, &mut h);
                }
            }
        }
        let _ = write!(h, "</div>");
    }
    let _ = writeln!(h, "</body></html>");
    h
}

fn server_li(c: &CandidateStatus, h: &mut String) {
    let _ = write!(
        h,
        r#"<li class="{} {}" data-id="{}"><span class="node">server {} <span class="badge">{}</span>{}</span><span class="why">{}</span></li>"#,
        if c.chosen { "chosen" } else { "" },
        esc(&c.health),
        esc(&c.id),
        esc(&c.id),
        esc(&c.health),
        shown_badge(c),
        esc(&c.reason)
    );
}

/// The policy's view of a candidate as a badge, unless it only repeats the health.
fn shown_badge(c: &CandidateStatus) -> String {
    if c.shown.is_empty() || c.shown == c.health {
        String::new()
    } else {
        format!(r#"<span class="badge">{}</span>"#, esc(&c.shown))
    }
}

/// Whether any service is degraded (fail-static, or DNS behind the decision): for health
/// checks and exit codes.
pub fn any_degraded(s: &Status) -> bool {
    s.services.iter().any(|svc| {
        svc.global.as_ref().is_some_and(|g| g.degraded)
            || svc.farms.iter().any(|f| f.local.degraded)
            || svc.published.as_ref().is_some_and(|p| p.degraded)
    })
}
