//! Reloads while everything runs: the topology file is replaced and every node picks the
//! change up from the file (no restart). A policy change takes effect while reports and
//! summaries keep flowing over the same QUIC connections; servers are added and removed
//! at runtime, in remote and in intrusive mode.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;

/// Farm "near" with its local policy given as a TOML value, an intrusive server a1 (slow)
/// and a remote server a2 (fast); farm "far" with f1.
fn policy_topology(b: u8, near_policy: &str) -> String {
    [
        header(b, r#""least_loaded""#),
        format!(
            r#"
[[farms]]
name = "near"
listen = "127.0.{b}.2:7401"
status = "127.0.{b}.2:7481"
distance_ms = 10
local.www = {{ policy = {near_policy} }}
"#
        ),
        intrusive_server(b, 11, "a1", "a1-agent"),
        remote_server(b, 12, "a2"),
        farm(b, 3, "far", 50, &["f1"]),
        remote_server(b, 21, "f1"),
    ]
    .concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_changes_a_policy_while_reports_keep_flowing() {
    const B: u8 = 204;
    let mut w = World::new(&policy_topology(
        B,
        r#"{ kind = "failover", order = ["a1", "a2"] }"#,
    ));
    for (name, host) in [("a1", 11), ("a2", 12), ("f1", 21)] {
        w.start_backend(name, ip(B, host)).await;
    }
    // a1 is the slower server by far: the policy below decides whether that matters
    w.backend("a1").set_latency(Duration::from_millis(60));
    w.start_global();
    w.start_farm("near");
    w.start_farm("far");
    w.start_agent("a1-agent");
    let global_status = SocketAddr::new(ip(B, 1), 7480);
    let near_status = SocketAddr::new(ip(B, 2), 7481);
    let dns = SocketAddr::new(ip(B, 1), 5353);

    wait_answers(global_status, dns, &[ip(B, 11)]).await;
    let v = status(near_status).await.unwrap();
    assert_eq!(local(&v, "near").unwrap()["policy"], "failover order");

    // the connections as they are before the reload: one agent on the farm node, two farm
    // nodes on the global node
    wait_for("every node connected", || async {
        let agents = metric(near_status, "fedlb_peers").await?;
        let farms = metric(global_status, "fedlb_peers").await?;
        if (agents, farms) == (1.0, 2.0) {
            Ok(())
        } else {
            Err(format!("{agents} agents, {farms} farm nodes connected"))
        }
    })
    .await;
    let agent_connects = metric(near_status, "fedlb_peer_connects_total")
        .await
        .unwrap();
    let farm_connects = metric(global_status, "fedlb_peer_connects_total")
        .await
        .unwrap();
    assert_eq!(agent_connects, 1.0);
    assert_eq!(farm_connects, 2.0);

    w.rewrite(&policy_topology(B, r#""fastest_response""#));

    // the farm node applies the new policy: a2 answers faster
    let v = wait_for("farm near to run the new policy", || async {
        let v = status(near_status).await?;
        let l = local(&v, "near").ok_or("no farm near")?;
        if l["policy"] == "fastest response" && l["chosen"][0] == "a2" {
            Ok(v)
        } else {
            Err(describe(&v))
        }
    })
    .await;
    let a1 = candidate(local(&v, "near").unwrap(), "a1").unwrap();
    assert_eq!(a1["health"], "up", "a1 is slower, not down: {a1}");
    wait_answers(global_status, dns, &[ip(B, 12)]).await;

    // reports from the agent and summaries from the farm nodes keep coming …
    let agent_msgs = metric(
        near_status,
        r#"fedlb_messages_received_total{from="agent"}"#,
    )
    .await
    .unwrap();
    let farm_msgs = metric(
        global_status,
        r#"fedlb_messages_received_total{from="farm"}"#,
    )
    .await
    .unwrap();
    wait_for("more reports and summaries after the reload", || async {
        let a = metric(
            near_status,
            r#"fedlb_messages_received_total{from="agent"}"#,
        )
        .await?;
        let f = metric(
            global_status,
            r#"fedlb_messages_received_total{from="farm"}"#,
        )
        .await?;
        if a >= agent_msgs + 3.0 && f >= farm_msgs + 3.0 {
            Ok(())
        } else {
            Err(format!(
                "agent messages {agent_msgs} → {a}, farm messages {farm_msgs} → {f}"
            ))
        }
    })
    .await;
    // … over the connections they had before: nobody reconnected
    assert_eq!(
        metric(near_status, "fedlb_peer_connects_total")
            .await
            .unwrap(),
        agent_connects,
        "the agent reconnected to the farm node"
    );
    assert_eq!(
        metric(global_status, "fedlb_peer_connects_total")
            .await
            .unwrap(),
        farm_connects,
        "a farm node reconnected to the global node"
    );
    assert_eq!(metric(near_status, "fedlb_peers").await.unwrap(), 1.0);
    assert_eq!(metric(global_status, "fedlb_peers").await.unwrap(), 2.0);

    w.assert_nodes_running();
    w.shutdown().await;
}

/// Farm "near" with the servers given (each a `[[farms.servers]]` table) in failover
/// `order`; farm "far" with f1.
fn servers_topology(b: u8, order: &[&str], servers: &[String]) -> String {
    [
        header(b, r#""least_loaded""#),
        farm(b, 2, "near", 10, order),
        servers.concat(),
        farm(b, 3, "far", 50, &["f1"]),
        remote_server(b, 21, "f1"),
    ]
    .concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_are_added_and_removed_at_runtime() {
    const B: u8 = 205;
    let n1 = remote_server(B, 11, "n1");
    let n2 = remote_server(B, 12, "n2");
    let n3 = intrusive_server(B, 13, "n3", "n3-agent");
    let mut w = World::new(&servers_topology(B, &["n1"], std::slice::from_ref(&n1)));
    for (name, host) in [("n1", 11), ("n2", 12), ("n3", 13), ("f1", 21)] {
        w.start_backend(name, ip(B, host)).await;
    }
    w.start_global();
    w.start_farm("near");
    w.start_farm("far");
    let global_status = SocketAddr::new(ip(B, 1), 7480);
    let near_status = SocketAddr::new(ip(B, 2), 7481);
    let dns = SocketAddr::new(ip(B, 1), 5353);
    wait_answers(global_status, dns, &[ip(B, 11)]).await;

    // add n2 (probed by the farm node) and n3 (with its own agent), both ahead of n1
    w.rewrite(&servers_topology(
        B,
        &["n2", "n3", "n1"],
        &[n1.clone(), n2.clone(), n3.clone()],
    ));
    w.issue_cert("n3-agent", Role::Agent);
    w.start_agent("n3-agent");
    let v = wait_for("farm near to know n2 and n3, both up", || async {
        let v = status(near_status).await?;
        let l = local(&v, "near").ok_or("no farm near")?;
        let up = |id| candidate(l, id).is_some_and(|c| c["health"] == "up");
        if up("n2") && up("n3") && l["chosen"][0] == "n2" {
            Ok(v)
        } else {
            Err(describe(&v))
        }
    })
    .await;
    assert_eq!(
        candidate_ids(local(&v, "near").unwrap()),
        ["n1", "n2", "n3"],
        "{}",
        describe(&v)
    );
    wait_answers(global_status, dns, &[ip(B, 12)]).await;
    assert_eq!(
        metric(near_status, "fedlb_peers").await.unwrap(),
        1.0,
        "the new agent was let in"
    );

    // remove the chosen n2: n3 (intrusive) takes over at once
    w.rewrite(&servers_topology(
        B,
        &["n3", "n1"],
        &[n1.clone(), n3.clone()],
    ));
    let v = wait_for("farm near to forget n2", || async {
        let v = status(near_status).await?;
        let l = local(&v, "near").ok_or("no farm near")?;
        if candidate_ids(l) == ["n1", "n3"] && l["chosen"][0] == "n3" {
            Ok(v)
        } else {
            Err(describe(&v))
        }
    })
    .await;
    assert_eq!(
        candidate(local(&v, "near").unwrap(), "n3").unwrap()["health"],
        "up"
    );
    wait_answers(global_status, dns, &[ip(B, 13)]).await;
    // the global node's copy of the farm's view forgot n2 too
    let v = status(global_status).await.unwrap();
    assert_eq!(
        candidate_ids(local(&v, "near").unwrap()),
        ["n1", "n3"],
        "{}",
        describe(&v)
    );

    // remove n3 and its agent: back to n1 alone
    w.stop_node("n3-agent").await;
    w.rewrite(&servers_topology(B, &["n1"], std::slice::from_ref(&n1)));
    wait_for("farm near to be back to n1 alone", || async {
        let v = status(near_status).await?;
        let l = local(&v, "near").ok_or("no farm near")?;
        if candidate_ids(l) == ["n1"] && l["chosen"][0] == "n1" {
            Ok(())
        } else {
            Err(describe(&v))
        }
    })
    .await;
    wait_answers(global_status, dns, &[ip(B, 11)]).await;

    w.assert_nodes_running();
    w.shutdown().await;
}
