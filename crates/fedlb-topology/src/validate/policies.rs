//! Tiers and their policies (global and local).

use std::collections::BTreeSet;

use fedlb_core::{
    AnswerSet, CandidateId, ClosestBy, FailStatic, Filter, Hysteresis, Policy, SelectorConfig,
    Spill,
};

use crate::policy::PolicyKind;
use crate::schema::{RawAnswers, RawPolicyTable, RawTier};

use super::{Ctx, OrderCheck, PolicyUse};

impl Ctx<'_> {
    pub(super) fn tier(
        &mut self,
        path: &str,
        raw: Option<&RawTier>,
        base: SelectorConfig,
        usage: &PolicyUse<'_>,
        orders: &mut Vec<OrderCheck>,
    ) -> Option<SelectorConfig> {
        let Some(raw) = raw else { return Some(base) };
        let mut cfg = base;
        let mut ok = true;
        if let Some(p) = &raw.policy {
            let ppath = format!("{path}.policy");
            match self.policy(&ppath, &p.0, usage, orders, false) {
                Some(p) => cfg.policy = p,
                None => ok = false,
            }
            // A tier that names its policy answers that policy's top `answers` (the
            // patent's preferred server), not the default weighted set, unless it also
            // says `answers = "weighted"`.
            cfg.set = AnswerSet::Top;
        }
        match &raw.answers {
            Some(RawAnswers::Count(a)) => match self.int(&format!("{path}.answers"), *a, 1, 64) {
                Some(a) => {
                    cfg.answers = a as usize;
                    cfg.set = AnswerSet::Top;
                }
                None => ok = false,
            },
            Some(RawAnswers::Named(name)) if name == "weighted" => cfg.set = AnswerSet::Weighted,
            Some(RawAnswers::Named(other)) => {
                self.err(
                    format!("{path}.answers"),
                    format!(
                        "unknown answers \"{other}\" (expected a number of addresses 1..=64, or \"weighted\": every healthy member, weighted by headroom)"
                    ),
                );
                ok = false;
            }
            None => {}
        }
        if let Some(sp) = &raw.spill {
            match sp.as_str() {
                "move" => cfg.spill = Spill::Move,
                "split" => cfg.spill = Spill::Split,
                other => {
                    self.err(
                        format!("{path}.spill"),
                        format!("unknown spill \"{other}\" (expected move or split)"),
                    );
                    ok = false;
                }
            }
        }
        if let Some(fs) = &raw.fail_static {
            match fs.as_str() {
                "keep_last" => cfg.fail_static = FailStatic::KeepLast,
                "all" => cfg.fail_static = FailStatic::All,
                other => {
                    self.err(
                        format!("{path}.fail_static"),
                        format!("unknown fail_static \"{other}\" (expected keep_last or all)"),
                    );
                    ok = false;
                }
            }
        }
        if let Some(h) = &raw.hysteresis {
            let mut hyst: Hysteresis = cfg.hysteresis;
            if let Some(m) = h.margin {
                if (0.0..1.0).contains(&m) {
                    hyst.margin = m;
                } else {
                    self.err(
                        format!("{path}.hysteresis.margin"),
                        format!("margin {m} is out of range 0..1 (0.2 = a challenger must be 20 % better)"),
                    );
                    ok = false;
                }
            }
            if let Some(d) = &h.dwell {
                match self.duration(&format!("{path}.hysteresis.dwell"), d) {
                    Some(d) => hyst.dwell = d,
                    None => ok = false,
                }
            }
            cfg.hysteresis = hyst;
        }
        if let Some(r) = &raw.rotate_every {
            match self.positive_duration(&format!("{path}.rotate_every"), r) {
                Some(r) => cfg.rotate_every = r,
                None => ok = false,
            }
        }
        let has_max_load = matches!(&cfg.policy, Policy::Composite { filters, .. }
            if filters.iter().any(|f| matches!(f, Filter::MaxLoad(_))));
        if raw.spill.is_none() && !has_max_load {
            // the default split (with regions) needs a limit; a policy without one moves
            cfg.spill = Spill::Move;
        }
        if ok && cfg.spill == Spill::Split && !has_max_load {
            self.err(
                format!("{path}.spill"),
                format!(
                    "spill \"split\" needs a composite policy with a max_load filter (the limit it splits at); the policy is {}",
                    cfg.policy
                ),
            );
            ok = false;
        }
        if ok && raw.spill.is_some() && cfg.spill == Spill::Split && cfg.set == AnswerSet::Weighted
        {
            self.warn(
                format!("{path}.spill"),
                "spill \"split\" has no effect with answers = \"weighted\" (every healthy member is answered already)",
            );
        }
        ok.then_some(cfg)
    }

    pub(super) fn policy(
        &mut self,
        path: &str,
        raw: &RawPolicyTable,
        usage: &PolicyUse<'_>,
        orders: &mut Vec<OrderCheck>,
        nested: bool,
    ) -> Option<Policy> {
        let p = |f: &str| format!("{path}.{f}");
        let Some(kind) = PolicyKind::from_name(&raw.kind) else {
            self.err(
                if raw.short {
                    path.to_owned()
                } else {
                    p("kind")
                },
                format!(
                    "unknown policy \"{}\" (expected one of {})",
                    raw.kind,
                    PolicyKind::list(PolicyKind::ALL)
                ),
            );
            return None;
        };
        let given = [
            ("by", raw.by.is_some()),
            ("order", raw.order.is_some()),
            ("metric", raw.metric.is_some()),
            ("filters", raw.filters.is_some()),
            ("rank", raw.rank.is_some()),
            ("fallback", raw.fallback.is_some()),
        ];
        let mut ok = true;
        for (field, present) in given {
            if present && !kind.fields().contains(&field) {
                self.err(
                    p(field),
                    format!("`{field}` does not apply to policy \"{}\"", raw.kind),
                );
                ok = false;
            }
        }
        let policy = match kind {
            PolicyKind::LeastLoaded
            | PolicyKind::FastestResponse
            | PolicyKind::Weighted
            | PolicyKind::RoundRobin
            | PolicyKind::Random
            | PolicyKind::TwoChoices => kind.plain()?,
            PolicyKind::Closest => match raw.by.as_deref().unwrap_or("auto") {
                "auto" => Policy::Closest(ClosestBy::Auto),
                "rtt" => Policy::Closest(ClosestBy::Rtt),
                "hops" => Policy::Closest(ClosestBy::Hops),
                "declared" => Policy::Closest(ClosestBy::Declared),
                other => {
                    self.err(
                        p("by"),
                        format!("unknown distance \"{other}\" for policy \"closest\" (expected auto, rtt, hops or declared)"),
                    );
                    return None;
                }
            },
            PolicyKind::Failover => {
                let order = raw.order.clone().unwrap_or_default();
                if order.is_empty() {
                    self.err(
                        p("order"),
                        "policy \"failover\" needs `order`, the names to prefer in turn",
                    );
                    return None;
                }
                let mut seen = BTreeSet::new();
                for (i, n) in order.iter().enumerate() {
                    if !seen.insert(n) {
                        self.err(
                            format!("{path}.order[{i}]"),
                            format!("\"{n}\" listed twice"),
                        );
                        ok = false;
                    }
                }
                let order: Vec<CandidateId> = order.into_iter().map(CandidateId::from).collect();
                orders.push(OrderCheck {
                    path: p("order"),
                    service: usage.service.clone(),
                    scope: usage.scope.clone(),
                    order: order.clone(),
                });
                Policy::Failover(order)
            }
            PolicyKind::LowestMetric => {
                let Some(m) = raw.metric.clone().filter(|m| !m.trim().is_empty()) else {
                    self.err(p("metric"), "policy \"lowest_metric\" needs `metric`");
                    return None;
                };
                self.check_metric(&p("metric"), &m, usage);
                Policy::LowestMetric(m)
            }
            PolicyKind::Composite => {
                if nested {
                    self.err(
                        path,
                        "a composite policy cannot rank by another composite (in `rank` or `fallback`); merge their filters",
                    );
                    return None;
                }
                let raw_filters = raw.filters.clone().unwrap_or_default();
                if raw_filters.is_empty() {
                    self.err(
                        p("filters"),
                        "policy \"composite\" needs `filters`, e.g. [{ max_load = 0.8 }]",
                    );
                    ok = false;
                }
                let mut filters = Vec::new();
                for (i, f) in raw_filters.iter().enumerate() {
                    let fp = format!("{path}.filters[{i}]");
                    let mut any = false;
                    if let Some(l) = f.max_load {
                        any = true;
                        if (0.0..=1.0).contains(&l) {
                            filters.push(Filter::MaxLoad(l));
                        } else {
                            self.err(
                                format!("{fp}.max_load"),
                                format!("{l} is out of range 0..=1 (0.8 = 80 % of capacity)"),
                            );
                            ok = false;
                        }
                    }
                    if let Some(d) = &f.max_response_time {
                        any = true;
                        match self.positive_duration(&format!("{fp}.max_response_time"), d) {
                            Some(d) => filters.push(Filter::MaxResponseTime(d)),
                            None => ok = false,
                        }
                    }
                    let missing = match f.missing.as_deref() {
                        None => None,
                        Some("pass") => Some(false),
                        Some("fail") => Some(true),
                        Some(other) => {
                            self.err(
                                format!("{fp}.missing"),
                                format!("unknown missing \"{other}\" (expected pass or fail: what a candidate that does not report the metric does)"),
                            );
                            ok = false;
                            None
                        }
                    };
                    if f.missing.is_some() && f.max_metric.is_none() {
                        self.err(
                            format!("{fp}.missing"),
                            "`missing` applies to a max_metric filter only",
                        );
                        ok = false;
                    }
                    if let Some(m) = &f.max_metric {
                        any |= !m.is_empty();
                        for (name, v) in m {
                            if v.is_finite() {
                                let mp = format!("{fp}.max_metric.{name}");
                                // an explicit (or unreadable) `missing` says it all
                                if f.missing.is_none() {
                                    ok &= self.check_filter_metric(&mp, name, usage);
                                }
                                filters.push(if missing == Some(true) {
                                    Filter::MaxMetricRequired(name.clone(), *v)
                                } else {
                                    Filter::MaxMetric(name.clone(), *v)
                                });
                            } else {
                                self.err(
                                    format!("{fp}.max_metric.{name}"),
                                    format!("{v} is not a number"),
                                );
                                ok = false;
                            }
                        }
                    }
                    if !any {
                        self.err(
                            fp,
                            "an empty filter: give max_load, max_response_time or max_metric",
                        );
                        ok = false;
                    }
                }
                let Some(rank) = &raw.rank else {
                    self.err(
                        p("rank"),
                        "policy \"composite\" needs `rank`, the policy applied among those passing",
                    );
                    return None;
                };
                let rank = self.policy(&p("rank"), &rank.0, usage, orders, true);
                let fallback = match &raw.fallback {
                    Some(f) => Some(Box::new(self.policy(
                        &p("fallback"),
                        &f.0,
                        usage,
                        orders,
                        true,
                    )?)),
                    None => None,
                };
                Policy::Composite {
                    filters,
                    rank: Box::new(rank?),
                    fallback,
                }
            }
        };
        ok.then_some(policy)
    }

    /// A `max_metric` filter without `missing`: a candidate that does not report the metric
    /// would pass it silently, so the metric must reach every candidate — measured by a probe,
    /// and at the global tier of a service farms offer, carried in their summaries.
    fn check_filter_metric(&mut self, path: &str, metric: &str, usage: &PolicyUse<'_>) -> bool {
        let service = usage.service;
        if !usage.metrics.contains(metric) {
            self.err(
                path,
                format!(
                    "no probe of service \"{service}\" measures metric \"{metric}\", so every candidate would pass this filter: measure it (a command probe, or a prometheus load probe with record_as = \"metric\"), or say what a candidate without it does (missing = \"pass\" or \"fail\")"
                ),
            );
            return false;
        }
        if let Some(carried) = usage.farm_metrics
            && !carried.contains(metric)
        {
            self.err(
                path,
                format!(
                    "farm summaries of service \"{service}\" do not carry metric \"{metric}\", so every farm would pass this filter: declare how farms aggregate it (metrics = {{ {metric} = \"sum\" }}, or min, max, mean), or say what a candidate without it does (missing = \"pass\" or \"fail\")"
                ),
            );
            return false;
        }
        true
    }

    pub(super) fn check_metric(&mut self, path: &str, metric: &str, usage: &PolicyUse<'_>) {
        if let Some(carried) = usage.farm_metrics
            && usage.metrics.contains(metric)
            && !carried.contains(metric)
        {
            self.warn(
                path,
                format!(
                    "farm summaries of service \"{}\" do not carry metric \"{metric}\" (declare metrics = {{ {metric} = \"sum\" }}, or min, max, mean): farms are ranked after the candidates that report it",
                    usage.service
                ),
            );
        }
        if !usage.metrics.contains(metric) {
            self.warn(
                path,
                format!(
                    "no probe of service \"{}\" measures metric \"{metric}\" (add a command or prometheus load probe)",
                    usage.service
                ),
            );
        }
    }
}
