//! Topology text → a `config` value tree, with limits: the file size, the nesting depth and,
//! for YAML, what anchors and aliases may copy. Each format is parsed here rather than by
//! the `config` crate so that a value it cannot hold (an integer beyond 64 bits) is a
//! problem with its path instead of a pathless parse failure, and so that a YAML alias bomb
//! is refused before it is expanded (`yaml-rust2`'s loader clones every alias).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use config::{Map, Value, ValueKind};
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::TScalarStyle;

use crate::Format;

/// The largest topology file read: 4 MiB, far above any real deployment (a thousand farms
/// of ten servers is well under 1 MiB) and small enough that parsing it is cheap.
pub const MAX_FILE_BYTES: u64 = 4 << 20;
/// The deepest nesting of tables and arrays accepted; the schema needs fewer than ten.
pub const MAX_DEPTH: usize = 64;
/// How many nodes YAML anchors and aliases may copy in all (a reused probe list is a few
/// dozen); beyond, the file is refused as a possible alias bomb.
pub const MAX_YAML_ALIAS_NODES: u64 = 100_000;
/// How many bytes of text YAML anchors and aliases may copy in all.
pub const MAX_YAML_ALIAS_BYTES: u64 = 4 << 20;

/// Why a file could not be read.
pub(crate) enum ReadError {
    Io(std::io::Error),
    TooLarge(u64),
}

/// Reads at most [`MAX_FILE_BYTES`] (plus one, to tell) of the file: a topology path
/// pointing at a huge file or a device must not exhaust memory.
pub(crate) fn read_capped(path: &Path) -> Result<String, ReadError> {
    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    if let Ok(meta) = file.metadata()
        && meta.is_file()
        && meta.len() > MAX_FILE_BYTES
    {
        return Err(ReadError::TooLarge(meta.len()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        ReadError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text ({e})"),
        ))
    })
}

/// A parsed file: its top-level table, and the values it holds that could not be kept
/// (each a problem at its path; the value is replaced by the largest integer so that the
/// rest of the file is still checked).
pub(crate) struct Parsed {
    pub table: Map<String, Value>,
    pub problems: Vec<(String, String)>,
}

/// Parses `text`; `Err` is a problem with the whole file (path, message): a syntax error,
/// too deep, or a YAML alias bomb.
pub(crate) fn parse(text: &str, format: Format) -> Result<Parsed, (String, String)> {
    let mut cx = Convert::default();
    let root = match format {
        Format::Toml => {
            let table = toml::de::DeTable::parse(text)
                .map_err(|e| (String::new(), toml_error(&e.to_string())))?;
            cx.toml_table(table.into_inner(), "", 0)?
        }
        Format::Json => {
            let value: serde_json::Value =
                serde_json::from_str(text).map_err(|e| (String::new(), e.to_string()))?;
            cx.json(value, "", 0)?
        }
        Format::Yaml => Yaml::parse(text, &mut cx.problems)?,
    };
    let table = match root {
        Some(Value {
            kind: ValueKind::Table(t),
            ..
        }) => t,
        Some(Value {
            kind: ValueKind::Nil,
            ..
        })
        | None => Map::new(),
        Some(_) => return Err((String::new(), "the file is not a table of fields".into())),
    };
    Ok(Parsed {
        table,
        problems: cx.problems,
    })
}

