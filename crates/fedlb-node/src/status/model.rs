//! The status document: the serde types of what `GET /status` serves. Its schema is
//! documented in `docs/status.md`; change both together.

use std::collections::BTreeMap;
use std::net::IpAddr;

use fedlb_core::Members;
use serde::{Deserialize, Serialize};

/// Version of the status document's schema.
pub const SCHEMA_VERSION: u32 = 1;

/// The whole status document of one node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Schema version ([`SCHEMA_VERSION`]).
    pub schema: u32,
    /// Node name.
    pub node: String,
    /// `global` or `farm`.
    pub role: String,
    /// Seconds since the node started.
    pub uptime_s: f64,
    /// One entry per service.
    pub services: Vec<ServiceStatus>,
    /// When this node's certificate and the CA's expire; set by the running node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<CertificateExpiry>,
    /// With several global nodes (global node only): its peers as this node sees them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<PeersStatus>,
    /// Operator overrides this node holds (drain, disable, pin); set by the running node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<OverrideStatus>,
    /// The last changes of this node's decisions, newest first (set by the running node:
    /// a global node's global and regional decisions, a farm node's local ones).
    #[serde(default)]
    pub changes: Vec<ChangeStatus>,
    /// Each candidate's load over the last minutes, for the page's charts (set by the
    /// running node; absent when it has no reading yet).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loads: Vec<LoadSeries>,
}

/// One operator override a node holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OverrideStatus {
    /// Its id (`fedlb overrides clear ID`).
    pub id: String,
    /// As an operator reads it: `eu-2: drained by alice until 14:30:00 UTC: kernel upgrade`.
    pub text: String,
    /// The override itself.
    pub record: crate::admin::Record,
}

/// One change of a decision: when, what moved, why, and what caused it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangeStatus {
    /// When it was decided, Unix seconds (UTC, the node's wall clock).
    pub at: f64,
    /// How long ago, in seconds.
    pub ago_s: f64,
    /// The service.
    pub service: String,
    /// The region whose decision changed; `null`: the default region (global node) or the
    /// farm's local decision (farm node).
    pub region: Option<String>,
    /// The answer before; `null` for the first decision.
    pub from: Option<AnswerStatus>,
    /// The answer after.
    pub to: AnswerStatus,
    /// The new decision's why.
    pub why: String,
    /// What caused it: `start`, `operator`, `topology`, `health`, `farm`, `rotation` or
    /// `readings`.
    pub cause: String,
    /// The member the cause is about (the server that went down, the farm drained…).
    pub subject: Option<String>,
}

/// An answer as a change shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnswerStatus {
    /// The chosen candidates, preferred first.
    pub chosen: Vec<String>,
    /// The addresses answered.
    pub answers: Vec<IpAddr>,
    /// Fail-static.
    pub degraded: bool,
}

/// One candidate's load over the last minutes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadSeries {
    /// The service.
    pub service: String,
    /// For a server of a farm, as the global node hears it through the farm's summary: the
    /// farm. `null`: a candidate of this node's own decision.
    pub farm: Option<String>,
    /// The candidate.
    pub id: String,
    /// `farm` or `server`.
    pub kind: String,
    /// `[seconds ago, load %]`, oldest first, one a second while a reading exists.
    pub points: Vec<[f64; 2]>,
}

/// What one of several global nodes knows of the others and of the farm nodes feeding
/// them all: there is no protocol between global nodes, so this is what its own inputs
/// and its own publishing say.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeersStatus {
    /// Every global node of the topology, in declaration order (this one included).
    pub global_nodes: Vec<String>,
    /// True when they write one DNS server (the partition rule applies), false when each
    /// has its own.
    pub shares_dns: bool,
    /// The last summary from each farm node (any service), by farm.
    pub farm_nodes: Vec<FarmNodeSeen>,
    /// Per service, how many candidates (farms, direct servers) this node hears now: what
    /// the markers of a shared DNS server compare.
    pub heard: BTreeMap<String, u32>,
}

/// When a global node last heard from a farm node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FarmNodeSeen {
    /// The farm.
    pub farm: String,
    /// The farm node (a farm may have several; one named as the farm otherwise).
    #[serde(default)]
    pub node: String,
    /// Seconds since its last summary arrived; `null`: never.
    pub heard_s_ago: Option<f64>,
}

/// When this node's own certificate and the federation CA's certificate expire (Unix
/// seconds, UTC), so that renewal is watched rather than discovered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateExpiry {
    /// This node's certificate's notAfter.
    pub node_expires_at: u64,
    /// The CA certificate's notAfter.
    pub ca_expires_at: u64,
}

/// One service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Service name.
    pub service: String,
    /// The name it is published under, if this node publishes.
    pub fqdn: Option<String>,
    /// The global decision (on the global node; `null` on a farm node).
    pub global: Option<TierStatus>,
    /// Each farm's local decision.
    pub farms: Vec<FarmStatus>,
    /// What was last published (global node only): the default region's answer, for
    /// clients in no region.
    pub published: Option<PublishStatus>,
    /// Each region's decision and what DNS serves its clients (global node with regions
    /// only), in the order the topology declares them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<RegionStatus>,
}

