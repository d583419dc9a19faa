//! DNS over TCP: signed RFC 2136 UPDATEs and the queries that read back what a server holds.
//!
//! fedlb sends UPDATEs itself over a TCP connection instead of through hickory's `Client`, because
//! the client turns every unsigned error answer (BADSIG, BADKEY, PowerDNS's REFUSED) into an
//! opaque "truncated HMAC" / "TSIG signature record not found" error. Here the real response
//! code and TSIG error are read first, and the signature of the response is checked after.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query, ResponseCode, UpdateMessage},
    rr::{
        DNSClass, Name, RData, Record, RecordType, TSigner,
        rdata::{A, AAAA, TXT, tsig::TsigError},
    },
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    Error,
    answers::{Family, RrData, RrKey, ZoneState},
    diff::Change,
};

/// An open TCP connection to one DNS server.
pub(crate) struct Conn {
    stream: TcpStream,
    server: SocketAddr,
    timeout: Duration,
}

impl Conn {
    pub(crate) async fn connect(
        server: SocketAddr,
        timeout: Duration,
        during: &'static str,
    ) -> Result<Self, Error> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(server)).await {
            Err(_) => {
                return Err(Error::Timeout {
                    server,
                    timeout,
                    during,
                });
            }
            Ok(Err(source)) => {
                return Err(Error::Unreachable {
                    server,
                    during,
                    source,
                });
            }
            Ok(Ok(s)) => s,
        };
        stream.set_nodelay(true).ok();
        Ok(Self {
            stream,
            server,
            timeout,
        })
    }

    /// Sends one message and returns the raw response with the same ID.
    async fn exchange(
        &mut self,
        wire: &[u8],
        id: u16,
        during: &'static str,
    ) -> Result<Vec<u8>, Error> {
        let server = self.server;
        let timeout = self.timeout;
        let len = u16::try_from(wire.len()).map_err(|_| Error::BadResponse {
            server,
            reason: format!(
                "message of {} bytes does not fit in one TCP DNS message",
                wire.len()
            ),
        })?;
        let io = async {
            let mut framed = Vec::with_capacity(wire.len() + 2);
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(wire);
            self.stream.write_all(&framed).await?;
            loop {
                let mut len = [0u8; 2];
                self.stream.read_exact(&mut len).await?;
                let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
                self.stream.read_exact(&mut buf).await?;
                if buf.len() >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
                    return Ok::<_, std::io::Error>(buf);
                }
            }
        };
        match tokio::time::timeout(timeout, io).await {
            Err(_) => Err(Error::Timeout {
                server,
                timeout,
                during,
            }),
            Ok(Err(source)) => Err(Error::Unreachable {
                server,
                during,
                source,
            }),
            Ok(Ok(buf)) => Ok(buf),
        }
    }

    /// Queries one name/type without recursion, signed with `signer` if given (a server with
    /// views answers a signed query from the view of its key); returns the parsed response.
    /// The response's signature, if any, is not checked: reads are not trusted for more than
    /// what the server says it holds.
    async fn query(
        &mut self,
        name: &Name,
        rtype: RecordType,
        signer: Option<&TSigner>,
    ) -> Result<Message, Error> {
        let mut msg = Message::query();
        msg.metadata.recursion_desired = false;
        msg.add_query(Query::query(name.clone(), rtype));
        if let Some(signer) = signer {
            msg.finalize(signer, unix_now())
                .map_err(|e| Error::BadResponse {
                    server: self.server,
                    reason: format!(
                        "cannot sign query with key \"{}\": {e}",
                        signer.signer_name()
                    ),
                })?;
        }
        let id = msg.metadata.id;
        let wire = msg.to_vec().map_err(|e| Error::BadResponse {
            server: self.server,
            reason: format!("cannot encode query: {e}"),
        })?;
        let buf = self.exchange(&wire, id, "reading records").await?;
        Message::from_vec(&buf).map_err(|e| Error::BadResponse {
            server: self.server,
            reason: format!("undecodable answer to {name} {rtype}: {e}"),
        })
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// What a read of the server returned.
pub(crate) struct ReadBack {
    pub(crate) state: ZoneState,
    pub(crate) serial: u32,
}

/// Reads the zone's SOA serial and the A/AAAA RRsets of `names` from `server`.
pub(crate) async fn read_state<'a>(
    server: SocketAddr,
    zone: &Name,
    names: impl IntoIterator<Item = &'a Name>,
    timeout: Duration,
    signer: Option<&TSigner>,
) -> Result<ReadBack, Error> {
    let mut conn = Conn::connect(server, timeout, "reading records").await?;
    let soa = conn.query(zone, RecordType::SOA, signer).await?;
    let serial = soa.answers.iter().find_map(|r| match &r.data {
        RData::SOA(soa) if r.name == *zone => Some(soa.serial),
        _ => None,
    });
    let serial = match (
        soa.metadata.response_code,
        soa.metadata.authoritative,
        serial,
    ) {
        (ResponseCode::NoError, true, Some(serial)) => serial,
        (rcode, ..) => {
            return Err(Error::NotAuthoritative {
                server,
                zone: zone.to_string(),
                rcode: format!("{} to a query for its SOA", rcode_name(rcode)),
            });
        }
    };
    let mut state = ZoneState::default();
    for name in names {
        for family in Family::ALL {
            let answer = conn.query(name, family.record_type(), signer).await?;
            match answer.metadata.response_code {
                ResponseCode::NoError | ResponseCode::NXDomain => {}
                rcode => {
                    return Err(Error::Server {
                        server,
                        zone: zone.to_string(),
                        what: "query",
                        rcode: format!("{} for {name} {family}", rcode_name(rcode)),
                    });
                }
            }
            let mut ttl = None::<u32>;
            let mut addrs = BTreeSet::new();
            for record in answer.answers.iter().filter(|r| r.name == *name) {
                let addr = match &record.data {
                    RData::A(a) => IpAddr::V4(a.0),
                    RData::AAAA(a) => IpAddr::V6(a.0),
                    _ => continue,
                };
                addrs.insert(addr);
                ttl = Some(ttl.map_or(record.ttl, |t| t.min(record.ttl)));
            }
            if let Some(ttl) = ttl {
                state.insert(RrKey::new(name.clone(), family), RrData { ttl, addrs });
            }
        }
    }
    Ok(ReadBack { state, serial })
}

