//! Reproducibility, scenario-file errors, and the checked-in scenario.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fedlb_sim::{CliArgs, Error, Options, Scenario, TopologyBuilder, load_topology, simulate};

const SMALL: &str = r#"
duration = "4m"
warmup = "30s"
bin = "10s"
[server_defaults]
slots = 4
service_time = { dist = "lognormal", mean = "15ms", cv = 1.5 }
[[regions]]
name = "eu"
rate = 150
resolvers = 10
bursts = [{ at = "2m", duration = "30s", factor = 3 }]
[[regions]]
name = "us"
rate = 100
[rtt_ms]
eu = { a = 10, b = 90 }
us = { a = 90, b = 10 }
[[faults]]
kind = "server_slow"
target = "a1"
at = "1m"
until = "2m"
factor = 4
[[faults]]
kind = "farm_node_down"
target = "b"
at = "3m"
"#;

fn small() -> (fedlb_sim::Topology, Scenario) {
    let topo = TopologyBuilder::new()
        .farm("a", 10.0, None, &[("a1", 1.0), ("a2", 1.0)])
        .farm("b", 50.0, None, &[("b1", 2.0)])
        .build();
    (topo, Scenario::parse(SMALL, "small.toml").unwrap())
}

fn everything(r: &fedlb_sim::Report) -> String {
    [
        r.to_table(),
        r.summary_csv(),
        r.regions_csv(),
        r.series_csv(),
        r.plot_svg().unwrap(),
    ]
    .concat()
}

#[test]
fn same_seed_gives_byte_identical_output_whatever_the_thread_count() {
    let (topo, sc) = small();
    let one = Options {
        threads: 1,
        ..Options::default()
    };
    let two = Options {
        threads: 2,
        ..Options::default()
    };
    let a = everything(&simulate(&topo, &sc, &one).unwrap());
    let b = everything(&simulate(&topo, &sc, &two).unwrap());
    assert_eq!(a, b);
    assert!(a.contains("<svg"), "the plot is drawn");
    let other = Options {
        seed: Some(2),
        ..Options::default()
    };
    let c = everything(&simulate(&topo, &sc, &other).unwrap());
    assert_ne!(a, c, "another seed draws other requests");
}

#[test]
fn every_default_policy_runs_and_sees_the_faults() {
    let (topo, sc) = small();
    let r = simulate(&topo, &sc, &Options::default()).unwrap();
    assert_eq!(r.policies.len(), 16);
    for p in &r.policies {
        assert!(p.requests > 50_000, "{}: {}", p.name, p.requests);
        assert!(p.mean_ms > 10.0, "{}: {}", p.name, p.mean_ms);
        assert_eq!(p.regions.len(), 2);
        assert_eq!(p.series.len(), 21);
        // the burst shows in the series
        let burst = &p.series[9];
        assert!(burst.requests > p.series[3].requests * 2, "{}", p.name);
    }
    // today's fedlb answers every region alike: the closest farm to the global node is a
    let fedlb = r.policy("fedlb").unwrap();
    let us = &fedlb.regions[1];
    assert!(
        us.mean_ms > 90.0,
        "us clients cross the ocean: {}",
        us.mean_ms
    );
    // the regions variant sends us clients to b until its farm node dies at 3 min
    let regions = r.policy("fedlb-regions").unwrap();
    assert!(regions.regions[1].mean_ms < us.mean_ms);
    let table = r.to_table();
    assert!(
        table.contains("closest among load ≤ 80 %, else least loaded farm"),
        "{table}"
    );
    assert!(
        table.contains("no hysteresis inside, TTL 30 s, one answer per client region"),
        "{table}"
    );
}

#[test]
fn policy_selection_and_unknown_names() {
    let (topo, sc) = small();
    let opts = Options {
        policies: vec!["fedlb".into(), "random".into()],
        ..Options::default()
    };
    let r = simulate(&topo, &sc, &opts).unwrap();
    let names: Vec<&str> = r.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["fedlb", "random"]);
    let opts = Options {
        policies: vec!["magic".into()],
        ..Options::default()
    };
    let e = simulate(&topo, &sc, &opts).unwrap_err();
    assert!(matches!(e, Error::UnknownPolicy { .. }), "{e}");
    assert!(e.to_string().contains("round-robin, random"), "{e}");
}

fn scenario_error(text: &str) -> String {
    Scenario::parse(text, "bad.toml").unwrap_err().to_string()
}

const MINIMAL: &str = "duration = \"5m\"\n[[regions]]\nname = \"eu\"\nrate = 1\n";

