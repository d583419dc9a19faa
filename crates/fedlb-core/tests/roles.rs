//! The role state machines: monitor, farm node and global node, driven by hand.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use fedlb_core::*;

fn probe(id: &str, interval_ms: u64, affects_health: bool) -> ProbeSchedule {
    ProbeSchedule {
        id: ProbeId::from(id),
        interval: Duration::from_millis(interval_ms),
        thresholds: Thresholds { rise: 2, fall: 2 },
        affects_health,
    }
}

fn monitor() -> Monitor {
    let cfg = MonitorConfig {
        service: "www".into(),
        server: "s1".into(),
        probes: vec![probe("http", 1_000, true), probe("load", 5_000, false)],
        heartbeat: Duration::from_secs(2),
    };
    Monitor::new(cfg, 1, at(0))
}

fn drain(m: &mut Monitor) -> (Vec<String>, Vec<Report>) {
    let (mut runs, mut reports) = (vec![], vec![]);
    while let Some(o) = m.poll_output() {
        match o {
            MonitorOutput::RunProbe(p) => runs.push(p.0),
            MonitorOutput::Report(r) => reports.push(r),
        }
    }
    (runs, reports)
}

fn result(probe: &str, ok: bool, m: Vec<Measurement>) -> ProbeResult {
    ProbeResult {
        probe: probe.into(),
        ok,
        measurements: m,
        error: (!ok).then(|| "connection refused".to_owned()),
        crash_hint: false,
    }
}

#[test]
fn monitor_runs_each_probe_on_its_own_interval() {
    let mut m = monitor();
    assert_eq!(drain(&mut m).0, ["http", "load"]);
    m.handle_probe_result(result("http", true, vec![]), at(100));
    m.handle_probe_result(result("load", true, vec![Measurement::Pending(7)]), at(100));
    drain(&mut m);
    assert_eq!(m.poll_timeout(), Some(at(1_100)));
    m.handle_timeout(at(1_100));
    assert_eq!(drain(&mut m).0, ["http"]);
    assert_eq!(
        m.poll_timeout(),
        Some(at(2_100)),
        "heartbeat next; load at 5.1 s"
    );
    m.handle_timeout(at(5_100));
    let (runs, reports) = drain(&mut m);
    assert_eq!(
        runs,
        ["load"],
        "http is still running, so it is not started twice"
    );
    assert_eq!(reports.len(), 1, "heartbeat");
}

#[test]
fn monitor_reports_a_health_change_at_once_and_heartbeats_otherwise() {
    let mut m = monitor();
    drain(&mut m);
    m.handle_probe_result(
        result(
            "http",
            true,
            vec![Measurement::ResponseTime(Duration::from_millis(3))],
        ),
        at(10),
    );
    let (_, reports) = drain(&mut m);
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].health, Health::Up);
    assert_eq!(reports[0].seq, 1);
    assert_eq!(
        reports[0].readings.response_time.unwrap().value,
        Duration::from_millis(3)
    );

    // one failure: fall is 2, so no change yet
    m.handle_probe_result(result("http", false, vec![]), at(1_010));
    assert!(drain(&mut m).1.is_empty());
    m.handle_probe_result(result("http", false, vec![]), at(2_010));
    let (_, reports) = drain(&mut m);
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].health, Health::Down);
    assert_eq!(reports[0].reason, "http failing: connection refused");

    // no change for a while: heartbeats every 2 s
    m.handle_timeout(at(4_010));
    let (_, reports) = drain(&mut m);
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].health, Health::Down);
    assert_eq!(reports[0].seq, 3);
}

#[test]
fn a_failing_measurement_probe_does_not_make_the_instance_down() {
    let mut m = monitor();
    drain(&mut m);
    m.handle_probe_result(result("http", true, vec![]), at(1));
    m.handle_probe_result(result("load", false, vec![]), at(2));
    assert_eq!(m.health(), Health::Up);
}

#[test]
fn monitor_trigger_reprobes_at_once() {
    let mut m = monitor();
    drain(&mut m);
    m.handle_probe_result(result("http", true, vec![]), at(1));
    m.handle_probe_result(result("load", true, vec![]), at(1));
    drain(&mut m);
    m.handle_trigger(at(50));
    assert_eq!(drain(&mut m).0, ["http"], "only health probes are re-run");
}

