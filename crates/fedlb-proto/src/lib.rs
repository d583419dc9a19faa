//! fedlb's wire messages: what agents, farm nodes and the global node say to each other,
//! and how it is encoded.
//!
//! Messages are plain serde types encoded with bincode 2.0.1 (`standard()` config: little
//! endian, varints). The one codec ([`codec::encode`] / [`codec::decode`]: configuration,
//! size cap, exact length) lives here and is what the transport (fedlb-net) runs for every
//! message and what the fuzz target exercises. The codec caps the bytes bincode may claim
//! (an unlimited decode of 17 forged bytes would try to allocate a terabyte);
//! [`Message::validate`] then checks every collection and string against the limits below,
//! so a message a node accepts is always small. [`decode`] is the two in a row. Timestamps
//! never cross the wire: readings travel with their *age* and are placed on the receiver's
//! timeline on arrival.
//!
//! This crate does no I/O; the transport (fedlb-net) carries the bytes.
#![warn(missing_docs)]

pub mod codec;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use fedlb_core::{
    Aggregate, CandidateId, FarmId, Health, MemberKind, MemberView, Members, Readings, Report,
    Sample, ServerId, ServiceId, Summary, Timestamp,
};
use serde::{Deserialize, Serialize};

/// The protocol version this build speaks. Peers exchange it in the transport's hello and
/// refuse a mismatch with a message naming both: nodes of different versions do not talk
/// to each other at all (no message of one version is ever decoded as the other).
///
/// History: 1, the first; 2, farm summaries carry the local policy and each member's kind
/// (server or farm); 3, messages travel as length-prefixed frames on long-lived streams,
/// routine and urgent, instead of one stream per message (the message types are
/// unchanged); 4, farm summaries carry the weight of each address of the farm's answer
/// (issue 14, weighted answers); 5, farm summaries carry the farm's hop count and its
/// declared application metrics in their readings, and the rule each metric was aggregated
/// by (issue 15: a global policy may rank and filter farms by them, which a farm node of
/// version 4 would silently leave unreported), and name the farm node that built them (a
/// farm may have several, issue 17); 6, a global node may open a bidirectional stream on a
/// farm node's connection to forward an operator's admin call (JSON, see
/// `fedlb_node::admin`; issue 15), which a node of version 5 refuses.
pub const PROTOCOL_VERSION: u16 = 6;

/// Largest encoded message, in bytes (also the transport's frame cap): the codec's
/// [`codec::MAX_MESSAGE_LEN`].
pub const MAX_MESSAGE: usize = codec::MAX_MESSAGE_LEN;

/// Most reports or summaries in one message.
pub const MAX_BATCH: usize = 64;
/// Most application metrics in one reading set.
pub const MAX_METRICS: usize = 32;
/// Most addresses or chosen candidates in one summary.
pub const MAX_ADDRESSES: usize = 32;
/// Most servers described in one farm summary.
pub const MAX_SERVERS: usize = 256;
/// Longest name (service, server, farm, metric), in bytes.
pub const MAX_NAME: usize = 253;
/// Longest free text (a reason, a why), in bytes.
pub const MAX_TEXT: usize = 1024;

/// A message between nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// Monitor reports (agent → farm node, or → global node for attached servers). One
    /// message carries every service of a server that changed or is due.
    Reports(Vec<WireReport>),
    /// Farm summaries (farm node → global node, or → a regional farm node).
    Summaries(Vec<WireSummary>),
}

/// A value and how old it was when sent.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Aged<T> {
    /// The value.
    pub value: T,
    /// Its age at sending.
    pub age: Duration,
}

/// [`Readings`] on the wire: ages instead of timestamps.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WireReadings {
    /// Response time.
    pub response_time: Option<Aged<Duration>>,
    /// Pending requests.
    pub pending: Option<Aged<u64>>,
    /// Open connections.
    pub connections: Option<Aged<u64>>,
    /// Hops.
    pub hops: Option<Aged<u32>>,
    /// RTT from the sender.
    pub rtt: Option<Aged<Duration>>,
    /// Application metrics.
    pub metrics: BTreeMap<String, Aged<f64>>,
}

