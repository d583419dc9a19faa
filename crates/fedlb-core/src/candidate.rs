//! Candidates and their readings: what every decision is made from.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::id::CandidateId;
use crate::time::Timestamp;

/// One measured value and when it was measured (on the deciding node's timeline).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample<T> {
    /// The value.
    pub value: T,
    /// When it was measured.
    pub at: Timestamp,
}

impl<T> Sample<T> {
    /// A value measured at `at`.
    pub fn new(value: T, at: Timestamp) -> Self {
        Sample { value, at }
    }

    /// How old the value is at `now`.
    pub fn age(&self, now: Timestamp) -> Duration {
        now - self.at
    }
}

/// The latest readings of one candidate. Every field is optional: a probe that never ran,
/// or whose last attempt failed, leaves its field empty, and policies rank candidates with
/// a missing reading after those that have it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Readings {
    /// Response time of the service (HTTP response, TCP connect, ICMP echo).
    pub response_time: Option<Sample<Duration>>,
    /// Requests accepted but not yet answered (the patent's pending requests).
    pub pending: Option<Sample<u64>>,
    /// Open connections to the service.
    pub connections: Option<Sample<u64>>,
    /// Network hops from the measuring node.
    pub hops: Option<Sample<u32>>,
    /// Round-trip time from the deciding node (e.g. QUIC RTT to a farm node).
    pub rtt: Option<Sample<Duration>>,
    /// Application-specific metrics by name (e.g. `dbms_users`).
    pub metrics: BTreeMap<String, Sample<f64>>,
}

impl Readings {
    /// Overwrites the fields `newer` has, keeping the others.
    pub fn merge(&mut self, newer: &Readings) {
        fn take<T: Copy>(slot: &mut Option<Sample<T>>, new: &Option<Sample<T>>) {
            if new.is_some() {
                *slot = *new;
            }
        }
        take(&mut self.response_time, &newer.response_time);
        take(&mut self.pending, &newer.pending);
        take(&mut self.connections, &newer.connections);
        take(&mut self.hops, &newer.hops);
        take(&mut self.rtt, &newer.rtt);
        for (k, v) in &newer.metrics {
            self.metrics.insert(k.clone(), *v);
        }
    }

    /// Whether `other` holds the same values, whenever they were measured: what a decision
    /// reads of them (no policy looks at when a reading was taken).
    pub(crate) fn same_values(&self, other: &Readings) -> bool {
        fn same<T: PartialEq + Copy>(a: &Option<Sample<T>>, b: &Option<Sample<T>>) -> bool {
            a.map(|s| s.value) == b.map(|s| s.value)
        }
        same(&self.response_time, &other.response_time)
            && same(&self.pending, &other.pending)
            && same(&self.connections, &other.connections)
            && same(&self.hops, &other.hops)
            && same(&self.rtt, &other.rtt)
            && self.metrics.len() == other.metrics.len()
            && self
                .metrics
                .iter()
                .zip(&other.metrics)
                .all(|((k, a), (l, b))| k == l && a.value == b.value)
    }

    /// The age of the oldest reading present, if any: how stale the view is.
    pub fn oldest_age(&self, now: Timestamp) -> Option<Duration> {
        let ats = [
            self.response_time.map(|s| s.at),
            self.pending.map(|s| s.at),
            self.connections.map(|s| s.at),
            self.hops.map(|s| s.at),
            self.rtt.map(|s| s.at),
        ];
        ats.into_iter()
            .flatten()
            .chain(self.metrics.values().map(|s| s.at))
            .min()
            .map(|at| now - at)
    }
}

/// The health of a candidate as the deciding node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Health {
    /// Passing its probes, and heard from recently.
    Up,
    /// Nothing known yet (no probe result, no report).
    Unknown,
    /// Its reports stopped arriving; not chosen, not yet declared down.
    Stale,
    /// Failing its probes, or silent for too long.
    Down,
    /// Taken out of rotation by an operator.
    Drained,
}

impl Health {
    /// Only `Up` candidates are ever chosen while any is `Up`.
    pub fn is_up(self) -> bool {
        self == Health::Up
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::Up => "up",
            Health::Unknown => "unknown",
            Health::Stale => "stale",
            Health::Down => "down",
            Health::Drained => "drained",
        })
    }
}

/// Distance from the deciding node (or from the clients it stands for) to a candidate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Distance {
    /// An operator-pinned distance in milliseconds (from the topology).
    Pinned(f64),
    /// Great-circle distance in kilometres between the two declared locations.
    Kilometres(f64),
}

/// One candidate of a decision: a server, or a farm seen as one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Its name.
    pub id: CandidateId,
    /// The addresses answered when it is chosen (a server's address; for a farm, the
    /// addresses of its own local choice).
    pub addresses: Vec<IpAddr>,
    /// Health as the deciding node sees it.
    pub health: Health,
    /// Relative capacity (weight). Load is measured against it. Must be > 0.
    pub capacity: f64,
    /// Distance as declared (pinned) or derived from locations.
    pub distance: Option<Distance>,
    /// Latest readings.
    pub readings: Readings,
    /// For a farm: how many of its servers are up and how many it has.
    pub members: Option<Members>,
    /// For a farm: the relative weight of each of its `addresses` (its own weighted answer,
    /// see [`crate::spread`]); empty: equal.
    #[serde(default)]
    pub weights: Vec<f64>,
}

/// How many members of a farm are up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Members {
    /// Members up.
    pub up: u32,
    /// All members.
    pub total: u32,
}

impl Candidate {
    /// A candidate with no readings yet.
    pub fn new(id: impl Into<CandidateId>, addresses: Vec<IpAddr>, capacity: f64) -> Self {
        Candidate {
            id: id.into(),
            addresses,
            health: Health::Unknown,
            capacity,
            distance: None,
            readings: Readings::default(),
            members: None,
            weights: Vec::new(),
        }
    }

    /// Load relative to capacity: pending requests if known, else open connections,
    /// divided by capacity. `None` when the candidate reports neither.
    pub fn load(&self) -> Option<f64> {
        let raw = self
            .readings
            .pending
            .map(|s| s.value)
            .or(self.readings.connections.map(|s| s.value))?;
        Some(raw as f64 / self.capacity.max(f64::MIN_POSITIVE))
    }
}