#[test]
fn monitor_pause_swap_resume_keeps_state_of_kept_probes() {
    let mut m = monitor();
    drain(&mut m);
    m.handle_probe_result(result("http", true, vec![]), at(1));
    m.handle_probe_result(result("load", true, vec![]), at(1));
    drain(&mut m);
    m.pause();
    m.handle_timeout(at(10_000));
    assert!(drain(&mut m).0.is_empty(), "paused: no probes");
    let mut cfg = m.config().clone();
    cfg.probes = vec![probe("http", 500, true), probe("tcp", 500, true)];
    m.set_config(cfg, at(10_000));
    assert_eq!(m.health(), Health::Unknown, "tcp has no result yet");
    m.resume(at(10_000));
    let (runs, _) = drain(&mut m);
    assert_eq!(runs, ["http", "tcp"]);
    m.handle_probe_result(result("tcp", true, vec![]), at(10_010));
    assert_eq!(m.health(), Health::Up, "http kept its up state");
}

#[test]
fn item4_a_probe_not_run_for_want_of_descriptors_leaves_health_alone() {
    let mut m = monitor();
    drain(&mut m);
    m.handle_probe_result(result("http", true, vec![]), at(1));
    m.handle_probe_result(result("http", true, vec![]), at(2));
    drain(&mut m);
    assert_eq!(m.health(), Health::Up);
    // the node has no file descriptor left: many runs in a row cannot open a socket
    for i in 1..=5u64 {
        let now = at(2 + i * 1_000);
        m.handle_timeout(now);
        assert_eq!(drain(&mut m).0, ["http"], "due again after its interval");
        m.handle_probe_not_run(&ProbeId::from("http"), now);
        assert_eq!(m.health(), Health::Up, "not run is not a failure");
        assert_eq!(
            m.poll_timeout()
                .map(|t| t <= now + Duration::from_millis(1_000)),
            Some(true)
        );
    }
    // one real failure still counts as one (fall is 2)
    m.handle_probe_result(result("http", false, vec![]), at(7_000));
    assert_eq!(m.health(), Health::Up);
    m.handle_probe_result(result("http", false, vec![]), at(8_000));
    assert_eq!(m.health(), Health::Down);
}

fn member(name: &str, last: u8) -> MemberSpec {
    MemberSpec {
        id: name.into(),
        kind: MemberKind::Server,
        addresses: vec![ip(last)],
        capacity: 100.0,
        distance: None,
        liveness: Liveness {
            stale_after: Duration::from_secs(3),
            down_after: Duration::from_secs(6),
        },
        sources: Vec::new(),
    }
}

fn farm(name: &str, policy: Policy, servers: &[(&str, u8)]) -> FarmState {
    let mut sel = SelectorConfig::new(policy);
    sel.hysteresis = Hysteresis::NONE;
    let mut services = BTreeMap::new();
    services.insert(
        ServiceId::from("www"),
        TierService {
            selector: sel,
            members: servers.iter().map(|(n, l)| member(n, *l)).collect(),
        },
    );
    let cfg = FarmConfig {
        farm: name.into(),
        services,
        heartbeat: Duration::from_secs(1),
        metrics: Default::default(),
        node: String::new(),
    };
    let mut f = FarmState::new(cfg, 9, 1, at(0));
    // these tests follow every update; coalescing has its own test below
    f.set_coalesce(Duration::ZERO);
    f
}

fn report(server: &str, seq: u64, health: Health, pending: u64) -> Report {
    let readings = Readings {
        pending: Some(Sample::new(pending, at(0))),
        ..Readings::default()
    };
    Report {
        service: "www".into(),
        server: server.into(),
        epoch: 1,
        seq,
        health,
        reason: format!("{health}"),
        readings,
    }
}

fn summaries(f: &mut FarmState) -> Vec<Summary> {
    let mut out = vec![];
    while let Some(o) = f.poll_output() {
        if let FarmOutput::Summary(s) = o {
            out.push(s);
        }
    }
    out
}

#[test]
fn farm_applies_the_local_policy_and_summarises_as_one_candidate() {
    let mut f = farm(
        "eu",
        Policy::LeastLoaded,
        &[("s1", 1), ("s2", 2), ("s3", 3)],
    );
    f.handle_report(&report("s1", 1, Health::Up, 40), at(10))
        .unwrap();
    f.handle_report(&report("s2", 1, Health::Up, 10), at(10))
        .unwrap();
    f.handle_report(&report("s3", 1, Health::Down, 0), at(10))
        .unwrap();
    let s = summaries(&mut f).pop().unwrap();
    assert_eq!(s.health, Health::Up);
    assert_eq!(s.chosen, vec![CandidateId::from("s2")]);
    assert_eq!(s.addresses, vec![ip(2)]);
    assert_eq!(s.members, Members { up: 2, total: 3 });
    assert_eq!(s.capacity, 200.0);
    assert_eq!(s.readings.pending.unwrap().value, 50);
    assert!(s.why.starts_with("s2: least loaded"), "{}", s.why);
    // as a candidate one tier up
    let u = s.to_update();
    assert_eq!(u.addresses, Some(vec![ip(2)]));
    assert_eq!(u.members, Some(Members { up: 2, total: 3 }));
}

