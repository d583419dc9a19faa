//! The farm node's logic (the patent's intermediate RMO): applies the local policy per
//! service over the farm's servers and summarises the farm upward as one candidate.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::{Deserialize, Serialize};

use crate::candidate::{Health, Members, Readings, Sample};
use crate::decision::Decision;
use crate::id::{CandidateId, FarmId, ServiceId};
use crate::monitor::Report;
use crate::overrides::{Override, Overrides};
use crate::tier::{MemberView, Refused, Tier, TierService, Update};
use crate::time::Timestamp;

/// What a farm node runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FarmConfig {
    /// The farm.
    pub farm: FarmId,
    /// This farm node's name (one of the farm's nodes; the farm's name when it has one):
    /// its summaries carry it.
    #[serde(default)]
    pub node: String,
    /// Each service offered here: the local policy and the servers offering it.
    pub services: BTreeMap<ServiceId, TierService>,
    /// A summary goes upward at least this often (it doubles as a heartbeat).
    pub heartbeat: Duration,
    /// Per service, the application metrics the summary carries upward and the rule each is
    /// aggregated by over the servers that are up. A metric not listed stays inside the
    /// farm: the tier above cannot rank or filter the farm by it.
    #[serde(default)]
    pub metrics: BTreeMap<ServiceId, BTreeMap<String, Aggregate>>,
}

/// How a farm turns one application metric of its servers into the farm's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Aggregate {
    /// The smallest value of any server up.
    Min,
    /// The largest value of any server up (the busiest server speaks for the farm).
    Max,
    /// The sum over servers up (e.g. DBMS users of the whole farm).
    Sum,
    /// The mean over servers up that report it.
    Mean,
}

impl Aggregate {
    /// Every rule, in the order messages list them.
    pub const ALL: [Aggregate; 4] = [
        Aggregate::Min,
        Aggregate::Max,
        Aggregate::Sum,
        Aggregate::Mean,
    ];

    /// The name a topology writes (`"sum"`).
    pub fn name(self) -> &'static str {
        match self {
            Aggregate::Min => "min",
            Aggregate::Max => "max",
            Aggregate::Sum => "sum",
            Aggregate::Mean => "mean",
        }
    }

    /// The rule a name stands for.
    pub fn from_name(name: &str) -> Option<Aggregate> {
        Aggregate::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The rule applied to `values`; `None` when there is none.
    pub fn apply(self, values: &[f64]) -> Option<f64> {
        if values.is_empty() {
            return None;
        }
        Some(match self {
            Aggregate::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
            Aggregate::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Aggregate::Sum => values.iter().sum(),
            Aggregate::Mean => values.iter().sum::<f64>() / values.len() as f64,
        })
    }
}

impl std::fmt::Display for Aggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The farm as one candidate for one service, sent to the tier above.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The farm.
    pub farm: FarmId,
    /// The farm node that built it (one farm may have several).
    #[serde(default)]
    pub node: String,
    /// The service.
    pub service: ServiceId,
    /// Restart counter of the farm node.
    pub epoch: u64,
    /// Sequence number within the epoch.
    pub seq: u64,
    /// Up while at least one server is up (or the answer is fail-static).
    pub health: Health,
    /// The local policy as an operator reads it (its `Display`: `least loaded`,
    /// `closest among load ≤ 80 %`): status pages show it from here, never from the why.
    pub policy: String,
    /// The local decision's why.
    pub why: String,
    /// The local choice.
    pub chosen: Vec<CandidateId>,
    /// Addresses of the local choice: what the farm answers with.
    pub addresses: Vec<IpAddr>,
    /// The relative weight of each of `addresses` (the local decision's weights: equal for a
    /// top-N answer, by headroom for a weighted one).
    pub weights: Vec<f64>,
    /// Servers up and in all.
    pub members: Members,
    /// Capacity of the servers that are up.
    pub capacity: f64,
    /// Aggregates: pending and connections summed over servers up, best response time; the
    /// fewest hops of the local choice (as the farm's hops probes measure them, from where
    /// they run: the farm node, or the server's agent); each declared application metric by
    /// its rule (see `aggregates`).
    pub readings: Readings,
    /// The rule each metric of `readings.metrics` was aggregated by (for status pages and
    /// the tier above's why).
    pub aggregates: BTreeMap<String, Aggregate>,
    /// True when the local answer is fail-static.
    pub degraded: bool,
    /// Every server of the farm as the farm node sees it (for the global status page).
    pub servers: Vec<MemberView>,
    /// The farm node has not heard from every server yet (it just started, or an agent has
    /// not reached it yet): another farm node of the farm may see more.
    #[serde(default)]
    pub incomplete: bool,
}

