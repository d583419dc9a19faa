//! The status document drawn: the HTML page (`GET /`) and the terminal table
//! (`fedlb status URL`). Both read the document only, never the core.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::model::{AnswerStatus, CandidateStatus, ChangeStatus, FarmStatus, LoadSeries, Status};

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
    if !s.overrides.is_empty() {
        let _ = writeln!(out, "operator overrides:");
        for o in &s.overrides {
            let _ = writeln!(out, "  {}  {}", o.text, o.id);
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

/// The node's timeline as a terminal table (what `fedlb status URL --changes` prints),
/// newest first.
pub fn render_changes(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} node \"{}\": the last {} changes of its decisions, newest first (times UTC)",
        s.role,
        s.node,
        s.changes.len()
    );
    if s.changes.is_empty() {
        let _ = writeln!(out, "no decision yet");
        return out;
    }
    let _ = writeln!(
        out,
        "{:<19}  {:>7}  {:<14} {:<48} {:<20} why",
        "when", "ago", "service", "answer", "cause"
    );
    for c in &s.changes {
        let service = match &c.region {
            Some(r) => format!("{}/{r}", c.service),
            None => c.service.clone(),
        };
        let moved = format!(
            "{} → {}",
            c.from.as_ref().map_or_else(|| "—".to_owned(), answer_text),
            answer_text(&c.to)
        );
        let _ = writeln!(
            out,
            "{:<19}  {:>7}  {:<14} {:<48} {:<20} {}",
            utc(c.at),
            ago(c.ago_s),
            service,
            moved,
            cause_text(c),
            c.why
        );
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
.scroll{{overflow-x:auto}}
table.timeline{{border-collapse:collapse;margin:.5em 0;width:100%}} .timeline td,.timeline th{{border-bottom:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}}
.timeline td.when{{white-space:nowrap}} .timeline .ago{{color:#777;font-size:.85em;display:block}}
.timeline td.why{{min-width:14em}}
.cause{{font-size:.85em;padding:0 .4em;border-radius:4px;background:#eee;white-space:nowrap}}
.cause-health{{background:#fde8e8}} .cause-operator{{background:#e8eefd}} .cause-topology{{background:#fdf5e0}}
.cause-readings,.cause-rotation,.cause-farm{{background:#eef6ee}}
svg.load{{vertical-align:middle;margin-left:.5em;background:#f6f8fa;border:1px solid #ddd}}
svg.load polyline{{fill:none;stroke:#0969da;stroke-width:2;vector-effect:non-scaling-stroke}}
.loadnow{{font-size:.8em;color:#555;margin-left:.3em}} .spark{{white-space:nowrap}}
@media (max-width:700px){{body{{margin:.6em}} .tree .why{{display:block;margin-left:0}} svg.load{{width:72px}}
 table.timeline,.timeline tbody,.timeline tr,.timeline td{{display:block}} .timeline tr.head{{display:none}}
 .timeline tr.c{{border-bottom:1px solid #ddd;padding:.4em 0}} .timeline td{{border:none;padding:.1em 0}} .timeline td.why{{min-width:0}}
 .timeline .ago{{display:inline;margin-left:.5em}}}}
</style></head><body>
<h1>fedlb {role} node “{node}”</h1>
<p>up {up:.0} s · refreshes every {refresh_s} s · <a href="/status">JSON</a> · <a href="/metrics">metrics</a></p>
<p class="legend">legend:<span class="chosen"><span class="node">chosen path</span></span>{local_sample}<span class="down"><span class="node">down or stale</span></span> · <a href="\#changes">what changed, when</a></p>
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
        let farm_local = |f: &FarmStatus, through: Option<&str>, h: &mut String| {
            let _ = write!(h, "<ul>");
            for c in &f.local.candidates {
                server_li(c, series(&s.loads, &svc.service, through, &c.id), h);
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
                        r#"<li class="{} {}" data-id="{}"><span class="node">{} {}<span class="badge">{}</span>{}</span>{}<span class="why">{}</span>"#,
                        if c.chosen { "chosen" } else { "" },
                        esc(&c.health),
                        esc(&c.id),
                        esc(&c.kind),
                        esc(&c.id),
                        esc(&c.health),
                        shown_badge(c),
                        spark(series(&s.loads, &svc.service, None, &c.id)),
                        esc(&farm.map_or(c.reason.clone(), |f| format!("local: {}", f.local.why)))
                    );
                    if let Some(f) = farm {
                        farm_local(f, Some(&f.farm), &mut h);
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
                    farm_local(f, None, &mut h);
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
    timeline_html(s, &mut h);
    let _ = writeln!(h, "</body></html>");
    h
}

/// How many changes the page lists (the document keeps more).
const PAGE_CHANGES: usize = 100;

/// The timeline: newest first, when, what moved from what to what, the cause and the why.
fn timeline_html(s: &Status, h: &mut String) {
    let _ = write!(
        h,
        r#"<h2 id="changes">what changed, when</h2><p class="legend">the last {} changes of this node's decisions (newest first; times UTC){}</p>"#,
        s.changes.len().min(PAGE_CHANGES),
        if s.changes.len() > PAGE_CHANGES {
            format!(
                "; {} older ones in <a href=\"/status\">JSON</a>",
                s.changes.len() - PAGE_CHANGES
            )
        } else {
            String::new()
        }
    );
    if s.changes.is_empty() {
        let _ = write!(h, "<p>no decision yet</p>");
        return;
    }
    let _ = write!(
        h,
        r#"<div class="scroll"><table class="timeline"><tr class="head"><th>when</th><th>service</th><th>answer</th><th>cause</th><th>why</th></tr>"#
    );
    for (i, c) in s.changes.iter().take(PAGE_CHANGES).enumerate() {
        let service = match &c.region {
            Some(r) => format!(
                "{} <span class=\"badge\">{} clients</span>",
                esc(&c.service),
                esc(r)
            ),
            None => esc(&c.service),
        };
        let _ = write!(
            h,
            r#"<tr class="c" data-seq="{i}" data-service="{}" data-cause="{}"><td class="when">{}<span class="ago">{} ago</span></td><td>{service}</td><td class="move">{} → <b>{}</b></td><td><span class="cause cause-{}">{}</span></td><td class="why">{}</td></tr>"#,
            esc(&c.service),
            esc(&c.cause),
            esc(&utc(c.at)),
            esc(&ago(c.ago_s)),
            esc(&c.from.as_ref().map_or_else(|| "—".to_owned(), answer_text)),
            esc(&answer_text(&c.to)),
            esc(&c.cause),
            esc(&cause_text(c)),
            esc(&c.why),
        );
    }
    let _ = write!(h, "</table></div>");
}

/// `near (127.0.0.11)`, `far (127.0.0.21) fail-static`, or `nothing`.
fn answer_text(a: &AnswerStatus) -> String {
    if a.chosen.is_empty() {
        return "nothing".to_owned();
    }
    format!(
        "{} ({}){}",
        a.chosen.join(", "),
        join_ips(&a.answers),
        if a.degraded { " fail-static" } else { "" }
    )
}

/// `health: n1`, `operator: eu-2`, `start`.
fn cause_text(c: &ChangeStatus) -> String {
    match &c.subject {
        Some(s) => format!("{}: {s}", c.cause),
        None => c.cause.clone(),
    }
}

/// `12 s`, `4 min`, `2 h`.
fn ago(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.0} h", s / 3600.0)
    }
}

/// Unix seconds as `2026-11-30 14:02:07` (UTC).
pub(crate) fn utc(unix: f64) -> String {
    let secs = unix.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil from days (H. Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The series of a candidate (`through`: the farm whose summary shows the server).
fn series<'a>(
    loads: &'a [LoadSeries],
    service: &str,
    through: Option<&str>,
    id: &str,
) -> Option<&'a LoadSeries> {
    loads
        .iter()
        .find(|l| l.service == service && l.farm.as_deref() == through && l.id == id)
}

/// A small inline chart of a load series over the history's window (no script, no external
/// asset): the polyline of load % against time, the latest value beside it.
fn spark(series: Option<&LoadSeries>) -> String {
    let Some(l) = series.filter(|l| !l.points.is_empty()) else {
        return String::new();
    };
    let window = super::LoadHistory::KEEP as f64 * super::LoadHistory::EVERY.as_secs_f64();
    let peak = l.points.iter().map(|p| p[1]).fold(0.0, f64::max);
    // scaled to the series' own peak (at least 10 %), so that a light load still shows its
    // shape; the label says the scale
    let top = peak.max(10.0);
    let points: Vec<String> = l
        .points
        .iter()
        .map(|[ago, load]| {
            format!(
                "{:.1},{:.1}",
                (window - ago).max(0.0),
                100.0 - load.min(top) / top * 100.0
            )
        })
        .collect();
    let now = l.points.last().map_or(0.0, |p| p[1]);
    let label = format!(
        "load of {} over the last {:.0} min: now {now:.0} %, peak {peak:.0} % (chart 0–{top:.0} %)",
        l.id,
        window / 60.0
    );
    format!(
        r#"<span class="spark"><svg class="load" data-load="{}" width="120" height="24" viewBox="0 0 {window:.0} 100" preserveAspectRatio="none" role="img" aria-label="{label}"><title>{label}</title><polyline points="{}"/></svg><span class="loadnow">{now:.0} %</span></span>"#,
        esc(&l.id),
        points.join(" "),
        label = esc(&label),
    )
}

fn server_li(c: &CandidateStatus, load: Option<&LoadSeries>, h: &mut String) {
    let _ = write!(
        h,
        r#"<li class="{} {}" data-id="{}"><span class="node">server {} <span class="badge">{}</span>{}</span>{}<span class="why">{}</span></li>"#,
        if c.chosen { "chosen" } else { "" },
        esc(&c.health),
        esc(&c.id),
        esc(&c.id),
        esc(&c.health),
        shown_badge(c),
        spark(load),
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