#[test]
fn farm_pushes_changes_at_once_and_load_only_on_heartbeat() {
    let mut f = farm("eu", Policy::LeastLoaded, &[("s1", 1), ("s2", 2)]);
    f.handle_report(&report("s1", 1, Health::Up, 10), at(0))
        .unwrap();
    f.handle_report(&report("s2", 1, Health::Up, 20), at(0))
        .unwrap();
    summaries(&mut f);
    // a load change that does not change the choice waits for the heartbeat
    f.handle_report(&report("s2", 2, Health::Up, 15), at(100))
        .unwrap();
    assert!(summaries(&mut f).is_empty());
    f.handle_timeout(at(1_000));
    let hb = summaries(&mut f);
    assert_eq!(hb.len(), 1);
    assert_eq!(hb[0].readings.pending.unwrap().value, 25);
    // a health change goes at once
    f.handle_report(&report("s1", 2, Health::Down, 10), at(1_100))
        .unwrap();
    let s = summaries(&mut f);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].addresses, vec![ip(2)]);
}

#[test]
fn a_repeated_report_asks_for_no_decision_but_a_new_reading_does() {
    let mut f = farm("eu", Policy::LeastLoaded, &[("s1", 1), ("s2", 2)]);
    f.set_coalesce(Duration::from_millis(100));
    f.handle_report(&report("s1", 1, Health::Up, 10), at(0))
        .unwrap();
    f.handle_report(&report("s2", 1, Health::Up, 20), at(0))
        .unwrap();
    f.handle_timeout(at(200));
    summaries(&mut f);
    // the next thing to do is the heartbeat
    let idle = f.poll_timeout(at(300));
    assert_eq!(idle, Some(at(1_000)));
    // the same load again, measured later: nothing to decide before the heartbeat
    f.handle_report(&report("s2", 2, Health::Up, 20), at(300))
        .unwrap();
    assert_eq!(f.poll_timeout(at(300)), idle);
    // another load: decided within the coalescing window
    f.handle_report(&report("s2", 3, Health::Up, 21), at(400))
        .unwrap();
    assert_eq!(f.poll_timeout(at(400)), Some(at(500)));
}

#[test]
fn farm_marks_silent_servers_stale_then_down() {
    let mut f = farm("eu", Policy::LeastLoaded, &[("s1", 1), ("s2", 2)]);
    f.handle_report(&report("s1", 1, Health::Up, 1), at(0))
        .unwrap();
    f.handle_report(&report("s2", 1, Health::Up, 50), at(0))
        .unwrap();
    summaries(&mut f);
    // s2 keeps reporting, s1 falls silent
    for t in (1..=3).map(|i| i * 1_000) {
        f.handle_report(&report("s2", 1 + t / 1000, Health::Up, 50), at(t))
            .unwrap();
    }
    assert_eq!(f.tier().poll_timeout(at(2_999)), Some(at(3_000)));
    f.handle_timeout(at(3_000));
    let s = summaries(&mut f).pop().unwrap();
    assert_eq!(s.addresses, vec![ip(2)], "s1 stale after 3 s");
    let c = f.tier().services()[&ServiceId::from("www")].candidates(at(3_000));
    assert_eq!(c[0].health, Health::Stale);
    let c = f.tier().services()[&ServiceId::from("www")].candidates(at(6_000));
    assert_eq!(c[0].health, Health::Down);
}

#[test]
fn farm_refuses_unknown_servers_and_reordered_reports() {
    let mut f = farm("eu", Policy::LeastLoaded, &[("s1", 1)]);
    assert!(matches!(
        f.handle_report(&report("mallory", 1, Health::Up, 0), at(0)),
        Err(Refused::UnknownMember { .. })
    ));
    f.handle_report(&report("s1", 5, Health::Up, 0), at(0))
        .unwrap();
    assert!(matches!(
        f.handle_report(&report("s1", 4, Health::Down, 0), at(1)),
        Err(Refused::Outdated {
            seq: 4,
            last: 5,
            ..
        })
    ));
    // a restarted agent (new epoch) starts its numbers over
    let mut r = report("s1", 1, Health::Down, 0);
    r.epoch = 2;
    f.handle_report(&r, at(2)).unwrap();
}

