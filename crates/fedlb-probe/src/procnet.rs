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
use std::net::SocketAddr;

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

/// Whether a socket listens on the port of `addr` (any address, IPv4 or IPv6), as
/// [`is_listening`] says, asked the cheap way first: the kernel looks up the listener that
/// would take a connection to `addr` (a hash look-up, no table walked) and only when it
/// finds none are the listening tables walked for the port. So a live service — every
/// look but the one that sees it gone — costs one look-up.
pub fn is_listening_at(addr: SocketAddr) -> io::Result<bool> {
    if let Ok(true) = diag::lookup(addr, LISTEN) {
        return Ok(true);
    }
    is_listening(addr.port())
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

/// `sock_diag` over netlink (linux/inet_diag.h). Each thread keeps one netlink socket and
/// one answer buffer (a watcher looks 20 times a second: opening a socket per look cost
/// more than the look). Three requests:
///
/// - a *lookup* of the listener that would take a connection to one address: the kernel
///   finds it through its hash tables, as for an incoming SYN, and walks nothing;
/// - a *dump* of one family's sockets in one state on one port: the kernel walks the
///   table of that state (every bucket of it, however few sockets it holds);
/// - the same dump through the older `TCPDIAG_GETSOCK` request, which covers IPv4 and IPv6
///   in one walk (the newer request names a single family, so two walks).
mod diag {
    use std::cell::{Cell, RefCell};
    use std::io;
    use std::net::{IpAddr, SocketAddr};
    use std::os::fd::{AsRawFd, OwnedFd};

    use nix::sys::socket::{
        AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto,
        socket,
    };

    const TCPDIAG_GETSOCK: u16 = 18;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLM_F_REQUEST: u16 = 0x1;
    const NLM_F_DUMP: u16 = 0x300;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const AF_UNSPEC: u8 = 0;
    const AF_INET: u8 = 2;
    const AF_INET6: u8 = 10;
    const IPPROTO_TCP: u8 = 6;
    const ENOENT: i32 = 2;
    /// nlmsghdr (16 bytes) + inet_diag_req_v2 (56 bytes).
    const REQUEST_LEN: usize = 72;
    /// nlmsghdr (16 bytes) + inet_diag_req (60 bytes), the request both families share.
    const COMPAT_REQUEST_LEN: usize = 76;
    /// Offset of `id.idiag_sport` in an answer's payload (inet_diag_msg).
    const ANSWER_SPORT: usize = 4;

    /// What this thread asked the kernel so far (tests read it to see which path ran).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub(super) struct Asked {
        /// Netlink sockets opened.
        pub sockets: u64,
        /// Lookups (no table walked).
        pub lookups: u64,
        /// Walks of a kernel socket table.
        pub walks: u64,
    }

    struct Link {
        fd: OwnedFd,
        buf: Vec<u8>,
        seq: u32,
    }

    thread_local! {
        static LINK: RefCell<Option<Link>> = const { RefCell::new(None) };
        static ASKED: Cell<Asked> = const { Cell::new(Asked { sockets: 0, lookups: 0, walks: 0 }) };
    }

    #[cfg(test)]
    pub(super) fn asked() -> Asked {
        ASKED.with(Cell::get)
    }

    fn note(f: impl FnOnce(&mut Asked)) {
        ASKED.with(|a| {
            let mut v = a.get();
            f(&mut v);
            a.set(v);
        });
    }

    /// Runs `f` on this thread's link, opening it if needed; a link that failed is closed
    /// (it may hold the rest of an answer), and the next call opens a new one.
    fn with_link<T>(f: impl FnOnce(&mut Link) -> io::Result<T>) -> io::Result<T> {
        LINK.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                let fd = socket(
                    AddressFamily::Netlink,
                    SockType::Raw,
                    SockFlag::SOCK_CLOEXEC,
                    SockProtocol::NetlinkSockDiag,
                )?;
                note(|a| a.sockets += 1);
                *slot = Some(Link {
                    fd,
                    buf: vec![0u8; 32 * 1024],
                    seq: 0,
                });
            }
            let link = slot.as_mut().expect("opened above");
            let r = f(link);
            if r.is_err() {
                *slot = None;
            }
            r
        })
    }

    impl Link {
        /// Sends `req` (its sequence number set here) and hands each answer's type and
        /// payload to `each` until the kernel says done; a lookup's lone answer ends it.
        fn ask(
            &mut self,
            req: &mut [u8],
            single: bool,
            mut each: impl FnMut(u16, &[u8]),
        ) -> io::Result<()> {
            self.seq = self.seq.wrapping_add(1);
            req[8..12].copy_from_slice(&self.seq.to_ne_bytes());
            sendto(
                self.fd.as_raw_fd(),
                req,
                &NetlinkAddr::new(0, 0),
                MsgFlags::empty(),
            )?;
            loop {
                let len = recv(self.fd.as_raw_fd(), &mut self.buf, MsgFlags::empty())?;
                let buf = &self.buf[..len];
                let mut at = 0;
                while at + 16 <= len {
                    let msg_len =
                        u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4")) as usize;
                    let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().expect("2"));
                    let seq = u32::from_ne_bytes(buf[at + 8..at + 12].try_into().expect("4"));
                    if msg_len < 16 || at + msg_len > len {
                        return Err(io::Error::other("sock_diag: truncated answer"));
                    }
                    let payload = &buf[at + 16..at + msg_len];
                    at += (msg_len + 3) & !3;
                    if seq != self.seq {
                        continue;
                    }
                    match kind {
                        NLMSG_DONE => return Ok(()),
                        NLMSG_ERROR => {
                            let code = payload
                                .get(..4)
                                .map(|b| i32::from_ne_bytes(b.try_into().expect("4")))
                                .unwrap_or(0);
                            return if code == 0 {
                                Ok(())
                            } else {
                                Err(io::Error::from_raw_os_error(-code))
                            };
                        }
                        _ => {
                            each(kind, payload);
                            if single {
                                return Ok(());
                            }
                        }
                    }
                }
            }
        }
    }

    /// Whether the payload of an answer is a socket in `state` on local port `port` (the
    /// kernel filters on both; checked again all the same).
    fn matches(payload: &[u8], state: u8, port: u16) -> bool {
        let sport = payload
            .get(ANSWER_SPORT..ANSWER_SPORT + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]));
        payload.get(1) == Some(&state) && sport == Some(port)
    }

    /// Whether a socket in state `state` would take a connection to `local`, found as the
    /// kernel finds the socket of an incoming packet (no table walked). `Ok(false)` when
    /// the kernel finds none — which a listener bound to a device or in a reuseport group
    /// with a BPF selector can also give: callers confirm a miss with [`count`].
    pub(super) fn lookup(local: SocketAddr, state: u8) -> io::Result<bool> {
        let mut req = [0u8; REQUEST_LEN];
        header(&mut req, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST);
        req[17] = IPPROTO_TCP;
        req[20..24].copy_from_slice(&(1u32 << state).to_ne_bytes());
        req[24..26].copy_from_slice(&local.port().to_be_bytes());
        match local.ip() {
            IpAddr::V4(v4) => {
                req[16] = AF_INET;
                req[28..32].copy_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                req[16] = AF_INET6;
                req[28..44].copy_from_slice(&v6.octets());
            }
        }
        // no interface; INET_DIAG_NOCOOKIE: any socket, not one known one
        req[64..72].fill(0xff);
        note(|a| a.lookups += 1);
        let mut found = false;
        let r = with_link(|link| {
            link.ask(&mut req, true, |_, payload| {
                found = matches(payload, state, local.port());
            })
        });
        match r {
            Ok(()) => Ok(found),
            Err(e) if e.raw_os_error() == Some(ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sockets in TCP state `state` (kernel numbering) with local port `port`, IPv4 and
    /// IPv6: one walk of the table when the kernel takes the shared request, else one per
    /// family.
    pub(super) fn count(port: u16, state: u8) -> io::Result<u64> {
        match count_both(port, state) {
            Ok(n) => Ok(n),
            Err(_) => {
                let mut n = 0;
                for family in [AF_INET, AF_INET6] {
                    n += count_family(port, state, family)?;
                }
                Ok(n)
            }
        }
    }

    fn count_both(port: u16, state: u8) -> io::Result<u64> {
        // inet_diag_req: family, src_len, dst_len, ext, id (48 bytes), states, dbs
        let mut req = [0u8; COMPAT_REQUEST_LEN];
        header(&mut req, TCPDIAG_GETSOCK, NLM_F_REQUEST | NLM_F_DUMP);
        req[16] = AF_UNSPEC;
        req[20..22].copy_from_slice(&port.to_be_bytes());
        req[68..72].copy_from_slice(&(1u32 << state).to_ne_bytes());
        note(|a| a.walks += 1);
        let mut n = 0;
        with_link(|link| {
            link.ask(&mut req, false, |kind, payload| {
                if kind == TCPDIAG_GETSOCK && matches(payload, state, port) {
                    n += 1;
                }
            })
        })?;
        Ok(n)
    }

    fn count_family(port: u16, state: u8, family: u8) -> io::Result<u64> {
        let mut req = [0u8; REQUEST_LEN];
        header(&mut req, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP);
        // inet_diag_req_v2: family, protocol, ext, pad, states, then id (sport first)
        req[16] = family;
        req[17] = IPPROTO_TCP;
        req[20..24].copy_from_slice(&(1u32 << state).to_ne_bytes());
        req[24..26].copy_from_slice(&port.to_be_bytes());
        note(|a| a.walks += 1);
        let mut n = 0;
        with_link(|link| {
            link.ask(&mut req, false, |kind, payload| {
                if kind == SOCK_DIAG_BY_FAMILY && matches(payload, state, port) {
                    n += 1;
                }
            })
        })?;
        Ok(n)
    }

    fn header(req: &mut [u8], kind: u16, flags: u16) {
        let len = req.len() as u32;
        req[0..4].copy_from_slice(&len.to_ne_bytes());
        req[4..6].copy_from_slice(&kind.to_ne_bytes());
        req[6..8].copy_from_slice(&flags.to_ne_bytes());
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

    #[test]
    fn a_live_listener_is_looked_up_without_walking_a_table() {
        let listener = std::net::TcpListener::bind("127.0.0.9:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let before = diag::asked();
        assert!(is_listening_at(addr).unwrap());
        let after = diag::asked();
        assert_eq!(after.walks, before.walks, "a live listener walks no table");
        assert_eq!(after.lookups, before.lookups + 1);
        // a listener on every address takes a connection to this one too
        let any = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let on_any = SocketAddr::from(([127, 0, 0, 9], any.local_addr().unwrap().port()));
        assert!(is_listening_at(on_any).unwrap());
        assert_eq!(diag::asked().walks, before.walks);
        // gone: the look-up misses and the tables confirm it
        drop(listener);
        assert!(!is_listening_at(addr).unwrap());
        assert!(diag::asked().walks > before.walks);
    }

    #[test]
    fn a_listener_on_another_address_of_the_port_still_counts() {
        // what the port-wide check says, whichever address the look-up asks first
        let listener = std::net::TcpListener::bind("127.0.0.10:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let elsewhere = SocketAddr::from(([127, 0, 0, 11], port));
        assert!(is_listening_at(elsewhere).unwrap());
        assert_eq!(
            is_listening_at(elsewhere).unwrap(),
            is_listening(port).unwrap()
        );
    }

    #[test]
    fn looks_share_one_netlink_socket_per_thread() {
        let listener = std::net::TcpListener::bind("127.0.0.9:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let before = diag::asked();
        for _ in 0..100 {
            assert!(is_listening_at(addr).unwrap());
            assert!(is_listening(addr.port()).unwrap());
        }
        assert_eq!(count_established(addr.port()).unwrap(), 0);
        assert!(diag::asked().sockets - before.sockets <= 1);
    }

    #[test]
    fn established_connections_of_both_families_are_counted_in_one_walk() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = v4.local_addr().unwrap().port();
        let Ok(v6) = std::net::TcpListener::bind(("::1", port)) else {
            eprintln!("no IPv6 loopback here: skipping");
            return;
        };
        let _c4 = std::net::TcpStream::connect(v4.local_addr().unwrap()).unwrap();
        let _c6 = std::net::TcpStream::connect(v6.local_addr().unwrap()).unwrap();
        let (_s4, _) = v4.accept().unwrap();
        let (_s6, _) = v6.accept().unwrap();
        let before = diag::asked();
        assert_eq!(count_established(port).unwrap(), 2);
        assert_eq!(diag::asked().walks - before.walks, 1);
    }
}
