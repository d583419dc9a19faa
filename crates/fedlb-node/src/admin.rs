//! Admin calls (drain, disable, pin, clear, list): what an operator's tool sends, the
//! overrides a node holds, and their file in the node's state directory.
//!
//! Transport: HTTPS on the node's status port (a TLS ClientHello is told from plain HTTP by
//! its first byte, see [`crate::http`]), with a client certificate from the federation CA
//! whose identity has the `operator` role. Read-only status stays plain HTTP.
//!
//! Who holds what: a farm node holds the overrides on its farm's servers (and pins of a
//! service to one of them) — its local decision carries them out, and every global node
//! sees the result in its summaries (a drained server's why travels with it). A global node
//! takes such a call and forwards it ([`Forwarded`], JSON) to each of the farm's nodes on a
//! bidirectional stream it opens on the farm node's QUIC connection to it (the farm node
//! dialled it and checked its certificate), and answers with each farm node's answer. A
//! global node holds the overrides on farms and on directly attached servers, and pins to
//! them; every global node must hold the same ones, so the operator's tool sends those
//! calls to every global node and reports each result. The tool makes the override's id
//! and its absolute expiry, so the copies agree.
//!
//! The file (`overrides.<node>.<role>.jsonl`): one JSON object per line, written whole to a
//! temporary file and renamed over the old one. A line that does not parse stops the node
//! with an error naming the file and the line: overrides are never dropped silently.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fedlb_core::{Action, Override, Overrides, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tracing::info;

use crate::common::NodeError;

/// What an override does, as the admin call names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Not chosen while anything else is up.
    Drain,
    /// Never chosen.
    Disable,
    /// A service answered by the target alone while it is up.
    Pin,
}

impl Kind {
    /// `drain`, `disable`, `pin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Drain => "drain",
            Kind::Disable => "disable",
            Kind::Pin => "pin",
        }
    }
}

/// One override as stored, listed and sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Unique in the federation; made by the operator's tool.
    pub id: String,
    /// What it does.
    pub kind: Kind,
    /// The server or farm (for a pin: what the service is pinned to).
    pub target: String,
    /// For a pin: the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// For a pin: only this region's clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Who set it: the operator certificate's name (set by the node, never by the caller).
    #[serde(default)]
    pub operator: String,
    /// Why.
    #[serde(default)]
    pub reason: String,
    /// When it stops applying, Unix milliseconds (`None`: until cleared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_unix_ms: Option<u64>,
    /// When the node took it, Unix milliseconds.
    #[serde(default)]
    pub set_unix_ms: u64,
}

impl Record {
    /// The core's override, on the node's timeline: `now` and `wall` are the same moment.
    pub fn to_core(&self, now: Timestamp, wall: SystemTime) -> Override {
        let action = match self.kind {
            Kind::Drain => Action::Drain,
            Kind::Disable => Action::Disable,
            Kind::Pin => Action::Pin {
                service: self.service.clone().unwrap_or_default().as_str().into(),
                region: self.region.as_deref().map(Into::into),
            },
        };
        let until = self.until_unix_ms.map(|ms| {
            let left = (UNIX_EPOCH + Duration::from_millis(ms))
                .duration_since(wall)
                .unwrap_or(Duration::ZERO);
            now + left
        });
        Override {
            id: self.id.clone(),
            action,
            target: self.target.as_str().into(),
            operator: self.operator.clone(),
            reason: self.reason.clone(),
            until,
            until_label: self.until_unix_ms.map(utc_label),
        }
    }

    /// As an operator reads it (the core's wording).
    pub fn describe(&self) -> String {
        let o = self.to_core(Timestamp::ZERO, UNIX_EPOCH);
        match self.kind {
            Kind::Pin => o.describe(),
            _ => format!("{}: {}", self.target, o.describe()),
        }
    }
}