/// Reads the marker TXT record (its strings joined) next to each of `names`
/// ([`crate::rfc2136::marker_name`]); `None` where there is none.
pub(crate) async fn read_markers<'a>(
    server: SocketAddr,
    zone: &Name,
    names: impl IntoIterator<Item = &'a Name>,
    timeout: Duration,
    signer: Option<&TSigner>,
) -> Result<BTreeMap<Name, Option<String>>, Error> {
    let mut conn = Conn::connect(server, timeout, "reading markers").await?;
    let mut out = BTreeMap::new();
    for name in names {
        let marker = crate::rfc2136::marker_name(name);
        let answer = conn.query(&marker, RecordType::TXT, signer).await?;
        match answer.metadata.response_code {
            ResponseCode::NoError | ResponseCode::NXDomain => {}
            rcode => {
                return Err(Error::Server {
                    server,
                    zone: zone.to_string(),
                    what: "query",
                    rcode: format!("{} for {marker} TXT", rcode_name(rcode)),
                });
            }
        }
        let text = answer
            .answers
            .iter()
            .filter(|r| r.name == marker)
            .find_map(|r| match &r.data {
                RData::TXT(t) => Some(
                    t.txt_data
                        .iter()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .collect::<String>(),
                ),
                _ => None,
            });
        out.insert(name.clone(), text);
    }
    Ok(out)
}

