//! The embedded authoritative DNS server: hickory-server 0.26.3's `SqliteZoneHandler` serving
//! one zone over UDP and TCP, accepting TSIG-signed RFC 2136 updates, with its journal on disk.
//!
//! fedlb writes to it through the same [`Rfc2136Publisher`](crate::Rfc2136Publisher) as to BIND,
//! Knot or PowerDNS: one code path.
//!
//! Files in the server's directory:
//! - `<zone>zone`: the initial zone file, created with a SOA and an NS record if missing. It is
//!   read only when there is no journal yet;
//! - `<zone>jrnl.sqlite`: the journal. Every update is written there before it is applied, and on
//!   restart the zone is rebuilt from it alone. Delete it to reseed from the zone file;
//! - `keys/<key name>.key`: the raw TSIG secrets (mode 0600), rewritten at each start;
//! - `regions/<region>/`: the same three for each region's view (see below).
//!
//! With [`EmbeddedConfig::more_zones`] it serves several zones, each with its own zone file
//! and journal (named after the zone) in the same directory, in every view, updatable with
//! the same keys; an UPDATE names its zone, so each zone gets its own.
//!
//! # Regions
//!
//! With [`EmbeddedConfig::views`], the server holds one copy of the zone per region, like BIND
//! views: each view has its own zone file, journal and TSIG keys, and an UPDATE lands in the
//! view whose key signs it, so fedlb writes a region's answers with an
//! [`Rfc2136Publisher`](crate::Rfc2136Publisher) holding that region's key. A query is answered
//! from the view of the client's region ([`fedlb_core::ClientMap`]), the client being the EDNS
//! Client Subnet of the query when it carries a valid one (echoed with its scope), else the
//! source address; clients of no region get the default view, the one under `dir`. See
//! the `front` module for the routing rules and `ecs` for malformed options.
//!
//! # Secondaries
//!
//! With [`EmbeddedConfig::secondaries`], the server is a (hidden) primary: it serves zone
//! transfers to those addresses only, over TCP, signed with a transfer key
//! ([`EmbeddedConfig::transfer_keys`], [`EmbeddedView::transfer_keys`]) or a view's update key;
//! the key picks the view transferred. A transfer key cannot update. After every change it sends
//! each secondary a NOTIFY (see `notify`), signed with the default view's first transfer key.
//!
//! # Serials
//!
//! The journal keeps the SOA serial across restarts (hickory writes the SOA after each update).
//! A reseeded zone (journal deleted) would restart from the zone file's serial and secondaries
//! would ignore it until it caught up, so at every start the serial is raised to the Unix time
//! when below it (written to the journal like an update); serials only go back if a previous
//! run made more changes than seconds have passed since and then lost its journal.
//!
//! # Spreading
//!
//! With [`EmbeddedConfig::spread`] other than [`Spread::All`], a client's query for a name
//! whose A (or AAAA) RRset holds several addresses is answered with one of them, picked per
//! query by [`fedlb_core::spread::pick_weighted`] or, keyed by the client's /24 or /56 (the
//! ECS subnet when the query carries one, else the source address), by
//! [`fedlb_core::spread::pick_hashed`] — the very functions `fedlb simulate` runs — with the
//! weights in [`EmbeddedConfig::weights`], which the global node updates in-process as it
//! decides. A query signed (verifiably) with one of the server's TSIG keys is a publisher
//! reading back what it wrote: it always gets the whole RRset.
//!
//! Differences from BIND that matter to a writer: a value-dependent prerequisite is checked as a
//! subset (each listed record exists), not as RRset equality (see
//! [the RFC 2136 publisher](crate::rfc2136) for why fedlb stays correct); an update for a zone
//! it does not serve gets SERVFAIL, not NOTAUTH; its BADTIME answers carry its own time.

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use fedlb_core::{ClientMap, RegionId, Spread};
use hickory_proto::rr::{LowerName, Name, RData, RecordType, RrKey};
use hickory_server::{
    store::sqlite::{SqliteConfig, SqliteZoneHandler, TsigKeyConfig},
    zone_handler::{AxfrPolicy, Catalog, ZoneType},
};
use tokio::{
    net::{TcpListener, UdpSocket},
    task::JoinSet,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

use crate::{
    AnswerWeights, Error, TsigKey,
    front::{View, ViewKey, Views, serve_tcp, serve_udp},
    geoip::GeoDb,
    notify::Notifier,
    tsig::{FUDGE_SECS, hickory_algorithm, key_name, signer},
};

/// One region's view of the zone in an [`EmbeddedServer`].
#[derive(Debug, Clone)]
pub struct EmbeddedView {
    /// The region whose clients this view answers (as [`EmbeddedConfig::clients`] names it).
    pub region: RegionId,
    /// Keys allowed to update this view; an update signed by one lands only here. No key may
    /// belong to two views (or to a view and the default one).
    pub keys: Vec<TsigKey>,
    /// Keys a secondary may sign a transfer of this view with (besides `keys`); they cannot
    /// update.
    pub transfer_keys: Vec<TsigKey>,
}

/// Configuration of an [`EmbeddedServer`].
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// The zone served.
    pub zone: Name,
    /// More zones served besides `zone`, each with the same keys, in every view (none by
    /// default). Not with `secondaries` (NOTIFY names one zone).
    pub more_zones: Vec<Name>,
    /// UDP and TCP address; port 0 picks a free port (see [`EmbeddedServer::local_addr`]).
    pub listen: SocketAddr,
    /// Directory for the zone file, journal and keys; created if missing.
    pub dir: PathBuf,
    /// Keys allowed to update the zone. With no key, updates are refused.
    pub keys: Vec<TsigKey>,
    /// Idle limit of a TCP connection.
    pub tcp_timeout: Duration,
    /// One view per region, each its own copy of the zone under `dir/regions/<region>/`. With
    /// none, every client gets the one zone under `dir` and ECS options are ignored.
    pub views: Vec<EmbeddedView>,
    /// Which region a client is in (read only when there are views).
    pub clients: Arc<ClientMap>,
    /// A MaxMind-format database for regions that list countries or continents (opened only
    /// when [`ClientMap::wants_geoip`]).
    pub geoip: Option<PathBuf>,
    /// Secondaries: zone transfers are served to these addresses only, and each gets a NOTIFY
    /// after every change. With none, transfers are refused.
    pub secondaries: Vec<SocketAddr>,
    /// Keys secondaries sign transfers of the default view with; they cannot update. The
    /// first also signs NOTIFY messages.
    pub transfer_keys: Vec<TsigKey>,
    /// How a client's query for a set of several addresses is answered (see the module doc).
    pub spread: Spread,
    /// The weights each view's sets are spread by (shared with the publisher that updates
    /// them).
    pub weights: AnswerWeights,
}