/// `14:30:05 UTC` for a moment in Unix milliseconds (the date too when not today).
pub fn utc_label(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let today = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);
    let time = format!(
        "{:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    );
    if days == today {
        time
    } else {
        let (y, m, d) = civil(days as i64);
        format!("{y:04}-{m:02}-{d:02} {time}")
    }
}

/// The calendar date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// An admin call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Holds an override (`operator` and `set_unix_ms` are set by the node).
    Set(Record),
    /// Stops holding the override with this id.
    Clear {
        /// Its id.
        id: String,
        /// To a global node that does not hold it: forward the call to every farm node
        /// (one of them may hold it).
        #[serde(default)]
        farms: bool,
    },
    /// Stops holding every override of this kind on `target` (undrain, enable, unpin).
    ClearOn {
        /// What kind.
        kind: Kind,
        /// On what.
        target: String,
    },
    /// Lists the overrides held.
    List {
        /// To a global node: the farm nodes' lists too (the call is forwarded to each).
        #[serde(default)]
        farms: bool,
    },
}

impl Request {
    /// For a global node: the farm whose nodes hold what this call is about, when `farm_of`
    /// says which farm (if any) a server belongs to; `Some(None)`: every farm (a list, or a
    /// clear of an id held elsewhere); `None`: the call is the global node's own.
    pub fn farm_scope<'a>(
        &self,
        farm_of: impl Fn(&str) -> Option<&'a str>,
        held_here: impl Fn(&str) -> bool,
    ) -> Option<Option<&'a str>> {
        match self {
            Request::Set(r) => farm_of(&r.target).map(Some),
            Request::ClearOn { target, .. } => farm_of(target).map(Some),
            Request::Clear { id, farms } => (*farms && !held_here(id)).then_some(None),
            Request::List { farms } => farms.then_some(None),
        }
    }
}

/// A node's answer to an admin call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The node that answered.
    pub node: String,
    /// The ids the call added or removed.
    pub changed: Vec<String>,
    /// Every override held after the call.
    pub overrides: Vec<Record>,
    /// The answers of the farm nodes a global node forwarded the call to, each its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forwarded: Vec<ForwardAnswer>,
}

/// An admin call a global node forwards to a farm node over the farm node's QUIC
/// connection to it (the farm node dialled the global node and checked its certificate;
/// the global node checked the operator's).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forwarded {
    /// The operator certificate's name.
    pub operator: String,
    /// The call.
    pub request: Request,
}

/// One farm node's answer to a forwarded call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardAnswer {
    /// The farm node.
    pub node: String,
    /// Its answer, or why there is none.
    pub result: Result<Response, String>,
}

/// An admin call on its way to the node's driver, from an authenticated operator.
#[derive(Debug)]
pub struct Call {
    /// The operator certificate's name.
    pub operator: String,
    /// The call.
    pub request: Request,
    /// Where the answer goes: the response, or an error for the operator.
    pub reply: oneshot::Sender<Result<Response, String>>,
}

/// The overrides a node holds, and their file.
#[derive(Debug)]
pub struct Held {
    node: String,
    path: PathBuf,
    records: BTreeMap<String, Record>,
}

