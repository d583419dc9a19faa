//! Benchmark 5: ingest. A load generator opens N real mutual-TLS QUIC agent connections
//! (one certificate per agent, issued from the federation's CA for a generated topology of
//! N intrusive servers in one farm) to one real farm node process, ramping the connections
//! in small batches, then reports at a steady rate. It measures the farm node's CPU per
//! report and RSS per connection from /proc, and whether decisions stay timely: now and
//! then the answered server reports itself down, and the time until the farm node logs a
//! new local decision is taken.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use fedlb_core::{Health, Readings, Report, Sample, Timestamp};
use fedlb_net::{
    Ca, Client, ClientConfig, ClientEndpoint, ConnState, NodeName, NodeTls, PeerIdentity, Role,
    TransportSettings, bind_udp,
};
use fedlb_proto::{Message, PROTOCOL_VERSION, WireReport};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::output::Output;
use crate::procfs::{cpu_time, http_get, metric, rss_kib};
use crate::stats::show;
use crate::world::{World, work_dir};

const BLOCK: u8 = 75;

/// Settings.
#[derive(Clone, Debug)]
pub struct Params {
    /// Fleet sizes to run.
    pub agents: Vec<usize>,
    /// Reports per second per agent.
    pub rate: f64,
    /// Steady-state measurement window.
    pub window: Duration,
    /// Connections opened concurrently while ramping.
    pub batch: usize,
    /// Give up ramping after this long.
    pub ramp_limit: Duration,
    /// After the steady window, kill the farm node and restart it: every agent reconnects
    /// at once.
    pub restart: bool,
    /// Smoke mode.
    pub smoke: bool,
}

fn server_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        BLOCK,
        1 + (i / 250) as u8,
        1 + (i % 250) as u8,
    ))
}

fn topology(n: usize) -> String {
    let mut t = format!(
        r#"name = "bench{BLOCK}"
heartbeat = {{ interval = "1s", missed = 3 }}

[global]
listen = "127.{BLOCK}.0.1:7400"
status = "127.{BLOCK}.0.1:7480"

[dns]
zone = "bench.test."
ttl = "1s"
embedded = {{ listen = "127.{BLOCK}.0.1:15353", state_dir = "dns" }}

[[services]]
name = "www"
fqdn = "www.bench.test."
port = 8080
local = {{ policy = "least_loaded" }}

[[services.probes]]
kind = "tcp"

[[farms]]
name = "f1"
listen = "127.{BLOCK}.0.2:7401"
status = "127.{BLOCK}.0.2:7481"
distance_ms = 10
"#
    );
    for i in 0..n {
        t.push_str(&format!(
            "\n[[farms.servers]]\nname = \"a{i}\"\naddress = \"{}\"\nservices = [\"www\"]\nmode = \"intrusive\"\nagent = \"a{i}\"\n",
            server_ip(i)
        ));
    }
    t
}

fn keep(m: &str) -> bool {
    m == "local decision" || m == "farm node running" || m == "peer refused"
}

struct Agent {
    client: Client<Message>,
    down: AtomicBool,
    seq: AtomicU64,
    name: String,
    load: u64,
}

impl Agent {
    fn send(&self, start: Instant) {
        let now = Timestamp::from_duration(start.elapsed());
        let down = self.down.load(Ordering::Relaxed);
        let report = Report {
            service: "www".into(),
            server: self.name.as_str().into(),
            epoch: 1,
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            health: if down { Health::Down } else { Health::Up },
            reason: if down { "benchmark: down" } else { "ok" }.to_owned(),
            readings: Readings {
                pending: Some(Sample::new(self.load, now)),
                response_time: Some(Sample::new(Duration::from_millis(2), now)),
                ..Readings::default()
            },
        };
        let msg = Message::Reports(vec![WireReport::from_report(&report, now)]);
        // as an agent does: a health change goes urgent
        let _ = if down {
            self.client.send_urgent(&msg)
        } else {
            self.client.send(&msg)
        };
    }
}

