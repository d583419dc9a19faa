//! Every file in `tests/invalid/` is refused with exactly the problems its `# expect:`
//! lines name: `# expect: <field path> | <text the message contains>`, as the topology's
//! invalid files are.

use std::path::{Path, PathBuf};

use fedlb_sim::{Error, Scenario};

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/invalid exists")
        .map(|e| e.expect("readable dir").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

fn expectations(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(|l| {
            let (path, message) = l.split_once(" | ").expect("`# expect: path | message`");
            (path.trim().to_owned(), message.trim().to_owned())
        })
        .collect()
}

#[test]
fn item4_every_invalid_scenario_reports_each_problem_with_its_path() {
    assert!(cases().len() >= 8, "only {} invalid cases", cases().len());
    let mut failures = Vec::new();
    for file in cases() {
        let text = std::fs::read_to_string(&file).unwrap();
        let expected = expectations(&text);
        assert!(
            !expected.is_empty(),
            "{}: no `# expect:` line",
            file.display()
        );
        let problems = match Scenario::load(&file) {
            Ok(_) => {
                failures.push(format!("{}: loaded, but should fail", file.display()));
                continue;
            }
            Err(Error::Scenario(problems)) => problems,
            Err(e) => {
                failures.push(format!("{}: unexpected error kind: {e}", file.display()));
                continue;
            }
        };
        for p in &problems {
            assert_eq!(Path::new(&p.file), file, "problems name the file");
            assert!(
                p.to_string()
                    .starts_with(&format!("{}: {}: ", file.display(), p.path))
            );
        }
        let shown: Vec<String> = problems
            .iter()
            .map(|p| format!("  {}: {}", p.path, p.message))
            .collect();
        for (path, message) in &expected {
            if !problems
                .iter()
                .any(|p| &p.path == path && p.message.contains(message.as_str()))
            {
                failures.push(format!(
                    "{}: expected `{path}: …{message}…`, got:\n{}",
                    file.display(),
                    shown.join("\n")
                ));
            }
        }
        if problems.len() != expected.len() {
            failures.push(format!(
                "{}: expected {} problems, got {}:\n{}",
                file.display(),
                expected.len(),
                problems.len(),
                shown.join("\n")
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[test]
fn item4_a_scenario_reports_every_problem_not_only_the_first() {
    let text =
        "duration = \"0s\"\nbin = \"10ms\"\n[[regions]]\nname = \"eu\"\nrate = -1\nrat = 2\n";
    let e = Scenario::parse(text, "bad.toml").unwrap_err();
    // one line per problem, in the form `fedlb check` uses for topologies
    assert_eq!(
        e.to_string(),
        "bad.toml: regions[0].rat: unknown field `rat`, expected one of `name`, `location`, `rate`, `diurnal`, `bursts`, `resolvers`\n\
         bad.toml: duration: must be above zero\n\
         bad.toml: bin: must be at least 100ms\n\
         bad.toml: regions[0].rate: -1: must be ≥ 0"
    );
}
