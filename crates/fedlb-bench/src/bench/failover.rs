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
//!    the next farm. Then a farm with two farm nodes: SIGKILL one; no answer may change.
//!    Then two global nodes: a backend fails with both up, then with one SIGKILLed; the
//!    survivor's DNS must move as fast.

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

/// One farm-failover world: farm f1 (10 ms; farm nodes `f1_nodes`, or one named f1) with
/// server a1, farm f2 (80 ms) with b1; `summaries` pins the summary heartbeat (`None`: the
/// topology default).
fn farm_world(
    block: u8,
    heartbeat: Duration,
    summaries: Option<Duration>,
    f1_nodes: &[&str],
    name: &str,
) -> anyhow::Result<(World, Dns, IpAddr)> {
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
    if let Some(d) = summaries {
        toml = toml.replacen(
            "\n[global]",
            &format!(
                "summary_heartbeat = {{ interval = \"{}ms\" }}\n\n[global]",
                d.as_millis()
            ),
            1,
        );
    }
    let (a, b) = (ip(127, block, 1, 1), ip(127, block, 2, 1));
    if f1_nodes.is_empty() {
        toml.push_str(&farm(
            "f1",
            sa(ip(127, block, 0, 2), 7401),
            sa(ip(127, block, 0, 2), 7481),
            10,
        ));
    } else {
        let nodes: Vec<String> = f1_nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let at = ip(127, block, 0, 10 + i as u8);
                format!("{{ name = \"{n}\", listen = \"{at}:7401\", status = \"{at}:7481\" }}")
            })
            .collect();
        toml.push_str(&format!(
            "\n[[farms]]\nname = \"f1\"\nnodes = [{}]\ndistance_ms = 10\n",
            nodes.join(", ")
        ));
    }
    toml.push_str(&server("a1", a, None));
    toml.push_str(&farm(
        "f2",
        sa(ip(127, block, 0, 3), 7401),
        sa(ip(127, block, 0, 3), 7481),
        80,
    ));
    toml.push_str(&server("b1", b, None));
    let mut world = World::new(name, &toml)?;
    world.backend("a1", sa(a, 8080), None)?;
    world.backend("b1", sa(b, 8080), None)?;
    world.node("global", "global", None)?;
    if f1_nodes.is_empty() {
        world.node("farm", "f1", None)?;
    } else {
        for n in f1_nodes {
            world.node("farm", n, None)?;
        }
    }
    world.node("farm", "f2", None)?;
    Ok((world, dns, a))
}

/// The global node's CPU over `window` of steady state, in % of a core.
fn global_cpu(world: &World, window: Duration) -> Option<f64> {
    let pid = world.pid("global")?.to_string();
    let t0 = crate::procfs::cpu_time_precise(&pid)?;
    let w0 = std::time::Instant::now();
    std::thread::sleep(window);
    let t1 = crate::procfs::cpu_time_precise(&pid)?;
    Some((t1 - t0).as_secs_f64() / w0.elapsed().as_secs_f64() * 100.0)
}

/// Polls DNS every 10 ms for `window`; counts answers other than `want` and changes of
/// answer (a query that fails is neither).
fn changes_over(poller: &mut Poller, want: IpAddr, window: Duration) -> (usize, usize) {
    let end = std::time::Instant::now() + window;
    let (mut other, mut changes) = (0, 0);
    let mut last: Option<Vec<IpAddr>> = None;
    while std::time::Instant::now() < end {
        if let Ok(a) = poller.query(Duration::from_millis(50)) {
            if a != [want] {
                other += 1;
            }
            if last.as_ref().is_some_and(|l| *l != a) {
                changes += 1;
            }
            last = Some(a);
        }
        std::thread::sleep(super::POLL);
    }
    (other, changes)
}

