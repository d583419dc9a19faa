//! `fedlb drain|undrain|disable|enable|pin|overrides`: operator overrides, sent over HTTPS
//! with the operator's client certificate to global nodes' status ports (see
//! `fedlb_node::admin`):
//!
//! - a server of a farm → one global node (`--via`, default the first), which forwards the
//!   call to every farm node of that farm over their QUIC connections to it (their local
//!   decision carries it out; every global node sees the result in the farm's summaries);
//!   `--direct` sends it to each farm node's status port instead;
//! - a farm, or a server attached to the global nodes → every global node (each decides on
//!   its own from the same inputs, so each must hold the same overrides).
//!
//! The tool reads the topology to know which nodes those are and where their status ports
//! listen, makes the override's id and absolute expiry (so every copy agrees), and reports
//! each node's answer (a forwarded call: each farm node's); it exits 1 when any node
//! refused or could not be reached.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow, bail};
use clap::Args;
use fedlb_net::{NodeName, NodeTls, PeerIdentity, Role};
use fedlb_node::admin::{Kind, Record, Request, Response, unix_ms, utc_label};
use fedlb_topology::{Loader, Topology};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What every admin command needs: the topology (which nodes, where), the operator's
/// certificate.
#[derive(Args, Debug, Clone)]
pub struct AdminArgs {
    /// The topology file the nodes run.
    #[arg(
        long,
        global = true,
        env = "FEDLB_TOPOLOGY",
        default_value = "fedlb.toml"
    )]
    topology: PathBuf,
    /// The directory holding `ca.pem` and the operator's `<NAME>.operator.pem`/`.key`
    /// (`fedlb certs TOPOLOGY --operator NAME` writes them).
    #[arg(long, global = true, env = "FEDLB_CERTS", default_value = "certs")]
    certs: PathBuf,
    /// The operator's name (its certificate's): what the audit log and status show.
    #[arg(long, global = true, env = "FEDLB_OPERATOR")]
    operator: Option<String>,
    /// The global node a call about a farm's server goes through (it forwards the call to
    /// the farm's nodes over their connections to it). Default: the first global node.
    #[arg(long, global = true, value_name = "GLOBAL", conflicts_with = "direct")]
    via: Option<String>,
    /// Send calls about a farm's servers straight to each farm node's status port instead
    /// of through a global node (the operator's machine must reach them).
    #[arg(long, global = true)]
    direct: bool,
    /// Seconds to wait for each node.
    #[arg(long, global = true, default_value_t = 5)]
    timeout: u64,
}

/// Where an override goes and how it is made.
#[derive(Args, Debug, Clone)]
pub struct SetArgs {
    /// How long it holds (`30m`, `2h`, `90s`); without it, until cleared.
    #[arg(long = "for", value_name = "DURATION")]
    for_: Option<String>,
    /// Why, for the audit log and status (`kernel upgrade`).
    #[arg(long, default_value = "")]
    reason: String,
}

/// One node an admin call goes to.
struct Target {
    identity: PeerIdentity,
    addr: SocketAddr,
}

impl Target {
    fn label(&self) -> String {
        format!("{} {}", self.identity.role, self.identity.node)
    }
}

/// Where a call about `target` (a server or farm name) goes: the nodes, and whether the
/// global node forwards it to farm nodes. A server of a farm is held by the farm's nodes:
/// the call goes through one global node (`--via`, default the first), which forwards it
/// over the farm nodes' QUIC connections to it — or, with `--direct`, straight to each farm
/// node's status port. A farm or a directly attached server is held by every global node.
fn route(args: &AdminArgs, t: &Topology, target: &str) -> anyhow::Result<(Vec<Target>, Scope)> {
    if let Some(farm) = t
        .farms
        .values()
        .find(|f| f.servers.keys().any(|s| s.as_str() == target))
    {
        if args.direct {
            let nodes = farm
                .nodes
                .iter()
                .map(|n| node(Role::Farm, &n.name, n.status))
                .collect::<anyhow::Result<_>>()?;
            return Ok((nodes, Scope::Farm));
        }
        return Ok((vec![via(args, t)?], Scope::Farm));
    }
    let is_farm = t.farms.keys().any(|f| f.as_str() == target);
    let is_direct = t.direct_servers.keys().any(|s| s.as_str() == target);
    if is_farm || is_direct {
        return Ok((globals(t)?, Scope::Global));
    }
    let mut known: Vec<String> = t.farms.keys().map(|f| f.to_string()).collect();
    known.extend(
        t.farms
            .values()
            .flat_map(|f| f.servers.keys().map(|s| s.to_string())),
    );
    known.extend(t.direct_servers.keys().map(|s| s.to_string()));
    bail!(
        "{}: unknown target \"{target}\": no farm or server of that name (known: {})",
        t.file,
        known.join(", ")
    )
}

