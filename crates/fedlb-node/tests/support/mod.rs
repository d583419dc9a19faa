//! A whole federation in one test process: the topology written to a temporary directory,
//! certificates from a fresh private CA, the roles (`global::run`, `farm::run`,
//! `agent::run`) as tasks with their own cancellation tokens, demo HTTP backends on
//! loopback addresses, and ways to watch the result: the status endpoint, the metrics
//! and real DNS queries to the embedded server.
//!
//! Each test gets its own address block `127.0.<block>.0/24`, so tests of one binary run in
//! parallel without sharing a port.
#![allow(dead_code)] // every test binary uses a different part of it

pub mod chromium;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use fedlb_net::Role;
use fedlb_net::{Ca, NodeName};
use fedlb_node::backend::{self, Behaviour};
use fedlb_node::{NodeError, NodeOptions, agent, farm, global};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a condition may take before the test fails. Generous: detection itself is
/// well under a second with the timings of these topologies, but CI machines are slow.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Logs to the test's output when `RUST_LOG` is set.
pub fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// `127.0.<block>.<host>`.
pub fn ip(block: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, block, host))
}

/// The probe settings every test topology uses: fast enough that a test takes seconds.
pub const FAST_HTTP_PROBE: &str = r#"
[[services.probes]]
kind = "http"
path = "/health"
interval = "200ms"
timeout = "150ms"
rise = 2
fall = 2
"#;

/// The top of a test topology: heartbeats every 200 ms, the global node on `.1`, the
/// embedded DNS server on `.1:5353`, one service `www` (port 8080) chosen by closest farm.
/// Farms and servers follow.
pub fn header(block: u8, local_policy: &str) -> String {
    format!(
        r#"
name = "t{block}"
heartbeat = {{ interval = "200ms", missed = 3 }}

[global]
listen = "127.0.{block}.1:7400"
status = "127.0.{block}.1:7480"

[dns]
zone = "t.test."
ttl = "1s"
embedded = {{ listen = "127.0.{block}.1:5353", state_dir = "dns" }}

[[services]]
name = "www"
fqdn = "www.t.test."
port = 8080
global = {{ policy = "closest", hysteresis = {{ margin = 0.2, dwell = "1s" }} }}
local = {{ policy = {local_policy}, hysteresis = {{ margin = 0.2, dwell = "1s" }} }}
{FAST_HTTP_PROBE}
"#
    )
}

/// A `[[farms]]` table: farm node `name` on `127.0.<block>.<host>`, pinned distance, and
/// its local policy for `www` given as a failover order (deterministic, so tests can say
/// which server must be chosen).
pub fn farm(block: u8, host: u8, name: &str, distance_ms: u32, order: &[&str]) -> String {
    let order = order
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
[[farms]]
name = "{name}"
listen = "127.0.{block}.{host}:7401"
status = "127.0.{block}.{host}:7481"
distance_ms = {distance_ms}
local.www = {{ policy = {{ kind = "failover", order = [{order}] }} }}
"#
    )
}

/// A `[[farms.servers]]` table for a server probed remotely by its farm node.
pub fn remote_server(block: u8, host: u8, name: &str) -> String {
    format!(
        r#"
[[farms.servers]]
name = "{name}"
address = "127.0.{block}.{host}"
services = ["www"]
"#
    )
}

/// A `[[farms.servers]]` table for a server whose agent `agent` runs its probes.
pub fn intrusive_server(block: u8, host: u8, name: &str, agent: &str) -> String {
    format!(
        r#"
[[farms.servers]]
name = "{name}"
address = "127.0.{block}.{host}"
services = ["www"]
mode = "intrusive"
agent = "{agent}"
"#
    )
}

/// A running backend.
pub struct Backend {
    /// Live behaviour (fail with 503, latency).
    pub behaviour: Arc<Behaviour>,
    addr: SocketAddr,
    task: JoinHandle<std::io::Result<()>>,
}

impl Backend {
    /// Starts the demo backend `name` on `addr`.
    pub async fn start(name: &str, addr: SocketAddr) -> Backend {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("backend {name} on {addr}: {e}"));
        let behaviour = Behaviour::new(name, Duration::ZERO);
        let task = tokio::spawn(backend::serve(
            listener,
            behaviour.clone(),
            std::future::pending(),
        ));
        Backend {
            behaviour,
            addr,
            task,
        }
    }

    /// Kills it: the server task is aborted and its listener closed, so new connections are
    /// refused (probes use a fresh connection each time).
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
        // the port is closed once a connect is refused
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(self.addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("backend on {} still accepts connections", self.addr);
    }
}

