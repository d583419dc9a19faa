//! How long each change took, from the fault to the DNS answer change: printed as
//! `timing: <scenario>: <ms> ms` and appended as a JSON line to
//! `<target>/integration-timings.jsonl` for the benchmarks.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `<target>/integration-timings.jsonl`, next to the profile directory the test runs from.
fn timings_file() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // <target>/<profile>/deps/<test binary>
    let target = exe.parent()?.parent()?.parent()?;
    Some(target.join("integration-timings.jsonl"))
}

/// Records that `what` (in scenario `scenario`) took `took`, against `dns` (`embedded`,
/// `bind`, …).
pub fn record_timing(scenario: &str, what: &str, dns: &str, took: Duration) {
    let ms = took.as_secs_f64() * 1e3;
    // straight to the process's stderr, past the test harness's capture: always shown
    let _ = writeln!(std::io::stderr(), "timing: {scenario}/{what}: {ms:.0} ms");
    let line = serde_json::json!({
        "scenario": scenario,
        "what": what,
        "dns": dns,
        "ms": (ms * 10.0).round() / 10.0,
        "unix_time": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    });
    if let Some(path) = timings_file()
        && let Ok(mut f) = crate::fed::append(&path)
    {
        let _ = writeln!(f, "{line}");
    }
}
