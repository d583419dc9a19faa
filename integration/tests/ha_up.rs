//! `fedlb up topologies/ha.toml`, as the README tells it: two global nodes, each with its
//! own DNS server; `dig` each printed address; `fedlb status` on both says they agree;
//! `kill -9` the printed global node, fail a server: the other global node's DNS moves.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use fedlb_integration::{DnsWatch, Fed, PATIENCE, fedlb_bin, http_post, record_timing, wait_for};

/// Every `dig @IP -p PORT NAME A +short` line `fedlb up` printed.
fn printed_digs(log: &str) -> Vec<(SocketAddr, String)> {
    log.lines()
        .filter(|l| l.contains("dig @") && !l.contains("-b ") && !l.contains("+subnet"))
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let at = words.iter().position(|w| w.starts_with('@'))?;
            let ip: IpAddr = words[at].trim_start_matches('@').parse().ok()?;
            let port: u16 = words.get(at + 2)?.parse().ok()?;
            Some(((ip, port).into(), words.get(at + 3)?.to_string()))
        })
        .collect()
}

fn fedlb_status(urls: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(fedlb_bin())
        .arg("status")
        .args(urls)
        .output()
        .expect("running fedlb status");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn fedlb_up_ha_serves_from_two_global_nodes_and_survives_killing_one() {
    let scenario = "ha-up";
    let topology = Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies/ha.toml");
    let mut fed = Fed::new(scenario);
    fed.spawn(
        "up",
        fedlb_bin(),
        &["up".into(), topology.into_os_string()],
        &[],
    );
    let digs = wait_for(
        "fedlb up to print a dig for each global node",
        PATIENCE,
        || {
            assert!(fed.is_running("up"), "fedlb up exited:\n{}", fed.log("up"));
            let digs = printed_digs(&fed.log("up"));
            (digs.len() == 2).then_some(digs)
        },
    );
    let g1 = DnsWatch::new(digs[0].0, &digs[0].1);
    let g2 = DnsWatch::new(digs[1].0, &digs[1].1);
    assert_ne!(
        g1.server, g2.server,
        "each global node has its own DNS server"
    );
    let (eu1, eu2): (IpAddr, IpAddr) =
        ("127.0.0.11".parse().unwrap(), "127.0.0.12".parse().unwrap());
    // least loaded in eu-west: either server, the same on both
    let first = wait_for("both DNS servers to answer alike", PATIENCE, || {
        let (a, b) = (g1.answer().ok()?, g2.answer().ok()?);
        (a == b && (a == [eu1] || a == [eu2])).then_some(a)
    });
    let urls = ["http://127.0.0.1:7490", "http://127.0.0.5:7490"];
    let (code, out) = wait_for("fedlb status to say they agree", PATIENCE, || {
        let (code, out) = fedlb_status(&urls);
        (code == Some(0)).then_some((code, out))
    });
    assert!(out.contains("all global nodes agree"), "{code:?}\n{out}");

    // kill -9 the global node `fedlb up` names, fail the answered server
    let log = fed.log("up");
    let pid: i32 = log
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("kill -9 ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .expect("fedlb up prints the kill command");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9 the global node");
    let (failed, other) = if first == [eu1] {
        (eu1, eu2)
    } else {
        (eu2, eu1)
    };
    let t0 = Instant::now();
    assert_eq!(
        http_post(&format!("http://{failed}:8080/admin/fail")),
        Ok(200)
    );
    let seen = g2.follow(
        t0,
        PATIENCE,
        |a| a == [failed] || a == [other],
        |a| a == [other],
    );
    record_timing(
        scenario,
        "server-failed-g1-dead",
        "embedded",
        seen.last().unwrap().at,
    );
    let (code, out) = fedlb_status(&urls);
    assert_eq!(code, Some(2), "a dead node cannot be read:\n{out}");
}
