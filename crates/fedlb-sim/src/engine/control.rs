//! The control plane: the real `Monitor`, `FarmState` and `GlobalState` of every role, fed
//! at the simulated moments their inputs arrive and woken at their own `poll_timeout`.

use std::time::Duration;

use fedlb_core::{
    FarmOutput, GlobalOutput, Measurement, MonitorOutput, ProbeId, ProbeResult,
    Report as CoreReport, Timestamp,
};

use crate::scenario::Measures;

use super::state::{Ev, Payload, World, from_ts, ts, us};

impl World<'_> {
    pub(super) fn schedule(&mut self, next: Option<Timestamp>, fired: bool) -> Option<u64> {
        let t = from_ts(next?);
        Some(if t > self.now {
            t
        } else if fired {
            self.now + 1_000
        } else {
            self.now
        })
    }

    pub(super) fn after_monitor(&mut self, m: usize, fired: bool) {
        while let Some(out) = self.monitors[m].monitor.poll_output() {
            match out {
                MonitorOutput::RunProbe(id) => self.start_probe(m, &id),
                MonitorOutput::Report(r) => self.send_report(m, r),
            }
        }
        let next = self.monitors[m].monitor.poll_timeout();
        if let Some(t) = self.schedule(next, fired) {
            let mon = &mut self.monitors[m];
            if mon.timer_at != Some(t) {
                mon.generation += 1;
                mon.timer_at = Some(t);
                let generation = mon.generation;
                self.push(
                    t,
                    Ev::MonitorTimer {
                        m: m as u32,
                        generation,
                    },
                );
            }
        }
    }

    pub(super) fn start_probe(&mut self, m: usize, id: &ProbeId) {
        let Some(idx) = self.monitors[m].probes.iter().position(|(p, _)| p == id) else {
            return;
        };
        let model = self.monitors[m].probes[idx].1;
        let dead = self.servers[m].down;
        let rtt = us(self.sc.delays.probe_rtt);
        let timeout = us(model.timeout);
        let srv = &self.servers[m];
        let (after, ok, value) = if dead {
            (timeout, false, 0)
        } else {
            match model.measures {
                Measures::Health => {
                    let mean = srv.mean_us * srv.slow;
                    let ahead = (srv.busy as usize + srv.queue.len() + 1)
                        .saturating_sub(srv.model.slots as usize);
                    let rt =
                        rtt + (mean * (1.0 + ahead as f64 / f64::from(srv.model.slots))) as u64;
                    if rt > timeout {
                        (timeout, false, 0)
                    } else {
                        (rt, true, rt)
                    }
                }
                Measures::Load => (rtt, true, u64::from(srv.busy) + srv.queue.len() as u64),
                Measures::Nothing => (rtt, true, 0),
            }
        };
        self.push(
            self.now + after,
            Ev::ProbeDone {
                m: m as u32,
                probe: idx as u16,
                ok,
                value,
            },
        );
    }

    pub(super) fn probe_done(&mut self, m: usize, idx: usize, ok: bool, value: u64) {
        let (id, model) = self.monitors[m].probes[idx].clone();
        let measurements = match (ok, model.measures) {
            (true, Measures::Health) => {
                vec![Measurement::ResponseTime(Duration::from_micros(value))]
            }
            (true, Measures::Load) => vec![Measurement::Pending(value)],
            _ => Vec::new(),
        };
        let result = ProbeResult {
            probe: id,
            ok,
            measurements,
            error: (!ok).then(|| "timed out".to_owned()),
            crash_hint: false,
        };
        self.monitors[m]
            .monitor
            .handle_probe_result(result, ts(self.now));
        self.after_monitor(m, false);
    }

    pub(super) fn send_report(&mut self, m: usize, r: CoreReport) {
        let delays = self.sc.delays;
        match self.pre.server_farm[m].filter(|_| !self.flat) {
            Some(f) => {
                let payload = self.store(Payload::Report(r));
                self.push(
                    self.now + us(delays.report),
                    Ev::ReportToFarm {
                        farm: f as u16,
                        payload,
                    },
                );
            }
            None => {
                let at = self.now + us(delays.report) + us(delays.summary);
                let payload = self.store(Payload::Report(r));
                self.push(at, Ev::ReportToGlobal { payload });
            }
        }
    }

    pub(super) fn after_farm(&mut self, f: usize, fired: bool) {
        let now = self.now;
        let Some(state) = &mut self.farms[f].state else {
            return;
        };
        let mut summaries = Vec::new();
        while let Some(out) = state.poll_output() {
            match out {
                FarmOutput::Summary(s) => summaries.push(s),
                FarmOutput::Decision(..) => {
                    if now >= self.warmup {
                        self.flips += 1;
                    }
                }
            }
        }
        let next = state.poll_timeout(ts(now));
        let at = now + us(self.sc.delays.summary);
        for s in summaries {
            let payload = self.store(Payload::Summary(s));
            self.push(at, Ev::SummaryToGlobal { payload });
        }
        if let Some(t) = self.schedule(next, fired) {
            let farm = &mut self.farms[f];
            if farm.timer_at != Some(t) {
                farm.generation += 1;
                farm.timer_at = Some(t);
                let generation = farm.generation;
                self.push(
                    t,
                    Ev::FarmTimer {
                        farm: f as u16,
                        generation,
                    },
                );
            }
        }
    }

    pub(super) fn after_global(&mut self, fired: bool) {
        let now = self.now;
        let glob = &mut self.global;
        let mut answers = Vec::new();
        let mut flips = 0;
        while let Some(GlobalOutput::Publish(p)) = glob.state.poll_output() {
            // a region the run does not serve has no view (the core decides only those given)
            let Some(v) = glob.views.iter().position(|v| v.region == p.region) else {
                continue;
            };
            let view = &mut glob.views[v];
            if p.decision.addresses != view.published {
                flips += 1;
                view.published.clone_from(&p.decision.addresses);
            }
            let shares = p.decision.shares();
            answers.push((v, p.decision.addresses, shares, p.ttl));
        }
        if now >= self.warmup {
            self.flips += flips;
        }
        let next = glob.state.poll_timeout(ts(now));
        let at = now + us(self.sc.delays.publish);
        for (v, a, shares, ttl) in answers {
            let payload = self.store(Payload::Answer(a, shares, ttl));
            self.push(
                at,
                Ev::DnsUpdate {
                    view: v as u16,
                    payload,
                },
            );
        }
        if let Some(t) = self.schedule(next, fired) {
            let glob = &mut self.global;
            if glob.timer_at != Some(t) {
                glob.generation += 1;
                glob.timer_at = Some(t);
                let generation = glob.generation;
                self.push(t, Ev::GlobalTimer { generation });
            }
        }
    }
}
