//! Answers sized to capacity (issue 14), driven on the simulated clock: a farm's weighted
//! answer carried through its summary into the global answer, the global split across
//! farms, republishing on weight moves, the TTL by load, and the two-choices policy.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use fedlb_core::*;

fn member(name: &str, last: u8, capacity: f64) -> MemberSpec {
    MemberSpec {
        id: name.into(),
        kind: MemberKind::Server,
        addresses: vec![ip(last)],
        capacity,
        distance: None,
        liveness: Liveness {
            stale_after: Duration::from_secs(3),
            down_after: Duration::from_secs(6),
        },
    }
}

fn farm(name: &str, sel: SelectorConfig, servers: &[(&str, u8, f64)]) -> FarmState {
    let mut services = BTreeMap::new();
    services.insert(
        ServiceId::from("www"),
        TierService {
            selector: sel,
            members: servers.iter().map(|(n, l, c)| member(n, *l, *c)).collect(),
        },
    );
    let cfg = FarmConfig {
        farm: name.into(),
        services,
        heartbeat: Duration::from_secs(1),
        metrics: Default::default(),
    };
    let mut f = FarmState::new(cfg, 9, 1, at(0));
    f.set_coalesce(Duration::ZERO);
    f
}

fn report(server: &str, seq: u64, pending: u64, now: Timestamp) -> Report {
    Report {
        service: "www".into(),
        server: server.into(),
        epoch: 1,
        seq,
        health: Health::Up,
        reason: "up".into(),
        readings: Readings {
            pending: Some(Sample::new(pending, now)),
            ..Readings::default()
        },
    }
}

fn last_summary(f: &mut FarmState) -> Option<Summary> {
    let mut out = None;
    while let Some(o) = f.poll_output() {
        if let FarmOutput::Summary(s) = o {
            out = Some(s);
        }
    }
    out
}

fn global(sel: SelectorConfig, farms: &[(&str, f64)], ttl: Option<TtlRule>) -> GlobalState {
    let members = farms
        .iter()
        .map(|(n, d)| {
            let mut m = member(n, 0, 100.0);
            m.kind = MemberKind::Farm;
            m.addresses = vec![];
            m.distance = Some(Distance::Pinned(*d));
            m
        })
        .collect();
    let mut services = BTreeMap::new();
    services.insert(
        ServiceId::from("www"),
        TierService {
            selector: sel,
            members,
        },
    );
    let mut config = GlobalConfig::new(services);
    if let Some(rule) = ttl {
        config.ttl.insert("www".into(), rule);
    }
    let mut g = GlobalState::new(config, 3);
    g.set_coalesce(Duration::ZERO);
    g
}

fn publishes(g: &mut GlobalState) -> Vec<Publish> {
    let mut out = vec![];
    while let Some(GlobalOutput::Publish(p)) = g.poll_output() {
        out.push(p);
    }
    out
}

fn shares(d: &Decision) -> Vec<(u8, u32)> {
    d.shares()
        .into_iter()
        .map(|(a, s)| match a {
            std::net::IpAddr::V4(v4) => (v4.octets()[3], (s * 100.0).round() as u32),
            std::net::IpAddr::V6(_) => (0, 0),
        })
        .collect()
}

fn weighted() -> SelectorConfig {
    let mut sel = SelectorConfig::new(Policy::LeastLoaded);
    sel.hysteresis = Hysteresis::NONE;
    sel.set = AnswerSet::Weighted;
    sel
}

#[test]
fn a_farms_weighted_answer_carries_its_weights_into_the_global_answer() {
    let mut eu = farm(
        "eu",
        weighted(),
        &[("eu1", 1, 100.0), ("eu2", 2, 100.0), ("eu3", 3, 50.0)],
    );
    for (s, p) in [("eu1", 0), ("eu2", 50), ("eu3", 0)] {
        eu.handle_report(&report(s, 1, p, at(0)), at(0)).unwrap();
    }
    let summary = last_summary(&mut eu).expect("a summary");
    // headroom 100, 50, 50: eu1 first (least loaded), then eu3 (0 %), then eu2 (50 %)
    assert_eq!(summary.addresses, vec![ip(1), ip(3), ip(2)]);
    assert_eq!(summary.weights, vec![0.5, 0.25, 0.25]);
    assert!(
        summary
            .why
            .contains("weighted by headroom: eu1 50 %, eu3 25 %, eu2 25 %")
    );

    let mut sel = SelectorConfig::new(Policy::Closest(ClosestBy::Auto));
    sel.hysteresis = Hysteresis::NONE;
    let mut g = global(sel, &[("eu", 10.0)], None);
    g.handle_summary(&summary, at(0)).unwrap();
    let p = publishes(&mut g).pop().expect("published");
    assert_eq!(shares(&p.decision), [(1, 50), (3, 25), (2, 25)]);
}

