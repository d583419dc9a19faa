//! Order statistics over repeated trials.

use serde::Serialize;

/// Summary of a sample: the median and the spread around it.
#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    /// Number of values.
    pub n: usize,
    /// Smallest.
    pub min: f64,
    /// 10th percentile (nearest rank).
    pub p10: f64,
    /// Median.
    pub median: f64,
    /// 90th percentile (nearest rank).
    pub p90: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Stats {
    /// The statistics of `values` (NaNs dropped); `None` when nothing is left.
    pub fn of(values: &[f64]) -> Option<Stats> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
            v[rank.clamp(1, v.len()) - 1]
        };
        let median = if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
        };
        Some(Stats {
            n: v.len(),
            min: v[0],
            p10: pct(10.0),
            median,
            p90: pct(90.0),
            p99: pct(99.0),
            max: v[v.len() - 1],
            mean: v.iter().sum::<f64>() / v.len() as f64,
        })
    }

    /// `median 12.3 (min 10.1, p90 15.0, p99 16.2, max 16.2; n=10) unit`
    pub fn line(&self, unit: &str) -> String {
        format!(
            "median {} {unit} (min {}, p90 {}, p99 {}, max {}; n={})",
            num(self.median),
            num(self.min),
            num(self.p90),
            num(self.p99),
            num(self.max),
            self.n
        )
    }
}

/// A number with a sensible count of digits.
pub fn num(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// Prints `label: stats` (or `label: no data`) and returns the stats as JSON.
pub fn show(label: &str, values: &[f64], unit: &str) -> serde_json::Value {
    match Stats::of(values) {
        Some(s) => {
            println!("  {label:<44} {}", s.line(unit));
            let mut v = serde_json::to_value(&s).expect("stats serialise");
            v["unit"] = unit.into();
            v
        }
        None => {
            println!("  {label:<44} no data");
            serde_json::Value::Null
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        let s = Stats::of(&v).unwrap();
        assert_eq!((s.min, s.median, s.p90, s.max), (1.0, 5.5, 9.0, 10.0));
        assert_eq!(Stats::of(&[3.0]).unwrap().p99, 3.0);
        assert!(Stats::of(&[]).is_none());
    }
}