fn farm_metric(status: SocketAddr, name: &str) -> Option<f64> {
    metric(&http_get(status, "/metrics").ok()?, name)
}

/// Raises this process's file-descriptor limit to the hard limit.
pub fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// Runs the benchmark for every fleet size.
pub fn run(p: &Params) -> anyhow::Result<Output> {
    raise_fd_limit();
    let mut out = Output::new(
        "ingest",
        p.smoke,
        json!({
            "agents": p.agents, "reports_per_s_per_agent": p.rate,
            "window_s": p.window.as_secs_f64(), "ramp_batch": p.batch,
            "ramp_limit_s": p.ramp_limit.as_secs_f64(),
            "report": "one WireReport (health, pending, response time) per message, framed on the agent's long-lived routine stream (a health change on its urgent stream)",
            "restart": p.restart,
            "generator": "one process, tokio 1 worker, one UDP socket and client endpoint per agent (each agent its own certificate)",
            "local_policy": "least_loaded (default hysteresis)",
        }),
    );
    for &n in &p.agents {
        println!("-- {n} agents");
        match run_one(p, n, &mut out) {
            Ok(()) => {}
            Err(e) => out.note(format!("{n} agents: {e:#}")),
        }
    }
    Ok(out)
}

fn run_one(p: &Params, n: usize, out: &mut Output) -> anyhow::Result<()> {
    let dir = work_dir(&format!("ingest-{n}"))?;
    let topo = dir.join("topology.toml");
    std::fs::write(&topo, topology(n))?;
    let certs = dir.join("certs");
    let t_certs = Instant::now();
    let ca = Ca::generate(&format!("bench{BLOCK}"))?;
    ca.write(&certs, true)?;
    for (name, role) in [("f1", Role::Farm), ("global", Role::Global)] {
        ca.issue(&NodeName::new(name)?, role)?.write(&certs, true)?;
    }
    let mut tls = Vec::with_capacity(n);
    for i in 0..n {
        let c = ca.issue(&NodeName::new(format!("a{i}"))?, Role::Agent)?;
        tls.push(NodeTls::from_pem(ca.cert_pem(), c.cert_pem(), c.key_pem())?);
    }
    println!(
        "  {n} agent certificates issued in {:.1} s",
        t_certs.elapsed().as_secs_f64()
    );

    let status = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, BLOCK, 0, 2)), 7481);
    let listen = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, BLOCK, 0, 2)), 7401);
    let mut world = World::with_certs(dir.clone(), topo.clone(), certs.clone())?;
    let (topo_s, certs_s) = (topo.display().to_string(), certs.display().to_string());
    let farm_pid = world.spawn_filtered(
        "f1",
        &["farm", &topo_s, "--node", "f1", "--certs", &certs_s],
        None,
        keep,
    )?;
    world
        .logs
        .wait_for(0, Duration::from_secs(60), |l| {
            l.message == "farm node running"
        })
        .context("the farm node did not start")?;
    anyhow::ensure!(
        crate::world::wait_tcp(status, Duration::from_secs(10)),
        "no status endpoint"
    );
    let pid = farm_pid.to_string();
    let rss0 = rss_kib(&pid).unwrap_or(0);
    let cpu0 = cpu_time(&pid).unwrap_or_default();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let shutdown = CancellationToken::new();
    let start = Instant::now();
    let period = Duration::from_secs_f64(1.0 / p.rate);
    let server_id = PeerIdentity::new(Role::Farm, NodeName::new("f1")?);

    // ramp: batches of `batch` connections at once; the next batch when this one is up
    let t_ramp = Instant::now();
    let mut agents: Vec<Arc<Agent>> = Vec::with_capacity(n);
    let mut failed_connects = 0usize;
    let mut ramp_stop = None;
    let mut i = 0usize;
    while i < n {
        if t_ramp.elapsed() > p.ramp_limit {
            ramp_stop = Some(format!(
                "ramp limit {:.0} s reached after {} connections",
                p.ramp_limit.as_secs_f64(),
                agents.len()
            ));
            break;
        }
        let hi = (i + p.batch).min(n);
        let batch: Vec<Arc<Agent>> = rt.block_on(async {
            let mut v = Vec::new();
            for (k, t) in tls.iter().enumerate().take(hi).skip(i) {
                // Each agent from its own server's address, as in a real fleet: the farm
                // node limits handshakes per source address.
                let ep = ClientEndpoint::new(
                    bind_udp(SocketAddr::new(server_ip(k), 0))?,
                    t,
                    TransportSettings::default(),
                )?;
                let client = Client::start(
                    &ep,
                    ClientConfig::new(listen, server_id.clone(), PROTOCOL_VERSION),
                    shutdown.clone(),
                );
                v.push(Arc::new(Agent {
                    client,
                    down: AtomicBool::new(false),
                    seq: AtomicU64::new(0),
                    name: format!("a{k}"),
                    load: 10 + (k as u64 * 7919) % 90,
                }));
            }
            anyhow::Ok(v)
        })?;
        let ok = rt.block_on(async {
            let waits = batch.iter().map(|a| {
                let mut st = a.client.state();
                async move {
                    tokio::time::timeout(
                        Duration::from_secs(10),
                        st.wait_for(|s| matches!(s, ConnState::Connected { .. })),
                    )
                    .await
                    .is_ok_and(|r| r.is_ok())
                }
            });
            futures_join(waits).await
        });
        let bad = ok.iter().filter(|x| !**x).count();
        failed_connects += bad;
        for a in batch {
            // each agent reports every period from a random phase, as a fleet would
            let a2 = a.clone();
            let phase = period.mul_f64(rand::random::<f64>());
            rt.spawn(async move {
                let mut tick =
                    tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    a2.send(start);
                }
            });
            agents.push(a);
        }
        if bad * 2 > hi - i {
            ramp_stop = Some(format!(
                "more than half of a batch failed to connect within 10 s at {} connections",
                agents.len()
            ));
            break;
        }
        i = hi;
    }
    let ramp_s = t_ramp.elapsed().as_secs_f64();
    let cpu_ramp = cpu_time(&pid).unwrap_or_default().saturating_sub(cpu0);
    let connected = farm_metric(status, "fedlb_peers").unwrap_or(f64::NAN);
    println!(
        "  ramp: {} clients in {ramp_s:.1} s ({:.0}/s), {failed_connects} connects timed out, farm reports {connected} peers; farm CPU {:.2} s during the ramp",
        agents.len(),
        agents.len() as f64 / ramp_s,
        cpu_ramp.as_secs_f64()
    );
    if let Some(why) = &ramp_stop {
        out.note(format!("{n} agents: stopped scaling: {why}"));
    }
    std::thread::sleep(Duration::from_secs(if p.smoke { 1 } else { 3 }));

    // steady state
    crate::hook::window("start", farm_pid);
    let rss1 = rss_kib(&pid).unwrap_or(0);
    let c0 = cpu_time(&pid).unwrap_or_default();
    let g0 = cpu_time("self").unwrap_or_default();
    let m0 = farm_metric(status, "fedlb_messages_received_total").unwrap_or(f64::NAN);
    let w0 = Instant::now();
    let mut latencies = Vec::new();
    let mut timeouts = 0;
    let every = Duration::from_secs(if p.smoke { 1 } else { 2 });
    while w0.elapsed() + every <= p.window {
        std::thread::sleep(every);
        // the current answer: the latest local decision's
        let lines = world.logs.since(0);
        let Some(last) = lines.iter().rev().find(|l| l.message == "local decision") else {
            continue;
        };
        let answer = last.field("answer");
        let Some(victim) = agents
            .iter()
            .enumerate()
            .find(|(k, _)| answer == format!("[{}]", server_ip(*k)))
            .map(|(_, a)| a.clone())
        else {
            continue;
        };
        let from = world.logs.len();
        let t0 = Instant::now();
        victim.down.store(true, Ordering::Relaxed);
        victim.send(start);
        match world.logs.wait_for(from, Duration::from_secs(10), |l| {
            l.message == "local decision" && l.field("answer") != answer
        }) {
            Some(l) => latencies.push((l.seen - t0).as_secs_f64() * 1e3),
            None => timeouts += 1,
        }
    }
    let secs = w0.elapsed().as_secs_f64();
    let c1 = cpu_time(&pid).unwrap_or_default();
    let g1 = cpu_time("self").unwrap_or_default();
    let m1 = farm_metric(status, "fedlb_messages_received_total").unwrap_or(f64::NAN);
    let rss2 = rss_kib(&pid).unwrap_or(0);
    crate::hook::window("stop", farm_pid);
    let msgs = m1 - m0;
    let cpu = (c1 - c0).as_secs_f64();
    let per_report_us = cpu / msgs * 1e6;
    let conns = agents.len().max(1) as f64;
    println!(
        "  steady: {:.0} reports/s received; farm CPU {:.1} % of a core, {:.1} µs per report; generator CPU {:.1} %",
        msgs / secs,
        cpu / secs * 100.0,
        per_report_us,
        (g1 - g0).as_secs_f64() / secs * 100.0
    );
    println!(
        "  farm RSS: {} KiB idle, {} KiB with {} connections ({:.1} KiB per connection), {} KiB at the end",
        rss0,
        rss1,
        agents.len(),
        (rss1 as f64 - rss0 as f64) / conns,
        rss2
    );
    let lat = show(
        &format!("{n} agents: answered server down → local decision"),
        &latencies,
        "ms",
    );
    let dropped: u64 = agents.iter().map(|a| a.client.dropped()).sum();
    out.set(
        &format!("agents={n}"),
        json!({
            "connected": agents.len(),
            "farm_peers": connected,
            "connect_timeouts": failed_connects,
            "ramp_s": ramp_s,
            "ramp_connections_per_s": agents.len() as f64 / ramp_s,
            "farm_cpu_s_during_ramp": cpu_ramp.as_secs_f64(),
            "farm_cpu_ms_per_connection_during_ramp": cpu_ramp.as_secs_f64() * 1e3 / conns,
            "stopped_scaling": ramp_stop,
            "reports_per_s": msgs / secs,
            "offered_reports_per_s": agents.len() as f64 * p.rate,
            "farm_cpu_percent_of_core": cpu / secs * 100.0,
            "farm_cpu_us_per_report": per_report_us,
            "generator_cpu_percent_of_core": (g1 - g0).as_secs_f64() / secs * 100.0,
            "farm_rss_kib_idle": rss0,
            "farm_rss_kib_connected": rss1,
            "farm_rss_kib_end": rss2,
            "farm_rss_kib_per_connection": (rss1 as f64 - rss0 as f64) / conns,
            "decision_latency_ms": lat,
            "decision_timeouts": timeouts,
            "client_queue_drops": dropped,
        }),
    );
    if p.restart {
        let storm = restart(p, &mut world, &agents, &topo_s, &certs_s, status)?;
        out.set(&format!("agents={n} restart"), storm);
    }
    shutdown.cancel();
    world.stop_all();
    rt.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}

