//! The re-probe rule of the monitor, on the simulated clock: a crash hint earns one
//! confirmation re-probe per failure episode, never a storm.

mod common;

use std::time::Duration;

use common::at;
use fedlb_core::*;
use proptest::prelude::*;

/// What the server does to a probe started at a given millisecond.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Answer {
    Ok,
    /// Connection refused or reset: a crash hint.
    Refused,
    /// No answer before the probe's timeout: no hint.
    Timeout,
}

/// A shell on the simulated clock: runs each probe the monitor asks for, answers it after
/// `latency_ms` (`timeout_ms` for a timeout) as `server` says, and records every run.
struct Shell {
    monitor: Monitor,
    now: u64,
    latency_ms: u64,
    timeout_ms: u64,
    /// (start ms, answer) of every probe run.
    runs: Vec<(u64, Answer)>,
    /// Results in flight: (finish ms, probe, answer).
    running: Vec<(u64, ProbeId, Answer)>,
    reports: Vec<(u64, Health)>,
}

impl Shell {
    fn new(fall: u32, interval_ms: u64) -> Self {
        let config = MonitorConfig {
            service: "www".into(),
            server: "s1".into(),
            probes: vec![ProbeSchedule {
                id: "tcp".into(),
                interval: Duration::from_millis(interval_ms),
                thresholds: Thresholds { rise: 2, fall },
                affects_health: true,
            }],
            heartbeat: Duration::from_secs(1),
        };
        Shell {
            monitor: Monitor::new(config, 1, at(0)),
            now: 0,
            latency_ms: 1,
            timeout_ms: 500,
            runs: Vec::new(),
            running: Vec::new(),
            reports: Vec::new(),
        }
    }

    fn drain(&mut self, server: &impl Fn(u64) -> Answer) {
        while let Some(out) = self.monitor.poll_output() {
            match out {
                MonitorOutput::RunProbe(p) => {
                    let answer = server(self.now);
                    self.runs.push((self.now, answer));
                    let took = match answer {
                        Answer::Timeout => self.timeout_ms,
                        _ => self.latency_ms,
                    };
                    self.running.push((self.now + took, p, answer));
                }
                MonitorOutput::Report(r) => self.reports.push((self.now, r.health)),
            }
        }
    }

    /// Runs the world until `end_ms`.
    fn run_until(&mut self, end_ms: u64, server: impl Fn(u64) -> Answer) {
        self.drain(&server);
        loop {
            let timer = self
                .monitor
                .poll_timeout()
                .map(|t| t.as_duration().as_millis() as u64);
            let result = self.running.iter().map(|r| r.0).min();
            let next = match (timer, result) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).expect("a monitor always has a heartbeat"),
            };
            if next > end_ms {
                self.now = end_ms;
                return;
            }
            self.now = next.max(self.now);
            if let Some(i) = self.running.iter().position(|r| r.0 <= self.now) {
                let (_, probe, answer) = self.running.remove(i);
                let result = ProbeResult {
                    probe,
                    ok: answer == Answer::Ok,
                    measurements: Vec::new(),
                    error: match answer {
                        Answer::Ok => None,
                        Answer::Refused => Some("connection refused".into()),
                        Answer::Timeout => Some("timed out".into()),
                    },
                    crash_hint: answer == Answer::Refused,
                };
                self.monitor.handle_probe_result(result, at(self.now));
            } else {
                self.monitor.handle_timeout(at(self.now));
            }
            self.drain(&server);
        }
    }

    fn runs_between(&self, from: u64, to: u64) -> usize {
        self.runs
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .count()
    }

    fn went_down_at(&self) -> Option<u64> {
        self.reports
            .iter()
            .find(|(_, h)| *h == Health::Down)
            .map(|(t, _)| *t)
    }
}

fn down_between(from: u64, to: u64) -> impl Fn(u64) -> Answer {
    move |t| {
        if t >= from && t < to {
            Answer::Refused
        } else {
            Answer::Ok
        }
    }
}

#[test]
fn a_server_refusing_for_10_s_at_a_1_s_interval_is_probed_at_most_12_times() {
    for fall in [1, 2, 3, 5] {
        let mut shell = Shell::new(fall, 1_000);
        // up for 5 s, refusing from 5.5 s to 15.5 s, up again after
        shell.run_until(30_000, down_between(5_500, 15_500));
        let refused = shell
            .runs
            .iter()
            .filter(|(_, a)| *a == Answer::Refused)
            .count();
        assert!(
            (10..=12).contains(&refused),
            "fall {fall}: {refused} probes during the 10 s outage: {:?}",
            shell.runs
        );
        assert!(
            shell.runs_between(16_000, 30_000) <= 15,
            "back to the interval after recovery"
        );
    }
}

