//! Set-up: what every variant of a scenario shares ([`Prepared`]), and one run's world
//! with its state machines built from the topology and the variant.

use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use fedlb_core::{
    CandidateId, Distance, GlobalConfig, GlobalState, MemberSpec, Monitor, RegionId, RegionSpec,
    TierService, Timestamp, TtlRule, spread,
};
use ipnet::IpNet;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::error::Error;
use crate::scenario::{FaultKind, Measures, ProbeModel, Scenario, TtlMode, Variant, fibre_rtt};
use crate::stats::Acc;
use crate::topology::Topology;
use crate::variant::{selectors, ttl_mode};

use super::state::{
    DnsView, Ev, FarmSim, GlobalSim, MonSim, Prepared, Resolver, Sampler, ServerSim, UTIL_WINDOW,
    World, us,
};

impl Prepared {
    pub fn new(topo: &Topology, sc: &Scenario) -> Result<Prepared, Error> {
        let servers = topo.servers()?;
        let farm_ids: Vec<_> = topo.farms.keys().cloned().collect();
        let server_farm: Vec<Option<usize>> = servers
            .iter()
            .map(|s| {
                s.farm
                    .as_ref()
                    .and_then(|f| farm_ids.iter().position(|x| x == f))
            })
            .collect();
        for name in sc.servers.keys() {
            if !servers.iter().any(|s| s.id.as_str() == name) {
                return Err(Error::Mismatch(format!(
                    "scenario servers.{name}: no server \"{name}\" offers service \"{}\"",
                    topo.service
                )));
            }
        }
        let models = servers
            .iter()
            .map(|s| {
                sc.servers
                    .get(s.id.as_str())
                    .copied()
                    .unwrap_or(sc.server_defaults)
            })
            .collect();
        let mut locations = topo.locations.clone();
        locations.extend(sc.locations.iter().map(|(k, v)| (k.clone(), *v)));
        let mut places: Vec<String> = servers.iter().map(|s| s.place.clone()).collect();
        places.dedup();
        for name in sc.locations.keys() {
            if !places.contains(name) {
                return Err(Error::Mismatch(format!(
                    "scenario farms.{name}: no farm or direct server \"{name}\""
                )));
            }
        }
        let mut place_rtt_ms = Vec::new();
        for (i, region) in sc.regions.iter().enumerate() {
            let row = sc.rtt_ms.get(&region.name);
            let mut out = BTreeMap::new();
            for place in &places {
                let ms = match (
                    row.and_then(|r| r.get(place)),
                    region.location,
                    locations.get(place),
                ) {
                    (Some(ms), _, _) => *ms,
                    (None, Some(a), Some(b)) => fibre_rtt(&a, b).as_secs_f64() * 1e3,
                    _ => {
                        return Err(Error::Mismatch(format!(
                            "regions[{i}] \"{}\": no latency to \"{place}\"; give rtt_ms.{}.{place}, or locations of both",
                            region.name, region.name
                        )));
                    }
                };
                out.insert(place.clone(), ms);
            }
            if let Some(row) = row {
                for to in row.keys() {
                    if !places.contains(to) {
                        return Err(Error::Mismatch(format!(
                            "scenario rtt_ms.{}.{to}: no farm or direct server \"{to}\"",
                            region.name
                        )));
                    }
                }
            }
            place_rtt_ms.push(out);
        }
        let rtt = place_rtt_ms
            .iter()
            .map(|row| {
                servers
                    .iter()
                    .map(|s| (row[&s.place] * 1e3).round() as u64)
                    .collect()
            })
            .collect();
        let mut by_addr = BTreeMap::new();
        for (i, s) in servers.iter().enumerate() {
            for a in &s.addresses {
                by_addr.insert(*a, i as u32);
            }
        }
        let mut faults = Vec::new();
        for (i, f) in sc.faults.iter().enumerate() {
            let target = match f.kind {
                FaultKind::ServerDown | FaultKind::ServerSlow => {
                    servers.iter().position(|s| s.id.as_str() == f.target)
                }
                FaultKind::FarmDown | FaultKind::FarmNodeDown => {
                    farm_ids.iter().position(|x| x.as_str() == f.target)
                }
            }
            .ok_or_else(|| {
                Error::Mismatch(format!(
                    "scenario faults[{i}].target: no {} \"{}\"",
                    match f.kind {
                        FaultKind::ServerDown | FaultKind::ServerSlow => "server",
                        _ => "farm",
                    },
                    f.target
                ))
            })?;
            faults.push((f.kind, target, us(f.at), f.until.map(us), f.factor));
        }
        Ok(Prepared {
            servers,
            models,
            rtt,
            place_rtt_ms,
            by_addr,
            server_farm,
            faults,
        })
    }
}

