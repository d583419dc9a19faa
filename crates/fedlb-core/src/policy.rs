//! Policies: how candidates are ranked. One interface, used inside a farm (local policy)
//! and across farms (global policy).

use std::cmp::Ordering;
use std::fmt;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::candidate::{Candidate, Distance};
use crate::id::CandidateId;
use crate::time::human;

/// How candidates are ranked. Lower scores are better.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Policy {
    /// Lowest load relative to capacity (pending requests, else connections).
    LeastLoaded,
    /// Lowest measured response time.
    FastestResponse,
    /// Smallest distance, measured as the given source says.
    Closest(ClosestBy),
    /// Random order weighted by capacity (drawn anew every rotation period).
    Weighted,
    /// A fixed order of preference: the first healthy one in the list wins.
    Failover(Vec<CandidateId>),
    /// Rotates through the healthy candidates, one step per rotation period.
    RoundRobin,
    /// Uniformly random order (drawn anew every rotation period).
    Random,
    /// Lowest value of a named application metric (e.g. fewest DBMS users).
    LowestMetric(String),
    /// The power of two choices (Mitzenmacher): two candidates drawn at random weighted by
    /// capacity, the less loaded of them first (drawn anew every rotation period). With
    /// stale readings, "the least loaded" sends everyone to the same candidate until the
    /// next reading; two random choices keep most of the benefit without the herd.
    TwoChoices,
    /// Rank by `rank` among the candidates that pass every filter; those that fail a
    /// filter come after all those that pass ("closest among those under 80 % load"), ranked
    /// by `fallback` when given ("…, else the least loaded"), else by `rank`.
    Composite {
        /// Conditions a candidate should meet.
        filters: Vec<Filter>,
        /// How the candidates that pass are ranked.
        rank: Box<Policy>,
        /// How the candidates that fail a filter are ranked, after those that pass; `None`:
        /// by `rank` too.
        #[serde(default)]
        fallback: Option<Box<Policy>>,
    },
}

/// Which measure of distance [`Policy::Closest`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClosestBy {
    /// The pinned or location-derived distance if declared, else measured RTT, else hops.
    Auto,
    /// Measured round-trip time from the deciding node.
    Rtt,
    /// Network hops from the deciding node.
    Hops,
    /// Only the declared distance (pinned milliseconds or kilometres between locations).
    Declared,
}

/// A condition of a composite policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Filter {
    /// Load relative to capacity at most this fraction (0.8 = 80 %).
    MaxLoad(f64),
    /// Response time at most this long.
    MaxResponseTime(Duration),
    /// A named metric at most this value; a candidate that does not report it passes.
    MaxMetric(String, f64),
    /// A named metric at most this value; a candidate that does not report it fails (a farm
    /// whose summary does not carry the metric is not known to be under the limit).
    MaxMetricRequired(String, f64),
}

impl Filter {
    /// Whether `c` passes. A candidate without the reading passes (unknown is not bad),
    /// except for [`Filter::MaxMetricRequired`].
    pub fn passes(&self, c: &Candidate) -> bool {
        match self {
            Filter::MaxLoad(max) => c.load().is_none_or(|l| l <= *max),
            Filter::MaxResponseTime(max) => {
                c.readings.response_time.is_none_or(|s| s.value <= *max)
            }
            Filter::MaxMetric(name, max) => {
                c.readings.metrics.get(name).is_none_or(|s| s.value <= *max)
            }
            Filter::MaxMetricRequired(name, max) => c
                .readings
                .metrics
                .get(name)
                .is_some_and(|s| s.value <= *max),
        }
    }
}

