//! Several farm nodes per farm (issue 17 item 2): `nodes = [{ name, listen, status }, …]`
//! in `[[farms]]`, next to today's one-node form, and what each node runs.

use std::time::Duration;

use fedlb_core::{FarmId, ServerId};
use fedlb_topology::{Format, Role, Topology};

const TWO_NODES: &str = r#"
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
nodes = [
  { name = "eu-a", listen = "127.0.0.2:7401", status = "127.0.0.2:7481" },
  { name = "eu-b", listen = "127.0.0.3:7401", status = "127.0.0.3:7481" },
]

[[farms.servers]]
name = "eu1"
address = "127.0.0.21"
services = ["www"]
mode = "intrusive"

[[farms.servers]]
name = "eu2"
address = "127.0.0.22"
services = ["www"]

[[farms]]
name = "us"
listen = "127.0.0.4:7401"
status = "127.0.0.4:7481"
summary_heartbeat = { interval = "250ms", missed = 4 }

[[farms.servers]]
name = "us1"
address = "127.0.0.31"
services = ["www"]
"#;

fn load(text: &str) -> Topology {
    fedlb_topology::load_str(text, Format::Toml, "farm-nodes.toml")
        .expect("valid")
        .topology
}

#[test]
fn a_farm_with_two_farm_nodes_runs_both_and_the_global_node_hears_both() {
    let t = load(TWO_NODES);
    let eu = &t.farms[&FarmId::from("eu")];
    let names: Vec<&str> = eu.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["eu-a", "eu-b"]);
    assert_eq!(eu.listen, eu.nodes[0].listen, "the farm's first node");

    // one certificate identity per farm node (what `fedlb certs` issues)
    let farm_nodes: Vec<(String, Role)> = t
        .nodes()
        .into_iter()
        .filter(|n| matches!(n.role, Role::Farm(_)))
        .map(|n| (n.name, n.role))
        .collect();
    assert_eq!(
        farm_nodes,
        [
            ("eu-a".to_owned(), Role::Farm("eu".into())),
            ("eu-b".to_owned(), Role::Farm("eu".into())),
            ("us".to_owned(), Role::Farm("us".into())),
        ]
    );
    assert_eq!(t.farm_of_node("eu-b").map(|f| f.id.as_str()), Some("eu"));
    assert!(t.farm_of_node("eu").is_none(), "the farm's name is no node");

    // each farm node probes the remote server itself; the agent's server is its agent's
    for node in ["eu-a", "eu-b"] {
        let servers: Vec<ServerId> = t
            .monitors_run_by(node)
            .into_iter()
            .map(|m| m.server)
            .collect();
        assert_eq!(servers, [ServerId::from("eu2")], "{node}");
    }

    // the global tier hears the farm from both nodes, in topology order
    let g = t.global_config();
    let eu_member = g.services[&"www".into()]
        .members
        .iter()
        .find(|m| m.id.as_str() == "eu")
        .unwrap();
    assert_eq!(eu_member.sources, ["eu-a", "eu-b"]);
    assert_eq!(
        eu_member.liveness.stale_after,
        Duration::from_millis(1_200),
        "3 missed summaries of 400 ms"
    );
    assert_eq!(t.farm_config(&"eu".into()).unwrap().node, "eu-a");

    // the summary heartbeat is a topology option
    let us = t.farm_config(&"us".into()).unwrap();
    assert_eq!(us.heartbeat, Duration::from_millis(250));
    assert_eq!(us.node, "us");
    let us_member = g.services[&"www".into()]
        .members
        .iter()
        .find(|m| m.id.as_str() == "us")
        .unwrap();
    assert_eq!(us_member.liveness.stale_after, Duration::from_secs(1));
    assert_eq!(us_member.sources, ["us"]);

    // `fedlb check` describes each farm node, and the agent reporting to both
    let text = t.describe();
    assert!(
        text.contains("eu-a (farm node) listen 127.0.0.2:7401 status 127.0.0.2:7481"),
        "{text}"
    );
    assert!(
        text.contains("eu-b (farm node) listen 127.0.0.3:7401 status 127.0.0.3:7481"),
        "{text}"
    );
    assert!(
        text.contains("one of 2 farm nodes of farm eu (eu-a, eu-b)"),
        "{text}"
    );
    assert!(
        text.contains("eu1 (agent) → reports to eu-a, eu-b"),
        "{text}"
    );
    assert!(
        text.contains(
            "summarises every 250 ms when idle; stale at the global node after 4 missed (1 s)"
        ),
        "{text}"
    );
}

#[test]
fn a_top_level_summary_heartbeat_applies_to_every_farm() {
    let t = load(&TWO_NODES.replace(
        "[global]",
        "summary_heartbeat = { interval = \"300ms\" }\n[global]",
    ));
    assert_eq!(
        t.farm_config(&"eu".into()).unwrap().heartbeat,
        Duration::from_millis(300)
    );
    // a farm's own setting wins
    assert_eq!(
        t.farm_config(&"us".into()).unwrap().heartbeat,
        Duration::from_millis(250)
    );
}