impl Held {
    /// The overrides stored for `role`/`node` under `state_dir` (none when the file does
    /// not exist yet; the directory is made then). A file that does not parse is an error
    /// naming it and the line.
    pub fn load(state_dir: &Path, role: &str, node: &str) -> Result<Held, NodeError> {
        let path = state_dir.join(format!("overrides.{node}.{role}.jsonl"));
        let bad = |line: usize, why: String| NodeError::OverrideFile {
            file: path.display().to_string(),
            line,
            why,
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(state_dir).map_err(|e| bad(0, e.to_string()))?;
                String::new()
            }
            Err(e) => return Err(bad(0, e.to_string())),
        };
        let mut records = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let r: Record = serde_json::from_str(line).map_err(|e| bad(i + 1, e.to_string()))?;
            if records.contains_key(&r.id) {
                return Err(bad(i + 1, format!("override \"{}\" listed twice", r.id)));
            }
            records.insert(r.id.clone(), r);
        }
        Ok(Held {
            node: node.to_owned(),
            path,
            records,
        })
    }

    /// The overrides held, for the node's status.
    pub fn status(&self) -> Vec<crate::status::OverrideStatus> {
        self.records
            .values()
            .map(|r| crate::status::OverrideStatus {
                id: r.id.clone(),
                text: r.describe(),
                record: r.clone(),
            })
            .collect()
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every override held, by id.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.records.values()
    }

    /// Says at start how many overrides the file gave back, if any.
    pub fn log_restored(&self) {
        if !self.records.is_empty() {
            info!(file = %self.path.display(), count = self.records.len(), "operator overrides restored");
        }
    }

    /// The core's overrides, on the node's timeline (`now` is `SystemTime::now()`).
    pub fn to_core(&self, now: Timestamp) -> Overrides {
        let wall = SystemTime::now();
        let mut o = Overrides::new();
        for r in self.records.values() {
            o.replace(r.to_core(now, wall));
        }
        o
    }

    /// Writes the file: a temporary file next to it, flushed, renamed over it.
    fn save(&self) -> Result<(), String> {
        let tmp = self.path.with_extension("jsonl.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            for r in self.records.values() {
                let line = serde_json::to_string(r).map_err(std::io::Error::other)?;
                writeln!(f, "{line}")?;
            }
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| format!("writing {}: {e}", self.path.display()))
    }

    /// Forgets overrides that expired (the core says which), and saves.
    pub fn expired(&mut self, gone: &[Override]) -> Result<(), String> {
        let mut any = false;
        for o in gone {
            if let Some(r) = self.records.remove(&o.id) {
                info!(node = %self.node, id = %r.id, kind = r.kind.as_str(), target = %r.target, operator = %r.operator, "override expired: {}", r.describe());
                any = true;
            }
        }
        if any { self.save() } else { Ok(()) }
    }

    /// Carries out an admin call from `operator`, after `check` accepted a new override
    /// (its target is known here); saves before answering. Logs every change.
    pub fn handle(
        &mut self,
        operator: &str,
        request: Request,
        check: impl Fn(&Record) -> Result<(), String>,
    ) -> Result<Response, String> {
        let mut changed = Vec::new();
        let before = self.records.clone();
        match request {
            Request::List { .. } => {}
            Request::Set(mut r) => {
                if r.id.is_empty() || r.id.len() > 64 {
                    return Err(format!(
                        "override id \"{}\" must have 1 to 64 characters",
                        r.id
                    ));
                }
                match (r.kind, &r.service) {
                    (Kind::Pin, None) => return Err("a pin needs a service".to_owned()),
                    (Kind::Drain | Kind::Disable, Some(s)) => {
                        return Err(format!(
                            "a {} applies to every service; \"{s}\" given",
                            r.kind.as_str()
                        ));
                    }
                    _ => {}
                }
                if r.kind != Kind::Pin && r.region.is_some() {
                    return Err(format!("a {} cannot be per region", r.kind.as_str()));
                }
                check(&r)?;
                r.operator = operator.to_owned();
                r.set_unix_ms = unix_ms(SystemTime::now());
                if let Some(old) = self.records.get(&r.id) {
                    if old.kind == r.kind
                        && old.target == r.target
                        && old.service == r.service
                        && old.region == r.region
                    {
                        // the same call again (a retry of the operator's tool): nothing new
                        return Ok(self.response(changed));
                    }
                    return Err(format!("override \"{}\" exists already", r.id));
                }
                info!(node = %self.node, %operator, id = %r.id, kind = r.kind.as_str(), target = %r.target, service = r.service.as_deref().unwrap_or(""), region = r.region.as_deref().unwrap_or(""), reason = %r.reason, until = r.until_unix_ms.map(utc_label).unwrap_or_else(|| "cleared".to_owned()), "override set: {}", r.describe());
                changed.push(r.id.clone());
                self.records.insert(r.id.clone(), r);
            }
            Request::Clear { id, .. } => {
                let r = self
                    .records
                    .remove(&id)
                    .ok_or_else(|| format!("no override \"{id}\" on {}", self.node))?;
                info!(node = %self.node, %operator, id = %r.id, kind = r.kind.as_str(), target = %r.target, "override cleared: {}", r.describe());
                changed.push(id);
            }
            Request::ClearOn { kind, target } => {
                let ids: Vec<String> = self
                    .records
                    .values()
                    .filter(|r| r.kind == kind && r.target == target)
                    .map(|r| r.id.clone())
                    .collect();
                for id in ids {
                    let r = self.records.remove(&id).expect("listed");
                    info!(node = %self.node, %operator, id = %r.id, kind = r.kind.as_str(), target = %r.target, "override cleared: {}", r.describe());
                    changed.push(id);
                }
            }
        }
        if !changed.is_empty()
            && let Err(e) = self.save()
        {
            self.records = before;
            return Err(e);
        }
        Ok(self.response(changed))
    }

    fn response(&self, changed: Vec<String>) -> Response {
        Response {
            node: self.node.clone(),
            changed,
            overrides: self.records.values().cloned().collect(),
            forwarded: Vec::new(),
        }
    }
}

