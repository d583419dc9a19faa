//! Several zones (issue 15, item 3): the global node publishes each service into the zone its
//! FQDN picks, through the embedded server serving every zone in every view, and a change
//! tick that moves answers in two zones costs each zone exactly one UPDATE — counted by the
//! server itself: the embedded server (hickory's SQLite zone handler) raises a zone's SOA
//! serial by one per UPDATE it applies.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use support::*;

const B: u8 = 240;
/// A client address of region `r` (the region view's clients).
const REGION_CLIENT: u8 = 200;

fn topology(near_ms: u32, far_ms: u32) -> String {
    format!(
        r#"
name = "zones"
heartbeat = {{ interval = "200ms", missed = 3 }}

[global]
listen = "127.0.{B}.1:7400"
status = "127.0.{B}.1:7480"

[dns]
ttl = "1s"
zones = [{{ name = "t.test." }}, {{ name = "u.test." }}]
embedded = {{ listen = "127.0.{B}.1:5353", state_dir = "dns" }}

[[services]]
name = "www"
fqdn = "www.t.test."
port = 8080
global = {{ policy = "closest", hysteresis = {{ margin = 0.0, dwell = "0s" }} }}
{FAST_HTTP_PROBE}

[[services]]
name = "api"
fqdn = "api.u.test."
port = 8080
global = {{ policy = "closest", hysteresis = {{ margin = 0.0, dwell = "0s" }} }}
{FAST_HTTP_PROBE}

[[regions]]
name = "r"
clients = ["127.0.{B}.{REGION_CLIENT}/32"]
distance_ms = {{ near = 90, far = 10 }}

[[farms]]
name = "near"
listen = "127.0.{B}.2:7401"
status = "127.0.{B}.2:7481"
distance_ms = {near_ms}

[[farms.servers]]
name = "n1"
address = "127.0.{B}.11"
services = ["www", "api"]

[[farms]]
name = "far"
listen = "127.0.{B}.3:7401"
status = "127.0.{B}.3:7481"
distance_ms = {far_ms}

[[farms.servers]]
name = "f1"
address = "127.0.{B}.21"
services = ["www", "api"]
"#
    )
}

/// Waits until a client at `source` gets `want` for every name.
async fn wait_dns(source: IpAddr, dns: SocketAddr, names: &[&str], want: IpAddr) {
    wait_for(
        &format!("{names:?} to answer {want} for {source}"),
        || async {
            for name in names {
                let got = dns_a_from(source, dns, name).await?;
                if got != [want] {
                    return Err(format!("{name}: {got:?}"));
                }
            }
            Ok(())
        },
    )
    .await;
}

async fn serial(dns: SocketAddr, zone: &str) -> u32 {
    let zone = fedlb_dns::zone_name(zone).unwrap();
    fedlb_dns::query_serial(dns, &zone, Duration::from_secs(2))
        .await
        .unwrap_or_else(|e| panic!("serial of {zone}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_zones_changed_in_one_tick_get_one_update_each_and_every_view_holds_both() {
    let mut w = World::new(&topology(10, 50));
    w.start_backend("n1", ip(B, 11)).await;
    w.start_backend("f1", ip(B, 21)).await;
    w.start_global();
    w.start_farm("near");
    w.start_farm("far");
    let dns = SocketAddr::new(ip(B, 1), 5353);
    let names = ["www.t.test.", "api.u.test."];
    let default_client = ip(0, 1); // 127.0.0.1: in no region
    let region_client = ip(B, REGION_CLIENT);

    // each service in its own zone; the default view takes the closest farm from the global
    // node, the region's view the closest from its clients: both views hold both zones
    wait_dns(default_client, dns, &names, ip(B, 11)).await;
    wait_dns(region_client, dns, &names, ip(B, 21)).await;
    // a name of one zone is not served from the other
    assert!(
        dns_a_from(default_client, dns, "www.u.test.")
            .await
            .unwrap()
            .is_empty()
    );

    // settle: no update in flight
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = (serial(dns, "t.test.").await, serial(dns, "u.test.").await);

    // one reload moves both services at once (no hysteresis): one change tick, two zones
    w.rewrite(&topology(50, 10));
    wait_dns(default_client, dns, &names, ip(B, 21)).await;
    // anything late would show now
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = (serial(dns, "t.test.").await, serial(dns, "u.test.").await);
    assert_eq!(
        (
            after.0.wrapping_sub(before.0),
            after.1.wrapping_sub(before.1)
        ),
        (1, 1),
        "UPDATEs applied per zone (t.test., u.test.): serials {before:?} → {after:?}"
    );
    // the region's view did not move
    wait_dns(region_client, dns, &names, ip(B, 21)).await;
    w.assert_nodes_running();
    w.shutdown().await;
}
