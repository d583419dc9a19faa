//! Invariants of the decision engine, over random candidate sets, policies and histories.

mod common;

use std::time::Duration;

use common::*;
use fedlb_core::*;
use proptest::prelude::*;

fn health() -> impl Strategy<Value = Health> {
    prop_oneof![
        4 => Just(Health::Up),
        2 => Just(Health::Down),
        1 => Just(Health::Stale),
        1 => Just(Health::Unknown),
        1 => Just(Health::Drained),
    ]
}

fn candidate(i: u8) -> impl Strategy<Value = Candidate> {
    (
        health(),
        proptest::option::of(0u64..200),
        proptest::option::of(1u64..500),
        proptest::option::of(1.0f64..200.0),
        1.0f64..500.0,
        proptest::option::of(0.0f64..50.0),
    )
        .prop_map(move |(h, pending, rt, dist, cap, users)| {
            let mut c = with_health(server(&format!("s{i}"), i), h);
            c.capacity = cap;
            c.readings.pending = pending.map(|p| Sample::new(p, Timestamp::ZERO));
            c.readings.response_time =
                rt.map(|r| Sample::new(Duration::from_millis(r), Timestamp::ZERO));
            c.distance = dist.map(Distance::Pinned);
            if let Some(u) = users {
                c.readings
                    .metrics
                    .insert("users".into(), Sample::new(u, Timestamp::ZERO));
            }
            c
        })
}

fn candidates() -> impl Strategy<Value = Vec<Candidate>> {
    (1usize..7).prop_flat_map(|n| (0..n as u8).map(|i| candidate(i + 1)).collect::<Vec<_>>())
}

fn policy() -> impl Strategy<Value = Policy> {
    let leaf = prop_oneof![
        Just(Policy::LeastLoaded),
        Just(Policy::FastestResponse),
        Just(Policy::Closest(ClosestBy::Auto)),
        Just(Policy::Weighted),
        Just(Policy::RoundRobin),
        Just(Policy::Random),
        Just(Policy::LowestMetric("users".into())),
        Just(Policy::Failover(vec!["s3".into(), "s1".into()])),
    ];
    prop_oneof![
        3 => leaf.clone(),
        1 => (leaf.clone(), 0.1f64..1.0).prop_map(|(rank, max)| Policy::Composite {
            filters: vec![Filter::MaxLoad(max)],
            rank: Box::new(rank),
            fallback: None,
        }),
        1 => (leaf.clone(), leaf, 0.1f64..1.0).prop_map(|(rank, fallback, max)| Policy::Composite {
            filters: vec![Filter::MaxLoad(max)],
            rank: Box::new(rank),
            fallback: Some(Box::new(fallback)),
        }),
    ]
}

fn config() -> impl Strategy<Value = SelectorConfig> {
    (
        policy(),
        1usize..4,
        0.0f64..0.5,
        0u64..5_000,
        prop::bool::ANY,
    )
        .prop_map(|(p, n, margin, dwell, all)| {
            let mut c = SelectorConfig::new(p);
            c.answers = n;
            c.hysteresis = Hysteresis {
                margin,
                dwell: Duration::from_millis(dwell),
            };
            c.fail_static = if all {
                FailStatic::All
            } else {
                FailStatic::KeepLast
            };
            c.rotate_every = Duration::from_secs(1);
            c
        })
}

