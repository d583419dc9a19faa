//! Loading: every example validates, YAML/JSON, environment overrides, TSIG key files,
//! warnings, and the core configs the topology produces.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fedlb_core::{
    CandidateId, ClosestBy, Distance, FarmId, FarmState, Filter, GlobalState, Health, MemberKind,
    Policy, ServerId, ServiceId, Timestamp,
};
use fedlb_topology::{
    DnsServer, Format, LoadError, Loaded, Loader, Mode, ProbeKind, Role, TsigAlgorithm, load_str,
    load_with_env,
};

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topologies")
}

fn example(name: &str) -> Loaded {
    let path = examples_dir().join(name);
    load_with_env(&path, no_env()).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()))
}

#[test]
fn every_example_topology_validates_without_warnings() {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if Format::from_path(&path).is_none() {
            continue;
        }
        seen += 1;
        let loaded =
            load_with_env(&path, no_env()).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
        assert!(
            loaded.warnings.is_empty(),
            "{}: {:#?}",
            path.display(),
            loaded
                .warnings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        );
        let t = &loaded.topology;
        // every node runs something, every server is monitored by exactly one node, or by
        // every farm node of its farm (each keeps its own view)
        for (server, _) in t.servers() {
            let by: Vec<_> = t
                .nodes()
                .into_iter()
                .filter(|n| n.monitors.contains(&server.id))
                .collect();
            let expected = match &by.first().map(|n| n.role.clone()) {
                Some(fedlb_topology::Role::Farm(f)) => t.farms[f].nodes.len(),
                _ => 1,
            };
            assert_eq!(
                by.len(),
                expected,
                "{}: {} monitored by {:?}",
                path.display(),
                server.id,
                by
            );
        }
        assert!(!t.describe().is_empty());
    }
    assert!(
        seen >= 3,
        "expected the three example topologies, found {seen}"
    );
}

const SMALL_TOML: &str = r#"
name = "small"
[global]
listen = "127.0.0.1:7400"
status = "127.0.0.1:7480"
[dns]
zone = "example.test"
ttl = 20
embedded = { listen = "127.0.0.1:5353", state_dir = "/tmp/fedlb-dns" }
[[services]]
name = "www"
fqdn = "www.example.test"
port = 8080
global = { policy = { kind = "closest", by = "rtt" } }
[[services.probes]]
kind = "http"
path = "/health"
interval = "2s"
[[farms]]
name = "eu"
listen = "127.0.0.2:7401"
status = "127.0.0.2:7481"
distance_ms = 12
[[farms.servers]]
name = "eu1"
addresses = ["127.0.0.21", "::1"]
services = ["www"]
mode = "intrusive"
"#;

const SMALL_YAML: &str = r#"
name: small
global:
  listen: "127.0.0.1:7400"
  status: "127.0.0.1:7480"
dns:
  zone: example.test
  ttl: 20
  embedded: { listen: "127.0.0.1:5353", state_dir: /tmp/fedlb-dns }
services:
  - name: www
    fqdn: www.example.test
    port: 8080
    global: { policy: { kind: closest, by: rtt } }
    probes:
      - { kind: http, path: /health, interval: 2s }
farms:
  - name: eu
    listen: "127.0.0.2:7401"
    status: "127.0.0.2:7481"
    distance_ms: 12
    servers:
      - name: eu1
        addresses: ["127.0.0.21", "::1"]
        services: [www]
        mode: intrusive
"#;

const SMALL_JSON: &str = r#"{
  "name": "small",
  "global": { "listen": "127.0.0.1:7400", "status": "127.0.0.1:7480" },
  "dns": { "zone": "example.test", "ttl": 20,
           "embedded": { "listen": "127.0.0.1:5353", "state_dir": "/tmp/fedlb-dns" } },
  "services": [ { "name": "www", "fqdn": "www.example.test", "port": 8080,
                  "global": { "policy": { "kind": "closest", "by": "rtt" } },
                  "probes": [ { "kind": "http", "path": "/health", "interval": "2s" } ] } ],
  "farms": [ { "name": "eu", "listen": "127.0.0.2:7401", "status": "127.0.0.2:7481", "distance_ms": 12,
               "servers": [ { "name": "eu1", "addresses": ["127.0.0.21", "::1"], "services": ["www"],
                              "mode": "intrusive" } ] } ]
}"#;

