//! Per-region decisions at the global tier: each region's clients get the closest healthy
//! farm from where they are, with their own hysteresis, fail-static and why; load spills a
//! region's answer to its next closest farm.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use fedlb_core::*;
use proptest::prelude::*;

const FARMS: [&str; 3] = ["eu-west", "us-east", "ap-south"];

/// Each farm answers with one address: 10, 20, 30.
fn address(farm: &str) -> std::net::IpAddr {
    ip(match farm {
        "eu-west" => 10,
        "us-east" => 20,
        _ => 30,
    })
}

fn spill() -> Policy {
    Policy::Composite {
        filters: vec![Filter::MaxLoad(0.8)],
        rank: Box::new(Policy::Closest(ClosestBy::Auto)),
        fallback: Some(Box::new(Policy::LeastLoaded)),
    }
}

fn region(name: &str, distances: &[(&str, f64)]) -> RegionSpec {
    RegionSpec {
        id: name.into(),
        distances: distances
            .iter()
            .map(|(f, d)| (CandidateId::from(*f), Distance::Pinned(*d)))
            .collect(),
    }
}

/// The global node's own distances: eu-west 10, us-east 80, ap-south 160 (as the demo).
fn config(policy: Policy, hysteresis: Hysteresis, regions: Vec<RegionSpec>) -> GlobalConfig {
    let members = FARMS
        .iter()
        .zip([10.0, 80.0, 160.0])
        .map(|(f, d)| MemberSpec {
            id: (*f).into(),
            kind: MemberKind::Farm,
            addresses: vec![],
            capacity: 100.0,
            distance: Some(Distance::Pinned(d)),
            liveness: Liveness::from_heartbeat(Duration::from_secs(1), 3),
        })
        .collect();
    let mut selector = SelectorConfig::new(policy);
    selector.hysteresis = hysteresis;
    let mut services = BTreeMap::new();
    services.insert(ServiceId::from("www"), TierService { selector, members });
    GlobalConfig {
        regions,
        ..GlobalConfig::new(services)
    }
}

fn eu_us() -> Vec<RegionSpec> {
    vec![
        region(
            "eu",
            &[("eu-west", 12.0), ("us-east", 95.0), ("ap-south", 130.0)],
        ),
        region(
            "us",
            &[("eu-west", 90.0), ("us-east", 8.0), ("ap-south", 200.0)],
        ),
    ]
}

fn summary(farm: &str, seq: u64, health: Health, pending: u64) -> Summary {
    Summary {
        farm: farm.into(),
        service: "www".into(),
        epoch: 1,
        seq,
        health,
        policy: "least loaded".into(),
        why: String::new(),
        chosen: vec![],
        addresses: vec![address(farm)],
        members: Members { up: 1, total: 1 },
        weights: vec![],
        capacity: 100.0,
        readings: Readings {
            pending: Some(Sample::new(pending, Timestamp::ZERO)),
            ..Readings::default()
        },
        aggregates: Default::default(),
        degraded: false,
        servers: vec![],
    }
}

fn global(policy: Policy, regions: Vec<RegionSpec>) -> GlobalState {
    let mut g = GlobalState::new(config(policy, Hysteresis::NONE, regions), 7);
    g.set_coalesce(Duration::ZERO);
    g
}

/// Every farm up with the given pending requests, at `t` ms.
fn all_up(g: &mut GlobalState, seq: u64, t: u64, pending: [u64; 3]) {
    for (f, p) in FARMS.iter().zip(pending) {
        g.handle_summary(&summary(f, seq, Health::Up, p), at(t))
            .unwrap();
    }
}

/// What was published, by region name (`-` for the default region): the first address.
fn published(g: &mut GlobalState) -> BTreeMap<String, std::net::IpAddr> {
    let mut out = BTreeMap::new();
    while let Some(GlobalOutput::Publish(p)) = g.poll_output() {
        let region = p.region.map_or("-".to_owned(), |r| r.0);
        out.insert(region, p.decision.addresses[0]);
    }
    out
}

fn answer(g: &GlobalState, region: Option<&str>) -> std::net::IpAddr {
    let region = region.map(RegionId::from);
    g.tier().services()[&ServiceId::from("www")]
        .decision_in(region.as_ref())
        .expect("decided")
        .addresses[0]
}

#[test]
fn each_region_gets_its_closest_farm() {
    let mut g = global(Policy::Closest(ClosestBy::Auto), eu_us());
    all_up(&mut g, 1, 0, [10, 10, 10]);
    let out = published(&mut g);
    assert_eq!(out["-"], address("eu-west"), "the global node's own view");
    assert_eq!(out["eu"], address("eu-west"));
    assert_eq!(out["us"], address("us-east"));
    assert_eq!(out.len(), 3);
}

