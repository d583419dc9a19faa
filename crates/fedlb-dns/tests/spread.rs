//! Per-query spreading in the embedded server (issue 14): a set of several addresses is
//! answered one address per query, by the published weights (`weighted`), or by a hash of the
//! client's /24 (`hashed`: source address, or ECS subnet); the publisher's own signed reads
//! still see the whole set. Real UDP on 127.0.0.0/8, real TSIG.

mod support;

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use fedlb_core::Spread;
use fedlb_dns::{AnswerWeights, EmbeddedConfig, EmbeddedServer, Rfc2136Publisher};
use hickory_proto::{
    op::{Edns, Message, Query},
    rr::{
        RData, RecordType,
        rdata::opt::{ClientSubnet, EdnsCode, EdnsOption},
    },
};
use support::{answers, key, test_config, zone};
use tokio::net::UdpSocket;

const SET: [&str; 3] = ["192.0.2.1", "192.0.2.2", "192.0.2.3"];
const WEIGHTS: [f64; 3] = [0.5, 0.3, 0.2];

/// Starts a server spreading by `spread`, publishes the three addresses (signed, as the
/// global node does) and their weights.
async fn server(dir: &std::path::Path, spread: Spread) -> (EmbeddedServer, Rfc2136Publisher) {
    support::init_logs();
    let weights = AnswerWeights::new();
    let config = EmbeddedConfig::new(zone(), "127.0.0.1:0".parse().unwrap(), dir, vec![key()])
        .with_spread(spread, weights.clone());
    let server = EmbeddedServer::start(config).await.unwrap();
    let mut config = test_config(vec![server.local_addr()], key());
    config.sign_reads = true;
    let mut publisher = Rfc2136Publisher::new(config).unwrap();
    let report = publisher
        .publish(&answers(&[("www.example.test", 30, &SET)]))
        .await;
    assert!(report.is_ok(), "{report:?}");
    let name = fedlb_dns::fqdn("www.example.test").unwrap();
    let set: Vec<(IpAddr, f64)> = SET
        .iter()
        .zip(WEIGHTS)
        .map(|(a, w)| (a.parse().unwrap(), w))
        .collect();
    weights.set_view(None, BTreeMap::from([(name, set)]));
    (server, publisher)
}

fn query(id: u16, subnet: Option<&str>) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.add_query(Query::query(
        fedlb_dns::fqdn("www.example.test").unwrap(),
        RecordType::A,
    ));
    let mut edns = Edns::new();
    if let Some(net) = subnet {
        let net: ipnet::IpNet = net.parse().unwrap();
        edns.options_mut()
            .insert(EdnsOption::Subnet(ClientSubnet::new(
                net.addr(),
                net.prefix_len(),
                0,
            )));
    }
    m.set_edns(edns);
    m.to_vec().unwrap()
}

fn a_records(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.to_string()),
            _ => None,
        })
        .collect()
}

/// Sends `queries` from `source` over one UDP socket, `window` in flight at a time, and
/// returns the answers by query id.
async fn ask_many(
    server: SocketAddr,
    source: &str,
    queries: &[(u16, Vec<u8>)],
    window: usize,
) -> BTreeMap<u16, Message> {
    let sock = UdpSocket::bind((source.parse::<IpAddr>().unwrap(), 0))
        .await
        .unwrap();
    let mut got = BTreeMap::new();
    for chunk in queries.chunks(window) {
        for attempt in 0..3 {
            for (id, raw) in chunk {
                if !got.contains_key(id) {
                    sock.send_to(raw, server).await.unwrap();
                }
            }
            let mut buf = vec![0u8; 4096];
            while chunk.iter().any(|(id, _)| !got.contains_key(id)) {
                let wait = Duration::from_millis(500 * (attempt + 1));
                let Ok(r) = tokio::time::timeout(wait, sock.recv_from(&mut buf)).await else {
                    break;
                };
                let (n, _) = r.unwrap();
                let m = Message::from_vec(&buf[..n]).unwrap();
                got.insert(m.metadata.id, m);
            }
            if chunk.iter().all(|(id, _)| got.contains_key(id)) {
                break;
            }
        }
    }
    got
}

fn shares(answers: impl Iterator<Item = Vec<String>>) -> (usize, [f64; 3]) {
    let mut n = [0usize; 3];
    let mut total = 0;
    for a in answers {
        assert_eq!(a.len(), 1, "one address per answer: {a:?}");
        n[SET.iter().position(|s| *s == a[0]).expect("a member")] += 1;
        total += 1;
    }
    (total, n.map(|c| c as f64 / total as f64))
}

