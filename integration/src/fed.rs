//! One federation under test: a temporary directory, an address block, and the processes
//! started in it. Every process runs in its own process group and is SIGKILLed (the whole
//! group) when the `Fed` is dropped, panic or not; on a panic the logs are printed and the
//! directory is kept.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The `fedlb` binary (see the crate docs for how it is found).
pub fn fedlb_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("FEDLB_BIN") {
            return PathBuf::from(p);
        }
        let exe = std::env::current_exe().expect("locating the test binary");
        // <target>/<profile>/deps/<test binary>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test binary lives in <target>/<profile>/deps")
            .to_owned();
        let target_dir = profile_dir.parent().expect("a target directory").to_owned();
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the workspace")
            .to_owned();
        let bin = profile_dir.join("fedlb");
        if modified(&bin).is_some_and(|built| newest_source(&workspace) < Some(built)) {
            // built after the last change to any source: by `cargo test --workspace`, say;
            // building it again with this package's feature set would only churn
            return bin;
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "fedlb", "--bin", "fedlb"])
            .arg("--manifest-path")
            .arg(workspace.join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target_dir);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build -p fedlb");
        assert!(status.success(), "cargo build -p fedlb failed: {status}");
        assert!(bin.exists(), "{} not found after building", bin.display());
        bin
    })
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time among the workspace manifest, lock file and every file
/// under `crates/`.
fn newest_source(workspace: &Path) -> Option<SystemTime> {
    let mut newest = [workspace.join("Cargo.toml"), workspace.join("Cargo.lock")]
        .iter()
        .filter_map(|p| modified(p))
        .max();
    let mut dirs = vec![workspace.join("crates")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if entry.file_name() != "target" {
                    dirs.push(path);
                }
            } else {
                newest = newest.max(modified(&path));
            }
        }
    }
    newest
}

/// The path of an external tool, or `None` after a loud message when it is not installed
/// and `CI` is not set. Under `CI`, a missing tool fails the scenario.
pub fn require_tool(scenario: &str, tool: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.is_file());
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "{scenario}: `{tool}` is not installed (apt package {package}); CI must install it"
            );
        }
        eprintln!(
            "\n!!!!! SKIPPED {scenario}: `{tool}` is not installed (apt package {package}); set CI=1 to make this fail !!!!!\n"
        );
    }
    found
}

struct Proc {
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

/// One federation under test.
pub struct Fed {
    /// Scenario name, for timings and messages.
    pub scenario: String,
    dir: Option<tempfile::TempDir>,
    block: (u8, u8),
    procs: BTreeMap<String, Proc>,
}

impl Fed {
    /// A new, empty federation with its own directory and address block.
    pub fn new(scenario: &str) -> Fed {
        static NEXT: AtomicU8 = AtomicU8::new(1);
        let b = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(b < 250, "too many federations in one test process");
        let a = 100 + (std::process::id() % 150) as u8;
        let dir = tempfile::Builder::new()
            .prefix(&format!("fedlb-it-{scenario}-"))
            .tempdir()
            .expect("creating the scenario directory");
        std::fs::create_dir_all(dir.path().join("logs")).expect("creating logs/");
        Fed {
            scenario: scenario.to_owned(),
            dir: Some(dir),
            block: (a, b),
            procs: BTreeMap::new(),
        }
    }

    /// The scenario's directory.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("the directory exists").path()
    }

