//! Why connections end: the application close codes and how errors read to an operator.

use quinn::{ConnectionError, VarInt};

use crate::verify::tidy;

/// The application error code a fedlb node closes a connection with. The reason text
/// travels with it and is what the other side logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// Orderly shutdown of the closing node.
    Shutdown,
    /// The authoriser refused this identity.
    Unauthorised,
    /// The certificate carries no usable identity.
    BadIdentity,
    /// The hello's protocol version differs from the server's.
    VersionMismatch,
    /// The hello is missing, late or malformed, or claims a role the certificate lacks.
    BadHello,
    /// A message could not be decoded.
    BadMessage,
    /// A message exceeded the frame cap.
    MessageTooLarge,
    /// The per-message authoriser refused a message.
    MessageRefused,
    /// A newer connection from the same identity took over (the old one did not answer).
    Replaced,
    /// Another connection with the same identity is connected and alive: two processes
    /// run with one node's credentials.
    DuplicateIdentity,
}

impl CloseCode {
    const ALL: [CloseCode; 10] = [
        CloseCode::Shutdown,
        CloseCode::Unauthorised,
        CloseCode::BadIdentity,
        CloseCode::VersionMismatch,
        CloseCode::BadHello,
        CloseCode::BadMessage,
        CloseCode::MessageTooLarge,
        CloseCode::MessageRefused,
        CloseCode::Replaced,
        CloseCode::DuplicateIdentity,
    ];

    /// The code on the wire.
    pub fn as_u32(self) -> u32 {
        match self {
            CloseCode::Shutdown => 0,
            CloseCode::Unauthorised => 1,
            CloseCode::BadIdentity => 2,
            CloseCode::VersionMismatch => 3,
            CloseCode::BadHello => 4,
            CloseCode::BadMessage => 5,
            CloseCode::MessageTooLarge => 6,
            CloseCode::MessageRefused => 7,
            CloseCode::Replaced => 8,
            CloseCode::DuplicateIdentity => 9,
        }
    }

    /// The code for a wire value, if it is one of ours.
    pub fn from_u64(code: u64) -> Option<CloseCode> {
        CloseCode::ALL
            .into_iter()
            .find(|c| u64::from(c.as_u32()) == code)
    }

    /// Whether the closing side refused the other (as opposed to leaving or being replaced).
    pub fn is_rejection(self) -> bool {
        !matches!(self, CloseCode::Shutdown | CloseCode::Replaced)
    }

    pub(crate) fn varint(self) -> VarInt {
        VarInt::from_u32(self.as_u32())
    }
}

/// Close reasons travel in one packet; keep them short.
pub(crate) fn clip(reason: &str) -> &str {
    const MAX: usize = 256;
    if reason.len() <= MAX {
        return reason;
    }
    let mut end = MAX;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// Whether the peer closed because another process with our identity is connected.
pub(crate) fn is_duplicate_identity(e: &ConnectionError) -> bool {
    matches!(e, ConnectionError::ApplicationClosed(close)
        if CloseCode::from_u64(close.error_code.into_inner()) == Some(CloseCode::DuplicateIdentity))
}

/// One line for an operator saying why a connection ended, from this node's point of view.
pub(crate) fn describe(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ApplicationClosed(close) => {
            let reason = String::from_utf8_lossy(&close.reason);
            match CloseCode::from_u64(close.error_code.into_inner()) {
                Some(code) if code.is_rejection() => format!("rejected by peer: {reason}"),
                Some(_) => format!("closed by peer: {reason}"),
                None => format!(
                    "closed by peer with unknown code {}: {reason}",
                    close.error_code
                ),
            }
        }
        // A transport-level close from the peer during the handshake: almost always the TLS
        // layer refusing our certificate.
        ConnectionError::ConnectionClosed(close) => tidy(format!("rejected by peer: {close}")),
        ConnectionError::TransportError(te) => tidy(format!("handshake failed: {te}")),
        ConnectionError::TimedOut => "timed out: no packets within the idle timeout".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_clip_keeps_char_boundaries() {
        for c in CloseCode::ALL {
            assert_eq!(CloseCode::from_u64(u64::from(c.as_u32())), Some(c));
        }
        assert_eq!(CloseCode::from_u64(99), None);
        let long = "é".repeat(200);
        let clipped = clip(&long);
        assert!(clipped.len() <= 256 && clipped.chars().all(|c| c == 'é'));
        assert_eq!(clip("short"), "short");
    }
}
