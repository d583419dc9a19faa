//! A PowerDNS Authoritative Server (4.7, gsqlite3 backend) serving the benchmark zone
//! with LUA records, started by the benchmark on a loopback address.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use super::ZONE;
use crate::dns::Poller;

/// Where Debian's pdns-backend-sqlite3 ships the schema.
const SCHEMA: &str = "/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql";

/// A running `pdns_server`.
pub struct Pdns {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

fn find(cmd: &str) -> Option<String> {
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(|d| format!("{d}/{cmd}"))
        .find(|p| Path::new(p).exists())
}

/// Whether PowerDNS (server, pdnsutil, the sqlite3 backend's schema and sqlite3) is here.
pub fn available() -> Result<(), String> {
    for (cmd, pkg) in [
        ("pdns_server", "pdns-server"),
        ("pdnsutil", "pdns-server"),
        ("sqlite3", "sqlite3"),
    ] {
        if find(cmd).is_none() {
            return Err(format!("{cmd} not found (apt-get install {pkg})"));
        }
    }
    if !Path::new(SCHEMA).exists() {
        return Err(format!(
            "{SCHEMA} not found (apt-get install pdns-backend-sqlite3)"
        ));
    }
    Ok(())
}

impl Pdns {
    /// Starts `pdns_server` in `dir/pdns` on `addr`, serving the zone with `records` (zone
    /// file lines, relative or absolute names) after its SOA and NS. LUA records are on,
    /// health checks run every `check_interval_s` seconds, and every cache is off so that
    /// an answer reflects the current health state at once.
    pub fn start(
        dir: &Path,
        addr: SocketAddr,
        records: &str,
        check_interval_s: u32,
    ) -> anyhow::Result<Pdns> {
        available().map_err(|e| anyhow::anyhow!("PowerDNS is not installed: {e}"))?;
        let d = dir.join("pdns");
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d)?;
        let zone = ZONE.trim_end_matches('.');
        std::fs::write(
            d.join("zone.db"),
            format!(
                "$ORIGIN {ZONE}\n$TTL 1\n@ IN SOA ns1 hostmaster ( 1 3600 600 86400 1 )\n@ IN NS ns1\nns1 IN A 127.0.0.1\n{records}"
            ),
        )?;
        std::fs::write(
            d.join("pdns.conf"),
            format!(
                "launch=gsqlite3\ngsqlite3-database={dir}/pdns.sqlite3\nlocal-address={ip}\nlocal-port={port}\n\
                 socket-dir={dir}\ndaemon=no\nguardian=no\ndisable-syslog=yes\nloglevel=6\n\
                 security-poll-suffix=\nenable-lua-records=yes\nlua-health-checks-interval={check_interval_s}\n\
                 cache-ttl=0\nnegquery-cache-ttl=0\nquery-cache-ttl=0\n",
                dir = d.display(),
                ip = addr.ip(),
                port = addr.port(),
            ),
        )?;
        let schema = std::fs::File::open(SCHEMA).with_context(|| format!("opening {SCHEMA}"))?;
        let out = Command::new(find("sqlite3").context("sqlite3")?)
            .arg(d.join("pdns.sqlite3"))
            .stdin(schema)
            .output()
            .context("running sqlite3")?;
        if !out.status.success() {
            bail!(
                "loading the PowerDNS schema failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let out = Command::new(find("pdnsutil").context("pdnsutil")?)
            .arg(format!("--config-dir={}", d.display()))
            .args(["load-zone", zone])
            .arg(d.join("zone.db"))
            .output()
            .context("running pdnsutil load-zone")?;
        if !out.status.success() {
            bail!(
                "pdnsutil load-zone {zone} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let child = Command::new(find("pdns_server").context("pdns_server")?)
            .arg(format!("--config-dir={}", d.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("pdns.log"))?)
            .spawn()
            .context("starting pdns_server")?;
        let p = Pdns { child, addr };
        let mut poll = Poller::new(addr, &format!("ns1.{ZONE}"))?;
        for _ in 0..100 {
            if poll
                .query(Duration::from_millis(100))
                .is_ok_and(|a| !a.is_empty())
            {
                return Ok(p);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "pdns_server did not answer on {addr}; see {}",
            d.join("pdns.log").display()
        )
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Pdns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
