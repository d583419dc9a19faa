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
pub mod schema;
mod tsig;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

pub use model::{
    Attachment, CommandOutput, DnsServer, DnsTarget, Farm, FileOutput, GlobalNode, Heartbeat,
    HttpCheck, LoadSource, Location, Mode, NodeInfo, Probe, ProbeKind, Role, Server, Service,
    Topology,
};
pub use tsig::{TsigAlgorithm, TsigKey};
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
    /// The file type is not known from its extension.
    #[error("{file}: unknown file type (expected .toml, .yaml, .yml or .json)")]
    UnknownFormat {
        /// The file.
        file: String,
    },
    /// The file is not well-formed, has an unknown field, or a value of the wrong type.
    /// Only the first such problem is known (the parser stops there).
    #[error("{0}")]
    Parse(Problem),
    /// The file is well-formed but wrong: every problem found.
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

    fn config_format(self) -> config::FileFormat {
        match self {
            Format::Toml => config::FileFormat::Toml,
            Format::Yaml => config::FileFormat::Yaml,
            Format::Json => config::FileFormat::Json,
        }
    }
}

/// Loads a topology with options; [`load`] is the usual shortcut.
#[derive(Clone, Debug)]
pub struct Loader {
    env: Option<Vec<(String, String)>>,
    read_key_files: bool,
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
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            file: file.clone(),
            source,
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

        let source = config::Environment::with_prefix("FEDLB")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .with_list_parse_key("dns.servers")
            .source(Some(
                env.into_iter()
                    .map(|(key, (_, value))| (format!("{ENV_PREFIX}{key}"), value))
                    .collect(),
            ));
        let layered = config::Config::builder()
            .add_source(config::File::from_str(text, format.config_format()))
            .add_source(source)
            .build()
            .map_err(|e| parse_error(String::new(), e.to_string()))?;
        let value: serde_json::Value = layered
            .try_deserialize()
            .map_err(|e| parse_error(String::new(), e.to_string()))?;
        let raw: schema::RawTopology = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            parse_error(path, e.into_inner().to_string())
        })?;
        let opts = validate::Options {
            file,
            base_dir,
            read_key_files: self.read_key_files,
        };
        match validate::validate(raw, &opts) {
            Ok((topology, warnings)) => Ok(Loaded {
                topology,
                warnings: warnings.into_iter().map(annotate).collect(),
            }),
            Err(errors) => Err(LoadError::Invalid(
                errors.into_iter().map(annotate).collect(),
            )),
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
