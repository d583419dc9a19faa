//! Hops and application metrics across farms (issue 15, item 4): a farm summary carries the
//! hop count of its answer and each declared metric aggregated by its rule, and the global
//! tier ranks and filters farms by them. Driven by hand on the simulated clock.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use fedlb_core::*;

fn liveness() -> Liveness {
    Liveness {
        stale_after: Duration::from_secs(3),
        down_after: Duration::from_secs(6),
    }
}

fn member(name: &str, last: u8, kind: MemberKind) -> MemberSpec {
    MemberSpec {
        id: name.into(),
        kind,
        addresses: vec![ip(last)],
        capacity: 100.0,
        distance: None,
        liveness: liveness(),
    }
}

fn farm(name: &str, servers: &[(&str, u8)], rules: &[(&str, Aggregate)]) -> FarmState {
    let mut sel = SelectorConfig::new(Policy::LeastLoaded);
    sel.hysteresis = Hysteresis::NONE;
    let service = ServiceId::from("db");
    let cfg = FarmConfig {
        farm: name.into(),
        services: BTreeMap::from([(
            service.clone(),
            TierService {
                selector: sel,
                members: servers
                    .iter()
                    .map(|(n, l)| member(n, *l, MemberKind::Server))
                    .collect(),
            },
        )]),
        heartbeat: Duration::from_secs(1),
        metrics: BTreeMap::from([(
            service,
            rules.iter().map(|(m, a)| (m.to_string(), *a)).collect(),
        )]),
    };
    let mut f = FarmState::new(cfg, 3, 1, at(0));
    f.set_coalesce(Duration::ZERO);
    f
}

/// A report of `server` for service `db`: up or down, its pending requests, hops and metrics.
fn report(
    server: &str,
    seq: u64,
    health: Health,
    pending: u64,
    hops: Option<u32>,
    metrics: &[(&str, f64)],
    now: Timestamp,
) -> Report {
    Report {
        service: "db".into(),
        server: server.into(),
        epoch: 1,
        seq,
        health,
        reason: health.to_string(),
        readings: Readings {
            pending: Some(Sample::new(pending, now)),
            hops: hops.map(|h| Sample::new(h, now)),
            metrics: metrics
                .iter()
                .map(|(k, v)| (k.to_string(), Sample::new(*v, now)))
                .collect(),
            ..Readings::default()
        },
    }
}

fn last_summary(f: &mut FarmState, now: Timestamp) -> Summary {
    let mut last = None;
    while let Some(o) = f.poll_output() {
        if let FarmOutput::Summary(s) = o {
            last = Some(s);
        }
    }
    last.unwrap_or_else(|| f.summary(&"db".into(), now).expect("a summary"))
}

fn global(policy: Policy, farms: &[&str]) -> GlobalState {
    let mut sel = SelectorConfig::new(policy);
    sel.hysteresis = Hysteresis::NONE;
    let members = farms
        .iter()
        .map(|n| {
            let mut m = member(n, 0, MemberKind::Farm);
            m.addresses = vec![];
            m
        })
        .collect();
    let services = BTreeMap::from([(
        ServiceId::from("db"),
        TierService {
            selector: sel,
            members,
        },
    )]);
    let mut g = GlobalState::new(GlobalConfig::new(services), 1);
    g.set_coalesce(Duration::ZERO);
    g
}

fn chosen(g: &GlobalState) -> Decision {
    g.tier().services()[&ServiceId::from("db")]
        .decision()
        .expect("a decision")
        .clone()
}

#[test]
fn a_farm_summary_carries_the_hops_of_its_answer_and_each_declared_metric_by_its_rule() {
    let mut f = farm(
        "eu",
        &[("a", 1), ("b", 2), ("c", 3)],
        &[
            ("users", Aggregate::Sum),
            ("lag", Aggregate::Max),
            ("cpu", Aggregate::Mean),
            ("free", Aggregate::Min),
        ],
    );
    let t = at(100);
    let m = |users, lag, cpu, free| {
        [
            ("users", users),
            ("lag", lag),
            ("cpu", cpu),
            ("free", free),
            ("secret", 1.0),
        ]
    };
    // b is the least loaded (the farm's answer) but c is closer: the farm is as far as its
    // answer, not as its closest server
    f.handle_report(
        &report("a", 1, Health::Up, 30, Some(2), &m(10.0, 5.0, 0.25, 7.0), t),
        t,
    )
    .unwrap();
    f.handle_report(
        &report("b", 1, Health::Up, 10, Some(4), &m(20.0, 9.0, 0.75, 3.0), t),
        t,
    )
    .unwrap();
    // a down server's metrics do not count
    f.handle_report(
        &report(
            "c",
            1,
            Health::Down,
            0,
            Some(1),
            &m(900.0, 900.0, 9.0, 0.0),
            t,
        ),
        t,
    )
    .unwrap();
    let s = last_summary(&mut f, t);
    assert_eq!(s.chosen, vec![CandidateId::from("b")]);
    assert_eq!(s.readings.hops.map(|h| h.value), Some(4));
    let got: BTreeMap<&str, f64> = s
        .readings
        .metrics
        .iter()
        .map(|(k, v)| (k.as_str(), v.value))
        .collect();
    let want = BTreeMap::from([("users", 30.0), ("lag", 9.0), ("cpu", 0.5), ("free", 3.0)]);
    assert_eq!(got, want, "an undeclared metric (secret) stays in the farm");
    assert_eq!(s.aggregates.get("users"), Some(&Aggregate::Sum));
    assert_eq!(s.aggregates.get("cpu"), Some(&Aggregate::Mean));
    assert_eq!(s.aggregates.len(), 4);
    // the readings travel up as the farm's candidate readings
    assert_eq!(s.to_update().readings, s.readings);
}

