//! A timeout decides only what can have changed; deciding everything instead must give the
//! same decisions. Two farm (or global) states are fed the same random events: one handles
//! each timeout incrementally, the other re-decides every service (`recompute_all`). Every
//! output, every decision (default and per region) and every next timeout must agree.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use fedlb_core::*;
use proptest::prelude::*;

const SERVICES: [&str; 2] = ["www", "api"];
const SERVERS: usize = 5;

fn policy() -> impl Strategy<Value = Policy> {
    let leaf = prop_oneof![
        Just(Policy::LeastLoaded),
        Just(Policy::FastestResponse),
        Just(Policy::Closest(ClosestBy::Auto)),
        Just(Policy::Weighted),
        Just(Policy::RoundRobin),
        Just(Policy::Random),
        Just(Policy::Failover(vec!["s3".into(), "s1".into()])),
    ];
    prop_oneof![
        3 => leaf.clone(),
        1 => (leaf.clone(), leaf, 0.1f64..1.0).prop_map(|(rank, fallback, max)| Policy::Composite {
            filters: vec![Filter::MaxLoad(max)],
            rank: Box::new(rank),
            fallback: Some(Box::new(fallback)),
        }),
    ]
}

fn selector() -> impl Strategy<Value = SelectorConfig> {
    (
        policy(),
        1usize..4,
        prop_oneof![Just(0.0), 0.0f64..0.5],
        prop_oneof![Just(0u64), 0u64..3_000],
        any::<bool>(),
        300u64..2_000,
    )
        .prop_map(|(p, answers, margin, dwell, all, rotate)| {
            let mut c = SelectorConfig::new(p);
            c.answers = answers;
            c.hysteresis = Hysteresis {
                margin,
                dwell: Duration::from_millis(dwell),
            };
            c.fail_static = if all {
                FailStatic::All
            } else {
                FailStatic::KeepLast
            };
            c.rotate_every = Duration::from_millis(rotate);
            c
        })
}

/// What can happen to a node between two looks at it.
#[derive(Clone, Debug)]
enum Event {
    /// A member reports (or a farm summarises): service, member, health, load, response.
    Report(usize, usize, Health, Option<u64>, Option<u64>),
    /// A member says again what it said in an earlier report (the k-th latest, counting
    /// from 0): the same health and readings, measured now — what a farm's heartbeat or an
    /// agent's steady load looks like. A tier takes it without deciding again.
    Repeat(usize),
    /// Time passes by this many milliseconds; timeouts fall due on the way.
    Wait(u64),
    /// The shell calls `handle_timeout` although nothing is due (another timer woke it).
    Spurious,
    /// A member is drained or undrained.
    Drain(usize, bool),
    /// A measured round-trip time (the global node only).
    Rtt(usize, u64),
    /// A reload: a new selector for a service, and perhaps a member dropped.
    Reload(usize, SelectorConfig, Option<usize>),
}

fn health() -> impl Strategy<Value = Health> {
    prop_oneof![4 => Just(Health::Up), 2 => Just(Health::Down)]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        8 => (0..SERVICES.len(), 0..SERVERS, health(), proptest::option::of(0u64..200),
              proptest::option::of(1u64..300))
            .prop_map(|(s, m, h, p, rt)| Event::Report(s, m, h, p, rt)),
        5 => prop_oneof![1u64..150, 150u64..2_000, 2_000u64..8_000].prop_map(Event::Wait),
        1 => Just(Event::Spurious),
        3 => (0usize..3).prop_map(Event::Repeat),
        1 => (0..SERVERS, any::<bool>()).prop_map(|(m, d)| Event::Drain(m, d)),
        1 => (0..SERVERS, 1u64..300).prop_map(|(m, ms)| Event::Rtt(m, ms)),
        1 => (0..SERVICES.len(), selector(), proptest::option::of(0..SERVERS))
            .prop_map(|(s, c, drop)| Event::Reload(s, c, drop)),
    ]
}

/// The event to feed at `i`: a repeat stands for the report it repeats (itself when no
/// report came before it).
fn resolve(events: &[Event], i: usize) -> &Event {
    let Event::Repeat(k) = &events[i] else {
        return &events[i];
    };
    let earlier: Vec<&Event> = events[..i]
        .iter()
        .filter(|e| matches!(e, Event::Report(..)))
        .collect();
    match earlier.len() {
        0 => &events[i],
        n => earlier[n - 1 - k % n],
    }
}

fn name(m: usize) -> String {
    format!("s{m}")
}

fn member(m: usize, kind: MemberKind) -> MemberSpec {
    MemberSpec {
        id: name(m).as_str().into(),
        kind,
        addresses: if kind == MemberKind::Farm {
            vec![]
        } else {
            vec![ip(m as u8 + 1)]
        },
        capacity: 50.0 + 25.0 * m as f64,
        distance: Some(Distance::Pinned(10.0 + 15.0 * m as f64)),
        liveness: Liveness {
            stale_after: Duration::from_millis(2_500),
            down_after: Duration::from_millis(5_000),
        },
        sources: Vec::new(),
    }
}