impl WireReadings {
    /// Readings as of `now` on the sender's timeline.
    pub fn from_readings(r: &Readings, now: Timestamp) -> Self {
        fn aged<T: Copy>(s: &Option<Sample<T>>, now: Timestamp) -> Option<Aged<T>> {
            s.map(|s| Aged {
                value: s.value,
                age: s.age(now),
            })
        }
        WireReadings {
            response_time: aged(&r.response_time, now),
            pending: aged(&r.pending, now),
            connections: aged(&r.connections, now),
            hops: aged(&r.hops, now),
            rtt: aged(&r.rtt, now),
            metrics: r
                .metrics
                .iter()
                .map(|(k, s)| (k.clone(), aged(&Some(*s), now).expect("some")))
                .collect(),
        }
    }

    /// Readings placed on the receiver's timeline, arriving at `now`.
    pub fn to_readings(&self, now: Timestamp) -> Readings {
        fn sample<T: Copy>(a: &Option<Aged<T>>, now: Timestamp) -> Option<Sample<T>> {
            a.map(|a| Sample::new(a.value, now.saturating_sub(a.age)))
        }
        Readings {
            response_time: sample(&self.response_time, now),
            pending: sample(&self.pending, now),
            connections: sample(&self.connections, now),
            hops: sample(&self.hops, now),
            rtt: sample(&self.rtt, now),
            metrics: self
                .metrics
                .iter()
                .map(|(k, a)| (k.clone(), Sample::new(a.value, now.saturating_sub(a.age))))
                .collect(),
        }
    }
}

/// A monitor report on the wire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireReport {
    /// The service.
    pub service: String,
    /// The server.
    pub server: String,
    /// Restart counter of the reporter.
    pub epoch: u64,
    /// Sequence number within the epoch.
    pub seq: u64,
    /// Health.
    pub health: Health,
    /// Why.
    pub reason: String,
    /// Readings with their ages.
    pub readings: WireReadings,
}

impl WireReport {
    /// The wire form of `r`, sent at `now` (sender's timeline).
    pub fn from_report(r: &Report, now: Timestamp) -> Self {
        WireReport {
            service: r.service.0.clone(),
            server: r.server.0.clone(),
            epoch: r.epoch,
            seq: r.seq,
            health: r.health,
            reason: truncate(&r.reason),
            readings: WireReadings::from_readings(&r.readings, now),
        }
    }

    /// [`WireReport::to_report`] of a report the receiver is done with: its strings move
    /// instead of being copied.
    pub fn into_report(self, now: Timestamp) -> Report {
        Report {
            service: ServiceId(self.service),
            server: ServerId(self.server),
            epoch: self.epoch,
            seq: self.seq,
            health: self.health,
            reason: self.reason,
            readings: self.readings.to_readings(now),
        }
    }

    /// The report as the receiver sees it, arriving at `now` (receiver's timeline).
    pub fn to_report(&self, now: Timestamp) -> Report {
        Report {
            service: ServiceId(self.service.clone()),
            server: ServerId(self.server.clone()),
            epoch: self.epoch,
            seq: self.seq,
            health: self.health,
            reason: self.reason.clone(),
            readings: self.readings.to_readings(now),
        }
    }
}

/// A farm summary on the wire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireSummary {
    /// The farm.
    pub farm: String,
    /// The farm node that built it (a farm may have several); the global node takes it
    /// only from that node's connection.
    pub node: String,
    /// The service.
    pub service: String,
    /// Restart counter of the farm node.
    pub epoch: u64,
    /// Sequence number within the epoch.
    pub seq: u64,
    /// Health of the farm as one candidate.
    pub health: Health,
    /// The local policy as an operator reads it (`least loaded`).
    pub policy: String,
    /// The local decision's why.
    pub why: String,
    /// The local choice.
    pub chosen: Vec<String>,
    /// The farm's answer.
    pub addresses: Vec<IpAddr>,
    /// The relative weight of each of `addresses` (empty: equal).
    pub weights: Vec<f64>,
    /// Servers up / in all.
    pub members: Members,
    /// Capacity of the servers up.
    pub capacity: f64,
    /// Aggregated readings with their ages.
    pub readings: WireReadings,
    /// The rule each metric of `readings` was aggregated by over the farm's servers.
    pub aggregates: Vec<(String, Aggregate)>,
    /// Whether the local answer is fail-static.
    pub degraded: bool,
    /// The farm's servers as its node sees them.
    pub servers: Vec<WireMemberView>,
    /// The farm node has not heard from every server yet.
    pub incomplete: bool,
}

