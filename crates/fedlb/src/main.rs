//! `fedlb`: one binary for every role of a fedlb federation.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod check;

/// fedlb: a hierarchical, health- and load-aware DNS load balancer for replicated services
/// spread over server farms in several sites.
///
/// Agents probe each service instance and report over QUIC with mutual TLS; a farm node per
/// site picks its best server by a local policy and reports the farm upward as one
/// candidate; the global node picks among farms by a global policy and writes the answer
/// into DNS by RFC 2136 dynamic update with TSIG.
#[derive(Parser, Debug)]
#[command(name = "fedlb", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a topology file and print what each node will run.
    ///
    /// Exits 0 for a valid file, 1 for an invalid one (every problem is printed as
    /// `error: <file>: <field path>: <what>`), 2 with --deny-warnings when there are
    /// warnings.
    Check {
        /// The topology file (.toml, .yaml, .yml or .json).
        topology: PathBuf,
        /// Treat warnings (suspicious but valid settings) as errors.
        #[arg(long)]
        deny_warnings: bool,
        /// Print only problems, not the description of each node.
        #[arg(long, short)]
        quiet: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            topology,
            deny_warnings,
            quiet,
        } => check::run(&topology, deny_warnings, quiet),
    }
}
