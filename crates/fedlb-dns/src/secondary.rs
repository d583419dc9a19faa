//! The configuration a BIND or Knot secondary of the embedded server needs: its `key`, and a
//! zone that transfers from the embedded server (signed with the transfer key) and takes its
//! NOTIFY. `fedlb dns-config bind|knot` prints it; the tests start real secondaries from the
//! same text.

use std::{net::SocketAddr, path::Path};

use crate::TsigKey;

/// What a secondary needs to know about its primary.
#[derive(Debug, Clone, Copy)]
pub struct SecondarySpec<'a> {
    /// The zone, with or without the trailing dot.
    pub zone: &'a str,
    /// The embedded server's address as the secondary reaches it (not `0.0.0.0`).
    pub primary: SocketAddr,
    /// The transfer key.
    pub key: &'a TsigKey,
    /// Where the secondary keeps its copy of the zone.
    pub file: &'a Path,
}

/// BIND 9 (`named.conf`): the key and a `type secondary` zone. BIND takes NOTIFY from its
/// primaries' addresses by default.
pub fn bind_secondary(spec: &SecondarySpec<'_>) -> String {
    let zone = spec.zone.trim_end_matches('.');
    let key = spec.key.config_name();
    format!(
        "key \"{key}\" {{ algorithm {}; secret \"{}\"; }};\n\
         zone \"{zone}\" {{\n\
         \x20   type secondary;\n\
         \x20   primaries {{ {} port {} key \"{key}\"; }};\n\
         \x20   file \"{}\";\n\
         }};\n",
        spec.key.algorithm,
        spec.key.secret_base64(),
        spec.primary.ip(),
        spec.primary.port(),
        spec.file.display(),
    )
}

/// Knot 3 (`knot.conf`): the `key`, `remote`, `acl` and `zone` sections. The ACL accepts
/// NOTIFY from the primary's address signed with the key (fedlb signs its NOTIFY with it).
pub fn knot_secondary(spec: &SecondarySpec<'_>) -> String {
    let zone = spec.zone.trim_end_matches('.');
    let key = spec.key.config_name();
    format!(
        "key:\n\
         \x20 - id: {key}\n\
         \x20   algorithm: {}\n\
         \x20   secret: {}\n\
         remote:\n\
         \x20 - id: fedlb-primary\n\
         \x20   address: {}@{}\n\
         \x20   key: {key}\n\
         acl:\n\
         \x20 - id: fedlb-notify\n\
         \x20   address: {}\n\
         \x20   key: {key}\n\
         \x20   action: notify\n\
         zone:\n\
         \x20 - domain: {zone}\n\
         \x20   master: fedlb-primary\n\
         \x20   acl: fedlb-notify\n\
         \x20   file: \"{}\"\n",
        spec.key.algorithm,
        spec.key.secret_base64(),
        spec.primary.ip(),
        spec.primary.port(),
        spec.primary.ip(),
        spec.file.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TsigAlgorithm;

    fn spec_key() -> TsigKey {
        TsigKey::new("fedlb-transfer.", TsigAlgorithm::HmacSha256, vec![7; 32]).unwrap()
    }

    #[test]
    fn bind_stanza_names_the_primary_its_port_and_key() {
        let key = spec_key();
        let text = bind_secondary(&SecondarySpec {
            zone: "example.test.",
            primary: "192.0.2.1:5353".parse().unwrap(),
            key: &key,
            file: Path::new("/var/lib/bind/example.test.db"),
        });
        assert!(text.contains("key \"fedlb-transfer\" { algorithm hmac-sha256; secret \""));
        assert!(text.contains("zone \"example.test\" {\n    type secondary;\n"));
        assert!(text.contains("primaries { 192.0.2.1 port 5353 key \"fedlb-transfer\"; };"));
        assert!(text.contains("file \"/var/lib/bind/example.test.db\";"));
    }

    #[test]
    fn knot_stanza_has_remote_acl_and_zone() {
        let key = spec_key();
        let text = knot_secondary(&SecondarySpec {
            zone: "example.test",
            primary: "[2001:db8::1]:5353".parse().unwrap(),
            key: &key,
            file: Path::new("/var/lib/knot/example.test.zone"),
        });
        assert!(text.contains("    address: 2001:db8::1@5353\n    key: fedlb-transfer\n"));
        assert!(text.contains("    action: notify\n"));
        assert!(text.contains("  - domain: example.test\n    master: fedlb-primary\n"));
    }
}
