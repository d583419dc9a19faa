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
mod suite;
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
pub use suite::{
    DEFAULT_ROW, PolicySummary, Suite, SuiteEntry, SuiteReport, SuiteScenario, default_policy,
    geometric_mean,
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
    let variants = select(scenario, &opts.policies, false)?;
    let mut scenario = scenario.clone();
    if let Some(seed) = opts.seed {
        scenario.seed = seed;
    }
    check_service(topology, &scenario)?;
    let pre = engine::Prepared::new(topology, &scenario)?;
    let jobs: Vec<Job> = variants
        .iter()
        .map(|v| Job {
            topology,
            scenario: &scenario,
            prepared: &pre,
            variant: v,
        })
        .collect();
    let policies = run_jobs(&jobs, opts.threads)
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    Ok(report(&scenario, policies))
}

/// Runs every scenario of `suite` with the selected policies (all of each scenario's when
/// none is selected; the single-level baselines always, since every ratio needs them).
/// Policies of every scenario share one pool of worker threads.
pub fn simulate_suite(suite: &Suite, opts: &Options) -> Result<SuiteReport, Error> {
    let mut scenarios = Vec::new();
    for e in &suite.entries {
        let mut sc = e.scenario.clone();
        if let Some(seed) = opts.seed {
            sc.seed = seed;
        }
        let file = e.dir.join(suite::SCENARIO_FILE).display().to_string();
        let variants: Vec<Variant> = select(&sc, &opts.policies, true)
            .map_err(|err| match err {
                Error::UnknownPolicy { .. } => Error::Mismatch(format!("{file}: {err}")),
                other => other,
            })?
            .into_iter()
            .cloned()
            .collect();
        check_service(&e.topology, &sc).map_err(|err| Error::Mismatch(format!("{file}: {err}")))?;
        scenarios.push((sc, variants));
    }
    let prepared = suite
        .entries
        .iter()
        .zip(&scenarios)
        .map(|(e, (sc, _))| {
            engine::Prepared::new(&e.topology, sc).map_err(|err| {
                Error::Mismatch(format!(
                    "{}: {err}",
                    e.dir.join(suite::SCENARIO_FILE).display()
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut jobs = Vec::new();
    let mut owner = Vec::new();
    for (i, ((e, (sc, variants)), pre)) in suite
        .entries
        .iter()
        .zip(&scenarios)
        .zip(&prepared)
        .enumerate()
    {
        for v in variants {
            jobs.push(Job {
                topology: &e.topology,
                scenario: sc,
                prepared: pre,
                variant: v,
            });
            owner.push(i);
        }
    }
    let mut results: Vec<Vec<PolicyResult>> = scenarios.iter().map(|_| Vec::new()).collect();
    for (i, r) in owner.into_iter().zip(run_jobs(&jobs, opts.threads)) {
        results[i].push(r?);
    }
    Ok(SuiteReport {
        dir: suite.dir.display().to_string(),
        seed: opts.seed,
        scenarios: suite
            .entries
            .iter()
            .zip(&scenarios)
            .zip(results)
            .map(|((e, (sc, variants)), policies)| SuiteScenario {
                name: e.name.clone(),
                baselines: variants
                    .iter()
                    .filter(|v| v.is_baseline())
                    .map(|v| v.name.clone())
                    .collect(),
                default: suite::default_policy(sc)
                    .filter(|d| variants.iter().any(|v| v.name == *d))
                    .map(str::to_owned),
                report: report(sc, policies),
            })
            .collect(),
    })
}

/// The variants `names` selects (all when empty), in the order given; with `baselines`,
/// the scenario's single-level baselines too, in the scenario's order and first.
fn select<'s>(
    scenario: &'s Scenario,
    names: &[String],
    baselines: bool,
) -> Result<Vec<&'s Variant>, Error> {
    if names.is_empty() {
        return Ok(scenario.variants.iter().collect());
    }
    let mut out: Vec<&Variant> = if baselines {
        scenario
            .variants
            .iter()
            .filter(|v| v.is_baseline())
            .collect()
    } else {
        Vec::new()
    };
    for name in names {
        let v = scenario
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
            })?;
        if !(baselines && v.is_baseline()) {
            out.push(v);
        }
    }
    Ok(out)
}

fn check_service(topology: &Topology, sc: &Scenario) -> Result<(), Error> {
    match &sc.service {
        Some(name) if name != topology.service.as_str() => Err(Error::Mismatch(format!(
            "scenario service \"{name}\": the topology given simulates \"{}\"",
            topology.service
        ))),
        _ => Ok(()),
    }
}

fn report(sc: &Scenario, policies: Vec<PolicyResult>) -> Report {
    Report {
        scenario: sc.name.clone(),
        seed: sc.seed,
        duration: sc.duration,
        warmup: sc.warmup,
        bin: sc.bin,
        policies,
    }
}

/// One run of one variant.
struct Job<'a> {
    topology: &'a Topology,
    scenario: &'a Scenario,
    prepared: &'a engine::Prepared,
    variant: &'a Variant,
}

/// Runs the jobs on `threads` workers (0: one per core), the costliest first so that no
/// worker is left with a long one at the end; results in the jobs' order, which alone
/// decides the output (every run draws from its own seeded streams).
fn run_jobs(jobs: &[Job], threads: usize) -> Vec<Result<PolicyResult, Error>> {
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(jobs.len().max(1));
    // simulated requests: what a run's time is made of
    let cost = |j: &Job| {
        let sc = j.scenario;
        let mean_rate: f64 = sc.regions.iter().map(|r| r.rate).sum();
        mean_rate * sc.duration.as_secs_f64()
    };
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by(|a, b| cost(&jobs[*b]).total_cmp(&cost(&jobs[*a])));
    let mut results: Vec<Option<Result<PolicyResult, Error>>> = jobs.iter().map(|_| None).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::Mutex::new(&mut results);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&i) = order.get(k) else { break };
                    let j = &jobs[i];
                    let r = engine::run(
                        j.topology,
                        j.scenario,
                        j.prepared,
                        j.variant,
                        j.scenario.seed,
                    );
                    done.lock().expect("no worker panics while holding it")[i] = Some(r);
                }
            });
        }
    });
    results
        .into_iter()
        .map(|r| r.expect("every job ran"))
        .collect()
}