#[test]
fn a_failed_farm_moves_only_the_regions_it_answered() {
    let mut g = global(Policy::Closest(ClosestBy::Auto), eu_us());
    all_up(&mut g, 1, 0, [10, 10, 10]);
    published(&mut g);
    g.handle_summary(&summary("eu-west", 2, Health::Down, 0), at(1_000))
        .unwrap();
    let out = published(&mut g);
    // eu's next closest is us-east (95 ms) for eu clients; the default region moves too;
    // us clients keep their answer and nothing is published for them
    assert_eq!(out["eu"], address("us-east"));
    assert_eq!(out["-"], address("us-east"));
    assert!(!out.contains_key("us"), "{out:?}");
    let why = &g.tier().services()[&ServiceId::from("www")].regions()[0]
        .decision()
        .unwrap()
        .why;
    assert!(
        why.starts_with("eu clients: us-east: closest (95 ms)"),
        "{why}"
    );
    assert!(why.contains("eu-west is down"), "{why}");
}

#[test]
fn a_region_measures_only_from_where_its_clients_are() {
    // us declares no distance to ap-south: it ranks last for us, whatever the global
    // node's RTT to it says
    let regions = vec![region("us", &[("eu-west", 90.0), ("us-east", 8.0)])];
    let mut g = global(Policy::Closest(ClosestBy::Auto), regions);
    all_up(&mut g, 1, 0, [10, 10, 10]);
    g.handle_rtt(&"ap-south".into(), Duration::from_millis(1), at(10));
    g.handle_summary(&summary("us-east", 2, Health::Down, 0), at(1_000))
        .unwrap();
    assert_eq!(answer(&g, Some("us")), address("eu-west"));
    let d = g.tier().services()[&ServiceId::from("www")]
        .decision_in(Some(&"us".into()))
        .unwrap();
    let ap = d.standings.iter().find(|s| s.id.as_str() == "ap-south");
    assert_eq!(ap.unwrap().shown, "no reading");
}

#[test]
fn a_busy_farm_spills_its_region_to_the_next_closest_under_the_limit() {
    let mut g = global(spill(), eu_us());
    all_up(&mut g, 1, 0, [40, 30, 10]);
    published(&mut g);
    // eu-west at 91 %: eu clients go to us-east (next closest under 80 %); us keeps us-east
    all_up(&mut g, 2, 1_000, [91, 30, 10]);
    let out = published(&mut g);
    assert_eq!(out["eu"], address("us-east"));
    assert!(!out.contains_key("us"));
    let why = &g.tier().services()[&ServiceId::from("www")].regions()[0]
        .decision()
        .unwrap()
        .why;
    assert!(
        why.contains("; not meeting load ≤ 80 %: eu-west 12 ms, load 91 %"),
        "{why}"
    );
    // every farm over the limit: the least loaded of them, for every region
    all_up(&mut g, 3, 2_000, [95, 90, 85]);
    published(&mut g);
    for region in [None, Some("eu"), Some("us")] {
        assert_eq!(answer(&g, region), address("ap-south"), "{region:?}");
    }
    // back under the limit: each region's closest again
    all_up(&mut g, 4, 3_000, [20, 20, 20]);
    let out = published(&mut g);
    assert_eq!(out["eu"], address("eu-west"));
    assert_eq!(out["us"], address("us-east"));
}

#[test]
fn hysteresis_is_per_region() {
    let hyst = Hysteresis {
        margin: 0.2,
        dwell: Duration::from_secs(10),
    };
    let mut g = GlobalState::new(config(Policy::LeastLoaded, hyst, eu_us()), 7);
    g.set_coalesce(Duration::ZERO);
    all_up(&mut g, 1, 0, [10, 50, 50]);
    published(&mut g);
    // us-east becomes much less loaded: every region waits out its own dwell
    all_up(&mut g, 2, 1_000, [50, 5, 50]);
    assert!(published(&mut g).is_empty());
    let svc = &g.tier().services()[&ServiceId::from("www")];
    for r in svc.regions() {
        assert_eq!(r.next_change(), Some(at(11_000)), "{}", r.id());
        assert!(r.decision().unwrap().why.contains("holding"));
    }
    // heartbeats with the same readings until the dwell ends: then all three move
    for t in 2..=10 {
        all_up(&mut g, t + 1, t * 1_000, [50, 5, 50]);
        assert!(published(&mut g).is_empty(), "at {t} s");
    }
    g.handle_timeout(at(11_000));
    let out = published(&mut g);
    assert_eq!(out.len(), 3);
    assert!(out.values().all(|a| *a == address("us-east")));
}

