//! The RFC 2136 publisher: TSIG-signed dynamic updates over TCP to one or more primaries.
//!
//! Per primary it keeps what it believes the server holds for the managed names. A publish pass
//! diffs the desired answers against that belief and sends nothing when they agree; otherwise
//! all changes of the zone go in one UPDATE, each RRset replaced atomically (delete RRset + add)
//! and guarded by a prerequisite on the RRset fedlb believes is there (compare-and-swap). When a
//! prerequisite fails, someone else changed the records: fedlb logs it, re-reads the server and
//! tries again on the fresh state. A reconcile pass re-reads the server on an interval, and
//! before the next write after any error, and repairs drift.
//!
//! Several primaries are independent: each gets the same answers, its own state, counters,
//! backoff and report entry.
//!
//! # Several global nodes on one DNS server
//!
//! With a [`PeerConfig`] (this node shares the primaries with other global nodes), every pass
//! re-reads the **marker** next to each answer (TXT `_fedlb.<name>`: who wrote it, how many
//! candidates it heard, when) and lets [`fedlb_core::peers::judge`] decide: a name this node
//! defers on is left as it is for that pass; a name it writes gets its marker in the same
//! UPDATE, guarded by compare-and-swap on the marker read. The writer renews its marker every
//! [`PeerRule::refresh_every`] (the reconcile interval is shortened to it), so that only a dead
//! writer's marker goes stale. A node that writes the answer already served, over a fresh
//! marker of a peer, sends nothing at all.
//!
//! # Compare-and-swap on hickory's server is weaker
//!
//! RFC 2136 §3.2.5 compares a value-dependent prerequisite with the whole RRset; BIND, Knot and
//! PowerDNS do so. hickory-server 0.26.3 (the embedded server) only checks that each listed record
//! exists, so a record someone *added* next to the ones fedlb expects goes unnoticed there. fedlb
//! stays correct on both because each change deletes the whole RRset before adding the desired
//! records: whatever extra record someone added is removed by the same atomic update, and the
//! reconcile pass compares whole RRsets.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use fedlb_core::peers::{Marker, PeerRule, Verdict, Write, judge, needs_refresh};
use hickory_proto::rr::{Name, TSigner};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::{
    DesiredZone, Error, TsigKey,
    answers::ZoneState,
    diff::{Change, accept, apply, diff},
    report::{Backoff, PublishReport, PublisherMetrics, Status, TargetMetrics, TargetReport},
    wire::{self, MarkerChange},
};

/// This node shares its primaries with other global nodes: the partition rule applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// This global node's name, written in its markers.
    pub node: String,
    /// How long a marker holds peers back, and how often its writer renews it.
    pub rule: PeerRule,
}

/// The owner name of the marker next to `name`: `_fedlb.<name>`.
pub fn marker_name(name: &Name) -> Name {
    Name::from_ascii("_fedlb")
        .expect("a valid label")
        .append_name(name)
        .expect("one label more fits")
}

/// Configuration of an [`Rfc2136Publisher`].
#[derive(Debug, Clone)]
pub struct Rfc2136Config {
    /// The zone; one publisher per zone (RFC 2136 allows one zone per UPDATE).
    pub zone: Name,
    /// Primary servers to update; each is updated and reported separately.
    pub primaries: Vec<SocketAddr>,
    /// The TSIG key.
    pub key: TsigKey,
    /// Limit for one exchange (connect, update or read pass) with a server.
    pub timeout: Duration,
    /// Interval between reads of each server to repair drift.
    pub reconcile_interval: Duration,
    /// First retry delay after a failure; doubles per failure.
    pub backoff_min: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// How many compare-and-swap conflicts one pass resolves by re-reading before giving up.
    pub conflict_retries: u32,
    /// Sign the queries that read the server back with the key too. A server with views
    /// (the embedded server's regions, BIND `match-clients { key k; }`) then answers them from
    /// the view the updates go to, not from the view of fedlb's own address.
    pub sign_reads: bool,
    /// Other global nodes write the same primaries: markers and the partition rule.
    pub peers: Option<PeerConfig>,
}

