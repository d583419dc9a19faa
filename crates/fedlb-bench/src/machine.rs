//! The machine a benchmark ran on.

use serde::Serialize;

/// What the reader of a figure needs to know about where it was measured.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// When (UTC, RFC 3339).
    pub date: String,
    /// Online CPUs.
    pub nproc: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// MemTotal in MiB.
    pub memory_mib: u64,
    /// Kernel release.
    pub kernel: String,
    /// 1-minute load average when the benchmark started (others may be compiling).
    pub load_avg_1m: f64,
    /// The build profile of this binary.
    pub profile: &'static str,
}

impl Machine {
    /// Reads /proc.
    pub fn now() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or("unknown".to_owned(), |(_, m)| m.trim().to_owned());
        let memory_mib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024);
        Machine {
            date: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory_mib,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            load_avg_1m: read("/proc/loadavg")
                .split_whitespace()
                .next()
                .and_then(|x| x.parse().ok())
                .unwrap_or(f64::NAN),
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        }
    }

    /// One line for the top of a benchmark's output.
    pub fn line(&self) -> String {
        format!(
            "machine: {} × {}, {} MiB, Linux {}, load {:.2} at start, {} build, {}",
            self.nproc,
            self.cpu_model,
            self.memory_mib,
            self.kernel,
            self.load_avg_1m,
            self.profile,
            self.date
        )
    }
}
