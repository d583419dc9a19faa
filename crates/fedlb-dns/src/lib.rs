//! fedlb publishers: they turn the global node's decisions (A/AAAA answers per name, with a
//! TTL) into the outside world. This crate owns the RFC 2136 publisher (TSIG-signed dynamic
//! updates to BIND, Knot, PowerDNS or the embedded server), the embedded authoritative DNS server,
//! the file publisher and the command publisher, the pure diff between published and desired
//! answers, and the TTL derivation helper. It never decides which servers answer (that is
//! `fedlb-core`), never reads the topology file, never writes an empty answer for a name
//! (fail-static) and never writes outside its configured zone.
//!
//! # Shape
//!
//! - [`DesiredZone`] / [`RecordSet`]: what the caller wants published for one zone.
//! - [`diff()`] (pure): the RRset [`Change`]s from a [`ZoneState`] to a [`DesiredZone`].
//! - [`Publisher`]: one enum over the publisher kinds, each with `publish`, `reconcile`,
//!   `poll_timeout` / `handle_timeout` and `metrics`; [`run`] drives one from a `watch` channel
//!   and sends a [`PassOutcome`] after every pass (per name: what each DNS primary serves).
//! - [`EmbeddedServer`]: a zone served in-process, written to through [`Rfc2136Publisher`];
//!   optionally one copy per region ([`EmbeddedView`]), each updated with its own TSIG key and
//!   answering the clients of its region (by EDNS Client Subnet or source address), and
//!   optionally spreading a set of several addresses per query by the weights the global
//!   node decided ([`AnswerWeights`], [`fedlb_core::Spread`]).
//! - [`TsigKey`] / [`TsigAlgorithm`]: fedlb-topology's, the one TSIG key type of the workspace
//!   (it also parses key files); this crate only turns them into hickory's signer.

mod answers;
pub mod command;
mod diff;
mod ecs;
pub mod embedded;
mod error;
pub mod file;
mod front;
mod geoip;
mod notify;
mod render;
mod report;
pub mod rfc2136;
pub mod secondary;
mod tsig;
mod weights;
mod wire;

use std::{future::Future, net::SocketAddr, time::Duration};

pub use answers::{DesiredZone, Family, RecordSet, RrData, RrKey, ZoneState, fqdn, zone_name};
pub use command::{CommandConfig, CommandPublisher};
pub use diff::{Change, accept, apply, diff};
pub use embedded::{EmbeddedConfig, EmbeddedServer, EmbeddedView};
pub use error::{Error, FailureClass};
pub use file::{FileConfig, FilePublisher, write_atomic};
pub use hickory_proto::rr::Name;
pub use render::{to_json, to_zone_fragment};
pub use report::{
    PassOutcome, PublishReport, PublisherMetrics, Status, TargetMetrics, TargetReport,
};
pub use rfc2136::{PeerConfig, PrimaryView, Rfc2136Config, Rfc2136Publisher, marker_name};
pub use secondary::{SecondarySpec, bind_secondary, knot_secondary};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};
use tracing::{info, warn};
pub use tsig::{TsigAlgorithm, TsigKey};
pub use weights::AnswerWeights;

/// The kinds of publisher, as metrics and logs name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PublisherKind {
    /// RFC 2136 updates to DNS primaries (`dns`).
    Dns,
    /// Files (`file`).
    File,
    /// A command (`command`).
    Command,
}

impl PublisherKind {
    /// `dns`, `file` or `command`.
    pub fn as_str(self) -> &'static str {
        match self {
            PublisherKind::Dns => "dns",
            PublisherKind::File => "file",
            PublisherKind::Command => "command",
        }
    }
}

impl std::fmt::Display for PublisherKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Any publisher. One per zone.
pub enum Publisher {
    /// RFC 2136 dynamic updates (also used for the embedded server).
    Rfc2136(Rfc2136Publisher),
    /// JSON / zone-fragment files.
    File(FilePublisher),
    /// A command fed JSON on stdin.
    Command(CommandPublisher),
}

impl Publisher {
    /// The kind.
    pub fn kind(&self) -> PublisherKind {
        match self {
            Publisher::Rfc2136(_) => PublisherKind::Dns,
            Publisher::File(_) => PublisherKind::File,
            Publisher::Command(_) => PublisherKind::Command,
        }
    }

    /// The outcome of a pass that produced `report` while publishing `desired`: per name,
    /// what each DNS primary serves for it now.
    pub fn outcome(&self, report: &PublishReport, desired: &DesiredZone) -> PassOutcome {
        let primaries = self.primaries();
        PassOutcome {
            publisher: self.kind(),
            changes: report.changes(),
            errors: report.errors().map(|e| e.to_string()).collect(),
            names: desired
                .names()
                .map(|name| {
                    (
                        name.clone(),
                        primaries.iter().map(|p| p.only(name)).collect(),
                    )
                })
                .collect(),
            unmanaged: primaries.iter().map(PrimaryView::unmanaged).collect(),
            deferred: match self {
                Publisher::Rfc2136(p) => p.deferred().clone(),
                Publisher::File(_) | Publisher::Command(_) => Default::default(),
            },
        }
    }

