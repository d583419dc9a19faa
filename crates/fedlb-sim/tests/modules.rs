//! The simulator's rooms import each other one way only: no module imports one that
//! imports it back (read from the `crate::…` paths of each file), and the engine's rooms
//! share only its `state`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The `crate::<module>` paths a source text names, among the known modules.
fn imports(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    text.match_indices("crate::")
        .filter_map(|(i, _)| {
            let rest = &text[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            modules.contains(&name).then_some(name)
        })
        .collect()
}

fn src() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Module → the source texts it is made of (a directory module: all its files).
fn modules() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(src()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "lib" {
            continue;
        }
        let text = if path.is_dir() {
            let mut all = String::new();
            for f in std::fs::read_dir(&path).unwrap() {
                all.push_str(&std::fs::read_to_string(f.unwrap().path()).unwrap());
            }
            all
        } else {
            std::fs::read_to_string(&path).unwrap()
        };
        out.entry(name).or_insert_with(String::new).push_str(&text);
    }
    out
}

#[test]
fn item7_no_simulator_module_imports_one_that_imports_it_back() {
    let texts = modules();
    let names: BTreeSet<String> = texts.keys().cloned().collect();
    assert!(names.contains("engine") && names.contains("report") && names.contains("stats"));
    let graph: BTreeMap<&String, BTreeSet<String>> = texts
        .iter()
        .map(|(name, text)| {
            let mut to = imports(text, &names);
            to.remove(name);
            (name, to)
        })
        .collect();
    // depth-first search for a circle, reporting the first one found
    fn walk<'a>(
        at: &'a String,
        graph: &'a BTreeMap<&String, BTreeSet<String>>,
        path: &mut Vec<&'a String>,
        done: &mut BTreeSet<&'a String>,
    ) -> Option<String> {
        if let Some(i) = path.iter().position(|p| *p == at) {
            let circle: Vec<&str> = path[i..].iter().map(|s| s.as_str()).collect();
            return Some(format!("{} → {at}", circle.join(" → ")));
        }
        if !done.insert(at) {
            return None;
        }
        path.push(at);
        for next in &graph[at] {
            if let Some(c) = walk(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for name in graph.keys() {
        let mut path = Vec::new();
        let found = walk(name, &graph, &mut path, &mut done);
        assert!(found.is_none(), "import circle: {}", found.unwrap());
    }
}

#[test]
fn item7_the_engine_rooms_share_only_its_state() {
    let dir = src().join("engine");
    let mut rooms = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "mod" || name == "state" {
            continue;
        }
        rooms += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, _) in text.match_indices("super::") {
            let what: String = text[i + "super::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert_eq!(what, "state", "engine/{name}.rs reaches into super::{what}");
        }
    }
    assert!(rooms >= 5, "the engine has {rooms} rooms besides its state");
}
