//! The patent's policies across farms (issue 15, item 4), with the real binary and real
//! backends: farm summaries carry an application metric aggregated by the declared rule
//! (read by a Prometheus load probe that keeps its labels and records the metric under its
//! own name) and the hop count of the farm's answer, and a global "lowest metric" and a
//! global "closest by hops" policy choose between farms by them.
//!
//! On loopback every hops probe reads 1 (there is no router to count), so the end-to-end
//! hops test shows the farm's measured hop count reaching the global tier and being ranked
//! on; the choice between *different* hop counts is the core's test
//! (`fedlb-core/tests/farm_readings.rs`).

use std::net::IpAddr;
use std::time::Instant;

use fedlb_integration::{
    FarmSpec, Fed, HTTP_PROBE, PATIENCE, ServerSpec, Topo, http_post, ip_of, start_nodes, status,
    wait_for,
};

/// The users probe: the backend's `dbms_users{source="admin"}` series (not its decoy),
/// recorded as the metric `dbms_users`.
const USERS_PROBE: &str = r#"name = "users"
kind = "load"
source = "prometheus"
url = "http://server:8080/metrics"
metric = "dbms_users"
labels = { source = "admin" }
record_as = "metric"
interval = "250ms"
timeout = "200ms"
"#;

const HOPS_PROBE: &str = r#"kind = "hops"
max_hops = 4
interval = "1s"
timeout = "900ms"
"#;

