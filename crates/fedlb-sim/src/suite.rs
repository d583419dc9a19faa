//! The scenario suite: every `DIR/<name>/{topology.toml,scenario.toml}` run with the same
//! policies, and one table that sets each policy against the best single-level baseline of
//! each scenario, so that defaults are chosen on many workloads, not one.
//!
//! A policy's ratio on a scenario is its mean (p99) response time over the mean (p99) of
//! that scenario's best baseline, the best being the one of round robin, random, closest
//! and least loaded with the lowest mean. Ratios are combined across scenarios by their
//! geometric mean, so that a scenario where every time is long weighs no more than one where
//! every time is short.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::report::{PolicyResult, Report};
use crate::scenario::Scenario;
use crate::topology::Topology;

/// One scenario of a suite, loaded.
#[derive(Clone, Debug, PartialEq)]
pub struct SuiteEntry {
    /// Its directory's name (the table's scenario column).
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// `topology.toml`, as the nodes would run it.
    pub topology: Topology,
    /// `scenario.toml`.
    pub scenario: Scenario,
}

/// A suite directory, loaded: its scenarios in name order.
#[derive(Clone, Debug, PartialEq)]
pub struct Suite {
    /// The directory.
    pub dir: PathBuf,
    /// Its scenarios.
    pub entries: Vec<SuiteEntry>,
}

/// The scenario file of a suite scenario.
pub const SCENARIO_FILE: &str = "scenario.toml";
/// The topology file of a suite scenario.
pub const TOPOLOGY_FILE: &str = "topology.toml";