impl Filter {
    /// The reading the filter looks at, as an operator reads it (`load 41 %`); `None`
    /// when the candidate does not report it.
    pub fn shown(&self, c: &Candidate) -> Option<String> {
        match self {
            Filter::MaxLoad(_) => c.load().map(|l| format!("load {} %", Whole(l * 100.0))),
            Filter::MaxResponseTime(_) => c.readings.response_time.map(|s| human(s.value)),
            Filter::MaxMetric(name, _) => c
                .readings
                .metrics
                .get(name)
                .map(|s| format!("{name} {}", s.value)),
            Filter::MaxMetricRequired(name, _) => Some(
                c.readings
                    .metrics
                    .get(name)
                    .map_or(format!("no {name} reading"), |s| {
                        format!("{name} {}", s.value)
                    }),
            ),
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::MaxLoad(max) => write!(f, "load ≤ {:.0} %", max * 100.0),
            Filter::MaxResponseTime(max) => write!(f, "response ≤ {}", human(*max)),
            Filter::MaxMetric(name, max) => write!(f, "{name} ≤ {max}"),
            Filter::MaxMetricRequired(name, max) => write!(f, "{name} ≤ {max} (reported)"),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::LeastLoaded => f.write_str("least loaded"),
            Policy::FastestResponse => f.write_str("fastest response"),
            Policy::Closest(ClosestBy::Auto | ClosestBy::Declared) => f.write_str("closest"),
            Policy::Closest(ClosestBy::Rtt) => f.write_str("closest by rtt"),
            Policy::Closest(ClosestBy::Hops) => f.write_str("closest by hops"),
            Policy::Weighted => f.write_str("weighted"),
            Policy::Failover(_) => f.write_str("failover order"),
            Policy::RoundRobin => f.write_str("round robin"),
            Policy::Random => f.write_str("random"),
            Policy::LowestMetric(m) => write!(f, "lowest {m}"),
            Policy::TwoChoices => f.write_str("two choices"),
            Policy::Composite {
                filters,
                rank,
                fallback,
            } => {
                write!(f, "{rank} among")?;
                for (i, filter) in filters.iter().enumerate() {
                    write!(f, "{} {filter}", if i == 0 { "" } else { " and" })?;
                }
                if let Some(fallback) = fallback {
                    write!(f, ", else {fallback}")?;
                }
                Ok(())
            }
        }
    }
}

/// A candidate's place in a ranking.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ranked {
    /// The candidate.
    pub id: CandidateId,
    /// Its score (lower is better); `None` when it lacks the reading the policy needs.
    pub score: Option<f64>,
    /// Whether it passes the composite policy's filters (always true otherwise).
    pub passes: bool,
    /// The score as an operator reads it: `12 ms`, `load 35 %`, `3 hops`.
    pub shown: String,
}

impl Policy {
    /// Whether scores mean something stable, so that hysteresis applies. Rotating and
    /// random policies change their order on purpose.
    pub fn is_stable(&self) -> bool {
        match self {
            Policy::Weighted | Policy::RoundRobin | Policy::Random | Policy::TwoChoices => false,
            Policy::Composite { rank, fallback, .. } => {
                rank.is_stable() && fallback.as_deref().is_none_or(Policy::is_stable)
            }
            _ => true,
        }
    }

