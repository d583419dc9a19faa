//! Hysteresis, top-N answers, fail-static and the why, through `Selector`.

mod common;

use std::time::Duration;

use common::*;
use fedlb_core::*;

fn hyst(margin: f64, dwell_ms: u64) -> Hysteresis {
    Hysteresis {
        margin,
        dwell: Duration::from_millis(dwell_ms),
    }
}

#[test]
fn no_flap_under_alternating_readings() {
    let mut s = selector(Policy::LeastLoaded, hyst(0.2, 10_000));
    let mut changes = 0;
    let mut last = None;
    // a and b swap places every second, by a wide margin, but never for a whole dwell
    for i in 0..60u64 {
        let (pa, pb) = if i % 2 == 0 { (10, 50) } else { (50, 10) };
        let c = [
            with_pending(server("a", 1), pa),
            with_pending(server("b", 2), pb),
        ];
        let d = s.decide(&c, at(i * 1000), &mut rng());
        if last.as_ref() != Some(&d.chosen) {
            changes += 1;
            last = Some(d.chosen.clone());
        }
    }
    assert_eq!(changes, 1, "only the first choice; no flapping");
}

#[test]
fn without_hysteresis_alternating_readings_flap() {
    // the control for the test above: it can fail
    let mut s = selector(Policy::LeastLoaded, Hysteresis::NONE);
    let mut changes = 0;
    let mut last = None;
    for i in 0..10u64 {
        let (pa, pb) = if i % 2 == 0 { (10, 50) } else { (50, 10) };
        let c = [
            with_pending(server("a", 1), pa),
            with_pending(server("b", 2), pb),
        ];
        let d = s.decide(&c, at(i * 1000), &mut rng());
        if last.as_ref() != Some(&d.chosen) {
            changes += 1;
            last = Some(d.chosen.clone());
        }
    }
    assert_eq!(changes, 10);
}