struct Node {
    name: String,
    token: CancellationToken,
    task: JoinHandle<Result<(), NodeError>>,
}

/// A federation under test.
pub struct World {
    /// The temporary directory holding the topology, certificates and DNS state.
    pub dir: tempfile::TempDir,
    /// The topology file.
    pub topology: PathBuf,
    /// The certificate directory.
    pub certs: PathBuf,
    nodes: Vec<Node>,
    /// Backends by server name.
    pub backends: BTreeMap<String, Backend>,
}

/// The usual two farms: `near` (10 ms; failover n1 then n2, on .11 and .12) and `far`
/// (50 ms; f1 on .21), least loaded across farms, every server probed by its farm node.
pub fn near_and_far(block: u8) -> String {
    [
        header(block, r#""least_loaded""#),
        farm(block, 2, "near", 10, &["n1", "n2"]),
        remote_server(block, 11, "n1"),
        remote_server(block, 12, "n2"),
        farm(block, 3, "far", 50, &["f1"]),
        remote_server(block, 21, "f1"),
    ]
    .concat()
}

impl World {
    /// A world of [`near_and_far`] with its three backends running and no node yet.
    pub async fn near_and_far(block: u8) -> World {
        let mut w = World::new(&near_and_far(block));
        for (name, host) in [("n1", 11), ("n2", 12), ("f1", 21)] {
            w.start_backend(name, ip(block, host)).await;
        }
        w
    }

    /// [`World::near_and_far`] with the global node and both farm nodes started.
    pub async fn near_and_far_running(block: u8) -> World {
        let mut w = World::near_and_far(block).await;
        w.start_global();
        w.start_farm("near");
        w.start_farm("far");
        w
    }

    /// Writes `toml` as the topology and makes a CA and a certificate for every node.
    pub fn new(toml: &str) -> World {
        init_logs();
        let dir = tempfile::tempdir().expect("temporary directory");
        let topology = dir.path().join("topology.toml");
        std::fs::write(&topology, toml).expect("writing the topology");
        let certs = dir.path().join("certs");
        let loaded = fedlb_topology::Loader::new()
            .read_key_files(false)
            .load(&topology)
            .unwrap_or_else(|e| panic!("test topology is invalid: {e}\n{toml}"));
        let ca = Ca::generate(&loaded.topology.name).expect("CA");
        ca.write(&certs, false).expect("writing the CA");
        for node in loaded.topology.nodes() {
            let role = match node.role {
                fedlb_topology::Role::Global => Role::Global,
                fedlb_topology::Role::Farm(_) => Role::Farm,
                fedlb_topology::Role::Agent => Role::Agent,
            };
            ca.issue(&NodeName::new(&node.name).expect("node name"), role)
                .expect("issuing a certificate")
                .write(&certs, false)
                .expect("writing a certificate");
        }
        World {
            dir,
            topology,
            certs,
            nodes: Vec::new(),
            backends: BTreeMap::new(),
        }
    }

    /// Replaces the topology file atomically (write a sibling, rename), as an operator's
    /// editor or config management would; the nodes notice within about a second.
    pub fn rewrite(&self, toml: &str) {
        fedlb_topology::Loader::new()
            .read_key_files(false)
            .load_str(toml, fedlb_topology::Format::Toml, "new topology")
            .unwrap_or_else(|e| panic!("new test topology is invalid: {e}\n{toml}"));
        let tmp = self.dir.path().join("topology.toml.new");
        std::fs::write(&tmp, toml).expect("writing the new topology");
        std::fs::rename(&tmp, &self.topology).expect("replacing the topology");
    }

    /// Issues a certificate for a node added to the topology later (`fedlb certs --add`).
    pub fn issue_cert(&self, node: &str, role: Role) {
        let ca = Ca::load(&self.certs).expect("loading the CA");
        ca.issue(&NodeName::new(node).expect("node name"), role)
            .expect("issuing a certificate")
            .write(&self.certs, false)
            .expect("writing a certificate");
    }

    fn options(&self, node: &str) -> NodeOptions {
        NodeOptions {
            topology: self.topology.clone(),
            node: node.to_owned(),
            certs: self.certs.clone(),
            state_dir: Some(self.dir.path().join("state")),
        }
    }

    fn spawn<F>(&mut self, name: &str, run: impl FnOnce(NodeOptions, CancellationToken) -> F)
    where
        F: Future<Output = Result<(), NodeError>> + Send + 'static,
    {
        let token = CancellationToken::new();
        let task = tokio::spawn(run(self.options(name), token.clone()));
        self.nodes.push(Node {
            name: name.to_owned(),
            token,
            task,
        });
    }

    /// Starts the global node.
    pub fn start_global(&mut self) {
        self.spawn("global", global::run);
    }

    /// Starts global node `name` (one of several `[[global]]`).
    pub fn start_global_named(&mut self, name: &str) {
        self.spawn(name, global::run);
    }

    /// Starts farm node `name`.
    pub fn start_farm(&mut self, name: &str) {
        self.spawn(name, farm::run);
    }

    /// Starts agent `name`.
    pub fn start_agent(&mut self, name: &str) {
        self.spawn(name, agent::run);
    }

    /// Starts the demo backend of server `name` on `addr`.
    pub async fn start_backend(&mut self, name: &str, addr: IpAddr) {
        let b = Backend::start(name, SocketAddr::new(addr, 8080)).await;
        self.backends.insert(name.to_owned(), b);
    }

    /// The backend of server `name`.
    pub fn backend(&self, name: &str) -> &Arc<Behaviour> {
        &self.backends[name].behaviour
    }

    /// Kills the backend of server `name`.
    pub async fn kill_backend(&mut self, name: &str) {
        let b = self
            .backends
            .remove(name)
            .unwrap_or_else(|| panic!("no backend {name}"));
        b.kill().await;
    }

    /// Stops node `name` and checks that it stopped cleanly.
    pub async fn stop_node(&mut self, name: &str) {
        let i = self
            .nodes
            .iter()
            .position(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name} running"));
        let n = self.nodes.remove(i);
        n.token.cancel();
        match tokio::time::timeout(Duration::from_secs(10), n.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => panic!("node {name} failed: {e}"),
            Ok(Err(e)) => panic!("node {name} panicked: {e}"),
            Err(_) => panic!("node {name} did not stop within 10 s"),
        }
    }

    /// Fails the test if a node has stopped on its own (an error at start-up, a panic).
    pub fn assert_nodes_running(&self) {
        for n in &self.nodes {
            assert!(!n.task.is_finished(), "node {} stopped on its own", n.name);
        }
    }

    /// Stops every node and checks that each one stopped cleanly and promptly.
    pub async fn shutdown(mut self) {
        for n in &self.nodes {
            n.token.cancel();
        }
        for n in self.nodes.drain(..) {
            match tokio::time::timeout(Duration::from_secs(10), n.task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => panic!("node {} failed: {e}", n.name),
                Ok(Err(e)) => panic!("node {} panicked: {e}", n.name),
                Err(_) => panic!("node {} did not stop within 10 s", n.name),
            }
        }
        for (_, b) in std::mem::take(&mut self.backends) {
            b.task.abort();
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for n in &self.nodes {
            n.token.cancel();
        }
        for b in self.backends.values() {
            b.task.abort();
        }
    }
}

/// Waits until `probe` returns `Ok`, polling every 100 ms; after `DEADLINE` the test fails
/// with `what` and the last thing `probe` saw.
pub async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = tokio::time::Instant::now();
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(last) if start.elapsed() > DEADLINE => {
                panic!("timed out after {DEADLINE:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// `GET http://addr/path`: the status code and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let io = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(5), io)
        .await
        .map_err(|_| format!("GET {addr}{path}: timed out"))?
        .map_err(|e| format!("GET {addr}{path}: {e}"))?;
    let text = String::from_utf8(buf).map_err(|e| format!("GET {addr}{path}: {e}"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {addr}{path}: no header end in {text:?}"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("GET {addr}{path}: bad status line in {head:?}"))?;
    Ok((code, body.to_owned()))
}

/// The status document of the node whose status endpoint is `addr`.
pub async fn status(addr: SocketAddr) -> Result<Value, String> {
    match http_get(addr, "/status").await? {
        (200, body) => serde_json::from_str(&body).map_err(|e| format!("{e}: {body}")),
        (code, body) => Err(format!("GET /status: {code} {body}")),
    }
}

/// A counter or gauge from the node's `/metrics`: `name` with exactly this label set (`""`
/// for none, else like `{from="farm"}`); 0 when the series does not exist yet.
pub async fn metric(addr: SocketAddr, series: &str) -> Result<f64, String> {
    let (code, body) = http_get(addr, "/metrics").await?;
    if code != 200 {
        return Err(format!("GET /metrics: {code}"));
    }
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix(series)
            && let Some(value) = rest.strip_prefix(' ')
        {
            return value.trim().parse().map_err(|e| format!("{line:?}: {e}"));
        }
    }
    Ok(0.0)
}

/// The one service's entry in a status document.
pub fn service(v: &Value) -> &Value {
    &v["services"][0]
}

/// The global decision's answers, as strings.
pub fn global_answers(v: &Value) -> Vec<String> {
    strings(&service(v)["global"]["answers"])
}

/// The global decision's chosen candidates.
pub fn global_chosen(v: &Value) -> Vec<String> {
    strings(&service(v)["global"]["chosen"])
}

/// Farm `farm`'s local decision as seen in a status document (a farm node's own, or the
/// global node's copy from the farm's summary).
pub fn local<'a>(v: &'a Value, farm: &str) -> Option<&'a Value> {
    service(v)["farms"]
        .as_array()?
        .iter()
        .find(|f| f["farm"] == farm)
        .map(|f| &f["local"])
}

/// The servers farm `farm` chose.
pub fn local_chosen(v: &Value, farm: &str) -> Vec<String> {
    local(v, farm).map_or_else(Vec::new, |l| strings(&l["chosen"]))
}

/// A candidate of a tier (`global` or a farm's `local`) by id.
pub fn candidate<'a>(tier: &'a Value, id: &str) -> Option<&'a Value> {
    tier["candidates"]
        .as_array()?
        .iter()
        .find(|c| c["id"] == id)
}

