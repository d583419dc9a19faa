//! What goes on a connection.
//!
//! A connection opens with a hello exchange on one bidirectional stream: the client
//! writes its [`Hello`] and finishes, the server checks it and answers with its own (or
//! closes the connection with a reason). After that the client sends its messages on
//! long-lived unidirectional streams, at most one per [`StreamClass`]: each opens with its
//! class byte, then carries frames, each a [`FRAME_HEADER_LEN`]-byte big-endian length and
//! one [`encode`]d message of at most [`MAX_MESSAGE_LEN`] bytes. A stream per message
//! cost the server a stream's set-up, a task and a buffer per report; a long-lived stream
//! costs it one read into a reused buffer. Urgent messages (a health change) travel on a
//! stream of their own, so they are neither blocked behind routine readings on the wire
//! nor queued behind them in the server.
//!
//! The codec itself ([`encode`], [`decode`], [`MAX_MESSAGE_LEN`], [`WIRE_CONFIG`]) is
//! `fedlb_proto::codec`, re-exported here: the transport runs exactly the codec that
//! fedlb-proto defines, tests and fuzzes. Its errors reach callers as
//! [`NetError::Codec`].

pub use fedlb_proto::codec::{
    CodecError, MAX_MESSAGE_LEN, WIRE_CONFIG, WireConfig, decode, encode,
};

use crate::{NetError, Role};

/// The length of a frame's header: the message's length, u32 big endian.
pub const FRAME_HEADER_LEN: usize = 4;

/// What a message stream carries, named by its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamClass {
    /// Periodic readings and heartbeats: queued in order.
    Routine,
    /// Messages that must not wait behind routine ones (health changes).
    Urgent,
}

impl StreamClass {
    /// The class byte.
    pub fn to_wire(self) -> u8 {
        match self {
            StreamClass::Routine => 0,
            StreamClass::Urgent => 1,
        }
    }

    /// The class of a class byte; `None` for an unknown one.
    pub fn from_wire(b: u8) -> Option<StreamClass> {
        match b {
            0 => Some(StreamClass::Routine),
            1 => Some(StreamClass::Urgent),
            _ => None,
        }
    }
}

/// One frame: the header, then `message` (already encoded).
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + message.len());
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// The first bytes each side sends: who it is and which protocol version it speaks.
///
/// Its layout is fixed for every protocol version, so that two versions can always tell
/// each other apart: `b"FDLB"`, version (u16, big endian), role (u8), one zero byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The application protocol version (the message schema), chosen by the application.
    pub version: u16,
    /// The sender's role; must match the role in its certificate.
    pub role: Role,
}

/// The length of an encoded [`Hello`].
pub const HELLO_LEN: usize = 8;
const HELLO_MAGIC: &[u8; 4] = b"FDLB";

impl Hello {
    /// The encoded hello.
    pub fn to_bytes(self) -> [u8; HELLO_LEN] {
        let v = self.version.to_be_bytes();
        let m = HELLO_MAGIC;
        [m[0], m[1], m[2], m[3], v[0], v[1], self.role.to_wire(), 0]
    }

    /// Parses a hello; the error says what is wrong with it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Hello, NetError> {
        if bytes.len() != HELLO_LEN {
            return Err(NetError::Hello(format!(
                "{} bytes, expected {HELLO_LEN}",
                bytes.len()
            )));
        }
        if &bytes[..4] != HELLO_MAGIC {
            return Err(NetError::Hello(format!(
                "magic {:02x?} is not {HELLO_MAGIC:02x?}; not a fedlb peer",
                &bytes[..4]
            )));
        }
        let role = Role::from_wire(bytes[6])
            .ok_or_else(|| NetError::Hello(format!("role byte {} is unknown", bytes[6])))?;
        Ok(Hello {
            version: u16::from_be_bytes([bytes[4], bytes[5]]),
            role,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_rejects_bad_magic_length_and_role() {
        let h = Hello {
            version: 513,
            role: Role::Farm,
        };
        assert_eq!(Hello::from_bytes(&h.to_bytes()).unwrap(), h);
        assert!(Hello::from_bytes(b"FDLB\0\x01\x02").is_err());
        assert!(
            Hello::from_bytes(b"HTTP\0\x01\x02\0")
                .unwrap_err()
                .to_string()
                .contains("not a fedlb peer")
        );
        assert!(
            Hello::from_bytes(b"FDLB\0\x01\x09\0")
                .unwrap_err()
                .to_string()
                .contains("role byte 9")
        );
    }
}
