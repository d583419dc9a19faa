//! The embedded server with per-region views (issue 13): updates land in the view of the key
//! that signs them, queries are answered from the client's region (ECS first, else the source
//! address), the ECS echo carries the scope, malformed ECS is answered by source address, and
//! geoip regions work with a database the test writes. Real UDP/TCP on 127.0.0.0/8, real TSIG.

mod support;

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use fedlb_core::{ClientMap, RegionClients};
use fedlb_dns::{
    EmbeddedConfig, EmbeddedServer, EmbeddedView, Error, FailureClass, Rfc2136Publisher,
    TsigAlgorithm, TsigKey,
};
use hickory_proto::{
    op::{Edns, Message, Query, ResponseCode},
    rr::{
        RData, RecordType,
        rdata::opt::{ClientSubnet, EdnsCode, EdnsOption},
    },
};
use support::{answers, key, mmdb, test_config, zone};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, UdpSocket},
};

fn region_key(name: &str, byte: u8) -> TsigKey {
    TsigKey::new(name, TsigAlgorithm::HmacSha256, vec![byte; 32]).unwrap()
}

fn eu_key() -> TsigKey {
    region_key("eu-key", 0xE0)
}

fn us_key() -> TsigKey {
    region_key("us-key", 0x05)
}

fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

/// eu: 127.0.10.0/24 and 10.0.0.0/8; us: 127.0.20.0/24 and 10.20.0.0/16 (nested in eu's).
fn clients() -> Arc<ClientMap> {
    Arc::new(
        ClientMap::new(vec![
            RegionClients::prefixes("eu", nets(&["127.0.10.0/24", "10.0.0.0/8"])),
            RegionClients::prefixes("us", nets(&["127.0.20.0/24", "10.20.0.0/16"])),
        ])
        .unwrap(),
    )
}

fn views() -> Vec<EmbeddedView> {
    vec![
        EmbeddedView {
            region: "eu".into(),
            keys: vec![eu_key()],
            transfer_keys: Vec::new(),
        },
        EmbeddedView {
            region: "us".into(),
            keys: vec![us_key()],
            transfer_keys: Vec::new(),
        },
    ]
}

/// A publisher for one view: its key signs the updates and the reads.
fn publisher(addr: SocketAddr, key: TsigKey) -> Rfc2136Publisher {
    let mut config = test_config(vec![addr], key);
    config.sign_reads = true;
    Rfc2136Publisher::new(config).unwrap()
}

async fn publish(addr: SocketAddr, key: TsigKey, ip: &str) -> fedlb_dns::PublishReport {
    publisher(addr, key)
        .publish(&answers(&[("www.example.test", 30, &[ip])]))
        .await
}

/// Starts eu/us/default and writes 192.0.2.10 / .20 / .1 into them, each with its own key.
async fn three_views(dir: &std::path::Path) -> EmbeddedServer {
    support::init_logs();
    let config = EmbeddedConfig::new(zone(), "127.0.0.1:0".parse().unwrap(), dir, vec![key()])
        .with_views(views(), clients(), None);
    let server = EmbeddedServer::start(config).await.unwrap();
    let addr = server.local_addr();
    for (k, ip) in [
        (key(), "192.0.2.1"),
        (eu_key(), "192.0.2.10"),
        (us_key(), "192.0.2.20"),
    ] {
        let report = publish(addr, k.clone(), ip).await;
        assert!(report.is_ok(), "{}: {report:?}", k.name);
    }
    server
}

/// A query for www.example.test A with an OPT record; `options` are appended raw to it, so
/// that malformed ones can be sent.
fn query(id: u16, options: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.add_query(Query::query(
        fedlb_dns::fqdn("www.example.test").unwrap(),
        RecordType::A,
    ));
    m.set_edns(Edns::new());
    let mut raw = m.to_vec().unwrap();
    let rdlen_at = raw.len() - 2;
    let mut rdata = Vec::new();
    for (code, data) in options {
        rdata.extend_from_slice(&code.to_be_bytes());
        rdata.extend_from_slice(&(data.len() as u16).to_be_bytes());
        rdata.extend_from_slice(data);
    }
    raw[rdlen_at..].copy_from_slice(&(rdata.len() as u16).to_be_bytes());
    raw.extend_from_slice(&rdata);
    raw
}

