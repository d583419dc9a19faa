//! `fedlb`: one binary for every role of a fedlb federation.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use fedlb::{LogArgs, NodeArgs, init_logs, report, roles};

mod admin;
mod certs;
mod check;
mod dns_config;
mod status;
mod up;

/// fedlb: a hierarchical, health- and load-aware DNS load balancer for replicated services
/// spread over server farms in several sites.
///
/// Agents probe each service instance and report over QUIC with mutual TLS; a farm node per
/// site picks its best server by a local policy and reports the farm upward as one
/// candidate; the global node picks among farms by a global policy and writes the answer
/// into DNS by RFC 2136 dynamic update with TSIG.
///
/// Quick start: `fedlb up topologies/demo.toml`.
#[derive(Parser, Debug)]
#[command(name = "fedlb", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a whole topology on this machine: every node, the embedded DNS server and demo
    /// backends for servers nothing listens for. The quick start.
    Up {
        /// The topology file (try topologies/demo.toml).
        topology: PathBuf,
        /// Where certificates and DNS state go (default: .fedlb/<topology name>).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Do not start demo backends.
        #[arg(long)]
        no_backends: bool,
    },
    /// Run the global node: global policy, publishing to DNS, status endpoint.
    Global(NodeArgs),
    /// Run a farm node: local policy, remote monitors, summaries to the global node.
    Farm(NodeArgs),
    /// Run an agent on a server (intrusive mode): its monitors report to the farm node.
    Agent(NodeArgs),
    /// Validate a topology file and print what each node will run.
    ///
    /// Exits 0 for a valid file, 1 for an invalid one (every problem is printed as
    /// `error: <file>: <field path>: <what>`), 2 with --deny-warnings when there are
    /// warnings.
    Check {
        /// The topology file (.toml, .yaml, .yml or .json).
        topology: PathBuf,
        /// Treat warnings (suspicious but valid settings) as errors.
        #[arg(long)]
        deny_warnings: bool,
        /// Print only problems, not the description of each node.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Make a private CA and one certificate and key per node of a topology.
    ///
    /// Refuses to overwrite an existing CA unless --force. With --add NODE, issues one more
    /// certificate from the existing CA.
    Certs {
        /// The topology file.
        topology: PathBuf,
        /// Output directory (keys are written mode 0600).
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// Replace an existing CA and certificates.
        #[arg(long)]
        force: bool,
        /// Only issue a certificate for this node, from the CA already in --out.
        #[arg(long, value_name = "NODE", conflicts_with = "operator")]
        add: Option<String>,
        /// Only issue an operator's client certificate (for `fedlb drain`, `pin`, …), from
        /// the CA already in --out: NAME is who the audit log names.
        #[arg(long, value_name = "NAME")]
        operator: Option<String>,
    },
    /// Print the configuration a DNS server needs for this topology.
    ///
    /// With `dns.embedded` (the built-in server as a hidden primary): the configuration of a
    /// secondary — `bind`: a `key` block and a `zone { type secondary; primaries { ADDR port P
    /// key K; }; }`; `knot`: `key`, `remote`, `acl` (NOTIFY from the primary) and `zone` with
    /// `master`. One text for every address in dns.embedded.secondaries, signed with
    /// dns.embedded.transfer_key.
    ///
    /// With `dns.servers` (`bind` only): the `key` and `view` blocks for BIND 9 — one view per
    /// region published to dns.servers, selected by the region's TSIG key for updates and by
    /// its client prefixes (and geoip entries) for queries, then the default view. Include the
    /// output in named.conf; each view's zone file must exist before named starts.
    DnsConfig {
        /// The DNS server the configuration is for.
        #[arg(value_enum)]
        server: DnsConfigServer,
        /// The topology file.
        topology: PathBuf,
        /// Directory of the zone files in the output (views: `<dir>/<zone>.<view>.db`; a
        /// secondary's copy: `<dir>/<zone>.db`). Default: /var/lib/bind or /var/lib/knot.
        #[arg(long)]
        zone_dir: Option<PathBuf>,
        /// The embedded server's address as the secondaries reach it (default:
        /// dns.embedded.listen; required when that listens on every address).
        #[arg(long, value_name = "IP:PORT")]
        primary: Option<SocketAddr>,
    },
    /// Print a node's global and local choices, with the why of each, as a table. Given
    /// several global nodes' URLs, also whether they agree on every answer (per service and
    /// region): exit status 0 when they do, 1 when they do not, 2 when a node cannot be read.
    Status {
        /// The node's status URL (e.g. http://127.0.0.1:7480); several for several global
        /// nodes.
        #[arg(required = true, num_args = 1..)]
        urls: Vec<String>,
        /// Print the raw JSON instead.
        #[arg(long)]
        json: bool,
        /// Print the node's last decision changes instead (newest first: when, what moved
        /// from what to what, the cause and the why).
        #[arg(long, conflicts_with = "json")]
        changes: bool,
    },
    /// What-if: compare policies on a topology with simulated clients, resolvers that cache
    /// for the TTL, queueing servers and faults — driving the real decision core on a
    /// simulated clock. Prints a table; --out also writes CSV files and an SVG plot.
    ///
    /// One scenario: `fedlb simulate TOPOLOGY --scenario FILE`.
    ///
    /// A suite: `fedlb simulate --suite scenarios` runs every DIR/<name>/ holding a
    /// topology.toml and a scenario.toml, and prints one table: per scenario and policy the
    /// mean and p99 response times, the share refused, and both as ratios to the scenario's
    /// best single-level baseline (round robin, random, closest or least loaded, best by
    /// mean); then per policy the geometric mean of its ratios over the suite, and whether
    /// fedlb's default (fedlb-regions where clients come from several regions, else fedlb)
    /// meets the bar of ≤ 1.0× mean and p99 on every scenario and ≤ 0.8× mean overall.
    #[command(verbatim_doc_comment)]
    Simulate {
        /// The topology file (one scenario).
        #[arg(required_unless_present = "suite", conflicts_with = "suite")]
        topology: Option<PathBuf>,
        /// The scenario file (regions, rates, servers, faults, policies to compare).
        #[arg(long, required_unless_present = "suite", conflicts_with = "suite")]
        scenario: Option<PathBuf>,
        /// Run every scenario of this suite directory (DIR/<name>/topology.toml and
        /// DIR/<name>/scenario.toml) and print the suite table.
        #[arg(long, value_name = "DIR")]
        suite: Option<PathBuf>,
        /// With --suite: only these scenarios (directory names; repeat or comma-separate).
        #[arg(
            long,
            value_delimiter = ',',
            requires = "suite",
            value_name = "SCENARIO"
        )]
        only: Vec<String>,
        /// Only these policies (names from the scenario; repeat or comma-separate). With
        /// --suite the single-level baselines always run too: the ratios need them.
        #[arg(long, value_delimiter = ',')]
        policy: Vec<String>,
        /// Random seed (default: the scenario's; with --suite, replaces every scenario's);
        /// the same seed gives byte-identical output.
        #[arg(long)]
        seed: Option<u64>,
        /// Directory for table.txt and the CSV files (one scenario: summary.csv, regions.csv,
        /// series.csv, response.svg; a suite: suite.csv, suite-summary.csv and each
        /// scenario's files in <name>/).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Runs simulated in parallel (the output does not depend on it).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Drain a server or a whole farm: not chosen while anything else is up (resolvers'
    /// caches drain with the TTL). A server of a farm is drained by its farm nodes; a farm or
    /// a directly attached server by every global node. Needs an operator certificate
    /// (`fedlb certs TOPOLOGY --operator NAME`).
    ///
    /// Example: fedlb drain eu-2 --for 30m --reason "kernel upgrade" --topology fedlb.toml
    Drain {
        /// The server or farm.
        target: String,
        #[command(flatten)]
        set: admin::SetArgs,
        #[command(flatten)]
        admin: admin::AdminArgs,
    },
    /// Undo `fedlb drain`: clear every drain of a server or farm (it may answer again after
    /// the usual dwell).
    Undrain {
        /// The server or farm.
        target: String,
        #[command(flatten)]
        admin: admin::AdminArgs,
    },
    /// Disable a server or a whole farm: never chosen, not even when nothing else is up
    /// (fail-static answers leave it out too).
    Disable {
        /// The server or farm.
        target: String,
        #[command(flatten)]
        set: admin::SetArgs,
        #[command(flatten)]
        admin: admin::AdminArgs,
    },
    /// Undo `fedlb disable`.
    Enable {
        /// The server or farm.
        target: String,
        #[command(flatten)]
        admin: admin::AdminArgs,
    },
    /// Pin a service to a farm or server: it alone answers while it is up; when it is down
    /// the normal choice answers (the why says the pin is not applied). With --region, only
    /// that region's clients (farms and directly attached servers only).
    ///
    /// Example: fedlb pin www us-east --region eu --for 30m --reason "eu-west migration"
    Pin {
        /// The service.
        service: String,
        /// The farm or server.
        target: String,
        /// Only this region's clients.
        #[arg(long)]
        region: Option<String>,
        #[command(flatten)]
        set: admin::SetArgs,
        #[command(flatten)]
        admin: admin::AdminArgs,
    },
    /// List the overrides every node holds (`fedlb overrides`), or clear one by its id
    /// (`fedlb overrides clear ID`) on every node holding it.
    Overrides {
        #[command(subcommand)]
        action: Option<OverridesAction>,
        #[command(flatten)]
        admin: admin::AdminArgs,
    },
    /// A tiny HTTP backend for demos and tests (latency, fail/recover on demand).
    ///
    /// GET / answers its name; POST /admin/fail, /admin/recover, /admin/latency?ms=N change
    /// it; SIGUSR1 makes it fail, SIGUSR2 recover; GET /stub_status reports load like nginx.
    Backend {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// Name it answers with.
        #[arg(long, default_value = "backend")]
        name: String,
        /// Latency added to every answer, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
    },
}