/// A history: a sequence of candidate sets over time.
fn history() -> impl Strategy<Value = Vec<Vec<Candidate>>> {
    prop::collection::vec(candidates(), 1..25)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn never_prefers_an_unhealthy_candidate_while_a_healthy_one_exists(cfg in config(), hist in history()) {
        let mut s = Selector::new(cfg.clone());
        let mut r = rng();
        for (i, cands) in hist.iter().enumerate() {
            let d = s.decide(cands, at(i as u64 * 700), &mut r);
            if cands.iter().any(|c| c.health.is_up()) {
                prop_assert!(!d.degraded);
                prop_assert!(!d.chosen.is_empty());
                prop_assert!(d.chosen.len() <= cfg.answers);
                for id in &d.chosen {
                    let c = cands.iter().find(|c| &c.id == id).expect("chosen among candidates");
                    prop_assert!(c.health.is_up(), "{id} is {} but chosen", c.health);
                }
            } else {
                prop_assert!(d.degraded);
            }
        }
    }

    #[test]
    fn identical_inputs_give_identical_decisions(cfg in config(), hist in history()) {
        let run = || {
            let mut s = Selector::new(cfg.clone());
            let mut r = rng();
            hist.iter()
                .enumerate()
                .map(|(i, c)| s.decide(c, at(i as u64 * 700), &mut r))
                .collect::<Vec<_>>()
        };
        prop_assert_eq!(run(), run());
    }

    #[test]
    fn answers_are_never_empty_once_a_first_good_answer_existed(cfg in config(), hist in history()) {
        let mut s = Selector::new(cfg);
        let mut r = rng();
        let mut had_answer = false;
        for (i, cands) in hist.iter().enumerate() {
            let d = s.decide(cands, at(i as u64 * 700), &mut r);
            if had_answer {
                prop_assert!(!d.addresses.is_empty(), "empty answer after a good one: {}", d.why);
            }
            had_answer |= !d.addresses.is_empty();
        }
    }

    #[test]
    fn without_hysteresis_a_stable_policy_answers_the_ranking_head(cands in candidates()) {
        let mut cfg = SelectorConfig::new(Policy::FastestResponse);
        cfg.hysteresis = Hysteresis::NONE;
        let mut s = Selector::new(cfg);
        let d = s.decide(&cands, at(0), &mut rng());
        let healthy: Vec<&Candidate> = cands.iter().filter(|c| c.health.is_up()).collect();
        if let Some(best) = Policy::FastestResponse.rank(&healthy, 0, &mut rng()).first() {
            prop_assert_eq!(&d.chosen[0], &best.id);
        }
    }

    #[test]
    fn probe_health_follows_the_thresholds(rise in 1u32..5, fall in 1u32..5, results in prop::collection::vec(any::<bool>(), 1..60)) {
        let mut p = ProbeHealth::new(Thresholds { rise, fall });
        let mut state = None::<bool>;
        let mut streak = 0;
        for ok in results {
            p.observe(ok);
            // a reference model
            match state {
                None => state = Some(ok),
                Some(s) if s == ok => streak = 0,
                Some(_) => {
                    streak += 1;
                    if streak >= if ok { rise } else { fall } {
                        state = Some(ok);
                        streak = 0;
                    }
                }
            }
            let want = if state == Some(true) { Health::Up } else { Health::Down };
            prop_assert_eq!(p.state(), want);
        }
    }
}

/// A config that may answer a weighted set or split a composite over its limit.
fn balanced_config() -> impl Strategy<Value = SelectorConfig> {
    (config(), prop::bool::ANY, prop::bool::ANY).prop_map(|(mut c, weighted, split)| {
        if weighted {
            c.set = AnswerSet::Weighted;
        }
        if split {
            c.spill = Spill::Split;
        }
        c
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn weights_are_aligned_non_negative_and_only_on_healthy_members(cfg in balanced_config(), hist in history()) {
        let mut s = Selector::new(cfg.clone());
        let mut r = rng();
        for (i, cands) in hist.iter().enumerate() {
            let d = s.decide(cands, at(i as u64 * 700), &mut r);
            prop_assert_eq!(d.weights.len(), d.addresses.len());
            prop_assert!(d.weights.iter().all(|w| w.is_finite() && *w >= 0.0), "{:?}", d.weights);
            let healthy: Vec<&Candidate> = cands.iter().filter(|c| c.health.is_up()).collect();
            if healthy.is_empty() {
                continue;
            }
            // while any member is healthy, only healthy members carry weight
            for (addr, w) in d.addresses.iter().zip(&d.weights) {
                let owner = healthy.iter().any(|c| c.addresses.contains(addr));
                prop_assert!(owner || *w == 0.0, "{addr} weighted {w} but not healthy");
            }
            let total: f64 = d.shares().iter().map(|(_, s)| s).sum();
            prop_assert!((total - 1.0).abs() < 1e-9, "one family, shares sum to 1: {total}");
            let h = d.headroom.expect("a healthy answer has a headroom");
            prop_assert!((0.0..=1.0).contains(&h));
            if cfg.set == AnswerSet::Weighted {
                prop_assert_eq!(d.chosen.len(), healthy.len(), "a weighted set holds every healthy member");
                // a member with more headroom never gets a smaller share
                for a in &healthy {
                    for b in &healthy {
                        let (sa, sb) = (share_of(&d, a), share_of(&d, b));
                        if spread::headroom(a) > spread::headroom(b) + 1e-9 {
                            prop_assert!(sa >= sb - 1e-9, "{} {sa} vs {} {sb}", a.id, b.id);
                        }
                    }
                }
            }
        }
    }
}

fn share_of(d: &Decision, c: &Candidate) -> f64 {
    d.shares()
        .iter()
        .filter(|(a, _)| c.addresses.contains(a))
        .map(|(_, s)| s)
        .sum()
}
