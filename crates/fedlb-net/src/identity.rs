//! Node identities and how they are written into certificates.
//!
//! A node's identity is one DNS subject-alternative name,
//! `<node>.<role>.fedlb.invalid` (for example `eu-west.farm.fedlb.invalid`). The CA is
//! name-constrained to `fedlb.invalid`, so it cannot vouch for any real domain, and
//! `.invalid` (RFC 2606) can never resolve. The same name is what a client passes as the
//! expected server name, so the server check is plain webpki hostname verification.

use std::fmt;
use std::str::FromStr;

use x509_parser::extensions::GeneralName;

use crate::NetError;

/// The DNS suffix under which every identity lives; the CA's permitted subtree.
pub const IDENTITY_SUFFIX: &str = "fedlb.invalid";

/// The part a node plays in the federation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Runs on a server, probes it, reports to a farm node or the global node. Client only.
    Agent,
    /// Accepts agents, reports a farm summary upward. Server and client.
    Farm,
    /// Accepts farm nodes and directly attached agents. Server only.
    Global,
    /// A person: makes admin calls (drain, pin, …) to a node's status port. Client only
    /// (clientAuth EKU); never accepted on the federation's QUIC connections.
    Operator,
}

impl Role {
    /// All roles, in wire order.
    pub const ALL: [Role; 4] = [Role::Agent, Role::Farm, Role::Global, Role::Operator];

    /// The label used in SANs, file names and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Farm => "farm",
            Role::Global => "global",
            Role::Operator => "operator",
        }
    }

    /// Whether certificates of this role carry the serverAuth EKU (may accept connections).
    pub fn can_serve(self) -> bool {
        matches!(self, Role::Farm | Role::Global)
    }

    /// Whether certificates of this role carry the clientAuth EKU (may connect upward).
    pub fn can_connect(self) -> bool {
        matches!(self, Role::Agent | Role::Farm | Role::Operator)
    }

    pub(crate) fn to_wire(self) -> u8 {
        match self {
            Role::Agent => 1,
            Role::Farm => 2,
            Role::Global => 3,
            Role::Operator => 4,
        }
    }

    pub(crate) fn from_wire(b: u8) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.to_wire() == b)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| NetError::UnknownRole(s.to_owned()))
    }
}

/// A node name: one lowercase DNS label (`a-z`, `0-9`, `-`; 1–63 characters; no leading or
/// trailing hyphen). Lowercase only, because DNS names compare case-insensitively and two
/// names that differ by case must not be two identities.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeName(String);

impl NodeName {
    /// Checks `name` and wraps it.
    pub fn new(name: impl Into<String>) -> Result<Self, NetError> {
        let name = name.into();
        let why = if name.is_empty() {
            Some("is empty")
        } else if name.len() > 63 {
            Some("is longer than 63 characters")
        } else if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            Some("may contain only lowercase letters, digits and '-'")
        } else if name.starts_with('-') || name.ends_with('-') {
            Some("may not start or end with '-'")
        } else {
            None
        };
        match why {
            Some(why) => Err(NetError::InvalidNodeName { name, why }),
            None => Ok(NodeName(name)),
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for NodeName {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeName::new(s)
    }
}

/// Who is at the other end of a connection, as proven by its certificate.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerIdentity {
    /// The peer's role.
    pub role: Role,
    /// The peer's node name, unique within its role.
    pub node: NodeName,
}

impl PeerIdentity {
    /// An identity from its parts.
    pub fn new(role: Role, node: NodeName) -> Self {
        PeerIdentity { role, node }
    }

    /// The DNS SAN that carries this identity: `<node>.<role>.fedlb.invalid`.
    pub fn dns_name(&self) -> String {
        format!("{}.{}.{}", self.node, self.role, IDENTITY_SUFFIX)
    }

