//! Which region a client belongs to: longest address prefix first, then the geoip country,
//! then the continent, else the default region.
//!
//! The embedded DNS server asks this once per query, with the client's address (from the EDNS
//! Client Subnet option or the packet's source) and, when some region is geographic, what a
//! geoip database said about that address. The answer also carries the ECS SCOPE
//! PREFIX-LENGTH: how wide a block around the client gets the same region, so that a resolver
//! caching per scope never hands one region's answer to a client of another.
//!
//! # Scope
//!
//! For a client `c` whose longest match is the block `m` (the whole address space for the
//! default region), every prefix `p` nested in `m` holds none of `c` (else `p` would be a
//! longer match), so `c/k` gets the same region exactly when `k` is at least `m`'s length and
//! `c/k` contains no nested `p`, that is `k > common_prefix_len(c, p)` for each. The scope is
//! the smallest such `k`. The largest common prefix between `c` and a sorted set of networks
//! is reached at `c`'s neighbours in sort order, so each block keeps its nested networks
//! sorted and a lookup is a few binary searches, with no allocation. A geographic answer also
//! holds only within the geoip database's network for the address, so its prefix length is a
//! lower bound of the scope.
//!
//! Addresses are compared as left-aligned 128-bit integers (an IPv4 address in the top 32
//! bits), one table per family: an IPv4 client never matches an IPv6 prefix. An IPv4-mapped
//! IPv6 client (`::ffff:192.0.2.1`, as a dual-stack socket reports IPv4 peers) is classified
//! as the IPv4 address it carries.

use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;

use crate::id::RegionId;

/// The continent codes of MaxMind databases.
pub const CONTINENTS: [&str; 7] = ["AF", "AN", "AS", "EU", "NA", "OC", "SA"];

/// The clients of one region, as the topology lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionClients {
    /// The region.
    pub region: RegionId,
    /// Address prefixes (IPv4 and IPv6), written with no bits set past their length.
    pub prefixes: Vec<IpNet>,
    /// ISO 3166-1 alpha-2 country codes (`DE`), upper-case.
    pub countries: Vec<String>,
    /// MaxMind continent codes (one of [`CONTINENTS`]), upper-case.
    pub continents: Vec<String>,
}

impl RegionClients {
    /// A region of address prefixes only.
    pub fn prefixes(region: impl Into<RegionId>, prefixes: Vec<IpNet>) -> Self {
        RegionClients {
            region: region.into(),
            prefixes,
            countries: Vec::new(),
            continents: Vec::new(),
        }
    }
}

/// What a geoip database says about an address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GeoHit {
    /// ISO 3166-1 alpha-2 country code, upper-case; `None` when the database has none.
    pub country: Option<String>,
    /// MaxMind continent code, upper-case; `None` when the database has none.
    pub continent: Option<String>,
    /// Length of the database network the address is in: the same record (or the same
    /// absence of a record) holds for every address of that network.
    pub prefix_len: u8,
}

/// The region of one client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classified<'a> {
    /// The region; `None` is the default region.
    pub region: Option<&'a RegionId>,
    /// The region's position in [`ClientMap::regions`] (same `None`), for tables indexed
    /// by region.
    pub index: Option<usize>,
    /// ECS SCOPE PREFIX-LENGTH: every address of `client/scope` is in the same region.
    pub scope: u8,
}

/// A list of regions that cannot be told apart or is written wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientMapError {
    /// The same region twice in the list.
    #[error("region \"{region}\" listed twice")]
    RegionTwice {
        /// The region.
        region: RegionId,
    },
    /// A prefix, country or continent listed by two regions (or twice by one).
    #[error("{what} {value} is listed by region \"{first}\" and by region \"{second}\"")]
    Shared {
        /// `prefix`, `country` or `continent`.
        what: &'static str,
        /// The prefix or code.
        value: String,
        /// The region that lists it first.
        first: RegionId,
        /// The region that lists it again (may be `first`).
        second: RegionId,
    },
    /// A prefix with address bits set past its length (`10.1.2.3/8`): likely a typo.
    #[error("region \"{region}\": prefix {prefix} has bits set past its length; write {network}")]
    HostBits {
        /// The region.
        region: RegionId,
        /// The prefix as given.
        prefix: IpNet,
        /// The prefix as probably meant.
        network: IpNet,
    },
    /// A country code that is not two ASCII letters.
    #[error("region \"{region}\": country \"{code}\" is not an ISO 3166-1 alpha-2 code")]
    BadCountry {
        /// The region.
        region: RegionId,
        /// The code as given.
        code: String,
    },
    /// A continent code that MaxMind databases do not use.
    #[error("region \"{region}\": continent \"{code}\" is not one of AF, AN, AS, EU, NA, OC, SA")]
    BadContinent {
        /// The region.
        region: RegionId,
        /// The code as given.
        code: String,
    },
}

