//! Failover through the whole hierarchy, with real QUIC (mutual TLS) between the nodes,
//! real HTTP backends probed remotely by their farm nodes, and the embedded DNS server
//! updated by RFC 2136: a killed backend changes its farm's decision and then the global
//! answer; a farm left with no healthy server makes the global node move to the next
//! closest farm.
//!
//! Every decision comes from fedlb-core (failover order inside farms, closest farm at the
//! top); these tests watch it through the status endpoint and DNS.

mod support;

use std::net::SocketAddr;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backend_moves_the_farm_then_the_global_answer() {
    const B: u8 = 201;
    let mut w = World::near_and_far_running(B).await;
    let global_status = SocketAddr::new(ip(B, 1), 7480);
    let near_status = SocketAddr::new(ip(B, 2), 7481);
    let dns = SocketAddr::new(ip(B, 1), 5353);

    // closest farm "near", its first server n1
    wait_answers(global_status, dns, &[ip(B, 11)]).await;
    let v = status(global_status).await.unwrap();
    assert_eq!(global_chosen(&v), ["near"], "{}", describe(&v));
    assert_eq!(local_chosen(&v, "near"), ["n1"], "{}", describe(&v));
    // the publisher's report reaches the status page after the DNS server has the answer
    wait_for("the status page to show the publish", || async {
        let v = status(global_status).await?;
        let p = &service(&v)["published"];
        if p["result"] == "ok" && p["addresses"][0] == "127.0.201.11" {
            Ok(())
        } else {
            Err(p.to_string())
        }
    })
    .await;

    // n1 dies: the farm node's own probes see it, the farm moves to n2 …
    w.kill_backend("n1").await;
    let v = wait_for("farm near to choose n2", || async {
        let v = status(near_status).await?;
        if local_chosen(&v, "near") == ["n2"] {
            Ok(v)
        } else {
            Err(describe(&v))
        }
    })
    .await;
    let near = local(&v, "near").unwrap();
    let n1 = candidate(near, "n1").unwrap();
    assert_eq!(n1["health"], "down", "{n1}");
    assert!(
        n1["reason"].as_str().unwrap().contains("http"),
        "the reason names the failing probe: {n1}"
    );
    assert_eq!(candidate(near, "n2").unwrap()["chosen"], true);

    // … and the global node, still on farm "near", answers n2 (status and DNS)
    wait_answers(global_status, dns, &[ip(B, 12)]).await;
    let v = status(global_status).await.unwrap();
    assert_eq!(global_chosen(&v), ["near"], "{}", describe(&v));
    assert_eq!(local_chosen(&v, "near"), ["n2"], "{}", describe(&v));

    // n1 comes back: failover order prefers it again, everywhere
    w.start_backend("n1", ip(B, 11)).await;
    wait_answers(global_status, dns, &[ip(B, 11)]).await;

    w.assert_nodes_running();
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn farm_with_no_healthy_server_hands_over_to_the_next_closest_farm() {
    const B: u8 = 202;
    let toml = [
        header(B, r#""least_loaded""#),
        farm(B, 2, "near", 10, &["n1", "n2"]),
        remote_server(B, 11, "n1"),
        remote_server(B, 12, "n2"),
        farm(B, 3, "middle", 40, &["m1"]),
        remote_server(B, 21, "m1"),
        farm(B, 4, "far", 90, &["f1"]),
        remote_server(B, 31, "f1"),
    ]
    .concat();
    let mut w = World::new(&toml);
    for (name, host) in [("n1", 11), ("n2", 12), ("m1", 21), ("f1", 31)] {
        w.start_backend(name, ip(B, host)).await;
    }
    w.start_global();
    for f in ["near", "middle", "far"] {
        w.start_farm(f);
    }
    let global_status = SocketAddr::new(ip(B, 1), 7480);
    let dns = SocketAddr::new(ip(B, 1), 5353);
    wait_answers(global_status, dns, &[ip(B, 11)]).await;

    // one server answers 503, the other is killed: farm "near" has no healthy server
    w.backend("n1").set_failing(true);
    w.kill_backend("n2").await;
    wait_answers(global_status, dns, &[ip(B, 21)]).await;
    let v = status(global_status).await.unwrap();
    assert_eq!(global_chosen(&v), ["middle"], "{}", describe(&v));
    let g = &service(&v)["global"];
    assert_eq!(g["degraded"], false, "a healthy farm is left: {g}");
    let near = candidate(g, "near").unwrap();
    assert_ne!(near["health"], "up", "{near}");
    assert_eq!(near["chosen"], false, "{near}");
    assert_eq!(near["members"]["up"], 0, "{near}");
    assert_eq!(near["members"]["total"], 2, "{near}");
    // the farm's own view says why
    let n1 = candidate(local(&v, "near").unwrap(), "n1").unwrap();
    assert_eq!(n1["health"], "down", "{n1}");

    // n1 recovers: farm "near" is healthy again and, being clearly closer, wins back after
    // the dwell
    w.backend("n1").set_failing(false);
    wait_answers(global_status, dns, &[ip(B, 11)]).await;
    let v = status(global_status).await.unwrap();
    assert_eq!(global_chosen(&v), ["near"], "{}", describe(&v));

    w.assert_nodes_running();
    w.shutdown().await;
}
