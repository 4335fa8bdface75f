//! The test suite runs from a fresh clone: no source file reaches outside the repository for
//! a fixture (reference facts live in `tests/fixtures`, each saying where they come from).

use std::path::{Path, PathBuf};

const CRATES: &[&str] = &[
    "shared",
    "ingest",
    "transform",
    "publish",
    "cli",
    "sim",
    "tests",
];

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn no_source_file_reads_a_fixture_outside_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for krate in CRATES {
        rust_files(&root.join(krate), &mut files);
    }
    assert!(files.len() > 50, "found only {} source files", files.len());
    // Paths that climb out of the workspace from a crate's manifest directory (this file
    // names them, so it is left out).
    let escapes = ["/../../", "../shared/"];
    let this = Path::new(file!()).file_name().expect("file name");
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| f.file_name() != Some(this))
        .filter(|f| {
            std::fs::read_to_string(f)
                .map(|text| escapes.iter().any(|e| text.contains(e)))
                .unwrap_or(false)
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "these read outside the repository; copy the fixture into tests/fixtures with its source: {offenders:?}"
    );
}
