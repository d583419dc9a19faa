//! The probes of fedlb (the patent's status objects): TCP connect, HTTP(S) GET, ICMP echo,
//! hop count, server load (nginx `stub_status`, a Prometheus metric, `/proc/net/tcp`
//! connection counts), an application metric printed by a command, and a watcher that
//! notices a service's listening socket vanish. A [`Prober`] runs one probe once, within a
//! timeout, and returns what it measured as a [`fedlb_core::ProbeResult`].
//!
//! This crate measures and never decides: each run says up or down for that run only. It
//! holds no schedule, no rise/fall thresholds and no health state; those live in the core's
//! monitor, which asks for a run with `MonitorOutput::RunProbe`. A failing probe is data (a
//! down result whose error names the target and the reason), never a panic and never an
//! error propagated to the node.

mod command;
mod error;
mod hops;
mod http;
mod icmp;
mod load;
mod procnet;
mod tcp;
mod watch;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use fedlb_core::{Measurement, ProbeId, ProbeResult};
use tokio::time::Instant;

pub use error::ProbeError;
pub use load::{PromSample, StubStatus, parse_exposition, parse_stub_status};
pub use procnet::{count_established, is_listening, is_listening_at};
pub use watch::{ListenEvent, ListenWatcher};

/// What one probe measures and where.
#[derive(Clone, Debug, PartialEq)]
pub enum ProbeSpec {
    /// TCP connect: up if the connection is accepted; measures connect time.
    Tcp {
        /// The service address.
        target: SocketAddr,
    },
    /// HTTP(S) GET: up if the status is expected (and the body matches); measures the
    /// time to the whole response (capped body).
    Http(HttpCheck),
    /// ICMP echo: up if the target answers; measures the round-trip time.
    Icmp {
        /// The server address.
        target: IpAddr,
    },
    /// Hop count, as `tracepath` measures it: UDP datagrams with increasing TTL until the
    /// target itself answers.
    Hops {
        /// The server address.
        target: IpAddr,
        /// Give up beyond this many hops.
        max_hops: u8,
    },
    /// Server load (intrusive mode): pending requests, connections or a metric.
    Load(LoadSource),
    /// An application metric: a command that prints one number (not run through a shell).
    Command {
        /// Program and arguments.
        argv: Vec<String>,
        /// The metric name its output is recorded under.
        metric: String,
    },
}

/// Where an HTTP request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpTarget {
    /// The address connected to.
    pub addr: SocketAddr,
    /// Request path (with query), starting with `/`.
    pub path: String,
    /// Host header, and TLS server name unless [`TlsOptions::server_name`] says otherwise.
    /// Default: the address (with the port unless it is the scheme's default).
    pub host: Option<String>,
    /// HTTPS when set.
    pub tls: Option<TlsOptions>,
}

/// How HTTPS checks the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsOptions {
    /// Which certificate authorities are trusted.
    pub roots: TlsRoots,
    /// The name the certificate must carry (and sent as SNI). Default: the Host header
    /// without its port.
    pub server_name: Option<String>,
}

/// Which certificate authorities an HTTPS probe trusts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TlsRoots {
    /// The platform's bundle (`SSL_CERT_FILE`, else the usual distribution paths); a run
    /// fails with a TLS error naming the choices if none is found.
    System,
    /// The certificates of this PEM file.
    CaFile(PathBuf),
    /// Trust any certificate (the handshake is still checked). Only by explicit choice.
    Insecure,
}

/// An HTTP(S) health check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCheck {
    /// Where the request goes.
    pub target: HttpTarget,
    /// Statuses that count as up.
    pub expect_status: RangeInclusive<u16>,
    /// Text the body (its first [`ProberConfig::body_limit`] bytes) must contain.
    pub body_contains: Option<String>,
}

impl HttpCheck {
    /// A check of `path` at `addr` over plain HTTP accepting 2xx and 3xx.
    pub fn new(addr: SocketAddr, path: &str) -> Self {
        HttpCheck {
            target: HttpTarget {
                addr,
                path: path.to_owned(),
                host: None,
                tls: None,
            },
            expect_status: 200..=399,
            body_contains: None,
        }
    }
}

