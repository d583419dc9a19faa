//! Round trips, limits and hostile input for the wire format.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use fedlb_core::{Aggregate, Health, MemberKind, Members, Readings, Report, Sample, Timestamp};
use fedlb_proto::*;
use proptest::prelude::*;

fn health() -> impl Strategy<Value = Health> {
    prop_oneof![
        Just(Health::Up),
        Just(Health::Down),
        Just(Health::Stale),
        Just(Health::Unknown),
        Just(Health::Drained)
    ]
}

fn aged_one<T: std::fmt::Debug + Clone>(
    v: impl Strategy<Value = T>,
) -> impl Strategy<Value = Aged<T>> {
    (v, 0u64..10_000_000).prop_map(|(value, us)| Aged {
        value,
        age: Duration::from_micros(us),
    })
}

fn aged<T: std::fmt::Debug + Clone>(
    v: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<Aged<T>>> {
    proptest::option::of(aged_one(v))
}

fn readings() -> impl Strategy<Value = WireReadings> {
    (
        aged((0u64..10_000_000).prop_map(Duration::from_micros)),
        aged(any::<u64>()),
        aged(any::<u64>()),
        aged(any::<u32>()),
        aged((0u64..10_000_000).prop_map(Duration::from_micros)),
        prop::collection::btree_map("[a-z_]{1,20}", aged_one(-1e9f64..1e9), 0..8),
    )
        .prop_map(
            |(response_time, pending, connections, hops, rtt, metrics)| WireReadings {
                response_time,
                pending,
                connections,
                hops,
                rtt,
                metrics,
            },
        )
}

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9.-]{0,30}"
}

fn report() -> impl Strategy<Value = WireReport> {
    (
        name(),
        name(),
        any::<u64>(),
        any::<u64>(),
        health(),
        ".{0,80}",
        readings(),
    )
        .prop_map(
            |(service, server, epoch, seq, health, reason, readings)| WireReport {
                service,
                server,
                epoch,
                seq,
                health,
                reason,
                readings,
            },
        )
}

fn addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
    ]
}

fn summary() -> impl Strategy<Value = WireSummary> {
    (
        (
            name(),
            name(),
            any::<u64>(),
            any::<u64>(),
            health(),
            "[a-z][a-z ≤%0-9]{0,40}",
            ".{0,80}",
        ),
        prop::collection::vec(name(), 0..4),
        prop::collection::vec(addr(), 0..4),
        (0u32..100, 0u32..100),
        0.0f64..1e6,
        (
            readings(),
            prop::collection::vec((name(), aggregate()), 0..3),
        ),
        any::<bool>(),
        prop::collection::vec(view(), 0..3),
    )
        .prop_map(
            |(
                (farm, service, epoch, seq, health, policy, why),
                chosen,
                addresses,
                (a, b),
                capacity,
                (readings, aggregates),
                degraded,
                servers,
            )| {
                WireSummary {
                    node: format!("{farm}-a"),
                    farm,
                    service,
                    epoch,
                    seq,
                    health,
                    policy,
                    why,
                    chosen,
                    weights: (0..addresses.len()).map(|i| i as f64 + 0.5).collect(),
                    addresses,
                    members: Members {
                        up: a.min(b),
                        total: a.max(b),
                    },
                    capacity,
                    readings,
                    aggregates,
                    incomplete: !degraded && seq % 2 == 0,
                    degraded,
                    servers,
                }
            },
        )
}

fn aggregate() -> impl Strategy<Value = Aggregate> {
    prop::sample::select(Aggregate::ALL.to_vec())
}

fn kind() -> impl Strategy<Value = MemberKind> {
    prop_oneof![Just(MemberKind::Server), Just(MemberKind::Farm)]
}

fn view() -> impl Strategy<Value = WireMemberView> {
    (
        name(),
        kind(),
        health(),
        ".{0,40}",
        proptest::option::of(1u32..50),
        ".{0,20}",
        any::<bool>(),
        prop::collection::vec(addr(), 0..3),
        readings(),
    )
        .prop_map(
            |(id, kind, health, reason, rank, shown, chosen, addresses, readings)| WireMemberView {
                id,
                kind,
                health,
                reason,
                rank,
                shown,
                chosen,
                addresses,
                readings,
            },
        )
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        prop::collection::vec(report(), 1..5).prop_map(Message::Reports),
        prop::collection::vec(summary(), 1..5).prop_map(Message::Summaries),
    ]
}

