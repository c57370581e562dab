//! Determinism: the same seed, script and binary give byte-identical outputs.

use std::path::Path;
use std::sync::Arc;

use marketsim::app::run::run_session;
use marketsim::engine::NoSink;
use marketsim::engine::MS_PER_DAY;
use marketsim::market::catalog::{Catalog, EMBEDDED_CATALOG};
use marketsim::scenario::{RunPlan, Script};

use crate::support::{directory_contents, run_script, stderr, temp_dir};

fn run_cli(out: &Path, extra: &[&str]) {
    let mut args = vec!["--events"];
    args.extend_from_slice(extra);
    let output = run_script("fixtures/scripts/short.yaml", out, &args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn same_seed_gives_a_byte_identical_run_directory_and_another_seed_does_not() {
    let dir = temp_dir();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    run_cli(&a, &[]);
    run_cli(&b, &[]);
    run_cli(&c, &["--seed", "8"]);
    let (files_a, files_b, files_c) = (
        directory_contents(&a),
        directory_contents(&b),
        directory_contents(&c),
    );
    let names: Vec<_> = files_a
        .iter()
        .map(|(p, _)| p.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "events.jsonl",
            "labels.csv",
            "series.csv",
            "summary.json",
            "timeline.json",
            "truth.json"
        ]
    );
    assert!(files_a == files_b, "two runs with the same seed differ");
    for ((name, bytes_a), (_, bytes_c)) in files_a.iter().zip(&files_c) {
        assert_ne!(
            bytes_a,
            bytes_c,
            "{} is the same under another seed",
            name.display()
        );
    }
}

fn fingerprints(catalog: Catalog, days: u64) -> Vec<(String, u64, String)> {
    let script =
        Script::load(Path::new("fixtures/scripts/short.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let mut plan = RunPlan::from_script(script, None, Some(days * MS_PER_DAY))
        .unwrap_or_else(|e| panic!("{e}"));
    plan.catalog = Arc::new(catalog);
    let session =
        run_session(&plan, false, &mut NoSink, &mut |_, _| {}).unwrap_or_else(|e| panic!("{e}"));
    let collector = session.collector();
    plan.catalog
        .streams
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                collector.counts[s.id.index()],
                collector.fingerprint(s.id.index()),
            )
        })
        .collect()
}

/// A stream the flows do not know draws from its own generator, so adding it to the catalog
/// leaves every other stream's event sequence byte-identical.
#[test]
fn an_extra_stream_leaves_every_other_stream_unchanged() {
    let snippet = std::fs::read_to_string("fixtures/extra-stream.yaml").unwrap_or_default();
    let extended_text = format!("{EMBEDDED_CATALOG}{snippet}");
    let base = Catalog::parse(Path::new("marketplace.yaml"), EMBEDDED_CATALOG)
        .unwrap_or_else(|e| panic!("{e}"));
    let extended = Catalog::parse(Path::new("extended.yaml"), &extended_text)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(extended.streams.len(), base.streams.len() + 1);

    let before = fingerprints(base, 3);
    let after = fingerprints(extended, 3);
    assert_eq!(&after[..before.len()], &before[..]);
    let (name, events, _) = &after[before.len()];
    assert_eq!(name, "platform.search.reindexed");
    assert!(
        *events > 100,
        "the extra stream emitted only {events} events"
    );
}

/// Every event in `events.jsonl` has the seed's shape, and its `data` keys are exactly the
/// payload the catalog documents for its stream, in order.
#[test]
fn written_events_match_the_catalog_payloads() {
    let dir = temp_dir();
    let run = dir.path().join("run");
    run_cli(&run, &["--duration", "12h"]);
    let catalog = Catalog::embedded().unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(run.join("events.jsonl")).unwrap_or_default();
    let mut seen = std::collections::BTreeSet::new();
    for (index, line) in text.lines().enumerate() {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", index + 1));
        let object = event
            .as_object()
            .unwrap_or_else(|| panic!("line {}: not an object", index + 1));
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        assert_eq!(keys, ["stream", "timestamp", "data"], "line {}", index + 1);
        let name = event["stream"].as_str().unwrap_or_default();
        let stream = catalog
            .stream(name)
            .unwrap_or_else(|| panic!("line {}: unknown stream {name}", index + 1));
        let data_keys: Vec<&str> = event["data"]
            .as_object()
            .map(|d| d.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(
            data_keys,
            stream.payload_fields,
            "line {}: {name}",
            index + 1
        );
        seen.insert(name.to_string());
    }
    assert!(
        seen.len() >= 40,
        "only {} streams had events in 12 hours",
        seen.len()
    );
}

/// An analyzed run is as reproducible as a plain one, and every event carries the score of its
/// bucket: the same `normalizedValue` and `anomalyFlag` as that bucket's row in series.csv.
#[test]
fn an_analyzed_run_is_byte_identical_and_its_events_carry_their_bucket_scores() {
    let dir = temp_dir();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    run_cli(&a, &["--analyze"]);
    run_cli(&b, &["--analyze"]);
    let (files_a, files_b) = (directory_contents(&a), directory_contents(&b));
    let names: Vec<String> = files_a
        .iter()
        .map(|(p, _)| p.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "anomalies.json",
            "baseline.json",
            "events.jsonl",
            "labels.csv",
            "recommendations.json",
            "series.csv",
            "summary.json",
            "timeline.json",
            "truth.json"
        ]
    );
    assert!(
        files_a == files_b,
        "two analyzed runs with the same seed differ"
    );

    let series = std::fs::read_to_string(a.join("series.csv")).unwrap_or_default();
    let mut by_bucket = std::collections::HashMap::new();
    for line in series.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 7, "{line}");
        assert!(!fields[5].is_empty() || fields[2].is_empty(), "{line}");
        by_bucket.insert(
            (fields[0][..13].to_string(), fields[1].to_string()),
            (fields[5].to_string(), fields[6].to_string()),
        );
    }
    let events = std::fs::read_to_string(a.join("events.jsonl")).unwrap_or_default();
    let mut checked = 0;
    for line in events.lines().step_by(97) {
        let event: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        let timestamp = event["timestamp"].as_str().unwrap_or_default();
        let stream = event["stream"].as_str().unwrap_or_default();
        let (normalized, flag) = by_bucket
            .get(&(timestamp[..13].to_string(), stream.to_string()))
            .cloned()
            .unwrap_or_default();
        let value = event["normalizedValue"].as_f64().unwrap_or(f64::NAN);
        assert_eq!(format!("{value:.1}"), normalized, "{line}");
        assert_eq!(
            event["anomalyFlag"].as_str().unwrap_or_default(),
            flag,
            "{line}"
        );
        checked += 1;
    }
    assert!(checked > 1_000, "only {checked} events checked");
}