/// One prefix of a region, as a left-aligned integer.
#[derive(Clone, Debug)]
struct Block {
    net: u128,
    len: u8,
    region: usize,
    /// Networks of the prefixes strictly inside this one, sorted.
    nested: Vec<u128>,
}

/// The prefixes of one address family.
#[derive(Clone, Debug)]
struct Table {
    width: u8,
    blocks: Vec<Block>,
    /// Per prefix length present, longest first: the networks of that length, sorted, with
    /// their block.
    by_len: Vec<(u8, Vec<(u128, usize)>)>,
    /// Every network of the family, sorted: what is nested in the default region's block.
    all: Vec<u128>,
}

fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        !0u128 << (128 - u32::from(len))
    }
}

fn common_prefix_len(a: u128, b: u128, width: u8) -> u8 {
    ((a ^ b).leading_zeros() as u8).min(width)
}

/// The scope a block of length `len` with nested networks `nested` gives to `x`.
fn scope_in(x: u128, len: u8, nested: &[u128], width: u8) -> u8 {
    let at = nested.partition_point(|&n| n < x);
    let mut scope = len;
    for &n in nested[at.saturating_sub(1)..].iter().take(2) {
        scope = scope.max((common_prefix_len(x, n, width) + 1).min(width));
    }
    scope
}

impl Table {
    fn new(width: u8, mut blocks: Vec<Block>) -> Self {
        blocks.sort_by_key(|b| (b.len, b.net));
        let mut all: Vec<u128> = blocks.iter().map(|b| b.net).collect();
        all.sort_unstable();
        all.dedup();
        for i in 0..blocks.len() {
            let (net, len) = (blocks[i].net, blocks[i].len);
            let mut nested: Vec<u128> = blocks
                .iter()
                .filter(|o| o.len > len && o.net & mask(len) == net)
                .map(|o| o.net)
                .collect();
            nested.sort_unstable();
            nested.dedup();
            blocks[i].nested = nested;
        }
        let mut by_len: BTreeMap<u8, Vec<(u128, usize)>> = BTreeMap::new();
        for (i, b) in blocks.iter().enumerate() {
            by_len.entry(b.len).or_default().push((b.net, i));
        }
        let mut by_len: Vec<(u8, Vec<(u128, usize)>)> = by_len.into_iter().rev().collect();
        for (_, nets) in &mut by_len {
            nets.sort_unstable();
        }
        Table {
            width,
            blocks,
            by_len,
            all,
        }
    }

    fn longest_match(&self, x: u128) -> Option<&Block> {
        self.by_len.iter().find_map(|(len, nets)| {
            let key = x & mask(*len);
            nets.binary_search_by_key(&key, |&(n, _)| n)
                .ok()
                .map(|i| &self.blocks[nets[i].1])
        })
    }
}

/// Classifies clients into regions. Built once from the topology's regions; lookups are
/// allocation-free.
#[derive(Clone, Debug)]
pub struct ClientMap {
    regions: Vec<RegionId>,
    v4: Table,
    v6: Table,
    countries: BTreeMap<[u8; 2], usize>,
    continents: BTreeMap<[u8; 2], usize>,
}

impl Default for ClientMap {
    /// [`ClientMap::empty`].
    fn default() -> Self {
        ClientMap::empty()
    }
}

fn left_aligned(addr: IpAddr) -> (u128, bool) {
    match addr.to_canonical() {
        IpAddr::V4(a) => ((u128::from(u32::from(a))) << 96, true),
        IpAddr::V6(a) => (u128::from(a), false),
    }
}

fn code_key(code: &str) -> Option<[u8; 2]> {
    match code.as_bytes() {
        &[a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
            Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
        }
        _ => None,
    }
}