proptest! {
    #[test]
    fn every_message_round_trips(msg in message()) {
        let bytes = encode(&msg).unwrap();
        prop_assert!(bytes.len() <= MAX_MESSAGE);
        prop_assert_eq!(decode(&bytes).unwrap(), msg);
    }

    #[test]
    fn a_summary_taken_by_value_is_the_summary_read_by_reference(s in summary(), at in 0u64..10_000_000) {
        let now = Timestamp::from_millis(at);
        prop_assert_eq!(s.clone().into_summary(now), s.to_summary(now));
    }

    #[test]
    fn a_report_taken_by_value_is_the_report_read_by_reference(r in report(), at in 0u64..10_000_000) {
        let now = Timestamp::from_millis(at);
        prop_assert_eq!(r.clone().into_report(now), r.to_report(now));
    }

    #[test]
    fn decoding_random_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn decoding_mutated_messages_never_panics(msg in message(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = encode(&msg).unwrap();
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        let _ = decode(&bytes);
    }
}

#[test]
fn a_forged_huge_length_is_refused_not_allocated() {
    // Reports, one report, service name claiming 2^40 bytes
    let mut evil = vec![0u8, 1, 253];
    evil.extend_from_slice(&(1u64 << 40).to_le_bytes());
    let err = decode(&evil).unwrap_err();
    assert!(matches!(err, ProtoError::Decode(_)), "{err}");
}

#[test]
fn an_unknown_message_type_is_refused() {
    let err = decode(&[7, 0]).unwrap_err();
    assert!(err.to_string().starts_with("undecodable message"), "{err}");
}

#[test]
fn oversize_input_is_refused_before_decoding() {
    let err = decode(&vec![0u8; MAX_MESSAGE + 1]).unwrap_err();
    assert!(
        err.to_string().contains("over the 65536-byte limit"),
        "{err}"
    );
}

#[test]
fn trailing_bytes_are_refused() {
    let msg = Message::Reports(vec![WireReport {
        service: "www".into(),
        server: "s1".into(),
        epoch: 1,
        seq: 1,
        health: Health::Up,
        reason: String::new(),
        readings: WireReadings::default(),
    }]);
    let mut bytes = encode(&msg).unwrap();
    bytes.push(0);
    assert!(matches!(decode(&bytes), Err(ProtoError::Trailing(1))));
}

#[test]
fn limits_are_enforced_on_both_sides() {
    let r = WireReport {
        service: "www".into(),
        server: "s1".into(),
        epoch: 1,
        seq: 1,
        health: Health::Up,
        reason: String::new(),
        readings: WireReadings::default(),
    };
    let too_many = Message::Reports(vec![r.clone(); MAX_BATCH + 1]);
    assert!(
        encode(&too_many)
            .unwrap_err()
            .to_string()
            .contains("65 reports")
    );
    assert!(encode(&Message::Reports(vec![])).is_err());
    let mut bad_name = r.clone();
    bad_name.server = "evil\nname".into();
    assert!(encode(&Message::Reports(vec![bad_name])).is_err());
    let mut metrics = r.clone();
    metrics.readings.metrics = (0..=MAX_METRICS)
        .map(|i| {
            (
                format!("m{i}"),
                Aged {
                    value: 1.0,
                    age: Duration::ZERO,
                },
            )
        })
        .collect::<BTreeMap<_, _>>();
    assert!(
        encode(&Message::Reports(vec![metrics]))
            .unwrap_err()
            .to_string()
            .contains("33 metrics")
    );
}

#[test]
fn readings_travel_as_ages_and_land_on_the_receivers_timeline() {
    let sender_now = Timestamp::from_millis(100_000);
    let report = Report {
        service: "www".into(),
        server: "s1".into(),
        epoch: 3,
        seq: 9,
        health: Health::Up,
        reason: "all probes passing".into(),
        readings: Readings {
            pending: Some(Sample::new(7, Timestamp::from_millis(99_000))),
            ..Readings::default()
        },
    };
    let wire = WireReport::from_report(&report, sender_now);
    assert_eq!(wire.readings.pending.unwrap().age, Duration::from_secs(1));
    let receiver_now = Timestamp::from_millis(5_000);
    let back = wire.to_report(receiver_now);
    assert_eq!(
        back.readings.pending,
        Some(Sample::new(7, Timestamp::from_millis(4_000)))
    );
    assert_eq!(back.seq, 9);
}

fn summary_of_one_server(policy: &str) -> WireSummary {
    WireSummary {
        farm: "eu-west".into(),
        node: "eu-west".into(),
        service: "www".into(),
        epoch: 1,
        seq: 1,
        health: Health::Up,
        policy: policy.into(),
        why: "eu1: least loaded (load 7 %) of 1 healthy server".into(),
        chosen: vec!["eu1".into()],
        addresses: vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11))],
        weights: vec![1.0],
        members: Members { up: 1, total: 1 },
        capacity: 100.0,
        readings: WireReadings::default(),
        aggregates: Vec::new(),
        degraded: false,
        servers: vec![WireMemberView {
            id: "eu1".into(),
            kind: MemberKind::Server,
            health: Health::Up,
            reason: "all probes passing".into(),
            rank: Some(1),
            shown: "load 7 %".into(),
            chosen: true,
            addresses: vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11))],
            readings: WireReadings::default(),
        }],
        incomplete: false,
    }
}

