//! The one wire codec: the bincode configuration, the size limit and the exact-length
//! decode. The transport (fedlb-net) encodes and decodes every message with these two
//! functions, and the fuzz target (`fuzz/fuzz_targets/decode.rs`) exercises them, so what
//! is fuzzed is what runs.
//!
//! [`decode`] always runs with a byte budget of [`MAX_MESSAGE_LEN`]: bincode allocates a
//! container's announced length before reading it, so an unlimited decode of a 17-byte
//! forged input aborts the process. The codec is generic over the message type; the
//! protocol's own limits on names and counts are [`crate::Message::validate`].

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The largest encoded message, and the decode budget. Status reports are a few hundred
/// bytes; this leaves room for batching many services in one report.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;

/// The bincode configuration of the wire: little endian, varint integers, decode limit.
pub type WireConfig = Configuration<LittleEndian, Varint, Limit<MAX_MESSAGE_LEN>>;

/// The configuration value; both ends must use exactly this.
pub const WIRE_CONFIG: WireConfig = bincode::config::standard().with_limit::<MAX_MESSAGE_LEN>();

/// Why bytes could not be made from a message, or a message from bytes.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The message (or the input) is larger than [`MAX_MESSAGE_LEN`].
    #[error("message of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// bincode could not encode the message.
    #[error("message encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    /// bincode could not decode the bytes (garbage, unknown variant, over the budget).
    #[error("message decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    /// A message decoded but left bytes behind.
    #[error("message decode: {extra} trailing bytes after a {used}-byte message")]
    Trailing {
        /// Bytes the message took.
        used: usize,
        /// Bytes left over.
        extra: usize,
    },
}

/// Encodes one message; fails if the encoding exceeds [`MAX_MESSAGE_LEN`].
pub fn encode<M: Serialize + ?Sized>(msg: &M) -> Result<Vec<u8>, CodecError> {
    let bytes = bincode::serde::encode_to_vec(msg, WIRE_CONFIG)?;
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            limit: MAX_MESSAGE_LEN,
        });
    }
    Ok(bytes)
}

/// Decodes exactly one message from `bytes`, with the decode limit; trailing bytes are an
/// error. Never panics and never allocates more than the limit, whatever the input.
pub fn decode<M: DeserializeOwned>(bytes: &[u8]) -> Result<M, CodecError> {
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            limit: MAX_MESSAGE_LEN,
        });
    }
    let (msg, used) = bincode::serde::decode_from_slice(bytes, WIRE_CONFIG)?;
    if used != bytes.len() {
        return Err(CodecError::Trailing {
            used,
            extra: bytes.len() - used,
        });
    }
    Ok(msg)
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
        assert!(matches!(e, CodecError::Decode(_)), "{e}");
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
}
