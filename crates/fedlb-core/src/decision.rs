//! The decision engine of one service at one tier: ranking, hysteresis, top-N answers,
//! fail-static, and the operator-readable why.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::candidate::{Candidate, Health};
use crate::id::CandidateId;
use crate::policy::{Policy, Ranked};
use crate::time::{Timestamp, human};

/// When the preferred candidate may change while it is still healthy.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hysteresis {
    /// A challenger must score better by this fraction (0.2 = 20 % lower score).
    pub margin: f64,
    /// …and stay better for this long.
    pub dwell: Duration,
}

impl Default for Hysteresis {
    fn default() -> Self {
        Hysteresis {
            margin: 0.2,
            dwell: Duration::from_secs(10),
        }
    }
}

impl Hysteresis {
    /// No hysteresis: always follow the ranking.
    pub const NONE: Hysteresis = Hysteresis {
        margin: 0.0,
        dwell: Duration::ZERO,
    };
}

/// What to answer when no candidate is healthy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailStatic {
    /// Keep the last good answer (the default).
    #[default]
    KeepLast,
    /// Answer every candidate (let clients try them all).
    All,
}

/// How one service is decided at one tier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelectorConfig {
    /// The ranking policy.
    pub policy: Policy,
    /// Hysteresis for stable policies.
    pub hysteresis: Hysteresis,
    /// How many candidates to answer (the patent's single preferred server is 1).
    pub answers: usize,
    /// What to answer with no healthy candidate.
    pub fail_static: FailStatic,
    /// How often rotating and random policies draw a new order.
    pub rotate_every: Duration,
}

impl SelectorConfig {
    /// A config with the given policy and the defaults for everything else.
    pub fn new(policy: Policy) -> Self {
        SelectorConfig {
            policy,
            hysteresis: Hysteresis::default(),
            answers: 1,
            fail_static: FailStatic::default(),
            rotate_every: Duration::from_secs(30),
        }
    }
}

/// One candidate as shown in a decision: its health, and its place in the ranking.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Standing {
    /// The candidate.
    pub id: CandidateId,
    /// Its health at decision time.
    pub health: Health,
    /// 1-based rank among healthy candidates; `None` when not healthy.
    pub rank: Option<usize>,
    /// The policy's view of it (`12 ms`, `load 35 %`) or why it was left out.
    pub shown: String,
    /// Whether it passes the policy's filters.
    pub passes: bool,
}

/// The outcome of deciding one service at one tier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Chosen candidates, preferred first.
    pub chosen: Vec<CandidateId>,
    /// Addresses to answer, in the order of `chosen`, without duplicates.
    pub addresses: Vec<IpAddr>,
    /// True when no candidate was healthy and the answer is fail-static.
    pub degraded: bool,
    /// Why, for an operator.
    pub why: String,
    /// When `chosen` last changed.
    pub since: Timestamp,
    /// Every candidate with its standing, best first, unhealthy last.
    pub standings: Vec<Standing>,
}

impl Decision {
    /// Whether two decisions answer the same (ignoring the why and standings).
    pub fn same_answer(&self, other: &Decision) -> bool {
        self.chosen == other.chosen
            && self.addresses == other.addresses
            && self.degraded == other.degraded
    }
}

#[derive(Clone, Debug, PartialEq)]
struct LastGood {
    chosen: Vec<CandidateId>,
    addresses: Vec<IpAddr>,
    at: Timestamp,
}

/// The decision state of one service at one tier.
///
/// Feed it the candidates as they are now; it remembers what it chose, the challenger
/// waiting out its dwell, and the last good answer.
#[derive(Clone, Debug)]
pub struct Selector {
    config: SelectorConfig,
    current: Vec<CandidateId>,
    since: Timestamp,
    challenger: Option<(CandidateId, Timestamp)>,
    last_good: Option<LastGood>,
    /// Rotation period index and the order drawn for it (rotating policies only).
    drawn: Option<(u64, Vec<Ranked>)>,
}

impl Selector {
    /// A selector that has chosen nothing yet.
    pub fn new(config: SelectorConfig) -> Self {
        Selector {
            config,
            current: Vec::new(),
            since: Timestamp::ZERO,
            challenger: None,
            last_good: None,
            drawn: None,
        }
    }

    /// The config in force.
    pub fn config(&self) -> &SelectorConfig {
        &self.config
    }

    /// Replaces the config (a reload). What was chosen stays chosen if still allowed.
    pub fn set_config(&mut self, config: SelectorConfig) {
        if config.policy != self.config.policy {
            self.challenger = None;
            self.drawn = None;
        }
        self.config = config;
    }