#[test]
fn a_crash_is_confirmed_within_one_reprobe_whatever_the_fall_count() {
    for fall in [2, 3, 5] {
        let mut shell = Shell::new(fall, 1_000);
        shell.run_until(20_000, down_between(5_500, u64::MAX));
        let first_refusal = shell
            .runs
            .iter()
            .find(|(_, a)| *a == Answer::Refused)
            .unwrap()
            .0;
        let down = shell.went_down_at().expect("the crash is seen");
        // first refusal answered after 1 ms, the re-probe at once, its answer 1 ms later
        assert_eq!(
            down,
            first_refusal + 2,
            "fall {fall}: down one re-probe after the first refusal"
        );
    }
}

#[test]
fn a_dead_server_costs_one_probe_per_interval() {
    let mut shell = Shell::new(2, 1_000);
    shell.run_until(60_000, down_between(5_500, u64::MAX));
    // from 10 s on the server has long been down: exactly the interval's probes
    let steady = shell.runs_between(10_000, 60_000);
    assert!(
        (49..=51).contains(&steady),
        "{steady} probes in 50 s at a 1 s interval"
    );
}

#[test]
fn a_timeout_earns_no_immediate_reprobe() {
    let mut shell = Shell::new(2, 1_000);
    shell.run_until(20_000, |t| {
        if t >= 5_500 {
            Answer::Timeout
        } else {
            Answer::Ok
        }
    });
    let gaps: Vec<u64> = shell.runs.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(
        gaps.iter().all(|g| *g >= 1_000),
        "every run waits for the interval: {gaps:?}"
    );
    let down = shell.went_down_at().expect("fall 2 reached");
    assert!(down > 6_500, "two timeouts, one interval apart");
}

#[test]
fn each_new_failure_episode_earns_one_new_confirmation() {
    let mut shell = Shell::new(3, 1_000);
    // a single refusal (a blip: the re-probe succeeds), twice, far apart
    let blips = [5_500u64, 12_500];
    shell.run_until(20_000, move |t| {
        if blips.iter().any(|b| t >= *b && t < b + 1_000) {
            Answer::Refused
        } else {
            Answer::Ok
        }
    });
    let immediate = shell
        .runs
        .windows(2)
        .filter(|w| w[1].0 - w[0].0 < 1_000)
        .count();
    assert_eq!(
        immediate, 2,
        "one confirmation per episode: {:?}",
        shell.runs
    );
}

#[test]
fn a_listen_watcher_event_reprobes_once_and_a_refusal_confirms_the_crash() {
    let mut shell = Shell::new(3, 1_000);
    shell.run_until(5_200, |_| Answer::Ok);
    let before = shell.runs.len();
    shell.monitor.handle_trigger(at(5_200));
    shell.run_until(5_300, down_between(5_200, u64::MAX));
    assert_eq!(shell.runs.len(), before + 1, "one re-probe for the event");
    assert_eq!(
        shell.went_down_at(),
        Some(5_201),
        "the event and one refusal confirm the crash"
    );
    // afterwards: the interval, whatever the server does
    shell.run_until(15_300, down_between(5_200, u64::MAX));
    assert!(shell.runs_between(5_300, 15_300) <= 11);
}

#[test]
fn a_listen_watcher_event_is_not_repeated_while_down() {
    let mut shell = Shell::new(2, 1_000);
    shell.run_until(10_000, down_between(5_500, u64::MAX));
    let before = shell.runs.len();
    // the watcher flaps (every 50 ms for a second) while the server is already down
    for i in 0..20 {
        let t = 10_000 + i * 50;
        shell.monitor.handle_trigger(at(t));
        shell.run_until(t + 50, down_between(5_500, u64::MAX));
    }
    assert!(
        shell.runs.len() - before <= 2,
        "a down probe is not re-run by watcher events"
    );
}

proptest! {
    /// Whatever the server does, a probe is started at most once per interval, plus one
    /// confirmation re-probe per failure episode (an episode starts at the first failure
    /// after a success).
    #[test]
    fn reprobes_are_bounded_by_failure_episodes(
        answers in prop::collection::vec(
            prop_oneof![Just(Answer::Ok), Just(Answer::Refused), Just(Answer::Timeout)],
            1..60,
        ),
        fall in 1u32..5,
    ) {
        let mut shell = Shell::new(fall, 1_000);
        shell.timeout_ms = 300;
        let script = answers.clone();
        let end = answers.len() as u64 * 1_000;
        shell.run_until(end, move |t| script[((t / 1_000) as usize).min(script.len() - 1)]);
        let immediate = shell.runs.windows(2).filter(|w| w[1].0 - w[0].0 < 1_000).count();
        let mut episodes = 0;
        let mut failing = false;
        for (_, a) in &shell.runs {
            match a {
                Answer::Ok => failing = false,
                _ if !failing => {
                    failing = true;
                    episodes += 1;
                }
                _ => {}
            }
        }
        prop_assert!(
            immediate <= episodes,
            "{immediate} immediate re-probes for {episodes} failure episodes: {:?}",
            shell.runs
        );
    }
}
