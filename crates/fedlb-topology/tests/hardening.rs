//! Issue 11, items 6, 7 and 9: input limits, secrets never shown, every problem named.

use std::path::Path;

use fedlb_topology::{Format, LoadError, Loader, MAX_FILE_BYTES, load_str, load_with_env};

const SMALL: &str = r#"
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
[[farms]]
name = "eu"
listen = "127.0.0.2:7401"
status = "127.0.0.2:7481"
[[farms.servers]]
name = "eu1"
address = "127.0.0.21"
services = ["www"]
"#;

/// 351 bytes that the yaml-rust2 loader expands to 9^9 strings (gigabytes).
const ALIAS_BOMB: &str = r#"a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"#;

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

#[test]
fn item6_yaml_alias_bomb_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.yaml");
    std::fs::write(&path, ALIAS_BOMB).unwrap();
    // before the fix this allocated until the process aborted
    let err = load_with_env(&path, no_env()).unwrap_err();
    let shown = err.to_string();
    assert!(matches!(err, LoadError::Parse(_)), "{shown}");
    assert!(shown.starts_with(&path.display().to_string()), "{shown}");
    assert!(
        shown.contains("yaml anchors and aliases")
            && shown.contains("would copy more than 100000 values")
            && shown.contains("alias bomb"),
        "{shown}"
    );
}

#[test]
fn item6_yaml_aliases_within_the_budget_still_work() {
    let yaml = r#"
global: { listen: "127.0.0.1:7400", status: "127.0.0.1:7480" }
dns: { zone: example.test., embedded: { listen: "127.0.0.1:5353", state_dir: state } }
services:
  - { name: www, fqdn: www.example.test., port: 8080, probes: &probes [ { kind: tcp } ] }
  - { name: api, fqdn: api.example.test., port: 8081, probes: *probes }
farms:
  - name: eu
    listen: "127.0.0.2:7401"
    status: "127.0.0.2:7481"
    servers:
      - { name: eu1, address: 127.0.0.21, services: &both [www, api] }
      - { name: eu2, address: 127.0.0.22, services: *both }
"#;
    let t = load_str(yaml, Format::Yaml, "t.yaml").unwrap().topology;
    assert_eq!(t.services.len(), 2);
    assert!(t.services.values().all(|s| s.probes.len() == 1));
}

#[test]
fn item6_oversize_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.toml");
    let mut text = SMALL.to_owned();
    // valid TOML all the way: only the size is wrong
    text.push_str(&"# padding\n".repeat((MAX_FILE_BYTES as usize) / 10 + 1));
    std::fs::write(&path, &text).unwrap();
    let err = load_with_env(&path, no_env()).unwrap_err();
    assert!(matches!(err, LoadError::TooLarge { .. }), "{err}");
    let shown = err.to_string();
    assert!(
        shown.contains("big.toml") && shown.contains("above the limit of 4194304 bytes"),
        "{shown}"
    );
    assert_eq!(err.problems().len(), 1);
    let err = load_str(&text, Format::Toml, "big.toml").unwrap_err();
    assert!(matches!(err, LoadError::TooLarge { .. }), "{err}");
    // just under the limit is fine
    let fits = format!(
        "{SMALL}{}",
        "#".repeat(MAX_FILE_BYTES as usize - SMALL.len() - 1)
    );
    load_str(&fits, Format::Toml, "fits.toml").unwrap();
}

#[test]
fn item6_deep_nesting_is_refused_not_a_stack_overflow() {
    let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let err = load_str(&deep_json, Format::Json, "deep.json").unwrap_err();
    assert!(matches!(err, LoadError::Parse(_)), "{err}");
    let deep_yaml = format!("a: {}{}", "[".repeat(100_000), "]".repeat(100_000));
    let err = load_str(&deep_yaml, Format::Yaml, "deep.yaml").unwrap_err();
    assert!(matches!(err, LoadError::Parse(_)), "{err}");
    let nested_yaml = format!("a: {}{}", "[".repeat(70), "]".repeat(70));
    let err = load_str(&nested_yaml, Format::Yaml, "deep.yaml").unwrap_err();
    assert!(
        err.to_string().contains("nested deeper than 64 levels"),
        "{err}"
    );
    let deep_toml = format!("a = {}{}", "[".repeat(100_000), "]".repeat(100_000));
    let err = load_str(&deep_toml, Format::Toml, "deep.toml").unwrap_err();
    assert!(matches!(err, LoadError::Parse(_)), "{err}");
    assert!(
        err.to_string().len() < 300,
        "no megabyte source line: {err}"
    );
}