#[test]
fn farm_with_no_healthy_server_says_down_but_keeps_its_last_answer() {
    let mut f = farm("eu", Policy::LeastLoaded, &[("s1", 1)]);
    f.handle_report(&report("s1", 1, Health::Up, 0), at(0))
        .unwrap();
    f.handle_report(&report("s1", 2, Health::Down, 0), at(1))
        .unwrap();
    let s = summaries(&mut f).pop().unwrap();
    assert_eq!(s.health, Health::Down);
    assert!(s.degraded);
    assert_eq!(s.addresses, vec![ip(1)]);
}

#[test]
fn farm_reload_adds_and_removes_servers_keeping_known_state() {
    let mut f = farm("eu", Policy::LeastLoaded, &[("s1", 1), ("s2", 2)]);
    f.handle_report(&report("s1", 1, Health::Up, 30), at(0))
        .unwrap();
    f.handle_report(&report("s2", 1, Health::Up, 10), at(0))
        .unwrap();
    summaries(&mut f);
    let mut cfg = FarmConfig {
        farm: "eu".into(),
        services: BTreeMap::new(),
        heartbeat: Duration::from_secs(1),
        metrics: Default::default(),
        node: String::new(),
    };
    let mut sel = SelectorConfig::new(Policy::LeastLoaded);
    sel.hysteresis = Hysteresis::NONE;
    cfg.services.insert(
        "www".into(),
        TierService {
            selector: sel,
            members: vec![member("s1", 1), member("s4", 4)],
        },
    );
    f.set_config(cfg, at(100));
    let s = summaries(&mut f).pop().unwrap();
    assert_eq!(s.addresses, vec![ip(1)], "s2 removed; s1 still known up");
    assert_eq!(s.members, Members { up: 1, total: 2 });
    f.handle_report(&report("s4", 1, Health::Up, 0), at(200))
        .unwrap();
    assert_eq!(summaries(&mut f).pop().unwrap().addresses, vec![ip(4)]);
}

#[test]
fn item3_farm_summary_carries_its_local_policy_and_member_kinds() {
    let mut f = farm("eu", Policy::LeastLoaded, &[("s1", 1), ("s2", 2)]);
    f.handle_report(&report("s1", 1, Health::Up, 30), at(0))
        .unwrap();
    f.handle_report(&report("s2", 1, Health::Up, 10), at(0))
        .unwrap();
    let s = summaries(&mut f).pop().unwrap();
    assert_eq!(s.policy, "least loaded");
    assert_eq!(s.servers.len(), 2);
    assert!(s.servers.iter().all(|v| v.kind == MemberKind::Server));
    // a fail-static why names no policy; the summary still does
    f.handle_report(&report("s1", 2, Health::Down, 0), at(10))
        .unwrap();
    f.handle_report(&report("s2", 2, Health::Down, 0), at(10))
        .unwrap();
    let s = summaries(&mut f).pop().unwrap();
    assert!(s.degraded, "{}", s.why);
    assert!(!s.why.contains("least loaded"), "{}", s.why);
    assert_eq!(s.policy, "least loaded");
    // a reload that changes only the policy is summarised at once, before any heartbeat
    let mut sel = SelectorConfig::new(Policy::FastestResponse);
    sel.hysteresis = Hysteresis::NONE;
    let mut cfg = FarmConfig {
        farm: "eu".into(),
        services: BTreeMap::new(),
        heartbeat: Duration::from_secs(1),
        metrics: Default::default(),
        node: String::new(),
    };
    cfg.services.insert(
        "www".into(),
        TierService {
            selector: sel,
            members: vec![member("s1", 1), member("s2", 2)],
        },
    );
    f.set_config(cfg, at(20));
    let s = summaries(&mut f)
        .pop()
        .expect("a summary right after the policy changed");
    assert_eq!(s.policy, "fastest response");
}

fn global(policy: Policy, farms: &[(&str, f64)], direct: &[(&str, u8, f64)]) -> GlobalState {
    let mut g = GlobalState::new(global_config(policy, farms, direct), 1);
    g.set_coalesce(Duration::ZERO);
    g
}

fn global_config(
    policy: Policy,
    farms: &[(&str, f64)],
    direct: &[(&str, u8, f64)],
) -> GlobalConfig {
    let mut sel = SelectorConfig::new(policy);
    sel.hysteresis = Hysteresis {
        margin: 0.2,
        dwell: Duration::from_secs(10),
    };
    let mut members: Vec<MemberSpec> = farms
        .iter()
        .map(|(n, d)| {
            let mut m = member(n, 0);
            m.kind = MemberKind::Farm;
            m.addresses = vec![];
            m.distance = Some(Distance::Pinned(*d));
            m
        })
        .collect();
    members.extend(direct.iter().map(|(n, l, d)| {
        let mut m = member(n, *l);
        m.distance = Some(Distance::Pinned(*d));
        m
    }));
    let mut services = BTreeMap::new();
    services.insert(
        ServiceId::from("www"),
        TierService {
            selector: sel,
            members,
        },
    );
    GlobalConfig::new(services)
}

