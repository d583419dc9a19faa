//! `fedlb check`: validate a topology and say what each node will run.

use std::path::Path;
use std::process::ExitCode;

/// Runs the check; prints to stdout (description) and stderr (problems).
pub fn run(path: &Path, deny_warnings: bool, quiet: bool) -> ExitCode {
    match fedlb_topology::load(path) {
        Err(e) => {
            let problems = e.problems();
            for p in &problems {
                eprintln!("error: {p}");
            }
            eprintln!(
                "{}: {} error{}; nothing would start",
                path.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            ExitCode::from(1)
        }
        Ok(loaded) => {
            if !quiet {
                print!("{}", loaded.topology.describe());
            }
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            if deny_warnings && !loaded.warnings.is_empty() {
                eprintln!(
                    "{}: {} warning{} denied by --deny-warnings",
                    path.display(),
                    loaded.warnings.len(),
                    if loaded.warnings.len() == 1 { "" } else { "s" }
                );
                return ExitCode::from(2);
            }
            if !quiet {
                println!("{}: ok", path.display());
            }
            ExitCode::SUCCESS
        }
    }
}
