//! CPU time and memory of a process, from /proc.

use std::time::Duration;

/// Clock ticks per second for /proc/<pid>/stat (USER_HZ; 100 on every Linux we run on).
const TICKS: f64 = 100.0;

/// User + system CPU time of `pid` (`"self"` for this process).
pub fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name may hold spaces: fields count from after its closing parenthesis
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) / TICKS))
}

/// CPU time of `pid` in nanosecond resolution: the sum of its live threads'
/// `se.sum_exec_runtime` (/proc/<pid>/task/*/sched, kernels with CONFIG_SCHED_DEBUG).
/// Threads that already exited are not counted: compare with [`cpu_time`].
pub fn cpu_time_precise(pid: &str) -> Option<Duration> {
    let mut ms = 0.0;
    let mut any = false;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(task) = task else { continue };
        let Ok(text) = std::fs::read_to_string(task.path().join("sched")) else {
            continue;
        };
        if let Some(v) = text
            .lines()
            .find_map(|l| l.strip_prefix("se.sum_exec_runtime"))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.trim().parse::<f64>().ok())
        {
            ms += v;
            any = true;
        }
    }
    any.then(|| Duration::from_secs_f64(ms / 1e3))
}

/// Resident set size of `pid` in KiB (VmRSS).
pub fn rss_kib(pid: &str) -> Option<u64> {
    status_field(pid, "VmRSS:")
}

/// What the resident set of `pid` is made of, in KiB: anonymous memory (heap, stacks:
/// the process's own), file-backed pages (mostly the binary's code, shared with every
/// process mapping the same file) and the proportional share (PSS: each shared page
/// divided among the processes mapping it).
pub fn rss_parts_kib(pid: &str) -> Option<(u64, u64, u64)> {
    let anon = status_field(pid, "RssAnon:")?;
    let file = status_field(pid, "RssFile:")?;
    let pss = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((anon, file, pss))
}

/// Peak resident set size of `pid` in KiB (VmHWM).
pub fn peak_rss_kib(pid: &str) -> Option<u64> {
    status_field(pid, "VmHWM:")
}

fn status_field(pid: &str, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Fetches `http://addr/path` with a plain HTTP/1.0 GET (the status endpoints).
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body
        .split_once("\r\n\r\n")
        .map_or(body.clone(), |(_, b)| b.to_owned()))
}

/// The value of a Prometheus sample whose line starts with `prefix` (summed over matches).
pub fn metric(text: &str, prefix: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| l.starts_with(prefix)) {
        if let Some(v) = line
            .rsplit_once(' ')
            .and_then(|(_, v)| v.parse::<f64>().ok())
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}
