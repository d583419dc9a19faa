//! Several global nodes, one shared DNS server: who writes an answer and who defers.
//!
//! Every global node receives every summary and decides alone, with no protocol between
//! global nodes and no consensus: identical inputs give identical answers (the random
//! policies draw from [`federation_seed`], the same on every node), and RFC 2136
//! compare-and-swap makes the DNS server order the writers. What remains is a
//! **partition**: a node cut off from a farm decides from a smaller view, and two nodes
//! writing their two views in turn would make the answer alternate. The rule that stops it
//! lives here, pure, and is carried out by the publishing shell:
//!
//! - next to each answer the writer leaves a [`Marker`] (a TXT record `_fedlb.<name>`):
//!   who wrote it, how many candidates (farms and direct servers) it heard for the service,
//!   and when (Unix seconds, the writer's clock);
//! - before writing, a node reads the marker and [`judge`]s: it writes over no marker, its
//!   own, a stale one (older than [`PeerRule::fresh_for`]: its writer is gone or cut off
//!   from the DNS server), or the marker of a node that hears strictly fewer candidates; it
//!   **defers** to a fresh marker whose writer hears more, or as many with a name that sorts
//!   first (a fixed order, so a tie never changes hands back and forth);
//! - the writer re-writes its marker every [`PeerRule::refresh_every`] (below `fresh_for`),
//!   so a live writer's marker never goes stale.
//!
//! Two nodes that read each other's fresh markers never both write ([`judge`] is
//! antisymmetric), so with fixed views the writer changes at most once and the answer
//! cannot alternate. Clocks are assumed within a few seconds of each other (NTP); a marker
//! "from the future" counts as fresh.

use std::fmt;
use std::time::Duration;

/// The seed of the global tier's random draws: a hash of the federation's name (the
/// topology name), the same on every global node and never depending on the node.
pub fn federation_seed(federation: &str) -> u64 {
    // FNV-1a, 64 bit: stable across versions and platforms (std's hasher is not)
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in federation.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// What the writer of an answer leaves next to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    /// The global node that wrote the answer.
    pub writer: String,
    /// How many candidates it heard from for the service when it wrote.
    pub heard: u32,
    /// When, in Unix seconds of the writer's clock.
    pub at: u64,
}

/// A marker's text could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("marker \"{text}\" is not `fedlb writer=<node> heard=<n> at=<unix seconds>`")]
pub struct MarkerError {
    /// The text read.
    pub text: String,
}

impl Marker {
    /// The marker as the TXT record's text: `fedlb writer=g1 heard=3 at=1790000000`.
    pub fn to_text(&self) -> String {
        format!(
            "fedlb writer={} heard={} at={}",
            self.writer, self.heard, self.at
        )
    }

    /// Reads [`Marker::to_text`]'s form back.
    pub fn parse(text: &str) -> Result<Marker, MarkerError> {
        let bad = || MarkerError {
            text: text.to_owned(),
        };
        let mut words = text.split_ascii_whitespace();
        if words.next() != Some("fedlb") {
            return Err(bad());
        }
        let (mut writer, mut heard, mut at) = (None, None, None);
        for w in words {
            match w.split_once('=') {
                Some(("writer", v)) if !v.is_empty() => writer = Some(v.to_owned()),
                Some(("heard", v)) => heard = Some(v.parse().map_err(|_| bad())?),
                Some(("at", v)) => at = Some(v.parse().map_err(|_| bad())?),
                _ => return Err(bad()),
            }
        }
        Ok(Marker {
            writer: writer.ok_or_else(bad)?,
            heard: heard.ok_or_else(bad)?,
            at: at.ok_or_else(bad)?,
        })
    }

    /// Its age at `now` (Unix seconds); zero for a marker from the future.
    pub fn age(&self, now: u64) -> Duration {
        Duration::from_secs(now.saturating_sub(self.at))
    }
}

/// How long a marker holds other writers back, and how often its writer renews it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerRule {
    /// A marker older than this no longer holds anyone back: its writer is dead or cannot
    /// reach the DNS server. This is how long a shared DNS server's answer can stay frozen
    /// after its writer dies.
    pub fresh_for: Duration,
    /// The writer renews its marker this often (well below `fresh_for`).
    pub refresh_every: Duration,
}

