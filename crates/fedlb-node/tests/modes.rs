//! Intrusive and remote modes side by side: an agent on a server pushes its readings to its
//! farm node over QUIC, the farm node probes its other server itself, and a server attached
//! directly to the global node reports through its own agent (mixed mode). Failures in
//! either mode move the decisions.

mod support;

use std::net::SocketAddr;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_and_remote_probes_both_drive_decisions() {
    const B: u8 = 203;
    let toml = [
        header(B, r#""least_loaded""#),
        // the agent also reads the server's load, as only an agent on the server can
        r#"
[[services.probes]]
kind = "load"
source = "nginx_stub_status"
url = "http://server:8080/stub_status"
interval = "200ms"
timeout = "150ms"
"#
        .to_owned(),
        farm(B, 2, "near", 10, &["i1", "r1"]),
        intrusive_server(B, 11, "i1", "i1-agent"),
        remote_server(B, 12, "r1"),
        farm(B, 3, "far", 50, &["f1"]),
        remote_server(B, 21, "f1"),
        format!(
            r#"
[[servers]]
name = "d1"
address = "127.0.{B}.31"
services = ["www"]
mode = "intrusive"
agent = "d1-agent"
distance_ms = 30
"#
        ),
    ]
    .concat();
    let mut w = World::new(&toml);
    for (name, host) in [("i1", 11), ("r1", 12), ("f1", 21), ("d1", 31)] {
        w.start_backend(name, ip(B, host)).await;
    }
    w.start_global();
    w.start_farm("near");
    w.start_farm("far");
    w.start_agent("i1-agent");
    w.start_agent("d1-agent");
    let global_status = SocketAddr::new(ip(B, 1), 7480);
    let near_status = SocketAddr::new(ip(B, 2), 7481);
    let dns = SocketAddr::new(ip(B, 1), 5353);

    // the agent's server is first in farm "near"'s order, and it is only known through
    // the agent: no farm probe targets it
    wait_answers(global_status, dns, &[ip(B, 11)]).await;
    let v = wait_for("the agent to report i1's load", || async {
        let v = status(near_status).await?;
        let i1 = local(&v, "near")
            .and_then(|l| candidate(l, "i1"))
            .ok_or("no i1 in farm near")?;
        if i1["readings"]["pending"]["value"].is_number() {
            Ok(v)
        } else {
            Err(i1.to_string())
        }
    })
    .await;
    let near = local(&v, "near").unwrap();
    let i1 = candidate(near, "i1").unwrap();
    assert_eq!(i1["health"], "up", "{i1}");
    assert_eq!(i1["chosen"], true, "{i1}");
    assert!(
        i1["readings"]["response_time_ms"]["value"].is_number(),
        "{i1}"
    );
    assert_eq!(candidate(near, "r1").unwrap()["health"], "up");
    assert_eq!(
        metric(near_status, "fedlb_peers").await.unwrap(),
        1.0,
        "one agent connected to the farm node"
    );
    assert!(
        metric(
            near_status,
            r#"fedlb_messages_received_total{from="agent"}"#
        )
        .await
        .unwrap()
            > 0.0
    );
    // the direct server is a candidate of the global node, kept up by its agent
    let v = status(global_status).await.unwrap();
    let d1 = candidate(&service(&v)["global"], "d1").unwrap();
    assert_eq!(d1["health"], "up", "{d1}");
    assert_eq!(d1["kind"], "server", "{d1}");
    assert!(
        metric(
            global_status,
            r#"fedlb_messages_received_total{from="agent"}"#
        )
        .await
        .unwrap()
            > 0.0,
        "the direct server's agent reports to the global node"
    );

    // intrusive mode: the server starts failing; its agent sees it and the farm moves to
    // the remotely probed r1
    w.backend("i1").set_failing(true);
    wait_answers(global_status, dns, &[ip(B, 12)]).await;
    let v = status(near_status).await.unwrap();
    let near = local(&v, "near").unwrap();
    let i1 = candidate(near, "i1").unwrap();
    assert_eq!(i1["health"], "down", "{i1}");
    assert!(
        i1["reason"].as_str().unwrap().contains("503"),
        "the agent's reason reaches the farm: {i1}"
    );
    assert_eq!(local_chosen(&v, "near"), ["r1"]);

    // remote mode: r1 is killed; farm "near" has nothing healthy, and the directly
    // attached d1 (30 ms) is closer than farm "far" (50 ms)
    w.kill_backend("r1").await;
    wait_answers(global_status, dns, &[ip(B, 31)]).await;
    let v = status(global_status).await.unwrap();
    assert_eq!(global_chosen(&v), ["d1"], "{}", describe(&v));

    // the direct server's agent reports its failure straight to the global node
    w.backend("d1").set_failing(true);
    wait_answers(global_status, dns, &[ip(B, 21)]).await;
    let v = status(global_status).await.unwrap();
    assert_eq!(global_chosen(&v), ["far"], "{}", describe(&v));
    assert_eq!(
        candidate(&service(&v)["global"], "d1").unwrap()["health"],
        "down"
    );

    // i1 recovers: its agent says so, farm "near" is back and wins after the dwell
    w.backend("i1").set_failing(false);
    wait_answers(global_status, dns, &[ip(B, 11)]).await;
    let v = status(global_status).await.unwrap();
    assert_eq!(global_chosen(&v), ["near"], "{}", describe(&v));

    w.assert_nodes_running();
    w.shutdown().await;
}
