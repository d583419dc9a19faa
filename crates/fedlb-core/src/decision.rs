//! The decision engine of one service at one tier: ranking, hysteresis, top-N answers,
//! fail-static, and the operator-readable why.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::candidate::{Candidate, Health};
use crate::id::CandidateId;
use crate::policy::{Filter, Policy, Ranked};
use crate::spread::{self, headroom};
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

/// Which candidates an answer holds, and how their weights are set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AnswerSet {
    /// The first [`SelectorConfig::answers`] of the ranking, with equal weights (the
    /// patent's single preferred server when `answers` is 1).
    #[default]
    Top,
    /// Every healthy candidate, weighted by its headroom (capacity × (1 − load), floored at
    /// [`spread::HEADROOM_FLOOR`] × capacity), best ranked first: an answer sized to what each
    /// member can still take, for a DNS server or resolvers that spread by weight.
    Weighted,
}

/// What a composite policy with a `max_load` filter does when the best candidate by its
/// `rank` (e.g. the closest farm) is over the load limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Spill {
    /// The answer moves to the next candidate that passes (the default).
    #[default]
    Move,
    /// The answer becomes the best candidate plus the next ones, in the composite's order,
    /// until their headroom under the limit covers the best one's excess, weighted by
    /// headroom: a region's clients are split across farms instead of moved at once.
    Split,
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
    /// Which candidates the answer holds and how they are weighted.
    #[serde(default)]
    pub set: AnswerSet,
    /// With a composite policy: move or split when its best candidate is over the limit.
    #[serde(default)]
    pub spill: Spill,
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
            set: AnswerSet::default(),
            spill: Spill::default(),
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
    /// The relative weight of each address, aligned with `addresses`: the share of the
    /// answer's clients it should get, to be normalised per address family (see
    /// [`spread::family_shares`]). Equal for a top-N answer; by headroom for a weighted or
    /// split one; a farm's own weights carry through to the global answer.
    #[serde(default)]
    pub weights: Vec<f64>,
    /// How much room the answer's members have left, relative to the healthy candidate with
    /// the most: Σ share × headroom ÷ largest headroom, in `0..=1`. Near 1, the answer sends
    /// clients where there is most room; near 0, to a small or busy member (the TTL by load
    /// shortens such answers). `None` for a fail-static answer.
    #[serde(default)]
    pub headroom: Option<f64>,
}

impl Decision {
    /// Whether two decisions answer the same set (ignoring the why, the standings and the
    /// weights: see [`Decision::weights_moved`]).
    pub fn same_answer(&self, other: &Decision) -> bool {
        self.chosen == other.chosen
            && self.addresses == other.addresses
            && self.degraded == other.degraded
    }

    /// Whether the weights moved enough since `other` to publish again (see
    /// [`spread::shares_moved`]).
    pub fn weights_moved(&self, other: &Decision) -> bool {
        spread::shares_moved(
            (&self.addresses, &self.weights),
            (&other.addresses, &other.weights),
        )
    }

    /// Each address with its share of its family's answer (shares of each family sum to 1).
    pub fn shares(&self) -> Vec<(IpAddr, f64)> {
        let mut out = spread::family_shares(&self.addresses, &self.weights, true);
        out.extend(spread::family_shares(&self.addresses, &self.weights, false));
        out
    }
}

#[derive(Clone, Debug, PartialEq)]
struct LastGood {
    chosen: Vec<CandidateId>,
    addresses: Vec<IpAddr>,
    weights: Vec<f64>,
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
        let n = self.config.answers.max(1);

        if ranking.is_empty() {
            return self.fail_static(candidates, now, standings(candidates, ranking));
        }

        let previous = self.current.clone();
        let mut note = None;
        let split = self.split(&healthy, &ranking, rng);
        let split_note = split.as_ref().map(|(_, why)| why.clone());
        let split_shares = split.map(|(shares, _)| shares);
        let (chosen, by_headroom): (Vec<CandidateId>, bool) = if let Some(shares) = &split_shares {
            // Split at once, without the dwell: the best candidate stays in the answer, so
            // this is a gentle move that the shares size, not a flip of the whole region.
            self.challenger = None;
            (shares.iter().map(|(id, _)| id.clone()).collect(), true)
        } else if self.config.set == AnswerSet::Weighted {
            self.challenger = None;
            (ranking.iter().map(|r| r.id.clone()).collect(), true)
        } else if !self.config.policy.is_stable() {
            self.challenger = None;
            (
                ranking.iter().take(n).map(|r| r.id.clone()).collect(),
                false,
            )
        } else {
            let (chosen, hold) = self.with_hysteresis(&ranking, n, now);
            note = hold;
            (chosen, false)
        };

