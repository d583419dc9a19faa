//! Farms under the global policy: a whole farm down and back (fail-back only after the
//! hysteresis dwell), a farm node killed and restarted, servers attached directly competing
//! with farms (mixed mode), and a local policy that differs from the global one as the
//! status endpoint shows it.

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use fedlb_integration::{
    FarmSpec, Fed, PATIENCE, ServerSpec, Topo, bring_up, fedlb_bin, global_service_status, ip_of,
    record_timing, status, strings, wait_for,
};

const GLOBAL_DWELL: Duration = Duration::from_secs(4);

/// near (10 ms): n1 remote, n2 intrusive (agent on the server); far (80 ms): f1.
fn two_farms(fed: &Fed) -> Topo {
    let mut near = FarmSpec::new(
        "near",
        fed.ip(2),
        10,
        vec![
            ServerSpec::remote("n1", fed.ip(11)),
            ServerSpec::intrusive("n2", fed.ip(12), "n2-agent"),
        ],
    );
    near.local = Some(
        r#"{ policy = { kind = "failover", order = ["n1", "n2"] }, hysteresis = { margin = 0.2, dwell = "1s" } }"#
            .to_owned(),
    );
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

/// The global node's view of candidate `id`: its health.
fn global_health(topo: &Topo, id: &str) -> Option<String> {
    let doc = status(&topo.status_url()).ok()?;
    let cands = doc["services"][0]["global"]["candidates"].as_array()?;
    let c = cands.iter().find(|c| c["id"] == id)?;
    c["health"].as_str().map(str::to_owned)
}

#[test]
fn farm_down_fails_over_then_back_after_dwell() {
    let scenario = "farm-down";
    let mut fed = Fed::new(scenario);
    let topo = two_farms(&fed);
    let dns = bring_up(&mut fed, &topo, &[]);
    let label = topo.dns.label();
    let (n1, n2, f1) = (ip_of(&topo, "n1"), ip_of(&topo, "n2"), ip_of(&topo, "f1"));
    dns.wait_answer(&[n1], Instant::now());

    // every server of the preferred farm down: the next farm by the global policy
    let t0 = Instant::now();
    fed.kill("n1");
    fed.kill("n2");
    let seen = dns.follow(
        t0,
        PATIENCE,
        |a| a == [n1] || a == [n2] || a == [f1],
        |a| a == [f1],
    );
    record_timing(scenario, "farm-down", label, seen.last().unwrap().at);
    wait_for("near down at the global node", PATIENCE, || {
        global_health(&topo, "near").filter(|h| h == "down")
    });

    // the farm recovers: the answer stays on far for the global dwell, then fails back,
    // and never returns to far
    let t0 = Instant::now();
    fed.backend("n1", topo.server("n1").addr(), 0);
    fed.backend("n2", topo.server("n2").addr(), 0);
    let seen = dns.follow(
        t0,
        PATIENCE,
        |a| a == [n1] || a == [n2] || a == [f1],
        |a| a == [n1],
    );
    assert_eq!(seen[0].answer, vec![f1], "{seen:?}");
    let back = seen[1].at;
    assert!(
        back >= GLOBAL_DWELL,
        "failed back after {back:?}, before the {GLOBAL_DWELL:?} dwell: {seen:?}"
    );
    assert!(
        seen[1..].iter().all(|s| s.answer != [f1]),
        "flapped back to far: {seen:?}"
    );
    record_timing(scenario, "fail-back", label, back);
    dns.hold(&[n1], Duration::from_secs(2));
}

#[test]
fn farm_node_killed_goes_stale_then_rejoins() {
    let scenario = "farm-node-killed";
    let mut fed = Fed::new(scenario);
    let topo = two_farms(&fed);
    let dns = bring_up(&mut fed, &topo, &[]);
    let label = topo.dns.label();
    let (n1, f1) = (ip_of(&topo, "n1"), ip_of(&topo, "f1"));
    dns.wait_answer(&[n1], Instant::now());

    // the farm node dies (its servers are fine): the global node stops hearing from it,
    // marks it stale and fails over
    let t0 = Instant::now();
    fed.kill("near");
    let seen = dns.follow(t0, PATIENCE, |a| a == [n1] || a == [f1], |a| a == [f1]);
    record_timing(scenario, "farm-node-killed", label, seen.last().unwrap().at);
    let health = wait_for("near not up at the global node", PATIENCE, || {
        global_health(&topo, "near").filter(|h| h != "up")
    });
    assert!(
        health == "stale" || health == "down",
        "near is {health}, not stale/down"
    );

    // restarted: it rejoins (heard again, up), and the answer fails back after the dwell
    let t0 = Instant::now();
    fed.start("near");
    wait_for("near up again at the global node", PATIENCE, || {
        global_health(&topo, "near").filter(|h| h == "up")
    });
    let doc = status(&topo.status_url()).expect("status");
    let heard = doc["services"][0]["farms"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["farm"] == "near"))
        .and_then(|f| f["heard_s_ago"].as_f64())
        .expect("near's heard_s_ago");
    assert!(
        heard < 5.0,
        "near rejoined but was last heard {heard} s ago"
    );
    let seen = dns.follow(t0, PATIENCE, |a| a == [n1] || a == [f1], |a| a == [n1]);
    assert_eq!(seen.len(), 2, "flapped: {seen:?}");
    assert!(
        seen[1].at >= GLOBAL_DWELL,
        "failed back after {:?}, before the dwell",
        seen[1].at
    );
    record_timing(scenario, "farm-node-rejoined", label, seen[1].at);
}

