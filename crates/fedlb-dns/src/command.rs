//! The command publisher: runs a configured program with the answers as JSON on stdin, when the
//! answers change. It is the patent's "specialized object" for anything fedlb has no publisher
//! for (a cloud DNS API, a load balancer's config, a CMDB).
//!
//! The program gets `FEDLB_ZONE` in its environment and must exit 0 within the timeout; it is
//! killed on timeout. A failed or timed-out run is retried with backoff until it succeeds;
//! answers that did not change since the last successful run are not delivered again.

use std::{path::PathBuf, process::Stdio, time::Duration};

use hickory_proto::rr::Name;
use tokio::{io::AsyncWriteExt, process::Command, time::Instant};
use tracing::{debug, error, info};

use crate::{
    DesiredZone, Error,
    answers::ZoneState,
    diff::{accept, diff},
    render,
    report::{Backoff, PublishReport, PublisherMetrics, Status, TargetMetrics, TargetReport},
};

/// Configuration of a [`CommandPublisher`].
#[derive(Debug, Clone)]
pub struct CommandConfig {
    /// The zone of the answers.
    pub zone: Name,
    /// The program (absolute, or looked up in `PATH`).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// How long one run may take before it is killed.
    pub timeout: Duration,
    /// First retry delay after a failure; doubles per failure.
    pub backoff_min: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
}

impl CommandConfig {
    /// Defaults: 10 s timeout, backoff 1 s … 60 s.
    pub fn new(zone: Name, program: impl Into<PathBuf>, args: Vec<String>) -> Self {
        Self {
            zone,
            program: program.into(),
            args,
            timeout: Duration::from_secs(10),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }
}

/// Runs a command with the answers on stdin when they change.
pub struct CommandPublisher {
    config: CommandConfig,
    desired: DesiredZone,
    /// JSON and answers of the last successful run.
    delivered: Option<(String, ZoneState)>,
    retry_at: Option<Instant>,
    backoff: Backoff,
    metrics: TargetMetrics,
    publisher_metrics: PublisherMetrics,
}

impl CommandPublisher {
    /// A publisher that has run nothing yet.
    pub fn new(mut config: CommandConfig) -> Self {
        config.zone = config.zone.to_lowercase();
        config.zone.set_fqdn(true);
        Self {
            desired: DesiredZone::for_zone(&config.zone),
            delivered: None,
            retry_at: None,
            backoff: Backoff::new(config.backoff_min, config.backoff_max),
            metrics: TargetMetrics::new(config.program.display().to_string()),
            publisher_metrics: PublisherMetrics::default(),
            config,
        }
    }

    /// Takes new answers; runs the command if they differ from the last delivered ones (unless
    /// a recent failure defers the run to its retry time).
    pub async fn publish(&mut self, desired: &DesiredZone) -> PublishReport {
        let (accepted, refused) = accept(&self.config.zone, &self.desired, desired);
        for err in &refused {
            error!(zone = %self.config.zone, error = %err, "answers refused");
        }
        self.publisher_metrics.record_refusals(&refused);
        self.desired = accepted;
        let status = match self.retry_at {
            Some(until) if until > Instant::now() => Status::Deferred { until },
            _ => self.deliver().await,
        };
        self.report(status, refused)
    }

    /// Retries a failed delivery.
    pub async fn handle_timeout(&mut self) -> PublishReport {
        let status = self.deliver().await;
        self.report(status, Vec::new())
    }

    /// When a failed delivery is retried.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Counters.
    pub fn metrics(&self) -> PublisherMetrics {
        let mut m = self.publisher_metrics.clone();
        m.targets = vec![self.metrics.clone()];
        m
    }

    fn report(&self, status: Status, refused: Vec<Error>) -> PublishReport {
        PublishReport {
            refused,
            targets: vec![TargetReport {
                target: self.metrics.target.clone(),
                status,
            }],
        }
    }

    async fn deliver(&mut self) -> Status {
        let json = render::to_json(&self.desired);
        if self
            .delivered
            .as_ref()
            .is_some_and(|(last, _)| *last == json)
        {
            self.retry_at = None;
            return Status::InSync;
        }
        let empty = ZoneState::default();
        let previous = self.delivered.as_ref().map_or(&empty, |(_, s)| s);
        let changes = diff(previous, &self.desired).len();
        self.metrics.updates_sent += 1;
        match self.run(&json).await {
            Ok(()) => {
                info!(command = %self.metrics.target, zone = %self.config.zone, changes, "answers delivered");
                self.metrics.updates_applied += 1;
                self.metrics.consecutive_failures = 0;
                self.backoff.reset();
                self.retry_at = None;
                self.delivered = Some((json, self.desired.to_state()));
                Status::Updated {
                    changes,
                    conflicts: 0,
                }
            }
            Err(e) => {
                self.metrics.record_failure(&e);
                let delay = self.backoff.next_delay();
                self.retry_at = Some(Instant::now() + delay);
                error!(command = %self.metrics.target, zone = %self.config.zone, retry_in = ?delay, error = %e,
                    "delivering answers failed");
                Status::Failed(e)
            }
        }
    }

    async fn run(&self, json: &str) -> Result<(), Error> {
        let command = self.metrics.target.clone();
        let fail = |what: String, timed_out| Error::Command {
            command: command.clone(),
            what,
            timed_out,
        };
        let mut child = Command::new(&self.config.program)
            .args(&self.config.args)
            .env("FEDLB_ZONE", self.config.zone.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(format!("cannot start: {e}"), false))?;
        let mut stdin = child.stdin.take();
        let input = json.as_bytes().to_vec();
        let feed = async move {
            if let Some(stdin) = stdin.as_mut() {
                // A program that does not read its input is judged by its exit status alone.
                let _ = stdin.write_all(&input).await;
            }
            drop(stdin);
        };
        let run = async { tokio::join!(feed, child.wait_with_output()).1 };
        let output = match tokio::time::timeout(self.config.timeout, run).await {
            Err(_) => {
                return Err(fail(
                    format!("did not finish within {:?}; killed", self.config.timeout),
                    true,
                ));
            }
            Ok(Err(e)) => return Err(fail(format!("waiting for it failed: {e}"), false)),
            Ok(Ok(output)) => output,
        };
        if !output.stdout.is_empty() {
            debug!(command = %command, stdout = %String::from_utf8_lossy(&output.stdout), "command output");
        }
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr = stderr.trim();
        let tail: String = {
            let chars: Vec<char> = stderr.chars().collect();
            chars[chars.len().saturating_sub(300)..].iter().collect()
        };
        let how = match output.status.code() {
            Some(code) => format!("exited with status {code}"),
            None => format!("ended without an exit code ({})", output.status),
        };
        Err(fail(format!("{how}; stderr: \"{tail}\""), false))
    }
}
