//! The node's log filter. Nothing a remote party sends may produce a log line per packet or
//! per query at the levels an operator runs with: hickory's server logs every query at info,
//! and (built with DNSSEC support, which TSIG needs) a warning for every positive answer
//! from an unsigned zone ("unexpected lookup skip"), so anyone who can query the embedded
//! server could otherwise fill the disk.

use tracing_subscriber::EnvFilter;

/// What runs when `RUST_LOG` is not set.
pub const DEFAULT: &str = "info";

/// Added to every filter unless it names the crate itself: hickory's server logs per query
/// below `error`.
const QUIET: &[&str] = &["hickory_server=error", "quinn=warn", "quinn_proto=warn"];

/// The filter for `rust_log` (the value of `RUST_LOG`, if set): the operator's directives,
/// plus the quiet defaults for the crates they do not name.
pub fn filter(rust_log: Option<&str>) -> EnvFilter {
    let mut directives: Vec<String> = match rust_log.map(str::trim) {
        Some(s) if !s.is_empty() => vec![s.to_owned()],
        _ => vec![DEFAULT.to_owned()],
    };
    let given = directives[0].clone();
    for quiet in QUIET {
        let target = quiet.split('=').next().unwrap_or(quiet);
        let named = given
            .split(',')
            .any(|d| d.trim().split(['=', '[']).next() == Some(target));
        if !named {
            directives.push((*quiet).to_owned());
        }
    }
    EnvFilter::try_new(directives.join(",")).unwrap_or_else(|e| {
        eprintln!("warning: RUST_LOG {given:?} is not a valid filter ({e}); using {DEFAULT:?}");
        EnvFilter::new(format!("{DEFAULT},{}", QUIET.join(",")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item1_hickory_server_is_quiet_unless_named() {
        let f = filter(None).to_string();
        assert!(f.contains("hickory_server=error"), "{f}");
        let f = filter(Some("debug")).to_string();
        assert!(f.contains("hickory_server=error"), "{f}");
        let f = filter(Some("info,hickory_server=debug")).to_string();
        assert!(!f.contains("hickory_server=error"), "{f}");
        assert!(f.contains("hickory_server=debug"), "{f}");
    }
}