/// The toml crate's message without the quoted source line (which may be megabytes):
/// "TOML parse error at line 1, column 85: cannot recurse further".
fn toml_error(s: &str) -> String {
    let first = s.lines().next().unwrap_or_default().trim();
    let what = s
        .lines()
        .rev()
        .find_map(|l| {
            l.split_once('^')
                .map(|(_, w)| w.trim_start_matches('^').trim())
        })
        .unwrap_or_default();
    let what: String = what.chars().take(200).collect();
    if what.is_empty() {
        first.to_owned()
    } else {
        format!("{first}: {what}")
    }
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn too_deep(path: &str) -> (String, String) {
    (
        path.to_owned(),
        format!("nested deeper than {MAX_DEPTH} levels"),
    )
}

fn too_large(text: &str) -> String {
    format!("integer {text} is too large (the limit is {})", i64::MAX)
}

fn value(kind: impl Into<ValueKind>) -> Value {
    Value::new(None, kind)
}

#[derive(Default)]
struct Convert {
    problems: Vec<(String, String)>,
}

impl Convert {
    fn toml_table(
        &mut self,
        table: toml::de::DeTable<'_>,
        path: &str,
        depth: usize,
    ) -> Result<Option<Value>, (String, String)> {
        if depth > MAX_DEPTH {
            return Err(too_deep(path));
        }
        let mut m = Map::new();
        for (key, v) in table {
            let key = key.into_inner().into_owned();
            let p = join(path, &key);
            if let Some(v) = self.toml(v.into_inner(), &p, depth + 1)? {
                m.insert(key, v);
            }
        }
        Ok(Some(value(m)))
    }

    fn toml(
        &mut self,
        v: toml::de::DeValue<'_>,
        path: &str,
        depth: usize,
    ) -> Result<Option<Value>, (String, String)> {
        use toml::de::DeValue;
        if depth > MAX_DEPTH {
            return Err(too_deep(path));
        }
        Ok(Some(match v {
            DeValue::String(s) => value(s.into_owned()),
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => value(n),
                Err(_) => {
                    self.problems.push((path.to_owned(), too_large(i.as_str())));
                    value(i64::MAX)
                }
            },
            DeValue::Float(f) => match f.as_str().parse::<f64>() {
                // nan and inf are kept: they are refused, with their path, once the
                // environment is layered on (which can set them too)
                Ok(n) => value(n),
                Err(e) => {
                    self.problems
                        .push((path.to_owned(), format!("invalid number: {e}")));
                    return Ok(None);
                }
            },
            DeValue::Boolean(b) => value(b),
            DeValue::Datetime(d) => value(d.to_string()),
            DeValue::Table(t) => return self.toml_table(t, path, depth),
            DeValue::Array(a) => {
                let mut list = Vec::new();
                for (i, v) in a.into_iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    // an element cannot be left out without moving the next ones
                    list.push(
                        self.toml(v.into_inner(), &p, depth + 1)?
                            .unwrap_or_default(),
                    );
                }
                value(list)
            }
        }))
    }

    fn json(
        &mut self,
        v: serde_json::Value,
        path: &str,
        depth: usize,
    ) -> Result<Option<Value>, (String, String)> {
        use serde_json::Value as J;
        if depth > MAX_DEPTH {
            return Err(too_deep(path));
        }
        Ok(Some(match v {
            J::Null => Value::default(),
            J::Bool(b) => value(b),
            J::Number(n) => {
                if let Some(i) = n.as_i64() {
                    value(i)
                } else if let Some(u) = n.as_u64() {
                    self.problems
                        .push((path.to_owned(), too_large(&u.to_string())));
                    value(i64::MAX)
                } else {
                    value(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            J::String(s) => value(s),
            J::Array(a) => {
                let mut list = Vec::new();
                for (i, v) in a.into_iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    list.push(self.json(v, &p, depth + 1)?.unwrap_or_default());
                }
                value(list)
            }
            J::Object(o) => {
                let mut m = Map::new();
                for (k, v) in o {
                    let p = join(path, &k);
                    if let Some(v) = self.json(v, &p, depth + 1)? {
                        m.insert(k, v);
                    }
                }
                value(m)
            }
        }))
    }
}

/// What an anchored node costs to copy.
#[derive(Clone, Copy, Default)]
struct Weight {
    nodes: u64,
    bytes: u64,
}

impl Weight {
    fn add(&mut self, w: Weight) {
        self.nodes = self.nodes.saturating_add(w.nodes);
        self.bytes = self.bytes.saturating_add(w.bytes);
    }
}

enum Frame {
    Seq {
        items: Vec<Value>,
        anchor: usize,
        weight: Weight,
        path: String,
    },
    Map {
        map: Map<String, Value>,
        key: Option<String>,
        anchor: usize,
        weight: Weight,
        path: String,
    },
}

/// Builds the tree from `yaml-rust2`'s event stream, which reports an alias as its anchor
/// id without expanding it: every copy (an anchored node kept for later, each alias) is
/// counted against [`MAX_YAML_ALIAS_NODES`] and [`MAX_YAML_ALIAS_BYTES`] before it is made.
struct Yaml<'p> {
    stack: Vec<Frame>,
    anchors: BTreeMap<usize, (Value, Weight)>,
    copied: Weight,
    root: Option<Value>,
    documents: usize,
    problems: &'p mut Vec<(String, String)>,
}

