//! Topology reloads while running: a new global policy takes effect on the next decision
//! without any connection being dropped; servers added and removed at runtime.

use std::time::Instant;

use fedlb_integration::{
    FarmSpec, Fed, PATIENCE, ServerSpec, Topo, bring_up, ip_of, record_timing, status, strings,
    wait_for,
};

/// near (10 ms): n1; far (80 ms): f1.
fn two_farms(fed: &Fed) -> Topo {
    let mut t = Topo::new(fed);
    t.global_tier =
        r#"{ policy = "closest", hysteresis = { margin = 0.2, dwell = "2s" } }"#.to_owned();
    t.farms = vec![
        FarmSpec::new(
            "near",
            fed.ip(2),
            10,
            vec![ServerSpec::remote("n1", fed.ip(11))],
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

fn count(log: &str, what: &str) -> usize {
    log.lines().filter(|l| l.contains(what)).count()
}

/// Connection events of every node, to compare before and after a reload.
fn connections(fed: &Fed, topo: &Topo) -> Vec<(String, usize, usize)> {
    let mut out = vec![(
        "global".to_owned(),
        count(&fed.log("global"), "fedlb_node::common: peer connected"),
        count(&fed.log("global"), "peer disconnected"),
    )];
    for f in &topo.farms {
        let log = fed.log(&f.name);
        out.push((
            f.name.clone(),
            count(&log, "fedlb_net::client: connected"),
            count(&log, "will retry"),
        ));
    }
    out
}

/// Waits until every node has logged a reload `n` times.
fn wait_reloaded(fed: &Fed, topo: &Topo, n: usize) {
    let mut nodes = vec!["global".to_owned()];
    nodes.extend(topo.farms.iter().map(|f| f.name.clone()));
    for node in nodes {
        wait_for(&format!("{node} to reload"), PATIENCE, || {
            (count(&fed.log(&node), "new topology in force") >= n).then_some(())
        });
    }
}

#[test]
fn policy_reload_changes_decisions_without_reconnects() {
    let scenario = "policy-reload";
    let mut fed = Fed::new(scenario);
    let mut topo = two_farms(&fed);
    let dns = bring_up(&mut fed, &topo, &[]);
    let label = topo.dns.label();
    let (n1, f1) = (ip_of(&topo, "n1"), ip_of(&topo, "f1"));
    dns.wait_answer(&[n1], Instant::now());
    // a farm node that dialled before the global node listened connects at its next
    // attempt: the answer can be there before every farm node is
    let before = wait_for("every node connected", PATIENCE, || {
        let c = connections(&fed, &topo);
        c.iter()
            .all(|(_, connected, _)| *connected >= 1)
            .then_some(c)
    });
    assert!(
        before.iter().all(|(_, connected, _)| *connected >= 1),
        "{before:?}"
    );

    // the global policy changes from closest to a fixed order preferring far
    topo.global_tier = r#"{ policy = { kind = "failover", order = ["far", "near"] }, hysteresis = { margin = 0.2, dwell = "2s" } }"#.to_owned();
    let t0 = Instant::now();
    fed.write_topology(&topo.to_toml());
    let seen = dns.follow(t0, PATIENCE, |a| a == [n1] || a == [f1], |a| a == [f1]);
    record_timing(scenario, "policy-reload", label, seen.last().unwrap().at);
    wait_reloaded(&fed, &topo, 1);
    let doc = status(&topo.status_url()).expect("status");
    let global = &doc["services"][0]["global"];
    assert!(
        global["policy"]
            .as_str()
            .unwrap_or_default()
            .contains("failover"),
        "{global}"
    );
    assert_eq!(strings(&global["chosen"]), ["far"], "{global}");
    assert_eq!(connections(&fed, &topo), before, "a reload reconnected");

    // and back: a second reload, still on the same connections
    topo.global_tier =
        r#"{ policy = "closest", hysteresis = { margin = 0.2, dwell = "2s" } }"#.to_owned();
    let t0 = Instant::now();
    fed.write_topology(&topo.to_toml());
    let seen = dns.follow(t0, PATIENCE, |a| a == [n1] || a == [f1], |a| a == [n1]);
    record_timing(
        scenario,
        "policy-reload-back",
        label,
        seen.last().unwrap().at,
    );
    wait_reloaded(&fed, &topo, 2);
    assert_eq!(connections(&fed, &topo), before, "a reload reconnected");
}

#[test]
fn servers_added_and_removed_at_runtime() {
    let scenario = "servers-added-removed";
    let mut fed = Fed::new(scenario);
    let mut topo = two_farms(&fed);
    topo.farms[0].local = Some(
        r#"{ policy = { kind = "failover", order = ["n1"] }, hysteresis = { margin = 0.2, dwell = "1s" } }"#
            .to_owned(),
    );
    let dns = bring_up(&mut fed, &topo, &[]);
    let label = topo.dns.label();
    let (n1, f1) = (ip_of(&topo, "n1"), ip_of(&topo, "f1"));
    dns.wait_answer(&[n1], Instant::now());
    let before = connections(&fed, &topo);

    // n2 joins farm near, first in its order
    let n2_spec = ServerSpec::remote("n2", fed.ip(12));
    let n2 = std::net::IpAddr::V4(n2_spec.ip);
    fed.backend("n2", n2_spec.addr(), 0);
    topo.farms[0].servers.push(n2_spec);
    topo.farms[0].local = Some(
        r#"{ policy = { kind = "failover", order = ["n2", "n1"] }, hysteresis = { margin = 0.2, dwell = "1s" } }"#
            .to_owned(),
    );
    let t0 = Instant::now();
    fed.write_topology(&topo.to_toml());
    let seen = dns.follow(t0, PATIENCE, |a| a == [n1] || a == [n2], |a| a == [n2]);
    record_timing(scenario, "server-added", label, seen.last().unwrap().at);
    let farm = status(&topo.farm("near").status_url()).expect("farm status");
    let ids: Vec<String> = farm["services"][0]["farms"][0]["local"]["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .filter_map(|c| c["id"].as_str().map(str::to_owned))
        .collect();
    assert!(ids.contains(&"n2".to_owned()), "{ids:?}");

    // n2 removed again (while chosen): the answer goes back to n1 at once, never to far
    topo.farms[0].servers.retain(|s| s.name != "n2");
    topo.farms[0].local = Some(
        r#"{ policy = { kind = "failover", order = ["n1"] }, hysteresis = { margin = 0.2, dwell = "1s" } }"#
            .to_owned(),
    );
    let t0 = Instant::now();
    fed.write_topology(&topo.to_toml());
    let seen = dns.follow(t0, PATIENCE, |a| a == [n1] || a == [n2], |a| a == [n1]);
    record_timing(scenario, "server-removed", label, seen.last().unwrap().at);
    wait_for("n2 gone from the farm's status", PATIENCE, || {
        let farm = status(&topo.farm("near").status_url()).ok()?;
        let cands = farm["services"][0]["farms"][0]["local"]["candidates"].as_array()?;
        cands.iter().all(|c| c["id"] != "n2").then_some(())
    });
    assert_ne!(dns.answer().unwrap(), vec![f1]);
    assert_eq!(connections(&fed, &topo), before, "a reload reconnected");
}
