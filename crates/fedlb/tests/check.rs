//! `fedlb check` on the shipped examples and on broken files, through the real binary.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fedlb(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fedlb"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run fedlb");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_example_checks_and_describes_its_nodes() {
    for entry in std::fs::read_dir(root().join("topologies")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let p = path.to_str().unwrap();
        let (code, out, err) = fedlb(&["check", "--deny-warnings", p]);
        assert_eq!(code, 0, "{p}: {err}");
        assert!(out.contains("nodes:"), "{p}: {out}");
        assert!(out.contains("(global node)"), "{p}: {out}");
        assert!(out.trim_end().ends_with(": ok"), "{p}: {out}");
    }
}

#[test]
fn an_invalid_file_prints_every_error_with_its_path_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let good = std::fs::read_to_string(root().join("topologies/two-sites.toml")).unwrap();
    // break two unrelated things: a server address and a service's port
    let bad = good
        .replacen("address = \"127.0.0.", "address = \"127.0.0.300.", 1)
        .replacen("port = ", "port = 70000 #", 1);
    std::fs::write(&path, bad).unwrap();
    let (code, out, err) = fedlb(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert!(errors.len() >= 2, "{err}");
    assert!(err.contains(".address: "), "{err}");
    assert!(err.contains(".port: "), "{err}");
    assert!(err.contains("nothing would start"), "{err}");
    assert!(
        out.is_empty(),
        "nothing described for an invalid file: {out}"
    );
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let (code, _, err) = fedlb(&["check", "no/such/topology.toml"]);
    assert_eq!(code, 1);
    assert!(err.contains("no/such/topology.toml: cannot read"), "{err}");
}

#[test]
fn item9_check_reports_an_unknown_field_and_a_bad_address_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let good = std::fs::read_to_string(root().join("topologies/two-sites.toml")).unwrap();
    let bad = good
        .replacen("distance_ms = 4", "distanse_ms = 4", 1)
        .replacen("address = \"127.0.0.22\"", "address = \"127.0.0.300\"", 1);
    assert_ne!(bad, good);
    std::fs::write(&path, bad).unwrap();
    let (code, _, err) = fedlb(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("farms[0].distanse_ms: unknown field `distanse_ms`"),
        "{err}"
    );
    assert!(
        err.contains("farms[0].servers[1].address: invalid ip address \"127.0.0.300\""),
        "{err}"
    );
}

#[test]
fn item6_check_refuses_a_yaml_alias_bomb_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.yaml");
    let mut bomb = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
    {
        let refs = vec![format!("*{prev}"); 9].join(",");
        bomb.push_str(&format!("{name}: &{name} [{refs}]\n"));
    }
    std::fs::write(&path, bomb).unwrap();
    let (code, out, err) = fedlb(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("alias bomb"), "{err}");
}

#[test]
fn item4_simulate_prints_every_scenario_problem_on_its_own_error_line() {
    let (code, out, err) = fedlb(&[
        "simulate",
        "scenarios/three-regions/topology.toml",
        "--scenario",
        "crates/fedlb-sim/tests/invalid/several_problems.toml",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    let file = "crates/fedlb-sim/tests/invalid/several_problems.toml";
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 6, "{err}");
    for line in &lines {
        assert!(line.starts_with(&format!("error: {file}: ")), "{err}");
    }
    assert!(
        lines[0].ends_with(": duration: must be above zero"),
        "{err}"
    );
    assert!(
        lines[5].contains(": policies[0].local: unknown policy \"nearest\""),
        "{err}"
    );
}

#[test]
fn simulate_suite_prints_every_problem_of_every_scenario_on_its_own_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("suite");
    std::fs::create_dir_all(bad.join("a")).unwrap();
    std::fs::create_dir_all(bad.join("b")).unwrap();
    std::fs::write(
        bad.join("a/scenario.toml"),
        "duration = \"0s\"\n[[regions]]\nname = \"eu\"\nrate = -1\n",
    )
    .unwrap();
    std::fs::copy(
        root().join("scenarios/three-regions/topology.toml"),
        bad.join("a/topology.toml"),
    )
    .unwrap();
    let (code, out, err) = fedlb(&["simulate", "--suite", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    let lines: Vec<&str> = err.lines().collect();
    let a = bad.join("a/scenario.toml").display().to_string();
    let b = bad.join("b");
    assert_eq!(
        lines,
        [
            format!("error: {a}: duration: must be above zero"),
            format!("error: {a}: regions[0].rate: -1: must be ≥ 0"),
            format!(
                "error: {}: missing (a suite scenario is a directory with scenario.toml and topology.toml)",
                b.join("scenario.toml").display()
            ),
            format!(
                "error: {}: missing (a suite scenario is a directory with scenario.toml and topology.toml)",
                b.join("topology.toml").display()
            ),
        ],
        "{err}"
    );
    // one scenario or a suite, not both
    let (code, _, err) = fedlb(&[
        "simulate",
        "--suite",
        "scenarios",
        "scenarios/three-regions/topology.toml",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn check_warns_when_a_status_address_is_not_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("open.toml");
    let good = std::fs::read_to_string(root().join("topologies/demo.toml")).unwrap();
    let open = good.replacen("status = \"127.0.0.1:", "status = \"0.0.0.0:", 1);
    assert_ne!(open, good, "demo.toml has a loopback status address");
    std::fs::write(&path, open).unwrap();
    let p = path.to_str().unwrap();
    let (code, _, err) = fedlb(&["check", "--quiet", p]);
    assert_eq!(code, 0, "a warning, not an error: {err}");
    assert!(
        err.contains(
            "global.status: status address 0.0.0.0:7480 is not loopback and the read-only status"
        ),
        "{err}"
    );
    let (code, _, err) = fedlb(&["check", "--quiet", "--deny-warnings", p]);
    assert_eq!(code, 2, "{err}");
}
