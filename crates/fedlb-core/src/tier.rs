//! One tier of decisions: the members (candidates) of each service, their liveness, and a
//! [`Selector`] per service. Farm nodes and the global node are thin layers over this.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::candidate::{Candidate, Distance, Health, Members, Readings};
use crate::change::Change;
use crate::decision::{Decision, Selector, SelectorConfig, Standing};
use crate::health::Liveness;
use crate::id::{CandidateId, RegionId, ServiceId};
use crate::overrides::{Action, Override, Overrides};
use crate::time::Timestamp;

/// What a member of a tier is: a server, or a farm seen as one candidate through its
/// summaries. Declared by the topology, never guessed from what the member says.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum MemberKind {
    /// A server, reported on by its monitors.
    #[default]
    Server,
    /// A farm, summarised by its farm node.
    Farm,
}

impl MemberKind {
    /// The kind as status pages name it: `server` or `farm`.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberKind::Server => "server",
            MemberKind::Farm => "farm",
        }
    }
}

impl std::fmt::Display for MemberKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A member as declared: what the topology says about a candidate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberSpec {
    /// Its name.
    pub id: CandidateId,
    /// A server or a farm.
    #[serde(default)]
    pub kind: MemberKind,
    /// Addresses answered when it is chosen (a farm's come from its summaries instead).
    pub addresses: Vec<IpAddr>,
    /// Capacity (weight).
    pub capacity: f64,
    /// Declared distance from the deciding node.
    pub distance: Option<Distance>,
    /// When its silence makes it stale, then down.
    pub liveness: Liveness,
    /// For a farm summarised by several farm nodes: their names, in topology order (see
    /// [`select_source`]). Empty: one reporter, whose updates carry no source.
    #[serde(default)]
    pub sources: Vec<String>,
}

/// A region of clients as the global tier sees it: how far each member is from those
/// clients. The global tier decides each service once for its own view (the default region,
/// for clients in no region) and once per region, over the same members and health.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegionSpec {
    /// Its name.
    pub id: RegionId,
    /// Distance from the region's clients to each member (declared, or derived from
    /// locations). A member not listed has no known distance from this region: closest
    /// ranks it after those that have one. Round-trip times and hop counts measured from the
    /// deciding node say nothing about a region's clients and are not used for it.
    pub distances: BTreeMap<CandidateId, Distance>,
}

impl RegionSpec {
    /// A member as this region's clients see it: its distance from them, and no reading
    /// measured from the deciding node's own position.
    fn view(&self, c: &Candidate) -> Candidate {
        let mut c = c.clone();
        c.distance = self.distances.get(&c.id).copied();
        c.readings.rtt = None;
        c.readings.hops = None;
        c
    }
}

/// One region's decision of one service.
#[derive(Clone, Debug)]
pub struct RegionTier {
    spec: RegionSpec,
    selector: Selector,
    decision: Option<Decision>,
    changed: bool,
}

impl RegionTier {
    fn new(spec: RegionSpec, selector: SelectorConfig) -> Self {
        RegionTier {
            spec,
            selector: Selector::new(selector),
            decision: None,
            changed: false,
        }
    }

    /// The region.
    pub fn id(&self) -> &RegionId {
        &self.spec.id
    }

    /// The region's latest decision.
    pub fn decision(&self) -> Option<&Decision> {
        self.decision.as_ref()
    }

    /// When the region's decision could next change with no new input.
    pub fn next_change(&self) -> Option<Timestamp> {
        self.selector.poll_timeout()
    }
}

/// What a member last said about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Update {
    /// Restart counter of the reporter.
    pub epoch: u64,
    /// Sequence number within the epoch.
    pub seq: u64,
    /// Reported health.
    pub health: Health,
    /// Why (from the reporter).
    pub reason: String,
    /// Readings, on the deciding node's timeline.
    pub readings: Readings,
    /// Addresses, when the reporter decides them (a farm's local answer).
    pub addresses: Option<Vec<IpAddr>>,
    /// The relative weight of each of `addresses` (a farm's weighted answer); empty: equal.
    #[serde(default)]
    pub weights: Vec<f64>,
    /// For a farm: capacity of its healthy members.
    pub capacity: Option<f64>,
    /// For a farm: how many members are up.
    pub members: Option<Members>,
    /// The reporter that sent it, for a member with several (a farm node of its farm).
    #[serde(default)]
    pub source: Option<String>,
    /// For a farm: its farm node has not heard from every server yet (it just started, or
    /// an agent has not reached it yet), so its view may miss servers another node sees.
    #[serde(default)]
    pub incomplete: bool,
}

impl Update {
    /// Whether a decision would read the same from `other` as from this update: the same
    /// health, readings (whenever measured), answer, capacity and counts. The why, the
    /// sequence numbers and when readings were taken are not decided on.
    fn same_input(&self, other: &Update) -> bool {
        self.health == other.health
            && self.readings.same_values(&other.readings)
            && self.addresses == other.addresses
            && self.weights == other.weights
            && self.capacity == other.capacity
            && self.members == other.members
    }
}

