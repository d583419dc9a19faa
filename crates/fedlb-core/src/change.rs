//! What counts as a change of a decision, and what caused it: the rule behind each node's
//! timeline ("why did traffic move at 14:02?").
//!
//! A decision *changes* when the set of members it answers, the set of addresses it
//! answers, or whether it is fail-static changes. A new order of the same members, or new
//! weights for the same addresses, is not a change: resolvers and the embedded server already
//! spread by weight, and a weighted answer reorders on every reading.
//!
//! The cause is read from data — the old decision's standings, the candidates as they are
//! now — never from the decision's `why`. When several apply, the first of this list wins:
//! an operator's action, then the topology, then health, then a farm's own choice, then a
//! rotation, then readings.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::candidate::{Candidate, Health};
use crate::decision::Decision;
use crate::id::{CandidateId, RegionId, ServiceId};
use crate::time::Timestamp;

/// What moved an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Cause {
    /// The first decision since the node started (or since the service appeared).
    Start,
    /// An operator's action: a member answered before is drained now, or a member drained
    /// before is answered now.
    Operator,
    /// The topology changed: a member answered before was removed, a member added is
    /// answered, or a chosen server's own addresses changed.
    Topology,
    /// Health: a member answered before is not up any more, a member that was not up is
    /// answered now, or the answer entered or left fail-static.
    Health,
    /// The same farms are chosen, but a chosen farm's own answer moved (its local decision
    /// changed; that farm node's timeline says why).
    Farm,
    /// A rotating policy (round robin, random) drew its next order.
    Rotation,
    /// Every member involved was up before and after: the policy's ranking moved on new
    /// readings (load, response time, distance, metrics), a challenger ended its dwell, or a
    /// load limit split or spilled the answer.
    Readings,
}

impl Cause {
    /// The cause as status documents and the page name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Start => "start",
            Cause::Operator => "operator",
            Cause::Topology => "topology",
            Cause::Health => "health",
            Cause::Farm => "farm",
            Cause::Rotation => "rotation",
            Cause::Readings => "readings",
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a decision answers, as a change shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The chosen members, preferred first.
    pub chosen: Vec<CandidateId>,
    /// The addresses answered.
    pub addresses: Vec<IpAddr>,
    /// Whether the answer is fail-static.
    pub degraded: bool,
}

impl Answer {
    /// The answer of a decision.
    pub fn of(d: &Decision) -> Self {
        Answer {
            chosen: d.chosen.clone(),
            addresses: d.addresses.clone(),
            degraded: d.degraded,
        }
    }
}

/// Why an answer changed: the cause, and the member it names (the one that went down, was
/// drained, removed…), if one does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// What moved the answer.
    pub cause: Cause,
    /// The member the cause is about, if any.
    pub subject: Option<CandidateId>,
}

/// One change of one decision, as a node's timeline keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The service.
    pub service: ServiceId,
    /// The region whose decision changed (`None`: the default region, or a farm's local
    /// decision).
    pub region: Option<RegionId>,
    /// When (on the deciding node's timeline).
    pub at: Timestamp,
    /// The answer before (`None`: the first decision).
    pub from: Option<Answer>,
    /// The answer after.
    pub to: Answer,
    /// The new decision's why.
    pub why: String,
    /// What caused it.
    pub reason: Reason,
}

