//! What the `fedlb` binary and the agent-only `fedlb-agent` share: a node's arguments,
//! logging, and the runners of each role.
//!
//! `fedlb` runs every role and every tool. `fedlb-agent` runs only `fedlb agent`: built from
//! the same code, it links none of the farm node, the global node, the DNS server or the
//! simulator, so the process an operator leaves on every server maps a fraction of the
//! all-roles binary (README, benchmark 7).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

pub mod roles;

/// How a process logs.
#[derive(Args, Debug, Clone)]
pub struct LogArgs {
    /// Log as JSON lines instead of text (the level comes from RUST_LOG, default info).
    #[arg(long, global = true)]
    pub log_json: bool,
}

/// Where a node finds its topology and credentials.
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// The topology file every node of the federation reads.
    pub topology: PathBuf,
    /// This node's name in the topology.
    #[arg(long)]
    pub node: Option<String>,
    /// The directory `fedlb certs` wrote (the CA certificate and this node's certificate and key).
    #[arg(long, env = "FEDLB_CERTS", default_value = "certs")]
    pub certs: PathBuf,
    /// Where the node keeps what must survive a restart: the operator overrides it holds
    /// (`overrides.<node>.<role>.jsonl`). Default: `state` under the working directory.
    #[arg(long, env = "FEDLB_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

/// Prints a command's error as `error: …` and turns it into the exit code.
pub fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Logs to stderr: text (colour on a terminal) or JSON lines; the level from `RUST_LOG`.
pub fn init_logs(args: &LogArgs) {
    use std::io::IsTerminal;
    // no log line per query or packet unless asked for by name: see fedlb_node::logs
    let filter = fedlb_node::logs::filter(std::env::var("RUST_LOG").ok().as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if args.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}
