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
//! - `keys/<key name>.key`: the raw TSIG secrets (mode 0600), rewritten at each start.
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

use hickory_proto::rr::{LowerName, Name};
use hickory_server::{
    Server,
    store::sqlite::{SqliteConfig, SqliteZoneHandler, TsigKeyConfig},
    zone_handler::{AxfrPolicy, Catalog, ZoneType},
};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    Error, TsigKey,
    tsig::{FUDGE_SECS, hickory_algorithm, key_name},
};

/// Configuration of an [`EmbeddedServer`].
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// The zone served.
    pub zone: Name,
    /// UDP and TCP address; port 0 picks a free port (see [`EmbeddedServer::local_addr`]).
    pub listen: SocketAddr,
    /// Directory for the zone file, journal and keys; created if missing.
    pub dir: PathBuf,
    /// Keys allowed to update the zone. With no key, updates are refused.
    pub keys: Vec<TsigKey>,
    /// Idle limit of a TCP connection.
    pub tcp_timeout: Duration,
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
            listen,
            dir: dir.into(),
            keys,
            tcp_timeout: Duration::from_secs(10),
        }
    }
}

/// A running embedded server. Dropping it stops it abruptly; prefer
/// [`shutdown`](Self::shutdown) or [`serve`](Self::serve).
pub struct EmbeddedServer {
    zone: Name,
    local_addr: SocketAddr,
    server: Server<Catalog>,
}

impl EmbeddedServer {
    /// Loads (or creates) the zone, binds UDP and TCP and starts answering.
    pub async fn start(config: EmbeddedConfig) -> Result<Self, Error> {
        let mut zone = config.zone.to_lowercase();
        zone.set_fqdn(true);
        let fail = |reason: String| Error::Embedded {
            zone: zone.to_string(),
            reason,
        };
        let (udp, tcp, local_addr) = bind(config.listen)
            .await
            .map_err(|e| fail(format!("binding {}: {e}", config.listen)))?;
        let handler = load_zone(&zone, &config, local_addr).await?;
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::from(&zone), vec![Arc::new(handler)]);
        let mut server = Server::new(catalog);
        server.register_socket(udp);
        server.register_listener(tcp, config.tcp_timeout, 65_535);
        info!(zone = %zone, addr = %local_addr, dir = %config.dir.display(), "embedded dns server started");
        Ok(Self {
            zone,
            local_addr,
            server,
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

    /// Stops accepting, lets running requests finish, and returns.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        let result = self.server.shutdown_gracefully().await;
        info!(zone = %self.zone, addr = %self.local_addr, "embedded dns server stopped");
        result.map_err(|e| Error::Embedded {
            zone: self.zone.to_string(),
            reason: format!("stopping: {e}"),
        })
    }

    /// Serves until `shutdown` completes, then shuts down gracefully. Returns early with an
    /// error if the server's tasks stop on their own.
    pub async fn serve(mut self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let token: CancellationToken = self.server.shutdown_token().clone();
        tokio::select! {
            () = shutdown => {}
            () = token.cancelled() => {}
            result = self.server.block_until_done() => {
                warn!(zone = %self.zone, "embedded dns server stopped by itself");
                return result.map_err(|e| Error::Embedded { zone: self.zone.to_string(), reason: e.to_string() });
            }
        }
        self.shutdown().await
    }
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

async fn load_zone(
    zone: &Name,
    config: &EmbeddedConfig,
    addr: SocketAddr,
) -> Result<SqliteZoneHandler, Error> {
    let file_err = |path: &Path, action, source| Error::File {
        path: path.to_owned(),
        action,
        source,
    };
    let dir = &config.dir;
    let keys_dir = dir.join("keys");
    std::fs::create_dir_all(&keys_dir).map_err(|e| file_err(&keys_dir, "creating directory", e))?;
    let base = zone.to_string();
    let zone_path = dir.join(format!("{base}zone"));
    let journal_path = dir.join(format!("{base}jrnl.sqlite"));
    if !zone_path.exists() && !journal_path.exists() {
        crate::file::write_atomic(&zone_path, zone_file_text(zone, addr).as_bytes())?;
    }
    let mut tsig_keys = Vec::new();
    for key in &config.keys {
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
        allow_update: !config.keys.is_empty(),
        tsig_keys,
    };
    SqliteZoneHandler::try_from_config(
        zone.clone(),
        ZoneType::Primary,
        AxfrPolicy::Deny,
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