/// Unix milliseconds of a moment.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, kind: Kind, target: &str) -> Record {
        Record {
            id: id.into(),
            kind,
            target: target.into(),
            service: (kind == Kind::Pin).then(|| "www".into()),
            region: None,
            operator: String::new(),
            reason: "kernel upgrade".into(),
            until_unix_ms: None,
            set_unix_ms: 0,
        }
    }

    #[test]
    fn overrides_survive_a_reload_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut held = Held::load(dir.path(), "global", "g1").unwrap();
        held.handle(
            "alice",
            Request::Set(record("a", Kind::Drain, "eu-2")),
            |_| Ok(()),
        )
        .unwrap();
        held.handle(
            "bob",
            Request::Set(record("b", Kind::Pin, "us-east")),
            |_| Ok(()),
        )
        .unwrap();
        let again = Held::load(dir.path(), "global", "g1").unwrap();
        let ops: Vec<(&str, &str)> = again
            .records()
            .map(|r| (r.id.as_str(), r.operator.as_str()))
            .collect();
        assert_eq!(ops, [("a", "alice"), ("b", "bob")]);
        assert_eq!(
            again.records().next().unwrap().describe(),
            "eu-2: drained by alice: kernel upgrade"
        );
    }

    #[test]
    fn corrupt_override_file_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("overrides.eu-west.farm.jsonl");
        std::fs::write(
            &path,
            "{\"id\":\"a\",\"kind\":\"drain\",\"target\":\"eu-2\"}\n\n{\"id\":\"b\",\"kind\":\"drian\"}\n",
        )
        .unwrap();
        let e = Held::load(dir.path(), "farm", "eu-west")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("{}: line 3: ", path.display())),
            "{e}"
        );
        assert!(e.contains("drian"), "{e}");
    }

    #[test]
    fn unknown_target_is_refused_with_the_checks_words() {
        let dir = tempfile::tempdir().unwrap();
        let mut held = Held::load(dir.path(), "global", "g1").unwrap();
        let e = held
            .handle(
                "alice",
                Request::Set(record("a", Kind::Drain, "nope")),
                |r| Err(format!("unknown target \"{}\"", r.target)),
            )
            .unwrap_err();
        assert_eq!(e, "unknown target \"nope\"");
        assert_eq!(held.records().count(), 0);
    }

    #[test]
    fn utc_label_is_the_time_of_day_today_and_has_the_date_otherwise() {
        assert_eq!(utc_label(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_label(1_700_000_000_000), "2023-11-14 22:13:20 UTC");
    }
}
