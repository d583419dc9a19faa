//! fedlb topology files: the schema every node reads, loading it (TOML, YAML or JSON,
//! layered with `FEDLB__…` environment overrides through the `config` crate), and
//! validation that reports every problem with its file and field path
//! (`farms[1].servers[0].address`). The result is a typed [`Topology`] from which each role
//! takes its part as `fedlb-core` configs ([`Topology::farm_config`],
//! [`Topology::global_config`], [`Topology::monitor_configs`]).
//!
//! This crate reads files and nothing else: the topology file, the TSIG key file it names.
//! It never opens a socket, never resolves a host name, never reads a clock and never
//! writes. The schema reference is in [`schema`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod describe;
pub mod duration;
mod model;
pub mod policy;
pub mod schema;
mod source;
mod tsig;
mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

pub use model::{
    Attachment, CommandOutput, Continent, DnsServer, DnsTarget, Farm, FileOutput, GlobalNode,
    Heartbeat, HttpCheck, LoadSource, Location, Mode, NodeInfo, Probe, ProbeKind, RecordAs, Region,
    Role, Server, Service, Topology, Zone, in_zone,
};
pub use source::{MAX_DEPTH, MAX_FILE_BYTES, MAX_YAML_ALIAS_BYTES, MAX_YAML_ALIAS_NODES};
pub use tsig::{TsigAlgorithm, TsigKey, TsigKeyError};
pub use validate::{
    DEFAULT_CAPACITY, DEFAULT_HOPS_INTERVAL, DEFAULT_INTERVAL, DEFAULT_TIMEOUT, DEFAULT_TTL,
};

/// The environment prefix: `FEDLB__DNS__TTL=30` overrides `dns.ttl`.
pub const ENV_PREFIX: &str = "FEDLB__";

/// One problem (error or warning) in a topology: where, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The topology file (or the origin given to [`load_str`]).
    pub file: String,
    /// The field path, as `farms[1].servers[0].address`; empty for the whole file.
    pub path: String,
    /// What is wrong, lowercase, naming the object and the value.
    pub message: String,
}

impl Problem {
    pub(crate) fn new(file: &str, path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            file: file.to_owned(),
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.path, self.message)
        }
    }
}

/// Why a topology could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// The file.
        file: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("{file}: the file is {size} bytes, above the limit of {limit} bytes for a topology")]
    TooLarge {
        /// The file.
        file: String,
        /// Its size in bytes (at least: reading stops past the limit).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The file type is not known from its extension.
    #[error("{file}: unknown file type (expected .toml, .yaml, .yml or .json)")]
    UnknownFormat {
        /// The file.
        file: String,
    },
    /// The file is not well-formed (a syntax error, nesting too deep, a YAML alias bomb):
    /// nothing past this problem is known.
    #[error("{0}")]
    Parse(Problem),
    /// The file is well-formed but wrong: every problem found (unknown fields, values of
    /// the wrong type, invalid values), each with its path.
    #[error("{}", join_lines(.0))]
    Invalid(Vec<Problem>),
}

impl LoadError {
    /// The problems, for printing one per line (`error: <file>: <path>: <what>`).
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            LoadError::Parse(p) => vec![p.clone()],
            LoadError::Invalid(ps) => ps.clone(),
            LoadError::Io { file, source } => {
                vec![Problem::new(file, "", format!("cannot read: {source}"))]
            }
            LoadError::TooLarge { file, size, limit } => vec![Problem::new(
                file,
                "",
                format!(
                    "the file is {size} bytes, above the limit of {limit} bytes for a topology"
                ),
            )],
            LoadError::UnknownFormat { file } => vec![Problem::new(
                file,
                "",
                "unknown file type (expected .toml, .yaml, .yml or .json)",
            )],
        }
    }
}

fn join_lines(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A loaded, valid topology and the warnings it raised.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The topology.
    pub topology: Topology,
    /// Suspicious but valid settings (`fedlb check` prints them; `--deny-warnings` fails).
    pub warnings: Vec<Problem>,
}

/// The syntax of a topology file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// TOML (the reference syntax).
    Toml,
    /// YAML.
    Yaml,
    /// JSON.
    Json,
}

impl Format {
    /// The format a file name implies (`.toml`, `.yaml`/`.yml`, `.json`).
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "toml" => Some(Format::Toml),
            "yaml" | "yml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// Loads a topology with options; [`load`] is the usual shortcut.
#[derive(Clone)]
pub struct Loader {
    env: Option<Vec<(String, String)>>,
    read_key_files: bool,
}

impl fmt::Debug for Loader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // variable names only: a value may be a secret (FEDLB__DNS__TSIG__SECRET)
        f.debug_struct("Loader")
            .field(
                "env",
                &self
                    .env
                    .as_ref()
                    .map(|v| v.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>()),
            )
            .field("read_key_files", &self.read_key_files)
            .finish()
    }
}

