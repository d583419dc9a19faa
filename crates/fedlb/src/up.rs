//! `fedlb up`: every node of a topology on this machine, as child processes of this one —
//! so that each can be killed and restarted on its own, as in a real deployment — plus the
//! embedded DNS server (run by the global node) and demo backends for servers nothing
//! listens for yet. Ctrl-C stops everything.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use fedlb_topology::{DnsServer, Loader, ProbeKind, Role, Topology};

struct Proc {
    name: String,
    child: Child,
}

/// Runs the topology until SIGINT or SIGTERM.
pub fn run(topology: &Path, state: Option<PathBuf>, backends: bool) -> anyhow::Result<()> {
    let t = Loader::new()
        .read_key_files(false)
        .load(topology)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .topology;
    let state = state.unwrap_or_else(|| PathBuf::from(".fedlb").join(&t.name));
    let certs = state.join("certs");
    ensure_certs(topology, &certs, &t)?;
    let exe = std::env::current_exe().context("locating the fedlb binary")?;
    let mut procs: Vec<Proc> = Vec::new();

    if backends {
        for (addr, name) in backend_addresses(&t) {
            if TcpListener::bind(addr).is_err() {
                println!("  {addr} is in use: {name} is served by what listens there");
                continue;
            }
            procs.push(spawn(
                &exe,
                &format!("backend {name}"),
                &[
                    "backend",
                    "--listen",
                    &addr.to_string(),
                    "--name",
                    &name,
                    "--latency-ms",
                    "2",
                ],
            )?);
        }
    }
    let topo = topology.to_str().context("topology path is not UTF-8")?;
    let certs_s = certs.to_str().context("state path is not UTF-8")?;
    // each node's operator overrides (`overrides.<node>.<role>.jsonl`) survive a restart here
    let nodes_state = state.join("nodes");
    let nodes_s = nodes_state.to_str().context("state path is not UTF-8")?;
    for g in &t.globals {
        procs.push(spawn(
            &exe,
            &g.name,
            &[
                "global",
                topo,
                "--node",
                &g.name,
                "--certs",
                certs_s,
                "--state-dir",
                nodes_s,
            ],
        )?);
    }
    for node in t.farms.values().flat_map(|f| &f.nodes) {
        procs.push(spawn(
            &exe,
            &node.name,
            &[
                "farm",
                topo,
                "--node",
                &node.name,
                "--certs",
                certs_s,
                "--state-dir",
                nodes_s,
            ],
        )?);
    }
    for node in t.nodes().into_iter().filter(|n| n.role == Role::Agent) {
        procs.push(spawn(
            &exe,
            &node.name,
            &["agent", topo, "--node", &node.name, "--certs", certs_s],
        )?);
    }
    print_banner(&t, &state, &procs);

    let stop = wait_for_stop(&mut procs)?;
    println!("stopping ({stop})");
    terminate(&mut procs);
    Ok(())
}

/// The operator certificate `fedlb up` issues for the demo.
const DEMO_OPERATOR: &str = "demo";

fn ensure_certs(topology: &Path, certs: &Path, t: &Topology) -> anyhow::Result<()> {
    if !certs.join("ca.pem").exists() {
        std::fs::create_dir_all(certs).with_context(|| format!("creating {}", certs.display()))?;
        crate::certs::run(topology, certs, false, None)?;
    }
    for node in t.nodes() {
        let role = match node.role {
            Role::Global => fedlb_net::Role::Global,
            Role::Farm(_) => fedlb_net::Role::Farm,
            Role::Agent => fedlb_net::Role::Agent,
        };
        let id = fedlb_net::PeerIdentity::new(role, fedlb_net::NodeName::new(node.name.as_str())?);
        if !fedlb_net::pki::node_cert_path(certs, &id).exists() {
            crate::certs::run(topology, certs, false, Some(&node.name))?;
        }
    }
    // the demo's operator, for `fedlb drain` and friends
    let id = fedlb_net::PeerIdentity::new(
        fedlb_net::Role::Operator,
        fedlb_net::NodeName::new(DEMO_OPERATOR)?,
    );
    if !fedlb_net::pki::node_cert_path(certs, &id).exists() {
        crate::certs::operator(topology, certs, DEMO_OPERATOR, false)?;
    }
    Ok(())
}

/// One demo backend per server address and probed port.
fn backend_addresses(t: &Topology) -> Vec<(SocketAddr, String)> {
    let mut out = BTreeSet::new();
    for (server, _) in t.servers() {
        for svc in &server.services {
            let service = &t.services[svc];
            for p in &service.probes {
                if matches!(p.kind, ProbeKind::Http(_) | ProbeKind::Tcp) {
                    let port = p.port.unwrap_or(service.port);
                    out.insert((
                        SocketAddr::new(server.probe_target(), port),
                        server.id.to_string(),
                    ));
                }
            }
        }
    }
    out.into_iter().collect()
}

fn spawn(exe: &Path, name: &str, args: &[&str]) -> anyhow::Result<Proc> {
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    for pipe in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let prefix = name.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("[{prefix}] {line}");
            }
        });
    }
    Ok(Proc {
        name: name.to_owned(),
        child,
    })
}

