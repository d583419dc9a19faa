//! Several farm nodes per farm (issue 17 item 2) at the global tier: the farm is up while any
//! of its farm nodes reports it up; the summary in use is the first live node's in topology
//! order that reports the farm up, so one node's death changes no answer; and a farm's
//! summaries may have a shorter heartbeat than reports, so a one-node farm's death is
//! noticed within 1.5 s. All on the simulated clock.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use fedlb_core::*;
use proptest::prelude::*;

/// The summary heartbeat the topology derives from the default 1 s report heartbeat.
fn summary_liveness() -> Liveness {
    Liveness::from_heartbeat(summary_interval(Duration::from_secs(1)), 3)
}

/// Two farms for service `www`, closest first: `eu` (10 ms, nodes `eu_nodes`), `us` (80 ms,
/// one node named `us`).
fn global(eu_nodes: &[&str]) -> GlobalState {
    let member = |name: &str, d: f64, sources: &[&str]| MemberSpec {
        id: name.into(),
        kind: MemberKind::Farm,
        addresses: vec![],
        capacity: 100.0,
        distance: Some(Distance::Pinned(d)),
        liveness: summary_liveness(),
        sources: sources.iter().map(|s| (*s).to_owned()).collect(),
    };
    let mut selector = SelectorConfig::new(Policy::Closest(ClosestBy::Auto));
    selector.hysteresis = Hysteresis::NONE;
    let mut services = BTreeMap::new();
    services.insert(
        ServiceId::from("www"),
        TierService {
            selector,
            members: vec![member("eu", 10.0, eu_nodes), member("us", 80.0, &["us"])],
        },
    );
    let mut g = GlobalState::new(GlobalConfig::new(services), 1);
    g.set_coalesce(Duration::ZERO);
    g
}

/// Farm `farm`'s summary as node `node` builds it: up answers with 127.0.0.`last`.
fn summary(farm: &str, node: &str, seq: u64, up: bool, last: u8) -> Summary {
    Summary {
        farm: farm.into(),
        node: node.to_owned(),
        service: "www".into(),
        epoch: 7,
        seq,
        health: if up { Health::Up } else { Health::Down },
        policy: "least loaded".into(),
        why: format!("{node}'s view"),
        chosen: vec![],
        addresses: vec![ip(last)],
        weights: vec![],
        members: Members {
            up: u32::from(up),
            total: 1,
        },
        capacity: 100.0,
        readings: Readings::default(),
        degraded: !up,
        servers: vec![],
        incomplete: false,
        aggregates: Default::default(),
    }
}

fn answers(g: &mut GlobalState) -> Vec<Vec<std::net::IpAddr>> {
    let mut out = Vec::new();
    while let Some(GlobalOutput::Publish(p)) = g.poll_output() {
        out.push(p.decision.addresses);
    }
    out
}

fn member<'a>(g: &'a GlobalState, farm: &str) -> &'a fedlb_core::tier::MemberState {
    &g.tier().services()[&ServiceId::from("www")].members[&CandidateId::from(farm)]
}

fn view_source(g: &GlobalState, farm: &str, now: Timestamp) -> Option<String> {
    g.tier().services()[&ServiceId::from("www")]
        .views(now)
        .into_iter()
        .find(|v| v.id.as_str() == farm)
        .and_then(|v| v.source)
}

/// Runs the simulated clock from `from` to `to` in 50 ms steps: every live node of `eu`
/// (and `us`) summarises every 400 ms; returns every answer published meanwhile.
fn run(
    g: &mut GlobalState,
    from: u64,
    to: u64,
    live: &dyn Fn(&str, u64) -> bool,
    seq: &mut u64,
) -> Vec<Vec<std::net::IpAddr>> {
    let mut out = Vec::new();
    let mut t = from;
    while t < to {
        let now = at(t);
        if t.is_multiple_of(400) {
            *seq += 1;
            for node in ["eu-a", "eu-b"] {
                if live(node, t) {
                    g.handle_summary(&summary("eu", node, *seq, true, 11), now)
                        .expect("taken");
                }
            }
            g.handle_summary(&summary("us", "us", *seq, true, 21), now)
                .expect("taken");
        }
        g.handle_timeout(now);
        out.extend(answers(g));
        t += 50;
    }
    out
}