pub(super) fn seeded(seed: u64, stream: u64) -> SmallRng {
    // splitmix-style mixing keeps the streams independent of each other
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    SmallRng::seed_from_u64(z ^ (z >> 31))
}

/// The subnet a resolver is keyed by for hashed spreading: one /56 of its own per resolver
/// (a label for the hash, never an address anything is sent to).
fn resolver_key(region: usize, resolver: u32) -> IpNet {
    let mut octets = [0u8; 16];
    octets[0] = 0xfd;
    octets[1..3].copy_from_slice(&(region as u16).to_be_bytes());
    octets[3..7].copy_from_slice(&resolver.to_be_bytes());
    spread::client_key(IpAddr::V6(Ipv6Addr::from(octets)), None)
}

impl<'a> World<'a> {
    pub(super) fn new(
        topo: &'a Topology,
        sc: &'a Scenario,
        pre: &'a Prepared,
        v: &Variant,
        seed: u64,
    ) -> Result<World<'a>, Error> {
        let (global_sel, local_sel) = selectors(topo, v)?;
        let flat = v.flat.is_some();
        let warmup = us(sc.warmup);
        // (member, where it stands): a farm stands at its own place, a server at its farm's
        let members: Vec<(MemberSpec, &str)> = if flat {
            pre.servers
                .iter()
                .map(|s| {
                    let spec = MemberSpec {
                        id: CandidateId::from(&s.id),
                        kind: fedlb_core::MemberKind::Server,
                        addresses: s.addresses.clone(),
                        capacity: s.capacity,
                        distance: s.distance,
                        liveness: s.liveness,
                    };
                    (spec, s.place.as_str())
                })
                .collect()
        } else {
            topo.global_service()?
                .members
                .iter()
                .map(|m| (m.clone(), m.id.as_str()))
                .collect()
        };
        // Per-region answers run the core's own regions: each scenario region is a region of
        // clients, at its round-trip time from each farm.
        let regions: Vec<RegionSpec> = if v.per_region {
            sc.regions
                .iter()
                .zip(&pre.place_rtt_ms)
                .map(|(r, rtt)| RegionSpec {
                    id: RegionId::from(r.name.as_str()),
                    distances: members
                        .iter()
                        .map(|(m, place)| (m.id.clone(), Distance::Pinned(rtt[*place])))
                        .collect(),
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut ttl = match ttl_mode(topo, sc, v) {
            TtlMode::Fixed(d) => TtlRule::fixed(d),
            TtlMode::Derived { min, max } => TtlRule::derived(min, max),
        };
        if v.ttl_by_load {
            ttl = ttl.with_load(sc.ttl_min);
        }
        let view = |region: Option<RegionId>| DnsView {
            region,
            answer: Vec::new(),
            shares: Vec::new(),
            answer_ttl: 0,
            published: Vec::new(),
        };
        let views = std::iter::once(view(None))
            .chain(regions.iter().map(|r| view(Some(r.id.clone()))))
            .collect();
        let client_view = (0..sc.regions.len())
            .map(|r| if v.per_region { r + 1 } else { 0 })
            .collect();
        let config = GlobalConfig {
            services: BTreeMap::from([(
                topo.service.clone(),
                TierService {
                    selector: global_sel,
                    members: members.into_iter().map(|(m, _)| m).collect(),
                },
            )]),
            ttl: BTreeMap::from([(topo.service.clone(), ttl)]),
            regions,
        };
        let global = GlobalSim {
            state: GlobalState::new(config, seed),
            views,
            timer_at: None,
            generation: 0,
        };
        let farms = if flat {
            Vec::new()
        } else {
            topo.farms
                .values()
                .map(|f| {
                    let mut config = f.clone();
                    config.services.retain(|s, _| s == &topo.service);
                    if let Some(svc) = config.services.get_mut(&topo.service) {
                        svc.selector = local_sel[&f.farm].clone();
                    }
                    FarmSim {
                        state: None,
                        config,
                        epoch: 0,
                        node_down: false,
                        timer_at: None,
                        generation: 0,
                    }
                })
                .collect()
        };
        let servers = pre
            .models
            .iter()
            .map(|m| ServerSim {
                model: *m,
                sampler: Sampler::new(m.service_time),
                mean_us: m.service_time.mean().as_secs_f64() * 1e6,
                busy: 0,
                queue: VecDeque::new(),
                down: false,
                slow: 1.0,
                incarnation: 0,
                requests: 0,
                util_last: warmup,
                util_area: 0.0,
                util_window_end: warmup + UTIL_WINDOW.min(us(sc.duration) - warmup),
                util_max: 0.0,
            })
            .collect();
        let monitors = pre
            .servers
            .iter()
            .map(|s| {
                let setup = &topo.monitors[&s.id];
                let probes = setup
                    .config
                    .probes
                    .iter()
                    .map(|p| {
                        let model = sc
                            .probes
                            .get(p.id.as_str())
                            .or(setup.probes.get(&p.id))
                            .copied()
                            .unwrap_or(ProbeModel {
                                measures: Measures::Health,
                                timeout: Duration::from_millis(800),
                            });
                        (p.id.clone(), model)
                    })
                    .collect();
                let mut config = setup.config.clone();
                config.service = topo.service.clone();
                MonSim {
                    monitor: Monitor::new(config, 1, Timestamp::ZERO),
                    probes,
                    timer_at: None,
                    generation: 0,
                }
            })
            .collect();
        let resolvers = sc
            .regions
            .iter()
            .enumerate()
            .map(|(r, region)| {
                (0..region.resolvers)
                    .map(|i| Resolver {
                        answer: Vec::new(),
                        expires: None,
                        key: resolver_key(r, i),
                    })
                    .collect()
            })
            .collect();
        let bin_us = us(sc.bin);
        let span = us(sc.duration) - warmup;
        let n_bins = span.div_ceil(bin_us) as usize;
        let mut fault_times: Vec<u64> = pre
            .faults
            .iter()
            .flat_map(|f| std::iter::once(f.2).chain(f.3))
            .collect();
        fault_times.sort_unstable();
        fault_times.dedup();
        Ok(World {
            sc,
            pre,
            topo,
            now: 0,
            end: us(sc.duration),
            warmup,
            seq: 0,
            heap: BinaryHeap::new(),
            payloads: Vec::new(),
            free: Vec::new(),
            servers,
            monitors,
            farms,
            global,
            flat,
            spread: v.spread,
            client_view,
            resolvers,
            max_rate: sc.regions.iter().map(|r| r.max_rate()).collect(),
            arrival_rng: seeded(seed, 1),
            service_rng: seeded(seed, 2),
            client_rng: seeded(seed, 3),
            fault_times,
            overall: Acc::new(),
            regions: sc.regions.iter().map(|_| Acc::new()).collect(),
            bins: vec![(0, 0.0, 0); n_bins],
            bin_us,
            dns_changes: 0,
            flips: 0,
            last_to_down: None,
        })
    }

    pub(super) fn start(&mut self) {
        for f in 0..self.farms.len() {
            self.start_farm(f);
        }
        for m in 0..self.monitors.len() {
            self.after_monitor(m, false);
        }
        self.after_global(false);
        for r in 0..self.sc.regions.len() {
            self.next_arrival(r, 0);
        }
        for t in self.fault_times.clone() {
            self.push(t, Ev::Fault);
        }
    }
}
