//! Shared helpers for the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The crate root; the CLI runs from here so paths in messages are short and stable.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the `marketsim` binary with `args` from the crate root.
pub fn marketsim(args: &[&str]) -> Output {
    marketsim_in(root(), args)
}

/// Runs the `marketsim` binary with `args` from `folder`, e.g. an empty one, as a newcomer
/// would outside a clone.
pub fn marketsim_in(folder: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_marketsim"))
        .args(args)
        .current_dir(folder)
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot start marketsim: {e}"))
}

/// `marketsim run SCRIPT --out OUT --quiet EXTRA…`.
pub fn run_script(script: &str, out: &Path, extra: &[&str]) -> Output {
    let target = out.to_string_lossy();
    let mut args = vec!["run", script, "--out", &target, "--quiet"];
    args.extend_from_slice(extra);
    marketsim(&args)
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A fresh temporary directory, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"))
}

/// Every file below `dir`, as (relative path, bytes), sorted by path.
pub fn directory_contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let entries =
            std::fs::read_dir(&current).unwrap_or_else(|e| panic!("{}: {e}", current.display()));
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes =
                    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                files.push((path.strip_prefix(dir).unwrap_or(&path).to_path_buf(), bytes));
            }
        }
    }
    files.sort();
    files
}

/// The Python of the tests when it can import `module`: `MARKETSIM_PYTHON` (what `cargo xtask
/// ci` installs into target/python from tests/python/requirements.txt), else `python3`. `None`
/// when it cannot and `MARKETSIM_REQUIRE_PYTHON` is unset (a plain `cargo test` on a machine
/// without the packages); with it set, that is a failure.
pub fn python_with(module: &str) -> Option<PathBuf> {
    let candidate = std::env::var_os("MARKETSIM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"));
    let has_module = Command::new(&candidate)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|output| output.status.success());
    if has_module {
        return Some(candidate);
    }
    assert!(
        std::env::var_os("MARKETSIM_REQUIRE_PYTHON").is_none(),
        "{} cannot import {module} (cargo xtask ci installs tests/python/requirements.txt into target/python)",
        candidate.display()
    );
    eprintln!(
        "skipped: {} has no {module}; `cargo xtask ci` runs this with target/python",
        candidate.display()
    );
    None
}
