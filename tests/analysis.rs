//! The analysis commands end to end: `run --analyze` with each analyst choice, `--baseline`
//! reuse and its refusal, and `eval` from recommendations.json or by re-analyzing the files.

use std::path::Path;
use std::process::Command;

use crate::support::{marketsim, root, run_script, stderr, stdout, temp_dir};

fn run(out: &Path, extra: &[&str]) -> std::process::Output {
    let target = out.to_string_lossy();
    let mut args = vec![
        "run",
        "fixtures/scripts/short.yaml",
        "--out",
        &target,
        "--quiet",
    ];
    args.extend_from_slice(extra);
    marketsim(&args)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn eval_reads_recommendations_or_reanalyzes_the_files_to_the_same_scores() {
    let dir = temp_dir();
    let analyzed = dir.path().join("analyzed");
    let output = run(&analyzed, &["--analyze"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let target = analyzed.to_string_lossy().into_owned();

    let from_file = dir.path().join("from-file.json");
    let output = marketsim(&["eval", &target, "--out", &from_file.to_string_lossy()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("overall"), "{}", stdout(&output));

    // Re-analysis from series.csv, baseline.json and timeline.json gives what the run gave.
    let reanalyzed = dir.path().join("reanalyzed.json");
    let output = marketsim(&[
        "eval",
        &target,
        "--analyst",
        "rules",
        "--out",
        &reanalyzed.to_string_lossy(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(read(&from_file), read(&reanalyzed));

    // Every input and the output place are checked before anything is printed: a stray file
    // among the runs, or an eval.json that cannot be written, leaves stdout empty and no file.
    let stray = dir.path().join("stray.txt");
    std::fs::write(&stray, "not a run").unwrap_or_else(|e| panic!("{e}"));
    let refused_out = dir.path().join("refused.json");
    let output = marketsim(&[
        "eval",
        &target,
        &stray.to_string_lossy(),
        "--out",
        &refused_out.to_string_lossy(),
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(stdout(&output), "");
    assert!(
        stderr(&output).contains("stray.txt: not a run directory"),
        "{}",
        stderr(&output)
    );
    assert!(!refused_out.exists());
    let inside_a_file = stray.join("eval.json");
    let output = marketsim(&["eval", &target, "--out", &inside_a_file.to_string_lossy()]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(stdout(&output), "");
    let folder = dir.path().to_string_lossy().into_owned();
    insta::assert_snapshot!(stderr(&output).replace(&folder, "<tmp>"), @"error: cannot write <tmp>/stray.txt/eval.json (pass --out FILE to write it elsewhere): <tmp>/stray.txt is not a folder, so <tmp>/stray.txt/eval.json cannot be written inside it");
    // A folder where the file should be: found when eval.json is moved into place, still
    // before the table is printed.
    let output = marketsim(&["eval", &target, "--out", &folder]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(stdout(&output), "");
    assert!(
        stderr(&output).contains("--out FILE"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn eval_refuses_a_run_that_was_not_analyzed() {
    let dir = temp_dir();
    let plain = dir.path().join("plain");
    let output = run(&plain, &["--no-truth"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = marketsim(&[
        "eval",
        &plain.to_string_lossy(),
        "--out",
        &dir.path().join("eval.json").to_string_lossy(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains("no recommendations.json"), "{message}");
    assert!(message.contains("--analyze"), "{message}");
}

#[test]
fn a_baseline_of_other_buckets_is_refused_before_the_run() {
    let dir = temp_dir();
    let five_minutes = dir.path().join("five");
    let output = run_script(
        "fixtures/analysis/short-5m.yaml",
        &five_minutes,
        &["--analyze", "--no-truth"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let hourly = dir.path().join("hourly");
    let baseline = five_minutes.join("baseline.json");
    let output = run(
        &hourly,
        &["--analyze", "--baseline", &baseline.to_string_lossy()],
    );
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("baseline buckets are 5 min but the run's are 60 min"),
        "{message}"
    );
    assert!(!hourly.exists(), "a refused run left a directory behind");
}

#[test]
fn the_llm_analyst_without_a_key_is_the_rules_analyst_with_a_note() {
    let dir = temp_dir();
    let out = dir.path().join("run");
    let output = Command::new(env!("CARGO_BIN_EXE_marketsim"))
        .args(["run", "fixtures/scripts/short.yaml", "--out"])
        .arg(&out)
        .args(["--quiet", "--analyze", "--analyst", "llm", "--no-truth"])
        .current_dir(root())
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap_or_else(|e| panic!("cannot start marketsim: {e}"));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stderr(&output).contains("OPENAI_API_KEY is not set"));
    let recommendations: serde_json::Value =
        serde_json::from_str(&read(&out.join("recommendations.json"))).unwrap_or_default();
    assert_eq!(recommendations["analyst"], "rules");
}

#[test]
fn analyze_options_need_analyze() {
    let output = marketsim(&[
        "run",
        "fixtures/scripts/short.yaml",
        "--out",
        "target/never",
        "--analyst",
        "llm",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--analyze"), "{}", stderr(&output));
}