/// Benchmark 4: the farm node of the answered farm is killed.
///
/// - one-node farm: the answer must move to the next farm; measured with summaries every
///   `heartbeat` (the rule before summaries had their own heartbeat) and with the default
///   summary heartbeat, back to back, with the global node's CPU in steady state for each;
/// - two-node farm: one farm node is killed (and restarted) at a random phase; no answer
///   may change: every answer seen while polling is counted.
pub fn run_farm(p: &Params, heartbeat: Duration) -> anyhow::Result<Output> {
    let block = 74;
    let default_summaries = fedlb_core::summary_interval(heartbeat);
    let mut out = Output::new(
        "farm-failover",
        p.smoke,
        json!({
            "trials": p.trials,
            "heartbeat_ms": heartbeat.as_millis() as u64, "missed": 3,
            "summary_heartbeat_ms": [heartbeat.as_millis() as u64, default_summaries.as_millis() as u64],
            "farms": "f1 (10 ms) and f2 (80 ms), one remote server each; global policy closest; f1 with one farm node, then with two",
            "probe": "http every 200 ms", "dns": "embedded, polled every 10 ms",
        }),
    );
    let cpu_window = Duration::from_secs(if p.smoke { 2 } else { 20 });
    for summaries in [heartbeat, default_summaries] {
        let ms = summaries.as_millis();
        println!("-- one-node farm, summaries every {ms} ms");
        let (mut world, dns, a) = farm_world(
            block,
            heartbeat,
            Some(summaries),
            &[],
            &format!("farm-failover-{ms}ms"),
        )?;
        let mut poller = Poller::new(dns.server(), super::FQDN)?;
        settle(&mut poller, a, Duration::from_secs(60))?;
        let key = format!("one-node/summaries={ms}ms");
        if let Some(cpu) = global_cpu(&world, cpu_window) {
            println!("  {key}: global node CPU in steady state {cpu:.3} % of a core");
            out.set(&format!("{key}/global_cpu_percent"), cpu);
        }
        let trials = fault_trials(
            &mut world,
            &mut poller,
            a,
            p.trials,
            summaries,
            |w| w.kill("f1"),
            |w| w.node("farm", "f1", None).map(|_| ()),
        )?;
        record(&mut out, &key, &trials);
        drop(world);
    }
    out.note(format!(
        "expected detection (one-node farm): the global node's stale rule, 3 missed summary \
         heartbeats after the last summary: between 2 and 3 intervals after the kill (which \
         sends no QUIC close), i.e. {}–{} ms with summaries every {} ms",
        2 * default_summaries.as_millis(),
        3 * default_summaries.as_millis(),
        default_summaries.as_millis()
    ));

    println!("-- two-node farm (f1-a, f1-b), default summaries");
    let (mut world, dns, a) = farm_world(
        block,
        heartbeat,
        None,
        &["f1-a", "f1-b"],
        "farm-failover-two-nodes",
    )?;
    let mut poller = Poller::new(dns.server(), super::FQDN)?;
    settle(&mut poller, a, Duration::from_secs(60))?;
    let window = Duration::from_secs(if p.smoke { 2 } else { 4 });
    let mut rng = rand::rng();
    let (mut other, mut changes) = (0, 0);
    let mut per_trial = Vec::new();
    for (i, victim) in (0..p.trials).map(|i| (i, if i % 2 == 0 { "f1-a" } else { "f1-b" })) {
        settle(&mut poller, a, Duration::from_secs(60))?;
        std::thread::sleep(
            Duration::from_millis(200)
                + default_summaries.mul_f64(rand::Rng::random::<f64>(&mut rng)),
        );
        world.kill(victim)?;
        let (o1, c1) = changes_over(&mut poller, a, window);
        world.node("farm", victim, None)?;
        let (o2, c2) = changes_over(&mut poller, a, window);
        println!(
            "    trial {:>2}: {victim} killed: {o1} other answers, {c1} changes; restarted: {o2} other answers, {c2} changes",
            i + 1
        );
        other += o1 + o2;
        changes += c1 + c2;
        per_trial.push(json!({ "killed": victim, "other_answers": [o1, o2], "changes": [c1, c2] }));
    }
    println!(
        "  two-node/kill-one: {changes} answer changes and {other} other answers in {} trials \
         ({} s polled after each kill and each restart)",
        p.trials,
        window.as_secs()
    );
    out.set(
        "two-node/kill-one",
        json!({ "answer_changes": changes, "other_answers": other, "trials": p.trials,
                "window_s": window.as_secs_f64(), "per_trial": per_trial }),
    );
    drop(world);
    two_globals(p, &mut out, block)?;
    Ok(out)
}

