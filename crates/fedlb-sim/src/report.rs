//! What a run found: per policy and per region, as a table, CSV and an SVG plot.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use fedlb_core::time::human;
use fedlb_core::{ClosestBy, Hysteresis, Policy, Spill, Spread};

use crate::error::Error;
use crate::scenario::{Scenario, TtlMode, Variant};
use crate::topology::Topology;
use crate::variant::{selectors, ttl_mode};

/// The results of one simulation run.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Seed used.
    pub seed: u64,
    /// Simulated time.
    pub duration: Duration,
    /// Warm-up (traffic, but no statistics).
    pub warmup: Duration,
    /// Time-series bin width.
    pub bin: Duration,
    /// One entry per policy, in the scenario's order.
    pub policies: Vec<PolicyResult>,
}

/// The results of one policy.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyResult {
    /// Its short name.
    pub name: String,
    /// What it is, in words.
    pub description: String,
    /// Requests sent.
    pub requests: u64,
    /// Mean client response time (network + queueing + service; a failed request costs
    /// the client timeout).
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Highest utilisation of any server over any 10-second window.
    pub max_utilisation: f64,
    /// Share of requests sent to a down server (or lost in one as it died).
    pub to_down_share: f64,
    /// Share of requests refused (full backlog, or no answer published yet).
    pub refused_share: f64,
    /// Changes of the published answer per hour.
    pub dns_changes_per_hour: f64,
    /// Changes of any tier's choice (farm-local and global) per minute.
    pub flips_per_minute: f64,
    /// The last moment a request was sent to a down server.
    pub last_to_down: Option<Duration>,
    /// Per region.
    pub regions: Vec<RegionResult>,
    /// Over time.
    pub series: Vec<BinResult>,
    /// Per server.
    pub servers: Vec<ServerResult>,
}

/// One policy's results for one client region.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionResult {
    /// Region name.
    pub name: String,
    /// Requests sent.
    pub requests: u64,
    /// Mean response time.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Share sent to down servers.
    pub to_down_share: f64,
}

/// One policy's results in one time bin (by the time requests were sent).
#[derive(Clone, Debug, PartialEq)]
pub struct BinResult {
    /// Start of the bin.
    pub start: Duration,
    /// Requests sent.
    pub requests: u64,
    /// Mean response time.
    pub mean_ms: f64,
    /// Share sent to down servers.
    pub to_down_share: f64,
}

/// One policy's results for one server.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerResult {
    /// Server name.
    pub name: String,
    /// Requests sent to it after the warm-up.
    pub requests: u64,
    /// Its highest 10-second utilisation.
    pub max_utilisation: f64,
}

impl Report {
    /// One policy's results by name.
    pub fn policy(&self, name: &str) -> Option<&PolicyResult> {
        self.policies.iter().find(|p| p.name == name)
    }

