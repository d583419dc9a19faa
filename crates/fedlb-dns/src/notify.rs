//! NOTIFY (RFC 1996) from the embedded server to its secondaries, which hickory-server does
//! not send.
//!
//! After every change of the zone (an UPDATE answered NOERROR, or a start that raised the
//! serial) each secondary gets a NOTIFY for the zone's SOA over UDP, signed with the transfer
//! key when there is one, and resent until the secondary acknowledges it: a secondary told
//! nothing would see the change only at its SOA refresh interval (an hour in fedlb's zone).
//! One task per secondary, so a dead one never delays the others. Changes coalesce: a change
//! while a round is in flight starts a new round once the current attempt ends, never a queue.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::atomic::{AtomicU16, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query, ResponseCode},
    rr::{Name, RecordType, TSigner},
};
use tokio::{net::UdpSocket, sync::watch};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, warn};

/// How long each attempt waits for the acknowledgement: five tries over 7.75 s in all. The
/// first is short because on a LAN a lost datagram is the only reason for no answer, and the
/// 1 s goal (a secondary follows a change within 1 s) leaves room for one resend.
const ATTEMPTS: [Duration; 5] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// Tells the secondaries about changes; cheap to call on every change.
pub(crate) struct Notifier {
    generation: watch::Sender<u64>,
}

impl Notifier {
    /// Starts one task per secondary (stopped by `stop`). Each sends a first NOTIFY at once:
    /// the zone may have changed while the server was down.
    pub(crate) fn start(
        zone: Name,
        secondaries: &[SocketAddr],
        source: IpAddr,
        signer: Option<TSigner>,
        tasks: &TaskTracker,
        stop: &CancellationToken,
    ) -> Self {
        let (generation, _) = watch::channel(0);
        for &secondary in secondaries {
            let mut changes = generation.subscribe();
            changes.mark_changed();
            let target = Target {
                zone: zone.clone(),
                secondary,
                source: source_for(source, secondary),
                signer: signer.clone(),
            };
            let stop = stop.clone();
            tasks.spawn(async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = target.run(changes) => {}
                }
            });
        }
        Self { generation }
    }

    /// The zone changed: notify every secondary.
    pub(crate) fn changed(&self) {
        self.generation.send_modify(|g| *g = g.wrapping_add(1));
    }
}

/// The local address to send from: the server's own address, so that the secondary, which
/// accepts NOTIFY only from its primaries' addresses, recognises it.
fn source_for(listen: IpAddr, secondary: SocketAddr) -> SocketAddr {
    match (listen, secondary) {
        (IpAddr::V4(ip), SocketAddr::V4(_)) if !ip.is_unspecified() => (ip, 0).into(),
        (IpAddr::V6(ip), SocketAddr::V6(_)) if !ip.is_unspecified() => (ip, 0).into(),
        (_, SocketAddr::V4(_)) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        (_, SocketAddr::V6(_)) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

struct Target {
    zone: Name,
    secondary: SocketAddr,
    source: SocketAddr,
    signer: Option<TSigner>,
}

impl Target {
    async fn run(self, mut changes: watch::Receiver<u64>) {
        while changes.changed().await.is_ok() {
            changes.borrow_and_update();
            match self.round(&changes).await {
                Ok(Some(ResponseCode::NoError)) => {
                    debug!(zone = %self.zone, secondary = %self.secondary, "notify acknowledged");
                }
                Ok(Some(rcode)) => {
                    warn!(zone = %self.zone, secondary = %self.secondary, %rcode,
                        "secondary refused the notify; does it serve the zone with this server as its primary?");
                }
                // a newer change came in: the next round notifies it
                Ok(None) if changes.has_changed().unwrap_or(false) => {}
                Ok(None) => {
                    warn!(zone = %self.zone, secondary = %self.secondary, tries = ATTEMPTS.len(),
                        "notify not acknowledged; the secondary sees the change at its next refresh");
                }
                Err(error) => {
                    warn!(zone = %self.zone, secondary = %self.secondary, %error, "notify not sent");
                }
            }
        }
    }

    /// Sends until acknowledged (the answer's code), all attempts are spent or a newer change
    /// is pending (`None`).
    async fn round(&self, changes: &watch::Receiver<u64>) -> Result<Option<ResponseCode>, String> {
        let socket = UdpSocket::bind(self.source)
            .await
            .map_err(|e| format!("binding {}: {e}", self.source))?;
        let mut buf = vec![0u8; 4096];
        for wait in ATTEMPTS {
            let id = next_id();
            let wire = notify_message(&self.zone, id, self.signer.as_ref())?;
            if let Err(e) = socket.send_to(&wire, self.secondary).await {
                debug!(secondary = %self.secondary, error = %e, "notify send failed");
            }
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let got = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await;
                let Ok(Ok((n, from))) = got else { break };
                if from != self.secondary {
                    continue;
                }
                let Ok(reply) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                if reply.metadata.id == id
                    && reply.metadata.message_type == MessageType::Response
                    && reply.metadata.op_code == OpCode::Notify
                {
                    return Ok(Some(reply.metadata.response_code));
                }
            }
            if changes.has_changed().unwrap_or(false) {
                return Ok(None);
            }
        }
        Ok(None)
    }
}

/// A NOTIFY for `zone`'s SOA (RFC 1996 §3.7: AA set, the SOA in the question).
pub(crate) fn notify_message(
    zone: &Name,
    id: u16,
    signer: Option<&TSigner>,
) -> Result<Vec<u8>, String> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Notify);
    msg.metadata.authoritative = true;
    msg.add_query(Query::query(zone.clone(), RecordType::SOA));
    if let Some(signer) = signer {
        msg.finalize(signer, unix_now())
            .map_err(|e| format!("signing notify: {e}"))?;
    }
    msg.to_vec().map_err(|e| format!("encoding notify: {e}"))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Message ids: a counter started from the clock. The acknowledgement must also come from the
