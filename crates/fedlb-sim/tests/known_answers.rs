//! Cases whose answer is known, so that the model cannot drift unnoticed.

use std::time::Duration;

use fedlb_sim::{Options, Report, Scenario, Topology, TopologyBuilder, simulate};

fn run(topo: &Topology, scenario: &str) -> Report {
    let sc = Scenario::parse(scenario, "test.toml").expect("valid scenario");
    simulate(topo, &sc, &Options::default()).expect("runs")
}

/// One farm `dc` of `n` servers named s1…sn with the given capacity.
fn one_farm(n: usize, capacity: f64) -> TopologyBuilder {
    let names: Vec<String> = (1..=n).map(|i| format!("s{i}")).collect();
    let servers: Vec<(&str, f64)> = names.iter().map(|s| (s.as_str(), capacity)).collect();
    TopologyBuilder::new().farm("dc", 10.0, None, &servers)
}

#[test]
fn identical_servers_one_region_round_robin_and_least_loaded_agree() {
    let topo = one_farm(4, 4.0).ttl(Duration::from_secs(5)).build();
    let r = run(
        &topo,
        r#"
        duration = "10m"
        [server_defaults]
        slots = 4
        service_time = { dist = "exponential", mean = "10ms" }
        [[regions]]
        name = "here"
        rate = 100
        resolvers = 50
        [rtt_ms]
        here = { dc = 10 }
        [[policies]]
        name = "rr"
        flat = "round_robin"
        rotate_every = "1s"
        hysteresis = "none"
        [[policies]]
        name = "ll"
        flat = "least_loaded"
        hysteresis = "none"
        "#,
    );
    let (rr, ll) = (r.policy("rr").unwrap(), r.policy("ll").unwrap());
    for p in [rr, ll] {
        // 10 ms network + 10 ms service + a little queueing
        assert!(
            p.mean_ms > 19.0 && p.mean_ms < 25.0,
            "{}: {}",
            p.name,
            p.mean_ms
        );
        assert_eq!(p.to_down_share, 0.0);
        assert_eq!(p.refused_share, 0.0);
        assert!(p.requests > 51_000 && p.requests < 57_000, "{}", p.requests);
    }
    let gap = (rr.mean_ms - ll.mean_ms).abs() / rr.mean_ms.min(ll.mean_ms);
    assert!(gap < 0.05, "rr {} ms vs ll {} ms", rr.mean_ms, ll.mean_ms);
}

#[test]
fn a_dead_server_gets_no_requests_after_detection_plus_ttl() {
    let ttl = Duration::from_secs(10);
    let topo = one_farm(3, 1.0).ttl(ttl).build();
    let r = run(
        &topo,
        r#"
        duration = "8m"
        [server_defaults]
        slots = 8
        service_time = { dist = "exponential", mean = "10ms" }
        [[regions]]
        name = "here"
        rate = 200
        resolvers = 40
        [rtt_ms]
        here = { dc = 10 }
        [[faults]]
        kind = "server_down"
        target = "s1"
        at = "5m"
        [[policies]]
        name = "hierarchical-all"
        answers = 3
        [[policies]]
        name = "flat-all"
        flat = "least_loaded"
        answers = 3
        "#,
    );
    // Defaults: probes every 1 s with an 800 ms timeout, fall 2; report 1 ms, summary
    // 40 ms, publish 500 ms. The first failing probe starts within one interval of the
    // fault and each failure takes its timeout.
    let died = Duration::from_secs(300);
    let detection = (Duration::from_secs(1) + Duration::from_millis(800)) * 3;
    let plumbing = Duration::from_millis(1 + 40 + 500);
    let bound = died + detection + plumbing + ttl;
    for p in &r.policies {
        assert!(
            p.to_down_share > 0.0,
            "{}: the dead server was in the answer",
            p.name
        );
        let last = p.last_to_down.expect("requests went to the dead server");
        assert!(last >= died, "{}: {last:?}", p.name);
        assert!(
            last <= bound,
            "{}: last request to s1 at {last:?}, bound {bound:?}",
            p.name
        );
        // and fail-over is not instant either: resolvers keep the dead answer for a while
        assert!(last > died + Duration::from_secs(3), "{}: {last:?}", p.name);
    }
}

