//! Test harness: starts one DNS server (embedded, BIND, Knot or PowerDNS) on a free loopback
//! port in its own temporary directory, from the templates in `tests/servers/`, and stops it on
//! drop.
//!
//! A missing server package fails the test when `CI` is set; otherwise the test is skipped with a
//! loud message on stderr.

#![allow(dead_code)]

pub mod mmdb;

use std::{
    net::{SocketAddr, TcpListener, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use fedlb_dns::{
    DesiredZone, EmbeddedConfig, EmbeddedServer, Name, RecordSet, Rfc2136Config, Rfc2136Publisher,
    TsigAlgorithm, TsigKey, ZoneState, fqdn, query_rrsets, query_serial,
};

pub const ZONE: &str = "example.test.";

const ZONE_TEMPLATE: &str = include_str!("../servers/zone.template");
const BIND_CONF: &str = include_str!("../servers/bind/named.conf.template");
const KNOT_CONF: &str = include_str!("../servers/knot/knot.conf.template");
const PDNS_CONF: &str = include_str!("../servers/pdns/pdns.conf.template");
const PDNS_SETUP: &str = include_str!("../servers/pdns/setup.sh.template");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Embedded,
    Bind,
    Knot,
    Pdns,
}

impl Kind {
    fn binaries(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Kind::Embedded => &[],
            Kind::Bind => &[("named", "bind9")],
            Kind::Knot => &[("knotd", "knot")],
            Kind::Pdns => &[
                ("pdns_server", "pdns-server"),
                ("pdnsutil", "pdns-server"),
                ("sqlite3", "sqlite3"),
            ],
        }
    }

    /// Whether the server checks a value-dependent prerequisite as RRset equality (RFC 2136)
    /// rather than as a subset (hickory-server).
    pub fn strict_cas(self) -> bool {
        self != Kind::Embedded
    }

    /// PowerDNS answers every TSIG failure with an unsigned REFUSED instead of NOTAUTH + TSIG
    /// error.
    pub fn tsig_failures_are_refused(self) -> bool {
        self == Kind::Pdns
    }
}

pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The three test keys (one per algorithm); the first is the one most tests use.
pub fn keys() -> Vec<TsigKey> {
    [
        ("fedlb-sha256", TsigAlgorithm::HmacSha256, 32usize),
        ("fedlb-sha384", TsigAlgorithm::HmacSha384, 48),
        ("fedlb-sha512", TsigAlgorithm::HmacSha512, 64),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (name, alg, len))| {
        let secret = (0..len).map(|b| (b * 7 + i * 31 + 3) as u8).collect();
        TsigKey::new(name, alg, secret).unwrap()
    })
    .collect()
}

/// A key BIND knows but lets update only `elsewhere.example.test. A` (update-policy).
pub fn limited_key() -> TsigKey {
    TsigKey::new("fedlb-limited", TsigAlgorithm::HmacSha256, vec![0x42; 32]).unwrap()
}

pub fn key() -> TsigKey {
    keys().remove(0)
}

pub fn zone() -> Name {
    fqdn(ZONE).unwrap()
}