/// A member's state at this tier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberState {
    /// As declared.
    pub spec: MemberSpec,
    /// The latest update, and when it arrived.
    pub last: Option<(Update, Timestamp)>,
    /// Drained by an operator (an [`Override`] in force).
    pub drained: bool,
    /// Disabled by an operator (an [`Override`] in force).
    #[serde(default)]
    pub disabled: bool,
    /// The override in force on it, as an operator reads it (`drained by alice until
    /// 14:30 UTC: kernel upgrade`).
    #[serde(default)]
    pub held: Option<String>,
    /// Measured round-trip time from the deciding node.
    pub rtt: Option<crate::candidate::Sample<std::time::Duration>>,
    /// For a member with several sources: the latest update of each, and when it arrived
    /// (`last` is then the latest from any of them).
    pub heard: BTreeMap<String, (Update, Timestamp)>,
}

/// Which of a member's sources (the farm nodes of one farm) speaks for it at `now`, from
/// what each last said and when:
///
/// 1. the first source in topology order that is live (heard within its stale window),
///    reports the member up and has heard from every server of the farm;
/// 2. else the first live source that reports the member up (a node that just started and
///    has not heard from every agent yet is used only when no complete view is up);
/// 3. else the first live source (it reports the member down, or has nothing to say yet);
/// 4. else the source heard most recently (ties: topology order), whose silence then makes
///    the member stale, then down, as a lone reporter's does.
///
/// So the member is up while any source reports it up. The rule reads only the sources'
/// last updates and the time — not which source spoke last, nor which was used before — so
/// every global node with the same inputs picks the same source, and the choice moves only
/// when the source in use goes silent, stops reporting up or another earlier node's view
/// becomes complete (never with the arrival order of equal summaries, as "the freshest"
/// would, several times a second). A restarted node takes over again only once its view is
/// as complete as the one in use, so its return changes no answer.
pub fn select_source<'a>(
    order: &'a [String],
    heard: &'a BTreeMap<String, (Update, Timestamp)>,
    liveness: &Liveness,
    now: Timestamp,
) -> Option<(&'a String, &'a (Update, Timestamp))> {
    let in_order = || order.iter().filter_map(|s| heard.get_key_value(s));
    let live = |(_, (_, at)): &(&String, &(Update, Timestamp))| {
        now.saturating_since(*at) < liveness.stale_after
    };
    in_order()
        .find(|e| live(e) && e.1.0.health.is_up() && !e.1.0.incomplete)
        .or_else(|| in_order().find(|e| live(e) && e.1.0.health.is_up()))
        .or_else(|| in_order().find(live))
        .or_else(|| {
            in_order().fold(
                None,
                |best: Option<(&String, &(Update, Timestamp))>, e| match best {
                    Some(b) if b.1.1 >= e.1.1 => Some(b),
                    _ => Some(e),
                },
            )
        })
}

impl MemberState {
    /// The update in use at `now`, and when it arrived: the latest one, or for a member
    /// with several sources the one [`select_source`] picks.
    pub fn current(&self, now: Timestamp) -> Option<&(Update, Timestamp)> {
        if self.spec.sources.is_empty() {
            return self.last.as_ref();
        }
        select_source(&self.spec.sources, &self.heard, &self.spec.liveness, now).map(|(_, u)| u)
    }

    /// The source whose update is in use at `now` (a member with several sources only).
    pub fn source_in_use(&self, now: Timestamp) -> Option<&String> {
        select_source(&self.spec.sources, &self.heard, &self.spec.liveness, now).map(|(s, _)| s)
    }

    /// The next moment the member's health or source in use can change with no new update.
    fn next_liveness_change(&self, now: Timestamp) -> Option<Timestamp> {
        if self.spec.sources.is_empty() {
            return self
                .last
                .as_ref()
                .and_then(|(_, at)| self.spec.liveness.next_change(*at, now));
        }
        self.heard
            .values()
            .filter_map(|(_, at)| self.spec.liveness.next_change(*at, now))
            .min()
    }

    /// The member as a candidate at `now`.
    pub fn candidate(&self, now: Timestamp) -> Candidate {
        let mut c = self.reported_candidate(now);
        c.health = self.health(now);
        c
    }

    /// The member as a candidate at `now` with the health its reporter gives it (a drain
    /// or disable is left to [`Overrides::apply`]).
    pub fn reported_candidate(&self, now: Timestamp) -> Candidate {
        let mut c = Candidate::new(
            self.spec.id.clone(),
            self.spec.addresses.clone(),
            self.spec.capacity,
        );
        c.distance = self.spec.distance;
        c.health = self.reported_health(now);
        if let Some((u, _)) = self.current(now) {
            c.readings = u.readings.clone();
            if let Some(a) = &u.addresses {
                c.addresses = a.clone();
                c.weights = u.weights.clone();
            }
            if let Some(cap) = u.capacity {
                c.capacity = cap.max(f64::MIN_POSITIVE);
            }
            c.members = u.members;
        }
        if let Some(rtt) = self.rtt {
            c.readings.rtt = Some(rtt);
        }
        c
    }

    /// The member's health at `now`, without building the whole candidate.
    pub fn health(&self, now: Timestamp) -> Health {
        if self.drained || self.disabled {
            return Health::Drained;
        }
        self.reported_health(now)
    }

    /// The member's health at `now` as its reporter gives it, whatever an operator holds.
    pub fn reported_health(&self, now: Timestamp) -> Health {
        match self.current(now) {
            None => Health::Unknown,
            Some((u, at)) => self.spec.liveness.health_at(u.health, *at, now),
        }
    }

