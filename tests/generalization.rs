//! The analyst on scripts it was not tuned on: CI's fixed set of random scripts
//! (`fixtures/random/`, seed 7000, indexes 0–5, capped at 4 days) runs with `--analyze`, `eval`
//! scores them, and the eval table with issue 13's targets is snapshotted. The targets fail
//! the test only with `MARKETSIM_ENFORCE_TARGETS=1`: the set is small and the analyst is still
//! being brought up to them, so by default the snapshot records where it stands.

use std::path::{Path, PathBuf};

use marketsim::analyst::targets::{meets, GENERALIZATION_TARGETS};

use crate::support::{marketsim, run_script, stderr, stdout, temp_dir};

/// The fixed set, written by `marketsim generate --seed 7000 --count 6 --max-days 4 --out
/// fixtures/random`.
const FIXED_SET: &str = "fixtures/random";
const FIXED_SET_SIZE: usize = 6;

fn fixed_scripts() -> Vec<PathBuf> {
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(FIXED_SET)
        .unwrap_or_else(|e| panic!("{FIXED_SET}: {e}"))
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    scripts.sort();
    scripts
}

#[test]
fn the_fixed_random_set_still_generates_as_committed() {
    // The fixtures are the generator's output: a generator change that moves them is seen here
    // and the set is regenerated on purpose, not left to drift from what `generate` writes.
    let scripts =
        marketsim::scenario::random::RandomScripts::embedded().unwrap_or_else(|e| panic!("{e}"));
    let options = marketsim::scenario::random::RandomScriptOptions {
        max_days: 4,
        ..Default::default()
    };
    let paths = fixed_scripts();
    assert_eq!(paths.len(), FIXED_SET_SIZE);
    for (index, path) in paths.iter().enumerate() {
        let committed = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        let generated = scripts
            .generate(7000, index, options)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            committed,
            generated,
            "{} differs from the generator's output; regenerate the set with `marketsim generate --seed 7000 --count 6 --max-days 4 --out fixtures/random --force`",
            path.display()
        );
    }
}

#[test]
fn the_fixed_random_set_is_analyzed_and_scored() {
    let runs = temp_dir();
    let mut run_dirs = Vec::new();
    for script in fixed_scripts() {
        let name = script
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default();
        let out = runs.path().join(&name);
        let output = run_script(&script.to_string_lossy(), &out, &["--analyze"]);
        assert_eq!(output.status.code(), Some(0), "{name}: {}", stderr(&output));
        run_dirs.push(out);
    }
    assert_eq!(run_dirs.len(), FIXED_SET_SIZE);

    let eval_path = runs.path().join("eval.json");
    let mut args = vec!["eval".to_string()];
    args.extend(run_dirs.iter().map(|d| d.to_string_lossy().into_owned()));
    args.extend([
        "--out".to_string(),
        eval_path.to_string_lossy().into_owned(),
        "--targets".to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = marketsim(&args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    insta::assert_snapshot!("random_eval_table", stdout(&output));

    if std::env::var("MARKETSIM_ENFORCE_TARGETS").as_deref() == Ok("1") {
        let eval = read_json(&eval_path);
        let overall = &eval["overall"];
        let missed: Vec<String> = GENERALIZATION_TARGETS
            .iter()
            .filter(|target| {
                overall[target.key]
                    .as_f64()
                    .is_none_or(|value| !meets(target, value))
            })
            .map(|target| format!("{} ({})", target.label, overall[target.key]))
            .collect();
        assert!(
            missed.is_empty(),
            "targets not met on the fixed random set: {}",
            missed.join(", ")
        );
    }
}

#[test]
fn generate_writes_valid_scripts_and_refuses_a_folder_with_files_without_force() {
    let dir = temp_dir();
    let out = dir.path().join("set");
    let target = out.to_string_lossy().into_owned();
    let generate = |extra: &[&str]| {
        let mut args = vec![
            "generate", "--seed", "5000", "--count", "3", "--out", &target,
        ];
        args.extend_from_slice(extra);
        marketsim(&args)
    };
    let output = generate(&[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let written: Vec<String> = (0..3)
        .map(|i| {
            out.join(format!("random-5000-{i}.yaml"))
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let mut validate = vec!["validate"];
    validate.extend(written.iter().map(String::as_str));
    let output = marketsim(&validate);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let output = generate(&[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("is not empty; pass --force"),
        "{}",
        stderr(&output)
    );
    let output = generate(&["--force"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

fn read_json(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