/// A [`MemberView`] on the wire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireMemberView {
    /// Name.
    pub id: String,
    /// A server or a farm.
    pub kind: MemberKind,
    /// Health.
    pub health: Health,
    /// Why.
    pub reason: String,
    /// Rank among healthy members.
    pub rank: Option<u32>,
    /// The policy's view of it.
    pub shown: String,
    /// Whether it is chosen.
    pub chosen: bool,
    /// Addresses.
    pub addresses: Vec<IpAddr>,
    /// Readings with their ages.
    pub readings: WireReadings,
}

impl WireMemberView {
    fn from_view(v: &MemberView, now: Timestamp) -> Self {
        WireMemberView {
            id: v.id.as_str().to_owned(),
            kind: v.kind,
            health: v.health,
            reason: truncate(&v.reason),
            rank: v.rank.map(|r| r as u32),
            shown: truncate(&v.shown),
            chosen: v.chosen,
            addresses: v.addresses.iter().take(MAX_ADDRESSES).copied().collect(),
            readings: WireReadings::from_readings(&v.readings, now),
        }
    }

    /// [`WireMemberView::to_view`], moving the strings instead of copying them.
    fn into_view(self, now: Timestamp) -> MemberView {
        MemberView {
            id: CandidateId::from(self.id.as_str()),
            kind: self.kind,
            health: self.health,
            reason: self.reason,
            rank: self.rank.map(|r| r as usize),
            shown: self.shown,
            chosen: self.chosen,
            addresses: self.addresses,
            readings: self.readings.to_readings(now),
            members: None,
            source: None,
        }
    }

    fn to_view(&self, now: Timestamp) -> MemberView {
        MemberView {
            id: CandidateId::from(self.id.as_str()),
            kind: self.kind,
            health: self.health,
            reason: self.reason.clone(),
            rank: self.rank.map(|r| r as usize),
            shown: self.shown.clone(),
            chosen: self.chosen,
            addresses: self.addresses.clone(),
            readings: self.readings.to_readings(now),
            members: None,
            source: None,
        }
    }
}

impl WireSummary {
    /// The wire form of `s`, sent at `now` (sender's timeline).
    pub fn from_summary(s: &Summary, now: Timestamp) -> Self {
        WireSummary {
            farm: s.farm.0.clone(),
            node: s.node.clone(),
            service: s.service.0.clone(),
            epoch: s.epoch,
            seq: s.seq,
            health: s.health,
            policy: truncate(&s.policy),
            why: truncate(&s.why),
            chosen: s.chosen.iter().map(|c| c.as_str().to_owned()).collect(),
            addresses: s.addresses.clone(),
            weights: s.weights.clone(),
            members: s.members,
            capacity: s.capacity,
            readings: WireReadings::from_readings(&s.readings, now),
            aggregates: s.aggregates.iter().map(|(k, a)| (k.clone(), *a)).collect(),
            degraded: s.degraded,
            servers: s
                .servers
                .iter()
                .take(MAX_SERVERS)
                .map(|v| WireMemberView::from_view(v, now))
                .collect(),
            incomplete: s.incomplete,
        }
    }