    /// Why the member has its health, for status pages.
    pub fn reason(&self, now: Timestamp) -> String {
        if let Some(held) = self.held.as_ref().filter(|_| self.drained || self.disabled) {
            return held.clone();
        }
        match (self.current(now), self.drained || self.disabled) {
            (_, true) => "drained by operator".to_owned(),
            (None, false) => "not heard from yet".to_owned(),
            (Some((u, at)), false) => match self.spec.liveness.health_at(u.health, *at, now) {
                Health::Stale | Health::Down if u.health != Health::Down => {
                    format!("silent for {}", crate::time::human(now - *at))
                }
                _ => u.reason.clone(),
            },
        }
    }
}

/// A member as shown on status pages and in farm summaries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberView {
    /// Its name.
    pub id: CandidateId,
    /// A server or a farm, as declared.
    pub kind: MemberKind,
    /// Health at the time of the view.
    pub health: Health,
    /// Why it has that health.
    pub reason: String,
    /// 1-based rank among healthy members in the latest decision.
    pub rank: Option<usize>,
    /// The policy's view of it (`load 35 %`), or its health.
    pub shown: String,
    /// Whether the latest decision chose it.
    pub chosen: bool,
    /// Its addresses.
    pub addresses: Vec<IpAddr>,
    /// Its latest readings.
    pub readings: Readings,
    /// For a farm: members up and in all.
    pub members: Option<Members>,
    /// For a farm with several farm nodes: the one whose summary is in use.
    #[serde(default)]
    pub source: Option<String>,
}

/// One service at one tier.
#[derive(Clone, Debug)]
pub struct ServiceTier {
    /// Members by name.
    pub members: BTreeMap<CandidateId, MemberState>,
    selector: Selector,
    decision: Option<Decision>,
    /// Last time the answer changed (for outputs).
    changed: bool,
    /// The same service decided for each region's clients (empty: one decision for all).
    regions: Vec<RegionTier>,
    /// Since when an update waits to be taken into a decision (readings only: health
    /// changes are decided at once).
    dirty_since: Option<Timestamp>,
    /// Whether a decision was made since the last `take_recomputed`.
    recomputed: bool,
    /// No member's liveness changes before this (a lower bound, refreshed on every
    /// timeout), so that finding the next timeout does not visit every member.
    liveness_floor: Option<Timestamp>,
    /// Whether `liveness_floor` is the exact next change as of its last refresh (no update
    /// lowered it since): a timeout then need not visit the members to refresh it.
    floor_exact: bool,
    /// An input changed since the last decision and no decision is due for it yet (taken
    /// during a warm-up, or a reload): the next timeout decides.
    stale: bool,
    /// The last decision changed what is chosen (here or in a region): deciding again on
    /// the same input may take one more step (one hysteresis swap per decision), so the
    /// next timeout decides again.
    unsettled: bool,
    /// The service's name (for the changes it records).
    id: ServiceId,
    /// Changes of its decisions not taken yet (see [`Tier::record_changes`]); `None`: not
    /// recorded.
    changes: Option<VecDeque<Change>>,
}

impl ServiceTier {
    fn new(
        id: ServiceId,
        selector: SelectorConfig,
        members: &[MemberSpec],
        regions: &[RegionSpec],
    ) -> Self {
        let mut t = ServiceTier {
            id,
            changes: None,
            members: BTreeMap::new(),
            regions: regions
                .iter()
                .map(|r| RegionTier::new(r.clone(), selector.clone()))
                .collect(),
            selector: Selector::new(selector),
            decision: None,
            changed: false,
            dirty_since: None,
            recomputed: false,
            liveness_floor: None,
            floor_exact: false,
            stale: true,
            unsettled: false,
        };
        t.set_members(members);
        t
    }

    fn set_members(&mut self, specs: &[MemberSpec]) {
        // members known before changed: ask for a timeout at once, which recomputes the floor
        if self.members.values().any(|m| m.last.is_some()) {
            self.liveness_floor = Some(Timestamp::ZERO);
        }
        self.floor_exact = false;
        self.stale = true;
        let mut old = std::mem::take(&mut self.members);
        // built in one go (not member by member): a map collected from a list fills its
        // nodes, where inserting one by one leaves them a third empty on average
        let members: Vec<(CandidateId, MemberState)> = specs
            .iter()
            .map(|spec| {
                let state = match old.remove(&spec.id) {
                    Some(mut s) => {
                        s.spec = spec.clone();
                        s.heard.retain(|source, _| spec.sources.contains(source));
                        s
                    }
                    None => MemberState {
                        spec: spec.clone(),
                        last: None,
                        drained: false,
                        disabled: false,
                        held: None,
                        rtt: None,
                        heard: BTreeMap::new(),
                    },
                };
                (spec.id.clone(), state)
            })
            .collect();
        self.members = members.into_iter().collect();
    }

    /// Applies the regions (a reload), keeping each remaining region's decision state.
    fn set_regions(&mut self, regions: &[RegionSpec]) {
        self.stale = true;
        let config = self.selector.config().clone();
        let mut old = std::mem::take(&mut self.regions);
        self.regions = regions
            .iter()
            .map(|spec| match old.iter().position(|r| r.spec.id == spec.id) {
                Some(i) => {
                    let mut r = old.swap_remove(i);
                    r.spec = spec.clone();
                    r.selector.set_config(config.clone());
                    r
                }
                None => RegionTier::new(spec.clone(), config.clone()),
            })
            .collect();
    }

