//! Labelled data sets for detector testing: `labels.csv` per run (what each item did to each
//! stream-bucket, its tail past the window, red herrings at exactly zero), `--warmup` history,
//! and `generate --runs` sets — loaded in pandas and DuckDB and scored with a trivial detector
//! by `tests/python/detector_example.py`, the README's example — and their Parquet copies
//! (`--parquet`): the same rows as the text files, as pandas and DuckDB read them, and the same
//! bytes run after run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{
    directory_contents, marketsim, marketsim_in, python_with, root, run_script, stderr, stdout,
    temp_dir,
};

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What labels.csv says about each item: rows, significant rows, the streams with significant
/// buckets, and the first and last significant bucket — beside truth.json's window and tail.
fn labels_summary(run: &Path) -> String {
    let labels = std::fs::read_to_string(run.join("labels.csv"))
        .unwrap_or_else(|e| panic!("labels.csv: {e}"));
    let mut lines = labels.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("labels.csv has no column {name}"))
    };
    let (timestamp, stream, item, significant, delta) = (
        column("timestamp"),
        column("stream"),
        column("item"),
        column("significant"),
        column("delta"),
    );
    #[derive(Default)]
    struct PerItem {
        rows: usize,
        significant: usize,
        nonzero: usize,
        streams: std::collections::BTreeSet<String>,
        first: Option<String>,
        last: Option<String>,
    }
    let mut per_item: BTreeMap<String, PerItem> = BTreeMap::new();
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        let entry = per_item.entry(fields[item].to_string()).or_default();
        entry.rows += 1;
        if fields[delta].parse::<f64>().is_ok_and(|d| d != 0.0) {
            entry.nonzero += 1;
        }
        if fields[significant] == "true" {
            entry.significant += 1;
            entry.streams.insert(fields[stream].to_string());
            entry.first.get_or_insert(fields[timestamp].to_string());
            entry.last = Some(fields[timestamp].to_string());
        }
    }
    let truth = read_json(&run.join("truth.json"));
    let mut out = String::new();
    for truth_item in truth["items"].as_array().into_iter().flatten() {
        let id = truth_item["id"].as_str().unwrap_or_default();
        let labels = per_item.remove(id).unwrap_or_default();
        out.push_str(&format!(
            "{id} {} (red herring: {}): window {} – {}, labels to {} ({})\n  {} rows, {} non-zero, {} significant, from {} to {}\n  significant streams: {}\n",
            truth_item["ref"].as_str().unwrap_or_default(),
            truth_item["redHerring"],
            truth_item["windowStart"].as_str().unwrap_or_default(),
            truth_item["windowEnd"].as_str().unwrap_or_default(),
            truth_item["truthEnd"].as_str().unwrap_or_default(),
            truth_item["tail"].as_str().unwrap_or_default(),
            labels.rows,
            labels.nonzero,
            labels.significant,
            labels.first.as_deref().unwrap_or("-"),
            labels.last.as_deref().unwrap_or("-"),
            labels.streams.into_iter().collect::<Vec<_>>().join(", "),
        ));
    }
    assert!(
        per_item.is_empty(),
        "labels of items truth.json does not list: {:?}",
        per_item.keys()
    );
    out
}