impl Suite {
    /// Reads every subdirectory of `dir` (files beside them are ignored), or only those
    /// named in `only`. Every problem of every scenario is reported, each naming its file.
    pub fn load(dir: &Path, only: &[String]) -> Result<Suite, Error> {
        let shown = dir.display().to_string();
        let listing = std::fs::read_dir(dir).map_err(|source| Error::Read {
            file: shown.clone(),
            source,
        })?;
        let mut dirs = Vec::new();
        for entry in listing {
            let entry = entry.map_err(|source| Error::Read {
                file: shown.clone(),
                source,
            })?;
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            }
        }
        dirs.sort();
        let name_of = |p: &Path| {
            p.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        };
        let mut problems = Vec::new();
        for want in only {
            if !dirs.iter().any(|d| &name_of(d) == want) {
                problems.push(Error::Mismatch(format!(
                    "{}: no scenario \"{want}\" (it has: {})",
                    shown,
                    dirs.iter()
                        .map(|d| name_of(d))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        let mut entries = Vec::new();
        for d in dirs {
            let name = name_of(&d);
            if !only.is_empty() && !only.contains(&name) {
                continue;
            }
            let (sc_path, topo_path) = (d.join(SCENARIO_FILE), d.join(TOPOLOGY_FILE));
            let missing: Vec<&Path> = [sc_path.as_path(), topo_path.as_path()]
                .into_iter()
                .filter(|p| !p.is_file())
                .collect();
            if !missing.is_empty() {
                for p in missing {
                    problems.push(Error::Mismatch(format!(
                        "{}: missing (a suite scenario is a directory with {SCENARIO_FILE} and {TOPOLOGY_FILE})",
                        p.display()
                    )));
                }
                continue;
            }
            let scenario = match Scenario::load(&sc_path) {
                Ok(s) => s,
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            };
            match crate::load_topology(&topo_path, scenario.service.as_deref()) {
                Ok(topology) => entries.push(SuiteEntry {
                    name,
                    dir: d,
                    topology,
                    scenario,
                }),
                Err(e) => problems.push(Error::Mismatch(format!("{}: {e}", topo_path.display()))),
            }
        }
        if problems.is_empty() && entries.is_empty() {
            problems.push(Error::Mismatch(format!(
                "{shown}: no scenario (a suite is a directory of <name>/{SCENARIO_FILE} with <name>/{TOPOLOGY_FILE})"
            )));
        }
        if problems.is_empty() {
            Ok(Suite {
                dir: dir.to_owned(),
                entries,
            })
        } else {
            Err(Error::Suite(problems))
        }
    }
}

/// Which variant is fedlb's default on a scenario: `fedlb-regions` (one answer per client
/// region: the closest farm under 80 % load, split with the next farms when over it, else
/// the least loaded; each farm's healthy servers weighted by headroom; the embedded server
/// handing each resolver one of them by weight, keyed by its subnet) where clients come from
/// more than one region, since a deployment serving several regions declares them and that
/// is what a topology with `[[regions]]` runs; otherwise `fedlb` (closest farm, its
/// least-loaded server).
pub fn default_policy(sc: &Scenario) -> Option<&str> {
    let name = if sc.regions.len() > 1 {
        "fedlb-regions"
    } else {
        "fedlb"
    };
    sc.variants.iter().any(|v| v.name == name).then_some(name)
}

/// One scenario's results in a suite.
#[derive(Clone, Debug, PartialEq)]
pub struct SuiteScenario {
    /// The scenario's directory name.
    pub name: String,
    /// Its report.
    pub report: Report,
    /// The policies that are single-level baselines.
    pub baselines: Vec<String>,
    /// fedlb's default on it (see [`default_policy`]), if run.
    pub default: Option<String>,
}

impl SuiteScenario {
    /// The baseline with the lowest mean (the first of equals).
    pub fn best_baseline(&self) -> Option<&PolicyResult> {
        self.report
            .policies
            .iter()
            .filter(|p| self.baselines.contains(&p.name))
            .fold(None, |best: Option<&PolicyResult>, p| match best {
                Some(b) if b.mean_ms <= p.mean_ms => Some(b),
                _ => Some(p),
            })
    }

    /// A policy's (mean, p99) over the best baseline's.
    pub fn ratios(&self, policy: &str) -> Option<(f64, f64)> {
        let best = self.best_baseline()?;
        let p = self.report.policy(policy)?;
        Some((p.mean_ms / best.mean_ms, p.p99_ms / best.p99_ms))
    }
}

/// The geometric mean, `None` for no values or a value that is not a positive number.
pub fn geometric_mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
        return None;
    }
    Some((values.iter().map(|v| v.ln()).sum::<f64>() / values.len() as f64).exp())
}

/// One policy across the suite.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicySummary {
    /// Its name, or [`DEFAULT_ROW`] for fedlb's default of each scenario.
    pub name: String,
    /// Scenarios it ran on (with a baseline to compare with).
    pub scenarios: usize,
    /// Geometric mean of its mean ratios.
    pub mean_ratio: f64,
    /// Geometric mean of its p99 ratios.
    pub p99_ratio: f64,
    /// Its highest mean ratio and where.
    pub worst_mean: (f64, String),
    /// Its highest p99 ratio and where.
    pub worst_p99: (f64, String),
    /// Scenarios where its mean or p99 is above the best baseline's.
    pub misses: Vec<String>,
}

/// The summary row that takes, on each scenario, fedlb's default there.
pub const DEFAULT_ROW: &str = "fedlb's default";

/// What a suite run found.
#[derive(Clone, Debug, PartialEq)]
pub struct SuiteReport {
    /// The suite directory, as given.
    pub dir: String,
    /// The seed every scenario ran with (`None`: each its own).
    pub seed: Option<u64>,
    /// One per scenario, in name order.
    pub scenarios: Vec<SuiteScenario>,
}

impl SuiteReport {
    /// Every policy name, in order of first appearance.
    fn policy_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for s in &self.scenarios {
            for p in &s.report.policies {
                if !names.contains(&p.name.as_str()) {
                    names.push(&p.name);
                }
            }
        }
        names
    }