    /// The candidates as they are at `now`.
    pub fn candidates(&self, now: Timestamp) -> Vec<Candidate> {
        self.members.values().map(|m| m.candidate(now)).collect()
    }

    /// How many members this node hears from at `now`: reported within their liveness'
    /// stale window, whatever the health they report. Several global nodes compare it
    /// ([`crate::peers`]): a node cut off from a farm hears fewer.
    pub fn heard(&self, now: Timestamp) -> u32 {
        self.members
            .values()
            .filter(|m| {
                m.last
                    .as_ref()
                    .is_some_and(|(_, at)| now - *at < m.spec.liveness.stale_after)
            })
            .count() as u32
    }

    /// How many members are up at `now`, and how many there are.
    pub fn count_up(&self, now: Timestamp) -> Members {
        Members {
            up: self
                .members
                .values()
                .filter(|m| m.health(now).is_up())
                .count() as u32,
            total: self.members.len() as u32,
        }
    }

    /// Every member as an operator sees it: health, why, rank and readings.
    pub fn views(&self, now: Timestamp) -> Vec<MemberView> {
        let decision = self.decision.as_ref();
        // each member's standing by name, without a scan of the standings per member
        let mut standings: Vec<&Standing> =
            decision.map_or(Vec::new(), |d| d.standings.iter().collect());
        standings.sort_by(|a, b| a.id.cmp(&b.id));
        let standing_of = |id: &CandidateId| {
            let i = standings.partition_point(|s| &s.id < id);
            standings.get(i).copied().filter(|s| &s.id == id)
        };
        self.members
            .values()
            .map(|m| {
                let c = m.candidate(now);
                let standing = standing_of(&c.id);
                MemberView {
                    reason: m.reason(now),
                    rank: standing.and_then(|s| s.rank),
                    shown: standing.map_or_else(|| c.health.to_string(), |s| s.shown.clone()),
                    chosen: decision.is_some_and(|d| d.chosen.contains(&c.id)),
                    id: c.id,
                    kind: m.spec.kind,
                    health: c.health,
                    addresses: c.addresses,
                    readings: c.readings,
                    members: c.members,
                    source: m.source_in_use(now).cloned(),
                }
            })
            .collect()
    }

    /// The latest decision.
    pub fn decision(&self) -> Option<&Decision> {
        self.decision.as_ref()
    }

    /// When the decision could next change with no new input: the end of a challenger's
    /// dwell, or a rotating policy's next turn. `None`: only a health change can change it.
    /// A publisher can derive its TTL from this.
    pub fn next_change(&self) -> Option<Timestamp> {
        self.selector.poll_timeout()
    }

    /// The decision for one region's clients (`None`: the default region's, that is
    /// [`ServiceTier::decision`]); `None` for an unknown region or before a first decision.
    pub fn decision_in(&self, region: Option<&RegionId>) -> Option<&Decision> {
        match region {
            None => self.decision(),
            Some(id) => self.region(id)?.decision(),
        }
    }

    /// When the decision for one region's clients could next change with no new input.
    pub fn next_change_in(&self, region: Option<&RegionId>) -> Option<Timestamp> {
        match region {
            None => self.next_change(),
            Some(id) => self.region(id)?.next_change(),
        }
    }

    /// Each region's decision state, in the order the regions were declared.
    pub fn regions(&self) -> &[RegionTier] {
        &self.regions
    }

    fn region(&self, id: &RegionId) -> Option<&RegionTier> {
        self.regions.iter().find(|r| &r.spec.id == id)
    }

    /// Whether any decision (the default one or a region's) answers `member`, and whether
    /// any of them is fail-static.
    fn answering(&self, member: &CandidateId) -> (bool, bool) {
        let decisions = std::iter::once(self.decision.as_ref())
            .chain(self.regions.iter().map(|r| r.decision.as_ref()));
        let mut chosen = false;
        let mut degraded = false;
        for d in decisions {
            match d {
                Some(d) => {
                    chosen |= d.chosen.contains(member);
                    degraded |= d.degraded;
                }
                None => degraded = true,
            }
        }
        (chosen, degraded)
    }

    /// The selector's config.
    pub fn selector_config(&self) -> &SelectorConfig {
        self.selector.config()
    }

    fn ready(&self, warmup: Warmup, now: Timestamp) -> bool {
        warmup.until.is_none_or(|t| now >= t)
            || self.members.values().all(|m| {
                m.drained
                    || m.last
                        .as_ref()
                        .is_some_and(|(_, at)| warmup.since.is_none_or(|s| *at >= s))
            })
    }

