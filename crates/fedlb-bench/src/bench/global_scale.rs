//! Benchmark 10: the global node at scale. A load generator holds N real mutual-TLS QUIC
//! farm-node connections (one certificate per farm, issued from the federation's CA for a
//! generated topology of N farms) to one real global node process, ramping them in small
//! batches, and each sends its farm's summary once a second, as a farm node's heartbeat
//! does. It measures the global node's CPU per summary and its RSS per connection from
//! /proc.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use fedlb_core::{Health, MemberKind, Members};
use fedlb_net::{
    Ca, Client, ClientConfig, ClientEndpoint, ConnState, NodeName, NodeTls, PeerIdentity, Role,
    TransportSettings, bind_udp,
};
use fedlb_proto::{Aged, Message, PROTOCOL_VERSION, WireMemberView, WireReadings, WireSummary};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::output::Output;
use crate::procfs::{cpu_time, http_get, metric, rss_kib};
use crate::world::{World, work_dir};

const BLOCK: u8 = 78;

/// Settings.
#[derive(Clone, Debug)]
pub struct Params {
    /// Farm counts to run.
    pub farms: Vec<usize>,
    /// Servers described in each farm's summary.
    pub servers: usize,
    /// Summaries per second per farm.
    pub rate: f64,
    /// Steady-state measurement window.
    pub window: Duration,
    /// Connections opened concurrently while ramping.
    pub batch: usize,
    /// Smoke mode.
    pub smoke: bool,
}

/// Farm `i`'s address: its node listens there, and the generator dials from it (the
/// global node limits handshakes per source address).
fn farm_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        BLOCK,
        1 + (i / 250) as u8,
        1 + (i % 250) as u8,
    ))
}

fn server_ip(farm: usize, s: usize, servers: usize) -> IpAddr {
    let k = farm * servers + s;
    IpAddr::V4(Ipv4Addr::new(
        127,
        BLOCK + 1 + (k / (250 * 250)) as u8,
        ((k / 250) % 250) as u8,
        1 + (k % 250) as u8,
    ))
}

fn topology(n: usize, servers: usize) -> String {
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

[[services.probes]]
kind = "tcp"
"#
    );
    for i in 0..n {
        let ip = farm_ip(i);
        t.push_str(&format!(
            "\n[[farms]]\nname = \"f{i}\"\nlisten = \"{ip}:7401\"\nstatus = \"{ip}:7481\"\ndistance_ms = {}\n",
            1 + i % 200
        ));
        for s in 0..servers {
            t.push_str(&format!(
                "\n[[farms.servers]]\nname = \"f{i}s{s}\"\naddress = \"{}\"\nservices = [\"www\"]\n",
                server_ip(i, s, servers)
            ));
        }
    }
    t
}

fn keep(m: &str) -> bool {
    m == "global node running" || m == "peer refused"
}

/// One generated farm node.
struct Farm {
    client: Client<Message>,
    seq: AtomicU64,
    index: usize,
}

impl Farm {
    /// Its summary, shaped like a farm node's heartbeat: every server described.
    fn summary(&self, servers: usize) -> Message {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let i = self.index;
        let readings = WireReadings {
            pending: Some(Aged {
                value: 10 + (i as u64 * 7919) % 90,
                age: Duration::from_millis(300),
            }),
            response_time: Some(Aged {
                value: Duration::from_millis(2),
                age: Duration::from_millis(300),
            }),
            ..WireReadings::default()
        };
        let views = (0..servers)
            .map(|s| WireMemberView {
                id: format!("f{i}s{s}"),
                kind: MemberKind::Server,
                health: Health::Up,
                reason: "ok".to_owned(),
                rank: Some(s as u32),
                shown: format!("{} pending", 10 + s),
                chosen: s == 0,
                addresses: vec![server_ip(i, s, servers)],
                readings: readings.clone(),
            })
            .collect();
        Message::Summaries(vec![WireSummary {
            farm: format!("f{i}"),
            service: "www".to_owned(),
            epoch: 1,
            seq,
            health: Health::Up,
            policy: "least loaded".to_owned(),
            why: "least loaded: fewest pending requests".to_owned(),
            chosen: vec![format!("f{i}s0")],
            addresses: vec![server_ip(i, 0, servers)],
            weights: vec![1.0],
            members: Members {
                up: servers as u32,
                total: servers as u32,
            },
            capacity: servers as f64,
            readings,
            aggregates: Vec::new(),
            degraded: false,
            servers: views,
        }])
    }
}

