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
    procs.push(spawn(
        &exe,
        &t.global.name,
        &["global", topo, "--node", &t.global.name, "--certs", certs_s],
    )?);
    for node in t.farms.values().flat_map(|f| &f.nodes) {
        procs.push(spawn(
            &exe,
            &node.name,
            &["farm", topo, "--node", &node.name, "--certs", certs_s],
        )?);
    }
    for node in t.nodes().into_iter().filter(|n| n.role == Role::Agent) {
        procs.push(spawn(
            &exe,
            &node.name,
            &["agent", topo, "--node", &node.name, "--certs", certs_s],
        )?);
    }
    print_banner(&t, &state);

    let stop = wait_for_stop(&mut procs)?;
    println!("stopping ({stop})");
    terminate(&mut procs);
    Ok(())
}

fn ensure_certs(topology: &Path, certs: &Path, t: &Topology) -> anyhow::Result<()> {
    if !certs.join("ca.pem").exists() {
        std::fs::create_dir_all(certs).with_context(|| format!("creating {}", certs.display()))?;
        return crate::certs::run(topology, certs, false, None);
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

fn print_banner(t: &Topology, state: &Path) {
    let dns = match &t.dns.server {
        DnsServer::Embedded { listen, .. } => *listen,
        DnsServer::Rfc2136 { primaries } => primaries[0],
    };
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
    println!("  DNS server:   {dns} (zone {})", t.dns.zone);
    println!("  status page:  http://{}/", t.global.status);
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
    println!("         fedlb status http://{}", t.global.status);
    if let Some((server, ip)) = example {
        println!("  make a server fail and watch the answer move:");
        println!("         curl -X POST http://{ip}:{port}/admin/fail      # {server} answers 503");
        println!("         curl -X POST http://{ip}:{port}/admin/recover");
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
        let token = crate::roles::stop_on_signals();
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
