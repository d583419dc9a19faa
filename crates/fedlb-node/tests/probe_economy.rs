//! A dead server costs no more than a live one: the node's monitors, with real TCP probes
//! against a real loopback port, run each probe once per interval whether the server
//! answers or refuses (the re-probe rule itself is the core's, tested on the simulated
//! clock in fedlb-core/tests/reprobe.rs).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fedlb_core::{Health, MonitorConfig, ProbeSchedule, Report, Thresholds};
use fedlb_node::clock::Clock;
use fedlb_node::metrics::Metrics;
use fedlb_node::monitors::{MonitorSet, Plan};
use fedlb_probe::{ProbeSpec, Prober};

fn plan(target: SocketAddr) -> Plan {
    let config = MonitorConfig {
        service: "www".into(),
        server: "s1".into(),
        probes: vec![ProbeSchedule {
            id: "tcp".into(),
            interval: Duration::from_millis(200),
            thresholds: Thresholds { rise: 2, fall: 2 },
            affects_health: true,
        }],
        heartbeat: Duration::from_secs(1),
    };
    let mut probes = BTreeMap::new();
    probes.insert(
        "tcp".into(),
        (ProbeSpec::Tcp { target }, Duration::from_millis(500), "tcp"),
    );
    vec![(config, probes)]
}

/// Runs the monitors for `run_for`; returns how many probes finished and the reports.
async fn run(target: SocketAddr, run_for: Duration) -> (usize, Vec<Report>) {
    let clock = Clock::start();
    let mut set = MonitorSet::new(
        Arc::new(Prober::default()),
        1,
        false,
        Arc::new(Metrics::new()),
    );
    let mut reports = set.set_plan(plan(target), clock.now());
    let end = tokio::time::Instant::now() + run_for;
    let mut finished = 0;
    loop {
        let timer = clock.instant(set.poll_timeout().expect("a heartbeat is always due"));
        tokio::select! {
            _ = tokio::time::sleep_until(end) => break,
            _ = tokio::time::sleep_until(timer) => {
                reports.extend(set.handle_timeout(clock.now()));
            }
            ev = set.next() => {
                finished += 1;
                reports.extend(set.handle(ev, clock.now()));
            }
        }
    }
    (finished, reports)
}

#[tokio::test]
async fn a_refusing_server_is_probed_once_per_interval_not_in_a_loop() {
    // a port nobody listens on: every connect is refused at once
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (refused, reports) = run(closed, Duration::from_secs(2)).await;
    assert!(
        reports.iter().any(|r| r.health == Health::Down),
        "the dead server is seen as down"
    );
    // 2 s at a 200 ms interval: about 10 runs; before the re-probe rule moved into the
    // core, every refusal started the next probe at once (thousands in 2 s)
    assert!(
        refused <= 14,
        "{refused} probes of a refusing server in 2 s at a 200 ms interval"
    );

    let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = live.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = live.accept().await {
            drop(s);
        }
    });
    let (answered, reports) = run(addr, Duration::from_secs(2)).await;
    assert!(reports.iter().any(|r| r.health == Health::Up));
    assert!(
        refused <= answered + 2,
        "a dead server costs no more probes ({refused}) than a live one ({answered})"
    );
}