impl Summary {
    /// The update the tier above takes from this summary.
    pub fn to_update(&self) -> Update {
        Update {
            epoch: self.epoch,
            seq: self.seq,
            health: self.health,
            reason: self.why.clone(),
            readings: self.readings.clone(),
            addresses: Some(self.addresses.clone()),
            weights: self.weights.clone(),
            capacity: Some(self.capacity),
            members: Some(self.members),
            source: Some(self.node.clone()).filter(|n| !n.is_empty()),
            incomplete: self.incomplete,
        }
    }
}

impl Report {
    /// The update a tier takes from this report.
    pub fn to_update(&self) -> Update {
        Update {
            epoch: self.epoch,
            seq: self.seq,
            health: self.health,
            reason: self.reason.clone(),
            readings: self.readings.clone(),
            addresses: None,
            weights: Vec::new(),
            capacity: None,
            members: None,
            source: None,
            incomplete: false,
        }
    }
}

/// What the last summary sent for a service said, as far as deciding whether the next one
/// must go at once (the summary itself, with every server's view, went to the shell).
#[derive(Clone, Debug)]
struct Sent {
    policy: String,
    addresses: Vec<IpAddr>,
    weights: Vec<f64>,
    degraded: bool,
    members: Members,
    incomplete: bool,
}

/// What a farm node's shell carries out.
// Summaries are most of the outputs and are moved straight into a message: boxing them
// would add an allocation per summary to spare the rarer decisions a few hundred bytes.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum FarmOutput {
    /// Send this summary upward.
    Summary(Summary),
    /// The local decision for a service changed (for logs and status).
    Decision(ServiceId, Decision),
}

/// The farm node state machine.
#[derive(Clone, Debug)]
pub struct FarmState {
    /// The farm's name and heartbeat; the services live in `tier` only.
    config: FarmConfig,
    tier: Tier,
    epoch: u64,
    seq: u64,
    sent: BTreeMap<ServiceId, Sent>,
    next_heartbeat: Timestamp,
    rng: SmallRng,
    outputs: VecDeque<FarmOutput>,
}

impl FarmState {
    /// A farm node with nothing heard yet. `epoch` should differ between runs; `seed`
    /// drives random policies.
    pub fn new(mut config: FarmConfig, epoch: u64, seed: u64, now: Timestamp) -> Self {
        FarmState {
            tier: Tier::new(std::mem::take(&mut config.services)),
            next_heartbeat: now + config.heartbeat,
            config,
            epoch,
            seq: 0,
            sent: BTreeMap::new(),
            rng: SmallRng::seed_from_u64(seed),
            outputs: VecDeque::new(),
        }
    }

    /// The farm's name.
    pub fn farm(&self) -> &FarmId {
        &self.config.farm
    }

    /// Holds decisions back until `until` unless every member has been heard from (a node
    /// that just started rebuilds its view from the next reports before it acts).
    pub fn set_warmup(&mut self, until: Timestamp) {
        self.tier.set_warmup(until);
    }

    /// After a silence of every member for `window` (and at start), holds decisions back
    /// until every member is heard again or `window` has passed: see
    /// [`Tier::set_warmup_window`](crate::tier::Tier::set_warmup_window).
    pub fn set_warmup_window(&mut self, window: Duration) {
        self.tier.set_warmup_window(window);
    }

    /// How long a change that cannot have made the answer wrong (readings, a member
    /// appearing, a spare going down) may wait before it is decided on; zero decides on
    /// every update. Default [`Tier::DEFAULT_COALESCE`].
    pub fn set_coalesce(&mut self, coalesce: std::time::Duration) {
        self.tier.set_coalesce(coalesce);
    }

    /// Records every change of a decision for [`Self::take_changes`] (a node's timeline;
    /// the rule is [`crate::change`]). Off by default.
    pub fn record_changes(&mut self, on: bool) {
        self.tier.record_changes(on);
    }

    /// The changes of decisions since the last call (each service's in order).
    pub fn take_changes(&mut self) -> Vec<crate::change::Change> {
        self.tier.take_changes()
    }

    /// The tier, for status pages.
    pub fn tier(&self) -> &Tier {
        &self.tier
    }