    fn recompute(
        &mut self,
        id: &ServiceId,
        overrides: &Overrides,
        now: Timestamp,
        rng: &mut impl Rng,
    ) {
        self.dirty_since = None;
        self.stale = false;
        self.recomputed = true;
        let candidates: Vec<Candidate> = self
            .members
            .values()
            .map(|m| m.reported_candidate(now))
            .collect();
        // regions see the candidates again through their own eyes; without regions (the
        // common case) the one copy is the overrides' to keep
        let for_regions = if self.regions.is_empty() {
            Vec::new()
        } else {
            candidates.clone()
        };
        let applied = overrides.apply(id, None, candidates, now);
        let mut d = self.selector.decide(&applied.candidates, now, rng);
        applied.finish(&mut d);
        let rotating = !self.selector.config().policy.is_stable();
        // what the change rule reads: the candidates as decided, disabled ones held out
        let judged = |applied: &crate::overrides::Applied| {
            crate::change::with_held_out(
                &applied.candidates,
                applied.disabled.iter().map(|(held, _)| held),
            )
        };
        let moved = |old: &Option<Decision>, d: &Decision| {
            old.as_ref().is_none_or(|old| old.chosen != d.chosen)
        };
        if let Some(log) = &mut self.changes {
            let c = crate::change::change(
                &self.id,
                None,
                self.decision.as_ref(),
                &d,
                &judged(&applied),
                rotating,
                now,
            );
            record(log, c, PENDING_CHANGES);
        }
        let mut unsettled = moved(&self.decision, &d);
        let changed = self
            .decision
            .as_ref()
            .is_none_or(|old| !old.same_answer(&d));
        self.changed |= changed;
        self.decision = Some(d);
        for region in &mut self.regions {
            let seen: Vec<Candidate> = for_regions.iter().map(|c| region.spec.view(c)).collect();
            let applied = overrides.apply(id, Some(&region.spec.id), seen, now);
            let mut d = region.selector.decide(&applied.candidates, now, rng);
            applied.finish(&mut d);
            d.why = format!("{} clients: {}", region.spec.id, d.why);
            if let Some(log) = &mut self.changes {
                let c = crate::change::change(
                    &self.id,
                    Some(&region.spec.id),
                    region.decision.as_ref(),
                    &d,
                    &judged(&applied),
                    rotating,
                    now,
                );
                record(log, c, PENDING_CHANGES);
            }
            unsettled |= moved(&region.decision, &d);
            region.changed |= region
                .decision
                .as_ref()
                .is_none_or(|old| !old.same_answer(&d));
            region.decision = Some(d);
        }
        self.unsettled = unsettled;
    }

    /// Whether deciding again at `now` could give another decision than the last one, with
    /// no new input: something changed since (an update waiting in its window, a member's
    /// liveness deadline passed, a reload), a challenger's dwell ended, or a rotating
    /// policy's period turned. Deciding a service for which this is false gives the same
    /// decision (a hold's why does not count the time) and draws no randomness, so a timeout
    /// skips it.
    fn due(&self, now: Timestamp) -> bool {
        let selector = |s: &Selector| s.poll_timeout().is_some_and(|t| t <= now);
        self.stale
            || self.unsettled
            || self.dirty_since.is_some()
            || self.decision.is_none()
            || self.liveness_floor.is_some_and(|t| t <= now)
            || selector(&self.selector)
            || self.regions.iter().any(|r| selector(&r.selector))
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        self.liveness_floor
            .into_iter()
            .chain(self.selector.poll_timeout())
            .chain(
                self.regions
                    .iter()
                    .filter_map(|r| r.selector.poll_timeout()),
            )
            .min()
    }

    /// Recomputes the exact next liveness change of any member.
    fn refresh_liveness(&mut self, now: Timestamp) {
        // An exact floor still ahead stays exact: no member has a deadline before it.
        if self.floor_exact && self.liveness_floor.is_none_or(|t| t > now) {
            return;
        }
        self.floor_exact = true;
        self.liveness_floor = self
            .members
            .values()
            .filter_map(|m| m.next_liveness_change(now))
            .min();
    }
}

/// How many changes a service keeps until [`Tier::take_recomputed`] collects them (the
/// oldest go first): collected after every event, so this only bounds a busy moment.
pub const PENDING_CHANGES: usize = 64;

/// How many collected changes a tier keeps for [`Tier::take_changes`] (the oldest go
/// first): the shell takes them after every event, so this only bounds a tier nobody reads.
pub const COLLECTED_CHANGES: usize = 1024;

fn record(log: &mut VecDeque<Change>, change: Option<Change>, cap: usize) {
    if let Some(c) = change {
        if log.len() >= cap {
            log.pop_front();
        }
        log.push_back(c);
    }
}

/// When a tier holds its decisions back: until `until`, unless every member has been heard
/// from since `since`.
#[derive(Clone, Copy, Debug, Default)]
struct Warmup {
    since: Option<Timestamp>,
    until: Option<Timestamp>,
}

/// Every service of one tier.
#[derive(Clone, Debug)]
pub struct Tier {
    services: BTreeMap<ServiceId, ServiceTier>,
    /// Until then, a service decides only once every member has been heard from: a node
    /// that just (re)started must not act on the first few reports it gets.
    warmup: Warmup,
    /// With a window set, the first update after the tier heard nobody for that long (or
    /// ever) starts a warm-up of that length: see [`Tier::set_warmup_window`].
    warmup_window: Option<Duration>,
    /// When any member of any service was last heard from.
    last_heard: Option<Timestamp>,
    /// How long a change of readings may wait before it is decided on.
    coalesce: Duration,
    /// The regions every service is also decided for.
    regions: Vec<RegionSpec>,
    /// Operator overrides held by this tier's node.
    overrides: Overrides,
    /// Overrides that expired since the last [`Tier::take_expired`].
    expired: Vec<Override>,
    /// Whether services record the changes of their decisions.
    record_changes: bool,
    /// Changes collected from the services, not taken yet.
    changes: VecDeque<Change>,
}

/// A service's config at one tier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TierService {
    /// How it is decided.
    pub selector: SelectorConfig,
    /// Its members.
    pub members: Vec<MemberSpec>,
}

