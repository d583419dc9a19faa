//! `run` reports every pass as a small typed outcome: per published name, what each DNS
//! primary serves for it (or that it is failing), and nothing for the names it does not
//! publish — the caller never re-reads the zone.

mod support;

use std::time::Duration;

use fedlb_dns::{
    EmbeddedConfig, EmbeddedServer, PassOutcome, Publisher, PublisherKind, Rfc2136Publisher, run,
};
use support::{answers, key, test_config, zone};
use tokio::sync::{mpsc, watch};

async fn next(rx: &mut mpsc::Receiver<PassOutcome>) -> PassOutcome {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("an outcome within 10 s")
        .expect("run is still going")
}

fn served(o: &PassOutcome, name: &str) -> Vec<(String, Option<Vec<String>>, bool)> {
    let name = fedlb_dns::fqdn(name).unwrap();
    o.served(&name)
        .iter()
        .map(|p| {
            let addrs = p
                .serves
                .as_ref()
                .map(|z| z.addrs(&name).iter().map(|a| a.to_string()).collect());
            (p.server.to_string(), addrs, p.failing.is_some())
        })
        .collect()
}

#[tokio::test]
async fn item2_run_reports_what_each_primary_serves_per_name() {
    support::init_logs();
    let dir = tempfile::tempdir().unwrap();
    let server = EmbeddedServer::start(EmbeddedConfig::new(
        zone(),
        "127.0.0.1:0".parse().unwrap(),
        dir.path(),
        vec![key()],
    ))
    .await
    .unwrap();
    // a second primary nobody listens on: TCP connections to it are refused
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down_addr = down.local_addr().unwrap();
    drop(down);
    let up = server.local_addr();
    let mut publisher =
        Publisher::Rfc2136(Rfc2136Publisher::new(test_config(vec![up, down_addr], key())).unwrap());

    // nothing decided yet: no pass, no outcome
    let (tx, rx) = watch::channel(answers(&[]));
    let (outcomes, mut outcome_rx) = mpsc::channel(16);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        run(&mut publisher, rx, outcomes, async {
            let _ = stopped.await;
        })
        .await;
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), outcome_rx.recv())
            .await
            .is_err(),
        "no pass before there are answers"
    );

    tx.send(answers(&[("www.example.test", 30, &["192.0.2.1"])]))
        .unwrap();
    let o = next(&mut outcome_rx).await;
    assert_eq!(o.publisher, PublisherKind::Dns);
    assert!(!o.is_ok(), "the second primary failed: {o:?}");
    assert!(o.changes > 0, "{o:?}");
    assert_eq!(o.names.len(), 1, "one entry per published name: {o:?}");
    let www = served(&o, "www.example.test");
    assert_eq!(www[0], (up.to_string(), Some(vec![s("192.0.2.1")]), false));
    assert_eq!(www[1].0, down_addr.to_string());
    assert!(www[1].2, "the refused primary is failing: {o:?}");
    // a name it does not publish: the primary that was read serves nothing of fedlb's
    let other = served(&o, "ftp.example.test");
    assert_eq!(other[0], (up.to_string(), Some(Vec::new()), false));

    tx.send(answers(&[
        ("www.example.test", 30, &["192.0.2.2"]),
        ("api.example.test", 30, &["2001:db8::7"]),
    ]))
    .unwrap();
    let o = loop {
        // retries of the failing primary may report in between
        let o = next(&mut outcome_rx).await;
        if o.names.len() == 2 {
            break o;
        }
    };
    assert_eq!(
        served(&o, "www.example.test")[0].1,
        Some(vec![s("192.0.2.2")])
    );
    assert_eq!(
        served(&o, "api.example.test")[0].1,
        Some(vec![s("2001:db8::7")])
    );
    stop.send(()).unwrap();
    task.await.unwrap();
    server.shutdown().await.unwrap();
}

fn s(text: &str) -> String {
    text.to_owned()
}
