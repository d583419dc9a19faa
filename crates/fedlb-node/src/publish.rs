//! The global node's publishing: DNS start-up (the embedded server if the topology asks for
//! it), one task per publisher running [`fedlb_dns::run`] on the latest answers, and what
//! the publishers report back, kept per service and region for the status page.
//!
//! Each region of clients is one **view**: its own copy of the zone, written with its own
//! TSIG key — a view of the embedded server or of BIND (the key selects the view), or the
//! region's own primaries. The default view (clients in no region) is the zone as it was
//! before regions. Every view's DNS publisher is the same RFC 2136 code path.
//!
//! The weights of each answer (a weighted set, a split) go to the embedded server in-process
//! ([`fedlb_dns::AnswerWeights`]), which spreads a set per query when `dns.embedded.spread`
//! asks it to; external servers, files and the command get the whole set.
//!
//! With several zones (`dns.zones`), every view holds every zone and each (view, zone) pair
//! has its own publisher: a change tick sends one UPDATE per zone per view, each to the
//! zone's servers signed with the view's key (the default view: the zone's own key, else
//! `dns.tsig`). A service's answers go to the zone its FQDN picks (the longest suffix).
//!
//! The driver hands over answers with [`Publishing::set_answers`]; each publisher follows
//! them on its own (the DNS publishers, plus the files and the command the topology may ask
//! for: the patent's "specialized objects", which carry the default view's answers) and
//! sends a [`PassOutcome`] after every pass.

use std::collections::BTreeMap;
use std::sync::Arc;

use fedlb_core::{ClientMap, Publish, RegionClients, RegionId, ServiceId, Spread, Timestamp};
use fedlb_dns::{
    AnswerWeights, DesiredZone, EmbeddedConfig, EmbeddedServer, EmbeddedView, Name, PassOutcome,
    Publisher, PublisherKind, RecordSet, Rfc2136Config, Rfc2136Publisher, TsigAlgorithm, TsigKey,
};
use fedlb_topology::{DnsServer, Topology};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::common::NodeError;
use crate::status::PublishStatus;

/// How many pass outcomes may wait for the driver before a publisher waits in turn.
const OUTCOMES: usize = 16;

/// One view of one zone: the answers of one region's clients (`None`: the default
/// region's) under that zone.
struct View {
    region: Option<RegionId>,
    zone: Name,
    /// The zone as the topology writes it (lowercase, trailing dot).
    zone_text: String,
    desired: watch::Sender<DesiredZone>,
    /// What the view's DNS primaries serve for each name after its last DNS pass, and when
    /// that pass ended.
    dns: Option<(PassOutcome, Timestamp)>,
}

/// Which view of which zone a pass outcome comes from.
#[derive(Clone, Debug)]
pub struct ViewOf {
    /// The region (`None`: the default view).
    pub region: Option<RegionId>,
    /// The view's index among the publishing views.
    index: usize,
}

/// The publishers of one global node and what they last reported.
pub struct Publishing {
    zone: Name,
    views: Vec<View>,
    outcomes: mpsc::Receiver<(ViewOf, PassOutcome)>,
    tasks: Vec<JoinHandle<()>>,
    /// The published name of each service (parsed once per topology).
    names: BTreeMap<ServiceId, Name>,
    /// The embedded server's weights, when it runs here.
    weights: Option<AnswerWeights>,
}

