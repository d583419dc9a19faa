//! The status document keeps the schema documented in docs/status.md, and the page and
//! table show the chosen path.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use fedlb_core::*;
use fedlb_node::status::{self, GlobalExtras, PublishStatus};
use serde_json::Value;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

fn member(name: &str, last: u8, distance: Option<f64>) -> MemberSpec {
    MemberSpec {
        id: name.into(),
        kind: MemberKind::Server,
        addresses: if last == 0 { vec![] } else { vec![ip(last)] },
        capacity: 100.0,
        distance: distance.map(Distance::Pinned),
        liveness: Liveness::from_heartbeat(Duration::from_secs(1), 3),
    }
}

fn farm_member(name: &str, distance: Option<f64>) -> MemberSpec {
    MemberSpec {
        kind: MemberKind::Farm,
        ..member(name, 0, distance)
    }
}

fn report(server: &str, health: Health, pending: u64) -> Report {
    Report {
        service: "www".into(),
        server: server.into(),
        epoch: 1,
        seq: 1,
        health,
        reason: if health == Health::Up {
            "all probes passing".into()
        } else {
            "http failing: connection refused".into()
        },
        readings: Readings {
            pending: Some(Sample::new(pending, Timestamp::from_millis(500))),
            ..Readings::default()
        },
    }
}

fn world() -> (FarmState, GlobalState, GlobalExtras, Timestamp) {
    let now = Timestamp::from_millis(1_000);
    let mut services = BTreeMap::new();
    services.insert(
        ServiceId::from("www"),
        TierService {
            selector: SelectorConfig::new(Policy::LeastLoaded),
            members: vec![member("eu1", 11, None), member("eu2", 12, None)],
        },
    );
    let mut farm = FarmState::new(
        FarmConfig {
            farm: "eu-west".into(),
            services,
            heartbeat: Duration::from_secs(1),
            metrics: Default::default(),
        },
        1,
        1,
        Timestamp::ZERO,
    );
    farm.handle_report(&report("eu1", Health::Down, 0), now)
        .unwrap();
    farm.handle_report(&report("eu2", Health::Up, 7), now)
        .unwrap();
    let summary = farm.summary(&"www".into(), now).unwrap();

    let mut gservices = BTreeMap::new();
    gservices.insert(
        ServiceId::from("www"),
        TierService {
            selector: SelectorConfig::new(Policy::Closest(ClosestBy::Auto)),
            members: vec![
                farm_member("eu-west", Some(12.0)),
                farm_member("us-east", Some(85.0)),
            ],
        },
    );
    let mut global = GlobalState::new(GlobalConfig::new(gservices), 1);
    global.handle_summary(&summary, now).unwrap();
    let mut extras = GlobalExtras::default();
    extras
        .summaries
        .insert(("www".into(), "eu-west".into()), (summary, now));
    extras
        .fqdns
        .insert("www".into(), "www.example.test.".into());
    extras.published.insert(
        ("www".into(), None),
        PublishStatus {
            addresses: vec![ip(12)],
            ttl: 30,
            result: "ok".into(),
            at_s_ago: Some(0.5),
            desired: vec![ip(12)],
            pending: None,
            degraded: false,
            primaries: vec![status::PrimaryStatus {
                server: "127.0.0.1:53".into(),
                addresses: Some(vec![ip(12)]),
                result: "ok".into(),
            }],
        },
    );
    (farm, global, extras, now)
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

#[test]
fn global_status_has_the_documented_shape() {
    let (_, global, extras, now) = world();
    let s = status::global_status("global", &global, &extras, Duration::from_secs(5), now);
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(keys(&v), ["node", "role", "schema", "services", "uptime_s"]);
    assert_eq!(v["schema"], 1);
    assert_eq!(v["role"], "global");
    let svc = &v["services"][0];
    assert_eq!(
        keys(svc),
        ["farms", "fqdn", "global", "published", "service"]
    );
    assert_eq!(svc["fqdn"], "www.example.test.");
    let g = &svc["global"];
    assert_eq!(
        keys(g),
        [
            "answers",
            "candidates",
            "chosen",
            "degraded",
            "policy",
            "since_s",
            "why"
        ]
    );
    assert_eq!(g["policy"], "closest");
    assert_eq!(g["chosen"][0], "eu-west");
    assert_eq!(g["answers"][0], "127.0.0.12");
    assert_eq!(g["degraded"], false);
    let eu = &g["candidates"][0];
    assert_eq!(
        keys(eu),
        [
            "addresses",
            "chosen",
            "health",
            "id",
            "kind",
            "members",
            "rank",
            "readings",
            "reason",
            "shown"
        ]
    );
    assert_eq!(eu["kind"], "farm");
    assert_eq!(eu["members"]["up"], 1);
    assert_eq!(eu["shown"], "12 ms");
    let us = &g["candidates"][1];
    assert_eq!(us["health"], "unknown");
    assert_eq!(us["reason"], "not heard from yet");
    assert_eq!(us["rank"], Value::Null);

    let farm = &svc["farms"][0];
    assert_eq!(keys(farm), ["farm", "heard_s_ago", "local"]);
    assert_eq!(farm["local"]["policy"], "least loaded");
    assert_eq!(farm["local"]["chosen"][0], "eu2");
    let servers = farm["local"]["candidates"].as_array().unwrap();
    assert_eq!(servers.len(), 2);
    assert_eq!(servers[0]["id"], "eu1");
    assert_eq!(servers[0]["health"], "down");
    assert_eq!(servers[0]["reason"], "http failing: connection refused");
    assert_eq!(servers[1]["readings"]["pending"]["value"], 7.0);
    assert_eq!(servers[1]["readings"]["pending"]["age_s"], 0.5);
    assert_eq!(
        keys(&svc["published"]),
        [
            "addresses",
            "at_s_ago",
            "degraded",
            "desired",
            "pending",
            "primaries",
            "result",
            "ttl"
        ]
    );
    assert_eq!(
        keys(&svc["published"]["primaries"][0]),
        ["addresses", "result", "server"]
    );

    // and it reads back
    let back: status::Status = serde_json::from_value(v).unwrap();
    assert_eq!(back, s);
}

#[test]
fn farm_status_shows_its_local_decision_only() {
    let (farm, _, _, now) = world();
    let s = status::farm_status("eu-west", &farm, Duration::from_secs(5), now);
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["role"], "farm");
    assert_eq!(v["services"][0]["global"], Value::Null);
    assert_eq!(v["services"][0]["farms"][0]["local"]["chosen"][0], "eu2");
    assert_eq!(
        v["services"][0]["farms"][0]["local"]["why"],
        "eu2: least loaded (load 7 %) of 1 healthy server; 1 not healthy"
    );
}

