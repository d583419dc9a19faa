//! `fedlb simulate --suite DIR`: a small suite whose answers are known (`tests/suite/`), the
//! command's files, and suite directories that are wrong.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use fedlb_sim::{DEFAULT_ROW, Error, Options, Ran, Suite, SuiteReport, run_cli, simulate_suite};

fn known() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/suite")
}

fn cli(args: &[&str]) -> (Result<Ran, Error>, String) {
    let mut out = Vec::new();
    let r = run_cli(args.iter().map(OsString::from), &mut out);
    (r, String::from_utf8(out).unwrap())
}

fn suite_report(args: &[&str]) -> (SuiteReport, String) {
    match cli(args) {
        (Ok(Ran::Suite(r)), table) => (r, table),
        (other, _) => panic!("{other:?}"),
    }
}

#[test]
fn known_answers_of_the_small_suite() {
    let dir = known();
    let (r, table) = suite_report(&["--suite", dir.to_str().unwrap()]);
    let names: Vec<&str> = r.scenarios.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["near", "split"]);

    // near: one region beside farm a; closest and fedlb answer a1 to everyone, and with a
    // constant service time and no queueing every request takes exactly 10 + 10 ms
    let near = &r.scenarios[0];
    assert_eq!(near.default.as_deref(), Some("fedlb"), "one region: fedlb");
    assert_eq!(
        near.baselines,
        ["round-robin", "random", "closest", "least-loaded"]
    );
    let closest = near.report.policy("closest").unwrap();
    assert_eq!(closest.mean_ms, 20.0);
    assert_eq!(near.best_baseline().unwrap().mean_ms, 20.0);
    assert_eq!(near.ratios("fedlb"), Some((1.0, 1.0)));
    // round robin sends about half the clients 90 ms away: ≈ 60 ms, ≈ 3×
    let (rr, _) = near.ratios("round-robin").unwrap();
    assert!((2.4..3.6).contains(&rr), "round robin {rr}");

    // split: two equal regions on either side; every baseline answers everyone alike, so
    // half the clients cross (60 ms mean, 100 ms p99); fedlb-regions answers each region
    // with its own farm (20 ms)
    let split = &r.scenarios[1];
    assert_eq!(split.default.as_deref(), Some("fedlb-regions"));
    let best = split.best_baseline().unwrap();
    assert!(
        (55.0..=60.5).contains(&best.mean_ms),
        "{}: {}",
        best.name,
        best.mean_ms
    );
    let regions = split.report.policy("fedlb-regions").unwrap();
    assert_eq!(regions.mean_ms, 20.0);
    let (m, p) = split.ratios("fedlb-regions").unwrap();
    assert!((0.33..0.365).contains(&m), "mean ratio {m}");
    assert!((0.19..0.21).contains(&p), "p99 ratio {p}");

    // across the suite: the default row takes fedlb on near and fedlb-regions on split
    let summary = r.summary();
    let default = summary.iter().find(|s| s.name == DEFAULT_ROW).unwrap();
    assert_eq!(default.scenarios, 2);
    assert!((default.mean_ratio - m.sqrt()).abs() < 1e-9);
    assert!((default.p99_ratio - p.sqrt()).abs() < 1e-9);
    assert!(default.misses.is_empty(), "{:?}", default.misses);
    // the bar: ≤ 1.0× everywhere and √(1 × ⅓) ≈ 0.58 ≤ 0.8 overall
    assert!(
        table.contains("≤ 1.0× mean and p99 on 2 of 2 scenarios;"),
        "{table}"
    );
    assert!(table.ends_with("(bar 0.80×). Bar met.\n"), "{table}");
    // each scenario's best baseline (b) and fedlb's default (d) are marked
    let marks = |policy: &str| -> Vec<String> {
        table
            .lines()
            .take_while(|l| !l.starts_with("across the suite"))
            .filter(|l| l.split_whitespace().any(|w| w == policy))
            .map(|l| {
                l.split_whitespace()
                    .filter(|w| *w == "b" || *w == "d")
                    .collect::<String>()
            })
            .collect()
    };
    assert_eq!(marks("closest"), ["b", ""], "{table}");
    assert_eq!(marks("fedlb"), ["d", ""], "{table}");
    assert_eq!(marks("fedlb-regions"), ["", "d"], "{table}");
}

