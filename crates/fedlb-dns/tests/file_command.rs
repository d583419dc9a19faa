//! The file and command publishers with real files and real commands.

mod support;

use std::{path::Path, time::Duration};

use fedlb_dns::{
    CommandConfig, CommandPublisher, FailureClass, FileConfig, FilePublisher, Publisher, Status,
    run,
};
use support::{answers, zone};
use tokio::sync::watch;

fn status(report: &fedlb_dns::PublishReport, i: usize) -> &Status {
    &report.targets[i].status
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn file_publisher_writes_json_and_zone_fragment_only_on_change() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("answers.json");
    let fragment = dir.path().join("answers.zone");
    let mut config = FileConfig::new(zone(), &json);
    config.zone_fragment_path = Some(fragment.clone());
    let mut p = FilePublisher::new(config);

    let first = answers(&[
        ("www.example.test", 30, &["192.0.2.1", "2001:db8::1"]),
        ("api.example.test", 60, &["192.0.2.5"]),
    ]);
    let report = p.publish(&first).await;
    assert!(report.is_ok(), "{report:?}");
    assert!(matches!(
        status(&report, 0),
        Status::Updated { changes: 3, .. }
    ));
    assert_eq!(
        read_json(&json),
        serde_json::json!({"zone": "example.test.", "records": [
            {"name": "api.example.test.", "ttl": 60, "a": ["192.0.2.5"], "aaaa": []},
            {"name": "www.example.test.", "ttl": 30, "a": ["192.0.2.1"], "aaaa": ["2001:db8::1"]},
        ]})
    );
    let zone_text = std::fs::read_to_string(&fragment).unwrap();
    assert!(
        zone_text.contains("www.example.test.\t30\tIN\tAAAA\t2001:db8::1\n"),
        "{zone_text}"
    );
    let mtime = std::fs::metadata(&json).unwrap().modified().unwrap();

    // Same answers: nothing written.
    let report = p.publish(&first).await;
    assert!(
        matches!(status(&report, 0), Status::InSync)
            && matches!(status(&report, 1), Status::InSync)
    );
    assert_eq!(std::fs::metadata(&json).unwrap().modified().unwrap(), mtime);
    assert_eq!(p.metrics().targets[0].updates_sent, 1);

    // A change rewrites both files; no temporary file is left behind.
    let second = answers(&[
        ("www.example.test", 30, &["192.0.2.2"]),
        ("api.example.test", 60, &["192.0.2.5"]),
    ]);
    let report = p.publish(&second).await;
    assert!(
        matches!(status(&report, 0), Status::Updated { changes: 2, .. }),
        "{report:?}"
    );
    assert_eq!(
        read_json(&json)["records"][1]["a"],
        serde_json::json!(["192.0.2.2"])
    );
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["answers.json", "answers.zone"]);

    // Fail-static: an empty answer is refused and the last good one stays in the file.
    let report = p
        .publish(&answers(&[
            ("www.example.test", 30, &[]),
            ("api.example.test", 60, &["192.0.2.5"]),
        ]))
        .await;
    assert_eq!(report.refused[0].class(), FailureClass::EmptyAnswer);
    assert_eq!(
        read_json(&json)["records"][1]["a"],
        serde_json::json!(["192.0.2.2"])
    );

    // Edited by hand: the reconcile pass writes it back.
    std::fs::write(&json, "{}").unwrap();
    let report = p.reconcile().await;
    assert!(
        matches!(status(&report, 0), Status::Updated { changes: 0, .. }),
        "{report:?}"
    );
    assert_eq!(
        read_json(&json)["records"][1]["a"],
        serde_json::json!(["192.0.2.2"])
    );
    assert_eq!(p.metrics().targets[0].drift_repairs, 1);
}

#[tokio::test]
async fn file_publisher_reports_an_unwritable_path() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("no-such-dir").join("answers.json");
    let mut p = FilePublisher::new(FileConfig::new(zone(), &json));
    let report = p
        .publish(&answers(&[("www.example.test", 30, &["192.0.2.1"])]))
        .await;
    match status(&report, 0) {
        Status::Failed(e) => {
            assert_eq!(e.class(), FailureClass::Io);
            assert!(
                e.to_string().contains("no-such-dir/answers.json: writing"),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.metrics().targets[0].failures_of(FailureClass::Io), 1);
}

/// With paused time, the run loop reconciles the file when the interval elapses.
#[tokio::test(start_paused = true)]
async fn run_loop_rewrites_an_edited_file_on_the_reconcile_interval() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("answers.json");
    let mut config = FileConfig::new(zone(), &json);
    config.reconcile_interval = Duration::from_secs(60);
    let mut publisher = Publisher::File(FilePublisher::new(config));
    let (tx, rx) = watch::channel(answers(&[("www.example.test", 30, &["192.0.2.1"])]));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (outcomes, mut outcome_rx) = tokio::sync::mpsc::channel(64);
    let seen = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(o) = outcome_rx.recv().await {
            all.push(o);
        }
        all
    });
    let task = tokio::spawn(async move {
        run(&mut publisher, rx, outcomes, async {
            let _ = stopped.await;
        })
        .await;
        publisher
    });
    let a_of = |p: &Path| read_json(p)["records"][0]["a"].clone();
    wait_until(|| json.exists() && a_of(&json) == serde_json::json!(["192.0.2.1"])).await;
    tx.send(answers(&[("www.example.test", 30, &["192.0.2.9"])]))
        .unwrap();
    wait_until(|| a_of(&json) == serde_json::json!(["192.0.2.9"])).await;

    std::fs::write(&json, "{\"records\": [{}]}").unwrap();
    let start = tokio::time::Instant::now();
    wait_until(|| a_of(&json) == serde_json::json!(["192.0.2.9"])).await;
    assert!(
        start.elapsed() >= Duration::from_secs(50),
        "repaired by the interval, not at once"
    );
    stop.send(()).unwrap();
    let publisher = task.await.unwrap();
    assert_eq!(publisher.metrics().targets[0].drift_repairs, 1);
    // one outcome per pass (first answers, changed answers, repair), each naming the
    // published name; a file has no DNS primaries to report on
    let seen: Vec<fedlb_dns::PassOutcome> = seen.await.unwrap();
    assert!(seen.len() >= 3, "{seen:?}");
    let name = fedlb_dns::fqdn("www.example.test").unwrap();
    for o in &seen {
        assert_eq!(o.publisher, fedlb_dns::PublisherKind::File);
        assert!(o.is_ok(), "{o:?}");
        assert!(
            o.names.contains_key(&name) && o.served(&name).is_empty(),
            "{o:?}"
        );
    }
    assert!(seen.iter().any(|o| o.changes > 0), "{seen:?}");
}