impl PeerRule {
    /// From the heartbeat's liveness: fresh for the time a silent reporter takes to be
    /// declared down (`2 × missed × interval`, 6 s by default) plus one interval, in whole
    /// seconds (a marker's time is in seconds), renewed every half of that (at least every
    /// second). A dead writer is replaced about as fast as a dead farm node.
    pub fn from_heartbeat(interval: Duration, missed: u32) -> Self {
        let fresh = (interval * (2 * missed.max(1) + 1)).as_secs_f64().ceil() as u64;
        let fresh = fresh.max(2);
        PeerRule {
            fresh_for: Duration::from_secs(fresh),
            refresh_every: Duration::from_secs((fresh / 2).max(1)),
        }
    }
}

/// Why a node writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// No marker yet (or one that could not be read).
    NoMarker,
    /// Its own marker.
    Own,
    /// The marker's writer has not renewed it for `age`.
    Stale {
        /// Who wrote it.
        writer: String,
        /// How old it is.
        age: Duration,
    },
    /// The marker's writer hears fewer candidates.
    HearsMore {
        /// Who wrote it.
        writer: String,
        /// How many it heard.
        theirs: u32,
        /// How many this node hears.
        mine: u32,
    },
    /// As many candidates, and this node's name sorts first.
    FirstByName {
        /// Who wrote it.
        writer: String,
    },
}

/// Why a node defers (leaves the shared answer as it is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Defer {
    /// A fresh marker's writer hears more candidates.
    PeerHearsMore {
        /// Who wrote it.
        writer: String,
        /// How many it heard.
        theirs: u32,
        /// How many this node hears.
        mine: u32,
    },
    /// A fresh marker's writer hears as many and its name sorts first.
    PeerFirstByName {
        /// Who wrote it.
        writer: String,
        /// How many both hear.
        heard: u32,
    },
}

/// What a node does with its answer for one name in a shared DNS server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Write the answer (and the node's marker).
    Write(Write),
    /// Leave the answer to the marker's writer.
    Defer(Defer),
}

impl Verdict {
    /// True for [`Verdict::Write`].
    pub fn writes(&self) -> bool {
        matches!(self, Verdict::Write(_))
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Write(Write::NoMarker) => write!(f, "writes: no other writer's marker"),
            Verdict::Write(Write::Own) => write!(f, "writes: the last writer was this node"),
            Verdict::Write(Write::Stale { writer, age }) => write!(
                f,
                "writes: {writer}'s marker is {}s old (stale)",
                age.as_secs()
            ),
            Verdict::Write(Write::HearsMore {
                writer,
                theirs,
                mine,
            }) => write!(
                f,
                "writes: hears {mine} candidates, {writer} heard {theirs}"
            ),
            Verdict::Write(Write::FirstByName { writer }) => write!(
                f,
                "writes: hears as many candidates as {writer} and sorts first by name"
            ),
            Verdict::Defer(Defer::PeerHearsMore {
                writer,
                theirs,
                mine,
            }) => write!(
                f,
                "defers to {writer}: it hears {theirs} candidates, this node {mine}"
            ),
            Verdict::Defer(Defer::PeerFirstByName { writer, heard }) => write!(
                f,
                "defers to {writer}: both hear {heard} candidates and {writer} sorts first by name"
            ),
        }
    }
}

/// Node `me`, hearing `heard` candidates for a service, finds `marker` next to the
/// service's answer at `now` (Unix seconds): does it write its own answer or defer?
pub fn judge(rule: &PeerRule, me: &str, heard: u32, marker: Option<&Marker>, now: u64) -> Verdict {
    let Some(m) = marker else {
        return Verdict::Write(Write::NoMarker);
    };
    if m.writer == me {
        return Verdict::Write(Write::Own);
    }
    let age = m.age(now);
    if age > rule.fresh_for {
        return Verdict::Write(Write::Stale {
            writer: m.writer.clone(),
            age,
        });
    }
    use std::cmp::Ordering::{Equal, Greater, Less};
    match heard.cmp(&m.heard) {
        Greater => Verdict::Write(Write::HearsMore {
            writer: m.writer.clone(),
            theirs: m.heard,
            mine: heard,
        }),
        Less => Verdict::Defer(Defer::PeerHearsMore {
            writer: m.writer.clone(),
            theirs: m.heard,
            mine: heard,
        }),
        Equal if me < m.writer.as_str() => Verdict::Write(Write::FirstByName {
            writer: m.writer.clone(),
        }),
        Equal => Verdict::Defer(Defer::PeerFirstByName {
            writer: m.writer.clone(),
            heard,
        }),
    }
}

