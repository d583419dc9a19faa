//! The weights of each published answer, per view, as the global node decided them: what the
//! embedded server spreads a set by, per query ([`fedlb_core::spread`]).
//!
//! Why a table in memory and not DNS: the embedded server runs in the global node's process,
//! and weights move with every load reading; writing them through RFC 2136 (a TXT record per
//! name) would cost an UPDATE and a journal write per move for no reader but this server.
//! The RRsets stay the source of truth for *which* addresses are answered: a query is
//! answered from the records the view holds, and the table only weighs them (an address
//! without a weight counts zero; with none weighted, all count equally).

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{Arc, RwLock},
};

use fedlb_core::RegionId;
use hickory_proto::rr::Name;

/// Each view's weights: `None` is the default view, then one per region.
type Table = BTreeMap<Option<RegionId>, BTreeMap<Name, Vec<(IpAddr, f64)>>>;

/// A shared handle on the answer weights: the publisher writes, the embedded server reads.
/// Cloning shares the table.
#[derive(Clone, Debug, Default)]
pub struct AnswerWeights {
    table: Arc<RwLock<Table>>,
}

impl AnswerWeights {
    /// An empty table: every set is answered with equal weights.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the weights of one view (`None`: the default view) by `names` (each name's
    /// addresses with their relative weights).
    pub fn set_view(&self, region: Option<&RegionId>, names: BTreeMap<Name, Vec<(IpAddr, f64)>>) {
        let names = names
            .into_iter()
            .map(|(mut name, w)| {
                name.set_fqdn(true);
                (name.to_lowercase(), w)
            })
            .collect();
        self.table
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(region.cloned(), names);
    }

    /// The weight of each of `addresses` of `name` in a view, in their order (zero for an
    /// address the table does not weigh); `None` when the view has no weights for the name.
    pub fn weigh(
        &self,
        region: Option<&RegionId>,
        name: &Name,
        addresses: &[IpAddr],
    ) -> Option<Vec<f64>> {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        let weights = table.get(&region.cloned())?.get(name)?;
        Some(
            addresses
                .iter()
                .map(|a| {
                    weights
                        .iter()
                        .filter(|(b, _)| b == a)
                        .map(|(_, w)| *w)
                        .sum()
                })
                .collect(),
        )
    }
}