/// Runs the benchmark for every farm count.
pub fn run(p: &Params) -> anyhow::Result<Output> {
    crate::bench::ingest::raise_fd_limit();
    let mut out = Output::new(
        "global-scale",
        p.smoke,
        json!({
            "farms": p.farms, "servers_per_farm": p.servers,
            "summaries_per_s_per_farm": p.rate, "window_s": p.window.as_secs_f64(),
            "ramp_batch": p.batch,
            "summary": "one WireSummary per message, every server described (as a farm node's heartbeat)",
            "generator": "one process, tokio 1 worker, one UDP socket and client endpoint per farm (each farm its own certificate and source address)",
        }),
    );
    for &n in &p.farms {
        println!("-- {n} farms");
        if let Err(e) = run_one(p, n, &mut out) {
            out.note(format!("{n} farms: {e:#}"));
        }
    }
    Ok(out)
}

fn run_one(p: &Params, n: usize, out: &mut Output) -> anyhow::Result<()> {
    let dir = work_dir(&format!("global-scale-{n}"))?;
    let topo = dir.join("topology.toml");
    std::fs::write(&topo, topology(n, p.servers))?;
    let certs = dir.join("certs");
    let t_certs = Instant::now();
    let ca = Ca::generate(&format!("bench{BLOCK}"))?;
    ca.write(&certs, true)?;
    ca.issue(&NodeName::new("global")?, Role::Global)?
        .write(&certs, true)?;
    let mut tls = Vec::with_capacity(n);
    for i in 0..n {
        let c = ca.issue(&NodeName::new(format!("f{i}"))?, Role::Farm)?;
        tls.push(NodeTls::from_pem(ca.cert_pem(), c.cert_pem(), c.key_pem())?);
    }
    println!(
        "  {n} farm certificates issued in {:.1} s",
        t_certs.elapsed().as_secs_f64()
    );

    let status = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, BLOCK, 0, 1)), 7480);
    let listen = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, BLOCK, 0, 1)), 7400);
    let mut world = World::with_certs(dir.clone(), topo.clone(), certs.clone())?;
    let (topo_s, certs_s) = (topo.display().to_string(), certs.display().to_string());
    let pid_n = world.spawn_filtered(
        "global",
        &["global", &topo_s, "--node", "global", "--certs", &certs_s],
        None,
        keep,
    )?;
    world
        .logs
        .wait_for(0, Duration::from_secs(120), |l| {
            l.message == "global node running"
        })
        .context("the global node did not start")?;
    anyhow::ensure!(
        crate::world::wait_tcp(status, Duration::from_secs(10)),
        "no status endpoint"
    );
    let pid = pid_n.to_string();
    let rss0 = rss_kib(&pid).unwrap_or(0);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let shutdown = CancellationToken::new();
    let period = Duration::from_secs_f64(1.0 / p.rate);
    let server_id = PeerIdentity::new(Role::Global, NodeName::new("global")?);

    let t_ramp = Instant::now();
    let mut farms: Vec<Arc<Farm>> = Vec::with_capacity(n);
    let mut failed = 0usize;
    for lo in (0..n).step_by(p.batch.max(1)) {
        let hi = (lo + p.batch.max(1)).min(n);
        let batch: Vec<Arc<Farm>> = rt.block_on(async {
            let mut v = Vec::new();
            for (k, t) in tls.iter().enumerate().take(hi).skip(lo) {
                let ep = ClientEndpoint::new(
                    bind_udp(SocketAddr::new(farm_ip(k), 0))?,
                    t,
                    TransportSettings::default(),
                )?;
                let client = Client::start(
                    &ep,
                    ClientConfig::new(listen, server_id.clone(), PROTOCOL_VERSION),
                    shutdown.clone(),
                );
                v.push(Arc::new(Farm {
                    client,
                    seq: AtomicU64::new(0),
                    index: k,
                }));
            }
            anyhow::Ok(v)
        })?;
        let ok = rt.block_on(async {
            let mut ok = Vec::new();
            for f in &batch {
                let mut st = f.client.state();
                ok.push(
                    tokio::time::timeout(
                        Duration::from_secs(10),
                        st.wait_for(|s| matches!(s, ConnState::Connected { .. })),
                    )
                    .await
                    .is_ok_and(|r| r.is_ok()),
                );
            }
            ok
        });
        failed += ok.iter().filter(|x| !**x).count();
        for f in batch {
            let f2 = f.clone();
            let servers = p.servers;
            let phase = period.mul_f64(rand::random::<f64>());
            rt.spawn(async move {
                let mut tick =
                    tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let _ = f2.client.send(&f2.summary(servers));
                }
            });
            farms.push(f);
        }
    }
    let ramp_s = t_ramp.elapsed().as_secs_f64();
    let peers = metric(
        &http_get(status, "/metrics").unwrap_or_default(),
        "fedlb_peers",
    )
    .unwrap_or(f64::NAN);
    println!(
        "  ramp: {} farm connections in {ramp_s:.1} s, {failed} connects timed out, global node reports {peers} peers",
        farms.len()
    );
    std::thread::sleep(Duration::from_secs(if p.smoke { 1 } else { 5 }));

    crate::hook::window("start", pid_n);
    let rss1 = rss_kib(&pid).unwrap_or(0);
    let c0 = cpu_time(&pid).unwrap_or_default();
    let g0 = cpu_time("self").unwrap_or_default();
    let received = || {
        metric(
            &http_get(status, "/metrics").unwrap_or_default(),
            "fedlb_messages_received_total",
        )
        .unwrap_or(f64::NAN)
    };
    let m0 = received();
    let w0 = Instant::now();
    std::thread::sleep(p.window);
    let secs = w0.elapsed().as_secs_f64();
    let m1 = received();
    let c1 = cpu_time(&pid).unwrap_or_default();
    let g1 = cpu_time("self").unwrap_or_default();
    let rss2 = rss_kib(&pid).unwrap_or(0);
    crate::hook::window("stop", pid_n);

    let msgs = m1 - m0;
    let cpu = (c1 - c0).as_secs_f64();
    let conns = farms.len().max(1) as f64;
    let per_conn = (rss1 as f64 - rss0 as f64) / conns;
    println!(
        "  steady: {:.0} summaries/s received; global CPU {:.1} % of a core, {:.1} µs per summary; generator CPU {:.1} %",
        msgs / secs,
        cpu / secs * 100.0,
        cpu / msgs * 1e6,
        (g1 - g0).as_secs_f64() / secs * 100.0
    );
    println!(
        "  global RSS: {rss0} KiB with no farm connected, {rss1} KiB with {} ({per_conn:.1} KiB per farm), {rss2} KiB at the end",
        farms.len()
    );
    out.set(
        &format!("farms={n}"),
        json!({
            "connected": farms.len() - failed,
            "global_peers": peers,
            "connect_timeouts": failed,
            "ramp_s": ramp_s,
            "summaries_per_s": msgs / secs,
            "offered_summaries_per_s": farms.len() as f64 * p.rate,
            "global_cpu_percent_of_core": cpu / secs * 100.0,
            "global_cpu_us_per_summary": cpu / msgs * 1e6,
            "generator_cpu_percent_of_core": (g1 - g0).as_secs_f64() / secs * 100.0,
            "global_rss_kib_idle": rss0,
            "global_rss_kib_connected": rss1,
            "global_rss_kib_end": rss2,
            "global_rss_kib_per_farm": per_conn,
        }),
    );
    shutdown.cancel();
    world.stop_all();
    rt.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}