/// secondary's address to the ephemeral port, so a guessable id costs nothing but a missed
/// resend.
fn next_id() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u16)
        .unwrap_or_default();
    NEXT.fetch_add(1, Ordering::Relaxed).wrapping_add(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_is_an_authoritative_soa_question() {
        let zone = crate::fqdn("example.test").unwrap();
        let wire = notify_message(&zone, 7, None).unwrap();
        let msg = Message::from_vec(&wire).unwrap();
        assert_eq!(msg.metadata.op_code, OpCode::Notify);
        assert!(msg.metadata.authoritative);
        assert_eq!(msg.queries[0].query_type(), RecordType::SOA);
        assert_eq!(msg.queries[0].name(), &zone);
    }

    #[test]
    fn sends_from_the_servers_own_address() {
        let secondary: SocketAddr = "127.0.0.2:53".parse().unwrap();
        assert_eq!(
            source_for("127.0.0.1".parse().unwrap(), secondary),
            "127.0.0.1:0".parse().unwrap()
        );
        assert_eq!(
            source_for("0.0.0.0".parse().unwrap(), secondary),
            "0.0.0.0:0".parse().unwrap()
        );
        assert_eq!(
            source_for("127.0.0.1".parse().unwrap(), "[::1]:53".parse().unwrap()),
            "[::]:0".parse().unwrap()
        );
    }

    #[tokio::test]
    async fn resends_until_acknowledged() {
        let secondary = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = secondary.local_addr().unwrap();
        let tasks = TaskTracker::new();
        let stop = CancellationToken::new();
        let zone = crate::fqdn("example.test").unwrap();
        let _notifier = Notifier::start(
            zone,
            &[addr],
            "127.0.0.1".parse().unwrap(),
            None,
            &tasks,
            &stop,
        );
        let mut buf = [0u8; 512];
        // drop the first one, answer the second
        let (n, _) = secondary.recv_from(&mut buf).await.unwrap();
        let first = Message::from_vec(&buf[..n]).unwrap();
        let (n, from) = secondary.recv_from(&mut buf).await.unwrap();
        let second = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(second.metadata.op_code, OpCode::Notify);
        assert_ne!(first.metadata.id, second.metadata.id);
        let mut ack = Message::new(second.metadata.id, MessageType::Response, OpCode::Notify);
        ack.add_query(second.queries[0].clone());
        secondary
            .send_to(&ack.to_vec().unwrap(), from)
            .await
            .unwrap();
        // acknowledged: nothing more within the next attempt's wait
        let more =
            tokio::time::timeout(Duration::from_millis(700), secondary.recv_from(&mut buf)).await;
        assert!(more.is_err(), "no resend after the acknowledgement");
        stop.cancel();
    }
}
