//! The `regions` section: who the clients of each region are (prefixes, geography), where
//! the region is (distances to farms), and where its answers are published (its own
//! primaries, or a view selected by its TSIG key).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use fedlb_core::{CandidateId, FarmId, RegionId, ServerId};
use ipnet::IpNet;

use crate::model::{Continent, DnsServer, DnsTarget, Farm, Region, Server};
use crate::schema::{RawGeoip, RawRegion};

use super::{Ctx, RawIndex};

/// The name of the implicit region of every client no region claims.
pub(super) const DEFAULT_REGION: &str = "default";

/// The officially assigned ISO 3166-1 alpha-2 codes, plus `XK` (Kosovo), which the
/// geoip databases fedlb reads (MaxMind, DB-IP) use although it is user-assigned.
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ \
    BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ \
    CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ \
    DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR \
    GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU \
    ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ \
    LA LB LC LI LK LR LS LT LU LV LY \
    MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ \
    NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA \
    RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ \
    TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ \
    VA VC VE VG VI VN VU WF WS XK YE YT ZA ZM ZW";

/// What the regions need to know of the `dns` section, read from the file as written so
/// that a mistake there does not make every region look wrong too.
pub(super) struct DnsFacts<'a> {
    /// `Some(true)`: external primaries (`dns.servers`); `Some(false)`: the embedded
    /// server; `None`: not known (the section is wrong and has its own error).
    pub external: Option<bool>,
    /// Whether the zone's primary is written `dns.server` (one), not `dns.servers`.
    pub single_server: bool,
    /// Whether `dns.geoip_database` is given.
    pub geoip_database: bool,
    /// The validated section, when it is valid.
    pub dns: Option<&'a DnsTarget>,
}

/// Where a region's key publishes: the views of one server are told apart by key.
struct KeyUse {
    name: String,
    path: String,
    owner: String,
}

/// A region's geoip codes as read: each with its index in the file.
struct Geo {
    countries: Vec<(usize, String)>,
    continents: Vec<(usize, Continent)>,
    ok: bool,
}

