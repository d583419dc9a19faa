//! A farm with two farm nodes, with the real binary (issue 17 item 2): `kill -9` one farm
//! node and no answer changes; a backend failure afterwards still moves the answer, through
//! the surviving farm node.

use std::time::{Duration, Instant};

use fedlb_integration::{
    FarmSpec, Fed, PATIENCE, ServerSpec, Topo, bring_up, ip_of, record_timing, status, wait_for,
};

/// near (10 ms) with farm nodes near-a and near-b: n1 remote (probed by both), n2
/// intrusive (its agent reports to both); far (80 ms): f1.
fn two_node_farm(fed: &Fed) -> Topo {
    let mut near = FarmSpec::new(
        "near",
        fed.ip(2),
        10,
        vec![
            ServerSpec::remote("n1", fed.ip(11)),
            ServerSpec::intrusive("n2", fed.ip(12), "n2-agent"),
        ],
    );
    near.nodes = vec![
        ("near-a".to_owned(), fed.ip(2)),
        ("near-b".to_owned(), fed.ip(4)),
    ];
    near.local = Some(r#"{ policy = { kind = "failover", order = ["n1", "n2"] } }"#.to_owned());
    let mut t = Topo::new(fed);
    t.global_tier =
        r#"{ policy = "closest", hysteresis = { margin = 0.2, dwell = "4s" } }"#.to_owned();
    t.farms = vec![
        near,
        FarmSpec::new(
            "far",
            fed.ip(3),
            80,
            vec![ServerSpec::remote("f1", fed.ip(21))],
        ),
    ];
    t
}

/// The global node's view of farm `id`: (health, farm node in use).
fn global_farm(topo: &Topo, id: &str) -> Option<(String, String)> {
    let doc = status(&topo.status_url()).ok()?;
    let cands = doc["services"][0]["global"]["candidates"].as_array()?;
    let c = cands.iter().find(|c| c["id"] == id)?;
    Some((
        c["health"].as_str()?.to_owned(),
        c["node"].as_str()?.to_owned(),
    ))
}

#[test]
fn killing_one_farm_node_of_two_changes_no_answer() {
    let scenario = "farm-node-of-two-killed";
    let mut fed = Fed::new(scenario);
    let topo = two_node_farm(&fed);
    let dns = bring_up(&mut fed, &topo, &[]);
    let label = topo.dns.label();
    let (n1, n2) = (ip_of(&topo, "n1"), ip_of(&topo, "n2"));
    dns.wait_answer(&[n1], Instant::now());
    wait_for("near-a in use at the global node", PATIENCE, || {
        global_farm(&topo, "near").filter(|(h, n)| h == "up" && n == "near-a")
    });

    // near-a dies: the global node goes on with near-b's summaries; DNS, polled every
    // 50 ms for 4 s (over three stale windows of near-a), answers n1 throughout
    fed.kill("near-a");
    let t0 = Instant::now();
    dns.hold(&[n1], Duration::from_secs(4));
    let (health, node) = global_farm(&topo, "near").expect("near at the global node");
    assert_eq!((health.as_str(), node.as_str()), ("up", "near-b"));

    // n1 dies afterwards: near-b's own probe sees it, and the answer moves to n2
    let t1 = Instant::now();
    fed.kill("n1");
    let seen = dns.follow(t1, PATIENCE, |a| a == [n1] || a == [n2], |a| a == [n2]);
    record_timing(
        scenario,
        "backend-killed-after",
        label,
        seen.last().unwrap().at,
    );
    assert!(t0.elapsed() > Duration::from_secs(4));
}
