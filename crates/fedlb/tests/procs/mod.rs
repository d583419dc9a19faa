//! Nodes run by the real binaries for the tests of this crate: `fedlb ROLE TOPOLOGY --node N`
//! (or `fedlb-agent TOPOLOGY --node N`) as a process of its own, its log in a file of the
//! test's world (appended: a node started again keeps its log), its state in the world's
//! `state` directory.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::support::World;

/// A running node; killed (SIGKILL, as a crash) when dropped.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts node `node` in role `role` (`global`, `farm`, `agent`).
    pub fn start(w: &World, role: &str, node: &str) -> Proc {
        Proc::spawn(w, Command::new(env!("CARGO_BIN_EXE_fedlb")).arg(role), node)
    }

    /// Starts agent `node` with the agent-only binary, `fedlb-agent`.
    #[allow(dead_code)] // one test binary runs it
    pub fn start_agent_only(w: &World, node: &str) -> Proc {
        Proc::spawn(
            w,
            &mut Command::new(env!("CARGO_BIN_EXE_fedlb-agent")),
            node,
        )
    }

    fn spawn(w: &World, cmd: &mut Command, node: &str) -> Proc {
        let log = w.dir.path().join(format!("{node}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let child = cmd
            .arg(&w.topology)
            .args(["--node", node, "--certs"])
            .arg(&w.certs)
            .arg("--state-dir")
            .arg(w.dir.path().join("state"))
            .current_dir(w.dir.path())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("run fedlb");
        Proc {
            name: node.to_owned(),
            child,
            log,
        }
    }

    /// What it logged so far.
    #[allow(dead_code)] // not every test binary reads logs
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails the test, with the node's log, if it has stopped.
    #[allow(dead_code)]
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("node {} exited ({status}):\n{}", self.name, self.log());
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
