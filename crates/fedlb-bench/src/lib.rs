//! fedlb benchmarks (issue 7): each benchmark drives the real `fedlb` binary (or, for the
//! core's scale, `fedlb_core` in process), repeats its trial, prints medians and spreads
//! with the machine it ran on, and writes `target/bench/<name>.json`.
//!
//! It owns measurement only: it never changes how a node behaves, and every figure it
//! prints comes from the run it just did. Each benchmark has a smoke mode (`--smoke`) that
//! runs in seconds so CI can check that it still runs and still produces numbers; smoke
//! figures are not measurements.
#![forbid(unsafe_code)]

pub mod bench;
pub mod dns;
pub mod hook;
pub mod logs;
pub mod machine;
pub mod netns;
pub mod output;
pub mod procfs;
pub mod stats;
pub mod world;