impl Ctx<'_> {
    pub(super) fn regions(
        &mut self,
        raw: Vec<RawRegion>,
        facts: &DnsFacts<'_>,
        index: &RawIndex,
        farms: &BTreeMap<FarmId, Farm>,
        direct: &BTreeMap<ServerId, Server>,
    ) -> Option<BTreeMap<RegionId, Region>> {
        let mut regions = BTreeMap::new();
        let mut paths: BTreeMap<RegionId, String> = BTreeMap::new();
        let mut ok = true;
        // prefix → (region, path), for duplicates and nesting across regions
        let mut prefixes: BTreeMap<IpNet, (RegionId, String)> = BTreeMap::new();
        let mut countries: BTreeMap<String, (RegionId, String)> = BTreeMap::new();
        let mut continents: BTreeMap<Continent, (RegionId, String)> = BTreeMap::new();
        // region primaries, and the zone's own
        let mut primaries: BTreeMap<SocketAddr, String> = BTreeMap::new();
        if let Some(DnsTarget {
            server: DnsServer::Rfc2136 { primaries: zone },
            ..
        }) = facts.dns
        {
            for (i, a) in zone.iter().enumerate() {
                let at = if facts.single_server {
                    "dns.server".to_owned()
                } else {
                    format!("dns.servers[{i}]")
                };
                primaries.insert(*a, at);
            }
        }
        // the keys of the views on the zone's server; the default view's comes first
        let mut view_keys: Vec<KeyUse> = Vec::new();
        if let Some(k) = facts.dns.and_then(|d| d.tsig.as_ref()) {
            view_keys.push(KeyUse {
                name: k.name.clone(),
                path: "dns.tsig".to_owned(),
                owner: "the default region".to_owned(),
            });
        }
        if let Some(DnsTarget {
            server:
                DnsServer::Embedded {
                    transfer_key: Some(t),
                    ..
                },
            ..
        }) = facts.dns
            && !view_keys.iter().any(|u| u.name == t.name)
        {
            view_keys.push(KeyUse {
                name: t.name.clone(),
                path: "dns.embedded.transfer_key".to_owned(),
                owner: "the secondaries' transfers of the default region".to_owned(),
            });
        }
        let mut any_geoip = false;

        for (i, rr) in raw.into_iter().enumerate() {
            let path = format!("regions[{i}]");
            let p = |f: &str| format!("{path}.{f}");
            let mut region_ok = self.name(&p("name"), &rr.name);
            let id = RegionId(rr.name.clone());
            if rr.name == DEFAULT_REGION {
                self.err(
                    p("name"),
                    "\"default\" is reserved for the implicit region of the clients no region claims; choose another name",
                );
                region_ok = false;
            } else if let Some(first) = paths.get(&id) {
                self.err(
                    p("name"),
                    format!("region \"{id}\" declared twice (first at {first})"),
                );
                region_ok = false;
            }

            // clients by address
            let mut clients = Vec::new();
            for (k, text) in rr.clients.iter().flatten().enumerate() {
                let cpath = format!("{}[{k}]", p("clients"));
                let Some(net) = self.prefix(&cpath, text) else {
                    region_ok = false;
                    continue;
                };
                match prefixes.get(&net) {
                    Some((other, first)) if *other == id => {
                        self.err(
                            cpath,
                            format!("prefix {net} listed twice (first at {first})"),
                        );
                        region_ok = false;
                    }
                    Some((other, first)) => {
                        self.err(
                            cpath,
                            format!("prefix {net} is already in region \"{other}\" ({first}); a prefix belongs to one region"),
                        );
                        region_ok = false;
                    }
                    None => {
                        prefixes.insert(net, (id.clone(), cpath));
                        clients.push(net);
                    }
                }
            }

            // clients by geography
            let (region_countries, region_continents) = match &rr.geoip {
                Some(g) => {
                    any_geoip = true;
                    let Geo {
                        countries: c,
                        continents: k,
                        ok: geo_ok,
                    } = self.geoip(&p("geoip"), g, &id);
                    region_ok &= geo_ok;
                    if !facts.geoip_database {
                        self.err(
                            p("geoip"),
                            format!("region \"{id}\" places clients by geography, which needs dns.geoip_database (a MaxMind-format country database)"),
                        );
                        region_ok = false;
                    }
                    for (j, code) in &c {
                        let cp = format!("{}.countries[{j}]", p("geoip"));
                        if let Some((other, first)) = countries.get(code) {
                            self.err(
                                cp,
                                format!("country {code} is already in region \"{other}\" ({first}); a country belongs to one region"),
                            );
                            region_ok = false;
                        } else {
                            countries.insert(code.clone(), (id.clone(), cp));
                        }
                    }
                    for (j, code) in &k {
                        let cp = format!("{}.continents[{j}]", p("geoip"));
                        if let Some((other, first)) = continents.get(code) {
                            self.err(
                                cp,
                                format!("continent {code} is already in region \"{other}\" ({first}); a continent belongs to one region"),
                            );
                            region_ok = false;
                        } else {
                            continents.insert(*code, (id.clone(), cp));
                        }
                    }
                    (
                        c.into_iter().map(|(_, c)| c).collect::<BTreeSet<_>>(),
                        k.into_iter().map(|(_, k)| k).collect::<BTreeSet<_>>(),
                    )
                }
                None => (BTreeSet::new(), BTreeSet::new()),
            };
            if rr.clients.as_ref().is_none_or(Vec::is_empty) && rr.geoip.is_none() {
                self.err(
                    path.clone(),
                    format!("region \"{id}\" has no clients: give `clients` (address prefixes) or `geoip` (countries, continents)"),
                );
                region_ok = false;
            }

            // where it is
            let location = match rr.location {
                Some(l) => {
                    let l = self.location(&p("location"), l);
                    region_ok &= l.is_some();
                    l
                }
                None => None,
            };
            let mut distance_ms = BTreeMap::new();
            for (name, ms) in &rr.distance_ms {
                let dpath = format!("{}.{name}", p("distance_ms"));
                let known = index.farms.contains_key(name) || index.direct.contains_key(name);
                if !known {
                    self.err(
                        dpath,
                        format!("\"{name}\" is not a farm or a server attached to the global node"),
                    );
                    region_ok = false;
                    continue;
                }
                match self.distance_ms(&dpath, Some(*ms)) {
                    Some(ms) => {
                        distance_ms.insert(CandidateId::from(name.as_str()), ms);
                    }
                    None => region_ok = false,
                }
            }
            let located = farms.values().any(|f| f.location.is_some())
                || direct.values().any(|s| s.location.is_some());
            if rr.distance_ms.is_empty() && (rr.location.is_none() || !located) {
                let why = if rr.location.is_none() {
                    "it has neither distance_ms nor a location"
                } else {
                    "it has a location, but no farm or direct server has one"
                };
                self.warn(
                    path.clone(),
                    format!("region \"{id}\" is close to no farm: {why}; closest has no distance to rank farms by for its clients (what the global node measures is not used for a region)"),
                );
            }

            // where its answers go
            let mut dns_servers = Vec::new();
            if let Some(d) = &rr.dns {
                if facts.external == Some(false) {
                    self.err(
                        p("dns"),
                        "the embedded server answers every region itself (by client address): `dns` of a region names primaries of an external server without views",
                    );
                    region_ok = false;
                } else {
                    if d.servers.is_empty() {
                        self.err(
                            format!("{}.servers", p("dns")),
                            "at least one server is needed",
                        );
                        region_ok = false;
                    }
                    for (k, s) in d.servers.iter().enumerate() {
                        let spath = format!("{}.servers[{k}]", p("dns"));
                        let Some(a) = self.socket(&spath, s) else {
                            region_ok = false;
                            continue;
                        };
                        if let Some(first) = primaries.get(&a) {
                            self.err(
                                spath,
                                format!("server {a} is already used by {first}: each region with servers of its own needs different ones (a view of a shared server needs no `dns`, only its own `tsig`)"),
                            );
                            region_ok = false;
                        } else {
                            primaries.insert(a, spath);
                            dns_servers.push(a);
                        }
                    }
                }
            }
            let own_servers = rr.dns.is_some();
            let (mut tsig, mut tsig_file) = (None, None);
            match rr.tsig {
                Some(t) => {
                    let before = self.errors.len();
                    (tsig, tsig_file) = self.tsig(&p("tsig"), t);
                    region_ok &= self.errors.len() == before;
                    if !own_servers && let Some(k) = &tsig {
                        if let Some(other) = view_keys.iter().find(|u| u.name == k.name) {
                            self.err(
                                p("tsig"),
                                format!(
                                    "key \"{}\" is already the key of {} ({}): the views of one server are told apart by key, so each region needs its own",
                                    k.name, other.owner, other.path
                                ),
                            );
                            region_ok = false;
                        } else {
                            view_keys.push(KeyUse {
                                name: k.name.clone(),
                                path: p("tsig"),
                                owner: format!("region \"{id}\""),
                            });
                        }
                    }
                }
                // its own servers, not a view: the zone's key signs for it
                None if own_servers => {
                    if let Some(d) = facts.dns {
                        tsig = d.tsig.clone();
                        tsig_file = d.tsig_file.clone();
                    }
                }
                None if facts.external == Some(true) => {
                    self.err(
                        p("tsig"),
                        format!("missing: region \"{id}\" is a view of dns.servers, and a view is selected by the key that signs the update; give it a key of its own (or servers of its own in `dns`)"),
                    );
                    region_ok = false;
                }
                // the embedded server makes one at run time
                None => {}
            }

            paths.entry(id.clone()).or_insert(path);
            if region_ok {
                regions.insert(
                    id.clone(),
                    Region {
                        id,
                        clients,
                        countries: region_countries,
                        continents: region_continents,
                        location,
                        distance_ms,
                        dns_servers,
                        tsig,
                        tsig_file,
                    },
                );
            } else {
                ok = false;
            }
        }

        self.check_nesting(&prefixes);
        if facts.geoip_database && !any_geoip {
            self.warn("dns.geoip_database", "unused: no region has `geoip`");
        }
        ok.then_some(regions)
    }

    /// A client prefix: `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or /128).
    fn prefix(&mut self, path: &str, text: &str) -> Option<IpNet> {
        let t = text.trim();
        let net = if t.contains('/') {
            t.parse::<IpNet>().ok()
        } else {
            t.parse::<std::net::IpAddr>().ok().map(IpNet::from)
        };
        let Some(net) = net else {
            self.err(
                path,
                format!("invalid prefix \"{text}\" (expected an address or address/length, as 127.0.10.0/24 or 2001:db8::/32)"),
            );
            return None;
        };
        if net.trunc() != net {
            self.err(
                path,
                format!(
                    "prefix \"{text}\" has host bits set: the network is {}",
                    net.trunc()
                ),
            );
            return None;
        }
        Some(net)
    }

    /// Country and continent codes, normalised to upper case, each with its index in the
    /// file; and whether all were valid.
    fn geoip(&mut self, path: &str, raw: &RawGeoip, id: &RegionId) -> Geo {
        let mut ok = true;
        if raw.countries.is_empty() && raw.continents.is_empty() {
            self.err(
                path,
                format!("region \"{id}\": an empty geoip: give countries (as \"DE\") or continents (as \"EU\")"),
            );
            ok = false;
        }
        let mut countries: Vec<(usize, String)> = Vec::new();
        for (j, c) in raw.countries.iter().enumerate() {
            let cpath = format!("{path}.countries[{j}]");
            let code = c.trim().to_ascii_uppercase();
            if countries.iter().any(|(_, x)| *x == code) {
                self.err(cpath, format!("country {code} listed twice"));
                ok = false;
            } else if is_country(&code) {
                countries.push((j, code));
            } else {
                let hint = match code.as_str() {
                    "UK" => "; the United Kingdom is \"GB\"".to_owned(),
                    c if Continent::from_code(c).is_some() => {
                        format!("; \"{c}\" is a continent: list it in `continents`")
                    }
                    _ => String::new(),
                };
                self.err(
                    cpath,
                    format!("unknown country \"{c}\" (expected an ISO 3166-1 alpha-2 code, as \"DE\"{hint})"),
                );
                ok = false;
            }
        }
        let mut continents: Vec<(usize, Continent)> = Vec::new();
        for (j, c) in raw.continents.iter().enumerate() {
            let cpath = format!("{path}.continents[{j}]");
            match Continent::from_code(&c.trim().to_ascii_uppercase()) {
                Some(k) if continents.iter().any(|(_, x)| *x == k) => {
                    self.err(cpath, format!("continent {k} listed twice"));
                    ok = false;
                }
                Some(k) => continents.push((j, k)),
                None => {
                    let codes: Vec<&str> = Continent::ALL.iter().map(|k| k.code()).collect();
                    self.err(
                        cpath,
                        format!(
                            "unknown continent \"{c}\" (expected one of {})",
                            codes.join(", ")
                        ),
                    );
                    ok = false;
                }
            }
        }
        Geo {
            countries,
            continents,
            ok,
        }
    }

    /// A prefix inside another: in another region, clients in the inner one belong to its
    /// region (the most specific prefix wins), worth a warning; in the same region, the
    /// inner one is redundant.
    fn check_nesting(&mut self, prefixes: &BTreeMap<IpNet, (RegionId, String)>) {
        for (net, (region, path)) in prefixes {
            let mut up = net.supernet();
            while let Some(outer) = up {
                if let Some((other, opath)) = prefixes.get(&outer) {
                    if other == region {
                        self.warn(
                            path.clone(),
                            format!("prefix {net} is redundant: it lies inside {outer} of the same region ({opath})"),
                        );
                    } else {
                        self.warn(
                            path.clone(),
                            format!("prefix {net} lies inside {outer} of region \"{other}\" ({opath}): its clients belong to region \"{region}\", the most specific prefix"),
                        );
                    }
                    break;
                }
                up = outer.supernet();
            }
        }
    }
}

fn is_country(code: &str) -> bool {
    code.len() == 2 && COUNTRIES.split_ascii_whitespace().any(|c| c == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_country_list_is_iso_3166_plus_kosovo() {
        let codes: Vec<&str> = COUNTRIES.split_ascii_whitespace().collect();
        assert_eq!(codes.len(), 249 + 1);
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, codes, "sorted, no duplicates");
        assert!(codes.iter().all(|c| c.len() == 2));
        for c in ["DE", "FR", "GB", "US", "JP", "XK"] {
            assert!(is_country(c), "{c}");
        }
        for c in ["UK", "EU", "de", "D", "DEU", ""] {
            assert!(!is_country(c), "{c}");
        }
    }
}
