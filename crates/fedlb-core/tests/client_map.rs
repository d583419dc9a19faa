//! Properties of client classification (the per-query rule of the embedded server): the
//! scope of an answer never spans two regions, the most specific prefix wins (checked against
//! a linear scan), and families never mix.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use fedlb_core::{ClientMap, GeoHit, RegionClients, RegionId};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;

/// Prefixes packed into 10.0.0.0/8 (or 2001:db8::/32) so that they nest and touch often.
fn v4_prefix() -> impl Strategy<Value = IpNet> {
    (8u8..=30, any::<u32>()).prop_map(|(len, bits)| {
        let addr = Ipv4Addr::from(0x0a00_0000 | (bits & 0x00ff_ffff));
        IpNet::V4(Ipv4Net::new(addr, len).unwrap().trunc())
    })
}

fn v6_prefix() -> impl Strategy<Value = IpNet> {
    (32u8..=120, any::<u128>()).prop_map(|(len, bits)| {
        let base = 0x2001_0db8_u128 << 96;
        let addr = Ipv6Addr::from(base | (bits >> 32));
        IpNet::V6(Ipv6Net::new(addr, len).unwrap().trunc())
    })
}

fn regions(prefixes: Vec<IpNet>, n_regions: usize) -> Vec<RegionClients> {
    let mut out: Vec<RegionClients> = (0..n_regions)
        .map(|i| RegionClients::prefixes(format!("r{i}"), vec![]))
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    for (i, p) in prefixes.into_iter().enumerate() {
        if seen.insert(p) {
            out[i % n_regions].prefixes.push(p);
        }
    }
    out
}

/// The region by linear scan: the longest prefix containing the address.
fn oracle(regions: &[RegionClients], client: IpAddr) -> Option<RegionId> {
    regions
        .iter()
        .flat_map(|r| r.prefixes.iter().map(move |p| (p, &r.region)))
        .filter(|(p, _)| p.contains(&client))
        .max_by_key(|(p, _)| p.prefix_len())
        .map(|(_, r)| r.clone())
}

fn nth_in(block: IpNet, offset: u128) -> IpAddr {
    match block {
        IpNet::V4(b) => {
            let size = 1u64 << (32 - b.prefix_len());
            let n = u32::from(b.network()) as u64 + (offset as u64 % size);
            IpAddr::V4(Ipv4Addr::from(n as u32))
        }
        IpNet::V6(b) => {
            let host = 128 - u32::from(b.prefix_len());
            let n = if host == 128 {
                offset
            } else {
                u128::from(b.network()) + (offset % (1u128 << host))
            };
            IpAddr::V6(Ipv6Addr::from(n))
        }
    }
}

