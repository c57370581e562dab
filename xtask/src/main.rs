//! `cargo xtask`: the project's automation — the CI gate, snapshot blessing and benchmarks.
//!
//! Kept to the standard library (plus `libc` for peak-memory measurement) so it compiles in
//! seconds. Every task prints the commands it runs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let result = match task {
        "ci" => ci(),
        "bless" => bless(),
        "bench" => bench(),
        _ => {
            eprintln!("usage: cargo xtask <task>\n\n  ci      fmt check, clippy -D warnings, tests with snapshots checked (the whole gate)\n  bless   run the tests and accept every changed snapshot (review the diff first!)\n  bench   benchmarks: engine throughput, 30-day runs with and without events.jsonl");
            return if task == "help" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask {task}: {message}");
            ExitCode::FAILURE
        }
    }
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string()));
    command.current_dir(project_root());
    command
}

fn run(mut command: Command) -> Result<(), String> {
    eprintln!("$ {command:?}");
    let status = command
        .status()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed with {status}"))
    }
}

fn ci() -> Result<(), String> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run(fmt)?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy)?;

    // Snapshots are checked, never written: a changed snapshot fails the run, and a snapshot
    // file that no test references fails it too (what `cargo insta test --check
    // --unreferenced=reject` does, without needing cargo-insta installed).
    let references = std::env::temp_dir().join(format!(
        "marketsim-snapshot-references-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&references);
    let mut test = cargo();
    test.args(["test", "--workspace"])
        .env("INSTA_UPDATE", "no")
        .env("INSTA_FORCE_PASS", "0")
        .env("CI", "true")
        .env("INSTA_SNAPSHOT_REFERENCES_FILE", &references);
    run(test)?;
    let referenced: BTreeSet<PathBuf> = std::fs::read_to_string(&references)
        .unwrap_or_default()
        .lines()
        .map(|line| std::fs::canonicalize(line).unwrap_or_else(|_| PathBuf::from(line)))
        .collect();
    let _ = std::fs::remove_file(&references);
    let mut unreferenced = Vec::new();
    for file in snapshot_files(&project_root()) {
        let canonical = std::fs::canonicalize(&file).unwrap_or(file.clone());
        if !referenced.contains(&canonical) {
            unreferenced.push(file.display().to_string());
        }
    }
    if !unreferenced.is_empty() {
        return Err(format!(
            "snapshots that no test references (delete them):\n  {}",
            unreferenced.join("\n  ")
        ));
    }
    eprintln!("xtask ci: all checks passed");
    Ok(())
}

/// Every `.snap` (and stray `.snap.new`) file under the project's snapshot folders.
fn snapshot_files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.join("tests"), root.join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(".snap") || name.ends_with(".snap.new") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn bless() -> Result<(), String> {
    for stale in snapshot_files(&project_root()) {
        if stale.to_string_lossy().ends_with(".snap.new") {
            let _ = std::fs::remove_file(stale);
        }
    }
    let mut test = cargo();
    test.args(["test", "--workspace"])
        .env("INSTA_UPDATE", "always")
        .env_remove("CI");
    run(test)?;
    eprintln!("xtask bless: snapshots written; review them with `git diff tests/snapshots` before committing");
    Ok(())
}

/// Wall time and peak resident memory of one child process.
struct Measured {
    seconds: f64,
    peak_rss_mib: f64,
}

/// Runs a command and measures it with wait4, which reports the child's own peak RSS.
fn measure(mut command: Command) -> Result<Measured, String> {
    let started = Instant::now();
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data that wait4 fills in; pid is our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    if waited != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("{command:?} failed (status {status})"));
    }
    Ok(Measured {
        seconds,
        peak_rss_mib: usage.ru_maxrss as f64 / 1024.0,
    })
}

/// Pins a command to CPU 0 when `taskset` exists, so figures are for one core.
fn on_one_core(program: &Path) -> Command {
    if Path::new("/usr/bin/taskset").exists() {
        let mut command = Command::new("/usr/bin/taskset");
        command.arg("-c").arg("0").arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn json_number(text: &str, key: &str) -> Option<f64> {
    let start = text.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = text[start..].trim_start();
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    rest[..end].parse().ok()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn bench() -> Result<(), String> {
    let root = project_root();
    // (a) The engine alone, with divan (pinned to one core).
    let mut build = cargo();
    build.args(["bench", "--bench", "engine", "--no-run"]);
    run(build)?;
    let mut engine = cargo();
    engine.args(["bench", "--bench", "engine"]);
    let mut pinned = Command::new("/usr/bin/taskset");
    pinned
        .current_dir(&root)
        .arg("-c")
        .arg("0")
        .arg(engine.get_program())
        .args(engine.get_args());
    run(if Path::new("/usr/bin/taskset").exists() {
        pinned
    } else {
        engine
    })?;

    // (b) and (c): the full model over the bundled 30-day baseline, in a release build.
    let mut release = cargo();
    release.args(["build", "--release", "--bin", "marketsim"]);
    run(release)?;
    let binary = root.join("target/release/marketsim");
    let scratch = std::env::temp_dir().join(format!("marketsim-bench-{}", std::process::id()));
    let mut rows = Vec::new();
    for (label, events, truth) in [
        ("30-day baseline (b)", false, false),
        ("30-day baseline + truth twins", false, true),
        ("30-day baseline, --events (c)", true, false),
    ] {
        let mut seconds = Vec::new();
        let mut peak = 0.0f64;
        for _ in 0..3 {
            let mut command = on_one_core(&binary);
            command
                .current_dir(&root)
                .args([
                    "run",
                    "scenarios/baseline.yaml",
                    "--quiet",
                    "--force",
                    "--out",
                ])
                .arg(&scratch);
            if events {
                command.arg("--events");
            }
            if !truth {
                command.arg("--no-truth");
            }
            let measured = measure(command)?;
            seconds.push(measured.seconds);
            peak = peak.max(measured.peak_rss_mib);
        }
        let summary =
            std::fs::read_to_string(scratch.join("summary.json")).map_err(|e| e.to_string())?;
        let total_events = json_number(&summary, "totalEvents").unwrap_or(0.0);
        let wall = median(seconds);
        let events_mb = std::fs::metadata(scratch.join("events.jsonl"))
            .map(|m| m.len() as f64 / 1e6)
            .unwrap_or(0.0);
        rows.push((label, wall, total_events, peak, events_mb));
    }
    let _ = std::fs::remove_dir_all(&scratch);
    println!();
    println!(
        "{:<34} {:>9} {:>12} {:>14} {:>13} {:>12}",
        "full model (one core, median of 3)",
        "wall s",
        "events",
        "M events/s",
        "peak RSS MiB",
        "events MB/s"
    );
    for (label, wall, total, peak, mb) in rows {
        let throughput = if mb > 0.0 {
            format!("{:.1} ({:.0} MB)", mb / wall, mb)
        } else {
            "-".to_string()
        };
        println!(
            "{label:<34} {wall:>9.2} {total:>12.0} {:>14.2} {peak:>13.1} {throughput:>12}",
            total / wall / 1e6
        );
    }
    Ok(())
}