#[test]
fn zero_ttl_and_fresh_readings_least_loaded_beats_round_robin_on_unequal_servers() {
    let topo = TopologyBuilder::new()
        .farm(
            "dc",
            10.0,
            None,
            &[
                ("big", 8.0),
                ("small1", 1.0),
                ("small2", 1.0),
                ("small3", 1.0),
            ],
        )
        .probe_interval(Duration::from_millis(100))
        .heartbeat(Duration::from_millis(100))
        .ttl(Duration::ZERO)
        .build();
    let r = run(
        &topo,
        r#"
        duration = "5m"
        [delays]
        report = "1ms"
        summary = "1ms"
        publish = "1ms"
        [server_defaults]
        slots = 1
        queue_limit = 200
        service_time = { dist = "exponential", mean = "40ms" }
        [servers.big]
        slots = 8
        service_time = { dist = "exponential", mean = "10ms" }
        [[regions]]
        name = "here"
        rate = 150
        resolvers = 20
        [rtt_ms]
        here = { dc = 10 }
        [[policies]]
        name = "rr"
        flat = "round_robin"
        rotate_every = "100ms"
        [[policies]]
        name = "ll"
        flat = "least_loaded"
        hysteresis = "none"
        "#,
    );
    let (rr, ll) = (r.policy("rr").unwrap(), r.policy("ll").unwrap());
    // round robin sends 3/4 of 150 req/s to servers that take 25 req/s each
    assert!(rr.max_utilisation > 0.95, "{}", rr.max_utilisation);
    assert!(
        ll.mean_ms * 3.0 < rr.mean_ms,
        "ll {} ms vs rr {} ms",
        ll.mean_ms,
        rr.mean_ms
    );
    assert!(ll.p99_ms < rr.p99_ms);
}

#[test]
fn stale_readings_and_long_ttl_make_least_loaded_herd_and_hysteresis_or_top_n_calm_it() {
    // Readings every 20 s against a 60 s TTL: every decision moves the third of the clients
    // whose resolvers refresh before the next reading, all onto the same server.
    let topo = one_farm(4, 8.0)
        .probe_interval(Duration::from_secs(20))
        .heartbeat(Duration::from_secs(20))
        .ttl(Duration::from_secs(60))
        .build();
    let r = run(
        &topo,
        r#"
        duration = "30m"
        # An overloaded server must not fail its health probe here: that would force the
        # choice away whatever the hysteresis (which is what happens with an 800 ms
        # timeout, and is worth knowing, but not what this case measures).
        [probes.http]
        measures = "health"
        timeout = "30s"
        [server_defaults]
        slots = 8
        service_time = { dist = "exponential", mean = "20ms" }
        [[regions]]
        name = "here"
        rate = 1000
        resolvers = 200
        [rtt_ms]
        here = { dc = 10 }
        [[policies]]
        name = "rr"
        flat = "round_robin"
        rotate_every = "1s"
        hysteresis = "none"
        [[policies]]
        name = "ll"
        flat = "least_loaded"
        hysteresis = "none"
        [[policies]]
        name = "ll-hysteresis"
        flat = "least_loaded"
        hysteresis = { margin = 0.5, dwell = "1m" }
        [[policies]]
        name = "ll-top3"
        flat = "least_loaded"
        hysteresis = "none"
        answers = 3
        "#,
    );
    eprintln!("{}", r.to_table());
    let p = |n| r.policy(n).unwrap();
    let (rr, ll, hyst, top3) = (p("rr"), p("ll"), p("ll-hysteresis"), p("ll-top3"));
    // the herd: the choice keeps flipping on stale readings, and each chosen server drowns
    assert!(
        ll.flips_per_minute > 1.0,
        "ll flips {}",
        ll.flips_per_minute
    );
    assert!(ll.max_utilisation > 0.95, "{}", ll.max_utilisation);
    assert!(
        ll.mean_ms > 3.0 * rr.mean_ms,
        "ll {} vs rr {}",
        ll.mean_ms,
        rr.mean_ms
    );
    // hysteresis: far fewer flips (though not a shorter wait: it holds the herd longer)
    assert!(
        hyst.flips_per_minute * 2.0 < ll.flips_per_minute,
        "hysteresis {} vs {}",
        hyst.flips_per_minute,
        ll.flips_per_minute
    );
    // top-N: the moves spread over several servers, so the herd does far less harm
    assert!(
        top3.mean_ms * 3.0 < ll.mean_ms,
        "top3 {} vs ll {}",
        top3.mean_ms,
        ll.mean_ms
    );
    assert!(top3.max_utilisation < ll.max_utilisation);
}

/// Farm `a` close to region `eu` (10 ms, 90 ms from `us`), farm `b` the other way round;
/// capacities are the servers' slots, so the farms' load is pending requests per slot.
fn two_sites() -> Topology {
    TopologyBuilder::new()
        .farm("a", 10.0, None, &[("a1", 4.0), ("a2", 4.0)])
        .farm("b", 50.0, None, &[("b1", 16.0), ("b2", 16.0)])
        .build()
}

const TWO_SITES: &str = r#"
[server_defaults]
slots = 4
service_time = { dist = "exponential", mean = "20ms" }
[servers.b1]
slots = 16
[servers.b2]
slots = 16
[rtt_ms]
eu = { a = 10, b = 90 }
us = { a = 90, b = 10 }
"#;

