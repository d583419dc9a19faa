//! A report names its member by a string; the tier finds the member's own id by that name
//! (shared, not rebuilt), so taking a report allocates no name.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use fedlb_core::*;

fn farm() -> FarmState {
    let members = ["s1", "s2"]
        .iter()
        .enumerate()
        .map(|(i, n)| MemberSpec {
            id: CandidateId::from(*n),
            kind: MemberKind::Server,
            addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8 + 1))],
            capacity: 100.0,
            distance: None,
            liveness: Liveness::from_heartbeat(Duration::from_secs(1), 3),
            sources: Vec::new(),
        })
        .collect();
    let mut services = BTreeMap::new();
    services.insert(
        ServiceId::from("www"),
        TierService {
            selector: SelectorConfig::new(Policy::LeastLoaded),
            members,
        },
    );
    FarmState::new(
        FarmConfig {
            farm: "f".into(),
            services,
            heartbeat: Duration::from_secs(1),
            metrics: Default::default(),
            node: String::new(),
        },
        1,
        1,
        Timestamp::from_millis(0),
    )
}

#[test]
fn a_member_is_found_by_name_as_the_tiers_own_id() {
    let farm = farm();
    let www = ServiceId::from("www");
    let own = farm.tier().services()[&www]
        .members
        .keys()
        .find(|k| k.as_str() == "s2")
        .expect("declared")
        .clone();
    let found = farm.tier().member_id(&www, "s2").expect("found by name");
    assert_eq!(found, own);
    assert!(
        std::ptr::eq(found.as_str(), own.as_str()),
        "the id was rebuilt instead of shared"
    );
    assert_eq!(farm.tier().member_id(&www, "s3"), None);
    assert_eq!(farm.tier().member_id(&"api".into(), "s2"), None);
}

#[test]
fn a_report_for_an_unknown_member_is_still_refused_by_name() {
    let mut farm = farm();
    let r = Report {
        service: "www".into(),
        server: "s9".into(),
        epoch: 1,
        seq: 1,
        health: Health::Up,
        reason: String::new(),
        readings: Readings::default(),
    };
    let e = farm
        .handle_report(&r, Timestamp::from_millis(10))
        .unwrap_err();
    assert!(e.to_string().contains("s9"), "{e}");
}
