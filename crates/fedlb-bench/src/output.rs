//! The JSON result each benchmark writes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use crate::machine::Machine;

/// `$CARGO_TARGET_DIR/bench` or `target/bench`.
pub fn out_dir() -> PathBuf {
    std::env::var_os("FEDLB_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map_or(PathBuf::from("target"), PathBuf::from)
                .join("bench")
        })
}

/// One benchmark's result file.
#[derive(Debug, Serialize)]
pub struct Output {
    /// The benchmark.
    pub name: String,
    /// Smoke mode: the figures only show that it runs.
    pub smoke: bool,
    /// Where it ran.
    pub machine: Machine,
    /// The settings of the run.
    pub params: Value,
    /// The figures, by name.
    pub figures: BTreeMap<String, Value>,
    /// What the reader should know (fallbacks, limits met).
    pub notes: Vec<String>,
}

impl Output {
    /// Starts a result and prints its heading.
    pub fn new(name: &str, smoke: bool, params: Value) -> Output {
        let machine = Machine::now();
        println!(
            "== {name}{}",
            if smoke {
                " (smoke mode: figures are not measurements)"
            } else {
                ""
            }
        );
        println!("{}", machine.line());
        println!("params: {params}");
        Output {
            name: name.to_owned(),
            smoke,
            machine,
            params,
            figures: BTreeMap::new(),
            notes: Vec::new(),
        }
    }

    /// Records a figure.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.figures.insert(key.to_owned(), value.into());
    }

    /// Records and prints a note.
    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        println!("  note: {note}");
        self.notes.push(note);
    }

    /// Writes `<out_dir>/<name>.json`.
    pub fn write(&self) -> anyhow::Result<PathBuf> {
        let dir = out_dir();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.json", self.name));
        std::fs::write(&path, serde_json::to_string_pretty(self)? + "\n")?;
        println!("wrote {}", path.display());
        Ok(path)
    }
}

/// Checks a result file for the smoke test: it parses, names the machine, and holds at
/// least one finite number among its figures. Says nothing about speed.
pub fn check(path: &std::path::Path) -> anyhow::Result<usize> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    anyhow::ensure!(v["machine"]["nproc"].as_u64().is_some(), "no machine");
    fn count(v: &Value) -> usize {
        match v {
            Value::Number(n) => usize::from(n.as_f64().is_some_and(f64::is_finite)),
            Value::Array(a) => a.iter().map(count).sum(),
            Value::Object(o) => o.values().map(count).sum(),
            _ => 0,
        }
    }
    let n = count(&v["figures"]);
    anyhow::ensure!(n > 0, "{}: no numbers among the figures", path.display());
    Ok(n)
}