impl Publishing {
    /// Starts DNS (the embedded server if asked for) and every publisher of `t`.
    pub async fn start(t: &Topology, shutdown: &CancellationToken) -> Result<Self, NodeError> {
        let zones = zones(t)?;
        let zone = zones[0].0.clone();
        let weights = matches!(t.dns.server, DnsServer::Embedded { .. }).then(AnswerWeights::new);
        let (targets, embedded) = start_dns(t, &zones, weights.clone()).await?;
        let (outcomes_tx, outcomes) = mpsc::channel(OUTCOMES);
        let mut tasks = Vec::new();
        let mut views = Vec::new();
        for (index, (region, (view_zone, zone_text), dns)) in targets.into_iter().enumerate() {
            let (desired, desired_rx) = watch::channel(DesiredZone::for_zone(&view_zone));
            // files and the command carry the default view's answers (one zone: the topology
            // refuses them with several)
            let extra = if region.is_none() && view_zone == zone {
                extra_publishers(t, &zone)
            } else {
                Vec::new()
            };
            for mut publisher in std::iter::once(dns).chain(extra) {
                let (rx, token) = (desired_rx.clone(), shutdown.clone());
                let (tx, mut from) = mpsc::channel(OUTCOMES);
                tasks.push(tokio::spawn(async move {
                    fedlb_dns::run(&mut publisher, rx, tx, token.cancelled_owned()).await;
                }));
                // each outcome goes to the driver with the view it belongs to
                let to = outcomes_tx.clone();
                let view = ViewOf {
                    region: region.clone(),
                    index,
                };
                tasks.push(tokio::spawn(async move {
                    while let Some(outcome) = from.recv().await {
                        if to.send((view.clone(), outcome)).await.is_err() {
                            break;
                        }
                    }
                }));
            }
            views.push(View {
                region,
                zone: view_zone,
                zone_text,
                desired,
                dns: None,
            });
        }
        if let Some(server) = embedded {
            let token = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(err) = server.serve(token.cancelled_owned()).await {
                    error!(error = %err, "embedded dns server stopped");
                }
            }));
        }
        Ok(Self {
            names: names(t),
            zone,
            views,
            outcomes,
            tasks,
            weights,
        })
    }

    /// The zone published.
    pub fn zone(&self) -> &Name {
        &self.zone
    }

    /// Takes a new topology: the published names may have moved.
    pub fn set_topology(&mut self, t: &Topology) {
        self.names = names(t);
    }

    /// Hands the answers the core decided to every publisher, each view its region's. Each
    /// diffs, so answers that did not change cost nothing.
    pub fn set_answers(
        &mut self,
        t: &Topology,
        published: &BTreeMap<(ServiceId, Option<RegionId>), Publish>,
    ) {
        for view in &self.views {
            // the weights first, so that a query never meets new addresses with old weights
            // for long (an address the table does not weigh counts zero until then); they
            // cover every zone of the region, so set them with its first zone's view
            if let Some(weights) = &self.weights
                && view.zone == self.zone
            {
                weights.set_view(
                    view.region.as_ref(),
                    view_weights(t, published, view.region.as_ref()),
                );
            }
            view.desired.send_replace(desired_zone(
                &view.zone,
                &view.zone_text,
                t,
                published,
                view.region.as_ref(),
            ));
        }
    }

    /// The next pass outcome of any publisher, with its view (cancel-safe).
    pub async fn next_outcome(&mut self) -> Option<(ViewOf, PassOutcome)> {
        self.outcomes.recv().await
    }

    /// Remembers what a view's DNS primaries serve after a DNS pass that ended at `now`.
    pub fn record(&mut self, view: ViewOf, outcome: PassOutcome, now: Timestamp) {
        if outcome.publisher != PublisherKind::Dns {
            return;
        }
        if let Some(view) = self.views.get_mut(view.index) {
            view.dns = Some((outcome, now));
        }
    }

    /// What DNS serves for each service in each view next to what the decisions want
    /// (nothing for a view before its first DNS pass).
    pub fn statuses(
        &self,
        now: Timestamp,
    ) -> BTreeMap<(ServiceId, Option<RegionId>), PublishStatus> {
        let mut out = BTreeMap::new();
        for view in &self.views {
            let Some((served, at)) = &view.dns else {
                continue;
            };
            let age = ((now - *at).as_secs_f64() * 1000.0).round() / 1000.0;
            let desired = view.desired.borrow();
            for (service, name) in self.names.iter().filter(|(_, n)| view.zone.zone_of(n)) {
                let primaries = served.served(name);
                let status = PublishStatus::new(name, desired.get(name), primaries, Some(age));
                out.insert((service.clone(), view.region.clone()), status);
            }
        }
        out
    }

    /// Waits for every publisher and the embedded server to stop (after shutdown).
    pub async fn stopped(self) {
        drop(self.views);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

fn names(t: &Topology) -> BTreeMap<ServiceId, Name> {
    t.services
        .iter()
        .filter_map(|(id, s)| Some((id.clone(), fedlb_dns::fqdn(&s.fqdn).ok()?)))
        .collect()
}

/// Every zone published into, first `dns.zone` (or the first of `dns.zones`), each with its
/// name as the topology writes it.
fn zones(t: &Topology) -> Result<Vec<(Name, String)>, NodeError> {
    t.dns
        .zones
        .iter()
        .map(|z| {
            fedlb_dns::zone_name(&z.name)
                .map(|n| (n, z.name.clone()))
                .map_err(|source| NodeError::Zone {
                    file: t.file.clone(),
                    zone: z.name.clone(),
                    source: Box::new(source),
                })
        })
        .collect()
}

/// The answers one view of one zone publishes: every service of that zone decided for its
/// region under its FQDN, with the TTL the core chose for it.
fn desired_zone(
    zone: &Name,
    zone_text: &str,
    t: &Topology,
    published: &BTreeMap<(ServiceId, Option<RegionId>), Publish>,
    region: Option<&RegionId>,
) -> DesiredZone {
    let mut desired = DesiredZone::for_zone(zone);
    for ((service, _), p) in published.iter().filter(|((_, r), _)| r.as_ref() == region) {
        let Some(svc) = t.services.get(service) else {
            continue;
        };
        if t.dns.zone_of(&svc.fqdn).map(|z| z.name.as_str()) != Some(zone_text) {
            continue;
        }
        match RecordSet::new(&svc.fqdn, p.ttl) {
            Ok(set) => desired.insert(set.with_addrs(p.decision.addresses.iter().copied())),
            Err(e) => warn!(%service, error = %e, "cannot publish this name"),
        }
    }
    desired
}

/// The weights of one view's answers, by published name.
fn view_weights(
    t: &Topology,
    published: &BTreeMap<(ServiceId, Option<RegionId>), Publish>,
    region: Option<&RegionId>,
) -> BTreeMap<Name, Vec<(std::net::IpAddr, f64)>> {
    published
        .iter()
        .filter(|((_, r), _)| r.as_ref() == region)
        .filter_map(|((service, _), p)| {
            let name = fedlb_dns::fqdn(&t.services.get(service)?.fqdn).ok()?;
            Some((name, p.decision.shares()))
        })
        .collect()
}

/// The zone of a view: its name, and as the topology writes it.
type ViewZone = (Name, String);

/// Starts the embedded DNS server if the topology asks for it, and builds one DNS publisher
/// per view and zone: for each zone, the default view, then one per region (in name order).
///
/// Where each region's answers go: a region with `dns.servers` of its own is written there
/// with its key (or the zone's); otherwise it is a view of the zone's server selected by its
/// own key — a view of the embedded server, or of BIND (`fedlb dns-config bind`). A zone with
/// `servers` or `tsig` of its own is written there and with it (its default view); a region's
/// view of it keeps the region's key.
async fn start_dns(
    t: &Topology,
    zones: &[ViewZone],
    weights: Option<AnswerWeights>,
) -> Result<
    (
        Vec<(Option<RegionId>, ViewZone, Publisher)>,
        Option<EmbeddedServer>,
    ),
    NodeError,
> {
    let publisher = |zone: &Name, primaries: Vec<std::net::SocketAddr>, key: TsigKey| {
        let mut config = Rfc2136Config::new(zone.clone(), primaries, key);
        config.reconcile_interval = t.dns.reconcile;
        // a server with views answers a read from the view of the key that signs it, so the
        // publisher reads back the very view it writes; a spreading server gives a signed
        // read the whole set (an unsigned one is a client, and gets one address)
        config.sign_reads = !t.regions.is_empty() || t.dns.spread != Spread::All;
        Ok::<_, NodeError>(Publisher::Rfc2136(Rfc2136Publisher::new(config)?))
    };
    let random_key = |name: String| {
        let secret: [u8; 32] = rand::random();
        TsigKey::new(&name, TsigAlgorithm::HmacSha256, secret.to_vec()).map_err(|e| {
            NodeError::TsigKey {
                file: t.file.clone(),
                key: name.clone(),
                source: Box::new(e.into()),
            }
        })
    };
    // the topology's zone of each view zone (same order)
    let spec = |i: usize| &t.dns.zones[i];
    // regions with primaries of their own: every zone there
    let mut out = Vec::new();
    for r in t.regions.values().filter(|r| !r.dns_servers.is_empty()) {
        for (i, z) in zones.iter().enumerate() {
            let Some(key) = r
                .tsig
                .clone()
                .or_else(|| spec(i).tsig.clone())
                .or_else(|| t.dns.tsig.clone())
            else {
                return Err(NodeError::TsigKeyMissing {
                    file: t.file.clone(),
                    primaries: r.dns_servers.clone(),
                });
            };
            out.push((
                Some(r.id.clone()),
                z.clone(),
                publisher(&z.0, r.dns_servers.clone(), key)?,
            ));
        }
    }
    let views: Vec<_> = t
        .regions
        .values()
        .filter(|r| r.dns_servers.is_empty())
        .collect();
    match &t.dns.server {
        DnsServer::Rfc2136 { primaries } => {
            let mut dns = Vec::new();
            for (i, z) in zones.iter().enumerate() {
                let primaries = spec(i).servers.clone().unwrap_or_else(|| primaries.clone());
                let Some(key) = spec(i).tsig.clone().or_else(|| t.dns.tsig.clone()) else {
                    return Err(NodeError::TsigKeyMissing {
                        file: t.file.clone(),
                        primaries: primaries.clone(),
                    });
                };
                dns.push((None, z.clone(), publisher(&z.0, primaries.clone(), key)?));
                for r in &views {
                    // the topology refuses a view of an external server without its own key
                    let Some(key) = r.tsig.clone() else {
                        return Err(NodeError::TsigKeyMissing {
                            file: t.file.clone(),
                            primaries: primaries.clone(),
                        });
                    };
                    dns.push((
                        Some(r.id.clone()),
                        z.clone(),
                        publisher(&z.0, primaries.clone(), key)?,
                    ));
                }
            }
            dns.extend(out);
            Ok((dns, None))
        }
        DnsServer::Embedded {
            listen,
            state_dir,
            secondaries,
            transfer_key,
            ..
        } => {
            // The embedded server and this node share each key; without one in the topology,
            // a fresh random key is made for this run.
            let key = match t.dns.tsig.clone() {
                Some(k) => k,
                None => random_key("fedlb-embedded.".to_owned())?,
            };
            let mut embedded_views = Vec::new();
            let mut clients = Vec::new();
            for r in &views {
                let key = match r.tsig.clone() {
                    Some(k) => k,
                    None => random_key(format!("fedlb-embedded-{}.", r.id))?,
                };
                embedded_views.push(EmbeddedView {
                    region: r.id.clone(),
                    keys: vec![key],
                    transfer_keys: Vec::new(),
                });
                clients.push(RegionClients {
                    region: r.id.clone(),
                    prefixes: r.clients.clone(),
                    countries: r.countries.iter().cloned().collect(),
                    continents: r.continents.iter().map(|c| c.code().to_owned()).collect(),
                });
            }
            let clients = ClientMap::new(clients).map_err(|e| NodeError::Regions {
                file: t.file.clone(),
                reason: e.to_string(),
            })?;
            let config =
                EmbeddedConfig::new(zones[0].0.clone(), *listen, state_dir, vec![key.clone()])
                    .with_zones(zones[1..].iter().map(|z| z.0.clone()).collect())
                    .with_views(
                        embedded_views.clone(),
                        Arc::new(clients),
                        t.dns.geoip_database.clone(),
                    )
                    .with_secondaries(secondaries.clone(), transfer_key.iter().cloned().collect())
                    .with_spread(t.dns.spread, weights.unwrap_or_default());
            let server = EmbeddedServer::start(config).await?;
            let addr = server.local_addr();
            info!(%addr, dir = %state_dir.display(), views = embedded_views.len(), zones = zones.len(), "embedded dns server running");
            let mut dns = Vec::new();
            for z in zones {
                dns.push((None, z.clone(), publisher(&z.0, vec![addr], key.clone())?));
                for view in &embedded_views {
                    let key = view.keys.first().cloned().expect("one key per view");
                    dns.push((
                        Some(view.region.clone()),
                        z.clone(),
                        publisher(&z.0, vec![addr], key)?,
                    ));
                }
            }
            dns.extend(out);
            Ok((dns, Some(server)))
        }
    }
}

/// The file and command publishers the topology asks for, besides DNS.
fn extra_publishers(t: &Topology, zone: &Name) -> Vec<Publisher> {
    let mut out = Vec::new();
    if let Some(f) = &t.dns.file {
        let mut config = fedlb_dns::FileConfig::new(zone.clone(), &f.json);
        config.zone_fragment_path = f.zone_fragment.clone();
        config.reconcile_interval = t.dns.reconcile;
        out.push(Publisher::File(fedlb_dns::FilePublisher::new(config)));
    }
    if let Some(c) = &t.dns.command {
        let mut config =
            fedlb_dns::CommandConfig::new(zone.clone(), &c.argv[0], c.argv[1..].to_vec());
        config.timeout = c.timeout;
        out.push(Publisher::Command(fedlb_dns::CommandPublisher::new(config)));
    }
    out
}