#[tokio::test]
async fn weighted_answers_follow_the_published_weights_over_10000_queries() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut publisher) = server(dir.path(), Spread::Weighted).await;
    let addr = server.local_addr();
    let queries: Vec<(u16, Vec<u8>)> = (0..10_000u16).map(|id| (id, query(id, None))).collect();
    let got = ask_many(addr, "127.0.0.1", &queries, 100).await;
    let (total, got_shares) = shares(got.values().map(a_records));
    assert!(total >= 9_990, "{total} of 10,000 answered");
    for (i, want) in WEIGHTS.iter().enumerate() {
        // a binomial share over 10,000 draws has a standard deviation of at most 0.5 point
        assert!(
            (got_shares[i] - want).abs() < 0.02,
            "{}: {:.3} of the answers, published weight {want}",
            SET[i],
            got_shares[i]
        );
    }
    // the publisher reads back (signed) the whole set: nothing to repair
    let report = publisher.reconcile().await;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(
        report.changes(),
        0,
        "a signed read sees all three addresses"
    );
    let state = fedlb_dns::query_rrsets(
        addr,
        &zone(),
        [&fedlb_dns::fqdn("www.example.test").unwrap()],
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    assert_eq!(
        state.len(),
        1,
        "an unsigned read is a client: one address in its RRset"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn hashed_answers_keep_one_server_per_client_subnet() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _publisher) = server(dir.path(), Spread::Hashed).await;
    let addr = server.local_addr();

    // by source address: two hosts of each of 60 /24s, five queries each, one answer per /24
    let mut per_subnet: BTreeMap<u8, Vec<String>> = BTreeMap::new();
    for net in 1..=60u8 {
        for host in [1u8, 200] {
            let source = format!("127.{net}.7.{host}");
            let queries: Vec<(u16, Vec<u8>)> = (0..5u16).map(|id| (id, query(id, None))).collect();
            for m in ask_many(addr, &source, &queries, 5).await.values() {
                per_subnet.entry(net).or_default().extend(a_records(m));
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (net, answers) in &per_subnet {
        assert_eq!(answers.len(), 10, "127.{net}.7.0/24: {answers:?}");
        assert!(
            answers.iter().all(|a| a == &answers[0]),
            "127.{net}.7.0/24 got {answers:?}"
        );
        seen.insert(answers[0].clone());
    }
    assert_eq!(seen.len(), 3, "60 subnets use every member: {seen:?}");

    // by ECS subnet: 3,000 subnets follow the weights; each subnet twice gets one answer, and
    // the echo's scope is the /24 the pick is keyed by
    let subnets: Vec<String> = (0..3_000u32)
        .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
        .collect();
    let queries: Vec<(u16, Vec<u8>)> = subnets
        .iter()
        .chain(&subnets)
        .enumerate()
        .map(|(id, net)| (id as u16, query(id as u16, Some(net))))
        .collect();
    let got = ask_many(addr, "127.0.0.1", &queries, 100).await;
    let n = subnets.len() as u16;
    for id in 0..n {
        let (a, b) = (&got[&id], &got[&(id + n)]);
        assert_eq!(a_records(a), a_records(b), "{}", subnets[usize::from(id)]);
        let Some(EdnsOption::Subnet(echo)) = a.edns.as_ref().unwrap().option(EdnsCode::Subnet)
        else {
            panic!("no ECS echo");
        };
        assert_eq!(echo.scope_prefix(), 24);
    }
    let (total, got_shares) = shares((0..n).map(|id| a_records(&got[&id])));
    assert_eq!(total, 3_000);
    for (i, want) in WEIGHTS.iter().enumerate() {
        // over 3,000 subnets a share has a standard deviation below 1 point
        assert!(
            (got_shares[i] - want).abs() < 0.035,
            "{}: {:.3} of the subnets, published weight {want}",
            SET[i],
            got_shares[i]
        );
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn without_spreading_or_weights_every_client_gets_the_whole_set() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _publisher) = server(dir.path(), Spread::All).await;
    let got = ask_many(server.local_addr(), "127.0.0.1", &[(1, query(1, None))], 1).await;
    assert_eq!(a_records(&got[&1]).len(), 3);
    server.shutdown().await.unwrap();
}
