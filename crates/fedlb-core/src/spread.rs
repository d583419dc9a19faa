//! Spreading one answer over its members: the weights a decision publishes, and the per-query
//! pick rules a DNS server (the embedded one) and the simulator apply to them.
//!
//! Why: with DNS caching, one answer goes to every client behind every resolver that asks
//! during the TTL, so one preferred server takes whole resolvers' worth of load — a server
//! with a quarter of the capacity gets the same share as a big one whenever it looks least
//! loaded, and drowns before the next report moves the answer (Colajanni, Yu and Dias, TPDS
//! 1998). Publishing a *set* with weights sized to each member's headroom, and picking per
//! query by weight (gdnsd `weighted`, PowerDNS `pickwrandom` / `pickwhashed`, Route 53
//! weighted records), spreads each resolver's load in proportion to what each member can
//! still take.
//!
//! Weights are relative, per address, aligned with the decision's `addresses`; readers
//! normalise them per address family (an A query only sees IPv4 members), see
//! [`family_shares`]. The pick rules are pure functions of the weights and a draw (or the
//! client's subnet), so the embedded server and `fedlb simulate` run the very same code.

use std::net::IpAddr;

use ipnet::IpNet;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::candidate::Candidate;

/// A busy member keeps this fraction of its capacity as weight, so that it still gets a
/// trickle of new clients (and readings that show it recovering) instead of none.
pub const HEADROOM_FLOOR: f64 = 0.05;

/// A republication is due when a member's normalised share moved by more than this (an
/// absolute fraction of the family's answer): weights follow load readings, which move all
/// the time, and a change below this is noise.
pub const SHARE_TOLERANCE: f64 = 0.05;

/// `pickwhashed` keys an IPv4 client by its /24, as resolvers' EDNS Client Subnet does.
pub const V4_KEY_PREFIX: u8 = 24;
/// `pickwhashed` keys an IPv6 client by its /56 (one site).
pub const V6_KEY_PREFIX: u8 = 56;

/// How a DNS server answers a name whose published set has several addresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Spread {
    /// The whole set in every answer; resolvers and clients spread over it (the behaviour
    /// of every external DNS server, and the default).
    #[default]
    All,
    /// One address per query and family, drawn by weight (PowerDNS `pickwrandom`, gdnsd
    /// `weighted`): over many queries each member gets its share.
    Weighted,
    /// One address per query and family, chosen by weight from a hash of the client's
    /// subnet (/24, /56; PowerDNS `pickwhashed`): a client keeps its server while the
    /// weights hold, and weighted rendezvous hashing moves only the clients it must when
    /// they change.
    Hashed,
}

impl Spread {
    /// The name a topology writes: `all`, `weighted` or `hashed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Spread::All => "all",
            Spread::Weighted => "weighted",
            Spread::Hashed => "hashed",
        }
    }
}

/// What `c` can still take: capacity × (1 − load), at least [`HEADROOM_FLOOR`] × capacity.
/// A candidate without a load reading counts as idle (unknown is not bad), so without
/// readings weights follow capacity.
pub fn headroom(c: &Candidate) -> f64 {
    let cap = c.capacity.max(f64::MIN_POSITIVE);
    let free = c.load().map_or(1.0, |l| 1.0 - l);
    cap * free.max(HEADROOM_FLOOR)
}

/// The index `point` (in `[0, 1)`) falls on when `weights` are laid end to end. Weights that
/// are not finite or not positive count as zero; when all are, every member counts equally.
/// `None` only for an empty slice.
pub fn pick_at(weights: &[f64], point: f64) -> Option<usize> {
    if weights.is_empty() {
        return None;
    }
    let w = |x: f64| if x.is_finite() && x > 0.0 { x } else { 0.0 };
    let total: f64 = weights.iter().map(|x| w(*x)).sum();
    let point = if point.is_finite() {
        point.clamp(0.0, 1.0)
    } else {
        0.0
    };
    if total <= 0.0 || !total.is_finite() {
        let i = (point * weights.len() as f64) as usize;
        return Some(i.min(weights.len() - 1));
    }
    let target = point * total;
    let mut acc = 0.0;
    let mut last = None;
    for (i, x) in weights.iter().enumerate() {
        let x = w(*x);
        if x <= 0.0 {
            continue;
        }
        acc += x;
        last = Some(i);
        if target < acc {
            return Some(i);
        }
    }
    last
}

