//! The sans-IO decision core of fedlb.
//!
//! It owns candidates and their readings, the health state machines (rise/fall per probe,
//! stale-then-down per reporter), the policies that rank candidates, hysteresis, top-N
//! answers, fail-static, farm summaries and every decision with the why an operator reads.
//! The same code decides inside a farm (local policy) and across farms (global policy): a
//! farm's [`farm::Summary`] becomes a [`candidate::Candidate`] one tier up.
//!
//! This crate contains no networking code, never reads a clock and draws no randomness of
//! its own: time comes in as [`time::Timestamp`] arguments and randomness from seeds. The
//! role state machines follow one contract: `handle_*` feeds an event, `poll_timeout` says
//! when to call `handle_timeout` next, `poll_output` drains what the shell must carry out.
#![warn(missing_docs)]

pub mod candidate;
pub mod change;
pub mod decision;
pub mod farm;
pub mod global;
pub mod health;
pub mod id;
pub mod monitor;
pub mod overrides;
pub mod peers;
pub mod policy;
pub mod region;
pub mod spread;
pub mod tier;
pub mod time;
pub mod ttl;

pub use candidate::{Candidate, Distance, Health, Members, Readings, Sample};
pub use change::{Answer, Cause, Change, Reason};
pub use decision::{
    AnswerSet, Decision, FailStatic, Hysteresis, Selector, SelectorConfig, Spill, Standing,
};
pub use farm::{Aggregate, FarmConfig, FarmOutput, FarmState, Summary};
pub use global::{GlobalConfig, GlobalOutput, GlobalState, Publish};
pub use health::{Liveness, ProbeHealth, SUMMARY_INTERVAL_CAP, Thresholds, summary_interval};
pub use id::{CandidateId, FarmId, ProbeId, RegionId, ServerId, ServiceId};
pub use monitor::{
    Measurement, Monitor, MonitorConfig, MonitorOutput, ProbeResult, ProbeSchedule, Report,
};
pub use overrides::{Action, Applied, Override, OverrideError, Overrides};
pub use peers::{
    Defer, Marker, MarkerError, PeerRule, Verdict, Write, federation_seed, judge, needs_refresh,
};
pub use policy::{ClosestBy, Filter, Policy, Ranked};
pub use region::{Classified, ClientMap, ClientMapError, GeoHit, RegionClients};
pub use spread::Spread;
pub use tier::{
    MemberKind, MemberSpec, MemberView, Refused, RegionSpec, RegionTier, Tier, TierService, Update,
};
pub use time::Timestamp;
pub use ttl::TtlRule;