    /// Ranks `candidates` best first. `rotation` counts rotation periods (round robin);
    /// `rng` draws the random orders. Ties break by name, so equal inputs give equal output.
    pub fn rank(
        &self,
        candidates: &[&Candidate],
        rotation: u64,
        rng: &mut impl Rng,
    ) -> Vec<Ranked> {
        let (filters, inner, fallback): (&[Filter], &Policy, Option<&Policy>) = match self {
            Policy::Composite {
                filters,
                rank,
                fallback,
            } => (filters, rank, fallback.as_deref()),
            other => (&[], other, None),
        };
        let mut sorted: Vec<&Candidate> = candidates.to_vec();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        let mut ranked: Vec<Ranked> = match inner {
            Policy::RoundRobin => {
                let n = sorted.len().max(1);
                sorted.rotate_left((rotation % n as u64) as usize);
                positional(&sorted, "round robin")
            }
            Policy::Random => {
                let mut keyed: Vec<(f64, &Candidate)> = sorted
                    .into_iter()
                    .map(|c| (rng.random::<f64>(), c))
                    .collect();
                keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
                positional(
                    &keyed.into_iter().map(|(_, c)| c).collect::<Vec<_>>(),
                    "random",
                )
            }
            Policy::Weighted => positional(&by_capacity(sorted, rng), "weighted"),
            Policy::TwoChoices => two_choices(by_capacity(sorted, rng)),
            Policy::Composite { .. } => {
                // A composite inside a composite: flatten by ranking with the inner one.
                return inner.rank(candidates, rotation, rng);
            }
            scored => sorted
                .iter()
                .map(|c| {
                    let (score, shown) = score(scored, c);
                    Ranked {
                        id: c.id.clone(),
                        score,
                        passes: true,
                        shown,
                    }
                })
                .collect(),
        };
        // Only filters look a candidate up again: by name in a sorted copy (the first of
        // equal names, as a search of `candidates` would find), not by a scan per candidate.
        let mut by_name: Vec<&Candidate> = Vec::new();
        if !filters.is_empty() {
            by_name = candidates.to_vec();
            by_name.sort_by(|a, b| a.id.cmp(&b.id));
        }
        let by_id = |id: &CandidateId| {
            let i = by_name.partition_point(|c| &c.id < id);
            by_name.get(i).copied().filter(|c| &c.id == id)
        };
        for r in ranked.iter_mut().filter(|_| !filters.is_empty()) {
            if let Some(c) = by_id(&r.id) {
                r.passes = filters.iter().all(|f| f.passes(c));
                // show what the filters looked at, so that the why says why a candidate
                // failed ("12 ms, load 91 %")
                for f in filters {
                    if let Some(part) = f.shown(c)
                        && !r.shown.contains(&part)
                    {
                        r.shown = format!("{}, {part}", r.shown);
                    }
                }
            }
        }
        if let Some(fallback) = fallback {
            // those that fail a filter are ranked among themselves by the fallback
            let failing: Vec<&Candidate> = candidates
                .iter()
                .copied()
                .filter(|c| !filters.iter().all(|f| f.passes(c)))
                .collect();
            let again = fallback.rank(&failing, rotation, rng);
            for r in ranked.iter_mut().filter(|r| !r.passes) {
                if let Some(f) = again.iter().find(|f| f.id == r.id) {
                    r.score = f.score;
                    if !r.shown.contains(&f.shown) {
                        r.shown = format!("{}, {}", r.shown, f.shown);
                    }
                }
            }
        }
        match (inner.is_stable(), fallback) {
            (true, _) => ranked.sort_by(compare_ranked),
            // keep the drawn order, but filters still come first
            (false, None) => ranked.sort_by_key(|r| !r.passes),
            (false, Some(_)) => ranked.sort_by(|a, b| {
                b.passes.cmp(&a.passes).then_with(|| {
                    if a.passes {
                        Ordering::Equal
                    } else {
                        compare_ranked(a, b)
                    }
                })
            }),
        }
        ranked
    }
}

/// Best first: passing filters, then a score (lower first), then the name.
pub fn compare_ranked(a: &Ranked, b: &Ranked) -> Ordering {
    b.passes
        .cmp(&a.passes)
        .then_with(|| match (a.score, b.score) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
        .then_with(|| a.id.cmp(&b.id))
}

fn positional(order: &[&Candidate], what: &str) -> Vec<Ranked> {
    order
        .iter()
        .enumerate()
        .map(|(i, c)| Ranked {
            id: c.id.clone(),
            score: Some(i as f64),
            passes: true,
            shown: format!("{what} #{}", i + 1),
        })
        .collect()
}

/// A random order weighted by capacity. Efraimidis–Spirakis: key u^(1/w), largest first, is
/// a weighted draw without replacement.
fn by_capacity<'a>(sorted: Vec<&'a Candidate>, rng: &mut impl Rng) -> Vec<&'a Candidate> {
    let mut keyed: Vec<(f64, &Candidate)> = sorted
        .into_iter()
        .map(|c| {
            let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
            (u.powf(1.0 / c.capacity.max(1e-9)), c)
        })
        .collect();
    keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
    keyed.into_iter().map(|(_, c)| c).collect()
}

