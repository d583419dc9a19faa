//! The embedded server on its own: port 0, the initial zone file, the journal across restarts,
//! and shutdown on a future.

mod support;

use std::time::Duration;

use fedlb_dns::{EmbeddedConfig, EmbeddedServer, Rfc2136Publisher, query_serial};
use support::{addrs, answers, key, test_config, zone};

#[tokio::test]
async fn journal_survives_restart_and_zone_file_is_created() {
    support::init_logs();
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig::new(
        zone(),
        "127.0.0.1:0".parse().unwrap(),
        dir.path(),
        vec![key()],
    );
    let server = EmbeddedServer::start(config.clone()).await.unwrap();
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0, "the bound port is reported");
    let zone_file = std::fs::read_to_string(dir.path().join("example.test.zone")).unwrap();
    assert!(
        zone_file.contains("IN\tSOA\tns1.example.test."),
        "{zone_file}"
    );
    assert!(dir.path().join("example.test.jrnl.sqlite").exists());

    // UDP answers on the same port.
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut query = hickory_proto::op::Message::query();
    query.add_query(hickory_proto::op::Query::query(
        zone(),
        hickory_proto::rr::RecordType::SOA,
    ));
    udp.send_to(&query.to_vec().unwrap(), addr).await.unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), udp.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let answer = hickory_proto::op::Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(answer.answers.len(), 1, "{answer:?}");

    let mut p = Rfc2136Publisher::new(test_config(vec![addr], key())).unwrap();
    let desired = answers(&[("www.example.test", 30, &["192.0.2.1", "2001:db8::1"])]);
    assert!(p.publish(&desired).await.is_ok());
    let serial = query_serial(addr, &zone(), Duration::from_secs(1))
        .await
        .unwrap();
    assert!(serial > 1, "the serial moves on update: {serial}");
    server.shutdown().await.unwrap();
    assert!(
        query_serial(addr, &zone(), Duration::from_millis(300))
            .await
            .is_err(),
        "stopped"
    );

    // Same directory, same port: the journal brings the records back, whatever the zone file says.
    std::fs::write(
        dir.path().join("example.test.zone"),
        "garbage that is never read\n",
    )
    .unwrap();
    let mut config = config;
    config.listen = addr;
    let server = EmbeddedServer::start(config).await.unwrap();
    assert_eq!(
        query_serial(addr, &zone(), Duration::from_secs(1))
            .await
            .unwrap(),
        serial
    );
    let state = fedlb_dns::query_rrsets(
        addr,
        &zone(),
        [&fedlb_dns::fqdn("www.example.test").unwrap()],
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    assert_eq!(
        addrs(&state, "www.example.test"),
        ["192.0.2.1", "2001:db8::1"]
    );
    // The old publisher's belief is still right: nothing to send.
    assert!(matches!(
        p.reconcile().await.targets[0].status,
        fedlb_dns::Status::InSync
    ));
    assert_eq!(p.metrics().targets[0].updates_sent, 1);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn serve_stops_when_the_shutdown_future_completes() {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig::new(
        zone(),
        "127.0.0.1:0".parse().unwrap(),
        dir.path(),
        vec![key()],
    );
    let server = EmbeddedServer::start(config).await.unwrap();
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));
    assert!(
        query_serial(addr, &zone(), Duration::from_secs(1))
            .await
            .is_ok()
    );
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("server stops promptly")
        .unwrap()
        .unwrap();
    assert!(
        query_serial(addr, &zone(), Duration::from_millis(300))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn unsigned_or_keyless_updates_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // No key configured: the zone does not accept updates at all.
    let config = EmbeddedConfig::new(zone(), "127.0.0.1:0".parse().unwrap(), dir.path(), vec![]);
    let server = EmbeddedServer::start(config).await.unwrap();
    let mut p = Rfc2136Publisher::new(test_config(vec![server.local_addr()], key())).unwrap();
    let report = p
        .publish(&answers(&[("www.example.test", 30, &["192.0.2.1"])]))
        .await;
    let err = report.errors().next().expect("refused");
    assert!(
        matches!(
            err.class(),
            fedlb_dns::FailureClass::Refused | fedlb_dns::FailureClass::Tsig
        ),
        "{err}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_name_no_longer_desired_is_left_alone_and_is_not_drift() {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig::new(
        zone(),
        "127.0.0.1:0".parse().unwrap(),
        dir.path(),
        vec![key()],
    );
    let server = EmbeddedServer::start(config).await.unwrap();
    let addr = server.local_addr();
    let mut p = Rfc2136Publisher::new(test_config(vec![addr], key())).unwrap();
    p.publish(&answers(&[
        ("www.example.test", 30, &["192.0.2.1"]),
        ("old.example.test", 30, &["192.0.2.2"]),
    ]))
    .await;
    let report = p
        .publish(&answers(&[("www.example.test", 30, &["192.0.2.1"])]))
        .await;
    assert!(
        matches!(report.targets[0].status, fedlb_dns::Status::InSync),
        "{report:?}"
    );
    let report = p.reconcile().await;
    assert!(
        matches!(report.targets[0].status, fedlb_dns::Status::InSync),
        "{report:?}"
    );
    let m = p.metrics();
    assert_eq!(
        (m.targets[0].drift_repairs, m.targets[0].updates_sent),
        (0, 1)
    );
    let old = fedlb_dns::fqdn("old.example.test").unwrap();
    let state = fedlb_dns::query_rrsets(addr, &zone(), [&old], Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        addrs(&state, "old.example.test"),
        ["192.0.2.2"],
        "fail-static: never deleted"
    );
    server.shutdown().await.unwrap();
}