#[test]
fn weights_are_published_again_only_when_a_share_moves_past_the_tolerance() {
    let mut eu = farm("eu", weighted(), &[("eu1", 1, 100.0), ("eu2", 2, 100.0)]);
    let mut sel = SelectorConfig::new(Policy::Closest(ClosestBy::Auto));
    sel.hysteresis = Hysteresis::NONE;
    let mut g = global(sel, &[("eu", 10.0)], None);
    let mut seq = 0;
    let mut step = |eu: &mut FarmState, g: &mut GlobalState, t: u64, p1: u64, p2: u64| {
        seq += 1;
        let now = at(t);
        eu.handle_report(&report("eu1", seq, p1, now), now).unwrap();
        eu.handle_report(&report("eu2", seq, p2, now), now).unwrap();
        eu.handle_timeout(now);
        if let Some(s) = last_summary(eu) {
            g.handle_summary(&s, now).unwrap();
        }
        g.handle_timeout(now);
        publishes(g)
    };
    let first = step(&mut eu, &mut g, 0, 0, 0);
    assert_eq!(shares(&first.last().unwrap().decision), [(1, 50), (2, 50)]);
    // 0 % vs 4 %: shares 51/49, within the tolerance: nothing new, even at a heartbeat
    assert!(step(&mut eu, &mut g, 1_000, 0, 4).is_empty());
    assert!(step(&mut eu, &mut g, 2_000, 0, 4).is_empty());
    // 0 % vs 60 %: 71/29, published at once
    let p = step(&mut eu, &mut g, 2_500, 0, 60);
    assert_eq!(
        shares(&p.last().expect("weights moved").decision),
        [(1, 71), (2, 29)]
    );
}

fn spill_split() -> SelectorConfig {
    let mut sel = SelectorConfig::new(Policy::Composite {
        filters: vec![Filter::MaxLoad(0.8)],
        rank: Box::new(Policy::Closest(ClosestBy::Auto)),
        fallback: Some(Box::new(Policy::LeastLoaded)),
    });
    sel.hysteresis = Hysteresis::default();
    sel.spill = Spill::Split;
    sel
}

#[test]
fn a_busy_closest_farm_is_split_with_the_next_at_once_moving_only_its_excess_and_back_after() {
    let mut top1 = SelectorConfig::new(Policy::LeastLoaded);
    top1.hysteresis = Hysteresis::NONE;
    let mut eu = farm("eu", top1.clone(), &[("eu1", 1, 100.0)]);
    let mut us = farm("us", top1, &[("us1", 11, 100.0)]);
    let mut g = global(spill_split(), &[("eu", 10.0), ("us", 80.0)], None);
    let mut feed = |g: &mut GlobalState, t: u64, seq: u64, eu_p: u64, us_p: u64| {
        let now = at(t);
        eu.handle_report(&report("eu1", seq, eu_p, now), now)
            .unwrap();
        us.handle_report(&report("us1", seq, us_p, now), now)
            .unwrap();
        for f in [&mut eu, &mut us] {
            f.handle_timeout(now);
            if let Some(s) = last_summary(f) {
                g.handle_summary(&s, now).unwrap();
            }
        }
        g.handle_timeout(now);
        publishes(g)
    };
    let p = feed(&mut g, 0, 1, 30, 10);
    assert_eq!(p.last().unwrap().decision.addresses, vec![ip(1)]);
    // eu at 95 %: split at once (no dwell); only the excess moves: eu keeps 80/95 = 84 %
    let p = feed(&mut g, 1_000, 2, 95, 10);
    let d = &p.last().expect("split").decision;
    assert_eq!(shares(d), [(1, 84), (11, 16)]);
    assert!(
        d.why.contains(
            "eu over its limit (load 95 % > 80 %): split with us; shares: eu 84 %, us 16 %"
        ),
        "{}",
        d.why
    );
    // far over: eu keeps what it can carry at the limit (80/400 = 20 %)
    let p = feed(&mut g, 2_000, 3, 400, 10);
    let d = &p.last().expect("split deeper").decision;
    assert_eq!(shares(d), [(1, 20), (11, 80)]);
    // back under the limit: eu alone again
    let p = feed(&mut g, 3_000, 4, 40, 10);
    assert_eq!(p.last().expect("back").decision.addresses, vec![ip(1)]);
}