impl EmbeddedConfig {
    /// Config with a 10 s TCP idle limit.
    pub fn new(
        zone: Name,
        listen: SocketAddr,
        dir: impl Into<PathBuf>,
        keys: Vec<TsigKey>,
    ) -> Self {
        Self {
            zone,
            more_zones: Vec::new(),
            listen,
            dir: dir.into(),
            keys,
            tcp_timeout: Duration::from_secs(10),
            views: Vec::new(),
            clients: Arc::new(ClientMap::empty()),
            geoip: None,
            secondaries: Vec::new(),
            transfer_keys: Vec::new(),
            spread: Spread::All,
            weights: AnswerWeights::new(),
        }
    }

    /// The same config as a hidden primary: transfers to and NOTIFY for `secondaries`, signed
    /// with `transfer_keys`.
    pub fn with_secondaries(
        mut self,
        secondaries: Vec<SocketAddr>,
        transfer_keys: Vec<TsigKey>,
    ) -> Self {
        self.secondaries = secondaries;
        self.transfer_keys = transfer_keys;
        self
    }

    /// The same config also serving `zones` (every view holds every zone).
    pub fn with_zones(mut self, zones: Vec<Name>) -> Self {
        self.more_zones = zones;
        self
    }

    /// The same config spreading sets per query by `weights`.
    pub fn with_spread(mut self, spread: Spread, weights: AnswerWeights) -> Self {
        self.spread = spread;
        self.weights = weights;
        self
    }

    /// The same config answering per region: `views`, their clients, and a geoip database.
    pub fn with_views(
        mut self,
        views: Vec<EmbeddedView>,
        clients: Arc<ClientMap>,
        geoip: Option<PathBuf>,
    ) -> Self {
        self.views = views;
        self.clients = clients;
        self.geoip = geoip;
        self
    }
}

/// A running embedded server. Dropping it stops it abruptly; prefer
/// [`shutdown`](Self::shutdown) or [`serve`](Self::serve).
pub struct EmbeddedServer {
    zone: Name,
    local_addr: SocketAddr,
    stop: CancellationToken,
    /// The UDP and TCP loops.
    loops: JoinSet<std::io::Result<()>>,
    /// Requests and connections in flight.
    tasks: TaskTracker,
}