impl<'p> Yaml<'p> {
    fn parse(
        text: &str,
        problems: &'p mut Vec<(String, String)>,
    ) -> Result<Option<Value>, (String, String)> {
        let mut y = Yaml {
            stack: Vec::new(),
            anchors: BTreeMap::new(),
            copied: Weight::default(),
            root: None,
            documents: 0,
            problems,
        };
        let mut parser = Parser::new_from_str(text);
        loop {
            let (event, mark) = parser
                .next_token()
                .map_err(|e| (String::new(), e.to_string()))?;
            let line = mark.line();
            match event {
                Event::StreamEnd => break,
                Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
                Event::DocumentStart => {
                    y.documents += 1;
                    if y.documents > 1 {
                        return Err((
                            String::new(),
                            format!(
                                "a second yaml document at line {line}: a topology is one document"
                            ),
                        ));
                    }
                }
                Event::Alias(id) => {
                    let path = y.next_path()?;
                    let Some((v, w)) = y.anchors.get(&id).cloned() else {
                        return Err((path, format!("unknown yaml alias at line {line}")));
                    };
                    y.copy(w, &path, line)?;
                    y.push(v, w)?;
                }
                Event::Scalar(text, style, anchor, tag) => {
                    let path = y.next_path()?;
                    let w = Weight {
                        nodes: 1,
                        bytes: text.len() as u64,
                    };
                    let v = y.scalar(text, style, tag.as_ref(), &path);
                    if anchor != 0 {
                        y.copy(w, &path, line)?;
                        y.anchors.insert(anchor, (v.clone(), w));
                    }
                    y.push(v, w)?;
                }
                Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                    let path = y.next_path()?;
                    if y.stack.len() >= MAX_DEPTH {
                        return Err(too_deep(&path));
                    }
                    let weight = Weight { nodes: 1, bytes: 0 };
                    y.stack.push(if matches!(event, Event::SequenceStart(..)) {
                        Frame::Seq {
                            items: Vec::new(),
                            anchor,
                            weight,
                            path,
                        }
                    } else {
                        Frame::Map {
                            map: Map::new(),
                            key: None,
                            anchor,
                            weight,
                            path,
                        }
                    });
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let (v, anchor, w, path) = match y.stack.pop() {
                        Some(Frame::Seq {
                            items,
                            anchor,
                            weight,
                            path,
                        }) => (value(items), anchor, weight, path),
                        Some(Frame::Map {
                            map,
                            anchor,
                            weight,
                            path,
                            ..
                        }) => (value(map), anchor, weight, path),
                        None => return Err((String::new(), "unbalanced yaml".into())),
                    };
                    if anchor != 0 {
                        y.copy(w, &path, line)?;
                        y.anchors.insert(anchor, (v.clone(), w));
                    }
                    y.push(v, w)?;
                }
            }
        }
        Ok(y.root)
    }

    /// Counts a copy against the budget before it is made.
    fn copy(&mut self, w: Weight, path: &str, line: usize) -> Result<(), (String, String)> {
        self.copied.add(w);
        if self.copied.nodes > MAX_YAML_ALIAS_NODES || self.copied.bytes > MAX_YAML_ALIAS_BYTES {
            return Err((
                path.to_owned(),
                format!(
                    "yaml anchors and aliases (here at line {line}) would copy more than {MAX_YAML_ALIAS_NODES} values or {} MiB: refused as a possible alias bomb; write the repeated parts out",
                    MAX_YAML_ALIAS_BYTES >> 20
                ),
            ));
        }
        Ok(())
    }

    /// The path of the node about to start.
    fn next_path(&self) -> Result<String, (String, String)> {
        Ok(match self.stack.last() {
            None => String::new(),
            Some(Frame::Seq { items, path, .. }) => format!("{path}[{}]", items.len()),
            Some(Frame::Map {
                key: None, path, ..
            }) => path.clone(),
            Some(Frame::Map {
                key: Some(k), path, ..
            }) => join(path, k),
        })
    }

    fn push(&mut self, v: Value, w: Weight) -> Result<(), (String, String)> {
        match self.stack.last_mut() {
            None => self.root = Some(v),
            Some(Frame::Seq { items, weight, .. }) => {
                weight.add(w);
                items.push(v);
            }
            Some(Frame::Map {
                map,
                key,
                weight,
                path,
                ..
            }) => {
                weight.add(w);
                match key.take() {
                    Some(k) => {
                        map.insert(k, v);
                    }
                    None => {
                        let k = match v.kind {
                            ValueKind::String(s) => s,
                            ValueKind::I64(i) => i.to_string(),
                            ValueKind::Boolean(b) => b.to_string(),
                            ValueKind::Float(f) => f.to_string(),
                            _ => {
                                return Err((
                                    path.clone(),
                                    "a yaml key that is not a plain value".into(),
                                ));
                            }
                        };
                        *key = Some(k);
                    }
                }
            }
        }
        Ok(())
    }

    fn scalar(
        &mut self,
        text: String,
        style: TScalarStyle,
        tag: Option<&yaml_rust2::parser::Tag>,
        path: &str,
    ) -> Value {
        let is_str = style != TScalarStyle::Plain
            || tag.is_some_and(|t| t.handle != "tag:yaml.org,2002:" || t.suffix == "str");
        if is_str {
            return value(text);
        }
        match yaml_rust2::Yaml::from_str(&text) {
            yaml_rust2::Yaml::Integer(i) => value(i),
            real @ yaml_rust2::Yaml::Real(_) => {
                let digits = text.strip_prefix(['-', '+']).unwrap_or(&text);
                if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                    // an integer beyond 64 bits, which yaml-rust2 would read as a float
                    self.problems.push((path.to_owned(), too_large(&text)));
                    value(i64::MAX)
                } else {
                    value(real.as_f64().unwrap_or(f64::NAN))
                }
            }
            yaml_rust2::Yaml::Boolean(b) => value(b),
            yaml_rust2::Yaml::Null => Value::default(),
            _ => value(text),
        }
    }
}
