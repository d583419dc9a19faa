//! What a publish or reconcile pass did, counters per target, and the retry backoff.

use std::{collections::BTreeMap, time::Duration};

use serde::Serialize;
use tokio::time::Instant;

use crate::{Error, FailureClass, Name, PrimaryView, PublisherKind};

/// Outcome of one pass for one target (a primary DNS server, a file, a command).
#[derive(Debug)]
pub enum Status {
    /// The target already held the desired answers: nothing was sent.
    InSync,
    /// Changes were written (for DNS: in one UPDATE, plus one more per compare-and-swap
    /// conflict that was resolved by re-reading).
    Updated {
        /// Number of RRset changes (or, for file/command, of changed RRsets).
        changes: usize,
        /// Compare-and-swap conflicts met on the way.
        conflicts: u32,
    },
    /// The target failed recently; the next attempt waits until then.
    Deferred {
        /// When the next attempt is due.
        until: Instant,
    },
    /// The pass failed for this target.
    Failed(Error),
}

/// Report of one target.
#[derive(Debug)]
pub struct TargetReport {
    /// The target: a server address, a file path or a command.
    pub target: String,
    /// What happened.
    pub status: Status,
}

/// Report of one publish or reconcile pass.
#[derive(Debug, Default)]
pub struct PublishReport {
    /// Names refused before anything was sent (empty answers, names outside the zone).
    pub refused: Vec<Error>,
    /// One entry per target, in configuration order.
    pub targets: Vec<TargetReport>,
}

impl PublishReport {
    /// Every error of the pass: refusals first, then failed targets.
    pub fn errors(&self) -> impl Iterator<Item = &Error> {
        self.refused
            .iter()
            .chain(self.targets.iter().filter_map(|t| match &t.status {
                Status::Failed(e) => Some(e),
                _ => None,
            }))
    }

    /// True when nothing was refused and no target failed or was deferred.
    pub fn is_ok(&self) -> bool {
        self.errors().next().is_none()
            && self
                .targets
                .iter()
                .all(|t| !matches!(t.status, Status::Deferred { .. }))
    }

    /// Total RRset changes written over all targets.
    pub fn changes(&self) -> usize {
        self.targets
            .iter()
            .map(|t| match t.status {
                Status::Updated { changes, .. } => changes,
                _ => 0,
            })
            .sum()
    }
}

/// What one pass of [`run`](crate::run) left behind, for the caller's status and metrics:
/// one entry per published name, never the whole zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassOutcome {
    /// The publisher.
    pub publisher: PublisherKind,
    /// RRset changes written in the pass.
    pub changes: usize,
    /// What failed: names refused before sending, then targets that failed.
    pub errors: Vec<String>,
    /// For every name of the answers published: what each DNS primary serves for it, in
    /// configuration order (no primaries for the file and command publishers).
    pub names: BTreeMap<Name, Vec<PrimaryView>>,
    /// What each DNS primary serves for any other name: nothing fedlb manages.
    pub unmanaged: Vec<PrimaryView>,
    /// Names this node left to another global node sharing the DNS server, with why
    /// (`defers to g1: it hears 3 candidates, this node 2`), as of the last pass.
    pub deferred: BTreeMap<Name, String>,
}

impl PassOutcome {
    /// True when nothing was refused and no target failed.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// What each DNS primary serves for `name`.
    pub fn served(&self, name: &Name) -> &[PrimaryView] {
        self.names.get(name).unwrap_or(&self.unmanaged)
    }
}

/// Counters of one target. For DNS primaries `updates_sent` counts UPDATE messages put on the
/// wire (0 in steady state; 1 per zone per pass with changes, plus 1 per resolved conflict).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TargetMetrics {
    /// Server address, file path or command.
    pub target: String,
    /// UPDATE messages sent / files written / command runs.
    pub updates_sent: u64,
    /// Of those, the ones that succeeded.
    pub updates_applied: u64,
    /// Reads of the server state (DNS only).
    pub reads: u64,
    /// Passes where the target held something other than what fedlb had published.
    pub drift_repairs: u64,
    /// Failures by class.
    pub failures: BTreeMap<FailureClass, u64>,
    /// Text of the last failure.
    pub last_error: Option<String>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
}

impl TargetMetrics {
    pub(crate) fn new(target: String) -> Self {
        Self {
            target,
            ..Self::default()
        }
    }

    pub(crate) fn record_failure(&mut self, err: &Error) {
        *self.failures.entry(err.class()).or_default() += 1;
        self.last_error = Some(err.to_string());
        self.consecutive_failures += 1;
    }

    /// Failures of one class.
    pub fn failures_of(&self, class: FailureClass) -> u64 {
        self.failures.get(&class).copied().unwrap_or(0)
    }
}

/// Counters of one publisher.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PublisherMetrics {
    /// Refusals before sending (fail-static empty answers, names outside the zone) by class.
    pub refused: BTreeMap<FailureClass, u64>,
    /// Text of the last refusal.
    pub last_refusal: Option<String>,
    /// One entry per target.
    pub targets: Vec<TargetMetrics>,
}

impl PublisherMetrics {
    pub(crate) fn record_refusals(&mut self, refused: &[Error]) {
        for err in refused {
            *self.refused.entry(err.class()).or_default() += 1;
            self.last_refusal = Some(err.to_string());
        }
    }

    /// Sum of `updates_sent` over all targets.
    pub fn updates_sent(&self) -> u64 {
        self.targets.iter().map(|t| t.updates_sent).sum()
    }
}

/// Exponential backoff between failed attempts on one target.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            failures: 0,
        }
    }

    /// The delay before the next attempt after one more failure: min, 2·min, 4·min … max.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let shift = self.failures.min(20);
        self.failures = self.failures.saturating_add(1);
        self.min.saturating_mul(1 << shift).min(self.max)
    }

    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_max_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(700));
        let delays: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 700, 700]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
        let mut long = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..100 {
            assert!(long.next_delay() <= Duration::from_secs(60));
        }
    }
}
