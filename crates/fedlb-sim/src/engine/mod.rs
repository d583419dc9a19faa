//! The discrete-event engine: one run of one policy variant on the simulated clock.
//!
//! Control plane: a real [`Monitor`](fedlb_core::Monitor) per server, fed probe results computed from the
//! simulated server at probe time and delivered after the probe's duration; reports reach
//! a real [`FarmState`](fedlb_core::FarmState) after a delay; summaries reach a real [`GlobalState`](fedlb_core::GlobalState); its
//! publishes reach the "DNS" after a delay. Every state machine's `poll_timeout` is an
//! event. Data plane: requests arrive per region (Poisson, thinned for time-varying
//! rates), ask one of the region's caching resolvers, go to one answered server and queue
//! there for one of its slots.
//!
//! Rooms: [`state`] (what a run holds), [`setup`], [`events`] (the queue and dispatch),
//! [`data`] (the data plane), [`control`] (the roles' state machines), [`faults`] and
//! [`results`]. Each room adds one `impl World` and imports only `state`.

mod control;
mod data;
mod events;
mod faults;
mod results;
mod setup;
mod state;

use std::cmp::Reverse;

use crate::error::Error;
use crate::report::PolicyResult;
use crate::scenario::{Scenario, Variant};
use crate::topology::Topology;

pub(crate) use state::Prepared;
use state::World;

/// Runs one variant.
pub(crate) fn run(
    topo: &Topology,
    sc: &Scenario,
    pre: &Prepared,
    v: &Variant,
    seed: u64,
) -> Result<PolicyResult, Error> {
    let mut w = World::new(topo, sc, pre, v, seed)?;
    w.start();
    while let Some(Reverse(e)) = w.heap.pop() {
        if e.at > w.end {
            break;
        }
        w.now = e.at;
        w.handle(e.ev);
    }
    Ok(w.finish(v))
}
