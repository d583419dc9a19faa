//! The CA, certificate files and credential loading.

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;

use fedlb_net::pki::{ca_cert_path, ca_key_path, node_cert_path, node_key_path};
use fedlb_net::{Ca, NetError, NodeName, NodeTls, PeerIdentity, Role};

fn id(role: Role, node: &str) -> PeerIdentity {
    PeerIdentity::new(role, NodeName::new(node).unwrap())
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn ca_and_node_files_have_private_keys_0600_and_refuse_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    let ca = Ca::generate("test fed").unwrap();
    ca.write(&dir, false).unwrap();
    assert_eq!(mode(&ca_key_path(&dir)), 0o600);
    assert_eq!(mode(&ca_cert_path(&dir)), 0o644);
    assert_eq!(mode(&dir), 0o700);

    let again = Ca::generate("test fed").unwrap();
    let e = again.write(&dir, false).unwrap_err();
    assert!(matches!(e, NetError::Exists { .. }), "{e}");
    assert!(
        e.to_string()
            .ends_with("ca.pem: already exists; refusing to overwrite without force"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(ca_cert_path(&dir)).unwrap(),
        ca.cert_pem()
    );
    again.write(&dir, true).unwrap();
    assert_eq!(
        std::fs::read_to_string(ca_cert_path(&dir)).unwrap(),
        again.cert_pem()
    );
    assert_eq!(mode(&ca_key_path(&dir)), 0o600);

    let farm = id(Role::Farm, "eu-west");
    let cert = again.issue(&farm.node, farm.role).unwrap();
    cert.write(&dir, false).unwrap();
    assert_eq!(mode(&node_key_path(&dir, &farm)), 0o600);
    assert!(node_cert_path(&dir, &farm).ends_with("eu-west.farm.pem"));
    assert!(matches!(
        cert.write(&dir, false),
        Err(NetError::Exists { .. })
    ));
}

#[test]
fn loaded_ca_issues_certificates_that_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::generate("prod").unwrap();
    ca.write(tmp.path(), false).unwrap();
    let loaded = Ca::load(tmp.path()).unwrap();
    assert_eq!(loaded.federation(), "prod");
    let agent = id(Role::Agent, "web-7");
    loaded
        .issue(&agent.node, agent.role)
        .unwrap()
        .write(tmp.path(), false)
        .unwrap();
    // NodeTls::load verifies the chain against ca.pem, validity and EKU.
    let tls = NodeTls::load(tmp.path(), &agent).unwrap();
    assert_eq!(tls.identity(), &agent);
    let ttl = tls
        .not_after()
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(
        ttl > std::time::Duration::from_secs(700 * 24 * 3600),
        "{ttl:?}"
    );

    let wrong = id(Role::Agent, "web-8");
    std::fs::copy(
        node_cert_path(tmp.path(), &agent),
        node_cert_path(tmp.path(), &wrong),
    )
    .unwrap();
    std::fs::copy(
        node_key_path(tmp.path(), &agent),
        node_key_path(tmp.path(), &wrong),
    )
    .unwrap();
    let e = NodeTls::load(tmp.path(), &wrong).unwrap_err().to_string();
    assert!(
        e.contains("holds a certificate for agent/web-7, not agent/web-8"),
        "{e}"
    );
}

