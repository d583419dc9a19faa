//! Real targets for the probes: a tiny HTTP/1.1 server (plain or TLS), a private CA,
//! network namespaces, and the skip rule for tests that need privileges.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// What the test server does with a request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Answers with this status and body, then closes.
    Respond(u16, &'static str),
    /// Reads the request and never answers.
    Never,
    /// Reads the request and resets the connection.
    Reset,
}

/// A request as the server saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    pub path: String,
    pub host: Option<String>,
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves HTTP/1.1 on `ip`, port chosen by the kernel; TLS when an acceptor is given.
pub async fn serve(ip: &str, tls: Option<TlsAcceptor>, reply: Reply) -> TestServer {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (log, tls, reply) = (log.clone(), tls.clone(), reply.clone());
            tokio::spawn(async move {
                match tls {
                    None => {
                        let mut tcp = tcp;
                        if handle(&mut tcp, &log, &reply).await {
                            tcp.set_zero_linger().unwrap();
                        }
                    }
                    Some(acceptor) => {
                        let Ok(mut stream) = acceptor.accept(tcp).await else {
                            return;
                        };
                        if handle(&mut stream, &log, &reply).await {
                            stream.get_ref().0.set_zero_linger().unwrap();
                        }
                    }
                }
            });
        }
    });
    TestServer { addr, seen, task }
}

/// Reads one request and carries out `reply`; true if the connection is to be reset.
async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    log: &Mutex<Vec<Seen>>,
    reply: &Reply,
) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.lines();
    let path = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .to_owned();
    let host = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.trim().to_owned());
    log.lock().unwrap().push(Seen { path, host });
    match reply {
        Reply::Respond(status, body) => {
            let response = format!(
                "HTTP/1.1 {status} Whatever\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(response.as_bytes()).await;
            let _ = s.shutdown().await;
            false
        }
        Reply::Never => {
            std::future::pending::<()>().await;
            false
        }
        Reply::Reset => true,
    }
}

/// A private CA and a server certificate for `names`.
pub struct Pki {
    pub ca_pem: String,
    pub acceptor: TlsAcceptor,
}

pub fn pki(ca_name: &str, names: &[&str]) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let leaf = CertificateParams::new(names)
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        acceptor: TlsAcceptor::from(Arc::new(config)),
    }
}

/// A port on `ip` where nothing listens (bound, then released).
pub async fn closed_port(ip: &str) -> SocketAddr {
    let l = TcpListener::bind((ip, 0)).await.unwrap();
    l.local_addr().unwrap()
}

/// Connects `n` clients to `addr` and keeps them.
pub async fn connect_many(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(TcpStream::connect(addr).await.unwrap());
    }
    v
}

/// A test that needs privileges it lacks: skipped loudly, or failed under CI.
pub fn skip(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{why}; CI is set, so this test may not be skipped");
    }
    eprintln!("\n*** SKIPPED: {why} ***\n");
}

/// Network namespaces made by one test, removed on drop.
pub struct Netns {
    names: Vec<String>,
}

impl Netns {
    /// Creates namespaces named `fedlb-<pid>-<tag>` with their loopback up; `Err` says why
    /// it cannot (no `ip`, not root).
    pub fn create(tags: &[&str]) -> Result<Netns, String> {
        let mut ns = Netns { names: Vec::new() };
        for tag in tags {
            let name = format!("fedlb-{}-{tag}", std::process::id());
            ip(&["netns", "add", &name])
                .map_err(|e| format!("cannot create a network namespace: {e}"))?;
            ns.names.push(name.clone());
            ip(&["-n", &name, "link", "set", "lo", "up"])?;
        }
        Ok(ns)
    }

    /// The full name of namespace `tag`.
    pub fn name(&self, tag: &str) -> String {
        format!("fedlb-{}-{tag}", std::process::id())
    }

    /// Runs `ip -n <tag> ARGS…`.
    pub fn ip(&self, tag: &str, args: &[&str]) {
        let name = self.name(tag);
        let mut full = vec!["-n", &name];
        full.extend_from_slice(args);
        ip(&full).unwrap();
    }

    /// Sets a sysctl inside namespace `tag`.
    pub fn sysctl(&self, tag: &str, key: &str, value: &str) {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let status = Command::new("ip")
            .args(["netns", "exec", &self.name(tag), "sh", "-c"])
            .arg(format!("echo '{value}' > {path}"))
            .status()
            .unwrap();
        assert!(status.success(), "sysctl {key}={value} in {tag}");
    }

    /// A veth pair between two namespaces, addressed and up.
    pub fn link(
        &self,
        (a, a_if, a_addr): (&str, &str, &str),
        (b, b_if, b_addr): (&str, &str, &str),
    ) {
        let b_name = self.name(b);
        self.ip(
            a,
            &[
                "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b_name,
            ],
        );
        self.ip(a, &["addr", "add", a_addr, "dev", a_if]);
        self.ip(b, &["addr", "add", b_addr, "dev", b_if]);
        self.ip(a, &["link", "set", a_if, "up"]);
        self.ip(b, &["link", "set", b_if, "up"]);
    }

    /// Runs `f` on a thread inside namespace `tag`, with a current-thread runtime: sockets
    /// it opens belong to that namespace.
    pub fn run_in<F, R>(&self, tag: &str, f: F) -> R
    where
        F: std::future::Future<Output = R> + Send,
        R: Send,
    {
        let path = format!("/run/netns/{}", self.name(tag));
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = std::fs::File::open(&path).unwrap();
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(f)
            })
            .join()
            .unwrap()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e} (is iproute2 installed?)", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
