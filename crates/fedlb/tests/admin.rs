//! Operator overrides end to end, through the real binary: `fedlb global` and `fedlb farm`
//! as processes (killed and restarted like a deployment's), demo backends on loopback, the
//! embedded DNS server asked over UDP, and `fedlb drain|undrain|pin|overrides` with an
//! operator certificate from `fedlb certs --operator`.

mod procs;
#[path = "../../fedlb-node/tests/support/mod.rs"]
mod support;

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use procs::Proc;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Two farms: west (10 ms, failover w1 then w2) and east (50 ms, e1).
fn topology(b: u8) -> String {
    [
        header(b, "\"least_loaded\""),
        farm(b, 2, "west", 10, &["w1", "w2"]),
        remote_server(b, 11, "w1"),
        remote_server(b, 12, "w2"),
        farm(b, 3, "east", 50, &["e1"]),
        remote_server(b, 21, "e1"),
    ]
    .concat()
}

/// `fedlb ARGS --topology T --certs C --operator alice`: exit code, stdout, stderr.
fn fedlb_admin(w: &World, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fedlb"))
        .args(args)
        .arg("--topology")
        .arg(&w.topology)
        .arg("--certs")
        .arg(&w.certs)
        .args(["--operator", "alice"])
        .output()
        .expect("run fedlb");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn issue_operator(w: &World) {
    let out = Command::new(env!("CARGO_BIN_EXE_fedlb"))
        .arg("certs")
        .arg(&w.topology)
        .arg("--out")
        .arg(&w.certs)
        .args(["--operator", "alice"])
        .output()
        .expect("run fedlb certs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("operator/alice"));
}

fn global_status(b: u8) -> SocketAddr {
    SocketAddr::new(ip(b, 1), 7480)
}

fn dns(b: u8) -> SocketAddr {
    SocketAddr::new(ip(b, 1), 5353)
}

/// Starts the backends and the nodes; returns once DNS answers w1.
async fn federation(b: u8) -> (World, Proc, Proc, Proc) {
    let mut w = World::new(&topology(b));
    issue_operator(&w);
    for (name, host) in [("w1", 11), ("w2", 12), ("e1", 21)] {
        w.start_backend(name, ip(b, host)).await;
    }
    let g = Proc::start(&w, "global", "global");
    let west = Proc::start(&w, "farm", "west");
    let east = Proc::start(&w, "farm", "east");
    wait_answers(global_status(b), dns(b), &[ip(b, 11)]).await;
    (w, g, west, east)
}

/// Polls DNS until it answers `want`; fails if it answers something else than `before` or
/// `want` on the way (the answer moves in one step).
async fn moves_to(b: u8, before: IpAddr, want: IpAddr) {
    wait_for(&format!("DNS to answer {want}"), || async {
        let got = dns_a(dns(b), "www.t.test.").await?;
        if got == [want] {
            return Ok(());
        }
        assert_eq!(got, [before], "the answer moved somewhere else on the way");
        Err(format!("dns answers {got:?}"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_moves_the_answer_in_one_decision_and_undrain_lets_it_come_back() {
    const B: u8 = 161;
    let (w, global, west, _east) = federation(B).await;
    let (code, out, err) = fedlb_admin(&w, &["drain", "w1", "--reason", "kernel upgrade"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("farm west via global global: drained w1 (until cleared), id drain-"),
        "the global node forwarded it to the farm node: {out}"
    );
    // the farm node holds it: asked directly, it lists it
    let (code, list, err) = fedlb_admin(&w, &["overrides", "--direct"]);
    assert_eq!(code, 0, "{list}{err}");
    assert!(
        list.lines().any(|l| l.starts_with("farm west: drain-")
            && l.ends_with("w1: drained by alice: kernel upgrade")),
        "{list}"
    );
    moves_to(B, ip(B, 11), ip(B, 12)).await;
    // the farm node's local decision moved once: its why does not count any other step
    let farm = status(SocketAddr::new(ip(B, 2), 7481)).await.unwrap();
    let text = farm["overrides"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(text, "w1: drained by alice: kernel upgrade", "{farm}");
    let (code, page) = http_get(SocketAddr::new(ip(B, 2), 7481), "/")
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert!(
        page.contains("Operator overrides")
            && page.contains("w1: drained by alice: kernel upgrade"),
        "{page}"
    );
    // and `fedlb status` (the table) lists it
    let table = Command::new(env!("CARGO_BIN_EXE_fedlb"))
        .args(["status", &format!("http://{}:7481", ip(B, 2))])
        .output()
        .expect("run fedlb status");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("operator overrides:\n  w1: drained by alice: kernel upgrade  drain-"),
        "{table}"
    );
    // every global node shows the drained server with who and why, from the summaries
    let g = status(global_status(B)).await.unwrap();
    let w1 = candidate(local(&g, "west").unwrap(), "w1")
        .cloned()
        .unwrap_or_default();
    assert_eq!(w1["health"], "drained", "{w1}");
    assert_eq!(w1["reason"], "drained by alice: kernel upgrade", "{w1}");
    assert!(
        west.log().contains("override set"),
        "the audit log: {}",
        west.log()
    );
    assert!(west.log().contains("operator=alice"), "{}", west.log());
    // the global node it went through keeps a trace of it too
    let glog = global.log();
    assert!(
        glog.lines()
            .any(|l| l.contains("admin call forwarded to farm nodes")
                && l.contains("operator=alice")
                && l.contains("farm=west")),
        "{glog}"
    );

    let (code, out, err) = fedlb_admin(&w, &["undrain", "w1"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("farm west via global global: cleared drain-"),
        "{out}"
    );
    // back after the local dwell
    moves_to(B, ip(B, 12), ip(B, 11)).await;
    let (code, out, _) = fedlb_admin(&w, &["overrides"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("farm west via global global: no overrides"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_survives_a_restart_of_the_global_and_the_farm_node() {
    const B: u8 = 162;
    let (w, g, west, _east) = federation(B).await;
    let (code, out, err) = fedlb_admin(
        &w,
        &["drain", "w1", "--for", "10m", "--reason", "kernel upgrade"],
    );
    assert_eq!(code, 0, "{out}{err}");
    moves_to(B, ip(B, 11), ip(B, 12)).await;
    // kill -9 both, start them again from their state directory
    drop(west);
    drop(g);
    let _g = Proc::start(&w, "global", "global");
    let west = Proc::start(&w, "farm", "west");
    wait_for("the restarted global node to answer", || async {
        let v = status(global_status(B)).await?;
        let a = global_answers(&v);
        if a.is_empty() {
            Err(describe(&v))
        } else {
            Ok(())
        }
    })
    .await;
    // from the first answer on, the drained server is never answered
    for _ in 0..20 {
        let got = dns_a(dns(B), "www.t.test.").await.unwrap_or_default();
        assert!(!got.contains(&ip(B, 11)), "the drain was lost: {got:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_answers(global_status(B), dns(B), &[ip(B, 12)]).await;
    assert!(
        west.log().contains("operator overrides restored"),
        "{}",
        west.log()
    );
    let farm = status(SocketAddr::new(ip(B, 2), 7481)).await.unwrap();
    let text = farm["overrides"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        text.starts_with("w1: drained by alice until ") && text.ends_with(" UTC: kernel upgrade"),
        "{farm}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_pin_reverts_by_itself() {
    const B: u8 = 163;
    let (w, g, _west, _east) = federation(B).await;
    let (code, out, err) = fedlb_admin(
        &w,
        &[
            "pin",
            "www",
            "east",
            "--for",
            "3s",
            "--reason",
            "west migration",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("global global: pinned to east"), "{out}");
    moves_to(B, ip(B, 11), ip(B, 21)).await;
    let v = status(global_status(B)).await.unwrap();
    let why = service(&v)["global"]["why"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(why.contains("www pinned to east by alice until "), "{why}");
    // nobody clears it: after 3 s it stops applying, and west answers again after the dwell
    moves_to(B, ip(B, 21), ip(B, 11)).await;
    assert!(g.log().contains("override expired"), "{}", g.log());
    let (code, out, _) = fedlb_admin(&w, &["overrides"]);
    assert_eq!(code, 0);
    assert!(out.contains("global global: no overrides"), "{out}");
}

/// A TLS client with `identity` (cert and key PEM) or none, posting a drain to `addr`.
async fn raw_admin_call(
    ca_pem: &str,
    identity: Option<(&str, &str)>,
    addr: SocketAddr,
) -> Result<(u16, String), String> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"fedlb-admin/1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("global.global.fedlb.invalid").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let body = r#"{"op":"set","id":"x","kind":"drain","target":"east"}"#;
    let req = format!(
        "POST /admin HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .await
        .map_err(|e| format!("reading: {e}"))?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no answer: {text:?}"))?;
    Ok((code, text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_call_without_an_operator_certificate_or_with_an_agents_is_refused_and_logged() {
    const B: u8 = 164;
    let (w, g, _west, east) = federation(B).await;
    let ca = std::fs::read_to_string(w.certs.join("ca.pem")).unwrap();
    // no client certificate: the handshake fails (or the first read does, in TLS 1.3)
    let r = raw_admin_call(&ca, None, global_status(B)).await;
    assert!(
        r.is_err(),
        "a call without a certificate was answered: {r:?}"
    );
    // an operator certificate from another CA
    let other = fedlb_net::Ca::generate("other").unwrap();
    let forged = other
        .issue(&fedlb_net::NodeName::new("alice").unwrap(), Role::Operator)
        .unwrap();
    let r = raw_admin_call(
        &ca,
        Some((forged.cert_pem(), forged.key_pem())),
        global_status(B),
    )
    .await;
    assert!(
        r.is_err(),
        "a certificate of another CA was answered: {r:?}"
    );
    // an agent's certificate from the federation CA: a valid identity, not an operator
    w.issue_cert("rogue", Role::Agent);
    let read = |f: &str| std::fs::read_to_string(w.certs.join(f)).unwrap();
    let (cert, key) = (read("rogue.agent.pem"), read("rogue.agent.key"));
    let (code, text) = raw_admin_call(&ca, Some((&cert, &key)), global_status(B))
        .await
        .expect("an answer");
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("agent/rogue is not an operator"), "{text}");
    // nothing changed, and both refusals are in the node's log with who tried
    let v = status(global_status(B)).await.unwrap();
    assert!(v.get("overrides").is_none(), "{v}");
    wait_for("the refusals in the log", || async {
        let log = g.log();
        let tls = log.contains("admin call refused: TLS handshake failed");
        let agent = log.contains("admin call refused: not an operator certificate")
            && log.contains("peer=agent/rogue");
        if tls && agent { Ok(()) } else { Err(log) }
    })
    .await;
    // the tool without the operator's certificate says what to do
    let (code, _, err) = {
        let out = Command::new(env!("CARGO_BIN_EXE_fedlb"))
            .args(["drain", "east", "--operator", "bob", "--topology"])
            .arg(&w.topology)
            .arg("--certs")
            .arg(&w.certs)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(code, 1);
    assert!(err.contains("--operator bob"), "{err}");
    // an unknown target is named
    let (code, _, err) = fedlb_admin(&w, &["drain", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown target \"nope\""), "{err}");
    // a farm node the global node cannot reach: the forwarded call fails, and says where
    drop(east);
    let (code, out, err) = fedlb_admin(&w, &["drain", "e1"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("farm east via global global: error: request to farm/east: "),
        "{err}"
    );
}

/// Two global nodes (`g1` on .1, `g2` on .5), each with its own embedded server, and a
/// region `eu` of clients on 127.0.<b>.128/25 that is closest to west.
fn two_globals(b: u8) -> String {
    let globals = format!(
        r#"
[[global]]
name = "g1"
listen = "127.0.{b}.1:7400"
status = "127.0.{b}.1:7480"
embedded = {{ listen = "127.0.{b}.1:5353", state_dir = "dns-g1" }}

[[global]]
name = "g2"
listen = "127.0.{b}.5:7400"
status = "127.0.{b}.5:7480"
embedded = {{ listen = "127.0.{b}.5:5353", state_dir = "dns-g2" }}
"#
    );
    let head = header(b, "\"least_loaded\"")
        .replace(
            &format!("[global]\nlisten = \"127.0.{b}.1:7400\"\nstatus = \"127.0.{b}.1:7480\"\n"),
            &globals,
        )
        .replace(
            &format!("embedded = {{ listen = \"127.0.{b}.1:5353\", state_dir = \"dns\" }}\n"),
            "",
        );
    assert!(head.contains("[[global]]") && !head.contains("state_dir = \"dns\""));
    let region = format!(
        r#"
[[regions]]
name = "eu"
clients = ["127.0.{b}.128/25"]
distance_ms = {{ west = 10, east = 60 }}
"#
    );
    [
        head,
        farm(b, 2, "west", 10, &["w1", "w2"]),
        remote_server(b, 11, "w1"),
        remote_server(b, 12, "w2"),
        farm(b, 3, "east", 50, &["e1"]),
        remote_server(b, 21, "e1"),
        region,
    ]
    .concat()
}

/// What a global node's decision for `region` chose.
fn region_chosen(v: &serde_json::Value, region: &str) -> Vec<String> {
    service(v)["regions"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["region"] == region))
        .and_then(|r| r["decision"]["chosen"].as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_pin_goes_to_every_global_node_and_moves_only_that_regions_answer() {
    const B: u8 = 165;
    let mut w = World::new(&two_globals(B));
    issue_operator(&w);
    for (name, host) in [("w1", 11), ("w2", 12), ("e1", 21)] {
        w.start_backend(name, ip(B, host)).await;
    }
    let _g1 = Proc::start(&w, "global", "g1");
    let _g2 = Proc::start(&w, "global", "g2");
    let _west = Proc::start(&w, "farm", "west");
    let _east = Proc::start(&w, "farm", "east");
    let globals = [
        SocketAddr::new(ip(B, 1), 7480),
        SocketAddr::new(ip(B, 5), 7480),
    ];
    for g in globals {
        wait_for("both decisions on west", || async {
            let v = status(g).await?;
            if global_chosen(&v) == ["west"] && region_chosen(&v, "eu") == ["west"] {
                Ok(())
            } else {
                Err(describe(&v))
            }
        })
        .await;
    }
    let (code, out, err) = fedlb_admin(
        &w,
        &[
            "pin",
            "www",
            "east",
            "--region",
            "eu",
            "--reason",
            "west migration",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("global g1: pinned to east") && out.contains("global g2: pinned to east"),
        "{out}"
    );
    for g in globals {
        wait_for(
            "eu pinned to east, the default region unchanged",
            || async {
                let v = status(g).await?;
                assert_eq!(
                    global_chosen(&v),
                    ["west"],
                    "the default region moved: {}",
                    describe(&v)
                );
                if region_chosen(&v, "eu") == ["east"] {
                    Ok(())
                } else {
                    Err(describe(&v))
                }
            },
        )
        .await;
        // an eu client's DNS answer is east's server, anyone else's west's
        let dns = SocketAddr::new(g.ip(), 5353);
        wait_for("DNS answers by region", || async {
            let eu = dns_a_from(ip(B, 130), dns, "www.t.test.").await?;
            let other = dns_a(dns, "www.t.test.").await?;
            if eu == [ip(B, 21)] && other == [ip(B, 11)] {
                Ok(())
            } else {
                Err(format!("eu {eu:?}, others {other:?}"))
            }
        })
        .await;
    }
    // cleared by id on every node holding it
    let (_, list, _) = fedlb_admin(&w, &["overrides"]);
    let id = list
        .split_whitespace()
        .find(|s| s.starts_with("pin-"))
        .unwrap_or_else(|| panic!("{list}"))
        .to_owned();
    let (code, out, err) = fedlb_admin(&w, &["overrides", "clear", &id]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.matches(&format!("cleared {id}")).count(), 2, "{out}");
    for g in globals {
        wait_for("eu back on west", || async {
            let v = status(g).await?;
            if region_chosen(&v, "eu") == ["west"] {
                Ok(())
            } else {
                Err(describe(&v))
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_farm_is_not_answered_even_when_it_is_the_only_one_up() {
    const B: u8 = 166;
    let (mut w, _g, _west, _east) = federation(B).await;
    let (code, out, err) = fedlb_admin(&w, &["disable", "west", "--reason", "decommissioned"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("global global: disabled west"), "{out}");
    moves_to(B, ip(B, 11), ip(B, 21)).await;
    // east dies: west is the only farm up, and still not answered (a drain would answer it)
    w.kill_backend("e1").await;
    wait_for("the global decision to go fail-static", || async {
        let v = status(global_status(B)).await?;
        if service(&v)["global"]["degraded"] == true {
            Ok(())
        } else {
            Err(describe(&v))
        }
    })
    .await;
    for _ in 0..10 {
        let got = dns_a(dns(B), "www.t.test.").await.unwrap_or_default();
        assert!(
            !got.contains(&ip(B, 11)),
            "a disabled farm was answered: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // enabled again: west answers
    let (code, out, err) = fedlb_admin(&w, &["enable", "west"]);
    assert_eq!(code, 0, "{out}{err}");
    wait_answers(global_status(B), dns(B), &[ip(B, 11)]).await;
}
