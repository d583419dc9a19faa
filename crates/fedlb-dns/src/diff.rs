//! The publisher's pure part: which desired answers are acceptable, and what must change.
//!
//! No I/O and no clock here; every publisher goes through these functions.

use std::fmt;

use hickory_proto::rr::Name;

use crate::{
    Error,
    answers::{DesiredZone, Family, RrData, RrKey, ZoneState},
};

/// One RRset change. Every change replaces a whole RRset (never single records), which is what
/// makes fedlb correct against servers whose compare-and-swap is weaker than RFC 2136's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The RRset does not exist yet.
    Create {
        /// Which RRset.
        key: RrKey,
        /// Its contents.
        new: RrData,
    },
    /// The RRset exists with other addresses or another TTL.
    Replace {
        /// Which RRset.
        key: RrKey,
        /// What is published now.
        old: RrData,
        /// What should be.
        new: RrData,
    },
    /// The RRset exists but its family has no address any more; the name keeps its other
    /// family (a name is never left without any address).
    Delete {
        /// Which RRset.
        key: RrKey,
        /// What is published now.
        old: RrData,
    },
}

impl Change {
    /// The RRset this change is about.
    pub fn key(&self) -> &RrKey {
        match self {
            Change::Create { key, .. }
            | Change::Replace { key, .. }
            | Change::Delete { key, .. } => key,
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Create { key, new } => write!(f, "create {key} {new}"),
            Change::Replace { key, old, new } => write!(f, "replace {key} {old} -> {new}"),
            Change::Delete { key, old } => write!(f, "delete {key} {old}"),
        }
    }
}

/// The changes that turn `published` into `desired`, for the names of `desired` only.
///
/// A name whose desired set is empty yields no change at all (fail-static), so applying the
/// result never removes the last address of a name.
pub fn diff(published: &ZoneState, desired: &DesiredZone) -> Vec<Change> {
    let mut changes = Vec::new();
    for set in desired.records() {
        if set.is_empty() {
            continue;
        }
        for family in Family::ALL {
            let key = RrKey::new(set.name.clone(), family);
            match (published.get(&key), set.rrset(family)) {
                (None, Some(new)) => changes.push(Change::Create { key, new }),
                (Some(old), Some(new)) if *old != new => changes.push(Change::Replace {
                    key,
                    old: old.clone(),
                    new,
                }),
                (Some(old), None) => changes.push(Change::Delete {
                    key,
                    old: old.clone(),
                }),
                _ => {}
            }
        }
    }
    changes
}

/// Applies changes to a state, as the server does when it accepts the update.
pub fn apply(state: &mut ZoneState, changes: &[Change]) {
    for change in changes {
        match change {
            Change::Create { key, new } | Change::Replace { key, new, .. } => {
                state.insert(key.clone(), new.clone())
            }
            Change::Delete { key, .. } => {
                state.remove(key);
            }
        }
    }
}