    /// [`WireSummary::to_summary`] of a summary the receiver is done with: its strings and
    /// lists move into the result instead of being copied (a global node takes a thousand a
    /// second, each with its servers' views).
    pub fn into_summary(self, now: Timestamp) -> Summary {
        Summary {
            farm: FarmId(self.farm),
            node: self.node,
            service: ServiceId(self.service),
            epoch: self.epoch,
            seq: self.seq,
            health: self.health,
            policy: self.policy,
            why: self.why,
            chosen: self
                .chosen
                .iter()
                .map(|c| CandidateId::from(c.as_str()))
                .collect(),
            addresses: self.addresses,
            weights: self.weights,
            members: self.members,
            capacity: self.capacity,
            readings: self.readings.to_readings(now),
            aggregates: self.aggregates.into_iter().collect(),
            degraded: self.degraded,
            servers: self.servers.into_iter().map(|v| v.into_view(now)).collect(),
            incomplete: self.incomplete,
        }
    }

    /// The summary as the receiver sees it, arriving at `now` (receiver's timeline).
    pub fn to_summary(&self, now: Timestamp) -> Summary {
        Summary {
            farm: FarmId(self.farm.clone()),
            node: self.node.clone(),
            service: ServiceId(self.service.clone()),
            epoch: self.epoch,
            seq: self.seq,
            health: self.health,
            policy: self.policy.clone(),
            why: self.why.clone(),
            chosen: self
                .chosen
                .iter()
                .map(|c| CandidateId::from(c.as_str()))
                .collect(),
            addresses: self.addresses.clone(),
            weights: self.weights.clone(),
            members: self.members,
            capacity: self.capacity,
            readings: self.readings.to_readings(now),
            aggregates: self.aggregates.iter().cloned().collect(),
            degraded: self.degraded,
            servers: self.servers.iter().map(|v| v.to_view(now)).collect(),
            incomplete: self.incomplete,
        }
    }
}

/// Why bytes were not a valid message.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// bincode could not decode (garbage, unknown message type, over the size limit).
    #[error("undecodable message: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    /// Encoding failed (a message over the size limit).
    #[error("cannot encode message: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    /// Decoded, but bigger or stranger than the protocol allows.
    #[error("invalid message: {0}")]
    Invalid(String),
    /// Bytes left over after the message.
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
}

impl From<codec::CodecError> for ProtoError {
    fn from(e: codec::CodecError) -> Self {
        match e {
            codec::CodecError::TooLarge { len, limit } => {
                ProtoError::Invalid(format!("{len} bytes, over the {limit}-byte limit"))
            }
            codec::CodecError::Encode(e) => ProtoError::Encode(e),
            codec::CodecError::Decode(e) => ProtoError::Decode(e),
            codec::CodecError::Trailing { extra, .. } => ProtoError::Trailing(extra),
        }
    }
}

/// Encodes a message with the wire codec, refusing one over [`MAX_MESSAGE`] bytes or the
/// collection limits.
pub fn encode(msg: &Message) -> Result<Vec<u8>, ProtoError> {
    msg.validate()?;
    Ok(codec::encode(msg)?)
}

/// Decodes one message with the wire codec, exactly as the transport does
/// ([`codec::decode`]), then validates it as the node does ([`Message::validate`]). Never
/// panics and never allocates more than [`MAX_MESSAGE`] bytes, whatever the input.
pub fn decode(bytes: &[u8]) -> Result<Message, ProtoError> {
    let msg: Message = codec::decode(bytes)?;
    msg.validate()?;
    Ok(msg)
}