/// True when `me`, the writer of `marker`, should renew it at `now` even though its
/// answer did not change (so that it never goes stale while `me` is alive).
pub fn needs_refresh(rule: &PeerRule, me: &str, marker: Option<&Marker>, now: u64) -> bool {
    match marker {
        Some(m) if m.writer == me => m.age(now) >= rule.refresh_every,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> PeerRule {
        PeerRule::from_heartbeat(Duration::from_secs(1), 3)
    }

    fn marker(writer: &str, heard: u32, at: u64) -> Marker {
        Marker {
            writer: writer.into(),
            heard,
            at,
        }
    }

    #[test]
    fn marker_text_round_trips_and_bad_text_is_named() {
        let m = marker("g-1", 3, 1_790_000_000);
        assert_eq!(m.to_text(), "fedlb writer=g-1 heard=3 at=1790000000");
        assert_eq!(Marker::parse(&m.to_text()), Ok(m));
        for bad in [
            "",
            "fedlb",
            "fedlb writer=g1 heard=x at=1",
            "fedlb writer= heard=1 at=1",
            "other writer=g1 heard=1 at=1",
            "fedlb writer=g1 heard=1 at=1 extra",
        ] {
            let e = Marker::parse(bad).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn defaults_follow_the_heartbeat() {
        let r = rule();
        assert_eq!(r.fresh_for, Duration::from_secs(7));
        assert!(r.refresh_every < r.fresh_for);
    }

    #[test]
    fn a_node_cut_off_from_a_farm_defers_to_one_that_hears_it() {
        let r = rule();
        let v = judge(&r, "a", 2, Some(&marker("b", 3, 100)), 102);
        assert_eq!(
            v,
            Verdict::Defer(Defer::PeerHearsMore {
                writer: "b".into(),
                theirs: 3,
                mine: 2
            })
        );
        assert_eq!(
            v.to_string(),
            "defers to b: it hears 3 candidates, this node 2"
        );
        // and the better informed node takes over from it
        assert!(judge(&r, "b", 3, Some(&marker("a", 2, 100)), 102).writes());
    }

    #[test]
    fn a_stale_marker_holds_no_one_back() {
        let r = rule();
        let m = marker("b", 9, 100);
        assert!(!judge(&r, "a", 1, Some(&m), 100 + 7).writes());
        assert_eq!(
            judge(&r, "a", 1, Some(&m), 100 + 8),
            Verdict::Write(Write::Stale {
                writer: "b".into(),
                age: Duration::from_secs(8)
            })
        );
    }

    #[test]
    fn a_tie_goes_to_the_name_that_sorts_first() {
        let r = rule();
        assert!(judge(&r, "a", 3, Some(&marker("b", 3, 100)), 100).writes());
        assert!(!judge(&r, "b", 3, Some(&marker("a", 3, 100)), 100).writes());
    }

    #[test]
    fn the_writer_renews_its_own_marker_only() {
        let r = rule();
        assert!(!needs_refresh(&r, "a", Some(&marker("a", 3, 100)), 101));
        assert!(needs_refresh(
            &r,
            "a",
            Some(&marker("a", 3, 100)),
            100 + r.refresh_every.as_secs()
        ));
        assert!(!needs_refresh(&r, "a", Some(&marker("b", 3, 0)), 1000));
        assert!(!needs_refresh(&r, "a", None, 1000));
    }

    #[test]
    fn the_seed_depends_on_the_federation_only() {
        assert_eq!(federation_seed("demo"), federation_seed("demo"));
        assert_ne!(federation_seed("demo"), federation_seed("ha"));
        // FNV-1a's published value for the empty input: the seed is stable across builds
        assert_eq!(federation_seed(""), 0xcbf2_9ce4_8422_2325);
    }
}
