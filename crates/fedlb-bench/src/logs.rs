//! The nodes' JSON log lines (`fedlb --log-json`), collected from their stderr with the
//! time each line's event happened (its own timestamp) and the time it reached us.

use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One log line.
#[derive(Clone, Debug)]
pub struct Line {
    /// Which process wrote it (the world's name for it).
    pub source: String,
    /// The event's wall-clock time, seconds since the epoch, from the line's timestamp.
    pub ts: f64,
    /// When the line reached the benchmark.
    pub seen: Instant,
    /// `fields.message`.
    pub message: String,
    /// Every field of the event.
    pub fields: Value,
}

impl Line {
    /// A field as a string (strings unquoted, anything else as JSON).
    pub fn field(&self, name: &str) -> String {
        match &self.fields[name] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            v => v.to_string(),
        }
    }
}

#[derive(Default)]
struct Inner {
    lines: Vec<Line>,
}

/// Every line of every process of one world.
#[derive(Clone, Default)]
pub struct LogBook {
    inner: Arc<(Mutex<Inner>, Condvar)>,
}

/// Seconds since the epoch of an RFC 3339 timestamp.
pub fn parse_ts(s: &str) -> Option<f64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Some(t.unix_timestamp_nanos() as f64 / 1e9)
}

/// Now, as seconds since the epoch.
pub fn wall_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl LogBook {
    /// Reads `pipe` line by line on a thread of its own, tagging lines with `source`.
    /// With `keep` false only lines whose message passes it are kept (big fleets log a
    /// line per connection).
    pub fn follow(
        &self,
        source: &str,
        pipe: impl Read + Send + 'static,
        keep: fn(&str) -> bool,
        echo: bool,
    ) {
        let book = self.clone();
        let source = source.to_owned();
        std::thread::spawn(move || {
            for raw in BufReader::new(pipe).lines().map_while(Result::ok) {
                let seen = Instant::now();
                if echo {
                    eprintln!("[{source}] {raw}");
                }
                let Ok(v) = serde_json::from_str::<Value>(&raw) else {
                    continue;
                };
                let message = v["fields"]["message"].as_str().unwrap_or("").to_owned();
                if !keep(&message) {
                    continue;
                }
                let ts = v["timestamp"]
                    .as_str()
                    .and_then(parse_ts)
                    .unwrap_or(f64::NAN);
                let line = Line {
                    source: source.clone(),
                    ts,
                    seen,
                    message,
                    fields: v["fields"].clone(),
                };
                let (m, cv) = &*book.inner;
                m.lock().expect("log book").lines.push(line);
                cv.notify_all();
            }
        });
    }

    /// How many lines so far (a cursor for [`LogBook::since`]).
    pub fn len(&self) -> usize {
        self.inner.0.lock().expect("log book").lines.len()
    }

    /// Whether no line arrived yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lines from cursor `from` on.
    pub fn since(&self, from: usize) -> Vec<Line> {
        let g = self.inner.0.lock().expect("log book");
        g.lines[from.min(g.lines.len())..].to_vec()
    }

    /// Waits until a line from cursor `from` on satisfies `pred`; returns it.
    pub fn wait_for(
        &self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&Line) -> bool,
    ) -> Option<Line> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.inner;
        let mut g = m.lock().expect("log book");
        let mut checked = from;
        loop {
            if let Some(l) = g.lines.iter().skip(checked).find(|l| pred(l)) {
                return Some(l.clone());
            }
            checked = g.lines.len().max(from);
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            g = cv.wait_timeout(g, deadline - now).expect("log book").0;
        }
    }

    /// Counts lines from cursor `from` on that satisfy `pred`.
    pub fn count(&self, from: usize, pred: impl Fn(&Line) -> bool) -> usize {
        let g = self.inner.0.lock().expect("log book");
        g.lines.iter().skip(from).filter(|l| pred(l)).count()
    }
}

/// Keeps every line.
pub fn keep_all(_: &str) -> bool {
    true
}
