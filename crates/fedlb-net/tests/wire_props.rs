//! Property tests of the encoding helpers: round trips, and no panic on any input.

use fedlb_net::wire::{CodecError, HELLO_LEN, Hello, MAX_MESSAGE_LEN, decode, encode};
use fedlb_net::{NetError, PeerIdentity, Role};
use fedlb_proto::{Message, WireReadings, WireReport};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Kind {
    Up,
    Down(u16),
    Loaded { pending: u32, why: String },
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Report {
    seq: u64,
    delta: i32,
    server: String,
    kind: Kind,
    rtt_us: Option<u32>,
    services: Vec<(String, u64)>,
    blob: Vec<u8>,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Up),
        any::<u16>().prop_map(Kind::Down),
        (any::<u32>(), ".{0,20}").prop_map(|(pending, why)| Kind::Loaded { pending, why }),
    ]
}

fn report() -> impl Strategy<Value = Report> {
    (
        any::<u64>(),
        any::<i32>(),
        "[a-z0-9-]{0,63}",
        kind(),
        any::<Option<u32>>(),
        prop::collection::vec(("[a-z]{0,12}", any::<u64>()), 0..16),
        prop::collection::vec(any::<u8>(), 0..2048),
    )
        .prop_map(
            |(seq, delta, server, kind, rtt_us, services, blob)| Report {
                seq,
                delta,
                server,
                kind,
                rtt_us,
                services,
                blob,
            },
        )
}

proptest! {
    #[test]
    fn reports_round_trip(r in report()) {
        let bytes = encode(&r).unwrap();
        prop_assert!(bytes.len() <= MAX_MESSAGE_LEN);
        prop_assert_eq!(decode::<Report>(&bytes).unwrap(), r);
    }

    #[test]
    fn truncated_or_extended_encodings_are_errors(r in report(), cut in any::<prop::sample::Index>(), extra in 1usize..8) {
        let bytes = encode(&r).unwrap();
        let cut = cut.index(bytes.len());
        prop_assert!(decode::<Report>(&bytes[..cut]).is_err());
        let mut longer = bytes.clone();
        longer.extend(std::iter::repeat_n(0u8, extra));
        let trailing = matches!(decode::<Report>(&longer), Err(CodecError::Trailing { .. }));
        prop_assert!(trailing);
    }

    #[test]
    fn decoding_random_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _ = decode::<Report>(&bytes);
        let _ = decode::<Kind>(&bytes);
        let _ = decode::<String>(&bytes);
        let _ = decode::<Vec<u64>>(&bytes);
        let _ = decode::<Vec<Vec<String>>>(&bytes);
    }

    #[test]
    fn decoding_random_bytes_after_a_valid_prefix_never_panics(
        r in report(),
        cut in any::<prop::sample::Index>(),
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut bytes = encode(&r).unwrap();
        bytes.truncate(cut.index(bytes.len()));
        bytes.extend(tail);
        let _ = decode::<Report>(&bytes);
    }

    #[test]
    fn hello_round_trips(version in any::<u16>(), role in prop::sample::select(Role::ALL.to_vec())) {
        let h = Hello { version, role };
        prop_assert_eq!(Hello::from_bytes(&h.to_bytes()).unwrap(), h);
    }

    #[test]
    fn parsers_of_peer_input_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), name in ".{0,80}") {
        let _ = Hello::from_bytes(&bytes);
        let _ = Hello::from_bytes(&bytes[..bytes.len().min(HELLO_LEN)]);
        let _ = PeerIdentity::from_certificate(&bytes);
        let _ = PeerIdentity::from_dns_name(&name);
    }
}

/// Issue 12 item 4: the transport encodes and decodes with exactly the codec fedlb-proto
/// defines, tests and fuzzes (not a copy of it).
#[test]
fn item4_the_transport_runs_the_one_codec_fedlb_proto_defines_and_fuzzes() {
    // The same functions, not look-alikes: the transport's decode has the codec's type.
    let transport_decode: fn(&[u8]) -> Result<Message, fedlb_proto::codec::CodecError> =
        decode::<Message>;
    let transport_encode: fn(&Message) -> Result<Vec<u8>, fedlb_proto::codec::CodecError> =
        encode::<Message>;
    assert_eq!(MAX_MESSAGE_LEN, fedlb_proto::MAX_MESSAGE);

    // What the transport sends, the fuzzed decode reads; and the reverse.
    let msg = Message::Reports(vec![WireReport {
        service: "www".into(),
        server: "s1".into(),
        epoch: 2,
        seq: 7,
        health: fedlb_core::Health::Up,
        reason: "all probes passing".into(),
        readings: WireReadings::default(),
    }]);
    let sent = transport_encode(&msg).unwrap();
    assert_eq!(fedlb_proto::decode(&sent).unwrap(), msg);
    assert_eq!(fedlb_proto::encode(&msg).unwrap(), sent);
    assert_eq!(transport_decode(&sent).unwrap(), msg);

    // Hostile input is refused by the transport with the codec's own error, whatever its kind.
    let mut forged = vec![0u8, 1, 253];
    forged.extend_from_slice(&(1u64 << 40).to_le_bytes());
    let mut trailing = sent.clone();
    trailing.push(0);
    let oversize = vec![0u8; MAX_MESSAGE_LEN + 1];
    for (bytes, kind) in [
        (&forged, "decode"),
        (&trailing, "trailing"),
        (&oversize, "too large"),
    ] {
        let codec = fedlb_proto::codec::decode::<Message>(bytes).unwrap_err();
        let transport = transport_decode(bytes).unwrap_err();
        assert_eq!(transport.to_string(), codec.to_string(), "{kind}");
        let as_net = NetError::from(transport);
        assert!(matches!(as_net, NetError::Codec(_)), "{kind}: {as_net}");
        assert_eq!(as_net.to_string(), codec.to_string(), "{kind}");
        assert!(fedlb_proto::decode(bytes).is_err(), "{kind}");
    }
}
