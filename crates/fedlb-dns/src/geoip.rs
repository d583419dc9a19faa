//! A MaxMind-format geoip database (GeoIP2/GeoLite2 Country or City, DB-IP), read with the
//! `maxminddb` crate: the country and continent codes of an address and the width of the
//! database network it is in.

use std::{net::IpAddr, path::Path};

use fedlb_core::GeoHit;
use serde::Deserialize;
use tracing::debug;

/// The part of a GeoIP2 record fedlb reads; every other field is skipped.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    country: Option<Code<'a>>,
    #[serde(borrow, default)]
    continent: Option<Continent<'a>>,
}

#[derive(Deserialize)]
struct Code<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct Continent<'a> {
    #[serde(borrow, default)]
    code: Option<&'a str>,
}

/// An open database, read into memory.
pub(crate) struct GeoDb {
    reader: maxminddb::Reader<Vec<u8>>,
}

impl GeoDb {
    /// Opens and checks the database; the error says what is wrong with the file.
    pub(crate) fn open(path: &Path) -> Result<Self, String> {
        let reader = maxminddb::Reader::open_readfile(path)
            .map_err(|e| format!("geoip database {}: {e}", path.display()))?;
        Ok(GeoDb { reader })
    }

    /// What the database says about `addr`. A lookup error (a corrupt record) is logged and
    /// taken as "nothing known", for the narrowest network: the client then gets the region
    /// its prefixes give, or the default.
    pub(crate) fn lookup(&self, addr: IpAddr) -> GeoHit {
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let result = match self.reader.lookup(addr) {
            Ok(result) => result,
            Err(e) => {
                debug!(%addr, error = %e, "geoip lookup failed");
                return GeoHit {
                    prefix_len: width,
                    ..GeoHit::default()
                };
            }
        };
        let prefix_len = result.network().map(|n| n.prefix()).unwrap_or(width);
        match result.decode::<Record<'_>>() {
            Ok(Some(record)) => GeoHit {
                country: record
                    .country
                    .and_then(|c| c.iso_code)
                    .map(str::to_ascii_uppercase),
                continent: record
                    .continent
                    .and_then(|c| c.code)
                    .map(str::to_ascii_uppercase),
                prefix_len,
            },
            Ok(None) => GeoHit {
                prefix_len,
                ..GeoHit::default()
            },
            Err(e) => {
                debug!(%addr, error = %e, "geoip record unreadable");
                GeoHit {
                    prefix_len: width,
                    ..GeoHit::default()
                }
            }
        }
    }
}
