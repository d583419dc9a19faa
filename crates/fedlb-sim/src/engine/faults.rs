//! Faults: servers and farm nodes going down, slowing and coming back.

use fedlb_core::FarmState;

use crate::scenario::FaultKind;
use crate::stats::Outcome;

use super::state::{Queued, UTIL_WINDOW, World, ts, us};

impl World<'_> {
    pub(super) fn apply_faults(&mut self) {
        let now = self.now;
        let active = |k: FaultKind, target: usize| {
            self.pre.faults.iter().filter(move |(fk, t, at, until, _)| {
                *fk == k && *t == target && *at <= now && until.is_none_or(|u| now < u)
            })
        };
        let window = UTIL_WINDOW.min(self.end - self.warmup);
        for s in 0..self.servers.len() {
            // a dark site's servers are dark in every shape, flat or hierarchical
            let site_dark = self.pre.server_farm[s]
                .is_some_and(|f| active(FaultKind::FarmDown, f).next().is_some());
            let down = site_dark || active(FaultKind::ServerDown, s).next().is_some();
            let slow: f64 = active(FaultKind::ServerSlow, s).map(|f| f.4).product();
            let srv = &mut self.servers[s];
            let was_down = srv.down;
            srv.down = down;
            srv.slow = slow;
            if down && !was_down {
                // everything in it is lost; clients time out
                srv.account(now, window);
                srv.busy = 0;
                srv.incarnation += 1;
                let lost: Vec<Queued> = srv.queue.drain(..).collect();
                for q in lost {
                    self.record(
                        q.region as usize,
                        q.sent,
                        us(self.sc.client_timeout),
                        Outcome::ToDown,
                    );
                }
            }
        }
        for f in 0..self.farms.len() {
            let down = active(FaultKind::FarmDown, f).next().is_some();
            let node_down = down || active(FaultKind::FarmNodeDown, f).next().is_some();
            let farm = &mut self.farms[f];
            if node_down && !farm.node_down {
                farm.node_down = true;
                farm.state = None;
                farm.generation += 1;
                farm.timer_at = None;
            } else if !node_down && farm.node_down {
                farm.node_down = false;
                self.start_farm(f);
            }
        }
    }

    pub(super) fn start_farm(&mut self, f: usize) {
        let farm = &mut self.farms[f];
        farm.epoch += 1;
        let seed = self.sc.seed ^ (f as u64 + 1) << 32 ^ farm.epoch;
        farm.state = Some(FarmState::new(
            farm.config.clone(),
            farm.epoch,
            seed,
            ts(self.now),
        ));
        self.after_farm(f, false);
    }
}