#[test]
fn fail_static_keeps_each_regions_last_answer() {
    let mut g = global(Policy::Closest(ClosestBy::Auto), eu_us());
    all_up(&mut g, 1, 0, [10, 10, 10]);
    published(&mut g);
    // every farm node falls silent at once: stale after 3 s, all at the same moment
    g.handle_timeout(at(3_500));
    published(&mut g);
    assert_eq!(answer(&g, Some("eu")), address("eu-west"));
    assert_eq!(answer(&g, Some("us")), address("us-east"));
    let svc = &g.tier().services()[&ServiceId::from("www")];
    assert!(svc.regions().iter().all(|r| r.decision().unwrap().degraded));
}

#[test]
fn a_reload_keeps_remaining_regions_and_forgets_removed_ones() {
    let mut g = global(Policy::Closest(ClosestBy::Auto), eu_us());
    all_up(&mut g, 1, 0, [10, 10, 10]);
    published(&mut g);
    let only_us = vec![eu_us().remove(1)];
    g.set_config(
        config(Policy::Closest(ClosestBy::Auto), Hysteresis::NONE, only_us),
        at(500),
    );
    // nothing changed for us: nothing published; eu is gone from what was published
    assert!(published(&mut g).is_empty());
    let keys: Vec<Option<&str>> = g
        .published()
        .keys()
        .map(|(_, r)| r.as_ref().map(RegionId::as_str))
        .collect();
    assert_eq!(keys, vec![None, Some("us")]);
    // a new region is decided and published at once
    g.set_config(
        config(Policy::Closest(ClosestBy::Auto), Hysteresis::NONE, eu_us()),
        at(600),
    );
    assert_eq!(published(&mut g)["eu"], address("eu-west"));
}

#[test]
fn without_regions_nothing_changes() {
    let mut g = global(Policy::Closest(ClosestBy::Auto), vec![]);
    all_up(&mut g, 1, 0, [10, 10, 10]);
    let out = published(&mut g);
    assert_eq!(out.len(), 1);
    assert_eq!(out["-"], address("eu-west"));
}

fn arb_health() -> impl Strategy<Value = Health> {
    prop_oneof![
        4 => Just(Health::Up),
        1 => Just(Health::Down),
    ]
}

proptest! {
    /// A region decides exactly as a global node standing where the region's clients are:
    /// the same inputs to a one-region node and to a node whose own distances are the
    /// region's give the same answers, step by step.
    #[test]
    fn a_region_decides_as_a_node_standing_there(
        steps in proptest::collection::vec(
            (0usize..3, arb_health(), 0u64..120, 1u64..3_000),
            1..40,
        ),
        distances in proptest::collection::vec(1.0f64..300.0, 3),
        policy in prop_oneof![
            Just(Policy::Closest(ClosestBy::Auto)),
            Just(Policy::LeastLoaded),
            Just(spill()),
        ],
        margin in 0.0f64..0.5,
        dwell in 0u64..5_000,
    ) {
        let hyst = Hysteresis { margin, dwell: Duration::from_millis(dwell) };
        let there: Vec<(&str, f64)> =
            FARMS.iter().copied().zip(distances.iter().copied()).collect();
        let mut regional = GlobalState::new(
            config(policy.clone(), hyst, vec![region("r", &there)]),
            3,
        );
        let mut standing = config(policy, hyst, vec![]);
        for m in &mut standing.services.get_mut(&ServiceId::from("www")).unwrap().members {
            m.distance = there
                .iter()
                .find(|(f, _)| *f == m.id.as_str())
                .map(|(_, d)| Distance::Pinned(*d));
        }
        let mut local = GlobalState::new(standing, 3);
        let mut now = 0;
        for (seq, (farm, health, pending, dt)) in steps.into_iter().enumerate() {
            now += dt;
            let s = summary(FARMS[farm], seq as u64 + 1, health, pending);
            regional.handle_summary(&s, at(now)).unwrap();
            local.handle_summary(&s, at(now)).unwrap();
            regional.handle_timeout(at(now));
            local.handle_timeout(at(now));
            let r = regional.tier().services()[&ServiceId::from("www")]
                .decision_in(Some(&"r".into()))
                .map(|d| (d.chosen.clone(), d.degraded));
            let l = local.tier().services()[&ServiceId::from("www")]
                .decision()
                .map(|d| (d.chosen.clone(), d.degraded));
            prop_assert_eq!(r, l, "at {} ms", now);
        }
    }
}