fn services(
    selectors: &[SelectorConfig],
    dropped: &[Option<usize>],
    kind: MemberKind,
) -> BTreeMap<ServiceId, TierService> {
    SERVICES
        .iter()
        .zip(selectors)
        .zip(dropped)
        .map(|((s, selector), drop)| {
            let members = (0..SERVERS)
                .filter(|m| Some(*m) != *drop)
                .map(|m| member(m, kind))
                .collect();
            (
                ServiceId::from(*s),
                TierService {
                    selector: selector.clone(),
                    members,
                },
            )
        })
        .collect()
}

fn readings(load: Option<u64>, rt: Option<u64>, now: Timestamp) -> Readings {
    Readings {
        pending: load.map(|p| Sample::new(p, now)),
        response_time: rt.map(|ms| Sample::new(Duration::from_millis(ms), now)),
        ..Readings::default()
    }
}

/// Advances both states to `until`, handing each the timeouts the first one asks for (the
/// second must ask for the same), and compares after each.
fn run<S>(
    states: &mut [S; 2],
    events: &[Event],
    feed: impl Fn(&mut S, usize, Timestamp),
    timeout: [fn(&mut S, Timestamp); 2],
    poll: fn(&S, Timestamp) -> Option<Timestamp>,
    mut compare: impl FnMut(&mut [S; 2], &str) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    let mut now = at(1_000);
    for (i, e) in events.iter().enumerate() {
        match e {
            Event::Wait(ms) => {
                let until = now + Duration::from_millis(*ms);
                let mut fired = None;
                loop {
                    let next = poll(&states[0], now);
                    prop_assert_eq!(
                        next,
                        poll(&states[1], now),
                        "next timeout after event {}",
                        i
                    );
                    // a timeout that stays due (a rotation held back by a warm-up) would wake
                    // a shell at once again: time moves on meanwhile
                    let next = next.map(|t| match fired {
                        Some(f) if t <= f => f + Duration::from_millis(10),
                        _ => t,
                    });
                    match next {
                        Some(t) if t <= until => {
                            now = now.max(t);
                            fired = Some(now);
                            timeout[0](&mut states[0], now);
                            timeout[1](&mut states[1], now);
                            compare(states, &format!("timeout at {now:?} after event {i}"))?;
                        }
                        _ => break,
                    }
                }
                now = until;
            }
            Event::Spurious => {
                timeout[0](&mut states[0], now);
                timeout[1](&mut states[1], now);
            }
            _ => {
                feed(&mut states[0], i, now);
                feed(&mut states[1], i, now);
            }
        }
        compare(states, &format!("event {i} {e:?}"))?;
    }
    Ok(())
}

