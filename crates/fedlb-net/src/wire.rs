//! What goes on a connection, and the one bincode configuration used for it.
//!
//! A connection opens with a hello exchange on one bidirectional stream: the client
//! writes its [`Hello`] and finishes, the server checks it and answers with its own (or
//! closes the connection with a reason). After that every application message is one
//! unidirectional stream holding exactly one [`encode`]d message: no head-of-line blocking
//! between reports under loss, and a reader that needs no framing state.
//!
//! [`decode`] always runs with a byte budget of [`MAX_MESSAGE_LEN`]: bincode allocates a
//! container's announced length before reading it, so an unlimited decode of a 17-byte
//! forged input aborts the process.

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{NetError, Role};

/// The largest encoded message, and the decode budget. Status reports are a few hundred
/// bytes; this leaves room for batching many services in one report.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;

/// The bincode configuration of the wire: little endian, varint integers, decode limit.
pub type WireConfig = Configuration<LittleEndian, Varint, Limit<MAX_MESSAGE_LEN>>;

/// The configuration value; both ends must use exactly this.
pub const WIRE_CONFIG: WireConfig = bincode::config::standard().with_limit::<MAX_MESSAGE_LEN>();

/// Encodes one message; fails if the encoding exceeds [`MAX_MESSAGE_LEN`].
pub fn encode<M: Serialize + ?Sized>(msg: &M) -> Result<Vec<u8>, NetError> {
    let bytes = bincode::serde::encode_to_vec(msg, WIRE_CONFIG)?;
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(NetError::MessageTooLarge {
            len: bytes.len(),
            limit: MAX_MESSAGE_LEN,
        });
    }
    Ok(bytes)
}

/// Decodes exactly one message from `bytes`, with the decode limit; trailing bytes are an
/// error. Never panics and never allocates more than the limit, whatever the input.
pub fn decode<M: DeserializeOwned>(bytes: &[u8]) -> Result<M, NetError> {
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(NetError::MessageTooLarge {
            len: bytes.len(),
            limit: MAX_MESSAGE_LEN,
        });
    }
    let (msg, used) = bincode::serde::decode_from_slice(bytes, WIRE_CONFIG)?;
    if used != bytes.len() {
        return Err(NetError::TrailingBytes {
            used,
            extra: bytes.len() - used,
        });
    }
    Ok(msg)
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
    fn forged_length_is_refused_without_allocating() {
        // A String whose announced length is 2^40: varint tag 0xFD then a u64.
        let mut forged = vec![0xFD];
        forged.extend_from_slice(&(1u64 << 40).to_le_bytes());
        let e = decode::<String>(&forged).unwrap_err();
        assert!(matches!(e, NetError::Decode(_)), "{e}");
    }

    #[test]
    fn oversize_and_trailing_bytes_are_errors() {
        let big = vec![7u8; MAX_MESSAGE_LEN];
        let e = encode(&big).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "message of {} bytes exceeds the limit of {MAX_MESSAGE_LEN} bytes",
                MAX_MESSAGE_LEN + 5
            )
        );
        let mut bytes = encode(&5u32).unwrap();
        bytes.push(0);
        let e = decode::<u32>(&bytes).unwrap_err();
        assert_eq!(
            e.to_string(),
            "message decode: 1 trailing bytes after a 1-byte message"
        );
    }

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