#[test]
fn html_page_highlights_the_chosen_path() {
    let (_, global, extras, now) = world();
    let s = status::global_status("global", &global, &extras, Duration::from_secs(5), now);
    let html = status::render_html(&s, 2);
    assert!(
        html.contains(r#"<li class="chosen up" data-id="eu-west">"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<li class="chosen up" data-id="eu2">"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<li class=" down" data-id="eu1">"#),
        "{html}"
    );
    assert!(html.contains("http-equiv=\"refresh\""));
    assert!(html.contains("least loaded"));
}

#[test]
fn table_marks_chosen_candidates() {
    let (_, global, extras, now) = world();
    let s = status::global_status("global", &global, &extras, Duration::from_secs(5), now);
    let table = status::render_table(&s);
    assert!(table.contains("global  closest"), "{table}");
    assert!(table.contains("* eu-west"), "{table}");
    assert!(table.contains("* eu2"), "{table}");
    assert!(table.contains("dns     127.0.0.12 ttl 30 — ok"), "{table}");
}

#[test]
fn item3_a_farms_policy_is_read_from_its_summary_never_from_the_why() {
    let (_, global, mut extras, now) = world();
    let key = (ServiceId::from("www"), FarmId::from("eu-west"));
    assert_eq!(extras.summaries[&key].0.policy, "least loaded");
    // a why that reads like another policy, and one that names none (fail-static)
    for why in [
        "eu2: round robin (turn 3) of 1 healthy server",
        "no healthy candidate of 2; keeping last good answer eu2 (fail-static)",
    ] {
        extras.summaries.get_mut(&key).unwrap().0.why = why.into();
        let s = status::global_status("global", &global, &extras, Duration::from_secs(5), now);
        let local = &s.services[0].farms[0].local;
        assert_eq!(local.policy, "least loaded", "why {why:?}");
        assert_eq!(local.why, why);
        let table = status::render_table(&s);
        assert!(
            table.contains("farm eu-west      least loaded"),
            "why {why:?}: {table}"
        );
        assert!(!table.contains("round robin  "), "{table}");
    }
    // the field is what counts: a farm that says it runs another policy is shown so
    extras.summaries.get_mut(&key).unwrap().0.policy = "fastest response".into();
    let s = status::global_status("global", &global, &extras, Duration::from_secs(5), now);
    assert_eq!(s.services[0].farms[0].local.policy, "fastest response");
}

#[test]
fn item3_a_candidates_kind_is_the_declared_one() {
    let (_, global, extras, now) = world();
    let s = status::global_status("global", &global, &extras, Duration::from_secs(5), now);
    let g = s.services[0].global.as_ref().unwrap();
    let kinds: Vec<(&str, &str)> = g
        .candidates
        .iter()
        .map(|c| (c.id.as_str(), c.kind.as_str()))
        .collect();
    // us-east has sent no summary yet: it is a farm all the same
    assert_eq!(kinds, [("eu-west", "farm"), ("us-east", "farm")]);
    assert_eq!(g.candidates[1].members, None);
    let servers = &s.services[0].farms[0].local.candidates;
    assert!(servers.iter().all(|c| c.kind == "server"), "{servers:?}");

    // a direct server that happens to share a farm's summary key stays a server
    let mut gservices = BTreeMap::new();
    gservices.insert(
        ServiceId::from("www"),
        TierService {
            selector: SelectorConfig::new(Policy::Closest(ClosestBy::Auto)),
            members: vec![member("eu-west", 12, Some(12.0))],
        },
    );
    let direct = GlobalState::new(GlobalConfig::new(gservices), 1);
    let s = status::global_status("global", &direct, &extras, Duration::from_secs(5), now);
    let g = s.services[0].global.as_ref().unwrap();
    assert_eq!(g.candidates[0].kind, "server");
}

/// With regions, each service lists each region's decision, ranked from there, next to the
/// default region's; the table and the page show them.
#[test]
fn regions_are_shown_with_their_own_choice_and_why() {
    let (_, _, mut extras, now) = world();
    let mut gservices = BTreeMap::new();
    gservices.insert(
        ServiceId::from("www"),
        TierService {
            selector: SelectorConfig {
                hysteresis: Hysteresis::NONE,
                ..SelectorConfig::new(Policy::Closest(ClosestBy::Auto))
            },
            members: vec![
                member("eu-1", 12, Some(12.0)),
                member("us-1", 21, Some(85.0)),
            ],
        },
    );
    let us = RegionSpec {
        id: "us".into(),
        distances: [
            (CandidateId::from("eu-1"), Distance::Pinned(90.0)),
            (CandidateId::from("us-1"), Distance::Pinned(8.0)),
        ]
        .into(),
    };
    let config = GlobalConfig {
        regions: vec![us],
        ..GlobalConfig::new(gservices)
    };
    let mut global = GlobalState::new(config, 1);
    global.set_coalesce(Duration::ZERO);
    for server in ["eu-1", "us-1"] {
        global
            .handle_report(&report(server, Health::Up, 1), now)
            .unwrap();
    }
    extras.published.insert(("www".into(), Some("us".into())), {
        let mut p = extras.published[&("www".into(), None)].clone();
        p.addresses = vec![ip(21)];
        p.desired = vec![ip(21)];
        p
    });
    let s = status::global_status("global", &global, &extras, Duration::from_secs(5), now);
    let v = serde_json::to_value(&s).unwrap();
    let svc = &v["services"][0];
    assert_eq!(svc["global"]["chosen"][0], "eu-1");
    let region = &svc["regions"][0];
    assert_eq!(keys(region), ["decision", "published", "region"]);
    assert_eq!(region["region"], "us");
    assert_eq!(region["decision"]["chosen"][0], "us-1");
    assert_eq!(region["decision"]["answers"][0], "127.0.0.21");
    let why = region["decision"]["why"].as_str().unwrap();
    assert!(why.starts_with("us clients: us-1: closest (8 ms)"), "{why}");
    let ranked: Vec<(&str, &str)> = region["decision"]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_str().unwrap(), c["shown"].as_str().unwrap()))
        .collect();
    assert_eq!(ranked, [("eu-1", "90 ms"), ("us-1", "8 ms")]);
    assert_eq!(region["published"]["addresses"][0], "127.0.0.21");

    let table = status::render_table(&s);
    assert!(table.contains("region us"), "{table}");
    assert!(table.contains("why: us clients: us-1"), "{table}");
    let page = status::render_html(&s, 5);
    assert!(page.contains(r#"<tr data-region="us"><td>us</td><td><b>us-1</b> 127.0.0.21"#));
}