fn publishes(g: &mut GlobalState) -> Vec<Decision> {
    let mut out = vec![];
    while let Some(GlobalOutput::Publish(p)) = g.poll_output() {
        out.push(p.decision);
    }
    out
}

fn summary_of(f: &mut FarmState) -> Summary {
    summaries(f).pop().expect("a summary")
}

/// Two farms and a global node, with every server reporting once a second.
struct World {
    eu: FarmState,
    us: FarmState,
    g: GlobalState,
    seq: u64,
}

impl World {
    fn new() -> Self {
        World {
            eu: farm("eu", Policy::LeastLoaded, &[("eu1", 1), ("eu2", 2)]),
            us: farm("us", Policy::LeastLoaded, &[("us1", 11)]),
            g: global(
                Policy::Closest(ClosestBy::Auto),
                &[("eu", 12.0), ("us", 85.0)],
                &[],
            ),
            seq: 0,
        }
    }

    /// One second of the world: reports from every server, summaries forwarded.
    /// Returns what the global node published.
    fn tick(&mut self, t: u64, eu1: Health, eu2: Health) -> Vec<Decision> {
        let now = at(t);
        self.seq += 1;
        let seq = self.seq;
        self.eu
            .handle_report(&report("eu1", seq, eu1, 1), now)
            .unwrap();
        self.eu
            .handle_report(&report("eu2", seq, eu2, 5), now)
            .unwrap();
        self.us
            .handle_report(&report("us1", seq, Health::Up, 1), now)
            .unwrap();
        for f in [&mut self.eu, &mut self.us] {
            f.handle_timeout(now);
            for s in summaries(f) {
                self.g.handle_summary(&s, now).unwrap();
            }
        }
        self.g.handle_timeout(now);
        publishes(&mut self.g)
    }
}

#[test]
fn hierarchy_backend_down_moves_local_then_farm_down_moves_global() {
    use Health::{Down, Up};
    let mut w = World::new();
    assert_eq!(w.tick(0, Up, Up).pop().unwrap().addresses, vec![ip(1)]);
    let d = latest(&w.g);
    assert_eq!(
        d.why,
        "eu: closest (12 ms) of 2 healthy farms; next us 85 ms"
    );
    assert!(
        w.tick(1_000, Up, Up).is_empty(),
        "steady state publishes nothing"
    );

    // eu1 dies: eu answers eu2; the global choice (eu) stays but its answer changes
    assert_eq!(
        w.tick(2_000, Down, Up).pop().unwrap().addresses,
        vec![ip(2)]
    );

    // eu2 dies too: eu is down; the global node moves to us at once
    let d = w.tick(3_000, Down, Down).pop().unwrap();
    assert_eq!(d.addresses, vec![ip(11)]);
    assert!(d.why.contains("eu is down"), "{}", d.why);

    // eu recovers at 4 s: back only after the 10 s dwell
    for t in (4..14).map(|s| s * 1_000) {
        assert!(w.tick(t, Up, Up).is_empty(), "t={t}: inside the dwell");
    }
    let d = w.tick(14_000, Up, Up).pop().unwrap();
    assert_eq!(d.addresses, vec![ip(1)]);
}

fn summary_of_heartbeat(f: &mut FarmState, now: Timestamp) -> Summary {
    f.handle_timeout(now);
    summaries(f)
        .pop()
        .unwrap_or_else(|| f.summary(&"www".into(), now).unwrap())
}

#[test]
fn global_marks_a_silent_farm_stale_and_fails_over() {
    let mut eu = farm("eu", Policy::LeastLoaded, &[("eu1", 1)]);
    let mut us = farm("us", Policy::LeastLoaded, &[("us1", 11)]);
    let mut g = global(
        Policy::Closest(ClosestBy::Auto),
        &[("eu", 12.0), ("us", 85.0)],
        &[],
    );
    eu.handle_report(&report("eu1", 1, Health::Up, 1), at(0))
        .unwrap();
    us.handle_report(&report("us1", 1, Health::Up, 1), at(0))
        .unwrap();
    g.handle_summary(&summary_of(&mut eu), at(0)).unwrap();
    g.handle_summary(&summary_of(&mut us), at(0)).unwrap();
    publishes(&mut g);
    // us keeps its heartbeat, eu's farm node is gone
    for t in [1_000, 2_000] {
        us.handle_timeout(at(t));
        g.handle_summary(&summaries(&mut us).pop().unwrap(), at(t))
            .unwrap();
    }
    g.handle_timeout(at(3_000));
    let d = publishes(&mut g).pop().unwrap();
    assert_eq!(d.addresses, vec![ip(11)]);
    assert!(d.why.contains("eu is stale"), "{}", d.why);
}

