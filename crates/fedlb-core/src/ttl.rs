//! The TTL of a published answer: a resolver should not cache an answer longer than the
//! answer can stay right.
//!
//! Like gdnsd, which limits the TTL of a monitored answer to the time until the next state
//! change could take effect: if the decision behind a name cannot change for the next 40 s
//! (a challenger's dwell), a TTL of 40 s costs nothing; if it could flip in 3 s, a longer
//! TTL would keep clients on the old answer after failover. The result is clamped to the
//! operator's bounds. Fixed TTLs are the same rule with derivation off.
//!
//! **TTL by load** (Colajanni, Yu and Dias, TPDS 1998): an answer is cached by every resolver
//! that asks during its TTL, so an answer that sends clients to a small or busy member should
//! be short-lived, and one that sends them where there is most room may last. With
//! [`TtlRule::by_load`], the TTL is `ttl × h` (bounded by `ttl_min` and `ttl`), `h` being the
//! answer's relative headroom ([`crate::Decision::headroom`]: its members' headroom, weighted
//! by their shares, over the largest headroom of any healthy candidate). With `derive` too,
//! the shorter of the two wins.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// How one service's TTL is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtlRule {
    /// The TTL, and the upper bound of a derived one.
    pub max: Duration,
    /// The lower bound of a derived TTL (capped at `max`).
    pub min: Duration,
    /// Derive the TTL from the time until the answer could next change.
    pub derive: bool,
    /// Scale the TTL by the answer's relative headroom (see the module's doc).
    #[serde(default)]
    pub by_load: bool,
}

impl Default for TtlRule {
    /// A fixed 30 s, the topology's default.
    fn default() -> Self {
        TtlRule::fixed(Duration::from_secs(30))
    }
}

impl TtlRule {
    /// Always `ttl`.
    pub const fn fixed(ttl: Duration) -> Self {
        TtlRule {
            max: ttl,
            min: ttl,
            derive: false,
            by_load: false,
        }
    }

    /// The time until the answer could next change, between `min` and `max`.
    pub const fn derived(min: Duration, max: Duration) -> Self {
        TtlRule {
            max,
            min,
            derive: true,
            by_load: false,
        }
    }

    /// The same rule, with the TTL scaled by load between `min` and `max`.
    pub const fn with_load(mut self, min: Duration) -> Self {
        self.by_load = true;
        self.min = min;
        self
    }

    /// Whether a TTL moved enough since the one published to publish again. Only a TTL by
    /// load moves on its own (with every reading); it is republished when it moved by a
    /// fifth or more, so that readings do not turn into a stream of updates.
    pub fn moved(&self, published: u32, now: u32) -> bool {
        if !self.by_load {
            return published != now;
        }
        published.abs_diff(now) >= (published.max(now) / 5).max(1)
    }

    /// The TTL of an answer published at `now` whose decision could next change at
    /// `next_change` and whose relative headroom is `headroom` (see
    /// [`crate::Decision::headroom`]; `None`: unknown, as for a fail-static answer, which
    /// keeps the TTL without load).
    pub fn ttl_for(
        &self,
        next_change: Option<Timestamp>,
        headroom: Option<f64>,
        now: Timestamp,
    ) -> u32 {
        let ttl = self.ttl(next_change, now);
        match (self.by_load, headroom) {
            (true, Some(h)) => {
                let max = secs(self.max);
                let min = secs(self.min).min(max);
                ttl.min(ttl_by_headroom(h, min, max))
            }
            _ => ttl,
        }
    }

    /// The TTL in whole seconds of an answer published at `now` whose decision could next
    /// change at `next_change` (`None`: only a health change can change it).
    pub fn ttl(&self, next_change: Option<Timestamp>, now: Timestamp) -> u32 {
        let max = secs(self.max);
        if !self.derive {
            return max;
        }
        let until = next_change.map(|at| at.saturating_since(now));
        ttl_until_change(until, secs(self.min).min(max), max)
    }
}

/// Whole seconds, saturating.
fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// The TTL for an answer whose decision could next change after `until_change` (`None`:
/// no change is pending), rounded up to whole seconds and clamped to `min..=max`.
pub fn ttl_until_change(until_change: Option<Duration>, min: u32, max: u32) -> u32 {
    let Some(until) = until_change else {
        return max;
    };
    let secs = until
        .as_secs()
        .saturating_add(u64::from(until.subsec_nanos() > 0));
    let secs = u32::try_from(secs).unwrap_or(u32::MAX);
    secs.clamp(min.min(max), max)
}

