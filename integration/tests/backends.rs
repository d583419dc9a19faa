//! Backends failing inside one farm: killed (SIGKILL), frozen (SIGSTOP, caught by the HTTP
//! probe's timeout), restarted — with the demo backend and with nginx.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fedlb_integration::{
    DnsWatch, FarmSpec, Fed, PATIENCE, ServerSpec, Topo, addrs, ip_of, record_timing, require_tool,
    start_nodes, status, wait_for, wait_listening,
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Demo,
    Nginx,
}

fn topology(fed: &Fed) -> Topo {
    let mut site = FarmSpec::new(
        "site",
        fed.ip(2),
        10,
        vec![
            ServerSpec::remote("s1", fed.ip(11)),
            ServerSpec::remote("s2", fed.ip(12)),
            ServerSpec::remote("s3", fed.ip(13)),
        ],
    );
    site.local = Some(
        r#"{ policy = { kind = "failover", order = ["s1", "s2", "s3"] }, hysteresis = { margin = 0.2, dwell = "2s" } }"#
            .to_owned(),
    );
    let mut t = Topo::new(fed);
    t.farms = vec![
        site,
        FarmSpec::new(
            "other",
            fed.ip(3),
            80,
            vec![ServerSpec::remote("o1", fed.ip(21))],
        ),
    ];
    t
}

/// The farm node's view of server `server`: (health, reason).
fn farm_view(farm_url: &str, server: &str) -> Option<(String, String)> {
    let doc = status(farm_url).ok()?;
    let cands = doc["services"][0]["farms"][0]["local"]["candidates"].as_array()?;
    let c = cands.iter().find(|c| c["id"] == server)?;
    Some((
        c["health"].as_str()?.to_owned(),
        c["reason"].as_str()?.to_owned(),
    ))
}

fn start_server(fed: &mut Fed, kind: Kind, nginx: &Option<PathBuf>, s: &ServerSpec) {
    match kind {
        Kind::Demo => fed.backend(&s.name, s.addr(), 0),
        Kind::Nginx => fed.nginx(nginx.as_ref().expect("nginx"), &s.name, s.addr()),
    }
}

