//! fedlb-net figures on this machine: one connection's message rate; a farm node's CPU per
//! message with many agent connections; full mTLS handshake latency.
//!
//! `cargo bench -p fedlb-net --bench net`; `FEDLB_BENCH_QUICK=1` for a few-second smoke run.
//! The server runs on its own thread (current-thread tokio runtime) so its CPU time can be
//! read apart from the clients' in `/proc/self/task/<tid>/stat`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fedlb_net::wire::{HELLO_LEN, Hello, encode};
use fedlb_net::{
    Ca, Client, ClientConfig, ClientEndpoint, ConnState, FnAuthoriser, NodeName, NodeTls,
    PeerIdentity, Role, Server, ServerConfig, ServerEvent, TransportSettings, bind_udp,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

const VERSION: u16 = 1;

#[derive(Serialize, Deserialize, Clone)]
struct BenchReport {
    server: String,
    seq: u64,
    services: Vec<(String, u32)>,
    pad: Vec<u8>,
}

/// A report of about 200 encoded bytes, like a status report of a few services.
fn report(server: &str, seq: u64) -> BenchReport {
    let services = (0..4).map(|i| (format!("svc-{i}"), 1000 + i)).collect();
    let mut r = BenchReport {
        server: server.to_owned(),
        seq,
        services,
        pad: Vec::new(),
    };
    let len = encode(&r).unwrap().len();
    r.pad = vec![7; 200usize.saturating_sub(len + 1)];
    r
}

struct ServerThread {
    addr: std::net::SocketAddr,
    tid: String,
    messages: Arc<AtomicU64>,
    connected: Arc<AtomicU64>,
    shutdown: CancellationToken,
    thread: std::thread::JoinHandle<()>,
}

fn start_server(tls: NodeTls) -> ServerThread {
    let messages = Arc::new(AtomicU64::new(0));
    let connected = Arc::new(AtomicU64::new(0));
    let shutdown = CancellationToken::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let (m, c, s) = (messages.clone(), connected.clone(), shutdown.clone());
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let me = std::fs::read_link("/proc/thread-self").unwrap();
            let tid = me.file_name().unwrap().to_string_lossy().into_owned();
            let auth = FnAuthoriser {
                peer: |_: &PeerIdentity| Ok(()),
                message: |p: &PeerIdentity, r: &BenchReport| {
                    if r.server == p.node.as_str() {
                        Ok(())
                    } else {
                        Err("wrong server".to_owned())
                    }
                },
            };
            let mut config = ServerConfig::new(VERSION);
            config.event_capacity = 4096;
            let socket = bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
            let (server, mut events) =
                Server::start::<BenchReport, _>(socket, &tls, config, auth, s).unwrap();
            tx.send((server.local_addr(), tid)).unwrap();
            while let Some(ev) = events.recv().await {
                match ev {
                    ServerEvent::Message { .. } => {
                        m.fetch_add(1, Ordering::Relaxed);
                    }
                    ServerEvent::Connected { .. } => {
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                    ServerEvent::Disconnected { .. } => {
                        c.fetch_sub(1, Ordering::Relaxed);
                    }
                    ServerEvent::Rejected { reason, .. } => eprintln!("rejected: {reason}"),
                }
            }
            server.closed().await;
        });
    });
    let (addr, tid) = rx.recv().unwrap();
    ServerThread {
        addr,
        tid,
        messages,
        connected,
        shutdown,
        thread,
    }
}

impl ServerThread {
    /// CPU time (user + system) the server thread has used.
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{}/stat", self.tid)).unwrap();
        // Fields after the command name: state is field 3, utime 14, stime 15 (1-based).
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
    }
    fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn farm() -> PeerIdentity {
    PeerIdentity::new(Role::Farm, NodeName::new("f1").unwrap())
}

struct Pki {
    ca: Ca,
}

impl Pki {
    fn tls(&self, role: Role, node: &str) -> NodeTls {
        let c = self.ca.issue(&NodeName::new(node).unwrap(), role).unwrap();
        NodeTls::from_pem(self.ca.cert_pem(), c.cert_pem(), c.key_pem()).unwrap()
    }
}

