use std::time::Duration;

use fedlb_probe::{HttpCheck, ProbeError, ProbeSpec, Prober, TlsOptions, TlsRoots};

use crate::support::{Reply, Seen, pki, serve};

fn check(addr: std::net::SocketAddr, path: &str) -> HttpCheck {
    HttpCheck::new(addr, path)
}

#[tokio::test]
async fn ok_with_response_time_path_and_host_header() {
    let server = serve("127.0.0.2", None, Reply::Respond(200, "status: all good\n")).await;
    let mut c = check(server.addr, "/health?deep=1");
    c.target.host = Some("www.example.test".into());
    c.body_contains = Some("all good".into());
    let outcome = Prober::default()
        .probe(&ProbeSpec::Http(c), Duration::from_secs(2))
        .await;
    assert!(outcome.ok(), "{outcome:?}");
    let rtt = outcome.latency().unwrap();
    assert!(rtt > Duration::ZERO && rtt <= outcome.elapsed, "{rtt:?}");
    assert_eq!(
        server.seen.lock().unwrap()[..],
        [Seen {
            path: "/health?deep=1".into(),
            host: Some("www.example.test".into()),
        }]
    );
}

#[tokio::test]
async fn the_default_host_header_is_the_address() {
    let server = serve("127.0.0.2", None, Reply::Respond(204, "")).await;
    let outcome = Prober::default()
        .probe(
            &ProbeSpec::Http(check(server.addr, "/")),
            Duration::from_secs(2),
        )
        .await;
    assert!(outcome.ok(), "{outcome:?}");
    let host = server.seen.lock().unwrap()[0].host.clone();
    assert_eq!(host, Some(server.addr.to_string()));
}

#[tokio::test]
async fn status_503_is_down_naming_target_and_range() {
    let server = serve("127.0.0.2", None, Reply::Respond(503, "overloaded")).await;
    let outcome = Prober::default()
        .probe(
            &ProbeSpec::Http(check(server.addr, "/health")),
            Duration::from_secs(2),
        )
        .await;
    let Err(e @ ProbeError::Status { status: 503, .. }) = &outcome.result else {
        panic!("status error expected: {outcome:?}");
    };
    assert_eq!(
        e.to_string(),
        format!("http {}/health: status 503, expected 200-399", server.addr)
    );
    assert!(!outcome.suggests_crash());
}

#[tokio::test]
async fn an_exact_expected_status_is_shown_alone() {
    let server = serve("127.0.0.2", None, Reply::Respond(301, "")).await;
    let mut c = check(server.addr, "/");
    c.expect_status = 200..=200;
    let outcome = Prober::default()
        .probe(&ProbeSpec::Http(c), Duration::from_secs(2))
        .await;
    let e = outcome.result.unwrap_err();
    assert!(e.to_string().ends_with(": status 301, expected 200"), "{e}");
}

