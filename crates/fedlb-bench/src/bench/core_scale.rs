//! Benchmark 6: scale of the core, in process on `fedlb_core` directly: F farms × S
//! servers × V services (1,000 × 100 × 3 by default). Times a full recompute (every farm's
//! `recompute_all`, the summaries fed to the global state, its `recompute_all`), a timeout
//! round with nothing changed (`handle_timeout`, which decides only what changed), one
//! incremental report (a load reading; a health change of the answered server, which moves
//! the answer and the summary), two heartbeat rounds (every load changed; every load
//! repeated), and the memory the states take (RSS before and after).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use fedlb_core::{
    CandidateId, ClosestBy, Distance, FarmConfig, FarmOutput, FarmState, GlobalConfig,
    GlobalOutput, GlobalState, Health, Liveness, MemberSpec, Policy, Readings, Report, Sample,
    SelectorConfig, ServiceId, TierService, Timestamp,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::output::Output;
use crate::procfs::rss_kib;
use crate::stats::show;

/// Settings.
#[derive(Clone, Debug)]
pub struct Params {
    /// Farms.
    pub farms: usize,
    /// Servers per farm.
    pub servers: usize,
    /// Services (every server offers every service).
    pub services: usize,
    /// Full-recompute repeats.
    pub rounds: usize,
    /// Incremental reports timed.
    pub reports: usize,
    /// Smoke mode.
    pub smoke: bool,
}

fn server_name(f: usize, k: usize) -> String {
    format!("f{f}-s{k}")
}

fn liveness() -> Liveness {
    Liveness::from_heartbeat(Duration::from_secs(1), 3)
}

struct Fleet {
    farms: Vec<FarmState>,
    global: GlobalState,
    services: Vec<ServiceId>,
    seq: u64,
}

impl Fleet {
    fn build(p: &Params, now: Timestamp) -> Fleet {
        let services: Vec<ServiceId> = (0..p.services)
            .map(|s| ServiceId::from(format!("svc{s}")))
            .collect();
        let farms = (0..p.farms)
            .map(|f| {
                let mut map = BTreeMap::new();
                for s in &services {
                    let members = (0..p.servers)
                        .map(|k| MemberSpec {
                            id: CandidateId::from(server_name(f, k).as_str()),
                            kind: fedlb_core::MemberKind::Server,
                            addresses: vec![IpAddr::V4(Ipv4Addr::from(
                                0x0a00_0000u32 + (f * p.servers + k) as u32,
                            ))],
                            capacity: 100.0,
                            distance: None,
                            liveness: liveness(),
                            sources: Vec::new(),
                        })
                        .collect();
                    map.insert(
                        s.clone(),
                        TierService {
                            selector: SelectorConfig::new(Policy::LeastLoaded),
                            members,
                        },
                    );
                }
                let config = FarmConfig {
                    farm: format!("farm{f}").as_str().into(),
                    services: map,
                    heartbeat: Duration::from_secs(1),
                    metrics: Default::default(),
                    node: String::new(),
                };
                FarmState::new(config, 1, f as u64, now)
            })
            .collect();
        let mut gmap = BTreeMap::new();
        for s in &services {
            let members = (0..p.farms)
                .map(|f| MemberSpec {
                    id: CandidateId::from(format!("farm{f}").as_str()),
                    kind: fedlb_core::MemberKind::Farm,
                    addresses: Vec::new(),
                    capacity: 100.0,
                    distance: Some(Distance::Pinned(10.0 + (f % 200) as f64)),
                    liveness: liveness(),
                    sources: Vec::new(),
                })
                .collect();
            gmap.insert(
                s.clone(),
                TierService {
                    selector: SelectorConfig::new(Policy::Closest(ClosestBy::Auto)),
                    members,
                },
            );
        }
        Fleet {
            farms,
            global: GlobalState::new(GlobalConfig::new(gmap), 7),
            services,
            seq: 0,
        }
    }

