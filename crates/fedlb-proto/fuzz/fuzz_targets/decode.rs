//! Whatever bytes a peer sends, decoding returns Ok or Err: no panic, no abort, no huge
//! allocation; and whatever decodes re-encodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = fedlb_proto::decode(data) {
        let bytes = fedlb_proto::encode(&msg).expect("a decoded message re-encodes");
        assert_eq!(fedlb_proto::decode(&bytes).expect("and decodes again"), msg);
    }
});