#[tokio::test]
async fn a_body_without_the_text_is_down() {
    let server = serve("127.0.0.2", None, Reply::Respond(200, "status: degraded")).await;
    let mut c = check(server.addr, "/health");
    c.body_contains = Some("all good".into());
    let outcome = Prober::default()
        .probe(&ProbeSpec::Http(c), Duration::from_secs(2))
        .await;
    let e = outcome.result.unwrap_err();
    assert!(matches!(e, ProbeError::BodyMismatch { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "http {}/health: body does not contain \"all good\"",
            server.addr
        )
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let server = serve("127.0.0.2", None, Reply::Never).await;
    let timeout = Duration::from_millis(300);
    let outcome = Prober::default()
        .probe(&ProbeSpec::Http(check(server.addr, "/slow")), timeout)
        .await;
    let e = outcome.result.as_ref().unwrap_err();
    assert!(matches!(e, ProbeError::Timeout { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("http {}/slow: timed out after 300ms", server.addr)
    );
    assert!(outcome.elapsed >= timeout && outcome.elapsed < Duration::from_secs(2));
    // The request did reach the server: the timeout is the server's, not the connect's.
    assert_eq!(server.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_reset_connection_is_classified_as_reset() {
    let server = serve("127.0.0.2", None, Reply::Reset).await;
    let outcome = Prober::default()
        .probe(
            &ProbeSpec::Http(check(server.addr, "/")),
            Duration::from_secs(2),
        )
        .await;
    let e = outcome.result.as_ref().unwrap_err();
    assert!(matches!(e, ProbeError::Reset { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("http {}/: connection reset", server.addr)
    );
    assert!(outcome.suggests_crash());
}

fn https(addr: std::net::SocketAddr, host: &str, roots: TlsRoots) -> ProbeSpec {
    let mut c = check(addr, "/health");
    c.target.host = Some(host.into());
    c.target.tls = Some(TlsOptions {
        roots,
        server_name: None,
    });
    ProbeSpec::Http(c)
}

fn ca_file(pem: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), pem).unwrap();
    f
}

#[tokio::test]
async fn https_with_the_right_ca_is_up_and_sni_follows_the_host_header() {
    let pki = pki("fedlb test ca", &["svc.example.test"]);
    let server = serve("127.0.0.6", Some(pki.acceptor), Reply::Respond(200, "ok")).await;
    let ca = ca_file(&pki.ca_pem);
    let spec = https(
        server.addr,
        "svc.example.test",
        TlsRoots::CaFile(ca.path().into()),
    );
    let prober = Prober::default();
    let outcome = prober.probe(&spec, Duration::from_secs(2)).await;
    assert!(outcome.ok(), "{outcome:?}");
    assert!(outcome.latency().is_some());
    assert_eq!(
        server.seen.lock().unwrap()[0].host.as_deref(),
        Some("svc.example.test")
    );
    // The cached client configuration serves the next run.
    assert!(prober.probe(&spec, Duration::from_secs(2)).await.ok());
}

#[tokio::test]
async fn https_with_another_ca_is_down_with_a_tls_error() {
    let server_pki = pki("fedlb test ca", &["svc.example.test"]);
    let other = pki("another ca", &["svc.example.test"]);
    let server = serve(
        "127.0.0.6",
        Some(server_pki.acceptor),
        Reply::Respond(200, "ok"),
    )
    .await;
    let ca = ca_file(&other.ca_pem);
    let spec = https(
        server.addr,
        "svc.example.test",
        TlsRoots::CaFile(ca.path().into()),
    );
    let outcome = Prober::default().probe(&spec, Duration::from_secs(2)).await;
    let e = outcome.result.unwrap_err();
    assert!(matches!(e, ProbeError::Tls { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("https {}/health: tls: ", server.addr)),
        "{msg}"
    );
    assert!(
        msg.ends_with("invalid peer certificate: unknown issuer"),
        "{msg}"
    );
    assert!(server.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn https_with_a_name_the_certificate_lacks_is_down() {
    let pki = pki("fedlb test ca", &["svc.example.test"]);
    let server = serve("127.0.0.6", Some(pki.acceptor), Reply::Respond(200, "ok")).await;
    let ca = ca_file(&pki.ca_pem);
    let spec = https(
        server.addr,
        "other.example.test",
        TlsRoots::CaFile(ca.path().into()),
    );
    let e = Prober::default()
        .probe(&spec, Duration::from_secs(2))
        .await
        .result
        .unwrap_err();
    assert!(matches!(e, ProbeError::Tls { .. }), "{e:?}");
    assert!(e.to_string().contains("not valid for name"), "{e}");
}

#[tokio::test]
async fn https_insecure_accepts_an_unknown_ca_only_when_asked() {
    let pki = pki("fedlb test ca", &["svc.example.test"]);
    let server = serve("127.0.0.6", Some(pki.acceptor), Reply::Respond(200, "ok")).await;
    let spec = https(server.addr, "svc.example.test", TlsRoots::Insecure);
    let outcome = Prober::default().probe(&spec, Duration::from_secs(2)).await;
    assert!(outcome.ok(), "{outcome:?}");
}

#[tokio::test]
async fn an_unreadable_ca_file_is_a_tls_error_naming_it() {
    let server = serve("127.0.0.6", None, Reply::Respond(200, "ok")).await;
    let spec = https(
        server.addr,
        "svc.example.test",
        TlsRoots::CaFile("/nonexistent/ca.pem".into()),
    );
    let e = Prober::default()
        .probe(&spec, Duration::from_secs(2))
        .await
        .result
        .unwrap_err();
    assert!(matches!(e, ProbeError::Tls { .. }), "{e:?}");
    assert!(e.to_string().contains("ca file /nonexistent/ca.pem"), "{e}");
}
