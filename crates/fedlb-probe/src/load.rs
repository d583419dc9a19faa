//! Server load for intrusive mode: what the server itself says about its pending requests
//! and connections.

use fedlb_core::Measurement;

use crate::{HttpTarget, LoadSource, ProbeError, Prober, RecordAs, http, procnet};

pub(crate) async fn read(
    prober: &Prober,
    target: &str,
    source: &LoadSource,
) -> Result<Vec<Measurement>, ProbeError> {
    let bad = |reason: String| ProbeError::BadResponse {
        target: target.to_owned(),
        reason,
    };
    match source {
        LoadSource::NginxStubStatus(page) => {
            let text = page_text(prober, target, page).await?;
            let s = parse_stub_status(&text).map_err(bad)?;
            Ok(vec![
                Measurement::Connections(s.active),
                Measurement::Pending(s.reading + s.writing),
            ])
        }
        LoadSource::Prometheus {
            page,
            metric,
            labels,
            record_as,
        } => {
            let text = page_text(prober, target, page).await?;
            let samples = parse_exposition(&text).map_err(bad)?;
            let mut found = false;
            let mut sum = 0.0;
            for s in samples.iter().filter(|s| s.matches(metric, labels)) {
                found = true;
                sum += s.value;
            }
            if !found {
                let wanted: Vec<String> =
                    labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                return Err(bad(format!("no series {metric}{{{}}}", wanted.join(","))));
            }
            if !sum.is_finite() {
                return Err(bad(format!("{metric} is {sum}")));
            }
            let count = || sum.round().max(0.0) as u64;
            Ok(vec![match record_as {
                RecordAs::Pending => Measurement::Pending(count()),
                RecordAs::Connections => Measurement::Connections(count()),
                RecordAs::Metric(name) => Measurement::Metric(name.clone(), sum),
            }])
        }
        LoadSource::ProcNetTcp { port } => {
            let port = *port;
            let n = tokio::task::spawn_blocking(move || procnet::count_established(port))
                .await
                .map_err(|e| ProbeError::Io {
                    target: target.to_owned(),
                    source: std::io::Error::other(e),
                })?
                .map_err(|e| ProbeError::Io {
                    target: target.to_owned(),
                    source: e,
                })?;
            Ok(vec![Measurement::Connections(n)])
        }
    }
}

/// A load page's text; anything but 2xx is an error.
async fn page_text(prober: &Prober, target: &str, page: &HttpTarget) -> Result<String, ProbeError> {
    let fetched = http::fetch(prober, target, page).await?;
    if !(200..300).contains(&fetched.status) {
        return Err(ProbeError::Status {
            target: target.to_owned(),
            status: fetched.status,
            expected: "200-299".to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&fetched.body).into_owned())
}

/// The counters of an nginx `stub_status` page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StubStatus {
    /// Open client connections, idle ones included.
    pub active: u64,
    /// Connections accepted since start.
    pub accepts: u64,
    /// Connections handled since start.
    pub handled: u64,
    /// Requests since start.
    pub requests: u64,
    /// Connections whose request header is being read.
    pub reading: u64,
    /// Connections whose response is being written (requests in progress).
    pub writing: u64,
    /// Idle keep-alive connections.
    pub waiting: u64,
}

