//! Several global nodes: `[[global]]`, each with its own name, addresses and DNS target.

use std::path::Path;

use fedlb_core::ServerId;
use fedlb_topology::{DnsServer, Format, Role, load, load_str};

fn ha() -> fedlb_topology::Topology {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topologies/ha.toml");
    load(&file).expect("topologies/ha.toml loads").topology
}

#[test]
fn ha_example_declares_two_global_nodes_each_with_its_own_embedded_server() {
    let t = ha();
    let names: Vec<&str> = t.globals.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["g1", "g2"]);
    assert_eq!(t.global, t.globals[0], "`global` is the first global node");
    let listens: Vec<String> = ["g1", "g2"]
        .iter()
        .map(|n| match t.dns_for(n).server {
            DnsServer::Embedded { listen, .. } => listen.to_string(),
            other => panic!("{n} publishes to {other:?}"),
        })
        .collect();
    assert_eq!(listens, ["127.0.0.1:15363", "127.0.0.5:15363"]);
    assert!(!t.shares_dns(), "each node has its own server");
}

#[test]
fn farm_nodes_report_to_every_global_node_and_each_gets_a_node_entry() {
    let t = ha();
    let nodes = t.nodes();
    let globals: Vec<&str> = nodes
        .iter()
        .filter(|n| n.role == Role::Global)
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(
        globals,
        ["g1", "g2"],
        "fedlb certs issues one per global node"
    );
    // each farm node of eu-west (two in ha.toml) reports to both global nodes
    let eu: Vec<_> = nodes
        .iter()
        .filter(|n| n.role == Role::Farm("eu-west".into()))
        .collect();
    assert_eq!(eu.len(), 2);
    assert!(eu.iter().all(|n| n.upstreams == ["g1", "g2"]));
    let described = t.describe();
    assert!(
        described.contains("dns: zone ha.test. on each global node's own embedded server"),
        "{described}"
    );
    assert!(described.contains("eu-west-a (farm node)"), "{described}");
    assert!(described.contains("reports to g1, g2"), "{described}");
    assert!(
        described.contains("g2 (global node) listen 127.0.0.5:7410 status 127.0.0.5:7490"),
        "{described}"
    );
    assert!(
        described.contains("publishes to its own embedded server at 127.0.0.5:15363"),
        "{described}"
    );
}

const SHARED: &str = r#"
[[global]]
name = "g1"
listen = "127.0.0.1:7400"
status = "127.0.0.1:7480"
[[global]]
name = "g2"
listen = "127.0.0.3:7400"
status = "127.0.0.3:7480"
[dns]
zone = "example.test."
servers = ["127.0.0.1:53"]
tsig = { name = "k", secret = "yEJLwxMvZN+2Sokg00jb+a2uBusiYoLtflt2Nf6gHzQ=" }
[[services]]
name = "www"
fqdn = "www.example.test."
port = 8080
[[services.probes]]
kind = "tcp"
[[servers]]
name = "d1"
address = "127.0.0.31"
services = ["www"]
[[servers]]
name = "d2"
address = "127.0.0.32"
services = ["www"]
mode = "intrusive"
agent = "d2-agent"
"#;

#[test]
fn global_nodes_sharing_a_primary_each_probe_direct_servers_and_agents_report_to_both() {
    let t = load_str(SHARED, Format::Toml, "shared.toml")
        .expect("loads")
        .topology;
    assert!(t.shares_dns());
    for g in ["g1", "g2"] {
        let run: Vec<ServerId> = t
            .monitors_run_by(g)
            .iter()
            .map(|m| m.server.clone())
            .collect();
        assert_eq!(
            run,
            [ServerId::from("d1")],
            "{g} probes the remote direct server itself"
        );
    }
    let agent = t.node("d2-agent").unwrap();
    assert_eq!(agent.upstreams, ["g1", "g2"]);
    assert!(
        t.describe()
            .contains("shared primaries 127.0.0.1:53 by compare-and-swap")
    );
}

#[test]
fn one_global_table_still_means_one_global_node() {
    let text = SHARED.replace(
        "[[global]]\nname = \"g1\"\nlisten = \"127.0.0.1:7400\"\nstatus = \"127.0.0.1:7480\"\n[[global]]\nname = \"g2\"",
        "[global]\nname = \"g2\"",
    );
    let t = load_str(&text, Format::Toml, "one.toml")
        .expect("loads")
        .topology;
    assert_eq!(t.globals.len(), 1);
    assert_eq!(t.global.name, "g2");
    assert!(!t.shares_dns());
    assert_eq!(t.node("d2-agent").unwrap().upstreams, ["g2"]);
}