    /// When a decision could change with no new input: the end of a challenger's dwell,
    /// or the next rotation of a rotating policy.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if !self.config.policy.is_stable() {
            let period = self.config.rotate_every.max(Duration::from_millis(1));
            let idx = self.drawn.as_ref().map_or(0, |(i, _)| *i);
            return Some(Timestamp::from_duration(period * (idx as u32 + 1)));
        }
        self.challenger
            .as_ref()
            .map(|(_, since)| *since + self.config.hysteresis.dwell)
    }

    /// Decides among `candidates` at `now`.
    pub fn decide(
        &mut self,
        candidates: &[Candidate],
        now: Timestamp,
        rng: &mut impl Rng,
    ) -> Decision {
        let healthy: Vec<&Candidate> = candidates.iter().filter(|c| c.health.is_up()).collect();
        let ranking = self.rank(&healthy, now, rng);
        let standings = standings(candidates, &ranking);
        let n = self.config.answers.max(1);

        if ranking.is_empty() {
            return self.fail_static(candidates, now, standings);
        }

        let previous = self.current.clone();
        let mut note = None;
        let chosen: Vec<CandidateId> = if !self.config.policy.is_stable() {
            self.challenger = None;
            ranking.iter().take(n).map(|r| r.id.clone()).collect()
        } else {
            let (chosen, hold) = self.with_hysteresis(&ranking, n, now);
            note = hold;
            chosen
        };

        let addresses = addresses_of(&chosen, candidates);
        if chosen != previous {
            self.since = now;
        }
        self.current = chosen.clone();
        self.last_good = Some(LastGood {
            chosen: chosen.clone(),
            addresses: addresses.clone(),
            at: now,
        });
        let why = self.why(&chosen, &previous, &ranking, candidates, note);
        Decision {
            chosen,
            addresses,
            degraded: false,
            why,
            since: self.since,
            standings,
        }
    }

    fn rank(&mut self, healthy: &[&Candidate], now: Timestamp, rng: &mut impl Rng) -> Vec<Ranked> {
        let policy = &self.config.policy;
        if policy.is_stable() {
            return policy.rank(healthy, 0, rng);
        }
        // Rotating policies: one order per period, so that answers do not churn on every
        // report; a change of the healthy set redraws at once.
        let period = self.config.rotate_every.max(Duration::from_millis(1));
        let idx = (now.as_duration().as_nanos() / period.as_nanos()) as u64;
        let same_set = |order: &[Ranked]| {
            order.len() == healthy.len()
                && order.iter().all(|r| healthy.iter().any(|c| c.id == r.id))
        };
        match &self.drawn {
            Some((i, order)) if *i == idx && same_set(order) => order.clone(),
            _ => {
                let order = policy.rank(healthy, idx, rng);
                self.drawn = Some((idx, order.clone()));
                order
            }
        }
    }

    /// Keeps current members that are still healthy; fills empty slots at once; replaces
    /// the worst member only when a challenger beats it by the margin for the dwell.
    fn with_hysteresis(
        &mut self,
        ranking: &[Ranked],
        n: usize,
        now: Timestamp,
    ) -> (Vec<CandidateId>, Option<String>) {
        let hyst = self.config.hysteresis;
        let pos = |id: &CandidateId| ranking.iter().position(|r| &r.id == id);
        let mut kept: Vec<usize> = self.current.iter().filter_map(pos).collect();
        kept.sort_unstable();
        kept.truncate(n);
        for i in 0..ranking.len() {
            if kept.len() >= n {
                break;
            }
            if !kept.contains(&i) {
                kept.push(i);
            }
        }
        kept.sort_unstable();

        let mut note = None;
        let worst = *kept.last().expect("ranking is not empty");
        let challenger = (0..ranking.len()).find(|i| !kept.contains(i));
        match challenger {
            Some(c) if better_by_margin(&ranking[c], &ranking[worst], hyst.margin) => {
                let cid = ranking[c].id.clone();
                let since = match &self.challenger {
                    Some((id, since)) if *id == cid => *since,
                    _ => now,
                };
                if now - since >= hyst.dwell {
                    kept.retain(|i| *i != worst);
                    kept.push(c);
                    kept.sort_unstable();
                    self.challenger = None;
                } else {
                    self.challenger = Some((cid.clone(), since));
                    note = Some(format!(
                        "{cid} ({}) better than {} ({}) for {} of {} dwell",
                        ranking[c].shown,
                        ranking[worst].id,
                        ranking[worst].shown,
                        human(now - since),
                        human(hyst.dwell)
                    ));
                }
            }
            _ => self.challenger = None,
        }
        (
            kept.into_iter().map(|i| ranking[i].id.clone()).collect(),
            note,
        )
    }

    fn fail_static(
        &mut self,
        candidates: &[Candidate],
        now: Timestamp,
        standings: Vec<Standing>,
    ) -> Decision {
        self.challenger = None;
        let total = candidates.len();
        let (chosen, addresses, why) = match (self.config.fail_static, &self.last_good) {
            (FailStatic::All, _) if candidates.iter().any(|c| !c.addresses.is_empty()) => {
                let chosen: Vec<CandidateId> = candidates.iter().map(|c| c.id.clone()).collect();
                let addresses = addresses_of(&chosen, candidates);
                let why = format!("no healthy candidate of {total}; answering all (fail-static)");
                (chosen, addresses, why)
            }
            (_, Some(last)) => {
                let why = format!(
                    "no healthy candidate of {total}; keeping last good answer {} (fail-static)",
                    join(&last.chosen)
                );
                (last.chosen.clone(), last.addresses.clone(), why)
            }
            (_, None) => (
                Vec::new(),
                Vec::new(),
                format!(
                    "no healthy candidate of {total} and no earlier answer; publishing nothing"
                ),
            ),
        };
        if chosen != self.current {
            self.since = now;
            self.current = chosen.clone();
        }
        Decision {
            chosen,
            addresses,
            degraded: true,
            why,
            since: self.since,
            standings,
        }
    }

    fn why(
        &self,
        chosen: &[CandidateId],
        previous: &[CandidateId],
        ranking: &[Ranked],
        candidates: &[Candidate],
        hold: Option<String>,
    ) -> String {
        let policy = &self.config.policy;
        let healthy = || candidates.iter().filter(|c| c.health.is_up());
        let noun = if healthy().all(|c| c.members.is_some()) {
            "farms"
        } else if healthy().all(|c| c.members.is_none()) {
            "servers"
        } else {
            "candidates"
        };
        let shown = |id: &CandidateId| {
            ranking
                .iter()
                .find(|r| &r.id == id)
                .map_or(String::new(), |r| r.shown.clone())
        };
        let first = &chosen[0];
        let noun = if ranking.len() == 1 {
            noun.trim_end_matches('s')
        } else {
            noun
        };
        let mut why = format!(
            "{first}: {policy} ({}) of {} healthy {noun}",
            shown(first),
            ranking.len()
        );
        if chosen.len() > 1 {
            why.push_str(&format!("; also {}", join(&chosen[1..])));
        }
        if let Some(next) = ranking.iter().find(|r| !chosen.contains(&r.id)) {
            why.push_str(&format!("; next {} {}", next.id, next.shown));
        }
        let lost: Vec<&CandidateId> = previous.iter().filter(|p| !chosen.contains(p)).collect();
        for p in lost {
            match candidates.iter().find(|c| &c.id == p) {
                Some(c) if !c.health.is_up() => why.push_str(&format!("; {p} is {}", c.health)),
                None => why.push_str(&format!("; {p} removed")),
                Some(_) => {}
            }
        }
        if let Policy::Composite { filters, .. } = policy {
            let failing: Vec<String> = ranking
                .iter()
                .filter(|r| !r.passes && !chosen.contains(&r.id))
                .map(|r| format!("{} {}", r.id, r.shown))
                .collect();
            if !failing.is_empty() {
                let filters: Vec<String> = filters.iter().map(ToString::to_string).collect();
                why.push_str(&format!(
                    "; not meeting {}: {}",
                    filters.join(" and "),
                    failing.join(", ")
                ));
            }
        }
        if let Some(hold) = hold {
            why.push_str(&format!("; holding: {hold}"));
        }
        let unhealthy = candidates.iter().filter(|c| !c.health.is_up()).count();
        if unhealthy > 0 {
            why.push_str(&format!("; {unhealthy} not healthy"));
        }
        why
    }
}

