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
        sources: Vec::new(),
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
            node: "eu-west".into(),
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
    extras.summaries.insert(
        ("www".into(), "eu-west".into(), "eu-west".into()),
        (summary, now),
    );
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
            deferred: None,
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
    assert_eq!(
        keys(&v),
        ["changes", "node", "role", "schema", "services", "uptime_s"]
    );
    assert_eq!(v["changes"], serde_json::json!([]));
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
            "node",
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
    assert_eq!(keys(farm), ["farm", "heard_s_ago", "local", "node"]);
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
    let key = (
        ServiceId::from("www"),
        FarmId::from("eu-west"),
        "eu-west".to_owned(),
    );
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

#[test]
fn one_of_several_global_nodes_shows_its_peers_and_why_it_defers() {
    let (_, global, mut extras, now) = world();
    extras.peers = Some(status::PeersStatus {
        global_nodes: vec!["g1".into(), "g2".into()],
        shares_dns: true,
        farm_nodes: vec![
            status::FarmNodeSeen {
                farm: "eu-west".into(),
                node: "eu-west".into(),
                heard_s_ago: Some(0.2),
            },
            status::FarmNodeSeen {
                farm: "us-east".into(),
                node: "us-east".into(),
                heard_s_ago: None,
            },
        ],
        heard: [("www".to_owned(), 1)].into(),
    });
    let deferred = "defers to g1: it hears 2 candidates, this node 1";
    extras
        .published
        .get_mut(&("www".into(), None))
        .unwrap()
        .deferred = Some(deferred.into());
    let s = status::global_status("g2", &global, &extras, Duration::from_secs(5), now);
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(
        keys(&v),
        [
            "changes", "node", "peers", "role", "schema", "services", "uptime_s"
        ]
    );
    assert_eq!(
        keys(&v["peers"]),
        ["farm_nodes", "global_nodes", "heard", "shares_dns"]
    );
    assert_eq!(v["peers"]["farm_nodes"][1]["heard_s_ago"], Value::Null);
    assert_eq!(v["peers"]["heard"]["www"], 1);
    assert_eq!(v["services"][0]["published"]["deferred"], deferred);
    let table = status::render_table(&s);
    assert!(
        table.contains("global nodes: g1, g2 (one shared DNS server"),
        "{table}"
    );
    assert!(
        table.contains("farm node us-east          never heard"),
        "{table}"
    );
    assert!(table.contains(deferred), "{table}");
}

/// The timeline and the load history as the running node fills them (the core's changes,
/// recorded with wall-clock times): the documented shape, newest first, and shown by the
/// page (with a chart per candidate) and by `fedlb status --changes`.
#[test]
fn changes_and_loads_have_the_documented_shape_and_are_shown() {
    let (_, mut global, extras, now) = world();
    global.record_changes(true);
    // us-east reports, then eu-west's summary says it is down: the answer moves, for health
    let (mut farm, _, _, _) = world();
    let later = now + Duration::from_secs(2);
    farm.handle_report(&report("eu2", Health::Down, 0), later)
        .unwrap();
    let mut down = farm.summary(&"www".into(), later).unwrap();
    down.seq += 10;
    let mut us = down.clone();
    us.farm = "us-east".into();
    us.node = "us-east".into();
    us.health = Health::Up;
    us.addresses = vec![ip(21)];
    us.chosen = vec!["us1".into()];
    us.degraded = false;
    us.members = Members { up: 1, total: 1 };
    global.handle_summary(&us, later).unwrap();
    global.handle_summary(&down, later).unwrap();
    global.handle_timeout(later + Duration::from_millis(200));
    let changes = global.take_changes();
    assert!(!changes.is_empty(), "the answer moved");

    let mut timeline = status::Timeline::default();
    let wall = std::time::UNIX_EPOCH + Duration::from_secs(1_764_511_327);
    let at = later + Duration::from_secs(1);
    timeline.record(changes, at, wall);
    let mut loads = status::LoadHistory::default();
    let key = |farm: Option<&str>, id: &str, kind: &str| status::SeriesKey {
        service: "www".into(),
        farm: farm.map(str::to_owned),
        id: id.into(),
        kind: kind.into(),
    };
    loads.sample(
        at,
        [
            (key(None, "us-east", "farm"), Some(0.07)),
            (key(Some("eu-west"), "eu2", "server"), Some(0.5)),
        ],
    );

    let mut s = status::global_status("global", &global, &extras, Duration::from_secs(5), at);
    s.changes = timeline.statuses(at);
    s.loads = loads.statuses(at);
    let v = serde_json::to_value(&s).unwrap();
    let c = &v["changes"][0];
    assert_eq!(
        keys(c),
        [
            "ago_s", "at", "cause", "from", "region", "service", "subject", "to", "why"
        ]
    );
    assert_eq!(keys(&c["to"]), ["answers", "chosen", "degraded"]);
    assert_eq!(c["service"], "www");
    assert_eq!(c["region"], Value::Null);
    assert_eq!(c["to"]["chosen"][0], "us-east");
    assert_eq!(c["to"]["answers"][0], "127.0.0.21");
    assert_eq!(c["cause"], "health");
    assert_eq!(c["subject"], "eu-west");
    assert!(c["ago_s"].as_f64().unwrap() < 1.0 + 1e-9, "{c}");
    assert!(c["at"].as_f64().unwrap() <= 1_764_511_327.0, "{c}");
    let l = &v["loads"][0];
    assert_eq!(keys(l), ["farm", "id", "kind", "points", "service"]);
    // a candidate of this node's own decision first, then farms' servers
    assert_eq!(v["loads"][0]["id"], "us-east");
    assert_eq!(v["loads"][0]["points"][0], serde_json::json!([0.0, 7.0]));
    assert_eq!(v["loads"][1]["farm"], "eu-west");
    let back: status::Status = serde_json::from_value(v).unwrap();
    assert_eq!(back, s);

    let page = status::render_html(&s, 2);
    assert!(
        page.contains(r#"<h2 id="changes">what changed, when</h2>"#),
        "{page}"
    );
    assert!(
        page.contains(r#"data-seq="0" data-service="www" data-cause="health""#),
        "{page}"
    );
    assert!(
        page.contains("eu-west (127.0.0.12) → <b>us-east (127.0.0.21)</b>"),
        "{page}"
    );
    assert!(page.contains("health: eu-west"), "{page}");
    assert!(page.contains("2025-11-30 "), "the wall-clock date: {page}");
    assert!(
        page.contains(r#"<svg class="load" data-load="us-east""#),
        "{page}"
    );
    assert!(
        page.contains(r#"<svg class="load" data-load="eu2""#),
        "{page}"
    );
    assert!(!page.contains("<script"), "no script");

    let table = status::render_changes(&s);
    assert!(
        table.contains("changes of its decisions, newest first"),
        "{table}"
    );
    assert!(
        table.contains("eu-west (127.0.0.12) → us-east (127.0.0.21)"),
        "{table}"
    );
    assert!(table.contains("health: eu-west"), "{table}");
}
