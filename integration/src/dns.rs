//! Asking the authoritative server directly (plain DNS queries over UDP, no resolver, no
//! cache), BIND as an external primary, and nsupdate for changes made by hand.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};

use crate::fed::Fed;
use crate::topo::{TSIG_NAME, TSIG_SECRET};

fn query(server: SocketAddr, name: &str, rtype: RecordType) -> Result<Message, String> {
    query_as(server, name, rtype, None, None)
}

/// A query sent from `source` (any address of 127.0.0.0/8 works on Linux loopback), with an
/// EDNS Client Subnet option (RFC 7871) for `subnet` when given, as `dig -b SOURCE
/// +subnet=NET/LEN` would.
fn query_as(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    source: Option<IpAddr>,
    subnet: Option<(IpAddr, u8)>,
) -> Result<Message, String> {
    let qname = Name::from_ascii(name).map_err(|e| format!("{name}: {e}"))?;
    let mut msg = Message::query();
    msg.add_query(Query::query(qname, rtype));
    msg.metadata.recursion_desired = false;
    if let Some((net, len)) = subnet {
        let mut edns = Edns::new();
        edns.options_mut()
            .insert(EdnsOption::Subnet(ClientSubnet::new(net, len, 0)));
        msg.set_edns(edns);
    }
    let bytes = msg.to_vec().map_err(|e| e.to_string())?;
    let bind: SocketAddr = match (source, server) {
        (Some(ip), _) => (ip, 0).into(),
        (None, SocketAddr::V4(_)) => ([0, 0, 0, 0], 0).into(),
        (None, SocketAddr::V6(_)) => ([0u16; 8], 0).into(),
    };
    let sock = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_millis(700)))
        .map_err(|e| e.to_string())?;
    sock.send_to(&bytes, server)
        .map_err(|e| format!("{server}: {e}"))?;
    let mut buf = [0u8; 4096];
    loop {
        let (n, from) = sock
            .recv_from(&mut buf)
            .map_err(|e| format!("{server}: no answer ({e})"))?;
        if from != server {
            continue;
        }
        let reply = Message::from_vec(&buf[..n]).map_err(|e| format!("{server}: {e}"))?;
        if reply.metadata.id != msg.metadata.id {
            continue;
        }
        return match reply.metadata.response_code {
            ResponseCode::NoError | ResponseCode::NXDomain => Ok(reply),
            rc => Err(format!("{server}: {name} {rtype}: {rc}")),
        };
    }
}

/// The A records of `name` at `server`, sorted; empty when the name has none.
pub fn query_a(server: SocketAddr, name: &str) -> Result<Vec<IpAddr>, String> {
    let reply = query(server, name, RecordType::A)?;
    let mut out: Vec<IpAddr> = reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect();
    out.sort();
    Ok(out)
}

/// The TXT records of `name` at `server`, each one's strings joined; empty when none.
pub fn query_txt(server: SocketAddr, name: &str) -> Result<Vec<String>, String> {
    let reply = query(server, name, RecordType::TXT)?;
    Ok(reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

/// What a client at `source` is answered for `name` (A records, sorted), and the ECS scope
/// prefix length the server answered with when `subnet` was sent (`None`: no ECS option in
/// the answer).
pub fn query_a_as(
    server: SocketAddr,
    name: &str,
    source: IpAddr,
    subnet: Option<(IpAddr, u8)>,
) -> Result<(Vec<IpAddr>, Option<u8>), String> {
    let reply = query_as(server, name, RecordType::A, Some(source), subnet)?;
    let mut out: Vec<IpAddr> = reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect();
    out.sort();
    let scope = reply
        .edns
        .as_ref()
        .and_then(|e| e.option(EdnsCode::Subnet))
        .and_then(|o| match o {
            EdnsOption::Subnet(s) => Some(s.scope_prefix()),
            _ => None,
        });
    Ok((out, scope))
}

/// The zone's SOA serial at `server`.
pub fn query_soa_serial(server: SocketAddr, zone: &str) -> Result<u32, String> {
    let reply = query(server, zone, RecordType::SOA)?;
    reply
        .answers
        .iter()
        .find_map(|r| match &r.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        })
        .ok_or_else(|| format!("{server}: no SOA for {zone}"))
}

/// One answer seen while following a name, and when (from the start of the watch).
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    /// Time since the start given to [`DnsWatch::follow`].
    pub at: Duration,
    /// The addresses answered.
    pub answer: Vec<IpAddr>,
}