impl Rfc2136Config {
    /// Defaults: 5 s timeout, reconcile every 60 s, backoff 1 s … 60 s, 2 conflict retries,
    /// unsigned reads.
    pub fn new(zone: Name, primaries: Vec<SocketAddr>, key: TsigKey) -> Self {
        Self {
            zone,
            primaries,
            key,
            timeout: Duration::from_secs(5),
            reconcile_interval: Duration::from_secs(60),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            conflict_retries: 2,
            sign_reads: false,
            peers: None,
        }
    }
}

/// What one primary serves as far as the publisher knows: the truth to show operators,
/// which may lag the desired answers while updates fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryView {
    /// The server.
    pub server: SocketAddr,
    /// The managed RRsets the server last confirmed (by acknowledging an update or by
    /// answering a read); `None` while unknown (never read yet, or an update whose outcome
    /// is unknown).
    pub serves: Option<ZoneState>,
    /// The last error, while the server is failing (cleared by the next success).
    pub failing: Option<String>,
}

impl PrimaryView {
    /// The same view restricted to one name: what this primary serves for it.
    pub fn only(&self, name: &Name) -> PrimaryView {
        PrimaryView {
            server: self.server,
            serves: self.serves.as_ref().map(|z| z.only(name)),
            failing: self.failing.clone(),
        }
    }

    /// The same view for a name fedlb does not publish: the primary serves nothing fedlb
    /// manages for it (once read; unknown before).
    pub fn unmanaged(&self) -> PrimaryView {
        PrimaryView {
            server: self.server,
            serves: self.serves.as_ref().map(|_| ZoneState::default()),
            failing: self.failing.clone(),
        }
    }
}

/// Why a primary is being synchronized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Publish,
    Reconcile,
}

struct Primary {
    server: SocketAddr,
    /// What fedlb believes the server holds for the managed names.
    published: Option<ZoneState>,
    /// The belief must be checked against the server before the next write.
    must_read: bool,
    serial: Option<u32>,
    next_reconcile: Instant,
    retry_at: Option<Instant>,
    backoff: Backoff,
    metrics: TargetMetrics,
}

struct Ctx<'a> {
    zone: &'a Name,
    desired: &'a DesiredZone,
    signer: &'a TSigner,
    config: &'a Rfc2136Config,
}

/// What a pass of a node sharing its primaries decided per name.
#[derive(Default)]
struct PeerPass {
    /// The answers this node writes (the names it defers on left out).
    desired: Option<DesiredZone>,
    /// Markers to write with them.
    markers: Vec<MarkerChange>,
    /// Names deferred, with why.
    deferred: BTreeMap<Name, String>,
}

/// Publishes A/AAAA answers of one zone by RFC 2136 dynamic update with TSIG.
pub struct Rfc2136Publisher {
    config: Rfc2136Config,
    signer: TSigner,
    desired: DesiredZone,
    primaries: Vec<Primary>,
    metrics: PublisherMetrics,
    /// Names left to a peer in the last pass, with why.
    deferred: BTreeMap<Name, String>,
}

impl Rfc2136Publisher {
    /// A publisher with nothing to publish yet. Nothing is sent until the first
    /// [`publish`](Self::publish).
    pub fn new(mut config: Rfc2136Config) -> Result<Self, Error> {
        if config.primaries.is_empty() {
            return Err(Error::NoPrimary {
                zone: config.zone.to_string(),
            });
        }
        config.zone.set_fqdn(true);
        config.zone = config.zone.to_lowercase();
        if let Some(peers) = &config.peers {
            // the writer renews its marker, and a deferring node looks again, this often
            config.reconcile_interval = config.reconcile_interval.min(peers.rule.refresh_every);
        }
        let signer = crate::tsig::signer(&config.key)?;
        let now = Instant::now();
        let primaries = config
            .primaries
            .iter()
            .map(|&server| Primary {
                server,
                published: None,
                must_read: true,
                serial: None,
                next_reconcile: now + config.reconcile_interval,
                retry_at: None,
                backoff: Backoff::new(config.backoff_min, config.backoff_max),
                metrics: TargetMetrics::new(server.to_string()),
            })
            .collect();
        Ok(Self {
            desired: DesiredZone::for_zone(&config.zone),
            signer,
            primaries,
            metrics: PublisherMetrics::default(),
            deferred: BTreeMap::new(),
            config,
        })
    }