/// One member drawn by weight (PowerDNS `pickwrandom`): member `i` comes out with
/// probability `weights[i] / Σ weights`. See [`pick_at`] for odd weights.
pub fn pick_weighted(weights: &[f64], rng: &mut impl Rng) -> Option<usize> {
    pick_at(weights, rng.random::<f64>())
}

/// The subnet a client is keyed by for [`pick_hashed`]: its /24 (IPv4) or /56 (IPv6), or
/// the shorter prefix its resolver sent in EDNS Client Subnet (`source_prefix`).
pub fn client_key(client: IpAddr, source_prefix: Option<u8>) -> IpNet {
    let key = match client {
        IpAddr::V4(_) => V4_KEY_PREFIX,
        IpAddr::V6(_) => V6_KEY_PREFIX,
    };
    let len = source_prefix.map_or(key, |s| s.min(key));
    IpNet::new(client, len)
        .map(|n| n.trunc())
        .unwrap_or_else(|_| IpNet::from(client))
}

/// One member for a client subnet (PowerDNS `pickwhashed`), by weighted rendezvous hashing:
/// each member scores `w / −ln(u)` with `u` a hash of (subnet, member address) in `(0, 1)`,
/// and the highest wins. Over many subnets member `i` is chosen with probability
/// `w_i / Σ w`; a subnet keeps its member while that member stays in the set, and a change
/// of weights moves only the subnets it must. Members of weight zero are chosen only when
/// every weight is zero (then all count equally). `None` only for an empty set.
pub fn pick_hashed(members: &[(IpAddr, f64)], client: IpNet) -> Option<usize> {
    let positive = |x: f64| x.is_finite() && x > 0.0;
    let any = members.iter().any(|(_, w)| positive(*w));
    let mut best: Option<(usize, f64)> = None;
    for (i, (addr, w)) in members.iter().enumerate() {
        let w = if any {
            if !positive(*w) {
                continue;
            }
            *w
        } else {
            1.0
        };
        let u = unit(hash_pair(client, *addr));
        let score = w / -u.ln();
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
}

/// The member a DNS server answering with `spread` gives a client keyed `client` (see
/// [`client_key`]), among `members` (one address family, with weights): a draw by weight
/// for [`Spread::Weighted`], the client's rendezvous pick for [`Spread::Hashed`], and `None`
/// for [`Spread::All`] (the whole set is answered) or an empty set. The embedded server and
/// `fedlb simulate` both answer through this.
pub fn pick(
    spread: Spread,
    members: &[(IpAddr, f64)],
    client: IpNet,
    rng: &mut impl Rng,
) -> Option<usize> {
    match spread {
        Spread::All => None,
        Spread::Weighted => {
            let weights: Vec<f64> = members.iter().map(|(_, w)| *w).collect();
            pick_weighted(&weights, rng)
        }
        Spread::Hashed => pick_hashed(members, client),
    }
}

/// The members of one address family with their shares of the family's answer, summing to
/// 1 (equal shares when the weights are missing, misaligned, or all zero).
pub fn family_shares(addresses: &[IpAddr], weights: &[f64], v4: bool) -> Vec<(IpAddr, f64)> {
    let aligned = weights.len() == addresses.len();
    let mut out: Vec<(IpAddr, f64)> = addresses
        .iter()
        .enumerate()
        .filter(|(_, a)| a.is_ipv4() == v4)
        .map(|(i, a)| {
            let w = if aligned { weights[i] } else { 1.0 };
            (*a, if w.is_finite() && w > 0.0 { w } else { 0.0 })
        })
        .collect();
    let total: f64 = out.iter().map(|(_, w)| w).sum();
    let n = out.len() as f64;
    for (_, w) in &mut out {
        *w = if total > 0.0 { *w / total } else { 1.0 / n };
    }
    out
}

/// Whether two weighted answers differ enough to publish again: another set of addresses,
/// or a member whose share of its family moved by more than [`SHARE_TOLERANCE`].
pub fn shares_moved(a: (&[IpAddr], &[f64]), b: (&[IpAddr], &[f64])) -> bool {
    if a.0 != b.0 {
        return true;
    }
    [true, false].into_iter().any(|v4| {
        let x = family_shares(a.0, a.1, v4);
        let y = family_shares(b.0, b.1, v4);
        x.iter()
            .zip(&y)
            .any(|((_, p), (_, q))| (p - q).abs() > SHARE_TOLERANCE)
    })
}

/// A stable 64-bit hash of (client subnet, member address): the same on every build and
/// platform (no `std` hasher, whose keys are random per process).
fn hash_pair(client: IpNet, member: IpAddr) -> u64 {
    let mut h = 0x243F_6A88_85A3_08D3u64 ^ u64::from(client.prefix_len());
    let mut feed = |bytes: &[u8]| {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            h = mix(h ^ u64::from_le_bytes(word));
        }
    };
    match client.addr() {
        IpAddr::V4(a) => feed(&a.octets()),
        IpAddr::V6(a) => feed(&a.octets()),
    }
    match member {
        IpAddr::V4(a) => feed(&a.octets()),
        IpAddr::V6(a) => feed(&a.octets()),
    }
    mix(h)
}

