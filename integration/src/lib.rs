//! fedlb's integration suite: multi-process scenarios with the real `fedlb` binary, real
//! backends (the demo backend and nginx), the embedded DNS server and BIND, all on loopback.
//! Every scenario asserts on real DNS answers, read from the authoritative server directly,
//! or on real status documents; none asserts on speed. Each records how long a change took
//! (fault → DNS answer changed), prints it as `timing: <scenario>: <ms> ms` and appends it
//! to `target/integration-timings.jsonl`.
//!
//! This crate only drives processes; it must never link the product's crates (the point is
//! to test the binary as an operator runs it).
//!
//! ## The `fedlb` binary
//!
//! Cargo gives a test the path of a binary of its own package only, so the harness finds
//! `fedlb` itself, once per test process, in the target directory the test binary lives in
//! (`<target>/<profile>/fedlb`):
//!
//! - `FEDLB_BIN`, when set, names the binary to use;
//! - else, if that binary is newer than every file under `crates/`, `Cargo.toml` and
//!   `Cargo.lock` (it was built after the last change: `cargo test --workspace`, which CI
//!   runs, builds it), it is used as is;
//! - else the harness runs `cargo build -p fedlb --bin fedlb` into that target directory
//!   (`--release` for a release test build) and uses the result.
//!
//! ## Addresses
//!
//! Each federation gets its own `127.A.B.0/24` block (A from the process id, B counting
//! federations in this process), so scenarios run in parallel with each other and with
//! the quick-start demo (which uses `127.0.0.x`). Within a block: `.1` is the global node
//! and the DNS server, `.2`–`.9` farm nodes, `.10` and up servers.
//!
//! ## Missing tools
//!
//! nginx, named (BIND) and nsupdate come from Debian packages (`nginx`, `bind9`,
//! `bind9-utils`/`bind9-dnsutils`). When one is missing, the scenario needing it fails if
//! `CI` is set and is skipped with a loud message otherwise.

#![forbid(unsafe_code)]

mod dns;
mod fed;
mod http;
mod timing;
mod topo;

pub use dns::{Bind, DnsWatch, nsupdate_replace, query_a, query_a_as, query_soa_serial, query_txt};
pub use fed::{Fed, fedlb_bin, require_tool, wait_listening};
pub use http::{http_post, status};
pub use timing::record_timing;
pub use topo::{
    DnsTarget, FarmSpec, HTTP_PROBE, RegionSpec, ServerSpec, TSIG_NAME, TSIG_SECRET, Topo,
};

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Polls `f` every 50 ms until it returns `Some`, or panics after `timeout` with `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Addresses as a sorted, comparable list.
pub fn addrs(list: &[IpAddr]) -> Vec<IpAddr> {
    let mut v = list.to_vec();
    v.sort();
    v.dedup();
    v
}

/// Generous limit for anything the suite waits for: slowness never fails a scenario,
/// only a wrong answer does.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Writes `topo`, makes certificates, and starts a demo backend for every server (latency
/// from `latency_ms`, default 0), then the global node, every farm node and every agent.
/// Returns a watch on the service's name at the authoritative server.
pub fn bring_up(fed: &mut Fed, topo: &Topo, latency_ms: &[(&str, u64)]) -> DnsWatch {
    fed.write_topology(&topo.to_toml());
    fed.certs();
    for s in topo.servers() {
        let latency = latency_ms
            .iter()
            .find(|(n, _)| *n == s.name)
            .map_or(0, |(_, l)| *l);
        fed.backend(&s.name, s.addr(), latency);
    }
    start_nodes(fed, topo);
    DnsWatch::new(topo.dns_addr(), &topo.fqdn)
}

/// Starts the global node, every farm node and every agent of `topo`.
pub fn start_nodes(fed: &mut Fed, topo: &Topo) {
    fed.global();
    for f in &topo.farms {
        for n in f.node_names() {
            fed.farm(&n);
        }
    }
    for a in topo.agents() {
        fed.agent(&a);
    }
}

/// The IPv4 address of server `name` of `topo`, as an answer.
pub fn ip_of(topo: &Topo, name: &str) -> IpAddr {
    IpAddr::V4(topo.server(name).ip)
}

/// The global node's status for the (only) service, once it has decided: the service entry.
pub fn global_service_status(topo: &Topo) -> serde_json::Value {
    wait_for("a global decision in the status document", PATIENCE, || {
        let doc = status(&topo.status_url()).ok()?;
        let svc = doc["services"].as_array()?.first()?.clone();
        (svc["global"]["chosen"]
            .as_array()
            .is_some_and(|c| !c.is_empty()))
        .then_some(svc)
    })
}

/// Strings of a JSON array.
pub fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
