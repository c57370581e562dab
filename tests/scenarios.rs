//! Scenario scripts end to end: every bundled script runs and is analyzed; its summary, ground
//! truth, anomalies and recommendations are snapshotted; the rules analyst meets its targets
//! against ground truth; red herrings measure as no effect, cascades emerge, and backdating
//! leaves the past untouched.

use std::path::Path;

use crate::support::{marketsim, stderr, stdout, temp_dir};

/// Files in `scenarios/` that are not run scripts, and the baseline (covered by its own test).
const NOT_SCENARIO_SCRIPTS: &[&str] = &["marketplace.yaml", "events.yaml", "baseline.yaml"];

fn run_script(script: &str, out: &Path) -> serde_json::Value {
    run_script_with(script, out, &[])
}

fn run_script_with(script: &str, out: &Path, extra: &[&str]) -> serde_json::Value {
    let output = crate::support::run_script(script, out, extra);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{script}: {}",
        stderr(&output)
    );
    read_json(&out.join("truth.json"))
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&read_bytes(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A file's bytes; a missing file fails the test instead of comparing as empty.
fn read_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The anomaly episodes of a run, one line each, for a readable snapshot.
fn episode_lines(anomalies: &serde_json::Value) -> Vec<String> {
    anomalies["episodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{} {} {} {} ×{} z {}",
                e["start"].as_str().unwrap_or_default(),
                e["stream"].as_str().unwrap_or_default(),
                e["direction"].as_str().unwrap_or_default(),
                e["flag"].as_str().unwrap_or_default(),
                e["buckets"],
                e["peakZ"]
            )
        })
        .collect()
}

/// The recommendations of a run without their prose, for a readable snapshot.
fn recommendation_summaries(recommendations: &serde_json::Value) -> Vec<serde_json::Value> {
    recommendations["recommendations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            serde_json::json!({
                "id": r["id"], "key": r["key"], "priority": r["priority"],
                "timestamp": r["timestamp"], "status": r["status"], "resolvedAt": r["resolvedAt"],
                "relatedEvents": r["relatedEvents"], "affectedStreams": r["affectedStreams"],
                "confidence": r["confidence"], "source": r["source"],
            })
        })
        .collect()
}

#[test]
fn every_bundled_script_runs_analyzes_and_matches_its_snapshots() {
    let runs = temp_dir();
    // Every bundled script has its own seed, so each simulates its own history (the reuse of a
    // baseline.json is tested in `analysis`).
    let mut run_dirs = Vec::new();
    let mut red_herrings_checked = 0;
    insta::glob!("../scenarios", "*.yaml", |path| {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if NOT_SCENARIO_SCRIPTS.contains(&name.as_str()) {
            return;
        }
        let out = runs.path().join(name.trim_end_matches(".yaml"));
        let script = format!("scenarios/{name}");
        let truth = run_script_with(&script, &out, &["--analyze"]);
        run_dirs.push(out.clone());
        let summary = read_json(&out.join("summary.json"));
        // Red herrings change nothing, so their counterfactual twin is identical.
        for item in truth["items"].as_array().into_iter().flatten() {
            if item["redHerring"] == true {
                red_herrings_checked += 1;
                assert_eq!(
                    item["measured"],
                    serde_json::json!([]),
                    "{name}: red herring {} measured an effect",
                    item["id"]
                );
            }
        }
        let scripted: Vec<&serde_json::Value> = truth["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| i["origin"] != "background")
            .collect();
        assert!(
            !scripted.is_empty(),
            "{name}: no scripted items in truth.json"
        );
        insta::assert_json_snapshot!("summary", summary);
        insta::assert_json_snapshot!("truth", scripted);
        insta::assert_snapshot!(
            "anomalies",
            episode_lines(&read_json(&out.join("anomalies.json"))).join("\n")
        );
        insta::assert_json_snapshot!(
            "recommendations",
            recommendation_summaries(&read_json(&out.join("recommendations.json")))
        );
    });
    assert_eq!(
        run_dirs.len(),
        12,
        "expected twelve bundled scenario scripts"
    );
    // normal-operations alone injects several: a loop that never ran would prove nothing.
    assert!(
        red_herrings_checked >= 3,
        "only {red_herrings_checked} red herrings in truth.json"
    );

    // The rules analyst against ground truth, over every bundled script: the targets.
    let eval_path = runs.path().join("eval.json");
    let eval_target = eval_path.to_string_lossy().into_owned();
    let mut args = vec!["eval".to_string()];
    args.extend(run_dirs.iter().map(|d| d.to_string_lossy().into_owned()));
    args.extend(["--out".to_string(), eval_target]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = marketsim(&args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let eval = read_json(&eval_path);
    let overall = &eval["overall"];
    let score = |name: &str| overall[name].as_f64().unwrap_or(f64::NAN);
    assert!(score("causePrecision") >= 0.8, "{overall}");
    assert!(score("causeRecall") >= 0.8, "{overall}");
    assert!(score("redHerringRate") <= 0.1, "{overall}");
    insta::assert_snapshot!("eval_table", stdout(&output));
}

#[test]
fn a_supply_cut_raises_expirations_with_no_modifier_on_them() {
    let dir = temp_dir();
    let truth = run_script("scenarios/supply-crisis.yaml", &dir.path().join("run"));
    let scenario = truth["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["ref"] == "supply-crisis")
        .cloned()
        .unwrap_or_default();
    assert!(!scenario["declared"]["touches"]
        .to_string()
        .contains("session.booking.expired"));
    let expired = scenario["measured"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["stream"] == "session.booking.expired")
        .cloned()
        .unwrap_or_default();
    let relative = expired["relativeDelta"].as_f64().unwrap_or(0.0);
    assert!(relative > 0.3, "expirations rose by only {relative}");
}

#[test]
fn a_backdated_scenario_leaves_the_earlier_past_byte_identical() {
    let dir = temp_dir();
    let (with, without) = (dir.path().join("with"), dir.path().join("without"));
    run_script("fixtures/scripts/backdated.yaml", &with);
    run_script("fixtures/scripts/backdated-without.yaml", &without);
    let series =
        |dir: &Path| String::from_utf8_lossy(&read_bytes(&dir.join("series.csv"))).into_owned();
    let (a, b) = (series(&with), series(&without));
    // The scenario starts at -1d from the end of a 3-day run: 2025-03-05T00:00:00Z.
    let before = |text: &str| {
        text.lines()
            .filter(|l| l < &"2025-03-05")
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(before(&a), before(&b));
    assert!(before(&a).len() > 1_000);
    assert_ne!(a, b, "the backdated scenario changed nothing");
}

#[test]
fn validate_accepts_every_bundled_script_and_scenarios_lists_the_library() {
    let mut scripts: Vec<String> = std::fs::read_dir("scenarios")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "marketplace.yaml" && n != "events.yaml")
        .map(|n| format!("scenarios/{n}"))
        .collect();
    scripts.sort();
    let mut args = vec!["validate"];
    args.extend(scripts.iter().map(String::as_str));
    let output = marketsim(&args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = marketsim(&["scenarios"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    insta::assert_snapshot!(stdout(&output));
}
