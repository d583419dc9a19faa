use std::net::IpAddr;
use std::time::Duration;

use fedlb_probe::{IcmpMode, ProbeError, ProbeSpec, Prober, ProberConfig};

use crate::support::{Netns, skip};

fn prober(icmp: IcmpMode) -> Prober {
    Prober::new(ProberConfig {
        icmp,
        ..ProberConfig::default()
    })
}

fn echo(ip: &str) -> ProbeSpec {
    ProbeSpec::Icmp {
        target: ip.parse::<IpAddr>().unwrap(),
    }
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

#[tokio::test]
async fn raw_socket_echo_to_loopback() {
    if !is_root() {
        return skip("raw icmp sockets need root");
    }
    let prober = prober(IcmpMode::Raw);
    for _ in 0..3 {
        let outcome = prober
            .probe(&echo("127.0.0.1"), Duration::from_secs(2))
            .await;
        let rtt = outcome.latency().unwrap_or_else(|| panic!("{outcome:?}"));
        assert!(rtt < Duration::from_secs(1), "{rtt:?}");
    }
}

#[tokio::test]
async fn raw_socket_echo_to_ipv6_loopback() {
    if !is_root() {
        return skip("raw icmp sockets need root");
    }
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        return skip("no ::1 on this machine");
    }
    let outcome = prober(IcmpMode::Raw)
        .probe(&echo("::1"), Duration::from_secs(2))
        .await;
    assert!(outcome.ok(), "{outcome:?}");
}

#[tokio::test]
async fn auto_mode_finds_a_working_socket() {
    if !is_root() {
        return skip("with an unknown ping_group_range only root is sure to ping");
    }
    let outcome = Prober::default()
        .probe(&echo("127.0.0.1"), Duration::from_secs(2))
        .await;
    assert!(outcome.ok(), "{outcome:?}");
}

/// A host that ignores echo requests: the run times out.
#[test]
fn an_unanswered_echo_times_out() {
    if !is_root() {
        return skip("raw icmp sockets need root");
    }
    let ns = match Netns::create(&["icmp-silent"]) {
        Ok(ns) => ns,
        Err(e) => return skip(&e),
    };
    ns.sysctl("icmp-silent", "net.ipv4.icmp_echo_ignore_all", "1");
    let outcome = ns.run_in("icmp-silent", async {
        prober(IcmpMode::Raw)
            .probe(&echo("127.0.0.1"), Duration::from_millis(200))
            .await
    });
    let e = outcome.result.unwrap_err();
    assert_eq!(e.to_string(), "icmp 127.0.0.1: timed out after 200ms");
}

/// The unprivileged datagram socket, where `ping_group_range` admits the group: checked in
/// a namespace of its own, since the range is per namespace.
#[test]
fn datagram_socket_needs_ping_group_range_and_then_works() {
    let ns = match Netns::create(&["ping"]) {
        Ok(ns) => ns,
        Err(e) => return skip(&e),
    };
    ns.sysctl("ping", "net.ipv4.ping_group_range", "1 0");
    let denied = ns.run_in("ping", async {
        prober(IcmpMode::Datagram)
            .probe(&echo("127.0.0.1"), Duration::from_secs(2))
            .await
    });
    let e = denied.result.unwrap_err();
    assert!(matches!(e, ProbeError::Permission { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("icmp 127.0.0.1: permission denied: an unprivileged icmp datagram socket needs net.ipv4.ping_group_range"),
        "{e}"
    );

    ns.sysctl("ping", "net.ipv4.ping_group_range", "0 2147483647");
    let ok = ns.run_in("ping", async {
        prober(IcmpMode::Datagram)
            .probe(&echo("127.0.0.1"), Duration::from_secs(2))
            .await
    });
    assert!(ok.ok(), "{ok:?}");
    assert!(ok.latency().unwrap() < Duration::from_secs(1));
}