#[test]
fn mixed_mode_direct_servers_compete_with_farms() {
    let mut eu = farm("eu", Policy::LeastLoaded, &[("eu1", 1)]);
    let mut g = global(
        Policy::Closest(ClosestBy::Auto),
        &[("eu", 40.0)],
        &[("edge", 50, 5.0)],
    );
    eu.handle_report(&report("eu1", 1, Health::Up, 1), at(0))
        .unwrap();
    g.handle_summary(&summary_of(&mut eu), at(0)).unwrap();
    assert_eq!(publishes(&mut g).pop().unwrap().addresses, vec![ip(1)]);
    // the direct server is closer: after the dwell it wins
    for t in 0..=10u64 {
        let now = at(100 + t * 1_000);
        g.handle_report(&report("edge", 1 + t, Health::Up, 0), now)
            .unwrap();
        eu.handle_report(&report("eu1", 2 + t, Health::Up, 1), now)
            .unwrap();
        g.handle_summary(&summary_of_heartbeat(&mut eu, now), now)
            .unwrap();
        if t < 10 {
            assert!(publishes(&mut g).is_empty(), "t={t}: inside the dwell");
        }
    }
    let d = publishes(&mut g).pop().unwrap();
    assert_eq!(d.addresses, vec![ip(50)]);
    assert!(d.why.contains("of 2 healthy candidates"), "{}", d.why);
}

#[test]
fn global_rtt_feeds_closest_by_rtt() {
    let mut g = global(
        Policy::Closest(ClosestBy::Rtt),
        &[("eu", 0.0), ("us", 0.0)],
        &[],
    );
    let mut eu = farm("eu", Policy::LeastLoaded, &[("eu1", 1)]);
    let mut us = farm("us", Policy::LeastLoaded, &[("us1", 11)]);
    eu.handle_report(&report("eu1", 1, Health::Up, 1), at(0))
        .unwrap();
    us.handle_report(&report("us1", 1, Health::Up, 1), at(0))
        .unwrap();
    g.handle_rtt(&"eu".into(), Duration::from_millis(80), at(0));
    g.handle_rtt(&"us".into(), Duration::from_millis(20), at(0));
    g.handle_summary(&summary_of(&mut eu), at(0)).unwrap();
    g.handle_summary(&summary_of(&mut us), at(0)).unwrap();
    let d = latest(&g);
    assert_eq!(d.standings[0].id.as_str(), "us");
    assert_eq!(d.standings[0].shown, "rtt 20 ms");
}

fn latest(g: &GlobalState) -> Decision {
    g.tier().services()[&ServiceId::from("www")]
        .decision()
        .unwrap()
        .clone()
}

#[test]
fn a_restarted_global_node_waits_for_every_farm_or_the_warmup() {
    // us answers first after a restart; eu (closer) a moment later. Without warm-up the
    // node would choose us and hold it for the dwell; with it, it waits and chooses eu.
    let mut eu = farm("eu", Policy::LeastLoaded, &[("eu1", 1)]);
    let mut us = farm("us", Policy::LeastLoaded, &[("us1", 11)]);
    eu.handle_report(&report("eu1", 1, Health::Up, 1), at(0))
        .unwrap();
    us.handle_report(&report("us1", 1, Health::Up, 1), at(0))
        .unwrap();
    let (s_eu, s_us) = (summary_of(&mut eu), summary_of(&mut us));

    let mut g = global(
        Policy::Closest(ClosestBy::Auto),
        &[("eu", 12.0), ("us", 85.0)],
        &[],
    );
    g.set_warmup(at(3_000));
    g.handle_summary(&s_us, at(100)).unwrap();
    assert!(publishes(&mut g).is_empty(), "waiting for eu");
    assert_eq!(g.poll_timeout(at(100)), Some(at(3_000)));
    g.handle_summary(&s_eu, at(200)).unwrap();
    assert_eq!(
        publishes(&mut g).pop().unwrap().addresses,
        vec![ip(1)],
        "all heard: decide at once"
    );

    // a member that never speaks does not block forever
    let mut g = global(
        Policy::Closest(ClosestBy::Auto),
        &[("eu", 12.0), ("us", 85.0)],
        &[],
    );
    g.set_warmup(at(3_000));
    g.handle_summary(&s_us, at(100)).unwrap();
    g.handle_timeout(at(2_999));
    assert!(publishes(&mut g).is_empty());
    g.handle_summary(&s_us, at(3_000)).unwrap();
    assert_eq!(publishes(&mut g).pop().unwrap().addresses, vec![ip(11)]);
}

