//! Benchmark 8b: the embedded server's answer cost with regions. Two embedded servers run in
//! this process side by side: one with no region (today's single answer), one with three
//! regional views and 40 prefixes (nested ones among them). `dnsperf` queries each in turn,
//! plain (classified by source address 127.78.10.1) and with an EDNS Client Subnet option
//! (`-E 8:<hex>`, a subnet of another region, echoed with its scope). The result is the
//! median queries per second and server CPU per answer of each, and their ratios; the goal is
//! a per-answer cost with regions within 1.3× of none.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fedlb_core::{ClientMap, RegionClients};
use fedlb_dns::{
    DesiredZone, EmbeddedConfig, EmbeddedServer, EmbeddedView, RecordSet, Rfc2136Config,
    Rfc2136Publisher, TsigAlgorithm, TsigKey,
};
use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{RData, RecordType};
use serde_json::json;

use super::{FQDN, ZONE};
use crate::output::Output;
use crate::procfs::cpu_time_precise;
use crate::stats::{Stats, show};
use crate::world::{have, work_dir};

const REGIONS: [&str; 3] = ["eu", "us", "ap"];
/// dnsperf's source address: in eu's 127.78.10.0/24.
const SOURCE: &str = "127.78.10.1";
/// The ECS option sent: 10.17.5.0/24, in us's 10.17.0.0/16 (FAMILY 1, SOURCE 24, SCOPE 0).
const ECS_HEX: &str = "000118000a1105";

fn key(name: &str, byte: u8) -> TsigKey {
    TsigKey::new(name, TsigAlgorithm::HmacSha256, vec![byte; 32]).expect("test key")
}

/// 40 prefixes: per region its source /24 and twelve /16s of 10/8, plus a /24 of each
/// region nested in another's /16.
fn clients() -> anyhow::Result<ClientMap> {
    let mut regions = Vec::new();
    for (r, name) in REGIONS.iter().enumerate() {
        let mut prefixes = vec![format!("127.78.{}.0/24", 10 + 10 * r)];
        for j in 0..12 {
            prefixes.push(format!("10.{}.0.0/16", r * 16 + j + 1));
        }
        let next = (r + 1) % REGIONS.len();
        prefixes.push(format!("10.{}.200.0/24", next * 16 + 1));
        regions.push(RegionClients::prefixes(
            *name,
            prefixes
                .iter()
                .map(|p| p.parse())
                .collect::<Result<_, _>>()?,
        ));
    }
    Ok(ClientMap::new(regions)?)
}

async fn start(dir: &std::path::Path, regions: bool) -> anyhow::Result<EmbeddedServer> {
    let zone = fedlb_dns::zone_name(ZONE)?;
    let mut config = EmbeddedConfig::new(
        zone.clone(),
        "127.0.0.1:0".parse()?,
        dir,
        vec![key("default-key", 1)],
    );
    if regions {
        let views = REGIONS
            .iter()
            .enumerate()
            .map(|(i, r)| EmbeddedView {
                region: (*r).into(),
                keys: vec![key(&format!("{r}-key"), 2 + i as u8)],
                transfer_keys: Vec::new(),
            })
            .collect();
        config = config.with_views(views, Arc::new(clients()?), None);
    }
    let server = EmbeddedServer::start(config).await?;
    let mut writers = vec![("default-key".to_owned(), 1u8, 1u8)];
    if regions {
        for (i, r) in REGIONS.iter().enumerate() {
            writers.push((format!("{r}-key"), 2 + i as u8, 10 + i as u8));
        }
    }
    for (name, byte, last) in writers {
        let mut c = Rfc2136Config::new(zone.clone(), vec![server.local_addr()], key(&name, byte));
        c.sign_reads = true;
        let mut p = Rfc2136Publisher::new(c)?;
        let mut desired = DesiredZone::new(ZONE)?;
        desired.insert(
            RecordSet::new(FQDN, 30)?.with_addrs([IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))]),
        );
        let report = p.publish(&desired).await;
        if let Some(e) = report.errors().next() {
            bail!("publishing with key {name}: {e}");
        }
    }
    Ok(server)
}

