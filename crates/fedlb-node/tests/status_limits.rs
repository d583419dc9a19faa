//! The status endpoint under abuse: idle and slowloris connections are closed after the
//! header timeout, connections beyond the cap are closed at once, and a farm node with the
//! 1,024 file descriptors a default systemd unit leaves keeps probing while idle clients
//! hammer its status port.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fedlb_node::http::{self, Limits};
use fedlb_node::metrics::Metrics;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// An endpoint serving `/healthz` within `limits` on `addr`.
async fn endpoint(addr: SocketAddr, limits: Limits) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let metrics = Arc::new(Metrics::new());
    let status: http::StatusFn = Arc::new(|| Box::pin(async { None }));
    let app = http::router(status, metrics.clone());
    tokio::spawn(http::serve_with(
        listener,
        app,
        limits,
        metrics,
        std::future::pending(),
    ))
}

async fn connect_from(source: std::net::IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(source, 0))?;
    s.connect(to).await
}

/// How long until the server closes `s` (reads until EOF or error), up to `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(start + limit, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn item4_slowloris_and_idle_status_connections_are_closed_after_the_header_timeout() {
    const B: u8 = 230;
    let addr = SocketAddr::new(ip(B, 1), 7480);
    let limits = Limits {
        header_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let _server = endpoint(addr, limits).await;

    // idle: connects and sends nothing
    let mut idle = TcpStream::connect(addr).await.unwrap();
    // slowloris: a header line every 100 ms, never the blank line that ends the headers
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        for i in 0..50 {
            if slow
                .write_all(format!("X-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                return (slow, true);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (slow, false)
    });
    let idle_closed = closed_within(&mut idle, Duration::from_secs(3)).await;
    assert!(
        idle_closed.is_some(),
        "an idle connection must be closed after the header timeout"
    );
    let (mut slow, _) = trickle.await.unwrap();
    let slow_closed = closed_within(&mut slow, Duration::from_millis(100)).await;
    assert!(
        slow_closed.is_some(),
        "a slowloris connection must be closed after the header timeout, not kept for 5 s of trickling"
    );
    // an honest client is still served
    let (code, body) = http_get(addr, "/healthz").await.unwrap();
    assert_eq!((code, body.as_str()), (200, "ok\n"));
}

#[tokio::test]
async fn item4_status_connections_beyond_the_cap_are_closed_at_once() {
    const B: u8 = 231;
    let addr = SocketAddr::new(ip(B, 1), 7480);
    let limits = Limits {
        max_connections: 8,
        per_source: 4,
        header_timeout: Duration::from_secs(30),
        connection_timeout: Duration::from_secs(60),
    };
    let _server = endpoint(addr, limits).await;

    // one address opens 10 idle connections: 4 are held, 6 closed at once
    let mut held = Vec::new();
    let mut closed = 0;
    for _ in 0..10 {
        let mut s = connect_from(ip(B, 100), addr).await.unwrap();
        match closed_within(&mut s, Duration::from_millis(300)).await {
            Some(_) => closed += 1,
            None => held.push(s),
        }
    }
    assert_eq!((held.len(), closed), (4, 6), "per-source cap");
    // another address is still served while the first one sits at its cap
    let mut other = connect_from(ip(B, 101), addr).await.unwrap();
    other
        .write_all(b"GET /healthz HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    other.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.0 200"), "{reply}");

    // four more addresses: the total cap (8) holds
    let mut total_closed = 0;
    for host in 102..106 {
        for _ in 0..4 {
            let mut s = connect_from(ip(B, host), addr).await.unwrap();
            match closed_within(&mut s, Duration::from_millis(300)).await {
                Some(_) => total_closed += 1,
                None => held.push(s),
            }
        }
    }
    assert_eq!(held.len(), 8, "total cap");
    assert_eq!(total_closed, 12);
    // closing the held connections frees their slots
    held.clear();
    let ok = wait_for("a slot to free up", || async {
        http_get(addr, "/healthz").await.map(|(code, _)| code)
    })
    .await;
    assert_eq!(ok, 200);
}

/// A farm node "near" with one remote server a1, nothing else running.
fn farm_topology(b: u8) -> String {
    [
        header(b, r#""least_loaded""#),
        farm(b, 2, "near", 10, &["a1"]),
        remote_server(b, 11, "a1"),
    ]
    .concat()
}

/// The child process, killed when the test ends (or fails).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const CHILD_ENV: &str = "FEDLB_TEST_CHILD_FARM";

/// Run by [`item4_idle_status_connections_do_not_starve_a_farm_nodes_probes`] in a child
/// process: a farm node with `RLIMIT_NOFILE` 1,024 (soft and hard), as the shipped systemd
/// units used to leave it.
#[test]
#[ignore = "helper: run in a child process by item4_idle_status_connections_do_not_starve_a_farm_nodes_probes"]
fn child_farm_node_with_1024_file_descriptors() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (topology, certs) = spec.split_once('|').expect("topology|certs");
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 1024, 1024)
        .expect("lowering RLIMIT_NOFILE");
    init_logs();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let opts = fedlb_node::NodeOptions {
            topology: topology.into(),
            node: "near".to_owned(),
            certs: certs.into(),
            state_dir: Some(std::path::Path::new(certs).join("../state")),
        };
        let token = tokio_util::sync::CancellationToken::new();
        fedlb_node::farm::run(opts, token).await.expect("farm node");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item4_idle_status_connections_do_not_starve_a_farm_nodes_probes() {
    const B: u8 = 232;
    let mut w = World::new(&farm_topology(B));
    w.start_backend("a1", ip(B, 11)).await;
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "child_farm_node_with_1024_file_descriptors",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(
            CHILD_ENV,
            format!("{}|{}", w.topology.display(), w.certs.display()),
        )
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("starting the child farm node");
    let _child = KillOnDrop(child);
    let status_addr = SocketAddr::new(ip(B, 2), 7481);
    wait_for("a1 up on the farm node", || async {
        let v = status(status_addr).await?;
        let tier = local(&v, "near").ok_or("no local tier")?;
        let c = candidate(tier, "a1").ok_or("no a1")?;
        if c["health"] == "up" {
            Ok(())
        } else {
            Err(describe(&v))
        }
    })
    .await;
    let probes_before = metric(status_addr, r#"fedlb_probe_seconds_count{kind="http"}"#)
        .await
        .unwrap();

    // 1,120 idle connections from 40 addresses, more than the node's 1,024 descriptors
    let mut idle = Vec::new();
    for host in 0..40u8 {
        for _ in 0..28 {
            if let Ok(s) = connect_from(ip(B, 100 + host), status_addr).await {
                idle.push(s);
            }
        }
    }
    // hold them for 15 probe intervals (well within the 5 s header timeout)
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(idle);

    let (downs, probes_after, shortages) = wait_for("the status endpoint back", || async {
        Ok((
            metric(
                status_addr,
                r#"fedlb_health_changes_total{service="www",health="down"}"#,
            )
            .await?,
            metric(status_addr, r#"fedlb_probe_seconds_count{kind="http"}"#).await?,
            metric(status_addr, r#"fedlb_fd_shortages_total{during="probe"}"#).await?,
        ))
    })
    .await;
    assert_eq!(downs, 0.0, "a healthy server was marked down");
    assert_eq!(shortages, 0.0, "probes ran short of file descriptors");
    assert!(
        probes_after >= probes_before + 10.0,
        "probes kept running: {probes_before} before, {probes_after} after"
    );
    w.shutdown().await;
}