fn requests_to(p: &fedlb_sim::PolicyResult, farm: &str) -> u64 {
    p.servers
        .iter()
        .filter(|s| s.name.starts_with(farm))
        .map(|s| s.requests)
        .sum()
}

#[test]
fn regions_each_region_gets_its_closest_farm_and_only_its_own_moves_when_that_farm_fails() {
    let sc = Scenario::parse(
        &format!(
            r#"
            duration = "8m"
            {TWO_SITES}
            [[regions]]
            name = "eu"
            rate = 100
            resolvers = 20
            [[regions]]
            name = "us"
            rate = 100
            resolvers = 20
            [[faults]]
            kind = "farm_down"
            target = "a"
            at = "4m"
            until = "6m"
            "#
        ),
        "test.toml",
    )
    .unwrap();
    let opts = Options {
        policies: vec!["fedlb-regions".into(), "fedlb".into()],
        ..Options::default()
    };
    let r = simulate(&two_sites(), &sc, &opts).unwrap();
    let (regions, fedlb) = (
        r.policy("fedlb-regions").unwrap(),
        r.policy("fedlb").unwrap(),
    );
    let (eu, us) = (&regions.regions[0], &regions.regions[1]);
    // each region at its own farm: 10 ms away, 20 ms of service and a little queueing (eu
    // spends 2 of its 7 minutes 90 ms away)
    assert!(us.mean_ms < 35.0, "us {}", us.mean_ms);
    assert!(eu.p50_ms < 45.0, "eu p50 {}", eu.p50_ms);
    // a's two minutes down: eu loses requests to it until it moves to b (90 ms away); us
    // never sent any there
    assert!(eu.to_down_share > 0.0 && us.to_down_share == 0.0);
    let a = requests_to(regions, "a");
    let b = requests_to(regions, "b");
    // a takes eu's requests for 5 of its 7 minutes, b the rest of eu's and all of us's
    let (eu_n, us_n) = (eu.requests as f64, us.requests as f64);
    let a_share = a as f64 / eu_n;
    assert!(a_share > 0.6 && a_share < 0.8, "a took {a_share} of eu");
    assert!(b as f64 > us_n + 0.2 * eu_n, "b {b}, us {us_n}");
    // one answer for everyone (closest to the global node: a) sends us across the ocean
    assert!(fedlb.regions[1].mean_ms > us.mean_ms + 60.0);
}

#[test]
fn regions_a_burst_over_the_load_limit_spills_to_the_next_closest_farm() {
    // eu's burst asks a for 600 requests/s, 1.5 times what its 8 slots serve; b's 32 slots
    // serve 1,600/s.
    let sc = Scenario::parse(
        &format!(
            r#"
            duration = "6m"
            {TWO_SITES}
            [[regions]]
            name = "eu"
            rate = 200
            resolvers = 20
            bursts = [{{ at = "2m", duration = "2m", factor = 3 }}]
            [[regions]]
            name = "us"
            rate = 100
            resolvers = 20
            [[policies]]
            name = "closest-regions"
            global = "closest"
            local_hysteresis = "none"
            per_region = true
            "#
        ),
        "test.toml",
    )
    .unwrap();
    let mut sc = sc;
    let regions = fedlb_sim::Variant::defaults()
        .into_iter()
        .find(|v| v.name == "fedlb-regions")
        .unwrap();
    sc.variants.push(regions);
    let r = simulate(&two_sites(), &sc, &Options::default()).unwrap();
    let (closest, spill) = (
        r.policy("closest-regions").unwrap(),
        r.policy("fedlb-regions").unwrap(),
    );
    // closest alone moves eu only once a's servers are so far behind that their health
    // probes time out: a drowns first and eu's requests are refused
    assert!(
        closest.max_utilisation > 0.99,
        "{}",
        closest.max_utilisation
    );
    assert!(closest.refused_share > 0.005, "{}", closest.refused_share);
    // the load limit moves eu to b (90 ms away) as soon as a is over 80 %, sooner than its
    // health probes fail: fewer requests are refused and eu waits less (but the region moves
    // as a whole, so a still drowns between moves)
    assert!(requests_to(spill, "b") > spill.regions[1].requests * 2);
    assert!(
        spill.refused_share * 2.0 < closest.refused_share,
        "refused: spill {} vs closest {}",
        spill.refused_share,
        closest.refused_share
    );
    assert!(
        spill.regions[0].mean_ms < 0.85 * closest.regions[0].mean_ms,
        "eu: spill {} vs closest {}",
        spill.regions[0].mean_ms,
        closest.regions[0].mean_ms
    );
    // and us, whose farm had room, barely notices eu's guests
    assert!(
        spill.regions[1].mean_ms < 40.0,
        "{}",
        spill.regions[1].mean_ms
    );
}
