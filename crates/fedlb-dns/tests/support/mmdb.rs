//! A tiny MaxMind DB writer for tests: an IPv4 database (24-bit records) whose records carry
//! `country.iso_code` and `continent.code`, laid out as GeoIP2-Country does, following the
//! MaxMind DB format 2.0 specification. No writer on crates.io fits: the one there pulls in
//! thiserror 1 next to the workspace's thiserror 2.

use std::net::Ipv4Addr;

#[derive(Clone, Copy)]
enum Rec {
    Empty,
    Node(usize),
    Data(usize),
}

fn ctrl(out: &mut Vec<u8>, kind: u8, size: usize) {
    assert!(size < 29, "small sizes only");
    if kind <= 7 {
        out.push((kind << 5) | size as u8);
    } else {
        out.push(size as u8);
        out.push(kind - 7);
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    ctrl(out, 2, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn uint(out: &mut Vec<u8>, kind: u8, bytes: &[u8]) {
    ctrl(out, kind, bytes.len());
    out.extend_from_slice(bytes);
}

/// Writes the database: each `(network, country, continent)` is a record (an empty code is
/// left out). Networks must not overlap.
pub fn write(path: &std::path::Path, entries: &[(&str, &str, &str)]) {
    let mut data = Vec::new();
    let mut nodes: Vec<[Rec; 2]> = vec![[Rec::Empty; 2]];
    for (net, country, continent) in entries {
        let offset = data.len();
        let fields = [
            ("continent", "code", *continent),
            ("country", "iso_code", *country),
        ];
        let present: Vec<_> = fields.iter().filter(|f| !f.2.is_empty()).collect();
        ctrl(&mut data, 7, present.len());
        for (outer, inner, code) in present {
            string(&mut data, outer);
            ctrl(&mut data, 7, 1);
            string(&mut data, inner);
            string(&mut data, code);
        }
        let net: ipnet::Ipv4Net = net.parse().unwrap();
        let bits = u32::from(net.network());
        let len = usize::from(net.prefix_len());
        assert!(len > 0);
        let mut node = 0;
        for depth in 0..len {
            let bit = ((bits >> (31 - depth)) & 1) as usize;
            if depth == len - 1 {
                nodes[node][bit] = Rec::Data(offset);
            } else {
                node = match nodes[node][bit] {
                    Rec::Node(n) => n,
                    Rec::Empty => {
                        nodes.push([Rec::Empty; 2]);
                        let n = nodes.len() - 1;
                        nodes[node][bit] = Rec::Node(n);
                        n
                    }
                    Rec::Data(_) => panic!("overlapping networks"),
                };
            }
        }
    }
    let count = nodes.len();
    let mut out = Vec::new();
    for node in &nodes {
        for rec in node {
            let value = match *rec {
                Rec::Empty => count,
                Rec::Node(n) => n,
                Rec::Data(off) => count + 16 + off,
            };
            out.extend_from_slice(&(value as u32).to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    let meta = &mut out;
    ctrl(meta, 7, 9);
    string(meta, "binary_format_major_version");
    uint(meta, 5, &2u16.to_be_bytes());
    string(meta, "binary_format_minor_version");
    uint(meta, 5, &0u16.to_be_bytes());
    string(meta, "build_epoch");
    uint(meta, 9, &1_700_000_000u64.to_be_bytes());
    string(meta, "database_type");
    string(meta, "fedlb-test-Country");
    string(meta, "description");
    ctrl(meta, 7, 1);
    string(meta, "en");
    string(meta, "written by the fedlb tests");
    string(meta, "ip_version");
    uint(meta, 5, &4u16.to_be_bytes());
    string(meta, "languages");
    ctrl(meta, 11, 1);
    string(meta, "en");
    string(meta, "node_count");
    uint(meta, 6, &(count as u32).to_be_bytes());
    string(meta, "record_size");
    uint(meta, 5, &24u16.to_be_bytes());
    std::fs::write(path, out).unwrap();
}

/// An address inside `net` (its first host), for tests.
pub fn first_host(net: &str) -> Ipv4Addr {
    let net: ipnet::Ipv4Net = net.parse().unwrap();
    Ipv4Addr::from(u32::from(net.network()) + 1)
}