    /// Applies a new config (a reload), keeping what is known of servers that remain.
    pub fn set_config(&mut self, mut config: FarmConfig, now: Timestamp) {
        let services = std::mem::take(&mut config.services);
        // a service whose local policy changed is summarised again at once, so the tier
        // above shows the policy the farm runs
        self.sent.retain(|s, old| {
            services
                .get(s)
                .is_some_and(|t| t.selector.policy.to_string() == old.policy)
        });
        self.tier.set_services(services);
        self.config = config;
        self.tier.recompute_all(now, &mut self.rng);
        self.flush(now, false);
    }

    /// A monitor's report (from an agent, or from a monitor this node runs itself).
    pub fn handle_report(&mut self, report: &Report, now: Timestamp) -> Result<(), Refused> {
        let member = self
            .tier
            .member_id(&report.service, report.server.as_str())
            .unwrap_or_else(|| CandidateId::from(&report.server));
        self.tier.handle_update(
            &report.service,
            &member,
            report.to_update(),
            now,
            &mut self.rng,
        )?;
        self.flush(now, false);
        Ok(())
    }

    /// A lower farm node's summary (for nested farms).
    pub fn handle_summary(&mut self, summary: &Summary, now: Timestamp) -> Result<(), Refused> {
        let member = self
            .tier
            .member_id(&summary.service, summary.farm.as_str())
            .unwrap_or_else(|| CandidateId::from(&summary.farm));
        self.tier.handle_update(
            &summary.service,
            &member,
            summary.to_update(),
            now,
            &mut self.rng,
        )?;
        self.flush(now, false);
        Ok(())
    }

    /// Drains or undrains a server; false if no service has it.
    pub fn set_drained(&mut self, server: &CandidateId, drained: bool, now: Timestamp) -> bool {
        let found = self.tier.set_drained(server, drained, now, &mut self.rng);
        self.flush(now, false);
        found
    }

    /// The operator overrides this farm node holds (on the farm's servers).
    pub fn overrides(&self) -> &Overrides {
        self.tier.overrides()
    }

    /// Replaces the operator overrides held; the decisions they change go out at once.
    pub fn set_overrides(&mut self, overrides: Overrides, now: Timestamp) {
        self.tier.set_overrides(overrides, now, &mut self.rng);
        self.flush(now, false);
    }

    /// Overrides that expired since the last call (the farm node no longer holds them).
    pub fn take_expired(&mut self) -> Vec<Override> {
        self.tier.take_expired()
    }

