//! The marketplace's size factor (`scale:`, `--scale`): a world ten times as large has ten times
//! the counts at the same ratios, `--scale` is the header's `scale:`, and the scale is part of a
//! run's identity (summary.json, `diff`).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::support::{marketsim, run_script, stderr, temp_dir};

fn run(script: &str, out: &Path, extra: &[&str]) {
    let mut args = vec!["--no-truth"];
    args.extend_from_slice(extra);
    let output = run_script(script, out, &args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

fn summary(run: &Path) -> Value {
    let path = run.join("summary.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Events per stream, from summary.json.
fn counts(run: &Path) -> BTreeMap<String, f64> {
    let summary = summary(run);
    summary["streams"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let name = s["name"].as_str().unwrap_or_default().to_string();
            (name, s["events"].as_f64().unwrap_or(f64::NAN))
        })
        .collect()
}

/// The mean bucket value of a gauge, from series.csv.
fn gauge_mean(run: &Path, stream: &str) -> f64 {
    let path = run.join("series.csv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let values: Vec<f64> = text
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split(',');
            let (_, name, value) = (fields.next()?, fields.next()?, fields.next()?);
            (name == stream).then(|| value.parse().ok()).flatten()
        })
        .collect();
    assert!(
        !values.is_empty(),
        "{stream}: no values in {}",
        path.display()
    );
    values.iter().sum::<f64>() / values.len() as f64
}

#[test]
fn a_marketplace_ten_times_as_large_has_ten_times_the_counts_at_the_same_ratios() {
    let dir = temp_dir();
    let (small, large) = (dir.path().join("x1"), dir.path().join("x10"));
    run("fixtures/scripts/short.yaml", &small, &[]);
    run("fixtures/scripts/scaled.yaml", &large, &[]);
    assert_eq!(summary(&small).get("scale"), None, "scale 1 is left out");
    assert_eq!(summary(&large)["scale"], 10);

    let (before, after) = (counts(&small), counts(&large));
    let gauges = [
        "tutor.online.count",
        "support.queue.depth",
        "marketing.ad.spend",
        "platform.api.latency",
    ];
    let mut compared = 0;
    for (stream, &events) in &before {
        let scaled = after[stream];
        if gauges.contains(&stream.as_str()) || stream == "platform.deploy.completed" {
            // Readings keep their interval; engineering does not grow with the marketplace.
            assert_eq!(scaled, events, "{stream}");
        } else if events >= 2_000.0 {
            // Two days of day-level noise (4 %) and counting noise: ±12 % is over 2.5 σ.
            // Rarer streams are left out: below that their own noise decides. Expiries fall
            // short of ×10 for a reason of their own (a larger pool is less often empty at
            // night), and they are rarer than this at ×1.
            let ratio = scaled / events;
            assert!(
                (8.8..=11.2).contains(&ratio),
                "{stream}: {events} → {scaled} (×{ratio:.2})"
            );
            compared += 1;
        }
    }
    assert!(compared >= 15, "only {compared} streams compared");

    // Gauges of counts grow with the world; latency, at the same load per server, does not.
    let ratio = |stream: &str| gauge_mean(&large, stream) / gauge_mean(&small, stream);
    for (stream, range) in [
        ("tutor.online.count", 9.0..=11.5),
        ("marketing.ad.spend", 9.5..=10.5),
        ("support.queue.depth", 7.0..=13.0),
        ("platform.api.latency", 0.95..=1.05),
    ] {
        let ratio = ratio(stream);
        assert!(
            range.contains(&ratio),
            "{stream}: ×{ratio:.2}, expected {range:?}"
        );
    }

    // The scale is part of what `diff` compares.
    let output = marketsim(&[
        "diff",
        &small.to_string_lossy(),
        &large.to_string_lossy(),
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report: Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("diff --json: {e}"));
    let fields: Vec<&str> = report["metadata"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["field"].as_str())
        .collect();
    assert!(fields.contains(&"scale"), "differing fields: {fields:?}");
}

#[test]
fn the_command_line_scale_is_the_script_scale() {
    let dir = temp_dir();
    let (flag, header) = (dir.path().join("flag"), dir.path().join("header"));
    run(
        "fixtures/scripts/short.yaml",
        &flag,
        &["--scale", "3", "--duration", "6h"],
    );
    let output = run_script(
        "fixtures/scripts/scaled.yaml",
        &header,
        &["--no-truth", "--scale", "3", "--duration", "6h"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let (a, b) = (summary(&flag), summary(&header));
    assert_eq!(a["scale"], 3);
    assert_eq!(b["scale"], 3, "--scale overrides the header's scale: 10");
    assert_eq!(
        a["streams"], b["streams"],
        "same seed and scale: the same events"
    );

    for bad in ["0", "101", "2.5", "-1"] {
        let output = marketsim(&[
            "run",
            "short",
            "--out",
            &dir.path().join("bad").to_string_lossy(),
            "--scale",
            bad,
        ]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "--scale {bad}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains("--scale"),
            "--scale {bad}: {}",
            stderr(&output)
        );
    }
}
