//! Benchmark 9: the cost of a fault. N remote backends (real demo backends) behind one
//! farm node probing them over HTTP every second (default rise/fall), the global node
//! with the embedded DNS server; three phases of equal length in one run:
//!
//! 1. all up (the baseline);
//! 2. one backend SIGKILLed (its address refuses every connection);
//! 3. the same backend restarted, then SIGSTOPped (connections hang in its backlog).
//!
//! For each phase: CPU of each node process (from /proc/PID/stat, % of one core), RSS,
//! probes per second and TCP connections per second to the faulty backend, and each
//! figure's ratio to the baseline. A dead server should cost no more than a live one.
//!
//! How the faulty backend's share is counted, since a dead backend cannot count its own
//! connections: probes/s = the farm node's probe runs (`fedlb_probe_seconds_count` on its
//! status endpoint) minus the requests the healthy backends answered (their own
//! `fedlb_backend_requests_total`); connects/s = the machine's `Tcp: ActiveOpens`
//! (/proc/net/snmp) minus the healthy backends' requests (one connection per probe) minus
//! the benchmark's own scrapes. ActiveOpens counts every TCP connection opened in a
//! network namespace, so the benchmark runs itself in a network namespace of its own
//! (`unshare --net`, loopback only) when it can (as root): then the figure counts this
//! benchmark's connections only. Otherwise it is exact only while nothing else on the
//! machine opens connections. `Tcp: AttemptFails` (refused connects) is printed beside it.
//!
//! CPU is the sum of the node's threads' `se.sum_exec_runtime` (nanoseconds) where the
//! kernel exposes it, else /proc/PID/stat's 10 ms ticks.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::Signal;
use serde_json::{Value, json};

use super::{Dns, FQDN, farm, header, server, settle};
use crate::dns::Poller;
use crate::output::Output;
use crate::procfs::{cpu_time, cpu_time_precise, http_get, metric, rss_kib};
use crate::stats::num;
use crate::world::{World, fedlb_bin};

/// Set in the copy of the benchmark that runs in its own network namespace.
const ISOLATED: &str = "FEDLB_BENCH_FAULT_COST_ISOLATED";

const BLOCK: u8 = 79;

/// The goal: a fault costs at most this multiple of the all-up baseline.
pub const GOAL_RATIO: f64 = 1.2;

/// Settings of the benchmark.
#[derive(Clone, Debug)]
pub struct Params {
    /// Backends behind the farm node (at least 2).
    pub servers: usize,
    /// Length of each phase.
    pub phase: Duration,
    /// Smoke mode.
    pub smoke: bool,
    /// Run in a network namespace of its own when possible (exact connect counts).
    pub isolate: bool,
}

fn ip(c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, BLOCK, c, d))
}

/// The machine's TCP counters (this network namespace).
#[derive(Clone, Copy, Debug, Default)]
struct Tcp {
    active_opens: u64,
    attempt_fails: u64,
}

fn tcp_counters() -> anyhow::Result<Tcp> {
    let text = std::fs::read_to_string("/proc/net/snmp").context("reading /proc/net/snmp")?;
    let mut rows = text.lines().filter(|l| l.starts_with("Tcp:"));
    let names: Vec<&str> = rows
        .next()
        .context("no Tcp: header in /proc/net/snmp")?
        .split_whitespace()
        .collect();
    let values: Vec<&str> = rows
        .next()
        .context("no Tcp: values in /proc/net/snmp")?
        .split_whitespace()
        .collect();
    let get = |name: &str| -> anyhow::Result<u64> {
        let i = names
            .iter()
            .position(|n| *n == name)
            .with_context(|| format!("no {name} in /proc/net/snmp"))?;
        values
            .get(i)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("bad {name} value in /proc/net/snmp"))
    };
    Ok(Tcp {
        active_opens: get("ActiveOpens")?,
        attempt_fails: get("AttemptFails")?,
    })
}

/// What one snapshot read.
struct Snap {
    at: Instant,
    tcp: Tcp,
    /// CPU time per node process: 10 ms ticks, and nanoseconds where available.
    cpu: Vec<(Duration, Option<Duration>)>,
    /// Probe runs of the farm node so far.
    probes: f64,
    /// Requests answered so far per healthy backend (name → count).
    answered: Vec<(String, f64)>,
    /// TCP connections this snapshot opened itself.
    own_connects: u64,
}