#[test]
fn killing_one_farm_node_of_two_changes_no_answer_and_status_names_the_node_in_use() {
    let mut g = global(&["eu-a", "eu-b"]);
    let mut seq = 0;
    let both = |_: &str, _: u64| true;
    let first = run(&mut g, 0, 4_000, &both, &mut seq);
    assert_eq!(first, vec![vec![ip(11)]], "eu answers once");
    assert_eq!(view_source(&g, "eu", at(4_000)), Some("eu-a".into()));

    // eu-a dies at 4 s: its summaries stop; eu-b goes on
    let a_dead = |node: &str, _: u64| node != "eu-a";
    let after = run(&mut g, 4_000, 12_000, &a_dead, &mut seq);
    assert!(after.is_empty(), "no answer changed: {after:?}");
    assert_eq!(
        member(&g, "eu").health(at(12_000)),
        Health::Up,
        "the farm stays up"
    );
    assert_eq!(view_source(&g, "eu", at(12_000)), Some("eu-b".into()));

    // eu-a comes back: in use again (first in topology order), still no change
    let back = run(&mut g, 12_000, 16_000, &both, &mut seq);
    assert!(back.is_empty(), "no answer changed: {back:?}");
    assert_eq!(view_source(&g, "eu", at(16_000)), Some("eu-a".into()));
}

#[test]
fn killing_the_one_node_of_a_farm_moves_the_answer_within_three_summary_heartbeats() {
    let mut g = global(&["eu"]);
    for t in (0..4_000).step_by(400) {
        g.handle_summary(&summary("eu", "eu", t, true, 11), at(t))
            .expect("taken");
        g.handle_summary(&summary("us", "us", t, true, 21), at(t))
            .expect("taken");
        g.handle_timeout(at(t));
    }
    assert_eq!(answers(&mut g), vec![vec![ip(11)]]);
    // the last eu summary went at 3.6 s; us goes on; find when the answer moves
    let mut moved_at = None;
    for t in (3_650u64..8_000).step_by(50) {
        if t.is_multiple_of(400) {
            g.handle_summary(&summary("us", "us", t, true, 21), at(t))
                .expect("taken");
        }
        let deadline = g.poll_timeout(at(t));
        g.handle_timeout(at(t));
        if moved_at.is_none() && !answers(&mut g).is_empty() {
            moved_at = Some((t, deadline));
        }
    }
    let (t, _) = moved_at.expect("the answer moved to us");
    // stale after 3 × 400 ms of silence: at 4.8 s, 1.2 s after the last summary
    assert_eq!(t, 4_800, "moved {} ms after the last summary", t - 3_600);
    assert_eq!(
        summary_interval(Duration::from_secs(1)),
        Duration::from_millis(400)
    );
    assert_eq!(
        summary_interval(Duration::from_millis(200)),
        Duration::from_millis(200)
    );
}

#[test]
fn a_farm_is_up_while_any_of_its_nodes_reports_it_up() {
    let mut g = global(&["eu-a", "eu-b"]);
    // eu-a cannot reach the servers (its probes fail); eu-b can
    g.handle_summary(&summary("us", "us", 1, true, 21), at(0))
        .unwrap();
    g.handle_summary(&summary("eu", "eu-a", 1, false, 11), at(0))
        .unwrap();
    g.handle_summary(&summary("eu", "eu-b", 1, true, 12), at(0))
        .unwrap();
    g.handle_timeout(at(0));
    assert_eq!(answers(&mut g).last(), Some(&vec![ip(12)]));
    assert_eq!(view_source(&g, "eu", at(0)), Some("eu-b".into()));
    // both report it down: down, by the first live node's word
    g.handle_summary(&summary("eu", "eu-b", 2, false, 12), at(100))
        .unwrap();
    assert_eq!(member(&g, "eu").health(at(100)), Health::Down);
    assert_eq!(view_source(&g, "eu", at(100)), Some("eu-a".into()));
    assert_eq!(answers(&mut g).last(), Some(&vec![ip(21)]));
}

