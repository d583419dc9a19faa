//! The TTL of a published answer: a resolver should not cache an answer longer than the
//! answer can stay right.
//!
//! Like gdnsd, which limits the TTL of a monitored answer to the time until the next state
//! change could take effect: if the decision behind a name cannot change for the next 40 s
//! (a challenger's dwell), a TTL of 40 s costs nothing; if it could flip in 3 s, a longer
//! TTL would keep clients on the old answer after failover. The result is clamped to the
//! operator's bounds. Fixed TTLs are the same rule with derivation off.

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
        }
    }

    /// The time until the answer could next change, between `min` and `max`.
    pub const fn derived(min: Duration, max: Duration) -> Self {
        TtlRule {
            max,
            min,
            derive: true,
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

    proptest! {
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
