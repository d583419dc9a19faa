//! The status page tells what DNS actually serves. A real DNS server (the embedded one, run
//! here as a separate primary) starts refusing the global node's updates: DNS keeps
//! serving the old answer, and the status must say so — published is the old answer,
//! pending the new one, the service degraded — until the server takes updates again.

mod support;

use std::net::SocketAddr;
use std::path::Path;

use fedlb_dns::{EmbeddedConfig, EmbeddedServer, TsigAlgorithm, TsigKey};
use serde_json::Value;
use support::*;

const B: u8 = 234;
/// `[7; 32]` in base64: the key in the topology.
const SECRET: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

fn key(byte: u8) -> TsigKey {
    TsigKey::new("fedlb-key.", TsigAlgorithm::HmacSha256, vec![byte; 32]).unwrap()
}

/// The primary on `addr`, its journal in `dir`, taking updates signed with `[byte; 32]`.
async fn primary(addr: SocketAddr, dir: &Path, byte: u8) -> EmbeddedServer {
    let zone = fedlb_dns::fqdn("t.test.").unwrap();
    EmbeddedServer::start(EmbeddedConfig::new(zone, addr, dir, vec![key(byte)]))
        .await
        .expect("starting the primary")
}

fn published(v: &Value) -> &Value {
    &service(v)["published"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item8_status_shows_what_dns_serves_while_updates_fail() {
    let dns = SocketAddr::new(ip(B, 53), 5353);
    let header = header(B, r#""least_loaded""#).replace(
        &format!(r#"embedded = {{ listen = "127.0.{B}.1:5353", state_dir = "dns" }}"#),
        &format!(
            r#"servers = ["{dns}"]
tsig = {{ name = "fedlb-key", secret = "{SECRET}" }}"#
        ),
    );
    let toml = [
        header,
        farm(B, 2, "near", 10, &["a1", "a2"]),
        remote_server(B, 11, "a1"),
        remote_server(B, 12, "a2"),
    ]
    .concat();
    let mut w = World::new(&toml);
    let journal = w.dir.path().join("primary");
    let mut server = primary(dns, &journal, 7).await;
    for (name, host) in [("a1", 11), ("a2", 12)] {
        w.start_backend(name, ip(B, host)).await;
    }
    w.start_global();
    w.start_farm("near");
    let global_status = SocketAddr::new(ip(B, 1), 7480);
    wait_answers(global_status, dns, &[ip(B, 11)]).await;
    let a1 = ip(B, 11).to_string();
    let a2 = ip(B, 12).to_string();
    wait_for("the publish to show in status", || async {
        let v = status(global_status).await?;
        let p = published(&v);
        if p["addresses"] == serde_json::json!([a1]) && p["pending"].is_null() {
            Ok(())
        } else {
            Err(p.to_string())
        }
    })
    .await;

    // the primary restarts from its journal with another key: it serves the old answer
    // and refuses every update
    server.shutdown().await.unwrap();
    server = primary(dns, &journal, 9).await;
    assert_eq!(dns_a(dns, "www.t.test.").await.unwrap(), [ip(B, 11)]);

    // the decision moves to a2; the update is refused
    w.backend("a1").set_failing(true);
    let v = wait_for("status to show DNS behind the decision", || async {
        let v = status(global_status).await?;
        let p = published(&v);
        if global_answers(&v) == [a2.clone()] && p["degraded"] == true {
            Ok(v)
        } else {
            Err(format!("{}\n{}", describe(&v), p))
        }
    })
    .await;
    let p = published(&v);
    assert_eq!(p["addresses"], serde_json::json!([a1]), "{p}");
    assert_eq!(p["pending"], serde_json::json!([a2]), "{p}");
    assert_eq!(p["desired"], serde_json::json!([a2]), "{p}");
    assert_eq!(
        p["primaries"][0]["addresses"],
        serde_json::json!([a1]),
        "{p}"
    );
    assert!(
        p["result"].as_str().unwrap().contains("tsig key"),
        "the result names the failure: {p}"
    );
    assert_eq!(
        dns_a(dns, "www.t.test.").await.unwrap(),
        [ip(B, 11)],
        "DNS really serves the old answer"
    );
    let degraded = metric(global_status, "fedlb_degraded_services")
        .await
        .unwrap();
    assert!(degraded > 0.0, "fedlb_degraded_services is {degraded}");

    // the primary takes updates again: the retry publishes a2 and the status clears
    server.shutdown().await.unwrap();
    let _server = primary(dns, &journal, 7).await;
    wait_answers(global_status, dns, &[ip(B, 12)]).await;
    wait_for("status to clear", || async {
        let v = status(global_status).await?;
        let p = published(&v);
        let m = metric(global_status, "fedlb_degraded_services").await?;
        if p["addresses"] == serde_json::json!([a2])
            && p["pending"].is_null()
            && p["degraded"] == false
            && m == 0.0
        {
            Ok(())
        } else {
            Err(format!("{p} degraded_services {m}"))
        }
    })
    .await;
    w.shutdown().await;
}