struct Bench {
    world: World,
    nodes: Vec<(String, String)>,
    farm_status: SocketAddr,
    backends: Vec<(String, SocketAddr)>,
}

impl Bench {
    /// Reads every counter; `healthy` names the backends that can be asked.
    fn snap(&self, healthy: &[&str]) -> anyhow::Result<Snap> {
        // the TCP counters first: the scrapes below are counted in the next window and
        // subtracted there (own_connects)
        let tcp = tcp_counters()?;
        let at = Instant::now();
        let mut cpu = Vec::new();
        for (name, pid) in &self.nodes {
            cpu.push((
                cpu_time(pid).with_context(|| format!("cpu time of {name}"))?,
                cpu_time_precise(pid),
            ));
        }
        let mut own = 1;
        let m = http_get(self.farm_status, "/metrics").context("farm node metrics")?;
        let probes = metric(&m, "fedlb_probe_seconds_count")
            .context("no fedlb_probe_seconds_count in the farm node's metrics")?;
        let mut answered = Vec::new();
        for (name, addr) in &self.backends {
            if !healthy.contains(&name.as_str()) {
                continue;
            }
            own += 1;
            let m = http_get(*addr, "/metrics").with_context(|| format!("metrics of {name}"))?;
            let n = metric(&m, "fedlb_backend_requests_total")
                .with_context(|| format!("no request count from {name}"))?;
            answered.push((name.clone(), n));
        }
        Ok(Snap {
            at,
            tcp,
            cpu,
            probes,
            answered,
            own_connects: own,
        })
    }
}

/// One phase's figures.
#[derive(Clone, Debug)]
struct Phase {
    seconds: f64,
    cpu_percent: Vec<f64>,
    rss_mib: Vec<f64>,
    probes_per_s: f64,
    victim_probes_per_s: f64,
    connects_per_s: f64,
    victim_connects_per_s: f64,
    refused_per_s: f64,
}

fn measure(b: &Bench, healthy: &[&str], window: Duration) -> anyhow::Result<Phase> {
    let s0 = b.snap(healthy)?;
    std::thread::sleep(window);
    let s1 = b.snap(healthy)?;
    let secs = (s1.at - s0.at).as_secs_f64();
    let others: f64 = s1
        .answered
        .iter()
        .zip(&s0.answered)
        .map(|((_, a1), (_, a0))| a1 - a0)
        .sum();
    let probes = s1.probes - s0.probes;
    let connects = (s1.tcp.active_opens - s0.tcp.active_opens) as f64 - s0.own_connects as f64;
    let mut rss = Vec::new();
    for (_, pid) in &b.nodes {
        rss.push(rss_kib(pid).unwrap_or(0) as f64 / 1024.0);
    }
    Ok(Phase {
        seconds: secs,
        cpu_percent: s1
            .cpu
            .iter()
            .zip(&s0.cpu)
            .map(|((t1, p1), (t0, p0))| {
                let used = match (p1, p0) {
                    (Some(p1), Some(p0)) => p1.saturating_sub(*p0),
                    _ => t1.saturating_sub(*t0),
                };
                used.as_secs_f64() / secs * 100.0
            })
            .collect(),
        rss_mib: rss,
        probes_per_s: probes / secs,
        victim_probes_per_s: (probes - others) / secs,
        connects_per_s: connects / secs,
        victim_connects_per_s: (connects - others) / secs,
        refused_per_s: (s1.tcp.attempt_fails - s0.tcp.attempt_fails) as f64 / secs,
    })
}

fn ratio(x: f64, base: f64) -> f64 {
    if base > 0.0 { x / base } else { f64::NAN }
}