#[test]
fn item7_a_secret_in_the_wrong_place_never_appears_in_an_error() {
    let secret = "s3cr3t-value";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    let file = SMALL.replace(
        "embedded = { listen = \"127.0.0.1:5353\", state_dir = \"state\" }",
        &format!("servers = [\"127.0.0.1:53\"]\ntsig = \"{secret}\""),
    );
    std::fs::write(&path, &file).unwrap();
    let err = load_with_env(&path, no_env()).unwrap_err();
    let shown = format!("{err}\n{err:?}");
    assert!(!shown.contains(secret), "{shown}");
    assert_eq!(err.problems()[0].path, "dns.tsig", "{shown}");
    assert!(shown.contains("invalid type: string (not shown"), "{shown}");

    // the environment form
    std::fs::write(&path, SMALL).unwrap();
    let err = load_with_env(&path, [("FEDLB__DNS__TSIG", secret)]).unwrap_err();
    let shown = format!("{err}\n{err:?}");
    assert!(!shown.contains(secret), "{shown}");
    assert_eq!(err.problems()[0].path, "dns.tsig", "{shown}");
    assert!(
        shown.contains("FEDLB__DNS__TSIG"),
        "names the variable: {shown}"
    );

    // a secret that is not base64: not even the offending character is shown
    let err = load_with_env(
        &path,
        [
            ("FEDLB__DNS__TSIG__SECRET", "%%%%s3cr3t%%%%"),
            ("FEDLB__DNS__TSIG__NAME", "k"),
        ],
    )
    .unwrap_err();
    let shown = format!("{err}\n{err:?}");
    assert!(!shown.contains("s3cr3t") && !shown.contains('%'), "{shown}");
    assert!(
        shown.contains("dns.tsig.secret: secret is not valid base64"),
        "{shown}"
    );

    // a secret as a number, and in a table where a string belongs
    let err = load_with_env(&path, [("FEDLB__DNS__TSIG__SECRET", "123456789")]).unwrap_err();
    assert!(!format!("{err}{err:?}").contains("123456789"), "{err}");
}

#[test]
fn item7_debug_of_a_loaded_topology_and_of_the_loader_hide_the_inline_secret() {
    let b64 = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0cXE=";
    let file = SMALL.replace(
        "embedded = { listen = \"127.0.0.1:5353\", state_dir = \"state\" }",
        &format!("servers = [\"127.0.0.1:53\"]\ntsig = {{ secret = \"{b64}\", name = \"k\" }}"),
    );
    let loaded = load_str(&file, Format::Toml, "t.toml").unwrap();
    let key = loaded.topology.dns.tsig.clone().unwrap();
    let debug = format!("{loaded:?}");
    assert!(!debug.contains(b64), "{debug}");
    assert!(!debug.contains("secretsecret"), "{debug}");
    assert!(!debug.contains(&format!("{:?}", key.secret)), "{debug}");
    let loader = Loader::new().env([("FEDLB__DNS__TSIG__SECRET", b64)]);
    let debug = format!("{loader:?}");
    assert!(
        !debug.contains(b64) && debug.contains("FEDLB__DNS__TSIG__SECRET"),
        "{debug}"
    );
}

#[test]
fn item9_an_environment_index_out_of_range_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(&path, SMALL).unwrap();
    let err = load_with_env(&path, [("FEDLB__FARMS__9__LISTEN", "127.0.0.9:7401")]).unwrap_err();
    let problems = err.problems();
    assert_eq!(problems.len(), 1, "{err}");
    assert_eq!(problems[0].path, "farms[9]");
    assert!(
        problems[0].message.contains("the file has 1 (farms[0])")
            && problems[0].message.contains("FEDLB__FARMS__9__LISTEN"),
        "{err}"
    );
    // an index inside the array still works
    let t = load_with_env(&path, [("FEDLB__FARMS__0__SERVERS__0__CAPACITY", "7")])
        .unwrap()
        .topology;
    assert_eq!(
        t.farms
            .values()
            .next()
            .unwrap()
            .servers
            .values()
            .next()
            .unwrap()
            .capacity,
        7.0
    );
}