#[test]
fn next_change_is_the_end_of_a_challengers_dwell() {
    let mut eu = farm("eu", Policy::LeastLoaded, &[("eu1", 1)]);
    let mut us = farm("us", Policy::LeastLoaded, &[("us1", 11)]);
    let mut g = global(
        Policy::Closest(ClosestBy::Auto),
        &[("eu", 12.0), ("us", 85.0)],
        &[],
    );
    us.handle_report(&report("us1", 1, Health::Up, 1), at(0))
        .unwrap();
    g.handle_summary(&summary_of(&mut us), at(0)).unwrap();
    let www = ServiceId::from("www");
    assert_eq!(
        g.tier().services()[&www].next_change(),
        None,
        "nothing pending"
    );
    // eu appears, closer: it must wait out the 10 s dwell
    eu.handle_report(&report("eu1", 1, Health::Up, 1), at(1_000))
        .unwrap();
    g.handle_summary(&summary_of(&mut eu), at(1_000)).unwrap();
    assert_eq!(g.tier().services()[&www].next_change(), Some(at(11_000)));
}

#[test]
fn readings_are_coalesced_but_health_changes_are_decided_at_once() {
    let mut f = farm("eu", Policy::LeastLoaded, &[("s1", 1), ("s2", 2)]);
    f.set_coalesce(Tier::DEFAULT_COALESCE);
    f.handle_report(&report("s1", 1, Health::Up, 10), at(0))
        .unwrap();
    // a second member appearing cannot make the answer wrong: decided within the window
    f.handle_report(&report("s2", 1, Health::Up, 20), at(0))
        .unwrap();
    assert_eq!(f.tier().poll_timeout(at(0)), Some(at(100)));
    f.handle_timeout(at(100));
    summaries(&mut f);
    let www = ServiceId::from("www");
    let chosen = |f: &FarmState| f.tier().services()[&www].decision().unwrap().chosen.clone();
    assert_eq!(chosen(&f), vec![CandidateId::from("s1")]);
    // s1 gets busy: many load reports inside one window make no decision yet…
    for i in 0..50 {
        f.handle_report(&report("s1", 2 + i, Health::Up, 90), at(10 + i))
            .unwrap();
    }
    assert_eq!(chosen(&f), vec![CandidateId::from("s1")]);
    assert_eq!(f.tier().poll_timeout(at(60)), Some(at(110)));
    // …one decision when the window ends
    f.handle_timeout(at(110));
    assert_eq!(chosen(&f), vec![CandidateId::from("s2")]);
    // a health change is decided at once
    f.handle_report(&report("s2", 2, Health::Down, 20), at(200))
        .unwrap();
    assert_eq!(chosen(&f), vec![CandidateId::from("s1")]);
    assert_eq!(summaries(&mut f).pop().unwrap().addresses, vec![ip(1)]);
}

#[test]
fn item3_a_paused_global_node_does_not_publish_the_first_farm_heard_after_the_pause() {
    // eu (closest) is answered; the node is then paused for 10 s (SIGSTOP, a VM migration).
    // On waking it hears us first. Deciding then would publish us and hold it for the
    // 10 s dwell; the warm-up is re-entered instead, and eu stays the answer.
    let mut eu = farm("eu", Policy::LeastLoaded, &[("eu1", 1)]);
    let mut us = farm("us", Policy::LeastLoaded, &[("us1", 11)]);
    let mut g = global(
        Policy::Closest(ClosestBy::Auto),
        &[("eu", 12.0), ("us", 85.0)],
        &[],
    );
    g.set_warmup_window(Duration::from_secs(3));
    eu.handle_report(&report("eu1", 1, Health::Up, 1), at(0))
        .unwrap();
    us.handle_report(&report("us1", 1, Health::Up, 1), at(0))
        .unwrap();
    let (s_eu, s_us) = (summary_of(&mut eu), summary_of(&mut us));
    g.handle_summary(&s_us, at(0)).unwrap();
    assert!(publishes(&mut g).is_empty(), "start: waiting for eu");
    g.handle_summary(&s_eu, at(10)).unwrap();
    for t in (1_000..=5_000).step_by(1_000) {
        g.handle_summary(&s_us, at(t)).unwrap();
        g.handle_summary(&s_eu, at(t + 10)).unwrap();
    }
    assert_eq!(publishes(&mut g).pop().unwrap().addresses, vec![ip(1)]);

    // paused from 5 s to 15 s: the late timer fires first, then us speaks first
    g.handle_timeout(at(15_000));
    g.handle_summary(&s_us, at(15_001)).unwrap();
    assert!(
        publishes(&mut g).iter().all(|d| d.addresses == vec![ip(1)]),
        "us alone must not be published after the pause"
    );
    assert_eq!(
        g.poll_timeout(at(15_001)),
        Some(at(18_001)),
        "warm-up again"
    );
    g.handle_summary(&s_eu, at(15_200)).unwrap();
    publishes(&mut g);
    let www = ServiceId::from("www");
    let d = g.tier().services()[&www].decision().unwrap();
    assert_eq!(d.addresses, vec![ip(1)], "{}", d.why);
    assert!(!d.degraded);

    // a quiet spell shorter than the window is no pause: the next update decides at once
    g.handle_summary(&s_us, at(17_000)).unwrap();
    g.handle_summary(&s_eu, at(17_010)).unwrap();
    assert_eq!(
        g.poll_timeout(at(17_010)),
        g.tier().poll_timeout(at(17_010))
    );
}

