//! Several global nodes, each with its own embedded DNS server: every farm node sends its
//! summaries to each of them over its own QUIC connection, and each decides and publishes
//! alone. A global node that is down delays none of the others; one that comes back
//! converges to the same answer.

mod support;

use std::net::{IpAddr, SocketAddr};

use support::*;

const B: u8 = 240;

/// Two global nodes (`g1` on .1, `g2` on .5), each with its own embedded server.
fn topology() -> String {
    let head = header(B, r#""least_loaded""#);
    let globals = format!(
        r#"
[[global]]
name = "g1"
listen = "127.0.{B}.1:7400"
status = "127.0.{B}.1:7480"
embedded = {{ listen = "127.0.{B}.1:5353", state_dir = "dns-g1" }}

[[global]]
name = "g2"
listen = "127.0.{B}.5:7400"
status = "127.0.{B}.5:7480"
embedded = {{ listen = "127.0.{B}.5:5353", state_dir = "dns-g2" }}
"#
    );
    // the header's one [global] and its dns.embedded make way for the two nodes
    let head = head
        .replace(
            &format!("[global]\nlisten = \"127.0.{B}.1:7400\"\nstatus = \"127.0.{B}.1:7480\"\n"),
            &globals,
        )
        .replace(
            &format!("embedded = {{ listen = \"127.0.{B}.1:5353\", state_dir = \"dns\" }}\n"),
            "",
        );
    assert!(head.contains("[[global]]") && !head.contains("state_dir = \"dns\""));
    [
        head,
        farm(B, 2, "near", 10, &["n1", "n2"]),
        remote_server(B, 11, "n1"),
        remote_server(B, 12, "n2"),
        farm(B, 3, "far", 50, &["f1"]),
        remote_server(B, 21, "f1"),
    ]
    .concat()
}

fn at(host: u8, port: u16) -> SocketAddr {
    SocketAddr::new(ip(B, host), port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_global_node_delays_no_other_and_a_late_one_converges() {
    let mut w = World::new(&topology());
    for (name, host) in [("n1", 11), ("n2", 12), ("f1", 21)] {
        w.start_backend(name, ip(B, host)).await;
    }
    // g1, the first global node, is down from the start: its address answers nothing
    w.start_global_named("g2");
    w.start_farm("near");
    w.start_farm("far");
    let (g1, g2) = ((at(1, 7480), at(1, 5353)), (at(5, 7480), at(5, 5353)));

    // g2 hears both farms and publishes, although every farm node's link to g1 fails
    wait_answers(g2.0, g2.1, &[ip(B, 11)]).await;
    let v = status(g2.0).await.unwrap();
    assert_eq!(global_chosen(&v), ["near"], "{}", describe(&v));

    // and it follows a failure at the usual pace
    w.kill_backend("n1").await;
    let t0 = tokio::time::Instant::now();
    wait_answers(g2.0, g2.1, &[ip(B, 12)]).await;
    let moved = t0.elapsed();

    // g1 starts late: it converges to g2's answer, and its first answer is already that one
    w.start_global_named("g1");
    wait_answers(g1.0, g1.1, &[ip(B, 12)]).await;
    let first: Vec<IpAddr> = dns_a(g1.1, "www.t.test.").await.unwrap();
    assert_eq!(first, [ip(B, 12)]);
    w.assert_nodes_running();

    // g2 stops: g1 alone still moves the answer on its own DNS server
    w.stop_node("g2").await;
    w.kill_backend("n2").await;
    wait_answers(g1.0, g1.1, &[ip(B, 21)]).await;
    let v = status(g1.0).await.unwrap();
    assert_eq!(global_chosen(&v), ["far"], "{}", describe(&v));
    eprintln!("g2 moved the answer {moved:?} after the backend died, with g1 down");
    w.shutdown().await;
}
