//! Several global nodes with the real binary: each with its own embedded DNS server, or
//! both writing one BIND primary. A global node SIGKILLed: the survivor still fails over at
//! the usual pace; restarted: it converges to the survivor's answer without a flap.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use fedlb_integration::{
    Bind, DnsTarget, FarmSpec, Fed, PATIENCE, ServerSpec, Topo, addrs, ip_of, query_txt,
    record_timing, require_tool,
};
use fedlb_integration::{DnsWatch, status};

/// near (10 ms): n1; far (80 ms): f1. Closest farm globally.
fn two_farms(fed: &Fed) -> Topo {
    let mut topo = Topo::new(fed);
    topo.farms = vec![
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
    topo
}

/// The topology with two global nodes, `g1` on `.1` and `g2` on `.5`; each with its own
/// embedded server on port 5300 when `own_dns`, else both on the topology's `dns.servers`.
fn two_globals(topo: &Topo, g2: Ipv4Addr, own_dns: bool) -> String {
    let g1 = topo.global_ip;
    let text = topo.to_toml();
    let one = format!("[global]\nlisten = \"{g1}:7400\"\nstatus = \"{g1}:7480\"\n");
    assert!(text.contains(&one), "{text}");
    let node = |name: &str, ip: Ipv4Addr| {
        let mut n = format!(
            "[[global]]\nname = \"{name}\"\nlisten = \"{ip}:7400\"\nstatus = \"{ip}:7480\"\n"
        );
        if own_dns {
            n += &format!("embedded = {{ listen = \"{ip}:5300\", state_dir = \"dns-{name}\" }}\n");
        }
        n + "\n"
    };
    let text = text.replace(&one, &(node("g1", g1) + &node("g2", g2)));
    if own_dns {
        text.replace(
            &format!("embedded = {{ listen = \"{g1}:5300\", state_dir = \"dns\" }}\n"),
            "",
        )
    } else {
        text
    }
}

fn start(fed: &mut Fed, topo: &Topo, text: &str) {
    fed.write_topology(text);
    fed.certs();
    for s in topo.servers() {
        fed.backend(&s.name, s.addr(), 0);
    }
    fed.global_named("g1");
    fed.global_named("g2");
    for f in &topo.farms {
        fed.farm(&f.name);
    }
}

fn kill_either_global_node(victim: &str) {
    let scenario = format!("ha-kill-{victim}");
    let mut fed = Fed::new(&scenario);
    let topo = two_farms(&fed);
    let g2_ip = fed.ip(5);
    start(&mut fed, &topo, &two_globals(&topo, g2_ip, true));
    let dns = |ip: Ipv4Addr| DnsWatch::new(SocketAddr::new(IpAddr::V4(ip), 5300), &topo.fqdn);
    let (g1, g2) = (dns(topo.global_ip), dns(g2_ip));
    let (survivor, victim_dns) = if victim == "g1" {
        (&g2, &g1)
    } else {
        (&g1, &g2)
    };
    let (n1, f1) = (ip_of(&topo, "n1"), ip_of(&topo, "f1"));
    g1.wait_answer(&[n1], Instant::now());
    g2.wait_answer(&[n1], Instant::now());

    // kill -9 one global node, then a backend fails: the survivor moves the answer
    fed.kill(victim);
    let t0 = Instant::now();
    fed.kill("n1");
    let seen = survivor.follow(t0, PATIENCE, |a| a == [n1] || a == [f1], |a| a == [f1]);
    record_timing(
        &scenario,
        "backend-failed-one-global-dead",
        "embedded",
        seen.last().unwrap().at,
    );

    // restarted, the victim converges to the survivor's answer: its DNS server (which kept
    // the old answer in its journal) changes once, to f1, and never back
    let t0 = Instant::now();
    fed.start(victim);
    let seen = victim_dns.follow(t0, PATIENCE, |a| a == [n1] || a == [f1], |a| a == [f1]);
    assert!(seen.len() <= 2, "the restarted node flapped: {seen:?}");
    record_timing(
        &scenario,
        "restarted-global-converged",
        "embedded",
        seen.last().unwrap().at,
    );
    // both hold f1, and nothing flaps afterwards
    victim_dns.hold(&[f1], Duration::from_secs(3));
    survivor.hold(&[f1], Duration::from_secs(1));
    let url = |ip: Ipv4Addr| format!("http://{ip}:7480");
    for ip in [topo.global_ip, g2_ip] {
        let doc = status(&url(ip)).expect("status");
        let answer = doc["services"][0]["global"]["answers"].clone();
        assert_eq!(answer, serde_json::json!([f1.to_string()]), "{ip}: {doc}");
    }
}

#[test]
fn kill_9_the_first_global_node_the_second_still_fails_over_and_the_first_converges() {
    kill_either_global_node("g1");
}

#[test]
fn kill_9_the_second_global_node_the_first_still_fails_over_and_the_second_converges() {
    kill_either_global_node("g2");
}

/// Two farms and two global nodes (g2 on `.5`) writing one BIND primary, topology and
/// certificates written, nothing started; `None` when BIND is not installed (outside CI).
fn on_one_bind_primary(scenario: &str) -> Option<(Fed, Topo, Bind, Ipv4Addr)> {
    let named = require_tool(scenario, "named", "bind9")?;
    let mut fed = Fed::new(scenario);
    let mut topo = two_farms(&fed);
    let bind = Bind::start(&mut fed, &named, &topo.zone);
    topo.dns = DnsTarget::External(bind.addr);
    let g2_ip = fed.ip(5);
    fed.write_topology(&two_globals(&topo, g2_ip, false));
    fed.certs();
    Some((fed, topo, bind, g2_ip))
}

/// Both global nodes write the same answers to one BIND primary: a second writer of an
/// answer already there writes nothing (the marker next to it keeps naming the first
/// writer, and the second says it defers), a change is written (no lost update) and the
/// answer never alternates: 60 s with everything healthy, then 20 s after the change.
#[test]
fn two_global_nodes_on_one_bind_primary_lose_no_update_and_do_not_alternate() {
    let scenario = "ha-shared-bind";
    let Some((mut fed, topo, bind, _)) = on_one_bind_primary(scenario) else {
        return;
    };
    for s in topo.servers() {
        fed.backend(&s.name, s.addr(), 0);
    }
    let dns = DnsWatch::new(bind.addr, &topo.fqdn);
    let marker = format!("_fedlb.{}", topo.fqdn);
    let writer = || -> Option<String> {
        let txt = query_txt(bind.addr, &marker).ok()?;
        let text = txt.first()?;
        Some(
            text.split_whitespace()
                .find_map(|w| w.strip_prefix("writer="))?
                .to_owned(),
        )
    };
    let (n1, f1) = (ip_of(&topo, "n1"), ip_of(&topo, "f1"));
    // g2 first this time: the name that sorts later writes, the other must not take over
    fed.global_named("g2");
    for f in &topo.farms {
        fed.farm(&f.name);
    }
    dns.wait_answer(&[n1], Instant::now());
    assert_eq!(writer().as_deref(), Some("g2"));

    // g1 decides the same answer: it writes nothing (it sorts first, but the served answer
    // is its view already), defers on nothing, and finds DNS serving its decision
    fed.global_named("g1");
    let g1_status = format!("http://{}:7480", topo.global_ip);
    let published = fedlb_integration::wait_for("g1 to publish", PATIENCE, || {
        let doc = status(&g1_status).ok()?;
        let p = doc["services"][0]["published"].clone();
        (p["result"] == "ok").then_some(p)
    });
    assert_eq!(published["pending"], serde_json::Value::Null, "{published}");
    assert_eq!(
        published["deferred"],
        serde_json::Value::Null,
        "{published}"
    );
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        assert_eq!(writer().as_deref(), Some("g2"), "g1 wrote over g2's answer");
        std::thread::sleep(Duration::from_millis(200));
    }
    // 60 s all healthy: both nodes decide every tick, re-check the served answer and renew
    // the marker; the answer never moves
    dns.hold(&[n1], Duration::from_secs(60));

    // a change: both decide it, the answer moves once and stays (no lost update)
    let t0 = Instant::now();
    fed.kill("n1");
    let seen = dns.follow(t0, PATIENCE, |a| a == [n1] || a == [f1], |a| a == [f1]);
    record_timing(
        scenario,
        "backend-failed-two-writers",
        "bind",
        seen.last().unwrap().at,
    );
    dns.hold(&addrs(&[f1]), Duration::from_secs(20));
}

