//! `fedlb status URL…`: a node's status as a table; given several global nodes, whether
//! they agree on every answer.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::Context;
use fedlb_node::status::{Status, render_changes, render_table};

/// Fetches `url/status` and prints it: as a table, its changes (`changes`), or raw.
pub fn run(url: &str, json: bool, changes: bool) -> anyhow::Result<()> {
    let (endpoint, body) = fetch(url)?;
    if json {
        println!("{body}");
        return Ok(());
    }
    let status = parse(&endpoint, &body)?;
    print!("{}", view(&status, changes));
    Ok(())
}

fn view(status: &Status, changes: bool) -> String {
    if changes {
        render_changes(status)
    } else {
        render_table(status)
    }
}

fn fetch(url: &str) -> anyhow::Result<(String, String)> {
    let base = url.trim_end_matches('/');
    let endpoint = if base.ends_with("/status") {
        base.to_owned()
    } else {
        format!("{base}/status")
    };
    let body = ureq::get(&endpoint)
        .call()
        .with_context(|| format!("fetching {endpoint}"))?
        .body_mut()
        .read_to_string()
        .with_context(|| format!("reading {endpoint}"))?;
    Ok((endpoint, body))
}

fn parse(endpoint: &str, body: &str) -> anyhow::Result<Status> {
    serde_json::from_str(body)
        .with_context(|| format!("{endpoint} did not answer a fedlb status document"))
}

/// Several global nodes: each one's table (or JSON), then whether they agree. Exit status
/// 0: they agree; 1: some answer differs; 2: a node could not be read.
pub fn run_several(urls: &[String], json: bool, changes: bool) -> ExitCode {
    let mut read = Vec::new();
    let mut unreadable = false;
    for url in urls {
        match fetch(url).and_then(|(endpoint, body)| Ok((parse(&endpoint, &body)?, body))) {
            Ok((status, body)) => {
                if json {
                    println!("{body}");
                } else {
                    println!("{}", view(&status, changes));
                }
                read.push(status);
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                unreadable = true;
            }
        }
    }
    let (text, agree) = agreement(&read);
    if !json {
        print!("{text}");
    }
    match (unreadable, agree) {
        (true, _) => {
            eprintln!(
                "error: {} of {} nodes could not be read",
                urls.len() - read.len(),
                urls.len()
            );
            ExitCode::from(2)
        }
        (false, true) => ExitCode::SUCCESS,
        (false, false) => ExitCode::from(1),
    }
}

/// Per service and region (`-`: the default region), each node's answer; the text says
/// `agree` or `DIFFER` per row, and whether every row agrees.
pub fn agreement(nodes: &[Status]) -> (String, bool) {
    // (service, region) → node → answer
    let mut rows: BTreeMap<(String, String), BTreeMap<String, Vec<IpAddr>>> = BTreeMap::new();
    for s in nodes {
        for svc in &s.services {
            if let Some(g) = &svc.global {
                rows.entry((svc.service.clone(), "-".to_owned()))
                    .or_default()
                    .insert(s.node.clone(), sorted(&g.answers));
            }
            for r in &svc.regions {
                rows.entry((svc.service.clone(), r.region.clone()))
                    .or_default()
                    .insert(s.node.clone(), sorted(&r.decision.answers));
            }
        }
    }
    let mut out = String::new();
    let names: Vec<&str> = nodes.iter().map(|s| s.node.as_str()).collect();
    let _ = writeln!(out, "agreement of {}:", names.join(", "));
    let mut all = true;
    for ((service, region), answers) in &rows {
        let first = answers.values().next();
        let agree = answers.len() == nodes.len() && answers.values().all(|a| Some(a) == first);
        all &= agree;
        let each: Vec<String> = names
            .iter()
            .map(|n| {
                let a = answers.get(*n).map_or_else(
                    || "(none)".to_owned(),
                    |a| {
                        a.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(" ")
                    },
                );
                format!("{n}: {a}")
            })
            .collect();
        let _ = writeln!(
            out,
            "  {service:<12} region {region:<10} {}  {}",
            if agree { "agree " } else { "DIFFER" },
            each.join("; ")
        );
    }
    let _ = writeln!(
        out,
        "{}",
        if all {
            "all global nodes agree"
        } else {
            "global nodes DISAGREE"
        }
    );
    (out, all)
}

fn sorted(a: &[IpAddr]) -> Vec<IpAddr> {
    let mut a = a.to_vec();
    a.sort();
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, answer: &str, eu: &str) -> Status {
        let text = format!(
            r#"{{"schema":1,"node":"{name}","role":"global","uptime_s":1.0,"services":[{{
              "service":"www","fqdn":"www.t.test.","farms":[],"published":null,
              "global":{{"policy":"closest","chosen":[],"answers":["{answer}"],"why":"",
                         "degraded":false,"since_s":0.0,"candidates":[]}},
              "regions":[{{"region":"eu","published":null,
                 "decision":{{"policy":"closest","chosen":[],"answers":["{eu}"],"why":"",
                              "degraded":false,"since_s":0.0,"candidates":[]}}}}]}}]}}"#
        );
        serde_json::from_str(&text).expect("a status document")
    }

    #[test]
    fn global_nodes_with_the_same_answers_agree() {
        let (text, agree) = agreement(&[
            node("g1", "127.0.0.11", "127.0.0.21"),
            node("g2", "127.0.0.11", "127.0.0.21"),
        ]);
        assert!(agree, "{text}");
        assert!(
            text.contains("www          region -          agree   g1: 127.0.0.11; g2: 127.0.0.11"),
            "{text}"
        );
        assert!(text.ends_with("all global nodes agree\n"), "{text}");
    }

    #[test]
    fn one_region_answered_differently_is_a_disagreement() {
        let (text, agree) = agreement(&[
            node("g1", "127.0.0.11", "127.0.0.21"),
            node("g2", "127.0.0.11", "127.0.0.31"),
        ]);
        assert!(!agree, "{text}");
        assert!(
            text.contains("region eu         DIFFER  g1: 127.0.0.21; g2: 127.0.0.31"),
            "{text}"
        );
        assert!(text.contains("region -          agree"), "{text}");
        assert!(text.ends_with("global nodes DISAGREE\n"), "{text}");
    }

    #[test]
    fn with_changes_the_timeline_is_printed_instead_of_the_table() {
        let mut s = node("g1", "127.0.0.21", "127.0.0.21");
        s.changes = serde_json::from_str(
            r#"[{"at":1764511327.0,"ago_s":3.0,"service":"www","region":null,
                 "from":{"chosen":["near"],"answers":["127.0.0.11"],"degraded":false},
                 "to":{"chosen":["far"],"answers":["127.0.0.21"],"degraded":false},
                 "why":"far: closest (50 ms) of 1 healthy farm","cause":"health",
                 "subject":"near"}]"#,
        )
        .expect("changes");
        let text = view(&s, true);
        assert!(text.contains("2025-11-30 14:02:07"), "{text}");
        assert!(
            text.contains("near (127.0.0.11) → far (127.0.0.21)"),
            "{text}"
        );
        assert!(text.contains("health: near"), "{text}");
        assert!(!text.contains("global  closest"), "not the table: {text}");
        assert!(view(&s, false).contains("global  closest"));
    }
}