    fn report(&mut self, f: usize, s: usize, k: usize, health: Health, load: u64, now: Timestamp) {
        self.seq += 1;
        let r = Report {
            service: self.services[s].clone(),
            server: server_name(f, k).as_str().into(),
            epoch: 1,
            seq: self.seq,
            health,
            reason: String::new(),
            readings: Readings {
                pending: Some(Sample::new(load, now)),
                ..Readings::default()
            },
        };
        self.farms[f]
            .handle_report(&r, now)
            .expect("a declared member");
        self.drain(f, now);
    }

    /// Carries a farm's outputs to the global state, and drains the global's.
    fn drain(&mut self, f: usize, now: Timestamp) -> usize {
        let mut n = 0;
        while let Some(out) = self.farms[f].poll_output() {
            if let FarmOutput::Summary(s) = out {
                self.global
                    .handle_summary(&s, now)
                    .expect("a declared farm");
                n += 1;
            }
        }
        while let Some(GlobalOutput::Publish(..)) = self.global.poll_output() {}
        n
    }
}

/// Runs the benchmark.
pub fn run(p: &Params) -> anyhow::Result<Output> {
    let members = p.farms * p.servers * p.services;
    let mut out = Output::new(
        "core-scale",
        p.smoke,
        json!({
            "farms": p.farms, "servers_per_farm": p.servers, "services": p.services,
            "server_instances": members, "rounds": p.rounds, "incremental_reports": p.reports,
            "local_policy": "least_loaded", "global_policy": "closest (pinned distances)",
        }),
    );
    let rss0 = rss_kib("self").unwrap_or(0);
    let mut now = Timestamp::from_millis(1_000);
    let t = Instant::now();
    let mut fleet = Fleet::build(p, now);
    let build_s = t.elapsed().as_secs_f64();
    let mut rng = SmallRng::seed_from_u64(1);
    let t = Instant::now();
    for f in 0..p.farms {
        for s in 0..p.services {
            for k in 0..p.servers {
                let load = rng.random_range(0..100);
                fleet.report(f, s, k, Health::Up, load, now);
            }
        }
    }
    let fill_s = t.elapsed().as_secs_f64();
    let rss1 = rss_kib("self").unwrap_or(0);
    println!(
        "  built in {build_s:.2} s; first report of every instance ({members}) in {fill_s:.2} s ({:.2} µs each)",
        fill_s / members as f64 * 1e6
    );
    let mem_mib = (rss1 as f64 - rss0 as f64) / 1024.0;
    println!(
        "  memory: {mem_mib:.1} MiB RSS for the states ({:.0} bytes per server instance)",
        (rss1 as f64 - rss0 as f64) * 1024.0 / members as f64
    );

    // full recompute: time moves on a little (no heartbeat falls due, nothing goes stale)
    // and every service is decided again (`recompute_all`: what every timeout did before
    // timeouts became incremental)
    let (mut full, mut farms_only, mut global_only) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..p.rounds {
        now = now + Duration::from_millis(10);
        let t = Instant::now();
        for f in 0..p.farms {
            fleet.farms[f].recompute_all(now);
            fleet.drain(f, now);
        }
        let tf = t.elapsed();
        fleet.global.recompute_all(now);
        while fleet.global.poll_output().is_some() {}
        let all = t.elapsed();
        farms_only.push(tf.as_secs_f64() * 1e3);
        global_only.push((all - tf).as_secs_f64() * 1e3);
        full.push(all.as_secs_f64() * 1e3);
    }
    // a timeout round with nothing changed: what a timeout costs now (it decides only what
    // can have changed)
    let mut idle = Vec::new();
    for _ in 0..p.rounds {
        now = now + Duration::from_millis(10);
        let t = Instant::now();
        for f in 0..p.farms {
            fleet.farms[f].handle_timeout(now);
            fleet.drain(f, now);
        }
        fleet.global.handle_timeout(now);
        while fleet.global.poll_output().is_some() {}
        idle.push(t.elapsed().as_secs_f64() * 1e3);
    }
    // heartbeat rounds: every farm sends every service's summary upward. In the first every
    // server's load has changed (every farm decides again, every summary is new to the global
    // node); in the second every server repeats its load (steady state: the summaries equal
    // the last ones)
    let (mut heartbeat, mut steady) = (Vec::new(), Vec::new());
    for round in 0..2 {
        now = now + Duration::from_millis(1_001);
        // keep everyone fresh so the round is a heartbeat, not a mass expiry
        for f in 0..p.farms {
            for s in 0..p.services {
                for k in 0..p.servers {
                    fleet.report(f, s, k, Health::Up, 50, now);
                }
            }
        }
        now = now + Duration::from_millis(1);
        let t = Instant::now();
        let mut sent = 0;
        for f in 0..p.farms {
            fleet.farms[f].handle_timeout(now);
            sent += fleet.drain(f, now);
        }
        fleet.global.handle_timeout(now);
        while fleet.global.poll_output().is_some() {}
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if round == 0 {
            heartbeat.push(ms);
            println!("    heartbeat round: {sent} summaries");
        } else {
            steady.push(ms);
            println!("    steady heartbeat round: {sent} summaries");
        }
    }

    // incremental: one report, carried through farm and global
    let (mut load_us, mut health_us) = (Vec::new(), Vec::new());
    for i in 0..p.reports {
        now = now + Duration::from_micros(50);
        let f = rng.random_range(0..p.farms);
        let s = rng.random_range(0..p.services);
        if i % 10 == 9 {
            // the answered server goes down and comes back: the answer moves twice
            let chosen = fleet.farms[f]
                .tier()
                .services()
                .get(&fleet.services[s])
                .and_then(|t| t.decision())
                .and_then(|d| d.chosen.first().cloned());
            let Some(chosen) = chosen else { continue };
            let k: usize = chosen
                .as_str()
                .rsplit_once("-s")
                .and_then(|(_, k)| k.parse().ok())
                .unwrap_or(0);
            for h in [Health::Down, Health::Up] {
                let t = Instant::now();
                fleet.report(f, s, k, h, 50, now);
                health_us.push(t.elapsed().as_secs_f64() * 1e6);
            }
        } else {
            let k = rng.random_range(0..p.servers);
            let load = rng.random_range(0..100);
            let t = Instant::now();
            fleet.report(f, s, k, Health::Up, load, now);
            load_us.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    let rss2 = rss_kib("self").unwrap_or(0);

    out.set("build_s", build_s);
    out.set("first_fill_s", fill_s);
    out.set("memory_mib", mem_mib);
    out.set(
        "memory_bytes_per_server_instance",
        (rss1 as f64 - rss0 as f64) * 1024.0 / members as f64,
    );
    out.set("rss_kib_end", rss2);
    out.set(
        "full_recompute_ms",
        show("full recompute (all farms + global)", &full, "ms"),
    );
    out.set(
        "full_recompute_farms_ms",
        show("  of which farms", &farms_only, "ms"),
    );
    out.set(
        "full_recompute_global_ms",
        show("  of which global", &global_only, "ms"),
    );
    out.set(
        "timeout_round_unchanged_ms",
        show("timeout round, nothing changed", &idle, "ms"),
    );
    out.set(
        "heartbeat_round_ms",
        show("heartbeat round (all summaries up)", &heartbeat, "ms"),
    );
    out.set(
        "heartbeat_round_steady_ms",
        show("heartbeat round, same readings", &steady, "ms"),
    );
    out.set(
        "incremental_load_report_us",
        show("one load report (farm + global)", &load_us, "µs"),
    );
    out.set(
        "incremental_health_change_us",
        show("one health change of the answer", &health_us, "µs"),
    );
    Ok(out)
}
