//! TTL derivation: a resolver should not cache an answer longer than the answer can stay right.
//!
//! Like gdnsd, which limits the TTL of a monitored answer to the time until the next state change
//! could take effect: if the decision behind a name cannot change for the next 40 s (hysteresis
//! dwell), a TTL of 40 s costs nothing; if it could flip in 3 s, a longer TTL would keep clients
//! on the old answer after failover. The result is clamped to operator bounds.

use std::time::Duration;

use crate::Error;

/// Operator bounds for derived TTLs, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlBounds {
    min: u32,
    max: u32,
}

impl TtlBounds {
    /// Bounds `min..=max`; `min` must not exceed `max`.
    pub fn new(min: u32, max: u32) -> Result<Self, Error> {
        if min > max {
            return Err(Error::Config {
                what: "ttl bounds".into(),
                reason: format!("min {min} s is above max {max} s"),
            });
        }
        Ok(Self { min, max })
    }

    /// Lower bound.
    pub fn min(&self) -> u32 {
        self.min
    }

    /// Upper bound.
    pub fn max(&self) -> u32 {
        self.max
    }
}

/// The TTL for an answer whose decision could next change after `until_change` (`None`: no
/// change is pending or possible, e.g. a single candidate), rounded up to whole seconds and
/// clamped to `bounds`.
pub fn ttl_until_change(until_change: Option<Duration>, bounds: TtlBounds) -> u32 {
    let Some(until) = until_change else {
        return bounds.max;
    };
    let secs = until
        .as_secs()
        .saturating_add(u64::from(until.subsec_nanos() > 0));
    let secs = u32::try_from(secs).unwrap_or(u32::MAX);
    secs.clamp(bounds.min, bounds.max)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn examples() {
        let b = TtlBounds::new(5, 60).unwrap();
        assert_eq!(ttl_until_change(None, b), 60);
        assert_eq!(ttl_until_change(Some(Duration::ZERO), b), 5);
        assert_eq!(ttl_until_change(Some(Duration::from_millis(12_001)), b), 13);
        assert_eq!(ttl_until_change(Some(Duration::from_secs(40)), b), 40);
        assert_eq!(ttl_until_change(Some(Duration::from_secs(3600)), b), 60);
        assert_eq!(ttl_until_change(Some(Duration::MAX), b), 60);
        assert!(TtlBounds::new(61, 60).is_err());
    }

    proptest! {
        #[test]
        fn within_bounds_and_monotone(min in 0u32..100, span in 0u32..1000, a in any::<u64>(), b in any::<u64>()) {
            let bounds = TtlBounds::new(min, min + span).unwrap();
            let (lo, hi) = (a.min(b), a.max(b));
            let t_lo = ttl_until_change(Some(Duration::from_millis(lo)), bounds);
            let t_hi = ttl_until_change(Some(Duration::from_millis(hi)), bounds);
            prop_assert!(t_lo >= bounds.min() && t_hi <= bounds.max());
            prop_assert!(t_lo <= t_hi);
            prop_assert!(t_hi <= ttl_until_change(None, bounds));
            // never cached longer than the answer can stay right, unless the floor says so
            prop_assert!(u64::from(t_lo) * 1000 < lo + 1000 || t_lo == bounds.min());
        }
    }
}
