//! Why a probe run failed. Every message is lowercase and starts with the probe's target,
//! e.g. `http 127.0.0.2:8080/health: status 503, expected 200-399`.

use std::io;
use std::time::Duration;

/// Why one probe run failed. A failure is data: the shell turns it into a down
/// [`fedlb_core::ProbeResult`] whose `error` is this message.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Nothing listens: the connection was refused.
    #[error("{target}: connection refused")]
    Refused {
        /// What was probed.
        target: String,
    },
    /// The peer reset (or aborted) the connection.
    #[error("{target}: connection reset")]
    Reset {
        /// What was probed.
        target: String,
    },
    /// The peer closed the connection before a complete response.
    #[error("{target}: connection closed before a complete response")]
    Closed {
        /// What was probed.
        target: String,
    },
    /// The run did not finish within its timeout.
    #[error("{target}: timed out after {after:?}")]
    Timeout {
        /// What was probed.
        target: String,
        /// The timeout.
        after: Duration,
    },
    /// An HTTP status outside the expected range.
    #[error("{target}: status {status}, expected {expected}")]
    Status {
        /// What was probed.
        target: String,
        /// The status received.
        status: u16,
        /// The expected range, as `200-399`.
        expected: String,
    },
    /// The response body lacks the expected text.
    #[error("{target}: body does not contain {needle:?}")]
    BodyMismatch {
        /// What was probed.
        target: String,
        /// The text looked for.
        needle: String,
    },
    /// TLS failed: bad certificate, unknown CA, handshake error, unreadable CA file.
    #[error("{target}: tls: {reason}")]
    Tls {
        /// What was probed.
        target: String,
        /// What went wrong.
        reason: String,
    },
    /// The operating system refused what the probe needs (an ICMP socket, a command).
    #[error("{target}: permission denied: {reason}")]
    Permission {
        /// What was probed.
        target: String,
        /// What was refused and how to allow it.
        reason: String,
    },
    /// The network reported the target unreachable.
    #[error("{target}: unreachable: {reason}")]
    Unreachable {
        /// What was probed.
        target: String,
        /// Who said so and how.
        reason: String,
    },
    /// An answer that could not be understood: a load page without the expected fields, a
    /// missing metric, a command printing something other than a number.
    #[error("{target}: bad response: {reason}")]
    BadResponse {
        /// What was probed.
        target: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A command that exited unsuccessfully.
    #[error("{target}: {reason}")]
    Exit {
        /// What was probed.
        target: String,
        /// Exit status and the start of its standard error.
        reason: String,
    },
    /// A probe that cannot run as specified (a path without `/`, an empty command).
    #[error("{target}: invalid probe: {reason}")]
    Invalid {
        /// What was probed.
        target: String,
        /// What is wrong with the specification.
        reason: String,
    },
    /// The node running the probe has no file descriptor left (EMFILE, ENFILE): the probe
    /// could not run, and its failure says nothing about the target.
    #[error("{target}: not run, this node is out of file descriptors: {reason}")]
    NoDescriptors {
        /// What was probed.
        target: String,
        /// The operating system's words.
        reason: String,
    },
    /// Any other I/O error.
    #[error("{target}: {source}")]
    Io {
        /// What was probed.
        target: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl ProbeError {
    /// What was probed, as it starts the message (`tcp 127.0.0.1:80`).
    pub fn target(&self) -> &str {
        match self {
            ProbeError::Refused { target }
            | ProbeError::Reset { target }
            | ProbeError::Closed { target }
            | ProbeError::Timeout { target, .. }
            | ProbeError::Status { target, .. }
            | ProbeError::BodyMismatch { target, .. }
            | ProbeError::Tls { target, .. }
            | ProbeError::Permission { target, .. }
            | ProbeError::Unreachable { target, .. }
            | ProbeError::BadResponse { target, .. }
            | ProbeError::Exit { target, .. }
            | ProbeError::Invalid { target, .. }
            | ProbeError::NoDescriptors { target, .. }
            | ProbeError::Io { target, .. } => target,
        }
    }

    /// Whether the failure hints that the service just crashed (refused or reset): the
    /// shell should call the monitor's `handle_trigger` to re-probe at once.
    pub fn suggests_crash(&self) -> bool {
        matches!(self, ProbeError::Refused { .. } | ProbeError::Reset { .. })
    }

    /// Whether the run failed for want of something on the node that runs it (file
    /// descriptors), not because of the target: such a run must not count against the
    /// target's health.
    pub fn is_node_shortage(&self) -> bool {
        matches!(self, ProbeError::NoDescriptors { .. })
    }

    /// Classifies an I/O error of a connection to `target`.
    pub(crate) fn from_io(target: &str, e: io::Error) -> Self {
        let target = target.to_owned();
        if let Some(code) = e.raw_os_error()
            && (code == nix::errno::Errno::EMFILE as i32
                || code == nix::errno::Errno::ENFILE as i32)
        {
            return ProbeError::NoDescriptors {
                target,
                reason: e.to_string().to_lowercase(),
            };
        }
        match e.kind() {
            io::ErrorKind::ConnectionRefused => ProbeError::Refused { target },
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => ProbeError::Reset { target },
            io::ErrorKind::UnexpectedEof => ProbeError::Closed { target },
            io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
                ProbeError::Unreachable {
                    target,
                    reason: e.to_string().to_lowercase(),
                }
            }
            io::ErrorKind::PermissionDenied => ProbeError::Permission {
                target,
                reason: e.to_string().to_lowercase(),
            },
            _ => match e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                Some(tls) => ProbeError::Tls {
                    target,
                    reason: lower_words(&tls.to_string()),
                },
                None => ProbeError::Io { target, source: e },
            },
        }
    }
}

/// rustls names certificate problems by variant (`UnknownIssuer`): spelled as words here.
fn lower_words(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut prev_lower = false;
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            if prev_lower {
                out.push(' ');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else {
            out.push(c);
            prev_lower = c.is_ascii_lowercase();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_variant_names_become_words() {
        assert_eq!(
            lower_words("invalid peer certificate: UnknownIssuer"),
            "invalid peer certificate: unknown issuer"
        );
        assert_eq!(
            lower_words("received fatal alert: BadCertificate"),
            "received fatal alert: bad certificate"
        );
    }
}
