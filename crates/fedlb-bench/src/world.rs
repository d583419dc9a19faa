//! A federation of real `fedlb` processes on this machine: a generated topology, its
//! certificates from `fedlb certs`, and the processes, each killable on its own with a
//! real signal.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::logs::{LogBook, keep_all};

/// The `fedlb` binary: `$FEDLB_BIN`, else the one beside this benchmark binary.
pub fn fedlb_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("FEDLB_BIN") {
        // absolute: nodes run with their working directory as cwd
        return Ok(std::path::absolute(PathBuf::from(p))?);
    }
    let me = std::env::current_exe()?;
    let p = me.with_file_name("fedlb");
    if !p.exists() {
        bail!(
            "{} not found: build it (cargo build --release -p fedlb) or set FEDLB_BIN",
            p.display()
        );
    }
    Ok(p)
}

/// The agent-only `fedlb-agent` binary: `$FEDLB_AGENT_BIN`, else the one beside `fedlb`.
pub fn fedlb_agent_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("FEDLB_AGENT_BIN") {
        return Ok(std::path::absolute(PathBuf::from(p))?);
    }
    let p = fedlb_bin()?.with_file_name("fedlb-agent");
    if !p.exists() {
        bail!(
            "{} not found: build it (cargo build --release -p fedlb) or set FEDLB_AGENT_BIN",
            p.display()
        );
    }
    Ok(p)
}

/// A fresh working directory `<out>/work/<name>` (emptied first).
pub fn work_dir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::path::absolute(crate::output::out_dir().join("work").join(name))?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

struct Proc {
    child: Child,
}

/// The processes of one benchmark run; dropping it stops them all.
pub struct World {
    /// Working directory.
    pub dir: PathBuf,
    /// The topology file.
    pub topology: PathBuf,
    /// The certificate directory.
    pub certs: PathBuf,
    /// Every process's JSON log lines.
    pub logs: LogBook,
    fedlb: PathBuf,
    procs: BTreeMap<String, Proc>,
    /// Echo the nodes' logs to our stderr (`FEDLB_BENCH_ECHO=1`).
    echo: bool,
}

impl World {
    /// Writes the topology into a fresh directory and makes its certificates.
    pub fn new(name: &str, toml: &str) -> anyhow::Result<World> {
        let dir = work_dir(name)?;
        let topology = dir.join("topology.toml");
        std::fs::write(&topology, toml)?;
        let certs = dir.join("certs");
        let fedlb = fedlb_bin()?;
        let out = Command::new(&fedlb)
            .arg("certs")
            .arg(&topology)
            .arg("--out")
            .arg(&certs)
            .output()
            .context("running fedlb certs")?;
        if !out.status.success() {
            bail!(
                "fedlb certs failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(World {
            dir,
            topology,
            certs,
            logs: LogBook::default(),
            fedlb,
            procs: BTreeMap::new(),
            echo: std::env::var_os("FEDLB_BENCH_ECHO").is_some(),
        })
    }

    /// A world over a topology and certificates made elsewhere.
    pub fn with_certs(dir: PathBuf, topology: PathBuf, certs: PathBuf) -> anyhow::Result<World> {
        Ok(World {
            dir,
            topology,
            certs,
            logs: LogBook::default(),
            fedlb: fedlb_bin()?,
            procs: BTreeMap::new(),
            echo: std::env::var_os("FEDLB_BENCH_ECHO").is_some(),
        })
    }

    /// Starts `fedlb --log-json ARGS` as process `key` (in network namespace `netns` if
    /// given), keeping log lines whose message passes `keep`.
    pub fn spawn_filtered(
        &mut self,
        key: &str,
        args: &[&str],
        netns: Option<&str>,
        keep: fn(&str) -> bool,
    ) -> anyhow::Result<u32> {
        let program = self.fedlb.clone();
        self.spawn_program(&program, key, args, netns, keep)
    }

