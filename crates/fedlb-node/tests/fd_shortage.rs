//! A node out of file descriptors: its probes cannot open sockets, which says nothing
//! about the servers. This test lowers its own process's descriptor limit, so it lives in a
//! test binary of its own.

mod support;

use std::sync::Arc;
use std::time::Duration;

use fedlb_core::Health;
use fedlb_node::clock::{Clock, new_epoch, sleep_until};
use fedlb_node::metrics::Metrics;
use fedlb_node::monitors::{MonitorSet, plan};
use fedlb_probe::Prober;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use support::*;

/// Runs the monitors for `d`, keeping in `last` the last health reported.
async fn run_for(monitors: &mut MonitorSet, clock: &Clock, d: Duration, last: &mut Option<Health>) {
    let end = tokio::time::Instant::now() + d;
    loop {
        let deadline = monitors.poll_timeout();
        let got = tokio::select! {
            () = tokio::time::sleep_until(end) => return,
            ev = monitors.next() => monitors.handle(ev, clock.now()),
            () = sleep_until(clock, deadline) => monitors.handle_timeout(clock.now()),
        };
        for r in got {
            *last = Some(r.health);
        }
    }
}

#[tokio::test]
async fn item4_a_probe_failing_with_emfile_does_not_mark_the_server_down() {
    const B: u8 = 233;
    let toml = [
        header(B, r#""least_loaded""#),
        farm(B, 2, "near", 10, &["a1"]),
        remote_server(B, 11, "a1"),
    ]
    .concat();
    let topology = fedlb_topology::Loader::new()
        .read_key_files(false)
        .load_str(&toml, fedlb_topology::Format::Toml, "test")
        .unwrap()
        .topology;
    let _backend = Backend::start("a1", std::net::SocketAddr::new(ip(B, 11), 8080)).await;
    let clock = Clock::start();
    let metrics = Arc::new(Metrics::new());
    let mut monitors = MonitorSet::new(
        Arc::new(Prober::default()),
        new_epoch(),
        false,
        metrics.clone(),
    );
    let mut last = None;
    for r in monitors.set_plan(plan(&topology, "near").unwrap(), clock.now()) {
        last = Some(r.health);
    }
    run_for(&mut monitors, &clock, Duration::from_secs(1), &mut last).await;
    assert_eq!(last, Some(Health::Up), "the server is up to begin with");

    // use up every file descriptor this process may open
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, 512, hard).unwrap();
    let mut hog = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => hog.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(nix::libc::EMFILE), "{e}");
                break;
            }
        }
    }
    // 2 s at a 200 ms interval with fall 2: ten runs that cannot open a socket
    run_for(&mut monitors, &clock, Duration::from_secs(2), &mut last).await;
    drop(hog);
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    assert_eq!(
        last,
        Some(Health::Up),
        "probes that could not run must not mark the server down"
    );
    let text = metrics.render();
    let shortages = text
        .lines()
        .find_map(|l| l.strip_prefix(r#"fedlb_fd_shortages_total{during="probe"} "#))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        shortages >= 5.0,
        "each run out of descriptors is counted: {shortages}\n{text}"
    );

    // descriptors back: the probes run again, and the server is still up
    run_for(&mut monitors, &clock, Duration::from_secs(1), &mut last).await;
    assert_eq!(last, Some(Health::Up));
}
