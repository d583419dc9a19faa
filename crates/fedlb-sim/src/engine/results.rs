//! Result assembly: what one run measured, as a [`PolicyResult`].

use std::time::Duration;

use crate::report::{BinResult, PolicyResult, RegionResult, ServerResult};
use crate::scenario::Variant;

use super::state::{UTIL_WINDOW, World};

impl World<'_> {
    pub(super) fn finish(mut self, v: &Variant) -> PolicyResult {
        let end = self.end;
        let window = UTIL_WINDOW.min(self.end - self.warmup);
        for s in &mut self.servers {
            s.account(end, window);
        }
        let span_s = (self.end - self.warmup) as f64 / 1e6;
        let servers = self
            .pre
            .servers
            .iter()
            .zip(&self.servers)
            .map(|(info, s)| ServerResult {
                name: info.id.0.clone(),
                requests: s.requests,
                max_utilisation: s.util_max,
            })
            .collect::<Vec<_>>();
        PolicyResult {
            name: v.name.clone(),
            description: crate::report::describe(self.topo, self.sc, v),
            requests: self.overall.count,
            mean_ms: self.overall.mean_ms(),
            p50_ms: self.overall.quantile_ms(0.5),
            p99_ms: self.overall.quantile_ms(0.99),
            max_utilisation: servers
                .iter()
                .map(|s| s.max_utilisation)
                .fold(0.0, f64::max),
            to_down_share: self.overall.share(self.overall.to_down),
            refused_share: self.overall.share(self.overall.refused),
            dns_changes_per_hour: self.dns_changes as f64 * 3600.0 / span_s,
            flips_per_minute: self.flips as f64 * 60.0 / span_s,
            last_to_down: self.last_to_down.map(Duration::from_micros),
            regions: self
                .sc
                .regions
                .iter()
                .zip(&self.regions)
                .map(|(r, a)| RegionResult {
                    name: r.name.clone(),
                    requests: a.count,
                    mean_ms: a.mean_ms(),
                    p50_ms: a.quantile_ms(0.5),
                    p99_ms: a.quantile_ms(0.99),
                    to_down_share: a.share(a.to_down),
                })
                .collect(),
            series: self
                .bins
                .iter()
                .enumerate()
                .map(|(i, (n, sum, down))| BinResult {
                    start: Duration::from_micros(self.warmup + i as u64 * self.bin_us),
                    requests: *n,
                    mean_ms: if *n == 0 { 0.0 } else { sum / *n as f64 / 1e3 },
                    to_down_share: if *n == 0 {
                        0.0
                    } else {
                        *down as f64 / *n as f64
                    },
                })
                .collect(),
            servers,
        }
    }
}
