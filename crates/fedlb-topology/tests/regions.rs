//! Regions: read from every syntax, typed in the model, their distances and client lists
//! handed on in plain form, their keys and servers, their warnings, and what
//! `fedlb check` says of them. Invalid regions are in `tests/invalid/region_*.toml`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use fedlb_core::{CandidateId, ClosestBy, Distance, Filter, Policy, RegionId, ServiceId};
use fedlb_topology::{Continent, Format, LoadError, Loaded, Loader, load_str, load_with_env};
use ipnet::IpNet;

/// Two farms and a direct server, all with locations; two regions: `eu` by prefixes and
/// location, `us` by a prefix, countries and pinned distances.
const REGIONS_TOML: &str = r#"
name = "regions"
[global]
listen = "127.0.0.1:7400"
status = "127.0.0.1:7480"
location = { lat = 50.11, lon = 8.68 }
[dns]
zone = "example.test."
embedded = { listen = "127.0.0.1:5353", state_dir = "state" }
geoip_database = "geo/country.mmdb"
[[services]]
name = "www"
fqdn = "www.example.test."
port = 8080
[[services.probes]]
kind = "tcp"
[[farms]]
name = "eu-west"
listen = "127.0.0.2:7401"
status = "127.0.0.2:7481"
location = { lat = 48.85, lon = 2.35 }
[[farms.servers]]
name = "eu1"
address = "127.0.0.21"
services = ["www"]
[[farms]]
name = "us-east"
listen = "127.0.0.3:7401"
status = "127.0.0.3:7481"
location = { lat = 40.71, lon = -74.01 }
[[farms.servers]]
name = "us1"
address = "127.0.0.31"
services = ["www"]
[[servers]]
name = "fra"
address = "127.0.0.51"
services = ["www"]
location = { lat = 50.11, lon = 8.68 }
[[regions]]
name = "eu"
clients = ["127.0.10.0/24", "2001:db8:10::/48", "192.0.2.1"]
location = { lat = 52.52, lon = 13.40 }
distance_ms = { fra = 7 }
[[regions]]
name = "us"
clients = ["127.0.20.0/24"]
geoip = { countries = ["us", "CA"], continents = ["na"] }
distance_ms = { us-east = 10, eu-west = 90 }
"#;

const REGIONS_YAML: &str = r#"
name: regions
global: { listen: "127.0.0.1:7400", status: "127.0.0.1:7480", location: { lat: 50.11, lon: 8.68 } }
dns:
  zone: example.test.
  embedded: { listen: "127.0.0.1:5353", state_dir: state }
  geoip_database: geo/country.mmdb
services:
  - { name: www, fqdn: www.example.test., port: 8080, probes: [ { kind: tcp } ] }
farms:
  - name: eu-west
    listen: "127.0.0.2:7401"
    status: "127.0.0.2:7481"
    location: { lat: 48.85, lon: 2.35 }
    servers: [ { name: eu1, address: 127.0.0.21, services: [www] } ]
  - name: us-east
    listen: "127.0.0.3:7401"
    status: "127.0.0.3:7481"
    location: { lat: 40.71, lon: -74.01 }
    servers: [ { name: us1, address: 127.0.0.31, services: [www] } ]
servers:
  - { name: fra, address: 127.0.0.51, services: [www], location: { lat: 50.11, lon: 8.68 } }
regions:
  - name: eu
    clients: ["127.0.10.0/24", "2001:db8:10::/48", "192.0.2.1"]
    location: { lat: 52.52, lon: 13.40 }
    distance_ms: { fra: 7 }
  - name: us
    clients: ["127.0.20.0/24"]
    geoip: { countries: [us, CA], continents: [na] }
    distance_ms: { us-east: 10, eu-west: 90 }
"#;

