//! Each node shows when its own certificate and the federation CA expire, in its status
//! document and as a metric, read from the files it runs with.

mod support;

use std::net::SocketAddr;
use std::time::UNIX_EPOCH;

use fedlb_net::{NodeName, NodeTls, PeerIdentity, Role};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item10_status_and_metrics_show_certificate_expiry() {
    const B: u8 = 218;
    let toml = [
        header(B, r#""least_loaded""#),
        farm(B, 2, "near", 10, &["r1"]),
        remote_server(B, 12, "r1"),
    ]
    .concat();
    let mut w = World::new(&toml);
    w.start_backend("r1", ip(B, 12)).await;
    w.start_global();
    w.start_farm("near");
    let unix = |t: std::time::SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs();
    for (node, role, addr) in [
        ("global", Role::Global, SocketAddr::new(ip(B, 1), 7480)),
        ("near", Role::Farm, SocketAddr::new(ip(B, 2), 7481)),
    ] {
        let tls = NodeTls::load(
            &w.certs,
            &PeerIdentity::new(role, NodeName::new(node).unwrap()),
        )
        .unwrap();
        let (node_at, ca_at) = (unix(tls.not_after()), unix(tls.ca_not_after()));
        assert!(ca_at > node_at, "the CA outlives the node certificate");
        let v = wait_for(&format!("{node}'s status"), || async { status(addr).await }).await;
        assert_eq!(v["certificates"]["node_expires_at"], node_at, "{node}: {v}");
        assert_eq!(v["certificates"]["ca_expires_at"], ca_at, "{node}: {v}");
        let series = |cert: &str| format!("fedlb_certificate_expiry_seconds{{cert=\"{cert}\"}}");
        assert_eq!(metric(addr, &series("node")).await.unwrap(), node_at as f64);
        assert_eq!(metric(addr, &series("ca")).await.unwrap(), ca_at as f64);
    }
    w.shutdown().await;
}