#[test]
fn toml_yaml_and_json_give_the_same_topology() {
    let mut from_toml = load_str(SMALL_TOML, Format::Toml, "small.toml")
        .unwrap()
        .topology;
    let mut from_yaml = load_str(SMALL_YAML, Format::Yaml, "small.yaml")
        .unwrap()
        .topology;
    let mut from_json = load_str(SMALL_JSON, Format::Json, "small.json")
        .unwrap()
        .topology;
    for t in [&mut from_toml, &mut from_yaml, &mut from_json] {
        t.file.clear();
    }
    assert_eq!(from_toml, from_yaml);
    assert_eq!(from_toml, from_json);

    let t = from_toml;
    assert_eq!(t.dns.zone, "example.test.");
    assert_eq!(t.dns.ttl, Duration::from_secs(20));
    let www = &t.services[&ServiceId::from("www")];
    assert_eq!(www.fqdn, "www.example.test.");
    assert_eq!(www.global.policy, Policy::Closest(ClosestBy::Rtt));
    assert_eq!(
        www.local.policy,
        Policy::LeastLoaded,
        "default local policy"
    );
    assert_eq!(www.probes[0].interval, Duration::from_secs(2));
    assert_eq!(
        www.probes[0].timeout,
        Duration::from_millis(800),
        "default timeout"
    );
    let eu1 = &t.farms[&FarmId::from("eu")].servers[&ServerId::from("eu1")];
    assert_eq!(
        eu1.addresses,
        vec![
            "127.0.0.21".parse::<IpAddr>().unwrap(),
            "::1".parse().unwrap()
        ]
    );
    assert_eq!(
        eu1.mode,
        Mode::Intrusive {
            agent: "eu1".into()
        },
        "agent defaults to the server name"
    );
}

#[test]
fn file_type_comes_from_the_extension() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("t.yaml", SMALL_YAML),
        ("t.yml", SMALL_YAML),
        ("t.json", SMALL_JSON),
        ("t.toml", SMALL_TOML),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let loaded = load_with_env(&path, no_env()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(loaded.topology.name, "small");
    }
    let path = dir.path().join("t.ini");
    std::fs::write(&path, SMALL_TOML).unwrap();
    assert!(matches!(
        load_with_env(&path, no_env()),
        Err(LoadError::UnknownFormat { .. })
    ));
}

#[test]
fn environment_overrides_apply_and_unrelated_variables_are_ignored() {
    let path = examples_dir().join("single-site.toml");
    let env = [
        ("FEDLB__DNS__TTL", "45"),
        ("FEDLB__GLOBAL__STATUS", "127.0.0.1:9480"),
        ("FEDLB__DNS__SERVERS", "127.0.0.1:5301,[::1]:5301"),
        // none of these may break start-up
        ("FEDLB_LOG", "debug"),
        ("FEDLB_DNS_TTL", "not a duration"),
        ("FEDLB__", "x"),
        ("FEDLB____X", "x"),
        ("PATH", "/usr/bin"),
    ];
    let t = load_with_env(&path, env).unwrap().topology;
    assert_eq!(t.dns.ttl, Duration::from_secs(45));
    assert_eq!(t.global.status, "127.0.0.1:9480".parse().unwrap());
    assert_eq!(
        t.dns.server,
        DnsServer::Rfc2136 {
            primaries: vec![
                "127.0.0.1:5301".parse().unwrap(),
                "[::1]:5301".parse().unwrap()
            ]
        }
    );
    // a number indexes an array
    let t = load_with_env(&path, [("FEDLB__FARMS__0__SERVERS__2__CAPACITY", "5")])
        .unwrap()
        .topology;
    let site = &t.farms[&FarmId::from("site")];
    assert_eq!(site.servers[&ServerId::from("web3")].capacity, 5.0);
    assert_eq!(site.servers[&ServerId::from("web1")].capacity, 100.0);
    // a humane string works too
    let t = load_with_env(&path, [("FEDLB__DNS__TTL", "2m")])
        .unwrap()
        .topology;
    assert_eq!(t.dns.ttl, Duration::from_secs(120));
    // without overrides, the file's value
    assert_eq!(
        load_with_env(&path, no_env()).unwrap().topology.dns.ttl,
        Duration::from_secs(30)
    );
}

