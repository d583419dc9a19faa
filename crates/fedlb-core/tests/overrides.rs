//! Operator overrides (drain, disable, pin) on the simulated clock: what a decision may
//! choose while each is in force, and that an expired one stops applying by itself.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use fedlb_core::*;
use proptest::prelude::*;

const SERVICE: &str = "www";

fn member(i: usize) -> MemberSpec {
    MemberSpec {
        id: format!("s{i}").as_str().into(),
        kind: MemberKind::Server,
        addresses: vec![ip(10 + i as u8)],
        capacity: 100.0,
        distance: Some(Distance::Pinned(10.0 * (i as f64 + 1.0))),
        liveness: Liveness {
            stale_after: Duration::from_secs(30),
            down_after: Duration::from_secs(60),
        },
        sources: Vec::new(),
    }
}

fn tier(n: usize, fail_static: FailStatic, regions: &[&str]) -> Tier {
    let mut selector = SelectorConfig::new(Policy::Closest(ClosestBy::Auto));
    selector.hysteresis = Hysteresis::NONE;
    selector.fail_static = fail_static;
    let mut services = BTreeMap::new();
    services.insert(
        ServiceId::from(SERVICE),
        TierService {
            selector,
            members: (0..n).map(member).collect(),
        },
    );
    let mut t = Tier::new(services);
    // decide on every update: the tests read each decision at once
    t.set_coalesce(Duration::ZERO);
    // each region sees the members in reverse order of distance
    t.set_regions(
        regions
            .iter()
            .map(|r| RegionSpec {
                id: (*r).into(),
                distances: (0..n)
                    .map(|i| {
                        (
                            CandidateId::from(format!("s{i}").as_str()),
                            Distance::Pinned(10.0 * (n - i) as f64),
                        )
                    })
                    .collect(),
            })
            .collect(),
    );
    t
}

fn report(t: &mut Tier, i: usize, health: Health, now: Timestamp) {
    let update = Update {
        epoch: 1,
        seq: now.as_duration().as_millis() as u64,
        health,
        reason: health.to_string(),
        readings: Readings::default(),
        addresses: None,
        weights: Vec::new(),
        capacity: None,
        members: None,
        source: None,
        incomplete: false,
    };
    t.handle_update(
        &SERVICE.into(),
        &format!("s{i}").as_str().into(),
        update,
        now,
        &mut rng(),
    )
    .unwrap();
}

fn ov(id: &str, action: Action, target: &str, until: Option<Timestamp>) -> Override {
    Override {
        id: id.into(),
        action,
        target: target.into(),
        operator: "alice".into(),
        reason: "kernel upgrade".into(),
        until,
        until_label: until.map(|_| "14:30 UTC".into()),
    }
}

fn pin(region: Option<&str>) -> Action {
    Action::Pin {
        service: SERVICE.into(),
        region: region.map(Into::into),
    }
}

/// Every decision of the service: the default one and each region's.
fn decisions(t: &Tier) -> Vec<Decision> {
    let s = &t.services()[&ServiceId::from(SERVICE)];
    std::iter::once(s.decision().cloned())
        .chain(s.regions().iter().map(|r| r.decision().cloned()))
        .flatten()
        .collect()
}

fn chosen(t: &Tier) -> Vec<String> {
    let s = &t.services()[&ServiceId::from(SERVICE)];
    s.decision()
        .unwrap()
        .chosen
        .iter()
        .map(|c| c.to_string())
        .collect()
}

fn all_up(n: usize) -> Tier {
    let mut t = tier(n, FailStatic::KeepLast, &[]);
    for i in 0..n {
        report(&mut t, i, Health::Up, at(0));
    }
    t
}

fn with(t: &mut Tier, list: &[Override], now: Timestamp) {
    let mut o = Overrides::new();
    for x in list {
        o.insert(x.clone()).unwrap();
    }
    t.set_overrides(o, now, &mut rng());
}

#[test]
fn drained_server_leaves_the_answer_and_status_says_who_and_why() {
    let mut t = all_up(3);
    assert_eq!(chosen(&t), ["s0"]);
    with(&mut t, &[ov("o1", Action::Drain, "s0", None)], at(10));
    assert_eq!(chosen(&t), ["s1"]);
    let s = &t.services()[&ServiceId::from(SERVICE)];
    let view = s
        .views(at(10))
        .into_iter()
        .find(|v| v.id.as_str() == "s0")
        .unwrap();
    assert_eq!(view.health, Health::Drained);
    assert_eq!(view.reason, "drained by alice: kernel upgrade");
}

