//! Hop count, as `tracepath` measures it, without privileges: UDP datagrams to an unused
//! port with TTL 1, 2, 3…; each router on the way answers "time exceeded", the target
//! itself "port unreachable". The ICMP errors are read from the socket's error queue
//! (`IP_RECVERR`, `recvmsg(MSG_ERRQUEUE)`). TTL `n` goes to port `base + n`, because the
//! queued error carries the original destination: a late answer is never credited to the
//! wrong TTL.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::errno::Errno;
use nix::libc;
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::{ProbeError, ProberConfig};

/// What one queued ICMP error says about the datagram sent with `ttl`.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    ttl: u8,
    from: Option<IpAddr>,
    kind: AnswerKind,
}

#[derive(Debug, PartialEq, Eq)]
enum AnswerKind {
    TimeExceeded,
    PortUnreachable,
    Unreachable { code: u8 },
}

pub(crate) async fn count(
    target: &str,
    ip: IpAddr,
    max_hops: u8,
    config: &ProberConfig,
    timeout: Duration,
) -> Result<u32, ProbeError> {
    let io_err = |e: io::Error| ProbeError::from_io(target, e);
    if max_hops == 0
        || config
            .hop_base_port
            .checked_add(u16::from(max_hops))
            .is_none()
    {
        return Err(ProbeError::Invalid {
            target: target.to_owned(),
            reason: format!(
                "max_hops {max_hops} with base port {} is out of range",
                config.hop_base_port
            ),
        });
    }
    let socket = open(ip).map_err(io_err)?;
    let socket = UdpSocket::from_std(std::net::UdpSocket::from(socket)).map_err(io_err)?;
    let deadline = Instant::now() + timeout;
    let mut answers: Vec<Answer> = Vec::new();

    for ttl in 1..=max_hops {
        let dest = SocketAddr::new(ip, config.hop_base_port + u16::from(ttl));
        let sock = SockRef::from(&socket);
        match ip {
            IpAddr::V4(_) => sock.set_ttl_v4(u32::from(ttl)),
            IpAddr::V6(_) => sock.set_unicast_hops_v6(u32::from(ttl)),
        }
        .map_err(io_err)?;
        send(&socket, dest, config.hop_base_port, &mut answers)
            .await
            .map_err(io_err)?;

        let hop_deadline = deadline.min(Instant::now() + config.hop_wait);
        loop {
            if let Some(result) = verdict(target, ip, &answers) {
                return result;
            }
            if answers.iter().any(|a| a.ttl == ttl) {
                break;
            }
            let Ok(ready) =
                tokio::time::timeout_at(hop_deadline, socket.ready(Interest::ERROR)).await
            else {
                break; // a silent router: it still counts as a hop
            };
            ready.map_err(io_err)?;
            // `try_io` clears the readiness when the queue is drained (WouldBlock).
            match socket.try_io(Interest::ERROR, || {
                drain(&socket, config.hop_base_port, &mut answers)
            }) {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(io_err(e)),
                _ => {}
            }
        }
        tracing::trace!(%target, ttl, "hop probed");
    }
    Err(ProbeError::Unreachable {
        target: target.to_owned(),
        reason: format!("no answer from the target within {max_hops} hops"),
    })
}