#[test]
fn load_refuses_a_key_that_does_not_match_the_ca() {
    let tmp = tempfile::tempdir().unwrap();
    Ca::generate("a").unwrap().write(tmp.path(), false).unwrap();
    let other = tempfile::tempdir().unwrap();
    Ca::generate("b")
        .unwrap()
        .write(other.path(), false)
        .unwrap();
    std::fs::copy(ca_key_path(other.path()), ca_key_path(tmp.path())).unwrap();
    let e = Ca::load(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("does not match the key in"), "{e}");
    let e = Ca::load(&tmp.path().join("missing"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing/ca.pem: No such file"), "{e}");
}

#[test]
fn certificate_from_another_ca_does_not_load() {
    let ca = Ca::generate("real").unwrap();
    let rogue = Ca::generate("real").unwrap();
    let farm = id(Role::Farm, "f1");
    let cert = rogue.issue(&farm.node, farm.role).unwrap();
    let e = NodeTls::from_pem(ca.cert_pem(), cert.cert_pem(), cert.key_pem()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "certificate of farm/f1 is signed by a different CA than the CA \"fedlb CA real\""
    );
}

#[test]
fn roles_get_their_ekus_and_configs_follow() {
    let ca = Ca::generate("fed").unwrap();
    let tls = |role, node| {
        let c = ca.issue(&NodeName::new(node).unwrap(), role).unwrap();
        NodeTls::from_pem(ca.cert_pem(), c.cert_pem(), c.key_pem()).unwrap()
    };
    let agent = tls(Role::Agent, "a1");
    let farm = tls(Role::Farm, "f1");
    let global = tls(Role::Global, "g");
    let e = agent.server_tls_config().unwrap_err().to_string();
    assert_eq!(e, "node agent/a1: role agent cannot accept connections");
    let e = global.client_tls_config().unwrap_err().to_string();
    assert_eq!(
        e,
        "node global/g: role global cannot connect to another node"
    );
    farm.server_tls_config().unwrap();
    farm.client_tls_config().unwrap();

    // The EKUs in the certificates themselves.
    let ekus = |role, node| {
        let c = ca.issue(&NodeName::new(node).unwrap(), role).unwrap();
        let der =
            rustls::pki_types::CertificateDer::from_pem_slice(c.cert_pem().as_bytes()).unwrap();
        let (_, x) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        let eku = x.extended_key_usage().unwrap().unwrap().value.clone();
        (eku.server_auth, eku.client_auth)
    };
    assert_eq!(ekus(Role::Agent, "a"), (false, true));
    assert_eq!(ekus(Role::Farm, "f"), (true, true));
    assert_eq!(ekus(Role::Global, "g"), (true, false));
}

#[test]
fn ca_is_name_constrained_to_the_identity_suffix() {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    let ca = Ca::generate("fed").unwrap();
    let der = rustls::pki_types::CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap();
    let (_, x) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    assert!(x.is_ca());
    let nc = x
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::NameConstraints(nc) => Some(nc.clone()),
            _ => None,
        })
        .expect("name constraints extension");
    let permitted: Vec<_> = nc
        .permitted_subtrees
        .unwrap()
        .iter()
        .map(|s| match &s.base {
            GeneralName::DNSName(d) => d.to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(permitted, vec![fedlb_net::IDENTITY_SUFFIX.to_owned()]);
}

#[test]
fn federation_names_are_checked() {
    for bad in ["", "  ", "a\nb", &"x".repeat(49)] {
        let e = Ca::generate(bad).unwrap_err().to_string();
        assert!(e.starts_with("federation name "), "{e}");
    }
}

/// A federation directory with a CA and one farm node's files; returns the key's path.
fn node_files(dir: &std::path::Path, farm: &PeerIdentity) -> std::path::PathBuf {
    let ca = Ca::generate("fed").unwrap();
    ca.write(dir, false).unwrap();
    ca.issue(&farm.node, farm.role)
        .unwrap()
        .write(dir, false)
        .unwrap();
    node_key_path(dir, farm)
}

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Log lines written while `f` runs on this thread.
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
    let sink = buf.clone();
    let sub = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || Sink(sink.clone()))
        .finish();
    let out = tracing::subscriber::with_default(sub, f);
    let text = String::from_utf8_lossy(&buf.lock().unwrap()).into_owned();
    (out, text)
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn item10_group_readable_key_loads_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let farm = id(Role::Farm, "f1");
    let key = node_files(tmp.path(), &farm);
    let (loaded, quiet) = logged(|| NodeTls::load(tmp.path(), &farm));
    loaded.unwrap();
    assert!(!quiet.contains("WARN"), "{quiet}");

    chmod(&key, 0o644);
    let (loaded, text) = logged(|| NodeTls::load(tmp.path(), &farm));
    loaded.unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("WARN"))
        .unwrap_or_else(|| panic!("no warning:\n{text}"));
    assert!(
        line.contains("private key is readable by group or others")
            && line.contains(&format!("path={}", key.display()))
            && line.contains("mode=0644")
            && line.contains(&format!("fix=chmod 600 {}", key.display())),
        "{line}"
    );
}

#[test]
fn item10_group_writable_key_is_refused_with_the_chmod_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let farm = id(Role::Farm, "f1");
    let key = node_files(tmp.path(), &farm);
    for mode in [0o666, 0o620, 0o602] {
        chmod(&key, mode);
        let e = NodeTls::load(tmp.path(), &farm).unwrap_err();
        let k = key.display();
        assert_eq!(
            e.to_string(),
            format!(
                "{k}: private key is writable by group or others (mode {mode:04o}); refusing to use it; fix with: chmod 600 {k}"
            )
        );
    }
    // The CA key, when `fedlb certs` loads it to issue more.
    chmod(&ca_key_path(tmp.path()), 0o666);
    let e = Ca::load(tmp.path()).unwrap_err().to_string();
    assert!(
        e.contains("ca.key: private key is writable by group or others (mode 0666)"),
        "{e}"
    );
}

#[test]
fn item10_certificate_from_another_ca_names_the_ca_file() {
    let tmp = tempfile::tempdir().unwrap();
    let farm = id(Role::Farm, "f1");
    node_files(tmp.path(), &farm);
    // A certificate from another CA (same federation name) dropped in by mistake.
    Ca::generate("fed")
        .unwrap()
        .issue(&farm.node, farm.role)
        .unwrap()
        .write(tmp.path(), true)
        .unwrap();
    let e = NodeTls::load(tmp.path(), &farm).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "certificate of farm/f1 is signed by a different CA than {}",
            ca_cert_path(tmp.path()).display()
        )
    );
}

/// 2025-01-01 00:00:00 UTC and 2025-06-01 12:00:00 UTC.
pub fn long_ago() -> (std::time::SystemTime, std::time::SystemTime) {
    let at = |s| std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s);
    (at(1_735_689_600), at(1_748_779_200))
}

#[test]
fn item10_expired_certificate_says_when_in_words() {
    let ca = Ca::generate("fed").unwrap();
    let (from, to) = long_ago();
    let old = ca
        .issue_with_validity(&NodeName::new("old").unwrap(), Role::Agent, from, to)
        .unwrap();
    let e = NodeTls::from_pem(ca.cert_pem(), old.cert_pem(), old.key_pem()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "certificate of agent/old expired on 2025-06-01 12:00:00 UTC"
    );
}

#[test]
fn item10_node_and_ca_expiry_are_read_from_the_certificates() {
    let ca = Ca::generate("fed").unwrap();
    let now = std::time::SystemTime::now();
    let until = now + std::time::Duration::from_secs(86_400);
    let cert = ca
        .issue_with_validity(
            &NodeName::new("a").unwrap(),
            Role::Agent,
            now - std::time::Duration::from_secs(60),
            until,
        )
        .unwrap();
    let tls = NodeTls::from_pem(ca.cert_pem(), cert.cert_pem(), cert.key_pem()).unwrap();
    let secs =
        |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(secs(tls.not_after()), secs(until));
    let ca_left = tls.ca_not_after().duration_since(now).unwrap();
    assert!(
        ca_left > std::time::Duration::from_secs(9 * 365 * 86_400),
        "{ca_left:?}"
    );
}