async fn wait_until(what: &str, limit: Duration, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn one_connection(pki: &Pki, server: &ServerThread, n: u64) {
    let stop = CancellationToken::new();
    let ep = ClientEndpoint::new(
        bind_udp("127.0.0.1:0".parse().unwrap()).unwrap(),
        &pki.tls(Role::Agent, "bulk"),
        TransportSettings::default(),
    )
    .unwrap();
    let mut cfg = ClientConfig::new(server.addr, farm(), VERSION);
    cfg.queue_capacity = 1024;
    let client: Client<BenchReport> = Client::start(&ep, cfg, stop.clone());
    let mut st = client.state();
    st.wait_for(|s| matches!(s, ConnState::Connected { .. }))
        .await
        .unwrap();
    let msg = report("bulk", 0);
    println!(
        "message size: {} bytes encoded",
        encode(&msg).unwrap().len()
    );
    let (m0, c0, t0) = (server.messages(), server.cpu(), Instant::now());
    for _ in 0..n {
        client.send_wait(&msg).await.unwrap();
    }
    wait_until("bulk messages", Duration::from_secs(120), || {
        server.messages() >= m0 + n
    })
    .await;
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), server.cpu() - c0);
    println!(
        "one connection: {n} messages in {secs:.2} s = {:.0} msg/s; server CPU {:.1} µs/msg",
        n as f64 / secs,
        cpu.as_secs_f64() * 1e6 / n as f64
    );
    client.stop().await;
    ep.shutdown(Duration::from_secs(1)).await;
    wait_until("the bulk client gone", Duration::from_secs(30), || {
        server.connected.load(Ordering::Relaxed) == 0
    })
    .await;
}

async fn fleet(
    pki: &Pki,
    server: &ServerThread,
    agents: usize,
    period: Duration,
    window: Duration,
) {
    let stop = CancellationToken::new();
    let base = server.connected.load(Ordering::Relaxed);
    let setup = Instant::now();
    let tls: Vec<NodeTls> = (0..agents)
        .map(|i| pki.tls(Role::Agent, &format!("a{i}")))
        .collect();
    // Like real agents, each has its own certificate, endpoint (socket) and connection.
    let mut clients = Vec::new();
    for (i, tls) in tls.iter().enumerate() {
        // Each from its own loopback address, as agents on their own servers would be:
        // the server limits handshakes per source address.
        let source = [127, 1, (i / 250) as u8, (i % 250 + 1) as u8];
        let ep = ClientEndpoint::new(
            bind_udp(std::net::SocketAddr::from((source, 0))).unwrap(),
            tls,
            TransportSettings::default(),
        )
        .unwrap();
        let client: Client<BenchReport> = Client::start(
            &ep,
            ClientConfig::new(server.addr, farm(), VERSION),
            stop.clone(),
        );
        clients.push((client, ep));
    }
    wait_until("all agents connected", Duration::from_secs(60), || {
        let up = server.connected.load(Ordering::Relaxed);
        if setup.elapsed().as_secs() > 55 {
            let states: std::collections::BTreeMap<String, usize> =
                clients.iter().fold(Default::default(), |mut m, (c, _)| {
                    *m.entry(format!("{:?}", *c.state().borrow())).or_default() += 1;
                    m
                });
            eprintln!("connected {up} of {agents} (base {base}); client states: {states:?}");
        }
        up >= base + agents as u64
    })
    .await;
    let setup = setup.elapsed();
    let clients = Arc::new(clients);
    let mut senders = Vec::new();
    for i in 0..agents {
        let (clients, stop) = (clients.clone(), stop.clone());
        senders.push(tokio::spawn(async move {
            tokio::time::sleep(period.mul_f64(i as f64 / agents as f64)).await;
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let name = format!("a{i}");
            let mut seq = 0;
            while !stop.is_cancelled() {
                tick.tick().await;
                seq += 1;
                let _ = clients[i].0.send(&report(&name, seq));
            }
        }));
    }
    // Let the staggered starts settle, then measure a steady window.
    tokio::time::sleep(period * 2).await;
    let (m0, c0, t0) = (server.messages(), server.cpu(), Instant::now());
    tokio::time::sleep(window).await;
    let (m, cpu, secs) = (
        server.messages() - m0,
        server.cpu() - c0,
        t0.elapsed().as_secs_f64(),
    );
    println!(
        "{agents} agents × {:.0} msg/s: setup {:.2} s; {:.0} msg/s; server CPU {:.0}% of a core, {:.1} µs/msg; process RSS {:.0} MiB",
        1.0 / period.as_secs_f64(),
        setup.as_secs_f64(),
        m as f64 / secs,
        cpu.as_secs_f64() * 100.0 / secs,
        cpu.as_secs_f64() * 1e6 / m.max(1) as f64,
        rss_mib()
    );
    stop.cancel();
    for s in senders {
        let _ = s.await;
    }
    let clients = Arc::try_unwrap(clients).ok().unwrap();
    for (client, ep) in clients {
        client.stop().await;
        ep.shutdown(Duration::from_millis(200)).await;
    }
    wait_until("agents gone", Duration::from_secs(30), || {
        server.connected.load(Ordering::Relaxed) <= base
    })
    .await;
}