/// What `fedlb overrides` does besides listing.
#[derive(Subcommand, Debug)]
enum OverridesAction {
    /// List them (the default).
    List,
    /// Clear one, by the id `fedlb overrides` lists.
    Clear {
        /// The override's id.
        id: String,
    },
}

/// DNS servers `fedlb dns-config` writes configuration for.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum DnsConfigServer {
    /// BIND 9: a secondary of the embedded server, or views of dns.servers.
    Bind,
    /// Knot 3: a secondary of the embedded server.
    Knot,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(&cli.log);
    match cli.command {
        Command::Check {
            topology,
            deny_warnings,
            quiet,
        } => check::run(&topology, deny_warnings, quiet),
        Command::Certs {
            topology,
            out,
            force,
            add,
            operator: Some(name),
        } => {
            let _ = add;
            report(certs::operator(&topology, &out, &name, force))
        }
        Command::Certs {
            topology,
            out,
            force,
            add,
            operator: None,
        } => report(certs::run(&topology, &out, force, add.as_deref())),
        Command::Drain { target, set, admin } => admin::set(
            &admin,
            &set,
            fedlb_node::admin::Kind::Drain,
            None,
            &target,
            None,
        ),
        Command::Disable { target, set, admin } => admin::set(
            &admin,
            &set,
            fedlb_node::admin::Kind::Disable,
            None,
            &target,
            None,
        ),
        Command::Pin {
            service,
            target,
            region,
            set,
            admin,
        } => admin::set(
            &admin,
            &set,
            fedlb_node::admin::Kind::Pin,
            Some(&service),
            &target,
            region.as_deref(),
        ),
        Command::Undrain { target, admin } => {
            admin::clear_on(&admin, fedlb_node::admin::Kind::Drain, &target)
        }
        Command::Enable { target, admin } => {
            admin::clear_on(&admin, fedlb_node::admin::Kind::Disable, &target)
        }
        Command::Overrides { action, admin } => match action {
            None | Some(OverridesAction::List) => admin::list(&admin),
            Some(OverridesAction::Clear { id }) => admin::clear(&admin, &id),
        },
        Command::Status {
            urls,
            json,
            changes,
        } => match urls.as_slice() {
            [one] => report(status::run(one, json, changes)),
            several => status::run_several(several, json, changes),
        },
        Command::DnsConfig {
            server,
            topology,
            zone_dir,
            primary,
        } => report(dns_config::run(
            &topology,
            match server {
                DnsConfigServer::Bind => dns_config::Server::Bind,
                DnsConfigServer::Knot => dns_config::Server::Knot,
            },
            &dns_config::Options { zone_dir, primary },
        )),
        Command::Global(args) => report(roles::global(args)),
        Command::Farm(args) => report(roles::farm(args)),
        Command::Agent(args) => report(roles::agent(args)),
        Command::Backend {
            listen,
            name,
            latency_ms,
        } => report(roles::backend(
            listen,
            name,
            Duration::from_millis(latency_ms),
        )),
        Command::Up {
            topology,
            state,
            no_backends,
        } => report(up::run(&topology, state, !no_backends)),
        Command::Simulate {
            topology,
            scenario,
            suite,
            only,
            policy,
            seed,
            out,
            threads,
        } => {
            let mut args: Vec<std::ffi::OsString> = Vec::new();
            if let Some(dir) = suite {
                args.extend(["--suite".into(), dir.into()]);
            }
            if !only.is_empty() {
                args.extend(["--only".into(), only.join(",").into()]);
            }
            if let Some(topology) = topology {
                args.push(topology.into());
            }
            if let Some(scenario) = scenario {
                args.extend(["--scenario".into(), scenario.into()]);
            }
            if !policy.is_empty() {
                args.extend(["--policy".into(), policy.join(",").into()]);
            }
            if let Some(seed) = seed {
                args.extend(["--seed".into(), seed.to_string().into()]);
            }
            if let Some(out) = out {
                args.extend(["--out".into(), out.into()]);
            }
            if let Some(threads) = threads {
                args.extend(["--threads".into(), threads.to_string().into()]);
            }
            match fedlb_sim::run_cli(args, &mut std::io::stdout()) {
                // one line per problem, as `fedlb check` prints a topology's
                Err(e @ (fedlb_sim::Error::Scenario(_) | fedlb_sim::Error::Suite(_))) => {
                    for line in e.to_string().lines() {
                        eprintln!("error: {line}");
                    }
                    ExitCode::from(1)
                }
                result => report(result.map(|_| ()).map_err(anyhow::Error::from)),
            }
        }
    }
}