/// The first two of a weighted draw, the less loaded first (a candidate without a load
/// reading counts as idle; a tie keeps the draw's order), then the rest as drawn.
fn two_choices(mut drawn: Vec<&Candidate>) -> Vec<Ranked> {
    let load = |c: &Candidate| c.load().unwrap_or(0.0);
    if drawn.len() >= 2 && load(drawn[1]) < load(drawn[0]) {
        drawn.swap(0, 1);
    }
    let shown_load = |c: &Candidate| {
        c.load().map_or("no load reading".to_owned(), |l| {
            format!("load {:.0} %", l * 100.0)
        })
    };
    drawn
        .iter()
        .enumerate()
        .map(|(i, c)| Ranked {
            id: c.id.clone(),
            score: Some(i as f64),
            passes: true,
            shown: match (i, drawn.len()) {
                (0, 1) => format!("{}, the only one", shown_load(c)),
                (0, _) => format!("{}, better of 2 drawn", shown_load(c)),
                (1, _) => format!("{}, drawn", shown_load(c)),
                _ => "not drawn".to_owned(),
            },
        })
        .collect()
}

/// A number as `{:.0}` writes it, but a whole number in range is written as an integer:
/// the same digits (both round half to even) without the float formatter's exact mode,
/// which was most of the cost of ranking.
struct Whole(f64);

impl fmt::Display for Whole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let x = self.0;
        if x.is_sign_positive() && x < 9.0e15 {
            write!(f, "{}", x.round_ties_even() as u64)
        } else {
            write!(f, "{x:.0}")
        }
    }
}

fn score(policy: &Policy, c: &Candidate) -> (Option<f64>, String) {
    let none = || (None, "no reading".to_owned());
    match policy {
        Policy::LeastLoaded => match c.load() {
            Some(l) => (Some(l), format!("load {} %", Whole(l * 100.0))),
            None => none(),
        },
        Policy::FastestResponse => match c.readings.response_time {
            Some(s) => (Some(s.value.as_secs_f64() * 1e3), human(s.value)),
            None => none(),
        },
        Policy::Closest(by) => closest(*by, c).unwrap_or_else(none),
        Policy::Failover(order) => match order.iter().position(|id| id == &c.id) {
            Some(i) => (Some(i as f64), format!("order {}", i + 1)),
            None => (None, "not in failover order".to_owned()),
        },
        Policy::LowestMetric(name) => match c.readings.metrics.get(name) {
            Some(s) => (Some(s.value), format!("{name} {}", s.value)),
            None => none(),
        },
        Policy::RoundRobin
        | Policy::Random
        | Policy::Weighted
        | Policy::TwoChoices
        | Policy::Composite { .. } => {
            unreachable!("positional and composite policies are ranked by Policy::rank")
        }
    }
}

fn closest(by: ClosestBy, c: &Candidate) -> Option<(Option<f64>, String)> {
    let declared = || match c.distance? {
        Distance::Pinned(ms) => Some((Some(ms), format!("{} ms", Whole(ms)))),
        Distance::Kilometres(km) => Some((Some(km / 100.0), format!("{} km", Whole(km)))),
    };
    let rtt = || {
        c.readings.rtt.or(c.readings.response_time).map(|s| {
            (
                Some(s.value.as_secs_f64() * 1e3),
                format!("rtt {}", human(s.value)),
            )
        })
    };
    let hops = || {
        c.readings
            .hops
            .map(|s| (Some(f64::from(s.value)), format!("{} hops", s.value)))
    };
    match by {
        ClosestBy::Auto => declared().or_else(rtt).or_else(hops),
        ClosestBy::Rtt => rtt(),
        ClosestBy::Hops => hops(),
        ClosestBy::Declared => declared(),
    }
}