fn show_phase(out: &mut Output, key: &str, p: &Phase, base: &Phase, nodes: &[(String, String)]) {
    let mut cpu = serde_json::Map::new();
    let mut line = String::new();
    for (i, (name, _)) in nodes.iter().enumerate() {
        let r = ratio(p.cpu_percent[i], base.cpu_percent[i]);
        line.push_str(&format!(
            "{name} CPU {} % of a core (×{}), RSS {} MiB; ",
            num(p.cpu_percent[i]),
            num(r),
            num(p.rss_mib[i])
        ));
        cpu.insert(
            name.clone(),
            json!({ "cpu_percent_of_core": p.cpu_percent[i], "cpu_ratio_to_baseline": r, "rss_mib": p.rss_mib[i] }),
        );
    }
    let vp = ratio(p.victim_probes_per_s, base.victim_probes_per_s);
    let vc = ratio(p.victim_connects_per_s, base.victim_connects_per_s);
    println!("  {key:<9} {line}");
    println!(
        "  {:<9} to the faulty backend: {} probes/s (×{}), {} TCP connects/s (×{}); all probes {}/s, all connects {}/s, refused connects {}/s",
        "",
        num(p.victim_probes_per_s),
        num(vp),
        num(p.victim_connects_per_s),
        num(vc),
        num(p.probes_per_s),
        num(p.connects_per_s),
        num(p.refused_per_s),
    );
    out.set(
        key,
        json!({
            "seconds": p.seconds,
            "nodes": Value::Object(cpu),
            "probes_per_s": p.probes_per_s,
            "faulty_backend_probes_per_s": p.victim_probes_per_s,
            "faulty_backend_probes_ratio_to_baseline": vp,
            "connects_per_s": p.connects_per_s,
            "faulty_backend_connects_per_s": p.victim_connects_per_s,
            "faulty_backend_connects_ratio_to_baseline": vc,
            "refused_connects_per_s": p.refused_per_s,
        }),
    );
}

/// The worst ratio to the baseline of a phase: CPU of each node, probes/s and connects/s
/// to the faulty backend.
fn worst(p: &Phase, base: &Phase) -> f64 {
    let mut w = ratio(p.victim_probes_per_s, base.victim_probes_per_s)
        .max(ratio(p.victim_connects_per_s, base.victim_connects_per_s));
    for (c, b) in p.cpu_percent.iter().zip(&base.cpu_percent) {
        w = w.max(ratio(*c, *b));
    }
    w
}

/// The topology: `n` servers in one farm, HTTP probe every second with the default
/// timeout, rise and fall.
fn topology(n: usize) -> (String, Dns) {
    let dns = Dns::Embedded {
        listen: SocketAddr::new(ip(0, 1), 15353),
    };
    let names: Vec<String> = (1..=n).map(|i| format!("s{i}")).collect();
    let order: Vec<&str> = names.iter().map(String::as_str).collect();
    let probe = "[[services.probes]]\nkind = \"http\"\npath = \"/health\"\ninterval = \"1s\"\n";
    let mut toml = header(BLOCK, Duration::from_secs(1), &dns, &order, probe);
    toml.push_str(&farm(
        "f1",
        SocketAddr::new(ip(0, 2), 7401),
        SocketAddr::new(ip(0, 2), 7481),
        10,
    ));
    for (i, name) in names.iter().enumerate() {
        toml.push_str(&server(name, ip(1, i as u8 + 1), None));
    }
    (toml, dns)
}