#[test]
fn a_summary_from_a_node_the_farm_does_not_declare_is_refused() {
    let mut g = global(&["eu-a", "eu-b"]);
    let err = g
        .handle_summary(&summary("eu", "us", 1, true, 11), at(0))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "\"us\" is not a source of \"eu\"",
        "named: {err}"
    );
    // and an older summary from one node does not block the other's
    g.handle_summary(&summary("eu", "eu-a", 5, true, 11), at(0))
        .unwrap();
    g.handle_summary(&summary("eu", "eu-b", 1, true, 11), at(0))
        .expect("each node has its own sequence");
}

#[test]
fn a_restarted_node_takes_over_only_once_it_has_heard_every_server() {
    let mut g = global(&["eu-a", "eu-b"]);
    let mut seq = 0;
    // eu-a is down from the start; eu-b speaks for the farm
    let b_only = |node: &str, _: u64| node == "eu-b";
    assert_eq!(run(&mut g, 0, 2_000, &b_only, &mut seq), vec![vec![ip(11)]]);
    // eu-a starts and has not heard from the agent of the server eu-b answers: its view
    // (another server) is up but incomplete, so eu-b stays in use
    let mut early = summary("eu", "eu-a", 1, true, 12);
    early.incomplete = true;
    g.handle_summary(&early, at(2_000)).unwrap();
    g.handle_timeout(at(2_000));
    assert!(answers(&mut g).is_empty());
    assert_eq!(view_source(&g, "eu", at(2_000)), Some("eu-b".into()));
    // once it has heard every server, its view is complete and it is first in order
    g.handle_summary(&summary("eu", "eu-a", 2, true, 11), at(2_100))
        .unwrap();
    g.handle_timeout(at(2_100));
    assert!(answers(&mut g).is_empty());
    assert_eq!(view_source(&g, "eu", at(2_100)), Some("eu-a".into()));
}

#[derive(Clone, Debug)]
struct Step {
    /// Milliseconds since the previous step.
    gap: u64,
    /// Which nodes speak now, and what each says: (up, incomplete).
    said: Vec<Option<(bool, bool)>>,
}

fn step() -> impl Strategy<Value = Step> {
    (
        0u64..1_500,
        prop::collection::vec(prop::option::weighted(0.5, any::<(bool, bool)>()), 3),
    )
        .prop_map(|(gap, said)| Step { gap, said })
}

proptest! {
    /// With three nodes speaking at random times with random health:
    /// - the farm is up exactly when some node is live (heard within the stale window) and
    ///   reports it up;
    /// - the node in use is then the first such node in topology order that has heard every
    ///   server, else the first such node (deterministic);
    /// - the choice does not depend on the order in which the nodes' summaries of one
    ///   instant arrive.
    #[test]
    fn the_node_in_use_is_the_first_live_one_reporting_up(
        steps in prop::collection::vec(step(), 1..40),
    ) {
        let nodes = ["eu-a", "eu-b", "eu-c"];
        let mut forward = global(&nodes);
        let mut backward = global(&nodes);
        let liveness = summary_liveness();
        let mut heard: Vec<Option<(bool, bool, u64)>> = vec![None; 3];
        let mut t = 0;
        for (k, s) in steps.iter().enumerate() {
            t += s.gap;
            let now = at(t);
            let sent: Vec<(usize, bool, bool)> = s
                .said
                .iter()
                .enumerate()
                .filter_map(|(i, said)| said.map(|(up, incomplete)| (i, up, incomplete)))
                .collect();
            let said = |i: usize, up: bool, incomplete: bool| {
                let mut s = summary("eu", nodes[i], k as u64, up, 11 + i as u8);
                s.incomplete = incomplete;
                s
            };
            for &(i, up, incomplete) in &sent {
                forward.handle_summary(&said(i, up, incomplete), now).unwrap();
                heard[i] = Some((up, incomplete, t));
            }
            for &(i, up, incomplete) in sent.iter().rev() {
                backward.handle_summary(&said(i, up, incomplete), now).unwrap();
            }
            forward.handle_timeout(now);
            backward.handle_timeout(now);
            let live = |h: &Option<(bool, bool, u64)>| {
                h.is_some_and(|(_, _, at)| Duration::from_millis(t - at) < liveness.stale_after)
            };
            let up = |h: &Option<(bool, bool, u64)>| live(h) && h.is_some_and(|(up, _, _)| up);
            let complete = |h: &Option<(bool, bool, u64)>| h.is_some_and(|(_, inc, _)| !inc);
            let expected_up = heard
                .iter()
                .position(|h| up(h) && complete(h))
                .or_else(|| heard.iter().position(up));
            let m = member(&forward, "eu");
            prop_assert_eq!(m.health(now).is_up(), expected_up.is_some());
            if let Some(i) = expected_up {
                prop_assert_eq!(m.source_in_use(now).map(String::as_str), Some(nodes[i]));
                prop_assert_eq!(
                    m.candidate(now).addresses,
                    vec![ip(11 + i as u8)]
                );
            }
            let b = member(&backward, "eu");
            prop_assert_eq!(m.source_in_use(now), b.source_in_use(now));
            prop_assert_eq!(m.health(now), b.health(now));
        }
    }
}