    /// [`World::spawn_filtered`] running `program` (a fedlb binary) instead of `fedlb`.
    fn spawn_program(
        &mut self,
        program: &Path,
        key: &str,
        args: &[&str],
        netns: Option<&str>,
        keep: fn(&str) -> bool,
    ) -> anyhow::Result<u32> {
        if self.procs.contains_key(key) {
            bail!("process {key} is already running");
        }
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.arg("--log-json")
            .args(args)
            .current_dir(&self.dir)
            .env(
                "RUST_LOG",
                std::env::var("FEDLB_BENCH_LOG")
                    .unwrap_or_else(|_| "info,hickory_server=warn,quinn=warn".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("starting {key}"))?;
        let pid = child.id();
        if let Some(err) = child.stderr.take() {
            self.logs.follow(key, err, keep, self.echo);
        }
        self.procs.insert(key.to_owned(), Proc { child });
        Ok(pid)
    }

    /// [`World::spawn_filtered`] keeping every line.
    pub fn spawn(&mut self, key: &str, args: &[&str], netns: Option<&str>) -> anyhow::Result<u32> {
        self.spawn_filtered(key, args, netns, keep_all)
    }

    /// Starts node `name` in `role` (`global`, `farm`, `agent`) as process `name`.
    pub fn node(&mut self, role: &str, name: &str, netns: Option<&str>) -> anyhow::Result<u32> {
        let topo = self.topology.to_string_lossy().into_owned();
        let certs = self.certs.to_string_lossy().into_owned();
        self.spawn(
            name,
            &[role, &topo, "--node", name, "--certs", &certs],
            netns,
        )
    }

    /// Starts agent `name` with the agent-only `fedlb-agent` binary, as process `name`.
    pub fn agent_only(&mut self, name: &str) -> anyhow::Result<u32> {
        let program = fedlb_agent_bin()?;
        let topo = self.topology.to_string_lossy().into_owned();
        let certs = self.certs.to_string_lossy().into_owned();
        self.spawn_program(
            &program,
            name,
            &[&topo, "--node", name, "--certs", &certs],
            None,
            keep_all,
        )
    }

    /// Starts a demo backend `name` on `addr` as process `name`; returns once it accepts.
    pub fn backend(
        &mut self,
        name: &str,
        addr: SocketAddr,
        netns: Option<&str>,
    ) -> anyhow::Result<u32> {
        let a = addr.to_string();
        let from = self.logs.len();
        let pid = self.spawn(name, &["backend", "--listen", &a, "--name", name], netns)?;
        let ok = self.logs.wait_for(from, Duration::from_secs(10), |l| {
            l.source == name && l.message == "demo backend running"
        });
        if ok.is_none() {
            bail!("backend {name} on {addr} did not start");
        }
        Ok(pid)
    }

    /// The pid of process `key`.
    pub fn pid(&self, key: &str) -> Option<u32> {
        self.procs.get(key).map(|p| p.child.id())
    }

    /// Sends `sig` to process `key`.
    pub fn signal(&self, key: &str, sig: Signal) -> anyhow::Result<()> {
        let pid = self.pid(key).with_context(|| format!("no process {key}"))?;
        kill(Pid::from_raw(pid as i32), sig).with_context(|| format!("signalling {key}"))?;
        Ok(())
    }

    /// SIGKILLs process `key` and reaps it.
    pub fn kill(&mut self, key: &str) -> anyhow::Result<()> {
        self.signal(key, Signal::SIGKILL)?;
        if let Some(mut p) = self.procs.remove(key) {
            let _ = p.child.wait();
        }
        Ok(())
    }

    /// Stops every process: SIGTERM, then SIGKILL after a grace period.
    pub fn stop_all(&mut self) {
        for p in self.procs.values() {
            let pid = Pid::from_raw(p.child.id() as i32);
            let _ = kill(pid, Signal::SIGCONT);
            let _ = kill(pid, Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for p in self.procs.values_mut() {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = p.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Ok(None) = p.child.try_wait() {
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
        }
        self.procs.clear();
    }

    /// The working directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Waits until `addr` accepts TCP connections (a status endpoint is up).
pub fn wait_tcp(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Whether `path` exists as an executable on $PATH (or as given).
pub fn have(cmd: &str) -> bool {
    if Path::new(cmd).is_absolute() {
        return Path::new(cmd).exists();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(cmd).exists()))
}
