//! Regions: each client is answered with the closest healthy farm from where *it* is.
//!
//! Three farms — eu (`.2`), us (`.3`), ap (`.4`) — and two regions of clients inside the
//! federation's block: eu clients `.200/29`, us clients `.208/29`; any other source (the
//! global node's own `.1`) is in the default region, answered from the global node's view
//! (eu closest). Seen from eu clients: eu 10 ms, ap 60 ms, us 90 ms; from us clients: us 8 ms,
//! eu 90 ms, ap 150 ms. Every region is published through the same RFC 2136 path: views of
//! the embedded server or of BIND selected by each region's TSIG key, or a region's own
//! primary.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use fedlb_integration::{
    Bind, DnsTarget, FarmSpec, Fed, PATIENCE, RegionSpec, ServerSpec, Topo, bring_up, fedlb_bin,
    ip_of, query_a_as, record_timing, require_tool, wait_for,
};

/// The federation: farms eu/us/ap, one server each except eu (two), and regions eu and us.
fn setup(scenario: &str) -> (Fed, Topo) {
    let fed = Fed::new(scenario);
    let mut topo = Topo::new(&fed);
    topo.global_tier =
        r#"{ policy = "closest", hysteresis = { margin = 0.2, dwell = "2s" } }"#.to_owned();
    topo.farms = vec![
        FarmSpec::new(
            "eu",
            fed.ip(2),
            10,
            vec![
                ServerSpec::remote("eu1", fed.ip(11)),
                ServerSpec::remote("eu2", fed.ip(12)),
            ],
        ),
        FarmSpec::new(
            "us",
            fed.ip(3),
            80,
            vec![ServerSpec::remote("us1", fed.ip(21))],
        ),
        FarmSpec::new(
            "ap",
            fed.ip(4),
            160,
            vec![ServerSpec::remote("ap1", fed.ip(31))],
        ),
    ];
    topo.regions = vec![
        RegionSpec::new(
            "eu",
            &[format!("{}/29", fed.ip(200))],
            &[("eu", 10), ("ap", 60), ("us", 90)],
        ),
        RegionSpec::new(
            "us",
            &[format!("{}/29", fed.ip(208))],
            &[("us", 8), ("eu", 90), ("ap", 150)],
        ),
    ];
    (fed, topo)
}

/// A client at `source` (optionally sending an ECS option for `subnet`) follows the name
/// until it is answered `want`; returns the ECS scope of that answer.
fn wait_client(
    dns: SocketAddr,
    fqdn: &str,
    source: Ipv4Addr,
    subnet: Option<(Ipv4Addr, u8)>,
    want: &[IpAddr],
) -> Option<u8> {
    let what = format!("{source} (subnet {subnet:?}) answered {want:?}");
    wait_for(&what, PATIENCE, || {
        let subnet = subnet.map(|(net, len)| (IpAddr::V4(net), len));
        match query_a_as(dns, fqdn, IpAddr::V4(source), subnet) {
            Ok((answer, scope)) if answer == want => Some(scope),
            _ => None,
        }
    })
}