/// A farm node of farm `eu` named `node`, with servers s1 (127.0.0.11) and s2 (.12), s1
/// preferred.
fn farm_node(node: &str) -> FarmState {
    let server = |name: &str, last: u8| MemberSpec {
        id: name.into(),
        kind: MemberKind::Server,
        addresses: vec![ip(last)],
        capacity: 100.0,
        distance: None,
        liveness: Liveness::from_heartbeat(Duration::from_secs(1), 3),
        sources: Vec::new(),
    };
    let mut sel = SelectorConfig::new(Policy::Failover(vec!["s1".into(), "s2".into()]));
    sel.hysteresis = Hysteresis::NONE;
    let mut services = BTreeMap::new();
    services.insert(
        ServiceId::from("www"),
        TierService {
            selector: sel,
            members: vec![server("s1", 11), server("s2", 12)],
        },
    );
    let mut f = FarmState::new(
        FarmConfig {
            farm: "eu".into(),
            node: node.to_owned(),
            services,
            heartbeat: summary_interval(Duration::from_secs(1)),
            metrics: Default::default(),
        },
        3,
        1,
        at(0),
    );
    f.set_coalesce(Duration::ZERO);
    f
}

fn up(server: &str, seq: u64) -> Report {
    Report {
        service: "www".into(),
        server: server.into(),
        epoch: 1,
        seq,
        health: Health::Up,
        reason: "up".into(),
        readings: Readings::default(),
    }
}

fn summaries_of(f: &mut FarmState) -> Vec<Summary> {
    let mut out = Vec::new();
    while let Some(o) = f.poll_output() {
        if let FarmOutput::Summary(s) = o {
            out.push(s);
        }
    }
    out
}

#[test]
fn a_farm_node_names_itself_and_says_when_it_has_not_heard_every_server() {
    let mut f = farm_node("eu-b");
    // only s2 heard (s1's agent has not reached this node yet)
    f.handle_report(&up("s2", 1), at(0)).unwrap();
    let first = summaries_of(&mut f);
    let s = first.last().expect("a summary");
    assert_eq!((s.node.as_str(), s.incomplete), ("eu-b", true));
    assert_eq!(s.addresses, vec![ip(12)]);
    // s1 heard: a complete summary goes at once (not at the next heartbeat)
    f.handle_report(&up("s1", 1), at(10)).unwrap();
    let next = summaries_of(&mut f);
    let s = next.last().expect("a summary at once");
    assert!(!s.incomplete);
    assert_eq!(s.addresses, vec![ip(11)]);
    // the summary heartbeat: 400 ms
    assert_eq!(f.poll_timeout(at(10)), Some(at(400)));
}