#[test]
fn drained_server_answers_when_nothing_else_is_up() {
    let mut t = all_up(2);
    with(&mut t, &[ov("o1", Action::Drain, "s0", None)], at(10));
    assert_eq!(chosen(&t), ["s1"]);
    report(&mut t, 1, Health::Down, at(20));
    t.handle_timeout(at(200), &mut rng());
    let s = &t.services()[&ServiceId::from(SERVICE)];
    let d = s.decision().unwrap();
    assert_eq!(chosen(&t), ["s0"], "{}", d.why);
    assert!(!d.degraded);
    assert!(
        d.why.contains("nothing else is up: drained s0 may answer"),
        "{}",
        d.why
    );
}

#[test]
fn disabled_server_is_not_answered_even_by_fail_static() {
    // fail-static keeps the last good answer: s0, then s0 is disabled and every server dies
    let mut t = tier(2, FailStatic::KeepLast, &[]);
    report(&mut t, 0, Health::Up, at(0));
    report(&mut t, 1, Health::Down, at(0));
    assert_eq!(chosen(&t), ["s0"]);
    with(&mut t, &[ov("o1", Action::Disable, "s0", None)], at(10));
    let d = decisions(&t).remove(0);
    assert!(d.degraded);
    assert!(d.chosen.is_empty() && d.addresses.is_empty(), "{d:?}");
    // "answer all" leaves it out too
    let mut t = tier(2, FailStatic::All, &[]);
    report(&mut t, 0, Health::Down, at(0));
    report(&mut t, 1, Health::Down, at(0));
    with(&mut t, &[ov("o1", Action::Disable, "s0", None)], at(10));
    let d = decisions(&t).remove(0);
    assert_eq!(d.addresses, [ip(11)], "{d:?}");
}

#[test]
fn pin_answers_the_target_while_it_is_up_and_falls_back_when_it_is_down() {
    let mut t = all_up(3);
    with(&mut t, &[ov("p1", pin(None), "s2", None)], at(10));
    assert_eq!(chosen(&t), ["s2"]);
    let why = decisions(&t)[0].why.clone();
    assert!(
        why.contains("www pinned to s2 by alice: kernel upgrade"),
        "{why}"
    );
    // the pin target dies: normal choice, and the why says the pin is not applied
    report(&mut t, 2, Health::Down, at(20));
    assert_eq!(chosen(&t), ["s0"]);
    let why = decisions(&t)[0].why.clone();
    assert!(
        why.contains("not applied: s2 is down; normal choice"),
        "{why}"
    );
}

#[test]
fn region_pin_changes_only_that_regions_decision() {
    let mut t = tier(3, FailStatic::KeepLast, &["eu", "us"]);
    for i in 0..3 {
        report(&mut t, i, Health::Up, at(0));
    }
    let before: Vec<Vec<CandidateId>> = decisions(&t).into_iter().map(|d| d.chosen).collect();
    assert_eq!(before[0], [CandidateId::from("s0")]);
    assert_eq!(
        before[1],
        [CandidateId::from("s2")],
        "{}",
        decisions(&t)[1].why
    );
    with(&mut t, &[ov("p1", pin(Some("us")), "s1", None)], at(10));
    let after: Vec<Vec<CandidateId>> = decisions(&t).into_iter().map(|d| d.chosen).collect();
    assert_eq!(after[0], before[0], "default region unchanged");
    assert_eq!(after[1], before[1], "eu unchanged");
    assert_eq!(after[2], [CandidateId::from("s1")], "us pinned");
}

#[test]
fn expired_pin_reverts_at_the_first_decision_where_now_reaches_until() {
    let mut t = all_up(3);
    with(
        &mut t,
        &[ov("p1", pin(None), "s2", Some(at(3_000)))],
        at(10),
    );
    assert_eq!(chosen(&t), ["s2"]);
    assert_eq!(t.poll_timeout(at(10)), Some(at(3_000)));
    t.handle_timeout(at(2_999), &mut rng());
    assert_eq!(chosen(&t), ["s2"]);
    t.handle_timeout(at(3_000), &mut rng());
    assert_eq!(chosen(&t), ["s0"]);
    let gone = t.take_expired();
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].id, "p1");
    assert!(t.overrides().is_empty());
}

#[test]
fn farm_with_every_server_drained_reports_itself_drained_not_down() {
    let mut services = BTreeMap::new();
    services.insert(
        ServiceId::from(SERVICE),
        TierService {
            selector: SelectorConfig::new(Policy::LeastLoaded),
            members: (0..2).map(member).collect(),
        },
    );
    let config = FarmConfig {
        farm: "eu-west".into(),
        node: "eu-west".into(),
        services,
        heartbeat: Duration::from_secs(1),
        metrics: BTreeMap::new(),
    };
    let mut f = FarmState::new(config, 1, 1, at(0));
    for i in 0..2 {
        let r = Report {
            service: SERVICE.into(),
            server: format!("s{i}").as_str().into(),
            epoch: 1,
            seq: 1,
            health: Health::Up,
            reason: "up".into(),
            readings: Readings::default(),
        };
        f.handle_report(&r, at(0)).unwrap();
    }
    let mut o = Overrides::new();
    o.insert(ov("a", Action::Drain, "s0", None)).unwrap();
    o.insert(ov("b", Action::Drain, "s1", None)).unwrap();
    f.set_overrides(o, at(10));
    let s = f.summary(&SERVICE.into(), at(10)).unwrap();
    assert_eq!(s.health, Health::Drained);
    assert!(
        !s.addresses.is_empty(),
        "a drained farm still has an answer"
    );
}