#[test]
fn a_bad_override_names_the_variable() {
    let path = examples_dir().join("single-site.toml");
    let err = load_with_env(&path, [("FEDLB__DNS__TTL", "soon")]).unwrap_err();
    let problems = err.problems();
    assert_eq!(problems.len(), 1, "{err}");
    assert_eq!(problems[0].path, "dns.ttl");
    assert!(
        problems[0].message.contains("invalid duration \"soon\""),
        "{err}"
    );
    assert!(problems[0].message.contains("FEDLB__DNS__TTL"), "{err}");

    let err = load_with_env(
        &path,
        [("FEDLB__FARMS__0__SERVERS__1__ADDRESS", "localhost")],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: farms[0].servers[1].address: invalid ip address \"localhost\" \
             (set by environment variable FEDLB__FARMS__0__SERVERS__1__ADDRESS)",
            path.display()
        )
    );

    let err = load_with_env(&path, [("FEDLB__DNS__TLL", "30")]).unwrap_err();
    assert!(
        matches!(&err, LoadError::Invalid(ps) if ps.len() == 1 && ps[0].path == "dns.tll"),
        "{err}"
    );
    assert!(err.to_string().contains("unknown field `tll`"), "{err}");
}

fn with_tsig(tsig: &str) -> String {
    SMALL_TOML.replace(
        "embedded = { listen = \"127.0.0.1:5353\", state_dir = \"/tmp/fedlb-dns\" }",
        &format!("servers = [\"127.0.0.1:53\"]\ntsig = {tsig}"),
    )
}