/// Why an update was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The service is not known at this tier.
    #[error("unknown service \"{0}\"")]
    UnknownService(ServiceId),
    /// The member is not declared for the service at this tier.
    #[error("\"{member}\" is not a member of service \"{service}\" here")]
    UnknownMember {
        /// The service.
        service: ServiceId,
        /// The member.
        member: CandidateId,
    },
    /// An update from a source the member does not declare (a farm node of another farm).
    #[error("\"{source_name}\" is not a source of \"{member}\"")]
    UnknownSource {
        /// The member.
        member: CandidateId,
        /// The source named in the update.
        source_name: String,
    },
    /// An update older than one already taken (reordered on the wire).
    #[error("update {seq} from \"{member}\" is older than the last one taken ({last})")]
    Outdated {
        /// The member.
        member: CandidateId,
        /// Its sequence number.
        seq: u64,
        /// The last one taken.
        last: u64,
    },
}

impl Default for Tier {
    fn default() -> Self {
        Tier {
            services: BTreeMap::new(),
            warmup: Warmup::default(),
            warmup_window: None,
            last_heard: None,
            coalesce: Tier::DEFAULT_COALESCE,
            regions: Vec::new(),
            overrides: Overrides::new(),
            expired: Vec::new(),
            record_changes: false,
            changes: VecDeque::new(),
        }
    }
}

impl Tier {
    /// How long a change of readings alone may wait before it is decided on, by default.
    pub const DEFAULT_COALESCE: Duration = Duration::from_millis(100);

    /// Sets how long a change of readings alone may wait before it is decided on (zero:
    /// decide on every update). Health changes are always decided at once.
    pub fn set_coalesce(&mut self, coalesce: Duration) {
        self.coalesce = coalesce;
    }

    /// Records every change of every decision (see [`crate::change`]) for
    /// [`Tier::take_changes`]; off by default (a simulation has no timeline to show).
    pub fn record_changes(&mut self, on: bool) {
        self.record_changes = on;
        if !on {
            self.changes.clear();
        }
        for t in self.services.values_mut() {
            match (on, &t.changes) {
                (true, None) => t.changes = Some(VecDeque::new()),
                (false, Some(_)) => t.changes = None,
                _ => {}
            }
        }
    }

    /// The changes of decisions collected since the last call (by
    /// [`Tier::take_recomputed`], which the role state machines call after every event, so
    /// that this costs nothing when nothing changed), oldest first.
    pub fn take_changes(&mut self) -> Vec<Change> {
        let mut out: Vec<Change> = self.changes.drain(..).collect();
        out.sort_by_key(|c| c.at);
        out
    }

    /// Services decided since the last call (their summaries may have changed). Also
    /// collects the changes they recorded for [`Tier::take_changes`].
    pub fn take_recomputed(&mut self) -> Vec<ServiceId> {
        let mut out = Vec::new();
        for (id, t) in &mut self.services {
            if std::mem::take(&mut t.recomputed) {
                out.push(id.clone());
                if let Some(log) = &mut t.changes {
                    for c in log.drain(..) {
                        record(&mut self.changes, Some(c), COLLECTED_CHANGES);
                    }
                }
            }
        }
        out
    }

    /// A tier with the given services.
    pub fn new(services: BTreeMap<ServiceId, TierService>) -> Self {
        let mut t = Tier::default();
        t.set_services(services);
        t
    }

    /// Applies a new config (a reload), keeping what is known of members that remain.
    pub fn set_services(&mut self, services: BTreeMap<ServiceId, TierService>) {
        let mut old = std::mem::take(&mut self.services);
        for (id, svc) in services {
            let tier = match old.remove(&id) {
                Some(mut t) => {
                    t.selector.set_config(svc.selector);
                    t.set_members(&svc.members);
                    t.set_regions(&self.regions);
                    t
                }
                None => {
                    let mut t =
                        ServiceTier::new(id.clone(), svc.selector, &svc.members, &self.regions);
                    if self.record_changes {
                        t.changes = Some(VecDeque::new());
                    }
                    t
                }
            };
            self.services.insert(id, tier);
        }
        // members added by the reload take the overrides held; `now` only decides expiry,
        // and expired overrides are gone at the next timeout
        self.sync_overrides(Timestamp::ZERO);
    }

    /// Decides every service for each region's clients too (besides the default region);
    /// each remaining region keeps its decision state. Recompute afterwards.
    pub fn set_regions(&mut self, regions: Vec<RegionSpec>) {
        for tier in self.services.values_mut() {
            tier.set_regions(&regions);
        }
        self.regions = regions;
    }

    /// The regions every service is also decided for.
    pub fn regions(&self) -> &[RegionSpec] {
        &self.regions
    }

    /// Services by name.
    pub fn services(&self) -> &BTreeMap<ServiceId, ServiceTier> {
        &self.services
    }

    /// The id of member `name` of `service`, shared with the tier's own (a reference
    /// count, not an allocation); `None` when the service has no such member.
    pub fn member_id(&self, service: &ServiceId, name: &str) -> Option<CandidateId> {
        self.services
            .get(service)?
            .members
            .get_key_value(name)
            .map(|(id, _)| id.clone())
    }

