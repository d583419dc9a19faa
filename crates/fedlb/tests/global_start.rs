//! `fedlb global` without `--node` takes the global node's name from the topology, and
//! loads the topology once for the whole start: its warnings are printed once.

use std::path::Path;
use std::process::Command;

#[test]
fn item5_fedlb_global_loads_the_topology_once() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let demo = std::fs::read_to_string(root.join("topologies/demo.toml")).expect("demo.toml");
    // one warning: a TTL of 0 disables caching
    let text = demo.replacen("ttl = \"5s\"", "ttl = \"0s\"", 1);
    assert_ne!(text, demo, "the demo topology sets dns.ttl = \"5s\"");
    let dir = tempfile::tempdir().unwrap();
    let topology = dir.path().join("topology.toml");
    std::fs::write(&topology, text).unwrap();
    // no certificates: the node stops right after loading the topology
    let out = Command::new(env!("CARGO_BIN_EXE_fedlb"))
        .arg("global")
        .arg(&topology)
        .arg("--certs")
        .arg(dir.path().join("no-certs"))
        .env_remove("RUST_LOG")
        .output()
        .expect("run fedlb");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("certificates in"),
        "it got as far as the certificates: {stderr}"
    );
    assert_eq!(
        stderr.matches("ttl 0 disables caching").count(),
        1,
        "the topology is loaded (and its warning printed) once: {stderr}"
    );
}
