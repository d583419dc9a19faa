//! `fedlb-agent`: the agent alone, for the servers of a farm.
//!
//! It runs exactly what `fedlb agent` runs, with the same arguments. Built from the same
//! code, it links only the agent (its monitors, probes and the QUIC client), so the process
//! left on every server maps a fraction of the all-roles binary's code.

use std::process::ExitCode;

use clap::Parser;
use fedlb::{LogArgs, NodeArgs, init_logs, report, roles};

/// fedlb-agent: the agent of a fedlb federation, alone (what `fedlb agent` runs).
///
/// Runs on a server (intrusive mode): its monitors probe the server's service instances
/// and report over QUIC with mutual TLS to every node of its farm.
#[derive(Parser, Debug)]
#[command(name = "fedlb-agent", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    node: NodeArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(&cli.log);
    report(roles::agent(cli.node))
}
