//! Tidy: every Rust file says what it owns in a leading `//!` line; no trailing whitespace;
//! no ignored tests.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn every_rust_file_is_tidy() {
    let mut files = Vec::new();
    for dir in ["src", "tests", "xtask/src", "benches"] {
        rust_files(Path::new(dir), &mut files);
    }
    files.push(PathBuf::from("build.rs"));
    assert!(files.len() > 10);
    let ignore_attribute = ["#[", "ignore]"].concat();
    let mut problems = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if !text.starts_with("//!") {
            problems.push(format!(
                "{}: does not open with a `//!` line saying what it owns",
                file.display()
            ));
        }
        for (index, line) in text.lines().enumerate() {
            if line.ends_with(' ') || line.ends_with('\t') {
                problems.push(format!(
                    "{}:{}: trailing whitespace",
                    file.display(),
                    index + 1
                ));
            }
            if line.trim_start().starts_with(&ignore_attribute) {
                problems.push(format!("{}:{}: ignored test", file.display(), index + 1));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
