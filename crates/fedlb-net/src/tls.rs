//! rustls and quinn configurations: TLS 1.3 only, ring only, mutual authentication against
//! the federation CA.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;

use crate::pki::{ca_cert_path, check_key_permissions, node_cert_path, node_key_path, read_file};
use crate::verify::{ExplainClientCerts, ExplainServerCert, Problem, owner, validity};
use crate::wire::MAX_MESSAGE_LEN;
use crate::{NetError, PeerIdentity};

/// The ALPN protocol id; the protocol version is negotiated in the hello, not here, so that
/// a mismatch gets a message naming both versions instead of a bare TLS alert.
pub const ALPN: &[u8] = b"fedlb";

/// The least time between two stateless resets from one endpoint.
pub const STATELESS_RESET_INTERVAL: Duration = Duration::from_micros(100);

/// Connection-level settings shared by servers and clients.
#[derive(Clone, Debug)]
pub struct TransportSettings {
    /// How often a quiet connection sends a keep-alive. Must be well under `idle_timeout`.
    pub keep_alive_interval: Duration,
    /// A connection with no packets for this long is dead (the smaller of both ends' values).
    pub idle_timeout: Duration,
    /// Concurrently open message streams a peer may have; a client keeps one per class
    /// (routine, urgent) open for the life of its connection.
    pub max_concurrent_uni_streams: u32,
    /// Receive window per stream. The default, [`MAX_MESSAGE_LEN`], lets any message
    /// arrive without waiting for window credit.
    pub stream_receive_window: u32,
    /// Receive window per connection: the bound on unread data buffered for one peer. The
    /// default holds one largest message on each of a client's two streams.
    pub receive_window: u32,
    /// How long the server waits for a client's hello after the TLS handshake.
    pub hello_timeout: Duration,
    /// How long a client waits for the handshake and the server's hello.
    pub connect_timeout: Duration,
}