fn open(ip: IpAddr) -> io::Result<Socket> {
    let (domain, any) = match ip {
        IpAddr::V4(_) => (Domain::IPV4, IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        IpAddr::V6(_) => (Domain::IPV6, IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::new(any, 0).into())?;
    match ip {
        IpAddr::V4(_) => setsockopt(&socket, sockopt::Ipv4RecvErr, &true),
        IpAddr::V6(_) => setsockopt(&socket, sockopt::Ipv6RecvErr, &true),
    }
    .map_err(io::Error::from)?;
    Ok(socket)
}

/// Sends one datagram. An error the kernel raised for an earlier datagram can fail the
/// send once; it is in the error queue too, so the queue is read and the send retried.
async fn send(
    socket: &UdpSocket,
    dest: SocketAddr,
    base: u16,
    answers: &mut Vec<Answer>,
) -> io::Result<()> {
    let payload = b"fedlb-hops";
    match socket.send_to(payload, dest).await {
        Ok(_) => Ok(()),
        Err(_) => {
            match drain(socket, base, answers) {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                _ => {}
            }
            socket.send_to(payload, dest).await.map(|_| ())
        }
    }
}

/// Whether the walk is over: the lowest TTL at which the target answered (every lower TTL
/// has been waited for, since TTLs are probed in order), or a router saying the target
/// cannot be reached.
fn verdict(target: &str, ip: IpAddr, answers: &[Answer]) -> Option<Result<u32, ProbeError>> {
    let reached = answers
        .iter()
        .filter(|a| a.kind == AnswerKind::PortUnreachable || a.from == Some(ip))
        .map(|a| a.ttl)
        .min();
    if let Some(ttl) = reached {
        return Some(Ok(u32::from(ttl)));
    }
    answers.iter().find_map(|a| match a.kind {
        AnswerKind::Unreachable { code } => Some(Err(ProbeError::Unreachable {
            target: target.to_owned(),
            reason: format!(
                "{} answered ttl {} with destination unreachable (code {code})",
                a.from.map_or("a router".to_owned(), |f| f.to_string()),
                a.ttl
            ),
        })),
        _ => None,
    })
}

/// Reads every queued error, then reports `WouldBlock` (the queue is empty).
fn drain(socket: &UdpSocket, base: u16, answers: &mut Vec<Answer>) -> io::Result<()> {
    let mut data = [0u8; 512];
    let mut control = nix::cmsg_space!(libc::sock_extended_err, libc::sockaddr_in6);
    loop {
        let mut iov = [io::IoSliceMut::new(&mut data)];
        let msg = match recvmsg::<SockaddrStorage>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut control),
            MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(msg) => msg,
            Err(Errno::EAGAIN) => return Err(io::ErrorKind::WouldBlock.into()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let port = msg.address.as_ref().and_then(|a| {
            if let Some(v4) = a.as_sockaddr_in() {
                Some(v4.port())
            } else {
                a.as_sockaddr_in6().map(|v6| v6.port())
            }
        });
        let Some(ttl) = port
            .and_then(|p| p.checked_sub(base))
            .and_then(|t| u8::try_from(t).ok())
        else {
            continue;
        };
        let Ok(cmsgs) = msg.cmsgs() else { continue };
        for cmsg in cmsgs {
            let answer = match cmsg {
                ControlMessageOwned::Ipv4RecvErr(ee, offender)
                    if ee.ee_origin == libc::SO_EE_ORIGIN_ICMP =>
                {
                    let from = offender
                        .map(|o| IpAddr::V4(Ipv4Addr::from(u32::from_be(o.sin_addr.s_addr))));
                    classify(ee.ee_type, ee.ee_code, (11, 3, 3)).map(|kind| Answer {
                        ttl,
                        from,
                        kind,
                    })
                }
                ControlMessageOwned::Ipv6RecvErr(ee, offender)
                    if ee.ee_origin == libc::SO_EE_ORIGIN_ICMP6 =>
                {
                    let from = offender.map(|o| IpAddr::V6(Ipv6Addr::from(o.sin6_addr.s6_addr)));
                    classify(ee.ee_type, ee.ee_code, (3, 1, 4)).map(|kind| Answer {
                        ttl,
                        from,
                        kind,
                    })
                }
                _ => None,
            };
            if let Some(a) = answer {
                tracing::trace!(ttl = a.ttl, from = ?a.from, kind = ?a.kind, "hop answered");
                answers.push(a);
            }
        }
    }
}

/// `(time exceeded type, unreachable type, port unreachable code)` per ICMP version.
fn classify(
    icmp_type: u8,
    code: u8,
    (exceeded, unreach, port): (u8, u8, u8),
) -> Option<AnswerKind> {
    if icmp_type == exceeded {
        Some(AnswerKind::TimeExceeded)
    } else if icmp_type == unreach && code == port {
        Some(AnswerKind::PortUnreachable)
    } else if icmp_type == unreach {
        Some(AnswerKind::Unreachable { code })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(ttl: u8, from: &str, kind: AnswerKind) -> Answer {
        Answer {
            ttl,
            from: Some(from.parse().unwrap()),
            kind,
        }
    }

    #[test]
    fn the_lowest_ttl_reaching_the_target_wins() {
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let answers = vec![
            a(1, "10.0.0.1", AnswerKind::TimeExceeded),
            a(4, "10.0.0.9", AnswerKind::PortUnreachable),
            a(3, "10.0.0.9", AnswerKind::PortUnreachable),
        ];
        assert_eq!(verdict("hops 10.0.0.9", ip, &answers).unwrap().unwrap(), 3);
        assert!(verdict("hops 10.0.0.9", ip, &answers[..1]).is_none());
    }

    #[test]
    fn a_router_saying_unreachable_ends_the_walk() {
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let answers = vec![a(2, "10.0.0.2", AnswerKind::Unreachable { code: 1 })];
        let e = verdict("hops 10.0.0.9", ip, &answers).unwrap().unwrap_err();
        assert_eq!(
            e.to_string(),
            "hops 10.0.0.9: unreachable: 10.0.0.2 answered ttl 2 with destination unreachable (code 1)"
        );
    }

    #[test]
    fn icmp_types_by_version() {
        assert_eq!(classify(11, 0, (11, 3, 3)), Some(AnswerKind::TimeExceeded));
        assert_eq!(
            classify(3, 3, (11, 3, 3)),
            Some(AnswerKind::PortUnreachable)
        );
        assert_eq!(classify(1, 4, (3, 1, 4)), Some(AnswerKind::PortUnreachable));
        assert_eq!(classify(3, 0, (3, 1, 4)), Some(AnswerKind::TimeExceeded));
        assert_eq!(classify(0, 0, (11, 3, 3)), None);
    }
}
