use std::time::Duration;

use fedlb_core::Measurement;
use fedlb_probe::{HttpTarget, LoadSource, ProbeError, ProbeSpec, Prober, RecordAs};
use tokio::net::TcpListener;

use crate::support::{Reply, connect_many, serve};

const STUB: &str = "Active connections: 291 \nserver accepts handled requests\n 16630948 16630948 31070465 \nReading: 6 Writing: 179 Waiting: 106 \n";

const PROM: &str = "# HELP http_requests_in_flight Requests being served.
# TYPE http_requests_in_flight gauge
http_requests_in_flight{handler=\"api\"} 7
http_requests_in_flight{handler=\"static\"} 2
# TYPE db_connections gauge
db_connections{pool=\"main\",role=\"rw\"} 12.5
";

fn page(addr: std::net::SocketAddr, path: &str) -> HttpTarget {
    HttpTarget {
        addr,
        path: path.into(),
        host: None,
        tls: None,
    }
}

#[tokio::test]
async fn nginx_stub_status_gives_connections_and_pending() {
    let server = serve("127.0.0.7", None, Reply::Respond(200, STUB)).await;
    let spec = ProbeSpec::Load(LoadSource::NginxStubStatus(page(
        server.addr,
        "/nginx_status",
    )));
    let outcome = Prober::default().probe(&spec, Duration::from_secs(2)).await;
    assert_eq!(
        outcome.result.unwrap(),
        vec![Measurement::Connections(291), Measurement::Pending(185)]
    );
    assert_eq!(server.seen.lock().unwrap()[0].path, "/nginx_status");
}

#[tokio::test]
async fn a_page_that_is_not_stub_status_is_down() {
    let server = serve(
        "127.0.0.7",
        None,
        Reply::Respond(200, "<html>welcome</html>"),
    )
    .await;
    let spec = ProbeSpec::Load(LoadSource::NginxStubStatus(page(server.addr, "/")));
    let e = Prober::default()
        .probe(&spec, Duration::from_secs(2))
        .await
        .result
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "stub_status http {}/: bad response: not an nginx stub_status page: \"<html>welcome</html>\"",
            server.addr
        )
    );
}

#[tokio::test]
async fn a_load_page_answering_404_is_down() {
    let server = serve("127.0.0.7", None, Reply::Respond(404, "no")).await;
    let spec = ProbeSpec::Load(LoadSource::NginxStubStatus(page(server.addr, "/missing")));
    let e = Prober::default()
        .probe(&spec, Duration::from_secs(2))
        .await
        .result
        .unwrap_err();
    assert!(matches!(e, ProbeError::Status { status: 404, .. }), "{e:?}");
}

fn prom(
    addr: std::net::SocketAddr,
    metric: &str,
    labels: &[(&str, &str)],
    record_as: RecordAs,
) -> ProbeSpec {
    ProbeSpec::Load(LoadSource::Prometheus {
        page: page(addr, "/metrics"),
        metric: metric.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        record_as,
    })
}

#[tokio::test]
async fn a_prometheus_metric_by_name_and_labels() {
    let server = serve("127.0.0.7", None, Reply::Respond(200, PROM)).await;
    let prober = &Prober::default();
    let read = |spec| async move { prober.probe(&spec, Duration::from_secs(2)).await.result };

    let one = prom(
        server.addr,
        "http_requests_in_flight",
        &[("handler", "api")],
        RecordAs::Pending,
    );
    assert_eq!(read(one).await.unwrap(), vec![Measurement::Pending(7)]);

    // Without labels every series of the metric adds up.
    let all = prom(
        server.addr,
        "http_requests_in_flight",
        &[],
        RecordAs::Pending,
    );
    assert_eq!(read(all).await.unwrap(), vec![Measurement::Pending(9)]);

    let metric = prom(
        server.addr,
        "db_connections",
        &[("role", "rw")],
        RecordAs::Metric("db_users".into()),
    );
    assert_eq!(
        read(metric).await.unwrap(),
        vec![Measurement::Metric("db_users".into(), 12.5)]
    );

    let missing = prom(
        server.addr,
        "http_requests_in_flight",
        &[("handler", "admin")],
        RecordAs::Connections,
    );
    assert_eq!(
        read(missing).await.unwrap_err().to_string(),
        format!(
            "prometheus http_requests_in_flight at http {}/metrics: bad response: no series http_requests_in_flight{{handler=\"admin\"}}",
            server.addr
        )
    );
}

#[tokio::test]
async fn proc_net_tcp_counts_established_connections_to_the_port() {
    let listener = TcpListener::bind("127.0.0.8:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let spec = ProbeSpec::Load(LoadSource::ProcNetTcp { port: addr.port() });
    let prober = Prober::default();
    let count = || async {
        match prober
            .probe(&spec, Duration::from_secs(2))
            .await
            .result
            .unwrap()[..]
        {
            [Measurement::Connections(n)] => n,
            ref other => panic!("{other:?}"),
        }
    };
    assert_eq!(count().await, 0);
    let mut clients = connect_many(addr, 3).await;
    assert_eq!(count().await, 3);
    // A client leaving turns the server's side into CLOSE_WAIT: no longer established.
    drop(clients.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while count().await != 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {}",
            count().await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(listener);
}
