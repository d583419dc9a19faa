//! Several zones (issue 15, item 3) against a real BIND 9 holding both zones: each service is
//! published into the zone its FQDN picks, and a change tick that moves the answers of both
//! zones costs each zone exactly one UPDATE — counted by BIND itself, which raises a dynamic
//! zone's SOA serial by one per UPDATE it applies.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use fedlb_integration::{
    Bind, Fed, HTTP_PROBE, PATIENCE, TSIG_NAME, TSIG_SECRET, query_a, query_soa_serial,
    require_tool, wait_for,
};

fn topology(fed: &Fed, bind: SocketAddr, near_ms: u32, far_ms: u32) -> String {
    let (g, near, far, n1, f1) = (fed.ip(1), fed.ip(2), fed.ip(3), fed.ip(11), fed.ip(21));
    let service = |name: &str, fqdn: &str| {
        format!(
            "\n[[services]]\nname = \"{name}\"\nfqdn = \"{fqdn}\"\nport = 8080\n\
             global = {{ policy = \"closest\", hysteresis = {{ margin = 0.0, dwell = \"0s\" }} }}\n\
             \n[[services.probes]]\n{HTTP_PROBE}"
        )
    };
    format!(
        r#"name = "zones-bind"
heartbeat = {{ interval = "300ms", missed = 3 }}

[global]
listen = "{g}:7400"
status = "{g}:7480"

[dns]
servers = ["{bind}"]
ttl = "5s"
tsig = {{ secret = "{TSIG_SECRET}", name = "{TSIG_NAME}", algorithm = "hmac-sha256" }}
zones = [{{ name = "t.test." }}, {{ name = "u.test." }}]
{www}{api}
[[farms]]
name = "near"
listen = "{near}:7401"
status = "{near}:7481"
distance_ms = {near_ms}

[[farms.servers]]
name = "n1"
address = "{n1}"
services = ["www", "api"]

[[farms]]
name = "far"
listen = "{far}:7401"
status = "{far}:7481"
distance_ms = {far_ms}

[[farms.servers]]
name = "f1"
address = "{f1}"
services = ["www", "api"]
"#,
        www = service("www", "www.t.test."),
        api = service("api", "api.u.test."),
    )
}

fn wait_both(bind: SocketAddr, want: IpAddr) {
    wait_for(&format!("both zones to answer {want}"), PATIENCE, || {
        let www = query_a(bind, "www.t.test.").ok()?;
        let api = query_a(bind, "api.u.test.").ok()?;
        (www == [want] && api == [want]).then_some(())
    });
}

fn serials(bind: SocketAddr) -> (u32, u32) {
    (
        query_soa_serial(bind, "t.test.").expect("t.test. serial"),
        query_soa_serial(bind, "u.test.").expect("u.test. serial"),
    )
}

#[test]
fn two_zones_changed_in_one_tick_get_one_update_each_at_bind() {
    let scenario = "zones-bind";
    let Some(named) = require_tool(scenario, "named", "bind9") else {
        return;
    };
    let mut fed = Fed::new(scenario);
    // BIND with both zones: the second zone's file is written as an operator would
    let dir = Bind::dir_for(&fed, "named");
    std::fs::create_dir_all(&dir).expect("BIND directory");
    std::fs::write(
        dir.join("u.db"),
        "$TTL 300\nu.test.\tIN\tSOA\tns1.u.test. hostmaster.u.test. ( 1 3600 600 86400 300 )\nu.test.\tIN\tNS\tns1.u.test.\nns1.u.test.\tIN\tA\t127.0.0.1\n",
    )
    .expect("u.test. zone file");
    let d = dir.display();
    let zones = format!(
        r#"key "{TSIG_NAME}" {{ algorithm hmac-sha256; secret "{TSIG_SECRET}"; }};
zone "t.test" {{ type primary; file "{d}/zone.db"; update-policy {{ grant {TSIG_NAME} zonesub ANY; }}; }};
zone "u.test" {{ type primary; file "{d}/u.db"; update-policy {{ grant {TSIG_NAME} zonesub ANY; }}; }};
"#
    );
    let bind = Bind::start_as(&mut fed, &named, "t.test.", "named", Some(&zones));
    fed.write_topology(&topology(&fed, bind.addr, 10, 50));
    fed.certs();
    for (name, host) in [("n1", 11), ("f1", 21)] {
        fed.backend(name, SocketAddr::new(IpAddr::V4(fed.ip(host)), 8080), 0);
    }
    fed.global();
    fed.farm("near");
    fed.farm("far");
    let (n1, f1) = (IpAddr::V4(fed.ip(11)), IpAddr::V4(fed.ip(21)));
    wait_both(bind.addr, n1);

    // settle, then one reload moves both services at once: one change tick, two zones
    std::thread::sleep(Duration::from_millis(1500));
    let before = serials(bind.addr);
    fed.write_topology(&topology(&fed, bind.addr, 50, 10));
    wait_both(bind.addr, f1);
    std::thread::sleep(Duration::from_millis(2500));
    let after = serials(bind.addr);
    assert_eq!(
        (
            after.0.wrapping_sub(before.0),
            after.1.wrapping_sub(before.1)
        ),
        (1, 1),
        "UPDATEs BIND applied per zone (t.test., u.test.): serials {before:?} → {after:?}"
    );
}