    /// Takes new desired answers and writes what changed. Nothing is written when nothing
    /// changed.
    pub async fn publish(&mut self, desired: &DesiredZone) -> PublishReport {
        match self {
            Publisher::Rfc2136(p) => p.publish(desired).await,
            Publisher::File(p) => p.publish(desired).await,
            Publisher::Command(p) => p.publish(desired).await,
        }
    }

    /// Compares the targets with the desired answers now and repairs drift. The command
    /// publisher cannot read its target back; for it this retries a failed delivery.
    pub async fn reconcile(&mut self) -> PublishReport {
        match self {
            Publisher::Rfc2136(p) => p.reconcile().await,
            Publisher::File(p) => p.reconcile().await,
            Publisher::Command(p) => p.handle_timeout().await,
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) has work (retry or periodic reconcile).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Publisher::Rfc2136(p) => p.poll_timeout(),
            Publisher::File(p) => p.poll_timeout(),
            Publisher::Command(p) => p.poll_timeout(),
        }
    }

    /// Does the work that is due at [`poll_timeout`](Self::poll_timeout).
    pub async fn handle_timeout(&mut self) -> PublishReport {
        match self {
            Publisher::Rfc2136(p) => p.handle_timeout().await,
            Publisher::File(p) => p.reconcile().await,
            Publisher::Command(p) => p.handle_timeout().await,
        }
    }

    /// What each DNS primary serves as far as the publisher knows (empty for the file and
    /// command publishers, which are not DNS servers).
    pub fn primaries(&self) -> Vec<PrimaryView> {
        match self {
            Publisher::Rfc2136(p) => p.primaries(),
            Publisher::File(_) | Publisher::Command(_) => Vec::new(),
        }
    }

    /// Counters per target.
    pub fn metrics(&self) -> PublisherMetrics {
        match self {
            Publisher::Rfc2136(p) => p.metrics(),
            Publisher::File(p) => p.metrics(),
            Publisher::Command(p) => p.metrics(),
        }
    }
}

/// Drives a publisher: publishes the current answers (once there are any), then every change
/// of `desired`, and does retries and reconciles when they are due, until `shutdown`
/// completes or the sender is dropped. Only the latest answers matter, so a slow target never
/// queues stale ones. Failures are logged and counted by the publisher; they never stop the
/// loop. After every pass its [`PassOutcome`] goes to `outcomes` (waiting for room: the
/// receiver is the node's driver, which never blocks on the publisher).
pub async fn run(
    publisher: &mut Publisher,
    mut desired: watch::Receiver<DesiredZone>,
    outcomes: mpsc::Sender<PassOutcome>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    // The first answers may be in the channel before this task first runs: treat whatever
    // is there as new, or it is not published until the answers change again.
    desired.mark_changed();
    let mut last = DesiredZone::for_zone(desired.borrow().zone());
    loop {
        let deadline = publisher.poll_timeout();
        let report = tokio::select! {
            biased;
            () = &mut shutdown => break,
            changed = desired.changed() => {
                if changed.is_err() {
                    break;
                }
                let answers = desired.borrow_and_update().clone();
                // never publish "no answers": a zone is only written once decided
                if answers.is_empty() {
                    continue;
                }
                last = answers;
                publisher.publish(&last).await
            }
            () = sleep_until_opt(deadline) => publisher.handle_timeout().await,
        };
        let outcome = publisher.outcome(&report, &last);
        if outcome.changes > 0 {
            info!(
                publisher = %outcome.publisher,
                changes = outcome.changes,
                ok = outcome.is_ok(),
                "update acknowledged"
            );
        }
        for e in &outcome.errors {
            warn!(publisher = %outcome.publisher, error = %e, "publish failed; will retry");
        }
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            // a gone receiver only means nobody watches the outcomes: keep publishing
            _ = outcomes.send(outcome) => {}
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Reads the A and AAAA RRsets of `names` from `server` over TCP, as the RFC 2136 publisher's
/// reconcile pass does (for status pages and tests).
pub async fn query_rrsets<'a>(
    server: SocketAddr,
    zone: &Name,
    names: impl IntoIterator<Item = &'a Name>,
    timeout: Duration,
) -> Result<ZoneState, Error> {
    wire::read_state(server, zone, names, timeout, None)
        .await
        .map(|r| r.state)
}

/// Reads the zone's SOA serial from `server`; fails unless the server answers authoritatively.
/// Useful as a readiness check.
pub async fn query_serial(
    server: SocketAddr,
    zone: &Name,
    timeout: Duration,
) -> Result<u32, Error> {
    wire::read_state(server, zone, [], timeout, None)
        .await
        .map(|r| r.serial)
}
