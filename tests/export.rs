//! `marketsim export`: series and events filtered by stream globs and a time range, as CSV or
//! JSON Lines, to standard output or a file; refused patterns, times and runs exit 2.

use std::fs;
use std::path::Path;

use crate::support::{marketsim, run_script, stderr, stdout, temp_dir};

/// Three simulated hours of the short fixture with events: three hourly buckets.
fn run_with_events(out: &Path) {
    let target = out.to_string_lossy();
    let output = marketsim(&[
        "run",
        "fixtures/scripts/short.yaml",
        "--out",
        &target,
        "--duration",
        "3h",
        "--events",
        "--quiet",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

fn export(run: &Path, extra: &[&str]) -> std::process::Output {
    let run = run.to_string_lossy();
    let mut args = vec!["export", &*run];
    args.extend_from_slice(extra);
    marketsim(&args)
}

const FILTER: [&str; 6] = [
    "--streams",
    "customer.*,support.queue.depth",
    "--from",
    "2025-03-03T01:00:00Z",
    "--to",
    "2025-03-03T03:00:00Z",
];

#[test]
fn series_export_filters_by_glob_and_time_range() {
    let dir = temp_dir();
    let run = dir.path().join("run");
    run_with_events(&run);

    let output = export(&run, &FILTER);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let csv = stdout(&output);
    insta::assert_snapshot!("series_csv", csv);
    // Rows are passed on as the run wrote them.
    let series = fs::read_to_string(run.join("series.csv")).unwrap_or_default();
    for line in csv.lines().skip(1) {
        assert!(series.contains(&format!("{line}\n")), "{line}");
    }

    let mut jsonl_args = FILTER.to_vec();
    jsonl_args.extend(["--format", "jsonl"]);
    let output = export(&run, &jsonl_args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let jsonl = stdout(&output);
    for line in jsonl.lines() {
        let row: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(row.is_object(), "{line}");
    }
    assert_eq!(jsonl.lines().count(), csv.lines().count() - 1);
    insta::assert_snapshot!("series_jsonl", jsonl);

    // -o writes the same bytes to a file (through a temporary sibling).
    let file = dir.path().join("out").join("export.csv");
    fs::create_dir_all(dir.path().join("out")).unwrap_or_else(|e| panic!("{e}"));
    let mut file_args = FILTER.to_vec();
    let file_text = file.to_string_lossy();
    file_args.extend(["-o", &file_text]);
    let output = export(&run, &file_args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "");
    assert_eq!(fs::read_to_string(&file).unwrap_or_default(), csv);
    let leftovers: Vec<_> = fs::read_dir(dir.path().join("out"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}

#[test]
fn events_export_keeps_the_lines_in_range() {
    let dir = temp_dir();
    let run = dir.path().join("run");
    run_with_events(&run);
    let args = [
        "--events",
        "--format",
        "jsonl",
        "--streams",
        "session.booking.*",
        "--from",
        "2025-03-03T01:30:00Z",
        "--to",
        "2025-03-03T02:00:00Z",
    ];
    let output = export(&run, &args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let exported = stdout(&output);

    // The same selection made by hand from events.jsonl.
    let all = fs::read_to_string(run.join("events.jsonl")).unwrap_or_default();
    let expected: String = all
        .lines()
        .filter(|line| {
            let event: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            let stream = event["stream"].as_str().unwrap_or_default();
            let time = event["timestamp"].as_str().unwrap_or_default();
            stream.starts_with("session.booking.")
                && ("2025-03-03T01:30:00.000Z"..="2025-03-03T01:59:59.999Z").contains(&time)
        })
        .map(|line| format!("{line}\n"))
        .collect();
    assert!(expected.lines().count() > 10, "too few events to test");
    assert_eq!(exported, expected);

    // As CSV: a header and the data object as one quoted JSON column; the scores' columns are
    // empty, the run was not analyzed.
    let mut csv_args = args.to_vec();
    csv_args[2] = "csv";
    let output = export(&run, &csv_args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let csv = stdout(&output);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("timestamp,stream,data,normalizedValue,anomalyFlag")
    );
    let first = lines.next().unwrap_or_default();
    assert!(
        first.starts_with("2025-03-03T01:3")
            && first.contains(",session.booking.")
            && first.contains(",\"{\"\"")
            && first.ends_with("}\",,"),
        "{first}"
    );
    assert_eq!(csv.lines().count(), expected.lines().count() + 1);
}

/// With `--analyze`, each line of events.jsonl carries its bucket's `normalizedValue` and
/// `anomalyFlag`: a JSON Lines export keeps them with the line, and a CSV export (which once
/// dropped them) has them as its last two columns.
#[test]
fn events_export_keeps_the_scores_of_an_analyzed_run() {
    let dir = temp_dir();
    let run = dir.path().join("run");
    let output = run_script(
        "fixtures/scripts/timestamps.yaml",
        &run,
        &["--analyze", "--events", "--no-truth"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let selection = [
        "--events",
        "--streams",
        "platform.api.*,platform.app.crash",
        "--format",
    ];
    let export_as = |format: &str| {
        let mut args = selection.to_vec();
        args.push(format);
        let output = export(&run, &args);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        stdout(&output)
    };
    let (jsonl, csv) = (export_as("jsonl"), export_as("csv"));
    let mut rows = csv.lines();
    assert_eq!(
        rows.next(),
        Some("timestamp,stream,data,normalizedValue,anomalyFlag")
    );
    let rows: Vec<&str> = rows.collect();
    assert!(rows.len() > 100, "too few events to test: {}", rows.len());
    assert_eq!(rows.len(), jsonl.lines().count());
    for (row, line) in rows.iter().zip(jsonl.lines()) {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        // The data column is quoted and holds commas; the scores are the last two fields.
        let mut fields = row.rsplitn(3, ',');
        let (flag, normalized) = (fields.next(), fields.next());
        assert_eq!(flag, event["anomalyFlag"].as_str(), "{row}");
        assert_eq!(
            normalized,
            Some(event["normalizedValue"].to_string().as_str()),
            "{row}"
        );
    }
    // The release bug flags its buckets, so the column carries more than `normal`.
    assert!(
        rows.iter().any(|row| !row.ends_with(",normal")),
        "no flagged event"
    );
}

/// Refused requests exit 2 with a message that says what would be accepted.
#[test]
fn bad_requests_exit_2_with_a_message() {
    let dir = temp_dir();
    let run = dir.path().join("run");
    run_with_events(&run);
    let without_events = dir.path().join("no-events");
    fs::create_dir_all(&without_events).unwrap_or_else(|e| panic!("{e}"));
    for name in ["summary.json", "series.csv", "timeline.json", "truth.json"] {
        fs::copy(run.join(name), without_events.join(name)).unwrap_or_else(|e| panic!("{e}"));
    }

    let cases: [(&str, &Path, &[&str]); 5] = [
        ("misspelled glob", &run, &["--streams", "custmer.*"]),
        (
            "unknown stream",
            &run,
            &["--streams", "customer.*,weather.rain"],
        ),
        ("bad time", &run, &["--from", "2025-03-03 01:00"]),
        (
            "from after to",
            &run,
            &[
                "--from",
                "2025-03-03T02:00:00Z",
                "--to",
                "2025-03-03T01:00:00Z",
            ],
        ),
        ("no events file", &without_events, &["--events"]),
    ];
    let mut messages = String::new();
    for (name, run_dir, args) in cases {
        let output = export(run_dir, args);
        let message = stderr(&output).replace(&*dir.path().to_string_lossy(), "<tmp>");
        assert_eq!(output.status.code(), Some(2), "{name}: {message}");
        assert_eq!(stdout(&output), "", "{name}: wrote output");
        messages.push_str(&format!("{name}:\n{message}\n"));
    }
    insta::assert_snapshot!(messages);
}