/// Follows one name at one authoritative server.
#[derive(Clone, Debug)]
pub struct DnsWatch {
    /// The authoritative server.
    pub server: SocketAddr,
    /// The name (fully qualified).
    pub name: String,
}

impl DnsWatch {
    /// Watches `name` at `server`.
    pub fn new(server: SocketAddr, name: &str) -> DnsWatch {
        DnsWatch {
            server,
            name: name.to_owned(),
        }
    }

    /// The answer now.
    pub fn answer(&self) -> Result<Vec<IpAddr>, String> {
        query_a(self.server, &self.name)
    }

    /// Polls every 50 ms until `done` holds for an answer, and panics when an answer for
    /// which `ok` does not hold shows up, or after `timeout`. Query errors (a server down)
    /// are not answers. Returns every change of answer seen, the last one satisfying `done`.
    pub fn follow(
        &self,
        since: Instant,
        timeout: Duration,
        ok: impl Fn(&[IpAddr]) -> bool,
        done: impl Fn(&[IpAddr]) -> bool,
    ) -> Vec<Seen> {
        let mut seen: Vec<Seen> = Vec::new();
        let deadline = Instant::now() + timeout;
        loop {
            let last_err = match self.answer() {
                Ok(answer) => {
                    if seen.last().is_none_or(|s| s.answer != answer) {
                        seen.push(Seen {
                            at: since.elapsed(),
                            answer: answer.clone(),
                        });
                    }
                    assert!(
                        ok(&answer),
                        "{} at {}: unexpected answer {answer:?}; answers so far: {seen:?}",
                        self.name,
                        self.server
                    );
                    if done(&answer) {
                        return seen;
                    }
                    None
                }
                Err(e) => Some(e),
            };
            assert!(
                Instant::now() < deadline,
                "{} at {}: timed out after {timeout:?}; answers so far: {seen:?}; last query: {}",
                self.name,
                self.server,
                last_err.as_deref().unwrap_or("answered")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the answer is exactly `want` (any order); returns the time since `since`.
    pub fn wait_answer(&self, want: &[IpAddr], since: Instant) -> Duration {
        let want = crate::addrs(want);
        let seen = self.follow(since, crate::PATIENCE, |_| true, |a| a == want.as_slice());
        seen.last().expect("at least one answer").at
    }

    /// Waits for the first successful answer.
    pub fn first_answer(&self) -> Vec<IpAddr> {
        let seen = self.follow(Instant::now(), crate::PATIENCE, |_| true, |_| true);
        seen.last().expect("one answer").answer.clone()
    }

    /// For `dur`, every successful answer must be `want`.
    pub fn hold(&self, want: &[IpAddr], dur: Duration) {
        let want = crate::addrs(want);
        let end = Instant::now() + dur;
        let seen = self.follow(
            Instant::now(),
            dur + crate::PATIENCE,
            |a| a == want.as_slice(),
            |_| Instant::now() >= end,
        );
        assert!(seen.iter().all(|s| s.answer == want));
    }
}

/// BIND 9 as the external primary of a zone, run in the foreground by a [`Fed`] (process
/// name `named`), with the suite's TSIG key allowed to update the zone.
pub struct Bind {
    /// Where it answers (UDP and TCP).
    pub addr: SocketAddr,
    named: PathBuf,
    dir: PathBuf,
    zone: String,
    /// Its process name in the [`Fed`].
    name: String,
    /// The views it serves the zone in (none: the zone alone).
    views: Vec<String>,
}

/// The names of the views in a BIND configuration (`view "eu" {`).
fn view_names(conf: &str) -> Vec<String> {
    conf.lines()
        .filter_map(|l| l.strip_prefix("view \""))
        .filter_map(|l| l.split('"').next())
        .map(str::to_owned)
        .collect()
}

impl Bind {
    /// Writes the configuration and the zone file (SOA and NS only) and starts named on
    /// 127.0.0.1 and a free port: named listens only on addresses configured on an
    /// interface, so not on the rest of 127.0.0.0/8.
    pub fn start(fed: &mut Fed, named: &Path, zone: &str) -> Bind {
        Bind::start_as(fed, named, zone, "named", None)
    }

    /// Like [`Bind::start`], as process `name` (several BIND servers in one federation).
    /// With `views`, the zone is served in the views it gives (the output of `fedlb
    /// dns-config bind … --zone-dir <dir>`, where [`Bind::dir_for`] tells the directory):
    /// each view's zone file is written before named starts, as an operator would.
    pub fn start_as(
        fed: &mut Fed,
        named: &Path,
        zone: &str,
        name: &str,
        views: Option<&str>,
    ) -> Bind {
        let addr = free_loopback_port();
        let dir = Bind::dir_for(fed, name);
        std::fs::create_dir_all(&dir).expect("creating the BIND directory");
        let bind = Bind {
            addr,
            named: named.to_owned(),
            dir,
            zone: zone.trim_end_matches('.').to_owned(),
            name: name.to_owned(),
            views: views.map(view_names).unwrap_or_default(),
        };
        bind.write_zone_file();
        let d = bind.dir.display();
        let zones = match views {
            Some(views) => views.to_owned(),
            None => format!(
                r#"key "{TSIG_NAME}" {{ algorithm hmac-sha256; secret "{TSIG_SECRET}"; }};
zone "{zone}" {{
    type primary;
    file "{d}/zone.db";
    update-policy {{ grant {TSIG_NAME} zonesub ANY; }};
}};
"#,
                zone = bind.zone
            ),
        };
        let conf = format!(
            r#"options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile none;
    listen-on port {port} {{ {ip}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
}};
controls {{ }};
{zones}"#,
            port = addr.port(),
            ip = addr.ip(),
        );
        std::fs::write(bind.dir.join("named.conf"), conf).expect("writing named.conf");
        let args = vec![
            "-g".into(),
            "-c".into(),
            bind.dir.join("named.conf").into_os_string(),
        ];
        fed.spawn(name, &bind.named, &args, &[]);
        bind.wait_ready(fed);
        bind
    }

    /// The directory of BIND server `name` of `fed` (configuration and zone files).
    pub fn dir_for(fed: &Fed, name: &str) -> PathBuf {
        fed.dir().join(name)
    }

    fn write_zone_file(&self) {
        let z = &self.zone;
        let text = format!(
            "$TTL 300\n{z}.\tIN\tSOA\tns1.{z}. hostmaster.{z}. ( 1 3600 600 86400 300 )\n{z}.\tIN\tNS\tns1.{z}.\nns1.{z}.\tIN\tA\t127.0.0.1\n"
        );
        if self.views.is_empty() {
            std::fs::write(self.dir.join("zone.db"), &text).expect("writing zone.db");
        }
        for view in &self.views {
            std::fs::write(self.dir.join(format!("{z}.{view}.db")), &text)
                .expect("writing a view's zone file");
        }
    }

    fn wait_ready(&self, fed: &mut Fed) {
        crate::wait_for("named to answer", crate::PATIENCE, || {
            assert!(
                fed.is_running(&self.name),
                "{} exited:\n{}",
                self.name,
                fed.log(&self.name)
            );
            query_soa_serial(self.addr, &self.zone).ok()
        });
    }

    /// Stops named at once (SIGKILL): the DNS server is down.
    pub fn kill(&self, fed: &mut Fed) {
        fed.kill(&self.name);
    }

    /// Starts named again. With `reset`, its data is first replaced by the original zone
    /// file (journal removed), as when a server is restored from an old backup.
    pub fn start_again(&self, fed: &mut Fed, reset: bool) {
        if reset {
            let _ = std::fs::remove_file(self.dir.join("zone.db.jnl"));
            for view in &self.views {
                let _ = std::fs::remove_file(self.dir.join(format!("{}.{view}.db.jnl", self.zone)));
            }
            self.write_zone_file();
        }
        fed.start(&self.name);
        self.wait_ready(fed);
    }
}

/// 127.0.0.1 and a port free for both UDP and TCP (bound once, then released).
fn free_loopback_port() -> SocketAddr {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("binding a UDP port");
        let addr = udp.local_addr().expect("local address");
        if std::net::TcpListener::bind(addr).is_ok() {
            return addr;
        }
    }
}

/// Replaces the A records of `fqdn` by `addr` with nsupdate (over TCP, signed with the
/// suite's TSIG key), as an operator would by hand.
pub fn nsupdate_replace(nsupdate: &Path, server: SocketAddr, zone: &str, fqdn: &str, addr: IpAddr) {
    let script = format!(
        "server {} {}\nzone {zone}\nupdate delete {fqdn} A\nupdate add {fqdn} 5 A {addr}\nsend\n",
        server.ip(),
        server.port()
    );
    let mut child = Command::new(nsupdate)
        .arg("-v")
        .arg("-y")
        .arg(format!("hmac-sha256:{TSIG_NAME}:{TSIG_SECRET}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting nsupdate");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("writing to nsupdate");
    let out = child.wait_with_output().expect("waiting for nsupdate");
    assert!(
        out.status.success(),
        "nsupdate failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