/// For `dur`, a client at `source` is answered `want` every time it asks.
fn hold_client(dns: SocketAddr, fqdn: &str, source: Ipv4Addr, want: &[IpAddr], dur: Duration) {
    let end = Instant::now() + dur;
    while Instant::now() < end {
        let (answer, _) =
            query_a_as(dns, fqdn, IpAddr::V4(source), None).expect("the server answers");
        assert_eq!(answer, want, "{source} was answered {answer:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn embedded_server_answers_each_region_from_where_it_is() {
    let (mut fed, topo) = setup("regions-embedded");
    bring_up(&mut fed, &topo, &[]);
    let dns = topo.dns_addr();
    let fqdn = topo.fqdn.clone();
    let (eu_client, us_client, elsewhere) = (fed.ip(201), fed.ip(209), fed.ip(1));
    let eu = |s: &str| ip_of(&topo, s);
    let (us1, ap1) = (eu("us1"), eu("ap1"));

    // each region's closest farm (eu answers one of its two servers, least loaded)
    wait_client(dns, &fqdn, us_client, None, &[us1]);
    let eu_answer = wait_for("eu clients answered by the eu farm", PATIENCE, || {
        let (a, _) = query_a_as(dns, &fqdn, IpAddr::V4(eu_client), None).ok()?;
        (a.len() == 1 && (a[0] == eu("eu1") || a[0] == eu("eu2"))).then_some(a)
    });
    // the default region: the global node's own view (eu closest)
    wait_client(dns, &fqdn, elsewhere, None, &eu_answer);

    // ECS: a resolver at the eu client's address asking for a us subnet gets the us answer,
    // with the scope of the matched region prefix (/29) so that it caches per subnet
    let scope = wait_client(dns, &fqdn, eu_client, Some((fed.ip(208), 29)), &[us1]);
    assert_eq!(
        scope,
        Some(29),
        "ECS scope of a /29 region for a /29 subnet"
    );
    // …and a /24 that holds both regions' prefixes is answered for the /24's own network
    // (the default region here), with a scope narrow enough to exclude both regions
    let (_, scope) = query_a_as(
        dns,
        &fqdn,
        IpAddr::V4(us_client),
        Some((IpAddr::V4(fed.ip(0)), 24)),
    )
    .expect("answered");
    let scope = scope.expect("an ECS answer carries the option");
    assert!(
        scope > 24,
        "scope {scope} must exclude the regions inside the /24"
    );

    // every eu server fails: eu clients move to *their* next closest (ap, 60 ms), the
    // default region to its own (us, 80 ms); us clients keep us the whole time
    let t0 = Instant::now();
    fed.kill("eu1");
    fed.kill("eu2");
    wait_client(dns, &fqdn, eu_client, None, &[ap1]);
    record_timing(
        "regions-embedded",
        "eu farm down → eu clients on ap",
        "embedded",
        t0.elapsed(),
    );
    wait_client(dns, &fqdn, elsewhere, None, &[us1]);
    hold_client(dns, &fqdn, us_client, &[us1], Duration::from_secs(2));
}

/// The BIND configuration `fedlb dns-config bind` writes for `topo`, with the views' zone
/// files in `zone_dir`.
fn dns_config_bind(fed: &Fed, topo: &Topo, zone_dir: &std::path::Path) -> String {
    fed.write_topology(&topo.to_toml());
    let out = Command::new(fedlb_bin())
        .arg("dns-config")
        .arg("bind")
        .arg(fed.topology_path())
        .arg("--zone-dir")
        .arg(zone_dir)
        .output()
        .expect("running fedlb dns-config bind");
    assert!(
        out.status.success(),
        "fedlb dns-config bind failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// BIND serves a view per region, configured by `fedlb dns-config bind` and updated by fedlb
/// with each region's key: each region's clients get their own closest farm from BIND.
#[test]
fn bind_views_answer_each_region_from_where_it_is() {
    let scenario = "regions-bind-views";
    let Some(named) = require_tool(scenario, "named", "bind9") else {
        return;
    };
    let (mut fed, mut topo) = setup(scenario);
    for r in &mut topo.regions {
        r.tsig_name = Some(format!("{}-key", r.name));
    }
    // the topology names BIND's address, which is known once BIND has a port: write it
    // once to get the views, then start BIND with them and write it again with its address
    topo.dns = DnsTarget::External("127.0.0.1:1".parse().expect("an address"));
    let views = dns_config_bind(&fed, &topo, &Bind::dir_for(&fed, "named"));
    assert!(views.contains(r#"view "eu""#) && views.contains(r#"view "default""#));
    let bind = Bind::start_as(&mut fed, &named, &topo.zone, "named", Some(&views));
    topo.dns = DnsTarget::External(bind.addr);
    bring_up(&mut fed, &topo, &[]);
    let fqdn = topo.fqdn.clone();
    let (eu_client, us_client) = (fed.ip(201), fed.ip(209));
    let (us1, ap1) = (ip_of(&topo, "us1"), ip_of(&topo, "ap1"));
    let eu_farm = [ip_of(&topo, "eu1"), ip_of(&topo, "eu2")];
    // BIND listens on 127.0.0.1 only; clients are told apart by their source address
    wait_client(bind.addr, &fqdn, us_client, None, &[us1]);
    let eu_answer = wait_for("eu clients answered by the eu farm", PATIENCE, || {
        let (a, _) = query_a_as(bind.addr, &fqdn, IpAddr::V4(eu_client), None).ok()?;
        (a.len() == 1 && eu_farm.contains(&a[0])).then_some(a)
    });
    // the default view: anyone else, the global node's own view (eu closest)
    wait_client(bind.addr, &fqdn, fed.ip(1), None, &eu_answer);

    let t0 = Instant::now();
    fed.kill("eu1");
    fed.kill("eu2");
    wait_client(bind.addr, &fqdn, eu_client, None, &[ap1]);
    record_timing(
        scenario,
        "eu farm down → eu clients on ap",
        "bind",
        t0.elapsed(),
    );
    wait_client(bind.addr, &fqdn, fed.ip(1), None, &[us1]);
    hold_client(bind.addr, &fqdn, us_client, &[us1], Duration::from_secs(2));
}

/// Regions with primaries of their own (DNS servers without views: one BIND per region
/// here, as Knot or PowerDNS would be): each primary serves its region's answer.
#[test]
fn a_primary_per_region_serves_that_regions_answer() {
    let scenario = "regions-own-primaries";
    let Some(named) = require_tool(scenario, "named", "bind9") else {
        return;
    };
    let (mut fed, mut topo) = setup(scenario);
    let default = Bind::start_as(&mut fed, &named, &topo.zone, "named", None);
    let eu = Bind::start_as(&mut fed, &named, &topo.zone, "named-eu", None);
    let us = Bind::start_as(&mut fed, &named, &topo.zone, "named-us", None);
    topo.dns = DnsTarget::External(default.addr);
    topo.regions[0].servers = vec![eu.addr];
    topo.regions[1].servers = vec![us.addr];
    bring_up(&mut fed, &topo, &[]);
    let fqdn = topo.fqdn.clone();
    let anyone = fed.ip(1);
    let (us1, ap1) = (ip_of(&topo, "us1"), ip_of(&topo, "ap1"));
    let eu_farm = [ip_of(&topo, "eu1"), ip_of(&topo, "eu2")];
    wait_client(us.addr, &fqdn, anyone, None, &[us1]);
    for server in [eu.addr, default.addr] {
        wait_for("the eu farm answered", PATIENCE, || {
            let (a, _) = query_a_as(server, &fqdn, IpAddr::V4(anyone), None).ok()?;
            (a.len() == 1 && eu_farm.contains(&a[0])).then_some(())
        });
    }
    let t0 = Instant::now();
    fed.kill("eu1");
    fed.kill("eu2");
    wait_client(eu.addr, &fqdn, anyone, None, &[ap1]);
    record_timing(
        scenario,
        "eu farm down → eu primary on ap",
        "bind",
        t0.elapsed(),
    );
    wait_client(default.addr, &fqdn, anyone, None, &[us1]);
    hold_client(us.addr, &fqdn, anyone, &[us1], Duration::from_secs(2));
}
