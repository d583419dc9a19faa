//! Plain UDP DNS queries to the authoritative server, for polling the published answer.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};

/// Asks one server for the A records of one name, again and again.
pub struct Poller {
    sock: UdpSocket,
    server: SocketAddr,
    name: Name,
    id: u16,
}

impl Poller {
    /// A poller for `name` at `server`.
    pub fn new(server: SocketAddr, name: &str) -> anyhow::Result<Poller> {
        let sock = UdpSocket::bind(SocketAddr::new(
            match server {
                SocketAddr::V4(_) => IpAddr::from([127, 0, 0, 1]),
                SocketAddr::V6(_) => IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
            },
            0,
        ))?;
        Ok(Poller {
            sock,
            server,
            name: Name::from_str(name)?,
            id: rand::random(),
        })
    }

    /// The current answer (sorted), or an error after `timeout`.
    pub fn query(&mut self, timeout: Duration) -> anyhow::Result<Vec<IpAddr>> {
        self.id = self.id.wrapping_add(1);
        let mut q = Message::query();
        q.metadata.id = self.id;
        q.add_query(Query::query(self.name.clone(), RecordType::A));
        self.sock.send_to(&q.to_vec()?, self.server)?;
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 1500];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            anyhow::ensure!(
                !left.is_zero(),
                "no answer from {} in {timeout:?}",
                self.server
            );
            self.sock.set_read_timeout(Some(left))?;
            let Ok((n, _)) = self.sock.recv_from(&mut buf) else {
                continue;
            };
            let Ok(m) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            if m.metadata.id != self.id {
                continue; // a late answer to an earlier query
            }
            let mut out: Vec<IpAddr> = m
                .answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })
                .collect();
            out.sort();
            return Ok(out);
        }
    }

    /// Polls every `every` until `pred` holds for the answer; returns when it first held
    /// (the moment the answer arrived) and the answer. Errors count as "not yet".
    pub fn wait(
        &mut self,
        every: Duration,
        timeout: Duration,
        pred: impl Fn(&[IpAddr]) -> bool,
    ) -> Option<(Instant, Vec<IpAddr>)> {
        let deadline = Instant::now() + timeout;
        let mut next = Instant::now();
        while Instant::now() < deadline {
            if let Ok(a) = self.query(every.max(Duration::from_millis(50)))
                && pred(&a)
            {
                return Some((Instant::now(), a));
            }
            next += every;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else {
                next = now;
            }
        }
        None
    }
}
