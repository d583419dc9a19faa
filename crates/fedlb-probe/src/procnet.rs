//! The kernel's TCP socket tables of this process's network namespace: asked through
//! netlink `sock_diag` (the kernel filters by port and state and formats nothing), else
//! read from `/proc/net/tcp` and `/proc/net/tcp6`.
//!
//! Why not the files alone: every read of them walks the kernel's whole established-socket
//! hash table, however few sockets it holds, which made a listen watcher looking 20 times
//! a second the largest cost of an idle agent. A `sock_diag` dump of listeners walks only
//! the listening table.

use std::fs::File;
use std::io::{self, BufRead, BufReader};

const TABLES: [&str; 2] = ["/proc/net/tcp", "/proc/net/tcp6"];
const ESTABLISHED: u8 = 0x01;
const LISTEN: u8 = 0x0a;

/// One row: local port and state.
fn parse_row(line: &str) -> Option<(u16, u8)> {
    let mut fields = line.split_whitespace();
    let _slot = fields.next()?;
    let local = fields.next()?;
    let _remote = fields.next()?;
    let state = u8::from_str_radix(fields.next()?, 16).ok()?;
    let port = u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()?;
    Some((port, state))
}

/// Established connections whose local port is `port` (the server side of connections to
/// a service on this machine), over IPv4 and IPv6. Walks the whole table of connections:
/// call it off the async threads.
pub fn count_established(port: u16) -> io::Result<u64> {
    if let Ok(n) = diag::count(port, ESTABLISHED) {
        return Ok(n);
    }
    let mut n = 0;
    for table in TABLES {
        let Some(reader) = open(table, WHOLE_BUFFER)? else {
            continue;
        };
        for line in reader.lines().skip(1) {
            if parse_row(&line?) == Some((port, ESTABLISHED)) {
                n += 1;
            }
        }
    }
    Ok(n)
}

/// Whether a socket listens on `port` (any address, IPv4 or IPv6).
///
/// Through `sock_diag` the kernel walks only its listening table. Without it, the files
/// list listening sockets before all others, so the common case (it listens) reads only
/// the head of each table; a miss is confirmed by reading the tables whole, so that
/// nothing rests on that order.
pub fn is_listening(port: u16) -> io::Result<bool> {
    if let Ok(n) = diag::count(port, LISTEN) {
        return Ok(n > 0);
    }
    for whole in [false, true] {
        for table in TABLES {
            let cap = if whole { WHOLE_BUFFER } else { HEAD_BUFFER };
            let Some(reader) = open(table, cap)? else {
                continue;
            };
            for line in reader.lines().skip(1) {
                let Some((p, state)) = parse_row(&line?) else {
                    continue;
                };
                if state == LISTEN && p == port {
                    return Ok(true);
                }
                if state != LISTEN && !whole {
                    break;
                }
            }
        }
    }
    Ok(false)
}

/// Read size for a whole table.
const WHOLE_BUFFER: usize = 16 * 1024;
/// Read size for the head of a table: the kernel formats as many rows as the read asks
/// for (about 150 bytes each), so a look at the listeners asks for a few rows only.
const HEAD_BUFFER: usize = 2 * 1024;

/// A table, or `None` where it does not exist (IPv6 disabled).
fn open(path: &str, capacity: usize) -> io::Result<Option<BufReader<File>>> {
    match File::open(path) {
        Ok(f) => Ok(Some(BufReader::with_capacity(capacity, f))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// `sock_diag` over netlink (linux/inet_diag.h): one dump request per address family,
/// filtered by the kernel on state and local port; the answers are counted.
mod diag {
    use std::io;
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{
        AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto,
        socket,
    };

    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLM_F_REQUEST: u16 = 0x1;
    const NLM_F_DUMP: u16 = 0x300;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const AF_INET: u8 = 2;
    const AF_INET6: u8 = 10;
    const IPPROTO_TCP: u8 = 6;
    /// nlmsghdr (16 bytes) + inet_diag_req_v2 (56 bytes).
    const REQUEST_LEN: usize = 72;
    /// Offset of `id.idiag_sport` in an answer's payload (inet_diag_msg).
    const ANSWER_SPORT: usize = 4;

    /// Sockets in TCP state `state` (kernel numbering) with local port `port`.
    pub(super) fn count(port: u16, state: u8) -> io::Result<u64> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkSockDiag,
        )?;
        let kernel = NetlinkAddr::new(0, 0);
        let mut buf = vec![0u8; 32 * 1024];
        let mut n = 0;
        for (seq, family) in [(1u32, AF_INET), (2, AF_INET6)] {
            let req = request(seq, family, state, port);
            sendto(fd.as_raw_fd(), &req, &kernel, MsgFlags::empty())?;
            'dump: loop {
                let len = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
                let mut at = 0;
                while at + 16 <= len {
                    let msg_len =
                        u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4")) as usize;
                    let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().expect("2"));
                    if msg_len < 16 || at + msg_len > len {
                        return Err(io::Error::other("sock_diag: truncated answer"));
                    }
                    match kind {
                        NLMSG_DONE => break 'dump,
                        NLMSG_ERROR => {
                            let code = buf
                                .get(at + 16..at + 20)
                                .map(|b| i32::from_ne_bytes(b.try_into().expect("4")))
                                .unwrap_or(0);
                            if code == 0 {
                                break 'dump;
                            }
                            return Err(io::Error::from_raw_os_error(-code));
                        }
                        SOCK_DIAG_BY_FAMILY => {
                            let payload = &buf[at + 16..at + msg_len];
                            // the kernel filters on the port; checked again all the same
                            let sport = payload
                                .get(ANSWER_SPORT..ANSWER_SPORT + 2)
                                .map(|b| u16::from_be_bytes([b[0], b[1]]));
                            if payload.get(1) == Some(&state) && sport == Some(port) {
                                n += 1;
                            }
                        }
                        _ => {}
                    }
                    at += (msg_len + 3) & !3;
                }
            }
        }
        Ok(n)
    }

    fn request(seq: u32, family: u8, state: u8, port: u16) -> [u8; REQUEST_LEN] {
        let mut r = [0u8; REQUEST_LEN];
        r[0..4].copy_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
        r[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        r[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        r[8..12].copy_from_slice(&seq.to_ne_bytes());
        // inet_diag_req_v2: family, protocol, ext, pad, states, then id (sport first)
        r[16] = family;
        r[17] = IPPROTO_TCP;
        r[20..24].copy_from_slice(&(1u32 << state).to_ne_bytes());
        r[24..26].copy_from_slice(&port.to_be_bytes());
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse_port_and_state() {
        let v4 = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0";
        assert_eq!(parse_row(v4), Some((8080, LISTEN)));
        let v6 = "   1: 00000000000000000000000001000000:0050 00000000000000000000000001000000:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0 20 4 30 10 -1";
        assert_eq!(parse_row(v6), Some((80, ESTABLISHED)));
        assert_eq!(
            parse_row("  sl  local_address rem_address   st tx_queue"),
            None
        );
    }

    #[test]
    fn sock_diag_agrees_with_the_files() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_server_side, _) = listener.accept().unwrap();
        assert_eq!(diag::count(port, LISTEN).unwrap(), 1);
        assert_eq!(diag::count(port, ESTABLISHED).unwrap(), 1);
        assert!(is_listening(port).unwrap());
        assert_eq!(count_established(port).unwrap(), 1);
        drop(client);
        drop(listener);
        assert!(!is_listening(port).unwrap());
    }
}
