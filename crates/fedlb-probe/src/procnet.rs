//! The kernel's TCP socket tables, `/proc/net/tcp` and `/proc/net/tcp6`, of this
//! process's network namespace.

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
/// a service on this machine), over IPv4 and IPv6. Reads whole tables: call it off the
/// async threads.
pub fn count_established(port: u16) -> io::Result<u64> {
    let mut n = 0;
    for table in TABLES {
        let Some(reader) = open(table)? else { continue };
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
/// The kernel lists listening sockets before all others, so the common case (it listens)
/// reads only the head of each table, which the kernel generates lazily: cheap enough to
/// poll every few tens of milliseconds on a busy server. A miss is confirmed by reading
/// the tables whole, so that nothing rests on that order.
pub fn is_listening(port: u16) -> io::Result<bool> {
    for whole in [false, true] {
        for table in TABLES {
            let Some(reader) = open(table)? else { continue };
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

/// A table, or `None` where it does not exist (IPv6 disabled).
fn open(path: &str) -> io::Result<Option<BufReader<File>>> {
    match File::open(path) {
        Ok(f) => Ok(Some(BufReader::with_capacity(16 * 1024, f))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
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
}