/// Whether going from `old` to `new` is a change, and if so what caused it. `candidates`
/// are the members as `new` was decided from them; `rotating` says whether the policy
/// rotates (round robin, random). `None`: not a change (same members, same addresses, same
/// fail-static flag; order and weights aside).
pub fn classify(
    old: Option<&Decision>,
    new: &Decision,
    candidates: &[Candidate],
    rotating: bool,
) -> Option<Reason> {
    let Some(old) = old else {
        return Some(Reason {
            cause: Cause::Start,
            subject: None,
        });
    };
    let set = |ids: &[CandidateId]| ids.iter().cloned().collect::<BTreeSet<_>>();
    let addrs = |a: &[IpAddr]| a.iter().copied().collect::<BTreeSet<_>>();
    let (was, is) = (set(&old.chosen), set(&new.chosen));
    if was == is && addrs(&old.addresses) == addrs(&new.addresses) && old.degraded == new.degraded {
        return None;
    }
    let now = |id: &CandidateId| candidates.iter().find(|c| &c.id == id);
    let before = |id: &CandidateId| old.standings.iter().find(|s| &s.id == id).map(|s| s.health);
    let lost: Vec<&CandidateId> = was.difference(&is).collect();
    let gained: Vec<&CandidateId> = is.difference(&was).collect();
    let reason = |cause, subject: Option<&CandidateId>| Reason {
        cause,
        subject: subject.cloned(),
    };

    let drained = lost
        .iter()
        .find(|id| now(id).is_some_and(|c| c.health == Health::Drained))
        .or_else(|| gained.iter().find(|id| before(id) == Some(Health::Drained)));
    if let Some(id) = drained {
        return Some(reason(Cause::Operator, Some(id)));
    }
    let moved = lost
        .iter()
        .find(|id| now(id).is_none())
        .or_else(|| gained.iter().find(|id| before(id).is_none()));
    if let Some(id) = moved {
        return Some(reason(Cause::Topology, Some(id)));
    }
    let sick = lost
        .iter()
        .find(|id| now(id).is_some_and(|c| !c.health.is_up()))
        .or_else(|| {
            gained
                .iter()
                .find(|id| before(id).is_some_and(|h| !h.is_up()))
        });
    if let Some(id) = sick {
        return Some(reason(Cause::Health, Some(id)));
    }
    if old.degraded != new.degraded {
        // fail-static entered (every member went down) or left (one came back)
        let subject = if new.degraded {
            old.chosen.first()
        } else {
            new.chosen.first()
        };
        return Some(reason(Cause::Health, subject));
    }
    if was == is {
        // the same members answer other addresses: a farm's own choice moved, or a server's
        // addresses were changed in the topology
        let member = new
            .chosen
            .iter()
            .find(|id| {
                now(id).is_some_and(|c| c.addresses.iter().any(|a| !old.addresses.contains(a)))
            })
            .or(new.chosen.first());
        let farm = new
            .chosen
            .iter()
            .any(|id| now(id).is_some_and(|c| c.members.is_some()));
        return Some(reason(
            if farm { Cause::Farm } else { Cause::Topology },
            member,
        ));
    }
    if rotating {
        return Some(reason(Cause::Rotation, None));
    }
    Some(reason(Cause::Readings, gained.first().copied()))
}

/// The candidates a decision was made from, plus those an operator holds out of it
/// entirely (disabled: not among the candidates at all) as [`Health::Drained`], so that
/// [`classify`] blames the operator and not the topology for their leaving the answer.
pub fn with_held_out<'a>(
    candidates: &[Candidate],
    held: impl IntoIterator<Item = &'a CandidateId>,
) -> Vec<Candidate> {
    let mut out = candidates.to_vec();
    for id in held {
        if !out.iter().any(|c| &c.id == id) {
            let mut c = Candidate::new(id.clone(), Vec::new(), 1.0);
            c.health = Health::Drained;
            out.push(c);
        }
    }
    out
}

