//! `fedlb simulate`: what-if runs that compare load-balancing policies on simulated clients
//! while driving the unchanged fedlb core.
//!
//! It owns the discrete-event simulation (a binary-heap event queue on a simulated clock,
//! ties broken by insertion order), the scenario file (client regions and their request
//! rates, latencies, server slots and service times, caching resolvers, control-plane
//! delays, faults, the policies to compare) and the report (tables, CSV, an SVG plot). The
//! decisions are not modelled: every server has a real `Monitor`, every farm a real
//! `FarmState`, the global node is a real `GlobalState`, fed at the simulated moments their
//! inputs would arrive and woken at their own `poll_timeout`. It never sleeps, never reads
//! a clock and never touches a socket; every random draw comes from a seed, so the same
//! seed gives byte-identical output.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod engine;
mod error;
mod report;
mod scenario;
mod stats;
mod topology;
mod variant;

use std::ffi::OsString;
use std::path::PathBuf;

pub use error::Error;
pub use fedlb_topology::{Location, Problem};
pub use report::{BinResult, PolicyResult, RegionResult, Report, ServerResult};
pub use scenario::{
    Burst, Delays, Diurnal, Fault, FaultKind, Measures, ProbeModel, Region, Scenario, ServerModel,
    ServiceTime, TtlMode, Variant, fibre_rtt,
};
pub use topology::{MonitorSetup, ServerInfo, Topology, TopologyBuilder};

/// Run options (the command line's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Replaces the scenario's seed.
    pub seed: Option<u64>,
    /// Only these policies (by name), in this order; empty: all the scenario's.
    pub policies: Vec<String>,
    /// Worker threads (policies run in parallel; results do not depend on it). 0: one per
    /// core.
    pub threads: usize,
}

/// Runs every selected policy of `scenario` on `topology`.
pub fn simulate(topology: &Topology, scenario: &Scenario, opts: &Options) -> Result<Report, Error> {
    let variants: Vec<&Variant> = if opts.policies.is_empty() {
        scenario.variants.iter().collect()
    } else {
        opts.policies
            .iter()
            .map(|name| {
                scenario
                    .variants
                    .iter()
                    .find(|v| &v.name == name)
                    .ok_or_else(|| Error::UnknownPolicy {
                        name: name.clone(),
                        known: scenario
                            .variants
                            .iter()
                            .map(|v| v.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
            })
            .collect::<Result<_, _>>()?
    };
    let mut scenario = scenario.clone();
    if let Some(seed) = opts.seed {
        scenario.seed = seed;
    }
    let sc = &scenario;
    if let Some(name) = &sc.service
        && name != topology.service.as_str()
    {
        return Err(Error::Mismatch(format!(
            "scenario service \"{name}\": the topology given simulates \"{}\"",
            topology.service
        )));
    }
    let pre = engine::Prepared::new(topology, sc)?;
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(variants.len().max(1));
    let mut results: Vec<Option<Result<PolicyResult, Error>>> =
        variants.iter().map(|_| None).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::Mutex::new(&mut results);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(v) = variants.get(i) else { break };
                    let r = engine::run(topology, sc, &pre, v, sc.seed);
                    done.lock().expect("no worker panics while holding it")[i] = Some(r);
                }
            });
        }
    });
    let policies = results
        .into_iter()
        .map(|r| r.expect("every variant ran"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Report {
        scenario: sc.name.clone(),
        seed: sc.seed,
        duration: sc.duration,
        warmup: sc.warmup,
        bin: sc.bin,
        policies,
    })
}

/// The command line of `fedlb simulate`, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CliArgs {
    /// The topology file.
    pub topology: PathBuf,
    /// The scenario file.
    pub scenario: PathBuf,
    /// Run options.
    pub options: Options,
    /// Where CSV files and the plot go (none: only the table on stdout).
    pub out: Option<PathBuf>,
}

/// Usage text of `fedlb simulate`.
pub const USAGE: &str = "usage: fedlb simulate TOPOLOGY --scenario FILE [--policy NAME[,NAME…]]… [--seed N] [--out DIR] [--threads N]";

impl CliArgs {
    /// Parses the arguments after `simulate`.
    pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<CliArgs, Error> {
        let usage = |what: String| Error::Usage(format!("{what}\n{USAGE}"));
        let mut topology = None;
        let mut scenario = None;
        let mut out = CliArgs::default();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let arg = arg
                .into_string()
                .map_err(|a| usage(format!("argument {a:?} is not UTF-8")))?;
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
                _ => (arg.clone(), None),
            };
            let mut value = |name: &str| -> Result<String, Error> {
                match inline.clone() {
                    Some(v) => Ok(v),
                    None => it
                        .next()
                        .and_then(|v| v.into_string().ok())
                        .ok_or_else(|| usage(format!("{name} needs a value"))),
                }
            };
            match flag.as_str() {
                "--scenario" => scenario = Some(PathBuf::from(value("--scenario")?)),
                "--policy" => out.options.policies.extend(
                    value("--policy")?
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                ),
                "--seed" => {
                    let v = value("--seed")?;
                    out.options.seed = Some(
                        v.parse()
                            .map_err(|_| usage(format!("--seed {v}: not a number")))?,
                    );
                }
                "--threads" => {
                    let v = value("--threads")?;
                    out.options.threads = v
                        .parse()
                        .map_err(|_| usage(format!("--threads {v}: not a number")))?;
                }
                "--out" => out.out = Some(PathBuf::from(value("--out")?)),
                "-h" | "--help" => return Err(Error::Usage(USAGE.to_owned())),
                f if f.starts_with('-') => return Err(usage(format!("unknown option {f}"))),
                _ if topology.is_none() => topology = Some(PathBuf::from(arg)),
                _ => return Err(usage(format!("unexpected argument {arg}"))),
            }
        }
        out.topology = topology.ok_or_else(|| usage("TOPOLOGY is missing".into()))?;
        out.scenario = scenario.ok_or_else(|| usage("--scenario is missing".into()))?;
        Ok(out)
    }
}

/// `fedlb simulate …`: loads the files, runs, prints the table on `stdout` and writes the
/// CSV files and the plot to `--out`.
pub fn run_cli<I: IntoIterator<Item = OsString>>(
    args: I,
    stdout: &mut dyn std::io::Write,
) -> Result<Report, Error> {
    let args = CliArgs::parse(args)?;
    let scenario = Scenario::load(&args.scenario)?;
    let topology = load_topology(&args.topology, scenario.service.as_deref())?;
    let report = simulate(&topology, &scenario, &args.options)?;
    let table = report.to_table();
    stdout
        .write_all(table.as_bytes())
        .map_err(|source| Error::Write {
            path: "stdout".into(),
            source,
        })?;
    if let Some(dir) = &args.out {
        report.write_to(dir)?;
    }
    Ok(report)
}

/// Reads a topology file (TOML, YAML or JSON, with `FEDLB__…` overrides, as every node
/// reads it; TSIG key files are not read) and takes the part that simulating `service`
/// needs. Warnings are not shown here: `fedlb check` prints them.
pub fn load_topology(path: &std::path::Path, service: Option<&str>) -> Result<Topology, Error> {
    let loaded = fedlb_topology::Loader::new()
        .read_key_files(false)
        .load(path)
        .map_err(|e| Error::Topology(e.to_string()))?;
    Topology::from_file(&loaded.topology, service)
}