/// SplitMix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A hash as a number strictly between 0 and 1.
fn unit(h: u64) -> f64 {
    ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn pick_at_lays_weights_end_to_end() {
        let w = [1.0, 0.0, 3.0];
        assert_eq!(pick_at(&w, 0.0), Some(0));
        assert_eq!(pick_at(&w, 0.24), Some(0));
        assert_eq!(pick_at(&w, 0.25), Some(2));
        assert_eq!(pick_at(&w, 0.999), Some(2));
        assert_eq!(
            pick_at(&w, 1.0),
            Some(2),
            "the end of the line is the last member"
        );
        assert_eq!(pick_at(&[], 0.5), None);
        assert_eq!(pick_at(&[0.0, 0.0], 0.6), Some(1), "all zero: equal");
        assert_eq!(pick_at(&[f64::NAN, 2.0], 0.1), Some(1));
    }

    #[test]
    fn weighted_draws_follow_the_weights() {
        let w = [1.0, 3.0, 6.0];
        let mut rng = SmallRng::seed_from_u64(1);
        let mut n = [0u32; 3];
        for _ in 0..100_000 {
            n[pick_weighted(&w, &mut rng).unwrap()] += 1;
        }
        for (i, want) in [0.1, 0.3, 0.6].into_iter().enumerate() {
            let got = f64::from(n[i]) / 100_000.0;
            assert!((got - want).abs() < 0.01, "member {i}: {got} vs {want}");
        }
    }

    #[test]
    fn hashed_picks_follow_the_weights_over_subnets() {
        let members = [(v4(1), 1.0), (v4(2), 3.0), (v4(3), 6.0)];
        let mut n = [0u32; 3];
        for i in 0..60_000u32 {
            let client = IpAddr::V4(Ipv4Addr::from(i << 8));
            n[pick_hashed(&members, client_key(client, None)).unwrap()] += 1;
        }
        for (i, want) in [0.1, 0.3, 0.6].into_iter().enumerate() {
            let got = f64::from(n[i]) / 60_000.0;
            assert!((got - want).abs() < 0.015, "member {i}: {got} vs {want}");
        }
    }

    #[test]
    fn a_weight_change_moves_only_the_clients_it_must() {
        let before = [(v4(1), 1.0), (v4(2), 1.0), (v4(3), 1.0)];
        let after = [(v4(1), 1.0), (v4(2), 1.0), (v4(3), 0.5)];
        let mut moved = 0;
        for i in 0..30_000u32 {
            let key = client_key(IpAddr::V4(Ipv4Addr::from(i << 8)), None);
            let (a, b) = (pick_hashed(&before, key), pick_hashed(&after, key));
            if a != b {
                moved += 1;
                assert_eq!(a, Some(2), "only clients of the lightened member move");
            }
        }
        // member 3 goes from 1/3 to 1/5 of the clients: about 2/15 of them move
        assert!((3_000..5_000).contains(&moved), "{moved} moved");
    }

    #[test]
    fn client_keys_are_subnets() {
        let k = client_key("198.51.100.77".parse().unwrap(), None);
        assert_eq!(k.to_string(), "198.51.100.0/24");
        let k = client_key("198.51.100.77".parse().unwrap(), Some(16));
        assert_eq!(k.to_string(), "198.51.0.0/16");
        let k = client_key("2001:db8:1:2ff::1".parse().unwrap(), Some(64));
        assert_eq!(k.to_string(), "2001:db8:1:200::/56");
    }

    #[test]
    fn shares_are_per_family() {
        let addrs = [v4(1), "2001:db8::1".parse().unwrap(), v4(2)];
        let s = family_shares(&addrs, &[1.0, 5.0, 3.0], true);
        assert_eq!(s, vec![(v4(1), 0.25), (v4(2), 0.75)]);
        let s = family_shares(&addrs, &[], false);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].1, 1.0);
        assert!(!shares_moved(
            (&addrs, &[1.0, 5.0, 3.0]),
            (&addrs, &[1.1, 1.0, 3.0])
        ));
        assert!(shares_moved(
            (&addrs, &[1.0, 5.0, 3.0]),
            (&addrs, &[2.0, 1.0, 3.0])
        ));
        assert!(shares_moved((&addrs[..2], &[]), (&addrs, &[])));
    }

    #[test]
    fn headroom_is_floored_and_follows_capacity() {
        let mut c = Candidate::new("a", vec![v4(1)], 200.0);
        assert_eq!(headroom(&c), 200.0, "no reading: all of its capacity");
        c.readings.pending = Some(crate::Sample::new(50, crate::Timestamp::ZERO));
        assert_eq!(headroom(&c), 150.0);
        c.readings.pending = Some(crate::Sample::new(900, crate::Timestamp::ZERO));
        assert_eq!(headroom(&c), 200.0 * HEADROOM_FLOOR);
    }

    proptest! {
        #[test]
        fn a_pick_is_always_a_member(weights in prop::collection::vec(prop_oneof![Just(0.0), 0.0f64..1e6, Just(f64::NAN), Just(-1.0)], 1..12), point in 0.0f64..=1.0, client in any::<u32>(), prefix in proptest::option::of(0u8..=32)) {
            let i = pick_at(&weights, point).unwrap();
            prop_assert!(i < weights.len());
            if weights.iter().any(|w| w.is_finite() && *w > 0.0) {
                prop_assert!(weights[i] > 0.0, "a member of weight zero is never picked while another has weight");
            }
            let members: Vec<(IpAddr, f64)> = weights.iter().enumerate().map(|(i, w)| (v4(i as u8), *w)).collect();
            let key = client_key(IpAddr::V4(Ipv4Addr::from(client)), prefix);
            let j = pick_hashed(&members, key).unwrap();
            prop_assert!(j < members.len());
            if weights.iter().any(|w| w.is_finite() && *w > 0.0) {
                prop_assert!(weights[j] > 0.0);
            }
        }

        #[test]
        fn a_hashed_pick_is_stable_per_subnet(weights in prop::collection::vec(0.01f64..100.0, 1..8), net in any::<u32>(), host_a in any::<u8>(), host_b in any::<u8>()) {
            let members: Vec<(IpAddr, f64)> = weights.iter().enumerate().map(|(i, w)| (v4(i as u8), *w)).collect();
            let base = net & 0xFFFF_FF00;
            let a = client_key(IpAddr::V4(Ipv4Addr::from(base | u32::from(host_a))), None);
            let b = client_key(IpAddr::V4(Ipv4Addr::from(base | u32::from(host_b))), None);
            prop_assert_eq!(pick_hashed(&members, a), pick_hashed(&members, b));
        }

        #[test]
        fn family_shares_sum_to_one(weights in prop::collection::vec(0.0f64..10.0, 1..8)) {
            let addrs: Vec<IpAddr> = (0..weights.len()).map(|i| v4(i as u8)).collect();
            let s = family_shares(&addrs, &weights, true);
            let total: f64 = s.iter().map(|(_, w)| w).sum();
            prop_assert!((total - 1.0).abs() < 1e-9);
            prop_assert!(s.iter().all(|(_, w)| *w >= 0.0));
        }
    }
}
