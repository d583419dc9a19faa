//! What a publisher is asked to publish ([`DesiredZone`], [`RecordSet`]) and what a DNS server
//! holds ([`ZoneState`]).

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use hickory_proto::rr::{Name, RecordType};

use crate::Error;

/// Parses a domain name and returns it lowercased and fully qualified (`www.example.test.`).
pub fn fqdn(text: &str) -> Result<Name, Error> {
    let mut name = Name::from_str(text).map_err(|e| Error::Name {
        name: text.to_owned(),
        reason: e.to_string(),
    })?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

/// Parses a zone name like [`fqdn`]; a name that is not a domain name is an
/// [`Error::Zone`] naming the zone.
pub fn zone_name(text: &str) -> Result<Name, Error> {
    fqdn(text).map_err(|e| Error::Zone {
        zone: text.to_owned(),
        reason: match e {
            Error::Name { reason, .. } => format!("not a domain name: {reason}"),
            other => other.to_string(),
        },
    })
}

fn normalize(name: &Name) -> Name {
    let mut name = name.to_lowercase();
    name.set_fqdn(true);
    name
}

/// The answers for one name: its A and AAAA addresses and their TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSet {
    /// Owner name, fully qualified.
    pub name: Name,
    /// TTL of both the A and the AAAA RRset, in seconds.
    pub ttl: u32,
    /// A records.
    pub v4: BTreeSet<Ipv4Addr>,
    /// AAAA records.
    pub v6: BTreeSet<Ipv6Addr>,
}

impl RecordSet {
    /// A record set with the given name and TTL and no address yet.
    pub fn new(name: &str, ttl: u32) -> Result<Self, Error> {
        Ok(Self {
            name: fqdn(name)?,
            ttl,
            v4: BTreeSet::new(),
            v6: BTreeSet::new(),
        })
    }

    /// Adds addresses of either family.
    pub fn with_addrs(mut self, addrs: impl IntoIterator<Item = IpAddr>) -> Self {
        for addr in addrs {
            match addr {
                IpAddr::V4(a) => self.v4.insert(a),
                IpAddr::V6(a) => self.v6.insert(a),
            };
        }
        self
    }

    /// True when there is no address of either family: such a set is never published.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// The RRset of one family, or `None` when the family has no address.
    pub fn rrset(&self, family: Family) -> Option<RrData> {
        let addrs: BTreeSet<IpAddr> = match family {
            Family::V4 => self.v4.iter().copied().map(IpAddr::V4).collect(),
            Family::V6 => self.v6.iter().copied().map(IpAddr::V6).collect(),
        };
        (!addrs.is_empty()).then_some(RrData {
            ttl: self.ttl,
            addrs,
        })
    }
}

/// The desired answers of one zone: at most one [`RecordSet`] per name.
///
/// A publisher manages exactly the names listed here; other names of the zone (SOA, NS, records
/// written by someone else) are never touched. A name that disappears from the desired answers
/// is no longer managed: its last records stay in DNS (fail-static) until removed by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredZone {
    zone: Name,
    records: BTreeMap<Name, RecordSet>,
    /// Per name, how many candidates the deciding node hears for its service: what a
    /// publisher sharing its DNS server with other global nodes compares
    /// ([`crate::rfc2136::PeerConfig`]).
    heard: BTreeMap<Name, u32>,
}

impl DesiredZone {
    /// Empty answers for `zone` (e.g. `"example.test."`).
    pub fn new(zone: &str) -> Result<Self, Error> {
        Ok(Self::for_zone(&fqdn(zone)?))
    }

    /// Empty answers for an already parsed zone name.
    pub fn for_zone(zone: &Name) -> Self {
        Self {
            zone: normalize(zone),
            records: BTreeMap::new(),
            heard: BTreeMap::new(),
        }
    }

    /// Records how many candidates the deciding node hears for the service of `name`.
    pub fn set_heard(&mut self, name: &Name, heard: u32) {
        self.heard.insert(normalize(name), heard);
    }

    /// How many candidates the deciding node hears for the service of `name` (0 unknown).
    pub fn heard(&self, name: &Name) -> u32 {
        self.heard.get(name).copied().unwrap_or(0)
    }

    /// Adds or replaces the answers of one name. Nothing is checked here: publishers refuse
    /// empty sets and names outside the zone when asked to publish them, and say so.
    pub fn insert(&mut self, mut set: RecordSet) {
        set.name = normalize(&set.name);
        self.records.insert(set.name.clone(), set);
    }

    /// Builder form of [`DesiredZone::insert`].
    pub fn with(mut self, set: RecordSet) -> Self {
        self.insert(set);
        self
    }

    /// Removes a name from the managed set.
    pub fn remove(&mut self, name: &Name) -> Option<RecordSet> {
        self.records.remove(&normalize(name))
    }

    /// The zone.
    pub fn zone(&self) -> &Name {
        &self.zone
    }

