//! Metrics across farms (issue 15, item 4): the aggregation rules farm nodes run, the
//! `missing` of a metric filter, and Prometheus load probes that keep their labels and
//! record a metric under its own name.

use fedlb_core::{Aggregate, FarmId, Filter, Policy, ServiceId};
use fedlb_topology::{Format, LoadSource, ProbeKind, RecordAs, load_str};

const TOPOLOGY: &str = r#"
[global]
listen = "127.0.0.1:7400"
status = "127.0.0.1:7480"

[dns]
zone = "example.test."
embedded = { listen = "127.0.0.1:5353", state_dir = "state" }

[[services]]
name = "db"
fqdn = "db.example.test."
port = 5432
metrics = { users = "sum", lag = "max" }
global = { policy = { kind = "composite", filters = [{ max_metric = { users = 100 } }, { max_metric = { lag = 5 }, missing = "fail" }, { max_metric = { other = 1 }, missing = "pass" }], rank = { kind = "closest", by = "hops" } } }

[[services.probes]]
kind = "tcp"

[[services.probes]]
name = "users"
kind = "command"
argv = ["/bin/echo", "3"]
metric = "users"

[[services.probes]]
name = "lag"
kind = "load"
source = "prometheus"
url = "http://server:9090/metrics"
metric = "lag"
labels = { role = "replica" }
record_as = "metric"

[[farms]]
name = "eu"
listen = "127.0.0.2:7401"
status = "127.0.0.2:7481"

[[farms.servers]]
name = "eu1"
address = "127.0.0.21"
services = ["db"]
mode = "intrusive"
"#;

#[test]
fn farm_nodes_aggregate_each_declared_metric_by_its_rule() {
    let loaded = load_str(TOPOLOGY, Format::Toml, "m.toml").unwrap();
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let cfg = loaded.topology.farm_config(&FarmId::from("eu")).unwrap();
    let rules = &cfg.metrics[&ServiceId::from("db")];
    assert_eq!(rules["users"], Aggregate::Sum);
    assert_eq!(rules["lag"], Aggregate::Max);
}

#[test]
fn a_metric_filter_says_what_a_candidate_without_the_metric_does() {
    let loaded = load_str(TOPOLOGY, Format::Toml, "m.toml").unwrap();
    let svc = &loaded.topology.services[&ServiceId::from("db")];
    let Policy::Composite { filters, .. } = &svc.global.policy else {
        panic!("{:?}", svc.global.policy)
    };
    assert_eq!(
        filters,
        &[
            Filter::MaxMetric("users".into(), 100.0),
            Filter::MaxMetricRequired("lag".into(), 5.0),
            Filter::MaxMetric("other".into(), 1.0),
        ]
    );
}

#[test]
fn a_prometheus_load_probe_keeps_its_labels_and_may_record_a_metric_under_its_own_name() {
    let loaded = load_str(TOPOLOGY, Format::Toml, "m.toml").unwrap();
    let svc = &loaded.topology.services[&ServiceId::from("db")];
    let ProbeKind::Load(LoadSource::Prometheus {
        metric,
        labels,
        record_as,
        ..
    }) = &svc.probes[2].kind
    else {
        panic!("{:?}", svc.probes[2].kind)
    };
    assert_eq!(metric, "lag");
    assert_eq!(labels, &[("role".to_owned(), "replica".to_owned())]);
    assert_eq!(record_as, &RecordAs::Metric);
    // recorded as pending requests (the default), it is no metric the farms can summarise
    let text = TOPOLOGY.replace("record_as = \"metric\"\n", "");
    let loaded = load_str(&text, Format::Toml, "m.toml").unwrap();
    let warned: Vec<String> = loaded
        .warnings
        .iter()
        .map(|w| format!("{}: {}", w.path, w.message))
        .collect();
    assert_eq!(warned.len(), 1, "{warned:#?}");
    assert!(
        warned[0].starts_with(
            "services[0].metrics.lag: no probe of service \"db\" measures metric \"lag\""
        ),
        "{warned:#?}"
    );
}
