//! Every file in `tests/invalid/` is refused with exactly the problems its `# expect:`
//! lines name: `# expect: <field path> | <text the message contains>`.

use std::path::{Path, PathBuf};

use fedlb_topology::{LoadError, load_with_env};

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
fn there_are_enough_invalid_cases() {
    assert!(cases().len() >= 15, "only {} invalid cases", cases().len());
}

#[test]
fn every_invalid_file_fails_with_its_expected_problems() {
    let mut failures = Vec::new();
    for file in cases() {
        let text = std::fs::read_to_string(&file).unwrap();
        let expected = expectations(&text);
        assert!(
            !expected.is_empty(),
            "{}: no `# expect:` line",
            file.display()
        );
        let problems = match load_with_env(&file, Vec::<(String, String)>::new()) {
            Ok(_) => {
                failures.push(format!("{}: loaded, but should fail", file.display()));
                continue;
            }
            Err(e @ (LoadError::Parse(_) | LoadError::Invalid(_))) => e.problems(),
            Err(e) => {
                failures.push(format!("{}: unexpected error kind: {e}", file.display()));
                continue;
            }
        };
        for p in &problems {
            assert_eq!(Path::new(&p.file), file, "problems name the file");
            // the display form is what operators see
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
                "{}: expected {} problem(s), got {}:\n{}",
                file.display(),
                expected.len(),
                problems.len(),
                shown.join("\n")
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}