impl EmbeddedServer {
    /// Loads (or creates) the zone and every view's copy, binds UDP and TCP and starts
    /// answering.
    pub async fn start(config: EmbeddedConfig) -> Result<Self, Error> {
        let mut zone = config.zone.to_lowercase();
        zone.set_fqdn(true);
        let fail = |reason: String| Error::Embedded {
            zone: zone.to_string(),
            reason,
        };
        check_views(&config).map_err(fail)?;
        let (udp, tcp, local_addr) = bind(config.listen)
            .await
            .map_err(|e| fail(format!("binding {}: {e}", config.listen)))?;
        let transfers = !config.secondaries.is_empty();
        let mut zones = vec![zone.clone()];
        for z in &config.more_zones {
            let mut z = z.to_lowercase();
            z.set_fqdn(true);
            zones.push(z);
        }
        let default = catalog(
            &zones,
            &config.dir,
            &config.keys,
            &config.transfer_keys,
            transfers,
            local_addr,
        )
        .await?;
        let mut views = Vec::with_capacity(config.views.len());
        let mut keys = Vec::new();
        let mut add_keys = |view: Option<usize>, update: &[TsigKey], transfer: &[TsigKey]| {
            for (key, transfer_only) in update
                .iter()
                .map(|k| (k, false))
                .chain(transfer.iter().map(|k| (k, true)))
            {
                keys.push(ViewKey {
                    signer: signer(key)?,
                    view,
                    transfer_only,
                });
            }
            Ok::<_, Error>(())
        };
        add_keys(None, &config.keys, &config.transfer_keys)?;
        for (i, view) in config.views.iter().enumerate() {
            let dir = config.dir.join("regions").join(view.region.as_str());
            views.push(View {
                region: view.region.clone(),
                catalog: catalog(
                    &zones,
                    &dir,
                    &view.keys,
                    &view.transfer_keys,
                    transfers,
                    local_addr,
                )
                .await?,
            });
            add_keys(Some(i), &view.keys, &view.transfer_keys)?;
        }
        let region_view = config
            .clients
            .regions()
            .iter()
            .map(|r| {
                let view = config.views.iter().position(|v| &v.region == r);
                if view.is_none() && !config.views.is_empty() {
                    warn!(zone = %zone, region = %r, "region has no view; its clients get the default view");
                }
                view
            })
            .collect();
        let geo = match &config.geoip {
            Some(path) if !config.views.is_empty() && config.clients.wants_geoip() => {
                Some(GeoDb::open(path).map_err(fail)?)
            }
            None if !config.views.is_empty() && config.clients.wants_geoip() => {
                warn!(zone = %zone, "regions list countries or continents but no geoip database is configured; they match by prefix only");
                None
            }
            _ => None,
        };
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let notifier = transfers
            .then(|| {
                let signer = config.transfer_keys.first().map(signer).transpose()?;
                Ok::<_, Error>(Notifier::start(
                    zone.clone(),
                    &config.secondaries,
                    local_addr.ip(),
                    signer,
                    &tasks,
                    &stop,
                ))
            })
            .transpose()?;
        let views = Arc::new(Views {
            default,
            views,
            region_view,
            keys,
            clients: config.clients.clone(),
            geo,
            spread: config.spread,
            weights: config.weights.clone(),
            gate: tokio::sync::RwLock::new(()),
            secondaries: config.secondaries.iter().map(SocketAddr::ip).collect(),
            notifier,
        });
        let mut loops = JoinSet::new();
        loops.spawn(serve_udp(
            Arc::new(udp),
            views.clone(),
            tasks.clone(),
            stop.clone(),
        ));
        loops.spawn(serve_tcp(
            tcp,
            views.clone(),
            config.tcp_timeout,
            tasks.clone(),
            stop.clone(),
        ));
        let regions: Vec<&str> = views.regions().map(RegionId::as_str).collect();
        info!(zone = %zone, addr = %local_addr, dir = %config.dir.display(), views = ?regions,
            secondaries = ?config.secondaries, spread = config.spread.as_str(),
            "embedded dns server started");
        Ok(Self {
            zone,
            local_addr,
            stop,
            loops,
            tasks,
        })
    }

    /// The bound address (UDP and TCP share it).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The zone served.
    pub fn zone(&self) -> &Name {
        &self.zone
    }