/// Kills the farm node and starts it again on the same address and credentials; follows
/// every second how many agents are back and how many reports the farm node takes, until
/// all are back (or 120 s).
fn restart(
    p: &Params,
    world: &mut World,
    agents: &[Arc<Agent>],
    topo: &str,
    certs: &str,
    status: SocketAddr,
) -> anyhow::Result<serde_json::Value> {
    let connected = || {
        agents
            .iter()
            .filter(|a| matches!(*a.client.state().borrow(), ConnState::Connected { .. }))
            .count()
    };
    world.kill("f1")?;
    let from = world.logs.len();
    let t0 = Instant::now();
    let pid = world.spawn_filtered(
        "f1",
        &["farm", topo, "--node", "f1", "--certs", certs],
        None,
        keep,
    )?;
    world
        .logs
        .wait_for(from, Duration::from_secs(60), |l| {
            l.message == "farm node running"
        })
        .context("the farm node did not restart")?;
    anyhow::ensure!(
        crate::world::wait_tcp(status, Duration::from_secs(10)),
        "no status endpoint after the restart"
    );
    let started_s = t0.elapsed().as_secs_f64();
    let c0 = cpu_time(&pid.to_string()).unwrap_or_default();
    let mut timeline = Vec::new();
    let mut last = farm_metric(status, "fedlb_messages_received_total").unwrap_or(0.0);
    let mut t_last = Instant::now();
    let mut all_back = None;
    let mut taken = 0.0;
    let mut offered = 0.0;
    let limit = Duration::from_secs(if p.smoke { 30 } else { 120 });
    while t0.elapsed() < limit {
        std::thread::sleep(Duration::from_secs(1));
        // back: connected to the new farm node (an agent's own state says connected
        // until its first packet after the restart meets the stateless reset)
        let peers = farm_metric(status, "fedlb_peers").unwrap_or(0.0);
        let now_back = peers as usize;
        let m = farm_metric(status, "fedlb_messages_received_total").unwrap_or(last);
        let dt = t_last.elapsed().as_secs_f64();
        let rate = (m - last) / dt;
        // what the agents connected at the start of this second offered meanwhile
        let offer = timeline
            .last()
            .map_or(0.0, |(_, back, _): &(f64, usize, f64)| *back as f64)
            * p.rate;
        taken += m - last;
        offered += offer * dt;
        last = m;
        t_last = Instant::now();
        let at = t0.elapsed().as_secs_f64();
        timeline.push((at, now_back, rate));
        println!(
            "    restart +{at:.0} s: {now_back} agents back, {rate:.0} reports/s taken ({} agents see themselves connected)",
            connected()
        );
        if now_back == agents.len() && all_back.is_none() {
            all_back = Some(at);
            if p.smoke {
                break;
            }
        }
        if all_back.is_some_and(|b| at > b + 3.0) {
            break;
        }
    }
    let cpu = cpu_time(&pid.to_string()).unwrap_or_default() - c0;
    println!(
        "  restart: farm node up again after {started_s:.1} s; {} of {} agents back after {}; reports taken {:.0} of {:.0} offered by agents already back ({:.1} %); farm CPU {:.1} s",
        farm_metric(status, "fedlb_peers").unwrap_or(0.0),
        agents.len(),
        all_back.map_or("never (limit)".to_owned(), |s| format!("{s:.1} s")),
        taken,
        offered,
        taken / offered.max(1.0) * 100.0,
        cpu.as_secs_f64()
    );
    Ok(json!({
        "farm_restarted_after_s": started_s,
        "all_back_after_s": all_back,
        "back": farm_metric(status, "fedlb_peers").unwrap_or(0.0),
        "reports_taken_during_storm": taken,
        "reports_offered_by_connected_during_storm": offered,
        "taken_percent": taken / offered.max(1.0) * 100.0,
        "farm_cpu_s_during_storm": cpu.as_secs_f64(),
        "timeline": timeline.iter().map(|(t, b, r)| json!({"t_s": t, "back": b, "reports_per_s": r})).collect::<Vec<_>>(),
    }))
}

async fn futures_join<F: std::future::Future<Output = bool>>(
    futs: impl IntoIterator<Item = F>,
) -> Vec<bool> {
    let handles: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await);
    }
    out
}
