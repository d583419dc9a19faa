//! The benchmarks, one module each, and what they share: topology text, the DNS targets,
//! and the fault-trial loop.

pub mod bind;
pub mod core_scale;
pub mod dns_qps;
pub mod dns_regions;
pub mod failover;
pub mod fault_cost;
pub mod footprint;
pub mod global_scale;
pub mod ingest;
pub mod pdns;
pub mod propagation;
pub mod vs_pdns;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::dns::Poller;
use crate::world::World;

/// The zone every benchmark publishes into.
pub const ZONE: &str = "bench.test.";
/// The name every benchmark publishes.
pub const FQDN: &str = "www.bench.test.";

/// Where the answers go.
#[derive(Clone, Debug)]
pub enum Dns {
    /// The global node's embedded server on `listen`.
    Embedded { listen: SocketAddr },
    /// An external primary (BIND) on `server`, TSIG key in `key_file` (relative to the
    /// topology file).
    Rfc2136 {
        server: SocketAddr,
        key_file: String,
    },
}

impl Dns {
    /// The server to query.
    pub fn server(&self) -> SocketAddr {
        match self {
            Dns::Embedded { listen } => *listen,
            Dns::Rfc2136 { server, .. } => *server,
        }
    }

    fn toml(&self) -> String {
        match self {
            Dns::Embedded { listen } => format!(
                "[dns]\nzone = \"{ZONE}\"\nttl = \"1s\"\nembedded = {{ listen = \"{listen}\", state_dir = \"dns\" }}\n"
            ),
            Dns::Rfc2136 { server, key_file } => format!(
                "[dns]\nservers = [\"{server}\"]\nzone = \"{ZONE}\"\nttl = \"1s\"\ntsig = {{ key_file = \"{key_file}\" }}\n"
            ),
        }
    }
}

/// A duration as the topology writes it.
pub fn dur(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// The top of a benchmark topology: global node on `127.<block>.0.1`, one service `www`
/// on port 8080 with `probes` (TOML `[[services.probes]]` tables), a failover order
/// `order` inside farms and "closest" across farms, no hysteresis (so that a recovered
/// server takes its place back at once and recovery times measure detection only).
pub fn header(block: u8, heartbeat: Duration, dns: &Dns, order: &[&str], probes: &str) -> String {
    let order = order
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"name = "bench{block}"
heartbeat = {{ interval = "{hb}", missed = 3 }}

[global]
listen = "127.{block}.0.1:7400"
status = "127.{block}.0.1:7480"

{dns}
[[services]]
name = "www"
fqdn = "{FQDN}"
port = 8080
global = {{ policy = "closest", hysteresis = {{ margin = 0.0, dwell = "0s" }} }}
local = {{ policy = {{ kind = "failover", order = [{order}] }}, hysteresis = {{ margin = 0.0, dwell = "0s" }} }}
{probes}
"#,
        hb = dur(heartbeat),
        dns = dns.toml(),
    )
}

/// One HTTP probe of `/health` every `interval` (timeout 80 % of it), rise and fall 2.
pub fn http_probe(interval: Duration, rise: u32, fall: u32) -> String {
    format!(
        "[[services.probes]]\nkind = \"http\"\npath = \"/health\"\ninterval = \"{}\"\ntimeout = \"{}\"\nrise = {rise}\nfall = {fall}\n",
        dur(interval),
        dur(interval.mul_f64(0.8)),
    )
}

/// A farm table.
pub fn farm(name: &str, listen: SocketAddr, status: SocketAddr, distance_ms: u32) -> String {
    format!(
        "\n[[farms]]\nname = \"{name}\"\nlisten = \"{listen}\"\nstatus = \"{status}\"\ndistance_ms = {distance_ms}\n"
    )
}

/// A server table of the last farm; `agent` makes it intrusive.
pub fn server(name: &str, addr: IpAddr, agent: Option<&str>) -> String {
    let mut s = format!(
        "\n[[farms.servers]]\nname = \"{name}\"\naddress = \"{addr}\"\nservices = [\"www\"]\n"
    );
    if let Some(a) = agent {
        s.push_str(&format!("mode = \"intrusive\"\nagent = \"{a}\"\n"));
    }
    s
}

/// What one fault trial measured.
#[derive(Clone, Debug, Default)]
pub struct Trial {
    /// Fault → the DNS answer no longer names the victim (ms).
    pub detect_ms: f64,
    /// Repair → the DNS answer names the victim again (ms).
    pub recover_ms: f64,
}

/// Polls DNS every 10 ms.
pub const POLL: Duration = Duration::from_millis(10);

/// Waits until the answer is exactly `want`.
pub fn settle(p: &mut Poller, want: IpAddr, timeout: Duration) -> anyhow::Result<()> {
    p.wait(POLL, timeout, |a| a == [want])
        .map(|_| ())
        .ok_or_else(|| anyhow::anyhow!("the answer never settled on {want} within {timeout:?}"))
}

/// Runs `n` fault trials against the server answered as `victim`: settle, wait a random
/// phase in `[0, phase)`, `fault`, time until the answer moves; `repair`, time until it
/// comes back. A trial whose answer never moves is reported as an error.
pub fn fault_trials(
    world: &mut World,
    poller: &mut Poller,
    victim: IpAddr,
    n: usize,
    phase: Duration,
    mut fault: impl FnMut(&mut World) -> anyhow::Result<()>,
    mut repair: impl FnMut(&mut World) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Trial>> {
    let mut out = Vec::new();
    let mut rng = rand::rng();
    for i in 0..n {
        settle(poller, victim, Duration::from_secs(60))?;
        std::thread::sleep(Duration::from_millis(200) + phase.mul_f64(rng.random::<f64>()));
        let t0 = Instant::now();
        fault(world)?;
        let moved = poller.wait(POLL, Duration::from_secs(60), |a| {
            !a.is_empty() && a != [victim]
        });
        let Some((t1, _)) = moved else {
            repair(world)?;
            anyhow::bail!("trial {i}: the answer did not move off {victim} within 60 s");
        };
        let tr = Instant::now();
        repair(world)?;
        let back = poller.wait(POLL, Duration::from_secs(60), |a| a == [victim]);
        let recover_ms = back.map_or(f64::NAN, |(t, _)| (t - tr).as_secs_f64() * 1e3);
        let t = Trial {
            detect_ms: (t1 - t0).as_secs_f64() * 1e3,
            recover_ms,
        };
        println!(
            "    trial {:>2}: detect {:>8.1} ms, recover {:>8.1} ms",
            i + 1,
            t.detect_ms,
            t.recover_ms
        );
        out.push(t);
    }
    Ok(out)
}

/// "update acknowledged" lines (one per UPDATE that changed something) from `from` on.
pub fn updates_since(world: &World, from: usize) -> usize {
    world
        .logs
        .count(from, |l| l.message == "update acknowledged")
}