    /// Time passed: decides what can have changed (see
    /// [`Tier::handle_timeout`](crate::tier::Tier::handle_timeout)) and sends the
    /// heartbeat when due.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.tier.handle_timeout(now, &mut self.rng);
        let heartbeat = now >= self.next_heartbeat;
        self.flush(now, heartbeat);
    }

    /// [`FarmState::handle_timeout`], re-deciding every service whether or not anything
    /// changed. The outputs are the same; tests and benchmarks compare the two.
    pub fn recompute_all(&mut self, now: Timestamp) {
        self.tier.recompute_all(now, &mut self.rng);
        let heartbeat = now >= self.next_heartbeat;
        self.flush(now, heartbeat);
    }

    /// The next moment [`FarmState::handle_timeout`] has work to do.
    pub fn poll_timeout(&self, now: Timestamp) -> Option<Timestamp> {
        Some(
            self.tier
                .poll_timeout(now)
                .map_or(self.next_heartbeat, |t| t.min(self.next_heartbeat)),
        )
    }

    /// The next thing for the shell to do.
    pub fn poll_output(&mut self) -> Option<FarmOutput> {
        self.outputs.pop_front()
    }

    /// The summary the farm would send for `service` now.
    pub fn summary(&self, service: &ServiceId, now: Timestamp) -> Option<Summary> {
        let tier = self.tier.services().get(service)?;
        let decision = tier.decision()?;
        let servers = tier.views(now);
        let up: Vec<_> = servers.iter().filter(|c| c.health.is_up()).collect();
        let sum = |f: &dyn Fn(&Readings) -> Option<Sample<u64>>| {
            let samples: Vec<Sample<u64>> = up.iter().filter_map(|c| f(&c.readings)).collect();
            let at = samples.iter().map(|s| s.at).min()?;
            Some(Sample::new(samples.iter().map(|s| s.value).sum(), at))
        };
        // The farm is as many hops away as the closest server of its answer: that is where
        // the tier above sends clients when it chooses the farm.
        let hops = up
            .iter()
            .filter(|c| decision.chosen.contains(&c.id))
            .filter_map(|c| c.readings.hops)
            .min_by_key(|s| s.value);
        let rules = self.config.metrics.get(service);
        let mut metrics = BTreeMap::new();
        let mut aggregates = BTreeMap::new();
        for (name, rule) in rules.into_iter().flatten() {
            let samples: Vec<Sample<f64>> = up
                .iter()
                .filter_map(|c| c.readings.metrics.get(name).copied())
                .collect();
            let values: Vec<f64> = samples.iter().map(|s| s.value).collect();
            if let (Some(value), Some(at)) =
                (rule.apply(&values), samples.iter().map(|s| s.at).min())
            {
                metrics.insert(name.clone(), Sample::new(value, at));
                aggregates.insert(name.clone(), *rule);
            }
        }
        let readings = Readings {
            pending: sum(&|r| r.pending),
            connections: sum(&|r| r.connections),
            response_time: up
                .iter()
                .filter_map(|c| c.readings.response_time)
                .min_by_key(|s| s.value),
            hops,
            metrics,
            ..Readings::default()
        };
        let healthy = !up.is_empty();
        // only drained servers are up: the farm is drained (the tier above may still use
        // it when nothing else is up), not down
        let drained_up = !healthy
            && tier
                .members
                .values()
                .any(|m| m.drained && !m.disabled && m.reported_health(now).is_up());
        Some(Summary {
            farm: self.config.farm.clone(),
            node: self.config.node.clone(),
            service: service.clone(),
            epoch: self.epoch,
            seq: self.seq,
            health: if healthy {
                Health::Up
            } else if drained_up {
                Health::Drained
            } else {
                Health::Down
            },
            policy: tier.selector_config().policy.to_string(),
            why: decision.why.clone(),
            chosen: decision.chosen.clone(),
            addresses: decision.addresses.clone(),
            weights: decision.weights.clone(),
            members: Members {
                up: up.len() as u32,
                total: servers.len() as u32,
            },
            capacity: up
                .iter()
                .filter_map(|v| tier.members.get(&v.id))
                .map(|m| m.spec.capacity)
                .sum(),
            readings,
            aggregates,
            degraded: decision.degraded,
            incomplete: servers.iter().any(|v| v.health == Health::Unknown),
            servers,
        })
    }

    fn flush(&mut self, now: Timestamp, heartbeat: bool) {
        for (service, _, decision) in self.tier.take_changed() {
            self.outputs
                .push_back(FarmOutput::Decision(service, decision));
        }
        // Only a service decided since the last flush can have a new summary (a heartbeat
        // sends them all): the check stays cheap when thousands of reports arrive.
        let recomputed = self.tier.take_recomputed();
        let services: Vec<ServiceId> = if heartbeat {
            self.tier.services().keys().cloned().collect()
        } else {
            recomputed
        };
        let mut any = false;
        for service in services {
            // A cheap check first: a summary is built only when one is sent.
            let tier = &self.tier.services()[&service];
            let Some(decision) = tier.decision() else {
                continue;
            };
            // weights follow every reading: they go early only when a share moved by more
            // than the tolerance, else with the next heartbeat
            let changed = self.sent.get(&service).is_none_or(|old| {
                old.addresses != decision.addresses
                    || old.degraded != decision.degraded
                    || old.members != tier.count_up(now)
                    || (old.incomplete
                        && tier
                            .members
                            .values()
                            .all(|m| m.health(now) != Health::Unknown))
                    || crate::spread::shares_moved(
                        (&old.addresses, &old.weights),
                        (&decision.addresses, &decision.weights),
                    )
            });
            if changed || heartbeat {
                let Some(mut summary) = self.summary(&service, now) else {
                    continue;
                };
                self.seq += 1;
                summary.seq = self.seq;
                self.sent.insert(
                    service,
                    Sent {
                        policy: summary.policy.clone(),
                        addresses: summary.addresses.clone(),
                        weights: summary.weights.clone(),
                        degraded: summary.degraded,
                        members: summary.members,
                        incomplete: summary.incomplete,
                    },
                );
                self.outputs.push_back(FarmOutput::Summary(summary));
                any = true;
            }
        }
        if heartbeat || any && now + self.config.heartbeat < self.next_heartbeat {
            self.next_heartbeat = now + self.config.heartbeat;
        }
        if heartbeat {
            self.next_heartbeat = now + self.config.heartbeat;
        }
    }
}