    fn summarize(
        &self,
        name: &str,
        pick: impl Fn(&SuiteScenario) -> Option<String>,
    ) -> Option<PolicySummary> {
        let rows: Vec<(&str, f64, f64)> = self
            .scenarios
            .iter()
            .filter_map(|s| {
                let policy = pick(s)?;
                let (m, p) = s.ratios(&policy)?;
                Some((s.name.as_str(), m, p))
            })
            .collect();
        let worst = |f: fn(&(&str, f64, f64)) -> f64| {
            rows.iter()
                .fold((f64::NEG_INFINITY, String::new()), |w, r| {
                    if f(r) > w.0 {
                        (f(r), r.0.to_owned())
                    } else {
                        w
                    }
                })
        };
        let means: Vec<f64> = rows.iter().map(|r| r.1).collect();
        let p99s: Vec<f64> = rows.iter().map(|r| r.2).collect();
        Some(PolicySummary {
            name: name.to_owned(),
            scenarios: rows.len(),
            mean_ratio: geometric_mean(&means)?,
            p99_ratio: geometric_mean(&p99s)?,
            worst_mean: worst(|r| r.1),
            worst_p99: worst(|r| r.2),
            misses: rows
                .iter()
                .filter(|r| r.1 > 1.0 || r.2 > 1.0)
                .map(|r| r.0.to_owned())
                .collect(),
        })
    }

    /// One row per policy, then [`DEFAULT_ROW`].
    pub fn summary(&self) -> Vec<PolicySummary> {
        let mut out: Vec<PolicySummary> = self
            .policy_names()
            .into_iter()
            .filter_map(|n| self.summarize(n, |_| Some(n.to_owned())))
            .collect();
        out.extend(self.summarize(DEFAULT_ROW, |s| s.default.clone()));
        out
    }