/// near (10 ms): n1, n2; far (80 ms): f1; every server probed remotely by its farm node.
fn farms(fed: &Fed, global_policy: &str, probe: &str) -> Topo {
    let mut t = Topo::new(fed);
    t.global_tier =
        format!(r#"{{ policy = {global_policy}, hysteresis = {{ margin = 0.0, dwell = "0s" }} }}"#);
    t.probes = vec![HTTP_PROBE.to_owned(), probe.to_owned()];
    t.farms = vec![
        FarmSpec::new(
            "near",
            fed.ip(2),
            10,
            vec![
                ServerSpec::remote("n1", fed.ip(11)),
                ServerSpec::remote("n2", fed.ip(12)),
            ],
        ),
        FarmSpec::new(
            "far",
            fed.ip(3),
            80,
            vec![ServerSpec::remote("f1", fed.ip(21))],
        ),
    ];
    t
}

/// Writes the topology (with `service_extra` lines in the service), certificates, a backend
/// per server; `before_nodes` runs once the backends listen; then every node.
fn start(fed: &mut Fed, topo: &Topo, service_extra: &str, before_nodes: impl FnOnce()) {
    let text = topo.to_toml().replacen(
        "port = 8080\nglobal",
        &format!("port = 8080\n{service_extra}global"),
        1,
    );
    fed.write_topology(&text);
    fed.certs();
    for s in topo.servers() {
        fed.backend(&s.name, s.addr(), 0);
    }
    before_nodes();
    start_nodes(fed, topo);
}

fn set_users(topo: &Topo, server: &str, users: f64) {
    let url = format!(
        "http://{}/admin/metric?name=dbms_users&value={users}",
        topo.server(server).addr()
    );
    assert_eq!(http_post(&url), Ok(200), "{url}");
}

/// The global node's candidate `farm` of the (only) service.
fn global_candidate(topo: &Topo, farm: &str) -> Option<serde_json::Value> {
    let doc = status(&topo.status_url()).ok()?;
    let cands = doc["services"][0]["global"]["candidates"].as_array()?;
    cands.iter().find(|c| c["id"] == farm).cloned()
}

fn reading(c: &serde_json::Value, path: &[&str]) -> Option<f64> {
    let mut v = &c["readings"];
    for p in path {
        v = &v[*p];
    }
    v["value"].as_f64()
}

#[test]
fn a_global_lowest_metric_policy_chooses_the_farm_with_the_fewest_users_summed_over_its_servers() {
    let scenario = "farm-metric";
    let mut fed = Fed::new(scenario);
    let topo = farms(
        &fed,
        r#"{ kind = "lowest_metric", metric = "dbms_users" }"#,
        USERS_PROBE,
    );
    start(
        &mut fed,
        &topo,
        "metrics = { dbms_users = \"sum\" }\n",
        || {
            // near: 30 + 30 = 60 users in all, far: 40 (by the mean, near would have fewer)
            for (s, u) in [("n1", 30.0), ("n2", 30.0), ("f1", 40.0)] {
                set_users(&topo, s, u);
            }
        },
    );
    let dns = fedlb_integration::DnsWatch::new(topo.dns_addr(), &topo.fqdn);
    let (n1, n2, f1) = (ip_of(&topo, "n1"), ip_of(&topo, "n2"), ip_of(&topo, "f1"));
    dns.wait_answer(&[f1], Instant::now());
    // the farms' summaries carry the sum, of the labelled series only (the decoy is 1e9)
    wait_for("near to report 60 users, far 40", PATIENCE, || {
        let near = reading(
            &global_candidate(&topo, "near")?,
            &["metrics", "dbms_users"],
        )?;
        let far = reading(&global_candidate(&topo, "far")?, &["metrics", "dbms_users"])?;
        (near == 60.0 && far == 40.0).then_some(())
    });
    let why = global_candidate(&topo, "far").unwrap()["shown"].clone();
    assert_eq!(why, "dbms_users 40", "{why}");

    // far's users grow past near's: the answer moves to near
    set_users(&topo, "f1", 100.0);
    let t0 = Instant::now();
    let seen = dns.follow(
        t0,
        PATIENCE,
        |a| a == [f1] || a == [n1] || a == [n2],
        |a| a == [n1] || a == [n2],
    );
    assert!(!seen.is_empty());
    let near = global_candidate(&topo, "near").unwrap();
    assert_eq!(near["chosen"], true, "{near}");
}

#[test]
fn a_global_closest_by_hops_policy_ranks_farms_by_the_hops_their_summaries_carry() {
    let scenario = "farm-hops";
    let mut fed = Fed::new(scenario);
    let topo = farms(&fed, r#"{ kind = "closest", by = "hops" }"#, HOPS_PROBE);
    start(&mut fed, &topo, "", || {});
    let dns = fedlb_integration::DnsWatch::new(topo.dns_addr(), &topo.fqdn);
    // both farms report the hops their farm node's probe measured to the server of their
    // answer: 1 on loopback, so they tie, and the tie goes by name
    wait_for("both farms to report their hops", PATIENCE, || {
        let near = global_candidate(&topo, "near")?;
        let far = global_candidate(&topo, "far")?;
        let both = [reading(&near, &["hops"])?, reading(&far, &["hops"])?];
        (both == [1.0, 1.0] && near["shown"] == "1 hops" && far["shown"] == "1 hops").then_some(())
    });
    // A tie: decided with both farms heard, it goes to far by name; but a farm heard a
    // moment after the first decision (its farm node's first packet can precede the global
    // node's socket, and QUIC resends it a second later) finds the other answered, and a
    // tie does not displace the answer. Either way, the farm whose answer loses its hop
    // count ranks last and the other takes over.
    let f1: IpAddr = ip_of(&topo, "f1");
    let (n1, n2) = (ip_of(&topo, "n1"), ip_of(&topo, "n2"));
    let near = |a: &[IpAddr]| a == [n1] || a == [n2];
    let first = dns.follow(
        Instant::now(),
        PATIENCE,
        |a| a == [f1] || near(a),
        |a| a == [f1] || near(a),
    );
    let answered = first.last().expect("an answer").answer.clone();
    if answered == [f1] {
        // far's only server goes down: its answer has no hop count any more
        fed.kill("f1");
        dns.follow(Instant::now(), PATIENCE, |a| a == [f1] || near(a), near);
    } else {
        // near's servers go down: near has no answer, so no hop count
        fed.kill("n1");
        fed.kill("n2");
        dns.follow(
            Instant::now(),
            PATIENCE,
            |a| a == [f1] || near(a),
            |a| a == [f1],
        );
    }
}