const REGIONS_JSON: &str = r#"{
  "name": "regions",
  "global": { "listen": "127.0.0.1:7400", "status": "127.0.0.1:7480", "location": { "lat": 50.11, "lon": 8.68 } },
  "dns": { "zone": "example.test.", "embedded": { "listen": "127.0.0.1:5353", "state_dir": "state" },
           "geoip_database": "geo/country.mmdb" },
  "services": [ { "name": "www", "fqdn": "www.example.test.", "port": 8080, "probes": [ { "kind": "tcp" } ] } ],
  "farms": [
    { "name": "eu-west", "listen": "127.0.0.2:7401", "status": "127.0.0.2:7481", "location": { "lat": 48.85, "lon": 2.35 },
      "servers": [ { "name": "eu1", "address": "127.0.0.21", "services": ["www"] } ] },
    { "name": "us-east", "listen": "127.0.0.3:7401", "status": "127.0.0.3:7481", "location": { "lat": 40.71, "lon": -74.01 },
      "servers": [ { "name": "us1", "address": "127.0.0.31", "services": ["www"] } ] } ],
  "servers": [ { "name": "fra", "address": "127.0.0.51", "services": ["www"], "location": { "lat": 50.11, "lon": 8.68 } } ],
  "regions": [
    { "name": "eu", "clients": ["127.0.10.0/24", "2001:db8:10::/48", "192.0.2.1"],
      "location": { "lat": 52.52, "lon": 13.40 }, "distance_ms": { "fra": 7 } },
    { "name": "us", "clients": ["127.0.20.0/24"], "geoip": { "countries": ["us", "CA"], "continents": ["na"] },
      "distance_ms": { "us-east": 10, "eu-west": 90 } } ]
}"#;

/// Loads `text` as `name` in a directory that holds the geoip database it names.
fn load_in_dir(name: &str, text: &str) -> Result<Loaded, LoadError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("geo")).unwrap();
    std::fs::write(
        dir.path().join("geo/country.mmdb"),
        b"not read by validation",
    )
    .unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    load_with_env(&path, Vec::<(String, String)>::new())
}

