//! The global node's logic (the patent's RMO): applies the global policy per service over
//! farms (each seen as one candidate through its summaries) and servers attached directly.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::{Deserialize, Serialize};

use crate::decision::Decision;
use crate::farm::Summary;
use crate::id::{CandidateId, RegionId, ServiceId};
use crate::monitor::Report;
use crate::overrides::{Override, Overrides};
use crate::tier::{Refused, RegionSpec, Tier, TierService};
use crate::time::Timestamp;
use crate::ttl::TtlRule;

/// What the global node runs: per service, the global policy and its members (farms and
/// directly attached servers).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GlobalConfig {
    /// Services by name.
    pub services: BTreeMap<ServiceId, TierService>,
    /// How each service's TTL is chosen (a service not listed: [`TtlRule::default`]).
    #[serde(default)]
    pub ttl: BTreeMap<ServiceId, TtlRule>,
    /// Regions of clients each service is also decided for, each from where its clients
    /// are; clients in no region get the default decision (the global node's own view).
    #[serde(default)]
    pub regions: Vec<RegionSpec>,
}

impl GlobalConfig {
    /// Services with the default TTL rule.
    pub fn new(services: BTreeMap<ServiceId, TierService>) -> Self {
        GlobalConfig {
            services,
            ttl: BTreeMap::new(),
            regions: Vec::new(),
        }
    }
}

/// Everything a publisher needs to write one service's answer: the decision (its addresses
/// are the answer), the TTL and when the answer could next change.
#[derive(Clone, Debug, PartialEq)]
pub struct Publish {
    /// The service.
    pub service: ServiceId,
    /// Whose answer it is: a region's clients, or (`None`) the default region's.
    pub region: Option<RegionId>,
    /// The decision; never an empty answer.
    pub decision: Decision,
    /// The TTL, in seconds, from the service's [`TtlRule`].
    pub ttl: u32,
    /// When the decision could next change with no new input (the end of a challenger's
    /// dwell, a rotation); `None`: only a health change can change it.
    pub next_change: Option<Timestamp>,
}

/// What the global node's shell carries out.
#[derive(Clone, Debug, PartialEq)]
pub enum GlobalOutput {
    /// The answer for a service changed, or its derived TTL did: publish it.
    Publish(Publish),
}

/// The global node state machine.
#[derive(Clone, Debug)]
pub struct GlobalState {
    tier: Tier,
    ttl: BTreeMap<ServiceId, TtlRule>,
    /// What was last handed out per service and region, to publish again only on a change.
    published: BTreeMap<(ServiceId, Option<RegionId>), Publish>,
    rng: SmallRng,
    outputs: VecDeque<GlobalOutput>,
}

impl GlobalState {
    /// A global node with nothing heard yet; `seed` drives random policies.
    pub fn new(config: GlobalConfig, seed: u64) -> Self {
        let mut tier = Tier::default();
        tier.set_regions(config.regions);
        tier.set_services(config.services);
        GlobalState {
            tier,
            ttl: config.ttl,
            published: BTreeMap::new(),
            rng: SmallRng::seed_from_u64(seed),
            outputs: VecDeque::new(),
        }
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

    /// Applies a new config (a reload), keeping what is known of members that remain.
    pub fn set_config(&mut self, config: GlobalConfig, now: Timestamp) {
        self.tier.set_regions(config.regions);
        self.tier.set_services(config.services);
        self.ttl = config.ttl;
        let tier = &self.tier;
        self.published.retain(|(service, region), _| {
            tier.services().contains_key(service)
                && region
                    .as_ref()
                    .is_none_or(|r| tier.regions().iter().any(|s| &s.id == r))
        });
        self.tier.recompute_all(now, &mut self.rng);
        self.flush(now);
    }

    /// A farm node's summary.
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
        self.flush(now);
        Ok(())
    }