/// Two global nodes, g1 and g2, each with its own embedded server; farm f1 (one farm node)
/// with servers a1 then a2 in failover order, probed every 200 ms. The answered backend
/// is killed (and restarted) with both global nodes up, then again after `kill -9` of g1:
/// g2's DNS must move just as fast alone.
fn two_globals(p: &Params, out: &mut Output, block: u8) -> anyhow::Result<()> {
    println!("-- two global nodes (g1, g2, each with its own embedded server)");
    let probe = Duration::from_millis(200);
    let dns = Dns::Embedded {
        listen: sa(ip(127, block, 0, 1), 15353),
    };
    let own = |host: u8| {
        let at = ip(127, block, 0, host);
        format!(
            "listen = \"{at}:7400\"\nstatus = \"{at}:7480\"\nembedded = {{ listen = \"{at}:15353\", state_dir = \"dns-{host}\" }}\n"
        )
    };
    let one_global =
        format!("[global]\nlisten = \"127.{block}.0.1:7400\"\nstatus = \"127.{block}.0.1:7480\"\n");
    let shared_dns = format!(
        "embedded = {{ listen = \"{}\", state_dir = \"dns\" }}\n",
        dns.server()
    );
    let mut toml = header(
        block,
        Duration::from_secs(1),
        &dns,
        &["a1", "a2"],
        &http_probe(probe, 2, 2),
    );
    anyhow::ensure!(toml.contains(&one_global) && toml.contains(&shared_dns));
    toml = toml
        .replace(
            &one_global,
            &format!(
                "[[global]]\nname = \"g1\"\n{}\n[[global]]\nname = \"g2\"\n{}",
                own(1),
                own(5)
            ),
        )
        .replace(&shared_dns, "");
    toml.push_str(&farm(
        "f1",
        sa(ip(127, block, 0, 2), 7401),
        sa(ip(127, block, 0, 2), 7481),
        10,
    ));
    let (a1, a2) = (ip(127, block, 1, 1), ip(127, block, 1, 2));
    toml.push_str(&server("a1", a1, None));
    toml.push_str(&server("a2", a2, None));
    let mut world = World::new("farm-failover-two-globals", &toml)?;
    world.backend("a1", sa(a1, 8080), None)?;
    world.backend("a2", sa(a2, 8080), None)?;
    world.node("global", "g1", None)?;
    world.node("global", "g2", None)?;
    world.node("farm", "f1", None)?;
    // g2's server is the one watched: it must not care whether g1 lives
    let mut poller = Poller::new(sa(ip(127, block, 0, 5), 15353), super::FQDN)?;
    settle(&mut poller, a1, Duration::from_secs(60))?;
    let mut medians = Vec::new();
    for (key, kill_g1) in [
        ("two-globals/both-up", false),
        ("two-globals/g1-dead", true),
    ] {
        if kill_g1 {
            world.kill("g1")?;
        }
        println!("  {key}: a1 killed and restarted");
        let trials = fault_trials(
            &mut world,
            &mut poller,
            a1,
            p.trials,
            probe,
            |w| w.kill("a1"),
            |w| w.backend("a1", sa(a1, 8080), None).map(|_| ()),
        )?;
        record(out, key, &trials);
        let d: Vec<f64> = trials.iter().map(|t| t.detect_ms).collect();
        medians.push(crate::stats::Stats::of(&d).map_or(f64::NAN, |s| s.median));
    }
    let ratio = medians[1] / medians[0];
    println!("  two-globals: failover with g1 dead / with both up = {ratio:.2}× (median)");
    out.set("two-globals/g1-dead_over_both-up", ratio);
    Ok(())
}
