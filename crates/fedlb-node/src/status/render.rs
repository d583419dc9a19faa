//! The status document drawn: the HTML page (`GET /`) and the terminal table
//! (`fedlb status URL`). Both read the document only, never the core.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::model::{CandidateStatus, FarmStatus, Status};

/// The status as a terminal table (what `fedlb status URL` prints).
pub fn render_table(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} node \"{}\", up {:.0} s",
        s.role, s.node, s.uptime_s
    );
    if let Some(p) = &s.peers {
        let _ = writeln!(
            out,
            "global nodes: {} ({})",
            p.global_nodes.join(", "),
            if p.shares_dns {
                "one shared DNS server: the best-informed node writes"
            } else {
                "each with its own DNS server"
            }
        );
        for f in &p.farm_nodes {
            let heard = f.heard_s_ago.map_or_else(
                || "never heard".to_owned(),
                |s| format!("heard {s:.1} s ago"),
            );
            let _ = writeln!(out, "  farm node {:<16} {heard}", f.farm);
        }
        for (service, n) in &p.heard {
            let _ = writeln!(out, "  {service}: hears {n} candidates");
        }
    }
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
            candidate_rows(&mut out, &g.candidates);
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
            if let Some(why) = &p.deferred {
                let _ = writeln!(out, "          {why}");
            }
        }
        for r in &svc.regions {
            let d = &r.decision;
            let _ = writeln!(
                out,
                "  region {:<12} → {:<24} {}",
                r.region,
                join_ips(&d.answers),
                if d.degraded { "DEGRADED" } else { "" }
            );
            let _ = writeln!(out, "          why: {}", d.why);
            if let Some(p) = &r.published {
                let _ = writeln!(
                    out,
                    "          dns {} ttl {} — {}{}",
                    join_ips(&p.addresses),
                    p.ttl,
                    p.result,
                    if p.degraded { "  DEGRADED" } else { "" }
                );
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
            candidate_rows(&mut out, &f.local.candidates);
        }
    }
    out
}

/// One table row per candidate of a decision, the chosen ones starred.
fn candidate_rows(out: &mut String, candidates: &[CandidateStatus]) {
    for c in candidates {
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
table.regions{{border-collapse:collapse;margin:.5em 0}} .regions td,.regions th{{border:1px solid #ddd;padding:.2em .5em;text-align:left}}
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
        if !svc.regions.is_empty() {
            let _ = write!(
                h,
                r#"<table class="regions"><tr><th>clients</th><th>answer</th><th>DNS serves</th><th>why</th></tr>"#
            );
            for r in &svc.regions {
                let d = &r.decision;
                let _ = write!(
                    h,
                    r#"<tr data-region="{}"><td>{}</td><td><b>{}</b> {}{}</td><td>{}</td><td class="why">{}</td></tr>"#,
                    esc(&r.region),
                    esc(&r.region),
                    esc(&d.chosen.join(", ")),
                    esc(&join_ips(&d.answers)),
                    if d.degraded {
                        r#" <span class="degraded">DEGRADED</span>"#
                    } else {
                        ""
                    },
                    r.published.as_ref().map_or_else(
                        || "-".to_owned(),
                        |p| format!(
                            "{} TTL {} s — {}{}",
                            esc(&join_ips(&p.addresses)),
                            p.ttl,
                            esc(&p.result),
                            if p.degraded {
                                r#" <span class="degraded">DEGRADED</span>"#
                            } else {
                                ""
                            }
                        )
                    ),
                    esc(&d.why)
                );
            }
            let _ = write!(
                h,
                r#"<tr data-region=""><td>anyone else</td><td><b>{}</b></td><td></td><td class="why">the tree below</td></tr></table>"#,
                esc(&svc
                    .global
                    .as_ref()
                    .map_or_else(String::new, |g| g.chosen.join(", ")))
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
    if !s.overrides.is_empty() {
        let _ = write!(h, "<h2>Operator overrides</h2><ul class=\"overrides\">");
        for o in &s.overrides {
            let _ = write!(h, "<li><code>{}</code> {}</li>", esc(&o.id), esc(&o.text));
        }
        let _ = write!(h, "</ul>");
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