#[test]
fn the_ttl_by_load_is_short_for_a_busy_answer_and_long_for_an_idle_one() {
    let mut top1 = SelectorConfig::new(Policy::LeastLoaded);
    top1.hysteresis = Hysteresis::NONE;
    let mut eu = farm("eu", top1.clone(), &[("eu1", 1, 100.0)]);
    let mut us = farm("us", top1, &[("us1", 11, 100.0)]);
    let mut sel = SelectorConfig::new(Policy::Closest(ClosestBy::Auto));
    sel.hysteresis = Hysteresis::NONE;
    let rule = TtlRule::fixed(Duration::from_secs(60)).with_load(Duration::from_secs(5));
    let mut g = global(sel, &[("eu", 10.0), ("us", 80.0)], Some(rule));
    let mut feed = |g: &mut GlobalState, t: u64, seq: u64, eu_p: u64| {
        let now = at(t);
        eu.handle_report(&report("eu1", seq, eu_p, now), now)
            .unwrap();
        us.handle_report(&report("us1", seq, 0, now), now).unwrap();
        for f in [&mut eu, &mut us] {
            f.handle_timeout(now);
            if let Some(s) = last_summary(f) {
                g.handle_summary(&s, now).unwrap();
            }
        }
        g.handle_timeout(now);
        publishes(g)
    };
    // eu idle: as much room as anyone, the full TTL
    let p = feed(&mut g, 0, 1, 0);
    assert_eq!(p.last().unwrap().ttl, 60);
    // eu (closest, still answered) at 90 %: a tenth of us's headroom, a tenth of the TTL
    let p = feed(&mut g, 1_000, 2, 90);
    let p = p.last().expect("the ttl moved");
    assert_eq!((p.decision.addresses.clone(), p.ttl), (vec![ip(1)], 6));
    // at 99 % the floor of 5 % headroom: 3 s, bounded below by ttl_min
    let p = feed(&mut g, 2_000, 3, 99);
    assert_eq!(p.last().expect("moved").ttl, 5);
    // a small move is not published (5 → 5)
    assert!(feed(&mut g, 3_000, 4, 98).is_empty());
    // idle again: back to the full TTL
    assert_eq!(feed(&mut g, 4_000, 5, 0).last().expect("moved").ttl, 60);
}

#[test]
fn two_choices_spreads_rotations_by_capacity_and_avoids_the_busy_one_deterministically() {
    let run = |seed: u64| {
        let mut sel = SelectorConfig::new(Policy::TwoChoices);
        sel.rotate_every = Duration::from_secs(1);
        let mut services = BTreeMap::new();
        services.insert(
            ServiceId::from("www"),
            TierService {
                selector: sel,
                members: vec![
                    member("big", 1, 100.0),
                    member("busy", 2, 100.0),
                    member("small", 3, 25.0),
                ],
            },
        );
        let cfg = FarmConfig {
            farm: "eu".into(),
            services,
            heartbeat: Duration::from_secs(1),
            metrics: Default::default(),
        };
        let mut f = FarmState::new(cfg, 1, seed, at(0));
        f.set_coalesce(Duration::ZERO);
        let mut chosen = Vec::new();
        for s in 0..600u64 {
            let now = at(s * 1_000);
            for (name, p) in [("big", 10), ("busy", 90), ("small", 2)] {
                f.handle_report(&report(name, s + 1, p, now), now).unwrap();
            }
            f.handle_timeout(now);
            while f.poll_output().is_some() {}
            let d = f.tier().services()[&ServiceId::from("www")]
                .decision()
                .unwrap()
                .clone();
            chosen.push(d.chosen[0].to_string());
        }
        chosen
    };
    let a = run(5);
    assert_eq!(a, run(5), "same seed, same choices");
    let count = |who: &str| a.iter().filter(|c| *c == who).count();
    // busy (90 %) wins only when drawn with... nobody: never
    assert_eq!(count("busy"), 0);
    // small (8 % load) beats big (10 %) whenever drawn: P(small drawn) with weights
    // 100/100/25 is 1 − P(big, busy) ≈ 0.36
    let small = count("small") as f64 / a.len() as f64;
    assert!((0.25..0.47).contains(&small), "small chosen {small}");
    assert!(count("big") > count("small"));
}
