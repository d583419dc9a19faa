//! A farm with two farm nodes (issue 17 item 2), over real mTLS QUIC on loopback: the agent
//! reports to both (one connection each), so a dead farm node delays nothing; the global
//! node uses the first live node's summary in topology order, names it in its status, and
//! one node's death changes no answer.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;

const B: u8 = 219;

fn topology() -> String {
    [
        // no hysteresis inside the farm (the default): a farm node that restarts would hold
        // the choice it made before hearing every agent for the dwell
        header(B, r#"{ kind = "failover", order = ["i1", "r1"] }"#)
            .replace(r#"}, hysteresis = { margin = 0.2, dwell = "1s" } }"#, "} }"),
        format!(
            r#"
[[farms]]
name = "pair"
nodes = [
  {{ name = "pair-a", listen = "127.0.{B}.2:7401", status = "127.0.{B}.2:7481" }},
  {{ name = "pair-b", listen = "127.0.{B}.3:7401", status = "127.0.{B}.3:7481" }},
]
distance_ms = 10
"#
        ),
        intrusive_server(B, 11, "i1", "i1-agent"),
        remote_server(B, 12, "r1"),
        farm(B, 4, "far", 50, &["f1"]),
        remote_server(B, 21, "f1"),
    ]
    .concat()
}

/// The farm node whose summary the global node uses for farm `farm`.
fn node_in_use(v: &serde_json::Value, farm: &str) -> Option<String> {
    candidate(&service(v)["global"], farm)?["node"]
        .as_str()
        .map(str::to_owned)
}

/// Polls the embedded DNS server every 50 ms for `d`; returns every answer that differs
/// from `want`.
async fn answers_other_than(
    dns: SocketAddr,
    want: &[std::net::IpAddr],
    d: Duration,
) -> Vec<String> {
    let end = tokio::time::Instant::now() + d;
    let mut other = Vec::new();
    while tokio::time::Instant::now() < end {
        match dns_a(dns, "www.t.test.").await {
            Ok(got) if got == want => {}
            got => other.push(format!("{got:?}")),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    other
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_reports_to_every_farm_node_and_one_nodes_death_changes_no_answer() {
    let mut w = World::new(&topology());
    for (name, host) in [("i1", 11), ("r1", 12), ("f1", 21)] {
        w.start_backend(name, ip(B, host)).await;
    }
    let global_status = SocketAddr::new(ip(B, 1), 7480);
    let dns = SocketAddr::new(ip(B, 1), 5353);
    let i1 = [ip(B, 11)];
    w.start_global();
    w.start_farm("far");
    // pair-a is dead from the start: the agent's connection to it keeps failing
    w.start_farm("pair-b");
    w.start_agent("i1-agent");

    // i1 is known only through its agent: answering it means pair-b has its reports
    wait_answers(global_status, dns, &i1).await;
    let v = status(global_status).await.unwrap();
    assert_eq!(node_in_use(&v, "pair").as_deref(), Some("pair-b"), "{v}");
    // and the agent's failure report reaches pair-b too
    w.backend("i1").set_failing(true);
    wait_answers(global_status, dns, &[ip(B, 12)]).await;
    w.backend("i1").set_failing(false);
    wait_answers(global_status, dns, &i1).await;

    // pair-a starts: first in topology order, it takes over — and DNS never answers
    // anything else meanwhile. The agent's link to pair-a was down for all of the above;
    // what it queued then (i1 up, down, up again) is history, not sent: pair-a gets the
    // agent's state as of its connection, so it never decides on i1's old "down".
    w.start_farm("pair-a");
    let other = answers_other_than(dns, &i1, Duration::from_secs(4)).await;
    assert!(
        other.is_empty(),
        "answers changed as pair-a came up: {other:?}"
    );
    wait_for("the global node to use pair-a's summary", || async {
        let v = status(global_status).await?;
        match node_in_use(&v, "pair") {
            Some(n) if n == "pair-a" => Ok(()),
            other => Err(format!("in use: {other:?}")),
        }
    })
    .await;

    // pair-a stops: pair-b takes over once pair-a's silence makes it stale; DNS never
    // answers anything else meanwhile
    w.stop_node("pair-a").await;
    let other = answers_other_than(dns, &i1, Duration::from_secs(3)).await;
    assert!(other.is_empty(), "answers changed: {other:?}");
    let v = status(global_status).await.unwrap();
    assert_eq!(node_in_use(&v, "pair").as_deref(), Some("pair-b"), "{v}");
    let pair = candidate(&service(&v)["global"], "pair").unwrap();
    assert_eq!(pair["health"], "up", "{pair}");
    // the farm's local view shown is the one in use
    let farms = service(&v)["farms"].as_array().unwrap();
    let shown = farms.iter().find(|f| f["farm"] == "pair").unwrap();
    assert_eq!(shown["node"], "pair-b", "{shown}");

    // a backend failure afterwards still moves the answer, through the surviving node
    w.backend("i1").set_failing(true);
    wait_answers(global_status, dns, &[ip(B, 12)]).await;
    w.assert_nodes_running();
    w.shutdown().await;
}
