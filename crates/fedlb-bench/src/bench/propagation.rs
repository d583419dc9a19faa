//! Benchmark 3: propagation overhead. From the moment the agent observes a health change
//! (its "health changed" log line) to the moment the DNS server acknowledges the UPDATE
//! (the global node's "update acknowledged" line), through agent → farm node ("local
//! decision") → global node ("global decision") → DNS, from the timestamps in the nodes'
//! JSON logs (one clock: every process runs on this machine).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;

use super::bind::{Bind, write_key};
use super::{Dns, farm, header, http_probe, server, settle};
use crate::dns::Poller;
use crate::logs::Line;
use crate::output::Output;
use crate::stats::show;
use crate::world::World;

const BLOCK: u8 = 73;

/// Which DNS servers to run against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The global node's embedded server.
    Embedded,
    /// BIND 9 updated by RFC 2136.
    Bind,
}

/// Where a benchmark publishes: the embedded server on `127.<block>.0.1:15353`, or a BIND
/// started in `dir` on `127.0.0.1:<15300 + block>` (BIND listens only on addresses of its
/// interfaces) with a fresh TSIG key. The `Bind` guard stops it when dropped.
pub fn dns_target(
    target: Target,
    dir: &std::path::Path,
    block: u8,
) -> anyhow::Result<(Dns, Option<Bind>)> {
    Ok(match target {
        Target::Embedded => (
            Dns::Embedded {
                listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, block, 0, 1)), 15353),
            },
            None,
        ),
        Target::Bind => {
            let addr = SocketAddr::from(([127, 0, 0, 1], 15300 + u16::from(block)));
            let (_, secret) = write_key(dir)?;
            let bind = Bind::start(dir, addr, &secret)?;
            (
                Dns::Rfc2136 {
                    server: addr,
                    key_file: dir.join("tsig.key").display().to_string(),
                },
                Some(bind),
            )
        }
    })
}

/// Runs `trials` fail/recover pairs against each target.
pub fn run(trials: usize, targets: &[Target], smoke: bool) -> anyhow::Result<Output> {
    let block = BLOCK;
    let mut out = Output::new(
        "propagation",
        smoke,
        json!({
            "trials": trials,
            "samples_per_target": 2 * trials,
            "change": "the answered server's backend fails (SIGUSR1: 503) then recovers (SIGUSR2)",
            "topology": "one farm, two intrusive servers (agent each), failover order, no hysteresis",
            "probe": "http every 100 ms, rise 1, fall 1",
            "timestamps": "agent 'health changed' → farm 'local decision' → global 'global decision' → global 'update acknowledged'",
        }),
    );
    let ip = |c: u8, d: u8| IpAddr::V4(Ipv4Addr::new(127, block, c, d));
    for &target in targets {
        let tname = match target {
            Target::Embedded => "embedded",
            Target::Bind => "bind",
        };
        println!("-- DNS: {tname}");
        let dir = crate::world::work_dir(&format!("propagation-{tname}-dns"))?;
        let (dns, _bind) = dns_target(target, &dir, BLOCK)?;
        let mut toml = header(
            block,
            Duration::from_secs(1),
            &dns,
            &["s1", "s2"],
            &http_probe(Duration::from_millis(100), 1, 1),
        );
        toml.push_str(&farm(
            "f1",
            SocketAddr::new(ip(0, 2), 7401),
            SocketAddr::new(ip(0, 2), 7481),
            10,
        ));
        toml.push_str(&server("s1", ip(1, 1), Some("s1-agent")));
        toml.push_str(&server("s2", ip(1, 2), Some("s2-agent")));
        let mut world = World::new(&format!("propagation-{tname}"), &toml)?;
        world.backend("s1", SocketAddr::new(ip(1, 1), 8080), None)?;
        world.backend("s2", SocketAddr::new(ip(1, 2), 8080), None)?;
        world.node("global", "global", None)?;
        world.node("farm", "f1", None)?;
        world.node("agent", "s1-agent", None)?;
        world.node("agent", "s2-agent", None)?;
        let mut poller = Poller::new(dns.server(), super::FQDN)?;
        settle(&mut poller, ip(1, 1), Duration::from_secs(60))?;

        let mut hops: [Vec<f64>; 4] = Default::default();
        let mut dns_visible = Vec::new();
        let mut failed = 0;
        for i in 0..trials * 2 {
            let down = i % 2 == 0;
            let (sig, health, want) = if down {
                (Signal::SIGUSR1, "Down", ip(1, 2))
            } else {
                (Signal::SIGUSR2, "Up", ip(1, 1))
            };
            std::thread::sleep(Duration::from_millis(150 + rand::random::<u64>() % 100));
            let from = world.logs.len();
            world.signal("s1", sig)?;
            let seen = poller.wait(super::POLL, Duration::from_secs(20), |a| a == [want]);
            // the wall-clock moment the poll saw the new answer, comparable with log stamps
            let seen_wall = seen.as_ref().map_or(f64::NAN, |(t, _)| {
                crate::logs::wall_now() - t.elapsed().as_secs_f64()
            });
            let wait = |pred: &dyn Fn(&Line) -> bool| {
                world.logs.wait_for(from, Duration::from_secs(10), pred)
            };
            let agent = wait(&|l| {
                l.source == "s1-agent"
                    && l.message == "health changed"
                    && l.field("health").eq_ignore_ascii_case(health)
            });
            let ack = agent
                .as_ref()
                .and_then(|a| wait(&|l| l.message == "update acknowledged" && l.ts >= a.ts));
            let (Some(agent), Some(ack), Some(_)) = (agent, ack, seen) else {
                failed += 1;
                println!(
                    "    change {:>2} ({health}): incomplete chain in the logs",
                    i + 1
                );
                continue;
            };
            let farm_l =
                wait(&|l| l.source == "f1" && l.message == "local decision" && l.ts >= agent.ts);
            let global_l = wait(&|l| {
                l.source == "global" && l.message == "global decision" && l.ts >= agent.ts
            });
            let (Some(farm_l), Some(global_l)) = (farm_l, global_l) else {
                failed += 1;
                continue;
            };
            let ms = |a: f64, b: f64| (b - a) * 1e3;
            let h = [
                ms(agent.ts, farm_l.ts),
                ms(farm_l.ts, global_l.ts),
                ms(global_l.ts, ack.ts),
                ms(agent.ts, ack.ts),
            ];
            println!(
                "    change {:>2} ({health:>4}): agent→farm {:>6.2}  farm→global {:>6.2}  global→ack {:>6.2}  total {:>6.2} ms",
                i + 1,
                h[0],
                h[1],
                h[2],
                h[3]
            );
            for (v, x) in hops.iter_mut().zip(h) {
                v.push(x);
            }
            dns_visible.push(ms(agent.ts, seen_wall));
        }
        let names = [
            "agent observed → farm local decision",
            "farm decision → global decision",
            "global decision → UPDATE acknowledged",
            "agent observed → UPDATE acknowledged",
        ];
        let mut fig = serde_json::Map::new();
        for (n, v) in names.iter().zip(&hops) {
            fig.insert((*n).to_owned(), show(&format!("{tname}: {n}"), v, "ms"));
        }
        fig.insert(
            "agent observed → answer seen by a 10 ms DNS poll".to_owned(),
            show(
                &format!("{tname}: agent observed → answer seen (10 ms poll)"),
                &dns_visible,
                "ms",
            ),
        );
        fig.insert("incomplete".to_owned(), failed.into());
        out.set(tname, serde_json::Value::Object(fig));
        drop(world);
    }
    Ok(out)
}
