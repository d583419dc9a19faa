//! Response-time accumulators: exact count and mean, percentiles from a log-scale
//! histogram (1 % resolution), so that millions of requests cost no allocation.

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Served.
    Ok,
    /// Sent to a down server (or lost in one when it died).
    ToDown,
    /// Refused: the server's backlog was full, or no answer was published yet.
    Refused,
}

/// Buckets per e-fold of response time: 100 gives ≈ 1 % resolution.
const SCALE: f64 = 100.0;
/// Up to e^24 µs (about 7 hours).
const BUCKETS: usize = 2_400;

/// Response times of one group of requests.
#[derive(Clone, Debug)]
pub(crate) struct Acc {
    pub count: u64,
    pub to_down: u64,
    pub refused: u64,
    sum_us: f64,
    hist: Vec<u64>,
}

impl Acc {
    pub fn new() -> Self {
        Acc {
            count: 0,
            to_down: 0,
            refused: 0,
            sum_us: 0.0,
            hist: vec![0; BUCKETS],
        }
    }

    pub fn add(&mut self, response_us: u64, outcome: Outcome) {
        self.count += 1;
        match outcome {
            Outcome::Ok => {}
            Outcome::ToDown => self.to_down += 1,
            Outcome::Refused => self.refused += 1,
        }
        self.sum_us += response_us as f64;
        let i = ((response_us as f64).ln_1p() * SCALE) as usize;
        self.hist[i.min(BUCKETS - 1)] += 1;
    }

    pub fn mean_ms(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_us / self.count as f64 / 1e3
        }
    }

    /// The `q` quantile, as the middle of its bucket.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, n) in self.hist.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return (((i as f64 + 0.5) / SCALE).exp() - 1.0) / 1e3;
            }
        }
        unreachable!("rank is at most count")
    }

    pub fn share(&self, n: u64) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            n as f64 / self.count as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_within_one_percent() {
        let mut a = Acc::new();
        for ms in 1..=1000u64 {
            a.add(ms * 1000, Outcome::Ok);
        }
        assert!((a.mean_ms() - 500.5).abs() < 1e-9);
        let p50 = a.quantile_ms(0.5);
        let p99 = a.quantile_ms(0.99);
        assert!((p50 - 500.0).abs() / 500.0 < 0.01, "{p50}");
        assert!((p99 - 990.0).abs() / 990.0 < 0.01, "{p99}");
        a.add(5, Outcome::ToDown);
        assert_eq!(a.to_down, 1);
        assert!(a.quantile_ms(0.0) < 0.01);
    }
}