#[derive(Clone, Debug)]
struct Case {
    health: Vec<Health>,
    overrides: Vec<(Action, usize, Option<u64>)>,
    fail_static: FailStatic,
    now: u64,
}

fn health() -> impl Strategy<Value = Health> {
    prop_oneof![
        Just(Health::Up),
        Just(Health::Up),
        Just(Health::Down),
        Just(Health::Unknown)
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        Just(Action::Drain),
        Just(Action::Disable),
        Just(pin(None)),
        Just(pin(Some("eu"))),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (2usize..6).prop_flat_map(|n| {
        (
            proptest::collection::vec(health(), n),
            proptest::collection::vec((action(), 0..n, proptest::option::of(0u64..200)), 0..5),
            prop_oneof![Just(FailStatic::KeepLast), Just(FailStatic::All)],
            0u64..200,
        )
            .prop_map(|(health, overrides, fail_static, now)| Case {
                health,
                overrides,
                fail_static,
                now,
            })
    })
}

/// The tier after: every member reported up at 0 (a last good answer exists), then the
/// case's health at 1, then the overrides set at 2, then a timeout at 2 + `now`.
fn run(c: &Case, with_overrides: bool) -> Tier {
    let n = c.health.len();
    let mut t = tier(n, c.fail_static, &["eu"]);
    for i in 0..n {
        report(&mut t, i, Health::Up, at(0));
    }
    for (i, h) in c.health.iter().enumerate() {
        report(&mut t, i, *h, at(1));
    }
    let mut o = Overrides::new();
    if with_overrides {
        for (k, (a, target, until)) in c.overrides.iter().enumerate() {
            o.replace(ov(
                &format!("o{k}"),
                a.clone(),
                &format!("s{target}"),
                until.map(|u| at(2 + u)),
            ));
        }
    }
    t.set_overrides(o, at(2), &mut rng());
    t.handle_timeout(at(2 + c.now), &mut rng());
    t
}

proptest! {
    #[test]
    fn disabled_candidate_is_never_in_any_answer(c in case()) {
        let t = run(&c, true);
        let now = at(2 + c.now);
        for d in decisions(&t) {
            for id in &d.chosen {
                prop_assert!(t.overrides().disable_of(id, now).is_none(), "{id} chosen: {}", d.why);
            }
            for (i, _) in c.health.iter().enumerate() {
                let id = CandidateId::from(format!("s{i}").as_str());
                if t.overrides().disable_of(&id, now).is_some() {
                    prop_assert!(!d.addresses.contains(&ip(10 + i as u8)), "{d:?}");
                }
            }
        }
    }

    #[test]
    fn drained_candidate_is_chosen_only_when_nothing_else_is_eligible(c in case()) {
        let t = run(&c, true);
        let now = at(2 + c.now);
        let o = t.overrides();
        let others_up = |i: usize| c.health.iter().enumerate().any(|(j, h)| {
            let id = CandidateId::from(format!("s{j}").as_str());
            j != i && h.is_up() && o.drain_of(&id, now).is_none() && o.disable_of(&id, now).is_none()
        });
        for d in decisions(&t).iter().filter(|d| !d.degraded) {
            for id in &d.chosen {
                let i: usize = id.as_str()[1..].parse().unwrap();
                if o.drain_of(id, now).is_some() {
                    prop_assert!(!others_up(i), "drained {id} chosen while another is up: {}", d.why);
                }
            }
        }
    }

    #[test]
    fn expired_override_has_no_effect(c in case()) {
        // every override expires before the last decision
        let mut c = c;
        for (_, _, until) in &mut c.overrides {
            *until = Some(until.unwrap_or(0).min(c.now));
        }
        let with = run(&c, true);
        let without = run(&c, false);
        // (a fail-static answer repeats the last good one, which an override in force at
        // the time may have chosen: compared only when something is up)
        let a: Vec<_> = decisions(&with).into_iter().filter(|d| !d.degraded).map(|d| (d.chosen, d.addresses)).collect();
        let b: Vec<_> = decisions(&without).into_iter().filter(|d| !d.degraded).map(|d| (d.chosen, d.addresses)).collect();
        prop_assert_eq!(a, b);
        prop_assert!(with.overrides().is_empty());
    }
}