    /// Takes a member's update.
    pub fn handle_update(
        &mut self,
        service: &ServiceId,
        member: &CandidateId,
        update: Update,
        now: Timestamp,
        rng: &mut impl Rng,
    ) -> Result<(), Refused> {
        let tier = self
            .services
            .get_mut(service)
            .ok_or_else(|| Refused::UnknownService(service.clone()))?;
        let state = tier
            .members
            .get_mut(member)
            .ok_or_else(|| Refused::UnknownMember {
                service: service.clone(),
                member: member.clone(),
            })?;
        let multi = !state.spec.sources.is_empty();
        let previous = if multi {
            let Some(source) = update
                .source
                .as_ref()
                .filter(|s| state.spec.sources.contains(s))
            else {
                return Err(Refused::UnknownSource {
                    member: member.clone(),
                    source_name: update.source.clone().unwrap_or_default(),
                });
            };
            state.heard.get(source)
        } else {
            state.last.as_ref()
        };
        if let Some((last, _)) = previous
            && last.epoch == update.epoch
            && update.seq < last.seq
        {
            return Err(Refused::Outdated {
                member: member.clone(),
                seq: update.seq,
                last: last.seq,
            });
        }
        let warmup = Self::note_heard(
            &mut self.warmup,
            &mut self.last_heard,
            self.warmup_window,
            now,
        );
        // Health and answer changes are decided at once; a change of readings only waits
        // up to `coalesce`, so that a node taking thousands of reports a second decides a
        // few times a second instead of once per report.
        // Urgent: the answer may be wrong now — the chosen member's health or answer
        // changed, or a member came up while nothing healthy was answered. Anything else (a
        // member appearing, a spare going down, a count) waits up to `coalesce`.
        // the health its reporter gives it: a drained member's still matters (it answers
        // when nothing else is up)
        let before = state.reported_health(now);
        let addresses_before = state.current(now).map(|(u, _)| u.addresses.clone());
        let deadline = state
            .spec
            .liveness
            .next_change(now, now.saturating_sub(Duration::from_nanos(1)));
        // a member with several sources (farm nodes) may switch source on any summary:
        // only a single-source member's repetition is known to change nothing
        let repeated = !multi
            && state
                .last
                .as_ref()
                .is_some_and(|(last, _)| last.same_input(&update));
        if multi {
            let source = update.source.clone().expect("checked above");
            state.heard.insert(source, (update.clone(), now));
        }
        state.last = Some((update, now));
        let after = state.reported_health(now);
        let moved = addresses_before.is_none_or(|before| {
            state
                .current(now)
                .is_none_or(|(u, _)| u.addresses != before)
        });
        tier.liveness_floor = match (tier.liveness_floor, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tier.floor_exact = false;
        let (chosen, degraded) = tier.answering(member);
        let material = tier.decision.is_none()
            || (chosen && (after != before || moved))
            || (degraded && after.is_up() && before != after);
        if !tier.ready(warmup, now) {
            tier.stale = true;
            return Ok(());
        }
        if material || self.coalesce.is_zero() {
            tier.recompute(service, &self.overrides, now, rng);
        } else if !(repeated && before == after && tier.selector.config().policy.is_stable()) {
            // A member repeating what it said, with its health unchanged, gives a stable
            // policy the same decision (deciding again reads the same values and draws
            // nothing): a farm summarising the same thing every heartbeat, or an agent
            // reporting the same load, costs no decision. Its liveness moved on above.
            tier.dirty_since.get_or_insert(now);
        }
        Ok(())
    }

    /// Records a measured RTT to a member, in every service it belongs to.
    pub fn handle_rtt(
        &mut self,
        member: &CandidateId,
        rtt: std::time::Duration,
        now: Timestamp,
        rng: &mut impl Rng,
    ) {
        for (id, tier) in self.services.iter_mut() {
            if let Some(m) = tier.members.get_mut(member) {
                m.rtt = Some(crate::candidate::Sample::new(rtt, now));
                if tier.ready(self.warmup, now) {
                    if self.coalesce.is_zero() {
                        tier.recompute(id, &self.overrides, now, rng);
                    } else {
                        tier.dirty_since.get_or_insert(now);
                    }
                } else {
                    tier.stale = true;
                }
            }
        }
    }

    /// Drains (or undrains) a member in every service: holds (or drops) an override with
    /// id `drain:<member>` set by `operator`. False if no service has the member.
    pub fn set_drained(
        &mut self,
        member: &CandidateId,
        drained: bool,
        now: Timestamp,
        rng: &mut impl Rng,
    ) -> bool {
        let found = self
            .services
            .values()
            .any(|t| t.members.contains_key(member));
        if !found {
            return false;
        }
        let mut overrides = self.overrides.clone();
        let id = format!("drain:{member}");
        let _ = overrides.remove(&id);
        if drained {
            overrides.replace(Override {
                id,
                action: Action::Drain,
                target: member.clone(),
                operator: "operator".to_owned(),
                reason: String::new(),
                until: None,
                until_label: None,
            });
        }
        self.set_overrides(overrides, now, rng);
        true
    }

    /// The operator overrides held.
    pub fn overrides(&self) -> &Overrides {
        &self.overrides
    }

    /// Replaces the operator overrides held, and decides again every service they (or
    /// the ones they replace) can change.
    pub fn set_overrides(&mut self, overrides: Overrides, now: Timestamp, rng: &mut impl Rng) {
        self.overrides = overrides;
        self.sync_overrides(now);
        for (id, tier) in self.services.iter_mut() {
            if tier.ready(self.warmup, now) {
                tier.recompute(id, &self.overrides, now, rng);
            } else {
                tier.stale = true;
            }
        }
    }

    /// Overrides that stopped applying (their `until` passed) since the last call: the
    /// tier no longer holds them.
    pub fn take_expired(&mut self) -> Vec<Override> {
        std::mem::take(&mut self.expired)
    }

    /// Sets each member's drained and disabled flags (and what status pages say of them)
    /// from the overrides in force at `now`.
    fn sync_overrides(&mut self, now: Timestamp) {
        for tier in self.services.values_mut() {
            for m in tier.members.values_mut() {
                let drain = self.overrides.drain_of(&m.spec.id, now);
                let disable = self.overrides.disable_of(&m.spec.id, now);
                m.drained = drain.is_some();
                m.disabled = disable.is_some();
                m.held = disable.or(drain).map(Override::describe);
            }
        }
    }

    /// Re-decides every service, whether or not anything changed (a reload). Gives the
    /// same decisions as [`Tier::handle_timeout`], which decides only what can have changed.
    pub fn recompute_all(&mut self, now: Timestamp, rng: &mut impl Rng) {
        self.expire_overrides(now);
        for (id, tier) in self.services.iter_mut() {
            tier.refresh_liveness(now);
            if tier.ready(self.warmup, now) {
                tier.recompute(id, &self.overrides, now, rng);
            }
        }
    }

    /// Time passed: re-decides the services whose decision can have changed since it was
    /// made — an update waiting in its coalescing window, a member's stale or down deadline
    /// passed, a challenger's dwell or a rotation, a reload or the end of a warm-up — and
    /// leaves the others as they are (deciding them again would give the same decision).
    pub fn handle_timeout(&mut self, now: Timestamp, rng: &mut impl Rng) {
        self.expire_overrides(now);
        for (id, tier) in self.services.iter_mut() {
            let due = tier.due(now);
            tier.refresh_liveness(now);
            if !due {
                continue;
            }
            if tier.ready(self.warmup, now) {
                tier.recompute(id, &self.overrides, now, rng);
            } else {
                // the floor moved past what changed: remember it for the end of the warm-up
                tier.stale = true;
            }
        }
    }

    /// Stops holding overrides whose `until` passed (at the first call where `now ≥
    /// until`), and marks every service for a new decision if any did.
    fn expire_overrides(&mut self, now: Timestamp) {
        if self.overrides.next_expiry().is_none_or(|t| t > now) {
            return;
        }
        let gone = self.overrides.expire(now);
        if gone.is_empty() {
            return;
        }
        self.expired.extend(gone);
        self.sync_overrides(now);
        for tier in self.services.values_mut() {
            tier.stale = true;
        }
    }

    /// Holds decisions back until `until` unless every member has been heard from: for a
    /// node that just started and rebuilds its view from the next reports.
    pub fn set_warmup(&mut self, until: Timestamp) {
        self.warmup.until = Some(until);
    }

    /// Re-enters the warm-up by itself: the first update after the tier heard from no
    /// member at all for `window` (or since it started) holds decisions back for `window`,
    /// unless every member is heard again sooner.
    ///
    /// Why: a node that heard nobody for a whole stale window — it was just started, its
    /// process was paused (SIGSTOP, a VM migration, CPU starvation) or it was cut off — has
    /// an empty view, exactly like a node that just restarted. Deciding on the first voice
    /// back would publish whichever member happens to speak first (often not the best) and
    /// hysteresis would then hold it for the dwell. A quiet spell shorter than the window
    /// changes nothing; time passing without input still marks members stale and down.
    pub fn set_warmup_window(&mut self, window: Duration) {
        self.warmup_window = Some(window).filter(|w| !w.is_zero());
    }

    /// Records that a member was heard at `now` (an update taken), entering a warm-up after
    /// a silence of `window`; returns the warm-up in force.
    fn note_heard(
        warmup: &mut Warmup,
        last_heard: &mut Option<Timestamp>,
        window: Option<Duration>,
        now: Timestamp,
    ) -> Warmup {
        if let Some(window) = window
            && last_heard.is_none_or(|last| now.saturating_since(last) >= window)
        {
            *warmup = Warmup {
                since: Some(now),
                until: Some(now + window),
            };
        }
        *last_heard = Some(last_heard.map_or(now, |l| l.max(now)));
        *warmup
    }

    /// The next moment something changes with no new input.
    pub fn poll_timeout(&self, now: Timestamp) -> Option<Timestamp> {
        let warmup = self.warmup.until.filter(|t| *t > now);
        let coalesce = self.coalesce;
        self.services
            .values()
            .filter_map(|t| t.poll_timeout())
            .chain(
                self.services
                    .values()
                    .filter_map(|t| t.dirty_since.map(|d| d + coalesce)),
            )
            .chain(warmup)
            .chain(self.overrides.next_expiry())
            .min()
    }

    /// Decisions whose answer changed since the last call: the service, the region (`None`:
    /// the default one) and the decision.
    pub fn take_changed(&mut self) -> Vec<(ServiceId, Option<RegionId>, Decision)> {
        let mut out = Vec::new();
        for (id, tier) in &mut self.services {
            if std::mem::take(&mut tier.changed)
                && let Some(d) = &tier.decision
            {
                out.push((id.clone(), None, d.clone()));
            }
            for region in &mut tier.regions {
                if std::mem::take(&mut region.changed)
                    && let Some(d) = &region.decision
                {
                    out.push((id.clone(), Some(region.spec.id.clone()), d.clone()));
                }
            }
        }
        out
    }
}