/// Sequential connections, each with a fresh TLS client config so no session resumes:
/// time to a completed handshake, and to the server's hello (the server has then verified
/// the client certificate and authorised it).
async fn handshakes(pki: &Pki, server: &ServerThread, n: usize) {
    let tls = pki.tls(Role::Agent, "hs");
    let settings = TransportSettings::default();
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let name = farm().dns_name();
    let mut hs = Vec::new();
    let mut accepted = Vec::new();
    let c0 = server.cpu();
    for _ in 0..n {
        let cfg = tls.client_config(&settings).unwrap();
        let t = Instant::now();
        let conn = ep
            .connect_with(cfg, server.addr, &name)
            .unwrap()
            .await
            .unwrap();
        hs.push(t.elapsed());
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let hello = Hello {
            version: VERSION,
            role: Role::Agent,
        };
        send.write_all(&hello.to_bytes()).await.unwrap();
        send.finish().unwrap();
        recv.read_to_end(HELLO_LEN).await.unwrap();
        accepted.push(t.elapsed());
        conn.close(0u32.into(), b"bench");
    }
    let cpu = server.cpu() - c0;
    hs.sort();
    accepted.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{n} full mTLS handshakes: median {:.2} ms (p90 {:.2} ms); to server hello: median {:.2} ms; server CPU {:.2} ms/connection",
        ms(hs[n / 2]),
        ms(hs[n * 9 / 10]),
        ms(accepted[n / 2]),
        ms(cpu) / n as f64
    );
    ep.close(0u32.into(), b"bench");
    ep.wait_idle().await;
}

fn main() {
    let quick = std::env::var("FEDLB_BENCH_QUICK").is_ok_and(|v| v != "0");
    let pki = Pki {
        ca: Ca::generate("bench").unwrap(),
    };
    let server = start_server(pki.tls(Role::Farm, "f1"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "fedlb-net bench ({} mode): server on one current-thread runtime, clients on another, same process",
        if quick { "quick" } else { "full" }
    );
    rt.block_on(async {
        let period = Duration::from_millis(100);
        if quick {
            one_connection(&pki, &server, 20_000).await;
            fleet(&pki, &server, 100, period, Duration::from_secs(1)).await;
            handshakes(&pki, &server, 20).await;
        } else {
            one_connection(&pki, &server, 200_000).await;
            fleet(&pki, &server, 200, period, Duration::from_secs(5)).await;
            fleet(&pki, &server, 1000, period, Duration::from_secs(5)).await;
            handshakes(&pki, &server, 200).await;
        }
    });
    server.shutdown.cancel();
    server.thread.join().unwrap();
}