fn backend_faults(scenario: &str, kind: Kind) {
    let nginx = match kind {
        Kind::Demo => None,
        Kind::Nginx => match require_tool(scenario, "nginx", "nginx") {
            Some(p) => Some(p),
            None => return,
        },
    };
    let mut fed = Fed::new(scenario);
    let mut topo = topology(&fed);
    if kind == Kind::Nginx {
        topo.probes.push(
            r#"kind = "load"
source = "nginx_stub_status"
url = "http://server:8080/stub_status"
interval = "500ms"
timeout = "300ms"
"#
            .to_owned(),
        );
    }
    fed.write_topology(&topo.to_toml());
    fed.certs();
    for s in topo.servers() {
        start_server(&mut fed, kind, &nginx, &s);
    }
    start_nodes(&mut fed, &topo);
    let dns = DnsWatch::new(topo.dns_addr(), &topo.fqdn);
    let dns_label = topo.dns.label();
    let farm_url = topo.farm("site").status_url();
    let (s1, s2) = (ip_of(&topo, "s1"), ip_of(&topo, "s2"));
    let same_farm = |a: &[IpAddr]| a == [s1] || a == [s2];

    dns.wait_answer(&[s1], Instant::now());
    if kind == Kind::Nginx {
        // the load probe reads nginx's own stub_status
        wait_for("nginx connections in the farm's status", PATIENCE, || {
            let doc = status(&farm_url).ok()?;
            let cands = doc["services"][0]["farms"][0]["local"]["candidates"].as_array()?;
            cands
                .iter()
                .find(|c| c["id"] == "s1")
                .and_then(|c| c["readings"]["connections"]["value"].as_f64())
        });
    }

    // killed: the answer moves to the next server of the same farm, never to the other farm
    let t0 = Instant::now();
    fed.kill("s1");
    let seen = dns.follow(t0, PATIENCE, same_farm, |a| a == [s2]);
    record_timing(scenario, "sigkill", dns_label, seen.last().unwrap().at);

    // restarted: back to s1 (first in the failover order) after the local dwell, once
    let t0 = Instant::now();
    start_server(&mut fed, kind, &nginx, topo.server("s1"));
    let seen = dns.follow(t0, PATIENCE, same_farm, |a| a == [s1]);
    let answers: Vec<_> = seen.iter().map(|s| s.answer.clone()).collect();
    assert_eq!(answers, vec![vec![s2], vec![s1]], "flapped: {seen:?}");
    let back = seen.last().unwrap().at;
    assert!(
        back >= Duration::from_secs(2),
        "s1 came back after {back:?}, before the local dwell (2 s)"
    );
    record_timing(scenario, "restart-back", dns_label, back);
    dns.hold(&[s1], Duration::from_secs(2));

    // frozen: nothing answers, the HTTP probe times out
    let t0 = Instant::now();
    fed.freeze("s1");
    let seen = dns.follow(t0, PATIENCE, same_farm, |a| a == [s2]);
    record_timing(scenario, "sigstop", dns_label, seen.last().unwrap().at);
    let (health, reason) = wait_for("s1 down in the farm's status", PATIENCE, || {
        farm_view(&farm_url, "s1").filter(|(h, _)| h == "down")
    });
    assert!(
        reason.contains("timed out"),
        "s1 is {health} but not for a timeout: {reason}"
    );

    // thawed: back to s1 after the dwell, without flapping
    let t0 = Instant::now();
    fed.thaw("s1");
    let seen = dns.follow(t0, PATIENCE, same_farm, |a| a == [s1]);
    let answers: Vec<_> = seen.iter().map(|s| s.answer.clone()).collect();
    assert_eq!(answers, vec![vec![s2], vec![s1]], "flapped: {seen:?}");
    record_timing(scenario, "sigcont-back", dns_label, seen.last().unwrap().at);
    dns.hold(&[s1], Duration::from_secs(1));
    assert_eq!(addrs(&dns.answer().unwrap()), vec![s1]);
}

#[test]
fn demo_backend_killed_frozen_restarted() {
    backend_faults("demo-backend-faults", Kind::Demo);
}

#[test]
fn nginx_killed_frozen_restarted() {
    backend_faults("nginx-faults", Kind::Nginx);
}

#[test]
fn backend_answering_503_is_avoided_until_it_recovers() {
    // a backend that comes back failing its health check (503) must not be chosen
    let scenario = "backend-503";
    let mut fed = Fed::new(scenario);
    let topo = topology(&fed);
    let dns = fedlb_integration::bring_up(&mut fed, &topo, &[]);
    let (s1, s2) = (ip_of(&topo, "s1"), ip_of(&topo, "s2"));
    dns.wait_answer(&[s1], Instant::now());
    let url = format!("http://{}/admin/fail", topo.server("s1").addr());
    let t0 = Instant::now();
    assert_eq!(fedlb_integration::http_post(&url), Ok(200));
    let seen = dns.follow(t0, PATIENCE, |a| a == [s1] || a == [s2], |a| a == [s2]);
    record_timing(
        scenario,
        "http-503",
        topo.dns.label(),
        seen.last().unwrap().at,
    );
    // still answering 503 (it listens, it is just unhealthy): s1 must stay out
    dns.hold(&[s2], Duration::from_secs(3));
    wait_listening(topo.server("s1").addr());
    let url = format!("http://{}/admin/recover", topo.server("s1").addr());
    let t0 = Instant::now();
    assert_eq!(fedlb_integration::http_post(&url), Ok(200));
    let seen = dns.follow(t0, PATIENCE, |a| a == [s1] || a == [s2], |a| a == [s1]);
    record_timing(
        scenario,
        "recover-back",
        topo.dns.label(),
        seen.last().unwrap().at,
    );
}