#[test]
fn labels_follow_each_item_past_its_window_and_leave_red_herrings_at_zero() {
    let dir = temp_dir();
    let out = dir.path().join("run");
    let output = run_script("fixtures/scripts/labelled.yaml", &out, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let summary = labels_summary(&out);
    // The red herring's rows are its declared stream, exactly unchanged; the payment outage's
    // support backlog is still significant after its window ends.
    insta::assert_snapshot!("labelled_fixture", summary);
}

#[test]
fn the_truth_horizon_cuts_the_tail() {
    let dir = temp_dir();
    let out = dir.path().join("run");
    let output = run_script(
        "fixtures/scripts/labelled.yaml",
        &out,
        &["--truth-horizon", "0h"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let truth = read_json(&out.join("truth.json"));
    for item in truth["items"].as_array().into_iter().flatten() {
        // No tail: the labels stop at the window's end (its last bucket), cut by the horizon
        // unless the item's streams were already back inside their bands.
        let tail = item["tail"].as_str().unwrap_or_default();
        assert!(
            tail == "horizon" || tail == "converged",
            "{}: tail {tail}",
            item["id"]
        );
        let time = |key: &str| {
            chrono::DateTime::parse_from_rfc3339(item[key].as_str().unwrap_or_default())
                .unwrap_or_else(|e| panic!("{key}: {e}"))
        };
        let past_window = time("truthEnd") - time("windowEnd");
        assert!(
            past_window >= chrono::TimeDelta::zero()
                && past_window < chrono::TimeDelta::minutes(30),
            "{}: labels end {past_window} after the window",
            item["id"]
        );
    }
}

#[test]
fn a_warmup_runs_days_before_the_script_and_keeps_every_entry_at_its_instant() {
    let dir = temp_dir();
    let plain = dir.path().join("plain");
    let warm = dir.path().join("warm");
    for (out, extra) in [(&plain, vec![]), (&warm, vec!["--warmup", "3"])] {
        let output = run_script("fixtures/scripts/labelled.yaml", out, &extra);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    let plain_summary = read_json(&plain.join("summary.json"));
    let warm_summary = read_json(&warm.join("summary.json"));
    assert_eq!(warm_summary["warmupEnd"], plain_summary["epoch"]);
    assert_eq!(warm_summary["epoch"], "2025-10-03T00:00:00.000Z");
    assert_eq!(
        warm_summary["durationMs"].as_u64(),
        plain_summary["durationMs"]
            .as_u64()
            .map(|ms| ms + 3 * 86_400_000)
    );
    let starts = |run: &Path| -> Vec<(String, String)> {
        read_json(&run.join("truth.json"))["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|item| item["origin"] != "background")
            .map(|item| {
                (
                    item["ref"].as_str().unwrap_or_default().to_string(),
                    item["start"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(starts(&warm), starts(&plain));
    let output = run_script(
        "fixtures/scripts/labelled.yaml",
        &warm,
        &["--warmup", "91", "--force"],
    );
    assert!(!output.status.success());
    assert!(stderr(&output).contains("0..=90"), "{}", stderr(&output));
}

/// The Python that runs the example: `MARKETSIM_PYTHON` (what `cargo xtask ci` installs into
/// target/python), else `python3` when it has pandas. `None` when there is none and
/// `MARKETSIM_REQUIRE_PYTHON` is unset (a plain `cargo test` on a machine without pandas).
fn python_with_pandas() -> Option<PathBuf> {
    python_with("pandas")
}

#[test]
fn a_generated_set_loads_in_pandas_and_scores_a_detector_by_bucket() {
    let dir = temp_dir();
    let set = dir.path().join("set");
    let target = set.to_string_lossy();
    let mut args = vec![
        "generate",
        "--runs",
        "4",
        "--seed",
        "9100",
        "--max-days",
        "3",
        "--warmup",
        "2",
        "--out",
        &target,
    ];
    // The example then checks the Parquet tables against the CSVs too.
    if cfg!(feature = "parquet") {
        args.push("--parquet");
    }
    let output = marketsim(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let manifest = read_json(&set.join("manifest.json"));
    insta::assert_json_snapshot!("generated_set_manifest", manifest);
    let Some(python) = python_with_pandas() else {
        return;
    };
    let output = Command::new(python)
        .arg(root().join("tests/python/detector_example.py"))
        .arg(&set)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the example: {e}"));
    assert!(
        output.status.success(),
        "{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    let scores: serde_json::Value = serde_json::from_str(stdout(&output).trim())
        .unwrap_or_else(|e| panic!("{e}: {}", stdout(&output)));
    assert_eq!(scores["labels_missing_in_series"], 0);
    assert_eq!(scores["label_value_mismatches"], 0);
    insta::assert_json_snapshot!("generated_set_detector_scores", scores);
}

#[test]
fn a_set_is_the_same_whatever_the_number_of_jobs() {
    let dir = temp_dir();
    let mut contents = Vec::new();
    for jobs in ["1", "2"] {
        // The same relative --out from two folders: summaries record the script path given.
        let folder = dir.path().join(format!("jobs-{jobs}"));
        std::fs::create_dir_all(&folder).unwrap_or_else(|e| panic!("{e}"));
        let output = marketsim_in(
            &folder,
            &[
                "generate",
                "--runs",
                "3",
                "--seed",
                "9200",
                "--max-days",
                "3",
                "--jobs",
                jobs,
                "--out",
                "set",
            ],
        );
        assert!(output.status.success(), "{}", stderr(&output));
        contents.push(directory_contents(&folder.join("set")));
    }
    assert!(
        contents[0] == contents[1],
        "a set differs with the number of jobs"
    );
    let output = marketsim_in(
        &dir.path().join("jobs-1"),
        &["generate", "--runs", "1", "--seed", "9200", "--out", "set"],
    );
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--force"), "{}", stderr(&output));
}

#[test]
fn a_set_about_one_scenario_draws_it_in_every_script() {
    let dir = temp_dir();
    let folder = dir.path().join("scripts");
    let target = folder.to_string_lossy();
    let output = marketsim(&[
        "generate",
        "--count",
        "12",
        "--seed",
        "9300",
        "--scenario",
        "supply-crisis",
        "--out",
        &target,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    for (path, bytes) in directory_contents(&folder) {
        let text = String::from_utf8_lossy(&bytes);
        // The library scenario, or an inline variant of it (`supply-crisis-variant-N`).
        assert!(
            text.contains("scenario: supply-crisis"),
            "{} draws no supply crisis:\n{text}",
            path.display()
        );
        assert!(
            !text
                .lines()
                .any(|line| line.trim_start().starts_with("scenario: ")
                    && !line.contains("supply-crisis")),
            "{} draws another scenario:\n{text}",
            path.display()
        );
    }
    let output = marketsim(&[
        "generate",
        "--count",
        "1",
        "--seed",
        "1",
        "--scenario",
        "supply",
        "--out",
        &target,
        "--force",
    ]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("allowed: app-release-bug"),
        "{}",
        stderr(&output)
    );
}

/// The Parquet tables of the labelled fixture are the same bytes run after run (no clock, no
/// path, no hash order in them).
#[cfg(feature = "parquet")]
#[test]
fn the_parquet_tables_of_a_run_are_byte_identical_run_to_run() {
    let dir = temp_dir();
    let runs = [dir.path().join("a"), dir.path().join("b")];
    for out in &runs {
        let output = run_script("fixtures/scripts/labelled.yaml", out, &["--parquet"]);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    for name in ["series.parquet", "labels.parquet"] {
        let [a, b] = runs
            .each_ref()
            .map(|run| std::fs::read(run.join(name)).unwrap_or_else(|e| panic!("{name}: {e}")));
        assert!(a.len() > 1_000, "{name} has only {} bytes", a.len());
        assert!(a == b, "{name} differs between two runs of the same script");
    }
}

/// events.parquet holds exactly the events of events.jsonl, scores included (checked with
/// DuckDB by `tests/python/events_parquet_check.py`), and an analyzed run with events writes
/// the same directory twice.
#[cfg(feature = "parquet")]
#[test]
fn events_parquet_holds_the_events_of_events_jsonl() {
    let dir = temp_dir();
    let runs = [dir.path().join("a"), dir.path().join("b")];
    for out in &runs {
        let output = run_script(
            "fixtures/scripts/short.yaml",
            out,
            &["--duration", "12h", "--events", "--analyze", "--parquet"],
        );
        assert!(output.status.success(), "{}", stderr(&output));
    }
    let contents = runs.each_ref().map(|run| directory_contents(run));
    let names: Vec<String> = contents[0]
        .iter()
        .map(|(path, _)| path.to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".parquet"))
        .collect();
    assert_eq!(
        names,
        ["events.parquet", "labels.parquet", "series.parquet"]
    );
    assert!(
        contents[0] == contents[1],
        "two analyzed runs with events differ"
    );
    let Some(python) = python_with("duckdb") else {
        return;
    };
    let output = Command::new(python)
        .arg(root().join("tests/python/events_parquet_check.py"))
        .arg(&runs[0])
        .output()
        .unwrap_or_else(|e| panic!("cannot run the check: {e}"));
    assert!(
        output.status.success(),
        "{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    let check: serde_json::Value = serde_json::from_str(stdout(&output).trim())
        .unwrap_or_else(|e| panic!("{e}: {}", stdout(&output)));
    assert_eq!(check["differing_rows"], 0);
    assert_eq!(check["scored"], true);
    assert!(
        check["rows"].as_u64().is_some_and(|rows| rows > 10_000),
        "{check}"
    );
}

/// A binary built without the `parquet` feature refuses `--parquet` before it runs anything,
/// and says why.
#[cfg(not(feature = "parquet"))]
#[test]
fn without_the_feature_parquet_is_refused_with_the_reason() {
    let dir = temp_dir();
    let out = dir.path().join("run");
    let output = run_script("fixtures/scripts/short.yaml", &out, &["--parquet"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("built without Parquet support"),
        "{}",
        stderr(&output)
    );
    assert!(!out.exists(), "a refused run left {}", out.display());
}
