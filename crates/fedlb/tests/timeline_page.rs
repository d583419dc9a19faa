//! "What changed, when" as an operator reads it: a federation run by the real binary
//! (`fedlb global`, `fedlb farm` as processes, real QUIC between them), real HTTP backends
//! probed by their farm nodes, the embedded DNS server asked over UDP, a server really
//! killed, and headless Chromium rendering the global node's page: its timeline shows the
//! failover with its cause, after the start, newest first; then an operator's drain moves
//! the answer again and the timeline shows that too, in order.
//!
//! Needs Chromium (`apt-get install -y chromium`). Without it the test fails under CI (env
//! `CI` set) and is skipped, loudly, elsewhere.

mod procs;
#[path = "../../fedlb-node/tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::process::Command;

use procs::Proc;
use support::chromium::*;
use support::*;

const B: u8 = 226;

/// One timeline row of the rendered page: (service, cause text, answer cell).
fn rows(dom: &str) -> Vec<(String, String, String)> {
    let cell = |row: &str, class: &str| -> String {
        let open = format!(r#"class="{class}">"#);
        row.split_once(&open)
            .and_then(|(_, rest)| rest.split_once("</td>").or(rest.split_once("</span>")))
            .map(|(inner, _)| strip_tags(inner))
            .unwrap_or_default()
    };
    dom.split(r#"<tr class="c" "#)
        .skip(1)
        .map(|row| {
            let row = row.split("</tr>").next().unwrap_or_default();
            let service = row
                .split_once(r#"data-service=""#)
                .and_then(|(_, r)| r.split_once('"'))
                .map(|(s, _)| s.to_owned())
                .unwrap_or_default();
            let cause = row
                .split_once(r#"<span class="cause "#)
                .and_then(|(_, r)| r.split_once('>'))
                .and_then(|(_, r)| r.split_once("</span>"))
                .map(|(c, _)| c.to_owned())
                .unwrap_or_default();
            (service, cause, cell(row, "move"))
        })
        .collect()
}

fn strip_tags(s: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for ch in s.chars() {
        match ch {
            '<' => inside = true,
            '>' => inside = false,
            c if !inside => out.push(c),
            _ => {}
        }
    }
    out.replace("&gt;", ">")
        .replace("&lt;", "<")
        .replace("&amp;", "&")
}

/// The drain step: farm `farm` drained through the global node as an operator does it —
/// an operator certificate from `fedlb certs --operator`, then `fedlb drain`.
fn drain(w: &World, farm: &str) {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_fedlb"))
            .args(args)
            .output()
            .expect("run fedlb");
        assert!(
            out.status.success(),
            "fedlb {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (topology, certs) = (
        w.topology.to_str().expect("a UTF-8 path"),
        w.certs.to_str().expect("a UTF-8 path"),
    );
    run(&["certs", topology, "--out", certs, "--operator", "alice"]);
    run(&[
        "drain",
        farm,
        "--reason",
        "migration",
        "--topology",
        topology,
        "--certs",
        certs,
        "--operator",
        "alice",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_a_killed_servers_failover_and_a_drain_with_their_causes_in_order() {
    let Some(bin) = chromium_or_skip(
        "the_page_shows_a_killed_servers_failover_and_a_drain_with_their_causes_in_order",
    ) else {
        return;
    };
    // three farms of one server each, by distance: near, middle, far; their farm nodes read
    // each server's load (requests in flight) as well as probing it
    let toml = [
        header(B, r#""least_loaded""#),
        r#"
[[services.probes]]
kind = "load"
source = "nginx_stub_status"
url = "http://server:8080/stub_status"
interval = "200ms"
timeout = "150ms"
"#
        .to_owned(),
        farm(B, 2, "near", 10, &["n1"]),
        remote_server(B, 11, "n1"),
        farm(B, 3, "middle", 40, &["m1"]),
        remote_server(B, 21, "m1"),
        farm(B, 4, "far", 90, &["f1"]),
        remote_server(B, 31, "f1"),
    ]
    .concat();
    let mut w = World::new(&toml);
    for (name, host) in [("n1", 11), ("m1", 21), ("f1", 31)] {
        w.start_backend(name, ip(B, host)).await;
    }
    let mut nodes = vec![Proc::start(&w, "global", "global")];
    for f in ["near", "middle", "far"] {
        nodes.push(Proc::start(&w, "farm", f));
    }
    let global_status = SocketAddr::new(ip(B, 1), 7480);
    let dns = SocketAddr::new(ip(B, 1), 5353);
    wait_answers(global_status, dns, &[ip(B, 11)]).await;
    // the global node has sampled every farm's and every server's load
    wait_for("a load sample of every farm and server", || async {
        let v = status(global_status).await?;
        let charted: Vec<&str> = v["loads"]
            .as_array()
            .map(|a| a.iter().filter_map(|l| l["id"].as_str()).collect())
            .unwrap_or_default();
        if ["near", "middle", "far", "n1", "m1", "f1"]
            .iter()
            .all(|id| charted.contains(id))
        {
            Ok(())
        } else {
            Err(format!("charted: {charted:?}"))
        }
    })
    .await;

    // the answered server dies: its farm has no healthy server, the answer moves on
    w.kill_backend("n1").await;
    wait_answers(global_status, dns, &[ip(B, 21)]).await;

    let profile = w.dir.path().join("chromium-profile");
    let page = format!("http://{global_status}/");
    let dom = run_chromium(&bin, &profile, &page, &["--dump-dom"]).await;
    assert!(
        dom.contains(r#"<h2 id="changes">what changed, when</h2>"#),
        "the page has no timeline:\n{dom}"
    );
    let seen = rows(&dom);
    // newest first: the failover, below it the change that answered near (the start, unless
    // a farm was heard late), and the start somewhere below
    let failover = (
        "www".to_owned(),
        "health: near".to_owned(),
        format!("near (127.0.{B}.11) → middle (127.0.{B}.21)"),
    );
    assert_eq!(seen.first(), Some(&failover), "timeline: {seen:#?}");
    let start = seen
        .iter()
        .position(|(_, cause, _)| cause == "start")
        .unwrap_or_else(|| panic!("no start in the timeline: {seen:#?}"));
    assert!(start >= 1, "{seen:#?}");
    assert!(
        seen[1].2.ends_with(&format!("near (127.0.{B}.11)")),
        "{seen:#?}"
    );
    // every row has a time; the failover's why is the new decision's
    assert!(
        dom.contains(r#"<td class="when">20"#),
        "no wall-clock time:\n{dom}"
    );
    assert!(
        dom.contains("middle: closest"),
        "the failover's why is shown:\n{dom}"
    );
    // each farm's and server's load is charted, the dead one's up to its death
    for id in ["near", "middle", "far", "n1", "m1", "f1"] {
        assert!(
            dom.contains(&format!(r#"<svg class="load" data-load="{id}""#)),
            "no load chart for {id}:\n{dom}"
        );
    }

    // an operator drains the farm now answered: the answer moves to far, for the operator
    drain(&w, "middle");
    wait_answers(global_status, dns, &[ip(B, 31)]).await;
    let dom = run_chromium(&bin, &profile, &page, &["--dump-dom"]).await;
    let seen = rows(&dom);
    let drained = (
        "www".to_owned(),
        "operator: middle".to_owned(),
        format!("middle (127.0.{B}.21) → far (127.0.{B}.31)"),
    );
    assert_eq!(seen.first(), Some(&drained), "timeline: {seen:#?}");
    assert_eq!(seen.get(1), Some(&failover), "in order: {seen:#?}");

    for n in &mut nodes {
        n.assert_running();
    }
}