/// Who holds an override.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The farm nodes of the server's farm.
    Farm,
    /// Every global node.
    Global,
}

/// The global node farm-scoped calls go through.
fn via(args: &AdminArgs, t: &Topology) -> anyhow::Result<Target> {
    let g = match &args.via {
        Some(name) => t.globals.iter().find(|g| &g.name == name).ok_or_else(|| {
            anyhow!(
                "{}: --via {name}: no such global node (global nodes: {})",
                t.file,
                t.global_names().join(", ")
            )
        })?,
        None => t
            .globals
            .first()
            .ok_or_else(|| anyhow!("{}: no global node", t.file))?,
    };
    node(Role::Global, &g.name, g.status)
}

fn globals(t: &Topology) -> anyhow::Result<Vec<Target>> {
    t.globals
        .iter()
        .map(|g| node(Role::Global, &g.name, g.status))
        .collect()
}

fn every_node(t: &Topology) -> anyhow::Result<Vec<Target>> {
    let mut all = globals(t)?;
    for f in t.farms.values() {
        for n in &f.nodes {
            all.push(node(Role::Farm, &n.name, n.status)?);
        }
    }
    Ok(all)
}

fn node(role: Role, name: &str, status: SocketAddr) -> anyhow::Result<Target> {
    // a node listening on every address is reached on loopback
    let addr = match status.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), status.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), status.port())
        }
        _ => status,
    };
    Ok(Target {
        identity: PeerIdentity::new(role, NodeName::new(name)?),
        addr,
    })
}

fn operator_name(args: &AdminArgs) -> anyhow::Result<String> {
    match &args.operator {
        Some(n) => Ok(n.clone()),
        None => std::env::var("USER")
            .map_err(|_| anyhow!("no operator name: pass --operator NAME (or set FEDLB_OPERATOR)")),
    }
}

fn load(args: &AdminArgs) -> anyhow::Result<(Topology, Arc<tokio_rustls::rustls::ClientConfig>)> {
    let t = Loader::new()
        .read_key_files(false)
        .load(&args.topology)
        .map_err(|e| anyhow!("{e}"))?
        .topology;
    let name = operator_name(args)?;
    let me = PeerIdentity::new(Role::Operator, NodeName::new(name.as_str())?);
    let tls = NodeTls::load(&args.certs, &me).with_context(|| {
        format!(
            "the operator certificate of \"{name}\" in {} (issue one with: fedlb certs {} --out {} --operator {name})",
            args.certs.display(),
            args.topology.display(),
            args.certs.display()
        )
    })?;
    let mut cfg = tls.client_tls_config()?;
    cfg.alpn_protocols = vec![fedlb_node::http::ADMIN_ALPN.to_vec()];
    Ok((t, Arc::new(cfg)))
}

/// Sends `request` to one node; its answer or why not.
async fn call(
    tls: Arc<tokio_rustls::rustls::ClientConfig>,
    target: &Target,
    request: &Request,
    timeout: Duration,
) -> anyhow::Result<Response> {
    let work = async {
        let tcp = tokio::net::TcpStream::connect(target.addr)
            .await
            .with_context(|| format!("connecting to {}", target.addr))?;
        let name =
            tokio_rustls::rustls::pki_types::ServerName::try_from(target.identity.dns_name())
                .map_err(|e| anyhow!("{e}"))?;
        let mut stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .context("TLS handshake")?;
        let body = serde_json::to_vec(request)?;
        let head = format!(
            "POST /admin HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            target.identity.dns_name(),
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        stream.flush().await?;
        let mut answer = Vec::new();
        // the node closes the connection after one answer; a TLS close without
        // close_notify after a complete answer is not an error here
        let _ = stream.read_to_end(&mut answer).await;
        let text = String::from_utf8_lossy(&answer);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| anyhow!("no HTTP answer"))?;
        let code: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| anyhow!("bad HTTP status line: {head:?}"))?;
        if code != 200 {
            bail!("{}", body.trim());
        }
        serde_json::from_str::<Response>(body).context("reading the node's answer")
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| anyhow!("no answer within {timeout:?}"))?
}

