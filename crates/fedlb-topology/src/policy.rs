//! The policy names files write (`policy = "least_loaded"`): the one table that topologies
//! and `fedlb simulate` scenarios read them from.

use fedlb_core::{ClosestBy, Policy};

/// A policy as a file names it, before its fields are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    /// `"least_loaded"`.
    LeastLoaded,
    /// `"fastest_response"`.
    FastestResponse,
    /// `"closest"` (field `by`).
    Closest,
    /// `"weighted"`.
    Weighted,
    /// `"failover"` (field `order`).
    Failover,
    /// `"round_robin"`.
    RoundRobin,
    /// `"random"`.
    Random,
    /// `"lowest_metric"` (field `metric`).
    LowestMetric,
    /// `"two_choices"`.
    TwoChoices,
    /// `"composite"` (fields `filters`, `rank`, optional `fallback`).
    Composite,
}

impl PolicyKind {
    /// Every kind, in the order messages list them.
    pub const ALL: [PolicyKind; 10] = [
        PolicyKind::LeastLoaded,
        PolicyKind::FastestResponse,
        PolicyKind::Closest,
        PolicyKind::Weighted,
        PolicyKind::Failover,
        PolicyKind::RoundRobin,
        PolicyKind::Random,
        PolicyKind::LowestMetric,
        PolicyKind::TwoChoices,
        PolicyKind::Composite,
    ];

    /// The name a file writes.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::LeastLoaded => "least_loaded",
            PolicyKind::FastestResponse => "fastest_response",
            PolicyKind::Closest => "closest",
            PolicyKind::Weighted => "weighted",
            PolicyKind::Failover => "failover",
            PolicyKind::RoundRobin => "round_robin",
            PolicyKind::Random => "random",
            PolicyKind::LowestMetric => "lowest_metric",
            PolicyKind::TwoChoices => "two_choices",
            PolicyKind::Composite => "composite",
        }
    }

    /// The kind a file's name stands for.
    pub fn from_name(name: &str) -> Option<PolicyKind> {
        PolicyKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The fields the policy's table may carry besides `kind`.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            PolicyKind::Closest => &["by"],
            PolicyKind::Failover => &["order"],
            PolicyKind::LowestMetric => &["metric"],
            PolicyKind::Composite => &["filters", "rank", "fallback"],
            PolicyKind::LeastLoaded
            | PolicyKind::FastestResponse
            | PolicyKind::Weighted
            | PolicyKind::RoundRobin
            | PolicyKind::Random
            | PolicyKind::TwoChoices => &[],
        }
    }

    /// The policy when the name alone says it all (`"closest"` measures as `by = "auto"`);
    /// `None` for the kinds that need a field (`failover`, `lowest_metric`, `composite`).
    pub fn plain(self) -> Option<Policy> {
        Some(match self {
            PolicyKind::LeastLoaded => Policy::LeastLoaded,
            PolicyKind::FastestResponse => Policy::FastestResponse,
            PolicyKind::Closest => Policy::Closest(ClosestBy::Auto),
            PolicyKind::Weighted => Policy::Weighted,
            PolicyKind::RoundRobin => Policy::RoundRobin,
            PolicyKind::Random => Policy::Random,
            PolicyKind::TwoChoices => Policy::TwoChoices,
            PolicyKind::Failover | PolicyKind::LowestMetric | PolicyKind::Composite => {
                return None;
            }
        })
    }

    /// The names of `kinds`, comma-separated, for messages.
    pub fn list(kinds: impl IntoIterator<Item = PolicyKind>) -> String {
        kinds
            .into_iter()
            .map(PolicyKind::name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_reads_back_as_its_kind() {
        for k in PolicyKind::ALL {
            assert_eq!(PolicyKind::from_name(k.name()), Some(k));
        }
        assert_eq!(PolicyKind::from_name("fastest"), None);
    }

    #[test]
    fn a_plain_policy_is_one_that_takes_no_required_field() {
        let needing: Vec<_> = PolicyKind::ALL
            .into_iter()
            .filter(|k| k.plain().is_none())
            .collect();
        assert_eq!(
            needing,
            [
                PolicyKind::Failover,
                PolicyKind::LowestMetric,
                PolicyKind::Composite
            ]
        );
        assert_eq!(
            PolicyKind::Closest.plain(),
            Some(Policy::Closest(ClosestBy::Auto))
        );
    }
}