impl Default for TransportSettings {
    fn default() -> Self {
        TransportSettings {
            keep_alive_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            max_concurrent_uni_streams: 4,
            stream_receive_window: MAX_MESSAGE_LEN as u32,
            receive_window: 2 * MAX_MESSAGE_LEN as u32,
            hello_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// A node's credentials: the federation CA it trusts, its own certificate and key, and the
/// identity read from that certificate.
pub struct NodeTls {
    identity: PeerIdentity,
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    not_after: SystemTime,
    ca_not_after: SystemTime,
    /// How messages name the CA: its file, or its common name.
    ca_label: Arc<str>,
}

impl Clone for NodeTls {
    fn clone(&self) -> Self {
        NodeTls {
            identity: self.identity.clone(),
            roots: self.roots.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            not_after: self.not_after,
            ca_not_after: self.ca_not_after,
            ca_label: self.ca_label.clone(),
        }
    }
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTls")
            .field("identity", &self.identity)
            .field("not_after", &self.not_after)
            .field("ca_not_after", &self.ca_not_after)
            .finish_non_exhaustive()
    }
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl NodeTls {
    /// Builds credentials from PEM text, and checks now that the certificate chains to the
    /// CA, is currently valid and carries the EKUs of its role: a bad file fails at start,
    /// not at the first connection.
    pub fn from_pem(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<NodeTls, NetError> {
        Self::from_pem_named(ca_pem, cert_pem, key_pem, None)
    }

    /// As [`NodeTls::from_pem`]; `ca_file` names the CA in messages (else its common name).
    fn from_pem_named(
        ca_pem: &str,
        cert_pem: &str,
        key_pem: &str,
        ca_file: Option<&std::path::Path>,
    ) -> Result<NodeTls, NetError> {
        let bad = |what: &str, why: &dyn std::fmt::Display| NetError::Certificate {
            what: what.to_owned(),
            why: why.to_string(),
        };
        let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes())
            .map_err(|e| bad("CA", &e))?
            .into_owned();
        let ca_label: Arc<str> = match ca_file {
            Some(path) => path.display().to_string().into(),
            None => format!("the CA {}", owner(ca.as_ref())).into(),
        };
        let (_, ca_not_after) =
            validity(ca.as_ref()).ok_or_else(|| bad("CA", &"unreadable validity period"))?;
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("node", &e))?;
        let leaf = chain
            .first()
            .ok_or_else(|| bad("node", &"no certificate in PEM"))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| bad("key", &e))?;
        let identity = PeerIdentity::from_certificate(leaf.as_ref())?;
        let what = format!("for {identity}");
        let mut roots = RootCertStore::empty();
        roots.add(ca).map_err(|e| bad("CA", &e))?;

        let ee = webpki::EndEntityCert::try_from(leaf).map_err(|e| bad(&what, &e))?;
        let algs = provider().signature_verification_algorithms.all;
        let mut usages = Vec::new();
        if identity.role.can_serve() {
            usages.push(webpki::KeyUsage::server_auth());
        }
        if identity.role.can_connect() {
            usages.push(webpki::KeyUsage::client_auth());
        }
        for usage in usages {
            ee.verify_for_usage(
                algs,
                &roots.roots,
                &chain[1..],
                UnixTime::now(),
                usage,
                None,
                None,
            )
            .map_err(|e| {
                let problem = match e {
                    webpki::Error::UnknownIssuer | webpki::Error::InvalidSignatureForPublicKey => {
                        Some(Problem::OtherCa)
                    }
                    webpki::Error::CertExpired { .. } => Some(Problem::Expired),
                    webpki::Error::CertNotValidYet { .. } => Some(Problem::NotYetValid),
                    _ => None,
                };
                match problem {
                    Some(p) => NetError::CertificateOf {
                        peer: identity.to_string(),
                        why: p.describe(leaf.as_ref(), &ca_label),
                    },
                    None => bad(&what, &format!("does not verify against the CA: {e}")),
                }
            })?;
        }
        let (_, not_after) =
            validity(leaf.as_ref()).ok_or_else(|| bad(&what, &"unreadable validity period"))?;
        Ok(NodeTls {
            identity,
            roots: Arc::new(roots),
            chain,
            key,
            not_after,
            ca_not_after,
            ca_label,
        })
    }

    /// Loads `ca.pem`, `<node>.<role>.pem` and `<node>.<role>.key` from `dir`. Refuses a key
    /// file that group or others may write; warns when they may read it.
    pub fn load(dir: &std::path::Path, identity: &PeerIdentity) -> Result<NodeTls, NetError> {
        let key_path = node_key_path(dir, identity);
        check_key_permissions(&key_path)?;
        let ca_path = ca_cert_path(dir);
        let tls = NodeTls::from_pem_named(
            &read_file(&ca_path)?,
            &read_file(&node_cert_path(dir, identity))?,
            &read_file(&key_path)?,
            Some(&ca_path),
        )?;
        if &tls.identity != identity {
            return Err(NetError::Identity(format!(
                "{} holds a certificate for {}, not {identity}",
                node_cert_path(dir, identity).display(),
                tls.identity
            )));
        }
        Ok(tls)
    }

    /// The endpoint config of this node: its QUIC stateless-reset key is derived from its
    /// private key, so a node restarted with the same credentials resets its peers' old
    /// connections at their next packet. They notice the restart at once and reconnect,
    /// instead of waiting out the idle timeout.
    pub fn endpoint_config(&self) -> quinn::EndpointConfig {
        let mut seed = ring::digest::Context::new(&ring::digest::SHA256);
        seed.update(b"fedlb quic stateless reset key v1");
        seed.update(self.key.secret_der());
        let seed = seed.finish();
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, seed.as_ref());
        let mut config = quinn::EndpointConfig::new(Arc::new(key));
        // The connection IDs must validate in the restarted process too, or it drops the
        // old connections' packets instead of resetting them.
        let mut cid_key = [0u8; 8];
        cid_key.copy_from_slice(&seed.as_ref()[..8]);
        let cid_key = u64::from_le_bytes(cid_key);
        config.cid_generator(move || {
            Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
        });
        // quinn sends at most one stateless reset per 20 ms per endpoint: after a restart a
        // farm node told 50 of its agents a second, and the rest waited out the idle
        // timeout, then all came back at once. Paced at one per millisecond (what one core
        // handshakes), resets still left a tail: an agent whose packets met no reset backs
        // off its retransmissions, and 2,000 agents took 16 s. At one per 100 µs every
        // agent hears of the restart within a second or two, and the handshake budget and
        // the agents' backoff after a refusal pace the reconnections instead (benchmark 5,
        // restart). A reset is smaller than the packet that incites it, so nothing is
        // amplified.
        config.min_reset_interval(STATELESS_RESET_INTERVAL);
        config
    }

    /// This node's identity, from its own certificate.
    pub fn identity(&self) -> &PeerIdentity {
        &self.identity
    }

    /// When this node's certificate expires.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// When the federation CA's certificate expires.
    pub fn ca_not_after(&self) -> SystemTime {
        self.ca_not_after
    }

