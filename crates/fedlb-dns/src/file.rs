//! The file publisher: writes the answers as JSON (and optionally as a zone-file fragment),
//! atomically: a temporary file in the same directory, flushed, then renamed over the target.
//! A reader sees the old file or the new one, never half of one.

use std::{
    fs,
    io::{self, Write as _},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use hickory_proto::rr::Name;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::{
    DesiredZone, Error,
    answers::ZoneState,
    diff::{accept, diff},
    render,
    report::{PublishReport, PublisherMetrics, Status, TargetMetrics, TargetReport},
};

/// Configuration of a [`FilePublisher`].
#[derive(Debug, Clone)]
pub struct FileConfig {
    /// The zone of the answers.
    pub zone: Name,
    /// Where the JSON goes.
    pub json_path: PathBuf,
    /// Where a zone-file fragment goes, if wanted.
    pub zone_fragment_path: Option<PathBuf>,
    /// How often the files are compared with the answers and rewritten if edited.
    pub reconcile_interval: Duration,
}

impl FileConfig {
    /// JSON only, reconcile every 60 s.
    pub fn new(zone: Name, json_path: impl Into<PathBuf>) -> Self {
        Self {
            zone,
            json_path: json_path.into(),
            zone_fragment_path: None,
            reconcile_interval: Duration::from_secs(60),
        }
    }
}

#[derive(Clone, Copy)]
enum Format {
    Json,
    ZoneFragment,
}

struct Output {
    path: PathBuf,
    format: Format,
    /// Answers of the last successful write.
    written: ZoneState,
    /// A write or a check succeeded before: a later difference with no change is drift.
    synced: bool,
    metrics: TargetMetrics,
}

/// Writes the answers to files; rewrites a file only when its content would change.
pub struct FilePublisher {
    zone: Name,
    desired: DesiredZone,
    outputs: Vec<Output>,
    reconcile_interval: Duration,
    next_reconcile: Instant,
    metrics: PublisherMetrics,
}

impl FilePublisher {
    /// A publisher with nothing written yet.
    pub fn new(config: FileConfig) -> Self {
        let mut zone = config.zone.to_lowercase();
        zone.set_fqdn(true);
        let output = |path: PathBuf, format| Output {
            metrics: TargetMetrics::new(path.display().to_string()),
            path,
            format,
            written: ZoneState::default(),
            synced: false,
        };
        let mut outputs = vec![output(config.json_path, Format::Json)];
        if let Some(p) = config.zone_fragment_path {
            outputs.push(output(p, Format::ZoneFragment));
        }
        Self {
            desired: DesiredZone::for_zone(&zone),
            zone,
            outputs,
            reconcile_interval: config.reconcile_interval,
            next_reconcile: Instant::now() + config.reconcile_interval,
            metrics: PublisherMetrics::default(),
        }
    }

    /// Takes new answers and writes the files that would change.
    pub async fn publish(&mut self, desired: &DesiredZone) -> PublishReport {
        let (accepted, refused) = accept(&self.zone, &self.desired, desired);
        for err in &refused {
            error!(zone = %self.zone, error = %err, "answers refused");
        }
        self.metrics.record_refusals(&refused);
        self.desired = accepted;
        let mut report = self.reconcile().await;
        report.refused = refused;
        report
    }

    /// Compares each file with the answers and rewrites it if it differs (e.g. edited by hand).
    pub async fn reconcile(&mut self) -> PublishReport {
        self.next_reconcile = Instant::now() + self.reconcile_interval;
        let mut targets = Vec::new();
        for out in &mut self.outputs {
            let status = sync(out, &self.desired).await;
            targets.push(TargetReport {
                target: out.path.display().to_string(),
                status,
            });
        }
        PublishReport {
            refused: Vec::new(),
            targets,
        }
    }

    /// When the next reconcile is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next_reconcile)
    }

    /// Counters per file.
    pub fn metrics(&self) -> PublisherMetrics {
        let mut m = self.metrics.clone();
        m.targets = self.outputs.iter().map(|o| o.metrics.clone()).collect();
        m
    }
}

async fn sync(out: &mut Output, desired: &DesiredZone) -> Status {
    let text = match out.format {
        Format::Json => render::to_json(desired),
        Format::ZoneFragment => render::to_zone_fragment(desired),
    };
    let state = desired.to_state();
    let changes = diff(&out.written, desired).len();
    let path = out.path.clone();
    let result = tokio::task::spawn_blocking(move || {
        match fs::read(&path) {
            Ok(current) if current == text.as_bytes() => return Ok(false),
            Ok(_) | Err(_) => {}
        }
        write_atomic(&path, text.as_bytes()).map(|()| true)
    })
    .await
    .unwrap_or_else(|e| {
        Err(Error::File {
            path: out.path.clone(),
            action: "writing",
            source: io::Error::other(e.to_string()),
        })
    });
    match result {
        Ok(false) => {
            out.written = state;
            out.synced = true;
            Status::InSync
        }
        Ok(true) => {
            out.metrics.updates_sent += 1;
            out.metrics.updates_applied += 1;
            out.metrics.consecutive_failures = 0;
            if changes == 0 && out.synced {
                out.metrics.drift_repairs += 1;
                warn!(path = %out.path.display(), "file differed from the answers (edited by hand?); rewritten");
            } else {
                info!(path = %out.path.display(), changes, "answers written");
            }
            out.written = state;
            out.synced = true;
            Status::Updated {
                changes,
                conflicts: 0,
            }
        }
        Err(e) => {
            out.metrics.record_failure(&e);
            error!(path = %out.path.display(), error = %e, "writing answers failed");
            Status::Failed(e)
        }
    }
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `contents` to `path` atomically: temporary file in the same directory, fsync, rename,
/// fsync of the directory.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), Error> {
    let err = |action, source| Error::File {
        path: path.to_owned(),
        action,
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = path.file_name().ok_or_else(|| {
        err(
            "naming",
            io::Error::new(io::ErrorKind::InvalidInput, "no file name"),
        )
    })?;
    let tmp = dir.join(format!(
        ".{}.fedlb-tmp.{}.{}",
        file_name.to_string_lossy(),
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let write = || -> io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(err("writing", e));
    }
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("answers.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["answers.json"]);
        let err = write_atomic(&dir.path().join("missing/answers.json"), b"x").unwrap_err();
        assert!(err.to_string().starts_with("file "), "{err}");
        assert!(
            err.to_string().contains("missing/answers.json: writing"),
            "{err}"
        );
    }
}
