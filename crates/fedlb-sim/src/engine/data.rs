//! The data plane: requests arrive per region, ask a caching resolver, queue at one
//! answered server for a slot, and are counted when they end.

use std::net::IpAddr;
use std::time::Duration;

use fedlb_core::spread;
use rand::Rng;
use rand_distr::{Distribution, Exp};

use crate::stats::Outcome;

use super::state::{Ev, Queued, UTIL_WINDOW, World, us};

impl World<'_> {
    pub(super) fn next_arrival(&mut self, r: usize, from: u64) {
        let max = self.max_rate[r];
        if max <= 0.0 {
            return;
        }
        let gap: f64 = Exp::new(max)
            .expect("rate is positive")
            .sample(&mut self.arrival_rng);
        let at = from + ((gap * 1e6).round() as u64).max(1);
        if at <= self.end {
            self.push(at, Ev::Arrival { region: r as u16 });
        }
    }

    pub(super) fn arrival(&mut self, r: usize) {
        let now = self.now;
        self.next_arrival(r, now);
        let rate = self.sc.regions[r].rate_at(Duration::from_micros(now));
        if self.arrival_rng.random::<f64>() * self.max_rate[r] >= rate {
            return; // thinned: the rate is below its maximum now
        }
        let view = &self.global.views[self.client_view[r]];
        let k = self.resolvers[r].len();
        let which = if k == 1 {
            0
        } else {
            self.client_rng.random_range(0..k)
        };
        let expires = self.resolvers[r][which].expires;
        if expires.is_none_or(|e| now >= e) && !view.answer.is_empty() {
            let mut ttl = view.answer_ttl;
            if expires.is_none() {
                // As if cached some time before: resolvers that all started together
                // would otherwise stay in step for the whole run.
                ttl = (ttl as f64 * (1.0 - self.client_rng.random::<f64>())) as u64;
            }
            // What the DNS server answers this resolver: the whole set, or one member picked
            // per query by the embedded server's own rule (`spread::pick`).
            let v4 = view.shares.iter().any(|(a, _)| a.is_ipv4());
            let family: Vec<(IpAddr, f64)> = view
                .shares
                .iter()
                .filter(|(a, _)| a.is_ipv4() == v4)
                .copied()
                .collect();
            let key = self.resolvers[r][which].key;
            let picked = spread::pick(self.spread, &family, key, &mut self.client_rng)
                .and_then(|i| self.pre.by_addr.get(&family[i].0).copied());
            let res = &mut self.resolvers[r][which];
            match picked {
                Some(s) => {
                    res.answer.clear();
                    res.answer.push(s);
                }
                None => res.answer.clone_from(&view.answer),
            }
            res.expires = Some(now + ttl);
        }
        let answer = &self.resolvers[r][which].answer;
        let s = match answer.len() {
            0 => {
                self.record(r, now, us(self.sc.client_timeout), Outcome::Refused);
                return;
            }
            1 => answer[0] as usize,
            n => answer[self.client_rng.random_range(0..n)] as usize,
        };
        if now >= self.warmup {
            self.servers[s].requests += 1;
        }
        if self.servers[s].down {
            self.last_to_down = Some(now);
            self.record(r, now, us(self.sc.client_timeout), Outcome::ToDown);
            return;
        }
        let srv = &mut self.servers[s];
        if srv.busy < srv.model.slots {
            srv.account(now, UTIL_WINDOW.min(self.end - self.warmup));
            srv.busy += 1;
            self.begin_service(s, now, r as u16);
        } else if (srv.queue.len() as u64) < u64::from(srv.model.queue_limit) {
            srv.queue.push_back(Queued {
                sent: now,
                region: r as u16,
            });
        } else {
            self.record(r, now, us(self.sc.client_timeout), Outcome::Refused);
        }
    }

    pub(super) fn begin_service(&mut self, s: usize, sent: u64, region: u16) {
        let srv = &self.servers[s];
        let t = (srv.sampler.sample(&mut self.service_rng) * srv.slow).round() as u64;
        let incarnation = srv.incarnation;
        self.push(
            self.now + t.max(1),
            Ev::Departure {
                server: s as u32,
                sent,
                region,
                incarnation,
            },
        );
    }

    pub(super) fn departure(&mut self, s: usize, sent: u64, r: usize, incarnation: u32) {
        let now = self.now;
        if self.servers[s].incarnation != incarnation {
            // the server died while serving it: the client waits out its timeout
            self.record(r, sent, us(self.sc.client_timeout), Outcome::ToDown);
            return;
        }
        let rtt = self.pre.rtt[r][s];
        self.record(r, sent, rtt + (now - sent), Outcome::Ok);
        let window = UTIL_WINDOW.min(self.end - self.warmup);
        let srv = &mut self.servers[s];
        match srv.queue.pop_front() {
            Some(q) => self.begin_service(s, q.sent, q.region),
            None => {
                srv.account(now, window);
                srv.busy -= 1;
            }
        }
    }

    pub(super) fn record(&mut self, r: usize, sent: u64, response: u64, outcome: Outcome) {
        if sent < self.warmup {
            return;
        }
        self.overall.add(response, outcome);
        self.regions[r].add(response, outcome);
        let b = ((sent - self.warmup) / self.bin_us) as usize;
        if let Some(bin) = self.bins.get_mut(b) {
            bin.0 += 1;
            bin.1 += response as f64;
            bin.2 += u64::from(outcome == Outcome::ToDown);
        }
    }
}
