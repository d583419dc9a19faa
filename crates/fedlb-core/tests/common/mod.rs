//! Helpers shared by the core's tests (included with `mod common;`).
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use fedlb_core::*;

pub fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

pub fn at(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

/// A healthy server candidate `name` at 127.0.0.`last`.
pub fn server(name: &str, last: u8) -> Candidate {
    let mut c = Candidate::new(name, vec![ip(last)], 100.0);
    c.health = Health::Up;
    c
}

pub fn with_pending(mut c: Candidate, pending: u64) -> Candidate {
    c.readings.pending = Some(Sample::new(pending, Timestamp::ZERO));
    c
}

pub fn with_rt(mut c: Candidate, ms: u64) -> Candidate {
    c.readings.response_time = Some(Sample::new(Duration::from_millis(ms), Timestamp::ZERO));
    c
}

pub fn with_health(mut c: Candidate, h: Health) -> Candidate {
    c.health = h;
    c
}

pub fn with_distance(mut c: Candidate, ms: f64) -> Candidate {
    c.distance = Some(Distance::Pinned(ms));
    c
}

pub fn rng() -> rand::rngs::SmallRng {
    use rand::SeedableRng;
    rand::rngs::SmallRng::seed_from_u64(7)
}

pub fn ids(d: &Decision) -> Vec<&str> {
    d.chosen.iter().map(|c| c.as_str()).collect()
}

pub fn selector(policy: Policy, hysteresis: Hysteresis) -> Selector {
    let mut cfg = SelectorConfig::new(policy);
    cfg.hysteresis = hysteresis;
    Selector::new(cfg)
}
