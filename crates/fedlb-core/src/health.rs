//! Health state machines: rise/fall thresholds per probe, and liveness (stale, then down)
//! per reporter.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::candidate::Health;
use crate::time::Timestamp;

/// Rise/fall thresholds of one probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Consecutive successes that turn a down probe up.
    pub rise: u32,
    /// Consecutive failures that turn an up probe down.
    pub fall: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { rise: 2, fall: 2 }
    }
}

/// The up/down state of one probe, with rise/fall hysteresis.
///
/// The first result decides at once (there is nothing to smooth yet); after that a change
/// needs `rise` consecutive successes or `fall` consecutive failures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeHealth {
    thresholds: Thresholds,
    state: Health,
    /// Consecutive results that disagree with `state`.
    streak: u32,
}

impl ProbeHealth {
    /// A probe with no result yet.
    pub fn new(thresholds: Thresholds) -> Self {
        ProbeHealth {
            thresholds,
            state: Health::Unknown,
            streak: 0,
        }
    }

    /// The current state: `Unknown`, `Up` or `Down`.
    pub fn state(&self) -> Health {
        self.state
    }

    /// Changes the thresholds, keeping the state.
    pub fn set_thresholds(&mut self, thresholds: Thresholds) {
        self.thresholds = thresholds;
    }

    /// A failure that needs no fall count (a confirmed crash): down at once.
    pub fn force_down(&mut self) {
        self.state = Health::Down;
        self.streak = 0;
    }

    /// Records one probe result; returns true if the state changed.
    pub fn observe(&mut self, ok: bool) -> bool {
        let target = if ok { Health::Up } else { Health::Down };
        if self.state == Health::Unknown {
            self.state = target;
            self.streak = 0;
            return true;
        }
        if self.state == target {
            self.streak = 0;
            return false;
        }
        self.streak += 1;
        let needed = if ok {
            self.thresholds.rise
        } else {
            self.thresholds.fall
        };
        if self.streak >= needed.max(1) {
            self.state = target;
            self.streak = 0;
            true
        } else {
            false
        }
    }
}

/// When a silent reporter becomes stale, then down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Liveness {
    /// No report for this long: stale (not chosen).
    pub stale_after: Duration,
    /// No report for this long: down.
    pub down_after: Duration,
}

impl Liveness {
    /// The usual rule: stale after `k` missed heartbeats, down after `2k`.
    pub fn from_heartbeat(interval: Duration, k: u32) -> Self {
        Liveness {
            stale_after: interval * k,
            down_after: interval * (2 * k),
        }
    }

    /// What a reporter last heard at `last` with health `reported` is at `now`.
    pub fn health_at(&self, reported: Health, last: Timestamp, now: Timestamp) -> Health {
        let silent = now - last;
        if silent >= self.down_after {
            Health::Down
        } else if silent >= self.stale_after && reported != Health::Down {
            Health::Stale
        } else {
            reported
        }
    }

    /// The next moment the answer of [`Liveness::health_at`] can change without a new report.
    pub fn next_change(&self, last: Timestamp, now: Timestamp) -> Option<Timestamp> {
        [last + self.stale_after, last + self.down_after]
            .into_iter()
            .find(|t| *t > now)
    }
}

/// The longest default interval between a farm node's summaries when nothing changes.
///
/// Why shorter than the reports' heartbeat (1 s by default): the global node notices a dead
/// farm node only by its silence, after `missed` intervals (3). At 1 s that took 2.4 s (the
/// median over random phases of death) while every server of the farm was healthy; at
/// 400 ms it takes about 1 s (at most 1.2 s), within the 1.5 s an operator expects of a
/// failover. Summaries are small (one per service, a few hundred bytes) and there is one
/// sender per farm node, against hundreds of reporters per farm: 2.5 summaries a second
/// cost the global node 2.5× what 1 a second did, which the global-scale benchmark puts at
/// about 160 µs of CPU each, that is 0.04 % of a core per farm and service.
pub const SUMMARY_INTERVAL_CAP: Duration = Duration::from_millis(400);

/// The default interval between a farm node's idle summaries, given its reports'
/// heartbeat interval: the same, at most [`SUMMARY_INTERVAL_CAP`]. A summary still goes at
/// once on every change of the farm's answer or health.
pub fn summary_interval(report_interval: Duration) -> Duration {
    report_interval.min(SUMMARY_INTERVAL_CAP)
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness::from_heartbeat(Duration::from_secs(1), 3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(rise: u32, fall: u32) -> ProbeHealth {
        ProbeHealth::new(Thresholds { rise, fall })
    }

    #[test]
    fn first_result_decides() {
        let mut p = probe(3, 3);
        assert_eq!(p.state(), Health::Unknown);
        assert!(p.observe(true));
        assert_eq!(p.state(), Health::Up);
        let mut p = probe(3, 3);
        assert!(p.observe(false));
        assert_eq!(p.state(), Health::Down);
    }

    #[test]
    fn up_to_down_needs_fall_consecutive_failures() {
        let mut p = probe(2, 3);
        p.observe(true);
        assert!(!p.observe(false));
        assert!(!p.observe(false));
        assert_eq!(p.state(), Health::Up);
        assert!(p.observe(false));
        assert_eq!(p.state(), Health::Down);
    }

    #[test]
    fn down_to_up_needs_rise_consecutive_successes() {
        let mut p = probe(2, 1);
        p.observe(false);
        assert!(!p.observe(true));
        assert!(p.observe(true));
        assert_eq!(p.state(), Health::Up);
    }

    #[test]
    fn an_interrupted_streak_starts_over() {
        let mut p = probe(2, 2);
        p.observe(true);
        p.observe(false);
        p.observe(true); // streak broken
        p.observe(false);
        assert_eq!(p.state(), Health::Up);
        p.observe(false);
        assert_eq!(p.state(), Health::Down);
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        let mut p = probe(0, 0);
        p.observe(true);
        assert!(p.observe(false));
        assert!(p.observe(true));
    }

    #[test]
    fn liveness_goes_stale_then_down() {
        let l = Liveness {
            stale_after: Duration::from_secs(3),
            down_after: Duration::from_secs(6),
        };
        let last = Timestamp::from_millis(1_000);
        let at = |ms| l.health_at(Health::Up, last, Timestamp::from_millis(ms));
        assert_eq!(at(3_999), Health::Up);
        assert_eq!(at(4_000), Health::Stale);
        assert_eq!(at(6_999), Health::Stale);
        assert_eq!(at(7_000), Health::Down);
        // a reporter that said down stays down while silent
        assert_eq!(
            l.health_at(Health::Down, last, Timestamp::from_millis(5_000)),
            Health::Down
        );
        assert_eq!(
            l.next_change(last, Timestamp::from_millis(2_000)),
            Some(Timestamp::from_millis(4_000))
        );
        assert_eq!(
            l.next_change(last, Timestamp::from_millis(4_000)),
            Some(Timestamp::from_millis(7_000))
        );
        assert_eq!(l.next_change(last, Timestamp::from_millis(7_000)), None);
    }
}