#[test]
fn tsig_keygen_files_and_bare_secrets_both_parse() {
    let dir = tempfile::tempdir().unwrap();
    let secret: Vec<u8> = (0u8..32).collect();
    let b64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    std::fs::write(
        dir.path().join("keygen.conf"),
        format!("key \"fedlb-key\" {{\n\talgorithm hmac-sha384;\n\tsecret \"{b64}\";\n}};\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("bare.key"), format!("{b64}\n")).unwrap();

    let load = |tsig: &str| {
        let path = dir.path().join("t.toml");
        std::fs::write(&path, with_tsig(tsig)).unwrap();
        load_with_env(&path, no_env())
    };
    // relative to the topology file's directory
    let t = load("{ key_file = \"keygen.conf\" }").unwrap().topology;
    let key = t.dns.tsig.unwrap();
    assert_eq!(key.name, "fedlb-key");
    assert_eq!(key.algorithm, TsigAlgorithm::HmacSha384);
    assert_eq!(key.secret, secret);
    assert_eq!(t.dns.tsig_file, Some(dir.path().join("keygen.conf")));

    let t = load("{ key_file = \"bare.key\", name = \"upd\" }")
        .unwrap()
        .topology;
    let key = t.dns.tsig.unwrap();
    assert_eq!(
        (key.name.as_str(), key.algorithm),
        ("upd", TsigAlgorithm::HmacSha256)
    );
    assert_eq!(key.secret, secret);

    let t = load(&format!(
        "{{ secret = \"{b64}\", name = \"inline\", algorithm = \"hmac-sha512\" }}"
    ))
    .unwrap()
    .topology;
    assert_eq!(t.dns.tsig.unwrap().algorithm, TsigAlgorithm::HmacSha512);

    // the example key made by tsig-keygen
    let key = example("single-site.toml").topology.dns.tsig.unwrap();
    assert_eq!((key.name.as_str(), key.secret.len()), ("fedlb-key", 32));

    // a bare secret needs a name; an algorithm must agree with the file
    let err = load("{ key_file = \"bare.key\" }").unwrap_err();
    assert_eq!(err.problems()[0].path, "dns.tsig.name", "{err}");
    let err = load("{ key_file = \"keygen.conf\", algorithm = \"hmac-sha256\" }").unwrap_err();
    assert!(
        err.to_string().contains("does not match key \"fedlb-key\""),
        "{err}"
    );
    let err = load("{ key_file = \"keygen.conf\", name = \"other\" }").unwrap_err();
    assert!(
        err.to_string()
            .contains("has no key \"other\" (it has \"fedlb-key\")"),
        "{err}"
    );

    // nodes that do not publish may skip the key file
    let path = dir.path().join("t.toml");
    std::fs::write(&path, with_tsig("{ key_file = \"missing.conf\" }")).unwrap();
    let t = Loader::new()
        .env(no_env())
        .read_key_files(false)
        .load(&path)
        .unwrap()
        .topology;
    assert!(t.dns.tsig.is_none());
    assert_eq!(t.dns.tsig_file, Some(dir.path().join("missing.conf")));
}

#[test]
fn suspicious_settings_give_warnings() {
    let text = SMALL_TOML.replace("ttl = 20", "ttl = \"1h\"").replace(
        "interval = \"2s\"",
        "interval = \"200ms\"\nfall = 1\ntimeout = \"300ms\"",
    ) + r#"
[[services.probes]]
kind = "hops"
interval = "10s"
"#;
    let loaded = load_str(&text, Format::Toml, "warn.toml").unwrap();
    let warnings: Vec<(String, String)> = loaded
        .warnings
        .iter()
        .map(|w| (w.path.clone(), w.message.clone()))
        .collect();
    let has = |path: &str, text: &str| warnings.iter().any(|(p, m)| p == path && m.contains(text));
    assert!(
        has(
            "dns.ttl",
            "ttl 60 min is far above service \"www\"'s failure detection (200 ms)"
        ),
        "{warnings:#?}"
    );
    assert!(
        has(
            "services[0].probes[0]",
            "rise 2 / fall 1 with a 200 ms interval"
        ),
        "{warnings:#?}"
    );
    assert!(
        has(
            "services[0].probes[0].timeout",
            "timeout 300 ms is not below the interval 200 ms"
        ),
        "{warnings:#?}"
    );
    assert!(
        has("services[0].probes[1].interval", "hop counts change rarely"),
        "{warnings:#?}"
    );
    assert_eq!(warnings.len(), 4, "{warnings:#?}");
    assert_eq!(
        loaded.warnings[0].to_string(),
        format!(
            "warn.toml: {}: {}",
            loaded.warnings[0].path, loaded.warnings[0].message
        )
    );

    // a service without a health probe, a metric nobody measures
    let text = SMALL_TOML
        .replace(
            "kind = \"http\"\npath = \"/health\"\ninterval = \"2s\"",
            "kind = \"hops\"",
        )
        .replace(
            "global = { policy = { kind = \"closest\", by = \"rtt\" } }",
            "global = { policy = { kind = \"lowest_metric\", metric = \"queue\" } }",
        );
    let loaded = load_str(&text, Format::Toml, "warn.toml").unwrap();
    let paths: BTreeSet<&str> = loaded.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        paths,
        BTreeSet::from(["services[0].probes", "services[0].global.policy.metric"]),
        "{:#?}",
        loaded.warnings
    );
}

#[test]
fn three_continents_gives_the_core_its_configs() {
    let t = example("three-continents.toml").topology;
    let www = ServiceId::from("www");

    // global tier: three farms and one direct server offer www, with great-circle distances
    let gc = t.global_config();
    let g = &gc.services[&www];
    let ids: Vec<&str> = g.members.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["america", "asia", "europe", "fra-web"]);
    let km = |id: &str| match g
        .members
        .iter()
        .find(|m| m.id.as_str() == id)
        .unwrap()
        .distance
    {
        Some(Distance::Kilometres(km)) => km,
        other => panic!("{id}: {other:?}"),
    };
    assert!(
        (km("europe") - 478.0).abs() < 5.0,
        "Frankfurt–Paris {}",
        km("europe")
    );
    assert!(km("america") > 6000.0 && km("asia") > 9000.0);
    assert!(matches!(
        &g.selector.policy,
        Policy::Composite { filters, rank, .. } if filters == &[Filter::MaxLoad(0.8)] && **rank == Policy::Closest(ClosestBy::Auto)
    ));
    let europe = g
        .members
        .iter()
        .find(|m| m.id.as_str() == "europe")
        .unwrap();
    assert_eq!(europe.capacity, 300.0, "capacity of the farm's www servers");
    // a farm's liveness follows its summary heartbeat (1 s reports → 400 ms summaries)
    assert_eq!(europe.liveness.stale_after, Duration::from_millis(1_200));
    assert_eq!(europe.liveness.down_after, Duration::from_millis(2_400));
    assert_eq!(europe.sources, vec!["europe".to_owned()]);

    // farm tier: asia overrides www's local policy
    let asia = t.farm_config(&FarmId::from("asia")).unwrap();
    assert_eq!(asia.services[&www].selector.policy, Policy::FastestResponse);
    assert_eq!(asia.services[&www].selector.answers, 2);
    let europe = t.farm_config(&FarmId::from("europe")).unwrap();
    assert_eq!(europe.services[&www].selector.policy, Policy::LeastLoaded);
    assert_eq!(
        europe
            .services
            .keys()
            .map(|s| s.as_str())
            .collect::<Vec<_>>(),
        ["db", "www"],
        "only services its servers offer"
    );
    assert!(t.farm_config(&FarmId::from("mars")).is_none());

    // monitors: one per service instance, probes on their own schedules
    let mons = t.monitor_configs(&ServerId::from("us-web-2"));
    assert_eq!(mons.len(), 2);
    let w = mons.iter().find(|m| m.service == www).unwrap();
    let intervals: Vec<(&str, Duration, bool)> = w
        .probes
        .iter()
        .map(|p| (p.id.as_str(), p.interval, p.affects_health))
        .collect();
    assert_eq!(
        intervals,
        [
            ("health", Duration::from_secs(1), true),
            ("load", Duration::from_secs(2), false),
        ]
    );
    let load = &t.services[&www].probes[1];
    assert!(matches!(
        &load.kind,
        ProbeKind::Load(fedlb_topology::LoadSource::NginxStubStatus { url }) if url == "http://server:8080/nginx_status"
    ));

    // nodes: global, three farm nodes, five agents; agents report to their farm or the global node
    let nodes = t.nodes();
    let roles: Vec<(&str, &Role, Option<&str>)> = nodes
        .iter()
        .map(|n| (n.name.as_str(), &n.role, n.reports_to.as_deref()))
        .collect();
    assert_eq!(roles.len(), 9, "{roles:#?}");
    assert!(roles.contains(&("global", &Role::Global, None)));
    assert!(roles.contains(&("asia", &Role::Farm(FarmId::from("asia")), Some("global"))));
    assert!(roles.contains(&("us-agent-2", &Role::Agent, Some("america"))));
    assert!(roles.contains(&("fra-web", &Role::Agent, Some("global"))));
    assert_eq!(
        t.monitored_by(&ServerId::from("fra-db")).as_deref(),
        Some("fra-db"),
        "its command probe needs an agent on the server"
    );
    assert!(roles.contains(&("fra-db", &Role::Agent, Some("global"))));
    assert_eq!(
        t.monitored_by(&ServerId::from("ap-web-1")).as_deref(),
        Some("asia")
    );
    assert_eq!(
        t.monitors_run_by("asia").len(),
        2,
        "ap-web-1 www, ap-web-2 www"
    );

    let text = t.describe();
    for needle in [
        "decides www among america (6203 km), asia (9333 km), europe (478 km), fra-web (0 km) by closest among load ≤ 80 %",
        "us-agent-2 (agent) → reports to america",
        "monitors ap-web-2 [127.0.0.42] remotely at 127.0.0.142",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn the_configs_drive_the_core_state_machines() {
    let t = example("two-sites.toml").topology;
    let www = ServiceId::from("www");
    let now = Timestamp::ZERO;
    let mut paris = FarmState::new(t.farm_config(&FarmId::from("paris")).unwrap(), 1, 7, now);
    let mut global = GlobalState::new(t.global_config(), 7);
    for server in ["paris-1", "paris-2"] {
        for mon in t.monitor_configs(&ServerId::from(server)) {
            let report = fedlb_core::Report {
                service: mon.service.clone(),
                server: mon.server.clone(),
                epoch: 1,
                seq: 1,
                health: Health::Up,
                reason: "all probes passing".into(),
                readings: Default::default(),
            };
            paris.handle_report(&report, now).unwrap();
        }
    }
    let summary = paris.summary(&www, now).unwrap();
    assert_eq!(summary.health, Health::Up);
    global.handle_summary(&summary, now).unwrap();
    let decision = global.tier().services()[&www].decision().unwrap().clone();
    assert_eq!(
        decision.chosen,
        vec![CandidateId::from("paris")],
        "{}",
        decision.why
    );
}

#[test]
fn item3_the_configs_declare_each_members_kind() {
    let t = example("three-continents.toml").topology;
    let www = ServiceId::from("www");
    let gc = t.global_config();
    let kinds: Vec<(&str, MemberKind)> = gc.services[&www]
        .members
        .iter()
        .map(|m| (m.id.as_str(), m.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("america", MemberKind::Farm),
            ("asia", MemberKind::Farm),
            ("europe", MemberKind::Farm),
            ("fra-web", MemberKind::Server),
        ]
    );
    let europe = t.farm_config(&FarmId::from("europe")).unwrap();
    let members = &europe.services[&www].members;
    assert!(!members.is_empty());
    assert!(members.iter().all(|m| m.kind == MemberKind::Server));
}

#[test]
fn balance_options_reach_the_core_configs_from_the_file_and_the_environment() {
    let path = examples_dir().join("demo.toml");
    let env = [
        ("FEDLB__SERVICES__0__LOCAL__ANSWERS", "weighted"),
        ("FEDLB__SERVICES__0__LOCAL__POLICY", "two_choices"),
        ("FEDLB__DNS__TTL_BY_LOAD", "true"),
        ("FEDLB__DNS__EMBEDDED__SPREAD", "weighted"),
    ];
    let t = load_with_env(&path, env).unwrap().topology;
    assert_eq!(t.dns.spread, fedlb_core::Spread::Weighted);
    let www = ServiceId::from("www");
    let local = &t.farm_config(&FarmId::from("eu-west")).unwrap().services[&www].selector;
    assert_eq!(local.set, fedlb_core::AnswerSet::Weighted);
    assert_eq!(local.policy, Policy::TwoChoices);
    let g = t.global_config();
    assert!(g.ttl[&www].by_load);
    assert_eq!(g.ttl[&www].min, Duration::from_secs(5));
    // defaults, chosen by the scenario suite: each farm answers its healthy servers weighted
    // by headroom, a region over its closest farm's limit is split, and the embedded server
    // hands each client subnet one member by weight
    let t = load_with_env(&path, no_env()).unwrap().topology;
    assert_eq!(t.dns.spread, fedlb_core::Spread::Hashed);
    let g = t.global_config();
    assert!(!g.ttl[&www].by_load);
    let sel = &g.services[&www].selector;
    assert_eq!(
        (sel.set, sel.spill, sel.answers),
        (fedlb_core::AnswerSet::Top, fedlb_core::Spill::Split, 1)
    );
    let local = &t.farm_config(&FarmId::from("eu-west")).unwrap().services[&www].selector;
    assert_eq!(local.set, fedlb_core::AnswerSet::Weighted);
    assert_eq!(local.policy, Policy::LeastLoaded);
    // a tier that names its policy answers that policy's top one
    let t = load_with_env(
        &path,
        [("FEDLB__SERVICES__0__LOCAL__POLICY", "round_robin")],
    )
    .unwrap()
    .topology;
    let local = &t.farm_config(&FarmId::from("eu-west")).unwrap().services[&www].selector;
    assert_eq!((local.set, local.answers), (fedlb_core::AnswerSet::Top, 1));
    // a split needs the regions' composite (closest under 80 %, else least loaded)
    let t = load_with_env(&path, [("FEDLB__SERVICES__0__GLOBAL__SPILL", "split")])
        .unwrap()
        .topology;
    assert_eq!(
        t.global_config().services[&www].selector.spill,
        fedlb_core::Spill::Split
    );
}
