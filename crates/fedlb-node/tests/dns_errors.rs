//! DNS problems at start-up come back as their own `NodeError` variants, naming the
//! topology file and what is wrong, not as a probe error.

mod support;

use fedlb_node::{NodeError, NodeOptions, global};
use support::*;
use tokio_util::sync::CancellationToken;

/// A topology whose TSIG key lives in a file the loader was told not to read (as farm
/// nodes and agents load it): the global node, handed that topology, has no key to sign
/// updates to the external primary with, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item5_external_primaries_without_a_tsig_key_fail_with_a_typed_error() {
    const B: u8 = 251;
    let header = header(B, r#""least_loaded""#).replace(
        &format!(r#"embedded = {{ listen = "127.0.{B}.1:5353", state_dir = "dns" }}"#),
        &format!(
            r#"servers = ["127.0.{B}.53:5353"]
tsig = {{ name = "fedlb-key", key_file = "fedlb-key.conf" }}"#
        ),
    );
    let toml = [
        header,
        farm(B, 2, "near", 10, &["n1"]),
        remote_server(B, 11, "n1"),
    ]
    .concat();
    let w = World::new(&toml);
    let topology = fedlb_topology::Loader::new()
        .read_key_files(false)
        .load(&w.topology)
        .expect("valid without reading the key file")
        .topology;
    assert!(topology.dns.tsig.is_none() && topology.dns.tsig_file.is_some());
    let opts = NodeOptions {
        topology: w.topology.clone(),
        node: "global".to_owned(),
        certs: w.certs.clone(),
        state_dir: Some(w.certs.join("../state")),
    };
    let token = CancellationToken::new();
    let err = global::run_with(topology, opts, token.clone())
        .await
        .expect_err("no key, no start");
    token.cancel();
    match &err {
        NodeError::TsigKeyMissing { file, primaries } => {
            assert_eq!(file, &w.topology.display().to_string());
            assert_eq!(primaries, &[format!("127.0.{B}.53:5353").parse().unwrap()]);
        }
        other => panic!("expected NodeError::TsigKeyMissing, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("need a tsig key") && text.contains(&format!("127.0.{B}.53:5353")),
        "{text}"
    );
}