fn regions() -> Loaded {
    load_in_dir("regions.toml", REGIONS_TOML).unwrap_or_else(|e| panic!("{e}"))
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[test]
fn regions_read_the_same_from_toml_yaml_and_json() {
    let mut all = Vec::new();
    for (name, text) in [
        ("r.toml", REGIONS_TOML),
        ("r.yaml", REGIONS_YAML),
        ("r.json", REGIONS_JSON),
    ] {
        let mut loaded = load_in_dir(name, text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(loaded.warnings.is_empty(), "{name}: {:#?}", loaded.warnings);
        let t = &mut loaded.topology;
        t.file.clear();
        // each loaded from its own temporary directory
        t.dns.geoip_database = t.dns.geoip_database.as_ref().map(|p| {
            assert!(p.ends_with("geo/country.mmdb"), "{}", p.display());
            p.strip_prefix(p.ancestors().nth(2).unwrap())
                .unwrap()
                .to_owned()
        });
        if let fedlb_topology::DnsServer::Embedded { state_dir, .. } = &mut t.dns.server {
            *state_dir = "state".into();
        }
        all.push(loaded.topology);
    }
    assert_eq!(all[0], all[1], "yaml");
    assert_eq!(all[0], all[2], "json");
}

#[test]
fn a_region_is_typed_in_the_model() {
    let t = regions().topology;
    assert_eq!(
        t.regions.keys().map(RegionId::as_str).collect::<Vec<_>>(),
        ["eu", "us"]
    );
    let eu = &t.regions[&RegionId::from("eu")];
    assert_eq!(
        eu.clients,
        [
            net("127.0.10.0/24"),
            net("2001:db8:10::/48"),
            net("192.0.2.1/32")
        ],
        "a bare address is a /32"
    );
    assert!(eu.countries.is_empty() && eu.continents.is_empty());
    assert_eq!(eu.location.map(|l| (l.lat, l.lon)), Some((52.52, 13.40)));
    assert_eq!(
        eu.distance_ms,
        BTreeMap::from([(CandidateId::from("fra"), 7.0)])
    );
    // the embedded server: no servers of its own, a key made at run time
    assert!(eu.dns_servers.is_empty());
    assert_eq!((&eu.tsig, &eu.tsig_file), (&None, &None));

    let us = &t.regions[&RegionId::from("us")];
    assert_eq!(
        us.countries,
        BTreeSet::from(["CA".to_owned(), "US".to_owned()]),
        "upper-cased"
    );
    assert_eq!(us.continents, BTreeSet::from([Continent::NorthAmerica]));
    assert_eq!(us.location, None);
    assert!(
        t.dns
            .geoip_database
            .as_ref()
            .is_some_and(|p| p.is_absolute() && p.ends_with("geo/country.mmdb")),
        "relative to the topology file: {:?}",
        t.dns.geoip_database
    );

    // a topology without regions has none
    let plain = load_str(
        &REGIONS_TOML[..REGIONS_TOML.find("[[regions]]").unwrap()]
            .replace("geoip_database = \"geo/country.mmdb\"\n", ""),
        Format::Toml,
        "plain.toml",
    )
    .unwrap()
    .topology;
    assert!(plain.regions.is_empty() && plain.region_specs().is_empty());
}

#[test]
fn region_specs_pin_declared_distances_and_compute_the_rest() {
    let t = regions().topology;
    let specs: BTreeMap<RegionId, BTreeMap<CandidateId, Distance>> = t
        .region_specs()
        .into_iter()
        .map(|r| (r.id, r.distances))
        .collect();
    assert_eq!(specs.len(), 2);
    // the global node decides with them
    assert_eq!(t.global_config().regions, t.region_specs());

    // eu: a location, so kilometres to every located candidate, except the pinned fra
    let eu = &specs[&RegionId::from("eu")];
    assert_eq!(
        eu.keys().map(CandidateId::as_str).collect::<Vec<_>>(),
        ["eu-west", "fra", "us-east"]
    );
    assert_eq!(eu[&CandidateId::from("fra")], Distance::Pinned(7.0));
    let km = |c: &str| match eu[&CandidateId::from(c)] {
        Distance::Kilometres(km) => km,
        other => panic!("{c}: {other:?}"),
    };
    assert!((km("eu-west") - 878.0).abs() < 10.0, "Berlin–Paris");
    assert!((km("us-east") - 6385.0).abs() < 20.0, "Berlin–New York");

    // us: no location, so only the pinned distances; fra is left to measurement
    let us = &specs[&RegionId::from("us")];
    assert_eq!(
        us,
        &BTreeMap::from([
            (CandidateId::from("eu-west"), Distance::Pinned(90.0)),
            (CandidateId::from("us-east"), Distance::Pinned(10.0)),
        ])
    );
    assert_eq!(
        t.region_distance(&t.regions[&RegionId::from("us")], &CandidateId::from("fra")),
        None
    );
    assert_eq!(
        t.region_distance(
            &t.regions[&RegionId::from("eu")],
            &CandidateId::from("nowhere")
        ),
        None
    );
}

#[test]
fn with_regions_the_default_global_policy_is_closest_under_80_percent_load() {
    let www = ServiceId::from("www");
    let t = regions().topology;
    assert_eq!(
        t.services[&www].global.policy,
        Policy::Composite {
            filters: vec![Filter::MaxLoad(0.8)],
            rank: Box::new(Policy::Closest(ClosestBy::Auto)),
            fallback: Some(Box::new(Policy::LeastLoaded)),
        }
    );
    assert_eq!(
        t.services[&www].global.policy.to_string(),
        "closest among load ≤ 80 %, else least loaded"
    );
    // the same written out in the file
    let t = load_in_dir(
        "r.toml",
        &REGIONS_TOML.replace(
            "port = 8080\n",
            "port = 8080\nglobal = { policy = { kind = \"composite\", filters = [{ max_load = 0.8 }], rank = \"closest\", fallback = \"least_loaded\" } }\n",
        ),
    )
    .unwrap()
    .topology;
    assert_eq!(
        t.services[&www].global.policy.to_string(),
        "closest among load ≤ 80 %, else least loaded"
    );
    // a policy the file sets is kept
    let t = load_in_dir(
        "r.toml",
        &REGIONS_TOML.replace(
            "port = 8080\n",
            "port = 8080\nglobal = { policy = \"least_loaded\" }\n",
        ),
    )
    .unwrap()
    .topology;
    assert_eq!(t.services[&www].global.policy, Policy::LeastLoaded);
    // without regions, closest as before
    let plain = &REGIONS_TOML[..REGIONS_TOML.find("[[regions]]").unwrap()]
        .replace("geoip_database = \"geo/country.mmdb\"\n", "");
    let t = load_str(plain, Format::Toml, "plain.toml")
        .unwrap()
        .topology;
    assert_eq!(
        t.services[&www].global.policy,
        Policy::Closest(ClosestBy::Auto)
    );
}

#[test]
fn suspicious_regions_give_warnings_with_their_paths() {
    let text = REGIONS_TOML
        // nested across regions, and inside its own region
        .replace(
            "clients = [\"127.0.20.0/24\"]",
            "clients = [\"127.0.20.0/24\", \"127.0.10.128/25\", \"127.0.20.7\"]",
        )
        // no distance at all
        .replace("distance_ms = { us-east = 10, eu-west = 90 }\n", "")
        // geography, but no region uses it
        .replace(
            "geoip = { countries = [\"us\", \"CA\"], continents = [\"na\"] }\n",
            "",
        );
    let loaded = load_in_dir("w.toml", &text).unwrap();
    let warnings: Vec<(String, String)> = loaded
        .warnings
        .iter()
        .map(|w| (w.path.clone(), w.message.clone()))
        .collect();
    let has = |path: &str, text: &str| warnings.iter().any(|(p, m)| p == path && m.contains(text));
    assert!(
        has(
            "regions[1].clients[1]",
            "prefix 127.0.10.128/25 lies inside 127.0.10.0/24 of region \"eu\" (regions[0].clients[0]): its clients belong to region \"us\", the most specific prefix"
        ),
        "{warnings:#?}"
    );
    assert!(
        has(
            "regions[1].clients[2]",
            "prefix 127.0.20.7/32 is redundant: it lies inside 127.0.20.0/24 of the same region (regions[1].clients[0])"
        ),
        "{warnings:#?}"
    );
    assert!(
        has(
            "regions[1]",
            "region \"us\" is close to no farm: it has neither distance_ms nor a location"
        ),
        "{warnings:#?}"
    );
    assert!(
        has("dns.geoip_database", "unused: no region has `geoip`"),
        "{warnings:#?}"
    );
    assert_eq!(warnings.len(), 4, "{warnings:#?}");

    // a location, but nothing else has one
    let text = r#"
[global]
listen = "127.0.0.1:7400"
status = "127.0.0.1:7480"
[dns]
zone = "example.test."
embedded = { listen = "127.0.0.1:5353", state_dir = "state" }
[[services]]
name = "www"
fqdn = "www.example.test."
port = 8080
[[services.probes]]
kind = "tcp"
[[servers]]
name = "web"
address = "127.0.0.51"
services = ["www"]
[[regions]]
name = "eu"
clients = ["10.0.0.0/8"]
location = { lat = 52.52, lon = 13.40 }
"#;
    let loaded = load_str(text, Format::Toml, "w.toml").unwrap();
    assert_eq!(
        loaded
            .warnings
            .iter()
            .map(|w| (w.path.as_str(), w.message.as_str()))
            .collect::<Vec<_>>(),
        [(
            "regions[0]",
            "region \"eu\" is close to no farm: it has a location, but no farm or direct server has one; closest has no distance to rank farms by for its clients (what the global node measures is not used for a region)"
        )]
    );
}

/// An external primary with a zone key, and regions as written in `regions`.
fn external(regions: &str) -> String {
    format!(
        r#"
[global]
listen = "127.0.0.1:7400"
status = "127.0.0.1:7480"
[dns]
servers = ["127.0.0.1:53"]
zone = "example.test."
tsig = {{ key_file = "zone.conf" }}
[[services]]
name = "www"
fqdn = "www.example.test."
port = 8080
[[services.probes]]
kind = "tcp"
[[farms]]
name = "eu-west"
listen = "127.0.0.2:7401"
status = "127.0.0.2:7481"
[[farms.servers]]
name = "eu1"
address = "127.0.0.21"
services = ["www"]
{regions}"#
    )
}

#[test]
fn a_view_signs_with_its_own_key_and_a_region_with_its_own_servers_defaults_to_the_zones() {
    let dir = tempfile::tempdir().unwrap();
    let b64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    for name in ["zone", "eu"] {
        std::fs::write(
            dir.path().join(format!("{name}.conf")),
            format!("key \"{name}-key\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{b64}\";\n}};\n"),
        )
        .unwrap();
    }
    let path = dir.path().join("t.toml");
    std::fs::write(
        &path,
        external(
            r#"
[[regions]]
name = "eu"
clients = ["127.0.10.0/24"]
distance_ms = { eu-west = 5 }
tsig = { key_file = "eu.conf" }
[[regions]]
name = "ap"
clients = ["127.0.30.0/24"]
distance_ms = { eu-west = 200 }
dns = { servers = ["127.0.0.1:5330"] }
"#,
        ),
    )
    .unwrap();
    let loaded = load_with_env(&path, Vec::<(String, String)>::new()).unwrap();
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let t = loaded.topology;
    let eu = &t.regions[&RegionId::from("eu")];
    assert_eq!(eu.tsig.as_ref().map(|k| k.name.as_str()), Some("eu-key"));
    assert_eq!(eu.tsig_file, Some(dir.path().join("eu.conf")));
    assert!(eu.dns_servers.is_empty(), "a view of dns.servers");
    assert!(!eu.uses_zone_key(&t.dns));
    let ap = &t.regions[&RegionId::from("ap")];
    assert_eq!(ap.dns_servers, ["127.0.0.1:5330".parse().unwrap()]);
    assert_eq!(ap.tsig.as_ref().map(|k| k.name.as_str()), Some("zone-key"));
    assert!(ap.uses_zone_key(&t.dns));
    // the secret never shows
    assert!(!format!("{eu:?}").contains(b64));

    // nodes that do not publish skip key files (and the geoip database)
    std::fs::remove_file(dir.path().join("eu.conf")).unwrap();
    let t = Loader::new()
        .env(Vec::<(String, String)>::new())
        .read_key_files(false)
        .load(&path)
        .unwrap()
        .topology;
    let eu = &t.regions[&RegionId::from("eu")];
    assert_eq!(
        (&eu.tsig, &eu.tsig_file),
        (&None, &Some(dir.path().join("eu.conf")))
    );
    // but the publisher does not
    let err = load_with_env(&path, Vec::<(String, String)>::new()).unwrap_err();
    assert_eq!(err.problems().len(), 1, "{err}");
    assert_eq!(err.problems()[0].path, "regions[0].tsig.key_file", "{err}");
}

#[test]
fn a_region_secret_never_appears_in_an_error() {
    let text = external(
        r#"
[[regions]]
name = "eu"
clients = ["127.0.10.0/24"]
distance_ms = { eu-west = 5 }
tsig = { secret = ["c3VwZXItc2VjcmV0LXZhbHVl"], name = "eu-key" }
"#,
    );
    let err = load_str(&text, Format::Toml, "t.toml").unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains("regions[0].tsig.secret: invalid type"),
        "{shown}"
    );
    assert!(!shown.contains("c3VwZXItc2VjcmV0LXZhbHVl"), "{shown}");
}

#[test]
fn fedlb_check_describes_each_region_its_clients_and_distances() {
    let text = regions().topology.describe();
    for needle in [
        "regions:",
        "  eu: 127.0.10.0/24, 2001:db8:10::/48, 192.0.2.1/32",
        "    distance to eu-west 878 km, us-east 6385 km, fra 7 ms (pinned)",
        "  us: 127.0.20.0/24; countries CA, US; continents NA",
        "    distance to eu-west 90 ms (pinned), us-east 10 ms (pinned), fra unknown",
        "geoip database",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    let plain = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topologies/two-sites.toml");
    let t = load_with_env(&plain, Vec::<(String, String)>::new())
        .unwrap()
        .topology;
    assert!(!t.describe().contains("regions:"));
}

#[test]
fn a_regions_lists_and_distances_can_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("geo")).unwrap();
    std::fs::write(dir.path().join("geo/country.mmdb"), b"").unwrap();
    let path = dir.path().join("r.toml");
    std::fs::write(&path, REGIONS_TOML).unwrap();
    let t = load_with_env(
        &path,
        [
            (
                "FEDLB__REGIONS__0__CLIENTS",
                "10.10.0.0/16,2001:db8:20::/48",
            ),
            ("FEDLB__REGIONS__1__GEOIP__COUNTRIES", "MX"),
            // (a variable name cannot hold `-`: only names without one can be overridden)
            ("FEDLB__REGIONS__0__DISTANCE_MS__FRA", "9"),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .topology;
    assert_eq!(
        t.regions[&RegionId::from("eu")].clients,
        [net("10.10.0.0/16"), net("2001:db8:20::/48")]
    );
    let us = &t.regions[&RegionId::from("us")];
    assert_eq!(us.countries, BTreeSet::from(["MX".to_owned()]));
    assert_eq!(
        t.regions[&RegionId::from("eu")].distance_ms[&CandidateId::from("fra")],
        9.0
    );
}

#[test]
fn three_continents_declares_regions() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topologies/three-continents.toml");
    let t = load_with_env(&path, Vec::<(String, String)>::new())
        .unwrap()
        .topology;
    let specs: BTreeMap<RegionId, BTreeMap<CandidateId, Distance>> = t
        .global_config()
        .regions
        .into_iter()
        .map(|r| (r.id, r.distances))
        .collect();
    let closest = |region: &str| {
        specs[&RegionId::from(region)]
            .iter()
            .filter(|(c, _)| ["europe", "america", "asia"].contains(&c.as_str()))
            .min_by(|a, b| {
                let v = |d: &Distance| match d {
                    Distance::Pinned(ms) => *ms,
                    Distance::Kilometres(km) => km / 100.0,
                };
                v(a.1).total_cmp(&v(b.1))
            })
            .map(|(c, _)| c.as_str().to_owned())
    };
    assert_eq!(closest("emea").as_deref(), Some("europe"));
    assert_eq!(closest("americas").as_deref(), Some("america"));
    assert_eq!(closest("apac").as_deref(), Some("asia"));
}
