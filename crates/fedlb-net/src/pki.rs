//! The federation's private CA and node certificates (rcgen, ECDSA P-256).
//!
//! Directory layout written and read here:
//!
//! ```text
//! DIR/ca.pem               CA certificate: copy to every node
//! DIR/ca.key               CA private key (0600): keep where `fedlb certs` runs
//! DIR/<node>.<role>.pem    node certificate, e.g. eu-west.farm.pem
//! DIR/<node>.<role>.key    node private key (0600)
//! ```
//!
//! EKUs by role: agent = clientAuth; farm = serverAuth + clientAuth; global = serverAuth.
//! webpki refuses a client certificate whose EKU list lacks clientAuth and a server
//! certificate whose list lacks serverAuth, so an agent cannot pose as a server and a global
//! node cannot connect as a client.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use time::OffsetDateTime;

use crate::identity::IDENTITY_SUFFIX;
use crate::{NetError, NodeName, PeerIdentity, Role};

/// How long a new CA certificate is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a new node certificate is valid. Nodes should report their expiry
/// ([`crate::NodeTls::not_after`]) in status so that renewal is not a surprise.
pub const NODE_VALIDITY: Duration = Duration::from_secs(2 * 365 * 24 * 3600);
/// Back-dating of `notBefore`, for clocks that run a little behind.
const CLOCK_SKEW: Duration = Duration::from_secs(3600);
const CA_CN_PREFIX: &str = "fedlb CA ";

/// A private certificate authority for one federation.
pub struct Ca {
    federation: String,
    params: CertificateParams,
    key: KeyPair,
    cert_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("federation", &self.federation)
            .finish_non_exhaustive()
    }
}

/// A node certificate and its private key, both PEM.
#[derive(Clone)]
pub struct NodeCert {
    identity: PeerIdentity,
    cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for NodeCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCert")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

fn cert_err(what: impl Into<String>, why: impl std::fmt::Display) -> NetError {
    NetError::Certificate {
        what: what.into(),
        why: why.to_string(),
    }
}

fn ca_params(federation: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{CA_CN_PREFIX}{federation}"));
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.name_constraints = Some(NameConstraints {
        permitted_subtrees: vec![GeneralSubtree::DnsName(IDENTITY_SUFFIX.to_owned())],
        excluded_subtrees: vec![],
    });
    p
}

fn validity(p: &mut CertificateParams, lifetime: Duration) {
    let now = OffsetDateTime::now_utc();
    p.not_before = now - CLOCK_SKEW;
    p.not_after = now + lifetime;
}

impl Ca {
    /// Makes a new CA for `federation` (a free-form name, shown in the CA's common name).
    pub fn generate(federation: &str) -> Result<Ca, NetError> {
        let why = if federation.trim().is_empty() {
            Some("is empty")
        } else if federation.len() > 48 {
            Some("is longer than 48 characters")
        } else if federation.chars().any(|c| c.is_control()) {
            Some("contains control characters")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(NetError::InvalidFederation {
                name: federation.to_owned(),
                why,
            });
        }
        let mut params = ca_params(federation);
        validity(&mut params, CA_VALIDITY);
        let key = KeyPair::generate().map_err(|e| cert_err("CA key", e))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| cert_err(format!("CA for {federation:?}"), e))?;
        Ok(Ca {
            federation: federation.to_owned(),
            params,
            key,
            cert_pem: cert.pem(),
        })
    }

