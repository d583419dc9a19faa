//! Benchmark 8: DNS answer cost. Queries per second the authoritative server sustains for
//! a fedlb-published name, measured with `dnsperf` (Debian package `dnsperf`), for the
//! embedded server and for BIND, next to the UPDATE rate fedlb generates meanwhile.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use super::propagation::{Target, dns_target};
use super::{farm, header, http_probe, server, settle, updates_since};
use crate::dns::Poller;
use crate::output::Output;
use crate::procfs::cpu_time;
use crate::stats::show;
use crate::world::{World, have, work_dir};

const BLOCK: u8 = 78;

struct Perf {
    qps: f64,
    lost: f64,
    latency_ms: f64,
}

fn dnsperf(server: SocketAddr, file: &std::path::Path, secs: u64) -> anyhow::Result<Perf> {
    let out = Command::new("dnsperf")
        .args([
            "-s",
            &server.ip().to_string(),
            "-p",
            &server.port().to_string(),
        ])
        .arg("-d")
        .arg(file)
        .args(["-l", &secs.to_string(), "-c", "4", "-q", "100"])
        .output()
        .context("running dnsperf")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
    };
    let Some(qps) = field("Queries per second:") else {
        bail!(
            "dnsperf printed no rate: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    };
    Ok(Perf {
        qps,
        lost: field("Queries lost:").unwrap_or(f64::NAN),
        latency_ms: field("Average Latency (s):").unwrap_or(f64::NAN) * 1e3,
    })
}

/// Runs `trials` dnsperf runs of `secs` seconds against each target.
pub fn run(trials: usize, secs: u64, targets: &[Target], smoke: bool) -> anyhow::Result<Output> {
    if !have("dnsperf") {
        bail!("dnsperf not found: apt-get install -y dnsperf (scripts/bench/dns-qps.sh does)");
    }
    let mut out = Output::new(
        "dns-qps",
        smoke,
        json!({
            "trials": trials, "seconds_per_trial": secs,
            "dnsperf": "-c 4 -q 100 (4 client sockets, 100 queries in flight), one name, type A",
            "note": "dnsperf, the DNS server and the fedlb nodes share the 2 cores",
        }),
    );
    let ip = |c: u8, d: u8| IpAddr::V4(Ipv4Addr::new(127, BLOCK, c, d));
    for &target in targets {
        let tname = match target {
            Target::Embedded => "embedded",
            Target::Bind => "bind",
        };
        println!("-- DNS: {tname}");
        let dir = work_dir(&format!("dns-qps-{tname}-dns"))?;
        let (dns, bind) = dns_target(target, &dir, BLOCK)?;
        let mut toml = header(
            BLOCK,
            Duration::from_secs(1),
            &dns,
            &["s1"],
            &http_probe(Duration::from_secs(1), 2, 2),
        );
        toml.push_str(&farm(
            "f1",
            SocketAddr::new(ip(0, 2), 7401),
            SocketAddr::new(ip(0, 2), 7481),
            10,
        ));
        toml.push_str(&server("s1", ip(1, 1), None));
        let mut world = World::new(&format!("dns-qps-{tname}"), &toml)?;
        world.backend("s1", SocketAddr::new(ip(1, 1), 8080), None)?;
        let gpid = world.node("global", "global", None)?;
        world.node("farm", "f1", None)?;
        let mut poller = Poller::new(dns.server(), super::FQDN)?;
        settle(&mut poller, ip(1, 1), Duration::from_secs(60))?;
        let qfile = world.path("queries.txt");
        std::fs::write(&qfile, "www.bench.test A\n")?;
        let server_pid = bind.as_ref().map_or(gpid, |b| b.pid()).to_string();
        let (mut qps, mut lat, mut cpu) = (Vec::new(), Vec::new(), Vec::new());
        let from = world.logs.len();
        let t0 = Instant::now();
        for i in 0..trials {
            let c0 = cpu_time(&server_pid).unwrap_or_default();
            let t = Instant::now();
            let p = dnsperf(dns.server(), &qfile, secs)?;
            let c1 = cpu_time(&server_pid).unwrap_or_default();
            let used = (c1 - c0).as_secs_f64() / t.elapsed().as_secs_f64() * 100.0;
            println!(
                "    run {}: {:.0} queries/s, {:.3} ms mean latency, {} lost; server CPU {used:.0} % of a core",
                i + 1,
                p.qps,
                p.latency_ms,
                p.lost
            );
            qps.push(p.qps);
            lat.push(p.latency_ms);
            cpu.push(used);
        }
        let window = t0.elapsed().as_secs_f64();
        let updates = updates_since(&world, from);
        println!(
            "  fedlb meanwhile sent {updates} UPDATE(s) in {window:.0} s ({:.3}/s) with the answer steady",
            updates as f64 / window
        );
        out.set(
            tname,
            json!({
                "queries_per_s": show(&format!("{tname}: queries/s"), &qps, "q/s"),
                "mean_latency_ms": show(&format!("{tname}: mean latency"), &lat, "ms"),
                "server_cpu_percent": show(&format!("{tname}: server CPU"), &cpu, "% core"),
                "fedlb_updates": updates,
                "fedlb_updates_per_s": updates as f64 / window,
                "window_s": window,
            }),
        );
        if target == Target::Embedded {
            out.note("embedded: the server process is the global node (its CPU includes the node's own work, which is idle here)");
        }
        drop(world);
        drop(bind);
    }
    out.note("fedlb's UPDATE rate is one UPDATE per answer change (benchmarks 1–4 count them per fault); in steady state it should be zero");
    Ok(out)
}
