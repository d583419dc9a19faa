//! Operator overrides: drain, disable and pin, each with who set it, why, and an optional
//! expiry — and the one rule that turns them into what a decision sees.
//!
//! - **Drained**: not chosen while any candidate that is neither drained nor disabled is
//!   up. When nothing else is up, drained candidates that are up answer (a drain is a
//!   preference, never a black hole). A farm whose servers are all drained reports itself
//!   drained (its summary's health), and the tier above treats it as drained.
//! - **Disabled**: never chosen, not even by fail-static (a last good answer or "answer
//!   all" loses it); a decision with nothing else answers nothing.
//! - **Pinned** (a service, optionally only for one region's clients): the pin target
//!   answers alone while it is up. A pin to a target that is down (or drained, or disabled)
//!   does not apply: the decision falls back to the normal choice and its why says so. A
//!   region's own pin beats a pin of the whole service; among equals the greatest id wins.
//!
//! Expiry is decided here: an override stops applying at the first decision where
//! `now ≥ until`; the shell only feeds time (and shows `until` on a wall clock, which it
//! passes in as [`Override::until_label`]).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::candidate::{Candidate, Health};
use crate::decision::Decision;
use crate::id::{CandidateId, RegionId, ServiceId};
use crate::time::Timestamp;

/// What an override does to its target.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Action {
    /// Not chosen while anything else is up.
    Drain,
    /// Never chosen.
    Disable,
    /// The target answers `service` alone while it is up (for one region's clients only
    /// when `region` is set).
    Pin {
        /// The service pinned.
        service: ServiceId,
        /// Only this region's decision (`None`: every decision of the service).
        region: Option<RegionId>,
    },
}

impl Action {
    /// The verb status pages use: `drained`, `disabled`, `pinned`.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Drain => "drained",
            Action::Disable => "disabled",
            Action::Pin { .. } => "pinned",
        }
    }
}

/// One operator override.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    /// Its id, unique in the federation (the operator's tool makes it, so that the same
    /// override held by several nodes has one id).
    pub id: String,
    /// What it does.
    pub action: Action,
    /// The server or farm it applies to (for a pin: what the service is pinned to).
    pub target: CandidateId,
    /// Who set it (the operator certificate's name).
    pub operator: String,
    /// Why, in the operator's words (may be empty).
    pub reason: String,
    /// When it stops applying (`None`: until cleared).
    pub until: Option<Timestamp>,
    /// `until` as the shell shows it (`14:30 UTC`); the core has no wall clock.
    #[serde(default)]
    pub until_label: Option<String>,
}

impl Override {
    /// Whether it applies at `now`: until `now ≥ until`.
    pub fn active(&self, now: Timestamp) -> bool {
        self.until.is_none_or(|until| now < until)
    }

    /// As an operator reads it: `drained by alice until 14:30 UTC: kernel upgrade`,
    /// `pinned www (eu) to us-east by bob: migration`.
    pub fn describe(&self) -> String {
        let mut s = match &self.action {
            Action::Pin { service, region } => {
                let region = region
                    .as_ref()
                    .map_or(String::new(), |r| format!(" ({r} clients)"));
                format!(
                    "{service}{region} pinned to {} by {}",
                    self.target, self.operator
                )
            }
            other => format!("{} by {}", other.verb(), self.operator),
        };
        if let Some(label) = &self.until_label {
            s.push_str(&format!(" until {label}"));
        }
        if !self.reason.is_empty() {
            s.push_str(&format!(": {}", self.reason));
        }
        s
    }
}

/// Why an override was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    /// An override with this id is held already.
    #[error("override \"{0}\" exists already")]
    Duplicate(String),
    /// No override with this id is held.
    #[error("no override \"{0}\"")]
    Unknown(String),
}

/// The overrides one node holds, by id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overrides {
    by_id: BTreeMap<String, Override>,
}

/// What [`Overrides::apply`] made of one decision's candidates.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    /// The candidates the selector decides among: disabled ones removed, drained (and
    /// unpinned) ones marked [`Health::Drained`] when they must not be chosen.
    pub candidates: Vec<Candidate>,
    /// Disabled candidates and their addresses: a fail-static answer drops them.
    pub disabled: Vec<(CandidateId, Vec<IpAddr>)>,
    /// What the overrides did, for the decision's why (`None`: nothing).
    pub note: Option<String>,
}

impl Overrides {
    /// None.
    pub fn new() -> Self {
        Overrides::default()
    }

    /// Holds `o`; refused when its id is held already.
    pub fn insert(&mut self, o: Override) -> Result<(), OverrideError> {
        if self.by_id.contains_key(&o.id) {
            return Err(OverrideError::Duplicate(o.id));
        }
        self.by_id.insert(o.id.clone(), o);
        Ok(())
    }

    /// Holds `o`, replacing one with the same id.
    pub fn replace(&mut self, o: Override) {
        self.by_id.insert(o.id.clone(), o);
    }

    /// Stops holding override `id`.
    pub fn remove(&mut self, id: &str) -> Result<Override, OverrideError> {
        self.by_id
            .remove(id)
            .ok_or_else(|| OverrideError::Unknown(id.to_owned()))
    }

    /// Every override held, by id (expired ones too, until [`Overrides::expire`]).
    pub fn iter(&self) -> impl Iterator<Item = &Override> {
        self.by_id.values()
    }

    /// How many are held.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The override with this id.
    pub fn get(&self, id: &str) -> Option<&Override> {
        self.by_id.get(id)
    }

