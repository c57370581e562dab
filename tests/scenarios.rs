//! Scenario scripts end to end: every bundled script runs, its summary and ground truth are
//! snapshotted, red herrings measure as no effect, cascades emerge, and backdating leaves the
//! past untouched.

use std::path::Path;

use crate::support::{marketsim, stderr, stdout, temp_dir};

/// Files in `scenarios/` that are not run scripts, and the baseline (covered by its own test).
const NOT_SCENARIO_SCRIPTS: &[&str] = &["marketplace.yaml", "events.yaml", "baseline.yaml"];

fn run_script(script: &str, out: &Path) -> serde_json::Value {
    let target = out.to_string_lossy();
    let output = marketsim(&["run", script, "--out", &target, "--quiet"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{script}: {}",
        stderr(&output)
    );
    let truth = std::fs::read_to_string(out.join("truth.json")).unwrap_or_default();
    serde_json::from_str(&truth).unwrap_or_else(|e| panic!("{script}: truth.json: {e}"))
}

#[test]
fn every_bundled_script_runs_and_matches_its_snapshots() {
    insta::glob!("../scenarios", "*.yaml", |path| {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if NOT_SCENARIO_SCRIPTS.contains(&name.as_str()) {
            return;
        }
        let dir = temp_dir();
        let out = dir.path().join("run");
        let truth = run_script(&format!("scenarios/{name}"), &out);
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("summary.json")).unwrap_or_default(),
        )
        .unwrap_or_default();
        // Red herrings change nothing, so their counterfactual twin is identical.
        for item in truth["items"].as_array().into_iter().flatten() {
            if item["redHerring"] == true {
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
    });
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
    let series = |dir: &Path| std::fs::read_to_string(dir.join("series.csv")).unwrap_or_default();
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