/// A marker TXT RRset to write next to an answer, guarded by what was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MarkerChange {
    /// The marker's owner name (`_fedlb.<name>`).
    pub(crate) name: Name,
    /// The text read (the prerequisite): `None` for "no marker".
    pub(crate) old: Option<String>,
    /// The text to write.
    pub(crate) new: String,
    /// Its TTL.
    pub(crate) ttl: u32,
}

/// Adds marker changes to an UPDATE, each guarded like an answer: "RRset does not exist"
/// when none was read, else "RRset exists (value dependent)" with the text read; then the
/// RRset is replaced. A peer that wrote in between makes the whole UPDATE fail (YXRRSET /
/// NXRRSET), and the publisher re-reads and judges again.
pub(crate) fn add_markers(msg: &mut Message, changes: &[MarkerChange]) {
    for m in changes {
        match &m.old {
            None => {
                let mut pre = Record::update0(m.name.clone(), 0, RecordType::TXT);
                pre.dns_class = DNSClass::NONE;
                msg.add_pre_requisite(pre);
            }
            Some(old) => {
                let pre =
                    Record::from_rdata(m.name.clone(), 0, RData::TXT(TXT::new(vec![old.clone()])));
                msg.add_pre_requisite(pre);
            }
        }
        let mut delete = Record::update0(m.name.clone(), 0, RecordType::TXT);
        delete.dns_class = DNSClass::ANY;
        msg.add_update(delete);
        msg.add_update(Record::from_rdata(
            m.name.clone(),
            m.ttl,
            RData::TXT(TXT::new(vec![m.new.clone()])),
        ));
    }
}

fn addr_record(name: &Name, ttl: u32, addr: IpAddr) -> Record {
    let data = match addr {
        IpAddr::V4(a) => RData::A(A(a)),
        IpAddr::V6(a) => RData::AAAA(AAAA(a)),
    };
    Record::from_rdata(name.clone(), ttl, data)
}

/// Builds one UPDATE for `zone` carrying all `changes`, each guarded by a prerequisite on the
/// RRset fedlb believes is published (RFC 2136 §2.4):
///
/// - create: "RRset does not exist" (class NONE);
/// - replace / delete: "RRset exists (value dependent)" with the old records (class IN, TTL 0);
///
/// and each one replacing the RRset atomically: delete the RRset (class ANY), then add the new
/// records.
pub(crate) fn build_update(zone: &Name, changes: &[Change]) -> Message {
    let mut msg = Message::query();
    msg.metadata.op_code = OpCode::Update;
    msg.metadata.recursion_desired = false;
    let mut zq = Query::query(zone.clone(), RecordType::SOA);
    zq.set_query_class(DNSClass::IN);
    msg.add_zone(zq);
    for change in changes {
        let key = change.key();
        let rtype = key.family.record_type();
        match change {
            Change::Create { .. } => {
                let mut pre = Record::update0(key.name.clone(), 0, rtype);
                pre.dns_class = DNSClass::NONE;
                msg.add_pre_requisite(pre);
            }
            Change::Replace { old, .. } | Change::Delete { old, .. } => {
                for addr in &old.addrs {
                    msg.add_pre_requisite(addr_record(&key.name, 0, *addr));
                }
            }
        }
        let mut delete = Record::update0(key.name.clone(), 0, rtype);
        delete.dns_class = DNSClass::ANY;
        msg.add_update(delete);
        if let Change::Create { new, .. } | Change::Replace { new, .. } = change {
            for addr in &new.addrs {
                msg.add_update(addr_record(&key.name, new.ttl, *addr));
            }
        }
    }
    msg
}

