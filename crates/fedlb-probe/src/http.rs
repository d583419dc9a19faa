//! HTTP(S) GET with hyper's HTTP/1 client over tokio-rustls (ring). One connection per run,
//! `Connection: close`: a probe measures what a new client would see.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::header::{CONNECTION, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::{HttpCheck, HttpTarget, ProbeError, Prober, TlsOptions, TlsRoots};

/// Where distributions keep the platform's CA bundle.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// A response, its body cut at the prober's limit.
pub(crate) struct Fetched {
    pub status: u16,
    pub body: Bytes,
    pub elapsed: Duration,
}

/// Runs an HTTP check: the status must be expected and the body must match.
pub(crate) async fn check(
    prober: &Prober,
    target: &str,
    check: &HttpCheck,
) -> Result<Duration, ProbeError> {
    let fetched = fetch(prober, target, &check.target).await?;
    if !check.expect_status.contains(&fetched.status) {
        let (lo, hi) = (check.expect_status.start(), check.expect_status.end());
        let expected = if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}-{hi}")
        };
        return Err(ProbeError::Status {
            target: target.to_owned(),
            status: fetched.status,
            expected,
        });
    }
    if let Some(needle) = &check.body_contains
        && !contains(&fetched.body, needle.as_bytes())
    {
        return Err(ProbeError::BodyMismatch {
            target: target.to_owned(),
            needle: needle.clone(),
        });
    }
    Ok(fetched.elapsed)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// GETs `page` and returns its status and (capped) body.
pub(crate) async fn fetch(
    prober: &Prober,
    target: &str,
    page: &HttpTarget,
) -> Result<Fetched, ProbeError> {
    if !page.path.starts_with('/') {
        return Err(ProbeError::Invalid {
            target: target.to_owned(),
            reason: format!("path {:?} does not start with '/'", page.path),
        });
    }
    let host = host_header(page);
    let tls = match &page.tls {
        Some(opts) => Some((
            prober.tls.config(target, &opts.roots)?,
            server_name(target, opts, &host)?,
        )),
        None => None,
    };
    let request = Request::get(page.path.as_str())
        .header(HOST, host.as_str())
        .header(
            USER_AGENT,
            concat!("fedlb-probe/", env!("CARGO_PKG_VERSION")),
        )
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| ProbeError::Invalid {
            target: target.to_owned(),
            reason: e.to_string().to_lowercase(),
        })?;

    let start = Instant::now();
    let tcp = TcpStream::connect(page.addr)
        .await
        .map_err(|e| ProbeError::from_io(target, e))?;
    let _ = tcp.set_nodelay(true);
    let (status, body) = match tls {
        None => exchange(target, tcp, request, prober.config.body_limit).await?,
        Some((config, name)) => {
            let stream = TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| ProbeError::from_io(target, e))?;
            exchange(target, stream, request, prober.config.body_limit).await?
        }
    };
    Ok(Fetched {
        status,
        body,
        elapsed: start.elapsed(),
    })
}

async fn exchange<S>(
    target: &str,
    io: S,
    request: Request<Empty<Bytes>>,
    limit: usize,
) -> Result<(u16, Bytes), ProbeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| from_hyper(target, e))?;
    let response = async {
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut buf = BytesMut::new();
        while buf.len() < limit {
            let Some(frame) = body.frame().await else {
                break;
            };
            if let Ok(data) = frame?.into_data() {
                let room = limit - buf.len();
                buf.extend_from_slice(&data[..data.len().min(room)]);
            }
        }
        Ok::<_, hyper::Error>((status, buf.freeze()))
    };
    // The connection is driven here rather than spawned, so that a run that times out
    // leaves nothing behind. Its errors reach the response future too.
    let mut response = pin!(response);
    let mut conn = pin!(conn);
    let mut conn_done = false;
    loop {
        tokio::select! {
            r = &mut response => return r.map_err(|e| from_hyper(target, e)),
            _ = &mut conn, if !conn_done => conn_done = true,
        }
    }
}

fn from_hyper(target: &str, e: hyper::Error) -> ProbeError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            let io = match (io.raw_os_error(), io.get_ref()) {
                (Some(code), _) => std::io::Error::from_raw_os_error(code),
                (None, Some(inner)) => std::io::Error::new(io.kind(), inner.to_string()),
                (None, None) => std::io::Error::from(io.kind()),
            };
            return ProbeError::from_io(target, io);
        }
        source = s.source();
    }
    if e.is_incomplete_message() {
        ProbeError::Closed {
            target: target.to_owned(),
        }
    } else {
        ProbeError::BadResponse {
            target: target.to_owned(),
            reason: e.to_string().to_lowercase(),
        }
    }
}

