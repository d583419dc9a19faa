//! The event queue: scheduling, the payloads events carry, and the dispatch of each event
//! to the data plane, the control plane or the faults.

use std::cmp::Reverse;
use std::time::Duration;

use super::state::{Entry, Ev, Payload, World, ts, us};

impl World<'_> {
    pub(super) fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            at,
            seq: self.seq,
            ev,
        }));
    }

    pub(super) fn store(&mut self, p: Payload) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.payloads[i as usize] = Some(p);
                i
            }
            None => {
                self.payloads.push(Some(p));
                (self.payloads.len() - 1) as u32
            }
        }
    }

    pub(super) fn take(&mut self, i: u32) -> Payload {
        self.free.push(i);
        self.payloads[i as usize]
            .take()
            .expect("payload stored once")
    }

    pub(super) fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Arrival { region } => self.arrival(region as usize),
            Ev::Departure {
                server,
                sent,
                region,
                incarnation,
            } => self.departure(server as usize, sent, region as usize, incarnation),
            Ev::MonitorTimer { m, generation } => {
                let m = m as usize;
                if self.monitors[m].generation == generation {
                    self.monitors[m].timer_at = None;
                    self.monitors[m].monitor.handle_timeout(ts(self.now));
                    self.after_monitor(m, true);
                }
            }
            Ev::ProbeDone {
                m,
                probe,
                ok,
                value,
            } => self.probe_done(m as usize, probe as usize, ok, value),
            Ev::ReportToFarm { farm, payload } => {
                let Payload::Report(r) = self.take(payload) else {
                    unreachable!("report payload")
                };
                let f = farm as usize;
                if let Some(state) = &mut self.farms[f].state {
                    // refused reports (unknown or reordered) are what the real node drops too
                    let _ = state.handle_report(&r, ts(self.now));
                    self.after_farm(f, false);
                }
            }
            Ev::ReportToGlobal { payload } => {
                let Payload::Report(r) = self.take(payload) else {
                    unreachable!("report payload")
                };
                let _ = self.global.state.handle_report(&r, ts(self.now));
                self.after_global(false);
            }
            Ev::FarmTimer { farm, generation } => {
                let f = farm as usize;
                if self.farms[f].generation == generation {
                    self.farms[f].timer_at = None;
                    if let Some(state) = &mut self.farms[f].state {
                        state.handle_timeout(ts(self.now));
                        self.after_farm(f, true);
                    }
                }
            }
            Ev::SummaryToGlobal { payload } => {
                let Payload::Summary(s) = self.take(payload) else {
                    unreachable!("summary payload")
                };
                let _ = self.global.state.handle_summary(&s, ts(self.now));
                self.after_global(false);
            }
            Ev::GlobalTimer { generation } => {
                if self.global.generation == generation {
                    self.global.timer_at = None;
                    self.global.state.handle_timeout(ts(self.now));
                    self.after_global(true);
                }
            }
            Ev::DnsUpdate { view, payload } => {
                let Payload::Answer(addrs, shares, ttl) = self.take(payload) else {
                    unreachable!("answer payload")
                };
                let answer: Vec<u32> = addrs
                    .iter()
                    .filter_map(|a| self.pre.by_addr.get(a).copied())
                    .collect();
                let view = &mut self.global.views[view as usize];
                view.answer_ttl = us(Duration::from_secs(u64::from(ttl)));
                view.shares = shares;
                if view.answer != answer {
                    if self.now >= self.warmup {
                        self.dns_changes += 1;
                    }
                    view.answer = answer;
                }
            }
            Ev::Fault => self.apply_faults(),
        }
    }
}