impl Default for Loader {
    fn default() -> Self {
        Loader::new()
    }
}

impl Loader {
    /// Reads the process environment for overrides and reads key files.
    pub fn new() -> Self {
        Loader {
            env: None,
            read_key_files: true,
        }
    }

    /// Takes overrides from these variables instead of the process environment (tests;
    /// an empty iterator disables overrides). Only `FEDLB__…` names are used.
    pub fn env<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.env = Some(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// Whether to read the TSIG key file (default yes). Nodes that do not publish (farm
    /// nodes, agents) may skip it so that the secret lives on the global node only; the
    /// topology then has `dns.tsig == None` and `dns.tsig_file` set.
    pub fn read_key_files(mut self, yes: bool) -> Self {
        self.read_key_files = yes;
        self
    }

    /// Reads, layers, deserializes and validates the file at `path`. Relative paths in it
    /// are relative to its directory.
    pub fn load(&self, path: &Path) -> Result<Loaded, LoadError> {
        let file = path.display().to_string();
        let format = Format::from_path(path)
            .ok_or_else(|| LoadError::UnknownFormat { file: file.clone() })?;
        let text = source::read_capped(path).map_err(|e| match e {
            source::ReadError::Io(source) => LoadError::Io {
                file: file.clone(),
                source,
            },
            source::ReadError::TooLarge(size) => LoadError::TooLarge {
                file: file.clone(),
                size,
                limit: MAX_FILE_BYTES,
            },
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        self.load_text(&text, format, &file, Some(base))
    }

    /// Like [`Loader::load`] for text already in memory; `origin` names it in messages and
    /// relative paths are relative to the current directory.
    pub fn load_str(&self, text: &str, format: Format, origin: &str) -> Result<Loaded, LoadError> {
        self.load_text(text, format, origin, None)
    }

    fn load_text(
        &self,
        text: &str,
        format: Format,
        file: &str,
        base_dir: Option<&Path>,
    ) -> Result<Loaded, LoadError> {
        let env = self.overrides();
        // which paths the environment set, so that problems there name the variable
        let env_paths: BTreeMap<String, String> = env
            .iter()
            .map(|(key, (var, _))| (key.to_ascii_lowercase().replace("__", "."), var.clone()))
            .collect();
        let within = |inner: &str, outer: &str| {
            inner == outer
                || inner.starts_with(&format!("{outer}."))
                || inner.starts_with(&format!("{outer}["))
        };
        let annotate = |mut p: Problem| {
            let hit = env_paths.iter().find(|(path, _)| {
                !p.path.is_empty() && (within(&p.path, path) || within(path, &p.path))
            });
            if let Some((_, var)) = hit {
                p.message
                    .push_str(&format!(" (set by environment variable {var})"));
            }
            p
        };
        let parse_error = |path: String, message: String| {
            LoadError::Parse(annotate(Problem::new(file, path, message)))
        };
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(LoadError::TooLarge {
                file: file.to_owned(),
                size: text.len() as u64,
                limit: MAX_FILE_BYTES,
            });
        }
        let parsed = source::parse(text, format).map_err(|(p, m)| parse_error(p, m))?;

        // every problem found before validation, in order, with the paths it covers
        let mut early = EarlyProblems::default();
        for (path, message) in parsed.problems {
            early.replaced(path, message);
        }
        // a variable may change an array entry, never add one: `config` would pad the
        // array with empty entries up to the index, reported as "invalid type: null"
        let mut env = env;
        env.retain(|key, _| {
            let path = key.to_ascii_lowercase().replace("__", ".");
            match index_out_of_range(&parsed.table, &path) {
                None => true,
                Some((array_path, len)) => {
                    let entries = match len {
                        0 => "none".to_owned(),
                        1 => format!("1 ({array_path}[0])"),
                        n => format!("{n} ({array_path}[0] to {array_path}[{}])", n - 1),
                    };
                    early.flag(
                        path.split_once(']').map_or(path.clone(), |(head, _)| format!("{head}]")),
                        format!(
                            "no such entry: the file has {entries}; an environment variable can change an entry, not add one"
                        ),
                    );
                    false
                }
            }
        });

        let mut source = config::Environment::with_prefix("FEDLB")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .with_list_parse_key("dns.servers");
        // the lists of each region in the file (`FEDLB__REGIONS__0__CLIENTS=10.0.0.0/8,…`)
        let regions = match parsed.table.get("regions").map(|v| &v.kind) {
            Some(config::ValueKind::Array(a)) => a.len(),
            _ => 0,
        };
        for i in 0..regions {
            for list in [
                "clients",
                "geoip.countries",
                "geoip.continents",
                "dns.servers",
            ] {
                source = source.with_list_parse_key(&format!("regions[{i}].{list}"));
            }
        }
        let source = source.source(Some(
            env.into_iter()
                .map(|(key, (_, value))| (format!("{ENV_PREFIX}{key}"), value))
                .collect(),
        ));
        let layered = config::Config::builder()
            .add_source(FileTree(parsed.table))
            .add_source(source)
            .build()
            .map_err(|e| parse_error(String::new(), e.to_string()))?;
        let table = config::Source::collect(&layered)
            .map_err(|e| parse_error(String::new(), e.to_string()))?;
        let mut value = serde_json::Value::Object(
            table
                .into_iter()
                .filter_map(|(k, v)| to_json(v, &k, &mut early).map(|v| (k, v)))
                .collect(),
        );

        // Deserialize; on an error, note it, take the value out and go on, so that one
        // unknown field or wrong type does not hide the other problems of the file.
        let mut raw = None;
        for _ in 0..10_000 {
            match serde_path_to_error::deserialize::<_, schema::RawTopology>(&value) {
                Ok(r) => {
                    raw = Some(r);
                    break;
                }
                Err(e) => {
                    let segments: Vec<serde_path_to_error::Segment> =
                        e.path().iter().cloned().collect();
                    let path = e.path().to_string();
                    let path = if path == "." { String::new() } else { path };
                    let message = e.into_inner().to_string();
                    if let Some(field) = missing_field(&message)
                        && early.removed(&source::join(&path, field))
                    {
                        // the field is missing because its bad value was taken out
                        break;
                    }
                    let removable = remove(&mut value, &segments);
                    early.flag(path, message);
                    if !removable {
                        break;
                    }
                }
            }
        }
        let errors = early.into_problems(file);
        let Some(raw) = raw else {
            return Err(LoadError::Invalid(
                errors.problems.into_iter().map(annotate).collect(),
            ));
        };
        let opts = validate::Options {
            file,
            base_dir,
            read_key_files: self.read_key_files,
        };
        match validate::validate(raw, &opts) {
            Ok((_, _)) if !errors.problems.is_empty() => Err(LoadError::Invalid(
                errors.problems.into_iter().map(annotate).collect(),
            )),
            Ok((topology, warnings)) => Ok(Loaded {
                topology,
                warnings: warnings.into_iter().map(annotate).collect(),
            }),
            Err(more) => {
                let mut all = errors.problems.clone();
                // a value taken out above would only be reported again, as missing
                all.extend(more.into_iter().filter(|p| !errors.covers(&p.path)));
                Err(LoadError::Invalid(all.into_iter().map(annotate).collect()))
            }
        }
    }

    /// The `FEDLB__…` variables to apply, by key (`FARMS[0]__LISTEN`) → (variable, value).
    /// Names must be `FEDLB__A__B…` with non-empty parts of letters, digits and `_`, so a
    /// stray `FEDLB_X` or `FEDLB__` cannot break start-up. A part that is a number indexes
    /// an array: `FEDLB__FARMS__0__LISTEN` sets `farms[0].listen`.
    fn overrides(&self) -> BTreeMap<String, (String, String)> {
        let vars: Vec<(String, String)> = match &self.env {
            Some(v) => v.clone(),
            None => std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        };
        vars.into_iter()
            .filter(|(k, _)| {
                k.len() > ENV_PREFIX.len()
                    && k[..ENV_PREFIX.len()].eq_ignore_ascii_case(ENV_PREFIX)
                    && k[ENV_PREFIX.len()..].split("__").all(|part| {
                        !part.is_empty()
                            && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    })
                    && !k[ENV_PREFIX.len()..].starts_with(|c: char| c.is_ascii_digit())
            })
            .map(|(var, value)| {
                let mut key = String::new();
                for part in var[ENV_PREFIX.len()..].split("__") {
                    if part.bytes().all(|b| b.is_ascii_digit()) {
                        key.push_str(&format!("[{part}]"));
                    } else {
                        if !key.is_empty() {
                            key.push_str("__");
                        }
                        key.push_str(part);
                    }
                }
                (key, (var, value))
            })
            .collect()
    }
}

/// Problems found before validation, and the paths whose values were taken out.
#[derive(Default)]
struct EarlyProblems {
    found: Vec<(String, String)>,
    /// values taken out
    paths: BTreeSet<String>,
    /// values replaced by a stand-in of their type
    replaced: BTreeSet<String>,
}

/// [`EarlyProblems`] named after their file.
struct Early {
    problems: Vec<Problem>,
    paths: BTreeSet<String>,
    replaced: BTreeSet<String>,
}

impl EarlyProblems {
    /// Notes a problem whose value is taken out (one problem per path: what follows from
    /// taking it out is not reported again).
    fn flag(&mut self, path: String, message: String) {
        if self.paths.insert(path.clone()) && !self.replaced.contains(&path) {
            let message = redact(&path, &message);
            self.found.push((path, message));
        }
    }

    /// Notes a problem whose value was replaced by a stand-in of its type.
    fn replaced(&mut self, path: String, message: String) {
        if self.replaced.insert(path.clone()) && !self.paths.contains(&path) {
            let message = redact(&path, &message);
            self.found.push((path, message));
        }
    }

    fn removed(&self, path: &str) -> bool {
        self.paths.contains(path)
    }

    fn into_problems(self, file: &str) -> Early {
        Early {
            problems: self
                .found
                .into_iter()
                .map(|(path, message)| Problem::new(file, path, message))
                .collect(),
            paths: self.paths,
            replaced: self.replaced,
        }
    }
}

impl Early {
    /// Whether a validation problem at `path` only follows from a value taken out: at
    /// the path itself, inside it, or its parent (`server needs an address` once the
    /// misspelt `adress` is gone).
    fn covers(&self, path: &str) -> bool {
        let inside = |r: &String| {
            r == path || path.starts_with(&format!("{r}.")) || path.starts_with(&format!("{r}["))
        };
        self.replaced.iter().any(inside)
            || self.paths.iter().any(|r| {
                r == path
                    || r.starts_with(&format!("{path}."))
                        && !r[path.len() + 1..].contains(['.', '['])
                    || r.starts_with(&format!("{path}["))
                        && !r[path.len()..].contains('.')
                        && r.ends_with(']')
                        && r[path.len()..].matches('[').count() == 1
                    || path.starts_with(&format!("{r}."))
                    || path.starts_with(&format!("{r}["))
            })
    }
}

/// Whether a field holds a secret: anything under a `tsig` table, or a field named like
/// a secret. Its value is never shown.
fn is_secret_path(path: &str) -> bool {
    path.split(['.', '['])
        .map(|s| s.trim_end_matches(']'))
        .any(|s| {
            s == "tsig" || s.contains("secret") || s.contains("password") || s.contains("token")
        })
}

/// The message without the value it quotes, for a field that holds a secret: serde quotes
/// the value (`invalid type: string "c2VjcmV0", expected …`).
fn redact(path: &str, message: &str) -> String {
    let message = tidy(message);
    if !is_secret_path(path) {
        return message;
    }
    for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            // the expectation comes last and is ours; the value may contain anything
            let (shown, expected) = match rest.rfind(", expected ") {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            let kind = shown
                .split(['"', '`', '\''])
                .next()
                .unwrap_or_default()
                .trim();
            return format!("{prefix}{kind} (not shown: this field holds a secret){expected}");
        }
    }
    if message.starts_with("unknown field `")
        || message.starts_with("missing field `")
        || message.starts_with("duplicate field `")
    {
        return message;
    }
    "invalid value (not shown: this field holds a secret)".to_owned()
}

/// serde's type names are ours, not the operator's: "expected struct RawTsig" → "a table".
fn tidy(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("struct Raw") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "struct Raw".len()..];
        let end = after
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(after.len());
        out.push_str("a table");
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The field a "missing field `x`" message names.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// Takes the value at `segments` out of the tree (a map entry); false when it cannot be
/// taken out without changing other paths (an array element) or the path is not found.
fn remove(value: &mut serde_json::Value, segments: &[serde_path_to_error::Segment]) -> bool {
    use serde_path_to_error::Segment;
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut at = value;
    for s in parents {
        at = match (s, at) {
            (Segment::Map { key }, serde_json::Value::Object(m)) => match m.get_mut(key) {
                Some(v) => v,
                None => return false,
            },
            (Segment::Seq { index }, serde_json::Value::Array(a)) => match a.get_mut(*index) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, at) {
        (Segment::Map { key }, serde_json::Value::Object(m)) => m.remove(key).is_some(),
        _ => false,
    }
}

/// Whether `path` (`farms[9].listen`) indexes past the end of an array of the file: the
/// array's path and length.
fn index_out_of_range(
    table: &config::Map<String, config::Value>,
    path: &str,
) -> Option<(String, usize)> {
    let mut at: Option<&config::Value> = None;
    let mut walked = String::new();
    for part in path.split('.') {
        let (key, indexes) = part.split_once('[').map_or((part, ""), |(k, i)| (k, i));
        at = match at {
            None => table.get(key),
            Some(config::Value {
                kind: config::ValueKind::Table(t),
                ..
            }) => t.get(key),
            Some(_) => None,
        };
        walked = source::join(&walked, key);
        for index in indexes.split('[').filter(|i| !i.is_empty()) {
            let index: usize = index.trim_end_matches(']').parse().ok()?;
            let list = match at {
                Some(config::Value {
                    kind: config::ValueKind::Array(a),
                    ..
                }) => a.as_slice(),
                None => &[],
                Some(_) => return None,
            };
            if index >= list.len() {
                return Some((walked, list.len()));
            }
            walked = format!("{walked}[{index}]");
            at = list.get(index);
        }
        at?;
    }
    None
}

/// The layered tree as JSON for deserialization, refusing the values JSON cannot hold:
/// `nan` and `inf` (serde_json would turn them into null, and the field would silently
/// take its default) and integers beyond 64 bits.
fn to_json(v: config::Value, path: &str, early: &mut EarlyProblems) -> Option<serde_json::Value> {
    use config::ValueKind as K;
    use serde_json::Value as J;
    Some(match v.kind {
        K::Nil => J::Null,
        K::Boolean(b) => J::Bool(b),
        K::I64(i) => J::from(i),
        K::U64(u) => J::from(u),
        K::I128(i) => match i64::try_from(i) {
            Ok(i) => J::from(i),
            Err(_) => {
                early.replaced(
                    path.to_owned(),
                    format!("integer {i} is too large (the limit is {})", i64::MAX),
                );
                J::from(i64::MAX)
            }
        },
        K::U128(u) => match u64::try_from(u) {
            Ok(u) => J::from(u),
            Err(_) => {
                early.replaced(
                    path.to_owned(),
                    format!("integer {u} is too large (the limit is {})", i64::MAX),
                );
                J::from(i64::MAX)
            }
        },
        K::Float(f) => match serde_json::Number::from_f64(f) {
            Some(n) => J::Number(n),
            None => {
                let shown = if f.is_nan() {
                    "nan"
                } else if f > 0.0 {
                    "inf"
                } else {
                    "-inf"
                };
                early.replaced(
                    path.to_owned(),
                    format!("{shown} is not a number: give a finite value"),
                );
                // a stand-in of the right type, so the rest is still checked
                J::from(0.0)
            }
        },
        K::String(s) => J::String(s),
        K::Array(a) => J::Array(
            a.into_iter()
                .enumerate()
                .map(|(i, v)| to_json(v, &format!("{path}[{i}]"), early).unwrap_or(J::Null))
                .collect(),
        ),
        K::Table(t) => J::Object(
            t.into_iter()
                .filter_map(|(k, v)| {
                    let p = source::join(path, &k);
                    to_json(v, &p, early).map(|v| (k, v))
                })
                .collect(),
        ),
    })
}

/// The parsed file as a `config` source, under the environment's overrides.
#[derive(Clone, Debug)]
struct FileTree(config::Map<String, config::Value>);

impl config::Source for FileTree {
    fn clone_into_box(&self) -> Box<dyn config::Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<config::Map<String, config::Value>, config::ConfigError> {
        Ok(self.0.clone())
    }
}

/// Loads the topology at `path` with overrides from the process environment.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    Loader::new().load(path)
}

/// Loads the topology at `path` with overrides from `env` instead of the process
/// environment (tests run in parallel; the process environment is shared).
pub fn load_with_env<K: Into<String>, V: Into<String>>(
    path: &Path,
    env: impl IntoIterator<Item = (K, V)>,
) -> Result<Loaded, LoadError> {
    Loader::new().env(env).load(path)
}

/// Loads a topology from text, without environment overrides; `origin` names it in
/// messages.
pub fn load_str(text: &str, format: Format, origin: &str) -> Result<Loaded, LoadError> {
    Loader::new()
        .env(Vec::<(String, String)>::new())
        .load_str(text, format, origin)
}
