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
    for dir in ["src", "tests", "xtask/src", "benches", "examples"] {
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

/// The library's layers, lowest first: a module may use its own layer and those before it,
/// never a later one (ARCHITECTURE.md explains each).
const LAYERS: &[&str] = &[
    "diagnostics",
    "assets",
    "bundled",
    "engine",
    "market",
    "scenario",
    "stats",
    "analyst",
    "session",
    "output",
    "report",
    "inspect",
    "validate",
    "app",
    "live",
];

/// The top-level module a source file under `src/` belongs to.
fn layer_of(file: &Path) -> Option<&'static str> {
    let relative = file.strip_prefix("src").ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    LAYERS.iter().copied().find(|layer| *layer == name)
}

#[test]
fn no_layer_imports_a_higher_one() {
    let mut files = Vec::new();
    rust_files(Path::new("src"), &mut files);
    let mut checked = 0;
    let mut problems = Vec::new();
    for file in files {
        let Some(layer) = layer_of(&file) else {
            continue;
        };
        checked += 1;
        let rank = LAYERS.iter().position(|l| *l == layer).unwrap_or(0);
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for (index, line) in text.lines().enumerate() {
            let mut rest = line;
            while let Some(position) = rest.find("crate::") {
                rest = &rest[position + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if let Some(used) = LAYERS.iter().position(|l| *l == name) {
                    if used > rank {
                        problems.push(format!(
                            "{}:{}: `{layer}` uses `{name}`, a higher layer",
                            file.display(),
                            index + 1
                        ));
                    }
                }
            }
        }
    }
    assert!(checked > 40, "only {checked} files were checked");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