    /// Parses `<node>.<role>.fedlb.invalid` (ASCII case-insensitive).
    pub fn from_dns_name(name: &str) -> Result<Self, NetError> {
        let lower = name.to_ascii_lowercase();
        let rest = lower
            .strip_suffix(IDENTITY_SUFFIX)
            .and_then(|r| r.strip_suffix('.'))
            .ok_or_else(|| {
                NetError::Identity(format!("name {name:?} is not under {IDENTITY_SUFFIX}"))
            })?;
        let (node, role) = rest.split_once('.').ok_or_else(|| {
            NetError::Identity(format!(
                "name {name:?} is not <node>.<role>.{IDENTITY_SUFFIX}"
            ))
        })?;
        let role: Role = role
            .parse()
            .map_err(|e: NetError| NetError::Identity(format!("name {name:?}: {e}")))?;
        let node =
            NodeName::new(node).map_err(|e| NetError::Identity(format!("name {name:?}: {e}")))?;
        Ok(PeerIdentity { role, node })
    }

    /// Extracts the identity from a DER certificate: exactly one DNS SAN under
    /// `fedlb.invalid` must be present. The certificate's validity is not checked here;
    /// rustls has done that before this is called.
    pub fn from_certificate(der: &[u8]) -> Result<Self, NetError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| NetError::Identity(format!("unparsable certificate: {e}")))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| NetError::Identity(format!("bad subjectAltName extension: {e}")))?
            .ok_or_else(|| NetError::Identity("no subjectAltName extension".to_owned()))?;
        let suffix = format!(".{IDENTITY_SUFFIX}");
        let mut found: Option<&str> = None;
        for name in &san.value.general_names {
            let GeneralName::DNSName(d) = name else {
                continue;
            };
            if !d.to_ascii_lowercase().ends_with(&suffix) {
                continue;
            }
            if let Some(first) = found {
                return Err(NetError::Identity(format!(
                    "two identity names {first:?} and {d:?}"
                )));
            }
            found = Some(d);
        }
        let name = found
            .ok_or_else(|| NetError::Identity(format!("no DNS name under {IDENTITY_SUFFIX}")))?;
        PeerIdentity::from_dns_name(name)
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.role, self.node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_lowercase_dns_labels() {
        for good in ["a", "eu-west", "eu1", "0", &"x".repeat(63)] {
            assert!(NodeName::new(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", "EU1", "a.b", "a_b", "é", &"x".repeat(64)] {
            let e = NodeName::new(bad).unwrap_err().to_string();
            assert!(e.starts_with("node name "), "{e}");
        }
    }

    fn cert_with(names: &[&str]) -> Vec<u8> {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        rcgen::generate_simple_self_signed(names)
            .unwrap()
            .cert
            .der()
            .to_vec()
    }

    #[test]
    fn certificate_must_carry_exactly_one_identity_name() {
        let id = PeerIdentity::from_certificate(&cert_with(&[
            "web-1.example.com",
            "web-1.agent.fedlb.invalid",
        ]))
        .unwrap();
        assert_eq!(id.to_string(), "agent/web-1");
        let e = PeerIdentity::from_certificate(&cert_with(&[
            "a.agent.fedlb.invalid",
            "b.farm.fedlb.invalid",
        ]))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "certificate identity: two identity names \"a.agent.fedlb.invalid\" and \"b.farm.fedlb.invalid\""
        );
        let e = PeerIdentity::from_certificate(&cert_with(&["web-1.example.com"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "certificate identity: no DNS name under fedlb.invalid"
        );
    }

    #[test]
    fn dns_name_round_trips_and_rejects_foreign_names() {
        let id = PeerIdentity::new(Role::Farm, NodeName::new("eu-west").unwrap());
        assert_eq!(id.dns_name(), "eu-west.farm.fedlb.invalid");
        assert_eq!(PeerIdentity::from_dns_name(&id.dns_name()).unwrap(), id);
        assert_eq!(
            PeerIdentity::from_dns_name("EU-West.Farm.fedlb.invalid").unwrap(),
            id
        );
        for bad in [
            "eu-west.farm.example.com",
            "farm.fedlb.invalid",
            "eu-west.boss.fedlb.invalid",
            "a.b.farm.fedlb.invalid",
            "xfedlb.invalid",
        ] {
            assert!(PeerIdentity::from_dns_name(bad).is_err(), "{bad}");
        }
    }
}