/// Where global node `name` publishes: its DNS server's address.
fn dns_of(t: &Topology, name: &str) -> SocketAddr {
    match t.dns_for(name).server {
        DnsServer::Embedded { listen, .. } => listen,
        DnsServer::Rfc2136 { primaries } => primaries[0],
    }
}

fn print_banner(t: &Topology, state: &Path, procs: &[Proc]) {
    let dns = dns_of(t, &t.global.name);
    let name = t
        .services
        .values()
        .next()
        .map_or("www".to_owned(), |s| s.fqdn.clone());
    let example = t
        .servers()
        .next()
        .map(|(s, _)| (s.id.to_string(), s.probe_target()));
    let port = t.services.values().next().map_or(80, |s| s.port);
    println!();
    println!(
        "fedlb is up: topology \"{}\", state in {}",
        t.name,
        state.display()
    );
    if t.globals.len() > 1 {
        for g in &t.globals {
            let pid = procs
                .iter()
                .find(|p| p.name == g.name)
                .map_or(0, |p| p.child.id());
            println!(
                "  global node {} (pid {pid}): DNS server {} (zone {}), status page http://{}/",
                g.name,
                dns_of(t, &g.name),
                t.dns.zone,
                g.status
            );
        }
    } else {
        println!("  DNS server:   {dns} (zone {})", t.dns.zone);
        println!("  status page:  http://{}/", t.global.status);
    }
    for f in t.farms.values() {
        for n in &f.nodes {
            println!("  farm {:<9} http://{}/", n.name, n.status);
        }
    }
    println!();
    println!(
        "  try:   dig @{} -p {} {name} A +short",
        dns.ip(),
        dns.port()
    );
    // every other global node's own DNS server answers the same
    let mut shown = BTreeSet::from([dns]);
    for g in t.globals.iter().skip(1) {
        let other = dns_of(t, &g.name);
        if shown.insert(other) {
            println!(
                "         dig @{} -p {} {name} A +short   # {}'s DNS server",
                other.ip(),
                other.port(),
                g.name
            );
        }
    }
    // a client of each region: from an address of its first prefix (loopback prefixes can
    // be used as a source at once), and as a resolver would ask for it, by ECS
    for r in t.regions.values() {
        let Some(net) = r.clients.first() else {
            continue;
        };
        let source = match net.hosts().next() {
            Some(ip) if ip.is_loopback() => format!(" -b {ip}"),
            _ => String::new(),
        };
        let ecs = if source.is_empty() {
            format!(" +subnet={net}")
        } else {
            String::new()
        };
        println!(
            "         dig @{} -p {} {name} A +short{source}{ecs}   # a client in region {}",
            dns.ip(),
            dns.port(),
            r.id
        );
    }
    let urls: Vec<String> = t
        .globals
        .iter()
        .map(|g| format!("http://{}", g.status))
        .collect();
    println!("         fedlb status {}", urls.join(" "));
    if t.globals.len() > 1 {
        println!("  kill a global node and watch the others carry on (and agree):");
        if let Some(p) = procs.iter().find(|p| p.name == t.global.name) {
            println!("         kill -9 {}      # {}", p.child.id(), p.name);
        }
    }
    if let Some((server, ip)) = example {
        println!("  make a server fail and watch the answer move:");
        println!("         curl -X POST http://{ip}:{port}/admin/fail      # {server} answers 503");
        println!("         curl -X POST http://{ip}:{port}/admin/recover");
        println!("  or take it out as an operator would (audited, shown on the status pages):");
        println!(
            "         fedlb drain {server} --for 10m --reason \"kernel upgrade\" --topology {} --certs {} --operator {DEMO_OPERATOR}",
            t.file,
            state.join("certs").display()
        );
    }
    println!("  Ctrl-C stops everything.");
    println!();
}

/// Waits for SIGINT or SIGTERM. A child that exits is reported; the others go on (a farm
/// node that dies is a fault the federation must ride out, not a reason to stop it all).
fn wait_for_stop(procs: &mut [Proc]) -> anyhow::Result<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async {
        let token = fedlb::roles::stop_on_signals();
        let mut reported = BTreeSet::new();
        loop {
            tokio::select! {
                () = token.cancelled() => return Ok("signal".to_owned()),
                () = tokio::time::sleep(Duration::from_millis(250)) => {
                    for p in procs.iter_mut() {
                        if let Ok(Some(status)) = p.child.try_wait()
                            && reported.insert(p.name.clone())
                        {
                            eprintln!("fedlb up: {} exited ({status}); the others go on", p.name);
                        }
                    }
                    if reported.len() == procs.len() {
                        return Ok("every process exited".to_owned());
                    }
                }
            }
        }
    })
}

fn terminate(procs: &mut [Proc]) {
    for p in procs.iter() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(p.child.id().to_string())
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for p in procs.iter_mut() {
        while Instant::now() < deadline {
            if let Ok(Some(_)) = p.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Ok(None) = p.child.try_wait() {
            eprintln!("{} did not stop in time; killing it", p.name);
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}