/// Every Publish the global node hands out.
fn publish_outputs(g: &mut GlobalState) -> Vec<Publish> {
    let mut out = vec![];
    while let Some(GlobalOutput::Publish(p)) = g.poll_output() {
        out.push(p);
    }
    out
}

#[test]
fn the_core_finishes_the_answer_with_its_ttl() {
    let mut eu = farm("eu", Policy::LeastLoaded, &[("eu1", 1)]);
    let mut us = farm("us", Policy::LeastLoaded, &[("us1", 11)]);
    us.handle_report(&report("us1", 1, Health::Up, 1), at(0))
        .unwrap();
    eu.handle_report(&report("eu1", 1, Health::Up, 1), at(1_000))
        .unwrap();
    let (s_us, s_eu) = (summary_of(&mut us), summary_of(&mut eu));
    let www = ServiceId::from("www");
    let farms = [("eu", 12.0), ("us", 85.0)];

    // fixed: the service's TTL, whatever is pending
    let mut config = global_config(Policy::Closest(ClosestBy::Auto), &farms, &[]);
    config
        .ttl
        .insert(www.clone(), TtlRule::fixed(Duration::from_secs(45)));
    let mut g = GlobalState::new(config.clone(), 1);
    g.set_coalesce(Duration::ZERO);
    g.handle_summary(&s_us, at(0)).unwrap();
    let p = publish_outputs(&mut g).pop().unwrap();
    assert_eq!((p.ttl, p.next_change), (45, None));

    // a reload with another fixed TTL publishes the same answer again with it
    config
        .ttl
        .insert(www.clone(), TtlRule::fixed(Duration::from_secs(20)));
    g.set_config(config.clone(), at(500));
    let p = publish_outputs(&mut g).pop().expect("republished");
    assert_eq!((p.ttl, p.decision.addresses.clone()), (20, vec![ip(11)]));

    // derived: no change pending → the upper bound; a challenger in its dwell → the time
    // until the dwell ends, published again (same answer) as soon as it is known
    config.ttl.insert(
        www.clone(),
        TtlRule::derived(Duration::from_secs(5), Duration::from_secs(60)),
    );
    let mut g = GlobalState::new(config, 1);
    g.set_coalesce(Duration::ZERO);
    g.handle_summary(&s_us, at(0)).unwrap();
    let p = publish_outputs(&mut g).pop().unwrap();
    assert_eq!(p.ttl, 60);
    g.handle_summary(&s_eu, at(1_000)).unwrap();
    let p = publish_outputs(&mut g)
        .pop()
        .expect("the ttl follows the dwell");
    assert_eq!(p.decision.addresses, vec![ip(11)], "us is still answered");
    assert_eq!((p.ttl, p.next_change), (10, Some(at(11_000))));
    // heartbeats that change nothing publish nothing
    for t in (2_000..=10_000).step_by(1_000) {
        g.handle_summary(&s_eu, at(t)).unwrap();
        g.handle_summary(&s_us, at(t)).unwrap();
    }
    assert!(publish_outputs(&mut g).is_empty());
    // the dwell ends: eu, with nothing pending
    g.handle_timeout(at(11_000));
    let p = publish_outputs(&mut g).pop().unwrap();
    assert_eq!((p.decision.addresses.clone(), p.ttl), (vec![ip(1)], 60));
}
