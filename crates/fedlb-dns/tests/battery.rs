//! One behaviour battery for the RFC 2136 publisher, run against each DNS server: the embedded
//! hickory server, BIND 9, Knot and PowerDNS. Every test starts its own server on a free
//! loopback port in its own temporary directory.

mod support;

use std::time::Duration;

use fedlb_dns::{FailureClass, PublishReport, Publisher, Status, TsigKey, run};
use support::{Kind, TestServer, addrs, answers, key, keys, ttls};
use tokio::sync::watch;

fn status(report: &PublishReport) -> &Status {
    assert_eq!(report.targets.len(), 1, "{report:?}");
    &report.targets[0].status
}

fn assert_updated(report: &PublishReport, changes: usize) {
    match status(report) {
        Status::Updated { changes: c, .. } => assert_eq!(*c, changes, "{report:?}"),
        other => panic!("expected an update with {changes} changes, got {other:?}"),
    }
}

fn failure(report: &PublishReport) -> &fedlb_dns::Error {
    match status(report) {
        Status::Failed(e) => e,
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// A record set is created: A and AAAA with the requested TTL, in one UPDATE.
async fn create(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let mut p = server.publisher(key());
    let report = p
        .publish(&answers(&[(
            "www.example.test",
            30,
            &["192.0.2.1", "2001:db8::1"],
        )]))
        .await;
    assert!(report.is_ok(), "{report:?}");
    assert_updated(&report, 2);
    let state = server.read(&["www.example.test"]).await;
    assert_eq!(
        addrs(&state, "www.example.test"),
        ["192.0.2.1", "2001:db8::1"]
    );
    assert_eq!(ttls(&state, "www.example.test"), [30, 30]);
    let m = p.metrics();
    assert_eq!(
        (m.targets[0].updates_sent, m.targets[0].updates_applied),
        (1, 1)
    );
}

/// An RRset is replaced as a whole (addresses and TTL), and a family that loses its last
/// address is deleted while the name keeps the other family.
async fn replace(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let mut p = server.publisher(key());
    p.publish(&answers(&[(
        "www.example.test",
        30,
        &["192.0.2.1", "2001:db8::1"],
    )]))
    .await;
    let report = p
        .publish(&answers(&[(
            "www.example.test",
            60,
            &["192.0.2.2", "192.0.2.3", "2001:db8::1"],
        )]))
        .await;
    assert_updated(&report, 2);
    let state = server.read(&["www.example.test"]).await;
    assert_eq!(
        addrs(&state, "www.example.test"),
        ["192.0.2.2", "192.0.2.3", "2001:db8::1"]
    );
    assert_eq!(ttls(&state, "www.example.test"), [60, 60]);

    let report = p
        .publish(&answers(&[("www.example.test", 60, &["192.0.2.3"])]))
        .await;
    assert_updated(&report, 2);
    let state = server.read(&["www.example.test"]).await;
    assert_eq!(addrs(&state, "www.example.test"), ["192.0.2.3"]);
    assert_eq!(p.metrics().targets[0].updates_sent, 3);
}

/// Nothing is sent in steady state: the same answers again and again, and a reconcile pass
/// that finds the server right, send no UPDATE.
async fn steady_state(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let mut p = server.publisher(key());
    let desired = answers(&[
        ("www.example.test", 30, &["192.0.2.1"]),
        ("api.example.test", 30, &["2001:db8::7"]),
    ]);
    assert_updated(&p.publish(&desired).await, 2);
    for _ in 0..5 {
        let report = p.publish(&desired).await;
        assert!(matches!(status(&report), Status::InSync), "{report:?}");
    }
    let report = p.reconcile().await;
    assert!(matches!(status(&report), Status::InSync), "{report:?}");
    let m = p.metrics();
    assert_eq!(m.targets[0].updates_sent, 1, "one UPDATE in total: {m:?}");
    assert_eq!(m.targets[0].reads, 2, "initial read + reconcile");
    assert_eq!(m.targets[0].drift_repairs, 0);
}

/// All changes of one tick go in one UPDATE, however many names change.
async fn batch(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let mut p = server.publisher(key());
    let names = ["a", "b", "c", "d", "e"].map(|n| format!("{n}.example.test"));
    let first: Vec<_> = names
        .iter()
        .map(|n| (n.as_str(), 30, &["192.0.2.1"][..]))
        .collect();
    let report = p.publish(&answers(&first)).await;
    assert_updated(&report, 5);
    assert_eq!(p.metrics().targets[0].updates_sent, 1);

    let mut second = first.clone();
    second[0].2 = &["192.0.2.2"];
    second[2].2 = &["192.0.2.3", "2001:db8::3"];
    second[4].1 = 90;
    let report = p.publish(&answers(&second)).await;
    assert_updated(&report, 4); // a: A, c: A + AAAA, e: A (ttl)
    assert_eq!(
        p.metrics().targets[0].updates_sent,
        2,
        "one UPDATE per tick"
    );
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let state = server.read(&refs).await;
    assert_eq!(addrs(&state, "a.example.test"), ["192.0.2.2"]);
    assert_eq!(addrs(&state, "b.example.test"), ["192.0.2.1"]);
    assert_eq!(
        addrs(&state, "c.example.test"),
        ["192.0.2.3", "2001:db8::3"]
    );
    assert_eq!(ttls(&state, "e.example.test"), [90]);
}

/// Compare-and-swap: when someone else replaced the RRset since fedlb wrote it, the prerequisite
/// fails, fedlb logs it, re-reads and writes its answer on the fresh state. When someone only
/// *added* a record, strict servers catch it too; hickory's subset check does not, but the
/// atomic RRset replacement still leaves exactly the desired records.
async fn cas_conflict(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let mut ours = server.publisher(key());
    let mut theirs = server.publisher(keys().remove(1));
    ours.publish(&answers(&[("www.example.test", 30, &["192.0.2.1"])]))
        .await;
    theirs
        .publish(&answers(&[("www.example.test", 30, &["192.0.2.9"])]))
        .await;

    let report = ours
        .publish(&answers(&[("www.example.test", 30, &["192.0.2.2"])]))
        .await;
    match status(&report) {
        Status::Updated {
            changes: 1,
            conflicts: 1,
        } => {}
        other => panic!("expected one conflict then an update, got {other:?}"),
    }
    let m = ours.metrics();
    assert_eq!(m.targets[0].failures_of(FailureClass::Conflict), 1);
    assert_eq!(
        m.targets[0].updates_sent, 3,
        "first write, conflicted write, write after re-read"
    );
    assert_eq!(
        addrs(
            &server.read(&["www.example.test"]).await,
            "www.example.test"
        ),
        ["192.0.2.2"]
    );

    // Someone adds a record next to ours.
    theirs
        .publish(&answers(&[(
            "www.example.test",
            30,
            &["192.0.2.2", "192.0.2.8"],
        )]))
        .await;
    let report = ours
        .publish(&answers(&[("www.example.test", 30, &["192.0.2.3"])]))
        .await;
    let conflicts = match status(&report) {
        Status::Updated { conflicts, .. } => *conflicts,
        other => panic!("expected an update, got {other:?}"),
    };
    assert_eq!(
        conflicts,
        u32::from(kind.strict_cas()),
        "strict servers see the added record"
    );
    assert_eq!(
        addrs(
            &server.read(&["www.example.test"]).await,
            "www.example.test"
        ),
        ["192.0.2.3"]
    );
}

/// Drift (a record changed by hand) is repaired by the reconcile loop, driven by `run`.
async fn drift_repaired(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let mut config = support::test_config(vec![server.addr], key());
    config.reconcile_interval = Duration::from_millis(200);
    let mut publisher = Publisher::Rfc2136(fedlb_dns::Rfc2136Publisher::new(config).unwrap());
    let desired = answers(&[("www.example.test", 30, &["192.0.2.1", "2001:db8::1"])]);
    let (_tx, rx) = watch::channel(desired);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // every pass's outcome; the last one says what the primary serves
    let (outcomes, mut outcome_rx) = tokio::sync::mpsc::channel(64);
    let last_outcome = tokio::spawn(async move {
        let mut last = None;
        while let Some(o) = outcome_rx.recv().await {
            last = Some(o);
        }
        last
    });
    let task = tokio::spawn(async move {
        run(&mut publisher, rx, outcomes, async {
            let _ = stopped.await;
        })
        .await;
        publisher
    });
    wait_for(&server, "www.example.test", &["192.0.2.1", "2001:db8::1"]).await;

    // By hand: replace the A RRset and drop the AAAA RRset.
    let mut hand = server.publisher(keys().remove(2));
    let report = hand
        .publish(&answers(&[("www.example.test", 30, &["192.0.2.66"])]))
        .await;
    // (not read back here: the 200 ms reconcile may already have repaired it; the
    // publisher's drift counter below says it did)
    assert!(report.is_ok() && report.changes() > 0, "{report:?}");

    wait_for(&server, "www.example.test", &["192.0.2.1", "2001:db8::1"]).await;
    stop.send(()).unwrap();
    let publisher = task.await.unwrap();
    let m = publisher.metrics();
    assert_eq!(m.targets[0].drift_repairs, 1, "{m:?}");
    assert_eq!(
        m.targets[0].updates_sent, 2,
        "initial create + one repair: {m:?}"
    );
    let last: fedlb_dns::PassOutcome = last_outcome.await.unwrap().expect("run reports every pass");
    let name = fedlb_dns::fqdn("www.example.test").unwrap();
    assert!(last.is_ok(), "{last:?}");
    assert_eq!(last.publisher, fedlb_dns::PublisherKind::Dns);
    let served = last.served(&name);
    assert_eq!(served.len(), 1, "one entry per primary: {last:?}");
    assert_eq!(served[0].server, server.addr);
    let addrs: Vec<String> = served[0]
        .serves
        .as_ref()
        .expect("the primary was read")
        .addrs(&name)
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(addrs, ["192.0.2.1", "2001:db8::1"], "{last:?}");
}

async fn wait_for(server: &TestServer, name: &str, want: &[&str]) {
    for _ in 0..100 {
        if addrs(&server.read(&[name]).await, name) == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} never became {want:?}");
}

fn wrong_secret() -> TsigKey {
    let mut k = key();
    k.secret.iter_mut().for_each(|b| *b ^= 0x5a);
    k
}

/// A key with the right name and a wrong secret is rejected; the error names the key and the
/// server and says what to fix; nothing changes on the server.
async fn wrong_key(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    server
        .publisher(key())
        .publish(&answers(&[("www.example.test", 30, &["192.0.2.1"])]))
        .await;
    let mut p = server.publisher(wrong_secret());
    let report = p
        .publish(&answers(&[("www.example.test", 30, &["192.0.2.2"])]))
        .await;
    let err = failure(&report);
    let text = err.to_string();
    assert!(text.contains(&server.addr.to_string()), "{text}");
    assert!(text.contains("fedlb-sha256"), "{text}");
    if kind.tsig_failures_are_refused() {
        assert_eq!(err.class(), FailureClass::Refused, "{text}");
        assert!(text.contains("failed to validate"), "{text}");
    } else {
        assert_eq!(err.class(), FailureClass::Tsig, "{text}");
        assert!(
            text.contains("(BADSIG)") && text.contains("secrets differ"),
            "{text}"
        );
    }
    let m = p.metrics();
    assert_eq!(m.targets[0].failures_of(err.class()), 1);
    assert_eq!(m.targets[0].last_error.as_deref(), Some(text.as_str()));
    assert_eq!(
        addrs(
            &server.read(&["www.example.test"]).await,
            "www.example.test"
        ),
        ["192.0.2.1"]
    );
}

/// A key the server does not know is rejected (BADKEY, or PowerDNS's REFUSED).
async fn unknown_key(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let stranger = TsigKey::new(
        "nobody-knows-me",
        fedlb_dns::TsigAlgorithm::HmacSha256,
        vec![9; 32],
    )
    .unwrap();
    let mut p = server.publisher(stranger);
    let report = p
        .publish(&answers(&[("www.example.test", 30, &["192.0.2.2"])]))
        .await;
    let err = failure(&report);
    let text = err.to_string();
    assert!(text.contains("nobody-knows-me"), "{text}");
    if kind.tsig_failures_are_refused() {
        assert_eq!(err.class(), FailureClass::Refused, "{text}");
    } else {
        assert_eq!(err.class(), FailureClass::Tsig, "{text}");
        assert!(
            text.contains("(BADKEY)") && text.contains("add the key to the server"),
            "{text}"
        );
    }
    assert!(server.read(&["www.example.test"]).await.is_empty());
}

/// Server down: the failure is reported (unreachable), further attempts back off; the server
/// comes back restored from its original zone file (our records gone): the retry re-reads and
/// publishes everything again.
async fn server_down_then_back(kind: Kind) {
    let Some(mut server) = TestServer::start(kind).await else {
        return;
    };
    let mut p = server.publisher(key());
    p.publish(&answers(&[
        ("www.example.test", 30, &["192.0.2.1"]),
        ("api.example.test", 30, &["192.0.2.5"]),
    ]))
    .await;
    server.stop().await;

    let latest = answers(&[
        ("www.example.test", 30, &["192.0.2.2"]),
        ("api.example.test", 30, &["192.0.2.5"]),
    ]);
    let report = p.publish(&latest).await;
    let err = failure(&report);
    assert!(
        matches!(
            err.class(),
            FailureClass::Unreachable | FailureClass::Timeout
        ),
        "{err}"
    );
    let report = p.publish(&latest).await;
    assert!(
        matches!(status(&report), Status::Deferred { .. }),
        "{report:?}"
    );

    server.restart(true).await;
    assert!(
        server.read(&["www.example.test"]).await.is_empty(),
        "restored from the old zone"
    );
    let until = p.poll_timeout().unwrap();
    tokio::time::sleep_until(until).await;
    let report = p.handle_timeout().await;
    assert_updated(&report, 2);
    let state = server.read(&["www.example.test", "api.example.test"]).await;
    assert_eq!(addrs(&state, "www.example.test"), ["192.0.2.2"]);
    assert_eq!(addrs(&state, "api.example.test"), ["192.0.2.5"]);
    let m = p.metrics();
    assert_eq!(m.targets[0].consecutive_failures, 0);
    assert!(m.targets[0].last_error.is_some());
}

/// Fail-static: an empty answer is never written (the last good one stays), a name outside the
/// zone is never written, and the rest of the tick still goes out.
async fn fail_static(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let mut p = server.publisher(key());
    p.publish(&answers(&[
        ("www.example.test", 30, &["192.0.2.1"]),
        ("api.example.test", 30, &["192.0.2.5"]),
    ]))
    .await;
    let report = p
        .publish(&answers(&[
            ("www.example.test", 30, &[]),
            ("api.example.test", 30, &["192.0.2.6"]),
            ("www.example.org", 30, &["192.0.2.7"]),
        ]))
        .await;
    let refused: Vec<_> = report.refused.iter().map(fedlb_dns::Error::class).collect();
    assert_eq!(
        refused,
        [FailureClass::OutOfZone, FailureClass::EmptyAnswer]
    );
    assert!(!report.is_ok());
    assert_updated(&report, 1);
    let state = server.read(&["www.example.test", "api.example.test"]).await;
    assert_eq!(
        addrs(&state, "www.example.test"),
        ["192.0.2.1"],
        "last good answer stays"
    );
    assert_eq!(addrs(&state, "api.example.test"), ["192.0.2.6"]);
    let m = p.metrics();
    assert_eq!(m.refused.get(&FailureClass::EmptyAnswer), Some(&1));
    assert_eq!(m.updates_sent(), 2);
    // the reconcile loop keeps the last good answer too
    assert!(matches!(status(&p.reconcile().await), Status::InSync));
}

/// hmac-sha384 and hmac-sha512 keys work as well as hmac-sha256.
async fn algorithms(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    for (i, k) in keys().into_iter().enumerate() {
        let alg = k.algorithm;
        let addr = format!("192.0.2.{}", 10 + i);
        let report = server
            .publisher(k)
            .publish(&answers(&[("www.example.test", 30, &[addr.as_str()])]))
            .await;
        assert!(report.is_ok(), "{alg}: {report:?}");
        assert_eq!(
            addrs(
                &server.read(&["www.example.test"]).await,
                "www.example.test"
            ),
            [addr]
        );
    }
}

/// Several primaries are published to independently and reported separately; a zone the server
/// does not serve is reported as such.
async fn primaries_and_zone(kind: Kind) {
    let Some(server) = TestServer::start(kind).await else {
        return;
    };
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut p =
        fedlb_dns::Rfc2136Publisher::new(support::test_config(vec![server.addr, dead], key()))
            .unwrap();
    let report = p
        .publish(&answers(&[("www.example.test", 30, &["192.0.2.1"])]))
        .await;
    assert_eq!(report.targets.len(), 2);
    assert_eq!(report.targets[0].target, server.addr.to_string());
    assert!(
        matches!(report.targets[0].status, Status::Updated { changes: 1, .. }),
        "{report:?}"
    );
    match &report.targets[1].status {
        Status::Failed(e) => assert_eq!(e.class(), FailureClass::Unreachable, "{e}"),
        other => panic!("dead primary: {other:?}"),
    }
    let m = p.metrics();
    assert_eq!(
        (m.targets[0].updates_sent, m.targets[1].updates_sent),
        (1, 0)
    );
    assert_eq!(m.targets[1].failures_of(FailureClass::Unreachable), 1);

    let mut config = support::test_config(vec![server.addr], key());
    config.zone = fedlb_dns::fqdn("other.test").unwrap();
    let mut other = fedlb_dns::Rfc2136Publisher::new(config).unwrap();
    let mut desired = fedlb_dns::DesiredZone::new("other.test").unwrap();
    desired.insert(
        fedlb_dns::RecordSet::new("www.other.test", 30)
            .unwrap()
            .with_addrs(["192.0.2.1".parse().unwrap()]),
    );
    let report = other.publish(&desired).await;
    let err = failure(&report);
    assert_eq!(err.class(), FailureClass::NotAuthoritative, "{err}");
    assert!(err.to_string().contains("\"other.test.\""), "{err}");
}

/// BIND's update-policy denial is a *signed* REFUSED: reported as a policy refusal, not as a
/// key problem.
#[tokio::test]
async fn bind_policy_denial_is_a_signed_refusal() {
    let Some(server) = TestServer::start(Kind::Bind).await else {
        return;
    };
    let mut p = server.publisher(support::limited_key());
    let report = p
        .publish(&answers(&[("www.example.test", 30, &["192.0.2.1"])]))
        .await;
    let err = failure(&report);
    assert!(
        matches!(err, fedlb_dns::Error::Refused { signed: true, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("update policy"), "{err}");
    // The name it may update goes through.
    let report = p
        .publish(&answers(&[("elsewhere.example.test", 30, &["192.0.2.1"])]))
        .await;
    tokio::time::sleep_until(p.poll_timeout().unwrap()).await;
    let report = if report.is_ok() {
        report
    } else {
        p.handle_timeout().await
    };
    assert!(report.is_ok(), "{report:?}");
}

macro_rules! battery {
    ($($module:ident => $kind:expr),* $(,)?) => {$(
        mod $module {
            use super::*;
            #[tokio::test]
            async fn create() { super::create($kind).await }
            #[tokio::test]
            async fn replace() { super::replace($kind).await }
            #[tokio::test]
            async fn steady_state_sends_nothing() { super::steady_state($kind).await }
            #[tokio::test]
            async fn batch_is_one_update() { super::batch($kind).await }
            #[tokio::test]
            async fn cas_conflict() { super::cas_conflict($kind).await }
            #[tokio::test]
            async fn drift_repaired() { super::drift_repaired($kind).await }
            #[tokio::test]
            async fn wrong_key() { super::wrong_key($kind).await }
            #[tokio::test]
            async fn unknown_key() { super::unknown_key($kind).await }
            #[tokio::test]
            async fn server_down_then_back() { super::server_down_then_back($kind).await }
            #[tokio::test]
            async fn fail_static() { super::fail_static($kind).await }
            #[tokio::test]
            async fn algorithms() { super::algorithms($kind).await }
            #[tokio::test]
            async fn primaries_and_zone() { super::primaries_and_zone($kind).await }
        }
    )*};
}

battery! {
    embedded => Kind::Embedded,
    bind => Kind::Bind,
    knot => Kind::Knot,
    pdns => Kind::Pdns,
}
