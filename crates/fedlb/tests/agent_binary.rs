//! The agent-only binary, `fedlb-agent`, end to end: it takes the arguments `fedlb agent`
//! takes, and an agent it runs reports over QUIC to a farm node run by `fedlb` like any
//! other: a server it watches going down moves the DNS answer.

mod procs;
#[path = "../../fedlb-node/tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::process::Command;

use procs::Proc;
use support::*;

const B: u8 = 171;

/// Farm west (10 ms): w1, watched by its agent w1-agent, then w2 probed remotely. Farm
/// east (50 ms): e1.
fn topology() -> String {
    [
        header(B, "\"least_loaded\""),
        farm(B, 2, "west", 10, &["w1", "w2"]),
        intrusive_server(B, 11, "w1", "w1-agent"),
        remote_server(B, 12, "w2"),
        farm(B, 3, "east", 50, &["e1"]),
        remote_server(B, 21, "e1"),
    ]
    .concat()
}

fn fedlb_agent(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fedlb-agent"))
        .args(args)
        .output()
        .expect("run fedlb-agent");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_names_the_arguments_of_fedlb_agent() {
    let (code, out, err) = fedlb_agent(&["--help"]);
    assert_eq!(code, 0, "{err}");
    for arg in [
        "<TOPOLOGY>",
        "--node",
        "--certs",
        "--state-dir",
        "--log-json",
    ] {
        assert!(out.contains(arg), "{arg} missing from:\n{out}");
    }
    assert!(out.contains("fedlb agent"), "{out}");
}

#[test]
fn without_a_node_name_it_says_what_is_missing() {
    let w = World::new(&topology());
    let topo = w.topology.to_string_lossy().into_owned();
    let (code, _, err) = fedlb_agent(&[&topo]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("error: --node NAME is required for an agent"),
        "{err}"
    );
    // a name the topology does not give an agent is refused, naming it
    let (code, _, err) = fedlb_agent(&[&topo, "--node", "w2-agent"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("w2-agent"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_run_by_fedlb_agent_moves_the_answer_when_its_server_dies() {
    let mut w = World::new(&topology());
    for (name, host) in [("w1", 11), ("w2", 12), ("e1", 21)] {
        w.start_backend(name, ip(B, host)).await;
    }
    let status = SocketAddr::new(ip(B, 1), 7480);
    let dns = SocketAddr::new(ip(B, 1), 5353);
    let _global = Proc::start(&w, "global", "global");
    let _west = Proc::start(&w, "farm", "west");
    let _east = Proc::start(&w, "farm", "east");
    let mut agent = Proc::start_agent_only(&w, "w1-agent");
    // w1 is answered only once its agent has reported it up: nothing else probes it
    wait_answers(status, dns, &[ip(B, 11)]).await;
    agent.assert_running();
    assert!(agent.log().contains("agent running"), "{}", agent.log());

    w.kill_backend("w1").await;
    wait_answers(status, dns, &[ip(B, 12)]).await;
    let farm = support::status(SocketAddr::new(ip(B, 2), 7481))
        .await
        .expect("farm status");
    let why = local(&farm, "west").map(|l| l["why"].to_string());
    assert!(
        why.as_deref().is_some_and(|w| w.contains("w2")),
        "{why:?} in {farm}"
    );
    agent.assert_running();
}
