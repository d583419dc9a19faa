//! fedlb's roles wired to the world: the agent, the farm node and the global node. Each
//! role is one driver task that owns its fedlb-core state machine and feeds it events
//! (reports from the transport, probe results, timeouts, reloads), then carries out what
//! the core outputs (send a report or summary, publish an answer). This crate makes no
//! decisions of its own: every choice comes from fedlb-core.
//!
//! The role drivers (`agent`, `farm`, `global`) sit side by side and import none of each
//! other; what they share lives in `common` (errors, loading, identities, the status
//! endpoint), `authz` (who may connect and what each peer may send), `publish` (DNS
//! start-up and the publishers the global node feeds) and `monitors` (probes run here).
//!
//! It also serves the status endpoint (JSON, an HTML page of the hierarchy, Prometheus
//! metrics) and the demo backend used by `fedlb up` and the tests.
#![warn(missing_docs)]

pub mod admin;
pub mod agent;
pub mod authz;
pub mod backend;
pub mod clock;
pub mod common;
pub mod farm;
pub mod fds;
pub mod global;
pub mod http;
pub mod logs;
pub mod metrics;
pub mod monitors;
pub mod probes;
pub mod publish;
pub mod reload;
pub mod status;
mod uplinks;

pub use common::{NodeError, NodeOptions};