#[test]
fn item3_summaries_carry_the_local_policy_and_each_members_kind() {
    let mut wire = summary_of_one_server("closest among load ≤ 80 %");
    wire.servers[0].kind = MemberKind::Farm;
    let now = Timestamp::from_millis(10_000);
    let core = wire.to_summary(now);
    assert_eq!(core.policy, "closest among load ≤ 80 %");
    assert_eq!(core.servers[0].kind, MemberKind::Farm);
    // and back: what a farm node sends is what the global node reads
    let again = WireSummary::from_summary(&core, now);
    assert_eq!(again, wire);
    let msg = Message::Summaries(vec![again]);
    assert_eq!(decode(&encode(&msg).unwrap()).unwrap(), msg);
}

#[test]
fn item3_a_summary_policy_must_be_a_short_printable_label() {
    let long = "x".repeat(MAX_TEXT + 1);
    for (policy, expect) in [
        ("", "policy \"\" is empty"),
        ("least\nloaded", "has control characters"),
        (long.as_str(), "policy is 1025 bytes (max 1024)"),
    ] {
        let msg = Message::Summaries(vec![summary_of_one_server(policy)]);
        let err = encode(&msg).unwrap_err().to_string();
        assert!(err.contains(expect), "{policy:?}: {err}");
        // a peer that skips the check is refused on arrival, too
        let bytes = bincode::serde::encode_to_vec(&msg, bincode::config::standard()).unwrap();
        let err = decode(&bytes).unwrap_err().to_string();
        assert!(err.contains(expect), "{policy:?}: {err}");
    }
    // a farm node truncates an over-long policy rather than failing to send its summary
    let mut core = summary_of_one_server("least loaded").to_summary(Timestamp::ZERO);
    core.policy = long.clone();
    let sent = WireSummary::from_summary(&core, Timestamp::ZERO);
    assert_eq!(sent.policy.len(), MAX_TEXT);
    assert!(encode(&Message::Summaries(vec![sent])).is_ok());
}

#[test]
fn summaries_carry_the_weights_of_their_answer_and_refuse_bad_ones() {
    let mut wire = summary_of_one_server("least loaded");
    wire.addresses
        .push(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 12)));
    wire.weights = vec![0.25, 0.75];
    let msg = Message::Summaries(vec![wire.clone()]);
    let back = decode(&encode(&msg).unwrap()).unwrap();
    assert_eq!(back, msg);
    let core = wire.to_summary(Timestamp::from_millis(1_000));
    assert_eq!(core.weights, vec![0.25, 0.75]);
    assert_eq!(core.to_update().weights, vec![0.25, 0.75]);
    for (weights, want) in [
        (vec![1.0], "1 weights for 2 addresses"),
        (vec![1.0, -1.0], "weight -1"),
        (vec![1.0, f64::NAN], "weight NaN"),
    ] {
        let mut bad = wire.clone();
        bad.weights = weights;
        let err = encode(&Message::Summaries(vec![bad]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{err}");
    }
}
