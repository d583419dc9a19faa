//! The contract with the core: the monitor asks for runs, the prober answers with results,
//! and a crash hint in a result is the core's to act on (one confirmation re-run per
//! failure episode, never a re-run loop on a dead server).

use std::time::Duration;

use fedlb_core::{
    Health, Monitor, MonitorConfig, MonitorOutput, ProbeId, ProbeSchedule, Thresholds, Timestamp,
};
use fedlb_probe::{ProbeSpec, Prober};
use tokio::net::TcpListener;

fn drain_runs(m: &mut Monitor) -> Vec<ProbeId> {
    std::iter::from_fn(|| m.poll_output())
        .filter_map(|o| match o {
            MonitorOutput::RunProbe(id) => Some(id),
            MonitorOutput::Report(_) => None,
        })
        .collect()
}

async fn refused_run(fall: u32) -> (Monitor, ProbeId, Timestamp) {
    let listener = TcpListener::bind("127.0.0.10:0").await.unwrap();
    let spec = ProbeSpec::Tcp {
        target: listener.local_addr().unwrap(),
    };
    let id = ProbeId::from("tcp");
    let config = MonitorConfig {
        service: "www".into(),
        server: "web1".into(),
        probes: vec![ProbeSchedule {
            id: id.clone(),
            interval: Duration::from_secs(10),
            thresholds: Thresholds { rise: 1, fall },
            affects_health: true,
        }],
        heartbeat: Duration::from_secs(60),
    };
    let prober = Prober::default();
    let mut now = Timestamp::ZERO;
    let mut monitor = Monitor::new(config, 1, now);
    assert_eq!(drain_runs(&mut monitor), std::slice::from_ref(&id));
    let result = prober.run(&id, &spec, Duration::from_secs(1)).await;
    monitor.handle_probe_result(result, now);
    assert_eq!(monitor.health(), Health::Up);

    drop(listener);
    now = now + Duration::from_secs(10);
    monitor.handle_timeout(now);
    assert_eq!(drain_runs(&mut monitor), std::slice::from_ref(&id));
    let outcome = prober.probe(&spec, Duration::from_secs(1)).await;
    assert!(outcome.suggests_crash());
    let result = outcome.to_probe_result(&id);
    assert!(result.crash_hint, "the hint reaches the core");
    monitor.handle_probe_result(result, now);
    (monitor, id, now)
}

#[tokio::test]
async fn a_refused_run_marks_the_instance_down_and_asks_for_an_immediate_rerun() {
    // fall 2: the first refusal earns one confirmation re-run, at once
    let (mut monitor, id, now) = refused_run(2).await;
    assert_eq!(monitor.health(), Health::Up, "one failure of two");
    assert_eq!(drain_runs(&mut monitor), std::slice::from_ref(&id));
    // the confirmation is refused too: a crash, down at once
    let mut refused = fedlb_core::ProbeResult {
        probe: id.clone(),
        ok: false,
        measurements: Vec::new(),
        error: Some("connection refused".into()),
        crash_hint: true,
    };
    monitor.handle_probe_result(refused.clone(), now);
    assert_eq!(monitor.health(), Health::Down);
    let reason = monitor.current_report().reason;
    assert!(reason.contains("connection refused"), "{reason}");
    // a dead server is then probed once per interval, refused or not
    assert!(drain_runs(&mut monitor).is_empty());
    assert_eq!(monitor.poll_timeout(), Some(now + Duration::from_secs(10)));
    refused.error = Some("connection reset".into());
    monitor.handle_probe_result(refused, now + Duration::from_secs(10));
    assert!(drain_runs(&mut monitor).is_empty());

    // fall 1: down at the first refusal, and no re-run (it would only be refused again)
    let (mut monitor, _, now) = refused_run(1).await;
    assert_eq!(monitor.health(), Health::Down);
    assert!(drain_runs(&mut monitor).is_empty());
    assert_eq!(monitor.poll_timeout(), Some(now + Duration::from_secs(10)));
}