    /// The table: each scenario × policy, then each policy across the suite and the
    /// issue's bar for fedlb's default.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let n_policies = self.policy_names().len();
        let _ = writeln!(
            out,
            "suite {}: {} scenarios, {} policies, {}",
            self.dir,
            self.scenarios.len(),
            n_policies,
            match self.seed {
                Some(s) => format!("seed {s}"),
                None => "each scenario's own seed".to_owned(),
            }
        );
        let _ = writeln!(
            out,
            "×mean, ×p99: over the best single-level baseline of the scenario by mean (b); d: fedlb's default there"
        );
        let _ = writeln!(out);
        let sw = self
            .scenarios
            .iter()
            .map(|s| s.name.chars().count())
            .max()
            .unwrap_or(8)
            .max(8);
        let pw = self
            .policy_names()
            .iter()
            .map(|n| n.chars().count())
            .chain([DEFAULT_ROW.chars().count()])
            .max()
            .unwrap_or(6);
        let _ = writeln!(
            out,
            "{:<sw$}  {:<pw$}     {:>8}  {:>8}  {:>7}  {:>6}  {:>6}",
            "scenario", "policy", "mean ms", "p99 ms", "refused", "×mean", "×p99"
        );
        for s in &self.scenarios {
            let best = s.best_baseline().map(|b| b.name.clone());
            for (i, p) in s.report.policies.iter().enumerate() {
                let mark = [
                    if best.as_ref() == Some(&p.name) {
                        'b'
                    } else {
                        ' '
                    },
                    if s.default.as_ref() == Some(&p.name) {
                        'd'
                    } else {
                        ' '
                    },
                ]
                .iter()
                .collect::<String>();
                let (m, q) = s
                    .ratios(&p.name)
                    .map_or(("-".into(), "-".into()), |(m, q)| {
                        (format!("{m:.2}"), format!("{q:.2}"))
                    });
                let _ = writeln!(
                    out,
                    "{:<sw$}  {:<pw$}  {mark}  {:>8.1}  {:>8.1}  {:>5.2} %  {m:>6}  {q:>6}",
                    if i == 0 { s.name.as_str() } else { "" },
                    p.name,
                    p.mean_ms,
                    p.p99_ms,
                    p.refused_share * 100.0,
                );
            }
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "across the suite: geometric mean of the ratios; worst scenario; where mean or p99 is above 1.0×"
        );
        let _ = writeln!(
            out,
            "{:<pw$}  {:>6}  {:>6}  {:<w$}  {:<w$}  above 1.0× on",
            "policy",
            "×mean",
            "×p99",
            "worst ×mean",
            "worst ×p99",
            w = sw + 7
        );
        let summary = self.summary();
        for p in &summary {
            let _ = writeln!(
                out,
                "{:<pw$}  {:>6.2}  {:>6.2}  {:<w$}  {:<w$}  {}",
                p.name,
                p.mean_ratio,
                p.p99_ratio,
                format!("{:.2} {}", p.worst_mean.0, p.worst_mean.1),
                format!("{:.2} {}", p.worst_p99.0, p.worst_p99.1),
                if p.misses.is_empty() {
                    "none".to_owned()
                } else {
                    format!(
                        "{} of {}: {}",
                        p.misses.len(),
                        p.scenarios,
                        p.misses.join(", ")
                    )
                },
                w = sw + 7
            );
        }
        let _ = writeln!(out);
        if let Some(d) = summary.iter().find(|p| p.name == DEFAULT_ROW) {
            let every = d.misses.is_empty() && d.scenarios == self.scenarios.len();
            let geo = d.mean_ratio <= 0.8;
            let _ = writeln!(
                out,
                "fedlb's default (fedlb-regions with several client regions, else fedlb): ≤ 1.0× mean and p99 on {} of {} scenarios{}; geometric mean {:.2}× on mean (bar 0.80×). Bar {}.",
                d.scenarios - d.misses.len(),
                self.scenarios.len(),
                if d.misses.is_empty() {
                    String::new()
                } else {
                    format!(" (above on {})", d.misses.join(", "))
                },
                d.mean_ratio,
                if every && geo { "met" } else { "not met" }
            );
        }
        out
    }

    /// One row per scenario and policy.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "scenario,policy,baseline,best_baseline,default,requests,mean_ms,p50_ms,p99_ms,refused_share,to_down_share,ratio_mean,ratio_p99\n",
        );
        for s in &self.scenarios {
            let best = s.best_baseline().map(|b| b.name.clone());
            for p in &s.report.policies {
                let (m, q) = s
                    .ratios(&p.name)
                    .map_or((String::new(), String::new()), |(m, q)| {
                        (format!("{m:.4}"), format!("{q:.4}"))
                    });
                let _ = writeln!(
                    out,
                    "{},{},{},{},{},{},{:.3},{:.3},{:.3},{:.6},{:.6},{m},{q}",
                    crate::report::csv(&s.name),
                    crate::report::csv(&p.name),
                    s.baselines.contains(&p.name),
                    best.as_ref() == Some(&p.name),
                    s.default.as_ref() == Some(&p.name),
                    p.requests,
                    p.mean_ms,
                    p.p50_ms,
                    p.p99_ms,
                    p.refused_share,
                    p.to_down_share,
                );
            }
        }
        out
    }

    /// One row per policy across the suite (and [`DEFAULT_ROW`]).
    pub fn summary_csv(&self) -> String {
        let mut out = String::from(
            "policy,scenarios,geomean_ratio_mean,geomean_ratio_p99,worst_ratio_mean,worst_mean_scenario,worst_ratio_p99,worst_p99_scenario,above_1_on\n",
        );
        for p in self.summary() {
            let _ = writeln!(
                out,
                "{},{},{:.4},{:.4},{:.4},{},{:.4},{},{}",
                crate::report::csv(&p.name),
                p.scenarios,
                p.mean_ratio,
                p.p99_ratio,
                p.worst_mean.0,
                crate::report::csv(&p.worst_mean.1),
                p.worst_p99.0,
                crate::report::csv(&p.worst_p99.1),
                crate::report::csv(&p.misses.join(" ")),
            );
        }
        out
    }

    /// Writes `table.txt`, `suite.csv`, `suite-summary.csv`, and each scenario's own
    /// report files in `<name>/`.
    pub fn write_to(&self, dir: &Path) -> Result<(), Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Write {
            path: dir.display().to_string(),
            source,
        })?;
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|source| Error::Write {
                path: path.display().to_string(),
                source,
            })
        };
        write("table.txt", &self.to_table())?;
        write("suite.csv", &self.csv())?;
        write("suite-summary.csv", &self.summary_csv())?;
        for s in &self.scenarios {
            s.report.write_to(&dir.join(&s.name))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometric_mean_of_ratios() {
        assert_eq!(geometric_mean(&[]), None);
        assert_eq!(geometric_mean(&[0.5, 0.0]), None);
        assert_eq!(geometric_mean(&[1.0, f64::NAN]), None);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(geometric_mean(&[2.0]).unwrap(), 2.0));
        // not the arithmetic mean (1.25): halving on one scenario and doubling on another
        // cancel out
        assert!(close(geometric_mean(&[0.5, 2.0]).unwrap(), 1.0));
        assert!(close(geometric_mean(&[1.0, 4.0, 16.0]).unwrap(), 4.0));
        assert!(close(geometric_mean(&[0.8; 5]).unwrap(), 0.8));
    }

    fn policy(name: &str, mean_ms: f64, p99_ms: f64) -> PolicyResult {
        PolicyResult {
            name: name.into(),
            description: String::new(),
            requests: 1,
            mean_ms,
            p50_ms: mean_ms,
            p99_ms,
            max_utilisation: 0.0,
            to_down_share: 0.0,
            refused_share: 0.0,
            dns_changes_per_hour: 0.0,
            flips_per_minute: 0.0,
            last_to_down: None,
            regions: Vec::new(),
            series: Vec::new(),
            servers: Vec::new(),
        }
    }

    fn scenario(name: &str, policies: Vec<PolicyResult>, default: &str) -> SuiteScenario {
        SuiteScenario {
            name: name.into(),
            report: Report {
                scenario: name.into(),
                seed: 1,
                duration: std::time::Duration::from_secs(60),
                warmup: std::time::Duration::ZERO,
                bin: std::time::Duration::from_secs(10),
                policies,
            },
            baselines: vec!["rr".into(), "ll".into()],
            default: Some(default.into()),
        }
    }

    #[test]
    fn the_summary_takes_the_best_baseline_by_mean_and_the_geometric_mean_of_ratios() {
        let r = SuiteReport {
            dir: "s".into(),
            seed: None,
            scenarios: vec![
                // best baseline by mean is ll (its p99 is the worse one); x, not a
                // baseline, is never the reference however good
                scenario(
                    "one",
                    vec![
                        policy("rr", 100.0, 200.0),
                        policy("ll", 50.0, 400.0),
                        policy("x", 25.0, 800.0),
                        policy("y", 10.0, 1.0),
                    ],
                    "x",
                ),
                scenario(
                    "two",
                    vec![
                        policy("rr", 10.0, 100.0),
                        policy("ll", 20.0, 50.0),
                        policy("x", 40.0, 25.0),
                        policy("y", 10.0, 1.0),
                    ],
                    "y",
                ),
            ],
        };
        assert_eq!(r.scenarios[0].best_baseline().unwrap().name, "ll");
        assert_eq!(r.scenarios[1].best_baseline().unwrap().name, "rr");
        assert_eq!(r.scenarios[0].ratios("x"), Some((0.5, 2.0)));
        assert_eq!(r.scenarios[1].ratios("x"), Some((4.0, 0.25)));
        let summary = r.summary();
        let names: Vec<&str> = summary.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["rr", "ll", "x", "y", DEFAULT_ROW]);
        let x = &summary[2];
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        // √(0.5 × 4) and √(2 × 0.25)
        assert!(close(x.mean_ratio, 2f64.sqrt()), "{}", x.mean_ratio);
        assert!(close(x.p99_ratio, 0.5f64.sqrt()), "{}", x.p99_ratio);
        assert_eq!(x.worst_mean, (4.0, "two".to_owned()));
        assert_eq!(x.worst_p99, (2.0, "one".to_owned()));
        assert_eq!(x.misses, ["one", "two"]);
        // the default row: x on one (0.5, 2), y on two (1, 0.01)
        let d = &summary[4];
        assert!(close(d.mean_ratio, 0.5f64.sqrt()), "{}", d.mean_ratio);
        assert!(close(d.p99_ratio, 0.02f64.sqrt()), "{}", d.p99_ratio);
        assert_eq!(d.misses, ["one"]);
        let table = r.to_table();
        assert!(
            table.contains("≤ 1.0× mean and p99 on 1 of 2 scenarios (above on one); geometric mean 0.71× on mean (bar 0.80×). Bar not met."),
            "{table}"
        );
        assert!(
            r.summary_csv()
                .contains("\nx,2,1.4142,0.7071,4.0000,two,2.0000,one,one two\n")
        );
    }
}
