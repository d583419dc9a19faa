//! The node's timeline: `tokio::time::Instant` (so paused-time tests drive it) mapped to the
//! core's `Timestamp`.

use std::time::Duration;

use fedlb_core::Timestamp;
use tokio::time::Instant;

/// Converts between tokio instants and the core's timestamps, from the node's start.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    /// A timeline starting now.
    pub fn start() -> Self {
        Clock {
            start: Instant::now(),
        }
    }

    /// Now, on the node's timeline.
    pub fn now(&self) -> Timestamp {
        Timestamp::from_duration(Instant::now() - self.start)
    }

    /// The tokio instant of a timestamp.
    pub fn instant(&self, t: Timestamp) -> Instant {
        self.start + t.as_duration()
    }

    /// Time since the start.
    pub fn uptime(&self) -> Duration {
        Instant::now() - self.start
    }
}

/// Sleeps until `t`, or forever when there is nothing to wait for (cancel-safe).
pub async fn sleep_until(clock: &Clock, t: Option<Timestamp>) {
    match t {
        Some(t) => tokio::time::sleep_until(clock.instant(t)).await,
        None => std::future::pending().await,
    }
}

/// A fresh restart counter for reports and summaries (their `epoch`).
pub fn new_epoch() -> u64 {
    rand::random()
}
