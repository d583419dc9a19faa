//! The EDNS Client Subnet option (RFC 7871) of a query, read from the raw message.
//!
//! hickory-proto refuses a whole message whose ECS option it cannot parse (unknown family,
//! source prefix longer than the family), and hickory-server then answers FORMERR; it also
//! accepts options the RFC calls malformed (extra address octets, bits set past the source
//! prefix). fedlb answers a query with a malformed option by its source address instead, like
//! a server that does not know the option: so the option is checked here, strictly, on the
//! raw bytes, and a malformed one is cut out of the message before hickory reads it. Nothing
//! is echoed for a malformed option (it cannot be echoed faithfully); a resolver that gets no
//! option back treats the answer as valid for every client (RFC 7871 §7.3).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::opt::ClientSubnet;

const OPT: u16 = 41;
const ECS: u16 = 8;

/// What a query says about its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EcsScan {
    /// No ECS option, or a message this scan cannot walk (hickory judges it).
    Absent,
    /// One well-formed option: the address (zero past the prefix) and the source prefix.
    Valid(ClientSubnet),
    /// A malformed option: why, and the message without it.
    Malformed {
        reason: &'static str,
        stripped: Vec<u8>,
    },
}

fn u16_at(msg: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]))
}

/// The index after the (possibly compressed) name at `i`.
fn skip_name(msg: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let len = *msg.get(i)?;
        match len & 0xC0 {
            0x00 if len == 0 => return Some(i + 1),
            0x00 => i += 1 + usize::from(len),
            0xC0 => return msg.get(i + 1).map(|_| i + 2),
            _ => return None,
        }
    }
}

/// The index after the resource record at `i`, with its type and rdata range.
fn skip_rr(msg: &[u8], i: usize) -> Option<(usize, u16, usize, usize)> {
    let n = skip_name(msg, i)?;
    let rtype = u16_at(msg, n)?;
    let rdlen = usize::from(u16_at(msg, n + 8)?);
    let start = n + 10;
    let end = start + rdlen;
    (end <= msg.len()).then_some((end, rtype, start, end))
}

/// Finds and checks the ECS option of `msg`.
pub(crate) fn scan(msg: &[u8]) -> EcsScan {
    scan_inner(msg).unwrap_or(EcsScan::Absent)
}

fn scan_inner(msg: &[u8]) -> Option<EcsScan> {
    let count = |at| u16_at(msg, at).map(usize::from);
    let (qd, an, ns, ar) = (count(4)?, count(6)?, count(8)?, count(10)?);
    if ar == 0 {
        return Some(EcsScan::Absent);
    }
    let mut i = 12;
    for _ in 0..qd {
        i = skip_name(msg, i)? + 4;
    }
    for _ in 0..an + ns {
        i = skip_rr(msg, i)?.0;
    }
    for _ in 0..ar {
        let (next, rtype, start, end) = skip_rr(msg, i)?;
        if rtype == OPT {
            return opt_ecs(msg, start, end);
        }
        i = next;
    }
    Some(EcsScan::Absent)
}

/// The ECS option(s) in the OPT rdata `msg[start..end]`.
fn opt_ecs(msg: &[u8], start: usize, end: usize) -> Option<EcsScan> {
    let mut spans = Vec::new();
    let mut j = start;
    while j < end {
        let code = u16_at(msg, j)?;
        let len = usize::from(u16_at(msg, j + 2)?);
        let data_end = j + 4 + len;
        if data_end > end {
            return None;
        }
        if code == ECS {
            spans.push((j, data_end));
        }
        j = data_end;
    }
    let checked = match spans.as_slice() {
        [] => return Some(EcsScan::Absent),
        [(at, data_end)] => parse(&msg[at + 4..*data_end]),
        _ => Err("more than one client subnet option"),
    };
    Some(match checked {
        Ok(subnet) => EcsScan::Valid(subnet),
        Err(reason) => EcsScan::Malformed {
            reason,
            stripped: strip(msg, start, &spans),
        },
    })
}