        let shares = split_shares.unwrap_or_else(|| shares_of(&chosen, candidates, by_headroom));
        let (addresses, weights) = weighted_addresses(&shares, candidates);
        let answer_headroom = relative_headroom(&shares, &healthy);
        if chosen != previous {
            self.since = now;
        }
        self.current = chosen.clone();
        self.last_good = Some(LastGood {
            chosen: chosen.clone(),
            addresses: addresses.clone(),
            weights: weights.clone(),
            at: now,
        });
        let mut why = self.why(&chosen, &previous, &ranking, candidates, note);
        if let Some(split) = &split_note {
            why.push_str(&format!("; {split}"));
        }
        if by_headroom && shares.len() > 1 {
            let parts: Vec<String> = shares
                .iter()
                .map(|(id, share)| format!("{id} {:.0} %", share * 100.0))
                .collect();
            let by = if split_note.is_some() {
                "shares"
            } else {
                "weighted by headroom"
            };
            why.push_str(&format!("; {by}: {}", parts.join(", ")));
        }
        Decision {
            chosen,
            addresses,
            degraded: false,
            why,
            since: self.since,
            standings: standings(candidates, ranking),
            weights,
            headroom: Some(answer_headroom),
        }
    }

    /// With [`Spill::Split`] and a composite policy with a `max_load` filter, when the best
    /// candidate by the composite's `rank` alone is over the limit: that candidate, then the
    /// next ones in the composite's order until their headroom under the limit covers its
    /// excess (capacity × (load − limit)), with the shares of the answer and the why.
    /// `None`: decide as usual.
    ///
    /// Only the excess moves: the best keeps `limit ÷ load` of the answer (what it carries
    /// at the limit if the answer's clients were all its load), and the others share the rest
    /// in proportion to their room under the limit. Weighting the best by its own headroom
    /// instead would move nearly the whole region away from a farm just over its limit, drop
    /// its load far below the limit, and bring the region back at once: the herd the split
    /// exists to avoid (the scenario suite's `bursty` showed it).
    fn split(
        &self,
        healthy: &[&Candidate],
        ranking: &[Ranked],
        rng: &mut impl Rng,
    ) -> Option<(Vec<(CandidateId, f64)>, String)> {
        let Policy::Composite { filters, rank, .. } = &self.config.policy else {
            return None;
        };
        if self.config.spill != Spill::Split
            || self.config.set != AnswerSet::Top
            || healthy.len() < 2
        {
            return None;
        }
        let limit = filters.iter().find_map(|f| match f {
            Filter::MaxLoad(l) => Some(*l),
            _ => None,
        })?;
        let find = |id: &CandidateId| healthy.iter().copied().find(|c| &c.id == id);
        // the best by rank alone, whatever the filters say (a stable rank draws nothing)
        let best = find(&rank.rank(healthy, 0, rng).first()?.id)?;
        let load = best.load()?;
        if load <= limit {
            return None;
        }
        let excess = best.capacity * (load - limit);
        let mut chosen = vec![best.id.clone()];
        let mut room = Vec::new();
        let mut covered = 0.0;
        for r in ranking.iter().filter(|r| r.id != best.id) {
            let Some(c) = find(&r.id) else { continue };
            chosen.push(c.id.clone());
            let under = c.capacity * (limit - c.load().unwrap_or(0.0)).max(0.0);
            room.push(under);
            covered += under;
            if covered >= excess {
                break;
            }
        }
        let kept = (limit / load).clamp(spread::HEADROOM_FLOOR, 1.0);
        let moved = 1.0 - kept;
        let others = chosen.len() - 1;
        let mut shares = vec![(best.id.clone(), kept)];
        for (id, under) in chosen[1..].iter().zip(&room) {
            // nobody has room under the limit: the excess spreads evenly
            let share = if covered > 0.0 {
                moved * under / covered
            } else {
                moved / others as f64
            };
            shares.push((id.clone(), share));
        }
        let why = format!(
            "{} over its limit (load {:.0} % > {:.0} %): split with {}",
            best.id,
            load * 100.0,
            limit * 100.0,
            join(&chosen[1..])
        );
        Some((shares, why))
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
                    // No "for 3 s of 10 s" here: a why that changes with the clock alone
                    // would have every holding service decided again at every timeout, to
                    // rewrite it (a farm node with hysteresis spent a full recompute per
                    // timeout on that). The end of the dwell is the decision's next change.
                    note = Some(format!(
                        "{cid} ({}) better than {} ({}); it takes over once better for the {} dwell",
                        ranking[c].shown,
                        ranking[worst].id,
                        ranking[worst].shown,
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
        let (chosen, addresses, weights, why) = match (self.config.fail_static, &self.last_good) {
            (FailStatic::All, _) if candidates.iter().any(|c| !c.addresses.is_empty()) => {
                let chosen: Vec<CandidateId> = candidates.iter().map(|c| c.id.clone()).collect();
                let (addresses, weights) =
                    weighted_addresses(&shares_of(&chosen, candidates, false), candidates);
                let why = format!("no healthy candidate of {total}; answering all (fail-static)");
                (chosen, addresses, weights, why)
            }
            (_, Some(last)) => {
                let why = format!(
                    "no healthy candidate of {total}; keeping last good answer {} (fail-static)",
                    join(&last.chosen)
                );
                (
                    last.chosen.clone(),
                    last.addresses.clone(),
                    last.weights.clone(),
                    why,
                )
            }
            (_, None) => (
                Vec::new(),
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
            weights,
            headroom: None,
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

fn standings(candidates: &[Candidate], ranking: Vec<Ranked>) -> Vec<Standing> {
    let mut out: Vec<Standing> = Vec::with_capacity(candidates.len());
    out.extend(ranking.into_iter().enumerate().map(|(i, r)| Standing {
        id: r.id,
        health: Health::Up,
        rank: Some(i + 1),
        shown: r.shown,
        passes: r.passes,
    }));
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

/// Each chosen candidate's share of the answer: by headroom, or equal; summing to 1.
fn shares_of(
    chosen: &[CandidateId],
    candidates: &[Candidate],
    by_headroom: bool,
) -> Vec<(CandidateId, f64)> {
    let raw: Vec<(CandidateId, f64)> = chosen
        .iter()
        .filter_map(|id| candidates.iter().find(|c| &c.id == id))
        .map(|c| (c.id.clone(), if by_headroom { headroom(c) } else { 1.0 }))
        .collect();
    let total: f64 = raw.iter().map(|(_, w)| w).sum();
    let n = raw.len() as f64;
    raw.into_iter()
        .map(|(id, w)| (id, if total > 0.0 { w / total } else { 1.0 / n }))
        .collect()
}

/// The answer's addresses in the order of the shares, without duplicates, and the weight of
/// each: its candidate's share times its share of that candidate's answer in its family (a
/// farm's own weights carry through). An address two candidates answer gets both weights.
fn weighted_addresses(
    shares: &[(CandidateId, f64)],
    candidates: &[Candidate],
) -> (Vec<IpAddr>, Vec<f64>) {
    let mut seen = BTreeSet::new();
    let mut addresses: Vec<IpAddr> = Vec::new();
    let mut weights: Vec<f64> = Vec::new();
    for (id, share) in shares {
        let Some(c) = candidates.iter().find(|c| &c.id == id) else {
            continue;
        };
        for v4 in [true, false] {
            for (addr, inner) in spread::family_shares(&c.addresses, &c.weights, v4) {
                if seen.insert(addr) {
                    addresses.push(addr);
                    weights.push(0.0);
                }
                if let Some(i) = addresses.iter().position(|a| *a == addr) {
                    weights[i] += share * inner;
                }
            }
        }
    }
    // keep the candidates' own order of addresses (the families were taken in turn above)
    let order: Vec<IpAddr> = shares
        .iter()
        .filter_map(|(id, _)| candidates.iter().find(|c| &c.id == id))
        .flat_map(|c| c.addresses.iter().copied())
        .collect();
    let mut paired: Vec<(IpAddr, f64)> = addresses.into_iter().zip(weights).collect();
    paired.sort_by_key(|(a, _)| order.iter().position(|o| o == a));
    paired.into_iter().unzip()
}

/// Σ share × headroom ÷ the largest headroom of any healthy candidate.
fn relative_headroom(shares: &[(CandidateId, f64)], healthy: &[&Candidate]) -> f64 {
    let most = healthy.iter().map(|c| headroom(c)).fold(0.0, f64::max);
    if most <= 0.0 {
        return 1.0;
    }
    shares
        .iter()
        .filter_map(|(id, share)| {
            let c = healthy.iter().find(|c| &c.id == id)?;
            Some(share * headroom(c) / most)
        })
        .sum::<f64>()
        .clamp(0.0, 1.0)
}

fn join(ids: &[CandidateId]) -> String {
    ids.iter()
        .map(|i| i.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
