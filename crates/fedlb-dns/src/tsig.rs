//! TSIG keys as hickory signs with them.
//!
//! The key type, the algorithm type and the key-file parser are fedlb-topology's
//! ([`TsigKey`], [`TsigAlgorithm`]): one of each in the workspace. This module only turns a
//! key into what hickory wants: its algorithm ([`hickory_algorithm`]), its name as a DNS name
//! ([`key_name`]) and a signer.

use hickory_proto::rr::{Name, TSigner, rdata::tsig::TsigAlgorithm as HickoryAlgorithm};

pub use fedlb_topology::{TsigAlgorithm, TsigKey};

use crate::{Error, answers::fqdn};

/// Fudge (allowed clock difference) put into every signature, as RFC 8945 recommends.
pub const FUDGE_SECS: u16 = 300;

/// hickory's name for an algorithm: the one place the two meet.
pub(crate) fn hickory_algorithm(algorithm: TsigAlgorithm) -> HickoryAlgorithm {
    match algorithm {
        TsigAlgorithm::HmacSha256 => HickoryAlgorithm::HmacSha256,
        TsigAlgorithm::HmacSha384 => HickoryAlgorithm::HmacSha384,
        TsigAlgorithm::HmacSha512 => HickoryAlgorithm::HmacSha512,
    }
}

/// The key's name as a DNS name: fully qualified, lowercase. A name that is not a domain
/// name, or an empty secret, is an [`Error::TsigKey`] naming the key.
pub(crate) fn key_name(key: &TsigKey) -> Result<Name, Error> {
    if key.secret.is_empty() {
        return Err(Error::TsigKey {
            key: key.name.clone(),
            reason: "empty secret".into(),
        });
    }
    fqdn(&key.name).map_err(|e| Error::TsigKey {
        key: key.name.clone(),
        reason: match e {
            Error::Name { reason, .. } => format!("not a domain name: {reason}"),
            other => other.to_string(),
        },
    })
}

/// A hickory signer for `key`.
pub(crate) fn signer(key: &TsigKey) -> Result<TSigner, Error> {
    let name = key_name(key)?;
    TSigner::new(
        key.secret.clone(),
        hickory_algorithm(key.algorithm),
        name,
        FUDGE_SECS,
    )
    .map_err(|e| Error::TsigKey {
        key: key.name.clone(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_fully_qualified_and_lowercase() {
        let key = TsigKey::new("DDNS-Key", TsigAlgorithm::HmacSha256, vec![1; 32]).unwrap();
        assert_eq!(key_name(&key).unwrap().to_string(), "ddns-key.");
        assert_eq!(signer(&key).unwrap().signer_name().to_string(), "ddns-key.");
    }

    #[test]
    fn every_algorithm_maps_to_hickorys() {
        for (ours, theirs) in [
            (TsigAlgorithm::HmacSha256, HickoryAlgorithm::HmacSha256),
            (TsigAlgorithm::HmacSha384, HickoryAlgorithm::HmacSha384),
            (TsigAlgorithm::HmacSha512, HickoryAlgorithm::HmacSha512),
        ] {
            assert_eq!(hickory_algorithm(ours), theirs);
        }
    }
}