/// One region's decision for a service: the same farms and servers, ranked from where the
/// region's clients are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegionStatus {
    /// The region.
    pub region: String,
    /// Its decision; each candidate's `rank`, `shown` and `chosen` are the region's.
    pub decision: TierStatus,
    /// What DNS serves the region's clients (its view, or its own primary).
    pub published: Option<PublishStatus>,
}

/// A decision at one tier and the candidates it was made from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TierStatus {
    /// The policy, as an operator reads it (`closest among load ≤ 80 %`).
    pub policy: String,
    /// Chosen candidates, preferred first.
    pub chosen: Vec<String>,
    /// The addresses answered.
    pub answers: Vec<IpAddr>,
    /// Why.
    pub why: String,
    /// True when no candidate is healthy and the answer is fail-static.
    pub degraded: bool,
    /// Seconds since the choice last changed.
    pub since_s: f64,
    /// Every candidate.
    pub candidates: Vec<CandidateStatus>,
}

/// One candidate (a farm or a server).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CandidateStatus {
    /// Name.
    pub id: String,
    /// `farm` or `server`.
    pub kind: String,
    /// `up`, `unknown`, `stale`, `down` or `drained`.
    pub health: String,
    /// Why it has that health.
    pub reason: String,
    /// 1-based rank among healthy candidates.
    pub rank: Option<usize>,
    /// The policy's view of it.
    pub shown: String,
    /// Whether the decision chose it.
    pub chosen: bool,
    /// Its addresses.
    pub addresses: Vec<IpAddr>,
    /// For a farm: servers up and in all.
    pub members: Option<Members>,
    /// For a farm: the farm node whose summary is in use (a farm may have several).
    pub node: Option<String>,
    /// Latest readings with their ages.
    pub readings: ReadingsStatus,
}

/// A reading and its age.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgedValue {
    /// The value (milliseconds for times).
    pub value: f64,
    /// Its age in seconds.
    pub age_s: f64,
}

/// Readings with ages; absent readings are omitted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReadingsStatus {
    /// Response time, ms.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub response_time_ms: Option<AgedValue>,
    /// Pending requests.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pending: Option<AgedValue>,
    /// Open connections.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub connections: Option<AgedValue>,
    /// Hops.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hops: Option<AgedValue>,
    /// Round-trip time from the deciding node, ms.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rtt_ms: Option<AgedValue>,
    /// Application metrics.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub metrics: BTreeMap<String, AgedValue>,
}

/// One farm's local decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FarmStatus {
    /// Farm name.
    pub farm: String,
    /// Seconds since its last summary arrived (global node), or 0 on the farm node.
    pub heard_s_ago: Option<f64>,
    /// The farm node whose view this is (a farm may have several): on the global node, the
    /// one whose summary is in use; on a farm node, itself.
    #[serde(default)]
    pub node: String,
    /// The local decision and its servers.
    pub local: TierStatus,
}

/// What DNS serves for a service, next to what the decision wants it to serve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PublishStatus {
    /// The addresses DNS serves: what the (first) primary last confirmed, by acknowledging
    /// an update or answering a read. Empty while unknown.
    pub addresses: Vec<IpAddr>,
    /// Their TTL (0 while unknown).
    pub ttl: u32,
    /// `ok`, or the error of the last attempt.
    pub result: String,
    /// Seconds since the last attempt.
    pub at_s_ago: Option<f64>,
    /// The addresses the decision wants DNS to serve.
    pub desired: Vec<IpAddr>,
    /// The desired addresses while some primary does not serve them yet; `null` when every
    /// primary serves the decision.
    pub pending: Option<Vec<IpAddr>>,
    /// True when DNS is behind the decision and the last update failed: clients are sent
    /// to an answer the decision has left.
    pub degraded: bool,
    /// Each primary DNS server.
    pub primaries: Vec<PrimaryStatus>,
    /// Set when this node leaves the name to another global node sharing the DNS server,
    /// with why (`defers to g1: it hears 3 candidates, this node 2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferred: Option<String>,
}

/// What one primary DNS server serves for a service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrimaryStatus {
    /// The server.
    pub server: String,
    /// The addresses it last confirmed; `null` while unknown.
    pub addresses: Option<Vec<IpAddr>>,
    /// `ok`, or the error it is failing with.
    pub result: String,
}

/// Whether any service is degraded (fail-static, or DNS behind the decision): for health
/// checks and exit codes.
pub fn any_degraded(s: &Status) -> bool {
    s.services.iter().any(|svc| {
        svc.global.as_ref().is_some_and(|g| g.degraded)
            || svc.farms.iter().any(|f| f.local.degraded)
            || svc.published.as_ref().is_some_and(|p| p.degraded)
            || svc
                .regions
                .iter()
                .any(|r| r.decision.degraded || r.published.as_ref().is_some_and(|p| p.degraded))
    })
}
