//! Values: names, addresses, durations, ranges, locations, domains, file paths.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::duration::{parse_duration, seconds_to_duration};
use crate::model::{Heartbeat, Location};
use crate::schema::{RawDuration, RawHeartbeat, RawLocation};

use super::Ctx;

impl Ctx<'_> {
    pub(super) fn name(&mut self, path: &str, name: &str) -> bool {
        let ok = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !ok {
            self.err(
                path,
                format!("invalid name \"{name}\": use 1 to 63 lowercase letters, digits and '-' (not first or last)"),
            );
        }
        ok
    }

    pub(super) fn socket(&mut self, path: &str, s: &str) -> Option<SocketAddr> {
        match s.trim().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                let hint = if s.parse::<IpAddr>().is_ok() {
                    " (missing port)"
                } else if s.contains("::") && !s.starts_with('[') {
                    " (write IPv6 as \"[::1]:7400\")"
                } else {
                    " (expected ip:port; host names are not resolved)"
                };
                self.err(path, format!("invalid socket address \"{s}\"{hint}"));
                None
            }
        }
    }

    pub(super) fn ip(&mut self, path: &str, s: &str) -> Option<IpAddr> {
        match s.trim().parse::<IpAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(path, format!("invalid ip address \"{s}\""));
                None
            }
        }
    }

    pub(super) fn duration(&mut self, path: &str, d: &RawDuration) -> Option<Duration> {
        let parsed = match d {
            RawDuration::Text(s) => parse_duration(s),
            RawDuration::Seconds(s) => seconds_to_duration(*s),
        };
        match parsed {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(path, format!("invalid duration {d}: {e}"));
                None
            }
        }
    }

    pub(super) fn positive_duration(&mut self, path: &str, d: &RawDuration) -> Option<Duration> {
        let v = self.duration(path, d)?;
        if v.is_zero() {
            self.err(path, "must be longer than zero");
            return None;
        }
        Some(v)
    }

    pub(super) fn int(&mut self, path: &str, v: i64, lo: i64, hi: i64) -> Option<i64> {
        if (lo..=hi).contains(&v) {
            Some(v)
        } else {
            self.err(path, format!("{v} is out of range {lo}..={hi}"));
            None
        }
    }

    pub(super) fn port(&mut self, path: &str, v: i64) -> Option<u16> {
        self.int(path, v, 1, 65535).map(|v| v as u16)
    }

    pub(super) fn location(&mut self, path: &str, l: RawLocation) -> Option<Location> {
        let location = Location {
            lat: l.lat,
            lon: l.lon,
        };
        let problems = location.problems();
        let ok = problems.is_empty();
        for (field, message) in problems {
            self.err(format!("{path}.{field}"), message);
        }
        ok.then_some(location)
    }

    pub(super) fn distance_ms(&mut self, path: &str, v: Option<f64>) -> Option<f64> {
        let v = v?;
        if v.is_finite() && v >= 0.0 {
            Some(v)
        } else {
            self.err(path, format!("distance {v} ms must be a number ≥ 0"));
            None
        }
    }

    pub(super) fn domain(&mut self, path: &str, s: &str) -> Option<String> {
        let lower = s.trim().to_ascii_lowercase();
        let body = lower.strip_suffix('.').unwrap_or(&lower);
        let ok = !body.is_empty()
            && body.len() <= 253
            && body.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if ok {
            Some(format!("{body}."))
        } else {
            self.err(path, format!("invalid domain name \"{s}\""));
            None
        }
    }

    pub(super) fn file_path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        match self.opts.base_dir {
            Some(base) if p.is_relative() => base.join(p),
            _ => p.to_owned(),
        }
    }

    pub(super) fn heartbeat(
        &mut self,
        path: &str,
        raw: Option<&RawHeartbeat>,
        base: Heartbeat,
    ) -> Heartbeat {
        let Some(raw) = raw else { return base };
        let mut hb = base;
        if let Some(d) = &raw.interval
            && let Some(d) = self.positive_duration(&format!("{path}.interval"), d)
        {
            hb.interval = d;
        }
        if let Some(m) = raw.missed
            && let Some(m) = self.int(&format!("{path}.missed"), m, 1, 1000)
        {
            hb.missed = m as u32;
        }
        hb
    }
}