#[test]
fn item9_nan_and_huge_numbers_from_the_environment_are_refused_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(&path, SMALL).unwrap();
    for (var, value, at) in [
        (
            "FEDLB__FARMS__0__SERVERS__0__CAPACITY",
            "nan",
            "farms[0].servers[0].capacity",
        ),
        (
            "FEDLB__FARMS__0__DISTANCE_MS",
            "inf",
            "farms[0].distance_ms",
        ),
    ] {
        let err = load_with_env(&path, [(var, value)]).unwrap_err();
        let problems = err.problems();
        assert_eq!(problems.len(), 1, "{err}");
        assert_eq!(problems[0].path, at, "{err}");
        assert!(
            problems[0]
                .message
                .contains(&format!("{value} is not a number")),
            "{err}"
        );
        assert!(problems[0].message.contains(var), "{err}");
    }
}

#[test]
fn item9_yaml_and_json_report_huge_integers_and_nan_with_their_path() {
    let yaml = r#"
global: { listen: "127.0.0.1:7400", status: "127.0.0.1:7480" }
dns: { zone: example.test., embedded: { listen: "127.0.0.1:5353", state_dir: state } }
services:
  - { name: www, fqdn: www.example.test., port: 99999999999999999999999, probes: [ { kind: tcp } ] }
farms:
  - name: eu
    listen: "127.0.0.2:7401"
    status: "127.0.0.2:7481"
    distance_ms: .nan
    servers: [ { name: eu1, address: 127.0.0.21, services: [www] } ]
"#;
    let err = load_str(yaml, Format::Yaml, "t.yaml").unwrap_err();
    let paths: Vec<String> = err.problems().into_iter().map(|p| p.path).collect();
    assert_eq!(paths, ["services[0].port", "farms[0].distance_ms"], "{err}");
    let json = r#"{"global": {"listen": "127.0.0.1:7400", "status": "127.0.0.1:7480"},
      "dns": {"zone": "example.test.", "embedded": {"listen": "127.0.0.1:5353", "state_dir": "s"}},
      "services": [{"name": "www", "fqdn": "www.example.test.", "port": 18446744073709551615}],
      "farms": [{"name": "eu", "listen": "127.0.0.2:7401", "status": "127.0.0.2:7481",
                 "servers": [{"name": "eu1", "address": "127.0.0.21", "services": ["www"]}]}]}"#;
    let err = load_str(json, Format::Json, "t.json").unwrap_err();
    assert_eq!(err.problems()[0].path, "services[0].port", "{err}");
    assert!(err.to_string().contains("is too large"), "{err}");
}

#[test]
fn item9_hops_on_a_remote_server_is_a_warning_with_its_path() {
    let text = SMALL.replace(
        "[[services.probes]]\nkind = \"tcp\"",
        "[[services.probes]]\nkind = \"tcp\"\n[[services.probes]]\nkind = \"hops\"",
    );
    let loaded = load_str(&text, Format::Toml, "t.toml").unwrap();
    assert_eq!(loaded.warnings.len(), 1, "{:#?}", loaded.warnings);
    assert_eq!(loaded.warnings[0].path, "services[0].probes[1]");
    assert!(
        loaded.warnings[0].message.contains(
            "remotely probed servers \"eu1\" (farms[0].servers[0]) counts hops from their farm node"
        ),
        "{:#?}",
        loaded.warnings
    );
    // with an agent on the server, no warning
    let text = text.replace(
        "services = [\"www\"]",
        "services = [\"www\"]\nmode = \"intrusive\"",
    );
    assert!(
        load_str(&text, Format::Toml, "t.toml")
            .unwrap()
            .warnings
            .is_empty()
    );
}

#[test]
fn item9_the_old_three_continents_example_is_refused_for_its_remote_probes() {
    // the shipped example before the fix: proc_net_tcp and command probes on remote servers
    let old = include_str!("../../../topologies/three-continents.toml")
        .replace(
            "source = \"nginx_stub_status\"      # read over HTTP, so remote servers can be measured too\nurl = \"http://server:8080/nginx_status\"   # `server`: the server's probe address",
            "source = \"proc_net_tcp\"",
        )
        .replace("mode = \"intrusive\"                              # the db command probe runs on the server\n", "");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topologies");
    let err = Loader::new()
        .env(no_env())
        .load_str(
            &old,
            Format::Toml,
            &dir.join("old.toml").display().to_string(),
        )
        .unwrap_err();
    let paths: Vec<String> = err.problems().into_iter().map(|p| p.path).collect();
    assert_eq!(
        paths,
        ["services[0].probes[1]", "services[1].probes[1]"],
        "{err}"
    );
}
