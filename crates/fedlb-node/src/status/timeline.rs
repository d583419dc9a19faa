//! What a node remembers for "what changed, when": the last [`Timeline::CAPACITY`] changes
//! of its decisions (the core says what counts as one and why: `fedlb_core::change`), and a
//! short history of each candidate's load for the page's charts. Both are bounded in
//! memory whatever the topology: the timeline by its capacity, the history by
//! [`LoadHistory::KEEP`] samples of at most [`LoadHistory::MAX_SERIES`] series.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fedlb_core::{Answer, Change, Timestamp};

use super::model::{AnswerStatus, ChangeStatus, LoadSeries};

/// The last changes of this node's decisions, newest last.
#[derive(Debug)]
pub struct Timeline {
    entries: VecDeque<(Change, f64)>,
    capacity: usize,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline::new(Timeline::CAPACITY)
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn answer(a: &Answer) -> AnswerStatus {
    AnswerStatus {
        chosen: a.chosen.iter().map(ToString::to_string).collect(),
        answers: a.addresses.clone(),
        degraded: a.degraded,
    }
}

impl Timeline {
    /// How many changes a node keeps by default.
    pub const CAPACITY: usize = 300;

    /// A timeline keeping the last `capacity` changes.
    pub fn new(capacity: usize) -> Self {
        Timeline {
            entries: VecDeque::with_capacity(capacity.min(64)),
            capacity: capacity.max(1),
        }
    }

    /// Records changes the core decided at their `at`, `now` being the node's timeline now
    /// and `wall` the wall clock now (the timeline's times are wall-clock times).
    pub fn record(&mut self, changes: Vec<Change>, now: Timestamp, wall: SystemTime) {
        let unix = wall
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        for c in changes {
            let at = unix - now.saturating_since(c.at).as_secs_f64();
            if self.entries.len() >= self.capacity {
                self.entries.pop_front();
            }
            self.entries.push_back((c, round3(at)));
        }
    }

    /// How many changes are kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The changes as the status document shows them, newest first.
    pub fn statuses(&self, now: Timestamp) -> Vec<ChangeStatus> {
        self.entries
            .iter()
            .rev()
            .map(|(c, at)| ChangeStatus {
                at: *at,
                ago_s: round3(now.saturating_since(c.at).as_secs_f64()),
                service: c.service.to_string(),
                region: c.region.as_ref().map(ToString::to_string),
                from: c.from.as_ref().map(answer),
                to: answer(&c.to),
                why: c.why.clone(),
                cause: c.reason.cause.to_string(),
                subject: c.reason.subject.as_ref().map(ToString::to_string),
            })
            .collect()
    }
}

/// Which load a series follows: a service's candidate (a farm or a server) at this node's
/// tier, or a server of a farm (`farm` set) as that farm's summary shows it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SeriesKey {
    /// The service.
    pub service: String,
    /// The farm the server belongs to, for a farm's server seen through its summary.
    pub farm: Option<String>,
    /// The candidate.
    pub id: String,
    /// `farm` or `server`.
    pub kind: String,
}

/// The load of each candidate over the last minutes, sampled every [`LoadHistory::EVERY`].
#[derive(Debug, Default)]
pub struct LoadHistory {
    series: BTreeMap<SeriesKey, VecDeque<(Timestamp, f64)>>,
    last: Option<Timestamp>,
}

impl LoadHistory {
    /// How often a load is sampled.
    pub const EVERY: Duration = Duration::from_secs(1);
    /// How many samples a series keeps (three minutes).
    pub const KEEP: usize = 180;
    /// How many series are kept: a very large topology charts the first ones its node
    /// samples (services in name order, each one's candidates, then their farms' servers).
    pub const MAX_SERIES: usize = 256;

    /// Whether a sample is due at `now`.
    pub fn due(&self, now: Timestamp) -> bool {
        self.last
            .is_none_or(|l| now.saturating_since(l) >= Self::EVERY)
    }