impl ClientMap {
    /// A map with no region: every client gets the default region, with scope 0.
    pub fn empty() -> Self {
        ClientMap {
            regions: Vec::new(),
            v4: Table::new(32, Vec::new()),
            v6: Table::new(128, Vec::new()),
            countries: BTreeMap::new(),
            continents: BTreeMap::new(),
        }
    }

    /// Builds the map. Nested prefixes are fine (the most specific wins); the same prefix,
    /// country or continent in two regions is an error naming both, as is a region listed
    /// twice or a code that is not one. Codes are compared case-insensitively.
    pub fn new(regions: Vec<RegionClients>) -> Result<Self, ClientMapError> {
        let mut ids: Vec<RegionId> = Vec::with_capacity(regions.len());
        let mut prefixes: BTreeMap<IpNet, usize> = BTreeMap::new();
        let mut countries = BTreeMap::new();
        let mut continents = BTreeMap::new();
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for (index, r) in regions.into_iter().enumerate() {
            if ids.contains(&r.region) {
                return Err(ClientMapError::RegionTwice { region: r.region });
            }
            ids.push(r.region.clone());
            let shared = |what, value: String, first: usize| ClientMapError::Shared {
                what,
                value,
                first: ids[first].clone(),
                second: r.region.clone(),
            };
            for p in r.prefixes {
                if p.trunc() != p {
                    return Err(ClientMapError::HostBits {
                        region: r.region.clone(),
                        prefix: p,
                        network: p.trunc(),
                    });
                }
                if let Some(&first) = prefixes.get(&p) {
                    return Err(shared("prefix", p.to_string(), first));
                }
                prefixes.insert(p, index);
                let (net, is_v4) = left_aligned(p.network());
                let block = Block {
                    net,
                    len: p.prefix_len(),
                    region: index,
                    nested: Vec::new(),
                };
                if is_v4 && matches!(p, IpNet::V4(_)) {
                    v4.push(block);
                } else {
                    v6.push(block);
                }
            }
            for code in r.countries {
                let key = code_key(&code).ok_or_else(|| ClientMapError::BadCountry {
                    region: r.region.clone(),
                    code: code.clone(),
                })?;
                if let Some(&first) = countries.get(&key) {
                    return Err(shared("country", code.to_ascii_uppercase(), first));
                }
                countries.insert(key, index);
            }
            for code in r.continents {
                let key = code_key(&code)
                    .filter(|k| CONTINENTS.iter().any(|c| c.as_bytes() == k))
                    .ok_or_else(|| ClientMapError::BadContinent {
                        region: r.region.clone(),
                        code: code.clone(),
                    })?;
                if let Some(&first) = continents.get(&key) {
                    return Err(shared("continent", code.to_ascii_uppercase(), first));
                }
                continents.insert(key, index);
            }
        }
        Ok(ClientMap {
            regions: ids,
            v4: Table::new(32, v4),
            v6: Table::new(128, v6),
            countries,
            continents,
        })
    }

    /// The regions, in the order given to [`new`](Self::new); [`Classified::index`] points
    /// into this.
    pub fn regions(&self) -> &[RegionId] {
        &self.regions
    }

    /// Whether any region lists countries or continents: only then is a geoip lookup worth
    /// doing.
    pub fn wants_geoip(&self) -> bool {
        !self.countries.is_empty() || !self.continents.is_empty()
    }