    /// Address `host` of this federation's block.
    pub fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, self.block.0, self.block.1, host)
    }

    /// The topology file every node reads.
    pub fn topology_path(&self) -> PathBuf {
        self.dir().join("topology.toml")
    }

    /// Writes the topology (atomically: the nodes watch the file and must never read half
    /// of it) and checks it with `fedlb check`.
    pub fn write_topology(&self, text: &str) {
        let tmp = self.dir().join(".topology.new.toml");
        std::fs::write(&tmp, text).expect("writing the topology");
        let out = Command::new(fedlb_bin())
            .arg("check")
            .arg("--quiet")
            .arg(&tmp)
            .output()
            .expect("running fedlb check");
        assert!(
            out.status.success(),
            "fedlb check refused the topology:\n{}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(&tmp, self.topology_path()).expect("replacing the topology");
    }

    /// Makes the CA and every node's certificate with `fedlb certs`.
    pub fn certs(&self) {
        let out = Command::new(fedlb_bin())
            .arg("certs")
            .arg(self.topology_path())
            .arg("--out")
            .arg(self.dir().join("certs"))
            .arg("--force")
            .output()
            .expect("running fedlb certs");
        assert!(
            out.status.success(),
            "fedlb certs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts a process named `name` (unique among running processes of this federation),
    /// logging to `logs/<name>.log` (appending: a process started again keeps its log).
    pub fn spawn(&mut self, name: &str, program: &Path, args: &[OsString], envs: &[(&str, &str)]) {
        assert!(
            self.procs.get(name).is_none_or(|p| p.child.is_none()),
            "process {name} is already running"
        );
        let proc = Proc {
            program: program.to_owned(),
            args: args.to_vec(),
            envs: envs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            log: self.dir().join("logs").join(format!("{name}.log")),
            child: None,
        };
        self.procs.insert(name.to_owned(), proc);
        self.start(name);
    }

    /// (Re)starts process `name` as it was first started; it must not be running.
    pub fn start(&mut self, name: &str) {
        let dir = self.dir().to_owned();
        let p = self.proc_mut(name);
        assert!(p.child.is_none(), "process {name} is already running");
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p.log)
            .expect("opening the log");
        let _ = writeln!(log, "===== fedlb-integration: starting {name}");
        let err = log.try_clone().expect("cloning the log handle");
        let child = Command::new(&p.program)
            .args(&p.args)
            .envs(p.envs.iter().map(|(k, v)| (k, v)))
            // every process runs with the log filter an operator gets by default
            .env_remove("RUST_LOG")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({}): {e}", p.program.display()));
        p.child = Some(child);
    }

    fn proc_mut(&mut self, name: &str) -> &mut Proc {
        self.procs
            .get_mut(name)
            .unwrap_or_else(|| panic!("no process named {name}"))
    }

    fn signal(&mut self, name: &str, sig: Signal) {
        let p = self.proc_mut(name);
        let child = p
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("process {name} is not running"));
        let pgid = Pid::from_raw(child.id() as i32);
        killpg(pgid, sig).unwrap_or_else(|e| panic!("{sig} to {name}: {e}"));
    }

    /// SIGKILLs process `name` (its whole process group) and reaps it.
    pub fn kill(&mut self, name: &str) {
        self.signal(name, Signal::SIGKILL);
        let mut child = self.proc_mut(name).child.take().expect("running");
        let _ = child.wait();
    }

    /// SIGSTOPs process `name`: it is frozen for real (sockets stay open, nothing answers).
    pub fn freeze(&mut self, name: &str) {
        self.signal(name, Signal::SIGSTOP);
    }

    /// SIGCONTs a frozen process.
    pub fn thaw(&mut self, name: &str) {
        self.signal(name, Signal::SIGCONT);
    }

    /// Sends SIGHUP (topology reload) to process `name`.
    pub fn hangup(&mut self, name: &str) {
        self.signal(name, Signal::SIGHUP);
    }

    /// SIGTERMs process `name`, waits up to 10 s, then SIGKILLs what is left of its group.
    pub fn terminate(&mut self, name: &str) {
        self.signal(name, Signal::SIGTERM);
        let mut child = self.proc_mut(name).child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Whether process `name` is still running (not exited).
    pub fn is_running(&mut self, name: &str) -> bool {
        match self.proc_mut(name).child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Everything process `name` logged so far.
    pub fn log(&self, name: &str) -> String {
        self.procs
            .get(name)
            .and_then(|p| std::fs::read_to_string(&p.log).ok())
            .unwrap_or_default()
    }

    // ----- fedlb roles -----

    fn node_args(&self, role: &str, node: &str) -> Vec<OsString> {
        vec![
            role.into(),
            self.topology_path().into(),
            "--node".into(),
            node.into(),
            "--certs".into(),
            self.dir().join("certs").into(),
        ]
    }

    /// Starts the global node (process name `global`) with extra environment variables.
    pub fn global_with_env(&mut self, envs: &[(&str, &str)]) {
        let args = self.node_args("global", "global");
        self.spawn("global", fedlb_bin(), &args, envs);
    }

    /// Starts the global node (process name `global`).
    pub fn global(&mut self) {
        self.global_with_env(&[]);
    }

    /// Starts global node `name` of several `[[global]]` (process name = node name).
    pub fn global_named(&mut self, name: &str) {
        let args = self.node_args("global", name);
        self.spawn(name, fedlb_bin(), &args, &[]);
    }

    /// Starts farm node `farm` (process name = farm name).
    pub fn farm(&mut self, farm: &str) {
        let args = self.node_args("farm", farm);
        self.spawn(farm, fedlb_bin(), &args, &[]);
    }

    /// Starts agent `agent` (process name = agent name).
    pub fn agent(&mut self, agent: &str) {
        let args = self.node_args("agent", agent);
        self.spawn(agent, fedlb_bin(), &args, &[]);
    }

    /// Starts a demo backend named `name` on `addr` (process name = `name`).
    pub fn backend(&mut self, name: &str, addr: SocketAddr, latency_ms: u64) {
        let args: Vec<OsString> = vec![
            "backend".into(),
            "--listen".into(),
            addr.to_string().into(),
            "--name".into(),
            name.into(),
            "--latency-ms".into(),
            latency_ms.to_string().into(),
        ];
        self.spawn(name, fedlb_bin(), &args, &[]);
        wait_listening(addr);
    }

    /// Starts nginx named `name` on `addr`: `/` and `/health` answer 200 with the name,
    /// `/stub_status` reports its load. Master and workers share one process group, so
    /// `kill`/`freeze` reach all of them.
    pub fn nginx(&mut self, nginx: &Path, name: &str, addr: SocketAddr) {
        let prefix = self.dir().join("nginx").join(name);
        for sub in ["logs", "tmp"] {
            std::fs::create_dir_all(prefix.join(sub)).expect("creating nginx directories");
        }
        let p = prefix.display();
        let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        let user = if root { "user root;\n" } else { "" };
        let conf = format!(
            "{user}worker_processes 1;
pid {p}/nginx.pid;
error_log {p}/logs/error.log notice;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {p}/tmp/body;
    proxy_temp_path {p}/tmp/proxy;
    fastcgi_temp_path {p}/tmp/fastcgi;
    uwsgi_temp_path {p}/tmp/uwsgi;
    scgi_temp_path {p}/tmp/scgi;
    server {{
        listen {addr};
        location = /stub_status {{ stub_status; }}
        location / {{ default_type text/plain; return 200 '{name}'; }}
    }}
}}
"
        );
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("writing nginx.conf");
        let args: Vec<OsString> = vec![
            "-c".into(),
            conf_path.into(),
            "-p".into(),
            prefix.clone().into(),
            "-g".into(),
            "daemon off;".into(),
        ];
        self.spawn(name, nginx, &args, &[]);
        wait_listening(addr);
    }
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_listening(addr: SocketAddr) {
    crate::wait_for(&format!("{addr} to listen"), crate::PATIENCE, || {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
            .ok()
            .map(|_| ())
    });
}

impl Drop for Fed {
    fn drop(&mut self) {
        for p in self.procs.values_mut() {
            if let Some(mut child) = p.child.take() {
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if !std::thread::panicking() {
            if std::env::var_os("FEDLB_IT_KEEP").is_some()
                && let Some(dir) = self.dir.take()
            {
                eprintln!(
                    "{}: directory kept: {}",
                    self.scenario,
                    dir.keep().display()
                );
            }
            return;
        }
        let mut out = String::new();
        for (name, p) in &self.procs {
            let log = std::fs::read_to_string(&p.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(120)..];
            out.push_str(&format!(
                "\n----- {} / {name}: last {} lines of {}\n{}\n",
                self.scenario,
                tail.len(),
                p.log.display(),
                tail.join("\n")
            ));
        }
        if let Some(dir) = self.dir.take() {
            let kept = dir.keep();
            out.push_str(&format!(
                "\n----- {}: directory kept: {}\n",
                self.scenario,
                kept.display()
            ));
        }
        let _ = std::io::stderr().write_all(out.as_bytes());
    }
}

/// A file the suite can append to (timings).
pub(crate) fn append(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}
