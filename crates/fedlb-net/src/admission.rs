//! Who may start a QUIC handshake, and how often a refusal may be logged.
//!
//! Pure bookkeeping: no sockets, no clock (every `now` is an argument), so the rules are
//! tested by advancing time by hand. The server shell asks [`Admission::admit`] for each
//! incoming handshake whose source address QUIC has already validated (by a Retry round
//! trip), and [`LogGate::allow`] before each refusal line.
//!
//! A source is an IPv4 address or an IPv6 /64 (one host or site usually owns a whole /64,
//! so counting single IPv6 addresses would let one host pass as many sources).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Per-source handshake limits.
#[derive(Clone, Debug, PartialEq)]
pub struct AdmissionLimits {
    /// Handshakes one source may have in progress at once.
    pub per_source_in_flight: u32,
    /// Sustained handshakes per second one source may start (token-bucket refill rate).
    pub per_source_rate: f64,
    /// Handshakes one source may start in a burst (token-bucket size).
    pub per_source_burst: u32,
    /// A handshake not finished within this long is abandoned and its slot freed.
    pub handshake_timeout: Duration,
    /// At most one refusal line per source (and one for the global limit) per this long;
    /// the next line says how many refusals it stood for.
    pub log_interval: Duration,
    /// Sources tracked at once; beyond this (after forgetting idle ones) a new source is
    /// refused, so the table cannot grow without bound.
    pub max_sources: usize,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        AdmissionLimits {
            per_source_in_flight: 16,
            per_source_rate: 16.0,
            per_source_burst: 64,
            handshake_timeout: Duration::from_secs(5),
            log_interval: Duration::from_secs(10),
            max_sources: 1 << 16,
        }
    }
}

/// The source a handshake is counted against: the IPv4 address, or the IPv6 /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source(IpAddr);

impl Source {
    /// The source of a peer at `ip` (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    Source(IpAddr::V6(Ipv6Addr::new(
                        s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                    )))
                }
            },
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// Why a handshake was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The source has used up its burst and refill.
    OverRate,
    /// The source already has its maximum of handshakes in progress.
    OverInFlight,
    /// The table of sources is full.
    TooManySources,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::OverRate => "source over its handshake rate",
            Refusal::OverInFlight => "source has too many handshakes in progress",
            Refusal::TooManySources => "too many sources handshaking",
        })
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    in_flight: u32,
}

impl Bucket {
    fn refill(&mut self, limits: &AdmissionLimits, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limits.per_source_rate)
            .min(f64::from(limits.per_source_burst));
        self.updated = now;
    }

    fn idle(&self, limits: &AdmissionLimits, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.in_flight == 0
            && self.tokens + elapsed * limits.per_source_rate >= f64::from(limits.per_source_burst)
    }
}

/// Token bucket and in-flight count per source.
#[derive(Debug)]
pub struct Admission {
    limits: AdmissionLimits,
    sources: HashMap<Source, Bucket>,
}

impl Admission {
    /// No source has been seen yet.
    pub fn new(limits: AdmissionLimits) -> Self {
        Admission {
            limits,
            sources: HashMap::new(),
        }
    }

    /// Admits one handshake from `source` at `now`, counting it in flight until
    /// [`Admission::finished`] is called for it, or says why not.
    pub fn admit(&mut self, source: Source, now: Instant) -> Result<(), Refusal> {
        if !self.sources.contains_key(&source) && self.sources.len() >= self.limits.max_sources {
            let limits = &self.limits;
            self.sources.retain(|_, b| !b.idle(limits, now));
            if self.sources.len() >= self.limits.max_sources {
                return Err(Refusal::TooManySources);
            }
        }
        let burst = f64::from(self.limits.per_source_burst);
        let bucket = self.sources.entry(source).or_insert(Bucket {
            tokens: burst,
            updated: now,
            in_flight: 0,
        });
        bucket.refill(&self.limits, now);
        if bucket.in_flight >= self.limits.per_source_in_flight {
            return Err(Refusal::OverInFlight);
        }
        if bucket.tokens < 1.0 {
            return Err(Refusal::OverRate);
        }
        bucket.tokens -= 1.0;
        bucket.in_flight += 1;
        Ok(())
    }

    /// A handshake admitted for `source` has ended (either way).
    pub fn finished(&mut self, source: Source) {
        if let Some(b) = self.sources.get_mut(&source) {
            b.in_flight = b.in_flight.saturating_sub(1);
        }
    }

    /// Handshakes in progress for `source`.
    #[cfg(test)]
    pub fn in_flight(&self, source: Source) -> u32 {
        self.sources.get(&source).map_or(0, |b| b.in_flight)
    }

    /// Sources currently tracked.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.sources.len()
    }
}

/// Lets one log line through per key per interval and counts the ones it held back.
#[derive(Debug)]
pub struct LogGate<K> {
    interval: Duration,
    max_keys: usize,
    last: HashMap<K, (Instant, u64)>,
}

