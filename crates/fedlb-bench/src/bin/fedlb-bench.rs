//! `fedlb-bench`: the fedlb benchmarks (issue 7), one subcommand each. Every one prints
//! medians and spreads with the machine it ran on and writes `target/bench/<name>.json`;
//! `--smoke` runs it in seconds to show that it still works (its figures mean nothing).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use fedlb_bench::bench::{
    core_scale, dns_qps, dns_regions, failover, fault_cost, footprint, global_scale, ingest,
    propagation,
};
use fedlb_bench::output::{Output, check};

#[derive(Parser, Debug)]
#[command(name = "fedlb-bench", about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args, Debug, Clone)]
struct Common {
    /// Seconds instead of minutes: shows that the benchmark runs, measures nothing.
    #[arg(long)]
    smoke: bool,
    /// Trials (faults) per configuration; the default is 10 (2 in smoke mode).
    #[arg(long)]
    trials: Option<usize>,
}

impl Common {
    fn trials(&self, full: usize, smoke: usize) -> usize {
        self.trials.unwrap_or(if self.smoke { smoke } else { full })
    }
}

fn parse_ms(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s}: write a duration like 200ms or 1s");
    if let Some(v) = s.strip_suffix("ms") {
        v.parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| bad())
    } else if let Some(v) = s.strip_suffix('s') {
        v.parse::<f64>()
            .map(Duration::from_secs_f64)
            .map_err(|_| bad())
    } else {
        Err(bad())
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// 1. Failover with remote probing: SIGKILL / SIGSTOP the answered backend; then the
    ///    same side by side with PowerDNS LUA records (`ifurlup`, `ifportup`).
    FailoverRemote {
        #[command(flatten)]
        common: Common,
        /// Probe intervals (default 1s and 200ms; 200ms in smoke mode).
        #[arg(long, value_delimiter = ',', value_parser = parse_ms)]
        intervals: Vec<Duration>,
        /// Skip the side-by-side run with PowerDNS LUA records.
        #[arg(long)]
        no_pdns: bool,
    },
    /// 2. Failover with agents on the servers (crash detection on).
    FailoverIntrusive {
        #[command(flatten)]
        common: Common,
        /// Probe intervals (default 1s and 200ms; 200ms in smoke mode).
        #[arg(long, value_delimiter = ',', value_parser = parse_ms)]
        intervals: Vec<Duration>,
    },
    /// 3. Propagation overhead: agent → farm → global → DNS acknowledges the UPDATE.
    Propagation {
        #[command(flatten)]
        common: Common,
        /// Skip BIND (only the embedded server).
        #[arg(long)]
        no_bind: bool,
    },
    /// 4. Farm failover: the answered farm's node is killed.
    FarmFailover {
        #[command(flatten)]
        common: Common,
        /// Heartbeat interval (default 1s, the topology default; 200ms in smoke mode).
        #[arg(long, value_parser = parse_ms)]
        heartbeat: Option<Duration>,
    },
    /// 5. Ingest: N mTLS QUIC agents reporting to one farm node.
    Ingest {
        #[command(flatten)]
        common: Common,
        /// Fleet sizes (default 1000,10000; 50 in smoke mode).
        #[arg(long, value_delimiter = ',')]
        agents: Vec<usize>,
        /// Reports per second per agent.
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        /// Steady-state window in seconds (default 20; 3 in smoke mode).
        #[arg(long)]
        window: Option<u64>,
        /// Connections opened at once while ramping.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Skip the restart phase (the farm node killed and restarted: every agent
        /// reconnects at once).
        #[arg(long)]
        no_restart: bool,
    },
    /// 10. The global node at scale: N mTLS QUIC farm-node connections sending summaries.
    GlobalScale {
        #[command(flatten)]
        common: Common,
        /// Farm counts (default 1000; 20 in smoke mode).
        #[arg(long, value_delimiter = ',')]
        farms: Vec<usize>,
        /// Servers described in each summary.
        #[arg(long, default_value_t = 10)]
        servers: usize,
        /// Summaries per second per farm.
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        /// Steady-state window in seconds (default 20; 3 in smoke mode).
        #[arg(long)]
        window: Option<u64>,
        /// Connections opened at once while ramping.
        #[arg(long, default_value_t = 100)]
        batch: usize,
    },
    /// 6. Scale of the core (in process): farms × servers × services.
    CoreScale {
        #[command(flatten)]
        common: Common,
        /// Farms (default 1000; 20 in smoke mode).
        #[arg(long)]
        farms: Option<usize>,
        /// Servers per farm.
        #[arg(long, default_value_t = 100)]
        servers: usize,
        /// Services.
        #[arg(long, default_value_t = 3)]
        services: usize,
    },
    /// 7. Agent footprint: 5 probes at 1/s, RSS and CPU over a minute.
    AgentFootprint {
        #[command(flatten)]
        common: Common,
        /// Seconds to measure (default 60; 3 in smoke mode).
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// 8. DNS answer cost with dnsperf: embedded server and BIND.
    DnsQps {
        #[command(flatten)]
        common: Common,
        /// Seconds per dnsperf run (default 10; 1 in smoke mode).
        #[arg(long)]
        seconds: Option<u64>,
        /// Skip BIND.
        #[arg(long)]
        no_bind: bool,
    },
    /// 8b. DNS answer cost of regions: the embedded server with three regional views against
    ///     none, plain queries and queries with EDNS Client Subnet.
    DnsRegions {
        #[command(flatten)]
        common: Common,
        /// Seconds per dnsperf run (default 5; 1 in smoke mode).
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// 9. Cost of a fault: CPU, probes/s and connects/s with one backend dead or frozen,
    ///    against the all-up baseline.
    FaultCost {
        #[command(flatten)]
        common: Common,
        /// Backends behind the farm node.
        #[arg(long, default_value_t = 3)]
        servers: usize,
        /// Seconds per phase (default 30; 3 in smoke mode).
        #[arg(long)]
        seconds: Option<u64>,
        /// Stay in the machine's network namespace (by default, as root, the benchmark
        /// runs in one of its own so that its connection counts are its own).
        #[arg(long)]
        shared_net: bool,
    },
    /// Checks result files (for the smoke test): each parses and holds numbers.
    Check {
        /// JSON result files.
        files: Vec<PathBuf>,
    },
}

fn intervals(given: Vec<Duration>, smoke: bool) -> Vec<Duration> {
    if !given.is_empty() {
        given
    } else if smoke {
        vec![Duration::from_millis(200)]
    } else {
        vec![Duration::from_secs(1), Duration::from_millis(200)]
    }
}

fn targets(no_bind: bool) -> Vec<propagation::Target> {
    let mut t = vec![propagation::Target::Embedded];
    if !no_bind {
        t.push(propagation::Target::Bind);
    }
    t
}

fn run(cmd: Cmd) -> anyhow::Result<Option<Output>> {
    Ok(Some(match cmd {
        Cmd::FailoverRemote {
            common,
            intervals: iv,
            no_pdns,
        } => failover::run_servers(
            &failover::Params {
                trials: common.trials(10, 2),
                intervals: intervals(iv, common.smoke),
                smoke: common.smoke,
                pdns: !no_pdns,
            },
            false,
        )?,
        Cmd::FailoverIntrusive {
            common,
            intervals: iv,
        } => failover::run_servers(
            &failover::Params {
                trials: common.trials(10, 2),
                intervals: intervals(iv, common.smoke),
                smoke: common.smoke,
                pdns: false,
            },
            true,
        )?,
        Cmd::Propagation { common, no_bind } => {
            propagation::run(common.trials(30, 3), &targets(no_bind), common.smoke)?
        }
        Cmd::FarmFailover { common, heartbeat } => failover::run_farm(
            &failover::Params {
                trials: common.trials(10, 2),
                intervals: Vec::new(),
                smoke: common.smoke,
                pdns: false,
            },
            heartbeat.unwrap_or(if common.smoke {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(1)
            }),
        )?,
        Cmd::Ingest {
            common,
            agents,
            rate,
            window,
            batch,
            no_restart,
        } => ingest::run(&ingest::Params {
            agents: if !agents.is_empty() {
                agents
            } else if common.smoke {
                vec![50]
            } else {
                vec![1000, 10_000]
            },
            rate,
            window: Duration::from_secs(window.unwrap_or(if common.smoke { 3 } else { 20 })),
            batch,
            ramp_limit: Duration::from_secs(if common.smoke { 30 } else { 240 }),
            restart: !no_restart,
            smoke: common.smoke,
        })?,
        Cmd::GlobalScale {
            common,
            farms,
            servers,
            rate,
            window,
            batch,
        } => global_scale::run(&global_scale::Params {
            farms: if !farms.is_empty() {
                farms
            } else if common.smoke {
                vec![20]
            } else {
                vec![1000]
            },
            servers,
            rate,
            window: Duration::from_secs(window.unwrap_or(if common.smoke { 3 } else { 20 })),
            batch,
            smoke: common.smoke,
        })?,
        Cmd::CoreScale {
            common,
            farms,
            servers,
            services,
        } => core_scale::run(&core_scale::Params {
            farms: farms.unwrap_or(if common.smoke { 20 } else { 1000 }),
            servers,
            services,
            rounds: common.trials(10, 2),
            reports: if common.smoke { 1_000 } else { 20_000 },
            smoke: common.smoke,
        })?,
        Cmd::AgentFootprint { common, seconds } => footprint::run(
            Duration::from_secs(seconds.unwrap_or(if common.smoke { 3 } else { 60 })),
            common.smoke,
        )?,
        Cmd::DnsQps {
            common,
            seconds,
            no_bind,
        } => dns_qps::run(
            common.trials(3, 1),
            seconds.unwrap_or(if common.smoke { 1 } else { 10 }),
            &targets(no_bind),
            common.smoke,
        )?,
        Cmd::DnsRegions { common, seconds } => dns_regions::run(
            common.trials(5, 1),
            seconds.unwrap_or(if common.smoke { 1 } else { 5 }),
            common.smoke,
        )?,
        Cmd::FaultCost {
            common,
            servers,
            seconds,
            shared_net,
        } => {
            match fault_cost::run(&fault_cost::Params {
                servers,
                phase: Duration::from_secs(seconds.unwrap_or(if common.smoke { 3 } else { 30 })),
                smoke: common.smoke,
                isolate: !shared_net,
            })? {
                Some(out) => out,
                None => return Ok(None),
            }
        }
        Cmd::Check { files } => {
            for f in files {
                let n = check(&f)?;
                println!("{}: ok ({n} numbers)", f.display());
            }
            return Ok(None);
        }
    }))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command).and_then(|o| match o {
        Some(out) => out.write().map(|_| ()),
        None => Ok(()),
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
