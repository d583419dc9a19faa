//! Reloads that move addresses. A node follows its upstream wherever the topology now puts
//! it (farm nodes and agents dial the global node's, or their farm node's, new address);
//! a node's own listen and status addresses need a restart, which it says naming the field,
//! while the rest of the new topology is applied.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use support::*;

const B: u8 = 235;

/// Farm "near" (remote n1) with its local policy and status port given, the global node on
/// QUIC port `global_port`, and server g1 attached directly to the global node through
/// its agent.
fn topology(global_port: u16, near_status_port: u16, near_policy: &str) -> String {
    let header = header(B, r#""least_loaded""#).replace(
        &format!("listen = \"127.0.{B}.1:7400\""),
        &format!("listen = \"127.0.{B}.1:{global_port}\""),
    );
    format!(
        r#"{header}
[[farms]]
name = "near"
listen = "127.0.{B}.2:7401"
status = "127.0.{B}.2:{near_status_port}"
distance_ms = 10
local.www = {{ policy = {near_policy} }}

[[farms.servers]]
name = "n1"
address = "127.0.{B}.11"
services = ["www"]

[[servers]]
name = "g1"
address = "127.0.{B}.21"
services = ["www"]
distance_ms = 50
mode = "intrusive"
agent = "g1-agent"
"#
    )
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item5_farm_nodes_and_agents_follow_a_moved_global_node() {
    let logs = Capture::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let failover = r#"{ kind = "failover", order = ["n1"] }"#;
    let mut w = World::new(&topology(7400, 7481, failover));
    w.start_backend("n1", ip(B, 11)).await;
    w.start_backend("g1", ip(B, 21)).await;
    w.start_global();
    w.start_farm("near");
    w.start_agent("g1-agent");
    let global_status = SocketAddr::new(ip(B, 1), 7480);
    let near_status = SocketAddr::new(ip(B, 2), 7481);
    let dns = SocketAddr::new(ip(B, 1), 5353);
    wait_answers(global_status, dns, &[ip(B, 11)]).await;
    let peers = |n: f64| {
        move || async move {
            let p = metric(global_status, "fedlb_peers").await?;
            if p == n {
                Ok(())
            } else {
                Err(format!("{p} peers connected"))
            }
        }
    };
    wait_for("the farm node and the agent connected", peers(2.0)).await;

    // the global node moves to port 7410, the farm node's status to 7491, and the farm's
    // local policy changes
    w.rewrite(&topology(7410, 7491, r#""least_loaded""#));
    // the farm node applies the policy but keeps its status port (it needs a restart)
    wait_for("the farm node's new policy", || async {
        let v = status(near_status).await?;
        let policy = local(&v, "near").ok_or("no local tier")?["policy"].clone();
        if policy == "least loaded" {
            Ok(())
        } else {
            Err(policy.to_string())
        }
    })
    .await;
    assert!(
        http_get(SocketAddr::new(ip(B, 2), 7491), "/healthz")
            .await
            .is_err(),
        "the farm node's status port must not move without a restart"
    );
    // the farm node and the agent leave the old address at once
    wait_for(
        "the farm node and the agent to leave the old address",
        peers(0.0),
    )
    .await;
    wait_for("the refusals in the logs", || async {
        let text = logs.text();
        let want = [
            "farm \"near\": status changed: restart the node to apply",
            "global.listen changed: restart the node to apply",
        ];
        match want.iter().find(|w| !text.contains(*w)) {
            None => Ok(()),
            Some(missing) => Err(format!("no log line {missing:?}")),
        }
    })
    .await;

    // the global node restarts on its new address: both come back without a restart
    w.stop_node("global").await;
    w.start_global();
    wait_for("the farm node and the agent on the new address", peers(2.0)).await;
    // and DNS follows decisions again
    w.kill_backend("n1").await;
    wait_answers(global_status, dns, &[ip(B, 21)]).await;
    w.shutdown().await;
}