    /// The answers of one name.
    pub fn get(&self, name: &Name) -> Option<&RecordSet> {
        self.records.get(&normalize(name))
    }

    /// All record sets, in name order.
    pub fn records(&self) -> impl Iterator<Item = &RecordSet> {
        self.records.values()
    }

    /// The managed names, in order.
    pub fn names(&self) -> impl Iterator<Item = &Name> {
        self.records.keys()
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when no name is managed.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The desired answers as RRsets (families without addresses are absent).
    pub fn to_state(&self) -> ZoneState {
        let mut state = ZoneState::default();
        for set in self.records.values() {
            for family in Family::ALL {
                if let Some(data) = set.rrset(family) {
                    state.insert(RrKey::new(set.name.clone(), family), data);
                }
            }
        }
        state
    }
}

/// Address family of an RRset: A or AAAA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// A records.
    V4,
    /// AAAA records.
    V6,
}

impl Family {
    /// Both families, A first.
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// The DNS record type.
    pub fn record_type(self) -> RecordType {
        match self {
            Family::V4 => RecordType::A,
            Family::V6 => RecordType::AAAA,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "A",
            Family::V6 => "AAAA",
        })
    }
}

/// Identifies one RRset: owner name and family.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RrKey {
    /// Owner name, lowercase and fully qualified.
    pub name: Name,
    /// A or AAAA.
    pub family: Family,
}

impl RrKey {
    /// Key for `name`/`family`; the name is normalized.
    pub fn new(name: Name, family: Family) -> Self {
        Self {
            name: normalize(&name),
            family,
        }
    }
}

impl fmt::Display for RrKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name, self.family)
    }
}

/// The contents of one RRset. All addresses share the TTL (RFC 2181 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RrData {
    /// TTL in seconds.
    pub ttl: u32,
    /// The addresses, all of the RRset's family. Never empty in a [`ZoneState`].
    pub addrs: BTreeSet<IpAddr>,
}

impl fmt::Display for RrData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ttl {} [", self.ttl)?;
        for (i, addr) in self.addrs.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{addr}")?;
        }
        f.write_str("]")
    }
}

/// A and AAAA RRsets as a DNS server holds them (or as fedlb believes it holds them), for the
/// managed names only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneState {
    rrsets: BTreeMap<RrKey, RrData>,
}

impl ZoneState {
    /// Sets one RRset; an empty address set removes it instead.
    pub fn insert(&mut self, key: RrKey, data: RrData) {
        if data.addrs.is_empty() {
            self.rrsets.remove(&key);
        } else {
            self.rrsets.insert(key, data);
        }
    }

    /// Removes one RRset.
    pub fn remove(&mut self, key: &RrKey) -> Option<RrData> {
        self.rrsets.remove(key)
    }

    /// One RRset.
    pub fn get(&self, key: &RrKey) -> Option<&RrData> {
        self.rrsets.get(key)
    }

    /// All RRsets in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&RrKey, &RrData)> {
        self.rrsets.iter()
    }

    /// Number of RRsets.
    pub fn len(&self) -> usize {
        self.rrsets.len()
    }

    /// True when there is no RRset.
    pub fn is_empty(&self) -> bool {
        self.rrsets.is_empty()
    }

    /// The RRsets of one name only (both families).
    pub fn only(&self, name: &Name) -> ZoneState {
        let mut out = ZoneState::default();
        for family in Family::ALL {
            let key = RrKey::new(name.clone(), family);
            if let Some(data) = self.get(&key) {
                out.insert(key, data.clone());
            }
        }
        out
    }

    /// The addresses of a name, both families, or an empty set.
    pub fn addrs(&self, name: &Name) -> BTreeSet<IpAddr> {
        Family::ALL
            .iter()
            .filter_map(|f| self.get(&RrKey::new(name.clone(), *f)))
            .flat_map(|d| d.addrs.iter().copied())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized() {
        let n = fqdn("WWW.Example.Test").unwrap();
        assert_eq!(n.to_string(), "www.example.test.");
        let mut z = DesiredZone::new("Example.TEST").unwrap();
        z.insert(
            RecordSet::new("WWW.example.test.", 30)
                .unwrap()
                .with_addrs(["192.0.2.1".parse().unwrap()]),
        );
        assert_eq!(z.zone().to_string(), "example.test.");
        assert!(z.get(&fqdn("www.example.test").unwrap()).is_some());
        assert!(fqdn("bad..name").is_err());
    }

    #[test]
    fn to_state_skips_empty_families() {
        let set = RecordSet::new("a.example.test", 5)
            .unwrap()
            .with_addrs(["192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap()]);
        let state = DesiredZone::new("example.test")
            .unwrap()
            .with(set)
            .to_state();
        assert_eq!(state.len(), 1);
        let (key, data) = state.iter().next().unwrap();
        assert_eq!(key.family, Family::V4);
        assert_eq!(data.to_string(), "ttl 5 [192.0.2.1 192.0.2.2]");
    }
}
