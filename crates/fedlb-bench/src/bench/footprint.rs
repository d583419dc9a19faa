//! Benchmark 7: agent footprint. One agent running 5 probes at 1/s against a demo backend,
//! reporting to a real farm node; its RSS and CPU from /proc over a minute, for the
//! all-roles `fedlb agent` and then the agent-only `fedlb-agent`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::output::Output;
use crate::procfs::{cpu_time, peak_rss_kib, rss_kib, rss_parts_kib};
use crate::stats::{Stats, show};
use crate::world::World;

const BLOCK: u8 = 77;

fn topology() -> String {
    let ip = |c: u8, d: u8| IpAddr::V4(Ipv4Addr::new(127, BLOCK, c, d));
    format!(
        r#"name = "bench{BLOCK}"
heartbeat = {{ interval = "1s", missed = 3 }}

[global]
listen = "{g}:7400"
status = "{g}:7480"

[dns]
zone = "bench.test."
embedded = {{ listen = "{g}:15353", state_dir = "dns" }}

[[services]]
name = "www"
fqdn = "www.bench.test."
port = 8080

[[services.probes]]
kind = "http"
name = "health"
path = "/health"
interval = "1s"

[[services.probes]]
kind = "http"
name = "root"
path = "/"
interval = "1s"

[[services.probes]]
kind = "tcp"
interval = "1s"

[[services.probes]]
kind = "load"
name = "stub"
source = "nginx_stub_status"
url = "http://server:8080/stub_status"
interval = "1s"

[[services.probes]]
kind = "load"
name = "conns"
source = "proc_net_tcp"
interval = "1s"

[[farms]]
name = "f1"
listen = "{f}:7401"
status = "{f}:7481"
distance_ms = 10

[[farms.servers]]
name = "s1"
address = "{s}"
services = ["www"]
mode = "intrusive"
agent = "s1-agent"
"#,
        g = ip(0, 1),
        f = ip(0, 2),
        s = ip(1, 1),
    )
}

/// What one agent process used over a window.
struct Figures {
    json: serde_json::Value,
    rss_median: f64,
    cpu_percent: f64,
}

/// Samples process `pid`'s RSS every second for `duration` and its CPU over the window.
fn measure(label: &str, pid: u32, duration: Duration) -> anyhow::Result<Figures> {
    let spid = pid.to_string();
    crate::hook::window("start", pid);
    let c0 = cpu_time(&spid).context("agent cpu")?;
    let t0 = Instant::now();
    let mut rss = Vec::new();
    let (mut anon, mut file, mut pss) = (Vec::new(), Vec::new(), Vec::new());
    while t0.elapsed() < duration {
        std::thread::sleep(Duration::from_secs(1));
        if let Some(r) = rss_kib(&spid) {
            rss.push(r as f64 / 1024.0);
        }
        if let Some((a, f, p)) = rss_parts_kib(&spid) {
            anon.push(a as f64 / 1024.0);
            file.push(f as f64 / 1024.0);
            pss.push(p as f64 / 1024.0);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = (cpu_time(&spid).context("agent cpu")? - c0).as_secs_f64();
    crate::hook::window("stop", pid);
    let peak = peak_rss_kib(&spid).unwrap_or(0) as f64 / 1024.0;
    println!("  {label}:");
    let rj = show("agent RSS (sampled every second)", &rss, "MiB");
    let anon_j = show("  of which anonymous (heap, stacks)", &anon, "MiB");
    let file_j = show(
        "  of which file-backed (the binary's code, shared)",
        &file,
        "MiB",
    );
    let pss_j = show("agent PSS (shared pages divided)", &pss, "MiB");
    let cpu_percent = cpu / secs * 100.0;
    println!(
        "  agent CPU: {cpu:.3} s over {secs:.0} s = {cpu_percent:.2} % of a core, {:.2} ms per probe run; peak RSS {peak:.1} MiB",
        cpu * 1e3 / (5.0 * secs)
    );
    let rss_median = Stats::of(&rss).map_or(f64::NAN, |s| s.median);
    Ok(Figures {
        json: json!({
            "rss_mib": rj,
            "rss_peak_mib": peak,
            "rss_anon_mib": anon_j,
            "rss_file_mib": file_j,
            "pss_mib": pss_j,
            "cpu_s": cpu,
            "cpu_percent_of_core": cpu_percent,
            "cpu_ms_per_probe_run": cpu * 1e3 / (5.0 * secs),
        }),
        rss_median,
        cpu_percent,
    })
}

/// Starts agent `s1-agent` with `start`, lets it settle, measures it for `duration`, and
/// stops it.
fn start_and_measure(
    world: &mut World,
    label: &str,
    start: fn(&mut World) -> anyhow::Result<u32>,
    settle: Duration,
    duration: Duration,
) -> anyhow::Result<Figures> {
    let from = world.logs.len();
    let pid = start(world)?;
    world
        .logs
        .wait_for(from, Duration::from_secs(20), |l| {
            l.message == "agent running"
        })
        .with_context(|| format!("the agent ({label}) did not start"))?;
    std::thread::sleep(settle);
    let figures = measure(label, pid, duration)?;
    world.kill("s1-agent")?;
    Ok(figures)
}

/// Runs the benchmark for `duration`: the same agent for `duration` each, first the
/// all-roles `fedlb agent`, then the agent-only `fedlb-agent`, against one farm node.
pub fn run(duration: Duration, smoke: bool) -> anyhow::Result<Output> {
    let mut out = Output::new(
        "agent-footprint",
        smoke,
        json!({
            "duration_s": duration.as_secs_f64(),
            "probes": "http /health, http /, tcp, load nginx_stub_status, load proc_net_tcp; all every 1 s",
            "upstream": "a real farm node (QUIC + mTLS); heartbeat 1 s",
            "binaries": "fedlb agent (every role linked), then fedlb-agent (the agent alone), one after the other",
        }),
    );
    let mut world = World::new("agent-footprint", &topology())?;
    world.backend(
        "s1",
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, BLOCK, 1, 1)), 8080),
        None,
    )?;
    world.node("farm", "f1", None)?;
    let settle = Duration::from_secs(if smoke { 1 } else { 3 });

    let all_roles = start_and_measure(
        &mut world,
        "fedlb agent (every role linked)",
        |w| w.node("agent", "s1-agent", None),
        settle,
        duration,
    )?;
    let alone = start_and_measure(
        &mut world,
        "fedlb-agent (the agent alone)",
        |w| w.agent_only("s1-agent"),
        settle,
        duration,
    )?;

    let rss_ratio = alone.rss_median / all_roles.rss_median;
    let cpu_ratio = alone.cpu_percent / all_roles.cpu_percent;
    println!("  fedlb-agent / fedlb agent: RSS ×{rss_ratio:.2}, CPU ×{cpu_ratio:.2}");
    out.note(
        "CPU from /proc/<pid>/stat has 10 ms resolution: over a minute that is ±0.02 % of a core",
    );
    // the figures of record are the agent-only binary's: what an operator runs on a server
    for (k, v) in alone.json.as_object().into_iter().flatten() {
        out.set(k, v.clone());
    }
    out.set("all_roles_binary", all_roles.json);
    out.set("rss_ratio_alone_to_all_roles", rss_ratio);
    out.set("cpu_ratio_alone_to_all_roles", cpu_ratio);
    Ok(out)
}