#[test]
fn the_suite_command_is_deterministic_and_writes_its_files() {
    let dir = known();
    let out = tempfile::tempdir().unwrap();
    let one = out.path().join("one");
    let (a, table_a) = suite_report(&[
        "--suite",
        dir.to_str().unwrap(),
        "--threads",
        "1",
        "--out",
        one.to_str().unwrap(),
    ]);
    let (b, table_b) = suite_report(&["--suite", dir.to_str().unwrap(), "--threads", "2"]);
    assert_eq!(table_a, table_b);
    assert_eq!(a, b);
    let read = |name: &str| std::fs::read_to_string(one.join(name)).unwrap();
    assert_eq!(read("table.txt"), table_a);
    let csv = read("suite.csv");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 2 * 16, "{csv}");
    assert!(lines[0].starts_with("scenario,policy,baseline,best_baseline,default,"));
    assert!(
        csv.lines()
            .any(|l| l.starts_with("near,closest,true,") && l.ends_with(",1.0000,1.0000")),
        "{csv}"
    );
    assert!(
        csv.lines()
            .any(|l| l.starts_with("split,fedlb-regions,false,false,true,")),
        "{csv}"
    );
    let summary = read("suite-summary.csv");
    assert_eq!(summary.lines().count(), 1 + 16 + 1, "{summary}");
    assert!(
        summary
            .lines()
            .last()
            .unwrap()
            .starts_with("fedlb's default,2,")
    );
    for s in ["near", "split"] {
        assert!(one.join(s).join("summary.csv").is_file(), "{s}");
        assert!(one.join(s).join("response.svg").is_file(), "{s}");
    }
    // another seed draws other requests
    let (c, _) = suite_report(&["--suite", dir.to_str().unwrap(), "--seed", "7"]);
    assert_eq!(c.seed, Some(7));
    assert_ne!(a.scenarios[1].report, c.scenarios[1].report);
}

#[test]
fn only_and_policy_select_and_the_baselines_always_run() {
    let suite = Suite::load(&known(), &["split".to_owned()]).unwrap();
    assert_eq!(suite.entries.len(), 1);
    let opts = Options {
        policies: vec!["fedlb-regions".into()],
        ..Options::default()
    };
    let r = simulate_suite(&suite, &opts).unwrap();
    let names: Vec<&str> = r.scenarios[0]
        .report
        .policies
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "round-robin",
            "random",
            "closest",
            "least-loaded",
            "fedlb-regions"
        ]
    );
    let opts = Options {
        policies: vec!["magic".into()],
        ..Options::default()
    };
    let e = simulate_suite(&suite, &opts).unwrap_err().to_string();
    let file = known().join("split/scenario.toml");
    assert!(
        e.starts_with(&format!("{}: no policy \"magic\"", file.display())),
        "{e}"
    );
}

