use std::net::IpAddr;
use std::time::Duration;

use fedlb_core::Measurement;
use fedlb_probe::{ProbeError, ProbeSpec, Prober, ProberConfig};

use crate::support::{Netns, skip};

fn hops(ip: &str, max_hops: u8) -> ProbeSpec {
    ProbeSpec::Hops {
        target: ip.parse::<IpAddr>().unwrap(),
        max_hops,
    }
}

#[tokio::test]
async fn loopback_is_one_hop() {
    let outcome = Prober::default()
        .probe(&hops("127.0.0.1", 5), Duration::from_secs(3))
        .await;
    assert_eq!(outcome.result.unwrap(), vec![Measurement::Hops(1)]);
    if std::net::UdpSocket::bind("[::1]:0").is_ok() {
        let outcome = Prober::default()
            .probe(&hops("::1", 5), Duration::from_secs(3))
            .await;
        assert_eq!(outcome.result.unwrap(), vec![Measurement::Hops(1)]);
    }
}

/// client ─ r1 ─ r2 ─ server, each link a veth pair between namespaces the test creates.
#[test]
fn a_server_two_routers_away_is_three_hops() {
    let ns = match Netns::create(&["client", "r1", "r2", "server"]) {
        Ok(ns) => ns,
        Err(e) => return skip(&e),
    };
    ns.link(
        ("client", "c0", "169.254.101.1/24"),
        ("r1", "r1a", "169.254.101.2/24"),
    );
    ns.link(
        ("r1", "r1b", "169.254.102.1/24"),
        ("r2", "r2a", "169.254.102.2/24"),
    );
    ns.link(
        ("r2", "r2b", "169.254.103.1/24"),
        ("server", "s0", "169.254.103.2/24"),
    );
    ns.sysctl("r1", "net.ipv4.ip_forward", "1");
    ns.sysctl("r2", "net.ipv4.ip_forward", "1");
    ns.ip(
        "client",
        &["route", "add", "default", "via", "169.254.101.2"],
    );
    ns.ip(
        "r1",
        &["route", "add", "169.254.103.0/24", "via", "169.254.102.2"],
    );
    ns.ip(
        "r2",
        &["route", "add", "169.254.101.0/24", "via", "169.254.102.1"],
    );
    ns.ip(
        "server",
        &["route", "add", "default", "via", "169.254.103.1"],
    );

    let prober = Prober::new(ProberConfig {
        hop_wait: Duration::from_millis(500),
        ..ProberConfig::default()
    });
    let measured = ns.run_in("client", async {
        let mut v = Vec::new();
        for target in ["169.254.101.2", "169.254.102.2", "169.254.103.2"] {
            v.push(
                prober
                    .probe(&hops(target, 8), Duration::from_secs(5))
                    .await
                    .result,
            );
        }
        v
    });
    let measured: Vec<_> = measured.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        measured,
        [
            vec![Measurement::Hops(1)],
            vec![Measurement::Hops(2)],
            vec![Measurement::Hops(3)]
        ]
    );

    // No route beyond r1: it answers "net unreachable" and the walk stops there.
    let unroutable = ns.run_in("client", async {
        prober
            .probe(&hops("169.254.200.1", 8), Duration::from_secs(5))
            .await
    });
    let e = unroutable.result.unwrap_err();
    assert!(matches!(e, ProbeError::Unreachable { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "hops 169.254.200.1: unreachable: 169.254.101.2 answered ttl 1 with destination unreachable (code 0)"
    );

    // A target farther than max_hops is not reached.
    let far = ns.run_in("client", async {
        prober
            .probe(&hops("169.254.103.2", 2), Duration::from_secs(5))
            .await
    });
    assert_eq!(
        far.result.unwrap_err().to_string(),
        "hops 169.254.103.2: unreachable: no answer from the target within 2 hops"
    );
}
