//! Validation is split by section: one file per part of the topology, each one `impl`.

use std::path::Path;

#[test]
fn item7_validation_has_one_file_and_one_impl_per_section() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/validate");
    let mut sections = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("src/validate is a directory") {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let of_ctx = text.lines().filter(|l| l.starts_with("impl Ctx")).count();
        assert_eq!(
            of_ctx, 1,
            "validate/{name}.rs has {of_ctx} `impl Ctx` blocks"
        );
        let impls = text.lines().filter(|l| l.starts_with("impl ")).count();
        // mod.rs also holds the index of what the file declares
        assert!(
            impls == 1 || name == "mod",
            "validate/{name}.rs has {impls} impl blocks"
        );
        assert!(
            text.lines().count() < 600,
            "validate/{name}.rs is a big room again"
        );
        sections.push(name);
    }
    sections.sort();
    assert_eq!(
        sections,
        [
            "checks", "dns", "farms", "globals", "mod", "policies", "regions", "services",
            "values", "zones"
        ]
    );
    assert!(!dir.with_extension("rs").exists(), "validate.rs is back");
}