impl<K: Eq + Hash> LogGate<K> {
    /// At most one line per key per `interval`; remembers at most `max_keys` keys (the
    /// oldest are forgotten first, which at worst lets one extra line through).
    pub fn new(interval: Duration, max_keys: usize) -> Self {
        LogGate {
            interval,
            max_keys: max_keys.max(1),
            last: HashMap::new(),
        }
    }

    /// Whether a line for `key` may be written at `now`; if so, how many lines for it were
    /// held back since the last one written.
    pub fn allow(&mut self, key: K, now: Instant) -> Option<u64> {
        if let Some((at, held)) = self.last.get_mut(&key) {
            if now.saturating_duration_since(*at) < self.interval {
                *held += 1;
                return None;
            }
            let n = *held;
            *at = now;
            *held = 0;
            return Some(n);
        }
        if self.last.len() >= self.max_keys {
            let interval = self.interval;
            self.last
                .retain(|_, (at, _)| now.saturating_duration_since(*at) < interval);
            if self.last.len() >= self.max_keys {
                // Every key is recent: a flood from very many sources. Forget them all
                // rather than grow; a few extra lines are the price.
                self.last.clear();
            }
        }
        self.last.insert(key, (now, 0));
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> AdmissionLimits {
        AdmissionLimits {
            per_source_in_flight: 3,
            per_source_rate: 2.0,
            per_source_burst: 4,
            max_sources: 2,
            ..AdmissionLimits::default()
        }
    }

    fn src(s: &str) -> Source {
        Source::of(s.parse().unwrap())
    }

    #[test]
    fn a_source_gets_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut a = Admission::new(AdmissionLimits {
            per_source_in_flight: 100,
            ..limits()
        });
        let s = src("127.0.0.1");
        for _ in 0..4 {
            a.admit(s, t0).unwrap();
            a.finished(s);
        }
        assert_eq!(a.admit(s, t0), Err(Refusal::OverRate));
        // 2 per second: one more after half a second, not before.
        assert_eq!(
            a.admit(s, t0 + Duration::from_millis(400)),
            Err(Refusal::OverRate)
        );
        a.admit(s, t0 + Duration::from_millis(500)).unwrap();
        assert_eq!(
            a.admit(s, t0 + Duration::from_millis(500)),
            Err(Refusal::OverRate)
        );
        // Another source is not affected.
        a.admit(src("127.0.0.2"), t0).unwrap();
    }

    #[test]
    fn in_flight_is_capped_per_source_and_freed_when_finished() {
        let t0 = Instant::now();
        let mut a = Admission::new(limits());
        let s = src("10.0.0.1");
        for _ in 0..3 {
            a.admit(s, t0).unwrap();
        }
        assert_eq!(a.in_flight(s), 3);
        assert_eq!(a.admit(s, t0), Err(Refusal::OverInFlight));
        a.finished(s);
        a.admit(s, t0).unwrap();
    }

    #[test]
    fn idle_sources_are_forgotten_when_the_table_is_full() {
        let t0 = Instant::now();
        let mut a = Admission::new(limits());
        a.admit(src("10.0.0.1"), t0).unwrap();
        a.finished(src("10.0.0.1"));
        a.admit(src("10.0.0.2"), t0).unwrap();
        // Full, and neither is idle yet (10.0.0.1's bucket is not full again; .2 in flight).
        assert_eq!(a.admit(src("10.0.0.3"), t0), Err(Refusal::TooManySources));
        // After its bucket refilled, 10.0.0.1 is idle and makes room.
        a.admit(src("10.0.0.3"), t0 + Duration::from_secs(1))
            .unwrap();
        assert_eq!(a.tracked(), 2);
    }

    #[test]
    fn ipv6_sources_are_64_prefixes_and_mapped_ipv4_is_ipv4() {
        assert_eq!(src("2001:db8:1:2::1"), src("2001:db8:1:2:ffff::9"));
        assert_ne!(src("2001:db8:1:2::1"), src("2001:db8:1:3::1"));
        assert_eq!(src("::ffff:127.0.0.1"), src("127.0.0.1"));
        assert_eq!(src("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn log_gate_lets_one_line_per_key_per_interval_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut g = LogGate::new(Duration::from_secs(10), 100);
        assert_eq!(g.allow("a", t0), Some(0));
        for i in 1..=5 {
            assert_eq!(g.allow("a", t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(g.allow("b", t0), Some(0));
        assert_eq!(g.allow("a", t0 + Duration::from_secs(10)), Some(5));
        assert_eq!(g.allow("a", t0 + Duration::from_secs(11)), None);
    }

    #[test]
    fn log_gate_stays_bounded() {
        let t0 = Instant::now();
        let mut g = LogGate::new(Duration::from_secs(10), 3);
        for k in 0..10 {
            assert_eq!(g.allow(k, t0), Some(0));
            assert!(g.last.len() <= 3);
        }
    }
}
