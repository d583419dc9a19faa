//! "What changed, when" through a live federation (real QUIC between the nodes, real HTTP
//! backends probed by their farm nodes, the embedded DNS server): a failover inside a farm,
//! told by the farm node's timeline and named as the farm's by the global node's. The page
//! itself, in headless Chromium with the nodes run by the real binary, is tested in
//! `crates/fedlb/tests/timeline_page.rs`.

mod support;

use std::net::SocketAddr;

use support::*;

/// A server dying inside a farm that still has another: the farm node's own timeline names
/// the server and its health; the global node's, where the same farm answers other
/// addresses, says it was the farm's own choice and carries the farm's why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_farms_own_failover_is_told_by_the_farm_node_and_named_by_the_global_node() {
    const B: u8 = 227;
    let mut w = World::near_and_far_running(B).await;
    let global_status = SocketAddr::new(ip(B, 1), 7480);
    let near_status = SocketAddr::new(ip(B, 2), 7481);
    let dns = SocketAddr::new(ip(B, 1), 5353);
    wait_answers(global_status, dns, &[ip(B, 11)]).await;

    w.kill_backend("n1").await;
    wait_answers(global_status, dns, &[ip(B, 12)]).await;

    let newest = |v: &serde_json::Value| v["changes"][0].clone();
    let farm_change = wait_for("the farm node's timeline to show n1's failure", || async {
        let c = newest(&status(near_status).await?);
        if c["to"]["chosen"][0] == "n2" {
            Ok(c)
        } else {
            Err(c.to_string())
        }
    })
    .await;
    assert_eq!(farm_change["cause"], "health", "{farm_change}");
    assert_eq!(farm_change["subject"], "n1", "{farm_change}");
    assert_eq!(farm_change["from"]["chosen"][0], "n1", "{farm_change}");
    assert_eq!(farm_change["region"], serde_json::Value::Null);

    let v = status(global_status).await.unwrap();
    let c = newest(&v);
    assert_eq!(c["cause"], "farm", "{c}");
    assert_eq!(c["subject"], "near", "{c}");
    assert_eq!(c["from"]["answers"][0], format!("127.0.{B}.11"), "{c}");
    assert_eq!(c["to"]["answers"][0], format!("127.0.{B}.12"), "{c}");
    let why = c["why"].as_str().unwrap();
    assert!(
        why.contains("; farm near: n2: failover order") && why.contains("n1 is down"),
        "the farm's own why is carried: {why}"
    );
    // in order, newest first: the start (on near, n1) is older
    let changes = v["changes"].as_array().unwrap();
    let start = changes.iter().position(|c| c["cause"] == "start").unwrap();
    assert!(start > 0, "{changes:?}");
    assert!(
        changes
            .windows(2)
            .all(|p| p[0]["at"].as_f64() >= p[1]["at"].as_f64()),
        "{changes:?}"
    );

    w.assert_nodes_running();
    w.shutdown().await;
}
