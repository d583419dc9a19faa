//! Topology reloads: on SIGHUP, and when the file changes (checked every second). An
//! invalid file is refused and logged; the node keeps running on the old topology.
//!
//! Addresses on reload: a node follows its upstream wherever the new topology puts it (a
//! farm node dials the global node's new `listen`, an agent its farm node's or the global
//! node's), but never rebinds its own sockets: a changed own `listen` or `status` is logged
//! as an error naming the field ("global.listen changed: restart the node to apply") and
//! the node keeps the old address until restarted, while the rest of the topology applies.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use fedlb_topology::Topology;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::common::load_topology;

/// Starts watching `path`; valid new topologies arrive on the returned channel.
pub fn spawn(
    path: PathBuf,
    read_keys: bool,
    shutdown: CancellationToken,
) -> mpsc::Receiver<Topology> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mtime = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let mut last: Option<SystemTime> = mtime(&path);
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            #[cfg(unix)]
            let sighup = async {
                match hup.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let sighup = std::future::pending::<()>();
            let why = tokio::select! {
                () = shutdown.cancelled() => return,
                () = sighup => "SIGHUP",
                _ = tick.tick() => {
                    let now = mtime(&path);
                    if now == last {
                        continue;
                    }
                    last = now;
                    "file changed"
                }
            };
            match load_topology(&path, read_keys) {
                Ok(t) => {
                    info!(file = %path.display(), why, "topology reloaded");
                    if tx.send(t).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    for line in e.to_string().lines() {
                        error!(file = %path.display(), why, "reload refused: {line}");
                    }
                    error!(file = %path.display(), "keeping the topology in force");
                }
            }
        }
    });
    rx
}