#[test]
fn scenario_errors_name_the_field() {
    assert!(Scenario::parse(MINIMAL, "ok.toml").is_ok());
    let e = scenario_error("duration = \"5m\"\n[[regions]]\nname = \"eu\"\nrat = 1\n");
    assert!(
        e.starts_with("bad.toml: regions[0].rat: unknown field `rat`"),
        "{e}"
    );
    let e = scenario_error(&format!(
        "{MINIMAL}[[faults]]\nkind = \"server_down\"\ntarget = \"x\"\nat = \"5 parsecs\"\n"
    ));
    assert!(e.starts_with("bad.toml: faults[0].at: "), "{e}");
    assert!(e.contains("unknown unit"), "{e}");
    let e = scenario_error(&format!("{MINIMAL}[servers.s1]\nslots = 0\n"));
    assert_eq!(
        e,
        "bad.toml: servers.s1.slots: 0 is out of range (at least 1)"
    );
    let e = scenario_error(&format!(
        "{MINIMAL}[server_defaults]\nservice_time = {{ dist = \"pareto\", mean = \"1ms\" }}\n"
    ));
    assert!(
        e.starts_with(
            "bad.toml: server_defaults.service_time.dist: unknown distribution \"pareto\""
        ),
        "{e}"
    );
    let e = scenario_error(&format!(
        "{MINIMAL}[[policies]]\nname = \"x\"\nflat = \"closest\"\nlocal = \"random\"\n"
    ));
    assert!(e.starts_with("bad.toml: policies[0].flat: "), "{e}");
    let e = scenario_error(&format!(
        "{MINIMAL}[[policies]]\nname = \"x\"\nglobal = \"nearest\"\n"
    ));
    assert!(
        e.starts_with("bad.toml: policies[0].global: unknown policy \"nearest\""),
        "{e}"
    );
    let e = scenario_error(&format!(
        "{MINIMAL}[[faults]]\nkind = \"server_slow\"\ntarget = \"x\"\nat = 5\n"
    ));
    assert_eq!(
        e,
        "bad.toml: faults[0].factor: server_slow needs a factor (service times are multiplied by it)"
    );
    let e = scenario_error(&format!("{MINIMAL}[rtt_ms]\nmars = {{ a = 1 }}\n"));
    assert_eq!(e, "bad.toml: rtt_ms.mars: no region \"mars\"");
    let e = scenario_error("duration = \"5m\"\nregions = []\n");
    assert_eq!(e, "bad.toml: regions: at least one region is needed");
}

#[test]
fn scenario_names_must_exist_in_the_topology() {
    let (topo, _) = small();
    let run = |extra: &str| {
        let sc = Scenario::parse(&format!("{SMALL}{extra}"), "s.toml").unwrap();
        simulate(&topo, &sc, &Options::default())
            .unwrap_err()
            .to_string()
    };
    let e = run("[[faults]]\nkind = \"server_down\"\ntarget = \"zz9\"\nat = 1\n");
    assert_eq!(e, "scenario faults[2].target: no server \"zz9\"");
    let e = run("[servers.nope]\nslots = 2\n");
    assert!(
        e.starts_with("scenario servers.nope: no server \"nope\""),
        "{e}"
    );
    let sc = Scenario::parse(
        "duration = \"5m\"\n[[regions]]\nname = \"eu\"\nrate = 1\n",
        "s.toml",
    )
    .unwrap();
    let e = simulate(&topo, &sc, &Options::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no latency to \"a\""), "{e}");
}

#[test]
fn command_line() {
    let args = |s: &str| CliArgs::parse(s.split_whitespace().map(Into::into));
    let a = args(
        "topo.toml --scenario s.toml --policy fedlb,random --policy closest --seed 7 --out=dir",
    )
    .unwrap();
    assert_eq!(
        a.input,
        fedlb_sim::Input::One {
            topology: PathBuf::from("topo.toml"),
            scenario: PathBuf::from("s.toml")
        }
    );
    assert_eq!(a.options.policies, ["fedlb", "random", "closest"]);
    assert_eq!(a.options.seed, Some(7));
    assert_eq!(a.out, Some(PathBuf::from("dir")));
    assert!(
        args("topo.toml")
            .unwrap_err()
            .to_string()
            .starts_with("--scenario is missing")
    );
    assert!(args("topo.toml --scenario s.toml --seed x").is_err());
    assert!(args("topo.toml --scenario s.toml --frobnicate").is_err());
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn every_checked_in_scenario_loads_with_its_topology() {
    let dir = repo().join("scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let d = entry.unwrap().path();
        if !d.is_dir() {
            continue;
        }
        let sc = Scenario::load(&d.join("scenario.toml")).unwrap();
        let topo = load_topology(&d.join("topology.toml"), sc.service.as_deref()).unwrap();
        assert!(!topo.monitors.is_empty());
        n += 1;
    }
    assert!(n >= 1);
}

/// The checked-in hour at ≈1,000 requests/s, run in full for two policies (about 15 s in
/// a debug build; the release timing is in `examples/hour.rs`).
#[test]
fn the_checked_in_hour_runs() {
    let d = repo().join("scenarios/three-regions");
    let sc = Scenario::load(&d.join("scenario.toml")).unwrap();
    assert_eq!(sc.duration, Duration::from_secs(3600));
    let topo = load_topology(&d.join("topology.toml"), None).unwrap();
    let opts = Options {
        policies: vec!["fedlb".into(), "round-robin".into()],
        ..Options::default()
    };
    let r = simulate(&topo, &sc, &opts).unwrap();
    for p in &r.policies {
        // ≈1,000 requests/s for 59 minutes, plus the burst
        assert!(
            p.requests > 3_400_000 && p.requests < 4_200_000,
            "{}: {}",
            p.name,
            p.requests
        );
    }
}