/// Issue 12 item 5: DNS and TSIG problems are typed errors that name the zone or the key,
/// from the one TSIG key type of the workspace (fedlb-topology's).
#[tokio::test]
async fn item5_dns_and_tsig_problems_are_typed_errors_naming_the_zone_and_the_key() {
    use fedlb_dns::{Error, FailureClass, Rfc2136Config, TsigAlgorithm, TsigKey};

    // A zone that is not a domain name.
    let err = fedlb_dns::zone_name("bad..zone").unwrap_err();
    assert!(
        matches!(&err, Error::Zone { zone, .. } if zone == "bad..zone"),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("zone \"bad..zone\": "), "{err}");
    assert_eq!(err.class(), FailureClass::Config);
    assert_eq!(fedlb_dns::zone_name("Example.Test").unwrap(), zone());

    // A key whose name is not a domain name: refused when the publisher is built ...
    let bad = TsigKey {
        name: "bad..key".into(),
        algorithm: TsigAlgorithm::HmacSha256,
        secret: vec![7; 32],
    };
    let primary = "127.0.0.1:53".parse().unwrap();
    let err = Rfc2136Publisher::new(Rfc2136Config::new(zone(), vec![primary], bad.clone()))
        .err()
        .unwrap();
    assert!(
        matches!(&err, Error::TsigKey { key, .. } if key == "bad..key"),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("tsig key \"bad..key\": "),
        "{err}"
    );
    assert!(!err.to_string().contains("0707"), "no secret in {err}");

    // ... and when the embedded server starts, before anything is written for it.
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig::new(
        zone(),
        "127.0.0.1:0".parse().unwrap(),
        dir.path(),
        vec![bad],
    );
    let err = EmbeddedServer::start(config).await.err().unwrap();
    assert!(
        matches!(&err, Error::TsigKey { key, .. } if key == "bad..key"),
        "{err:?}"
    );

    // A key made from empty parts, through the one key type's constructor.
    let err = Error::from(TsigKey::new("k", TsigAlgorithm::HmacSha256, vec![]).unwrap_err());
    assert_eq!(err.to_string(), "tsig key \"k\": empty secret");

    // No primary, and no key for the primaries.
    let err = Rfc2136Publisher::new(Rfc2136Config::new(zone(), vec![], key()))
        .err()
        .unwrap();
    assert!(
        matches!(&err, Error::NoPrimary { zone } if zone == "example.test."),
        "{err:?}"
    );
    let err = Error::NoTsigKey {
        zone: "example.test.".into(),
        servers: vec![primary],
    };
    assert_eq!(
        err.to_string(),
        "zone \"example.test.\": updates to 127.0.0.1:53 need a tsig key"
    );
    assert_eq!(err.class(), FailureClass::Config);
}

/// A replaced answer is replaced atomically for clients: while the publisher moves a name
/// between two addresses again and again, a client asking all the while never sees the name
/// without an address (hickory applies an update record by record; the server applies each
/// UPDATE alone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_never_sees_a_replaced_answer_empty() {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig::new(
        zone(),
        "127.0.0.1:0".parse().unwrap(),
        dir.path(),
        vec![key()],
    );
    let server = EmbeddedServer::start(config).await.unwrap();
    let addr = server.local_addr();
    let mut p = Rfc2136Publisher::new(test_config(vec![addr], key())).unwrap();
    p.publish(&answers(&[("www.example.test", 30, &["192.0.2.1"])]))
        .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let asker = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let name = fedlb_dns::fqdn("www.example.test").unwrap();
            let (mut asked, mut empty) = (0u32, 0u32);
            let mut buf = [0u8; 512];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut query = hickory_proto::op::Message::query();
                query.add_query(hickory_proto::op::Query::query(
                    name.clone(),
                    hickory_proto::rr::RecordType::A,
                ));
                udp.send_to(&query.to_vec().unwrap(), addr).await.unwrap();
                let Ok(Ok((n, _))) =
                    tokio::time::timeout(Duration::from_secs(1), udp.recv_from(&mut buf)).await
                else {
                    continue;
                };
                let answer = hickory_proto::op::Message::from_vec(&buf[..n]).unwrap();
                asked += 1;
                if answer.answers.is_empty() {
                    empty += 1;
                }
            }
            (asked, empty)
        })
    };
    for i in 0..100 {
        let to = if i % 2 == 0 { "192.0.2.2" } else { "192.0.2.1" };
        let report = p
            .publish(&answers(&[("www.example.test", 30, &[to])]))
            .await;
        assert!(report.is_ok(), "{report:?}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (asked, empty) = asker.await.unwrap();
    assert!(asked > 100, "the client asked {asked} times");
    assert_eq!(empty, 0, "{empty} of {asked} answers were empty");
    server.shutdown().await.unwrap();
}