/// `msg` without the option `spans` of the OPT rdata starting at `rdata`, its RDLENGTH
/// lowered to match. Names after the OPT record keep their meaning: compression pointers only
/// point backwards, and nothing before the option moves.
fn strip(msg: &[u8], rdata: usize, spans: &[(usize, usize)]) -> Vec<u8> {
    let removed: usize = spans.iter().map(|(a, b)| b - a).sum();
    let mut out = Vec::with_capacity(msg.len() - removed);
    let mut from = 0;
    for &(a, b) in spans {
        out.extend_from_slice(&msg[from..a]);
        from = b;
    }
    out.extend_from_slice(&msg[from..]);
    let rdlen = u16_at(msg, rdata - 2).unwrap_or(0) as usize - removed;
    out[rdata - 2..rdata].copy_from_slice(&(rdlen as u16).to_be_bytes());
    out
}

/// One option's data, checked as RFC 7871 §6 asks of a query.
fn parse(data: &[u8]) -> Result<ClientSubnet, &'static str> {
    let [f0, f1, source, scope, addr @ ..] = data else {
        return Err("option shorter than 4 octets");
    };
    let width: u8 = match u16::from_be_bytes([*f0, *f1]) {
        1 => 32,
        2 => 128,
        _ => return Err("unknown address family"),
    };
    if *source > width {
        return Err("source prefix longer than the address family");
    }
    if *scope != 0 {
        return Err("scope prefix not zero in a query");
    }
    let need = usize::from(source.div_ceil(8));
    if addr.len() != need {
        return Err("address length does not match the source prefix");
    }
    if source % 8 != 0 && addr[need - 1] & (0xFF >> (source % 8)) != 0 {
        return Err("address bits set past the source prefix");
    }
    let address = if width == 32 {
        let mut octets = [0u8; 4];
        octets[..need].copy_from_slice(addr);
        IpAddr::V4(Ipv4Addr::from(octets))
    } else {
        let mut octets = [0u8; 16];
        octets[..need].copy_from_slice(addr);
        IpAddr::V6(Ipv6Addr::from(octets))
    };
    Ok(ClientSubnet::new(address, *source, 0))
}

#[cfg(test)]
mod tests {
    use hickory_proto::{
        op::{Edns, Message, Query},
        rr::{RecordType, rdata::opt::EdnsOption},
    };
    use proptest::prelude::*;

    use super::*;

    /// A query for `www.example.test A` with an OPT record carrying `options` raw.
    fn query_with(options: &[(u16, &[u8])]) -> Vec<u8> {
        let mut m = Message::query();
        m.add_query(Query::query(
            crate::fqdn("www.example.test").unwrap(),
            RecordType::A,
        ));
        m.set_edns(Edns::new());
        let mut raw = m.to_vec().unwrap();
        // the OPT record is last and empty: append the options and fix its RDLENGTH
        let rdlen_at = raw.len() - 2;
        let mut rdata = Vec::new();
        for (code, data) in options {
            rdata.extend_from_slice(&code.to_be_bytes());
            rdata.extend_from_slice(&(data.len() as u16).to_be_bytes());
            rdata.extend_from_slice(data);
        }
        raw[rdlen_at..].copy_from_slice(&(rdata.len() as u16).to_be_bytes());
        raw.extend_from_slice(&rdata);
        raw
    }