/// One query from `SOURCE`, optionally with ECS 10.17.5.0/24: the A record and the echoed
/// scope, to check that the server answers what the benchmark claims to measure.
fn probe(server: SocketAddr, ecs: bool) -> anyhow::Result<(String, Option<u8>)> {
    let sock = UdpSocket::bind((SOURCE, 0))?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut m = Message::query();
    m.add_query(Query::query(fedlb_dns::fqdn(FQDN)?, RecordType::A));
    let mut edns = Edns::new();
    if ecs {
        edns.options_mut()
            .insert(hickory_proto::rr::rdata::opt::EdnsOption::Subnet(
                "10.17.5.0/24".parse()?,
            ));
    }
    m.set_edns(edns);
    sock.send_to(&m.to_vec()?, server)?;
    let mut buf = [0u8; 1500];
    let n = sock
        .recv(&mut buf)
        .context("no answer to the check query")?;
    let answer = Message::from_vec(&buf[..n])?;
    let a = answer
        .answers
        .iter()
        .find_map(|r| match &r.data {
            RData::A(a) => Some(a.to_string()),
            _ => None,
        })
        .unwrap_or_default();
    let scope = answer.edns.as_ref().and_then(|e| {
        match e.option(hickory_proto::rr::rdata::opt::EdnsCode::Subnet)? {
            hickory_proto::rr::rdata::opt::EdnsOption::Subnet(s) => Some(s.scope_prefix()),
            _ => None,
        }
    });
    Ok((a, scope))
}