async fn wait_until(mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("condition never met");
}

fn sh(script: &str, dir: &Path) -> CommandConfig {
    let mut c = CommandConfig::new(
        zone(),
        "sh",
        vec![
            "-c".into(),
            script.into(),
            "sh".into(),
            dir.display().to_string(),
        ],
    );
    c.timeout = Duration::from_secs(5);
    c.backoff_min = Duration::from_millis(50);
    c.backoff_max = Duration::from_millis(50);
    c
}

#[tokio::test]
async fn command_publisher_runs_only_on_change_with_json_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    // Each run saves its stdin as run.N.json and its FEDLB_ZONE.
    let script = r#"n=$(ls "$1" | grep -c '^run\.'); cat > "$1/run.$n.json"; echo "$FEDLB_ZONE" > "$1/zone""#;
    let mut p = CommandPublisher::new(sh(script, dir.path()));
    let first = answers(&[("www.example.test", 30, &["192.0.2.1"])]);
    let report = p.publish(&first).await;
    assert!(
        matches!(status(&report, 0), Status::Updated { changes: 1, .. }),
        "{report:?}"
    );
    assert_eq!(
        read_json(&dir.path().join("run.0.json"))["records"][0]["a"],
        serde_json::json!(["192.0.2.1"])
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("zone")).unwrap(),
        "example.test.\n"
    );

    for _ in 0..3 {
        assert!(matches!(
            status(&p.publish(&first).await, 0),
            Status::InSync
        ));
    }
    assert!(
        !dir.path().join("run.1.json").exists(),
        "not run again without a change"
    );

    let report = p
        .publish(&answers(&[(
            "www.example.test",
            30,
            &["192.0.2.1", "2001:db8::1"],
        )]))
        .await;
    assert!(
        matches!(status(&report, 0), Status::Updated { changes: 1, .. }),
        "{report:?}"
    );
    assert_eq!(
        read_json(&dir.path().join("run.1.json"))["records"][0]["aaaa"],
        serde_json::json!(["2001:db8::1"])
    );
    let m = p.metrics();
    assert_eq!(
        (m.targets[0].updates_sent, m.targets[0].updates_applied),
        (2, 2)
    );
}

#[tokio::test]
async fn command_publisher_reports_failures_and_retries_until_delivered() {
    let dir = tempfile::tempdir().unwrap();
    // Fails until the file "ok" exists.
    let script = r#"cat > /dev/null; if [ -e "$1/ok" ]; then echo done > "$1/delivered"; else echo "backend said no" >&2; exit 3; fi"#;
    let mut p = CommandPublisher::new(sh(script, dir.path()));
    let desired = answers(&[("www.example.test", 30, &["192.0.2.1"])]);
    let report = p.publish(&desired).await;
    match status(&report, 0) {
        Status::Failed(e) => {
            assert_eq!(e.class(), FailureClass::Command);
            let text = e.to_string();
            assert!(
                text.starts_with("command \"sh\": exited with status 3"),
                "{text}"
            );
            assert!(text.contains("backend said no"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        status(&p.publish(&desired).await, 0),
        Status::Deferred { .. }
    ));

    std::fs::write(dir.path().join("ok"), "").unwrap();
    tokio::time::sleep_until(p.poll_timeout().expect("a retry is scheduled")).await;
    let report = p.handle_timeout().await;
    assert!(
        matches!(status(&report, 0), Status::Updated { .. }),
        "{report:?}"
    );
    assert!(dir.path().join("delivered").exists());
    assert_eq!(p.poll_timeout(), None);
    let m = p.metrics();
    assert_eq!(m.targets[0].failures_of(FailureClass::Command), 1);
    assert_eq!(m.targets[0].consecutive_failures, 0);
}

#[tokio::test]
async fn command_publisher_kills_a_command_that_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = sh("sleep 30", dir.path());
    config.timeout = Duration::from_millis(300);
    let mut p = CommandPublisher::new(config);
    let started = std::time::Instant::now();
    let report = p
        .publish(&answers(&[("www.example.test", 30, &["192.0.2.1"])]))
        .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    match status(&report, 0) {
        Status::Failed(e) => {
            assert_eq!(e.class(), FailureClass::CommandTimeout);
            assert!(
                e.to_string()
                    .contains("did not finish within 300ms; killed"),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
    let mut missing = CommandPublisher::new(CommandConfig::new(
        zone(),
        "/nonexistent/fedlb-hook",
        vec![],
    ));
    let report = missing
        .publish(&answers(&[("www.example.test", 30, &["192.0.2.1"])]))
        .await;
    let err = report.errors().next().unwrap();
    assert!(
        err.to_string()
            .starts_with("command \"/nonexistent/fedlb-hook\": cannot start"),
        "{err}"
    );
}