/// Where a load probe reads the server's load.
#[derive(Clone, Debug, PartialEq)]
pub enum LoadSource {
    /// nginx `stub_status`: active connections → [`Measurement::Connections`], reading +
    /// writing → [`Measurement::Pending`].
    NginxStubStatus(HttpTarget),
    /// One metric of a Prometheus text exposition; the values of every series that
    /// matches the name and labels are summed.
    Prometheus {
        /// The exposition page.
        page: HttpTarget,
        /// Metric name (`http_requests_in_flight`).
        metric: String,
        /// Labels the series must carry (`handler="api"`).
        labels: Vec<(String, String)>,
        /// What the value is recorded as.
        record_as: RecordAs,
    },
    /// Established connections whose local port is `port`, from `/proc/net/tcp` and
    /// `/proc/net/tcp6` → [`Measurement::Connections`].
    ProcNetTcp {
        /// The service port.
        port: u16,
    },
}

/// What a number read from a server is recorded as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordAs {
    /// [`Measurement::Pending`] (rounded, negative values clamp to 0).
    Pending,
    /// [`Measurement::Connections`] (rounded, negative values clamp to 0).
    Connections,
    /// [`Measurement::Metric`] under this name.
    Metric(String),
}

/// How ICMP echo opens its socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IcmpMode {
    /// An unprivileged datagram socket if `net.ipv4.ping_group_range` allows, else a raw
    /// socket (root or `CAP_NET_RAW`).
    #[default]
    Auto,
    /// Only the unprivileged datagram socket.
    Datagram,
    /// Only a raw socket.
    Raw,
}

/// Settings shared by every run of a [`Prober`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProberConfig {
    /// How ICMP echo opens its socket.
    pub icmp: IcmpMode,
    /// First UDP port of hop probes; TTL `n` goes to `hop_base_port + n`.
    pub hop_base_port: u16,
    /// How long a hop probe waits for one hop's answer before trying the next TTL.
    pub hop_wait: Duration,
    /// How much of an HTTP body is read (body matches and load pages look no further).
    pub body_limit: usize,
}

impl Default for ProberConfig {
    fn default() -> Self {
        ProberConfig {
            icmp: IcmpMode::Auto,
            // traceroute's and tracepath's port: firewalls that allow traceroute allow it.
            hop_base_port: 33434,
            hop_wait: Duration::from_secs(1),
            body_limit: 1 << 20,
        }
    }
}

/// What one run produced.
#[derive(Debug)]
pub struct Outcome {
    /// Wall time of the run.
    pub elapsed: Duration,
    /// The measurements of a run that succeeded, or why it failed.
    pub result: Result<Vec<Measurement>, ProbeError>,
}

impl Outcome {
    /// Whether the run succeeded.
    pub fn ok(&self) -> bool {
        self.result.is_ok()
    }

    /// The latency this kind of probe measures (connect, response or round-trip time).
    pub fn latency(&self) -> Option<Duration> {
        self.result.as_ref().ok()?.iter().find_map(|m| match m {
            Measurement::ResponseTime(d) => Some(*d),
            _ => None,
        })
    }

    /// Whether the failure hints at a crash; see [`ProbeError::suggests_crash`].
    pub fn suggests_crash(&self) -> bool {
        self.result.as_ref().is_err_and(ProbeError::suggests_crash)
    }

    /// The result as the monitor takes it.
    pub fn to_probe_result(&self, probe: &ProbeId) -> ProbeResult {
        match &self.result {
            Ok(measurements) => ProbeResult {
                probe: probe.clone(),
                ok: true,
                measurements: measurements.clone(),
                error: None,
                crash_hint: false,
            },
            Err(e) => ProbeResult {
                probe: probe.clone(),
                ok: false,
                measurements: Vec::new(),
                error: Some(e.to_string()),
                crash_hint: e.suggests_crash(),
            },
        }
    }
}

/// Runs probes. Cheap to share (`Arc`); runs may overlap. It caches TLS client
/// configurations per trust choice: a changed CA file is read by a new `Prober`.
pub struct Prober {
    config: ProberConfig,
    tls: http::TlsCache,
    icmp_seq: AtomicU16,
}

impl Default for Prober {
    fn default() -> Self {
        Prober::new(ProberConfig::default())
    }
}