fn dnsperf(
    server: SocketAddr,
    file: &std::path::Path,
    secs: u64,
    ecs: bool,
) -> anyhow::Result<(f64, f64)> {
    let mut cmd = Command::new("dnsperf");
    cmd.args([
        "-s",
        &server.ip().to_string(),
        "-p",
        &server.port().to_string(),
    ])
    .args(["-a", SOURCE])
    .arg("-d")
    .arg(file)
    .args(["-l", &secs.to_string(), "-c", "4", "-q", "100"]);
    if ecs {
        cmd.args(["-E", &format!("8:{ECS_HEX}")]);
    } else {
        cmd.arg("-e");
    }
    let out = cmd.output().context("running dnsperf")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
    };
    match (field("Queries per second:"), field("Queries completed:")) {
        (Some(qps), Some(done)) => Ok((qps, done)),
        _ => bail!(
            "dnsperf printed no rate: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn median(v: &[f64]) -> f64 {
    Stats::of(v).map_or(f64::NAN, |s| s.median)
}

/// Runs `trials` rounds; each round runs dnsperf for `secs` seconds against both servers,
/// plain and with ECS, alternating so that a noisy moment hits both alike.
pub fn run(trials: usize, secs: u64, smoke: bool) -> anyhow::Result<Output> {
    if !have("dnsperf") {
        bail!("dnsperf not found: apt-get install -y dnsperf (scripts/bench/dns-regions.sh does)");
    }
    let mut out = Output::new(
        "dns-regions",
        smoke,
        json!({
            "trials": trials, "seconds_per_run": secs,
            "dnsperf": format!("-c 4 -q 100 -a {SOURCE}, one name, type A; EDNS0, ECS runs add -E 8:{ECS_HEX} (10.17.5.0/24)"),
            "regions": "3 views (eu, us, ap), 42 prefixes of which 3 nested; default view beside",
            "note": "both servers run in this process; dnsperf and the server share the 2 cores",
        }),
    );
    let rt = tokio::runtime::Runtime::new()?;
    let pid = std::process::id().to_string();
    let none_dir = work_dir("dns-regions-none")?;
    let views_dir = work_dir("dns-regions-views")?;
    let (none, views) = rt.block_on(async {
        Ok::<_, anyhow::Error>((
            start(&none_dir, false).await?,
            start(&views_dir, true).await?,
        ))
    })?;
    let check = [
        ("none", none.local_addr(), false, ("192.0.2.1", None)),
        ("none", none.local_addr(), true, ("192.0.2.1", None)),
        ("regions", views.local_addr(), false, ("192.0.2.10", None)),
        (
            "regions",
            views.local_addr(),
            true,
            ("192.0.2.11", Some(17)),
        ),
    ];
    for (name, addr, ecs, (want, scope)) in check {
        let got = probe(addr, ecs)?;
        if got != (want.to_owned(), scope) {
            bail!("{name} (ecs {ecs}) answered {got:?}, expected ({want}, {scope:?})");
        }
    }
    println!(
        "-- answers checked: no regions 192.0.2.1; regions eu by source 192.0.2.10, us by ECS 192.0.2.11 scope /17"
    );
    let qfile = none_dir.join("queries.txt");
    std::fs::write(&qfile, format!("{FQDN} A\n"))?;

    // (server, ecs) -> per-trial qps and CPU µs per answer
    let cases = [
        ("none", false),
        ("regions", false),
        ("none", true),
        ("regions", true),
    ];
    let mut qps = vec![Vec::new(); cases.len()];
    let mut cost = vec![Vec::new(); cases.len()];
    for t in 0..trials {
        for (i, (name, ecs)) in cases.iter().enumerate() {
            let addr = if *name == "none" {
                none.local_addr()
            } else {
                views.local_addr()
            };
            let c0 = cpu_time_precise(&pid).unwrap_or_default();
            let t0 = Instant::now();
            let (rate, done) = dnsperf(addr, &qfile, secs, *ecs)?;
            let used = cpu_time_precise(&pid)
                .unwrap_or_default()
                .saturating_sub(c0);
            let us = used.as_secs_f64() * 1e6 / done.max(1.0);
            println!(
                "    trial {} {name:<7} {:<5}: {rate:.0} queries/s, {us:.1} µs server CPU per answer ({:.1} s)",
                t + 1,
                if *ecs { "ecs" } else { "plain" },
                t0.elapsed().as_secs_f64()
            );
            qps[i].push(rate);
            cost[i].push(us);
        }
    }
    for (i, (name, ecs)) in cases.iter().enumerate() {
        let label = format!("{name} {}", if *ecs { "ecs" } else { "plain" });
        out.set(
            &format!("{name}_{}", if *ecs { "ecs" } else { "plain" }),
            json!({
                "queries_per_s": show(&format!("{label}: queries/s"), &qps[i], "q/s"),
                "cpu_us_per_answer": show(&format!("{label}: server CPU per answer"), &cost[i], "µs"),
            }),
        );
    }
    let ratio = |a: usize, b: usize, v: &[Vec<f64>]| median(&v[a]) / median(&v[b]);
    let ratios = json!({
        "plain_cpu_per_answer": ratio(1, 0, &cost),
        "ecs_cpu_per_answer": ratio(3, 2, &cost),
        "plain_qps": ratio(1, 0, &qps),
        "ecs_qps": ratio(3, 2, &qps),
    });
    println!(
        "  regions / none, median CPU per answer: plain {:.2}×, ECS {:.2}× (goal ≤ 1.3×); queries/s: plain {:.2}×, ECS {:.2}×",
        ratios["plain_cpu_per_answer"].as_f64().unwrap_or(f64::NAN),
        ratios["ecs_cpu_per_answer"].as_f64().unwrap_or(f64::NAN),
        ratios["plain_qps"].as_f64().unwrap_or(f64::NAN),
        ratios["ecs_qps"].as_f64().unwrap_or(f64::NAN),
    );
    out.set("ratios_regions_over_none", ratios);
    out.note("CPU per answer is this process's CPU time (both servers; the idle one costs nothing) over the answers dnsperf counted");
    rt.block_on(async {
        none.shutdown().await?;
        views.shutdown().await
    })?;
    Ok(out)
}