/// The ids of a tier's candidates.
pub fn candidate_ids(tier: &Value) -> Vec<String> {
    tier["candidates"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A short line describing a node's decisions, for failure messages.
pub fn describe(v: &Value) -> String {
    let svc = service(v);
    let mut out = String::new();
    if !svc["global"].is_null() {
        out.push_str(&format!(
            "global chose {:?} answering {:?} ({}); ",
            global_chosen(v),
            global_answers(v),
            svc["global"]["why"]
        ));
    }
    for f in svc["farms"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "farm {} chose {} ({}); ",
            f["farm"], f["local"]["chosen"], f["local"]["why"]
        ));
    }
    out
}

/// Waits until the global node at `status_addr` answers exactly `answers`, and the
/// embedded DNS server at `dns` serves them for `www.t.test.`.
pub async fn wait_answers(status_addr: SocketAddr, dns: SocketAddr, answers: &[IpAddr]) {
    let want: Vec<String> = answers.iter().map(ToString::to_string).collect();
    wait_for(&format!("the global node to answer {want:?}"), || async {
        let v = status(status_addr).await?;
        if global_answers(&v) == want {
            Ok(())
        } else {
            Err(describe(&v))
        }
    })
    .await;
    wait_for(&format!("DNS to answer {want:?}"), || async {
        let got = dns_a(dns, "www.t.test.").await?;
        let got: Vec<String> = got.iter().map(ToString::to_string).collect();
        if got == want {
            Ok(())
        } else {
            Err(format!("dns answers {got:?}"))
        }
    })
    .await;
}

/// Asks `server` for the A records of `name` over UDP, as a stub resolver would.
pub async fn dns_a(server: SocketAddr, name: &str) -> Result<Vec<IpAddr>, String> {
    dns_a_from(IpAddr::from([127, 0, 0, 1]), server, name).await
}

/// [`dns_a`] as a client at `source` asks (a view picks its answer by source address).
pub async fn dns_a_from(
    source: IpAddr,
    server: SocketAddr,
    name: &str,
) -> Result<Vec<IpAddr>, String> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    let name = Name::from_ascii(name).map_err(|e| e.to_string())?;
    let mut query = Message::query();
    query.add_query(Query::query(name, RecordType::A));
    let udp = tokio::net::UdpSocket::bind(SocketAddr::new(source, 0))
        .await
        .map_err(|e| e.to_string())?;
    udp.send_to(&query.to_vec().map_err(|e| e.to_string())?, server)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    let (n, _) = tokio::time::timeout(Duration::from_secs(1), udp.recv_from(&mut buf))
        .await
        .map_err(|_| format!("no DNS answer from {server}"))?
        .map_err(|e| e.to_string())?;
    let answer = Message::from_vec(&buf[..n]).map_err(|e| e.to_string())?;
    Ok(answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect())
}