/// A free loopback port for both UDP and TCP (bound once, then released).
pub fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Whether the packages of `kind` are installed. When not: a loud message on stderr, or a
/// panic when `CI` is set.
pub fn installed(kind: Kind) -> bool {
    let missing: Vec<_> = kind
        .binaries()
        .iter()
        .filter(|(bin, _)| find_binary(bin).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let what = missing
        .iter()
        .map(|(bin, pkg)| format!("{bin} (apt package {pkg})"))
        .collect::<Vec<_>>()
        .join(", ");
    if std::env::var_os("CI").is_some() {
        panic!("{kind:?} server test: {what} not installed; CI must install it");
    }
    eprintln!(
        "\n!!!!! SKIPPED {kind:?} server test: {what} not installed (set CI=1 to make this fail) !!!!!\n"
    );
    false
}

enum Running {
    Embedded(EmbeddedServer),
    Process(Child),
    Stopped,
}

pub struct TestServer {
    pub kind: Kind,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    running: Running,
}

impl TestServer {
    /// Starts a server of `kind`, or returns `None` (after a loud message) when its package is
    /// not installed and `CI` is not set.
    pub async fn start(kind: Kind) -> Option<Self> {
        init_logs();
        if !installed(kind) {
            return None;
        }
        let mut last_err = String::new();
        for _ in 0..3 {
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let mut server = Self {
                kind,
                addr,
                dir: tempfile::Builder::new()
                    .prefix(&format!("fedlb-dns-{kind:?}-").to_lowercase())
                    .tempdir()
                    .unwrap(),
                running: Running::Stopped,
            };
            match server.launch(true).await {
                Ok(()) => return Some(server),
                Err(e) => last_err = e,
            }
        }
        panic!("{kind:?} server did not start: {last_err}");
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server (SIGTERM, then SIGKILL after 3 s).
    pub async fn stop(&mut self) {
        match std::mem::replace(&mut self.running, Running::Stopped) {
            Running::Embedded(s) => s.shutdown().await.unwrap(),
            Running::Process(mut child) => {
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(child.id().to_string())
                    .status();
                for _ in 0..300 {
                    if child.try_wait().ok().flatten().is_some() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            Running::Stopped => {}
        }
    }

    /// Starts the server again on the same port. With `reset`, its data is first replaced by
    /// the original zone file, as when a server is restored from an old backup.
    pub async fn restart(&mut self, reset: bool) {
        self.stop().await;
        if reset {
            for entry in std::fs::read_dir(self.dir()).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    std::fs::remove_dir_all(&path).unwrap();
                } else {
                    std::fs::remove_file(&path).unwrap();
                }
            }
        }
        self.launch(reset).await.unwrap();
    }

    async fn launch(&mut self, fresh: bool) -> Result<(), String> {
        let dir = self.dir().to_owned();
        let d = dir.display().to_string();
        let port = self.addr.port().to_string();
        let zone_name = ZONE.trim_end_matches('.');
        let keys = keys();
        let fill = |t: &str| {
            t.replace("@DIR@", &d)
                .replace("@PORT@", &port)
                .replace("@ZONE@", zone_name)
        };
        if fresh && self.kind != Kind::Embedded {
            std::fs::write(dir.join("zone.db"), ZONE_TEMPLATE.replace("@ZONE@", ZONE)).unwrap();
        }
        let mut cmd = match self.kind {
            Kind::Embedded => {
                let config = EmbeddedConfig::new(zone(), self.addr, &dir, keys);
                let server = EmbeddedServer::start(config)
                    .await
                    .map_err(|e| e.to_string())?;
                self.running = Running::Embedded(server);
                return self.wait_ready().await;
            }
            Kind::Bind => {
                let limited = limited_key();
                let key_blocks: String = keys
                    .iter()
                    .chain([&limited])
                    .map(|k| {
                        format!(
                            "key \"{}\" {{ algorithm {}; secret \"{}\"; }};\n",
                            k.config_name(),
                            k.algorithm,
                            k.secret_base64()
                        )
                    })
                    .collect();
                let mut grants: String = keys
                    .iter()
                    .map(|k| format!("        grant {} zonesub ANY;\n", k.config_name()))
                    .collect();
                grants.push_str(&format!(
                    "        grant {} name elsewhere.{ZONE} A;\n",
                    limited.config_name()
                ));
                let conf = fill(BIND_CONF)
                    .replace("@KEYS@", &key_blocks)
                    .replace("@GRANTS@", &grants);
                std::fs::write(dir.join("named.conf"), conf).unwrap();
                let mut c = Command::new(find_binary("named").unwrap());
                c.arg("-g").arg("-c").arg(dir.join("named.conf"));
                c
            }
            Kind::Knot => {
                let key_list: String = keys
                    .iter()
                    .map(|k| {
                        format!(
                            "  - id: {}\n    algorithm: {}\n    secret: {}\n",
                            k.config_name(),
                            k.algorithm,
                            k.secret_base64()
                        )
                    })
                    .collect();
                let ids = keys
                    .iter()
                    .map(|k| k.config_name())
                    .collect::<Vec<_>>()
                    .join(", ");
                let conf = fill(KNOT_CONF)
                    .replace("@KEYS@", key_list.trim_end())
                    .replace("@KEY_IDS@", &ids);
                std::fs::create_dir_all(dir.join("db")).unwrap();
                std::fs::write(dir.join("knot.conf"), conf).unwrap();
                let mut c = Command::new(find_binary("knotd").unwrap());
                c.arg("-c").arg(dir.join("knot.conf"));
                c
            }
            Kind::Pdns => {
                std::fs::write(dir.join("pdns.conf"), fill(PDNS_CONF)).unwrap();
                if fresh {
                    let imports: String = keys
                        .iter()
                        .map(|k| {
                            format!(
                                "$P import-tsig-key {} {} '{}' >/dev/null\n",
                                k.config_name(),
                                k.algorithm,
                                k.secret_base64()
                            )
                        })
                        .collect();
                    let ids = keys
                        .iter()
                        .map(|k| k.config_name())
                        .collect::<Vec<_>>()
                        .join(" ");
                    let script = fill(PDNS_SETUP)
                        .replace("@IMPORT_KEYS@", imports.trim_end())
                        .replace("@KEY_IDS@", &ids);
                    std::fs::write(dir.join("setup.sh"), &script).unwrap();
                    let out = Command::new("sh")
                        .arg(dir.join("setup.sh"))
                        .output()
                        .unwrap();
                    if !out.status.success() {
                        return Err(format!(
                            "pdns setup failed: {}",
                            String::from_utf8_lossy(&out.stderr)
                        ));
                    }
                }
                let mut c = Command::new(find_binary("pdns_server").unwrap());
                c.arg(format!("--config-dir={d}"));
                c
            }
        };
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawning {:?}: {e}", self.kind))?;
        self.running = Running::Process(child);
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let zone = zone();
        for _ in 0..500 {
            if query_serial(self.addr, &zone, Duration::from_millis(300))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if let Running::Process(child) = &mut self.running
                && let Ok(Some(status)) = child.try_wait()
            {
                self.running = Running::Stopped;
                return Err(format!(
                    "{:?} exited with {status}; log:\n{}",
                    self.kind,
                    self.log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let log = self.log();
        self.stop().await;
        Err(format!(
            "{:?} not answering on {} after 10 s; log:\n{log}",
            self.kind, self.addr
        ))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("server.log")).unwrap_or_default()
    }

    /// What the server holds now for `names`.
    pub async fn read(&self, names: &[&str]) -> ZoneState {
        let names: Vec<Name> = names.iter().map(|n| fqdn(n).unwrap()).collect();
        query_rrsets(self.addr, &zone(), &names, Duration::from_secs(3))
            .await
            .unwrap_or_else(|e| panic!("{e}\nserver log:\n{}", self.log()))
    }

    /// A publisher for this server with test-friendly timings.
    pub fn publisher(&self, key: TsigKey) -> Rfc2136Publisher {
        Rfc2136Publisher::new(test_config(vec![self.addr], key)).unwrap()
    }
}

pub fn test_config(primaries: Vec<SocketAddr>, key: TsigKey) -> Rfc2136Config {
    let mut config = Rfc2136Config::new(zone(), primaries, key);
    config.timeout = Duration::from_secs(3);
    config.backoff_min = Duration::from_millis(100);
    config.backoff_max = Duration::from_millis(400);
    config
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Running::Process(child) = &mut self.running {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Shows the crate's logs in test output (`RUST_LOG=fedlb_dns=debug cargo test -- --nocapture`).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("fedlb_dns=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Desired answers from `(name, ttl, addresses)` triples.
pub fn answers(sets: &[(&str, u32, &[&str])]) -> DesiredZone {
    let mut zone = DesiredZone::new(ZONE).unwrap();
    for (name, ttl, addrs) in sets {
        zone.insert(
            RecordSet::new(name, *ttl)
                .unwrap()
                .with_addrs(addrs.iter().map(|a| a.parse().unwrap())),
        );
    }
    zone
}

/// The addresses of `name` in `state`, as sorted strings.
pub fn addrs(state: &ZoneState, name: &str) -> Vec<String> {
    state
        .addrs(&fqdn(name).unwrap())
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// TTLs of the A and AAAA RRsets of `name`.
pub fn ttls(state: &ZoneState, name: &str) -> Vec<u32> {
    state
        .iter()
        .filter(|(k, _)| k.name == fqdn(name).unwrap())
        .map(|(_, d)| d.ttl)
        .collect()
}
