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
use std::time::{Duration, Instant};

use fedlb_integration::{
    FarmSpec, Fed, PATIENCE, RegionSpec, ServerSpec, Topo, bring_up, ip_of, query_a_as,
    record_timing, wait_for,
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