    /// The federation name this CA was made for.
    pub fn federation(&self) -> &str {
        &self.federation
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a certificate for `node` in `role`, with the identity SAN and the role's EKUs,
    /// valid for [`NODE_VALIDITY`].
    pub fn issue(&self, node: &NodeName, role: Role) -> Result<NodeCert, NetError> {
        let now = OffsetDateTime::now_utc();
        self.issue_with_validity(
            node,
            role,
            (now - CLOCK_SKEW).into(),
            (now + NODE_VALIDITY).into(),
        )
    }

    /// As [`Ca::issue`], valid from `not_before` to `not_after` (short-lived certificates,
    /// or tests of expiry).
    pub fn issue_with_validity(
        &self,
        node: &NodeName,
        role: Role,
        not_before: std::time::SystemTime,
        not_after: std::time::SystemTime,
    ) -> Result<NodeCert, NetError> {
        let identity = PeerIdentity::new(role, node.clone());
        let name = identity.dns_name();
        let mut p = CertificateParams::new(vec![name.clone()])
            .map_err(|e| cert_err(format!("for {identity}"), e))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        p.distinguished_name = dn;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = Vec::new();
        if role.can_serve() {
            p.extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if role.can_connect() {
            p.extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        p.use_authority_key_identifier_extension = true;
        p.not_before = not_before.into();
        p.not_after = not_after.into();
        let key = KeyPair::generate().map_err(|e| cert_err(format!("key for {identity}"), e))?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = p
            .signed_by(&key, &issuer)
            .map_err(|e| cert_err(format!("for {identity}"), e))?;
        Ok(NodeCert {
            identity,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Writes `ca.pem` and `ca.key` (0600) into `dir`, creating it (0700) if needed. Refuses
    /// if either file exists, unless `force`.
    pub fn write(&self, dir: &Path, force: bool) -> Result<(), NetError> {
        create_dir(dir)?;
        let (cert, key) = (ca_cert_path(dir), ca_key_path(dir));
        if !force {
            for path in [&cert, &key] {
                if path.exists() {
                    return Err(NetError::Exists { path: path.clone() });
                }
            }
        }
        write_file(&key, self.key.serialize_pem().as_bytes(), 0o600, force)?;
        write_file(&cert, self.cert_pem.as_bytes(), 0o644, force)
    }

    /// Loads the CA written by [`Ca::write`] from `dir`, to issue more certificates.
    pub fn load(dir: &Path) -> Result<Ca, NetError> {
        let (cert_path, key_path) = (ca_cert_path(dir), ca_key_path(dir));
        let cert_pem = read_file(&cert_path)?;
        check_key_permissions(&key_path)?;
        let key_pem = read_file(&key_path)?;
        let what = || cert_path.display().to_string();
        let der =
            CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| cert_err(what(), e))?;
        let (_, x509) =
            x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| cert_err(what(), e))?;
        if !x509.is_ca() {
            return Err(cert_err(what(), "is not a CA certificate"));
        }
        let cn = x509
            .subject()
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .unwrap_or_default();
        let federation = cn
            .strip_prefix(CA_CN_PREFIX)
            .ok_or_else(|| cert_err(what(), format!("common name {cn:?} is not a fedlb CA")))?
            .to_owned();
        let key =
            KeyPair::from_pem(&key_pem).map_err(|e| cert_err(key_path.display().to_string(), e))?;
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(cert_err(
                what(),
                format!("does not match the key in {}", key_path.display()),
            ));
        }
        // Rebuilding the same subject name makes issued certificates chain to the stored CA
        // certificate; the test `loaded_ca_issues_certificates_that_verify` holds us to it.
        let params = ca_params(&federation);
        Ok(Ca {
            federation,
            params,
            key,
            cert_pem,
        })
    }
}

impl NodeCert {
    /// Whose certificate this is.
    pub fn identity(&self) -> &PeerIdentity {
        &self.identity
    }

    /// The certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key, PEM (PKCS#8).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Writes `<node>.<role>.pem` and `<node>.<role>.key` (0600) into `dir`. Refuses if
    /// either exists, unless `force`.
    pub fn write(&self, dir: &Path, force: bool) -> Result<(), NetError> {
        create_dir(dir)?;
        let (cert, key) = (
            node_cert_path(dir, &self.identity),
            node_key_path(dir, &self.identity),
        );
        if !force {
            for path in [&cert, &key] {
                if path.exists() {
                    return Err(NetError::Exists { path: path.clone() });
                }
            }
        }
        write_file(&key, self.key_pem.as_bytes(), 0o600, force)?;
        write_file(&cert, self.cert_pem.as_bytes(), 0o644, force)
    }
}

/// `DIR/ca.pem`.
pub fn ca_cert_path(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}

/// `DIR/ca.key`.
pub fn ca_key_path(dir: &Path) -> PathBuf {
    dir.join("ca.key")
}

/// `DIR/<node>.<role>.pem`.
pub fn node_cert_path(dir: &Path, id: &PeerIdentity) -> PathBuf {
    dir.join(format!("{}.{}.pem", id.node, id.role))
}

/// `DIR/<node>.<role>.key`.
pub fn node_key_path(dir: &Path, id: &PeerIdentity) -> PathBuf {
    dir.join(format!("{}.{}.key", id.node, id.role))
}

/// Refuses a private key that group or others may write (whoever can write it can replace
/// this node's identity); warns when they may read it, as ssh would refuse.
pub(crate) fn check_key_permissions(path: &Path) -> Result<(), NetError> {
    let meta = fs::metadata(path).map_err(|source| NetError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(NetError::KeyPermissions {
            path: path.to_owned(),
            mode,
        });
    }
    if mode & 0o044 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = %format!("{mode:04o}"),
            fix = %format!("chmod 600 {}", path.display()),
            "private key is readable by group or others"
        );
    }
    Ok(())
}

pub(crate) fn read_file(path: &Path) -> Result<String, NetError> {
    fs::read_to_string(path).map_err(|source| NetError::Io {
        path: path.to_owned(),
        source,
    })
}

fn create_dir(dir: &Path) -> Result<(), NetError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| NetError::Io {
            path: dir.to_owned(),
            source,
        })
}

/// Writes through a temporary file in the same directory and renames it into place, so a
/// reader never sees half a key and a key never exists with wider permissions than `mode`.
fn write_file(path: &Path, contents: &[u8], mode: u32, force: bool) -> Result<(), NetError> {
    let io = |source| NetError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io)?;
    tmp.write_all(contents).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    let placed = if force {
        tmp.persist(path).map(|_| ())
    } else {
        tmp.persist_noclobber(path).map(|_| ())
    };
    placed.map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            NetError::Exists {
                path: path.to_owned(),
            }
        } else {
            io(e.error)
        }
    })
}
