//! Benchmarks 1, 2 and 4: failover as a client sees it. Real processes, real signals, the
//! authoritative server polled every 10 ms.
//!
//! 1. `failover-remote`: three backends in one farm probed remotely by the farm node;
//!    SIGKILL (crash) or SIGSTOP (frozen) the answered backend at a random phase.
//!    Then, in the same run, fedlb and PowerDNS 4.7 LUA records side by side on the same
//!    backends and faults (see `vs_pdns`).
//! 2. `failover-intrusive`: the same with an agent beside each backend (crash detection
//!    on: the agent watches its server's listening socket). Each server and its agent get
//!    a network namespace of their own, so that the agent's socket table holds only its
//!    server's socket, as on a real host.
//! 4. `farm-failover`: SIGKILL the farm node of the answered farm; the answer must move to
//!    the next farm.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;

use super::{Dns, Trial, farm, fault_trials, header, http_probe, server, settle, updates_since};
use crate::dns::Poller;
use crate::netns::Namespaces;
use crate::output::Output;
use crate::stats::show;
use crate::world::World;

/// Settings of the failover benchmarks.
#[derive(Clone, Debug)]
pub struct Params {
    /// Trials per (interval, signal).
    pub trials: usize,
    /// Probe intervals to run.
    pub intervals: Vec<Duration>,
    /// Smoke mode.
    pub smoke: bool,
    /// Also run PowerDNS LUA records side by side (failover-remote only).
    pub pdns: bool,
}

fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn sa(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

const NAMES: [&str; 3] = ["s1", "s2", "s3"];

fn record(out: &mut Output, key: &str, trials: &[Trial]) {
    let d: Vec<f64> = trials.iter().map(|t| t.detect_ms).collect();
    let r: Vec<f64> = trials.iter().map(|t| t.recover_ms).collect();
    let dj = show(&format!("{key}: fault → answer changed"), &d, "ms");
    let rj = show(&format!("{key}: repair → answer back"), &r, "ms");
    out.set(
        key,
        json!({ "detect_ms": dj, "recover_ms": rj, "raw_detect_ms": d, "raw_recover_ms": r }),
    );
}

/// Counts UPDATEs during a quiet window with the answer settled.
fn steady_updates(out: &mut Output, world: &World, key: &str, window: Duration) {
    let from = world.logs.len();
    std::thread::sleep(window);
    let n = updates_since(world, from);
    println!(
        "  {key}: {n} UPDATE(s) in {:.0} s of steady state",
        window.as_secs_f64()
    );
    out.set(
        &format!("{key}/steady_state_updates"),
        json!({ "updates": n, "window_s": window.as_secs_f64() }),
    );
}

/// Benchmark 1 (and 2 when `intrusive`).
pub fn run_servers(p: &Params, intrusive: bool) -> anyhow::Result<Output> {
    let name = if intrusive {
        "failover-intrusive"
    } else {
        "failover-remote"
    };
    let block: u8 = if intrusive { 72 } else { 71 };
    let mut out = Output::new(
        name,
        p.smoke,
        json!({
            "trials": p.trials,
            "probe_intervals_ms": p.intervals.iter().map(|d| d.as_millis() as u64).collect::<Vec<_>>(),
            "probe": "http /health, timeout 80% of interval, rise 2, fall 2",
            "servers": 3, "local_policy": "failover order s1, s2, s3; no hysteresis",
            "dns": "embedded, polled every 10 ms", "ttl_s": 1,
        }),
    );
    // network namespaces for intrusive mode, so that each agent sees only its own server
    let namespaces = if intrusive {
        match Namespaces::create(3, block) {
            Ok(ns) => Some(ns),
            Err(e) => {
                out.note(format!(
                    "no network namespaces ({e:#}); servers share the loopback, so the \
                     agents' listening-socket watch cannot see one server's socket vanish \
                     (the others listen on the same port) and crash detection falls back to \
                     the probes' connection-refused re-probe"
                ));
                None
            }
        }
    } else {
        None
    };
    let addr_of = |i: u8| match &namespaces {
        Some(ns) => IpAddr::V4(ns.inside(i)),
        None => ip(127, block, 1, i),
    };
    let farm_listen = match &namespaces {
        Some(ns) => sa(IpAddr::V4(ns.host_side(1)), 7401),
        None => sa(ip(127, block, 0, 2), 7401),
    };
    for &interval in &p.intervals {
        let label = format!("T={}ms", interval.as_millis());
        println!("-- probe interval {label}");
        let dns = Dns::Embedded {
            listen: sa(ip(127, block, 0, 1), 15353),
        };
        let mut toml = header(
            block,
            Duration::from_secs(1),
            &dns,
            &NAMES,
            &http_probe(interval, 2, 2),
        );
        toml.push_str(&farm("f1", farm_listen, sa(ip(127, block, 0, 2), 7481), 10));
        for (i, n) in NAMES.iter().enumerate() {
            let agent = format!("{n}-agent");
            toml.push_str(&server(
                n,
                addr_of(i as u8 + 1),
                intrusive.then_some(agent.as_str()),
            ));
        }
        let mut world = World::new(&format!("{name}-{}ms", interval.as_millis()), &toml)?;
        let ns_of = |i: usize| {
            namespaces
                .as_ref()
                .map(|ns| ns.name(i as u8 + 1).to_owned())
        };
        for (i, n) in NAMES.iter().enumerate() {
            world.backend(n, sa(addr_of(i as u8 + 1), 8080), ns_of(i).as_deref())?;
            if intrusive {
                world.node("agent", &format!("{n}-agent"), ns_of(i).as_deref())?;
            }
        }
        world.node("global", "global", None)?;
        world.node("farm", "f1", None)?;
        let victim = addr_of(1);
        let mut poller = Poller::new(dns.server(), super::FQDN)?;
        settle(&mut poller, victim, Duration::from_secs(60))?;
        steady_updates(
            &mut out,
            &world,
            &label,
            Duration::from_secs(if p.smoke { 1 } else { 5 }),
        );
        let ns0 = ns_of(0);
        let vaddr = sa(victim, 8080);
        for sig in ["kill", "stop"] {
            println!("  {label} SIG{}:", sig.to_uppercase());
            let from = world.logs.len();
            let trials = if sig == "kill" {
                fault_trials(
                    &mut world,
                    &mut poller,
                    victim,
                    p.trials,
                    interval,
                    |w| w.kill("s1"),
                    |w| w.backend("s1", vaddr, ns0.as_deref()).map(|_| ()),
                )?
            } else {
                fault_trials(
                    &mut world,
                    &mut poller,
                    victim,
                    p.trials,
                    interval,
                    |w| w.signal("s1", Signal::SIGSTOP),
                    |w| w.signal("s1", Signal::SIGCONT),
                )?
            };
            record(
                &mut out,
                &format!("{label}/SIG{}", sig.to_uppercase()),
                &trials,
            );
            let ups = updates_since(&world, from);
            out.set(
                &format!("{label}/SIG{}/updates_per_trial", sig.to_uppercase()),
                ups as f64 / trials.len().max(1) as f64,
            );
        }
        drop(world);
    }
    drop(namespaces);
    if p.pdns && !intrusive {
        super::vs_pdns::run(
            &super::vs_pdns::Params {
                trials: p.trials,
                smoke: p.smoke,
            },
            &mut out,
        )?;
    }
    Ok(out)
}

/// Benchmark 4: the farm node of the answered farm is killed.
pub fn run_farm(p: &Params, heartbeat: Duration) -> anyhow::Result<Output> {
    let block = 74;
    let mut out = Output::new(
        "farm-failover",
        p.smoke,
        json!({
            "trials": p.trials,
            "heartbeat_ms": heartbeat.as_millis() as u64, "missed": 3,
            "farms": "f1 (10 ms) and f2 (80 ms), one remote server each; global policy closest",
            "probe": "http every 200 ms", "dns": "embedded, polled every 10 ms",
        }),
    );
    let dns = Dns::Embedded {
        listen: sa(ip(127, block, 0, 1), 15353),
    };
    let mut toml = header(
        block,
        heartbeat,
        &dns,
        &["a1", "b1"],
        &http_probe(Duration::from_millis(200), 2, 2),
    );
    let (a, b) = (ip(127, block, 1, 1), ip(127, block, 2, 1));
    toml.push_str(&farm(
        "f1",
        sa(ip(127, block, 0, 2), 7401),
        sa(ip(127, block, 0, 2), 7481),
        10,
    ));
    toml.push_str(&server("a1", a, None));
    toml.push_str(&farm(
        "f2",
        sa(ip(127, block, 0, 3), 7401),
        sa(ip(127, block, 0, 3), 7481),
        80,
    ));
    toml.push_str(&server("b1", b, None));
    let mut world = World::new("farm-failover", &toml)?;
    world.backend("a1", sa(a, 8080), None)?;
    world.backend("b1", sa(b, 8080), None)?;
    world.node("global", "global", None)?;
    world.node("farm", "f1", None)?;
    world.node("farm", "f2", None)?;
    let mut poller = Poller::new(dns.server(), super::FQDN)?;
    settle(&mut poller, a, Duration::from_secs(60))?;
    let trials = fault_trials(
        &mut world,
        &mut poller,
        a,
        p.trials,
        heartbeat,
        |w| w.kill("f1"),
        |w| w.node("farm", "f1", None).map(|_| ()),
    )?;
    let key = format!("heartbeat={}ms", heartbeat.as_millis());
    record(&mut out, &key, &trials);
    let hb = heartbeat.as_millis();
    out.note(format!(
        "expected detection: the global node's stale rule, 3 missed heartbeats after the last \
         summary: between {} and {} ms after the kill, which sends no QUIC close",
        2 * hb,
        3 * hb
    ));
    Ok(out)
}