/// One answer as the tool prints it: who (`global g1`, or `farm west via global g1` for a
/// call a global node forwarded), and what.
struct Answer {
    who: String,
    /// Where the error line names the node.
    addr: Option<SocketAddr>,
    result: Result<Response, String>,
    /// A farm node's answer to a call forwarded through a global node.
    forwarded: bool,
}

/// Sends to every node of `targets` the request `request_for` makes for it, one after the
/// other (the output keeps the topology's order): each node's answer, and those of the
/// farm nodes it forwarded the call to.
fn send_all(
    args: &AdminArgs,
    tls: Arc<tokio_rustls::rustls::ClientConfig>,
    targets: &[Target],
    request_for: impl Fn(&Target) -> Request,
) -> anyhow::Result<Vec<Answer>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let timeout = Duration::from_secs(args.timeout);
    let mut out = Vec::new();
    for t in targets {
        let r = rt.block_on(call(tls.clone(), t, &request_for(t), timeout));
        let forwarded = r.as_ref().map_or(Vec::new(), |r| r.forwarded.clone());
        out.push(Answer {
            who: t.label(),
            addr: Some(t.addr),
            result: r.map_err(|e| format!("{e:#}")),
            forwarded: false,
        });
        for f in forwarded {
            out.push(Answer {
                who: format!("farm {} via {}", f.node, t.label()),
                addr: None,
                result: f.result,
                forwarded: true,
            });
        }
    }
    Ok(out)
}

/// Prints an answer's error; false for an error.
fn failed(a: &Answer) -> bool {
    match &a.result {
        Ok(_) => false,
        Err(e) => {
            match a.addr {
                Some(addr) => eprintln!("{} ({addr}): error: {e}", a.who),
                None => eprintln!("{}: error: {e}", a.who),
            }
            true
        }
    }
}

fn exit(ok: anyhow::Result<bool>) -> ExitCode {
    match ok {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn new_id(kind: Kind) -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    // milliseconds and a little of the nanoseconds: unique for one operator's commands
    format!(
        "{}-{:x}{:03x}",
        kind.as_str(),
        now.as_millis(),
        now.subsec_nanos() % 4096
    )
}

/// `fedlb drain|disable|pin`: holds a new override on every node it belongs to.
pub fn set(
    args: &AdminArgs,
    set: &SetArgs,
    kind: Kind,
    service: Option<&str>,
    target: &str,
    region: Option<&str>,
) -> ExitCode {
    let run = || -> anyhow::Result<bool> {
        let (t, tls) = load(args)?;
        let (targets, scope) = route(args, &t, target)?;
        if let Some(service) = service
            && !t.services.keys().any(|s| s.as_str() == service)
        {
            bail!("{}: unknown service \"{service}\"", t.file);
        }
        if let Some(region) = region {
            if !t.regions.keys().any(|r| r.as_str() == region) {
                bail!("{}: unknown region \"{region}\"", t.file);
            }
            if scope == Scope::Farm {
                bail!(
                    "\"{target}\" is a server of a farm: its farm nodes decide for no region; pin per region to a farm or a directly attached server"
                );
            }
        }
        let until = match &set.for_ {
            Some(text) => {
                let d = fedlb_topology::duration::parse_duration(text)
                    .map_err(|e| anyhow!("--for {text:?}: {e}"))?;
                Some(unix_ms(SystemTime::now() + d))
            }
            None => None,
        };
        let record = Record {
            id: new_id(kind),
            kind,
            target: target.to_owned(),
            service: service.map(str::to_owned),
            region: region.map(str::to_owned),
            operator: String::new(),
            reason: set.reason.clone(),
            until_unix_ms: until,
            set_unix_ms: 0,
        };
        let request = Request::Set(record.clone());
        let until = until.map_or_else(
            || "until cleared".to_owned(),
            |u| format!("until {}", utc_label(u)),
        );
        let answers = send_all(args, tls, &targets, |_| request.clone())?;
        let mut ok = true;
        for a in &answers {
            if failed(a) {
                ok = false;
            } else if a.forwarded || scope == Scope::Global || args.direct {
                println!(
                    "{}: {} {target} ({until}), id {}",
                    a.who,
                    verb(kind),
                    record.id
                );
            }
        }
        Ok(ok)
    };
    exit(run())
}

fn verb(kind: Kind) -> &'static str {
    match kind {
        Kind::Drain => "drained",
        Kind::Disable => "disabled",
        Kind::Pin => "pinned to",
    }
}