    /// Stops accepting, lets running requests finish (for at most 5 s), and returns.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        self.stop.cancel();
        let mut result = Ok(());
        while let Some(done) = self.loops.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e.to_string()),
                Err(e) => result = Err(format!("internal error: {e}")),
            }
        }
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(5), self.tasks.wait())
            .await
            .is_err()
        {
            warn!(zone = %self.zone, "requests still running after 5 s; dropped");
        }
        info!(zone = %self.zone, addr = %self.local_addr, "embedded dns server stopped");
        result.map_err(|reason| Error::Embedded {
            zone: self.zone.to_string(),
            reason: format!("stopping: {reason}"),
        })
    }

    /// Serves until `shutdown` completes, then shuts down gracefully. Returns early with an
    /// error if the server's socket loops stop on their own.
    pub async fn serve(mut self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let stopped_by_itself = tokio::select! {
            () = shutdown => None,
            done = self.loops.join_next() => Some(done),
        };
        if let Some(done) = stopped_by_itself {
            warn!(zone = %self.zone, "embedded dns server stopped by itself");
            let reason = match done {
                Some(Ok(Err(e))) => e.to_string(),
                Some(Err(e)) => format!("internal error: {e}"),
                _ => "a socket loop ended".to_owned(),
            };
            self.stop.cancel();
            return Err(Error::Embedded {
                zone: self.zone.to_string(),
                reason,
            });
        }
        self.shutdown().await
    }
}

/// Problems of the view list that would make routing ambiguous.
fn check_views(config: &EmbeddedConfig) -> Result<(), String> {
    let mut owners: Vec<(Name, String)> = Vec::new();
    for secondary in &config.secondaries {
        if *secondary == config.listen {
            return Err(format!("secondary {secondary} is the server's own address"));
        }
    }
    if !config.secondaries.is_empty() && !config.more_zones.is_empty() {
        return Err(
            "secondaries with several zones are not supported: NOTIFY and transfers name one zone"
                .to_owned(),
        );
    }
    if !config.secondaries.is_empty()
        && config.transfer_keys.is_empty()
        && config.views.iter().all(|v| v.transfer_keys.is_empty())
    {
        return Err(
            "secondaries need a transfer key: transfers are served only when signed".to_owned(),
        );
    }
    for key in config.keys.iter().chain(&config.transfer_keys) {
        if let Ok(name) = key_name(key) {
            owners.push((name, "the default view".to_owned()));
        }
    }
    for (i, view) in config.views.iter().enumerate() {
        let region = view.region.as_str();
        if region.is_empty()
            || region.starts_with('.')
            || !region
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "view {i}: region \"{region}\" cannot name a directory (letters, digits, '-', '_', '.')"
            ));
        }
        if config.views[..i].iter().any(|v| v.region == view.region) {
            return Err(format!("region \"{region}\" has two views"));
        }
        for key in view.keys.iter().chain(&view.transfer_keys) {
            let Ok(name) = key_name(key) else { continue };
            if let Some((_, other)) = owners.iter().find(|(n, _)| *n == name) {
                return Err(format!(
                    "tsig key \"{}\" belongs to {other} and to the view of region \"{region}\": an update signed with it could land in either",
                    key.name
                ));
            }
            owners.push((name, format!("the view of region \"{region}\"")));
        }
    }
    Ok(())
}

async fn bind(listen: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener, SocketAddr)> {
    // With port 0 the UDP port may be taken for TCP; try a few.
    let mut last = None;
    for _ in 0..10 {
        let udp = UdpSocket::bind(listen).await?;
        let addr = udp.local_addr()?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp, addr)),
            Err(e) if listen.port() == 0 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free port")))
}

fn zone_file_text(zone: &Name, addr: SocketAddr) -> String {
    let glue = if addr.ip().is_unspecified() {
        String::new()
    } else if addr.is_ipv4() {
        format!("ns1.{zone}\tIN\tA\t{}\n", addr.ip())
    } else {
        format!("ns1.{zone}\tIN\tAAAA\t{}\n", addr.ip())
    };
    format!(
        "; initial zone written by fedlb; the journal next to it holds the live zone\n\
         $TTL 300\n\
         {zone}\tIN\tSOA\tns1.{zone} hostmaster.{zone} ( 1 3600 600 86400 60 )\n\
         {zone}\tIN\tNS\tns1.{zone}\n\
         {glue}"
    )
}

/// A catalog serving each of `zones` from `dir` (each created with its initial zone file if
/// new), updatable with `keys`, transferable (when `transfers`) with those and
/// `transfer_keys`.
async fn catalog(
    zones: &[Name],
    dir: &Path,
    keys: &[TsigKey],
    transfer_keys: &[TsigKey],
    transfers: bool,
    addr: SocketAddr,
) -> Result<Catalog, Error> {
    let mut catalog = Catalog::new();
    for zone in zones {
        let handler = load_zone(zone, dir, keys, transfer_keys, transfers, addr).await?;
        let floor = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
            .unwrap_or_default();
        raise_serial(&handler, zone, floor)
            .await
            .map_err(|reason| Error::Embedded {
                zone: zone.to_string(),
                reason: format!("{}: {reason}", dir.display()),
            })?;
        catalog.upsert(LowerName::from(zone), vec![Arc::new(handler)]);
    }
    Ok(catalog)
}