fn farm_config(selectors: &[SelectorConfig], dropped: &[Option<usize>]) -> FarmConfig {
    FarmConfig {
        farm: "f".into(),
        services: services(selectors, dropped, MemberKind::Server),
        heartbeat: Duration::from_secs(1),
        metrics: Default::default(),
        node: String::new(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn a_farm_decides_the_same_incrementally_and_in_full(
        selectors in prop::collection::vec(selector(), SERVICES.len()),
        events in prop::collection::vec(event(), 1..60),
        coalesce in prop_oneof![Just(0u64), Just(100), 1u64..400],
        warmup in prop_oneof![Just(None), (500u64..4_000).prop_map(Some)],
    ) {
        let make = || {
            let mut f = FarmState::new(farm_config(&selectors, &[None; 2]), 3, 11, at(1_000));
            f.set_coalesce(Duration::from_millis(coalesce));
            if let Some(w) = warmup {
                f.set_warmup_window(Duration::from_millis(w));
            }
            f
        };
        let mut states = [make(), make()];
        // what each reload installs
        let (mut current, mut dropped) = (selectors.clone(), [None; 2]);
        let reloads: Vec<Option<FarmConfig>> = events
            .iter()
            .map(|e| match e {
                Event::Reload(s, c, drop) => {
                    current[*s] = c.clone();
                    dropped[*s] = *drop;
                    Some(farm_config(&current, &dropped))
                }
                _ => None,
            })
            .collect();
        let feed = |f: &mut FarmState, i: usize, now: Timestamp| match resolve(&events, i) {
            Event::Report(s, m, h, load, rt) => {
                let report = Report {
                    service: SERVICES[*s].into(),
                    server: name(*m).as_str().into(),
                    epoch: 1,
                    seq: i as u64,
                    health: *h,
                    reason: format!("{h}"),
                    readings: readings(*load, *rt, now),
                };
                let _ = f.handle_report(&report, now);
            }
            Event::Drain(m, d) => {
                f.set_drained(&name(*m).as_str().into(), *d, now);
            }
            Event::Reload(..) => f.set_config(reloads[i].clone().expect("a reload"), now),
            Event::Rtt(..) | Event::Wait(_) | Event::Spurious | Event::Repeat(_) => {}
        };
        run(
            &mut states,
            &events,
            feed,
            [FarmState::handle_timeout, FarmState::recompute_all],
            |f, now| f.poll_timeout(now),
            |[a, b], when| {
                loop {
                    let (x, y) = (a.poll_output(), b.poll_output());
                    prop_assert_eq!(&x, &y, "outputs at {}", when);
                    if x.is_none() {
                        break;
                    }
                }
                for (id, t) in a.tier().services() {
                    let u = &b.tier().services()[id];
                    prop_assert_eq!(t.decision(), u.decision(), "{} at {}", id, when);
                    prop_assert_eq!(t.next_change(), u.next_change(), "{} at {}", id, when);
                }
                Ok(())
            },
        )?;
    }

    #[test]
    fn a_global_node_decides_the_same_incrementally_and_in_full(
        selectors in prop::collection::vec(selector(), SERVICES.len()),
        events in prop::collection::vec(event(), 1..60),
        coalesce in prop_oneof![Just(0u64), Just(100), 1u64..400],
        regions in prop::collection::vec(
            prop::collection::vec(proptest::option::of(1.0f64..200.0), SERVERS), 0..3),
    ) {
        let regions: Vec<RegionSpec> = regions
            .iter()
            .enumerate()
            .map(|(r, d)| RegionSpec {
                id: format!("r{r}").as_str().into(),
                distances: d
                    .iter()
                    .enumerate()
                    .filter_map(|(m, d)| Some((name(m).as_str().into(), Distance::Pinned((*d)?))))
                    .collect(),
            })
            .collect();
        let config = |selectors: &[SelectorConfig], dropped: &[Option<usize>], regions: &[RegionSpec]| {
            let mut c = GlobalConfig::new(services(selectors, dropped, MemberKind::Farm));
            c.regions = regions.to_vec();
            c.ttl.insert(SERVICES[0].into(), TtlRule { derive: true, ..TtlRule::default() });
            c
        };
        let make = || {
            let mut g = GlobalState::new(config(&selectors, &[None; 2], &regions), 5);
            g.set_coalesce(Duration::from_millis(coalesce));
            g
        };
        let mut states = [make(), make()];
        let (mut current, mut dropped, mut n) = (selectors.clone(), [None; 2], 0);
        let reloads: Vec<Option<GlobalConfig>> = events
            .iter()
            .map(|e| match e {
                Event::Reload(s, c, drop) => {
                    current[*s] = c.clone();
                    dropped[*s] = *drop;
                    n += 1;
                    // every other reload drops the last region
                    let kept = regions.len() - usize::from(n % 2 == 1 && !regions.is_empty());
                    Some(config(&current, &dropped, &regions[..kept]))
                }
                _ => None,
            })
            .collect();
        let feed = |g: &mut GlobalState, i: usize, now: Timestamp| match resolve(&events, i) {
            Event::Report(s, m, h, load, rt) => {
                let up = *h == Health::Up;
                let summary = Summary {
                    farm: name(*m).as_str().into(),
                    service: SERVICES[*s].into(),
                    epoch: 1,
                    seq: i as u64,
                    health: *h,
                    policy: "least loaded".into(),
                    why: format!("{h}"),
                    chosen: vec![],
                    // a farm's answer moves now and then
                    addresses: vec![ip(10 * *m as u8 + (load.unwrap_or(0) % 3) as u8 + 1)],
                    weights: vec![1.0],
                    members: Members { up: u32::from(up), total: 2 },
                    capacity: 100.0,
                    readings: readings(*load, *rt, now),
                    aggregates: Default::default(),
                    degraded: !up,
                    servers: vec![],
                    incomplete: false,
                    node: String::new(),
                };
                let _ = g.handle_summary(&summary, now);
            }
            Event::Drain(m, d) => {
                g.set_drained(&name(*m).as_str().into(), *d, now);
            }
            Event::Rtt(m, ms) => g.handle_rtt(&name(*m).as_str().into(), Duration::from_millis(*ms), now),
            Event::Reload(..) => g.set_config(reloads[i].clone().expect("a reload"), now),
            Event::Wait(_) | Event::Spurious | Event::Repeat(_) => {}
        };
        run(
            &mut states,
            &events,
            feed,
            [GlobalState::handle_timeout, GlobalState::recompute_all],
            |g, now| g.poll_timeout(now),
            |[a, b], when| {
                loop {
                    let (x, y) = (a.poll_output(), b.poll_output());
                    prop_assert_eq!(&x, &y, "outputs at {}", when);
                    if x.is_none() {
                        break;
                    }
                }
                for (id, t) in a.tier().services() {
                    let u = &b.tier().services()[id];
                    prop_assert_eq!(t.decision(), u.decision(), "{} at {}", id, when);
                    for (r, q) in t.regions().iter().zip(u.regions()) {
                        prop_assert_eq!(r.decision(), q.decision(), "{} {} at {}", id, r.id(), when);
                        prop_assert_eq!(r.next_change(), q.next_change());
                    }
                }
                Ok(())
            },
        )?;
    }
}