#[test]
fn a_farm_with_no_server_reporting_a_metric_reports_none() {
    let mut f = farm("eu", &[("a", 1)], &[("users", Aggregate::Sum)]);
    f.handle_report(&report("a", 1, Health::Up, 1, None, &[], at(0)), at(0))
        .unwrap();
    let s = last_summary(&mut f, at(0));
    assert!(s.readings.metrics.is_empty());
    assert!(s.aggregates.is_empty());
    assert_eq!(s.readings.hops, None);
}

#[test]
fn global_closest_by_hops_chooses_the_farm_whose_answer_is_fewest_hops_away() {
    let mut eu = farm("eu", &[("eu1", 1)], &[]);
    let mut us = farm("us", &[("us1", 11)], &[]);
    let mut g = global(Policy::Closest(ClosestBy::Hops), &["eu", "us"]);
    let t = at(0);
    eu.handle_report(&report("eu1", 1, Health::Up, 1, Some(6), &[], t), t)
        .unwrap();
    us.handle_report(&report("us1", 1, Health::Up, 1, Some(2), &[], t), t)
        .unwrap();
    g.handle_summary(&last_summary(&mut eu, t), t).unwrap();
    g.handle_summary(&last_summary(&mut us, t), t).unwrap();
    let d = chosen(&g);
    assert_eq!(d.addresses, vec![ip(11)]);
    assert_eq!(d.standings[0].shown, "2 hops");
    // the route changes: eu is now the closer; its next summary carries it
    let t = at(1_000);
    eu.handle_report(&report("eu1", 2, Health::Up, 1, Some(1), &[], t), t)
        .unwrap();
    eu.handle_timeout(t);
    us.handle_timeout(t);
    g.handle_summary(&last_summary(&mut eu, t), t).unwrap();
    g.handle_summary(&last_summary(&mut us, t), t).unwrap();
    g.handle_timeout(at(1_200));
    assert_eq!(chosen(&g).addresses, vec![ip(1)]);
}

#[test]
fn global_lowest_metric_ranks_farms_by_their_aggregate_and_the_rule_decides() {
    // eu: two servers with 10 users each; us: one server with 15
    for (rule, expected) in [(Aggregate::Sum, ip(11)), (Aggregate::Mean, ip(1))] {
        let mut eu = farm("eu", &[("eu1", 1), ("eu2", 2)], &[("users", rule)]);
        let mut us = farm("us", &[("us1", 11)], &[("users", rule)]);
        let mut g = global(Policy::LowestMetric("users".into()), &["eu", "us"]);
        let t = at(0);
        eu.handle_report(
            &report("eu1", 1, Health::Up, 1, None, &[("users", 10.0)], t),
            t,
        )
        .unwrap();
        eu.handle_report(
            &report("eu2", 1, Health::Up, 2, None, &[("users", 10.0)], t),
            t,
        )
        .unwrap();
        us.handle_report(
            &report("us1", 1, Health::Up, 1, None, &[("users", 15.0)], t),
            t,
        )
        .unwrap();
        g.handle_summary(&last_summary(&mut eu, t), t).unwrap();
        g.handle_summary(&last_summary(&mut us, t), t).unwrap();
        let d = chosen(&g);
        assert_eq!(d.addresses, vec![expected], "rule {rule}: {}", d.why);
    }
}

#[test]
fn a_required_metric_filter_fails_a_farm_that_does_not_report_the_metric() {
    // eu declares no rule for users, so its summaries carry none
    let mut eu = farm("eu", &[("eu1", 1)], &[]);
    let mut us = farm("us", &[("us1", 11)], &[("users", Aggregate::Sum)]);
    let t = at(0);
    eu.handle_report(
        &report("eu1", 1, Health::Up, 1, None, &[("users", 1.0)], t),
        t,
    )
    .unwrap();
    us.handle_report(
        &report("us1", 1, Health::Up, 9, None, &[("users", 50.0)], t),
        t,
    )
    .unwrap();
    let (s_eu, s_us) = (last_summary(&mut eu, t), last_summary(&mut us, t));
    for (filter, expected) in [
        // missing passes: eu is not known to be over, and is less loaded
        (Filter::MaxMetric("users".into(), 100.0), ip(1)),
        // missing fails: only us is known to be under the limit
        (Filter::MaxMetricRequired("users".into(), 100.0), ip(11)),
    ] {
        let mut g = global(
            Policy::Composite {
                filters: vec![filter.clone()],
                rank: Box::new(Policy::LeastLoaded),
                fallback: None,
            },
            &["eu", "us"],
        );
        g.handle_summary(&s_eu, t).unwrap();
        g.handle_summary(&s_us, t).unwrap();
        let d = chosen(&g);
        assert_eq!(d.addresses, vec![expected], "{filter}: {}", d.why);
    }
}