/// ECS option data for `net` as RFC 7871 writes it.
fn ecs(net: &str) -> Vec<u8> {
    let net: ipnet::IpNet = net.parse().unwrap();
    let (family, octets) = match net.network() {
        IpAddr::V4(a) => (1u16, a.octets().to_vec()),
        IpAddr::V6(a) => (2u16, a.octets().to_vec()),
    };
    let need = usize::from(net.prefix_len().div_ceil(8));
    let mut data = family.to_be_bytes().to_vec();
    data.extend_from_slice(&[net.prefix_len(), 0]);
    data.extend_from_slice(&octets[..need]);
    data
}

/// Sends `raw` over UDP from `source` (any 127.0.0.0/8 address) and returns the answer.
async fn ask_udp(server: SocketAddr, source: &str, raw: &[u8]) -> Message {
    let sock = UdpSocket::bind((source.parse::<IpAddr>().unwrap(), 0))
        .await
        .unwrap();
    sock.send_to(raw, server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, from) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
        .await
        .expect("an answer within 2 s")
        .unwrap();
    assert_eq!(from, server);
    Message::from_vec(&buf[..n]).unwrap()
}

async fn ask_tcp(server: SocketAddr, source: &str, raw: &[u8]) -> Message {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(source.parse().unwrap(), 0))
        .unwrap();
    let mut stream = sock.connect(server).await.unwrap();
    let mut framed = (raw.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(raw);
    stream.write_all(&framed).await.unwrap();
    let mut len = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut len))
        .await
        .expect("an answer within 2 s")
        .unwrap();
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
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

fn echo(m: &Message) -> Option<ClientSubnet> {
    match m.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(s) => Some(*s),
        _ => None,
    }
}

