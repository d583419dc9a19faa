//! "What changed, when" as an operator reads it: a live federation (real QUIC between the
//! nodes, real HTTP backends probed by their farm nodes, the embedded DNS server), a server
//! really killed, and headless Chromium rendering the global node's page: its timeline
//! shows the failover with its cause, after the start, newest first; then an operator's
//! drain moves the answer again and the timeline shows that too, in order. And a failover
//! inside a farm: told by the farm node's timeline, named as the farm's by the global node's.
//!
//! Needs Chromium (`apt-get install -y chromium`). Without it the test fails under CI (env
//! `CI` set) and is skipped, loudly, elsewhere.

mod support;

use std::net::SocketAddr;

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

/// THE DRAIN STEP — to be completed once the admin actions (issue 15 items 1–2: `fedlb
/// drain`, operator certificates) are on main: drain farm `farm` through the global node
/// as an operator would, and return `true`. Until then it does nothing and returns `false`,
/// and the test says loudly that its drain half did not run.
async fn drain(_w: &World, _global_status: SocketAddr, _farm: &str) -> bool {
    false
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
    w.start_global();
    for f in ["near", "middle", "far"] {
        w.start_farm(f);
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
    if drain(&w, global_status, "middle").await {
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
    } else {
        eprintln!(
            "INCOMPLETE the_page_shows_a_killed_servers_failover_and_a_drain_with_their_causes_in_order: \
             the drain step waits for `fedlb drain` (issue 15 items 1-2); only the failover half ran"
        );
    }

    w.assert_nodes_running();
    w.shutdown().await;
}

/// A server dying inside a farm that still has another: the farm node's own timeline names
/// the server and its health; the global node's, where the same farm answers other
/// addresses, says it was the farm's own choice and carries the farm's why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_farms_own_failover_is_told_by_the_farm_node_and_named_by_the_global_node() {
    const B: u8 = 227;
    let toml = [
        header(B, r#""least_loaded""#),
        farm(B, 2, "near", 10, &["n1", "n2"]),
        remote_server(B, 11, "n1"),
        remote_server(B, 12, "n2"),
        farm(B, 3, "far", 50, &["f1"]),
        remote_server(B, 21, "f1"),
    ]
    .concat();
    let mut w = World::new(&toml);
    for (name, host) in [("n1", 11), ("n2", 12), ("f1", 21)] {
        w.start_backend(name, ip(B, host)).await;
    }
    w.start_global();
    w.start_farm("near");
    w.start_farm("far");
    let global_status = SocketAddr::new(ip(B, 1), 7480);
    let near_status = SocketAddr::new(ip(B, 2), 7481);
    let dns = SocketAddr::new(ip(B, 1), 5353);
    wait_answers(global_status, dns, &[ip(B, 11)]).await;

    w.kill_backend("n1").await;
    wait_answers(global_status, dns, &[ip(B, 12)]).await;

    let newest = |v: &serde_json::Value| v["changes"][0].clone();
    let farm_change = wait_for("the farm node's timeline to show n1's failure", || async {
        let c = newest(&status(near_status).await?);
        if c["to"]["chosen"][0] == "n2" {
            Ok(c)
        } else {
            Err(c.to_string())
        }
    })
    .await;
    assert_eq!(farm_change["cause"], "health", "{farm_change}");
    assert_eq!(farm_change["subject"], "n1", "{farm_change}");
    assert_eq!(farm_change["from"]["chosen"][0], "n1", "{farm_change}");
    assert_eq!(farm_change["region"], serde_json::Value::Null);

    let v = status(global_status).await.unwrap();
    let c = newest(&v);
    assert_eq!(c["cause"], "farm", "{c}");
    assert_eq!(c["subject"], "near", "{c}");
    assert_eq!(c["from"]["answers"][0], format!("127.0.{B}.11"), "{c}");
    assert_eq!(c["to"]["answers"][0], format!("127.0.{B}.12"), "{c}");
    let why = c["why"].as_str().unwrap();
    assert!(
        why.contains("; farm near: n2: failover order") && why.contains("n1 is down"),
        "the farm's own why is carried: {why}"
    );
    // in order, newest first: the start (on near, n1) is older
    let changes = v["changes"].as_array().unwrap();
    let start = changes.iter().position(|c| c["cause"] == "start").unwrap();
    assert!(start > 0, "{changes:?}");
    assert!(
        changes
            .windows(2)
            .all(|p| p[0]["at"].as_f64() >= p[1]["at"].as_f64()),
        "{changes:?}"
    );

    w.assert_nodes_running();
    w.shutdown().await;
}
