//! File descriptors: a node that runs out of them cannot accept status connections, open
//! probe sockets or talk QUIC. The limit is raised at start, running short is logged (at
//! most once per [`ShortageLog::EVERY`]) and counted, and a probe that could not open its
//! socket is "not run" rather than "failed": the shortage is the node's, not the server's.

use std::io;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, as most network daemons do at start:
/// the common default soft limit (1,024) is far below what a node with many probes and
/// status clients may need. Returns the limits in force afterwards.
pub fn raise_nofile_limit() -> Option<(u64, u64)> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => {
                info!(
                    from = soft,
                    to = hard,
                    "file descriptor limit raised to the hard limit"
                );
                return Some((hard, hard));
            }
            Err(e) => warn!(soft, hard, error = %e, "cannot raise the file descriptor limit"),
        }
    }
    Some((soft, hard))
}

/// Whether `e` says the process (EMFILE) or the system (ENFILE) has no file descriptor left.
pub fn is_fd_shortage(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == nix::errno::Errno::EMFILE as i32 || code == nix::errno::Errno::ENFILE as i32
    )
}

/// At most one log line per period: [`Throttle::hit`] counts an occurrence and says when a
/// line is due, with the number of occurrences it covers.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    /// A throttle allowing one line per `every`.
    pub fn new(every: Duration) -> Self {
        Throttle {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// Counts one occurrence; `Some(n)` when a line is due, covering `n` occurrences.
    pub fn hit(&self) -> Option<u64> {
        let now = Instant::now();
        let mut s = self.state.lock().expect("throttle lock");
        s.1 += 1;
        if s.0.is_some_and(|last| now - last < self.every) {
            return None;
        }
        s.0 = Some(now);
        Some(std::mem::take(&mut s.1))
    }
}

/// A warning about running short of file descriptors, logged at most once per
/// [`ShortageLog::EVERY`] with the number of occurrences since the last line.
#[derive(Debug)]
pub struct ShortageLog(Throttle);

impl Default for ShortageLog {
    fn default() -> Self {
        ShortageLog(Throttle::new(Self::EVERY))
    }
}

impl ShortageLog {
    /// Least time between two log lines.
    pub const EVERY: Duration = Duration::from_secs(10);

    /// Notes one shortage met while doing `during` (`accepting a status connection`,
    /// `opening a probe socket`); logs if the last line is old enough.
    pub fn note(&self, during: &'static str, error: &dyn std::fmt::Display) {
        if let Some(count) = self.0.hit() {
            warn!(
                during,
                count,
                error = %error,
                "node is out of file descriptors (raise LimitNOFILE, or look for idle connections to the status port)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emfile_and_enfile_are_shortages() {
        assert!(is_fd_shortage(&io::Error::from_raw_os_error(
            nix::errno::Errno::EMFILE as i32
        )));
        assert!(is_fd_shortage(&io::Error::from_raw_os_error(
            nix::errno::Errno::ENFILE as i32
        )));
        assert!(!is_fd_shortage(&io::Error::from(
            io::ErrorKind::ConnectionRefused
        )));
    }
}
