//! Two global nodes' publishers writing one DNS server (the embedded server, BIND): the
//! marker next to each answer says who wrote it and how many candidates it heard; a node
//! that hears fewer defers, a second writer of the same answer sends nothing, and the
//! marker is guarded by compare-and-swap like the answer.

mod support;

use std::time::Duration;

use fedlb_core::PeerRule;
use fedlb_dns::{DesiredZone, PeerConfig, Rfc2136Publisher, Status, fqdn, marker_name};
use support::{Kind, TestServer, addrs, answers, key, test_config};

fn publisher(server: &TestServer, node: &str) -> Rfc2136Publisher {
    let mut config = test_config(vec![server.addr], key());
    config.peers = Some(PeerConfig {
        node: node.to_owned(),
        rule: PeerRule::from_heartbeat(Duration::from_secs(1), 3),
    });
    Rfc2136Publisher::new(config).unwrap()
}

fn heard(mut zone: DesiredZone, n: u32) -> DesiredZone {
    zone.set_heard(&fqdn("www.example.test").unwrap(), n);
    zone
}

async fn defer_then_no_op(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let (mut g1, mut g2) = (publisher(&server, "g1"), publisher(&server, "g2"));
    let www = fqdn("www.example.test").unwrap();

    // g1 hears two farms and writes its view, with its marker
    let report = g1
        .publish(&heard(
            answers(&[("www.example.test", 30, &["192.0.2.1"])]),
            2,
        ))
        .await;
    assert!(report.is_ok(), "{report:?}");
    assert!(g1.deferred().is_empty());

    // g2, cut off from one farm, has another view: it defers and sends nothing
    let report = g2
        .publish(&heard(
            answers(&[("www.example.test", 30, &["192.0.2.9"])]),
            1,
        ))
        .await;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(
        g2.deferred().get(&www).map(String::as_str),
        Some("defers to g1: it hears 2 candidates, this node 1")
    );
    assert_eq!(g2.metrics().targets[0].updates_sent, 0);
    let state = server.read(&["www.example.test"]).await;
    assert_eq!(addrs(&state, "www.example.test"), ["192.0.2.1"]);

    // g2 hears as many again and decides the same answer: a second writer of the served
    // answer sends nothing (g1 keeps the marker)
    let report = g2
        .publish(&heard(
            answers(&[("www.example.test", 30, &["192.0.2.1"])]),
            2,
        ))
        .await;
    assert!(
        matches!(report.targets[0].status, Status::InSync),
        "{report:?}"
    );
    assert_eq!(g2.metrics().targets[0].updates_sent, 0);
    assert!(
        g2.deferred().get(&www).is_some(),
        "g1 sorts first: g2 still leaves it to g1"
    );

    // g2 hears more than g1 did: it writes its view and takes the marker
    let report = g2
        .publish(&heard(
            answers(&[("www.example.test", 30, &["192.0.2.9"])]),
            3,
        ))
        .await;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(g2.metrics().targets[0].updates_applied, 1);
    let state = server.read(&["www.example.test"]).await;
    assert_eq!(addrs(&state, "www.example.test"), ["192.0.2.9"]);
    // and g1, now hearing fewer than g2's marker says, defers in its next pass
    let report = g1.reconcile().await;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(
        g1.deferred().get(&www).map(String::as_str),
        Some("defers to g2: it hears 3 candidates, this node 2")
    );
    let state = server.read(&["www.example.test"]).await;
    assert_eq!(addrs(&state, "www.example.test"), ["192.0.2.9"]);
    assert_eq!(marker_name(&www).to_string(), "_fedlb.www.example.test.");
}

#[tokio::test]
async fn embedded_a_node_hearing_fewer_defers_and_a_second_writer_is_a_no_op() {
    defer_then_no_op(Kind::Embedded).await;
}

#[tokio::test]
async fn bind_a_node_hearing_fewer_defers_and_a_second_writer_is_a_no_op() {
    defer_then_no_op(Kind::Bind).await;
}