impl Prober {
    /// A prober with these settings.
    pub fn new(config: ProberConfig) -> Self {
        Prober {
            config,
            tls: http::TlsCache::default(),
            icmp_seq: AtomicU16::new(0),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &ProberConfig {
        &self.config
    }

    /// Runs `spec` once, for at most `timeout`, and hands the result to the monitor's shape.
    pub async fn run(&self, probe: &ProbeId, spec: &ProbeSpec, timeout: Duration) -> ProbeResult {
        let outcome = self.probe(spec, timeout).await;
        if let Err(e) = &outcome.result {
            tracing::debug!(%probe, error = %e, "probe failed");
        }
        outcome.to_probe_result(probe)
    }

    /// Runs `spec` once, for at most `timeout`. Dropping the future stops the run (a
    /// command's processes are killed).
    pub async fn probe(&self, spec: &ProbeSpec, timeout: Duration) -> Outcome {
        let start = Instant::now();
        let result = match tokio::time::timeout(timeout, self.dispatch(spec, timeout)).await {
            Ok(r) => r,
            Err(_) => Err(ProbeError::Timeout {
                target: spec.to_string(),
                after: timeout,
            }),
        };
        Outcome {
            elapsed: start.elapsed(),
            result,
        }
    }

    async fn dispatch(
        &self,
        spec: &ProbeSpec,
        timeout: Duration,
    ) -> Result<Vec<Measurement>, ProbeError> {
        let target = spec.to_string();
        match spec {
            ProbeSpec::Tcp { target: addr } => {
                let rtt = tcp::connect_time(&target, *addr).await?;
                Ok(vec![Measurement::ResponseTime(rtt)])
            }
            ProbeSpec::Http(check) => {
                let rtt = http::check(self, &target, check).await?;
                Ok(vec![Measurement::ResponseTime(rtt)])
            }
            ProbeSpec::Icmp { target: ip } => {
                let seq = self.icmp_seq.fetch_add(1, Ordering::Relaxed);
                let rtt = icmp::echo(&target, *ip, self.config.icmp, seq).await?;
                Ok(vec![Measurement::ResponseTime(rtt)])
            }
            ProbeSpec::Hops {
                target: ip,
                max_hops,
            } => {
                let hops = hops::count(&target, *ip, *max_hops, &self.config, timeout).await?;
                Ok(vec![Measurement::Hops(hops)])
            }
            ProbeSpec::Load(source) => load::read(self, &target, source).await,
            ProbeSpec::Command { argv, metric } => {
                let v = command::run(&target, argv).await?;
                Ok(vec![Measurement::Metric(metric.clone(), v)])
            }
        }
    }
}

impl fmt::Display for HttpTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        write!(f, "{scheme} {}{}", self.addr, self.path)
    }
}

/// The target as error messages and logs name it: `http 127.0.0.2:8080/health`.
impl fmt::Display for ProbeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeSpec::Tcp { target } => write!(f, "tcp {target}"),
            ProbeSpec::Http(check) => check.target.fmt(f),
            ProbeSpec::Icmp { target } => write!(f, "icmp {target}"),
            ProbeSpec::Hops { target, .. } => write!(f, "hops {target}"),
            ProbeSpec::Load(LoadSource::NginxStubStatus(page)) => {
                write!(f, "stub_status {page}")
            }
            ProbeSpec::Load(LoadSource::Prometheus { page, metric, .. }) => {
                write!(f, "prometheus {metric} at {page}")
            }
            ProbeSpec::Load(LoadSource::ProcNetTcp { port }) => {
                write!(f, "connections to port {port}")
            }
            ProbeSpec::Command { argv, .. } => {
                f.write_str("command")?;
                for arg in argv {
                    if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == '\'') {
                        write!(f, " {arg:?}")?;
                    } else {
                        write!(f, " {arg}")?;
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn runs_can_be_spawned() {
        let prober = Prober::default();
        let spec = ProbeSpec::Icmp {
            target: IpAddr::from([127, 0, 0, 1]),
        };
        assert_send(&prober.probe(&spec, Duration::from_secs(1)));
        assert_send(&prober.run(&ProbeId::from("icmp"), &spec, Duration::from_secs(1)));
    }

    #[test]
    fn targets_name_the_kind_and_address() {
        let http = ProbeSpec::Http(HttpCheck::new(([127, 0, 0, 2], 8080).into(), "/health"));
        assert_eq!(http.to_string(), "http 127.0.0.2:8080/health");
        let cmd = ProbeSpec::Command {
            argv: vec!["psql".into(), "-c".into(), "select 1".into()],
            metric: "users".into(),
        };
        assert_eq!(cmd.to_string(), "command psql -c \"select 1\"");
    }
}