/// `fedlb undrain|enable`: clears every override of `kind` on `target`.
pub fn clear_on(args: &AdminArgs, kind: Kind, target: &str) -> ExitCode {
    let run = || -> anyhow::Result<bool> {
        let (t, tls) = load(args)?;
        let (targets, scope) = route(args, &t, target)?;
        let request = Request::ClearOn {
            kind,
            target: target.to_owned(),
        };
        let answers = send_all(args, tls, &targets, |_| request.clone())?;
        let mut ok = true;
        for a in &answers {
            if failed(a) {
                ok = false;
                continue;
            }
            if !(a.forwarded || scope == Scope::Global || args.direct) {
                continue;
            }
            let r = a.result.as_ref().expect("not failed");
            if r.changed.is_empty() {
                println!("{}: no {} on {target}", a.who, kind.as_str());
            } else {
                println!("{}: cleared {}", a.who, r.changed.join(", "));
            }
        }
        Ok(ok)
    };
    exit(run())
}

/// The nodes a list or a clear goes to: every global node, and with `--direct` every farm
/// node; else the `--via` global node forwards to the farm nodes.
fn everywhere(args: &AdminArgs, t: &Topology) -> anyhow::Result<(Vec<Target>, String)> {
    if args.direct {
        return Ok((every_node(t)?, String::new()));
    }
    let via = via(args, t)?.identity.node.to_string();
    Ok((globals(t)?, via))
}

/// `fedlb overrides`: every node's overrides.
pub fn list(args: &AdminArgs) -> ExitCode {
    let run = || -> anyhow::Result<bool> {
        let (t, tls) = load(args)?;
        let (targets, via) = everywhere(args, &t)?;
        let answers = send_all(args, tls, &targets, |n| Request::List {
            farms: n.identity.node.as_str() == via,
        })?;
        let mut ok = true;
        for a in &answers {
            if failed(a) {
                ok = false;
                continue;
            }
            let r = a.result.as_ref().expect("not failed");
            if r.overrides.is_empty() {
                println!("{}: no overrides", a.who);
            }
            for o in &r.overrides {
                println!("{}: {}  {}", a.who, o.id, o.describe());
            }
        }
        Ok(ok)
    };
    exit(run())
}

/// `fedlb overrides clear ID`: clears it on every node holding it.
pub fn clear(args: &AdminArgs, id: &str) -> ExitCode {
    let run = || -> anyhow::Result<bool> {
        let (t, tls) = load(args)?;
        let (targets, via) = everywhere(args, &t)?;
        let answers = send_all(args, tls, &targets, |n| Request::Clear {
            id: id.to_owned(),
            farms: n.identity.node.as_str() == via,
        })?;
        // an id is held by the global nodes or by one farm's nodes: the others have none
        let missing = format!("no override \"{id}\"");
        let cleared: Vec<&Answer> = answers
            .iter()
            .filter(|a| {
                a.result
                    .as_ref()
                    .is_ok_and(|r| r.changed.iter().any(|c| c == id))
            })
            .collect();
        if cleared.is_empty() {
            for a in answers.iter().filter(|a| {
                a.result
                    .as_ref()
                    .err()
                    .is_some_and(|e| !e.starts_with(&missing))
            }) {
                failed(a);
            }
            bail!("no node holds override \"{id}\" (fedlb overrides lists them)");
        }
        let mut ok = true;
        for a in &answers {
            match &a.result {
                Ok(r) if r.changed.iter().any(|c| c == id) => println!("{}: cleared {id}", a.who),
                Ok(_) => {}
                Err(e) if e.starts_with(&missing) => {}
                Err(_) => ok = !failed(a) && ok,
            }
        }
        Ok(ok)
    };
    exit(run())
}
