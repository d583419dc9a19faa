//! A simulated hour at 1,000 requests/s across three regions, every default policy; prints
//! the table and how long the run took. `cargo run --release -p fedlb-sim --example hour`

use std::time::Instant;

use fedlb_sim::{Location, Options, Scenario, TopologyBuilder, simulate};

const SCENARIO: &str = r#"
name = "hour-at-1000rps"
duration = "1h"
warmup = "30s"
[server_defaults]
slots = 8
service_time = { dist = "exponential", mean = "20ms" }
[[regions]]
name = "eu"
rate = 400
resolvers = 50
location = { lat = 50.1, lon = 8.7 }
[[regions]]
name = "us"
rate = 400
resolvers = 50
location = { lat = 39.0, lon = -77.5 }
[[regions]]
name = "ap"
rate = 200
resolvers = 50
location = { lat = 1.35, lon = 103.8 }
[[faults]]
kind = "server_down"
target = "eu1"
at = "20m"
until = "30m"
"#;

fn main() {
    let loc = |lat, lon| Some(Location { lat, lon });
    let topo = TopologyBuilder::new()
        .farm(
            "eu",
            10.0,
            loc(50.1, 8.7),
            &[("eu1", 1.0), ("eu2", 1.0), ("eu3", 1.0)],
        )
        .farm(
            "us",
            80.0,
            loc(39.0, -77.5),
            &[("us1", 1.0), ("us2", 1.0), ("us3", 1.0)],
        )
        .farm("ap", 160.0, loc(1.35, 103.8), &[("ap1", 1.0), ("ap2", 1.0)])
        .build();
    let scenario = Scenario::parse(SCENARIO, "hour.toml").expect("valid scenario");
    let threads = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let started = Instant::now();
    let report = simulate(
        &topo,
        &scenario,
        &Options {
            threads,
            ..Options::default()
        },
    )
    .expect("runs");
    let took = started.elapsed();
    print!("{}", report.to_table());
    let requests: u64 = report.policies.iter().map(|p| p.requests).sum();
    println!(
        "\n{} policies, {} requests in all, simulated in {:.1} s of wall time",
        report.policies.len(),
        requests,
        took.as_secs_f64()
    );
}
