//! Prometheus metrics of a node, served at `GET /metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// Every metric a node exports. Cheap to update from any task (atomics inside).
pub struct Metrics {
    registry: Registry,
    /// Reports and summaries received, by peer role.
    pub messages_received: Family<Labels, Counter>,
    /// Messages or peers refused, by reason.
    pub refused: Family<Labels, Counter>,
    /// Answer changes, by service and tier.
    pub decisions: Family<Labels, Counter>,
    /// Health changes seen, by service and new health.
    pub health_changes: Family<Labels, Counter>,
    /// Connected peers.
    pub peers: Gauge,
    /// Peer connections accepted since start (a reconnect counts again).
    pub peer_connects: Counter,
    /// Publish attempts, by publisher and result.
    pub publishes: Family<Labels, Counter>,
    /// Probe run time in seconds, by probe kind.
    pub probe_seconds: Family<Labels, Histogram>,
    /// Degraded (fail-static) services right now.
    pub degraded_services: Gauge,
    /// Times the node ran out of file descriptors, by what it was doing.
    pub fd_shortages: Family<Labels, Counter>,
    /// Status connections closed at once (over the cap).
    pub status_refused: Counter,
    /// Expiry of this node's certificate and of the CA (Unix seconds), by `cert`.
    pub certificate_expiry: Family<Labels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered under the `fedlb_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fedlb");
        let m = Metrics {
            messages_received: Family::default(),
            refused: Family::default(),
            decisions: Family::default(),
            health_changes: Family::default(),
            peers: Gauge::default(),
            peer_connects: Counter::default(),
            publishes: Family::default(),
            probe_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 14))
            }),
            degraded_services: Gauge::default(),
            fd_shortages: Family::default(),
            status_refused: Counter::default(),
            certificate_expiry: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "messages_received",
            "Reports and summaries received",
            m.messages_received.clone(),
        );
        registry.register("refused", "Peers or messages refused", m.refused.clone());
        registry.register("decisions", "Answer changes", m.decisions.clone());
        registry.register(
            "health_changes",
            "Health changes seen",
            m.health_changes.clone(),
        );
        registry.register("peers", "Connected peers", m.peers.clone());
        registry.register(
            "peer_connects",
            "Peer connections accepted since start",
            m.peer_connects.clone(),
        );
        registry.register(
            "publishes",
            "Publish attempts by result",
            m.publishes.clone(),
        );
        registry.register("probe_seconds", "Probe run time", m.probe_seconds.clone());
        registry.register(
            "degraded_services",
            "Services answering fail-static",
            m.degraded_services.clone(),
        );
        registry.register(
            "fd_shortages",
            "Times the node ran out of file descriptors",
            m.fd_shortages.clone(),
        );
        registry.register(
            "status_refused",
            "Status connections closed at once over the cap",
            m.status_refused.clone(),
        );
        registry.register(
            "certificate_expiry_seconds",
            "Expiry of this node's certificate (cert=node) and of the CA (cert=ca), Unix seconds",
            m.certificate_expiry.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Records when the node's credentials expire.
    pub fn set_certificate_expiry(&self, expiry: crate::status::CertificateExpiry) {
        for (cert, at) in [
            ("node", expiry.node_expires_at),
            ("ca", expiry.ca_expires_at),
        ] {
            self.certificate_expiry
                .get_or_create(&labels(&[("cert", cert)]))
                .set(i64::try_from(at).unwrap_or(i64::MAX));
        }
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Labels from pairs.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