#[test]
fn switches_after_the_dwell_not_before() {
    let mut s = selector(Policy::LeastLoaded, hyst(0.2, 5_000));
    let c = [
        with_pending(server("a", 1), 10),
        with_pending(server("b", 2), 20),
    ];
    assert_eq!(ids(&s.decide(&c, at(0), &mut rng())), ["a"]);
    // b becomes much better from t=1s on
    let c = [
        with_pending(server("a", 1), 50),
        with_pending(server("b", 2), 10),
    ];
    for t in [1_000, 3_000, 5_999] {
        let d = s.decide(&c, at(t), &mut rng());
        assert_eq!(ids(&d), ["a"], "t={t}");
        assert!(d.why.contains("holding: b"), "why: {}", d.why);
        assert_eq!(s.poll_timeout(), Some(at(6_000)));
    }
    let d = s.decide(&c, at(6_000), &mut rng());
    assert_eq!(ids(&d), ["b"]);
    assert_eq!(d.since, at(6_000));
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn a_challenger_within_the_margin_never_switches() {
    let mut s = selector(Policy::LeastLoaded, hyst(0.2, 1_000));
    let c = [
        with_pending(server("a", 1), 50),
        with_pending(server("b", 2), 60),
    ];
    s.decide(&c, at(0), &mut rng());
    // b is 10 % better: inside the 20 % margin
    let c = [
        with_pending(server("a", 1), 50),
        with_pending(server("b", 2), 45),
    ];
    for t in 1..100 {
        assert_eq!(ids(&s.decide(&c, at(t * 1000), &mut rng())), ["a"]);
    }
}

#[test]
fn an_interrupted_challenge_starts_over() {
    let mut s = selector(Policy::LeastLoaded, hyst(0.2, 5_000));
    let good_a = [
        with_pending(server("a", 1), 10),
        with_pending(server("b", 2), 50),
    ];
    let good_b = [
        with_pending(server("a", 1), 50),
        with_pending(server("b", 2), 10),
    ];
    s.decide(&good_a, at(0), &mut rng());
    s.decide(&good_b, at(1_000), &mut rng());
    s.decide(&good_a, at(4_000), &mut rng()); // challenge broken
    assert_eq!(ids(&s.decide(&good_b, at(5_000), &mut rng())), ["a"]);
    assert_eq!(ids(&s.decide(&good_b, at(9_999), &mut rng())), ["a"]);
    assert_eq!(ids(&s.decide(&good_b, at(10_000), &mut rng())), ["b"]);
}

#[test]
fn an_unhealthy_preferred_is_replaced_at_once() {
    let mut s = selector(Policy::LeastLoaded, hyst(0.2, 60_000));
    let c = [
        with_pending(server("a", 1), 10),
        with_pending(server("b", 2), 20),
    ];
    s.decide(&c, at(0), &mut rng());
    let c = [
        with_health(with_pending(server("a", 1), 10), Health::Down),
        with_pending(server("b", 2), 20),
    ];
    let d = s.decide(&c, at(1), &mut rng());
    assert_eq!(ids(&d), ["b"]);
    assert!(d.why.contains("a is down"), "why: {}", d.why);
    assert!(!d.degraded);
}

#[test]
fn recovery_fails_back_only_after_the_dwell() {
    let mut s = selector(Policy::Closest(ClosestBy::Auto), hyst(0.2, 30_000));
    let near = |h| with_health(with_distance(server("near", 1), 10.0), h);
    let far = || with_distance(server("far", 2), 90.0);
    s.decide(&[near(Health::Up), far()], at(0), &mut rng());
    assert_eq!(
        ids(&s.decide(&[near(Health::Down), far()], at(1_000), &mut rng())),
        ["far"]
    );
    assert_eq!(
        ids(&s.decide(&[near(Health::Up), far()], at(2_000), &mut rng())),
        ["far"]
    );
    assert_eq!(
        ids(&s.decide(&[near(Health::Up), far()], at(31_999), &mut rng())),
        ["far"]
    );
    assert_eq!(
        ids(&s.decide(&[near(Health::Up), far()], at(32_000), &mut rng())),
        ["near"]
    );
}

#[test]
fn top_n_answers_the_n_best() {
    let mut cfg = SelectorConfig::new(Policy::FastestResponse);
    cfg.answers = 2;
    cfg.hysteresis = Hysteresis::NONE;
    let mut s = Selector::new(cfg);
    let c = [
        with_rt(server("a", 1), 30),
        with_rt(server("b", 2), 10),
        with_rt(server("c", 3), 20),
    ];
    let d = s.decide(&c, at(0), &mut rng());
    assert_eq!(ids(&d), ["b", "c"]);
    assert_eq!(d.addresses, vec![ip(2), ip(3)]);
    assert!(d.why.contains("also c"), "why: {}", d.why);
}

#[test]
fn top_n_with_fewer_healthy_answers_those_there_are() {
    let mut cfg = SelectorConfig::new(Policy::FastestResponse);
    cfg.answers = 3;
    let mut s = Selector::new(cfg);
    let c = [
        with_rt(server("a", 1), 30),
        with_health(with_rt(server("b", 2), 10), Health::Down),
    ];
    assert_eq!(ids(&s.decide(&c, at(0), &mut rng())), ["a"]);
}

#[test]
fn top_n_keeps_members_and_fills_a_lost_slot_at_once() {
    let mut cfg = SelectorConfig::new(Policy::FastestResponse);
    cfg.answers = 2;
    cfg.hysteresis = hyst(0.2, 10_000);
    let mut s = Selector::new(cfg);
    let mk = |ra, rb, rc, hb| {
        [
            with_rt(server("a", 1), ra),
            with_health(with_rt(server("b", 2), rb), hb),
            with_rt(server("c", 3), rc),
        ]
    };
    assert_eq!(
        ids(&s.decide(&mk(10, 20, 30, Health::Up), at(0), &mut rng())),
        ["a", "b"]
    );
    // c gets better than b, but must wait out the dwell
    assert_eq!(
        ids(&s.decide(&mk(10, 20, 5, Health::Up), at(1_000), &mut rng())),
        ["a", "b"]
    );
    // b dies: its slot is filled at once by c
    assert_eq!(
        ids(&s.decide(&mk(10, 20, 5, Health::Down), at(2_000), &mut rng())),
        ["c", "a"]
    );
}

#[test]
fn duplicate_addresses_are_answered_once() {
    let mut cfg = SelectorConfig::new(Policy::FastestResponse);
    cfg.answers = 2;
    let mut s = Selector::new(cfg);
    let c = [with_rt(server("a", 1), 1), with_rt(server("b", 1), 2)];
    assert_eq!(s.decide(&c, at(0), &mut rng()).addresses, vec![ip(1)]);
}

#[test]
fn fail_static_keeps_the_last_good_answer() {
    let mut s = selector(Policy::LeastLoaded, Hysteresis::NONE);
    let up = [
        with_pending(server("a", 1), 1),
        with_pending(server("b", 2), 2),
    ];
    s.decide(&up, at(0), &mut rng());
    let down = [
        with_health(server("a", 1), Health::Down),
        with_health(server("b", 2), Health::Stale),
    ];
    let d = s.decide(&down, at(1_000), &mut rng());
    assert!(d.degraded);
    assert_eq!(ids(&d), ["a"]);
    assert_eq!(d.addresses, vec![ip(1)]);
    assert!(
        d.why.contains("keeping last good answer a"),
        "why: {}",
        d.why
    );
    // and when one comes back, it is chosen at once, no longer degraded
    let back = [
        with_health(server("a", 1), Health::Down),
        with_pending(server("b", 2), 2),
    ];
    let d = s.decide(&back, at(2_000), &mut rng());
    assert!(!d.degraded);
    assert_eq!(ids(&d), ["b"]);
}

#[test]
fn fail_static_all_answers_everyone() {
    let mut cfg = SelectorConfig::new(Policy::LeastLoaded);
    cfg.fail_static = FailStatic::All;
    let mut s = Selector::new(cfg);
    let down = [
        with_health(server("a", 1), Health::Down),
        with_health(server("b", 2), Health::Down),
    ];
    let d = s.decide(&down, at(0), &mut rng());
    assert!(d.degraded);
    assert_eq!(d.addresses, vec![ip(1), ip(2)]);
}

#[test]
fn nothing_is_answered_before_a_first_good_answer() {
    let mut s = selector(Policy::LeastLoaded, Hysteresis::NONE);
    let d = s.decide(
        &[with_health(server("a", 1), Health::Unknown)],
        at(0),
        &mut rng(),
    );
    assert!(d.degraded);
    assert!(d.addresses.is_empty());
    assert!(d.why.contains("publishing nothing"));
}

#[test]
fn the_why_names_choice_policy_value_and_runner_up() {
    let mut s = selector(Policy::Closest(ClosestBy::Auto), Hysteresis::NONE);
    let mut eu = with_distance(server("eu-west", 1), 12.0);
    let mut us = with_distance(server("us-east", 2), 85.0);
    eu.members = Some(Members { up: 2, total: 2 });
    us.members = Some(Members { up: 3, total: 3 });
    let d = s.decide(&[eu, us], at(0), &mut rng());
    assert_eq!(
        d.why,
        "eu-west: closest (12 ms) of 2 healthy farms; next us-east 85 ms"
    );
    assert_eq!(d.standings.len(), 2);
    assert_eq!(d.standings[0].rank, Some(1));
}

#[test]
fn standings_list_unhealthy_candidates_last_with_their_health() {
    let mut s = selector(Policy::LeastLoaded, Hysteresis::NONE);
    let c = [
        with_health(server("z", 1), Health::Stale),
        with_pending(server("a", 2), 1),
        with_health(server("b", 3), Health::Drained),
    ];
    let d = s.decide(&c, at(0), &mut rng());
    let got: Vec<(&str, Health, Option<usize>)> = d
        .standings
        .iter()
        .map(|s| (s.id.as_str(), s.health, s.rank))
        .collect();
    assert_eq!(
        got,
        [
            ("a", Health::Up, Some(1)),
            ("b", Health::Drained, None),
            ("z", Health::Stale, None)
        ]
    );
}

#[test]
fn round_robin_rotates_once_per_period_and_ignores_hysteresis() {
    let mut cfg = SelectorConfig::new(Policy::RoundRobin);
    cfg.rotate_every = Duration::from_secs(10);
    let mut s = Selector::new(cfg);
    let c = [server("a", 1), server("b", 2), server("c", 3)];
    assert_eq!(ids(&s.decide(&c, at(0), &mut rng())), ["a"]);
    assert_eq!(ids(&s.decide(&c, at(9_999), &mut rng())), ["a"]);
    assert_eq!(s.poll_timeout(), Some(at(10_000)));
    assert_eq!(ids(&s.decide(&c, at(10_000), &mut rng())), ["b"]);
    assert_eq!(ids(&s.decide(&c, at(20_000), &mut rng())), ["c"]);
    assert_eq!(ids(&s.decide(&c, at(30_000), &mut rng())), ["a"]);
}

#[test]
fn a_policy_change_applies_on_the_next_decision() {
    let mut s = selector(Policy::LeastLoaded, Hysteresis::NONE);
    let c = [
        with_rt(with_pending(server("a", 1), 10), 50),
        with_rt(with_pending(server("b", 2), 90), 5),
    ];
    assert_eq!(ids(&s.decide(&c, at(0), &mut rng())), ["a"]);
    let mut cfg = s.config().clone();
    cfg.policy = Policy::FastestResponse;
    s.set_config(cfg);
    assert_eq!(ids(&s.decide(&c, at(1), &mut rng())), ["b"]);
}