/// Parses a `stub_status` page:
///
/// ```text
/// Active connections: 291
/// server accepts handled requests
///  16630948 16630948 31070465
/// Reading: 6 Writing: 179 Waiting: 106
/// ```
pub fn parse_stub_status(text: &str) -> Result<StubStatus, String> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let not_stub = || format!("not an nginx stub_status page: {:?}", snippet(text));
    let active = lines
        .next()
        .and_then(|l| l.strip_prefix("Active connections:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(not_stub)?;
    if lines.next() != Some("server accepts handled requests") {
        return Err(not_stub());
    }
    let totals: Vec<u64> = lines
        .next()
        .map(|l| {
            l.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let [accepts, handled, requests] = totals[..] else {
        return Err(not_stub());
    };
    let states: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    let [
        "Reading:",
        reading,
        "Writing:",
        writing,
        "Waiting:",
        waiting,
    ] = states[..]
    else {
        return Err(not_stub());
    };
    let n = |s: &str| s.parse::<u64>().map_err(|_| not_stub());
    Ok(StubStatus {
        active,
        accepts,
        handled,
        requests,
        reading: n(reading)?,
        writing: n(writing)?,
        waiting: n(waiting)?,
    })
}

/// One series of a Prometheus text exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct PromSample {
    /// Metric name.
    pub name: String,
    /// Labels, in page order.
    pub labels: Vec<(String, String)>,
    /// Value.
    pub value: f64,
}

impl PromSample {
    /// Whether the series has this name and carries all these labels.
    pub fn matches(&self, name: &str, labels: &[(String, String)]) -> bool {
        self.name == name && labels.iter().all(|want| self.labels.contains(want))
    }
}

/// Parses the Prometheus text exposition format (and OpenMetrics text: `# EOF` and
/// exemplars are ignored). Comments, `HELP` and `TYPE` lines are skipped; a malformed
/// sample line is an error naming its line number.
pub fn parse_exposition(text: &str) -> Result<Vec<PromSample>, String> {
    let mut samples = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let sample = parse_sample(line).ok_or_else(|| {
            format!(
                "line {}: not a prometheus sample: {:?}",
                i + 1,
                snippet(line)
            )
        })?;
        samples.push(sample);
    }
    Ok(samples)
}

fn parse_sample(line: &str) -> Option<PromSample> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(after)?;
        labels = parsed;
        rest = after;
    }
    // Value, then an optional timestamp, then an optional OpenMetrics exemplar.
    let rest = rest.split('#').next()?;
    let mut fields = rest.split_whitespace();
    let value = parse_value(fields.next()?)?;
    if fields.next().is_some_and(|ts| ts.parse::<f64>().is_err()) {
        return None;
    }
    Some(PromSample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Labels up to the closing `}`; returns them and the text after it.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after) = s.split_once('=')?;
        let key = key.trim();
        if key.is_empty() {
            return None;
        }
        let body = after.trim_start().strip_prefix('"')?;
        let mut chars = body.char_indices();
        let mut value = String::new();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        };
        labels.push((key.to_owned(), value));
        s = body[end + 1..].trim_start();
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        }
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

fn snippet(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STUB: &str = "Active connections: 291 \nserver accepts handled requests\n 16630948 16630948 31070465 \nReading: 6 Writing: 179 Waiting: 106 \n";

    #[test]
    fn stub_status_parses() {
        let s = parse_stub_status(STUB).unwrap();
        assert_eq!(
            s,
            StubStatus {
                active: 291,
                accepts: 16630948,
                handled: 16630948,
                requests: 31070465,
                reading: 6,
                writing: 179,
                waiting: 106,
            }
        );
        let e = parse_stub_status("<html>hello</html>").unwrap_err();
        assert_eq!(e, "not an nginx stub_status page: \"<html>hello</html>\"");
    }

    #[test]
    fn exposition_parses_labels_escapes_and_specials() {
        let text = r#"# HELP http_in_flight Requests in flight.
# TYPE http_in_flight gauge
http_in_flight{handler="api",path="/a\"b\\c"} 3
http_in_flight{handler="static",} 4 1700000000000
up 1
temp_c -1.5e1
weird{a="x,y}z"} NaN
big +Inf # {trace_id="abc"} 1
# EOF
"#;
        let s = parse_exposition(text).unwrap();
        assert_eq!(s.len(), 6);
        assert_eq!(s[0].name, "http_in_flight");
        assert_eq!(
            s[0].labels,
            vec![
                ("handler".to_owned(), "api".to_owned()),
                ("path".to_owned(), "/a\"b\\c".to_owned())
            ]
        );
        assert_eq!(s[0].value, 3.0);
        assert_eq!(s[1].value, 4.0);
        assert_eq!(s[3].value, -15.0);
        assert_eq!(s[4].labels[0].1, "x,y}z");
        assert!(s[4].value.is_nan());
        assert_eq!(s[5].value, f64::INFINITY);
        let api = [("handler".to_owned(), "api".to_owned())];
        assert!(s[0].matches("http_in_flight", &api));
        assert!(!s[1].matches("http_in_flight", &api));
        assert!(s[1].matches("http_in_flight", &[]));
    }

    #[test]
    fn exposition_rejects_garbage_with_its_line() {
        let e = parse_exposition("up 1\n<html>\n").unwrap_err();
        assert_eq!(e, "line 2: not a prometheus sample: \"<html>\"");
        assert!(parse_exposition("x{a=\"unterminated} 1").is_err());
        assert!(parse_exposition("x 1 notatimestamp").is_err());
    }
}