    /// Records one sample of each series at `now` (load as a fraction of capacity; `None`:
    /// no reading, a gap in the chart). Samples older than the window go, and with them
    /// series that are no longer sampled.
    pub fn sample(
        &mut self,
        now: Timestamp,
        loads: impl IntoIterator<Item = (SeriesKey, Option<f64>)>,
    ) {
        self.last = Some(now);
        for (key, load) in loads {
            let Some(load) = load.filter(|l| l.is_finite()) else {
                continue;
            };
            if !self.series.contains_key(&key) && self.series.len() >= Self::MAX_SERIES {
                continue;
            }
            let s = self.series.entry(key).or_default();
            if s.len() >= Self::KEEP {
                s.pop_front();
            }
            s.push_back((now, load));
        }
        let window = Self::EVERY * Self::KEEP as u32;
        self.series.retain(|_, s| {
            while s
                .front()
                .is_some_and(|(at, _)| now.saturating_since(*at) > window)
            {
                s.pop_front();
            }
            !s.is_empty()
        });
    }

    /// The series as the status document shows them: points `[seconds ago, load %]`,
    /// oldest first.
    pub fn statuses(&self, now: Timestamp) -> Vec<LoadSeries> {
        self.series
            .iter()
            .map(|(k, s)| LoadSeries {
                service: k.service.clone(),
                farm: k.farm.clone(),
                id: k.id.clone(),
                kind: k.kind.clone(),
                points: s
                    .iter()
                    .map(|(at, load)| {
                        [
                            round3(now.saturating_since(*at).as_secs_f64()),
                            (load * 1000.0).round() / 10.0,
                        ]
                    })
                    .collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use fedlb_core::{Cause, Reason};

    use super::*;

    fn change(at_ms: u64, to: &str) -> Change {
        Change {
            service: "www".into(),
            region: None,
            at: Timestamp::from_millis(at_ms),
            from: None,
            to: Answer {
                chosen: vec![to.into()],
                addresses: Vec::new(),
                degraded: false,
            },
            why: format!("{to}: because"),
            reason: Reason {
                cause: Cause::Health,
                subject: None,
            },
        }
    }

    #[test]
    fn the_timeline_keeps_the_latest_changes_newest_first_with_wall_clock_times() {
        let mut t = Timeline::new(3);
        let wall = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let now = Timestamp::from_millis(10_000);
        t.record(
            (0..5).map(|i| change(i * 1000, &format!("s{i}"))).collect(),
            now,
            wall,
        );
        let s = t.statuses(now);
        let to: Vec<&str> = s.iter().map(|c| c.to.chosen[0].as_str()).collect();
        assert_eq!(to, ["s4", "s3", "s2"]);
        assert_eq!(s[0].ago_s, 6.0);
        assert_eq!(s[0].at, 1_000_000.0 - 6.0);
        assert_eq!(s[0].cause, "health");
    }

    fn key(id: &str) -> SeriesKey {
        SeriesKey {
            service: "www".into(),
            farm: None,
            id: id.into(),
            kind: "server".into(),
        }
    }

    #[test]
    fn the_load_history_is_bounded_and_forgets_what_is_no_longer_sampled() {
        let mut h = LoadHistory::default();
        let secs = |s: u64| Timestamp::from_millis(s * 1000);
        for s in 0..1000 {
            assert!(h.due(secs(s)));
            let gone = (s < 10).then(|| (key("gone"), Some(0.5)));
            h.sample(
                secs(s),
                [(key("a"), Some(0.25)), (key("b"), None)]
                    .into_iter()
                    .chain(gone),
            );
            assert!(!h.due(secs(s) + Duration::from_millis(500)));
        }
        let st = h.statuses(secs(999));
        assert_eq!(st.len(), 1, "b has no reading, gone left the window");
        assert_eq!(st[0].points.len(), LoadHistory::KEEP);
        assert_eq!(st[0].points.last().unwrap(), &[0.0, 25.0]);
        assert_eq!(st[0].points[0][0], (LoadHistory::KEEP - 1) as f64);

        let mut many = LoadHistory::default();
        many.sample(
            secs(0),
            (0..1000).map(|i| (key(&format!("s{i:04}")), Some(0.1))),
        );
        assert_eq!(many.statuses(secs(0)).len(), LoadHistory::MAX_SERIES);
    }
}