/// What `fedlb simulate` is asked to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// One scenario on one topology.
    One {
        /// The topology file.
        topology: PathBuf,
        /// The scenario file.
        scenario: PathBuf,
    },
    /// Every scenario of a suite directory.
    Suite {
        /// The directory.
        dir: PathBuf,
        /// Only these scenarios (directory names); empty: all.
        only: Vec<String>,
    },
}

/// The command line of `fedlb simulate`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CliArgs {
    /// What to run.
    pub input: Input,
    /// Run options.
    pub options: Options,
    /// Where CSV files and the plot go (none: only the table on stdout).
    pub out: Option<PathBuf>,
}

/// Usage text of `fedlb simulate`.
pub const USAGE: &str = "usage: fedlb simulate TOPOLOGY --scenario FILE [--policy NAME[,NAME…]]… [--seed N] [--out DIR] [--threads N]\n       fedlb simulate --suite DIR [--only SCENARIO[,SCENARIO…]]… [--policy NAME[,NAME…]]… [--seed N] [--out DIR] [--threads N]";

impl CliArgs {
    /// Parses the arguments after `simulate`.
    pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<CliArgs, Error> {
        let usage = |what: String| Error::Usage(format!("{what}\n{USAGE}"));
        let mut topology = None;
        let mut scenario = None;
        let mut suite = None;
        let mut only = Vec::new();
        let mut options = Options::default();
        let mut out = None;
        let mut it = args.into_iter();
        let list = |v: String| -> Vec<String> {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
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
                "--suite" => suite = Some(PathBuf::from(value("--suite")?)),
                "--only" => only.extend(list(value("--only")?)),
                "--policy" => options.policies.extend(list(value("--policy")?)),
                "--seed" => {
                    let v = value("--seed")?;
                    options.seed = Some(
                        v.parse()
                            .map_err(|_| usage(format!("--seed {v}: not a number")))?,
                    );
                }
                "--threads" => {
                    let v = value("--threads")?;
                    options.threads = v
                        .parse()
                        .map_err(|_| usage(format!("--threads {v}: not a number")))?;
                }
                "--out" => out = Some(PathBuf::from(value("--out")?)),
                "-h" | "--help" => return Err(Error::Usage(USAGE.to_owned())),
                f if f.starts_with('-') => return Err(usage(format!("unknown option {f}"))),
                _ if topology.is_none() => topology = Some(PathBuf::from(arg)),
                _ => return Err(usage(format!("unexpected argument {arg}"))),
            }
        }
        let input = match (suite, topology, scenario) {
            (Some(dir), None, None) => Input::Suite { dir, only },
            (Some(_), _, _) => {
                return Err(usage(
                    "--suite takes no TOPOLOGY or --scenario (each scenario directory has its own)"
                        .into(),
                ));
            }
            (None, topology, scenario) => {
                if !only.is_empty() {
                    return Err(usage("--only needs --suite".into()));
                }
                Input::One {
                    topology: topology.ok_or_else(|| usage("TOPOLOGY is missing".into()))?,
                    scenario: scenario.ok_or_else(|| usage("--scenario is missing".into()))?,
                }
            }
        };
        Ok(CliArgs {
            input,
            options,
            out,
        })
    }
}

/// What `fedlb simulate` ran.
#[derive(Clone, Debug, PartialEq)]
pub enum Ran {
    /// One scenario.
    One(Report),
    /// A suite.
    Suite(SuiteReport),
}

/// `fedlb simulate …`: loads the files, runs, prints the table on `stdout` and writes the
/// CSV files and the plots to `--out`.
pub fn run_cli<I: IntoIterator<Item = OsString>>(
    args: I,
    stdout: &mut dyn std::io::Write,
) -> Result<Ran, Error> {
    let args = CliArgs::parse(args)?;
    let (table, ran) = match &args.input {
        Input::One { topology, scenario } => {
            let scenario = Scenario::load(scenario)?;
            let topology = load_topology(topology, scenario.service.as_deref())?;
            let report = simulate(&topology, &scenario, &args.options)?;
            (report.to_table(), Ran::One(report))
        }
        Input::Suite { dir, only } => {
            let suite = Suite::load(dir, only)?;
            let report = simulate_suite(&suite, &args.options)?;
            (report.to_table(), Ran::Suite(report))
        }
    };
    stdout
        .write_all(table.as_bytes())
        .map_err(|source| Error::Write {
            path: "stdout".into(),
            source,
        })?;
    if let Some(dir) = &args.out {
        match &ran {
            Ran::One(r) => r.write_to(dir)?,
            Ran::Suite(r) => r.write_to(dir)?,
        }
    }
    Ok(ran)
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