    /// The zone.
    pub fn zone(&self) -> &Name {
        &self.config.zone
    }

    /// The answers being published (the last accepted ones).
    pub fn desired(&self) -> &DesiredZone {
        &self.desired
    }

    /// Takes new desired answers and brings every primary to them (primaries that failed
    /// recently are deferred until their retry time). Empty answers and names outside the zone
    /// are refused and reported; for an empty answer the last good one stays.
    pub async fn publish(&mut self, desired: &DesiredZone) -> PublishReport {
        let (accepted, refused) = accept(&self.config.zone, &self.desired, desired);
        for err in &refused {
            error!(zone = %self.config.zone, error = %err, "answers refused");
        }
        self.metrics.record_refusals(&refused);
        self.desired = accepted;
        let now = Instant::now();
        let mut report = self
            .sync_where(|p| p.retry_at.is_none_or(|t| t <= now), Reason::Publish)
            .await;
        report.refused = refused;
        report
    }

    /// Reads every primary now (ignoring backoff) and repairs whatever differs.
    pub async fn reconcile(&mut self) -> PublishReport {
        self.sync_where(|_| true, Reason::Reconcile).await
    }

    /// When [`handle_timeout`](Self::handle_timeout) has work: the earliest retry or reconcile.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.primaries
            .iter()
            .map(|p| p.retry_at.unwrap_or(p.next_reconcile))
            .min()
    }

    /// Retries failed primaries and reconciles the ones whose interval elapsed.
    pub async fn handle_timeout(&mut self) -> PublishReport {
        let now = Instant::now();
        self.sync_where(
            |p| p.retry_at.unwrap_or(p.next_reconcile) <= now,
            Reason::Reconcile,
        )
        .await
    }

    /// What each primary serves as far as the publisher knows, in configuration order.
    pub fn primaries(&self) -> Vec<PrimaryView> {
        self.primaries
            .iter()
            .map(|p| PrimaryView {
                server: p.server,
                serves: p.published.clone(),
                failing: (p.metrics.consecutive_failures > 0)
                    .then(|| p.metrics.last_error.clone())
                    .flatten(),
            })
            .collect()
    }

    /// Names left to another global node in the last pass, with why (empty without
    /// [`PeerConfig`]).
    pub fn deferred(&self) -> &BTreeMap<Name, String> {
        &self.deferred
    }

    /// Counters: UPDATEs sent, failures by class, last error, per primary.
    pub fn metrics(&self) -> PublisherMetrics {
        let mut m = self.metrics.clone();
        m.targets = self.primaries.iter().map(|p| p.metrics.clone()).collect();
        m
    }

    async fn sync_where(
        &mut self,
        due: impl Fn(&Primary) -> bool,
        reason: Reason,
    ) -> PublishReport {
        let Self {
            config,
            signer,
            desired,
            primaries,
            deferred,
            ..
        } = self;
        let ctx = Ctx {
            zone: &config.zone,
            desired,
            signer,
            config,
        };
        let passes = primaries.iter_mut().map(|p| {
            let run = due(p);
            let ctx = &ctx;
            async move {
                let mut deferred = BTreeMap::new();
                let status = if run {
                    sync(ctx, p, reason, &mut deferred).await
                } else {
                    Status::Deferred {
                        until: p.retry_at.unwrap_or(p.next_reconcile),
                    }
                };
                let report = TargetReport {
                    target: p.server.to_string(),
                    status,
                };
                (report, deferred)
            }
        });
        let results = futures::future::join_all(passes).await;
        deferred.clear();
        let mut targets = Vec::new();
        for (report, names) in results {
            deferred.extend(names);
            targets.push(report);
        }
        PublishReport {
            refused: Vec::new(),
            targets,
        }
    }
}

/// Serial-number arithmetic (RFC 1982): is `a` before `b`?
fn serial_before(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000_0000
}