/// Merges newly proposed answers into the last accepted ones.
///
/// Returns the answers to publish and the refusals: a name outside `zone` is dropped; a name
/// with no address keeps its last good answer (fail-static). Answers for another zone are
/// refused as a whole and the last good answers stay.
pub fn accept(
    zone: &Name,
    last_good: &DesiredZone,
    proposed: &DesiredZone,
) -> (DesiredZone, Vec<Error>) {
    if proposed.zone() != zone {
        let err = Error::WrongZone {
            want: zone.to_string(),
            got: proposed.zone().to_string(),
        };
        return (last_good.clone(), vec![err]);
    }
    let mut accepted = DesiredZone::for_zone(zone);
    for set in proposed.records() {
        accepted.set_heard(&set.name, proposed.heard(&set.name));
    }
    let mut refused = Vec::new();
    for set in proposed.records() {
        if !zone.zone_of(&set.name) {
            refused.push(Error::OutOfZone {
                name: set.name.to_string(),
                zone: zone.to_string(),
            });
        } else if set.is_empty() {
            refused.push(Error::EmptyAnswer {
                name: set.name.to_string(),
            });
            if let Some(good) = last_good.get(&set.name) {
                accepted.insert(good.clone());
            }
        } else {
            accepted.insert(set.clone());
        }
    }
    (accepted, refused)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use proptest::prelude::*;

    use super::*;
    use crate::answers::{RecordSet, fqdn};

    fn set(name: &str, ttl: u32, addrs: &[&str]) -> RecordSet {
        RecordSet::new(name, ttl)
            .unwrap()
            .with_addrs(addrs.iter().map(|a| a.parse::<IpAddr>().unwrap()))
    }

    fn zone(sets: Vec<RecordSet>) -> DesiredZone {
        sets.into_iter().fold(
            DesiredZone::new("example.test.").unwrap(),
            DesiredZone::with,
        )
    }

    #[test]
    fn create_replace_delete_and_nothing() {
        let before = zone(vec![
            set("same.example.test", 30, &["192.0.2.1"]),
            set("ttl.example.test", 30, &["192.0.2.2"]),
            set("v6gone.example.test", 30, &["192.0.2.3", "2001:db8::3"]),
        ])
        .to_state();
        let desired = zone(vec![
            set("same.example.test", 30, &["192.0.2.1"]),
            set("ttl.example.test", 60, &["192.0.2.2"]),
            set("v6gone.example.test", 30, &["192.0.2.3"]),
            set("new.example.test", 30, &["2001:db8::9"]),
        ]);
        let changes = diff(&before, &desired);
        let text: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "create new.example.test. AAAA ttl 30 [2001:db8::9]",
                "replace ttl.example.test. A ttl 30 [192.0.2.2] -> ttl 60 [192.0.2.2]",
                "delete v6gone.example.test. AAAA ttl 30 [2001:db8::3]",
            ]
        );
        let mut after = before.clone();
        apply(&mut after, &changes);
        assert_eq!(after, desired.to_state());
        assert!(diff(&after, &desired).is_empty());
    }

    #[test]
    fn names_not_desired_are_left_alone() {
        let published = zone(vec![set("other.example.test", 30, &["192.0.2.1"])]).to_state();
        assert!(diff(&published, &zone(vec![])).is_empty());
    }

    #[test]
    fn empty_desired_set_never_deletes() {
        let published = zone(vec![set(
            "www.example.test",
            30,
            &["192.0.2.1", "2001:db8::1"],
        )])
        .to_state();
        let desired = zone(vec![set("www.example.test", 30, &[])]);
        assert!(diff(&published, &desired).is_empty());
    }

    #[test]
    fn accept_refuses_empty_and_out_of_zone_and_keeps_last_good() {
        let z = fqdn("example.test").unwrap();
        let last = zone(vec![set("www.example.test", 30, &["192.0.2.1"])]);
        let proposed = zone(vec![
            set("www.example.test", 30, &[]),
            set("api.example.test", 30, &["192.0.2.7"]),
            set("evil.example.org", 30, &["192.0.2.8"]),
        ]);
        let (accepted, refused) = accept(&z, &last, &proposed);
        let www = accepted.get(&fqdn("www.example.test").unwrap()).unwrap();
        assert_eq!(www.v4.len(), 1, "last good answer kept");
        assert!(accepted.get(&fqdn("api.example.test").unwrap()).is_some());
        assert!(accepted.get(&fqdn("evil.example.org").unwrap()).is_none());
        let classes: Vec<_> = refused.iter().map(Error::class).collect();
        assert_eq!(
            classes,
            [
                crate::FailureClass::OutOfZone,
                crate::FailureClass::EmptyAnswer
            ]
        );
        assert_eq!(
            refused[1].to_string(),
            "name \"www.example.test.\": empty answer refused (fail-static: the last good answer stays published)"
        );

        let other = DesiredZone::new("example.org").unwrap();
        let (kept, refused) = accept(&z, &last, &other);
        assert_eq!(kept, last);
        assert_eq!(refused.len(), 1);
    }

    fn arb_zone() -> impl Strategy<Value = DesiredZone> {
        let name = prop::sample::select(vec!["a", "b", "c", "d"]);
        let v4 = prop::collection::btree_set(0u8..6, 0..4);
        let v6 = prop::collection::btree_set(0u16..6, 0..3);
        let ttl = prop::sample::select(vec![5u32, 30, 300]);
        prop::collection::vec((name, ttl, v4, v6), 0..6).prop_map(|sets| {
            let mut z = DesiredZone::new("example.test").unwrap();
            for (n, ttl, v4, v6) in sets {
                let mut s = RecordSet::new(&format!("{n}.example.test"), ttl).unwrap();
                s.v4 = v4.into_iter().map(|o| [192, 0, 2, o].into()).collect();
                s.v6 = v6
                    .into_iter()
                    .map(|h| std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, h))
                    .collect();
                z.insert(s);
            }
            z
        })
    }

    proptest! {
        #[test]
        fn applying_the_diff_reaches_the_desired_answers(old in arb_zone(), new in arb_zone()) {
            let mut state = old.to_state();
            let changes = diff(&state, &new);
            apply(&mut state, &changes);
            for s in new.records().filter(|s| !s.is_empty()) {
                for f in Family::ALL {
                    let key = RrKey::new(s.name.clone(), f);
                    prop_assert_eq!(state.get(&key).cloned(), s.rrset(f));
                }
            }
            prop_assert!(diff(&state, &new).is_empty(), "second diff is empty (steady state)");
        }

        #[test]
        fn no_change_touches_unmanaged_or_empties_a_name(old in arb_zone(), new in arb_zone()) {
            let before = old.to_state();
            let mut after = before.clone();
            let changes = diff(&before, &new);
            for c in &changes {
                let managed = new.get(&c.key().name);
                prop_assert!(managed.is_some_and(|s| !s.is_empty()));
            }
            apply(&mut after, &changes);
            for name in old.names() {
                let had = !before.addrs(name).is_empty();
                prop_assert!(!had || !after.addrs(name).is_empty(), "{} lost every address", name);
            }
            let keys: Vec<_> = changes.iter().map(Change::key).collect();
            let mut dedup = keys.clone();
            dedup.dedup();
            prop_assert_eq!(keys.len(), dedup.len(), "at most one change per rrset");
        }

        #[test]
        fn accepted_answers_are_never_empty_nor_outside(last in arb_zone(), new in arb_zone()) {
            let z = fqdn("example.test").unwrap();
            let (last_ok, _) = accept(&z, &DesiredZone::for_zone(&z), &last);
            let (accepted, refused) = accept(&z, &last_ok, &new);
            prop_assert!(accepted.records().all(|s| !s.is_empty() && z.zone_of(&s.name)));
            let empties = new.records().filter(|s| s.is_empty()).count();
            prop_assert_eq!(refused.len(), empties);
        }
    }
}