/// `max × headroom` in whole seconds (rounded up), clamped to `min..=max`.
pub fn ttl_by_headroom(headroom: f64, min: u32, max: u32) -> u32 {
    let h = if headroom.is_finite() {
        headroom.clamp(0.0, 1.0)
    } else {
        1.0
    };
    let secs = (f64::from(max) * h).ceil() as u32;
    secs.clamp(min.min(max), max)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn examples() {
        assert_eq!(ttl_until_change(None, 5, 60), 60);
        assert_eq!(ttl_until_change(Some(Duration::ZERO), 5, 60), 5);
        assert_eq!(
            ttl_until_change(Some(Duration::from_millis(12_001)), 5, 60),
            13
        );
        assert_eq!(ttl_until_change(Some(Duration::from_secs(40)), 5, 60), 40);
        assert_eq!(ttl_until_change(Some(Duration::from_secs(3600)), 5, 60), 60);
        assert_eq!(ttl_until_change(Some(Duration::MAX), 5, 60), 60);
        assert_eq!(
            ttl_until_change(Some(Duration::ZERO), 90, 60),
            60,
            "min above max"
        );
    }

    #[test]
    fn rules() {
        let now = Timestamp::from_millis(10_000);
        let fixed = TtlRule::fixed(Duration::from_secs(30));
        assert_eq!(fixed.ttl(Some(Timestamp::from_millis(11_000)), now), 30);
        let derived = TtlRule::derived(Duration::from_secs(5), Duration::from_secs(60));
        assert_eq!(derived.ttl(None, now), 60);
        assert_eq!(derived.ttl(Some(Timestamp::from_millis(22_500)), now), 13);
        assert_eq!(
            derived.ttl(Some(Timestamp::from_millis(9_000)), now),
            5,
            "past"
        );
    }

    #[test]
    fn by_load() {
        let now = Timestamp::from_millis(10_000);
        let rule = TtlRule::fixed(Duration::from_secs(60)).with_load(Duration::from_secs(5));
        assert_eq!(rule.ttl_for(None, Some(1.0), now), 60);
        assert_eq!(rule.ttl_for(None, Some(0.5), now), 30);
        assert_eq!(rule.ttl_for(None, Some(0.01), now), 5, "bounded by ttl_min");
        assert_eq!(
            rule.ttl_for(None, None, now),
            60,
            "fail-static: no load known"
        );
        let both = TtlRule::derived(Duration::from_secs(5), Duration::from_secs(60))
            .with_load(Duration::from_secs(5));
        let soon = Some(Timestamp::from_millis(20_000));
        assert_eq!(
            both.ttl_for(soon, Some(0.9), now),
            10,
            "the shorter of the two"
        );
        assert_eq!(both.ttl_for(soon, Some(0.1), now), 6);
        let plain = TtlRule::fixed(Duration::from_secs(30));
        assert_eq!(plain.ttl_for(None, Some(0.1), now), 30, "off by default");
        assert!(rule.moved(60, 30) && !rule.moved(60, 55) && !rule.moved(5, 5));
        assert!(rule.moved(5, 6), "a second is always enough at the bottom");
        assert!(plain.moved(30, 20));
    }

    proptest! {
        #[test]
        fn by_headroom_within_bounds_and_monotone(min in 0u32..100, span in 0u32..1000, a in 0.0f64..=1.0, b in 0.0f64..=1.0) {
            let max = min + span;
            let (lo, hi) = (a.min(b), a.max(b));
            let (t_lo, t_hi) = (ttl_by_headroom(lo, min, max), ttl_by_headroom(hi, min, max));
            prop_assert!(t_lo >= min && t_hi <= max && t_lo <= t_hi);
            prop_assert_eq!(ttl_by_headroom(1.0, min, max), max);
        }

        #[test]
        fn within_bounds_and_monotone(min in 0u32..100, span in 0u32..1000, a in any::<u64>(), b in any::<u64>()) {
            let max = min + span;
            let (lo, hi) = (a.min(b), a.max(b));
            let t_lo = ttl_until_change(Some(Duration::from_millis(lo)), min, max);
            let t_hi = ttl_until_change(Some(Duration::from_millis(hi)), min, max);
            prop_assert!(t_lo >= min && t_hi <= max);
            prop_assert!(t_lo <= t_hi);
            prop_assert!(t_hi <= ttl_until_change(None, min, max));
            // never cached longer than the answer can stay right, unless the floor says so
            prop_assert!(u64::from(t_lo) * 1000 < lo + 1000 || t_lo == min);
        }
    }
}