fn check_scope(map: &ClientMap, list: &[RegionClients], client: IpAddr, probes: &[u128]) {
    let got = map.classify(client, None, None);
    assert_eq!(got.region.cloned(), oracle(list, client), "{client}");
    let block = IpNet::new(client, got.scope).unwrap().trunc();
    let mut addrs = vec![block.network(), block.broadcast()];
    addrs.extend(probes.iter().map(|&o| nth_in(block, o)));
    for a in addrs {
        assert_eq!(
            map.classify(a, None, None).region,
            got.region,
            "{a} is in {block} (scope of {client}) but classifies elsewhere"
        );
        assert_eq!(oracle(list, a), got.region.cloned(), "{a} in {block}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn v4_scope_holds_one_region(
        prefixes in prop::collection::vec(v4_prefix(), 1..40),
        n_regions in 1usize..4,
        client_bits in any::<u32>(),
        near in any::<bool>(),
        probes in prop::collection::vec(any::<u128>(), 8),
    ) {
        let list = regions(prefixes, n_regions);
        let map = ClientMap::new(list.clone()).unwrap();
        let client = if near { 0x0a00_0000 | (client_bits & 0x00ff_ffff) } else { client_bits };
        check_scope(&map, &list, IpAddr::V4(Ipv4Addr::from(client)), &probes);
    }

    #[test]
    fn v6_scope_holds_one_region(
        prefixes in prop::collection::vec(v6_prefix(), 1..40),
        n_regions in 1usize..4,
        client_bits in any::<u128>(),
        near in any::<bool>(),
        probes in prop::collection::vec(any::<u128>(), 8),
    ) {
        let list = regions(prefixes, n_regions);
        let map = ClientMap::new(list.clone()).unwrap();
        let client = if near { (0x2001_0db8_u128 << 96) | (client_bits >> 32) } else { client_bits };
        check_scope(&map, &list, IpAddr::V6(Ipv6Addr::from(client)), &probes);
    }

    /// Nested prefixes of one another: the client is drawn inside the innermost, one of them
    /// or right next to one, where a too-small scope shows first.
    #[test]
    fn scope_at_block_edges(
        prefixes in prop::collection::vec(v4_prefix(), 1..20),
        n_regions in 1usize..4,
        pick in any::<prop::sample::Index>(),
        delta in -2i64..=2,
        probes in prop::collection::vec(any::<u128>(), 8),
    ) {
        let list = regions(prefixes.clone(), n_regions);
        let map = ClientMap::new(list.clone()).unwrap();
        let p = pick.get(&prefixes);
        let IpNet::V4(p4) = p else { unreachable!() };
        for edge in [u32::from(p4.network()), u32::from(p4.broadcast())] {
            let client = Ipv4Addr::from(edge.wrapping_add(delta as u32));
            check_scope(&map, &list, IpAddr::V4(client), &probes);
        }
    }

    /// A v4 client never matches v6 prefixes, and the reverse, whatever the bits.
    #[test]
    fn families_never_mix(v4 in any::<u32>(), v6 in any::<u128>()) {
        let map = ClientMap::new(vec![
            RegionClients::prefixes("six", vec!["::/0".parse().unwrap()]),
            RegionClients::prefixes("four", vec!["0.0.0.0/0".parse().unwrap()]),
        ]).unwrap();
        let v4 = IpAddr::V4(Ipv4Addr::from(v4));
        prop_assert_eq!(map.classify(v4, None, None).region.map(RegionId::as_str), Some("four"));
        let v6 = Ipv6Addr::from(v6);
        let want = if v6.to_ipv4_mapped().is_some() { "four" } else { "six" };
        prop_assert_eq!(map.classify(IpAddr::V6(v6), None, None).region.map(RegionId::as_str), Some(want));

        let only6 = ClientMap::new(vec![RegionClients::prefixes("six", vec!["::/0".parse().unwrap()])]).unwrap();
        let c = only6.classify(v4, None, None);
        prop_assert_eq!((c.region, c.scope), (None, 0));
    }

    /// With geoip, the scope still never spans a prefix of another region, and is at least the
    /// database's network.
    #[test]
    fn geo_scope_keeps_prefixes_out(
        prefixes in prop::collection::vec(v4_prefix(), 0..20),
        client_bits in any::<u32>(),
        geo_len in 0u8..=32,
        probes in prop::collection::vec(any::<u128>(), 8),
    ) {
        let mut list = regions(prefixes, 2);
        list.push(RegionClients { region: "geo".into(), prefixes: vec![], countries: vec!["DE".into()], continents: vec![] });
        let map = ClientMap::new(list.clone()).unwrap();
        let client = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (client_bits & 0x00ff_ffff)));
        let hit = GeoHit { country: Some("DE".into()), continent: Some("EU".into()), prefix_len: geo_len };
        let got = map.classify(client, None, Some(&hit));
        prop_assert!(got.scope >= geo_len || oracle(&list, client).is_some());
        let want = oracle(&list, client).unwrap_or_else(|| "geo".into());
        prop_assert_eq!(got.region, Some(&want));
        let block = IpNet::new(client, got.scope).unwrap().trunc();
        for a in probes.iter().map(|&o| nth_in(block, o)).chain([block.network(), block.broadcast()]) {
            prop_assert_eq!(map.classify(a, None, Some(&hit)).region, Some(&want), "{} in {}", a, block);
        }
    }
}
