//! Names of the things fedlb decides about.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub String);

        impl $name {
            /// The name as written in the topology.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }
    };
}

id_type!(
    /// A replicated service (`www`), answered under one FQDN.
    ServiceId
);
id_type!(
    /// A server: one machine (or address) offering one or more services.
    ServerId
);
id_type!(
    /// A farm: one site's group of servers, seen from above as one candidate.
    FarmId
);
id_type!(
    /// A region: a set of clients (by address prefix or geography) answered from where they
    /// are. Clients in no region get the default region: the global node's own view.
    RegionId
);
id_type!(
    /// One probe of a service (`http`, `load`), unique within the service.
    ProbeId
);

/// A candidate in a decision: a server (inside a farm, or attached directly to the global
/// node) or a farm (at the global tier).
///
/// Shared, not copied: a member's name is held by its state, every ranking, standing and
/// view of it, so a clone is a reference count, not an allocation (a farm node deciding
/// 300 servers a few times a second would otherwise copy each name several times per
/// decision).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CandidateId(Arc<str>);

impl CandidateId {
    /// The name as written in the topology.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CandidateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Looks a member up by its name without building a `CandidateId` (an allocation): the
/// order and equality of ids are those of their names.
impl std::borrow::Borrow<str> for CandidateId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for CandidateId {
    fn from(s: &str) -> Self {
        CandidateId(Arc::from(s))
    }
}

impl From<String> for CandidateId {
    fn from(s: String) -> Self {
        CandidateId(Arc::from(s))
    }
}

impl Serialize for CandidateId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CandidateId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(CandidateId::from)
    }
}

impl From<&ServerId> for CandidateId {
    fn from(s: &ServerId) -> Self {
        CandidateId::from(s.as_str())
    }
}

impl From<&FarmId> for CandidateId {
    fn from(f: &FarmId) -> Self {
        CandidateId::from(f.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cloned_candidate_id_shares_its_name() {
        let a = CandidateId::from("f12-s34");
        let b = a.clone();
        assert_eq!(a, b);
        assert!(
            std::ptr::eq(a.as_str(), b.as_str()),
            "a clone copied the name"
        );
    }
}
