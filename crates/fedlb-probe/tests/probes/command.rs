use std::time::Duration;

use fedlb_core::Measurement;
use fedlb_probe::{ProbeError, ProbeSpec, Prober};

fn command(args: &[&str]) -> ProbeSpec {
    ProbeSpec::Command {
        argv: args.iter().map(|a| a.to_string()).collect(),
        metric: "db_users".into(),
    }
}

#[tokio::test]
async fn a_printed_number_is_the_metric() {
    let outcome = Prober::default()
        .probe(&command(&["sh", "-c", "echo 42"]), Duration::from_secs(2))
        .await;
    assert_eq!(
        outcome.result.unwrap(),
        vec![Measurement::Metric("db_users".into(), 42.0)]
    );
}

#[tokio::test]
async fn other_output_is_down_and_quoted() {
    let e = Prober::default()
        .probe(
            &command(&["sh", "-c", "echo 'forty two'"]),
            Duration::from_secs(2),
        )
        .await
        .result
        .unwrap_err();
    assert!(matches!(e, ProbeError::BadResponse { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "command sh -c \"echo 'forty two'\": bad response: output \"forty two\" is not a number"
    );
}

#[tokio::test]
async fn a_failing_command_is_down_with_its_status_and_stderr() {
    let e = Prober::default()
        .probe(
            &command(&["sh", "-c", "echo 'db: connection refused' >&2; exit 3"]),
            Duration::from_secs(2),
        )
        .await
        .result
        .unwrap_err();
    assert!(matches!(e, ProbeError::Exit { .. }), "{e:?}");
    assert!(
        e.to_string()
            .ends_with(": exit status 3: \"db: connection refused\""),
        "{e}"
    );
}

#[tokio::test]
async fn a_missing_program_is_an_invalid_probe() {
    let e = Prober::default()
        .probe(
            &command(&["/nonexistent/fedlb-metric"]),
            Duration::from_secs(2),
        )
        .await
        .result
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "command /nonexistent/fedlb-metric: invalid probe: program \"/nonexistent/fedlb-metric\" not found"
    );
}

fn alive(pid: i32) -> bool {
    // A killed child not yet reaped is a zombie: dead for this purpose.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[tokio::test]
async fn a_slow_command_times_out_and_its_processes_are_killed() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    // The shell and the `sleep` it starts in the background: both must die.
    let script = format!(
        "echo $$ > {0}; sleep 5 & echo $! >> {0}; wait",
        pids.display()
    );
    let timeout = Duration::from_millis(200);
    let outcome = Prober::default()
        .probe(&command(&["sh", "-c", &script]), timeout)
        .await;
    let e = outcome.result.as_ref().unwrap_err();
    assert!(matches!(e, ProbeError::Timeout { .. }), "{e:?}");
    assert!(e.to_string().ends_with(": timed out after 200ms"), "{e}");
    assert!(
        outcome.elapsed < Duration::from_secs(1),
        "{:?}",
        outcome.elapsed
    );

    let pids: Vec<i32> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2, "{pids:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while pids.iter().any(|&p| alive(p)) {
        assert!(
            std::time::Instant::now() < deadline,
            "still running: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