    /// The tables an operator reads: overall, per region, and what each policy is.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let requests = self.policies.first().map_or(0, |p| p.requests);
        let _ = writeln!(
            out,
            "scenario {}: seed {}, {} simulated after {} warm-up, ≈{} requests per policy",
            self.scenario,
            self.seed,
            human(self.duration.saturating_sub(self.warmup)),
            human(self.warmup),
            requests
        );
        let _ = writeln!(out);
        let width = self
            .policies
            .iter()
            .map(|p| p.name.chars().count())
            .max()
            .unwrap_or(6)
            .max(6);
        let _ = writeln!(
            out,
            "{:<width$}  {:>8}  {:>8}  {:>8}  {:>8}  {:>7}  {:>7}  {:>9}  {:>9}",
            "policy",
            "mean ms",
            "p50 ms",
            "p99 ms",
            "max util",
            "to down",
            "refused",
            "DNS chg/h",
            "flips/min"
        );
        for p in &self.policies {
            let _ = writeln!(
                out,
                "{:<width$}  {:>8.1}  {:>8.1}  {:>8.1}  {:>7.0} %  {:>5.2} %  {:>5.2} %  {:>9.0}  {:>9.2}",
                p.name,
                p.mean_ms,
                p.p50_ms,
                p.p99_ms,
                p.max_utilisation * 100.0,
                p.to_down_share * 100.0,
                p.refused_share * 100.0,
                p.dns_changes_per_hour,
                p.flips_per_minute
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "per region: mean / p99 ms (to down %)");
        let regions: Vec<&str> = self
            .policies
            .first()
            .map(|p| p.regions.iter().map(|r| r.name.as_str()).collect())
            .unwrap_or_default();
        let _ = write!(out, "{:<width$}", "policy");
        for r in &regions {
            let _ = write!(out, "  {r:>24}");
        }
        let _ = writeln!(out);
        for p in &self.policies {
            let _ = write!(out, "{:<width$}", p.name);
            for r in &p.regions {
                let cell = format!(
                    "{:.1} / {:.1} ({:.2} %)",
                    r.mean_ms,
                    r.p99_ms,
                    r.to_down_share * 100.0
                );
                let _ = write!(out, "  {cell:>24}");
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(out);
        for p in &self.policies {
            let _ = writeln!(out, "{:<width$}  {}", p.name, p.description);
        }
        out
    }

    /// One row per policy.
    pub fn summary_csv(&self) -> String {
        let mut out = String::from(
            "policy,requests,mean_ms,p50_ms,p99_ms,max_utilisation,to_down_share,refused_share,dns_changes_per_hour,flips_per_minute,description\n",
        );
        for p in &self.policies {
            let _ = writeln!(
                out,
                "{},{},{:.3},{:.3},{:.3},{:.4},{:.6},{:.6},{:.2},{:.4},{}",
                csv(&p.name),
                p.requests,
                p.mean_ms,
                p.p50_ms,
                p.p99_ms,
                p.max_utilisation,
                p.to_down_share,
                p.refused_share,
                p.dns_changes_per_hour,
                p.flips_per_minute,
                csv(&p.description)
            );
        }
        out
    }

    /// One row per policy and region.
    pub fn regions_csv(&self) -> String {
        let mut out = String::from("policy,region,requests,mean_ms,p50_ms,p99_ms,to_down_share\n");
        for p in &self.policies {
            for r in &p.regions {
                let _ = writeln!(
                    out,
                    "{},{},{},{:.3},{:.3},{:.3},{:.6}",
                    csv(&p.name),
                    csv(&r.name),
                    r.requests,
                    r.mean_ms,
                    r.p50_ms,
                    r.p99_ms,
                    r.to_down_share
                );
            }
        }
        out
    }

    /// One row per policy and time bin.
    pub fn series_csv(&self) -> String {
        let mut out = String::from("policy,start_s,requests,mean_ms,to_down_share\n");
        for p in &self.policies {
            for b in &p.series {
                let _ = writeln!(
                    out,
                    "{},{:.3},{},{:.3},{:.6}",
                    csv(&p.name),
                    b.start.as_secs_f64(),
                    b.requests,
                    b.mean_ms,
                    b.to_down_share
                );
            }
        }
        out
    }

    /// Mean response time over time, one line per policy, log scale.
    pub fn plot_svg(&self) -> Result<String, Error> {
        use plotters::prelude::*;
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (1100, 620)).into_drawing_area();
            let perr = |e: &dyn std::fmt::Display| Error::Plot(e.to_string());
            root.fill(&WHITE).map_err(|e| perr(&e))?;
            let x_max = self.duration.as_secs_f64() / 60.0;
            let x_min = self.warmup.as_secs_f64() / 60.0;
            let values = || {
                self.policies
                    .iter()
                    .flat_map(|p| p.series.iter())
                    .filter(|b| b.requests > 0)
                    .map(|b| b.mean_ms)
            };
            let y_min = values().fold(f64::INFINITY, f64::min).clamp(0.1, 1e6) * 0.8;
            let y_max = values().fold(0.0, f64::max).max(y_min * 2.0) * 1.25;
            let mut chart = ChartBuilder::on(&root)
                .caption(
                    format!(
                        "{}: mean response time per {}",
                        self.scenario,
                        human(self.bin)
                    ),
                    ("sans-serif", 20),
                )
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(x_min..x_max, (y_min..y_max).log_scale())
                .map_err(|e| perr(&e))?;
            chart
                .configure_mesh()
                .x_desc("simulated time (min)")
                .y_desc("mean response time (ms, log)")
                .draw()
                .map_err(|e| perr(&e))?;
            for (i, p) in self.policies.iter().enumerate() {
                let color = Palette99::pick(i).to_rgba();
                let points: Vec<(f64, f64)> = p
                    .series
                    .iter()
                    .filter(|b| b.requests > 0)
                    .map(|b| {
                        (
                            (b.start.as_secs_f64() + self.bin.as_secs_f64() / 2.0) / 60.0,
                            b.mean_ms,
                        )
                    })
                    .collect();
                chart
                    .draw_series(LineSeries::new(points, color.stroke_width(2)))
                    .map_err(|e| perr(&e))?
                    .label(p.name.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(|e| perr(&e))?;
            root.present().map_err(|e| perr(&e))?;
        }
        Ok(svg)
    }

    /// Writes `summary.csv`, `regions.csv`, `series.csv`, `response.svg` and `table.txt`.
    pub fn write_to(&self, dir: &Path) -> Result<(), Error> {
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|source| Error::Write {
                path: path.display().to_string(),
                source,
            })
        };
        std::fs::create_dir_all(dir).map_err(|source| Error::Write {
            path: dir.display().to_string(),
            source,
        })?;
        write("table.txt", &self.to_table())?;
        write("summary.csv", &self.summary_csv())?;
        write("regions.csv", &self.regions_csv())?;
        write("series.csv", &self.series_csv())?;
        write("response.svg", &self.plot_svg()?)
    }
}