#[tokio::test]
async fn updates_land_in_the_view_of_their_key_and_queries_in_the_view_of_their_source() {
    let dir = tempfile::tempdir().unwrap();
    let server = three_views(dir.path()).await;
    let addr = server.local_addr();
    for region in ["eu", "us"] {
        let d = dir.path().join("regions").join(region);
        assert!(d.join("example.test.zone").exists(), "{}", d.display());
        assert!(d.join("example.test.jrnl.sqlite").exists());
    }

    for (source, want) in [
        ("127.0.10.1", "192.0.2.10"),
        ("127.0.10.254", "192.0.2.10"),
        ("127.0.20.1", "192.0.2.20"),
        ("127.0.0.1", "192.0.2.1"),
        ("127.0.30.1", "192.0.2.1"),
    ] {
        let m = ask_udp(addr, source, &query(7, &[])).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(a_records(&m), [want], "udp from {source}");
        assert_eq!(echo(&m), None, "no ECS asked, none echoed");
        let m = ask_tcp(addr, source, &query(8, &[])).await;
        assert_eq!(a_records(&m), [want], "tcp from {source}");
    }

    // Each publisher reads back the view it writes (its reads are signed): its reconcile
    // finds no drift although every read comes from 127.0.0.1.
    for (k, ip) in [
        (key(), "192.0.2.1"),
        (eu_key(), "192.0.2.10"),
        (us_key(), "192.0.2.20"),
    ] {
        let mut p = publisher(addr, k.clone());
        let report = p
            .publish(&answers(&[("www.example.test", 30, &[ip])]))
            .await;
        assert!(
            matches!(report.targets[0].status, fedlb_dns::Status::InSync),
            "{}: {report:?}",
            k.name
        );
        let report = p.reconcile().await;
        assert!(
            matches!(report.targets[0].status, fedlb_dns::Status::InSync),
            "{}: {report:?}",
            k.name
        );
        assert_eq!(p.metrics().targets[0].updates_sent, 0, "{}", k.name);
    }
    // Unsigned reads get the view of fedlb's own address: eu's publisher would see drift.
    let state = fedlb_dns::query_rrsets(
        addr,
        &zone(),
        [&fedlb_dns::fqdn("www.example.test").unwrap()],
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    assert_eq!(support::addrs(&state, "www.example.test"), ["192.0.2.1"]);

    // A second write with one key changes only its own view.
    let report = publish(addr, us_key(), "192.0.2.21").await;
    assert!(report.is_ok(), "{report:?}");
    let m = ask_udp(addr, "127.0.20.1", &query(9, &[])).await;
    assert_eq!(a_records(&m), ["192.0.2.21"]);
    let m = ask_udp(addr, "127.0.10.1", &query(10, &[])).await;
    assert_eq!(a_records(&m), ["192.0.2.10"], "eu untouched by us's update");
    let m = ask_udp(addr, "127.0.0.1", &query(11, &[])).await;
    assert_eq!(a_records(&m), ["192.0.2.1"], "default untouched");

    // A key no view has: refused, nothing changes.
    let report = publish(addr, region_key("ap-key", 0xAA), "192.0.2.99").await;
    let err = report.errors().next().expect("refused");
    assert!(
        matches!(err.class(), FailureClass::Tsig | FailureClass::Refused),
        "{err}"
    );
    for source in ["127.0.0.1", "127.0.10.1", "127.0.20.1"] {
        let m = ask_udp(addr, source, &query(12, &[])).await;
        assert!(!a_records(&m).contains(&"192.0.2.99".to_owned()));
    }
    server.shutdown().await.unwrap();

    // The views' journals survive a restart like the default one's.
    let config = EmbeddedConfig::new(zone(), addr, dir.path(), vec![key()]).with_views(
        views(),
        clients(),
        None,
    );
    let server = EmbeddedServer::start(config).await.unwrap();
    let m = ask_udp(addr, "127.0.20.1", &query(13, &[])).await;
    assert_eq!(a_records(&m), ["192.0.2.21"]);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn ecs_chooses_the_region_and_is_echoed_with_its_scope() {
    let dir = tempfile::tempdir().unwrap();
    let server = three_views(dir.path()).await;
    let addr = server.local_addr();
    // (subnet sent, answer, scope): us's 10.20/16 is nested in eu's 10/8.
    for (subnet, want, scope) in [
        ("127.0.20.0/24", "192.0.2.20", 24),
        ("10.20.0.0/16", "192.0.2.20", 16),
        ("10.20.5.0/24", "192.0.2.20", 16),
        ("10.21.0.0/16", "192.0.2.10", 16),
        ("10.128.0.0/16", "192.0.2.10", 9),
        ("10.0.0.0/8", "192.0.2.10", 12),
        ("127.0.10.0/24", "192.0.2.10", 24),
        ("192.0.2.0/24", "192.0.2.1", 1),
        ("127.0.30.0/24", "192.0.2.1", 21),
        ("0.0.0.0/0", "192.0.2.1", 5),
        ("2001:db8::/56", "192.0.2.1", 0),
    ] {
        for source in ["127.0.10.1", "127.0.20.1"] {
            let m = ask_udp(addr, source, &query(21, &[(8, ecs(subnet))])).await;
            assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{subnet}");
            assert_eq!(a_records(&m), [want], "ECS {subnet} from {source}");
            let net: ipnet::IpNet = subnet.parse().unwrap();
            let e = echo(&m).unwrap_or_else(|| panic!("ECS {subnet} echoed"));
            assert_eq!(
                (e.addr(), e.source_prefix(), e.scope_prefix()),
                (net.network(), net.prefix_len(), scope),
                "echo of {subnet}"
            );
            // the scope is what the classification says
            let map = clients();
            let c = map.classify(net.network(), Some(net.prefix_len()), None);
            assert_eq!(c.scope, scope, "{subnet}");
        }
    }
    // the same over TCP
    let m = ask_tcp(addr, "127.0.10.1", &query(22, &[(8, ecs("127.0.20.0/24"))])).await;
    assert_eq!(a_records(&m), ["192.0.2.20"]);
    assert_eq!(echo(&m).map(|e| e.scope_prefix()), Some(24));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn malformed_ecs_is_answered_by_source_address_without_echo() {
    let dir = tempfile::tempdir().unwrap();
    let server = three_views(dir.path()).await;
    let addr = server.local_addr();
    let oversize = [&[0u8, 1, 24, 0][..], &[0xAB; 400]].concat();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unknown family", vec![0, 3, 24, 0, 127, 0, 20]),
        (
            "source prefix 33 for IPv4",
            vec![0, 1, 33, 0, 127, 0, 20, 1, 0],
        ),
        (
            "source prefix 129 for IPv6",
            [&[0, 2, 129, 0][..], &[0; 17]].concat(),
        ),
        (
            "address octet past the prefix",
            vec![0, 1, 24, 0, 127, 0, 20, 0],
        ),
        ("address shorter than the prefix", vec![0, 1, 24, 0, 127, 0]),
        ("bits set past the prefix", vec![0, 1, 23, 0, 127, 0, 21]),
        ("non-zero scope in a query", vec![0, 1, 24, 24, 127, 0, 20]),
        ("garbage", vec![0xFF]),
        ("empty", vec![]),
        ("oversize", oversize),
    ];
    for (what, data) in &cases {
        for (source, want) in [("127.0.10.1", "192.0.2.10"), ("127.0.0.1", "192.0.2.1")] {
            let raw = query(31, &[(10, b"cookie12".to_vec()), (8, data.clone())]);
            let m = ask_udp(addr, source, &raw).await;
            assert_eq!(m.metadata.id, 31);
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::NoError,
                "{what} from {source}"
            );
            assert_eq!(a_records(&m), [want], "{what}: answered by source {source}");
            assert_eq!(echo(&m), None, "{what}: nothing echoed");
            assert!(m.edns.is_some(), "{what}: the OPT record is answered");
        }
    }
    // two options at once are malformed too
    let raw = query(32, &[(8, ecs("127.0.20.0/24")), (8, ecs("127.0.20.0/24"))]);
    let m = ask_udp(addr, "127.0.10.1", &raw).await;
    assert_eq!(a_records(&m), ["192.0.2.10"]);
    // over TCP
    let raw = query(33, &[(8, vec![0, 3, 24, 0, 127, 0, 20])]);
    let m = ask_tcp(addr, "127.0.10.1", &raw).await;
    assert_eq!(a_records(&m), ["192.0.2.10"]);
    // A broken OPT record (an option longer than the record) is not an ECS problem: FORMERR,
    // as hickory answers any message it cannot read.
    let mut raw = query(34, &[(8, ecs("127.0.20.0/24"))]);
    let at = raw.len() - 7 - 2;
    raw[at] = 0x40;
    let m = ask_udp(addr, "127.0.10.1", &raw).await;
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // still serving
    let m = ask_udp(addr, "127.0.20.1", &query(35, &[])).await;
    assert_eq!(a_records(&m), ["192.0.2.20"]);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn without_views_ecs_is_ignored_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig::new(
        zone(),
        "127.0.0.1:0".parse().unwrap(),
        dir.path(),
        vec![key()],
    );
    let server = EmbeddedServer::start(config).await.unwrap();
    let addr = server.local_addr();
    assert!(publish(addr, key(), "192.0.2.1").await.is_ok());
    let m = ask_udp(addr, "127.0.10.1", &query(41, &[(8, ecs("127.0.20.0/24"))])).await;
    assert_eq!(a_records(&m), ["192.0.2.1"]);
    assert_eq!(echo(&m), None);
    // hickory's own judgement of a malformed option: FORMERR, as before regions
    let m = ask_udp(
        addr,
        "127.0.10.1",
        &query(42, &[(8, vec![0, 3, 24, 0, 1, 2, 3])]),
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert!(!dir.path().join("regions").exists());
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn geoip_regions_by_country_then_continent() {
    support::init_logs();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("test-country.mmdb");
    mmdb::write(
        &db,
        &[
            ("127.0.30.0/24", "DE", "EU"),
            ("127.0.40.0/24", "JP", "AS"),
            ("127.0.50.0/23", "FR", "EU"),
            ("127.0.60.0/24", "", ""),
        ],
    );
    let map = ClientMap::new(vec![
        RegionClients {
            region: "de".into(),
            prefixes: nets(&["127.0.30.128/25"]),
            countries: vec!["DE".into()],
            continents: vec![],
        },
        RegionClients {
            region: "eu".into(),
            prefixes: vec![],
            countries: vec![],
            continents: vec!["EU".into()],
        },
        RegionClients {
            region: "asia".into(),
            prefixes: vec![],
            countries: vec![],
            continents: vec!["AS".into()],
        },
    ])
    .unwrap();
    let views = ["de", "eu", "asia"]
        .iter()
        .enumerate()
        .map(|(i, r)| EmbeddedView {
            region: (*r).into(),
            keys: vec![region_key(&format!("{r}-key"), i as u8 + 1)],
            transfer_keys: Vec::new(),
        })
        .collect::<Vec<_>>();
    let config = EmbeddedConfig::new(
        zone(),
        "127.0.0.1:0".parse().unwrap(),
        dir.path().join("dns"),
        vec![key()],
    )
    .with_views(views, Arc::new(map), Some(db.clone()));
    let server = EmbeddedServer::start(config).await.unwrap();
    let addr = server.local_addr();
    assert!(publish(addr, key(), "192.0.2.1").await.is_ok());
    for (i, r) in ["de", "eu", "asia"].iter().enumerate() {
        let k = region_key(&format!("{r}-key"), i as u8 + 1);
        let report = publish(addr, k, &format!("192.0.2.{}", 30 + i)).await;
        assert!(report.is_ok(), "{r}: {report:?}");
    }
    for (source, want) in [
        ("127.0.30.1", "192.0.2.30"),   // DE
        ("127.0.40.1", "192.0.2.32"),   // JP, continent AS
        ("127.0.51.9", "192.0.2.31"),   // FR, continent EU
        ("127.0.60.1", "192.0.2.1"),    // a record with no codes
        ("127.0.70.1", "192.0.2.1"),    // not in the database
        ("127.0.30.200", "192.0.2.30"), // the prefix of "de"
    ] {
        let m = ask_udp(addr, source, &query(51, &[])).await;
        assert_eq!(a_records(&m), [want], "from {source}");
    }
    // ECS: the database's network bounds the scope from below.
    for (subnet, want, scope) in [
        ("127.0.40.0/24", "192.0.2.32", 24),
        ("127.0.50.0/24", "192.0.2.31", 23),
        ("127.0.30.0/25", "192.0.2.30", 25),
    ] {
        let m = ask_udp(addr, "127.0.0.1", &query(52, &[(8, ecs(subnet))])).await;
        assert_eq!(a_records(&m), [want], "ECS {subnet}");
        assert_eq!(
            echo(&m).map(|e| e.scope_prefix()),
            Some(scope),
            "ECS {subnet}"
        );
    }
    server.shutdown().await.unwrap();

    // A missing database is an error naming the file.
    let map = ClientMap::new(vec![RegionClients {
        region: "eu".into(),
        prefixes: vec![],
        countries: vec![],
        continents: vec!["EU".into()],
    }])
    .unwrap();
    let missing = dir.path().join("nope.mmdb");
    let config = EmbeddedConfig::new(
        zone(),
        "127.0.0.1:0".parse().unwrap(),
        dir.path().join("dns2"),
        vec![key()],
    )
    .with_views(
        vec![EmbeddedView {
            region: "eu".into(),
            keys: vec![eu_key()],
            transfer_keys: Vec::new(),
        }],
        Arc::new(map),
        Some(missing.clone()),
    );
    let err = EmbeddedServer::start(config).await.err().unwrap();
    assert!(
        err.to_string()
            .contains(&format!("geoip database {}", missing.display())),
        "{err}"
    );
}

#[tokio::test]
async fn ambiguous_views_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let start = |views: Vec<EmbeddedView>| {
        let config = EmbeddedConfig::new(
            zone(),
            "127.0.0.1:0".parse().unwrap(),
            dir.path(),
            vec![key()],
        )
        .with_views(views, clients(), None);
        async move { EmbeddedServer::start(config).await.err().unwrap() }
    };
    let view = |region: &str, keys: Vec<TsigKey>| EmbeddedView {
        region: region.into(),
        keys,
        transfer_keys: Vec::new(),
    };
    let err = start(vec![view("eu", vec![eu_key()]), view("us", vec![eu_key()])]).await;
    assert!(matches!(err, Error::Embedded { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "embedded dns server for zone \"example.test.\": tsig key \"eu-key\" belongs to the view of region \"eu\" and to the view of region \"us\": an update signed with it could land in either"
    );
    let err = start(vec![view("eu", vec![key()])]).await;
    assert!(
        err.to_string().contains("belongs to the default view"),
        "{err}"
    );
    let err = start(vec![view("eu", vec![eu_key()]), view("eu", vec![us_key()])]).await;
    assert!(
        err.to_string().ends_with("region \"eu\" has two views"),
        "{err}"
    );
    let err = start(vec![view("../eu", vec![eu_key()])]).await;
    assert!(err.to_string().contains("cannot name a directory"), "{err}");
    assert!(!dir.path().join("regions").exists(), "nothing written");
}