/// A partition: farm node `near` reaches g1 only (it runs with a topology whose only global
/// node is g1, so it never dials g2), while both global nodes write one BIND primary. g2
/// hears one farm, g1 two: g2 defers to g1's marker, and the answer never alternates
/// between g1's view (near) and g2's (far). g1 killed: its marker goes stale and g2 takes
/// over with its own view, once.
#[test]
fn under_a_partition_two_global_nodes_on_one_bind_primary_do_not_alternate() {
    let scenario = "ha-partition";
    let Some((mut fed, topo, bind, g2_ip)) = on_one_bind_primary(scenario) else {
        return;
    };
    // near's own view of the federation: g1 is the only global node
    let near_view = fed.dir().join("near-view.toml");
    std::fs::write(
        &near_view,
        topo.to_toml()
            .replace("[global]\n", "[global]\nname = \"g1\"\n"),
    )
    .expect("writing near's topology");
    for s in topo.servers() {
        fed.backend(&s.name, s.addr(), 0);
    }
    let dns = DnsWatch::new(bind.addr, &topo.fqdn);
    let (n1, f1) = (ip_of(&topo, "n1"), ip_of(&topo, "f1"));
    fed.global_named("g1");
    fed.global_named("g2");
    let near_args: Vec<std::ffi::OsString> = vec![
        "farm".into(),
        near_view.into(),
        "--node".into(),
        "near".into(),
        "--certs".into(),
        fed.dir().join("certs").into(),
    ];
    fed.spawn("near", fedlb_integration::fedlb_bin(), &near_args, &[]);
    fed.farm("far");

    // g2 decides far (it never hears near), g1 near: only g1's answer is ever served
    dns.wait_answer(&[n1], Instant::now());
    let g2_status = format!("http://{g2_ip}:7480");
    let doc = fedlb_integration::wait_for("g2 to defer to g1", PATIENCE, || {
        let doc = status(&g2_status).ok()?;
        let why = doc["services"][0]["published"]["deferred"]
            .as_str()?
            .to_owned();
        Some((doc, why))
    });
    assert_eq!(
        doc.1, "defers to g1: it hears 2 candidates, this node 1",
        "{}",
        doc.0
    );
    assert_eq!(
        doc.0["services"][0]["global"]["answers"],
        serde_json::json!([f1.to_string()]),
        "g2's own view is far"
    );
    let peers = &doc.0["peers"];
    assert_eq!(peers["global_nodes"], serde_json::json!(["g1", "g2"]));
    assert_eq!(peers["shares_dns"], true);
    dns.hold(&[n1], Duration::from_secs(20));

    // g1 dies: once its marker is stale g2 writes its view, and keeps it
    let t0 = Instant::now();
    fed.kill("g1");
    let seen = dns.follow(t0, PATIENCE, |a| a == [n1] || a == [f1], |a| a == [f1]);
    record_timing(
        scenario,
        "writer-died-peer-took-over",
        "bind",
        seen.last().unwrap().at,
    );
    dns.hold(&[f1], Duration::from_secs(5));
}