/// Raises the zone's SOA serial to `floor` when below it (RFC 1982 order), writing the new
/// SOA to the journal; returns the serial now served.
async fn raise_serial(handler: &SqliteZoneHandler, zone: &Name, floor: u32) -> Result<u32, String> {
    let soa = handler
        .records()
        .await
        .get(&RrKey::new(LowerName::from(zone), RecordType::SOA))
        .and_then(|set| set.records_without_rrsigs().next().cloned());
    let Some(mut soa) = soa else {
        return Err("the zone has no SOA record".to_owned());
    };
    let RData::SOA(data) = &mut soa.data else {
        return Err("the SOA record holds no SOA data".to_owned());
    };
    let serial = data.serial;
    if !serial_below(serial, floor) {
        return Ok(serial);
    }
    data.serial = floor;
    handler
        .update_records(&[soa], false)
        .await
        .map_err(|rcode| format!("raising the serial from {serial} to {floor}: {rcode}"))?;
    info!(zone = %zone, from = serial, to = floor, "soa serial raised to the current time");
    Ok(floor)
}

/// `a < b` in serial number arithmetic (RFC 1982).
fn serial_below(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 1 << 31
}

async fn load_zone(
    zone: &Name,
    dir: &Path,
    keys: &[TsigKey],
    transfer_keys: &[TsigKey],
    transfers: bool,
    addr: SocketAddr,
) -> Result<SqliteZoneHandler, Error> {
    let file_err = |path: &Path, action, source| Error::File {
        path: path.to_owned(),
        action,
        source,
    };
    let keys_dir = dir.join("keys");
    std::fs::create_dir_all(&keys_dir).map_err(|e| file_err(&keys_dir, "creating directory", e))?;
    let base = zone.to_string();
    let zone_path = dir.join(format!("{base}zone"));
    let journal_path = dir.join(format!("{base}jrnl.sqlite"));
    if !zone_path.exists() && !journal_path.exists() {
        crate::file::write_atomic(&zone_path, zone_file_text(zone, addr).as_bytes())?;
    }
    // hickory checks one key list for both updates and transfers: the front refuses an update
    // signed with a transfer-only key before it gets here
    let mut tsig_keys = Vec::new();
    for key in keys.iter().chain(transfer_keys) {
        let name = key_name(key)?.to_string();
        let key_file = keys_dir.join(format!("{}.key", name.trim_end_matches('.')));
        write_secret(&key_file, &key.secret)
            .map_err(|e| file_err(&key_file, "writing tsig key", e))?;
        tsig_keys.push(TsigKeyConfig {
            name,
            key_file,
            algorithm: hickory_algorithm(key.algorithm),
            fudge: FUDGE_SECS,
        });
    }
    let sqlite = SqliteConfig {
        zone_path,
        journal_path,
        allow_update: !keys.is_empty(),
        tsig_keys,
    };
    SqliteZoneHandler::try_from_config(
        zone.clone(),
        ZoneType::Primary,
        if transfers {
            AxfrPolicy::AllowSigned
        } else {
            AxfrPolicy::Deny
        },
        false,
        None,
        &sqlite,
        None,
    )
    .await
    .map_err(|reason| Error::Embedded {
        zone: zone.to_string(),
        reason,
    })
}

fn write_secret(path: &Path, secret: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(secret)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_order_wraps() {
        assert!(serial_below(1, 2));
        assert!(!serial_below(2, 2));
        assert!(!serial_below(3, 2));
        assert!(serial_below(u32::MAX, 5));
        assert!(!serial_below(5, u32::MAX));
    }

    #[test]
    fn initial_zone_has_soa_ns_and_glue() {
        let zone = crate::fqdn("example.test").unwrap();
        let text = zone_file_text(&zone, "127.0.0.1:53".parse().unwrap());
        assert!(
            text.contains("example.test.\tIN\tSOA\tns1.example.test. hostmaster.example.test.")
        );
        assert!(text.contains("example.test.\tIN\tNS\tns1.example.test.\n"));
        assert!(text.contains("ns1.example.test.\tIN\tA\t127.0.0.1\n"));
        let any = zone_file_text(&zone, "0.0.0.0:53".parse().unwrap());
        assert!(!any.contains("IN\tA\t"));
    }
}