fn host_header(page: &HttpTarget) -> String {
    if let Some(host) = &page.host {
        return host.clone();
    }
    let default_port = if page.tls.is_some() { 443 } else { 80 };
    let ip = match page.addr.ip() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    if page.addr.port() == default_port {
        ip
    } else {
        format!("{ip}:{}", page.addr.port())
    }
}

/// The TLS server name: explicit, else the Host header without a port.
fn server_name(
    target: &str,
    opts: &TlsOptions,
    host: &str,
) -> Result<ServerName<'static>, ProbeError> {
    let name = match &opts.server_name {
        Some(n) => n.as_str(),
        None => strip_port(host),
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(name.to_owned()).map_err(|_| ProbeError::Invalid {
        target: target.to_owned(),
        reason: format!("{name:?} is not a valid tls server name"),
    })
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..=h.len()]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Client configurations per trust choice; building one parses a CA bundle, so runs share
/// them. A failure is not cached: a CA file that appears later is picked up.
#[derive(Default)]
pub(crate) struct TlsCache {
    configs: Mutex<HashMap<TlsRoots, Arc<ClientConfig>>>,
}

impl TlsCache {
    fn config(&self, target: &str, roots: &TlsRoots) -> Result<Arc<ClientConfig>, ProbeError> {
        if let Some(c) = self.lock().get(roots) {
            return Ok(c.clone());
        }
        let config = Arc::new(build_config(roots).map_err(|reason| ProbeError::Tls {
            target: target.to_owned(),
            reason,
        })?);
        self.lock().insert(roots.clone(), config.clone());
        Ok(config)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TlsRoots, Arc<ClientConfig>>> {
        // The map holds finished values only: a panic elsewhere cannot leave it half-built.
        self.configs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn build_config(roots: &TlsRoots) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string().to_lowercase())?;
    let mut config = match roots {
        TlsRoots::CaFile(path) => {
            let store = load_roots(path, true)?;
            builder.with_root_certificates(store).with_no_client_auth()
        }
        TlsRoots::System => {
            let from_env = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
            let path = from_env
                .into_iter()
                .chain(SYSTEM_BUNDLES.iter().map(std::path::PathBuf::from))
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    format!(
                        "no system ca bundle (SSL_CERT_FILE, {}); give a ca file or choose insecure",
                        SYSTEM_BUNDLES.join(", ")
                    )
                })?;
            let store = load_roots(&path, false)?;
            builder.with_root_certificates(store).with_no_client_auth()
        }
        TlsRoots::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Reads the certificates of a PEM file. A CA file given by the operator must parse whole;
/// a system bundle may carry certificates webpki rejects, which are skipped.
fn load_roots(path: &Path, strict: bool) -> Result<RootCertStore, String> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("ca file {shown}: {}", e.to_string().to_lowercase()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("ca file {shown}: {}", e.to_string().to_lowercase()))?;
    let mut store = RootCertStore::empty();
    if strict {
        for cert in certs {
            store
                .add(cert)
                .map_err(|e| format!("ca file {shown}: {}", e.to_string().to_lowercase()))?;
        }
    } else {
        store.add_parsable_certificates(certs);
    }
    if store.is_empty() {
        return Err(format!("ca file {shown}: no certificates"));
    }
    Ok(store)
}

/// `insecure`: any certificate chain is accepted, but the handshake signatures are still
/// checked, so the peer holds the key of the certificate it sent.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_port_keeps_names_and_v6_literals() {
        assert_eq!(strip_port("example.com:8443"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:443"), "[::1]");
        assert_eq!(strip_port("::1"), "::1");
    }

    #[test]
    fn host_header_omits_the_default_port() {
        let mut t = HttpTarget {
            addr: "127.0.0.2:80".parse().unwrap(),
            path: "/".into(),
            host: None,
            tls: None,
        };
        assert_eq!(host_header(&t), "127.0.0.2");
        t.addr = "[::1]:8080".parse().unwrap();
        assert_eq!(host_header(&t), "[::1]:8080");
    }

    #[test]
    fn body_match_is_a_substring_search() {
        assert!(contains(b"status: ok\n", b"ok"));
        assert!(!contains(b"status: degraded", b"ok\n"));
        assert!(contains(b"", b""));
    }
}
