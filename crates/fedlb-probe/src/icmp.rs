//! ICMP echo: one request, one matching reply; measures the round-trip time.
//!
//! The unprivileged "ping" datagram socket is used where `net.ipv4.ping_group_range`
//! admits the process's group (the kernel then owns the identifier and routes replies to
//! this socket only); otherwise a raw socket, which needs root or `CAP_NET_RAW` and sees
//! every ICMP packet, so replies are matched on identifier, sequence and payload.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::{IcmpMode, ProbeError};

const RAW_HINT: &str = "a raw socket needs root or CAP_NET_RAW";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Datagram,
    Raw,
}

pub(crate) async fn echo(
    target: &str,
    ip: IpAddr,
    mode: IcmpMode,
    seq: u16,
) -> Result<Duration, ProbeError> {
    let io_err = |e| ProbeError::from_io(target, e);
    let (socket, kind) = open(target, ip, mode)?;
    socket.set_nonblocking(true).map_err(io_err)?;
    let socket = UdpSocket::from_std(std::net::UdpSocket::from(socket)).map_err(io_err)?;

    let v6 = ip.is_ipv6();
    // The low bits of the pid tell this process's raw-socket replies from other pingers';
    // the sequence number and payload tell this run's from the process's other runs.
    let ident = (std::process::id() & 0xffff) as u16;
    let payload = payload(seq);
    let request = echo_request(v6, ident, seq, &payload);

    let start = Instant::now();
    socket
        .send_to(&request, SocketAddr::new(ip, 0))
        .await
        .map_err(io_err)?;
    let mut buf = [0u8; 2048];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await.map_err(io_err)?;
        if from.ip() != ip {
            continue;
        }
        let Some(reply) = parse_reply(&buf[..n], v6, kind == Kind::Raw) else {
            continue;
        };
        // A datagram socket's identifier is the kernel's choice, and only our replies
        // reach it.
        let ident_ok = kind == Kind::Datagram || reply.ident == ident;
        if ident_ok && reply.seq == seq && reply.payload == payload {
            return Ok(start.elapsed());
        }
    }
}

fn open(target: &str, ip: IpAddr, mode: IcmpMode) -> Result<(Socket, Kind), ProbeError> {
    let (domain, protocol) = match ip {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
    };
    let datagram = || Socket::new(domain, Type::DGRAM, Some(protocol));
    let raw = || Socket::new(domain, Type::RAW, Some(protocol));
    let denied = |reason: String| ProbeError::Permission {
        target: target.to_owned(),
        reason,
    };
    let other = |e| ProbeError::from_io(target, e);
    match mode {
        IcmpMode::Datagram => match datagram() {
            Ok(s) => Ok((s, Kind::Datagram)),
            Err(e) if is_denied(&e) => Err(denied(datagram_hint())),
            Err(e) => Err(other(e)),
        },
        IcmpMode::Raw => match raw() {
            Ok(s) => Ok((s, Kind::Raw)),
            Err(e) if is_denied(&e) => Err(denied(RAW_HINT.to_owned())),
            Err(e) => Err(other(e)),
        },
        IcmpMode::Auto => match datagram() {
            Ok(s) => Ok((s, Kind::Datagram)),
            Err(e) if is_denied(&e) => match raw() {
                Ok(s) => Ok((s, Kind::Raw)),
                Err(e) if is_denied(&e) => Err(denied(format!(
                    "no icmp socket allowed: {}; {RAW_HINT}",
                    datagram_hint()
                ))),
                Err(e) => Err(other(e)),
            },
            Err(e) => Err(other(e)),
        },
    }
}

fn is_denied(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied
}

fn datagram_hint() -> String {
    match std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range") {
        Ok(range) => format!(
            "an unprivileged icmp datagram socket needs net.ipv4.ping_group_range \
             (now \"{}\") to include the process's group",
            range.split_whitespace().collect::<Vec<_>>().join(" ")
        ),
        Err(_) => "an unprivileged icmp datagram socket needs net.ipv4.ping_group_range \
                   to include the process's group"
            .to_owned(),
    }
}

fn payload(seq: u16) -> [u8; 16] {
    let mut p = *b"fedlb-probe-\0\0\0\0";
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    p[12..14].copy_from_slice(&seq.to_be_bytes());
    p[14..16].copy_from_slice(&(nanos as u16).to_be_bytes());
    p
}

fn echo_request(v6: bool, ident: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(8 + payload.len());
    p.extend_from_slice(&[if v6 { 128 } else { 8 }, 0, 0, 0]);
    p.extend_from_slice(&ident.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(payload);
    // ICMPv6 checksums cover a pseudo-header only the kernel knows; it fills them in.
    if !v6 {
        let sum = checksum(&p);
        p[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    p
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

struct Reply<'a> {
    ident: u16,
    seq: u16,
    payload: &'a [u8],
}

/// An echo reply, from a datagram socket (ICMP only) or a raw one (IPv4 header first).
fn parse_reply(buf: &[u8], v6: bool, raw: bool) -> Option<Reply<'_>> {
    let icmp = if raw && !v6 {
        let ihl = usize::from(buf.first()? & 0x0f) * 4;
        if *buf.get(9)? != 1 {
            return None;
        }
        buf.get(ihl..)?
    } else {
        buf
    };
    let reply_type = if v6 { 129 } else { 0 };
    if icmp.len() < 8 || icmp[0] != reply_type || icmp[1] != 0 {
        return None;
    }
    Some(Reply {
        ident: u16::from_be_bytes([icmp[4], icmp[5]]),
        seq: u16::from_be_bytes([icmp[6], icmp[7]]),
        payload: &icmp[8..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_request_verifies_to_zero() {
        let p = echo_request(false, 0x1234, 7, b"abc");
        assert_eq!(checksum(&p), 0);
        assert_eq!(&p[..2], &[8, 0]);
    }

    #[test]
    fn raw_v4_replies_skip_the_ip_header() {
        let mut reply = echo_request(false, 0x1234, 7, b"xyz");
        reply[0] = 0;
        let mut packet = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
        packet.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 1]);
        packet.extend_from_slice(&reply);
        let r = parse_reply(&packet, false, true).unwrap();
        assert_eq!((r.ident, r.seq, r.payload), (0x1234, 7, &b"xyz"[..]));
        // An echo request (our own, looped back to a raw socket) is not a reply.
        assert!(parse_reply(&echo_request(false, 1, 1, b""), false, false).is_none());
    }
}
