//! The status document built from data: the core's state (tiers, decisions, member
//! views), farm summaries as they arrived, and what the shell remembers (published names,
//! publisher results, certificate expiry). Nothing here reads a decision's `why` to learn
//! anything: the policy and the kind of each candidate are fields of the data.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use fedlb_core::{
    Decision, FarmId, FarmState, GlobalState, MemberView, Readings, RegionId, ServiceId, Summary,
    Timestamp,
};

use super::model::{
    AgedValue, CandidateStatus, CertificateExpiry, FarmStatus, PeersStatus, PrimaryStatus,
    PublishStatus, ReadingsStatus, RegionStatus, SCHEMA_VERSION, ServiceStatus, Status, TierStatus,
};

impl CertificateExpiry {
    /// The expiry of the credentials a node runs with.
    pub fn of(tls: &fedlb_net::NodeTls) -> Self {
        let unix = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        };
        CertificateExpiry {
            node_expires_at: unix(tls.not_after()),
            ca_expires_at: unix(tls.ca_not_after()),
        }
    }
}

impl PublishStatus {
    /// The publish status of `name`: `desired` is what the decision wants published (its
    /// addresses), `primaries` what each DNS server serves, `at_s_ago` the age of the last
    /// publish attempt.
    pub fn new(
        name: &fedlb_dns::Name,
        desired: Option<&fedlb_dns::RecordSet>,
        primaries: &[fedlb_dns::PrimaryView],
        at_s_ago: Option<f64>,
    ) -> Self {
        let desired: Vec<IpAddr> = desired.map_or_else(Vec::new, |set| {
            set.v4
                .iter()
                .map(|a| IpAddr::from(*a))
                .chain(set.v6.iter().map(|a| IpAddr::from(*a)))
                .collect()
        });
        let per: Vec<PrimaryStatus> = primaries
            .iter()
            .map(|p| PrimaryStatus {
                server: p.server.to_string(),
                addresses: p
                    .serves
                    .as_ref()
                    .map(|z| z.addrs(name).into_iter().collect()),
                result: p.failing.clone().unwrap_or_else(|| "ok".to_owned()),
            })
            .collect();
        let behind = |p: &PrimaryStatus| {
            !desired.is_empty() && p.addresses.as_ref().is_none_or(|a| a != &desired)
        };
        let pending = per.iter().any(behind);
        let degraded = primaries
            .iter()
            .zip(&per)
            .any(|(view, p)| behind(p) && view.failing.is_some());
        let first = primaries.first();
        let ttl = first
            .and_then(|p| p.serves.as_ref())
            .and_then(|z| {
                fedlb_dns::Family::ALL
                    .iter()
                    .find_map(|f| z.get(&fedlb_dns::RrKey::new(name.clone(), *f)))
            })
            .map_or(0, |d| d.ttl);
        let result = per
            .iter()
            .find(|p| p.result != "ok")
            .map_or_else(|| "ok".to_owned(), |p| p.result.clone());
        PublishStatus {
            addresses: per
                .first()
                .and_then(|p| p.addresses.clone())
                .unwrap_or_default(),
            ttl,
            result,
            at_s_ago,
            pending: pending.then(|| desired.clone()),
            desired,
            degraded,
            primaries: per,
            deferred: None,
        }
    }
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

fn aged_ms(v: Duration, at: Timestamp, now: Timestamp) -> AgedValue {
    AgedValue {
        value: v.as_secs_f64() * 1e3,
        age_s: secs(now - at),
    }
}

fn aged_n(v: f64, at: Timestamp, now: Timestamp) -> AgedValue {
    AgedValue {
        value: v,
        age_s: secs(now - at),
    }
}

impl ReadingsStatus {
    /// The readings as of `now`.
    pub fn new(r: &Readings, now: Timestamp) -> Self {
        ReadingsStatus {
            response_time_ms: r.response_time.map(|s| aged_ms(s.value, s.at, now)),
            pending: r.pending.map(|s| aged_n(s.value as f64, s.at, now)),
            connections: r.connections.map(|s| aged_n(s.value as f64, s.at, now)),
            hops: r.hops.map(|s| aged_n(f64::from(s.value), s.at, now)),
            rtt_ms: r.rtt.map(|s| aged_ms(s.value, s.at, now)),
            metrics: r
                .metrics
                .iter()
                .map(|(k, s)| (k.clone(), aged_n(s.value, s.at, now)))
                .collect(),
        }
    }
}

/// A member as its tier sees it; its kind is the one the topology declared.
fn candidate(v: &MemberView, now: Timestamp) -> CandidateStatus {
    CandidateStatus {
        id: v.id.to_string(),
        kind: v.kind.to_string(),
        health: v.health.to_string(),
        reason: v.reason.clone(),
        rank: v.rank,
        shown: v.shown.clone(),
        chosen: v.chosen,
        addresses: v.addresses.clone(),
        members: v.members,
        node: v.source.clone(),
        readings: ReadingsStatus::new(&v.readings, now),
    }
}

fn tier_status(
    policy: String,
    d: Option<&Decision>,
    candidates: Vec<CandidateStatus>,
    now: Timestamp,
) -> TierStatus {
    TierStatus {
        policy,
        chosen: d
            .map(|d| d.chosen.iter().map(|c| c.to_string()).collect())
            .unwrap_or_default(),
        answers: d.map(|d| d.addresses.clone()).unwrap_or_default(),
        why: d.map_or_else(|| "no decision yet".to_owned(), |d| d.why.clone()),
        degraded: d.is_none_or(|d| d.degraded),
        since_s: d.map_or(0.0, |d| secs(now - d.since)),
        candidates,
    }
}

/// A farm node's status.
pub fn farm_status(node: &str, farm: &FarmState, uptime: Duration, now: Timestamp) -> Status {
    let services = farm
        .tier()
        .services()
        .iter()
        .map(|(id, tier)| {
            let candidates = tier.views(now).iter().map(|v| candidate(v, now)).collect();
            ServiceStatus {
                service: id.to_string(),
                fqdn: None,
                global: None,
                farms: vec![FarmStatus {
                    farm: farm.farm().to_string(),
                    heard_s_ago: Some(0.0),
                    node: node.to_owned(),
                    local: tier_status(
                        tier.selector_config().policy.to_string(),
                        tier.decision(),
                        candidates,
                        now,
                    ),
                }],
                published: None,
                regions: Vec::new(),
            }
        })
        .collect();
    Status {
        schema: SCHEMA_VERSION,
        node: node.to_owned(),
        role: "farm".to_owned(),
        uptime_s: secs(uptime),
        services,
        certificates: None,
        peers: None,
        overrides: Vec::new(),
        changes: Vec::new(),
        loads: Vec::new(),
    }
}

/// What the global node's shell remembers for its status page, beyond the core's state.
#[derive(Clone, Debug, Default)]
pub struct GlobalExtras {
    /// The latest summary of each farm node of each farm per service, and when it arrived.
    pub summaries: BTreeMap<(ServiceId, FarmId, String), (Summary, Timestamp)>,
    /// The published name of each service.
    pub fqdns: BTreeMap<ServiceId, String>,
    /// What DNS serves per service and region (`None`: the default region).
    pub published: BTreeMap<(ServiceId, Option<RegionId>), PublishStatus>,
    /// With several global nodes: the peers as this node sees them.
    pub peers: Option<PeersStatus>,
}

impl GlobalExtras {
    /// Keeps `summary`, arrived at `now`, as the latest of its farm node for its service.
    pub fn keep_summary(&mut self, summary: Summary, now: Timestamp) {
        let key = (
            summary.service.clone(),
            summary.farm.clone(),
            summary.node.clone(),
        );
        self.summaries.insert(key, (summary, now));
    }
}

/// The global node's status.
pub fn global_status(
    node: &str,
    global: &GlobalState,
    extras: &GlobalExtras,
    uptime: Duration,
    now: Timestamp,
) -> Status {
    let services = global
        .tier()
        .services()
        .iter()
        .map(|(id, tier)| {
            let views = tier.views(now);
            let candidates = views.iter().map(|v| candidate(v, now)).collect();
            let policy = tier.selector_config().policy.to_string();
            let regions = tier
                .regions()
                .iter()
                .map(|r| RegionStatus {
                    region: r.id().to_string(),
                    decision: tier_status(
                        policy.clone(),
                        r.decision(),
                        region_candidates(&views, r.decision(), now),
                        now,
                    ),
                    published: extras
                        .published
                        .get(&(id.clone(), Some(r.id().clone())))
                        .cloned(),
                })
                .collect();
            // per farm, the summary of the farm node in use (else the latest to arrive)
            let in_use = |farm: &FarmId| {
                views
                    .iter()
                    .find(|v| v.id.as_str() == farm.as_str())
                    .and_then(|v| v.source.clone())
            };
            let mut shown: BTreeMap<&FarmId, &(Summary, Timestamp)> = BTreeMap::new();
            for ((_, farm, node), entry) in extras.summaries.iter().filter(|(k, _)| &k.0 == id) {
                let better = match shown.get(farm) {
                    None => true,
                    Some(kept) => {
                        let used = in_use(farm);
                        used.as_deref() == Some(node.as_str())
                            || (used.as_deref() != Some(kept.0.node.as_str()) && entry.1 > kept.1)
                    }
                };
                if better {
                    shown.insert(farm, entry);
                }
            }
            let farms = shown
                .into_iter()
                .map(|(farm, (s, at))| farm_from_summary(farm, s, *at, now))
                .collect();
            ServiceStatus {
                service: id.to_string(),
                fqdn: extras.fqdns.get(id).cloned(),
                global: Some(tier_status(policy, tier.decision(), candidates, now)),
                farms,
                published: extras.published.get(&(id.clone(), None)).cloned(),
                regions,
            }
        })
        .collect();
    Status {
        schema: SCHEMA_VERSION,
        node: node.to_owned(),
        role: "global".to_owned(),
        uptime_s: secs(uptime),
        services,
        certificates: None,
        peers: extras.peers.clone(),
        overrides: Vec::new(),
        changes: Vec::new(),
        loads: Vec::new(),
    }
}

/// The members as one region's decision ranks them: health, readings and reason are the
/// member's own; rank, the policy's view and whether it is chosen are the region's.
fn region_candidates(
    views: &[MemberView],
    d: Option<&Decision>,
    now: Timestamp,
) -> Vec<CandidateStatus> {
    views
        .iter()
        .map(|v| {
            let mut c = candidate(v, now);
            let standing = d.and_then(|d| d.standings.iter().find(|s| s.id == v.id));
            c.rank = standing.and_then(|s| s.rank);
            c.shown = standing.map_or_else(|| v.health.to_string(), |s| s.shown.clone());
            c.chosen = d.is_some_and(|d| d.chosen.contains(&v.id));
            c
        })
        .collect()
}

/// A farm's local decision as its latest summary (arrived at `at`) describes it: the
/// policy is the summary's `policy` field, shown as the farm node shows it.
fn farm_from_summary(farm: &FarmId, s: &Summary, at: Timestamp, now: Timestamp) -> FarmStatus {
    FarmStatus {
        farm: farm.to_string(),
        heard_s_ago: Some(secs(now - at)),
        node: s.node.clone(),
        local: TierStatus {
            policy: s.policy.clone(),
            chosen: s.chosen.iter().map(|c| c.to_string()).collect(),
            answers: s.addresses.clone(),
            why: s.why.clone(),
            degraded: s.degraded,
            since_s: secs(now - at),
            candidates: s.servers.iter().map(|v| candidate(v, now)).collect(),
        },
    }
}