/// The RRsets of `state` that belong to names of `desired` (the names a read covers).
fn managed_part(state: &ZoneState, desired: &DesiredZone) -> ZoneState {
    let mut part = ZoneState::default();
    for (key, data) in state.iter() {
        if desired.get(&key.name).is_some() {
            part.insert(key.clone(), data.clone());
        }
    }
    part
}

fn summary(changes: &[Change]) -> String {
    changes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Judges every name against its marker (read from the server): the answers this node
/// writes, the markers going with them, and the names it leaves to a peer.
fn judge_names(
    peers: &PeerConfig,
    desired: &DesiredZone,
    published: &ZoneState,
    markers: &BTreeMap<Name, Option<String>>,
    ttl_floor: u32,
    now: u64,
) -> PeerPass {
    let mut pass = PeerPass {
        desired: Some(DesiredZone::for_zone(desired.zone())),
        ..PeerPass::default()
    };
    let mine = pass.desired.as_mut().expect("just set");
    for set in desired.records() {
        let read = markers.get(&set.name).cloned().flatten();
        let marker = read.as_deref().and_then(|t| Marker::parse(t).ok());
        let heard = desired.heard(&set.name);
        let verdict = judge(&peers.rule, &peers.node, heard, marker.as_ref(), now);
        let Verdict::Write(why) = &verdict else {
            pass.deferred.insert(set.name.clone(), verdict.to_string());
            continue;
        };
        let one = DesiredZone::for_zone(desired.zone()).with(set.clone());
        let answer_moves = !diff(&published.only(&set.name), &one).is_empty();
        let take = match why {
            // the served answer is this node's view already and a live peer holds the
            // marker: nothing to write (a second writer of the same answer is a no-op)
            Write::FirstByName { .. } => answer_moves,
            Write::Own => {
                answer_moves
                    || needs_refresh(&peers.rule, &peers.node, marker.as_ref(), now)
                    || marker.as_ref().is_some_and(|m| m.heard != heard)
            }
            Write::NoMarker | Write::Stale { .. } | Write::HearsMore { .. } => true,
        };
        mine.insert(set.clone());
        if take {
            pass.markers.push(MarkerChange {
                name: marker_name(&set.name),
                old: read,
                new: Marker {
                    writer: peers.node.clone(),
                    heard,
                    at: now,
                }
                .to_text(),
                ttl: set.ttl.max(ttl_floor),
            });
        }
    }
    pass
}

async fn sync(
    ctx: &Ctx<'_>,
    p: &mut Primary,
    reason: Reason,
    deferred: &mut BTreeMap<Name, String>,
) -> Status {
    let mut conflicts = 0u32;
    // sharing the primaries, the markers are read before every write
    let mut read = reason == Reason::Reconcile
        || p.must_read
        || p.published.is_none()
        || ctx.config.peers.is_some();
    let mut pass = PeerPass::default();
    loop {
        if read {
            p.metrics.reads += 1;
            let signer = ctx.config.sign_reads.then_some(ctx.signer);
            match wire::read_state(
                p.server,
                ctx.zone,
                ctx.desired.names(),
                ctx.config.timeout,
                signer,
            )
            .await
            {
                Ok(back) => {
                    if let Some(prev) = p.serial.filter(|&prev| serial_before(back.serial, prev)) {
                        warn!(server = %p.server, zone = %ctx.zone, previous = prev, now = back.serial,
                            "zone serial went back: server restarted from an older zone; repairing");
                    }
                    p.serial = Some(back.serial);
                    let drifted = p
                        .published
                        .as_ref()
                        .is_some_and(|believed| managed_part(believed, ctx.desired) != back.state);
                    if drifted && conflicts == 0 && ctx.config.peers.is_none() {
                        p.metrics.drift_repairs += 1;
                        warn!(server = %p.server, zone = %ctx.zone,
                            "records differ from what fedlb published (changed by hand or server restored); repairing");
                    }
                    p.published = Some(back.state);
                    p.must_read = false;
                }
                Err(e) => return fail(ctx, p, e, false),
            }
            if let Some(peers) = &ctx.config.peers {
                let signer = ctx.config.sign_reads.then_some(ctx.signer);
                let markers = match wire::read_markers(
                    p.server,
                    ctx.zone,
                    ctx.desired.names(),
                    ctx.config.timeout,
                    signer,
                )
                .await
                {
                    Ok(m) => m,
                    Err(e) => return fail(ctx, p, e, false),
                };
                let published = p.published.clone().unwrap_or_default();
                pass = judge_names(
                    peers,
                    ctx.desired,
                    &published,
                    &markers,
                    1,
                    wire::unix_now(),
                );
                for (name, why) in &pass.deferred {
                    if deferred.get(name) != Some(why) {
                        debug!(server = %p.server, %name, why = %why, "left to a peer");
                    }
                }
                deferred.clone_from(&pass.deferred);
            }
        }
        let desired = pass.desired.as_ref().unwrap_or(ctx.desired);
        let changes = diff(p.published.get_or_insert_with(ZoneState::default), desired);
        if changes.is_empty() && pass.markers.is_empty() {
            succeed(ctx, p);
            return if conflicts == 0 {
                Status::InSync
            } else {
                Status::Updated {
                    changes: 0,
                    conflicts,
                }
            };
        }
        let mut msg = wire::build_update(ctx.zone, &changes);
        wire::add_markers(&mut msg, &pass.markers);
        p.metrics.updates_sent += 1;
        match wire::send_update(p.server, ctx.zone, ctx.signer, msg, ctx.config.timeout).await {
            Ok(()) => {
                if let Some(published) = p.published.as_mut() {
                    apply(published, &changes);
                }
                p.metrics.updates_applied += 1;
                if !changes.is_empty() {
                    info!(server = %p.server, zone = %ctx.zone, changes = %summary(&changes), "update applied");
                }
                pass.markers.clear();
                succeed(ctx, p);
                return Status::Updated {
                    changes: changes.len(),
                    conflicts,
                };
            }
            Err(e @ Error::Conflict { .. }) if conflicts < ctx.config.conflict_retries => {
                conflicts += 1;
                p.metrics.record_failure(&e);
                warn!(server = %p.server, zone = %ctx.zone, error = %e, expected = %summary(&changes),
                    "compare-and-swap failed: records changed by someone else; re-reading");
                read = true;
            }
            Err(e) => {
                let outcome_unknown = matches!(
                    e,
                    Error::Timeout { .. } | Error::Unreachable { .. } | Error::BadResponse { .. }
                );
                return fail(ctx, p, e, outcome_unknown);
            }
        }
    }
}

fn succeed(ctx: &Ctx<'_>, p: &mut Primary) {
    p.backoff.reset();
    p.retry_at = None;
    p.metrics.consecutive_failures = 0;
    p.next_reconcile = Instant::now() + ctx.config.reconcile_interval;
}

fn fail(ctx: &Ctx<'_>, p: &mut Primary, err: Error, outcome_unknown: bool) -> Status {
    p.metrics.record_failure(&err);
    p.must_read = true;
    if outcome_unknown {
        p.published = None;
    }
    let delay = p.backoff.next_delay();
    p.retry_at = Some(Instant::now() + delay);
    error!(server = %p.server, zone = %ctx.zone, class = ?err.class(), retry_in = ?delay, error = %err,
        "publishing failed");
    Status::Failed(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_arithmetic() {
        assert!(serial_before(1, 2));
        assert!(!serial_before(2, 1));
        assert!(!serial_before(5, 5));
        assert!(serial_before(u32::MAX, 3), "wraps");
        assert!(!serial_before(3, u32::MAX));
    }

    #[test]
    fn needs_a_primary() {
        let key = TsigKey::new("k", crate::TsigAlgorithm::HmacSha256, vec![1; 32]).unwrap();
        let zone = crate::fqdn("example.test").unwrap();
        let err = Rfc2136Publisher::new(Rfc2136Config::new(zone, vec![], key))
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "rfc 2136 publisher for zone \"example.test.\": no primary server configured"
        );
    }
}