fn better_by_margin(challenger: &Ranked, incumbent: &Ranked, margin: f64) -> bool {
    if challenger.passes != incumbent.passes {
        return challenger.passes;
    }
    match (challenger.score, incumbent.score) {
        (Some(c), Some(i)) => c < i - margin.max(0.0) * i.abs(),
        (Some(_), None) => true,
        _ => false,
    }
}

fn standings(candidates: &[Candidate], ranking: &[Ranked]) -> Vec<Standing> {
    let mut out: Vec<Standing> = ranking
        .iter()
        .enumerate()
        .map(|(i, r)| Standing {
            id: r.id.clone(),
            health: Health::Up,
            rank: Some(i + 1),
            shown: r.shown.clone(),
            passes: r.passes,
        })
        .collect();
    let mut rest: Vec<&Candidate> = candidates.iter().filter(|c| !c.health.is_up()).collect();
    rest.sort_by(|a, b| a.id.cmp(&b.id));
    out.extend(rest.into_iter().map(|c| Standing {
        id: c.id.clone(),
        health: c.health,
        rank: None,
        shown: c.health.to_string(),
        passes: false,
    }));
    out
}

fn addresses_of(chosen: &[CandidateId], candidates: &[Candidate]) -> Vec<IpAddr> {
    let mut seen = BTreeSet::new();
    chosen
        .iter()
        .filter_map(|id| candidates.iter().find(|c| &c.id == id))
        .flat_map(|c| c.addresses.iter().copied())
        .filter(|a| seen.insert(*a))
        .collect()
}

fn join(ids: &[CandidateId]) -> String {
    ids.iter()
        .map(|i| i.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
