//! Whatever bytes a peer sends, decoding returns Ok or Err: no panic, no abort, no huge
//! allocation; and whatever decodes re-encodes to the same message.
//!
//! The bytes go through exactly what a node runs on receipt: `fedlb_proto::codec::decode`
//! (the codec fedlb-net's server calls for every message stream) and then
//! `Message::validate` (what the node's authoriser calls). Re-encoding uses
//! `fedlb_proto::codec::encode`, the codec fedlb-net's client calls.
#![no_main]

use fedlb_proto::{Message, codec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = codec::decode::<Message>(data) else {
        return;
    };
    if msg.validate().is_err() {
        return;
    }
    let bytes = codec::encode(&msg).expect("a decoded message re-encodes");
    let again: Message = codec::decode(&bytes).expect("and decodes again");
    assert_eq!(again, msg);
});
