//! The test suite runs from a fresh clone: no source file reaches outside the repository for
//! a fixture (reference facts live in `tests/fixtures`, each saying where they come from).

use adoport_tests::source_tree::{rust_files, workspace_crates, workspace_root};

#[test]
fn no_source_file_reads_a_fixture_outside_the_repository() {
    let root = workspace_root();
    let mut files = Vec::new();
    for krate in workspace_crates(&root) {
        rust_files(&root.join(krate), &mut files);
    }
    assert!(files.len() > 50, "found only {} source files", files.len());
    // Paths that climb out of the workspace from a crate's manifest directory, or into the
    // folder beside it (assembled here so that this file does not contain them itself).
    let up = "..";
    let escapes = [format!("/{up}/{up}/"), format!("{up}/shared/")];
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| {
            std::fs::read_to_string(f)
                .map(|text| escapes.iter().any(|e| text.contains(e.as_str())))
                .unwrap_or(false)
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "these read outside the repository; copy the fixture into tests/fixtures with its source: {offenders:?}"
    );
}