impl Message {
    /// Checks the protocol's limits on sizes, names and numbers.
    pub fn validate(&self) -> Result<(), ProtoError> {
        let bad = |what: String| Err(ProtoError::Invalid(what));
        match self {
            Message::Reports(rs) => {
                if rs.is_empty() || rs.len() > MAX_BATCH {
                    return bad(format!(
                        "{} reports in one message (1..={MAX_BATCH})",
                        rs.len()
                    ));
                }
                for r in rs {
                    name("service", &r.service)?;
                    name("server", &r.server)?;
                    text("reason", &r.reason)?;
                    readings(&r.readings)?;
                }
            }
            Message::Summaries(ss) => {
                if ss.is_empty() || ss.len() > MAX_BATCH {
                    return bad(format!(
                        "{} summaries in one message (1..={MAX_BATCH})",
                        ss.len()
                    ));
                }
                for s in ss {
                    name("farm", &s.farm)?;
                    name("farm node", &s.node)?;
                    name("service", &s.service)?;
                    label("policy", &s.policy)?;
                    text("why", &s.why)?;
                    if s.chosen.len() > MAX_ADDRESSES || s.addresses.len() > MAX_ADDRESSES {
                        return bad(format!(
                            "summary of farm \"{}\" lists too many answers",
                            s.farm
                        ));
                    }
                    for c in &s.chosen {
                        name("chosen", c)?;
                    }
                    if !s.weights.is_empty() && s.weights.len() != s.addresses.len() {
                        return bad(format!(
                            "summary of farm \"{}\": {} weights for {} addresses",
                            s.farm,
                            s.weights.len(),
                            s.addresses.len()
                        ));
                    }
                    if let Some(w) = s.weights.iter().find(|w| !w.is_finite() || **w < 0.0) {
                        return bad(format!("summary of farm \"{}\": weight {w}", s.farm));
                    }
                    if !s.capacity.is_finite() || s.capacity < 0.0 {
                        return bad(format!(
                            "summary of farm \"{}\": capacity {}",
                            s.farm, s.capacity
                        ));
                    }
                    if s.members.up > s.members.total {
                        return bad(format!(
                            "summary of farm \"{}\": {} of {} members up",
                            s.farm, s.members.up, s.members.total
                        ));
                    }
                    readings(&s.readings)?;
                    if s.aggregates.len() > MAX_METRICS {
                        return bad(format!(
                            "summary of farm \"{}\" names {} aggregated metrics (max {MAX_METRICS})",
                            s.farm,
                            s.aggregates.len()
                        ));
                    }
                    for (k, _) in &s.aggregates {
                        name("metric", k)?;
                    }
                    if s.servers.len() > MAX_SERVERS {
                        return bad(format!(
                            "summary of farm \"{}\" describes {} servers (max {MAX_SERVERS})",
                            s.farm,
                            s.servers.len()
                        ));
                    }
                    for v in &s.servers {
                        name("server", &v.id)?;
                        text("reason", &v.reason)?;
                        text("shown", &v.shown)?;
                        if v.addresses.len() > MAX_ADDRESSES {
                            return bad(format!("server \"{}\" lists too many addresses", v.id));
                        }
                        readings(&v.readings)?;
                    }
                }
            }
        }
        Ok(())
    }
}

fn name(what: &str, s: &str) -> Result<(), ProtoError> {
    if s.is_empty() || s.len() > MAX_NAME || s.chars().any(char::is_control) {
        return Err(ProtoError::Invalid(format!(
            "{what} name {:?} is empty, too long or has control characters",
            s.chars().take(40).collect::<String>()
        )));
    }
    Ok(())
}

/// A short label shown as is (a policy): not empty, no control characters, at most
/// [`MAX_TEXT`] bytes.
fn label(what: &str, s: &str) -> Result<(), ProtoError> {
    if s.is_empty() || s.chars().any(char::is_control) {
        return Err(ProtoError::Invalid(format!(
            "{what} {:?} is empty or has control characters",
            s.chars().take(40).collect::<String>()
        )));
    }
    text(what, s)
}

fn text(what: &str, s: &str) -> Result<(), ProtoError> {
    if s.len() > MAX_TEXT {
        return Err(ProtoError::Invalid(format!(
            "{what} is {} bytes (max {MAX_TEXT})",
            s.len()
        )));
    }
    Ok(())
}

fn readings(r: &WireReadings) -> Result<(), ProtoError> {
    if r.metrics.len() > MAX_METRICS {
        return Err(ProtoError::Invalid(format!(
            "{} metrics (max {MAX_METRICS})",
            r.metrics.len()
        )));
    }
    for (k, v) in &r.metrics {
        name("metric", k)?;
        if !v.value.is_finite() {
            return Err(ProtoError::Invalid(format!(
                "metric \"{k}\" is {}",
                v.value
            )));
        }
    }
    Ok(())
}

fn truncate(s: &str) -> String {
    if s.len() <= MAX_TEXT {
        return s.to_owned();
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