    /// The next moment an override held stops applying.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.by_id.values().filter_map(|o| o.until).min()
    }

    /// Stops holding every override that no longer applies at `now`, and returns them.
    pub fn expire(&mut self, now: Timestamp) -> Vec<Override> {
        let gone: Vec<String> = self
            .by_id
            .values()
            .filter(|o| !o.active(now))
            .map(|o| o.id.clone())
            .collect();
        gone.iter().filter_map(|id| self.by_id.remove(id)).collect()
    }

    fn on(&self, target: &CandidateId, action: &Action, now: Timestamp) -> Option<&Override> {
        self.by_id
            .values()
            .rev()
            .find(|o| &o.target == target && &o.action == action && o.active(now))
    }

    /// The drain of `target` in force at `now`.
    pub fn drain_of(&self, target: &CandidateId, now: Timestamp) -> Option<&Override> {
        self.on(target, &Action::Drain, now)
    }

    /// The disable of `target` in force at `now`.
    pub fn disable_of(&self, target: &CandidateId, now: Timestamp) -> Option<&Override> {
        self.on(target, &Action::Disable, now)
    }

    /// The pin in force for `service` in `region` (`None`: the default decision) at `now`:
    /// the region's own pin, else a pin of the whole service; the greatest id among equals.
    pub fn pin_for(
        &self,
        service: &ServiceId,
        region: Option<&RegionId>,
        now: Timestamp,
    ) -> Option<&Override> {
        let pins = || {
            self.by_id.values().rev().filter(move |o| {
                o.active(now) && matches!(&o.action, Action::Pin { service: s, .. } if s == service)
            })
        };
        let region_of = |o: &Override| match &o.action {
            Action::Pin { region, .. } => region.clone(),
            _ => None,
        };
        region
            .and_then(|r| pins().find(|o| region_of(o).as_ref() == Some(r)))
            .or_else(|| pins().find(|o| region_of(o).is_none()))
    }

    /// The candidates of one decision (`service`, for `region`'s clients or the default
    /// one) as the overrides in force at `now` leave them. `candidates` carry the health
    /// their reporters give them; a candidate whose own reporter says
    /// [`Health::Drained`] (a farm whose servers are all drained) counts as drained and up.
    pub fn apply(
        &self,
        service: &ServiceId,
        region: Option<&RegionId>,
        candidates: Vec<Candidate>,
        now: Timestamp,
    ) -> Applied {
        // no override, nobody drained below: the candidates as they are, without a pass
        // (what nearly every decision of a federation sees)
        if self.by_id.is_empty() && !candidates.iter().any(|c| c.health == Health::Drained) {
            return Applied {
                candidates,
                disabled: Vec::new(),
                note: None,
            };
        }
        let mut disabled = Vec::new();
        let mut kept = Vec::with_capacity(candidates.len());
        for c in candidates {
            if self.disable_of(&c.id, now).is_some() {
                disabled.push((c.id.clone(), c.addresses.clone()));
            } else {
                kept.push(c);
            }
        }
        let mut candidates = kept;
        let drained =
            |c: &Candidate| c.health == Health::Drained || self.drain_of(&c.id, now).is_some();
        let others_up = candidates.iter().any(|c| !drained(c) && c.health.is_up());
        let mut notes = Vec::new();
        let mut last_resort = Vec::new();
        for c in &mut candidates {
            if !drained(c) {
                continue;
            }
            if others_up {
                c.health = Health::Drained;
            } else {
                if c.health == Health::Drained {
                    // drained below (every server of a farm), up for all we know
                    c.health = Health::Up;
                }
                if c.health.is_up() {
                    last_resort.push(c.id.to_string());
                }
            }
        }
        if !last_resort.is_empty() {
            notes.push(format!(
                "nothing else is up: drained {} may answer",
                last_resort.join(", ")
            ));
        }
        if let Some(pin) = self.pin_for(service, region, now) {
            match candidates.iter().find(|c| c.id == pin.target) {
                Some(t) if t.health.is_up() => {
                    for c in &mut candidates {
                        if c.id != pin.target && c.health.is_up() {
                            c.health = Health::Drained;
                        }
                    }
                    notes.push(pin.describe());
                }
                Some(t) => notes.push(format!(
                    "{} — not applied: {} is {}; normal choice",
                    pin.describe(),
                    pin.target,
                    t.health
                )),
                None if disabled.iter().any(|(id, _)| id == &pin.target) => notes.push(format!(
                    "{} — not applied: {} is disabled; normal choice",
                    pin.describe(),
                    pin.target
                )),
                // a target that is no member here (a server of another tier): nothing to do
                None => {}
            }
        }
        Applied {
            candidates,
            disabled,
            note: (!notes.is_empty()).then(|| notes.join("; ")),
        }
    }
}

impl Applied {
    /// Finishes a decision made over [`Applied::candidates`]: a fail-static answer drops
    /// disabled candidates (a last good answer may hold one), and the why gets the note.
    pub fn finish(&self, d: &mut Decision) {
        if d.degraded && !self.disabled.is_empty() {
            let gone: Vec<IpAddr> = self
                .disabled
                .iter()
                .filter(|(id, _)| d.chosen.contains(id))
                .flat_map(|(_, a)| a.iter().copied())
                .collect();
            d.chosen
                .retain(|id| !self.disabled.iter().any(|(gone, _)| gone == id));
            let weights = if d.weights.len() == d.addresses.len() {
                d.weights.clone()
            } else {
                vec![1.0; d.addresses.len()]
            };
            let (addresses, weights): (Vec<IpAddr>, Vec<f64>) = d
                .addresses
                .iter()
                .zip(weights)
                .filter(|(a, _)| !gone.contains(a))
                .map(|(a, w)| (*a, w))
                .unzip();
            d.addresses = addresses;
            d.weights = weights;
        }
        if let Some(note) = &self.note {
            d.why.push_str(&format!("; {note}"));
        }
    }
}