/// Uppercase mnemonic of a response code, as operators know it from dig.
pub(crate) fn rcode_name(rcode: ResponseCode) -> String {
    match rcode {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::YXDomain => "YXDOMAIN".into(),
        ResponseCode::YXRRSet => "YXRRSET".into(),
        ResponseCode::NXRRSet => "NXRRSET".into(),
        ResponseCode::NotAuth => "NOTAUTH".into(),
        ResponseCode::NotZone => "NOTZONE".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

fn tsig_hint(error: TsigError, key: &str) -> (String, String) {
    match error {
        TsigError::BadSig => (
            "BADSIG".into(),
            format!(
                "the server knows key \"{key}\" but computed another signature: the secrets differ; copy the same secret (base64 from tsig-keygen) to fedlb and to the server"
            ),
        ),
        TsigError::BadKey => (
            "BADKEY".into(),
            format!(
                "the server does not accept key \"{key}\" with this algorithm: add the key to the server (same name and algorithm) and allow it to update the zone (Knot also answers BADKEY when its ACL denies the key or address)"
            ),
        ),
        TsigError::BadTime => (
            "BADTIME".into(),
            format!(
                "the clocks of fedlb and the server differ by more than {} s: synchronize both with NTP",
                crate::tsig::FUDGE_SECS
            ),
        ),
        TsigError::BadTrunc => (
            "BADTRUNC".into(),
            "the server wants a truncated MAC; configure full-length HMAC".into(),
        ),
        TsigError::Unknown(code) => (format!("TSIG error {code}"), "see the server log".into()),
    }
}

/// Signs and sends one UPDATE and classifies the answer. `Ok(())` means the server applied it.
pub(crate) async fn send_update(
    server: SocketAddr,
    zone: &Name,
    signer: &TSigner,
    mut msg: Message,
    timeout: Duration,
) -> Result<(), Error> {
    let zone_text = zone.to_string();
    let key = signer.signer_name().to_string();
    let now = unix_now();
    let bad = |reason: String| Error::BadResponse { server, reason };
    let mut verifier = msg
        .finalize(signer, now)
        .map_err(|e| bad(format!("cannot sign update with key \"{key}\": {e}")))?
        .ok_or_else(|| bad("tsig signer returned no verifier".into()))?;
    let wire = msg
        .to_vec()
        .map_err(|e| bad(format!("cannot encode update: {e}")))?;
    let mut conn = Conn::connect(server, timeout, "sending an update").await?;
    let buf = conn
        .exchange(&wire, msg.metadata.id, "sending an update")
        .await?;
    let resp = Message::from_vec(&buf)
        .map_err(|e| bad(format!("undecodable answer to an update: {e}")))?;
    if resp.metadata.message_type != MessageType::Response
        || resp.metadata.op_code != OpCode::Update
    {
        return Err(bad("answer is not an UPDATE response".into()));
    }
    let rcode = resp.metadata.response_code;
    let tsig_error = resp.signature().and_then(|s| s.data.error);
    if let Some(error) = tsig_error {
        let (code, hint) = tsig_hint(error, &key);
        return Err(Error::Tsig {
            server,
            key,
            code,
            hint,
        });
    }
    let signed = match resp.signature() {
        None => false,
        Some(_) => match verifier.verify(&buf) {
            Ok(_) => true,
            Err(e) if rcode == ResponseCode::NoError => {
                return Err(bad(format!(
                    "NOERROR answer signed with key \"{key}\" does not verify ({e}); not trusted"
                )));
            }
            Err(_) => false,
        },
    };
    match rcode {
        ResponseCode::NoError if signed => Ok(()),
        ResponseCode::NoError => Err(bad(format!(
            "NOERROR answer to an update signed with key \"{key}\" carries no signature; not trusted"
        ))),
        ResponseCode::NXRRSet
        | ResponseCode::YXRRSet
        | ResponseCode::NXDomain
        | ResponseCode::YXDomain => Err(Error::Conflict {
            server,
            zone: zone_text,
            rcode: rcode_name(rcode),
        }),
        ResponseCode::Refused => Err(Error::Refused {
            server,
            zone: zone_text,
            signed,
            hint: if signed {
                format!(
                    "the server's update policy does not let key \"{key}\" change these names (BIND update-policy / allow-update, Knot acl, PowerDNS TSIG-ALLOW-DNSUPDATE)"
                )
            } else {
                format!(
                    "unsigned refusal: a policy denial, or (PowerDNS) key \"{key}\" failed to validate: check its name, algorithm and secret, the clocks, and the server's allow list (PowerDNS allow-dnsupdate-from and TSIG-ALLOW-DNSUPDATE)"
                )
            },
        }),
        ResponseCode::NotAuth => Err(Error::NotAuthoritative {
            server,
            zone: zone_text,
            rcode: rcode_name(rcode),
        }),
        ResponseCode::NotZone => Err(Error::NotZone {
            server,
            zone: zone_text,
        }),
        other => Err(Error::Server {
            server,
            zone: zone_text,
            what: "update",
            rcode: rcode_name(other),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answers::fqdn;

    fn data(ttl: u32, addrs: &[&str]) -> RrData {
        RrData {
            ttl,
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn one_update_carries_prerequisites_and_atomic_replacements() {
        let zone = fqdn("example.test").unwrap();
        let www = RrKey::new(fqdn("www.example.test").unwrap(), Family::V4);
        let api = RrKey::new(fqdn("api.example.test").unwrap(), Family::V6);
        let changes = [
            Change::Replace {
                key: www.clone(),
                old: data(30, &["192.0.2.1"]),
                new: data(60, &["192.0.2.2", "192.0.2.3"]),
            },
            Change::Create {
                key: api,
                new: data(30, &["2001:db8::1"]),
            },
        ];
        let msg = build_update(&zone, &changes);
        assert_eq!(msg.metadata.op_code, OpCode::Update);
        assert_eq!(msg.zones().len(), 1);
        assert_eq!(msg.zones()[0].name(), &zone);
        let pre: Vec<String> = msg
            .prerequisites()
            .iter()
            .map(|r| format!("{} {} {} {}", r.name, r.dns_class, r.record_type(), r.ttl))
            .collect();
        assert_eq!(
            pre,
            ["www.example.test. IN A 0", "api.example.test. NONE AAAA 0"]
        );
        let upd: Vec<String> = msg
            .updates()
            .iter()
            .map(|r| format!("{} {} {} {}", r.name, r.dns_class, r.record_type(), r.ttl))
            .collect();
        assert_eq!(
            upd,
            [
                "www.example.test. ANY A 0",
                "www.example.test. IN A 60",
                "www.example.test. IN A 60",
                "api.example.test. ANY AAAA 0",
                "api.example.test. IN AAAA 30",
            ]
        );
        // round trip through the wire format
        let back = Message::from_vec(&msg.to_vec().unwrap()).unwrap();
        assert_eq!(back.updates().len(), 5);
    }

    #[test]
    fn tsig_hints_say_what_to_fix() {
        let (code, hint) = tsig_hint(TsigError::BadTime, "k.");
        assert_eq!(code, "BADTIME");
        assert!(
            hint.contains("more than 300 s") && hint.contains("NTP"),
            "{hint}"
        );
        let (code, hint) = tsig_hint(TsigError::BadKey, "k.");
        assert_eq!(code, "BADKEY");
        assert!(hint.contains("add the key to the server"), "{hint}");
    }

    #[tokio::test]
    async fn silent_server_times_out_and_closed_port_is_unreachable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent = listener.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let (_sock, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let zone = fqdn("example.test").unwrap();
        let timeout = Duration::from_millis(200);
        let err = read_state(silent, &zone, [], timeout, None)
            .await
            .err()
            .unwrap();
        assert_eq!(err.class(), crate::FailureClass::Timeout, "{err}");
        assert!(err.to_string().contains(&silent.to_string()));
        hold.abort();

        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let err = read_state(closed, &zone, [], timeout, None)
            .await
            .err()
            .unwrap();
        assert_eq!(err.class(), crate::FailureClass::Unreachable, "{err}");
    }
}