pub(crate) fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn policy_name(p: &Policy) -> String {
    match p {
        Policy::Closest(ClosestBy::Auto | ClosestBy::Declared) => "closest".into(),
        other => other.to_string(),
    }
}

fn hysteresis(h: Hysteresis) -> String {
    if h.margin == 0.0 && h.dwell.is_zero() {
        "no hysteresis".into()
    } else {
        format!("hysteresis {:.0} %/{}", h.margin * 100.0, human(h.dwell))
    }
}

/// A variant in words, with the settings it runs.
pub(crate) fn describe(topo: &Topology, sc: &Scenario, v: &Variant) -> String {
    let Ok((global, local)) = selectors(topo, v) else {
        return String::new();
    };
    let ttl = match ttl_mode(topo, sc, v) {
        TtlMode::Fixed(d) => format!("TTL {}", human(d)),
        TtlMode::Derived { min, max } => {
            format!("TTL derived {}..{}", human(min), human(max))
        }
    };
    let rotation = |p: &Policy, every: Duration| {
        if p.is_stable() {
            String::new()
        } else {
            format!(" (new draw every {})", human(every))
        }
    };
    let mut text = match &v.flat {
        Some(p) => format!(
            "single level: {} over all servers{}, {}, top-{}",
            policy_name(p),
            rotation(p, global.rotate_every),
            hysteresis(global.hysteresis),
            global.answers
        ),
        None => {
            let l = local.values().next();
            let tiers = match l {
                Some(l) if l.hysteresis != global.hysteresis => format!(
                    "{} across farms, {} inside",
                    hysteresis(global.hysteresis),
                    hysteresis(l.hysteresis)
                ),
                _ => hysteresis(global.hysteresis),
            };
            format!(
                "{} farm (top-{}) → {} server (top-{}){}, {tiers}",
                policy_name(&global.policy),
                global.answers,
                l.map_or_else(|| "-".into(), |l| policy_name(&l.policy)),
                l.map_or(1, |l| l.answers),
                l.map_or_else(String::new, |l| rotation(&l.policy, l.rotate_every)),
            )
        }
    };
    let _ = write!(text, ", {ttl}");
    if v.ttl_by_load {
        text.push_str(" (shortened by load)");
    }
    if v.per_region {
        text.push_str(", one answer per client region");
    }
    if v.weighted {
        text.push_str(", servers weighted by headroom");
    }
    if global.spill == Spill::Split {
        text.push_str(", a region split across farms over the load limit");
    }
    match v.spread {
        Spread::All => {}
        Spread::Weighted => text.push_str(", DNS answers one member per query by weight"),
        Spread::Hashed => text.push_str(", DNS answers one member per resolver subnet by weight"),
    }
    text
}