    fn malformed(data: &[u8]) -> &'static str {
        match scan(&query_with(&[(10, b"cookie12"), (8, data)])) {
            EcsScan::Malformed { reason, stripped } => {
                let back = Message::from_vec(&stripped).expect("hickory reads the stripped query");
                let edns = back.edns.expect("the OPT record stays");
                assert!(
                    edns.option(hickory_proto::rr::rdata::opt::EdnsCode::Subnet)
                        .is_none()
                );
                assert_eq!(edns.options().as_ref().len(), 1, "the other option stays");
                reason
            }
            other => panic!("{data:?}: {other:?}"),
        }
    }

    #[test]
    fn well_formed_options_are_read() {
        let scan_one = |data: &[u8]| match scan(&query_with(&[(8, data)])) {
            EcsScan::Valid(s) => (s.addr().to_string(), s.source_prefix()),
            other => panic!("{data:?}: {other:?}"),
        };
        assert_eq!(
            scan_one(&[0, 1, 24, 0, 192, 0, 2]),
            ("192.0.2.0".into(), 24)
        );
        assert_eq!(scan_one(&[0, 1, 0, 0]), ("0.0.0.0".into(), 0));
        assert_eq!(
            scan_one(&[0, 1, 32, 0, 10, 0, 0, 1]),
            ("10.0.0.1".into(), 32)
        );
        assert_eq!(
            scan_one(&[0, 1, 20, 0, 10, 1, 0xF0]),
            ("10.1.240.0".into(), 20)
        );
        assert_eq!(
            scan_one(&[0, 2, 56, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 1, 0]),
            ("2001:db8:1::".into(), 56)
        );
        // as hickory writes it
        let mut m = Message::query();
        let mut edns = Edns::new();
        edns.options_mut()
            .insert(EdnsOption::Subnet("198.51.100.0/24".parse().unwrap()));
        m.set_edns(edns);
        assert!(matches!(scan(&m.to_vec().unwrap()), EcsScan::Valid(s) if s.source_prefix() == 24));
    }

    #[test]
    fn malformed_options_are_cut_out_with_a_reason() {
        assert_eq!(malformed(&[0, 3, 24, 0, 1, 2, 3]), "unknown address family");
        assert_eq!(
            malformed(&[0, 1, 33, 0, 1, 2, 3, 4, 5]),
            "source prefix longer than the address family"
        );
        assert_eq!(
            malformed(&[0, 2, 129, 0]),
            "source prefix longer than the address family"
        );
        assert_eq!(
            malformed(&[0, 1, 24, 0, 192, 0, 2, 0]),
            "address length does not match the source prefix"
        );
        assert_eq!(
            malformed(&[0, 1, 24, 0, 192, 0]),
            "address length does not match the source prefix"
        );
        assert_eq!(
            malformed(&[0, 1, 20, 0, 10, 1, 0xF8]),
            "address bits set past the source prefix"
        );
        assert_eq!(
            malformed(&[0, 1, 24, 8, 192, 0, 2]),
            "scope prefix not zero in a query"
        );
        assert_eq!(malformed(&[0, 1]), "option shorter than 4 octets");
        assert_eq!(malformed(&[]), "option shorter than 4 octets");
        let oversize = [&[0u8, 1, 24, 0][..], &[0xAB; 400]].concat();
        assert_eq!(
            malformed(&oversize),
            "address length does not match the source prefix"
        );
        let two = query_with(&[(8, &[0, 1, 8, 0, 10]), (8, &[0, 1, 8, 0, 11])]);
        assert!(matches!(
            scan(&two),
            EcsScan::Malformed {
                reason: "more than one client subnet option",
                ..
            }
        ));
    }

    #[test]
    fn no_option_or_unwalkable_message_is_absent() {
        assert_eq!(scan(&query_with(&[])), EcsScan::Absent);
        assert_eq!(scan(&query_with(&[(10, b"12345678")])), EcsScan::Absent);
        let mut m = Message::query();
        m.add_query(Query::query(crate::fqdn("a.test").unwrap(), RecordType::A));
        assert_eq!(scan(&m.to_vec().unwrap()), EcsScan::Absent);
        assert_eq!(scan(&[0; 5]), EcsScan::Absent);
        // an option running past the OPT record: hickory answers FORMERR for that
        let mut raw = query_with(&[(8, &[0, 1, 8, 0, 10])]);
        let len = raw.len();
        raw[len - 7] = 0x40;
        assert_eq!(scan(&raw), EcsScan::Absent);
    }

    proptest! {
        /// Whatever the bytes, the scan returns; a stripped message is never longer.
        #[test]
        fn never_panics(raw in prop::collection::vec(any::<u8>(), 0..200)) {
            if let EcsScan::Malformed { stripped, .. } = scan(&raw) {
                prop_assert!(stripped.len() < raw.len());
            }
        }

        /// Any option data in a good message: valid ones round-trip through hickory, others
        /// are cut out and the rest of the message reads.
        #[test]
        fn any_option_data(data in prop::collection::vec(any::<u8>(), 0..24), family in 0u16..4) {
            let mut data = data;
            if data.len() >= 2 { data[..2].copy_from_slice(&family.to_be_bytes()); }
            match scan(&query_with(&[(8, &data)])) {
                EcsScan::Valid(s) => {
                    let mut emitted = Vec::new();
                    let mut enc = hickory_proto::serialize::binary::BinEncoder::new(&mut emitted);
                    hickory_proto::serialize::binary::BinEncodable::emit(&s, &mut enc).unwrap();
                    prop_assert_eq!(emitted, data);
                }
                EcsScan::Malformed { stripped, .. } => {
                    prop_assert!(Message::from_vec(&stripped).is_ok());
                }
                EcsScan::Absent => prop_assert!(false, "an option was there"),
            }
        }
    }
}
