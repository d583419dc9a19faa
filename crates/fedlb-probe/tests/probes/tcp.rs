use std::time::Duration;

use fedlb_core::{Measurement, ProbeId};
use fedlb_probe::{ProbeError, ProbeSpec, Prober};
use tokio::net::TcpListener;

use crate::support::closed_port;

#[tokio::test]
async fn a_listener_is_up_with_its_connect_time() {
    let listener = TcpListener::bind("127.0.0.3:0").await.unwrap();
    let spec = ProbeSpec::Tcp {
        target: listener.local_addr().unwrap(),
    };
    let result = Prober::default()
        .run(&ProbeId::from("tcp"), &spec, Duration::from_secs(2))
        .await;
    assert!(result.ok, "{result:?}");
    assert_eq!(result.error, None);
    let [Measurement::ResponseTime(rtt)] = result.measurements[..] else {
        panic!("one connect time expected: {result:?}");
    };
    assert!(
        rtt > Duration::ZERO && rtt < Duration::from_secs(1),
        "{rtt:?}"
    );
}

#[tokio::test]
async fn a_closed_port_is_down_as_refused() {
    let addr = closed_port("127.0.0.3").await;
    let spec = ProbeSpec::Tcp { target: addr };
    let outcome = Prober::default().probe(&spec, Duration::from_secs(2)).await;
    let Err(e @ ProbeError::Refused { .. }) = &outcome.result else {
        panic!("refused expected: {outcome:?}");
    };
    assert_eq!(e.to_string(), format!("tcp {addr}: connection refused"));
    assert!(outcome.suggests_crash());
    let result = outcome.to_probe_result(&ProbeId::from("tcp"));
    assert!(!result.ok);
    assert!(result.measurements.is_empty());
    assert_eq!(result.error.as_deref(), Some(e.to_string().as_str()));
}
