//! What a variant runs: its selectors and TTL, from the topology with the variant's
//! overrides (the engine runs them; the report describes them).

use std::collections::BTreeMap;

use fedlb_core::{AnswerSet, Hysteresis, Policy, SelectorConfig};

use crate::error::Error;
use crate::scenario::{Scenario, TtlMode, Variant};
use crate::topology::Topology;

fn with_overrides(
    base: &SelectorConfig,
    v: &Variant,
    policy: Option<&Policy>,
    hysteresis: Option<Hysteresis>,
    answers: Option<usize>,
    weighted: bool,
) -> SelectorConfig {
    let mut s = base.clone();
    if let Some(p) = policy {
        // as in a topology: a tier that names its policy answers its top `answers`
        s.policy = p.clone();
        s.set = AnswerSet::Top;
    }
    if let Some(h) = hysteresis {
        s.hysteresis = h;
    }
    if let Some(n) = answers {
        s.answers = n;
        s.set = AnswerSet::Top;
    }
    if let Some(r) = v.rotate_every {
        s.rotate_every = r;
    }
    if weighted {
        s.set = AnswerSet::Weighted;
    }
    s
}

/// The TTL mode of a variant, with defaults filled in.
pub(crate) fn ttl_mode(topo: &Topology, sc: &Scenario, v: &Variant) -> TtlMode {
    let fixed = sc.ttl.unwrap_or(topo.ttl);
    match v.ttl {
        None => TtlMode::Fixed(fixed),
        Some(TtlMode::Fixed(d)) => TtlMode::Fixed(d),
        Some(TtlMode::Derived { min, max }) => TtlMode::Derived {
            min: if min.is_zero() { sc.ttl_min } else { min },
            max: if max.is_zero() {
                sc.ttl_max.unwrap_or(fixed)
            } else {
                max
            },
        },
    }
}

/// The selectors a variant runs: (global, local by farm).
pub(crate) fn selectors(
    topo: &Topology,
    v: &Variant,
) -> Result<(SelectorConfig, BTreeMap<fedlb_core::FarmId, SelectorConfig>), Error> {
    let base = &topo.global_service()?.selector;
    let mut global = match &v.flat {
        Some(p) => with_overrides(base, v, Some(p), v.hysteresis, v.answers, v.weighted),
        None => with_overrides(
            base,
            v,
            v.global.as_ref(),
            v.hysteresis,
            v.global_answers,
            false,
        ),
    };
    if let Some(spill) = v.spill {
        global.spill = spill;
    }
    let local = topo
        .farms
        .iter()
        .filter_map(|(id, f)| {
            let svc = f.services.get(&topo.service)?;
            Some((
                id.clone(),
                with_overrides(
                    &svc.selector,
                    v,
                    v.local.as_ref(),
                    v.local_hysteresis.or(v.hysteresis),
                    v.answers,
                    v.weighted,
                ),
            ))
        })
        .collect();
    Ok((global, local))
}