    /// A report about a server attached directly to the global node.
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
        self.flush(now);
        Ok(())
    }

    /// A measured round-trip time to a farm node (or a direct server).
    pub fn handle_rtt(&mut self, member: &CandidateId, rtt: Duration, now: Timestamp) {
        self.tier.handle_rtt(member, rtt, now, &mut self.rng);
        self.flush(now);
    }

    /// Drains or undrains a member; false if no service has it.
    pub fn set_drained(&mut self, member: &CandidateId, drained: bool, now: Timestamp) -> bool {
        let found = self.tier.set_drained(member, drained, now, &mut self.rng);
        self.flush(now);
        found
    }

    /// The operator overrides this global node holds (on farms, directly attached servers,
    /// and pins).
    pub fn overrides(&self) -> &Overrides {
        self.tier.overrides()
    }

    /// Replaces the operator overrides held; the answers they change go out at once.
    pub fn set_overrides(&mut self, overrides: Overrides, now: Timestamp) {
        self.tier.set_overrides(overrides, now, &mut self.rng);
        self.flush(now);
    }

    /// Overrides that expired since the last call (the node no longer holds them).
    pub fn take_expired(&mut self) -> Vec<Override> {
        self.tier.take_expired()
    }

    /// Time passed: decides what can have changed (see
    /// [`Tier::handle_timeout`](crate::tier::Tier::handle_timeout)).
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.tier.handle_timeout(now, &mut self.rng);
        self.flush(now);
    }

    /// [`GlobalState::handle_timeout`], re-deciding every service whether or not anything
    /// changed. The outputs are the same; tests and benchmarks compare the two.
    pub fn recompute_all(&mut self, now: Timestamp) {
        self.tier.recompute_all(now, &mut self.rng);
        self.flush(now);
    }

    /// The next moment [`GlobalState::handle_timeout`] has work to do.
    pub fn poll_timeout(&self, now: Timestamp) -> Option<Timestamp> {
        self.tier.poll_timeout(now)
    }

    /// The next thing for the shell to do.
    pub fn poll_output(&mut self) -> Option<GlobalOutput> {
        self.outputs.pop_front()
    }

    /// How many of a service's candidates (farms, direct servers) this node hears from at
    /// `now` ([`crate::tier::ServiceTier::heard`]); 0 for an unknown service.
    pub fn heard(&self, service: &ServiceId, now: Timestamp) -> u32 {
        self.tier
            .services()
            .get(service)
            .map_or(0, |t| t.heard(now))
    }

    /// What was last handed out for each service and region (`None`: the default region).
    pub fn published(&self) -> &BTreeMap<(ServiceId, Option<RegionId>), Publish> {
        &self.published
    }

    /// Hands out every answer (service and region) that changed, every answer whose weights
    /// moved by more than [`crate::spread::SHARE_TOLERANCE`], where the TTL is derived every
    /// answer whose next possible change moved (its TTL follows it), and where it follows
    /// load every answer whose TTL moved by a fifth.
    fn flush(&mut self, now: Timestamp) {
        self.tier.take_recomputed();
        let changed: BTreeMap<(ServiceId, Option<RegionId>), Decision> = self
            .tier
            .take_changed()
            .into_iter()
            .map(|(service, region, d)| ((service, region), d))
            .collect();
        let regions = std::iter::once(None).chain(self.tier.regions().iter().map(|r| Some(&r.id)));
        for region in regions {
            for (service, tier) in self.tier.services() {
                let rule = self.ttl.get(service).copied().unwrap_or_default();
                let next_change = tier.next_change_in(region);
                let key = (service.clone(), region.cloned());
                let last = self.published.get(&key);
                let current = tier.decision_in(region);
                let decision = match (changed.get(&key), last, current) {
                    (Some(d), _, _) => d,
                    (None, Some(p), Some(d)) => {
                        let ttl = rule.ttl_for(next_change, d.headroom, now);
                        let again = d.weights_moved(&p.decision)
                            || (rule.derive && p.next_change != next_change)
                            || (!rule.derive && rule.moved(p.ttl, ttl))
                            || (rule.derive && rule.by_load && rule.moved(p.ttl, ttl));
                        if !again {
                            continue;
                        }
                        d
                    }
                    _ => continue,
                };
                let ttl = rule.ttl_for(next_change, decision.headroom, now);
                if decision.addresses.is_empty() {
                    continue;
                }
                let publish = Publish {
                    service: service.clone(),
                    region: region.cloned(),
                    decision: decision.clone(),
                    ttl,
                    next_change,
                };
                self.published.insert(key, publish.clone());
                self.outputs.push_back(GlobalOutput::Publish(publish));
            }
        }
    }
}
