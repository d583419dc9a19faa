//! The quick start, exactly as the README and the demo topology tell it: `fedlb up
//! topologies/demo.toml`, `dig` the address it prints, make the answered server fail, `dig`
//! again. (Run from a scratch directory, so its state — certificates — goes there; the
//! embedded server's state directory is the one the demo topology names.)

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::time::Instant;

use fedlb_integration::{
    DnsWatch, Fed, PATIENCE, fedlb_bin, http_post, record_timing, status, strings, wait_for,
};

/// `dig @IP -p PORT NAME A +short` as printed by `fedlb up`.
fn printed_dig(log: &str) -> Option<(SocketAddr, String)> {
    let line = log.lines().find(|l| l.contains("dig @"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| w.starts_with('@'))?;
    let ip: IpAddr = words[at].trim_start_matches('@').parse().ok()?;
    let port: u16 = (words.get(at + 1)? == &"-p")
        .then(|| words.get(at + 2)?.parse().ok())
        .flatten()?;
    let name = words.get(at + 3)?.to_string();
    Some(((ip, port).into(), name))
}

#[test]
fn fedlb_up_demo_answers_and_moves_when_a_server_fails() {
    let scenario = "quickstart";
    // the demo's fixed addresses must be free
    for (what, free) in [
        (
            "127.0.0.1:15353/udp (the demo's DNS server)",
            UdpSocket::bind("127.0.0.1:15353").is_ok(),
        ),
        (
            "127.0.0.1:7480/tcp (the demo's status page)",
            TcpListener::bind("127.0.0.1:7480").is_ok(),
        ),
    ] {
        assert!(free, "{what} is in use: is the demo already running?");
    }
    let topology = Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies/demo.toml");
    let mut fed = Fed::new(scenario);
    let bin = fedlb_bin();
    let t_up = Instant::now();
    fed.spawn("up", bin, &["up".into(), topology.into_os_string()], &[]);

    let (dns_addr, name) = wait_for("fedlb up to print the dig command", PATIENCE, || {
        assert!(fed.is_running("up"), "fedlb up exited:\n{}", fed.log("up"));
        printed_dig(&fed.log("up"))
    });
    let dns = DnsWatch::new(dns_addr, &name);

    // the answer is a demo server, one of those the global node decided on
    let (answer, servers) = wait_for("the decided answer in DNS", PATIENCE, || {
        let doc = status("http://127.0.0.1:7480").ok()?;
        let svc = &doc["services"][0];
        let decided: Vec<IpAddr> = strings(&svc["global"]["answers"])
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        let servers: BTreeSet<IpAddr> = svc["farms"]
            .as_array()?
            .iter()
            .flat_map(|f| {
                f["local"]["candidates"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .flat_map(|c| strings(&c["addresses"]))
            .filter_map(|a| a.parse().ok())
            .collect();
        // the farm answers its healthy servers by weight; the embedded server hands this
        // client one of them
        let answer = dns.answer().ok()?;
        (answer.len() == 1 && decided.contains(&answer[0])).then_some((answer, servers))
    });
    record_timing(scenario, "start-to-answer", "embedded", t_up.elapsed());
    assert_eq!(answer.len(), 1, "{answer:?}");
    assert!(
        servers.contains(&answer[0]),
        "{answer:?} is not a demo server ({servers:?})"
    );

    // make it fail, as the demo topology's comments say: the answer moves to another one
    let failed = answer[0];
    let t0 = Instant::now();
    assert_eq!(
        http_post(&format!("http://{failed}:8080/admin/fail")),
        Ok(200)
    );
    let seen = dns.follow(
        t0,
        PATIENCE,
        |a| a.len() == 1 && servers.contains(&a[0]),
        |a| a != [failed],
    );
    record_timing(scenario, "server-fail", "embedded", seen.last().unwrap().at);

    fed.terminate("up");
}