    /// The region of `client` and the scope of that answer.
    ///
    /// `source_prefix` is how many leading bits of `client` are meaningful (an ECS SOURCE
    /// PREFIX-LENGTH; `None` for a whole address): the rest are taken as zero. The scope can
    /// exceed it, telling a resolver that a narrower block decides (RFC 7871 §7.2.1). `geo` is
    /// what a geoip database said about the (truncated) address; it is consulted only when no
    /// prefix matches.
    pub fn classify(
        &self,
        client: IpAddr,
        source_prefix: Option<u8>,
        geo: Option<&GeoHit>,
    ) -> Classified<'_> {
        let (x, is_v4) = left_aligned(client);
        let table = if is_v4 { &self.v4 } else { &self.v6 };
        let width = table.width;
        let x = x & mask(source_prefix.unwrap_or(width).min(width));
        let (index, scope) = match table.longest_match(x) {
            Some(block) => (
                Some(block.region),
                scope_in(x, block.len, &block.nested, width),
            ),
            None => {
                let scope = scope_in(x, 0, &table.all, width);
                match geo {
                    Some(geo) => (self.by_geo(geo), scope.max(geo.prefix_len.min(width))),
                    None => (None, scope),
                }
            }
        };
        Classified {
            region: index.map(|i| &self.regions[i]),
            index,
            scope,
        }
    }

    fn by_geo(&self, geo: &GeoHit) -> Option<usize> {
        let find = |code: &Option<String>, table: &BTreeMap<[u8; 2], usize>| {
            code.as_deref()
                .and_then(code_key)
                .and_then(|k| table.get(&k).copied())
        };
        find(&geo.country, &self.countries).or_else(|| find(&geo.continent, &self.continents))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn map(regions: &[(&str, &[&str])]) -> ClientMap {
        ClientMap::new(
            regions
                .iter()
                .map(|(r, ps)| RegionClients::prefixes(*r, ps.iter().map(|p| net(p)).collect()))
                .collect(),
        )
        .unwrap()
    }

    fn class(m: &ClientMap, client: &str) -> (Option<String>, u8) {
        let c = m.classify(ip(client), None, None);
        (c.region.map(|r| r.to_string()), c.scope)
    }

    #[test]
    fn most_specific_prefix_wins_and_scope_avoids_nested_blocks() {
        let m = map(&[
            ("eu", &["10.0.0.0/8", "2001:db8::/32"]),
            ("us", &["10.1.0.0/16", "2001:db8:1::/48"]),
            ("ap", &["10.1.2.0/24"]),
        ]);
        assert_eq!(class(&m, "10.1.2.3"), (Some("ap".into()), 24));
        assert_eq!(
            class(&m, "10.1.3.3"),
            (Some("us".into()), 24),
            "10.1.2/24 is one bit away"
        );
        assert_eq!(class(&m, "10.1.128.1"), (Some("us".into()), 17));
        assert_eq!(class(&m, "10.200.0.1"), (Some("eu".into()), 9));
        assert_eq!(
            class(&m, "10.0.0.1"),
            (Some("eu".into()), 16),
            "10.1/16 shares 15 bits"
        );
        assert_eq!(class(&m, "192.0.2.1"), (None, 1), "default: 10/8 is in 0/1");
        assert_eq!(class(&m, "11.0.0.1"), (None, 8));
        assert_eq!(class(&m, "2001:db8:1::1"), (Some("us".into()), 48));
        assert_eq!(class(&m, "2001:db8:2::1"), (Some("eu".into()), 47));
        assert_eq!(class(&m, "2001:db9::1"), (None, 32));
        assert_eq!(m.regions(), ["eu", "us", "ap"].map(RegionId::from));
        let c = m.classify(ip("10.1.2.3"), None, None);
        assert_eq!(c.index, Some(2));
    }

    #[test]
    fn families_never_mix_but_mapped_v4_is_v4() {
        let m = map(&[("v6", &["::/0"]), ("v4", &["192.0.2.0/24"])]);
        assert_eq!(
            class(&m, "198.51.100.1"),
            (None, 6),
            "192.0.2/24 shares 5 bits"
        );
        assert_eq!(class(&m, "::1"), (Some("v6".into()), 0));
        assert_eq!(class(&m, "::ffff:192.0.2.7"), (Some("v4".into()), 24));
        // ::c000:0207 (IPv4-compatible, not mapped) is an IPv6 address.
        assert_eq!(class(&m, "::c000:207"), (Some("v6".into()), 0));
    }

    #[test]
    fn no_region_is_default_with_scope_zero() {
        let m = ClientMap::empty();
        assert_eq!(class(&m, "192.0.2.1"), (None, 0));
        assert_eq!(class(&m, "2001:db8::1"), (None, 0));
        assert!(!m.wants_geoip());
    }

    #[test]
    fn source_prefix_ignores_bits_past_it() {
        let m = map(&[("a", &["10.0.0.0/24"]), ("b", &["10.0.0.128/25"])]);
        let c = m.classify(ip("10.0.0.200"), Some(24), None);
        assert_eq!((c.region.map(RegionId::as_str), c.scope), (Some("a"), 25));
        let c = m.classify(ip("10.0.0.200"), None, None);
        assert_eq!((c.region.map(RegionId::as_str), c.scope), (Some("b"), 25));
        let c = m.classify(ip("10.0.0.200"), Some(99), None);
        assert_eq!(c.region.map(RegionId::as_str), Some("b"), "clamped to 32");
    }

    #[test]
    fn geoip_after_prefixes_country_before_continent() {
        let m = ClientMap::new(vec![
            RegionClients {
                region: "eu".into(),
                prefixes: vec![net("10.0.0.0/8")],
                countries: vec![],
                continents: vec!["EU".into()],
            },
            RegionClients {
                region: "de".into(),
                prefixes: vec![],
                countries: vec!["de".into()],
                continents: vec![],
            },
        ])
        .unwrap();
        assert!(m.wants_geoip());
        let hit = |country: &str, continent: &str, prefix_len| GeoHit {
            country: Some(country.into()),
            continent: Some(continent.into()),
            prefix_len,
        };
        let de = hit("DE", "EU", 16);
        let c = m.classify(ip("192.0.2.1"), None, Some(&de));
        assert_eq!((c.region.map(RegionId::as_str), c.scope), (Some("de"), 16));
        let fr = hit("FR", "EU", 4);
        let c = m.classify(ip("192.0.2.1"), None, Some(&fr));
        assert_eq!(
            (c.region.map(RegionId::as_str), c.scope),
            (Some("eu"), 4),
            "the continent, for the database's network"
        );
        let us = hit("US", "NA", 12);
        let c = m.classify(ip("192.0.2.1"), None, Some(&us));
        assert_eq!(
            (c.region, c.scope),
            (None, 12),
            "default, for the database's network"
        );
        let c = m.classify(ip("10.9.9.9"), None, Some(&us));
        assert_eq!(
            (c.region.map(RegionId::as_str), c.scope),
            (Some("eu"), 8),
            "a prefix beats geoip"
        );
        let c = m.classify(ip("11.0.0.1"), None, Some(&de));
        assert_eq!(
            (c.region.map(RegionId::as_str), c.scope),
            (Some("de"), 16),
            "scope is at least the database's and keeps 10/8 out (8)"
        );
        let small = GeoHit {
            prefix_len: 2,
            ..de
        };
        let c = m.classify(ip("11.0.0.1"), None, Some(&small));
        assert_eq!(c.scope, 8, "10/8 is within 11.0.0.1/7");
    }

    #[test]
    fn bad_lists_are_errors_naming_the_problem() {
        let err = |regions: Vec<RegionClients>| ClientMap::new(regions).unwrap_err().to_string();
        let p =
            |r: &str, ps: &[&str]| RegionClients::prefixes(r, ps.iter().map(|p| net(p)).collect());
        assert_eq!(
            err(vec![p("eu", &["10.0.0.0/8"]), p("us", &["10.0.0.0/8"])]),
            "prefix 10.0.0.0/8 is listed by region \"eu\" and by region \"us\""
        );
        assert_eq!(
            err(vec![p("eu", &["10.0.0.0/8", "10.0.0.0/8"])]),
            "prefix 10.0.0.0/8 is listed by region \"eu\" and by region \"eu\""
        );
        assert_eq!(
            err(vec![p("eu", &["10.1.2.3/8"])]),
            "region \"eu\": prefix 10.1.2.3/8 has bits set past its length; write 10.0.0.0/8"
        );
        assert_eq!(
            err(vec![p("eu", &[]), p("eu", &[])]),
            "region \"eu\" listed twice"
        );
        let geo = |r: &str, countries: &[&str], continents: &[&str]| RegionClients {
            region: r.into(),
            prefixes: vec![],
            countries: countries.iter().map(|s| s.to_string()).collect(),
            continents: continents.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(
            err(vec![geo("eu", &["DEU"], &[])]),
            "region \"eu\": country \"DEU\" is not an ISO 3166-1 alpha-2 code"
        );
        assert_eq!(
            err(vec![geo("eu", &[], &["XX"])]),
            "region \"eu\": continent \"XX\" is not one of AF, AN, AS, EU, NA, OC, SA"
        );
        assert_eq!(
            err(vec![geo("eu", &["de"], &[]), geo("dach", &["DE"], &[])]),
            "country DE is listed by region \"eu\" and by region \"dach\""
        );
        assert_eq!(
            err(vec![geo("eu", &[], &["EU"]), geo("eu2", &[], &["eu"])]),
            "continent EU is listed by region \"eu\" and by region \"eu2\""
        );
    }
}