/// Runs this benchmark again in a network namespace of its own with only a loopback
/// interface. `Ok(false)`: not possible here (not root, no `unshare`), run in place.
fn run_isolated() -> anyhow::Result<bool> {
    let can = std::process::Command::new("unshare")
        .args(["--net", "true"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !can {
        return Ok(false);
    }
    let me = std::env::current_exe()?;
    let status = std::process::Command::new("unshare")
        .args([
            "--net",
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" \"$@\"",
        ])
        .arg(me)
        .args(std::env::args_os().skip(1))
        .env(ISOLATED, "1")
        .env("FEDLB_BIN", fedlb_bin()?)
        .status()
        .context("running the benchmark under unshare --net")?;
    anyhow::ensure!(
        status.success(),
        "fault-cost (in its own network namespace) failed: {status}"
    );
    Ok(true)
}

/// Runs the benchmark (`None`: a copy in its own network namespace ran it and wrote the
/// result).
pub fn run(p: &Params) -> anyhow::Result<Option<Output>> {
    let isolated = std::env::var_os(ISOLATED).is_some();
    if p.isolate && !isolated && run_isolated()? {
        return Ok(None);
    }
    run_here(p, isolated).map(Some)
}

fn run_here(p: &Params, isolated: bool) -> anyhow::Result<Output> {
    anyhow::ensure!(
        (2..=200).contains(&p.servers),
        "--servers {}: between 2 and 200",
        p.servers
    );
    let mut out = Output::new(
        "fault-cost",
        p.smoke,
        json!({
            "servers": p.servers,
            "phase_s": p.phase.as_secs_f64(),
            "probe": "http /health every 1 s, default timeout (800 ms), rise 2, fall 2",
            "phases": "all up (baseline); s1 SIGKILLed; s1 restarted, then SIGSTOPped",
            "dns": "embedded, on the global node",
            "goal": format!("every ratio to the baseline ≤ {GOAL_RATIO}"),
            "own_network_namespace": isolated,
        }),
    );
    if isolated {
        out.note(
            "ran in a network namespace of its own (loopback only): connects/s from its \
             Tcp: ActiveOpens count this benchmark's connections only",
        );
    } else {
        out.note(
            "connects/s come from this network namespace's Tcp: ActiveOpens (/proc/net/snmp), \
             less the healthy backends' requests and the benchmark's own scrapes: exact only \
             while nothing else on the machine opens TCP connections (run as root to isolate)",
        );
    }
    out.note(
        "CPU: the node threads' se.sum_exec_runtime (ns) where the kernel has it, else \
         /proc/<pid>/stat ticks (10 ms: ±0.03 % of a core over 30 s)",
    );
    let (toml, dns) = topology(p.servers);
    let mut world = World::new("fault-cost", &toml)?;
    let mut backends = Vec::new();
    for i in 1..=p.servers {
        let name = format!("s{i}");
        let addr = SocketAddr::new(ip(1, i as u8), 8080);
        world.backend(&name, addr, None)?;
        backends.push((name, addr));
    }
    let global = world.node("global", "global", None)?.to_string();
    let farm_pid = world.node("farm", "f1", None)?.to_string();
    let victim = backends[0].1;
    let mut poller = Poller::new(dns.server(), FQDN)?;
    settle(&mut poller, victim.ip(), Duration::from_secs(60))?;
    // let the first probes' and connections' start-up pass
    std::thread::sleep(Duration::from_secs(if p.smoke { 1 } else { 5 }));
    let mut bench = Bench {
        world,
        nodes: vec![("global".to_owned(), global), ("farm".to_owned(), farm_pid)],
        farm_status: SocketAddr::new(ip(0, 2), 7481),
        backends,
    };
    let all: Vec<String> = bench.backends.iter().map(|(n, _)| n.clone()).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let others = &all[1..];

    println!("-- all {} backends up ({} s)", p.servers, p.phase.as_secs());
    let base = measure(&bench, &all[1..], p.phase)?;
    show_phase(&mut out, "all_up", &base, &base, &bench.nodes);

    println!("-- s1 SIGKILLed");
    bench.world.kill("s1")?;
    let killed = measure(&bench, others, p.phase)?;
    show_phase(&mut out, "killed", &killed, &base, &bench.nodes);

    bench.world.backend("s1", victim, None)?;
    settle(&mut poller, victim.ip(), Duration::from_secs(60))?;
    std::thread::sleep(Duration::from_secs(if p.smoke { 1 } else { 3 }));

    println!("-- s1 SIGSTOPped");
    bench.world.signal("s1", Signal::SIGSTOP)?;
    let stopped = measure(&bench, others, p.phase);
    bench.world.signal("s1", Signal::SIGCONT)?;
    let stopped = stopped?;
    show_phase(&mut out, "stopped", &stopped, &base, &bench.nodes);

    let wk = worst(&killed, &base);
    let ws = worst(&stopped, &base);
    println!(
        "  worst ratio to the all-up baseline: killed ×{}, stopped ×{} (goal ≤ {GOAL_RATIO}: {})",
        num(wk),
        num(ws),
        if wk <= GOAL_RATIO && ws <= GOAL_RATIO {
            "met"
        } else {
            "NOT met"
        }
    );
    out.set("worst_ratio_killed", wk);
    out.set("worst_ratio_stopped", ws);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The benchmark's count of connections to a dead server rests on the kernel's
    /// counters: refused connects to a closed loopback port must show up in both
    /// `ActiveOpens` and `AttemptFails`.
    #[test]
    fn fault_cost_counts_refused_connects_to_a_dead_address() {
        // a port that was just free: bind, note it, close
        let addr = std::net::TcpListener::bind("127.79.250.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let before = tcp_counters().unwrap();
        let n = 25;
        for _ in 0..n {
            let e = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1));
            assert!(e.is_err(), "nothing listens on {addr}");
        }
        let after = tcp_counters().unwrap();
        // other tests may open connections meanwhile: at least ours are counted
        assert!(after.active_opens - before.active_opens >= n);
        assert!(after.attempt_fails - before.attempt_fails >= n);
    }
}