#[test]
fn mixed_mode_direct_servers_compete_with_farms() {
    let scenario = "mixed-mode";
    let mut fed = Fed::new(scenario);
    let mut topo = two_farms(&fed);
    topo.global_tier =
        r#"{ policy = "closest", hysteresis = { margin = 0.2, dwell = "3s" } }"#.to_owned();
    topo.farms[0].servers.truncate(1); // near: n1 only
    topo.farms[0].local = None;
    topo.direct = vec![
        ServerSpec::remote("d1", fed.ip(31)).distance(5),
        ServerSpec::intrusive("d2", fed.ip(32), "d2-agent").distance(20),
    ];
    let dns = bring_up(&mut fed, &topo, &[]);
    let label = topo.dns.label();
    let ip = |n: &str| ip_of(&topo, n);
    let (d1, d2, n1, f1) = (ip("d1"), ip("d2"), ip("n1"), ip("f1"));
    let known = |a: &[IpAddr]| [d1, d2, n1, f1].iter().any(|x| a == [*x]);

    // d1 (5 ms, probed by the global node itself) beats every farm
    dns.wait_answer(&[d1], Instant::now());
    let svc = global_service_status(&topo);
    let kinds: Vec<(String, String)> = svc["global"]["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap_or_default().to_owned(),
                c["kind"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for (id, kind) in [
        ("d1", "server"),
        ("d2", "server"),
        ("near", "farm"),
        ("far", "farm"),
    ] {
        assert!(
            kinds.contains(&(id.to_owned(), kind.to_owned())),
            "{id} ({kind}) missing among the global candidates {kinds:?}"
        );
    }

    // d1 down: the nearest farm (10 ms) wins over d2 (20 ms)
    let t0 = Instant::now();
    fed.kill("d1");
    let seen = dns.follow(t0, PATIENCE, known, |a| a == [n1]);
    record_timing(
        scenario,
        "direct-down-farm-wins",
        label,
        seen.last().unwrap().at,
    );

    // the farm's only server down too: d2 (reported by its agent) beats the far farm
    let t0 = Instant::now();
    fed.kill("n1");
    let seen = dns.follow(t0, PATIENCE, known, |a| a == [d2]);
    record_timing(
        scenario,
        "farm-down-direct-wins",
        label,
        seen.last().unwrap().at,
    );

    // d1 back: it wins again once its dwell is over
    let t0 = Instant::now();
    fed.backend("d1", topo.server("d1").addr(), 0);
    let seen = dns.follow(t0, PATIENCE, known, |a| a == [d1]);
    assert_eq!(seen.len(), 2, "flapped: {seen:?}");
    record_timing(scenario, "direct-back", label, seen[1].at);
}

#[test]
fn local_policy_differs_from_global_and_status_shows_both() {
    let scenario = "local-vs-global";
    let mut fed = Fed::new(scenario);
    let mut topo = two_farms(&fed);
    topo.farms[0].servers = vec![
        ServerSpec::remote("n1", fed.ip(11)),
        ServerSpec::remote("n2", fed.ip(12)),
    ];
    topo.farms[0].local = Some(
        r#"{ policy = "fastest_response", hysteresis = { margin = 0.2, dwell = "1s" } }"#
            .to_owned(),
    );
    // n1 is slow (100 ms per answer), n2 fast
    let dns = bring_up(&mut fed, &topo, &[("n1", 100)]);
    let n2 = ip_of(&topo, "n2");
    let t0 = Instant::now();
    dns.wait_answer(&[n2], t0);

    let svc = wait_for(
        "the global node to show near's choice of n2",
        PATIENCE,
        || {
            let svc = global_service_status(&topo);
            let near = svc["farms"]
                .as_array()?
                .iter()
                .find(|f| f["farm"] == "near")?
                .clone();
            (strings(&near["local"]["chosen"]) == ["n2"]).then_some(svc)
        },
    );
    let global = &svc["global"];
    let near = svc["farms"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["farm"] == "near"))
        .expect("near in the global node's status")["local"]
        .clone();
    // the global choice and its why
    assert!(
        global["policy"]
            .as_str()
            .unwrap_or_default()
            .contains("closest"),
        "{global}"
    );
    assert_eq!(strings(&global["chosen"]), ["near"], "{global}");
    assert_eq!(strings(&global["answers"]), [n2.to_string()], "{global}");
    let gwhy = global["why"].as_str().unwrap_or_default().to_owned();
    assert!(gwhy.contains("near") && gwhy.contains("closest"), "{gwhy}");
    // the local choice and its why
    assert!(
        near["policy"]
            .as_str()
            .unwrap_or_default()
            .contains("fastest"),
        "{near}"
    );
    let lwhy = near["why"].as_str().unwrap_or_default().to_owned();
    assert!(lwhy.contains("n2") && lwhy.contains("fastest"), "{lwhy}");
    // what was published is what DNS answers
    assert_eq!(
        strings(&svc["published"]["addresses"]),
        [n2.to_string()],
        "{svc}"
    );
    assert_eq!(dns.answer().unwrap(), vec![n2]);

    // the farm node's own status agrees
    let farm_doc = status(&topo.farm("near").status_url()).expect("farm status");
    let local = &farm_doc["services"][0]["farms"][0]["local"];
    assert_eq!(strings(&local["chosen"]), ["n2"], "{local}");
    assert!(farm_doc["services"][0]["global"].is_null());

    // and `fedlb status` prints both choices with their why
    let out = Command::new(fedlb_bin())
        .arg("status")
        .arg(topo.status_url())
        .output()
        .expect("running fedlb status");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&gwhy), "global why missing from:\n{text}");
    // the local why carries live response times, which move between the
    // JSON read above and this one: compare its words, not its figures
    for part in [
        "why: n2: fastest response (",
        "of 2 healthy servers; next n1",
    ] {
        assert!(
            text.contains(part),
            "local why {part:?} missing from:\n{text}"
        );
    }
    record_timing(scenario, "startup", topo.dns.label(), t0.elapsed());
}