fn write(dir: &Path, file: &str, text: &str) {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn load_error(dir: &Path, only: &[&str]) -> String {
    let only: Vec<String> = only.iter().map(|s| (*s).to_owned()).collect();
    Suite::load(dir, &only).unwrap_err().to_string()
}

#[test]
fn invalid_suite_directories_name_their_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let shown = |p: &Path| p.display().to_string();

    let missing = root.join("nowhere");
    let e = load_error(&missing, &[]);
    assert!(
        e.starts_with(&format!("{}: cannot read: ", shown(&missing))),
        "{e}"
    );

    let empty = root.join("empty");
    std::fs::create_dir(&empty).unwrap();
    write(
        &empty,
        "README.md",
        "files beside the scenarios are ignored",
    );
    assert_eq!(
        load_error(&empty, &[]),
        format!(
            "{}: no scenario (a suite is a directory of <name>/scenario.toml with <name>/topology.toml)",
            shown(&empty)
        )
    );

    // every problem of every scenario, each with its file
    let bad = root.join("bad");
    let good_topology = std::fs::read_to_string(known().join("near/topology.toml")).unwrap();
    let good_scenario = std::fs::read_to_string(known().join("near/scenario.toml")).unwrap();
    write(&bad, "a-no-topology/scenario.toml", &good_scenario);
    write(&bad, "b-bad-scenario/topology.toml", &good_topology);
    write(
        &bad,
        "b-bad-scenario/scenario.toml",
        "duration = \"0s\"\n[[regions]]\nname = \"here\"\nrate = 1\n",
    );
    write(
        &bad,
        "c-bad-topology/topology.toml",
        "name = \"x\"\n[global]\nnme = 1\n",
    );
    write(&bad, "c-bad-topology/scenario.toml", &good_scenario);
    write(&bad, "d-good/topology.toml", &good_topology);
    write(&bad, "d-good/scenario.toml", &good_scenario);
    let e = load_error(&bad, &[]);
    let lines: Vec<&str> = e.lines().collect();
    let path = |p: &str| shown(&bad.join(p));
    assert_eq!(
        lines[0],
        format!(
            "{}: missing (a suite scenario is a directory with scenario.toml and topology.toml)",
            path("a-no-topology/topology.toml")
        ),
        "{e}"
    );
    assert_eq!(
        lines[1],
        format!(
            "{}: duration: must be above zero",
            path("b-bad-scenario/scenario.toml")
        ),
        "{e}"
    );
    assert!(
        lines[2].starts_with(&format!("{}: ", path("c-bad-topology/topology.toml"))),
        "{e}"
    );
    assert!(!e.contains("d-good"), "{e}");
    // a good scenario alone loads
    assert_eq!(
        Suite::load(&bad, &["d-good".to_owned()])
            .unwrap()
            .entries
            .len(),
        1
    );

    assert_eq!(
        load_error(&bad, &["zz"]),
        format!(
            "{}: no scenario \"zz\" (it has: a-no-topology, b-bad-scenario, c-bad-topology, d-good)",
            shown(&bad)
        )
    );

    // and on the command line
    let (r, _) = cli(&["--suite", missing.to_str().unwrap()]);
    assert!(matches!(r, Err(Error::Read { .. })), "{r:?}");
    let (r, _) = cli(&["--suite", bad.to_str().unwrap()]);
    assert!(
        matches!(r, Err(Error::Suite(ref p)) if p.len() == 3),
        "{r:?}"
    );
}

#[test]
fn the_command_line_of_a_suite() {
    use fedlb_sim::{CliArgs, Input};
    let args = |s: &str| CliArgs::parse(s.split_whitespace().map(Into::into));
    let a = args("--suite scenarios --only a,b --only c --policy fedlb --seed 3 --out d").unwrap();
    assert_eq!(
        a.input,
        Input::Suite {
            dir: PathBuf::from("scenarios"),
            only: vec!["a".into(), "b".into(), "c".into()]
        }
    );
    assert_eq!(a.options.seed, Some(3));
    assert_eq!(a.out, Some(PathBuf::from("d")));
    let e = |s: &str| args(s).unwrap_err().to_string();
    assert!(e("--suite s topo.toml").starts_with("--suite takes no TOPOLOGY"));
    assert!(e("--suite s --scenario x.toml").starts_with("--suite takes no TOPOLOGY"));
    assert!(e("topo.toml --scenario s.toml --only a").starts_with("--only needs --suite"));
    assert!(e("--suite").starts_with("--suite needs a value"));
}

/// The checked-in suite loads, and every scenario in it runs the single-level baselines and
/// fedlb's default (running it takes a minute or two in release mode: `fedlb simulate
/// --suite scenarios`).
#[test]
fn the_checked_in_suite_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let suite = Suite::load(&dir, &[]).unwrap();
    assert!(suite.entries.len() >= 6, "{}", suite.entries.len());
    for e in &suite.entries {
        let baselines = e
            .scenario
            .variants
            .iter()
            .filter(|v| v.is_baseline())
            .count();
        assert_eq!(baselines, 4, "{}", e.name);
        assert!(
            fedlb_sim::default_policy(&e.scenario).is_some(),
            "{}",
            e.name
        );
    }
}