    fn tls_err(&self, why: impl std::fmt::Display) -> NetError {
        NetError::Tls {
            identity: self.identity.to_string(),
            why: why.to_string(),
        }
    }

    /// The rustls server configuration: client certificate required and verified against
    /// the CA. Which identities may connect is the server's authoriser's business.
    pub fn server_tls_config(&self) -> Result<rustls::ServerConfig, NetError> {
        if !self.identity.role.can_serve() {
            return Err(NetError::WrongRole {
                identity: self.identity.to_string(),
                role: self.identity.role,
                what: "accept connections",
            });
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider())
            .build()
            .map_err(|e| self.tls_err(e))?;
        let verifier = Arc::new(ExplainClientCerts {
            inner: verifier,
            ca: self.ca_label.clone(),
        });
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| self.tls_err(e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| self.tls_err(e))?;
        cfg.alpn_protocols = vec![ALPN.to_vec()];
        Ok(cfg)
    }

    /// The rustls client configuration: presents this node's certificate and trusts only
    /// the federation CA.
    pub fn client_tls_config(&self) -> Result<rustls::ClientConfig, NetError> {
        if !self.identity.role.can_connect() {
            return Err(NetError::WrongRole {
                identity: self.identity.to_string(),
                role: self.identity.role,
                what: "connect to another node",
            });
        }
        let verifier = WebPkiServerVerifier::builder_with_provider(self.roots.clone(), provider())
            .build()
            .map_err(|e| self.tls_err(e))?;
        let verifier = Arc::new(ExplainServerCert {
            inner: verifier,
            ca: self.ca_label.clone(),
        });
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| self.tls_err(e))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| self.tls_err(e))?;
        cfg.alpn_protocols = vec![ALPN.to_vec()];
        Ok(cfg)
    }

    /// The quinn server configuration for `settings`.
    pub fn server_config(
        &self,
        settings: &TransportSettings,
    ) -> Result<quinn::ServerConfig, NetError> {
        let crypto =
            QuicServerConfig::try_from(self.server_tls_config()?).map_err(|e| self.tls_err(e))?;
        let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        // Peers may open one bidirectional stream at a time: the hello.
        cfg.transport_config(Arc::new(transport_config(
            settings,
            1,
            settings.max_concurrent_uni_streams,
        )?));
        Ok(cfg)
    }

    /// The quinn client configuration for `settings`.
    pub fn client_config(
        &self,
        settings: &TransportSettings,
    ) -> Result<quinn::ClientConfig, NetError> {
        let crypto =
            QuicClientConfig::try_from(self.client_tls_config()?).map_err(|e| self.tls_err(e))?;
        let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
        // The server opens a bidirectional stream towards a client only to forward a request
        // (a global node forwarding an operator's admin call to a farm node): a few at once.
        cfg.transport_config(Arc::new(transport_config(settings, 4, 0)?));
        Ok(cfg)
    }
}

fn transport_config(
    s: &TransportSettings,
    bidi: u32,
    uni: u32,
) -> Result<TransportConfig, NetError> {
    let idle = IdleTimeout::try_from(s.idle_timeout).map_err(|_| {
        NetError::Settings(format!("idle timeout {:?} is too large", s.idle_timeout))
    })?;
    if s.keep_alive_interval >= s.idle_timeout {
        return Err(NetError::Settings(format!(
            "keep-alive interval {:?} is not shorter than idle timeout {:?}",
            s.keep_alive_interval, s.idle_timeout
        )));
    }
    let mut t = TransportConfig::default();
    t.max_idle_timeout(Some(idle))
        .keep_alive_interval(Some(s.keep_alive_interval))
        .max_concurrent_bidi_streams(VarInt::from_u32(bidi))
        .max_concurrent_uni_streams(VarInt::from_u32(uni))
        .stream_receive_window(VarInt::from_u32(s.stream_receive_window))
        .receive_window(VarInt::from_u32(s.receive_window))
        .datagram_receive_buffer_size(None);
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_must_be_shorter_than_idle_timeout() {
        let s = TransportSettings {
            keep_alive_interval: Duration::from_secs(15),
            ..TransportSettings::default()
        };
        let e = transport_config(&s, 1, 1).unwrap_err().to_string();
        assert_eq!(
            e,
            "transport settings: keep-alive interval 15s is not shorter than idle timeout 15s"
        );
        transport_config(&TransportSettings::default(), 1, 256).unwrap();
    }
}