/// The change from `old` to `new`, if it is one.
pub fn change(
    service: &ServiceId,
    region: Option<&RegionId>,
    old: Option<&Decision>,
    new: &Decision,
    candidates: &[Candidate],
    rotating: bool,
    now: Timestamp,
) -> Option<Change> {
    let reason = classify(old, new, candidates, rotating)?;
    Some(Change {
        service: service.clone(),
        region: region.cloned(),
        at: now,
        from: old.map(Answer::of),
        to: Answer::of(new),
        why: new.why.clone(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::decision::{SelectorConfig, Standing};
    use crate::global::{GlobalConfig, GlobalState};
    use crate::health::Liveness;
    use crate::monitor::Report;
    use crate::policy::Policy;
    use crate::tier::{MemberKind, MemberSpec, TierService};
    use crate::{Members, Readings, Sample};

    fn v4(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
    }

    /// Servers `s0`…: `s<i>` at 127.0.0.<i+1>.
    fn server(i: usize, health: Health) -> Candidate {
        let mut c = Candidate::new(format!("s{i}").as_str(), vec![v4(i as u8 + 1)], 100.0);
        c.health = health;
        c
    }

    fn decision(chosen: &[usize], all: &[Candidate], degraded: bool) -> Decision {
        Decision {
            chosen: chosen.iter().map(|i| all[*i].id.clone()).collect(),
            addresses: chosen
                .iter()
                .flat_map(|i| all[*i].addresses.clone())
                .collect(),
            degraded,
            why: format!("why {chosen:?}"),
            since: Timestamp::ZERO,
            standings: all
                .iter()
                .map(|c| Standing {
                    id: c.id.clone(),
                    health: c.health,
                    rank: None,
                    shown: String::new(),
                    passes: true,
                })
                .collect(),
            weights: vec![1.0; chosen.len()],
            headroom: None,
        }
    }

    fn ups(n: usize) -> Vec<Candidate> {
        (0..n).map(|i| server(i, Health::Up)).collect()
    }

    fn cause(r: Option<Reason>) -> (Cause, Option<String>) {
        let r = r.expect("a change");
        (r.cause, r.subject.map(|s| s.to_string()))
    }

    #[test]
    fn the_first_decision_is_a_start() {
        let all = ups(2);
        let d = decision(&[0], &all, false);
        assert_eq!(cause(classify(None, &d, &all, false)), (Cause::Start, None));
    }

    #[test]
    fn another_order_or_other_weights_of_the_same_answer_is_no_change() {
        let all = ups(3);
        let old = decision(&[0, 1], &all, false);
        let mut new = decision(&[1, 0], &all, false);
        new.weights = vec![0.9, 0.1];
        new.why = "another why".into();
        assert_eq!(classify(Some(&old), &new, &all, false), None);
    }

    /// The causes of two changes: the chosen s0 of two servers leaves the answer as it
    /// turns `health`, then comes back up and is chosen again.
    fn s0_leaves_and_returns(health: Health) -> [(Cause, Option<String>); 2] {
        let old = decision(&[0], &ups(2), false);
        let mut now = ups(2);
        now[0].health = health;
        let new = decision(&[1], &now, false);
        let back = decision(&[0], &ups(2), false);
        [
            cause(classify(Some(&old), &new, &now, false)),
            cause(classify(Some(&new), &back, &ups(2), false)),
        ]
    }

    #[test]
    fn a_chosen_member_going_down_is_a_health_change_and_a_drain_an_operators() {
        // both name it, and so does its return, chosen again
        for (health, blamed) in [
            (Health::Down, Cause::Health),
            (Health::Drained, Cause::Operator),
        ] {
            let c = (blamed, Some("s0".to_owned()));
            assert_eq!(s0_leaves_and_returns(health), [c.clone(), c], "{health:?}");
        }
    }

    #[test]
    fn a_member_an_operator_holds_out_entirely_is_the_operators_change() {
        let old = decision(&[0], &ups(2), false);
        // disabled: s0 is no candidate at all any more
        let now = vec![server(1, Health::Up)];
        let new = Decision {
            chosen: vec!["s1".into()],
            addresses: vec![v4(2)],
            ..old.clone()
        };
        let held = with_held_out(&now, [&CandidateId::from("s0")]);
        assert_eq!(
            cause(classify(Some(&old), &new, &held, false)),
            (Cause::Operator, Some("s0".into()))
        );
        assert_eq!(with_held_out(&held, [&CandidateId::from("s1")]).len(), 2);
    }

    #[test]
    fn a_removed_or_added_member_is_a_topology_change() {
        let old = decision(&[0], &ups(2), false);
        let now = vec![server(1, Health::Up)];
        let new = Decision {
            chosen: vec!["s1".into()],
            addresses: vec![v4(2)],
            ..old.clone()
        };
        assert_eq!(
            cause(classify(Some(&old), &new, &now, false)),
            (Cause::Topology, Some("s0".into()))
        );
        let grown = ups(3);
        let added = decision(&[2], &grown, false);
        let old = decision(&[0], &ups(2), false);
        assert_eq!(
            cause(classify(Some(&old), &added, &grown, false)),
            (Cause::Topology, Some("s2".into()))
        );
    }

    #[test]
    fn entering_fail_static_is_a_health_change() {
        let old = decision(&[0], &ups(1), false);
        let down = vec![server(0, Health::Down)];
        let new = decision(&[0], &down, true);
        assert_eq!(
            cause(classify(Some(&old), &new, &down, false)),
            (Cause::Health, Some("s0".into()))
        );
    }

    #[test]
    fn the_same_farm_answering_other_servers_is_the_farms_change() {
        let mut farm = Candidate::new("eu-west", vec![v4(11)], 100.0);
        farm.health = Health::Up;
        farm.members = Some(Members { up: 2, total: 2 });
        let old = decision(&[0], std::slice::from_ref(&farm), false);
        farm.addresses = vec![v4(12)];
        farm.members = Some(Members { up: 1, total: 2 });
        let new = decision(&[0], std::slice::from_ref(&farm), false);
        assert_eq!(
            cause(classify(Some(&old), &new, &[farm], false)),
            (Cause::Farm, Some("eu-west".into()))
        );
    }

    #[test]
    fn healthy_members_trading_places_is_readings_or_rotation() {
        let all = ups(2);
        let old = decision(&[0], &all, false);
        let new = decision(&[1], &all, false);
        assert_eq!(
            cause(classify(Some(&old), &new, &all, false)),
            (Cause::Readings, Some("s1".into()))
        );
        assert_eq!(
            cause(classify(Some(&old), &new, &all, true)),
            (Cause::Rotation, None)
        );
    }

    fn health() -> impl Strategy<Value = Health> {
        prop_oneof![
            Just(Health::Up),
            Just(Health::Down),
            Just(Health::Stale),
            Just(Health::Unknown),
            Just(Health::Drained)
        ]
    }

    proptest! {
        /// A change is exactly a new set of members, addresses or fail-static flag; a drained
        /// member leaving the answer always names the operator; a member leaving the answer
        /// while not up is never blamed on readings.
        #[test]
        fn what_counts_as_a_change_and_who_is_blamed(
            before in prop::collection::vec(health(), 4),
            after in prop::collection::vec(health(), 4),
            old_set in prop::collection::btree_set(0usize..4, 0..4),
            new_set in prop::collection::btree_set(0usize..4, 0..4),
            old_degraded in any::<bool>(),
            new_degraded in any::<bool>(),
            rotating in any::<bool>(),
        ) {
            let then: Vec<Candidate> = before.iter().enumerate().map(|(i, h)| server(i, *h)).collect();
            let now: Vec<Candidate> = after.iter().enumerate().map(|(i, h)| server(i, *h)).collect();
            let old_ids: Vec<usize> = old_set.iter().copied().collect();
            let mut new_ids: Vec<usize> = new_set.iter().copied().collect();
            new_ids.reverse(); // the order never counts
            let old = decision(&old_ids, &then, old_degraded);
            let new = decision(&new_ids, &now, new_degraded);
            let r = classify(Some(&old), &new, &now, rotating);
            let same = old_set == new_set && old_degraded == new_degraded;
            prop_assert_eq!(r.is_none(), same);
            if let Some(r) = r {
                let lost: Vec<usize> = old_set.difference(&new_set).copied().collect();
                if lost.iter().any(|i| after[*i] == Health::Drained) {
                    prop_assert_eq!(r.cause, Cause::Operator);
                }
                if lost.iter().any(|i| !after[*i].is_up()) {
                    prop_assert!(matches!(r.cause, Cause::Operator | Cause::Health), "{:?}", r);
                }
                if let Some(s) = &r.subject {
                    prop_assert!(old.chosen.contains(s) || new.chosen.contains(s), "{:?}", r);
                }
            }
        }
    }

    fn report(server: &str, health: Health, seq: u64, pending: u64, at: Timestamp) -> Report {
        Report {
            service: "www".into(),
            server: server.into(),
            epoch: 1,
            seq,
            health,
            reason: format!("{health}"),
            readings: Readings {
                pending: Some(Sample::new(pending, at)),
                ..Readings::default()
            },
        }
    }

    fn global() -> GlobalState {
        let member = |name: &str, last: u8| MemberSpec {
            id: name.into(),
            kind: MemberKind::Server,
            addresses: vec![v4(last)],
            capacity: 100.0,
            distance: None,
            liveness: Liveness::from_heartbeat(Duration::from_secs(1), 3),
            sources: Vec::new(),
        };
        let mut services = BTreeMap::new();
        services.insert(
            "www".into(),
            TierService {
                selector: SelectorConfig {
                    hysteresis: crate::decision::Hysteresis::NONE,
                    ..SelectorConfig::new(Policy::Failover(vec!["a".into(), "b".into()]))
                },
                members: vec![member("a", 1), member("b", 2)],
            },
        );
        GlobalState::new(GlobalConfig::new(services), 1)
    }

    /// On the simulated clock: a tier records its decisions' changes only when asked, each
    /// once, with the old and new answer, the new why and the cause.
    #[test]
    fn a_tier_hands_out_each_change_once_with_its_cause() {
        let mut g = global();
        let t = |ms| Timestamp::from_millis(ms);
        g.handle_report(&report("a", Health::Up, 1, 1, t(0)), t(0))
            .unwrap();
        g.handle_report(&report("b", Health::Up, 1, 1, t(0)), t(0))
            .unwrap();
        assert!(g.take_changes().is_empty(), "not recorded unless asked");

        let mut g = global();
        g.record_changes(true);
        g.handle_report(&report("a", Health::Up, 1, 1, t(0)), t(0))
            .unwrap();
        g.handle_report(&report("b", Health::Up, 1, 1, t(0)), t(0))
            .unwrap();
        g.handle_timeout(t(200));
        let first = g.take_changes();
        assert_eq!(first.len(), 1, "{first:?}");
        assert_eq!(first[0].reason.cause, Cause::Start);
        assert_eq!(first[0].to.chosen, [CandidateId::from("a")]);
        // the same readings again, and time passing: no change
        g.handle_report(&report("a", Health::Up, 2, 5, t(300)), t(300))
            .unwrap();
        g.handle_timeout(t(600));
        assert!(g.take_changes().is_empty());

        g.handle_report(&report("a", Health::Down, 3, 0, t(700)), t(700))
            .unwrap();
        g.handle_timeout(t(900));
        let moved = g.take_changes();
        assert_eq!(moved.len(), 1, "{moved:?}");
        let c = &moved[0];
        assert_eq!(c.service, ServiceId::from("www"));
        assert_eq!(c.region, None);
        assert_eq!(c.at, t(700));
        assert_eq!(c.from.as_ref().unwrap().addresses, [v4(1)]);
        assert_eq!(c.to.addresses, [v4(2)]);
        assert_eq!(
            c.reason,
            Reason {
                cause: Cause::Health,
                subject: Some("a".into())
            }
        );
        assert!(c.why.starts_with("b: "), "{}", c.why);
        assert!(
            g.take_changes().is_empty(),
            "each change is handed out once"
        );

        // an operator's drain of b (a is still down): fail-static keeps b, so nothing moves;
        // a back up and b drained: a answers, and the drain is named
        g.handle_report(&report("a", Health::Up, 4, 0, t(1000)), t(1000))
            .unwrap();
        g.handle_timeout(t(1300));
        let back = g.take_changes();
        assert_eq!(back.len(), 1, "{back:?}");
        assert_eq!(back[0].reason.cause, Cause::Health);
        let _ = g.set_drained(&"a".into(), true, t(1400));
        let drained = g.take_changes();
        assert_eq!(drained.len(), 1, "{drained:?}");
        assert_eq!(
            drained[0].reason,
            Reason {
                cause: Cause::Operator,
                subject: Some("a".into())
            }
        );
    }

    #[test]
    fn an_unread_tier_keeps_only_the_latest_changes() {
        let mut g = global();
        g.record_changes(true);
        let t = |ms| Timestamp::from_millis(ms);
        g.handle_report(&report("b", Health::Up, 1, 1, t(0)), t(0))
            .unwrap();
        let mut seq = 1;
        for i in 0..1100u64 {
            seq += 1;
            let h = if i % 2 == 0 { Health::Up } else { Health::Down };
            g.handle_report(&report("a", h, seq, 1, t(i * 10)), t(i * 10))
                .unwrap();
            g.handle_timeout(t(i * 10 + 5));
        }
        let kept = g.take_changes();
        assert_eq!(kept.len(), crate::tier::COLLECTED_CHANGES);
        assert!(kept.windows(2).all(|w| w[0].at <= w[1].at));
        assert_eq!(kept.last().unwrap().at, t(10_990));
    }

    /// With regions, each region's decision records its own changes, named by region; a
    /// member going down that only one region answered changes only that region's answer.
    #[test]
    fn a_regions_change_is_recorded_with_its_region_alone() {
        use crate::candidate::Distance;
        use crate::policy::ClosestBy;
        use crate::tier::RegionSpec;
        let member = |name: &str, last: u8, ms: f64| MemberSpec {
            id: name.into(),
            kind: MemberKind::Server,
            addresses: vec![v4(last)],
            capacity: 100.0,
            distance: Some(Distance::Pinned(ms)),
            liveness: Liveness::from_heartbeat(Duration::from_secs(1), 3),
            sources: Vec::new(),
        };
        let mut services = BTreeMap::new();
        services.insert(
            "www".into(),
            TierService {
                selector: SelectorConfig {
                    hysteresis: crate::decision::Hysteresis::NONE,
                    ..SelectorConfig::new(Policy::Closest(ClosestBy::Auto))
                },
                members: vec![member("eu", 1, 10.0), member("us", 2, 80.0)],
            },
        );
        let us = RegionSpec {
            id: "us".into(),
            distances: [
                (CandidateId::from("eu"), Distance::Pinned(90.0)),
                (CandidateId::from("us"), Distance::Pinned(8.0)),
            ]
            .into(),
        };
        let mut g = GlobalState::new(
            GlobalConfig {
                regions: vec![us],
                ..GlobalConfig::new(services)
            },
            1,
        );
        g.record_changes(true);
        let t = |ms| Timestamp::from_millis(ms);
        g.handle_report(&report("eu", Health::Up, 1, 1, t(0)), t(0))
            .unwrap();
        g.handle_report(&report("us", Health::Up, 1, 1, t(0)), t(0))
            .unwrap();
        g.handle_timeout(t(200));
        let started: Vec<Option<String>> = g
            .take_changes()
            .iter()
            .filter(|c| c.reason.cause == Cause::Start)
            .map(|c| c.region.as_ref().map(ToString::to_string))
            .collect();
        assert!(
            started.contains(&None) && started.contains(&Some("us".into())),
            "{started:?}"
        );

        g.handle_report(&report("us", Health::Down, 2, 1, t(300)), t(300))
            .unwrap();
        g.handle_timeout(t(500));
        let moved = g.take_changes();
        assert_eq!(moved.len(), 1, "only the us region moved: {moved:?}");
        let c = &moved[0];
        assert_eq!(c.region, Some(RegionId::from("us")));
        assert_eq!(c.to.chosen, [CandidateId::from("eu")]);
        assert_eq!(c.reason.cause, Cause::Health);
        assert_eq!(c.reason.subject, Some(CandidateId::from("us")));
        assert!(c.why.starts_with("us clients: "), "{}", c.why);
    }
}
