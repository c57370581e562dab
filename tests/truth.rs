//! Ground truth checked against the counterfactual it stands for: a scenario stopped early is
//! measured over its window up to its stop and settlement, and what it measures there is exactly
//! the difference from a run of the same script without it, and drift after the random paths
//! part is told apart from an effect (`fixtures/truth/`).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::support::{run_script, stderr, temp_dir};

/// `series.csv` as (stream, timestamp) → value.
fn series(run: &Path) -> BTreeMap<(String, String), f64> {
    let text = std::fs::read_to_string(run.join("series.csv")).unwrap_or_else(|e| panic!("{e}"));
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split(',');
            let timestamp = fields.next()?.to_string();
            let stream = fields.next()?.to_string();
            let value = fields.next()?.parse().unwrap_or(0.0);
            Some(((stream, timestamp), value))
        })
        .collect()
}

/// The sum of `stream` over `[from, to)` (timestamps compared at the hour's precision, which
/// the hourly buckets of the fixtures have).
fn total(series: &BTreeMap<(String, String), f64>, stream: &str, from: &str, to: &str) -> f64 {
    series
        .iter()
        .filter(|((name, time), _)| {
            name == stream && time[..13] >= from[..13] && time[..13] < to[..13]
        })
        .map(|(_, value)| value)
        .sum()
}

#[test]
fn a_scenario_stopped_early_measures_what_the_run_without_it_shows() {
    let dir = temp_dir();
    let with = dir.path().join("with");
    let without = dir.path().join("without");
    for (script, out) in [
        ("fixtures/truth/stopped-early.yaml", &with),
        ("fixtures/truth/stopped-early-without.yaml", &without),
    ] {
        let output = run_script(script, out, &[]);
        assert!(output.status.success(), "{script}: {}", stderr(&output));
    }
    let truth: Value = serde_json::from_str(
        &std::fs::read_to_string(with.join("truth.json")).unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let items = truth["items"].as_array().cloned().unwrap_or_default();
    let scenario = items
        .iter()
        .find(|item| item["ref"] == "recruiting-crisis")
        .unwrap_or_else(|| panic!("no recruiting-crisis in {truth:#}"));
    // The window ends where the stopped scenario settled, not where its plan would have.
    assert_eq!(scenario["windowEnd"], scenario["settledAt"], "{scenario:#}");
    assert_eq!(scenario["settledAt"], "2025-10-10T00:00:00.000Z");

    // labels.csv, bucket by bucket over the window and the tail: its counterfactual is the run
    // without the scenario, and its actual the run itself.
    let labels = std::fs::read_to_string(with.join("labels.csv")).unwrap_or_else(|e| panic!("{e}"));
    let (with_dir, without_dir) = (with.clone(), without.clone());
    let (with, without) = (series(&with_dir), series(&without_dir));
    let id = scenario["id"].as_str().unwrap_or_default();
    let mut checked = 0;
    for line in labels.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        if fields[2] != id {
            continue;
        }
        let key = (fields[1].to_string(), fields[0].to_string());
        let parse = |text: &str| text.parse::<f64>().unwrap_or(f64::NAN);
        let (actual, counterfactual) = (parse(fields[9]), parse(fields[10]));
        let run_value = with.get(&key).copied().unwrap_or(0.0);
        let without_value = without.get(&key).copied().unwrap_or(0.0);
        assert!(
            (actual - run_value).abs() <= 0.0005
                && (counterfactual - without_value).abs() <= 0.0005,
            "{line}: the run has {run_value}, the run without the scenario {without_value}"
        );
        checked += 1;
    }
    assert!(checked > 100, "only {checked} label rows of {id}");
    let from = scenario["windowStart"].as_str().unwrap_or_default();
    let to = scenario["windowEnd"].as_str().unwrap_or_default();
    let measured = scenario["measured"].as_array().cloned().unwrap_or_default();
    let streams: Vec<&str> = measured
        .iter()
        .filter_map(|m| m["stream"].as_str())
        .collect();
    assert!(
        streams.contains(&"session.booking.expired") && streams.contains(&"tutor.online.count"),
        "the shortage shows where the model puts it: {streams:?}"
    );
    for stream in &measured {
        let name = stream["stream"].as_str().unwrap_or_default();
        let counterfactual = total(&with, name, from, to) - total(&without, name, from, to);
        let delta = stream["totalDelta"].as_f64().unwrap_or(f64::NAN);
        assert!(
            (delta - counterfactual).abs() <= 0.01 * counterfactual.abs().max(1.0),
            "{name}: truth says {delta}, the run without the scenario differs by {counterfactual}"
        );
    }
}

/// `fixtures/truth/small-effect.yaml`: a shorter booking form adds 4 % to demand for 12 hours.
/// Once it changes one draw the run's and the twin's random paths part, and the support queue
/// (a slow, wandering gauge) drifts by ±20 % whatever the form did. Truth must say so: the
/// queue's difference lies inside its drift band (not material), while the demand streams the
/// form does move are material, with intervals that exclude zero.
#[test]
fn drift_after_the_paths_part_is_not_called_an_effect() {
    let dir = temp_dir();
    let out = dir.path().join("run");
    let output = run_script("fixtures/truth/small-effect.yaml", &out, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let truth: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("truth.json")).unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let measured = truth["items"][0]["measured"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let find = |name: &str| measured.iter().find(|m| m["stream"] == name).cloned();
    if let Some(queue) = find("support.queue.depth") {
        assert_eq!(queue["material"], false, "{queue:#}");
        let low = queue["interval"][0].as_f64().unwrap_or(f64::NAN);
        let high = queue["interval"][1].as_f64().unwrap_or(f64::NAN);
        assert!(low < 0.0 && high > 0.0, "{queue:#}");
    }
    let search = find("customer.tutor.search").unwrap_or_else(|| panic!("{measured:#?}"));
    assert_eq!(search["material"], true, "{search:#}");
    assert!(
        search["interval"][0].as_f64().unwrap_or(f64::NAN) > 0.0,
        "{search:#}"
    );
}
