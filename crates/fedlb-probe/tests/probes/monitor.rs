//! The contract with the core: the monitor asks for runs, the prober answers with results,
//! and a crash hint makes the shell re-probe at once.

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

#[tokio::test]
async fn a_refused_run_marks_the_instance_down_and_asks_for_an_immediate_rerun() {
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
            thresholds: Thresholds { rise: 1, fall: 1 },
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
    monitor.handle_probe_result(outcome.to_probe_result(&id), now);
    assert_eq!(monitor.health(), Health::Down);
    let reason = monitor.current_report().reason;
    assert!(reason.contains("connection refused"), "{reason}");

    // The shell's reaction to a crash hint: re-probe now, not in ten seconds.
    now = now + Duration::from_millis(1);
    monitor.handle_trigger(now);
    assert_eq!(drain_runs(&mut monitor), [id]);
}
