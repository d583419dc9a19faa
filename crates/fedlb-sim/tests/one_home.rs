//! The scenario file reads durations, policy names and locations by the topology's rules.

use std::time::Duration;

use fedlb_sim::Scenario;
use fedlb_topology::policy::PolicyKind;

const REGION: &str = "[[regions]]\nname = \"eu\"\nrate = 1\n";

#[test]
fn item4_scenario_durations_are_the_topologys() {
    // "1m 30s" (a space between parts) and "2sec" are the topology's forms
    let sc = Scenario::parse(
        &format!("duration = \"1h\"\nwarmup = \"1m 30s\"\nbin = \"2sec\"\n{REGION}"),
        "s.toml",
    )
    .unwrap();
    assert_eq!(sc.warmup, Duration::from_secs(90));
    assert_eq!(sc.bin, Duration::from_secs(2));
    // and a bare number stays seconds in a scenario
    let sc = Scenario::parse(&format!("duration = \"600\"\n{REGION}"), "s.toml").unwrap();
    assert_eq!(sc.duration, Duration::from_secs(600));
}

#[test]
fn item4_scenario_policy_names_are_the_topologys_table() {
    for kind in PolicyKind::ALL {
        let text = format!(
            "duration = \"5m\"\n{REGION}[[policies]]\nname = \"p\"\nlocal = \"{}\"\n",
            kind.name()
        );
        match (kind.plain(), Scenario::parse(&text, "s.toml")) {
            (Some(policy), Ok(sc)) => assert_eq!(sc.variants[0].local, Some(policy)),
            (None, Err(e)) => assert!(
                e.to_string().contains(&format!(
                    "policies[0].local: policy \"{}\" needs fields",
                    kind.name()
                )),
                "{e}"
            ),
            (want, got) => panic!("{}: expected {want:?}, got {got:?}", kind.name()),
        }
    }
}

#[test]
fn item4_scenario_locations_are_checked_like_the_topologys() {
    let e = Scenario::parse(
        &format!("duration = \"5m\"\n[farms.eu]\nlocation = {{ lat = -95, lon = 0 }}\n{REGION}"),
        "s.toml",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "s.toml: farms.eu.location.lat: latitude -95 is out of range -90..=90"
    );
}
